// The small-plane depthwise kernels (depthwise_kernel.h) with 256-bit vectors, built again
// with AVX-512VL enabled: the AVX2 code of depthwise_avx2.cpp, whose registers the compiler
// may now take from all 32. depthwise.cpp runs them on AVX-512 machines (the avx512 ISA
// includes VL) for rows that fit in 256 bits.
#if defined(__x86_64__) || defined(_M_X64)

#pragma GCC target("avx2,fma,avx512f,avx512vl")
#include "cpu/depthwise_avx2_vec.h"
#include "cpu/depthwise_kernel.h"

namespace cnnops::cpu::avx512vl {

using avx2::Double256;
using avx2::Float256;

CNNOPS_DEPTHWISE_SMALL_PLANE_ENTRY_POINTS(float, Float256, detail::Doubled<Float256>)
CNNOPS_DEPTHWISE_SMALL_PLANE_ENTRY_POINTS(double, Double256, detail::Doubled<Double256>)

}  // namespace cnnops::cpu::avx512vl

#endif
