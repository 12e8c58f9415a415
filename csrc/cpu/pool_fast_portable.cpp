// The version-2 pooling kernels in portable C++ (whatever the baseline target offers): the
// fallback when the CPU lacks AVX2/FMA or CNNOPS_CPU_ISA=portable.
#include "cpu/pool_fast.h"  // the headers the kernels use

#define CNNOPS_POOL_ISA portable
#include "cpu/pool_fast.h"  // the kernels
