// Shared by the autodiff tests: gradient-check assertions, exact tensor comparisons and central
// finite differences written independently of tessera's autodiff (plain loops over elements).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <sstream>
#include <string>
#include <tessera/tessera.hpp>

namespace grad_test {

using tessera::index_t;

/// Runs check_gradients and reports its message when it fails.
#define GRAD_CHECK(...)                                          \
  do {                                                           \
    const auto grad_check_result_ = tessera::check_gradients(__VA_ARGS__); \
    CHECK_MESSAGE(grad_check_result_.passed, grad_check_result_.message()); \
  } while (false)

/// A tolerance of 1e-6 (absolute near zero, relative above 1) with a central-difference step of 1e-6.
inline tessera::GradCheckOptions tight() { return tessera::GradCheckOptions{1e-6, 1e-6}; }

/// Largest |a - b| / max(1, |b|) over all elements; infinity when the shapes differ.
template <class T, std::size_t R, class U>
double max_error(const tessera::Tensor<T, R>& a, const tessera::Tensor<U, R>& b) {
  if (a.shape() != b.shape()) return INFINITY;
  const auto af = a.contiguous().flatten();
  const auto bf = b.contiguous().flatten();
  double worst = 0;
  for (index_t i = 0; i < af.size(); ++i) {
    const double x = static_cast<double>(af(i)), y = static_cast<double>(bf(i));
    const double err = std::abs(x - y) / std::max(1.0, std::abs(y));
    if (!(err <= worst)) worst = err;  // NaN counts as the worst
  }
  return worst;
}

template <class T, std::size_t R>
std::string describe(const tessera::Tensor<T, R>& t) {
  std::ostringstream os;
  os << tessera::shape_to_string(t.shape()) << " " << t;
  return os.str();
}

/// CHECKs that `actual` matches `expected` elementwise within `tol` (relative above 1).
#define CHECK_TENSOR_NEAR(actual, expected, tol)                                                        \
  do {                                                                                                  \
    const auto& check_actual_ = (actual);                                                               \
    const auto& check_expected_ = (expected);                                                           \
    const double check_err_ = grad_test::max_error(check_actual_, check_expected_);                     \
    CHECK_MESSAGE(check_err_ <= (tol), "error " << check_err_ << "\nactual:   "                          \
                                                << grad_test::describe(check_actual_)                   \
                                                << "\nexpected: " << grad_test::describe(check_expected_)); \
  } while (false)

/// CHECKs exact equality (same shape, every element equal).
#define CHECK_TENSOR_EQ(actual, expected) CHECK_TENSOR_NEAR(actual, expected, 0.0)

/// Central differences of the scalar function `value(x)` (a double) with respect to every element
/// of x, perturbing a private copy of x.
template <class F, std::size_t R>
tessera::Tensor<double, R> numeric_gradient(F&& value, const tessera::Tensor<double, R>& x0, double h = 1e-6) {
  tessera::Tensor<double, R> x = x0.clone();
  tessera::Tensor<double, R> g = tessera::zeros<double>(x.shape());
  auto xf = x.flatten();
  auto gf = g.flatten();
  for (index_t i = 0; i < xf.size(); ++i) {
    const double old = xf(i);
    xf(i) = old + h;
    const double up = value(x);
    xf(i) = old - h;
    const double down = value(x);
    xf(i) = old;
    gf(i) = (up - down) / (2 * h);
  }
  return g;
}

/// A deterministic tensor of values in [lo, hi] (varied, no ties, no zeros when 0 is outside).
template <std::size_t R>
tessera::Tensor<double, R> sample(const index_t (&shape)[R], double lo, double hi, std::uint64_t seed = 7) {
  tessera::Generator gen(seed);
  return tessera::uniform<double>(gen, shape, lo, hi);
}

}  // namespace grad_test
