// The depthwise loops (depthwise_kernel.h) built for AVX-512F; chosen at run time by
// depthwise.cpp, following the ISA gemm.cpp picked.
#if defined(__x86_64__) || defined(_M_X64)

#pragma GCC target("avx512f")
#include <immintrin.h>

#include "cpu/depthwise_kernel.h"

namespace cnnops::cpu::avx512 {

namespace {  // internal linkage: gemm_avx512.cpp has vector traits of its own

struct FloatVec {
  using scalar = float;
  using vec = __m512;
  static constexpr int width = 16;
  static constexpr bool kShuffles = true;
  static vec zero() { return _mm512_setzero_ps(); }
  static vec load(const float* p) { return _mm512_loadu_ps(p); }
  static vec broadcast(float x) { return _mm512_set1_ps(x); }
  static vec fma(vec a, vec b, vec acc) { return _mm512_fmadd_ps(a, b, acc); }
  static vec add(vec a, vec b) { return _mm512_add_ps(a, b); }
  static void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static void stream(float* p, vec v) { _mm512_stream_ps(p, v); }  // p aligned
  static __mmask16 first(long n) { return static_cast<__mmask16>((1u << n) - 1); }
  static vec load_n(const float* p, long n) { return _mm512_maskz_loadu_ps(first(n), p); }
  static void store_n(float* p, vec v, long n) { _mm512_mask_storeu_ps(p, first(n), v); }
  static vec relu(vec v) { return _mm512_max_ps(_mm512_setzero_ps(), v); }  // NaN: v
  using Lanes = __mmask16;
  static Lanes lanes(long lo, long hi) { return static_cast<Lanes>(first(hi) & ~first(lo)); }
  static vec load_lanes(const float* p, Lanes m) { return _mm512_maskz_loadu_ps(m, p); }
  static vec load_lanes_within(const float* p, Lanes m) { return load_lanes(p, m); }
  struct Pick {
    __m512i index;
    __mmask16 valid;
  };
  static Pick pick(const long* from) {
    alignas(64) int index[16];
    unsigned valid = 0;
    for (int l = 0; l < 16; ++l) {
      index[l] = from[l] >= 0 ? static_cast<int>(from[l]) : 0;
      if (from[l] >= 0) valid |= 1u << l;
    }
    return {_mm512_load_si512(index), static_cast<__mmask16>(valid)};
  }
  static vec picked(vec a, vec b, const Pick& k) {
    return _mm512_maskz_permutex2var_ps(k.valid, a, k.index, b);
  }
  static void deinterleave2(vec a, vec b, vec& even, vec& odd) {
    const __m512i e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i o = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    even = _mm512_permutex2var_ps(a, e, b);
    odd = _mm512_permutex2var_ps(a, o, b);
  }
  static void interleave2(vec even, vec odd, vec& lo, vec& hi) {
    const __m512i l = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i h = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    lo = _mm512_permutex2var_ps(even, l, odd);
    hi = _mm512_permutex2var_ps(even, h, odd);
  }
  static void deinterleave2_any(vec a, vec b, vec& even, vec& odd) {
    deinterleave2(a, b, even, odd);
  }
  static vec unscramble(vec v) { return v; }
};

struct DoubleVec {
  using scalar = double;
  using vec = __m512d;
  static constexpr int width = 8;
  static constexpr bool kShuffles = true;
  static vec zero() { return _mm512_setzero_pd(); }
  static vec load(const double* p) { return _mm512_loadu_pd(p); }
  static vec broadcast(double x) { return _mm512_set1_pd(x); }
  static vec fma(vec a, vec b, vec acc) { return _mm512_fmadd_pd(a, b, acc); }
  static vec add(vec a, vec b) { return _mm512_add_pd(a, b); }
  static void store(double* p, vec v) { _mm512_storeu_pd(p, v); }
  static void stream(double* p, vec v) { _mm512_stream_pd(p, v); }  // p aligned
  static __mmask8 first(long n) { return static_cast<__mmask8>((1u << n) - 1); }
  static vec load_n(const double* p, long n) { return _mm512_maskz_loadu_pd(first(n), p); }
  static void store_n(double* p, vec v, long n) { _mm512_mask_storeu_pd(p, first(n), v); }
  static vec relu(vec v) { return _mm512_max_pd(_mm512_setzero_pd(), v); }
  using Lanes = __mmask8;
  static Lanes lanes(long lo, long hi) { return static_cast<Lanes>(first(hi) & ~first(lo)); }
  static vec load_lanes(const double* p, Lanes m) { return _mm512_maskz_loadu_pd(m, p); }
  static vec load_lanes_within(const double* p, Lanes m) { return load_lanes(p, m); }
  struct Pick {
    __m512i index;
    __mmask8 valid;
  };
  static Pick pick(const long* from) {
    alignas(64) long long index[8];
    unsigned valid = 0;
    for (int l = 0; l < 8; ++l) {
      index[l] = from[l] >= 0 ? from[l] : 0;
      if (from[l] >= 0) valid |= 1u << l;
    }
    return {_mm512_load_si512(index), static_cast<__mmask8>(valid)};
  }
  static vec picked(vec a, vec b, const Pick& k) {
    return _mm512_maskz_permutex2var_pd(k.valid, a, k.index, b);
  }
  static void deinterleave2(vec a, vec b, vec& even, vec& odd) {
    even = _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), b);
    odd = _mm512_permutex2var_pd(a, _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15), b);
  }
  static void interleave2(vec even, vec odd, vec& lo, vec& hi) {
    lo = _mm512_permutex2var_pd(even, _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), odd);
    hi = _mm512_permutex2var_pd(even, _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15), odd);
  }
  static void deinterleave2_any(vec a, vec b, vec& even, vec& odd) {
    deinterleave2(a, b, even, odd);
  }
  static vec unscramble(vec v) { return v; }
};

}  // namespace

CNNOPS_DEPTHWISE_ENTRY_POINTS(float, FloatVec, FloatVec)
CNNOPS_DEPTHWISE_ENTRY_POINTS(double, DoubleVec, DoubleVec)

}  // namespace cnnops::cpu::avx512

#endif
