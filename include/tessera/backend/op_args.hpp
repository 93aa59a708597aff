// The arguments of the backend contract's optional entries (backend/concept.hpp): convolution and
// pooling geometry, batch-norm arguments, the embedding index check. Backend-neutral: the
// expression nodes that call the entries and every backend that implements them share these.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "tessera/core/error.hpp"
#include "tessera/core/shape.hpp"

namespace tessera {

/// Geometry of a 2-D convolution or pooling window.
struct Conv2dGeometry {
  index_t stride_h = 1, stride_w = 1;
  index_t pad_h = 0, pad_w = 0;
  index_t dilation_h = 1, dilation_w = 1;
  index_t groups = 1;

  /// Output extent along one axis, or a shape_error when the window does not fit.
  static index_t out_extent(index_t in, index_t k, index_t stride, index_t pad, index_t dil, const char* op) {
    const index_t span = dil * (k - 1) + 1;
    if (in + 2 * pad < span) {
      throw shape_error(std::string(op) + ": window of " + std::to_string(span) + " (kernel " + std::to_string(k) +
                        ", dilation " + std::to_string(dil) + ") does not fit an input of " + std::to_string(in) +
                        " with padding " + std::to_string(pad));
    }
    return (in + 2 * pad - span) / stride + 1;
  }
};

/// A pooling that a convolution applies to its output as it writes it (conv2d_pool_forward): max
/// (or average) over kh x kw windows placed by `geometry` (stride, padding, dilation).
struct PoolEpilogue {
  bool max = true;
  index_t kh = 1, kw = 1;
  Conv2dGeometry geometry;
};

/// What batch_norm_forward computes besides y.
struct BatchNormForwardArgs {
  index_t batch = 0, channels = 0, inner = 0;  ///< x viewed as [batch, channels, inner]
  double eps = 1e-5;
  bool training = true;  ///< true: statistics of the batch; false: the given mean and invstd
  bool relu = false;     ///< then y = max(y, 0); only for backends with has_relu_epilogue

  /// The arguments for an input of shape s = [N, C, ...] (every axis after C is `inner`).
  template <std::size_t R>
  static BatchNormForwardArgs of(const Shape<R>& s, double eps, bool training) {
    BatchNormForwardArgs a;
    a.batch = s[0];
    a.channels = s[1];
    a.inner = 1;
    for (std::size_t i = 2; i < R; ++i) a.inner *= s[i];
    a.eps = eps;
    a.training = training;
    return a;
  }
};

/// Whether backend B has `batch_norm_backward` (training mode: dx, dgamma and dbeta in one call,
/// e.g. cuDNN's). Without it batch norm's backward is the closed-form expression of
/// expr/normalization.hpp, which the CPU evaluates in three fused passes.
template <class B>
struct has_batch_norm_backward : std::false_type {};

/// Whether backend B applies relu while it writes a convolution's or a batch norm's output:
/// conv2d_forward takes a trailing `relu` flag and batch_norm_forward honours
/// BatchNormForwardArgs::relu. Without it the nodes fused with relu (expr/conv.hpp,
/// expr/normalization.hpp) apply relu in a pass of their own.
template <class B>
struct has_relu_epilogue : std::false_type {};

/// Whether backend B has `conv2d_pool_forward(B, x, w, y, conv_shape, geometry, bias, relu,
/// PoolEpilogue)`: y = pool(relu(conv2d(x, w) + bias)) without storing the convolution's whole
/// output (inference; expr/conv.hpp's Pool2d asks for it). Such a backend also has
/// has_relu_epilogue. Without it the convolution's output is stored, then pooled.
template <class B>
struct has_conv_pool_epilogue : std::false_type {};

/// Whether an evaluation-mode batch norm folds into the convolution before it on backend B:
/// `batch_norm_scale_shift(B, O, gamma, beta, mean, var, eps, conv_bias, scale, shift)` gives
/// scale[o] = gamma[o] / sqrt(var[o] + eps) and shift[o] = beta[o] - mean[o] * scale[o]
/// (+ conv_bias[o] * scale[o] when conv_bias is not null), and conv2d_forward and
/// conv2d_pool_forward take a last argument `weight_scale` (null: none): the convolution of x with
/// w[o] * weight_scale[o], those products rounded as a scaled copy of w would be. Without it
/// expr/normalization.hpp makes the scaled weights with expressions (a few small passes per call).
template <class B>
struct has_batch_norm_fold : std::false_type {};

namespace detail {
/// Throws index_error naming an embedding index outside [0, rows) and its position.
inline void check_embedding_index(std::int64_t id, index_t rows, index_t position) {
  if (id < 0 || id >= rows) {
    throw index_error("embedding: index " + std::to_string(id) + " at position " + std::to_string(position) +
                      " is out of range for a table of " + std::to_string(rows) + " rows");
  }
}
}  // namespace detail

}  // namespace tessera
