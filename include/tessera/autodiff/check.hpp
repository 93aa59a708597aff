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
  std::size_t argument = 0;  ///< which argument the worst element belongs to
  std::size_t tensor = 0;    ///< which of its parameters, for a parameter struct (module); else 0
  index_t element = 0;       ///< its flat (row-major) index
  double analytic = 0;
  double numeric = 0;
  std::string message() const {
    std::ostringstream os;
    os << (passed ? "gradient check passed" : "gradient check FAILED") << ": worst error " << max_error
       << " at argument " << argument << ", tensor " << tensor << ", element " << element << " (analytic " << analytic << ", numeric "
       << numeric << ")";
    return os.str();
  }
};

namespace detail {

/// A private double-precision copy of an argument: tensors are cast, parameter structs (modules)
/// get their parameters cloned so that perturbing them never touches the caller's tensors.
template <class A>
auto private_double_copy(const A& a) {
  if constexpr (has_parameters<A>::value) {
    A copy = a;
    std::apply(
        [](auto&... p) {
          static_assert((std::is_same_v<value_type_t<std::decay_t<decltype(p)>>, double> && ...),
                        "tessera::check_gradients: give parameter structs (modules) double parameters");
          ((p = p.clone()), ...);
        },
        copy.parameters());
    return copy;
  } else {
    return eval(cast<double>(a));
  }
}

/// The tensors of an argument to perturb, paired with their analytic gradients.
template <class A, class G>
auto perturbation_pairs(A& x, const G& g) {
  if constexpr (has_parameters<A>::value) {
    G gc = g;  // parameters() is non-const; copy the (shared) tensor handles out of the copy
    auto grads = std::apply([](const auto&... t) { return std::make_tuple(t...); }, gc.parameters());
    return std::make_pair(x.parameters(), grads);
  } else {
    return std::make_pair(std::tie(x), std::make_tuple(g));
  }
}

template <class Xs, class Gs, class Fn, std::size_t... P>
void for_each_pair(Xs& xs, const Gs& gs, Fn&& fn, std::index_sequence<P...>) {
  (fn(P, std::get<P>(xs), std::get<P>(gs)), ...);
}

template <class F, class Args, std::size_t... K>
GradCheckResult check_gradients_impl(F& f, const Args& targs, const GradCheckOptions& opt, std::index_sequence<K...>) {
  auto args = std::make_tuple(private_double_copy(std::get<K>(targs))...);
  const auto analytic = std::apply([&](const auto&... x) { return grad(f, x...); }, args);
  // f is evaluated on the arguments wrapped as grad wraps them (level-0 variables), so its forward
  // kernels are the ones grad already compiled, not a second set for plain tensors (a test of 8
  // random expression trees compiles in 40 s instead of 52).
  auto value_at = [&]() {
    using Plan = GradPlan<F, std::tuple_element_t<K, decltype(args)>...>;
    if constexpr (Plan::level == 0) {
      return std::apply(
          [&](const auto&... x) {
            using Refs = std::tuple<const std::decay_t<decltype(x)>&...>;
            const auto value = call_with_vars<0>(f, Refs(x...), std::index_sequence_for<decltype(x)...>{});
            return Tensor<double, 0, backend_t<decltype(value)>>(value)();
          },
          args);
    } else {
      return std::apply(
          [&](const auto&... x) {
            const auto value = f(x...);
            return Tensor<double, 0, backend_t<decltype(value)>>(value)();
          },
          args);
    }
  };
  GradCheckResult result;
  auto check_tensor = [&](std::size_t k, std::size_t tensor, auto& x, const auto& g) {
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
      if (!(err <= result.max_error)) {
        result.max_error = err;
        result.argument = k;
        result.tensor = tensor;
        result.element = i;
        result.analytic = a;
        result.numeric = numeric;
      }
    }
  };
  auto check_arg = [&](auto k_const) {
    constexpr std::size_t k = decltype(k_const)::value;
    auto [xs, gs] = perturbation_pairs(std::get<k>(args), std::get<k>(analytic));
    constexpr std::size_t n = std::tuple_size_v<decltype(xs)>;
    for_each_pair(xs, gs, [&](std::size_t t, auto& x, const auto& g) { check_tensor(k, t, x, g); },
                  std::make_index_sequence<n>{});
  };
  (check_arg(std::integral_constant<std::size_t, K>{}), ...);
  result.passed = result.max_error <= opt.tolerance;
  return result;
}

template <class T>
struct is_grad_check_options : std::is_same<std::decay_t<T>, GradCheckOptions> {};
}  // namespace detail

/// Checks grad(f, args...) against central finite differences computed in double precision.
/// Arguments are tensors (copied to double) or modules with double parameters (copied); a
/// GradCheckOptions may follow them.
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
