// Gradient checks of the smooth elementwise unary ops (piecewise ops and casts are in
// test_grad_unary_piecewise.cpp, negation in test_grad_negate.cpp). Each op is weighted by a fixed tensor so that every element
// receives a different output adjoint.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;
using grad_test::tight;

namespace {
// Any sign, magnitudes up to 1.5, and a weight for every output element.
const Tensor<double, 2> x_any = {{0.31, -0.72, 1.18, -1.43}, {0.57, 0.93, -0.11, 0.24}, {-0.36, 1.47, -1.05, 0.68}};
const Tensor<double, 2> x_pos = {{0.31, 0.72, 1.18, 2.43}, {0.57, 0.93, 3.11, 0.24}, {1.36, 1.47, 0.15, 0.68}};
const Tensor<double, 2> w = {{1.0, -2.0, 0.5, 3.0}, {-1.5, 0.25, 2.0, -0.75}, {0.8, -1.2, 1.7, 0.4}};
}  // namespace

TEST_CASE("square") { GRAD_CHECK([](const auto& x) { return sum(square(x) * w); }, x_any, tight()); }
TEST_CASE("exp") { GRAD_CHECK([](const auto& x) { return sum(exp(x) * w); }, x_any, tight()); }
TEST_CASE("log") { GRAD_CHECK([](const auto& x) { return sum(log(x) * w); }, x_pos, tight()); }
TEST_CASE("log1p") { GRAD_CHECK([](const auto& x) { return sum(log1p(x) * w); }, x_pos, tight()); }
TEST_CASE("sqrt") { GRAD_CHECK([](const auto& x) { return sum(sqrt(x) * w); }, x_pos, tight()); }
TEST_CASE("rsqrt") { GRAD_CHECK([](const auto& x) { return sum(rsqrt(x) * w); }, x_pos, tight()); }
TEST_CASE("sin") { GRAD_CHECK([](const auto& x) { return sum(sin(x) * w); }, x_any, tight()); }
TEST_CASE("cos") { GRAD_CHECK([](const auto& x) { return sum(cos(x) * w); }, x_any, tight()); }
TEST_CASE("tanh") { GRAD_CHECK([](const auto& x) { return sum(tanh(x) * w); }, x_any, tight()); }
TEST_CASE("erf") { GRAD_CHECK([](const auto& x) { return sum(erf(x) * w); }, x_any, tight()); }

TEST_CASE("a chain of unary ops differentiates by the chain rule") {
  // d/dx sin(exp(x)) = cos(exp(x)) exp(x), written out by hand.
  const auto [g] = grad([](const auto& x) { return sum(sin(exp(x)) * w); }, x_any);
  const Tensor<double, 2> expected = w * cos(exp(x_any)) * exp(x_any);
  CHECK_TENSOR_NEAR(g, expected, 1e-14);
}
