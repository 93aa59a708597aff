// Gradient checks of the elementwise arithmetic ops and pow with respect to both operands.
// minimum, maximum and where are in test_grad_binary_select.cpp; matmul, softmax and the shape ops
// in test_grad_matmul.cpp and test_grad_softmax_shape.cpp.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::tight;

namespace {
const Tensor<double, 2> a_any = {{0.31, -0.72, 1.18, -1.43}, {0.57, 0.93, -0.11, 0.24}, {-0.36, 1.47, -1.05, 0.68}};
const Tensor<double, 2> b_any = {{1.12, 0.45, -0.83, 0.66}, {-1.27, 0.38, 0.71, -0.52}, {0.94, -0.29, 1.33, 0.17}};
const Tensor<double, 2> a_pos = {{0.31, 0.72, 1.18, 2.43}, {0.57, 0.93, 3.11, 0.24}, {1.36, 1.47, 0.15, 0.68}};
const Tensor<double, 2> w = {{1.0, -2.0, 0.5, 3.0}, {-1.5, 0.25, 2.0, -0.75}, {0.8, -1.2, 1.7, 0.4}};
}  // namespace

TEST_CASE("add") { GRAD_CHECK([](const auto& a, const auto& b) { return sum((a + b) * w); }, a_any, b_any, tight()); }

TEST_CASE("sub") { GRAD_CHECK([](const auto& a, const auto& b) { return sum((a - b) * w); }, a_any, b_any, tight()); }

TEST_CASE("mul") { GRAD_CHECK([](const auto& a, const auto& b) { return sum(a * b * w); }, a_any, b_any, tight()); }

TEST_CASE("div") { GRAD_CHECK([](const auto& a, const auto& b) { return sum(a / b * w); }, a_any, b_any, tight()); }

TEST_CASE("pow, both operands") {
  GRAD_CHECK([](const auto& a, const auto& b) { return sum(pow(a, b) * w); }, a_pos, b_any, tight());
}

TEST_CASE("pow with a number as exponent or base") {
  GRAD_CHECK([](const auto& a) { return sum(pow(a, 3.0) * w + pow(2.0, a)); }, a_any, tight());
}

TEST_CASE("binary gradients by hand") {
  const auto [da, db] = grad([](const auto& a, const auto& b) { return sum((a * b + a / b) * w); }, a_any, b_any);
  const Tensor<double, 2> expected_da = w * (b_any + 1.0 / b_any);
  const Tensor<double, 2> expected_db = w * (a_any - a_any / (b_any * b_any));
  CHECK_TENSOR_NEAR(da, expected_da, 1e-14);
  CHECK_TENSOR_NEAR(db, expected_db, 1e-14);
}

TEST_CASE("pow's exponent gradient is 0 where the base is 0") {
  const Tensor<double, 1> a = {0.0, 2.0};
  const Tensor<double, 1> b = {2.0, 3.0};
  const auto [da, db] = grad([](const auto& p, const auto& q) { return sum(pow(p, q)); }, a, b);
  CHECK_TENSOR_EQ(da, (Tensor<double, 1>{0.0, 12.0}));
  const Tensor<double, 1> expected_db = {0.0, 8.0 * std::log(2.0)};
  CHECK_TENSOR_NEAR(db, expected_db, 1e-15);
}

TEST_CASE("division by one value: the backward multiplies by its reciprocal, the value is exact") {
  const Tensor<double, 0> s(1.7);
  const auto f = [](const auto& a, const auto& sigma) { return sum(square((a - 0.3) / sigma) * w - log(sigma)); };
  GRAD_CHECK(f, a_any, s, tight());
  // Second order through the rewritten expressions (in sigma only: a second-order check over
  // both arguments costs half a minute of compile time).
  const auto ds_squared = [](const auto& sigma) {
    const auto [ds] = grad([](const auto& v) { return sum(square((a_any - 0.3) / v) - log(v)); }, sigma);
    return ds * ds;
  };
  GRAD_CHECK(ds_squared, s, tight());
  // The value value_and_grad returns is f's own, computed with the division.
  const auto [value, grads] = value_and_grad(f, a_any, s);
  CHECK(value() == Tensor<double, 0>(f(a_any, s))());
  // The rewrite itself: a / s becomes a * (1 / s), within an ulp of the division.
  const auto quotient = (a_any - 0.3) / s;
  static_assert(detail::has_division_by_one_value<std::decay_t<decltype(quotient)>>::value);
  const auto rewritten = detail::with_reciprocals(quotient);
  static_assert(!detail::has_division_by_one_value<std::decay_t<decltype(rewritten)>>::value);
  const Tensor<double, 2> by_reciprocal = rewritten, by_division = quotient;
  CHECK_TENSOR_NEAR(by_reciprocal, by_division, 1e-15);
  // A division by a tensor of the same shape is left alone.
  static_assert(!detail::has_division_by_one_value<decltype(a_any / b_any)>::value);
}
