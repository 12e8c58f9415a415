// The FMA peak loop in portable C++ (GCC/Clang generic vectors, whatever the target ISA
// offers): the fallback when the CPU lacks AVX2/FMA or CNNOPS_CPU_ISA=portable. Without a
// fused instruction a*b + c is a multiply and an add; it still counts as two flops.
#include "cpu/peak_kernel.h"

#include <cstring>

namespace cnnops::cpu::portable {

template <typename T>
struct GenericVec {
  using scalar = T;
  typedef T vec __attribute__((vector_size(32)));
  static constexpr int width = 32 / sizeof(T);
  static vec broadcast(T x) { return vec{} + x; }
  static vec fma(vec a, vec b, vec acc) { return a * b + acc; }
  static vec add(vec a, vec b) { return a + b; }
  static void store(T* p, vec v) { std::memcpy(p, &v, sizeof(vec)); }
};

constexpr int kChains = 12;

double fma_loop(long steps, bool double_precision, double* flops) {
  const int width = double_precision ? GenericVec<double>::width : GenericVec<float>::width;
  *flops = 2.0 * steps * kChains * width;
  return double_precision ? detail::fma_loop<GenericVec<double>, kChains>(steps)
                          : detail::fma_loop<GenericVec<float>, kChains>(steps);
}

}  // namespace cnnops::cpu::portable
