// Linear (fully connected) layer: y = x W^T + b, with W stored [out, in] as in PyTorch so that
// checkpoints and fixtures line up.
#pragma once

#include <cmath>
#include <string>
#include <tuple>

#include "tessera/core/error.hpp"
#include "tessera/core/random.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/matmul.hpp"
#include "tessera/expr/shape_ops.hpp"
#include "tessera/nn/init.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::nn {

/// Options of Linear.
struct LinearOptions {
  bool bias = true;
  Generator* generator = nullptr;  ///< for the initial weights; nullptr: default_generator()
};

/// Applies y = x W^T + b over the last axis of x ([..., in] -> [..., out]).
template <class T = float, class B = cpu>
struct Linear : Module<Linear<T, B>> {
  static constexpr const char* type_name = "Linear";
  Tensor<T, 2, B> weight;  ///< [out, in]
  Tensor<T, 1, B> bias;    ///< [out]; zeros and not a parameter when options.bias is false

  /// PyTorch's initialization: W and b from U(-1/sqrt(in), 1/sqrt(in)).
  Linear(index_t in_features, index_t out_features, LinearOptions options = {})
      : weight(Shape<2>{out_features, in_features}), bias(Shape<1>{out_features}), has_bias_(options.bias) {
    if (in_features <= 0 || out_features <= 0) {
      throw value_error("Linear: features must be positive, got in " + std::to_string(in_features) + ", out " +
                        std::to_string(out_features));
    }
    Generator& gen = options.generator ? *options.generator : default_generator();
    const double bound = 1.0 / std::sqrt(double(in_features));
    init::uniform_(weight, gen, -bound, bound);
    if (has_bias_) init::uniform_(bias, gen, -bound, bound);
  }

  auto members() { return std::make_tuple(param("weight", weight), param("bias", bias, has_bias_)); }
  index_t in_features() const { return weight.shape()[1]; }
  index_t out_features() const { return weight.shape()[0]; }
  bool has_bias() const { return has_bias_; }

  template <class X>
  auto operator()(const X& x) const {
    static_assert(rank_v<X> >= 1, "tessera::nn::Linear: the input needs a feature axis");
    const auto s = x.shape();
    if (s[rank_v<X> - 1] != in_features()) {
      throw shape_error("Linear: input of shape " + shape_to_string(s) + " has " + std::to_string(s[rank_v<X> - 1]) +
                        " features, expected " + std::to_string(in_features()));
    }
    return matmul(x, transpose(weight)) + bias;
  }

 private:
  bool has_bias_;
};

}  // namespace tessera::nn
