// The GEMM micro- and macro-kernel, written once over a vector-ISA traits type `V` and
// compiled twice: by gemm_avx2.cpp (V = 256-bit AVX2 vectors with FMA) and by
// gemm_portable.cpp (V = GCC/Clang generic vectors). See gemm.h for the packed layouts.
//
// This header includes nothing: the AVX2 translation unit compiles everything after its
// `#pragma GCC target` with AVX2 enabled, and must not pull in shared inline code.
#pragma once

namespace cnnops::cpu::detail {

// V provides: scalar, vec, width, zero(), load(p), broadcast(x), fma(a, b, acc) = a*b + acc,
// add(a, b), relu(v) = max(0, v) keeping NaN, store(p, v), store_first(p, v, count) of the
// first count lanes, load_first(p, count): the first count lanes, zeros in the others,
// reading nothing past them, load_last(p, count): the last count lanes, zeros in the others,
// where all of p[0] to p[width - 1] may be read (AVX2: a plain load and a mask, not the
// masked load, slow on Zen 1), sum(v) of the lanes, and in_register(v): v, which the compiler
// must then hold in a register rather than fold its load into each use, and keep(v, m): v
// where the width elements at m have every bit set, +0 where they are 0 (a bitwise AND).
// Loads and stores are unaligned.
//
// outer_products: acc = sum over k < K of the MR values a_row(k)[i], each broadcast, times
// the NV vectors b[k * b_stride ..]: the loop of micro_kernel (a_row(k) = a + k * MR, A
// packed), of direct_pixels (a_row(t) = x + tap_off[t], the input read in place) and of
// gathered_pixels (a_row(t)[i] = x[pixel_off[i] + tap_off[t]]). b_stride is NR = NV * width,
// or a wider panel's NR when only its first vector is summed (gemm_packed's narrow panel).
template <typename V, int MR, int NV, typename ARow, int b_stride = NV * V::width>
__attribute__((always_inline)) inline void outer_products(
    long K, ARow a_row, const typename V::scalar* __restrict b,
    typename V::vec (&acc)[MR][NV]) {
  constexpr int W = V::width;
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();
  }
  for (long k = 0; k < K; ++k) {
    const auto ak = a_row(k);
    typename V::vec bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = V::load(b + k * b_stride + v * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const typename V::vec ai = V::broadcast(ak[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fma(ai, bv[v], acc[i][v]);
    }
  }
}

template <typename V, int MR, int NV, int b_stride = NV * V::width>
inline void micro_kernel(long K, const typename V::scalar* __restrict a,
                         const typename V::scalar* __restrict b, typename V::scalar* c,
                         long rs_c, long cs_c, int m_valid, int n_valid) {
  using T = typename V::scalar;
  using vec = typename V::vec;
  constexpr int W = V::width;
  constexpr int NR = NV * W;

  vec acc[MR][NV];
  auto a_row = [a](long k) { return a + k * MR; };
  outer_products<V, MR, NV, decltype(a_row), b_stride>(K, a_row, b, acc);

  if (m_valid == MR && n_valid == NR && cs_c == 1) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        T* dst = c + i * rs_c + v * W;
        V::store(dst, V::add(V::load(dst), acc[i][v]));
      }
    }
    return;
  }
  // Edge tile or strided columns (channels_last output, C stored column-major): go through a
  // scalar copy, the inner loop along C's shorter stride. (Along the longer one, a column-major
  // C whose columns lie 2 KiB apart, grad_weight's dW^T, maps NR lines to 2 sets of L1, which
  // cannot hold them: every add missed, half the kernel's time on MobileNet's 512 -> 1024.)
  T tile[MR][NR];
  for (int i = 0; i < MR; ++i) {
    for (int v = 0; v < NV; ++v) V::store(&tile[i][v * W], acc[i][v]);
  }
  if (rs_c < cs_c) {
    for (int j = 0; j < n_valid; ++j) {
      for (int i = 0; i < m_valid; ++i) c[i * rs_c + j * cs_c] += tile[i][j];
    }
    return;
  }
  for (int i = 0; i < m_valid; ++i) {
    for (int j = 0; j < n_valid; ++j) c[i * rs_c + j * cs_c] += tile[i][j];
  }
}

// Walks C in MR x NR blocks: each B panel (K x NR) stays in L1 while all A panels pass by.
// A last panel with no more than one vector of valid columns is summed one vector wide
// (its first vector of each row): the columns past N are not computed at all.
template <typename V, int MR, int NV>
void gemm_packed(long M, long N, long K, const typename V::scalar* a,
                 const typename V::scalar* b, typename V::scalar* c, long rs_c, long cs_c) {
  constexpr int NR = NV * V::width;
  for (long j = 0; j < N; j += NR) {
    const int n_valid = static_cast<int>(N - j < NR ? N - j : NR);
    const typename V::scalar* b_panel = b + (j / NR) * K * NR;
    const bool narrow = NV > 1 && n_valid <= V::width;
    for (long i = 0; i < M; i += MR) {
      const int m_valid = static_cast<int>(M - i < MR ? M - i : MR);
      const typename V::scalar* a_panel = a + (i / MR) * K * MR;
      typename V::scalar* c_block = c + i * rs_c + j * cs_c;
      if (narrow) {
        micro_kernel<V, MR, 1, NR>(K, a_panel, b_panel, c_block, rs_c, cs_c, m_valid, n_valid);
      } else {
        micro_kernel<V, MR, NV>(K, a_panel, b_panel, c_block, rs_c, cs_c, m_valid, n_valid);
      }
    }
  }
}

}  // namespace cnnops::cpu::detail

namespace cnnops::cpu::detail {

constexpr long kPrefetchTaps = 6;  // direct_row: how far ahead a tap's input row is fetched

// The direct-convolution micro-kernel, for convolutions whose reduction is too short for
// packing to pay (a first layer: 1 to 3 input channels). For one output row of MR output
// channels it computes, NR columns at a time,
//   y[i * rs_y + q] = bias[i] + sum_t w[t * MR + i] * x[tap_off[t] + q]     (q < n)
// then ReLU if asked: the input is read in place, each load feeding MR FMAs. x is a
// zero-padded copy of the input, so a tap never needs a bounds check; loads may run up to
// NR - 1 elements past tap_off[t] + n (the caller's buffer allows it). Rows past m_valid
// are neither read (bias) nor written. Taps reach into rows of many planes, a pattern the
// hardware prefetcher does not follow: each tap also fetches the row of the tap
// kPrefetchTaps ahead into cache, and each block its output lines for writing.
template <typename V, int MR, int NV>
void direct_row(long taps, const long* tap_off, const typename V::scalar* x,
                const typename V::scalar* w, long n, typename V::scalar* y, long rs_y,
                int m_valid, const typename V::scalar* bias, bool relu) {
  using T = typename V::scalar;
  using vec = typename V::vec;
  constexpr int W = V::width;
  constexpr int NR = NV * W;
  for (long q = 0; q < n; q += NR) {
    // The block's output lines, fetched for writing while the taps are summed: a first
    // layer's output (SimpleCNN conv1: 6.4 MB) leaves the caches, and each store's line
    // would otherwise be read only when the store comes.
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      if (i >= m_valid) break;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) __builtin_prefetch(y + i * rs_y + q + v * W, 1);
    }
    vec acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const vec start = bias != nullptr && i < m_valid ? V::broadcast(bias[i]) : V::zero();
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = start;
    }
    for (long t = 0; t < taps; ++t) {
      const long ahead_tap = t + kPrefetchTaps < taps ? t + kPrefetchTaps : t;
      const T* ahead = x + tap_off[ahead_tap] + q;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) __builtin_prefetch(ahead + v * W);
      vec xv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) xv[v] = V::load(x + tap_off[t] + q + v * W);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const vec wi = V::broadcast(w[t * MR + i]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[i][v] = V::fma(wi, xv[v], acc[i][v]);
      }
    }
    if (relu) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[i][v] = V::relu(acc[i][v]);
      }
    }
    if (q + NR <= n) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        if (i >= m_valid) break;
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) V::store(y + i * rs_y + q + v * W, acc[i][v]);
      }
      continue;
    }
    // The row's last, partial block of columns. Loops over the accumulators run to
    // constant bounds, so that they stay in registers.
    const int left = static_cast<int>(n - q);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      if (i >= m_valid) break;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        const int count = left - v * W;
        if (count > 0) V::store_first(y + i * rs_y + q + v * W, acc[i][v], count < W ? count : W);
      }
    }
  }
}

// The planar direct micro-kernel, for direct_row's short reductions on planes whose rows
// leave direct_row's blocks partly idle (SimpleCNN's 28-wide conv1: 28 of 32 columns, and
// MR = 12 fills 32 output channels 32 of 36 rows). At stride 1 with input rows as wide as
// the output's, an output plane is one flat run of pixels i = p * Q + q, and tap t of pixel
// i reads x[tap_off[t] + i]: a fixed offset, whole vectors of consecutive pixels at a time,
// stored whole. A column tap that falls off either end of its row reads the next or the
// previous row's element there instead, which the tap's mask zeroes: tap t keeps lane i
// where masks[tap_mask[t] + i] has every bit set (0 where it must not; tap_mask[t] < 0: no
// mask, every column inside). For MR output channels (w[t * MR + i]) of n pixels:
//   y[i * rs_y + p] = bias[i] + sum_t w[t * MR + i] * keep_t(x[tap_off[t] + p])
// then ReLU if asked; rows past m_valid are not written. NV vectors at a time, the last
// ones one by one: x and masks are read up to V::width - 1 elements past each tap's n.
template <typename V, int MR, int NV>
__attribute__((always_inline)) inline void direct_plane_block(
    long taps, const long* tap_off, const long* tap_mask, const typename V::scalar* masks,
    const typename V::scalar* x, const typename V::scalar* w, typename V::scalar* y,
    long rs_y, int m_valid, const typename V::scalar* bias, bool relu, int left) {
  using vec = typename V::vec;
  constexpr int W = V::width;
  vec acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    const vec start = bias != nullptr && i < m_valid ? V::broadcast(bias[i]) : V::zero();
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = start;
  }
  for (long t = 0; t < taps; ++t) {
    vec xv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) xv[v] = V::load(x + tap_off[t] + v * W);
    if (tap_mask[t] >= 0) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) xv[v] = V::keep(xv[v], masks + tap_mask[t] + v * W);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const vec wi = V::broadcast(w[t * MR + i]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fma(wi, xv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    if (i >= m_valid) break;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const vec sum = relu ? V::relu(acc[i][v]) : acc[i][v];
      const int count = left - v * W;
      if (count >= W) {
        V::store(y + i * rs_y + v * W, sum);
      } else if (count > 0) {
        V::store_first(y + i * rs_y + v * W, sum, count);
      }
    }
  }
}

template <typename V, int MR, int NV>
void direct_plane(long taps, const long* tap_off, const long* tap_mask,
                  const typename V::scalar* masks, const typename V::scalar* x,
                  const typename V::scalar* w, long n, typename V::scalar* y, long rs_y,
                  int m_valid, const typename V::scalar* bias, bool relu) {
  constexpr int W = V::width, NR = NV * W;
  long q = 0;
  for (; q + NR <= n; q += NR) {
    direct_plane_block<V, MR, NV>(taps, tap_off, tap_mask, masks + q, x + q, w, y + q, rs_y,
                                  m_valid, bias, relu, NR);
  }
  for (; q < n; q += W) {
    const int left = static_cast<int>(n - q < W ? n - q : W);
    direct_plane_block<V, MR, 1>(taps, tap_off, tap_mask, masks + q, x + q, w, y + q, rs_y,
                                 m_valid, bias, relu, left);
  }
}

// The direct-convolution micro-kernel with micro_kernel's roles: MR consecutive pixels,
// each tap's inputs broadcast from the zero-padded input in place, times NR output channels
// loaded from W^T packed as one B panel (t-th group of NR values: the taps' weights):
//   c[i * ldc + j] = sum_t x[tap_off[t] + i] * b[t * NR + j]      (i < MR, j < NR)
// stored whole. For the flat sweep of small planes (conv2d.cpp), where the vector loads of
// direct_row would mostly straddle cache lines: here they are aligned rows of the panel.
// Stores a whole MR x NR tile of accumulators at c, rows ldc apart.
template <typename V, int MR, int NV>
__attribute__((always_inline)) inline void store_tile(const typename V::vec (&acc)[MR][NV],
                                                      typename V::scalar* c, long ldc) {
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) V::store(c + i * ldc + v * V::width, acc[i][v]);
  }
}

template <typename V, int MR, int NV>
void direct_pixels(long taps, const long* tap_off, const typename V::scalar* x,
                   const typename V::scalar* b, typename V::scalar* c, long ldc) {
  typename V::vec acc[MR][NV];
  outer_products<V, MR, NV>(taps, [x, tap_off](long t) { return x + tap_off[t]; }, b, acc);
  store_tile<V>(acc, c, ldc);
}

// The micro-kernel with micro_kernel's roles and A read in place, for R rows of Q pixels
// each (MR = Q * R), row r's pixels consecutive from x + row_off[r], each broadcast, times NR
// output channels of W^T packed as one B panel:
//   c[(r * Q + k) * ldc + j] = sum_t x[row_off[r] + k + tap_off[t]] * b[t * NR + j]
// stored whole. R pointers are held across the taps. Rows of Q = 1 pixel are any MR pixels
// (gathered_pixels); whole output rows (Q their length) compute no pixel that is not kept,
// where the flat sweep computes the columns between rows. whole_rows_products leaves the
// sums in acc (pixel r * Q + k's NV vectors of output channels) instead.
template <typename V, int Q, int R, int NV>
__attribute__((always_inline)) inline void whole_rows_products(
    long taps, const long* row_off, const long* tap_off, const typename V::scalar* x,
    const typename V::scalar* b, typename V::vec (&acc)[Q * R][NV]) {
  using T = typename V::scalar;
  struct TapOfRows {
    const T* const* row;
    long at;
    T operator[](int i) const { return row[i / Q][at + i % Q]; }
  };
  const T* row[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) row[r] = x + row_off[r];
  outer_products<V, Q * R, NV>(
      taps, [&row, tap_off](long t) { return TapOfRows{row, tap_off[t]}; }, b, acc);
}

template <typename V, int Q, int R, int NV>
void whole_rows(long taps, const long* row_off, const long* tap_off,
                const typename V::scalar* x, const typename V::scalar* b,
                typename V::scalar* c, long ldc) {
  typename V::vec acc[Q * R][NV];
  whole_rows_products<V, Q, R, NV>(taps, row_off, tap_off, x, b, acc);
  store_tile<V>(acc, c, ldc);
}

// The channels-last micro-kernel: MR pixels of x anywhere, pixel i's taps at x +
// pixel_off[i] + tap_off[t] (whole_rows of one pixel):
//   c[i * ldc + j] = sum_t x[pixel_off[i] + tap_off[t]] * b[t * NR + j]  (i < MR, j < NR)
// Packing A would cost as much as the product where the reduction is short or the output
// channels few: each packed value feeds only NR multiply-adds per panel.
template <typename V, int MR, int NV>
void gathered_pixels(long taps, const long* pixel_off, const long* tap_off,
                     const typename V::scalar* x, const typename V::scalar* b,
                     typename V::scalar* c, long ldc) {
  whole_rows<V, 1, MR, NV>(taps, pixel_off, tap_off, x, b, c, ldc);
}

// The weight-gradient micro-kernel of the flat direct convolution (conv2d.cpp), with the
// GEMM's roles: MT taps of the input, each broadcast from the zero-padded input in place,
// times NR output channels of dY pixel-major (dy[i * dy_pixel + j]: channel j at flat pixel
// i; a panel packed NR wide, or a channels-last dY read in place). Over `images` images (x
// and dy advancing by x_image and dy_image) and flat pixels i < n, the first row_len of each
// row of row_pitch (the flat sweep's rows hold columns past the output's, whose dY is zero:
// skipped, not multiplied by zero), it adds
//   sums[m * ld + j] += sum x[tap_off[m] + i] * dy[i * dy_pixel + j]      (m < t_valid, j < NR)
// Every sum stays in one lane of an accumulator: no reduction across lanes.
template <typename V, int MT, int NV>
void direct_grad_weight_pixels(long images, long n, long row_len, long row_pitch,
                               const typename V::scalar* x,
                               const long* tap_off, long x_image, int t_valid,
                               const typename V::scalar* dy, long dy_image, long dy_pixel,
                               typename V::scalar* sums, long ld) {
  using T = typename V::scalar;
  using vec = typename V::vec;
  constexpr int W = V::width;
  vec acc[MT][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MT; ++m) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[m][v] = V::zero();
  }
  for (long image = 0; image < images; ++image) {
    // Taps past t_valid repeat the first: their sums are not stored.
    const T* xt[MT];
#pragma GCC unroll 16
    for (int m = 0; m < MT; ++m) xt[m] = x + image * x_image + tap_off[m < t_valid ? m : 0];
    const T* d = dy + image * dy_image;
    for (long r0 = 0; r0 < n; r0 += row_pitch) {
      const long r1 = r0 + row_len < n ? r0 + row_len : n;
      for (long i = r0; i < r1; ++i) {
        vec dv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) dv[v] = V::load(d + i * dy_pixel + v * W);
#pragma GCC unroll 16
        for (int m = 0; m < MT; ++m) {
          const vec a = V::broadcast(xt[m][i]);
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[m][v] = V::fma(a, dv[v], acc[m][v]);
        }
      }
    }
  }
#pragma GCC unroll 16
  for (int m = 0; m < MT; ++m) {
    if (m >= t_valid) break;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      T* s = sums + m * ld + v * W;
      V::store(s, V::add(V::load(s), acc[m][v]));
    }
  }
}

// The direct weight-gradient micro-kernel, for the same short reductions as direct_row.
// For KB output channels and TB taps it adds, over `rows` rows of n columns,
//   sums[i * ld + t] += sum_{j, q} dy[dy_off[i] + j * dy_row + q] * x[tap_off[t] + j * x_row + q]
// for i < k_valid and t < t_valid. Each of the KB x TB sums lives in the lanes of one
// accumulator until the end of the call, so a load of dY feeds TB FMAs and a load of x
// feeds KB. x is zero-padded: every tap reads within its row. The row's last, partial block
// of columns is read as the last vector of the row with the columns summed already masked
// off (a row of a vector or more), else with masked loads; neither reads past the row's end,
// nor lets a NaN from outside the block into the sums. The order of the additions depends
// only on the arguments.
template <typename V, int KB, int TB>
void direct_grad_weight(long rows, long n, const typename V::scalar* dy, const long* dy_off,
                        long dy_row, int k_valid, const typename V::scalar* x,
                        const long* tap_off, long x_row, int t_valid,
                        typename V::scalar* sums, long ld) {
  using T = typename V::scalar;
  using vec = typename V::vec;
  constexpr int W = V::width;
  // Channels and taps past the valid ones repeat the first: their sums are not stored.
  long d_off[KB], t_off[TB];
  for (int i = 0; i < KB; ++i) d_off[i] = dy_off[i < k_valid ? i : 0];
  for (int t = 0; t < TB; ++t) t_off[t] = tap_off[t < t_valid ? t : 0];

  vec acc[KB][TB];
#pragma GCC unroll 4
  for (int i = 0; i < KB; ++i) {
#pragma GCC unroll 16
    for (int t = 0; t < TB; ++t) acc[i][t] = V::zero();
  }
  const long full = n / W * W;
  const int tail = static_cast<int>(n - full);
  for (long j = 0; j < rows; ++j) {
    const T* dy_j = dy + j * dy_row;
    const T* x_j = x + j * x_row;
    for (long q = 0; q < full; q += W) {
      vec d[KB];
#pragma GCC unroll 4
      for (int i = 0; i < KB; ++i) d[i] = V::load(dy_j + d_off[i] + q);
#pragma GCC unroll 16
      for (int t = 0; t < TB; ++t) {
        const vec xv = V::in_register(V::load(x_j + t_off[t] + q));
#pragma GCC unroll 4
        for (int i = 0; i < KB; ++i) acc[i][t] = V::fma(d[i], xv, acc[i][t]);
      }
    }
    if (tail > 0 && full > 0) {
      vec d[KB];
#pragma GCC unroll 4
      for (int i = 0; i < KB; ++i) d[i] = V::load_last(dy_j + d_off[i] + n - W, tail);
#pragma GCC unroll 16
      for (int t = 0; t < TB; ++t) {
        const vec xv = V::load_last(x_j + t_off[t] + n - W, tail);
#pragma GCC unroll 4
        for (int i = 0; i < KB; ++i) acc[i][t] = V::fma(d[i], xv, acc[i][t]);
      }
    } else if (tail > 0) {
      vec d[KB];
#pragma GCC unroll 4
      for (int i = 0; i < KB; ++i) d[i] = V::load_first(dy_j + d_off[i] + full, tail);
#pragma GCC unroll 16
      for (int t = 0; t < TB; ++t) {
        const vec xv = V::load_first(x_j + t_off[t] + full, tail);
#pragma GCC unroll 4
        for (int i = 0; i < KB; ++i) acc[i][t] = V::fma(d[i], xv, acc[i][t]);
      }
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < KB; ++i) {
#pragma GCC unroll 16
    for (int t = 0; t < TB; ++t) {
      if (i < k_valid && t < t_valid) sums[i * ld + t] += V::sum(acc[i][t]);
    }
  }
}

}  // namespace cnnops::cpu::detail
