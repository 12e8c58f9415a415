// CPU kernels of depthwise convolution: conv2d with groups == in_channels, entered from the
// conv2d operators (cpu/conv2d.cpp) and from the fused depthwise-separable operator.
//
// Letters: N batch, C input channels, H x W input, M = C * mult output channels (mult is the
// channel multiplier: output channel k reads input channel k / mult), R x S kernel, P x Q
// output. Weights are (M, 1, R, S). Tensors may have any strides (NCHW, channels_last, views).
//
// Kernel versions (cnnops.kernel_version("depthwise", v); 0 = automatic = 2):
// version 1: reference. A plain loop per output element: the direct sum over (r, s) for the
//            forward pass, the gather form of the input gradient, a reduction over (n, p, q)
//            per weight element.
// version 2: flattened planes. Each task copies the input rows its outputs read into a
//            zero-padded "strip" split into stride_h x stride_w phase sub-planes. In that
//            layout every tap (r, s) reads consecutive elements for consecutive outputs, also
//            across output rows when the few columns past each row are computed too and
//            discarded, so a whole plane is one long 1-D loop of vector FMAs over the taps
//            (depthwise_kernel.h: 3x3 and 5x5 unrolled, others generic), built for AVX-512,
//            AVX2 and portable C++.
//              forward      out = sum over taps of w * strip
//              grad_input   the gather form per input phase (h + pad_top) mod stride_h,
//                           (w + pad_left) mod stride_w: a correlation of the zero-padded
//                           grad_output planes of all mult output channels with the taps
//                           that reach that phase; no scatter, no atomics
//              grad_weight  per tap, the dot product of grad_output with the strip
//            Results with a unit column stride (NCHW) are written row by row straight from
//            the vector loop. NCHW planes whose output rows fit in one vector (MobileNet's
//            14x14 and 7x7 layers; on AVX2, 14x14 in a pair of vectors) skip the strips:
//            every output row is summed in registers straight from the input rows
//            (small_planes_correlate: forward, and grad_input at
//            stride 1 as the correlation with the flipped taps; small_planes_transposed:
//            grad_input at other strides, gathered row by row; small_planes_dot:
//            grad_weight). NCHW rows at stride 2 with a 3x3 kernel (MobileNet's
//            downsampling layers, stride2_shape), any width, go to the same three entry
//            points, which run stride-2 kernels on them: each input row split into its even
//            and odd columns in registers, grad_input's column pairs gathered and
//            interleaved back (channel multiplier 1), grad_weight's dot products against the
//            same split rows. NCHW 3x3 layers at stride 1 with padding 1 and planes of 24
//            rows or more read their planes in place too: the forward pass and grad_input
//            rows 2 to P - 3 (grid_plane_rows; the edge rows from two-row strips),
//            grad_weight every row (grid_plane_dot). Channels-last tensors with channel
//            multiplier 1 are summed in
//            place, pixel by pixel over the taps, vectors along the channels (forward,
//            grad_weight, grad_input by input phase; a 3x3 grad_weight at stride 1 two
//            output rows at a time), except grad_weight over planes small enough to be
//            gathered whole, a block of channels at a time, into a zero-padded scratch
//            (MobileNet's 14x14 and 7x7 layers); other channels-last problems are
//            handled in blocks of 64 bytes of channels per task, so that copies in and out
//            read and write whole cache lines.
//            conv2d_backward (and the separable operator's depthwise half), where grad_input
//            and grad_weight both take the small-plane kernels, runs them in one pass
//            (FusedBackward): each grad_weight task computes its channels'
//            grad_input planes and bias gradient just before their dot products, which then
//            read grad_output from cache. Where both read planes in place (3x3 at stride 1,
//            planes of 24 rows or more), likewise plane by plane (fused_backward_in_place).
//            Layers with a channel multiplier, 3x3 at stride 1 with padding 1 on NCHW rows of
//            a vector or more (SimpleCNN's first layer, 1 -> 32 channels), take grad_input,
//            grad_weight and conv2d_backward plane by plane too (multiplier_planes): each
//            grad_output plane, copied once into a zero-padded buffer, is added into its
//            input plane's gradient (padded_plane_rows) and dotted with the input plane.
// Determinism: every output element is written by one task; grad_weight sums fixed chunks
// of the batch (chosen from the shape alone) in order, so results do not depend on the
// thread count.

#include "cpu/depthwise.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <vector>

#include "common/kernel_version.h"
#include "cpu/depthwise_channels_last.h"
#include "cpu/depthwise_planes.h"
#include "cpu/gemm.h"
#include "cpu/scratch.h"
#include "cpu/stream_store.h"

namespace cnnops::cpu {

// ---- ISA dispatch of the 1-D loops -----------------------------------------------------

// The small-plane loops' declarations, inside a `namespace <isa>`.
#define CNNOPS_SMALL_PLANE_DECLARATIONS                                                       \
  void small_planes_correlate(const SmallPlanes& g, long k0, long count, const float* x,     \
                              long x_plane, const float* w, const float* bias, bool relu,    \
                              float* out, long out_plane);                                   \
  void small_planes_correlate(const SmallPlanes& g, long k0, long count, const double* x,    \
                              long x_plane, const double* w, const double* bias, bool relu,  \
                              double* out, long out_plane);                                  \
  void small_planes_transposed(const SmallPlanes& g, long k0, long count, const float* gy,  \
                               long gy_plane, const float* w, float* dx, long dx_plane,      \
                               bool stream);                                                 \
  void small_planes_transposed(const SmallPlanes& g, long k0, long count, const double* gy, \
                               long gy_plane, const double* w, double* dx, long dx_plane,    \
                               bool stream);                                                 \
  void small_planes_dot(const SmallPlanes& g, long count, const float* x, long x_step,        \
                        const float* gy, long gy_step, float* acc);                          \
  void small_planes_dot(const SmallPlanes& g, long count, const double* x, long x_step,       \
                        const double* gy, long gy_step, double* acc);

#define CNNOPS_DECLARE_DEPTHWISE_LOOPS(isa)                                                  \
  namespace isa {                                                                            \
  void taps_correlate(long n, int ntaps, const float* const* src, const float* w, float init, \
                      float* out);                                                           \
  void taps_correlate(long n, int ntaps, const double* const* src, const double* w,         \
                      double init, double* out);                                             \
  void taps_correlate_rows(long rows, long cols, int ntaps, const float* const* src,          \
                           long src_pitch, const float* w, float init, float* out,           \
                           long out_pitch);                                                  \
  void taps_correlate_rows(long rows, long cols, int ntaps, const double* const* src,         \
                           long src_pitch, const double* w, double init, double* out,        \
                           long out_pitch);                                                  \
  void grid_plane_rows(long rows, long cols, const float* x, long x_pitch, const float* w,   \
                       float init, bool relu, float* out, long out_pitch, bool stream);      \
  void grid_plane_rows(long rows, long cols, const double* x, long x_pitch, const double* w, \
                       double init, bool relu, double* out, long out_pitch, bool stream);    \
  void grid_plane_dot(long rows, long cols, const float* x, long x_pitch, const float* gy,    \
                      long gy_pitch, float* acc);                                            \
  void grid_plane_dot(long rows, long cols, const double* x, long x_pitch, const double* gy,  \
                      long gy_pitch, double* acc);                                           \
  void grid_plane_dot2(long rows, long cols, const float* x, long x_pitch, const float* gy0,  \
                       const float* gy1, long gy_pitch, float* acc0, float* acc1);           \
  void grid_plane_dot2(long rows, long cols, const double* x, long x_pitch,                 \
                       const double* gy0, const double* gy1, long gy_pitch, double* acc0,    \
                       double* acc1);                                                        \
  void copy_rows(long rows, long cols, const float* src, long src_pitch, float* dst,          \
                 long dst_pitch, float* lanes);                                               \
  void copy_rows(long rows, long cols, const double* src, long src_pitch, double* dst,        \
                 long dst_pitch, double* lanes);                                              \
  void padded_plane_rows(long rows, long cols, const float* x, long x_pitch, const float* w, \
                         bool add, float* out, long out_pitch);                              \
  void padded_plane_rows(long rows, long cols, const double* x, long x_pitch,               \
                         const double* w, bool add, double* out, long out_pitch);            \
  void taps_dot(long n, int ntaps, const float* const* src, const float* g, float* acc);     \
  void taps_dot(long n, int ntaps, const double* const* src, const double* g, double* acc);  \
  void deinterleave_rows(long rows, long n, int k, const float* src, long src_pitch,         \
                         float* const* dst, long dst_pitch);                                 \
  void deinterleave_rows(long rows, long n, int k, const double* src, long src_pitch,        \
                         double* const* dst, long dst_pitch);                                \
  void interleave_rows(long rows, long n, int k, const float* const* src, long src_pitch,    \
                       float* dst, long dst_pitch);                                          \
  void interleave_rows(long rows, long n, int k, const double* const* src, long src_pitch,   \
                       double* dst, long dst_pitch);                                         \
  void channels_correlate(long count, long C, int ntaps, const float* const* src,            \
                          long src_step, const float* const* w, const float* init,           \
                          float* out, long out_step, bool stream);                           \
  void channels_correlate(long count, long C, int ntaps, const double* const* src,           \
                          long src_step, const double* const* w, const double* init,         \
                          double* out, long out_step, bool stream);                          \
  void channels_dot_3x3_pair(long count, long C, int pad, const float* x, long x_row,       \
                             long x_step, const float* g, long g_row, long g_step,            \
                             float* const* acc);                                              \
  void channels_dot_3x3_pair(long count, long C, int pad, const double* x, long x_row,      \
                             long x_step, const double* g, long g_row, long g_step,           \
                             double* const* acc);                                             \
  void channels_dot(long count, long C, int ntaps, const float* const* src, long src_step,   \
                    const float* g, long g_step, float* const* acc);                         \
  void channels_dot(long count, long C, int ntaps, const double* const* src, long src_step,  \
                    const double* g, long g_step, double* const* acc);                       \
  void gather_channels(long rows, long cols, long n, long lanes, const float* src,           \
                       long src_row, long src_step, float* dst, long dst_row);               \
  void gather_channels(long rows, long cols, long n, long lanes, const double* src,          \
                       long src_row, long src_step, double* dst, long dst_row);              \
  void channels_dot_block(long rows, long cols, int ntaps, const float* x, long x_row,       \
                          long x_step, const long* offset, const float* g, long g_row,       \
                          long g_step, long lanes, float* const* acc);                       \
  void channels_dot_block(long rows, long cols, int ntaps, const double* x, long x_row,      \
                          long x_step, const long* offset, const double* g, long g_row,      \
                          long g_step, long lanes, double* const* acc);                      \
  CNNOPS_SMALL_PLANE_DECLARATIONS                                                            \
  }

CNNOPS_DECLARE_DEPTHWISE_LOOPS(portable)
#if defined(__x86_64__) || defined(_M_X64)
#define CNNOPS_DEPTHWISE_X86 1
CNNOPS_DECLARE_DEPTHWISE_LOOPS(avx2)
CNNOPS_DECLARE_DEPTHWISE_LOOPS(avx512)
namespace avx512vl {
CNNOPS_SMALL_PLANE_DECLARATIONS
}
#endif

// The loops run with the ISA of every CPU kernel (active_isa(), cpu/gemm.h).
#ifdef CNNOPS_DEPTHWISE_X86
#define CNNOPS_DISPATCH_LOOP(fn, ...)                     \
  switch (active_isa()) {                                 \
    case Isa::avx512: return avx512::fn(__VA_ARGS__);     \
    case Isa::avx2: return avx2::fn(__VA_ARGS__);         \
    default: return portable::fn(__VA_ARGS__);            \
  }
#else
#define CNNOPS_DISPATCH_LOOP(fn, ...) return portable::fn(__VA_ARGS__);
#endif

void taps_correlate(int64_t n, int ntaps, const float* const* src, const float* w, float init,
                    float* out) {
  CNNOPS_DISPATCH_LOOP(taps_correlate, n, ntaps, src, w, init, out)
}
void taps_correlate(int64_t n, int ntaps, const double* const* src, const double* w,
                    double init, double* out) {
  CNNOPS_DISPATCH_LOOP(taps_correlate, n, ntaps, src, w, init, out)
}
void taps_correlate_rows(int64_t rows, int64_t cols, int ntaps, const float* const* src,
                         int64_t src_pitch, const float* w, float init, float* out,
                         int64_t out_pitch) {
  CNNOPS_DISPATCH_LOOP(taps_correlate_rows, rows, cols, ntaps, src, src_pitch, w, init, out, out_pitch)
}
void taps_correlate_rows(int64_t rows, int64_t cols, int ntaps, const double* const* src,
                         int64_t src_pitch, const double* w, double init, double* out,
                         int64_t out_pitch) {
  CNNOPS_DISPATCH_LOOP(taps_correlate_rows, rows, cols, ntaps, src, src_pitch, w, init, out, out_pitch)
}
void grid_plane_rows(int64_t rows, int64_t cols, const float* x, int64_t x_pitch,
                     const float* w, float init, bool relu, float* out, int64_t out_pitch,
                     bool stream) {
  CNNOPS_DISPATCH_LOOP(grid_plane_rows, rows, cols, x, x_pitch, w, init, relu, out, out_pitch,
                       stream)
}
void grid_plane_rows(int64_t rows, int64_t cols, const double* x, int64_t x_pitch,
                     const double* w, double init, bool relu, double* out, int64_t out_pitch,
                     bool stream) {
  CNNOPS_DISPATCH_LOOP(grid_plane_rows, rows, cols, x, x_pitch, w, init, relu, out, out_pitch,
                       stream)
}
void grid_plane_dot(int64_t rows, int64_t cols, const float* x, int64_t x_pitch,
                    const float* gy, int64_t gy_pitch, float* acc) {
  CNNOPS_DISPATCH_LOOP(grid_plane_dot, rows, cols, x, x_pitch, gy, gy_pitch, acc)
}
void grid_plane_dot(int64_t rows, int64_t cols, const double* x, int64_t x_pitch,
                    const double* gy, int64_t gy_pitch, double* acc) {
  CNNOPS_DISPATCH_LOOP(grid_plane_dot, rows, cols, x, x_pitch, gy, gy_pitch, acc)
}
void grid_plane_dot2(int64_t rows, int64_t cols, const float* x, int64_t x_pitch,
                     const float* gy0, const float* gy1, int64_t gy_pitch, float* acc0,
                     float* acc1) {
  CNNOPS_DISPATCH_LOOP(grid_plane_dot2, rows, cols, x, x_pitch, gy0, gy1, gy_pitch, acc0, acc1)
}
void grid_plane_dot2(int64_t rows, int64_t cols, const double* x, int64_t x_pitch,
                     const double* gy0, const double* gy1, int64_t gy_pitch, double* acc0,
                     double* acc1) {
  CNNOPS_DISPATCH_LOOP(grid_plane_dot2, rows, cols, x, x_pitch, gy0, gy1, gy_pitch, acc0, acc1)
}
void copy_rows(int64_t rows, int64_t cols, const float* src, int64_t src_pitch, float* dst,
               int64_t dst_pitch, float* lanes) {
  CNNOPS_DISPATCH_LOOP(copy_rows, rows, cols, src, src_pitch, dst, dst_pitch, lanes)
}
void copy_rows(int64_t rows, int64_t cols, const double* src, int64_t src_pitch, double* dst,
               int64_t dst_pitch, double* lanes) {
  CNNOPS_DISPATCH_LOOP(copy_rows, rows, cols, src, src_pitch, dst, dst_pitch, lanes)
}
void padded_plane_rows(int64_t rows, int64_t cols, const float* x, int64_t x_pitch,
                       const float* w, bool add, float* out, int64_t out_pitch) {
  CNNOPS_DISPATCH_LOOP(padded_plane_rows, rows, cols, x, x_pitch, w, add, out, out_pitch)
}
void padded_plane_rows(int64_t rows, int64_t cols, const double* x, int64_t x_pitch,
                       const double* w, bool add, double* out, int64_t out_pitch) {
  CNNOPS_DISPATCH_LOOP(padded_plane_rows, rows, cols, x, x_pitch, w, add, out, out_pitch)
}
void taps_dot(int64_t n, int ntaps, const float* const* src, const float* g, float* acc) {
  CNNOPS_DISPATCH_LOOP(taps_dot, n, ntaps, src, g, acc)
}
void taps_dot(int64_t n, int ntaps, const double* const* src, const double* g, double* acc) {
  CNNOPS_DISPATCH_LOOP(taps_dot, n, ntaps, src, g, acc)
}
void deinterleave_rows(int64_t rows, int64_t n, int k, const float* src, int64_t src_pitch,
                       float* const* dst, int64_t dst_pitch) {
  CNNOPS_DISPATCH_LOOP(deinterleave_rows, rows, n, k, src, src_pitch, dst, dst_pitch)
}
void deinterleave_rows(int64_t rows, int64_t n, int k, const double* src, int64_t src_pitch,
                       double* const* dst, int64_t dst_pitch) {
  CNNOPS_DISPATCH_LOOP(deinterleave_rows, rows, n, k, src, src_pitch, dst, dst_pitch)
}
void interleave_rows(int64_t rows, int64_t n, int k, const float* const* src, int64_t src_pitch,
                     float* dst, int64_t dst_pitch) {
  CNNOPS_DISPATCH_LOOP(interleave_rows, rows, n, k, src, src_pitch, dst, dst_pitch)
}
void interleave_rows(int64_t rows, int64_t n, int k, const double* const* src,
                     int64_t src_pitch, double* dst, int64_t dst_pitch) {
  CNNOPS_DISPATCH_LOOP(interleave_rows, rows, n, k, src, src_pitch, dst, dst_pitch)
}

void channels_correlate(int64_t count, int64_t C, int ntaps, const float* const* src,
                        int64_t src_step, const float* const* w, const float* init, float* out,
                        int64_t out_step, bool stream) {
  CNNOPS_DISPATCH_LOOP(channels_correlate, count, C, ntaps, src, src_step, w, init, out, out_step,
                       stream)
}
void channels_correlate(int64_t count, int64_t C, int ntaps, const double* const* src,
                        int64_t src_step, const double* const* w, const double* init,
                        double* out, int64_t out_step, bool stream) {
  CNNOPS_DISPATCH_LOOP(channels_correlate, count, C, ntaps, src, src_step, w, init, out, out_step,
                       stream)
}
void channels_dot(int64_t count, int64_t C, int ntaps, const float* const* src, int64_t src_step,
                  const float* g, int64_t g_step, float* const* acc) {
  CNNOPS_DISPATCH_LOOP(channels_dot, count, C, ntaps, src, src_step, g, g_step, acc)
}
void channels_dot(int64_t count, int64_t C, int ntaps, const double* const* src,
                  int64_t src_step, const double* g, int64_t g_step, double* const* acc) {
  CNNOPS_DISPATCH_LOOP(channels_dot, count, C, ntaps, src, src_step, g, g_step, acc)
}

void channels_dot_3x3_pair(int64_t count, int64_t C, int pad, const float* x, int64_t x_row,
                           int64_t x_step, const float* g, int64_t g_row, int64_t g_step,
                           float* const* acc) {
  CNNOPS_DISPATCH_LOOP(channels_dot_3x3_pair, count, C, pad, x, x_row, x_step, g, g_row, g_step,
                       acc)
}
void channels_dot_3x3_pair(int64_t count, int64_t C, int pad, const double* x, int64_t x_row,
                           int64_t x_step, const double* g, int64_t g_row, int64_t g_step,
                           double* const* acc) {
  CNNOPS_DISPATCH_LOOP(channels_dot_3x3_pair, count, C, pad, x, x_row, x_step, g, g_row, g_step,
                       acc)
}

void gather_channels(int64_t rows, int64_t cols, int64_t n, int64_t lanes, const float* src,
                     int64_t src_row, int64_t src_step, float* dst, int64_t dst_row) {
  CNNOPS_DISPATCH_LOOP(gather_channels, rows, cols, n, lanes, src, src_row, src_step, dst, dst_row)
}
void gather_channels(int64_t rows, int64_t cols, int64_t n, int64_t lanes, const double* src,
                     int64_t src_row, int64_t src_step, double* dst, int64_t dst_row) {
  CNNOPS_DISPATCH_LOOP(gather_channels, rows, cols, n, lanes, src, src_row, src_step, dst, dst_row)
}
void channels_dot_block(int64_t rows, int64_t cols, int ntaps, const float* x, int64_t x_row,
                        int64_t x_step, const int64_t* offset, const float* g, int64_t g_row,
                        int64_t g_step, int64_t lanes, float* const* acc) {
  CNNOPS_DISPATCH_LOOP(channels_dot_block, rows, cols, ntaps, x, x_row, x_step, offset, g, g_row,
                       g_step, lanes, acc)
}
void channels_dot_block(int64_t rows, int64_t cols, int ntaps, const double* x, int64_t x_row,
                        int64_t x_step, const int64_t* offset, const double* g, int64_t g_row,
                        int64_t g_step, int64_t lanes, double* const* acc) {
  CNNOPS_DISPATCH_LOOP(channels_dot_block, rows, cols, ntaps, x, x_row, x_step, offset, g, g_row,
                       g_step, lanes, acc)
}

// The small-plane kernels run with the narrowest vectors that hold a row: where a row fits in
// 256 bits, an AVX-512 machine takes the 256-bit build. (A masked 512-bit load of a 7-float
// row spans two cache lines nearly always; MobileNet's 7x7 layer ran 1.5x slower with it.)
// That build is the AVX2 code compiled with AVX-512VL (depthwise_avx512vl.cpp; the avx512
// ISA includes VL): 32 vector registers, where AVX2's 16 left the rolling 3x3 kernel's sums
// on the stack (8x1024x7x7, forward 1.66x -> 1.89-1.99x native). The AVX2 build takes rows
// of up to 512 bits in pairs of vectors (detail::Doubled).
namespace {
template <typename T>
bool fits_256_bits(const SmallPlanes& g, bool transposed) {
  return small_rows_fit(g, 32 / sizeof(T), transposed);
}
}  // namespace

#ifdef CNNOPS_DEPTHWISE_X86
#define CNNOPS_DISPATCH_SMALL(T, transposed, fn, g, ...)                                      \
  if (active_isa() == Isa::avx512 && fits_256_bits<T>(g, transposed)) {                       \
    return avx512vl::fn(g, __VA_ARGS__);                                                      \
  }                                                                                           \
  CNNOPS_DISPATCH_LOOP(fn, g, __VA_ARGS__)
#else
#define CNNOPS_DISPATCH_SMALL(T, transposed, fn, g, ...) CNNOPS_DISPATCH_LOOP(fn, g, __VA_ARGS__)
#endif

void small_planes_correlate(const SmallPlanes& g, int64_t k0, int64_t count, const float* x,
                            int64_t x_plane, const float* w, const float* bias, bool relu,
                            float* out, int64_t out_plane) {
  CNNOPS_DISPATCH_SMALL(float, false, small_planes_correlate, g, k0, count, x, x_plane, w, bias,
                        relu, out, out_plane)
}
void small_planes_correlate(const SmallPlanes& g, int64_t k0, int64_t count, const double* x,
                            int64_t x_plane, const double* w, const double* bias, bool relu,
                            double* out, int64_t out_plane) {
  CNNOPS_DISPATCH_SMALL(double, false, small_planes_correlate, g, k0, count, x, x_plane, w, bias,
                        relu, out, out_plane)
}
void small_planes_transposed(const SmallPlanes& g, int64_t k0, int64_t count, const float* gy,
                             int64_t gy_plane, const float* w, float* dx, int64_t dx_plane,
                             bool stream) {
  CNNOPS_DISPATCH_SMALL(float, true, small_planes_transposed, g, k0, count, gy, gy_plane, w, dx,
                        dx_plane, stream)
}
void small_planes_transposed(const SmallPlanes& g, int64_t k0, int64_t count, const double* gy,
                             int64_t gy_plane, const double* w, double* dx, int64_t dx_plane,
                             bool stream) {
  CNNOPS_DISPATCH_SMALL(double, true, small_planes_transposed, g, k0, count, gy, gy_plane, w, dx,
                        dx_plane, stream)
}
void small_planes_dot(const SmallPlanes& g, int64_t count, const float* x, int64_t x_step,
                      const float* gy, int64_t gy_step, float* acc) {
  CNNOPS_DISPATCH_SMALL(float, false, small_planes_dot, g, count, x, x_step, gy, gy_step, acc)
}
void small_planes_dot(const SmallPlanes& g, int64_t count, const double* x, int64_t x_step,
                      const double* gy, int64_t gy_step, double* acc) {
  CNNOPS_DISPATCH_SMALL(double, false, small_planes_dot, g, count, x, x_step, gy, gy_step, acc)
}
template <typename T>
bool small_planes_fit(const SmallPlanes& g, bool transposed) {
  if (stride2_shape(g)) return true;  // the stride-2 kernels: rows of any width
  const long lanes = 32 / sizeof(T);
  switch (active_isa()) {
    case Isa::avx512: return small_rows_fit(g, 2 * lanes, transposed);
    // Pairs of vectors at stride_w 1 only: at stride 2 each tap's columns come from up to
    // four vectors (a pair's Pick, tried: MobileNet's 28x28 stride-2 layer forward ran 1.3x
    // slower than on the strips, its forward+backward 1.2x).
    case Isa::avx2:
      return small_rows_fit(g, lanes, transposed) ||
             (!transposed && g.sw == 1 && small_rows_fit(g, 2 * lanes, false));
    default: return small_rows_fit(g, lanes, transposed);
  }
}
template bool small_planes_fit<float>(const SmallPlanes&, bool);
template bool small_planes_fit<double>(const SmallPlanes&, bool);
template <typename T>
int64_t strip_lanes() {
  return (active_isa() == Isa::avx512 ? 64 : 32) / static_cast<int64_t>(sizeof(T));
}
template int64_t strip_lanes<float>();
template int64_t strip_lanes<double>();

namespace {

using namespace dw;

// grad_weight: enough (channel block, batch chunk) tasks to keep threads busy.
constexpr int64_t kMinWeightTasks = 32;

// ---------------------------------------------------------------------------------------
// version 1: reference kernels

template <typename T>
void depthwise_forward_reference(const at::Tensor& input, const at::Tensor& weight,
                                 const T* bias, at::Tensor& output, const DwGeometry& g,
                                 bool relu) {
  const T* x = input.data_ptr<T>();
  const T* w = weight.data_ptr<T>();
  T* y = output.data_ptr<T>();
  const Strides4 xs(input), ws(weight), ys(output);
  at::parallel_for(0, g.N * g.M, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nk = begin; nk < end; ++nk) {
      const int64_t n = nk / g.M, k = nk % g.M, c = k / g.mult;
      for (int64_t oh = 0; oh < g.P; ++oh) {
        for (int64_t ow = 0; ow < g.Q; ++ow) {
          T acc = bias ? bias[k] : T(0);
          for (int64_t r = 0; r < g.R; ++r) {
            const int64_t ih = oh * g.p.stride_h - g.p.pad_top + r * g.p.dilation_h;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t s = 0; s < g.S; ++s) {
              const int64_t iw = ow * g.p.stride_w - g.p.pad_left + s * g.p.dilation_w;
              if (iw < 0 || iw >= g.W) continue;
              acc += x[n * xs.n + c * xs.c + ih * xs.h + iw * xs.w] * w[k * ws.n + r * ws.h + s * ws.w];
            }
          }
          y[n * ys.n + k * ys.c + oh * ys.h + ow * ys.w] = relu && acc < T(0) ? T(0) : acc;
        }
      }
    }
  });
}

// Gather form: each input element sums the outputs whose windows cover it.
template <typename T>
void depthwise_grad_input_reference(const at::Tensor& grad_output, const at::Tensor& weight,
                                    at::Tensor& grad_input, const DwGeometry& g) {
  const T* dy = grad_output.data_ptr<T>();
  const T* w = weight.data_ptr<T>();
  T* dx = grad_input.data_ptr<T>();
  const Strides4 dys(grad_output), ws(weight), dxs(grad_input);
  at::parallel_for(0, g.N * g.C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / g.C, c = nc % g.C;
      for (int64_t ih = 0; ih < g.H; ++ih) {
        for (int64_t iw = 0; iw < g.W; ++iw) {
          T acc = T(0);
          for (int64_t k = c * g.mult; k < (c + 1) * g.mult; ++k) {
            for (int64_t r = 0; r < g.R; ++r) {
              const int64_t th = ih + g.p.pad_top - r * g.p.dilation_h;
              if (th < 0 || th % g.p.stride_h != 0 || th / g.p.stride_h >= g.P) continue;
              for (int64_t s = 0; s < g.S; ++s) {
                const int64_t tw = iw + g.p.pad_left - s * g.p.dilation_w;
                if (tw < 0 || tw % g.p.stride_w != 0 || tw / g.p.stride_w >= g.Q) continue;
                acc += dy[n * dys.n + k * dys.c + (th / g.p.stride_h) * dys.h +
                          (tw / g.p.stride_w) * dys.w] *
                       w[k * ws.n + r * ws.h + s * ws.w];
              }
            }
          }
          dx[n * dxs.n + c * dxs.c + ih * dxs.h + iw * dxs.w] = acc;
        }
      }
    }
  });
}

template <typename T>
void depthwise_grad_weight_reference(const at::Tensor& grad_output, const at::Tensor& input,
                                     at::Tensor& grad_weight, const DwGeometry& g) {
  const T* dy = grad_output.data_ptr<T>();
  const T* x = input.data_ptr<T>();
  T* dw = grad_weight.data_ptr<T>();  // contiguous (M, 1, R, S)
  const Strides4 dys(grad_output), xs(input);
  at::parallel_for(0, g.M * g.taps(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t k = idx / g.taps(), r = (idx / g.S) % g.R, s = idx % g.S, c = k / g.mult;
      T acc = T(0);
      for (int64_t n = 0; n < g.N; ++n) {
        for (int64_t oh = 0; oh < g.P; ++oh) {
          const int64_t ih = oh * g.p.stride_h - g.p.pad_top + r * g.p.dilation_h;
          if (ih < 0 || ih >= g.H) continue;
          for (int64_t ow = 0; ow < g.Q; ++ow) {
            const int64_t iw = ow * g.p.stride_w - g.p.pad_left + s * g.p.dilation_w;
            if (iw < 0 || iw >= g.W) continue;
            acc += dy[n * dys.n + k * dys.c + oh * dys.h + ow * dys.w] *
                   x[n * xs.n + c * xs.c + ih * xs.h + iw * xs.w];
          }
        }
      }
      dw[idx] = acc;
    }
  });
}

// ---------------------------------------------------------------------------------------
// version 2, channels-last tensors (the channels contiguous in every pixel), channel
// multiplier 1: each pass sums whole pixels over the taps, vectorised along the channels
// (channels_correlate, channels_dot), with no copies. Tap t of output pixel (oh, ow) reads
// source pixel (oh * sh + dh[t], ow * sw + dw[t]) and is skipped where that lies outside.

bool channels_last_applies(const DwGeometry& g, const Strides4& a, const Strides4& b) {
  return g.mult == 1 && a.c == 1 && b.c == 1;
}

// out (N x P x Q x C, strides os) = init + the taps' sum over source x (N x H x W x C).
// `stream`: written past the caches where channels_correlate can (cpu/stream_store.h).
template <typename T>
void correlate_channels_last(const ChannelTaps& taps, const std::vector<T>& wt, const T* x,
                             const Strides4& xs, int64_t H, int64_t W, const T* init, T* out,
                             const Strides4& os, int64_t N, int64_t P, int64_t Q, int64_t C,
                             bool stream) {
  at::parallel_for(0, N * P, 1, [&](int64_t begin, int64_t end) {
    std::vector<const T*> src(taps.ntaps()), w(taps.ntaps());
    std::vector<int> index(taps.ntaps());
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / P, oh = row % P;
      correlate_row_channels_last(taps, wt, x, xs, H, W, init, n, oh, Q, C,
                                  out + n * os.n + oh * os.h, os.w, src, w, index, stream);
    }
    if (stream) stream_fence();
  });
}

template <typename T>
void depthwise_forward_channels_last(const at::Tensor& input, const at::Tensor& weight,
                                     const T* bias, at::Tensor& output, const DwGeometry& g,
                                     bool relu) {
  const Strides4 ys(output);
  T* y = output.data_ptr<T>();
  // not when ReLU reads the output back at once
  const bool stream = !relu && streams(output.numel() * int64_t{sizeof(T)});
  correlate_channels_last(ChannelTaps(g), channel_weights<T>(weight, g), input.data_ptr<T>(),
                          Strides4(input), g.H, g.W, bias, y, ys, g.N, g.P, g.Q, g.C, stream);
  if (relu) {
    at::parallel_for(0, g.N * g.P, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        T* out = y + (row / g.P) * ys.n + (row % g.P) * ys.h;
        for (int64_t q = 0; q < g.Q; ++q) {
          for (int64_t c = 0; c < g.C; ++c) out[q * ys.w + c] = std::max(out[q * ys.w + c], T(0));
        }
      }
    });
  }
}

// grad_input row by row: input row h is in row phase a = h mod stride_h, and on each phase
// (a, b)'s sub-grid (rows a + i * stride_h, columns b + k * stride_w) grad_input is a
// correlation of grad_output with the taps that reach the phase (all of them, flipped, at
// stride 1). A row's column phases are written one after the other, so that its cache lines
// are filled while they are still in cache (phase by phase over the whole tensor, each pass
// wrote every other pixel of every other row: dw56s2 1.66x the NCHW time).
template <typename T>
void depthwise_grad_input_channels_last(const at::Tensor& grad_output, const at::Tensor& weight,
                                        at::Tensor& grad_input, const DwGeometry& g) {
  const std::vector<T> wt = channel_weights<T>(weight, g);
  const Strides4 dxs(grad_input), dys(grad_output);
  const int64_t sh = g.p.stride_h, sw = g.p.stride_w;
  std::vector<ChannelTaps> phases;
  for (int64_t a = 0; a < sh; ++a) {
    for (int64_t b = 0; b < sw; ++b) phases.emplace_back(g, a, b);
  }
  int max_taps = 0;
  for (const ChannelTaps& taps : phases) max_taps = std::max(max_taps, taps.ntaps());
  const T* dy = grad_output.data_ptr<T>();
  T* dx = grad_input.data_ptr<T>();
  const bool stream = streams(grad_input.numel() * int64_t{sizeof(T)});
  at::parallel_for(0, g.N * g.H, 1, [&](int64_t begin, int64_t end) {
    std::vector<const T*> src(max_taps), w(max_taps);
    std::vector<int> index(max_taps);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / g.H, h = row % g.H;
      for (int64_t b = 0; b < std::min(sw, g.W); ++b) {
        correlate_row_channels_last(phases[(h % sh) * sw + b], wt, dy, dys, g.P, g.Q,
                                    static_cast<const T*>(nullptr), n, h / sh,
                                    ceil_div(g.W - b, sw), g.C,
                                    dx + n * dxs.n + h * dxs.h + b * dxs.w, sw * dxs.w, src, w,
                                    index, stream);
      }
    }
    if (stream) stream_fence();
  });
}

// The channels-last grad_weight's output rows (N * P) are cut into this many fixed ranges (or
// one per row), each summing into its own partial, whatever the thread count.
constexpr int64_t kChannelsLastSplits = 8;

// dw[c * taps + t] = the sum over s < splits, in order, of partial[(s * taps + t) * pitch + c].
template <typename T>
void add_partials(const T* partial, int64_t splits, int64_t taps, int64_t pitch, int64_t C,
                  T* dw) {
  std::vector<T> sum(pitch);
  for (int64_t t = 0; t < taps; ++t) {
    const T* first = partial + t * pitch;
    std::copy(first, first + pitch, sum.begin());
    for (int64_t s = 1; s < splits; ++s) {
      const T* part = partial + (s * taps + t) * pitch;
      for (int64_t c = 0; c < pitch; ++c) sum[c] += part[c];
    }
    for (int64_t c = 0; c < C; ++c) dw[c * taps + t] = sum[c];
  }
}

// Channel blocks of the channels-last grad_weight: `lanes` channels per block (64, 128 or 256
// bytes, whole cache lines), the most whose three padded input rows stay within 24 KiB (L1),
// and bands of up to `band` output rows, whose gathered input and grad_output rows fit in
// 192 KiB (L2). `width`: the padded input row, in pixels (the columns the taps reach).
struct ChannelBlocks {
  int64_t lanes, blocks, width, band;
  int64_t reach;    // input rows of one output row
  int64_t in_rows;  // input rows of a band

  ChannelBlocks(const DwGeometry& g, int64_t element) {
    const int64_t line = 64 / element, sh = g.p.stride_h;
    reach = (g.R - 1) * g.p.dilation_h + 1;
    width = (g.Q - 1) * g.p.stride_w + (g.S - 1) * g.p.dilation_w + 1;
    lanes = 4 * line;
    while (lanes > line && (3 * width * lanes * element > (24 << 10) || lanes / 2 >= g.C)) {
      lanes /= 2;
    }
    blocks = ceil_div(g.C, lanes);
    // (band - 1) * sh + reach input rows of `width` pixels and band * Q output pixels
    const int64_t budget = (192 << 10) / (lanes * element);
    band = std::clamp((budget - (reach - sh) * width) / (sh * width + g.Q), int64_t{1}, g.P);
    in_rows = (band - 1) * sh + reach;
  }
};

// dW[c, t] = sum over output pixels of dY * the tap's source pixel. Tasks of a block of
// channels over a fixed range of output rows (`splits` of them, from the shape alone): a band
// of rows of the block is gathered into scratch, the input's zero padded (gather_channels),
// and its dot products taken there, each vector's over the whole band in registers
// (channels_dot_block). Each range sums into its own partial; they are added in order.
//
// For planes whose rows all fit one band (depthwise_grad_weight_channels_last): read in place
// (grad_weight_channels_in_place), the taps' pixels of 1024 channels lie 4 KiB apart and evict
// each other from L1 (1024 channels took twice the time of 1040), and each row's short runs
// paid their edges and sums row by row. Two threads, ms, in place / gathered: 8x1024x7x7
// 0.92 / 0.35, 8x512x14x14 0.96-1.02 / 0.84-0.86, stride 2 0.41-0.45 / 0.30-0.32 (native,
// NCHW: 0.52, 0.77, 0.53). Bigger planes ran slower gathered (8x256x28x28 1.74 / 1.46-1.64,
// 8x64x112x112 stride 2 2.3-2.4 / 3.4-3.6): there the gathering is a pass over memory of its
// own, which the dot products do not overlap.
template <typename T>
void grad_weight_channels_gathered(const at::Tensor& grad_output, const at::Tensor& input,
                                  T* dw, const DwGeometry& g, const ChannelBlocks& b) {
  const T* dy = grad_output.data_ptr<T>();
  const T* x = input.data_ptr<T>();
  const Strides4 dys(grad_output), xs(input);
  const int64_t taps = g.taps(), padded = b.blocks * b.lanes, rows = g.N * g.P;
  const int64_t splits = std::min(rows, kChannelsLastSplits), sh = g.p.stride_h;
  const int64_t x_row = b.width * b.lanes, x_size = b.in_rows * x_row;
  // the input's columns in a gathered row: [pad_left, pad_left + cols)
  const int64_t cols = std::clamp(b.width - g.p.pad_left, int64_t{0}, g.W);
  std::vector<int64_t> offset(taps);
  for (int64_t t = 0; t < taps; ++t) {
    offset[t] = (t / g.S) * g.p.dilation_h * x_row + (t % g.S) * g.p.dilation_w * b.lanes;
  }
  // a buffer kept from call to call (cpu/scratch.h), not a fresh allocation per call
  const Scratch<T> partial(kOperands, splits * taps * padded);
  std::fill(partial.get(), partial.get() + splits * taps * padded, T(0));
  at::parallel_for(0, splits * b.blocks, 1, [&](int64_t begin, int64_t end) {
    const Scratch<T> xb(kTile, x_size), gb(kRows, b.band * g.Q * b.lanes);
    std::fill(xb.get(), xb.get() + x_size, T(0));  // padding columns: never written
    std::vector<T*> acc(taps);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t s = item / b.blocks, c0 = (item % b.blocks) * b.lanes;
      const int64_t nc = std::min(b.lanes, g.C - c0);
      for (int64_t t = 0; t < taps; ++t) acc[t] = partial.get() + (s * taps + t) * padded + c0;
      const int64_t last = (s + 1) * rows / splits;
      for (int64_t row = s * rows / splits; row < last;) {
        const int64_t n = row / g.P, p0 = row % g.P;
        const int64_t count = std::min({b.band, g.P - p0, last - row});
        // input rows ih0 + i for i < used, those outside [0, H) zero
        const int64_t ih0 = p0 * sh - g.p.pad_top, used = (count - 1) * sh + b.reach;
        const int64_t lo = std::clamp(-ih0, int64_t{0}, used);
        const int64_t hi = std::clamp(g.H - ih0, lo, used);
        std::fill(xb.get(), xb.get() + lo * x_row, T(0));
        std::fill(xb.get() + hi * x_row, xb.get() + used * x_row, T(0));
        if (cols > 0) {
          gather_channels(hi - lo, cols, nc, b.lanes, x + n * xs.n + (ih0 + lo) * xs.h + c0, xs.h,
                          xs.w, xb.get() + lo * x_row + g.p.pad_left * b.lanes, x_row);
        }
        gather_channels(count, g.Q, nc, b.lanes, dy + n * dys.n + p0 * dys.h + c0, dys.h, dys.w,
                        gb.get(), g.Q * b.lanes);
        channels_dot_block(count, g.Q, static_cast<int>(taps), xb.get(), sh * x_row,
                           g.p.stride_w * b.lanes, offset.data(), gb.get(), g.Q * b.lanes,
                           b.lanes, b.lanes, acc.data());
        row += count;
      }
    }
  });
  add_partials(partial.get(), splits, taps, padded, g.C, dw);
}

// grad_weight read in place, row by row, every channel of a row in one pass: for planes too
// big for one band of grad_weight_channels_gathered (above).
template <typename T>
void grad_weight_channels_in_place(const at::Tensor& grad_output, const at::Tensor& input,
                                   T* dw, const DwGeometry& g) {
  const ChannelTaps taps(g);
  const T* dy = grad_output.data_ptr<T>();
  const T* x = input.data_ptr<T>();
  const Strides4 dys(grad_output), xs(input);
  const int64_t rows = g.N * g.P, splits = std::min(rows, kChannelsLastSplits);
  const int64_t size = g.taps() * g.C;
  // a buffer kept from call to call (cpu/scratch.h), not a fresh allocation per call
  const Scratch<T> partial(kOperands, splits * size);
  std::fill(partial.get(), partial.get() + splits * size, T(0));
  // 3x3 at stride 1 and dilation 1: pairs of rows whose four input rows exist, their
  // interior runs (every tap inside; the same run for both rows) by channels_dot_3x3_pair,
  // which loads each input pixel once for both rows. 8x256x28x28, one thread, ms: 2.8-3.1
  // -> 2.2-2.3; on 128 and 32 channels, level. With one column of padding on each side
  // (MobileNet's layers), the pair's whole rows, edges included, in the same call: the
  // edges' calls of channels_dot (one pixel, six taps, every vector's sums loaded and
  // stored) took a quarter of the 28x28 layer's kernel time. With that and the kernel's
  // walk over input pixels (a Zen 4 VM, 4 operand sets cycled, 3 alternations, ms, one /
  // two threads): 8x256x28x28 1.54-1.70 -> 1.30 / 0.79-0.89 -> 0.61-0.76, 8x128x56x56
  // 2.78-3.22 -> 2.55-2.58 / 1.47-1.59 -> 1.32-1.50, 8x32x112x112 2.77-2.86 -> 2.51-2.69
  // / 1.49-1.65 -> 1.34-1.65.
  const bool pairs = g.R == 3 && g.S == 3 && g.p.stride_h == 1 && g.p.stride_w == 1 &&
                     g.p.dilation_h == 1 && g.p.dilation_w == 1;
  const bool whole_rows = pairs && g.p.pad_left == 1 && g.Q == g.W;
  at::parallel_for(0, splits, 1, [&](int64_t begin, int64_t end) {
    std::vector<const T*> src(taps.ntaps());
    std::vector<T*> acc(taps.ntaps());
    std::vector<int> index(taps.ntaps());
    for (int64_t s = begin; s < end; ++s) {
      T* sums = partial.get() + s * size;
      const int64_t last = (s + 1) * rows / splits;
      for (int64_t row = s * rows / splits; row < last; ++row) {
        const int64_t n = row / g.P, oh = row % g.P;
        const T* dy_row = dy + n * dys.n + oh * dys.h;
        const bool pair = pairs && row + 1 < last && oh + 1 < g.P && oh >= g.p.pad_top &&
                          oh + 4 <= g.H + g.p.pad_top;
        // the pair's run summed below: its whole rows (pad 1), or their interior run
        const int pad = pair && whole_rows ? 1 : 0;
        int64_t lo = 0, interior = pad == 1 ? g.Q : 0;
        // rows whose runs go through channels_dot here: a lone row's all, a pair's edges
        const int64_t split_rows = pad == 1 ? 0 : pair ? 2 : 1;
        for (int64_t i = 0; i < split_rows; ++i) {
          for_pixel_runs(taps, x, xs, g.H, g.W, n, oh + i, g.Q, src, index, [&](int64_t q0, int64_t count, int kept, bool edge) {
            if (pair && !edge) {
              lo = q0;
              interior = count;
              return;
            }
            for (int k = 0; k < kept; ++k) acc[k] = sums + index[k] * g.C;
            channels_dot(count, g.C, kept, src.data(), taps.sw * xs.w,
                         dy_row + i * dys.h + q0 * dys.w, dys.w, acc.data());
          });
        }
        if (pair) {
          for (int t = 0; t < 9; ++t) acc[t] = sums + t * g.C;
          channels_dot_3x3_pair(interior, g.C, pad,
                                x + n * xs.n + (oh - g.p.pad_top) * xs.h +
                                    (lo - g.p.pad_left + pad) * xs.w,
                                xs.h, xs.w, dy_row + lo * dys.w, dys.h, dys.w, acc.data());
          ++row;
        }
      }
    }
  });
  add_partials(partial.get(), splits, g.taps(), g.C, g.C, dw);
}

template <typename T>
void depthwise_grad_weight_channels_last(const at::Tensor& grad_output, const at::Tensor& input,
                                         T* dw, const DwGeometry& g) {
  const ChannelBlocks b(g, sizeof(T));
  if (b.band == g.P) {  // the whole plane in one band: see grad_weight_channels_gathered
    return grad_weight_channels_gathered(grad_output, input, dw, g, b);
  }
  grad_weight_channels_in_place(grad_output, input, dw, g);
}

// ---------------------------------------------------------------------------------------
// version 2, small planes: NCHW planes whose output rows fit in one vector, or on AVX2 a
// pair (MobileNet's 14x14 and 7x7 layers), every output row summed in registers straight
// from the input rows (small_planes_correlate). The strips below cost more per plane than
// such a plane's arithmetic. Wider rows stay on the strips: swept in vectors straight from
// the input the same way, MobileNet's 28x28 to 112x112 layers ran 0.8-1.0x as fast (2-core
// Xeon, AVX-512: two thirds of the taps' loads straddle cache lines, the strips' do not).

// Outputs per task, so that a task's work outweighs its dispatch.
constexpr int64_t kSmallPlanesGrain = 4096;

// Planes [0, M) of each of N images, `area` outputs each, split over threads in runs of
// whole planes: fn(n, k0, count) for planes k0 <= k < k0 + count of image n.
template <typename Fn>
void for_plane_runs(int64_t N, int64_t M, int64_t area, const Fn& fn) {
  const int64_t grain = std::max<int64_t>(1, kSmallPlanesGrain / std::max<int64_t>(area, 1));
  at::parallel_for(0, N * M, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end;) {
      const int64_t n = i / M, k0 = i % M, count = std::min(end - i, M - k0);
      fn(n, k0, count);
      i += count;
    }
  });
}

template <typename T>
void correlate_small_planes(const SmallPlanes& sp, int64_t N, int64_t M, const T* x,
                            const Strides4& xs, const T* taps, const T* bias, bool relu, T* y,
                            const Strides4& ys) {
  for_plane_runs(N, M, sp.P * sp.Q, [&](int64_t n, int64_t k0, int64_t count) {
    small_planes_correlate(sp, k0, count, x + n * xs.n, xs.c, taps, bias, relu, y + n * ys.n, ys.c);
  });
}

// grad_weight's partial sums: `count` taps of kDotLanes lanes each added up in lane order
// into out[0, count).
template <typename T>
void sum_lanes(const T* lanes, int64_t count, T* out) {
  for (int64_t i = 0; i < count; ++i) {
    T sum = T(0);
    for (int64_t l = 0; l < kDotLanes; ++l) sum += lanes[i * kDotLanes + l];
    out[i] = sum;
  }
}

// dw[i] = the sum over chunks, in chunk order, of partial[chunk * size + i], size =
// partial.size() / chunks.
template <typename T>
void add_partials(const std::vector<T>& partial, int64_t chunks, T* dw) {
  const int64_t size = static_cast<int64_t>(partial.size()) / chunks;
  at::parallel_for(0, size, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T sum = T(0);
      for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += partial[chunk * size + i];
      dw[i] = sum;
    }
  });
}

// grad_weight by output channel: the batch cut into chunks chosen from the shape alone, and for
// each (channel k, chunk) task the images [n0, n1) summed into the taps' lanes (taps_dot's slots,
// zero at the start), by dot(k, n0, n1, lanes) or, image-major (below), by dot(k, n, n + 1, lanes)
// for each image in order, where dot = make_dot() is made once per range of tasks a thread takes
// (it may hold buffers of its own); the lanes are then added in lane order and the chunks in chunk
// order. Which of the two is taken depends on the shape alone, so results do not depend on the
// thread count. Both add each image's terms to the lanes in image order, the same sums, except for
// callers that make two passes over [n0, n1) into one set of lanes (grad_weight_small_planes' two
// halves of 16-column rows on AVX2), whose terms are then added in another order. Tasks of about
// kSmallPlanesGrain output pixels at least.
//
// Input planes of kImageMajorPixels or more are swept image-major: a thread takes its tasks
// of one chunk kLaneBlock lanes' worth of channels at a time, image by image, the channels
// inner, so that NCHW planes are read in memory order, a long run of consecutive planes per
// image; channel by channel, the reads jumped to another image every plane and the hardware
// prefetchers started over. 8x128x56x56, two threads, data out of cache (six operand sets
// in turn), alternated builds: 1.18 -> 0.60 ms; 8x256x28x28 0.59 -> 0.36; stride 2 on 56x56
// 0.77 -> 0.53; 112x112 planes 1.10 -> 0.93. Smaller planes stay channel-major: on 14x14
// and 7x7 planes image by image measured 0.33 -> 0.37 and 0.19 -> 0.29 ms (a call per plane).
//
// `pre(k0, count, chunk, n0, n1)`, where given, runs before the dot products of channels
// [k0, k0 + count) over images [n0, n1), on runs of about pre_channels channels: the fused
// backward pass (FusedBackward) computes their grad_input and bias gradient there, so that
// the dot products find grad_output's planes in cache.
constexpr int64_t kImageMajorPixels = 512;
constexpr int64_t kLaneBlock = 8192;  // elements of lanes per sweep (32 KiB of floats)

struct NoPre {
  void operator()(int64_t, int64_t, int64_t, int64_t, int64_t) const {}
};

// The chunks grad_weight_by_chunks cuts the batch into.
int64_t weight_chunks(const DwGeometry& g) {
  return std::clamp<int64_t>(ceil_div(kMinWeightTasks, g.M), 1, g.N);
}

template <typename T, typename MakeDot, typename Pre = NoPre>
void grad_weight_by_chunks(const DwGeometry& g, T* dw, const MakeDot& make_dot,
                           const Pre& pre = {}, int64_t pre_channels = 1) {
  const int64_t chunks = weight_chunks(g);
  const int64_t per_chunk = ceil_div(g.N, chunks);
  const int64_t task_lanes = g.taps() * kDotLanes;
  const bool image_major = g.H * g.W >= kImageMajorPixels;
  const int64_t block = image_major ? std::max<int64_t>(1, kLaneBlock / task_lanes) : 1;
  const int64_t step = round_up(std::max(pre_channels, block), block);
  std::vector<T> partial(chunks * g.M * g.taps());
  const int64_t grain =
      std::max<int64_t>(1, kSmallPlanesGrain / std::max<int64_t>(per_chunk * g.P * g.Q, 1));
  at::parallel_for(0, g.M * chunks, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> lanes(std::min(block, end - begin) * task_lanes);
    auto dot = make_dot();
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      // This range's tasks of the chunk: channels [k_begin, k_end) (task = k * chunks + chunk).
      const int64_t k_begin = ceil_div(std::max<int64_t>(begin - chunk, 0), chunks);
      const int64_t k_end = std::max(k_begin, ceil_div(end - chunk, chunks));
      const int64_t n0 = chunk * per_chunk, n1 = std::min(g.N, n0 + per_chunk);
      for (int64_t run = k_begin; run < k_end; run += step) {
        const int64_t run_end = std::min(k_end, run + step);
        pre(run, run_end - run, chunk, n0, n1);
        for (int64_t k0 = run; k0 < run_end; k0 += block) {
          const int64_t count = std::min(block, run_end - k0);
          std::fill(lanes.begin(), lanes.begin() + count * task_lanes, T(0));
          if (image_major) {
            for (int64_t n = n0; n < n1; ++n) {
              for (int64_t i = 0; i < count; ++i) {
                dot(k0 + i, n, n + 1, lanes.data() + i * task_lanes);
              }
            }
          } else {
            dot(k0, n0, n1, lanes.data());
          }
          for (int64_t i = 0; i < count; ++i) {
            sum_lanes(lanes.data() + i * task_lanes, g.taps(),
                      partial.data() + (chunk * g.M + k0 + i) * g.taps());
          }
        }
      }
    }
  });
  add_partials(partial, chunks, dw);
}

// grad_weight over small planes (small_planes_dot), by grad_weight_by_chunks.
template <typename T, typename Pre = NoPre>
void grad_weight_small_planes(const SmallPlanes& sp, const DwGeometry& g, const T* dy,
                              const Strides4& dys, const T* x, const Strides4& xs, T* dw,
                              const Pre& pre = {}, int64_t pre_channels = 1) {
  // AVX2 rows of two vectors at stride 1, 3x3 (MobileNet's 14x14): summed as two planes of
  // one vector each, the first `lanes` output columns and the rest (its input from column
  // lanes - pad_left on, pad_left 0), whose row walk (small_plane_dot_rolling) keeps the nine
  // sums in registers; the pair of vectors spilled them (8x512x14x14: 0.76 -> 0.47 ms).
  const int64_t lanes256 = 32 / sizeof(T);
  const bool halves = active_isa() == Isa::avx2 && !small_rows_fit(sp, lanes256, false) &&
                      sp.sw == 1 && sp.sh == 1 && sp.dh == 1 && sp.dw == 1 && sp.R == 3 &&
                      sp.S == 3 && sp.pad_top >= 0 && sp.pad_top <= 2 && sp.pad_left >= 0 &&
                      sp.pad_left <= lanes256;
  SmallPlanes left = sp, right = sp;
  const int64_t shift = lanes256 - sp.pad_left;  // the right half's first input column
  left.Q = lanes256;
  right.Q = sp.Q - lanes256;
  right.W = sp.W - shift;
  right.pad_left = 0;
  grad_weight_by_chunks(g, dw, [&] { return [&](int64_t k, int64_t n0, int64_t n1, T* lanes) {
    const T* x_k = x + n0 * xs.n + (k / g.mult) * xs.c;
    const T* dy_k = dy + n0 * dys.n + k * dys.c;
    if (halves) {
      small_planes_dot(left, n1 - n0, x_k, xs.n, dy_k, dys.n, lanes);
      small_planes_dot(right, n1 - n0, x_k + shift, xs.n, dy_k + lanes256, dys.n, lanes);
    } else {
      small_planes_dot(sp, n1 - n0, x_k, xs.n, dy_k, dys.n, lanes);
    }
  }; }, pre, pre_channels);
}

// ---------------------------------------------------------------------------------------
// version 2: flattened planes

// NCHW rows, a 3x3 kernel at stride 1, dilation 1 and padding 1 (MobileNet's stride-1
// layers), rows of at least a vector: output rows 2 to P - 3 are read in place from the input
// (grid_plane_rows, whose edge loads then stay inside the plane), rows 0, 1, P - 2 and P - 1
// from two-row strips. The plane is not copied. Every output is the sum of the same terms in
// the same order as on the strips. Measured on Zen 1, one thread, planes in cache: 56x56 and
// 112x112 1.15-1.25x faster than the whole-plane strips, 28x28 1.07x, 14x14 0.8x (the edges'
// strips cost more than copying so small a plane): planes from 24 rows. Out of cache (batch
// 8, two threads) both run at the same memory-bound speed; an output of 8 MiB or more is then
// written past the caches (cpu/stream_store.h), 1.25-1.35x as fast.
template <typename T>
bool in_place_applies(const DwGeometry& g, const Strides4& xs, const Strides4& ys) {
  const Conv2dParams& p = g.p;
  return xs.w == 1 && ys.w == 1 && xs.h >= g.W && ys.h >= g.Q && g.R == 3 && g.S == 3 &&
         p.stride_h == 1 && p.stride_w == 1 && p.dilation_h == 1 && p.dilation_w == 1 &&
         p.pad_top == 1 && p.pad_left == 1 && g.P == g.H && g.Q == g.W && g.P >= 24 &&
         g.Q >= strip_lanes<T>();
}

// One thread's means to correlate whole planes in place: output rows 2 to P - 3 by
// grid_plane_rows, the two rows at either edge from two-row strips (their own buffers, so
// that neither is cleared again: which elements are padding is the same for every plane).
template <typename T>
class InPlacePlanes {
 public:
  explicit InPlacePlanes(const DwGeometry& g)
      : g_(g), edges_{StripLayout(g, 0, 2), StripLayout(g, g.P - 2, 2)},
        strips_{StripBuffer<T>(1, edges_[0], g), StripBuffer<T>(1, edges_[1], g)} {
    const StripTaps strip_taps(g);
    std::vector<int64_t> offsets(g.taps());
    for (int e = 0; e < 2; ++e) {  // each edge's taps in its buffer
      edges_[e].offsets(strip_taps, offsets.data());
      for (int64_t t = 0; t < g.taps(); ++t) src_[e].push_back(strips_[e].strip(0) + offsets[t]);
    }
  }

  // out = init + the correlation of plane with the taps w, ReLU if asked; the middle rows
  // written past the caches where `stream`.
  void correlate(const T* plane, const Strides4& xs, const T* w, T init, bool relu, T* out,
                 const Strides4& ys, bool stream) {
    grid_plane_rows(g_.P - 4, g_.Q, plane + xs.h, xs.h, w, init, relu, out + 2 * ys.h, ys.h,
                    stream);
    for (int e = 0; e < 2; ++e) {
      const StripLayout& L = edges_[e];
      strips_[e].fill(plane, xs, 1, L);
      T* rows = out + L.p0 * ys.h;
      taps_correlate_rows(L.rows, g_.Q, static_cast<int>(g_.taps()), src_[e].data(), L.sub_w, w,
                          init, rows, ys.h);
      if (!relu) continue;
      for (int64_t r = 0; r < L.rows; ++r) {
        for (int64_t q = 0; q < g_.Q; ++q) rows[r * ys.h + q] = std::max(rows[r * ys.h + q], T(0));
      }
    }
  }

 private:
  const DwGeometry& g_;
  StripLayout edges_[2];
  StripBuffer<T> strips_[2];
  std::vector<const T*> src_[2];
};

template <typename T>
void depthwise_forward_in_place(const T* x, const Strides4& xs, const T* taps, const T* bias,
                                bool relu, T* y, const Strides4& ys, const DwGeometry& g) {
  const bool stream = streams(g.N * g.M * g.P * g.Q * int64_t{sizeof(T)});
  at::parallel_for(0, g.N * g.M, 1, [&](int64_t begin, int64_t end) {
    InPlacePlanes<T> planes(g);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.M, k = task % g.M;
      planes.correlate(x + n * xs.n + (k / g.mult) * xs.c, xs, taps + k * g.taps(),
                       bias ? bias[k] : T(0), relu, y + n * ys.n + k * ys.c, ys, stream);
    }
    if (stream) stream_fence();
  });
}

// The weight gradient on the same layers, read in place, plane by plane (grid_plane_dot),
// by grad_weight_by_chunks. grid_plane_dot loads (and masks) each input row's columns -1
// and W: where that would read outside the tensor (the first and last plane in memory), the
// plane is copied between two zeros first. No strips: the copies of the input and
// grad_output into them took as long as the dot products (8x128x56x56: memmove,
// deinterleave_rows and taps_dot 13%, 5% and 10% of the layer's forward+backward samples).
// One InPlaceDot per range of tasks (it keeps the buffer for those copies).
template <typename T>
class InPlaceDot {
 public:
  // The input x, whose last element in memory is x_end[-1].
  InPlaceDot(const DwGeometry& g, const T* x, const Strides4& xs, const T* x_end)
      : g_(g), x_(x), xs_(xs), x_end_(x_end) {}

  // lanes += the dot products of input channel c of image n with a grad_output plane.
  void dot(int64_t n, int64_t c, const T* dy_plane, int64_t dy_pitch, T* lanes) {
    const T* plane = x_ + n * xs_.n + c * xs_.c;
    int64_t pitch = xs_.h;
    if (plane == x_ || plane + (g_.H - 1) * xs_.h + g_.W >= x_end_) {
      padded_.assign(g_.H * g_.W + 2, T(0));
      for (int64_t h = 0; h < g_.H; ++h) {
        std::copy(plane + h * xs_.h, plane + h * xs_.h + g_.W, padded_.data() + 1 + h * g_.W);
      }
      plane = padded_.data() + 1;
      pitch = g_.W;
    }
    grid_plane_dot(g_.P, g_.Q, plane, pitch, dy_plane, dy_pitch, lanes);
  }

 private:
  const DwGeometry& g_;
  const T* x_;
  Strides4 xs_;
  const T* x_end_;
  std::vector<T> padded_;  // a plane between two zeros, where it must be copied
};

// One past t's last element in memory.
template <typename T>
const T* end_in_memory(const at::Tensor& t) {
  const T* end = t.data_ptr<T>() + 1;
  for (int64_t d = 0; d < t.dim(); ++d) end += (t.size(d) - 1) * t.stride(d);
  return end;
}

template <typename T>
void grad_weight_in_place(const DwGeometry& g, const T* dy, const Strides4& dys,
                          const at::Tensor& input, T* dw) {
  const Strides4 xs(input);
  const T* x = input.data_ptr<T>();
  const T* x_end = end_in_memory<T>(input);
  grad_weight_by_chunks(g, dw, [&] {
    return [&, planes = InPlaceDot<T>(g, x, xs, x_end)](int64_t k, int64_t n0, int64_t n1,
                                                        T* lanes) mutable {
      for (int64_t n = n0; n < n1; ++n) {
        planes.dot(n, k / g.mult, dy + n * dys.n + k * dys.c, dys.h, lanes);
      }
    };
  });
}

// Depthwise layers with a channel multiplier (SimpleCNN's first layer: one input channel, 32
// output channels), 3x3, stride 1, padding 1, rows of a vector or more: each grad_output plane
// is copied once into a zero-padded buffer, which then gives its share of grad_input (added
// into the input plane's sum, held in cache: padded_plane_rows), its nine weight-gradient dot
// products (grid_plane_dot, on a padded copy of the input plane) and its bias sum. grad_output
// is read from memory once for the three gradients; the operators in turn read it three
// times, and grad_input copied an image's planes whole and summed them from L2.
// Tasks are (chunk of images, input channel), the chunks fixed by the shape: every gradient
// is the same sum whatever the thread count, and grad_input's and grad_weight's own operators,
// which run the same pass for their gradient alone, give conv2d_backward's bits.
template <typename T>
bool multiplier_planes_apply(const DwGeometry& g, const Strides4& dys, const Strides4& other) {
  const Conv2dParams& p = g.p;
  return g.mult > 1 && dys.w == 1 && other.w == 1 && g.R == 3 && g.S == 3 &&
         p.stride_h == 1 && p.stride_w == 1 && p.dilation_h == 1 && p.dilation_w == 1 &&
         p.pad_top == 1 && p.pad_left == 1 && g.P == g.H && g.Q == g.W &&
         g.Q >= strip_lanes<T>();
}

// The gradients asked for (non-null dx, dw, db) of geometry g (multiplier_planes_apply);
// `flipped`: flipped_taps, for dx.
template <typename T>
void multiplier_planes(const T* dy, const Strides4& dys, const T* x, const Strides4& xs,
                       const T* flipped, T* dx, const Strides4& dxs, T* dw, T* db,
                       const DwGeometry& g) {
  const int64_t lanes = strip_lanes<T>();
  // Padded planes: element (i, j) at (i + 1) * pitch + j + 1, zeros all round, wide enough
  // for padded_plane_rows' whole vectors over `cols` columns.
  const int64_t cols = round_up(g.Q, lanes), pitch = cols + lanes, size = (g.P + 2) * pitch;
  const int64_t want_chunks = std::clamp<int64_t>(ceil_div(kMinWeightTasks, g.C), 1, g.N);
  const int64_t per_chunk = ceil_div(g.N, want_chunks);
  const int64_t chunks = ceil_div(g.N, per_chunk);
  const int64_t task_lanes = g.taps() * kDotLanes;
  std::vector<T> partial(dw ? chunks * g.M * g.taps() : 0);
  std::vector<T> bias_partial(db ? chunks * g.M : 0);
  // Only the weight gradient: grad_output read in place (grid_plane_dot reads no element
  // outside a plane of it), the same sums.
  const bool copy = dx != nullptr || db != nullptr;
  at::parallel_for(0, chunks * g.C, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> gy[2] = {std::vector<T>(copy ? size : 0, T(0)),
                            std::vector<T>(copy ? size : 0, T(0))};
    std::vector<T> xp(dw ? size : 0, T(0)), sum(dx ? g.P * cols : 0);
    std::vector<T> dots(dw ? g.mult * task_lanes : 0), sums(db ? g.mult * kDotLanes : 0);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t chunk = task / g.C, c = task % g.C;
      std::fill(dots.begin(), dots.end(), T(0));
      std::fill(sums.begin(), sums.end(), T(0));
      for (int64_t n = chunk * per_chunk; n < std::min(g.N, (chunk + 1) * per_chunk); ++n) {
        if (dw) {
          copy_rows(g.H, g.W, x + n * xs.n + c * xs.c, xs.h, xp.data() + pitch + 1, pitch,
                    static_cast<T*>(nullptr));
        }
        // Output channels two at a time, the pair's dot products against one load of the
        // input (grid_plane_dot2), the last alone where the multiplier is odd.
        for (int64_t m = 0; m < g.mult; m += 2) {
          const int64_t pair = std::min<int64_t>(2, g.mult - m), k = c * g.mult + m;
          const T* plane[2];
          int64_t plane_pitch = dys.h;
          for (int64_t i = 0; i < pair; ++i) {
            plane[i] = dy + n * dys.n + (k + i) * dys.c;
            if (!copy) continue;
            copy_rows(g.P, g.Q, plane[i], dys.h, gy[i].data() + pitch + 1, pitch,
                      db ? sums.data() + (m + i) * kDotLanes : nullptr);
            plane[i] = gy[i].data() + pitch + 1;
            plane_pitch = pitch;
            if (dx) {
              padded_plane_rows(g.P, cols, gy[i].data(), pitch, flipped + (k + i) * g.taps(),
                                m + i > 0, sum.data(), cols);
            }
          }
          if (!dw) continue;
          T* acc = dots.data() + m * task_lanes;
          if (pair == 2) {
            grid_plane_dot2(g.P, g.Q, xp.data() + pitch + 1, pitch, plane[0], plane[1],
                            plane_pitch, acc, acc + task_lanes);
          } else {
            grid_plane_dot(g.P, g.Q, xp.data() + pitch + 1, pitch, plane[0], plane_pitch, acc);
          }
        }
        if (dx) {
          copy_rows(g.H, g.W, sum.data(), cols, dx + n * dxs.n + c * dxs.c, dxs.h,
                    static_cast<T*>(nullptr));
        }
      }
      if (dw) {
        sum_lanes(dots.data(), g.mult * g.taps(),
                  partial.data() + (chunk * g.M + c * g.mult) * g.taps());
      }
      if (db) sum_lanes(sums.data(), g.mult, bias_partial.data() + chunk * g.M + c * g.mult);
    }
  });
  if (dw) add_partials(partial, chunks, dw);
  if (db) add_partials(bias_partial, chunks, db);
}

template <typename T>
void depthwise_forward_fast(const at::Tensor& input, const at::Tensor& weight, const T* bias,
                            at::Tensor& output, const DwGeometry& g, bool relu) {
  const T* x = input.data_ptr<T>();
  T* y = output.data_ptr<T>();
  const Strides4 xs(input), ys(output);
  if (channels_last_applies(g, xs, ys)) {
    depthwise_forward_channels_last(input, weight, bias, output, g, relu);
    return;
  }
  if (in_place_applies<T>(g, xs, ys)) {
    depthwise_forward_in_place(x, xs, weight_taps<T>(weight, g).data(), bias, relu, y, ys, g);
    return;
  }
  if (const auto sp = small_planes_forward<T>(g, xs, ys); sp && !grid_beats_small_planes<T>(g)) {
    correlate_small_planes(*sp, g.N, g.M, x, xs, weight_taps<T>(weight, g).data(), bias, relu, y,
                           ys);
    return;
  }
  const std::vector<T> taps = weight_taps<T>(weight, g);
  const StripTaps strip_taps(g);
  const int64_t block = channel_block<T>(input, g.C);
  const int64_t blocks = ceil_div(g.C, block);
  const int64_t tile_rows = strip_rows(g, block);
  const int64_t tiles = ceil_div(g.P, tile_rows);
  const StripLayout largest(g, 0, tile_rows);
  const int64_t out_stride = round_up(largest.out_len, kDwBlock);
  // Unit column stride (NCHW): rows are written straight from the vector loop; otherwise
  // (channels_last) a task's planes are gathered in `out` and stored row by row.
  const bool direct = ys.w == 1 && !relu;

  at::parallel_for(0, g.N * blocks * tiles, 1, [&](int64_t begin, int64_t end) {
    StripBuffer<T> strips(block, largest, g);
    std::vector<T> out(direct ? 0 : block * g.mult * out_stride);
    std::vector<const T*> src(g.taps());
    std::vector<int64_t> offsets(g.taps());
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (blocks * tiles);
      const int64_t c0 = ((task / tiles) % blocks) * block;
      const int64_t p0 = (task % tiles) * tile_rows;
      const int64_t count = std::min(block, g.C - c0);
      const StripLayout L(g, p0, std::min(tile_rows, g.P - p0));
      strips.fill(x + n * xs.n + c0 * xs.c, xs, count, L);
      L.offsets(strip_taps, offsets.data());
      for (int64_t ch = 0; ch < count; ++ch) {
        for (int64_t t = 0; t < g.taps(); ++t) src[t] = strips.strip(ch) + offsets[t];
        for (int64_t j = 0; j < g.mult; ++j) {
          const int64_t k = (c0 + ch) * g.mult + j;
          if (direct) {  // rows straight into the output
            taps_correlate_rows(L.rows, g.Q, static_cast<int>(g.taps()), src.data(), L.sub_w,
                                taps.data() + k * g.taps(), bias ? bias[k] : T(0),
                                y + n * ys.n + k * ys.c + p0 * ys.h, ys.h);
            continue;
          }
          taps_correlate_rows(L.rows, g.Q, static_cast<int>(g.taps()), src.data(), L.sub_w,
                              taps.data() + k * g.taps(), bias ? bias[k] : T(0),
                              out.data() + (ch * g.mult + j) * out_stride, L.sub_w);
        }
      }
      if (direct) continue;
      if (relu) {
        for (int64_t i = 0; i < count * g.mult * out_stride; ++i) out[i] = std::max(out[i], T(0));
      }
      store_planes(out.data(), out_stride, L.sub_w, count * g.mult, L.rows, g.Q,
                   y + n * ys.n + c0 * g.mult * ys.c + p0 * ys.h, ys.c, ys.h, ys.w);
    }
  });
}

// grad_input, gather form. grad_output planes are copied into zero-bordered buffers where
// grad_output (p, q) sits at (p + top, q + left). Input (h, w) with
// h + pad_top = v*stride_h + a and w + pad_left = u*stride_w + b (phase (a, b)) is reached by
// the taps with r*dilation_h = a (mod stride_h) and s*dilation_w = b (mod stride_w), from
// output (v - r*dilation_h / stride_h, u - s*dilation_w / stride_w): per phase, a
// correlation over (v, u) flattened with the buffer's pitch, like the forward pass.
struct GradOutputLayout {
  int64_t top, left;  // zero rows above and columns left of grad_output
  int64_t rows, cols, size;

  explicit GradOutputLayout(const DwGeometry& g)
      : top((g.R - 1) * g.p.dilation_h / g.p.stride_h),
        left((g.S - 1) * g.p.dilation_w / g.p.stride_w) {
    rows = top + std::max(g.P, (g.H - 1 + g.p.pad_top) / g.p.stride_h + 1);
    cols = left + std::max(g.Q, (g.W - 1 + g.p.pad_left) / g.p.stride_w + 1);
    size = rows * cols + cols + kDwBlock;
  }
};

// One input phase (a, b) of grad_input: its sub-grid and the taps (j, r, s) that reach it,
// each with its offset in grad_output plane j's buffer.
struct InputPhase {
  int64_t a, b;
  PhaseRange rows, cols;
  std::vector<int64_t> plane, tap, offset;  // j, r * S + s, offset

  InputPhase(const DwGeometry& g, const GradOutputLayout& G, int64_t a_, int64_t b_)
      : a(a_), b(b_), rows(a_, g.p.pad_top, g.p.stride_h, g.H),
        cols(b_, g.p.pad_left, g.p.stride_w, g.W) {
    for (int64_t j = 0; j < g.mult; ++j) {
      for (int64_t r = 0; r < g.R; ++r) {
        const int64_t dh = r * g.p.dilation_h;
        if (dh % g.p.stride_h != a) continue;
        for (int64_t s = 0; s < g.S; ++s) {
          const int64_t dw = s * g.p.dilation_w;
          if (dw % g.p.stride_w != b) continue;
          plane.push_back(j);
          tap.push_back(r * g.S + s);
          offset.push_back((rows.first - dh / g.p.stride_h + G.top) * G.cols +
                           (cols.first - dw / g.p.stride_w + G.left));
        }
      }
    }
  }
};

// At stride 1 with one output channel per input channel, grad_input is the correlation of
// grad_output with the flipped taps, padded by (R - 1) * dilation_h - pad_top rows and
// (S - 1) * dilation_w - pad_left columns (and likewise at the bottom and right).
Conv2dParams flipped_padding(const DwGeometry& g) {
  Conv2dParams p = g.p;
  p.pad_top = (g.R - 1) * p.dilation_h - g.p.pad_top;
  p.pad_bottom = (g.R - 1) * p.dilation_h - g.p.pad_bottom;
  p.pad_left = (g.S - 1) * p.dilation_w - g.p.pad_left;
  p.pad_right = (g.S - 1) * p.dilation_w - g.p.pad_right;
  return p;
}

// That correlation's geometry: grad_output (N, M, P, Q) as its input, grad_input's H x W as its
// output, flipped_padding.
DwGeometry flipped_geometry(const DwGeometry& g) {
  return DwGeometry({g.N, g.M, g.P, g.Q}, {g.M, 1, g.R, g.S}, g.H, g.W, flipped_padding(g));
}

// The taps of every output channel (weight_taps), each channel's reversed: the flipped kernel.
template <typename T>
std::vector<T> flipped_taps(const at::Tensor& weight, const DwGeometry& g) {
  std::vector<T> taps = weight_taps<T>(weight, g);
  for (auto k = taps.begin(); k != taps.end(); k += g.taps()) std::reverse(k, k + g.taps());
  return taps;
}

// grad_input by the small-plane kernels, a run of planes at a time: at stride 1 the
// correlation with the flipped taps (small_planes_correlate), at other strides gathered row
// by row (small_planes_transposed; at stride 2 with a 3x3 kernel, rows of any width).
template <typename T>
struct GradInputPlanes {
  SmallPlanes sp;
  bool correlate;
  std::vector<T> taps;  // flipped where `correlate`

  // grad_input planes k0 <= k < k0 + count of image n. `stream`: the transposed kernel
  // writes with non-temporal stores (then fenced).
  void run(const T* dy, const Strides4& dys, T* dx, const Strides4& dxs, int64_t n, int64_t k0,
           int64_t count, bool stream) const {
    if (correlate) {
      small_planes_correlate(sp, k0, count, dy + n * dys.n, dys.c, taps.data(),
                             static_cast<const T*>(nullptr), false, dx + n * dxs.n, dxs.c);
      return;
    }
    small_planes_transposed(sp, k0, count, dy + n * dys.n, dys.c, taps.data(), dx + n * dxs.n,
                            dxs.c, stream);
    if (stream) stream_fence();
  }
};

// GradInputPlanes for g, or nullopt where the small-plane kernels do not take it (channel
// multiplier 1, unit column strides, rows that fit).
template <typename T>
std::optional<GradInputPlanes<T>> grad_input_planes(const DwGeometry& g, const at::Tensor& weight,
                                                    const Strides4& dys, const Strides4& dxs) {
  if (g.mult != 1) return std::nullopt;
  if (g.p.stride_h == 1 && g.p.stride_w == 1) {
    const Conv2dParams p = flipped_padding(g);
    if (const auto sp = small_planes<T>(g.P, g.Q, dys, g.H, g.W, dxs, g.R, g.S, 1, 1,
                                        g.p.dilation_h, g.p.dilation_w, p.pad_top, p.pad_left,
                                        1)) {
      return GradInputPlanes<T>{*sp, true, flipped_taps<T>(weight, g)};
    }
  }
  const SmallPlanes sp{g.H, g.W, dxs.h, g.P, g.Q, dys.h, g.R, g.S, g.p.stride_h,
                       g.p.stride_w, g.p.dilation_h, g.p.dilation_w, g.p.pad_top,
                       g.p.pad_left, 1};
  if (dxs.w == 1 && dys.w == 1 && g.S <= kSmallPlanesMaxS && small_planes_fit<T>(sp, true)) {
    return GradInputPlanes<T>{sp, false, weight_taps<T>(weight, g)};
  }
  return std::nullopt;
}

template <typename T>
void depthwise_grad_input_fast(const at::Tensor& grad_output, const at::Tensor& weight,
                               at::Tensor& grad_input, const DwGeometry& g) {
  const T* dy = grad_output.data_ptr<T>();
  T* dx = grad_input.data_ptr<T>();
  const Strides4 dys(grad_output), dxs(grad_input);
  if (channels_last_applies(g, dys, dxs)) {
    depthwise_grad_input_channels_last<T>(grad_output, weight, grad_input, g);
    return;
  }
  if (multiplier_planes_apply<T>(g, dys, dxs)) {
    multiplier_planes<T>(dy, dys, nullptr, dys, flipped_taps<T>(weight, g).data(), dx, dxs,
                         nullptr, nullptr, g);
    return;
  }
  // 3x3 at stride 1 (grid_beats_small_planes): the forward pass's kernels, in place or on
  // strips, of grad_output with the flipped taps
  if (g.p.stride_h == 1 && g.p.stride_w == 1 && g.mult == 1) {
    const DwGeometry t = flipped_geometry(g);
    const Conv2dParams& p = t.p;
    if (grid_beats_small_planes<T>(t) && std::min({p.pad_top, p.pad_bottom, p.pad_left,
                                                   p.pad_right}) >= 0) {
      depthwise_forward_fast<T>(grad_output, weight.flip({2, 3}), nullptr, grad_input, t, false);
      return;
    }
  }
  if (const auto planes = grad_input_planes<T>(g, weight, dys, dxs)) {
    // past the caches from 8 MiB (cpu/stream_store.h), where the stride-2 kernel can: two
    // threads, ms, 8x64x112x112 3.1-3.3 -> 2.4-2.6; 8x128x56x56 level (1.4-1.9 both)
    const bool stream = streams(grad_input.numel() * int64_t{sizeof(T)});
    for_plane_runs(g.N, g.C, g.H * g.W, [&](int64_t n, int64_t k0, int64_t count) {
      planes->run(dy, dys, dx, dxs, n, k0, count, stream);
    });
    return;
  }
  const std::vector<T> taps = weight_taps<T>(weight, g);
  const int64_t sh = g.p.stride_h, sw = g.p.stride_w;
  const int64_t block = channel_block<T>(grad_input, g.C);
  const int64_t blocks = ceil_div(g.C, block);
  const GradOutputLayout G(g);
  const int64_t out_stride = round_up(G.rows * G.cols, kDwBlock);
  const bool direct = sw == 1 && dxs.w == 1;  // one column phase, rows written in place
  std::vector<InputPhase> phases;
  for (int64_t a = 0; a < sh; ++a) {
    for (int64_t b = 0; b < sw; ++b) phases.emplace_back(g, G, a, b);
  }

  at::parallel_for(0, g.N * blocks, 1, [&](int64_t begin, int64_t end) {
    // Zero borders once: every task writes grad_output to the same places.
    std::vector<T> gy(block * g.mult * G.size, T(0));
    std::vector<T> out(direct ? 0 : sw * block * out_stride);  // [phase b][channel]
    std::vector<const T*> src(std::max<int64_t>(g.mult * g.taps(), sw));
    std::vector<T> w(g.mult * g.taps());
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * block;
      const int64_t count = std::min(block, g.C - c0);
      load_planes(dy + n * dys.n + c0 * g.mult * dys.c, dys.c, dys.h, dys.w, count * g.mult,
                  g.P, g.Q, gy.data() + G.top * G.cols + G.left, G.size, G.cols);
      for (int64_t a = 0; a < sh; ++a) {
        const PhaseRange& vr = phases[a * sw].rows;
        if (vr.count == 0) continue;
        const int64_t len = vr.count * G.cols;
        for (int64_t b = 0; b < sw; ++b) {
          const InputPhase& ph = phases[a * sw + b];
          if (ph.cols.count == 0) continue;
          const int ntaps = static_cast<int>(ph.tap.size());
          for (int64_t ch = 0; ch < count; ++ch) {
            const T* planes = gy.data() + ch * g.mult * G.size;
            const T* w_channel = taps.data() + (c0 + ch) * g.mult * g.taps();
            for (int t = 0; t < ntaps; ++t) {
              src[t] = planes + ph.plane[t] * G.size + ph.offset[t];
              w[t] = w_channel[ph.plane[t] * g.taps() + ph.tap[t]];
            }
            if (direct) {  // stride_w == 1: phase a's rows straight into grad_input
              T* rows = dx + n * dxs.n + (c0 + ch) * dxs.c + (vr.first * sh + a - g.p.pad_top) * dxs.h;
              if (ntaps == 0) {
                for (int64_t v = 0; v < vr.count; ++v) std::fill(rows + v * sh * dxs.h, rows + v * sh * dxs.h + g.W, T(0));
              } else {
                taps_correlate_rows(vr.count, g.W, ntaps, src.data(), G.cols, w.data(), T(0), rows,
                                    sh * dxs.h);
              }
              continue;
            }
            T* o = out.data() + (b * block + ch) * out_stride;
            if (ntaps == 0) {
              std::fill(o, o + len, T(0));
            } else {
              taps_correlate(len, ntaps, src.data(), w.data(), T(0), o);
            }
          }
        }
        if (direct) continue;
        // Input rows h = v*sh + a - pad_top interleave the column phases: column w is element
        // w / sw of phase (w + pad_left) % sw, whose sub-grid starts at column w % sw.
        T* dx_rows = dx + n * dxs.n + c0 * dxs.c + (vr.first * sh + a - g.p.pad_top) * dxs.h;
        for (int64_t ch = 0; ch < count; ++ch) {
          for (int64_t f = 0; f < sw; ++f) {
            src[f] = out.data() + (((f + g.p.pad_left) % sw) * block + ch) * out_stride;
          }
          T* rows = dx_rows + ch * dxs.c;
          if (dxs.w == 1) {
            interleave_rows(vr.count, g.W, static_cast<int>(sw), src.data(), G.cols, rows, sh * dxs.h);
            continue;
          }
          for (int64_t v = 0; v < vr.count; ++v) {
            for (int64_t f = 0; f < sw; ++f) {
              const T* s = src[f] + v * G.cols;
              for (int64_t i = 0, iw = f; iw < g.W; ++i, iw += sw) rows[v * sh * dxs.h + iw * dxs.w] = s[i];
            }
          }
        }
      }
    }
  });
}

template <typename T>
void depthwise_grad_weight_fast(const at::Tensor& grad_output, const at::Tensor& input,
                                at::Tensor& grad_weight, const DwGeometry& g) {
  const T* dy = grad_output.data_ptr<T>();
  const T* x = input.data_ptr<T>();
  T* dw = grad_weight.data_ptr<T>();  // contiguous (M, 1, R, S)
  const Strides4 dys(grad_output), xs(input);
  if (channels_last_applies(g, dys, xs)) {
    depthwise_grad_weight_channels_last(grad_output, input, dw, g);
    return;
  }
  if (multiplier_planes_apply<T>(g, dys, xs)) {
    multiplier_planes<T>(dy, dys, x, xs, nullptr, nullptr, xs, dw, nullptr, g);
    return;
  }
  if (const auto sp = small_planes_forward<T>(g, xs, dys)) {
    grad_weight_small_planes(*sp, g, dy, dys, x, xs, dw);
    return;
  }
  if (in_place_applies<T>(g, xs, dys)) {
    grad_weight_in_place(g, dy, dys, input, dw);
    return;
  }
  const StripTaps strip_taps(g);
  const int64_t block = channel_block<T>(input, g.C);
  const int64_t blocks = ceil_div(g.C, block);
  const int64_t tile_rows = strip_rows(g, block);
  const StripLayout largest(g, 0, tile_rows);
  const int64_t g_stride = round_up(largest.out_len, kDwBlock);
  // The batch is cut into chunks chosen from the shape alone; each (channel block, chunk)
  // task sums its chunk into its own partial, and the partials are added in chunk order.
  const int64_t chunks = std::clamp<int64_t>(ceil_div(kMinWeightTasks, blocks), 1, g.N);
  const int64_t per_chunk = ceil_div(g.N, chunks);
  std::vector<T> partial(chunks * g.M * g.taps(), T(0));

  at::parallel_for(0, blocks * chunks, 1, [&](int64_t begin, int64_t end) {
    StripBuffer<T> strips(block, largest, g);
    // grad_output rows at the strip's pitch; the columns past Q stay zero, and so do the
    // rows past a short last tile (its rows are a prefix of the largest tile's).
    std::vector<T> gy(block * g.mult * g_stride, T(0));
    int64_t gy_rows = tile_rows;
    std::vector<const T*> src(g.taps());
    std::vector<int64_t> offsets(g.taps());
    std::vector<T> lanes(block * g.mult * g.taps() * kDotLanes);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t c0 = (task / chunks) * block, chunk = task % chunks;
      const int64_t count = std::min(block, g.C - c0);
      std::fill(lanes.begin(), lanes.end(), T(0));
      for (int64_t n = chunk * per_chunk; n < std::min(g.N, (chunk + 1) * per_chunk); ++n) {
        for (int64_t p0 = 0; p0 < g.P; p0 += tile_rows) {
          const StripLayout L(g, p0, std::min(tile_rows, g.P - p0));
          strips.fill(x + n * xs.n + c0 * xs.c, xs, count, L);
          if (L.rows < gy_rows) {
            for (int64_t pl = 0; pl < block * g.mult; ++pl) {
              std::fill(gy.begin() + pl * g_stride + L.out_len, gy.begin() + (pl + 1) * g_stride, T(0));
            }
          }
          gy_rows = L.rows;
          load_planes(dy + n * dys.n + c0 * g.mult * dys.c + p0 * dys.h, dys.c, dys.h, dys.w,
                      count * g.mult, L.rows, g.Q, gy.data(), g_stride, L.sub_w);
          L.offsets(strip_taps, offsets.data());
          for (int64_t ch = 0; ch < count; ++ch) {
            for (int64_t t = 0; t < g.taps(); ++t) src[t] = strips.strip(ch) + offsets[t];
            for (int64_t j = 0; j < g.mult; ++j) {
              taps_dot(L.out_len, static_cast<int>(g.taps()), src.data(),
                       gy.data() + (ch * g.mult + j) * g_stride,
                       lanes.data() + (ch * g.mult + j) * g.taps() * kDotLanes);
            }
          }
        }
      }
      sum_lanes(lanes.data(), count * g.mult * g.taps(),
                partial.data() + (chunk * g.M + c0 * g.mult) * g.taps());
    }
  });
  add_partials(partial, chunks, dw);
}

bool use_reference() { return kernel_version(OpFamily::depthwise) == 1; }

// ---------------------------------------------------------------------------------------
// conv2d_backward: the three gradients in one pass

// The sum of a plane's rows x cols elements (rows `pitch` apart), in kLanes lanes added in
// lane order: a fixed order, which the compiler vectorises.
template <int kLanes, typename T>
T lanes_sum(const T* p, int64_t rows, int64_t cols, int64_t pitch) {
  T lanes[kLanes] = {};
  if (pitch == cols) {
    cols *= rows;
    rows = 1;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = p + r * pitch;
    int64_t i = 0;
    for (; i + kLanes <= cols; i += kLanes) {
      for (int l = 0; l < kLanes; ++l) lanes[l] += row[i + l];
    }
    for (int l = 0; i < cols; ++i, ++l) lanes[l] += row[i];
  }
  T sum = T(0);
  for (int l = 0; l < kLanes; ++l) sum += lanes[l];
  return sum;
}

// Planes of 1024 elements or more in 32 lanes, eight independent chains of additions (with
// 8, two chains took a third as long as grad_input's correlation of the same 112x112
// planes); smaller ones in 8, whose final sum costs less (7x7 planes in 32 lanes: the
// backward pass 13% slower).
template <typename T>
T plane_sum(const T* p, int64_t rows, int64_t cols, int64_t pitch) {
  return rows * cols >= 1024 ? lanes_sum<32>(p, rows, cols, pitch)
                             : lanes_sum<8>(p, rows, cols, pitch);
}

// Elements of each operand a run of the fused pass covers (grad_output, the input and
// grad_input: three times 64 KiB of floats, in L2).
constexpr int64_t kFusedRunElements = 16384;

// Where grad_input and grad_weight both run the small-plane kernels (NCHW, channel
// multiplier 1: MobileNet's 14x14 and 7x7 layers, the stride-2 ones of any width; grad_input
// contiguous, strides dxs), the three gradients in one pass: the tasks of
// grad_weight_by_chunks compute the grad_input planes and the bias gradient of a run of
// channels over their chunk of images just before that run's dot products, which then read
// grad_output from cache instead of from memory once per gradient. A grad_input of 8 MiB or
// more is written past the caches, as grad_input's own operator does (stride 2, 8x64x112x112,
// two threads, no page faults: 2.05 -> 1.60 ms against the operators in turn, which such a
// grad_input took before). Each gradient is the same sum in the same order as
// its own operator's (the bias gradient excepted: plane_sum's lanes, chunks in order).
template <typename T>
struct FusedBackward {
  SmallPlanes dot;             // grad_weight's small planes
  GradInputPlanes<T> planes;   // grad_input's

  static std::optional<FusedBackward> make(const at::Tensor& grad_output, const at::Tensor& input,
                                           const at::Tensor& weight, const Strides4& dxs,
                                           const DwGeometry& g) {
    const Strides4 dys(grad_output), xs(input);
    if (channels_last_applies(g, dys, xs)) return std::nullopt;
    if (g.p.stride_h == 1 && g.p.stride_w == 1 && g.mult == 1 &&
        grid_beats_small_planes<T>(flipped_geometry(g))) {
      return std::nullopt;
    }
    auto dot = small_planes_forward<T>(g, xs, dys);
    auto planes = grad_input_planes<T>(g, weight, dys, dxs);
    if (!dot || !planes) return std::nullopt;
    return FusedBackward{*dot, std::move(*planes)};
  }

  void run(const at::Tensor& grad_output, const at::Tensor& input, at::Tensor& grad_input,
           T* grad_weight, T* grad_bias, const DwGeometry& g) const {
    const Strides4 dys(grad_output), xs(input), dxs(grad_input);
    const T* dy = grad_output.data_ptr<T>();
    T* dx = grad_input.data_ptr<T>();
    const int64_t chunks = weight_chunks(g), per_chunk = ceil_div(g.N, chunks);
    std::vector<T> bias_partial(grad_bias ? chunks * g.M : 0);
    const bool stream = streams(grad_input.numel() * int64_t{sizeof(T)});
    auto pre = [&](int64_t k0, int64_t count, int64_t chunk, int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) planes.run(dy, dys, dx, dxs, n, k0, count, stream);
      if (grad_bias == nullptr) return;
      for (int64_t k = k0; k < k0 + count; ++k) {
        T sum = T(0);
        for (int64_t n = n0; n < n1; ++n) {
          sum += plane_sum(dy + n * dys.n + k * dys.c, g.P, g.Q, dys.h);
        }
        bias_partial[chunk * g.M + k] = sum;
      }
    };
    const int64_t run_channels =
        std::max<int64_t>(1, kFusedRunElements / std::max<int64_t>(per_chunk * g.H * g.W, 1));
    grad_weight_small_planes(dot, g, dy, dys, input.data_ptr<T>(), xs, grad_weight, pre,
                             run_channels);
    if (grad_bias != nullptr) {
      for (int64_t k = 0; k < g.M; ++k) {
        T sum = T(0);
        for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += bias_partial[chunk * g.M + k];
        grad_bias[k] = sum;
      }
    }
  }
};

// The three gradients in one pass on the layers read in place (in_place_applies: 3x3,
// stride 1, padding 1, planes of 24 rows or more; NCHW, channel multiplier 1), where
// grad_input is the forward pass's correlation of grad_output with the flipped taps: the
// dot products of grad_weight_by_chunks, plane by plane, each first compute that plane's
// grad_input and its bias-gradient sum, so that grad_output is read from memory once, not
// three times. Each gradient is the same sum in the same order as its own operator's (the
// bias gradient excepted: plane_sum's lanes, chunks in order).
template <typename T>
bool fused_in_place_applies(const DwGeometry& g, const Strides4& dys, const Strides4& xs,
                            const Strides4& dxs) {
  if (g.mult != 1 || channels_last_applies(g, dys, xs) || !in_place_applies<T>(g, xs, dys)) {
    return false;
  }
  return in_place_applies<T>(flipped_geometry(g), dys, dxs);
}

template <typename T>
void fused_backward_in_place(const at::Tensor& grad_output, const at::Tensor& input,
                             const at::Tensor& weight, T* dx, const Strides4& dxs, T* dw,
                             T* db, const DwGeometry& g) {
  const Strides4 dys(grad_output);
  const T* dy = grad_output.data_ptr<T>();
  const DwGeometry t = flipped_geometry(g);
  const std::vector<T> flipped = flipped_taps<T>(weight, g);
  const bool stream = streams(g.N * g.C * g.H * g.W * int64_t{sizeof(T)});
  const T* x = input.data_ptr<T>();
  const Strides4 xs(input);
  const T* x_end = end_in_memory<T>(input);
  const int64_t chunks = weight_chunks(g), per_chunk = ceil_div(g.N, chunks);
  std::vector<T> bias_partial(db ? chunks * g.M : 0);
  grad_weight_by_chunks(g, dw, [&] {
    return [&, planes = InPlacePlanes<T>(t), dots = InPlaceDot<T>(g, x, xs, x_end)](
               int64_t k, int64_t n0, int64_t n1, T* lanes) mutable {
      for (int64_t n = n0; n < n1; ++n) {
        const T* dy_plane = dy + n * dys.n + k * dys.c;
        planes.correlate(dy_plane, dys, flipped.data() + k * g.taps(), T(0), false,
                         dx + n * dxs.n + k * dxs.c, dxs, stream);
        if (db != nullptr) {
          bias_partial[n0 / per_chunk * g.M + k] += plane_sum(dy_plane, g.P, g.Q, dys.h);
        }
        dots.dot(n, k, dy_plane, dys.h, lanes);
      }
      if (stream) stream_fence();
    };
  });
  if (db == nullptr) return;
  for (int64_t k = 0; k < g.M; ++k) {
    T sum = T(0);
    for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += bias_partial[chunk * g.M + k];
    db[k] = sum;
  }
}

}  // namespace

bool depthwise_grad_weight_by_planes(const at::Tensor& grad_output, const at::Tensor& input,
                                     c10::IntArrayRef weight_size, const Conv2dParams& p) {
  if (use_reference()) return false;
  const DwGeometry g(input.sizes(), weight_size, grad_output.size(2), grad_output.size(3), p);
  const Strides4 dys(grad_output), xs(input);
  return input.scalar_type() == at::kDouble ? multiplier_planes_apply<double>(g, dys, xs)
                                            : multiplier_planes_apply<float>(g, dys, xs);
}

std::optional<std::tuple<at::Tensor, at::Tensor, at::Tensor>> depthwise_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const Conv2dParams& p, bool bias, c10::MemoryFormat memory_format) {
  if (use_reference() || grad_output.numel() == 0 || input.numel() == 0 ||
      memory_format != c10::MemoryFormat::Contiguous) {
    return std::nullopt;
  }
  const DwGeometry g(input.sizes(), weight.sizes(), grad_output.size(2), grad_output.size(3), p);
  // grad_input's strides, NCHW: decided before anything is allocated
  const Strides4 dxs(g.C * g.H * g.W, g.H * g.W, g.W, 1);
  std::optional<std::tuple<at::Tensor, at::Tensor, at::Tensor>> result;
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnops.conv2d_backward (depthwise)", [&] {
    const Strides4 dys(grad_output), xs(input);
    const bool by_planes = multiplier_planes_apply<scalar_t>(g, dys, xs);  // (dxs: NCHW)
    const auto fused =
        by_planes ? std::nullopt
                  : FusedBackward<scalar_t>::make(grad_output, input, weight, dxs, g);
    const bool in_place = !by_planes && !fused && fused_in_place_applies<scalar_t>(g, dys, xs, dxs);
    if (!by_planes && !fused && !in_place) return;
    at::Tensor grad_input = at::empty(input.sizes(), grad_output.options());
    at::Tensor grad_weight = at::empty(weight.sizes(), grad_output.options());
    at::Tensor grad_bias = at::empty({bias ? g.M : 0}, grad_output.options());
    scalar_t* db = bias ? grad_bias.data_ptr<scalar_t>() : nullptr;
    if (by_planes) {
      multiplier_planes<scalar_t>(grad_output.data_ptr<scalar_t>(), dys, input.data_ptr<scalar_t>(),
                                  xs, flipped_taps<scalar_t>(weight, g).data(),
                                  grad_input.data_ptr<scalar_t>(), dxs,
                                  grad_weight.data_ptr<scalar_t>(), db, g);
    } else if (fused) {
      fused->run(grad_output, input, grad_input, grad_weight.data_ptr<scalar_t>(), db, g);
    } else {
      fused_backward_in_place<scalar_t>(grad_output, input, weight, grad_input.data_ptr<scalar_t>(),
                                        dxs, grad_weight.data_ptr<scalar_t>(), db, g);
    }
    result.emplace(grad_input, grad_weight, grad_bias);
  });
  return result;
}

// ---------------------------------------------------------------------------------------
// Entry points (argument checks are conv2d's, done by the caller)

at::Tensor depthwise_forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                                 const c10::optional<at::Tensor>& bias, const Conv2dParams& p,
                                 bool relu) {
  const int64_t out_h = conv_out_size(input.size(2), weight.size(2), p.pad_top, p.pad_bottom,
                                      p.stride_h, p.dilation_h);
  const int64_t out_w = conv_out_size(input.size(3), weight.size(3), p.pad_left, p.pad_right,
                                      p.stride_w, p.dilation_w);
  at::Tensor output = at::empty(
      {input.size(0), weight.size(0), out_h, out_w},
      input.options().memory_format(conv_output_memory_format(input, weight)));
  if (output.numel() == 0) return output;
  const DwGeometry g(input.sizes(), weight.sizes(), out_h, out_w, p);
  const at::Tensor bias_c = bias.has_value() ? bias->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "cnnops.conv2d (depthwise)", [&] {
    const scalar_t* b = bias_c.defined() ? bias_c.data_ptr<scalar_t>() : nullptr;
    if (use_reference()) {
      depthwise_forward_reference<scalar_t>(input, weight, b, output, g, relu);
    } else {
      depthwise_forward_fast<scalar_t>(input, weight, b, output, g, relu);
    }
  });
  return output;
}

at::Tensor depthwise_grad_input_cpu(const at::Tensor& grad_output, const at::Tensor& weight,
                                    c10::IntArrayRef input_size, const Conv2dParams& p,
                                    c10::MemoryFormat memory_format) {
  at::Tensor grad_input = at::empty(input_size, grad_output.options().memory_format(memory_format));
  if (grad_input.numel() == 0) return grad_input;
  if (grad_output.numel() == 0) return grad_input.zero_();  // no output channels
  const DwGeometry g(input_size, weight.sizes(), grad_output.size(2), grad_output.size(3), p);
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnops.conv2d_grad_input (depthwise)", [&] {
    if (use_reference()) {
      depthwise_grad_input_reference<scalar_t>(grad_output, weight, grad_input, g);
    } else {
      // (an expanded grad_output sent every pass to the strided path: on 8x128x56x56
      // grad_input took 1.9x and grad_weight 3.0x as long as on the dense copy)
      depthwise_grad_input_fast<scalar_t>(dense_if_expanded(grad_output, memory_format), weight,
                                          grad_input, g);
    }
  });
  return grad_input;
}

at::Tensor depthwise_grad_weight_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                     c10::IntArrayRef weight_size, const Conv2dParams& p) {
  at::Tensor grad_weight = at::zeros(weight_size, grad_output.options());
  if (grad_weight.numel() == 0 || grad_output.numel() == 0) return grad_weight;
  const DwGeometry g(input.sizes(), weight_size, grad_output.size(2), grad_output.size(3), p);
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnops.conv2d_grad_weight (depthwise)", [&] {
    if (use_reference()) {
      depthwise_grad_weight_reference<scalar_t>(grad_output, input, grad_weight, g);
    } else {
      depthwise_grad_weight_fast<scalar_t>(
          dense_if_expanded(grad_output, input.suggest_memory_format()), input, grad_weight, g);
    }
  });
  return grad_weight;
}

}  // namespace cnnops::cpu
