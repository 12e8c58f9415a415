// This machine's measured limits, for the benchmark's napkin math (`cnnops bench` reports
// each kernel's GFLOP/s or GB/s as a fraction of these):
//
//   fma_peak_gflops       independent FMA chains in registers on every thread: the most
//                         arithmetic the CPU kernels could do with the ISA they run with
//   copy_bandwidth_gbs    a parallel memcpy between two buffers larger than the caches,
//                         counted STREAM's way (bytes read + bytes written)
//
// The FMA loop is written once (peak_kernel.h) and built per ISA like the GEMM
// (peak_avx512.cpp, peak_avx2.cpp, peak_portable.cpp); it follows cpu_isa(), so
// CNNOPS_CPU_ISA caps it too. Both run on at::parallel_for's threads
// (torch.set_num_threads governs them) and report the best of several timed repeats.
#pragma once

#include <cstdint>

namespace cnnops::cpu {

// GFLOP/s of float (double_precision = false) or double FMAs on all threads; each FMA
// counts two flops. Repeats for at least `min_seconds`.
double fma_peak_gflops(bool double_precision, double min_seconds);

// GB/s of a parallel copy of `bytes` bytes, repeated for at least `min_seconds`.
double copy_bandwidth_gbs(int64_t bytes, double min_seconds);

}  // namespace cnnops::cpu
