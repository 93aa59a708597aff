// Second derivatives through the max and min reductions: their backward selects the extremum with
// where(x == max, 1, 0), whose condition is a constant, so the outer sweep passes through it.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;

TEST_CASE("Hessian-vector product through max and min reductions") {
  // f = sum(max(x, 1)^2) + sum(min(x, 1)^2): each row's extremum m contributes m^2, whose second
  // derivative is 2 at the extremum's position and 0 elsewhere (no ties here).
  const Tensor<double, 2> x = {{0.5, -1.0, 2.0}, {0.25, 3.0, 1.0}};
  const Tensor<double, 2> v = {{1.0, 0.5, -1.0}, {2.0, 1.0, 0.5}};
  const auto f = [](const auto& a) { return sum(square(max(a, 1))) + sum(square(min(a, 1))); };
  const auto [hv] = grad(
      [&](const auto& a) {
        const auto [g] = grad(f, a);
        return sum(g * v);
      },
      x);
  // max at (0, 2) and (1, 1); min at (0, 1) and (1, 0).
  const Tensor<double, 2> expected = {{0.0, 1.0, -2.0}, {4.0, 2.0, 0.0}};
  CHECK_TENSOR_NEAR(hv, expected, 1e-14);
}
