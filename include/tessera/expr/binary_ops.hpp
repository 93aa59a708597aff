// Elementwise binary ops (arithmetic, pow, minimum/maximum, comparisons, logical) and their operators.
#pragma once

#include <cmath>
#include <type_traits>

#include <Eigen/Core>

#include "tessera/expr/elementwise.hpp"

namespace tessera::ops {

namespace pk = Eigen::internal;

#define TESSERA_ARITH_OP(Name, str, sym, pfn, extra)                                     \
  struct Name {                                                                           \
    static constexpr const char* name = str;                                             \
    template <class T>                                                                    \
    static constexpr bool vectorizable = detail::packet_capable_v<T> && (extra);         \
    template <class T>                                                                    \
    TESSERA_HD T operator()(T a, T b) const {                                                        \
      return static_cast<T>(a sym b);                                                     \
    }                                                                                     \
    template <class P>                                                                    \
    P packet(const P& a, const P& b) const {                                              \
      return pk::pfn(a, b);                                                               \
    }                                                                                     \
  };

TESSERA_ARITH_OP(Add, "add", +, padd, true)
TESSERA_ARITH_OP(Sub, "sub", -, psub, true)
TESSERA_ARITH_OP(Mul, "mul", *, pmul, true)
TESSERA_ARITH_OP(Div, "div", /, pdiv, pk::packet_traits<T>::HasDiv && std::is_floating_point_v<T>)
#undef TESSERA_ARITH_OP

/// a raised to b (integer exponents by repeated squaring for integer tensors).
struct Pow {
  static constexpr const char* name = "pow";
  template <class T>
  static constexpr bool vectorizable =
      std::is_floating_point_v<T> && detail::packet_capable_v<T> && pk::functor_traits<pk::scalar_pow_op<T, T>>::PacketAccess;
  template <class T>
  TESSERA_HD T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return std::pow(a, b);
    } else {
      if (b < 0) return a == 1 ? T(1) : (a == -1 ? (b % 2 ? T(-1) : T(1)) : T(0));
      T r = 1;
      while (b) {
        if (b & 1) r *= a;
        b >>= 1;
        if (b) a *= a;  // square only while bits remain (no needless, overflowing square)
      }
      return r;
    }
  }
  template <class P>
  P packet(const P& a, const P& b) const {
    using T = typename pk::unpacket_traits<P>::type;
    return pk::scalar_pow_op<T, T>().packetOp(a, b);
  }
};

/// Elementwise minimum / maximum; NaN in either operand gives NaN, as in NumPy and PyTorch.
struct Minimum {
  static constexpr const char* name = "minimum";
  template <class T>
  static constexpr bool vectorizable = detail::packet_capable_v<T>;
  template <class T>
  TESSERA_HD T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(a) || std::isnan(b)) return a + b;
    }
    return b < a ? b : a;
  }
  template <class P>
  P packet(const P& a, const P& b) const {
    return pk::pmin<Eigen::PropagateNaN>(a, b);
  }
};
struct Maximum {
  static constexpr const char* name = "maximum";
  template <class T>
  static constexpr bool vectorizable = detail::packet_capable_v<T>;
  template <class T>
  TESSERA_HD T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(a) || std::isnan(b)) return a + b;
    }
    return a < b ? b : a;
  }
  template <class P>
  P packet(const P& a, const P& b) const {
    return pk::pmax<Eigen::PropagateNaN>(a, b);
  }
};

// A comparison's `select` is where(a OP b, then, otherwise) on SIMD packets (floating point;
// ordered comparisons, so NaN compares false as in the scalar form), which lets a where() over a
// comparison run vectorized instead of branching per element (ReLU's gradient is one).
#define TESSERA_COMPARE_OP(Name, str, sym, mask, then_if_mask, else_if_mask) \
  struct Name {                                                          \
    static constexpr const char* name = str;                             \
    template <class T>                                                   \
    TESSERA_HD bool operator()(T a, T b) const {                         \
      return a sym b;                                                    \
    }                                                                    \
    template <class T>                                                   \
    static constexpr bool selectable = std::is_floating_point_v<T>;      \
    template <class P>                                                   \
    static P select(const P& a, const P& b, const P& then, const P& otherwise) { \
      return pk::pselect(mask, then_if_mask, else_if_mask);              \
    }                                                                    \
  };
TESSERA_COMPARE_OP(Less, "less", <, pk::pcmp_lt(a, b), then, otherwise)
TESSERA_COMPARE_OP(LessEqual, "less_equal", <=, pk::pcmp_le(a, b), then, otherwise)
TESSERA_COMPARE_OP(Greater, "greater", >, pk::pcmp_lt(b, a), then, otherwise)
TESSERA_COMPARE_OP(GreaterEqual, "greater_equal", >=, pk::pcmp_le(b, a), then, otherwise)
TESSERA_COMPARE_OP(Equal, "equal", ==, pk::pcmp_eq(a, b), then, otherwise)
TESSERA_COMPARE_OP(NotEqual, "not_equal", !=, pk::pcmp_eq(a, b), otherwise, then)
#undef TESSERA_COMPARE_OP

struct LogicalAnd {
  static constexpr const char* name = "logical_and";
  TESSERA_HD bool operator()(bool a, bool b) const { return a && b; }
};
struct LogicalOr {
  static constexpr const char* name = "logical_or";
  TESSERA_HD bool operator()(bool a, bool b) const { return a || b; }
};

}  // namespace tessera::ops

namespace tessera {

namespace detail {
/// Builds Binary<Op, ...> from two expressions or an expression and a number.
template <class Op, class A, class B>
auto make_binary(const A& a, const B& b) {
  if constexpr (is_expr_v<A> && is_expr_v<B>) {
    return Binary<Op, A, B>(Op{}, a, b);
  } else if constexpr (is_expr_v<A>) {
    using S = Scalar<value_type_t<A>>;
    return Binary<Op, A, S>(Op{}, a, as_scalar<value_type_t<A>>(b));
  } else {
    using S = Scalar<value_type_t<B>>;
    return Binary<Op, S, B>(Op{}, as_scalar<value_type_t<B>>(a), b);
  }
}
template <class A, class B>
inline constexpr bool binary_operands_v =
    (is_expr_v<A> && is_expr_v<B>) || (is_expr_v<A> && std::is_arithmetic_v<B>) ||
    (std::is_arithmetic_v<A> && is_expr_v<B>);
template <class A, class B>
using expr_or_scalar_value_t = std::conditional_t<is_expr_v<A>, A, B>;
}  // namespace detail

#define TESSERA_BINARY_OPERATOR(sym, Op, numeric_only)                                                          \
  /** Lazy elementwise `sym` with broadcasting. */                                                               \
  template <class A, class B, std::enable_if_t<detail::binary_operands_v<A, B>, int> = 0>                      \
  auto operator sym(const A& a, const B& b) {                                                                    \
    static_assert(!(numeric_only) ||                                                                             \
                      !std::is_same_v<value_type_t<detail::expr_or_scalar_value_t<A, B>>, bool>,                 \
                  "tessera: arithmetic on bool tensors; cast<float>() first or use logical_and/logical_or");     \
    return detail::make_binary<ops::Op>(a, b);                                                                   \
  }
TESSERA_BINARY_OPERATOR(+, Add, true)
TESSERA_BINARY_OPERATOR(-, Sub, true)
TESSERA_BINARY_OPERATOR(*, Mul, true)
TESSERA_BINARY_OPERATOR(/, Div, true)
TESSERA_BINARY_OPERATOR(<, Less, false)
TESSERA_BINARY_OPERATOR(<=, LessEqual, false)
TESSERA_BINARY_OPERATOR(>, Greater, false)
TESSERA_BINARY_OPERATOR(>=, GreaterEqual, false)
TESSERA_BINARY_OPERATOR(==, Equal, false)
TESSERA_BINARY_OPERATOR(!=, NotEqual, false)
#undef TESSERA_BINARY_OPERATOR

/// Lazy elementwise power, e.g. pow(x, 2.0f).
template <class A, class B, std::enable_if_t<detail::binary_operands_v<A, B>, int> = 0>
auto pow(const A& a, const B& b) {
  return detail::make_binary<ops::Pow>(a, b);
}
/// Lazy elementwise minimum (NaN-propagating).
template <class A, class B, std::enable_if_t<detail::binary_operands_v<A, B>, int> = 0>
auto minimum(const A& a, const B& b) {
  return detail::make_binary<ops::Minimum>(a, b);
}
/// Lazy elementwise maximum (NaN-propagating).
template <class A, class B, std::enable_if_t<detail::binary_operands_v<A, B>, int> = 0>
auto maximum(const A& a, const B& b) {
  return detail::make_binary<ops::Maximum>(a, b);
}
/// Elementwise logical and/or of bool expressions.
template <class A, class B, std::enable_if_t<is_expr_v<A> && is_expr_v<B>, int> = 0>
auto logical_and(const A& a, const B& b) {
  static_assert(std::is_same_v<value_type_t<A>, bool>, "tessera::logical_and needs bool expressions");
  return detail::make_binary<ops::LogicalAnd>(a, b);
}
template <class A, class B, std::enable_if_t<is_expr_v<A> && is_expr_v<B>, int> = 0>
auto logical_or(const A& a, const B& b) {
  static_assert(std::is_same_v<value_type_t<A>, bool>, "tessera::logical_or needs bool expressions");
  return detail::make_binary<ops::LogicalOr>(a, b);
}
template <class A, class B, std::enable_if_t<is_expr_v<A> && is_expr_v<B>, int> = 0>
auto operator&(const A& a, const B& b) {
  return logical_and(a, b);
}
template <class A, class B, std::enable_if_t<is_expr_v<A> && is_expr_v<B>, int> = 0>
auto operator|(const A& a, const B& b) {
  return logical_or(a, b);
}

// ---- grad rules ---------------------------------------------------------------------------------

template <>
struct grad_rule<ops::Add> {
  template <class A, class B, class G>
  static auto lhs_adjoint(const ops::Add&, const A&, const B&, const G& g) { return g; }
  template <class A, class B, class G>
  static auto rhs_adjoint(const ops::Add&, const A&, const B&, const G& g) { return g; }
};
template <>
struct grad_rule<ops::Sub> {
  template <class A, class B, class G>
  static auto lhs_adjoint(const ops::Sub&, const A&, const B&, const G& g) { return g; }
  template <class A, class B, class G>
  static auto rhs_adjoint(const ops::Sub&, const A&, const B&, const G& g) { return -g; }
};
template <>
struct grad_rule<ops::Mul> {
  template <class A, class B, class G>
  static auto lhs_adjoint(const ops::Mul&, const A&, const B& b, const G& g) { return g * b; }
  template <class A, class B, class G>
  static auto rhs_adjoint(const ops::Mul&, const A& a, const B&, const G& g) { return g * a; }
};
/// d(a/b)/da = 1/b, d(a/b)/db = -a/b^2. When b is one value (rank 0: `x / sigma`), the adjoints
/// multiply by 1/b and 1/b^2, which a pass computes once (rank-0 subexpressions are hoisted, see
/// make_evaluator), instead of dividing every element: a division costs several multiplications.
template <>
struct grad_rule<ops::Div> {
  template <class B>
  static constexpr bool divisor_is_one_value = rank_v<B> == 0 && std::is_floating_point_v<value_type_t<B>>;
  template <class A, class B, class G>
  static auto lhs_adjoint(const ops::Div&, const A&, const B& b, const G& g) {
    if constexpr (divisor_is_one_value<B>) {
      return g * (Scalar<value_type_t<B>>(1) / b);
    } else {
      return g / b;
    }
  }
  template <class A, class B, class G>
  static auto rhs_adjoint(const ops::Div&, const A& a, const B& b, const G& g) {
    if constexpr (divisor_is_one_value<B>) {
      return -(g * a) * (Scalar<value_type_t<B>>(1) / square(b));
    } else {
      return -(g * a / square(b));
    }
  }
};
/// d(a^b)/da = b a^(b-1); d(a^b)/db = a^b log a, taken as 0 where a == 0.
template <>
struct grad_rule<ops::Pow> {
  template <class A, class B, class G>
  static auto lhs_adjoint(const ops::Pow&, const A& a, const B& b, const G& g) {
    using T = value_type_t<A>;
    return g * (b * pow(a, b - T(1)));
  }
  template <class A, class B, class G>
  static auto rhs_adjoint(const ops::Pow&, const A& a, const B& b, const G& g) {
    using T = value_type_t<A>;
    return where(a == T(0), T(0), g * (pow(a, b) * log(a)));
  }
};
/// Ties send the whole gradient to the left operand.
template <>
struct grad_rule<ops::Minimum> {
  template <class A, class B, class G>
  static auto lhs_adjoint(const ops::Minimum&, const A& a, const B& b, const G& g) {
    return where(a <= b, g, value_type_t<A>(0));
  }
  template <class A, class B, class G>
  static auto rhs_adjoint(const ops::Minimum&, const A& a, const B& b, const G& g) {
    return where(a <= b, value_type_t<A>(0), g);
  }
};
template <>
struct grad_rule<ops::Maximum> {
  template <class A, class B, class G>
  static auto lhs_adjoint(const ops::Maximum&, const A& a, const B& b, const G& g) {
    return where(a >= b, g, value_type_t<A>(0));
  }
  template <class A, class B, class G>
  static auto rhs_adjoint(const ops::Maximum&, const A& a, const B& b, const G& g) {
    return where(a >= b, value_type_t<A>(0), g);
  }
};

// Comparisons and logical ops have no derivative: differentiating through one does not compile.
#define TESSERA_NO_GRAD(Op, str)                                                                   \
  template <>                                                                                      \
  struct grad_rule<ops::Op> {                                                                      \
    template <class A, class B, class G>                                                           \
    static auto lhs_adjoint(const ops::Op&, const A&, const B&, const G&) {                        \
      static_assert(detail::dependent_false_v<A>, "tessera::grad: " str " is not differentiable"); \
    }                                                                                              \
    template <class A, class B, class G>                                                           \
    static auto rhs_adjoint(const ops::Op&, const A&, const B&, const G&) {                        \
      static_assert(detail::dependent_false_v<A>, "tessera::grad: " str " is not differentiable"); \
    }                                                                                              \
  };
TESSERA_NO_GRAD(Less, "the comparison less (<)")
TESSERA_NO_GRAD(LessEqual, "the comparison less_equal (<=)")
TESSERA_NO_GRAD(Greater, "the comparison greater (>)")
TESSERA_NO_GRAD(GreaterEqual, "the comparison greater_equal (>=)")
TESSERA_NO_GRAD(Equal, "the comparison equal (==)")
TESSERA_NO_GRAD(NotEqual, "the comparison not_equal (!=)")
TESSERA_NO_GRAD(LogicalAnd, "logical_and")
TESSERA_NO_GRAD(LogicalOr, "logical_or")
#undef TESSERA_NO_GRAD

}  // namespace tessera
