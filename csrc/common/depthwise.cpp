#include "common/depthwise.h"

#include <c10/util/Exception.h>

#include "common/result_size.h"

namespace cnnops {

namespace {

void check_operand(const char* op, const char* name, const at::Tensor& t, const at::Tensor& input) {
  TORCH_CHECK_TYPE(conv_dtype_supported(t.scalar_type(), t.device().type()), op, ": argument '",
                   name, "' has dtype ", t.scalar_type(), ", which is not supported on ",
                   t.device().type(),
                   " (expected float32 or float64, or on CUDA also float16 or bfloat16)");
  TORCH_CHECK_TYPE(t.scalar_type() == input.scalar_type(), op, ": argument '", name,
                   "' has dtype ", t.scalar_type(), " but 'input' has dtype ",
                   input.scalar_type(), "; they must match");
  TORCH_CHECK_VALUE(t.device() == input.device(), op, ": argument '", name, "' is on ",
                    t.device(), " but 'input' is on ", input.device(),
                    "; they must be on one device");
}

void check_bias(const char* op, const char* name, const c10::optional<at::Tensor>& bias,
                int64_t channels, const char* weight_name, const at::Tensor& input) {
  if (!bias.has_value()) return;
  check_operand(op, name, *bias, input);
  TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == channels, op, ": argument '", name,
                    "' must have shape (", channels, ",) to match ", weight_name,
                    ".shape[0], got ", bias->sizes());
}

}  // namespace

Conv2dParams depthwise_separable_params(const char* op, const at::Tensor& input,
                                        c10::IntArrayRef stride, c10::IntArrayRef padding,
                                        c10::IntArrayRef dilation) {
  TORCH_CHECK_VALUE(input.dim() == 4, op, ": argument 'input' must be 4-D (N, C, H, W), got a "
                    "tensor of shape ", input.sizes());
  TORCH_CHECK_VALUE(input.size(1) >= 1, op, ": argument 'input' must have at least one "
                    "channel, got shape ", input.sizes());
  return Conv2dParams::from_lists(op, stride, padding, dilation, input.size(1));
}

SeparableShape check_depthwise_separable_forward(const at::Tensor& input,
                                                 const at::Tensor& depthwise_weight,
                                                 const at::Tensor& pointwise_weight,
                                                 const c10::optional<at::Tensor>& depthwise_bias,
                                                 const c10::optional<at::Tensor>& pointwise_bias,
                                                 const Conv2dParams& p) {
  constexpr const char* op = "cnnops.depthwise_separable_conv2d";
  const at::Tensor& dw = depthwise_weight;
  const at::Tensor& pw = pointwise_weight;
  check_operand(op, "input", input, input);
  TORCH_CHECK_VALUE(input.dim() == 4, op, ": argument 'input' must be 4-D (N, C, H, W), got a "
                    "tensor of shape ", input.sizes());
  check_operand(op, "depthwise_weight", dw, input);
  check_operand(op, "pointwise_weight", pw, input);
  const int64_t C = input.size(1);
  TORCH_CHECK_VALUE(dw.dim() == 4 && dw.size(1) == 1 && dw.size(0) >= C && dw.size(0) % C == 0 &&
                        dw.size(2) >= 1 && dw.size(3) >= 1,
                    op, ": argument 'depthwise_weight' must have shape (C * m, 1, kH, kW) with C = ",
                    C, " input channels and a channel multiplier m >= 1, got shape ", dw.sizes());
  const int64_t M = dw.size(0);
  TORCH_CHECK_VALUE(pw.dim() == 4 && pw.size(2) == 1 && pw.size(3) == 1, op,
                    ": argument 'pointwise_weight' must have shape (out_channels, ", M,
                    ", 1, 1), got shape ", pw.sizes());
  TORCH_CHECK_VALUE(pw.size(1) == M, op, ": the channel counts do not chain: the depthwise "
                    "convolution gives depthwise_weight.shape[0] = ", M, " channels, but "
                    "pointwise_weight of shape ", pw.sizes(), " expects ", pw.size(1));
  check_bias(op, "depthwise_bias", depthwise_bias, M, "depthwise_weight", input);
  check_bias(op, "pointwise_bias", pointwise_bias, pw.size(0), "pointwise_weight", input);
  const int64_t R = dw.size(2), S = dw.size(3);
  const int64_t P = window_out_size(op, input.size(2), R, p.pad_top, p.pad_bottom, p.stride_h,
                                    p.dilation_h, false);
  const int64_t Q = window_out_size(op, input.size(3), S, p.pad_left, p.pad_right, p.stride_w,
                                    p.dilation_w, false);
  TORCH_CHECK_VALUE(P >= 1 && Q >= 1, op, ": the depthwise kernel (", R, "x", S, ", dilation ",
                    p.dilation_h, "x", p.dilation_w, ") is larger than the padded input (",
                    input.size(2) + p.pad_top + p.pad_bottom, "x",
                    input.size(3) + p.pad_left + p.pad_right, ")");
  check_result_size(op, "'input', 'pointwise_weight', 'padding', 'stride' and 'dilation'",
                    {input.size(0), pw.size(0), P, Q}, input.scalar_type(), input.device().type());
  return {input.size(0), C, input.size(2), input.size(3), M, pw.size(0), R, S, P, Q};
}

SeparableShape check_depthwise_separable_backward(const at::Tensor& grad_output,
                                                  const at::Tensor& input,
                                                  const at::Tensor& depthwise_weight,
                                                  const at::Tensor& pointwise_weight,
                                                  const c10::optional<at::Tensor>& depthwise_bias,
                                                  const Conv2dParams& p) {
  constexpr const char* op = "cnnops.depthwise_separable_conv2d_backward";
  const SeparableShape s = check_depthwise_separable_forward(
      input, depthwise_weight, pointwise_weight, depthwise_bias, c10::nullopt, p);
  check_operand(op, "grad_output", grad_output, input);
  TORCH_CHECK_VALUE(grad_output.dim() == 4 && grad_output.size(0) == s.N &&
                        grad_output.size(1) == s.K && grad_output.size(2) == s.P &&
                        grad_output.size(3) == s.Q,
                    op, ": argument 'grad_output' has shape ", grad_output.sizes(),
                    ", expected the output shape [", s.N, ", ", s.K, ", ", s.P, ", ", s.Q, "]");
  return s;
}

c10::MemoryFormat depthwise_separable_memory_format(const at::Tensor& input,
                                                    const at::Tensor& depthwise_weight,
                                                    const at::Tensor& pointwise_weight) {
  const bool channels_last =
      conv_output_memory_format(input, depthwise_weight) == c10::MemoryFormat::ChannelsLast ||
      pointwise_weight.suggest_memory_format() == c10::MemoryFormat::ChannelsLast;
  return channels_last ? c10::MemoryFormat::ChannelsLast : c10::MemoryFormat::Contiguous;
}

}  // namespace cnnops
