// conv2d_backward on every backend without a kernel of its own (CUDA): conv2d_grad_input,
// conv2d_grad_weight and the bias gradient in turn, through the dispatcher. The CPU registers
// its own kernel (cpu/conv2d.cpp), which fuses the three on depthwise small planes and calls
// this elsewhere.
#include "conv2d_backward.h"

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <torch/library.h>

#include <tuple>

namespace cnnops {

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward_in_turn(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups,
    bool bias) {
  static const auto grad_input_op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("cnnops::conv2d_grad_input", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef,
                            c10::IntArrayRef, c10::IntArrayRef, c10::IntArrayRef, int64_t)>();
  static const auto grad_weight_op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("cnnops::conv2d_grad_weight", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef,
                            c10::IntArrayRef, c10::IntArrayRef, c10::IntArrayRef, int64_t)>();
  at::Tensor grad_input = grad_input_op.call(grad_output, weight, input.sym_sizes(), stride,
                                             padding, dilation, groups);
  at::Tensor grad_weight = grad_weight_op.call(grad_output, input, weight.sym_sizes(), stride,
                                               padding, dilation, groups);
  at::Tensor grad_bias = bias ? grad_output.sum({0, 2, 3}) : at::empty({0}, grad_output.options());
  return std::make_tuple(grad_input, grad_weight, grad_bias);
}

TORCH_LIBRARY_IMPL(cnnops, CompositeExplicitAutograd, m) {
  m.impl("conv2d_backward", &conv2d_backward_in_turn);
}

}  // namespace cnnops
