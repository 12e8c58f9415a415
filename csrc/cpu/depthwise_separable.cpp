// CPU kernels of depthwise_separable_conv2d: a depthwise convolution (M = C * mult channels,
// R x S) whose result D feeds a pointwise (1x1) convolution (K x M) directly.
//
// Letters as in cpu/depthwise.cpp (N, C, H, W, M, R, S, P, Q), plus K output channels.
// Per image, the pointwise half is the GEMM Y[K x PQ] = PW[K x M] * D[M x PQ].
//
// Kernel versions (the "depthwise" family; 0 = automatic: 2, but the forward pass unfused
// within the workspace bound, see forward_unfused):
// version 1: reference. D is materialised by the depthwise kernels, the pointwise product is
//            a plain loop; backward likewise, through a materialised dD.
// version 2: fused. Work is split into tiles of output pixels (a few rows of one image, or
//            several whole small images). Per tile, D is computed for all M channels with the
//            strips of cpu/depthwise_planes.h (planes whose output rows fit in one vector:
//            small_planes_correlate) into a buffer sized for L2, and the direct
//            micro-kernel (gemm.h direct_row) computes Y_tile = PW * D_tile + bias from it in
//            place, the M channels as its taps. D exists one cache-sized tile at a time.
//            Backward recomputes D per tile into the panels of D^T:
//              dPW += dY_tile * D_tile^T   by the packed GEMM, per chunk of tiles (chunks from
//                                          the shape alone), the chunks' partials added in
//                                          order afterwards
//              dD_tile = PW^T * dY_tile    by direct_row from a copy of dY's tile, written to
//                                          a dD buffer (channel-major, M x NPQ)
//            and the depthwise gradients of dD follow (cpu/depthwise.cpp), with
//            d(depthwise_bias) = dD summed over pixels. Every sum runs in an order fixed by
//            the shape: results do not depend on the thread count.
//            Channels-last inputs (multiplier 1): the forward pass fused the other way
//            round where PW fits in L2 (fused_channels_last): per task of output rows, D
//            (pixels x M) by the channels-last depthwise loops, then D * PW^T by the
//            channels-last GEMM micro-kernel (gathered_pixels). Otherwise, and backward,
//            unfused: the depthwise kernels, then the conv2d operators' 1x1 path, both with
//            channels-last loops.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common/depthwise.h"
#include "common/kernel_version.h"
#include "cpu/depthwise.h"
#include "cpu/depthwise_channels_last.h"
#include "cpu/depthwise_planes.h"
#include "cpu/gemm.h"
#include "cpu/scratch.h"
#include "cpu/stream_store.h"
#include "cpu/transpose_avx2.h"

namespace cnnops::cpu {

namespace {

using namespace dw;

constexpr int64_t kTileBytes = 256 * 1024;  // D (forward) or dY (backward) of one tile
constexpr int64_t kMaxWeightChunks = 8;      // backward: chunks of tiles with a dPW partial
constexpr int64_t kMaxPartialElements = int64_t{4} << 20;  // ... all partials together

// Output pixels in tiles: `rows` rows of one image, or `images` whole images when an image
// has fewer pixels than a tile. Tile t's pixels are consecutive in (n, p, q) order. Among
// the sizes between target / 2 and 2 * target, the first (smallest) whose last GEMM panel
// of `nr` columns is nearly full wins; failing that, the fullest.
struct PixelTiles {
  int64_t images, rows, per_image, count;

  PixelTiles(const DwGeometry& g, int64_t target, int64_t nr) {
    const bool whole_images = g.P * g.Q < target;
    const int64_t unit = whole_images ? g.P * g.Q : g.Q;      // pixels per image or per row
    const int64_t most = whole_images ? g.N : g.P;             // images or rows available
    const auto waste = [nr](int64_t pixels) {
      return static_cast<double>(round_up(pixels, nr) - pixels) / round_up(pixels, nr);
    };
    int64_t best = std::clamp<int64_t>(target / unit, 1, most);
    for (int64_t n = std::max<int64_t>(1, target / 2 / unit); n <= most && n * unit <= 2 * target; ++n) {
      if (n * unit < target / 2) continue;
      if (waste(n * unit) <= 1.0 / 16) {
        best = n;
        break;
      }
      if (waste(n * unit) < waste(best * unit)) best = n;
    }
    // The same number of tiles, evened out: 8 images in tiles of 5 would be tiles of 5 and 3.
    best = ceil_div(most, ceil_div(most, best));
    images = whole_images ? best : 1;
    rows = whole_images ? g.P : best;
    per_image = ceil_div(g.P, rows);
    count = ceil_div(g.N, images) * per_image;
  }

  int64_t max_pixels(const DwGeometry& g) const { return images * rows * g.Q; }
};

// Output pixels per tile: a tile's buffer of `channels` rows (D forward, dY and D backward)
// about kTileBytes, so that it stays in L2 while the micro-kernels sweep it, and at least
// `fewest` pixels. The backward pass asks for 256: on MobileNet's 14x14 and 7x7 blocks (512
// and 1024 channels) its packed GEMM over 256 pixels instead of 128 measured 10-20% faster.
int64_t tile_pixels(int64_t channels, int64_t element_bytes, int64_t fewest) {
  return std::clamp<int64_t>(kTileBytes / (channels * element_bytes), fewest, 512);
}

struct Tile {
  int64_t n0, images, p0, rows, pixels;
  Tile(const PixelTiles& t, const DwGeometry& g, int64_t index)
      : n0((index / t.per_image) * t.images), images(std::min(t.images, g.N - n0)),
        p0((index % t.per_image) * t.rows), rows(std::min(t.rows, g.P - p0)),
        pixels(images * rows * g.Q) {}

  // The tile's first pixel in (n, p, q) order.
  int64_t first_pixel(const DwGeometry& g) const { return (n0 * g.P + p0) * g.Q; }
};

// Packs the rows x cols matrix A[i][c] = src[i * row_stride + c * col_stride] into MR-row
// panels over the whole of c, as direct_row (gemm.h) reads its weights: panel b at dst + b *
// cols * mr, dst[(b * cols + c) * mr + i] = A[b * mr + i][c], zero past row `rows`; dst holds
// ceil(rows / mr) * cols * mr elements. Panels are packed in parallel; from a row-major A, as
// a transpose: floats with AVX2 8 x 8 at a time in registers (panels of 6, 12, 16 or 32 rows:
// the GEMM's MR and NR), else in chunks of 64 columns (reads along rows, writes within a few
// KB).
template <typename T>
void pack_panels(const T* src, int64_t row_stride, int64_t col_stride, int64_t rows,
                 int64_t cols, int64_t mr, T* dst) {
  const int64_t panels = ceil_div(rows, mr);
  at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t valid = std::min(mr, rows - b * mr);
      const T* a = src + b * mr * row_stride;
      T* panel = dst + b * cols * mr;
#ifdef CNNOPS_X86_INTRINSICS
      if constexpr (std::is_same_v<T, float>) {
        if (col_stride == 1 && transposable_width(mr) && avx2_available()) {
          const float* row[32];
          for (int64_t i = 0; i < valid; ++i) row[i] = a + i * row_stride;
          const int live = static_cast<int>(valid);
          switch (mr) {
            case 6: transpose_rows_avx2<6>(row, live, cols, panel); break;
            case 12: transpose_rows_avx2<12>(row, live, cols, panel); break;
            case 16: transpose_rows_avx2<16>(row, live, cols, panel); break;
            default: transpose_rows_avx2<32>(row, live, cols, panel); break;
          }
          continue;
        }
      }
#endif
      if (valid < mr) std::fill(panel, panel + cols * mr, T(0));
      if (row_stride < col_stride) {  // A's columns contiguous: a panel's rows side by side
        for (int64_t c = 0; c < cols; ++c) {
          for (int64_t i = 0; i < valid; ++i) panel[c * mr + i] = a[i * row_stride + c * col_stride];
        }
        continue;
      }
      for (int64_t c0 = 0; c0 < cols; c0 += 64) {
        const int64_t c1 = std::min(cols, c0 + 64);
        for (int64_t i = 0; i < valid; ++i) {
          for (int64_t c = c0; c < c1; ++c) panel[c * mr + i] = a[i * row_stride + c * col_stride];
        }
      }
    }
  });
}

// Computes D for one tile, one depthwise channel at a time: compute writes channel k
// to out(k), D[n0 + img, k, p0 + row, q] at out(k)[(img * rows + row) * Q + q], nothing past
// the tile's pixels.
template <typename T>
class DepthwiseTile {
 public:
  DepthwiseTile(const at::Tensor& input, const at::Tensor& weight, const T* bias,
                const DwGeometry& g, const PixelTiles& tiles)
      : g_(g), x_(input.data_ptr<T>()), xs_(input), taps_(weight_taps<T>(weight, g)),
        strip_taps_(g), bias_(bias), block_(channel_block<T>(input, g.C)),
        largest_(g, 0, tiles.rows), strips_(block_, largest_, g),
        src_(g.taps()), offsets_(g.taps()),
        small_(grid_beats_small_planes<T>(g)
                   ? std::nullopt
                   : small_planes_forward<T>(g, xs_, Strides4(0, 0, g.Q, 1))) {}

  template <typename Out>
  void compute(const Tile& tile, int64_t k_begin, int64_t k_end, const Out& out) {
    const int64_t image_stride = tile.rows * g_.Q;
    if (small_) {  // rows of one vector: straight from the input, rows Q apart
      SmallPlanes sp = *small_;
      sp.P = tile.rows;
      sp.pad_top -= tile.p0 * g_.p.stride_h;  // output row 0 is the tile's row p0
      for (int64_t k = k_begin; k < k_end; ++k) {
        T* d = out(k);
        for (int64_t img = 0; img < tile.images; ++img) {
          small_planes_correlate(sp, k, 1, x_ + (tile.n0 + img) * xs_.n, xs_.c, taps_.data(),
                                 bias_, false, d + img * image_stride, 0);
        }
      }
      return;
    }
    const StripLayout L(g_, tile.p0, tile.rows);
    L.offsets(strip_taps_, offsets_.data());
    for (int64_t k = k_begin; k < k_end; ++k) {
      const int64_t c = k / g_.mult;
      T* d = out(k);
      for (int64_t img = 0; img < tile.images; ++img) {
        const int64_t n = tile.n0 + img;
        // Strips hold a block of channels of one image; refill when c or n leaves it.
        if (n != filled_n_ || c < filled_c_ || c >= filled_c_ + filled_count_ || !L.same_as(filled_)) {
          filled_n_ = n;
          filled_c_ = c;
          filled_count_ = std::min(block_, g_.C - c);
          filled_ = L;
          strips_.fill(x_ + n * xs_.n + c * xs_.c, xs_, filled_count_, L);
        }
        for (int64_t t = 0; t < g_.taps(); ++t) src_[t] = strips_.strip(c - filled_c_) + offsets_[t];
        taps_correlate_rows(L.rows, g_.Q, static_cast<int>(g_.taps()), src_.data(), L.sub_w,
                            taps_.data() + k * g_.taps(), bias_ ? bias_[k] : T(0),
                            d + img * image_stride, g_.Q);
      }
    }
  }

 private:
  const DwGeometry& g_;
  const T* x_;
  Strides4 xs_;
  std::vector<T> taps_;
  StripTaps strip_taps_;
  const T* bias_;
  int64_t block_;
  StripLayout largest_;
  StripBuffer<T> strips_;
  std::vector<const T*> src_;
  std::vector<int64_t> offsets_;
  int64_t filled_n_ = -1, filled_c_ = -1, filled_count_ = 0;
  StripLayout filled_{largest_};
  std::optional<SmallPlanes> small_;  // the small-plane kernel's geometry, where it applies
};

// ---------------------------------------------------------------------------------------
// version 2: fused

// Scratch of `count` elements whose start is aligned to 64 bytes (a cache line): rows of a
// pitch that is a multiple of the vector width then never straddle one.
template <typename T>
class AlignedScratch {
 public:
  AlignedScratch(ScratchSlot slot, int64_t count) : scratch_(slot, count + kSlack) {
    const auto address = reinterpret_cast<std::uintptr_t>(scratch_.get());
    data_ = reinterpret_cast<T*>((address + 63) & ~std::uintptr_t{63});
  }
  T* get() const { return data_; }

 private:
  static constexpr int64_t kSlack = (64 + sizeof(T) - 1) / sizeof(T);
  Scratch<T> scratch_;
  T* data_;
};

// The forward pass, per tile of output pixels: D for all M channels of the tile, channel m's
// pixels at d[m * pitch + i] (i in the tile's (n, p, q) order), then the pointwise half by
// the direct micro-kernel (gemm.h direct_row) with the M channels as its taps: MR output
// channels of PW's panels broadcast against NR pixels of D per step, no packing of D. A tile
// of rows of one image is a run of every NCHW output plane and is written in place, bias
// included; tiles of several images and channels-last outputs go through a buffer of MR
// rows.
template <typename T>
void separable_forward_fused(const at::Tensor& input, const at::Tensor& dw_weight,
                             const T* dw_bias, const at::Tensor& pw_weight, const T* pw_bias,
                             at::Tensor& output, const DwGeometry& g, int64_t K) {
  const GemmTile gt = gemm_tile<T>();
  const int64_t M = g.M, blocks = ceil_div(K, gt.mr);
  // PW in MR-row panels over the whole reduction (the M channels), zero past row K.
  const Scratch<T> w_pack(kOperands, blocks * M * gt.mr);
  pack_panels(pw_weight.data_ptr<T>(), pw_weight.stride(0), pw_weight.stride(1), K, M, gt.mr,
              w_pack.get());
  T* y = output.data_ptr<T>();
  const Strides4 ys(output);
  const PixelTiles tiles(g, tile_pixels(M, sizeof(T), 128), gt.nr);
  const int64_t pitch = round_up(tiles.max_pixels(g), gt.nr);
  std::vector<int64_t> d_off(M);
  for (int64_t m = 0; m < M; ++m) d_off[m] = m * pitch;
  const bool planes_in_rows = ys.w == 1 && ys.h == g.Q;  // NCHW: a plane's rows back to back

  at::parallel_for(0, tiles.count, 1, [&](int64_t begin, int64_t end) {
    DepthwiseTile<T> depthwise(input, dw_weight, dw_bias, g, tiles);
    const AlignedScratch<T> d_tile(kPanelB, M * pitch);
    const AlignedScratch<T> c_rows(kTile, gt.mr * pitch);
    T* d = d_tile.get();
    for (int64_t index = begin; index < end; ++index) {
      const Tile tile(tiles, g, index);
      const int64_t cols = tile.pixels;
      depthwise.compute(tile, 0, M, [&](int64_t k) { return d + k * pitch; });
      // the last vector's lanes past the tile are computed and dropped: keep them finite
      for (int64_t k = 0; k < M; ++k) {
        std::fill(d + k * pitch + cols, d + k * pitch + round_up(cols, gt.nr), T(0));
      }
      const bool in_place = planes_in_rows && tile.images == 1;
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t k0 = b * gt.mr;
        const int m_valid = static_cast<int>(std::min(gt.mr, K - k0));
        const T* w_block = w_pack.get() + b * M * gt.mr;
        const T* bias_block = pw_bias ? pw_bias + k0 : nullptr;
        if (in_place) {
          T* y_block = y + tile.n0 * ys.n + k0 * ys.c + tile.p0 * g.Q;
          direct_row(M, d_off.data(), d, w_block, cols, y_block, ys.c, m_valid, bias_block, false);
          continue;
        }
        T* c = c_rows.get();
        direct_row(M, d_off.data(), d, w_block, cols, c, pitch, m_valid, bias_block, false);
        int64_t i = 0;
        for (int64_t img = 0; img < tile.images; ++img) {
          for (int64_t r = 0; r < tile.rows; ++r, i += g.Q) {
            T* y_row = y + (tile.n0 + img) * ys.n + (tile.p0 + r) * ys.h + k0 * ys.c;
            if (ys.c == 1) {  // channels_last: the block's channels are innermost
              for (int64_t q = 0; q < g.Q; ++q) {
                for (int64_t kk = 0; kk < m_valid; ++kk) y_row[q * ys.w + kk] = c[kk * pitch + i + q];
              }
              continue;
            }
            for (int64_t kk = 0; kk < m_valid; ++kk) {
              const T* c_row = c + kk * pitch + i;
              T* dst = y_row + kk * ys.c;
              for (int64_t q = 0; q < g.Q; ++q) dst[q * ys.w] = c_row[q];
            }
          }
        }
      }
    }
  });
}

// The forward pass between channels-last tensors (channel multiplier 1, the output dense
// N x P x Q x K): per task of whole output rows, D of those rows (pixels x M, channels
// innermost, as the channels-last depthwise kernels write it) into a buffer, then
// Y_rows = D * PW^T + bias by gathered_pixels, MR pixels of D read in place times NR output
// channels of PW^T's panels, into a tile written out row by row (streamed past the caches
// for large outputs, as conv2d's channels_last_gemm). Unfused, D went to memory and back:
// MobileNet's first block, 8x32x112x112 -> 64, took 1.29x its NCHW time.
template <typename T>
void separable_forward_channels_last(const at::Tensor& input, const at::Tensor& dw_weight,
                                     const T* dw_bias, const at::Tensor& pw_weight,
                                     const T* pw_bias, at::Tensor& output, const DwGeometry& g,
                                     int64_t K) {
  constexpr int64_t kTaskPixels = 192;  // D of a task: within L2
  const GemmTile gt = gemm_tile<T>();
  const int64_t M = g.M, col_panels = ceil_div(K, gt.nr);
  // PW^T in NR-column panels over the whole reduction (the M channels), zero past column K.
  const Scratch<T> b_pack(kOperands, col_panels * M * gt.nr);
  pack_panels(pw_weight.data_ptr<T>(), pw_weight.stride(0), pw_weight.stride(1), K, M, gt.nr,
              b_pack.get());
  const ChannelTaps taps(g);
  const std::vector<T> wt = channel_weights<T>(dw_weight, g);
  std::vector<int64_t> tap_off(M);
  for (int64_t m = 0; m < M; ++m) tap_off[m] = m;
  const T* x = input.data_ptr<T>();
  const Strides4 xs(input);
  T* y = output.data_ptr<T>();
  const int64_t rows = g.N * g.P, rows_per_task = std::max<int64_t>(1, kTaskPixels / g.Q);
  const int64_t max_pixels = rows_per_task * g.Q;
  // C rows a little more than a multiple of 4 KiB apart (K = 1024 floats would alias in L1)
  const int64_t ldc = round_up(col_panels * gt.nr, 16) + 16;
  const bool stream = streams(rows * g.Q * K * int64_t{sizeof(T)});

  at::parallel_for(0, ceil_div(rows, rows_per_task), 1, [&](int64_t begin, int64_t end) {
    const Scratch<T> d(kPanelB, max_pixels * M);
    const Scratch<T> c(kTile, round_up(max_pixels, gt.mr) * ldc);
    std::vector<const T*> src(taps.ntaps()), w(taps.ntaps());
    std::vector<int> index(taps.ntaps());
    std::vector<int64_t> pixel_off(max_pixels);  // D's rows: pixel i at i * M
    for (int64_t i = 0; i < max_pixels; ++i) pixel_off[i] = i * M;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t r0 = task * rows_per_task, r1 = std::min(rows, r0 + rows_per_task);
      const int64_t pixels = (r1 - r0) * g.Q;
      for (int64_t row = r0; row < r1; ++row) {
        correlate_row_channels_last(taps, wt, x, xs, g.H, g.W, dw_bias, row / g.P, row % g.P,
                                    g.Q, M, d.get() + (row - r0) * g.Q * M, M, src, w, index,
                                    false);
      }
      gathered_rows(pixels, K, M, pixel_off.data(), tap_off.data(), d.get(), b_pack.get(),
                    c.get(), ldc);
      for (int64_t i = 0; i < pixels; ++i) {
        store_biased_run(c.get() + i * ldc, pw_bias, false, y + (r0 * g.Q + i) * K, K, stream);
      }
    }
    if (stream) stream_fence();
  });
}

// Fills grad_d (M x NPQ, row-major) and grad_pw (K x M, row-major). Per tile, dY is copied
// into a buffer like the forward pass's D (channel k at gy_tile[k * pitch + i]), and
//   dD_tile = PW^T * dY_tile   by direct_row, the K channels as its taps, straight into grad_d;
//   dPW += dY_tile * D_tile^T  by the packed GEMM, A the MR-row panels of dY_tile and B the
//                              NR-column panels of D_tile^T that the depthwise sink writes.
template <typename T>
void separable_backward_fused(const at::Tensor& grad_output, const at::Tensor& input,
                              const at::Tensor& dw_weight, const T* dw_bias,
                              const at::Tensor& pw_weight, const DwGeometry& g, int64_t K,
                              T* grad_d, T* grad_pw) {
  const GemmTile gt = gemm_tile<T>();
  const int64_t M = g.M, npq = g.N * g.P * g.Q;
  const T* gy = grad_output.data_ptr<T>();
  const Strides4 gys(grad_output);
  // PW^T in MR-row panels over the whole reduction (the K channels), zero past row M.
  const Scratch<T> w_t(kInput, ceil_div(M, gt.mr) * K * gt.mr);
  pack_panels(pw_weight.data_ptr<T>(), pw_weight.stride(1), pw_weight.stride(0), M, K, gt.mr,
              w_t.get());
  const PixelTiles tiles(g, tile_pixels(std::max(K, M), sizeof(T), 256), gt.nr);
  const int64_t max_pixels = tiles.max_pixels(g);
  const int64_t pitch = round_up(max_pixels, gt.nr);
  std::vector<int64_t> gy_off(K);
  for (int64_t k = 0; k < K; ++k) gy_off[k] = k * pitch;
  int64_t chunks = std::min(tiles.count, kMaxWeightChunks);
  while (chunks > 1 && chunks * K * M > kMaxPartialElements) --chunks;
  const int64_t per_chunk = ceil_div(tiles.count, chunks);
  const Scratch<T> partial(kOperands, chunks * K * M);

  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    DepthwiseTile<T> depthwise(input, dw_weight, dw_bias, g, tiles);
    const Scratch<T> d_t(kPanelB, round_up(M, gt.nr) * max_pixels);   // D^T panels (B of dPW)
    const Scratch<T> gy_a(kResult, round_up(K, gt.mr) * max_pixels);  // dY panels (A of dPW)
    const AlignedScratch<T> gy_buffer(kTile, K * pitch);
    const Scratch<T> d_buffer(kRows, M * pitch);
    T* gy_tile = gy_buffer.get();
    T* d_rows = d_buffer.get();
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      std::fill(partial.get() + chunk * K * M, partial.get() + (chunk + 1) * K * M, T(0));
      for (int64_t index = chunk * per_chunk; index < std::min(tiles.count, (chunk + 1) * per_chunk); ++index) {
        const Tile tile(tiles, g, index);
        const int64_t cols = tile.pixels, first = tile.first_pixel(g);
        for (int64_t k = 0; k < K; ++k) {
          T* dst = gy_tile + k * pitch;
          for (int64_t img = 0; img < tile.images; ++img) {
            for (int64_t r = 0; r < tile.rows; ++r, dst += g.Q) {
              const T* src = gy + (tile.n0 + img) * gys.n + k * gys.c + (tile.p0 + r) * gys.h;
              if (gys.w == 1) {
                std::copy(src, src + g.Q, dst);
              } else {
                for (int64_t q = 0; q < g.Q; ++q) dst[q] = src[q * gys.w];
              }
            }
          }
          std::fill(dst, gy_tile + k * pitch + round_up(cols, gt.nr), T(0));  // lanes past the tile
        }
        // D, rows `pitch` apart, then D^T in NR-column panels: channel k's pixels at
        // d_t[((k / NR) * cols + i) * NR + k % NR]; and dY in MR-row panels.
        depthwise.compute(tile, 0, M, [&](int64_t k) { return d_rows + k * pitch; });
        pack_panels(d_rows, pitch, int64_t{1}, M, cols, gt.nr, d_t.get());
        pack_panels(static_cast<const T*>(gy_tile), pitch, int64_t{1}, K, cols, gt.mr, gy_a.get());
        // dPW += dY_tile * D_tile^T
        gemm_packed(K, M, cols, gy_a.get(), d_t.get(), partial.get() + chunk * K * M, M, 1);
        // dD_tile = PW^T * dY_tile, into the tile's columns of grad_d
        for (int64_t m0 = 0; m0 < M; m0 += gt.mr) {
          direct_row(K, gy_off.data(), gy_tile, w_t.get() + m0 * K, cols, grad_d + m0 * npq + first,
                     npq, static_cast<int>(std::min(gt.mr, M - m0)), nullptr, false);
        }
      }
    }
  });
  at::parallel_for(0, K * M, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T sum = T(0);
      for (int64_t chunk = 0; chunk < chunks; ++chunk) sum += partial.get()[chunk * K * M + i];
      grad_pw[i] = sum;
    }
  });
}

// ---------------------------------------------------------------------------------------
// version 1: reference (the depthwise half by the depthwise kernels, the pointwise by loops)

// y[n, k, p, q] = b[k] + sum_j pw[k, j] * d[n, j, p, q]
template <typename T>
void pointwise_reference(const at::Tensor& d, const at::Tensor& pw_weight, const T* bias,
                         at::Tensor& output) {
  const T* dp = d.data_ptr<T>();
  const T* w = pw_weight.data_ptr<T>();
  T* y = output.data_ptr<T>();
  const Strides4 ds(d), ys(output);
  const int64_t N = d.size(0), M = d.size(1), P = d.size(2), Q = d.size(3), K = output.size(1);
  at::parallel_for(0, N * K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nk = begin; nk < end; ++nk) {
      const int64_t n = nk / K, k = nk % K;
      for (int64_t p = 0; p < P; ++p) {
        for (int64_t q = 0; q < Q; ++q) {
          T acc = bias ? bias[k] : T(0);
          for (int64_t j = 0; j < M; ++j) {
            acc += w[k * pw_weight.stride(0) + j * pw_weight.stride(1)] *
                   dp[n * ds.n + j * ds.c + p * ds.h + q * ds.w];
          }
          y[n * ys.n + k * ys.c + p * ys.h + q * ys.w] = acc;
        }
      }
    }
  });
}

// grad_d[n, j, p, q] = sum_k pw[k, j] * gy[n, k, p, q]; grad_pw[k, j] = sum gy[n, k, p, q] * d[n, j, p, q]
template <typename T>
void pointwise_backward_reference(const at::Tensor& grad_output, const at::Tensor& d,
                                  const at::Tensor& pw_weight, at::Tensor& grad_d,
                                  T* grad_pw) {
  const T* gy = grad_output.data_ptr<T>();
  const T* dp = d.data_ptr<T>();
  const T* w = pw_weight.data_ptr<T>();
  T* gd = grad_d.data_ptr<T>();
  const Strides4 gys(grad_output), ds(d), gds(grad_d);
  const int64_t N = d.size(0), M = d.size(1), P = d.size(2), Q = d.size(3);
  const int64_t K = grad_output.size(1);
  at::parallel_for(0, N * M, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nj = begin; nj < end; ++nj) {
      const int64_t n = nj / M, j = nj % M;
      for (int64_t p = 0; p < P; ++p) {
        for (int64_t q = 0; q < Q; ++q) {
          T acc = T(0);
          for (int64_t k = 0; k < K; ++k) {
            acc += w[k * pw_weight.stride(0) + j * pw_weight.stride(1)] *
                   gy[n * gys.n + k * gys.c + p * gys.h + q * gys.w];
          }
          gd[n * gds.n + j * gds.c + p * gds.h + q * gds.w] = acc;
        }
      }
    }
  });
  at::parallel_for(0, K * M, 1, [&](int64_t begin, int64_t end) {
    for (int64_t kj = begin; kj < end; ++kj) {
      const int64_t k = kj / M, j = kj % M;
      T acc = T(0);
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t p = 0; p < P; ++p) {
          for (int64_t q = 0; q < Q; ++q) {
            acc += gy[n * gys.n + k * gys.c + p * gys.h + q * gys.w] *
                   dp[n * ds.n + j * ds.c + p * ds.h + q * ds.w];
          }
        }
      }
      grad_pw[kj] = acc;
    }
  });
}

bool use_reference() { return kernel_version(OpFamily::depthwise) == 1; }

// Channels-last inputs (channel multiplier 1) stay off the planar fused kernels, which read
// planes (NCHW) and would cost them a transposing copy per tile: backward, and forward where
// fused_channels_last does not pay, run unfused (the depthwise kernels' channels-last loops,
// then the conv2d operators' 1x1 GEMM over pixels, cpu/conv2d.cpp, reached through the
// dispatcher); the forward pass elsewhere runs separable_forward_channels_last.
bool channels_last_input(const at::Tensor& input, const at::Tensor& dw_weight) {
  return !use_reference() && dw_weight.size(0) == input.size(1) && input.size(1) > 1 &&
         input.stride(1) == 1;
}

// Version 0 runs the forward pass unfused: the depthwise kernels, then conv2d's 1x1 kernels
// (its direct kernel on planes of 512 pixels and more, its GEMM across images below that).
// The fused kernel saves D's round trip through memory but fills strips of the input per
// tile and runs direct_row over a reduction of only M channels from its buffer, and lost on
// every MobileNet block (8 images, two threads, a Zen 4 VM; fused vs unfused ms, three runs
// of benchmarks/bench_depthwise.py --parts separable): 112x112 32 -> 64 4.39-4.55 vs
// 4.14-4.21, stride 2 64 -> 128 4.69-4.79 vs 3.81-3.87, 56x56 128 -> 128 6.90-7.22 vs
// 6.70-7.28; 28x28 and smaller 1.02x (7x7) to 1.12x (14x14 s2) faster unfused, measured
// earlier. At batch 1 the stride-2 block was 0.485 vs 0.461 ms and 56x56 level. Backward
// unfused was 0.74x-1.07x of fused (small planes), so it stays fused. D is then held whole:
// only within the workspace bound, the larger of 64 MiB and the input's size; past it (a
// channel multiplier over a large input) the fused kernel runs, one tile of D at a time.
// Version 2 runs the channels-last forward pass fused (separable_forward_channels_last) on
// all shapes, version 0 where PW fits in L2 (256 KiB), which every task streams whole: on
// MobileNet's blocks, channels-last / NCHW forward time fused (unfused, last measured):
// 112x112 32 -> 64 1.05 (1.29), 56x56 128 -> 128 0.99 (1.10), 28x28 256 -> 256 0.99 (1.03);
// past it, fused lost: 14x14 512 -> 512 1.01 (0.95), stride 2 512 -> 1024 1.53 (0.91),
// 7x7 1024 -> 1024 1.78 (0.92), where conv2d's GEMM blocks the reduction.
constexpr int64_t kFusedChannelsLastWeightBytes = 256 * 1024;

bool fused_channels_last(const SeparableShape& s, int64_t element_size) {
  const int version = kernel_version(OpFamily::depthwise);
  return version == 2 ||
         (version == 0 && s.M * s.K * element_size <= kFusedChannelsLastWeightBytes);
}

bool forward_unfused(const at::Tensor& input, const at::Tensor& dw_weight,
                     const SeparableShape& s) {
  if (channels_last_input(input, dw_weight)) return true;
  const int64_t element = input.element_size();
  const int64_t bound = std::max<int64_t>(int64_t{64} << 20, input.numel() * element);
  return kernel_version(OpFamily::depthwise) == 0 && s.N * s.M * s.P * s.Q * element <= bound;
}

at::Tensor pointwise_conv2d(const at::Tensor& d, const at::Tensor& pw_weight,
                            const c10::optional<at::Tensor>& pw_bias) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("cnnops::conv2d", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                               const c10::optional<at::Tensor>&, c10::IntArrayRef,
                                               c10::IntArrayRef, c10::IntArrayRef, int64_t)>();
  return op.call(d, pw_weight, pw_bias, {1, 1}, {0, 0, 0, 0}, {1, 1}, 1);
}

std::tuple<at::Tensor, at::Tensor> pointwise_conv2d_backward(const at::Tensor& grad_output,
                                                             const at::Tensor& d,
                                                             const at::Tensor& pw_weight) {
  using Signature = at::Tensor(const at::Tensor&, const at::Tensor&, c10::IntArrayRef,
                               c10::IntArrayRef, c10::IntArrayRef, c10::IntArrayRef, int64_t);
  static const auto grad_input = c10::Dispatcher::singleton()
                                     .findSchemaOrThrow("cnnops::conv2d_grad_input", "")
                                     .typed<Signature>();
  static const auto grad_weight = c10::Dispatcher::singleton()
                                      .findSchemaOrThrow("cnnops::conv2d_grad_weight", "")
                                      .typed<Signature>();
  return {grad_input.call(grad_output, pw_weight, d.sizes(), {1, 1}, {0, 0, 0, 0}, {1, 1}, 1),
          grad_weight.call(grad_output, d, pw_weight.sizes(), {1, 1}, {0, 0, 0, 0}, {1, 1}, 1)};
}

// ---------------------------------------------------------------------------------------
// Operators

at::Tensor depthwise_separable_forward_cpu(const at::Tensor& input, const at::Tensor& dw_weight,
                                           const at::Tensor& pw_weight,
                                           const c10::optional<at::Tensor>& dw_bias,
                                           const c10::optional<at::Tensor>& pw_bias,
                                           c10::IntArrayRef stride, c10::IntArrayRef padding,
                                           c10::IntArrayRef dilation) {
  constexpr const char* op = "cnnops.depthwise_separable_conv2d";
  const Conv2dParams params = depthwise_separable_params(op, input, stride, padding, dilation);
  const SeparableShape s =
      check_depthwise_separable_forward(input, dw_weight, pw_weight, dw_bias, pw_bias, params);
  const c10::MemoryFormat format = depthwise_separable_memory_format(input, dw_weight, pw_weight);
  const bool fused_cl = channels_last_input(input, dw_weight) &&
                        format == c10::MemoryFormat::ChannelsLast &&
                        fused_channels_last(s, input.element_size());
  if (!fused_cl && forward_unfused(input, dw_weight, s) && s.N * s.K * s.P * s.Q > 0) {
    const at::Tensor d = depthwise_forward_cpu(input, dw_weight, dw_bias, params);
    return pointwise_conv2d(d, pw_weight, pw_bias).contiguous(format);  // a no-op normally
  }
  at::Tensor output = at::empty({s.N, s.K, s.P, s.Q}, input.options().memory_format(format));
  if (output.numel() == 0) return output;
  const at::Tensor dw_b = dw_bias.has_value() ? dw_bias->contiguous() : at::Tensor();
  const at::Tensor pw_b = pw_bias.has_value() ? pw_bias->contiguous() : at::Tensor();
  if (use_reference()) {
    const at::Tensor d = depthwise_forward_cpu(input, dw_weight, dw_bias, params);
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), op, [&] {
      pointwise_reference<scalar_t>(d, pw_weight, pw_b.defined() ? pw_b.data_ptr<scalar_t>() : nullptr,
                                    output);
    });
    return output;
  }
  const DwGeometry g(input.sizes(), dw_weight.sizes(), s.P, s.Q, params);
  if (fused_cl) {
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), op, [&] {
      separable_forward_channels_last<scalar_t>(
          input, dw_weight, dw_b.defined() ? dw_b.data_ptr<scalar_t>() : nullptr, pw_weight,
          pw_b.defined() ? pw_b.data_ptr<scalar_t>() : nullptr, output, g, s.K);
    });
    return output;
  }
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), op, [&] {
    separable_forward_fused<scalar_t>(
        input, dw_weight, dw_b.defined() ? dw_b.data_ptr<scalar_t>() : nullptr, pw_weight,
        pw_b.defined() ? pw_b.data_ptr<scalar_t>() : nullptr, output, g, s.K);
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> depthwise_separable_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& dw_weight,
    const at::Tensor& pw_weight, const c10::optional<at::Tensor>& dw_bias,
    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation) {
  constexpr const char* op = "cnnops.depthwise_separable_conv2d_backward";
  const Conv2dParams params = depthwise_separable_params(op, input, stride, padding, dilation);
  const SeparableShape s =
      check_depthwise_separable_backward(grad_output, input, dw_weight, pw_weight, dw_bias, params);
  const auto grad_input_format = depthwise_separable_memory_format(input, dw_weight, pw_weight);
  const auto options = grad_output.options();
  at::Tensor grad_pw = at::zeros({s.K, s.M, 1, 1}, options);
  if (grad_output.numel() == 0 || input.numel() == 0) {  // N, K or H*W empty: nothing flows
    return {at::zeros(input.sizes(), options.memory_format(grad_input_format)),
            at::zeros(dw_weight.sizes(), options), at::zeros({s.M}, options), grad_pw};
  }
  at::Tensor grad_d;  // dL/dD, as an (N, M, P, Q) tensor of any layout
  std::optional<Scratch<unsigned char>> grad_d_bytes;  // its storage, where fused
  if (channels_last_input(input, dw_weight)) {
    const at::Tensor d = depthwise_forward_cpu(input, dw_weight, dw_bias, params);
    std::tie(grad_d, grad_pw) = pointwise_conv2d_backward(grad_output, d, pw_weight);
  } else if (use_reference()) {
    const at::Tensor d = depthwise_forward_cpu(input, dw_weight, dw_bias, params);
    grad_d = at::empty(d.sizes(), options);
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), op, [&] {
      pointwise_backward_reference<scalar_t>(grad_output, d, pw_weight, grad_d,
                                             grad_pw.data_ptr<scalar_t>());
    });
  } else {
    // channel-major (M, N*P*Q), so that a tile's pixels are consecutive in every row; kept
    // from call to call (cpu/scratch.h): a fresh one is paged in on every call, which took
    // 11% of MobileNet's first block's backward in the kernel's page-fault handler
    const int64_t count = s.M * s.N * s.P * s.Q;
    grad_d_bytes.emplace(kIntermediate, count * input.element_size());
    at::Tensor grad_d_rows = at::from_blob(grad_d_bytes->get(), {s.M, count / s.M}, options);
    const at::Tensor dw_b = dw_bias.has_value() ? dw_bias->contiguous() : at::Tensor();
    const DwGeometry g(input.sizes(), dw_weight.sizes(), s.P, s.Q, params);
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), op, [&] {
      separable_backward_fused<scalar_t>(grad_output, input, dw_weight,
                                         dw_b.defined() ? dw_b.data_ptr<scalar_t>() : nullptr,
                                         pw_weight, g, s.K, grad_d_rows.data_ptr<scalar_t>(),
                                         grad_pw.data_ptr<scalar_t>());
    });
    grad_d = grad_d_rows.view({s.M, s.N, s.P, s.Q}).permute({1, 0, 2, 3});
  }
  // the depthwise half's three gradients in one pass where that applies (small planes)
  if (auto fused = depthwise_backward_cpu(grad_d, input, dw_weight, params, true,
                                          grad_input_format)) {
    auto& [grad_input, grad_dw, grad_dw_bias] = *fused;
    return {grad_input, grad_dw, grad_dw_bias, grad_pw};
  }
  at::Tensor grad_dw_bias = at::sum(grad_d, {0, 2, 3});
  at::Tensor grad_input =
      depthwise_grad_input_cpu(grad_d, dw_weight, input.sizes(), params, grad_input_format);
  at::Tensor grad_dw = depthwise_grad_weight_cpu(grad_d, input, dw_weight.sizes(), params);
  return {grad_input, grad_dw, grad_dw_bias, grad_pw};
}

}  // namespace

TORCH_LIBRARY_IMPL(cnnops, CPU, m) {
  m.impl("depthwise_separable_conv2d", &depthwise_separable_forward_cpu);
  m.impl("depthwise_separable_conv2d_backward", &depthwise_separable_backward_cpu);
}

}  // namespace cnnops::cpu
