// Activation layers and Flatten: stateless modules that return lazy expressions, so they fuse into
// the elementwise work around them.
#pragma once

#include <string>

#include "tessera/core/error.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/elementwise.hpp"
#include "tessera/expr/shape_ops.hpp"
#include "tessera/expr/softmax.hpp"
#include "tessera/expr/unary_ops.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::nn {

/// max(x, 0).
struct ReLU : Stateless<ReLU> {
  static constexpr const char* type_name = "ReLU";
  template <class X>
  auto operator()(const X& x) const {
    return relu(x);
  }
};

/// x for x > 0, negative_slope * x otherwise.
struct LeakyReLU : Stateless<LeakyReLU> {
  static constexpr const char* type_name = "LeakyReLU";
  double negative_slope = 0.01;
  LeakyReLU() = default;
  explicit LeakyReLU(double slope) : negative_slope(slope) {}
  template <class X>
  auto operator()(const X& x) const {
    using T = value_type_t<X>;
    return where(x > T(0), x, T(negative_slope) * x);
  }
};

/// x * Phi(x) (the exact, erf-based GELU, PyTorch's default).
struct GELU : Stateless<GELU> {
  static constexpr const char* type_name = "GELU";
  template <class X>
  auto operator()(const X& x) const {
    return gelu(x);
  }
};

/// x * sigmoid(x) (also called swish).
struct SiLU : Stateless<SiLU> {
  static constexpr const char* type_name = "SiLU";
  template <class X>
  auto operator()(const X& x) const {
    return x * sigmoid(x);
  }
};

struct Sigmoid : Stateless<Sigmoid> {
  static constexpr const char* type_name = "Sigmoid";
  template <class X>
  auto operator()(const X& x) const {
    return sigmoid(x);
  }
};

struct Tanh : Stateless<Tanh> {
  static constexpr const char* type_name = "Tanh";
  template <class X>
  auto operator()(const X& x) const {
    return tanh(x);
  }
};

/// softmax along `axis` (default: the last).
struct Softmax : Stateless<Softmax> {
  static constexpr const char* type_name = "Softmax";
  index_t axis = -1;
  Softmax() = default;
  explicit Softmax(index_t a) : axis(a) {}
  template <class X>
  auto operator()(const X& x) const {
    return softmax(x, axis);
  }
};

/// [N, d1, d2, ...] -> [N, d1 * d2 * ...] (Keras Flatten; torch.nn.Flatten with its defaults).
struct Flatten : Stateless<Flatten> {
  static constexpr const char* type_name = "Flatten";
  template <class X>
  auto operator()(const X& x) const {
    static_assert(rank_v<X> >= 1, "tessera::nn::Flatten: the input needs a batch axis");
    const auto s = x.shape();
    index_t rest = 1;
    for (std::size_t i = 1; i < rank_v<X>; ++i) rest *= s[i];
    return reshape(x, Shape<2>{s[0], rest});
  }
};

}  // namespace tessera::nn
