// Peak measurements for the benchmark (peak.h): the FMA loop of the ISA in use, run on
// every thread, and a parallel streaming copy.
#include "cpu/peak.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu/gemm.h"

namespace cnnops::cpu {

// Each ISA's build of the FMA loop (peak_<isa>.cpp): runs `steps` steps, stores the flops
// done in *flops and returns a checksum.
#define CNNOPS_DECLARE_FMA_LOOP(isa) \
  namespace isa {                    \
  double fma_loop(long steps, bool double_precision, double* flops); \
  }

CNNOPS_DECLARE_FMA_LOOP(portable)
#if defined(__x86_64__) || defined(_M_X64)
CNNOPS_DECLARE_FMA_LOOP(avx2)
CNNOPS_DECLARE_FMA_LOOP(avx512)
#endif

namespace {

using FmaLoop = double (*)(long, bool, double*);
using Clock = std::chrono::steady_clock;

// The same instruction set as the GEMM micro-kernel: what the conv kernels can use.
FmaLoop fma_loop_in_use() {
#if defined(__x86_64__) || defined(_M_X64)
  if (active_isa() == Isa::avx512) return avx512::fma_loop;
  if (active_isa() == Isa::avx2) return avx2::fma_loop;
#endif
  return portable::fma_loop;
}

double seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Calls `run()` (one timed repeat, returns its seconds) until `min_seconds` have passed and
// at least three repeats were made; returns the fastest. The first repeat also wakes the
// thread pool and faults in the pages, and is left out.
template <typename Run>
double best_repeat(double min_seconds, Run&& run) {
  run();
  double best = 1e300, total = 0;
  for (int repeat = 0; repeat < 3 || total < min_seconds; ++repeat) {
    const double t = run();
    best = std::min(best, t);
    total += t;
  }
  return best;
}

}  // namespace

double fma_peak_gflops(bool double_precision, double min_seconds) {
  const FmaLoop loop = fma_loop_in_use();
  const int64_t threads = at::get_num_threads();
  std::vector<double> checksums(threads);
  double flops_per_thread = 0;
  auto run = [&](long steps) {
    const auto start = Clock::now();
    // One task per thread: range [0, threads) with grain 1 gives each thread one index.
    at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        double flops = 0;
        checksums[t] = loop(steps, double_precision, &flops);
        if (t == 0) flops_per_thread = flops;
      }
    });
    return seconds(start);
  };
  // Sized on this thread alone (a parallel region's wake-up or a preempted thread would
  // stop the doubling early) so that one repeat computes for about 20 ms.
  long steps = 1 << 12;
  for (;;) {
    const auto start = Clock::now();
    double flops = 0;
    checksums[0] = loop(steps, double_precision, &flops);
    if (seconds(start) >= 20e-3 || steps >= (1L << 40)) break;
    steps *= 2;
  }
  const double best = best_repeat(min_seconds, [&] { return run(steps); });
  volatile double keep = 0;
  for (double c : checksums) keep = keep + c;
  return flops_per_thread * static_cast<double>(threads) / best * 1e-9;
}

double copy_bandwidth_gbs(int64_t bytes, double min_seconds) {
  bytes = std::max<int64_t>(bytes, 1 << 20);
  std::unique_ptr<char[]> src(new char[bytes]);
  std::unique_ptr<char[]> dst(new char[bytes]);
  constexpr int64_t kChunk = 1 << 18;  // bytes per task
  // Touch the pages from the threads that will copy them (first-touch placement).
  at::parallel_for(0, bytes, kChunk, [&](int64_t begin, int64_t end) {
    std::memset(src.get() + begin, 1, end - begin);
    std::memset(dst.get() + begin, 0, end - begin);
  });
  const double best = best_repeat(min_seconds, [&] {
    const auto start = Clock::now();
    at::parallel_for(0, bytes, kChunk, [&](int64_t begin, int64_t end) {
      std::memcpy(dst.get() + begin, src.get() + begin, end - begin);
    });
    return seconds(start);
  });
  return 2.0 * static_cast<double>(bytes) / best * 1e-9;
}

}  // namespace cnnops::cpu
