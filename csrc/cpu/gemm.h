// The packed GEMM at the heart of the CPU convolution kernels:
//
//   C[M x N] += A[M x K] * B[K x N]
//
// A and B arrive packed in panels, the layout the micro-kernel streams through:
//   A: ceil(M / MR) panels; panel i holds rows [i*MR, i*MR + MR) as K groups of MR values
//      (a[(i * K + k) * MR + r] = A[i*MR + r][k]); rows past M are zero.
//   B: ceil(N / NR) panels; panel j holds columns [j*NR, j*NR + NR) as K groups of NR
//      values (b[(j * K + k) * NR + c] = B[k][j*NR + c]); columns past N are zero.
// C is strided: element (m, n) lives at c[m * rs_c + n * cs_c].
//
// Two builds of the same micro-kernel exist (gemm_kernel.h): one compiled for AVX2+FMA
// (gemm_avx2.cpp) and a portable one (gemm_portable.cpp); the first call picks one by CPU
// feature detection. CNNOPS_CPU_ISA=portable in the environment forces the portable path.
#pragma once

#include <cstdint>

namespace cnnops::cpu {

// Register-block shape of the micro-kernel: MR rows of A by NR columns of B, NR being
// two 256-bit vectors of T (6 x 16 floats, 6 x 8 doubles: 12 accumulators in ymm registers).
template <typename T>
struct GemmTile {
  static constexpr int MR = 6;
  static constexpr int NR = 64 / static_cast<int>(sizeof(T));
};

void gemm_packed(int64_t M, int64_t N, int64_t K, const float* a, const float* b, float* c,
                 int64_t rs_c, int64_t cs_c);
void gemm_packed(int64_t M, int64_t N, int64_t K, const double* a, const double* b, double* c,
                 int64_t rs_c, int64_t cs_c);

// The instruction set the GEMM runs with: "avx2+fma" or "portable".
const char* cpu_isa();

// Whether this CPU supports AVX2 and FMA, whatever CNNOPS_CPU_ISA says.
bool cpu_has_avx2_fma();

}  // namespace cnnops::cpu
