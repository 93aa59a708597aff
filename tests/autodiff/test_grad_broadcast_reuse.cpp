// Gradients of a leaf used several times (the sum of its uses, also when some uses broadcast it
// and others do not) and of expressions mixing numbers and tensors on either side.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;
using grad_test::tight;

TEST_CASE("the same leaf used several times gets the sum of its uses") {
  const auto x = sample({3, 4}, -1, 1, 17);
  const auto row = sample({1, 4}, -1, 1, 18);
  // d/dx [x*x + 3x + sin(x) + x*row] = 2x + 3 + cos(x) + row
  const auto [g] = grad([&](const auto& a) { return sum(a * a + a * 3.0 + sin(a) + a * row); }, x);
  const Tensor<double, 2> expected = x * 2.0 + 3.0 + cos(x) + row;
  CHECK_TENSOR_NEAR(g, expected, 1e-14);
  // A broadcast leaf used several times: row meets x twice, once through a sum.
  const auto [dr] = grad([&](const auto& r) { return sum(r * x) + sum(r * r * x); }, row);
  Tensor<double, 2> expected_dr = zeros<double>(1, 4);
  for (index_t i = 0; i < 3; ++i) {
    for (index_t j = 0; j < 4; ++j) expected_dr(0, j) += x(i, j) * (1.0 + 2.0 * row(0, j));
  }
  CHECK_TENSOR_NEAR(dr, expected_dr, 1e-14);
}

TEST_CASE("a leaf used both broadcast and unbroadcast gets each use once") {
  // Each use's adjoint must be reduced to the leaf's shape before the uses are added: adding first
  // would broadcast the unbroadcast use's adjoint and count it once per broadcast element.
  const Tensor<double, 1> m = {1.0, 2.0, 3.0};
  const Tensor<double, 1> b = {0.5};
  const auto [db] = grad([&](const auto& x) { return sum(x * m) + sum(x); }, b);
  CHECK_TENSOR_EQ(db, (Tensor<double, 1>{7.0}));  // (1 + 2 + 3) + 1
  const Tensor<double, 0> s(0.5);
  const auto [ds] = grad([&](const auto& x) { return sum(m * x) + x; }, s);
  CHECK_TENSOR_EQ(ds, (Tensor<double, 0>(7.0)));
  // A bias added to every row of a batch and also penalized on its own (weight decay).
  const auto h = grad_test::sample({4, 3}, -1, 1, 21);
  const auto bias = grad_test::sample({3}, -1, 1, 22);
  GRAD_CHECK([&](const auto& x) { return sum(tanh(h + x)) + sum(square(x)) * 0.5; }, bias, tight());
}

TEST_CASE("numbers on either side") {
  const auto x = sample({3, 4}, 0.5, 2, 19);
  const auto w = sample({3, 4}, -2, 2, 20);
  GRAD_CHECK([&](const auto& a) { return sum((2.0 * a + a * 3.0 - 1.5 + (4.0 - a)) * w); }, x, tight());
  GRAD_CHECK([&](const auto& a) { return sum((1.0 / a + a / 4.0 + pow(a, 2.5) + pow(1.5, a)) * w); }, x, tight());
  // By hand: d/da (2a + a*3 - 1.5 + (4 - a) + 1/a + a/4) = 4.25 - 1/a^2.
  const auto [g] = grad([](const auto& a) { return sum(2.0 * a + a * 3.0 - 1.5 + (4.0 - a) + 1.0 / a + a / 4.0); }, x);
  const Tensor<double, 2> expected = 4.25 - 1.0 / (x * x);
  CHECK_TENSOR_NEAR(g, expected, 1e-14);
}

TEST_CASE("broadcast_to on a variable: the gradient sums over the broadcast axes") {
  const Tensor<double, 2> row = {{0.5, -1.0, 2.0}};
  const Tensor<double, 2> w = {{1.0, 2.0, 3.0}, {-4.0, 5.0, -6.0}};
  const auto [g] = grad([&](const auto& r) { return sum(broadcast_to(r, Shape<2>{2, 3}) * w); }, row);
  CHECK_TENSOR_EQ(g, (Tensor<double, 2>{{-3.0, 7.0, -3.0}}));
  GRAD_CHECK([&](const auto& r) { return sum(exp(broadcast_to(r * r, Shape<3>{4, 2, 3})) * w); }, row, tight());
}
