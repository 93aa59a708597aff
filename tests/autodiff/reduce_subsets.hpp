// Shared by the test_grad_reduce*.cpp programs: runs a gradient check of one reduction over every
// non-empty subset of the axes of a rank-3 tensor, with and without keepdims. A reduction's type
// depends only on how many axes it takes, so the subsets of one size share one instantiation and
// the axes are chosen at run time.
#pragma once

#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

namespace reduce_subsets {

using tessera::index_t;

template <bool Keep>
using keep_tag = std::bool_constant<Keep>;

/// Gradient-checks sum(reduce(x, axes[, keepdims]) * w) for every subset of N axes of x, with a
/// weight w of the result's shape. `reduce(x, axes, keep_tag<K>{})` applies the reduction.
template <bool Keep, std::size_t N, class Reduce>
void check_subsets_of_size(const Reduce& reduce, const tessera::Tensor<double, 3>& x, const tessera::GradCheckOptions& opt) {
  std::vector<std::array<index_t, N>> subsets;
  if constexpr (N == 1) subsets = {{0}, {1}, {2}};
  if constexpr (N == 2) subsets = {{0, 1}, {0, 2}, {1, 2}};
  if constexpr (N == 3) subsets = {{0, 1, 2}};
  std::uint64_t seed = 100;
  for (const auto& subset : subsets) {
    index_t axes[N];
    for (std::size_t i = 0; i < N; ++i) axes[i] = subset[i];
    CAPTURE(axes[0]);
    CAPTURE(N > 1 ? axes[N > 1 ? 1 : 0] : -1);
    CAPTURE(Keep);
    tessera::Generator gen(++seed);
    const auto w = tessera::uniform<double>(gen, reduce(x, axes, keep_tag<Keep>{}).shape(), -2.0, 2.0);
    GRAD_CHECK([&](const auto& v) { return sum(reduce(v, axes, keep_tag<Keep>{}) * w); }, x, opt);
  }
}

/// Every non-empty subset of the three axes, dropped and kept; then the all-axes overload.
template <class Reduce, class ReduceAll>
void check_every_subset(const Reduce& reduce, const ReduceAll& reduce_all, const tessera::Tensor<double, 3>& x,
                        const tessera::GradCheckOptions& opt = grad_test::tight()) {
  check_subsets_of_size<false, 1>(reduce, x, opt);
  check_subsets_of_size<false, 2>(reduce, x, opt);
  check_subsets_of_size<false, 3>(reduce, x, opt);
  check_subsets_of_size<true, 1>(reduce, x, opt);
  check_subsets_of_size<true, 2>(reduce, x, opt);
  check_subsets_of_size<true, 3>(reduce, x, opt);
  GRAD_CHECK([&](const auto& v) { return reduce_all(v) * 1.5; }, x, opt);
}

}  // namespace reduce_subsets

/// A generic lambda applying reduction `fn` with the axes and keepdims chosen by the caller.
#define REDUCTION_OVER_AXES(fn)                                            \
  [](const auto& x_, const auto& axes_, auto keep_) {                      \
    if constexpr (decltype(keep_)::value) {                                \
      return fn(x_, axes_, tessera::keepdims);                             \
    } else {                                                               \
      return fn(x_, axes_);                                                \
    }                                                                      \
  }
