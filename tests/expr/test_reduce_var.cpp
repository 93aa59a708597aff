// Reductions, part 3: var (ddof 0 and 1) over every subset of axes of a rank-3 and a rank-4
// tensor (with and without keepdims, float and double) against the naive loop in
// reduce_reference.hpp, hand-computed values and ddof edge cases.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include <cmath>

#include "reduce_reference.hpp"

namespace {

using namespace reduce_test;

template <class T, std::size_t R>
void check_var(const Shape<R>& shape, unsigned seed) {
  const auto x = signed_tensor<T>(shape, seed);
  const auto xs = values_of(x);
  const auto in = shape_vector(shape);
  const double tol = reduce_rtol<T>;
  for_every_subset<R>([&](const std::vector<bool>& red, const auto& ax) {
    using tessera::keepdims;
    check_result(tessera::eval(tessera::var(x, ax)), xs, in, red, false, Kind::var0, tol, tol);
    check_result(tessera::eval(tessera::var(x, ax, keepdims)), xs, in, red, true, Kind::var0, tol, tol);
    check_result(tessera::eval(tessera::var(x, ax, tessera::ddof(1))), xs, in, red, false, Kind::var1, tol, tol);
    check_result(tessera::eval(tessera::var(x, ax, keepdims, tessera::ddof(1))), xs, in, red, true, Kind::var1, tol, tol);
  });
  const std::vector<bool> all_axes(R, true);
  check_result(tessera::eval(tessera::var(x)), xs, in, all_axes, false, Kind::var0, tol, tol);
  check_result(tessera::eval(tessera::var(x, tessera::ddof(1))), xs, in, all_axes, false, Kind::var1, tol, tol);
}

}  // namespace

TEST_CASE_TEMPLATE("var over every subset of axes of a rank-3 tensor", T, float, double) {
  check_var<T>(Shape<3>{5, 6, 19}, 23);
}

TEST_CASE_TEMPLATE("var over every subset of axes of a rank-4 tensor", T, float, double) {
  check_var<T>(Shape<4>{3, 4, 5, 17}, 24);
}

TEST_CASE_TEMPLATE("var at hand-computed values and ddof edge cases", T, float, double) {
  Tensor<T, 2> m = {{1, 2, 3, 4}, {2, 2, 2, 2}};
  const Tensor<T, 1> v0 = tessera::var(m, {1});
  const Tensor<T, 1> v1 = tessera::var(m, {1}, tessera::ddof(1));
  CHECK(v0(0) == doctest::Approx(1.25));
  CHECK(v1(0) == doctest::Approx(5.0 / 3.0));
  CHECK(v0(1) == 0);
  CHECK(v1(1) == 0);
  CHECK(tessera::eval(tessera::var(m))() == doctest::Approx(0.6875));
  // var(x, 1) is the variance along axis 1, like sum(x, 1); ddof is always spelled ddof(n).
  const Tensor<T, 1> along1 = tessera::var(m, 1);
  CHECK(along1(0) == doctest::Approx(1.25));
  CHECK(tessera::eval(tessera::var(m, tessera::ddof(1)))() == doctest::Approx(0.6875 * 8 / 7));
  // ddof >= n leaves no degrees of freedom: NaN, as NumPy.
  Tensor<T, 2> single = {{T(3)}, {T(5)}};
  const Tensor<T, 1> one_each = tessera::var(single, {1}, tessera::ddof(1));
  CHECK(std::isnan(one_each(0)));
  CHECK(std::isnan(tessera::eval(tessera::var(m, {1}, tessera::ddof(4)))(0)));
  // Large offsets do not destroy the result (two-pass: mean first).
  Tensor<T, 1> offset = {T(1e4 + 1), T(1e4 + 2), T(1e4 + 3)};
  CHECK(tessera::eval(tessera::var(offset))() == doctest::Approx(2.0 / 3.0).epsilon(1e-3));
}
