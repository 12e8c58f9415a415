// The depthwise loops (depthwise_kernel.h) in portable C++ (GCC/Clang generic vectors,
// whatever the target ISA offers): the fallback without AVX2/FMA or with
// CNNOPS_CPU_ISA=portable.
#include <cstring>

#include "cpu/depthwise_kernel.h"

namespace cnnops::cpu::portable {

namespace {  // internal linkage: gemm_portable.cpp has vector traits of its own

template <typename T>
struct GenericVec {
  using scalar = T;
  typedef T vec __attribute__((vector_size(32)));
  static constexpr int width = 32 / sizeof(T);
  static constexpr bool kShuffles = false;  // the strips' stride-2 rows go element by element
  static vec zero() { return vec{}; }
  static vec load(const T* p) {
    vec v;
    std::memcpy(&v, p, sizeof(vec));
    return v;
  }
  static vec broadcast(T x) { return vec{} + x; }
  static vec fma(vec a, vec b, vec acc) { return a * b + acc; }
  static vec add(vec a, vec b) { return a + b; }
  static void store(T* p, vec v) { std::memcpy(p, &v, sizeof(vec)); }
  static vec load_n(const T* p, long n) {
    vec v{};
    std::memcpy(&v, p, n * sizeof(T));
    return v;
  }
  static void store_n(T* p, vec v, long n) { std::memcpy(p, &v, n * sizeof(T)); }
  static vec relu(vec v) {
    for (int l = 0; l < width; ++l) v[l] = v[l] < T(0) ? T(0) : v[l];
    return v;
  }
  struct Lanes {
    long lo, hi;
  };
  static Lanes lanes(long lo, long hi) { return {lo, hi}; }
  static vec load_lanes(const T* p, Lanes m) {
    vec v{};
    for (long l = m.lo; l < m.hi; ++l) v[l] = p[l];
    return v;
  }
  static vec load_lanes_within(const T* p, Lanes m) { return load_lanes(p, m); }
  struct Pick {
    long index[width];
  };
  static Pick pick(const long* from) {
    Pick k;
    for (int l = 0; l < width; ++l) k.index[l] = from[l];
    return k;
  }
  static vec picked(vec a, vec b, const Pick& k) {
    vec v{};
    for (int l = 0; l < width; ++l) {
      const long e = k.index[l];
      if (e >= 0 && e < width) v[l] = a[e];
      if (e >= width) v[l] = b[e - width];
    }
    return v;
  }
  static void deinterleave2(vec a, vec b, vec& even, vec& odd) {
    for (int l = 0; l < width / 2; ++l) {
      even[l] = a[2 * l];
      odd[l] = a[2 * l + 1];
      even[l + width / 2] = b[2 * l];
      odd[l + width / 2] = b[2 * l + 1];
    }
  }
  static void interleave2(vec even, vec odd, vec& lo, vec& hi) {
    for (int l = 0; l < width / 2; ++l) {
      lo[2 * l] = even[l];
      lo[2 * l + 1] = odd[l];
      hi[2 * l] = even[l + width / 2];
      hi[2 * l + 1] = odd[l + width / 2];
    }
  }
  static void deinterleave2_any(vec a, vec b, vec& even, vec& odd) {
    deinterleave2(a, b, even, odd);
  }
  static vec unscramble(vec v) { return v; }
};

}  // namespace

CNNOPS_DEPTHWISE_ENTRY_POINTS(float, GenericVec<float>, GenericVec<float>)
CNNOPS_DEPTHWISE_ENTRY_POINTS(double, GenericVec<double>, GenericVec<double>)

}  // namespace cnnops::cpu::portable
