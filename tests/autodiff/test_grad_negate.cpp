// Gradient of unary minus. Kept in its own program: differentiating -x currently does not compile
// with -Wall -Wextra -Werror (grad_rule<ops::Negate> leaves its parameter x unused), and that
// failure should not stop the other unary checks from building.
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
