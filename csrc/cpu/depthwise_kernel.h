// The loops every fast CPU depthwise kernel reduces to, written once over a vector ISA
// traits type `V` and compiled three times: by depthwise_avx512.cpp, depthwise_avx2.cpp and
// depthwise_portable.cpp (see depthwise.h for what each entry point computes).
//
//   taps_correlate     out[i]  = init + sum_t w[t] * src[t][i]
//   taps_correlate_rows, grid_plane_rows: the same sum into rows of a plane, the second
//                      (3x3, stride 1) read in place from the input's rows; 3x3 taps on a
//                      grid of rows run the grid kernel (each input vector loaded once for
//                      the three output rows that read it), those of several planes summed
//                      into one output too (grad_input with a channel multiplier)
//   padded_plane_rows  the 3x3 grid sum over a zero-padded plane copy, stored or added to
//                      the output (grad_input with a channel multiplier, plane by plane)
//   taps_dot           acc[t] += sum_i g[i] * src[t][i]   (kept as per-lane partial sums);
//                      grid_plane_dot, grid_plane_dot2: 3x3 in place, one or two planes
//   deinterleave_rows  a plane's rows into k column phases (stride k), interleave_rows back;
//                      copy_rows a plain copy that may also sum what it copies
//   channels_correlate, channels_dot: the same two sums for channels-last tensors, vectors
//                      along the channels
//   small_planes_correlate, small_planes_transposed, small_planes_dot: the forward sum,
//                      grad_input and the weight gradient's dot products for NCHW planes
//                      whose rows fit in one vector (AVX2: or two, Doubled), straight from
//                      the tensors (no strips)
//
// A "tap" is one (channel, r, s) term of the convolution; src[t] points at the element the
// tap multiplies for i = 0 (depthwise.cpp lays planes out so that i advances one element).
// The 1-D loops run over whole vectors: callers size buffers for round_up(n, kDwBlock).
//
// V provides what gemm_kernel.h's traits do (scalar, vec, width, zero, load, broadcast, fma,
// add, store) plus load_n / store_n (the first n < width lanes; the rest read as zero and
// are not written), relu (max(v, 0) lane by lane, NaN kept, as std::max(v, 0)), where
// kShuffles deinterleave2 / interleave2 (two vectors to their even and odd lanes, and back),
// and for the small-plane kernel:
//   Lanes lanes(lo, hi)        the lanes [lo, hi), 0 <= lo <= hi <= width
//   load_lanes(p, m)           lane l = p[l] for the lanes in m, zero elsewhere (not read)
//   load_lanes_within(p, m)    the same where p[0] to p[width - 1] may all be read (AVX2: a
//                              plain load and a mask, not VMASKMOVPS)
//   Pick pick(index)           lane l = element index[l] of the 2 * width elements of two
//                              vectors a, b (index has width entries below 2 * width);
//                              zero where index[l] < 0
//   picked(a, b, pick)         apply it
//
// This header includes nothing but the small-plane geometry (a plain struct): the ISA
// translation units compile everything after their `#pragma GCC target` for that ISA, and
// must not pull in shared inline code.
#pragma once

#include "cpu/depthwise_small.h"

namespace cnnops::cpu::detail {

// Lanes of a partial-sum slot of taps_dot: the widest vector (AVX-512 floats).
constexpr int kDotLanes = 16;

// Two vectors of V acting as one of twice the width, for the small-plane kernels at stride_w 1
// (no Pick): rows of up to 2 * V::width elements (MobileNet's 14x14 planes on AVX2, whose
// rows an AVX-512 vector holds whole).
template <typename V>
struct Doubled {
  using scalar = typename V::scalar;
  using half = typename V::vec;
  static constexpr int width = 2 * V::width;
  static constexpr int W = V::width;
  struct vec {
    half lo, hi;
  };
  static vec zero() { return {V::zero(), V::zero()}; }
  static vec load(const scalar* p) { return {V::load(p), V::load(p + W)}; }
  static vec broadcast(scalar x) {
    const half v = V::broadcast(x);
    return {v, v};
  }
  static vec fma(vec a, vec b, vec acc) {
    return {V::fma(a.lo, b.lo, acc.lo), V::fma(a.hi, b.hi, acc.hi)};
  }
  static vec add(vec a, vec b) { return {V::add(a.lo, b.lo), V::add(a.hi, b.hi)}; }
  static vec relu(vec v) { return {V::relu(v.lo), V::relu(v.hi)}; }
  static void store(scalar* p, vec v) {
    V::store(p, v.lo);
    V::store(p + W, v.hi);
  }
  static vec load_n(const scalar* p, long n) {
    if (n <= W) return {V::load_n(p, n), V::zero()};
    return {V::load(p), V::load_n(p + W, n - W)};
  }
  static void store_n(scalar* p, vec v, long n) {
    if (n <= W) return V::store_n(p, v.lo, n);
    V::store(p, v.lo);
    V::store_n(p + W, v.hi, n - W);
  }
  static long clamp(long n) { return n < 0 ? 0 : n > W ? W : n; }
  struct Lanes {
    typename V::Lanes lo, hi;
  };
  static Lanes lanes(long lo, long hi) {
    return {V::lanes(clamp(lo), clamp(hi)), V::lanes(clamp(lo - W), clamp(hi - W))};
  }
  static vec load_lanes(const scalar* p, const Lanes& m) {
    return {V::load_lanes(p, m.lo), V::load_lanes(p + W, m.hi)};
  }
  static vec load_lanes_within(const scalar* p, const Lanes& m) {
    return {V::load_lanes_within(p, m.lo), V::load_lanes_within(p + W, m.hi)};
  }
};

// Whether V is a Doubled pair (a trait, not a requires-expression: torch before 2.10 builds
// its extensions as C++17).
template <typename V>
constexpr bool kIsDoubled = false;
template <typename V>
constexpr bool kIsDoubled<Doubled<V>> = true;

// The weight gradient's per-tap sums of the small-plane kernel: one vector of V each; for
// Doubled<V>, one vector of V taking both halves' products (a 3x3 kernel's 9 sums as 18
// vectors would not fit AVX2's 16 registers).
template <typename V>
struct DotSums {
  using vec = typename V::vec;
  static vec load(const typename V::scalar* p) { return V::load(p); }
  static void store(typename V::scalar* p, vec v) { V::store(p, v); }
  static vec fma(typename V::vec a, typename V::vec b, vec acc) { return V::fma(a, b, acc); }
};

template <typename V>
struct DotSums<Doubled<V>> {
  using vec = typename V::vec;
  static vec load(const typename V::scalar* p) { return V::load(p); }
  static void store(typename V::scalar* p, vec v) { V::store(p, v); }
  static vec fma(typename Doubled<V>::vec a, typename Doubled<V>::vec b, vec acc) {
    return V::fma(a.hi, b.hi, V::fma(a.lo, b.lo, acc));
  }
};

// A kernel shape as a type: KR x KS taps (0: known at run time), stride_w 1 or not.
template <int KR, int KS, bool kStride1>
struct KernelShape {
  static constexpr int kR = KR, kS = KS;
  static constexpr bool kUnitStride = kStride1;
};

// NT > 0: the tap count, known at compile time (9 for 3x3, 25 for 5x5), fully unrolled;
// NT == 0: `ntaps` at run time. Four vectors per step hide the FMA latency.
template <typename V, int NT>
inline void taps_correlate(long n, int ntaps, const typename V::scalar* const* __restrict src,
                           const typename V::scalar* __restrict w, typename V::scalar init,
                           typename V::scalar* __restrict out) {
  using vec = typename V::vec;
  constexpr int W = V::width;
  const int nt = NT > 0 ? NT : ntaps;
  const vec start = V::broadcast(init);
  long i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    vec a0 = start, a1 = start, a2 = start, a3 = start;
#pragma GCC unroll 25
    for (int t = 0; t < nt; ++t) {
      const typename V::scalar* s = src[t] + i;
      const vec wt = V::broadcast(w[t]);
      a0 = V::fma(wt, V::load(s), a0);
      a1 = V::fma(wt, V::load(s + W), a1);
      a2 = V::fma(wt, V::load(s + 2 * W), a2);
      a3 = V::fma(wt, V::load(s + 3 * W), a3);
    }
    V::store(out + i, a0);
    V::store(out + i + W, a1);
    V::store(out + i + 2 * W, a2);
    V::store(out + i + 3 * W, a3);
  }
  for (; i < n; i += W) {  // the last 1-3 vectors, the final one partly past n
    vec a0 = start;
#pragma GCC unroll 25
    for (int t = 0; t < nt; ++t) a0 = V::fma(V::broadcast(w[t]), V::load(src[t] + i), a0);
    V::store(out + i, a0);
  }
}

// The same sum written straight into rows of a strided plane: for r < rows, q < cols,
//   out[r * out_pitch + q] = init + sum_t w[t] * src[t][r * src_pitch + q].
// Row by row in vectors of W columns, the last one masked; four vectors (of one row or of
// consecutive rows, whatever comes next) at a time to hide the FMA latency. Reads past
// `cols` in a row stay within round_up(cols, W) of it.
template <typename V, int NT>
inline void taps_correlate_rows(long rows, long cols, int ntaps,
                                const typename V::scalar* const* __restrict src, long src_pitch,
                                const typename V::scalar* __restrict w, typename V::scalar init,
                                typename V::scalar* __restrict out, long out_pitch) {
  using vec = typename V::vec;
  constexpr int W = V::width;
  const int nt = NT > 0 ? NT : ntaps;
  const vec start = V::broadcast(init);
  long r = 0, q = 0;  // the next vector to compute: row r, columns [q, q + W)
  while (r < rows) {
    long in[4] = {}, dst[4] = {}, count[4] = {};
    int jobs = 0;
    for (; jobs < 4 && r < rows; ++jobs) {
      in[jobs] = r * src_pitch + q;
      dst[jobs] = r * out_pitch + q;
      count[jobs] = cols - q < W ? cols - q : W;
      q += W;
      if (q >= cols) {
        q = 0;
        ++r;
      }
    }
    vec a0 = start, a1 = start, a2 = start, a3 = start;
#pragma GCC unroll 25
    for (int t = 0; t < nt; ++t) {
      const typename V::scalar* s = src[t];
      const vec wt = V::broadcast(w[t]);
      a0 = V::fma(wt, V::load(s + in[0]), a0);
      if (jobs > 1) a1 = V::fma(wt, V::load(s + in[1]), a1);
      if (jobs > 2) a2 = V::fma(wt, V::load(s + in[2]), a2);
      if (jobs > 3) a3 = V::fma(wt, V::load(s + in[3]), a3);
    }
    const vec acc[4] = {a0, a1, a2, a3};
    for (int j = 0; j < jobs; ++j) {
      if (count[j] == W) {
        V::store(out + dst[j], acc[j]);
      } else {
        V::store_n(out + dst[j], acc[j], count[j]);
      }
    }
  }
}

// taps_correlate_rows for taps on a grid: tap (r, s) of an R x S kernel reads kStep * r rows
// past tap (0, s), src[r * S + s] == src[s] + kStep * r * src_pitch (the forward strips at
// stride_h 1 and dilation_h 1: kStep 1; grad_input's grad_output buffer: -1). Input row u
// then serves the output rows u - kStep * r, so K output rows load S * (K + R - 1) vectors
// instead of R * S * K: 4.2 loads per output vector for 3x3 at K = 5 rather than 9, the
// weights broadcast once per call. Each output still adds its taps in t order (u runs so
// that r rises), so results are bitwise those of taps_correlate_rows.
template <int R, int S, typename T>
inline int grid_step(const T* const* src, long src_pitch) {
  for (int step = 1; step >= -1; step -= 2) {
    bool grid = true;
    for (int r = 1; r < R; ++r) {
      for (int s = 0; s < S; ++s) grid = grid && src[r * S + s] == src[s] + step * r * src_pitch;
    }
    if (grid) return step;
  }
  return 0;
}

// What the grid kernel's row blocks share: tap row 0 of each column s, the weights as
// vectors, the initial value, the output; for reading planes in place (grid_plane_rows), the
// lanes of the first and last vector of a row that lie inside it, relu, and whether to
// write the output with non-temporal stores (every output vector then aligned).
template <typename V, int R, int S>
struct GridRows {
  using Vec = V;
  using scalar = typename V::scalar;
  using vec = typename V::vec;
  const scalar* top[S];
  long src_pitch;
  vec w[R * S];
  vec start;
  scalar* out;
  long out_pitch;
  typename V::Lanes left, right;
  bool relu;
  bool stream = false;

  GridRows(const scalar* const* src, long src_pitch_, const scalar* taps, scalar init,
           scalar* out_, long out_pitch_, bool relu_ = false)
      : src_pitch(src_pitch_), start(V::broadcast(init)), out(out_), out_pitch(out_pitch_),
        left(V::lanes(1, V::width)), right(V::lanes(0, V::width - 1)), relu(relu_) {
    for (int s = 0; s < S; ++s) top[s] = src[s];
    for (int t = 0; t < R * S; ++t) w[t] = V::broadcast(taps[t]);
  }
};

// Edges of a row the grid kernel masks (grid_plane_rows): column tap 0's lane 0 in the row's
// first vector, column tap S - 1's last lane in its last vector.
enum GridEdge { kNoEdge = 0, kLeftEdge = 1, kRightEdge = 2 };

// Whether p may take an aligned vector store (stream_or_store's).
template <typename V>
inline bool vector_aligned(const typename V::scalar* p) {
  return reinterpret_cast<__UINTPTR_TYPE__>(p) % sizeof(typename V::vec) == 0;
}

// A non-temporal store of an aligned vector where V has one (V::stream: the x86 builds), a
// plain store elsewhere.
template <typename V>
inline auto stream_or_store(typename V::scalar* p, typename V::vec v, int)
    -> decltype(V::stream(p, v)) {
  V::stream(p, v);
}
template <typename V>
inline void stream_or_store(typename V::scalar* p, typename V::vec v, long) {
  V::store(p, v);
}

// K output rows of one vector: element `in` of tap row 0, element `dst` of the output.
template <int K, int kStep, int kEdges, typename V, int R, int S>
inline void grid_rows_vector(const GridRows<V, R, S>& g, long in, long dst) {
  using vec = typename V::vec;
  vec acc[K];
#pragma GCC unroll 8
  for (int k = 0; k < K; ++k) acc[k] = g.start;
  // input row u (relative to output row 0) feeds output rows k = u - kStep * r
  constexpr int kFirst = kStep > 0 ? 0 : K - 1, kCount = K + R - 1;
#pragma GCC unroll 16
  for (int j = 0; j < kCount; ++j) {
    const int u = kFirst + kStep * j;
#pragma GCC unroll 8
    for (int s = 0; s < S; ++s) {
      const typename V::scalar* p = g.top[s] + in + u * g.src_pitch;
      vec x;
      if ((kEdges & kLeftEdge) && s == 0) {
        x = V::load_lanes_within(p, g.left);
      } else if ((kEdges & kRightEdge) && s == S - 1) {
        x = V::load_lanes_within(p, g.right);
      } else {
        x = V::load(p);
      }
#if defined(__AVX__)
      // an empty asm pins x in a register: GCC would otherwise fold the load into each FMA
      // that takes it, three loads instead of one (Zen 1: 1.2x the kernel's CPU time)
      asm("" : "+v"(x));
#endif
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const int k = u - kStep * r;
        if (k >= 0 && k < K) acc[k] = V::fma(g.w[r * S + s], x, acc[k]);
      }
    }
  }
#pragma GCC unroll 8
  for (int k = 0; k < K; ++k) {
    const vec y = g.relu ? V::relu(acc[k]) : acc[k];
    if (g.stream) {
      stream_or_store<V>(g.out + dst + k * g.out_pitch, y, 0);
    } else {
      V::store(g.out + dst + k * g.out_pitch, y);
    }
  }
}

// K output rows from row r0, all columns: whole vectors, the last one moved back to end at
// `cols` (its overlap with the one before is written twice, with the same values). kEdges:
// mask the row's edges (grid_plane_rows). Grid: GridRows or GridPlanes.
template <int K, int kStep, bool kEdges, typename Grid>
inline void grid_rows_block(const Grid& g, long r0, long cols) {
  constexpr int W = Grid::Vec::width;
  const long in = r0 * g.src_pitch, dst = r0 * g.out_pitch;
  if constexpr (kEdges) {
    if (cols == W) {
      return grid_rows_vector<K, kStep, kLeftEdge | kRightEdge>(g, in, dst);
    }
    grid_rows_vector<K, kStep, kLeftEdge>(g, in, dst);
    for (long q = W; q < cols - W; q += W) {
      grid_rows_vector<K, kStep, kNoEdge>(g, in + q, dst + q);
    }
    grid_rows_vector<K, kStep, kRightEdge>(g, in + cols - W, dst + cols - W);
    return;
  }
  for (long q = 0;; q += W) {
    if (q > cols - W) q = cols - W;
    grid_rows_vector<K, kStep, kNoEdge>(g, in + q, dst + q);
    if (q == cols - W) return;
  }
}

// Output rows [0, rows), cols >= V::width: five rows at a time (4 and 6 measured alike on
// Zen 1), the rest one block of 1-4 rows.
template <int kStep, bool kEdges, typename Grid>
inline void grid_rows(const Grid& g, long rows, long cols) {
  long r = 0;
  for (; r + 5 <= rows; r += 5) grid_rows_block<5, kStep, kEdges>(g, r, cols);
  if (rows - r == 4) grid_rows_block<4, kStep, kEdges>(g, r, cols);
  if (rows - r == 3) grid_rows_block<3, kStep, kEdges>(g, r, cols);
  if (rows - r == 2) grid_rows_block<2, kStep, kEdges>(g, r, cols);
  if (rows - r == 1) grid_rows_block<1, kStep, kEdges>(g, r, cols);
}

// taps_correlate_rows on a grid (grid_step(src, src_pitch) == kStep), cols >= V::width.
template <typename V, int R, int S, int kStep>
inline void grid_correlate_rows(long rows, long cols, const typename V::scalar* const* src,
                                long src_pitch, const typename V::scalar* w,
                                typename V::scalar init, typename V::scalar* out,
                                long out_pitch) {
  grid_rows<kStep, false>(GridRows<V, R, S>(src, src_pitch, w, init, out, out_pitch), rows,
                          cols);
}

// Several planes' taps summed into one output (grad_input of a depthwise layer with a
// channel multiplier: SimpleCNN conv1's 32 grad_output planes into one input plane), plane
// m's taps at src[m * R * S], each plane's on the same grid with the same column offsets
// (grid_planes_step). Every output vector adds the planes one after the other, each
// plane's taps in t order: bitwise the sums of taps_correlate_rows. A plane's R * S
// weights are broadcast once per block of K output rows.
template <typename V, int R, int S>
struct GridPlanes {
  using Vec = V;
  using scalar = typename V::scalar;
  using vec = typename V::vec;
  const scalar* const* src;
  long col[S];  // column tap s's offset from tap (0, 0), the same in every plane
  int planes;
  long src_pitch;
  const scalar* w;
  vec start;
  scalar* out;
  long out_pitch;

  GridPlanes(const scalar* const* src_, int ntaps, long src_pitch_, const scalar* w_,
             scalar init, scalar* out_, long out_pitch_)
      : src(src_), planes(ntaps / (R * S)), src_pitch(src_pitch_), w(w_),
        start(V::broadcast(init)), out(out_), out_pitch(out_pitch_) {
    for (int s = 0; s < S; ++s) col[s] = src[s] - src[0];
  }
};

// grid_step of every plane of `ntaps` taps (a multiple of R * S), where all planes' taps
// lie alike about their tap (0, 0); else 0.
template <int R, int S, typename T>
inline int grid_planes_step(const T* const* src, int ntaps, long src_pitch) {
  if (ntaps % (R * S) != 0) return 0;
  for (int m = R * S; m < ntaps; m += R * S) {
    for (int t = 1; t < R * S; ++t) {
      if (src[m + t] - src[m] != src[t] - src[0]) return 0;
    }
  }
  return grid_step<R, S>(src, src_pitch);
}

template <int K, int kStep, int kEdges, typename V, int R, int S>
inline void grid_rows_vector(const GridPlanes<V, R, S>& g, long in, long dst) {
  static_assert(kEdges == kNoEdge, "GridPlanes reads buffers, not planes in place");
  using vec = typename V::vec;
  vec acc[K];
#pragma GCC unroll 8
  for (int k = 0; k < K; ++k) acc[k] = g.start;
  constexpr int kFirst = kStep > 0 ? 0 : K - 1, kCount = K + R - 1;
  const long pitch = kStep * g.src_pitch;
  for (int m = 0; m < g.planes; ++m) {
    // input row u = kFirst + kStep * j at p, walked one row at a time: GCC otherwise keeps
    // an offset per (row, column tap), more than the registers hold
    const typename V::scalar* p = g.src[m * R * S] + in + kFirst * g.src_pitch;
    vec w[R * S];
#pragma GCC unroll 25
    for (int t = 0; t < R * S; ++t) w[t] = V::broadcast(g.w[m * R * S + t]);
#pragma GCC unroll 16
    for (int j = 0; j < kCount; ++j, p += pitch) {
      const int u = kFirst + kStep * j;
#if defined(__AVX__)
      asm("" : "+r"(p));
#endif
#pragma GCC unroll 8
      for (int s = 0; s < S; ++s) {
        vec x = V::load(p + g.col[s]);
#if defined(__AVX__)
        asm("" : "+v"(x));  // one load for the R FMAs that take it (see grid_rows_vector)
#endif
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const int k = u - kStep * r;
          if (k >= 0 && k < K) acc[k] = V::fma(w[r * S + s], x, acc[k]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int k = 0; k < K; ++k) V::store(g.out + dst + k * g.out_pitch, acc[k]);
}

// taps_correlate_rows over planes on a grid (grid_planes_step == kStep), cols >= V::width.
template <typename V, int R, int S, int kStep>
inline void grid_planes_correlate_rows(long rows, long cols, int ntaps,
                                       const typename V::scalar* const* src, long src_pitch,
                                       const typename V::scalar* w, typename V::scalar init,
                                       typename V::scalar* out, long out_pitch) {
  grid_rows<kStep, false>(GridPlanes<V, R, S>(src, ntaps, src_pitch, w, init, out, out_pitch),
                          rows, cols);
}

// A 3x3 correlation at stride 1 and dilation 1 read in place from rows of a plane, with one
// column of zero padding each side: for i < rows, q < cols (cols >= V::width),
//   out[i * out_pitch + q] = init + sum_{r, s} w[r * 3 + s] * x[(i + r) * x_pitch + q + s - 1]
// (ReLU'd if relu), where columns -1 and cols read as zero. Those two elements of every row
// are loaded (and masked): the caller keeps them inside the tensor. `stream`: non-temporal
// stores where every output vector is aligned (whole vectors per row, aligned rows); a row
// ending in a vector moved back over the one before would write its lines twice.
template <typename V>
inline void grid_plane_rows(long rows, long cols, const typename V::scalar* x, long x_pitch,
                            const typename V::scalar* w, typename V::scalar init, bool relu,
                            typename V::scalar* out, long out_pitch, bool stream) {
  const typename V::scalar* top[3] = {x - 1, x, x + 1};
  GridRows<V, 3, 3> g(top, x_pitch, w, init, out, out_pitch, relu);
  g.stream = stream && cols % V::width == 0 && out_pitch % V::width == 0 &&
             vector_aligned<V>(out);
  grid_rows<1, true>(g, rows, cols);
}

// The weight gradient of grid_plane_rows' correlation (3x3, stride 1, dilation 1, one row
// and one column of zero padding all round, as many output as input rows and columns), read
// in place from the rows of one input plane x and one grad_output plane gy:
//   acc[(r * 3 + s) * kDotLanes + lane] += the lane's share of
//       sum over i < rows, q < cols of gy[i * gy_pitch + q] * x[(i + r - 1) * x_pitch + q + s - 1]
// with x's rows -1 and `rows` and columns -1 and `cols` reading as zero; cols >= V::width.
// Blocks of K output rows: each x vector is loaded once for the (up to) three output rows
// that read it, and the nine sums stay in registers for the whole plane. A row's first and
// last vector mask x's lanes outside the row (and, for the last one moved back to end at
// `cols`, the lanes the vector before already took), so that no value from outside the plane
// reaches a sum, NaN included (gy's lanes are all inside it); those loads read x from column
// -1 to column `cols` of each row: the caller makes sure that lies inside memory it may read.
template <typename V, int NP>
struct GridDot {
  using scalar = typename V::scalar;
  const scalar* x;
  long x_pitch;
  const scalar* gy[NP];  // NP grad_output planes against the same input plane
  long gy_pitch;
  long rows;
};

// Lanes of x that enter the sums at one column vector, for column taps s = 0, 1, 2.
template <typename V>
struct DotLanes {
  typename V::Lanes x[3];
};

// Rows [p0, p0 + K) at column q: plane i's output row k into sum set acc[i][k % kSets].
// kMasked: apply `m`; otherwise every lane counts.
template <int K, bool kMasked, typename V, int NP, int kSets>
inline void grid_dot_vector(const GridDot<V, NP>& g, long p0, long q, const DotLanes<V>& m,
                            typename V::vec (&acc)[NP][kSets][9]) {
  using vec = typename V::vec;
  vec d[NP][K];
#pragma GCC unroll 2
  for (int i = 0; i < NP; ++i) {
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) d[i][k] = V::load(g.gy[i] + (p0 + k) * g.gy_pitch + q);
  }
  // input row u = p0 - 1 + j feeds output rows k = j - r, through tap row r
#pragma GCC unroll 8
  for (int j = 0; j < K + 2; ++j) {
    const long u = p0 - 1 + j;
    if (u < 0 || u >= g.rows) continue;  // the padding rows
#pragma GCC unroll 3
    for (int s = 0; s < 3; ++s) {
      const typename V::scalar* p = g.x + u * g.x_pitch + q + s - 1;
      vec xv = kMasked ? V::load_lanes_within(p, m.x[s]) : V::load(p);
#if defined(__AVX__)
      asm("" : "+v"(xv));  // one load for the FMAs that take it (see grid_rows_vector)
#endif
#pragma GCC unroll 3
      for (int r = 0; r < 3; ++r) {
        const int k = j - r;
        if (k < 0 || k >= K) continue;
#pragma GCC unroll 2
        for (int i = 0; i < NP; ++i) {
          vec& a = acc[i][k % kSets][r * 3 + s];
          a = V::fma(d[i][k], xv, a);
        }
      }
    }
  }
}

// Output rows [p0, p0 + K), all columns.
template <int K, typename V, int NP, int kSets>
inline void grid_dot_block(const GridDot<V, NP>& g, long p0, long cols,
                           const DotLanes<V>& first, const DotLanes<V>& last,
                           typename V::vec (&acc)[NP][kSets][9]) {
  constexpr int W = V::width;
  grid_dot_vector<K, true>(g, p0, 0, first, acc);
  for (long q = W; q + W < cols; q += W) grid_dot_vector<K, false>(g, p0, q, first, acc);
  if (cols > W) grid_dot_vector<K, true>(g, p0, cols - W, last, acc);
}

// grid_plane_dot of NP grad_output planes (gy[i], acc[i]) against one input plane, which each
// x load then serves. One plane: two sets of the nine sums where 32 registers hold them (even
// and odd output rows, added at the end), whose chains of dependent FMAs, a block's rows one
// after the other, bounded the kernel; two planes (their 18 sums in 32 registers): one set.
template <typename V, int NP>
inline void grid_planes_dot(long rows, long cols, const typename V::scalar* x, long x_pitch,
                            const typename V::scalar* const* gy, long gy_pitch,
                            typename V::scalar* const* acc) {
  using vec = typename V::vec;
  constexpr int W = V::width;
  constexpr int kSets = NP == 1 && sizeof(vec) >= 64 ? 2 : 1;
  GridDot<V, NP> g{x, x_pitch, {}, gy_pitch, rows};
  for (int i = 0; i < NP; ++i) g.gy[i] = gy[i];
  // The first vector: x's lane 0 is column -1 for s = 0, its last lane column W for s = 2
  // when the row is one vector. The last (moved back to cols - W): its lanes below `counted`
  // were counted by the vector before; x's last lane is column `cols` for s = 2.
  const long counted = W - (cols - (cols - 1) / W * W);
  DotLanes<V> first, last;
  first.x[0] = V::lanes(1, W);
  first.x[1] = V::lanes(0, W);
  first.x[2] = V::lanes(0, cols == W ? W - 1 : W);
  last.x[0] = V::lanes(counted, W);
  last.x[1] = V::lanes(counted, W);
  last.x[2] = V::lanes(counted, W - 1);
  vec a[NP][kSets][9];
#pragma GCC unroll 2
  for (int i = 0; i < NP; ++i) {
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t) {
      a[i][0][t] = V::load(acc[i] + t * kDotLanes);
      if (kSets > 1) a[i][kSets - 1][t] = V::zero();
    }
  }
  long p = 0;
  for (; p + 4 <= rows; p += 4) grid_dot_block<4>(g, p, cols, first, last, a);
  switch (rows - p) {
    case 3: grid_dot_block<3>(g, p, cols, first, last, a); break;
    case 2: grid_dot_block<2>(g, p, cols, first, last, a); break;
    case 1: grid_dot_block<1>(g, p, cols, first, last, a); break;
  }
#pragma GCC unroll 2
  for (int i = 0; i < NP; ++i) {
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t) {
      const vec sum = kSets > 1 ? V::add(a[i][0][t], a[i][kSets - 1][t]) : a[i][0][t];
      V::store(acc[i] + t * kDotLanes, sum);
    }
  }
}

template <typename V>
inline void grid_plane_dot(long rows, long cols, const typename V::scalar* x, long x_pitch,
                           const typename V::scalar* gy, long gy_pitch,
                           typename V::scalar* acc) {
  grid_planes_dot<V, 1>(rows, cols, x, x_pitch, &gy, gy_pitch, &acc);
}

// Two grad_output planes against one input plane: together where 32 registers hold their
// sums, else one after the other.
template <typename V>
inline void grid_plane_dot2(long rows, long cols, const typename V::scalar* x, long x_pitch,
                            const typename V::scalar* gy0, const typename V::scalar* gy1,
                            long gy_pitch, typename V::scalar* acc0,
                            typename V::scalar* acc1) {
  if constexpr (sizeof(typename V::vec) >= 64) {
    const typename V::scalar* gy[2] = {gy0, gy1};
    typename V::scalar* acc[2] = {acc0, acc1};
    grid_planes_dot<V, 2>(rows, cols, x, x_pitch, gy, gy_pitch, acc);
  } else {
    grid_plane_dot<V>(rows, cols, x, x_pitch, gy0, gy_pitch, acc0);
    grid_plane_dot<V>(rows, cols, x, x_pitch, gy1, gy_pitch, acc1);
  }
}

// The 3x3 correlation of a zero-padded copy of a plane, stored or added: for i < rows and
// q < cols (a multiple of V::width),
//   out[i * out_pitch + q] = (add ? out[i * out_pitch + q] : 0)
//                            + sum_{r, s} w[r * 3 + s] * x[(i + r) * x_pitch + q + s]
// the taps added in t order to what out held, every element read lying inside x's buffer
// (no masks). grad_input of a depthwise layer with a channel multiplier (depthwise.cpp's
// multiplier_planes): one grad_output plane after the other into an input plane held in
// cache. Blocks of K rows x NV vectors, each x vector loaded once for the (up to) three
// output rows that read it.
template <int K, int NV, typename V>
inline void padded_rows_block(const typename V::scalar* x, long x_pitch,
                              const typename V::vec (&w)[9], bool add,
                              typename V::scalar* out, long out_pitch) {
  using vec = typename V::vec;
  constexpr int W = V::width;
  vec acc[K][NV];
#pragma GCC unroll 8
  for (int k = 0; k < K; ++k) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[k][v] = add ? V::load(out + k * out_pitch + v * W) : V::zero();
  }
  // input row u feeds output rows k = u - r, through tap row r (rising with u: t order)
#pragma GCC unroll 8
  for (int u = 0; u < K + 2; ++u) {
#pragma GCC unroll 3
    for (int s = 0; s < 3; ++s) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        vec xv = V::load(x + u * x_pitch + s + v * W);
#if defined(__AVX__)
        asm("" : "+v"(xv));  // one load for the FMAs that take it (see grid_rows_vector)
#endif
#pragma GCC unroll 3
        for (int r = 0; r < 3; ++r) {
          const int k = u - r;
          if (k >= 0 && k < K) acc[k][v] = V::fma(w[r * 3 + s], xv, acc[k][v]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int k = 0; k < K; ++k) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) V::store(out + k * out_pitch + v * W, acc[k][v]);
  }
}

template <int NV, typename V>
inline void padded_rows_strip(long rows, const typename V::scalar* x, long x_pitch,
                              const typename V::vec (&w)[9], bool add, typename V::scalar* out,
                              long out_pitch) {
  long i = 0;
  for (; i + 4 <= rows; i += 4) {
    padded_rows_block<4, NV, V>(x + i * x_pitch, x_pitch, w, add, out + i * out_pitch, out_pitch);
  }
  x += i * x_pitch;
  out += i * out_pitch;
  switch (rows - i) {
    case 3: return padded_rows_block<3, NV, V>(x, x_pitch, w, add, out, out_pitch);
    case 2: return padded_rows_block<2, NV, V>(x, x_pitch, w, add, out, out_pitch);
    case 1: return padded_rows_block<1, NV, V>(x, x_pitch, w, add, out, out_pitch);
  }
}

template <typename V>
inline void padded_plane_rows(long rows, long cols, const typename V::scalar* x, long x_pitch,
                              const typename V::scalar* w, bool add, typename V::scalar* out,
                              long out_pitch) {
  using vec = typename V::vec;
  constexpr int W = V::width;
  // Two vectors a block where 32 registers hold their 4 x 2 sums beside the 9 weights.
  constexpr int NV = sizeof(vec) >= 64 ? 2 : 1;
  vec wv[9];
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) wv[t] = V::broadcast(w[t]);
  long q = 0;
  for (; q + NV * W <= cols; q += NV * W) {
    padded_rows_strip<NV, V>(rows, x + q, x_pitch, wv, add, out + q, out_pitch);
  }
  for (; q < cols; q += W) {
    padded_rows_strip<1, V>(rows, x + q, x_pitch, wv, add, out + q, out_pitch);
  }
}

// Copies rows x cols elements (rows src_pitch and dst_pitch apart) and, where `lanes` is not
// null, adds them into its first V::width lanes: lanes[l] += the sum, in a fixed order, of the
// columns whose vector lane is l (two accumulators, even and odd vectors of a row, added at
// the end). Writes no element of dst past a row's cols.
template <typename V>
inline void copy_rows(long rows, long cols, const typename V::scalar* src, long src_pitch,
                      typename V::scalar* dst, long dst_pitch, typename V::scalar* lanes) {
  using vec = typename V::vec;
  constexpr int W = V::width;
  vec acc[2] = {V::zero(), V::zero()};
  for (long r = 0; r < rows; ++r) {
    const typename V::scalar* s = src + r * src_pitch;
    typename V::scalar* d = dst + r * dst_pitch;
    long q = 0;
    for (; q + W <= cols; q += W) {
      const vec v = V::load(s + q);
      V::store(d + q, v);
      acc[(q / W) & 1] = V::add(acc[(q / W) & 1], v);
    }
    if (q < cols) {
      const vec v = V::load_n(s + q, cols - q);
      V::store_n(d + q, v, cols - q);
      acc[(q / W) & 1] = V::add(acc[(q / W) & 1], v);
    }
  }
  if (lanes != nullptr) V::store(lanes, V::add(V::load(lanes), V::add(acc[0], acc[1])));
}

// acc holds kDotLanes partial sums per tap (acc[t * kDotLanes + lane]); callers add the
// lanes up once, in lane order, when a task is done.
template <typename V, int NT>
inline void taps_dot_unrolled(long n, const typename V::scalar* const* __restrict src,
                              const typename V::scalar* __restrict g,
                              typename V::scalar* __restrict acc) {
  using vec = typename V::vec;
  constexpr int W = V::width;
  vec a[NT];
#pragma GCC unroll 25
  for (int t = 0; t < NT; ++t) a[t] = V::load(acc + t * kDotLanes);
  for (long i = 0; i < n; i += W) {
    const vec gv = V::load(g + i);
#pragma GCC unroll 25
    for (int t = 0; t < NT; ++t) a[t] = V::fma(gv, V::load(src[t] + i), a[t]);
  }
#pragma GCC unroll 25
  for (int t = 0; t < NT; ++t) V::store(acc + t * kDotLanes, a[t]);
}

// Any tap count: one tap at a time over the whole row, four accumulators.
template <typename V>
inline void taps_dot_generic(long n, int ntaps, const typename V::scalar* const* __restrict src,
                             const typename V::scalar* __restrict g,
                             typename V::scalar* __restrict acc) {
  using vec = typename V::vec;
  constexpr int W = V::width;
  for (int t = 0; t < ntaps; ++t) {
    const typename V::scalar* s = src[t];
    vec a0 = V::zero(), a1 = V::zero(), a2 = V::zero(), a3 = V::zero();
    long i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
      a0 = V::fma(V::load(g + i), V::load(s + i), a0);
      a1 = V::fma(V::load(g + i + W), V::load(s + i + W), a1);
      a2 = V::fma(V::load(g + i + 2 * W), V::load(s + i + 2 * W), a2);
      a3 = V::fma(V::load(g + i + 3 * W), V::load(s + i + 3 * W), a3);
    }
    for (; i < n; i += W) a0 = V::fma(V::load(g + i), V::load(s + i), a0);
    const vec sum = V::add(V::add(a0, a1), V::add(a2, a3));
    V::store(acc + t * kDotLanes, V::add(V::load(acc + t * kDotLanes), sum));
  }
}

// dst[i] = src[i] for i < n. Rows of a vector or more take whole vectors only, the last one
// ending at n; rows of up to two vectors (MobileNet's 14x14 planes) take no loop, which GCC
// would turn into a memmove call costing more than the copy.
template <typename V>
inline void copy_row(long n, const typename V::scalar* __restrict src,
                     typename V::scalar* __restrict dst) {
  constexpr int W = V::width;
  if (n < W) return V::store_n(dst, V::load_n(src, n), n);
  if (n <= 2 * W) {
    const typename V::vec a = V::load(src), b = V::load(src + n - W);
    V::store(dst, a);
    V::store(dst + n - W, b);
    return;
  }
  long done = 0;
  for (; done + W <= n; done += W) V::store(dst + done, V::load(src + done));
  if (done < n) V::store(dst + n - W, V::load(src + n - W));
}

// Stream f of k holds elements f, f + k, f + 2k, ... of a row of n: dst[f][i] = src[i*k + f].
// k = 1 is a copy, k = 2 is vectorised where V has shuffles, other k go element by element.
template <typename V>
inline void deinterleave_row(long n, int k, const typename V::scalar* __restrict src,
                             typename V::scalar* const* __restrict dst) {
  using T = typename V::scalar;
  constexpr int W = V::width;
  long done = 0;
  if (k == 1) return copy_row<V>(n, src, dst[0]);
  if (V::kShuffles && k == 2) {
    typename V::vec even, odd;
    for (; done + 2 * W <= n; done += 2 * W) {
      V::deinterleave2(V::load(src + done), V::load(src + done + W), even, odd);
      V::store(dst[0] + done / 2, even);
      V::store(dst[1] + done / 2, odd);
    }
    if (done < n) {  // m < 2W elements left: partial vectors
      const long m = n - done;
      V::deinterleave2(V::load_n(src + done, m < W ? m : W),
                       m > W ? V::load_n(src + done + W, m - W) : V::zero(), even, odd);
      V::store_n(dst[0] + done / 2, even, (m + 1) / 2);
      if (m > 1) V::store_n(dst[1] + done / 2, odd, m / 2);
    }
    return;
  }
  for (int f = 0; f < k; ++f) {  // done is a multiple of k
    T* d = dst[f];
    for (long i = done / k, j = done + f; j < n; ++i, j += k) d[i] = src[j];
  }
}

// The inverse: dst[i*k + f] = src[f][i] for i*k + f < n.
template <typename V>
inline void interleave_row(long n, int k, const typename V::scalar* const* __restrict src,
                           typename V::scalar* __restrict dst) {
  using T = typename V::scalar;
  constexpr int W = V::width;
  long done = 0;
  if (k == 1) return copy_row<V>(n, src[0], dst);
  if (V::kShuffles && k == 2) {
    typename V::vec lo, hi;
    for (; done + 2 * W <= n; done += 2 * W) {
      V::interleave2(V::load(src[0] + done / 2), V::load(src[1] + done / 2), lo, hi);
      V::store(dst + done, lo);
      V::store(dst + done + W, hi);
    }
    if (done < n) {
      const long m = n - done;
      V::interleave2(V::load_n(src[0] + done / 2, (m + 1) / 2), V::load_n(src[1] + done / 2, m / 2),
                     lo, hi);
      V::store_n(dst + done, lo, m < W ? m : W);
      if (m > W) V::store_n(dst + done + W, hi, m - W);
    }
    return;
  }
  for (int f = 0; f < k; ++f) {
    const T* s = src[f];
    for (long i = done / k, j = done + f; j < n; ++i, j += k) dst[j] = s[i];
  }
}

// Row r of the plane: src + r * src_pitch, and stream f at dst[f] + r * dst_pitch.
template <typename V>
inline void deinterleave_rows(long rows, long n, int k, const typename V::scalar* src,
                              long src_pitch, typename V::scalar* const* dst, long dst_pitch) {
  typename V::scalar* streams[8];
  if (k > 8) {  // wider strides than any real network uses: element by element
    for (long r = 0; r < rows; ++r) {
      for (long j = 0; j < n; ++j) dst[j % k][r * dst_pitch + j / k] = src[r * src_pitch + j];
    }
    return;
  }
  for (long r = 0; r < rows; ++r) {
    for (int f = 0; f < k; ++f) streams[f] = dst[f] + r * dst_pitch;
    deinterleave_row<V>(n, k, src + r * src_pitch, streams);
  }
}

template <typename V>
inline void interleave_rows(long rows, long n, int k, const typename V::scalar* const* src,
                            long src_pitch, typename V::scalar* dst, long dst_pitch) {
  const typename V::scalar* streams[8];
  if (k > 8) {
    for (long r = 0; r < rows; ++r) {
      for (long j = 0; j < n; ++j) dst[r * dst_pitch + j] = src[j % k][r * src_pitch + j / k];
    }
    return;
  }
  for (long r = 0; r < rows; ++r) {
    for (int f = 0; f < k; ++f) streams[f] = src[f] + r * src_pitch;
    interleave_row<V>(n, k, streams, dst + r * dst_pitch);
  }
}

// Channels-last loops (channel multiplier 1): vectors run along the C channels, which are
// contiguous in every pixel, and each tap t is a pointer to the pixel it multiplies for
// q = 0 and a per-channel weight row w[t]. For q < count and c < C:
//   channels_correlate  out[q * out_step + c] = init[c] (0 if null)
//                                              + sum_t w[t][c] * src[t][q * src_step + c]
//   channels_dot        acc[t][c] += sum_q g[q * g_step + c] * src[t][q * src_step + c]
// channels_correlate keeps even and odd taps in separate sums, four vectors at a time, to
// hide the FMA latency; channels_dot sums up to 9 taps of one vector in registers over the
// pixels (a 3x3 kernel in one pass). Both orders depend only on the arguments. Up to two
// vectors of channels and nine taps (MobileNet's first depthwise layer: 32 channels, 3x3, on
// AVX-512), channels_correlate holds the weights in registers: reloading them every pixel
// made it load-bound, at twice the loads of its FMAs (8x32x112x112: 1.9 ms, against 0.8 ms
// for native). Nine taps on three or four vectors (that layer on AVX2) hold them one vector
// at a time (channels_correlate_9), unless the result is streamed. Wider channels of a 3x3
// kernel at column stride 1 (the forward pass and grad_input of MobileNet's stride-1
// layers) take channels_correlate_3x3:
// blocks of four pixels share each weight and input load among the outputs that use it,
// the next blocks' lines prefetched (one thread, ms: 8x128x56x56 forward and grad_input
// 5.6 -> 4.3-4.6, 8x64x112x112 forward 11.2-11.5 -> 8.0-8.7, grad_input 11.3-11.6 ->
// 8.4-9.3; without the prefetches the block
// waited on each new pixel's lines and ran slower than the per-pixel loop, as did weights
// held over a pixel block without the shared input loads, 5-20%). Other shapes reload the
// weights per pixel.

// channels_correlate's sums for nine taps (a 3x3 kernel's interior pixels), one vector of
// channels at a time with its nine weights held, over a block of kBlock pixels, then the
// next vector: up to four vectors of channels (MobileNet's first depthwise layer, 32
// channels on AVX2), where a block's pixels stay in L1 from one vector to the next.
template <typename V>
inline void channels_correlate_9(long count, long C, const typename V::scalar* const* src,
                                 long src_step, const typename V::scalar* const* w,
                                 const typename V::scalar* init, typename V::scalar* out,
                                 long out_step) {
  using vec = typename V::vec;
  constexpr int W = V::width;
  constexpr long kBlock = 16;
  const typename V::scalar* from[9];
  for (int t = 0; t < 9; ++t) from[t] = src[t];
  for (long q0 = 0; q0 < count; q0 += kBlock) {
    const long q1 = count - q0 < kBlock ? count : q0 + kBlock;
    for (long c = 0; c < C; c += W) {
      const long lanes = C - c < W ? C - c : W;
      vec wv[9];
#pragma GCC unroll 9
      for (int t = 0; t < 9; ++t) wv[t] = V::load_n(w[t] + c, lanes);
      const vec start = init ? V::load_n(init + c, lanes) : V::zero();
      for (long q = q0; q < q1; ++q) {
        const long at = q * src_step + c;
        vec even = start, odd = V::zero();
#pragma GCC unroll 4
        for (int t = 0; t < 8; t += 2) {
          even = V::fma(wv[t], V::load_n(from[t] + at, lanes), even);
          odd = V::fma(wv[t + 1], V::load_n(from[t + 1] + at, lanes), odd);
        }
        even = V::fma(wv[8], V::load_n(from[8] + at, lanes), even);
        V::store_n(out + q * out_step + c, V::add(even, odd), lanes);
      }
    }
  }
}

// channels_correlate's sums for a 3x3 kernel at column stride 1 and dilation 1 (tap
// r * 3 + s reads src[r * 3] + s * src_step), NP consecutive output pixels from q0 on and NV
// vectors of channels from c on: each kernel row's three weights are loaded once for the NP
// pixels, and each of the NP + 2 input pixels of the row once for the (up to three) outputs
// that read it, 18 loads for NP = 4, NV = 2's 72 FMAs where the loop below makes two loads
// per FMA. The sums run over the taps in order (r, then s).
template <typename V, int NP, int NV>
inline void channels_correlate_3x3_block(long q0, long c, const typename V::scalar* const* src,
                                         long src_step, const typename V::scalar* const* w,
                                         const typename V::scalar* init, typename V::scalar* out,
                                         long out_step, bool stream) {
  using vec = typename V::vec;
  constexpr int W = V::width;
  vec acc[NP][NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const vec start = init ? V::load(init + c + v * W) : V::zero();
#pragma GCC unroll 4
    for (int j = 0; j < NP; ++j) acc[j][v] = start;
  }
#pragma GCC unroll 3
  for (int r = 0; r < 3; ++r) {
    vec wr[3][NV];
#pragma GCC unroll 3
    for (int s = 0; s < 3; ++s) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) wr[s][v] = V::load(w[r * 3 + s] + c + v * W);
    }
    const typename V::scalar* row = src[r * 3] + q0 * src_step + c;
#pragma GCC unroll 6
    for (int p = 0; p < NP + 2; ++p) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const vec xv = V::load(row + p * src_step + v * W);
#pragma GCC unroll 3
        for (int s = 0; s < 3; ++s) {
          const int j = p - s;  // the output pixel that reads input pixel p through tap s
          if (j >= 0 && j < NP) acc[j][v] = V::fma(wr[s][v], xv, acc[j][v]);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < NP; ++j) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      typename V::scalar* y = out + (q0 + j) * out_step + c + v * W;
      if (stream) {
        stream_or_store<V>(y, acc[j][v], 0);
      } else {
        V::store(y, acc[j][v]);
      }
    }
  }
}

// Whether the nine taps are a 3x3 kernel at column stride 1 and dilation 1 over src_step,
// each row's three taps in order of their columns (into src and w as channels_correlate_3x3
// takes them): tap r * 3 + s reads sorted_src[r * 3] + s * src_step. A row given in
// descending order (grad_input's flipped kernel) is reversed.
template <typename T>
inline bool taps_3x3_unit_stride(int ntaps, const T* const* src, const T* const* w,
                                 long src_step, const T** sorted_src, const T** sorted_w) {
  if (ntaps != 9) return false;
  for (int r = 0; r < 3; ++r) {
    const T* const* s_row = src + r * 3;
    const T* const* w_row = w + r * 3;
    if (s_row[1] == s_row[0] + src_step && s_row[2] == s_row[0] + 2 * src_step) {
      for (int s = 0; s < 3; ++s) {
        sorted_src[r * 3 + s] = s_row[s];
        sorted_w[r * 3 + s] = w_row[s];
      }
    } else if (s_row[1] == s_row[2] + src_step && s_row[0] == s_row[2] + 2 * src_step) {
      for (int s = 0; s < 3; ++s) {
        sorted_src[r * 3 + s] = s_row[2 - s];
        sorted_w[r * 3 + s] = w_row[2 - s];
      }
    } else {
      return false;
    }
  }
  return true;
}

// NP pixels from q0 on, every vector of channels: two at a time, then a last single one.
// Each pair of vectors (one line per pixel) also prefetches its line of the four input
// pixels per kernel row that the block kAhead pixels on reads first, and of that block's
// four outputs (unless they are streamed: `stream`, non-temporal stores, every output vector
// aligned): the hardware prefetchers do not follow this walk (pixels C elements apart, a
// line at a time), and the blocks waited on every new pixel's lines.
template <typename V, int NP>
inline void channels_correlate_3x3_pixels(long q0, long C, const typename V::scalar* const* src,
                                          long src_step, const typename V::scalar* const* w,
                                          const typename V::scalar* init,
                                          typename V::scalar* out, long out_step, bool stream) {
  constexpr int W = V::width;
  constexpr long kAhead = 8;  // pixels
  long c = 0;
  for (; c + 2 * W <= C; c += 2 * W) {
#pragma GCC unroll 3
    for (int r = 0; r < 3; ++r) {
      const typename V::scalar* ahead = src[r * 3] + (q0 + 2 + kAhead) * src_step + c;
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) __builtin_prefetch(ahead + k * src_step);
    }
    if (!stream) {
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) __builtin_prefetch(out + (q0 + kAhead + k) * out_step + c, 1);
    }
    channels_correlate_3x3_block<V, NP, 2>(q0, c, src, src_step, w, init, out, out_step, stream);
  }
  if (c < C) {
    channels_correlate_3x3_block<V, NP, 1>(q0, c, src, src_step, w, init, out, out_step, stream);
  }
}

// channels_correlate of a 3x3 kernel at column stride 1 (taps_3x3_unit_stride), C a whole
// number of vectors: blocks of four pixels, then the last one to three.
template <typename V>
inline void channels_correlate_3x3(long count, long C, const typename V::scalar* const* src,
                                   long src_step, const typename V::scalar* const* w,
                                   const typename V::scalar* init, typename V::scalar* out,
                                   long out_step, bool stream) {
  long q0 = 0;
  for (; q0 + 4 <= count; q0 += 4) {
    channels_correlate_3x3_pixels<V, 4>(q0, C, src, src_step, w, init, out, out_step, stream);
  }
#define CNNOPS_PIXELS(np) \
  channels_correlate_3x3_pixels<V, np>(q0, C, src, src_step, w, init, out, out_step, stream)
  switch (count - q0) {
    case 3: CNNOPS_PIXELS(3); break;
    case 2: CNNOPS_PIXELS(2); break;
    case 1: CNNOPS_PIXELS(1); break;
    default: break;
  }
#undef CNNOPS_PIXELS
}

template <typename V>
inline void channels_correlate(long count, long C, int ntaps,
                               const typename V::scalar* const* __restrict src, long src_step,
                               const typename V::scalar* const* __restrict w,
                               const typename V::scalar* init, typename V::scalar* out,
                               long out_step, bool stream) {
  using vec = typename V::vec;
  constexpr int W = V::width;
  constexpr int kHeldTaps = 9;
  if (C <= 2 * W && ntaps <= kHeldTaps) {
    // The same sums as below (even and odd taps apart, then added), the weights held.
    const int vectors = C > W ? 2 : 1;
    vec wv[kHeldTaps][2], start[2];
    long lanes[2];
    for (int i = 0; i < vectors; ++i) {
      lanes[i] = i == 0 ? (C < W ? C : W) : C - W;
      for (int t = 0; t < ntaps; ++t) wv[t][i] = V::load_n(w[t] + i * W, lanes[i]);
      start[i] = init ? V::load_n(init + i * W, lanes[i]) : V::zero();
    }
    const typename V::scalar* from[kHeldTaps];  // the taps' pointers, not reloaded per pixel
    for (int t = 0; t < ntaps; ++t) from[t] = src[t];
    for (long q = 0; q < count; ++q) {
      const long sq = q * src_step;
      for (int i = 0; i < vectors; ++i) {
        const long c = i * W;
        vec even = start[i], odd = V::zero();
        int t = 0;
        for (; t + 1 < ntaps; t += 2) {
          even = V::fma(wv[t][i], V::load_n(from[t] + sq + c, lanes[i]), even);
          odd = V::fma(wv[t + 1][i], V::load_n(from[t + 1] + sq + c, lanes[i]), odd);
        }
        if (t < ntaps) even = V::fma(wv[t][i], V::load_n(from[t] + sq + c, lanes[i]), even);
        V::store_n(out + q * out_step + c, V::add(even, odd), lanes[i]);
      }
    }
    return;
  }
  const typename V::scalar* sorted_src[9];
  const typename V::scalar* sorted_w[9];
  const bool unit_3x3 =
      C % W == 0 && taps_3x3_unit_stride(ntaps, src, w, src_step, sorted_src, sorted_w);
  stream = stream && unit_3x3 && out_step % W == 0 && vector_aligned<V>(out);
  // channels_correlate_9 writes a pixel's channels a vector at a time, blocks of pixels
  // apart: streamed, its lines would leave the write-combining buffers unfinished (2.2x
  // slower on 8x32x112x112). Results to stream whose pixels are whole pairs of vectors (AVX2:
  // MobileNet's 32-channel layer) take channels_correlate_3x3, which writes a pixel's pair
  // at once (8x32x112x112, two threads, a noisy Zen 4 VM, 8 alternated runs each: forward
  // 2.8-4.4 -> 2.2-2.9 ms, grad_input 3.1-4.2 -> 2.3-3.3).
  if (C <= 4 * W && ntaps == 9 && !(stream && C % (2 * W) == 0)) {
    channels_correlate_9<V>(count, C, src, src_step, w, init, out, out_step);
    return;
  }
  if (unit_3x3) {
    channels_correlate_3x3<V>(count, C, sorted_src, src_step, sorted_w, init, out, out_step,
                              stream);
    return;
  }
  // Where consecutive outputs skip source pixels (src_step > C: a column stride of 2 or
  // more), the hardware prefetchers fall behind (the loads of each new pixel's lines were
  // half the samples of MobileNet's 56x56 stride-2 layer): the taps that lead their row (no
  // other tap reads the pixel after theirs) are prefetched two pixels ahead. At stride 1 it
  // cost 3-10%.
  constexpr int kMaxLead = 16;
  constexpr long kGroupBytes = 4 * W * sizeof(typename V::scalar);
  const typename V::scalar* lead[kMaxLead];
  int nlead = 0;
  for (int t = 0; src_step > C && t < ntaps && nlead < kMaxLead; ++t) {
    bool leads = true;
    for (int u = 0; u < ntaps; ++u) leads = leads && src[u] != src[t] + src_step;
    if (leads) lead[nlead++] = src[t] + 2 * src_step;
  }
  for (long q = 0; q < count; ++q) {
    const long sq = q * src_step;
    long c = 0;
    for (; c + 4 * W <= C; c += 4 * W) {
      for (int i = 0; i < nlead; ++i) {  // the group's 4 * W channels, a line at a time
        const char* from = reinterpret_cast<const char*>(lead[i] + sq + c);
        for (long b = 0; b < kGroupBytes; b += 64) __builtin_prefetch(from + b);
      }
      vec even[4], odd[4];
      for (int i = 0; i < 4; ++i) {
        even[i] = init ? V::load(init + c + i * W) : V::zero();
        odd[i] = V::zero();
      }
      int t = 0;
      for (; t + 1 < ntaps; t += 2) {
        for (int i = 0; i < 4; ++i) {
          even[i] = V::fma(V::load(w[t] + c + i * W), V::load(src[t] + sq + c + i * W), even[i]);
          odd[i] = V::fma(V::load(w[t + 1] + c + i * W), V::load(src[t + 1] + sq + c + i * W),
                          odd[i]);
        }
      }
      if (t < ntaps) {
        for (int i = 0; i < 4; ++i) {
          even[i] = V::fma(V::load(w[t] + c + i * W), V::load(src[t] + sq + c + i * W), even[i]);
        }
      }
      for (int i = 0; i < 4; ++i) V::store(out + q * out_step + c + i * W, V::add(even[i], odd[i]));
    }
    for (; c < C; c += W) {
      const long n = C - c < W ? C - c : W;
      vec even = init ? V::load_n(init + c, n) : V::zero(), odd = V::zero();
      int t = 0;
      for (; t + 1 < ntaps; t += 2) {
        even = V::fma(V::load_n(w[t] + c, n), V::load_n(src[t] + sq + c, n), even);
        odd = V::fma(V::load_n(w[t + 1] + c, n), V::load_n(src[t + 1] + sq + c, n), odd);
      }
      if (t < ntaps) even = V::fma(V::load_n(w[t] + c, n), V::load_n(src[t] + sq + c, n), even);
      V::store_n(out + q * out_step + c, V::add(even, odd), n);
    }
  }
}

// A tap count (or a tap's column) as a type, for the kernels whose sums are held in registers.
template <int K>
struct TapCount {
  static constexpr int value = K;
};

// fn(t0, TapCount<nt>{}) for the taps [0, ntaps) in chunks of up to nine (a 3x3 kernel in one
// chunk), chunk [t0, t0 + nt).
template <typename Fn>
inline void for_tap_chunks(int ntaps, Fn&& fn) {
  constexpr int kTaps = 9;
  for (int t0 = 0; t0 < ntaps; t0 += kTaps) {
    switch (ntaps - t0 < kTaps ? ntaps - t0 : kTaps) {
      case 1: fn(t0, TapCount<1>{}); break;
      case 2: fn(t0, TapCount<2>{}); break;
      case 3: fn(t0, TapCount<3>{}); break;
      case 4: fn(t0, TapCount<4>{}); break;
      case 5: fn(t0, TapCount<5>{}); break;
      case 6: fn(t0, TapCount<6>{}); break;
      case 7: fn(t0, TapCount<7>{}); break;
      case 8: fn(t0, TapCount<8>{}); break;
      default: fn(t0, TapCount<9>{}); break;
    }
  }
}

// One vector of channels from c on (n of them live), NT taps from src[0], summed over the
// pixels in registers: NT a constant, so that the sums stay in registers (a run-time count
// left them on the stack, every FMA a load and a store: 5x slower).
template <typename V, int NT>
inline void channels_dot_taps(long count, const typename V::scalar* const* __restrict src,
                              long src_step, const typename V::scalar* __restrict g,
                              long g_step, long c, long n, typename V::scalar* const* acc) {
  using vec = typename V::vec;
  vec sum[NT];
#pragma GCC unroll 9
  for (int t = 0; t < NT; ++t) sum[t] = V::zero();
  for (long q = 0; q < count; ++q) {
    const vec gv = V::load_n(g + q * g_step + c, n);
#pragma GCC unroll 9
    for (int t = 0; t < NT; ++t) {
      sum[t] = V::fma(gv, V::load_n(src[t] + q * src_step + c, n), sum[t]);
    }
  }
#pragma GCC unroll 9
  for (int t = 0; t < NT; ++t) {
    V::store_n(acc[t] + c, V::add(V::load_n(acc[t] + c, n), sum[t]), n);
  }
}

template <typename V>
inline void channels_dot(long count, long C, int ntaps,
                         const typename V::scalar* const* __restrict src, long src_step,
                         const typename V::scalar* __restrict g, long g_step,
                         typename V::scalar* const* acc) {
  constexpr int W = V::width;
  for (long c = 0; c < C; c += W) {
    const long n = C - c < W ? C - c : W;
    for_tap_chunks(ntaps, [&](int t0, auto k) {
      channels_dot_taps<V, decltype(k)::value>(count, src + t0, src_step, g, g_step, c, n,
                                               acc + t0);
    });
  }
}

// channels_dot of a 3x3 kernel at stride 1 and dilation 1 over two output rows at once: for
// q < count, tap (r, s) of output row i (0 or 1) multiplies g[i * g_row + q * g_step + c] by
// x[(i + r) * x_row + (q + s - pad) * x_step + c], pad 0 (every tap inside) or 1 (a row
// padded by one pixel on each side, count its width: the taps on pixels -1 and count are
// skipped, so the row's edges need no calls of their own). The pass walks the input pixels:
// pixel p of the four input rows is loaded once, for tap s of output pixel p - s, whose g
// (both rows) stays in registers for three pixels, 4 loads of x and 2 of g for 18 FMAs
// (loading each tap's pixel instead: 12 and 2). Each tap's sum runs over the output pixels
// in order, row 0's term before row 1's; no product of a pixel with a tap that does not
// reach it is formed (0 * inf would be NaN).
template <typename V, bool kWhole>
inline void channels_dot_3x3_pair_vector(long count, long c, long n, int pad,
                                         const typename V::scalar* __restrict x, long x_row,
                                         long x_step, const typename V::scalar* __restrict g,
                                         long g_row, long g_step,
                                         typename V::scalar* const* acc) {
  using vec = typename V::vec;
  auto load = [n](const typename V::scalar* p) __attribute__((always_inline)) {
    return kWhole ? V::load(p) : V::load_n(p, n);
  };
  vec sum[9];
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) sum[t] = V::zero();
  vec g0[3] = {V::zero(), V::zero(), V::zero()};  // [s]: g of output pixel p - s, row 0
  vec g1[3] = {V::zero(), V::zero(), V::zero()};  // and row 1
  // Column p (input pixel p - pad) with the taps S0..S1 (those whose output pixel p - s
  // exists), both known at compile time, so that the sums and g stay in registers; an
  // absent pixel (padding) only moves g along.
  auto column = [&](long p, auto s0, auto s1, bool present) __attribute__((always_inline)) {
    constexpr int S0 = decltype(s0)::value, S1 = decltype(s1)::value;
    g0[2] = g0[1];
    g0[1] = g0[0];
    g1[2] = g1[1];
    g1[1] = g1[0];
    if (S0 == 0) {
      g0[0] = load(g + p * g_step + c);
      g1[0] = load(g + g_row + p * g_step + c);
    }
    if (!present) return;
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const vec xv = load(x + k * x_row + (p - pad) * x_step + c);  // input pixel p - pad
#pragma GCC unroll 3
      for (int s = S0; s <= S1; ++s) {
        if (k < 3) sum[k * 3 + s] = V::fma(g0[s], xv, sum[k * 3 + s]);
        if (k > 0) sum[(k - 1) * 3 + s] = V::fma(g1[s], xv, sum[(k - 1) * 3 + s]);
      }
    }
  };
  using Tap0 = TapCount<0>;  // tap column s, as a type
  using Tap1 = TapCount<1>;
  using Tap2 = TapCount<2>;
  column(0, Tap0{}, Tap0{}, pad == 0);
  if (count == 1) {
    column(1, Tap1{}, Tap1{}, true);
  } else {
    column(1, Tap0{}, Tap1{}, true);
    for (long p = 2; p < count; ++p) column(p, Tap0{}, Tap2{}, true);
    column(count, Tap1{}, Tap2{}, true);
  }
  column(count + 1, Tap2{}, Tap2{}, pad == 0);
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) V::store_n(acc[t] + c, V::add(V::load_n(acc[t] + c, n), sum[t]), n);
}

template <typename V>
inline void channels_dot_3x3_pair(long count, long C, int pad,
                                  const typename V::scalar* __restrict x, long x_row,
                                  long x_step, const typename V::scalar* __restrict g,
                                  long g_row, long g_step, typename V::scalar* const* acc) {
  constexpr int W = V::width;
  if (count <= 0) return;
  long c = 0;
  for (; c + W <= C; c += W) {
    channels_dot_3x3_pair_vector<V, true>(count, c, W, pad, x, x_row, x_step, g, g_row, g_step,
                                          acc);
  }
  if (c < C) {
    channels_dot_3x3_pair_vector<V, false>(count, c, C - c, pad, x, x_row, x_step, g, g_row,
                                           g_step, acc);
  }
}

// Pixels of a channels-last tensor's rows copied into a block `lanes` channels wide (lanes a
// multiple of V::width): dst[r * dst_row + q * lanes + c] = src[r * src_row + q * src_step + c]
// for c < n, zero for n <= c < lanes. NV vectors a pixel, a constant: with a run-time count,
// GCC made each pixel's copy a call of memmove (half the time of a 128-channel grad_weight).
template <typename V, int NV>
inline void gather_pixels(long rows, long cols, long n, const typename V::scalar* __restrict src,
                          long src_row, long src_step, typename V::scalar* __restrict dst,
                          long dst_row) {
  constexpr int W = V::width, kLanes = NV * W;
  for (long r = 0; r < rows; ++r) {
    const auto* s = src + r * src_row;
    auto* d = dst + r * dst_row;
    if (n >= kLanes) {
      for (long q = 0; q < cols; ++q) {
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          V::store(d + q * kLanes + v * W, V::load(s + q * src_step + v * W));
        }
      }
    } else {
      for (long q = 0; q < cols; ++q) {
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          const long rest = n - v * W, live = rest < 0 ? 0 : rest < W ? rest : W;
          V::store(d + q * kLanes + v * W, V::load_n(s + q * src_step + v * W, live));
        }
      }
    }
  }
}

template <typename V>
inline void gather_channels(long rows, long cols, long n, long lanes,
                            const typename V::scalar* src, long src_row, long src_step,
                            typename V::scalar* dst, long dst_row) {
  switch (lanes / V::width) {  // 1, 2, 4 or 8: blocks of 64, 128 or 256 bytes
    case 1: return gather_pixels<V, 1>(rows, cols, n, src, src_row, src_step, dst, dst_row);
    case 2: return gather_pixels<V, 2>(rows, cols, n, src, src_row, src_step, dst, dst_row);
    case 4: return gather_pixels<V, 4>(rows, cols, n, src, src_row, src_step, dst, dst_row);
    default: return gather_pixels<V, 8>(rows, cols, n, src, src_row, src_step, dst, dst_row);
  }
}

// channels_dot over a gathered block (gather_channels), NT taps: for every vector of channels
// c < lanes, acc[t][c] += sum over p < rows, q < cols of g[p * g_row + q * g_step + c] *
// x[p * x_row + q * x_step + offset[t] + c], the sums held in registers over the whole block.
template <typename V, int NT>
inline void channels_dot_block_taps(long rows, long cols, const typename V::scalar* __restrict x,
                                    long x_row, long x_step, const long* offset,
                                    const typename V::scalar* __restrict g, long g_row,
                                    long g_step, long lanes, typename V::scalar* const* acc) {
  using vec = typename V::vec;
  long off[NT];
#pragma GCC unroll 9
  for (int t = 0; t < NT; ++t) off[t] = offset[t];
  for (long c = 0; c < lanes; c += V::width) {
    vec sum[NT];
#pragma GCC unroll 9
    for (int t = 0; t < NT; ++t) sum[t] = V::zero();
    for (long p = 0; p < rows; ++p) {
      const auto* xr = x + p * x_row + c;
      const auto* gr = g + p * g_row + c;
      for (long q = 0; q < cols; ++q) {
        const vec gv = V::load(gr + q * g_step);
#pragma GCC unroll 9
        for (int t = 0; t < NT; ++t) sum[t] = V::fma(gv, V::load(xr + q * x_step + off[t]), sum[t]);
      }
    }
#pragma GCC unroll 9
    for (int t = 0; t < NT; ++t) V::store(acc[t] + c, V::add(V::load(acc[t] + c), sum[t]));
  }
}

template <typename V>
inline void channels_dot_block(long rows, long cols, int ntaps,
                               const typename V::scalar* x, long x_row, long x_step,
                               const long* offset, const typename V::scalar* g, long g_row,
                               long g_step, long lanes, typename V::scalar* const* acc) {
  for_tap_chunks(ntaps, [&](int t0, auto k) {
    channels_dot_block_taps<V, decltype(k)::value>(rows, cols, x, x_row, x_step, offset + t0, g,
                                                   g_row, g_step, lanes, acc + t0);
  });
}

// The first n lanes of the row `offset` elements into a plane of `extent` elements, zero
// elsewhere (first_n: V::lanes(0, n)): a plain load where the whole vector lies inside the
// plane (load_lanes_within), else a masked one.
template <typename V>
inline typename V::vec load_row(const typename V::scalar* plane, long offset, long extent, long n,
                                const typename V::Lanes& first_n) {
  if (offset + V::width <= extent) return V::load_lanes_within(plane + offset, first_n);
  return V::load_n(plane + offset, n);
}

// V::Pick, named only at stride_w 2 (Doubled has none).
template <typename V, bool kStride1>
struct StridePick {
  using type = typename V::Pick;
};
template <typename V>
struct StridePick<V, true> {
  struct type {};
};

// Small planes: every output row is one vector (Q <= width; V may be a Doubled pair), summed
// over the taps straight from the input rows, no strip copies; made for the late layers of
// MobileNets (7x7 and 14x14 planes), where the strips' per-plane costs outweighed their
// arithmetic.
// Stride_w 1: each column tap s loads its columns with a lane mask (lanes whose column lies
// outside the row read zero, and are not touched). Stride_w 2: each input row is loaded once
// as two vectors (W <= 2 * width) and each tap picks its columns out of them. Lanes >= Q read
// zero. KS > 0: the kernel's width known at compile time (3), so that the per-tap masks and
// offsets live in registers.
template <typename V, int KS, bool kStride1>
class ColumnTaps {
 public:
  using T = typename V::scalar;
  using vec = typename V::vec;

  explicit ColumnTaps(const SmallPlanes& g)
      : S_(KS > 0 ? KS : g.S), extent_((g.H - 1) * g.x_pitch + g.W) {
    const long Wv = V::width;
    row_a_ = g.W < Wv ? g.W : Wv;
    row_b_ = g.W - row_a_;
    reach_lo_ = kStride1 ? -g.pad_left : 0;
    reach_hi_ = kStride1 ? (S_ - 1) * g.dw - g.pad_left + Wv : (row_b_ > 0 ? 2 : 1) * Wv;
    if constexpr (!kStride1) {
      row_lanes_[0] = V::lanes(0, row_a_);
      row_lanes_[1] = V::lanes(0, row_b_);
    }
    for (long s = 0; s < S_; ++s) {
      d_[s] = s * g.dw - g.pad_left;  // output lane l reads input column l * sw + d_[s]
      if constexpr (kStride1) {  // a tap whose columns all lie outside the row gets no lanes
        const long lo = d_[s] < 0 ? (-d_[s] < g.Q ? -d_[s] : g.Q) : 0;
        long hi = g.W - d_[s];
        hi = hi < g.Q ? (hi > lo ? hi : lo) : g.Q;
        inside_[s] = V::lanes(lo, hi);
      } else {  // lanes past Q pick nothing
        long index[V::width];
        for (long l = 0; l < Wv; ++l) {
          const long e = 2 * l + d_[s];
          index[l] = l < g.Q && e >= 0 && e < 2 * Wv ? e : -1;
        }
        pick_[s] = V::pick(index);
      }
    }
  }

  // fn(s, v) for every column tap s, v holding its input columns from the row `offset`
  // elements into `plane`. Rows whose vectors lie inside the plane (all but the first and
  // last, for the usual padding) load whole vectors and mask them (load_lanes_within).
  template <typename Fn>
  void each(const T* plane, long offset, Fn&& fn) const {
    const T* row = plane + offset;
    const bool within = offset + reach_lo_ >= 0 && offset + reach_hi_ <= extent_;
    if constexpr (kStride1) {
      if (within) {
#pragma GCC unroll 5
        for (long s = 0; s < (KS > 0 ? KS : S_); ++s) {
          fn(s, V::load_lanes_within(row + d_[s], inside_[s]));
        }
      } else {
#pragma GCC unroll 5
        for (long s = 0; s < (KS > 0 ? KS : S_); ++s) {
          fn(s, V::load_lanes(row + d_[s], inside_[s]));
        }
      }
    } else {
      vec a, b = V::zero();
      if (within) {
        a = V::load_lanes_within(row, row_lanes_[0]);
        if (row_b_ > 0) b = V::load_lanes_within(row + V::width, row_lanes_[1]);
      } else {
        a = V::load_n(row, row_a_);
        if (row_b_ > 0) b = V::load_n(row + V::width, row_b_);
      }
#pragma GCC unroll 5
      for (long s = 0; s < (KS > 0 ? KS : S_); ++s) fn(s, V::picked(a, b, pick_[s]));
    }
  }

 private:
  static constexpr long kCount = KS > 0 ? KS : kSmallPlanesMaxS;
  long S_;
  long extent_;  // elements from a plane's first to one past its last
  long reach_lo_, reach_hi_;  // elements a row's loads read: [row + lo, row + hi)
  long row_a_, row_b_;  // stride 2: the elements of a row's two loads
  typename V::Lanes row_lanes_[2];  // stride 2: their lanes
  long d_[kCount];
  typename V::Lanes inside_[kCount];  // stride 1: the lanes reading inside the row
  typename StridePick<V, kStride1>::type pick_[kCount];  // stride 2
};

// fn(p, checked) for every output row p of a plane: checked when some of its kernel rows fall
// outside the input (border rows), so that interior rows run without the test.
template <typename Fn>
inline void for_each_output_row(const SmallPlanes& g, long R, Fn&& fn) {
  const long P = g.P, sh = g.sh;
  long lo = g.pad_top > 0 ? (g.pad_top + sh - 1) / sh : 0;
  lo = lo < P ? lo : P;
  const long last = g.H - 1 - (R - 1) * g.dh + g.pad_top;
  long hi = last < 0 ? 0 : last / sh + 1;
  hi = hi < P ? (hi > lo ? hi : lo) : P;
  for (long p = 0; p < lo; ++p) fn(p, true);
  for (long p = lo; p < hi; ++p) fn(p, false);
  for (long p = hi; p < P; ++p) fn(p, true);
}

// Whether the small-plane kernels walk g's input rows once (small_plane_rolling,
// small_plane_dot_rolling): 3x3 at stride 1 and dilation 1, pad_top 0-2, one vector per row
// (not Doubled: its pairs would not fit the registers).
template <typename V, int KR, int KS, bool kStride1>
constexpr bool kRollingShape = KR == 3 && KS == 3 && kStride1 && !kIsDoubled<V>;

inline bool rolls(const SmallPlanes& g) {
  return g.sh == 1 && g.dh == 1 && g.pad_top >= 0 && g.pad_top <= 2;
}

// One plane of small_planes_correlate at stride 1, dilation 1 and a 3x3 kernel, pad_top 0-2:
// the input rows in order, each row's three column taps loaded once and added to the three
// output rows that read it (acc0, acc1, acc2: rows p0, p0 + 1, p0 + 2, reading it as kernel
// row 2, 1, 0), a row stored once its last input row has passed. Each output adds its taps in
// t order from init. Where rows are Q apart, a row is stored as a whole vector if its lanes
// past Q land inside the plane: on the rows after it, which are stored after it (MobileNet's
// 7x7 planes: one store for seven elements instead of three).
template <typename V, typename Taps>
inline void small_plane_rolling(const SmallPlanes& g, const Taps& taps,
                                const typename V::scalar* xp, const typename V::vec* wv,
                                typename V::vec init, bool relu, typename V::scalar* op) {
  using vec = typename V::vec;
  const long H = g.H, P = g.P, Q = g.Q, x_pitch = g.x_pitch, out_pitch = g.out_pitch;
  const bool whole = out_pitch == Q;
  vec acc0 = init, acc1 = init, acc2 = init;
  for (long p0 = g.pad_top - 2, ih = 0; p0 < P; ++p0, ++ih) {
    if (ih < H) {
      taps.each(xp, ih * x_pitch, [&](long s, vec v) {
        acc0 = V::fma(wv[6 + s], v, acc0);
        acc1 = V::fma(wv[3 + s], v, acc1);
        acc2 = V::fma(wv[s], v, acc2);
      });
    }
    if (p0 >= 0) {
      const vec sum = relu ? V::relu(acc0) : acc0;
      if (whole && p0 * Q + V::width <= P * Q) {
        V::store(op + p0 * out_pitch, sum);
      } else {
        V::store_n(op + p0 * out_pitch, sum, Q);
      }
    }
    acc0 = acc1;
    acc1 = acc2;
    acc2 = init;
  }
}

// Output planes k0 + i (i < count) at out + (k0 + i) * out_plane from input plane
// (k0 + i) / mult at x + ((k0 + i) / mult) * x_plane, taps w + (k0 + i) * R * S and
// bias[k0 + i] (0 if null). KR, KS > 0: the kernel's size known at compile time.
template <typename V, int KR, int KS, bool kStride1>
inline void small_planes_correlate(const SmallPlanes& g, long k0, long count,
                                   const typename V::scalar* x, long x_plane,
                                   const typename V::scalar* w, const typename V::scalar* bias,
                                   bool relu, typename V::scalar* out, long out_plane) {
  using T = typename V::scalar;
  using vec = typename V::vec;
  const ColumnTaps<V, KS, kStride1> taps(g);
  const long R = KR > 0 ? KR : g.R, S = KS > 0 ? KS : g.S;
  // the geometry in locals: the stores below may alias anything, g included
  const long H = g.H, Q = g.Q, sh = g.sh, dh = g.dh, pad_top = g.pad_top;
  const long x_pitch = g.x_pitch, out_pitch = g.out_pitch, mult = g.mult;
  for (long i = 0; i < count; ++i) {
    const long k = k0 + i;
    const T* xp = x + (mult == 1 ? k : k / mult) * x_plane;
    const T* wk = w + k * R * S;
    T* op = out + k * out_plane;
    const vec init = V::broadcast(bias ? bias[k] : T(0));
    vec wv[KR * KS > 0 ? KR * KS : 1];
    if constexpr (KR * KS > 0) {
#pragma GCC unroll 25
      for (int t = 0; t < KR * KS; ++t) wv[t] = V::broadcast(wk[t]);
    }
    if constexpr (kRollingShape<V, KR, KS, kStride1>) {
      if (rolls(g)) {
        small_plane_rolling<V>(g, taps, xp, wv, init, relu, op);
        continue;
      }
    }
    for_each_output_row(g, R, [&](long p, bool checked) {
      // one sum per kernel row (two for a kernel size known at run time), added at the end:
      // short dependency chains, so that consecutive output rows overlap
      constexpr int kSums = KR > 0 ? KR : 2;
      vec acc[kSums];
      acc[0] = init;
      for (int j = 1; j < kSums; ++j) acc[j] = V::zero();
#pragma GCC unroll 5
      for (long r = 0; r < R; ++r) {
        const long ih = p * sh + r * dh - pad_top;
        if (checked && (ih < 0 || ih >= H)) continue;
        taps.each(xp, ih * x_pitch, [&](long s, vec v) {
          const vec wt = KR * KS > 0 ? wv[r * S + s] : V::broadcast(wk[r * S + s]);
          acc[r % kSums] = V::fma(wt, v, acc[r % kSums]);
        });
      }
      vec sum = acc[0];
      for (int j = 1; j < kSums; ++j) sum = V::add(sum, acc[j]);
      if (relu) sum = V::relu(sum);
      V::store_n(op + p * out_pitch, sum, Q);
    });
  }
}

// small_planes_dot's sums at stride 1, dilation 1 and a 3x3 kernel, pad_top 0-2, the input
// rows in order as in small_plane_rolling: each row's three column taps loaded once for the
// three grad_output rows g0, g1, g2 (rows p0, p0 + 1, p0 + 2) that read it. Tap t still adds
// its terms in the order of p, so the sums are bitwise small_planes_dot's.
template <typename V, typename Taps>
inline void small_plane_dot_rolling(const SmallPlanes& g, const Taps& taps,
                                    const typename V::scalar* x, const typename V::scalar* gy,
                                    typename DotSums<V>::vec* sums_out) {
  using vec = typename V::vec;
  using Sums = DotSums<V>;
  const long H = g.H, P = g.P, Q = g.Q, x_pitch = g.x_pitch, gy_pitch = g.out_pitch;
  const long gy_extent = (P - 1) * gy_pitch + Q;
  const typename V::Lanes gy_lanes = V::lanes(0, Q);
  const auto row = [&](long p) {
    return p >= 0 && p < P ? load_row<V>(gy, p * gy_pitch, gy_extent, Q, gy_lanes) : V::zero();
  };
  // the sums in locals: through the caller's pointer, which may alias x (vector types may
  // alias anything), every FMA's sum went to memory and back (8x512x14x14: 1.6x the time)
  typename DotSums<V>::vec sums[9];
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) sums[t] = sums_out[t];
  vec g0 = row(g.pad_top - 2), g1 = row(g.pad_top - 1);  // the rows reading input row 0
  for (long ih = 0; ih < H; ++ih) {
    const long p0 = ih + g.pad_top - 2;  // >= -2
    if (p0 >= P) break;
    const bool has0 = p0 >= 0, has1 = p0 + 1 >= 0 && p0 + 1 < P, has2 = p0 + 2 < P;
    const vec g2 = row(p0 + 2);
    if (has0 && has2) {
      taps.each(x, ih * x_pitch, [&](long s, vec v) {
        sums[6 + s] = Sums::fma(g0, v, sums[6 + s]);
        sums[3 + s] = Sums::fma(g1, v, sums[3 + s]);
        sums[s] = Sums::fma(g2, v, sums[s]);
      });
    } else {  // the first and last rows: only the grad_output rows that exist
      taps.each(x, ih * x_pitch, [&](long s, vec v) {
        if (has0) sums[6 + s] = Sums::fma(g0, v, sums[6 + s]);
        if (has1) sums[3 + s] = Sums::fma(g1, v, sums[3 + s]);
        if (has2) sums[s] = Sums::fma(g2, v, sums[s]);
      });
    }
    g0 = g1;
    g1 = g2;
  }
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) sums_out[t] = sums[t];
}

// The weight gradient's dot products of `count` plane pairs, in taps_dot's partial-sum slots:
// acc[t * kDotLanes + lane] += the lane's share of sum_{i, p, q} gy_i[p, q] * x_i[tap t of
// (p, q)], pair i at x + i * x_step (rows g.x_pitch apart) and gy + i * gy_step (rows
// g.out_pitch apart), t = r * S + s. The sums stay in registers over the pairs.
template <typename V, int KR, int KS, bool kStride1>
inline void small_planes_dot(const SmallPlanes& g, long count, const typename V::scalar* x,
                             long x_step, const typename V::scalar* gy, long gy_step,
                             typename V::scalar* acc) {
  using vec = typename V::vec;
  using Sums = DotSums<V>;
  const ColumnTaps<V, KS, kStride1> taps(g);
  const long R = KR > 0 ? KR : g.R, S = KS > 0 ? KS : g.S;
  const long H = g.H, Q = g.Q, sh = g.sh, dh = g.dh, pad_top = g.pad_top;
  const long x_pitch = g.x_pitch, gy_pitch = g.out_pitch;
  const long gy_extent = (g.P - 1) * gy_pitch + Q;
  const typename V::Lanes gy_lanes = V::lanes(0, Q);
  constexpr bool kInRegisters = KR * KS > 0;
  typename Sums::vec sums[kInRegisters ? KR * KS : 1];
  if constexpr (kInRegisters) {
#pragma GCC unroll 25
    for (int t = 0; t < KR * KS; ++t) sums[t] = Sums::load(acc + t * kDotLanes);
  }
  for (long i = 0; i < count; ++i, x += x_step, gy += gy_step) {
    if constexpr (kRollingShape<V, KR, KS, kStride1>) {
      if (rolls(g)) {
        small_plane_dot_rolling<V>(g, taps, x, gy, sums);
        continue;
      }
    }
    for_each_output_row(g, R, [&](long p, bool checked) {
      const vec gv = load_row<V>(gy, p * gy_pitch, gy_extent, Q, gy_lanes);
#pragma GCC unroll 5
      for (long r = 0; r < R; ++r) {
        const long ih = p * sh + r * dh - pad_top;
        if (checked && (ih < 0 || ih >= H)) continue;
        taps.each(x, ih * x_pitch, [&](long s, vec v) {
          const long t = r * S + s;
          if constexpr (kInRegisters) {
            sums[t] = Sums::fma(gv, v, sums[t]);
          } else {
            Sums::store(acc + t * kDotLanes, Sums::fma(gv, v, Sums::load(acc + t * kDotLanes)));
          }
        });
      }
    });
  }
  if constexpr (kInRegisters) {
#pragma GCC unroll 25
    for (int t = 0; t < KR * KS; ++t) Sums::store(acc + t * kDotLanes, sums[t]);
  }
}

// grad_input over small planes, any strides, channel multiplier 1: g is the forward
// geometry, and both grad_input's rows (W) and grad_output's (Q) fit in one vector. Plane k
// (k0 <= k < k0 + count) of grad_input at dx + k * dx_plane (rows g.x_pitch apart) gathers
//   dx[h, w] = sum over taps (r, s) of w[r, s] * gy[(h + pad_top - r dh) / sh,
//                                                  (w + pad_left - s dw) / sw]
// over the terms whose divisions are exact and land inside grad_output (plane k at
// gy + k * gy_plane, rows g.out_pitch apart): each grad_output row is loaded once per
// kernel row, and each column tap picks, lane w, the element its column maps to.
template <typename V, int KR, int KS>
inline void small_planes_transposed(const SmallPlanes& g, long k0, long count,
                                    const typename V::scalar* gy, long gy_plane,
                                    const typename V::scalar* w, typename V::scalar* dx,
                                    long dx_plane) {
  using T = typename V::scalar;
  using vec = typename V::vec;
  constexpr int Wv = V::width;
  const long R = KR > 0 ? KR : g.R, S = KS > 0 ? KS : g.S;
  typename V::Pick pick[KS > 0 ? KS : kSmallPlanesMaxS];
  for (long s = 0; s < S; ++s) {
    long index[Wv];
    for (long l = 0; l < Wv; ++l) {
      const long e = l + g.pad_left - s * g.dw;  // sw * (grad_output column), if exact
      index[l] = l < g.W && e >= 0 && e % g.sw == 0 && e / g.sw < g.Q ? e / g.sw : -1;
    }
    pick[s] = V::pick(index);
  }
  const long H = g.H, W = g.W, P = g.P, Q = g.Q, sh = g.sh, dh = g.dh, pad_top = g.pad_top;
  const long dx_pitch = g.x_pitch, gy_pitch = g.out_pitch;
  const long gy_extent = (P - 1) * gy_pitch + Q;
  const typename V::Lanes gy_lanes = V::lanes(0, Q);
  for (long i = 0; i < count; ++i) {
    const long k = k0 + i;
    const T* gk = gy + k * gy_plane;
    const T* wk = w + k * R * S;
    T* dk = dx + k * dx_plane;
    for (long h = 0; h < H; ++h) {
      constexpr int kSums = KR > 0 ? KR : 2;
      vec acc[kSums];
      for (int j = 0; j < kSums; ++j) acc[j] = V::zero();
#pragma GCC unroll 5
      for (long r = 0; r < R; ++r) {
        const long e = h + pad_top - r * dh;  // sh * (grad_output row), if exact
        if (e < 0 || e % sh != 0 || e / sh >= P) continue;
        const vec row = load_row<V>(gk, (e / sh) * gy_pitch, gy_extent, Q, gy_lanes);
#pragma GCC unroll 5
        for (long s = 0; s < S; ++s) {
          acc[r % kSums] = V::fma(V::broadcast(wk[r * S + s]), V::picked(row, V::zero(), pick[s]),
                                  acc[r % kSums]);
        }
      }
      vec sum = acc[0];
      for (int j = 1; j < kSums; ++j) sum = V::add(sum, acc[j]);
      V::store_n(dk + h * dx_pitch, sum, W);
    }
  }
}

// ---- stride 2 ----------------------------------------------------------------------------
//
// NCHW planes at stride 2 both ways and a 3x3 kernel at dilation 1 (MobileNets' downsampling
// layers), rows of any width, straight from the tensors. Forward: output column q's tap s
// reads input column 2q + s - pad_left, the even or odd columns of one of two windows of
// 2 * width columns; each window is loaded as two vectors and split by V::deinterleave2_any
// (AVX2: one in-lane shuffle per half, in a lane order that V::unscramble puts back once per
// output vector; the small-plane kernel's Pick took two cross-lane permutes and a blend per
// tap). Up to kStride2Group blocks of output columns go down the plane side by side, row
// after row, reading each input row once: row 2p + 2 - pad_top is kernel row 2 of output
// row p and kernel row 0 of row p + 1 (a walk down one block at a time read the input in
// short pieces of many rows: MobileNet's 112x112 layer 1.5x slower). grad_input:
// input columns 2k and 2k + 1 (k in a vector) each gather grad_output columns k + d of the
// taps of their parity, interleaved back by V::interleave2. Columns outside a row are zeroed
// as they are loaded.

constexpr int kStride2Group = 8;

// Lanes [lo, hi) of a vector, clamped to [0, width) (empty where hi <= lo).
template <typename V>
inline typename V::Lanes clamped_lanes(long lo, long hi) {
  constexpr long Wv = V::width;
  lo = lo < 0 ? 0 : (lo > Wv ? Wv : lo);
  hi = hi < lo ? lo : (hi > Wv ? Wv : hi);
  return V::lanes(lo, hi);
}

// Elements [c, c + width) of the row `off` elements into a plane of `extent` elements, zero
// outside the row's [0, W): a plain load inside the row, else its lanes inside the row, by a
// plain load and a mask where the whole vector lies within the plane.
template <typename V>
inline typename V::vec load_row_part(const typename V::scalar* plane, long off, long extent,
                                     long c, long W) {
  constexpr long Wv = V::width;
  if (c >= 0 && c + Wv <= W) return V::load(plane + off + c);
  const typename V::Lanes m = clamped_lanes<V>(-c, W - c);
  const long at = off + c;
  return at >= 0 && at + Wv <= extent ? V::load_lanes_within(plane + at, m)
                                      : V::load_lanes(plane + at, m);
}

// load_row_part at a column c that is the same in many rows: its lanes found once.
template <typename V>
struct RowPart {
  long c;
  bool whole;  // [c, c + width) inside the row
  typename V::Lanes lanes;

  RowPart(long c_, long W) : c(c_), whole(c_ >= 0 && c_ + V::width <= W),
                             lanes(clamped_lanes<V>(-c_, W - c_)) {}

  typename V::vec load(const typename V::scalar* plane, long off, long extent) const {
    const long at = off + c;
    if (whole) return V::load(plane + at);
    return at >= 0 && at + V::width <= extent ? V::load_lanes_within(plane + at, lanes)
                                              : V::load_lanes(plane + at, lanes);
  }
};

// One block of output columns [q0, q0 + width) at stride 2: its input columns from c, the
// four vectors [c, c + width), [c + width, c + 2 width), and the same two columns on; where
// they reach outside the row, each vector's lanes inside it. Lanes of outputs q >= Q read
// zero too (their columns lie past 2 * Q + c - 2 * q0 in each window), so that the weight
// gradient's blocks may end past Q.
template <typename V>
struct Stride2Block {
  static constexpr long kOffsets[4] = {0, V::width, 2, 2 + V::width};
  long q0, c;
  bool inside;
  typename V::Lanes lanes[4];

  void set(long q0_, long shift, long W, long Q) {
    q0 = q0_;
    c = 2 * q0_ + shift;
    long end[2];  // each window's columns end at the row's end or output Q's
    for (int i = 0; i < 2; ++i) end[i] = W < 2 * Q + shift + 2 * i ? W : 2 * Q + shift + 2 * i;
    inside = c >= 0 && c + 2 * V::width <= end[0] && c + 2 + 2 * V::width <= end[1];
    for (int i = 0; i < 4; ++i) {
      lanes[i] = clamped_lanes<V>(-c - kOffsets[i], end[i / 2] - c - kOffsets[i]);
    }
  }

  // The three column taps of the row `off` elements into a plane of `extent` elements, in
  // V's scrambled lane order: the odd or even columns of the window from column c (2 * q0 +
  // shift, shift = 2 * floor(-pad_left / 2)) or of the one two columns on, taps
  // {even, odd, even'} (first 0) or {odd, even', odd'} (first 1).
  void taps(const typename V::scalar* plane, long off, long extent, int first,
            typename V::vec (&t)[3]) const {
    using vec = typename V::vec;
    const typename V::scalar* row = plane + off + c;
    vec a[4];
    if (inside) {
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) a[i] = V::load(row + kOffsets[i]);
    } else if (off + c >= 0 && off + c + 2 + 2 * V::width <= extent) {
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) a[i] = V::load_lanes_within(row + kOffsets[i], lanes[i]);
    } else {
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) a[i] = V::load_lanes(row + kOffsets[i], lanes[i]);
    }
    vec even, odd, even2, odd2;
    V::deinterleave2_any(a[0], a[1], even, odd);
    V::deinterleave2_any(a[2], a[3], even2, odd2);
    t[0] = first == 0 ? even : odd;
    t[1] = first == 0 ? odd : even2;
    t[2] = first == 0 ? even2 : odd2;
  }
};

// Column blocks of a row of n outputs: fn(q0) for q0 = 0, width, ..., the last moved back to
// end at n (n >= width) or the only one at 0.
template <typename V, typename Fn>
inline void for_each_column_block(long n, Fn&& fn) {
  const long last = n > V::width ? n - V::width : 0;
  for (long q0 = 0;; q0 += V::width) {
    if (q0 > last) q0 = last;
    fn(q0);
    if (q0 == last) return;
  }
}

// small_planes_correlate's sums for a stride2_shape. Each output adds its taps in t order
// from init.
template <typename V>
inline void stride2_planes_correlate(const SmallPlanes& g, long k0, long count,
                                     const typename V::scalar* x, long x_plane,
                                     const typename V::scalar* w,
                                     const typename V::scalar* bias, bool relu,
                                     typename V::scalar* out, long out_plane) {
  using T = typename V::scalar;
  using vec = typename V::vec;
  const long H = g.H, P = g.P, Q = g.Q, x_pitch = g.x_pitch, out_pitch = g.out_pitch;
  const long pad_top = g.pad_top, mult = g.mult, extent = (g.H - 1) * g.x_pitch + g.W;
  const long shift = -2 * ((g.pad_left + 1) / 2);
  const int first = static_cast<int>(-g.pad_left - shift);
  constexpr int kGroup = kStride2Group;
  for (long i = 0; i < count; ++i) {
    const long k = k0 + i;
    const T* xp = x + (mult == 1 ? k : k / mult) * x_plane;
    T* op = out + k * out_plane;
    const vec init = V::broadcast(bias ? bias[k] : T(0));
    vec wv[9];
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t) wv[t] = V::broadcast(w[k * 9 + t]);
    const auto group = [&](const Stride2Block<V>* blocks, int n) {
      vec next[kGroup];  // each block's output row p + 1: its kernel row 0
      for (int b = 0; b < n; ++b) next[b] = init;
      for (long p = 0; p < P; ++p) {
        const long ih = 2 * p - pad_top;
        const bool row0 = p == 0 && ih >= 0 && ih < H, row1 = ih + 1 >= 0 && ih + 1 < H;
        const bool row2 = ih + 2 >= 0 && ih + 2 < H;
        for (int b = 0; b < n; ++b) {
          vec acc = next[b], nb = init, t[3];
          if (row0) {
            blocks[b].taps(xp, ih * x_pitch, extent, first, t);
#pragma GCC unroll 3
            for (int s = 0; s < 3; ++s) acc = V::fma(wv[s], t[s], acc);
          }
          if (row1) {
            blocks[b].taps(xp, (ih + 1) * x_pitch, extent, first, t);
#pragma GCC unroll 3
            for (int s = 0; s < 3; ++s) acc = V::fma(wv[3 + s], t[s], acc);
          }
          if (row2) {
            blocks[b].taps(xp, (ih + 2) * x_pitch, extent, first, t);
#pragma GCC unroll 3
            for (int s = 0; s < 3; ++s) {
              acc = V::fma(wv[6 + s], t[s], acc);
              nb = V::fma(wv[s], t[s], nb);
            }
          }
          next[b] = nb;
          vec y = V::unscramble(acc);
          if (relu) y = V::relu(y);
          const long q0 = blocks[b].q0;
          if (q0 + V::width <= Q) {
            V::store(op + p * out_pitch + q0, y);
          } else {
            V::store_n(op + p * out_pitch + q0, y, Q - q0);
          }
        }
      }
    };
    Stride2Block<V> blocks[kGroup];  // set per plane: cheap next to a plane's rows
    int n = 0;
    for_each_column_block<V>(Q, [&](long q0) {
      blocks[n++].set(q0, shift, g.W, Q);
      if (n == kGroup) group(blocks, n), n = 0;
    });
    if (n > 0) group(blocks, n);
  }
}

// small_planes_dot's sums for that geometry: blocks of output columns from 0 on, the last
// ending past Q (its lanes past Q read zero from both operands), each grad_output row put in
// the taps' lane order (V::unscramble is its own inverse) and multiplied by the taps of the
// kernel rows that reach the input.
template <typename V>
inline void stride2_planes_dot(const SmallPlanes& g, long count, const typename V::scalar* x,
                               long x_step, const typename V::scalar* gy, long gy_step,
                               typename V::scalar* acc) {
  using vec = typename V::vec;
  constexpr long Wv = V::width;
  const long H = g.H, P = g.P, Q = g.Q, x_pitch = g.x_pitch, gy_pitch = g.out_pitch;
  const long pad_top = g.pad_top, extent = (g.H - 1) * g.x_pitch + g.W;
  const long gy_extent = (P - 1) * gy_pitch + Q;
  const long shift = -2 * ((g.pad_left + 1) / 2);
  const int first = static_cast<int>(-g.pad_left - shift);
  vec sums[9];
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) sums[t] = V::load(acc + t * kDotLanes);
  constexpr int kGroup = kStride2Group;  // blocks side by side, row after row
  for (long g0 = 0; g0 < Q; g0 += kGroup * Wv) {
    Stride2Block<V> blocks[kGroup];
    typename V::Lanes gy_lanes[kGroup];
    int n = 0;
    for (long q0 = g0; q0 < Q && n < kGroup; q0 += Wv, ++n) {
      blocks[n].set(q0, shift, g.W, Q);
      gy_lanes[n] = clamped_lanes<V>(0, Q - q0);
    }
    for (long i = 0; i < count; ++i) {
      const typename V::scalar* xp = x + i * x_step;
      const typename V::scalar* gp = gy + i * gy_step;
      for (long p = 0; p < P; ++p) {
        for (int b = 0; b < n; ++b) {
          const long q0 = blocks[b].q0, off = p * gy_pitch + q0;
          const vec gv = V::unscramble(
              q0 + Wv <= Q ? V::load(gp + off)
              : off + Wv <= gy_extent ? V::load_lanes_within(gp + off, gy_lanes[b])
                                      : V::load_lanes(gp + off, gy_lanes[b]));
#pragma GCC unroll 3
          for (int r = 0; r < 3; ++r) {
            const long ih = 2 * p - pad_top + r;
            if (ih < 0 || ih >= H) continue;
            vec t[3];
            blocks[b].taps(xp, ih * x_pitch, extent, first, t);
#pragma GCC unroll 3
            for (int s = 0; s < 3; ++s) sums[r * 3 + s] = V::fma(gv, t[s], sums[r * 3 + s]);
          }
        }
      }
    }
  }
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) V::store(acc + t * kDotLanes, sums[t]);
}

// small_planes_transposed for that geometry: grad_input planes k0 <= k < k0 + count from
// grad_output's. Input column 2k + j (j = 0, 1) takes the column taps s of parity
// j + pad_left, each from grad_output column k + (j + pad_left - s) / 2, which is k + d0 or
// k + d0 + 1; an input row the kernel rows r (rising) whose grad_output row
// (h + pad_top - r) / 2 is exact and inside. kPadOdd: pad_left is odd.
template <typename V, bool kPadOdd>
inline void stride2_planes_transposed_parity(const SmallPlanes& g, long k0, long count,
                                             const typename V::scalar* gy, long gy_plane,
                                             const typename V::scalar* w,
                                             typename V::scalar* dx, long dx_plane,
                                             bool stream) {
  using T = typename V::scalar;
  using vec = typename V::vec;
  constexpr long Wv = V::width;
  // tap s: input column parity j and whether it reads column k + d0 + 1 (else k + d0)
  constexpr int kParity[3] = {kPadOdd ? 1 : 0, kPadOdd ? 0 : 1, kPadOdd ? 1 : 0};
  constexpr bool kSecond[3] = {true, !kPadOdd, false};
  const long H = g.H, W = g.W, P = g.P, Q = g.Q, pad_top = g.pad_top;
  const long dx_pitch = g.x_pitch, gy_pitch = g.out_pitch;
  const long gy_extent = (P - 1) * gy_pitch + Q;
  const long d0 = kPadOdd ? (g.pad_left - 1) / 2 : g.pad_left / 2 - 1;
  // The column blocks (for_each_column_block) are the same in every row and plane: the
  // lanes of the loads of the first and the last, the blocks that may reach outside the
  // grad_output rows, are found once here, not per row by load_row_part. Planes one block
  // wide ((W + 1) / 2 <= V::width: MobileNet's 14x14 and 7x7) hold the lanes in registers.
  const long last = (W + 1) / 2 > Wv ? (W + 1) / 2 - Wv : 0;
  const RowPart<V> edges[2][2] = {{{d0, Q}, {d0 + 1, Q}}, {{last + d0, Q}, {last + d0 + 1, Q}}};
  const bool one_block = (W + 1) / 2 <= Wv;
  const typename V::Lanes lanes_a = edges[0][0].lanes, lanes_b = edges[0][1].lanes;
  for (long i = 0; i < count; ++i) {
    const long k = k0 + i;
    const T* gk = gy + k * gy_plane;
    T* dk = dx + k * dx_plane;
    vec wv[9];
#pragma GCC unroll 9
    for (int t = 0; t < 9; ++t) wv[t] = V::broadcast(w[k * 9 + t]);
    for (long h = 0; h < H; ++h) {
      long offs[2];  // the grad_output rows of kernel rows rs[0..rows)
      int rs[2], rows = 0;
      for (int r = 0; r < 3; ++r) {
        const long e = h + pad_top - r;
        if (e >= 0 && e % 2 == 0 && e / 2 < P) {
          offs[rows] = (e / 2) * gy_pitch;
          rs[rows++] = r;
        }
      }
      T* row = dk + h * dx_pitch;
      // load(off, c, a, b): grad_output row `off`'s columns [c, c + width) and [c + 1, c + 1 +
      // width), zero outside [0, Q)
      const auto block = [&](long c0, const auto& load) __attribute__((always_inline)) {
        vec sum[2] = {V::zero(), V::zero()};  // input columns 2k, 2k + 1
        for (int u = 0; u < rows; ++u) {
          vec a, b;
          load(offs[u], c0 + d0, a, b);
          const vec* wr = wv + 3 * rs[u];
#pragma GCC unroll 3
          for (int s = 0; s < 3; ++s) {
            sum[kParity[s]] = V::fma(wr[s], kSecond[s] ? b : a, sum[kParity[s]]);
          }
        }
        vec lo, hi;
        V::interleave2(sum[0], sum[1], lo, hi);
        const long n = W - 2 * c0;  // input columns from 2 * c0 to the row's end
        if (stream) {  // n >= 2 * Wv, aligned
          stream_or_store<V>(row + 2 * c0, lo, 0);
          stream_or_store<V>(row + 2 * c0 + Wv, hi, 0);
        } else if (n >= 2 * Wv) {
          V::store(row + 2 * c0, lo);
          V::store(row + 2 * c0 + Wv, hi);
        } else if (n > Wv) {
          V::store(row + 2 * c0, lo);
          V::store_n(row + 2 * c0 + Wv, hi, n - Wv);
        } else {
          V::store_n(row + 2 * c0, lo, n);
        }
      };
      if (one_block) {
        block(0, [&](long off, long c, vec& a, vec& b) {
          const long at = off + c;
          a = at >= 0 && at + Wv <= gy_extent ? V::load_lanes_within(gk + at, lanes_a)
                                              : V::load_lanes(gk + at, lanes_a);
          b = at + 1 >= 0 && at + 1 + Wv <= gy_extent ? V::load_lanes_within(gk + at + 1, lanes_b)
                                                      : V::load_lanes(gk + at + 1, lanes_b);
        });
        continue;
      }
      for_each_column_block<V>((W + 1) / 2, [&](long c0) {
        const RowPart<V>* edge = c0 == 0 ? edges[0] : c0 == last ? edges[1] : nullptr;
        block(c0, [&](long off, long c, vec& a, vec& b) __attribute__((always_inline)) {
          if (c >= 0 && c + 1 + Wv <= Q) {
            a = V::load(gk + off + c);
            b = V::load(gk + off + c + 1);
          } else if (edge != nullptr) {
            a = edge[0].load(gk, off, gy_extent);
            b = edge[1].load(gk, off, gy_extent);
          } else {
            a = load_row_part<V>(gk, off, gy_extent, c, Q);
            b = load_row_part<V>(gk, off, gy_extent, c + 1, Q);
          }
        });
      });
    }
  }
}

// `stream`: non-temporal stores where every pair of vectors is whole and aligned (rows of a
// multiple of 2 * V::width, aligned rows); else ordinary ones.
template <typename V>
inline void stride2_planes_transposed(const SmallPlanes& g, long k0, long count,
                                      const typename V::scalar* gy, long gy_plane,
                                      const typename V::scalar* w, typename V::scalar* dx,
                                      long dx_plane, bool stream) {
  stream = stream && g.W % (2 * V::width) == 0 && g.x_pitch % V::width == 0 &&
           dx_plane % V::width == 0 && vector_aligned<V>(dx);
  if (g.pad_left % 2 == 1) {
    return stride2_planes_transposed_parity<V, true>(g, k0, count, gy, gy_plane, w, dx,
                                                     dx_plane, stream);
  }
  stride2_planes_transposed_parity<V, false>(g, k0, count, gy, gy_plane, w, dx, dx_plane,
                                             stream);
}

// fn(VectorType<V>{}, KernelShape<...>{}): the vectors and kernel shape the small-plane kernels
// run g on: rows in one VEC, or else in one WIDE (VEC itself, or Doubled<VEC> at stride_w 1:
// depthwise.cpp's small_planes_fit); 3x3 compiled apart, stride_w 1 or 2.
template <typename V>
struct VectorType {
  using type = V;
};

template <typename VEC, typename WIDE, typename Fn>
inline void with_small_planes_kernel(const SmallPlanes& g, Fn&& fn) {
  const bool k3x3 = g.R == 3 && g.S == 3;
  if (!small_rows_fit(g, VEC::width, false)) {
    if (k3x3) return fn(VectorType<WIDE>{}, KernelShape<3, 3, true>{});
    return fn(VectorType<WIDE>{}, KernelShape<0, 0, true>{});
  }
  if (g.sw == 1) {
    if (k3x3) return fn(VectorType<VEC>{}, KernelShape<3, 3, true>{});
    return fn(VectorType<VEC>{}, KernelShape<0, 0, true>{});
  }
  if (k3x3) return fn(VectorType<VEC>{}, KernelShape<3, 3, false>{});
  fn(VectorType<VEC>{}, KernelShape<0, 0, false>{});
}

}  // namespace cnnops::cpu::detail

// Defines the entry points of depthwise.h for one ISA, inside `namespace <isa>`: VEC the
// ISA's vectors, WIDE those of the small-plane kernels for rows longer than one VEC
// (small_planes_transposed takes rows of one VEC).
#define CNNOPS_DEPTHWISE_ENTRY_POINTS(T, VEC, WIDE)                                           \
  void taps_correlate(long n, int ntaps, const T* const* src, const T* w, T init, T* out) {   \
    if (ntaps == 9) return detail::taps_correlate<VEC, 9>(n, ntaps, src, w, init, out);      \
    if (ntaps == 25) return detail::taps_correlate<VEC, 25>(n, ntaps, src, w, init, out);    \
    detail::taps_correlate<VEC, 0>(n, ntaps, src, w, init, out);                             \
  }                                                                                           \
  void taps_correlate_rows(long rows, long cols, int ntaps, const T* const* src,              \
                           long src_pitch, const T* w, T init, T* out, long out_pitch) {     \
    if (ntaps == 9 && cols >= VEC::width) {                                                   \
      switch (detail::grid_step<3, 3>(src, src_pitch)) {                                      \
        case 1:                                                                               \
          return detail::grid_correlate_rows<VEC, 3, 3, 1>(rows, cols, src, src_pitch, w,     \
                                                           init, out, out_pitch);             \
        case -1:                                                                              \
          return detail::grid_correlate_rows<VEC, 3, 3, -1>(rows, cols, src, src_pitch, w,    \
                                                            init, out, out_pitch);            \
      }                                                                                       \
    }                                                                                         \
    if (ntaps > 9 && cols >= VEC::width) {                                                    \
      switch (detail::grid_planes_step<3, 3>(src, ntaps, src_pitch)) {                        \
        case 1:                                                                               \
          return detail::grid_planes_correlate_rows<VEC, 3, 3, 1>(rows, cols, ntaps, src,     \
                                                                  src_pitch, w, init, out,   \
                                                                  out_pitch);                \
        case -1:                                                                              \
          return detail::grid_planes_correlate_rows<VEC, 3, 3, -1>(rows, cols, ntaps, src,    \
                                                                   src_pitch, w, init, out,  \
                                                                   out_pitch);               \
      }                                                                                       \
    }                                                                                         \
    if (ntaps == 9)                                                                           \
      return detail::taps_correlate_rows<VEC, 9>(rows, cols, ntaps, src, src_pitch, w, init,  \
                                                 out, out_pitch);                             \
    if (ntaps == 25)                                                                          \
      return detail::taps_correlate_rows<VEC, 25>(rows, cols, ntaps, src, src_pitch, w, init, \
                                                  out, out_pitch);                            \
    detail::taps_correlate_rows<VEC, 0>(rows, cols, ntaps, src, src_pitch, w, init, out,     \
                                        out_pitch);                                           \
  }                                                                                           \
  void grid_plane_rows(long rows, long cols, const T* x, long x_pitch, const T* w, T init,    \
                       bool relu, T* out, long out_pitch, bool stream) {                      \
    detail::grid_plane_rows<VEC>(rows, cols, x, x_pitch, w, init, relu, out, out_pitch,       \
                                 stream);                                                     \
  }                                                                                           \
  void grid_plane_dot(long rows, long cols, const T* x, long x_pitch, const T* gy,           \
                      long gy_pitch, T* acc) {                                                \
    detail::grid_plane_dot<VEC>(rows, cols, x, x_pitch, gy, gy_pitch, acc);                   \
  }                                                                                           \
  void copy_rows(long rows, long cols, const T* src, long src_pitch, T* dst, long dst_pitch,    \
                 T* lanes) {                                                                  \
    detail::copy_rows<VEC>(rows, cols, src, src_pitch, dst, dst_pitch, lanes);                \
  }                                                                                           \
  void padded_plane_rows(long rows, long cols, const T* x, long x_pitch, const T* w, bool add,  \
                         T* out, long out_pitch) {                                            \
    detail::padded_plane_rows<VEC>(rows, cols, x, x_pitch, w, add, out, out_pitch);           \
  }                                                                                           \
  void grid_plane_dot2(long rows, long cols, const T* x, long x_pitch, const T* gy0,          \
                       const T* gy1, long gy_pitch, T* acc0, T* acc1) {                       \
    detail::grid_plane_dot2<VEC>(rows, cols, x, x_pitch, gy0, gy1, gy_pitch, acc0, acc1);     \
  }                                                                                           \
  void taps_dot(long n, int ntaps, const T* const* src, const T* g, T* acc) {                 \
    if (ntaps == 9) return detail::taps_dot_unrolled<VEC, 9>(n, src, g, acc);                 \
    if (ntaps == 25) return detail::taps_dot_unrolled<VEC, 25>(n, src, g, acc);               \
    detail::taps_dot_generic<VEC>(n, ntaps, src, g, acc);                                     \
  }                                                                                           \
  void deinterleave_rows(long rows, long n, int k, const T* src, long src_pitch,              \
                         T* const* dst, long dst_pitch) {                                     \
    detail::deinterleave_rows<VEC>(rows, n, k, src, src_pitch, dst, dst_pitch);               \
  }                                                                                           \
  void interleave_rows(long rows, long n, int k, const T* const* src, long src_pitch, T* dst, \
                       long dst_pitch) {                                                      \
    detail::interleave_rows<VEC>(rows, n, k, src, src_pitch, dst, dst_pitch);                 \
  }                                                                                           \
  void channels_correlate(long count, long C, int ntaps, const T* const* src, long src_step,  \
                          const T* const* w, const T* init, T* out, long out_step,            \
                          bool stream) {                                                      \
    detail::channels_correlate<VEC>(count, C, ntaps, src, src_step, w, init, out, out_step,   \
                                    stream);                                                  \
  }                                                                                           \
  void channels_dot(long count, long C, int ntaps, const T* const* src, long src_step,        \
                    const T* g, long g_step, T* const* acc) {                                 \
    detail::channels_dot<VEC>(count, C, ntaps, src, src_step, g, g_step, acc);                \
  }                                                                                           \
  void channels_dot_3x3_pair(long count, long C, int pad, const T* x, long x_row,            \
                             long x_step, const T* g, long g_row, long g_step, T* const* acc) { \
    detail::channels_dot_3x3_pair<VEC>(count, C, pad, x, x_row, x_step, g, g_row, g_step,     \
                                       acc);                                                  \
  }                                                                                           \
  void gather_channels(long rows, long cols, long n, long lanes, const T* src, long src_row,  \
                       long src_step, T* dst, long dst_row) {                                 \
    detail::gather_channels<VEC>(rows, cols, n, lanes, src, src_row, src_step, dst, dst_row); \
  }                                                                                           \
  void channels_dot_block(long rows, long cols, int ntaps, const T* x, long x_row,            \
                          long x_step, const long* offset, const T* g, long g_row,            \
                          long g_step, long lanes, T* const* acc) {                           \
    detail::channels_dot_block<VEC>(rows, cols, ntaps, x, x_row, x_step, offset, g, g_row,    \
                                    g_step, lanes, acc);                                      \
  }                                                                                           \
  CNNOPS_DEPTHWISE_SMALL_PLANE_ENTRY_POINTS(T, VEC, WIDE)

// The small-plane entry points alone (small_planes_correlate, _transposed, _dot), for one ISA
// inside `namespace <isa>`: also built by depthwise_avx512vl.cpp.
#define CNNOPS_DEPTHWISE_SMALL_PLANE_ENTRY_POINTS(T, VEC, WIDE)                               \
  void small_planes_correlate(const SmallPlanes& g, long k0, long count, const T* x,          \
                              long x_plane, const T* w, const T* bias, bool relu, T* out,     \
                              long out_plane) {                                               \
    if (stride2_shape(g))                                                                     \
      return detail::stride2_planes_correlate<VEC>(g, k0, count, x, x_plane, w, bias, relu,   \
                                                   out, out_plane);                           \
    detail::with_small_planes_kernel<VEC, WIDE>(g, [&](auto v, auto k) {                      \
      using V = typename decltype(v)::type;                                                   \
      using K = decltype(k);                                                                  \
      detail::small_planes_correlate<V, K::kR, K::kS, K::kUnitStride>(                        \
          g, k0, count, x, x_plane, w, bias, relu, out, out_plane);                           \
    });                                                                                       \
  }                                                                                           \
  void small_planes_transposed(const SmallPlanes& g, long k0, long count, const T* gy,        \
                               long gy_plane, const T* w, T* dx, long dx_plane, bool stream) { \
    if (stride2_shape(g))                                                                     \
      return detail::stride2_planes_transposed<VEC>(g, k0, count, gy, gy_plane, w, dx,        \
                                                    dx_plane, stream);                        \
    if (g.R == 3 && g.S == 3)                                                                 \
      return detail::small_planes_transposed<VEC, 3, 3>(g, k0, count, gy, gy_plane, w, dx,    \
                                                        dx_plane);                            \
    detail::small_planes_transposed<VEC, 0, 0>(g, k0, count, gy, gy_plane, w, dx, dx_plane);  \
  }                                                                                           \
  void small_planes_dot(const SmallPlanes& g, long count, const T* x, long x_step,           \
                        const T* gy, long gy_step, T* acc) {                                  \
    if (stride2_shape(g))                                                                     \
      return detail::stride2_planes_dot<VEC>(g, count, x, x_step, gy, gy_step, acc);          \
    detail::with_small_planes_kernel<VEC, WIDE>(g, [&](auto v, auto k) {                      \
      using V = typename decltype(v)::type;                                                   \
      using K = decltype(k);                                                                  \
      detail::small_planes_dot<V, K::kR, K::kS, K::kUnitStride>(g, count, x, x_step, gy,      \
                                                                gy_step, acc);                \
    });                                                                                       \
  }
