// Host-side argument handling for the pooling family, shared by the CPU and CUDA kernels:
// checks with clear messages, output-size math, the output memory format, and the window
// rule of one spatial axis (PoolAxis), which is also compiled into the CUDA kernels.
//
// Every pooling operator reduces, for each output position (p, q) of each plane (n, c), a
// window of input positions that is the product of a window along H and one along W:
//   regular (max_pool2d, avg_pool2d): taps start = o*stride - pad + t*dilation, t < kernel,
//     those inside [0, in) being the valid ones;
//   adaptive: [floor(o*in/out), ceil((o+1)*in/out)), torch's start/end index rule.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/MemoryFormat.h>
#include <c10/core/ScalarType.h>
#include <c10/macros/Macros.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

#include <array>
#include <cstdint>

namespace cnnops {

// The geometry of one regular (max or average) pooling call, from the operator's int lists.
struct PoolParams {
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;
  int64_t dilation_h, dilation_w;
  bool ceil_mode;

  // Checks every list's length and range (padding at most half the kernel, as torch
  // requires); `op` names the operator in messages.
  static PoolParams from_lists(const char* op, c10::IntArrayRef kernel_size,
                               c10::IntArrayRef stride, c10::IntArrayRef padding,
                               c10::IntArrayRef dilation, bool ceil_mode);
};

// torch's output extent of a pooling window along one axis (may be <= 0 when the window
// does not fit; callers check). With ceil_mode the last window must start inside the input
// or its left padding.
int64_t pool_out_size(int64_t in, int64_t kernel, int64_t pad, int64_t stride, int64_t dilation,
                      bool ceil_mode);

// Which dtypes a backend computes in: CPU float32/float64; CUDA adds float16/bfloat16.
bool pool_dtype_supported(c10::ScalarType dtype, c10::DeviceType device);

// Checks the input of max_pool2d / avg_pool2d and returns the output size (N, C, P, Q).
std::array<int64_t, 4> check_pool2d_forward(const char* op, const at::Tensor& input,
                                            const PoolParams& p);

// Checks divisor_override (none, or non-zero).
void check_divisor_override(const char* op, const c10::optional<int64_t>& divisor_override);

// Checks the input and output_size of an adaptive pool; returns the output size.
std::array<int64_t, 4> check_adaptive_pool2d_forward(const char* op, const at::Tensor& input,
                                                     c10::IntArrayRef output_size);

// Checks that grad_output has the pooling output size and input's dtype and device.
void check_pool2d_grad(const char* op, const at::Tensor& grad_output, const at::Tensor& input,
                       c10::IntArrayRef out_size);

// Checks the operands of the index-based max-pooling adjoints: `values` (N, C, H, W) in a
// float dtype and int64 `indices` (N, C, P, Q) on one device.
void check_pool2d_indexed(const char* op, const char* values_name, const at::Tensor& values,
                          const at::Tensor& indices);

// torch's rule for a pooling result: the input's suggested memory format.
c10::MemoryFormat pool_output_memory_format(const at::Tensor& input);

// ---- the window rule of one axis --------------------------------------------------------

// The input positions that output position o reduces along one axis: `count` valid taps
// begin, begin + dilation, ...; `init` is torch's "start" after skipping the left padding
// (the index max pooling reports for a window that holds only -inf, or no valid tap at
// all); `divisor_extent` is the window's extent counted for avg_pool2d's divisor.
// I is the integer type of the arithmetic: int64_t, or int32_t in CUDA kernels whose sizes
// fit (see PoolShape::fits_int32).
template <typename I>
struct PoolWindowT {
  I begin, count, init, divisor_extent;
};
using PoolWindow = PoolWindowT<int64_t>;

struct PoolAxis {
  int64_t in, out;
  int64_t kernel, stride, pad, dilation;  // regular windows (unused when adaptive)
  bool adaptive;
  bool count_include_pad;  // avg_pool2d: whether padding counts in divisor_extent

  static PoolAxis regular(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad,
                          int64_t dilation, bool count_include_pad = true) {
    return {in, out, kernel, stride, pad, dilation, false, count_include_pad};
  }
  static PoolAxis adaptive_axis(int64_t in, int64_t out) {
    return {in, out, 1, 1, 0, 1, true, false};
  }

  // Tap spacing of the window: the dilation, 1 for adaptive windows.
  C10_HOST_DEVICE int64_t step() const { return adaptive ? 1 : dilation; }

  template <typename I>
  C10_HOST_DEVICE PoolWindowT<I> window_as(I o) const {
    const I in_ = static_cast<I>(in), out_ = static_cast<I>(out);
    if (adaptive) {
      // torch's start_index / end_index, written to avoid overflow of o * in
      const I begin = (o / out_) * in_ + ((o % out_) * in_) / out_;
      const I end = 1 + ((o + 1) * in_ - 1) / out_;
      return {begin, end - begin, begin, end - begin};
    }
    const I kernel_ = static_cast<I>(kernel), pad_ = static_cast<I>(pad);
    const I dil = static_cast<I>(dilation);
    const I start = o * static_cast<I>(stride) - pad_;
    // the first tap at or after 0 (always < kernel, since pad <= kernel / 2)
    const I first = start >= 0 ? I(0) : (dil == 1 ? -start : (-start + dil - 1) / dil);
    const I init = start + first * dil;
    I count = 0;
    if (init < in_) {
      const I fitting = dil == 1 ? in_ - init : (in_ - 1 - init) / dil + 1;
      count = fitting < kernel_ - first ? fitting : kernel_ - first;
    }
    // avg_pool2d (dilation 1): torch clips the window to the padded input for its size
    const I padded_end = start + kernel_ < in_ + pad_ ? start + kernel_ : in_ + pad_;
    return {init, count, init, count_include_pad ? padded_end - start : count};
  }

  C10_HOST_DEVICE PoolWindow window(int64_t o) const { return window_as<int64_t>(o); }

  // The outputs whose window contains input position i, as [first, last) (dilation 1 only,
  // which is all that avg_pool2d and the adaptive pools use). Windows are intervals whose
  // ends grow with o, so the outputs form one run.
  template <typename I>
  C10_HOST_DEVICE void outputs_of(I i, I* first, I* last) const {
    const I in_ = static_cast<I>(in), out_ = static_cast<I>(out);
    I lo, hi;
    if (adaptive) {
      lo = (i / in_) * out_ + ((i % in_) * out_) / in_;
      hi = 1 + ((i + 1) * out_ - 1) / in_;
    } else {
      // o*stride - pad <= i < o*stride - pad + kernel
      const I stride_ = static_cast<I>(stride), pad_ = static_cast<I>(pad);
      const I num = i + pad_ - static_cast<I>(kernel) + 1;  // o >= ceil(num / stride)
      lo = num <= 0 ? I(0) : (num + stride_ - 1) / stride_;
      hi = (i + pad_) / stride_ + 1;
    }
    *first = lo < 0 ? I(0) : lo;
    *last = hi > out_ ? out_ : hi;
  }
};

// One pooling call: sizes, the window rule of each axis, and avg_pool2d's divisor_override
// (0 when none). Trivially copyable, so that CUDA kernels take it by value.
struct PoolShape {
  int64_t N, C, H, W, P, Q;
  PoolAxis h, w;
  int64_t divisor_override;

  // The divisor of avg pooling output (p, q), given its two windows.
  template <typename I>
  C10_HOST_DEVICE int64_t divisor(const PoolWindowT<I>& wh, const PoolWindowT<I>& ww) const {
    return divisor_override != 0 ? divisor_override
                                 : int64_t{wh.divisor_extent} * int64_t{ww.divisor_extent};
  }

  // Whether every index and product the window rule forms fits int32 (CUDA kernels then
  // compute in 32 bits).
  bool fits_int32() const;
};

// The shape of a regular pooling call (`input_size` (N, C, H, W), `out_size` (N, C, P, Q)).
PoolShape regular_pool_shape(c10::IntArrayRef input_size, c10::IntArrayRef out_size,
                             const PoolParams& p, bool count_include_pad = true,
                             const c10::optional<int64_t>& divisor_override = c10::nullopt);

// The shape of an adaptive pooling call.
PoolShape adaptive_pool_shape(c10::IntArrayRef input_size, c10::IntArrayRef out_size);

}  // namespace cnnops
