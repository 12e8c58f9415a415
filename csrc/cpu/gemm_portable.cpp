// The GEMM micro-kernel in portable C++ (GCC/Clang generic vectors, whatever the target
// ISA offers): the fallback when the CPU lacks AVX2/FMA or CNNOPS_CPU_ISA=portable.
// The same 6 x 16 float (6 x 8 double) block as the AVX2 kernel.
#include "cpu/gemm_kernel.h"

#include <cstdint>
#include <cstring>
#include <type_traits>

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
  static vec relu(vec v) { return vec{} > v ? vec{} : v; }  // NaN stays NaN
  static void store(T* p, vec v) { std::memcpy(p, &v, sizeof(vec)); }
  static vec load_first(const T* p, int count) {  // count in [0, width]
    vec v{};
    for (int i = 0; i < count; ++i) v[i] = p[i];
    return v;
  }
  static vec load_last(const T* p, int count) {  // count in [0, width]
    vec v{};
    for (int i = width - count; i < width; ++i) v[i] = p[i];
    return v;
  }
  static vec in_register(vec v) { return v; }
  static T sum(vec v) {
    T s = T(0);
    for (int i = 0; i < width; ++i) s += v[i];
    return s;
  }
  static void store_first(T* p, vec v, int count) {  // count in [0, width]
    for (int i = 0; i < count; ++i) p[i] = v[i];
  }
  static vec keep(vec v, const T* m) {
    using bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    typedef bits ivec __attribute__((vector_size(32)));
    ivec vi, mi;
    std::memcpy(&vi, &v, sizeof(vec));
    std::memcpy(&mi, m, sizeof(vec));
    vi &= mi;
    std::memcpy(&v, &vi, sizeof(vec));
    return v;
  }
};

void gemm_packed(long M, long N, long K, const float* a, const float* b, float* c, long rs_c,
                 long cs_c) {
  detail::gemm_packed<GenericVec<float>, 6, 2>(M, N, K, a, b, c, rs_c, cs_c);
}

void gemm_packed(long M, long N, long K, const double* a, const double* b, double* c, long rs_c,
                 long cs_c) {
  detail::gemm_packed<GenericVec<double>, 6, 2>(M, N, K, a, b, c, rs_c, cs_c);
}

void direct_row(long taps, const long* tap_off, const float* x, const float* w, long n, float* y,
                long rs_y, int m_valid, const float* bias, bool relu) {
  detail::direct_row<GenericVec<float>, 6, 2>(taps, tap_off, x, w, n, y, rs_y, m_valid, bias,
                                              relu);
}

void direct_row(long taps, const long* tap_off, const double* x, const double* w, long n,
                double* y, long rs_y, int m_valid, const double* bias, bool relu) {
  detail::direct_row<GenericVec<double>, 6, 2>(taps, tap_off, x, w, n, y, rs_y, m_valid, bias,
                                               relu);
}

void direct_pixels(long taps, const long* tap_off, const float* x, const float* b, float* c,
                   long ldc) {
  detail::direct_pixels<GenericVec<float>, 6, 2>(taps, tap_off, x, b, c, ldc);
}

void direct_pixels(long taps, const long* tap_off, const double* x, const double* b, double* c,
                   long ldc) {
  detail::direct_pixels<GenericVec<double>, 6, 2>(taps, tap_off, x, b, c, ldc);
}

void gathered_pixels(long taps, const long* pixel_off, const long* tap_off, const float* x,
                     const float* b, float* c, long ldc) {
  detail::gathered_pixels<GenericVec<float>, 6, 2>(taps, pixel_off, tap_off, x, b, c, ldc);
}

void gathered_pixels(long taps, const long* pixel_off, const long* tap_off, const double* x,
                     const double* b, double* c, long ldc) {
  detail::gathered_pixels<GenericVec<double>, 6, 2>(taps, pixel_off, tap_off, x, b, c, ldc);
}

void direct_grad_weight_pixels(long images, long n, long row_len, long row_pitch,
                               const float* x, const long* tap_off,
                               long x_image, int t_valid, const float* dy, long dy_image,
                               long dy_pixel, float* sums, long ld) {
  detail::direct_grad_weight_pixels<GenericVec<float>, 6, 2>(
      images, n, row_len, row_pitch, x, tap_off, x_image, t_valid, dy, dy_image, dy_pixel, sums,
      ld);
}

void direct_grad_weight_pixels(long images, long n, long row_len, long row_pitch,
                               const double* x, const long* tap_off,
                               long x_image, int t_valid, const double* dy, long dy_image,
                               long dy_pixel, double* sums, long ld) {
  detail::direct_grad_weight_pixels<GenericVec<double>, 6, 2>(
      images, n, row_len, row_pitch, x, tap_off, x_image, t_valid, dy, dy_image, dy_pixel, sums,
      ld);
}

void direct_row_thin(long taps, const long* tap_off, const float* x, const float* w, long n,
                     float* y, long rs_y, int m_valid, const float* bias, bool relu) {
  detail::direct_row<GenericVec<float>, 3, 3>(taps, tap_off, x, w, n, y, rs_y, m_valid, bias,
                                              relu);
}

void direct_row_thin(long taps, const long* tap_off, const double* x, const double* w, long n,
                     double* y, long rs_y, int m_valid, const double* bias, bool relu) {
  detail::direct_row<GenericVec<double>, 3, 3>(taps, tap_off, x, w, n, y, rs_y, m_valid, bias,
                                               relu);
}

void direct_plane(long taps, const long* tap_off, const long* tap_mask, const float* masks,
                  const float* x, const float* w, long n, float* y, long rs_y, int m_valid,
                  const float* bias, bool relu) {
  detail::direct_plane<GenericVec<float>, 4, 3>(taps, tap_off, tap_mask, masks, x, w, n, y, rs_y, m_valid,
                                   bias, relu);
}

void direct_plane(long taps, const long* tap_off, const long* tap_mask, const double* masks,
                  const double* x, const double* w, long n, double* y, long rs_y, int m_valid,
                  const double* bias, bool relu) {
  detail::direct_plane<GenericVec<double>, 4, 3>(taps, tap_off, tap_mask, masks, x, w, n, y, rs_y, m_valid,
                                    bias, relu);
}

void direct_grad_weight(long rows, long n, const float* dy, const long* dy_off, long dy_row,
                        int k_valid, const float* x, const long* tap_off, long x_row,
                        int t_valid, float* sums, long ld) {
  detail::direct_grad_weight<GenericVec<float>, 4, 3>(rows, n, dy, dy_off, dy_row, k_valid, x,
                                                      tap_off, x_row, t_valid, sums, ld);
}

void direct_grad_weight(long rows, long n, const double* dy, const long* dy_off, long dy_row,
                        int k_valid, const double* x, const long* tap_off, long x_row,
                        int t_valid, double* sums, long ld) {
  detail::direct_grad_weight<GenericVec<double>, 4, 3>(rows, n, dy, dy_off, dy_row, k_valid, x,
                                                       tap_off, x_row, t_valid, sums, ld);
}

}  // namespace cnnops::cpu::portable
