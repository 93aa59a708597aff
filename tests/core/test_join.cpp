// concat and stack.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include "core/core_test_support.hpp"

#include <array>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace core_test;

using tessera::index_t;
using tessera::Tensor;

/// start, start+1, ... filled by hand.
Tensor<float, 1> iota(index_t n, float start = 0) {
  Tensor<float, 1> t(n);
  for (index_t i = 0; i < n; ++i) t(i) = start + static_cast<float>(i);
  return t;
}

}  // namespace

// ---- concat ----------------------------------------------------------------------------------------------

TEST_CASE("concat along each axis of a matrix") {
  Tensor<float, 2> a = {{1, 2, 3}, {4, 5, 6}};
  Tensor<float, 2> b = {{7, 8, 9}};
  Tensor<float, 2> c = {{10}, {20}};

  const auto rows = tessera::concat({a, b});  // initializer_list, axis 0
  CHECK(shape_of(rows) == "[3, 3]");
  CHECK(elements(rows) == std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9});

  const auto cols = tessera::concat({a, c, a}, 1);
  CHECK(shape_of(cols) == "[2, 7]");
  CHECK(elements(cols) == std::vector<float>{1, 2, 3, 10, 1, 2, 3, 4, 5, 6, 20, 4, 5, 6});

  const std::vector<Tensor<float, 2>> parts = {c, a};
  const auto last = tessera::concat(parts, -1);  // vector form, negative axis
  CHECK(shape_of(last) == "[2, 4]");
  CHECK(elements(last) == std::vector<float>{10, 1, 2, 3, 20, 4, 5, 6});
  CHECK(elements(tessera::concat(std::vector<Tensor<float, 2>>{a, b}, 0)) == elements(rows));
}

TEST_CASE("concat of rank-1 and rank-3 tensors") {
  CHECK(elements(tessera::concat({iota(2), iota(3, 10), iota(1, 100)})) == std::vector<float>{0, 1, 10, 11, 12, 100});

  Tensor<float, 3> x = iota(12).reshape({2, 3, 2});
  Tensor<float, 3> y = iota(4, 100).reshape({2, 1, 2});
  const auto z = tessera::concat({x, y}, 1);
  CHECK(shape_of(z) == "[2, 4, 2]");
  for (index_t i = 0; i < 2; ++i)
    for (index_t k = 0; k < 2; ++k) {
      for (index_t j = 0; j < 3; ++j) CHECK(z(i, j, k) == x(i, j, k));
      CHECK(z(i, 3, k) == y(i, 0, k));
    }
  const auto w = tessera::concat({x, x}, 2);
  CHECK(shape_of(w) == "[2, 3, 4]");
  CHECK(w(1, 2, 3) == x(1, 2, 1));
  CHECK(w(0, 1, 0) == x(0, 1, 0));
}

TEST_CASE("concat reads views and always returns new storage") {
  Tensor<float, 2> a = iota(6).reshape({2, 3});
  const auto joined = tessera::concat({a.transpose(), a.slice(1, 0, 2).transpose()});  // [3, 2] and [2, 2]
  CHECK(shape_of(joined) == "[5, 2]");
  CHECK(elements(joined) == std::vector<float>{0, 3, 1, 4, 2, 5, 0, 3, 1, 4});

  const auto single = tessera::concat({a});
  CHECK(elements(single) == elements(a));
  CHECK(single.storage_id() != a.storage_id());
  a(0, 0) = 42.0f;
  CHECK(single(0, 0) == 0.0f);

  const auto single_view = tessera::concat({a.transpose()}, 1);
  CHECK(single_view.is_contiguous());
  CHECK(elements(single_view) == elements(a.transpose()));
}

TEST_CASE("concat with empty parts") {
  Tensor<float, 2> a = {{1, 2}};
  Tensor<float, 2> none(0, 2);
  const auto j = tessera::concat({none, a, none});
  CHECK(shape_of(j) == "[1, 2]");
  CHECK(elements(j) == std::vector<float>{1, 2});
  CHECK(shape_of(tessera::concat({none, none})) == "[0, 2]");
}

TEST_CASE("concat of mismatched shapes throws shape_error naming both shapes") {
  Tensor<float, 2> a(2, 3);
  Tensor<float, 2> b(2, 4);
  CHECK_THROWS_AS(tessera::concat({a, b}), tessera::shape_error);
  CHECK_THROWS_WITH_AS(tessera::concat({a, b}, 0), doctest::Contains("[2, 3]"), tessera::shape_error);
  CHECK_THROWS_WITH_AS(tessera::concat({a, b}, 0), doctest::Contains("[2, 4]"), tessera::shape_error);
  CHECK_NOTHROW(tessera::concat({a, b}, 1));
  Tensor<float, 2> c(3, 3);
  CHECK_THROWS_WITH_AS(tessera::concat({a, a, c}, 1), doctest::Contains("[3, 3]"), tessera::shape_error);
  CHECK_THROWS_AS(tessera::concat({a, b}, 2), tessera::index_error);
}

TEST_CASE("concat of no tensors throws value_error") {
  CHECK_THROWS_AS(tessera::concat(std::vector<Tensor<float, 2>>{}), tessera::value_error);
  CHECK_THROWS_AS(tessera::concat(std::vector<Tensor<float, 1>>{}, 0), tessera::value_error);
}

// ---- stack -----------------------------------------------------------------------------------------------

TEST_CASE("stack at every axis position") {
  Tensor<float, 2> a = {{1, 2, 3}, {4, 5, 6}};
  Tensor<float, 2> b = {{10, 20, 30}, {40, 50, 60}};

  const auto s0 = tessera::stack({a, b});
  CHECK(shape_of(s0) == "[2, 2, 3]");
  CHECK(elements(s0) == std::vector<float>{1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 50, 60});

  const auto s1 = tessera::stack({a, b}, 1);
  CHECK(shape_of(s1) == "[2, 2, 3]");
  CHECK(elements(s1) == std::vector<float>{1, 2, 3, 10, 20, 30, 4, 5, 6, 40, 50, 60});

  const std::vector<Tensor<float, 2>> parts = {a, b, a};
  const auto s2 = tessera::stack(parts, 2);
  CHECK(shape_of(s2) == "[2, 3, 3]");
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 3; ++j) {
      CHECK(s2(i, j, 0) == a(i, j));
      CHECK(s2(i, j, 1) == b(i, j));
      CHECK(s2(i, j, 2) == a(i, j));
    }
  CHECK(elements(tessera::stack(parts, -1)) == elements(s2));
  CHECK(elements(tessera::stack({a, b}, -3)) == elements(s0));
  CHECK(elements(tessera::stack({a, b}, -2)) == elements(s1));
}

TEST_CASE("stack of vectors, scalars and views") {
  const auto m = tessera::stack({iota(3), iota(3, 10)});
  CHECK(shape_of(m) == "[2, 3]");
  CHECK(elements(m) == std::vector<float>{0, 1, 2, 10, 11, 12});
  const auto mt = tessera::stack({iota(3), iota(3, 10)}, 1);
  CHECK(elements(mt) == std::vector<float>{0, 10, 1, 11, 2, 12});

  const auto v = tessera::stack({Tensor<std::int64_t, 0>(4), Tensor<std::int64_t, 0>(-1)});
  CHECK(shape_of(v) == "[2]");
  CHECK(elements(v) == std::vector<std::int64_t>{4, -1});

  Tensor<float, 2> a = iota(4).reshape({2, 2});
  const auto s = tessera::stack({a, a.transpose()});
  CHECK(elements(s) == std::vector<float>{0, 1, 2, 3, 0, 2, 1, 3});
  CHECK(s.storage_id() != a.storage_id());
}

TEST_CASE("stack rejects different shapes, a bad axis and an empty list") {
  Tensor<float, 2> a(2, 3);
  Tensor<float, 2> b(3, 2);
  CHECK_THROWS_AS(tessera::stack({a, b}), tessera::shape_error);
  CHECK_THROWS_WITH_AS(tessera::stack({a, a, b}, 1), doctest::Contains("[3, 2]"), tessera::shape_error);
  CHECK_THROWS_WITH_AS(tessera::stack({a, a, b}, 1), doctest::Contains("[2, 3]"), tessera::shape_error);
  CHECK_THROWS_AS(tessera::stack({a, a}, 3), tessera::index_error);
  CHECK_THROWS_AS(tessera::stack({a, a}, -4), tessera::index_error);
  CHECK_THROWS_AS(tessera::stack(std::vector<Tensor<float, 2>>{}), tessera::value_error);
}
