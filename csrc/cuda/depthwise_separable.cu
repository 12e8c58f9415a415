// CUDA kernels of depthwise_separable_conv2d: a depthwise convolution (M = C * mult channels,
// R x S) whose result D feeds a pointwise (1x1) convolution (K x M) directly. Mirrors
// cpu/depthwise_separable.cpp.
//
// Letters as in cuda/depthwise.cu (N, C, H, W, M, R, S, P, Q), plus K output channels. The
// pointwise half is the GEMM Y[K x NPQ] = PW[K x M] * D[M x NPQ] over the flattened pixels.
//
// Kernel versions (the "depthwise" family; 0 = automatic = 2):
// version 1: reference. D is materialised by the depthwise kernels, the pointwise products
//            are one thread per output element; backward likewise, through a dD tensor.
// version 2: fused. Every GEMM is tiled (Tile below): a block owns BM x BN outputs, gathers
//            BK reduction indices at a time into shared memory and accumulates TM x TN per
//            thread in registers.
//              forward  Y = PW * D: the B tile (BK depthwise channels x BN pixels) is
//                       computed in shared memory from the input (cuda/depthwise_device.cuh)
//                       and consumed there; D never reaches global memory
//              dD       = PW^T * dY, written as an (N, M, P, Q) tensor, whose depthwise
//                       gradients follow (cuda/depthwise.cu), d(depthwise_bias) = dD summed
//              dPW      = dY * D^T: the B tile (BK pixels x BN depthwise channels) of D is
//                       recomputed in shared memory; the N*P*Q reduction is cut into splits
//                       chosen from the shape alone, summed in order by a second kernel (no
//                       atomics: bitwise reproducible)
//            Each block of the forward and dPW kernels recomputes the D values of its tile,
//            R*S multiply-adds per D element against the BM of the GEMM (about 14% extra
//            work at 3x3).
// All accumulate in at::opmath_type (float for float16/bfloat16); D is kept in it too.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "common/depthwise.h"
#include "common/kernel_version.h"
#include "cuda/depthwise.h"
#include "cuda/depthwise_device.cuh"

namespace cnnops::cuda {

namespace {

using namespace dw;

struct Tile {
  static constexpr int BM = 64;  // rows: output channels (K), or M for dD
  static constexpr int BN = 64;  // columns: pixels, or M for dPW
  static constexpr int BK = 16;  // reduction indices per shared-memory chunk
  static constexpr int TM = 4;
  static constexpr int TN = 4;
  static constexpr int THREADS_M = BM / TM;
  static constexpr int THREADS_N = BN / TN;
  static constexpr int THREADS = THREADS_M * THREADS_N;
};
static_assert(Tile::THREADS == kThreads, "a tile's threads must be the kernels' block size");
static_assert(Tile::BN <= kThreads && Tile::BK <= kThreads,
              "one thread decodes each pixel of a tile or chunk");

// The pixels of the flattened N*P*Q index: (n, p, q) of pixel j.
struct PixelIndex {
  int64_t n, p, q;
  __device__ PixelIndex(int64_t j, const DwShape& s)
      : n(j / (s.P * s.Q)), p((j / s.Q) % s.P), q(j % s.Q) {}
};

// acc[i][j] += sum_kk a_tile[kk][ty + i * THREADS_M] * b_tile[kk][tx + j * THREADS_N]
template <typename acc_t>
__device__ __forceinline__ void multiply_tile(const acc_t (&a_tile)[Tile::BK][Tile::BM],
                                              const acc_t (&b_tile)[Tile::BK][Tile::BN],
                                              acc_t (&acc)[Tile::TM][Tile::TN], int ty, int tx) {
#pragma unroll
  for (int kk = 0; kk < Tile::BK; ++kk) {
    acc_t a[Tile::TM], b[Tile::TN];
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) a[i] = a_tile[kk][ty + i * Tile::THREADS_M];
#pragma unroll
    for (int j = 0; j < Tile::TN; ++j) b[j] = b_tile[kk][tx + j * Tile::THREADS_N];
#pragma unroll
    for (int i = 0; i < Tile::TM; ++i) {
#pragma unroll
      for (int j = 0; j < Tile::TN; ++j) acc[i][j] += a[i] * b[j];
    }
  }
}

// ---- version 2: fused ---------------------------------------------------------------------

// Y[k, pixel] = pb[k] + sum_m PW[k, m] * D[m, pixel]; block (blockIdx.x, blockIdx.y) owns
// pixels [blockIdx.x * BN, + BN) and output channels [blockIdx.y * BM, + BM).
template <typename scalar_t, int KH, int KW>
__global__ void __launch_bounds__(Tile::THREADS) separable_forward_kernel(
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ dw,
    const scalar_t* __restrict__ db, int64_t db_stride, const scalar_t* __restrict__ pw,
    int64_t pw_k, int64_t pw_m, const scalar_t* __restrict__ pb, int64_t pb_stride,
    scalar_t* __restrict__ y, DwShape s, int64_t K, DwStrides xs, DwStrides dws, DwStrides ys) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t a_tile[Tile::BK][Tile::BM];  // PW^T: a_tile[kk][i] = PW[k0 + i, m0 + kk]
  __shared__ acc_t b_tile[Tile::BK][Tile::BN];  // D:    b_tile[kk][j] = D[m0 + kk, j0 + j]
  __shared__ int64_t x_base[Tile::BN], y_base[Tile::BN], pix_p[Tile::BN], pix_q[Tile::BN];
  const int tid = threadIdx.x, tx = tid % Tile::THREADS_N, ty = tid / Tile::THREADS_N;
  const int64_t npq = s.N * s.P * s.Q;
  const int64_t j0 = int64_t{blockIdx.x} * Tile::BN, k0 = int64_t{blockIdx.y} * Tile::BM;
  if (tid < Tile::BN) {
    const int64_t j = j0 + tid;
    pix_p[tid] = -1;  // past the last pixel
    if (j < npq) {
      const PixelIndex px(j, s);
      x_base[tid] = px.n * xs.n;
      y_base[tid] = px.n * ys.n + px.p * ys.h + px.q * ys.w;
      pix_p[tid] = px.p;
      pix_q[tid] = px.q;
    }
  }
  __syncthreads();

  acc_t acc[Tile::TM][Tile::TN] = {};
  for (int64_t m0 = 0; m0 < s.M; m0 += Tile::BK) {
    for (int e = tid; e < Tile::BK * Tile::BM; e += Tile::THREADS) {
      const int kk = e % Tile::BK, i = e / Tile::BK;  // consecutive threads: consecutive m
      const int64_t k = k0 + i, m = m0 + kk;
      a_tile[kk][i] = k < K && m < s.M ? static_cast<acc_t>(pw[k * pw_k + m * pw_m]) : acc_t(0);
    }
    for (int e = tid; e < Tile::BK * Tile::BN; e += Tile::THREADS) {
      const int kk = e / Tile::BN, j = e % Tile::BN;  // consecutive threads: consecutive pixels
      const int64_t m = m0 + kk;
      acc_t v = 0;
      if (m < s.M && pix_p[j] >= 0) {
        const acc_t init = db != nullptr ? static_cast<acc_t>(db[m * db_stride]) : acc_t(0);
        v = depthwise_value<KH, KW>(x + x_base[j] + (m / s.mult) * xs.c, xs.h, xs.w,
                                    dw + m * dws.n, dws.h, dws.w, s, pix_p[j], pix_q[j], init);
      }
      b_tile[kk][j] = v;
    }
    __syncthreads();
    multiply_tile(a_tile, b_tile, acc, ty, tx);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < Tile::TM; ++i) {
    const int64_t k = k0 + ty + i * Tile::THREADS_M;
    if (k >= K) continue;
    const acc_t bias = pb != nullptr ? static_cast<acc_t>(pb[k * pb_stride]) : acc_t(0);
#pragma unroll
    for (int j = 0; j < Tile::TN; ++j) {
      const int jj = tx + j * Tile::THREADS_N;
      if (pix_p[jj] < 0) continue;
      y[y_base[jj] + k * ys.c] = static_cast<scalar_t>(acc[i][j] + bias);
    }
  }
}

// dD[m, pixel] = sum_k PW[k, m] * dY[k, pixel]; block (blockIdx.x, blockIdx.y) owns pixels
// [blockIdx.x * BN, + BN) and depthwise channels [blockIdx.y * BM, + BM).
template <typename scalar_t>
__global__ void __launch_bounds__(Tile::THREADS) separable_grad_d_kernel(
    const scalar_t* __restrict__ gy, const scalar_t* __restrict__ pw, int64_t pw_k,
    int64_t pw_m, scalar_t* __restrict__ gd, DwShape s, int64_t K, DwStrides gys,
    DwStrides gds) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t a_tile[Tile::BK][Tile::BM];  // a_tile[kk][i] = PW[k0 + kk, m0 + i]
  __shared__ acc_t b_tile[Tile::BK][Tile::BN];  // b_tile[kk][j] = dY[k0 + kk, j0 + j]
  __shared__ int64_t gy_base[Tile::BN], gd_base[Tile::BN];
  __shared__ bool valid[Tile::BN];
  const int tid = threadIdx.x, tx = tid % Tile::THREADS_N, ty = tid / Tile::THREADS_N;
  const int64_t npq = s.N * s.P * s.Q;
  const int64_t j0 = int64_t{blockIdx.x} * Tile::BN, m0 = int64_t{blockIdx.y} * Tile::BM;
  if (tid < Tile::BN) {
    const int64_t j = j0 + tid;
    valid[tid] = j < npq;
    if (j < npq) {
      const PixelIndex px(j, s);
      gy_base[tid] = px.n * gys.n + px.p * gys.h + px.q * gys.w;
      gd_base[tid] = px.n * gds.n + px.p * gds.h + px.q * gds.w;
    }
  }
  __syncthreads();

  acc_t acc[Tile::TM][Tile::TN] = {};
  for (int64_t k0 = 0; k0 < K; k0 += Tile::BK) {
    for (int e = tid; e < Tile::BK * Tile::BM; e += Tile::THREADS) {
      const int kk = e / Tile::BM, i = e % Tile::BM;  // consecutive threads: consecutive m
      const int64_t k = k0 + kk, m = m0 + i;
      a_tile[kk][i] = k < K && m < s.M ? static_cast<acc_t>(pw[k * pw_k + m * pw_m]) : acc_t(0);
    }
    for (int e = tid; e < Tile::BK * Tile::BN; e += Tile::THREADS) {
      const int kk = e / Tile::BN, j = e % Tile::BN;
      const int64_t k = k0 + kk;
      b_tile[kk][j] = k < K && valid[j] ? static_cast<acc_t>(gy[gy_base[j] + k * gys.c]) : acc_t(0);
    }
    __syncthreads();
    multiply_tile(a_tile, b_tile, acc, ty, tx);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < Tile::TM; ++i) {
    const int64_t m = m0 + ty + i * Tile::THREADS_M;
    if (m >= s.M) continue;
#pragma unroll
    for (int j = 0; j < Tile::TN; ++j) {
      const int jj = tx + j * Tile::THREADS_N;
      if (valid[jj]) gd[gd_base[jj] + m * gds.c] = static_cast<scalar_t>(acc[i][j]);
    }
  }
}

// dPW[k, m] over one split of the pixels: block (blockIdx.x, blockIdx.y, blockIdx.z) owns
// depthwise channels [blockIdx.x * BN, + BN), output channels [blockIdx.y * BM, + BM) and
// pixels [blockIdx.z * split_len, + split_len); the result goes to workspace[split][k][m].
template <typename scalar_t, int KH, int KW>
__global__ void __launch_bounds__(Tile::THREADS) separable_grad_pw_kernel(
    const scalar_t* __restrict__ gy, const scalar_t* __restrict__ x,
    const scalar_t* __restrict__ dw, const scalar_t* __restrict__ db, int64_t db_stride,
    at::opmath_type<scalar_t>* __restrict__ workspace, DwShape s, int64_t K, DwStrides gys,
    DwStrides xs, DwStrides dws, int64_t split_len) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t a_tile[Tile::BK][Tile::BM];  // a_tile[kk][i] = dY[k0 + i, pixel kk]
  __shared__ acc_t b_tile[Tile::BK][Tile::BN];  // b_tile[kk][j] = D[m0 + j, pixel kk]
  __shared__ int64_t gy_base[Tile::BK], x_base[Tile::BK], pix_p[Tile::BK], pix_q[Tile::BK];
  const int tid = threadIdx.x, tx = tid % Tile::THREADS_N, ty = tid / Tile::THREADS_N;
  const int64_t npq = s.N * s.P * s.Q;
  const int64_t m0 = int64_t{blockIdx.x} * Tile::BN, k0 = int64_t{blockIdx.y} * Tile::BM;
  const int64_t begin = int64_t{blockIdx.z} * split_len;
  const int64_t end = begin + split_len < npq ? begin + split_len : npq;

  acc_t acc[Tile::TM][Tile::TN] = {};
  for (int64_t i0 = begin; i0 < end; i0 += Tile::BK) {
    if (tid < Tile::BK) {
      const int64_t j = i0 + tid;
      pix_p[tid] = -1;
      if (j < end) {
        const PixelIndex px(j, s);
        gy_base[tid] = px.n * gys.n + px.p * gys.h + px.q * gys.w;
        x_base[tid] = px.n * xs.n;
        pix_p[tid] = px.p;
        pix_q[tid] = px.q;
      }
    }
    __syncthreads();
    for (int e = tid; e < Tile::BK * Tile::BM; e += Tile::THREADS) {
      const int kk = e % Tile::BK, i = e / Tile::BK;  // consecutive threads: consecutive pixels
      const int64_t k = k0 + i;
      a_tile[kk][i] =
          k < K && pix_p[kk] >= 0 ? static_cast<acc_t>(gy[gy_base[kk] + k * gys.c]) : acc_t(0);
    }
    for (int e = tid; e < Tile::BK * Tile::BN; e += Tile::THREADS) {
      const int kk = e % Tile::BK, j = e / Tile::BK;
      const int64_t m = m0 + j;
      acc_t v = 0;
      if (m < s.M && pix_p[kk] >= 0) {
        const acc_t init = db != nullptr ? static_cast<acc_t>(db[m * db_stride]) : acc_t(0);
        v = depthwise_value<KH, KW>(x + x_base[kk] + (m / s.mult) * xs.c, xs.h, xs.w,
                                    dw + m * dws.n, dws.h, dws.w, s, pix_p[kk], pix_q[kk], init);
      }
      b_tile[kk][j] = v;
    }
    __syncthreads();
    multiply_tile(a_tile, b_tile, acc, ty, tx);
    __syncthreads();
  }

  acc_t* out = workspace + int64_t{blockIdx.z} * K * s.M;
#pragma unroll
  for (int i = 0; i < Tile::TM; ++i) {
    const int64_t k = k0 + ty + i * Tile::THREADS_M;
    if (k >= K) continue;
#pragma unroll
    for (int j = 0; j < Tile::TN; ++j) {
      const int64_t m = m0 + tx + j * Tile::THREADS_N;
      if (m < s.M) out[k * s.M + m] = acc[i][j];
    }
  }
}

// out[i] = sum over splits of workspace[split][i], in split order.
template <typename scalar_t>
__global__ void separable_sum_splits_kernel(const at::opmath_type<scalar_t>* __restrict__ workspace,
                                            scalar_t* __restrict__ out, int64_t count,
                                            int64_t splits) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    acc_t sum = 0;
    for (int64_t split = 0; split < splits; ++split) sum += workspace[split * count + i];
    out[i] = static_cast<scalar_t>(sum);
  }
}

// ---- version 1: reference (the depthwise half by cuda/depthwise.cu) -----------------------

// y[n, k, p, q] = pb[k] + sum_m pw[k, m] * d[n, m, p, q]
template <typename scalar_t>
__global__ void pointwise_forward_reference_kernel(const scalar_t* __restrict__ d,
                                                   const scalar_t* __restrict__ pw, int64_t pw_k,
                                                   int64_t pw_m, const scalar_t* __restrict__ pb,
                                                   int64_t pb_stride, scalar_t* __restrict__ y,
                                                   DwShape s, int64_t K, DwStrides ds,
                                                   DwStrides ys) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = s.N * K * s.P * s.Q;
  for (int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t q = idx % s.Q, p = (idx / s.Q) % s.P, k = (idx / (s.Q * s.P)) % K;
    const int64_t n = idx / (s.Q * s.P * K);
    acc_t acc = pb != nullptr ? static_cast<acc_t>(pb[k * pb_stride]) : acc_t(0);
    for (int64_t m = 0; m < s.M; ++m) {
      acc += static_cast<acc_t>(pw[k * pw_k + m * pw_m]) *
             static_cast<acc_t>(d[n * ds.n + m * ds.c + p * ds.h + q * ds.w]);
    }
    y[n * ys.n + k * ys.c + p * ys.h + q * ys.w] = static_cast<scalar_t>(acc);
  }
}

// gd[n, m, p, q] = sum_k pw[k, m] * gy[n, k, p, q]
template <typename scalar_t>
__global__ void pointwise_grad_d_reference_kernel(const scalar_t* __restrict__ gy,
                                                  const scalar_t* __restrict__ pw, int64_t pw_k,
                                                  int64_t pw_m, scalar_t* __restrict__ gd,
                                                  DwShape s, int64_t K, DwStrides gys,
                                                  DwStrides gds) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = s.N * s.M * s.P * s.Q;
  for (int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t q = idx % s.Q, p = (idx / s.Q) % s.P, m = (idx / (s.Q * s.P)) % s.M;
    const int64_t n = idx / (s.Q * s.P * s.M);
    acc_t acc = 0;
    for (int64_t k = 0; k < K; ++k) {
      acc += static_cast<acc_t>(pw[k * pw_k + m * pw_m]) *
             static_cast<acc_t>(gy[n * gys.n + k * gys.c + p * gys.h + q * gys.w]);
    }
    gd[n * gds.n + m * gds.c + p * gds.h + q * gds.w] = static_cast<scalar_t>(acc);
  }
}

// gpw[k, m] = sum over (n, p, q) of gy[n, k, p, q] * d[n, m, p, q]; gpw contiguous (K, M).
template <typename scalar_t>
__global__ void pointwise_grad_pw_reference_kernel(const scalar_t* __restrict__ gy,
                                                   const scalar_t* __restrict__ d,
                                                   scalar_t* __restrict__ gpw, DwShape s,
                                                   int64_t K, DwStrides gys, DwStrides ds) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t idx = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; idx < K * s.M;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t k = idx / s.M, m = idx % s.M;
    acc_t acc = 0;
    for (int64_t n = 0; n < s.N; ++n) {
      for (int64_t p = 0; p < s.P; ++p) {
        for (int64_t q = 0; q < s.Q; ++q) {
          acc += static_cast<acc_t>(gy[n * gys.n + k * gys.c + p * gys.h + q * gys.w]) *
                 static_cast<acc_t>(d[n * ds.n + m * ds.c + p * ds.h + q * ds.w]);
        }
      }
    }
    gpw[idx] = static_cast<scalar_t>(acc);
  }
}

// ---- launchers --------------------------------------------------------------------------

bool use_reference() { return kernel_version(OpFamily::depthwise) == 1; }

// The grid of a tiled kernel, or false when it does not fit (version 1 runs instead).
bool tile_grid(int64_t x, int64_t y, int64_t z, dim3& grid) {
  if (x > kMaxGridX || y > kMaxGridYZ || z > kMaxGridYZ) return false;
  grid = dim3(static_cast<unsigned int>(x), static_cast<unsigned int>(y),
              static_cast<unsigned int>(z));
  return true;
}

template <typename scalar_t, int KH, int KW>
void launch_forward(const at::Tensor& input, const at::Tensor& dw, const scalar_t* db,
                    int64_t db_stride, const at::Tensor& pw, const scalar_t* pb,
                    int64_t pb_stride, at::Tensor& output, const DwShape& s, int64_t K,
                    const dim3& grid) {
  separable_forward_kernel<scalar_t, KH, KW>
      <<<grid, Tile::THREADS, 0, c10::cuda::getCurrentCUDAStream()>>>(
          input.data_ptr<scalar_t>(), dw.data_ptr<scalar_t>(), db, db_stride,
          pw.data_ptr<scalar_t>(), pw.stride(0), pw.stride(1), pb, pb_stride,
          output.data_ptr<scalar_t>(), s, K, DwStrides(input), DwStrides(dw), DwStrides(output));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename scalar_t, int KH, int KW>
void launch_grad_pw(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& dw,
                    const scalar_t* db, int64_t db_stride, at::opmath_type<scalar_t>* workspace,
                    const DwShape& s, int64_t K, int64_t split_len, const dim3& grid) {
  separable_grad_pw_kernel<scalar_t, KH, KW>
      <<<grid, Tile::THREADS, 0, c10::cuda::getCurrentCUDAStream()>>>(
          grad_output.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), dw.data_ptr<scalar_t>(),
          db, db_stride, workspace, s, K, DwStrides(grad_output), DwStrides(input),
          DwStrides(dw), split_len);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// ---- operators --------------------------------------------------------------------------

at::Tensor depthwise_separable_forward_cuda(const at::Tensor& input, const at::Tensor& dw_weight,
                                            const at::Tensor& pw_weight,
                                            const c10::optional<at::Tensor>& dw_bias,
                                            const c10::optional<at::Tensor>& pw_bias,
                                            c10::IntArrayRef stride, c10::IntArrayRef padding,
                                            c10::IntArrayRef dilation) {
  constexpr const char* op = "cnnops.depthwise_separable_conv2d";
  const Conv2dParams params = depthwise_separable_params(op, input, stride, padding, dilation);
  const SeparableShape ss =
      check_depthwise_separable_forward(input, dw_weight, pw_weight, dw_bias, pw_bias, params);
  const c10::cuda::CUDAGuard device_guard(input.device());
  at::Tensor output = at::empty(
      {ss.N, ss.K, ss.P, ss.Q},
      input.options().memory_format(depthwise_separable_memory_format(input, dw_weight, pw_weight)));
  if (output.numel() == 0) return output;
  const DwShape s(input.sizes(), dw_weight.sizes(), ss.P, ss.Q, params);
  const bool has_db = dw_bias.has_value() && dw_bias->defined();
  const bool has_pb = pw_bias.has_value() && pw_bias->defined();
  dim3 grid;
  const bool tiled = !use_reference() && tile_grid(ceil_div(ss.N * ss.P * ss.Q, Tile::BN),
                                                   ceil_div(ss.K, Tile::BM), 1, grid);
  const at::Tensor d = tiled ? at::Tensor() : depthwise_forward_cuda(input, dw_weight, dw_bias, params);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), op, [&] {
    const scalar_t* db = has_db ? dw_bias->data_ptr<scalar_t>() : nullptr;
    const scalar_t* pb = has_pb ? pw_bias->data_ptr<scalar_t>() : nullptr;
    const int64_t db_stride = has_db ? dw_bias->stride(0) : 0;
    const int64_t pb_stride = has_pb ? pw_bias->stride(0) : 0;
    if (!tiled) {
      pointwise_forward_reference_kernel<scalar_t>
          <<<grid_for(output.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
              d.data_ptr<scalar_t>(), pw_weight.data_ptr<scalar_t>(), pw_weight.stride(0),
              pw_weight.stride(1), pb, pb_stride, output.data_ptr<scalar_t>(), s, ss.K,
              DwStrides(d), DwStrides(output));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else if (unrolled(s.R, s.S, 3)) {
      launch_forward<scalar_t, 3, 3>(input, dw_weight, db, db_stride, pw_weight, pb, pb_stride,
                                     output, s, ss.K, grid);
    } else if (unrolled(s.R, s.S, 5)) {
      launch_forward<scalar_t, 5, 5>(input, dw_weight, db, db_stride, pw_weight, pb, pb_stride,
                                     output, s, ss.K, grid);
    } else {
      launch_forward<scalar_t, 0, 0>(input, dw_weight, db, db_stride, pw_weight, pb, pb_stride,
                                     output, s, ss.K, grid);
    }
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> depthwise_separable_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& dw_weight,
    const at::Tensor& pw_weight, const c10::optional<at::Tensor>& dw_bias,
    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation) {
  constexpr const char* op = "cnnops.depthwise_separable_conv2d_backward";
  const Conv2dParams params = depthwise_separable_params(op, input, stride, padding, dilation);
  const SeparableShape ss =
      check_depthwise_separable_backward(grad_output, input, dw_weight, pw_weight, dw_bias, params);
  const c10::cuda::CUDAGuard device_guard(input.device());
  const auto grad_input_format = depthwise_separable_memory_format(input, dw_weight, pw_weight);
  const auto options = grad_output.options();
  at::Tensor grad_pw = at::zeros({ss.K, ss.M, 1, 1}, options);
  if (grad_output.numel() == 0 || input.numel() == 0) {  // N, K or H*W empty: nothing flows
    return {at::zeros(input.sizes(), options).contiguous(grad_input_format),
            at::zeros(dw_weight.sizes(), options), at::zeros({ss.M}, options), grad_pw};
  }
  const DwShape s(input.sizes(), dw_weight.sizes(), ss.P, ss.Q, params);
  const int64_t npq = ss.N * ss.P * ss.Q;
  at::Tensor grad_d = at::empty({ss.N, ss.M, ss.P, ss.Q}, options);  // dL/dD
  const bool has_db = dw_bias.has_value() && dw_bias->defined();
  const auto stream = c10::cuda::getCurrentCUDAStream();

  // dPW's reduction over N*P*Q, cut from the shape alone: enough splits for about 1024
  // blocks when the weight has few tiles, each at least 1024 pixels long.
  const int64_t tiles = ceil_div(ss.K, Tile::BM) * ceil_div(ss.M, Tile::BN);
  const int64_t splits = std::clamp<int64_t>(
      std::min(ceil_div(1024, tiles), ceil_div(npq, 1024)), 1, kMaxGridYZ);
  const int64_t split_len = ceil_div(ceil_div(npq, splits), Tile::BK) * Tile::BK;
  dim3 grid_d, grid_pw;
  const bool tiled = !use_reference() &&
                     tile_grid(ceil_div(npq, Tile::BN), ceil_div(ss.M, Tile::BM), 1, grid_d) &&
                     tile_grid(ceil_div(ss.M, Tile::BN), ceil_div(ss.K, Tile::BM),
                               ceil_div(npq, split_len), grid_pw);
  const at::Tensor d = tiled ? at::Tensor() : depthwise_forward_cuda(input, dw_weight, dw_bias, params);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), op, [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* db = has_db ? dw_bias->data_ptr<scalar_t>() : nullptr;
    const int64_t db_stride = has_db ? dw_bias->stride(0) : 0;
    if (!tiled) {
      pointwise_grad_d_reference_kernel<scalar_t><<<grid_for(grad_d.numel()), kThreads, 0, stream>>>(
          grad_output.data_ptr<scalar_t>(), pw_weight.data_ptr<scalar_t>(), pw_weight.stride(0),
          pw_weight.stride(1), grad_d.data_ptr<scalar_t>(), s, ss.K, DwStrides(grad_output),
          DwStrides(grad_d));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      pointwise_grad_pw_reference_kernel<scalar_t><<<grid_for(ss.K * ss.M), kThreads, 0, stream>>>(
          grad_output.data_ptr<scalar_t>(), d.data_ptr<scalar_t>(), grad_pw.data_ptr<scalar_t>(),
          s, ss.K, DwStrides(grad_output), DwStrides(d));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    separable_grad_d_kernel<scalar_t><<<grid_d, Tile::THREADS, 0, stream>>>(
        grad_output.data_ptr<scalar_t>(), pw_weight.data_ptr<scalar_t>(), pw_weight.stride(0),
        pw_weight.stride(1), grad_d.data_ptr<scalar_t>(), s, ss.K, DwStrides(grad_output),
        DwStrides(grad_d));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor workspace = at::empty({static_cast<int64_t>(grid_pw.z), ss.K * ss.M},
                                     options.dtype(c10::CppTypeToScalarType<acc_t>::value));
    acc_t* ws = workspace.data_ptr<acc_t>();
    if (unrolled(s.R, s.S, 3)) {
      launch_grad_pw<scalar_t, 3, 3>(grad_output, input, dw_weight, db, db_stride, ws, s, ss.K,
                                     split_len, grid_pw);
    } else if (unrolled(s.R, s.S, 5)) {
      launch_grad_pw<scalar_t, 5, 5>(grad_output, input, dw_weight, db, db_stride, ws, s, ss.K,
                                     split_len, grid_pw);
    } else {
      launch_grad_pw<scalar_t, 0, 0>(grad_output, input, dw_weight, db, db_stride, ws, s, ss.K,
                                     split_len, grid_pw);
    }
    separable_sum_splits_kernel<scalar_t><<<grid_for(ss.K * ss.M), kThreads, 0, stream>>>(
        ws, grad_pw.data_ptr<scalar_t>(), ss.K * ss.M, static_cast<int64_t>(grid_pw.z));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  at::Tensor grad_dw_bias = at::sum(grad_d, {0, 2, 3});
  at::Tensor grad_input =
      depthwise_grad_input_cuda(grad_d, dw_weight, input.sizes(), params, grad_input_format);
  at::Tensor grad_dw = depthwise_grad_weight_cuda(grad_d, input, dw_weight.sizes(), params);
  return {grad_input, grad_dw, grad_dw_bias, grad_pw};
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnops, CUDA, m) {
  m.impl("depthwise_separable_conv2d", &depthwise_separable_forward_cuda);
  m.impl("depthwise_separable_conv2d_backward", &depthwise_separable_backward_cuda);
}

}  // namespace cnnops::cuda
