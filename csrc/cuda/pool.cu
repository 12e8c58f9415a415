// Pooling on CUDA: max pooling (regular and adaptive) with indices, its index-based adjoint
// and that adjoint's adjoint (a gather); average pooling (regular and adaptive) and its
// adjoint. Mirrors csrc/cpu/pool.cpp: the same host function names, argument order and
// comments.
//
// Letters: N batch, C channels, H x W input, P x Q output; a plane is one (n, c). Windows
// come from PoolAxis (common/pool_params.h), the rule the CPU kernels use too, so the same
// kernels serve regular and adaptive pooling. Indices are flat within a plane: ih * W + iw.
// Tensors may have any strides; kernels take the four element strides of each one. Sums and
// comparisons run in at::opmath_type (float for float16 and bfloat16).
//
// version 1: reference. One thread per output element (forward, gather) or per input
//            element (avg backward, a gather: each element sums the outputs whose windows
//            hold it), (n, c, p, q) with q fastest, 64-bit index math, through the strides.
// version 2: layout-specific (the default). The thread-to-element order follows the layout
//            of the tensor written: W fastest for NCHW, C fastest for channels_last, so that
//            neighbouring threads load and store neighbouring addresses; index math in 32
//            bits when every index fits (PoolShape::fits_int32). Global pooling of contiguous
//            NCHW planes: one warp per plane, reduced with shuffles.
// max pooling's backward (both versions) is a scatter by index with no atomics: one warp per
// plane walks the plane's outputs in order, 32 at a time; lanes whose indices coincide are
// summed by the group's lowest lane (__match_any_sync), so no two lanes ever write one
// element, and the result is deterministic.
//
// Max pooling's tie and NaN rules are torch's: scanning the window in row-major order, a
// value replaces the running maximum when it is greater or NaN, so the first maximum wins
// and a NaN beats every number (the last NaN of the window). A window that holds only -inf,
// or no tap inside the input, gives -inf at PoolWindow::init.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>

#include "common/kernel_version.h"
#include "common/pool_params.h"

namespace cnnops {

namespace {

// ---- shapes, strides, launch helpers ----------------------------------------------------

// Element strides of a 4-D tensor, in its logical (N, C, H, W) dimension order.
struct Strides4 {
  int64_t n, c, h, w;
  explicit Strides4(const at::Tensor& t)
      : n(t.stride(0)), c(t.stride(1)), h(t.stride(2)), w(t.stride(3)) {}
};

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Kernels walk their elements with a grid-stride loop, so any count fits the grid.
unsigned int grid_for(int64_t count, int64_t per_block = kThreads) {
  return static_cast<unsigned int>(std::clamp<int64_t>(ceil_div(count, per_block), 1, 1 << 30));
}

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream(); }

// Grid-stride loops count in 64 bits, whatever the index type of the arithmetic inside:
// the last step may pass 2^31 even when every element index fits in 32 bits.
__device__ __forceinline__ int64_t grid_start() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_step() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// The element (n, c, y, x) a thread handles, from its linear index over a 4-D extent of
// C channels and Y x X pixels: x fastest (NCHW order) or c fastest (channels_last order).
template <typename I, bool kChannelsInner>
struct Element {
  I n, c, y, x;
  __device__ Element(I idx, I C, I Y, I X) {
    if (kChannelsInner) {
      c = idx % C;
      x = (idx / C) % X;
      y = (idx / (C * X)) % Y;
      n = idx / (C * X * Y);
    } else {
      x = idx % X;
      y = (idx / X) % Y;
      c = (idx / (X * Y)) % C;
      n = idx / (X * Y * C);
    }
  }
};

template <typename T>
__device__ __forceinline__ bool is_nan(T v) {
  return v != v;
}

template <typename acc_t>
__device__ __forceinline__ acc_t minus_infinity() {
  return -std::numeric_limits<acc_t>::infinity();
}

// ---- forward ------------------------------------------------------------------------------

// One thread per output element. I: int32_t or int64_t index arithmetic.
template <typename scalar_t, typename I, bool kChannelsInner>
__global__ void max_pool2d_forward_kernel(const scalar_t* __restrict__ input,
                                          scalar_t* __restrict__ output,
                                          int64_t* __restrict__ indices, PoolShape s,
                                          Strides4 xs, Strides4 ys, Strides4 is) {
  using acc_t = at::opmath_type<scalar_t>;
  const I dh = static_cast<I>(s.h.step()), dw = static_cast<I>(s.w.step());
  for (int64_t idx = grid_start(); idx < s.N * s.C * s.P * s.Q; idx += grid_step()) {
    const Element<I, kChannelsInner> e(static_cast<I>(idx), static_cast<I>(s.C),
                                       static_cast<I>(s.P), static_cast<I>(s.Q));
    const PoolWindowT<I> wh = s.h.window_as<I>(e.y), ww = s.w.window_as<I>(e.x);
    const scalar_t* plane = input + int64_t{e.n} * xs.n + int64_t{e.c} * xs.c;
    acc_t best = minus_infinity<acc_t>();
    int64_t arg = int64_t{wh.init} * s.W + ww.init;
    for (I i = 0; i < wh.count; ++i) {
      const I ih = wh.begin + i * dh;
      for (I j = 0; j < ww.count; ++j) {
        const I iw = ww.begin + j * dw;
        const acc_t v = static_cast<acc_t>(plane[int64_t{ih} * xs.h + int64_t{iw} * xs.w]);
        if (v > best || is_nan(v)) {
          best = v;
          arg = int64_t{ih} * s.W + iw;
        }
      }
    }
    const int64_t n = e.n, c = e.c, p = e.y, q = e.x;
    output[n * ys.n + c * ys.c + p * ys.h + q * ys.w] = static_cast<scalar_t>(best);
    if (indices != nullptr) indices[n * is.n + c * is.c + p * is.h + q * is.w] = arg;
  }
}

template <typename scalar_t, typename I, bool kChannelsInner>
__global__ void avg_pool2d_forward_kernel(const scalar_t* __restrict__ input,
                                          scalar_t* __restrict__ output, PoolShape s,
                                          Strides4 xs, Strides4 ys) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t idx = grid_start(); idx < s.N * s.C * s.P * s.Q; idx += grid_step()) {
    const Element<I, kChannelsInner> e(static_cast<I>(idx), static_cast<I>(s.C),
                                       static_cast<I>(s.P), static_cast<I>(s.Q));
    const PoolWindowT<I> wh = s.h.window_as<I>(e.y), ww = s.w.window_as<I>(e.x);
    const scalar_t* plane = input + int64_t{e.n} * xs.n + int64_t{e.c} * xs.c;
    acc_t sum = 0;
    for (I ih = wh.begin; ih < wh.begin + wh.count; ++ih) {
      for (I iw = ww.begin; iw < ww.begin + ww.count; ++iw) {
        sum += static_cast<acc_t>(plane[int64_t{ih} * xs.h + int64_t{iw} * xs.w]);
      }
    }
    const bool empty = wh.count == 0 || ww.count == 0;  // torch gives 0 there
    const acc_t result = empty ? acc_t(0) : sum / static_cast<acc_t>(s.divisor(wh, ww));
    output[int64_t{e.n} * ys.n + int64_t{e.c} * ys.c + int64_t{e.y} * ys.h + int64_t{e.x} * ys.w] =
        static_cast<scalar_t>(result);
  }
}

// Global pooling of contiguous planes (version 2): one warp per plane. Lane l reduces the
// elements l, l + 32, ... in order, then the lanes combine with shuffles in a fixed pattern.
// Max combines as the CPU lanes do: a NaN wins (the one with the largest index), else the
// larger value, ties going to the smaller index, which is the answer of one sequential scan.
template <typename scalar_t, bool kMax>
__global__ void global_pool2d_warp_kernel(const scalar_t* __restrict__ input,
                                          scalar_t* __restrict__ output,
                                          int64_t* __restrict__ indices, int64_t planes,
                                          int64_t C, int64_t plane_size, Strides4 xs,
                                          Strides4 ys, Strides4 is, int64_t divisor) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % 32;
  for (int64_t plane = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
       plane < planes; plane += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t n = plane / C, c = plane % C;
    const scalar_t* x = input + n * xs.n + c * xs.c;
    acc_t acc = kMax ? minus_infinity<acc_t>() : acc_t(0);
    int64_t arg = lane;  // the lane's first element: reported if the lane holds only -inf
    for (int64_t i = lane; i < plane_size; i += 32) {
      const acc_t v = static_cast<acc_t>(x[i]);
      if (kMax) {
        if (v > acc || is_nan(v)) {
          acc = v;
          arg = i;
        }
      } else {
        acc += v;
      }
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      const acc_t other = __shfl_xor_sync(0xffffffffu, acc, offset);
      if (kMax) {
        const int64_t other_arg = __shfl_xor_sync(0xffffffffu, arg, offset);
        const bool take = is_nan(acc) ? (is_nan(other) && other_arg > arg)
                                      : (is_nan(other) || other > acc ||
                                         (other == acc && other_arg < arg));
        if (take) {
          acc = other;
          arg = other_arg;
        }
      } else {
        acc += other;
      }
    }
    if (lane == 0) {
      if (kMax) {
        // read the value back at the index, so that -0.0 and 0.0 come out as torch has them
        output[n * ys.n + c * ys.c] = x[arg];
        if (indices != nullptr) indices[n * is.n + c * is.c] = arg;
      } else {
        output[n * ys.n + c * ys.c] = static_cast<scalar_t>(acc / static_cast<acc_t>(divisor));
      }
    }
  }
}

// ---- backward -----------------------------------------------------------------------------

// One thread per input element: the sum of dy / divisor over the outputs whose windows hold
// it, in output order.
template <typename scalar_t, typename I, bool kChannelsInner>
__global__ void avg_pool2d_grad_input_kernel(const scalar_t* __restrict__ grad_output,
                                             scalar_t* __restrict__ grad_input, PoolShape s,
                                             Strides4 dys, Strides4 dxs) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t idx = grid_start(); idx < s.N * s.C * s.H * s.W; idx += grid_step()) {
    const Element<I, kChannelsInner> e(static_cast<I>(idx), static_cast<I>(s.C),
                                       static_cast<I>(s.H), static_cast<I>(s.W));
    I p0, p1, q0, q1;
    s.h.outputs_of<I>(e.y, &p0, &p1);
    s.w.outputs_of<I>(e.x, &q0, &q1);
    const scalar_t* dy = grad_output + int64_t{e.n} * dys.n + int64_t{e.c} * dys.c;
    acc_t sum = 0;
    for (I p = p0; p < p1; ++p) {
      const PoolWindowT<I> wh = s.h.window_as<I>(p);
      if (wh.count == 0) continue;
      for (I q = q0; q < q1; ++q) {
        const PoolWindowT<I> ww = s.w.window_as<I>(q);
        if (ww.count == 0) continue;
        sum += static_cast<acc_t>(dy[int64_t{p} * dys.h + int64_t{q} * dys.w]) /
               static_cast<acc_t>(s.divisor(wh, ww));
      }
    }
    grad_input[int64_t{e.n} * dxs.n + int64_t{e.c} * dxs.c + int64_t{e.y} * dxs.h +
               int64_t{e.x} * dxs.w] = static_cast<scalar_t>(sum);
  }
}

// The index scatter: grad_input (zeros on entry) += grad_output at the indices. One warp per
// plane, 32 outputs per step in output order. Lanes holding the same index form a group
// whose lowest lane adds the group's values (in lane order) to that element; groups hold
// distinct indices, so no two lanes write one element, and each step ends with __syncwarp,
// which orders the warp's memory accesses before the next step's. Indices outside the plane
// add nothing.
template <typename scalar_t>
__global__ void max_pool2d_grad_input_warp_kernel(const scalar_t* __restrict__ grad_output,
                                                  const int64_t* __restrict__ indices,
                                                  scalar_t* __restrict__ grad_input,
                                                  int64_t planes, int64_t C, int64_t P,
                                                  int64_t Q, int64_t plane_size, Strides4 dys,
                                                  Strides4 is, Strides4 dxs) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t values[kWarpsPerBlock][32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t plane = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
       plane < planes; plane += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t n = plane / C, c = plane % C;
    const scalar_t* dy = grad_output + n * dys.n + c * dys.c;
    const int64_t* ind = indices + n * is.n + c * is.c;
    // grad_input is NCHW or channels_last: element k of the plane at k * dxs.w
    scalar_t* dx = grad_input + n * dxs.n + c * dxs.c;
    for (int64_t base = 0; base < P * Q; base += 32) {
      const int64_t o = base + lane;
      int64_t k = -1;
      acc_t v = 0;
      if (o < P * Q) {
        const int64_t p = o / Q, q = o % Q;
        k = ind[p * is.h + q * is.w];
        v = static_cast<acc_t>(dy[p * dys.h + q * dys.w]);
        if (k < 0 || k >= plane_size) k = -1;
      }
      values[warp][lane] = v;
      __syncwarp();
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 700
      const unsigned group = __match_any_sync(0xffffffffu, k);
      if (k >= 0 && lane == __ffs(group) - 1) {
        acc_t sum = 0;
        for (unsigned rest = group; rest != 0; rest &= rest - 1) {
          sum += values[warp][__ffs(rest) - 1];
        }
        dx[k * dxs.w] = static_cast<scalar_t>(static_cast<acc_t>(dx[k * dxs.w]) + sum);
      }
#else
      // no __match_any_sync before sm_70: lane 0 adds the step's values one by one
      if (lane == 0) {
        for (int l = 0; l < 32 && base + l < P * Q; ++l) {
          const int64_t kl = ind[((base + l) / Q) * is.h + ((base + l) % Q) * is.w];
          if (kl >= 0 && kl < plane_size) {
            dx[kl * dxs.w] = static_cast<scalar_t>(static_cast<acc_t>(dx[kl * dxs.w]) + values[warp][l]);
          }
        }
      }
#endif
      __syncwarp();
    }
  }
}

// out[n, c, p, q] = input[n, c, indices[n, c, p, q]], 0 where the index is outside the plane.
template <typename scalar_t>
__global__ void max_pool2d_gather_kernel(const scalar_t* __restrict__ input,
                                         const int64_t* __restrict__ indices,
                                         scalar_t* __restrict__ output, int64_t N, int64_t C,
                                         int64_t H, int64_t W, int64_t P, int64_t Q,
                                         Strides4 xs, Strides4 is, Strides4 ys) {
  for (int64_t idx = grid_start(); idx < N * C * P * Q; idx += grid_step()) {
    const Element<int64_t, false> e(idx, C, P, Q);
    const int64_t k = indices[e.n * is.n + e.c * is.c + e.y * is.h + e.x * is.w];
    output[e.n * ys.n + e.c * ys.c + e.y * ys.h + e.x * ys.w] =
        k < 0 || k >= H * W ? scalar_t(0)
                            : input[e.n * xs.n + e.c * xs.c + (k / W) * xs.h + (k % W) * xs.w];
  }
}

// ---------------------------------------------------------------------------------------
// Choosing a kernel

bool use_reference() { return kernel_version(OpFamily::pool) == 1; }

// How version 2 orders the threads over a tensor it writes: by its layout.
bool channels_inner(const at::Tensor& written) {
  return written.suggest_memory_format() == c10::MemoryFormat::ChannelsLast;
}

// Whether global pooling can read each plane of `input` as one contiguous run.
bool global_contiguous(const PoolShape& s, const at::Tensor& input) {
  const PoolWindow wh = s.h.window(0), ww = s.w.window(0);
  return s.P == 1 && s.Q == 1 && wh.begin == 0 && wh.count == s.H && ww.begin == 0 &&
         ww.count == s.W && (s.h.step() == 1 || s.H == 1) && (s.w.step() == 1 || s.W == 1) &&
         input.stride(3) == 1 && (input.stride(2) == s.W || s.H == 1);
}

// Launches kernel<I, kChannelsInner> with the index type and thread order version 2 wants,
// or int64 and NCHW order for version 1.
template <typename Launch>
void launch_for(const PoolShape& s, bool reference, bool channels_last, Launch launch) {
  if (reference || !s.fits_int32()) {
    launch(int64_t{}, std::false_type{});
  } else if (channels_last) {
    launch(int32_t{}, std::true_type{});
  } else {
    launch(int32_t{}, std::false_type{});
  }
}

at::Tensor empty_like_format(c10::IntArrayRef sizes, const at::Tensor& format_of,
                             const at::TensorOptions& options) {
  return at::empty(sizes, options.memory_format(pool_output_memory_format(format_of)));
}

// indices may be undefined (the values-only operator): the kernels then write none.
template <typename scalar_t>
void max_pool2d_forward_impl(const at::Tensor& input, at::Tensor& output, at::Tensor& indices,
                             const PoolShape& s) {
  const bool reference = use_reference();
  int64_t* ind = indices.defined() ? indices.data_ptr<int64_t>() : nullptr;
  const Strides4 is(indices.defined() ? indices : output);
  if (!reference && global_contiguous(s, input)) {
    global_pool2d_warp_kernel<scalar_t, true>
        <<<grid_for(s.N * s.C, kWarpsPerBlock), kThreads, 0, stream()>>>(
            input.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), ind, s.N * s.C, s.C,
            s.H * s.W, Strides4(input), Strides4(output), is, 1);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  launch_for(s, reference, channels_inner(output), [&](auto index, auto inner) {
    using I = decltype(index);
    max_pool2d_forward_kernel<scalar_t, I, decltype(inner)::value>
        <<<grid_for(output.numel()), kThreads, 0, stream()>>>(
            input.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), ind, s, Strides4(input),
            Strides4(output), is);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

template <typename scalar_t>
void avg_pool2d_forward_impl(const at::Tensor& input, at::Tensor& output, const PoolShape& s) {
  const bool reference = use_reference();
  if (!reference && global_contiguous(s, input)) {
    global_pool2d_warp_kernel<scalar_t, false>
        <<<grid_for(s.N * s.C, kWarpsPerBlock), kThreads, 0, stream()>>>(
            input.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), nullptr, s.N * s.C, s.C,
            s.H * s.W, Strides4(input), Strides4(output), Strides4(output),
            s.divisor(s.h.window(0), s.w.window(0)));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  launch_for(s, reference, channels_inner(output), [&](auto index, auto inner) {
    using I = decltype(index);
    avg_pool2d_forward_kernel<scalar_t, I, decltype(inner)::value>
        <<<grid_for(output.numel()), kThreads, 0, stream()>>>(
            input.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), s, Strides4(input),
            Strides4(output));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

template <typename scalar_t>
void avg_pool2d_grad_input_impl(const at::Tensor& grad_output, at::Tensor& grad_input,
                                const PoolShape& s) {
  launch_for(s, use_reference(), channels_inner(grad_input), [&](auto index, auto inner) {
    using I = decltype(index);
    avg_pool2d_grad_input_kernel<scalar_t, I, decltype(inner)::value>
        <<<grid_for(grad_input.numel()), kThreads, 0, stream()>>>(
            grad_output.data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(), s,
            Strides4(grad_output), Strides4(grad_input));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

template <typename scalar_t>
void max_pool2d_grad_input_impl(const at::Tensor& grad_output, const at::Tensor& indices,
                                at::Tensor& grad_input) {
  const int64_t planes = grad_input.size(0) * grad_input.size(1);
  max_pool2d_grad_input_warp_kernel<scalar_t>
      <<<grid_for(planes, kWarpsPerBlock), kThreads, 0, stream()>>>(
          grad_output.data_ptr<scalar_t>(), indices.data_ptr<int64_t>(),
          grad_input.data_ptr<scalar_t>(), planes, grad_input.size(1), indices.size(2),
          indices.size(3), grad_input.size(2) * grad_input.size(3), Strides4(grad_output),
          Strides4(indices), Strides4(grad_input));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t>
void max_pool2d_gather_impl(const at::Tensor& input, const at::Tensor& indices,
                            at::Tensor& output) {
  max_pool2d_gather_kernel<scalar_t><<<grid_for(output.numel()), kThreads, 0, stream()>>>(
      input.data_ptr<scalar_t>(), indices.data_ptr<int64_t>(), output.data_ptr<scalar_t>(),
      input.size(0), input.size(1), input.size(2), input.size(3), indices.size(2),
      indices.size(3), Strides4(input), Strides4(indices), Strides4(output));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#define CNNOPS_DISPATCH_POOL(dtype, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, name, __VA_ARGS__)

// Without `with_indices`, the values alone (indices undefined): the operator max_pool2d.
std::tuple<at::Tensor, at::Tensor> max_pool2d_forward(const at::Tensor& input,
                                                      c10::IntArrayRef out_size,
                                                      const PoolShape& s,
                                                      bool with_indices = true) {
  c10::cuda::CUDAGuard device_guard(input.device());
  at::Tensor output = empty_like_format(out_size, input, input.options());
  at::Tensor indices = with_indices
                           ? empty_like_format(out_size, input, input.options().dtype(at::kLong))
                           : at::Tensor();
  if (output.numel() == 0) return {output, indices};
  CNNOPS_DISPATCH_POOL(input.scalar_type(), "cnnops.max_pool2d (CUDA)", [&] {
    max_pool2d_forward_impl<scalar_t>(input, output, indices, s);
  });
  return {output, indices};
}

at::Tensor avg_pool2d_forward(const at::Tensor& input, c10::IntArrayRef out_size,
                              const PoolShape& s) {
  c10::cuda::CUDAGuard device_guard(input.device());
  at::Tensor output = empty_like_format(out_size, input, input.options());
  if (output.numel() == 0) return output;
  CNNOPS_DISPATCH_POOL(input.scalar_type(), "cnnops.avg_pool2d (CUDA)", [&] {
    avg_pool2d_forward_impl<scalar_t>(input, output, s);
  });
  return output;
}

at::Tensor avg_pool2d_grad_input(const at::Tensor& grad_output, const at::Tensor& input,
                                 const PoolShape& s) {
  c10::cuda::CUDAGuard device_guard(input.device());
  // Every element of grad_input is written (a gather): no zeroing needed.
  at::Tensor grad_input = empty_like_format(input.sizes(), input, input.options());
  if (grad_input.numel() == 0) return grad_input;
  if (grad_output.numel() == 0) return grad_input.zero_();
  CNNOPS_DISPATCH_POOL(input.scalar_type(), "cnnops.avg_pool2d_grad_input (CUDA)", [&] {
    avg_pool2d_grad_input_impl<scalar_t>(grad_output, grad_input, s);
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

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices_cuda(
    const at::Tensor& input, c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, bool ceil_mode) {
  return regular_max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, true);
}

at::Tensor max_pool2d_cuda(const at::Tensor& input, c10::IntArrayRef kernel_size,
                           c10::IntArrayRef stride, c10::IntArrayRef padding,
                           c10::IntArrayRef dilation, bool ceil_mode) {
  return std::get<0>(
      regular_max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, false));
}

std::tuple<at::Tensor, at::Tensor> adaptive_max_pool2d_cuda(const at::Tensor& input,
                                                            c10::IntArrayRef output_size) {
  const auto out_size = check_adaptive_pool2d_forward("cnnops.adaptive_max_pool2d", input, output_size);
  return max_pool2d_forward(input, out_size, adaptive_pool_shape(input.sizes(), out_size));
}

at::Tensor max_pool2d_grad_input_cuda(const at::Tensor& grad_output, const at::Tensor& indices,
                                      const at::Tensor& input) {
  constexpr const char* op = "cnnops.max_pool2d_grad_input";
  check_pool2d_indexed(op, "input", input, indices);
  check_pool2d_grad(op, grad_output, input, indices.sizes());
  c10::cuda::CUDAGuard device_guard(input.device());
  at::Tensor grad_input = empty_like_format(input.sizes(), input, input.options()).zero_();
  if (grad_input.numel() == 0 || grad_output.numel() == 0) return grad_input;
  CNNOPS_DISPATCH_POOL(input.scalar_type(), "cnnops.max_pool2d_grad_input (CUDA)", [&] {
    max_pool2d_grad_input_impl<scalar_t>(grad_output, indices, grad_input);
  });
  return grad_input;
}

at::Tensor max_pool2d_gather_cuda(const at::Tensor& input, const at::Tensor& indices) {
  check_pool2d_indexed("cnnops.max_pool2d_gather", "input", input, indices);
  c10::cuda::CUDAGuard device_guard(input.device());
  at::Tensor output = empty_like_format(indices.sizes(), indices, input.options());
  if (output.numel() == 0) return output;
  CNNOPS_DISPATCH_POOL(input.scalar_type(), "cnnops.max_pool2d_gather (CUDA)", [&] {
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

at::Tensor avg_pool2d_cuda(const at::Tensor& input, c10::IntArrayRef kernel_size,
                           c10::IntArrayRef stride, c10::IntArrayRef padding, bool ceil_mode,
                           bool count_include_pad, c10::optional<int64_t> divisor_override) {
  constexpr const char* op = "cnnops.avg_pool2d";
  const auto params = avg_params(op, kernel_size, stride, padding, ceil_mode, divisor_override);
  const auto out_size = check_pool2d_forward(op, input, params);
  return avg_pool2d_forward(
      input, out_size,
      regular_pool_shape(input.sizes(), out_size, params, count_include_pad, divisor_override));
}

at::Tensor avg_pool2d_grad_input_cuda(const at::Tensor& grad_output, const at::Tensor& input,
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

at::Tensor adaptive_avg_pool2d_cuda(const at::Tensor& input, c10::IntArrayRef output_size) {
  const auto out_size = check_adaptive_pool2d_forward("cnnops.adaptive_avg_pool2d", input, output_size);
  return avg_pool2d_forward(input, out_size, adaptive_pool_shape(input.sizes(), out_size));
}

at::Tensor adaptive_avg_pool2d_grad_input_cuda(const at::Tensor& grad_output,
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

TORCH_LIBRARY_IMPL(cnnops, CUDA, m) {
  m.impl("max_pool2d_with_indices", &max_pool2d_with_indices_cuda);
  m.impl("max_pool2d", &max_pool2d_cuda);
  m.impl("adaptive_max_pool2d", &adaptive_max_pool2d_cuda);
  m.impl("max_pool2d_grad_input", &max_pool2d_grad_input_cuda);
  m.impl("max_pool2d_gather", &max_pool2d_gather_cuda);
  m.impl("avg_pool2d", &avg_pool2d_cuda);
  m.impl("avg_pool2d_grad_input", &avg_pool2d_grad_input_cuda);
  m.impl("adaptive_avg_pool2d", &adaptive_avg_pool2d_cuda);
  m.impl("adaptive_avg_pool2d_grad_input", &adaptive_avg_pool2d_grad_input_cuda);
}

}  // namespace cnnops
