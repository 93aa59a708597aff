// check_gradients: compares grad's result with central finite differences, in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "tessera/autodiff/grad.hpp"

namespace tessera {

/// Settings of check_gradients.
struct GradCheckOptions {
  double step = 1e-6;       ///< finite-difference step h: (f(x + h) - f(x - h)) / 2h
  double tolerance = 1e-6;  ///< largest accepted error (see GradCheckResult::max_error)
};

/// What check_gradients found. Errors are |analytic - numeric| / max(1, |analytic|, |numeric|):
/// relative for large derivatives, absolute near zero.
struct GradCheckResult {
  bool passed = true;
  double max_error = 0;
  std::size_t argument = 0;  ///< which tensor argument the worst element belongs to
  index_t element = 0;       ///< its flat (row-major) index
  double analytic = 0;
  double numeric = 0;
  std::string message() const {
    std::ostringstream os;
    os << (passed ? "gradient check passed" : "gradient check FAILED") << ": worst error " << max_error
       << " at argument " << argument << ", element " << element << " (analytic " << analytic << ", numeric "
       << numeric << ")";
    return os.str();
  }
};

namespace detail {
template <class T, std::size_t R, class B>
Tensor<double, R, B> to_double(const Tensor<T, R, B>& t) {
  return cast<double>(t);
}

template <class F, class Args, std::size_t... K>
GradCheckResult check_gradients_impl(F& f, const Args& targs, const GradCheckOptions& opt, std::index_sequence<K...>) {
  // Fresh double copies, so perturbing them never touches the caller's tensors.
  auto args = std::make_tuple(eval(to_double(std::get<K>(targs)))...);
  const auto analytic = std::apply([&](const auto&... x) { return grad(f, x...); }, args);
  auto value_at = [&]() {
    return std::apply([&](const auto&... x) { return Tensor<double, 0>(f(x...))(); }, args);
  };
  GradCheckResult result;
  auto check_arg = [&](auto k_const) {
    constexpr std::size_t k = decltype(k_const)::value;
    auto& x = std::get<k>(args);
    const auto& g = std::get<k>(analytic);
    auto xf = x.flatten();  // contiguous: a view that writes through to x
    const auto gf = eval(g).flatten();
    for (index_t i = 0; i < xf.size(); ++i) {
      const double old = xf(i);
      xf(i) = old + opt.step;
      const double up = value_at();
      xf(i) = old - opt.step;
      const double down = value_at();
      xf(i) = old;
      const double numeric = (up - down) / (2 * opt.step);
      const double a = gf(i);
      const double err = std::abs(a - numeric) / std::max({1.0, std::abs(a), std::abs(numeric)});
      if (!(err <= result.max_error) || (i == 0 && k == 0 && result.max_error == 0 && err == 0)) {
        if (!(err <= result.max_error)) {
          result.max_error = err;
          result.argument = k;
          result.element = i;
          result.analytic = a;
          result.numeric = numeric;
        }
      }
    }
  };
  (check_arg(std::integral_constant<std::size_t, K>{}), ...);
  result.passed = result.max_error <= opt.tolerance;
  return result;
}

template <class T>
struct is_grad_check_options : std::is_same<std::decay_t<T>, GradCheckOptions> {};
}  // namespace detail

/// Checks grad(f, args...) against central finite differences computed in double precision.
/// Arguments are tensors (copied to double); a GradCheckOptions may follow them.
template <class F, class... A>
GradCheckResult check_gradients(F&& f, const A&... args) {
  if constexpr (sizeof...(A) > 0 && detail::is_grad_check_options<std::tuple_element_t<sizeof...(A) - 1, std::tuple<A...>>>::value) {
    const auto all = std::tuple<const A&...>(args...);
    const GradCheckOptions& opt = std::get<sizeof...(A) - 1>(all);
    return detail::check_gradients_impl(f, all, opt, std::make_index_sequence<sizeof...(A) - 1>{});
  } else {
    return detail::check_gradients_impl(f, std::tuple<const A&...>(args...), GradCheckOptions{},
                                        std::index_sequence_for<A...>{});
  }
}

}  // namespace tessera
