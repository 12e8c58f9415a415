// Device-side pieces shared by cuda/depthwise.cu and cuda/depthwise_separable.cu: the
// geometry passed to kernels by value, and one depthwise output as a sum over taps.
//
// Letters as in cpu/depthwise.cpp: N batch, C input channels, H x W input, M = C * mult
// depthwise output channels (channel k reads input channel k / mult), R x S kernel, P x Q
// output. Offsets are 64-bit throughout.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>

#include "common/conv2d_params.h"

namespace cnnops::cuda::dw {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridX = (int64_t{1} << 31) - 1;
constexpr int64_t kMaxGridYZ = 65535;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for a grid-stride loop over `count` elements.
inline unsigned int grid_for(int64_t count) {
  return static_cast<unsigned int>(std::clamp<int64_t>(ceil_div(count, kThreads), 1, 1 << 30));
}

// Element strides of a 4-D tensor in its logical (N, C, H, W) order.
struct DwStrides {
  int64_t n, c, h, w;
  explicit DwStrides(const at::Tensor& t)
      : n(t.stride(0)), c(t.stride(1)), h(t.stride(2)), w(t.stride(3)) {}
};

struct DwShape {
  int64_t N, C, H, W, M, mult, R, S, P, Q;
  int64_t stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w;

  DwShape(c10::IntArrayRef input_size, c10::IntArrayRef weight_size, int64_t out_h,
          int64_t out_w, const Conv2dParams& p)
      : N(input_size[0]), C(input_size[1]), H(input_size[2]), W(input_size[3]),
        M(weight_size[0]), mult(weight_size[0] / input_size[1]), R(weight_size[2]),
        S(weight_size[3]), P(out_h), Q(out_w), stride_h(p.stride_h), stride_w(p.stride_w),
        pad_top(p.pad_top), pad_left(p.pad_left), dilation_h(p.dilation_h),
        dilation_w(p.dilation_w) {}
};

// init + sum over taps (r, s) of w[r, s] * x[p*stride_h - pad_top + r*dilation_h,
// q*stride_w - pad_left + s*dilation_w], x zero outside the input. `x` points at one
// channel's plane, `w` at one channel's R x S taps. KH, KW > 0: the kernel size, unrolled;
// 0: s.R, s.S at run time.
template <int KH, int KW, typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t depthwise_value(const scalar_t* __restrict__ x, int64_t x_h,
                                                 int64_t x_w, const scalar_t* __restrict__ w,
                                                 int64_t w_h, int64_t w_w, const DwShape& s,
                                                 int64_t p, int64_t q, acc_t init) {
  const int64_t R = KH > 0 ? KH : s.R, S = KW > 0 ? KW : s.S;
  const int64_t h0 = p * s.stride_h - s.pad_top, w0 = q * s.stride_w - s.pad_left;
  acc_t acc = init;
#pragma unroll
  for (int64_t r = 0; r < R; ++r) {
    const int64_t h = h0 + r * s.dilation_h;
    if (h < 0 || h >= s.H) continue;
#pragma unroll
    for (int64_t c = 0; c < S; ++c) {
      const int64_t col = w0 + c * s.dilation_w;
      if (col < 0 || col >= s.W) continue;
      acc += static_cast<acc_t>(x[h * x_h + col * x_w]) * static_cast<acc_t>(w[r * w_h + c * w_w]);
    }
  }
  return acc;
}

// Kernel sizes with an unrolled instantiation (3x3 and 5x5); others run with KH = KW = 0.
inline bool unrolled(int64_t R, int64_t S, int64_t size) { return R == size && S == size; }

}  // namespace cnnops::cuda::dw
