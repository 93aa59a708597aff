// Gradient checks of logsumexp over every subset of the axes of a rank-3 tensor, with and without
// keepdims, including values that would overflow exp.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"
#include "autodiff/reduce_subsets.hpp"

using namespace tessera;

namespace {
const auto x3 = grad_test::sample({2, 3, 4}, -2, 2, 46);
}  // namespace

TEST_CASE("logsumexp over every subset of axes") {
  reduce_subsets::check_every_subset(REDUCTION_OVER_AXES(logsumexp), [](const auto& x) { return logsumexp(x); }, x3);
}

TEST_CASE("logsumexp of large values: the gradient is the softmax, without overflow") {
  const Tensor<double, 2> x = {{1000.0, 1001.0, 999.0}, {-1000.0, -1002.0, -1001.0}};
  const auto [g] = grad([](const auto& a) { return sum(logsumexp(a, 1)); }, x);
  Tensor<double, 2> expected(2, 3);
  for (index_t i = 0; i < 2; ++i) {
    double total = 0;
    for (index_t j = 0; j < 3; ++j) total += std::exp(x(i, j) - x(i, 1));
    for (index_t j = 0; j < 3; ++j) expected(i, j) = std::exp(x(i, j) - x(i, 1)) / total;
  }
  // exp(x - logsumexp(x)) inherits logsumexp's rounding (an ulp of 1000 is 1e-13): 1e-12 allows it.
  CHECK_TENSOR_NEAR(g, expected, 1e-12);
}
