// Run-time choice between the AVX-512, AVX2+FMA and portable GEMM micro-kernels.
#include "cpu/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace cnnops::cpu {

// Each ISA's build of the micro-kernel (gemm_<isa>.cpp).
#define CNNOPS_DECLARE_GEMM(isa)                                                          \
  namespace isa {                                                                         \
  void gemm_packed(long M, long N, long K, const float* a, const float* b, float* c,      \
                   long rs_c, long cs_c);                                                 \
  void gemm_packed(long M, long N, long K, const double* a, const double* b, double* c,   \
                   long rs_c, long cs_c);                                                 \
  void direct_row(long taps, const long* tap_off, const float* x, const float* w, long n, \
                  float* y, long rs_y, int m_valid, const float* bias, bool relu);        \
  void direct_row(long taps, const long* tap_off, const double* x, const double* w,       \
                  long n, double* y, long rs_y, int m_valid, const double* bias,          \
                  bool relu);                                                             \
  void direct_row_thin(long taps, const long* tap_off, const float* x, const float* w,    \
                       long n, float* y, long rs_y, int m_valid, const float* bias,       \
                       bool relu);                                                        \
  void direct_row_thin(long taps, const long* tap_off, const double* x, const double* w,  \
                       long n, double* y, long rs_y, int m_valid, const double* bias,     \
                       bool relu);                                                        \
  void direct_plane(long taps, const long* tap_off, const long* tap_mask,                \
                    const float* masks, const float* x, const float* w, long n, float* y, \
                    long rs_y, int m_valid, const float* bias, bool relu);                \
  void direct_plane(long taps, const long* tap_off, const long* tap_mask,                \
                    const double* masks, const double* x, const double* w, long n,        \
                    double* y, long rs_y, int m_valid, const double* bias, bool relu);    \
  void direct_pixels(long taps, const long* tap_off, const float* x, const float* b,      \
                     float* c, long ldc);                                                 \
  void direct_pixels(long taps, const long* tap_off, const double* x, const double* b,    \
                     double* c, long ldc);                                                \
  void gathered_pixels(long taps, const long* pixel_off, const long* tap_off,            \
                       const float* x, const float* b, float* c, long ldc);               \
  void gathered_pixels(long taps, const long* pixel_off, const long* tap_off,            \
                       const double* x, const double* b, double* c, long ldc);            \
  void direct_grad_weight_pixels(long images, long n, long row_len, long row_pitch,       \
                                 const float* x,                                          \
                                 const long* tap_off, long x_image, int t_valid,          \
                                 const float* dy, long dy_image, long dy_pixel,           \
                                 float* sums, long ld);                                   \
  void direct_grad_weight_pixels(long images, long n, long row_len, long row_pitch,       \
                                 const double* x,                                         \
                                 const long* tap_off, long x_image, int t_valid,          \
                                 const double* dy, long dy_image, long dy_pixel,          \
                                 double* sums, long ld);                                  \
  void direct_grad_weight(long rows, long n, const float* dy, const long* dy_off,         \
                          long dy_row, int k_valid, const float* x, const long* tap_off,  \
                          long x_row, int t_valid, float* sums, long ld);                 \
  void direct_grad_weight(long rows, long n, const double* dy, const long* dy_off,        \
                          long dy_row, int k_valid, const double* x, const long* tap_off, \
                          long x_row, int t_valid, double* sums, long ld);                \
  }

CNNOPS_DECLARE_GEMM(portable)
#if defined(__x86_64__) || defined(_M_X64)
#define CNNOPS_X86 1
CNNOPS_DECLARE_GEMM(avx2)
CNNOPS_DECLARE_GEMM(avx512)
#endif

namespace {

Isa best_isa() {
#ifdef CNNOPS_X86
  __builtin_cpu_init();
  // VL as well as F: every AVX-512 CPU but the Xeon Phi has both (depthwise_avx512vl.cpp)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) {
    return Isa::avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::portable;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2+fma";
    default: return "portable";
  }
}

}  // namespace

Isa active_isa() {
  // Decided once: the environment and the CPU do not change while the process runs.
  static const Isa chosen = [] {
    const Isa best = best_isa();
    const char* cap = std::getenv("CNNOPS_CPU_ISA");
    if (cap == nullptr) return best;
    if (std::strcmp(cap, "portable") == 0) return Isa::portable;
    if (std::strcmp(cap, "avx2") == 0 && best == Isa::avx512) return Isa::avx2;
    return best;
  }();
  return chosen;
}

const char* cpu_isa() { return isa_name(active_isa()); }
const char* cpu_best_isa() { return isa_name(best_isa()); }

template <>
GemmTile gemm_tile<float>() {
  return active_isa() == Isa::avx512 ? GemmTile{12, 32} : GemmTile{6, 16};
}

template <>
GemmTile gemm_tile<double>() {
  return active_isa() == Isa::avx512 ? GemmTile{12, 16} : GemmTile{6, 8};
}

// 9 taps x 2 vectors of channels on AVX-512; 6 x 2 on AVX2 and portable, where 9 x 1 loaded
// 10 values per 9 FMAs (Zen 3: SimpleCNN conv2 / conv3 grad_weight 14-20% more CPU time).
template <>
GemmTile direct_grad_weight_pixels_tile<float>() {
  return active_isa() == Isa::avx512 ? GemmTile{9, 32} : GemmTile{6, 16};
}

template <>
GemmTile direct_grad_weight_pixels_tile<double>() {
  return active_isa() == Isa::avx512 ? GemmTile{9, 16} : GemmTile{6, 8};
}

// 8 output channels x 3 vectors (24 accumulators) on AVX-512, 4 x 3 on AVX2 and portable:
// MR a divisor of 32 and 64 output channels.
template <>
GemmTile direct_plane_tile<float>() {
  return active_isa() == Isa::avx512 ? GemmTile{8, 48} : GemmTile{4, 24};
}

template <>
GemmTile direct_plane_tile<double>() {
  return active_isa() == Isa::avx512 ? GemmTile{8, 24} : GemmTile{4, 12};
}

// 3 rows x 6 vectors (18 accumulators) on AVX-512, 3 x 3 on AVX2 and portable.
template <>
GemmTile direct_thin_tile<float>() {
  return active_isa() == Isa::avx512 ? GemmTile{3, 96} : GemmTile{3, 24};
}

template <>
GemmTile direct_thin_tile<double>() {
  return active_isa() == Isa::avx512 ? GemmTile{3, 48} : GemmTile{3, 12};
}

// Output channels x taps per block of the direct weight-gradient kernel: 3 x 9 accumulators
// of AVX-512's 32 registers; 4 x 3 of AVX2's 16 (and portable), where 1 x 9 loaded 10
// vectors per 9 FMAs (4 x 3: 7 per 12).
template <>
GemmTile direct_grad_weight_tile<float>() {
  return active_isa() == Isa::avx512 ? GemmTile{3, 9} : GemmTile{4, 3};
}

template <>
GemmTile direct_grad_weight_tile<double>() {
  return direct_grad_weight_tile<float>();
}

#ifdef CNNOPS_X86
#define CNNOPS_DISPATCH(kernel, ...)                                       \
  switch (active_isa()) {                                                  \
    case Isa::avx512: return avx512::kernel(__VA_ARGS__);                  \
    case Isa::avx2: return avx2::kernel(__VA_ARGS__);                      \
    default: return portable::kernel(__VA_ARGS__);                         \
  }
#else
#define CNNOPS_DISPATCH(kernel, ...) return portable::kernel(__VA_ARGS__);
#endif

void gemm_packed(int64_t M, int64_t N, int64_t K, const float* a, const float* b, float* c,
                 int64_t rs_c, int64_t cs_c) {
  CNNOPS_DISPATCH(gemm_packed, M, N, K, a, b, c, rs_c, cs_c)
}

void gemm_packed(int64_t M, int64_t N, int64_t K, const double* a, const double* b, double* c,
                 int64_t rs_c, int64_t cs_c) {
  CNNOPS_DISPATCH(gemm_packed, M, N, K, a, b, c, rs_c, cs_c)
}

void direct_row(int64_t taps, const int64_t* tap_off, const float* x, const float* w, int64_t n,
                float* y, int64_t rs_y, int m_valid, const float* bias, bool relu) {
  static_assert(sizeof(long) == sizeof(int64_t), "tap offsets are passed as long");
  CNNOPS_DISPATCH(direct_row, taps, reinterpret_cast<const long*>(tap_off), x, w, n, y, rs_y,
                  m_valid, bias, relu)
}

void direct_row(int64_t taps, const int64_t* tap_off, const double* x, const double* w,
                int64_t n, double* y, int64_t rs_y, int m_valid, const double* bias, bool relu) {
  CNNOPS_DISPATCH(direct_row, taps, reinterpret_cast<const long*>(tap_off), x, w, n, y, rs_y,
                  m_valid, bias, relu)
}

void direct_row_thin(int64_t taps, const int64_t* tap_off, const float* x, const float* w,
                     int64_t n, float* y, int64_t rs_y, int m_valid, const float* bias,
                     bool relu) {
  CNNOPS_DISPATCH(direct_row_thin, taps, reinterpret_cast<const long*>(tap_off), x, w, n, y,
                  rs_y, m_valid, bias, relu)
}

void direct_row_thin(int64_t taps, const int64_t* tap_off, const double* x, const double* w,
                     int64_t n, double* y, int64_t rs_y, int m_valid, const double* bias,
                     bool relu) {
  CNNOPS_DISPATCH(direct_row_thin, taps, reinterpret_cast<const long*>(tap_off), x, w, n, y,
                  rs_y, m_valid, bias, relu)
}

void direct_plane(int64_t taps, const int64_t* tap_off, const int64_t* tap_mask,
                  const float* masks, const float* x, const float* w, int64_t n, float* y,
                  int64_t rs_y, int m_valid, const float* bias, bool relu) {
  CNNOPS_DISPATCH(direct_plane, taps, reinterpret_cast<const long*>(tap_off),
                  reinterpret_cast<const long*>(tap_mask), masks, x, w, n, y, rs_y, m_valid,
                  bias, relu)
}

void direct_plane(int64_t taps, const int64_t* tap_off, const int64_t* tap_mask,
                  const double* masks, const double* x, const double* w, int64_t n, double* y,
                  int64_t rs_y, int m_valid, const double* bias, bool relu) {
  CNNOPS_DISPATCH(direct_plane, taps, reinterpret_cast<const long*>(tap_off),
                  reinterpret_cast<const long*>(tap_mask), masks, x, w, n, y, rs_y, m_valid,
                  bias, relu)
}

void direct_pixels(int64_t taps, const int64_t* tap_off, const float* x, const float* b,
                   float* c, int64_t ldc) {
  CNNOPS_DISPATCH(direct_pixels, taps, reinterpret_cast<const long*>(tap_off), x, b, c, ldc)
}

void direct_pixels(int64_t taps, const int64_t* tap_off, const double* x, const double* b,
                   double* c, int64_t ldc) {
  CNNOPS_DISPATCH(direct_pixels, taps, reinterpret_cast<const long*>(tap_off), x, b, c, ldc)
}

void gathered_pixels(int64_t taps, const int64_t* pixel_off, const int64_t* tap_off,
                     const float* x, const float* b, float* c, int64_t ldc) {
  CNNOPS_DISPATCH(gathered_pixels, taps, reinterpret_cast<const long*>(pixel_off),
                  reinterpret_cast<const long*>(tap_off), x, b, c, ldc)
}

void gathered_pixels(int64_t taps, const int64_t* pixel_off, const int64_t* tap_off,
                     const double* x, const double* b, double* c, int64_t ldc) {
  CNNOPS_DISPATCH(gathered_pixels, taps, reinterpret_cast<const long*>(pixel_off),
                  reinterpret_cast<const long*>(tap_off), x, b, c, ldc)
}

#ifdef CNNOPS_X86
namespace avx512 {
void whole_rows(long q, long taps, const long* row_off, const long* tap_off, const float* x,
                const float* b, float* c, long ldc);
void whole_rows_planes(long q, long taps, const long* row_off, const long* tap_off,
                       const float* x, const float* b, float* y, long y_c, long count,
                       long split, long second, long kept, const float* bias, bool relu);
void planes_to_pixels(const float* src, long src_c, long src_h, long rows, long cols, long kept,
                      float* dst, long row_pitch);
}  // namespace avx512
#endif

template <>
int64_t whole_rows_count<float>(int64_t q) {
  if (active_isa() != Isa::avx512) return 0;
  return q == 14 ? 1 : q == 7 ? 2 : q == 1 ? 14 : 0;
}

template <>
int64_t whole_rows_count<double>(int64_t) {
  return 0;
}

void whole_rows(int64_t q, int64_t taps, const int64_t* row_off, const int64_t* tap_off,
                const float* x, const float* b, float* c, int64_t ldc) {
#ifdef CNNOPS_X86
  if (whole_rows_count<float>(q) > 0 && q != 7) {  // rows of 7 go into planes only
    return avx512::whole_rows(q, taps, reinterpret_cast<const long*>(row_off),
                              reinterpret_cast<const long*>(tap_off), x, b, c, ldc);
  }
#endif
  std::abort();  // callers ask whole_rows_count first (and flat_conv sends rows of 7 to planes)
}

void whole_rows_planes(int64_t q, int64_t taps, const int64_t* row_off, const int64_t* tap_off,
                       const float* x, const float* b, float* y, int64_t y_c, int64_t count,
                       int64_t split, int64_t second, int64_t kept, const float* bias,
                       bool relu) {
#ifdef CNNOPS_X86
  if (whole_rows_count<float>(q) > 0) {
    return avx512::whole_rows_planes(q, taps, reinterpret_cast<const long*>(row_off),
                                     reinterpret_cast<const long*>(tap_off), x, b, y, y_c, count,
                                     split, second, kept, bias, relu);
  }
#endif
  std::abort();  // callers ask whole_rows_count first
}

namespace {

template <typename T>
void gathered_rows_impl(int64_t rows, int64_t cols, int64_t taps, const int64_t* pixel_off,
                        const int64_t* tap_off, const T* x, const T* b, T* c, int64_t ldc) {
  constexpr int64_t kMaxRows = 16;  // every micro-kernel's MR (gemm_tile) is at most this
  const GemmTile t = gemm_tile<T>();
  for (int64_t i = 0; i < rows; i += t.mr) {
    int64_t off[kMaxRows];
    for (int64_t r = 0; r < t.mr; ++r) off[r] = pixel_off[std::min(i + r, rows - 1)];
    for (int64_t j = 0; j < cols; j += t.nr) {
      gathered_pixels(taps, off, tap_off, x, b + j * taps, c + i * ldc + j, ldc);
    }
  }
}

}  // namespace

void gathered_rows(int64_t rows, int64_t cols, int64_t taps, const int64_t* pixel_off,
                   const int64_t* tap_off, const float* x, const float* b, float* c,
                   int64_t ldc) {
  gathered_rows_impl(rows, cols, taps, pixel_off, tap_off, x, b, c, ldc);
}

void gathered_rows(int64_t rows, int64_t cols, int64_t taps, const int64_t* pixel_off,
                   const int64_t* tap_off, const double* x, const double* b, double* c,
                   int64_t ldc) {
  gathered_rows_impl(rows, cols, taps, pixel_off, tap_off, x, b, c, ldc);
}

void direct_grad_weight_pixels(int64_t images, int64_t n, int64_t row_len, int64_t row_pitch,
                               const float* x, const int64_t* tap_off, int64_t x_image,
                               int t_valid, const float* dy, int64_t dy_image, int64_t dy_pixel,
                               float* sums, int64_t ld) {
  CNNOPS_DISPATCH(direct_grad_weight_pixels, images, n, row_len, row_pitch, x,
                  reinterpret_cast<const long*>(tap_off),
                  x_image, t_valid, dy, dy_image, dy_pixel, sums, ld)
}

void direct_grad_weight_pixels(int64_t images, int64_t n, int64_t row_len, int64_t row_pitch,
                               const double* x, const int64_t* tap_off, int64_t x_image,
                               int t_valid, const double* dy, int64_t dy_image, int64_t dy_pixel,
                               double* sums, int64_t ld) {
  CNNOPS_DISPATCH(direct_grad_weight_pixels, images, n, row_len, row_pitch, x,
                  reinterpret_cast<const long*>(tap_off),
                  x_image, t_valid, dy, dy_image, dy_pixel, sums, ld)
}

void direct_grad_weight(int64_t rows, int64_t n, const float* dy, const int64_t* dy_off,
                        int64_t dy_row, int k_valid, const float* x, const int64_t* tap_off,
                        int64_t x_row, int t_valid, float* sums, int64_t ld) {
  CNNOPS_DISPATCH(direct_grad_weight, rows, n, dy, reinterpret_cast<const long*>(dy_off), dy_row,
                  k_valid, x, reinterpret_cast<const long*>(tap_off), x_row, t_valid, sums, ld)
}

void direct_grad_weight(int64_t rows, int64_t n, const double* dy, const int64_t* dy_off,
                        int64_t dy_row, int k_valid, const double* x, const int64_t* tap_off,
                        int64_t x_row, int t_valid, double* sums, int64_t ld) {
  CNNOPS_DISPATCH(direct_grad_weight, rows, n, dy, reinterpret_cast<const long*>(dy_off), dy_row,
                  k_valid, x, reinterpret_cast<const long*>(tap_off), x_row, t_valid, sums, ld)
}

bool planes_to_pixels(const float* src, int64_t src_c, int64_t src_h, int64_t rows,
                      int64_t cols, int64_t kept, float* dst, int64_t row_pitch, int64_t nr) {
#ifdef CNNOPS_X86
  if (active_isa() == Isa::avx512 && nr == 32 && cols <= 16 && kept <= nr) {
    avx512::planes_to_pixels(src, src_c, src_h, rows, cols, kept, dst, row_pitch);
    return true;
  }
#endif
  return false;
}

}  // namespace cnnops::cpu
