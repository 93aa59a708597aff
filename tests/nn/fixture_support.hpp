// Turns the PyTorch fixtures (torch_fixtures.hpp, made by make_torch_fixtures.py) into tensors.
#pragma once

#include <stdexcept>

#include <tessera/tessera.hpp>

#include "nn/torch_fixtures.hpp"

namespace fixture {

/// The fixture as a Tensor<T, R> (throws if its rank is not R).
template <class T, std::size_t R>
tessera::Tensor<T, R> tensor(const torch_fixtures::Array& a) {
  if (a.shape.size() != R) throw std::logic_error("fixture rank differs from the requested rank");
  tessera::Shape<R> s{};
  for (std::size_t i = 0; i < R; ++i) s[i] = a.shape[i];
  auto t = tessera::Tensor<T, R>(s);
  auto f = t.flatten();
  for (tessera::index_t i = 0; i < f.size(); ++i) f(i) = static_cast<T>(a.values[static_cast<std::size_t>(i)]);
  return t;
}

// Short names (also keep commas out of assertion macros' arguments).
inline tessera::Tensor<double, 1> d1(const torch_fixtures::Array& a) { return tensor<double, 1>(a); }
inline tessera::Tensor<double, 2> d2(const torch_fixtures::Array& a) { return tensor<double, 2>(a); }
inline tessera::Tensor<double, 3> d3(const torch_fixtures::Array& a) { return tensor<double, 3>(a); }
inline tessera::Tensor<double, 4> d4(const torch_fixtures::Array& a) { return tensor<double, 4>(a); }
inline tessera::Tensor<float, 2> f2(const torch_fixtures::Array& a) { return tensor<float, 2>(a); }

/// Labels (stored as doubles) as int64.
inline tessera::Tensor<std::int64_t, 1> labels(const torch_fixtures::Array& a) { return tensor<std::int64_t, 1>(a); }

/// A rank-0 fixture's value.
inline double scalar(const torch_fixtures::Array& a) { return a.values.at(0); }

}  // namespace fixture
