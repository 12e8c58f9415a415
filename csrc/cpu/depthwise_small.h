// The geometry of the small-plane depthwise kernels (small_planes_correlate in
// depthwise_kernel.h), shared by depthwise.cpp and the ISA translation units: plain integers,
// no includes.
#pragma once

namespace cnnops::cpu {

// Planes with unit column strides (NCHW). Output plane k reads input plane k / mult.
struct SmallPlanes {
  long H, W, x_pitch;    // input planes: H rows of W elements, rows x_pitch apart
  long P, Q, out_pitch;  // output planes
  long R, S;             // taps
  long sh, sw, dh, dw;   // strides and dilations; sw is 1 or 2
  long pad_top, pad_left;  // any sign: a negative pad skips leading input rows / columns
  long mult;
};

// The kernels take at most this many column taps.
constexpr long kSmallPlanesMaxS = 16;

// Whether g's rows fit vectors of `lanes` elements: the output rows (and, at stride_w 2,
// the input rows in two vectors; for grad_input's transposed kernel, both rows in one).
inline bool small_rows_fit(const SmallPlanes& g, long lanes, bool transposed) {
  if (transposed) return g.W <= lanes && g.Q <= lanes;
  return g.Q <= lanes && (g.sw == 1 || (g.sw == 2 && g.W <= 2 * lanes));
}

// Stride 2 both ways, a 3x3 kernel at dilation 1, pad_left >= 0 (pad_top of any sign: the
// fused separable operator's row tiles start inside the plane), MobileNets' downsampling
// layers: the small-plane entry points run the stride-2 kernels of depthwise_kernel.h on such
// planes, rows of any width.
inline bool stride2_shape(const SmallPlanes& g) {
  return g.sh == 2 && g.sw == 2 && g.R == 3 && g.S == 3 && g.dh == 1 && g.dw == 1 &&
         g.pad_left >= 0;
}

}  // namespace cnnops::cpu
