// Reductions, part 5: reductions of elementwise expressions (read in the reduction's own pass) and
// of non-contiguous views (transposed, stepped slices, broadcast_to), against the naive loop.
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

TEST_CASE_TEMPLATE("reductions of elementwise expressions", T, float, double) {
  const auto a = signed_tensor<T>(Shape<3>{4, 7, 9}, 1);
  const auto b = signed_tensor<T>(Shape<3>{4, 7, 9}, 2);
  const double tol = reduce_rtol<T>;
  // The reference reduces the evaluated expression with the naive loop.
  const auto prod_ab = values_of(Tensor<T, 3>(a * b));
  const auto in = shape_vector(a.shape());
  const Tensor<T, 2> s = tessera::sum(a * b, {1});
  check_same(s, reduce_reference(prod_ab, in, {false, true, false}, Kind::sum), tol, "sum(a * b, {1})");
  const auto abs_diff = values_of(Tensor<T, 3>(tessera::abs(a - b)));
  const Tensor<T, 2> m = tessera::max(tessera::abs(a - b), {0});
  check_same(m, reduce_reference(abs_diff, in, {true, false, false}, Kind::max), 0, "max(|a - b|, {0})");
  const auto expa = values_of(Tensor<T, 3>(tessera::exp(a)));
  const Tensor<T, 3> me = tessera::mean(tessera::exp(a), {0, 2}, tessera::keepdims);
  check_same(me, reduce_reference(expa, in, {true, false, true}, Kind::mean), tol, "mean(exp(a), {0, 2}, keepdims)");
  // A broadcast inside the reduced expression: a [4,7,9] times a row [9].
  const auto row = signed_tensor<T>(Shape<1>{9}, 3);
  const auto a_row = values_of(Tensor<T, 3>(a * row));
  const Tensor<T, 1> br = tessera::sum(a * row, {0, 1});
  check_same(br, reduce_reference(a_row, in, {true, true, false}, Kind::sum), tol, "sum(a * row, {0, 1})");
  const Tensor<bool, 1> any_big = tessera::any(a > T(1.4), {0, 2});
  const auto big = values_of(Tensor<bool, 3>(a > T(1.4)));
  check_same(any_big, reduce_reference(big, in, {true, false, true}, Kind::any), 0, "any(a > 1.4, {0, 2})");
  const Tensor<T, 1> v = tessera::var(a * T(2), {0, 1});
  const auto twice = values_of(Tensor<T, 3>(a * T(2)));
  check_same(v, reduce_reference(twice, in, {true, true, false}, Kind::var0), tol, "var(2a, {0, 1})");
  // A reduction used inside a larger expression: x - mean(x, axis, keepdims).
  const Tensor<T, 3> centered = a - tessera::mean(a, {2}, tessera::keepdims);
  const Tensor<T, 2> centered_sum = tessera::sum(centered, {2});
  for (auto value : values_of(centered_sum)) CHECK(std::abs(value) < 1e-5);
}

TEST_CASE_TEMPLATE("reductions of non-contiguous views", T, float, double) {
  const auto x = signed_tensor<T>(Shape<3>{6, 8, 10}, 11);
  const double tol = reduce_rtol<T>;
  // Transposed (axes 0 and 2 swapped): [10, 8, 6].
  const auto t = x.transpose(0, 2);
  const auto tv = values_of(t);
  const auto tin = shape_vector(t.shape());
  check_same(Tensor<T, 2>(tessera::sum(t, {2})), reduce_reference(tv, tin, {false, false, true}, Kind::sum), tol,
             "sum(transpose, {2})");
  check_same(Tensor<T, 1>(tessera::max(t, {0, 1})), reduce_reference(tv, tin, {true, true, false}, Kind::max), 0,
             "max(transpose, {0, 1})");
  check_same(Tensor<T, 3>(tessera::prod(t, {1}, tessera::keepdims)),
             reduce_reference(tv, tin, {false, true, false}, Kind::prod), tol, "prod(transpose, {1}, keepdims)");
  // Sliced with steps: [3, 4, 5].
  const auto s = x.slice(0, 0, 6, 2).slice(1, 1, 8, 2).slice(2, 0, 10, 2);
  const auto sv = values_of(s);
  const auto sin = shape_vector(s.shape());
  REQUIRE(s.shape() == Shape<3>{3, 4, 5});
  check_same(Tensor<T, 1>(tessera::sum(s, {0, 2})), reduce_reference(sv, sin, {true, false, true}, Kind::sum), tol,
             "sum(stepped slice, {0, 2})");
  check_same(Tensor<T, 2>(tessera::min(s, {1})), reduce_reference(sv, sin, {false, true, false}, Kind::min), 0,
             "min(stepped slice, {1})");
  check_same(Tensor<T, 0>(tessera::mean(s)), reduce_reference(sv, sin, {true, true, true}, Kind::mean), tol,
             "mean(stepped slice)");
  // A broadcast_to view (stride 0): summing the repeated axis multiplies by its extent.
  const auto row = signed_tensor<T>(Shape<1>{10}, 12);
  const auto wide = row.broadcast_to({7, 10});
  const Tensor<T, 1> col_sums = tessera::sum(wide, {0});
  for (index_t j = 0; j < 10; ++j) CHECK(col_sums(j) == doctest::Approx(7 * double(row(j))));
  const Tensor<T, 1> row_sums = tessera::sum(wide, {1});
  const double total = values_of(Tensor<T, 0>(tessera::sum(row)))[0];
  for (index_t i = 0; i < 7; ++i) CHECK(row_sums(i) == doctest::Approx(total));
}
