// The 256-bit vector traits of the depthwise loops (depthwise_kernel.h), for the translation
// units that build them with AVX2 + FMA: depthwise_avx2.cpp, and depthwise_avx512vl.cpp,
// which builds the small-plane kernels again with AVX-512VL enabled (the same 256-bit code,
// with 32 vector registers instead of 16). Included after their `#pragma GCC target`:
// internal linkage, so that no code is shared between the two builds.
#pragma once

#include <immintrin.h>

#include "cpu/avx2_store.h"

namespace cnnops::cpu::avx2 {
namespace {

struct Float256 {
  using scalar = float;
  using vec = __m256;
  static constexpr int width = 8;
  static constexpr bool kShuffles = true;
  static vec zero() { return _mm256_setzero_ps(); }
  static vec load(const float* p) { return _mm256_loadu_ps(p); }
  static vec broadcast(float x) { return _mm256_set1_ps(x); }
  static vec fma(vec a, vec b, vec acc) { return _mm256_fmadd_ps(a, b, acc); }
  static vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  static void store(float* p, vec v) { _mm256_storeu_ps(p, v); }
  static void stream(float* p, vec v) { _mm256_stream_ps(p, v); }  // p aligned
  static __m256i first(long n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  // VMASKMOVPS loads cost 2.5-3x a plain one on Zen 1 (measured): whole vectors take
  // plain loads, and so do the lanes of a row whose vector lies inside its plane.
  static vec load_n(const float* p, long n) {
    return n >= width ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, first(n));
  }
  static void store_n(float* p, vec v, long n) { store_first_ps(p, v, n); }
  static vec relu(vec v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }  // NaN: v
  using Lanes = __m256i;
  static Lanes lanes(long lo, long hi) { return _mm256_andnot_si256(first(lo), first(hi)); }
  static vec load_lanes(const float* p, Lanes m) { return _mm256_maskload_ps(p, m); }
  static vec load_lanes_within(const float* p, Lanes m) {
    return _mm256_and_ps(_mm256_loadu_ps(p), _mm256_castsi256_ps(m));
  }
  struct Pick {
    __m256i index, from_b, valid;  // lane l: element index of a or b, from b?, inside?
  };
  static Pick pick(const long* from) {
    alignas(32) int index[8], from_b[8], valid[8];
    for (int l = 0; l < 8; ++l) {
      index[l] = static_cast<int>(from[l] & 7);
      from_b[l] = from[l] >= 8 ? -1 : 0;
      valid[l] = from[l] >= 0 ? -1 : 0;
    }
    return {_mm256_load_si256(reinterpret_cast<const __m256i*>(index)),
            _mm256_load_si256(reinterpret_cast<const __m256i*>(from_b)),
            _mm256_load_si256(reinterpret_cast<const __m256i*>(valid))};
  }
  static vec picked(vec a, vec b, const Pick& k) {
    const vec v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(a, k.index),
                                   _mm256_permutevar8x32_ps(b, k.index),
                                   _mm256_castsi256_ps(k.from_b));
    return _mm256_and_ps(v, _mm256_castsi256_ps(k.valid));
  }
  static void deinterleave2(vec a, vec b, vec& even, vec& odd) {
    // [a0 a2 b0 b2 | a4 a6 b4 b6], then 64-bit lanes (0, 2, 1, 3): [a0 a2 a4 a6 b0 b2 b4 b6]
    const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    const __m256 o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  static void interleave2(vec even, vec odd, vec& lo, vec& hi) {
    // [e0 o0 e1 o1 | e4 o4 e5 o5] and [e2 o2 e3 o3 | e6 o6 e7 o7], then whole halves
    const __m256 l = _mm256_unpacklo_ps(even, odd), h = _mm256_unpackhi_ps(even, odd);
    lo = _mm256_permute2f128_ps(l, h, 0x20);
    hi = _mm256_permute2f128_ps(l, h, 0x31);
  }
  // deinterleave2 without its cross-lane permutes: the lanes hold elements 0, 1, 4, 5, 2, 3,
  // 6, 7 of the even (odd) sequence, the order unscramble() puts back
  static void deinterleave2_any(vec a, vec b, vec& even, vec& odd) {
    even = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    odd = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
  }
  static vec unscramble(vec v) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
  }
};

struct Double256 {
  using scalar = double;
  using vec = __m256d;
  static constexpr int width = 4;
  static constexpr bool kShuffles = true;
  static vec zero() { return _mm256_setzero_pd(); }
  static vec load(const double* p) { return _mm256_loadu_pd(p); }
  static vec broadcast(double x) { return _mm256_set1_pd(x); }
  static vec fma(vec a, vec b, vec acc) { return _mm256_fmadd_pd(a, b, acc); }
  static vec add(vec a, vec b) { return _mm256_add_pd(a, b); }
  static void store(double* p, vec v) { _mm256_storeu_pd(p, v); }
  static void stream(double* p, vec v) { _mm256_stream_pd(p, v); }  // p aligned
  static __m256i first(long n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static vec load_n(const double* p, long n) {
    return n >= width ? _mm256_loadu_pd(p) : _mm256_maskload_pd(p, first(n));
  }
  static void store_n(double* p, vec v, long n) { store_first_pd(p, v, n); }
  static vec relu(vec v) { return _mm256_max_pd(_mm256_setzero_pd(), v); }
  using Lanes = __m256i;
  static Lanes lanes(long lo, long hi) { return _mm256_andnot_si256(first(lo), first(hi)); }
  static vec load_lanes(const double* p, Lanes m) { return _mm256_maskload_pd(p, m); }
  static vec load_lanes_within(const double* p, Lanes m) {
    return _mm256_and_pd(_mm256_loadu_pd(p), _mm256_castsi256_pd(m));
  }
  struct Pick {
    __m256i index, from_b, valid;  // index: the two 32-bit halves of the element picked
  };
  static Pick pick(const long* from) {
    alignas(32) int index[8];
    alignas(32) long long from_b[4], valid[4];
    for (int l = 0; l < 4; ++l) {
      index[2 * l] = static_cast<int>(2 * (from[l] & 3));
      index[2 * l + 1] = static_cast<int>(2 * (from[l] & 3) + 1);
      from_b[l] = from[l] >= 4 ? -1 : 0;
      valid[l] = from[l] >= 0 ? -1 : 0;
    }
    return {_mm256_load_si256(reinterpret_cast<const __m256i*>(index)),
            _mm256_load_si256(reinterpret_cast<const __m256i*>(from_b)),
            _mm256_load_si256(reinterpret_cast<const __m256i*>(valid))};
  }
  static vec picked(vec a, vec b, const Pick& k) {
    const __m256 from_a = _mm256_permutevar8x32_ps(_mm256_castpd_ps(a), k.index);
    const __m256 from_b = _mm256_permutevar8x32_ps(_mm256_castpd_ps(b), k.index);
    const vec v = _mm256_blendv_pd(_mm256_castps_pd(from_a), _mm256_castps_pd(from_b),
                                   _mm256_castsi256_pd(k.from_b));
    return _mm256_and_pd(v, _mm256_castsi256_pd(k.valid));
  }
  static void deinterleave2(vec a, vec b, vec& even, vec& odd) {
    // [a0 b0 | a2 b2], then 64-bit lanes (0, 2, 1, 3): [a0 a2 b0 b2]
    even = _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), _MM_SHUFFLE(3, 1, 2, 0));
    odd = _mm256_permute4x64_pd(_mm256_unpackhi_pd(a, b), _MM_SHUFFLE(3, 1, 2, 0));
  }
  static void interleave2(vec even, vec odd, vec& lo, vec& hi) {
    const __m256d l = _mm256_unpacklo_pd(even, odd), h = _mm256_unpackhi_pd(even, odd);
    lo = _mm256_permute2f128_pd(l, h, 0x20);
    hi = _mm256_permute2f128_pd(l, h, 0x31);
  }
  static void deinterleave2_any(vec a, vec b, vec& even, vec& odd) {  // lanes 0, 2, 1, 3
    even = _mm256_unpacklo_pd(a, b);
    odd = _mm256_unpackhi_pd(a, b);
  }
  static vec unscramble(vec v) { return _mm256_permute4x64_pd(v, _MM_SHUFFLE(3, 1, 2, 0)); }
};

}  // namespace
}  // namespace cnnops::cpu::avx2
