// The GEMM micro-kernel in portable C++ (GCC/Clang generic vectors, whatever the target
// ISA offers): the fallback when the CPU lacks AVX2/FMA or CNNOPS_CPU_ISA=portable.
// The same 6 x 16 float (6 x 8 double) block as the AVX2 kernel.
#include "cpu/gemm_kernel.h"

#include <cstring>

namespace cnnops::cpu::portable {

template <typename T>
struct GenericVec {
  using scalar = T;
  typedef T vec __attribute__((vector_size(32)));
  static constexpr int width = 32 / sizeof(T);
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
};

void gemm_packed(long M, long N, long K, const float* a, const float* b, float* c, long rs_c,
                 long cs_c) {
  detail::gemm_packed<GenericVec<float>, 6, 2>(M, N, K, a, b, c, rs_c, cs_c);
}

void gemm_packed(long M, long N, long K, const double* a, const double* b, double* c, long rs_c,
                 long cs_c) {
  detail::gemm_packed<GenericVec<double>, 6, 2>(M, N, K, a, b, c, rs_c, cs_c);
}

}  // namespace cnnops::cpu::portable
