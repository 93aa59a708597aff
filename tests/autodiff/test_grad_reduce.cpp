// Gradient checks of sum and mean over every subset of the axes of a rank-3 tensor, with and
// without keepdims (max/min, prod/var and logsumexp are in the other test_grad_reduce_*.cpp).
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"
#include "autodiff/reduce_subsets.hpp"

using namespace tessera;

namespace {
const auto x3 = grad_test::sample({2, 3, 4}, -2, 2, 41);
}  // namespace

TEST_CASE("sum over every subset of axes") {
  reduce_subsets::check_every_subset(REDUCTION_OVER_AXES(sum), [](const auto& x) { return sum(x); }, x3);
}

TEST_CASE("mean over every subset of axes") {
  reduce_subsets::check_every_subset(REDUCTION_OVER_AXES(mean), [](const auto& x) { return mean(x); }, x3);
}

TEST_CASE("sum and mean by hand: the adjoint broadcast back, divided by the count for mean") {
  const Tensor<double, 2> w = {{1.0, -2.0, 0.5, 3.0}, {-1.5, 0.25, 2.0, -0.75}};  // [2, 4]: axis 1 reduced
  const auto [ds, dm] = grad([&](const auto& a, const auto& b) { return sum(sum(a, 1) * w) + sum(mean(b, 1) * w); }, x3, x3);
  Tensor<double, 3> expected_ds(2, 3, 4), expected_dm(2, 3, 4);
  for (index_t i = 0; i < 2; ++i) {
    for (index_t j = 0; j < 3; ++j) {
      for (index_t k = 0; k < 4; ++k) {
        expected_ds(i, j, k) = w(i, k);
        expected_dm(i, j, k) = w(i, k) / 3.0;
      }
    }
  }
  CHECK_TENSOR_EQ(ds, expected_ds);
  CHECK_TENSOR_NEAR(dm, expected_dm, 1e-16);
}
