// conv2d on CUDA: forward, grad_input and grad_weight, and the inference-only
// conv2d_bias_relu (the forward with ReLU in its epilogue), registered for the CUDA key.
// Mirrors csrc/cpu/conv2d.cpp: the same operator and reference function names, argument order
// and structure (reference kernels, fast kernels, launchers, operators), to read side by side.
//
// The short forms used inside the kernels:
//   N batch, C input channels, H x W input height x width,
//   K output channels, R x S kernel height x width, P x Q output height x width,
//   G groups, Cg = C / G input and Kg = K / G output channels per group.
// input (N, C, H, W), weight (K, Cg, R, S), bias (K), output (N, K, P, Q); for k in group
// g = k / Kg:
//   y[n,k,p,q] = b[k] + sum_{c < Cg, r < R, s < S} w[k,c,r,s] *
//                x[n, g*Cg + c, p*stride_h - pad_top + r*dilation_h,
//                               q*stride_w - pad_left + s*dilation_w]
// with x zero outside the input. Every tensor may have any strides: kernels take the four
// element strides of each one and index with 64-bit offsets.
//
// Kernel versions (with cnnops.kernel_version("conv2d", v): ...; 0 = automatic = version 2):
//   forward
//     version 1: reference, one thread per output element, loops over (c, r, s)
//     version 2: shared-memory tiled implicit GEMM: a block owns a tile of output channels x
//                output pixels (N*P*Q flattened, so small images still fill the tile); the
//                reduction index (c, r, s) is gathered in chunks of BK into shared memory and
//                each thread accumulates a TM x TN register block; bias in the epilogue
//   grad_input (a gather: each element is summed by one thread, no atomics, deterministic)
//     version 1: reference, one thread per input element, sums over (k, r, s) where
//                h + pad_top - r*dilation_h is a multiple of stride_h (and likewise for w)
//     version 2: the same gather as a tiled implicit GEMM: a tile of input channels x input
//                pixels (N*H*W), reduction index (k, r, s); with stride > 1 most gathered
//                values are structural zeros (no per-phase decomposition yet)
//   grad_weight (deterministic: no atomics)
//     version 1: reference, one thread per weight element, sums over N*P*Q
//     version 2: tiled: a block owns a tile of output channels x (c, r, s) and reduces one of
//                `splits` fixed ranges of N*P*Q (the split is a function of the shape, never of
//                the device) into a float workspace (double for float64); a second kernel sums
//                the splits in order and casts
// Version 2 tiles (TileConfig): WideTile 64 x 64 x 16 with 4 x 4 per thread, NarrowTile
// 16 x 128 x 16 with 2 x 4 per thread when the tile's rows (Kg, or Cg for grad_input) are
// fewer than 32. A channels_last operand switches the reduction order to channels-innermost
// so that a warp's gathers are contiguous. Version 2 falls back to version 1 for shapes past
// its 32-bit spatial index math (spatial extents beyond 2^29).

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/ScalarType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/conv2d_params.h"
#include "common/kernel_version.h"
#include "cuda/depthwise.h"

namespace cnnops::cuda {

namespace {

// ---- shapes, strides, launch helpers ----------------------------------------------------

// Element strides of a 4-D tensor, in its logical (N, C, H, W) dimension order.
struct Strides4 {
  int64_t n, c, h, w;
  explicit Strides4(const at::Tensor& t)
      : n(t.stride(0)), c(t.stride(1)), h(t.stride(2)), w(t.stride(3)) {}
};

// Everything a kernel needs to know about one conv2d call; passed to kernels by value.
struct ConvGeometry {
  int64_t N, C, H, W, K, R, S, P, Q, G, Cg, Kg;
  Conv2dParams p;

  ConvGeometry(c10::IntArrayRef input_size, c10::IntArrayRef weight_size, int64_t out_h,
               int64_t out_w, const Conv2dParams& params)
      : N(input_size[0]), C(input_size[1]), H(input_size[2]), W(input_size[3]),
        K(weight_size[0]), R(weight_size[2]), S(weight_size[3]), P(out_h), Q(out_w),
        G(params.groups), Cg(C / params.groups), Kg(K / params.groups), p(params) {}
};

constexpr int kReferenceThreads = 256;
constexpr int64_t kMaxGridX = (int64_t{1} << 31) - 1;
constexpr int64_t kMaxGridYZ = 65535;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Reference kernels walk their elements with a grid-stride loop, so any count fits the grid.
unsigned int reference_blocks(int64_t count) {
  return static_cast<unsigned int>(std::min<int64_t>(ceil_div(count, kReferenceThreads), 1 << 30));
}

// The tiled kernels keep spatial indices, per-image pixel counts and per-group reduction
// lengths in 32-bit ints (offsets stay 64-bit); past these bounds version 1 runs instead.
bool tiled_index_math_fits(const ConvGeometry& s) {
  constexpr int64_t kSpatial = int64_t{1} << 29;
  constexpr int64_t kCount = int64_t{1} << 30;
  return s.H + s.p.pad_top + s.p.pad_bottom <= kSpatial &&
         s.W + s.p.pad_left + s.p.pad_right <= kSpatial &&
         s.P * s.p.stride_h <= kSpatial && s.Q * s.p.stride_w <= kSpatial &&
         (s.R - 1) * s.p.dilation_h < kSpatial && (s.S - 1) * s.p.dilation_w < kSpatial &&
         s.H * s.W <= kCount && s.P * s.Q <= kCount && s.C * s.R * s.S <= kCount &&
         s.K * s.R * s.S <= kCount;
}

// Whether the reduction should run channels-innermost: true for a channels_last operand,
// whose channel stride is below its width stride.
bool channels_inner(const at::Tensor& t) { return t.stride(1) < t.stride(3); }

// ---- version 1: reference kernels -------------------------------------------------------

// One thread per output element (n, k, p, q).
template <typename scalar_t>
__global__ void conv2d_forward_reference_kernel(const scalar_t* __restrict__ input,
                                                const scalar_t* __restrict__ weight,
                                                const scalar_t* __restrict__ bias,
                                                scalar_t* __restrict__ output, ConvGeometry geo,
                                                Strides4 xs, Strides4 ws, int64_t bias_stride,
                                                Strides4 ys, bool relu) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = geo.N * geo.K * geo.P * geo.Q;
  for (int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t q = idx % geo.Q;
    const int64_t p = (idx / geo.Q) % geo.P;
    const int64_t k = (idx / (geo.Q * geo.P)) % geo.K;
    const int64_t n = idx / (geo.Q * geo.P * geo.K);
    const int64_t g = k / geo.Kg;
    acc_t acc = 0;
    for (int64_t c = 0; c < geo.Cg; ++c) {
      const int64_t x_nc = n * xs.n + (g * geo.Cg + c) * xs.c;
      for (int64_t r = 0; r < geo.R; ++r) {
        const int64_t h = p * geo.p.stride_h - geo.p.pad_top + r * geo.p.dilation_h;
        if (h < 0 || h >= geo.H) continue;
        for (int64_t s = 0; s < geo.S; ++s) {
          const int64_t w = q * geo.p.stride_w - geo.p.pad_left + s * geo.p.dilation_w;
          if (w < 0 || w >= geo.W) continue;
          acc += static_cast<acc_t>(input[x_nc + h * xs.h + w * xs.w]) *
                 static_cast<acc_t>(weight[k * ws.n + c * ws.c + r * ws.h + s * ws.w]);
        }
      }
    }
    if (bias != nullptr) acc += static_cast<acc_t>(bias[k * bias_stride]);
    if (relu && acc < acc_t(0)) acc = acc_t(0);  // NaN stays NaN, as in torch.relu
    output[n * ys.n + k * ys.c + p * ys.h + q * ys.w] = static_cast<scalar_t>(acc);
  }
}

// One thread per input element (n, c, h, w): the gather form of the adjoint. Output (p, q)
// touched input h through kernel row r when p*stride_h - pad_top + r*dilation_h == h.
template <typename scalar_t>
__global__ void conv2d_grad_input_reference_kernel(const scalar_t* __restrict__ grad_output,
                                                   const scalar_t* __restrict__ weight,
                                                   scalar_t* __restrict__ grad_input,
                                                   ConvGeometry geo, Strides4 dys, Strides4 ws,
                                                   Strides4 dxs) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = geo.N * geo.C * geo.H * geo.W;
  for (int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t w = idx % geo.W;
    const int64_t h = (idx / geo.W) % geo.H;
    const int64_t c = (idx / (geo.W * geo.H)) % geo.C;
    const int64_t n = idx / (geo.W * geo.H * geo.C);
    const int64_t g = c / geo.Cg;
    const int64_t c_in_group = c - g * geo.Cg;
    acc_t acc = 0;
    for (int64_t k = g * geo.Kg; k < (g + 1) * geo.Kg; ++k) {
      for (int64_t r = 0; r < geo.R; ++r) {
        const int64_t th = h + geo.p.pad_top - r * geo.p.dilation_h;
        if (th < 0 || th % geo.p.stride_h != 0) continue;
        const int64_t p = th / geo.p.stride_h;
        if (p >= geo.P) continue;
        for (int64_t s = 0; s < geo.S; ++s) {
          const int64_t tw = w + geo.p.pad_left - s * geo.p.dilation_w;
          if (tw < 0 || tw % geo.p.stride_w != 0) continue;
          const int64_t q = tw / geo.p.stride_w;
          if (q >= geo.Q) continue;
          acc += static_cast<acc_t>(grad_output[n * dys.n + k * dys.c + p * dys.h + q * dys.w]) *
                 static_cast<acc_t>(weight[k * ws.n + c_in_group * ws.c + r * ws.h + s * ws.w]);
        }
      }
    }
    grad_input[n * dxs.n + c * dxs.c + h * dxs.h + w * dxs.w] = static_cast<scalar_t>(acc);
  }
}

// One thread per weight element (k, c, r, s) of the contiguous grad_weight, summing N*P*Q.
template <typename scalar_t>
__global__ void conv2d_grad_weight_reference_kernel(const scalar_t* __restrict__ grad_output,
                                                    const scalar_t* __restrict__ input,
                                                    scalar_t* __restrict__ grad_weight,
                                                    ConvGeometry geo, Strides4 dys, Strides4 xs) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = geo.K * geo.Cg * geo.R * geo.S;
  for (int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t s = idx % geo.S;
    const int64_t r = (idx / geo.S) % geo.R;
    const int64_t c = (idx / (geo.S * geo.R)) % geo.Cg;
    const int64_t k = idx / (geo.S * geo.R * geo.Cg);
    const int64_t x_c = (k / geo.Kg * geo.Cg + c) * xs.c;
    acc_t acc = 0;
    for (int64_t n = 0; n < geo.N; ++n) {
      for (int64_t p = 0; p < geo.P; ++p) {
        const int64_t h = p * geo.p.stride_h - geo.p.pad_top + r * geo.p.dilation_h;
        if (h < 0 || h >= geo.H) continue;
        for (int64_t q = 0; q < geo.Q; ++q) {
          const int64_t w = q * geo.p.stride_w - geo.p.pad_left + s * geo.p.dilation_w;
          if (w < 0 || w >= geo.W) continue;
          acc += static_cast<acc_t>(grad_output[n * dys.n + k * dys.c + p * dys.h + q * dys.w]) *
                 static_cast<acc_t>(input[n * xs.n + x_c + h * xs.h + w * xs.w]);
        }
      }
    }
    grad_weight[idx] = static_cast<scalar_t>(acc);
  }
}

// ---- version 2: tiled implicit GEMM -----------------------------------------------------
//
// All three operators are GEMMs over a gathered operand: out[row][col] = sum_red A[red][row] *
// B[red][col]. A block owns a BM x BN tile of `out`; per chunk of BK reduction indices it
// (1) decodes the chunk's indices into offsets in shared memory (one thread per index),
// (2) fills a_tile[BK][BM] and b_tile[BK][BN] (zeros past the edges and in the padding),
// (3) multiplies them into a TM x TN register block per thread. Thread (ty, tx) owns rows
// ty + i*THREADS_M and columns tx + j*THREADS_N, so a warp reads consecutive b_tile words.

template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct TileConfig {
  static constexpr int BM = BM_;  // tile rows (output channels; input channels for grad_input)
  static constexpr int BN = BN_;  // tile columns (pixels; (c, r, s) for grad_weight)
  static constexpr int BK = BK_;  // reduction indices per shared-memory chunk
  static constexpr int TM = TM_;  // register block rows per thread
  static constexpr int TN = TN_;  // register block columns per thread
  static constexpr int THREADS_M = BM / TM;
  static constexpr int THREADS_N = BN / TN;
  static constexpr int THREADS = THREADS_M * THREADS_N;
  static_assert(BM % TM == 0, "BM must be a multiple of TM");
  static_assert(BN % TN == 0, "BN must be a multiple of TN");
  static_assert(THREADS % 32 == 0, "(BM/TM) * (BN/TN) threads must be whole warps");
  static_assert(THREADS <= 1024, "(BM/TM) * (BN/TN) must not exceed 1024 threads per block");
  static_assert(BK <= THREADS, "one thread decodes each reduction index: BK must be <= threads");
};

using WideTile = TileConfig<64, 64, 16, 4, 4>;     // 256 threads
using NarrowTile = TileConfig<16, 128, 16, 2, 4>;  // 256 threads, for few rows per group
constexpr int64_t kWideTileMinRows = 32;

// Splits a flat reduction index over (channel, r, s). The standard order is channel-major,
// (ch*R + r)*S + s, matching the weight's (K, Cg, R, S) layout and NCHW activations;
// kChannelsInner puts the channel innermost, (r*S + s)*channels + ch, so that consecutive
// indices are adjacent in channels_last memory.
template <bool kChannelsInner>
__device__ __forceinline__ void split_reduction_index(int index, int channels, int R, int S,
                                                      int& ch, int& r, int& s) {
  int rs;
  if (kChannelsInner) {
    ch = index % channels;
    rs = index / channels;
  } else {
    ch = index / (R * S);
    rs = index - ch * (R * S);
  }
  r = rs / S;
  s = rs - r * S;
}

// Element e of a ROWS x COLS tile as (row, col). kRowFastest makes consecutive threads walk
// the rows (the reduction index), otherwise the columns: whichever is contiguous in memory.
template <int ROWS, int COLS, bool kRowFastest>
__device__ __forceinline__ void tile_coords(int e, int& row, int& col) {
  if (kRowFastest) {
    row = e % ROWS;
    col = e / ROWS;
  } else {
    row = e / COLS;
    col = e % COLS;
  }
}

template <class Cfg, typename acc_t>
__device__ __forceinline__ void multiply_tile(const acc_t (&a_tile)[Cfg::BK][Cfg::BM + 1],
                                              const acc_t (&b_tile)[Cfg::BK][Cfg::BN + 1],
                                              acc_t (&acc)[Cfg::TM][Cfg::TN], int ty, int tx) {
#pragma unroll
  for (int kk = 0; kk < Cfg::BK; ++kk) {
    acc_t a[Cfg::TM], b[Cfg::TN];
#pragma unroll
    for (int i = 0; i < Cfg::TM; ++i) a[i] = a_tile[kk][ty + i * Cfg::THREADS_M];
#pragma unroll
    for (int j = 0; j < Cfg::TN; ++j) b[j] = b_tile[kk][tx + j * Cfg::THREADS_N];
#pragma unroll
    for (int i = 0; i < Cfg::TM; ++i) {
#pragma unroll
      for (int j = 0; j < Cfg::TN; ++j) acc[i][j] += a[i] * b[j];
    }
  }
}

template <class Cfg, typename acc_t>
__device__ __forceinline__ void zero_accumulators(acc_t (&acc)[Cfg::TM][Cfg::TN]) {
#pragma unroll
  for (int i = 0; i < Cfg::TM; ++i) {
#pragma unroll
    for (int j = 0; j < Cfg::TN; ++j) acc[i][j] = 0;
  }
}

// Forward: rows = output channels of group g (blockIdx.y tiles Kg), columns = output pixels
// (blockIdx.x tiles N*P*Q), reduction = (c, r, s) over Cg*R*S; groups loop over blockIdx.z.
// A[red][k] = w[g*Kg + k, c, r, s]; B[red][pixel] = x[n, g*Cg + c, h0 + r*dh, w0 + s*dw].
template <typename scalar_t, class Cfg, bool kChannelsInner>
__global__ void __launch_bounds__(Cfg::THREADS)
    conv2d_forward_tiled_kernel(const scalar_t* __restrict__ input,
                                const scalar_t* __restrict__ weight,
                                const scalar_t* __restrict__ bias, scalar_t* __restrict__ output,
                                ConvGeometry geo, Strides4 xs, Strides4 ws, int64_t bias_stride,
                                Strides4 ys, bool relu) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, THREADS = Cfg::THREADS;
  __shared__ acc_t a_tile[BK][BM + 1];  // +1: fewer bank conflicts on the transposing stores
  __shared__ acc_t b_tile[BK][BN + 1];
  __shared__ int64_t pix_x[BN];         // n*xs.n + h0*xs.h + w0*xs.w
  __shared__ int64_t pix_y[BN];         // n*ys.n + p*ys.h + q*ys.w
  __shared__ int pix_h0[BN], pix_w0[BN];  // input corner of the window (negative in padding)
  __shared__ int64_t red_x[BK];         // (g*Cg + c)*xs.c + r*dh*xs.h + s*dw*xs.w
  __shared__ int64_t red_w[BK];         // c*ws.c + r*ws.h + s*ws.w
  __shared__ int red_dh[BK], red_dw[BK];  // r*dh, s*dw

  const int H = static_cast<int>(geo.H), W = static_cast<int>(geo.W);
  const int R = static_cast<int>(geo.R), S = static_cast<int>(geo.S);
  const int Q = static_cast<int>(geo.Q);
  const int Cg = static_cast<int>(geo.Cg), Kg = static_cast<int>(geo.Kg);
  const int tid = threadIdx.x, tx = tid % Cfg::THREADS_N, ty = tid / Cfg::THREADS_N;
  const int64_t PQ = geo.P * geo.Q;
  const int64_t pix_begin = int64_t{blockIdx.x} * BN;
  const int pix_count = static_cast<int>(min(int64_t{BN}, geo.N * PQ - pix_begin));
  const int k_begin = blockIdx.y * BM;
  const int k_count = min(BM, Kg - k_begin);
  const int CRS = Cg * R * S;

  for (int j = tid; j < pix_count; j += THREADS) {
    const int64_t pix = pix_begin + j;
    const int64_t n = pix / PQ;
    const int pq = static_cast<int>(pix - n * PQ);
    const int p = pq / Q, q = pq - p * Q;
    const int h0 = p * static_cast<int>(geo.p.stride_h) - static_cast<int>(geo.p.pad_top);
    const int w0 = q * static_cast<int>(geo.p.stride_w) - static_cast<int>(geo.p.pad_left);
    pix_x[j] = n * xs.n + int64_t{h0} * xs.h + int64_t{w0} * xs.w;
    pix_y[j] = n * ys.n + int64_t{p} * ys.h + int64_t{q} * ys.w;
    pix_h0[j] = h0;
    pix_w0[j] = w0;
  }
  __syncthreads();

  for (int g = blockIdx.z; g < geo.G; g += gridDim.z) {
    acc_t acc[Cfg::TM][Cfg::TN];
    zero_accumulators<Cfg>(acc);
    const int64_t w_k = int64_t{g * Kg + k_begin} * ws.n;
    for (int red_begin = 0; red_begin < CRS; red_begin += BK) {
      const int red_count = min(BK, CRS - red_begin);
      if (tid < red_count) {
        int c, r, s;
        split_reduction_index<kChannelsInner>(red_begin + tid, Cg, R, S, c, r, s);
        const int dh = r * static_cast<int>(geo.p.dilation_h);
        const int dw = s * static_cast<int>(geo.p.dilation_w);
        red_x[tid] = int64_t{g * Cg + c} * xs.c + int64_t{dh} * xs.h + int64_t{dw} * xs.w;
        red_w[tid] = int64_t{c} * ws.c + int64_t{r} * ws.h + int64_t{s} * ws.w;
        red_dh[tid] = dh;
        red_dw[tid] = dw;
      }
      __syncthreads();  // decoded offsets visible; the previous chunk's products are done
#pragma unroll
      for (int e = tid; e < BK * BM; e += THREADS) {
        int kk, m;
        tile_coords<BK, BM, true>(e, kk, m);
        acc_t v = 0;
        if (kk < red_count && m < k_count) {
          v = static_cast<acc_t>(weight[w_k + int64_t{m} * ws.n + red_w[kk]]);
        }
        a_tile[kk][m] = v;
      }
#pragma unroll
      for (int e = tid; e < BK * BN; e += THREADS) {
        int kk, j;
        tile_coords<BK, BN, kChannelsInner>(e, kk, j);
        acc_t v = 0;
        if (kk < red_count && j < pix_count) {
          const int h = pix_h0[j] + red_dh[kk], w = pix_w0[j] + red_dw[kk];
          if (h >= 0 && h < H && w >= 0 && w < W) {
            v = static_cast<acc_t>(input[pix_x[j] + red_x[kk]]);
          }
        }
        b_tile[kk][j] = v;
      }
      __syncthreads();
      multiply_tile<Cfg>(a_tile, b_tile, acc, ty, tx);
    }

#pragma unroll
    for (int i = 0; i < Cfg::TM; ++i) {
      const int m = ty + i * Cfg::THREADS_M;
      if (m >= k_count) continue;
      const int64_t k = int64_t{g} * Kg + k_begin + m;
      const acc_t b = bias != nullptr ? static_cast<acc_t>(bias[k * bias_stride]) : acc_t(0);
#pragma unroll
      for (int j = 0; j < Cfg::TN; ++j) {
        const int jj = tx + j * Cfg::THREADS_N;
        if (jj >= pix_count) continue;
        acc_t v = acc[i][j] + b;
        if (relu && v < acc_t(0)) v = acc_t(0);
        output[pix_y[jj] + k * ys.c] = static_cast<scalar_t>(v);
      }
    }
  }
}

// grad_input: rows = input channels of group g (blockIdx.y tiles Cg), columns = input pixels
// (blockIdx.x tiles N*H*W), reduction = (k, r, s) over Kg*R*S.
// A[red][c] = w[g*Kg + k, c, r, s]; B[red][pixel] = dy[n, g*Kg + k, p, q] where
// p = (h + pad_top - r*dh) / stride_h when that divides exactly and 0 <= p < P (same for q).
template <typename scalar_t, class Cfg, bool kChannelsInner>
__global__ void __launch_bounds__(Cfg::THREADS)
    conv2d_grad_input_tiled_kernel(const scalar_t* __restrict__ grad_output,
                                   const scalar_t* __restrict__ weight,
                                   scalar_t* __restrict__ grad_input, ConvGeometry geo,
                                   Strides4 dys, Strides4 ws, Strides4 dxs) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, THREADS = Cfg::THREADS;
  __shared__ acc_t a_tile[BK][BM + 1];
  __shared__ acc_t b_tile[BK][BN + 1];
  __shared__ int64_t pix_dy[BN];        // n*dys.n
  __shared__ int64_t pix_dx[BN];        // n*dxs.n + h*dxs.h + w*dxs.w
  __shared__ int pix_h[BN], pix_w[BN];  // h + pad_top, w + pad_left
  __shared__ int64_t red_dy[BK];        // (g*Kg + k)*dys.c
  __shared__ int64_t red_w[BK];         // (g*Kg + k)*ws.n + r*ws.h + s*ws.w
  __shared__ int red_dh[BK], red_dw[BK];  // r*dh, s*dw

  const int W = static_cast<int>(geo.W);
  const int R = static_cast<int>(geo.R), S = static_cast<int>(geo.S);
  const int P = static_cast<int>(geo.P), Q = static_cast<int>(geo.Q);
  const int stride_h = static_cast<int>(geo.p.stride_h);
  const int stride_w = static_cast<int>(geo.p.stride_w);
  const int Cg = static_cast<int>(geo.Cg), Kg = static_cast<int>(geo.Kg);
  const int tid = threadIdx.x, tx = tid % Cfg::THREADS_N, ty = tid / Cfg::THREADS_N;
  const int64_t HW = geo.H * geo.W;
  const int64_t pix_begin = int64_t{blockIdx.x} * BN;
  const int pix_count = static_cast<int>(min(int64_t{BN}, geo.N * HW - pix_begin));
  const int c_begin = blockIdx.y * BM;
  const int c_count = min(BM, Cg - c_begin);
  const int KRS = Kg * R * S;

  for (int j = tid; j < pix_count; j += THREADS) {
    const int64_t pix = pix_begin + j;
    const int64_t n = pix / HW;
    const int hw = static_cast<int>(pix - n * HW);
    const int h = hw / W, w = hw - h * W;
    pix_dy[j] = n * dys.n;
    pix_dx[j] = n * dxs.n + int64_t{h} * dxs.h + int64_t{w} * dxs.w;
    pix_h[j] = h + static_cast<int>(geo.p.pad_top);
    pix_w[j] = w + static_cast<int>(geo.p.pad_left);
  }
  __syncthreads();

  for (int g = blockIdx.z; g < geo.G; g += gridDim.z) {
    acc_t acc[Cfg::TM][Cfg::TN];
    zero_accumulators<Cfg>(acc);
    for (int red_begin = 0; red_begin < KRS; red_begin += BK) {
      const int red_count = min(BK, KRS - red_begin);
      if (tid < red_count) {
        int k, r, s;
        split_reduction_index<kChannelsInner>(red_begin + tid, Kg, R, S, k, r, s);
        red_dy[tid] = int64_t{g * Kg + k} * dys.c;
        red_w[tid] = int64_t{g * Kg + k} * ws.n + int64_t{r} * ws.h + int64_t{s} * ws.w;
        red_dh[tid] = r * static_cast<int>(geo.p.dilation_h);
        red_dw[tid] = s * static_cast<int>(geo.p.dilation_w);
      }
      __syncthreads();
#pragma unroll
      for (int e = tid; e < BK * BM; e += THREADS) {
        int kk, m;
        tile_coords<BK, BM, true>(e, kk, m);
        acc_t v = 0;
        if (kk < red_count && m < c_count) {
          v = static_cast<acc_t>(weight[red_w[kk] + int64_t{c_begin + m} * ws.c]);
        }
        a_tile[kk][m] = v;
      }
#pragma unroll
      for (int e = tid; e < BK * BN; e += THREADS) {
        int kk, j;
        tile_coords<BK, BN, kChannelsInner>(e, kk, j);
        acc_t v = 0;
        if (kk < red_count && j < pix_count) {
          const int th = pix_h[j] - red_dh[kk], tw = pix_w[j] - red_dw[kk];
          const int p = stride_h == 1 ? th : th / stride_h;
          const int q = stride_w == 1 ? tw : tw / stride_w;
          // th >= 0 first: C++ division truncates toward zero, so p*stride_h == th alone
          // would accept th in (-stride_h, 0).
          if (th >= 0 && tw >= 0 && p * stride_h == th && q * stride_w == tw && p < P && q < Q) {
            v = static_cast<acc_t>(
                grad_output[pix_dy[j] + red_dy[kk] + int64_t{p} * dys.h + int64_t{q} * dys.w]);
          }
        }
        b_tile[kk][j] = v;
      }
      __syncthreads();
      multiply_tile<Cfg>(a_tile, b_tile, acc, ty, tx);
    }

#pragma unroll
    for (int i = 0; i < Cfg::TM; ++i) {
      const int m = ty + i * Cfg::THREADS_M;
      if (m >= c_count) continue;
      const int64_t x_c = (int64_t{g} * Cg + c_begin + m) * dxs.c;
#pragma unroll
      for (int j = 0; j < Cfg::TN; ++j) {
        const int jj = tx + j * Cfg::THREADS_N;
        if (jj < pix_count) grad_input[pix_dx[jj] + x_c] = static_cast<scalar_t>(acc[i][j]);
      }
    }
  }
}

// grad_weight: rows = output channels of group g (blockIdx.y tiles Kg), columns = (c, r, s)
// (blockIdx.x tiles Cg*R*S), reduction = one split's range of n*P*Q + p*Q + q.
// blockIdx.z walks (split, group) pairs. A[red][k] = dy[n, g*Kg + k, p, q];
// B[red][(c, r, s)] = x[n, g*Cg + c, p*stride_h - pad_top + r*dh, q*stride_w - pad_left + s*dw].
// Split `split` writes workspace[split][g*Kg + k][(c*R + r)*S + s] (every element, zeros
// included), so the workspace needs no clearing.
template <typename scalar_t, class Cfg, bool kChannelsInner>
__global__ void __launch_bounds__(Cfg::THREADS)
    conv2d_grad_weight_tiled_kernel(const scalar_t* __restrict__ grad_output,
                                    const scalar_t* __restrict__ input,
                                    at::opmath_type<scalar_t>* __restrict__ workspace,
                                    ConvGeometry geo, Strides4 dys, Strides4 xs, int64_t splits,
                                    int64_t split_length) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, THREADS = Cfg::THREADS;
  __shared__ acc_t a_tile[BK][BM + 1];
  __shared__ acc_t b_tile[BK][BN + 1];
  __shared__ int64_t col_x[BN];         // (g*Cg + c)*xs.c + r*dh*xs.h + s*dw*xs.w
  __shared__ int col_dh[BN], col_dw[BN];  // r*dh, s*dw
  __shared__ int col_index[BN];         // (c*R + r)*S + s: the column in grad_weight's layout
  __shared__ int64_t red_dy[BK];        // n*dys.n + p*dys.h + q*dys.w
  __shared__ int64_t red_x[BK];         // n*xs.n + h0*xs.h + w0*xs.w
  __shared__ int red_h0[BK], red_w0[BK];  // input corner of the window (negative in padding)

  const int H = static_cast<int>(geo.H), W = static_cast<int>(geo.W);
  const int R = static_cast<int>(geo.R), S = static_cast<int>(geo.S);
  const int Q = static_cast<int>(geo.Q);
  const int Cg = static_cast<int>(geo.Cg), Kg = static_cast<int>(geo.Kg);
  const int tid = threadIdx.x, tx = tid % Cfg::THREADS_N, ty = tid / Cfg::THREADS_N;
  const int64_t PQ = geo.P * geo.Q;
  const int64_t NPQ = geo.N * PQ;
  const int CRS = Cg * R * S;
  const int col_begin = blockIdx.x * BN;
  const int col_count = min(BN, CRS - col_begin);
  const int k_begin = blockIdx.y * BM;
  const int k_count = min(BM, Kg - k_begin);
  // Consecutive threads walk the reduction (n, p, q) for NCHW operands, the channels for
  // channels_last ones.
  constexpr bool kRedFastest = !kChannelsInner;

  for (int64_t z = blockIdx.z; z < splits * geo.G; z += gridDim.z) {
    const int g = static_cast<int>(z % geo.G);
    const int64_t split = z / geo.G;
    __syncthreads();  // the previous (split, group)'s epilogue is done with col_index
    for (int j = tid; j < col_count; j += THREADS) {
      int c, r, s;
      split_reduction_index<kChannelsInner>(col_begin + j, Cg, R, S, c, r, s);
      const int dh = r * static_cast<int>(geo.p.dilation_h);
      const int dw = s * static_cast<int>(geo.p.dilation_w);
      col_x[j] = int64_t{g * Cg + c} * xs.c + int64_t{dh} * xs.h + int64_t{dw} * xs.w;
      col_dh[j] = dh;
      col_dw[j] = dw;
      col_index[j] = (c * R + r) * S + s;
    }
    __syncthreads();

    acc_t acc[Cfg::TM][Cfg::TN];
    zero_accumulators<Cfg>(acc);
    const int64_t split_begin = split * split_length;
    const int64_t split_end = min(NPQ, split_begin + split_length);
    const int64_t dy_k = int64_t{g * Kg + k_begin} * dys.c;
    for (int64_t red_begin = split_begin; red_begin < split_end; red_begin += BK) {
      const int red_count = static_cast<int>(min(int64_t{BK}, split_end - red_begin));
      if (tid < red_count) {
        const int64_t npq = red_begin + tid;
        const int64_t n = npq / PQ;
        const int pq = static_cast<int>(npq - n * PQ);
        const int p = pq / Q, q = pq - p * Q;
        const int h0 = p * static_cast<int>(geo.p.stride_h) - static_cast<int>(geo.p.pad_top);
        const int w0 = q * static_cast<int>(geo.p.stride_w) - static_cast<int>(geo.p.pad_left);
        red_dy[tid] = n * dys.n + int64_t{p} * dys.h + int64_t{q} * dys.w;
        red_x[tid] = n * xs.n + int64_t{h0} * xs.h + int64_t{w0} * xs.w;
        red_h0[tid] = h0;
        red_w0[tid] = w0;
      }
      __syncthreads();
#pragma unroll
      for (int e = tid; e < BK * BM; e += THREADS) {
        int kk, m;
        tile_coords<BK, BM, kRedFastest>(e, kk, m);
        acc_t v = 0;
        if (kk < red_count && m < k_count) {
          v = static_cast<acc_t>(grad_output[red_dy[kk] + dy_k + int64_t{m} * dys.c]);
        }
        a_tile[kk][m] = v;
      }
#pragma unroll
      for (int e = tid; e < BK * BN; e += THREADS) {
        int kk, j;
        tile_coords<BK, BN, kRedFastest>(e, kk, j);
        acc_t v = 0;
        if (kk < red_count && j < col_count) {
          const int h = red_h0[kk] + col_dh[j], w = red_w0[kk] + col_dw[j];
          if (h >= 0 && h < H && w >= 0 && w < W) {
            v = static_cast<acc_t>(input[red_x[kk] + col_x[j]]);
          }
        }
        b_tile[kk][j] = v;
      }
      __syncthreads();
      multiply_tile<Cfg>(a_tile, b_tile, acc, ty, tx);
    }

#pragma unroll
    for (int i = 0; i < Cfg::TM; ++i) {
      const int m = ty + i * Cfg::THREADS_M;
      if (m >= k_count) continue;
      acc_t* out = workspace + (split * geo.K + int64_t{g} * Kg + k_begin + m) * CRS;
#pragma unroll
      for (int j = 0; j < Cfg::TN; ++j) {
        const int jj = tx + j * Cfg::THREADS_N;
        if (jj < col_count) out[col_index[jj]] = acc[i][j];
      }
    }
  }
}

// grad_weight[i] = sum over splits, in split order (a fixed order: deterministic).
template <typename scalar_t>
__global__ void sum_splits_kernel(const at::opmath_type<scalar_t>* __restrict__ workspace,
                                  scalar_t* __restrict__ grad_weight, int64_t count,
                                  int64_t splits) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    acc_t sum = 0;
    for (int64_t s = 0; s < splits; ++s) sum += workspace[s * count + i];
    grad_weight[i] = static_cast<scalar_t>(sum);
  }
}

// ---------------------------------------------------------------------------------------
// version 1: reference launchers

template <typename T>
void conv2d_forward_reference(const at::Tensor& input, const at::Tensor& weight, const T* bias,
                              int64_t bias_stride, at::Tensor& output, const ConvGeometry& geo,
                              bool relu) {
  conv2d_forward_reference_kernel<T>
      <<<reference_blocks(output.numel()), kReferenceThreads, 0,
         c10::cuda::getCurrentCUDAStream()>>>(input.data_ptr<T>(), weight.data_ptr<T>(), bias,
                                              output.data_ptr<T>(), geo, Strides4(input),
                                              Strides4(weight), bias_stride, Strides4(output),
                                              relu);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Gather form: each input element sums the outputs whose windows cover it.
template <typename T>
void conv2d_grad_input_reference(const at::Tensor& grad_output, const at::Tensor& weight,
                                 at::Tensor& grad_input, const ConvGeometry& geo) {
  conv2d_grad_input_reference_kernel<T>
      <<<reference_blocks(grad_input.numel()), kReferenceThreads, 0,
         c10::cuda::getCurrentCUDAStream()>>>(grad_output.data_ptr<T>(), weight.data_ptr<T>(),
                                              grad_input.data_ptr<T>(), geo,
                                              Strides4(grad_output), Strides4(weight),
                                              Strides4(grad_input));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void conv2d_grad_weight_reference(const at::Tensor& grad_output, const at::Tensor& input,
                                  at::Tensor& grad_weight, const ConvGeometry& geo) {
  conv2d_grad_weight_reference_kernel<T>
      <<<reference_blocks(grad_weight.numel()), kReferenceThreads, 0,
         c10::cuda::getCurrentCUDAStream()>>>(grad_output.data_ptr<T>(), input.data_ptr<T>(),
                                              grad_weight.data_ptr<T>(), geo,
                                              Strides4(grad_output), Strides4(input));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------
// version 2: tiled launchers. Each returns false, launching nothing, for a shape past the
// tiled kernels' 32-bit index math or grid limits; the caller then runs version 1.

template <typename T, class Cfg>
bool conv2d_forward_tiled(const at::Tensor& input, const at::Tensor& weight, const T* bias,
                          int64_t bias_stride, at::Tensor& output, const ConvGeometry& geo,
                          bool relu) {
  const int64_t grid_x = ceil_div(geo.N * geo.P * geo.Q, Cfg::BN);
  const int64_t grid_y = ceil_div(geo.Kg, Cfg::BM);
  if (!tiled_index_math_fits(geo) || grid_x > kMaxGridX || grid_y > kMaxGridYZ) return false;
  const dim3 grid(static_cast<unsigned int>(grid_x), static_cast<unsigned int>(grid_y),
                  static_cast<unsigned int>(std::min(geo.G, kMaxGridYZ)));
  auto kernel = channels_inner(input) ? conv2d_forward_tiled_kernel<T, Cfg, true>
                                      : conv2d_forward_tiled_kernel<T, Cfg, false>;
  kernel<<<grid, Cfg::THREADS, 0, c10::cuda::getCurrentCUDAStream()>>>(
      input.data_ptr<T>(), weight.data_ptr<T>(), bias, output.data_ptr<T>(), geo,
      Strides4(input), Strides4(weight), bias_stride, Strides4(output), relu);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return true;
}

template <typename T>
bool conv2d_forward_tiled(const at::Tensor& input, const at::Tensor& weight, const T* bias,
                          int64_t bias_stride, at::Tensor& output, const ConvGeometry& geo,
                          bool relu) {
  if (geo.Kg >= kWideTileMinRows) {
    return conv2d_forward_tiled<T, WideTile>(input, weight, bias, bias_stride, output, geo, relu);
  }
  return conv2d_forward_tiled<T, NarrowTile>(input, weight, bias, bias_stride, output, geo, relu);
}

template <typename T, class Cfg>
bool conv2d_grad_input_tiled(const at::Tensor& grad_output, const at::Tensor& weight,
                             at::Tensor& grad_input, const ConvGeometry& geo) {
  const int64_t grid_x = ceil_div(geo.N * geo.H * geo.W, Cfg::BN);
  const int64_t grid_y = ceil_div(geo.Cg, Cfg::BM);
  if (!tiled_index_math_fits(geo) || grid_x > kMaxGridX || grid_y > kMaxGridYZ) return false;
  const dim3 grid(static_cast<unsigned int>(grid_x), static_cast<unsigned int>(grid_y),
                  static_cast<unsigned int>(std::min(geo.G, kMaxGridYZ)));
  auto kernel = channels_inner(grad_output) ? conv2d_grad_input_tiled_kernel<T, Cfg, true>
                                            : conv2d_grad_input_tiled_kernel<T, Cfg, false>;
  kernel<<<grid, Cfg::THREADS, 0, c10::cuda::getCurrentCUDAStream()>>>(
      grad_output.data_ptr<T>(), weight.data_ptr<T>(), grad_input.data_ptr<T>(), geo,
      Strides4(grad_output), Strides4(weight), Strides4(grad_input));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return true;
}

template <typename T>
bool conv2d_grad_input_tiled(const at::Tensor& grad_output, const at::Tensor& weight,
                             at::Tensor& grad_input, const ConvGeometry& geo) {
  if (geo.Cg >= kWideTileMinRows) {
    return conv2d_grad_input_tiled<T, WideTile>(grad_output, weight, grad_input, geo);
  }
  return conv2d_grad_input_tiled<T, NarrowTile>(grad_output, weight, grad_input, geo);
}

// How grad_weight's N*P*Q reduction is cut: a function of the shape alone, never of the
// device, so a result is bitwise the same on every GPU. Enough splits to give about
// kTargetBlocks blocks when the weight has few tiles, each split at least kMinSplitLength
// long, at most kMaxSplits (which also bounds the workspace).
struct ReductionSplit {
  int64_t splits;
  int64_t length;  // positions per split, a multiple of the chunk BK
};

ReductionSplit choose_reduction_split(int64_t npq, int64_t tiles, int64_t bk) {
  constexpr int64_t kTargetBlocks = 1024;
  constexpr int64_t kMinSplitLength = 1024;
  constexpr int64_t kMaxSplits = 64;
  const int64_t chunks = ceil_div(npq, bk);
  int64_t splits =
      std::min({ceil_div(kTargetBlocks, tiles), ceil_div(npq, kMinSplitLength), kMaxSplits});
  splits = std::max<int64_t>(splits, 1);
  const int64_t chunks_per_split = ceil_div(chunks, splits);
  return {ceil_div(chunks, chunks_per_split), chunks_per_split * bk};  // no empty split
}

template <typename T, class Cfg>
bool conv2d_grad_weight_tiled(const at::Tensor& grad_output, const at::Tensor& input,
                              at::Tensor& grad_weight, const ConvGeometry& geo) {
  using acc_t = at::opmath_type<T>;
  const int64_t grid_x = ceil_div(geo.Cg * geo.R * geo.S, Cfg::BN);
  const int64_t grid_y = ceil_div(geo.Kg, Cfg::BM);
  if (!tiled_index_math_fits(geo) || grid_x > kMaxGridX || grid_y > kMaxGridYZ) return false;
  const ReductionSplit split =
      choose_reduction_split(geo.N * geo.P * geo.Q, grid_x * grid_y * geo.G, Cfg::BK);
  const auto stream = c10::cuda::getCurrentCUDAStream();

  // One split in the output's own type is the answer itself: no workspace, no second pass.
  const bool direct = split.splits == 1 && std::is_same<acc_t, T>::value;
  at::Tensor workspace;
  acc_t* workspace_ptr;
  if (direct) {
    workspace_ptr = reinterpret_cast<acc_t*>(grad_weight.data_ptr<T>());
  } else {
    workspace = at::empty({split.splits, grad_weight.numel()},
                          grad_weight.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    workspace_ptr = workspace.data_ptr<acc_t>();
  }

  const dim3 grid(static_cast<unsigned int>(grid_x), static_cast<unsigned int>(grid_y),
                  static_cast<unsigned int>(std::min(split.splits * geo.G, kMaxGridYZ)));
  auto kernel = channels_inner(input) ? conv2d_grad_weight_tiled_kernel<T, Cfg, true>
                                      : conv2d_grad_weight_tiled_kernel<T, Cfg, false>;
  kernel<<<grid, Cfg::THREADS, 0, stream>>>(grad_output.data_ptr<T>(), input.data_ptr<T>(),
                                            workspace_ptr, geo, Strides4(grad_output),
                                            Strides4(input), split.splits, split.length);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (!direct) {
    sum_splits_kernel<T><<<reference_blocks(grad_weight.numel()), kReferenceThreads, 0, stream>>>(
        workspace_ptr, grad_weight.data_ptr<T>(), grad_weight.numel(), split.splits);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return true;
}

template <typename T>
bool conv2d_grad_weight_tiled(const at::Tensor& grad_output, const at::Tensor& input,
                              at::Tensor& grad_weight, const ConvGeometry& geo) {
  if (geo.Kg >= kWideTileMinRows) {
    return conv2d_grad_weight_tiled<T, WideTile>(grad_output, input, grad_weight, geo);
  }
  return conv2d_grad_weight_tiled<T, NarrowTile>(grad_output, input, grad_weight, geo);
}

bool use_reference() { return kernel_version(OpFamily::conv2d) == 1; }

// ---------------------------------------------------------------------------------------
// Operators

// conv2d, and with `relu` the inference-only conv2d_bias_relu: max(conv2d(...), 0).
at::Tensor conv2d_forward_impl(const char* op, const at::Tensor& input, const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                               c10::IntArrayRef padding, c10::IntArrayRef dilation,
                               int64_t groups, bool relu) {
  const auto params = Conv2dParams::from_lists(op, stride, padding, dilation, groups);
  const auto out_size = check_conv2d_forward(input, weight, bias, params, op);
  if (is_depthwise(input.size(1), groups) && !use_reference()) {
    return depthwise_forward_cuda(input, weight, bias, params, relu);  // cuda/depthwise.cu
  }
  const c10::cuda::CUDAGuard device_guard(input.device());
  at::Tensor output = at::empty(
      out_size, input.options().memory_format(conv_output_memory_format(input, weight)));
  if (output.numel() == 0) return output;
  // An empty input with a non-empty output (C == 0, or H == 0 inside padding) takes no
  // special case: no gathered index is in range, so the output is the bias, or zeros.
  const ConvGeometry geo(input.sizes(), weight.sizes(), out_size[2], out_size[3], params);
  const bool has_bias = bias.has_value() && bias->defined();
  const int64_t bias_stride = has_bias ? bias->stride(0) : 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "cnnops.conv2d", [&] {
        const scalar_t* b = has_bias ? bias->data_ptr<scalar_t>() : nullptr;
        if (use_reference() ||
            !conv2d_forward_tiled<scalar_t>(input, weight, b, bias_stride, output, geo, relu)) {
          conv2d_forward_reference<scalar_t>(input, weight, b, bias_stride, output, geo, relu);
        }
      });
  return output;
}

at::Tensor conv2d_forward_cuda(const at::Tensor& input, const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                               c10::IntArrayRef padding, c10::IntArrayRef dilation,
                               int64_t groups) {
  return conv2d_forward_impl("cnnops.conv2d", input, weight, bias, stride, padding, dilation,
                             groups, false);
}

at::Tensor conv2d_bias_relu_cuda(const at::Tensor& input, const at::Tensor& weight,
                                 const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                                 c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                 int64_t groups) {
  return conv2d_forward_impl("cnnops.conv2d_bias_relu", input, weight, bias, stride, padding,
                             dilation, groups, true);
}

at::Tensor conv2d_grad_input_cuda(const at::Tensor& grad_output, const at::Tensor& weight,
                                  c10::IntArrayRef input_size, c10::IntArrayRef stride,
                                  c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                  int64_t groups) {
  const auto params =
      Conv2dParams::from_lists("cnnops.conv2d_grad_input", stride, padding, dilation, groups);
  check_conv2d_grad_input(grad_output, weight, input_size, params);
  if (is_depthwise(input_size[1], groups) && !use_reference()) {
    return depthwise_grad_input_cuda(grad_output, weight, input_size, params,
                                     conv_output_memory_format(grad_output, weight));
  }
  const c10::cuda::CUDAGuard device_guard(grad_output.device());
  // at::empty, not at::zeros: at::zeros(size, options) drops options' memory format. Every
  // element is written below.
  at::Tensor grad_input = at::empty(
      input_size,
      grad_output.options().memory_format(conv_output_memory_format(grad_output, weight)));
  if (grad_input.numel() == 0) return grad_input;
  if (grad_output.numel() == 0) return grad_input.zero_();  // K == 0: nothing flows back
  const ConvGeometry geo(input_size, weight.sizes(), grad_output.size(2), grad_output.size(3),
                         params);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(), "cnnops.conv2d_grad_input", [&] {
        if (use_reference() ||
            !conv2d_grad_input_tiled<scalar_t>(grad_output, weight, grad_input, geo)) {
          conv2d_grad_input_reference<scalar_t>(grad_output, weight, grad_input, geo);
        }
      });
  return grad_input;
}

at::Tensor conv2d_grad_weight_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                   c10::IntArrayRef weight_size, c10::IntArrayRef stride,
                                   c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                   int64_t groups) {
  const auto params =
      Conv2dParams::from_lists("cnnops.conv2d_grad_weight", stride, padding, dilation, groups);
  check_conv2d_grad_weight(grad_output, input, weight_size, params);
  const c10::cuda::CUDAGuard device_guard(grad_output.device());
  // The kernels write a contiguous K x CgRS matrix; a channels_last result is one small copy.
  const c10::MemoryFormat format = conv_output_memory_format(grad_output, input);
  if (is_depthwise(input.size(1), groups) && !use_reference()) {
    return depthwise_grad_weight_cuda(grad_output, input, weight_size, params).contiguous(format);
  }
  if (grad_output.numel() == 0) {  // batch 0
    return at::zeros(weight_size, grad_output.options()).contiguous(format);
  }
  at::Tensor grad_weight = at::empty(weight_size, grad_output.options());
  if (grad_weight.numel() == 0) return grad_weight.contiguous(format);
  const ConvGeometry geo(input.sizes(), weight_size, grad_output.size(2), grad_output.size(3),
                         params);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(), "cnnops.conv2d_grad_weight", [&] {
        if (use_reference() ||
            !conv2d_grad_weight_tiled<scalar_t>(grad_output, input, grad_weight, geo)) {
          conv2d_grad_weight_reference<scalar_t>(grad_output, input, grad_weight, geo);
        }
      });
  return grad_weight.contiguous(format);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnops, CUDA, m) {
  m.impl("conv2d", &conv2d_forward_cuda);
  m.impl("conv2d_bias_relu", &conv2d_bias_relu_cuda);
  m.impl("conv2d_grad_input", &conv2d_grad_input_cuda);
  m.impl("conv2d_grad_weight", &conv2d_grad_weight_cuda);
}

}  // namespace cnnops::cuda
