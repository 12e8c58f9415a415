// Non-temporal ("streaming") stores for results far larger than the caches.
//
// An ordinary store reads its destination line from memory before overwriting it, which
// doubles the traffic of a write-only pass over a result that leaves the caches anyway. A
// non-temporal store writes the line without reading it (SSE2: every x86-64 CPU), so a
// kernel streams a result of at least kStreamBytes:
//  - the avg pooling backward's grad_input, written once in short rows (2-core Xeon,
//    8x64x112x112: forward+backward 1.13-1.40x as fast, and still 1.07-1.21x when a ReLU
//    backward reads the result right after);
//  - the channels-last convolution's output (Zen 3 VM: 12 MB of stores at 13 GB/s cached,
//    19.6 GB/s streamed; VGG's channels-last first layer, 1x3x224x224 -> 64: the forward's
//    CPU time 25% less, perf samples over 300 calls 7970-8140 -> 6010-6050);
//  - the NCHW depthwise 3x3 rows read in place (grid_plane_rows: forward, and grad_input at
//    stride 1), where every row is whole aligned vectors (Zen 1, two threads, ms, forward:
//    8x32x112x112 3.1-3.2 -> 2.3-2.5, 8x128x56x56 2.4-2.7 -> 1.9-2.1); a row ending in a
//    vector moved back over the one before would write its lines twice, and 28x28 rows
//    streamed that way ran 3x slower;
//  - grad_input of the NCHW depthwise 3x3 stride-2 layers (stride2_planes_transposed), rows
//    of whole aligned pairs of vectors (8x64x112x112 3.1-3.3 -> 2.4-2.6 ms);
//  - the channels-last depthwise 3x3 channel blocks (channels_correlate_3x3: forward, and
//    grad_input at stride 1; 8x128x56x56 forward 3.7-4.1 -> 3.2-3.4 ms, grad_input 3.8-4.3
//    -> 3.4-3.6, on a slower hour of the same machine), which also take MobileNet's
//    32-channel layer on AVX2 when it streams (8x32x112x112 forward 2.8-4.4 -> 2.2-2.9 ms
//    on a Zen 4 VM; streamed a vector at a time, as channels_correlate_9 writes, 2.2x slower).
// Elsewhere they did not pay: max pooling's backward zeroes its planes by memset, whose
// string stores already skip the read (summing each NCHW plane in a cached buffer and
// streaming it out measured level, 8x64x112x112 on a Zen 4 VM), and streaming max
// pooling's forward values and indices (rows of 56) measured 0.89-0.95x. The threshold: on
// the Zen 3 VM reads of 16 MiB ran at DRAM speed and of 4 MiB at 50 GB/s (a core's share of
// L3 lies between); smaller results keep ordinary stores, to stay in cache for the next
// operator.
//
// Baseline code, no target attribute: the AVX2 translation units include this before their
// `#pragma GCC target`. A task that streamed calls stream_fence() before it ends, so that
// its stores are visible to whichever thread reads the result next.
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>  // SSE2
#define CNNOPS_STREAM_STORES 1
#endif

namespace cnnops::cpu {

constexpr int64_t kStreamBytes = int64_t{8} << 20;

inline bool streams(int64_t bytes) {
#ifdef CNNOPS_STREAM_STORES
  return bytes >= kStreamBytes;
#else
  return false;
#endif
}

inline void stream_fence() {
#ifdef CNNOPS_STREAM_STORES
  _mm_sfence();
#endif
}

// dst[0, n) = src[0, n), the 16-byte aligned middle with non-temporal stores.
template <typename T>
void stream_copy(T* dst, const T* src, int64_t n) {
#ifdef CNNOPS_STREAM_STORES
  static_assert(16 % sizeof(T) == 0, "whole elements per 16-byte store");
  constexpr int64_t kPer = 16 / sizeof(T);
  int64_t i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % 16 != 0; ++i) dst[i] = src[i];
  for (; i + kPer <= n; i += kPer) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), v);
  }
  for (; i < n; ++i) dst[i] = src[i];
#else
  std::copy(src, src + n, dst);
#endif
}

// y[j] = c[j] + bias[j] (bias may be null), then ReLU if asked (NaN stays NaN, as in
// torch.relu), for j < n; with `stream`, the 16-byte aligned middle with non-temporal stores.
template <typename T>
void store_biased_run(const T* c, const T* bias, bool relu, T* y, int64_t n, bool stream) {
  auto value = [&](int64_t j) {
    const T v = c[j] + (bias ? bias[j] : T(0));
    return relu ? std::max(v, T(0)) : v;
  };
  int64_t j = 0;
#ifdef CNNOPS_STREAM_STORES
  if (stream) {
    for (; j < n && reinterpret_cast<uintptr_t>(y + j) % 16 != 0; ++j) y[j] = value(j);
    // MAXPS returns its second operand where either is NaN: NaN stays NaN.
    if constexpr (sizeof(T) == 4) {
      for (; j + 4 <= n; j += 4) {
        __m128 v = _mm_loadu_ps(c + j);
        if (bias) v = _mm_add_ps(v, _mm_loadu_ps(bias + j));
        if (relu) v = _mm_max_ps(_mm_setzero_ps(), v);
        _mm_stream_ps(y + j, v);
      }
    } else {
      for (; j + 2 <= n; j += 2) {
        __m128d v = _mm_loadu_pd(c + j);
        if (bias) v = _mm_add_pd(v, _mm_loadu_pd(bias + j));
        if (relu) v = _mm_max_pd(_mm_setzero_pd(), v);
        _mm_stream_pd(y + j, v);
      }
    }
  }
#endif
  for (; j < n; ++j) y[j] = value(j);
}

}  // namespace cnnops::cpu
