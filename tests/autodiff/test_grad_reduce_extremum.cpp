// Gradient checks of the max and min reductions over every subset of the axes of a rank-3 tensor
// (distinct elements), and exact gradients with ties: tied elements share the gradient equally.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"
#include "autodiff/reduce_subsets.hpp"

using namespace tessera;

namespace {
const auto x3 = grad_test::sample({2, 3, 4}, -2, 2, 42);  // distinct values: no ties
// [2, 2, 3] with ties inside rows, across rows, and a unique extreme.
const Tensor<double, 3> tied = {{{1, 3, 3}, {2, 2, 2}}, {{5, 4, 5}, {0, 7, 1}}};
}  // namespace

TEST_CASE("max over every subset of axes") {
  reduce_subsets::check_every_subset(REDUCTION_OVER_AXES(max), [](const auto& x) { return max(x); }, x3);
}

TEST_CASE("min over every subset of axes") {
  reduce_subsets::check_every_subset(REDUCTION_OVER_AXES(min), [](const auto& x) { return min(x); }, x3);
}

TEST_CASE("max with ties along the last axis: each tied element gets an equal share") {
  const Tensor<double, 2> w = {{2.0, 3.0}, {-4.0, 0.5}};  // the adjoint of each row's max
  const auto [g] = grad([&](const auto& x) { return sum(max(x, 2) * w); }, tied);
  // rows: [1 3 3] -> 3 twice; [2 2 2] -> 2 three times; [5 4 5] -> 5 twice; [0 7 1] -> 7 once.
  const Tensor<double, 3> expected = {{{0, 1, 1}, {1, 1, 1}}, {{-2, 0, -2}, {0, 0.5, 0}}};
  CHECK_TENSOR_EQ(g, expected);
}

TEST_CASE("min with ties along the last axis, keepdims") {
  const Tensor<double, 3> w = {{{6.0}, {-3.0}}, {{1.0}, {2.0}}};
  const auto [g] = grad([&](const auto& x) { return sum(min(x, 2, keepdims) * w); }, tied);
  // rows: [1 3 3] -> 1 once; [2 2 2] -> three ways; [5 4 5] -> 4 once; [0 7 1] -> 0 once.
  const Tensor<double, 3> expected = {{{6, 0, 0}, {-1, -1, -1}}, {{0, 1, 0}, {2, 0, 0}}};
  CHECK_TENSOR_EQ(g, expected);
}

TEST_CASE("max with ties across two reduced axes") {
  const Tensor<double, 1> w = {4.0, -1.0};  // axes 0 and 2 reduced, axis 1 kept
  const auto [g] = grad([&](const auto& x) { return sum(max(x, {0, 2}) * w); }, tied);
  // axis-1 index 0: {1 3 3 5 4 5} -> 5 at (1,0,0) and (1,0,2); index 1: {2 2 2 0 7 1} -> 7 once.
  const Tensor<double, 3> expected = {{{0, 0, 0}, {0, 0, 0}}, {{2, 0, 2}, {0, -1, 0}}};
  CHECK_TENSOR_EQ(g, expected);
}

TEST_CASE("max and min over all elements with a global tie") {
  const Tensor<double, 2> x = {{1, 4, -2}, {4, 2, -2}};
  const auto [gmax, gmin] = grad([](const auto& a, const auto& b) { return max(a) * 3.0 + min(b); }, x, x);
  CHECK_TENSOR_EQ(gmax, (Tensor<double, 2>{{0, 1.5, 0}, {1.5, 0, 0}}));
  CHECK_TENSOR_EQ(gmin, (Tensor<double, 2>{{0, 0, 0.5}, {0, 0, 0.5}}));
}
