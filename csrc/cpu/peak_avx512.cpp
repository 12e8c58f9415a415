// The FMA peak loop built for AVX-512F; chosen at run time by peak.cpp.
// 16 chains of zmm accumulators (of 32 registers).
#if defined(__x86_64__) || defined(_M_X64)

#pragma GCC target("avx512f")
#include <immintrin.h>

#include "cpu/peak_kernel.h"

namespace cnnops::cpu::avx512 {

struct FloatVec {
  using scalar = float;
  using vec = __m512;
  static constexpr int width = 16;
  static vec broadcast(float x) { return _mm512_set1_ps(x); }
  static vec fma(vec a, vec b, vec acc) { return _mm512_fmadd_ps(a, b, acc); }
  static vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
};

struct DoubleVec {
  using scalar = double;
  using vec = __m512d;
  static constexpr int width = 8;
  static vec broadcast(double x) { return _mm512_set1_pd(x); }
  static vec fma(vec a, vec b, vec acc) { return _mm512_fmadd_pd(a, b, acc); }
  static vec add(vec a, vec b) { return _mm512_add_pd(a, b); }
  static void store(double* p, vec v) { _mm512_storeu_pd(p, v); }
};

constexpr int kChains = 16;

double fma_loop(long steps, bool double_precision, double* flops) {
  const int width = double_precision ? DoubleVec::width : FloatVec::width;
  *flops = 2.0 * steps * kChains * width;
  return double_precision ? detail::fma_loop<DoubleVec, kChains>(steps)
                          : detail::fma_loop<FloatVec, kChains>(steps);
}

}  // namespace cnnops::cpu::avx512

#endif
