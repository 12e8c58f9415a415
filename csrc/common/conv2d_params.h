// Host-side argument handling for the conv2d family, shared by the CPU and CUDA kernels:
// checks with clear messages, output-size math and the output memory format.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/MemoryFormat.h>
#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>

#include <array>
#include <cstdint>

namespace cnnops {

// The geometry of one conv2d call, unpacked from the operator's int lists.
struct Conv2dParams {
  int64_t stride_h, stride_w;
  int64_t pad_top, pad_bottom, pad_left, pad_right;
  int64_t dilation_h, dilation_w;
  int64_t groups;

  // Checks every list's length and range; `op` names the operator in messages.
  static Conv2dParams from_lists(const char* op, c10::IntArrayRef stride, c10::IntArrayRef padding,
                                 c10::IntArrayRef dilation, int64_t groups);
};

// Output extent of a convolution along one dimension (may be <= 0 when the kernel does
// not fit; callers check).
inline int64_t conv_out_size(int64_t in, int64_t kernel, int64_t pad_begin, int64_t pad_end,
                             int64_t stride, int64_t dilation) {
  return (in + pad_begin + pad_end - dilation * (kernel - 1) - 1) / stride + 1;
}

// Which dtypes a backend computes in: CPU float32/float64; CUDA adds float16/bfloat16.
bool conv_dtype_supported(c10::ScalarType dtype, c10::DeviceType device);

// Checks the operands of conv2d (or of `op`, a conv2d variant) and returns its output size
// (N, K, P, Q).
std::array<int64_t, 4> check_conv2d_forward(const at::Tensor& input, const at::Tensor& weight,
                                            const c10::optional<at::Tensor>& bias,
                                            const Conv2dParams& p,
                                            const char* op = "cnnops.conv2d");

// Checks the operands of conv2d_grad_input (grad_output must be the conv2d output size).
// `op` names the operator in messages (conv2d_backward checks its operands with both).
void check_conv2d_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                             c10::IntArrayRef input_size, const Conv2dParams& p,
                             const char* op = "cnnops.conv2d_grad_input");

// Checks the operands of conv2d_grad_weight.
void check_conv2d_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                              c10::IntArrayRef weight_size, const Conv2dParams& p,
                              const char* op = "cnnops.conv2d_grad_weight");

// torch's rule for a convolution's result: channels_last when either operand is.
c10::MemoryFormat conv_output_memory_format(const at::Tensor& input, const at::Tensor& weight);

// A gradient for the fast kernels: an expanded one (zero strides, as autograd hands over the
// gradient of sum() or mean()) copied densely in `format`, any other returned as it is. Read
// through zero strides, a tensor matches neither layout the fast kernels take in place.
at::Tensor dense_if_expanded(const at::Tensor& t, c10::MemoryFormat format);

}  // namespace cnnops
