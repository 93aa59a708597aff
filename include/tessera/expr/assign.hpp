// Evaluation entry points: expression -> new tensor, expression -> existing tensor (in place),
// with the aliasing check that keeps `x = transpose(x)`-style assignments correct.
#pragma once

#include <algorithm>
#include <type_traits>

#include "tessera/core/numerics.hpp"
#include "tessera/core/print.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/evaluator.hpp"

namespace tessera {

namespace detail {

/// A distinct address for each element type (a type's identity without RTTI).
template <class T>
inline constexpr char element_tag = 0;

/// The check of may_alias for every tensor an expression reads. One named type for every
/// expression and destination, so that the walk over a node type (for_each_tensor) is compiled
/// once: with a lambda it was compiled again for every expression assigned, a third of a training
/// program's functions.
struct AliasHazard {
  const void* storage;
  const void* data;
  const char* element;
  std::size_t rank;
  const index_t* shape;
  const index_t* strides;
  bool materialized;  // the destination is written while any tensor in the expression may be read
  bool found = false;

  template <class TT>
  void operator()(const TT& t) {
    if (found || t.storage_id() != storage) return;
    // Elementwise leaves are safe when they read exactly the element being written.
    found = materialized || TT::rank != rank || &element_tag<typename TT::value_type> != element ||
            static_cast<const void*>(t.data()) != data || !std::equal(t.shape().begin(), t.shape().end(), shape) ||
            !std::equal(t.strides().begin(), t.strides().end(), strides);
  }
};

/// True when evaluating `expr` into `dst` could read an element after writing it.
template <class T, std::size_t R, class B, class E>
bool may_alias(const Tensor<T, R, B>& dst, const E& expr) {
  if (!dst.storage_id()) return false;
  AliasHazard check{dst.storage_id(), dst.data(),          &element_tag<T>,     R,
                    dst.shape().data(), dst.strides().data(), is_materialized_v<E>};
  for_each_tensor(expr, check);
  return check.found;
}

template <class T, std::size_t R, class B, class E>
Tensor<T, R, B> evaluate_expression(const E& expr) {
  if constexpr (is_materialized_v<E>) {
    return materialize(expr);
  } else {
    auto out = Tensor<T, R, B>::uninitialized(expr.shape());
    elementwise_assign(B{}, out, expr);
    check_numerics_hook(out, op_name(expr));
    return out;
  }
}

/// The first axis along which several of dst's elements share one memory location (extent > 1,
/// stride 0: a broadcast_to view), or -1. The views tessera makes (slice, permute, select, reshape
/// of a contiguous tensor) nest their strides, so a zero stride is the only way to overlap.
template <class T, std::size_t R, class B>
int shared_memory_axis(const Tensor<T, R, B>& dst) noexcept {
  for (std::size_t i = 0; i < R; ++i) {
    if (dst.shape()[i] > 1 && dst.strides()[i] == 0) return static_cast<int>(i);
  }
  return -1;
}

/// Throws unless a value of shape `value` can be written into `dst` (broadcast to its shape, and
/// no two of dst's elements sharing memory). Out of line: every assignment's instantiation calls it.
template <class T, std::size_t R, class B, std::size_t RV>
TESSERA_NOINLINE void check_assignable(const Tensor<T, R, B>& dst, const Shape<RV>& value) {
  const auto target = broadcast_shapes(dst.shape(), value, "assign");
  if (target != dst.shape()) {
    throw shape_error("assign: cannot write a value of shape " + shape_to_string(value) + " into a tensor of shape " +
                      shape_to_string(dst.shape()));
  }
  // Writing elementwise into such a view would write each shared location once per element that
  // maps to it (`b += 1` would add the count of repeats). PyTorch raises here too.
  if (const int axis = shared_memory_axis(dst); axis >= 0 && dst.size() > 0) {
    throw value_error("assign: cannot write into a tensor of shape " + shape_to_string(dst.shape()) +
                      " whose elements share memory (axis " + std::to_string(axis) +
                      " has stride 0, as in a broadcast_to view); write into a clone() of it, or into "
                      "the tensor it was broadcast from");
  }
}

template <class T, std::size_t R, class B, class E>
void assign_expression(Tensor<T, R, B>& dst, const E& expr) {
  static_assert(rank_v<E> <= R, "tessera: cannot assign an expression of higher rank");
  check_assignable(dst, expr.shape());
  if (may_alias(dst, expr)) {
    const auto tmp = evaluate_expression<T, rank_v<E>, B>(expr);
    elementwise_assign(B{}, dst, tmp);
    return;
  }
  if constexpr (is_materialized_v<E> && rank_v<E> == R) {
    if (dst.is_contiguous() && dst.shape() == expr.shape() && active_cache_epoch() == 0) {
      expr.evaluate_into(dst);
      check_numerics_hook(dst, op_name(expr));
      return;
    }
  }
  elementwise_assign(B{}, dst, expr);
  check_numerics_hook(dst, op_name(expr));
}

}  // namespace detail

template <class T, std::size_t R, class B>
Tensor<T, R, B> Tensor<T, R, B>::clone() const {
  return detail::evaluate_expression<T, R, B>(*this);
}

template <class T, std::size_t R, class B>
Tensor<T, R, B>& Tensor<T, R, B>::fill(T value) {
  detail::assign_expression(*this, Scalar<T>(value));
  return *this;
}

#define TESSERA_COMPOUND_ASSIGN(sym, op)                    \
  template <class T, std::size_t R, class B>                \
  template <class E>                                        \
  Tensor<T, R, B>& Tensor<T, R, B>::operator sym(const E& rhs) { \
    detail::assign_expression(*this, *this op rhs);         \
    return *this;                                           \
  }
TESSERA_COMPOUND_ASSIGN(+=, +)
TESSERA_COMPOUND_ASSIGN(-=, -)
TESSERA_COMPOUND_ASSIGN(*=, *)
TESSERA_COMPOUND_ASSIGN(/=, /)
#undef TESSERA_COMPOUND_ASSIGN

/// Evaluates an expression into a new tensor of its own shape and type.
template <class E, std::enable_if_t<is_expr_v<E>, int> = 0>
Tensor<value_type_t<E>, rank_v<E>, backend_t<E>> eval(const E& expr) {
  return detail::evaluate_expression<value_type_t<E>, rank_v<E>, backend_t<E>>(expr);
}

/// Prints an unevaluated expression by evaluating it first.
template <class E, std::enable_if_t<is_expr_v<E> && !detail::is_tensor_v<E>, int> = 0>
std::ostream& operator<<(std::ostream& os, const E& expr) {
  return os << eval(expr);
}

}  // namespace tessera
