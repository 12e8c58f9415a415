// Every cnnops operator schema, in one place. Each backend registers its kernels with
// TORCH_LIBRARY_IMPL in csrc/cpu/<op>.cpp and csrc/cuda/<op>.cu; python/cnnops/_ops.py
// registers the fake (meta) kernels and the autograd formulas.
//
// Conventions shared by the conv2d family:
//   stride   = [stride_h, stride_w]
//   padding  = [pad_top, pad_bottom, pad_left, pad_right]; the two sides may differ
//              (padding='same' with an even kernel pads one more at the bottom/right,
//              as torch does)
//   dilation = [dilation_h, dilation_w]

#include <torch/library.h>

TORCH_LIBRARY(cnnops, m) {
  // y = conv2d(x, w) + b. input (N, C, H, W), weight (K, C/groups, R, S), bias (K) or None.
  m.def(
      "conv2d(Tensor input, Tensor weight, Tensor? bias, int[2] stride, int[4] padding, "
      "int[2] dilation, int groups) -> Tensor");
  // max(conv2d(x, w) + b, 0) in one pass, ReLU in the epilogue: inference only (cnnops.fuse).
  m.def(
      "conv2d_bias_relu(Tensor input, Tensor weight, Tensor? bias, int[2] stride, "
      "int[4] padding, int[2] dilation, int groups) -> Tensor");
  // dL/dx given dL/dy: the adjoint of conv2d with respect to its input.
  m.def(
      "conv2d_grad_input(Tensor grad_output, Tensor weight, SymInt[4] input_size, "
      "int[2] stride, int[4] padding, int[2] dilation, int groups) -> Tensor");
  // dL/dw given dL/dy and x: the adjoint of conv2d with respect to its weight.
  m.def(
      "conv2d_grad_weight(Tensor grad_output, Tensor input, SymInt[4] weight_size, "
      "int[2] stride, int[4] padding, int[2] dilation, int groups) -> Tensor");
  // conv2d_grad_input, conv2d_grad_weight and, where `bias`, grad_output summed over
  // (N, H, W) (else an empty tensor), in one call: the backward pass of conv2d when no
  // higher derivative is wanted. A kernel may fuse them (the CPU's depthwise small planes);
  // elsewhere it is the three in turn (csrc/conv2d_backward.cpp).
  m.def(
      "conv2d_backward(Tensor grad_output, Tensor input, Tensor weight, int[2] stride, "
      "int[4] padding, int[2] dilation, int groups, bool bias) -> (Tensor, Tensor, Tensor)");

  // ---- pooling (csrc/cpu/pool.cpp, csrc/cuda/pool.cu) -------------------------------------
  // kernel_size, stride, padding, dilation = [height, width]; padding is symmetric and at
  // most half the kernel; indices are int64, flat within each H*W plane (F.max_unpool2d's).
  m.def(
      "max_pool2d_with_indices(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, "
      "int[2] dilation, bool ceil_mode) -> (Tensor, Tensor)");
  // max_pool2d_with_indices' values alone, for inference: cnnops.max_pool2d calls it when no
  // gradient is wanted. Differentiable all the same (the backward recomputes the indices).
  m.def(
      "max_pool2d(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, "
      "int[2] dilation, bool ceil_mode) -> Tensor");
  // output_size (P, Q) >= 0; windows [floor(p*H/P), ceil((p+1)*H/P)) and likewise along W.
  m.def("adaptive_max_pool2d(Tensor input, int[2] output_size) -> (Tensor, Tensor)");
  // The adjoint of max pooling (regular or adaptive) given its indices: grad_output scattered
  // onto zeros shaped like input, at the indices. `input` gives the shape and memory format.
  m.def("max_pool2d_grad_input(Tensor grad_output, Tensor indices, Tensor input) -> Tensor");
  // out[n, c, p, q] = input[n, c, indices[n, c, p, q]]: the adjoint of max_pool2d_grad_input,
  // which makes max pooling differentiable to any order.
  m.def("max_pool2d_gather(Tensor input, Tensor indices) -> Tensor");
  m.def(
      "avg_pool2d(Tensor input, int[2] kernel_size, int[2] stride, int[2] padding, "
      "bool ceil_mode, bool count_include_pad, int? divisor_override) -> Tensor");
  // The adjoint of avg_pool2d (linear, so its own adjoint is avg_pool2d). `input` gives the
  // shape and memory format of the result.
  m.def(
      "avg_pool2d_grad_input(Tensor grad_output, Tensor input, int[2] kernel_size, "
      "int[2] stride, int[2] padding, bool ceil_mode, bool count_include_pad, "
      "int? divisor_override) -> Tensor");
  m.def("adaptive_avg_pool2d(Tensor input, int[2] output_size) -> Tensor");
  m.def("adaptive_avg_pool2d_grad_input(Tensor grad_output, Tensor input) -> Tensor");

  // ---- depthwise-separable convolution -------------------------------------
  // y = conv2d(conv2d(x, dw_w, dw_b, groups=C), pw_w, pw_b) in one pass: input (N, C, H, W),
  // depthwise_weight (C*m, 1, R, S), pointwise_weight (K, C*m, 1, 1), biases (C*m) and (K).
  // stride, padding and dilation are the depthwise half's, as conv2d's above.
  m.def(
      "depthwise_separable_conv2d(Tensor input, Tensor depthwise_weight, "
      "Tensor pointwise_weight, Tensor? depthwise_bias, Tensor? pointwise_bias, "
      "int[2] stride, int[4] padding, int[2] dilation) -> Tensor");
  // The gradients of input, depthwise_weight, depthwise_bias and pointwise_weight given
  // dL/dy (pointwise_bias' is grad_output summed over (N, H, W)). The depthwise result is
  // recomputed, never stored; depthwise_bias may be None (its gradient is computed anyway).
  m.def(
      "depthwise_separable_conv2d_backward(Tensor grad_output, Tensor input, "
      "Tensor depthwise_weight, Tensor pointwise_weight, Tensor? depthwise_bias, "
      "int[2] stride, int[4] padding, int[2] dilation) -> (Tensor, Tensor, Tensor, Tensor)");
}
