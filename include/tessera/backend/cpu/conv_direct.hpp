// Direct convolution at stride 1 on the CPU: the forward pass, the data gradient (itself a
// stride-1 convolution, of the output gradient with the flipped filter) and the filter gradient
// (conv2d_backward_filter_direct, at the end), with no column matrix.
// docs/cpu-performance.md explains when it runs and why; in short:
//
// Each image's input planes are first copied into planes with the padding made explicit (zeros),
// Hp x Wp. An output position (oh, ow) is then the flat index q = oh * Wp + ow of a padded plane,
// and tap (i, j) of every output reads the padded plane at q + i * dh * Wp + j * dw: one shifted
// run of memory serves all outputs at once. The kernel holds R output channels x V SIMD packets
// of consecutive flat positions in R * V registers while it runs over every input channel and tap:
// per tap, V loads of the input and R broadcast weights feed R * V multiply-adds. The flat
// positions between two rows (ow >= Wo: Wp - Wo of them per row) are computed too, and dropped
// when the tile is written out with the bias and relu.
//
// Every output is the same sum in the same order whatever the tiling or the thread count.
#pragma once

#include <algorithm>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "tessera/backend/cpu/conv_common.hpp"
#include "tessera/backend/cpu/device.hpp"
#include "tessera/backend/op_args.hpp"
#include "tessera/expr/evaluator.hpp"

namespace tessera::detail {

/// The kernel's register tile: R output channels x V packets of positions. R * V accumulators,
/// V inputs and one broadcast weight fit the register file: 32 vector registers with AVX-512 and
/// on ARM, 16 with AVX2.
inline constexpr int direct_rows = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 8 : 4;
inline constexpr int direct_packets = 3;
/// A unit of work is one tile of positions for a chunk of at most this many blocks of R output
/// channels: their sums stay on the stack, in L1.
inline constexpr index_t direct_max_blocks = 16;
/// Fewer images than two per thread (direct_conv): a padded input of at most direct_small_input
/// elements is small enough for every task to pad it again, and such a convolution is shared out by
/// blocks of output channels from direct_shared_macs multiply-adds (below, the region costs more
/// than it saves); a larger input is split by tiles, and runs on the calling thread below
/// direct_inline_macs. docs/cpu-performance.md, "Small kernels and the thread pool", has the
/// measurements.
inline constexpr index_t direct_small_input = index_t(1) << 14;
inline constexpr double direct_shared_macs = double(1 << 16);
inline constexpr double direct_inline_macs = double(1 << 20);

/// The direct path serves the forward pass of a convolution at stride 1 with at least 48 products
/// per output (K = Cg * kh * kw: a 3x3 over 6 channels): below that, writing the output costs more
/// than the products and the tiled path (conv.hpp) was as fast or faster. Pooled (`pooled`,
/// conv2d_pool_forward), also from 9 products (a 3x3 over one channel, an image model's first
/// layer) up to the few-taps product's 16: the kernel stores its tiles straight into flat planes in
/// cache and they are pooled from there, with no pass to drop the gaps between rows, and its sums
/// equal the few-taps product's (direct_tile), so the pooled and plain forwards still agree bit for
/// bit (between 16 and 48 the plain forward's GEMM adds the bias last). A pointwise convolution
/// (1x1, no padding) stays on the tiled path: its input is its own column matrix, one GEMM per tile.
inline bool direct_conv_forward(const ConvDims& d, const Conv2dGeometry& g, bool pooled = false) {
  const bool pointwise = d.kh == 1 && d.kw == 1 && g.pad_h == 0 && g.pad_w == 0;
  const bool products = d.K >= 48 || (pooled && d.K >= 9 && few_taps_conv(d));
  return g.stride_h == 1 && g.stride_w == 1 && products && !pointwise;
}
/// The data gradient is the forward pass of the flipped convolution (Og input channels, Cg output
/// channels): the same rule for it, at least 4 channels of gradient to write (a block of the
/// kernel's rows less than half full ran slower than the tiled path), and a padding of at most
/// (k - 1) * dilation (the flipped convolution's padding must not be negative).
inline bool direct_conv_backward_data(const ConvDims& d, const Conv2dGeometry& g) {
  const bool pointwise = d.kh == 1 && d.kw == 1 && g.pad_h == 0 && g.pad_w == 0;
  return g.stride_h == 1 && g.stride_w == 1 && d.Og * d.kh * d.kw >= 48 && d.Cg >= 4 && !pointwise &&
         g.pad_h <= (d.kh - 1) * g.dilation_h && g.pad_w <= (d.kw - 1) * g.dilation_w;
}

/// The filter gradient's runs of images (conv2d_backward_filter_direct): up to 16, and fewer when
/// their partial gradients would pass 4M elements.
inline index_t direct_filter_runs(const ConvDims& d) {
  return std::min({d.N, index_t(16), std::max<index_t>(1, (index_t(1) << 22) / std::max<index_t>(1, d.O * d.K))});
}
/// And the filter gradient, when each run of images holds at least 1024 padded positions per
/// channel (every sum in registers ends in a reduction across the packet's lanes: 128 channels of
/// 7x7 images in runs of two ran at half the tiled path's speed) and there are at most 128 input
/// channels per group (at 256 the tiled path's GEMM was faster), at least 4 images, and a padding
/// within the kernel's extent.
inline bool direct_conv_backward_filter(const ConvDims& d, const Conv2dGeometry& g) {
  if (!direct_conv_forward(d, g) || d.N < 4 || d.Cg > 128 || g.pad_h > (d.kh - 1) * g.dilation_h ||
      g.pad_w > (d.kw - 1) * g.dilation_w) {
    return false;
  }
  const index_t plane = (d.H + 2 * g.pad_h) * (d.W + 2 * g.pad_w);
  return d.N / direct_filter_runs(d) * plane >= 1024;
}

/// A stride-1 convolution as the direct kernel sees it: `in` [N, groups * Cin, H, W] to `out`
/// [N, groups * Cout, Ho, Wo], per group Cin input and Cout output channels.
struct DirectConv {
  index_t N, groups, Cin, Cout, H, W, kh, kw, pad_h, pad_w, dil_h, dil_w;

  index_t Hp() const { return H + 2 * pad_h; }
  index_t Wp() const { return W + 2 * pad_w; }
  index_t Ho() const { return Hp() - (kh - 1) * dil_h; }
  index_t Wo() const { return Wp() - (kw - 1) * dil_w; }
  index_t taps() const { return kh * kw; }
  index_t K() const { return Cin * taps(); }
  /// Flat positions per plane that the kernel computes: up to the last output's.
  index_t flat() const { return (Ho() - 1) * Wp() + Wo(); }
};

/// Blocks of R output channels per group; the last is padded with zero weights to R rows, so that
/// the kernel is instantiated for R rows only (a kernel per row count had added about a third to
/// the compile time of every program that trains a convolution).
inline index_t direct_blocks(index_t channels) { return (channels + direct_rows - 1) / direct_rows; }

/// The weights in the order the kernel reads them: per group, per block of R output channels,
/// [K][R]. weight(grp, o, k) gives w[grp][o][k], k = input channel * taps + tap. Only blocks
/// [b0, b1) of each group are written (all of them by default).
template <class T, class Weight>
void pack_direct_weights(const DirectConv& p, Weight weight, T* packed, index_t b0 = 0, index_t b1 = -1) {
  const index_t K = p.K(), blocks = direct_blocks(p.Cout);
  if (b1 < 0) b1 = blocks;
  for (index_t grp = 0; grp < p.groups; ++grp) {
    for (index_t b = b0; b < b1; ++b) {
      T* dst = packed + (grp * blocks + b) * direct_rows * K;
      // Row by row: the forward's weights are then read in order (the pass over k, then r, with
      // a bounds test per element took a sixth of a batch of one's second convolution).
      const index_t rows = std::min<index_t>(direct_rows, p.Cout - b * direct_rows);
      for (index_t r = 0; r < rows; ++r) {
        for (index_t k = 0; k < K; ++k) dst[k * direct_rows + r] = weight(grp, b * direct_rows + r, k);
      }
      for (index_t r = rows; r < direct_rows; ++r) {
        for (index_t k = 0; k < K; ++k) dst[k * direct_rows + r] = T(0);
      }
    }
  }
}

/// pack_direct_weights (blocks [b0, b1) of each group) for weights stored row by row,
/// [groups * Cout][K] (the forward pass's), each row times scale[row] when `scale` is not null: a
/// block of R rows is transposed a square of R x R at a time in registers, where the element by
/// element copy (R stores apart) took about 1.3 us for 32 x 144 weights, 4% of a batch of one's
/// forward through the main job's CNN.
template <class T>
void pack_direct_weight_rows(const DirectConv& p, const T* w, T* packed, index_t b0, index_t b1,
                             const T* scale = nullptr) {
  namespace pk = Eigen::internal;
  constexpr index_t R = direct_rows;
  const index_t K = p.K(), blocks = direct_blocks(p.Cout);
  auto weight = [&](index_t grp, index_t o, index_t k) {
    const index_t row = grp * p.Cout + o;
    return scale ? w[row * K + k] * scale[row] : w[row * K + k];
  };
  using Rows = typename pk::find_best_packet<T, R>::type;
  if constexpr (std::is_same_v<T, float> && pk::unpacket_traits<Rows>::size == R) {
    if (p.Cout % R == 0) {
      for (index_t grp = 0; grp < p.groups; ++grp) {
        for (index_t i = grp * blocks + b0; i < grp * blocks + b1; ++i) {  // rows i * R on
          const T* src = w + i * R * K;
          T* dst = packed + i * R * K;
          index_t k = 0;
          // After the transpose a packet holds one k of the block's R rows: times their R scales.
          const Rows scales = scale ? pk::ploadu<Rows>(scale + i * R) : pk::pset1<Rows>(T(1));
          for (; k + R <= K; k += R) {
            pk::PacketBlock<Rows, R> square;
            for (int r = 0; r < R; ++r) square.packet[r] = pk::ploadu<Rows>(src + r * K + k);
            pk::ptranspose(square);
            for (int j = 0; j < R; ++j) {
              pk::pstoreu(dst + (k + j) * R, scale ? pk::pmul(square.packet[j], scales) : square.packet[j]);
            }
          }
          for (; k < K; ++k)
            for (index_t r = 0; r < R; ++r) dst[k * R + r] = scale ? src[r * K + k] * scale[i * R + r] : src[r * K + k];
        }
      }
      return;
    }
  }
  pack_direct_weights(p, weight, packed, b0, b1);
}

/// dst[0, n) = src[0, n) in packets, then half packets, then elements: inline, where memcpy is a
/// library call per short row.
template <class P, class T>
void copy_run_packets(const P&, const T* src, T* dst, index_t n) {
  namespace pk = Eigen::internal;
  constexpr index_t S = index_t(sizeof(P) / sizeof(T));
  index_t k = 0;
  for (; k + S <= n; k += S) pk::pstoreu(dst + k, pk::ploadu<P>(src + k));
  using Half = typename pk::unpacket_traits<P>::half;
  if constexpr (sizeof(Half) < sizeof(P) && sizeof(Half) > sizeof(T)) {
    copy_run_packets(Half{}, src + k, dst + k, n - k);
  } else {
    for (; k < n; ++k) dst[k] = src[k];
  }
}

/// dst[0, n) = src[0, n): with AVX-512, 16 floats at a time and the rest in one masked step.
template <class T>
void copy_run(const T* src, T* dst, index_t n) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    index_t k = 0;
    for (; k + 16 <= n; k += 16) _mm512_storeu_ps(dst + k, _mm512_loadu_ps(src + k));
    if (k < n) {
      const __mmask16 rest = __mmask16((1u << (n - k)) - 1);
      _mm512_mask_storeu_ps(dst + k, rest, _mm512_maskz_loadu_ps(rest, src + k));
    }
    return;
  }
#endif
  copy_run_packets(packet_t<T>{}, src, dst, n);
}

/// Copies an H x W plane into the middle of an Hp x Wp plane whose borders are already zero: the
/// callers zero a buffer of padded planes once and reuse it for image after image, so that only
/// the interior is written per image. (Zeroing the borders row by row with a copy between, three
/// library calls per row, took a tenth of the forward pass of a batch of 64 small images.)
template <class T>
void copy_into_padded(const T* src, const DirectConv& p, T* dst) {
  const index_t Wp = p.Wp();
  T* row = dst + p.pad_h * Wp + p.pad_w;
  for (index_t h = 0; h < p.H; ++h, row += Wp, src += p.W) copy_run(src, row, p.W);
}

/// tile [R][stride] (+)= the R output channels' sums at V packets of flat positions over k
/// products: product q reads the input at in + offsets[q] (an input channel's padded plane, shifted
/// by a tap) and the weights w[q * R + r]. The sums start from start[r] (the rows' biases, or
/// zeros) when `start` is given, else from the tile's values, and are stored after relu when
/// `relu`. Each sum is the bias, then the products in order: what the tiled path's few-taps product
/// computes, so that a pooled forward taking this path for an image model's first layer
/// (direct_conv_forward) equals the plain forward bit for bit. (One loop over the products, not
/// one over channels around one over taps: GCC kept the accumulators in memory across the outer of
/// two loops.)
template <class T, int R, int V>
void direct_tile(const T* in, const index_t* offsets, index_t k, const T* w, T* tile, index_t stride, const T* start,
                 bool relu) {
  namespace pk = Eigen::internal;
  using P = packet_t<T>;
  constexpr index_t S = packet_size_v<T>;
  P acc[R][V];
  TESSERA_UNROLL
  for (int r = 0; r < R; ++r) {
    TESSERA_UNROLL
    for (int v = 0; v < V; ++v) acc[r][v] = start ? pk::pset1<P>(start[r]) : pk::ploadu<P>(tile + r * stride + v * S);
  }
  for (index_t q = 0; q < k; ++q, w += R) {
    const T* src = in + offsets[q];
    P x[V];
    TESSERA_UNROLL
    for (int v = 0; v < V; ++v) x[v] = pk::ploadu<P>(src + v * S);
    TESSERA_UNROLL
    for (int r = 0; r < R; ++r) {
      const P wr = pk::pset1<P>(w[r]);
      TESSERA_UNROLL
      for (int v = 0; v < V; ++v) acc[r][v] = pk::pmadd(wr, x[v], acc[r][v]);
    }
  }
  TESSERA_UNROLL
  for (int r = 0; r < R; ++r) {
    TESSERA_UNROLL
    for (int v = 0; v < V; ++v) pk::pstoreu(tile + r * stride + v * S, relu ? relu_packet(acc[r][v]) : acc[r][v]);
  }
}

/// Calls f(std::integral_constant<int, n>) for a runtime n in [1, N].
template <int N, class F>
void with_count(index_t n, F&& f) {
  if constexpr (N > 1) {
    if (n < N) return with_count<N - 1>(n, f);
  }
  f(std::integral_constant<int, N>{});
}

/// Writes the flat positions [q0, q1) of a tile's rows (row stride `span`) into the output planes
/// (`out`, row r at out + r * P), dropping the positions between output rows.
template <class T>
void write_direct_tile(const T* tile, index_t span, index_t rows, index_t q0, index_t q1, const DirectConv& p, T* out) {
  const index_t Wp = p.Wp(), Wo = p.Wo(), P = p.Ho() * Wo;
  for (index_t r = 0; r < rows; ++r) {
    for (index_t oh = q0 / Wp; oh * Wp < q1; ++oh) {
      const index_t a = std::max(q0, oh * Wp), e = std::min(q1, oh * Wp + Wo);
      if (a < e) copy_run(tile + r * span + (a - q0), out + r * P + oh * Wo + (a - oh * Wp), e - a);
    }
  }
}

/// One unit of work: flat positions [q0, q1) of `rows` output channels (at most direct_max_blocks
/// blocks of R), from `in` (the first padded input plane at q0) and `w` (their packed blocks),
/// written to `out` (the first output plane). With `flat` (for a pooling epilogue), the output is
/// left instead in flat planes (row stride Wp, gaps included) of `flat_stride` elements, from
/// `flat` (the first plane at q0): the kernel stores it there, with no pass to drop the gaps.
template <class T>
void direct_unit(const T* in, const index_t* offsets, const T* w, index_t q0, index_t q1, index_t rows,
                 index_t channels_per_run, const DirectConv& p, T* out, const T* bias, bool relu, T* flat = nullptr,
                 index_t flat_stride = 0) {
  constexpr index_t S = packet_size_v<T>, R = direct_rows, V = direct_packets, span = V * S;
  alignas(64) T sums[direct_max_blocks * R * span];
  const index_t packets = (q1 - q0 + S - 1) / S, taps = p.taps(), K = p.K(), P = p.Ho() * p.Wo();
  // Input channels in runs whose rows of the tile stay in L1 while every block reads them.
  for (index_t c0 = 0; c0 < p.Cin; c0 += channels_per_run) {
    const index_t cn = std::min(channels_per_run, p.Cin - c0);
    const bool last = c0 + cn == p.Cin;
    for (index_t r0 = 0; r0 < rows; r0 += R) {
      alignas(64) T block_bias[R];
      for (index_t r = 0; r < R; ++r) block_bias[r] = bias && r0 + r < rows ? bias[r0 + r] : T(0);
      T* tile = flat ? flat + r0 * flat_stride : sums + r0 * span;
      const index_t stride = flat ? flat_stride : span;
      with_count<V>(packets, [&](auto packets_c) {
        direct_tile<T, R, decltype(packets_c)::value>(in, offsets + c0 * taps, cn * taps, w + r0 * K + c0 * taps * R,
                                                      tile, stride, c0 == 0 ? block_bias : nullptr, relu && last);
      });
    }
  }
  if (flat) return;
  for (index_t r0 = 0; r0 < rows; r0 += R) {
    write_direct_tile(sums + r0 * span, span, std::min(R, rows - r0), q0, q1, p, out + r0 * P);
  }
}

/// A non-owning reference to a callable pack(b0, b1) that writes blocks [b0, b1) of each group of
/// the packed weights: direct_conv takes it (as the pool takes a TaskRef) so that it is compiled
/// once per element type, not once for the forward's packing and again for the data gradient's.
class PackBlocks {
 public:
  // Not for PackBlocks itself: copying one must copy it, not make a reference to it.
  template <class F, std::enable_if_t<!std::is_same_v<std::remove_const_t<F>, PackBlocks>, int> = 0>
  explicit PackBlocks(F& f) noexcept
      : object_(static_cast<void*>(&f)),
        call_([](void* o, index_t b0, index_t b1) { (*static_cast<F*>(o))(b0, b1); }) {}
  void operator()(index_t b0, index_t b1) const { call_(object_, b0, b1); }

 private:
  void* object_;
  void (*call_)(void*, index_t, index_t);
};

/// out = the convolution of `in` with the packed weights, + bias[o] when `bias` is not null, then
/// relu when `relu`. With `pooled`, that output goes to scratch memory and `pooled` writes it
/// pooled instead (`out` is not used). pack(b0, b1) writes blocks [b0, b1) of each group of the
/// packed weights (pack_direct_weights) into `packed`: all of them before the work is shared out,
/// or, where the work is split by blocks (a batch of one), each task its own.
template <class T>
void direct_conv(const T* in, PackBlocks pack, T* packed, T* out, const DirectConv& p, const T* bias, bool relu,
                 const PooledOutput<T>* pooled = nullptr) {
  constexpr index_t S = packet_size_v<T>, R = direct_rows, V = direct_packets, span = V * S;
  const index_t plane = p.Hp() * p.Wp(), flat = p.flat(), tiles = (flat + span - 1) / span, K = p.K();
  // Where product k = c * taps + (i * kw + j) reads, from the tile's first position.
  std::vector<index_t> offsets(static_cast<std::size_t>(K));
  for (index_t c = 0; c < p.Cin; ++c)
    for (index_t i = 0; i < p.kh; ++i)
      for (index_t j = 0; j < p.kw; ++j)
        offsets[std::size_t((c * p.kh + i) * p.kw + j)] = c * plane + i * p.dil_h * p.Wp() + j * p.dil_w;

  // A small batch has few tiles: its blocks of output channels are then cut into more chunks, so
  // that there are some 16 units of work.
  const index_t blocks = direct_blocks(p.Cout), spatial = std::max<index_t>(1, p.N * p.groups * tiles);
  const index_t wanted = std::clamp<index_t>((16 + spatial - 1) / spatial, 1, blocks);
  const index_t per_chunk = std::min(direct_max_blocks, (blocks + wanted - 1) / wanted);
  const index_t chunks = (blocks + per_chunk - 1) / per_chunk;
  // A tile reads span + (kh - 1) * dh * Wp + (kw - 1) * dw elements of each plane: runs of input
  // channels keep that within 16 KiB.
  const index_t tile_reads = span + (p.kh - 1) * p.dil_h * p.Wp() + (p.kw - 1) * p.dil_w;
  const index_t channels_per_run = std::clamp<index_t>(index_t(16384 / sizeof(T)) / tile_reads, 1, p.Cin);

  const index_t units = tiles * chunks, in_plane = p.H * p.W, out_plane = p.Ho() * p.Wo();
  // Pooled, an item's output is left in flat planes (see direct_unit) of tiles * span elements,
  // one per row of the packed blocks, and pooled from there.
  const index_t flat_plane = tiles * span, flat_item = blocks * R * flat_plane;
  // The tile at flat position q0 of blocks [b0, b1) (at most direct_max_blocks) of group grp of an
  // item, from the group's padded planes into `dst`, the item's first output plane. The planes are
  // followed by one tile's span of zeros: the last tile's packets read past the last plane (into
  // positions that are dropped).
  auto run_tile = [&](const T* planes, T* dst, index_t grp, index_t q0, index_t b0, index_t b1) {
    const index_t o = b0 * R, o0 = grp * p.Cout + o;
    direct_unit(planes + q0, offsets.data(), packed + (grp * blocks + b0) * R * K, q0, std::min(flat, q0 + span),
                std::min(p.Cout - o, (b1 - b0) * R), channels_per_run, p, pooled ? nullptr : dst + o * out_plane,
                bias ? bias + o0 : nullptr, relu, pooled ? dst + o * flat_plane + q0 : nullptr, flat_plane);
  };
  // The units [u0, u1) of tiles * chunks of group grp of an item.
  auto run_units = [&](const T* planes, T* dst, index_t grp, index_t u0, index_t u1) {
    for (index_t u = u0; u < u1; ++u) {
      const index_t b0 = u % chunks * per_chunk;
      run_tile(planes, dst, grp, u / chunks * span, b0, std::min(blocks, b0 + per_chunk));
    }
  };
  auto pool_item = [&](const T* dst, index_t i) { pooled->pool(dst, i * p.Cout, p.Cout, flat_plane, p.Wp()); };
  // Item i = (image n, group grp) writes planes from i * Cout of the output.
  auto pad_group = [&](index_t item, T* planes) {
    for (index_t c = 0; c < p.Cin; ++c) copy_into_padded(in + (item * p.Cin + c) * in_plane, p, planes + c * plane);
  };
  const index_t items = p.N * p.groups;  // (image, group) pairs
  if (items >= 2 * CpuPool::instance().threads()) {
    // Many images: each task pads an image's planes and runs their units while they are in its
    // core's cache. (Padding the whole batch first, then computing, moved it through memory twice:
    // 1.6x slower for 64 images of 64 channels, 32x32.) An image's units stay on one thread: one
    // task per unit, claimed one at a time, ran 1.3x slower (consecutive tiles share two thirds of
    // their input rows). The images go in runs, about four per thread, claimed one at a time, so
    // that a thread slowed by another process does not hold the others up at the end of the call.
    // Pooled, an item's planes are computed into scratch (in cache) and pooled from there.
    const index_t runs = std::min<index_t>(items, 4 * CpuPool::instance().threads());
    pack(0, blocks);
    parallel_tasks(runs, [&](index_t run) {
      const index_t i0 = items * run / runs, i1 = items * (run + 1) / runs;
      auto padded = conv_scratch<T>(p.Cin * plane + span);
      std::fill(padded.data(), padded.data() + p.Cin * plane + span, T(0));  // borders, once per task
      auto item_out = conv_scratch<T>(pooled ? flat_item : 0);
      for (index_t i = i0; i < i1; ++i) {
        pad_group(i, padded.data());
        T* dst = pooled ? item_out.data() : out + i * p.Cout * out_plane;
        run_units(padded.data(), dst, i % p.groups, 0, units);
        if (pooled) pool_item(dst, i);
      }
    });
    return;
  }
  // Few images (fewer than two per thread: a batch of one). Their output is computed into `dst`
  // (scratch when pooled) and pooled after.
  const index_t item_size = pooled ? flat_item : p.Cout * out_plane;
  auto stored = conv_scratch<T>(pooled ? items * flat_item : 0);
  T* dst = pooled ? stored.data() : out;
  const double macs = double(items) * double(p.Cout) * double(out_plane) * double(K);
  if (items * p.Cin * plane <= direct_small_input) {
    // A small input (the later layers of an image model): the blocks of output channels are shared
    // out, a run of them per thread, and each task pads every plane itself, computes its blocks at
    // every tile and pools them, in one parallel region. Nothing a task writes is read by another,
    // and padding the input again costs little beside its share of the products.
    const index_t threads = CpuPool::instance().threads();
    const index_t shares = macs < direct_shared_macs ? 1 : std::min<index_t>(blocks, threads);
    parallel_tasks(shares, [&](index_t s) {
      const index_t b0 = blocks * s / shares, b1 = blocks * (s + 1) / shares;
      pack(b0, b1);  // a task reads only its own blocks
      auto padded = conv_scratch<T>(items * p.Cin * plane + span);
      std::fill(padded.data(), padded.data() + items * p.Cin * plane + span, T(0));
      for (index_t c = 0; c < items * p.Cin; ++c) copy_into_padded(in + c * in_plane, p, padded.data() + c * plane);
      for (index_t i = 0; i < items; ++i) {
        T* item_dst = dst + i * item_size;
        for (index_t c0 = b0; c0 < b1; c0 += direct_max_blocks) {
          for (index_t q0 = 0; q0 < flat; q0 += span) {
            run_tile(padded.data() + i * p.Cin * plane, item_dst, i % p.groups, q0, c0,
                     std::min(b1, c0 + direct_max_blocks));
          }
        }
        if (pooled) {
          const index_t o0 = b0 * R, o1 = std::min(p.Cout, b1 * R);
          pooled->pool(item_dst + o0 * flat_plane, i * p.Cout + o0, o1 - o0, flat_plane, p.Wp());
        }
      }
    });
    return;
  }
  // A large input (a high-resolution image): split by blocks alone, a task would pad more than it
  // computes, and many threads would not all get a block. Every plane is padded once, then the
  // units (tiles x chunks of blocks) are shared out; an image under direct_inline_macs stays on
  // the calling thread (the parts would spend about as long fetching each other's data).
  const InlineRegions small(macs < direct_inline_macs);
  pack(0, blocks);
  auto padded = conv_scratch<T>(items * p.Cin * plane + span);
  std::fill(padded.data() + items * p.Cin * plane, padded.data() + items * p.Cin * plane + span, T(0));
  parallel_for(items * p.Cin, 1, 8, [&](index_t c0, index_t c1) {
    std::fill(padded.data() + c0 * plane, padded.data() + c1 * plane, T(0));
    for (index_t c = c0; c < c1; ++c) copy_into_padded(in + c * in_plane, p, padded.data() + c * plane);
  });
  parallel_for(items * units, 1, 2, [&](index_t u0, index_t u1) {
    for (index_t u = u0; u < u1; ++u) {
      const index_t i = u / units;
      run_units(padded.data() + i * p.Cin * plane, dst + i * item_size, i % p.groups, u % units, u % units + 1);
    }
  });
  if (pooled) {
    parallel_for(items * p.Cout, 1, 2, [&](index_t c0, index_t c1) {
      for (index_t c = c0; c < c1; ++c) {
        pooled->pool(dst + c / p.Cout * item_size + c % p.Cout * flat_plane, c, 1, flat_plane, p.Wp());
      }
    });
  }
}

/// The forward pass (direct_conv_forward): y = conv2d(x, w) (+ bias, relu), or that pooled; the
/// weights times weight_scale[o] when it is not null (conv2d_forward's).
template <class T>
void conv2d_forward_direct(const T* x, const T* w, T* y, const ConvDims& d, const Conv2dGeometry& g, const T* bias,
                           bool relu, const PooledOutput<T>* pooled = nullptr, const T* weight_scale = nullptr) {
  const DirectConv p{d.N, g.groups, d.Cg, d.Og, d.H, d.W, d.kh, d.kw, g.pad_h, g.pad_w, g.dilation_h, g.dilation_w};
  auto packed = conv_scratch<T>(g.groups * direct_blocks(d.Og) * direct_rows * d.K);
  auto pack = [&](index_t b0, index_t b1) { pack_direct_weight_rows(p, w, packed.data(), b0, b1, weight_scale); };
  direct_conv(x, PackBlocks(pack), packed.data(), y, p, bias, relu, pooled);
}

/// The data gradient (direct_conv_backward_data): dx = the stride-1 convolution of dy, padded by
/// (k - 1) * dilation - pad, with the filter flipped in both axes and its channels swapped.
template <class T>
void conv2d_backward_data_direct(const T* w, const T* dy, T* dx, const ConvDims& d, const Conv2dGeometry& g) {
  const DirectConv p{d.N,
                     g.groups,
                     d.Og,
                     d.Cg,
                     d.Ho,
                     d.Wo,
                     d.kh,
                     d.kw,
                     (d.kh - 1) * g.dilation_h - g.pad_h,
                     (d.kw - 1) * g.dilation_w - g.pad_w,
                     g.dilation_h,
                     g.dilation_w};
  const index_t taps = d.kh * d.kw;
  auto packed = conv_scratch<T>(g.groups * direct_blocks(d.Cg) * direct_rows * d.Og * taps);
  // Output c of the flipped convolution, input o, tap t reads w[o][c][taps - 1 - t].
  auto flipped = [&](index_t grp, index_t c, index_t k) {
    const index_t o = k / taps, t = k % taps;
    return w[((grp * d.Og + o) * d.Cg + c) * taps + taps - 1 - t];
  };
  auto pack = [&](index_t b0, index_t b1) { pack_direct_weights(p, flipped, packed.data(), b0, b1); };
  direct_conv(dy, PackBlocks(pack), packed.data(), dx, p, static_cast<const T*>(nullptr), false);
}

/// The filter gradient's register tile: R output channels x up to Tn taps of one input channel,
/// plus R output-gradient packets and one input packet. With 32 vector registers 3 x 9 (27
/// accumulators). With AVX2's 16, 4 x 3: 1 x 9 loads 10 packets per 9 multiply-adds and was bound
/// by its loads; 4 x 3 loads 7 per 12 (docs/cpu-performance.md).
inline constexpr int direct_filter_rows = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 3 : 4;
inline constexpr int direct_filter_taps = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 9 : 3;

/// sums[r * Tn + t] = the sum over u in [0, n) of dy[r * stride + u] * x[u + offsets[t]], for R
/// output-gradient rows and Tn taps: one packet of positions at a time, every lane its own sum,
/// the lanes added at the end.
template <class T, int R, int Tn>
void direct_filter_tile(const T* dy, index_t stride, const T* x, const index_t* offsets, index_t n, T* sums) {
  namespace pk = Eigen::internal;
  using P = packet_t<T>;
  constexpr index_t S = packet_size_v<T>;
  P acc[R][Tn];
  TESSERA_UNROLL
  for (int r = 0; r < R; ++r) {
    TESSERA_UNROLL
    for (int t = 0; t < Tn; ++t) acc[r][t] = pk::pset1<P>(T(0));
  }
  index_t off[Tn];
  TESSERA_UNROLL
  for (int t = 0; t < Tn; ++t) off[t] = offsets[t];
  for (index_t u = 0; u < n; u += S) {
    P g[R];
    TESSERA_UNROLL
    for (int r = 0; r < R; ++r) g[r] = pk::ploadu<P>(dy + r * stride + u);
    TESSERA_UNROLL
    for (int t = 0; t < Tn; ++t) {
      const P v = pk::ploadu<P>(x + u + off[t]);
      TESSERA_UNROLL
      for (int r = 0; r < R; ++r) acc[r][t] = pk::pmadd(g[r], v, acc[r][t]);
    }
  }
  TESSERA_UNROLL
  for (int r = 0; r < R; ++r) {
    TESSERA_UNROLL
    for (int t = 0; t < Tn; ++t) sums[r * Tn + t] = pk::predux(acc[r][t]);
  }
}

/// The filter gradient (direct_conv_backward_filter): dw[o][c][i][j] = the sum over images and
/// output positions of dy[n][o][oh][ow] * x[n][c][oh - pad + i * dh][ow - pad + j * dw].
///
/// In the padded planes' flat positions this is, per (o, c, tap), one dot product of the output
/// gradient (laid out Ho x Wp, zeros between the rows) with the input shifted by the tap. The
/// images are cut into runs (direct_filter_runs); each task copies its run's planes, image after
/// image at one stride per channel, so that one loop runs over all of them, and sums R output
/// channels x Tn taps in registers (direct_filter_rows x direct_filter_taps). The runs' partial
/// gradients are added in a fixed order: the result does not depend on the thread count.
template <class T>
void conv2d_backward_filter_direct(const T* x, const T* dy, T* dw, const ConvDims& d, const Conv2dGeometry& g) {
  constexpr index_t S = packet_size_v<T>, R = direct_filter_rows, TB = direct_filter_taps;
  const DirectConv p{d.N, g.groups, d.Cg, d.Og, d.H, d.W, d.kh, d.kw, g.pad_h, g.pad_w, g.dilation_h, g.dilation_w};
  const index_t Wp = p.Wp(), taps = p.taps(), size = d.O * d.K;
  // Per image and channel: the padded plane (or Ho rows of Wp gradients, zeros between the rows
  // and after the last), then zeros to a whole number of packets. Where the output gradient is
  // zero, a tap may read past the image (into the next one, or into the zeros after the last
  // channel): those products add nothing.
  const index_t stride = (p.Hp() * Wp + S - 1) / S * S;
  const index_t reach = (d.kh - 1) * g.dilation_h * Wp + (d.kw - 1) * g.dilation_w;
  const index_t runs = direct_filter_runs(d);
  std::vector<index_t> offsets(static_cast<std::size_t>(taps));
  for (index_t i = 0; i < d.kh; ++i)
    for (index_t j = 0; j < d.kw; ++j) offsets[std::size_t(i * d.kw + j)] = i * g.dilation_h * Wp + j * g.dilation_w;

  auto partials = conv_scratch<T>(runs * size);
  parallel_tasks(runs, [&](index_t run) {
    const index_t n0 = d.N * run / runs, n1 = d.N * (run + 1) / runs, nb = n1 - n0, span = nb * stride;
    // xs [C][nb][stride]: padded input planes; gs [O][nb][stride]: output gradients, Ho rows of Wp.
    // R - 1 rows of zeros after the last output channel: the last block always reads R rows.
    auto xs = conv_scratch<T>(d.C * span + reach + S), gs = conv_scratch<T>((d.O + R - 1) * span);
    std::fill(xs.data(), xs.data() + d.C * span + reach + S, T(0));  // then only the interiors are written
    std::fill(gs.data(), gs.data() + (d.O + R - 1) * span, T(0));
    for (index_t c = 0; c < d.C; ++c) {
      for (index_t n = 0; n < nb; ++n)
        copy_into_padded(x + ((n0 + n) * d.C + c) * d.H * d.W, p, xs.data() + c * span + n * stride);
    }
    for (index_t o = 0; o < d.O; ++o) {
      for (index_t n = 0; n < nb; ++n) {
        T* dst = gs.data() + o * span + n * stride;
        const T* src = dy + ((n0 + n) * d.O + o) * d.P;
        for (index_t oh = 0; oh < d.Ho; ++oh) copy_run(src + oh * d.Wo, dst + oh * Wp, d.Wo);
      }
    }
    T* part = partials.data() + run * size;
    T sums[R * TB];
    for (index_t grp = 0; grp < g.groups; ++grp) {
      for (index_t o0 = 0; o0 < d.Og; o0 += R) {
        const index_t rows = std::min<index_t>(R, d.Og - o0), o = grp * d.Og + o0;
        for (index_t c = 0; c < d.Cg; ++c) {
          const T* xc = xs.data() + (grp * d.Cg + c) * span;
          for (index_t t0 = 0; t0 < taps; t0 += TB) {
            const index_t tn = std::min<index_t>(TB, taps - t0);
            with_count<TB>(tn, [&](auto taps_c) {
              direct_filter_tile<T, R, decltype(taps_c)::value>(gs.data() + o * span, span, xc, offsets.data() + t0,
                                                                span, sums);
            });
            for (index_t r = 0; r < rows; ++r)
              for (index_t t = 0; t < tn; ++t) part[((o + r) * d.Cg + c) * taps + t0 + t] = sums[r * tn + t];
          }
        }
      }
    }
  });
  add_partials(partials.data(), runs, size, dw);
}

}  // namespace tessera::detail
