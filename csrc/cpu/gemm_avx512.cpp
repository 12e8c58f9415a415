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
  // max(0, v) keeps NaN: MAXPS returns its second operand when either is NaN
  static vec relu(vec v) { return _mm512_max_ps(_mm512_setzero_ps(), v); }
  static void store(float* p, vec v) { _mm512_storeu_ps(p, v); }
  static vec load_first(const float* p, int count) {  // count in [0, width]
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << count) - 1), p);
  }
  static vec load_last(const float* p, int count) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>(~((1u << (width - count)) - 1)), p);
  }
  static float sum(vec v) { return _mm512_reduce_add_ps(v); }
  // v, kept in a register: a value read by several FMAs is loaded once, not folded into each.
  static vec in_register(vec v) {
    __asm__("" : "+v"(v));
    return v;
  }
  static void store_first(float* p, vec v, int count) {  // count in [0, width]
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << count) - 1), v);
  }
  static vec keep(vec v, const float* m) {
    return _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(v), _mm512_loadu_si512(m)));
  }
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
  // max(0, v) keeps NaN: MAXPS returns its second operand when either is NaN
  static vec relu(vec v) { return _mm512_max_pd(_mm512_setzero_pd(), v); }
  static void store(double* p, vec v) { _mm512_storeu_pd(p, v); }
  static vec load_first(const double* p, int count) {  // count in [0, width]
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << count) - 1), p);
  }
  static vec load_last(const double* p, int count) {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>(~((1u << (width - count)) - 1)), p);
  }
  static double sum(vec v) { return _mm512_reduce_add_pd(v); }
  // v, kept in a register: a value read by several FMAs is loaded once, not folded into each.
  static vec in_register(vec v) {
    __asm__("" : "+v"(v));
    return v;
  }
  static void store_first(double* p, vec v, int count) {  // count in [0, width]
    _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << count) - 1), v);
  }
  static vec keep(vec v, const double* m) {
    return _mm512_castsi512_pd(
        _mm512_and_si512(_mm512_castpd_si512(v), _mm512_loadu_si512(m)));
  }
};

void gemm_packed(long M, long N, long K, const float* a, const float* b, float* c, long rs_c,
                 long cs_c) {
  detail::gemm_packed<FloatVec, 12, 2>(M, N, K, a, b, c, rs_c, cs_c);
}

void gemm_packed(long M, long N, long K, const double* a, const double* b, double* c, long rs_c,
                 long cs_c) {
  detail::gemm_packed<DoubleVec, 12, 2>(M, N, K, a, b, c, rs_c, cs_c);
}

void direct_row(long taps, const long* tap_off, const float* x, const float* w, long n, float* y,
                long rs_y, int m_valid, const float* bias, bool relu) {
  detail::direct_row<FloatVec, 12, 2>(taps, tap_off, x, w, n, y, rs_y, m_valid, bias, relu);
}

void direct_row(long taps, const long* tap_off, const double* x, const double* w, long n,
                double* y, long rs_y, int m_valid, const double* bias, bool relu) {
  detail::direct_row<DoubleVec, 12, 2>(taps, tap_off, x, w, n, y, rs_y, m_valid, bias, relu);
}

void direct_pixels(long taps, const long* tap_off, const float* x, const float* b, float* c,
                   long ldc) {
  detail::direct_pixels<FloatVec, 12, 2>(taps, tap_off, x, b, c, ldc);
}

void direct_pixels(long taps, const long* tap_off, const double* x, const double* b, double* c,
                   long ldc) {
  detail::direct_pixels<DoubleVec, 12, 2>(taps, tap_off, x, b, c, ldc);
}

void gathered_pixels(long taps, const long* pixel_off, const long* tap_off, const float* x,
                     const float* b, float* c, long ldc) {
  detail::gathered_pixels<FloatVec, 12, 2>(taps, pixel_off, tap_off, x, b, c, ldc);
}

void gathered_pixels(long taps, const long* pixel_off, const long* tap_off, const double* x,
                     const double* b, double* c, long ldc) {
  detail::gathered_pixels<DoubleVec, 12, 2>(taps, pixel_off, tap_off, x, b, c, ldc);
}

// 14 pixels x 2 vectors of output channels (28 accumulators of the 32 registers): a row of
// 14, or 14 rows of one pixel (gathered_pixels with MR = 14); whole_rows_planes also takes
// two rows of 7.
void whole_rows(long q, long taps, const long* row_off, const long* tap_off, const float* x,
                const float* b, float* c, long ldc) {
  if (q == 14) {
    detail::whole_rows<FloatVec, 14, 1, 2>(taps, row_off, tap_off, x, b, c, ldc);
  } else {
    detail::whole_rows<FloatVec, 1, 14, 2>(taps, row_off, tap_off, x, b, c, ldc);
  }
}

namespace {

// c[j] lane i = r[i] lane j: the 16 x 16 transpose, in four rounds of 16 shuffles.
inline void transpose16(const __m512 (&r)[16], __m512 (&c)[16]) {
  __m512 a[16], b[16], h[16];
  for (int i = 0; i < 16; i += 2) {  // pairs of rows, 32-bit elements interleaved
    a[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    a[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // b[4 g + k], 128-bit lane L: column k + 4 L of rows 4 g .. 4 g + 3
  for (int g = 0; g < 4; ++g) {
    const __m512d lo = _mm512_castps_pd(a[4 * g]), hi = _mm512_castps_pd(a[4 * g + 1]);
    const __m512d lo2 = _mm512_castps_pd(a[4 * g + 2]), hi2 = _mm512_castps_pd(a[4 * g + 3]);
    b[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo, lo2));
    b[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo, lo2));
    b[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi, hi2));
    b[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi, hi2));
  }
  // h[2 k], h[2 k + 1] (rows 0-7), h[8 + 2 k], h[9 + 2 k] (rows 8-15): columns k, k + 8
  // and k + 4, k + 12, lanes of 4 rows alternating between the two
  for (int k = 0; k < 4; ++k) {
    h[2 * k] = _mm512_shuffle_f32x4(b[k], b[4 + k], 0x88);
    h[2 * k + 1] = _mm512_shuffle_f32x4(b[k], b[4 + k], 0xdd);
    h[8 + 2 * k] = _mm512_shuffle_f32x4(b[8 + k], b[12 + k], 0x88);
    h[9 + 2 * k] = _mm512_shuffle_f32x4(b[8 + k], b[12 + k], 0xdd);
  }
  for (int k = 0; k < 4; ++k) {
    c[k] = _mm512_shuffle_f32x4(h[2 * k], h[8 + 2 * k], 0x88);
    c[k + 8] = _mm512_shuffle_f32x4(h[2 * k], h[8 + 2 * k], 0xdd);
    c[k + 4] = _mm512_shuffle_f32x4(h[2 * k + 1], h[9 + 2 * k], 0x88);
    c[k + 12] = _mm512_shuffle_f32x4(h[2 * k + 1], h[9 + 2 * k], 0xdd);
  }
}

}  // namespace

// whole_rows' 14 pixels x 32 output channels written into planes: each vector of 16 channels
// transposed in registers into 16 channels' runs of pixels, then stored with bias and ReLU.
void whole_rows_planes(long q, long taps, const long* row_off, const long* tap_off,
                       const float* x, const float* b, float* y, long y_c, long count,
                       long split, long second, long kept, const float* bias, bool relu) {
  constexpr int kPixels = 14;
  __m512 acc[kPixels][2];
  if (q == kPixels) {
    detail::whole_rows_products<FloatVec, kPixels, 1, 2>(taps, row_off, tap_off, x, b, acc);
  } else if (q == kPixels / 2) {
    detail::whole_rows_products<FloatVec, kPixels / 2, 2, 2>(taps, row_off, tap_off, x, b, acc);
  } else {
    detail::whole_rows_products<FloatVec, 1, kPixels, 2>(taps, row_off, tap_off, x, b, acc);
  }
  const __mmask16 all = static_cast<__mmask16>((1u << count) - 1);
  const __mmask16 first = static_cast<__mmask16>(all & ((1u << split) - 1));
  const __mmask16 rest = static_cast<__mmask16>(all & ~first);
  for (int v = 0; v < 2; ++v) {
    __m512 rows[16], planes[16];
    for (int i = 0; i < kPixels; ++i) rows[i] = acc[i][v];
    rows[14] = rows[15] = _mm512_setzero_ps();
    transpose16(rows, planes);
    for (int j = 0; j < 16 && v * 16 + j < kept; ++j) {
      const long k = v * 16 + j;
      __m512 out = planes[j];
      if (bias != nullptr) out = _mm512_add_ps(out, _mm512_set1_ps(bias[k]));
      if (relu) out = FloatVec::relu(out);
      float* plane = y + k * y_c;
      _mm512_mask_storeu_ps(plane, first, out);
      // pixels split.. to plane + second on (lanes below split masked off, never written)
      if (rest != 0) _mm512_mask_storeu_ps(plane + second - split, rest, out);
    }
  }
}

// Rows of up to 16 pixels of up to 32 planes, transposed 16 channels at a time in registers.
void planes_to_pixels(const float* src, long src_c, long src_h, long rows, long cols, long kept,
                      float* dst, long row_pitch) {
  const __mmask16 row = static_cast<__mmask16>((1u << cols) - 1);
  for (long p = 0; p < rows; ++p) {
    for (int v = 0; v < 2; ++v) {
      __m512 planes[16], pixels[16];
      for (int j = 0; j < 16; ++j) {
        const long k = v * 16 + j;
        planes[j] = k < kept ? _mm512_maskz_loadu_ps(row, src + k * src_c + p * src_h)
                             : _mm512_setzero_ps();
      }
      transpose16(planes, pixels);
      for (long q = 0; q < cols; ++q) {
        _mm512_storeu_ps(dst + (p * row_pitch + q) * 32 + v * 16, pixels[q]);
      }
    }
  }
}

void direct_grad_weight_pixels(long images, long n, long row_len, long row_pitch,
                               const float* x, const long* tap_off,
                               long x_image, int t_valid, const float* dy, long dy_image,
                               long dy_pixel, float* sums, long ld) {
  detail::direct_grad_weight_pixels<FloatVec, 9, 2>(
      images, n, row_len, row_pitch, x, tap_off, x_image, t_valid, dy, dy_image, dy_pixel, sums,
      ld);
}

void direct_grad_weight_pixels(long images, long n, long row_len, long row_pitch,
                               const double* x, const long* tap_off,
                               long x_image, int t_valid, const double* dy, long dy_image,
                               long dy_pixel, double* sums, long ld) {
  detail::direct_grad_weight_pixels<DoubleVec, 9, 2>(
      images, n, row_len, row_pitch, x, tap_off, x_image, t_valid, dy, dy_image, dy_pixel, sums,
      ld);
}

void direct_row_thin(long taps, const long* tap_off, const float* x, const float* w, long n,
                     float* y, long rs_y, int m_valid, const float* bias, bool relu) {
  detail::direct_row<FloatVec, 3, 6>(taps, tap_off, x, w, n, y, rs_y, m_valid, bias, relu);
}

void direct_row_thin(long taps, const long* tap_off, const double* x, const double* w, long n,
                     double* y, long rs_y, int m_valid, const double* bias, bool relu) {
  detail::direct_row<DoubleVec, 3, 6>(taps, tap_off, x, w, n, y, rs_y, m_valid, bias, relu);
}

void direct_plane(long taps, const long* tap_off, const long* tap_mask, const float* masks,
                  const float* x, const float* w, long n, float* y, long rs_y, int m_valid,
                  const float* bias, bool relu) {
  detail::direct_plane<FloatVec, 8, 3>(taps, tap_off, tap_mask, masks, x, w, n, y, rs_y, m_valid,
                                   bias, relu);
}

void direct_plane(long taps, const long* tap_off, const long* tap_mask, const double* masks,
                  const double* x, const double* w, long n, double* y, long rs_y, int m_valid,
                  const double* bias, bool relu) {
  detail::direct_plane<DoubleVec, 8, 3>(taps, tap_off, tap_mask, masks, x, w, n, y, rs_y, m_valid,
                                    bias, relu);
}

void direct_grad_weight(long rows, long n, const float* dy, const long* dy_off, long dy_row,
                        int k_valid, const float* x, const long* tap_off, long x_row,
                        int t_valid, float* sums, long ld) {
  detail::direct_grad_weight<FloatVec, 3, 9>(rows, n, dy, dy_off, dy_row, k_valid, x, tap_off,
                                              x_row, t_valid, sums, ld);
}

void direct_grad_weight(long rows, long n, const double* dy, const long* dy_off, long dy_row,
                        int k_valid, const double* x, const long* tap_off, long x_row,
                        int t_valid, double* sums, long ld) {
  detail::direct_grad_weight<DoubleVec, 3, 9>(rows, n, dy, dy_off, dy_row, k_valid, x,
                                               tap_off, x_row, t_valid, sums, ld);
}

}  // namespace cnnops::cpu::avx512

#endif
