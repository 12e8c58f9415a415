// The packed GEMM at the heart of the CPU convolution kernels:
//
//   C[M x N] += A[M x K] * B[K x N]
//
// A and B arrive packed in panels, the layout the micro-kernel streams through, with the
// register-block shape MR x NR of the micro-kernel in use (gemm_tile()):
//   A: ceil(M / MR) panels; panel i holds rows [i*MR, i*MR + MR) as K groups of MR values
//      (a[(i * K + k) * MR + r] = A[i*MR + r][k]); rows past M are zero.
//   B: ceil(N / NR) panels; panel j holds columns [j*NR, j*NR + NR) as K groups of NR
//      values (b[(j * K + k) * NR + c] = B[k][j*NR + c]); columns past N are zero.
// C is strided: element (m, n) lives at c[m * rs_c + n * cs_c].
//
// The micro-kernel is written once (gemm_kernel.h) and built three times: for AVX-512
// (gemm_avx512.cpp), for AVX2+FMA (gemm_avx2.cpp) and in portable C++ (gemm_portable.cpp).
// The first call picks the widest the CPU supports; CNNOPS_CPU_ISA=avx2 or =portable in the
// environment caps the choice (tests run the portable path that way).
#pragma once

#include <cstdint>

namespace cnnops::cpu {

// Register-block shape of the micro-kernel in use, for element type float or double.
struct GemmTile {
  int64_t mr, nr;
};

template <typename T>
GemmTile gemm_tile();

void gemm_packed(int64_t M, int64_t N, int64_t K, const float* a, const float* b, float* c,
                 int64_t rs_c, int64_t cs_c);
void gemm_packed(int64_t M, int64_t N, int64_t K, const double* a, const double* b, double* c,
                 int64_t rs_c, int64_t cs_c);

// The direct-convolution micro-kernel (gemm_kernel.h): MR output channels (gemm_tile().mr)
// of one output row of n columns, y[i * rs_y + q] = bias[i] + sum over taps t of
// w[t * MR + i] * x[tap_off[t] + q], ReLU if asked. x is zero-padded and readable NR - 1
// elements past every tap_off[t] + n; bias may be null; rows past m_valid are not written.
void direct_row(int64_t taps, const int64_t* tap_off, const float* x, const float* w, int64_t n,
                float* y, int64_t rs_y, int m_valid, const float* bias, bool relu);
void direct_row(int64_t taps, const int64_t* tap_off, const double* x, const double* w,
                int64_t n, double* y, int64_t rs_y, int m_valid, const double* bias, bool relu);

// The same for thin problems (1 to 3 output channels: the grad_input of a first layer),
// where MR rows of direct_row would be mostly idle: direct_thin_tile<T>().mr (3) output
// channels x .nr columns per block, with w packed in panels of that MR.
template <typename T>
GemmTile direct_thin_tile();

void direct_row_thin(int64_t taps, const int64_t* tap_off, const float* x, const float* w,
                     int64_t n, float* y, int64_t rs_y, int m_valid, const float* bias, bool relu);
void direct_row_thin(int64_t taps, const int64_t* tap_off, const double* x, const double* w,
                     int64_t n, double* y, int64_t rs_y, int m_valid, const double* bias,
                     bool relu);

// The planar direct micro-kernel (gemm_kernel.h): direct_plane_tile<T>().mr output channels
// of an output plane of n pixels swept flat, at stride 1 on input rows as wide as the
// output's: y[i * rs_y + p] = bias[i] + sum over taps t of w[t * MR + i] * x[tap_off[t] + p],
// where tap t's value is zeroed at the pixels p whose masks[tap_mask[t] + p] are 0 (every bit
// set elsewhere; tap_mask[t] < 0: no mask). ReLU if asked. x and masks are readable .nr - 1
// elements past n; rows past m_valid are not written.
template <typename T>
GemmTile direct_plane_tile();

void direct_plane(int64_t taps, const int64_t* tap_off, const int64_t* tap_mask,
                  const float* masks, const float* x, const float* w, int64_t n, float* y,
                  int64_t rs_y, int m_valid, const float* bias, bool relu);
void direct_plane(int64_t taps, const int64_t* tap_off, const int64_t* tap_mask,
                  const double* masks, const double* x, const double* w, int64_t n, double* y,
                  int64_t rs_y, int m_valid, const double* bias, bool relu);

// The direct-convolution micro-kernel with the GEMM's roles (gemm_kernel.h): MR
// (gemm_tile().mr) consecutive pixels times NR output channels, c[i * ldc + j] = sum over
// taps t of x[tap_off[t] + i] * b[t * NR + j], b a B panel of W^T (pack_b); x is readable MR
// - 1 elements past every tap_off[t]. The whole MR x NR tile is stored.
void direct_pixels(int64_t taps, const int64_t* tap_off, const float* x, const float* b,
                   float* c, int64_t ldc);
void direct_pixels(int64_t taps, const int64_t* tap_off, const double* x, const double* b,
                   double* c, int64_t ldc);

// The channels-last micro-kernel with A read in place (gemm_kernel.h): MR (gemm_tile().mr)
// pixels times NR output channels, c[i * ldc + j] = sum over taps t of
// x[pixel_off[i] + tap_off[t]] * b[t * NR + j], b a B panel of W^T (pack_b). The whole
// MR x NR tile is stored.
void gathered_pixels(int64_t taps, const int64_t* pixel_off, const int64_t* tap_off,
                     const float* x, const float* b, float* c, int64_t ldc);
void gathered_pixels(int64_t taps, const int64_t* pixel_off, const int64_t* tap_off,
                     const double* x, const double* b, double* c, int64_t ldc);

// rows x cols of that product by gathered_pixels, MR rows at a time: row i of A is read at
// x + pixel_off[i] (plus tap_off[t]), column j's B panel starts at b + j * taps (panels of NR
// columns, pack_b, one after another). A last, short group of rows repeats row rows - 1;
// c holds round_up(rows, MR) rows of round_up(cols, NR) columns, those past rows and cols
// computed and never meant.
void gathered_rows(int64_t rows, int64_t cols, int64_t taps, const int64_t* pixel_off,
                   const int64_t* tap_off, const float* x, const float* b, float* c,
                   int64_t ldc);
void gathered_rows(int64_t rows, int64_t cols, int64_t taps, const int64_t* pixel_off,
                   const int64_t* tap_off, const double* x, const double* b, double* c,
                   int64_t ldc);

// The same for whole output rows (gemm_kernel.h, whole_rows): whole_rows_count<T>(q) rows of
// q pixels per call, row r's pixels consecutive from x + row_off[r],
// c[(r * q + k) * ldc + j] = sum over taps t of x[row_off[r] + k + tap_off[t]] * b[t * NR + j]
// for NR = gemm_tile().nr; 0 where the active ISA has no kernel for rows of q pixels. It has
// on AVX-512 for float: rows of 14 pixels one at a time (SimpleCNN's 14x14 planes), rows of 7
// two at a time (its 7x7 planes; whole_rows_planes only), and rows of one pixel 14 at a time
// (gathered_pixels with MR = 14).
template <typename T>
int64_t whole_rows_count(int64_t q);

void whole_rows(int64_t q, int64_t taps, const int64_t* row_off, const int64_t* tap_off,
                const float* x, const float* b, float* c, int64_t ldc);

// whole_rows' sums for the call's count <= 14 pixels and kept <= NR output channels written
// straight into planes (an output with contiguous rows), plus bias[j] (none if null), then
// ReLU if asked: y[j * y_c + i] for pixels i < split, y[j * y_c + second + i - split] for
// split <= i < count (a run across a plane's end continues at `second`: the next image's).
void whole_rows_planes(int64_t q, int64_t taps, const int64_t* row_off, const int64_t* tap_off,
                       const float* x, const float* b, float* y, int64_t y_c, int64_t count,
                       int64_t split, int64_t second, int64_t kept, const float* bias,
                       bool relu);

// dst[(p * row_pitch + q) * nr + j] = src[j * src_c + p * src_h + q] for p < rows, q < cols,
// j < kept, and 0 for kept <= j < nr: `kept` planes of unit column stride gathered pixel-major,
// as direct_grad_weight_pixels reads dY; columns q >= cols are not written. False (nothing
// done) where the active ISA has no kernel for it: it has on AVX-512 for nr = 32, cols <= 16.
bool planes_to_pixels(const float* src, int64_t src_c, int64_t src_h, int64_t rows,
                      int64_t cols, int64_t kept, float* dst, int64_t row_pitch, int64_t nr);

// The flat direct convolution's weight-gradient micro-kernel (gemm_kernel.h): for up to
// direct_grad_weight_pixels_tile<T>().mr taps m (x at tap_off[m]) and .nr output channels j
// of dy pixel-major (dy[i * dy_pixel + j]: packed NR wide, or channels-last), over `images`
// images (x and dy advancing by x_image and dy_image) of n flat pixels in rows of row_pitch,
// of which the first row_len of each row are summed (row_len == row_pitch: all),
//   sums[m * ld + j] += sum x[tap_off[m] + i] * dy[i * dy_pixel + j]      for m < t_valid.
template <typename T>
GemmTile direct_grad_weight_pixels_tile();

void direct_grad_weight_pixels(int64_t images, int64_t n, int64_t row_len, int64_t row_pitch,
                               const float* x, const int64_t* tap_off, int64_t x_image,
                               int t_valid, const float* dy, int64_t dy_image, int64_t dy_pixel,
                               float* sums, int64_t ld);
void direct_grad_weight_pixels(int64_t images, int64_t n, int64_t row_len, int64_t row_pitch,
                               const double* x, const int64_t* tap_off, int64_t x_image,
                               int t_valid, const double* dy, int64_t dy_image, int64_t dy_pixel,
                               double* sums, int64_t ld);

// The direct weight-gradient micro-kernel (gemm_kernel.h), for the same short reductions:
// for a block of up to direct_grad_weight_tile<T>().mr output channels i (rows of dY at
// dy_off[i]) and up to .nr taps t (x at tap_off[t]), over `rows` rows of n columns,
//   sums[i * ld + t] += sum_{j, q} dy[dy_off[i] + j * dy_row + q] * x[tap_off[t] + j * x_row + q]
// for i < k_valid, t < t_valid. x is zero-padded: each tap's n columns lie within its row.
template <typename T>
GemmTile direct_grad_weight_tile();

void direct_grad_weight(int64_t rows, int64_t n, const float* dy, const int64_t* dy_off,
                        int64_t dy_row, int k_valid, const float* x, const int64_t* tap_off,
                        int64_t x_row, int t_valid, float* sums, int64_t ld);
void direct_grad_weight(int64_t rows, int64_t n, const double* dy, const int64_t* dy_off,
                        int64_t dy_row, int k_valid, const double* x, const int64_t* tap_off,
                        int64_t x_row, int t_valid, double* sums, int64_t ld);

// The instruction sets the CPU kernels are built for, each a superset of the one before
// (avx512: AVX-512F with AVX-512VL, which the 256-bit depthwise kernels use).
enum class Isa { portable, avx2, avx512 };

// The instruction set every CPU kernel runs with, decided once from the CPU and
// CNNOPS_CPU_ISA ("portable" caps it, and so does "avx2" on an AVX-512 CPU).
Isa active_isa();

// Its name: "avx512", "avx2+fma" or "portable".
const char* cpu_isa();

// What this CPU supports, whatever CNNOPS_CPU_ISA says: "avx512", "avx2+fma" or "portable".
const char* cpu_best_isa();

}  // namespace cnnops::cpu
