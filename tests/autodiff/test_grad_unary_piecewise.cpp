// Gradient checks of the activations and piecewise unary ops (inputs kept away from their kinks),
// the conventions at the kinks checked exactly, and casts between float and double.
#include <doctest/doctest.h>

#include <type_traits>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::tight;

namespace {
// No element within 0.1 of 0 (relu, abs, sign) or of the clamp bounds -0.5 and 0.8.
const Tensor<double, 2> x_any = {{0.31, -0.72, 1.18, -1.43}, {0.57, 0.93, -0.11, 0.24}, {-0.36, 1.47, -1.05, 0.68}};
const Tensor<double, 2> w = {{1.0, -2.0, 0.5, 3.0}, {-1.5, 0.25, 2.0, -0.75}, {0.8, -1.2, 1.7, 0.4}};
}  // namespace

TEST_CASE("abs") { GRAD_CHECK([](const auto& x) { return sum(abs(x) * w); }, x_any, tight()); }
TEST_CASE("sign") { GRAD_CHECK([](const auto& x) { return sum(sign(x) * w + x); }, x_any, tight()); }
TEST_CASE("sigmoid") { GRAD_CHECK([](const auto& x) { return sum(sigmoid(x) * w); }, x_any, tight()); }
TEST_CASE("relu") { GRAD_CHECK([](const auto& x) { return sum(relu(x) * w); }, x_any, tight()); }
TEST_CASE("softplus") { GRAD_CHECK([](const auto& x) { return sum(softplus(x) * w); }, x_any, tight()); }
TEST_CASE("gelu") { GRAD_CHECK([](const auto& x) { return sum(gelu(x) * w); }, x_any, tight()); }
TEST_CASE("clamp") { GRAD_CHECK([](const auto& x) { return sum(clamp(x, -0.5, 0.8) * w); }, x_any, tight()); }

TEST_CASE("conventions at the kinks: relu'(0) = 0, abs'(0) = 0, sign' = 0, clamp passes at its bounds") {
  const Tensor<double, 1> x = {-1.0, 0.0, 2.0, -0.5, 0.8, 0.9};
  const auto [d_relu, d_abs, d_sign, d_clamp] = grad(
      [](const auto& a, const auto& b, const auto& c, const auto& d) {
        return sum(relu(a)) + sum(abs(b)) + sum(sign(c)) + sum(clamp(d, -0.5, 0.8));
      },
      x, x, x, x);
  CHECK_TENSOR_EQ(d_relu, (Tensor<double, 1>{0, 0, 1, 0, 1, 1}));
  CHECK_TENSOR_EQ(d_abs, (Tensor<double, 1>{-1, 0, 1, -1, 1, 1}));
  CHECK_TENSOR_EQ(d_sign, (Tensor<double, 1>{0, 0, 0, 0, 0, 0}));
  // clamp's gradient passes where lo <= x <= hi, bounds included (as PyTorch).
  CHECK_TENSOR_EQ(d_clamp, (Tensor<double, 1>{0, 1, 0, 1, 1, 0}));
}

TEST_CASE("saturated sigmoid and softplus give finite gradients") {
  const Tensor<double, 1> x = {-40.0, -30.0, 30.0, 40.0, 700.0, -700.0};
  const auto [ds, dp] = grad([](const auto& a, const auto& b) { return sum(sigmoid(a)) + sum(softplus(b)); }, x, x);
  // sigmoid' = s (1 - s), softplus' = sigmoid, computed in long double as the reference.
  Tensor<double, 1> expected_s(6), expected_p(6);
  for (index_t i = 0; i < 6; ++i) {
    const long double s = 1.0L / (1.0L + std::exp(-static_cast<long double>(x(i))));
    expected_s(i) = static_cast<double>(s * (1.0L - s));
    expected_p(i) = static_cast<double>(s);
  }
  CHECK_TENSOR_NEAR(ds, expected_s, 1e-12);
  CHECK_TENSOR_NEAR(dp, expected_p, 1e-15);
}

TEST_CASE("cast double -> float -> double passes the gradient through float") {
  // Weights that float represents exactly come back unchanged; 0.1 comes back rounded to float.
  const Tensor<double, 1> x = {0.5, -1.5, 2.25, 3.0};
  const Tensor<double, 1> wc = {1.0, -2.0, 0.1, 0.375};
  const auto [g] = grad([&](const auto& a) { return sum(cast<double>(cast<float>(a)) * wc); }, x);
  static_assert(std::is_same_v<std::decay_t<decltype(g)>, Tensor<double, 1>>);
  const Tensor<double, 1> expected = {1.0, -2.0, static_cast<double>(0.1f), 0.375};
  CHECK_TENSOR_EQ(g, expected);
}

TEST_CASE("cast float -> double: a float argument gets a float gradient") {
  const Tensor<float, 1> x = {0.5f, -1.5f, 2.25f, 3.0f};
  const Tensor<double, 1> wc = {1.0, -2.0, 0.1, 0.375};
  const auto [g] = grad([&](const auto& a) { return sum(exp(cast<double>(a)) * wc); }, x);
  static_assert(std::is_same_v<std::decay_t<decltype(g)>, Tensor<float, 1>>);
  Tensor<float, 1> expected(4);
  for (index_t i = 0; i < 4; ++i) expected(i) = static_cast<float>(std::exp(static_cast<double>(x(i))) * wc(i));
  CHECK_TENSOR_EQ(g, expected);
}
