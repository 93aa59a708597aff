// Pooling (NCHW) on the CPU: max and average, forward and backward, with padding, stride and
// dilation; 2x2 max pooling with stride 2 (the common case) has SIMD rows of its own.
// docs/cpu-performance.md ("Pooling") explains them.
#pragma once

#include <algorithm>
#include <limits>
#include <type_traits>

#include <Eigen/Core>

#include "tessera/backend/cpu/device.hpp"
#include "tessera/backend/op_args.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera {

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

#if defined(__AVX512F__)
/// Up to 16 windows of 2x2 max pooling, from window j of rows r0 and r1 (n windows, the rest of the
/// lanes empty): first_max_2x2's comparisons on 16 lanes at once. The rows' even and odd elements
/// are split by permutes; a short row (the main job's are 14 and 7 windows) is one masked step.
struct MaxPool2x2Windows16 {
  __mmask16 lo, hi;  // the row elements read: [2j, 2j + 16) and [2j + 16, 2j + 32)
  __mmask16 tb, tc, td;  // b beat a; c beat the better of a and b; d beat the best of the three
  __m512 m;              // the windows' maxima

  static __mmask16 lanes(index_t n) { return __mmask16(n >= 16 ? 0xFFFF : (1u << n) - 1); }
  /// permutex2var's indices of the even (odd) elements of two packets laid end to end.
  static __m512i even() { return _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30); }
  static __m512i odd() { return _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31); }
  static __mmask16 wins(__m512 later, __m512 best) {  // later > best, or later NaN and best not
    return __mmask16(_mm512_cmp_ps_mask(later, best, _CMP_GT_OQ) |
                     (_mm512_cmp_ps_mask(later, later, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q)));
  }
  MaxPool2x2Windows16(const float* r0, const float* r1, index_t j, index_t n)
      : lo(lanes(2 * n)), hi(lanes(std::max<index_t>(0, 2 * n - 16))) {
    const __m512i even = MaxPool2x2Windows16::even(), odd = MaxPool2x2Windows16::odd();
    const __m512 l0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * j), h0 = _mm512_maskz_loadu_ps(hi, r0 + 2 * j + 16);
    const __m512 l1 = _mm512_maskz_loadu_ps(lo, r1 + 2 * j), h1 = _mm512_maskz_loadu_ps(hi, r1 + 2 * j + 16);
    const __m512 a = _mm512_permutex2var_ps(l0, even, h0), b = _mm512_permutex2var_ps(l0, odd, h0);
    const __m512 c = _mm512_permutex2var_ps(l1, even, h1), d = _mm512_permutex2var_ps(l1, odd, h1);
    tb = wins(b, a);
    const __m512 m1 = _mm512_mask_blend_ps(tb, a, b);
    tc = wins(c, m1);
    const __m512 m2 = _mm512_mask_blend_ps(tc, m1, c);
    td = wins(d, m2);
    m = _mm512_mask_blend_ps(td, m2, d);
  }
};
#elif defined(__AVX2__)
/// Up to 8 windows of 2x2 max pooling (see MaxPool2x2Windows16). Within each 128-bit half the
/// lanes hold windows 0 1 4 5 | 2 3 6 7: the comparisons are per lane, so callers put values in
/// order once (`in_order`, its own inverse).
struct MaxPool2x2Windows8 {
  __m256i lo, hi;      // the row elements read, as lane masks
  __m256 tb, tc, td;   // as in MaxPool2x2Windows16, as lane masks
  __m256 m;

  static __m256i lanes(index_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(std::min<index_t>(n, 8))), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static __m256 wins(__m256 later, __m256 best) {
    return _mm256_or_ps(_mm256_cmp_ps(later, best, _CMP_GT_OQ),
                        _mm256_and_ps(_mm256_cmp_ps(later, later, _CMP_UNORD_Q), _mm256_cmp_ps(best, best, _CMP_ORD_Q)));
  }
  static __m256 in_order(__m256 v) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  MaxPool2x2Windows8(const float* r0, const float* r1, index_t j, index_t n)
      : lo(lanes(2 * n)), hi(lanes(std::max<index_t>(0, 2 * n - 8))) {
    const __m256 l0 = _mm256_maskload_ps(r0 + 2 * j, lo), h0 = _mm256_maskload_ps(r0 + 2 * j + 8, hi);
    const __m256 l1 = _mm256_maskload_ps(r1 + 2 * j, lo), h1 = _mm256_maskload_ps(r1 + 2 * j + 8, hi);
    const __m256 a = _mm256_shuffle_ps(l0, h0, _MM_SHUFFLE(2, 0, 2, 0)), b = _mm256_shuffle_ps(l0, h0, _MM_SHUFFLE(3, 1, 3, 1));
    const __m256 c = _mm256_shuffle_ps(l1, h1, _MM_SHUFFLE(2, 0, 2, 0)), d = _mm256_shuffle_ps(l1, h1, _MM_SHUFFLE(3, 1, 3, 1));
    tb = wins(b, a);
    const __m256 m1 = _mm256_blendv_ps(a, b, tb);
    tc = wins(c, m1);
    const __m256 m2 = _mm256_blendv_ps(m1, c, tc);
    td = wins(d, m2);
    m = _mm256_blendv_ps(m2, d, td);
  }
};
#endif

/// One output row of 2x2 max pooling: out[j] = the first maximum of r0[2j], r0[2j + 1], r1[2j],
/// r1[2j + 1] (first_max_2x2's value, bit for bit: the same comparisons in the same order). Floats
/// run 16 (AVX-512) or 8 (AVX2) windows at a time. (The scalar loop compiled to branches on one
/// path and to vector code on another, 4x apart on random data.)
template <class T>
void max_pool_2x2_row(const T* r0, const T* r1, T* out, index_t Wo) {
  index_t j = 0;
  if constexpr (std::is_same_v<T, float>) {
#if defined(__AVX512F__)
    for (; j < Wo; j += 16) {
      const index_t n = std::min<index_t>(16, Wo - j);
      _mm512_mask_storeu_ps(out + j, MaxPool2x2Windows16::lanes(n), MaxPool2x2Windows16(r0, r1, j, n).m);
    }
#elif defined(__AVX2__)
    for (; j < Wo; j += 8) {
      const index_t n = std::min<index_t>(8, Wo - j);
      const MaxPool2x2Windows8 w(r0, r1, j, n);
      _mm256_maskstore_ps(out + j, MaxPool2x2Windows8::lanes(n), MaxPool2x2Windows8::in_order(w.m));
    }
#endif
  }
  for (; j < Wo; ++j) first_max_2x2(r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1], out[j]);
}

/// 2x2 max pooling of a plane (rows `row_stride` apart) into Ho x Wo outputs, out[oh][j] = the
/// maximum of rows 2oh and 2oh + 1 at columns 2j and 2j + 1, for input with no NaN and no -0 (a
/// relu's output): the maximum is then the same whichever way the four are compared, so the two
/// rows are compared first, a packet at a time, then the pairs (max_pool_2x2_row's ordered
/// comparisons cost three times the vector instructions). A whole plane per call, column blocks
/// outermost, so that a short row (the main job's are 14 and 7 windows) costs one masked step and
/// no call or mask setup of its own.
template <class T>
void max_pool_2x2_plane_unordered(const T* in, index_t row_stride, T* out, index_t Ho, index_t Wo) {
  index_t j = 0;
  if constexpr (std::is_same_v<T, float>) {
#if defined(__AVX512F__)
    const __m512i even = MaxPool2x2Windows16::even(), odd = MaxPool2x2Windows16::odd();
    for (; j < Wo; j += 16) {
      const index_t n = std::min<index_t>(16, Wo - j);
      const __mmask16 lo = MaxPool2x2Windows16::lanes(2 * n),
                      hi = MaxPool2x2Windows16::lanes(std::max<index_t>(0, 2 * n - 16)),
                      windows = MaxPool2x2Windows16::lanes(n);
      const float* r0 = in + 2 * j;
      float* o = out + j;
      for (index_t oh = 0; oh < Ho; ++oh, r0 += 2 * row_stride, o += Wo) {
        const float* r1 = r0 + row_stride;
        const __m512 l = _mm512_max_ps(_mm512_maskz_loadu_ps(lo, r0), _mm512_maskz_loadu_ps(lo, r1));
        const __m512 h = _mm512_max_ps(_mm512_maskz_loadu_ps(hi, r0 + 16), _mm512_maskz_loadu_ps(hi, r1 + 16));
        _mm512_mask_storeu_ps(o, windows,
                              _mm512_max_ps(_mm512_permutex2var_ps(l, even, h), _mm512_permutex2var_ps(l, odd, h)));
      }
    }
#elif defined(__AVX2__)
    const index_t body = Wo / 8 * 8;
    for (index_t oh = 0; oh < Ho; ++oh) {
      const float* r0 = in + 2 * oh * row_stride;
      const float* r1 = r0 + row_stride;
      for (index_t c = 0; c < body; c += 8) {
        const __m256 l = _mm256_max_ps(_mm256_loadu_ps(r0 + 2 * c), _mm256_loadu_ps(r1 + 2 * c));
        const __m256 h = _mm256_max_ps(_mm256_loadu_ps(r0 + 2 * c + 8), _mm256_loadu_ps(r1 + 2 * c + 8));
        const __m256 m = _mm256_max_ps(_mm256_shuffle_ps(l, h, _MM_SHUFFLE(2, 0, 2, 0)),
                                       _mm256_shuffle_ps(l, h, _MM_SHUFFLE(3, 1, 3, 1)));
        _mm256_storeu_ps(out + oh * Wo + c, MaxPool2x2Windows8::in_order(m));
      }
    }
    j = body;
#endif
  }
  for (index_t oh = 0; oh < Ho; ++oh) {
    const T* r0 = in + 2 * oh * row_stride;
    const T* r1 = r0 + row_stride;
    for (index_t c = j; c < Wo; ++c) {
      const T a = std::max(r0[2 * c], r1[2 * c]), b = std::max(r0[2 * c + 1], r1[2 * c + 1]);
      out[oh * Wo + c] = std::max(a, b);
    }
  }
}

/// One output row of 2x2 max pooling's backward: of each window j's four elements, the one
/// first_max_2x2 picks gets gout[j] in g0/g1 (the gradient rows under r0/r1) and the other three
/// 0; elements [0, 2 Wo) of both rows are written. Floats run 16 (AVX-512) or 8 (AVX2) windows at
/// a time, with the forward's comparisons turned into one mask per window element, and the four
/// masked gradients interleaved back into row order. (The scalar loop was 16% of a CNN training
/// step.)
template <class T>
void max_pool_2x2_backward_row(const T* r0, const T* r1, const T* gout, T* g0, T* g1, index_t Wo) {
  index_t j = 0;
  if constexpr (std::is_same_v<T, float>) {
#if defined(__AVX512F__)
    const __m512i first_half = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i second_half = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (; j < Wo; j += 16) {
      const index_t n = std::min<index_t>(16, Wo - j);
      const MaxPool2x2Windows16 w(r0, r1, j, n);
      const __m512 g = _mm512_maskz_loadu_ps(MaxPool2x2Windows16::lanes(n), gout + j);
      const __m512 ga = _mm512_maskz_mov_ps(__mmask16(~(w.tb | w.tc | w.td)), g);
      const __m512 gb = _mm512_maskz_mov_ps(__mmask16(w.tb & ~w.tc & ~w.td), g);
      const __m512 gc = _mm512_maskz_mov_ps(__mmask16(w.tc & ~w.td), g), gd = _mm512_maskz_mov_ps(w.td, g);
      _mm512_mask_storeu_ps(g0 + 2 * j, w.lo, _mm512_permutex2var_ps(ga, first_half, gb));
      _mm512_mask_storeu_ps(g0 + 2 * j + 16, w.hi, _mm512_permutex2var_ps(ga, second_half, gb));
      _mm512_mask_storeu_ps(g1 + 2 * j, w.lo, _mm512_permutex2var_ps(gc, first_half, gd));
      _mm512_mask_storeu_ps(g1 + 2 * j + 16, w.hi, _mm512_permutex2var_ps(gc, second_half, gd));
    }
#elif defined(__AVX2__)
    for (; j < Wo; j += 8) {
      const index_t n = std::min<index_t>(8, Wo - j);
      const MaxPool2x2Windows8 w(r0, r1, j, n);
      // gout in the windows' lane order; unpacking each pair of gradients puts the elements back in
      // row order.
      const __m256 g = MaxPool2x2Windows8::in_order(_mm256_maskload_ps(gout + j, MaxPool2x2Windows8::lanes(n)));
      const __m256 ga = _mm256_andnot_ps(_mm256_or_ps(w.tb, _mm256_or_ps(w.tc, w.td)), g);
      const __m256 gb = _mm256_and_ps(_mm256_andnot_ps(_mm256_or_ps(w.tc, w.td), w.tb), g);
      const __m256 gc = _mm256_and_ps(_mm256_andnot_ps(w.td, w.tc), g), gd = _mm256_and_ps(w.td, g);
      _mm256_maskstore_ps(g0 + 2 * j, w.lo, _mm256_unpacklo_ps(ga, gb));
      _mm256_maskstore_ps(g0 + 2 * j + 8, w.hi, _mm256_unpackhi_ps(ga, gb));
      _mm256_maskstore_ps(g1 + 2 * j, w.lo, _mm256_unpacklo_ps(gc, gd));
      _mm256_maskstore_ps(g1 + 2 * j + 8, w.hi, _mm256_unpackhi_ps(gc, gd));
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

/// Max (Max = true) or average pooling of `planes` H x W planes at `in` (`plane_stride` elements
/// apart, rows `row_stride` apart) into consecutive Ho x Wo planes at `out`, on the calling
/// thread: pool2d_forward's work on its share of the planes, and a convolution's pooling
/// epilogue's (conv2d_pool_forward) on the planes of the image it finished. `after_relu`: the
/// input holds a relu's output (no NaN, no -0).
template <bool Max, class T>
void pool_planes(const T* in, index_t planes, index_t plane_stride, index_t row_stride, index_t H, index_t W, T* out,
                 index_t Ho, index_t Wo, index_t kh, index_t kw, const Conv2dGeometry& g, bool after_relu = false) {
  if constexpr (Max) {
    if (is_plain_2x2_pool(kh, kw, g)) {
      // The common case (kernel 2, stride 2, no padding): no bounds checks, and the same choice
      // (first_max_2x2) as the backward pass below; after a relu, any order of comparisons.
      for (index_t p = 0; p < planes; ++p, in += plane_stride, out += Ho * Wo) {
        if (after_relu) {
          max_pool_2x2_plane_unordered(in, row_stride, out, Ho, Wo);
          continue;
        }
        for (index_t oh = 0; oh < Ho; ++oh) {
          const T* r0 = in + 2 * oh * row_stride;
          max_pool_2x2_row(r0, r0 + row_stride, out + oh * Wo, Wo);
        }
      }
      return;
    }
  }
  const T inv = T(1) / T(kh * kw);
  for (index_t p = 0; p < planes; ++p, in += plane_stride, out += Ho * Wo) {
    for (index_t oh = 0; oh < Ho; ++oh) {
      for (index_t ow = 0; ow < Wo; ++ow) {
        T acc = Max ? -std::numeric_limits<T>::infinity() : T(0);
        for (index_t i = 0; i < kh; ++i) {
          const index_t ih = oh * g.stride_h - g.pad_h + i * g.dilation_h;
          if (ih < 0 || ih >= H) continue;
          for (index_t j = 0; j < kw; ++j) {
            const index_t iw = ow * g.stride_w - g.pad_w + j * g.dilation_w;
            if (iw < 0 || iw >= W) continue;
            const T v = in[ih * row_stride + iw];
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
}
}  // namespace detail

/// Max (Max = true) or average pooling forward, NCHW. Average counts padding (PyTorch's default
/// count_include_pad = true); max ignores it.
template <bool Max, class T>
void pool2d_forward(cpu, std::bool_constant<Max>, const Tensor<T, 4, cpu>& x, Tensor<T, 4, cpu>& y, index_t kh,
                    index_t kw, const Conv2dGeometry& g) {
  const auto s = x.shape();
  const index_t H = s[2], W = s[3], Ho = y.shape()[2], Wo = y.shape()[3];
  detail::parallel_for(s[0] * s[1], 1, 2, [&](index_t p0, index_t p1) {
    detail::pool_planes<Max>(x.data() + p0 * H * W, p1 - p0, H * W, W, H, W, y.data() + p0 * Ho * Wo, Ho, Wo, kh, kw,
                             g);
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
