// Gradients through broadcasting: every operand's gradient has the operand's shape and is the sum
// of the output adjoint over the axes it was broadcast along.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;
using grad_test::tight;

TEST_CASE("[3, 1] + [1, 4]: the gradients are the row and column sums of the adjoint") {
  const auto a = sample({3, 1}, -1, 1, 1);
  const auto b = sample({1, 4}, -1, 1, 2);
  const auto w = sample({3, 4}, -2, 2, 3);
  const auto [da, db] = grad([&](const auto& x, const auto& y) { return sum((x + y) * w); }, a, b);
  Tensor<double, 2> expected_da = zeros<double>(3, 1), expected_db = zeros<double>(1, 4);
  for (index_t i = 0; i < 3; ++i) {
    for (index_t j = 0; j < 4; ++j) {
      expected_da(i, 0) += w(i, j);
      expected_db(0, j) += w(i, j);
    }
  }
  CHECK_TENSOR_NEAR(da, expected_da, 1e-15);
  CHECK_TENSOR_NEAR(db, expected_db, 1e-15);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(x * y * w); }, a, b, tight());
}

TEST_CASE("[4] + [3, 4]: the vector's gradient sums over the leading axis") {
  const auto v = sample({4}, -1, 1, 4);
  const auto m = sample({3, 4}, -1, 1, 5);
  const auto w = sample({3, 4}, -2, 2, 6);
  const auto [dv, dm] = grad([&](const auto& x, const auto& y) { return sum((x + y) * w); }, v, m);
  Tensor<double, 1> expected_dv = zeros<double>(4);
  for (index_t i = 0; i < 3; ++i) {
    for (index_t j = 0; j < 4; ++j) expected_dv(j) += w(i, j);
  }
  CHECK_TENSOR_NEAR(dv, expected_dv, 1e-15);
  CHECK_TENSOR_EQ(dm, w);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(exp(x) / (y + 2.0) * w); }, v, m, tight());
}

TEST_CASE("[2, 1, 3] * [4, 1] -> [2, 4, 3]") {
  const auto a = sample({2, 1, 3}, -1, 1, 7);
  const auto b = sample({4, 1}, -1, 1, 8);
  const auto w = sample({2, 4, 3}, -2, 2, 9);
  const auto [da, db] = grad([&](const auto& x, const auto& y) { return sum(x * y * w); }, a, b);
  Tensor<double, 3> expected_da = zeros<double>(2, 1, 3);
  Tensor<double, 2> expected_db = zeros<double>(4, 1);
  for (index_t i = 0; i < 2; ++i) {
    for (index_t j = 0; j < 4; ++j) {
      for (index_t k = 0; k < 3; ++k) {
        expected_da(i, 0, k) += w(i, j, k) * b(j, 0);
        expected_db(j, 0) += w(i, j, k) * a(i, 0, k);
      }
    }
  }
  CHECK_TENSOR_NEAR(da, expected_da, 1e-14);
  CHECK_TENSOR_NEAR(db, expected_db, 1e-14);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(tanh(x * y) * w); }, a, b, tight());
}

TEST_CASE("a rank-0 tensor with a rank-2 tensor") {
  const Tensor<double, 0> s(0.7);
  const auto m = sample({3, 4}, -1, 1, 10);
  const auto w = sample({3, 4}, -2, 2, 11);
  const auto [ds, dm] = grad([&](const auto& x, const auto& y) { return sum(x * y * w); }, s, m);
  const Tensor<double, 0> expected_ds = sum(m * w);
  CHECK_TENSOR_NEAR(ds, expected_ds, 1e-14);
  const Tensor<double, 2> expected_dm = w * 0.7;
  CHECK_TENSOR_NEAR(dm, expected_dm, 1e-15);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(sin(y - x) * w) * x; }, s, m, tight());
}
