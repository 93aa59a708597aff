// softmax and log_softmax (expr/softmax.hpp, backend/cpu/softmax.hpp) along every axis of a
// rank-3 tensor against a naive loop, normalization, stability for large inputs, -inf entries,
// expression and non-contiguous inputs, and the multithreaded paths.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using tessera::index_t;
using tessera::Shape;
using tessera::Tensor;

template <class T, std::size_t R>
Tensor<T, R> random_tensor(const Shape<R>& shape, unsigned seed, double lo, double hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  Tensor<T, R> t(shape);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(dist(rng));
  return t;
}

/// Row-major elements of any tensor, read through its strides.
template <class T, std::size_t R>
std::vector<double> values_of(const Tensor<T, R>& t) {
  std::vector<double> out;
  if (t.size() == 0) return out;
  std::array<index_t, R> idx{};
  for (index_t n = 0; n < t.size(); ++n) {
    index_t off = 0;
    for (std::size_t i = 0; i < R; ++i) off += idx[i] * t.strides()[i];
    out.push_back(static_cast<double>(t.data()[off]));
    for (std::size_t i = R; i-- > 0;) {
      if (++idx[i] < t.shape()[i]) break;
      idx[i] = 0;
    }
  }
  return out;
}

/// Naive (log_)softmax along `axis` of row-major values, in long double with the max subtracted.
std::vector<double> softmax_reference(const std::vector<double>& x, const std::vector<index_t>& shape, std::size_t axis,
                                      bool log) {
  index_t outer = 1, inner = 1;
  for (std::size_t i = 0; i < axis; ++i) outer *= shape[i];
  for (std::size_t i = axis + 1; i < shape.size(); ++i) inner *= shape[i];
  const index_t n = shape[axis];
  std::vector<double> out(x.size());
  for (index_t o = 0; o < outer; ++o) {
    for (index_t i = 0; i < inner; ++i) {
      auto at = [&](index_t k) { return static_cast<std::size_t>((o * n + k) * inner + i); };
      long double m = -std::numeric_limits<long double>::infinity();
      for (index_t k = 0; k < n; ++k) m = std::max<long double>(m, x[at(k)]);
      long double s = 0;
      for (index_t k = 0; k < n; ++k) s += std::exp(static_cast<long double>(x[at(k)]) - m);
      for (index_t k = 0; k < n; ++k) {
        const long double v = static_cast<long double>(x[at(k)]) - m;
        out[at(k)] = static_cast<double>(log ? v - std::log(s) : std::exp(v) / s);
      }
    }
  }
  return out;
}

template <class T>
constexpr double softmax_tol = std::is_same_v<T, float> ? 2e-6 : 1e-14;

template <class T, std::size_t R>
void check_close(const Tensor<T, R>& got, const std::vector<double>& want, double rtol, double atol,
                 const std::string& what) {
  INFO(what << " " << std::string(tessera::dtype_name<T>()));
  const auto have = values_of(got);
  REQUIRE(have.size() == want.size());
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < have.size(); ++i) {
    const bool ok = have[i] == want[i] || std::abs(have[i] - want[i]) <= atol + rtol * std::abs(want[i]);
    if (!ok && bad++ == 0) first = i;
  }
  INFO(bad << " of " << have.size() << " differ; first at " << first << ": got " << have[first] << ", expected "
           << want[first]);
  CHECK(bad == 0);
}

/// softmax and log_softmax of x along every axis (also as a negative axis) against the reference,
/// and the softmax sums along the axis equal 1.
template <class T, std::size_t R>
void check_every_axis(const Tensor<T, R>& x, const std::string& what) {
  const auto xs = values_of(x);
  const std::vector<index_t> shape(x.shape().begin(), x.shape().end());
  const double tol = softmax_tol<T>;
  for (std::size_t axis = 0; axis < R; ++axis) {
    const index_t neg = static_cast<index_t>(axis) - static_cast<index_t>(R);
    const std::string where = what + " axis " + std::to_string(axis);
    const Tensor<T, R> p = tessera::softmax(x, static_cast<index_t>(axis));
    check_close(p, softmax_reference(xs, shape, axis, false), tol, 1e-30, where + " softmax");
    const Tensor<T, R> lp = tessera::log_softmax(x, neg);
    check_close(lp, softmax_reference(xs, shape, axis, true), tol, tol, where + " log_softmax");
    const index_t axes[1] = {static_cast<index_t>(axis)};
    const auto sums = values_of(Tensor<T, R - 1>(tessera::sum(p, axes)));
    std::size_t off = 0;
    for (double s : sums) off += std::abs(s - 1.0) <= 10 * tol * static_cast<double>(shape[axis]) ? 0 : 1;
    INFO(where << ": sums along the axis");
    CHECK(off == 0);
  }
}

}  // namespace

TEST_CASE_TEMPLATE("softmax and log_softmax along every axis of a rank-3 tensor", T, float, double) {
  // The last extent exceeds two AVX packets, so the contiguous path runs SIMD and a tail.
  check_every_axis(random_tensor<T>(Shape<3>{4, 5, 19}, 1, -5, 5), "[4, 5, 19]");
  check_every_axis(random_tensor<T>(Shape<3>{3, 1, 7}, 2, -5, 5), "[3, 1, 7]");
  // Large inputs: exp(1000) overflows unless the maximum is subtracted first. log_softmax must also
  // subtract before adding log(sum): x - (max + log(sum)) loses ulp(1000) (see the report).
  check_every_axis(random_tensor<T>(Shape<3>{3, 4, 9}, 3, 990, 1010), "inputs near 1000");
  check_every_axis(random_tensor<T>(Shape<3>{3, 4, 9}, 4, -1010, -990), "inputs near -1000");
}

TEST_CASE_TEMPLATE("softmax at hand-computed values and the default axis", T, float, double) {
  Tensor<T, 2> x = {{0, 0, 0, 0}, {1000, 1000, T(1000 + std::log(2.0)), 0}};
  const Tensor<T, 2> p = tessera::softmax(x);  // default: the last axis
  for (index_t j = 0; j < 4; ++j) CHECK(p(0, j) == doctest::Approx(0.25));
  CHECK(p(1, 0) == doctest::Approx(0.25));
  CHECK(p(1, 2) == doctest::Approx(0.5));
  CHECK(p(1, 3) == 0);  // exp(-1000) underflows to 0 (see the report on Eigen's SIMD exp)
  const Tensor<T, 2> lp = tessera::log_softmax(x);
  CHECK(lp(0, 1) == doctest::Approx(-std::log(4.0)));
  CHECK(lp(1, 0) == doctest::Approx(-std::log(4.0)));
  CHECK(lp(1, 3) == doctest::Approx(-1000 - std::log(4.0)));  // finite, no log(0)
  Tensor<T, 1> two = {T(1), T(3)};
  const Tensor<T, 1> q = tessera::softmax(two, 0);
  CHECK(q(1) == doctest::Approx(1.0 / (1.0 + std::exp(-2.0))));
}

TEST_CASE_TEMPLATE("-inf entries get probability 0 and log-probability -inf", T, float, double) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  // 20 columns so the masked entries fall in SIMD lanes and in the scalar tail.
  Tensor<T, 2> x = random_tensor<T>(Shape<2>{3, 20}, 11, -2, 2);
  for (index_t j : {0, 3, 9, 17, 19}) x(1, j) = -inf;
  for (index_t i : {0, 2}) x(i, 5) = -inf;  // column 5 keeps one finite entry (row 1)
  for (std::size_t axis = 0; axis < 2; ++axis) {
    CAPTURE(axis);
    const Tensor<T, 2> p = tessera::softmax(x, static_cast<index_t>(axis));
    const Tensor<T, 2> lp = tessera::log_softmax(x, static_cast<index_t>(axis));
    index_t nonzero = 0, not_minus_inf = 0, nan = 0;
    for (index_t i = 0; i < 3; ++i) {
      for (index_t j = 0; j < 20; ++j) {
        nan += std::isnan(p(i, j)) || std::isnan(lp(i, j)) ? 1 : 0;
        if (x(i, j) == -inf) {
          nonzero += p(i, j) == 0 ? 0 : 1;
          not_minus_inf += lp(i, j) == -inf ? 0 : 1;
        }
      }
    }
    CHECK(nan == 0);
    CHECK(nonzero == 0);  // exactly 0, as PyTorch (see the report on Eigen's SIMD exp)
    CHECK(not_minus_inf == 0);
    // The remaining entries still normalize.
    const index_t axes[1] = {static_cast<index_t>(axis)};
    for (double s : values_of(Tensor<T, 1>(tessera::sum(p, axes)))) CHECK(s == doctest::Approx(1.0));
  }
}

TEST_CASE_TEMPLATE("a slice that is entirely -inf gives NaN, as PyTorch", T, float, double) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  Tensor<T, 2> x = {{-inf, 1}, {-inf, 2}};
  const Tensor<T, 2> p = tessera::softmax(x, 0);
  CHECK(std::isnan(p(0, 0)));
  CHECK(std::isnan(p(1, 0)));
  CHECK(p(0, 1) + p(1, 1) == doctest::Approx(1.0));
}

TEST_CASE_TEMPLATE("softmax of an expression and of non-contiguous views", T, float, double) {
  const auto a = random_tensor<T>(Shape<3>{3, 4, 10}, 21, -3, 3);
  const auto b = random_tensor<T>(Shape<1>{10}, 22, -3, 3);
  const Tensor<T, 3> ab = a * T(2) + b;
  const std::vector<index_t> shape{3, 4, 10};
  for (std::size_t axis = 0; axis < 3; ++axis) {
    const Tensor<T, 3> p = tessera::softmax(a * T(2) + b, static_cast<index_t>(axis));
    check_close(p, softmax_reference(values_of(ab), shape, axis, false), softmax_tol<T>, 1e-30, "softmax(2a + b)");
    const Tensor<T, 3> lp = tessera::log_softmax(tessera::tanh(a), static_cast<index_t>(axis));
    const Tensor<T, 3> ta = tessera::tanh(a);
    check_close(lp, softmax_reference(values_of(ta), shape, axis, true), softmax_tol<T>, softmax_tol<T>,
                "log_softmax(tanh(a))");
  }
  // Transposed and stepped views.
  const auto t = a.transpose(0, 2);  // [10, 4, 3]
  check_every_axis(t, "transposed view");
  check_every_axis(a.slice(2, 1, 10, 3), "stepped slice");
  // Softmax inside a larger expression: one materialization feeding the pass.
  const Tensor<T, 3> scaled = tessera::softmax(a) * T(10) - T(1);
  const Tensor<T, 3> plain = tessera::softmax(a);
  for (index_t k = 0; k < 10; ++k) CHECK(scaled(2, 3, k) == doctest::Approx(double(plain(2, 3, k)) * 10 - 1));
}

TEST_CASE_TEMPLATE("softmax on the multithreaded paths", T, float, double) {
  // Many rows along the contiguous axis, and a strided axis with a long inner extent.
  check_every_axis(random_tensor<T>(Shape<2>{1500, 40}, 31, -4, 4), "[1500, 40]");
  const auto x = random_tensor<T>(Shape<3>{3, 40, 700}, 32, -4, 4);
  const auto xs = values_of(x);
  const Tensor<T, 3> p = tessera::softmax(x, 1);
  check_close(p, softmax_reference(xs, {3, 40, 700}, 1, false), softmax_tol<T>, 1e-30, "[3, 40, 700] axis 1");
}

TEST_CASE("softmax errors and empty inputs") {
  Tensor<float, 2> x(3, 4);
  CHECK_THROWS_AS(tessera::softmax(x, 2), tessera::index_error);
  CHECK_THROWS_AS(tessera::log_softmax(x, -3), tessera::index_error);
  Tensor<float, 2> e(0, 4);
  const Tensor<float, 2> pe = tessera::softmax(e, 1);
  CHECK(pe.shape() == Shape<2>{0, 4});
  Tensor<float, 2> z(3, 0);
  const Tensor<float, 2> pz = tessera::log_softmax(z, 1);
  CHECK(pz.shape() == Shape<2>{3, 0});
}
