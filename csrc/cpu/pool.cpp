// CPU kernels of the pooling family: max pooling (regular and adaptive) with indices, its
// index-based adjoint and that adjoint's adjoint (a gather); average pooling (regular and
// adaptive) and its adjoint.
//
// Letters, as in cuda/pool.cu: N batch, C channels, H x W input, P x Q output; a plane is
// one (n, c). Windows come from PoolAxis (common/pool_params.h), one rule per axis, so the
// same kernels serve regular and adaptive pooling. Indices are flat within a plane:
// ih * W + iw. Tensors may have any strides. Version 2 has one kernel per layout and the
// operator picks it from the strides: NCHW (unit stride along W) or channels_last (unit
// stride along C); other views (sliced along W, transposed) run version 1 rather than
// copying the input.
//
// version 1: reference. One output element at a time through the strides, its windows
//            computed on the spot; the adjoints are per-plane scatters in output order.
// version 2: layout-specific (the default; cpu/pool_kernels.h holds the kernels).
//   NCHW          one task per output row, the windows of every output taken from per-axis
//                 tables. Each input row of the window is swept once for the whole output
//                 row: outputs whose windows are full and evenly spaced (the interior) run
//                 as a loop over outputs per kernel tap, which the compiler vectorises;
//                 2x2 and 3x3 windows of stride 2 (max also of stride 1) run fused
//                 kernels instead, all taps of eight outputs in vector registers (max:
//                 vmaxps, with a NaN probe that sends a row holding a NaN to the exact
//                 kernel); borders and uneven adaptive windows loop over their own window.
//                 Reads are prefetched 4 KiB ahead. Pooling with those windows on planes
//                 whose output rows are short (under eight) or have borders copies each
//                 plane into a padded block first (-inf for max, zeros for avg), so that
//                 every row, borders included, is an interior row of a fused kernel
//                 (max_pool2d_padded_planes: rows up to 32 wide; avg_pool2d_padded_planes:
//                 the same at stride 2, any plane whose block fits 512 KiB at stride 1).
//                 Global pooling of a contiguous plane reduces it in 8 lanes.
//                 avg backward is a separable gather: each output row's gradient is first
//                 spread along W, then every input row sums the spread rows of the outputs
//                 whose windows hold it; at stride 1 with 2x2 and 3x3 windows, each input
//                 row sums the K x K shares of a zero-padded block in registers instead
//                 (avg_pool2d_grad_padded_planes). Every element of grad_input is written
//                 once, with non-temporal stores when it is 8 MiB or more (stream_store.h;
//                 rows that are not whole cache lines, a contiguous plane at a time).
//   channels_last one task per output pixel and block of channels: the window's taps are
//                 the outer loops, the inner loop runs over contiguous channels, 32 at a
//                 time held in vector registers across the window (max: maxima and
//                 indices; avg: sums). avg backward runs input rows: each output row's
//                 shares (dy / divisor, all its pixels and channels) are divided out once
//                 into a small ring of rows, and every input pixel adds the shares of the
//                 windows that hold it, in output order, each element written once.
// max pooling's backward (both versions) scatters by index, one task owning whole planes
// (NCHW) or images (channels_last) and adding in output order: no atomics, and the result
// does not depend on the thread count. Version 2 zeroes grad_input just ahead of the
// scatter (a plane at a time, or an image's rows as the indices reach them) rather than
// all of it first. Its gather adjoint has a single version.
//
// Max pooling's tie and NaN rules are torch's: scanning the window in row-major order, a
// value replaces the running maximum when it is greater or NaN, so the first maximum wins
// and a NaN beats every number (the last NaN of the window). A window that holds only -inf,
// or no tap inside the input, gives -inf at PoolWindow::init. Sweeping row by row keeps this
// order: per output, the rows come in order and each row's taps in order.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <tuple>

#include "common/kernel_version.h"
#include "common/pool_params.h"
#include "cpu/gemm.h"
#include "cpu/pool_kernels.h"

namespace cnnops::cpu {

namespace {

// ---------------------------------------------------------------------------------------
// version 1: reference

template <typename T>
void max_pool2d_forward_reference(const at::Tensor& input, at::Tensor& output,
                                  at::Tensor& indices, const PoolShape& s) {
  const T* x = input.data_ptr<T>();
  T* y = output.data_ptr<T>();
  int64_t* ind = indices.defined() ? indices.data_ptr<int64_t>() : nullptr;  // none: values only
  const Strides4 xs(input), ys(output), is(indices.defined() ? indices : output);
  const int64_t dh = s.h.step(), dw = s.w.step();
  at::parallel_for(0, s.N * s.C * s.P * s.Q, 256, [&](int64_t begin, int64_t end) {
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t q = idx % s.Q, p = (idx / s.Q) % s.P;
      const int64_t c = (idx / (s.Q * s.P)) % s.C, n = idx / (s.Q * s.P * s.C);
      const PoolWindow wh = s.h.window(p), ww = s.w.window(q);
      T best = -std::numeric_limits<T>::infinity();
      int64_t arg = wh.init * s.W + ww.init;
      for (int64_t i = 0; i < wh.count; ++i) {
        const int64_t ih = wh.begin + i * dh;
        for (int64_t j = 0; j < ww.count; ++j) {
          const int64_t iw = ww.begin + j * dw;
          const T v = x[n * xs.n + c * xs.c + ih * xs.h + iw * xs.w];
          if (v > best || v != v) {
            best = v;
            arg = ih * s.W + iw;
          }
        }
      }
      y[n * ys.n + c * ys.c + p * ys.h + q * ys.w] = best;
      if (ind != nullptr) ind[n * is.n + c * is.c + p * is.h + q * is.w] = arg;
    }
  });
}

template <typename T>
void avg_pool2d_forward_reference(const at::Tensor& input, at::Tensor& output,
                                  const PoolShape& s) {
  const T* x = input.data_ptr<T>();
  T* y = output.data_ptr<T>();
  const Strides4 xs(input), ys(output);
  at::parallel_for(0, s.N * s.C * s.P * s.Q, 256, [&](int64_t begin, int64_t end) {
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t q = idx % s.Q, p = (idx / s.Q) % s.P;
      const int64_t c = (idx / (s.Q * s.P)) % s.C, n = idx / (s.Q * s.P * s.C);
      const PoolWindow wh = s.h.window(p), ww = s.w.window(q);
      T sum = 0;
      for (int64_t ih = wh.begin; ih < wh.begin + wh.count; ++ih) {
        for (int64_t iw = ww.begin; iw < ww.begin + ww.count; ++iw) {
          sum += x[n * xs.n + c * xs.c + ih * xs.h + iw * xs.w];
        }
      }
      const bool empty = wh.count == 0 || ww.count == 0;
      y[n * ys.n + c * ys.c + p * ys.h + q * ys.w] =
          empty ? T(0) : sum / static_cast<T>(s.divisor(wh, ww));
    }
  });
}

// grad_input (zeros on entry) += the adjoint of avg pooling: one task per plane, scattering
// each output's share over its window in output order.
template <typename T>
void avg_pool2d_grad_input_reference(const at::Tensor& grad_output, at::Tensor& grad_input,
                                     const PoolShape& s) {
  const T* dy = grad_output.data_ptr<T>();
  T* dx = grad_input.data_ptr<T>();
  const Strides4 dys(grad_output), dxs(grad_input);
  at::parallel_for(0, s.N * s.C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t c = plane % s.C, n = plane / s.C;
      for (int64_t p = 0; p < s.P; ++p) {
        const PoolWindow wh = s.h.window(p);
        for (int64_t q = 0; q < s.Q; ++q) {
          const PoolWindow ww = s.w.window(q);
          if (wh.count == 0 || ww.count == 0) continue;
          const T share = dy[n * dys.n + c * dys.c + p * dys.h + q * dys.w] /
                          static_cast<T>(s.divisor(wh, ww));
          for (int64_t ih = wh.begin; ih < wh.begin + wh.count; ++ih) {
            for (int64_t iw = ww.begin; iw < ww.begin + ww.count; ++iw) {
              dx[n * dxs.n + c * dxs.c + ih * dxs.h + iw * dxs.w] += share;
            }
          }
        }
      }
    }
  });
}

// grad_input (zeros on entry) += grad_output scattered at the indices, one task per plane
// in output order. Indices outside the plane (a window with no tap inside the input) add
// nothing.
template <typename T>
void max_pool2d_grad_input_reference(const at::Tensor& grad_output, const at::Tensor& indices,
                                     at::Tensor& grad_input) {
  const T* dy = grad_output.data_ptr<T>();
  const int64_t* ind = indices.data_ptr<int64_t>();
  T* dx = grad_input.data_ptr<T>();
  const Strides4 dys(grad_output), is(indices), dxs(grad_input);
  const int64_t C = grad_input.size(1), H = grad_input.size(2), W = grad_input.size(3);
  const int64_t P = indices.size(2), Q = indices.size(3);
  at::parallel_for(0, grad_input.size(0) * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t c = plane % C, n = plane / C;
      for (int64_t p = 0; p < P; ++p) {
        for (int64_t q = 0; q < Q; ++q) {
          const int64_t k = ind[n * is.n + c * is.c + p * is.h + q * is.w];
          if (k < 0 || k >= H * W) continue;
          dx[n * dxs.n + c * dxs.c + (k / W) * dxs.h + (k % W) * dxs.w] +=
              dy[n * dys.n + c * dys.c + p * dys.h + q * dys.w];
        }
      }
    }
  });
}

// out[n, c, p, q] = input[n, c, indices[n, c, p, q]], 0 where the index is outside the plane.
template <typename T>
void max_pool2d_gather_impl(const at::Tensor& input, const at::Tensor& indices,
                            at::Tensor& output) {
  const T* x = input.data_ptr<T>();
  const int64_t* ind = indices.data_ptr<int64_t>();
  T* y = output.data_ptr<T>();
  const Strides4 xs(input), is(indices), ys(output);
  const int64_t C = input.size(1), H = input.size(2), W = input.size(3);
  const int64_t P = indices.size(2), Q = indices.size(3);
  at::parallel_for(0, indices.size(0) * C * P * Q, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t q = idx % Q, p = (idx / Q) % P, c = (idx / (Q * P)) % C, n = idx / (Q * P * C);
      const int64_t k = ind[n * is.n + c * is.c + p * is.h + q * is.w];
      y[n * ys.n + c * ys.c + p * ys.h + q * ys.w] =
          k < 0 || k >= H * W ? T(0) : x[n * xs.n + c * xs.c + (k / W) * xs.h + (k % W) * xs.w];
    }
  });
}

// ---------------------------------------------------------------------------------------
// Choosing a kernel

bool use_reference() { return kernel_version(OpFamily::pool) == 1; }

// The version-2 kernels for the instruction set in use: cpu_isa() (cpu/gemm.h) decides once
// for all CPU kernels, from the CPU and CNNOPS_CPU_ISA.
template <typename T>
const PoolKernels<T>& kernels() {
  static const PoolKernels<T> chosen = [] {
#if defined(__x86_64__) || defined(_M_X64)
    if (active_isa() != Isa::portable) return avx2::pool_kernels<T>();
#endif
    return portable::pool_kernels<T>();
  }();
  return chosen;
}

// The version-2 kernel for a pass reading `in` and writing `out` (both 4-D). Version 2
// keeps in-plane indices in int32, so planes of 2^31 elements or more run version 1.
enum class Layout { nchw, channels_last, strided };

bool fits_int32_plane(const at::Tensor& t) {
  return t.size(2) * t.size(3) <= std::numeric_limits<int32_t>::max();
}

Layout layout_of(const at::Tensor& in, const at::Tensor& out) {
  if (!fits_int32_plane(in)) return Layout::strided;
  if (in.stride(3) == 1 && out.stride(3) == 1) return Layout::nchw;
  if (in.stride(1) == 1 && out.stride(1) == 1) return Layout::channels_last;
  return Layout::strided;
}

// A new tensor in format_of's pooling memory format (at::zeros would ignore the format).
at::Tensor empty_like_format(c10::IntArrayRef sizes, const at::Tensor& format_of,
                             const at::TensorOptions& options) {
  return at::empty(sizes, options.memory_format(pool_output_memory_format(format_of)));
}

// Without `with_indices`, the values alone (indices undefined): the inference operator
// max_pool2d, which spares the int64 indices' memory traffic (twice the float32 output's).
std::tuple<at::Tensor, at::Tensor> max_pool2d_forward(const at::Tensor& input,
                                                      c10::IntArrayRef out_size,
                                                      const PoolShape& s,
                                                      bool with_indices = true) {
  at::Tensor output = empty_like_format(out_size, input, input.options());
  at::Tensor indices = with_indices
                           ? empty_like_format(out_size, input, input.options().dtype(at::kLong))
                           : at::Tensor();
  if (output.numel() == 0) return {output, indices};
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "cnnops.max_pool2d", [&] {
    const Layout layout = use_reference() ? Layout::strided : layout_of(input, output);
    if (layout == Layout::nchw) {
      kernels<scalar_t>().max_pool2d_forward_nchw(input, output, indices, s);
    } else if (layout == Layout::channels_last) {
      kernels<scalar_t>().max_pool2d_forward_channels_last(input, output, indices, s);
    } else {
      max_pool2d_forward_reference<scalar_t>(input, output, indices, s);
    }
  });
  return {output, indices};
}

at::Tensor avg_pool2d_forward(const at::Tensor& input, c10::IntArrayRef out_size,
                              const PoolShape& s) {
  at::Tensor output = empty_like_format(out_size, input, input.options());
  if (output.numel() == 0) return output;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "cnnops.avg_pool2d", [&] {
    const Layout layout = use_reference() ? Layout::strided : layout_of(input, output);
    if (layout == Layout::nchw) {
      kernels<scalar_t>().avg_pool2d_forward_nchw(input, output, s);
    } else if (layout == Layout::channels_last) {
      kernels<scalar_t>().avg_pool2d_forward_channels_last(input, output, s);
    } else {
      avg_pool2d_forward_reference<scalar_t>(input, output, s);
    }
  });
  return output;
}

at::Tensor avg_pool2d_grad_input(const at::Tensor& grad_output, const at::Tensor& input,
                                 const PoolShape& s) {
  // grad_input is NCHW or channels_last, like the input; the channels_last gather wants
  // channels-contiguous gradients (an expanded grad_output of a sum() has stride 0).
  const bool reference = use_reference() || !fits_int32_plane(input);
  at::Tensor grad_input = empty_like_format(input.sizes(), input, input.options());
  if (reference) grad_input.zero_();
  if (grad_input.numel() == 0) return grad_input;
  if (grad_output.numel() == 0) return grad_input.zero_();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "cnnops.avg_pool2d_grad_input", [&] {
    if (reference) {
      avg_pool2d_grad_input_reference<scalar_t>(grad_output, grad_input, s);
    } else if (grad_input.stride(3) == 1) {
      kernels<scalar_t>().avg_pool2d_grad_input_nchw(grad_output, grad_input, s);
    } else {
      const at::Tensor dy = grad_output.stride(1) == 1
                                ? grad_output
                                : grad_output.contiguous(c10::MemoryFormat::ChannelsLast);
      kernels<scalar_t>().avg_pool2d_grad_input_channels_last(dy, grad_input, s);
    }
  });
  return grad_input;
}

// ---------------------------------------------------------------------------------------
// Operators

// max_pool2d_with_indices, and without `with_indices` the values-only max_pool2d (its
// indices undefined: the kernels store none).
std::tuple<at::Tensor, at::Tensor> regular_max_pool2d(
    const at::Tensor& input, c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, bool ceil_mode, bool with_indices) {
  constexpr const char* op = "cnnops.max_pool2d";
  const auto params = PoolParams::from_lists(op, kernel_size, stride, padding, dilation, ceil_mode);
  const auto out_size = check_pool2d_forward(op, input, params);
  return max_pool2d_forward(input, out_size, regular_pool_shape(input.sizes(), out_size, params),
                            with_indices);
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices_cpu(
    const at::Tensor& input, c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, bool ceil_mode) {
  return regular_max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, true);
}

at::Tensor max_pool2d_cpu(const at::Tensor& input, c10::IntArrayRef kernel_size,
                          c10::IntArrayRef stride, c10::IntArrayRef padding,
                          c10::IntArrayRef dilation, bool ceil_mode) {
  return std::get<0>(
      regular_max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, false));
}

std::tuple<at::Tensor, at::Tensor> adaptive_max_pool2d_cpu(const at::Tensor& input,
                                                           c10::IntArrayRef output_size) {
  const auto out_size = check_adaptive_pool2d_forward("cnnops.adaptive_max_pool2d", input, output_size);
  return max_pool2d_forward(input, out_size, adaptive_pool_shape(input.sizes(), out_size));
}

at::Tensor max_pool2d_grad_input_cpu(const at::Tensor& grad_output, const at::Tensor& indices,
                                     const at::Tensor& input) {
  constexpr const char* op = "cnnops.max_pool2d_grad_input";
  check_pool2d_indexed(op, "input", input, indices);
  check_pool2d_grad(op, grad_output, input, indices.sizes());
  const bool reference = use_reference();
  const bool channels_last = pool_output_memory_format(input) == c10::MemoryFormat::ChannelsLast;
  // Version 2's kernels zero grad_input as they scatter into it, the reference starts from
  // zeros.
  at::Tensor grad_input = empty_like_format(input.sizes(), input, input.options());
  if (reference) grad_input.zero_();
  if (grad_input.numel() == 0) return grad_input;
  if (grad_output.numel() == 0) return grad_input.zero_();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), op, [&] {
    if (reference) {
      max_pool2d_grad_input_reference<scalar_t>(grad_output, indices, grad_input);
    } else if (!channels_last) {
      kernels<scalar_t>().max_pool2d_grad_input_nchw(grad_output, indices, grad_input);
    } else {
      const auto cl = c10::MemoryFormat::ChannelsLast;
      kernels<scalar_t>().max_pool2d_grad_input_channels_last(
          grad_output.stride(1) == 1 ? grad_output : grad_output.contiguous(cl),
          indices.stride(1) == 1 ? indices : indices.contiguous(cl), grad_input);
    }
  });
  return grad_input;
}

at::Tensor max_pool2d_gather_cpu(const at::Tensor& input, const at::Tensor& indices) {
  check_pool2d_indexed("cnnops.max_pool2d_gather", "input", input, indices);
  at::Tensor output = empty_like_format(indices.sizes(), indices, input.options());
  if (output.numel() == 0) return output;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "cnnops.max_pool2d_gather", [&] {
    max_pool2d_gather_impl<scalar_t>(input, indices, output);
  });
  return output;
}

PoolParams avg_params(const char* op, c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                      c10::IntArrayRef padding, bool ceil_mode,
                      const c10::optional<int64_t>& divisor_override) {
  const int64_t no_dilation[2] = {1, 1};
  check_divisor_override(op, divisor_override);
  return PoolParams::from_lists(op, kernel_size, stride, padding, no_dilation, ceil_mode);
}

at::Tensor avg_pool2d_cpu(const at::Tensor& input, c10::IntArrayRef kernel_size,
                          c10::IntArrayRef stride, c10::IntArrayRef padding, bool ceil_mode,
                          bool count_include_pad, c10::optional<int64_t> divisor_override) {
  constexpr const char* op = "cnnops.avg_pool2d";
  const auto params = avg_params(op, kernel_size, stride, padding, ceil_mode, divisor_override);
  const auto out_size = check_pool2d_forward(op, input, params);
  return avg_pool2d_forward(
      input, out_size,
      regular_pool_shape(input.sizes(), out_size, params, count_include_pad, divisor_override));
}

at::Tensor avg_pool2d_grad_input_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                     c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                     c10::IntArrayRef padding, bool ceil_mode,
                                     bool count_include_pad,
                                     c10::optional<int64_t> divisor_override) {
  constexpr const char* op = "cnnops.avg_pool2d_grad_input";
  const auto params = avg_params(op, kernel_size, stride, padding, ceil_mode, divisor_override);
  const auto out_size = check_pool2d_forward(op, input, params);
  check_pool2d_grad(op, grad_output, input, out_size);
  return avg_pool2d_grad_input(
      grad_output, input,
      regular_pool_shape(input.sizes(), out_size, params, count_include_pad, divisor_override));
}

at::Tensor adaptive_avg_pool2d_cpu(const at::Tensor& input, c10::IntArrayRef output_size) {
  const auto out_size = check_adaptive_pool2d_forward("cnnops.adaptive_avg_pool2d", input, output_size);
  return avg_pool2d_forward(input, out_size, adaptive_pool_shape(input.sizes(), out_size));
}

at::Tensor adaptive_avg_pool2d_grad_input_cpu(const at::Tensor& grad_output,
                                              const at::Tensor& input) {
  constexpr const char* op = "cnnops.adaptive_avg_pool2d_grad_input";
  TORCH_CHECK_VALUE(grad_output.dim() == 4, op,
                    ": argument 'grad_output' must be 4-D, got shape ", grad_output.sizes());
  const int64_t output_size[2] = {grad_output.size(2), grad_output.size(3)};
  const auto out_size = check_adaptive_pool2d_forward(op, input, output_size);
  check_pool2d_grad(op, grad_output, input, out_size);
  return avg_pool2d_grad_input(grad_output, input, adaptive_pool_shape(input.sizes(), out_size));
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnops, CPU, m) {
  m.impl("max_pool2d_with_indices", &max_pool2d_with_indices_cpu);
  m.impl("max_pool2d", &max_pool2d_cpu);
  m.impl("adaptive_max_pool2d", &adaptive_max_pool2d_cpu);
  m.impl("max_pool2d_grad_input", &max_pool2d_grad_input_cpu);
  m.impl("max_pool2d_gather", &max_pool2d_gather_cpu);
  m.impl("avg_pool2d", &avg_pool2d_cpu);
  m.impl("avg_pool2d_grad_input", &avg_pool2d_grad_input_cpu);
  m.impl("adaptive_avg_pool2d", &adaptive_avg_pool2d_cpu);
  m.impl("adaptive_avg_pool2d_grad_input", &adaptive_avg_pool2d_grad_input_cpu);
}

}  // namespace cnnops::cpu
