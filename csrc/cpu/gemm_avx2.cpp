// The GEMM micro-kernel built for AVX2 + FMA; chosen at run time by gemm.cpp.
// 6 x 16 floats (6 x 8 doubles): 12 accumulators of the 16 ymm registers.
#if defined(__x86_64__) || defined(_M_X64)

#pragma GCC target("avx2,fma")
// Python's CFLAGS build every extension with -fwrapv; with signed overflow defined to wrap,
// GCC keeps more index arithmetic in direct_row's tap loop. Without it (this file only):
// SimpleCNN conv1 forward and MobileNet's 112x112 pointwise forward ~10% faster on a Zen 4
// (alternated builds); the flag dropped for the whole extension slowed Winograd's VGG layers
// by 10-25%, and for the AVX2 depthwise and pooling files it measured level or slower.
#pragma GCC optimize("no-wrapv")
#include <immintrin.h>

#include "cpu/avx2_store.h"
#include "cpu/gemm_kernel.h"

namespace cnnops::cpu::avx2 {

struct FloatVec {
  using scalar = float;
  using vec = __m256;
  static constexpr int width = 8;
  static vec zero() { return _mm256_setzero_ps(); }
  static vec load(const float* p) { return _mm256_loadu_ps(p); }
  static vec broadcast(float x) { return _mm256_set1_ps(x); }
  static vec fma(vec a, vec b, vec acc) { return _mm256_fmadd_ps(a, b, acc); }
  static vec add(vec a, vec b) { return _mm256_add_ps(a, b); }
  // max(0, v) keeps NaN: MAXPS returns its second operand when either is NaN
  static vec relu(vec v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }
  static void store(float* p, vec v) { _mm256_storeu_ps(p, v); }
  static vec load_first(const float* p, int count) {  // count in [0, width]
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(count), lane));
  }
  static vec load_last(const float* p, int count) {  // a plain load and a mask, no VMASKMOVPS
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i keep = _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(width - 1 - count));
    return _mm256_and_ps(_mm256_loadu_ps(p), _mm256_castsi256_ps(keep));
  }
  static float sum(vec v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  // v, kept in a register: a value read by several FMAs is loaded once, not folded into each.
  static vec in_register(vec v) {
    __asm__("" : "+x"(v));
    return v;
  }
  static void store_first(float* p, vec v, int count) { store_first_ps(p, v, count); }
  static vec keep(vec v, const float* m) { return _mm256_and_ps(v, _mm256_loadu_ps(m)); }
};

struct DoubleVec {
  using scalar = double;
  using vec = __m256d;
  static constexpr int width = 4;
  static vec zero() { return _mm256_setzero_pd(); }
  static vec load(const double* p) { return _mm256_loadu_pd(p); }
  static vec broadcast(double x) { return _mm256_set1_pd(x); }
  static vec fma(vec a, vec b, vec acc) { return _mm256_fmadd_pd(a, b, acc); }
  static vec add(vec a, vec b) { return _mm256_add_pd(a, b); }
  // max(0, v) keeps NaN: MAXPS returns its second operand when either is NaN
  static vec relu(vec v) { return _mm256_max_pd(_mm256_setzero_pd(), v); }
  static void store(double* p, vec v) { _mm256_storeu_pd(p, v); }
  static vec load_first(const double* p, int count) {  // count in [0, width]
    const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_maskload_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(count), lane));
  }
  static vec load_last(const double* p, int count) {
    const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
    const __m256i keep = _mm256_cmpgt_epi64(lane, _mm256_set1_epi64x(width - 1 - count));
    return _mm256_and_pd(_mm256_loadu_pd(p), _mm256_castsi256_pd(keep));
  }
  static double sum(vec v) {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  // v, kept in a register: a value read by several FMAs is loaded once, not folded into each.
  static vec in_register(vec v) {
    __asm__("" : "+x"(v));
    return v;
  }
  static void store_first(double* p, vec v, int count) { store_first_pd(p, v, count); }
  static vec keep(vec v, const double* m) { return _mm256_and_pd(v, _mm256_loadu_pd(m)); }
};

void gemm_packed(long M, long N, long K, const float* a, const float* b, float* c, long rs_c,
                 long cs_c) {
  detail::gemm_packed<FloatVec, 6, 2>(M, N, K, a, b, c, rs_c, cs_c);
}

void gemm_packed(long M, long N, long K, const double* a, const double* b, double* c, long rs_c,
                 long cs_c) {
  detail::gemm_packed<DoubleVec, 6, 2>(M, N, K, a, b, c, rs_c, cs_c);
}

void direct_row(long taps, const long* tap_off, const float* x, const float* w, long n, float* y,
                long rs_y, int m_valid, const float* bias, bool relu) {
  detail::direct_row<FloatVec, 6, 2>(taps, tap_off, x, w, n, y, rs_y, m_valid, bias, relu);
}

void direct_row(long taps, const long* tap_off, const double* x, const double* w, long n,
                double* y, long rs_y, int m_valid, const double* bias, bool relu) {
  detail::direct_row<DoubleVec, 6, 2>(taps, tap_off, x, w, n, y, rs_y, m_valid, bias, relu);
}

void direct_pixels(long taps, const long* tap_off, const float* x, const float* b, float* c,
                   long ldc) {
  detail::direct_pixels<FloatVec, 6, 2>(taps, tap_off, x, b, c, ldc);
}

void direct_pixels(long taps, const long* tap_off, const double* x, const double* b, double* c,
                   long ldc) {
  detail::direct_pixels<DoubleVec, 6, 2>(taps, tap_off, x, b, c, ldc);
}

void gathered_pixels(long taps, const long* pixel_off, const long* tap_off, const float* x,
                     const float* b, float* c, long ldc) {
  detail::gathered_pixels<FloatVec, 6, 2>(taps, pixel_off, tap_off, x, b, c, ldc);
}

void gathered_pixels(long taps, const long* pixel_off, const long* tap_off, const double* x,
                     const double* b, double* c, long ldc) {
  detail::gathered_pixels<DoubleVec, 6, 2>(taps, pixel_off, tap_off, x, b, c, ldc);
}

void direct_grad_weight_pixels(long images, long n, long row_len, long row_pitch,
                               const float* x, const long* tap_off,
                               long x_image, int t_valid, const float* dy, long dy_image,
                               long dy_pixel, float* sums, long ld) {
  detail::direct_grad_weight_pixels<FloatVec, 6, 2>(
      images, n, row_len, row_pitch, x, tap_off, x_image, t_valid, dy, dy_image, dy_pixel, sums,
      ld);
}

void direct_grad_weight_pixels(long images, long n, long row_len, long row_pitch,
                               const double* x, const long* tap_off,
                               long x_image, int t_valid, const double* dy, long dy_image,
                               long dy_pixel, double* sums, long ld) {
  detail::direct_grad_weight_pixels<DoubleVec, 6, 2>(
      images, n, row_len, row_pitch, x, tap_off, x_image, t_valid, dy, dy_image, dy_pixel, sums,
      ld);
}

void direct_row_thin(long taps, const long* tap_off, const float* x, const float* w, long n,
                     float* y, long rs_y, int m_valid, const float* bias, bool relu) {
  detail::direct_row<FloatVec, 3, 3>(taps, tap_off, x, w, n, y, rs_y, m_valid, bias, relu);
}

void direct_row_thin(long taps, const long* tap_off, const double* x, const double* w, long n,
                     double* y, long rs_y, int m_valid, const double* bias, bool relu) {
  detail::direct_row<DoubleVec, 3, 3>(taps, tap_off, x, w, n, y, rs_y, m_valid, bias, relu);
}

void direct_plane(long taps, const long* tap_off, const long* tap_mask, const float* masks,
                  const float* x, const float* w, long n, float* y, long rs_y, int m_valid,
                  const float* bias, bool relu) {
  detail::direct_plane<FloatVec, 4, 3>(taps, tap_off, tap_mask, masks, x, w, n, y, rs_y, m_valid,
                                   bias, relu);
}

void direct_plane(long taps, const long* tap_off, const long* tap_mask, const double* masks,
                  const double* x, const double* w, long n, double* y, long rs_y, int m_valid,
                  const double* bias, bool relu) {
  detail::direct_plane<DoubleVec, 4, 3>(taps, tap_off, tap_mask, masks, x, w, n, y, rs_y, m_valid,
                                    bias, relu);
}

void direct_grad_weight(long rows, long n, const float* dy, const long* dy_off, long dy_row,
                        int k_valid, const float* x, const long* tap_off, long x_row,
                        int t_valid, float* sums, long ld) {
  detail::direct_grad_weight<FloatVec, 4, 3>(rows, n, dy, dy_off, dy_row, k_valid, x, tap_off,
                                              x_row, t_valid, sums, ld);
}

void direct_grad_weight(long rows, long n, const double* dy, const long* dy_off, long dy_row,
                        int k_valid, const double* x, const long* tap_off, long x_row,
                        int t_valid, double* sums, long ld) {
  detail::direct_grad_weight<DoubleVec, 4, 3>(rows, n, dy, dy_off, dy_row, k_valid, x,
                                               tap_off, x_row, t_valid, sums, ld);
}

}  // namespace cnnops::cpu::avx2

#endif
