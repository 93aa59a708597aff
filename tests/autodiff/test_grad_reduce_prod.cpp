// Gradient checks of prod over every subset of the axes of a rank-3 tensor, with and without
// keepdims, and the gradient where the input has zeros (the product of the others, not 0/0).
#include <cmath>

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

TEST_CASE("prod with zeros: each element still gets the product of the others, never 0/0") {
  const Tensor<double, 1> one_zero = {2.0, 0.0, 3.0, -1.0};
  const auto [d1] = grad([](const auto& a) { return prod(a); }, one_zero);
  CHECK_TENSOR_NEAR(d1, (Tensor<double, 1>{0.0, -6.0, 0.0, 0.0}), 0.0);
  const Tensor<double, 1> two_zeros = {0.0, 2.0, 0.0};
  const auto [d2] = grad([](const auto& a) { return prod(a); }, two_zeros);
  CHECK_TENSOR_NEAR(d2, (Tensor<double, 1>{0.0, 0.0, 0.0}), 0.0);

  // Along each axis of a matrix: only the groups (rows, or columns) with a zero take the
  // prefix/suffix path, and the others must agree with it.
  const Tensor<double, 2> m = {{1.0, 0.0, 3.0}, {2.0, 5.0, 4.0}};
  const auto [drows] = grad([](const auto& a) { return sum(prod(a, 1) * prod(a, 1)); }, m);
  // Row 0 has product 0, so 2 p (others) is 0; row 1: 2 * 40 * {20, 8, 10}.
  CHECK_TENSOR_NEAR(drows, (Tensor<double, 2>{{0.0, 0.0, 0.0}, {1600.0, 640.0, 800.0}}), 1e-12);
  const auto [dcols] = grad([](const auto& a) { return sum(prod(a, 0)); }, m);
  CHECK_TENSOR_NEAR(dcols, (Tensor<double, 2>{{2.0, 5.0, 4.0}, {1.0, 0.0, 3.0}}), 0.0);
  for (const double v : {drows(0, 0), drows(0, 1), dcols(1, 1)}) CHECK(std::isfinite(v));
}

namespace {
/// The product of x's elements other than i, by brute force.
template <class T>
T product_of_others(const Tensor<T, 1>& x, index_t i) {
  T p(1);
  for (index_t j = 0; j < x.size(); ++j) p *= j == i ? T(1) : x(j);
  return p;
}
template <class T>
void check_long_groups() {
  // Every length around the kernel's row widths (16 doubles, 32 floats) and its tail, with no,
  // one and two zeros (at the ends, in the body and in the tail).
  for (index_t n = 1; n <= 70; ++n) {
    for (int zeros = 0; zeros < 3; ++zeros) {
      Tensor<T, 1> x = cast<T>(grad_test::sample({n}, 0.8, 1.25, static_cast<std::uint64_t>(46 + n)));
      if (zeros >= 1) x(n - 1) = T(0);
      if (zeros >= 2) x(n / 3) = T(0);
      const auto [d] = grad([](const auto& v) { return prod(v) * T(3); }, x);
      for (index_t i = 0; i < n; ++i) {
        CAPTURE(n);
        CAPTURE(zeros);
        CAPTURE(i);
        const T expected = T(3) * product_of_others(x, i);
        CHECK(d(i) == doctest::Approx(expected).epsilon(std::is_same_v<T, float> ? 1e-5 : 1e-13));
      }
    }
  }
}
}  // namespace

TEST_CASE("prod over long groups: every length, with zeros, float and double") {
  check_long_groups<double>();
  check_long_groups<float>();
  // Groups along the last axis (contiguous) and along the first (strided), longer than a row.
  const Tensor<double, 2> m = grad_test::sample({3, 37}, 0.8, 1.25, 47);
  const auto [d_last] = grad([](const auto& a) { return sum(prod(a, 1) * Tensor<double, 1>{1.0, -2.0, 0.5}); }, m);
  const Tensor<double, 2> mt = m.transpose(0, 1).contiguous();
  const auto [d_first] = grad([](const auto& a) { return sum(prod(a, 0) * Tensor<double, 1>{1.0, -2.0, 0.5}); }, mt);
  const double weights[] = {1.0, -2.0, 0.5};
  for (index_t r = 0; r < 3; ++r) {
    const Tensor<double, 1> row = m.slice(0, r, r + 1).reshape(Shape<1>{37}).contiguous();
    for (index_t i = 0; i < 37; ++i) {
      const double expected = weights[r] * product_of_others(row, i);
      CHECK(d_last(r, i) == doctest::Approx(expected).epsilon(1e-13));
      CHECK(d_first(i, r) == doctest::Approx(expected).epsilon(1e-13));
    }
  }
}

TEST_CASE("prod: second derivatives (away from zeros)") {
  const Tensor<double, 1> x = grad_test::sample({5}, 0.5, 1.5, 45);
  const auto f = [](const auto& v) {
    const auto [d] = grad([](const auto& u) { return prod(u); }, v);
    return sum(d * d);
  };
  const auto result = check_gradients(f, x);
  CHECK_MESSAGE(result.passed, result.message());
}
