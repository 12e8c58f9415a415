// The plane layouts of the fast CPU depthwise kernels (version 2 in cpu/depthwise.cpp),
// shared with the fused depthwise-separable operator (cpu/depthwise_separable.cpp): the
// zero-padded, phase-split "strips" whose taps are 1-D loops, and plane copies in and out.
//
// Letters as in cpu/depthwise.cpp: N batch, C input channels, H x W input, M = C * mult
// depthwise output channels, R x S kernel, P x Q output.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/conv2d_params.h"
#include "cpu/depthwise.h"

namespace cnnops::cpu::dw {

// Elements of the strips (per channel) one task aims to keep in L2.
constexpr int64_t kStripBudget = 32 * 1024;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

struct Strides4 {
  int64_t n, c, h, w;
  explicit Strides4(const at::Tensor& t) : n(t.stride(0)), c(t.stride(1)), h(t.stride(2)), w(t.stride(3)) {}
  Strides4(int64_t n_, int64_t c_, int64_t h_, int64_t w_) : n(n_), c(c_), h(h_), w(w_) {}
};

struct DwGeometry {
  int64_t N, C, H, W, M, mult, R, S, P, Q;
  Conv2dParams p;

  DwGeometry(c10::IntArrayRef input_size, c10::IntArrayRef weight_size, int64_t out_h,
             int64_t out_w, const Conv2dParams& params)
      : N(input_size[0]), C(input_size[1]), H(input_size[2]), W(input_size[3]),
        M(weight_size[0]), mult(weight_size[0] / input_size[1]), R(weight_size[2]),
        S(weight_size[3]), P(out_h), Q(out_w), p(params) {}

  int64_t taps() const { return R * S; }
};

// Channels per task: one plane, or 64 bytes of channels when channels are innermost.
template <typename T>
int64_t channel_block(const at::Tensor& t, int64_t channels) {
  const bool channels_inner = t.stride(1) < t.stride(3) || (t.size(3) == 1 && t.stride(1) == 1);
  return channels_inner ? std::min<int64_t>(channels, 64 / sizeof(T)) : 1;
}

// The weight's taps, contiguous: taps[k * R * S + r * S + s] = w[k, 0, r, s]. A contiguous
// weight is copied whole (element by element, with the strides, this took ~10 us of a 0.16 ms
// forward pass of 8x1024x7x7, while the other thread waited).
template <typename T>
std::vector<T> weight_taps(const at::Tensor& weight, const DwGeometry& g) {
  const T* w = weight.data_ptr<T>();
  if (weight.is_contiguous()) return std::vector<T>(w, w + g.M * g.taps());
  std::vector<T> taps(g.M * g.taps());
  const Strides4 ws(weight);
  for (int64_t k = 0; k < g.M; ++k) {
    for (int64_t r = 0; r < g.R; ++r) {
      for (int64_t s = 0; s < g.S; ++s) taps[(k * g.R + r) * g.S + s] = w[k * ws.n + r * ws.h + s * ws.w];
    }
  }
  return taps;
}

// The indices [first, first + count) of a phase's sub-grid: v with v*stride + phase - pad
// inside [0, extent).
struct PhaseRange {
  int64_t first, count;
  PhaseRange(int64_t phase, int64_t pad, int64_t stride, int64_t extent) {
    first = pad > phase ? ceil_div(pad - phase, stride) : 0;
    const int64_t last = extent - 1 + pad - phase;
    count = last < 0 ? 0 : std::max<int64_t>(0, last / stride + 1 - first);
  }
};

// Where tap (r, s) reads in a strip (below), in parts that do not depend on the strip's
// size: sub-plane `phase`, `row` sub-plane rows and `col` columns past output 0's window.
struct StripTaps {
  std::vector<int64_t> phase, row, col;

  explicit StripTaps(const DwGeometry& g) : phase(g.taps()), row(g.taps()), col(g.taps()) {
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t dh = r * g.p.dilation_h;
      for (int64_t s = 0; s < g.S; ++s) {
        const int64_t dw = s * g.p.dilation_w, t = r * g.S + s;
        phase[t] = (dh % g.p.stride_h) * g.p.stride_w + dw % g.p.stride_w;
        row[t] = dh / g.p.stride_h;
        col[t] = dw / g.p.stride_w;
      }
    }
  }
};

// The strip of output rows [p0, p0 + rows): the zero-padded input rows they read, split into
// stride_h x stride_w phase sub-planes of sub_h x sub_w. Sub-plane (a, b) holds padded input
// element (p0 * stride_h + v * stride_h + a, u * stride_w + b) at v * sub_w + u, so output
// (p0 + i / sub_w, i % sub_w) reads, for tap t, element i + offset(t): the flattened output
// index i runs over rows of sub_w >= Q columns, the last sub_w - Q of them discarded.
struct StripLayout {
  int64_t p0, rows;
  int64_t sub_h, sub_w, plane;
  int64_t out_len;  // rows * sub_w: length of the flattened output
  int64_t size;     // elements of one channel's strip, slack for the 1-D loops included

  StripLayout(const DwGeometry& g, int64_t first_row, int64_t row_count)
      : p0(first_row), rows(row_count) {
    const int64_t in_rows = (rows - 1) * g.p.stride_h + (g.R - 1) * g.p.dilation_h + 1;
    const int64_t in_cols = (g.Q - 1) * g.p.stride_w + (g.S - 1) * g.p.dilation_w + 1;
    sub_h = ceil_div(in_rows, g.p.stride_h);
    sub_w = ceil_div(in_cols, g.p.stride_w);
    plane = sub_h * sub_w;
    out_len = rows * sub_w;
    // An offset is below (sh*sw - 1) * plane + (sub_h - rows) * sub_w + sub_w, and the loops
    // read round_up(out_len, kDwBlock) past it.
    size = g.p.stride_h * g.p.stride_w * plane + sub_w + kDwBlock;
  }

  void offsets(const StripTaps& taps, int64_t* out) const {
    for (size_t t = 0; t < taps.phase.size(); ++t) {
      out[t] = taps.phase[t] * plane + taps.row[t] * sub_w + taps.col[t];
    }
  }

  bool same_as(const StripLayout& o) const { return p0 == o.p0 && rows == o.rows; }
};

// One thread's strips for a block of channels. Which elements are zero padding depends on
// the layout alone, so the buffer is cleared only when the layout changes, and a fill then
// copies just the input rows in.
template <typename T>
class StripBuffer {
 public:
  StripBuffer(int64_t channels, const StripLayout& largest, const DwGeometry& g)
      : g_(g), data_(channels * largest.size), layout_(largest), first_row_(g.p.stride_h),
        rows_(g.p.stride_h), stream_phase_(g.p.stride_w), stream_col_(g.p.stride_w),
        streams_(g.p.stride_w) {
    layout_.rows = -1;  // nothing prepared yet
    // input column iw goes to stream f = iw % sw: sub-plane column phase (f + pad_left) % sw,
    // starting at sub-plane column (f + pad_left) / sw
    for (int64_t f = 0; f < g.p.stride_w; ++f) {
      stream_phase_[f] = (f + g.p.pad_left) % g.p.stride_w;
      stream_col_[f] = (f + g.p.pad_left) / g.p.stride_w;
    }
    // input columns [0, cols_) land inside the sub-planes (padded column < sw * sub_w)
    cols_ = std::min(g.W, g.p.stride_w * largest.sub_w - g.p.pad_left);
  }

  // Strip ch (at strip(ch, L)) receives channel ch of x (at x + ch * xs.c), ch < count.
  void fill(const T* x, const Strides4& xs, int64_t count, const StripLayout& L) {
    const int64_t sh = g_.p.stride_h;
    if (!L.same_as(layout_)) prepare(L);
    if (cols_ <= 0) return;
    for (int64_t a = 0; a < sh; ++a) {
      if (rows_[a] <= 0) continue;
      const int64_t ih = (L.p0 + first_row_[a]) * sh + a - g_.p.pad_top;
      if (xs.w == 1) {  // whole planes, vectorised
        for (int64_t ch = 0; ch < count; ++ch) {
          set_streams(ch, a, first_row_[a]);
          deinterleave_rows(rows_[a], cols_, static_cast<int>(g_.p.stride_w),
                            x + ch * xs.c + ih * xs.h, sh * xs.h, streams_.data(), L.sub_w);
        }
        continue;
      }
      // Strided columns (channels_last): rows outermost, so that a row stays in L1 while
      // every channel of the block is copied from it.
      for (int64_t v = 0; v < rows_[a]; ++v) {
        for (int64_t ch = 0; ch < count; ++ch) {
          set_streams(ch, a, first_row_[a] + v);
          const T* src = x + ch * xs.c + (ih + v * sh) * xs.h;
          for (int64_t f = 0; f < g_.p.stride_w; ++f) {
            T* dst = streams_[f];
            for (int64_t i = 0, iw = f; iw < cols_; ++i, iw += g_.p.stride_w) dst[i] = src[iw * xs.w];
          }
        }
      }
    }
  }

  const T* strip(int64_t ch) const { return data_.data() + ch * layout_.size; }

 private:
  void prepare(const StripLayout& L) {
    std::fill(data_.begin(), data_.end(), T(0));
    layout_ = L;
    for (int64_t a = 0; a < g_.p.stride_h; ++a) {
      // sub-plane rows v whose input row (p0 + v) * sh + a - pad_top lies inside the input
      const PhaseRange vr(a + L.p0 * g_.p.stride_h, g_.p.pad_top, g_.p.stride_h, g_.H);
      first_row_[a] = vr.first;
      rows_[a] = std::min(vr.count, L.sub_h - vr.first);
    }
  }

  // streams_[f]: where input columns f, f + sw, ... of sub-plane row (a, v) go.
  void set_streams(int64_t ch, int64_t a, int64_t v) {
    const StripLayout& L = layout_;
    T* base = data_.data() + ch * L.size + a * g_.p.stride_w * L.plane + v * L.sub_w;
    for (size_t f = 0; f < streams_.size(); ++f) {
      streams_[f] = base + stream_phase_[f] * L.plane + stream_col_[f];
    }
  }

  const DwGeometry& g_;
  std::vector<T> data_;
  StripLayout layout_;
  std::vector<int64_t> first_row_, rows_;  // per row phase a: the sub-plane rows with input
  std::vector<int64_t> stream_phase_, stream_col_;
  std::vector<T*> streams_;
  int64_t cols_;
};

// dst[plane * dst_c + row * dst_h + col * dst_w] = src[plane * src_plane + row * src_pitch + col]
// for every plane < planes, row < rows, col < cols.
template <typename T>
void store_planes(const T* src, int64_t src_plane, int64_t src_pitch, int64_t planes,
                  int64_t rows, int64_t cols, T* dst, int64_t dst_c, int64_t dst_h,
                  int64_t dst_w) {
  if (dst_w == 1) {
    for (int64_t plane = 0; plane < planes; ++plane) {
      const T* s = src + plane * src_plane;
      interleave_rows(rows, cols, 1, &s, src_pitch, dst + plane * dst_c, dst_h);
    }
    return;
  }
  for (int64_t row = 0; row < rows; ++row) {  // channels_last: the row stays in L1
    for (int64_t plane = 0; plane < planes; ++plane) {
      const T* s = src + plane * src_plane + row * src_pitch;
      T* d = dst + plane * dst_c + row * dst_h;
      for (int64_t col = 0; col < cols; ++col) d[col * dst_w] = s[col];
    }
  }
}

// The inverse: dst[plane * dst_plane + row * dst_pitch + col] = src[...] for col < cols.
template <typename T>
void load_planes(const T* src, int64_t src_c, int64_t src_h, int64_t src_w, int64_t planes,
                 int64_t rows, int64_t cols, T* dst, int64_t dst_plane, int64_t dst_pitch) {
  if (src_w == 1) {
    for (int64_t plane = 0; plane < planes; ++plane) {
      T* d = dst + plane * dst_plane;
      deinterleave_rows(rows, cols, 1, src + plane * src_c, src_h, &d, dst_pitch);
    }
    return;
  }
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t plane = 0; plane < planes; ++plane) {
      const T* s = src + plane * src_c + row * src_h;
      T* d = dst + plane * dst_plane + row * dst_pitch;
      for (int64_t col = 0; col < cols; ++col) d[col] = s[col * src_w];
    }
  }
}

// The small-plane geometry of a correlation of `in` (H x W planes) giving P x Q planes, or
// nullopt where the kernel does not apply: column strides other than 1, output rows wider
// than a vector, stride_w other than 1 and 2, input rows over two vectors at stride_w 2, more
// than kSmallPlanesMaxS column taps.
template <typename T>
inline std::optional<SmallPlanes> small_planes(int64_t H, int64_t W, const Strides4& in, int64_t P,
                                        int64_t Q, const Strides4& out, int64_t R, int64_t S,
                                        int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                                        int64_t pad_top, int64_t pad_left, int64_t mult) {
  const SmallPlanes g{H, W, in.h, P, Q, out.h, R, S, sh, sw, dh, dw, pad_top, pad_left, mult};
  if (in.w != 1 || out.w != 1 || S > kSmallPlanesMaxS) return std::nullopt;
  if (!small_planes_fit<T>(g, false)) return std::nullopt;
  return g;
}

// The forward pass of g as small planes, input and output strides as given.
template <typename T>
std::optional<SmallPlanes> small_planes_forward(const DwGeometry& g, const Strides4& in,
                                                const Strides4& out) {
  return small_planes<T>(g.H, g.W, in, g.P, g.Q, out, g.R, g.S, g.p.stride_h, g.p.stride_w,
                         g.p.dilation_h, g.p.dilation_w, g.p.pad_top, g.p.pad_left, g.mult);
}

// Whether the forward pass takes the strips where the small-plane kernel applies too: at
// stride 1 and dilation 1, a 3x3 kernel over rows of a vector or more runs the grid kernel of
// taps_correlate_rows there (each input vector loaded once for three output rows, five rows
// at a time), which beats the small-plane kernel's row at a time, copy into the strips
// included (MobileNet's 14x14 layer on Zen 1: 1.7x fewer CPU samples).
template <typename T>
bool grid_beats_small_planes(const DwGeometry& g) {
  return g.R == 3 && g.S == 3 && g.p.stride_h == 1 && g.p.stride_w == 1 &&
         g.p.dilation_h == 1 && g.Q >= strip_lanes<T>();
}

// Output rows per strip, so that a task's strips stay near kStripBudget elements.
inline int64_t strip_rows(const DwGeometry& g, int64_t channels) {
  const StripLayout one_row(g, 0, 1);
  return std::clamp<int64_t>(kStripBudget / (channels * g.p.stride_h * one_row.sub_w), 1, g.P);
}

}  // namespace cnnops::cpu::dw
