// The version-2 pooling kernels built for AVX2 + FMA; chosen at run time by cpu/pool.cpp
// when the CPU has them (and CNNOPS_CPU_ISA does not say "portable").
#include "cpu/pool_fast.h"  // the headers the kernels use, for the baseline target

#if defined(__x86_64__) || defined(_M_X64)
#pragma GCC target("avx2,fma")
#define CNNOPS_POOL_ISA avx2
#include "cpu/pool_fast.h"  // the kernels, for AVX2 + FMA
#endif
