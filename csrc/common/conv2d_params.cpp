#include "common/conv2d_params.h"

#include <c10/util/Exception.h>

#include "common/result_size.h"

namespace cnnops {

namespace {

void check_list(const char* op, const char* name, c10::IntArrayRef values, size_t length,
                int64_t minimum) {
  TORCH_CHECK_VALUE(values.size() == length, op, ": argument '", name, "' must have ", length,
                    " values, got ", values);
  for (int64_t v : values) {
    TORCH_CHECK_VALUE(v >= minimum, op, ": argument '", name, "' must be >= ", minimum,
                      ", got ", values);
  }
}

void check_operand(const char* op, const char* name, const at::Tensor& t, int64_t dim) {
  TORCH_CHECK_TYPE(conv_dtype_supported(t.scalar_type(), t.device().type()), op, ": argument '",
                   name, "' has dtype ", t.scalar_type(), ", which is not supported on ",
                   t.device().type(),
                   " (expected float32 or float64, or on CUDA also float16 or bfloat16)");
  TORCH_CHECK_VALUE(t.dim() == dim, op, ": argument '", name, "' must be ", dim,
                    "-D, got a tensor of shape ", t.sizes());
}

void check_same(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                const at::Tensor& ref) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op, ": argument '", name,
                   "' has dtype ", t.scalar_type(), " but '", ref_name, "' has dtype ",
                   ref.scalar_type(), "; they must match");
  TORCH_CHECK_VALUE(t.device() == ref.device(), op, ": argument '", name, "' is on ", t.device(),
                    " but '", ref_name, "' is on ", ref.device(), "; they must be on one device");
}

// Checks the channel arithmetic shared by all three operators.
void check_channels(const char* op, int64_t in_channels, int64_t out_channels,
                    c10::IntArrayRef weight_size, int64_t groups) {
  TORCH_CHECK_VALUE(weight_size[2] >= 1 && weight_size[3] >= 1, op,
                    ": the weight's kernel size must be at least 1x1, got weight of shape ",
                    weight_size);
  TORCH_CHECK_VALUE(in_channels % groups == 0, op, ": input channels (", in_channels,
                    ") must be divisible by 'groups' (", groups, ")");
  TORCH_CHECK_VALUE(out_channels % groups == 0, op, ": out channels (weight.shape[0] = ",
                    out_channels, ") must be divisible by 'groups' (", groups, ")");
  TORCH_CHECK_VALUE(weight_size[1] * groups == in_channels, op, ": input has ", in_channels,
                    " channels, but weight of shape ", weight_size, " with groups=", groups,
                    " expects weight.shape[1] * groups = ", weight_size[1] * groups, " channels");
}

std::array<int64_t, 2> output_hw(const char* op, int64_t in_h, int64_t in_w,
                                 c10::IntArrayRef weight_size, const Conv2dParams& p) {
  const int64_t out_h = window_out_size(op, in_h, weight_size[2], p.pad_top, p.pad_bottom,
                                        p.stride_h, p.dilation_h, false);
  const int64_t out_w = window_out_size(op, in_w, weight_size[3], p.pad_left, p.pad_right,
                                        p.stride_w, p.dilation_w, false);
  TORCH_CHECK_VALUE(out_h >= 1 && out_w >= 1, op, ": the kernel (", weight_size[2], "x",
                    weight_size[3], ", dilation ", p.dilation_h, "x", p.dilation_w,
                    ") is larger than the padded input (",
                    in_h + p.pad_top + p.pad_bottom, "x", in_w + p.pad_left + p.pad_right, ")");
  return {out_h, out_w};
}

}  // namespace

Conv2dParams Conv2dParams::from_lists(const char* op, c10::IntArrayRef stride,
                                      c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                      int64_t groups) {
  check_list(op, "stride", stride, 2, 1);
  check_list(op, "padding", padding, 4, 0);
  check_list(op, "dilation", dilation, 2, 1);
  TORCH_CHECK_VALUE(groups >= 1, op, ": argument 'groups' must be >= 1, got ", groups);
  return {stride[0],  stride[1],   padding[0], padding[1], padding[2],
          padding[3], dilation[0], dilation[1], groups};
}

bool conv_dtype_supported(c10::ScalarType dtype, c10::DeviceType device) {
  if (dtype == c10::kFloat || dtype == c10::kDouble) return true;
  return device == c10::DeviceType::CUDA && (dtype == c10::kHalf || dtype == c10::kBFloat16);
}

std::array<int64_t, 4> check_conv2d_forward(const at::Tensor& input, const at::Tensor& weight,
                                            const c10::optional<at::Tensor>& bias,
                                            const Conv2dParams& p, const char* op) {
  check_operand(op, "input", input, 4);
  check_operand(op, "weight", weight, 4);
  check_same(op, "weight", weight, "input", input);
  const int64_t out_channels = weight.size(0);
  if (bias.has_value()) {
    check_same(op, "bias", *bias, "input", input);
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == out_channels, op,
                      ": argument 'bias' must have shape (", out_channels,
                      ",) to match weight.shape[0], got ", bias->sizes());
  }
  check_channels(op, input.size(1), out_channels, weight.sizes(), p.groups);
  const auto hw = output_hw(op, input.size(2), input.size(3), weight.sizes(), p);
  check_result_size(op, "'input', 'weight', 'padding', 'stride' and 'dilation'",
                    {input.size(0), out_channels, hw[0], hw[1]}, input.scalar_type(),
                    input.device().type());
  return {input.size(0), out_channels, hw[0], hw[1]};
}

void check_conv2d_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                             c10::IntArrayRef input_size, const Conv2dParams& p, const char* op) {
  check_operand(op, "grad_output", grad_output, 4);
  check_operand(op, "weight", weight, 4);
  check_same(op, "weight", weight, "grad_output", grad_output);
  TORCH_CHECK_VALUE(input_size.size() == 4, op, ": argument 'input_size' must have 4 values, got ",
                    input_size);
  for (int64_t s : input_size) {
    TORCH_CHECK_VALUE(s >= 0, op, ": argument 'input_size' must be >= 0, got ", input_size);
  }
  check_channels(op, input_size[1], weight.size(0), weight.sizes(), p.groups);
  const auto hw = output_hw(op, input_size[2], input_size[3], weight.sizes(), p);
  TORCH_CHECK_VALUE(grad_output.size(0) == input_size[0] && grad_output.size(1) == weight.size(0) &&
                        grad_output.size(2) == hw[0] && grad_output.size(3) == hw[1],
                    op, ": argument 'grad_output' has shape ", grad_output.sizes(),
                    ", expected the conv2d output shape [", input_size[0], ", ", weight.size(0),
                    ", ", hw[0], ", ", hw[1], "]");
  check_result_size(op, "'input_size'", input_size, grad_output.scalar_type(),
                    grad_output.device().type());
}

void check_conv2d_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                              c10::IntArrayRef weight_size, const Conv2dParams& p,
                              const char* op) {
  check_operand(op, "grad_output", grad_output, 4);
  check_operand(op, "input", input, 4);
  check_same(op, "input", input, "grad_output", grad_output);
  TORCH_CHECK_VALUE(weight_size.size() == 4, op,
                    ": argument 'weight_size' must have 4 values, got ", weight_size);
  for (int64_t s : weight_size) {
    TORCH_CHECK_VALUE(s >= 0, op, ": argument 'weight_size' must be >= 0, got ", weight_size);
  }
  check_channels(op, input.size(1), weight_size[0], weight_size, p.groups);
  const auto hw = output_hw(op, input.size(2), input.size(3), weight_size, p);
  TORCH_CHECK_VALUE(grad_output.size(0) == input.size(0) && grad_output.size(1) == weight_size[0] &&
                        grad_output.size(2) == hw[0] && grad_output.size(3) == hw[1],
                    op, ": argument 'grad_output' has shape ", grad_output.sizes(),
                    ", expected the conv2d output shape [", input.size(0), ", ", weight_size[0],
                    ", ", hw[0], ", ", hw[1], "]");
  check_result_size(op, "'weight_size'", weight_size, grad_output.scalar_type(),
                    grad_output.device().type());
}

c10::MemoryFormat conv_output_memory_format(const at::Tensor& input, const at::Tensor& weight) {
  const bool channels_last = input.suggest_memory_format() == c10::MemoryFormat::ChannelsLast ||
                             weight.suggest_memory_format() == c10::MemoryFormat::ChannelsLast;
  return channels_last ? c10::MemoryFormat::ChannelsLast : c10::MemoryFormat::Contiguous;
}

at::Tensor dense_if_expanded(const at::Tensor& t, c10::MemoryFormat format) {
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.stride(d) == 0 && t.size(d) > 1) return t.contiguous(format);
  }
  return t;
}

}  // namespace cnnops
