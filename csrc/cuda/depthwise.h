// CUDA depthwise convolution (groups == in_channels), entered from the conv2d operators
// (cuda/conv2d.cu) and used by the fused depthwise-separable operator
// (cuda/depthwise_separable.cu). Kernels and their versions: cuda/depthwise.cu. Mirrors
// cpu/depthwise.h.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/MemoryFormat.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

#include "common/conv2d_params.h"
#include "common/depthwise.h"  // is_depthwise

namespace cnnops::cuda {

// The three conv2d operators for a depthwise geometry, after conv2d's argument checks.
// Outputs are laid out as conv2d's (conv_output_memory_format); grad_weight is contiguous.
// `relu` applies max(., 0) to the output (conv2d_bias_relu).
at::Tensor depthwise_forward_cuda(const at::Tensor& input, const at::Tensor& weight,
                                  const c10::optional<at::Tensor>& bias, const Conv2dParams& p,
                                  bool relu = false);
at::Tensor depthwise_grad_input_cuda(const at::Tensor& grad_output, const at::Tensor& weight,
                                     c10::IntArrayRef input_size, const Conv2dParams& p,
                                     c10::MemoryFormat memory_format);
at::Tensor depthwise_grad_weight_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                      c10::IntArrayRef weight_size, const Conv2dParams& p);

}  // namespace cnnops::cuda
