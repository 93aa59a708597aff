// 2-D convolution (NCHW) on the CPU, and its two backward passes (data, filter). Groups, stride,
// padding and dilation. docs/cpu-performance.md explains the choice of paths; in short:
//
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
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "tessera/backend/cpu/conv_common.hpp"
#include "tessera/backend/cpu/conv_direct.hpp"
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
/// Few taps: the tiled path's own kernels instead of a GEMM (see the top of this file).
inline bool few_taps_conv(const ConvDims& d) { return d.K <= 16; }

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

/// C [m, n] (row stride ldc) = A [m, k] . B [k, n] (+ bias[r] on row r when bias is not null; then
/// relu when asked), for a short k (few_taps_conv): four rows of C at a time, two SIMD packets of
/// columns, so each loaded packet of B feeds four multiply-adds.
template <class T>
void few_taps_product(index_t m, index_t n, index_t k, const T* a, const T* b, index_t ldb, T* c, index_t ldc,
                      const T* bias, bool relu) {
  namespace pk = Eigen::internal;
  using P = packet_t<T>;
  constexpr index_t S = packet_size_v<T>;
  auto rows = [&](auto rows_c, index_t r0) {
    constexpr int R = decltype(rows_c)::value;
    index_t j = 0;
    for (; j + 2 * S <= n; j += 2 * S) {
      P acc[R][2];
      for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = pk::pset1<P>(bias ? bias[r0 + r] : T(0));
      for (index_t q = 0; q < k; ++q) {
        const P b0 = pk::ploadu<P>(b + q * ldb + j), b1 = pk::ploadu<P>(b + q * ldb + j + S);
        for (int r = 0; r < R; ++r) {
          const P w = pk::pset1<P>(a[(r0 + r) * k + q]);
          acc[r][0] = pk::pmadd(w, b0, acc[r][0]);
          acc[r][1] = pk::pmadd(w, b1, acc[r][1]);
        }
      }
      for (int r = 0; r < R; ++r) {
        pk::pstoreu(c + (r0 + r) * ldc + j, relu ? relu_packet(acc[r][0]) : acc[r][0]);
        pk::pstoreu(c + (r0 + r) * ldc + j + S, relu ? relu_packet(acc[r][1]) : acc[r][1]);
      }
    }
    for (; j < n; ++j) {
      for (int r = 0; r < R; ++r) {
        T acc = bias ? bias[r0 + r] : T(0);
        for (index_t q = 0; q < k; ++q) acc += a[(r0 + r) * k + q] * b[q * ldb + j];
        c[(r0 + r) * ldc + j] = relu ? relu_value(acc) : acc;
      }
    }
  };
  index_t r0 = 0;
  for (; r0 + 4 <= m; r0 += 4) rows(std::integral_constant<int, 4>{}, r0);
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
      for (int r = 0; r < R; ++r) acc[r] = pk::pset1<P>(T(0));
      index_t j = 0;
      for (; j + S <= n; j += S) {
        const P v = pk::ploadu<P>(bq + j);
        for (int r = 0; r < R; ++r) acc[r] = pk::pmadd(pk::ploadu<P>(a + (r0 + r) * lda + j), v, acc[r]);
      }
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

/// The tiled path's forward (see the top of this file).
template <class T>
void conv2d_forward_tiled(const T* x, const T* w, T* y, const ConvDims& d, const Conv2dGeometry& g, const T* bias,
                          bool relu) {
  const auto tiles = conv_tiles(d);
  const bool pointwise = pointwise_conv(d, g), few_taps = few_taps_conv(d);
  parallel_for(d.N * tiles.per_image, 1, 2, [&](index_t u0, index_t u1) {
    auto cols = conv_scratch<T>(pointwise ? 0 : d.K * tiles.rows * d.Wo);
    for (index_t u = u0; u < u1; ++u) {
      const auto t = conv_tile(d, tiles, u);
      for (index_t grp = 0; grp < g.groups; ++grp) {
        const auto [b, ldb] = tile_columns(x, d, t, grp, g, pointwise, cols.data());
        T* out = y + (t.n * d.O + grp * d.Og) * d.P + t.p0;
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
    }
  });
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
  parallel_for(size, 1024, 4096, [&](index_t e0, index_t e1) {
    for (index_t e = e0; e < e1; ++e) {
      T s = partials.data()[e];
      for (index_t p = 1; p < parts; ++p) s += partials.data()[p * size + e];
      dw[e] = s;
    }
  });
}

}  // namespace detail

template <>
struct has_relu_epilogue<cpu> : std::true_type {};  // conv2d_forward here, batch_norm_forward in normalization.hpp

/// y = conv2d(x, w) (+ bias[o] when `bias` is not null; then relu(y) when `relu`): x [N, C, H, W],
/// w [O, C / groups, kh, kw], y [N, O, Ho, Wo], bias [O]; all contiguous. The bias and relu are
/// applied while the output is written, not in passes of their own.
template <class T>
void conv2d_forward(cpu, const Tensor<T, 4, cpu>& x, const Tensor<T, 4, cpu>& w, Tensor<T, 4, cpu>& y,
                    const Conv2dGeometry& g, const T* bias = nullptr, bool relu = false) {
  const auto d = detail::conv_dims(x.shape(), w.shape(), g, y.shape()[2], y.shape()[3]);
  if (d.N == 0 || d.O == 0 || d.P == 0) return;
  if (d.K == 0) {  // no input channels: the bias alone
    for (index_t n = 0; n < d.N; ++n) {
      for (index_t o = 0; o < d.O; ++o) {
        const T v = bias ? bias[o] : T(0);
        std::fill_n(y.data() + (n * d.O + o) * d.P, d.P, relu ? detail::relu_value(v) : v);
      }
    }
    return;
  }
  if (detail::direct_conv_forward(d, g)) {
    detail::conv2d_forward_direct(x.data(), w.data(), y.data(), d, g, bias, relu);
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

/// dx = the gradient of conv2d with respect to its input, from w and dy (dx's shape is the input's).
template <class T>
void conv2d_backward_data(cpu, const Tensor<T, 4, cpu>& w, const Tensor<T, 4, cpu>& dy, Tensor<T, 4, cpu>& dx,
                          const Conv2dGeometry& g) {
  const auto d = detail::conv_dims(dx.shape(), w.shape(), g, dy.shape()[2], dy.shape()[3]);
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

namespace detail {
/// Kernel 2x2, stride 2, no padding, no dilation: max pooling's fast path.
inline bool is_plain_2x2_pool(index_t kh, index_t kw, const Conv2dGeometry& g) {
  return kh == 2 && kw == 2 && g.stride_h == 2 && g.stride_w == 2 && g.pad_h == 0 && g.pad_w == 0 && g.dilation_h == 1 &&
         g.dilation_w == 1;
}

/// The first maximum of a 2x2 window read in row order (a, b / c, d), as the general pooling loops
/// choose it: a later element wins when it is greater, or when it is NaN and the best so far is
/// not (NaN propagates, as in PyTorch). Returns its index (0-3) and sets m to it. Branch-free, so
/// the loops above vectorize.
template <class T>
int first_max_2x2(T a, T b, T c, T d, T& m) {
  const bool tb = b > a || (b != b && a == a);
  const T m1 = tb ? b : a;
  const bool tc = c > m1 || (c != c && m1 == m1);
  const T m2 = tc ? c : m1;
  const bool td = d > m2 || (d != d && m2 == m2);
  m = td ? d : m2;
  return td ? 3 : tc ? 2 : tb ? 1 : 0;
}

/// One output row of 2x2 max pooling: out[j] = the first maximum of r0[2j], r0[2j + 1], r1[2j],
/// r1[2j + 1] (first_max_2x2's value, bit for bit: the same comparisons in the same order). Floats
/// run 16 (AVX-512) or 8 (AVX2) windows at a time, the rows' even and odd elements split by
/// permutes, and a short row or the rest of one as a masked step: the model's rows are 14 and 7
/// windows long. (The scalar loop compiled to branches on one path and to vector code on
/// another, 4x apart on random data.)
template <class T>
void max_pool_2x2_row(const T* r0, const T* r1, T* out, index_t Wo) {
  index_t j = 0;
  if constexpr (std::is_same_v<T, float>) {
#if defined(__AVX512F__)
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const auto wins = [](__m512 later, __m512 best) {  // later > best, or later NaN and best not
      return __mmask16(_mm512_cmp_ps_mask(later, best, _CMP_GT_OQ) |
                       (_mm512_cmp_ps_mask(later, later, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q)));
    };
    const auto lanes = [](index_t n) { return __mmask16(n >= 16 ? 0xFFFF : (1u << n) - 1); };
    for (; j < Wo; j += 16) {
      const index_t n = std::min<index_t>(16, Wo - j);  // windows in this step
      const __mmask16 lo = lanes(2 * n), hi = lanes(std::max<index_t>(0, 2 * n - 16));
      const __m512 l0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * j), h0 = _mm512_maskz_loadu_ps(hi, r0 + 2 * j + 16);
      const __m512 l1 = _mm512_maskz_loadu_ps(lo, r1 + 2 * j), h1 = _mm512_maskz_loadu_ps(hi, r1 + 2 * j + 16);
      const __m512 a = _mm512_permutex2var_ps(l0, even, h0), b = _mm512_permutex2var_ps(l0, odd, h0);
      const __m512 c = _mm512_permutex2var_ps(l1, even, h1), d = _mm512_permutex2var_ps(l1, odd, h1);
      __m512 m = _mm512_mask_blend_ps(wins(b, a), a, b);
      m = _mm512_mask_blend_ps(wins(c, m), m, c);
      m = _mm512_mask_blend_ps(wins(d, m), m, d);
      _mm512_mask_storeu_ps(out + j, lanes(n), m);
    }
#elif defined(__AVX2__)
    const auto wins = [](__m256 later, __m256 best) {
      return _mm256_or_ps(_mm256_cmp_ps(later, best, _CMP_GT_OQ),
                          _mm256_and_ps(_mm256_cmp_ps(later, later, _CMP_UNORD_Q), _mm256_cmp_ps(best, best, _CMP_ORD_Q)));
    };
    const __m256i lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const auto lanes = [&](index_t n) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::min<index_t>(n, 8))), lane_index); };
    for (; j < Wo; j += 8) {
      const index_t n = std::min<index_t>(8, Wo - j);
      const __m256i lo = lanes(2 * n), hi = lanes(std::max<index_t>(0, 2 * n - 8));
      const __m256 l0 = _mm256_maskload_ps(r0 + 2 * j, lo), h0 = _mm256_maskload_ps(r0 + 2 * j + 8, hi);
      const __m256 l1 = _mm256_maskload_ps(r1 + 2 * j, lo), h1 = _mm256_maskload_ps(r1 + 2 * j + 8, hi);
      // Within each 128-bit half: windows 0 1 4 5 | 2 3 6 7. The comparisons are per lane, so the
      // result is put in order once, at the end.
      const __m256 a = _mm256_shuffle_ps(l0, h0, _MM_SHUFFLE(2, 0, 2, 0)), b = _mm256_shuffle_ps(l0, h0, _MM_SHUFFLE(3, 1, 3, 1));
      const __m256 c = _mm256_shuffle_ps(l1, h1, _MM_SHUFFLE(2, 0, 2, 0)), d = _mm256_shuffle_ps(l1, h1, _MM_SHUFFLE(3, 1, 3, 1));
      __m256 m = _mm256_blendv_ps(a, b, wins(b, a));
      m = _mm256_blendv_ps(m, c, wins(c, m));
      m = _mm256_blendv_ps(m, d, wins(d, m));
      m = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(m), _MM_SHUFFLE(3, 1, 2, 0)));
      _mm256_maskstore_ps(out + j, lanes(n), m);
    }
#endif
  }
  for (; j < Wo; ++j) first_max_2x2(r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1], out[j]);
}

/// One output row of 2x2 max pooling's backward: of each window j's four elements, the one
/// first_max_2x2 picks (the same comparisons in the same order) gets gout[j] in g0/g1 (the
/// gradient rows under r0/r1) and the other three 0; elements [0, 2 Wo) of both rows are written.
/// Floats run 16 (AVX-512) or 8 (AVX2) windows at a time like the forward; the gradients are
/// interleaved back into row order. (The scalar loop was 16% of a CNN training step.)
template <class T>
void max_pool_2x2_backward_row(const T* r0, const T* r1, const T* gout, T* g0, T* g1, index_t Wo) {
  index_t j = 0;
  if constexpr (std::is_same_v<T, float>) {
#if defined(__AVX512F__)
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m512i first_half = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i second_half = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const auto wins = [](__m512 later, __m512 best) {  // later > best, or later NaN and best not
      return __mmask16(_mm512_cmp_ps_mask(later, best, _CMP_GT_OQ) |
                       (_mm512_cmp_ps_mask(later, later, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q)));
    };
    const auto lanes = [](index_t n) { return __mmask16(n >= 16 ? 0xFFFF : (1u << n) - 1); };
    for (; j < Wo; j += 16) {
      const index_t n = std::min<index_t>(16, Wo - j);  // windows in this step
      const __mmask16 lo = lanes(2 * n), hi = lanes(std::max<index_t>(0, 2 * n - 16));
      const __m512 l0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * j), h0 = _mm512_maskz_loadu_ps(hi, r0 + 2 * j + 16);
      const __m512 l1 = _mm512_maskz_loadu_ps(lo, r1 + 2 * j), h1 = _mm512_maskz_loadu_ps(hi, r1 + 2 * j + 16);
      const __m512 a = _mm512_permutex2var_ps(l0, even, h0), b = _mm512_permutex2var_ps(l0, odd, h0);
      const __m512 c = _mm512_permutex2var_ps(l1, even, h1), d = _mm512_permutex2var_ps(l1, odd, h1);
      const __mmask16 tb = wins(b, a);
      const __m512 m1 = _mm512_mask_blend_ps(tb, a, b);
      const __mmask16 tc = wins(c, m1);
      const __mmask16 td = wins(d, _mm512_mask_blend_ps(tc, m1, c));
      const __m512 g = _mm512_maskz_loadu_ps(lanes(n), gout + j);
      const __m512 ga = _mm512_maskz_mov_ps(__mmask16(~(tb | tc | td)), g);
      const __m512 gb = _mm512_maskz_mov_ps(__mmask16(tb & ~tc & ~td), g);
      const __m512 gc = _mm512_maskz_mov_ps(__mmask16(tc & ~td), g), gd = _mm512_maskz_mov_ps(td, g);
      _mm512_mask_storeu_ps(g0 + 2 * j, lo, _mm512_permutex2var_ps(ga, first_half, gb));
      _mm512_mask_storeu_ps(g0 + 2 * j + 16, hi, _mm512_permutex2var_ps(ga, second_half, gb));
      _mm512_mask_storeu_ps(g1 + 2 * j, lo, _mm512_permutex2var_ps(gc, first_half, gd));
      _mm512_mask_storeu_ps(g1 + 2 * j + 16, hi, _mm512_permutex2var_ps(gc, second_half, gd));
    }
#elif defined(__AVX2__)
    const auto wins = [](__m256 later, __m256 best) {
      return _mm256_or_ps(_mm256_cmp_ps(later, best, _CMP_GT_OQ),
                          _mm256_and_ps(_mm256_cmp_ps(later, later, _CMP_UNORD_Q), _mm256_cmp_ps(best, best, _CMP_ORD_Q)));
    };
    const __m256i lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const auto lanes = [&](index_t n) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::min<index_t>(n, 8))), lane_index); };
    for (; j < Wo; j += 8) {
      const index_t n = std::min<index_t>(8, Wo - j);
      const __m256i lo = lanes(2 * n), hi = lanes(std::max<index_t>(0, 2 * n - 8));
      const __m256 l0 = _mm256_maskload_ps(r0 + 2 * j, lo), h0 = _mm256_maskload_ps(r0 + 2 * j + 8, hi);
      const __m256 l1 = _mm256_maskload_ps(r1 + 2 * j, lo), h1 = _mm256_maskload_ps(r1 + 2 * j + 8, hi);
      // Windows 0 1 4 5 | 2 3 6 7 in the lanes, as in the forward; gout is loaded in that order, and
      // unpacking each pair of gradients puts the elements back in row order.
      const __m256 a = _mm256_shuffle_ps(l0, h0, _MM_SHUFFLE(2, 0, 2, 0)), b = _mm256_shuffle_ps(l0, h0, _MM_SHUFFLE(3, 1, 3, 1));
      const __m256 c = _mm256_shuffle_ps(l1, h1, _MM_SHUFFLE(2, 0, 2, 0)), d = _mm256_shuffle_ps(l1, h1, _MM_SHUFFLE(3, 1, 3, 1));
      const __m256 tb = wins(b, a);
      const __m256 m1 = _mm256_blendv_ps(a, b, tb);
      const __m256 tc = wins(c, m1);
      const __m256 td = wins(d, _mm256_blendv_ps(m1, c, tc));
      const __m256 g = _mm256_castpd_ps(
          _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_maskload_ps(gout + j, lanes(n))), _MM_SHUFFLE(3, 1, 2, 0)));
      const __m256 ga = _mm256_andnot_ps(_mm256_or_ps(tb, _mm256_or_ps(tc, td)), g);
      const __m256 gb = _mm256_and_ps(_mm256_andnot_ps(_mm256_or_ps(tc, td), tb), g);
      const __m256 gc = _mm256_and_ps(_mm256_andnot_ps(td, tc), g), gd = _mm256_and_ps(td, g);
      _mm256_maskstore_ps(g0 + 2 * j, lo, _mm256_unpacklo_ps(ga, gb));
      _mm256_maskstore_ps(g0 + 2 * j + 8, hi, _mm256_unpackhi_ps(ga, gb));
      _mm256_maskstore_ps(g1 + 2 * j, lo, _mm256_unpacklo_ps(gc, gd));
      _mm256_maskstore_ps(g1 + 2 * j + 8, hi, _mm256_unpackhi_ps(gc, gd));
    }
#endif
  }
  for (; j < Wo; ++j) {
    T m;
    const int best = first_max_2x2(r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1], m);
    const T gv = gout[j];
    g0[2 * j] = best == 0 ? gv : T(0);
    g0[2 * j + 1] = best == 1 ? gv : T(0);
    g1[2 * j] = best == 2 ? gv : T(0);
    g1[2 * j + 1] = best == 3 ? gv : T(0);
  }
}
}  // namespace detail

/// Max (Max = true) or average pooling forward, NCHW. Average counts padding (PyTorch's default
/// count_include_pad = true); max ignores it.
template <bool Max, class T>
void pool2d_forward(cpu, std::bool_constant<Max>, const Tensor<T, 4, cpu>& x, Tensor<T, 4, cpu>& y, index_t kh, index_t kw, const Conv2dGeometry& g) {
  const auto s = x.shape();
  const index_t H = s[2], W = s[3], Ho = y.shape()[2], Wo = y.shape()[3];
  const T inv = T(1) / T(kh * kw);
  if constexpr (Max) {
    if (detail::is_plain_2x2_pool(kh, kw, g)) {
      // The common case (kernel 2, stride 2, no padding): no bounds checks, and the same choice
      // (detail::first_max_2x2) as the backward pass below.
      detail::parallel_for(s[0] * s[1], 1, 2, [&](index_t p0, index_t p1) {
        for (index_t p = p0; p < p1; ++p) {
          const T* in = x.data() + p * H * W;
          T* out = y.data() + p * Ho * Wo;
          for (index_t oh = 0; oh < Ho; ++oh) detail::max_pool_2x2_row(in + 2 * oh * W, in + (2 * oh + 1) * W, out + oh * Wo, Wo);
        }
      });
      return;
    }
  }
  detail::parallel_for(s[0] * s[1], 1, 2, [&](index_t p0, index_t p1) {
    for (index_t p = p0; p < p1; ++p) {
      const T* in = x.data() + p * H * W;
      T* out = y.data() + p * Ho * Wo;
      for (index_t oh = 0; oh < Ho; ++oh) {
        for (index_t ow = 0; ow < Wo; ++ow) {
          T acc = Max ? -std::numeric_limits<T>::infinity() : T(0);
          for (index_t i = 0; i < kh; ++i) {
            const index_t ih = oh * g.stride_h - g.pad_h + i * g.dilation_h;
            if (ih < 0 || ih >= H) continue;
            for (index_t j = 0; j < kw; ++j) {
              const index_t iw = ow * g.stride_w - g.pad_w + j * g.dilation_w;
              if (iw < 0 || iw >= W) continue;
              const T v = in[ih * W + iw];
              if constexpr (Max) {
                if (v > acc || v != v) acc = v;  // NaN propagates, as in PyTorch
              } else {
                acc += v;
              }
            }
          }
          out[oh * Wo + ow] = Max ? acc : acc * inv;
        }
      }
    }
  });
}

/// Pooling backward: dx (zeroed here) from dy; max pooling routes each gradient to the first
/// maximum of its window (recomputed from x).
template <bool Max, class T>
void pool2d_backward(cpu, std::bool_constant<Max>, const Tensor<T, 4, cpu>& x, const Tensor<T, 4, cpu>& dy, Tensor<T, 4, cpu>& dx, index_t kh,
                     index_t kw, const Conv2dGeometry& g) {
  const auto s = x.shape();
  const index_t H = s[2], W = s[3], Ho = dy.shape()[2], Wo = dy.shape()[3];
  const T inv = T(1) / T(kh * kw);
  if constexpr (Max) {
    if (detail::is_plain_2x2_pool(kh, kw, g)) {
      // Windows do not overlap: every element of dx is written once, with its window's gradient
      // or 0 (no zero-fill pass, no scattered adds).
      detail::parallel_for(s[0] * s[1], 1, 2, [&](index_t p0, index_t p1) {
        for (index_t p = p0; p < p1; ++p) {
          const T* in = x.data() + p * H * W;
          const T* gout = dy.data() + p * Ho * Wo;
          T* gin = dx.data() + p * H * W;
          for (index_t oh = 0; oh < Ho; ++oh) {
            const T* r0 = in + 2 * oh * W;
            const T* r1 = r0 + W;
            T* g0 = gin + 2 * oh * W;
            T* g1 = g0 + W;
            detail::max_pool_2x2_backward_row(r0, r1, gout + oh * Wo, g0, g1, Wo);
            std::fill(g0 + 2 * Wo, g0 + W, T(0));  // an odd last column is in no window
            std::fill(g1 + 2 * Wo, g1 + W, T(0));
          }
          std::fill(gin + 2 * Ho * W, gin + H * W, T(0));  // nor is an odd last row
        }
      });
      return;
    }
  }
  std::fill(dx.data(), dx.data() + dx.size(), T(0));
  detail::parallel_for(s[0] * s[1], 1, 2, [&](index_t p0, index_t p1) {
    for (index_t p = p0; p < p1; ++p) {
      const T* in = x.data() + p * H * W;
      const T* gout = dy.data() + p * Ho * Wo;
      T* gin = dx.data() + p * H * W;
      for (index_t oh = 0; oh < Ho; ++oh) {
        for (index_t ow = 0; ow < Wo; ++ow) {
          const T gv = gout[oh * Wo + ow];
          index_t best = -1;
          T acc = -std::numeric_limits<T>::infinity();
          for (index_t i = 0; i < kh; ++i) {
            const index_t ih = oh * g.stride_h - g.pad_h + i * g.dilation_h;
            if (ih < 0 || ih >= H) continue;
            for (index_t j = 0; j < kw; ++j) {
              const index_t iw = ow * g.stride_w - g.pad_w + j * g.dilation_w;
              if (iw < 0 || iw >= W) continue;
              if constexpr (Max) {
                const T v = in[ih * W + iw];
                if (best < 0 || v > acc || (v != v && acc == acc)) {
                  acc = v;
                  best = ih * W + iw;
                }
              } else {
                gin[ih * W + iw] += gv * inv;
              }
            }
          }
          if constexpr (Max) {
            if (best >= 0) gin[best] += gv;
          }
        }
      }
    }
  });
}

}  // namespace tessera
