// softmax and log_softmax along one axis (materialization points), computed stably.
#pragma once

#include <type_traits>

#include "tessera/core/tensor.hpp"
#include "tessera/expr/assign.hpp"
#include "tessera/expr/cache.hpp"
#include "tessera/expr/evaluator.hpp"
#include "tessera/expr/reduce.hpp"
#include "tessera/expr/shape_ops.hpp"
#include "tessera/expr/unary_ops.hpp"

namespace tessera {

/// exp(x - max) / sum(exp(x - max)) along `axis` (Log: x - max - log(sum(...))).
template <class A, bool Log>
struct Softmax : detail::MaterializedNode<Softmax<A, Log>, value_type_t<A>, rank_v<A>, backend_t<A>> {
  using value_type = value_type_t<A>;
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = rank_v<A>;
  static constexpr const char* name = Log ? "log_softmax" : "softmax";
  static_assert(rank >= 1, "tessera::softmax: a rank-0 expression has no axis");
  static_assert(std::is_floating_point_v<value_type>, "tessera::softmax needs a floating-point expression");

  A arg;
  std::size_t axis;
  Softmax(A a, index_t ax) : arg(std::move(a)), axis(normalize_axis(ax, rank, name)) {}

  Shape<rank> shape() const { return arg.shape(); }
  void evaluate_into(Tensor<value_type, rank, backend_type>& out) const {
    Tensor<value_type, rank, backend_type> in;
    if constexpr (detail::is_tensor_v<A>) {
      in = arg.contiguous();
    } else {
      in = eval(arg);
    }
    softmax_into(backend_type{}, out, in, axis, Log);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(arg, f);
  }
  auto inputs() const { return std::tie(arg); }
  /// softmax: y (G - sum(G y)); log_softmax: G - exp(y) sum(G), sums along the axis.
  template <class G>
  auto input_adjoints(const G& g) const {
    const auto gg = sum_to(g, arg.shape());
    const auto ax = static_cast<index_t>(axis);
    if constexpr (Log) {
      return std::make_tuple(gg - exp(*this) * sum(gg, ax, keepdims));
    } else {
      return std::make_tuple(*this * (gg - sum(gg * *this, ax, keepdims)));
    }
  }
};

/// Softmax along `axis` (default: last).
template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>
Softmax<A, false> softmax(const A& a, index_t axis = -1) {
  return Softmax<A, false>(a, axis);
}
/// log(softmax(x)) along `axis` without the intermediate overflow.
template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>
Softmax<A, true> log_softmax(const A& a, index_t axis = -1) {
  return Softmax<A, true>(a, axis);
}

}  // namespace tessera
