// The base every expression derives from (Tensor included), and the traits all layers read.
#pragma once

#include <type_traits>

#include "tessera/core/config.hpp"

namespace tessera {

/// CRTP base of every lazy expression node and of Tensor itself.
/// A Derived type provides: value_type, rank, backend_type, shape(), and (expr layer) an evaluator.
template <class Derived>
struct ExprBase {
  const Derived& derived() const noexcept { return static_cast<const Derived&>(*this); }
};

/// True for tensors and expression nodes.
template <class E>
inline constexpr bool is_expr_v = std::is_base_of_v<ExprBase<std::decay_t<E>>, std::decay_t<E>>;

/// Element type an expression produces.
template <class E>
using value_type_t = typename std::decay_t<E>::value_type;

/// Backend policy an expression runs on.
template <class E>
using backend_t = typename std::decay_t<E>::backend_type;

/// Compile-time rank of an expression.
template <class E>
inline constexpr std::size_t rank_v = std::decay_t<E>::rank;

/// Backend of a scalar constant: combines with any real backend.
struct any_backend {};

namespace detail {
/// The backend two operands share; a readable compile error when they differ.
template <class BA, class BB>
struct common_backend {
  static_assert(std::is_same_v<BA, BB>,
                "tessera: cannot mix tensors of different backends in one expression; "
                "move one of them first with .to<Backend>()");
  using type = BA;
};
template <class B>
struct common_backend<any_backend, B> {
  using type = B;
};
template <class B>
struct common_backend<B, any_backend> {
  using type = B;
};
template <>
struct common_backend<any_backend, any_backend> {
  using type = any_backend;
};
}  // namespace detail

template <class BA, class BB>
using common_backend_t = typename detail::common_backend<BA, BB>::type;

template <class T, std::size_t Rank, class Backend>
class Tensor;

}  // namespace tessera

namespace tessera {
/// The reverse-mode rule of an elementwise op, specialized beside the op's definition:
/// unary ops give input_adjoint(op, x, g); binary ops lhs_adjoint(op, a, b, g) and
/// rhs_adjoint(op, a, b, g). Each returns the input's adjoint as a lazy expression of the
/// output adjoint g and the (lazy) inputs. Ops without a specialization cannot be differentiated.
template <class Op>
struct grad_rule;

namespace detail {
template <class... T>
inline constexpr bool dependent_false_v = false;
}  // namespace detail
}  // namespace tessera
