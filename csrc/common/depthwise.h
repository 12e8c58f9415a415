// Host-side argument handling of depthwise convolution and depthwise_separable_conv2d,
// shared by the CPU and CUDA kernels: when conv2d is depthwise, checks of the separable
// operator with clear messages, output-size math, the memory format.
//
//   input (N, C, H, W), depthwise_weight (M, 1, R, S) with M = C * mult, depthwise_bias (M),
//   pointwise_weight (K, M, 1, 1), pointwise_bias (K), output (N, K, P, Q).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/MemoryFormat.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

#include <cstdint>

#include "common/conv2d_params.h"

namespace cnnops {

// Whether conv2d with these channels and groups is a depthwise convolution: one input
// channel per group, any number (the channel multiplier) of output channels per group.
// conv2d's CPU and CUDA operators then run the depthwise kernels.
inline bool is_depthwise(int64_t in_channels, int64_t groups) { return groups == in_channels; }

struct SeparableShape {
  int64_t N, C, H, W, M, K, R, S, P, Q;
};

// The depthwise half's geometry (groups = C), from the operator's int lists.
Conv2dParams depthwise_separable_params(const char* op, const at::Tensor& input,
                                        c10::IntArrayRef stride, c10::IntArrayRef padding,
                                        c10::IntArrayRef dilation);

SeparableShape check_depthwise_separable_forward(const at::Tensor& input,
                                                 const at::Tensor& depthwise_weight,
                                                 const at::Tensor& pointwise_weight,
                                                 const c10::optional<at::Tensor>& depthwise_bias,
                                                 const c10::optional<at::Tensor>& pointwise_bias,
                                                 const Conv2dParams& p);

// The forward checks, and grad_output of the output's shape.
SeparableShape check_depthwise_separable_backward(const at::Tensor& grad_output,
                                                  const at::Tensor& input,
                                                  const at::Tensor& depthwise_weight,
                                                  const at::Tensor& pointwise_weight,
                                                  const c10::optional<at::Tensor>& depthwise_bias,
                                                  const Conv2dParams& p);

// The layout of the native two-conv sequence's result: channels_last when the input or
// either weight is.
c10::MemoryFormat depthwise_separable_memory_format(const at::Tensor& input,
                                                    const at::Tensor& depthwise_weight,
                                                    const at::Tensor& pointwise_weight);

}  // namespace cnnops
