// Winograd F(2x2, 3x3): the CPU conv2d kernel for 3x3 stride-1 convolutions (version 3 of
// cpu/conv2d.cpp): the forward pass and grad_input (winograd_conv), and grad_weight by the
// transposed algorithm F(3x3, 2x2) (winograd_grad_weight).
//
// Each 2x2 block of output reads a 4x4 patch d of input. The direct sum spends 36
// multiplications on it per (input, output) channel pair; Winograd's minimal filtering
// (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) spends 16:
//
//   Y = A^T [ (G g G^T) .* (B^T d B) ] A      g: the 3x3 filter, .*: elementwise
//
//   B^T = | 1  0 -1  0 |    G = | 1    0    0   |    A^T = | 1  1  1  0 |
//         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//         | 0  1  0 -1 |        | 0    0    1   |
//
// Summed over input channels, the elementwise product is 16 independent GEMMs, one per
// position xi of the 4x4 transformed tile:
//
//   M_xi [Kg x T] = U_xi [Kg x Cg] * V_xi [Cg x T]
//
// with U the transformed filters, V the transformed input patches of T tiles and M the
// transformed outputs. They run on the packed micro-kernel of the implicit GEMM
// (cpu/gemm.h): the filter transform writes U straight into A panels, the input transform
// writes V straight into B panels. The transforms are additions and halvings only.
//
// Work: the 2.25x fewer multiplications, plus transforms whose cost per tile is that of a
// few GEMM channels; version 0 takes Winograd from 16 input channels on (winograd_pays).
// Accuracy: against float64, the float32 error on unit-normal operands measured 0.5x to 2x
// the implicit GEMM's (tests/test_conv2d.py runs every case on this kernel too).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "cpu/conv2d_pack.h"
#include "cpu/gemm.h"
#include "cpu/scratch.h"
#include "cpu/transpose_avx2.h"

namespace cnnops::cpu {

// 3x3, stride 1, no dilation; any padding (the patches read zeros past the border).
inline bool winograd_applies(const ConvGeometry& g) {
  return g.R == 3 && g.S == 3 && g.p.stride_h == 1 && g.p.stride_w == 1 &&
         g.p.dilation_h == 1 && g.p.dilation_w == 1;
}

// Whether version 0 (automatic) picks Winograd: the input transform costs per tile about
// what a few GEMM channels do, so the input channels must be enough to hide it. A layer
// with few output channels still gains: grad_input of a first layer (64 -> 3 channels)
// measured 1.6x faster on Winograd than on the implicit GEMM. The transformed filters
// (16 per pair of channels, against the implicit GEMM's 9) must also stay within the
// workspace bound, the larger of 64 MiB and the input's size.
inline bool winograd_pays(const ConvGeometry& g, int64_t element_size) {
  const int64_t filters = 16 * g.K * g.Cg * element_size;
  const int64_t bound = g.max_workspace_bytes(element_size);
  return winograd_applies(g) && g.Cg >= 16 && filters <= bound;
}

namespace winograd {

constexpr int kPositions = 16;           // xi: positions of the 4x4 transformed tile
constexpr int kLanes = 8;                // tiles transformed together (divides every NR)
constexpr int kMaxRows = 16;             // filters transformed together: at least any MR
constexpr int64_t kChannelBlock = 256;   // input channels per GEMM reduction block
constexpr int64_t kWorkingSet = 1 << 20; // bytes of V and M blocks one task keeps hot
constexpr int64_t kLine = 64;            // bytes of a cache line

// N values of T as one vector (GCC / Clang generic vectors). The transforms work on
// several tiles (filters) side by side, one per lane, and keep their values in vector
// registers from the loads to the stores. (As arrays of scalars, GCC spilled them to the
// stack in 256-bit halves and read them back whole: every such load waited for its two
// stores, which cost the AVX-512 input transform 60% of its time.)
template <typename T, int N>
struct VectorOf {
  typedef T type __attribute__((vector_size(N * sizeof(T))));
};

// kLanes tiles: the input and output transforms' lanes, one tile per lane.
template <typename T>
using Lanes = typename VectorOf<T, kLanes>::type;

template <typename T>
__attribute__((always_inline)) inline void load_lanes(const T* src, Lanes<T>& v) {
  std::memcpy(&v, src, sizeof v);
}

template <typename T>
__attribute__((always_inline)) inline void store_lanes(const Lanes<T>& v, T* dst) {
  std::memcpy(dst, &v, sizeof v);
}

// kMaxRows filters: the filter transform's lanes, one filter per lane.
template <typename T>
using Rows = typename VectorOf<T, kMaxRows>::type;

// U = G f G^T for kMaxRows filters at once: f[r * 3 + s] is row r, column s of the
// filters, u[a * 4 + b] row a, column b of their transforms.
template <typename T>
__attribute__((always_inline)) inline void transform_filters(const Rows<T> (&f)[9],
                                                             Rows<T> (&u)[kPositions]) {
  Rows<T> t[12];  // G f: 4 rows of 3
#pragma GCC unroll 3
  for (int s = 0; s < 3; ++s) {
    const Rows<T> f0 = f[s], f1 = f[3 + s], f2 = f[6 + s];
    t[s] = f0;
    t[3 + s] = T(0.5) * (f0 + f1 + f2);
    t[6 + s] = T(0.5) * (f0 - f1 + f2);
    t[9 + s] = f2;
  }
#pragma GCC unroll 4
  for (int a = 0; a < 4; ++a) {  // (G f) G^T
    const Rows<T> h0 = t[a * 3], h1 = t[a * 3 + 1], h2 = t[a * 3 + 2];
    u[a * 4 + 0] = h0;
    u[a * 4 + 1] = T(0.5) * (h0 + h1 + h2);
    u[a * 4 + 2] = T(0.5) * (h0 - h1 + h2);
    u[a * 4 + 3] = h2;
  }
}

// V = B^T d B for kLanes patches at once: d[i * 4 + j] is row i, column j of the patches.
template <typename T>
__attribute__((always_inline)) inline void transform_input(const Lanes<T> (&d)[kPositions],
                                                           Lanes<T> (&v)[kPositions]) {
  Lanes<T> t[kPositions];  // B^T d
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const Lanes<T> d0 = d[j], d1 = d[4 + j], d2 = d[8 + j], d3 = d[12 + j];
    t[j] = d0 - d2;
    t[4 + j] = d1 + d2;
    t[8 + j] = d2 - d1;
    t[12 + j] = d1 - d3;
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {  // (B^T d) B
    const Lanes<T> t0 = t[i * 4], t1 = t[i * 4 + 1], t2 = t[i * 4 + 2], t3 = t[i * 4 + 3];
    v[i * 4 + 0] = t0 - t2;
    v[i * 4 + 1] = t1 + t2;
    v[i * 4 + 2] = t2 - t1;
    v[i * 4 + 3] = t1 - t3;
  }
}

// Y = A^T m A for kLanes tiles: y[a * 2 + b] is output row a, column b of the tiles.
template <typename T>
__attribute__((always_inline)) inline void transform_output(const Lanes<T> (&m)[kPositions],
                                                            Lanes<T> (&y)[4]) {
  Lanes<T> s[8];  // A^T m: 2 rows of 4
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    const Lanes<T> m0 = m[j], m1 = m[4 + j], m2 = m[8 + j], m3 = m[12 + j];
    s[j] = m0 + m1 + m2;
    s[4 + j] = m1 - m2 - m3;
  }
#pragma GCC unroll 2
  for (int a = 0; a < 2; ++a) {  // (A^T m) A
    const Lanes<T> s0 = s[a * 4], s1 = s[a * 4 + 1], s2 = s[a * 4 + 2], s3 = s[a * 4 + 3];
    y[a * 2 + 0] = s0 + s1 + s2;
    y[a * 2 + 1] = s1 - s2 - s3;
  }
}

// Z = A dy A^T for kMaxRows 2x2 gradient tiles (dy[a * 2 + b][lane]) into 4x4 (z), with A
// the transpose of A^T above. Used by the weight gradient, see winograd_grad_weight.
template <typename T>
inline void transform_grad_output(const T (&dy)[4][kMaxRows], T (&z)[kPositions][kMaxRows]) {
  T s[8][kMaxRows];  // A dy: 4 rows of 2
  for (int b = 0; b < 2; ++b) {
    for (int l = 0; l < kMaxRows; ++l) {
      const T d0 = dy[b][l], d1 = dy[2 + b][l];
      s[b][l] = d0;
      s[2 + b][l] = d0 + d1;
      s[4 + b][l] = d0 - d1;
      s[6 + b][l] = -d1;
    }
  }
  for (int a = 0; a < 4; ++a) {  // (A dy) A^T
    for (int l = 0; l < kMaxRows; ++l) {
      const T s0 = s[a * 2][l], s1 = s[a * 2 + 1][l];
      z[a * 4 + 0][l] = s0;
      z[a * 4 + 1][l] = s0 + s1;
      z[a * 4 + 2][l] = s0 - s1;
      z[a * 4 + 3][l] = -s1;
    }
  }
}

// dW = G^T q G: the 3x3 weight gradient (row-major) of one 4x4 sum q of products.
template <typename T>
inline void transform_grad_weight(const T q[kPositions], T dw[9]) {
  T p[12];  // G^T q: 3 rows of 4
  for (int j = 0; j < 4; ++j) {
    const T q0 = q[j], q1 = q[4 + j], q2 = q[8 + j], q3 = q[12 + j];
    p[j] = q0 + T(0.5) * (q1 + q2);
    p[4 + j] = T(0.5) * (q1 - q2);
    p[8 + j] = T(0.5) * (q1 + q2) + q3;
  }
  for (int r = 0; r < 3; ++r) {  // (G^T q) G
    const T p0 = p[r * 4], p1 = p[r * 4 + 1], p2 = p[r * 4 + 2], p3 = p[r * 4 + 3];
    dw[r * 3 + 0] = p0 + T(0.5) * (p1 + p2);
    dw[r * 3 + 1] = T(0.5) * (p1 - p2);
    dw[r * 3 + 2] = T(0.5) * (p1 + p2) + p3;
  }
}

// The 2x2-output tiles of a call, numbered image by image, row by row.
struct Tiling {
  int64_t rows, cols;  // per image: ceil(P / 2) x ceil(Q / 2)
  int64_t count;       // in the batch

  explicit Tiling(const ConvGeometry& g)
      : rows(ceil_div(g.P, 2)), cols(ceil_div(g.Q, 2)), count(g.N * rows * cols) {}
};

// The geometry of the input zero-padded so that every tile's 4x4 patch lies inside it
// (pad_planes makes the copy): 2 * tile rows + 2 by 2 * tile columns + 2, padding 0.
inline ConvGeometry padded_geometry(const ConvGeometry& g, const Tiling& tiling) {
  ConvGeometry gp = g;
  gp.H = 2 * tiling.rows + 2;
  gp.W = 2 * tiling.cols + 2;
  gp.p.pad_top = gp.p.pad_left = 0;
  return gp;
}

inline Strides4 contiguous_strides(const ConvGeometry& g) {
  return {g.C * g.H * g.W, g.H * g.W, g.W, 1};
}

// Where one block of tiles reads and writes: per tile, the input offsets of its 16 patch
// elements (-1 in the padding) and the output offset of its top-left pixel, with how many
// of its 2 rows / 2 columns lie inside the output. Tiles past the block read all -1, so
// their transformed input is zero.
struct TileBlock {
  int64_t capacity;
  std::vector<int64_t> in_off;   // [16][capacity]
  std::vector<int64_t> out_off;  // [capacity]
  std::vector<int8_t> out_rows, out_cols;
  // Per group of kLanes tiles: whether they are kLanes neighbours on one tile row, clear of
  // the padding and of the output's edge, in a tensor with unit-stride rows. Their patches
  // then start 2 elements apart (in_step2) and their outputs fill two rows of 2 * kLanes
  // contiguous pixels (out_step2): plain strided loads and stores, no gathers.
  std::vector<uint8_t> in_step2, out_step2;

  explicit TileBlock(int64_t capacity_)
      : capacity(capacity_), in_off(kPositions * capacity_), out_off(capacity_),
        out_rows(capacity_), out_cols(capacity_), in_step2(ceil_div(capacity_, kLanes)),
        out_step2(ceil_div(capacity_, kLanes)) {}

  void fill(const ConvGeometry& g, const Tiling& tiling, const Strides4& xs, const Strides4& ys,
            int64_t first, int64_t count) {
    const int64_t per_image = tiling.rows * tiling.cols;
    for (int64_t j = 0; j < capacity; ++j) {
      if (j >= count) {
        for (int ij = 0; ij < kPositions; ++ij) in_off[ij * capacity + j] = -1;
        out_rows[j] = out_cols[j] = 0;
        continue;
      }
      const int64_t tile = first + j, n = tile / per_image;
      const int64_t oh = 2 * ((tile % per_image) / tiling.cols);
      const int64_t ow = 2 * (tile % tiling.cols);
      for (int i = 0; i < 4; ++i) {
        const int64_t ih = oh - g.p.pad_top + i;
        for (int jj = 0; jj < 4; ++jj) {
          const int64_t iw = ow - g.p.pad_left + jj;
          const bool inside = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
          in_off[(i * 4 + jj) * capacity + j] = inside ? n * xs.n + ih * xs.h + iw * xs.w : -1;
        }
      }
      out_off[j] = n * ys.n + oh * ys.h + ow * ys.w;
      out_rows[j] = static_cast<int8_t>(std::min<int64_t>(2, g.P - oh));
      out_cols[j] = static_cast<int8_t>(std::min<int64_t>(2, g.Q - ow));
    }
    for (int64_t j0 = 0; j0 < capacity; j0 += kLanes) {
      bool in = j0 + kLanes <= count && xs.w == 1, out = j0 + kLanes <= count && ys.w == 1;
      for (int l = 0; l < kLanes && in; ++l) {
        for (int ij = 0; ij < kPositions && in; ++ij) {
          const int64_t* off = in_off.data() + ij * capacity + j0;
          in = off[l] >= 0 && off[l] == off[0] + 2 * l;
        }
      }
      for (int l = 0; l < kLanes && out; ++l) {
        out = out_rows[j0 + l] == 2 && out_cols[j0 + l] == 2 &&
              out_off[j0 + l] == out_off[j0] + 2 * l;
      }
      in_step2[j0 / kLanes] = in;
      out_step2[j0 / kLanes] = out;
    }
  }
};

// Tiles per task and how the output channels are cut: as the implicit GEMM's ForwardSplit,
// row blocks appear only when tile blocks alone would leave cores idle, and they share out
// the micro-kernel's MR-row panels as evenly as can be (VGG's 1x512x14x14: 43 panels in 8
// blocks of 5 or 6, where blocks of 6 gave one core 24 and the other 19). Every output
// element is summed in the same order whatever the split (the micro-kernel reduces each
// element of M in order over the channel blocks), so results do not depend on the
// thread count.
struct Split {
  int64_t tiles;         // per task; a multiple of kLanes
  int64_t tiles_padded;  // rounded up to the micro-kernel's NR
  int64_t tile_blocks;
  int64_t row_blocks;
  int64_t panels, mr, rows;  // MR-row panels over the `rows` output channels of a group

  // First output channel of row block b (b = row_blocks: the end).
  int64_t row_begin(int64_t b) const { return std::min(rows, mr * (b * panels / row_blocks)); }
  // The most output channels a row block holds.
  int64_t max_block_rows() const { return mr * ceil_div(panels, row_blocks); }
};

template <typename T>
Split split_work(const ConvGeometry& g, const Tiling& tiling, const GemmTile& t) {
  const int64_t kc = std::min(kChannelBlock, g.Cg);
  // V (16 x kc x tiles) and M (16 x Kg x tiles) of one task fit the working set.
  const int64_t fit = kWorkingSet / (kPositions * (kc + g.Kg) * int64_t{sizeof(T)});
  int64_t tiles = std::clamp<int64_t>(fit / t.nr * t.nr, t.nr, 8 * t.nr);
  tiles = std::min(tiles, round_up(tiling.count, kLanes));
  const int64_t tile_blocks = ceil_div(tiling.count, tiles);

  const int64_t want_tasks = 4 * at::get_num_threads();
  const int64_t max_blocks = std::max<int64_t>(1, g.Kg / (4 * t.mr));
  const int64_t blocks =
      std::clamp<int64_t>(ceil_div(want_tasks, g.G * tile_blocks), 1, max_blocks);
  return {tiles, round_up(tiles, t.nr), tile_blocks, blocks, ceil_div(g.Kg, t.mr), t.mr, g.Kg};
}

}  // namespace winograd

namespace winograd {

// Even and odd elements of 2 * kLanes consecutive values, and the reverse: with vector
// shuffles where the compiler has them (one permute per vector at AVX-512), as element
// loops elsewhere.
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define CNNOPS_SHUFFLE 1
#endif
#endif

template <typename T>
__attribute__((always_inline)) inline void deinterleave(const T* src, Lanes<T>& even,
                                                        Lanes<T>& odd) {
#ifdef CNNOPS_SHUFFLE
  static_assert(kLanes == 8, "the shuffle patterns are written for 8 lanes");
  typedef T Full __attribute__((vector_size(2 * kLanes * sizeof(T))));
  Full v;
  std::memcpy(&v, src, sizeof v);
  even = __builtin_shufflevector(v, v, 0, 2, 4, 6, 8, 10, 12, 14);
  odd = __builtin_shufflevector(v, v, 1, 3, 5, 7, 9, 11, 13, 15);
#else
  for (int l = 0; l < kLanes; ++l) {
    even[l] = src[2 * l];
    odd[l] = src[2 * l + 1];
  }
#endif
}

template <typename T>
__attribute__((always_inline)) inline void interleave(const Lanes<T>& even, const Lanes<T>& odd,
                                                      T* dst) {
#ifdef CNNOPS_SHUFFLE
  typedef T Full __attribute__((vector_size(2 * kLanes * sizeof(T))));
  const Full v =
      __builtin_shufflevector(even, odd, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
  std::memcpy(dst, &v, sizeof v);
#else
  for (int l = 0; l < kLanes; ++l) {
    dst[2 * l] = even[l];
    dst[2 * l + 1] = odd[l];
  }
#endif
}

// V of kc channels (x_channels: the first one's plane) for the block's tiles, into the
// B panels of the 16 V_xi, v_stride apart: element (c, tile j) of V_xi goes to
// v_pack[xi * v_stride + (j / NR) * kc * NR + c * NR + j % NR]. Lane groups from `live` on
// hold no tile and are zero.
template <typename T>
__attribute__((always_inline)) inline void transform_input_channels_body(
    const T* x_channels, const Strides4& xs, const TileBlock& block, int64_t kc, int64_t nt,
    int64_t live, int64_t nr, int64_t v_stride, T* v_pack) {
  for (int64_t c = 0; c < kc; ++c) {
    const T* xc = x_channels + c * xs.c;
    for (int64_t j0 = 0; j0 < nt; j0 += kLanes) {
      Lanes<T> d[kPositions], v[kPositions];
      if (j0 >= live) {
        for (auto& lanes : v) lanes = Lanes<T>{};
      } else if (block.in_step2[j0 / kLanes]) {
        // Patch row i of the kLanes tiles spans columns [0, 2 * kLanes + 2) of one input
        // row: columns j and j + 2 come from the even and odd elements of two loads.
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          const T* row = xc + block.in_off[i * 4 * nt + j0];
          deinterleave(row, d[i * 4], d[i * 4 + 1]);
          deinterleave(row + 2, d[i * 4 + 2], d[i * 4 + 3]);
        }
        transform_input<T>(d, v);
      } else {
#pragma GCC unroll 16
        for (int ij = 0; ij < kPositions; ++ij) {
          const int64_t* off = block.in_off.data() + ij * nt + j0;
          Lanes<T> gathered = {};
#pragma GCC unroll 8
          for (int l = 0; l < kLanes; ++l) gathered[l] = off[l] >= 0 ? xc[off[l]] : T(0);
          d[ij] = gathered;
        }
        transform_input<T>(d, v);
      }
      T* dst = v_pack + (j0 / nr) * kc * nr + c * nr + j0 % nr;
#pragma GCC unroll 16
      for (int xi = 0; xi < kPositions; ++xi) store_lanes(v[xi], dst + xi * v_stride);
    }
  }
}

// The 2x2 output pixels of kLanes tiles, channel i's row of M (M_xi: m_stride apart,
// each row nt long) at column j0: A^T M A plus `add`, ReLU if asked.
template <typename T>
__attribute__((always_inline)) inline void output_pixels(const T* m_row, int64_t m_stride,
                                                         T add, bool relu, Lanes<T> (&out)[4]) {
  Lanes<T> m[kPositions];
#pragma GCC unroll 16
  for (int xi = 0; xi < kPositions; ++xi) load_lanes(m_row + xi * m_stride, m[xi]);
  transform_output<T>(m, out);
#pragma GCC unroll 4
  for (auto& pixel : out) {
    pixel += add;
    // max(pixel, 0) as std::max has it: NaN stays NaN, as in torch.relu
    if (relu) pixel = pixel < T(0) ? Lanes<T>{} : pixel;
  }
}

constexpr int64_t kStagedRows = 64;  // channels-last output: channels staged at once

// transform_output_rows into a channels-last y (ys.c == 1), where a channel at a time would
// store each value into a line of its own (a pixel's channels are one run): per group of
// kLanes tiles, up to kStagedRows channels' pixels are staged pixel-major in L1, then each
// pixel's channels are stored as one run. (VGG's 64 -> 128 channels at 112x112, AVX-512:
// the output transform was a third of the channels-last forward pass, 1.6x the NCHW time.)
template <typename T>
__attribute__((always_inline)) inline void transform_output_channels_last(
    const T* m_block, int64_t m_stride, int64_t nt, int64_t live, int64_t rows, int64_t count,
    const TileBlock& block, const T* bias, bool relu, T* y_rows, const Strides4& ys) {
  T stage[kLanes * 4 * kStagedRows];  // (tile l, pixel a * 2 + b) row of staged channels
  for (int64_t j0 = 0; j0 < live; j0 += kLanes) {
    for (int64_t i0 = 0; i0 < rows; i0 += kStagedRows) {
      const int64_t staged = std::min(kStagedRows, rows - i0);
      for (int64_t i = 0; i < staged; ++i) {
        Lanes<T> out[4];
        output_pixels(m_block + (i0 + i) * nt + j0, m_stride, bias ? bias[i0 + i] : T(0), relu,
                      out);
#pragma GCC unroll 8
        for (int l = 0; l < kLanes; ++l) {
#pragma GCC unroll 4
          for (int p = 0; p < 4; ++p) stage[(l * 4 + p) * kStagedRows + i] = out[p][l];
        }
      }
      for (int l = 0; l < kLanes && j0 + l < count; ++l) {
        const int64_t j = j0 + l;
        for (int a = 0; a < block.out_rows[j]; ++a) {
          for (int b = 0; b < block.out_cols[j]; ++b) {
            const T* run = stage + (l * 4 + a * 2 + b) * kStagedRows;
            std::copy(run, run + staged, y_rows + block.out_off[j] + a * ys.h + b * ys.w + i0);
          }
        }
      }
    }
  }
}

// Y = A^T M A of `rows` output channels (M_xi: rows x nt each, m_stride apart in m_block)
// plus bias, ReLU if asked, written to the block's tiles of y (y_rows: the first channel's
// plane).
template <typename T>
__attribute__((always_inline)) inline void transform_output_rows_body(
    const T* m_block, int64_t m_stride, int64_t nt, int64_t live, int64_t rows, int64_t count,
    const TileBlock& block, const T* bias, bool relu, T* y_rows, const Strides4& ys) {
  if (ys.c == 1 && rows > 1) {
    transform_output_channels_last(m_block, m_stride, nt, live, rows, count, block, bias, relu,
                                   y_rows, ys);
    return;
  }
  for (int64_t i = 0; i < rows; ++i) {
    const T add = bias ? bias[i] : T(0);
    T* y_channel = y_rows + i * ys.c;
    for (int64_t j0 = 0; j0 < live; j0 += kLanes) {
      Lanes<T> out[4];
      output_pixels(m_block + i * nt + j0, m_stride, add, relu, out);
      if (block.out_step2[j0 / kLanes]) {  // two rows of 2 * kLanes contiguous pixels
        for (int a = 0; a < 2; ++a) {
          interleave(out[a * 2], out[a * 2 + 1], y_channel + block.out_off[j0] + a * ys.h);
        }
        continue;
      }
      for (int l = 0; l < kLanes && j0 + l < count; ++l) {
        const int64_t j = j0 + l;
        T* yt = y_channel + block.out_off[j];
        for (int a = 0; a < block.out_rows[j]; ++a) {
          for (int b = 0; b < block.out_cols[j]; ++b) yt[a * ys.h + b * ys.w] = out[a * 2 + b][l];
        }
      }
    }
  }
}

// mr values of src to dst, with mr a constant for the micro-kernels' 12 and 6.
template <typename T>
__attribute__((always_inline)) inline void copy_row(const T* src, int64_t mr, T* dst) {
  if (mr == 12) {
    for (int r = 0; r < 12; ++r) dst[r] = src[r];
  } else if (mr == 6) {
    for (int r = 0; r < 6; ++r) dst[r] = src[r];
  } else {
    for (int64_t r = 0; r < mr; ++r) dst[r] = src[r];
  }
}

// The first mr lanes of u to dst, with mr a constant for the micro-kernels' 12 and 6.
template <typename T>
__attribute__((always_inline)) inline void store_rows(const Rows<T>& u, int64_t mr, T* dst) {
  if (mr == 12) {
    std::memcpy(dst, &u, 12 * sizeof(T));
  } else if (mr == 6) {
    std::memcpy(dst, &u, 6 * sizeof(T));
  } else {
    std::memcpy(dst, &u, mr * sizeof(T));
  }
}

constexpr int64_t kStagedChannels = 16;  // filter transform: input channels gathered at once

// How the taps of a filter row lie in memory, for the filter transform.
enum class FilterRuns {
  scattered,  // anywhere (channels_last, views): gathered through col_off
  unit,       // at unit stride along the whole row (a contiguous weight)
  reversed,   // each channel's 9 taps one run, backwards (grad_input's flipped weight)
};

// Where U_xi of a filter lands when it is computed from the filter flipped both ways: G
// times the flipped filter is G with rows 0 and 3 swapped times the filter, so the flipped
// filter's U is the filter's with rows and columns 0 and 3 swapped.
constexpr int kMirrored[kPositions] = {15, 13, 14, 12, 7, 5, 6, 4, 11, 9, 10, 8, 3, 1, 2, 0};

// U of one A panel: the `live` filters whose rows start at wk[r] (tap (c, r, s) at
// col_off[c * 9 + r * 3 + s]), output channels k0 on of a group whose packed U starts at
// a_group, for all cg input channels. The MR filters are transformed side by side as vector
// lanes, and each U_xi's MR values of a channel written as a row. The taps of
// kStagedChannels channels are first copied filter by filter (one run of memory per filter
// where the runs are `unit`) into the lanes of `staged`, then read back as vectors:
// gathered lane by lane into registers, they cost 5 instructions a value.
template <typename T>
__attribute__((always_inline)) inline void transform_filter_panel_body(
    const T* const* wk, const int64_t* col_off, FilterRuns runs, int64_t live, int64_t k0,
    int64_t cg, int64_t mr, int64_t rows_padded, int64_t per_position, T* a_group) {
  const bool unit = runs == FilterRuns::unit;
  // float runs go through 8 x 8 blocks transposed in registers (copied value by value, the
  // staging was a third of 1x512x14x14's filter transform)
  bool by_transposes = false;
#ifdef CNNOPS_X86_INTRINSICS
  by_transposes = std::is_same_v<T, float> && runs != FilterRuns::scattered && avx2_available();
#endif
  // staged then holds reversed runs' filters unflipped: U_xi goes to kMirrored[xi]
  const bool mirrored = by_transposes && runs == FilterRuns::reversed;
  alignas(64) T staged[kStagedChannels * 9][kMaxRows];
  for (auto& taps : staged) std::fill(taps + live, taps + kMaxRows, T(0));  // as gemm.h wants
  for (int64_t cs = 0; cs < cg; cs += kStagedChannels) {
    const int64_t values = std::min(kStagedChannels, cg - cs) * 9;
    const int64_t* offs = col_off + cs * 9;
#ifdef CNNOPS_X86_INTRINSICS
    if constexpr (std::is_same_v<T, float>) {
      if (by_transposes && unit) {  // all the panel's filters at once
        const float* rows[kMaxRows];
        for (int64_t r = 0; r < live; ++r) {
          rows[r] = wk[r] + offs[0];
          for (int64_t i = values; i < 2 * values; i += kLine / int64_t{sizeof(T)}) {
            __builtin_prefetch(rows[r] + i);  // the next block, as below
          }
        }
        transpose_rows_avx2<kMaxRows>(rows, static_cast<int>(live), values, &staged[0][0]);
      } else if (by_transposes) {
        // Each channel's 9 taps read forwards from the run's far end, the filters unflipped,
        // channel by channel through the same transposes; the flip is undone at the store
        // (copied value by value through col_off, the staging was most of 1x512x14x14's
        // grad_input filter transform).
        for (int64_t i = 0; i < values; i += 9) {
          const float* rows[kMaxRows];
          for (int64_t r = 0; r < live; ++r) rows[r] = wk[r] + offs[i + 8];
          transpose_rows_avx2<kMaxRows>(rows, static_cast<int>(live), 9, &staged[i][0]);
        }
      }
    }
#endif
    for (int64_t r = 0; r < live && !by_transposes; ++r) {
      if (unit) {
        const T* w = wk[r] + offs[0];
        // The next block's taps of this filter, fetched while this one is transformed: the
        // weight comes from memory, as MR short runs the hardware prefetcher misses. (Past
        // the last block the hint points past the filter; a prefetch never faults.)
        for (int64_t i = values; i < 2 * values; i += kLine / int64_t{sizeof(T)}) {
          __builtin_prefetch(w + i);
        }
        for (int64_t i = 0; i < values; ++i) staged[i][r] = w[i];
      } else {
        // Another layout, channels_last above all (a tap's channels contiguous, the taps C
        // apart): the next block's line of each tap fetched ahead, likewise.
        if (cs + kStagedChannels < cg) {
          for (int tap = 0; tap < 9; ++tap) {
            __builtin_prefetch(wk[r] + col_off[(cs + kStagedChannels) * 9 + tap]);
          }
        }
        for (int64_t i = 0; i < values; ++i) staged[i][r] = wk[r][offs[i]];
      }
    }
    for (int64_t c = cs; c < cs + values / 9; ++c) {
      Rows<T> f[9], u[kPositions];
#pragma GCC unroll 9
      for (int tap = 0; tap < 9; ++tap) {
        std::memcpy(&f[tap], staged[(c - cs) * 9 + tap], sizeof f[tap]);
      }
      transform_filters<T>(f, u);
      const int64_t c0 = c / kChannelBlock * kChannelBlock;
      const int64_t kc = std::min(kChannelBlock, cg - c0);
      T* dst = a_group + c0 * rows_padded + k0 * kc + (c - c0) * mr;
#pragma GCC unroll 16
      for (int xi = 0; xi < kPositions; ++xi) {
        store_rows(u[xi], mr, dst + (mirrored ? kMirrored[xi] : xi) * per_position);
      }
    }
  }
}

// Z_xi = A dy A^T of `rows` output channels (dy_rows: the first one's plane) for the
// block's tiles, in MR-row panels over them: element (k, tile j) of Z_xi at
// z_pack[xi * rows_padded * count + (k / MR) * count * MR + j * MR + k % MR].
template <typename T>
__attribute__((always_inline)) inline void pack_grad_output_body(
    const T* dy_rows, const Strides4& dys, const TileBlock& block, int64_t rows, int64_t count,
    int64_t mr, int64_t rows_padded, T* z_pack) {
  for (int64_t i0 = 0; i0 < rows; i0 += mr) {
    const int64_t live = std::min(mr, rows - i0);
    T* panel = z_pack + (i0 / mr) * count * mr;
    for (int64_t j = 0; j < count; ++j) {
      T d[4][kMaxRows] = {}, z[kPositions][kMaxRows];
      for (int a = 0; a < block.out_rows[j]; ++a) {
        for (int b = 0; b < block.out_cols[j]; ++b) {
          const T* src = dy_rows + i0 * dys.c + block.out_off[j] + a * dys.h + b * dys.w;
          for (int64_t l = 0; l < live; ++l) d[a * 2 + b][l] = src[l * dys.c];
        }
      }
      transform_grad_output(d, z);
      for (int xi = 0; xi < kPositions; ++xi) {
        copy_row(z[xi], mr, panel + xi * rows_padded * count + j * mr);
      }
    }
  }
}

// V_xi = B^T d B of `cols` input channels (x_cols: the first one's plane of the padded
// input, where every patch lies inside) for the block's tiles, in NR-column panels over
// them: element (tile j, c) of V_xi at
// v_pack[xi * cols_padded * count + (c / NR) * count * NR + j * NR + c % NR]. Channels are
// the vector lanes, so that a panel row is written whole. (Tiles as lanes, read by the
// forward pass's contiguous loads and stored NR apart, measured 1.5x slower.)
template <typename T>
__attribute__((always_inline)) inline void pack_input_channels_body(
    const T* x_cols, const Strides4& xs, const TileBlock& block, int64_t cols, int64_t count,
    int64_t nr, int64_t cols_padded, T* v_pack) {
  for (int64_t cl = 0; cl < cols_padded; cl += kLanes) {
    const int64_t live = std::clamp<int64_t>(cols - cl, 0, kLanes);
    T* panel = v_pack + (cl / nr) * count * nr + cl % nr;
    for (int64_t j = 0; j < count; ++j) {
      Lanes<T> d[kPositions] = {}, v[kPositions];
      for (int ij = 0; ij < kPositions; ++ij) {
        const T* src = x_cols + cl * xs.c + block.in_off[ij * block.capacity + j];
        for (int64_t l = 0; l < live; ++l) d[ij][l] = src[l * xs.c];
      }
      transform_input<T>(d, v);
      for (int xi = 0; xi < kPositions; ++xi) {
        store_lanes(v[xi], panel + xi * cols_padded * count + j * nr);
      }
    }
  }
}

// The transforms are plain loops over kLanes tiles (filters); they are compiled once more for each
// x86 vector ISA, so that those loops vectorise at its width, and chosen by the ISA of
// every CPU kernel (active_isa(), which CNNOPS_CPU_ISA caps).
#define CNNOPS_WINOGRAD_CLONES(name, params, args)                                  \
  template <typename T>                                                             \
  __attribute__((target("avx512f"))) void name##_avx512 params { name##_body args; } \
  template <typename T>                                                             \
  __attribute__((target("avx2,fma"))) void name##_avx2 params { name##_body args; }  \
  template <typename T>                                                             \
  void name params {                                                                \
    if (active_isa() == Isa::avx512) return name##_avx512 args;                     \
    if (active_isa() == Isa::avx2) return name##_avx2 args;                         \
    name##_body args;                                                               \
  }

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
CNNOPS_WINOGRAD_CLONES(transform_filter_panel,
                       (const T* const* wk, const int64_t* col_off, FilterRuns runs,
                        int64_t live, int64_t k0, int64_t cg, int64_t mr, int64_t rows_padded,
                        int64_t per_position, T* a_group),
                       (wk, col_off, runs, live, k0, cg, mr, rows_padded, per_position, a_group))
CNNOPS_WINOGRAD_CLONES(pack_grad_output,
                       (const T* dy_rows, const Strides4& dys, const TileBlock& block,
                        int64_t rows, int64_t count, int64_t mr, int64_t rows_padded,
                        T* z_pack),
                       (dy_rows, dys, block, rows, count, mr, rows_padded, z_pack))
CNNOPS_WINOGRAD_CLONES(pack_input_channels,
                       (const T* x_cols, const Strides4& xs, const TileBlock& block,
                        int64_t cols, int64_t count, int64_t nr, int64_t cols_padded,
                        T* v_pack),
                       (x_cols, xs, block, cols, count, nr, cols_padded, v_pack))
CNNOPS_WINOGRAD_CLONES(transform_input_channels,
                       (const T* x_channels, const Strides4& xs, const TileBlock& block,
                        int64_t kc, int64_t nt, int64_t live, int64_t nr, int64_t v_stride,
                        T* v_pack),
                       (x_channels, xs, block, kc, nt, live, nr, v_stride, v_pack))
CNNOPS_WINOGRAD_CLONES(transform_output_rows,
                       (const T* m_block, int64_t m_stride, int64_t nt, int64_t live,
                        int64_t rows, int64_t count, const TileBlock& block, const T* bias,
                        bool relu, T* y_rows, const Strides4& ys),
                       (m_block, m_stride, nt, live, rows, count, block, bias, relu, y_rows, ys))
#else
template <typename T>
void pack_grad_output(const T* dy_rows, const Strides4& dys, const TileBlock& block,
                      int64_t rows, int64_t count, int64_t mr, int64_t rows_padded, T* z_pack) {
  pack_grad_output_body(dy_rows, dys, block, rows, count, mr, rows_padded, z_pack);
}
template <typename T>
void pack_input_channels(const T* x_cols, const Strides4& xs, const TileBlock& block,
                         int64_t cols, int64_t count, int64_t nr, int64_t cols_padded,
                         T* v_pack) {
  pack_input_channels_body(x_cols, xs, block, cols, count, nr, cols_padded, v_pack);
}
template <typename T>
void transform_filter_panel(const T* const* wk, const int64_t* col_off, FilterRuns runs,
                            int64_t live, int64_t k0, int64_t cg, int64_t mr, int64_t rows_padded,
                            int64_t per_position, T* a_group) {
  transform_filter_panel_body(wk, col_off, runs, live, k0, cg, mr, rows_padded, per_position,
                              a_group);
}
template <typename T>
void transform_input_channels(const T* x_channels, const Strides4& xs, const TileBlock& block,
                              int64_t kc, int64_t nt, int64_t live, int64_t nr, int64_t v_stride,
                              T* v_pack) {
  transform_input_channels_body(x_channels, xs, block, kc, nt, live, nr, v_stride, v_pack);
}
template <typename T>
void transform_output_rows(const T* m_block, int64_t m_stride, int64_t nt, int64_t live,
                           int64_t rows, int64_t count, const TileBlock& block, const T* bias,
                           bool relu, T* y_rows, const Strides4& ys) {
  transform_output_rows_body(m_block, m_stride, nt, live, rows, count, block, bias, relu, y_rows,
                             ys);
}
#endif
#undef CNNOPS_WINOGRAD_CLONES

}  // namespace winograd

// y = conv(x, w) + bias (then ReLU if asked) of geometry g, which winograd_applies to. The
// weight is an OffsetMatrix as for implicit_gemm_conv: rows k in [0, K), columns the
// (c, r, s) taps of one group.
template <typename T>
void winograd_conv(const T* x, const Strides4& xs, const OffsetMatrix<T>& w, const T* bias,
                   T* y, const Strides4& ys, const ConvGeometry& g, bool relu) {
  using namespace winograd;
  const GemmTile t = gemm_tile<T>();
  const int64_t rows_padded = round_up(g.Kg, t.mr);
  // One U_xi of one group, packed; plus a cache line, so that the 16 U_xi do not start a
  // multiple of 4 KiB apart, where their streams would evict each other from L1.
  const int64_t per_position = rows_padded * g.Cg + kLine / int64_t{sizeof(T)};

  // U, packed once: for group gr, position xi and channel block c0, the MR-row panels of
  // U_xi[:, c0 : c0 + kc] start at (gr * 16 + xi) * per_position + c0 * rows_padded.
  // A task transforms one panel's MR filters at a time, channel by channel (the MR
  // filters side by side, as vector lanes), and writes each U_xi's MR values in a row.
  const int64_t panels = rows_padded / t.mr;
  const Scratch<T> a_pack(kOperands, g.G * kPositions * per_position);
  bool unit = true, reversed = true;
  for (int64_t i = 1; i < g.Cg * 9 && unit; ++i) unit = w.col_off[i] == w.col_off[0] + i;
  for (int64_t i = 0; i < g.Cg * 9 && reversed && !unit; ++i) {
    reversed = w.col_off[i] == w.col_off[i / 9 * 9 + 8] + 8 - i % 9;
  }
  const FilterRuns runs = unit       ? FilterRuns::unit
                          : reversed ? FilterRuns::reversed
                                     : FilterRuns::scattered;
  at::parallel_for(0, g.G * panels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t group = task / panels, k0 = (task % panels) * t.mr;
      const int64_t live = std::min(t.mr, g.Kg - k0);  // rows past Kg stay zero (gemm.h)
      T* a_group = a_pack.get() + group * kPositions * per_position;
      const T* wk[kMaxRows];
      for (int64_t r = 0; r < live; ++r) wk[r] = w.base + w.row_off[group * g.Kg + k0 + r];
      transform_filter_panel(wk, w.col_off, runs, live, k0, g.Cg, t.mr, rows_padded,
                             per_position, a_group);
    }
  });

  // The input, zero-padded so that every tile's patch lies inside it: no tile then needs
  // a bounds check, and every group of kLanes tiles on one tile row is read by contiguous
  // loads. gp is the geometry of the padded input.
  const Tiling tiling(g);
  const ConvGeometry gp = padded_geometry(g, tiling);
  const Scratch<T> padded(kInput, g.N * g.C * gp.H * gp.W);
  pad_planes(x, xs, g, gp.H, gp.W, padded.get());
  const Strides4 ps = contiguous_strides(gp);

  const Split split = split_work<T>(g, tiling, t);
  const int64_t nt = split.tiles_padded, blocks_of_rows = split.row_blocks;
  const int64_t tasks = g.G * blocks_of_rows * split.tile_blocks;
  // The 16 V_xi (and M_xi) a cache line more than their size apart: a power of two apart,
  // the transforms' 16 streams of stores (loads) would share the same few L1 sets.
  const int64_t v_stride = std::min(kChannelBlock, g.Cg) * nt + kLine / int64_t{sizeof(T)};
  const int64_t m_stride = split.max_block_rows() * nt + kLine / int64_t{sizeof(T)};
  // V of channels [c0, c0 + kc) of a block of tiles: element (c, tile j) of V_xi at
  // v[xi * v_stride + (j / NR) * kc * NR + (c - c0) * NR + j % NR].
  const int64_t channel_blocks = ceil_div(g.Cg, kChannelBlock);
  auto transform_block = [&](int64_t group, int64_t c0, const TileBlock& block, int64_t count,
                             T* v) {
    transform_input_channels(padded.get() + (group * g.Cg + c0) * ps.c, ps, block,
                             std::min(kChannelBlock, g.Cg - c0), nt, round_up(count, kLanes),
                             t.nr, v_stride, v);
  };
  // Where 4 or more blocks of output channels share a block of tiles (few tiles: VGG's
  // 14x14 layer at batch 1, 49 tiles, 8 row blocks), each (group, tile block, channel
  // block)'s V is transformed once, up front, rather than by every task that uses it: the
  // transform of 1x512x14x14 was a tenth of its forward time, 7/8 of it repeated (forward
  // 3.8-4.0 -> 3.6-3.7 ms). With 2 row blocks (1x512x28x28) sharing measured level or
  // slower: V is then read back from beyond L2 to save one repeat.
  const int64_t shared_units = g.G * split.tile_blocks * channel_blocks;
  const bool share_v =
      blocks_of_rows >= 4 &&
      shared_units * kPositions * v_stride * int64_t{sizeof(T)} <= g.max_workspace_bytes(sizeof(T));
  // (slot kResult: the tasks below hold kPanelB and kTile)
  const Scratch<T> shared_v(kResult, share_v ? shared_units * kPositions * v_stride : 0);
  if (share_v) {
    at::parallel_for(0, shared_units, 1, [&](int64_t begin, int64_t end) {
      TileBlock block(nt);
      for (int64_t unit = begin; unit < end; ++unit) {
        const int64_t cb = unit % channel_blocks, gt = unit / channel_blocks;
        const int64_t first = gt % split.tile_blocks * split.tiles;
        const int64_t count = std::min(split.tiles, tiling.count - first);
        block.fill(gp, tiling, ps, ys, first, count);
        transform_block(gt / split.tile_blocks, cb * kChannelBlock, block, count,
                        shared_v.get() + unit * kPositions * v_stride);
      }
    });
  }
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    const Scratch<T> v_pack(kPanelB, share_v ? 0 : kPositions * v_stride);  // B panels of V_xi
    const Scratch<T> m_block(kTile, kPositions * m_stride);   // M_xi: rows x nt
    TileBlock block(nt);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t group = task / (blocks_of_rows * split.tile_blocks);
      const int64_t row_block = (task / split.tile_blocks) % blocks_of_rows;
      const int64_t m0 = split.row_begin(row_block);
      const int64_t tile_block = task % split.tile_blocks;
      const int64_t first = tile_block * split.tiles;
      const int64_t rows = split.row_begin(row_block + 1) - m0;
      const int64_t count = std::min(split.tiles, tiling.count - first);
      block.fill(gp, tiling, ps, ys, first, count);
      const int64_t live = round_up(count, kLanes);  // lane groups with at least one tile

      std::fill(m_block.get(), m_block.get() + kPositions * m_stride, T(0));
      const T* a_group = a_pack.get() + group * kPositions * per_position;
      for (int64_t c0 = 0; c0 < g.Cg; c0 += kChannelBlock) {
        const int64_t kc = std::min(kChannelBlock, g.Cg - c0);
        const T* v = v_pack.get();
        if (share_v) {
          const int64_t unit = (group * split.tile_blocks + tile_block) * channel_blocks +
                               c0 / kChannelBlock;
          v = shared_v.get() + unit * kPositions * v_stride;
        } else {
          transform_block(group, c0, block, count, v_pack.get());
        }
        // M_xi += U_xi[rows m0.., c0..] * V_xi: rows from panel m0 / MR of the block.
        for (int xi = 0; xi < kPositions; ++xi) {
          gemm_packed(rows, nt, kc, a_group + xi * per_position + c0 * rows_padded + m0 * kc,
                      v + xi * v_stride, m_block.get() + xi * m_stride, nt, 1);
        }
      }

      // Output transform, bias and ReLU, then each tile's 2x2 pixels to their places.
      transform_output_rows(m_block.get(), m_stride, nt, live, rows, count, block,
                            bias ? bias + group * g.Kg + m0 : nullptr, relu,
                            y + (group * g.Kg + m0) * ys.c, ys);
    }
  });
}

}  // namespace cnnops::cpu

namespace cnnops::cpu {

namespace winograd {

// The weight gradient's work: tasks own a block of (output channel rows x input channel
// columns) of the 16 sums Q_xi and reduce them over a range of tiles, then transform their
// block to dW while it is still in cache. When blocks alone are too few to keep cores
// busy, the tiles are cut into `splits` ranges whose dW go to their own copies, added in
// order at the end. All counts are functions of the shape alone (not of the thread
// count), so neither is the result.
struct GradWeightSplit {
  int64_t rows, row_blocks;  // output channels per block: a multiple of MR
  int64_t cols, col_blocks;  // input channels per block: a multiple of kLanes
  int64_t splits, tiles_per_split;
};

constexpr int64_t kGradTiles = 64;  // tiles per packed reduction block

template <typename T>
GradWeightSplit split_grad_weight(const ConvGeometry& g, const Tiling& tiling, const GemmTile& t) {
  constexpr int64_t kWantTasks = 8;
  const int64_t rows = std::min(round_up(g.Kg, t.mr), 16 * t.mr);
  const int64_t cols = std::min(round_up(g.Cg, kLanes), 4 * t.nr);
  const int64_t row_blocks = ceil_div(g.Kg, rows), col_blocks = ceil_div(g.Cg, cols);
  const int64_t blocks = g.G * row_blocks * col_blocks;
  // Copies of dW stay within the larger of 64 MiB and the input's size, as the implicit
  // GEMM's partial weight gradients do.
  const int64_t budget = g.max_workspace_bytes(sizeof(T));
  const int64_t copy_bytes = g.K * g.Cg * 9 * int64_t{sizeof(T)};
  const int64_t splits = std::clamp<int64_t>(
      std::min({ceil_div(kWantTasks, blocks), tiling.count / (4 * kGradTiles),
                1 + budget / copy_bytes}),
      1, kWantTasks);
  const int64_t tiles_per_split = round_up(ceil_div(tiling.count, splits), kGradTiles);
  return {rows, row_blocks, cols, col_blocks, ceil_div(tiling.count, tiles_per_split),
          tiles_per_split};
}

}  // namespace winograd

// dW = conv2d's weight gradient for a geometry winograd_applies to, by the same identity
// read backwards: a 3x3 weight gradient is, per 2x2 tile of dY and 4x4 patch d of x,
//   dW += G^T [ (A dy A^T) .* (B^T d B) ] G
// (the transposed algorithm, Winograd F(3x3, 2x2)). Summed over the tiles of the batch,
// the elementwise products are again 16 GEMMs, now reducing over tiles:
//   Q_xi [Kg x Cg] = Z_xi [Kg x T] * V_xi^T [T x Cg]
// and dW[k, c] = G^T Q[k, c] G at the end. dw is a contiguous K x Cg x 3 x 3 tensor; every
// element is written.
template <typename T>
void winograd_grad_weight(const T* dy, const Strides4& dys, const T* x, const Strides4& xs,
                          T* dw, const ConvGeometry& g) {
  using namespace winograd;
  const GemmTile t = gemm_tile<T>();
  const Tiling tiling(g);
  const GradWeightSplit split = split_grad_weight<T>(g, tiling, t);
  const ConvGeometry gp = padded_geometry(g, tiling);  // as in winograd_conv
  const Scratch<T> padded(kInput, g.N * g.C * gp.H * gp.W);
  pad_planes(x, xs, g, gp.H, gp.W, padded.get());
  const Strides4 ps = contiguous_strides(gp);
  // Split 0 writes dW itself; the others write copies of it, added in order at the end.
  const int64_t dw_size = g.K * g.Cg * 9;
  std::vector<T> partial((split.splits - 1) * dw_size);
  const int64_t blocks = g.G * split.row_blocks * split.col_blocks;

  at::parallel_for(0, split.splits * blocks, 1, [&](int64_t begin, int64_t end) {
    const int64_t rows_padded = round_up(split.rows, t.mr);
    const int64_t cols_padded = round_up(split.cols, t.nr);
    const Scratch<T> z_pack(kPanelB, kPositions * rows_padded * kGradTiles);  // A panels
    const Scratch<T> v_pack(kTile, kPositions * cols_padded * kGradTiles);    // B panels
    const Scratch<T> q(kResult, kPositions * split.rows * split.cols);  // [xi][k][c] of a block
    TileBlock block(kGradTiles);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t s = task / blocks, b = task % blocks;
      const int64_t group = b / (split.row_blocks * split.col_blocks);
      const int64_t k0 = ((b / split.col_blocks) % split.row_blocks) * split.rows;
      const int64_t c0 = (b % split.col_blocks) * split.cols;
      const int64_t rows = std::min(split.rows, g.Kg - k0);
      const int64_t cols = std::min(split.cols, g.Cg - c0);
      const T* dy_block = dy + (group * g.Kg + k0) * dys.c;
      const T* x_block = padded.get() + (group * g.Cg + c0) * ps.c;
      std::fill_n(q.get(), kPositions * rows * cols, T(0));
      const int64_t tile_end = std::min(tiling.count, (s + 1) * split.tiles_per_split);
      for (int64_t first = s * split.tiles_per_split; first < tile_end; first += kGradTiles) {
        const int64_t count = std::min(kGradTiles, tile_end - first);
        block.fill(gp, tiling, ps, dys, first, count);
        pack_grad_output(dy_block, dys, block, rows, count, t.mr, rows_padded, z_pack.get());
        pack_input_channels(x_block, ps, block, cols, count, t.nr, cols_padded, v_pack.get());
        for (int xi = 0; xi < kPositions; ++xi) {
          gemm_packed(rows, cols, count, z_pack.get() + xi * rows_padded * count,
                      v_pack.get() + xi * cols_padded * count, q.get() + xi * rows * cols,
                      cols, 1);
        }
      }
      // dW = G^T Q G for the block's (k, c) pairs.
      T* dw_split = s == 0 ? dw : partial.data() + (s - 1) * dw_size;
      for (int64_t i = 0; i < rows; ++i) {
        T* dw_row = dw_split + ((group * g.Kg + k0 + i) * g.Cg + c0) * 9;
        for (int64_t j = 0; j < cols; ++j) {
          T sum[kPositions];
          for (int xi = 0; xi < kPositions; ++xi) sum[xi] = q.get()[(xi * rows + i) * cols + j];
          transform_grad_weight(sum, dw_row + j * 9);
        }
      }
    }
  });

  for (int64_t s = 1; s < split.splits; ++s) {
    const T* part = partial.data() + (s - 1) * dw_size;
    for (int64_t i = 0; i < dw_size; ++i) dw[i] += part[i];
  }
}

}  // namespace cnnops::cpu
