// Geometry and operand packing of the CPU implicit-GEMM convolution (cpu/conv2d.cpp):
// how a conv2d call's tensors become the panels the GEMM micro-kernel streams (cpu/gemm.h).
//
// Letters as in cpu/conv2d.cpp: N batch, C input channels, H x W input, K output channels,
// R x S kernel, P x Q output, G groups, Cg = C / G, Kg = K / G.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/conv2d_params.h"
#include "cpu/gemm.h"
#include "cpu/transpose_avx2.h"  // CNNOPS_X86_INTRINSICS where the intrinsics are there

namespace cnnops::cpu {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// The most workspace a kernel may allocate: the larger of 64 MiB and its input's size.
inline int64_t workspace_bound(int64_t input_bytes) {
  return std::max<int64_t>(int64_t{64} << 20, input_bytes);
}

// Adds `copies` partial sums of `size` elements, laid one after another, into sums in order
// (the weight gradients' reductions split over ranges of pixels: a fixed order, whatever the
// thread count).
template <typename T>
void add_partial_sums(T* sums, const std::vector<T>& partial, int64_t copies, int64_t size) {
  for (int64_t s = 0; s < copies; ++s) {
    const T* part = partial.data() + s * size;
    for (int64_t i = 0; i < size; ++i) sums[i] += part[i];
  }
}

struct Strides4 {
  int64_t n, c, h, w;
  explicit Strides4(const at::Tensor& t)
      : n(t.stride(0)), c(t.stride(1)), h(t.stride(2)), w(t.stride(3)) {}
  Strides4(int64_t n_, int64_t c_, int64_t h_, int64_t w_) : n(n_), c(c_), h(h_), w(w_) {}
};

// Everything a kernel needs to know about one conv2d call.
struct ConvGeometry {
  int64_t N, C, H, W, K, R, S, P, Q, G, Cg, Kg;
  Conv2dParams p;

  ConvGeometry(c10::IntArrayRef input_size, c10::IntArrayRef weight_size, int64_t out_h,
               int64_t out_w, const Conv2dParams& params)
      : N(input_size[0]), C(input_size[1]), H(input_size[2]), W(input_size[3]),
        K(weight_size[0]), R(weight_size[2]), S(weight_size[3]), P(out_h), Q(out_w),
        G(params.groups), Cg(C / params.groups), Kg(K / params.groups), p(params) {}

  int64_t pixels() const { return P * Q; }          // output pixels of one image
  int64_t columns() const { return N * P * Q; }     // GEMM columns: output pixels of the batch
  int64_t reduction() const { return Cg * R * S; }  // CgRS: one im2col column's length
  // workspace_bound of this call's input, of elements of `element` bytes.
  int64_t max_workspace_bytes(int64_t element) const {
    return workspace_bound(N * C * H * W * element);
  }
};

// (c, r, s) of row k of the im2col matrix.
struct KernelTap {
  int64_t c, r, s;
  KernelTap(int64_t k, const ConvGeometry& g)
      : c(k / (g.R * g.S)), r((k / g.S) % g.R), s(k % g.S) {}
};

// Whether every tap of every output pixel lies inside x and each output row's inputs run on
// into the next row's along memory, at x's strides xs (a 1x1 convolution at stride 1, without
// padding, on contiguous planes): a tap's im2col row is then one strided run per image.
inline bool runs_span_rows(const ConvGeometry& g, const Strides4& xs) {
  return g.p.pad_top == 0 && g.p.pad_left == 0 &&
         (g.P - 1) * g.p.stride_h + (g.R - 1) * g.p.dilation_h < g.H &&
         (g.Q - 1) * g.p.stride_w + (g.S - 1) * g.p.dilation_w < g.W &&
         g.p.stride_h * xs.h == g.Q * g.p.stride_w * xs.w;
}

// A run of GEMM columns [q0, q0 + count), column q being output pixel q % PQ of image
// q / PQ: a tile may span images, so that small images still fill the micro-kernel.
// Consecutive columns on one output row form a run, whose inputs are evenly spaced along
// a row of x: packing copies runs rather than gathering column by column. Where the rows
// run on into each other (runs_span_rows), a run is an image's columns in the tile.
struct ColumnTile {
  int64_t q0 = 0, count = 0;
  bool flat = false;               // runs_span_rows of the strides given to fill
  std::vector<int64_t> image_off;  // image * (image stride of the tensor given to fill)
  std::vector<int64_t> ih0, iw0;   // top-left input coordinate of the column's window
  std::vector<int64_t> run_end;    // first column past the run of column j

  explicit ColumnTile(int64_t capacity)
      : image_off(capacity), ih0(capacity), iw0(capacity), run_end(capacity) {}

  // The columns [first, first + n_columns) of a convolution reading a tensor of strides s.
  void fill(const ConvGeometry& g, int64_t first, int64_t n_columns, const Strides4& s) {
    q0 = first;
    count = n_columns;
    flat = runs_span_rows(g, s);
    for (int64_t j = 0; j < count; ++j) {
      const int64_t q = q0 + j, pixel = q % g.pixels();
      image_off[j] = (q / g.pixels()) * s.n;
      ih0[j] = (pixel / g.Q) * g.p.stride_h - g.p.pad_top;
      iw0[j] = (pixel % g.Q) * g.p.stride_w - g.p.pad_left;
    }
    const int64_t run = flat ? g.pixels() : g.Q;
    for (int64_t j = count - 1; j >= 0; --j) {
      const bool run_goes_on = j + 1 < count && (q0 + j + 1) % run != 0;
      run_end[j] = run_goes_on ? run_end[j + 1] : j + 1;
    }
  }

  // Offsets of the columns' output pixels in a tensor of output shape with strides s.
  void output_offsets(const ConvGeometry& g, const Strides4& s, int64_t* off) const {
    for (int64_t j = 0; j < count; ++j) {
      const int64_t q = q0 + j, pixel = q % g.pixels();
      off[j] = (q / g.pixels()) * s.n + (pixel / g.Q) * s.h + (pixel % g.Q) * s.w;
    }
  }
};

// Every im2col row (c, r, s) of a call, decoded once: channel offset in x and the dilated
// kernel offsets.
struct TapTable {
  std::vector<int64_t> c_off, dh, dw, rs;  // rs: r * S + s

  TapTable(const ConvGeometry& g, const Strides4& xs)
      : c_off(g.reduction()), dh(g.reduction()), dw(g.reduction()), rs(g.reduction()) {
    for (int64_t k = 0; k < g.reduction(); ++k) {
      const KernelTap tap(k, g);
      c_off[k] = tap.c * xs.c;
      dh[k] = tap.r * g.p.dilation_h;
      dw[k] = tap.s * g.p.dilation_w;
      rs[k] = tap.r * g.S + tap.s;
    }
  }
};

#ifdef CNNOPS_X86_INTRINSICS
// channels_to_planes for floats: 8 pixels x 8 channels at a time, transposed in registers.
// Blocks of kPixels pixels, channel by channel: a block's source stays in L1, and only 8
// planes take stores at a time (planes a multiple of 4 KiB apart share one set of L1:
// storing to all 64 of VGG's 224 x 224 planes by turns missed L1 on every store).
__attribute__((target("avx2"))) inline void channels_to_planes_avx2(const float* src,
                                                                    int64_t pixel, int64_t C,
                                                                    int64_t count, float* dst,
                                                                    int64_t plane) {
  constexpr int64_t kPixels = 32;
  const int64_t c8 = C / 8 * 8, i8 = count / 8 * 8;
  for (int64_t i0 = 0; i0 < i8; i0 += kPixels) {
    const int64_t i1 = std::min(i0 + kPixels, i8);
    for (int64_t c = 0; c < c8; c += 8) {
      for (int64_t i = i0; i < i1; i += 8) {
        __m256 r[8];
        for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(src + (i + k) * pixel + c);
        transpose_8x8_avx2(r);
        for (int k = 0; k < 8; ++k) _mm256_storeu_ps(dst + (c + k) * plane + i, r[k]);
      }
    }
    for (int64_t c = c8; c < C; ++c) {
      for (int64_t i = i0; i < i1; ++i) dst[c * plane + i] = src[i * pixel + c];
    }
  }
  for (int64_t i = i8; i < count; ++i) {
    for (int64_t c = 0; c < C; ++c) dst[c * plane + i] = src[i * pixel + c];
  }
}
#endif

// `count` pixels of C channels (channel c of pixel i at src[i * pixel + c]: a run of a
// channels-last row) as C rows of `count` values: dst[c * plane + i].
template <typename T>
void channels_to_planes(const T* src, int64_t pixel, int64_t C, int64_t count, T* dst,
                        int64_t plane) {
#ifdef CNNOPS_X86_INTRINSICS
  if constexpr (std::is_same_v<T, float>) {
    if (avx2_available()) {
      channels_to_planes_avx2(src, pixel, C, count, dst, plane);
      return;
    }
  }
#endif
  // Blocks of 16 pixels, whose channels stay in L1 while each plane's 16 values are written.
  constexpr int64_t kPixels = 16;
  for (int64_t i0 = 0; i0 < count; i0 += kPixels) {
    const int64_t n = std::min(kPixels, count - i0);
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t i = 0; i < n; ++i) dst[c * plane + i0 + i] = src[(i0 + i) * pixel + c];
    }
  }
}

// p[0, n) = 0 for the few columns of padding beside a row: stores written out for up to four
// (std::fill_n becomes a memset call, whose overhead per call was 15% of a channels-last
// grad_input of VGG's first layer, two such calls per row and channel), memset beyond.
template <typename T>
inline void zero_few(T* p, int64_t n) {
  if (n > 4) {
    std::fill_n(p, n, T(0));
    return;
  }
  if (n > 0) p[0] = T(0);
  if (n > 1) p[1] = T(0);
  if (n > 2) p[2] = T(0);
  if (n > 3) p[3] = T(0);
}

#ifdef CNNOPS_X86_INTRINSICS
// out[c] = c in [lo, hi) ? src[c] : 0 for c in [0, len), with masked vector loads and
// stores: one load and one store per 16 floats (8 doubles) however the run is cut by the
// padding. Masked-off lanes are never read (they may lie outside the tensor) nor written.
// Compiled for AVX-512F alone, inlined into the AVX-512 packers and pad_plane_avx512.
template <typename T>
__attribute__((target("avx512f"), always_inline)) inline void copy_masked_avx512(
    const T* src, int64_t lo, int64_t hi, int64_t len, T* out) {
  constexpr int64_t kLanes = 64 / sizeof(T);
  const auto below = [](int64_t n) -> uint32_t {  // lanes [0, n) of a vector
    return n <= 0 ? 0u : n >= kLanes ? (1u << kLanes) - 1 : (1u << n) - 1;
  };
  for (int64_t c = 0; c < len; c += kLanes) {
    const uint32_t load = below(hi - c) & ~below(lo - c), store = below(len - c);
    if constexpr (sizeof(T) == 4) {
      _mm512_mask_storeu_ps(out + c, static_cast<__mmask16>(store),
                            _mm512_maskz_loadu_ps(static_cast<__mmask16>(load), src + c));
    } else {
      _mm512_mask_storeu_pd(out + c, static_cast<__mmask8>(store),
                            _mm512_maskz_loadu_pd(static_cast<__mmask8>(load), src + c));
    }
  }
}

inline bool masked_copy_available() { return active_isa() == Isa::avx512; }

// One zero-padded plane of pad_planes (rows of unit stride, src_h apart): each row of wp
// elements one masked copy per 16 floats (8 doubles), the padding columns and rows stored
// as zeros by the same stores.
template <typename T>
__attribute__((target("avx512f"))) void pad_plane_avx512(const T* src, int64_t src_h, int64_t H,
                                                         int64_t W, int64_t pad_top,
                                                         int64_t left, int64_t hp, int64_t wp,
                                                         T* dst) {
  const int64_t width = std::min(W, wp - left);
  for (int64_t row = 0; row < hp; ++row) {
    const int64_t ih = row - pad_top;
    if (ih < 0 || ih >= H) {
      copy_masked_avx512(src, 0, 0, wp, dst + row * wp);  // no lane read
    } else {  // element c of the row is x's column c - left
      copy_masked_avx512(src + ih * src_h - left, left, left + width, wp, dst + row * wp);
    }
  }
}
#endif

// Copies x (the N x C planes of geometry g, any strides) into dst as zero-padded planes of
// hp x wp: plane (n, c) at dst + (n * C + c) * hp * wp, whose element (row, col) is
// x[n, c, row - pad_top, col - pad_left], zero outside x.
template <typename T>
void pad_planes(const T* x, const Strides4& xs, const ConvGeometry& g, int64_t hp, int64_t wp,
                T* dst) {
  const int64_t plane = hp * wp;
  if (xs.c == 1 && g.C > 1) {
    // Channels innermost (channels_last): plane by plane would read every element from a
    // different cache line. Row by row instead, each row's pixels transposed into its planes.
    at::parallel_for(0, g.N * hp, 1, [&](int64_t begin, int64_t end) {
      for (int64_t nr = begin; nr < end; ++nr) {
        const int64_t n = nr / hp, row = nr % hp, ih = row - g.p.pad_top;
        T* d = dst + n * g.C * plane + row * wp;
        if (ih < 0 || ih >= g.H) {
          for (int64_t c = 0; c < g.C; ++c) std::fill_n(d + c * plane, wp, T(0));
          continue;
        }
        const int64_t left = std::min(g.p.pad_left, wp), width = std::min(g.W, wp - left);
        for (int64_t c = 0; c < g.C; ++c) {
          zero_few(d + c * plane, left);
          zero_few(d + c * plane + left + width, wp - left - width);
        }
        channels_to_planes(x + n * xs.n + ih * xs.h, xs.w, g.C, width, d + left, plane);
      }
    });
    return;
  }
  at::parallel_for(0, g.N * g.C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const T* src = x + (nc / g.C) * xs.n + (nc % g.C) * xs.c;
      T* dst_plane = dst + nc * plane;
#ifdef CNNOPS_X86_INTRINSICS
      // (SimpleCNN's 64x64x7x7 -> 64 forward: element by element, the padded copy took a
      // tenth of the call)
      if (xs.w == 1 && masked_copy_available()) {
        pad_plane_avx512(src, xs.h, g.H, g.W, g.p.pad_top, std::min(g.p.pad_left, wp), hp, wp,
                         dst_plane);
        continue;
      }
#endif
      for (int64_t row = 0; row < hp; ++row) {
        T* d = dst_plane + row * wp;
        const int64_t ih = row - g.p.pad_top;
        if (ih < 0 || ih >= g.H) {
          std::fill_n(d, wp, T(0));
          continue;
        }
        const int64_t left = std::min(g.p.pad_left, wp), width = std::min(g.W, wp - left);
        zero_few(d, left);
        const T* s = src + ih * xs.h;
        for (int64_t iw = 0; iw < width; ++iw) d[left + iw] = s[iw * xs.w];
        zero_few(d + left + width, wp - left - width);
      }
    }
  });
}

// Copies contiguous planes (NCHW) into x (N x C x H x W, any strides). A channels-last x is
// written in blocks of 16 pixels, whose channels stay in L1 while each plane's run is read
// (element by element, every write would touch a new cache line).
template <typename T>
void from_planes(const T* planes, T* x, const Strides4& xs, int64_t N, int64_t C, int64_t H,
                 int64_t W) {
  constexpr int64_t kPixels = 16;
  const int64_t plane = H * W;
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nh = begin; nh < end; ++nh) {
      const int64_t n = nh / H, h = nh % H;
      T* row = x + n * xs.n + h * xs.h;
      const T* in = planes + n * C * plane + h * W;
      for (int64_t w0 = 0; w0 < W; w0 += kPixels) {
        const int64_t count = std::min(kPixels, W - w0);
        for (int64_t c = 0; c < C; ++c) {
          const T* pc = in + c * plane + w0;
          T* xc = row + w0 * xs.w + c * xs.c;
          for (int64_t i = 0; i < count; ++i) xc[i * xs.w] = pc[i];
        }
      }
    }
  });
}

// Small images make short runs (an output row of 2 to 8 columns), and packing run by run
// then costs more than the GEMM. A tile's input offsets are the same for every channel, so
// they are computed once per kernel tap (r, s) and each im2col row becomes a gather:
// off[rs * capacity + j] is column j's input offset for tap rs, or -1 in the padding.
struct TapGather {
  int64_t capacity;
  std::vector<int64_t> off;

  TapGather(const ConvGeometry& g, int64_t columns) : capacity(columns), off(g.R * g.S * columns) {}

  void fill(const ConvGeometry& g, const Strides4& xs, const ColumnTile& tile) {
    for (int64_t r = 0; r < g.R; ++r) {
      for (int64_t s = 0; s < g.S; ++s) {
        int64_t* o = off.data() + (r * g.S + s) * capacity;
        for (int64_t j = 0; j < tile.count; ++j) {
          const int64_t ih = tile.ih0[j] + r * g.p.dilation_h;
          const int64_t iw = tile.iw0[j] + s * g.p.dilation_w;
          const bool inside = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
          o[j] = inside ? tile.image_off[j] + ih * xs.h + iw * xs.w : -1;
        }
      }
    }
  }
};

// Whether a tile's runs, reading x of strides xs, are short enough for the gather packing.
inline bool prefer_gather(const ConvGeometry& g, const Strides4& xs) {
  return !runs_span_rows(g, xs) && (g.Q < 8 || g.p.stride_w > 1);
}

// B of the forward GEMM by gathers (see TapGather), in the layout of pack_im2col_panels.
template <typename T, int NR>
__attribute__((always_inline)) inline void pack_im2col_gather_body(
    const T* x, const TapTable& taps, const TapGather& gather, int64_t k0, int64_t kc,
    int64_t count, T* dst) {
  for (int64_t j0 = 0; j0 < count; j0 += NR) {
    const int64_t n = std::min<int64_t>(NR, count - j0);
    T* panel = dst + (j0 / NR) * kc * NR;
    for (int64_t kk = 0; kk < kc; ++kk) {
      const T* xc = x + taps.c_off[k0 + kk];
      const int64_t* o = gather.off.data() + taps.rs[k0 + kk] * gather.capacity + j0;
      T* out = panel + kk * NR;
      for (int64_t j = 0; j < n; ++j) out[j] = o[j] >= 0 ? xc[o[j]] : T(0);
      for (int64_t j = n; j < NR; ++j) out[j] = T(0);
    }
  }
}

template <typename T, int NR>
void pack_im2col_gather(const T* x, const TapTable& taps, const TapGather& gather, int64_t k0,
                        int64_t kc, int64_t count, T* dst) {
  pack_im2col_gather_body<T, NR>(x, taps, gather, k0, kc, count, dst);
}

// Where the run of columns [j, j + len) of im2col row k reads x: column c's value is
// x[base + c * src_step] for c in [lo, hi), zero (padding) elsewhere. base is an offset, as
// it may point outside x when the run starts in the padding.
struct RunSource {
  int64_t base, src_step, lo, hi;
};

inline RunSource run_source(const Strides4& xs, const ConvGeometry& g, const ColumnTile& tile,
                            const TapTable& taps, int64_t k, int64_t j, int64_t len) {
  const int64_t ih = tile.ih0[j] + taps.dh[k];
  int64_t lo = len, hi = len;
  const int64_t iw = tile.iw0[j] + taps.dw[k], sw = g.p.stride_w;
  if (tile.flat) {  // the run may span rows, all inside x
    lo = 0;
  } else if (ih >= 0 && ih < g.H && iw + (len - 1) * sw >= 0 && iw < g.W) {
    if (sw == 1) {  // runs are short and packed for every tile: no divisions here
      lo = std::max<int64_t>(-iw, 0);
      hi = std::min(len, g.W - iw);
    } else {
      lo = iw >= 0 ? 0 : ceil_div(-iw, sw);
      hi = std::min(len, (g.W - 1 - iw) / sw + 1);
    }
  }
  return {tile.image_off[j] + taps.c_off[k] + ih * xs.h + iw * xs.w, sw * xs.w, lo,
          std::max(lo, hi)};
}

// Writes a run of len columns whose source is src into out[0], out[step], ...
template <typename T>
inline void copy_run_from(const T* x, const RunSource& src, int64_t len, T* out, int64_t step) {
  if (step == 1 && src.src_step == 1) {  // loops the compiler vectorises, no memmove calls
    for (int64_t c = 0; c < src.lo; ++c) out[c] = T(0);
    for (int64_t c = src.lo; c < src.hi; ++c) out[c] = x[src.base + c];
    for (int64_t c = src.hi; c < len; ++c) out[c] = T(0);
    return;
  }
  for (int64_t c = 0; c < src.lo; ++c) out[c * step] = T(0);
  for (int64_t c = src.lo; c < src.hi; ++c) out[c * step] = x[src.base + c * src.src_step];
  for (int64_t c = src.hi; c < len; ++c) out[c * step] = T(0);
}

// Copies the run of columns [j, j + len) of im2col row k into out[0], out[step], ...:
// x values on one input row at a column stride of stride_w, zero where the window lies in
// the padding.
template <typename T>
inline void copy_run(const T* x, const Strides4& xs, const ConvGeometry& g, const ColumnTile& tile,
                     const TapTable& taps, int64_t k, int64_t j, int64_t len, T* out,
                     int64_t step) {
  copy_run_from(x, run_source(xs, g, tile, taps, k, j, len), len, out, step);
}

// B of the forward GEMM: im2col rows [k0, k0 + kc) x the tile's columns, in panels of NR
// columns (gemm.h), zero past the last column. `x` points at the group's first channel;
// the tile was filled with x's image stride. Copy(x, source, len, out) writes one run.
// Row by row across the panels: a 1x1 convolution's rows are then read along memory. (Panel
// by panel, NR columns of each of kc rows, read lines 784 bytes apart on MobileNet's 14x14
// planes, twice each as rows straddle lines: its 1x1 layers ran 1.2-1.4x slower on Zen 3.)
template <typename T, int NR, typename Copy>
__attribute__((always_inline)) inline void pack_im2col_panels_with(const T* x, const Strides4& xs, const ConvGeometry& g,
                                    const TapTable& taps, int64_t k0, int64_t kc,
                                    const ColumnTile& tile, T* dst, Copy copy) {
  for (int64_t kk = 0; kk < kc; ++kk) {
    for (int64_t j0 = 0; j0 < tile.count; j0 += NR) {
      const int64_t j_end = std::min<int64_t>(j0 + NR, tile.count);
      T* out = dst + (j0 / NR) * kc * NR + kk * NR;
      for (int64_t j = j0; j < j_end;) {
        const int64_t e = std::min(tile.run_end[j], j_end);
        copy(run_source(xs, g, tile, taps, k0 + kk, j, e - j), e - j, out + (j - j0));
        j = e;
      }
      for (int64_t j = j_end - j0; j < NR; ++j) out[j] = T(0);
    }
  }
}

template <typename T, int NR>
void pack_im2col_panels(const T* x, const Strides4& xs, const ConvGeometry& g,
                        const TapTable& taps, int64_t k0, int64_t kc, const ColumnTile& tile,
                        T* dst) {
  pack_im2col_panels_with<T, NR>(
      x, xs, g, taps, k0, kc, tile, dst,
      [x](const RunSource& src, int64_t len, T* out) { copy_run_from(x, src, len, out, 1); });
}

#ifdef CNNOPS_X86_INTRINSICS
// The same, built for AVX-512F: a unit-stride run is one masked load and store per vector.
template <typename T>
struct MaskedRunCopy {
  const T* x;
  __attribute__((target("avx512f"))) void operator()(const RunSource& src, int64_t len,
                                                     T* out) const {
    if (src.src_step == 1) {
      copy_masked_avx512(x + src.base, src.lo, src.hi, len, out);
      return;
    }
    copy_run_from(x, src, len, out, 1);
  }
};

// The gather packing built for AVX-512F, where the compiler turns the loop into masked
// vector gathers.
template <typename T, int NR>
__attribute__((target("avx512f"))) void pack_im2col_gather_avx512(
    const T* x, const TapTable& taps, const TapGather& gather, int64_t k0, int64_t kc,
    int64_t count, T* dst) {
  pack_im2col_gather_body<T, NR>(x, taps, gather, k0, kc, count, dst);
}

template <typename T, int NR>
__attribute__((target("avx512f"))) void pack_im2col_panels_avx512(
    const T* x, const Strides4& xs, const ConvGeometry& g, const TapTable& taps, int64_t k0,
    int64_t kc, const ColumnTile& tile, T* dst) {
  pack_im2col_panels_with<T, NR>(x, xs, g, taps, k0, kc, tile, dst, MaskedRunCopy<T>{x});
}
#endif

// An operand of the grad_weight GEMM: im2col rows [k0, k0 + kc) in panels of NR of them,
// the reduction running over the tile's columns, zero past the last row. (B when dW is
// computed as dY * X_col^T, A, with NR = MR, when as X_col * dY^T.)
template <typename T, int NR>
void pack_im2col_transposed(const T* x, const Strides4& xs, const ConvGeometry& g,
                            const TapTable& taps, int64_t k0, int64_t kc, const ColumnTile& tile,
                            const TapGather* gather, T* dst) {
  const int64_t cols = tile.count;
#ifdef CNNOPS_X86_INTRINSICS
  if constexpr (sizeof(T) == 4 && transposable_width(NR)) {
    if (xs.w == 1 && g.p.stride_w == 1 && tile.flat && avx2_available()) {
      // NCHW, every tap inside (a 1x1 convolution): each row's runs lie along memory
      for (int64_t p = 0; p < kc; p += NR) {
        const int64_t live = std::min<int64_t>(NR, kc - p);
        T* panel = dst + (p / NR) * cols * NR;
        for (int64_t j = 0; j < cols;) {
          const int64_t e = tile.run_end[j];
          const float* src[NR];
          for (int64_t kk = 0; kk < live; ++kk) {
            src[kk] = x + run_source(xs, g, tile, taps, k0 + p + kk, j, e - j).base;
          }
          transpose_rows_avx2<NR>(src, static_cast<int>(live), e - j, panel + j * NR);
          j = e;
        }
      }
      return;
    }
  }
#endif
  if (xs.c == 1 && g.C > 1 && tile.flat) {
    // Channels innermost (channels_last) and every tap inside (a 1x1 convolution): a panel
    // row, one column's NR taps, is read along memory (a run of channels), where a tap at a
    // time would read every element from a line of its own (alternating builds, 10th
    // percentile: 8x1024x7x7 -> 1024 grad_weight 4.6-4.9 -> 2.7-3.1 ms, 8x32x112x112 -> 64
    // 8.0-10.4 -> 6.7-7.8 ms). With padding, the bounds checks cost more than that saves.
    for (int64_t p = 0; p < kc; p += NR) {
      const int64_t live = std::min<int64_t>(NR, kc - p);
      int64_t at[NR];  // the panel's taps' offsets from a window's top-left input pixel
      for (int64_t kk = 0; kk < live; ++kk) {
        const int64_t k = k0 + p + kk;
        at[kk] = taps.c_off[k] + taps.dh[k] * xs.h + taps.dw[k] * xs.w;
      }
      T* panel = dst + (p / NR) * cols * NR;
      for (int64_t j = 0; j < cols; ++j) {
        T* out = panel + j * NR;
        const T* window = x + tile.image_off[j] + tile.ih0[j] * xs.h + tile.iw0[j] * xs.w;
        for (int64_t kk = 0; kk < live; ++kk) out[kk] = window[at[kk]];
        for (int64_t kk = live; kk < NR; ++kk) out[kk] = T(0);
      }
    }
    return;
  }
  for (int64_t kk = 0; kk < round_up(kc, NR); ++kk) {
    T* out = dst + (kk / NR) * cols * NR + kk % NR;
    if (kk >= kc) {
      for (int64_t j = 0; j < cols; ++j) out[j * NR] = T(0);
      continue;
    }
    if (gather != nullptr) {  // short runs: one gather per row (TapGather)
      const T* xc = x + taps.c_off[k0 + kk];
      const int64_t* o = gather->off.data() + taps.rs[k0 + kk] * gather->capacity;
      for (int64_t j = 0; j < cols; ++j) out[j * NR] = o[j] >= 0 ? xc[o[j]] : T(0);
      continue;
    }
    for (int64_t j = 0; j < cols;) {
      const int64_t e = tile.run_end[j];
      copy_run(x, xs, g, tile, taps, k0 + kk, j, e - j, out + j * NR, NR);
      j = e;
    }
  }
}

// A matrix read through offset tables: element (i, j) = base[row_off[i] + col_off[j]].
template <typename T>
struct OffsetMatrix {
  const T* base;
  const int64_t* row_off;
  const int64_t* col_off;
};

// Packs rows [m0, m0 + rows) x reduction [k0, k0 + kc) of A into MR-row panels (gemm.h),
// zero past the last row. Reads run along the reduction, the contiguous direction of
// weights and of NCHW activations.
template <typename T, int MR>
void pack_a_panels(const OffsetMatrix<T>& A, int64_t m0, int64_t rows, int64_t k0, int64_t kc,
                   T* dst) {
  const int64_t* col = A.col_off + k0;
  // Columns at unit stride (a contiguous weight): read each row straight, MR rows at once.
  // Or in runs at unit stride (NCHW grad_output: a run per image's pixels), read run by run
  // where the runs are long enough for the AVX2 transposes.
  int64_t breaks = 0;
  for (int64_t k = 1; k < kc; ++k) breaks += col[k] != col[k - 1] + 1;
  const bool unit = breaks == 0;
  const bool long_runs = kc >= 8 * (breaks + 1);
  // All rows adjacent (W^T for grad_input, a channels-last grad_output): each column's
  // values are one run. The whole panels are filled kColumnsAtOnce columns at a time, so that
  // each line of those runs is read once: a panel at a time, each column's line served one
  // panel and was evicted before the next (columns 4 KiB apart, W^T of a 1024-channel layer,
  // share one L1 set, of 8 lines): MobileNet's 1024 -> 1024 grad_input spent a fifth of its
  // time here on Zen 3.
  bool adjacent_rows = !unit;
  for (int64_t i = 1; i < rows && adjacent_rows; ++i) {
    adjacent_rows = A.row_off[m0 + i] == A.row_off[m0] + i;
  }
  int64_t first_row = 0;  // of the panels left to the loop below
  if (adjacent_rows) {
    constexpr int64_t kColumnsAtOnce = 8;
    const T* first = A.base + A.row_off[m0];
    first_row = rows / MR * MR;
    for (int64_t kb = 0; kb < kc; kb += kColumnsAtOnce) {
      const int64_t k_end = std::min(kc, kb + kColumnsAtOnce);
      for (int64_t i = 0; i < first_row; i += MR) {
        T* panel = dst + (i / MR) * kc * MR;
        for (int64_t k = kb; k < k_end; ++k) {
          for (int r = 0; r < MR; ++r) panel[k * MR + r] = first[col[k] + i + r];
        }
      }
    }
  }
  for (int64_t i = first_row; i < rows; i += MR) {
    T* panel = dst + (i / MR) * kc * MR;
    const int live = static_cast<int>(std::min<int64_t>(MR, rows - i));
#ifdef CNNOPS_X86_INTRINSICS
    if constexpr (sizeof(T) == 4 && transposable_width(MR)) {
      if (long_runs && avx2_available()) {
        for (int64_t k = 0; k < kc;) {
          int64_t e = k + 1;
          while (e < kc && col[e] == col[e - 1] + 1) ++e;
          const T* row[MR];
          for (int r = 0; r < live; ++r) row[r] = A.base + A.row_off[m0 + i + r] + col[k];
          transpose_rows_avx2<MR>(row, live, e - k, panel + k * MR);
          k = e;
        }
        continue;
      }
    }
#endif
    if (unit) {
      const T* row[MR];
      for (int r = 0; r < live; ++r) row[r] = A.base + A.row_off[m0 + i + r] + col[0];
      if (live == MR) {
        for (int64_t k = 0; k < kc; ++k) {
          for (int r = 0; r < MR; ++r) panel[k * MR + r] = row[r][k];
        }
        continue;
      }
    }
    // Adjacent rows (a channels-last grad_output, whose channels are the rows): each
    // column's MR values are one contiguous run.
    bool adjacent = i + MR <= rows;
    for (int r = 1; r < MR && adjacent; ++r) {
      adjacent = A.row_off[m0 + i + r] == A.row_off[m0 + i] + r;
    }
    if (adjacent) {
      const T* first = A.base + A.row_off[m0 + i];
      for (int64_t k = 0; k < kc; ++k) {
        for (int r = 0; r < MR; ++r) panel[k * MR + r] = first[col[k] + r];
      }
      continue;
    }
    for (int r = 0; r < MR; ++r) {
      if (i + r >= rows) {
        for (int64_t k = 0; k < kc; ++k) panel[k * MR + r] = T(0);
        continue;
      }
      const T* row = A.base + A.row_off[m0 + i + r];
      for (int64_t k = 0; k < kc; ++k) panel[k * MR + r] = row[col[k]];
    }
  }
}

// Packs reduction [k0, k0 + kc) x columns [0, cols) of B into NR-column panels. Where a
// column's reduction runs along memory (B = W^T: the flat direct and channels-last
// convolutions, whose columns lie a whole filter apart), each column is read a cache line at
// a time: a panel row at a time would read NR lines a filter apart, which for filters of a
// multiple of 1 KiB fall into a few sets of L1 that cannot hold them (MobileNet's 1024 ->
// 1024 1x1 layer: every load missed). Other B (dY's pixels, contiguous along a row) are read
// a panel row at a time.
template <typename T, int NR>
void pack_b_panels(const OffsetMatrix<T>& B, int64_t k0, int64_t kc, int64_t cols, T* dst) {
  constexpr int64_t kChunk = 64 / sizeof(T);  // a cache line of a contiguous column
  const bool along_columns = kc > 1 && B.row_off[k0 + 1] - B.row_off[k0] == 1;
  for (int64_t j = 0; j < cols; j += NR, dst += kc * NR) {
    const int64_t n = std::min<int64_t>(NR, cols - j);
    if (!along_columns) {
      for (int64_t k = 0; k < kc; ++k) {
        const T* row = B.base + B.row_off[k0 + k];
        const int64_t* col = B.col_off + j;
        T* out = dst + k * NR;
        for (int64_t c = 0; c < n; ++c) out[c] = row[col[c]];
        for (int64_t c = n; c < NR; ++c) out[c] = T(0);
      }
      continue;
    }
    for (int64_t k = 0; k < kc; k += kChunk) {
      const int64_t len = std::min(kChunk, kc - k);
      const int64_t* row = B.row_off + k0 + k;
      T* out = dst + k * NR;
      for (int64_t c = 0; c < n; ++c) {
        const T* column = B.base + B.col_off[j + c];
        for (int64_t kk = 0; kk < len; ++kk) out[kk * NR + c] = column[row[kk]];
      }
      for (int64_t kk = 0; kk < len; ++kk) {
        for (int64_t c = n; c < NR; ++c) out[kk * NR + c] = T(0);
      }
    }
  }
}

// The packers for the micro-kernel in use: its MR and NR are known at run time only, and
// either may be the panel width of either operand.
#define CNNOPS_DISPATCH_WIDTH(width, NAME, ...)                                   \
  switch (width) {                                                               \
    case 3: { constexpr int NAME = 3; __VA_ARGS__; break; }                      \
    case 4: { constexpr int NAME = 4; __VA_ARGS__; break; }                      \
    case 6: { constexpr int NAME = 6; __VA_ARGS__; break; }                      \
    case 8: { constexpr int NAME = 8; __VA_ARGS__; break; }                      \
    case 12: { constexpr int NAME = 12; __VA_ARGS__; break; }                    \
    case 16: { constexpr int NAME = 16; __VA_ARGS__; break; }                    \
    case 32: { constexpr int NAME = 32; __VA_ARGS__; break; }                    \
    default: TORCH_INTERNAL_ASSERT(false, "unexpected micro-kernel panel width ", width); \
  }

template <typename T>
void pack_a(const OffsetMatrix<T>& A, int64_t m0, int64_t rows, int64_t k0, int64_t kc,
            int64_t width, T* dst) {
  CNNOPS_DISPATCH_WIDTH(width, MR, pack_a_panels<T, MR>(A, m0, rows, k0, kc, dst))
}

template <typename T>
void pack_b(const OffsetMatrix<T>& B, int64_t k0, int64_t kc, int64_t cols, int64_t width,
            T* dst) {
  CNNOPS_DISPATCH_WIDTH(width, NR, pack_b_panels<T, NR>(B, k0, kc, cols, dst))
}

template <typename T>
void pack_im2col(const T* x, const Strides4& xs, const ConvGeometry& g, const TapTable& taps,
                 int64_t k0, int64_t kc, const ColumnTile& tile, bool transposed, int64_t width,
                 T* dst, const TapGather* gather = nullptr) {
  if (transposed) {
    CNNOPS_DISPATCH_WIDTH(width, NR, pack_im2col_transposed<T, NR>(x, xs, g, taps, k0, kc, tile,
                                                                   gather, dst))
    return;
  }
#ifdef CNNOPS_X86_INTRINSICS
  if (masked_copy_available()) {
    CNNOPS_DISPATCH_WIDTH(width, NR,
                          pack_im2col_panels_avx512<T, NR>(x, xs, g, taps, k0, kc, tile, dst))
    return;
  }
#endif
  CNNOPS_DISPATCH_WIDTH(width, NR, pack_im2col_panels<T, NR>(x, xs, g, taps, k0, kc, tile, dst))
}

template <typename T>
void pack_im2col_by_gather(const T* x, const TapTable& taps, const TapGather& gather, int64_t k0,
                           int64_t kc, int64_t count, int64_t width, T* dst) {
#ifdef CNNOPS_X86_INTRINSICS
  if (masked_copy_available()) {
    CNNOPS_DISPATCH_WIDTH(width, NR,
                          pack_im2col_gather_avx512<T, NR>(x, taps, gather, k0, kc, count, dst))
    return;
  }
#endif
  CNNOPS_DISPATCH_WIDTH(width, NR, pack_im2col_gather<T, NR>(x, taps, gather, k0, kc, count, dst))
}

#undef CNNOPS_DISPATCH_WIDTH

// Offsets of the (c, r, s) taps of a weight tensor, in im2col row order.
inline std::vector<int64_t> weight_tap_offsets(const ConvGeometry& g, const Strides4& ws) {
  std::vector<int64_t> off(g.reduction());
  for (int64_t k = 0; k < g.reduction(); ++k) {
    const KernelTap tap(k, g);
    off[k] = tap.c * ws.c + tap.r * ws.h + tap.s * ws.w;
  }
  return off;
}

inline std::vector<int64_t> strided_offsets(int64_t count, int64_t stride) {
  std::vector<int64_t> off(count);
  for (int64_t i = 0; i < count; ++i) off[i] = i * stride;
  return off;
}

}  // namespace cnnops::cpu
