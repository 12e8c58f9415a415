// CPU kernels of the conv2d family: forward, gradient of the input, gradient of the weight,
// and the inference-only conv2d_bias_relu (the forward with ReLU in its epilogue).
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
//            grad_input at stride 1 is itself such a convolution (of dY with the weight
//            transposed and flipped); at other strides it is one such convolution per
//            stride phase of the input (conv2d_grad_input_by_phases), or on small problems
//            X_col' = W^T * dY followed by col2im. grad_weight is dW = dY * X_col^T. Work is
//            split so that every output element is owned by one task, which reduces in a
//            fixed order: results do not depend on the thread count.
// version 3: Winograd F(2x2, 3x3) (cpu/conv2d_winograd.h) for 3x3 stride-1 convolutions:
//            the forward pass, grad_input, and grad_weight by the transposed algorithm
//            F(3x3, 2x2); other shapes run version 2.
// version 4: direct convolution, no packing of the input, by a micro-kernel that computes
//            MR output channels x NR columns of one output row (gemm.h, direct_row):
//            - short reductions (CgRS <= 32: a first layer of 1 to 3 channels) at unit width
//              stride, into an output with contiguous rows, read from a zero-padded copy of
//              the input; their forward pass on planes of up to 64x64 at stride 1 whose
//              input rows are as wide as the output's by a micro-kernel that computes MR
//              output channels x whole vectors of a plane's pixels swept flat, across its
//              rows, the column taps that fall off a row masked (gemm.h, direct_plane);
//            - thin convolutions (1 to 3 output channels per group, the grad_input of a
//              first layer) of any reduction, by a 3-row variant of the same micro-kernel;
//            - 1x1 convolutions at stride 1 without padding between tensors with contiguous
//              planes (NCHW), each plane read in place as one long row: the forward pass
//              and grad_input (version 0: planes of 512 pixels or more).
//            - grad_weight of the short reductions, from a grad_output with contiguous
//              rows (a channels-last one copied to planes first, or, in whole panels of
//              output channels at unit width stride, read in place pixel-major by
//              direct_grad_weight_pixels): each output channel's dY
//              rows against each tap's padded input rows, sums kept in vector lanes
//              (gemm.h, direct_grad_weight); likewise the grad_weight of those 1x1
//              convolutions, planes read in place (version 0: up to 256 x 512 channels on
//              AVX-512, 256 x 256 on AVX2, planes of 16x16 or more, pointwise_grad_weight).
//            - small planes at stride 1 (flat_direct_pays: SimpleCNN's 14x14 and 7x7), the
//              forward pass and grad_input, into an output of any strides: each
//              image's output swept as one flat run of pixels over the padded rows, MR
//              pixels broadcast from the input in place times NR output channels of W^T
//              (gemm.h, direct_pixels), or where that run is mostly padding (7x7) the
//              output pixels alone, MR at a time across images (gathered_pixels; on
//              AVX-512 14 at a time, whole_rows of one pixel), or on AVX-512 with rows of 14
//              or 7 pixels whole output rows at a time (whole_rows; 7x7 into NCHW outputs),
//              both of which write NCHW outputs straight from their registers
//              (whole_rows_planes); and
//              their grad_weight, MT taps broadcast from the
//              input times NR channels of dY copied pixel-major (direct_grad_weight_pixels).
//              The same at strides above 1 on layers with few channels (a network's first
//              layers: ResNet's 7x7 stem), swept over the input split into its stride phases
//              (PhasedInput).
//            Other shapes run version 2.
// version 5: tap by tap (tapwise_conv), for output planes of up to 16 pixels: per output
//            pixel, the sum over only the kernel taps that reach the input, each a GEMM of
//            the tap's weights [Kg x Cg] and one input pixel of the batch [Cg x N]: the
//            forward pass and grad_input at stride 1. Other shapes run version 2.
// version 0 (automatic, the default) runs version 4 on thin convolutions, version 5 where
//            it skips at least half the products over a batch of half a panel or more
//            (use_tapwise), version 4 on small planes at stride 1 and on 1x1 planes of 512
//            pixels or more, else version 3 where it applies and pays (winograd_pays: 16 or
//            more input channels; the forward pass and grad_input only on outputs larger
//            than 2x2, one_winograd_tile), else version 4 where it applies, else version 2.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common/conv2d_params.h"
#include "common/kernel_version.h"
#include "conv2d_backward.h"
#include "cpu/conv2d_pack.h"
#include "cpu/conv2d_winograd.h"
#include "cpu/depthwise.h"
#include "cpu/gemm.h"
#include "cpu/scratch.h"
#include "cpu/stream_store.h"
#include "cpu/transpose_avx2.h"

namespace cnnops::cpu {

namespace {

// Cache blocking of the implicit GEMM (in elements).
constexpr int64_t kReductionBlock = 256;    // KC: reduction length of one packed block
constexpr int64_t kColumnTile = 128;        // output pixels per forward / grad_input tile
constexpr int64_t kRowsPerTask = 256;       // grad_input: target im2col rows per task
constexpr int64_t kWeightRowsPerTask = 240; // grad_weight: output channels per task
constexpr int64_t kWeightColsPerTask = 256; // grad_weight: (c, r, s) columns per task

// ---------------------------------------------------------------------------------------
// version 1: reference kernels

template <typename T>
void conv2d_forward_reference(const at::Tensor& input, const at::Tensor& weight,
                              const T* bias, at::Tensor& output, const ConvGeometry& g,
                              bool relu) {
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
          if (relu && acc < T(0)) acc = T(0);  // NaN stays NaN, as in torch.relu
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

// The runs of consecutive offsets in off[0..count): run r is the columns [start[r],
// start[r + 1]), at off[start[r]], off[start[r]] + 1, ... (a tile's columns within one image
// of an NCHW output). Returns the number of runs; start must hold count + 1 values.
inline int64_t contiguous_runs(const int64_t* off, int64_t count, int64_t* start) {
  int64_t runs = 0;
  for (int64_t j = 0; j < count; ++j) {
    if (j == 0 || off[j] != off[j - 1] + 1) start[runs++] = j;
  }
  start[runs] = count;
  return runs;
}

// y[j] = c[j] + add, then ReLU if asked (max(NaN, 0) is NaN, as torch.relu), for a run of
// contiguous outputs, or at offsets off[j] of y.
template <typename T>
void store_columns(const T* c, T add, bool relu, T* y, int64_t count) {
  if (relu) {
    for (int64_t j = 0; j < count; ++j) y[j] = std::max(c[j] + add, T(0));
  } else {
    for (int64_t j = 0; j < count; ++j) y[j] = c[j] + add;
  }
}

template <typename T>
void store_columns(const T* c, T add, bool relu, T* y, const int64_t* off, int64_t count) {
  if (relu) {
    for (int64_t j = 0; j < count; ++j) y[off[j]] = std::max(c[j] + add, T(0));
  } else {
    for (int64_t j = 0; j < count; ++j) y[off[j]] = c[j] + add;
  }
}

// Output pixel u of the N x P x Q output pixels (image-major) as (n, p, q), then stepped a
// pixel at a time: the loops over a run of pixels take each pixel's offsets from it rather
// than dividing u out per pixel (two 64-bit divisions per pixel were a quarter of
// channels_last_gemm's task loop on VGG's channels-last first layer).
struct PixelCursor {
  int64_t n, p, q;

  PixelCursor(int64_t u, const ConvGeometry& g)
      : n(u / g.pixels()), p(u / g.Q % g.P), q(u % g.Q) {}

  void next(const ConvGeometry& g) {
    if (++q == g.Q) {
      q = 0;
      if (++p == g.P) {
        p = 0;
        ++n;
      }
    }
  }
};

// Forward work is cut into tasks of (group, block of output channels, column tile). The
// tiles, of at most kColumnTile columns, are as many as a multiple of the threads and cut
// at panel (NR-column) boundaries as evenly as can be: every core then gets as many panels
// to within one (MobileNet's 14x14 1x1 layers on a batch of 8: 49 panels, 13 tiles of 4
// would give one core 28 and the other 21). The channel blocks are for small problems,
// where column tiles alone would leave cores idle (the last layers of VGG on CIFAR have
// 128 columns in all); tasks run block-major so that a core's share of the tasks covers
// every tile. Each output element is computed by one task in the same order whatever the
// split, so the split may follow the thread count without changing a bit of the result.
struct ForwardSplit {
  int64_t tiles;       // column tiles
  int64_t row_block;   // output channels per block: a multiple of the micro-kernel's MR
  int64_t row_blocks;
  int64_t columns, panels, nr;

  // First column of tile q (q = tiles: the end).
  int64_t tile_begin(int64_t q) const { return std::min(columns, nr * (q * panels / tiles)); }
  int64_t tile_columns(int64_t q) const { return tile_begin(q + 1) - tile_begin(q); }
};

ForwardSplit forward_split(const ConvGeometry& g, const GemmTile& t) {
  const int64_t threads = at::get_num_threads(), want_tasks = 4 * threads;
  const int64_t panels = ceil_div(g.columns(), t.nr);
  const int64_t tiles =
      std::min(panels, round_up(ceil_div(panels, kColumnTile / t.nr), threads));
  // At least 4 micro-kernel rows per block, so that packing B stays cheap beside the GEMM.
  const int64_t max_blocks = std::max<int64_t>(1, g.Kg / (4 * t.mr));
  const int64_t blocks = std::clamp<int64_t>(ceil_div(want_tasks, g.G * tiles), 1, max_blocks);
  const int64_t row_block = round_up(ceil_div(g.Kg, blocks), t.mr);
  return {tiles, row_block, ceil_div(g.Kg, row_block), g.columns(), panels, t.nr};
}

// The implicit-GEMM convolution y = conv(x, w) + bias of geometry g, the weight given as
// an OffsetMatrix with rows k in [0, K) and columns the (c, r, s) taps of one group. Shared
// by the forward pass and by grad_input at stride 1, which is itself such a convolution.
template <typename T>
void implicit_gemm_conv(const T* x, const Strides4& xs, const OffsetMatrix<T>& w, const T* bias,
                        T* y, const Strides4& ys, const ConvGeometry& g, bool relu) {
  const GemmTile t = gemm_tile<T>();
  const int64_t red = g.reduction();
  const int64_t blocks = ceil_div(red, kReductionBlock);
  const int64_t rows_padded = round_up(g.Kg, t.mr);

  // The weight, packed once: for group g and reduction block b, the MR-row panels of
  // W[g*Kg : (g+1)*Kg, b*KC : b*KC + kc] start at g*rows_padded*red + b*KC*rows_padded.
  const Scratch<T> a_pack(kOperands, g.G * rows_padded * red);
  at::parallel_for(0, g.G * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t gb = begin; gb < end; ++gb) {
      const int64_t group = gb / blocks, k0 = (gb % blocks) * kReductionBlock;
      const int64_t kc = std::min(kReductionBlock, red - k0);
      pack_a(w, group * g.Kg, g.Kg, k0, kc, t.mr,
             a_pack.get() + group * rows_padded * red + k0 * rows_padded);
    }
  });

  const TapTable taps(g, xs);
  const ForwardSplit split = forward_split(g, t);
  const int64_t tiles = split.tiles, blocks_of_rows = split.row_blocks;
  const bool by_gather = prefer_gather(g, xs);
  // Reduction block k0 of a column tile's B: kc x round_up(columns, NR), packed by `pack`
  // (whose tile and gather it fills) into dst.
  auto pack = [&](int64_t group, int64_t k0, ColumnTile& tile, TapGather& gather, T* dst) {
    const int64_t kc = std::min(kReductionBlock, red - k0);
    const T* x_group = x + group * g.Cg * xs.c;
    if (by_gather) {
      pack_im2col_by_gather(x_group, taps, gather, k0, kc, tile.count, t.nr, dst);
    } else {
      pack_im2col(x_group, xs, g, taps, k0, kc, tile, false, t.nr, dst);
    }
  };
  auto fill_tile = [&](int64_t q, ColumnTile& tile, TapGather& gather) {
    tile.fill(g, split.tile_begin(q), split.tile_columns(q), xs);
    if (gather.capacity > 0) gather.fill(g, xs, tile);
  };
  // Where 4 or more blocks of rows share a column tile (the last layers of VGG on CIFAR: one
  // tile of 128 columns, 8 blocks), each tile's B is packed once, up front, within the
  // workspace bound: block k0 of tile (group, q) at ((group * tiles + q) * red + k0) *
  // cols_padded. With fewer blocks, packing each block just before its GEMM, while it is
  // in cache, measured faster (MobileNet's 7x7 and 14x14 1x1 layers, 2 blocks: 5-10%).
  const int64_t cols_padded = round_up(kColumnTile, t.nr);
  const int64_t shared_size = g.G * tiles * red * cols_padded;
  const bool share_b =
      blocks_of_rows >= 4 &&
      shared_size * int64_t{sizeof(T)} <= g.max_workspace_bytes(sizeof(T));
  const Scratch<T> shared_b(kInput, share_b ? shared_size : 0);
  if (share_b) {
    const int64_t blocks_of_k = ceil_div(red, kReductionBlock);
    at::parallel_for(0, g.G * tiles * blocks_of_k, 1, [&](int64_t begin, int64_t end) {
      ColumnTile tile(kColumnTile);
      TapGather gather(g, by_gather ? kColumnTile : 0);
      for (int64_t unit = begin; unit < end; ++unit) {
        const int64_t gt = unit / blocks_of_k, k0 = (unit % blocks_of_k) * kReductionBlock;
        fill_tile(gt % tiles, tile, gather);
        pack(gt / tiles, k0, tile, gather, shared_b.get() + (gt * red + k0) * cols_padded);
      }
    });
  }
  at::parallel_for(0, g.G * blocks_of_rows * tiles, 1, [&](int64_t begin, int64_t end) {
    const Scratch<T> b_pack(kPanelB, share_b ? 0 : kReductionBlock * cols_padded);
    const Scratch<T> c_tile(kTile, split.row_block * kColumnTile);
    std::vector<int64_t> y_off(kColumnTile), run_start(kColumnTile + 1);
    ColumnTile tile(kColumnTile);
    TapGather gather(g, by_gather && !share_b ? kColumnTile : 0);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t group = task / (blocks_of_rows * tiles);
      const int64_t m0 = ((task / tiles) % blocks_of_rows) * split.row_block;
      const int64_t q = task % tiles;
      const int64_t rows = std::min(split.row_block, g.Kg - m0);
      fill_tile(q, tile, gather);  // (the gather only when packing here)
      const int64_t cols = tile.count;

      std::fill(c_tile.get(), c_tile.get() + rows * cols, T(0));
      const T* a_group = a_pack.get() + group * rows_padded * red;
      for (int64_t k0 = 0; k0 < red; k0 += kReductionBlock) {
        const int64_t kc = std::min(kReductionBlock, red - k0);
        const T* b = shared_b.get() + ((group * tiles + q) * red + k0) * cols_padded;
        if (!share_b) {
          pack(group, k0, tile, gather, b_pack.get());
          b = b_pack.get();
        }
        // Rows [m0, m0 + rows) of the block: its panels from panel m0 / MR on.
        gemm_packed(rows, cols, kc, a_group + k0 * rows_padded + m0 * kc, b, c_tile.get(), cols,
                    1);
      }
      // Epilogue: bias and ReLU, then scatter the tile's columns to their images.
      // A tile of an NCHW output is a few runs of pixels, one per image it spans (MobileNet's
      // 7x7 layers: 3 or 4), each stored by a unit-stride loop that vectorises; a
      // channels-last output's columns lie a row of channels apart, one by one.
      tile.output_offsets(g, ys, y_off.data());
      const int64_t runs = contiguous_runs(y_off.data(), cols, run_start.data());
      const bool by_runs = runs * 8 <= cols;
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t k = group * g.Kg + m0 + i;
        const T add = bias ? bias[k] : T(0);
        T* y_channel = y + k * ys.c;
        const T* c_row = c_tile.get() + i * cols;
        if (by_runs) {
          for (int64_t r = 0; r < runs; ++r) {
            const int64_t j0 = run_start[r];
            store_columns(c_row + j0, add, relu, y_channel + y_off[j0], run_start[r + 1] - j0);
          }
        } else {
          store_columns(c_row, add, relu, y_channel, y_off.data(), cols);
        }
      }
    }
  });
}

bool use_reference() { return kernel_version(OpFamily::conv2d) == 1; }

// Whether the fast versions run Winograd (cpu/conv2d_winograd.h) on a problem of geometry g
// and element type T.
template <typename T>
bool use_winograd(const ConvGeometry& g) {
  const int version = kernel_version(OpFamily::conv2d);
  return version == 3 ? winograd_applies(g) : version == 0 && winograd_pays(g, sizeof(T));
}

constexpr int64_t kDirectMaxTaps = 32;  // version 4: the longest reduction CgRS

bool direct_applies(const ConvGeometry& g, const Strides4& ys) {
  return g.reduction() <= kDirectMaxTaps && g.p.stride_w == 1 && ys.w == 1;
}

// A depthwise-shaped layer with many output channels per input channel (SimpleCNN's first
// layer: 1 -> 32) runs faster on the direct kernel, which shares each input load among MR
// output channels, than on the depthwise kernels, which compute one channel at a time. Its
// grad_weight at 3x3, stride 1, padding 1 is the exception (depthwise_grad_weight_by_planes):
// the depthwise pass that conv2d_backward fuses for such layers, two channels per input load.
bool direct_over_depthwise(c10::IntArrayRef weight_size, const Conv2dParams& p,
                           c10::MemoryFormat format) {
  const int version = kernel_version(OpFamily::conv2d);
  return (version == 0 || version == 4) && weight_size[0] / p.groups >= 8 &&
         weight_size[2] * weight_size[3] <= kDirectMaxTaps && p.stride_w == 1 &&
         format == c10::MemoryFormat::Contiguous;
}

// Whether the fast versions run a direct kernel (version 4) on geometry g, with the output
// (for grad_weight: grad_output) of strides ys: where it applies, unless version 0 prefers
// Winograd.
template <typename T>
bool use_direct(const ConvGeometry& g, const Strides4& ys) {
  const int version = kernel_version(OpFamily::conv2d);
  return (version == 4 || (version == 0 && !winograd_pays(g, sizeof(T)))) &&
         direct_applies(g, ys);
}

// The weights as the micro-kernel's A panels over the whole reduction, one set per group
// (pack_a's layout: [group][block of MR output channels][tap][MR], zero past Kg): what the
// direct kernels stream.
template <typename T>
std::vector<T> pack_weight_panels(const OffsetMatrix<T>& w, const ConvGeometry& g, int64_t mr) {
  const int64_t per_group = round_up(g.Kg, mr) * g.reduction();
  std::vector<T> packed(g.G * per_group);
  for (int64_t group = 0; group < g.G; ++group) {
    pack_a(w, group * g.Kg, g.Kg, 0, g.reduction(), mr, packed.data() + group * per_group);
  }
  return packed;
}

// Rows and columns of a zero-padded copy of the input that starts at (-pad_top, -pad_left)
// and reaches as far as any tap does.
int64_t padded_rows(const ConvGeometry& g) {
  return std::max(g.H + g.p.pad_top, (g.P - 1) * g.p.stride_h + (g.R - 1) * g.p.dilation_h + 1);
}

int64_t padded_cols(const ConvGeometry& g) {
  return std::max(g.W + g.p.pad_left, (g.Q - 1) * g.p.stride_w + (g.S - 1) * g.p.dilation_w + 1);
}

// The width of the input's phases (PhasedInput), the flat kernels' rows at strides above 1.
int64_t phased_cols(const ConvGeometry& g) { return ceil_div(padded_cols(g), g.p.stride_w); }

// The zero-padded input the direct kernels read: plane (n, c) holds rows [-pad_top, ..) x
// columns [-pad_left, ..) of x, as far as any tap reaches, then `slack` zeros past the last
// plane (for loads that run past a row's end).
template <typename T>
struct PaddedInput {
  int64_t hp, wp, plane;
  Scratch<T> data;
  int64_t channel = plane;  // elements per channel (PhasedInput's interface)

  // cols: the width of its rows, padded_cols(g) unless given (flat_cols).
  PaddedInput(const T* x, const Strides4& xs, const ConvGeometry& g, int64_t slack,
              int64_t cols = 0)
      : hp(padded_rows(g)),
        wp(cols > 0 ? cols : padded_cols(g)),
        plane(hp * wp),
        data(kOperands, g.N * g.C * plane + slack) {
    pad_planes(x, xs, g, hp, wp, data.get());
    std::fill_n(data.get() + g.N * g.C * plane, slack, T(0));
  }

  // Offset of each (c, r, s) tap of one group from its first plane's (0, 0).
  std::vector<int64_t> tap_offsets(const ConvGeometry& g) const {
    std::vector<int64_t> off(g.reduction());
    for (int64_t tap = 0; tap < g.reduction(); ++tap) {
      const KernelTap kt(tap, g);
      off[tap] = kt.c * plane + kt.r * g.p.dilation_h * wp + kt.s * g.p.dilation_w;
    }
    return off;
  }
};

// The zero-padded input (as PaddedInput's) split into its stride phases, for the flat
// kernels at strides above 1: per (n, c), sh x sw planes of hq x wq, plane (a, b) holding
// the padded input's rows a, a + sh, ... and columns b, b + sw, ...; then `slack` zeros.
// Tap (r, s) of output pixel (p, q) reads padded row p * sh + r * dilation_h, which is row
// p + (r * dilation_h) / sh of phase (r * dilation_h) % sh: at a fixed offset from output
// pixel to output pixel, as at stride 1, so the flat sweep (flat pixel p * wq + q) applies.
template <typename T>
struct PhasedInput {
  int64_t sh, sw, hq, wq, plane, channel;
  Scratch<T> data;

  PhasedInput(const T* x, const Strides4& xs, const ConvGeometry& g, int64_t slack)
      : sh(g.p.stride_h),
        sw(g.p.stride_w),
        hq(ceil_div(padded_rows(g), sh)),
        wq(phased_cols(g)),
        plane(hq * wq),
        channel(sh * sw * plane),
        data(kOperands, g.N * g.C * channel + slack) {
    T* dst = data.get();
    // Columns [j0[b], j1[b]) of column phase b read the input's columns, j * sw + b -
    // pad_left inside [0, W); the others are padding.
    std::vector<int64_t> j0(sw), j1(sw);
    for (int64_t b = 0; b < sw; ++b) {
      j0[b] = std::min(wq, ceil_div(std::max<int64_t>(g.p.pad_left - b, 0), sw));
      j1[b] = std::clamp<int64_t>(ceil_div(g.W + g.p.pad_left - b, sw), j0[b], wq);
    }
    const auto first_column = [&](int64_t b) { return j0[b] * sw + b - g.p.pad_left; };
    if (xs.c == 1 && g.C > 1) {
      // Channels innermost (channels_last): a padded row at a time, its pixels' channels
      // transposed into their planes (channels_to_planes), the input read along memory.
      at::parallel_for(0, g.N * sh * hq, 1, [&](int64_t begin, int64_t end) {
        for (int64_t nr = begin; nr < end; ++nr) {
          const int64_t n = nr / (sh * hq), row = nr % (sh * hq), ih = row - g.p.pad_top;
          T* d = dst + n * g.C * channel + (row % sh) * sw * plane + (row / sh) * wq;
          const bool inside = ih >= 0 && ih < g.H;
          for (int64_t b = 0; b < sw; ++b) {
            T* to = d + b * plane;
            const int64_t lo = inside ? j0[b] : wq, hi = inside ? j1[b] : wq;
            for (int64_t c = 0; c < g.C; ++c) {
              zero_few(to + c * channel, lo);
              zero_few(to + c * channel + hi, wq - hi);
            }
            if (hi > lo) {
              channels_to_planes(x + n * xs.n + ih * xs.h + first_column(b) * xs.w,
                                 sw * xs.w, g.C, hi - lo, to + lo, channel);
            }
          }
        }
      });
      std::fill_n(dst + g.N * g.C * channel, slack, T(0));
      return;
    }
    at::parallel_for(0, g.N * g.C, 1, [&](int64_t begin, int64_t end) {
      for (int64_t nc = begin; nc < end; ++nc) {
        const T* src = x + (nc / g.C) * xs.n + (nc % g.C) * xs.c;
        T* d = dst + nc * channel;
        for (int64_t a = 0; a < sh; ++a) {
          for (int64_t b = 0; b < sw; ++b) {
            for (int64_t i = 0; i < hq; ++i) {
              const int64_t ih = i * sh + a - g.p.pad_top;
              T* row = d + (a * sw + b) * plane + i * wq;
              if (ih < 0 || ih >= g.H) {
                std::fill_n(row, wq, T(0));
                continue;
              }
              zero_few(row, j0[b]);
              if (j1[b] > j0[b]) {
                const T* from = src + ih * xs.h + first_column(b) * xs.w;
                for (int64_t j = j0[b]; j < j1[b]; ++j) row[j] = from[(j - j0[b]) * sw * xs.w];
              }
              zero_few(row + j1[b], wq - j1[b]);
            }
          }
        }
      }
    });
    std::fill_n(dst + g.N * g.C * channel, slack, T(0));
  }

  // Offset of each (c, r, s) tap of one group from its first channel's output pixel (0, 0).
  std::vector<int64_t> tap_offsets(const ConvGeometry& g) const {
    std::vector<int64_t> off(g.reduction());
    for (int64_t tap = 0; tap < g.reduction(); ++tap) {
      const KernelTap kt(tap, g);
      const int64_t dh = kt.r * g.p.dilation_h, dw = kt.s * g.p.dilation_w;
      off[tap] = kt.c * channel + ((dh % sh) * sw + dw % sw) * plane + (dh / sh) * wq + dw / sw;
    }
    return off;
  }
};

// The "flat" direct convolution sweeps an image's whole output as one run of pixels
// i = p * wp + q over the padded input's rows of wp columns: at stride 1, flat pixel i + 1
// reads the input element after flat pixel i's at every tap, so one run of loads serves
// every output row, computing wp - Q columns per row that are dropped. A row's right padding
// is the next row's left padding wherever it is no wider (flat_cols): a 3x3 convolution
// with padding 1 drops one column per row. The flat sweep pays on small planes (SimpleCNN's
// 14x14 and 7x7), where one output row would fill a fraction of the micro-kernel, Winograd's
// 2x2 tiles overhang the plane and its transforms cost as much as its GEMM: where an
// image's padded input is small (kFlatMaxImageBytes), at least kFlatMinUsed of the pixels
// computed are kept, and the channels are few. Winograd's transforms cost in proportion to
// Cg + Kg per tile, its GEMMs to Cg * Kg, at 2.25x fewer multiplications than the direct
// sum: the flat sweep is taken while Cg * Kg < kFlatChannelRatio * (Cg + Kg) (measured on
// 7x7 and 8x8 planes: 32 -> 64 and 64 -> 64 channels ran 1.4x faster than Winograd, 64 ->
// 256 and 128 -> 128 15-25% slower). The output may have any strides (channels_last). The
// padded copy of the input, and grad_weight's pixel-major copy of dY (its dropped pixels
// and a whole panel of channels included), must stay within the workspace bound, the
// larger of 64 MiB and the input's size.
//
// At strides above 1 the flat kernels sweep the input's phases (PhasedInput), at stride 1
// within each, on planes of any size: there is no Winograd to compete with, and the
// implicit GEMM packs the short reductions of a first layer at a cost out of proportion to
// their products. Two threads, Zen 4 VM, ms, implicit GEMM -> flat over phases, forward /
// grad_weight: ResNet's stem 8x3x224x224 -> 64, 7x7 s2, 26-30 -> 18-23 / 36 -> 17-19;
// MobileNet's 8x3x224x224 -> 32, 3x3 s2, 5.5-5.7 -> 3.7-4.1 / 8.2-8.4 -> 5.0-5.6; 11x11 s4
// -> 64 13.6 -> 8.7 / 17.5 -> 9.1-9.6; 8x16x112x112 -> 32, 3x3 s2, 3.4-3.7 -> 3.0-3.1 /
// 6.0-6.3 -> 3.1-3.4; 8x32x112x112 -> 64 level / 11.3-11.7 -> 9.7-10. The grad_weight
// also pays on somewhat wider layers, which it takes at a ratio of its own (min of 5
// alternations, ms): 8x64x56x56 -> 128 12.4 -> 8.0, 8x64x112x112 -> 128 43.5 -> 29.3, where
// the forward measured level or slower (35.6 -> 33.9 min, but 3 of 5 runs above 43 ms).
// Wider layers stay on the GEMM: 8x128x28x28 -> 256 measured level to 1.3x slower flat, the
// flat grad_weight took 8x256x14x14 -> 512 from 10 to 52 ms, and 1x1 kernels (one phase read
// of sh x sw copied) ran 1.4-1.8x slower.
constexpr int64_t kFlatMaxImageBytes = 64 << 10;
constexpr int64_t kFlatChunkPixels = 256;  // flat_conv's tile: about 16 KiB of floats
constexpr double kFlatMinUsed = 0.75;
constexpr int64_t kFlatChannelRatio = 40;
constexpr int64_t kFlatStridedGradWeightRatio = 64;  // takes 64 -> 128, not 128 -> 256

int64_t flat_cols(const ConvGeometry& g) {
  // Zeros an output row reads past its input row's last element.
  const int64_t right = (g.Q - 1) + (g.S - 1) * g.p.dilation_w + 1 - (g.W + g.p.pad_left);
  return right <= g.p.pad_left ? g.W + g.p.pad_left : padded_cols(g);
}

// `strided_ratio`: the channel rule's ratio at strides above 1.
template <typename T>
bool flat_direct_pays(const ConvGeometry& g, int64_t strided_ratio) {
  const bool strided = g.p.stride_h != 1 || g.p.stride_w != 1;
  if (g.Kg <= 3 || (strided && g.R * g.S == 1)) return false;
  const int64_t ratio = strided ? strided_ratio : kFlatChannelRatio;
  if (g.Cg * g.Kg >= ratio * (g.Cg + g.Kg)) return false;
  const int64_t element = sizeof(T);
  const int64_t pitch = strided ? phased_cols(g) : flat_cols(g);
  const int64_t flat = (g.P - 1) * pitch + g.Q;
  const int64_t rows = strided ? g.p.stride_h * g.p.stride_w *
                                     ceil_div(padded_rows(g), g.p.stride_h)
                               : padded_rows(g);
  const int64_t image_bytes = g.Cg * rows * pitch * element;
  const int64_t computed = round_up(flat, gemm_tile<T>().mr);
  const int64_t bound = g.max_workspace_bytes(element);
  const int64_t dy_copy = g.N * g.G * round_up(g.Kg, gemm_tile<T>().nr) * flat * element;
  return (strided || image_bytes <= kFlatMaxImageBytes) &&
         static_cast<double>(g.P * g.Q) >= kFlatMinUsed * static_cast<double>(computed) &&
         g.G * image_bytes * g.N <= bound && dy_copy <= bound;
}

// Whether the fast versions run the flat direct kernels on geometry g (version 0 or 4).
template <typename T>
bool use_flat_direct(const ConvGeometry& g, int64_t strided_ratio = kFlatChannelRatio) {
  const int version = kernel_version(OpFamily::conv2d);
  return (version == 0 || version == 4) && flat_direct_pays<T>(g, strided_ratio);
}

// The direct convolution: tasks of (image, group, block of output channels, run of output
// rows), each row one call of the micro-kernel. `thin` takes the 3-row kernel
// (direct_row_thin) for problems of 1 to 3 output channels per group. Every output element
// is computed by one call, whatever the split.
template <typename T>
void direct_conv(const T* x, const Strides4& xs, const OffsetMatrix<T>& w, const T* bias, T* y,
                 const Strides4& ys, const ConvGeometry& g, bool relu, bool thin) {
  const GemmTile t = thin ? direct_thin_tile<T>() : gemm_tile<T>();
  const PaddedInput<T> xp(x, xs, g, t.nr);
  const int64_t taps = g.reduction(), blocks = ceil_div(g.Kg, t.mr);
  const std::vector<T> w_pack = pack_weight_panels(w, g, t.mr);
  const std::vector<int64_t> tap_off = xp.tap_offsets(g);
  // Runs of rows when images, groups and channel blocks alone are too few to share out.
  const int64_t runs = std::clamp<int64_t>(
      ceil_div(4 * at::get_num_threads(), g.N * g.G * blocks), 1, g.P);
  const int64_t run_rows = ceil_div(g.P, runs);

  at::parallel_for(0, g.N * g.G * blocks * runs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t run = task % runs, nb = task / runs;
      const int64_t n = nb / (g.G * blocks), group = (nb / blocks) % g.G, block = nb % blocks;
      const int64_t k0 = group * g.Kg + block * t.mr;
      const int m_valid = static_cast<int>(std::min(t.mr, (group + 1) * g.Kg - k0));
      const T* w_block = w_pack.data() + (group * blocks + block) * taps * t.mr;
      const T* x_image = xp.data.get() + (n * g.C + group * g.Cg) * xp.plane;
      const T* b = bias ? bias + k0 : nullptr;
      for (int64_t oh = run * run_rows; oh < std::min(g.P, (run + 1) * run_rows); ++oh) {
        const T* x_row = x_image + oh * g.p.stride_h * xp.wp;
        T* y_row = y + n * ys.n + k0 * ys.c + oh * ys.h;
        if (thin) {
          direct_row_thin(taps, tap_off.data(), x_row, w_block, g.Q, y_row, ys.c, m_valid, b,
                          relu);
        } else {
          direct_row(taps, tap_off.data(), x_row, w_block, g.Q, y_row, ys.c, m_valid, b, relu);
        }
      }
    }
  });
}

// The planar direct convolution (gemm.h, direct_plane): direct_conv's short reductions on
// contiguous output planes at stride 1 whose input rows are as wide as the output's (padding
// of (S - 1) * dilation_w in all, as a "same" convolution has), each plane swept flat, whole
// vectors of pixels across its rows, MR = 8 output channels at a time (4 on AVX2). Where rows
// do not fill direct_row's blocks, or output channels its 12 rows, it wastes less: SimpleCNN's
// conv1 (64x1x28x28 -> 32) filled 28 of 32 columns and 32 of 36 rows, and ran 1.2x (AVX-512)
// to 1.3x (AVX2) as fast planar; 32x3x32x32 -> 64 1.1x. It takes planes of up to 64x64
// (kPlanarMaxPixels): on 224x224 (1x3x224x224 -> 64) it ran 8% slower than direct_row, its
// column masks, one per plane pixel and column tap, no longer in the caches.
constexpr int64_t kPlanarMaxPixels = 64 * 64;

bool planar_direct_applies(const ConvGeometry& g, const Strides4& ys) {
  return g.reduction() <= kDirectMaxTaps && g.p.stride_h == 1 && g.p.stride_w == 1 &&
         g.W == g.Q && ys.w == 1 && ys.h == g.Q;
}

// Its copy of the input, padded with zero rows, stays within the workspace bound.
template <typename T>
bool planar_direct_pays(const ConvGeometry& g, const Strides4& ys) {
  const int64_t copy = g.N * g.C * padded_rows(g) * g.W * int64_t{sizeof(T)};
  return planar_direct_applies(g, ys) && g.pixels() <= kPlanarMaxPixels &&
         copy <= g.max_workspace_bytes(sizeof(T));
}

template <typename T>
void planar_direct_conv(const T* x, const Strides4& xs, const OffsetMatrix<T>& w, const T* bias,
                        T* y, const Strides4& ys, const ConvGeometry& g, bool relu) {
  const GemmTile t = direct_plane_tile<T>();
  const int64_t pixels = g.pixels(), taps = g.reduction(), blocks = ceil_div(g.Kg, t.mr);
  // The input's planes padded with zero rows only, hp rows of W, one after another from
  // `front` on: tap (c, r, s) of output pixel i reads front + c * plane + r * dilation_h * W +
  // s * dilation_w - pad_left + i; a column tap off its row reads past the plane's first or
  // last element, into the zeros around the planes (or a neighbouring plane), and is masked.
  ConvGeometry rows_only = g;
  rows_only.p.pad_left = 0;
  const int64_t hp = padded_rows(g), plane = hp * g.W, front = g.p.pad_left;
  const int64_t back = (g.S - 1) * g.p.dilation_w + t.nr;
  Scratch<T> xp(kOperands, front + g.N * g.C * plane + back);
  std::fill_n(xp.get(), front, T(0));
  pad_planes(x, xs, rows_only, hp, g.W, xp.get() + front);
  std::fill_n(xp.get() + front + g.N * g.C * plane, back, T(0));

  // Per column tap s whose column shift moves some pixels off their row: a mask over the
  // plane's pixels (and the .nr past them the kernel may read), every bit set where the
  // pixel's column q + shift lies inside the row.
  const int64_t mask_len = round_up(pixels, t.nr) + t.nr;
  T ones;
  std::memset(&ones, 0xff, sizeof(T));
  std::vector<T> masks;
  std::vector<int64_t> column_mask(g.S, -1);
  for (int64_t s = 0; s < g.S; ++s) {
    const int64_t shift = s * g.p.dilation_w - g.p.pad_left;
    if (shift == 0) continue;
    column_mask[s] = static_cast<int64_t>(masks.size());
    masks.resize(masks.size() + mask_len, T(0));
    // columns [first, last) of every row are inside
    const int64_t first = std::clamp<int64_t>(-shift, 0, g.Q);
    const int64_t last = std::clamp<int64_t>(g.W - shift, first, g.Q);
    T* m = masks.data() + column_mask[s];
    for (int64_t row = 0; row < mask_len; row += g.Q) {
      std::fill(m + std::min(row + first, mask_len), m + std::min(row + last, mask_len), ones);
    }
  }
  std::vector<int64_t> tap_off(taps), tap_mask(taps);
  for (int64_t tap = 0; tap < taps; ++tap) {
    const KernelTap kt(tap, g);
    tap_off[tap] = kt.c * plane + kt.r * g.p.dilation_h * g.W + kt.s * g.p.dilation_w -
                   g.p.pad_left;
    tap_mask[tap] = column_mask[kt.s];
  }
  const std::vector<T> w_pack = pack_weight_panels(w, g, t.mr);
  // Runs of pixels, whole blocks of .nr, when images, groups and channel blocks alone are
  // too few to share out.
  const int64_t runs = std::clamp<int64_t>(ceil_div(4 * at::get_num_threads(), g.N * g.G * blocks),
                                           1, ceil_div(pixels, t.nr));
  const int64_t run_pixels = round_up(ceil_div(pixels, runs), t.nr);

  at::parallel_for(0, g.N * g.G * blocks * runs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t run = task % runs, nb = task / runs;
      const int64_t n = nb / (g.G * blocks), group = (nb / blocks) % g.G, block = nb % blocks;
      const int64_t q0 = run * run_pixels, count = std::min(pixels - q0, run_pixels);
      if (count <= 0) continue;
      const int64_t k0 = group * g.Kg + block * t.mr;
      const int m_valid = static_cast<int>(std::min(t.mr, (group + 1) * g.Kg - k0));
      const T* w_block = w_pack.data() + (group * blocks + block) * taps * t.mr;
      const T* x_image = xp.get() + front + (n * g.C + group * g.Cg) * plane;
      direct_plane(taps, tap_off.data(), tap_mask.data(), masks.data() + q0, x_image + q0,
                   w_block, count, y + n * ys.n + k0 * ys.c + q0, ys.c, m_valid,
                   bias ? bias + k0 : nullptr, relu);
    }
  });
}

// The flat direct convolution (flat_direct_pays). W^T is packed once, as B panels over the
// whole reduction, and the output computed into tiles of pixels x NR output channels, each
// written out with bias and ReLU, in one of two ways:
//  - swept (flat_conv_swept): tasks of (image, group, panel of NR output channels), each
//    sweeping the image's flat run of padded rows MR pixels at a time with direct_pixels,
//    the input read at consecutive offsets; it computes the dropped columns between rows
//    too, and a partial last block;
//  - gathered (flat_conv_gathered): tasks of (group, chunk of output pixels, panel), the
//    chunk's pixels running across images, MR at a time through gathered_pixels (each
//    pixel's taps at its own offset): only the output pixels are computed. It takes the
//    planes where the sweep keeps less than kFlatGatheredBelow of what it computes
//    (SimpleCNN's 64x64x7x7 -> 64: 60 pixels per image computed for 49; alternating builds,
//    4 runs, forward 1.15-1.27 -> 0.97-1.08 ms, grad_input alike); where the sweep wastes
//    little, its MR pointers cost more than the waste (MobileNet's 8x3x224x224 -> 32 at
//    stride 2: 1.9-2.1 -> 2.5-2.8 ms gathered; 64x32x14x14 -> 64, 91% kept: level).
constexpr double kFlatGatheredBelow = 0.85;

// Writes a run of `length` pixels of one output row from a flat kernel's tile (pixel i's NR
// channels at tile + i * nr) to y (pixel i's channel j at y + i * y_w + j * y_c): channels
// [0, kept), plus bias[j], then ReLU if asked. (The swept kernel's rows through
// store_flat_pixels, an offset loaded per pixel, made MobileNet's 8x3x224x224 -> 32 stride-2
// forward 1.3x slower: 1.8-1.9 -> 2.4-2.7 ms.)
template <typename T>
void store_flat_run(const T* tile, int64_t nr, int64_t length, int64_t kept, const T* bias,
                    bool relu, T* y, int64_t y_w, int64_t y_c) {
  if (y_c == 1) {  // channels-last: pixel by pixel, channels contiguous like the tile's
    for (int64_t i = 0; i < length; ++i) {
      store_biased_run(tile + i * nr, bias, relu, y + i * y_w, kept, false);
    }
    return;
  }
#ifdef CNNOPS_X86_INTRINSICS
  if constexpr (std::is_same_v<T, float>) {
    if (y_w == 1 && nr % 8 == 0 && avx2_available()) {
      store_planar_avx2(tile, nr, length, kept, bias, relu, y, y_c);
      return;
    }
  }
#endif
  for (int64_t j = 0; j < kept; ++j) {  // planes: channel by channel
    const T add = bias ? bias[j] : T(0);
    const T* c = tile + j;
    T* y_row = y + j * y_c;
    for (int64_t i = 0; i < length; ++i) {
      const T v = c[i * nr] + add;
      y_row[i * y_w] = relu ? std::max(v, T(0)) : v;
    }
  }
}

// The same for `count` pixels anywhere in y (pixel i at y + y_off[i]): the gathered flat
// convolution's tile, whose 7-pixel runs along 7x7 outputs made store_flat_run's loops
// too short (SimpleCNN's 64x64x7x7 -> 64 forward lost most of the gathered kernel's gain).
template <typename T>
void store_flat_pixels(const T* tile, int64_t nr, const int64_t* y_off, int64_t count,
                       int64_t kept, const T* bias, bool relu, T* y, int64_t y_c) {
  if (y_c == 1) {
    for (int64_t i = 0; i < count; ++i) {
      store_biased_run(tile + i * nr, bias, relu, y + y_off[i], kept, false);
    }
    return;
  }
  for (int64_t j = 0; j < kept; ++j) {
    const T add = bias ? bias[j] : T(0);
    const T* c = tile + j;
    T* y_channel = y + j * y_c;
    for (int64_t i = 0; i < count; ++i) {
      const T v = c[i * nr] + add;
      y_channel[y_off[i]] = relu ? std::max(v, T(0)) : v;
    }
  }
}

// What the flat kernels read besides the input: W^T of every group as B panels of NR
// columns over the whole reduction (group g's panel p at b_pack + (g * panels + p) * CgRS *
// NR, G * CgRS * round_up(Kg, NR) values in all), and the taps' offsets into the padded (or
// phased) input.
template <typename T>
struct FlatWeights {
  GemmTile t;
  int64_t taps, panels;
  std::vector<int64_t> tap_off;
  Scratch<T> b_pack;

  template <typename Input>
  FlatWeights(const Input& xp, const OffsetMatrix<T>& w, const ConvGeometry& g)
      : t(gemm_tile<T>()),
        taps(g.reduction()),
        panels(ceil_div(g.Kg, t.nr)),
        tap_off(xp.tap_offsets(g)),
        b_pack(kInput, g.G * taps * panels * t.nr) {
    at::parallel_for(0, g.G, 1, [&](int64_t begin, int64_t end) {
      for (int64_t group = begin; group < end; ++group) {
        const OffsetMatrix<T> wt{w.base, w.col_off, w.row_off + group * g.Kg};
        pack_b(wt, 0, taps, g.Kg, t.nr, b_pack.get() + group * taps * panels * t.nr);
      }
    });
  }

  const T* panel(int64_t group, int64_t p) const {
    return b_pack.get() + (group * panels + p) * taps * t.nr;
  }
};

template <typename T, typename Input>
void flat_conv_swept(const Input& xp, int64_t row_pitch, const OffsetMatrix<T>& w,
                     const T* bias, T* y, const Strides4& ys, const ConvGeometry& g, bool relu) {
  const FlatWeights<T> fw(xp, w, g);
  const GemmTile t = fw.t;
  const int64_t taps = fw.taps, panels = fw.panels;
  // The sweep goes a chunk of output rows at a time, so that the tile of the chunk's pixels
  // is still in L1 when they are written out (the whole plane of a 112x112 output, 800 KB,
  // was written out from L2: a third of MobileNet's first layer's forward time).
  const int64_t chunk_rows = std::clamp<int64_t>(kFlatChunkPixels / row_pitch, 1, g.P);
  const int64_t tile_rows = round_up((chunk_rows - 1) * row_pitch + g.Q, t.mr);

  at::parallel_for(0, g.N * g.G * panels, 1, [&](int64_t begin, int64_t end) {
    const Scratch<T> tile(kTile, tile_rows * t.nr);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (g.G * panels), group = (task / panels) % g.G;
      const int64_t panel = task % panels;
      const T* x_image = xp.data.get() + (n * g.C + group * g.Cg) * xp.channel;
      const T* b_panel = fw.panel(group, panel);
      const int64_t k0 = group * g.Kg + panel * t.nr;
      const int64_t kept = std::min(t.nr, (group + 1) * g.Kg - k0);
      T* y_block = y + n * ys.n + k0 * ys.c;
      for (int64_t oh0 = 0; oh0 < g.P; oh0 += chunk_rows) {
        const int64_t oh1 = std::min(g.P, oh0 + chunk_rows);
        const int64_t f0 = oh0 * row_pitch, flat_n = (oh1 - 1 - oh0) * row_pitch + g.Q;
        for (int64_t p0 = 0; p0 < flat_n; p0 += t.mr) {
          direct_pixels(taps, fw.tap_off.data(), x_image + f0 + p0, b_panel,
                        tile.get() + p0 * t.nr, t.nr);
        }
        for (int64_t oh = oh0; oh < oh1; ++oh) {
          store_flat_run(tile.get() + (oh - oh0) * row_pitch * t.nr, t.nr, g.Q, kept,
                         bias ? bias + k0 : nullptr, relu, y_block + oh * ys.h, ys.w, ys.c);
        }
      }
    }
  });
}

template <typename T, typename Input>
void flat_conv_gathered(const Input& xp, int64_t row_pitch, const OffsetMatrix<T>& w,
                        const T* bias, T* y, const Strides4& ys, const ConvGeometry& g,
                        bool relu) {
  const FlatWeights<T> fw(xp, w, g);
  const GemmTile t = fw.t;
  const int64_t taps = fw.taps, panels = fw.panels;
  // Pixels per kernel call: 14 as whole rows of one pixel where the ISA has them (AVX-512;
  // SimpleCNN's 64x64x7x7 -> 64, min of 3 alternating runs, forward 0.888 -> 0.848 ms,
  // grad_input 0.896 -> 0.869), else gathered_pixels' MR (12 on AVX-512).
  const int64_t wide = whole_rows_count<T>(1), mr = wide > 0 ? wide : t.mr;
  // Chunks of about kFlatChunkPixels pixels (the tile stays in L1 until written out); a
  // task's panels follow one another, on the same pixels.
  const int64_t pixels = g.N * g.P * g.Q, image = g.C * xp.channel;
  const int64_t chunk = round_up(std::min(kFlatChunkPixels, pixels), mr);
  const int64_t chunks = ceil_div(pixels, chunk);
  // NCHW planes of at least a call's pixels take each call's sums straight into the planes
  // (whole_rows_planes: a call's pixels then span at most two planes), not through the tile.
  const bool planar = wide > 0 && ys.w == 1 && ys.h == g.Q && g.P * g.Q >= mr;

  at::parallel_for(0, g.G * chunks * panels, 1, [&](int64_t begin, int64_t end) {
    const Scratch<T> tile(kTile, chunk * t.nr);
    std::vector<int64_t> x_off(chunk), y_off(chunk);
    int64_t held = -1;  // the chunk whose offsets x_off and y_off hold
    for (int64_t task = begin; task < end; ++task) {
      const int64_t panel = task % panels, group = task / (panels * chunks);
      const int64_t c = task / panels % chunks, u0 = c * chunk;
      const int64_t count = std::min(chunk, pixels - u0);
      if (c != held) {
        // past `count` the last pixel again, for a whole last block of MR (computed, never
        // written)
        PixelCursor at(u0, g);
        for (int64_t i = 0; i < count; ++i, at.next(g)) {
          x_off[i] = at.n * image + at.p * row_pitch + at.q;
          y_off[i] = at.n * ys.n + at.p * ys.h + at.q * ys.w;
        }
        std::fill(x_off.begin() + count, x_off.end(), x_off[count - 1]);
        held = c;
      }
      const T* x_group = xp.data.get() + group * g.Cg * xp.channel;
      const T* b_panel = fw.panel(group, panel);
      const int64_t k0 = group * g.Kg + panel * t.nr;
      const int64_t kept = std::min(t.nr, (group + 1) * g.Kg - k0);
      if constexpr (std::is_same_v<T, float>) {
        if (planar) {
          for (int64_t i0 = 0; i0 < count; i0 += mr) {
            const int64_t n = std::min(mr, count - i0);
            int64_t split = 1;  // the pixels up to a plane's end; the rest in the next plane
            while (split < n && y_off[i0 + split] == y_off[i0] + split) ++split;
            whole_rows_planes(1, taps, x_off.data() + i0, fw.tap_off.data(), x_group, b_panel,
                              y + k0 * ys.c + y_off[i0], ys.c, n, split,
                              split < n ? y_off[i0 + split] - y_off[i0] : 0, kept,
                              bias ? bias + k0 : nullptr, relu);
          }
          continue;
        }
      }
      for (int64_t i0 = 0; i0 < count; i0 += mr) {
        if constexpr (std::is_same_v<T, float>) {
          if (wide > 0) {
            whole_rows(1, taps, x_off.data() + i0, fw.tap_off.data(), x_group, b_panel,
                       tile.get() + i0 * t.nr, t.nr);
            continue;
          }
        }
        gathered_pixels(taps, x_off.data() + i0, fw.tap_off.data(), x_group, b_panel,
                        tile.get() + i0 * t.nr, t.nr);
      }
      store_flat_pixels(tile.get(), t.nr, y_off.data(), count, kept, bias ? bias + k0 : nullptr,
                        relu, y + k0 * ys.c, ys.c);
    }
  });
}

// The same by whole output rows (gemm.h, whole_rows), where the active ISA has a kernel for
// rows of Q pixels (AVX-512: 14, one row of 14 pixels x 32 output channels per call): tasks
// of (group, chunk of output rows across images, panel), only output pixels computed. The
// flat sweep computed 216 pixels for each 14x14 plane's 196 (the column between rows, and
// its last block of 12); SimpleCNN's 64x32x14x14 -> 64, min of 3 alternating runs, forward
// 1.795 -> 1.743 ms, grad_input 1.832 -> 1.739. Rows of 7 two at a time (7x7 planes; any two
// rows, across images too) measured 3-5% slower than gathered_pixels through the tile, and
// 1-5% faster once both wrote NCHW planes from the registers (whole_rows_planes: two row
// pointers held, where 14 pixels anywhere spilled theirs): NCHW outputs take them, others
// the gathered kernel (flat_conv).
template <typename T, typename Input>
void flat_conv_rows(const Input& xp, int64_t row_pitch, const OffsetMatrix<T>& w,
                    const T* bias, T* y, const Strides4& ys, const ConvGeometry& g, bool relu,
                    int64_t rows_per_call) {
  const FlatWeights<T> fw(xp, w, g);
  const GemmTile t = fw.t;
  const int64_t taps = fw.taps, panels = fw.panels;
  const int64_t out_rows = g.N * g.P, image = g.C * xp.channel;
  const int64_t chunk = round_up(std::max<int64_t>(1, kFlatChunkPixels / g.Q), rows_per_call);
  const int64_t chunks = ceil_div(out_rows, chunk);

  // An output with contiguous rows takes each row's sums straight into its planes
  // (whole_rows_planes), not through the tile: SimpleCNN's 64x32x14x14 -> 64 forward spent a
  // fifth of its time writing the tile out.
  const bool planar = ys.w == 1;

  at::parallel_for(0, g.G * chunks * panels, 1, [&](int64_t begin, int64_t end) {
    const Scratch<T> tile(kTile, planar ? 0 : chunk * g.Q * t.nr);
    std::vector<int64_t> row_off(rows_per_call);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t panel = task % panels, group = task / (panels * chunks);
      const int64_t u0 = task / panels % chunks * chunk;
      const int64_t count = std::min(chunk, out_rows - u0);
      const T* x_group = xp.data.get() + group * g.Cg * xp.channel;
      const T* b_panel = fw.panel(group, panel);
      const int64_t k0 = group * g.Kg + panel * t.nr;
      const int64_t kept = std::min(t.nr, (group + 1) * g.Kg - k0);
      if (planar) {
        for (int64_t u = u0; u < u0 + count; u += rows_per_call) {
          const int64_t rows = std::min(rows_per_call, u0 + count - u);
          for (int64_t r = 0; r < rows_per_call; ++r) {  // a short last call repeats its row
            const int64_t v = u + std::min(r, rows - 1);
            row_off[r] = v / g.P * image + v % g.P * row_pitch;
          }
          const int64_t y0 = u / g.P * ys.n + u % g.P * ys.h;
          const int64_t y1 = (u + 1) / g.P * ys.n + (u + 1) % g.P * ys.h;
          whole_rows_planes(g.Q, taps, row_off.data(), fw.tap_off.data(), x_group, b_panel,
                            y + k0 * ys.c + y0, ys.c, rows * g.Q, g.Q, y1 - y0, kept,
                            bias ? bias + k0 : nullptr, relu);
        }
        continue;
      }
      for (int64_t r0 = 0; r0 < count; r0 += rows_per_call) {
        for (int64_t r = 0; r < rows_per_call; ++r) {
          const int64_t u = u0 + std::min(r0 + r, count - 1);  // a short last call repeats
          row_off[r] = u / g.P * image + u % g.P * row_pitch;
        }
        whole_rows(g.Q, taps, row_off.data(), fw.tap_off.data(), x_group, b_panel,
                   tile.get() + r0 * g.Q * t.nr, t.nr);
      }
      for (int64_t r = 0; r < count; ++r) {
        const int64_t u = u0 + r;
        store_flat_run(tile.get() + r * g.Q * t.nr, t.nr, g.Q, kept,
                       bias ? bias + k0 : nullptr, relu,
                       y + u / g.P * ys.n + k0 * ys.c + u % g.P * ys.h, ys.w, ys.c);
      }
    }
  });
}

// The flat convolution of a padded (or phased) input whose flat rows lie row_pitch apart.
template <typename T, typename Input>
void flat_conv(const Input& xp, int64_t row_pitch, const OffsetMatrix<T>& w, const T* bias,
               T* y, const Strides4& ys, const ConvGeometry& g, bool relu) {
  if constexpr (std::is_same_v<T, float>) {
    const int64_t rows = whole_rows_count<T>(g.Q);
    if (rows == 1 || (rows > 1 && ys.w == 1)) {
      flat_conv_rows(xp, row_pitch, w, bias, y, ys, g, relu, rows);
      return;
    }
  }
  const int64_t swept = round_up((g.P - 1) * row_pitch + g.Q, gemm_tile<T>().mr);
  if (static_cast<double>(g.P * g.Q) < kFlatGatheredBelow * static_cast<double>(swept)) {
    flat_conv_gathered(xp, row_pitch, w, bias, y, ys, g, relu);
  } else {
    flat_conv_swept(xp, row_pitch, w, bias, y, ys, g, relu);
  }
}

template <typename T>
void flat_direct_conv(const T* x, const Strides4& xs, const OffsetMatrix<T>& w, const T* bias,
                      T* y, const Strides4& ys, const ConvGeometry& g, bool relu) {
  const int64_t mr = gemm_tile<T>().mr;
  if (g.p.stride_h == 1 && g.p.stride_w == 1) {
    // The last plane's last row reads as far as its right padding, which it shares with
    // the next plane's left padding (flat_cols): the slack stands in for it.
    const PaddedInput<T> xp(x, xs, g, g.p.pad_left, flat_cols(g));
    flat_conv(xp, xp.wp, w, bias, y, ys, g, relu);
  } else {
    const PhasedInput<T> xp(x, xs, g, mr);
    flat_conv(xp, xp.wq, w, bias, y, ys, g, relu);
  }
}

// grad_weight of the layers the flat direct convolution takes (flat_direct_pays):
//   dW[k, (c, r, s)] = sum over images n and flat pixels i of
//                      X_flat[n, c, i + offset of tap (r, s)] * dY_flat[n, k, i]
// by direct_grad_weight_pixels: taps broadcast from x padded as for the forward pass, times panels
// of NR output channels of dY copied pixel-major, the dropped pixels (the columns between rows)
// skipped in the kernel's pixel loop: SimpleCNN's 7x7 planes sum 49 of every 61 flat pixels, its
// 14x14 196 of 222 (where they were multiplied by zero; a fifth fewer FMAs on 7x7, yet only 1.14 ->
// 1.12 ms, 14x14 1.96 -> 1.92: the kernel is not bound by them). Units of a fixed number of images
// sum into kSplits partial copies of dW^T, which are added in order, then transposed into dW: the
// result does not depend on the thread count.
template <typename T, typename Input>
void grad_weight_flat(const at::Tensor& grad_output, const Input& xp, T* dw,
                      const ConvGeometry& g, int64_t row_pitch) {
  constexpr int64_t kUnitBytes = 32 << 10, kSplits = 8;  // a unit's dY panel stays in L1
  const GemmTile t = direct_grad_weight_pixels_tile<T>();
  const std::vector<int64_t> tap_off = xp.tap_offsets(g);
  const int64_t taps = g.reduction(), pixels = (g.P - 1) * row_pitch + g.Q;
  const int64_t panels = ceil_div(g.Kg, t.nr), k_padded = panels * t.nr;

  // dY^T of a unit's images for one (group, panel): `pixels` rows of NR channels per image,
  // gathered by the thread that sums the unit, just before, so that it stays in L1 (a pass
  // over the whole batch first, element by element, took a fifth of SimpleCNN's 64x32x14x14
  // -> 64 grad_weight).
  const int64_t dy_image = pixels * t.nr;
  const T* dy = grad_output.data_ptr<T>();
  const Strides4 dys(grad_output);
  const auto gather_dy = [&](int64_t n0, int64_t images, int64_t group, int64_t panel, T* dst) {
    const int64_t k0 = group * g.Kg + panel * t.nr;
    // The kernel reads no dropped pixel; a last panel's channels past Kg must be zero.
    const int64_t kept = std::min(t.nr, (group + 1) * g.Kg - k0);
    for (int64_t n = n0; n < n0 + images; ++n, dst += dy_image) {
      const T* src = dy + n * dys.n + k0 * dys.c;
      if constexpr (std::is_same_v<T, float>) {
        if (dys.w == 1 &&
            planes_to_pixels(src, dys.c, dys.h, g.P, g.Q, kept, dst, row_pitch, t.nr)) {
          continue;
        }
#ifdef CNNOPS_X86_INTRINSICS
        // AVX2: rows of 8 pixels or more by 8 x 8 register transposes (SimpleCNN's
        // 64x32x14x14 -> 64 grad_weight 3-4% faster with CNNOPS_CPU_ISA=avx2 on the AVX-512
        // Xeon; its 7x7 planes, all in transpose_rows_avx2's scalar tail, 2-3% slower)
        if (dys.w == 1 && t.nr == 16 && g.Q >= 8 && avx2_available()) {
          const float* rows[16];
          for (int64_t p = 0; p < g.P; ++p) {
            for (int64_t j = 0; j < kept; ++j) rows[j] = src + j * dys.c + p * dys.h;
            transpose_rows_avx2<16>(rows, static_cast<int>(kept), g.Q,
                                    dst + p * row_pitch * t.nr);
          }
          continue;
        }
#endif
      }
      if (kept < t.nr) std::fill_n(dst, dy_image, T(0));
      for (int64_t j = 0; j < kept; ++j) {
        for (int64_t p = 0; p < g.P; ++p) {
          for (int64_t q = 0; q < g.Q; ++q) {
            dst[(p * row_pitch + q) * t.nr + j] = src[j * dys.c + p * dys.h + q * dys.w];
          }
        }
      }
    }
  };

  const int64_t per_unit = std::clamp<int64_t>(kUnitBytes / (dy_image * int64_t{sizeof(T)}), 1,
                                               std::max<int64_t>(1, g.N / kSplits));
  const int64_t units = ceil_div(g.N, per_unit), splits = std::min(units, kSplits);
  const int64_t per_split = g.G * taps * k_padded;  // dW^T by group: taps x k_padded
  // Each split zeroes its own copy, and the copies are added up and transposed into dW in
  // parallel regions too: on the calling thread alone (1.2 MB of copies on 64x64x7x7 -> 64)
  // the other thread waited for a tenth of the call.
  const Scratch<T> sums(kInput, splits * per_split);
  at::parallel_for(0, splits, 1, [&](int64_t begin, int64_t end) {
    const Scratch<T> dy_unit(kTile, per_unit * dy_image);
    for (int64_t s = begin; s < end; ++s) {
      std::fill_n(sums.get() + s * per_split, per_split, T(0));
      for (int64_t unit = s * units / splits; unit < (s + 1) * units / splits; ++unit) {
        const int64_t n0 = unit * per_unit, images = std::min(per_unit, g.N - n0);
        for (int64_t group = 0; group < g.G; ++group) {
          const T* x_unit = xp.data.get() + (n0 * g.C + group * g.Cg) * xp.channel;
          for (int64_t panel = 0; panel < panels; ++panel) {
            gather_dy(n0, images, group, panel, dy_unit.get());
            for (int64_t t0 = 0; t0 < taps; t0 += t.mr) {
              direct_grad_weight_pixels(
                  images, pixels, g.Q, row_pitch, x_unit, tap_off.data() + t0, g.C * xp.channel,
                  static_cast<int>(std::min(t.mr, taps - t0)), dy_unit.get(), dy_image, t.nr,
                  sums.get() + s * per_split + (group * taps + t0) * k_padded + panel * t.nr,
                  k_padded);
            }
          }
        }
      }
    }
  });
  T* total = sums.get();  // the copies added in split order into the first
  at::parallel_for(0, per_split, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t s = 1; s < splits; ++s) {
      for (int64_t i = begin; i < end; ++i) total[i] += total[s * per_split + i];
    }
  });
  at::parallel_for(0, g.G * g.Kg, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {  // dW[group * Kg + k, tap]
      const int64_t group = row / g.Kg, k = row % g.Kg;
      for (int64_t tap = 0; tap < taps; ++tap) {
        dw[row * taps + tap] = total[(group * taps + tap) * k_padded + k];
      }
    }
  });
}

template <typename T>
void conv2d_grad_weight_flat(const at::Tensor& grad_output, const at::Tensor& input, T* dw,
                             const ConvGeometry& g) {
  if (g.p.stride_h == 1 && g.p.stride_w == 1) {
    const PaddedInput<T> xp(input.data_ptr<T>(), Strides4(input), g, g.p.pad_left, flat_cols(g));
    grad_weight_flat(grad_output, xp, dw, g, xp.wp);
  } else {
    const PhasedInput<T> xp(input.data_ptr<T>(), Strides4(input), g, 0);
    grad_weight_flat(grad_output, xp, dw, g, xp.wq);
  }
}

// The units of work of the direct weight gradients: (image, strip of output rows of about
// kStripPixels pixels, so that a kernel call's block of dY stays in L1 and its sums are
// reduced across lanes rarely), in `splits` contiguous ranges that sum into their own copies
// of dW, added in order at the end. All counts are functions of the shape alone: the result
// does not depend on the thread count.
struct RowStrips {
  static constexpr int64_t kStripPixels = 2048, kSplits = 8;
  int64_t strip, strips, units, splits;

  explicit RowStrips(const ConvGeometry& g)
      : strip(std::clamp<int64_t>(kStripPixels / g.Q, 1, g.P)),
        strips(ceil_div(g.P, strip)),
        units(g.N * strips),
        splits(std::min(units, kSplits)) {}

  int64_t first_unit(int64_t split) const { return split * units / splits; }
  int64_t image(int64_t unit) const { return unit / strips; }
  int64_t first_row(int64_t unit) const { return (unit % strips) * strip; }
  int64_t rows(int64_t unit, const ConvGeometry& g) const {
    return std::min(strip, g.P - first_row(unit));
  }
};

// grad_weight of the layers direct_conv takes, from a grad_output with contiguous rows:
//   dW[k, (c, r, s)] = sum over n, p, q of
//                      dY[n, k, p, q] * X_padded[n, c, p * stride_h + r * dilation_h, q + s * dilation_w]
// by the direct_grad_weight micro-kernel (blocks of channels x taps, sums in vector lanes),
// over the units of RowStrips.
template <typename T>
void conv2d_grad_weight_direct(const at::Tensor& grad_output, const at::Tensor& input, T* dw,
                               const ConvGeometry& g) {
  const T* dy = grad_output.data_ptr<T>();
  const Strides4 dys(grad_output);
  const PaddedInput<T> xp(input.data_ptr<T>(), Strides4(input), g, 0);
  const std::vector<int64_t> tap_off = xp.tap_offsets(g);
  const GemmTile block = direct_grad_weight_tile<T>();
  const int64_t taps = g.reduction(), kb = block.mr, tb = block.nr;
  const RowStrips work(g);
  // Split 0 sums straight into dW (zeroed by the caller); the others into copies of it.
  std::vector<T> partial((work.splits - 1) * g.K * taps, T(0));

  at::parallel_for(0, work.splits, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> dy_off(kb);
    for (int64_t s = begin; s < end; ++s) {
      T* sums = s == 0 ? dw : partial.data() + (s - 1) * g.K * taps;
      for (int64_t unit = work.first_unit(s); unit < work.first_unit(s + 1); ++unit) {
        const int64_t n = work.image(unit), p0 = work.first_row(unit), rows = work.rows(unit, g);
        const T* dy_strip = dy + n * dys.n + p0 * dys.h;
        for (int64_t group = 0; group < g.G; ++group) {
          const T* x_strip = xp.data.get() + (n * g.C + group * g.Cg) * xp.plane +
                             p0 * g.p.stride_h * xp.wp;
          for (int64_t k0 = group * g.Kg; k0 < (group + 1) * g.Kg; k0 += kb) {
            const int k_valid = static_cast<int>(std::min(kb, (group + 1) * g.Kg - k0));
            for (int64_t i = 0; i < k_valid; ++i) dy_off[i] = (k0 + i) * dys.c;
            for (int64_t t0 = 0; t0 < taps; t0 += tb) {
              const int t_valid = static_cast<int>(std::min(tb, taps - t0));
              direct_grad_weight(rows, g.Q, dy_strip, dy_off.data(), dys.h, k_valid, x_strip,
                                 tap_off.data() + t0, g.p.stride_h * xp.wp, t_valid,
                                 sums + k0 * taps + t0, taps);
            }
          }
        }
      }
    }
  });
  add_partial_sums(dw, partial, work.splits - 1, g.K * taps);
}

// The same from a channels-last grad_output read in place, where conv2d_grad_weight_direct
// needs a planar copy of it: per output row, taps broadcast from the zero-padded input times
// NR output channels of dY, each pixel's channels one run (direct_grad_weight_pixels, the
// pixel stride its dy_pixel), into dW^T and its copies per split, over the units of
// RowStrips. For one group of whole panels of output channels at unit width stride (a
// network's first layer: VGG's 1x3x224x224 -> 64, channels-last, AVX-512 Xeon, alternating
// builds: 1.67-2.71 -> 0.98-1.16 ms, NCHW 1.00).
bool channels_last_direct_grad_weight_applies(const ConvGeometry& g, const Strides4& dys,
                                              int64_t nr) {
  return dys.c == 1 && g.p.stride_w == 1 && g.G == 1 && g.K % nr == 0;
}

template <typename T>
void conv2d_grad_weight_channels_last(const at::Tensor& grad_output, const at::Tensor& input,
                                      T* dw, const ConvGeometry& g) {
  const T* dy = grad_output.data_ptr<T>();
  const Strides4 dys(grad_output);
  const PaddedInput<T> xp(input.data_ptr<T>(), Strides4(input), g, 0);
  const std::vector<int64_t> tap_off = xp.tap_offsets(g);
  const GemmTile t = direct_grad_weight_pixels_tile<T>();
  const int64_t taps = g.reduction(), panels = g.K / t.nr;
  const RowStrips work(g);
  // dW^T (taps x K): split 0 sums into dw_t, the others into copies of it.
  std::vector<T> dw_t(taps * g.K, T(0)), partial((work.splits - 1) * taps * g.K, T(0));

  at::parallel_for(0, work.splits, 1, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      T* sums = s == 0 ? dw_t.data() : partial.data() + (s - 1) * taps * g.K;
      for (int64_t unit = work.first_unit(s); unit < work.first_unit(s + 1); ++unit) {
        const int64_t n = work.image(unit), p0 = work.first_row(unit);
        const T* x_strip = xp.data.get() + n * g.C * xp.plane + p0 * g.p.stride_h * xp.wp;
        const T* dy_strip = dy + n * dys.n + p0 * dys.h;
        for (int64_t panel = 0; panel < panels; ++panel) {
          for (int64_t t0 = 0; t0 < taps; t0 += t.mr) {
            direct_grad_weight_pixels(work.rows(unit, g), g.Q, g.Q, g.Q, x_strip,
                                      tap_off.data() + t0,
                                      g.p.stride_h * xp.wp,
                                      static_cast<int>(std::min(t.mr, taps - t0)),
                                      dy_strip + panel * t.nr, dys.h, dys.w,
                                      sums + t0 * g.K + panel * t.nr, g.K);
          }
        }
      }
    }
  });
  add_partial_sums(dw_t.data(), partial, work.splits - 1, taps * g.K);
  for (int64_t k = 0; k < g.K; ++k) {
    for (int64_t tap = 0; tap < taps; ++tap) dw[k * taps + tap] = dw_t[tap * g.K + k];
  }
}

// 1x1, stride 1, no padding, and x and y with contiguous planes: each image is then the
// GEMM Y[Kg x HW] = W[Kg x Cg] * X[Cg x HW] with X and Y read and written in place.
bool pointwise_direct_applies(const ConvGeometry& g, const Strides4& xs, const Strides4& ys) {
  return g.R == 1 && g.S == 1 && g.p.stride_h == 1 && g.p.stride_w == 1 && g.p.pad_top == 0 &&
         g.p.pad_left == 0 && g.P == g.H && g.Q == g.W && xs.w == 1 && xs.h == g.W &&
         ys.w == 1 && ys.h == g.Q;
}

// grad_weight of those 1x1 layers, dW[k, c] = sum over pixels of dY[n, k, p] * X[n, c, p],
// read in place by the direct_grad_weight micro-kernel: blocks of output channels times
// blocks of input channels (its taps), the pixels in vector lanes. The pixels are visited in
// ranges of about kRangePixels (a chunk of one image's plane, or whole planes of several
// images: the kernel's rows), in the same order for every sum, so the result does not depend
// on how the output channels are shared among the threads. Per range, a task's planes of X
// stay in L1 while its blocks of dY stream past them. No packing: the GEMM's packs of dY and X
// cost as much as its FMAs on these layers (MobileNet's 1x1 convolutions have 64 to 1024
// channels).
template <typename T>
void pointwise_grad_weight(const T* dy, const Strides4& dys, const T* x, const Strides4& xs,
                           T* dw, const ConvGeometry& g) {
  constexpr int64_t kRangePixels = 1024, kBlocksPerTask = 16;
  const GemmTile block = direct_grad_weight_tile<T>();
  const int64_t kb = block.mr, tb = block.nr, plane = g.H * g.W;
  const int64_t chunk = std::min(plane, kRangePixels);
  const int64_t images = chunk < kRangePixels ? std::max<int64_t>(1, kRangePixels / chunk) : 1;
  const int64_t blocks = ceil_div(g.Kg, kb);
  const int64_t threads = at::get_num_threads();
  const int64_t tasks_per_group = round_up(std::max(threads, ceil_div(blocks, kBlocksPerTask)), threads);
  const int64_t per_task = ceil_div(blocks, tasks_per_group);
  const std::vector<int64_t> x_off = strided_offsets(g.Cg, xs.c);

  at::parallel_for(0, g.G * tasks_per_group, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> dy_off(kb);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t group = task / tasks_per_group, first = (task % tasks_per_group) * per_task;
      const int64_t last = std::min(blocks, first + per_task);
      for (int64_t n0 = 0; n0 < g.N; n0 += images) {
        const int64_t rows = std::min(images, g.N - n0);
        for (int64_t p0 = 0; p0 < plane; p0 += chunk) {
          const int64_t count = std::min(chunk, plane - p0);
          const T* x_range = x + n0 * xs.n + group * g.Cg * xs.c + p0;
          const T* dy_range = dy + n0 * dys.n + p0;
          for (int64_t c0 = 0; c0 < g.Cg; c0 += tb) {
            const int c_valid = static_cast<int>(std::min(tb, g.Cg - c0));
            for (int64_t b = first; b < last; ++b) {
              const int64_t k0 = group * g.Kg + b * kb;
              const int k_valid = static_cast<int>(std::min(kb, (group + 1) * g.Kg - k0));
              for (int64_t i = 0; i < k_valid; ++i) dy_off[i] = (k0 + i) * dys.c;
              direct_grad_weight(rows, count, dy_range, dy_off.data(), dys.n, k_valid, x_range,
                                 x_off.data() + c0, xs.n, c_valid, dw + k0 * g.Cg + c0, g.Cg);
            }
          }
        }
      }
    }
  });
}

// Version 0 takes pointwise_grad_weight up to Cg x Kg = 256 x 512 channels on AVX-512 and
// 256 x 256 on AVX2, where the micro-kernel shares each load of X among 3 (4) output
// channels. On larger layers (MobileNet's 512 -> 512 and 1024 -> 1024), whose packs are a
// smaller share of the GEMM, the GEMM measured as fast or faster; on AVX2 (Zen 3, CPU time,
// alternating builds) already at 256 -> 512 on 14x14 planes (15-30% slower here), while
// 32 -> 64 on 112x112 took half the GEMM's time, 64 -> 128 on 56x56 20-25% less, and 128
// and 256 channels on 28x28 and 56x56 about the same to 7% less. Planes of fewer than
// kPointwiseGradWeightMinPixels (14x14) are short dot products: on the AVX-512 Xeon the GEMM
// took 0.50 ms where this kernel took 0.64 (8x128x14x14 -> 256), 0.91 for 1.36 (256 -> 256),
// 1.63 for 2.60 (256 -> 512); from 20x20 on this kernel was level or up to 15% faster.
constexpr int64_t kPointwiseGradWeightMinPixels = 256;

template <typename T>
bool use_pointwise_grad_weight(const ConvGeometry& g, const Strides4& xs, const Strides4& dys) {
  const int version = kernel_version(OpFamily::conv2d);
  const int64_t max_channels = active_isa() == Isa::avx512 ? 256 * 512 : 256 * 256;
  const bool pays = g.Cg * g.Kg <= max_channels && g.H * g.W >= kPointwiseGradWeightMinPixels;
  return (version == 4 || (version == 0 && pays)) && pointwise_direct_applies(g, xs, dys);
}

template <typename T>
void pointwise_direct(const T* x, const Strides4& xs, const OffsetMatrix<T>& w, const T* bias,
                      T* y, const Strides4& ys, const ConvGeometry& g, bool relu) {
  // Columns per task. Each block of MR output channels streams the task's slice of X (Cg x
  // kPixels) from L2: at 512 columns, MobileNet's 256-channel slice filled Zen 3's 512 KiB L2
  // and ran at 85-90 GFLOP/s on 2 cores; at 128, 130-140 (pw56, 128 channels: 99 -> 113-118).
  constexpr int64_t kPixels = 128;
  const GemmTile t = gemm_tile<T>();
  const int64_t pixels = g.H * g.W, chunks = ceil_div(pixels, kPixels);
  const int64_t blocks = ceil_div(g.Kg, t.mr);
  const std::vector<T> w_pack = pack_weight_panels(w, g, t.mr);  // reduction: the Cg channels
  const std::vector<int64_t> plane_off = strided_offsets(g.Cg, xs.c);
  std::vector<int64_t> tail_off(g.Cg);
  for (int64_t c = 0; c < g.Cg; ++c) tail_off[c] = c * t.nr;

  at::parallel_for(0, g.N * g.G * chunks, 1, [&](int64_t begin, int64_t end) {
    // The last partial block of a plane would load past its end (past the tensor's, for
    // the last plane): those columns are computed from a zero-padded copy instead.
    const Scratch<T> tail(kTile, g.Cg * t.nr);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (g.G * chunks), group = (task / chunks) % g.G;
      const int64_t p0 = (task % chunks) * kPixels;
      const int64_t count = std::min(kPixels, pixels - p0);
      const int64_t in_place = p0 + count == pixels ? count / t.nr * t.nr : count;
      const T* x_chunk = x + n * xs.n + group * g.Cg * xs.c + p0;
      if (in_place < count) {
        for (int64_t c = 0; c < g.Cg; ++c) {
          T* dst = tail.get() + c * t.nr;
          const T* src = x_chunk + c * xs.c + in_place;
          std::copy(src, src + (count - in_place), dst);
          std::fill(dst + (count - in_place), dst + t.nr, T(0));
        }
      }
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t k0 = group * g.Kg + b * t.mr;
        const int m_valid = static_cast<int>(std::min(t.mr, (group + 1) * g.Kg - k0));
        const T* w_block = w_pack.data() + (group * blocks + b) * g.Cg * t.mr;
        const T* bias_block = bias ? bias + k0 : nullptr;
        T* y_block = y + n * ys.n + k0 * ys.c + p0;
        if (in_place > 0) {
          direct_row(g.Cg, plane_off.data(), x_chunk, w_block, in_place, y_block, ys.c, m_valid,
                     bias_block, relu);
        }
        if (in_place < count) {
          direct_row(g.Cg, tail_off.data(), tail.get(), w_block, count - in_place,
                     y_block + in_place, ys.c, m_valid, bias_block, relu);
        }
      }
    }
  });
}

// Convolutions between channels-last tensors (the input's channels contiguous, the output
// dense N x P x Q x K): the pixels are the rows of the GEMM
//   Y[pixels x Kg] = X_col[pixels x CgRS] * W^T[CgRS x Kg]   per group.
// A 1x1 convolution without padding reads the rows of X_col straight from x; other kernels
// gather them from a copy of x zero-padded in space, channels still innermost. W^T is packed
// once, and each task's tile of Y is summed in a buffer, then written with bias and ReLU.
bool channels_last_gemm_applies(const ConvGeometry& g, const Strides4& xs, const Strides4& ys) {
  return xs.c == 1 && ys.c == 1 && ys.w == g.K && ys.h == g.Q * ys.w && ys.n == g.P * ys.h;
}

constexpr int64_t kGatheredMaxReduction = 4096;  // its B panel (NR columns) within L2
constexpr int64_t kMaxPanelRows = 16;             // at least any micro-kernel's MR

bool unpadded_1x1(const ConvGeometry& g) {
  // (an output larger than the input's extent, which the grad_input phases ask for, reads
  // past the input's edge: padding on the far side)
  return g.R == 1 && g.S == 1 && g.p.pad_top == 0 && g.p.pad_left == 0 &&
         (g.P - 1) * g.p.stride_h < g.H && (g.Q - 1) * g.p.stride_w < g.W;
}

template <typename T>
void channels_last_gemm(const T* x, const Strides4& xs, const OffsetMatrix<T>& w,
                        const T* bias, T* y, const ConvGeometry& g, bool relu) {
  constexpr int64_t kPixelsPerTask = 192;  // A block of 192 x KC: stays in L2
  const GemmTile t = gemm_tile<T>();
  const int64_t pixels = g.N * g.P * g.Q, cols_padded = round_up(g.Kg, t.nr);
  const int64_t red = g.reduction();

  // The source of X_col's rows: x, or its zero-padded copy (pixels of C channels).
  const bool pointwise = unpadded_1x1(g);
  const int64_t hp = pointwise ? 0 : padded_rows(g), wp = pointwise ? 0 : padded_cols(g);
  const Scratch<T> padded(kInput, g.N * hp * wp * g.C);
  const T* src = x;
  Strides4 ss = xs;
  if (!pointwise) {
    ss = Strides4(hp * wp * g.C, 1, wp * g.C, g.C);
    at::parallel_for(0, g.N * hp, 1, [&](int64_t begin, int64_t end) {
      for (int64_t nr = begin; nr < end; ++nr) {
        const int64_t n = nr / hp, ih = nr % hp - g.p.pad_top;
        T* row = padded.get() + nr * wp * g.C;
        std::fill_n(row, wp * g.C, T(0));
        if (ih < 0 || ih >= g.H) continue;
        for (int64_t iw = 0; iw < std::min(g.W, wp - g.p.pad_left); ++iw) {
          const T* px = x + n * xs.n + ih * xs.h + iw * xs.w;
          std::copy(px, px + g.C, row + (iw + g.p.pad_left) * g.C);
        }
      }
    });
    src = padded.get();
  }
  std::vector<int64_t> tap_off(red);
  for (int64_t k = 0; k < red; ++k) {
    const KernelTap tap(k, g);
    tap_off[k] = tap.c + tap.r * g.p.dilation_h * ss.h + tap.s * g.p.dilation_w * ss.w;
  }

  // A is read in place (gathered_pixels: each pixel's taps at its offset plus the tap's),
  // against one B panel over the whole reduction: packing A cost as much as the product
  // where the reduction is short or the output channels few, and more than reading in place
  // at every MobileNet width (alternating builds, 10th percentile: 8x32x112x112 -> 64
  // forward 3.1-3.4 -> 2.2-2.8 ms, grad_input 3.6-4.0 -> 1.9-2.6 ms; 8x1024x7x7 -> 1024
  // 2.25 -> 2.0 ms; VGG's first layer, 1x3x224x224 -> 64, 1.2-1.3 -> 0.85-0.9 ms). Not below
  // a full panel of output channels (SimpleCNN conv1's grad_input, 1 channel: 12% slower),
  // where the packed A's contiguous stream wins.
  const bool gathered =
      red <= kGatheredMaxReduction && g.Kg >= t.nr && t.mr <= kMaxPanelRows;
  // An output larger than the caches is written past them (cpu/stream_store.h).
  const bool stream = streams(pixels * g.K * int64_t{sizeof(T)});

  // W^T of each group as B panels, per reduction block of KC taps (or of the whole reduction,
  // `gathered`): block b of group `group` at (group * CgRS + b * KC) * cols_padded, its panel
  // p of NR columns kc * NR further on. Packed by units of (group, block, 4 panels).
  const Scratch<T> b_pack(kOperands, g.G * red * cols_padded);
  const int64_t kc_block = gathered ? red : kReductionBlock;
  const int64_t k_blocks = ceil_div(red, kc_block), panel_units = ceil_div(g.Kg, 4 * t.nr);
  at::parallel_for(0, g.G * k_blocks * panel_units, 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t group = unit / (k_blocks * panel_units);
      const int64_t k0 = (unit / panel_units % k_blocks) * kc_block;
      const int64_t c0 = unit % panel_units * 4 * t.nr, kc = std::min(kc_block, red - k0);
      const OffsetMatrix<T> wt{w.base, w.col_off, w.row_off + group * g.Kg + c0};
      pack_b(wt, k0, kc, std::min(4 * t.nr, g.Kg - c0), t.nr,
             b_pack.get() + (group * red + k0) * cols_padded + c0 * kc);
    }
  });

  // Tasks of (group, block of pixels, block of output channels), of even sizes; the channel
  // blocks only when pixel blocks alone are too few to share out evenly among the threads.
  const int64_t threads = at::get_num_threads();
  const int64_t row_tasks = ceil_div(pixels, kPixelsPerTask);
  const int64_t row_block = round_up(ceil_div(pixels, row_tasks), t.mr);
  const int64_t max_col_tasks = ceil_div(g.Kg, 4 * t.nr);
  int64_t col_tasks = std::clamp<int64_t>(ceil_div(4 * threads, g.G * row_tasks), 1, max_col_tasks);
  while (g.G * row_tasks * col_tasks % threads != 0 && col_tasks < max_col_tasks) ++col_tasks;
  const int64_t col_block = round_up(ceil_div(g.Kg, col_tasks), t.nr);
  at::parallel_for(0, g.G * row_tasks * col_tasks, 1, [&](int64_t begin, int64_t end) {
    const Scratch<T> a_pack(kPanelB, gathered ? 0 : row_block * kReductionBlock);
    // The product's tile, rows a little more than a multiple of 4 KiB apart: C rows exactly
    // K = 1024 floats apart, as in y, evict each other from L1 (4K aliasing).
    const int64_t ldc = round_up(col_block, 16) + 16;
    const Scratch<T> c_tile(kTile, row_block * ldc);
    std::vector<int64_t> pixel_off(row_block);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t group = task / (row_tasks * col_tasks);
      const int64_t i0 = ((task / col_tasks) % row_tasks) * row_block;
      const int64_t j0 = (task % col_tasks) * col_block;
      const int64_t rows = std::min(row_block, pixels - i0);
      const int64_t cols = std::min(col_block, g.Kg - j0);
      if (cols <= 0) continue;
      PixelCursor at(i0, g);
      for (int64_t i = 0; i < rows; ++i, at.next(g)) {
        pixel_off[i] = at.n * ss.n + at.p * g.p.stride_h * ss.h + at.q * g.p.stride_w * ss.w;
      }
      if (gathered) {
        // MR pixels at a time read in place; the rows past `rows` are never stored
        gathered_rows(rows, cols, red, pixel_off.data(), tap_off.data(), src + group * g.Cg,
                      b_pack.get() + (group * red * cols_padded + j0 * red), c_tile.get(), ldc);
      } else {
        const OffsetMatrix<T> a{src + group * g.Cg, pixel_off.data(), tap_off.data()};
        std::fill(c_tile.get(), c_tile.get() + rows * ldc, T(0));
        for (int64_t k0 = 0; k0 < red; k0 += kReductionBlock) {
          const int64_t kc = std::min(kReductionBlock, red - k0);
          pack_a(a, 0, rows, k0, kc, t.mr, a_pack.get());
          gemm_packed(rows, cols, kc, a_pack.get(),
                      b_pack.get() + (group * red + k0) * cols_padded + j0 * kc, c_tile.get(),
                      ldc, 1);
        }
      }
      // Epilogue: bias and ReLU on the way to y, whose pixels lie K apart.
      const int64_t k0 = group * g.Kg + j0;
      for (int64_t i = 0; i < rows; ++i) {
        store_biased_run(c_tile.get() + i * ldc, bias ? bias + k0 : nullptr, relu,
                         y + (i0 + i) * g.K + k0, cols, stream);
      }
    }
    if (stream) stream_fence();
  });
}

// dst[0, nr) = src[0, live), zero past live: one row of an NR-column B panel. The panel
// widths (16 and 32 floats, 8 and 16 doubles) copy at a length the compiler knows; a
// std::copy of `live` elements per pixel became a call to memmove, 7% of the samples of
// MobileNet's channels-last 1x1 grad_weight.
template <typename T>
inline void copy_panel_row(const T* src, int64_t live, int64_t nr, T* dst) {
  if (live == 32) {
    std::copy_n(src, 32, dst);
  } else if (live == 16) {
    std::copy_n(src, 16, dst);
  } else if (live == 8) {
    std::copy_n(src, 8, dst);
  } else {
    std::copy(src, src + live, dst);
  }
  std::fill(dst + live, dst + nr, T(0));
}

// grad_weight of a 1x1 convolution without padding between channels-last tensors:
//   dW[k, c] = sum over pixels of dY[pixel, k] * X[pixel, c]
// dY is read in place by gathered_pixels (MR output channels of a pixel are contiguous; the
// pixels are its reduction), X copied per chunk of kReductionBlock pixels into NR-channel
// panels (runs of contiguous channels): packing dY as well cost more than the product on
// MobileNet's narrow layers (alternating builds, 10th percentile, the packed GEMM -> this:
// 8x32x112x112 -> 64 6.4-7.8 -> 3.2-3.3 ms, 8x256x28x28 -> 256 3.4-3.7 -> 2.4-2.5 ms,
// 8x1024x7x7 -> 1024 2.6-3.0 -> 2.3-2.4 ms). The pixels are cut into `splits` ranges from
// the shape alone, each summed chunk by chunk in order into its own copy of dW (the first
// into dW itself), and the copies added in order: the result does not depend on the thread
// count. (Not below a full panel of output channels, as channels_last_gemm.)
bool channels_last_pointwise_grad_weight_applies(const ConvGeometry& g, const Strides4& xs,
                                                 const Strides4& dys, int64_t nr) {
  return unpadded_1x1(g) && xs.c == 1 && dys.c == 1 && g.C > 1 && g.Kg >= nr;
}

// Whether the fast versions run channels_last_pointwise_grad_weight (version 0 or 4).
template <typename T>
bool use_channels_last_pointwise_grad_weight(const ConvGeometry& g, const Strides4& xs,
                                             const Strides4& dys) {
  const int version = kernel_version(OpFamily::conv2d);
  return (version == 0 || version == 4) &&
         channels_last_pointwise_grad_weight_applies(g, xs, dys, gemm_tile<T>().nr);
}

template <typename T>
void channels_last_pointwise_grad_weight(const T* dy, const Strides4& dys, const T* x,
                                         const Strides4& xs, T* dw, const ConvGeometry& g) {
  constexpr int64_t kPixelsPerSplit = 4096;
  const GemmTile t = gemm_tile<T>();
  const int64_t pixels = g.columns(), panels = ceil_div(g.Cg, t.nr);
  const int64_t budget = g.max_workspace_bytes(sizeof(T));
  const int64_t copies_fit = budget / std::max<int64_t>(g.K * g.Cg * int64_t{sizeof(T)}, 1);
  const int64_t splits = std::clamp<int64_t>(
      std::min(ceil_div(pixels, kPixelsPerSplit), 1 + copies_fit), 1, 8);
  const int64_t per_split = round_up(ceil_div(pixels, splits), kReductionBlock);
  std::vector<T> partial((splits - 1) * g.K * g.Cg, T(0));
  // Ranges of output channels too, where splits and groups alone would leave a core idle
  // (a range changes no sum's order).
  const int64_t blocks = ceil_div(g.Kg, t.mr);
  const int64_t ranges =
      std::clamp<int64_t>(ceil_div(2 * at::get_num_threads(), splits * g.G), 1, blocks);
  const int64_t per_range = ceil_div(blocks, ranges) * t.mr;
  at::parallel_for(0, splits * g.G * ranges, 1, [&](int64_t begin, int64_t end) {
    const Scratch<T> b_pack(kPanelB, kReductionBlock * t.nr);
    const Scratch<T> c_tile(kTile, t.mr * t.nr);
    int64_t k_off[kMaxPanelRows];
    std::vector<int64_t> dy_off(kReductionBlock), x_off(kReductionBlock);  // a chunk's pixels
    for (int64_t task = begin; task < end; ++task) {
      const int64_t s = task / (g.G * ranges), group = task / ranges % g.G;
      const int64_t k_begin = task % ranges * per_range;
      const int64_t k_end = std::min(g.Kg, k_begin + per_range);
      T* sums = (s == 0 ? dw : partial.data() + (s - 1) * g.K * g.Cg) + group * g.Kg * g.Cg;
      const T* x_group = x + group * g.Cg;
      const int64_t q_end = std::min(pixels, (s + 1) * per_split);
      for (int64_t q0 = s * per_split; q0 < q_end; q0 += kReductionBlock) {
        const int64_t count = std::min(kReductionBlock, q_end - q0);
        PixelCursor at(q0, g);
        for (int64_t i = 0; i < count; ++i, at.next(g)) {
          dy_off[i] = at.n * dys.n + at.p * dys.h + at.q * dys.w;
          x_off[i] = at.n * xs.n + at.p * g.p.stride_h * xs.h + at.q * g.p.stride_w * xs.w;
        }
        for (int64_t panel = 0; panel < panels; ++panel) {
          const int64_t c0 = panel * t.nr, live = std::min(t.nr, g.Cg - c0);
          for (int64_t i = 0; i < count; ++i) {
            copy_panel_row(x_group + x_off[i] + c0, live, t.nr, b_pack.get() + i * t.nr);
          }
          for (int64_t k0 = k_begin; k0 < k_end; k0 += t.mr) {
            const int64_t rows = std::min(t.mr, k_end - k0);
            for (int64_t r = 0; r < t.mr; ++r) {
              k_off[r] = group * g.Kg + k0 + std::min(r, rows - 1);  // repeats past `rows`
            }
            gathered_pixels(count, k_off, dy_off.data(), dy, b_pack.get(), c_tile.get(), t.nr);
            for (int64_t r = 0; r < rows; ++r) {
              T* row = sums + (k0 + r) * g.Cg + c0;
              const T* c = c_tile.get() + r * t.nr;
              for (int64_t j = 0; j < live; ++j) row[j] += c[j];
            }
          }
        }
      }
    }
  });
  add_partial_sums(dw, partial, splits - 1, g.K * g.Cg);
}

// A thin convolution (1 to 3 output channels per group, the grad_input of a first layer)
// would leave most rows of the GEMM's MR x NR block idle: the direct kernel's 3-row variant
// takes it, whatever the reduction's length.
bool thin_direct_applies(const ConvGeometry& g, const Strides4& ys) {
  return g.Kg <= 3 && g.p.stride_w == 1 && ys.w == 1;
}

// Strides standing for any output with contiguous rows, which the direct kernels write: a
// caller whose output has other strides computes into such a tensor, then copies.
const Strides4 kRowMajor(0, 0, 0, 1);

constexpr int64_t kPointwiseMinPixels = 512;  // version 0: 1x1 planes the direct kernel takes

// ---------------------------------------------------------------------------------------
// version 5: tap by tap, for tiny output planes

// Tiny output planes (VGG's 2x2 layers on CIFAR) with padding: most of each window lies in
// the padding, and the implicit GEMM multiplies those zeros (a 3x3 window of a 2x2 plane
// with padding 1 covers 4 input pixels: 5 of its 9 taps read zeros). Here the product is
// summed tap by tap, only over the taps that reach the input:
//   y[:, :, p, q] = sum over taps (r, s) inside of  W_rs [Kg x Cg] * X_(ih, iw) [Cg x N]
// with X_(ih, iw) the batch's input pixel (ih, iw) = (p * stride - pad + r * dilation, ...)
// over all channels, the images as the GEMM's columns. Each tap's W_rs is packed once as A
// panels, each input pixel's X once as B panels; every output pixel's sum then runs over
// its own taps, in tap order, whatever the split of the work.
constexpr int64_t kTapwiseMaxPixels = 16;  // output pixels per image
constexpr double kTapwiseMaxInside = 0.5;  // version 0: the share of (pixel, tap) pairs inside

// Whether the output pixel o = p * Q + q reads the input through tap t = r * S + s, and
// where: the input pixel ih * W + iw, or -1 in the padding.
int64_t tap_source(const ConvGeometry& g, int64_t o, int64_t t) {
  const int64_t ih = (o / g.Q) * g.p.stride_h - g.p.pad_top + (t / g.S) * g.p.dilation_h;
  const int64_t iw = (o % g.Q) * g.p.stride_w - g.p.pad_left + (t % g.S) * g.p.dilation_w;
  return ih >= 0 && ih < g.H && iw >= 0 && iw < g.W ? ih * g.W + iw : -1;
}

// The share of (output pixel, tap) pairs that read the input.
double inside_share(const ConvGeometry& g) {
  int64_t inside = 0;
  for (int64_t o = 0; o < g.P * g.Q; ++o) {
    for (int64_t t = 0; t < g.R * g.S; ++t) inside += tap_source(g, o, t) >= 0;
  }
  return static_cast<double>(inside) / static_cast<double>(g.P * g.Q * g.R * g.S);
}

// Tiny output planes, whose packed input (the batch padded to whole panels of NR columns)
// stays within the workspace bound, the larger of 64 MiB and the input's size.
template <typename T>
bool tapwise_applies(const ConvGeometry& g) {
  const int64_t element = sizeof(T);
  const int64_t packed = g.C * g.H * g.W * round_up(g.N, gemm_tile<T>().nr) * element;
  return g.P * g.Q <= kTapwiseMaxPixels &&
         packed <= g.max_workspace_bytes(element);
}

// Version 0 takes the tap-by-tap sum where it skips at least half the products and the
// batch fills at least half a panel of the micro-kernel's columns.
template <typename T>
bool use_tapwise(const ConvGeometry& g) {
  const int version = kernel_version(OpFamily::conv2d);
  if (version == 5) return tapwise_applies<T>(g);
  return version == 0 && tapwise_applies<T>(g) && 2 * g.N >= gemm_tile<T>().nr &&
         inside_share(g) <= kTapwiseMaxInside;
}

template <typename T>
void tapwise_conv(const T* x, const Strides4& xs, const OffsetMatrix<T>& w, const T* bias, T* y,
                  const Strides4& ys, const ConvGeometry& g, bool relu) {
  const GemmTile t = gemm_tile<T>();
  const int64_t taps = g.R * g.S, pixels = g.P * g.Q, inputs = g.H * g.W;
  const int64_t rows_padded = round_up(g.Kg, t.mr), cols_padded = round_up(g.N, t.nr);
  const int64_t blocks = ceil_div(g.Cg, kReductionBlock);

  // A: per group and tap, W_rs as the implicit GEMM packs a weight (reduction block b's
  // panels from b * KC * rows_padded on), at a_pack + (group * taps + tap) * rows_padded * Cg.
  // A task packs every tap of one panel of MR output channels and one reduction block,
  // reading each filter's taps in memory order: one pass over the weight, where a pass per
  // tap would read all of it once per tap.
  const Scratch<T> a_pack(kOperands, g.G * taps * rows_padded * g.Cg);
  const int64_t panels_of_rows = rows_padded / t.mr;
  at::parallel_for(0, g.G * panels_of_rows * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t group = unit / (panels_of_rows * blocks);
      const int64_t i0 = ((unit / blocks) % panels_of_rows) * t.mr;
      const int64_t k0 = (unit % blocks) * kReductionBlock;
      const int64_t kc = std::min(kReductionBlock, g.Cg - k0);
      T* panel = a_pack.get() + group * taps * rows_padded * g.Cg + k0 * rows_padded + i0 * kc;
      const int64_t tap_step = rows_padded * g.Cg;  // from one tap's A to the next
      const int64_t live = std::min(t.mr, g.Kg - i0);     // rows past Kg are zero (gemm.h)
      const T* row[kMaxPanelRows];
      for (int64_t r = 0; r < live; ++r) row[r] = w.base + w.row_off[group * g.Kg + i0 + r];
      // Channel by channel, so that the MR values of each tap's panel row are written
      // together, each filter's taps read as one run.
      for (int64_t c = 0; c < kc; ++c) {
        const int64_t* col = w.col_off + (k0 + c) * taps;
        T* dst = panel + c * t.mr;
        for (int64_t r = 0; r < t.mr; ++r) {
          for (int64_t tap = 0; tap < taps; ++tap) {
            dst[tap * tap_step + r] = r < live ? row[r][col[tap]] : T(0);
          }
        }
      }
    }
  });

  // B: per group and input pixel, X [Cg x N] in NR-column panels (reduction block b's
  // from b * KC * cols_padded on), at b_pack + (group * inputs + pixel) * cols_padded * Cg.
  const Scratch<T> b_pack(kInput, g.G * inputs * cols_padded * g.Cg);
  const std::vector<int64_t> channel_off = strided_offsets(g.Cg, xs.c);
  const std::vector<int64_t> image_off = strided_offsets(g.N, xs.n);
  const std::vector<int64_t> y_image_off = strided_offsets(g.N, ys.n);
  at::parallel_for(0, g.G * inputs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t group = unit / inputs, pixel = unit % inputs;
      const OffsetMatrix<T> x_pixel{
          x + group * g.Cg * xs.c + (pixel / g.W) * xs.h + (pixel % g.W) * xs.w,
          channel_off.data(), image_off.data()};
      for (int64_t k0 = 0; k0 < g.Cg; k0 += kReductionBlock) {
        pack_b(x_pixel, k0, std::min(kReductionBlock, g.Cg - k0), g.N, t.nr,
               b_pack.get() + unit * cols_padded * g.Cg + k0 * cols_padded);
      }
    }
  });

  // Tasks of (group, block of output channels, block of images); each sums every output
  // pixel of its block, tap by tap, into `acc` ([pixel][row][column]), then adds the bias.
  const int64_t want_tasks = 4 * at::get_num_threads();
  const int64_t row_blocks = std::clamp<int64_t>(ceil_div(want_tasks, g.G), 1,
                                                 std::max<int64_t>(1, g.Kg / (4 * t.mr)));
  const int64_t row_block = round_up(ceil_div(g.Kg, row_blocks), t.mr);
  const int64_t panels = cols_padded / t.nr;
  const int64_t col_blocks =
      std::clamp<int64_t>(ceil_div(want_tasks, g.G * ceil_div(g.Kg, row_block)), 1, panels);
  const int64_t col_block = ceil_div(panels, col_blocks) * t.nr;
  const int64_t tiles = ceil_div(g.N, col_block), blocks_of_rows = ceil_div(g.Kg, row_block);
  std::vector<int64_t> source(pixels * taps);
  for (int64_t o = 0; o < pixels; ++o) {
    for (int64_t tap = 0; tap < taps; ++tap) source[o * taps + tap] = tap_source(g, o, tap);
  }
  at::parallel_for(0, g.G * blocks_of_rows * tiles, 1, [&](int64_t begin, int64_t end) {
    const Scratch<T> acc(kTile, pixels * row_block * col_block);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t group = task / (blocks_of_rows * tiles);
      const int64_t m0 = ((task / tiles) % blocks_of_rows) * row_block;
      const int64_t n0 = (task % tiles) * col_block;
      const int64_t rows = std::min(row_block, g.Kg - m0), cols = std::min(col_block, g.N - n0);
      std::fill(acc.get(), acc.get() + pixels * rows * cols, T(0));
      for (int64_t tap = 0; tap < taps; ++tap) {
        const T* a_tap = a_pack.get() + (group * taps + tap) * rows_padded * g.Cg;
        for (int64_t o = 0; o < pixels; ++o) {
          const int64_t pixel = source[o * taps + tap];
          if (pixel < 0) continue;
          const T* b_pixel = b_pack.get() + (group * inputs + pixel) * cols_padded * g.Cg;
          for (int64_t k0 = 0; k0 < g.Cg; k0 += kReductionBlock) {
            const int64_t kc = std::min(kReductionBlock, g.Cg - k0);
            gemm_packed(rows, cols, kc, a_tap + k0 * rows_padded + m0 * kc,
                        b_pixel + k0 * cols_padded + n0 * kc, acc.get() + o * rows * cols, cols,
                        1);
          }
        }
      }
      for (int64_t o = 0; o < pixels; ++o) {
        const int64_t y_pixel = (o / g.Q) * ys.h + (o % g.Q) * ys.w;
        for (int64_t i = 0; i < rows; ++i) {
          const int64_t k = group * g.Kg + m0 + i;
          store_columns(acc.get() + (o * rows + i) * cols, bias ? bias[k] : T(0), relu,
                        y + k * ys.c + y_pixel, y_image_off.data() + n0, cols);
        }
      }
    }
  });
}

// An output of at most 2x2 pixels (VGG's last layers on CIFAR) is one Winograd tile per
// image: the tiling saves nothing there, and the filter transform (16 values per pair of
// channels against 9 taps) costs more than the implicit GEMM's packing, whose column tile
// spans all images and whose B is then shared by every block of rows. Version 0 runs the
// GEMM on those that the tap-by-tap sum (version 5) does not take, whose batch fills less
// than half a panel (on vgg16c.b5, before version 5 took it, the GEMM measured 10% faster
// than Winograd forward and 1.5x in grad_input). grad_weight stays on Winograd, which is
// faster there.
bool one_winograd_tile(const ConvGeometry& g) { return g.P <= 2 && g.Q <= 2; }

// Every convolution-shaped product of the fast versions: the forward pass, and grad_input
// at stride 1. The direct 1x1 kernel or Winograd where the version asks for it and it
// applies; else implicit GEMM.
template <typename T>
void convolve(const T* x, const Strides4& xs, const OffsetMatrix<T>& w, const T* bias, T* y,
              const Strides4& ys, const ConvGeometry& g, bool relu) {
  const int version = kernel_version(OpFamily::conv2d);
  // Small planes (MobileNet's 14x14 and 7x7) stay on the implicit GEMM, whose tiles span
  // images: per image, the direct kernel would stream all the weights for a few columns.
  const bool pointwise = version == 4 || (version == 0 && g.P * g.Q >= kPointwiseMinPixels);
  if (pointwise && pointwise_direct_applies(g, xs, ys)) {
    pointwise_direct(x, xs, w, bias, y, ys, g, relu);
  } else if (channels_last_gemm_applies(g, xs, ys) &&
             (version == 4 ||
              (version == 0 && (unpadded_1x1(g) || !winograd_pays(g, sizeof(T)))))) {
    channels_last_gemm(x, xs, w, bias, y, g, relu);
  } else if ((version == 0 || version == 4) && thin_direct_applies(g, ys)) {
    direct_conv(x, xs, w, bias, y, ys, g, relu, true);
  } else if (use_tapwise<T>(g)) {
    tapwise_conv(x, xs, w, bias, y, ys, g, relu);
  } else if (use_flat_direct<T>(g)) {
    flat_direct_conv(x, xs, w, bias, y, ys, g, relu);
  } else if (use_winograd<T>(g) && !(version == 0 && one_winograd_tile(g))) {
    winograd_conv(x, xs, w, bias, y, ys, g, relu);
  } else {
    implicit_gemm_conv(x, xs, w, bias, y, ys, g, relu);
  }
}

template <typename T>
void conv2d_forward_gemm(const at::Tensor& input, const at::Tensor& weight, const T* bias,
                         at::Tensor& output, const ConvGeometry& g, bool relu) {
  const std::vector<int64_t> row_off = strided_offsets(g.K, weight.stride(0));
  const std::vector<int64_t> col_off = weight_tap_offsets(g, Strides4(weight));
  const OffsetMatrix<T> w{weight.data_ptr<T>(), row_off.data(), col_off.data()};
  const Strides4 xs(input), ys(output);
  const bool direct = use_direct<T>(g, ys) && !pointwise_direct_applies(g, xs, ys);
  const bool thin = thin_direct_applies(g, ys);
  if (direct && !thin && planar_direct_pays<T>(g, ys)) {
    planar_direct_conv(input.data_ptr<T>(), xs, w, bias, output.data_ptr<T>(), ys, g, relu);
  } else if (direct) {
    direct_conv(input.data_ptr<T>(), xs, w, bias, output.data_ptr<T>(), ys, g, relu, thin);
  } else {
    convolve(input.data_ptr<T>(), xs, w, bias, output.data_ptr<T>(), ys, g, relu);
  }
}

// Offsets of the weight's rows as the transposed problem's A (grad_input's convolutions):
// row c (an input channel of group c / Cg) starts at the group's first output channel.
std::vector<int64_t> transposed_weight_rows(const ConvGeometry& g, const Strides4& ws) {
  std::vector<int64_t> off(g.C);
  for (int64_t c = 0; c < g.C; ++c) off[c] = (c / g.Cg) * g.Kg * ws.n + (c % g.Cg) * ws.c;
  return off;
}

// At stride 1, grad_input is a convolution of grad_output with the weight transposed
// (in <-> out channels) and flipped (r -> R-1-r, s -> S-1-s), padded by d*(R-1) - pad:
// no col2im scatter, every element of grad_input written once.
bool grad_input_is_convolution(const ConvGeometry& g) {
  return g.p.stride_h == 1 && g.p.stride_w == 1 &&
         g.p.pad_top <= g.p.dilation_h * (g.R - 1) && g.p.pad_left <= g.p.dilation_w * (g.S - 1);
}

template <typename T>
void conv2d_grad_input_as_convolution(const at::Tensor& grad_output, const at::Tensor& weight,
                                      at::Tensor& grad_input, const ConvGeometry& g) {
  Conv2dParams p = g.p;
  p.pad_top = g.p.dilation_h * (g.R - 1) - g.p.pad_top;
  p.pad_left = g.p.dilation_w * (g.S - 1) - g.p.pad_left;
  p.pad_bottom = p.pad_right = 0;  // unused: the output size is given
  // The transposed problem: grad_output (N, K, P, Q) in, grad_input (N, C, H, W) out.
  const int64_t t_input[4] = {g.N, g.K, g.P, g.Q};
  const int64_t t_weight[4] = {g.C, g.Kg, g.R, g.S};
  const ConvGeometry t(t_input, t_weight, g.H, g.W, p);

  const Strides4 ws(weight);
  const std::vector<int64_t> row_off = transposed_weight_rows(g, ws);
  std::vector<int64_t> col_off(t.reduction());
  for (int64_t k = 0; k < t.reduction(); ++k) {
    const KernelTap tap(k, t);  // tap.c is an output channel of the original problem
    col_off[k] = tap.c * ws.n + (g.R - 1 - tap.r) * ws.h + (g.S - 1 - tap.s) * ws.w;
  }
  const OffsetMatrix<T> w{weight.data_ptr<T>(), row_off.data(), col_off.data()};
  // A thin problem (1 to 3 channels of grad_input) runs the direct kernel, which writes rows
  // of contiguous pixels: a channels-last grad_input is computed in NCHW, then copied.
  const int version = kernel_version(OpFamily::conv2d);
  const bool via_rows = (version == 0 || version == 4) && thin_direct_applies(t, kRowMajor) &&
                        Strides4(grad_input).w != 1;
  at::Tensor out = via_rows ? at::empty(grad_input.sizes(), grad_input.options()) : grad_input;
  convolve(grad_output.data_ptr<T>(), Strides4(grad_output), w, static_cast<const T*>(nullptr),
           out.data_ptr<T>(), Strides4(out), t, false);
  if (via_rows) {
    from_planes(out.data_ptr<T>(), grad_input.data_ptr<T>(), Strides4(grad_input), g.N, g.C, g.H,
                g.W);
  }
}

// At stride 2 and up (and at stride 1 with more padding than grad_input_is_convolution
// takes), grad_input splits into stride_h x stride_w phases, the input pixels
// (a + i * stride_h, b + j * stride_w). Only some taps reach a phase (those r with
// a + pad_top - r * dilation_h a multiple of stride_h; likewise s), and the phase is a
// stride-1 convolution of grad_output with them, transposed and flipped: convolve() computes
// it into a dense tensor, which is then copied into the phase's pixels. No col2im scatter;
// every element is written once, by one phase. A phase that no tap reaches (three of the
// four of a 1x1 kernel at stride 2) is zero.
//
// Against col2im (two threads, Zen 4 VM, ms): 3x3 stride 2, 8x64x56x56 <- 128 16.4 -> 10.3,
// 8x128x28x28 <- 256 10.4 -> 8.6, 8x256x14x14 <- 512 9.9 -> 7.6-8.5; channels-last
// 8x64x56x56 <- 128 17.5 -> 6.6; 1x1 stride 2, 8x64x56x56 <- 128 1.88 -> 1.0-1.15; a first
// layer 8x3x224x224 <- 32 7.7 -> 3.9-5.1; 7x7 stride 2 (ResNet's stem) 39 -> 27-33. Where
// the phases have few columns (images x phase pixels, under kPhaseMinColumns) each phase's
// GEMM is too small to share out: 8x128x8x8 <- 256 1.03 -> 1.58, 1x256x14x14 <- 256
// 0.89 -> 0.99-1.49, 8x512x7x7 <- 512 5.7 -> 6.7, so NCHW problems that small keep col2im;
// channels-last ones (col2im's scatter over pixels C apart is slower) measured 1.0-1.5x
// faster by phases at those sizes too.
constexpr int64_t kPhaseMinColumns = 256;

bool grad_input_by_phases_pays(const ConvGeometry& g, const Strides4& dxs) {
  return dxs.c == 1 ||
         g.N * ceil_div(g.H, g.p.stride_h) * ceil_div(g.W, g.p.stride_w) >= kPhaseMinColumns;
}

// One dimension of a phase: position i of phase a reads grad_output at
// i + first + k * dilation through tap taps[k], k = 0, 1, ... (the taps in descending order).
struct PhaseTaps {
  std::vector<int64_t> taps;
  int64_t first = 0, dilation = 1;

  PhaseTaps(int64_t a, int64_t stride, int64_t pad, int64_t kernel_dilation, int64_t R) {
    for (int64_t r = R - 1; r >= 0; --r) {
      const int64_t e = a + pad - r * kernel_dilation;  // stride * the grad_output offset
      if (((e % stride) + stride) % stride != 0) continue;
      if (taps.empty()) {
        first = e / stride;
      } else if (taps.size() == 1) {
        dilation = e / stride - first;  // the taps that reach a phase are evenly spaced
      }
      taps.push_back(r);
    }
  }
  int64_t count() const { return static_cast<int64_t>(taps.size()); }
};

template <typename T>
void conv2d_grad_input_by_phases(const at::Tensor& grad_output, const at::Tensor& weight,
                                 at::Tensor& grad_input, const ConvGeometry& g) {
  const Strides4 ws(weight), dys(grad_output), dxs(grad_input);
  const int64_t sh = g.p.stride_h, sw = g.p.stride_w;
  std::vector<PhaseTaps> row_phases, col_phases;
  for (int64_t a = 0; a < std::min(sh, g.H); ++a) {
    row_phases.emplace_back(a, sh, g.p.pad_top, g.p.dilation_h, g.R);
  }
  for (int64_t b = 0; b < std::min(sw, g.W); ++b) {
    col_phases.emplace_back(b, sw, g.p.pad_left, g.p.dilation_w, g.S);
  }
  // A phase reads grad_output from row `first` and column `first` on: a positive start moves
  // the operand, a negative one is padding. Phases that read nothing are zero.
  const auto reads = [&](const PhaseTaps& ph, int64_t extent) {
    return ph.count() > 0 && std::max<int64_t>(ph.first, 0) < extent;
  };
  bool all = true;
  for (const PhaseTaps& rows : row_phases) {
    for (const PhaseTaps& cols : col_phases) all = all && reads(rows, g.P) && reads(cols, g.Q);
  }
  if (!all) grad_input.zero_();
  // Each phase is computed into a dense tensor (whose layout follows grad_input's), then
  // copied into its pixels: the kernels convolve() picks write dense outputs best (the
  // channels-last GEMM and the direct 1x1 and thin kernels apply only to them).
  const bool channels_last = dxs.c == 1 && g.C > 1;
  const Scratch<T> dense(kIntermediate, g.N * g.C * ceil_div(g.H, sh) * ceil_div(g.W, sw));
  const std::vector<int64_t> row_off = transposed_weight_rows(g, ws);
  for (int64_t a = 0; a < static_cast<int64_t>(row_phases.size()); ++a) {
    const PhaseTaps& rows = row_phases[a];
    for (int64_t b = 0; b < static_cast<int64_t>(col_phases.size()); ++b) {
      const PhaseTaps& cols = col_phases[b];
      if (!reads(rows, g.P) || !reads(cols, g.Q)) continue;
      const int64_t Hi = ceil_div(g.H - a, sh), Wi = ceil_div(g.W - b, sw);
      const int64_t skip_h = std::max<int64_t>(rows.first, 0);
      const int64_t skip_w = std::max<int64_t>(cols.first, 0);
      Conv2dParams p = g.p;
      p.stride_h = p.stride_w = 1;
      p.dilation_h = rows.dilation;
      p.dilation_w = cols.dilation;
      p.pad_top = std::max<int64_t>(-rows.first, 0);
      p.pad_left = std::max<int64_t>(-cols.first, 0);
      p.pad_bottom = p.pad_right = 0;  // unused: the output size is given
      const int64_t t_input[4] = {g.N, g.K, g.P - skip_h, g.Q - skip_w};
      const int64_t t_weight[4] = {g.C, g.Kg, rows.count(), cols.count()};
      const ConvGeometry t(t_input, t_weight, Hi, Wi, p);
      std::vector<int64_t> col_off(t.reduction());
      for (int64_t k = 0; k < t.reduction(); ++k) {
        const KernelTap tap(k, t);  // tap.c is an output channel of the original problem
        col_off[k] = tap.c * ws.n + rows.taps[tap.r] * ws.h + cols.taps[tap.s] * ws.w;
      }
      const OffsetMatrix<T> w{weight.data_ptr<T>(), row_off.data(), col_off.data()};
      const Strides4 ds = channels_last ? Strides4(Hi * Wi * g.C, 1, Wi * g.C, g.C)
                                        : Strides4(g.C * Hi * Wi, Hi * Wi, Wi, 1);
      convolve(grad_output.data_ptr<T>() + skip_h * dys.h + skip_w * dys.w, dys, w,
               static_cast<const T*>(nullptr), dense.get(), ds, t, false);
      // into grad_input's pixels (a + i * sh, b + j * sw)
      T* dx = grad_input.data_ptr<T>() + a * dxs.h + b * dxs.w;
      const T* src = dense.get();
      if (channels_last) {
        at::parallel_for(0, g.N * Hi, 1, [&](int64_t begin, int64_t end) {
          for (int64_t row = begin; row < end; ++row) {
            const int64_t n = row / Hi, i = row % Hi;
            for (int64_t j = 0; j < Wi; ++j) {
              const T* from = src + n * ds.n + i * ds.h + j * ds.w;
              std::copy(from, from + g.C, dx + n * dxs.n + i * sh * dxs.h + j * sw * dxs.w);
            }
          }
        });
      } else {
        at::parallel_for(0, g.N * g.C * Hi, 1, [&](int64_t begin, int64_t end) {
          for (int64_t row = begin; row < end; ++row) {
            const int64_t n = row / (g.C * Hi), c = (row / Hi) % g.C, i = row % Hi;
            const T* from = src + n * ds.n + c * ds.c + i * ds.h;
            T* to = dx + n * dxs.n + c * dxs.c + i * sh * dxs.h;
            for (int64_t j = 0; j < Wi; ++j) to[j * sw * dxs.w] = from[j];
          }
        });
      }
    }
  }
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
    const Scratch<T> a_pack(kResult, round_up(max_rows, t.mr) * g.Kg);
    const Scratch<T> b_pack(kPanelB, kReductionBlock * round_up(kColumnTile, t.nr));
    const Scratch<T> col(kTile, max_rows * kColumnTile);
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
               a_pack.get() + k0 * rows_padded);
      }

      T* dx_chunk = dx + (group * g.Cg + c_begin) * dxs.c;
      for (int64_t q0 = n_begin * g.pixels(); q0 < q_end; q0 += kColumnTile) {
        tile.fill(g, q0, std::min(kColumnTile, q_end - q0), dxs);
        const int64_t cols = tile.count;
        tile.output_offsets(g, dys, dy_cols.data());
        const OffsetMatrix<T> dy_tile{dy + group * g.Kg * dys.c, dy_rows.data(), dy_cols.data()};

        std::fill(col.get(), col.get() + rows * cols, T(0));
        for (int64_t k0 = 0; k0 < g.Kg; k0 += kReductionBlock) {
          const int64_t kc = std::min(kReductionBlock, g.Kg - k0);
          pack_b(dy_tile, k0, kc, cols, t.nr, b_pack.get());
          gemm_packed(rows, cols, kc, a_pack.get() + k0 * rows_padded, b_pack.get(),
                      col.get(), cols, 1);
        }
        // col2im: scatter-add each im2col row back onto the input it was read from.
        for (int64_t row = 0; row < rows; ++row) {
          const KernelTap tap(row, g);
          T* dxc = dx_chunk + tap.c * dxs.c;
          const int64_t dh = tap.r * g.p.dilation_h, dw = tap.s * g.p.dilation_w;
          const T* col_row = col.get() + row * cols;
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

// grad_weight per group is dW = dY * X_col^T (Kg x CgRS), or, when a layer has fewer
// (c, r, s) taps than output channels and than the micro-kernel's NR (a first layer: CgRS =
// 9 or 27), dW^T = X_col * dY^T, so that the wide NR side of the micro-kernel falls on the
// larger dimension. (Only then: dW^T is C stored column-major, which the micro-kernel adds
// to element by element; MobileNet's 512 -> 1024 1x1 layer ran 1.07x faster as dW.)
// Tasks own a (rows x cols) tile of that product. When there are too few tiles to keep the
// cores busy, the reduction over the batch's columns is also cut into `splits` ranges summed
// into partial copies of dW, then added in order. The splits are functions of the shape
// alone, so the result does not depend on the thread count. With few tiles, the rows are cut
// into more, smaller tasks until the tiles divide evenly among the threads (512 rows in tasks
// of 240, 240 and 32 kept one of 2 cores idle for half the time); where a row is cut changes
// no sum's order.
struct GradWeightSplit {
  bool taps_as_rows;
  int64_t rows, cols;  // of one group's GEMM
  int64_t row_block;   // rows per task: at most kWeightRowsPerTask, a multiple of MR
  int64_t row_tasks, col_tasks, splits;
};

GradWeightSplit grad_weight_split(const ConvGeometry& g, int64_t element_size, int64_t mr,
                                   int64_t nr) {
  constexpr int64_t kWantTasks = 8, kMinColumnsPerSplit = 1024;
  // The partial copies of dW stay within the larger of 64 MiB and the input's size.
  const int64_t budget = g.max_workspace_bytes(element_size);
  const int64_t copies_fit = budget / std::max<int64_t>(g.K * g.reduction() * element_size, 1);
  const bool taps_as_rows = g.reduction() < g.Kg && g.reduction() < nr;
  const int64_t rows = taps_as_rows ? g.reduction() : g.Kg;
  const int64_t cols = taps_as_rows ? g.Kg : g.reduction();
  const int64_t col_tasks = ceil_div(cols, kWeightColsPerTask);
  // The reduction's splits follow from the shape alone (base_tiles), never the thread count.
  const int64_t base_tiles = g.G * ceil_div(rows, kWeightRowsPerTask) * col_tasks;
  const int64_t threads = at::get_num_threads();
  int64_t row_tasks = ceil_div(rows, kWeightRowsPerTask);
  while (g.G * row_tasks * col_tasks < 4 * threads && (g.G * row_tasks * col_tasks) % threads != 0 &&
         rows >= (row_tasks + 1) * mr) {
    ++row_tasks;
  }
  const int64_t row_block = round_up(ceil_div(rows, row_tasks), mr);
  row_tasks = ceil_div(rows, row_block);
  const int64_t splits = std::clamp<int64_t>(
      std::min({ceil_div(kWantTasks, base_tiles), g.columns() / kMinColumnsPerSplit, 1 + copies_fit}),
      1, kWantTasks);
  return {taps_as_rows, rows, cols, row_block, row_tasks, col_tasks, splits};
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
  const GradWeightSplit split = grad_weight_split(g, sizeof(T), t.mr, t.nr);
  const int64_t tiles = g.G * split.row_tasks * split.col_tasks;
  const int64_t columns_per_split = round_up(ceil_div(g.columns(), split.splits), kReductionBlock);
  const std::vector<int64_t> dy_rows = strided_offsets(g.K, dys.c);
  const TapTable taps(g, xs);
  // Split 0 sums straight into dW; the others into partial copies of it.
  std::vector<T> partial((split.splits - 1) * g.K * red, T(0));

  at::parallel_for(0, split.splits * tiles, 1, [&](int64_t begin, int64_t end) {
    const Scratch<T> a_pack(kTile, round_up(kWeightRowsPerTask, t.mr) * kReductionBlock);
    const Scratch<T> b_pack(kPanelB, round_up(kWeightColsPerTask, t.nr) * kReductionBlock);
    std::vector<int64_t> dy_cols(kReductionBlock);
    ColumnTile tile(kReductionBlock);
    const bool by_gather = prefer_gather(g, xs);
    TapGather gather(g, by_gather ? kReductionBlock : 0);
    const TapGather* gathered = by_gather ? &gather : nullptr;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t s = task / tiles, tile_index = task % tiles;
      const int64_t group = tile_index / (split.row_tasks * split.col_tasks);
      const int64_t r0 = ((tile_index / split.col_tasks) % split.row_tasks) * split.row_block;
      const int64_t c0 = (tile_index % split.col_tasks) * kWeightColsPerTask;
      const int64_t rows = std::min(split.row_block, split.rows - r0);
      const int64_t cols = std::min(kWeightColsPerTask, split.cols - c0);
      T* dw_group = (s == 0 ? dw : partial.data() + (s - 1) * g.K * red) + group * g.Kg * red;
      const OffsetMatrix<T> dy_group{dy + group * g.Kg * dys.c, dy_rows.data(), dy_cols.data()};
      const T* x_group = x + group * g.Cg * xs.c;
      const int64_t q_end = std::min(g.columns(), (s + 1) * columns_per_split);
      for (int64_t q0 = s * columns_per_split; q0 < q_end; q0 += kReductionBlock) {
        tile.fill(g, q0, std::min(kReductionBlock, q_end - q0), xs);
        tile.output_offsets(g, dys, dy_cols.data());
        if (by_gather) gather.fill(g, xs, tile);
        if (split.taps_as_rows) {  // dW^T[tap, k]: C is dW read column-major
          pack_im2col(x_group, xs, g, taps, r0, rows, tile, true, t.mr, a_pack.get(), gathered);
          pack_a(dy_group, c0, cols, 0, tile.count, t.nr, b_pack.get());
          gemm_packed(rows, cols, tile.count, a_pack.get(), b_pack.get(),
                      dw_group + c0 * red + r0, 1, red);
        } else {
          pack_a(dy_group, r0, rows, 0, tile.count, t.mr, a_pack.get());
          pack_im2col(x_group, xs, g, taps, c0, cols, tile, true, t.nr, b_pack.get(), gathered);
          gemm_packed(rows, cols, tile.count, a_pack.get(), b_pack.get(),
                      dw_group + r0 * red + c0, red, 1);
        }
      }
    }
  });
  add_partial_sums(dw, partial, split.splits - 1, g.K * red);
}

// A channels-last tensor copied to contiguous NCHW, row by row (channels_to_planes): the
// direct weight gradient of a first layer reads grad_output's rows of one channel. The copy
// and the direct kernel beat the GEMM, which packs grad_output into panels anyway (Zen 3,
// best of 40, alternating builds: VGG's 3 -> 64 first layer channels-last, 1x3x224x224
// 4.8-7.5 -> 4.3-5.1 ms, 32x3x32x32 3.3-3.9 -> 2.3-2.7 ms).
template <typename T>
at::Tensor planar_copy(const at::Tensor& t) {
  at::Tensor planes =
      at::empty(t.sizes(), t.options().memory_format(c10::MemoryFormat::Contiguous));
  const int64_t C = t.size(1), H = t.size(2), W = t.size(3);
  const Strides4 ts(t);
  const T* src = t.data_ptr<T>();
  T* dst = planes.data_ptr<T>();
  at::parallel_for(0, t.size(0) * H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / H, h = row % H;
      channels_to_planes(src + n * ts.n + h * ts.h, ts.w, C, W, dst + (n * C * H + h) * W, H * W);
    }
  });
  return planes;
}

// ---------------------------------------------------------------------------------------
// Operators

// conv2d, and with `relu` the inference-only conv2d_bias_relu: max(conv2d(...), 0).
at::Tensor conv2d_forward_impl(const char* op, const at::Tensor& input, const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                               c10::IntArrayRef padding, c10::IntArrayRef dilation,
                               int64_t groups, bool relu) {
  const auto params = Conv2dParams::from_lists(op, stride, padding, dilation, groups);
  const auto out_size = check_conv2d_forward(input, weight, bias, params, op);
  const c10::MemoryFormat format = conv_output_memory_format(input, weight);
  if (is_depthwise(input.size(1), groups) && !use_reference() &&
      !direct_over_depthwise(weight.sizes(), params, format)) {
    return depthwise_forward_cpu(input, weight, bias, params, relu);  // cpu/depthwise.cpp
  }
  at::Tensor output = at::empty(out_size, input.options().memory_format(format));
  if (output.numel() == 0) return output;
  const ConvGeometry g(input.sizes(), weight.sizes(), out_size[2], out_size[3], params);
  // The bias is tiny; a contiguous copy lets the kernels index it plainly.
  const at::Tensor bias_c = bias.has_value() ? bias->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "cnnops.conv2d", [&] {
    const scalar_t* b = bias_c.defined() ? bias_c.data_ptr<scalar_t>() : nullptr;
    if (use_reference()) {
      conv2d_forward_reference<scalar_t>(input, weight, b, output, g, relu);
    } else {
      conv2d_forward_gemm<scalar_t>(input, weight, b, output, g, relu);
    }
  });
  return output;
}

at::Tensor conv2d_forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                              const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                              c10::IntArrayRef padding, c10::IntArrayRef dilation,
                              int64_t groups) {
  return conv2d_forward_impl("cnnops.conv2d", input, weight, bias, stride, padding, dilation,
                             groups, false);
}

at::Tensor conv2d_bias_relu_cpu(const at::Tensor& input, const at::Tensor& weight,
                                const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                                c10::IntArrayRef padding, c10::IntArrayRef dilation,
                                int64_t groups) {
  return conv2d_forward_impl("cnnops.conv2d_bias_relu", input, weight, bias, stride, padding,
                             dilation, groups, true);
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
  // at::empty, not at::zeros: at::zeros(size, options) drops the options' memory format.
  at::Tensor grad_input = at::empty(
      input_size,
      grad_output.options().memory_format(conv_output_memory_format(grad_output, weight)));
  if (grad_input.numel() == 0) return grad_input;
  if (grad_output.numel() == 0) return grad_input.zero_();  // K == 0: nothing flows back
  const ConvGeometry g(input_size, weight.sizes(), grad_output.size(2), grad_output.size(3), params);
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnops.conv2d_grad_input", [&] {
    if (use_reference()) {
      conv2d_grad_input_reference<scalar_t>(grad_output, weight, grad_input, g);
      return;
    }
    // (an expanded grad_output took the 1x1 grad_input of 8x128x28x28 -> 256 1.3-1.5x as
    // long as the dense copy: the direct 1x1 kernel reads planes in place)
    const at::Tensor dy = dense_if_expanded(grad_output, grad_input.suggest_memory_format());
    if (grad_input_is_convolution(g)) {
      conv2d_grad_input_as_convolution<scalar_t>(dy, weight, grad_input, g);
    } else if (grad_input_by_phases_pays(g, Strides4(grad_input))) {
      conv2d_grad_input_by_phases<scalar_t>(dy, weight, grad_input, g);
    } else {
      grad_input.zero_();  // col2im accumulates
      conv2d_grad_input_gemm<scalar_t>(dy, weight, grad_input, g);
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
  // The GEMM writes a contiguous K x CgRS matrix; a channels_last result is one small copy.
  const c10::MemoryFormat format = conv_output_memory_format(grad_output, input);
  // (A channels-last grad_output reaches the direct kernel in place or through planar_copy.)
  if (is_depthwise(input.size(1), groups) && !use_reference() &&
      (!direct_over_depthwise(weight_size, params, c10::MemoryFormat::Contiguous) ||
       depthwise_grad_weight_by_planes(grad_output, input, weight_size, params))) {
    return depthwise_grad_weight_cpu(grad_output, input, weight_size, params).contiguous(format);
  }
  // Winograd writes every element of dW; the other kernels add into zeros, which they get
  // from zeroed() (zeroing dW before Winograd: an eighth of 1x512x14x14's samples).
  at::Tensor grad_weight = at::empty(weight_size, grad_output.options());
  if (grad_weight.numel() == 0 || grad_output.numel() == 0) {
    return grad_weight.zero_().contiguous(format);
  }
  const ConvGeometry g(input.sizes(), weight_size, grad_output.size(2), grad_output.size(3), params);
  AT_DISPATCH_FLOATING_TYPES(grad_output.scalar_type(), "cnnops.conv2d_grad_weight", [&] {
    auto zeroed = [&] { return grad_weight.zero_().data_ptr<scalar_t>(); };
    if (use_reference()) {
      grad_weight.zero_();
      conv2d_grad_weight_reference<scalar_t>(grad_output, input, grad_weight, g);
    } else if (use_channels_last_pointwise_grad_weight<scalar_t>(g, Strides4(input),
                                                                 Strides4(grad_output))) {
      channels_last_pointwise_grad_weight(grad_output.data_ptr<scalar_t>(), Strides4(grad_output),
                                          input.data_ptr<scalar_t>(), Strides4(input),
                                          zeroed(), g);
    } else if (use_pointwise_grad_weight<scalar_t>(g, Strides4(input), Strides4(grad_output))) {
      pointwise_grad_weight(grad_output.data_ptr<scalar_t>(), Strides4(grad_output),
                            input.data_ptr<scalar_t>(), Strides4(input), zeroed(), g);
    } else if (use_direct<scalar_t>(g, Strides4(grad_output))) {
      conv2d_grad_weight_direct(grad_output, input, zeroed(), g);
    } else if (Strides4(grad_output).c == 1 && use_direct<scalar_t>(g, kRowMajor)) {
      if (channels_last_direct_grad_weight_applies(g, Strides4(grad_output),
                                                   direct_grad_weight_pixels_tile<scalar_t>().nr)) {
        conv2d_grad_weight_channels_last(grad_output, input, zeroed(), g);
      } else {
        conv2d_grad_weight_direct(planar_copy<scalar_t>(grad_output), input, zeroed(), g);
      }
    } else if (use_flat_direct<scalar_t>(g, kFlatStridedGradWeightRatio)) {
      conv2d_grad_weight_flat(grad_output, input, zeroed(), g);
    } else if (use_winograd<scalar_t>(g)) {
      winograd_grad_weight(grad_output.data_ptr<scalar_t>(), Strides4(grad_output),
                           input.data_ptr<scalar_t>(), Strides4(input),
                           grad_weight.data_ptr<scalar_t>(), g);
    } else {
      grad_weight.zero_();
      conv2d_grad_weight_gemm<scalar_t>(grad_output, input, grad_weight, g);
    }
  });
  return grad_weight.contiguous(format);
}

// grad_input, grad_weight and the bias gradient: on depthwise small planes in one pass
// (depthwise_backward_cpu), elsewhere the two operators and a sum (conv2d_backward.h).
std::tuple<at::Tensor, at::Tensor, at::Tensor> conv2d_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups,
    bool bias) {
  const char* op = "cnnops.conv2d_backward";
  const auto params = Conv2dParams::from_lists(op, stride, padding, dilation, groups);
  check_conv2d_grad_input(grad_output, weight, input.sizes(), params, op);
  check_conv2d_grad_weight(grad_output, input, weight.sizes(), params, op);
  if (is_depthwise(input.size(1), groups) && !use_reference()) {
    if (auto fused = depthwise_backward_cpu(grad_output, input, weight, params, bias,
                                            conv_output_memory_format(grad_output, weight))) {
      auto& [grad_input, grad_weight, grad_bias] = *fused;
      return std::make_tuple(grad_input, grad_weight.contiguous(conv_output_memory_format(
                                             grad_output, input)),
                             grad_bias);
    }
  }
  return conv2d_backward_in_turn(grad_output, input, weight, stride, padding, dilation, groups,
                                 bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnops, CPU, m) {
  m.impl("conv2d", &conv2d_forward_cpu);
  m.impl("conv2d_bias_relu", &conv2d_bias_relu_cpu);
  m.impl("conv2d_grad_input", &conv2d_grad_input_cpu);
  m.impl("conv2d_grad_weight", &conv2d_grad_weight_cpu);
  m.impl("conv2d_backward", &conv2d_backward_cpu);
}

}  // namespace cnnops::cpu
