// Tensor factories: zeros, ones, full, empty, eye, arange, linspace and seeded uniform/normal.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "tessera/core/error.hpp"
#include "tessera/core/random.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera {

namespace detail {
template <std::size_t N>
Shape<N> shape_of(const index_t (&a)[N]) {
  Shape<N> s{};
  for (std::size_t i = 0; i < N; ++i) s[i] = a[i];
  return s;
}
}  // namespace detail

/// Tensor of the given shape with unspecified elements (fastest; overwrite before reading).
template <class T, class B = cpu, std::size_t R>
Tensor<T, R, B> empty(const Shape<R>& shape) {
  return Tensor<T, R, B>::uninitialized(shape);
}
template <class T, class B = cpu, std::size_t R>
Tensor<T, R, B> empty(const index_t (&shape)[R]) {
  return Tensor<T, R, B>::uninitialized(detail::shape_of(shape));
}
template <class T, class B = cpu, class... I, std::enable_if_t<detail::all_integral_v<I...>, int> = 0>
Tensor<T, sizeof...(I), B> empty(I... extents) {
  return Tensor<T, sizeof...(I), B>::uninitialized(Shape<sizeof...(I)>{static_cast<index_t>(extents)...});
}

/// All zeros: zeros<float>(3, 4), zeros<float>({3, 4}) or zeros<float>(shape).
template <class T, class B = cpu, std::size_t R>
Tensor<T, R, B> zeros(const Shape<R>& shape) {
  return Tensor<T, R, B>(shape);
}
template <class T, class B = cpu, std::size_t R>
Tensor<T, R, B> zeros(const index_t (&shape)[R]) {
  return Tensor<T, R, B>(detail::shape_of(shape));
}
template <class T, class B = cpu, class... I, std::enable_if_t<detail::all_integral_v<I...>, int> = 0>
Tensor<T, sizeof...(I), B> zeros(I... extents) {
  return Tensor<T, sizeof...(I), B>(Shape<sizeof...(I)>{static_cast<index_t>(extents)...});
}

/// Every element equal to `value`: full<float>({3, 4}, 0.5f).
template <class T, class B = cpu, std::size_t R>
Tensor<T, R, B> full(const Shape<R>& shape, T value) {
  auto t = Tensor<T, R, B>::uninitialized(shape);
  if constexpr (B::host_accessible) {
    std::fill_n(t.data(), t.size(), value);
  } else {
    t.fill(value);  // a kernel
  }
  return t;
}
template <class T, class B = cpu, std::size_t R>
Tensor<T, R, B> full(const index_t (&shape)[R], T value) {
  return full<T, B>(detail::shape_of(shape), value);
}

/// All ones.
template <class T, class B = cpu, std::size_t R>
Tensor<T, R, B> ones(const Shape<R>& shape) {
  return full<T, B>(shape, T(1));
}
template <class T, class B = cpu, std::size_t R>
Tensor<T, R, B> ones(const index_t (&shape)[R]) {
  return full<T, B>(detail::shape_of(shape), T(1));
}
template <class T, class B = cpu, class... I, std::enable_if_t<detail::all_integral_v<I...>, int> = 0>
Tensor<T, sizeof...(I), B> ones(I... extents) {
  return full<T, B>(Shape<sizeof...(I)>{static_cast<index_t>(extents)...}, T(1));
}

/// Same shape as `like`, filled with zeros / ones / value.
template <class T, std::size_t R, class B>
Tensor<T, R, B> zeros_like(const Tensor<T, R, B>& like) {
  return Tensor<T, R, B>(like.shape());
}
template <class T, std::size_t R, class B>
Tensor<T, R, B> ones_like(const Tensor<T, R, B>& like) {
  return full<T, B>(like.shape(), T(1));
}
template <class T, std::size_t R, class B>
Tensor<T, R, B> empty_like(const Tensor<T, R, B>& like) {
  return Tensor<T, R, B>::uninitialized(like.shape());
}
template <class T, std::size_t R, class B>
Tensor<T, R, B> full_like(const Tensor<T, R, B>& like, T value) {
  return full<T, B>(like.shape(), value);
}

/// n x n identity matrix.
template <class T, class B = cpu>
Tensor<T, 2, B> eye(index_t n) {
  Tensor<T, 2, B> t(n, n);
  for (index_t i = 0; i < n; ++i) t(i, i) = T(1);
  return t;
}

/// start, start + step, ... below stop (NumPy's arange).
template <class T, class B = cpu>
Tensor<T, 1, B> arange(T start, T stop, T step = T(1)) {
  if (step == T(0)) throw value_error("arange: step must not be zero");
  const double span = (static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step);
  const index_t n = span > 0 ? static_cast<index_t>(std::ceil(span)) : 0;
  auto t = Tensor<T, 1, B>::uninitialized(Shape<1>{n});
  for (index_t i = 0; i < n; ++i) t(i) = static_cast<T>(start + static_cast<T>(i) * step);
  return t;
}
/// 0, 1, ..., stop - 1.
template <class T, class B = cpu>
Tensor<T, 1, B> arange(T stop) {
  return arange<T, B>(T(0), stop, T(1));
}

/// `num` evenly spaced values from start to stop (inclusive unless endpoint is false).
template <class T, class B = cpu>
Tensor<T, 1, B> linspace(T start, T stop, index_t num, bool endpoint = true) {
  static_assert(std::is_floating_point_v<T>, "tessera::linspace needs a floating-point type");
  if (num < 0) throw value_error("linspace: num must be non-negative, got " + std::to_string(num));
  auto t = Tensor<T, 1, B>::uninitialized(Shape<1>{num});
  const index_t div = endpoint ? num - 1 : num;
  // In double and rounded once, as NumPy does, so float results do not depend on FMA contraction.
  const double step = div > 0 ? (static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(div) : 0.0;
  for (index_t i = 0; i < num; ++i) t(i) = static_cast<T>(static_cast<double>(start) + static_cast<double>(i) * step);
  if (endpoint && num > 1) t(num - 1) = stop;
  return t;
}

/// Uniform values in [low, high) from `gen`; reproducible for a seed, independent of thread count.
template <class T, class B = cpu, std::size_t R>
Tensor<T, R, B> uniform(Generator& gen, const Shape<R>& shape, T low = T(0), T high = T(1)) {
  static_assert(std::is_floating_point_v<T>, "tessera::uniform needs a floating-point type");
  if (!(low <= high)) throw value_error("uniform: low must not exceed high");
  auto t = Tensor<T, R, B>::uninitialized(shape);
  random_fill(B{}, t.data(), t.size(), gen, detail::UniformDraw<T>{low, high});
  return t;
}
template <class T, class B = cpu, std::size_t R>
Tensor<T, R, B> uniform(Generator& gen, const index_t (&shape)[R], T low = T(0), T high = T(1)) {
  return uniform<T, B>(gen, detail::shape_of(shape), low, high);
}

/// Normal values with the given mean and standard deviation (Box-Muller on Philox words).
template <class T, class B = cpu, std::size_t R>
Tensor<T, R, B> normal(Generator& gen, const Shape<R>& shape, T mean = T(0), T stddev = T(1)) {
  static_assert(std::is_floating_point_v<T>, "tessera::normal needs a floating-point type");
  if (!(stddev >= T(0))) throw value_error("normal: stddev must be non-negative");
  auto t = Tensor<T, R, B>::uninitialized(shape);
  random_fill(B{}, t.data(), t.size(), gen, detail::NormalDraw<T>{mean, stddev});
  return t;
}
template <class T, class B = cpu, std::size_t R>
Tensor<T, R, B> normal(Generator& gen, const index_t (&shape)[R], T mean = T(0), T stddev = T(1)) {
  return normal<T, B>(gen, detail::shape_of(shape), mean, stddev);
}

}  // namespace tessera
