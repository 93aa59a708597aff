// Elementwise unary ops: each struct gives the scalar form, the SIMD form where Eigen has one,
// and the user-facing function below it builds the lazy Unary node.
#pragma once

#include <cmath>
#include <type_traits>

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>

#include "tessera/expr/elementwise.hpp"

namespace tessera::ops {

namespace pk = Eigen::internal;

template <class T>
inline constexpr bool simd_v = detail::packet_capable_v<T>;

/// -x
struct Negate {
  static constexpr const char* name = "neg";
  template <class T>
  static constexpr bool vectorizable = simd_v<T>;
  template <class T>
  TESSERA_HD T operator()(T x) const {
    return -x;
  }
  template <class P>
  P packet(const P& x) const {
    return pk::pnegate(x);
  }
};

/// x * x
struct Square {
  static constexpr const char* name = "square";
  template <class T>
  static constexpr bool vectorizable = simd_v<T>;
  template <class T>
  TESSERA_HD T operator()(T x) const {
    return x * x;
  }
  template <class P>
  P packet(const P& x) const {
    return pk::pmul(x, x);
  }
};

#define TESSERA_EIGEN_UNARY(Name, str, std_call, pfn, has)           \
  struct Name {                                                      \
    static constexpr const char* name = str;                        \
    template <class T>                                               \
    static constexpr bool vectorizable = simd_v<T> && pk::packet_traits<T>::has; \
    template <class T>                                               \
    TESSERA_HD T operator()(T x) const {                                        \
      return std_call;                                               \
    }                                                                \
    template <class P>                                               \
    P packet(const P& x) const {                                     \
      return pk::pfn(x);                                             \
    }                                                                \
  };

TESSERA_EIGEN_UNARY(Log, "log", std::log(x), plog, HasLog)
TESSERA_EIGEN_UNARY(Log1p, "log1p", std::log1p(x), plog1p, HasLog1p)
TESSERA_EIGEN_UNARY(Sqrt, "sqrt", std::sqrt(x), psqrt, HasSqrt)
TESSERA_EIGEN_UNARY(Rsqrt, "rsqrt", T(1) / std::sqrt(x), prsqrt, HasRsqrt)
TESSERA_EIGEN_UNARY(Sin, "sin", std::sin(x), psin, HasSin)
TESSERA_EIGEN_UNARY(Cos, "cos", std::cos(x), pcos, HasCos)
TESSERA_EIGEN_UNARY(Tanh, "tanh", std::tanh(x), ptanh, HasTanh)
TESSERA_EIGEN_UNARY(Erf, "erf", std::erf(x), perf, HasErf)
TESSERA_EIGEN_UNARY(Abs, "abs", (x < T(0) ? -x : x), pabs, HasAbs)
#undef TESSERA_EIGEN_UNARY

/// e^x. Results below the smallest normal number are flushed to 0 in both the SIMD and the scalar
/// form (Eigen's pexp clamps its argument and would otherwise return ~1e-38 for exp(-inf)).
struct Exp {
  static constexpr const char* name = "exp";
  template <class T>
  static constexpr bool vectorizable = simd_v<T> && pk::packet_traits<T>::HasExp && pk::packet_traits<T>::HasCmp;
  /// log of the smallest normal number of T.
  template <class T>
  static constexpr T underflow = std::is_same_v<T, float> ? T(-87.33654) : T(-708.3964185322641);
  template <class T>
  TESSERA_HD T operator()(T x) const {
    return x < underflow<T> ? T(0) : std::exp(x);
  }
  template <class P>
  P packet(const P& x) const {
    using T = typename pk::unpacket_traits<P>::type;
    return pk::pselect(pk::pcmp_lt(x, pk::pset1<P>(underflow<T>)), pk::pzero(x), pk::pexp(x));
  }
};

/// 1 for positive, -1 for negative, 0 for zero.
struct Sign {
  static constexpr const char* name = "sign";
  template <class T>
  static constexpr bool vectorizable = simd_v<T> && pk::packet_traits<T>::HasCmp;
  template <class T>
  TESSERA_HD T operator()(T x) const {
    return static_cast<T>((T(0) < x) - (x < T(0)));
  }
  template <class P>
  P packet(const P& x) const {
    const P zero = pk::pzero(x);
    const P one = pk::pset1<P>(typename pk::unpacket_traits<P>::type(1));
    return pk::psub(pk::pand(pk::pcmp_lt(zero, x), one), pk::pand(pk::pcmp_lt(x, zero), one));
  }
};

/// 1 / (1 + exp(-x)), computed without overflow.
struct Sigmoid {
  static constexpr const char* name = "sigmoid";
  template <class T>
  static constexpr bool vectorizable = simd_v<T> && pk::functor_traits<pk::scalar_logistic_op<T>>::PacketAccess;
  template <class T>
  TESSERA_HD T operator()(T x) const {
    return x >= T(0) ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x));
  }
  template <class P>
  P packet(const P& x) const {
    return pk::scalar_logistic_op<typename pk::unpacket_traits<P>::type>().packetOp(x);
  }
};

/// max(x, 0)
struct Relu {
  static constexpr const char* name = "relu";
  template <class T>
  static constexpr bool vectorizable = simd_v<T>;
  template <class T>
  TESSERA_HD T operator()(T x) const {
    return x > T(0) ? x : T(0);
  }
  template <class P>
  P packet(const P& x) const {
    return pk::pmax(x, pk::pzero(x));
  }
};

/// The exact GELU, x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), as PyTorch's default.
struct Gelu {
  static constexpr const char* name = "gelu";
  template <class T>
  static constexpr bool vectorizable = simd_v<T> && pk::packet_traits<T>::HasErf;
  template <class T>
  TESSERA_HD T operator()(T x) const {
    return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
  }
  template <class P>
  P packet(const P& x) const {
    using T = typename pk::unpacket_traits<P>::type;
    const P half = pk::pset1<P>(T(0.5));
    const P one = pk::pset1<P>(T(1));
    return pk::pmul(pk::pmul(half, x), pk::padd(one, pk::perf(pk::pmul(x, pk::pset1<P>(T(0.70710678118654752440))))));
  }
};

/// log(1 + exp(x)) in the overflow-free form max(x, 0) + log1p(exp(-|x|)).
struct Softplus {
  static constexpr const char* name = "softplus";
  template <class T>
  static constexpr bool vectorizable =
      simd_v<T> && pk::packet_traits<T>::HasExp && pk::packet_traits<T>::HasLog1p;
  template <class T>
  TESSERA_HD T operator()(T x) const {
    return (x > T(0) ? x : T(0)) + std::log1p(Exp{}(-(x < T(0) ? -x : x)));
  }
  template <class P>
  P packet(const P& x) const {
    return pk::padd(pk::pmax(x, pk::pzero(x)), pk::plog1p(Exp{}.packet(pk::pnegate(pk::pabs(x)))));
  }
};

/// min(max(x, lo), hi)
template <class T>
struct Clamp {
  static constexpr const char* name = "clamp";
  template <class U>
  static constexpr bool vectorizable = simd_v<U>;
  T lo, hi;
  TESSERA_HD T operator()(T x) const { return x < lo ? lo : (x > hi ? hi : x); }
  template <class P>
  P packet(const P& x) const {
    return pk::pmin(pk::pmax(x, pk::pset1<P>(lo)), pk::pset1<P>(hi));
  }
};

/// Logical negation of a bool element.
struct LogicalNot {
  static constexpr const char* name = "logical_not";
  TESSERA_HD bool operator()(bool x) const { return !x; }
};

}  // namespace tessera::ops

namespace tessera {

#define TESSERA_UNARY_FUNCTION(fn, Op, needs_float)                                                       \
  /** Lazy elementwise fn. */                                                                              \
  template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>                                              \
  Unary<ops::Op, A> fn(const A& a) {                                                                       \
    static_assert(!(needs_float) || std::is_floating_point_v<value_type_t<A>>,                             \
                  "tessera::" #fn " needs a floating-point expression; convert with cast<float>(x)");      \
    static_assert(!std::is_same_v<value_type_t<A>, bool>, "tessera::" #fn " is not defined for bool tensors"); \
    return Unary<ops::Op, A>(ops::Op{}, a);                                                                 \
  }

TESSERA_UNARY_FUNCTION(exp, Exp, true)
TESSERA_UNARY_FUNCTION(log, Log, true)
TESSERA_UNARY_FUNCTION(log1p, Log1p, true)
TESSERA_UNARY_FUNCTION(sqrt, Sqrt, true)
TESSERA_UNARY_FUNCTION(rsqrt, Rsqrt, true)
TESSERA_UNARY_FUNCTION(sin, Sin, true)
TESSERA_UNARY_FUNCTION(cos, Cos, true)
TESSERA_UNARY_FUNCTION(tanh, Tanh, true)
TESSERA_UNARY_FUNCTION(erf, Erf, true)
TESSERA_UNARY_FUNCTION(sigmoid, Sigmoid, true)
TESSERA_UNARY_FUNCTION(gelu, Gelu, true)
TESSERA_UNARY_FUNCTION(softplus, Softplus, true)
TESSERA_UNARY_FUNCTION(abs, Abs, false)
TESSERA_UNARY_FUNCTION(sign, Sign, false)
TESSERA_UNARY_FUNCTION(relu, Relu, false)
TESSERA_UNARY_FUNCTION(square, Square, false)
#undef TESSERA_UNARY_FUNCTION

/// Lazy elementwise negation.
template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>
Unary<ops::Negate, A> operator-(const A& a) {
  static_assert(!std::is_same_v<value_type_t<A>, bool>, "tessera: unary minus is not defined for bool tensors");
  return Unary<ops::Negate, A>(ops::Negate{}, a);
}

/// Limits every element to [lo, hi].
template <class A, class S, std::enable_if_t<is_expr_v<A> && std::is_arithmetic_v<S>, int> = 0>
Unary<ops::Clamp<value_type_t<A>>, A> clamp(const A& a, S lo, S hi) {
  using T = value_type_t<A>;
  if (hi < lo) throw value_error("clamp: lower bound exceeds upper bound");
  return Unary<ops::Clamp<T>, A>(ops::Clamp<T>{static_cast<T>(lo), static_cast<T>(hi)}, a);
}

/// Elementwise logical not of a bool expression.
template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>
Unary<ops::LogicalNot, A> logical_not(const A& a) {
  static_assert(std::is_same_v<value_type_t<A>, bool>, "tessera::logical_not needs a bool expression");
  return Unary<ops::LogicalNot, A>(ops::LogicalNot{}, a);
}
template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>
Unary<ops::LogicalNot, A> operator!(const A& a) {
  return logical_not(a);
}

// ---- grad rules: the adjoint of x given the adjoint g of op(x) --------------------------------------
// Written with unqualified calls so they find tessera's lazy functions by argument lookup.

#define TESSERA_UNARY_GRAD(Op, expr)                              \
  template <>                                                     \
  struct grad_rule<ops::Op> {                                     \
    template <class X, class G>                                   \
    static auto input_adjoint(const ops::Op&, const X& x, const G& g) { \
      using T = value_type_t<X>;                                  \
      (void)sizeof(T);                                            \
      (void)x;                                                    \
      return expr;                                                \
    }                                                             \
  };

TESSERA_UNARY_GRAD(Negate, -g)
TESSERA_UNARY_GRAD(Square, g * (x * T(2)))
TESSERA_UNARY_GRAD(Exp, g * exp(x))
TESSERA_UNARY_GRAD(Log, g / x)
TESSERA_UNARY_GRAD(Log1p, g / (x + T(1)))
TESSERA_UNARY_GRAD(Sqrt, g * (rsqrt(x) * T(0.5)))
TESSERA_UNARY_GRAD(Rsqrt, g * (rsqrt(x) / x * T(-0.5)))
TESSERA_UNARY_GRAD(Sin, g * cos(x))
TESSERA_UNARY_GRAD(Cos, -(g * sin(x)))
TESSERA_UNARY_GRAD(Tanh, g * (T(1) - square(tanh(x))))
TESSERA_UNARY_GRAD(Erf, g * (exp(-square(x)) * T(1.1283791670955125738961589)))
TESSERA_UNARY_GRAD(Abs, g * sign(x))
TESSERA_UNARY_GRAD(Sigmoid, g * (sigmoid(x) * (T(1) - sigmoid(x))))
TESSERA_UNARY_GRAD(Relu, where(x > T(0), g, T(0)))
TESSERA_UNARY_GRAD(Softplus, g * sigmoid(x))
// d/dx x*Phi(x) = Phi(x) + x * phi(x)
TESSERA_UNARY_GRAD(Gelu, g * ((T(1) + erf(x * T(0.70710678118654752440))) * T(0.5) +
                              x * exp(square(x) * T(-0.5)) * T(0.39894228040143267794)))
#undef TESSERA_UNARY_GRAD

/// sign is piecewise constant: its derivative is taken as 0 everywhere (as in JAX and PyTorch).
template <>
struct grad_rule<ops::Sign> {
  template <class X, class G>
  static auto input_adjoint(const ops::Sign&, const X&, const G& g) {
    return g * value_type_t<X>(0);
  }
};

/// clamp passes the gradient where lo <= x <= hi (inclusive, as PyTorch).
template <class T>
struct grad_rule<ops::Clamp<T>> {
  template <class X, class G>
  static auto input_adjoint(const ops::Clamp<T>& op, const X& x, const G& g) {
    return where(logical_and(x >= op.lo, x <= op.hi), g, T(0));
  }
};

template <>
struct grad_rule<ops::LogicalNot> {
  template <class X, class G>
  static auto input_adjoint(const ops::LogicalNot&, const X&, const G&) {
    static_assert(detail::dependent_false_v<X>, "tessera::grad: logical_not is not differentiable");
  }
};

}  // namespace tessera
