// Gradient checks of the selecting binary ops: minimum and maximum (both operands, ties) and where
// (both branches; the condition gets no gradient).
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::tight;

namespace {
const Tensor<double, 2> a_any = {{0.31, -0.72, 1.18, -1.43}, {0.57, 0.93, -0.11, 0.24}, {-0.36, 1.47, -1.05, 0.68}};
const Tensor<double, 2> b_any = {{1.12, 0.45, -0.83, 0.66}, {-1.27, 0.38, 0.71, -0.52}, {0.94, -0.29, 1.33, 0.17}};
const Tensor<double, 2> w = {{1.0, -2.0, 0.5, 3.0}, {-1.5, 0.25, 2.0, -0.75}, {0.8, -1.2, 1.7, 0.4}};
}  // namespace

TEST_CASE("minimum") {
  GRAD_CHECK([](const auto& a, const auto& b) { return sum(minimum(a, b) * w); }, a_any, b_any, tight());
}

TEST_CASE("maximum") {
  GRAD_CHECK([](const auto& a, const auto& b) { return sum(maximum(a, b) * w); }, a_any, b_any, tight());
}

TEST_CASE("where: both branches get gradients, the condition's operand gets zero") {
  // c only decides the branch: its gradient is zero (checked numerically too: away from c == 0
  // a small change of c changes nothing).
  GRAD_CHECK([](const auto& a, const auto& b, const auto& c) { return sum(where(c > 0.0, a * b, sin(a) * b * b) * w); },
             a_any, b_any, eval(b_any * a_any), tight());
}

TEST_CASE("where by hand, with a bool tensor condition and a number branch") {
  const Tensor<bool, 2> mask = a_any > 0.0;
  const auto [da, db, dc] = grad(
      [&](const auto& a, const auto& b, const auto& c) { return sum(where(mask, a * 3.0, b) * w + where(c < 0.5, 2.0, c)); },
      a_any, b_any, b_any);
  const Tensor<double, 2> expected_da = where(mask, w * 3.0, 0.0);
  const Tensor<double, 2> expected_db = where(mask, 0.0, w);
  const Tensor<double, 2> expected_dc = where(b_any < 0.5, 0.0, 1.0);
  CHECK_TENSOR_EQ(da, expected_da);
  CHECK_TENSOR_EQ(db, expected_db);
  CHECK_TENSOR_EQ(dc, expected_dc);
}

TEST_CASE("minimum and maximum send a tie's gradient to the left operand") {
  const Tensor<double, 1> a = {1.0, 2.0, 3.0};
  const Tensor<double, 1> b = {1.0, 5.0, -3.0};
  const auto [dmin_a, dmin_b, dmax_a, dmax_b] = grad(
      [](const auto& p, const auto& q, const auto& r, const auto& s) { return sum(minimum(p, q)) + sum(maximum(r, s)); },
      a, b, a, b);
  CHECK_TENSOR_EQ(dmin_a, (Tensor<double, 1>{1, 1, 0}));
  CHECK_TENSOR_EQ(dmin_b, (Tensor<double, 1>{0, 0, 1}));
  CHECK_TENSOR_EQ(dmax_a, (Tensor<double, 1>{1, 0, 1}));
  CHECK_TENSOR_EQ(dmax_b, (Tensor<double, 1>{0, 1, 0}));
}
