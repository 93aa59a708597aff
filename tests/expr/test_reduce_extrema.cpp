// Reductions, part 2: max and min over every subset of axes of a rank-3 and a rank-4 tensor (with
// and without keepdims, float and double) against the naive loop in reduce_reference.hpp; NaN
// propagation; argmax/argmin along every axis and flattened, ties resolved to the first index.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include <cstdint>
#include <limits>

#include "reduce_reference.hpp"

namespace {

using namespace reduce_test;

template <class T, std::size_t R>
void check_max_min(const Shape<R>& shape, unsigned seed) {
  const auto x = signed_tensor<T>(shape, seed);
  const auto xs = values_of(x);
  const auto in = shape_vector(shape);
  for_every_subset<R>([&](const std::vector<bool>& red, const auto& ax) {
    using tessera::keepdims;
    check_result(tessera::eval(tessera::max(x, ax)), xs, in, red, false, Kind::max, 0, 0);
    check_result(tessera::eval(tessera::max(x, ax, keepdims)), xs, in, red, true, Kind::max, 0, 0);
    check_result(tessera::eval(tessera::min(x, ax)), xs, in, red, false, Kind::min, 0, 0);
    check_result(tessera::eval(tessera::min(x, ax, keepdims)), xs, in, red, true, Kind::min, 0, 0);
  });
  const std::vector<bool> all_axes(R, true);
  check_result(tessera::eval(tessera::max(x)), xs, in, all_axes, false, Kind::max, 0, 0);
  check_result(tessera::eval(tessera::min(x)), xs, in, all_axes, false, Kind::min, 0, 0);
}

/// Naive argmax/argmin along `axis` of a contiguous tensor: the first index of the extreme value.
std::vector<double> arg_reference(const std::vector<double>& x, const std::vector<index_t>& shape, std::size_t axis,
                                  bool largest) {
  index_t outer = 1, inner = 1;
  for (std::size_t i = 0; i < axis; ++i) outer *= shape[i];
  for (std::size_t i = axis + 1; i < shape.size(); ++i) inner *= shape[i];
  const index_t n = shape[axis];
  std::vector<double> out;
  for (index_t o = 0; o < outer; ++o) {
    for (index_t i = 0; i < inner; ++i) {
      index_t best = 0;
      for (index_t k = 1; k < n; ++k) {
        const double v = x[static_cast<std::size_t>((o * n + k) * inner + i)];
        const double b = x[static_cast<std::size_t>((o * n + best) * inner + i)];
        if (largest ? v > b : v < b) best = k;
      }
      out.push_back(static_cast<double>(best));
    }
  }
  return out;
}

/// Small integers as T: many ties, so "first index wins" is exercised everywhere.
template <class T, std::size_t R>
Tensor<T, R> tie_tensor(const Shape<R>& shape, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(-2, 2);
  Tensor<T, R> t(shape);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(dist(rng));
  return t;
}

template <class T, std::size_t R>
void check_argmax_argmin(const Shape<R>& shape, unsigned seed) {
  const auto x = tie_tensor<T>(shape, seed);
  const auto xs = values_of(x);
  const auto in = shape_vector(shape);
  for (std::size_t axis = 0; axis < R; ++axis) {
    CAPTURE(axis);
    for (bool negative : {false, true}) {
      const index_t ax = negative ? static_cast<index_t>(axis) - static_cast<index_t>(R) : static_cast<index_t>(axis);
      const Tensor<std::int64_t, R - 1> amax = tessera::argmax(x, ax);
      const Tensor<std::int64_t, R - 1> amin = tessera::argmin(x, ax);
      std::vector<index_t> want_shape = in;
      want_shape.erase(want_shape.begin() + static_cast<std::ptrdiff_t>(axis));
      CHECK(shape_vector(amax.shape()) == want_shape);
      CHECK(values_of(amax) == arg_reference(xs, in, axis, true));
      CHECK(values_of(amin) == arg_reference(xs, in, axis, false));
    }
  }
  // Flattened: the row-major position of the first extreme element.
  const std::vector<index_t> flat{x.size()};
  const Tensor<std::int64_t, 0> fmax = tessera::argmax(x);
  const Tensor<std::int64_t, 0> fmin = tessera::argmin(x);
  CHECK(static_cast<double>(fmax()) == arg_reference(xs, flat, 0, true)[0]);
  CHECK(static_cast<double>(fmin()) == arg_reference(xs, flat, 0, false)[0]);
}

}  // namespace

TEST_CASE_TEMPLATE("max and min over every subset of axes of a rank-3 tensor", T, float, double) {
  check_max_min<T>(Shape<3>{5, 6, 19}, 13);
}

TEST_CASE_TEMPLATE("max and min over every subset of axes of a rank-4 tensor", T, float, double) {
  check_max_min<T>(Shape<4>{3, 4, 5, 17}, 14);
}

TEST_CASE_TEMPLATE("max and min propagate NaN from SIMD lanes and the scalar tail", T, float, double) {
  for (index_t pos : {index_t{0}, index_t{5}, index_t{31}, index_t{64}, index_t{70}}) {
    CAPTURE(pos);
    Tensor<T, 1> x = signed_tensor<T>(Shape<1>{71}, 21);
    x(pos) = std::numeric_limits<T>::quiet_NaN();
    CHECK(std::isnan(tessera::eval(tessera::max(x))()));
    CHECK(std::isnan(tessera::eval(tessera::min(x))()));
    // Along an axis: only the column holding the NaN is NaN.
    const auto m = x.reshape({71, 1}).broadcast_to({71, 3});
    const Tensor<T, 1> cols = tessera::max(m.transpose(), 1);
    CHECK(std::isnan(cols(0)));
  }
  Tensor<T, 2> y = {{1, 2, 3}, {4, 5, 6}};
  y(1, 1) = std::numeric_limits<T>::quiet_NaN();
  const Tensor<T, 1> col_max = tessera::max(y, 0);
  CHECK(col_max(0) == 4);
  CHECK(std::isnan(col_max(1)));
  CHECK(col_max(2) == 6);
  const Tensor<T, 1> row_min = tessera::min(y, 1);
  CHECK(row_min(0) == 1);
  CHECK(std::isnan(row_min(1)));
}

TEST_CASE_TEMPLATE("max and min of infinities", T, float, double) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  Tensor<T, 1> x = {-inf, -inf, -inf};
  CHECK(tessera::eval(tessera::max(x))() == -inf);
  Tensor<T, 1> y = {inf, T(1), -inf};
  CHECK(tessera::eval(tessera::max(y))() == inf);
  CHECK(tessera::eval(tessera::min(y))() == -inf);
}

TEST_CASE_TEMPLATE("argmax and argmin along every axis, ties to the first index", T, float, double) {
  check_argmax_argmin<T>(Shape<3>{4, 5, 6}, 31);
  check_argmax_argmin<T>(Shape<4>{2, 3, 4, 5}, 32);
}

TEST_CASE("argmax and argmin at hand-computed values") {
  Tensor<float, 2> m = {{3, 7, 7, 1}, {9, 2, 9, 9}, {0, 0, 0, 0}};
  const Tensor<std::int64_t, 1> rmax = tessera::argmax(m, 1);
  const Tensor<std::int64_t, 1> rmin = tessera::argmin(m, 1);
  const Tensor<std::int64_t, 1> cmax = tessera::argmax(m, 0);
  CHECK(rmax(0) == 1);  // 7 at 1 and 2: first
  CHECK(rmax(1) == 0);  // 9 at 0, 2 and 3: first
  CHECK(rmax(2) == 0);
  CHECK(rmin(0) == 3);
  CHECK(rmin(1) == 1);
  CHECK(rmin(2) == 0);
  CHECK(cmax(0) == 1);
  CHECK(cmax(1) == 0);
  CHECK(cmax(3) == 1);
  CHECK(tessera::eval(tessera::argmax(m))() == 4);  // flattened: first 9 at (1, 0)
  CHECK(tessera::eval(tessera::argmin(m))() == 8);  // first 0 at (2, 0)
  // Over an expression and a transposed view.
  CHECK(tessera::eval(tessera::argmax(-m))() == 8);
  const Tensor<std::int64_t, 1> tmax = tessera::argmax(m.transpose(), 0);
  CHECK(tmax(0) == 1);
  CHECK(tmax(1) == 0);
  // NaN counts as the largest (and, as in NumPy, also wins argmin).
  Tensor<double, 1> v = {1.0, std::numeric_limits<double>::quiet_NaN(), 5.0, -3.0};
  CHECK(tessera::eval(tessera::argmax(v))() == 1);
  CHECK(tessera::eval(tessera::argmin(v))() == 1);
  // Integer tensors.
  Tensor<std::int32_t, 1> labels = {4, -2, 9, 9, -2};
  CHECK(tessera::eval(tessera::argmax(labels))() == 2);
  CHECK(tessera::eval(tessera::argmin(labels))() == 1);
}

TEST_CASE("argmax of an empty axis and out-of-range axes throw") {
  Tensor<float, 2> e(3, 0);
  CHECK_THROWS_AS(tessera::eval(tessera::argmax(e, 1)), tessera::shape_error);
  CHECK_THROWS_AS(tessera::eval(tessera::argmin(e)), tessera::shape_error);
  Tensor<float, 2> m(3, 4);
  CHECK_THROWS_AS(tessera::argmax(m, 2), tessera::index_error);
  CHECK_THROWS_AS(tessera::argmin(m, -3), tessera::index_error);
  const Tensor<std::int64_t, 1> ok = tessera::argmax(e, 0);  // 0 results: nothing to compare
  CHECK(ok.size() == 0);
}
