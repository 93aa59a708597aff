// Speed rewrites: expressions replaced by equivalent ones that evaluate faster. They are applied
// to the adjoints the reverse sweep produces (autodiff/backward.hpp, reverse_sweep); the sweep
// itself only differentiates.
#pragma once

#include <type_traits>
#include <utility>

#include "tessera/core/expr_base.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/elementwise.hpp"

namespace tessera::detail {

/// Whether Binary<Op, A, B> divides a tensor by one value (`(x - mu) / sigma`).
template <class Op, class A, class B>
inline constexpr bool divides_by_one_value_v = std::is_same_v<Op, ops::Div> && rank_v<A> != 0 && rank_v<B> == 0 &&
                                               std::is_floating_point_v<value_type_t<B>>;

/// Whether the elementwise part of E (below its root, down to the first non-elementwise nodes)
/// contains such a division.
template <class E>
struct has_division_by_one_value : std::false_type {};
template <class Op, class A>
struct has_division_by_one_value<Unary<Op, A>> : has_division_by_one_value<A> {};
template <class Op, class A, class B>
struct has_division_by_one_value<Binary<Op, A, B>>
    : std::bool_constant<divides_by_one_value_v<Op, A, B> || has_division_by_one_value<A>::value ||
                         has_division_by_one_value<B>::value> {};
template <class C, class A, class B>
struct has_division_by_one_value<Where<C, A, B>>
    : std::bool_constant<has_division_by_one_value<A>::value || has_division_by_one_value<B>::value> {};
template <class To, class A>
struct has_division_by_one_value<Cast<To, A>> : has_division_by_one_value<A> {};

/// E with every elementwise `a / b` (rank-0 b) rewritten as `a * (1 / b)`. Applied to every
/// adjoint, so to the forward values adjoints recompute and to the rules' own divisions (log's is
/// g / x): each backward pass then multiplies where the forward divided, and `1 / b` is computed
/// once per pass (a rank-0 subexpression, hoisted by make_evaluator). A division costs several
/// multiplications. A recomputed value may differ from the forward one by an ulp; the function's
/// value itself is never computed from the rewritten expression. Other nodes are kept as they are
/// (copies share their forward buffers).
template <class E>
E with_reciprocals(const E& e) {
  return e;
}
template <class Op, class A>
auto with_reciprocals(const Unary<Op, A>& e);
template <class Op, class A, class B>
auto with_reciprocals(const Binary<Op, A, B>& e);
template <class C, class A, class B>
auto with_reciprocals(const Where<C, A, B>& e);
template <class To, class A>
auto with_reciprocals(const Cast<To, A>& e);

// Each overload returns its node unchanged (instantiating nothing below it) when the node holds
// no such division.
template <class Op, class A>
auto with_reciprocals(const Unary<Op, A>& e) {
  if constexpr (!has_division_by_one_value<Unary<Op, A>>::value) {
    return e;
  } else {
    auto a = with_reciprocals(e.arg);
    return Unary<Op, decltype(a)>(e.op, std::move(a));
  }
}
template <class Op, class A, class B>
auto with_reciprocals(const Binary<Op, A, B>& e) {
  if constexpr (!has_division_by_one_value<Binary<Op, A, B>>::value) {
    return e;
  } else {
    auto a = with_reciprocals(e.lhs);
    auto b = with_reciprocals(e.rhs);
    if constexpr (divides_by_one_value_v<Op, A, B>) {
      using T = value_type_t<B>;
      return a * (Scalar<T>(T(1)) / b);
    } else {
      return Binary<Op, decltype(a), decltype(b)>(e.op, std::move(a), std::move(b));
    }
  }
}
template <class C, class A, class B>
auto with_reciprocals(const Where<C, A, B>& e) {
  if constexpr (!has_division_by_one_value<Where<C, A, B>>::value) {
    return e;
  } else {
    auto a = with_reciprocals(e.if_true);
    auto b = with_reciprocals(e.if_false);
    return Where<C, decltype(a), decltype(b)>(e.cond, std::move(a), std::move(b));
  }
}
template <class To, class A>
auto with_reciprocals(const Cast<To, A>& e) {
  if constexpr (!has_division_by_one_value<Cast<To, A>>::value) {
    return e;
  } else {
    auto a = with_reciprocals(e.arg);
    return Cast<To, decltype(a)>(std::move(a));
  }
}

}  // namespace tessera::detail
