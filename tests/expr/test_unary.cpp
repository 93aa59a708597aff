// Elementwise unary ops (expr/unary_ops.hpp) on float and double: hand-computed values, a naive
// std:: reference loop over random inputs, and lengths that hit the SIMD body, the scalar tail and
// the multithreaded path (above 32768 elements).
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

/// Lengths: 1, below one AVX packet, exactly one packet, packet + tail, several packets + tail,
/// long, and past the 32768-element threshold where the pass is split across threads.
const index_t kLengths[] = {1, 7, 8, 9, 33, 1000, 100003};

template <class T>
Tensor<T, 1> random_vector(index_t n, double lo, double hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  Tensor<T, 1> t(n);
  for (index_t i = 0; i < n; ++i) t.data()[i] = static_cast<T>(dist(rng));
  return t;
}

template <class T>
Tensor<T, 1> filled(index_t n, T value) {
  Tensor<T, 1> t(n);
  for (index_t i = 0; i < n; ++i) t.data()[i] = value;
  return t;
}

/// Elements of a rank-1 tensor read through its stride (no library code involved).
template <class T>
std::vector<T> values_of(const Tensor<T, 1>& t) {
  std::vector<T> v;
  for (index_t i = 0; i < t.size(); ++i) v.push_back(t.data()[i * t.strides()[0]]);
  return v;
}

struct Tol {
  double rtol, atol;
};

bool close(double got, double want, Tol tol) {
  if (std::isnan(want)) return std::isnan(got);
  if (got == want) return true;
  return std::abs(got - want) <= tol.atol + tol.rtol * std::abs(want);
}

/// Checks every element; reports the count and the first mismatch rather than one line each.
template <class T>
void check_all_close(const std::vector<T>& got, const std::vector<double>& want, const std::vector<T>& input, Tol tol,
                     const std::string& what) {
  REQUIRE(got.size() == want.size());
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!close(static_cast<double>(got[i]), want[i], tol)) {
      if (bad++ == 0) first = i;
    }
  }
  if (bad != 0) {
    INFO(what << ": " << bad << " of " << got.size() << " elements differ; first at " << first << ": input "
              << static_cast<double>(input[first]) << " gave " << static_cast<double>(got[first]) << ", expected "
              << want[first]);
    CHECK(bad == 0);
  } else {
    CHECK(bad == 0);
  }
}

/// Random inputs in [lo, hi) of every test length: op(x) against ref applied element by element.
template <class T, class Op, class Ref>
void check_against_reference(const std::string& name, Op op, Ref ref, double lo, double hi, Tol tol) {
  unsigned seed = 1;
  for (index_t n : kLengths) {
    const auto x = random_vector<T>(n, lo, hi, seed++);
    const Tensor<T, 1> y = op(x);
    REQUIRE(y.shape()[0] == n);
    const auto in = values_of(x);
    std::vector<double> want;
    want.reserve(in.size());
    for (T v : in) want.push_back(static_cast<double>(static_cast<T>(ref(static_cast<double>(v)))));
    check_all_close(values_of(y), want, in, tol, name + " n=" + std::to_string(n) + " " + tessera::dtype_name<T>());
  }
}

/// op(x) for one x, evaluated over 19 copies: positions 0..15 go through the SIMD body, 16..18
/// through the scalar tail; every element must equal `expected`.
template <class T, class Op>
void check_value(const std::string& name, Op op, T x, double expected, Tol tol) {
  const auto in = filled<T>(19, x);
  const Tensor<T, 1> y = op(in);
  const std::vector<double> want(19, static_cast<double>(static_cast<T>(expected)));
  check_all_close(values_of(y), want, values_of(in), tol, name + "(" + std::to_string(static_cast<double>(x)) + ")");
}

/// Tolerance per element type: a few float ulps (Eigen's SIMD approximations), tighter for double.
template <class T>
Tol approx_tol() {
  if constexpr (std::is_same_v<T, float>) {
    return {1e-6, 1e-7};
  } else {
    return {1e-14, 1e-15};
  }
}
constexpr Tol exact{0, 0};

double gelu_ref(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
double sigmoid_ref(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double softplus_ref(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))); }

}  // namespace

TEST_CASE_TEMPLATE("transcendental unary ops match a naive std:: loop", T, float, double) {
  const Tol tol = approx_tol<T>();
  // sin/cos/tanh/erf cross zero inside the range, where only an absolute bound makes sense.
  const Tol zero_crossing{tol.rtol, std::is_same_v<T, float> ? 1e-6 : 1e-14};
  check_against_reference<T>(
      "exp", [](const auto& x) { return tessera::exp(x); }, [](double v) { return std::exp(v); }, -20, 20, tol);
  check_against_reference<T>(
      "log", [](const auto& x) { return tessera::log(x); }, [](double v) { return std::log(v); }, 1e-3, 100,
      zero_crossing);
  check_against_reference<T>(
      "log1p", [](const auto& x) { return tessera::log1p(x); }, [](double v) { return std::log1p(v); }, -0.9, 10, tol);
  check_against_reference<T>(
      "sqrt", [](const auto& x) { return tessera::sqrt(x); }, [](double v) { return std::sqrt(v); }, 0, 100, tol);
  check_against_reference<T>(
      "rsqrt", [](const auto& x) { return tessera::rsqrt(x); }, [](double v) { return 1.0 / std::sqrt(v); }, 1e-3, 100,
      tol);
  check_against_reference<T>(
      "sin", [](const auto& x) { return tessera::sin(x); }, [](double v) { return std::sin(v); }, -10, 10,
      zero_crossing);
  check_against_reference<T>(
      "cos", [](const auto& x) { return tessera::cos(x); }, [](double v) { return std::cos(v); }, -10, 10,
      zero_crossing);
  check_against_reference<T>(
      "tanh", [](const auto& x) { return tessera::tanh(x); }, [](double v) { return std::tanh(v); }, -10, 10,
      zero_crossing);
  check_against_reference<T>(
      "erf", [](const auto& x) { return tessera::erf(x); }, [](double v) { return std::erf(v); }, -4, 4, zero_crossing);
  check_against_reference<T>(
      "sigmoid", [](const auto& x) { return tessera::sigmoid(x); }, sigmoid_ref, -30, 30, zero_crossing);
  check_against_reference<T>(
      "gelu", [](const auto& x) { return tessera::gelu(x); }, gelu_ref, -6, 6, zero_crossing);
  check_against_reference<T>(
      "softplus", [](const auto& x) { return tessera::softplus(x); }, softplus_ref, -30, 30, zero_crossing);
}

TEST_CASE_TEMPLATE("exact unary ops match a naive loop bit for bit", T, float, double) {
  check_against_reference<T>(
      "abs", [](const auto& x) { return tessera::abs(x); }, [](double v) { return std::abs(v); }, -10, 10, exact);
  check_against_reference<T>(
      "sign", [](const auto& x) { return tessera::sign(x); }, [](double v) { return double((0 < v) - (v < 0)); }, -10,
      10, exact);
  check_against_reference<T>(
      "relu", [](const auto& x) { return tessera::relu(x); }, [](double v) { return v > 0 ? v : 0.0; }, -10, 10, exact);
  check_against_reference<T>(
      "square", [](const auto& x) { return tessera::square(x); },
      [](double v) { return static_cast<double>(static_cast<T>(v) * static_cast<T>(v)); }, -10, 10, exact);
  check_against_reference<T>(
      "neg", [](const auto& x) { return -x; }, [](double v) { return -v; }, -10, 10, exact);
  check_against_reference<T>(
      "clamp", [](const auto& x) { return tessera::clamp(x, -2.5, 4.0); },
      [](double v) { return std::min(std::max(v, -2.5), 4.0); }, -10, 10, exact);
}

TEST_CASE_TEMPLATE("unary ops at hand-computed values", T, float, double) {
  const Tol tol = approx_tol<T>();
  const auto exp = [](const auto& x) { return tessera::exp(x); };
  check_value<T>("exp", exp, T(0), 1.0, exact);
  check_value<T>("exp", exp, T(1), 2.718281828459045, tol);
  check_value<T>("exp", exp, T(-1), 0.36787944117144233, tol);
  // exp underflows to exactly 0 (Eigen 3.4's SIMD exp clamps its input instead: see the report).
  check_value<T>("exp", exp, -std::numeric_limits<T>::infinity(), 0.0, exact);
  check_value<T>("exp", exp, T(-1000), 0.0, exact);
  check_value<T>("exp", exp, std::numeric_limits<T>::infinity(), std::numeric_limits<double>::infinity(), exact);
  const auto log = [](const auto& x) { return tessera::log(x); };
  check_value<T>("log", log, T(1), 0.0, exact);
  check_value<T>("log", log, T(2.718281828459045), 1.0, tol);
  check_value<T>("log", log, T(0), -std::numeric_limits<double>::infinity(), exact);
  check_value<T>("log", log, T(-1), std::numeric_limits<double>::quiet_NaN(), exact);
  const auto log1p = [](const auto& x) { return tessera::log1p(x); };
  check_value<T>("log1p", log1p, T(0), 0.0, exact);
  check_value<T>("log1p", log1p, T(1e-10), 1e-10, tol);  // no cancellation for tiny x
  check_value<T>("log1p", log1p, T(1), 0.6931471805599453, tol);
  const auto sqrt = [](const auto& x) { return tessera::sqrt(x); };
  check_value<T>("sqrt", sqrt, T(4), 2.0, exact);
  check_value<T>("sqrt", sqrt, T(0), 0.0, exact);
  check_value<T>("sqrt", sqrt, T(2), 1.4142135623730951, tol);
  const auto rsqrt = [](const auto& x) { return tessera::rsqrt(x); };
  check_value<T>("rsqrt", rsqrt, T(4), 0.5, tol);
  check_value<T>("rsqrt", rsqrt, T(0.01), 10.0, tol);
  const auto abs = [](const auto& x) { return tessera::abs(x); };
  check_value<T>("abs", abs, T(-3.5), 3.5, exact);
  check_value<T>("abs", abs, T(2), 2.0, exact);
  const auto sign = [](const auto& x) { return tessera::sign(x); };
  check_value<T>("sign", sign, T(0), 0.0, exact);
  check_value<T>("sign", sign, T(-0.0), 0.0, exact);
  check_value<T>("sign", sign, T(-7.25), -1.0, exact);
  check_value<T>("sign", sign, T(1e-30), 1.0, exact);
  const auto sin = [](const auto& x) { return tessera::sin(x); };
  check_value<T>("sin", sin, T(0), 0.0, exact);
  check_value<T>("sin", sin, T(1.5707963267948966), 1.0, tol);
  check_value<T>("sin", sin, T(0.5235987755982988), 0.5, tol);
  const auto cos = [](const auto& x) { return tessera::cos(x); };
  check_value<T>("cos", cos, T(0), 1.0, exact);
  check_value<T>("cos", cos, T(1.0471975511965976), 0.5, tol);
  check_value<T>("cos", cos, T(3.141592653589793), -1.0, tol);
  const auto tanh = [](const auto& x) { return tessera::tanh(x); };
  check_value<T>("tanh", tanh, T(0), 0.0, exact);
  check_value<T>("tanh", tanh, T(0.5), 0.46211715726000974, tol);
  check_value<T>("tanh", tanh, T(50), 1.0, exact);
  check_value<T>("tanh", tanh, T(-50), -1.0, exact);
  const auto sigmoid = [](const auto& x) { return tessera::sigmoid(x); };
  check_value<T>("sigmoid", sigmoid, T(0), 0.5, exact);
  check_value<T>("sigmoid", sigmoid, T(2), 0.8807970779778823, tol);
  check_value<T>("sigmoid", sigmoid, T(-2), 0.11920292202211755, tol);
  const auto relu = [](const auto& x) { return tessera::relu(x); };
  check_value<T>("relu", relu, T(-3), 0.0, exact);
  check_value<T>("relu", relu, T(-1e-30), 0.0, exact);
  check_value<T>("relu", relu, T(2.5), 2.5, exact);
  const auto gelu = [](const auto& x) { return tessera::gelu(x); };
  check_value<T>("gelu", gelu, T(0), 0.0, exact);
  check_value<T>("gelu", gelu, T(1), 0.8413447460685429, tol);  // torch.nn.functional.gelu(1.0)
  check_value<T>("gelu", gelu, T(-1), -0.15865525393145707, tol);
  check_value<T>("gelu", gelu, T(2), 1.9544997361036416, tol);
  const auto softplus = [](const auto& x) { return tessera::softplus(x); };
  check_value<T>("softplus", softplus, T(0), 0.6931471805599453, tol);
  check_value<T>("softplus", softplus, T(1), 1.3132616875182228, tol);
  check_value<T>("softplus", softplus, T(100), 100.0, exact);
  check_value<T>("softplus", softplus, T(-100), 3.720075976020836e-44, Tol{1e-3, 1e-30});
  const auto erf = [](const auto& x) { return tessera::erf(x); };
  check_value<T>("erf", erf, T(0), 0.0, exact);
  check_value<T>("erf", erf, T(1), 0.8427007929497149, tol);
  check_value<T>("erf", erf, T(-0.5), -0.5204998778130465, tol);
  check_value<T>("erf", erf, T(10), 1.0, exact);
  const auto square = [](const auto& x) { return tessera::square(x); };
  check_value<T>("square", square, T(-3), 9.0, exact);
  check_value<T>("square", square, T(0.5), 0.25, exact);
  const auto neg = [](const auto& x) { return -x; };
  check_value<T>("neg", neg, T(2.5), -2.5, exact);
  check_value<T>("neg", neg, T(-4), 4.0, exact);
  const auto clamp = [](const auto& x) { return tessera::clamp(x, 0, 1); };
  check_value<T>("clamp", clamp, T(-0.5), 0.0, exact);
  check_value<T>("clamp", clamp, T(0.25), 0.25, exact);
  check_value<T>("clamp", clamp, T(7), 1.0, exact);
}

TEST_CASE_TEMPLATE("sigmoid and softplus stay finite for large |x|", T, float, double) {
  const T big[] = {T(20), T(40), T(88), T(100), T(500), T(1000), std::numeric_limits<T>::max()};
  const auto sigmoid = [](const auto& x) { return tessera::sigmoid(x); };
  const auto softplus = [](const auto& x) { return tessera::softplus(x); };
  for (T b : big) {
    CAPTURE(b);
    // sigmoid(x) = 1 - sigmoid(-x) is within rounding of 1 and never NaN or above 1.
    check_value<T>("sigmoid", sigmoid, b, sigmoid_ref(static_cast<double>(b)), approx_tol<T>());
    check_value<T>("sigmoid", sigmoid, static_cast<T>(-b), sigmoid_ref(-static_cast<double>(b)), Tol{1e-3, 1e-30});
    // softplus(x) -> x for large x (no inf from exp(x)); softplus(-x) tiny and finite.
    check_value<T>("softplus", softplus, b, softplus_ref(static_cast<double>(b)), approx_tol<T>());
    check_value<T>("softplus", softplus, static_cast<T>(-b), softplus_ref(-static_cast<double>(b)), Tol{1e-3, 1e-30});
  }
}

TEST_CASE_TEMPLATE("unary ops on non-contiguous inputs and composed chains", T, float, double) {
  // A strided view goes through the gathering packet path.
  const auto base = random_vector<T>(2 * 1001, -3, 3, 99);
  const auto x = base.slice(0, 1, 2 * 1001, 2);
  REQUIRE(x.shape()[0] == 1001);
  REQUIRE(!x.is_contiguous());
  const Tensor<T, 1> y = tessera::tanh(tessera::exp(x) * T(0.5)) + tessera::relu(-x);
  const auto in = values_of(x);
  const auto got = values_of(y);
  std::vector<double> want;
  for (T v : in) {
    const double d = static_cast<double>(v);
    want.push_back(std::tanh(std::exp(d) * 0.5) + (d < 0 ? -d : 0.0));
  }
  check_all_close(got, want, in, Tol{std::is_same_v<T, float> ? 4e-6 : 1e-13, 1e-6}, "tanh(exp(x) * 0.5) + relu(-x)");
}

TEST_CASE("unary ops on integer tensors are exact") {
  Tensor<std::int32_t, 1> a = {-5, -1, 0, 1, 3, 7, -8, 2, 9, -4, 6};
  const Tensor<std::int32_t, 1> r = tessera::relu(a);
  const Tensor<std::int32_t, 1> s = tessera::sign(a);
  const Tensor<std::int32_t, 1> q = tessera::square(a);
  const Tensor<std::int32_t, 1> m = tessera::abs(-a);
  const Tensor<std::int32_t, 1> c = tessera::clamp(a, -2, 4);
  for (index_t i = 0; i < a.size(); ++i) {
    const std::int32_t v = a(i);
    CAPTURE(v);
    CHECK(r(i) == (v > 0 ? v : 0));
    CHECK(s(i) == (v > 0 ? 1 : (v < 0 ? -1 : 0)));
    CHECK(q(i) == v * v);
    CHECK(m(i) == (v < 0 ? -v : v));
    CHECK(c(i) == std::min(std::max(v, -2), 4));
  }
  Tensor<std::int64_t, 1> big = {std::int64_t{1} << 40, -(std::int64_t{1} << 40), 0};
  const Tensor<std::int64_t, 1> nb = -big;
  CHECK(nb(0) == -(std::int64_t{1} << 40));
  CHECK(nb(1) == (std::int64_t{1} << 40));
  CHECK(nb(2) == 0);
}

TEST_CASE("logical_not and operator! on bool tensors") {
  Tensor<bool, 1> b(37);
  for (index_t i = 0; i < b.size(); ++i) b(i) = (i % 3) == 0;
  const Tensor<bool, 1> n = tessera::logical_not(b);
  const Tensor<bool, 1> n2 = !b;
  const Tensor<bool, 1> nn = !(!b);
  for (index_t i = 0; i < b.size(); ++i) {
    CHECK(n(i) == ((i % 3) != 0));
    CHECK(n2(i) == n(i));
    CHECK(nn(i) == b(i));
  }
}

TEST_CASE("clamp with lo > hi is a value_error") {
  Tensor<float, 1> a = {1.f, 2.f};
  CHECK_THROWS_AS(tessera::clamp(a, 2.f, 1.f), tessera::value_error);
}
