// The elementwise node types: Scalar constants, Unary<Op, A>, Binary<Op, A, B>, Where and Cast.
// Each op is a small struct (see unary_ops.hpp, binary_ops.hpp) with a scalar call, an optional
// SIMD packet call, and (autodiff) its grad_rule beside them.
#pragma once

#include <type_traits>
#include <utility>

#include "tessera/core/expr_base.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/expr/evaluator.hpp"

namespace tessera {

/// Marks an input that receives no gradient (the condition of where, integer inputs).
struct NoAdjoint {};

/// A scalar constant inside an expression (rank 0, combines with any backend).
template <class T>
struct Scalar : ExprBase<Scalar<T>> {
  using value_type = T;
  using backend_type = any_backend;
  static constexpr std::size_t rank = 0;
  static constexpr const char* name = "scalar";
  T value;
  explicit Scalar(T v) : value(v) {}
  Shape<0> shape() const { return {}; }
  template <std::size_t RO, class F>
  void visit_leaves(const Shape<RO>&, F&&) const {}
  template <class F>
  void for_each_tensor(F&&) const {}
  template <std::size_t RO>
  detail::ConstEval<T> evaluator(const Shape<RO>&, const detail::IterPlan&) const {
    return {value};
  }
};

namespace detail {
/// True for Scalar constants.
template <class E>
struct is_scalar_node : std::false_type {};
template <class T>
struct is_scalar_node<Scalar<T>> : std::true_type {};

/// Whether Op has a SIMD form for element type T (ops opt in with `template <class T> static
/// constexpr bool vectorizable`).
template <class Op, class T, class = void>
struct op_vectorizable : std::false_type {};
template <class Op, class T>
struct op_vectorizable<Op, T, std::void_t<decltype(Op::template vectorizable<T>)>>
    : std::bool_constant<Op::template vectorizable<T>> {};

template <class Op, class A>
struct UnaryEval {
  using arg_type = typename A::value_type;
  using value_type = decltype(std::declval<const Op&>()(std::declval<arg_type>()));
  static constexpr bool vectorizable =
      A::vectorizable && std::is_same_v<value_type, arg_type> && op_vectorizable<Op, arg_type>::value;
  Op op;
  A a;
  void seek(const index_t* idx) { a.seek(idx); }
  TESSERA_ALWAYS_INLINE value_type coeff(index_t j) const { return op(a.coeff(j)); }
  template <class P>
  TESSERA_ALWAYS_INLINE P packet(index_t j) const {
    return op.packet(a.template packet<P>(j));
  }
};

template <class Op, class A, class B>
struct BinaryEval {
  using arg_type = typename A::value_type;
  using value_type =
      decltype(std::declval<const Op&>()(std::declval<arg_type>(), std::declval<typename B::value_type>()));
  static constexpr bool vectorizable = A::vectorizable && B::vectorizable && std::is_same_v<value_type, arg_type> &&
                                       op_vectorizable<Op, arg_type>::value;
  Op op;
  A a;
  B b;
  void seek(const index_t* idx) {
    a.seek(idx);
    b.seek(idx);
  }
  TESSERA_ALWAYS_INLINE value_type coeff(index_t j) const { return op(a.coeff(j), b.coeff(j)); }
  template <class P>
  TESSERA_ALWAYS_INLINE P packet(index_t j) const {
    return op.packet(a.template packet<P>(j), b.template packet<P>(j));
  }
};

/// Whether the condition C is a comparison of two vectorizable evaluators of element type T whose
/// op can select between packets (binary_ops.hpp's comparisons, for floating point).
template <class C, class T, class = void>
struct selects_packets : std::false_type {};
template <class Op, class L, class R, class T>
struct selects_packets<BinaryEval<Op, L, R>, T, std::void_t<decltype(Op::template selectable<T>)>>
    : std::bool_constant<Op::template selectable<T> && L::vectorizable && R::vectorizable &&
                         std::is_same_v<typename L::value_type, T> && std::is_same_v<typename R::value_type, T>> {};

template <class C, class A, class B>
struct WhereEval {
  using value_type = typename A::value_type;
  /// Vectorized as a masked select when the condition compares two vectorizable operands (no
  /// branch per element: a random sign costs a misprediction every other element).
  static constexpr bool vectorizable = A::vectorizable && B::vectorizable &&
                                       std::is_same_v<typename B::value_type, value_type> &&
                                       selects_packets<C, value_type>::value;
  C c;
  A a;
  B b;
  void seek(const index_t* idx) {
    c.seek(idx);
    a.seek(idx);
    b.seek(idx);
  }
  TESSERA_ALWAYS_INLINE value_type coeff(index_t j) const { return c.coeff(j) ? a.coeff(j) : b.coeff(j); }
  template <class P>
  TESSERA_ALWAYS_INLINE P packet(index_t j) const {
    return c.op.template select<P>(c.a.template packet<P>(j), c.b.template packet<P>(j), a.template packet<P>(j),
                                   b.template packet<P>(j));
  }
};

template <class To, class A>
struct CastEval {
  using value_type = To;
  static constexpr bool vectorizable = false;
  A a;
  void seek(const index_t* idx) { a.seek(idx); }
  TESSERA_ALWAYS_INLINE To coeff(index_t j) const { return static_cast<To>(a.coeff(j)); }
};
}  // namespace detail

/// Op applied to every element of A.
template <class Op, class A>
struct Unary : ExprBase<Unary<Op, A>> {
  using arg_value_type = value_type_t<A>;
  using value_type = decltype(std::declval<const Op&>()(std::declval<arg_value_type>()));
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = rank_v<A>;
  static constexpr const char* name = Op::name;

  Op op;
  A arg;
  Unary(Op o, A a) : op(std::move(o)), arg(std::move(a)) {}

  Shape<rank> shape() const { return arg.shape(); }
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
    using AE = decltype(detail::make_evaluator(arg, out, plan));
    return detail::UnaryEval<Op, AE>{op, detail::make_evaluator(arg, out, plan)};
  }
  auto inputs() const { return std::tie(arg); }
  template <class G>
  auto input_adjoints(const G& g) const {
    return std::make_tuple(grad_rule<Op>::input_adjoint(op, arg, g));
  }
};

/// Op applied elementwise to A and B after NumPy broadcasting.
template <class Op, class A, class B>
struct Binary : ExprBase<Binary<Op, A, B>> {
  static_assert(std::is_same_v<value_type_t<A>, value_type_t<B>>,
                "tessera: operands have different element types; convert one with cast<T>(expr)");
  // Computed from A's type alone so that a type mismatch reports only the assertion above.
  using value_type = decltype(std::declval<const Op&>()(std::declval<value_type_t<A>>(), std::declval<value_type_t<A>>()));
  using backend_type = common_backend_t<backend_t<A>, backend_t<B>>;
  static constexpr std::size_t rank = rank_v<A> > rank_v<B> ? rank_v<A> : rank_v<B>;
  static constexpr const char* name = Op::name;

  Op op;
  A lhs;
  B rhs;
  Binary(Op o, A a, B b)
      : op(std::move(o)), lhs(std::move(a)), rhs(std::move(b)), shape_(broadcast_shapes(lhs.shape(), rhs.shape(), Op::name)) {}

  const Shape<rank>& shape() const { return shape_; }
  template <std::size_t RO, class F>
  void visit_leaves(const Shape<RO>& out, F&& f) const {
    detail::visit_leaves(lhs, out, f);
    detail::visit_leaves(rhs, out, f);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(lhs, f);
    detail::for_each_tensor(rhs, f);
  }
  template <std::size_t RO>
  auto evaluator(const Shape<RO>& out, const detail::IterPlan& plan) const {
    using AE = decltype(detail::make_evaluator(lhs, out, plan));
    using BE = decltype(detail::make_evaluator(rhs, out, plan));
    return detail::BinaryEval<Op, AE, BE>{op, detail::make_evaluator(lhs, out, plan), detail::make_evaluator(rhs, out, plan)};
  }
  auto inputs() const { return std::tie(lhs, rhs); }
  template <class G>
  auto input_adjoints(const G& g) const {
    return std::make_tuple(grad_rule<Op>::lhs_adjoint(op, lhs, rhs, g), grad_rule<Op>::rhs_adjoint(op, lhs, rhs, g));
  }

 private:
  Shape<rank> shape_;
};

/// Elements of A where C is true, else of B (all three broadcast together).
template <class C, class A, class B>
struct Where : ExprBase<Where<C, A, B>> {
  using value_type = value_type_t<A>;
  using backend_type = common_backend_t<common_backend_t<backend_t<C>, backend_t<A>>, backend_t<B>>;
  static constexpr std::size_t rank_ab = rank_v<A> > rank_v<B> ? rank_v<A> : rank_v<B>;
  static constexpr std::size_t rank = rank_v<C> > rank_ab ? rank_v<C> : rank_ab;
  static constexpr const char* name = "where";
  static_assert(std::is_same_v<value_type_t<C>, bool>, "tessera::where: the condition must be a bool expression");
  static_assert(std::is_same_v<value_type_t<A>, value_type_t<B>>,
                "tessera::where: both branches must have the same element type");

  C cond;
  A if_true;
  B if_false;
  Where(C c, A a, B b)
      : cond(std::move(c)),
        if_true(std::move(a)),
        if_false(std::move(b)),
        shape_(broadcast_shapes(cond.shape(), broadcast_shapes(if_true.shape(), if_false.shape(), "where"), "where")) {}

  const Shape<rank>& shape() const { return shape_; }
  template <std::size_t RO, class F>
  void visit_leaves(const Shape<RO>& out, F&& f) const {
    detail::visit_leaves(cond, out, f);
    detail::visit_leaves(if_true, out, f);
    detail::visit_leaves(if_false, out, f);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(cond, f);
    detail::for_each_tensor(if_true, f);
    detail::for_each_tensor(if_false, f);
  }
  template <std::size_t RO>
  auto evaluator(const Shape<RO>& out, const detail::IterPlan& plan) const {
    using CE = decltype(detail::make_evaluator(cond, out, plan));
    using AE = decltype(detail::make_evaluator(if_true, out, plan));
    using BE = decltype(detail::make_evaluator(if_false, out, plan));
    return detail::WhereEval<CE, AE, BE>{detail::make_evaluator(cond, out, plan),
                                          detail::make_evaluator(if_true, out, plan),
                                          detail::make_evaluator(if_false, out, plan)};
  }
  auto inputs() const { return std::tie(cond, if_true, if_false); }
  /// The condition gets no gradient (a documented zero, as in JAX and PyTorch).
  template <class G>
  auto input_adjoints(const G& g) const {
    using T = value_type;
    return std::make_tuple(NoAdjoint{}, where(cond, g, T(0)), where(cond, T(0), g));
  }

 private:
  Shape<rank> shape_;
};

/// Converts every element of A to To (static_cast semantics).
template <class To, class A>
struct Cast : ExprBase<Cast<To, A>> {
  using value_type = To;
  using backend_type = backend_t<A>;
  static constexpr std::size_t rank = rank_v<A>;
  static constexpr const char* name = "cast";
  A arg;
  explicit Cast(A a) : arg(std::move(a)) {}
  Shape<rank> shape() const { return arg.shape(); }
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
    using AE = decltype(detail::make_evaluator(arg, out, plan));
    return detail::CastEval<To, AE>{detail::make_evaluator(arg, out, plan)};
  }
  auto inputs() const { return std::tie(arg); }
  /// Between floating types the adjoint is cast back; from integer or bool inputs the derivative
  /// does not exist, and autodiff reports the op below the cast if it depends on a variable.
  template <class G>
  auto input_adjoints(const G& g) const {
    using From = value_type_t<A>;
    if constexpr (std::is_floating_point_v<From> && std::is_floating_point_v<To>) {
      return std::make_tuple(Cast<From, G>(g));
    } else {
      return std::make_tuple(g);
    }
  }
};

namespace detail {
// is_uniform (see evaluator.hpp): elementwise ops of uniform expressions are uniform.
template <class Op, class A>
struct is_uniform<Unary<Op, A>> : is_uniform<A> {};
template <class Op, class A, class B>
struct is_uniform<Binary<Op, A, B>> : std::bool_constant<is_uniform<A>::value && is_uniform<B>::value> {};
}  // namespace detail

namespace detail {
/// Turns a C++ number into a Scalar node of the expression's element type.
template <class T, class S>
Scalar<T> as_scalar(S s) {
  static_assert(std::is_arithmetic_v<S>, "tessera: expected a number or an expression");
  static_assert(!(std::is_integral_v<T> && std::is_floating_point_v<S>),
                "tessera: a floating-point number with an integer tensor; cast the tensor first (cast<float>(t))");
  return Scalar<T>(static_cast<T>(s));
}
}  // namespace detail

/// Elementwise conversion to another element type: `cast<float>(labels)`.
template <class To, class A, std::enable_if_t<is_expr_v<A>, int> = 0>
Cast<To, A> cast(const A& a) {
  return Cast<To, A>(a);
}

/// Chooses elementwise between two expressions (or numbers): `where(x > 0, x, 0.1f * x)`.
template <class C, class A, class B, std::enable_if_t<is_expr_v<C>, int> = 0>
auto where(const C& c, const A& a, const B& b) {
  if constexpr (is_expr_v<A> && is_expr_v<B>) {
    return Where<C, A, B>(c, a, b);
  } else if constexpr (is_expr_v<A>) {
    using S = Scalar<value_type_t<A>>;
    return Where<C, A, S>(c, a, detail::as_scalar<value_type_t<A>>(b));
  } else if constexpr (is_expr_v<B>) {
    using S = Scalar<value_type_t<B>>;
    return Where<C, S, B>(c, detail::as_scalar<value_type_t<B>>(a), b);
  } else {
    static_assert(std::is_same_v<A, B>, "tessera::where: two numbers of different types");
    return Where<C, Scalar<A>, Scalar<B>>(c, Scalar<A>(a), Scalar<B>(b));
  }
}

}  // namespace tessera
