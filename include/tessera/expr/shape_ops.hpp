// Lazy shape nodes on expressions: reshape, transpose (last two axes) and sum_to (reduce a
// broadcast value back to a shape). Autodiff builds its backward expressions from them; users can
// call transpose(e) / reshape(e, shape) on any expression (tensors have the view methods too).
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "tessera/core/tensor.hpp"
#include "tessera/expr/assign.hpp"
#include "tessera/expr/cache.hpp"
#include "tessera/expr/evaluator.hpp"
#include "tessera/expr/reduce.hpp"

namespace tessera {

template <class A, class B>
struct MatMul;

namespace detail {
/// Whether E is a product of two matrices (no batch axes, no vectors).
template <class E>
struct is_matmul_2d : std::false_type {};
template <class A, class B>
struct is_matmul_2d<MatMul<A, B>> : std::bool_constant<rank_v<A> == 2 && rank_v<B> == 2> {};
}  // namespace detail

namespace detail {
/// The value of any expression as a tensor, for reading only: tensors as they are, materialization
/// nodes from their (cached or aliased) buffer, elementwise trees evaluated into a new tensor.
template <class E>
auto value_of(const E& e) {
  if constexpr (is_tensor_v<E>) {
    return e;
  } else if constexpr (has_inner_expression<E>::value) {
    return e.value_of_inner();
  } else if constexpr (is_materialized_v<E>) {
    return read_only_value(e);
  } else {
    return eval(e);
  }
}

/// Leaf evaluator over a tensor produced on demand (views of evaluated expressions).
template <class T, std::size_t R, class B, std::size_t RO>
LeafEval<T> view_evaluator(const Tensor<T, R, B>& v, const Shape<RO>& out, const IterPlan& plan) {
  LeafEval<T> ev;
  ev.data = v.data();
  ev.rank = plan.rank;
  ev.keep = v.storage();
  plan.map(broadcast_strides(v.shape(), v.strides(), out), ev.strides);
  return ev;
}
}  // namespace detail

template <class A, std::size_t R>
struct SumTo;
template <class A, std::size_t R>
struct BroadcastTo;

namespace detail {
/// Throws shape_error unless `from` and `to` have as many elements.
template <std::size_t RA, std::size_t R>
TESSERA_NOINLINE void check_reshape(const Shape<RA>& from, const Shape<R>& to) {
  if (numel(to) != numel(from)) {
    throw shape_error("reshape: cannot reshape " + shape_to_string(from) + " into " + shape_to_string(to));
  }
}
/// Throws shape_error unless `in` and `target` are mutually broadcast-compatible, right-aligned.
template <std::size_t RA, std::size_t R>
TESSERA_NOINLINE void check_sum_to(const Shape<RA>& in, const Shape<R>& target) {
  for (std::size_t k = 0; k < RA && k < R; ++k) {
    const index_t e = in[RA - 1 - k], t = target[R - 1 - k];
    if (e != t && e != 1 && t != 1) {
      throw shape_error("sum_to: cannot reduce " + shape_to_string(in) + " to " + shape_to_string(target));
    }
  }
}
}  // namespace detail

/// A's elements read with a new shape (same count); free when A is a contiguous tensor.
template <class A, std::size_t R>
struct Reshaped : ExprBase<Reshaped<A, R>> {
  using value_type = value_type_t<A>;
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = R;
  static constexpr const char* name = "reshape";
  A arg;
  Shape<R> target;
  Reshaped(A a, const Shape<R>& s) : arg(std::move(a)), target(s) { detail::check_reshape(arg.shape(), target); }
  const Shape<R>& shape() const { return target; }
  Tensor<value_type, R, backend_type> view() const { return detail::value_of(arg).contiguous().reshape(target); }
  template <std::size_t RO, class F>
  void visit_leaves(const Shape<RO>& out, F&& f) const {
    f(static_cast<const void*>(nullptr), broadcast_strides(target, contiguous_strides(target), out));
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(arg, f);
  }
  template <std::size_t RO>
  detail::LeafEval<value_type> evaluator(const Shape<RO>& out, const detail::IterPlan& plan) const {
    return detail::view_evaluator(view(), out, plan);
  }
  Tensor<value_type, R, backend_type> value_of_inner() const { return view(); }
  auto inputs() const { return std::tie(arg); }
  template <class G>
  auto input_adjoints(const G& g) const {
    return std::make_tuple(Reshaped<SumTo<G, R>, rank_v<A>>(SumTo<G, R>(g, target), arg.shape()));
  }
};

namespace detail {
/// What a view node of an expression's value shares (Sliced, SwapAxes, SwapLastAxes): Self provides `view()`
/// (the value of A seen through the view) and `computed_strides()` (the view's strides over A's
/// shape when A is computed into a new contiguous buffer).
template <class Self, class A>
struct ViewOfValue : ExprBase<Self> {
  using value_type = value_type_t<A>;
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = rank_v<A>;
  A arg;

  explicit ViewOfValue(A a) : arg(std::move(a)) {}
  template <std::size_t RO, class F>
  void visit_leaves(const Shape<RO>& out, F&& f) const {
    if constexpr (is_tensor_v<A> || has_inner_expression<A>::value) {
      const auto v = self().view();  // strides depend on A's layout
      f(static_cast<const void*>(v.storage_id()), broadcast_strides(v.shape(), v.strides(), out));
    } else {
      // A is computed into a new contiguous buffer (a materialization node's, or a temporary):
      // its strides follow from its shape, and asking for the value here would compute it twice.
      f(static_cast<const void*>(nullptr), broadcast_strides(self().shape(), self().computed_strides(), out));
    }
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(arg, f);
  }
  template <std::size_t RO>
  LeafEval<value_type> evaluator(const Shape<RO>& out, const IterPlan& plan) const {
    return view_evaluator(self().view(), out, plan);
  }
  Tensor<value_type, rank, backend_type> value_of_inner() const { return self().view(); }
  auto inputs() const { return std::tie(arg); }

 private:
  const Self& self() const { return static_cast<const Self&>(*this); }
};
}  // namespace detail

/// A with its last two axes swapped (the matrix transpose of every matrix in a batch): a view of
/// A's value (no copy when A is a tensor).
template <class A>
struct SwapLastAxes : detail::ViewOfValue<SwapLastAxes<A>, A> {
  using value_type = value_type_t<A>;
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = rank_v<A>;
  static constexpr const char* name = "transpose";
  static_assert(rank >= 2, "tessera::transpose: needs an expression of rank 2 or more");
  explicit SwapLastAxes(A a) : detail::ViewOfValue<SwapLastAxes<A>, A>(std::move(a)) {}
  Shape<rank> shape() const {
    auto s = this->arg.shape();
    std::swap(s[rank - 1], s[rank - 2]);
    return s;
  }
  Tensor<value_type, rank, backend_type> view() const { return detail::value_of(this->arg).transpose(-1, -2); }
  Shape<rank> computed_strides() const {
    auto strides = contiguous_strides(this->arg.shape());
    std::swap(strides[rank - 1], strides[rank - 2]);
    return strides;
  }
  template <class G>
  auto input_adjoints(const G& g) const {
    if constexpr (detail::is_matmul_2d<G>::value && rank == 2) {
      // (A B)^T = B^T A^T: compute the product transposed rather than transposing its result
      // (y = x W^T gives dW = G^T x straight from GEMM, without a strided copy).
      if (g.shape() != shape()) throw shape_error("transpose: internal error: adjoint of the wrong shape");
      return std::make_tuple(matmul(transpose(g.rhs), transpose(g.lhs)));
    } else {
      return std::make_tuple(SwapLastAxes<SumTo<G, rank>>(SumTo<G, rank>(g, shape())));
    }
  }
};

/// Sums a value that was broadcast back to `target` (the adjoint of broadcasting): axes where the
/// target has extent 1 (or that it lacks) are summed; size-1 axes of A are broadcast.
template <class A, std::size_t R>
struct SumTo : detail::MaterializedNode<SumTo<A, R>, value_type_t<A>, R, backend_t<A>> {
  using value_type = value_type_t<A>;
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = R;
  static constexpr std::size_t input_rank = rank_v<A>;
  static constexpr const char* name = "sum_to";
  A arg;
  Shape<R> target;
  SumTo(A a, const Shape<R>& s) : arg(std::move(a)), target(s) { detail::check_sum_to(arg.shape(), target); }
  const Shape<R>& shape() const { return target; }
  /// Which input axes are summed.
  std::array<bool, input_rank> reduced_axes(bool& any) const {
    std::array<bool, input_rank> mask{};
    const auto in = arg.shape();
    any = false;
    for (std::size_t i = 0; i < input_rank; ++i) {
      const bool lead = i + R < input_rank;
      const index_t t = lead ? 1 : target[i + R - input_rank];
      mask[i] = (lead || t == 1) && in[i] != 1;
      any = any || mask[i];
    }
    return mask;
  }
  /// A tensor (or a materialized node's buffer) already of the target shape is its own sum: no
  /// copy, no pass (the adjoint of a full reduction is such a rank-0 tensor; a matmul's adjoint of
  /// a matmul operand is such a node).
  std::optional<Tensor<value_type, R, backend_type>> alias() const {
    if constexpr (input_rank == R && (detail::is_tensor_v<A> || detail::is_materialized_v<A>)) {
      if (arg.shape() == target) return detail::value_of(arg);  // a materialized node: its buffer
    }
    return std::nullopt;
  }
  void evaluate_into(Tensor<value_type, R, backend_type>& out) const {
    bool any = false;
    const auto mask = reduced_axes(any);
    if (!any) {
      if constexpr (input_rank <= R) {
        out.assign(arg);
      } else {
        out.assign(Reshaped<A, R>(arg, target_like_input()));
      }
      return;
    }
    // A sum of everything (the gradient of a scalar parameter) is one fused pass over the input.
    if constexpr (R == 0) {
      reduce_into(backend_type{}, out, arg, mask, ops::SumReducer{}, value_type(1));
      return;
    }
    // Otherwise evaluate the input first and reduce the tensor: one more buffer, but the reduction
    // kernel is shared by every sum_to of this tensor type instead of compiled again for each
    // adjoint expression (autodiff creates many; this keeps compile times down).
    const Tensor<value_type, input_rank, backend_type> value = arg;
    const Tensor<value_type, input_rank, backend_type> summed =
        detail::make_reduce<ops::SumReducer, input_rank>(value, mask, "sum_to", false);
    if constexpr (input_rank <= R) {
      out.assign(summed);
    } else {
      out.assign(summed.reshape(target_like_input()));
    }
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(arg, f);
  }
  auto inputs() const { return std::tie(arg); }
  /// The adjoint of a sum is the adjoint broadcast back over the summed axes. (It must have A's full
  /// shape: a smaller adjoint would lose how many elements each value was summed over.)
  template <class G>
  auto input_adjoints(const G& g) const {
    return std::make_tuple(BroadcastTo<G, input_rank>(g, arg.shape()));
  }

 private:
  /// The last R extents of the (reduced) input: its shape with the leading 1s dropped.
  Shape<R> target_like_input() const {
    Shape<R> s{};
    const auto in = arg.shape();
    for (std::size_t i = 0; i < R; ++i) {
      const index_t e = in[input_rank - R + i];
      s[i] = (target[i] == 1) ? 1 : e;
    }
    return s;
  }
};

/// A read as if broadcast to `target` (no copy: broadcast operands are read with stride 0).
/// Autodiff uses it to give an adjoint the full shape of the value it belongs to.
template <class A, std::size_t R>
struct BroadcastTo : ExprBase<BroadcastTo<A, R>> {
  using value_type = value_type_t<A>;
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = R;
  static constexpr const char* name = "broadcast_to";
  static_assert(rank_v<A> <= R, "tessera::broadcast_to: the target rank must not be smaller than the expression's");
  A arg;
  Shape<R> target;
  BroadcastTo(A a, const Shape<R>& s) : arg(std::move(a)), target(s) {
    if (broadcast_shapes(arg.shape(), target, "broadcast_to") != target) {
      throw shape_error("broadcast_to: cannot broadcast " + shape_to_string(arg.shape()) + " to " + shape_to_string(target));
    }
  }
  const Shape<R>& shape() const { return target; }
  template <std::size_t RO, class F>
  void visit_leaves(const Shape<RO>& out, F&& f) const {
    detail::visit_leaves(arg, out, f);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(arg, f);
  }
  template <std::size_t RO>
  auto evaluator(const Shape<RO>& out, const detail::IterPlan& plan) const {
    return detail::make_evaluator(arg, out, plan);
  }
  auto inputs() const { return std::tie(arg); }
  template <class G>
  auto input_adjoints(const G& g) const {
    return std::make_tuple(SumTo<G, rank_v<A>>(g, arg.shape()));
  }
};

/// Lazy broadcast of any expression to a larger shape.
template <class A, std::size_t R, std::enable_if_t<is_expr_v<A>, int>>
BroadcastTo<A, R> broadcast_to(const A& a, const Shape<R>& target) {
  return BroadcastTo<A, R>(a, target);
}

/// Lazy reshape of any expression (one extent may be -1).
template <class A, std::size_t R, std::enable_if_t<is_expr_v<A>, int>>
auto reshape(const A& a, Shape<R> s) {
  index_t known = 1;
  int infer = -1;
  for (std::size_t i = 0; i < R; ++i) {
    if (s[i] == -1) {
      infer = static_cast<int>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0 && known != 0) s[static_cast<std::size_t>(infer)] = numel(a.shape()) / known;
  return Reshaped<A, R>(a, s);
}
template <class A, std::size_t R, std::enable_if_t<is_expr_v<A>, int> = 0>
Reshaped<A, R> reshape(const A& a, const index_t (&s)[R]) {
  Shape<R> sh{};
  for (std::size_t i = 0; i < R; ++i) sh[i] = s[i];
  return reshape(a, sh);
}

/// Lazy transpose of the last two axes of any expression of rank >= 2.
template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>
SwapLastAxes<A> transpose(const A& a) {
  return SwapLastAxes<A>(a);
}

/// Lazy sum of a broadcast value back to `target` (see SumTo).
template <class A, std::size_t R, std::enable_if_t<is_expr_v<A>, int>>
auto sum_to(const A& a, const Shape<R>& target) {
  return SumTo<A, R>(a, target);
}

namespace detail {
template <class E>
struct is_broadcast_or_reshape : std::false_type {};
template <class A, std::size_t R>
struct is_broadcast_or_reshape<BroadcastTo<A, R>> : std::true_type {};
template <class A, std::size_t R>
struct is_broadcast_or_reshape<Reshaped<A, R>> : std::true_type {};
template <class E>
struct is_unary : std::false_type {};
template <class Op, class A>
struct is_unary<Unary<Op, A>> : std::true_type {};
}  // namespace detail

namespace detail {
// is_uniform (see evaluator.hpp): broadcasts and reshapes of uniform expressions are uniform.
template <class A, std::size_t R>
struct is_uniform<BroadcastTo<A, R>> : is_uniform<A> {};
template <class A, std::size_t R>
struct is_uniform<Reshaped<A, R>> : is_uniform<A> {};
template <class E>
inline constexpr bool is_uniform_v = is_uniform<std::decay_t<E>>::value;

/// The one value of a uniform expression (see is_uniform), as a rank-0 expression.
template <class E>
auto uniform_value(const E& e) {
  static_assert(is_uniform_v<E>, "uniform_value: the expression's elements may differ");
  if constexpr (rank_v<E> == 0) {
    return e;
  } else if constexpr (is_broadcast_or_reshape<E>::value) {
    return uniform_value(e.arg);
  } else if constexpr (is_unary<E>::value) {
    using A = decltype(uniform_value(e.arg));
    return Unary<decltype(e.op), A>(e.op, uniform_value(e.arg));
  } else {
    using A = decltype(uniform_value(e.lhs));
    using B = decltype(uniform_value(e.rhs));
    return Binary<decltype(e.op), A, B>(e.op, uniform_value(e.lhs), uniform_value(e.rhs));
  }
}
}  // namespace detail

}  // namespace tessera
