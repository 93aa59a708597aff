// Reductions, part 4: logsumexp over every subset of axes of a rank-3 and a rank-4 tensor (with
// and without keepdims, float and double) against the naive loop in reduce_reference.hpp, and its
// stability for large and infinite inputs.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include <cmath>
#include <limits>

#include "reduce_reference.hpp"

namespace {

using namespace reduce_test;

template <class T, std::size_t R>
void check_logsumexp(const Shape<R>& shape, unsigned seed) {
  const auto x = signed_tensor<T>(shape, seed);
  const auto xs = values_of(x);
  const auto in = shape_vector(shape);
  const double tol = reduce_rtol<T>;
  for_every_subset<R>([&](const std::vector<bool>& red, const auto& ax) {
    check_result(tessera::eval(tessera::logsumexp(x, ax)), xs, in, red, false, Kind::logsumexp, tol, tol);
    check_result(tessera::eval(tessera::logsumexp(x, ax, tessera::keepdims)), xs, in, red, true, Kind::logsumexp, tol,
                 tol);
  });
  const std::vector<bool> all_axes(R, true);
  check_result(tessera::eval(tessera::logsumexp(x)), xs, in, all_axes, false, Kind::logsumexp, tol, tol);
}

}  // namespace

TEST_CASE_TEMPLATE("logsumexp over every subset of axes of a rank-3 tensor", T, float, double) {
  check_logsumexp<T>(Shape<3>{5, 6, 19}, 33);
}

TEST_CASE_TEMPLATE("logsumexp over every subset of axes of a rank-4 tensor", T, float, double) {
  check_logsumexp<T>(Shape<4>{3, 4, 5, 17}, 34);
}

TEST_CASE_TEMPLATE("logsumexp is stable for large and infinite inputs", T, float, double) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  const double ln2 = 0.6931471805599453;
  Tensor<T, 1> big = {T(1000), T(1000)};
  CHECK(tessera::eval(tessera::logsumexp(big))() == doctest::Approx(1000.0 + ln2).epsilon(1e-6));
  Tensor<T, 1> very_negative = {T(-1000), T(-1000), T(-1000), T(-1000)};
  CHECK(tessera::eval(tessera::logsumexp(very_negative))() == doctest::Approx(-1000.0 + 2 * ln2).epsilon(1e-6));
  Tensor<T, 2> rows = {{T(1000), T(0), T(-1000)}, {T(-5), T(-5), T(-5)}};
  const Tensor<T, 1> per_row = tessera::logsumexp(rows, 1);
  CHECK(per_row(0) == doctest::Approx(1000.0));
  CHECK(per_row(1) == doctest::Approx(-5.0 + std::log(3.0)));
  // -inf entries contribute nothing; an all -inf row is -inf (not NaN); +inf wins.
  Tensor<T, 2> masked = {{-inf, T(0), -inf}, {-inf, -inf, -inf}, {inf, T(1), -inf}};
  const Tensor<T, 1> lse = tessera::logsumexp(masked, 1);
  CHECK(lse(0) == T(0));
  CHECK(lse(1) == -inf);
  CHECK(lse(2) == inf);
  const Tensor<T, 2> kept = tessera::logsumexp(masked, 0, tessera::keepdims);
  REQUIRE(kept.shape() == Shape<2>{1, 3});
  CHECK(kept(0, 0) == inf);
  CHECK(kept(0, 1) == doctest::Approx(1.0 + std::log1p(std::exp(-1.0))));
  CHECK(kept(0, 2) == -inf);
}
