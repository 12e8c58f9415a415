// Channels-last depthwise helpers (channel multiplier 1), shared by the depthwise kernels
// (cpu/depthwise.cpp) and the fused depthwise-separable forward pass
// (cpu/depthwise_separable.cpp): the taps as pixel offsets, the weights as rows of channels,
// and one output row of the correlation, vectors along the channels (channels_correlate).
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/depthwise.h"
#include "cpu/depthwise_planes.h"

namespace cnnops::cpu::dw {

// Taps as offsets: tap t of output pixel (oh, ow) reads source pixel
// (oh * sh + dh[t], ow * sw + dw[t]) and weight row tap[t] (r * S + s).
struct ChannelTaps {
  std::vector<int64_t> dh, dw, tap;
  int64_t sh, sw;

  // The forward pass and grad_weight: every tap, dh = r * dilation - pad.
  explicit ChannelTaps(const DwGeometry& g) : sh(g.p.stride_h), sw(g.p.stride_w) {
    for (int64_t r = 0; r < g.R; ++r) {
      for (int64_t s = 0; s < g.S; ++s) {
        dh.push_back(r * g.p.dilation_h - g.p.pad_top);
        dw.push_back(s * g.p.dilation_w - g.p.pad_left);
        tap.push_back(r * g.S + s);
      }
    }
  }

  // grad_input on input phase (a, b), the sub-grid of rows a + i * stride_h and columns
  // b + k * stride_w: the taps whose outputs reach it, as offsets in (i, k) units. Input row
  // a + i * sh gets tap r from output row i + (a + pad - r * dilation) / sh, where divisible.
  ChannelTaps(const DwGeometry& g, int64_t a, int64_t b) : sh(1), sw(1) {
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t h = a + g.p.pad_top - r * g.p.dilation_h;
      if (((h % g.p.stride_h) + g.p.stride_h) % g.p.stride_h != 0) continue;
      for (int64_t s = 0; s < g.S; ++s) {
        const int64_t v = b + g.p.pad_left - s * g.p.dilation_w;
        if (((v % g.p.stride_w) + g.p.stride_w) % g.p.stride_w != 0) continue;
        dh.push_back(h / g.p.stride_h);
        dw.push_back(v / g.p.stride_w);
        tap.push_back(r * g.S + s);
      }
    }
  }

  int ntaps() const { return static_cast<int>(dh.size()); }
};

// The weight's taps as rows of channels: wt[(r * S + s) * C + c] = w[c, 0, r, s].
template <typename T>
std::vector<T> channel_weights(const at::Tensor& weight, const DwGeometry& g) {
  std::vector<T> wt(g.taps() * g.C);
  const T* w = weight.data_ptr<T>();
  const Strides4 ws(weight);
  for (int64_t t = 0; t < g.taps(); ++t) {
    for (int64_t c = 0; c < g.C; ++c) wt[t * g.C + c] = w[c * ws.n + (t / g.S) * ws.h + (t % g.S) * ws.w];
  }
  return wt;
}

// Calls fn(q0, count, kept, edge) for the output pixels of row oh of image n: once for the
// interior run (edge false), where every tap whose source row exists also has its column,
// and once per edge pixel (edge true), with that pixel's taps. src[i] for i < kept is tap
// index[i]'s source pixel for q0 (source x of H x W, strides xs).
template <typename T, typename Fn>
void for_pixel_runs(const ChannelTaps& taps, const T* x, const Strides4& xs, int64_t H,
                    int64_t W, int64_t n, int64_t oh, int64_t Q, std::vector<const T*>& src,
                    std::vector<int>& index, const Fn& fn) {
  const int ntaps = taps.ntaps();
  int64_t lo = 0, hi = Q;
  for (int t = 0; t < ntaps; ++t) {
    const int64_t ih = oh * taps.sh + taps.dh[t];
    if (ih < 0 || ih >= H) continue;
    const int64_t d = taps.dw[t];
    lo = std::max(lo, d >= 0 ? int64_t{0} : ceil_div(-d, taps.sw));
    hi = std::min(hi, W - 1 - d < 0 ? int64_t{0} : (W - 1 - d) / taps.sw + 1);
  }
  hi = std::max(hi, lo);
  const auto run = [&](int64_t q0, int64_t count, bool edge) {
    int kept = 0;
    for (int t = 0; t < ntaps; ++t) {
      const int64_t ih = oh * taps.sh + taps.dh[t], iw = q0 * taps.sw + taps.dw[t];
      if (ih < 0 || ih >= H || (edge && (iw < 0 || iw >= W))) continue;
      src[kept] = x + n * xs.n + ih * xs.h + iw * xs.w;
      index[kept++] = t;
    }
    fn(q0, count, kept, edge);
  };
  for (int64_t q = 0; q < lo; ++q) run(q, 1, true);
  if (hi > lo) run(lo, hi - lo, false);
  for (int64_t q = hi; q < Q; ++q) run(q, 1, true);
}

// Row oh of image n of a correlation over source x (N x H x W x C): out_row[q * out_step + c]
// = init[c] + the taps' sum, for q < Q. src, w and index are the caller's scratch, one entry
// per tap. `stream`: channels_correlate's.
template <typename T>
void correlate_row_channels_last(const ChannelTaps& taps, const std::vector<T>& wt, const T* x,
                                 const Strides4& xs, int64_t H, int64_t W, const T* init,
                                 int64_t n, int64_t oh, int64_t Q, int64_t C, T* out_row,
                                 int64_t out_step, std::vector<const T*>& src,
                                 std::vector<const T*>& w, std::vector<int>& index,
                                 bool stream) {
  for_pixel_runs(taps, x, xs, H, W, n, oh, Q, src, index, [&](int64_t q0, int64_t count, int kept, bool) {
    for (int i = 0; i < kept; ++i) w[i] = wt.data() + taps.tap[index[i]] * C;
    channels_correlate(count, C, kept, src.data(), taps.sw * xs.w, w.data(), init,
                       out_row + q0 * out_step, out_step, stream);
  });
}

}  // namespace cnnops::cpu::dw
