// The FMA throughput loop of fma_peak_gflops (peak.h), written once over a vector-ISA
// traits type `V` and compiled per ISA by peak_<isa>.cpp.
//
// CHAINS independent accumulators hide the FMA latency: a core with two FMA pipes of
// latency 4 needs at least 8 in flight. Each step is acc = acc * m + a with m just below 1,
// so the values settle near a / (1 - m) = 1 and never reach infinities or denormals.
// Like gemm_kernel.h, this header includes nothing (see there why).
#pragma once

namespace cnnops::cpu::detail {

// V provides: scalar, vec, width, broadcast(x), fma(a, b, acc) = a*b + acc, add(a, b),
// store(p, v). Runs `steps` steps and returns the sum of the accumulators, which the caller
// keeps so that the loop cannot be optimised away. Flops done: steps * CHAINS * width * 2.
template <typename V, int CHAINS>
inline double fma_loop(long steps) {
  using T = typename V::scalar;
  using vec = typename V::vec;
  vec acc[CHAINS];
#pragma GCC unroll 16
  for (int j = 0; j < CHAINS; ++j) acc[j] = V::broadcast(static_cast<T>(j) / CHAINS);
  const vec m = V::broadcast(static_cast<T>(0.9999));
  const vec a = V::broadcast(static_cast<T>(0.0001));
  for (long i = 0; i < steps; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < CHAINS; ++j) acc[j] = V::fma(acc[j], m, a);
  }
  for (int j = 1; j < CHAINS; ++j) acc[0] = V::add(acc[0], acc[j]);
  T lanes[V::width];
  V::store(lanes, acc[0]);
  double sum = 0;
  for (int i = 0; i < V::width; ++i) sum += lanes[i];
  return sum;
}

}  // namespace cnnops::cpu::detail
