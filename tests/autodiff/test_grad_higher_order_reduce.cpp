// Hessian-vector products (grad of sum(grad(f) * v)) of functions built from elementwise ops and
// reductions, compared with central differences of the gradient or with the Hessian by hand.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;

TEST_CASE("Hessian-vector product of elementwise ops and reductions") {
  const auto x = sample({3, 4}, -1, 1, 117);
  const auto v = sample({3, 4}, -1, 1, 118);
  const auto f = [](const auto& a) {
    return sum(exp(a) * sin(a)) + square(mean(square(a))) + logsumexp(a * 2.0) + sum(log1p(square(a)) * tanh(a));
  };
  const auto directional = [&](const auto& a) {
    const auto [g] = grad(f, a);
    return sum(g * v);
  };
  const auto [hv] = grad(directional, x);
  const double h = 1e-5;
  const auto [up] = grad(f, eval(x + v * h));
  const auto [down] = grad(f, eval(x - v * h));
  const Tensor<double, 2> expected = (up - down) / (2 * h);
  CHECK_TENSOR_NEAR(hv, expected, 1e-7);
}

TEST_CASE("Hessian-vector product of var (the mean depends on x too)") {
  // Hessian of var over n elements (ddof 0): (2/n) (I - 11^T / n), so Hv = (2/n) (v - mean(v)).
  const Tensor<double, 1> x = {0.5, -1.0, 2.0, 0.25};
  const Tensor<double, 1> v = {1.0, 0.5, -1.0, 2.0};
  const auto directional = [&](const auto& a) {
    const auto [g] = grad([](const auto& b) { return var(b); }, a);
    return sum(g * v);
  };
  const auto [hv] = grad(directional, x);
  const Tensor<double, 1> expected = {0.1875, -0.0625, -0.8125, 0.6875};  // 0.5 (v - 0.625)
  CHECK_TENSOR_NEAR(hv, expected, 1e-14);
}
