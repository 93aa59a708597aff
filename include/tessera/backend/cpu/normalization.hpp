// Batch normalization's forward pass on the CPU: per-channel statistics and the normalized output
// in one kernel (its backward is an ordinary fused expression, see expr/normalization.hpp).
#pragma once

#include <cmath>
#include <string>
#include <type_traits>

#include "tessera/backend/cpu/device.hpp"
#include "tessera/backend/op_args.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera {

/// y = (x - mean) * invstd * gamma + beta per channel of contiguous x viewed as [N, C, S].
/// Training: writes the batch mean and 1/sqrt(biased variance + eps) into `mean` and `invstd`, and
/// the biased variance into `var`. Evaluation: reads `mean` and `invstd`. With `a.relu`, y = max(y, 0)
/// (written once).
template <class T>
void batch_norm_forward(cpu, const T* x, const T* gamma, const T* beta, T* y, T* mean, T* invstd, T* var,
                        const BatchNormForwardArgs& a) {
  const index_t N = a.batch, C = a.channels, S = a.inner;
  const double count = double(N) * double(S);
  detail::parallel_for(C, 1, 2, [&](index_t c0, index_t c1) {
    for (index_t c = c0; c < c1; ++c) {
      if (a.training) {
        // Two passes (mean, then squared deviations) in double: no cancellation for large means.
        // Eight independent accumulators let the compiler vectorize the sums (one accumulator
        // is a chain of dependent additions, several times slower).
        const double m = detail::sum_by_lanes(x, c, N, C, S, [](T v) { return double(v); }) / count;
        const double v = detail::sum_by_lanes(x, c, N, C, S, [m](T v) {
                           const double d = double(v) - m;
                           return d * d;
                         }) / count;
        mean[c] = T(m);
        var[c] = T(v);
        invstd[c] = T(1.0 / std::sqrt(v + a.eps));
      }
      const T scale = invstd[c] * gamma[c];
      const T shift = beta[c] - mean[c] * scale;
      for (index_t n = 0; n < N; ++n) {
        const T* p = x + (n * C + c) * S;
        T* q = y + (n * C + c) * S;
        if (a.relu) {
          for (index_t i = 0; i < S; ++i) {
            const T v = p[i] * scale + shift;
            q[i] = v > T(0) ? v : T(0);  // relu's scalar rule (0 for NaN)
          }
        } else {
          for (index_t i = 0; i < S; ++i) q[i] = p[i] * scale + shift;
        }
      }
    }
  });
}

template <>
struct has_batch_norm_fold<cpu> : std::true_type {};

/// has_batch_norm_fold's statistics (op_args.hpp): scale[o] = gamma[o] / sqrt(var[o] + eps) and
/// shift[o] = beta[o] - mean[o] * scale[o] (+ conv_bias[o] * scale[o]), all [O] and contiguous;
/// conv_bias may be null. The convolution then takes the weights with `scale` (conv2d_forward's
/// weight_scale), so no scaled copy of them is made per call.
template <class T>
void batch_norm_scale_shift(cpu, index_t O, const T* gamma, const T* beta, const T* mean, const T* var, double eps,
                            const T* conv_bias, T* scale, T* shift) {
  for (index_t o = 0; o < O; ++o) {
    const T s = gamma[o] * (T(1) / std::sqrt(var[o] + T(eps)));
    const T affine = beta[o] - mean[o] * s;
    scale[o] = s;
    shift[o] = conv_bias ? conv_bias[o] * s + affine : affine;
  }
}

}  // namespace tessera
