// Views: reshape, flatten, permute, transpose, slice, select, broadcast_to, squeeze, unsqueeze,
// contiguous(), views of views, writes through views, and aliasing assignments.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include "core/core_test_support.hpp"

#include <algorithm>
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

/// 0, 1, ..., n-1 as floats in a fresh contiguous buffer, filled by hand.
Tensor<float, 1> iota(index_t n) {
  Tensor<float, 1> t(n);
  for (index_t i = 0; i < n; ++i) t.data()[i] = static_cast<float>(i);
  return t;
}

/// Python's slice(begin, end, step).indices(n) for step > 0: the selected indices.
std::vector<float> python_slice(index_t n, index_t begin, index_t end, index_t step) {
  auto bound = [n](index_t v) {
    if (v < 0) v += n;
    return std::min(std::max(v, index_t{0}), n);
  };
  std::vector<float> out;
  for (index_t i = bound(begin); i < bound(end); i += step) out.push_back(static_cast<float>(i));
  return out;
}

}  // namespace

// ---- reshape and flatten ----------------------------------------------------------------------------

TEST_CASE("reshape of a contiguous tensor is a view in row-major order") {
  Tensor<float, 1> a = iota(12);
  Tensor<float, 2> m = a.reshape({3, 4});
  CHECK(shape_of(m) == "[3, 4]");
  CHECK(m.storage_id() == a.storage_id());
  CHECK(m.data() == a.data());
  CHECK(m(1, 2) == 6.0f);
  CHECK(m(2, 3) == 11.0f);
  m(2, 0) = -1.0f;
  CHECK(a(8) == -1.0f);

  Tensor<float, 3> t = m.reshape({2, 3, 2});
  CHECK(t(1, 2, 1) == 11.0f);
  CHECK(t(0, 1, 0) == 2.0f);
  CHECK(t.storage_id() == a.storage_id());
}

TEST_CASE("reshape infers one -1 extent") {
  Tensor<float, 1> a = iota(12);
  CHECK(shape_of(a.reshape({-1, 6})) == "[2, 6]");
  CHECK(shape_of(a.reshape({2, -1, 3})) == "[2, 2, 3]");
  CHECK(shape_of(a.reshape({12, -1})) == "[12, 1]");
  CHECK(shape_of(a.reshape({-1})) == "[12]");
  Tensor<float, 2> e(0, 4);
  CHECK(shape_of(e.reshape({-1, 2})) == "[0, 2]");
  Tensor<float, 1> one = {5};
  Tensor<float, 0> s = one.reshape(Shape<0>{});
  CHECK(s.item() == 5.0f);
}

TEST_CASE("reshape rejects impossible shapes with shape_error") {
  Tensor<float, 2> a = iota(12).reshape({3, 4});
  CHECK_THROWS_AS(a.reshape({5, 2}), tessera::shape_error);
  CHECK_THROWS_WITH_AS(a.reshape({5, 2}), doctest::Contains("[3, 4]"), tessera::shape_error);
  CHECK_THROWS_WITH_AS(a.reshape({5, 2}), doctest::Contains("[5, 2]"), tessera::shape_error);
  CHECK_THROWS_AS(a.reshape({-1, -1}), tessera::shape_error);  // two unknowns
  CHECK_THROWS_AS(a.reshape({5, -1}), tessera::shape_error);   // 12 is not a multiple of 5
  CHECK_THROWS_AS(a.reshape({-2, -6}), tessera::shape_error);  // negative extents other than -1
  CHECK_THROWS_AS(a.reshape({0, -1}), tessera::shape_error);   // -1 cannot be inferred next to 0
  CHECK_THROWS_AS(a.reshape({13}), tessera::shape_error);
}

TEST_CASE("reshape of a non-contiguous tensor copies, in the view's logical order") {
  Tensor<float, 2> a = iota(6).reshape({2, 3});
  Tensor<float, 2> t = a.transpose();  // [[0, 3], [1, 4], [2, 5]]
  Tensor<float, 1> flat = t.reshape({6});
  CHECK(elements(flat) == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK(flat.storage_id() != a.storage_id());
  flat(0) = 99.0f;
  CHECK(a(0, 0) == 0.0f);

  Tensor<float, 2> back = t.reshape({2, 3});
  CHECK(elements(back) == std::vector<float>{0, 3, 1, 4, 2, 5});
}

TEST_CASE("flatten") {
  Tensor<float, 3> a = iota(24).reshape({2, 3, 4});
  Tensor<float, 1> f = a.flatten();
  CHECK(shape_of(f) == "[24]");
  CHECK(f.storage_id() == a.storage_id());
  CHECK(elements(f) == elements(iota(24)));

  Tensor<float, 1> g = a.permute({2, 0, 1}).flatten();  // copy, logical order
  CHECK(g.storage_id() != a.storage_id());
  std::vector<float> expected;
  for (index_t k = 0; k < 4; ++k)
    for (index_t i = 0; i < 2; ++i)
      for (index_t j = 0; j < 3; ++j) expected.push_back(static_cast<float>(12 * i + 4 * j + k));
  CHECK(elements(g) == expected);
}

// ---- permute and transpose ---------------------------------------------------------------------------

TEST_CASE("permute reorders axes without copying") {
  Tensor<float, 3> a = iota(24).reshape({2, 3, 4});
  Tensor<float, 3> p = a.permute({2, 0, 1});
  CHECK(shape_of(p) == "[4, 2, 3]");
  CHECK(p.storage_id() == a.storage_id());
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 2; ++j)
      for (index_t k = 0; k < 3; ++k) CHECK(p(i, j, k) == a(j, k, i));

  Tensor<float, 3> q = a.permute({-1, 0, -2});  // negative axes
  CHECK(shape_of(q) == "[4, 2, 3]");
  CHECK(elements(q) == elements(p));
  CHECK(elements(a.permute({0, 1, 2})) == elements(a));
}

TEST_CASE("permute rejects a repeated or out-of-range axis") {
  Tensor<float, 3> a(2, 3, 4);
  CHECK_THROWS_AS(a.permute({0, 0, 1}), tessera::shape_error);
  CHECK_THROWS_WITH_AS(a.permute({1, 2, 1}), doctest::Contains("repeats axis 1"), tessera::shape_error);
  CHECK_THROWS_AS(a.permute({0, 2, -1}), tessera::shape_error);  // -1 is axis 2 again
  CHECK_THROWS_AS(a.permute({0, 1, 3}), tessera::index_error);
  CHECK_THROWS_AS(a.permute({-4, 1, 2}), tessera::index_error);
}

TEST_CASE("transpose(a, b) swaps two axes") {
  Tensor<float, 3> a = iota(24).reshape({2, 3, 4});
  Tensor<float, 3> t = a.transpose(0, 2);
  CHECK(shape_of(t) == "[4, 3, 2]");
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 3; ++j)
      for (index_t k = 0; k < 2; ++k) CHECK(t(i, j, k) == a(k, j, i));
  CHECK(elements(a.transpose(-1, 0)) == elements(t));
  CHECK(elements(a.transpose(1, 1)) == elements(a));
  CHECK_THROWS_AS(a.transpose(0, 3), tessera::index_error);
  CHECK_THROWS_AS(a.transpose(-4, 0), tessera::index_error);
}

TEST_CASE("transpose() reverses all axes") {
  Tensor<float, 2> m = {{1, 2, 3}, {4, 5, 6}};
  Tensor<float, 2> mt = m.transpose();
  CHECK(shape_of(mt) == "[3, 2]");
  CHECK(elements(mt) == std::vector<float>{1, 4, 2, 5, 3, 6});
  CHECK(mt.storage_id() == m.storage_id());

  Tensor<float, 3> a = iota(24).reshape({2, 3, 4});
  Tensor<float, 3> r = a.transpose();
  CHECK(shape_of(r) == "[4, 3, 2]");
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 3; ++j)
      for (index_t k = 0; k < 2; ++k) CHECK(r(i, j, k) == a(k, j, i));

  Tensor<float, 1> v = {1, 2, 3};
  CHECK(elements(v.transpose()) == elements(v));
  CHECK(elements(m.transpose().transpose()) == elements(m));
}

// ---- slice and select ----------------------------------------------------------------------------------

TEST_CASE("slice with a step and in-range bounds") {
  Tensor<float, 1> a = iota(10);
  CHECK(elements(a.slice(0, 2, 8, 3)) == std::vector<float>{2, 5});
  CHECK(elements(a.slice(0, 0, 10, 4)) == std::vector<float>{0, 4, 8});
  CHECK(elements(a.slice(0, 3, 4)) == std::vector<float>{3});
  CHECK(a.slice(0, 2, 8, 3).storage_id() == a.storage_id());

  Tensor<float, 2> m = iota(20).reshape({4, 5});
  Tensor<float, 2> s = m.slice(1, 1, 5, 2);  // columns 1 and 3
  CHECK(shape_of(s) == "[4, 2]");
  for (index_t i = 0; i < 4; ++i) {
    CHECK(s(i, 0) == static_cast<float>(5 * i + 1));
    CHECK(s(i, 1) == static_cast<float>(5 * i + 3));
  }
  CHECK(elements(m.slice(-1, 4, 5)) == std::vector<float>{4, 9, 14, 19});
}

TEST_CASE("slice follows Python's rules for negative and out-of-range bounds") {
  Tensor<float, 1> a = iota(10);
  CHECK(elements(a.slice(0, -3, 10)) == std::vector<float>{7, 8, 9});
  CHECK(elements(a.slice(0, -100, 100)) == elements(a));
  CHECK(elements(a.slice(0, 3, -3)) == std::vector<float>{3, 4, 5, 6});
  CHECK(a.slice(0, 5, 2).size() == 0);  // end before begin: empty
  CHECK(a.slice(0, 10, 20).size() == 0);
  CHECK(elements(a.slice(0, 8, 100, 5)) == std::vector<float>{8});

  // exhaustive comparison with Python's slice semantics
  int mismatches = 0;
  for (index_t step = 1; step <= 4; ++step) {
    for (index_t begin = -13; begin <= 13; ++begin) {
      for (index_t end = -13; end <= 13; ++end) {
        const auto expected = python_slice(10, begin, end, step);
        const auto v = a.slice(0, begin, end, step);
        if (elements(v) != expected || v.shape()[0] != static_cast<index_t>(expected.size())) {
          if (++mismatches <= 5) MESSAGE("slice(0, " << begin << ", " << end << ", " << step << ") gave " << shape_of(v));
        }
      }
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("slice rejects a non-positive step and a bad axis") {
  Tensor<float, 2> a(3, 4);
  CHECK_THROWS_AS(a.slice(0, 0, 3, 0), tessera::value_error);
  CHECK_THROWS_AS(a.slice(0, 3, 0, -1), tessera::value_error);  // negative steps are not supported
  CHECK_THROWS_AS(a.slice(2, 0, 1), tessera::index_error);
  CHECK_THROWS_AS(a.slice(-3, 0, 1), tessera::index_error);
}

TEST_CASE("select drops one axis at an index") {
  Tensor<float, 2> m = iota(12).reshape({3, 4});
  CHECK(elements(m.select(0, 1)) == std::vector<float>{4, 5, 6, 7});
  CHECK(elements(m.select(1, 2)) == std::vector<float>{2, 6, 10});
  CHECK(elements(m.select(1, -1)) == std::vector<float>{3, 7, 11});
  CHECK(elements(m.select(-2, -3)) == std::vector<float>{0, 1, 2, 3});
  CHECK(m.select(0, 1).storage_id() == m.storage_id());
  CHECK_THROWS_AS(m.select(0, 3), tessera::index_error);
  CHECK_THROWS_AS(m.select(1, -5), tessera::index_error);
  CHECK_THROWS_AS(m.select(2, 0), tessera::index_error);

  Tensor<float, 3> t = iota(24).reshape({2, 3, 4});
  Tensor<float, 2> mid = t.select(1, 2);
  CHECK(shape_of(mid) == "[2, 4]");
  for (index_t i = 0; i < 2; ++i)
    for (index_t k = 0; k < 4; ++k) CHECK(mid(i, k) == t(i, 2, k));

  Tensor<float, 0> s = m.select(0, 2).select(0, 1);
  CHECK(s.item() == 9.0f);
}

// ---- broadcast_to, squeeze, unsqueeze ---------------------------------------------------------------------

TEST_CASE("broadcast_to repeats size-1 and missing axes") {
  Tensor<float, 1> v = {1, 2, 3};
  Tensor<float, 2> b = v.broadcast_to({4, 3});
  CHECK(shape_of(b) == "[4, 3]");
  CHECK(b.strides()[0] == 0);
  CHECK_FALSE(b.is_contiguous());
  CHECK(elements(b) == std::vector<float>{1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3});

  Tensor<float, 2> col = {{1}, {2}};
  Tensor<float, 3> c = col.broadcast_to({2, 2, 3});
  CHECK(elements(c) == std::vector<float>{1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2});
  Tensor<float, 3> copy = c.clone();
  CHECK(copy.is_contiguous());
  CHECK(elements(copy) == elements(c));

  CHECK(elements(v.broadcast_to({3})) == elements(v));
  CHECK(v.broadcast_to({2, 0, 3}).size() == 0);
}

TEST_CASE("broadcast_to rejects extents that are neither equal nor 1") {
  Tensor<float, 1> v = {1, 2, 3};
  CHECK_THROWS_AS(v.broadcast_to({4, 2}), tessera::shape_error);
  CHECK_THROWS_WITH_AS(v.broadcast_to({4, 2}), doctest::Contains("[3]"), tessera::shape_error);
  CHECK_THROWS_WITH_AS(v.broadcast_to({4, 2}), doctest::Contains("[4, 2]"), tessera::shape_error);
  Tensor<float, 2> m(2, 3);
  CHECK_THROWS_AS(m.broadcast_to({3, 3}), tessera::shape_error);
  CHECK_THROWS_AS(m.broadcast_to({2, 2, 1}), tessera::shape_error);
}

TEST_CASE("writing into a broadcast view throws instead of writing shared elements repeatedly") {
  Tensor<float, 1> v = {1, 2, 3};
  Tensor<float, 2> b = v.broadcast_to({4, 3});
  CHECK_THROWS_WITH_AS(b += 1.0f, doctest::Contains("axis 0 has stride 0"), tessera::value_error);
  CHECK_THROWS_WITH_AS(b.fill(5.0f), doctest::Contains("[4, 3]"), tessera::value_error);
  CHECK_THROWS_AS(b.assign(b * 2.0f), tessera::value_error);
  const Tensor<float, 2> rows = {{1, 2, 3}, {4, 5, 6}};
  CHECK_THROWS_AS(v.broadcast_to({2, 3}) = rows, tessera::value_error);
  CHECK(elements(v) == std::vector<float>{1, 2, 3});  // nothing was written

  // Rebinding the handle is not a write into the view; a clone owns its elements.
  b = b * 2.0f;
  CHECK(elements(b) == std::vector<float>{2, 4, 6, 2, 4, 6, 2, 4, 6, 2, 4, 6});
  Tensor<float, 2> c = v.broadcast_to({4, 3}).clone();
  c += 1.0f;
  CHECK(elements(c) == std::vector<float>{2, 3, 4, 2, 3, 4, 2, 3, 4, 2, 3, 4});
  CHECK(elements(v) == std::vector<float>{1, 2, 3});

  // Extent-1 and empty broadcasts share nothing, so they stay writable.
  Tensor<float, 2> row = v.broadcast_to({1, 3});
  row += 1.0f;
  CHECK(elements(v) == std::vector<float>{2, 3, 4});
  v.broadcast_to({0, 3}).fill(9.0f);
}

TEST_CASE("squeeze drops a size-1 axis") {
  Tensor<float, 3> a = iota(12).reshape({3, 1, 4});
  Tensor<float, 2> s = a.squeeze(1);
  CHECK(shape_of(s) == "[3, 4]");
  CHECK(s.storage_id() == a.storage_id());
  CHECK(elements(s) == elements(iota(12)));
  CHECK(shape_of(a.squeeze(-2)) == "[3, 4]");
  CHECK_THROWS_AS(a.squeeze(0), tessera::shape_error);
  CHECK_THROWS_WITH_AS(a.squeeze(2), doctest::Contains("extent 4"), tessera::shape_error);
  CHECK_THROWS_AS(a.squeeze(3), tessera::index_error);

  Tensor<float, 1> one = {7};
  CHECK(one.squeeze(0).item() == 7.0f);
}

TEST_CASE("unsqueeze inserts a size-1 axis at every position") {
  Tensor<float, 2> a = iota(6).reshape({2, 3});
  const std::vector<float> values = elements(a);
  CHECK(shape_of(a.unsqueeze(0)) == "[1, 2, 3]");
  CHECK(shape_of(a.unsqueeze(1)) == "[2, 1, 3]");
  CHECK(shape_of(a.unsqueeze(2)) == "[2, 3, 1]");  // axis == rank appends
  CHECK(shape_of(a.unsqueeze(-1)) == "[2, 3, 1]");
  CHECK(shape_of(a.unsqueeze(-2)) == "[2, 1, 3]");
  CHECK(shape_of(a.unsqueeze(-3)) == "[1, 2, 3]");
  for (index_t axis = -3; axis <= 2; ++axis) {
    CAPTURE(axis);
    const auto u = a.unsqueeze(axis);
    CHECK(elements(u) == values);
    CHECK(u.is_contiguous());
    CHECK(u.storage_id() == a.storage_id());
  }
  CHECK_THROWS_AS(a.unsqueeze(3), tessera::index_error);
  CHECK_THROWS_AS(a.unsqueeze(-4), tessera::index_error);

  Tensor<float, 1> at_end = a.transpose().select(1, 1).unsqueeze(1).select(1, 0);
  CHECK(elements(at_end) == std::vector<float>{3, 4, 5});
  Tensor<float, 3> tu = a.transpose().unsqueeze(1);  // [3, 1, 2] over a non-contiguous view
  for (index_t i = 0; i < 3; ++i)
    for (index_t k = 0; k < 2; ++k) CHECK(tu(i, 0, k) == a(k, i));

  Tensor<float, 0> s = 4.0f;
  Tensor<float, 1> s1 = s.unsqueeze(0);
  CHECK(shape_of(s1) == "[1]");
  CHECK(s1(0) == 4.0f);
}

// ---- views of views, writes through views, contiguous() -------------------------------------------------

TEST_CASE("views of views read the right elements") {
  Tensor<float, 3> base = iota(4 * 5 * 6).reshape({4, 5, 6});
  auto at = [&](index_t i, index_t j, index_t k) { return static_cast<float>(30 * i + 6 * j + k); };

  // slice of a transpose: v(i, j, k) = base(k, 1 + 2 j, i)
  Tensor<float, 3> v = base.transpose(0, 2).slice(1, 1, 5, 2);
  CHECK(shape_of(v) == "[6, 2, 4]");
  for (index_t i = 0; i < 6; ++i)
    for (index_t j = 0; j < 2; ++j)
      for (index_t k = 0; k < 4; ++k) CHECK(v(i, j, k) == at(k, 1 + 2 * j, i));

  // select of slices of a permute: w(a, b) = base(1 + 2 b, 3, 2 + a)
  Tensor<float, 2> w = base.permute({2, 0, 1}).slice(0, 2, 6).slice(1, 1, 4, 2).select(2, 3);
  CHECK(shape_of(w) == "[4, 2]");
  for (index_t a = 0; a < 4; ++a)
    for (index_t b = 0; b < 2; ++b) CHECK(w(a, b) == at(1 + 2 * b, 3, 2 + a));

  // 2-D: rows 1 and 3 of a^T are columns 1 and 3 of a
  Tensor<float, 2> m = iota(20).reshape({4, 5});
  Tensor<float, 2> c = m.transpose().slice(0, 1, 4, 2);
  CHECK(shape_of(c) == "[2, 4]");
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 4; ++j) CHECK(c(i, j) == m(j, 1 + 2 * i));

  // reshape of a (contiguous) slice, then transpose
  Tensor<float, 2> r = base.select(0, 2).reshape({6, 5}).transpose();
  for (index_t i = 0; i < 5; ++i)
    for (index_t j = 0; j < 6; ++j) CHECK(r(i, j) == static_cast<float>(60 + 5 * j + i));
}

TEST_CASE("writes through views alias the base tensor") {
  Tensor<float, 3> base(3, 4, 5);
  Tensor<float, 3> v = base.transpose(0, 2).slice(1, 1, 4, 2);  // v(i, j, k) = base(k, 1 + 2 j, i)
  v(4, 1, 2) = 42.0f;
  CHECK(base(2, 3, 4) == 42.0f);
  base(0, 1, 3) = -7.0f;
  CHECK(v(3, 0, 0) == -7.0f);

  Tensor<float, 1> flat = base.flatten();
  flat(59) = 1.0f;
  CHECK(base(2, 3, 4) == 1.0f);
  CHECK(v(4, 1, 2) == 1.0f);

  base.select(1, 0).unsqueeze(1).squeeze(1).fill(3.0f);
  for (index_t i = 0; i < 3; ++i)
    for (index_t k = 0; k < 5; ++k) CHECK(base(i, 0, k) == 3.0f);
  CHECK(base(0, 1, 0) == 0.0f);
}

TEST_CASE("contiguous() returns the tensor itself or a dense copy") {
  Tensor<float, 2> a = iota(6).reshape({2, 3});
  Tensor<float, 2> same = a.contiguous();
  CHECK(same.storage_id() == a.storage_id());
  CHECK(same.data() == a.data());

  Tensor<float, 2> t = a.transpose().contiguous();
  CHECK(t.is_contiguous());
  CHECK(t.storage_id() != a.storage_id());
  CHECK(std::vector<float>(t.data(), t.data() + 6) == std::vector<float>{0, 3, 1, 4, 2, 5});

  Tensor<float, 2> s = a.slice(1, 0, 3, 2).contiguous();
  CHECK(std::vector<float>(s.data(), s.data() + 4) == std::vector<float>{0, 2, 3, 5});
}

// ---- expressions over non-contiguous views ----------------------------------------------------------------

TEST_CASE("expressions over non-contiguous views match a naive loop") {
  SUBCASE("transpose(a) + b, small") {
    Tensor<float, 2> a = iota(35).reshape({5, 7});
    Tensor<float, 2> b = iota(35).reshape({7, 5}) * 100.0f;
    Tensor<float, 2> c = a.transpose() + b;
    CHECK(shape_of(c) == "[7, 5]");
    for (index_t i = 0; i < 7; ++i)
      for (index_t j = 0; j < 5; ++j) CHECK(c(i, j) == a(j, i) + b(i, j));
  }
  SUBCASE("transpose(a) * b, large enough for SIMD and threads") {
    const index_t n = 300, m = 257;
    Tensor<float, 2> a = iota(n * m).reshape({n, m});
    Tensor<float, 2> b = iota(m * n).reshape({m, n}) * 0.5f;
    Tensor<float, 2> c = a.transpose() * 2.0f - b;
    index_t bad = 0;
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) bad += c(i, j) != a(j, i) * 2.0f - b(i, j);
    CHECK(bad == 0);
  }
  SUBCASE("strided slices broadcast against a column") {
    Tensor<double, 1> flat = tessera::cast<double>(iota(12 * 40));
    Tensor<double, 2> a = flat.reshape({12, 40});
    Tensor<double, 2> col = {{1}, {2}, {3}, {4}, {5}, {6}};
    Tensor<double, 2> c = a.slice(0, 1, 12, 2).slice(1, 3, 40, 3) * col;
    CHECK(shape_of(c) == "[6, 13]");
    for (index_t i = 0; i < 6; ++i)
      for (index_t j = 0; j < 13; ++j) CHECK(c(i, j) == a(1 + 2 * i, 3 + 3 * j) * static_cast<double>(i + 1));
  }
  SUBCASE("a permuted rank-3 view plus a broadcast vector") {
    Tensor<float, 3> a = iota(2 * 3 * 4).reshape({2, 3, 4});
    Tensor<float, 1> v = {10, 20};
    Tensor<float, 3> c = a.permute({2, 1, 0}) + v;  // [4, 3, 2]
    for (index_t i = 0; i < 4; ++i)
      for (index_t j = 0; j < 3; ++j)
        for (index_t k = 0; k < 2; ++k) CHECK(c(i, j, k) == a(k, j, i) + v(k));
  }
  SUBCASE("a broadcast_to view inside an expression") {
    Tensor<float, 1> v = {1, 2, 3};
    Tensor<float, 2> c = v.broadcast_to({2, 3}) * Tensor<float, 2>{{1}, {10}};
    CHECK(elements(c) == std::vector<float>{1, 2, 3, 10, 20, 30});
  }
}

// ---- aliasing assignments -------------------------------------------------------------------------------

TEST_CASE("x.assign(x.transpose()) gives the true transpose") {
  for (index_t n : {2, 3, 17, 64, 200}) {
    CAPTURE(n);
    Tensor<float, 2> x = iota(n * n).reshape({n, n});
    const float* before = x.data();
    x.assign(x.transpose());
    CHECK(x.data() == before);
    index_t bad = 0;
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < n; ++j) bad += x(i, j) != static_cast<float>(j * n + i);
    CHECK(bad == 0);
  }
}

TEST_CASE("other aliasing assignments read the values from before the write") {
  SUBCASE("overlapping shifted slices, like x[1:] = x[:-1]") {
    Tensor<float, 1> x = iota(10);
    x.slice(0, 1, 10).assign(x.slice(0, 0, 9));
    CHECK(elements(x) == std::vector<float>{0, 0, 1, 2, 3, 4, 5, 6, 7, 8});
    Tensor<float, 1> y = iota(10);
    y.slice(0, 0, 9).assign(y.slice(0, 1, 10));
    CHECK(elements(y) == std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9, 9});
  }
  SUBCASE("x += x.transpose()") {
    Tensor<float, 2> x = iota(9).reshape({3, 3});
    x += x.transpose();
    CHECK(elements(x) == std::vector<float>{0, 4, 8, 4, 8, 12, 8, 12, 16});
  }
  SUBCASE("v += v[0:1] adds the first element from before the write everywhere") {
    Tensor<float, 1> v = iota(5) + 1.0f;
    v += v.slice(0, 0, 1);
    CHECK(elements(v) == std::vector<float>{2, 3, 4, 5, 6});
  }
  SUBCASE("a view assigned an expression of its own base") {
    Tensor<float, 2> x = iota(16).reshape({4, 4});
    x.slice(0, 0, 2) = x.slice(0, 2, 4) + x.slice(0, 0, 2);  // rows 0-1 += rows 2-3
    CHECK(elements(x.slice(0, 0, 2)) == std::vector<float>{8, 10, 12, 14, 16, 18, 20, 22});
    x.transpose().slice(0, 0, 1) = x.slice(0, 0, 1) * 1.0f;  // column 0 <- row 0
    CHECK(elements(x.select(1, 0)) == std::vector<float>{8, 10, 12, 14});
  }
  SUBCASE("a broadcast of the destination's own row") {
    Tensor<float, 2> x = iota(6).reshape({3, 2});
    x.assign(x.slice(0, 2, 3));  // every row <- the last row, which is overwritten last
    CHECK(elements(x) == std::vector<float>{4, 5, 4, 5, 4, 5});
    Tensor<float, 2> y = iota(6).reshape({3, 2});
    y.assign(y.slice(0, 0, 1) + y);  // every row += the first row (read before row 0 changes)
    CHECK(elements(y) == std::vector<float>{0, 2, 2, 4, 4, 6});
  }
  SUBCASE("x.assign(matmul(x, y)) reads x before overwriting it") {
    Tensor<double, 2> x = {{1, 2}, {3, 4}};
    Tensor<double, 2> y = {{0, 1}, {1, 0}};  // swaps the columns
    x.assign(tessera::matmul(x, y));
    CHECK(elements(x) == std::vector<double>{2, 1, 4, 3});
    x.assign(tessera::matmul(y, x) + 0.0);  // swaps the rows
    CHECK(elements(x) == std::vector<double>{4, 3, 2, 1});
  }
  SUBCASE("x = x.transpose() on a named tensor rebinds to the transposed values") {
    Tensor<float, 2> x = iota(4).reshape({2, 2});
    x = x.transpose();
    CHECK(elements(x) == std::vector<float>{0, 2, 1, 3});
    Tensor<float, 2> y = iota(4).reshape({2, 2});
    y = y.transpose() * 1.0f;
    CHECK(elements(y) == std::vector<float>{0, 2, 1, 3});
  }
}
