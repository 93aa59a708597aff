// Reductions (expr/reduce.hpp, backend/cpu/reduce.hpp), part 1: sum, mean and prod over every
// subset of axes of a rank-3 and a rank-4 tensor, with and without keepdims, in float and double,
// and all/any over every subset, against the naive loop in reduce_reference.hpp. The reductions
// are split over test_reduce*.cpp to keep each program's compile time down (each reduction
// instantiation costs about a second at -O2): max/min/argmax/argmin in test_reduce_extrema.cpp,
// var in test_reduce_var.cpp, logsumexp in test_reduce_logsumexp.cpp, expressions, views, large
// inputs, empty inputs and errors in test_reduce_expr.cpp and test_reduce_edge.cpp.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include "reduce_reference.hpp"

namespace {

using namespace reduce_test;

template <class T, std::size_t R>
void check_sum_mean_prod(const Shape<R>& shape, unsigned seed) {
  const auto x = signed_tensor<T>(shape, seed);
  const auto xs = values_of(x);
  const auto in = shape_vector(shape);
  const double tol = reduce_rtol<T>;
  for_every_subset<R>([&](const std::vector<bool>& red, const auto& ax) {
    using tessera::keepdims;
    check_result(tessera::eval(tessera::sum(x, ax)), xs, in, red, false, Kind::sum, tol, tol);
    check_result(tessera::eval(tessera::sum(x, ax, keepdims)), xs, in, red, true, Kind::sum, tol, tol);
    check_result(tessera::eval(tessera::mean(x, ax)), xs, in, red, false, Kind::mean, tol, tol);
    check_result(tessera::eval(tessera::mean(x, ax, keepdims)), xs, in, red, true, Kind::mean, tol, tol);
    check_result(tessera::eval(tessera::prod(x, ax)), xs, in, red, false, Kind::prod, tol, tol);
    check_result(tessera::eval(tessera::prod(x, ax, keepdims)), xs, in, red, true, Kind::prod, tol, tol);
  });
  const std::vector<bool> all_axes(R, true);
  check_result(tessera::eval(tessera::sum(x)), xs, in, all_axes, false, Kind::sum, tol, tol);
  check_result(tessera::eval(tessera::mean(x)), xs, in, all_axes, false, Kind::mean, tol, tol);
  check_result(tessera::eval(tessera::prod(x)), xs, in, all_axes, false, Kind::prod, tol, tol);
}

/// all/any over every subset of axes of a bool tensor whose elements are true with probability p.
template <std::size_t R>
void check_all_any(const Shape<R>& shape, double p, unsigned seed) {
  std::mt19937 rng(seed);
  std::bernoulli_distribution bit(p);
  Tensor<bool, R> x(shape);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = bit(rng);
  const auto xs = values_of(x);
  const auto in = shape_vector(shape);
  for_every_subset<R>([&](const std::vector<bool>& red, const auto& ax) {
    using tessera::keepdims;
    check_result(tessera::eval(tessera::all(x, ax)), xs, in, red, false, Kind::all, 0, 0);
    check_result(tessera::eval(tessera::all(x, ax, keepdims)), xs, in, red, true, Kind::all, 0, 0);
    check_result(tessera::eval(tessera::any(x, ax)), xs, in, red, false, Kind::any, 0, 0);
    check_result(tessera::eval(tessera::any(x, ax, keepdims)), xs, in, red, true, Kind::any, 0, 0);
  });
  const std::vector<bool> all_axes(R, true);
  check_result(tessera::eval(tessera::all(x)), xs, in, all_axes, false, Kind::all, 0, 0);
  check_result(tessera::eval(tessera::any(x)), xs, in, all_axes, false, Kind::any, 0, 0);
}

}  // namespace

// Extents are distinct (an axis mix-up changes the result) and the last one exceeds two AVX
// packets, so both the SIMD and the scalar parts of the row kernels run.
TEST_CASE_TEMPLATE("sum, mean and prod over every subset of axes of a rank-3 tensor", T, float, double) {
  check_sum_mean_prod<T>(Shape<3>{5, 6, 19}, 3);
}

TEST_CASE_TEMPLATE("sum, mean and prod over every subset of axes of a rank-4 tensor", T, float, double) {
  check_sum_mean_prod<T>(Shape<4>{3, 4, 5, 17}, 4);
}

TEST_CASE("all and any over every subset of axes") {
  // Mostly-true input for all(), mostly-false for any(), so both outcomes occur.
  check_all_any(Shape<3>{3, 4, 5}, 0.9, 5);
  check_all_any(Shape<3>{3, 4, 5}, 0.1, 6);
  check_all_any(Shape<4>{2, 3, 4, 5}, 0.93, 7);
  check_all_any(Shape<4>{2, 3, 4, 5}, 0.07, 8);
}

TEST_CASE("sum, mean and prod at hand-computed values") {
  Tensor<double, 2> m = {{1, 2, 3}, {4, 5, 6}};
  const Tensor<double, 1> col_sums = tessera::sum(m, 0);
  const Tensor<double, 1> row_means = tessera::mean(m, -1);
  const Tensor<double, 2> row_prods = tessera::prod(m, 1, tessera::keepdims);
  CHECK(col_sums(0) == 5);
  CHECK(col_sums(1) == 7);
  CHECK(col_sums(2) == 9);
  CHECK(row_means(0) == 2);
  CHECK(row_means(1) == 5);
  REQUIRE(row_prods.shape() == Shape<2>{2, 1});
  CHECK(row_prods(0, 0) == 6);
  CHECK(row_prods(1, 0) == 120);
  CHECK(tessera::eval(tessera::sum(m))() == 21);
  CHECK(tessera::eval(tessera::mean(m))() == 3.5);
  CHECK(tessera::eval(tessera::prod(m))() == 720);
}
