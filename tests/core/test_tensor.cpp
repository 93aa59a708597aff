// Tensor construction, element access, inspection, dtypes, handle semantics and in-place writes.
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
using tessera::Shape;
using tessera::Tensor;

long allocations() { return tessera::instrument::counters().allocations.load(); }

}  // namespace

// ---- construction -------------------------------------------------------------------------------

TEST_CASE("nested initializer lists build tensors of rank 0 to 4") {
  SUBCASE("rank 0 holds one value") {
    Tensor<float, 0> s = 2.5f;
    CHECK(s.size() == 1);
    CHECK(s.item() == 2.5f);
    CHECK(s() == 2.5f);
    CHECK(shape_of(s) == "[]");
  }
  SUBCASE("rank 1") {
    Tensor<float, 1> v = {1, 2, 3};
    CHECK(shape_of(v) == "[3]");
    CHECK(strides_of(v) == "[1]");
    CHECK(elements(v) == std::vector<float>{1, 2, 3});
  }
  SUBCASE("rank 2 is row-major") {
    Tensor<double, 2> m = {{1, 2, 3}, {4, 5, 6}};
    CHECK(shape_of(m) == "[2, 3]");
    CHECK(strides_of(m) == "[3, 1]");
    CHECK(m(0, 2) == 3.0);
    CHECK(m(1, 0) == 4.0);
    CHECK(m.data()[4] == 5.0);
  }
  SUBCASE("rank 3") {
    Tensor<std::int32_t, 3> t = {{{1, 2}, {3, 4}, {5, 6}}, {{7, 8}, {9, 10}, {11, 12}}};
    CHECK(shape_of(t) == "[2, 3, 2]");
    CHECK(strides_of(t) == "[6, 2, 1]");
    for (index_t i = 0; i < 2; ++i)
      for (index_t j = 0; j < 3; ++j)
        for (index_t k = 0; k < 2; ++k) CHECK(t(i, j, k) == static_cast<std::int32_t>(1 + 6 * i + 2 * j + k));
  }
  SUBCASE("rank 4") {
    Tensor<std::int64_t, 4> t = {{{{1, 2}}, {{3, 4}}}, {{{5, 6}}, {{7, 8}}}, {{{9, 10}}, {{11, 12}}}};
    CHECK(shape_of(t) == "[3, 2, 1, 2]");
    CHECK(strides_of(t) == "[4, 2, 2, 1]");
    CHECK(t(2, 1, 0, 1) == 12);
    CHECK(t(1, 0, 0, 1) == 6);
    CHECK(elements(t) == std::vector<std::int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  }
  SUBCASE("an empty list gives an empty tensor") {
    Tensor<float, 2> e = std::initializer_list<std::initializer_list<float>>{};
    CHECK(shape_of(e) == "[0, 0]");
    CHECK(e.size() == 0);
    CHECK(e.empty());
  }
}

TEST_CASE("a ragged initializer list throws shape_error") {
  using L1 = std::initializer_list<float>;
  using L2 = std::initializer_list<L1>;
  using L3 = std::initializer_list<L2>;
  CHECK_THROWS_AS((Tensor<float, 2>(L2{{1, 2}, {3}})), tessera::shape_error);
  CHECK_THROWS_AS((Tensor<float, 2>(L2{{1}, {2, 3}})), tessera::shape_error);
  CHECK_THROWS_AS((Tensor<float, 2>(L2{{1, 2}, {}})), tessera::shape_error);
  CHECK_THROWS_AS((Tensor<float, 3>(L3{{{1, 2}, {3, 4}}, {{5, 6}, {7}}})), tessera::shape_error);
  CHECK_THROWS_AS((Tensor<float, 3>(L3{{{1, 2}, {3, 4}}, {{5, 6}}})), tessera::shape_error);
  CHECK_THROWS_WITH_AS((Tensor<float, 2>(L2{{1, 2}, {3}})), doctest::Contains("ragged"), tessera::shape_error);
}

TEST_CASE("the extents constructor zero-fills") {
  Tensor<float, 2> a(3, 4);
  CHECK(shape_of(a) == "[3, 4]");
  CHECK(strides_of(a) == "[4, 1]");
  CHECK(a.size() == 12);
  CHECK(elements(a) == std::vector<float>(12, 0.0f));

  Tensor<std::int64_t, 3> b(Shape<3>{2, 3, 4});
  CHECK(shape_of(b) == "[2, 3, 4]");
  CHECK(strides_of(b) == "[12, 4, 1]");
  CHECK(elements(b) == std::vector<std::int64_t>(24, 0));

  Tensor<double, 1> c(std::size_t{5});  // any integral type names an extent
  CHECK(shape_of(c) == "[5]");

  Tensor<float, 2> z(0, 5);
  CHECK(z.size() == 0);
  CHECK(z.empty());
  CHECK(shape_of(z) == "[0, 5]");
}

TEST_CASE("a negative extent throws shape_error naming the shape") {
  CHECK_THROWS_AS((Tensor<float, 2>(2, -1)), tessera::shape_error);
  CHECK_THROWS_AS((Tensor<float, 1>(-3)), tessera::shape_error);
  CHECK_THROWS_AS((Tensor<float, 3>(Shape<3>{1, 2, -5})), tessera::shape_error);
  CHECK_THROWS_WITH_AS((Tensor<float, 2>(2, -1)), doctest::Contains("[2, -1]"), tessera::shape_error);
}

TEST_CASE("default-constructed tensors") {
  Tensor<float, 2> e;
  CHECK(e.size() == 0);
  CHECK(e.empty());
  CHECK(shape_of(e) == "[0, 0]");
  Tensor<double, 0> s;
  CHECK(s.size() == 1);
  CHECK(s.item() == 0.0);
}

TEST_CASE("a tensor can be constructed from an expression") {
  Tensor<float, 2> a = {{1, 2}, {3, 4}};
  Tensor<float, 2> b = {{10, 20}, {30, 40}};
  Tensor<float, 2> c = a + b * 2.0f;
  CHECK(elements(c) == std::vector<float>{21, 42, 63, 84});
  CHECK(c.storage_id() != a.storage_id());
  CHECK(c.storage_id() != b.storage_id());
  CHECK(c.is_contiguous());
}

// ---- element access and inspection ----------------------------------------------------------------

TEST_CASE("element access reads and writes and is bounds-checked") {
  Tensor<float, 2> a(2, 3);
  a(0, 0) = 1.0f;
  a(1, 2) = 7.0f;
  const Tensor<float, 2>& ca = a;
  CHECK(ca(1, 2) == 7.0f);
  CHECK(elements(a) == std::vector<float>{1, 0, 0, 0, 0, 7});

  CHECK_THROWS_AS(a(2, 0), tessera::index_error);
  CHECK_THROWS_AS(a(0, 3), tessera::index_error);
  CHECK_THROWS_AS(a(-1, 0), tessera::index_error);
  CHECK_THROWS_AS(a(0, -1), tessera::index_error);
  CHECK_THROWS_AS(ca(5, 5), tessera::index_error);
  CHECK_THROWS_WITH_AS(a(0, 3), doctest::Contains("[0, 3]"), tessera::index_error);
  CHECK_THROWS_WITH_AS(a(0, 3), doctest::Contains("[2, 3]"), tessera::index_error);
  CHECK_THROWS_WITH_AS(a(0, 3), doctest::Contains("axis 1"), tessera::index_error);
  CHECK_NOTHROW(a(1, 2));

  Tensor<float, 1> empty_vec(0);
  CHECK_THROWS_AS(empty_vec(0), tessera::index_error);
}

TEST_CASE("shape(axis) accepts negative axes and rejects out-of-range ones") {
  Tensor<float, 3> t(2, 3, 4);
  CHECK(t.shape(0) == 2);
  CHECK(t.shape(2) == 4);
  CHECK(t.shape(-1) == 4);
  CHECK(t.shape(-3) == 2);
  CHECK_THROWS_AS(t.shape(3), tessera::index_error);
  CHECK_THROWS_AS(t.shape(-4), tessera::index_error);
}

TEST_CASE("item() returns the single element and rejects larger tensors") {
  Tensor<double, 2> one = {{4.5}};
  CHECK(one.item() == 4.5);
  Tensor<double, 3> one3(1, 1, 1);
  one3(0, 0, 0) = -2.0;
  CHECK(one3.item() == -2.0);
  Tensor<double, 1> two = {1, 2};
  CHECK_THROWS_AS(two.item(), tessera::shape_error);
  CHECK_THROWS_WITH_AS(two.item(), doctest::Contains("[2]"), tessera::shape_error);
  Tensor<double, 1> none(0);
  CHECK_THROWS_AS(none.item(), tessera::shape_error);
}

TEST_CASE("is_contiguous() tells dense row-major layouts apart") {
  Tensor<float, 2> a(3, 4);
  CHECK(a.is_contiguous());
  CHECK_FALSE(a.transpose().is_contiguous());
  CHECK(a.slice(0, 1, 3).is_contiguous());      // whole rows
  CHECK_FALSE(a.slice(1, 1, 3).is_contiguous());  // part of each row
  CHECK_FALSE(a.slice(0, 0, 3, 2).is_contiguous());
  CHECK(a.select(0, 1).is_contiguous());
  CHECK_FALSE(a.select(1, 1).is_contiguous());
  CHECK(a.slice(1, 2, 3).transpose().slice(0, 0, 1).is_contiguous() == false);
  Tensor<float, 2> row(1, 4);
  CHECK(row.transpose().transpose().is_contiguous());
  Tensor<float, 2> col(4, 1);
  CHECK(col.transpose().is_contiguous());  // a size-1 axis's stride does not matter
}

TEST_CASE("supported element types") {
  CHECK(std::string(Tensor<float, 1>::dtype()) == "float32");
  CHECK(std::string(Tensor<double, 1>::dtype()) == "float64");
  CHECK(std::string(Tensor<std::int32_t, 1>::dtype()) == "int32");
  CHECK(std::string(Tensor<std::int64_t, 1>::dtype()) == "int64");
  CHECK(std::string(Tensor<bool, 1>::dtype()) == "bool");

  Tensor<double, 1> d = {1.0 + 1e-12, 2.0};
  CHECK(d(0) != 1.0);  // double precision is kept
  CHECK(d(0) - 1.0 == doctest::Approx(1e-12).epsilon(1e-3));

  Tensor<std::int64_t, 1> big = {std::int64_t{1} << 40, -(std::int64_t{1} << 50)};
  CHECK(big(0) == (std::int64_t{1} << 40));
  CHECK(big(1) == -(std::int64_t{1} << 50));
  Tensor<std::int64_t, 1> big2 = big * std::int64_t{2};
  CHECK(big2(0) == (std::int64_t{1} << 41));

  Tensor<std::int32_t, 1> i = {7, -7};
  Tensor<std::int32_t, 1> q = i / 2;
  CHECK(elements(q) == std::vector<std::int32_t>{3, -3});  // C++ integer division truncates

  Tensor<bool, 1> b = {true, false, true};
  CHECK(b(0));
  CHECK_FALSE(b(1));
  b(1) = true;
  CHECK(elements(b) == std::vector<bool>{true, true, true});
  Tensor<bool, 2> bz(2, 2);
  CHECK(elements(bz) == std::vector<bool>(4, false));
}

// ---- handle semantics -----------------------------------------------------------------------------

TEST_CASE("copies share storage; clone() is deep") {
  Tensor<float, 2> a = {{1, 2}, {3, 4}};
  Tensor<float, 2> b = a;  // copy: same storage
  CHECK(b.storage_id() == a.storage_id());
  CHECK(b.data() == a.data());
  b(0, 0) = 100.0f;
  CHECK(a(0, 0) == 100.0f);

  Tensor<float, 2> c;
  c = a;  // copy assignment rebinds c to a's storage
  CHECK(c.data() == a.data());
  c(1, 1) = -4.0f;
  CHECK(a(1, 1) == -4.0f);

  Tensor<float, 2> d = a.clone();
  CHECK(d.storage_id() != a.storage_id());
  CHECK(elements(d) == elements(a));
  d(0, 1) = 55.0f;
  CHECK(a(0, 1) == 2.0f);
  a(1, 0) = 66.0f;
  CHECK(d(1, 0) == 3.0f);

  Tensor<float, 2> moved = std::move(d);
  CHECK(moved(0, 1) == 55.0f);
}

TEST_CASE("clone() of a view is a contiguous copy of just the viewed elements") {
  Tensor<float, 2> a = {{1, 2, 3}, {4, 5, 6}};
  Tensor<float, 2> t = a.transpose().clone();
  CHECK(t.is_contiguous());
  CHECK(shape_of(t) == "[3, 2]");
  CHECK(strides_of(t) == "[2, 1]");
  CHECK(std::vector<float>(t.data(), t.data() + 6) == std::vector<float>{1, 4, 2, 5, 3, 6});

  Tensor<float, 2> s = a.slice(1, 1, 3).clone();
  CHECK(std::vector<float>(s.data(), s.data() + 4) == std::vector<float>{2, 3, 5, 6});
  s(0, 0) = 0.0f;
  CHECK(a(0, 1) == 2.0f);
}

// ---- `t = expr`: rebinding and buffer reuse ------------------------------------------------------

TEST_CASE("assigning an expression to an unshared tensor reuses its buffer") {
  Tensor<float, 1> u = {1, 2, 3, 4};
  Tensor<float, 1> v = {10, 20, 30, 40};
  Tensor<float, 1> t(4);
  const float* before = t.data();
  const long allocs = allocations();
  t = u + v;
  CHECK(t.data() == before);
  CHECK(allocations() == allocs);
  CHECK(elements(t) == std::vector<float>{11, 22, 33, 44});
}

TEST_CASE("assigning an expression to a shared tensor rebinds it and leaves the other handle alone") {
  Tensor<float, 1> u = {1, 2, 3};
  Tensor<float, 1> t = {7, 8, 9};
  Tensor<float, 1> alias = t;
  t = u * 2.0f;
  CHECK(elements(t) == std::vector<float>{2, 4, 6});
  CHECK(elements(alias) == std::vector<float>{7, 8, 9});
  CHECK(t.storage_id() != alias.storage_id());
}

TEST_CASE("assigning an expression of another shape rebinds to a new buffer of that shape") {
  Tensor<float, 2> t(2, 2);
  Tensor<float, 2> w = {{1, 2, 3}};
  t = w + 1.0f;
  CHECK(shape_of(t) == "[1, 3]");
  CHECK(elements(t) == std::vector<float>{2, 3, 4});
}

TEST_CASE("assigning an expression to a named view rebinds the view, not the viewed elements") {
  Tensor<float, 2> base = {{1, 2}, {3, 4}};
  Tensor<float, 2> v = base.slice(0, 0, 1);
  v = v * 10.0f;
  CHECK(elements(v) == std::vector<float>{10, 20});
  CHECK(elements(base) == std::vector<float>{1, 2, 3, 4});
}

TEST_CASE("a tensor may appear on both sides of `t = expr`") {
  Tensor<float, 1> t = {1, 2, 3};
  t = t * t + 1.0f;
  CHECK(elements(t) == std::vector<float>{2, 5, 10});
  Tensor<float, 2> m = {{1, 2}, {3, 4}};
  m = m.transpose() + m;
  CHECK(elements(m) == std::vector<float>{2, 5, 5, 8});
}

// ---- writing into views ----------------------------------------------------------------------------

TEST_CASE("assigning to a temporary view writes through to the base tensor") {
  Tensor<float, 2> a(3, 4);
  a.slice(0, 1, 3) = tessera::ones<float>(2, 4) * 5.0f;
  CHECK(elements(a) == std::vector<float>{0, 0, 0, 0, 5, 5, 5, 5, 5, 5, 5, 5});

  // columns 0 and 3 ([3, 2]) from a [3, 1] column, broadcast
  a.slice(1, 0, 4, 3) = Tensor<float, 2>{{-1}, {-2}, {-3}};
  CHECK(elements(a) == std::vector<float>{-1, 0, 0, -1, -2, 5, 5, -2, -3, 5, 5, -3});

  a.select(0, 0) = Tensor<float, 1>{9, 8, 7, 6};
  CHECK(elements(a.select(0, 0)) == std::vector<float>{9, 8, 7, 6});
  CHECK(a(1, 0) == -2.0f);

  a.transpose().slice(0, 1, 2) = Tensor<float, 2>{{100, 200, 300}};  // column 1
  CHECK(a(0, 1) == 100.0f);
  CHECK(a(1, 1) == 200.0f);
  CHECK(a(2, 1) == 300.0f);
}

TEST_CASE("assigning a tensor to a temporary view copies elements, it does not rebind") {
  Tensor<float, 2> a(2, 3);
  Tensor<float, 2> src = {{1, 2, 3}};
  a.slice(0, 1, 2) = src;
  CHECK(elements(a) == std::vector<float>{0, 0, 0, 1, 2, 3});
  src(0, 0) = 50.0f;  // a holds copies, not src's storage
  CHECK(a(1, 0) == 1.0f);
  CHECK(a.storage_id() != src.storage_id());
}

TEST_CASE("assign() writes through views and broadcasts") {
  Tensor<float, 2> a(3, 4);
  Tensor<float, 2> t = a.transpose();  // named view: assign() writes into a
  t.assign(Tensor<float, 2>{{1, 2, 3}});  // t(i, j) = x[j], i.e. a(j, i) = x[j]
  for (index_t r = 0; r < 3; ++r)
    for (index_t c = 0; c < 4; ++c) CHECK(a(r, c) == static_cast<float>(r + 1));

  Tensor<float, 2> b(2, 3);
  const float* before = b.data();
  b.assign(Tensor<float, 2>{{1}, {2}});
  CHECK(b.data() == before);
  CHECK(elements(b) == std::vector<float>{1, 1, 1, 2, 2, 2});

  Tensor<double, 3> c(2, 2, 2);
  c.assign(Tensor<double, 3>{{{3.5}}});
  CHECK(elements(c) == std::vector<double>(8, 3.5));

  Tensor<float, 1> big(100000);  // large enough for the threaded path
  auto sub = big.slice(0, 1, 100000, 3);
  sub.assign(tessera::ones<float>(1) * 2.0f);
  for (index_t i = 0; i < 100000; ++i) {
    if (big(i) != ((i % 3 == 1) ? 2.0f : 0.0f)) {
      FAIL_CHECK("wrong element at " << i << ": " << big(i));
      break;
    }
  }
}

TEST_CASE("assign() broadcasts an expression of lower rank") {
  Tensor<float, 2> a(3, 4);
  Tensor<float, 2> t = a.transpose();   // [4, 3]
  t.assign(Tensor<float, 1>{1, 2, 3});  // t(i, j) = x[j], i.e. a(j, i) = x[j]
  for (index_t r = 0; r < 3; ++r)
    for (index_t c = 0; c < 4; ++c) CHECK(a(r, c) == static_cast<float>(r + 1));

  Tensor<double, 3> c(2, 2, 2);
  c.assign(Tensor<double, 0>(3.5));
  CHECK(elements(c) == std::vector<double>(8, 3.5));

  a.slice(0, 1, 3) = Tensor<float, 1>{5, 6, 7, 8};  // temporary view, rank-1 right-hand side
  CHECK(elements(a) == std::vector<float>{1, 1, 1, 1, 5, 6, 7, 8, 5, 6, 7, 8});

  a.select(1, 0).assign(Tensor<float, 0>(-1.0f) * 2.0f);
  CHECK(elements(a.select(1, 0)) == std::vector<float>{-2, -2, -2});

  Tensor<float, 1> wrong = {1, 2};
  CHECK_THROWS_WITH_AS(a.assign(wrong), doctest::Contains("[3, 4]"), tessera::shape_error);
  CHECK_THROWS_WITH_AS(a.assign(wrong), doctest::Contains("[2]"), tessera::shape_error);
}

TEST_CASE("assign() with a shape that does not fit throws shape_error naming both shapes") {
  Tensor<float, 2> a(2, 3);
  Tensor<float, 2> two = {{1, 2}};
  CHECK_THROWS_AS(a.assign(two), tessera::shape_error);
  CHECK_THROWS_WITH_AS(a.assign(two), doctest::Contains("[2, 3]"), tessera::shape_error);
  CHECK_THROWS_WITH_AS(a.assign(two), doctest::Contains("[1, 2]"), tessera::shape_error);

  Tensor<float, 2> four_rows(4, 3);
  CHECK_THROWS_WITH_AS(a.assign(four_rows), doctest::Contains("[4, 3]"), tessera::shape_error);
  CHECK_THROWS_WITH_AS(a.assign(four_rows), doctest::Contains("[2, 3]"), tessera::shape_error);

  // broadcasting would have to grow the destination: [1, 3] <- [2, 3]
  Tensor<float, 2> row(1, 3);
  Tensor<float, 2> two_rows = {{1, 2, 3}, {4, 5, 6}};
  CHECK_THROWS_WITH_AS(row.assign(two_rows), doctest::Contains("[1, 3]"), tessera::shape_error);
  CHECK_THROWS_WITH_AS(row.assign(two_rows), doctest::Contains("[2, 3]"), tessera::shape_error);
  CHECK(elements(row) == std::vector<float>{0, 0, 0});  // nothing written

  CHECK_THROWS_AS(a.slice(0, 0, 1) = two_rows, tessera::shape_error);
}

// ---- compound assignment and fill --------------------------------------------------------------------

TEST_CASE("compound assignment works in place") {
  Tensor<float, 2> a = {{1, 2, 3}, {4, 5, 6}};
  Tensor<float, 2> alias = a;
  const float* before = a.data();
  Tensor<float, 1> row = {10, 20, 30};

  a += row;
  CHECK(a.data() == before);
  CHECK(elements(alias) == std::vector<float>{11, 22, 33, 14, 25, 36});
  a -= 1.0f;
  CHECK(elements(alias) == std::vector<float>{10, 21, 32, 13, 24, 35});
  a *= Tensor<float, 2>{{2}, {-1}};
  CHECK(elements(alias) == std::vector<float>{20, 42, 64, -13, -24, -35});
  a /= 2.0f;
  CHECK(elements(alias) == std::vector<float>{10, 21, 32, -6.5f, -12, -17.5f});
  a += a;
  CHECK(elements(alias) == std::vector<float>{20, 42, 64, -13, -24, -35});
  CHECK(a.data() == before);

  Tensor<std::int32_t, 1> i = {7, 9, -9};
  i /= 2;
  CHECK(elements(i) == std::vector<std::int32_t>{3, 4, -4});
  i *= i;
  CHECK(elements(i) == std::vector<std::int32_t>{9, 16, 16});
  i -= Tensor<std::int32_t, 1>{1, 2, 3};
  CHECK(elements(i) == std::vector<std::int32_t>{8, 14, 13});
}

TEST_CASE("compound assignment on views writes into the base tensor") {
  Tensor<float, 2> a = {{1, 2, 3}, {4, 5, 6}};
  auto col = a.slice(1, 1, 2);
  col *= 10.0f;
  CHECK(elements(a) == std::vector<float>{1, 20, 3, 4, 50, 6});

  a.transpose() += Tensor<float, 1>{100, 200};  // a^T is [3, 2]: adds 100 to row 0 and 200 to row 1 of a
  CHECK(elements(a) == std::vector<float>{101, 120, 103, 204, 250, 206});

  a.select(1, 2) -= 3.0f;
  CHECK(elements(a) == std::vector<float>{101, 120, 100, 204, 250, 203});

  a.slice(0, 0, 2, 2) /= 101.0f;
  CHECK(a(0, 0) == doctest::Approx(1.0));
  CHECK(a(1, 0) == 204.0f);
}

TEST_CASE("compound assignment whose result would not fit throws shape_error") {
  Tensor<float, 2> row(1, 3);
  Tensor<float, 2> two_rows(2, 3);
  CHECK_THROWS_AS(row += two_rows, tessera::shape_error);
  Tensor<float, 1> four(4);
  CHECK_THROWS_AS(row *= four, tessera::shape_error);
}

TEST_CASE("fill() sets every element, also through views") {
  Tensor<double, 2> a(3, 3);
  a.fill(1.5);
  CHECK(elements(a) == std::vector<double>(9, 1.5));
  a.slice(1, 1, 3).fill(-1.0);
  CHECK(elements(a) == std::vector<double>{1.5, -1, -1, 1.5, -1, -1, 1.5, -1, -1});
  a.transpose().select(0, 0).fill(7.0);  // column 0
  CHECK(elements(a) == std::vector<double>{7, -1, -1, 7, -1, -1, 7, -1, -1});
  CHECK(&a.fill(0.0) == &a);
  CHECK(elements(a) == std::vector<double>(9, 0.0));

  Tensor<bool, 1> b(5);
  b.fill(true);
  CHECK(elements(b) == std::vector<bool>(5, true));
  Tensor<std::int64_t, 0> s;
  s.fill(42);
  CHECK(s.item() == 42);
}
