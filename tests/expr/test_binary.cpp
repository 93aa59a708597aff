// Elementwise arithmetic binary ops (expr/binary_ops.hpp): + - * / pow minimum maximum on float,
// double, int32 and int64, numbers on either side, NaN propagation, against a naive loop and
// hand-computed values. Comparisons, logical ops, where and cast are in test_compare.cpp.
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

bool close(double got, double want, double rtol) {
  if (std::isnan(want)) return std::isnan(got);
  if (got == want) return true;
  return std::abs(got - want) <= rtol * std::abs(want);
}

/// Compares element by element; reports the count and the first mismatch.
template <class T, class U>
void check_all(const std::vector<T>& got, const std::vector<U>& want, double rtol, const std::string& what) {
  REQUIRE(got.size() == want.size());
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!close(static_cast<double>(got[i]), static_cast<double>(want[i]), rtol) && bad++ == 0) first = i;
  }
  INFO(what << ": " << bad << " of " << got.size() << " differ; first at " << first << ": got "
            << (got.empty() ? 0.0 : static_cast<double>(got[first])) << ", expected "
            << (want.empty() ? 0.0 : static_cast<double>(want[first])));
  CHECK(bad == 0);
}

/// op(a, b) over random a, b of every length against ref(a[i], b[i]) computed in T.
template <class T, class Op, class Ref>
void check_binary(const std::string& name, Op op, Ref ref, double lo, double hi, double rtol) {
  unsigned seed = 7;
  for (index_t n : kLengths) {
    const auto a = random_vector<T>(n, lo, hi, seed++);
    const auto b = random_vector<T>(n, lo, hi, seed++);
    const Tensor<T, 1> y = op(a, b);
    std::vector<T> want;
    for (index_t i = 0; i < n; ++i) want.push_back(static_cast<T>(ref(a.data()[i], b.data()[i])));
    check_all(values_of(y), want, rtol, name + " n=" + std::to_string(n) + " " + tessera::dtype_name<T>());
  }
}

template <class T>
constexpr T nan_v = std::numeric_limits<T>::quiet_NaN();
template <class T>
constexpr T inf_v = std::numeric_limits<T>::infinity();

}  // namespace

TEST_CASE_TEMPLATE("arithmetic ops match a naive loop", T, float, double) {
  check_binary<T>(
      "add", [](const auto& a, const auto& b) { return a + b; }, [](T a, T b) { return a + b; }, -100, 100, 0);
  check_binary<T>(
      "sub", [](const auto& a, const auto& b) { return a - b; }, [](T a, T b) { return a - b; }, -100, 100, 0);
  check_binary<T>(
      "mul", [](const auto& a, const auto& b) { return a * b; }, [](T a, T b) { return a * b; }, -100, 100, 0);
  check_binary<T>(
      "div", [](const auto& a, const auto& b) { return a / b; }, [](T a, T b) { return a / b; }, 0.5, 100, 0);
  check_binary<T>(
      "minimum", [](const auto& a, const auto& b) { return tessera::minimum(a, b); },
      [](T a, T b) { return std::min(a, b); }, -100, 100, 0);
  check_binary<T>(
      "maximum", [](const auto& a, const auto& b) { return tessera::maximum(a, b); },
      [](T a, T b) { return std::max(a, b); }, -100, 100, 0);
  // pow's SIMD form is Eigen's approximation: a few ulps.
  check_binary<T>(
      "pow", [](const auto& a, const auto& b) { return tessera::pow(a, b); }, [](T a, T b) { return std::pow(a, b); },
      0.05, 4, std::is_same_v<T, float> ? 4e-6 : 1e-13);
}

TEST_CASE_TEMPLATE("a number on either side of an operator", T, float, double) {
  const auto a = random_vector<T>(1000, 0.5, 10, 3);
  const Tensor<T, 1> twice = T(2) * a;
  const Tensor<T, 1> minus_one = a - T(1);
  const Tensor<T, 1> inverse = T(1) / a;
  const Tensor<T, 1> one_minus = T(1) - a;
  const Tensor<T, 1> halved = a / T(2);
  const Tensor<T, 1> plus_int = a + 3;        // int literal converted to T
  const Tensor<T, 1> times_double = 0.5 * a;  // double literal converted to T
  const Tensor<T, 1> squared = tessera::pow(a, T(2));
  const Tensor<T, 1> two_to = tessera::pow(T(2), a);
  const Tensor<T, 1> capped = tessera::minimum(a, T(5));
  const Tensor<T, 1> floored = tessera::maximum(T(5), a);
  for (index_t i = 0; i < a.size(); ++i) {
    const T x = a(i);
    CAPTURE(x);
    CHECK(twice(i) == T(2) * x);
    CHECK(minus_one(i) == x - T(1));
    CHECK(inverse(i) == T(1) / x);
    CHECK(one_minus(i) == T(1) - x);
    CHECK(halved(i) == x / T(2));
    CHECK(plus_int(i) == x + T(3));
    CHECK(times_double(i) == T(0.5) * x);
    CHECK(close(squared(i), x * x, std::is_same_v<T, float> ? 4e-7 : 1e-15));
    CHECK(close(two_to(i), std::pow(T(2), x), std::is_same_v<T, float> ? 4e-6 : 1e-13));
    CHECK(capped(i) == std::min(x, T(5)));
    CHECK(floored(i) == std::max(x, T(5)));
  }
}

TEST_CASE_TEMPLATE("binary ops at hand-computed values", T, float, double) {
  // 19 elements: 0..15 go through the SIMD body, 16..18 through the scalar tail.
  const auto at = [](auto expr) { return values_of(Tensor<T, 1>(expr)); };
  const auto full = [](T v) { return from_values<T>(std::vector<T>(19, v)); };
  const auto all_equal = [](const std::vector<T>& v, T want) {
    for (T x : v) {
      if (!(x == want || (std::isnan(want) && std::isnan(x)))) return false;
    }
    return true;
  };
  CHECK(all_equal(at(full(T(3)) + full(T(4))), T(7)));
  CHECK(all_equal(at(full(T(3)) - full(T(4))), T(-1)));
  CHECK(all_equal(at(full(T(3)) * full(T(4))), T(12)));
  CHECK(all_equal(at(full(T(3)) / full(T(4))), T(0.75)));
  CHECK(all_equal(at(full(T(1)) / full(T(0))), inf_v<T>));
  CHECK(all_equal(at(full(T(-1)) / full(T(0))), -inf_v<T>));
  CHECK(all_equal(at(full(T(0)) / full(T(0))), nan_v<T>));
  CHECK(all_equal(at(tessera::pow(full(T(2)), full(T(10)))), T(1024)));
  CHECK(all_equal(at(tessera::pow(full(T(-2)), full(T(3)))), T(-8)));  // negative base, integral exponent
  CHECK(all_equal(at(tessera::pow(full(T(-2)), full(T(2)))), T(4)));
  CHECK(all_equal(at(tessera::pow(full(T(4)), full(T(0.5)))), T(2)));
  CHECK(all_equal(at(tessera::pow(full(T(5)), full(T(0)))), T(1)));
  CHECK(all_equal(at(tessera::pow(full(T(0)), full(T(0)))), T(1)));
  CHECK(all_equal(at(tessera::pow(full(T(2)), full(T(-1)))), T(0.5)));
  CHECK(all_equal(at(tessera::pow(full(T(-8)), full(T(1) / T(3)))), nan_v<T>));
  CHECK(all_equal(at(tessera::minimum(full(T(-0.5)), full(T(2)))), T(-0.5)));
  CHECK(all_equal(at(tessera::maximum(full(T(-0.5)), full(T(2)))), T(2)));
  CHECK(all_equal(at(tessera::maximum(full(-inf_v<T>), full(T(2)))), T(2)));
}

TEST_CASE_TEMPLATE("minimum and maximum propagate NaN from either side", T, float, double) {
  std::vector<T> av(19), bv(19);
  for (std::size_t i = 0; i < 19; ++i) {
    av[i] = static_cast<T>(i);
    bv[i] = static_cast<T>(18 - i);
  }
  // NaNs in SIMD lanes (2, 5) and in the scalar tail (17, 18), in a and in b.
  av[2] = nan_v<T>;
  bv[5] = nan_v<T>;
  av[17] = nan_v<T>;
  bv[18] = nan_v<T>;
  const auto a = from_values(av), b = from_values(bv);
  for (int which = 0; which < 2; ++which) {
    const Tensor<T, 1> lo = which == 0 ? Tensor<T, 1>(tessera::minimum(a, b)) : Tensor<T, 1>(tessera::minimum(b, a));
    const Tensor<T, 1> hi = which == 0 ? Tensor<T, 1>(tessera::maximum(a, b)) : Tensor<T, 1>(tessera::maximum(b, a));
    for (index_t i = 0; i < 19; ++i) {
      CAPTURE(i);
      CAPTURE(which);
      if (i == 2 || i == 5 || i == 17 || i == 18) {
        CHECK(std::isnan(lo(i)));
        CHECK(std::isnan(hi(i)));
      } else {
        CHECK(lo(i) == std::min(av[static_cast<std::size_t>(i)], bv[static_cast<std::size_t>(i)]));
        CHECK(hi(i) == std::max(av[static_cast<std::size_t>(i)], bv[static_cast<std::size_t>(i)]));
      }
    }
  }
  // Against a NaN scalar every element is NaN.
  const Tensor<T, 1> m = tessera::maximum(a, nan_v<T>);
  for (index_t i = 0; i < 19; ++i) CHECK(std::isnan(m(i)));
}

TEST_CASE_TEMPLATE("integer arithmetic matches a naive loop", T, std::int32_t, std::int64_t) {
  check_binary<T>(
      "add", [](const auto& a, const auto& b) { return a + b; }, [](T a, T b) { return T(a + b); }, -1000, 1000, 0);
  check_binary<T>(
      "sub", [](const auto& a, const auto& b) { return a - b; }, [](T a, T b) { return T(a - b); }, -1000, 1000, 0);
  check_binary<T>(
      "mul", [](const auto& a, const auto& b) { return a * b; }, [](T a, T b) { return T(a * b); }, -1000, 1000, 0);
  check_binary<T>(
      "minimum", [](const auto& a, const auto& b) { return tessera::minimum(a, b); },
      [](T a, T b) { return std::min(a, b); }, -1000, 1000, 0);
  check_binary<T>(
      "maximum", [](const auto& a, const auto& b) { return tessera::maximum(a, b); },
      [](T a, T b) { return std::max(a, b); }, -1000, 1000, 0);
  // Division truncates toward zero as in C++ (NumPy's // floors instead); divisors are kept nonzero.
  const auto a = random_vector<T>(1001, -1000, 1000, 5);
  const Tensor<T, 1> b = tessera::maximum(random_vector<T>(1001, 1, 50, 6), T(1));
  const Tensor<T, 1> q = a / b;
  const Tensor<T, 1> neg_q = a / (-b);
  const Tensor<T, 1> scaled = T(3) * a - 7;
  for (index_t i = 0; i < a.size(); ++i) {
    CHECK(q(i) == T(a(i) / b(i)));
    CHECK(neg_q(i) == T(a(i) / -b(i)));
    CHECK(scaled(i) == T(3 * a(i) - 7));
  }
  const auto m7 = from_values<T>({T(-7)});
  CHECK(Tensor<T, 1>(m7 / T(2))(0) == T(-3));
  if constexpr (std::is_same_v<T, std::int64_t>) {
    const auto big = from_values<T>({T(1) << 40});
    CHECK(Tensor<T, 1>(big * T(1000))(0) == (T(1) << 40) * 1000);  // no 32-bit truncation
  }
}

TEST_CASE_TEMPLATE("integer pow is exact, with the documented negative-exponent rules", T, std::int32_t, std::int64_t) {
  const auto base = from_values<T>({2, 3, -3, 5, 0, 0, 1, -1, -1, 2, 7, -2, 10});
  const auto expo = from_values<T>({10, 4, 3, 0, 0, 5, -5, -3, -4, -1, 2, 7, 9});
  const std::vector<T> want = {1024, 81, -27, 1, 1, 0, 1, -1, 1, 0, 49, -128, 1000000000};
  const Tensor<T, 1> p = tessera::pow(base, expo);
  check_all(values_of(p), want, 0, "integer pow");
  // Against a naive repeated-multiplication loop over many small operands.
  const auto a = random_vector<T>(1000, -6, 6, 31);
  const auto e = random_vector<T>(1000, 0, 9, 32);
  const Tensor<T, 1> r = tessera::pow(a, e);
  std::vector<T> naive;
  for (index_t i = 0; i < a.size(); ++i) {
    T acc = 1;
    for (T k = 0; k < e(i); ++k) acc = static_cast<T>(acc * a(i));
    naive.push_back(acc);
  }
  check_all(values_of(r), naive, 0, "integer pow vs loop");
  const Tensor<T, 1> squares = tessera::pow(a, T(2));
  for (index_t i = 0; i < a.size(); ++i) CHECK(squares(i) == a(i) * a(i));
  if constexpr (std::is_same_v<T, std::int32_t>) {
    // 2^30 fits in int32; the last squaring inside the loop must not matter.
    CHECK(Tensor<T, 1>(tessera::pow(from_values<T>({2}), T(30)))(0) == (T(1) << 30));
  }
}

TEST_CASE("broadcast shape errors name the op and both shapes") {
  Tensor<float, 2> a(3, 4);
  Tensor<float, 2> b(2, 4);
  try {
    auto e = a * b;
    (void)e;
    FAIL("expected shape_error");
  } catch (const tessera::shape_error& err) {
    const std::string msg = err.what();
    CHECK(msg.find("mul") != std::string::npos);
    CHECK(msg.find("[3, 4]") != std::string::npos);
    CHECK(msg.find("[2, 4]") != std::string::npos);
  }
  Tensor<bool, 1> c(5);
  CHECK_THROWS_AS(tessera::where(c, a, b), tessera::shape_error);
  CHECK_THROWS_AS(tessera::pow(a, b), tessera::shape_error);
  CHECK_THROWS_AS(static_cast<void>(a < b), tessera::shape_error);
}
