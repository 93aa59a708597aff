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
#include "tessera/backend/op_args.hpp"

namespace tessera::detail {

/// 3x3 at stride 1 with no dilation or groups and a padding of at most 2 (wider, whole tiles read
/// only zeros); at least 32 channels on each side (the transforms' cost per tile grows with C + O,
/// the products' with C * O: 16 -> 32 channels ran at the direct path's speed forward and slower
/// for the data gradient), at most 128 on each side (the data gradient's input channels are the
/// forward's output channels, and a unit's transformed inputs must stay in L2), and at least 2^24
/// multiply-adds (below, the filter transform and the units' fixed costs took what the products
/// saved).
inline bool winograd_conv_forward(const ConvDims& d, const Conv2dGeometry& g) {
  const double macs = double(d.N) * double(d.O) * double(d.P) * double(d.K);
  return d.kh == 3 && d.kw == 3 && g.stride_h == 1 && g.stride_w == 1 && g.dilation_h == 1 && g.dilation_w == 1 &&
         g.groups == 1 && g.pad_h <= 2 && g.pad_w <= 2 && std::min(d.C, d.O) >= 32 && std::max(d.C, d.O) <= 128 &&
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

#if defined(__AVX512F__)
/// row + a0 for a masked load or store whose lanes outside the row are masked off: computed as an
/// address, since a pointer before or past the row's array is not one C++ may form.
template <class T>
T* winograd_lanes_at(T* row, index_t a0) {
  return reinterpret_cast<T*>(reinterpret_cast<std::uintptr_t>(row) + static_cast<std::uintptr_t>(a0) * sizeof(T));
}

/// The lanes [max(0, -a0), min(16, W - a0)) of a packet of columns from a0: those within [0, W).
inline __mmask16 winograd_columns_mask(index_t a0, index_t W) {
  const index_t first = std::clamp<index_t>(-a0, 0, 16), last = std::clamp<index_t>(W - a0, 0, 16);
  if (first >= last) return 0;
  return __mmask16(((1u << last) - 1) & ~((1u << first) - 1));
}
#endif

/// even[k] = row[2k + w0], odd[k] = row[2k + 1 + w0] for k in [0, n), zero outside [0, W): the
/// input's columns as the tiles of a row read them (tile k's patch starts at column 2k + w0).
template <class T>
void winograd_split_columns(const T* row, index_t W, index_t w0, index_t n, T* even, T* odd) {
  index_t k = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    // 32 columns at a time, loaded where they are within the row (the padding's lanes are masked
    // off, and read as zeros), then split.
    const __m512i even_lanes = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd_lanes = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (; k < n; k += 16) {
      const index_t a0 = 2 * k + w0;
      const __m512 lo = _mm512_maskz_loadu_ps(winograd_columns_mask(a0, W), winograd_lanes_at(row, a0));
      const __m512 hi = _mm512_maskz_loadu_ps(winograd_columns_mask(a0 + 16, W), winograd_lanes_at(row, a0 + 16));
      _mm512_storeu_ps(even + k, _mm512_permutex2var_ps(lo, even_lanes, hi));
      _mm512_storeu_ps(odd + k, _mm512_permutex2var_ps(lo, odd_lanes, hi));
    }
    return;
  }
#endif
  for (; k < n; ++k) {
    const index_t a = 2 * k + w0;
    even[k] = a >= 0 && a < W ? row[a] : T(0);
    odd[k] = a + 1 >= 0 && a + 1 < W ? row[a + 1] : T(0);
  }
}

/// row[2k + w0] = even[k], row[2k + 1 + w0] = odd[k] for k in [0, n), where within [0, W)
/// (w0 >= 0).
template <class T>
void winograd_merge_columns(const T* even, const T* odd, index_t n, index_t W, index_t w0, T* row) {
  index_t k = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    const __m512i lo_lanes = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi_lanes = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    const index_t end = std::min(W, 2 * n + w0);  // the columns written
    for (; k < n; k += 16) {
      const index_t a0 = 2 * k + w0;
      const __m512 e = _mm512_loadu_ps(even + k), o = _mm512_loadu_ps(odd + k);
      _mm512_mask_storeu_ps(winograd_lanes_at(row, a0), winograd_columns_mask(a0, end),
                            _mm512_permutex2var_ps(e, lo_lanes, o));
      _mm512_mask_storeu_ps(winograd_lanes_at(row, a0 + 16), winograd_columns_mask(a0 + 16, end),
                            _mm512_permutex2var_ps(e, hi_lanes, o));
    }
    return;
  }
#endif
  for (; k < n; ++k) {
    const index_t a = 2 * k + w0;
    if (a < W) row[a] = even[k];
    if (a + 1 < W) row[a + 1] = odd[k];
  }
}

/// Calls f(n, ty, tx0, tx1, l) for each row of tiles that [t0, t1) covers: image n, tile row ty,
/// tiles [tx0, tx1) of it, the first of them the l-th of the range.
template <class F>
void for_each_tile_row(const WinogradConv& p, index_t t0, index_t t1, F&& f) {
  const index_t tw = p.tw(), per_image = p.th() * tw;
  for (index_t t = t0; t < t1;) {
    const index_t n = t / per_image, ty = t % per_image / tw, tx0 = t % tw;
    const index_t tx1 = std::min(tw, tx0 + (t1 - t));
    f(n, ty, tx0, tx1, t - t0);
    t += tx1 - tx0;
  }
}

/// V = B^T d B for the tiles [t0, t1) (at most a unit) and every input channel, into v: element
/// e's [C][ld] at v + e * es, tile t at column t - t0. Columns past t1 - t0 (up to a packet) get
/// junk.
template <class T>
void winograd_transform_inputs(const T* x, const WinogradConv& p, index_t t0, index_t t1, T* v, index_t ld,
                               index_t es) {
  namespace pk = Eigen::internal;
  using P = packet_t<T>;
  constexpr index_t S = packet_size_v<T>, U = winograd_unit_tiles<T>();
  // The patches' rows a and columns b, the tiles side by side: d[a][b][t - t0]. Gathered a row of
  // tiles at a time (winograd_split_columns writes up to 16 past a row's last tile, which the next
  // row overwrites), then transformed in whole packets across rows: a 14-wide image's 7 tiles per
  // row would otherwise fill half a packet.
  constexpr index_t width = U + 16;
  alignas(64) T d[4][4][width] = {};
  const index_t C = p.C, plane = p.H * p.W, tiles = t1 - t0;
  for (index_t c = 0; c < C; ++c) {
    for_each_tile_row(p, t0, t1, [&](index_t n, index_t ty, index_t tx0, index_t tx1, index_t l) {
      const index_t count = tx1 - tx0, w0 = 2 * tx0 - p.pad_w;
      const T* in = x + (n * C + c) * plane;
      for (int a = 0; a < 4; ++a) {
        const index_t h = 2 * ty + a - p.pad_h;
        if (h < 0 || h >= p.H) {
          for (int b = 0; b < 4; ++b) std::fill_n(d[a][b] + l, count, T(0));
        } else {
          winograd_split_columns(in + h * p.W, p.W, w0, count, d[a][0] + l, d[a][1] + l);
          winograd_split_columns(in + h * p.W, p.W, w0 + 2, count, d[a][2] + l, d[a][3] + l);
        }
      }
    });
    T* dst = v + c * ld;
    for (index_t k = 0; k < tiles; k += S) {
      // Across a row (d B): z[a][b] for the four columns b of each row a of the patch.
      P z[4][4];
      for (int a = 0; a < 4; ++a) {
        const P d0 = pk::ploadu<P>(d[a][0] + k), d1 = pk::ploadu<P>(d[a][1] + k);
        const P d2 = pk::ploadu<P>(d[a][2] + k), d3 = pk::ploadu<P>(d[a][3] + k);
        z[a][0] = pk::psub(d0, d2);
        z[a][1] = pk::padd(d1, d2);
        z[a][2] = pk::psub(d2, d1);
        z[a][3] = pk::psub(d1, d3);
      }
      // Down the rows (B^T z).
      for (int b = 0; b < 4; ++b) {
        pk::pstoreu(dst + (0 * 4 + b) * es + k, pk::psub(z[0][b], z[2][b]));
        pk::pstoreu(dst + (1 * 4 + b) * es + k, pk::padd(z[1][b], z[2][b]));
        pk::pstoreu(dst + (2 * 4 + b) * es + k, pk::psub(z[2][b], z[1][b]));
        pk::pstoreu(dst + (3 * 4 + b) * es + k, pk::psub(z[1][b], z[3][b]));
      }
    }
  }
}

/// y = A^T M A (+ bias, then relu) for the tiles [t0, t1) (at most a unit): m holds element e's
/// [O][ld] at m + e * es, tile t at column t - t0.
template <class T>
void winograd_transform_outputs(const T* m, index_t ld, index_t es, const WinogradConv& p, index_t t0, index_t t1, T* y,
                                const T* bias, bool relu) {
  namespace pk = Eigen::internal;
  using P = packet_t<T>;
  constexpr index_t S = packet_size_v<T>, U = winograd_unit_tiles<T>();
  // y00, y01, y10, y11 of each tile, in whole packets across rows of tiles, then written a row of
  // tiles at a time (winograd_merge_columns reads up to 16 past a row's last tile).
  constexpr index_t width = U + 16;
  alignas(64) T out[4][width] = {};
  const index_t plane = p.Ho * p.Wo, tiles = t1 - t0;
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
      // Across (s A), then the bias and relu.
      for (int i = 0; i < 2; ++i) {
        P y0 = pk::padd(pk::padd(pk::padd(s[i][0], s[i][1]), s[i][2]), b);
        P y1 = pk::padd(pk::psub(pk::psub(s[i][1], s[i][2]), s[i][3]), b);
        if (relu) y0 = relu_packet(y0), y1 = relu_packet(y1);
        pk::pstoreu(out[2 * i] + k, y0);
        pk::pstoreu(out[2 * i + 1] + k, y1);
      }
    }
    for_each_tile_row(p, t0, t1, [&](index_t n, index_t ty, index_t tx0, index_t tx1, index_t l) {
      T* dst = y + (n * p.O + o) * plane + 2 * ty * p.Wo;
      winograd_merge_columns(out[0] + l, out[1] + l, tx1 - tx0, p.Wo, 2 * tx0, dst);
      if (2 * ty + 1 < p.Ho) winograd_merge_columns(out[2] + l, out[3] + l, tx1 - tx0, p.Wo, 2 * tx0, dst + p.Wo);
    });
  }
}

/// y = the convolution of x with the filter that weight(o, k) gives (w[o][k], k = c * 9 + tap), +
/// bias[o] when `bias` is not null, then relu when `relu`: x [N, C, H, W], y [N, O, Ho, Wo].
template <class T, class Weight>
void winograd_conv(const T* x, Weight weight, T* y, const WinogradConv& p, const T* bias, bool relu) {
  constexpr index_t R = direct_rows, S = packet_size_v<T>, span = direct_packets * S, U = winograd_unit_tiles<T>();
  const index_t C = p.C, blocks = p.blocks(), rows = blocks * R, tiles = p.tiles();
  // The 16 elements' matrices are a cache line more than their size apart: at a multiple of 4 KiB
  // (64 channels of 64 columns) the transforms' 16 streams fell into one set of L1 and evicted
  // each other.
  constexpr index_t line = index_t(64 / sizeof(T));
  static_assert(U % S == 0, "the transforms work in whole packets of a unit's tiles");
  const index_t ld_v = U;
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
      winograd_transform_inputs(x, p, t0, t1, v.data(), ld_v, es_v);
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
      winograd_transform_outputs(m.data(), U, es_m, p, t0, t1, y, bias, relu);
    }
  });
}

/// The forward pass (winograd_conv_forward): y = conv2d(x, w) (+ bias, relu).
template <class T>
void conv2d_forward_winograd(const T* x, const T* w, T* y, const ConvDims& d, const Conv2dGeometry& g, const T* bias,
                             bool relu) {
  const WinogradConv p{d.N, d.C, d.O, d.H, d.W, d.Ho, d.Wo, g.pad_h, g.pad_w};
  winograd_conv(
      x, [&](index_t o, index_t k) { return w[o * d.K + k]; }, y, p, bias, relu);
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

}  // namespace tessera::detail
