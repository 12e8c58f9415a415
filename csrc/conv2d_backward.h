// conv2d_backward computed by the two adjoint operators and a sum, in turn (through the
// dispatcher): the kernel of every backend without its own, and the CPU kernel's fallback
// where it does not fuse them (csrc/conv2d_backward.cpp).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <tuple>

namespace cnnops {

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward_in_turn(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups,
    bool bias);

}  // namespace cnnops
