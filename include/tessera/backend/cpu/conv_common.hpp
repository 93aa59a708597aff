// What the CPU convolution paths share (conv.hpp: im2col and GEMM; conv_direct.hpp: direct): the
// problem's dimensions, scratch memory, relu as the epilogues apply it, and the pooling epilogue.
#pragma once

#include <algorithm>
#include <type_traits>

#include <Eigen/Core>

#include "tessera/backend/cpu/device.hpp"
#include "tessera/backend/cpu/pool.hpp"
#include "tessera/backend/op_args.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/evaluator.hpp"

namespace tessera::detail {

/// Scratch memory for the convolutions: from the backend's block cache and not zeroed (a
/// std::vector here was a fresh, zero-filled mmap every call: page faults and memset were ~15% of
/// a CNN training step's profile).
template <class T>
Tensor<T, 1, cpu> conv_scratch(index_t elements) {
  return Tensor<T, 1, cpu>::uninitialized(Shape<1>{std::max<index_t>(elements, 1)});
}

/// x [N, C, H, W], w [O, Cg, kh, kw], y [N, O, Ho, Wo]; per group Cg input and Og output
/// channels; K = Cg * kh * kw products per output; P = Ho * Wo output positions per image.
struct ConvDims {
  index_t N, C, H, W, O, kh, kw, Ho, Wo, Cg, Og, K, P;
};
inline ConvDims conv_dims(const Shape<4>& x, const Shape<4>& w, const Conv2dGeometry& g, index_t Ho, index_t Wo) {
  ConvDims d{x[0], x[1], x[2], x[3], w[0], w[2], w[3], Ho, Wo, x[1] / g.groups, w[0] / g.groups, 0, Ho * Wo};
  d.K = d.Cg * d.kh * d.kw;
  return d;
}

/// Few taps: the tiled path's own kernels instead of a GEMM (see the top of conv.hpp).
inline bool few_taps_conv(const ConvDims& d) { return d.K <= 16; }

/// max(v, 0) as relu computes it (+0 for NaN and for -0), on a value or a packet: the same
/// comparison in both, so a packet's lanes equal the scalar's results bit for bit.
template <class T>
T relu_value(T v) {
  return v > T(0) ? v : T(0);
}
template <class P>
P relu_packet(const P& v) {
  namespace pk = Eigen::internal;
  const P zero = pk::pzero(v);
  return pk::pselect(pk::pcmp_lt(zero, v), v, zero);
}

/// dst[k] = src[k] + b, then relu when asked, for k in [0, n): packets, then half packets (and so
/// on down), then single values, so that short runs (a 14-wide output row) are not all scalar.
/// (The packet type is deduced from an argument: naming it as a template argument makes GCC warn
/// that it drops the vector type's attributes.)
template <class T, class P>
void add_bias_relu_packets(const P&, T* dst, const T* src, index_t n, T b, bool relu) {
  namespace pk = Eigen::internal;
  constexpr index_t S = index_t(sizeof(P) / sizeof(T));
  index_t k = 0;
  const P bias = pk::pset1<P>(b);
  for (; k + S <= n; k += S) {
    const P v = pk::padd(pk::ploadu<P>(src + k), bias);
    pk::pstoreu(dst + k, relu ? relu_packet(v) : v);
  }
  using Half = typename pk::unpacket_traits<P>::half;
  if constexpr (sizeof(Half) < sizeof(P) && sizeof(Half) > sizeof(T)) {
    add_bias_relu_packets(Half{}, dst + k, src + k, n - k, b, relu);
  } else {
    for (; k < n; ++k) dst[k] = relu ? relu_value(src[k] + b) : src[k] + b;
  }
}
template <class T>
void add_bias_relu(T* dst, const T* src, index_t n, T b, bool relu) {
  add_bias_relu_packets(packet_t<T>{}, dst, src, n, b, relu);
}

/// out[e] = the sum of parts[p * size + e] over p = 0, 1, ..., count - 1, in that order: the filter
/// gradients' partial sums (one per run of images or tiles) added the same way whatever the
/// thread count.
template <class T>
void add_partials(const T* parts, index_t count, index_t size, T* out) {
  parallel_for(size, 1024, 4096, [&](index_t e0, index_t e1) {
    for (index_t e = e0; e < e1; ++e) {
      T s = parts[e];
      for (index_t p = 1; p < count; ++p) s += parts[p * size + e];
      out[e] = s;
    }
  });
}

/// Where a convolution that pools its output (conv2d_pool_forward) puts it: a path computes the
/// output planes of one image (or of one group of an image) into scratch memory, which stays in
/// cache, and `pool` writes them pooled into y. The whole output is then never stored, nor read
/// back from memory by a pooling pass.
template <class T>
struct PooledOutput {
  PoolEpilogue epilogue;
  T* y;             ///< [N, O, Hq, Wq]
  index_t Ho, Wo;   ///< the convolution's output extents
  index_t Hq, Wq;   ///< the pooling's
  bool after_relu;  ///< the convolution applies relu (see pool_planes)

  /// Pools `planes` Ho x Wo output planes at `conv` (`plane_stride` elements apart, rows `row_stride`
  /// apart), planes [first, first + planes) of the output counted over images and channels
  /// (n * O + o), into y's planes.
  void pool(const T* conv, index_t first, index_t planes, index_t plane_stride, index_t row_stride) const {
    T* out = y + first * Hq * Wq;
    const auto& e = epilogue;
    if (e.max) {
      pool_planes<true>(conv, planes, plane_stride, row_stride, Ho, Wo, out, Hq, Wq, e.kh, e.kw, e.geometry,
                        after_relu);
    } else {
      pool_planes<false>(conv, planes, plane_stride, row_stride, Ho, Wo, out, Hq, Wq, e.kh, e.kw, e.geometry);
    }
  }
  /// Pools the whole output at `conv` ([N, O, Ho, Wo] planes, `planes` = N * O), on the pool's
  /// threads: the paths that do not finish images one at a time (few images) end with this.
  void pool_all(const T* conv, index_t planes) const {
    parallel_for(planes, 1, 2, [&](index_t p0, index_t p1) { pool(conv + p0 * Ho * Wo, p0, p1 - p0, Ho * Wo, Wo); });
  }
};

}  // namespace tessera::detail
