// Gradient checks of softmax and log_softmax along every axis of a rank-3 tensor, and of the lazy
// shape ops transpose() and reshape() on variables and on expressions.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;
using grad_test::tight;

namespace {
const auto x3 = sample({2, 3, 4}, -2, 2, 31);
const auto w3 = sample({2, 3, 4}, -2, 2, 32);
}  // namespace

TEST_CASE("softmax along each axis") {
  for (index_t axis : {0, 1, 2, -1, -3}) {
    CAPTURE(axis);
    GRAD_CHECK([&](const auto& x) { return sum(softmax(x, axis) * w3); }, x3, tight());
  }
}

TEST_CASE("log_softmax along each axis") {
  for (index_t axis : {0, 1, 2, -1, -3}) {
    CAPTURE(axis);
    GRAD_CHECK([&](const auto& x) { return sum(log_softmax(x, axis) * w3); }, x3, tight());
  }
}

TEST_CASE("softmax of an expression, and its rows summing to one give a zero gradient") {
  GRAD_CHECK([&](const auto& x) { return sum(square(softmax(x * 2.0 - 1.0, 1)) * w3); }, x3, tight());
  // sum(softmax(x)) is constant: the gradient is zero up to rounding.
  const auto [g] = grad([](const auto& x) { return sum(softmax(x, 2)); }, x3);
  CHECK_TENSOR_NEAR(g, zeros_like(x3), 1e-15);
}

TEST_CASE("transpose of a variable and of an expression") {
  const auto a = sample({3, 4}, -1, 1, 33);
  const auto w = sample({4, 3}, -2, 2, 34);
  GRAD_CHECK([&](const auto& x) { return sum(transpose(x) * w + transpose(exp(x)) * w * w); }, a, tight());
  // By hand: d/dx sum(x^T * w) = w^T.
  const auto [g] = grad([&](const auto& x) { return sum(transpose(x) * w); }, a);
  const Tensor<double, 2> expected = w.transpose();
  CHECK_TENSOR_EQ(g, expected);
}

TEST_CASE("transpose of a batch of matrices, feeding matmul") {
  const auto b = sample({2, 4, 3}, -1, 1, 35);
  const auto c = sample({2, 4, 5}, -1, 1, 36);
  const auto w = sample({2, 3, 5}, -2, 2, 37);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(matmul(transpose(x), y) * w); }, b, c, tight());
}

TEST_CASE("reshape of a variable and of an expression") {
  const auto w = sample({6, 4}, -2, 2, 38);
  GRAD_CHECK([&](const auto& x) { return sum(reshape(x, {6, 4}) * w + reshape(sin(x), {6, -1}) * w * w); }, x3, tight());
  // By hand: the gradient is w read back in x's shape.
  const auto [g] = grad([&](const auto& x) { return sum(reshape(x, {-1, 4}) * w); }, x3);
  const Tensor<double, 3> expected = w.reshape({2, 3, 4});
  CHECK_TENSOR_EQ(g, expected);
}

TEST_CASE("reshape to a lower rank feeding matmul, and back") {
  const auto m = sample({4, 5}, -1, 1, 39);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(square(reshape(matmul(reshape(x, {6, 4}), y), {2, 3, 5}))); },
             x3, m, tight());
}
