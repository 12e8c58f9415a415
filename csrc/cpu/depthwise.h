// CPU depthwise convolution (groups == in_channels), entered from the conv2d operators
// (cpu/conv2d.cpp) and used by the fused depthwise-separable operator
// (cpu/depthwise_separable.cpp). Kernels and their versions: cpu/depthwise.cpp.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/MemoryFormat.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <optional>
#include <tuple>

#include "common/conv2d_params.h"
#include "common/depthwise.h"  // is_depthwise
#include "cpu/depthwise_small.h"

namespace cnnops::cpu {

// The three conv2d operators for a depthwise geometry, after conv2d's argument checks.
// Outputs are laid out as conv2d's (conv_output_memory_format); grad_weight is contiguous.
// `relu` applies max(., 0) to the output (conv2d_bias_relu).
at::Tensor depthwise_forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                                 const c10::optional<at::Tensor>& bias, const Conv2dParams& p,
                                 bool relu = false);
at::Tensor depthwise_grad_input_cpu(const at::Tensor& grad_output, const at::Tensor& weight,
                                    c10::IntArrayRef input_size, const Conv2dParams& p,
                                    c10::MemoryFormat memory_format);
at::Tensor depthwise_grad_weight_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                     c10::IntArrayRef weight_size, const Conv2dParams& p);
// Whether grad_weight of a depthwise layer with a channel multiplier runs the depthwise pass
// that conv2d_backward fuses (3x3, stride 1, padding 1, NCHW rows of a vector or more), which
// conv2d's direct kernel would otherwise take (SimpleCNN's first layer).
bool depthwise_grad_weight_by_planes(const at::Tensor& grad_output, const at::Tensor& input,
                                     c10::IntArrayRef weight_size, const Conv2dParams& p);
// conv2d_backward's gradients of the input (in memory_format), the weight and, where `bias`,
// the bias (else an empty tensor), in one pass over the operands where the small-plane
// kernels take both grad_input and grad_weight (NCHW, channel multiplier 1, rows that fit a
// vector or two; 3x3 stride 2 of any width), where 3x3 stride-1 planes are read in place, and
// on 3x3 stride-1 layers with a channel multiplier; nullopt elsewhere, where the caller runs
// the three separately.
std::optional<std::tuple<at::Tensor, at::Tensor, at::Tensor>> depthwise_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const Conv2dParams& p, bool bias, c10::MemoryFormat memory_format);

// ---- the vectorised loops (cpu/depthwise_kernel.h), built per ISA ---------------------

// The 1-D loops run over whole vectors (up to the widest ISA's 16 floats): buffers they
// read or write hold round_up(n, kDwBlock) initialised elements past their start.
constexpr int64_t kDwBlock = 64;

// out[i] = init + sum_{t < ntaps} w[t] * src[t][i] for i < n (and scratch up to the block).
void taps_correlate(int64_t n, int ntaps, const float* const* src, const float* w, float init,
                    float* out);
void taps_correlate(int64_t n, int ntaps, const double* const* src, const double* w,
                    double init, double* out);

// The same, written straight into rows of a plane: for r < rows and q < cols,
// out[r * out_pitch + q] = init + sum_t w[t] * src[t][r * src_pitch + q]; rows of src are
// read up to round_up(cols, 16) elements.
void taps_correlate_rows(int64_t rows, int64_t cols, int ntaps, const float* const* src,
                         int64_t src_pitch, const float* w, float init, float* out,
                         int64_t out_pitch);
void taps_correlate_rows(int64_t rows, int64_t cols, int ntaps, const double* const* src,
                         int64_t src_pitch, const double* w, double init, double* out,
                         int64_t out_pitch);

// A 3x3 correlation at stride 1 and dilation 1 read in place from rows of a plane, one column
// of zero padding each side: for i < rows and q < cols (cols >= strip_lanes<T>()),
// out[i * out_pitch + q] = init + sum_{r, s} w[r * 3 + s] * x[(i + r) * x_pitch + q + s - 1],
// columns -1 and cols reading as zero, ReLU'd if relu. Those two elements of each of the
// rows + 2 input rows are loaded (then masked): they must lie inside the tensor. `stream`:
// write the rows with non-temporal stores where they are whole aligned vectors (the caller
// then calls stream_fence() before its task ends).
void grid_plane_rows(int64_t rows, int64_t cols, const float* x, int64_t x_pitch,
                     const float* w, float init, bool relu, float* out, int64_t out_pitch,
                     bool stream);
void grid_plane_rows(int64_t rows, int64_t cols, const double* x, int64_t x_pitch,
                     const double* w, double init, bool relu, double* out, int64_t out_pitch,
                     bool stream);

// The weight gradient of grid_plane_rows' correlation, read in place from an input plane and
// a grad_output plane of `rows` rows and `cols` columns (cols >= strip_lanes<T>()): into
// taps_dot's slots, acc[(r * 3 + s) * kDotLanes + lane] += the lane's share of
// sum_{i, q} gy[i * gy_pitch + q] * x[(i + r - 1) * x_pitch + q + s - 1], x zero outside its
// plane. Loads x from column -1 to column `cols` of every row (then masks them): they must
// lie inside the tensor.
void grid_plane_dot(int64_t rows, int64_t cols, const float* x, int64_t x_pitch,
                    const float* gy, int64_t gy_pitch, float* acc);
void grid_plane_dot(int64_t rows, int64_t cols, const double* x, int64_t x_pitch,
                    const double* gy, int64_t gy_pitch, double* acc);

// Copies rows x cols elements (rows src_pitch and dst_pitch apart, unit column strides), no
// element past a row's cols written, and where `lanes` is not null adds them into taps_dot's
// lane slots (lanes[l], l < kDotLanes), in a fixed order: sum_lanes of them is their sum.
void copy_rows(int64_t rows, int64_t cols, const float* src, int64_t src_pitch, float* dst,
               int64_t dst_pitch, float* lanes);
void copy_rows(int64_t rows, int64_t cols, const double* src, int64_t src_pitch, double* dst,
               int64_t dst_pitch, double* lanes);

// The 3x3 correlation of a zero-padded plane copy (no masks, no bounds: every element read
// lies inside x's buffer), stored or added to out: for i < rows and q < cols (a multiple of
// strip_lanes<T>()), out[i * out_pitch + q] = (add ? out[i * out_pitch + q] : 0) +
// sum_{r, s} w[r * 3 + s] * x[(i + r) * x_pitch + q + s], the taps added in t order.
void padded_plane_rows(int64_t rows, int64_t cols, const float* x, int64_t x_pitch,
                       const float* w, bool add, float* out, int64_t out_pitch);
void padded_plane_rows(int64_t rows, int64_t cols, const double* x, int64_t x_pitch,
                       const double* w, bool add, double* out, int64_t out_pitch);

// grid_plane_dot of two grad_output planes (gy0 into acc0, gy1 into acc1) against one input
// plane, each x load serving both where the registers allow: a fixed order of sums, but not
// grid_plane_dot's.
void grid_plane_dot2(int64_t rows, int64_t cols, const float* x, int64_t x_pitch,
                     const float* gy0, const float* gy1, int64_t gy_pitch, float* acc0,
                     float* acc1);
void grid_plane_dot2(int64_t rows, int64_t cols, const double* x, int64_t x_pitch,
                     const double* gy0, const double* gy1, int64_t gy_pitch, double* acc0,
                     double* acc1);

// acc[t * kDotLanes + lane] += the lane's share of sum_i g[i] * src[t][i]; adding a tap's
// lanes in lane order gives its dot product. Every lane ends in a fixed order of sums.
constexpr int64_t kDotLanes = 16;
void taps_dot(int64_t n, int ntaps, const float* const* src, const float* g, float* acc);
void taps_dot(int64_t n, int ntaps, const double* const* src, const double* g, double* acc);

// Plane copies to and from k column phases (k = 1 is a plain copy): for every row r < rows,
// dst[f][r * dst_pitch + i] = src[r * src_pitch + i*k + f] for i*k + f < n (deinterleave),
// and back (interleave).
void deinterleave_rows(int64_t rows, int64_t n, int k, const float* src, int64_t src_pitch,
                       float* const* dst, int64_t dst_pitch);
void deinterleave_rows(int64_t rows, int64_t n, int k, const double* src, int64_t src_pitch,
                       double* const* dst, int64_t dst_pitch);
void interleave_rows(int64_t rows, int64_t n, int k, const float* const* src, int64_t src_pitch,
                     float* dst, int64_t dst_pitch);
void interleave_rows(int64_t rows, int64_t n, int k, const double* const* src,
                     int64_t src_pitch, double* dst, int64_t dst_pitch);

// Channels-last loops (channel multiplier 1), vectors along the C contiguous channels; tap t
// multiplies the pixel at src[t] + q * src_step by the weight row w[t] (C values):
//   out[q * out_step + c] = init[c] + sum_t w[t][c] * src[t][q * src_step + c]  (init may be null)
//   acc[t][c] += sum_q g[q * g_step + c] * src[t][q * src_step + c]
// channels_correlate's `stream`: a 3x3 kernel at unit column stride writes `out` with
// non-temporal stores where its vectors are aligned (the caller then calls stream_fence()
// before its task ends); other kernels ignore it.
void channels_correlate(int64_t count, int64_t C, int ntaps, const float* const* src,
                        int64_t src_step, const float* const* w, const float* init, float* out,
                        int64_t out_step, bool stream);
void channels_correlate(int64_t count, int64_t C, int ntaps, const double* const* src,
                        int64_t src_step, const double* const* w, const double* init,
                        double* out, int64_t out_step, bool stream);
void channels_dot(int64_t count, int64_t C, int ntaps, const float* const* src, int64_t src_step,
                  const float* g, int64_t g_step, float* const* acc);
void channels_dot(int64_t count, int64_t C, int ntaps, const double* const* src,
                  int64_t src_step, const double* g, int64_t g_step, double* const* acc);

// channels_dot of a 3x3 kernel at stride 1 and dilation 1 over two output rows: for q <
// count and c < C, acc[r * 3 + s][c] += sum over rows i < 2 of
// g[i * g_row + q * g_step + c] * x[(i + r) * x_row + (q + s - pad) * x_step + c], pad 0
// (pixels whose taps all lie inside) or 1 (a whole row of count pixels padded by one on each
// side: the taps on pixels -1 and count are skipped).
void channels_dot_3x3_pair(int64_t count, int64_t C, int pad, const float* x, int64_t x_row,
                           int64_t x_step, const float* g, int64_t g_row, int64_t g_step,
                           float* const* acc);
void channels_dot_3x3_pair(int64_t count, int64_t C, int pad, const double* x, int64_t x_row,
                           int64_t x_step, const double* g, int64_t g_row, int64_t g_step,
                           double* const* acc);
// A block of `lanes` channels (a multiple of the widest vector, 16 floats) of a channels-last
// tensor's pixels gathered for channels_dot_block: for r < rows and q < cols,
// dst[r * dst_row + q * lanes + c] = src[r * src_row + q * src_step + c] for c < n, and 0 for
// n <= c < lanes.
void gather_channels(int64_t rows, int64_t cols, int64_t n, int64_t lanes, const float* src,
                     int64_t src_row, int64_t src_step, float* dst, int64_t dst_row);
void gather_channels(int64_t rows, int64_t cols, int64_t n, int64_t lanes, const double* src,
                     int64_t src_row, int64_t src_step, double* dst, int64_t dst_row);
// The taps' dot products over such blocks: for c < lanes and t < ntaps, acc[t][c] += sum over
// p < rows and q < cols of g[p * g_row + q * g_step + c] * x[p * x_row + q * x_step +
// offset[t] + c].
void channels_dot_block(int64_t rows, int64_t cols, int ntaps, const float* x, int64_t x_row,
                        int64_t x_step, const int64_t* offset, const float* g, int64_t g_row,
                        int64_t g_step, int64_t lanes, float* const* acc);
void channels_dot_block(int64_t rows, int64_t cols, int ntaps, const double* x, int64_t x_row,
                        int64_t x_step, const int64_t* offset, const double* g, int64_t g_row,
                        int64_t g_step, int64_t lanes, double* const* acc);
// Small planes (NCHW, rows that small_planes_fit, S <= kSmallPlanesMaxS): output planes
// k0 <= k < k0 + count at out + k * out_plane, from input plane k / mult at
// x + (k / mult) * x_plane, taps w + k * R * S, bias[k] (0 if bias is null), then max(., 0)
// if relu.
void small_planes_correlate(const SmallPlanes& g, int64_t k0, int64_t count, const float* x,
                            int64_t x_plane, const float* w, const float* bias, bool relu,
                            float* out, int64_t out_plane);
void small_planes_correlate(const SmallPlanes& g, int64_t k0, int64_t count, const double* x,
                            int64_t x_plane, const double* w, const double* bias, bool relu,
                            double* out, int64_t out_plane);
// grad_input of that geometry (channel multiplier 1, any strides, rows that
// small_planes_fit transposed): planes k0 <= k < k0 + count of grad_input at dx + k * dx_plane
// (rows g.x_pitch apart) from grad_output's at gy + k * gy_plane (rows g.out_pitch apart) and
// taps w + k * R * S. `stream`: the stride-2 kernel (stride2_shape) writes grad_input with
// non-temporal stores where its rows are whole aligned pairs of vectors (the caller then
// calls stream_fence() before its task ends); the others ignore it.
void small_planes_transposed(const SmallPlanes& g, int64_t k0, int64_t count, const float* gy,
                             int64_t gy_plane, const float* w, float* dx, int64_t dx_plane,
                             bool stream);
void small_planes_transposed(const SmallPlanes& g, int64_t k0, int64_t count, const double* gy,
                             int64_t gy_plane, const double* w, double* dx, int64_t dx_plane,
                             bool stream);
// The weight gradient's dot products of `count` plane pairs of that geometry, pair i the input
// plane at x + i * x_step (rows g.x_pitch apart) and the grad_output plane at gy + i * gy_step
// (rows g.out_pitch apart), into taps_dot's slots: acc[t * kDotLanes + lane] += the lane's
// share of sum over pairs and outputs of gy * x[tap t], pairs in order.
void small_planes_dot(const SmallPlanes& g, int64_t count, const float* x, int64_t x_step,
                      const float* gy, int64_t gy_step, float* acc);
void small_planes_dot(const SmallPlanes& g, int64_t count, const double* x, int64_t x_step,
                      const double* gy, int64_t gy_step, double* acc);
// Whether the small-plane kernels the dispatch picks take g's rows (small_rows_fit for the
// vectors they run on; any rows of a stride2_shape, which the three entry points above run
// on the stride-2 kernels, grad_input's for a channel multiplier of 1); transposed:
// small_planes_transposed's.
template <typename T>
bool small_planes_fit(const SmallPlanes& g, bool transposed);
// Elements in a vector of the strips' loops (taps_correlate_rows) on the active ISA.
template <typename T>
int64_t strip_lanes();

}  // namespace cnnops::cpu
