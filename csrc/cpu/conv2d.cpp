// CPU kernels of the conv2d family: forward, gradient of the input, gradient of the weight.
//
// Letters, as in cuda/conv2d.cu: N batch, C input channels, H x W input, K output channels,
// R x S kernel, P x Q output; G groups, Cg = C / G and Kg = K / G channels per group.
// Tensors may have any strides (NCHW, channels_last, permuted or sliced views): kernels
// index through the strides instead of copying to one layout.
//
// version 1: reference. A plain loop per output element: the direct sum over (c, r, s) for
//            the forward pass, the gather form of the input gradient, a plain reduction
//            over (n, p, q) for the weight gradient.
// version 2: implicit GEMM (the default). Per image and group, convolution is the GEMM
//              Y[Kg x PQ] = W[Kg x CgRS] * X_col[CgRS x PQ]
//            where X_col (im2col) is never built whole: cache-sized tiles of it are packed
//            straight from the input into the micro-kernel's panel layout (gemm.h).
//            grad_input is X_col' = W^T * dY followed by col2im; grad_weight is
//            dW = dY * X_col^T. Work is split so that every output element is owned by one
//            task, which reduces in a fixed order: results do not depend on the thread count.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/conv2d_params.h"
#include "common/kernel_version.h"
#include "cpu/depthwise.h"
#include "cpu/gemm.h"

namespace cnnops::cpu {

namespace {

// Cache blocking of the implicit GEMM (in elements).
constexpr int64_t kReductionBlock = 256;    // KC: reduction length of one packed block
constexpr int64_t kColumnTile = 128;        // output pixels per forward / grad_input tile
constexpr int64_t kRowsPerTask = 256;       // grad_input: target im2col rows per task
constexpr int64_t kWeightRowsPerTask = 48;  // grad_weight: output channels per task
constexpr int64_t kWeightColsPerTask = 256; // grad_weight: (c, r, s) columns per task

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

struct Strides4 {
  int64_t n, c, h, w;
  explicit Strides4(const at::Tensor& t) : n(t.stride(0)), c(t.stride(1)), h(t.stride(2)), w(t.stride(3)) {}
};

// Everything a kernel needs to know about one conv2d call.
struct ConvGeometry {
  int64_t N, C, H, W, K, R, S, P, Q, G, Cg, Kg;
  Conv2dParams p;

  ConvGeometry(c10::IntArrayRef input_size, c10::IntArrayRef weight_size, int64_t out_h,
               int64_t out_w, const Conv2dParams& params)
      : N(input_size[0]), C(input_size[1]), H(input_size[2]), W(input_size[3]),
        K(weight_size[0]), R(weight_size[2]), S(weight_size[3]), P(out_h), Q(out_w),
        G(params.groups), Cg(C / params.groups), Kg(K / params.groups), p(params) {}

  int64_t pixels() const { return P * Q; }          // output pixels of one image
  int64_t columns() const { return N * P * Q; }     // GEMM columns: output pixels of the batch
  int64_t reduction() const { return Cg * R * S; }  // CgRS: one im2col column's length
};

// (c, r, s) of row k of the im2col matrix.
struct KernelTap {
  int64_t c, r, s;
  KernelTap(int64_t k, const ConvGeometry& g) : c(k / (g.R * g.S)), r((k / g.S) % g.R), s(k % g.S) {}
};

// A run of GEMM columns [q0, q0 + count), column q being output pixel q % PQ of image
// q / PQ: a tile may span images, so that small images still fill the micro-kernel.
struct ColumnTile {
  int64_t q0 = 0, count = 0;
  std::vector<int64_t> image_off;  // image * (image stride of the tensor given to fill)
  std::vector<int64_t> ih0, iw0;   // top-left input coordinate of the column's window

  explicit ColumnTile(int64_t capacity) : image_off(capacity), ih0(capacity), iw0(capacity) {}

  void fill(const ConvGeometry& g, int64_t first, int64_t n_columns, int64_t image_stride) {
    q0 = first;
    count = n_columns;
    for (int64_t j = 0; j < count; ++j) {
      const int64_t q = q0 + j, pixel = q % g.pixels();
      image_off[j] = (q / g.pixels()) * image_stride;
      ih0[j] = (pixel / g.Q) * g.p.stride_h - g.p.pad_top;
      iw0[j] = (pixel % g.Q) * g.p.stride_w - g.p.pad_left;
    }
  }

  // Offsets of the columns' output pixels in a tensor of output shape with strides s.
  void output_offsets(const ConvGeometry& g, const Strides4& s, int64_t* off) const {
    for (int64_t j = 0; j < count; ++j) {
      const int64_t q = q0 + j, pixel = q % g.pixels();
      off[j] = (q / g.pixels()) * s.n + (pixel / g.Q) * s.h + (pixel % g.Q) * s.w;
    }
  }
};

// A matrix read through offset tables: element (i, j) = base[row_off[i] + col_off[j]].
template <typename T>
struct OffsetMatrix {
  const T* base;
  const int64_t* row_off;
  const int64_t* col_off;
};

// Packs rows [m0, m0 + rows) x reduction [k0, k0 + kc) of A into MR-row panels (gemm.h).
template <typename T>
void pack_a(const OffsetMatrix<T>& A, int64_t m0, int64_t rows, int64_t k0, int64_t kc,
            int64_t mr, T* dst) {
  for (int64_t i = 0; i < rows; i += mr) {
    for (int64_t k = 0; k < kc; ++k) {
      const int64_t col = A.col_off[k0 + k];
      for (int64_t r = 0; r < mr; ++r) {
        *dst++ = i + r < rows ? A.base[A.row_off[m0 + i + r] + col] : T(0);
      }
    }
  }
}

// Packs reduction [k0, k0 + kc) x columns [0, cols) of B into NR-column panels.
template <typename T>
void pack_b(const OffsetMatrix<T>& B, int64_t k0, int64_t kc, int64_t cols, int64_t nr, T* dst) {
  for (int64_t j = 0; j < cols; j += nr) {
    for (int64_t k = 0; k < kc; ++k) {
      const int64_t row = B.row_off[k0 + k];
      for (int64_t c = 0; c < nr; ++c) {
        *dst++ = j + c < cols ? B.base[row + B.col_off[j + c]] : T(0);
      }
    }
  }
}

// Packs the im2col rows (c, r, s) in [k0, k0 + kc) of one group for the columns of a tile,
// zero outside the input. `x` points at the group's first channel; the tile was filled with
// x's image stride. `transposed` chooses the operand:
//   false: B of the forward GEMM (panels of NR columns, the reduction running over k)
//   true:  B of the grad_weight GEMM (panels of NR k-rows, the reduction running over columns)
template <typename T>
void pack_im2col(const T* x, const Strides4& xs, const ConvGeometry& g, int64_t k0, int64_t kc,
                 const ColumnTile& tile, bool transposed, int64_t nr, T* dst) {
  const int64_t cols = tile.count;
  const int64_t padded_cols = transposed ? cols : round_up(cols, nr);
  const int64_t padded_rows = transposed ? round_up(kc, nr) : kc;
  for (int64_t kk = 0; kk < padded_rows; ++kk) {
    const bool real_row = kk < kc;
    const KernelTap tap(k0 + (real_row ? kk : 0), g);
    const T* xc = x + tap.c * xs.c;
    const int64_t dh = tap.r * g.p.dilation_h, dw = tap.s * g.p.dilation_w;
    for (int64_t j = 0; j < padded_cols; ++j) {
      T v = T(0);
      if (real_row && j < cols) {
        const int64_t ih = tile.ih0[j] + dh, iw = tile.iw0[j] + dw;
        if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) {
          v = xc[tile.image_off[j] + ih * xs.h + iw * xs.w];
        }
      }
      const int64_t at = transposed ? (kk / nr) * cols * nr + j * nr + kk % nr
                                    : (j / nr) * kc * nr + kk * nr + j % nr;
      dst[at] = v;
    }
  }
}

// Offsets of the (c, r, s) taps of a weight tensor, in im2col row order.
std::vector<int64_t> weight_tap_offsets(const ConvGeometry& g, const Strides4& ws) {
  std::vector<int64_t> off(g.reduction());
  for (int64_t k = 0; k < g.reduction(); ++k) {
    const KernelTap tap(k, g);
    off[k] = tap.c * ws.c + tap.r * ws.h + tap.s * ws.w;
  }
  return off;
}

std::vector<int64_t> strided_offsets(int64_t count, int64_t stride) {
  std::vector<int64_t> off(count);
  for (int64_t i = 0; i < count; ++i) off[i] = i * stride;
  return off;
}

// ---------------------------------------------------------------------------------------
// version 1: reference kernels

template <typename T>
void conv2d_forward_reference(const at::Tensor& input, const at::Tensor& weight,
                              const T* bias, at::Tensor& output, const ConvGeometry& g) {
  const T* x = input.data_ptr<T>();
  const T* w = weight.data_ptr<T>();
  T* y = output.data_ptr<T>();
  const Strides4 xs(input), ws(weight), ys(output);
  at::parallel_for(0, g.N * g.K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nk = begin; nk < end; ++nk) {
      const int64_t n = nk / g.K, k = nk % g.K, c0 = (k / g.Kg) * g.Cg;
      for (int64_t oh = 0; oh < g.P; ++oh) {
        for (int64_t ow = 0; ow < g.Q; ++ow) {
          T acc = bias ? bias[k] : T(0);
          for (int64_t c = 0; c < g.Cg; ++c) {
            for (int64_t r = 0; r < g.R; ++r) {
              const int64_t ih = oh * g.p.stride_h - g.p.pad_top + r * g.p.dilation_h;
              if (ih < 0 || ih >= g.H) continue;
              for (int64_t s = 0; s < g.S; ++s) {
                const int64_t iw = ow * g.p.stride_w - g.p.pad_left + s * g.p.dilation_w;
                if (iw < 0 || iw >= g.W) continue;
                acc += x[n * xs.n + (c0 + c) * xs.c + ih * xs.h + iw * xs.w] *
                       w[k * ws.n + c * ws.c + r * ws.h + s * ws.w];
              }
            }
          }
          y[n * ys.n + k * ys.c + oh * ys.h + ow * ys.w] = acc;
        }
      }
    }
  });
}

// Gather form: each input element sums the outputs whose windows cover it.
template <typename T>
void conv2d_grad_input_reference(const at::Tensor& grad_output, const at::Tensor& weight,
                                 at::Tensor& grad_input, const ConvGeometry& g) {
  const T* dy = grad_output.data_ptr<T>();
  const T* w = weight.data_ptr<T>();
  T* dx = grad_input.data_ptr<T>();
  const Strides4 dys(grad_output), ws(weight), dxs(grad_input);
  at::parallel_for(0, g.N * g.C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / g.C, c = nc % g.C, group = c / g.Cg, cg = c % g.Cg;
      for (int64_t ih = 0; ih < g.H; ++ih) {
        for (int64_t iw = 0; iw < g.W; ++iw) {
          T acc = T(0);
          for (int64_t k = group * g.Kg; k < (group + 1) * g.Kg; ++k) {
            for (int64_t r = 0; r < g.R; ++r) {
              const int64_t th = ih + g.p.pad_top - r * g.p.dilation_h;
              if (th < 0 || th % g.p.stride_h != 0 || th / g.p.stride_h >= g.P) continue;
              for (int64_t s = 0; s < g.S; ++s) {
                const int64_t tw = iw + g.p.pad_left - s * g.p.dilation_w;
                if (tw < 0 || tw % g.p.stride_w != 0 || tw / g.p.stride_w >= g.Q) continue;
                acc += dy[n * dys.n + k * dys.c + (th / g.p.stride_h) * dys.h +
                          (tw / g.p.stride_w) * dys.w] *
                       w[k * ws.n + cg * ws.c + r * ws.h + s * ws.w];
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
void conv2d_grad_weight_reference(const at::Tensor& grad_output, const at::Tensor& input,
                                  at::Tensor& grad_weight, const ConvGeometry& g) {
  const T* dy = grad_output.data_ptr<T>();
  const T* x = input.data_ptr<T>();
  T* dw = grad_weight.data_ptr<T>();
  const Strides4 dys(grad_output), xs(input), dws(grad_weight);
  at::parallel_for(0, g.K * g.reduction(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t k = idx / g.reduction();
      const KernelTap tap(idx % g.reduction(), g);
      const int64_t c = (k / g.Kg) * g.Cg + tap.c;
      T acc = T(0);
      for (int64_t n = 0; n < g.N; ++n) {
        for (int64_t oh = 0; oh < g.P; ++oh) {
          const int64_t ih = oh * g.p.stride_h - g.p.pad_top + tap.r * g.p.dilation_h;
          if (ih < 0 || ih >= g.H) continue;
          for (int64_t ow = 0; ow < g.Q; ++ow) {
            const int64_t iw = ow * g.p.stride_w - g.p.pad_left + tap.s * g.p.dilation_w;
            if (iw < 0 || iw >= g.W) continue;
            acc += dy[n * dys.n + k * dys.c + oh * dys.h + ow * dys.w] *
                   x[n * xs.n + c * xs.c + ih * xs.h + iw * xs.w];
          }
        }
      }
      dw[k * dws.n + tap.c * dws.c + tap.r * dws.h + tap.s * dws.w] = acc;
    }
  });
}

// ---------------------------------------------------------------------------------------
// version 2: implicit GEMM

template <typename T>
void conv2d_forward_gemm(const at::Tensor& input, const at::Tensor& weight, const T* bias,
                         at::Tensor& output, const ConvGeometry& g) {
  const GemmTile t = gemm_tile<T>();
  const T* x = input.data_ptr<T>();
  T* y = output.data_ptr<T>();
  const Strides4 xs(input), ys(output);
  const int64_t red = g.reduction();
  const int64_t blocks = ceil_div(red, kReductionBlock);
  const int64_t rows_padded = round_up(g.Kg, t.mr);

  // The weight, packed once: for group g and reduction block b, the MR-row panels of
  // W[g*Kg : (g+1)*Kg, b*KC : b*KC + kc] start at g*rows_padded*red + b*KC*rows_padded.
  std::vector<T> a_pack(g.G * rows_padded * red);
  {
    const std::vector<int64_t> col_off = weight_tap_offsets(g, Strides4(weight));
    const std::vector<int64_t> row_off = strided_offsets(g.K, weight.stride(0));
    const OffsetMatrix<T> w{weight.data_ptr<T>(), row_off.data(), col_off.data()};
    at::parallel_for(0, g.G * blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t gb = begin; gb < end; ++gb) {
        const int64_t group = gb / blocks, k0 = (gb % blocks) * kReductionBlock;
        const int64_t kc = std::min(kReductionBlock, red - k0);
        pack_a(w, group * g.Kg, g.Kg, k0, kc, t.mr,
               a_pack.data() + group * rows_padded * red + k0 * rows_padded);
      }
    });
  }

  const int64_t tiles = ceil_div(g.columns(), kColumnTile);
  at::parallel_for(0, g.G * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> b_pack(kReductionBlock * round_up(kColumnTile, t.nr));
    std::vector<T> c_tile(g.Kg * kColumnTile);
    std::vector<int64_t> y_off(kColumnTile);
    ColumnTile tile(kColumnTile);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t group = task / tiles, q0 = (task % tiles) * kColumnTile;
      tile.fill(g, q0, std::min(kColumnTile, g.columns() - q0), xs.n);
      const int64_t cols = tile.count;

      std::fill(c_tile.begin(), c_tile.begin() + g.Kg * cols, T(0));
      const T* x_group = x + group * g.Cg * xs.c;
      for (int64_t k0 = 0; k0 < red; k0 += kReductionBlock) {
        const int64_t kc = std::min(kReductionBlock, red - k0);
        pack_im2col(x_group, xs, g, k0, kc, tile, false, t.nr, b_pack.data());
        gemm_packed(g.Kg, cols, kc, a_pack.data() + group * rows_padded * red + k0 * rows_padded,
                    b_pack.data(), c_tile.data(), cols, 1);
      }
      // Epilogue: bias, then scatter the tile's columns to their images.
      tile.output_offsets(g, ys, y_off.data());
      for (int64_t k = 0; k < g.Kg; ++k) {
        const T add = bias ? bias[group * g.Kg + k] : T(0);
        T* y_channel = y + (group * g.Kg + k) * ys.c;
        const T* c_row = c_tile.data() + k * cols;
        for (int64_t j = 0; j < cols; ++j) y_channel[y_off[j]] = c_row[j] + add;
      }
    }
  });
}

// grad_input work is split into tasks of (group, channel chunk, run of whole images), each
// owning its slice of grad_input. Chunk sizes depend only on the shape, so the order of
// every sum, and with it the result, does not depend on the thread count.
struct GradInputSplit {
  int64_t channels;  // input channels per task
  int64_t images;    // images per task
};

GradInputSplit grad_input_split(const ConvGeometry& g) {
  const int64_t channels = std::clamp<int64_t>(kRowsPerTask / (g.R * g.S), 1, std::max<int64_t>(g.Cg, 1));
  const int64_t images = std::clamp<int64_t>(kColumnTile / std::max<int64_t>(g.pixels(), 1), 1, g.N);
  return {channels, images};
}

template <typename T>
void conv2d_grad_input_gemm(const at::Tensor& grad_output, const at::Tensor& weight,
                            at::Tensor& grad_input, const ConvGeometry& g) {
  const GemmTile t = gemm_tile<T>();
  const T* dy = grad_output.data_ptr<T>();
  T* dx = grad_input.data_ptr<T>();
  const Strides4 dys(grad_output), dxs(grad_input);
  const int64_t RS = g.R * g.S;
  const GradInputSplit split = grad_input_split(g);
  const int64_t chunks = ceil_div(g.Cg, split.channels);
  const int64_t image_runs = ceil_div(g.N, split.images);

  // W^T as a matrix: rows are im2col rows (c, r, s), the reduction runs over k.
  const std::vector<int64_t> w_rows = weight_tap_offsets(g, Strides4(weight));
  const std::vector<int64_t> w_cols = strided_offsets(g.K, weight.stride(0));
  const std::vector<int64_t> dy_rows = strided_offsets(g.K, dys.c);

  at::parallel_for(0, g.G * chunks * image_runs, 1, [&](int64_t begin, int64_t end) {
    const int64_t max_rows = split.channels * RS;
    std::vector<T> a_pack(round_up(max_rows, t.mr) * g.Kg);
    std::vector<T> b_pack(kReductionBlock * round_up(kColumnTile, t.nr));
    std::vector<T> col(max_rows * kColumnTile);
    std::vector<int64_t> dy_cols(kColumnTile);
    ColumnTile tile(kColumnTile);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t group = task / (chunks * image_runs);
      const int64_t c_begin = ((task / image_runs) % chunks) * split.channels;
      const int64_t n_begin = (task % image_runs) * split.images;
      const int64_t rows = std::min(split.channels, g.Cg - c_begin) * RS;
      const int64_t rows_padded = round_up(rows, t.mr);
      const int64_t q_end = std::min(g.N, n_begin + split.images) * g.pixels();

      const OffsetMatrix<T> wt{weight.data_ptr<T>() + group * g.Kg * weight.stride(0),
                               w_rows.data() + c_begin * RS, w_cols.data()};
      for (int64_t k0 = 0; k0 < g.Kg; k0 += kReductionBlock) {
        pack_a(wt, 0, rows, k0, std::min(kReductionBlock, g.Kg - k0), t.mr,
               a_pack.data() + k0 * rows_padded);
      }

      T* dx_chunk = dx + (group * g.Cg + c_begin) * dxs.c;
      for (int64_t q0 = n_begin * g.pixels(); q0 < q_end; q0 += kColumnTile) {
        tile.fill(g, q0, std::min(kColumnTile, q_end - q0), dxs.n);
        const int64_t cols = tile.count;
        tile.output_offsets(g, dys, dy_cols.data());
        const OffsetMatrix<T> dy_tile{dy + group * g.Kg * dys.c, dy_rows.data(), dy_cols.data()};

        std::fill(col.begin(), col.begin() + rows * cols, T(0));
        for (int64_t k0 = 0; k0 < g.Kg; k0 += kReductionBlock) {
          const int64_t kc = std::min(kReductionBlock, g.Kg - k0);
          pack_b(dy_tile, k0, kc, cols, t.nr, b_pack.data());
          gemm_packed(rows, cols, kc, a_pack.data() + k0 * rows_padded, b_pack.data(),
                      col.data(), cols, 1);
        }
        // col2im: scatter-add each im2col row back onto the input it was read from.
        for (int64_t row = 0; row < rows; ++row) {
          const KernelTap tap(row, g);
          T* dxc = dx_chunk + tap.c * dxs.c;
          const int64_t dh = tap.r * g.p.dilation_h, dw = tap.s * g.p.dilation_w;
          const T* col_row = col.data() + row * cols;
          for (int64_t j = 0; j < cols; ++j) {
            const int64_t ih = tile.ih0[j] + dh, iw = tile.iw0[j] + dw;
            if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) {
              dxc[tile.image_off[j] + ih * dxs.h + iw * dxs.w] += col_row[j];
            }
          }
        }
      }
    }
  });
}

template <typename T>
void conv2d_grad_weight_gemm(const at::Tensor& grad_output, const at::Tensor& input,
                             at::Tensor& grad_weight, const ConvGeometry& g) {
  const GemmTile t = gemm_tile<T>();
  const T* dy = grad_output.data_ptr<T>();
  const T* x = input.data_ptr<T>();
  T* dw = grad_weight.data_ptr<T>();  // contiguous: a K x CgRS row-major matrix
  const Strides4 dys(grad_output), xs(input);
  const int64_t red = g.reduction();
  const int64_t row_tasks = ceil_div(g.Kg, kWeightRowsPerTask);
  const int64_t col_tasks = ceil_div(red, kWeightColsPerTask);
  const std::vector<int64_t> dy_rows = strided_offsets(g.K, dys.c);

  // Each task owns a (rows x cols) tile of dW and reduces over all columns of the batch in
  // one fixed order.
  at::parallel_for(0, g.G * row_tasks * col_tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> a_pack(round_up(kWeightRowsPerTask, t.mr) * kReductionBlock);
    std::vector<T> b_pack(round_up(kWeightColsPerTask, t.nr) * kReductionBlock);
    std::vector<int64_t> dy_cols(kReductionBlock);
    ColumnTile tile(kReductionBlock);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t group = task / (row_tasks * col_tasks);
      const int64_t m0 = ((task / col_tasks) % row_tasks) * kWeightRowsPerTask;
      const int64_t k0 = (task % col_tasks) * kWeightColsPerTask;
      const int64_t rows = std::min(kWeightRowsPerTask, g.Kg - m0);
      const int64_t cols = std::min(kWeightColsPerTask, red - k0);
      T* dw_tile = dw + (group * g.Kg + m0) * red + k0;
      const OffsetMatrix<T> dy_group{dy + group * g.Kg * dys.c, dy_rows.data(), dy_cols.data()};
      const T* x_group = x + group * g.Cg * xs.c;
      for (int64_t q0 = 0; q0 < g.columns(); q0 += kReductionBlock) {
        tile.fill(g, q0, std::min(kReductionBlock, g.columns() - q0), xs.n);
        tile.output_offsets(g, dys, dy_cols.data());
        pack_a(dy_group, m0, rows, 0, tile.count, t.mr, a_pack.data());
        pack_im2col(x_group, xs, g, k0, cols, tile, true, t.nr, b_pack.data());
        gemm_packed(rows, cols, tile.count, a_pack.data(), b_pack.data(), dw_tile, red, 1);
      }
    }
  });
}

bool use_reference() { return kernel_version(OpFamily::conv2d) == 1; }

// ---------------------------------------------------------------------------------------
// Operators

at::Tensor conv2d_forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                              const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                              c10::IntArrayRef padding, c10::IntArrayRef dilation,
                              int64_t groups) {
  const auto params = Conv2dParams::from_lists("cnnops.conv2d", stride, padding, dilation, groups);
  const auto out_size = check_conv2d_forward(input, weight, bias, params);
  if (is_depthwise(input.size(1), groups) && !use_reference()) {
    return depthwise_forward_cpu(input, weight, bias, params);  // cpu/depthwise.cpp
  }
  at::Tensor output = at::empty(
      out_size, input.options().memory_format(conv_output_memory_format(input, weight)));
  if (output.numel() == 0) return output;
  const ConvGeometry g(input.sizes(), weight.sizes(), out_size[2], out_size[3], params);
  // The bias is tiny; a contiguous copy lets the kernels index it plainly.
  const at::Tensor bias_c = bias.has_value() ? bias->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "cnnops.conv2d", [&] {
    const scalar_t* b = bias_c.defined() ? bias_c.data_ptr<scalar_t>() : nullptr;
    if (use_reference()) {
      conv2d_forward_reference<scalar_t>(input, weight, b, output, g);
    } else {
      conv2d_forward_gemm<scalar_t>(input, weight, b, output, g);
    }
  });
  return output;
}

at::Tensor conv2d_grad_input_cpu(const at::Tensor& grad_output, const at::Tensor& weight,
                                 c10::IntArrayRef input_size, c10::IntArrayRef stride,
                                 c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                 int64_t groups) {
  const auto params =
      Conv2dParams::from_lists("cnnops.conv2d_grad_input", stride, padding, dilation, groups);
  check_conv2d_grad_input(grad_output, weight, input_size, params);
  if (is_depthwise(input_size[1], groups) && !use_reference()) {
    return depthwise_grad_input_cpu(grad_output, weight, input_size, params,
                                    conv_output_memory_format(grad_output, weight));
  }
  at::Tensor grad_input = at::zeros(
      input_size,
      grad_output.options().memory_format(conv_output_memory_format(grad_output, weight)));
  if (grad_input.numel() == 0 || grad_output.numel() == 0) return grad_input;
  const ConvGeometry g(input_size, weight.sizes(), grad_output.size(2), grad_output.size(3), params);
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnops.conv2d_grad_input", [&] {
    if (use_reference()) {
      conv2d_grad_input_reference<scalar_t>(grad_output, weight, grad_input, g);
    } else {
      conv2d_grad_input_gemm<scalar_t>(grad_output, weight, grad_input, g);
    }
  });
  return grad_input;
}

at::Tensor conv2d_grad_weight_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                  c10::IntArrayRef weight_size, c10::IntArrayRef stride,
                                  c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                  int64_t groups) {
  const auto params =
      Conv2dParams::from_lists("cnnops.conv2d_grad_weight", stride, padding, dilation, groups);
  check_conv2d_grad_weight(grad_output, input, weight_size, params);
  if (is_depthwise(input.size(1), groups) && !use_reference()) {
    return depthwise_grad_weight_cpu(grad_output, input, weight_size, params);
  }
  at::Tensor grad_weight = at::zeros(weight_size, grad_output.options());
  if (grad_weight.numel() == 0 || grad_output.numel() == 0) return grad_weight;
  const ConvGeometry g(input.sizes(), weight_size, grad_output.size(2), grad_output.size(3), params);
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnops.conv2d_grad_weight", [&] {
    if (use_reference()) {
      conv2d_grad_weight_reference<scalar_t>(grad_output, input, grad_weight, g);
    } else {
      conv2d_grad_weight_gemm<scalar_t>(grad_output, input, grad_weight, g);
    }
  });
  return grad_weight;
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnops, CPU, m) {
  m.impl("conv2d", &conv2d_forward_cpu);
  m.impl("conv2d_grad_input", &conv2d_grad_input_cpu);
  m.impl("conv2d_grad_weight", &conv2d_grad_weight_cpu);
}

}  // namespace cnnops::cpu
