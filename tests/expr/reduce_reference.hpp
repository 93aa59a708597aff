// Shared by the reduction tests (test_reduce*.cpp): a naive reduction reference over any subset
// of axes, a checker for a reduction's shape and values, and a driver that visits every non-empty
// subset of a rank-R tensor's axes with the axes as the `const index_t (&)[N]` the API takes.
#pragma once

#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace reduce_test {

using tessera::index_t;
using tessera::Shape;
using tessera::Tensor;

/// Row-major elements of any tensor, read through its strides, as doubles.
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

template <std::size_t R>
std::vector<index_t> shape_vector(const Shape<R>& s) {
  return std::vector<index_t>(s.begin(), s.end());
}

enum class Kind { sum, mean, prod, max, min, all, any, var0, var1, logsumexp };

inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::sum:
      return "sum";
    case Kind::mean:
      return "mean";
    case Kind::prod:
      return "prod";
    case Kind::max:
      return "max";
    case Kind::min:
      return "min";
    case Kind::all:
      return "all";
    case Kind::any:
      return "any";
    case Kind::var0:
      return "var(ddof=0)";
    case Kind::var1:
      return "var(ddof=1)";
    case Kind::logsumexp:
      return "logsumexp";
  }
  return "?";
}

/// The naive reference: for every combination of kept indices (row-major), gathers the reduced
/// elements and folds them in long double.
inline std::vector<double> reduce_reference(const std::vector<double>& x, const std::vector<index_t>& shape,
                                            const std::vector<bool>& reduced, Kind kind) {
  const std::size_t rank = shape.size();
  std::vector<index_t> strides(rank, 1);
  for (std::size_t i = rank - 1; i-- > 0;) strides[i] = strides[i + 1] * shape[i + 1];
  std::vector<std::size_t> kept, red;
  for (std::size_t i = 0; i < rank; ++i) (reduced[i] ? red : kept).push_back(i);
  index_t n_out = 1, n_red = 1;
  for (auto i : kept) n_out *= shape[i];
  for (auto i : red) n_red *= shape[i];
  std::vector<double> out;
  std::vector<long double> group;
  for (index_t o = 0; o < n_out; ++o) {
    index_t base = 0, rest = o;
    for (std::size_t k = kept.size(); k-- > 0;) {
      base += (rest % shape[kept[k]]) * strides[kept[k]];
      rest /= shape[kept[k]];
    }
    group.clear();
    for (index_t r = 0; r < n_red; ++r) {
      index_t off = base, rr = r;
      for (std::size_t k = red.size(); k-- > 0;) {
        off += (rr % shape[red[k]]) * strides[red[k]];
        rr /= shape[red[k]];
      }
      group.push_back(x[static_cast<std::size_t>(off)]);
    }
    long double acc = 0;
    const long double n = static_cast<long double>(group.size());
    switch (kind) {
      case Kind::sum:
      case Kind::mean:
        for (auto v : group) acc += v;
        if (kind == Kind::mean) acc /= n;
        break;
      case Kind::prod:
        acc = 1;
        for (auto v : group) acc *= v;
        break;
      case Kind::max:
        acc = *std::max_element(group.begin(), group.end());
        break;
      case Kind::min:
        acc = *std::min_element(group.begin(), group.end());
        break;
      case Kind::all:
        acc = 1;
        for (auto v : group) acc = (acc != 0 && v != 0) ? 1 : 0;
        break;
      case Kind::any:
        for (auto v : group) acc = (acc != 0 || v != 0) ? 1 : 0;
        break;
      case Kind::var0:
      case Kind::var1: {
        long double mu = 0;
        for (auto v : group) mu += v;
        mu /= n;
        for (auto v : group) acc += (v - mu) * (v - mu);
        acc /= (kind == Kind::var0 ? n : n - 1);
        break;
      }
      case Kind::logsumexp: {
        const long double m = *std::max_element(group.begin(), group.end());
        for (auto v : group) acc += std::exp(v - m);
        acc = std::log(acc) + m;
        break;
      }
    }
    out.push_back(static_cast<double>(acc));
  }
  return out;
}

/// The result's shape (keepdims or not) and values against the reference.
template <class T, std::size_t RO>
void check_result(const Tensor<T, RO>& got, const std::vector<double>& x, const std::vector<index_t>& in_shape,
                  const std::vector<bool>& reduced, bool keep, Kind kind, double rtol, double atol) {
  std::vector<index_t> want_shape;
  for (std::size_t i = 0; i < in_shape.size(); ++i) {
    if (!reduced[i]) {
      want_shape.push_back(in_shape[i]);
    } else if (keep) {
      want_shape.push_back(1);
    }
  }
  std::string axes;
  for (std::size_t i = 0; i < reduced.size(); ++i) {
    if (reduced[i]) axes += std::to_string(i) + " ";
  }
  INFO(kind_name(kind) << " over axes { " << axes << "} of " << tessera::shape_to_string(in_shape)
                       << (keep ? " keepdims " : " ") << std::string(tessera::dtype_name<T>()));
  REQUIRE(shape_vector(got.shape()) == want_shape);
  const auto want = reduce_reference(x, in_shape, reduced, kind);
  const auto have = values_of(got);
  REQUIRE(have.size() == want.size());
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < have.size(); ++i) {
    if (!(std::abs(have[i] - want[i]) <= atol + rtol * std::abs(want[i])) && bad++ == 0) first = i;
  }
  INFO(bad << " of " << have.size() << " differ; first at " << first << ": got " << have[first] << ", expected "
           << want[first]);
  CHECK(bad == 0);
}

/// Calls f(axes) with `axes` as a `const index_t (&)[N]` array, N = axes.size() (1..R).
template <std::size_t R, class F>
void with_axes(const std::vector<index_t>& v, F&& f) {
  switch (v.size()) {
    case 1: {
      const index_t a[1] = {v[0]};
      f(a);
      break;
    }
    case 2: {
      const index_t a[2] = {v[0], v[1]};
      f(a);
      break;
    }
    case 3: {
      const index_t a[3] = {v[0], v[1], v[2]};
      f(a);
      break;
    }
    case 4: {
      if constexpr (R >= 4) {
        const index_t a[4] = {v[0], v[1], v[2], v[3]};
        f(a);
      }
      break;
    }
    default:
      FAIL("unexpected axis count");
  }
}

/// Random values with magnitudes in [0.5, 1.5] and random signs: products stay finite, maxima
/// and minima are distinct, sums do not cancel to exactly zero.
template <class T, std::size_t R>
Tensor<T, R> signed_tensor(const Shape<R>& shape, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> mag(0.5, 1.5);
  std::bernoulli_distribution neg(0.5);
  Tensor<T, R> t(shape);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(neg(rng) ? -mag(rng) : mag(rng));
  return t;
}

/// Calls f(reduced, axes) for every non-empty subset of the axes of a rank-R tensor; `reduced`
/// flags the axes, `axes` lists them as a `const index_t (&)[N]`. Odd subsets list their axes
/// from the last backwards and as negative numbers (-1 = last), exercising normalization.
template <std::size_t R, class F>
void for_every_subset(F&& f) {
  for (unsigned mask = 1; mask < (1u << R); ++mask) {
    std::vector<bool> reduced(R);
    std::vector<index_t> axes;
    for (std::size_t i = 0; i < R; ++i) {
      reduced[i] = (mask >> i) & 1u;
      if (reduced[i]) axes.push_back(mask % 2 ? static_cast<index_t>(i) - static_cast<index_t>(R) : index_t(i));
    }
    if (mask % 2) std::reverse(axes.begin(), axes.end());
    with_axes<R>(axes, [&](const auto& ax) { f(reduced, ax); });
  }
}

/// Tolerances for sums of a few hundred O(1) values.
template <class T>
constexpr double reduce_rtol = std::is_same_v<T, float> ? 2e-5 : 1e-12;

}  // namespace reduce_test
