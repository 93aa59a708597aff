// Comparisons and logical ops (expr/binary_ops.hpp), where and cast (expr/elementwise.hpp), against
// a naive loop. Arithmetic, pow and minimum/maximum are in test_binary.cpp (split for compile time).
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using tessera::index_t;
using tessera::Tensor;

/// SIMD body only, packet + tail, several packets + tail, long, and past the threading threshold.
const index_t kLengths[] = {1, 9, 33, 1000, 100003};

template <class T>
Tensor<T, 1> random_vector(index_t n, double lo, double hi, unsigned seed) {
  std::mt19937 rng(seed);
  Tensor<T, 1> t(n);
  if constexpr (std::is_integral_v<T>) {
    std::uniform_int_distribution<long long> dist(static_cast<long long>(lo), static_cast<long long>(hi));
    for (index_t i = 0; i < n; ++i) t.data()[i] = static_cast<T>(dist(rng));
  } else {
    std::uniform_real_distribution<double> dist(lo, hi);
    for (index_t i = 0; i < n; ++i) t.data()[i] = static_cast<T>(dist(rng));
  }
  return t;
}

template <class T>
Tensor<T, 1> from_values(const std::vector<T>& v) {
  Tensor<T, 1> t(static_cast<index_t>(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) t.data()[i] = v[i];
  return t;
}

template <class T>
std::vector<T> values_of(const Tensor<T, 1>& t) {
  std::vector<T> v;
  for (index_t i = 0; i < t.size(); ++i) v.push_back(t.data()[i * t.strides()[0]]);
  return v;
}

/// op(a, b) -> bool tensor over random a, b of every length against ref(a[i], b[i]); integer
/// inputs come from a small range so that equal pairs occur.
template <class T, class Op, class Ref>
void check_compare(const std::string& name, Op op, Ref ref) {
  unsigned seed = 7;
  for (index_t n : kLengths) {
    const auto a = random_vector<T>(n, -5, 5, seed++);
    const auto b = random_vector<T>(n, -5, 5, seed++);
    const Tensor<bool, 1> y = op(a, b);
    static_assert(std::is_same_v<tessera::value_type_t<decltype(op(a, b))>, bool>);
    index_t bad = 0, first = -1;
    for (index_t i = 0; i < n; ++i) {
      if (y(i) != ref(a(i), b(i)) && bad++ == 0) first = i;
    }
    INFO(name << " n=" << n << " " << std::string(tessera::dtype_name<T>()) << ": " << bad << " differ, first at "
              << first);
    CHECK(bad == 0);
  }
}

template <class T>
constexpr T nan_v = std::numeric_limits<T>::quiet_NaN();
template <class T>
constexpr T inf_v = std::numeric_limits<T>::infinity();

}  // namespace

TEST_CASE_TEMPLATE("comparisons produce bool tensors", T, float, double, std::int32_t, std::int64_t) {
  check_compare<T>(
      "less", [](const auto& a, const auto& b) { return a < b; }, [](T a, T b) { return a < b; });
  check_compare<T>(
      "less_equal", [](const auto& a, const auto& b) { return a <= b; }, [](T a, T b) { return a <= b; });
  check_compare<T>(
      "greater", [](const auto& a, const auto& b) { return a > b; }, [](T a, T b) { return a > b; });
  check_compare<T>(
      "greater_equal", [](const auto& a, const auto& b) { return a >= b; }, [](T a, T b) { return a >= b; });
  check_compare<T>(
      "equal", [](const auto& a, const auto& b) { return a == b; }, [](T a, T b) { return a == b; });
  check_compare<T>(
      "not_equal", [](const auto& a, const auto& b) { return a != b; }, [](T a, T b) { return a != b; });
  // A number on either side.
  check_compare<T>(
      "a > 0", [](const auto& a, const auto&) { return a > T(0); }, [](T a, T) { return a > T(0); });
  check_compare<T>(
      "1 <= b", [](const auto&, const auto& b) { return T(1) <= b; }, [](T, T b) { return T(1) <= b; });
  if constexpr (std::is_integral_v<T>) {
    // Equal pairs occur with integers in [-5, 5]: the == branch is really exercised.
    const auto a = random_vector<T>(1000, -5, 5, 1), b = random_vector<T>(1000, -5, 5, 2);
    CHECK(tessera::eval(tessera::sum(tessera::cast<std::int64_t>(a == b)))() > 0);
  }
}

TEST_CASE_TEMPLATE("comparisons with NaN", T, float, double) {
  const auto a = from_values<T>({nan_v<T>, T(1), nan_v<T>});
  const auto b = from_values<T>({T(1), nan_v<T>, nan_v<T>});
  const Tensor<bool, 1> lt = a < b, ge = a >= b, eq = a == b, ne = a != b;
  for (index_t i = 0; i < 3; ++i) {
    CHECK_FALSE(lt(i));
    CHECK_FALSE(ge(i));
    CHECK_FALSE(eq(i));
    CHECK(ne(i));
  }
}

TEST_CASE("logical and / or / not on bool tensors, with broadcasting") {
  Tensor<bool, 2> p(4, 1), q(1, 5);
  for (index_t i = 0; i < 4; ++i) p(i, 0) = i % 2 == 0;
  for (index_t j = 0; j < 5; ++j) q(0, j) = j % 3 == 0;
  const Tensor<bool, 2> and1 = tessera::logical_and(p, q), and2 = p & q;
  const Tensor<bool, 2> or1 = tessera::logical_or(p, q), or2 = p | q;
  // `p & !q` draws GCC -Wparentheses; the operand of ! needs its own parentheses.
  const Tensor<bool, 2> mixed = (p & (!q)) | ((!p) & q);  // xor
  REQUIRE(and1.shape() == tessera::Shape<2>{4, 5});
  for (index_t i = 0; i < 4; ++i) {
    for (index_t j = 0; j < 5; ++j) {
      const bool x = i % 2 == 0, y = j % 3 == 0;
      CHECK(and1(i, j) == (x && y));
      CHECK(and2(i, j) == (x && y));
      CHECK(or1(i, j) == (x || y));
      CHECK(or2(i, j) == (x || y));
      CHECK(mixed(i, j) == (x != y));
    }
  }
}

TEST_CASE_TEMPLATE("where with expression and number branches", T, float, double) {
  const auto x = random_vector<T>(1003, -4, 4, 21);
  const auto y = random_vector<T>(1003, -4, 4, 22);
  const Tensor<T, 1> leaky = tessera::where(x > T(0), x, T(0.1) * x);
  const Tensor<T, 1> pick = tessera::where(x < y, x, y);
  const Tensor<T, 1> zero_neg = tessera::where(x < T(0), T(0), x);
  const Tensor<T, 1> zero_pos = tessera::where(x < T(0), x, 0);
  const Tensor<T, 1> numbers = tessera::where(x < y, T(1), T(-1));
  const Tensor<T, 1> nested = tessera::where(x > T(1), T(1), tessera::where(x < T(-1), T(-1), x));
  for (index_t i = 0; i < x.size(); ++i) {
    const T a = x(i), b = y(i);
    CAPTURE(a);
    CHECK(leaky(i) == (a > 0 ? a : T(0.1) * a));
    CHECK(pick(i) == (a < b ? a : b));
    CHECK(zero_neg(i) == (a < 0 ? T(0) : a));
    CHECK(zero_pos(i) == (a < 0 ? a : T(0)));
    CHECK(numbers(i) == (a < b ? T(1) : T(-1)));
    CHECK(nested(i) == std::min(std::max(a, T(-1)), T(1)));
  }
  // The condition broadcasts against the branches.
  Tensor<bool, 2> cond(2, 1);
  cond(0, 0) = true;
  Tensor<T, 2> a2 = {{1, 2, 3}, {4, 5, 6}};
  Tensor<T, 1> b1 = {-1, -2, -3};
  const Tensor<T, 2> w = tessera::where(cond, a2, b1);
  CHECK(w(0, 0) == 1);
  CHECK(w(0, 2) == 3);
  CHECK(w(1, 0) == -1);
  CHECK(w(1, 2) == -3);
}

// where() over a comparison of floating-point operands runs as a SIMD select; it must pick what
// the scalar `cond ? a : b` picks, for NaN, infinities, equal pairs and signed zeros too.
TEST_CASE_TEMPLATE("where over each comparison selects as the scalar form, NaN included", T, float, double) {
  const T specials[] = {nan_v<T>, inf_v<T>, -inf_v<T>, T(0), T(-0.0), T(1), T(-1), T(2)};
  unsigned seed = 31;
  for (index_t n : kLengths) {
    auto a = random_vector<T>(n, -2, 2, seed++);
    auto b = random_vector<T>(n, -2, 2, seed++);
    for (index_t i = 0; i < n; i += 3) {  // specials and equal pairs spread over packets and tails
      a(i) = specials[(i / 3) % 8];
      b(i) = specials[(i / 5) % 8];
    }
    const auto then = random_vector<T>(n, 10, 20, seed++);
    const Tensor<T, 1> lt = tessera::where(a < b, then, a), le = tessera::where(a <= b, then, a);
    const Tensor<T, 1> gt = tessera::where(a > b, then, a), ge = tessera::where(a >= b, then, a);
    const Tensor<T, 1> eq = tessera::where(a == b, then, a), ne = tessera::where(a != b, then, a);
    index_t bad = 0;
    for (index_t i = 0; i < n; ++i) {
      const auto same = [](T x, T y) { return (std::isnan(x) && std::isnan(y)) || (x == y && std::signbit(x) == std::signbit(y)); };
      const T x = a(i), y = b(i), t = then(i);
      bad += !same(lt(i), x < y ? t : x) + !same(le(i), x <= y ? t : x) + !same(gt(i), x > y ? t : x) +
             !same(ge(i), x >= y ? t : x) + !same(eq(i), x == y ? t : x) + !same(ne(i), x != y ? t : x);
    }
    INFO("n=" << n);
    CHECK(bad == 0);
  }
}

TEST_CASE("cast between float, double, int32, int64 and bool") {
  Tensor<float, 1> f = {-2.75f, -1.5f, -0.25f, 0.f, 0.5f, 1.99f, 3.f, 1e9f, -7.f};
  const Tensor<double, 1> d = tessera::cast<double>(f);
  const Tensor<std::int32_t, 1> i32 = tessera::cast<std::int32_t>(f);
  const Tensor<std::int64_t, 1> i64 = tessera::cast<std::int64_t>(d);
  const Tensor<bool, 1> nz = tessera::cast<bool>(f);
  const Tensor<float, 1> back = tessera::cast<float>(nz);
  const Tensor<float, 1> from_int = tessera::cast<float>(i32);
  const Tensor<double, 1> from_i64 = tessera::cast<double>(i64);
  const Tensor<float, 1> from_double = tessera::cast<float>(d * 2.0);
  for (index_t i = 0; i < f.size(); ++i) {
    const float v = f(i);
    CAPTURE(v);
    CHECK(d(i) == static_cast<double>(v));
    CHECK(i32(i) == static_cast<std::int32_t>(v));  // truncation toward zero
    CHECK(i64(i) == static_cast<std::int64_t>(v));
    CHECK(nz(i) == (v != 0.f));
    CHECK(back(i) == (v != 0.f ? 1.f : 0.f));
    CHECK(from_int(i) == static_cast<float>(static_cast<std::int32_t>(v)));
    CHECK(from_i64(i) == static_cast<double>(static_cast<std::int64_t>(v)));
    CHECK(from_double(i) == static_cast<float>(static_cast<double>(v) * 2.0));
  }
  CHECK(i32(0) == -2);
  CHECK(i32(5) == 1);
  CHECK(i64(7) == 1000000000);
  // Cast inside a fused expression: labels as floats times a float tensor.
  Tensor<std::int64_t, 1> labels = {0, 1, 2, 3};
  Tensor<float, 1> w = {0.5f, 0.5f, 0.5f, 0.5f};
  const Tensor<float, 1> scaled = tessera::cast<float>(labels) * w + 1.f;
  CHECK(scaled(0) == 1.f);
  CHECK(scaled(3) == 2.5f);
  const Tensor<std::int32_t, 1> narrowed = tessera::cast<std::int32_t>(labels * std::int64_t{3});
  CHECK(narrowed(3) == 9);
}
