// Reductions, part 6: large inputs on the multithreaded paths, empty inputs, integer tensors, and
// axis errors.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "reduce_reference.hpp"

namespace {

using namespace reduce_test;

template <class T, std::size_t R>
Tensor<T, R> uniform_tensor(const Shape<R>& shape, unsigned seed, double lo, double hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  Tensor<T, R> t(shape);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(dist(rng));
  return t;
}

/// values_of(got) == values_of(want) within a relative tolerance.
template <class T, std::size_t R>
void check_same(const Tensor<T, R>& got, const std::vector<double>& want, double rtol, const char* what) {
  INFO(what);
  const auto have = values_of(got);
  REQUIRE(have.size() == want.size());
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < have.size(); ++i) {
    if (!(std::abs(have[i] - want[i]) <= rtol * (1 + std::abs(want[i]))) && bad++ == 0) first = i;
  }
  INFO(bad << " differ; first at " << first << ": got " << have[first] << ", expected " << want[first]);
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE_TEMPLATE("large reductions on the multithreaded paths", T, float, double) {
  // 2^20 elements in [0, 1): one output split across threads, partial sums combined.
  const auto x = uniform_tensor<T>(Shape<1>{index_t{1} << 20}, 21, 0, 1);
  long double exact = 0;
  for (index_t i = 0; i < x.size(); ++i) exact += x.data()[i];
  const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  CHECK(double(tessera::eval(tessera::sum(x))()) == doctest::Approx(double(exact)).epsilon(rtol));
  CHECK(double(tessera::eval(tessera::mean(x))()) == doctest::Approx(double(exact) / double(x.size())).epsilon(rtol));
  const auto xs = values_of(x);
  CHECK(double(tessera::eval(tessera::max(x))()) == *std::max_element(xs.begin(), xs.end()));
  // The same elements as [1024, 1024]: many outputs with a reduced inner axis, and with a kept one.
  const auto m = x.reshape({1024, 1024});
  const auto in = shape_vector(m.shape());
  check_same(Tensor<T, 1>(tessera::sum(m, {1})), reduce_reference(xs, in, {false, true}, Kind::sum), rtol,
             "sum([1024, 1024], {1})");
  check_same(Tensor<T, 1>(tessera::sum(m, {0})), reduce_reference(xs, in, {true, false}, Kind::sum), rtol,
             "sum([1024, 1024], {0})");
  check_same(Tensor<T, 1>(tessera::max(m.transpose(), {0})), reduce_reference(xs, in, {false, true}, Kind::max), 0,
             "max(transpose, {0})");
  // Few outputs, long rows; and a middle axis reduced with chunks splitting the kept rows.
  const auto few = x.reshape({2, 1 << 19});
  check_same(Tensor<T, 1>(tessera::sum(few, {1})),
             reduce_reference(xs, shape_vector(few.shape()), {false, true}, Kind::sum), rtol, "sum([2, 2^19], {1})");
  const auto cube = x.reshape({64, 128, 128});
  check_same(Tensor<T, 2>(tessera::sum(cube, {1})),
             reduce_reference(xs, shape_vector(cube.shape()), {false, true, false}, Kind::sum), rtol,
             "sum([64, 128, 128], {1})");
}

TEST_CASE_TEMPLATE("empty reductions", T, float, double) {
  Tensor<T, 1> e(0);
  CHECK(tessera::eval(tessera::sum(e))() == 0);
  CHECK(tessera::eval(tessera::prod(e))() == 1);
  CHECK(std::isnan(tessera::eval(tessera::mean(e))()));
  CHECK_THROWS_AS(tessera::eval(tessera::max(e)), tessera::shape_error);
  CHECK_THROWS_AS(tessera::eval(tessera::min(e)), tessera::shape_error);
  try {
    (void)tessera::eval(tessera::max(e));
  } catch (const tessera::shape_error& err) {
    CHECK(std::string(err.what()).find("max") != std::string::npos);
  }
  // Reducing the empty axis of [0, 3] gives 3 results; reducing the other axis gives none.
  Tensor<T, 2> z(0, 3);
  const Tensor<T, 1> s0 = tessera::sum(z, {0});
  REQUIRE(s0.shape() == Shape<1>{3});
  for (index_t j = 0; j < 3; ++j) CHECK(s0(j) == 0);
  const Tensor<T, 1> s1 = tessera::sum(z, {1});
  CHECK(s1.shape() == Shape<1>{0});
  CHECK_THROWS_AS(tessera::eval(tessera::max(z, {0})), tessera::shape_error);
  const Tensor<T, 1> m1 = tessera::max(z, {1});  // no results, so nothing to fail
  CHECK(m1.size() == 0);
  Tensor<bool, 1> be(0);
  CHECK(tessera::eval(tessera::all(be))() == true);
  CHECK(tessera::eval(tessera::any(be))() == false);
  // log(sum(exp(x))) over nothing is log(0) = -inf, as torch.logsumexp and scipy (see the report:
  // tessera throws the internal max's "max: cannot reduce an empty extent").
  CHECK(tessera::eval(tessera::logsumexp(e))() == -std::numeric_limits<T>::infinity());
}

TEST_CASE("integer reductions are exact") {
  Tensor<std::int32_t, 2> a = {{1, -2, 3, 40}, {5, 6, -7, 8}, {9, 10, 11, -12}};
  const Tensor<std::int32_t, 1> rows = tessera::sum(a, {1});
  CHECK(rows(0) == 42);
  CHECK(rows(1) == 12);
  CHECK(rows(2) == 18);
  CHECK(tessera::eval(tessera::prod(a, {0}))(1) == -120);
  CHECK(tessera::eval(tessera::max(a))() == 40);
  CHECK(tessera::eval(tessera::min(a, {0}))(3) == -12);
  Tensor<std::int64_t, 1> big(100000);
  for (index_t i = 0; i < big.size(); ++i) big(i) = (std::int64_t{1} << 32) + i;
  const std::int64_t want = 100000 * (std::int64_t{1} << 32) + std::int64_t{100000} * 99999 / 2;
  CHECK(tessera::eval(tessera::sum(big))() == want);
  // Counting with a cast bool -> int64.
  CHECK(tessera::eval(tessera::sum(tessera::cast<std::int64_t>(a > 0)))() == 9);
}

TEST_CASE("repeated and out-of-range axes throw") {
  Tensor<float, 3> x(2, 3, 4);
  CHECK_THROWS_AS(tessera::sum(x, {1, 1}), tessera::shape_error);
  CHECK_THROWS_AS(tessera::sum(x, {2, -1}), tessera::shape_error);  // -1 is axis 2
  CHECK_THROWS_AS(tessera::max(x, {0, 2, 0}), tessera::shape_error);
  try {
    (void)tessera::mean(x, {0, 0});
  } catch (const tessera::shape_error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("mean") != std::string::npos);
    CHECK(msg.find("axis 0") != std::string::npos);
  }
  CHECK_THROWS_AS(tessera::sum(x, {3}), tessera::index_error);
  CHECK_THROWS_AS(tessera::sum(x, {-4}), tessera::index_error);
  CHECK_THROWS_AS(tessera::prod(x, 5), tessera::index_error);
  CHECK_THROWS_AS(tessera::min(x, {0, 7}, tessera::keepdims), tessera::index_error);
  CHECK_THROWS_AS(tessera::logsumexp(x, {1, 1}), tessera::shape_error);
  CHECK_THROWS_AS(tessera::logsumexp(x, 3), tessera::index_error);
  const index_t twice[] = {2, 2};
  CHECK_THROWS_AS(tessera::var(x, twice), tessera::shape_error);
}
