// Run-time choice between the AVX2+FMA and the portable GEMM micro-kernel.
#include "cpu/gemm.h"

#include <cstdlib>
#include <cstring>

namespace cnnops::cpu {

namespace portable {
void gemm_packed(long M, long N, long K, const float* a, const float* b, float* c, long rs_c,
                 long cs_c);
void gemm_packed(long M, long N, long K, const double* a, const double* b, double* c, long rs_c,
                 long cs_c);
}  // namespace portable

#if defined(__x86_64__) || defined(_M_X64)
#define CNNOPS_HAVE_AVX2_BUILD 1
namespace avx2 {
void gemm_packed(long M, long N, long K, const float* a, const float* b, float* c, long rs_c,
                 long cs_c);
void gemm_packed(long M, long N, long K, const double* a, const double* b, double* c, long rs_c,
                 long cs_c);
}  // namespace avx2
#endif

bool cpu_has_avx2_fma() {
#ifdef CNNOPS_HAVE_AVX2_BUILD
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

namespace {

bool use_avx2() {
  // Decided once: the environment and the CPU do not change while the process runs.
  static const bool chosen = [] {
    const char* forced = std::getenv("CNNOPS_CPU_ISA");
    if (forced != nullptr && std::strcmp(forced, "portable") == 0) return false;
    return cpu_has_avx2_fma();
  }();
  return chosen;
}

}  // namespace

const char* cpu_isa() { return use_avx2() ? "avx2+fma" : "portable"; }

void gemm_packed(int64_t M, int64_t N, int64_t K, const float* a, const float* b, float* c,
                 int64_t rs_c, int64_t cs_c) {
#ifdef CNNOPS_HAVE_AVX2_BUILD
  if (use_avx2()) return avx2::gemm_packed(M, N, K, a, b, c, rs_c, cs_c);
#endif
  portable::gemm_packed(M, N, K, a, b, c, rs_c, cs_c);
}

void gemm_packed(int64_t M, int64_t N, int64_t K, const double* a, const double* b, double* c,
                 int64_t rs_c, int64_t cs_c) {
#ifdef CNNOPS_HAVE_AVX2_BUILD
  if (use_avx2()) return avx2::gemm_packed(M, N, K, a, b, c, rs_c, cs_c);
#endif
  portable::gemm_packed(M, N, K, a, b, c, rs_c, cs_c);
}

}  // namespace cnnops::cpu
