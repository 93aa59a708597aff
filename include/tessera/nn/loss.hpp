// Losses, as lazy expressions (their gradients come from the ops' rules):
// cross_entropy from logits with integer labels (label smoothing, class weights), nll, mse, l1,
// huber, binary_cross_entropy_with_logits.
//
// Reduction: LossOptions::reduction picks mean (default) or sum; both give a rank-0 expression.
// Pass nn::no_reduction instead of options for the per-element (per-sample) losses.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/elementwise.hpp"
#include "tessera/expr/reduce.hpp"
#include "tessera/expr/softmax.hpp"
#include "tessera/expr/unary_ops.hpp"

namespace tessera::nn {

enum class Reduction { mean, sum };

/// Tag: return the loss of every element (or sample) instead of reducing.
struct NoReduction {};
inline constexpr NoReduction no_reduction{};

struct LossOptions {
  Reduction reduction = Reduction::mean;
};

/// Options of cross_entropy and nll (torch.nn.functional.cross_entropy's, same meaning).
template <class T = float, class B = cpu>
struct CrossEntropyOptions {
  Reduction reduction = Reduction::mean;
  double label_smoothing = 0;             ///< in [0, 1]: the target is (1 - s) one_hot + s / classes
  std::optional<Tensor<T, 1, B>> weight = std::nullopt;  ///< per-class weights; mean divides by the weights' sum
};

namespace detail {

template <class P, class Q>
void check_same_shape(const P& p, const Q& q, const char* loss) {
  static_assert(rank_v<P> == rank_v<Q>,
                "tessera::nn loss: input and target have different ranks (e.g. a [n, 1] output and [n] labels); "
                "reshape one of them, e.g. reshape(target, Shape<2>{n, 1})");
  if constexpr (rank_v<P> == rank_v<Q>) {  // else only the static_assert reports
    if (p.shape() != q.shape()) {
      throw shape_error(std::string(loss) + ": input of shape " + shape_to_string(p.shape()) + " and target of shape " +
                        shape_to_string(q.shape()) + " differ");
    }
  }
}

template <class E>
auto reduce_loss(const E& per_element, Reduction r) {
  using T = value_type_t<E>;
  const index_t n = numel(per_element.shape());
  const T scale = r == Reduction::mean ? (n > 0 ? T(1) / T(n) : T(0)) : T(1);
  return sum(per_element) * scale;
}

/// The [N, C] coefficient matrix A with loss_i = -sum_c A_ic logp_ic, and the mean's denominator.
template <class T, class B, class L>
std::pair<Tensor<T, 2, B>, T> class_coefficients(const Shape<2>& logits_shape, const Tensor<L, 1, B>& labels,
                                                 const CrossEntropyOptions<T, B>& o, const char* loss) {
  static_assert(std::is_integral_v<L>, "tessera::nn: labels must be an integer tensor (class numbers)");
  const index_t n = logits_shape[0], classes = logits_shape[1];
  if (labels.shape()[0] != n) {
    throw shape_error(std::string(loss) + ": " + std::to_string(labels.shape()[0]) + " labels for " + std::to_string(n) +
                      " rows of scores of shape " + shape_to_string(logits_shape));
  }
  if (!(o.label_smoothing >= 0 && o.label_smoothing <= 1)) {
    throw value_error(std::string(loss) + ": label_smoothing must be in [0, 1], got " + std::to_string(o.label_smoothing));
  }
  if (o.weight && o.weight->shape()[0] != classes) {
    throw shape_error(std::string(loss) + ": " + std::to_string(o.weight->shape()[0]) + " class weights for " +
                      std::to_string(classes) + " classes");
  }
  const T s = T(o.label_smoothing);
  const T off = classes > 0 ? s / T(classes) : T(0);
  // Built on the host (labels are checked there); on a device backend the labels and weights are
  // copied over first and the coefficients copied back: [N, C] values, small beside the logits.
  const auto host_labels = labels.template to<cpu>();
  Tensor<T, 1, cpu> host_weight;
  if (o.weight) host_weight = o.weight->template to<cpu>();
  auto a = Tensor<T, 2, cpu>::uninitialized(logits_shape);
  T denominator = 0;
  for (index_t i = 0; i < n; ++i) {
    const auto y = static_cast<index_t>(host_labels(i));
    if (y < 0 || y >= classes) {
      throw value_error(std::string(loss) + ": label " + std::to_string(host_labels(i)) + " at position " +
                        std::to_string(i) + " is outside [0, " + std::to_string(classes) + ")");
    }
    for (index_t c = 0; c < classes; ++c) {
      const T w = o.weight ? host_weight(c) : T(1);
      a(i, c) = w * ((c == y ? T(1) - s : T(0)) + off);
    }
    denominator += o.weight ? host_weight(y) : T(1);
  }
  return {a.template to<B>(), denominator};
}

}  // namespace detail

/// Softmax cross-entropy of logits [N, C] against integer labels [N].
template <class X, class L, class T = value_type_t<X>, class B = backend_t<X>>
auto cross_entropy(const X& logits, const Tensor<L, 1, B>& labels, const CrossEntropyOptions<T, B>& o = {}) {
  static_assert(rank_v<X> == 2, "tessera::nn::cross_entropy: logits must be [batch, classes]");
  const auto [a, denominator] = detail::class_coefficients(logits.shape(), labels, o, "cross_entropy");
  const T scale = o.reduction == Reduction::mean ? (denominator != 0 ? T(-1) / denominator : T(0)) : T(-1);
  return sum(a * log_softmax(logits, -1)) * scale;
}
/// Per-sample cross-entropy, [N].
template <class X, class L, class T = value_type_t<X>, class B = backend_t<X>>
auto cross_entropy(const X& logits, const Tensor<L, 1, B>& labels, NoReduction, const CrossEntropyOptions<T, B>& o = {}) {
  static_assert(rank_v<X> == 2, "tessera::nn::cross_entropy: logits must be [batch, classes]");
  const auto a = detail::class_coefficients(logits.shape(), labels, o, "cross_entropy").first;
  return -sum(a * log_softmax(logits, -1), {1});
}

/// Negative log-likelihood of log-probabilities [N, C] (e.g. log_softmax's output) at integer labels.
template <class X, class L, class T = value_type_t<X>, class B = backend_t<X>>
auto nll(const X& log_probs, const Tensor<L, 1, B>& labels, const CrossEntropyOptions<T, B>& o = {}) {
  static_assert(rank_v<X> == 2, "tessera::nn::nll: log-probabilities must be [batch, classes]");
  const auto [a, denominator] = detail::class_coefficients(log_probs.shape(), labels, o, "nll");
  const T scale = o.reduction == Reduction::mean ? (denominator != 0 ? T(-1) / denominator : T(0)) : T(-1);
  return sum(a * log_probs) * scale;
}

/// Mean (or summed) squared error.
template <class P, class Q>
auto mse(const P& input, const Q& target, LossOptions o = {}) {
  detail::check_same_shape(input, target, "mse");
  return detail::reduce_loss(square(input - target), o.reduction);
}
template <class P, class Q>
auto mse(const P& input, const Q& target, NoReduction) {
  detail::check_same_shape(input, target, "mse");
  return square(input - target);
}

/// Mean (or summed) absolute error.
template <class P, class Q>
auto l1(const P& input, const Q& target, LossOptions o = {}) {
  detail::check_same_shape(input, target, "l1");
  return detail::reduce_loss(abs(input - target), o.reduction);
}
template <class P, class Q>
auto l1(const P& input, const Q& target, NoReduction) {
  detail::check_same_shape(input, target, "l1");
  return abs(input - target);
}

/// Huber: 0.5 d^2 where |d| < delta, delta (|d| - 0.5 delta) elsewhere (torch's HuberLoss).
template <class P, class Q>
auto huber(const P& input, const Q& target, NoReduction, double delta = 1.0) {
  detail::check_same_shape(input, target, "huber");
  if (!(delta > 0)) throw value_error("huber: delta must be positive, got " + std::to_string(delta));
  using T = value_type_t<P>;
  const auto d = input - target;
  const T dl = T(delta);
  return where(abs(d) < dl, T(0.5) * square(d), dl * (abs(d) - T(0.5) * dl));
}
template <class P, class Q>
auto huber(const P& input, const Q& target, double delta = 1.0, LossOptions o = {}) {
  return detail::reduce_loss(huber(input, target, no_reduction, delta), o.reduction);
}

/// Binary cross-entropy of logits x against targets t in [0, 1], computed stably as
/// softplus(x) - x t (its derivative, sigmoid(x) - t, is exact everywhere, also at x = 0).
template <class P, class Q>
auto binary_cross_entropy_with_logits(const P& logits, const Q& target, NoReduction) {
  detail::check_same_shape(logits, target, "binary_cross_entropy_with_logits");
  return softplus(logits) - logits * target;
}
template <class P, class Q>
auto binary_cross_entropy_with_logits(const P& logits, const Q& target, LossOptions o = {}) {
  return detail::reduce_loss(binary_cross_entropy_with_logits(logits, target, no_reduction), o.reduction);
}

}  // namespace tessera::nn
