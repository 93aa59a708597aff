// Higher-order derivatives by nesting grad: the Hessian-vector product (grad of sum(grad(f) * v))
// of an MLP loss compared with central differences of the gradient, and exact second and third
// derivatives. Elementwise/reduction functions are in test_grad_higher_order_reduce.cpp.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;

TEST_CASE("Hessian-vector product of a small MLP loss (tanh hidden layer)") {
  const auto x = sample({6, 4}, -1, 1, 111);
  const auto y = sample({6, 2}, -1, 1, 112);
  const auto w1 = sample({4, 5}, -1, 1, 113), v1 = sample({4, 5}, -1, 1, 114);
  const auto w2 = sample({5, 2}, -1, 1, 115), v2 = sample({5, 2}, -1, 1, 116);
  const auto loss = [&](const auto& a, const auto& b) { return sum(square(matmul(tanh(matmul(x, a)), b) - y)) / 6.0; };
  const auto directional = [&](const auto& a, const auto& b) {
    const auto [ga, gb] = grad(loss, a, b);
    return sum(ga * v1) + sum(gb * v2);
  };
  const auto [hv1, hv2] = grad(directional, w1, w2);

  // (g(w + h v) - g(w - h v)) / 2h
  const double h = 1e-5;
  const auto [up1, up2] = grad(loss, eval(w1 + v1 * h), eval(w2 + v2 * h));
  const auto [down1, down2] = grad(loss, eval(w1 - v1 * h), eval(w2 - v2 * h));
  const Tensor<double, 2> expected1 = (up1 - down1) / (2 * h);
  const Tensor<double, 2> expected2 = (up2 - down2) / (2 * h);
  CHECK_TENSOR_NEAR(hv1, expected1, 1e-7);
  CHECK_TENSOR_NEAR(hv2, expected2, 1e-7);
  // The product is not trivially zero.
  CHECK(Tensor<double, 0>(sum(abs(hv1)))() > 0.1);
}

TEST_CASE("second derivative of sum(x^3) is 6x") {
  const Tensor<double, 1> x = {0.5, -1.0, 2.0, 0.25, -3.0};
  SUBCASE("x * x * x, Hessian times ones") {
    const auto [d2] = grad(
        [](const auto& a) {
          const auto [g] = grad([](const auto& b) { return sum(b * b * b); }, a);
          return sum(g);
        },
        x);
    const Tensor<double, 1> expected = x * 6.0;
    CHECK_TENSOR_NEAR(d2, expected, 1e-14);
  }
  SUBCASE("pow(x, 3), a scalar (rank-0) argument, and the third derivative") {
    const Tensor<double, 0> s(1.5);
    const auto first = [](const auto& a) {
      const auto [g] = grad([](const auto& b) { return pow(b, 3.0); }, a);
      return g;  // 3 s^2
    };
    const auto [d2] = grad(first, s);
    CHECK(d2() == doctest::Approx(9.0).epsilon(1e-14));  // 6 s
    const auto [d3] = grad(
        [&](const auto& a) {
          const auto [g2] = grad(first, a);
          return g2;
        },
        s);
    CHECK(d3() == doctest::Approx(6.0).epsilon(1e-14));
  }
}

TEST_CASE("an inner grad over a constant whose function captures an outer variable") {
  // outer(x) = sum(d/dt sum(t * x)) = sum(x): the inner grad must not mistake the captured outer
  // variable x for its own argument t (both are argument 0 of their grad call).
  const Tensor<double, 1> x0 = {1.0, 2.0, 3.0};
  const Tensor<double, 1> t0 = {10.0, 20.0, 30.0};
  const auto outer = [&](const auto& x) {
    const auto [gt] = grad([&](const auto& t) { return sum(t * x); }, t0);
    return sum(gt);
  };
  const auto [value, grads] = value_and_grad(outer, x0);
  CHECK(value() == 6.0);
  CHECK_TENSOR_EQ(std::get<0>(grads), (Tensor<double, 1>{1.0, 1.0, 1.0}));
}
