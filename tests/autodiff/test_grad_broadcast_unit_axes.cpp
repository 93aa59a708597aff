// Gradients through broadcasting where both operands have size-1 axes: each operand's gradient is
// summed over exactly the axes it was broadcast along, and a size-1 axis that met another size-1
// axis is not summed.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;
using grad_test::tight;

TEST_CASE("size-1 axes on both sides: [1, 3, 1] * [2, 1, 4] -> [2, 3, 4]") {
  const auto a = sample({1, 3, 1}, -1, 1, 12);
  const auto b = sample({2, 1, 4}, -1, 1, 13);
  const auto w = sample({2, 3, 4}, -2, 2, 14);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(x * y * w + square(x - y)); }, a, b, tight());
  // By hand for x * y * w: da[0, j, 0] = sum over i, k of w b; db[i, 0, k] = sum over j of w a.
  const auto [da, db] = grad([&](const auto& x, const auto& y) { return sum(x * y * w); }, a, b);
  Tensor<double, 3> expected_da = zeros<double>(1, 3, 1), expected_db = zeros<double>(2, 1, 4);
  for (index_t i = 0; i < 2; ++i) {
    for (index_t j = 0; j < 3; ++j) {
      for (index_t k = 0; k < 4; ++k) {
        expected_da(0, j, 0) += w(i, j, k) * b(i, 0, k);
        expected_db(i, 0, k) += w(i, j, k) * a(0, j, 0);
      }
    }
  }
  CHECK_TENSOR_NEAR(da, expected_da, 1e-14);
  CHECK_TENSOR_NEAR(db, expected_db, 1e-14);
}

TEST_CASE("a size-1 axis meeting another size-1 axis stays unsummed: [3, 1] * [1, 1]") {
  const auto a = sample({3, 1}, -1, 1, 15);
  const auto b = sample({1, 1}, -1, 1, 16);
  const auto [da, db] = grad([](const auto& x, const auto& y) { return sum(x * y); }, a, b);
  const Tensor<double, 2> expected_da = zeros_like(a) + b(0, 0);
  const Tensor<double, 2> expected_db = {{a(0, 0) + a(1, 0) + a(2, 0)}};
  CHECK_TENSOR_NEAR(da, expected_da, 1e-15);
  CHECK_TENSOR_NEAR(db, expected_db, 1e-15);
}
