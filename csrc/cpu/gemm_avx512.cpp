// The GEMM micro-kernel built for AVX-512F; chosen at run time by gemm.cpp.
// 12 x 32 floats (12 x 16 doubles): 24 accumulators of the 32 zmm registers.
#if defined(__x86_64__) || defined(_M_X64)

#pragma GCC target("avx512f")
#include <immintrin.h>

#include "cpu/gemm_kernel.h"

namespace cnnops::cpu::avx512 {

struct FloatVec {
  using scalar = float;
  using vec = __m512;
  static constexpr int width = 16;
  static vec zero() { return _mm512_setzero_ps(); }
  static vec load(const float* p) { return _mm512_loadu_ps(p); }
  static vec broadcast(float x) { return _mm512_set1_ps(x); }
  static vec fma(vec a, vec b, vec acc) { return _mm512_fmadd_ps(a, b, acc); }
  static vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
};

struct DoubleVec {
  using scalar = double;
  using vec = __m512d;
  static constexpr int width = 8;
  static vec zero() { return _mm512_setzero_pd(); }
  static vec load(const double* p) { return _mm512_loadu_pd(p); }
  static vec broadcast(double x) { return _mm512_set1_pd(x); }
  static vec fma(vec a, vec b, vec acc) { return _mm512_fmadd_pd(a, b, acc); }
  static vec add(vec a, vec b) { return _mm512_add_pd(a, b); }
  static void store(double* p, vec v) { _mm512_storeu_pd(p, v); }
};

void gemm_packed(long M, long N, long K, const float* a, const float* b, float* c, long rs_c,
                 long cs_c) {
  detail::gemm_packed<FloatVec, 12, 2>(M, N, K, a, b, c, rs_c, cs_c);
}

void gemm_packed(long M, long N, long K, const double* a, const double* b, double* c, long rs_c,
                 long cs_c) {
  detail::gemm_packed<DoubleVec, 12, 2>(M, N, K, a, b, c, rs_c, cs_c);
}

}  // namespace cnnops::cpu::avx512

#endif
