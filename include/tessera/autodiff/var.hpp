// Var<Level, Index, X>: the leaf that marks argument `Index` of the grad call at nesting `Level`.
// It evaluates as X (a tensor, or for nested grad an outer expression) and lets the reverse sweep
// tell which argument an adjoint belongs to, at compile time.
#pragma once

#include <cstddef>
#include <tuple>
#include <utility>

#include "tessera/core/expr_base.hpp"
#include "tessera/expr/evaluator.hpp"
#include "tessera/expr/shape_ops.hpp"

namespace tessera {

template <int Level, std::size_t Index, class X>
struct Var : ExprBase<Var<Level, Index, X>> {
  using value_type = value_type_t<X>;
  using backend_type = backend_t<X>;
  static constexpr std::size_t rank = rank_v<X>;
  static constexpr int level = Level;
  static constexpr std::size_t index = Index;
  static constexpr const char* name = "var";

  X value;
  explicit Var(X x) : value(std::move(x)) {}

  decltype(auto) shape() const { return value.shape(); }
  template <std::size_t RO, class F>
  void visit_leaves(const Shape<RO>& out, F&& f) const {
    detail::visit_leaves(value, out, f);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(value, f);
  }
  template <std::size_t RO>
  auto evaluator(const Shape<RO>& out, const detail::IterPlan& plan) const {
    return detail::make_evaluator(value, out, plan);
  }
  /// Its value as a tensor (MatMul and the view nodes read operands this way, without copies).
  auto value_of_inner() const { return detail::value_of(value); }
};

namespace detail {
template <class E>
struct is_var : std::false_type {};
template <int L, std::size_t I, class X>
struct is_var<Var<L, I, X>> : std::true_type {};
template <class E>
inline constexpr bool is_var_v = is_var<std::decay_t<E>>::value;
}  // namespace detail

}  // namespace tessera
