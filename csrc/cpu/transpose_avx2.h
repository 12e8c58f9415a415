// AVX2 transposes of float blocks, for the packers of the GEMM operands (cpu/conv2d_pack.h,
// cpu/depthwise_separable.cpp) and the flat convolutions' output tiles (cpu/conv2d.cpp):
// each compiled for AVX2 by a target attribute and run where avx2_available() says so.
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

// The first `lanes` (1 to 8) floats of v to p.
__attribute__((target("avx2"), always_inline)) inline void store_lanes_avx2(float* p, __m256 v,
                                                                           int lanes) {
  switch (lanes) {
    case 8:
      _mm256_storeu_ps(p, v);
      return;
    case 6:
      _mm_storeu_ps(p, _mm256_castps256_ps128(v));
      _mm_storel_pi(reinterpret_cast<__m64*>(p + 4), _mm256_extractf128_ps(v, 1));
      return;
    case 4:
      _mm_storeu_ps(p, _mm256_castps256_ps128(v));
      return;
    default: {
      alignas(32) float lane[8];
      _mm256_store_ps(lane, v);
      for (int i = 0; i < lanes; ++i) p[i] = lane[i];
    }
  }
}

// out[j * R + r] = src[r][j] for r < live (0 for live <= r < R), j < n: R rows into a panel
// of R floats per column, in 8 x 8 blocks transposed in AVX2 registers. For the GEMM's
// panels of a row-major operand (R = MR or NR of the micro-kernel in use: 6 and 16 with
// AVX2, 12 and 32 with AVX-512), which would otherwise move one element at a time
// (MobileNet's 64 -> 128 1x1 grad_weight on Zen 3: the packing took 80% as long as the
// product; on AVX-512, before the widths 12 and 32 were taken here, a quarter of a 1x1
// grad_weight's samples).
template <int R>
__attribute__((target("avx2"))) inline void transpose_rows_avx2(const float* const* src,
                                                                int live, int64_t n,
                                                                float* out) {
  static_assert(R >= 1 && R <= 32, "a panel of 1 to 32 rows");
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int b = 0; b < R; b += 8) {  // rows b .. b + 7, zero from `live` on
      __m256 r[8];
      for (int i = 0; i < 8; ++i) {
        r[i] = b + i < live ? _mm256_loadu_ps(src[b + i] + j) : _mm256_setzero_ps();
      }
      transpose_8x8_avx2(r);
      const int lanes = R - b < 8 ? R - b : 8;
      for (int c = 0; c < 8; ++c) store_lanes_avx2(out + (j + c) * R + b, r[c], lanes);
    }
  }
  for (; j < n; ++j) {
    for (int r = 0; r < R; ++r) out[j * R + r] = r < live ? src[r][j] : 0.0f;
  }
}

// A tile of pixels x channels (pixel i's channels at tile + i * nr, nr a multiple of 8)
// written out channel by channel: y[j * y_c + i] = tile[i * nr + j] + bias[j] (bias null:
// + 0), then max(0, .) if relu, for i < length and j < kept; 8 x 8 blocks transposed in
// registers. Reads no tile row past `length`. The flat convolutions' epilogue into NCHW
// output rows, in a sixth of the scalar loop's instructions (a load nr floats apart per
// element); SimpleCNN's 64x32x14x14 -> 64 forward measured 1-3% faster (min and median of
// 6 alternating processes), within this machine's noise: the epilogue's time is mostly the
// output's stores reaching memory, and moves with it.
__attribute__((target("avx2"))) inline void store_planar_avx2(const float* tile, int64_t nr,
                                                             int64_t length, int64_t kept,
                                                             const float* bias, bool relu,
                                                             float* y, int64_t y_c) {
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t j = 0; j < kept; j += 8) {
    const int channels = kept - j < 8 ? static_cast<int>(kept - j) : 8;
    __m256 add[8];
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) add[c] = _mm256_set1_ps(bias && c < channels ? bias[j + c] : 0.0f);
    for (int64_t i = 0; i < length; i += 8) {
      const int pixels = length - i < 8 ? static_cast<int>(length - i) : 8;
      __m256 r[8];
#pragma GCC unroll 8
      for (int p = 0; p < 8; ++p) {
        r[p] = p < pixels ? _mm256_loadu_ps(tile + (i + p) * nr + j) : zero;
      }
      transpose_8x8_avx2(r);
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        r[c] = _mm256_add_ps(r[c], add[c]);
        if (relu) r[c] = _mm256_max_ps(zero, r[c]);  // MAXPS returns r[c] where it is NaN
      }
      if (channels == 8 && pixels == 8) {  // (loops to constant bounds keep r in registers)
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c) _mm256_storeu_ps(y + (j + c) * y_c + i, r[c]);
        continue;
      }
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        if (c < channels) store_lanes_avx2(y + (j + c) * y_c + i, r[c], pixels);
      }
    }
  }
}

// Whether transpose_rows_avx2<R> serves a panel width.
constexpr bool transposable_width(int64_t width) {
  return width == 6 || width == 12 || width == 16 || width == 32;
}
#endif

}  // namespace cnnops::cpu
