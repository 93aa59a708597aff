// Gradient checks of prod over every subset of the axes of a rank-3 tensor, with and without
// keepdims, and the gradient where the input has zeros (the product of the others, not 0/0).
#include <cmath>

#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"
#include "autodiff/reduce_subsets.hpp"

using namespace tessera;

namespace {
// prod: magnitudes near 1 (the product of all 24 stays moderate), both signs, no zeros.
const Tensor<double, 3> x_prod = grad_test::sample({2, 3, 4}, 0.6, 1.4, 43) * where(grad_test::sample({2, 3, 4}, -1, 1, 44) > 0.0, 1.0, -1.0);
}  // namespace

TEST_CASE("prod over every subset of axes") {
  reduce_subsets::check_every_subset(REDUCTION_OVER_AXES(prod), [](const auto& x) { return prod(x); }, x_prod);
}

TEST_CASE("prod by hand: each element gets the product of the others") {
  const Tensor<double, 1> x = {2.0, -3.0, 0.5, 4.0};
  const auto [dp] = grad([](const auto& a) { return prod(a); }, x);
  CHECK_TENSOR_NEAR(dp, (Tensor<double, 1>{-6.0, 4.0, -24.0, -3.0}), 1e-15);
}

TEST_CASE("prod with zeros: each element still gets the product of the others, never 0/0") {
  const Tensor<double, 1> one_zero = {2.0, 0.0, 3.0, -1.0};
  const auto [d1] = grad([](const auto& a) { return prod(a); }, one_zero);
  CHECK_TENSOR_NEAR(d1, (Tensor<double, 1>{0.0, -6.0, 0.0, 0.0}), 0.0);
  const Tensor<double, 1> two_zeros = {0.0, 2.0, 0.0};
  const auto [d2] = grad([](const auto& a) { return prod(a); }, two_zeros);
  CHECK_TENSOR_NEAR(d2, (Tensor<double, 1>{0.0, 0.0, 0.0}), 0.0);

  // Along each axis of a matrix: only the groups (rows, or columns) with a zero take the
  // prefix/suffix path, and the others must agree with it.
  const Tensor<double, 2> m = {{1.0, 0.0, 3.0}, {2.0, 5.0, 4.0}};
  const auto [drows] = grad([](const auto& a) { return sum(prod(a, 1) * prod(a, 1)); }, m);
  // Row 0 has product 0, so 2 p (others) is 0; row 1: 2 * 40 * {20, 8, 10}.
  CHECK_TENSOR_NEAR(drows, (Tensor<double, 2>{{0.0, 0.0, 0.0}, {1600.0, 640.0, 800.0}}), 1e-12);
  const auto [dcols] = grad([](const auto& a) { return sum(prod(a, 0)); }, m);
  CHECK_TENSOR_NEAR(dcols, (Tensor<double, 2>{{2.0, 5.0, 4.0}, {1.0, 0.0, 3.0}}), 0.0);
  for (const double v : {drows(0, 0), drows(0, 1), dcols(1, 1)}) CHECK(std::isfinite(v));
}

TEST_CASE("prod: second derivatives (away from zeros)") {
  const Tensor<double, 1> x = grad_test::sample({5}, 0.5, 1.5, 45);
  const auto f = [](const auto& v) {
    const auto [d] = grad([](const auto& u) { return prod(u); }, v);
    return sum(d * d);
  };
  const auto result = check_gradients(f, x);
  CHECK_MESSAGE(result.passed, result.message());
}
