// A user-defined op: forward, SIMD form (optional) and grad_rule in one place, then used like any
// built-in op -- fused into elementwise passes and differentiated by tessera::grad.
#include <tessera/tessera.hpp>

#include <cmath>
#include <cstdio>

namespace my_ops {

/// swish(x) = x * sigmoid(beta * x)   (Ramachandran et al., 2017)
struct Swish {
  static constexpr const char* name = "swish";
  float beta = 1.0f;

  // Scalar form: required.
  template <class T>
  T operator()(T x) const {
    return x / (T(1) + std::exp(-T(beta) * x));
  }
  // SIMD form: optional; declare which element types it supports.
  template <class T>
  static constexpr bool vectorizable = tessera::ops::Sigmoid::vectorizable<T>;
  template <class P>
  P packet(const P& x) const {
    using T = typename Eigen::internal::unpacket_traits<P>::type;
    const P s = tessera::ops::Sigmoid{}.packet(Eigen::internal::pmul(Eigen::internal::pset1<P>(T(beta)), x));
    return Eigen::internal::pmul(x, s);
  }
};

/// Lazy swish of any expression.
template <class A>
tessera::Unary<Swish, A> swish(const A& a, float beta = 1.0f) {
  return tessera::Unary<Swish, A>(Swish{beta}, a);
}

}  // namespace my_ops

/// The reverse-mode rule: d swish / dx = s + beta x s (1 - s), with s = sigmoid(beta x).
/// Built from lazy expressions, so the backward pass fuses too.
template <>
struct tessera::grad_rule<my_ops::Swish> {
  template <class X, class G>
  static auto input_adjoint(const my_ops::Swish& op, const X& x, const G& g) {
    using T = tessera::value_type_t<X>;
    const T beta = static_cast<T>(op.beta);
    const auto s = tessera::sigmoid(x * beta);
    return g * (s + x * beta * s * (T(1) - s));
  }
};

int main() {
  using namespace tessera;
  Generator gen(0);
  const auto x = normal<double>(gen, {8, 16});
  const auto w = normal<double>(gen, {16, 4}, 0.0, 0.5);

  // Forward: matmul, then swish and the square fused in one pass.
  auto loss = [&](const auto& weights) { return sum(square(my_ops::swish(matmul(x, weights), 1.5f))); };
  const Tensor<double, 0> value = loss(w);
  auto [dw] = grad(loss, w);
  std::printf("loss %.6f, |dL/dw| %.6f\n", value(), std::sqrt(Tensor<double, 0>(sum(square(dw)))()));

  const GradCheckResult check = check_gradients(loss, w);
  std::printf("%s\n", check.message().c_str());
  return check.passed ? 0 : 1;
}
