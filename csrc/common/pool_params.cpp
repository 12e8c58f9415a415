#include "common/pool_params.h"

#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

#include "common/result_size.h"

#include <cstdint>
#include <limits>

namespace cnnops {

namespace {

void check_list(const char* op, const char* name, c10::IntArrayRef values, int64_t minimum) {
  TORCH_CHECK_VALUE(values.size() == 2, op, ": argument '", name,
                    "' must have 2 values (height, width), got ", values);
  for (int64_t v : values) {
    TORCH_CHECK_VALUE(v >= minimum, op, ": argument '", name, "' must be >= ", minimum,
                      ", got ", values);
  }
}

}  // namespace

PoolParams PoolParams::from_lists(const char* op, c10::IntArrayRef kernel_size,
                                  c10::IntArrayRef stride, c10::IntArrayRef padding,
                                  c10::IntArrayRef dilation, bool ceil_mode) {
  check_list(op, "kernel_size", kernel_size, 1);
  check_list(op, "stride", stride, 1);
  check_list(op, "padding", padding, 0);
  check_list(op, "dilation", dilation, 1);
  for (int d = 0; d < 2; ++d) {
    TORCH_CHECK_VALUE(padding[d] <= kernel_size[d] / 2, op,
                      ": argument 'padding' must be at most half the kernel size, got padding ",
                      padding, " with kernel_size ", kernel_size);
  }
  return {kernel_size[0], kernel_size[1], stride[0],   stride[1], padding[0],
          padding[1],     dilation[0],    dilation[1], ceil_mode};
}

namespace {

// pool_out_size, naming `op` when the arithmetic would overflow int64.
int64_t checked_pool_out_size(const char* op, int64_t in, int64_t kernel, int64_t pad,
                              int64_t stride, int64_t dilation, bool ceil_mode) {
  int64_t out = window_out_size(op, in, kernel, pad, pad, stride, dilation, ceil_mode);
  // (out - 1) * stride <= the span, and in + pad fits: window_out_size checked both
  if (ceil_mode && out >= 1 && (out - 1) * stride >= in + pad) --out;
  return out;
}

}  // namespace

int64_t pool_out_size(int64_t in, int64_t kernel, int64_t pad, int64_t stride, int64_t dilation,
                      bool ceil_mode) {
  return checked_pool_out_size("cnnops pooling", in, kernel, pad, stride, dilation, ceil_mode);
}

bool pool_dtype_supported(c10::ScalarType dtype, c10::DeviceType device) {
  if (dtype == c10::kFloat || dtype == c10::kDouble) return true;
  return device == c10::DeviceType::CUDA && (dtype == c10::kHalf || dtype == c10::kBFloat16);
}

namespace {

void check_input(const char* op, const at::Tensor& input) {
  TORCH_CHECK_TYPE(pool_dtype_supported(input.scalar_type(), input.device().type()), op,
                   ": argument 'input' has dtype ", input.scalar_type(),
                   ", which is not supported on ", input.device().type(),
                   " (expected float32 or float64, or on CUDA also float16 or bfloat16)");
  TORCH_CHECK_VALUE(input.dim() == 4, op,
                    ": argument 'input' must be 4-D (N, C, H, W), got a tensor of shape ",
                    input.sizes());
  TORCH_CHECK_VALUE(input.size(1) > 0 && input.size(2) > 0 && input.size(3) > 0, op,
                    ": argument 'input' may be empty only in its batch dimension, got shape ",
                    input.sizes());
}

}  // namespace

std::array<int64_t, 4> check_pool2d_forward(const char* op, const at::Tensor& input,
                                            const PoolParams& p) {
  check_input(op, input);
  const int64_t out_h = checked_pool_out_size(op, input.size(2), p.kernel_h, p.pad_h, p.stride_h,
                                              p.dilation_h, p.ceil_mode);
  const int64_t out_w = checked_pool_out_size(op, input.size(3), p.kernel_w, p.pad_w, p.stride_w,
                                              p.dilation_w, p.ceil_mode);
  // avg_pool2d divides by a window's area, at most the padded plane's: it must fit int64
  int64_t padded_area = 0;
  TORCH_CHECK_VALUE(!c10::mul_overflows(input.size(2) + 2 * p.pad_h, input.size(3) + 2 * p.pad_w,
                                        &padded_area),
                    op, ": argument 'padding' ", c10::IntArrayRef{p.pad_h, p.pad_w},
                    " (with kernel_size ", c10::IntArrayRef{p.kernel_h, p.kernel_w},
                    ") is too large: the padded input's area does not fit in int64");
  TORCH_CHECK_VALUE(out_h >= 1 && out_w >= 1, op, ": argument 'kernel_size' (", p.kernel_h, "x",
                    p.kernel_w, ", dilation ", p.dilation_h, "x", p.dilation_w,
                    ") is larger than the padded input (", input.size(2) + 2 * p.pad_h, "x",
                    input.size(3) + 2 * p.pad_w, ")");
  check_result_size(op, "'input', 'kernel_size', 'stride', 'padding' and 'dilation'",
                    {input.size(0), input.size(1), out_h, out_w}, input.scalar_type(),
                    input.device().type());
  return {input.size(0), input.size(1), out_h, out_w};
}

void check_divisor_override(const char* op, const c10::optional<int64_t>& divisor_override) {
  TORCH_CHECK_VALUE(!divisor_override.has_value() || *divisor_override != 0, op,
                    ": argument 'divisor_override' must not be 0");
}

std::array<int64_t, 4> check_adaptive_pool2d_forward(const char* op, const at::Tensor& input,
                                                     c10::IntArrayRef output_size) {
  check_input(op, input);
  check_list(op, "output_size", output_size, 0);
  for (int d = 0; d < 2; ++d) {
    // the window rule forms (o + 1) * in and (i + 1) * out
    int64_t reach = 0;
    TORCH_CHECK_VALUE(!c10::mul_overflows(input.size(2 + d) + 1, output_size[d] + 1, &reach), op,
                      ": argument 'output_size' ", output_size, " is too large for 'input' of "
                      "shape ", input.sizes(), ": (output_size + 1) * (input extent + 1) must "
                      "fit in int64");
  }
  check_result_size(op, "'input' and 'output_size'",
                    {input.size(0), input.size(1), output_size[0], output_size[1]},
                    input.scalar_type(), input.device().type());
  return {input.size(0), input.size(1), output_size[0], output_size[1]};
}

void check_pool2d_grad(const char* op, const at::Tensor& grad_output, const at::Tensor& input,
                       c10::IntArrayRef out_size) {
  TORCH_CHECK_TYPE(grad_output.scalar_type() == input.scalar_type(), op,
                   ": argument 'grad_output' has dtype ", grad_output.scalar_type(),
                   " but 'input' has dtype ", input.scalar_type(), "; they must match");
  TORCH_CHECK_VALUE(grad_output.device() == input.device(), op,
                    ": argument 'grad_output' is on ", grad_output.device(), " but 'input' is on ",
                    input.device(), "; they must be on one device");
  TORCH_CHECK_VALUE(grad_output.sizes() == out_size, op, ": argument 'grad_output' has shape ",
                    grad_output.sizes(), ", expected the pooling output shape ", out_size);
}

void check_pool2d_indexed(const char* op, const char* values_name, const at::Tensor& values,
                          const at::Tensor& indices) {
  TORCH_CHECK_TYPE(pool_dtype_supported(values.scalar_type(), values.device().type()), op,
                   ": argument '", values_name, "' has dtype ", values.scalar_type(),
                   ", which is not supported on ", values.device().type());
  TORCH_CHECK_TYPE(indices.scalar_type() == c10::kLong, op,
                   ": argument 'indices' must be int64, got ", indices.scalar_type());
  TORCH_CHECK_VALUE(values.dim() == 4 && indices.dim() == 4, op, ": arguments '", values_name,
                    "' and 'indices' must be 4-D, got shapes ", values.sizes(), " and ",
                    indices.sizes());
  TORCH_CHECK_VALUE(values.size(0) == indices.size(0) && values.size(1) == indices.size(1), op,
                    ": arguments '", values_name, "' ", values.sizes(), " and 'indices' ",
                    indices.sizes(), " must agree in batch and channels");
  TORCH_CHECK_VALUE(values.device() == indices.device(), op, ": argument 'indices' is on ",
                    indices.device(), " but '", values_name, "' is on ", values.device(),
                    "; they must be on one device");
}

c10::MemoryFormat pool_output_memory_format(const at::Tensor& input) {
  return input.suggest_memory_format() == c10::MemoryFormat::ChannelsLast
             ? c10::MemoryFormat::ChannelsLast
             : c10::MemoryFormat::Contiguous;
}

PoolShape regular_pool_shape(c10::IntArrayRef input_size, c10::IntArrayRef out_size,
                             const PoolParams& p, bool count_include_pad,
                             const c10::optional<int64_t>& divisor_override) {
  return {input_size[0],
          input_size[1],
          input_size[2],
          input_size[3],
          out_size[2],
          out_size[3],
          PoolAxis::regular(input_size[2], out_size[2], p.kernel_h, p.stride_h, p.pad_h,
                            p.dilation_h, count_include_pad),
          PoolAxis::regular(input_size[3], out_size[3], p.kernel_w, p.stride_w, p.pad_w,
                            p.dilation_w, count_include_pad),
          divisor_override.value_or(0)};
}

bool PoolShape::fits_int32() const {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  auto axis_fits = [&](const PoolAxis& a) {
    // adaptive: (o + 1) * in and (i + 1) * out; regular: o * stride + kernel * dilation
    const int64_t reach = a.adaptive ? (a.in + 1) * (a.out + 1)
                                     : (a.out + 1) * a.stride + a.kernel * a.dilation + a.in;
    return reach < kMax;
  };
  return axis_fits(h) && axis_fits(w) && N * C * H * W < kMax && N * C * P * Q < kMax;
}

PoolShape adaptive_pool_shape(c10::IntArrayRef input_size, c10::IntArrayRef out_size) {
  return {input_size[0],
          input_size[1],
          input_size[2],
          input_size[3],
          out_size[2],
          out_size[3],
          PoolAxis::adaptive_axis(input_size[2], out_size[2]),
          PoolAxis::adaptive_axis(input_size[3], out_size[3]),
          0};
}

}  // namespace cnnops
