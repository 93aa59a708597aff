// 2-D convolution (NCHW) on the CPU, and its two backward passes (data, filter). Groups, stride,
// padding and dilation. docs/cpu-performance.md explains the choice of paths; in short:
//
// - Winograd (conv_winograd.hpp): F(2x2, 3x3) for the forward pass, the data gradient and (from 4
//   images) the filter gradient of a 3x3 convolution at stride 1 with enough channels and work: 16
//   products per tile of 2x2 outputs and input channel instead of 36.
// - Direct (conv_direct.hpp): at stride 1 with enough products per output, the forward pass,
//   the data gradient and (for large enough images) the filter gradient, from padded copies of
//   the planes with no column matrix.
// - Tiled (images of 64 or more output positions): the work is cut into tiles of output rows of
//   one image, sized so that a tile's column matrix (im2col) stays in the core's L2 cache, and
//   each task runs its tiles on its own thread: im2col of the tile, then one GEMM that writes the
//   output (or reads the output gradient) in NCHW order directly. No pass over the whole batch's
//   columns, no copies of the output or of its gradient. A 1x1 stride-1 convolution needs no
//   column matrix (the input is one); one with few taps (K = C/groups * kh * kw <= 16, the first
//   layer of an image model) is computed by kernels of its own instead of a GEMM whose inner
//   dimension would be too short to run at speed.
// - Batched (small images: the late layers of a deep model): one column matrix for a chunk of
//   images, so that each GEMM is wide enough to share out; the output is then copied into NCHW.
//
// The path depends on the shapes alone, never on the thread count, so results do not either.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "tessera/backend/cpu/conv_common.hpp"
#include "tessera/backend/cpu/conv_direct.hpp"
#include "tessera/backend/cpu/conv_winograd.hpp"
#include "tessera/backend/cpu/device.hpp"
#include "tessera/backend/cpu/gemm.hpp"
#include "tessera/backend/op_args.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/evaluator.hpp"

namespace tessera {

namespace detail {

/// The output columns [lo, hi) whose input column ow * stride + offset lies inside [0, W): the
/// inner loops below run bounds-check-free (and memcpy / vectorize at stride 1) over that range.
struct ValidColumns {
  index_t lo, hi;
};
inline ValidColumns valid_columns(index_t offset, index_t stride, index_t W, index_t Wo) {
  auto ceil_div = [](index_t a, index_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); };
  const index_t lo = std::min(Wo, offset >= 0 ? index_t(0) : ceil_div(-offset, stride));
  const index_t hi = std::max(lo, std::min(Wo, ceil_div(W - offset, stride)));
  return {lo, hi};
}

/// Whether a convolution keeps the width at stride 1 ("same" padding, the common 3x3 pad 1): a
/// row of its column matrix is then one contiguous run of the input plane, shifted, except for
/// the taps that fall into the padding at the left and right edges.
inline bool same_width_stride_1(index_t W, index_t Wo, const Conv2dGeometry& g) {
  return g.stride_h == 1 && g.stride_w == 1 && Wo == W;
}

/// The output rows [v0, v1) within [oh0, oh1) whose tap row i reads inside the plane (stride 1).
inline ValidColumns valid_rows_stride_1(index_t H, index_t i, index_t oh0, index_t oh1, const Conv2dGeometry& g) {
  const index_t shift = i * g.dilation_h - g.pad_h;  // input row = output row + shift
  const index_t v0 = std::clamp(-shift, oh0, oh1);
  return {v0, std::clamp(H - shift, v0, oh1)};
}

/// One row of a column matrix: dst[(oh - oh0) * Wo + ow] = plane[oh * s_h - p_h + i * d_h,
/// ow * s_w - p_w + j * d_w] (0 outside the plane) for output rows [oh0, oh1), tap (i, j).
template <class T>
void im2col_row(const T* plane, index_t H, index_t W, index_t i, index_t j, index_t Wo, index_t oh0, index_t oh1,
                const Conv2dGeometry& g, T* dst) {
  const index_t offset = j * g.dilation_w - g.pad_w, s = g.stride_w;
  const auto [lo, hi] = valid_columns(offset, s, W, Wo);
  if (same_width_stride_1(W, Wo, g)) {
    // One copy of the whole run (an image's rows are short: a copy per row cost more than the
    // data), then zeros over the columns that wrapped around from the neighbouring rows.
    const auto [v0, v1] = valid_rows_stride_1(H, i, oh0, oh1, g);
    std::fill(dst, dst + (v0 - oh0) * Wo, T(0));
    T* run = dst + (v0 - oh0) * Wo;
    const index_t first = lo, last = (v1 - v0) * Wo - (Wo - hi);  // [first, last) reads inside the plane
    if (hi > lo && last > first) {
      const index_t from = (v0 + i * g.dilation_h - g.pad_h) * W + offset + first;
      std::memcpy(run + first, plane + from, sizeof(T) * static_cast<std::size_t>(last - first));
    }
    for (index_t r = 0; r < v1 - v0; ++r) {
      std::fill(run + r * Wo, run + r * Wo + lo, T(0));
      std::fill(run + r * Wo + std::max(hi, lo), run + (r + 1) * Wo, T(0));
    }
    std::fill(dst + (v1 - oh0) * Wo, dst + (oh1 - oh0) * Wo, T(0));
    return;
  }
  for (index_t oh = oh0; oh < oh1; ++oh, dst += Wo) {
    const index_t ih = oh * g.stride_h - g.pad_h + i * g.dilation_h;
    if (ih < 0 || ih >= H) {
      std::fill(dst, dst + Wo, T(0));
      continue;
    }
    const T* src = plane + ih * W;  // src[ow * s + offset] is the input of column ow
    std::fill(dst, dst + lo, T(0));
    if (s == 1) {
      if (hi > lo) std::memcpy(dst + lo, src + lo + offset, sizeof(T) * static_cast<std::size_t>(hi - lo));
    } else {
      for (index_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * s + offset];
    }
    std::fill(dst + hi, dst + Wo, T(0));
  }
}

/// The adjoint of im2col_row: adds the row back into the plane. The row is scratch: the
/// same-width path zeroes its entries for taps in the padding, then adds the run in one loop.
template <class T>
void col2im_row(T* src, index_t H, index_t W, index_t i, index_t j, index_t Wo, index_t oh0, index_t oh1,
                const Conv2dGeometry& g, T* plane) {
  const index_t offset = j * g.dilation_w - g.pad_w, s = g.stride_w;
  const auto [lo, hi] = valid_columns(offset, s, W, Wo);
  if (same_width_stride_1(W, Wo, g)) {
    const auto [v0, v1] = valid_rows_stride_1(H, i, oh0, oh1, g);
    if (v1 <= v0 || hi <= lo) return;
    T* run = src + (v0 - oh0) * Wo;
    for (index_t r = 0; r < v1 - v0; ++r) {  // these land on no input: add nothing
      std::fill(run + r * Wo, run + r * Wo + lo, T(0));
      std::fill(run + r * Wo + hi, run + (r + 1) * Wo, T(0));
    }
    const index_t first = lo, last = (v1 - v0) * Wo - (Wo - hi);
    T* to = plane + (v0 + i * g.dilation_h - g.pad_h) * W + offset + first;
    const T* q = run + first;
    for (index_t k = 0; k < last - first; ++k) to[k] += q[k];
    return;
  }
  for (index_t oh = oh0; oh < oh1; ++oh, src += Wo) {
    const index_t ih = oh * g.stride_h - g.pad_h + i * g.dilation_h;
    if (ih < 0 || ih >= H) continue;
    T* dst = plane + ih * W;  // dst[ow * s + offset] receives column ow
    if (s == 1) {
      T* d = dst + lo + offset;
      const T* q = src + lo;
      for (index_t k = 0; k < hi - lo; ++k) d[k] += q[k];
    } else {
      for (index_t ow = lo; ow < hi; ++ow) dst[ow * s + offset] += src[ow];
    }
  }
}

/// Column matrix for images [n0, n0 + nb) and channels [c0, c0 + cg) of x [N, C, H, W]:
/// cols[(c, i, j), (n, oh, ow)] = x[n, c0 + c, oh * s - p + i * d, ow * s - p + j * d] (0 outside).
template <class T>
void im2col(const T* x, index_t C, index_t H, index_t W, index_t n0, index_t nb, index_t c0, index_t cg, index_t kh,
            index_t kw, index_t Ho, index_t Wo, const Conv2dGeometry& g, T* cols) {
  const index_t P = Ho * Wo, row_len = nb * P;
  parallel_for(cg * kh * kw, 1, 4, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      const index_t c = r / (kh * kw), i = (r / kw) % kh, j = r % kw;
      for (index_t n = 0; n < nb; ++n) {
        im2col_row(x + ((n0 + n) * C + c0 + c) * H * W, H, W, i, j, Wo, 0, Ho, g, cols + r * row_len + n * P);
      }
    }
  });
}

/// The adjoint of im2col: adds cols (scratch, see col2im_row) back into dx (which the caller zeroed).
template <class T>
void col2im(T* cols, index_t C, index_t H, index_t W, index_t n0, index_t nb, index_t c0, index_t cg, index_t kh,
            index_t kw, index_t Ho, index_t Wo, const Conv2dGeometry& g, T* dx) {
  const index_t P = Ho * Wo, row_len = nb * P;
  // Each (image, channel) plane is written by one task only.
  parallel_for(nb * cg, 1, 2, [&](index_t t0, index_t t1) {
    for (index_t t = t0; t < t1; ++t) {
      const index_t n = t / cg, c = t % cg;
      T* plane = dx + ((n0 + n) * C + c0 + c) * H * W;
      for (index_t i = 0; i < kh; ++i) {
        for (index_t j = 0; j < kw; ++j) {
          col2im_row(cols + ((c * kh + i) * kw + j) * row_len + n * P, H, W, i, j, Wo, 0, Ho, g, plane);
        }
      }
    }
  });
}

/// Images per chunk so that a column matrix of k rows stays near 8M elements.
inline index_t conv_chunk(index_t N, index_t k_rows, index_t P) {
  const index_t budget = index_t(1) << 23;
  return std::max<index_t>(1, std::min<index_t>(N, budget / std::max<index_t>(1, k_rows * P)));
}

/// How the tiled path cuts an image: tiles of `rows` output rows (the last may be shorter), at
/// least 64 columns wide (narrower GEMMs spend their time packing the filter) and, above that,
/// with a column matrix of at most 128K elements (512 KiB of floats: L2-resident).
struct ConvTiles {
  index_t rows, per_image;
};
inline ConvTiles conv_tiles(const ConvDims& d) {
  constexpr index_t min_columns = 64, max_elements = index_t(1) << 17;
  const index_t wo = std::max<index_t>(d.Wo, 1);
  const index_t rows = std::clamp<index_t>(
      std::max((min_columns + wo - 1) / wo, max_elements / std::max<index_t>(1, d.K * wo)), 1, std::max<index_t>(d.Ho, 1));
  return {rows, (d.Ho + rows - 1) / rows};
}
/// The tiled path serves images of at least 64 output positions.
inline bool tiled_conv(const ConvDims& d) { return d.P >= 64; }
/// A 1x1 convolution with stride 1 and no padding: the input is its own column matrix.
inline bool pointwise_conv(const ConvDims& d, const Conv2dGeometry& g) {
  return d.kh == 1 && d.kw == 1 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 0 && g.pad_w == 0;
}

/// One tile: output rows [oh0, oh1) of image n, i.e. output positions [p0, p0 + np).
struct ConvTile {
  index_t n, oh0, oh1, p0, np;
};
inline ConvTile conv_tile(const ConvDims& d, const ConvTiles& t, index_t unit) {
  const index_t n = unit / t.per_image, oh0 = unit % t.per_image * t.rows, oh1 = std::min(d.Ho, oh0 + t.rows);
  return {n, oh0, oh1, oh0 * d.Wo, (oh1 - oh0) * d.Wo};
}

/// The columns of one tile for channels [c0, c0 + Cg): cols [K, np] (row stride np).
template <class T>
void im2col_tile(const T* x, const ConvDims& d, const ConvTile& t, index_t c0, const Conv2dGeometry& g, T* cols) {
  for (index_t r = 0; r < d.K; ++r) {
    const index_t c = r / (d.kh * d.kw), i = (r / d.kw) % d.kh, j = r % d.kw;
    im2col_row(x + (t.n * d.C + c0 + c) * d.H * d.W, d.H, d.W, i, j, d.Wo, t.oh0, t.oh1, g, cols + r * t.np);
  }
}

/// The column matrix a tile's GEMM reads for group grp, and its row stride: the input itself for a
/// pointwise convolution, else the tile's im2col in `cols`.
template <class T>
std::pair<const T*, index_t> tile_columns(const T* x, const ConvDims& d, const ConvTile& t, index_t grp,
                                          const Conv2dGeometry& g, bool pointwise, T* cols) {
  if (pointwise) return {x + (t.n * d.C + grp * d.Cg) * d.P + t.p0, d.P};
  im2col_tile(x, d, t, grp * d.Cg, g, cols);
  return {cols, t.np};
}

/// The adjoint of im2col_tile: adds cols (scratch, see col2im_row) back into dx's image.
template <class T>
void col2im_tile(T* cols, const ConvDims& d, const ConvTile& t, index_t c0, const Conv2dGeometry& g, T* dx) {
  for (index_t r = 0; r < d.K; ++r) {
    const index_t c = r / (d.kh * d.kw), i = (r / d.kw) % d.kh, j = r % d.kw;
    col2im_row(cols + r * t.np, d.H, d.W, i, j, d.Wo, t.oh0, t.oh1, g, dx + (t.n * d.C + c0 + c) * d.H * d.W);
  }
}

/// Rows [r0, r0 + R) and columns [j, j + V packets) of few_taps_product: R x V sums in registers,
/// each loaded packet of B feeding R multiply-adds (the direct kernel's tile shape, conv_direct.hpp).
template <class T, int R, int V>
void few_taps_block(index_t r0, index_t j, index_t k, const T* a, const T* b, index_t ldb, T* c, index_t ldc,
                    const T* bias, bool relu) {
  namespace pk = Eigen::internal;
  using P = packet_t<T>;
  constexpr index_t S = packet_size_v<T>;
  P acc[R][V];
  TESSERA_UNROLL
  for (int r = 0; r < R; ++r) {
    TESSERA_UNROLL
    for (int v = 0; v < V; ++v) acc[r][v] = pk::pset1<P>(bias ? bias[r0 + r] : T(0));
  }
  for (index_t q = 0; q < k; ++q) {
    P x[V];
    TESSERA_UNROLL
    for (int v = 0; v < V; ++v) x[v] = pk::ploadu<P>(b + q * ldb + j + v * S);
    TESSERA_UNROLL
    for (int r = 0; r < R; ++r) {
      const P w = pk::pset1<P>(a[(r0 + r) * k + q]);
      TESSERA_UNROLL
      for (int v = 0; v < V; ++v) acc[r][v] = pk::pmadd(w, x[v], acc[r][v]);
    }
  }
  TESSERA_UNROLL
  for (int r = 0; r < R; ++r) {
    TESSERA_UNROLL
    for (int v = 0; v < V; ++v) pk::pstoreu(c + (r0 + r) * ldc + j + v * S, relu ? relu_packet(acc[r][v]) : acc[r][v]);
  }
}

/// C [m, n] (row stride ldc) = A [m, k] . B [k, n] (+ bias[r] on row r when bias is not null; then
/// relu when asked), for a short k (few_taps_conv): blocks of direct_rows rows x 3 packets of
/// columns, then single packets, then single columns; rows left over in blocks of 4, then 1. (Four
/// rows x two packets had left the first convolution of a small CNN bound by its loads.) Every sum
/// starts from the bias and adds the products in order: the blocking does not change a bit.
template <class T>
void few_taps_product(index_t m, index_t n, index_t k, const T* a, const T* b, index_t ldb, T* c, index_t ldc,
                      const T* bias, bool relu) {
  constexpr index_t S = packet_size_v<T>, V = direct_packets;
  auto rows = [&](auto rows_c, index_t r0) {
    constexpr int R = decltype(rows_c)::value;
    index_t j = 0;
    for (; j + V * S <= n; j += V * S) few_taps_block<T, R, V>(r0, j, k, a, b, ldb, c, ldc, bias, relu);
    for (; j + S <= n; j += S) few_taps_block<T, R, 1>(r0, j, k, a, b, ldb, c, ldc, bias, relu);
    for (; j < n; ++j) {
      for (int r = 0; r < R; ++r) {
        T acc = bias ? bias[r0 + r] : T(0);
        for (index_t q = 0; q < k; ++q) acc += a[(r0 + r) * k + q] * b[q * ldb + j];
        c[(r0 + r) * ldc + j] = relu ? relu_value(acc) : acc;
      }
    }
  };
  index_t r0 = 0;
  for (; r0 + direct_rows <= m; r0 += direct_rows) rows(std::integral_constant<int, direct_rows>{}, r0);
  if constexpr (direct_rows > 4) {
    for (; r0 + 4 <= m; r0 += 4) rows(std::integral_constant<int, 4>{}, r0);
  }
  for (; r0 < m; ++r0) rows(std::integral_constant<int, 1>{}, r0);
}

/// C [m, k] (row stride k) = (accumulate ? C : 0) + A [m, n] . B [k, n]^T for a short k
/// (few_taps_conv: a filter gradient's columns): four rows of A against one row of B at a time.
template <class T>
void few_taps_product_nt(index_t m, index_t n, index_t k, const T* a, index_t lda, const T* b, index_t ldb, T* c,
                         bool accumulate) {
  namespace pk = Eigen::internal;
  using P = packet_t<T>;
  constexpr index_t S = packet_size_v<T>;
  auto rows = [&](auto rows_c, index_t r0) {
    constexpr int R = decltype(rows_c)::value;
    for (index_t q = 0; q < k; ++q) {
      const T* bq = b + q * ldb;
      P acc[R];
      TESSERA_UNROLL
      for (int r = 0; r < R; ++r) acc[r] = pk::pset1<P>(T(0));
      index_t j = 0;
      for (; j + S <= n; j += S) {
        const P v = pk::ploadu<P>(bq + j);
        TESSERA_UNROLL
        for (int r = 0; r < R; ++r) acc[r] = pk::pmadd(pk::ploadu<P>(a + (r0 + r) * lda + j), v, acc[r]);
      }
      TESSERA_UNROLL
      for (int r = 0; r < R; ++r) {
        T sum = pk::predux(acc[r]);
        for (index_t jj = j; jj < n; ++jj) sum += a[(r0 + r) * lda + jj] * bq[jj];
        T& out = c[(r0 + r) * k + q];
        out = accumulate ? out + sum : sum;
      }
    }
  };
  index_t r0 = 0;
  for (; r0 + 4 <= m; r0 += 4) rows(std::integral_constant<int, 4>{}, r0);
  for (; r0 < m; ++r0) rows(std::integral_constant<int, 1>{}, r0);
}

/// Copies group grp of dy [N, O, P] for images [n0, n0 + nb) into dyg [Og, nb * P].
template <class T>
void gather_output_grad(const T* dy, const ConvDims& d, index_t n0, index_t nb, index_t grp, T* dyg) {
  parallel_for(nb * d.Og, 1, 4, [&](index_t t0, index_t t1) {
    for (index_t t = t0; t < t1; ++t) {
      const index_t n = t / d.Og, o = t % d.Og;
      std::memcpy(dyg + o * nb * d.P + n * d.P, dy + ((n0 + n) * d.O + grp * d.Og + o) * d.P,
                  sizeof(T) * static_cast<std::size_t>(d.P));
    }
  });
}

/// The tiled path's forward (see the top of this file); with `pooled`, its output pooled (`y` is
/// not used).
template <class T>
void conv2d_forward_tiled(const T* x, const T* w, T* y, const ConvDims& d, const Conv2dGeometry& g, const T* bias,
                          bool relu, const PooledOutput<T>* pooled = nullptr) {
  const auto tiles = conv_tiles(d);
  const bool pointwise = pointwise_conv(d, g), few_taps = few_taps_conv(d);
  // Tile t of every group into `image`, the first output plane of t's image.
  auto compute_tile = [&](const ConvTile& t, T* image, T* cols) {
    for (index_t grp = 0; grp < g.groups; ++grp) {
      const auto [b, ldb] = tile_columns(x, d, t, grp, g, pointwise, cols);
      T* out = image + grp * d.Og * d.P + t.p0;
      const T* a = w + grp * d.Og * d.K;
      const T* bias_g = bias ? bias + grp * d.Og : nullptr;
      if (few_taps) {
        few_taps_product(d.Og, t.np, d.K, a, b, ldb, out, d.P, bias_g, relu);
        continue;
      }
      gemm_on_this_thread(false, false, d.Og, t.np, d.K, T(1), a, d.K, b, ldb, T(0), out, d.P);
      if (bias_g || relu) {  // while the tile is in cache
        for (index_t o = 0; o < d.Og; ++o) {
          T* row = out + o * d.P;
          const T v = bias_g ? bias_g[o] : T(0);
          if (relu) {
            for (index_t p = 0; p < t.np; ++p) row[p] = relu_value(row[p] + v);
          } else {
            for (index_t p = 0; p < t.np; ++p) row[p] += v;
          }
        }
      }
    }
  };
  if (pooled && d.N >= 2 * CpuPool::instance().threads()) {
    // Many images: each task computes whole images into scratch (in cache) and pools them.
    parallel_for(d.N, 1, 2, [&](index_t n0, index_t n1) {
      auto cols = conv_scratch<T>(pointwise ? 0 : d.K * tiles.rows * d.Wo);
      auto image = conv_scratch<T>(d.O * d.P);
      for (index_t n = n0; n < n1; ++n) {
        for (index_t u = n * tiles.per_image; u < (n + 1) * tiles.per_image; ++u) {
          compute_tile(conv_tile(d, tiles, u), image.data(), cols.data());
        }
        pooled->pool(image.data(), n * d.O, d.O, d.P, d.Wo);
      }
    });
    return;
  }
  auto stored = conv_scratch<T>(pooled ? d.N * d.O * d.P : 0);
  T* dst = pooled ? stored.data() : y;
  parallel_for(d.N * tiles.per_image, 1, 2, [&](index_t u0, index_t u1) {
    auto cols = conv_scratch<T>(pointwise ? 0 : d.K * tiles.rows * d.Wo);
    for (index_t u = u0; u < u1; ++u) {
      const auto t = conv_tile(d, tiles, u);
      compute_tile(t, dst + t.n * d.O * d.P, cols.data());
    }
  });
  if (pooled) pooled->pool_all(dst, d.N * d.O);
}

/// The tiled path's data gradient: one image per task (the tiles of an image overlap in dx).
template <class T>
void conv2d_backward_data_tiled(const T* w, const T* dy, T* dx, const ConvDims& d, const Conv2dGeometry& g) {
  const auto tiles = conv_tiles(d);
  const bool pointwise = pointwise_conv(d, g);
  parallel_for(d.N, 1, 2, [&](index_t n0, index_t n1) {
    auto cols = conv_scratch<T>(pointwise ? 0 : d.K * tiles.rows * d.Wo);
    for (index_t n = n0; n < n1; ++n) {
      // A pointwise product writes every element of the image; col2im adds into it.
      if (!pointwise) std::fill(dx + n * d.C * d.H * d.W, dx + (n + 1) * d.C * d.H * d.W, T(0));
      for (index_t tile = 0; tile < tiles.per_image; ++tile) {
        const auto t = conv_tile(d, tiles, n * tiles.per_image + tile);
        for (index_t grp = 0; grp < g.groups; ++grp) {
          // dcols [K, np] = W_g^T [K, Og] . dy tile [Og, np]
          const T* a = w + grp * d.Og * d.K;
          const T* b = dy + (n * d.O + grp * d.Og) * d.P + t.p0;
          if (pointwise) {
            gemm_on_this_thread(true, false, d.K, t.np, d.Og, T(1), a, d.K, b, d.P, T(0),
                                dx + (n * d.C + grp * d.Cg) * d.P + t.p0, d.P);
            continue;
          }
          gemm_on_this_thread(true, false, d.K, t.np, d.Og, T(1), a, d.K, b, d.P, T(0), cols.data(), t.np);
          col2im_tile(cols.data(), d, t, grp * d.Cg, g, dx);
        }
      }
    }
  });
}

/// How many partial filter gradients the tiled path sums (each over a fixed run of tiles): at
/// most 16, and at most 4M elements in all. Below 4 the batched path shares the work better.
inline index_t filter_partials(const ConvDims& d) {
  const index_t units = d.N * conv_tiles(d).per_image, size = std::max<index_t>(1, d.O * d.K);
  return std::min({units, index_t(16), std::max<index_t>(1, (index_t(1) << 22) / size)});
}

/// The tiled path's filter gradient: each of filter_partials() tasks sums its run of tiles into a
/// partial gradient; the partials are added in a fixed order (so results do not depend on the
/// thread count).
template <class T>
void conv2d_backward_filter_tiled(const T* x, const T* dy, T* dw, const ConvDims& d, const Conv2dGeometry& g) {
  const auto tiles = conv_tiles(d);
  const bool pointwise = pointwise_conv(d, g), few_taps = few_taps_conv(d);
  const index_t units = d.N * tiles.per_image, parts = filter_partials(d), size = d.O * d.K;
  auto partials = conv_scratch<T>(parts * size);
  parallel_tasks(parts, [&](index_t part) {
    auto cols = conv_scratch<T>(pointwise ? 0 : d.K * tiles.rows * d.Wo);
    T* acc = partials.data() + part * size;
    const index_t u0 = units * part / parts, u1 = units * (part + 1) / parts;
    for (index_t u = u0; u < u1; ++u) {
      const auto t = conv_tile(d, tiles, u);
      for (index_t grp = 0; grp < g.groups; ++grp) {
        const auto [b, ldb] = tile_columns(x, d, t, grp, g, pointwise, cols.data());
        // dW_g [Og, K] (+)= dy tile [Og, np] . cols^T [np, K]
        const T* a = dy + (t.n * d.O + grp * d.Og) * d.P + t.p0;
        T* c = acc + grp * d.Og * d.K;
        if (few_taps) {
          few_taps_product_nt(d.Og, t.np, d.K, a, d.P, b, ldb, c, u > u0);
        } else {
          gemm_on_this_thread(false, true, d.Og, d.K, t.np, T(1), a, d.P, b, ldb, u > u0 ? T(1) : T(0), c, d.K);
        }
      }
    }
  });
  add_partials(partials.data(), parts, size, dw);
}

/// Whether a forward pass runs on the calling thread alone: when there are fewer images than
/// threads, so that an image would be shared out, and an image takes under 2^20 multiply-adds.
/// Shared out, a small image's parts spend about as long fetching the input, weights and output
/// from the other cores' caches as they save (docs/cpu-performance.md, "Small kernels and the thread
/// pool"). The direct path decides for itself (direct_conv): it shares a small image out by output
/// channels, in one region where no task reads what another wrote.
inline bool conv_forward_on_one_thread(const ConvDims& d, const Conv2dGeometry& g, bool pooled) {
  return d.N < CpuPool::instance().threads() && double(d.O) * double(d.P) * double(d.K) < double(1 << 20) &&
         !direct_conv_forward(d, g, pooled);
}

}  // namespace detail

template <>
struct has_relu_epilogue<cpu> : std::true_type {};  // conv2d_forward here, batch_norm_forward in normalization.hpp

namespace detail {
/// w [O, ...] with each output channel's weights times scale[o] (conv2d_forward's weight_scale,
/// for the paths that do not apply it while packing the weights).
template <class T>
Tensor<T, 4, cpu> scaled_weights(const Tensor<T, 4, cpu>& w, const T* scale) {
  auto scaled = Tensor<T, 4, cpu>::uninitialized(w.shape());
  const index_t O = w.shape()[0], K = O == 0 ? 0 : w.size() / O;
  using Row = Eigen::Array<T, Eigen::Dynamic, 1>;
  for (index_t o = 0; o < O; ++o)
    Eigen::Map<Row>(scaled.data() + o * K, K) = Eigen::Map<const Row>(w.data() + o * K, K) * scale[o];
  return scaled;
}
}  // namespace detail

/// y = conv2d(x, w) (+ bias[o] when `bias` is not null; then relu(y) when `relu`): x [N, C, H, W],
/// w [O, C / groups, kh, kw], y [N, O, Ho, Wo], bias [O]; all contiguous. The bias and relu are
/// applied while the output is written, not in passes of their own. With `weight_scale` ([O]),
/// the weights are w[o] * weight_scale[o] (has_batch_norm_fold): the direct path scales them as it
/// packs them, the others take a scaled copy.
template <class T>
void conv2d_forward(cpu, const Tensor<T, 4, cpu>& x, const Tensor<T, 4, cpu>& w, Tensor<T, 4, cpu>& y,
                    const Conv2dGeometry& g, const T* bias = nullptr, bool relu = false,
                    const T* weight_scale = nullptr) {
  const auto d = detail::conv_dims(x.shape(), w.shape(), g, y.shape()[2], y.shape()[3]);
  if (d.N == 0 || d.O == 0 || d.P == 0) return;
  const bool direct = d.K != 0 && !detail::winograd_conv_forward(d, g) && detail::direct_conv_forward(d, g);
  if (weight_scale && !direct && d.K != 0) {
    conv2d_forward(cpu{}, x, detail::scaled_weights(w, weight_scale), y, g, bias, relu);
    return;
  }
  const detail::InlineRegions small(detail::conv_forward_on_one_thread(d, g, false));
  if (d.K == 0) {  // no input channels: the bias alone
    for (index_t n = 0; n < d.N; ++n) {
      for (index_t o = 0; o < d.O; ++o) {
        const T v = bias ? bias[o] : T(0);
        std::fill_n(y.data() + (n * d.O + o) * d.P, d.P, relu ? detail::relu_value(v) : v);
      }
    }
    return;
  }
  if (detail::winograd_conv_forward(d, g)) {
    detail::conv2d_forward_winograd(x.data(), w.data(), y.data(), d, g, bias, relu);
    return;
  }
  if (direct) {
    detail::conv2d_forward_direct(x.data(), w.data(), y.data(), d, g, bias, relu,
                                  static_cast<const detail::PooledOutput<T>*>(nullptr), weight_scale);
    return;
  }
  if (detail::tiled_conv(d)) {
    detail::conv2d_forward_tiled(x.data(), w.data(), y.data(), d, g, bias, relu);
    return;
  }
  const index_t nb_max = detail::conv_chunk(d.N, d.K, d.P);
  auto cols = detail::conv_scratch<T>(d.K * nb_max * d.P), out = detail::conv_scratch<T>(d.Og * nb_max * d.P);
  for (index_t n0 = 0; n0 < d.N; n0 += nb_max) {
    const index_t nb = std::min(nb_max, d.N - n0);
    for (index_t grp = 0; grp < g.groups; ++grp) {
      detail::im2col(x.data(), d.C, d.H, d.W, n0, nb, grp * d.Cg, d.Cg, d.kh, d.kw, d.Ho, d.Wo, g, cols.data());
      // out [Og, nb * P] = W_g [Og, K] . cols [K, nb * P]
      gemm(cpu{}, false, false, d.Og, nb * d.P, d.K, T(1), w.data() + grp * d.Og * d.K, d.K, cols.data(), nb * d.P, T(0),
           out.data(), nb * d.P);
      detail::parallel_for(nb * d.Og, 1, 4, [&](index_t t0, index_t t1) {
        for (index_t t = t0; t < t1; ++t) {
          const index_t n = t / d.Og, o = t % d.Og;
          T* dst = y.data() + ((n0 + n) * d.O + grp * d.Og + o) * d.P;
          const T* src = out.data() + o * nb * d.P + n * d.P;
          if (relu) {
            const T b = bias ? bias[grp * d.Og + o] : T(0);
            for (index_t i = 0; i < d.P; ++i) dst[i] = detail::relu_value(src[i] + b);
          } else if (bias) {
            const T b = bias[grp * d.Og + o];
            for (index_t i = 0; i < d.P; ++i) dst[i] = src[i] + b;
          } else {
            std::memcpy(dst, src, sizeof(T) * static_cast<std::size_t>(d.P));
          }
        }
      });
    }
  }
}

template <>
struct has_conv_pool_epilogue<cpu> : std::true_type {};

/// y = pool(conv2d(x, w) (+ bias[o]; then relu when asked)) for inference: y [N, O, Hq, Wq] is the
/// pooling's output of the convolution's [N, O, Ho, Wo] (`conv_shape`). The direct and tiled
/// paths compute an image at a time into scratch memory and pool it while it is in cache, and the
/// Winograd path pools a 2x2 max pooling tile by tile, so the convolution's output is not written
/// to memory and read back; otherwise (and for few images) it is stored in scratch and pooled
/// after. Results equal conv2d_forward's then pool2d_forward's (weight_scale as there).
template <class T>
void conv2d_pool_forward(cpu, const Tensor<T, 4, cpu>& x, const Tensor<T, 4, cpu>& w, Tensor<T, 4, cpu>& y,
                         const Shape<4>& conv_shape, const Conv2dGeometry& g, const T* bias, bool relu,
                         const PoolEpilogue& pool, const T* weight_scale = nullptr) {
  const auto d = detail::conv_dims(x.shape(), w.shape(), g, conv_shape[2], conv_shape[3]);
  const detail::InlineRegions small(detail::conv_forward_on_one_thread(d, g, true));
  const detail::PooledOutput<T> pooled{pool, y.data(), d.Ho, d.Wo, y.shape()[2], y.shape()[3], relu};
  const bool nonempty = d.N != 0 && d.O != 0 && d.P != 0 && d.K != 0;
  const bool winograd = nonempty && detail::winograd_conv_forward(d, g);
  // The Winograd path pools a 2x2 max pooling as it writes (its tiles are the windows), and any
  // other pooling after the whole output, as for few images.
  const bool some = nonempty && !winograd;
  const bool direct = some && detail::direct_conv_forward(d, g, true);
  if (weight_scale && !direct && nonempty) {
    conv2d_pool_forward(cpu{}, x, detail::scaled_weights(w, weight_scale), y, conv_shape, g, bias, relu, pool);
    return;
  }
  if (winograd && detail::winograd_pools(pooled)) {
    detail::conv2d_forward_winograd(x.data(), w.data(), static_cast<T*>(nullptr), d, g, bias, relu, &pooled);
  } else if (direct) {
    detail::conv2d_forward_direct(x.data(), w.data(), static_cast<T*>(nullptr), d, g, bias, relu, &pooled,
                                  weight_scale);
  } else if (some && detail::tiled_conv(d)) {
    detail::conv2d_forward_tiled(x.data(), w.data(), static_cast<T*>(nullptr), d, g, bias, relu, &pooled);
  } else {
    auto conv = Tensor<T, 4, cpu>::uninitialized(conv_shape);
    conv2d_forward(cpu{}, x, w, conv, g, bias, relu);
    pooled.pool_all(conv.data(), d.N * d.O);
  }
}

/// dx = the gradient of conv2d with respect to its input, from w and dy (dx's shape is the input's).
template <class T>
void conv2d_backward_data(cpu, const Tensor<T, 4, cpu>& w, const Tensor<T, 4, cpu>& dy, Tensor<T, 4, cpu>& dx,
                          const Conv2dGeometry& g) {
  const auto d = detail::conv_dims(dx.shape(), w.shape(), g, dy.shape()[2], dy.shape()[3]);
  if (d.N != 0 && d.O != 0 && d.K != 0 && d.P != 0 && detail::winograd_conv_backward_data(d, g)) {
    detail::conv2d_backward_data_winograd(w.data(), dy.data(), dx.data(), d, g);
    return;
  }
  if (d.N != 0 && d.O != 0 && d.K != 0 && d.P != 0 && detail::direct_conv_backward_data(d, g)) {
    detail::conv2d_backward_data_direct(w.data(), dy.data(), dx.data(), d, g);
    return;
  }
  if (d.N != 0 && d.O != 0 && d.K != 0 && detail::tiled_conv(d)) {
    detail::conv2d_backward_data_tiled(w.data(), dy.data(), dx.data(), d, g);
    return;
  }
  std::fill(dx.data(), dx.data() + dx.size(), T(0));
  if (d.N == 0 || d.O == 0 || d.P == 0 || d.K == 0) return;
  const index_t nb_max = detail::conv_chunk(d.N, d.K, d.P);
  auto cols = detail::conv_scratch<T>(d.K * nb_max * d.P), dyg = detail::conv_scratch<T>(d.Og * nb_max * d.P);
  for (index_t n0 = 0; n0 < d.N; n0 += nb_max) {
    const index_t nb = std::min(nb_max, d.N - n0);
    for (index_t grp = 0; grp < g.groups; ++grp) {
      detail::gather_output_grad(dy.data(), d, n0, nb, grp, dyg.data());
      // dcols [K, nb P] = W_g^T [K, Og] . dyg [Og, nb P]; then scattered back into dx.
      gemm(cpu{}, true, false, d.K, nb * d.P, d.Og, T(1), w.data() + grp * d.Og * d.K, d.K, dyg.data(), nb * d.P, T(0),
           cols.data(), nb * d.P);
      detail::col2im(cols.data(), d.C, d.H, d.W, n0, nb, grp * d.Cg, d.Cg, d.kh, d.kw, d.Ho, d.Wo, g, dx.data());
    }
  }
}

/// dw = the gradient of conv2d with respect to its weight, from x and dy (dw's shape is w's).
template <class T>
void conv2d_backward_filter(cpu, const Tensor<T, 4, cpu>& x, const Tensor<T, 4, cpu>& dy, Tensor<T, 4, cpu>& dw,
                            const Conv2dGeometry& g) {
  const auto d = detail::conv_dims(x.shape(), dw.shape(), g, dy.shape()[2], dy.shape()[3]);
  if (d.N != 0 && d.O != 0 && d.K != 0 && d.P != 0 && detail::winograd_conv_backward_filter(d, g)) {
    detail::conv2d_backward_filter_winograd(x.data(), dy.data(), dw.data(), d, g);
    return;
  }
  if (d.N != 0 && d.O != 0 && d.K != 0 && d.P != 0 && detail::direct_conv_backward_filter(d, g)) {
    detail::conv2d_backward_filter_direct(x.data(), dy.data(), dw.data(), d, g);
    return;
  }
  if (d.N != 0 && d.O != 0 && d.K != 0 && detail::tiled_conv(d) && detail::filter_partials(d) >= 4) {
    detail::conv2d_backward_filter_tiled(x.data(), dy.data(), dw.data(), d, g);
    return;
  }
  std::fill(dw.data(), dw.data() + dw.size(), T(0));
  if (d.N == 0 || d.O == 0 || d.P == 0 || d.K == 0) return;
  const index_t nb_max = detail::conv_chunk(d.N, d.K, d.P);
  auto cols = detail::conv_scratch<T>(d.K * nb_max * d.P), dyg = detail::conv_scratch<T>(d.Og * nb_max * d.P);
  for (index_t n0 = 0; n0 < d.N; n0 += nb_max) {
    const index_t nb = std::min(nb_max, d.N - n0);
    for (index_t grp = 0; grp < g.groups; ++grp) {
      detail::gather_output_grad(dy.data(), d, n0, nb, grp, dyg.data());
      detail::im2col(x.data(), d.C, d.H, d.W, n0, nb, grp * d.Cg, d.Cg, d.kh, d.kw, d.Ho, d.Wo, g, cols.data());
      // dW_g [Og, K] += dyg [Og, nb P] . cols^T [nb P, K]
      gemm(cpu{}, false, true, d.Og, d.K, nb * d.P, T(1), dyg.data(), nb * d.P, cols.data(), nb * d.P, T(1),
           dw.data() + grp * d.Og * d.K, d.K);
    }
  }
}

/// db[o] = the sum of dy[n, o, :, :] over the batch and the positions (a conv2d bias's gradient).
template <class T>
void conv2d_backward_bias(cpu, const Tensor<T, 4, cpu>& dy, Tensor<T, 1, cpu>& db) {
  const index_t N = dy.shape()[0], O = dy.shape()[1], P = dy.shape()[2] * dy.shape()[3];
  detail::parallel_for(O, 1, 2, [&](index_t o0, index_t o1) {
    for (index_t o = o0; o < o1; ++o) {
      db.data()[o] = T(detail::sum_by_lanes(dy.data(), o, N, O, P, [](T v) { return double(v); }));
    }
  });
}

}  // namespace tessera
