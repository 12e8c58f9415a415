// Version 2 of the CPU pooling kernels: one kernel per layout (NCHW, channels_last). The
// plan of each is in cpu/pool.cpp's header comment; cpu/pool_kernels.h declares them.
//
// Compiled twice, by pool_fast_avx2.cpp (AVX2 + FMA) and pool_fast_portable.cpp, which
// include this file twice: first with CNNOPS_POOL_ISA undefined, which pulls in the headers
// the kernels use (compiled for the baseline target, so that inline library code shared
// with other files never carries AVX2 instructions), then after their `#pragma GCC target`
// with CNNOPS_POOL_ISA naming the namespace the kernels are compiled into. The loops are
// written for the compiler's vectoriser: branch-free selects, int32 running indices beside
// float or double values, compile-time strides 1 and 2.

#ifndef CNNOPS_POOL_ISA

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/pool_kernels.h"
#include "cpu/stream_store.h"

#else  // CNNOPS_POOL_ISA: the kernels

namespace cnnops::cpu::CNNOPS_POOL_ISA {

// Everything but pool_kernels() has internal linkage: each build keeps its own copy.
namespace {

constexpr int64_t kChannelBlock = 256;  // channels_last: channels per task
constexpr int64_t kTaskWork = 16384;    // elements of work a parallel chunk should hold at least

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// parallel_for grain for items of `work` elements each.
int64_t grain(int64_t work) { return std::max<int64_t>(1, kTaskWork / std::max<int64_t>(work, 1)); }

template <typename T>
constexpr T minus_infinity() {
  return -std::numeric_limits<T>::infinity();
}

// ---- software prefetch ------------------------------------------------------------------
//
// The NCHW row kernels read a contiguous input as one sequential stream per task, a few
// hundred bytes per output row, and wait on those loads: the hardware prefetchers leave
// them short of bandwidth. Each output row therefore prefetches what the rows
// kPrefetchBytes further on will read; the backward kernels do the same with grad_output
// (and the indices). Measured on the 2-core Xeon, 8x64x112x112, interleaved in one process:
// max forward 2x2 2.9 -> 1.7 ms, 3x3/s2 4.1 -> 3.6 ms; avg forward 3.1 -> 1.8 and
// 3.5 -> 2.4 ms; max backward 3.7 -> 3.0 and 3.7 -> 3.3 ms; avg backward 2.2 -> 1.9 and
// 2.7 -> 2.4 ms. The channels-last max backward prefetches grad_output and the indices a
// pixel's channels at a time.

constexpr uintptr_t kPrefetchBytes = 4096;  // 2048 to 8192 measured alike

template <typename T>
class Prefetcher {
 public:
  // For a tensor contiguous in NCHW or channels-last order; any other prefetches nothing.
  explicit Prefetcher(const at::Tensor& t)
      : end_(t.is_contiguous() || t.is_contiguous(at::MemoryFormat::ChannelsLast)
                 ? reinterpret_cast<uintptr_t>(t.data_ptr<T>() + t.numel())
                 : 0) {}

  // Prefetches the `count` elements kPrefetchBytes past `from`, as far as the tensor goes.
  void fetch(const T* from, int64_t count) const {
    uintptr_t line = reinterpret_cast<uintptr_t>(from) + kPrefetchBytes;
    const uintptr_t stop = std::min<uintptr_t>(line + count * sizeof(T), end_);
    for (; line < stop; line += 64) __builtin_prefetch(reinterpret_cast<const void*>(line));
  }

 private:
  uintptr_t end_;  // one past the tensor's last element; 0: prefetch nothing
};

// The windows of every output position along one axis. The interior is the run [lo, hi) of
// outputs whose windows are full and evenly spaced: window o has the taps
// o * stride + offset + j * step, j < kernel, all inside the input.
struct AxisTable {
  std::vector<PoolWindow> win;
  int64_t step;
  int64_t lo = 0, hi = 0;
  int64_t stride = 1, offset = 0, kernel = 0;
  std::vector<int64_t> first, last;  // outputs_of(i) for every input i (with_inverse)

  AxisTable(const PoolAxis& axis, bool with_inverse = false) : win(axis.out), step(axis.step()) {
    for (int64_t o = 0; o < axis.out; ++o) win[o] = axis.window(o);
    if (with_inverse) {
      first.resize(axis.in);
      last.resize(axis.in);
      for (int64_t i = 0; i < axis.in; ++i) axis.outputs_of(i, &first[i], &last[i]);
    }
    if (!axis.adaptive) {
      stride = axis.stride;
      offset = -axis.pad;
      kernel = axis.kernel;
    } else if (axis.out > 0 && axis.in % axis.out == 0) {  // adaptive, but evenly split
      stride = kernel = axis.in / axis.out;
    } else {
      return;
    }
    auto full = [&](int64_t o) { return win[o].begin == o * stride + offset && win[o].count == kernel; };
    while (lo < axis.out && !full(lo)) ++lo;
    hi = lo;
    while (hi < axis.out && full(hi)) ++hi;
  }

  // Calls f(o) for every output outside the interior.
  template <typename F>
  void for_each_border(F f) const {
    for (int64_t o = 0; o < lo; ++o) f(o);
    for (int64_t o = hi; o < static_cast<int64_t>(win.size()); ++o) f(o);
  }

  // Whether the single window covers the whole axis in unit steps (global pooling).
  bool global(int64_t in) const {
    return win.size() == 1 && win[0].begin == 0 && win[0].count == in && (step == 1 || in == 1);
  }
};

// ---- NCHW: max ------------------------------------------------------------------------
//
// Running arguments are int32 in-plane indices (the fast kernels need H*W < 2^31), which
// lets the compiler vectorise the selects beside float or double values; -1 means "no tap
// taken yet" and becomes the window's init index when the row is stored.

// One tap of the interior: outputs q < count take src[q * stride] (in-plane index
// base + q * stride) if it beats their running maximum.
template <typename T, int kStride>
void max_tap(const T* __restrict__ src, int64_t stride, int32_t base, int64_t count,
             T* __restrict__ best, int32_t* __restrict__ arg) {
  const int64_t s = kStride > 0 ? kStride : stride;
  int32_t k = base;  // a second induction variable: no 64-to-32-bit conversion per lane
  for (int64_t q = 0; q < count; ++q, k += static_cast<int32_t>(s)) {
    const T v = src[q * s];
    const T b = best[q];
    const bool take = (v > b) | (v != v);  // no short circuit: keeps the loop branch-free
    best[q] = take ? v : b;
    arg[q] = take ? k : arg[q];
  }
}

// Folds input row `row` (whose first element has in-plane index row_index) into the running
// maxima of one output row's interior. kStride > 0 fixes the stride at compile time, so
// that the strided loads vectorise.
template <typename T, int kStride>
void max_row_interior(const T* row, int32_t row_index, const AxisTable& wt, T* best, int32_t* arg) {
  for (int64_t j = 0; j < wt.kernel; ++j) {
    const int64_t first = wt.offset + j * wt.step + wt.lo * wt.stride;
    max_tap<T, kStride>(row + first, wt.stride, row_index + static_cast<int32_t>(first),
                        wt.hi - wt.lo, best + wt.lo, arg + wt.lo);
  }
}

// ---- NCHW: fused windows ----------------------------------------------------------------
//
// The common windows (2x2 and 3x3, stride 2 or 1 along W, no dilation) of an output row whose
// window rows all lie inside the input: every interior output takes all its KH x KW taps
// in registers, in row-major order, and is written once, instead of loading and storing its
// running result once per tap. Each output is a pure function of the input, so a row whose
// interior is not a whole number of vectors ends with one more vector's worth that
// overlaps the previous one (rather than a scalar remainder, which for max pooling would
// branch on every comparison).

constexpr int64_t kFusedVector = 8;

// Runs body(q) for q in [0, count): in whole vectors, then an overlapping last vector.
template <typename Body>
inline void for_each_output_vectorised(int64_t count, Body body) {
  const int64_t whole = count >= kFusedVector ? count - count % kFusedVector : count;
  for (int64_t q = 0; q < whole; ++q) body(q);
  if (whole < count) {
    const int64_t last = count - kFusedVector;
    for (int64_t l = 0; l < kFusedVector; ++l) body(last + l);  // a fixed trip count: one vector
  }
}

// Eight lanes of T (GCC vector extensions: one AVX2 register for float, two for double,
// SSE2 pairs in the portable build), the int vector of comparison results of the same
// width, and eight int32 lanes for in-plane indices.
template <typename T>
struct Lanes8;
template <>
struct Lanes8<float> {
  typedef float values __attribute__((vector_size(32)));
  typedef int32_t mask __attribute__((vector_size(32)));
};
template <>
struct Lanes8<double> {
  typedef double values __attribute__((vector_size(64)));
  typedef int64_t mask __attribute__((vector_size(64)));
};
using Index8 = int32_t __attribute__((vector_size(32)));

// (Vectors travel by reference: returning one by value from a function changes the ABI
// with the target, which GCC warns about in the portable build.)
template <typename T>
void load8(const T* p, typename Lanes8<T>::values& v) {
  std::memcpy(&v, p, sizeof(v));
}

// p[0], p[2], ..., p[14] in the lane order kScrambled, reading nothing past p[14] (the
// second load starts at p[7]). That order is what one in-lane shuffle of the two loads gives
// (AVX2: a vshufps, where the natural order takes two cross-lane permutes and a blend);
// lane-wise work does not mind it, and unscramble() restores the natural order at the end.
template <typename T>
void load8_stride2_scrambled(const T* p, typename Lanes8<T>::values& v) {
  using M = typename Lanes8<T>::mask;
  typename Lanes8<T>::values lo, hi;
  load8(p, lo);
  load8(p + 7, hi);
  v = __builtin_shuffle(lo, hi, M{0, 2, 9, 11, 4, 6, 13, 15});
}

// kScrambled[k]: the element (p[2 * kScrambled[k]]) that lane k holds. Its own inverse.
constexpr int kScrambled[8] = {0, 1, 4, 5, 2, 3, 6, 7};

template <typename V, typename M>
void unscramble(V& v) {
  v = __builtin_shuffle(v, M{0, 1, 4, 5, 2, 3, 6, 7});
}

// Runs block(q0) for the blocks of eight outputs of a row of `count` >= kFusedVector: whole
// blocks, then one overlapping the block before (an output is a pure function of the input).
template <typename Block>
inline void for_each_block(int64_t count, Block block) {
  int64_t q0 = 0;
  for (; q0 + kFusedVector <= count; q0 += kFusedVector) block(q0);
  if (q0 < count) block(count - kFusedVector);
}

// The lane orders below are those of stride S (1 or 2) along W: the natural order at
// stride 1, kScrambled at stride 2.

// Stores a block's maxima from q0 on, and with kArg their in-plane indices, in the natural
// order (unscrambled in place).
template <bool kArg, int S, typename T>
void store_block(typename Lanes8<T>::values& b, Index8& a, int64_t q0, T* best, int32_t* arg) {
  if (S == 2) unscramble<typename Lanes8<T>::values, typename Lanes8<T>::mask>(b);
  std::memcpy(best + q0, &b, sizeof(b));
  if (kArg) {
    if (S == 2) unscramble<Index8, Index8>(a);
    std::memcpy(arg + q0, &a, sizeof(a));
  }
}

// The in-plane index of the first tap of each lane's output, in the lane order, for the block
// of eight outputs from q0 on (rows start at in-plane index base).
template <int S>
inline void block_lane_index(int32_t base, int64_t q0, Index8& index) {
  index = (S == 2 ? Index8{2 * kScrambled[0], 2 * kScrambled[1], 2 * kScrambled[2],
                           2 * kScrambled[3], 2 * kScrambled[4], 2 * kScrambled[5],
                           2 * kScrambled[6], 2 * kScrambled[7]}
                  : Index8{0, 1, 2, 3, 4, 5, 6, 7}) +
          (base + static_cast<int32_t>(S * q0));
}

// Calls tap(i, j, v) for the KH x KW taps of the block of eight outputs from q0 on, in
// row-major order: v holds tap (i, j) of each lane's output, in the lane order (rows: the
// window's first row at the row's first output).
template <typename T, int KH, int KW, int S, typename Tap>
inline void for_each_tap(const T* rows, int64_t row_stride, int64_t q0, Tap tap) {
#pragma GCC unroll 3
  for (int i = 0; i < KH; ++i) {
#pragma GCC unroll 3
    for (int j = 0; j < KW; ++j) {
      typename Lanes8<T>::values v;
      if (S == 2) {
        load8_stride2_scrambled(rows + i * row_stride + 2 * q0 + j, v);
      } else {
        load8(rows + i * row_stride + q0 + j, v);
      }
      tap(i, j, v);
    }
  }
}

// Max pooling of one output row's interior for the common windows: KH x KW taps, stride S (1 or 2)
// along W, eight outputs at a time in explicit vector lanes (no scalar path whose comparisons would
// branch). rows: the window's first input row at the interior's first tap; row_stride: xs.h; base:
// the in-plane index of rows[0]; W: the input width. Rows of at least eight interior outputs
// (max_pool2d_padded_planes makes every row of a small plane one) run max_row_fast, which comes
// back here for rows with a NaN. Without kArg (the values-only operator) no index is tracked and
// arg is not written.
template <typename T, int KH, int KW, bool kArg, int S>
void max_row_fused(const T* __restrict__ rows, int64_t row_stride, int32_t base, int32_t W,
                   int64_t count, T* __restrict__ best, int32_t* __restrict__ arg) {
  using V = typename Lanes8<T>::values;
  auto block = [&](int64_t q0) {
    V b = V{} + minus_infinity<T>();
    Index8 a = Index8{} - 1;
    Index8 lane_index;
    block_lane_index<S>(base, q0, lane_index);
    for_each_tap<T, KH, KW, S>(rows, row_stride, q0, [&](int i, int j, const V& v) {
      const auto take = (v > b) | (v != v);
      b = take ? v : b;
      if (kArg) a = __builtin_convertvector(take, Index8) ? lane_index + (i * W + j) : a;
    });
    store_block<kArg, S, T>(b, a, q0, best, arg);
  };
  for_each_block(count, block);
}

// Whether any lane of v is NaN.
template <typename V>
bool any_nan(const V& v) {
  const auto nan = v != v;
  uint64_t words[sizeof(nan) / 8];
  std::memcpy(words, &nan, sizeof(nan));
  uint64_t any = 0;
  for (uint64_t w : words) any |= w;
  return any != 0;
}

// max_row_fused, faster where no NaN is met. The running maximum is `v > b ? v : b`, one
// vmaxps (it keeps the first of equal values, -0.0 before 0.0, as torch), and an index
// follows the same strict comparison: the exact kernel spends a second comparison and an OR
// on NaN, and a blend on the value. That select drops a NaN tap, so each block also sums its
// taps and the row adds up the sums: a NaN anywhere makes the total NaN (so do +inf and -inf
// in one row), and then the exact kernel redoes the row.
template <typename T, int KH, int KW, bool kArg, int S>
void max_row_fast(const T* __restrict__ rows, int64_t row_stride, int32_t base, int32_t W,
                  int64_t count, T* __restrict__ best, int32_t* __restrict__ arg) {
  using V = typename Lanes8<T>::values;
  V total = V{};
  auto block = [&](int64_t q0) {
    V b = V{} + minus_infinity<T>();
    V sum = V{};
    Index8 a = Index8{} - 1;
    Index8 lane_index;
    block_lane_index<S>(base, q0, lane_index);
    for_each_tap<T, KH, KW, S>(rows, row_stride, q0, [&](int i, int j, const V& v) {
      if (kArg) a = __builtin_convertvector(v > b, Index8) ? lane_index + (i * W + j) : a;
      b = v > b ? v : b;
      sum += v;
    });
    total += sum;
    store_block<kArg, S, T>(b, a, q0, best, arg);
  };
  for_each_block(count, block);
  if (any_nan(total)) {
    max_row_fused<T, KH, KW, kArg, S>(rows, row_stride, base, W, count, best, arg);
  }
}

template <typename T, int KH, int KW, int S>
void sum_row_fused(const T* __restrict__ rows, int64_t row_stride, int64_t count,
                   T* __restrict__ acc) {
  for_each_output_vectorised(count, [&](int64_t q) {
    T sum = 0;
#pragma GCC unroll 9
    for (int i = 0; i < KH; ++i) {
#pragma GCC unroll 3
      for (int j = 0; j < KW; ++j) sum += rows[i * row_stride + q * S + j];
    }
    acc[q] = sum;
  });
}

// sum_row_fused for stride 2 and rows of at least eight interior outputs, in explicit vector
// lanes: each tap one scrambled stride-2 load (as in max_row_fast) instead of the strided
// gathers the vectoriser makes of sum_row_fused's loop. The taps add up in the same order,
// from 0, so the sums are the same to the bit.
template <typename T, int KH, int KW>
void sum_row_fast(const T* __restrict__ rows, int64_t row_stride, int64_t count,
                  T* __restrict__ acc) {
  using V = typename Lanes8<T>::values;
  auto block = [&](int64_t q0) {
    V sum = V{};
    for_each_tap<T, KH, KW, 2>(rows, row_stride, q0, [&](int, int, const V& v) { sum += v; });
    unscramble<V, typename Lanes8<T>::mask>(sum);
    std::memcpy(acc + q0, &sum, sizeof(sum));
  };
  for_each_block(count, block);
}

template <typename T>
using MaxRowFused = void (*)(const T*, int64_t, int32_t, int32_t, int64_t, T*, int32_t*);
template <typename T>
using SumRowFused = void (*)(const T*, int64_t, int64_t, T*);

// The eight-lane kernel for this call's windows (rows of at least eight outputs; the
// padded planes make any row one), or nullptr.
template <typename T, bool kArg>
MaxRowFused<T> max_row_fast_for(const AxisTable& ht, const AxisTable& wt) {
  if (ht.step != 1 || wt.step != 1 || ht.kernel != wt.kernel) return nullptr;
  if (wt.stride == 2 && wt.kernel == 2) return &max_row_fast<T, 2, 2, kArg, 2>;
  if (wt.stride == 2 && wt.kernel == 3) return &max_row_fast<T, 3, 3, kArg, 2>;
  if (wt.stride == 1 && wt.kernel == 2) return &max_row_fast<T, 2, 2, kArg, 1>;
  if (wt.stride == 1 && wt.kernel == 3) return &max_row_fast<T, 3, 3, kArg, 1>;
  return nullptr;
}

template <typename T>
SumRowFused<T> sum_row_fused_for(const AxisTable& ht, const AxisTable& wt) {
  if (ht.step != 1 || wt.step != 1 || wt.stride != 2 || ht.kernel != wt.kernel) return nullptr;
  const bool short_row = wt.hi - wt.lo < kFusedVector;
  if (wt.kernel == 2) return short_row ? &sum_row_fused<T, 2, 2, 2> : &sum_row_fast<T, 2, 2>;
  if (wt.kernel == 3) return short_row ? &sum_row_fused<T, 3, 3, 2> : &sum_row_fast<T, 3, 3>;
  return nullptr;
}

// One border output's whole window (rows wh of the plane, columns of window q), in the
// row-major order of the taps: one call per border output and output row, its running
// maximum in registers (a call per input row re-read the window tables and went through
// memory for best and arg).
template <typename T>
void max_window(const T* plane, int64_t row_stride, int64_t W, const PoolWindow& wh,
                int64_t h_step, const AxisTable& wt, int64_t q, T* best, int32_t* arg) {
  const PoolWindow& ww = wt.win[q];
  T b = best[q];
  int32_t a = arg[q];
  for (int64_t i = 0; i < wh.count; ++i) {
    const int64_t ih = wh.begin + i * h_step;
    const T* row = plane + ih * row_stride;
    for (int64_t j = 0; j < ww.count; ++j) {
      const int64_t iw = ww.begin + j * wt.step;
      const T v = row[iw];
      if (v > b || v != v) {
        b = v;
        a = static_cast<int32_t>(ih * W + iw);
      }
    }
  }
  best[q] = b;
  arg[q] = a;
}

// Global max of a contiguous plane in eight vector lanes: the running maximum of each lane
// is `v > b ? v : b` (as max_row_fast; the sum of the elements is its NaN probe), and the
// lane remembers where it took its value, the strict comparison keeping the first of equal
// values. The index torch's sequential scan reports is then the first element equal to the
// maximum: the least index among the lanes that hold it, else the first in the scalar tail.
// The value is read back at that index, so that -0.0 and 0.0 come out as torch has them. A
// NaN (or +inf and -inf in one plane) takes a scalar scan for the last NaN. Without an index
// to write (the values-only operator), the index is looked for only for a NaN or a maximum
// of zero. (One pass for the index: the scan that looked for the maximum again cost a branch
// mispredicted per plane, 5x the pass itself on 64x512x7x7.)
template <typename T>
void plane_argmax(const T* x, int64_t len, T* value, int64_t* index) {
  using V = typename Lanes8<T>::values;
  using M = typename Lanes8<T>::mask;  // lanes of T's width: in-plane indices
  V best = V{} + minus_infinity<T>(), sum = V{};
  M at = M{}, lane = M{0, 1, 2, 3, 4, 5, 6, 7};
  int64_t i = 0;
  for (; i + kFusedVector <= len; i += kFusedVector, lane += kFusedVector) {
    V v;
    load8(x + i, v);
    const M greater = v > best;
    best = greater ? v : best;
    at = greater ? lane : at;
    sum += v;
  }
  const int64_t tail_begin = i;
  T maximum = minus_infinity<T>(), tail_sum = 0;
  for (; i < len; ++i) {
    maximum = x[i] > maximum ? x[i] : maximum;
    tail_sum += x[i];
  }
  // Across the lanes in three steps of pairs (a chain of eight would cost as much as the pass).
  const M kHalves[3] = {M{4, 5, 6, 7, 0, 1, 2, 3}, M{2, 3, 0, 1, 6, 7, 4, 5},
                        M{1, 0, 3, 2, 5, 4, 7, 6}};
  V top = best;
  for (const M& pair : kHalves) {
    const V other = __builtin_shuffle(top, pair);
    top = other > top ? other : top;
  }
  maximum = top[0] > maximum ? top[0] : maximum;
  bool has_nan = false;
  if (any_nan(sum) || tail_sum != tail_sum) {  // a NaN, or +inf and -inf: look
    for (int64_t k = 0; k < len && !has_nan; ++k) has_nan = x[k] != x[k];
  }
  if (index == nullptr && !has_nan && maximum != T(0)) {  // values only, and no -0.0 / 0.0 tie
    *value = maximum;
    return;
  }
  int64_t k = len - 1;
  if (has_nan) {
    while (k > 0 && x[k] == x[k]) --k;
  } else {
    // A lane that never took a value holds -inf at index 0: the maximum is then -inf, every
    // element equal to it, and 0 the right answer.
    using Index = decltype(M{}[0] + 0);  // int32_t for float lanes, int64_t for double
    M first = best == (V{} + maximum) ? at : M{} + static_cast<Index>(len - 1);
    for (const M& pair : kHalves) {
      const M other = __builtin_shuffle(first, pair);
      first = other < first ? other : first;
    }
    k = first[0];
    if (k >= tail_begin) {
      for (k = tail_begin; k < len - 1 && !(x[k] == maximum);) ++k;
    }
  }
  *value = x[k];
  if (index != nullptr) *index = k;
}

// Sum of a contiguous plane in eight vector lanes, folded pairwise at the end (lanes l and
// l + 4, then l and l + 2, then 0 and 1). The tail goes to a scalar of its own: adding it
// into the lanes would store single lanes and reload them as a vector, which stalls store
// forwarding on every small plane. (The same sums, to the bit, as the scalar lane array this
// replaced, which GCC left scalar: 1.0-1.16x on 64x512x7x7 and 32x256x14x14.)
template <typename T>
T plane_sum(const T* x, int64_t len) {
  using V = typename Lanes8<T>::values;
  V acc = V{};
  int64_t i = 0;
  for (; i + 8 <= len; i += 8) {
    V v;
    load8(x + i, v);
    acc += v;
  }
  T tail = 0;
  for (; i < len; ++i) tail += x[i];
  const T a0 = acc[0] + acc[4], a1 = acc[1] + acc[5], a2 = acc[2] + acc[6], a3 = acc[3] + acc[7];
  return ((a0 + a2) + (a1 + a3)) + tail;
}

// Calls f(n, c) for planes [begin, end) of C channels each, without a division per plane
// (global pooling of small planes spends only a few cycles on each).
template <typename F>
void for_each_plane(int64_t begin, int64_t end, int64_t C, F f) {
  int64_t n = begin / C, c = begin % C;
  for (int64_t plane = begin; plane < end; ++plane) {
    f(n, c);
    if (++c == C) {
      c = 0;
      ++n;
    }
  }
}

// A plane that global pooling can read as one contiguous run.
bool contiguous_plane(const Strides4& xs, int64_t H, int64_t W) {
  return xs.w == 1 && (xs.h == W || H == 1);
}

// Small planes (rows of up to kPaddedPlaneMaxWidth) whose rows are short (fewer than eight
// outputs) or have border windows (padding, ceil_mode): each plane is copied into a block
// padded with -inf on every side its windows reach past and to whole vectors of eight
// outputs, and then every output row is an interior row of the eight-lane kernel. A -inf tap
// never beats the running maximum (the comparisons are strict), so a padded tap is never
// taken, as a skipped one: a window without a greater value keeps index -1, which becomes
// its init index as in the row loop of max_pool2d_forward_nchw. That loop spends more on each
// row's setup, its border windows one by one and the top and bottom rows' per-tap passes than
// on the maxima of rows this short. 2 threads, 64 planes of 64 (of 32 at 28x28), ms, values /
// with indices, min of 2 alternating runs: 7x7 3x3/s2/p1 0.72 / 0.81 -> 0.18 / 0.27; 14x14
// 3x3/s2/p1 0.85 / 1.09 -> 0.36 / 0.58; 28x28 3x3/s2/p1 0.67 / 0.95 -> 0.46 / 0.83; 14x14
// 2x2 0.46 / 0.74 -> 0.30 / 0.43; 7x7 2x2 0.19 / 0.24 -> 0.12 / 0.16. Full rows of eight or
// more without borders stay in the row loop, which was faster without the copy (16x16 2x2
// 0.18 / 0.32 against 0.29 / 0.45 padded; 28x28 2x2 0.24 / 0.48 against 0.36 / 0.61).
// Windows at stride 1 take the stride-1 build of the same kernel, here and in the row loop,
// where they took a pass per tap: 3x3/s1/p1, values, ms: 32x256x8x8 4.5 -> 0.47,
// 32x192x17x17 9.1 -> 1.27, 32x64x35x35 (row loop) 5.4 -> 2.5, 8x64x56x56 3.0 -> 1.2.
constexpr int64_t kPaddedPlaneMaxWidth = 32;

// The block the padded-plane kernels copy each plane into: element (r, c) is input element
// (r + ht.offset, c + wt.offset), and row p's window starts at block row p * ht.stride; each
// row has `lanes` outputs (at least a vector's worth) and a pitch wide enough for the last
// block's loads. Outside the input's rows [row_begin, row_end) and columns [col_begin,
// col_end) the block holds the padding, the same for every plane: a thread writes it once,
// and copy() fills in the rest from each plane.
template <typename T>
struct PaddedBlock {
  int64_t lanes, rows, pitch, row_begin, row_end, col_begin, col_end, row_offset, col_offset;

  PaddedBlock(const PoolShape& s, const AxisTable& ht, const AxisTable& wt)
      : lanes(std::max<int64_t>(s.Q, kFusedVector)),
        rows((s.P - 1) * ht.stride + ht.kernel),
        pitch(wt.stride * (lanes - 1) + wt.kernel + kFusedVector),
        row_begin(std::max<int64_t>(0, -ht.offset)),
        row_end(std::min<int64_t>(rows, s.H - ht.offset)),
        col_begin(std::max<int64_t>(0, -wt.offset)),
        col_end(std::min<int64_t>(pitch, s.W - wt.offset)),
        row_offset(ht.offset),
        col_offset(wt.offset) {}

  int64_t bytes() const { return rows * pitch * int64_t{sizeof(T)}; }

  // The input plane (rows row_stride apart, unit column stride) into `block`.
  void copy(const T* plane, int64_t row_stride, T* block) const {
    for (int64_t r = row_begin; r < row_end; ++r) {
      const T* src = plane + (r + row_offset) * row_stride;  // input column col + col_offset
      T* row = block + r * pitch;
      for (int64_t col = col_begin; col < col_end; ++col) row[col] = src[col + col_offset];
    }
  }
};

template <typename T, bool kArg>
bool max_pool2d_padded_planes(const T* x, const Strides4& xs, T* y, const Strides4& ys,
                              int64_t* ind, const Strides4& is, const PoolShape& s,
                              const AxisTable& ht, const AxisTable& wt,
                              const std::vector<int64_t>& w_init) {
  const MaxRowFused<T> fast = max_row_fast_for<T, kArg>(ht, wt);
  const bool borders = ht.lo > 0 || ht.hi < s.P || wt.lo > 0 || wt.hi < s.Q;
  if (fast == nullptr || s.W > kPaddedPlaneMaxWidth || xs.w != 1 || s.P == 0 || s.Q == 0 ||
      (s.Q >= kFusedVector && !borders)) {
    return false;
  }
  const PaddedBlock<T> pb(s, ht, wt);
  at::parallel_for(0, s.N * s.C, grain(pb.rows * pb.pitch), [&](int64_t begin, int64_t end) {
    std::vector<T> block(pb.rows * pb.pitch, minus_infinity<T>());
    std::vector<T> best(pb.lanes);
    std::vector<int32_t> arg(pb.lanes);
    for_each_plane(begin, end, s.C, [&](int64_t n, int64_t c) {
      pb.copy(x + n * xs.n + c * xs.c, xs.h, block.data());
      for (int64_t p = 0; p < s.P; ++p) {
        const int64_t ih0 = p * ht.stride + ht.offset;
        fast(block.data() + p * ht.stride * pb.pitch, pb.pitch,
             static_cast<int32_t>(ih0 * s.W + wt.offset), static_cast<int32_t>(s.W), pb.lanes,
             best.data(), arg.data());
        T* y_row = y + n * ys.n + c * ys.c + p * ys.h;
        for (int64_t q = 0; q < s.Q; ++q) y_row[q * ys.w] = best[q];
        if (kArg) {
          int64_t* ind_row = ind + n * is.n + c * is.c + p * is.h;
          const int64_t row_init = ht.win[p].init * s.W;
          for (int64_t q = 0; q < s.Q; ++q) {
            ind_row[q * is.w] = arg[q] >= 0 ? int64_t{arg[q]} : row_init + w_init[q];
          }
        }
      }
    });
  });
  return true;
}

template <typename T>
void max_pool2d_forward_nchw(const at::Tensor& input, at::Tensor& output, at::Tensor& indices,
                             const PoolShape& s) {
  const T* x = input.data_ptr<T>();
  T* y = output.data_ptr<T>();
  int64_t* ind = indices.defined() ? indices.data_ptr<int64_t>() : nullptr;  // none: values only
  const Strides4 xs(input), ys(output), is(indices.defined() ? indices : output);
  const AxisTable ht(s.h), wt(s.w);

  if (ht.global(s.H) && wt.global(s.W) && contiguous_plane(xs, s.H, s.W)) {
    at::parallel_for(0, s.N * s.C, grain(s.H * s.W), [&](int64_t begin, int64_t end) {
      for_each_plane(begin, end, s.C, [&](int64_t n, int64_t c) {
        plane_argmax(x + n * xs.n + c * xs.c, s.H * s.W, y + n * ys.n + c * ys.c,
                     ind ? ind + n * is.n + c * is.c : nullptr);
      });
    });
    return;
  }

  auto interior = wt.stride == 1   ? &max_row_interior<T, 1>
                  : wt.stride == 2 ? &max_row_interior<T, 2>
                                   : &max_row_interior<T, 0>;
  // (Rows of fewer than eight interior outputs have borders or are short, and went to the
  // padded planes; wider planes have no such rows at stride 1 or 2. Should one come, it takes
  // the per-tap loop.)
  const MaxRowFused<T> fused =
      wt.hi - wt.lo < kFusedVector ? nullptr
      : ind                        ? max_row_fast_for<T, true>(ht, wt)
                                   : max_row_fast_for<T, false>(ht, wt);
  const int64_t row_work = s.Q * std::max<int64_t>(ht.kernel, 1) * std::max<int64_t>(wt.kernel, 1);
  const Prefetcher<T> ahead(input);
  std::vector<int64_t> w_init(s.Q);  // the column of each window's init index
  for (int64_t q = 0; q < s.Q; ++q) w_init[q] = wt.win[q].init;
  if (ind ? max_pool2d_padded_planes<T, true>(x, xs, y, ys, ind, is, s, ht, wt, w_init)
          : max_pool2d_padded_planes<T, false>(x, xs, y, ys, ind, is, s, ht, wt, w_init)) {
    return;
  }
  at::parallel_for(0, s.N * s.C * s.P, grain(row_work), [&](int64_t begin, int64_t end) {
    std::vector<int32_t> arg(s.Q);
    // (n, c, p) of the task's first row, then stepped: no divisions per row
    int64_t p = begin % s.P, c = (begin / s.P) % s.C, n = begin / (s.P * s.C);
    for (int64_t row = begin; row < end; ++row) {
      const T* plane = x + n * xs.n + c * xs.c;
      const PoolWindow& wh = ht.win[p];
      T* y_row = y + n * ys.n + c * ys.c + p * ys.h;
      // The maxima run in the output row (unit stride in this layout), their in-plane args
      // in `arg`; the fused kernel's outputs need no first value.
      T* best = y_row;
      const bool fuse = fused != nullptr && wh.count == ht.kernel;  // all window rows inside
      if (fuse) {
        wt.for_each_border([&](int64_t q) {
          best[q] = minus_infinity<T>();
          arg[q] = -1;
        });
      } else {
        std::fill(best, best + s.Q, minus_infinity<T>());
        std::fill(arg.begin(), arg.end(), -1);
      }
      wt.for_each_border([&](int64_t q) {
        max_window(plane, xs.h, s.W, wh, ht.step, wt, q, best, arg.data());
      });
      if (!fuse) {
        for (int64_t i = 0; i < wh.count; ++i) {
          const int64_t ih = wh.begin + i * ht.step;
          interior(plane + ih * xs.h, static_cast<int32_t>(ih * s.W), wt, best, arg.data());
        }
      }
      ahead.fetch(plane + wh.begin * xs.h, ht.stride * xs.h);
      if (fuse) {
        const int64_t first = wt.offset + wt.lo * wt.stride;
        fused(plane + wh.begin * xs.h + first, xs.h, static_cast<int32_t>(wh.begin * s.W + first),
              static_cast<int32_t>(s.W), wt.hi - wt.lo, best + wt.lo, arg.data() + wt.lo);
      }
      if (ind) {
        int64_t* __restrict__ ind_row = ind + n * is.n + c * is.c + p * is.h;
        const int32_t* __restrict__ taken = arg.data();
        const int64_t* __restrict__ init = w_init.data();
        const int64_t row_init = wh.init * s.W, Q = s.Q;  // locals: no reloads after stores
        for (int64_t q = 0; q < Q; ++q) {
          ind_row[q] = taken[q] >= 0 ? int64_t{taken[q]} : row_init + init[q];
        }
      }
      if (++p == s.P) {
        p = 0;
        if (++c == s.C) {
          c = 0;
          ++n;
        }
      }
    }
  });
}

// ---- NCHW: average ----------------------------------------------------------------------

template <typename T, int kStride>
void sum_row_interior(const T* row, const AxisTable& wt, T* acc) {
  const int64_t s = kStride > 0 ? kStride : wt.stride;
  const int64_t count = wt.hi - wt.lo;
  for (int64_t j = 0; j < wt.kernel; ++j) {
    const T* src = row + wt.offset + j * wt.step + wt.lo * wt.stride;
    T* a = acc + wt.lo;
    for (int64_t q = 0; q < count; ++q) a[q] += src[q * s];
  }
}

// Each output's divisor extent along the axis, 0 for an empty window.
template <typename T>
std::vector<T> divisor_extents(const AxisTable& t) {
  std::vector<T> extent(t.win.size());
  for (size_t o = 0; o < t.win.size(); ++o) {
    extent[o] = t.win[o].count == 0 ? T(0) : static_cast<T>(t.win[o].divisor_extent);
  }
  return extent;
}

// The divisors of output row `wh`: s.divisor(wh, ww) for every ww (a product of two exact
// integers, rounded once, as torch's integer product converted to T), and 1 for an empty
// window, whose sum is 0 (torch gives 0 there).
template <typename T>
void row_divisors(const PoolShape& s, const PoolWindow& wh, const std::vector<T>& w_extent,
                  T* divisor) {
  const T h_extent = wh.count == 0 ? T(0) : static_cast<T>(wh.divisor_extent);
  for (size_t q = 0; q < w_extent.size(); ++q) {
    const T d = s.divisor_override != 0 ? static_cast<T>(s.divisor_override) : h_extent * w_extent[q];
    divisor[q] = wh.count == 0 || w_extent[q] == T(0) ? T(1) : d;
  }
}

// Adds share[q] over the interior windows of one output row, into the row `spread` of
// width W. kStride > 0 fixes the stride at compile time.
template <typename T, int kStride>
void spread_row_interior(const T* share, const AxisTable& wt, T* spread) {
  const int64_t s = kStride > 0 ? kStride : wt.stride;
  const int64_t count = wt.hi - wt.lo;
  for (int64_t j = 0; j < wt.kernel; ++j) {
    T* dst = spread + wt.offset + j * wt.step + wt.lo * wt.stride;
    const T* g = share + wt.lo;
    for (int64_t q = 0; q < count; ++q) dst[q * s] += g[q];
  }
}

// spread_row_interior for stride 2, where the strided adds do not vectorise: tap j of
// interior output q lands on column 2q + o_j, so each tap adds a unit-stride run of shares
// into the row's even columns (o_j even) or odd ones; the two halves are then interleaved
// into `spread`, which they overwrite whole. `halves` holds 2 * (W / 2 + 1) elements.
template <typename T>
void spread_row_interior_s2(const T* share, const AxisTable& wt, int64_t W, T* halves,
                            T* spread) {
  const int64_t half = W / 2 + 1;
  T* even = halves;  // column 2m
  T* odd = halves + half;  // column 2m + 1
  std::fill(halves, halves + 2 * half, T(0));
  const int64_t count = wt.hi - wt.lo;
  const T* g = share + wt.lo;
  for (int64_t j = 0; j < wt.kernel; ++j) {
    const int64_t o = wt.offset + j * wt.step + 2 * wt.lo;  // >= 0: an interior tap
    T* dst = (o % 2 == 0 ? even : odd) + o / 2;
    for (int64_t q = 0; q < count; ++q) dst[q] += g[q];
  }
  for (int64_t m = 0; m < W / 2; ++m) {
    spread[2 * m] = even[m];
    spread[2 * m + 1] = odd[m];
  }
  if (W % 2 != 0) spread[W - 1] = even[W / 2];
}

// Average pooling as max_pool2d_padded_planes, of planes whose rows are short or have
// border windows: each plane is copied into a block padded with zeros, and every output row,
// borders included, sums all its window's taps in registers (2x2 and 3x3 windows; blocks of
// up to kPaddedBlockMaxBytes): at stride 2 (rows of up to kPaddedPlaneMaxWidth) by the
// eight-lane sum_row_fast, at stride 1 by sum_row_fused, where the row loop has no fused
// kernel and makes a pass over the output row per tap. The taps add up in row-major order
// from 0, a padded tap adding +0 (which changes no sum started at +0), so each output is the
// row loop's sum to the bit, and the divisors are its own (row_divisors, every row once).
// 2 threads, ms, against the row loop: 64x64x7x7 3x3/s2/p1 0.26 -> 0.13, 64x64x14x14
// 3x3/s2/p1 0.46 -> 0.28, 64x32x28x28 3x3/s2/p1 0.52 -> 0.39; 3x3/s1/p1 (count_include_pad
// off) 32x256x8x8 2.15 -> 0.34, 32x192x17x17 3.20 -> 1.03, 32x64x35x35 2.42 -> 1.01,
// 8x64x112x112 4.63 -> 2.03, 2x64x224x224 4.2 -> 2.1-2.9; at stride 2 the row loop stays
// ahead from 64 columns (8x64x64x64 3x3/s2/p1 0.34 against 0.38, 112x112 0.81 against 1.21).
constexpr int64_t kPaddedBlockMaxBytes = 512 << 10;

template <typename T>
bool avg_pool2d_padded_planes(const T* x, const Strides4& xs, T* y, const Strides4& ys,
                              const PoolShape& s, const AxisTable& ht, const AxisTable& wt) {
  const int64_t K = ht.kernel, S = ht.stride;
  const bool borders = ht.lo > 0 || ht.hi < s.P || wt.lo > 0 || wt.hi < s.Q;
  if (ht.step != 1 || wt.step != 1 || wt.kernel != K || wt.stride != S || (K != 2 && K != 3) ||
      (S != 1 && S != 2) || xs.w != 1 || s.P == 0 || s.Q == 0 ||
      (s.Q >= kFusedVector && !borders)) {
    return false;
  }
  const SumRowFused<T> sum = S == 2 ? (K == 2 ? &sum_row_fast<T, 2, 2> : &sum_row_fast<T, 3, 3>)
                                    : (K == 2 ? &sum_row_fused<T, 2, 2, 1>
                                              : &sum_row_fused<T, 3, 3, 1>);
  const PaddedBlock<T> pb(s, ht, wt);
  if ((S == 2 && s.W > kPaddedPlaneMaxWidth) || pb.bytes() > kPaddedBlockMaxBytes) return false;
  std::vector<T> divisor(s.P * s.Q);
  const std::vector<T> w_extent = divisor_extents<T>(wt);
  for (int64_t p = 0; p < s.P; ++p) row_divisors(s, ht.win[p], w_extent, divisor.data() + p * s.Q);
  at::parallel_for(0, s.N * s.C, grain(pb.rows * pb.pitch), [&](int64_t begin, int64_t end) {
    std::vector<T> block(pb.rows * pb.pitch, T(0));
    std::vector<T> acc(pb.lanes);
    for_each_plane(begin, end, s.C, [&](int64_t n, int64_t c) {
      pb.copy(x + n * xs.n + c * xs.c, xs.h, block.data());
      for (int64_t p = 0; p < s.P; ++p) {
        sum(block.data() + p * S * pb.pitch, pb.pitch, pb.lanes, acc.data());
        T* y_row = y + n * ys.n + c * ys.c + p * ys.h;
        const T* d = divisor.data() + p * s.Q;
        for (int64_t q = 0; q < s.Q; ++q) y_row[q * ys.w] = acc[q] / d[q];
      }
    });
  });
  return true;
}

template <typename T>
void avg_pool2d_forward_nchw(const at::Tensor& input, at::Tensor& output, const PoolShape& s) {
  const T* x = input.data_ptr<T>();
  T* y = output.data_ptr<T>();
  const Strides4 xs(input), ys(output);
  const AxisTable ht(s.h), wt(s.w);

  if (ht.global(s.H) && wt.global(s.W) && contiguous_plane(xs, s.H, s.W)) {
    const T divisor = static_cast<T>(s.divisor(ht.win[0], wt.win[0]));
    at::parallel_for(0, s.N * s.C, grain(s.H * s.W), [&](int64_t begin, int64_t end) {
      for_each_plane(begin, end, s.C, [&](int64_t n, int64_t c) {
        y[n * ys.n + c * ys.c] = plane_sum(x + n * xs.n + c * xs.c, s.H * s.W) / divisor;
      });
    });
    return;
  }

  if (avg_pool2d_padded_planes<T>(x, xs, y, ys, s, ht, wt)) return;

  auto interior = wt.stride == 1   ? &sum_row_interior<T, 1>
                  : wt.stride == 2 ? &sum_row_interior<T, 2>
                                   : &sum_row_interior<T, 0>;
  const SumRowFused<T> fused = sum_row_fused_for<T>(ht, wt);
  const std::vector<T> w_extent = divisor_extents<T>(wt);
  const Prefetcher<T> ahead(input);
  const int64_t row_work = s.Q * std::max<int64_t>(ht.kernel, 1) * std::max<int64_t>(wt.kernel, 1);
  at::parallel_for(0, s.N * s.C * s.P, grain(row_work), [&](int64_t begin, int64_t end) {
    // The sums run in the output row (unit stride in this layout) and are divided there.
    // A row's divisors depend only on its window's row extent (and count): computed again
    // only when that changes, at the top and bottom edges. (n, c, p) of the task's first
    // row, then stepped: no divisions per row.
    std::vector<T> divisor(s.Q);
    int64_t divisor_count = -1, divisor_extent = -1;
    int64_t p = begin % s.P, c = (begin / s.P) % s.C, n = begin / (s.P * s.C);
    for (int64_t row = begin; row < end; ++row) {
      const T* plane = x + n * xs.n + c * xs.c;
      const PoolWindow& wh = ht.win[p];
      T* y_row = y + n * ys.n + c * ys.c + p * ys.h;
      T* acc = y_row;
      const bool fuse = fused != nullptr && wh.count == ht.kernel;  // all window rows inside
      if (fuse) {
        wt.for_each_border([&](int64_t q) { acc[q] = T(0); });
      } else {
        std::fill(acc, acc + s.Q, T(0));
      }
      for (int64_t ih = wh.begin; ih < wh.begin + wh.count; ++ih) {
        const T* x_row = plane + ih * xs.h;
        wt.for_each_border([&](int64_t q) {
          const PoolWindow& ww = wt.win[q];
          for (int64_t iw = ww.begin; iw < ww.begin + ww.count; ++iw) acc[q] += x_row[iw];
        });
        if (!fuse) interior(x_row, wt, acc);
      }
      ahead.fetch(plane + wh.begin * xs.h, ht.stride * xs.h);
      if (fuse) {
        fused(plane + wh.begin * xs.h + wt.offset + wt.lo * wt.stride, xs.h, wt.hi - wt.lo,
              acc + wt.lo);
      }
      if (wh.count != divisor_count || wh.divisor_extent != divisor_extent) {
        row_divisors(s, wh, w_extent, divisor.data());
        divisor_count = wh.count;
        divisor_extent = wh.divisor_extent;
      }
      const T* __restrict__ d = divisor.data();
      T* __restrict__ out = y_row;
      for (int64_t q = 0, Q = s.Q; q < Q; ++q) out[q] /= d[q];
      if (++p == s.P) {
        p = 0;
        if (++c == s.C) {
          c = 0;
          ++n;
        }
      }
    }
  });
}

// grad_input of average pooling at stride 1 (2x2 and 3x3 windows, padding below the
// kernel), as the forward pass's padded planes: input (h, w) receives the shares (grad_output
// over divisor) of the outputs p in [h + pad - K + 1, h + pad] and likewise along W, so with
// the shares placed in a zero-padded block at (p + K - 1 - pad, q + K - 1 - pad), each input
// row is the sum of K x K taps of the block, all in registers (sum_row_fused); the row loop
// spread every share along its row and added the rows (3x3/s1/p1, count_include_pad off, 2
// threads, ms: 32x256x8x8 1.17 -> 0.33, 32x192x17x17 2.4 -> 1.02, 32x64x35x35 2.5 -> 1.64,
// 8x64x112x112 3.1-3.3 -> 2.5). A streamed result is assembled a plane at a time (contiguous
// planes only).
template <typename T>
bool avg_pool2d_grad_padded_planes(const T* dy, const Strides4& dys, T* dx, const Strides4& dxs,
                                   const PoolShape& s, const AxisTable& ht, const AxisTable& wt,
                                   const std::vector<T>& divisors, bool stream) {
  const int64_t K = ht.kernel, pad_h = -ht.offset, pad_w = -wt.offset;
  if (ht.step != 1 || wt.step != 1 || ht.stride != 1 || wt.stride != 1 || wt.kernel != K ||
      (K != 2 && K != 3) || pad_h < 0 || pad_h > K - 1 || pad_w < 0 || pad_w > K - 1 ||
      dxs.w != 1 || (stream && dxs.h != s.W) || s.P == 0 || s.Q == 0) {
    return false;
  }
  const SumRowFused<T> sum = K == 2 ? &sum_row_fused<T, 2, 2, 1> : &sum_row_fused<T, 3, 3, 1>;
  const int64_t lanes = std::max<int64_t>(s.W, kFusedVector);
  const int64_t rows = s.H + K - 1, pitch = lanes + K - 1 + kFusedVector;
  if (rows * pitch * int64_t{sizeof(T)} > kPaddedBlockMaxBytes) return false;
  const int64_t top = K - 1 - pad_h, left = K - 1 - pad_w;  // where share (0, 0) goes
  at::parallel_for(0, s.N * s.C, grain(rows * pitch), [&](int64_t begin, int64_t end) {
    std::vector<T> block(rows * pitch, T(0));
    std::vector<T> acc(lanes), whole(stream ? s.H * s.W : 0);
    for_each_plane(begin, end, s.C, [&](int64_t n, int64_t c) {
      const T* dy_plane = dy + n * dys.n + c * dys.c;
      for (int64_t p = 0; p < s.P; ++p) {
        const T* dy_row = dy_plane + p * dys.h;
        const T* d = divisors.data() + p * s.Q;
        T* row = block.data() + (p + top) * pitch + left;
        for (int64_t q = 0; q < s.Q; ++q) row[q] = dy_row[q * dys.w] / d[q];
      }
      T* dx_plane = dx + n * dxs.n + c * dxs.c;
      T* out = stream ? whole.data() : dx_plane;
      const int64_t out_pitch = stream ? s.W : dxs.h;
      for (int64_t h = 0; h < s.H; ++h) {
        sum(block.data() + h * pitch, pitch, lanes, acc.data());
        std::copy(acc.data(), acc.data() + s.W, out + h * out_pitch);
      }
      if (stream) stream_copy(dx_plane, whole.data(), s.H * s.W);
    });
    if (stream) stream_fence();
  });
  return true;
}

template <typename T>
void avg_pool2d_grad_input_nchw(const at::Tensor& grad_output, at::Tensor& grad_input,
                                const PoolShape& s) {
  const T* dy = grad_output.data_ptr<T>();
  T* dx = grad_input.data_ptr<T>();
  const Strides4 dys(grad_output), dxs(grad_input);
  const AxisTable ht(s.h, true), wt(s.w);

  if (ht.global(s.H) && wt.global(s.W) && contiguous_plane(dxs, s.H, s.W)) {
    // global pooling: every element of a plane gets the plane's share
    const T divisor = static_cast<T>(s.divisor(ht.win[0], wt.win[0]));
    at::parallel_for(0, s.N * s.C, grain(s.H * s.W), [&](int64_t begin, int64_t end) {
      for_each_plane(begin, end, s.C, [&](int64_t n, int64_t c) {
        T* dx_plane = dx + n * dxs.n + c * dxs.c;
        std::fill(dx_plane, dx_plane + s.H * s.W, dy[n * dys.n + c * dys.c] / divisor);
      });
    });
    return;
  }

  auto interior = wt.stride == 1 ? &spread_row_interior<T, 1> : &spread_row_interior<T, 0>;
  const bool stride2 = wt.stride == 2, stream = streams(grad_input.nbytes());
  // Streamed short rows that are not whole cache lines leave many lines partly written past
  // the caches, each a costly partial write: where the planes are contiguous (and up to
  // 1 MiB), such a result is assembled a plane at a time and written in one run (32x64x35x35
  // 3x3/s1/p1, 2 threads: 14.2 -> 2.4 ms; torch 12). Rows of whole lines, or of 1 KiB and
  // more, stay streamed row by row, without the copy (8x64x112x112 2x2/s2: 1.10 ms, by
  // planes 1.48).
  const int64_t row_bytes = s.W * int64_t{sizeof(T)};
  const bool stream_planes = stream && row_bytes % 64 != 0 && row_bytes < 1024 &&
                             s.H * row_bytes <= (1 << 20) && dxs.w == 1 && dxs.h == s.W;
  const bool stream_rows = stream && !stream_planes;
  const Prefetcher<T> ahead(grad_output);
  // The divisors of every output, shared by all planes.
  const std::vector<T> w_extent = divisor_extents<T>(wt);
  std::vector<T> divisors(s.P * s.Q);
  for (int64_t p = 0; p < s.P; ++p) row_divisors(s, ht.win[p], w_extent, &divisors[p * s.Q]);
  if (avg_pool2d_grad_padded_planes(dy, dys, dx, dxs, s, ht, wt, divisors, stream)) return;
  at::parallel_for(0, s.N * s.C, grain(s.H * s.W), [&](int64_t begin, int64_t end) {
    std::vector<T> share(s.Q), halves(2 * (s.W / 2 + 1)), row(stream_rows ? s.W : 0);
    std::vector<T> whole(stream_planes ? s.H * s.W : 0);
    std::vector<T> spread(s.P * s.W);  // row p: output row p's gradient spread along W
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t c = plane % s.C, n = plane / s.C;
      const T* dy_plane = dy + n * dys.n + c * dys.c;
      for (int64_t p = 0; p < s.P; ++p) {
        const T* dy_row = dy_plane + p * dys.h;
        ahead.fetch(dy_row, s.Q);
        const T* divisor = &divisors[p * s.Q];
        const int64_t dy_w = dys.w;  // a local: not reloaded after every store into share
        for (int64_t q = 0; q < s.Q; ++q) share[q] = dy_row[q * dy_w] / divisor[q];
        T* spread_row = spread.data() + p * s.W;
        if (stride2) {
          spread_row_interior_s2(share.data(), wt, s.W, halves.data(), spread_row);
        } else {
          std::fill(spread_row, spread_row + s.W, T(0));
          interior(share.data(), wt, spread_row);
        }
        wt.for_each_border([&](int64_t q) {
          const PoolWindow& ww = wt.win[q];
          for (int64_t iw = ww.begin; iw < ww.begin + ww.count; ++iw) spread_row[iw] += share[q];
        });
      }
      T* dx_plane = dx + n * dxs.n + c * dxs.c;
      T* out_plane = stream_planes ? whole.data() : dx_plane;
      const int64_t out_pitch = stream_planes ? s.W : dxs.h;
      for (int64_t ih = 0; ih < s.H; ++ih) {
        // input row ih sums the spread rows [p0, p1): into dx (or `whole`) directly, or
        // through `row` when rows are streamed
        T* dx_row = out_plane + ih * out_pitch;
        const int64_t p0 = ht.first[ih], p1 = ht.last[ih];
        const T* a = spread.data() + p0 * s.W;
        if (p1 - p0 == 1) {  // the common case: one window holds the row
          if (stream_rows) {
            stream_copy(dx_row, a, s.W);
          } else {
            std::copy(a, a + s.W, dx_row);
          }
          continue;
        }
        T* sum = stream_rows ? row.data() : dx_row;
        if (p0 >= p1) {
          std::fill(sum, sum + s.W, T(0));
        } else {
          const T* b = a + s.W;  // two windows or more (3x3 of stride 2)
          for (int64_t iw = 0; iw < s.W; ++iw) sum[iw] = a[iw] + b[iw];
          for (int64_t p = p0 + 2; p < p1; ++p) {
            const T* spread_row = spread.data() + p * s.W;
            for (int64_t iw = 0; iw < s.W; ++iw) sum[iw] += spread_row[iw];
          }
        }
        if (stream_rows) stream_copy(dx_row, sum, s.W);
      }
      if (stream_planes) stream_copy(dx_plane, whole.data(), s.H * s.W);
    }
    if (stream) stream_fence();
  });
}

// ---- max pooling backward: the scatter, both layouts -------------------------------------

// Calls add(e, index[e], grad[e]) for e < count, in order, loading eight indices and
// gradients at a time before the first of their adds. The adds store into grad_input, and
// a load issued after a store whose address matches its own modulo 4 KiB waits for that
// store (4K aliasing): loading as we went, the scatter ran 1.3-2x slower whenever the
// tensors happened to lie at such offsets (channels_last 8x64x112x112: 5-9 ns per element
// from call to call, 4 ns since).
template <typename T, typename Add>
inline void for_each_index(const int64_t* index, const T* grad, int64_t count, Add add) {
  using V = typename Lanes8<T>::values;
  using K = int64_t __attribute__((vector_size(64)));
  int64_t e = 0;
  for (; e + 8 <= count; e += 8) {
    K k;
    V g;
    std::memcpy(&k, index + e, sizeof(k));
    std::memcpy(&g, grad + e, sizeof(g));
#pragma GCC unroll 8
    for (int u = 0; u < 8; ++u) add(e + u, k[u], g[u]);
  }
  for (; e < count; ++e) add(e, index[e], grad[e]);
}

// ---- NCHW: max backward -----------------------------------------------------------------

template <typename T>
void max_pool2d_grad_input_nchw(const at::Tensor& grad_output, const at::Tensor& indices,
                                at::Tensor& grad_input) {
  const T* dy = grad_output.data_ptr<T>();
  const int64_t* ind = indices.data_ptr<int64_t>();
  T* dx = grad_input.data_ptr<T>();
  const Strides4 dys(grad_output), is(indices), dxs(grad_input);
  const int64_t C = grad_input.size(1), plane_size = grad_input.size(2) * grad_input.size(3);
  const int64_t P = indices.size(2), Q = indices.size(3);
  const Prefetcher<T> ahead_dy(grad_output);
  const Prefetcher<int64_t> ahead_ind(indices);
  at::parallel_for(0, grad_input.size(0) * C, grain(plane_size), [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t c = plane % C, n = plane / C;
      T* dx_plane = dx + n * dxs.n + c * dxs.c;  // contiguous: element k at dx_plane[k]
      std::fill(dx_plane, dx_plane + plane_size, T(0));
      const T* dy_plane = dy + n * dys.n + c * dys.c;
      const int64_t* ind_plane = ind + n * is.n + c * is.c;
      // Strides in locals: the stores into dx would otherwise make the compiler reload them
      // from the captured structs on every element.
      const int64_t ind_h = is.h, ind_w = is.w, dy_h = dys.h, dy_w = dys.w;
      for (int64_t p = 0; p < P; ++p) {
        const int64_t* ind_row = ind_plane + p * ind_h;
        const T* dy_row = dy_plane + p * dy_h;
        ahead_ind.fetch(ind_row, Q);
        ahead_dy.fetch(dy_row, Q);
        auto add = [&](int64_t, int64_t k, T g) {
          if (k >= 0 && k < plane_size) dx_plane[k] += g;
        };
        if (ind_w == 1 && dy_w == 1) {
          for_each_index(ind_row, dy_row, Q, add);
        } else {
          for (int64_t q = 0; q < Q; ++q) add(q, ind_row[q * ind_w], dy_row[q * dy_w]);
        }
      }
    }
  });
}

// ---- channels_last ----------------------------------------------------------------------
//
// The forward kernels, and average pooling's backward, run one pixel's channels in chunks of
// kChunk: the chunk's running results (max: maxima and indices, four 8-lane vectors of each
// for float, 8 of AVX2's 16 ymm registers; 16 would spill with the loaded taps and the
// masks) stay in vector registers across the window and are stored once. Channels past the
// last whole chunk take one-vector chunks, the last of them overlapping the one before
// (each channel's result is a pure function of the input), and fewer than eight channels a
// scalar loop.

constexpr int kChunkVectors = 4;
constexpr int64_t kChunk = kChunkVectors * 8;

// The window of one output pixel, as the channels-last forward kernels walk it.
struct PixelWindow {
  const PoolWindow& h;
  const PoolWindow& w;
  int64_t h_step, w_step;  // dilation
  int64_t x_h, x_w;        // input strides along H and W
  int64_t W;               // input width: in-plane index ih * W + iw
};

// Max pooling of channels [0, 8 * kVectors) of one output pixel: x points at the pixel's
// image and first channel, best and ind at its outputs. Without kArg, ind is not written.
template <typename T, int kVectors, bool kArg>
void max_pixel_chunk(const T* __restrict__ x, const PixelWindow& win, T* __restrict__ best,
                     int64_t* __restrict__ ind) {
  using V = typename Lanes8<T>::values;
  using Index8x64 = int64_t __attribute__((vector_size(64)));
  V b[kVectors];
  Index8 a[kVectors];
#pragma GCC unroll 4
  for (int u = 0; u < kVectors; ++u) {
    b[u] = V{} + minus_infinity<T>();
    a[u] = Index8{} - 1;
  }
  for (int64_t i = 0; i < win.h.count; ++i) {
    const int64_t ih = win.h.begin + i * win.h_step;
    for (int64_t j = 0; j < win.w.count; ++j) {
      const int64_t iw = win.w.begin + j * win.w_step;
      const T* xv = x + ih * win.x_h + iw * win.x_w;
      const Index8 k = Index8{} + static_cast<int32_t>(ih * win.W + iw);
#pragma GCC unroll 4
      for (int u = 0; u < kVectors; ++u) {
        V v;
        load8(xv + 8 * u, v);
        const auto take = (v > b[u]) | (v != v);
        b[u] = take ? v : b[u];
        if (kArg) a[u] = __builtin_convertvector(take, Index8) ? k : a[u];
      }
    }
  }
  const Index8 init = Index8{} + static_cast<int32_t>(win.h.init * win.W + win.w.init);
#pragma GCC unroll 4
  for (int u = 0; u < kVectors; ++u) {
    std::memcpy(best + 8 * u, &b[u], sizeof(V));
    if (kArg) {
      const Index8x64 wide = __builtin_convertvector(a[u] < 0 ? init : a[u], Index8x64);
      std::memcpy(ind + 8 * u, &wide, sizeof(wide));
    }
  }
}

// The same for channels [0, count), count < 8: one channel at a time.
template <typename T, bool kArg>
void max_pixel_scalar(const T* x, const PixelWindow& win, int64_t count, T* best, int64_t* ind) {
  for (int64_t c = 0; c < count; ++c) {
    T b = minus_infinity<T>();
    int64_t a = win.h.init * win.W + win.w.init;
    for (int64_t i = 0; i < win.h.count; ++i) {
      const int64_t ih = win.h.begin + i * win.h_step;
      for (int64_t j = 0; j < win.w.count; ++j) {
        const int64_t iw = win.w.begin + j * win.w_step;
        const T v = x[ih * win.x_h + iw * win.x_w + c];
        if (v > b || v != v) {
          b = v;
          a = ih * win.W + iw;
        }
      }
    }
    best[c] = b;
    if (kArg) ind[c] = a;
  }
}

// Runs a pixel's channels [0, count) in register chunks (see above): wide(c) for the
// whole chunks of kChunk from c on, narrow(c) for eight channels from c on, the last
// eight overlapping those before, and scalar(count) where count < 8.
template <typename Wide, typename Narrow, typename Scalar>
inline void for_each_channel_chunk(int64_t count, Wide wide, Narrow narrow, Scalar scalar) {
  if (count < 8) return scalar(count);
  int64_t c = 0;
  for (; c + kChunk <= count; c += kChunk) wide(c);
  for (; c < count; c += 8) narrow(std::min(c, count - 8));
}

// Channels [0, count) of one output pixel.
template <typename T, bool kArg>
void max_pixel(const T* x, const PixelWindow& win, int64_t count, T* best, int64_t* ind) {
  for_each_channel_chunk(
      count,
      [&](int64_t c) {
        max_pixel_chunk<T, kChunkVectors, kArg>(x + c, win, best + c, kArg ? ind + c : nullptr);
      },
      [&](int64_t c) {
        max_pixel_chunk<T, 1, kArg>(x + c, win, best + c, kArg ? ind + c : nullptr);
      },
      [&](int64_t n) { max_pixel_scalar<T, kArg>(x, win, n, best, ind); });
}

template <typename T, bool kArg>
void max_pool2d_forward_channels_last_impl(const at::Tensor& input, at::Tensor& output,
                                           at::Tensor& indices, const PoolShape& s) {
  const T* x = input.data_ptr<T>();
  T* y = output.data_ptr<T>();
  int64_t* ind = kArg ? indices.data_ptr<int64_t>() : nullptr;
  const Strides4 xs(input), ys(output), is(kArg ? indices : output);
  const AxisTable ht(s.h), wt(s.w);
  const int64_t blocks = ceil_div(s.C, kChannelBlock);
  const int64_t taps = std::max<int64_t>(ht.kernel * wt.kernel, 1);
  at::parallel_for(0, s.N * s.P * s.Q * blocks, grain(std::min(s.C, kChannelBlock) * taps),
                   [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t c0 = (task % blocks) * kChannelBlock, cn = std::min(kChannelBlock, s.C - c0);
      const int64_t pixel = task / blocks;
      const int64_t q = pixel % s.Q, p = (pixel / s.Q) % s.P, n = pixel / (s.Q * s.P);
      const PixelWindow win{ht.win[p], wt.win[q], ht.step, wt.step, xs.h, xs.w, s.W};
      max_pixel<T, kArg>(x + n * xs.n + c0, win, cn, y + n * ys.n + p * ys.h + q * ys.w + c0,
                         kArg ? ind + n * is.n + p * is.h + q * is.w + c0 : nullptr);
    }
  });
}

template <typename T>
void max_pool2d_forward_channels_last(const at::Tensor& input, at::Tensor& output,
                                      at::Tensor& indices, const PoolShape& s) {
  if (indices.defined()) {
    max_pool2d_forward_channels_last_impl<T, true>(input, output, indices, s);
  } else {  // the values-only operator
    max_pool2d_forward_channels_last_impl<T, false>(input, output, indices, s);
  }
}

// Average pooling of channels [0, 8 * kVectors) of one output pixel, the taps summed in
// row-major order, then divided: x points at the pixel's image and first channel.
template <typename T, int kVectors>
void sum_pixel_chunk(const T* __restrict__ x, const PixelWindow& win, T divisor,
                     T* __restrict__ out) {
  using V = typename Lanes8<T>::values;
  V acc[kVectors];
#pragma GCC unroll 4
  for (int u = 0; u < kVectors; ++u) acc[u] = V{};
  for (int64_t ih = win.h.begin; ih < win.h.begin + win.h.count; ++ih) {
    for (int64_t iw = win.w.begin; iw < win.w.begin + win.w.count; ++iw) {
      const T* xv = x + ih * win.x_h + iw * win.x_w;
#pragma GCC unroll 4
      for (int u = 0; u < kVectors; ++u) {
        V v;
        load8(xv + 8 * u, v);
        acc[u] += v;
      }
    }
  }
#pragma GCC unroll 4
  for (int u = 0; u < kVectors; ++u) {
    acc[u] /= divisor;
    std::memcpy(out + 8 * u, &acc[u], sizeof(V));
  }
}

template <typename T>
void avg_pool2d_forward_channels_last(const at::Tensor& input, at::Tensor& output,
                                      const PoolShape& s) {
  const T* x = input.data_ptr<T>();
  T* y = output.data_ptr<T>();
  const Strides4 xs(input), ys(output);
  const AxisTable ht(s.h), wt(s.w);
  const int64_t blocks = ceil_div(s.C, kChannelBlock);
  const int64_t taps = std::max<int64_t>(ht.kernel * wt.kernel, 1);
  at::parallel_for(0, s.N * s.P * s.Q * blocks, grain(std::min(s.C, kChannelBlock) * taps),
                   [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t c0 = (task % blocks) * kChannelBlock, cn = std::min(kChannelBlock, s.C - c0);
      const int64_t pixel = task / blocks;
      const int64_t q = pixel % s.Q, p = (pixel / s.Q) % s.P, n = pixel / (s.Q * s.P);
      const PixelWindow win{ht.win[p], wt.win[q], 1, 1, xs.h, xs.w, s.W};
      const T* xc = x + n * xs.n + c0;
      T* out = y + n * ys.n + p * ys.h + q * ys.w + c0;
      if (win.h.count == 0 || win.w.count == 0) {
        std::fill(out, out + cn, T(0));
        continue;
      }
      const T divisor = static_cast<T>(s.divisor(win.h, win.w));
      for_each_channel_chunk(
          cn, [&](int64_t c) { sum_pixel_chunk<T, kChunkVectors>(xc + c, win, divisor, out + c); },
          [&](int64_t c) { sum_pixel_chunk<T, 1>(xc + c, win, divisor, out + c); },
          [&](int64_t count) {
            for (int64_t c = 0; c < count; ++c) {
              T acc = 0;
              for (int64_t ih = win.h.begin; ih < win.h.begin + win.h.count; ++ih) {
                for (int64_t iw = win.w.begin; iw < win.w.begin + win.w.count; ++iw) {
                  acc += xc[ih * win.x_h + iw * win.x_w + c];
                }
              }
              out[c] = acc / divisor;
            }
          });
    }
  });
}

// Average pooling's channels-last backward. Each output's share of its gradient, dy / its
// divisor, is divided out once per task, an output row at a time (Q pixels of C channels),
// into a ring of the rows that the task's current input row needs; every input pixel then
// adds the shares of the windows that hold it, in output order (p, then q), as the
// reference does. Dividing per input pixel instead, as this kernel first did, divided each
// share once for every pixel of its window (four times at 2x2) and ran 1.3-1.8x slower than
// the NCHW kernel, which also shares its divisions.
template <typename T>
class ShareRows {
 public:
  ShareRows(const T* dy, const Strides4& dys, const std::vector<T>& divisors, const AxisTable& ht,
            const AxisTable& wt, const PoolShape& s)
      : dy_(dy), dys_(dys), divisors_(divisors), ht_(ht), wt_(wt), s_(s) {
    for (int64_t ih = 0; ih < s.H; ++ih) ring_ = std::max(ring_, ht.last[ih] - ht.first[ih]);
    rows_.resize(ring_ * s.Q * s.C);
    held_.assign(ring_, -1);
  }

  // The shares of output row p of image n: pixel q's channels from q * C on. Each held
  // row was divided out for the same (n, p), so a caller walking input rows in order
  // divides each output row once.
  const T* row(int64_t n, int64_t p) {
    const int64_t slot = p % ring_, key = n * s_.P + p;
    T* share = rows_.data() + slot * s_.Q * s_.C;
    if (held_[slot] != key) {
      const PoolWindow& wh = ht_.win[p];
      for (int64_t q = 0; q < s_.Q; ++q) {
        const T* g = dy_ + n * dys_.n + p * dys_.h + q * dys_.w;
        const T divisor = divisors_[p * s_.Q + q];
        T* out = share + q * s_.C;
        if (wh.count == 0 || wt_.win[q].count == 0) {
          std::fill(out, out + s_.C, T(0));
        } else {
          // 0 + share: the sum the reference starts from zeros (-0.0 becomes 0.0), so that a
          // pixel in one window may copy its share as it is
          for (int64_t c = 0; c < s_.C; ++c) out[c] = T(0) + g[c] / divisor;
        }
      }
      held_[slot] = key;
    }
    return share;
  }

  // How many rows the ring holds: the most output rows that share an input row.
  int64_t ring() const { return ring_; }

 private:
  const T* dy_;
  const Strides4& dys_;
  const std::vector<T>& divisors_;
  const AxisTable& ht_;
  const AxisTable& wt_;
  const PoolShape& s_;
  int64_t ring_ = 1;
  std::vector<T> rows_;
  std::vector<int64_t> held_;  // the (n * P + p) each slot holds, -1 for none
};

template <typename T>
void avg_pool2d_grad_input_channels_last(const at::Tensor& grad_output, at::Tensor& grad_input,
                                         const PoolShape& s) {
  const T* dy = grad_output.data_ptr<T>();
  T* dx = grad_input.data_ptr<T>();
  const Strides4 dys(grad_output), dxs(grad_input);
  const AxisTable ht(s.h, true), wt(s.w, true);
  if (ht.global(s.H) && wt.global(s.W) && dxs.c == 1) {
    // global pooling: every pixel of an image gets the image's shares, computed once (as
    // the NCHW kernel does, dy / divisor), not once per pixel and channel block
    const T divisor = static_cast<T>(s.divisor(ht.win[0], wt.win[0]));
    at::parallel_for(0, s.N * s.H, grain(s.W * s.C), [&](int64_t begin, int64_t end) {
      std::vector<T> share(s.C);
      int64_t image = -1;
      for (int64_t row = begin; row < end; ++row) {
        const int64_t n = row / s.H, ih = row % s.H;
        if (n != image) {
          for (int64_t c = 0; c < s.C; ++c) share[c] = dy[n * dys.n + c * dys.c] / divisor;
          image = n;
        }
        for (int64_t iw = 0; iw < s.W; ++iw) {
          std::copy(share.begin(), share.end(), dx + n * dxs.n + ih * dxs.h + iw * dxs.w);
        }
      }
    });
    return;
  }
  const std::vector<T> w_extent = divisor_extents<T>(wt);
  std::vector<T> divisors(s.P * s.Q);
  for (int64_t p = 0; p < s.P; ++p) row_divisors(s, ht.win[p], w_extent, &divisors[p * s.Q]);
  int64_t terms_per_pixel = 1;  // along W: the most windows that share an input column
  for (int64_t iw = 0; iw < s.W; ++iw) {
    terms_per_pixel = std::max(terms_per_pixel, wt.last[iw] - wt.first[iw]);
  }
  const bool stream = streams(grad_input.nbytes());
  at::parallel_for(0, s.N * s.H, grain(s.W * s.C), [&](int64_t begin, int64_t end) {
    ShareRows<T> shares(dy, dys, divisors, ht, wt, s);
    std::vector<const T*> rows(shares.ring()), terms(shares.ring() * terms_per_pixel);
    std::vector<T> pixel(stream ? s.C : 0);  // a pixel's sum, before it is streamed out
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / s.H, ih = row % s.H;
      const int64_t p0 = ht.first[ih], p1 = ht.last[ih];
      for (int64_t p = p0; p < p1; ++p) rows[p - p0] = shares.row(n, p);
      T* dx_row = dx + n * dxs.n + ih * dxs.h;
      for (int64_t iw = 0; iw < s.W; ++iw) {
        T* out = dx_row + iw * dxs.w;
        int64_t count = 0;
        for (int64_t p = p0; p < p1; ++p) {
          for (int64_t q = wt.first[iw]; q < wt.last[iw]; ++q) {
            terms[count++] = rows[p - p0] + q * s.C;
          }
        }
        if (count == 0) {
          std::fill(out, out + s.C, T(0));
        } else if (count == 1) {
          if (stream) {
            stream_copy(out, terms[0], s.C);
          } else {
            std::copy(terms[0], terms[0] + s.C, out);
          }
        } else {
          T* __restrict__ sum = stream ? pixel.data() : out;
          const T* __restrict__ a = terms[0];
          const T* __restrict__ b = terms[1];
          for (int64_t c = 0; c < s.C; ++c) sum[c] = a[c] + b[c];
          for (int64_t t = 2; t < count; ++t) {
            const T* __restrict__ term = terms[t];
            for (int64_t c = 0; c < s.C; ++c) sum[c] += term[c];
          }
          if (stream) stream_copy(out, sum, s.C);
        }
      }
    }
    if (stream) stream_fence();
  });
}

// The largest of index[0, count) where all of them lie in [0, size), else -1 (count > 0).
inline int64_t top_index_inside(const int64_t* index, int64_t count, int64_t size) {
  int64_t lo = index[0], hi = index[0];
  for (int64_t e = 1; e < count; ++e) {
    lo = std::min(lo, index[e]);
    hi = std::max(hi, index[e]);
  }
  return lo >= 0 && hi < size ? hi : -1;
}

// One task per (image, block of channels), in output-pixel order: within each plane the
// additions come in the same order as the NCHW and reference kernels'. grad_input comes
// uninitialised: each task zeroes its pixels lazily, through the end of the input row of
// the first index that reaches past what it has zeroed, so that (for the indices of a
// forward pass, which advance row by row) the zeros are still in cache when the scatter
// adds into them, instead of the whole tensor being zeroed before and read again after.
template <typename T>
void max_pool2d_grad_input_channels_last(const at::Tensor& grad_output, const at::Tensor& indices,
                                         at::Tensor& grad_input) {
  const T* dy = grad_output.data_ptr<T>();
  const int64_t* ind = indices.data_ptr<int64_t>();
  T* dx = grad_input.data_ptr<T>();
  const Strides4 dys(grad_output), is(indices), dxs(grad_input);
  const int64_t N = grad_input.size(0), C = grad_input.size(1), W = grad_input.size(3);
  const int64_t plane_size = grad_input.size(2) * W;
  const int64_t P = indices.size(2), Q = indices.size(3);
  // Whole images per task where they are enough to share out: a pixel's channels are then
  // one run, zeroed at once.
  const int64_t block = N >= 2 * at::get_num_threads() ? std::max<int64_t>(C, 1) : kChannelBlock;
  const int64_t blocks = ceil_div(C, block);
  const Prefetcher<T> ahead_dy(grad_output);
  const Prefetcher<int64_t> ahead_ind(indices);
  at::parallel_for(0, N * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t c0 = (task % blocks) * block, cn = std::min(block, C - c0);
      const int64_t n = task / blocks;
      T* dx_image = dx + n * dxs.n + c0;  // element k of channel c at dx_image[k * dx_w + c]
      const int64_t dx_w = dxs.w;  // a local: not reloaded after every store into dx
      int64_t zeroed = 0;  // pixels [0, zeroed) of the task's channels hold zeros
      auto zero_until = [&](int64_t pixel_end) {  // pixel_end >= zeroed
        if (cn == dx_w) {  // the pixels' channels are one run
          std::fill(dx_image + zeroed * dx_w, dx_image + pixel_end * dx_w, T(0));
        } else {
          for (int64_t k = zeroed; k < pixel_end; ++k) {
            std::fill(dx_image + k * dx_w, dx_image + k * dx_w + cn, T(0));
          }
        }
        zeroed = pixel_end;
      };
      for (int64_t p = 0; p < P; ++p) {
        for (int64_t q = 0; q < Q; ++q) {
          const T* gv = dy + n * dys.n + p * dys.h + q * dys.w + c0;
          const int64_t* kv = ind + n * is.n + p * is.h + q * is.w + c0;
          ahead_ind.fetch(kv, cn);
          ahead_dy.fetch(gv, cn);
          // The pixel's indices checked and zeroed for at once where they all lie inside the
          // plane: the adds then need neither test (CL 8x64x112x112 2x2: 3.6-3.9 -> 2.7-2.9
          // ms with the prefetches, two threads, a Zen 4 VM).
          const int64_t top = top_index_inside(kv, cn, plane_size);
          if (top >= 0) {
            if (top >= zeroed) zero_until((top / W + 1) * W);  // through the end of top's row
            for_each_index(kv, gv, cn, [&](int64_t c, int64_t k, T g) {
              dx_image[k * dx_w + c] += g;
            });
            continue;
          }
          for_each_index(kv, gv, cn, [&](int64_t c, int64_t k, T g) {
            if (k < 0 || k >= plane_size) return;
            if (k >= zeroed) zero_until((k / W + 1) * W);  // through the end of k's row
            dx_image[k * dx_w + c] += g;
          });
        }
      }
      zero_until(plane_size);
    }
  });
}

}  // namespace

template <typename T>
PoolKernels<T> pool_kernels() {
  return {&max_pool2d_forward_nchw<T>,
          &max_pool2d_forward_channels_last<T>,
          &max_pool2d_grad_input_nchw<T>,
          &max_pool2d_grad_input_channels_last<T>,
          &avg_pool2d_forward_nchw<T>,
          &avg_pool2d_forward_channels_last<T>,
          &avg_pool2d_grad_input_nchw<T>,
          &avg_pool2d_grad_input_channels_last<T>};
}

template PoolKernels<float> pool_kernels<float>();
template PoolKernels<double> pool_kernels<double>();

}  // namespace cnnops::cpu::CNNOPS_POOL_ISA

#endif  // CNNOPS_POOL_ISA
