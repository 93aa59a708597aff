// 2-D convolution (NCHW) on the CPU: im2col + GEMM, and the two backward passes (data: GEMM +
// col2im; filter: GEMM against the same columns). Groups, stride, padding and dilation.
//
// Images are processed in chunks whose column matrix stays under ~32 MiB, so one GEMM per chunk
// and group covers many images at once (small per-image GEMMs waste most of the machine).
#pragma once

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "tessera/backend/cpu/device.hpp"
#include "tessera/backend/cpu/gemm.hpp"
#include "tessera/backend/op_args.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"

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

/// Column matrix for images [n0, n0 + nb) and channels [c0, c0 + cg) of x [N, C, H, W]:
/// cols[(c, i, j), (n, oh, ow)] = x[n, c0 + c, oh * s - p + i * d, ow * s - p + j * d] (0 outside).
template <class T>
void im2col(const T* x, index_t C, index_t H, index_t W, index_t n0, index_t nb, index_t c0, index_t cg, index_t kh,
            index_t kw, index_t Ho, index_t Wo, const Conv2dGeometry& g, T* cols) {
  const index_t P = Ho * Wo, row_len = nb * P;
  parallel_for(cg * kh * kw, 1, 4, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      const index_t c = r / (kh * kw), i = (r / kw) % kh, j = r % kw;
      const index_t offset = j * g.dilation_w - g.pad_w, s = g.stride_w;
      const auto [lo, hi] = valid_columns(offset, s, W, Wo);
      T* row = cols + r * row_len;
      for (index_t n = 0; n < nb; ++n) {
        const T* plane = x + ((n0 + n) * C + c0 + c) * H * W;
        for (index_t oh = 0; oh < Ho; ++oh) {
          const index_t ih = oh * g.stride_h - g.pad_h + i * g.dilation_h;
          T* dst = row + n * P + oh * Wo;
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
    }
  });
}

/// The adjoint of im2col: adds cols back into dx (which the caller zeroed).
template <class T>
void col2im(const T* cols, index_t C, index_t H, index_t W, index_t n0, index_t nb, index_t c0, index_t cg, index_t kh,
            index_t kw, index_t Ho, index_t Wo, const Conv2dGeometry& g, T* dx) {
  const index_t P = Ho * Wo, row_len = nb * P;
  // Each (image, channel) plane is written by one task only.
  parallel_for(nb * cg, 1, 2, [&](index_t t0, index_t t1) {
    for (index_t t = t0; t < t1; ++t) {
      const index_t n = t / cg, c = t % cg;
      T* plane = dx + ((n0 + n) * C + c0 + c) * H * W;
      for (index_t i = 0; i < kh; ++i) {
        for (index_t j = 0; j < kw; ++j) {
          const T* row = cols + ((c * kh + i) * kw + j) * row_len + n * P;
          const index_t offset = j * g.dilation_w - g.pad_w, s = g.stride_w;
          const auto [lo, hi] = valid_columns(offset, s, W, Wo);
          for (index_t oh = 0; oh < Ho; ++oh) {
            const index_t ih = oh * g.stride_h - g.pad_h + i * g.dilation_h;
            if (ih < 0 || ih >= H) continue;
            T* dst = plane + ih * W;  // dst[ow * s + offset] receives column ow
            const T* src = row + oh * Wo;
            if (s == 1) {
              if (hi > lo) {
                T* d = dst + lo + offset;
                const T* q = src + lo;
                for (index_t k = 0; k < hi - lo; ++k) d[k] += q[k];
              }
            } else {
              for (index_t ow = lo; ow < hi; ++ow) dst[ow * s + offset] += src[ow];
            }
          }
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

/// Scratch memory for the column matrices: from the backend's block cache and not zeroed (a
/// std::vector here was a fresh, zero-filled mmap every call: page faults and memset were ~15% of
/// a CNN training step's profile).
template <class T>
Tensor<T, 1, cpu> conv_scratch(index_t elements) {
  return Tensor<T, 1, cpu>::uninitialized(Shape<1>{elements});
}

struct ConvDims {
  index_t N, C, H, W, O, kh, kw, Ho, Wo, Cg, Og, K, P;
};
inline ConvDims conv_dims(const Shape<4>& x, const Shape<4>& w, const Conv2dGeometry& g, index_t Ho, index_t Wo) {
  ConvDims d{x[0], x[1], x[2], x[3], w[0], w[2], w[3], Ho, Wo, x[1] / g.groups, w[0] / g.groups, 0, Ho * Wo};
  d.K = d.Cg * d.kh * d.kw;
  return d;
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

}  // namespace detail

/// y = conv2d(x, w) (+ bias[o] when `bias` is not null): x [N, C, H, W], w [O, C / groups, kh, kw],
/// y [N, O, Ho, Wo], bias [O]; all contiguous. The bias is added while the GEMM's output is copied
/// into NCHW order, not in a pass of its own.
template <class T>
void conv2d_forward(cpu, const Tensor<T, 4, cpu>& x, const Tensor<T, 4, cpu>& w, Tensor<T, 4, cpu>& y,
                    const Conv2dGeometry& g, const T* bias = nullptr) {
  const auto d = detail::conv_dims(x.shape(), w.shape(), g, y.shape()[2], y.shape()[3]);
  if (d.N == 0 || d.O == 0 || d.P == 0) return;
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
          if (bias) {
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
  std::fill(dx.data(), dx.data() + dx.size(), T(0));
  if (d.N == 0 || d.O == 0 || d.P == 0) return;
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
  std::fill(dw.data(), dw.data() + dw.size(), T(0));
  if (d.N == 0 || d.O == 0 || d.P == 0) return;
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
      // The common case (kernel 2, stride 2, no padding): no bounds checks, same comparison order
      // (hence the same NaN and tie behaviour) as the general loop below.
      detail::parallel_for(s[0] * s[1], 1, 2, [&](index_t p0, index_t p1) {
        for (index_t p = p0; p < p1; ++p) {
          const T* in = x.data() + p * H * W;
          T* out = y.data() + p * Ho * Wo;
          for (index_t oh = 0; oh < Ho; ++oh) {
            const T* r0 = in + 2 * oh * W;
            const T* r1 = r0 + W;
            for (index_t ow = 0; ow < Wo; ++ow) {
              T m = r0[2 * ow];
              const T b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
              if (b > m || b != b) m = b;
              if (c > m || c != c) m = c;
              if (d > m || d != d) m = d;
              out[oh * Wo + ow] = m;
            }
          }
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
  std::fill(dx.data(), dx.data() + dx.size(), T(0));
  if constexpr (Max) {
    if (detail::is_plain_2x2_pool(kh, kw, g)) {
      detail::parallel_for(s[0] * s[1], 1, 2, [&](index_t p0, index_t p1) {
        for (index_t p = p0; p < p1; ++p) {
          const T* in = x.data() + p * H * W;
          const T* gout = dy.data() + p * Ho * Wo;
          T* gin = dx.data() + p * H * W;
          for (index_t oh = 0; oh < Ho; ++oh) {
            for (index_t ow = 0; ow < Wo; ++ow) {
              // The window's first maximum, chosen exactly as the general loop chooses it.
              index_t best = 2 * oh * W + 2 * ow;
              T acc = in[best];
              const index_t cand[3] = {best + 1, best + W, best + W + 1};
              for (index_t k : cand) {
                const T v = in[k];
                if (v > acc || (v != v && acc == acc)) {
                  acc = v;
                  best = k;
                }
              }
              gin[best] += gout[oh * Wo + ow];
            }
          }
        }
      });
      return;
    }
  }
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
