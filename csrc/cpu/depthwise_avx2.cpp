// The depthwise loops (depthwise_kernel.h) built for AVX2 + FMA; chosen at run time by
// depthwise.cpp, following the ISA gemm.cpp picked.
#if defined(__x86_64__) || defined(_M_X64)

#pragma GCC target("avx2,fma")
#include "cpu/depthwise_avx2_vec.h"
#include "cpu/depthwise_kernel.h"

namespace cnnops::cpu::avx2 {

CNNOPS_DEPTHWISE_ENTRY_POINTS(float, Float256, detail::Doubled<Float256>)
CNNOPS_DEPTHWISE_ENTRY_POINTS(double, Double256, detail::Doubled<Double256>)

}  // namespace cnnops::cpu::avx2

#endif
