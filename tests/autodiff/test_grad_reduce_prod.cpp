// Gradient checks of prod over every subset of the axes of a rank-3 tensor, with and without
// keepdims (prod's gradient is prod / x, so the inputs have no zeros).
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
