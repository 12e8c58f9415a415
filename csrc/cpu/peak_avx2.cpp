// The FMA peak loop built for AVX2 + FMA; chosen at run time by peak.cpp.
// 12 chains of ymm accumulators: with the two constants, 14 of the 16 registers.
#if defined(__x86_64__) || defined(_M_X64)

#pragma GCC target("avx2,fma")
#include <immintrin.h>

#include "cpu/peak_kernel.h"

namespace cnnops::cpu::avx2 {

struct FloatVec {
  using scalar = float;
  using vec = __m256;
  static constexpr int width = 8;
  static vec broadcast(float x) { return _mm256_set1_ps(x); }
  static vec fma(vec a, vec b, vec acc) { return _mm256_fmadd_ps(a, b, acc); }
  static vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  static void store(float* p, vec v) { _mm256_storeu_ps(p, v); }
};

struct DoubleVec {
  using scalar = double;
  using vec = __m256d;
  static constexpr int width = 4;
  static vec broadcast(double x) { return _mm256_set1_pd(x); }
  static vec fma(vec a, vec b, vec acc) { return _mm256_fmadd_pd(a, b, acc); }
  static vec add(vec a, vec b) { return _mm256_add_pd(a, b); }
  static void store(double* p, vec v) { _mm256_storeu_pd(p, v); }
};

constexpr int kChains = 12;

double fma_loop(long steps, bool double_precision, double* flops) {
  const int width = double_precision ? DoubleVec::width : FloatVec::width;
  *flops = 2.0 * steps * kChains * width;
  return double_precision ? detail::fma_loop<DoubleVec, kChains>(steps)
                          : detail::fma_loop<FloatVec, kChains>(steps);
}

}  // namespace cnnops::cpu::avx2

#endif
