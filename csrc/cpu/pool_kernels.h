// The version-2 (layout-specific) CPU pooling kernels, defined in cpu/pool_fast.h and built
// for AVX2 + FMA and in portable C++; cpu/pool.cpp holds the operators, the reference
// kernels, the choice between the builds and the description of both versions.
//
// Preconditions (checked by the caller, cpu/pool.cpp):
//   *_nchw           the tensor read and the tensor written have unit stride along W
//   *_channels_last  they have unit stride along C
//   grad_input       freshly allocated by the operator, NCHW-contiguous or channels_last
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "common/pool_params.h"

namespace cnnops::cpu {

// Element strides of a 4-D tensor, in its logical (N, C, H, W) order.
struct Strides4 {
  int64_t n, c, h, w;
  explicit Strides4(const at::Tensor& t)
      : n(t.stride(0)), c(t.stride(1)), h(t.stride(2)), w(t.stride(3)) {}
};

// The version-2 kernels for element type T, as a table: pool_fast.h compiles them once per
// instruction set.
template <typename T>
struct PoolKernels {
  void (*max_pool2d_forward_nchw)(const at::Tensor& input, at::Tensor& output,
                                  at::Tensor& indices, const PoolShape& s);
  void (*max_pool2d_forward_channels_last)(const at::Tensor& input, at::Tensor& output,
                                           at::Tensor& indices, const PoolShape& s);
  // grad_input: uninitialised on entry (each plane is zeroed just before its scatter).
  void (*max_pool2d_grad_input_nchw)(const at::Tensor& grad_output, const at::Tensor& indices,
                                     at::Tensor& grad_input);
  // grad_input: zeros on entry; grad_output and indices channels-contiguous.
  void (*max_pool2d_grad_input_channels_last)(const at::Tensor& grad_output,
                                              const at::Tensor& indices, at::Tensor& grad_input);
  void (*avg_pool2d_forward_nchw)(const at::Tensor& input, at::Tensor& output,
                                  const PoolShape& s);
  void (*avg_pool2d_forward_channels_last)(const at::Tensor& input, at::Tensor& output,
                                           const PoolShape& s);
  // grad_input: uninitialised on entry, every element is written. The NCHW kernel reads
  // grad_output through any strides; the channels_last one wants it channels-contiguous.
  void (*avg_pool2d_grad_input_nchw)(const at::Tensor& grad_output, at::Tensor& grad_input,
                                     const PoolShape& s);
  void (*avg_pool2d_grad_input_channels_last)(const at::Tensor& grad_output,
                                              at::Tensor& grad_input, const PoolShape& s);
};

// Each instruction set's build (pool_fast_<isa>.cpp).
namespace portable {
template <typename T>
PoolKernels<T> pool_kernels();
}
#if defined(__x86_64__) || defined(_M_X64)
namespace avx2 {
template <typename T>
PoolKernels<T> pool_kernels();
}
#endif

}  // namespace cnnops::cpu
