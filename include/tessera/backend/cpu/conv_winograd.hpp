// Winograd convolution F(2x2, 3x3) on the CPU: the forward pass and the data gradient of a 3x3
// convolution at stride 1 (docs/cpu-performance.md, "Convolutions: five paths, chosen by shape",
// has the rule and the measurements).
//
// The output is cut into 2x2 tiles; tile t reads a 4x4 patch d of each input channel (its 2x2
// outputs' 3x3 windows together). With the transforms
//   V = B^T d B (input, 4x4),   U = G g G^T (filter, 4x4),   y = A^T M A (output, 2x2),
//   M[e] = sum over input channels of U[e] * V[e], for each of the 16 elements e,
// the tile's four outputs are exactly the cross-correlation's sums, with 16 products per channel
// instead of 36: the 16 sums over channels are 16 matrix products [O, C] x [C, tiles], which run on
// the direct convolution's register-tiled kernel (direct_tile) at its speed, and the transforms
// are additions. (F(4x4, 3x3) saves more products but its transforms scale values by up to 10, and
// its rounding errors in float with them.)
//
// A non-finite input spreads to every tile whose 4x4 patch holds it (V mixes the patch; up to 4
// tiles, 4x4 outputs, where the direct path reaches the 3x3 whose windows hold it), as in every
// Winograd implementation; finite inputs give the convolution's values up to rounding, unless the
// transforms' sums overflow (inputs near the type's largest values). Every output is the same sums
// in the same order whatever the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <Eigen/Core>

#include "tessera/backend/cpu/conv_common.hpp"
#include "tessera/backend/cpu/conv_direct.hpp"
#include "tessera/backend/cpu/device.hpp"
#include "tessera/backend/cpu/gemm.hpp"
#include "tessera/backend/op_args.hpp"

namespace tessera::detail {

/// 3x3 at stride 1 with no dilation or groups and a padding of at most 2 (wider, whole tiles read
/// only zeros); at least 16 channels on each side (the transforms' cost per tile grows with C + O,
/// the products' with C * O: at 8 channels they took most of what the products saved), at most 128
/// on each side (the data gradient's input channels are the forward's output channels, and a
/// unit's transformed inputs must stay in L2), and at least 2^24 multiply-adds (below, the filter
/// transform and the units' fixed costs took what the products saved on a batch of one).
inline bool winograd_conv_forward(const ConvDims& d, const Conv2dGeometry& g) {
  const double macs = double(d.N) * double(d.O) * double(d.P) * double(d.K);
  return d.kh == 3 && d.kw == 3 && g.stride_h == 1 && g.stride_w == 1 && g.dilation_h == 1 && g.dilation_w == 1 &&
         g.groups == 1 && g.pad_h <= 2 && g.pad_w <= 2 && std::min(d.C, d.O) >= 16 && std::max(d.C, d.O) <= 128 &&
         macs >= double(1 << 24);
}

/// The problem as the Winograd path sees it: tiles of 2x2 outputs, th x tw per image.
struct WinogradConv {
  index_t N, C, O, H, W, Ho, Wo, pad_h, pad_w;

  index_t th() const { return (Ho + 1) / 2; }
  index_t tw() const { return (Wo + 1) / 2; }
  index_t tiles() const { return N * th() * tw(); }
  index_t blocks() const { return direct_blocks(O); }
};

/// The tiles a unit of work transforms and multiplies at once: a multiple of the kernel's span of
/// positions, at least 48. Its transformed inputs (16 x C x tiles) stay in L2 and each element's
/// slice (C x tiles) in L1 while every block of output channels reads it.
template <class T>
constexpr index_t winograd_unit_tiles() {
  constexpr index_t span = direct_packets * packet_size_v<T>;
  return (48 + span - 1) / span * span;
}

/// The filter transform U = G g G^T of every (o, c), packed as the kernel reads its weights: per
/// element e, per block of R output channels, [C][R] (zeros past the last channel), element e's
/// blocks at packed + e * stride. The filters are first packed as the direct kernel reads them
/// ([C * 9][R] per block), so that the transform runs on R output channels at once. weight(o, k)
/// gives the filter's w[o][k], k = c * 9 + tap.
template <class T, class Weight>
void winograd_pack_filters(Weight weight, const WinogradConv& p, T* packed, index_t stride) {
  constexpr index_t R = direct_rows;
  using Lanes = Eigen::Array<T, R, 1>;
  const index_t C = p.C, blocks = p.blocks();
  const DirectConv direct{1, 1, C, p.O, 3, 3, 3, 3, 0, 0, 1, 1};
  auto taps = conv_scratch<T>(blocks * R * C * 9);
  pack_direct_weights(
      direct, [&](index_t, index_t o, index_t k) { return weight(o, k); }, taps.data());
  parallel_for(blocks * C, 16, 64, [&](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) {  // i = b * C + c
      auto g = [&](int j) { return Eigen::Map<const Lanes>(taps.data() + (i * 9 + j) * R); };
      const T half(0.5);
      // G g: 4 rows of 3; then (G g) G^T: 4 rows of 4.
      for (int row = 0; row < 4; ++row) {
        Lanes a, b, c;
        if (row == 0) {
          a = g(0), b = g(1), c = g(2);
        } else if (row == 3) {
          a = g(6), b = g(7), c = g(8);
        } else {
          const T sign = row == 1 ? T(1) : T(-1);
          a = half * (g(0) + sign * g(3) + g(6));
          b = half * (g(1) + sign * g(4) + g(7));
          c = half * (g(2) + sign * g(5) + g(8));
        }
        T* dst = packed + i * R;
        Eigen::Map<Lanes>(dst + (row * 4 + 0) * stride) = a;
        Eigen::Map<Lanes>(dst + (row * 4 + 1) * stride) = half * (a + b + c);
        Eigen::Map<Lanes>(dst + (row * 4 + 2) * stride) = half * (a - b + c);
        Eigen::Map<Lanes>(dst + (row * 4 + 3) * stride) = c;
      }
    }
  });
}

#if defined(__AVX512F__) || defined(__AVX2__)
/// row + a0 for a masked load or store whose lanes outside the row are masked off: computed as an
/// address, since a pointer before or past the row's array is not one C++ may form.
template <class T>
T* winograd_lanes_at(T* row, index_t a0) {
  return reinterpret_cast<T*>(reinterpret_cast<std::uintptr_t>(row) + static_cast<std::uintptr_t>(a0) * sizeof(T));
}
#endif

#if defined(__AVX512F__)
/// The lanes [max(0, -a0), min(16, W - a0)) of a packet of columns from a0: those within [0, W).
inline __mmask16 winograd_columns_mask(index_t a0, index_t W) {
  const index_t first = std::clamp<index_t>(-a0, 0, 16), last = std::clamp<index_t>(W - a0, 0, 16);
  if (first >= last) return 0;
  return __mmask16(((1u << last) - 1) & ~((1u << first) - 1));
}
#elif defined(__AVX2__)
/// The lanes of a packet of columns from a0 that lie within [0, W), as a maskload's mask.
inline __m256i winograd_columns_mask(index_t a0, index_t W) {
  const __m256i column = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(int(a0)));
  return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), column),
                             _mm256_cmpgt_epi32(_mm256_set1_epi32(int(W)), column));
}
/// The even and odd elements of the 16 in a, b (in order): shuffle_ps works within 128-bit
/// halves, and permute4x64 puts the halves' pairs in order.
inline void winograd_split_even_odd(__m256 a, __m256 b, __m256& even, __m256& odd) {
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}
/// v's first n lanes (n <= 8) to dst.
inline void winograd_store_lanes(float* dst, __m256 v, index_t n) {
  if (n == 8) {
    _mm256_storeu_ps(dst, v);
    return;
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  for (index_t k = 0; k < n; ++k) dst[k] = lanes[k];
}
#endif

/// A run of tiles within one row of tiles: image n, tile row ty, tiles [tx0, tx0 + count) of it,
/// the first of them the l-th of its unit. A unit's pieces are found once (winograd_pieces), and
/// the transforms then run over them for every channel with no division.
struct WinogradPiece {
  index_t n, ty, tx0, count, l;
};
/// The most tiles in a piece: with AVX-512, 15 (their 4x4 patches span 2 * 15 + 2 = 32 columns of
/// the input, two packets; their outputs 30); else 8, a packet of float with AVX2 (the generic
/// path, for double and other targets, takes any length and uses the same).
#if defined(__AVX512F__)
inline constexpr index_t winograd_piece_tiles = 15;
#else
inline constexpr index_t winograd_piece_tiles = 8;
#endif

/// The pieces that the tiles [t0, t1) make, in order, into `pieces` (room for t1 - t0); returns
/// how many.
inline index_t winograd_pieces(const WinogradConv& p, index_t t0, index_t t1, WinogradPiece* pieces) {
  const index_t tw = p.tw(), per_image = p.th() * tw;
  index_t count = 0;
  for (index_t t = t0; t < t1;) {
    const index_t n = t / per_image, ty = t % per_image / tw, tx0 = t % tw;
    const index_t tx1 = std::min({tw, tx0 + (t1 - t), tx0 + winograd_piece_tiles});
    pieces[count++] = {n, ty, tx0, tx1 - tx0, t - t0};
    t += tx1 - tx0;
  }
  return count;
}

/// V = B^T d B for a unit's tiles (`tiles` of them, in `pieces`) and every input channel, into v:
/// element e's [C][ld] at v + e * es, tile l at column l; ld leaves a packet of room past the
/// unit's last tile. The columns from `tiles` to the end of its packet are zeros.
template <class T>
TESSERA_NOINLINE void winograd_transform_inputs(const T* x, const WinogradConv& p, const WinogradPiece* pieces,
                                                index_t count, index_t tiles, T* v, index_t ld, index_t es) {
  namespace pk = Eigen::internal;
  using P = packet_t<T>;
  constexpr index_t S = packet_size_v<T>, U = winograd_unit_tiles<T>();
  const index_t C = p.C, plane = p.H * p.W;
  // The tail of the last packet: zeros in place of stale scratch (AVX-512's stores are masked to
  // the piece) or of the junk that a piece's whole-packet stores write past its last tile (AVX2,
  // generic: the next piece overwrites it, and this replaces the last piece's).
  auto zero_tail = [&] {
    const index_t padded = (tiles + S - 1) / S * S;
    if (padded == tiles) return;
    for (int e = 0; e < 16; ++e)
      for (index_t c = 0; c < C; ++c) std::fill(v + e * es + c * ld + tiles, v + e * es + c * ld + padded, T(0));
  };
  // z = d B, across the four columns d0..d3 of a patch row, and V = B^T z, down its four rows.
  auto across = [](const P& d0, const P& d1, const P& d2, const P& d3, P* z) {
    z[0] = pk::psub(d0, d2);
    z[1] = pk::padd(d1, d2);
    z[2] = pk::psub(d2, d1);
    z[3] = pk::psub(d1, d3);
  };
  auto store_down = [](P(*z)[4], T* at, index_t es) {
    for (int b = 0; b < 4; ++b) {
      pk::pstoreu(at + (0 * 4 + b) * es, pk::psub(z[0][b], z[2][b]));
      pk::pstoreu(at + (1 * 4 + b) * es, pk::padd(z[1][b], z[2][b]));
      pk::pstoreu(at + (2 * 4 + b) * es, pk::psub(z[2][b], z[1][b]));
      pk::pstoreu(at + (3 * 4 + b) * es, pk::psub(z[1][b], z[3][b]));
    }
  };
#if defined(__AVX512F__) || defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    // A piece's tile k reads columns a0 + 2k + j (j < 4) of four rows; per row, its columns from a0
    // (the padding's lanes masked off, read as zeros) give d_j, the patch's column j across the
    // piece's tiles. (Channel by channel, each piece in turn: the stores then run along v's rows.)
#if defined(__AVX512F__)
    // Two packets of columns; four permutes pick d0..d3.
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i column[4] = {even, _mm512_add_epi32(even, _mm512_set1_epi32(1)),
                               _mm512_add_epi32(even, _mm512_set1_epi32(2)),
                               _mm512_add_epi32(even, _mm512_set1_epi32(3))};
    for (index_t c = 0; c < C; ++c) {
      for (index_t i = 0; i < count; ++i) {
        const WinogradPiece& piece = pieces[i];
        const T* in = x + (piece.n * C + c) * plane;
        const index_t a0 = 2 * piece.tx0 - p.pad_w;
        const __mmask16 lo_lanes = winograd_columns_mask(a0, p.W), hi_lanes = winograd_columns_mask(a0 + 16, p.W);
        __m512 z[4][4];
        TESSERA_UNROLL
        for (int a = 0; a < 4; ++a) {
          const index_t h = 2 * piece.ty + a - p.pad_h;
          __m512 lo = _mm512_setzero_ps(), hi = lo;
          if (h >= 0 && h < p.H) {
            lo = _mm512_maskz_loadu_ps(lo_lanes, winograd_lanes_at(in + h * p.W, a0));
            hi = _mm512_maskz_loadu_ps(hi_lanes, winograd_lanes_at(in + h * p.W, a0 + 16));
          }
          across(_mm512_permutex2var_ps(lo, column[0], hi), _mm512_permutex2var_ps(lo, column[1], hi),
                 _mm512_permutex2var_ps(lo, column[2], hi), _mm512_permutex2var_ps(lo, column[3], hi), z[a]);
        }
        const __mmask16 lanes = __mmask16((1u << piece.count) - 1);
        T* at = v + c * ld + piece.l;
        TESSERA_UNROLL
        for (int b = 0; b < 4; ++b) {
          _mm512_mask_storeu_ps(at + (0 * 4 + b) * es, lanes, _mm512_sub_ps(z[0][b], z[2][b]));
          _mm512_mask_storeu_ps(at + (1 * 4 + b) * es, lanes, _mm512_add_ps(z[1][b], z[2][b]));
          _mm512_mask_storeu_ps(at + (2 * 4 + b) * es, lanes, _mm512_sub_ps(z[2][b], z[1][b]));
          _mm512_mask_storeu_ps(at + (3 * 4 + b) * es, lanes, _mm512_sub_ps(z[1][b], z[3][b]));
        }
      }
    }
#else
    // Two pairs of packets, of the columns from a0 and from a0 + 2: the even and odd columns of
    // the first are d0 and d1, of the second d2 and d3.
    for (index_t c = 0; c < C; ++c) {
      for (index_t i = 0; i < count; ++i) {
        const WinogradPiece& piece = pieces[i];
        const T* in = x + (piece.n * C + c) * plane;
        const index_t a0 = 2 * piece.tx0 - p.pad_w;
        const __m256i masks[4] = {winograd_columns_mask(a0, p.W), winograd_columns_mask(a0 + 8, p.W),
                                  winograd_columns_mask(a0 + 2, p.W), winograd_columns_mask(a0 + 10, p.W)};
        P z[4][4];
        TESSERA_UNROLL
        for (int a = 0; a < 4; ++a) {
          const index_t h = 2 * piece.ty + a - p.pad_h;
          P d[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
          if (h >= 0 && h < p.H) {
            const T* row = in + h * p.W;
            winograd_split_even_odd(_mm256_maskload_ps(winograd_lanes_at(row, a0), masks[0]),
                                    _mm256_maskload_ps(winograd_lanes_at(row, a0 + 8), masks[1]), d[0], d[1]);
            winograd_split_even_odd(_mm256_maskload_ps(winograd_lanes_at(row, a0 + 2), masks[2]),
                                    _mm256_maskload_ps(winograd_lanes_at(row, a0 + 10), masks[3]), d[2], d[3]);
          }
          across(d[0], d[1], d[2], d[3], z[a]);
        }
        store_down(z, v + c * ld + piece.l, es);  // whole packets: the next piece overwrites the rest
      }
    }
#endif
    return zero_tail();
  }
#endif
  // The patches' rows a and columns b, the tiles side by side: d[a][b][l]. Gathered a piece at a
  // time, then transformed in whole packets across pieces: a 14-wide image's 7 tiles per row
  // would otherwise fill half a packet.
  alignas(64) T d[4][4][U + S] = {};
  for (index_t c = 0; c < C; ++c) {
    for (index_t i = 0; i < count; ++i) {
      const WinogradPiece& piece = pieces[i];
      const T* in = x + (piece.n * C + c) * plane;
      for (int a = 0; a < 4; ++a) {
        const index_t h = 2 * piece.ty + a - p.pad_h;
        for (index_t k = 0; k < piece.count; ++k) {
          for (int b = 0; b < 4; ++b) {
            const index_t w = 2 * (piece.tx0 + k) + b - p.pad_w;
            d[a][b][piece.l + k] = h >= 0 && h < p.H && w >= 0 && w < p.W ? in[h * p.W + w] : T(0);
          }
        }
      }
    }
    for (index_t k = 0; k < tiles; k += S) {
      P z[4][4];
      for (int a = 0; a < 4; ++a) {
        across(pk::ploadu<P>(d[a][0] + k), pk::ploadu<P>(d[a][1] + k), pk::ploadu<P>(d[a][2] + k),
               pk::ploadu<P>(d[a][3] + k), z[a]);
      }
      store_down(z, v + c * ld + k, es);
    }
  }
  zero_tail();
}

/// Whether a pooling epilogue is one the Winograd path applies as it writes: a 2x2 max pooling at
/// stride 2 with no padding, whose windows are exactly the 2x2 tiles (the tiles past the last
/// whole window, of an odd output extent, are dropped).
template <class T>
bool winograd_pools(const PooledOutput<T>& pooled) {
  const PoolEpilogue& e = pooled.epilogue;
  return e.max && is_plain_2x2_pool(e.kh, e.kw, e.geometry) && pooled.Hq == pooled.Ho / 2 && pooled.Wq == pooled.Wo / 2;
}

/// y = A^T M A (+ bias, then relu) for a unit's tiles (`tiles` of them, in `pieces`): m holds
/// element e's [O][ld] at m + e * es, tile l at column l. With `pooled` (winograd_pools), each
/// tile's maximum goes to the pooled output instead, chosen as pool_planes chooses it
/// (first_max_2x2: the same comparisons in the same order), so the result equals pooling y.
template <class T>
TESSERA_NOINLINE void winograd_transform_outputs(const T* m, index_t ld, index_t es, const WinogradConv& p,
                                                 const WinogradPiece* pieces, index_t count, index_t tiles, T* y,
                                                 const T* bias, bool relu, const PooledOutput<T>* pooled) {
  namespace pk = Eigen::internal;
  using P = packet_t<T>;
  constexpr index_t S = packet_size_v<T>, U = winograd_unit_tiles<T>();
  // y00, y01, y10, y11 of each tile, in whole packets across pieces, then written a piece at a
  // time (an output row's even and odd columns).
  alignas(64) T out[4][U + S] = {};
  const index_t plane = p.Ho * p.Wo;
  for (index_t o = 0; o < p.O; ++o) {
    const T* src = m + o * ld;
    const P b = pk::pset1<P>(bias ? bias[o] : T(0));
    for (index_t k = 0; k < tiles; k += S) {
      // Down the rows (A^T M): s0 = M0 + M1 + M2, s1 = M1 - M2 - M3, per column c.
      P s[2][4];
      for (int c = 0; c < 4; ++c) {
        const P m0 = pk::ploadu<P>(src + (0 * 4 + c) * es + k), m1 = pk::ploadu<P>(src + (1 * 4 + c) * es + k);
        const P m2 = pk::ploadu<P>(src + (2 * 4 + c) * es + k), m3 = pk::ploadu<P>(src + (3 * 4 + c) * es + k);
        s[0][c] = pk::padd(pk::padd(m0, m1), m2);
        s[1][c] = pk::psub(pk::psub(m1, m2), m3);
      }
      // Across (s A), then the bias and relu: y[2 * row + column].
      P t[4];
      for (int i = 0; i < 2; ++i) {
        t[2 * i] = pk::padd(pk::padd(pk::padd(s[i][0], s[i][1]), s[i][2]), b);
        t[2 * i + 1] = pk::padd(pk::psub(pk::psub(s[i][1], s[i][2]), s[i][3]), b);
        if (relu) t[2 * i] = relu_packet(t[2 * i]), t[2 * i + 1] = relu_packet(t[2 * i + 1]);
      }
      if (pooled) {
        // A later element wins when greater, or when NaN and the best so far is not.
        auto wins = [](const P& later, const P& best) {
          return pk::por(pk::pcmp_lt(best, later), pk::pandnot(pk::pcmp_eq(best, best), pk::pcmp_eq(later, later)));
        };
        P best = t[0];
        for (int j = 1; j < 4; ++j) best = pk::pselect(wins(t[j], best), t[j], best);
        pk::pstoreu(out[0] + k, best);
      } else {
        for (int j = 0; j < 4; ++j) pk::pstoreu(out[j] + k, t[j]);
      }
    }
    if (pooled) {
      // Window (ty, tx) of the pooled plane is tile (ty, tx).
      const index_t Hq = pooled->Hq, Wq = pooled->Wq;
      for (index_t i = 0; i < count; ++i) {
        const WinogradPiece& piece = pieces[i];
        const index_t windows = std::min(piece.count, Wq - piece.tx0);
        if (piece.ty < Hq && windows > 0) {
          copy_run(out[0] + piece.l, pooled->y + ((piece.n * p.O + o) * Hq + piece.ty) * Wq + piece.tx0, windows);
        }
      }
      continue;
    }
    for (index_t i = 0; i < count; ++i) {
      const WinogradPiece& piece = pieces[i];
      T* dst = y + (piece.n * p.O + o) * plane + 2 * piece.ty * p.Wo;
      const index_t a0 = 2 * piece.tx0, columns = std::min(p.Wo - a0, 2 * piece.count);
      const int rows = 2 * piece.ty + 1 < p.Ho ? 2 : 1;
      // Tile k's outputs go to columns a0 + 2k and a0 + 2k + 1 of its two rows: a row's even and
      // odd columns interleaved, stored with the lanes past the row's end left out.
#if defined(__AVX512F__)
      if constexpr (std::is_same_v<T, float>) {
        const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        const __mmask16 lo_lanes = __mmask16((1u << std::min<index_t>(16, columns)) - 1);
        const __mmask16 hi_lanes = __mmask16((1u << std::max<index_t>(0, columns - 16)) - 1);
        for (int r = 0; r < rows; ++r) {
          const __m512 e = _mm512_loadu_ps(out[2 * r] + piece.l), od = _mm512_loadu_ps(out[2 * r + 1] + piece.l);
          _mm512_mask_storeu_ps(dst + r * p.Wo + a0, lo_lanes, _mm512_permutex2var_ps(e, lo, od));
          if (hi_lanes) _mm512_mask_storeu_ps(dst + r * p.Wo + a0 + 16, hi_lanes, _mm512_permutex2var_ps(e, hi, od));
        }
        continue;
      }
#elif defined(__AVX2__)
      if constexpr (std::is_same_v<T, float>) {
        for (int r = 0; r < rows; ++r) {
          const __m256 e = _mm256_loadu_ps(out[2 * r] + piece.l), od = _mm256_loadu_ps(out[2 * r + 1] + piece.l);
          const __m256 lo = _mm256_unpacklo_ps(e, od), hi = _mm256_unpackhi_ps(e, od);  // within 128-bit halves
          winograd_store_lanes(dst + r * p.Wo + a0, _mm256_permute2f128_ps(lo, hi, 0x20),
                               std::min<index_t>(8, columns));
          if (columns > 8)
            winograd_store_lanes(dst + r * p.Wo + a0 + 8, _mm256_permute2f128_ps(lo, hi, 0x31), columns - 8);
        }
        continue;
      }
#endif
      for (int r = 0; r < rows; ++r) {
        for (index_t k = 0; k < columns; ++k) dst[r * p.Wo + a0 + k] = out[2 * r + k % 2][piece.l + k / 2];
      }
    }
  }
}

/// y = the convolution of x with the filter that weight(o, k) gives (w[o][k], k = c * 9 + tap), +
/// bias[o] when `bias` is not null, then relu when `relu`: x [N, C, H, W], y [N, O, Ho, Wo]; or,
/// with `pooled` (winograd_pools), that pooled into pooled->y (y is not used).
template <class T, class Weight>
void winograd_conv(const T* x, Weight weight, T* y, const WinogradConv& p, const T* bias, bool relu,
                   const PooledOutput<T>* pooled = nullptr) {
  constexpr index_t R = direct_rows, S = packet_size_v<T>, span = direct_packets * S, U = winograd_unit_tiles<T>();
  const index_t C = p.C, blocks = p.blocks(), rows = blocks * R, tiles = p.tiles();
  // The 16 elements' matrices are a cache line more than their size apart: at a multiple of 4 KiB
  // (64 channels of 64 columns) the transforms' 16 streams fell into one set of L1 and evicted
  // each other.
  constexpr index_t line = index_t(64 / sizeof(T));
  static_assert(U % S == 0, "the transforms work in whole packets of a unit's tiles");
  const index_t ld_v = U + S;  // room for a piece's junk past the unit's last tile
  const index_t es_u = blocks * C * R + line, es_v = C * ld_v + line, es_m = rows * U + line;
  auto packed = conv_scratch<T>(16 * es_u);
  winograd_pack_filters(weight, p, packed.data(), es_u);
  std::vector<index_t> offsets(static_cast<std::size_t>(C));
  for (index_t c = 0; c < C; ++c) offsets[std::size_t(c)] = c * ld_v;
  alignas(64) const T zeros[R] = {};

  // Each task takes a contiguous run of tiles and works through it a unit at a time: balanced to
  // the tile, whatever the batch. Runs are four per thread (claimed one at a time) when there are
  // enough units, so a thread slowed by another process does not hold the call up; else one per
  // thread, of at least a packet of tiles.
  const index_t threads = CpuPool::instance().threads();
  const index_t units = (tiles + U - 1) / U;
  const index_t runs = units >= 8 * threads ? 4 * threads : std::clamp<index_t>(tiles / S, 1, threads);
  parallel_tasks(runs, [&](index_t run) {
    const index_t r0 = tiles * run / runs, r1 = tiles * (run + 1) / runs;
    auto v = conv_scratch<T>(16 * es_v), m = conv_scratch<T>(16 * es_m);
    for (index_t t0 = r0; t0 < r1; t0 += U) {
      const index_t t1 = std::min(r1, t0 + U), n = t1 - t0;
      WinogradPiece pieces[U];
      const index_t count = winograd_pieces(p, t0, t1, pieces);
      winograd_transform_inputs(x, p, pieces, count, n, v.data(), ld_v, es_v);
      for (int e = 0; e < 16; ++e) {
        const T* ve = v.data() + e * es_v;
        for (index_t b = 0; b < blocks; ++b) {
          const T* we = packed.data() + e * es_u + b * C * R;
          T* me = m.data() + e * es_m + b * R * U;
          for (index_t q0 = 0; q0 < n; q0 += span) {
            with_count<direct_packets>((std::min(span, n - q0) + S - 1) / S, [&](auto packets) {
              direct_tile<T, R, decltype(packets)::value>(ve + q0, offsets.data(), C, we, me + q0, U, zeros, false);
            });
          }
        }
      }
      winograd_transform_outputs(m.data(), U, es_m, p, pieces, count, n, y, bias, relu, pooled);
    }
  });
}

/// The forward pass (winograd_conv_forward): y = conv2d(x, w) (+ bias, relu), or that pooled
/// (winograd_pools).
template <class T>
void conv2d_forward_winograd(const T* x, const T* w, T* y, const ConvDims& d, const Conv2dGeometry& g, const T* bias,
                             bool relu, const PooledOutput<T>* pooled = nullptr) {
  const WinogradConv p{d.N, d.C, d.O, d.H, d.W, d.Ho, d.Wo, g.pad_h, g.pad_w};
  winograd_conv(
      x, [&](index_t o, index_t k) { return w[o * d.K + k]; }, y, p, bias, relu, pooled);
}

/// The data gradient, when the forward pass qualifies (winograd_conv_forward): dx = the
/// convolution of dy, padded by 2 - pad, with the filter flipped in both axes and its channels
/// swapped (O input and C output channels).
inline bool winograd_conv_backward_data(const ConvDims& d, const Conv2dGeometry& g) {
  return winograd_conv_forward(d, g);
}
template <class T>
void conv2d_backward_data_winograd(const T* w, const T* dy, T* dx, const ConvDims& d, const Conv2dGeometry& g) {
  const WinogradConv p{d.N, d.O, d.C, d.Ho, d.Wo, d.H, d.W, 2 - g.pad_h, 2 - g.pad_w};
  // Output c of the flipped convolution, input o, tap t reads w[o][c][8 - t].
  winograd_conv(
      dy, [&](index_t c, index_t k) { return w[(k / 9 * d.C + c) * 9 + 8 - k % 9]; }, dx, p,
      static_cast<const T*>(nullptr), false);
}

/// The filter gradient, when the forward pass qualifies (winograd_conv_forward) and there are at
/// least 4 images (the products below reduce over tiles: a batch of one has too few).
inline bool winograd_conv_backward_filter(const ConvDims& d, const Conv2dGeometry& g) {
  return winograd_conv_forward(d, g) && d.N >= 4;
}

/// Yg = A dy A^T for a unit's tiles (`tiles` of them, in `pieces`) and every output channel, into
/// yg: element e's [O][ld] at yg + e * es, tile l at column l (columns past `tiles`, up to a
/// packet, get junk). dy's tile is its 2x2 outputs, zeros past the output's edge.
template <class T>
TESSERA_NOINLINE void winograd_transform_output_gradients(const T* dy, const WinogradConv& p,
                                                          const WinogradPiece* pieces, index_t count, index_t tiles,
                                                          T* yg, index_t ld, index_t es) {
  namespace pk = Eigen::internal;
  using P = packet_t<T>;
  constexpr index_t S = packet_size_v<T>, U = winograd_unit_tiles<T>();
  alignas(64) T g[2][2][U + S] = {};  // g[a][b][l]: tile l's gradient at row a, column b
  const index_t plane = p.Ho * p.Wo;
  for (index_t o = 0; o < p.O; ++o) {
    for (index_t i = 0; i < count; ++i) {
      const WinogradPiece& piece = pieces[i];
      const T* src = dy + (piece.n * p.O + o) * plane;
#if defined(__AVX512F__) || defined(__AVX2__)
      if constexpr (std::is_same_v<T, float>) {
        // The piece's columns of each row (masked past the row's end), split into even and odd
        // columns; whole packets stored, the next piece overwriting the lanes past this one.
        const index_t a0 = 2 * piece.tx0;
        for (int a = 0; a < 2; ++a) {
          const index_t h = 2 * piece.ty + a;
          P even = pk::pzero(P{}), odd = even;
          if (h < p.Ho) {
            const T* row = src + h * p.Wo;
#if defined(__AVX512F__)
            const __m512 lo = _mm512_maskz_loadu_ps(winograd_columns_mask(a0, p.Wo), row + a0);
            const __m512 hi =
                _mm512_maskz_loadu_ps(winograd_columns_mask(a0 + 16, p.Wo), winograd_lanes_at(row, a0 + 16));
            even = _mm512_permutex2var_ps(
                lo, _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0), hi);
            odd = _mm512_permutex2var_ps(
                lo, _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1), hi);
#else
            winograd_split_even_odd(
                _mm256_maskload_ps(row + a0, winograd_columns_mask(a0, p.Wo)),
                _mm256_maskload_ps(winograd_lanes_at(row, a0 + 8), winograd_columns_mask(a0 + 8, p.Wo)), even, odd);
#endif
          }
          pk::pstoreu(g[a][0] + piece.l, even);
          pk::pstoreu(g[a][1] + piece.l, odd);
        }
        continue;
      }
#endif
      for (int a = 0; a < 2; ++a) {
        const index_t h = 2 * piece.ty + a;
        for (index_t k = 0; k < piece.count; ++k) {
          const index_t w = 2 * (piece.tx0 + k);
          g[a][0][piece.l + k] = h < p.Ho ? src[h * p.Wo + w] : T(0);
          g[a][1][piece.l + k] = h < p.Ho && w + 1 < p.Wo ? src[h * p.Wo + w + 1] : T(0);
        }
      }
    }
    T* dst = yg + o * ld;
    for (index_t k = 0; k < tiles; k += S) {
      // Across (g A^T): z[a] = (g0, g0 + g1, g0 - g1, -g1) of row a; then down (A z) alike.
      P z[2][4];
      for (int a = 0; a < 2; ++a) {
        const P g0 = pk::ploadu<P>(g[a][0] + k), g1 = pk::ploadu<P>(g[a][1] + k);
        z[a][0] = g0;
        z[a][1] = pk::padd(g0, g1);
        z[a][2] = pk::psub(g0, g1);
        z[a][3] = pk::pnegate(g1);
      }
      for (int j = 0; j < 4; ++j) {
        pk::pstoreu(dst + (0 * 4 + j) * es + k, z[0][j]);
        pk::pstoreu(dst + (1 * 4 + j) * es + k, pk::padd(z[0][j], z[1][j]));
        pk::pstoreu(dst + (2 * 4 + j) * es + k, pk::psub(z[0][j], z[1][j]));
        pk::pstoreu(dst + (3 * 4 + j) * es + k, pk::pnegate(z[1][j]));
      }
    }
  }
}

/// The filter gradient (winograd_conv_backward_filter): for every (o, c),
///   dw[o][c] = G^T (the sum over tiles t of Yg_t * V_t, element by element) G,
/// with V_t = B^T d_t B the forward's input transform of tile t's patch of input channel c and
/// Yg_t = A dy_t A^T of its output gradient (the forward's output transform, transposed). The 16
/// sums over tiles are 16 products [O, tiles] x [tiles, C], a unit of tiles at a time on BLAS (or
/// Eigen's product where there is no BLAS). The
/// tiles are cut into a number of runs that depends on the shape alone, each summing its own
/// partial gradient; the partials are added in a fixed order, so the result does not depend on the
/// thread count.
template <class T>
void conv2d_backward_filter_winograd(const T* x, const T* dy, T* dw, const ConvDims& d, const Conv2dGeometry& g) {
  constexpr index_t S = packet_size_v<T>, U = winograd_unit_tiles<T>(), line = index_t(64 / sizeof(T));
  const WinogradConv p{d.N, d.C, d.O, d.H, d.W, d.Ho, d.Wo, g.pad_h, g.pad_w};
  const index_t C = p.C, O = p.O, tiles = p.tiles(), units = (tiles + U - 1) / U, size = O * C * 9;
  // Up to 16 runs (and at most one per unit), fewer when their partial gradients would pass 4M
  // elements. (More than 16 threads would leave some idle here.)
  const index_t runs = std::clamp<index_t>((index_t(1) << 22) / size, 1, std::min<index_t>(units, 16));
  const index_t ld = U + S, es_v = C * ld + line, es_y = O * ld + line;
  auto partials = conv_scratch<T>(runs * size);
  parallel_tasks(runs, [&](index_t run) {
    auto v = conv_scratch<T>(16 * es_v), yg = conv_scratch<T>(16 * es_y), m = conv_scratch<T>(16 * O * C);
    const index_t u0 = units * run / runs, u1 = units * (run + 1) / runs;
    for (index_t u = u0; u < u1; ++u) {
      const index_t t0 = u * U, t1 = std::min(tiles, t0 + U), n = t1 - t0;
      WinogradPiece pieces[U];
      const index_t count = winograd_pieces(p, t0, t1, pieces);
      winograd_transform_inputs(x, p, pieces, count, n, v.data(), ld, es_v);
      winograd_transform_output_gradients(dy, p, pieces, count, n, yg.data(), ld, es_y);
      for (int e = 0; e < 16; ++e) {
        // m_e [O, C] (+)= Yg_e [O, n] . V_e [C, n]^T
        gemm_on_this_thread(false, true, O, C, n, T(1), yg.data() + e * es_y, ld, v.data() + e * es_v, ld,
                            u > u0 ? T(1) : T(0), m.data() + e * O * C, C);
      }
    }
    // G^T M G for every (o, c): the 4x4 sums to the 3x3 filter's gradient.
    T* part = partials.data() + run * size;
    const T half(0.5);
    for (index_t oc = 0; oc < O * C; ++oc) {
      T z[4][3];
      for (int i = 0; i < 4; ++i) {
        const T m0 = m.data()[(i * 4 + 0) * O * C + oc], m1 = m.data()[(i * 4 + 1) * O * C + oc];
        const T m2 = m.data()[(i * 4 + 2) * O * C + oc], m3 = m.data()[(i * 4 + 3) * O * C + oc];
        z[i][0] = m0 + half * (m1 + m2);
        z[i][1] = half * (m1 - m2);
        z[i][2] = half * (m1 + m2) + m3;
      }
      for (int j = 0; j < 3; ++j) {
        part[oc * 9 + 0 * 3 + j] = z[0][j] + half * (z[1][j] + z[2][j]);
        part[oc * 9 + 1 * 3 + j] = half * (z[1][j] - z[2][j]);
        part[oc * 9 + 2 * 3 + j] = half * (z[1][j] + z[2][j]) + z[3][j];
      }
    }
  });
  add_partials(partials.data(), runs, size, dw);
}

}  // namespace tessera::detail
