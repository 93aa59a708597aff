// Conv2d, MaxPool2d, AvgPool2d and GlobalAvgPool2d layers (NCHW), over the conv2d and pooling
// nodes of expr/conv.hpp (whose backward the CPU backend computes by im2col + GEMM).
#pragma once

#include <cmath>
#include <string>
#include <tuple>

#include "tessera/core/random.hpp"
#include "tessera/expr/conv.hpp"
#include "tessera/expr/reduce.hpp"
#include "tessera/nn/init.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::nn {

/// Options of the Conv2d layer: conv2d's geometry, bias and the generator for the initial weights.
struct Conv2dLayerOptions {
  Size2 stride = 1;
  Size2 padding = 0;
  Size2 dilation = 1;
  index_t groups = 1;
  bool bias = true;
  Generator* generator = nullptr;  ///< nullptr: default_generator()
};

/// 2-D convolution layer: weight [out, in / groups, kh, kw], bias [out].
template <class T = float, class B = cpu>
struct Conv2d : Module<Conv2d<T, B>> {
  static constexpr const char* type_name = "Conv2d";
  Tensor<T, 4, B> weight;
  Tensor<T, 1, B> bias;  ///< zeros and not a parameter when options.bias is false

  /// PyTorch's initialization: weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  Conv2d(index_t in_channels, index_t out_channels, Size2 kernel, Conv2dLayerOptions o = {})
      : weight(Shape<4>{out_channels, o.groups > 0 ? in_channels / o.groups : 0, kernel.h, kernel.w}),
        bias(Shape<1>{out_channels}),
        options_{o.stride, o.padding, o.dilation, o.groups},
        has_bias_(o.bias) {
    if (in_channels <= 0 || out_channels <= 0 || kernel.h <= 0 || kernel.w <= 0 || o.groups <= 0 ||
        in_channels % o.groups != 0 || out_channels % o.groups != 0) {
      throw value_error("Conv2d: channels (" + std::to_string(in_channels) + " -> " + std::to_string(out_channels) +
                        ") and kernel must be positive, and groups (" + std::to_string(o.groups) + ") must divide both");
    }
    Generator& gen = o.generator ? *o.generator : default_generator();
    const double bound = 1.0 / std::sqrt(double(weight.size() / out_channels));
    init::uniform_(weight, gen, -bound, bound);
    if (has_bias_) init::uniform_(bias, gen, -bound, bound);
  }
  auto members() { return std::make_tuple(param("weight", weight), param("bias", bias, has_bias_)); }
  const Conv2dOptions& options() const { return options_; }
  bool has_bias() const { return has_bias_; }

  template <class X>
  auto operator()(const X& x) const {
    static_assert(rank_v<X> == 4, "tessera::nn::Conv2d: the input must be [batch, channels, height, width]");
    // The bias is added inside the convolution; without one it is skipped, not added as zeros.
    return tessera::Conv2d<X, Tensor<T, 4, B>, Tensor<T, 1, B>>(x, weight, tessera::detail::conv2d_geometry(options_), bias,
                                                               has_bias_);
  }

 private:
  Conv2dOptions options_;
  bool has_bias_;
};

/// Max pooling over kernel windows (stride = kernel unless given).
struct MaxPool2d : Stateless<MaxPool2d> {
  static constexpr const char* type_name = "MaxPool2d";
  Size2 kernel;
  Pool2dOptions options;
  explicit MaxPool2d(Size2 k, Pool2dOptions o = {}) : kernel(k), options(o) {}
  template <class X>
  auto operator()(const X& x) const {
    return max_pool2d(x, kernel, options);
  }
};

/// Average pooling over kernel windows (padding counts as zeros, PyTorch's default).
struct AvgPool2d : Stateless<AvgPool2d> {
  static constexpr const char* type_name = "AvgPool2d";
  Size2 kernel;
  Pool2dOptions options;
  explicit AvgPool2d(Size2 k, Pool2dOptions o = {}) : kernel(k), options(o) {}
  template <class X>
  auto operator()(const X& x) const {
    return avg_pool2d(x, kernel, options);
  }
};

/// [N, C, H, W] -> [N, C]: the mean over each channel's plane (Keras GlobalAveragePooling2D).
struct GlobalAvgPool2d : Stateless<GlobalAvgPool2d> {
  static constexpr const char* type_name = "GlobalAvgPool2d";
  template <class X>
  auto operator()(const X& x) const {
    static_assert(rank_v<X> == 4, "tessera::nn::GlobalAvgPool2d: the input must be [batch, channels, height, width]");
    return mean(x, {2, 3});
  }
};

}  // namespace tessera::nn
