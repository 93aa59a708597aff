// Gradient checks of var over every subset of the axes of a rank-3 tensor, with and without
// keepdims, and with ddof = 1.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"
#include "autodiff/reduce_subsets.hpp"

using namespace tessera;

namespace {
const auto x3 = grad_test::sample({2, 3, 4}, -2, 2, 45);
}  // namespace

TEST_CASE("var over every subset of axes") {
  reduce_subsets::check_every_subset(REDUCTION_OVER_AXES(var), [](const auto& x) { return var(x); }, x3);
}

TEST_CASE("var with ddof(1)") {
  const Tensor<double, 2> w = {{1.0, -2.0, 0.5, 3.0}, {-1.5, 0.25, 2.0, -0.75}};
  GRAD_CHECK([&](const auto& x) { return sum(var(x, {1}, ddof(1)) * w) + var(x, ddof(1)); }, x3, grad_test::tight());
  // By hand: 2 (x - mean) / (n - 1).
  const Tensor<double, 1> v = {2.0, -3.0, 0.5, 4.0};  // mean 0.875
  const auto [g] = grad([](const auto& a) { return var(a, ddof(1)); }, v);
  CHECK_TENSOR_NEAR(g, (Tensor<double, 1>{0.75, -2.5833333333333333, -0.25, 2.0833333333333333}), 1e-15);
}

TEST_CASE("var by hand: 2 (x - mean) / n") {
  const Tensor<double, 1> x = {2.0, -3.0, 0.5, 4.0};  // mean 0.875
  const auto [dv] = grad([](const auto& a) { return var(a); }, x);
  CHECK_TENSOR_NEAR(dv, (Tensor<double, 1>{0.5625, -1.9375, -0.1875, 1.5625}), 1e-15);
}
