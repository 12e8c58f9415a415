// Partial vector stores for the AVX2 translation units (gemm_avx2.cpp, depthwise_avx2.cpp,
// depthwise_avx512vl.cpp), included after their `#pragma GCC target`: internal linkage, so that
// no AVX2 code is shared with the builds for other ISAs.
//
// The first n lanes of v are written with full, 128-, 64- and 32-bit stores. VMASKMOVPS
// would do it in one instruction, but its store form costs 25-30 cycles on AMD Zen 3
// (measured: 7-8 ns a store against 1.7 for a plain one), more than a small-plane
// depthwise row's arithmetic.
#pragma once

#include <immintrin.h>

namespace cnnops::cpu::avx2 {
namespace {

// n <= 0: nothing; n >= 8: the whole vector.
inline void store_first_ps(float* p, __m256 v, long n) {
  if (n >= 8) {
    _mm256_storeu_ps(p, v);
    return;
  }
  __m128 part = _mm256_castps256_ps128(v);
  if (n >= 4) {
    _mm_storeu_ps(p, part);
    part = _mm256_extractf128_ps(v, 1);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(p), part);
    part = _mm_movehl_ps(part, part);
    p += 2;
    n -= 2;
  }
  if (n >= 1) _mm_store_ss(p, part);
}

// n <= 0: nothing; n >= 4: the whole vector.
inline void store_first_pd(double* p, __m256d v, long n) {
  if (n >= 4) {
    _mm256_storeu_pd(p, v);
    return;
  }
  __m128d part = _mm256_castpd256_pd128(v);
  if (n >= 2) {
    _mm_storeu_pd(p, part);
    part = _mm256_extractf128_pd(v, 1);
    p += 2;
    n -= 2;
  }
  if (n >= 1) _mm_store_sd(p, part);
}

}  // namespace
}  // namespace cnnops::cpu::avx2
