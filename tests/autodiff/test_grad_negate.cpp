// Gradient of unary minus. Kept in its own program: differentiating -x currently does not compile
// with -Wall -Wextra -Werror (grad_rule<ops::Negate> leaves its parameter x unused), and that
// failure should not stop the other autodiff programs from building. Every test here is also one
// that another file would contain if negation compiled.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;

TEST_CASE("neg") {
  const Tensor<double, 2> x = {{0.31, -0.72, 1.18}, {0.57, 0.93, -0.11}};
  const Tensor<double, 2> w = {{1.0, -2.0, 0.5}, {-1.5, 0.25, 2.0}};
  GRAD_CHECK([&](const auto& a) { return sum(-a * w); }, x, grad_test::tight());
  const auto [g] = grad([&](const auto& a) { return sum(-a * w); }, x);
  const Tensor<double, 2> expected = -w;
  CHECK_TENSOR_EQ(g, expected);
}

TEST_CASE("neg inside a chain, and a - b as a + (-b)") {
  const Tensor<double, 1> a = {0.5, -1.25, 2.0};
  const Tensor<double, 1> b = {1.5, 0.75, -0.5};
  GRAD_CHECK([](const auto& x, const auto& y) { return sum(exp(-x) * (x + -y) * -square(y)); }, a, b, grad_test::tight());
}

TEST_CASE("softmax cross-entropy written as -sum(log_softmax * onehot) / n (as in docs/autodiff.md)") {
  const Tensor<double, 2> logits = {{0.5, -1.0, 2.0}, {1.5, 0.25, -0.5}};
  const Tensor<double, 2> onehot = {{0, 0, 1}, {1, 0, 0}};
  const auto [g] = grad([&](const auto& z) { return -sum(log_softmax(z, 1) * onehot) / 2.0; }, logits);
  const Tensor<double, 2> expected = (softmax(logits, 1) - onehot) / 2.0;
  CHECK_TENSOR_NEAR(g, expected, 1e-12);
}

TEST_CASE("second derivatives through ops whose gradient negates: cos, a / b, a - b") {
  // Their first-order rules produce -(...) expressions; an outer grad differentiates those.
  // f = sum(cos(x)) + sum(x / (1 + x^2)) + sum(exp(1 - x)); diagonal Hessian, so H 1 = f''(x):
  // -cos(x) + (2x^3 - 6x) / (1 + x^2)^3 + exp(1 - x).
  const Tensor<double, 1> x = {0.5, -1.25, 2.0, 0.1};
  const auto f = [](const auto& a) { return sum(cos(a)) + sum(a / (1.0 + a * a)) + sum(exp(1.0 - a)); };
  const auto [h1] = grad(
      [&](const auto& a) {
        const auto [g] = grad(f, a);
        return sum(g);
      },
      x);
  const Tensor<double, 1> q = 1.0 + x * x;
  const Tensor<double, 1> expected = -cos(x) + (x * x * x * 2.0 - x * 6.0) / (q * q * q) + exp(1.0 - x);
  CHECK_TENSOR_NEAR(h1, expected, 1e-13);
}
