// CUDA kernels of depthwise convolution: conv2d with groups == in_channels, entered from the
// conv2d operators (cuda/conv2d.cu) and from the fused depthwise-separable operator.
// Mirrors cpu/depthwise.cpp: the same entry points, argument order and versions.
//
// Letters: N batch, C input channels, H x W input, M = C * mult output channels (output
// channel k reads input channel k / mult), R x S kernel, P x Q output. Weights are
// (M, 1, R, S). Tensors may have any strides; offsets are 64-bit.
//
// Kernel versions (cnnops.kernel_version("depthwise", v); 0 = automatic = 2):
// version 1: reference. One thread per output element (forward), per input element (the
//            gather form of grad_input), per weight element (grad_weight: a plain loop over
//            N*P*Q).
// version 2: forward      one thread per output, the taps unrolled for 3x3 and 5x5; threads
//                         walk the outputs channels-innermost for channels_last tensors and
//                         width-innermost otherwise, so that a warp's loads and stores are
//                         contiguous
//            grad_input   the gather form likewise, unrolled, with the divisibility tests
//                         of strided convolutions compiled out at stride 1
//            grad_weight  a block per (block of channels, split of N*P*Q): each thread keeps
//                         one partial sum per tap in registers, the block adds them in a
//                         fixed tree, and a second kernel adds the splits in order. The
//                         splits are chosen from the shape alone, never from the device, and
//                         there are no atomics: results are bitwise reproducible.
// All accumulate in at::opmath_type (float for float16/bfloat16).

#include "cuda/depthwise.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/kernel_version.h"
#include "cuda/depthwise_device.cuh"

namespace cnnops::cuda {

namespace {

using namespace dw;

// grad_weight version 2: channels per block when channels are innermost (a warp reads 32
// consecutive channels), and the reduction split.
constexpr int kChannelBlock = 32;
constexpr int64_t kTargetBlocks = 1024;
constexpr int64_t kMinSplitLength = 512;

bool channels_inner(const at::Tensor& t) { return t.size(1) > 1 && t.stride(1) < t.stride(3); }

// ---- version 1: reference kernels -------------------------------------------------------

template <typename scalar_t>
__global__ void depthwise_forward_reference_kernel(const scalar_t* __restrict__ x,
                                                   const scalar_t* __restrict__ w,
                                                   const scalar_t* __restrict__ b,
                                                   int64_t b_stride, scalar_t* __restrict__ y,
                                                   DwShape s, DwStrides xs, DwStrides ws,
                                                   DwStrides ys, bool relu) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = s.N * s.M * s.P * s.Q;
  for (int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t q = idx % s.Q, p = (idx / s.Q) % s.P;
    const int64_t k = (idx / (s.Q * s.P)) % s.M, n = idx / (s.Q * s.P * s.M);
    const int64_t c = k / s.mult;
    acc_t acc = b != nullptr ? static_cast<acc_t>(b[k * b_stride]) : acc_t(0);
    for (int64_t r = 0; r < s.R; ++r) {
      const int64_t h = p * s.stride_h - s.pad_top + r * s.dilation_h;
      if (h < 0 || h >= s.H) continue;
      for (int64_t t = 0; t < s.S; ++t) {
        const int64_t col = q * s.stride_w - s.pad_left + t * s.dilation_w;
        if (col < 0 || col >= s.W) continue;
        acc += static_cast<acc_t>(x[n * xs.n + c * xs.c + h * xs.h + col * xs.w]) *
               static_cast<acc_t>(w[k * ws.n + r * ws.h + t * ws.w]);
      }
    }
    if (relu && acc < acc_t(0)) acc = acc_t(0);  // NaN stays NaN, as in torch.relu
    y[n * ys.n + k * ys.c + p * ys.h + q * ys.w] = static_cast<scalar_t>(acc);
  }
}

// Gather form: input (h, w) of channel c sums, over its mult output channels, the outputs
// whose windows cover it.
template <typename scalar_t>
__global__ void depthwise_grad_input_reference_kernel(const scalar_t* __restrict__ gy,
                                                      const scalar_t* __restrict__ w,
                                                      scalar_t* __restrict__ gx, DwShape s,
                                                      DwStrides gys, DwStrides ws,
                                                      DwStrides gxs) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = s.N * s.C * s.H * s.W;
  for (int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t col = idx % s.W, h = (idx / s.W) % s.H;
    const int64_t c = (idx / (s.W * s.H)) % s.C, n = idx / (s.W * s.H * s.C);
    acc_t acc = 0;
    for (int64_t k = c * s.mult; k < (c + 1) * s.mult; ++k) {
      for (int64_t r = 0; r < s.R; ++r) {
        const int64_t th = h + s.pad_top - r * s.dilation_h;
        if (th < 0 || th % s.stride_h != 0 || th / s.stride_h >= s.P) continue;
        for (int64_t t = 0; t < s.S; ++t) {
          const int64_t tw = col + s.pad_left - t * s.dilation_w;
          if (tw < 0 || tw % s.stride_w != 0 || tw / s.stride_w >= s.Q) continue;
          acc += static_cast<acc_t>(gy[n * gys.n + k * gys.c + (th / s.stride_h) * gys.h +
                                       (tw / s.stride_w) * gys.w]) *
                 static_cast<acc_t>(w[k * ws.n + r * ws.h + t * ws.w]);
        }
      }
    }
    gx[n * gxs.n + c * gxs.c + h * gxs.h + col * gxs.w] = static_cast<scalar_t>(acc);
  }
}

// One thread per element (k, r, s) of the contiguous grad_weight, summing N*P*Q.
template <typename scalar_t>
__global__ void depthwise_grad_weight_reference_kernel(const scalar_t* __restrict__ gy,
                                                       const scalar_t* __restrict__ x,
                                                       scalar_t* __restrict__ gw, DwShape s,
                                                       DwStrides gys, DwStrides xs) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = s.M * s.R * s.S;
  for (int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = idx % s.S, r = (idx / s.S) % s.R, k = idx / (s.S * s.R);
    const int64_t c = k / s.mult;
    acc_t acc = 0;
    for (int64_t n = 0; n < s.N; ++n) {
      for (int64_t p = 0; p < s.P; ++p) {
        const int64_t h = p * s.stride_h - s.pad_top + r * s.dilation_h;
        if (h < 0 || h >= s.H) continue;
        for (int64_t q = 0; q < s.Q; ++q) {
          const int64_t col = q * s.stride_w - s.pad_left + t * s.dilation_w;
          if (col < 0 || col >= s.W) continue;
          acc += static_cast<acc_t>(gy[n * gys.n + k * gys.c + p * gys.h + q * gys.w]) *
                 static_cast<acc_t>(x[n * xs.n + c * xs.c + h * xs.h + col * xs.w]);
        }
      }
    }
    gw[idx] = static_cast<scalar_t>(acc);
  }
}

// ---- version 2 --------------------------------------------------------------------------

// Splits element idx of an (N, channels, rows, cols) tensor into its indices, walking the
// channels innermost (kChannelsInner) or the columns innermost.
template <bool kChannelsInner>
__device__ __forceinline__ void split_index(int64_t idx, int64_t channels, int64_t rows,
                                            int64_t cols, int64_t& n, int64_t& ch, int64_t& row,
                                            int64_t& col) {
  if (kChannelsInner) {
    ch = idx % channels;
    idx /= channels;
    col = idx % cols;
    idx /= cols;
    row = idx % rows;
    n = idx / rows;
  } else {
    col = idx % cols;
    idx /= cols;
    row = idx % rows;
    idx /= rows;
    ch = idx % channels;
    n = idx / channels;
  }
}

template <typename scalar_t, int KH, int KW, bool kChannelsInner>
__global__ void depthwise_forward_kernel(const scalar_t* __restrict__ x,
                                         const scalar_t* __restrict__ w,
                                         const scalar_t* __restrict__ b, int64_t b_stride,
                                         scalar_t* __restrict__ y, DwShape s, DwStrides xs,
                                         DwStrides ws, DwStrides ys, bool relu) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = s.N * s.M * s.P * s.Q;
  for (int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    int64_t n, k, p, q;
    split_index<kChannelsInner>(idx, s.M, s.P, s.Q, n, k, p, q);
    const acc_t init = b != nullptr ? static_cast<acc_t>(b[k * b_stride]) : acc_t(0);
    acc_t acc = depthwise_value<KH, KW>(x + n * xs.n + (k / s.mult) * xs.c, xs.h, xs.w,
                                        w + k * ws.n, ws.h, ws.w, s, p, q, init);
    if (relu && acc < acc_t(0)) acc = acc_t(0);
    y[n * ys.n + k * ys.c + p * ys.h + q * ys.w] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t, int KH, int KW, bool kChannelsInner, bool kUnitStride>
__global__ void depthwise_grad_input_kernel(const scalar_t* __restrict__ gy,
                                            const scalar_t* __restrict__ w,
                                            scalar_t* __restrict__ gx, DwShape s, DwStrides gys,
                                            DwStrides ws, DwStrides gxs) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t R = KH > 0 ? KH : s.R, S = KW > 0 ? KW : s.S;
  const int64_t total = s.N * s.C * s.H * s.W;
  for (int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    int64_t n, c, h, col;
    split_index<kChannelsInner>(idx, s.C, s.H, s.W, n, c, h, col);
    acc_t acc = 0;
    for (int64_t k = c * s.mult; k < (c + 1) * s.mult; ++k) {
      const scalar_t* gy_k = gy + n * gys.n + k * gys.c;
      const scalar_t* w_k = w + k * ws.n;
#pragma unroll
      for (int64_t r = 0; r < R; ++r) {
        const int64_t th = h + s.pad_top - r * s.dilation_h;
        if (th < 0 || (!kUnitStride && th % s.stride_h != 0)) continue;
        const int64_t p = kUnitStride ? th : th / s.stride_h;
        if (p >= s.P) continue;
#pragma unroll
        for (int64_t t = 0; t < S; ++t) {
          const int64_t tw = col + s.pad_left - t * s.dilation_w;
          if (tw < 0 || (!kUnitStride && tw % s.stride_w != 0)) continue;
          const int64_t q = kUnitStride ? tw : tw / s.stride_w;
          if (q >= s.Q) continue;
          acc += static_cast<acc_t>(gy_k[p * gys.h + q * gys.w]) *
                 static_cast<acc_t>(w_k[r * ws.h + t * ws.w]);
        }
      }
    }
    gx[n * gxs.n + c * gxs.c + h * gxs.h + col * gxs.w] = static_cast<scalar_t>(acc);
  }
}

// The threads of a block as kThreads / CB pixel lanes of CB channels: sums each channel's
// `value` over the lanes in a fixed tree and returns it to lane 0.
template <typename acc_t, int CB>
__device__ __forceinline__ acc_t sum_over_pixel_lanes(acc_t value, acc_t* scratch) {
  scratch[threadIdx.x] = value;
  __syncthreads();
#pragma unroll
  for (int lanes = kThreads / CB / 2; lanes > 0; lanes /= 2) {
    if (static_cast<int>(threadIdx.x) < lanes * CB) scratch[threadIdx.x] += scratch[threadIdx.x + lanes * CB];
    __syncthreads();
  }
  const acc_t sum = scratch[threadIdx.x % CB];
  __syncthreads();  // scratch is reused by the next call
  return sum;
}

// Block (blockIdx.x, blockIdx.y) sums channels [blockIdx.x * CB, + CB) over pixels
// [split * split_len, + split_len) of N*P*Q into workspace[split][k][tap].
template <typename scalar_t, int KH, int KW, int CB>
__global__ void depthwise_grad_weight_kernel(const scalar_t* __restrict__ gy,
                                             const scalar_t* __restrict__ x,
                                             at::opmath_type<scalar_t>* __restrict__ workspace,
                                             DwShape s, DwStrides gys, DwStrides xs,
                                             int64_t split_len) {
  using acc_t = at::opmath_type<scalar_t>;
  static_assert(kThreads % CB == 0 && ((kThreads / CB) & (kThreads / CB - 1)) == 0,
                "the pixel lanes (kThreads / CB) must be a power of two");
  constexpr int kLanes = kThreads / CB;
  constexpr int kTaps = KH > 0 ? KH * KW : 1;
  constexpr int kKW = KW > 0 ? KW : 1;
  __shared__ acc_t scratch[kThreads];
  const int64_t taps = s.R * s.S;
  const int64_t k = int64_t{blockIdx.x} * CB + threadIdx.x % CB;
  const int lane = threadIdx.x / CB;
  const bool active = k < s.M;
  const int64_t npq = s.N * s.P * s.Q;
  const int64_t begin = int64_t{blockIdx.y} * split_len;
  const int64_t end = begin + split_len < npq ? begin + split_len : npq;
  const int64_t c = k / s.mult;
  acc_t* out = workspace + (int64_t{blockIdx.y} * s.M + k) * taps;

  // KH > 0: every tap at once; otherwise one tap per pass over the pixels.
  for (int64_t first_tap = 0; first_tap < taps; first_tap += kTaps) {
    acc_t acc[kTaps];
#pragma unroll
    for (int t = 0; t < kTaps; ++t) acc[t] = 0;
    if (active) {
      for (int64_t i = begin + lane; i < end; i += kLanes) {
        const int64_t q = i % s.Q, p = (i / s.Q) % s.P, n = i / (s.Q * s.P);
        const acc_t g = static_cast<acc_t>(gy[n * gys.n + k * gys.c + p * gys.h + q * gys.w]);
        const scalar_t* x_plane = x + n * xs.n + c * xs.c;
#pragma unroll
        for (int t = 0; t < kTaps; ++t) {
          const int64_t tap = first_tap + t;
          const int64_t r = KH > 0 ? t / kKW : tap / s.S, col_tap = KH > 0 ? t % kKW : tap % s.S;
          const int64_t h = p * s.stride_h - s.pad_top + r * s.dilation_h;
          const int64_t col = q * s.stride_w - s.pad_left + col_tap * s.dilation_w;
          if (h >= 0 && h < s.H && col >= 0 && col < s.W) {
            acc[t] += g * static_cast<acc_t>(x_plane[h * xs.h + col * xs.w]);
          }
        }
      }
    }
#pragma unroll
    for (int t = 0; t < kTaps; ++t) {
      const acc_t sum = sum_over_pixel_lanes<acc_t, CB>(acc[t], scratch);
      if (active && lane == 0) out[first_tap + t] = sum;
    }
  }
}

// grad_weight[i] = sum over splits, in split order.
template <typename scalar_t>
__global__ void sum_splits_kernel(const at::opmath_type<scalar_t>* __restrict__ workspace,
                                  scalar_t* __restrict__ out, int64_t count, int64_t splits) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    acc_t sum = 0;
    for (int64_t split = 0; split < splits; ++split) sum += workspace[split * count + i];
    out[i] = static_cast<scalar_t>(sum);
  }
}

// ---- launchers --------------------------------------------------------------------------

template <typename scalar_t, int KH, int KW>
void launch_forward(const at::Tensor& input, const at::Tensor& weight, const scalar_t* b,
                    int64_t b_stride, at::Tensor& output, const DwShape& s, bool relu) {
  auto kernel = channels_inner(output) ? depthwise_forward_kernel<scalar_t, KH, KW, true>
                                       : depthwise_forward_kernel<scalar_t, KH, KW, false>;
  kernel<<<grid_for(output.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      input.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), b, b_stride,
      output.data_ptr<scalar_t>(), s, DwStrides(input), DwStrides(weight), DwStrides(output),
      relu);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, int KH, int KW>
void launch_grad_input(const at::Tensor& grad_output, const at::Tensor& weight,
                       at::Tensor& grad_input, const DwShape& s) {
  const bool inner = channels_inner(grad_input);
  const bool unit = s.stride_h == 1 && s.stride_w == 1;
  auto kernel = inner ? (unit ? depthwise_grad_input_kernel<scalar_t, KH, KW, true, true>
                              : depthwise_grad_input_kernel<scalar_t, KH, KW, true, false>)
                      : (unit ? depthwise_grad_input_kernel<scalar_t, KH, KW, false, true>
                              : depthwise_grad_input_kernel<scalar_t, KH, KW, false, false>);
  kernel<<<grid_for(grad_input.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      grad_output.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(),
      grad_input.data_ptr<scalar_t>(), s, DwStrides(grad_output), DwStrides(weight),
      DwStrides(grad_input));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, int KH, int KW>
void launch_grad_weight(const at::Tensor& grad_output, const at::Tensor& input,
                        at::Tensor& grad_weight, const DwShape& s) {
  using acc_t = at::opmath_type<scalar_t>;
  const bool inner = channels_inner(grad_output);
  const int64_t channel_blocks = ceil_div(s.M, inner ? kChannelBlock : 1);
  const int64_t npq = s.N * s.P * s.Q;
  // From the shape alone: enough splits for about kTargetBlocks blocks.
  const int64_t splits = std::clamp<int64_t>(
      std::min(ceil_div(kTargetBlocks, channel_blocks), ceil_div(npq, kMinSplitLength)), 1,
      kMaxGridYZ);
  const int64_t split_len = ceil_div(npq, splits);
  at::Tensor workspace = at::empty(
      {splits, grad_weight.numel()},
      grad_weight.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const dim3 grid(static_cast<unsigned int>(channel_blocks), static_cast<unsigned int>(splits));
  auto kernel = inner ? depthwise_grad_weight_kernel<scalar_t, KH, KW, kChannelBlock>
                      : depthwise_grad_weight_kernel<scalar_t, KH, KW, 1>;
  kernel<<<grid, kThreads, 0, stream>>>(grad_output.data_ptr<scalar_t>(),
                                        input.data_ptr<scalar_t>(), workspace.data_ptr<acc_t>(),
                                        s, DwStrides(grad_output), DwStrides(input), split_len);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  sum_splits_kernel<scalar_t><<<grid_for(grad_weight.numel()), kThreads, 0, stream>>>(
      workspace.data_ptr<acc_t>(), grad_weight.data_ptr<scalar_t>(), grad_weight.numel(), splits);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

bool use_reference() { return kernel_version(OpFamily::depthwise) == 1; }

}  // namespace

// ---- entry points (argument checks are conv2d's, done by the caller) --------------------

at::Tensor depthwise_forward_cuda(const at::Tensor& input, const at::Tensor& weight,
                                  const c10::optional<at::Tensor>& bias, const Conv2dParams& p,
                                  bool relu) {
  const c10::cuda::CUDAGuard device_guard(input.device());
  const int64_t out_h = conv_out_size(input.size(2), weight.size(2), p.pad_top, p.pad_bottom,
                                      p.stride_h, p.dilation_h);
  const int64_t out_w = conv_out_size(input.size(3), weight.size(3), p.pad_left, p.pad_right,
                                      p.stride_w, p.dilation_w);
  at::Tensor output = at::empty(
      {input.size(0), weight.size(0), out_h, out_w},
      input.options().memory_format(conv_output_memory_format(input, weight)));
  if (output.numel() == 0) return output;
  const DwShape s(input.sizes(), weight.sizes(), out_h, out_w, p);
  const bool has_bias = bias.has_value() && bias->defined();
  const int64_t b_stride = has_bias ? bias->stride(0) : 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "cnnops.conv2d (depthwise, CUDA)", [&] {
        const scalar_t* b = has_bias ? bias->data_ptr<scalar_t>() : nullptr;
        if (use_reference()) {
          depthwise_forward_reference_kernel<scalar_t>
              <<<grid_for(output.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
                  input.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), b, b_stride,
                  output.data_ptr<scalar_t>(), s, DwStrides(input), DwStrides(weight),
                  DwStrides(output), relu);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        } else if (unrolled(s.R, s.S, 3)) {
          launch_forward<scalar_t, 3, 3>(input, weight, b, b_stride, output, s, relu);
        } else if (unrolled(s.R, s.S, 5)) {
          launch_forward<scalar_t, 5, 5>(input, weight, b, b_stride, output, s, relu);
        } else {
          launch_forward<scalar_t, 0, 0>(input, weight, b, b_stride, output, s, relu);
        }
      });
  return output;
}

at::Tensor depthwise_grad_input_cuda(const at::Tensor& grad_output, const at::Tensor& weight,
                                     c10::IntArrayRef input_size, const Conv2dParams& p,
                                     c10::MemoryFormat memory_format) {
  const c10::cuda::CUDAGuard device_guard(grad_output.device());
  at::Tensor grad_input = at::empty(input_size, grad_output.options().memory_format(memory_format));
  if (grad_input.numel() == 0) return grad_input;
  if (grad_output.numel() == 0) return grad_input.zero_();  // no output channels
  const DwShape s(input_size, weight.sizes(), grad_output.size(2), grad_output.size(3), p);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(),
      "cnnops.conv2d_grad_input (depthwise, CUDA)", [&] {
        if (use_reference()) {
          depthwise_grad_input_reference_kernel<scalar_t>
              <<<grid_for(grad_input.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
                  grad_output.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(),
                  grad_input.data_ptr<scalar_t>(), s, DwStrides(grad_output), DwStrides(weight),
                  DwStrides(grad_input));
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        } else if (unrolled(s.R, s.S, 3)) {
          launch_grad_input<scalar_t, 3, 3>(grad_output, weight, grad_input, s);
        } else if (unrolled(s.R, s.S, 5)) {
          launch_grad_input<scalar_t, 5, 5>(grad_output, weight, grad_input, s);
        } else {
          launch_grad_input<scalar_t, 0, 0>(grad_output, weight, grad_input, s);
        }
      });
  return grad_input;
}

at::Tensor depthwise_grad_weight_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                      c10::IntArrayRef weight_size, const Conv2dParams& p) {
  const c10::cuda::CUDAGuard device_guard(grad_output.device());
  at::Tensor grad_weight = at::zeros(weight_size, grad_output.options());
  if (grad_weight.numel() == 0 || grad_output.numel() == 0) return grad_weight;
  const DwShape s(input.sizes(), weight_size, grad_output.size(2), grad_output.size(3), p);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(),
      "cnnops.conv2d_grad_weight (depthwise, CUDA)", [&] {
        if (use_reference()) {
          depthwise_grad_weight_reference_kernel<scalar_t>
              <<<grid_for(grad_weight.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
                  grad_output.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(),
                  grad_weight.data_ptr<scalar_t>(), s, DwStrides(grad_output), DwStrides(input));
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        } else if (unrolled(s.R, s.S, 3)) {
          launch_grad_weight<scalar_t, 3, 3>(grad_output, input, grad_weight, s);
        } else if (unrolled(s.R, s.S, 5)) {
          launch_grad_weight<scalar_t, 5, 5>(grad_output, input, grad_weight, s);
        } else {
          launch_grad_weight<scalar_t, 0, 0>(grad_output, input, grad_weight, s);
        }
      });
  return grad_weight;
}

}  // namespace cnnops::cuda
