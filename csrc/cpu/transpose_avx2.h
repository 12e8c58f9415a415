// AVX2 transposes of float blocks, for the packers of the GEMM operands (cpu/conv2d_pack.h,
// cpu/depthwise_separable.cpp): each compiled for AVX2 by a target attribute and run where
// avx2_available() says so.
#pragma once

#include <cstdint>

// x86-64 with GCC or Clang: some packers come with AVX-512 masked copies and AVX2
// transposes, each compiled for its ISA by a target attribute and chosen at run time.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CNNOPS_X86_INTRINSICS 1
#endif

#include "cpu/gemm.h"

namespace cnnops::cpu {

#ifdef CNNOPS_X86_INTRINSICS
// Rows r[0..7] of an 8 x 8 block in, its columns out: r[c] = (r0[c], ..., r7[c]).
__attribute__((target("avx2"), always_inline)) inline void transpose_8x8_avx2(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {  // pairs of rows interleaved
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  __m256 q[8];  // then quadruples: q[0..3] rows 0-3 of columns (0, 4), (1, 5), (2, 6), (3, 7)
  for (int i = 0; i < 8; i += 4) {
    q[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    q[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    q[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    q[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(q[c], q[c + 4], 0x20);
    r[c + 4] = _mm256_permute2f128_ps(q[c], q[c + 4], 0x31);
  }
}

// Whether the AVX2 transposes may run (any ISA but the portable one: AVX-512 CPUs have AVX2).
inline bool avx2_available() { return active_isa() >= Isa::avx2; }

// out[j * 16 + r] = src[r][j] for r < live (0 for live <= r < 16), j < n: sixteen rows into
// a panel of 16 floats per column, in 8 x 8 blocks transposed in AVX2 registers. For
// pack_im2col_transposed's NCHW 1x1 rows, which it otherwise moved one element at a time
// (MobileNet's 64 -> 128 1x1 grad_weight on Zen 3: the packing took 80% as long as the
// product).
__attribute__((target("avx2"))) inline void transpose_rows_16_avx2(const float* const* src,
                                                                   int live, int64_t n,
                                                                   float* out) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int half = 0; half < 2; ++half) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) {
        const int row = 8 * half + i;
        r[i] = row < live ? _mm256_loadu_ps(src[row] + j) : _mm256_setzero_ps();
      }
      transpose_8x8_avx2(r);
      for (int c = 0; c < 8; ++c) _mm256_storeu_ps(out + (j + c) * 16 + 8 * half, r[c]);
    }
  }
  for (; j < n; ++j) {
    for (int r = 0; r < 16; ++r) out[j * 16 + r] = r < live ? src[r][j] : 0.0f;
  }
}

// out[j * 6 + r] = src[r][j] for r < live (0 for live <= r < 6), j < n: pack_a_panels' six
// rows of a weight or of grad_output, interleaved by the same transposition (a 4- and a
// 2-float store per column).
__attribute__((target("avx2"))) inline void transpose_rows_6_avx2(const float* const* src,
                                                                  int live, int64_t n,
                                                                  float* out) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i) {
      r[i] = i < live ? _mm256_loadu_ps(src[i] + j) : _mm256_setzero_ps();
    }
    transpose_8x8_avx2(r);
    for (int c = 0; c < 8; ++c) {
      float* column = out + (j + c) * 6;
      _mm_storeu_ps(column, _mm256_castps256_ps128(r[c]));
      _mm_storel_pi(reinterpret_cast<__m64*>(column + 4), _mm256_extractf128_ps(r[c], 1));
    }
  }
  for (; j < n; ++j) {
    for (int r = 0; r < 6; ++r) out[j * 6 + r] = r < live ? src[r][j] : 0.0f;
  }
}
#endif

}  // namespace cnnops::cpu
