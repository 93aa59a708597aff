// Factories (zeros, ones, full, empty, eye, arange, linspace, *_like) and seeded random tensors.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include "core/core_test_support.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace core_test;

using tessera::Generator;
using tessera::index_t;
using tessera::Shape;
using tessera::Tensor;

template <class T>
struct Moments {
  double mean = 0, variance = 0;
};
template <class T, std::size_t R>
Moments<T> moments(const Tensor<T, R>& t) {
  const auto v = elements(t);
  Moments<T> m;
  for (T x : v) m.mean += static_cast<double>(x);
  m.mean /= static_cast<double>(v.size());
  for (T x : v) m.variance += (static_cast<double>(x) - m.mean) * (static_cast<double>(x) - m.mean);
  m.variance /= static_cast<double>(v.size());
  return m;
}

/// Restores the default CPU thread count even when a check fails.
struct ThreadCountGuard {
  ~ThreadCountGuard() { tessera::cpu::set_num_threads(0); }
};

}  // namespace

// ---- zeros, ones, full, empty -------------------------------------------------------------------------

TEST_CASE("zeros, ones and full accept extents, a braced list or a Shape") {
  const auto z1 = tessera::zeros<float>(2, 3);
  const auto z2 = tessera::zeros<float>({2, 3});
  const auto z3 = tessera::zeros<float>(Shape<2>{2, 3});
  for (const auto* z : {&z1, &z2, &z3}) {
    CHECK(shape_of(*z) == "[2, 3]");
    CHECK(z->is_contiguous());
    CHECK(elements(*z) == std::vector<float>(6, 0.0f));
  }
  CHECK(z1.storage_id() != z2.storage_id());

  const auto o1 = tessera::ones<double>(4);
  const auto o2 = tessera::ones<double>({2, 1, 2});
  const auto o3 = tessera::ones<double>(Shape<3>{2, 1, 2});
  CHECK(shape_of(o1) == "[4]");
  CHECK(shape_of(o2) == "[2, 1, 2]");
  CHECK(shape_of(o3) == "[2, 1, 2]");
  CHECK(elements(o1) == std::vector<double>(4, 1.0));
  CHECK(elements(o2) == std::vector<double>(4, 1.0));
  CHECK(elements(o3) == std::vector<double>(4, 1.0));

  const auto f1 = tessera::full<float>({2, 2}, 0.5f);
  const auto f2 = tessera::full<std::int32_t>(Shape<1>{3}, -7);
  CHECK(elements(f1) == std::vector<float>(4, 0.5f));
  CHECK(elements(f2) == std::vector<std::int32_t>(3, -7));

  const auto ib = tessera::ones<bool>(3);
  CHECK(elements(ib) == std::vector<bool>(3, true));
  const auto i64 = tessera::zeros<std::int64_t>(2);
  CHECK(elements(i64) == std::vector<std::int64_t>(2, 0));
  CHECK(std::string(i64.dtype()) == "int64");
}

TEST_CASE("empty() has the requested shape and is writable") {
  auto e = tessera::empty<float>(Shape<2>{3, 5});
  CHECK(shape_of(e) == "[3, 5]");
  CHECK(e.is_contiguous());
  e.fill(2.0f);
  CHECK(elements(e) == std::vector<float>(15, 2.0f));
  CHECK(tessera::empty<double>(Shape<1>{0}).size() == 0);
}

TEST_CASE("factories reject negative extents") {
  CHECK_THROWS_AS(tessera::zeros<float>(-1), tessera::shape_error);
  CHECK_THROWS_AS(tessera::zeros<float>({2, -3}), tessera::shape_error);
  CHECK_THROWS_AS(tessera::ones<float>(2, -3), tessera::shape_error);
  CHECK_THROWS_AS(tessera::full<float>({-2}, 1.0f), tessera::shape_error);
  CHECK_THROWS_AS(tessera::empty<float>(Shape<1>{-4}), tessera::shape_error);
  CHECK_THROWS_AS(tessera::eye<float>(-1), tessera::shape_error);
}

TEST_CASE("zero-sized factories") {
  CHECK(tessera::zeros<float>(0, 3).size() == 0);
  CHECK(shape_of(tessera::ones<float>({3, 0})) == "[3, 0]");
  CHECK(tessera::full<float>({0}, 1.0f).empty());
  CHECK(tessera::eye<float>(0).size() == 0);
}

TEST_CASE("zeros_like, ones_like and full_like copy the shape into a new contiguous tensor") {
  Tensor<float, 2> src = {{1, 2, 3}, {4, 5, 6}};
  Tensor<float, 2> view = src.transpose();
  const auto z = tessera::zeros_like(view);
  const auto o = tessera::ones_like(view);
  const auto f = tessera::full_like(view, 9.0f);
  for (const auto* t : {&z, &o, &f}) {
    CHECK(shape_of(*t) == "[3, 2]");
    CHECK(t->is_contiguous());
    CHECK(t->storage_id() != src.storage_id());
  }
  CHECK(elements(z) == std::vector<float>(6, 0.0f));
  CHECK(elements(o) == std::vector<float>(6, 1.0f));
  CHECK(elements(f) == std::vector<float>(6, 9.0f));
  CHECK(elements(src) == std::vector<float>{1, 2, 3, 4, 5, 6});

  Tensor<std::int64_t, 1> labels = {3, 1};
  CHECK(elements(tessera::full_like(labels, std::int64_t{-1})) == std::vector<std::int64_t>{-1, -1});
}

TEST_CASE("eye") {
  const auto i3 = tessera::eye<float>(3);
  CHECK(shape_of(i3) == "[3, 3]");
  CHECK(elements(i3) == std::vector<float>{1, 0, 0, 0, 1, 0, 0, 0, 1});
  const auto i1 = tessera::eye<std::int32_t>(1);
  CHECK(elements(i1) == std::vector<std::int32_t>{1});
  const auto i4 = tessera::eye<double>(4);
  for (index_t r = 0; r < 4; ++r)
    for (index_t c = 0; c < 4; ++c) CHECK(i4(r, c) == (r == c ? 1.0 : 0.0));
}

// ---- arange and linspace ----------------------------------------------------------------------------------

TEST_CASE("arange") {
  CHECK(elements(tessera::arange<std::int32_t>(5)) == std::vector<std::int32_t>{0, 1, 2, 3, 4});
  CHECK(elements(tessera::arange<std::int64_t>(2, 6)) == std::vector<std::int64_t>{2, 3, 4, 5});
  CHECK(elements(tessera::arange<std::int32_t>(0, 10, 3)) == std::vector<std::int32_t>{0, 3, 6, 9});
  CHECK(elements(tessera::arange<double>(0, 1, 0.25)) == std::vector<double>{0, 0.25, 0.5, 0.75});
  CHECK(elements(tessera::arange<float>(0.5f, 3.0f)) == std::vector<float>{0.5f, 1.5f, 2.5f});
  CHECK(tessera::arange<double>(1.0, 2.0, 0.1).size() == 10);  // NumPy: len(np.arange(1, 2, 0.1)) == 10
  CHECK(tessera::arange<float>(0.0f, 1.0f, 0.1f).size() == 10);
  CHECK(tessera::arange<std::int32_t>(0).size() == 0);
  CHECK(tessera::arange<std::int32_t>(-3).size() == 0);
  CHECK(tessera::arange<float>(1.0f, 0.0f).size() == 0);
}

TEST_CASE("arange with a negative step counts down") {
  CHECK(elements(tessera::arange<std::int32_t>(5, 0, -2)) == std::vector<std::int32_t>{5, 3, 1});
  CHECK(elements(tessera::arange<std::int64_t>(3, -3, -3)) == std::vector<std::int64_t>{3, 0});
  CHECK(elements(tessera::arange<double>(1, -1, -0.5)) == std::vector<double>{1, 0.5, 0, -0.5});
  CHECK(tessera::arange<std::int32_t>(0, 5, -1).size() == 0);
}

TEST_CASE("arange with a zero step throws value_error") {
  CHECK_THROWS_AS(tessera::arange<std::int32_t>(0, 5, 0), tessera::value_error);
  CHECK_THROWS_AS(tessera::arange<double>(0.0, 1.0, 0.0), tessera::value_error);
  CHECK_THROWS_WITH_AS(tessera::arange<float>(0.0f, 1.0f, 0.0f), doctest::Contains("step"), tessera::value_error);
}

TEST_CASE("linspace") {
  CHECK(elements(tessera::linspace<double>(0, 1, 5)) == std::vector<double>{0, 0.25, 0.5, 0.75, 1});
  CHECK(elements(tessera::linspace<double>(0, 1, 4, false)) == std::vector<double>{0, 0.25, 0.5, 0.75});
  CHECK(elements(tessera::linspace<float>(1, 0, 3)) == std::vector<float>{1, 0.5f, 0});
  CHECK(elements(tessera::linspace<double>(-2, 2, 3, true)) == std::vector<double>{-2, 0, 2});

  // num 0 and 1, with and without the endpoint (NumPy: [] and [start])
  CHECK(tessera::linspace<double>(0, 1, 0).size() == 0);
  CHECK(tessera::linspace<double>(0, 1, 0, false).size() == 0);
  CHECK(elements(tessera::linspace<double>(3, 7, 1)) == std::vector<double>{3});
  CHECK(elements(tessera::linspace<double>(3, 7, 1, false)) == std::vector<double>{3});

  // the endpoint is exact, not start + (num - 1) * step
  const auto l = tessera::linspace<double>(0, 0.3, 4);
  CHECK(l(3) == 0.3);
  CHECK(l(1) == doctest::Approx(0.1));
  const auto l2 = tessera::linspace<float>(0.1f, 0.7f, 7);
  CHECK(l2(6) == 0.7f);

  CHECK_THROWS_AS(tessera::linspace<double>(0, 1, -1), tessera::value_error);
}

TEST_CASE("linspace<float> values are the nearest floats, as NumPy computes them in double") {
  // np.linspace(-3, 7, 13, dtype=np.float32)
  const std::vector<float> numpy = {-3.0f,        -2.16666675f, -1.33333337f, -0.5f,        0.333333343f,
                                    1.16666663f,  2.0f,         2.83333325f,  3.66666675f,  4.5f,
                                    5.33333349f,  6.16666651f,  7.0f};
  CHECK(elements(tessera::linspace<float>(-3.0f, 7.0f, 13)) == numpy);
  // np.linspace(0, 1, 7, dtype=np.float32)
  CHECK(elements(tessera::linspace<float>(0.0f, 1.0f, 7)) ==
        std::vector<float>{0.0f, 0.166666672f, 0.333333343f, 0.5f, 0.666666687f, 0.833333313f, 1.0f});
}

// ---- Generator, uniform, normal -------------------------------------------------------------------------

TEST_CASE("Generator is Philox4x32-10 (Random123 known-answer vector)") {
  const Generator g(0);
  const auto w = g.at(0);  // counter {0, 0, 0, 0}, key {0, 0}
  CHECK(w[0] == 0x6627e8d5u);
  CHECK(w[1] == 0xe169c58du);
  CHECK(w[2] == 0xbc57ac4cu);
  CHECK(w[3] == 0x9b00dbd8u);
}

TEST_CASE("the same seed gives the same values, a different seed different ones") {
  Generator a(1234), b(1234), c(1235), d(std::uint64_t{1234} + (std::uint64_t{1} << 32));
  const auto ua = tessera::uniform<float>(a, {100});
  const auto ub = tessera::uniform<float>(b, {100});
  const auto uc = tessera::uniform<float>(c, {100});
  const auto ud = tessera::uniform<float>(d, {100});
  CHECK(elements(ua) == elements(ub));
  CHECK(elements(ua) != elements(uc));
  CHECK(elements(ua) != elements(ud));  // the high 32 bits of the seed matter too

  const auto na = tessera::normal<double>(a, {3, 7});
  const auto nb = tessera::normal<double>(b, {3, 7});
  const auto nc = tessera::normal<double>(c, {3, 7});
  CHECK(shape_of(na) == "[3, 7]");
  CHECK(elements(na) == elements(nb));
  CHECK(elements(na) != elements(nc));
}

TEST_CASE("successive draws differ and advance the offset") {
  Generator g(7);
  CHECK(g.offset() == 0);
  const auto first = tessera::uniform<double>(g, {5});
  CHECK(g.offset() == 3);  // two values per counter: ceil(5 / 2)
  const auto second = tessera::uniform<double>(g, {5});
  CHECK(g.offset() == 6);
  CHECK(elements(first) != elements(second));
  const auto n1 = tessera::normal<float>(g, {8});
  const auto n2 = tessera::normal<float>(g, {8});
  CHECK(elements(n1) != elements(n2));
  CHECK(g.offset() == 14);

  auto v = elements(tessera::uniform<float>(g, {1000}));
  std::sort(v.begin(), v.end());
  CHECK(std::adjacent_find(v.begin(), v.end()) == v.end());  // no repeats within a draw
}

TEST_CASE("Generator::set_offset reproduces a draw") {
  Generator g(99);
  (void)tessera::uniform<float>(g, {3});
  const std::uint64_t at = g.offset();
  const auto u = tessera::uniform<float>(g, {4, 4});
  const auto n = tessera::normal<double>(g, {9});
  g.set_offset(at);
  CHECK(elements(tessera::uniform<float>(g, {4, 4})) == elements(u));
  CHECK(elements(tessera::normal<double>(g, {9})) == elements(n));

  Generator fresh(99);
  fresh.set_offset(at);
  CHECK(elements(tessera::uniform<float>(fresh, {4, 4})) == elements(u));
}

TEST_CASE("uniform values lie in [low, high)") {
  Generator g(5);
  const auto f = tessera::uniform<float>(g, {100000}, -2.0f, 3.0f);
  const auto d = tessera::uniform<double>(g, {100000}, 10.0, 10.5);
  index_t out_f = 0, out_d = 0;
  for (float x : elements(f)) out_f += !(x >= -2.0f && x < 3.0f);
  for (double x : elements(d)) out_d += !(x >= 10.0 && x < 10.5);
  CHECK(out_f == 0);
  CHECK(out_d == 0);
  const auto mf = moments(f);
  CHECK(mf.mean == doctest::Approx(0.5).epsilon(0.02));
  CHECK(mf.variance == doctest::Approx(25.0 / 12).epsilon(0.02));

  const auto unit = tessera::uniform<float>(g, Shape<1>{1000});
  for (float x : elements(unit)) {
    if (!(x >= 0.0f && x < 1.0f)) {
      FAIL_CHECK("default range value " << x);
      break;
    }
  }

  const auto same = tessera::uniform<double>(g, {4}, 2.0, 2.0);
  CHECK(elements(same) == std::vector<double>(4, 2.0));
  CHECK_THROWS_AS(tessera::uniform<float>(g, {4}, 1.0f, 0.0f), tessera::value_error);
}

TEST_CASE("uniform<float> never returns high, even for the largest random word") {
  // Counter 2330056 of seed 0 has word 2 = 0xffffff45: its top 24 bits are all ones, so the
  // float value at that position is 1 + (1 - 2^-24), which rounds to 2.0f in float arithmetic.
  Generator g(0);
  const std::uint64_t hot = 2330056;
  REQUIRE((g.at(hot)[2] >> 8) == 0xffffffu);
  g.set_offset(hot - 1000);
  const auto u = tessera::uniform<float>(g, {4000}, 1.0f, 2.0f);
  index_t at_high = 0;
  for (float x : elements(u)) at_high += !(x >= 1.0f && x < 2.0f);
  CHECK(at_high == 0);
}

TEST_CASE("normal has the requested mean and standard deviation") {
  Generator g(2024);
  const auto n = tessera::normal<double>(g, {200000}, 2.0, 3.0);
  const auto m = moments(n);
  // standard errors: 3 / sqrt(2e5) ~ 0.0067 for the mean, 9 * sqrt(2 / 2e5) ~ 0.028 for the variance
  CHECK(std::abs(m.mean - 2.0) < 0.035);
  CHECK(std::abs(m.variance - 9.0) < 0.15);

  const auto f = tessera::normal<float>(g, {200001});  // odd count
  const auto mf = moments(f);
  CHECK(std::abs(mf.mean) < 0.012);
  CHECK(std::abs(mf.variance - 1.0) < 0.016);
  index_t non_finite = 0, beyond_3_sigma = 0;
  for (float x : elements(f)) {
    non_finite += !std::isfinite(x);
    beyond_3_sigma += std::abs(x) > 3.0f;
  }
  CHECK(non_finite == 0);
  // P(|z| > 3) = 0.0027: about 540 of 200001
  CHECK(beyond_3_sigma > 400);
  CHECK(beyond_3_sigma < 700);

  const auto zero_sd = tessera::normal<float>(g, {3}, 1.5f, 0.0f);
  CHECK(elements(zero_sd) == std::vector<float>(3, 1.5f));
  CHECK_THROWS_AS(tessera::normal<float>(g, {3}, 0.0f, -1.0f), tessera::value_error);
}

TEST_CASE("random values do not depend on the CPU thread count") {
  ThreadCountGuard restore;
  tessera::cpu::set_num_threads(1);
  CHECK(tessera::cpu::num_threads() == 1);
  Generator g1(42);
  const auto u1 = tessera::uniform<float>(g1, {300, 301});
  const auto n1 = tessera::normal<double>(g1, {100001});

  tessera::cpu::set_num_threads(2);
  CHECK(tessera::cpu::num_threads() == 2);
  Generator g2(42);
  const auto u2 = tessera::uniform<float>(g2, {300, 301});
  const auto n2 = tessera::normal<double>(g2, {100001});

  tessera::cpu::set_num_threads(3);
  Generator g3(42);
  const auto u3 = tessera::uniform<float>(g3, {300, 301});

  CHECK(elements(u1) == elements(u2));
  CHECK(elements(u1) == elements(u3));
  CHECK(elements(n1) == elements(n2));
  CHECK(g1.offset() == g2.offset());

  tessera::cpu::set_num_threads(0);
  CHECK(tessera::cpu::num_threads() >= 1);
}
