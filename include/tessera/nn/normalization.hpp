// Normalization layers: BatchNorm1d/2d (batch statistics in training, running statistics in
// evaluation, as torch.nn) and LayerNorm (statistics over the trailing axes of each sample).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <tuple>

#include "tessera/core/error.hpp"
#include "tessera/core/factories.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/normalization.hpp"
#include "tessera/expr/reduce.hpp"
#include "tessera/expr/unary_ops.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::nn {

/// Options of the batch-norm layers (torch.nn.BatchNorm2d's, same defaults).
struct BatchNormLayerOptions {
  double eps = 1e-5;
  double momentum = 0.1;
  bool affine = true;               ///< learn a per-channel scale (weight) and shift (bias)
  bool track_running_stats = true;  ///< false: batch statistics in evaluation too
};

/// Batch normalization over every axis but the channel axis (1) of inputs of rank MinRank..MaxRank.
template <std::size_t MinRank, std::size_t MaxRank, class T = float, class B = cpu>
struct BatchNorm : Module<BatchNorm<MinRank, MaxRank, T, B>> {
  static constexpr const char* type_name = MinRank == 4 ? "BatchNorm2d" : "BatchNorm1d";
  Tensor<T, 1, B> weight;        ///< gamma, ones
  Tensor<T, 1, B> bias;          ///< beta, zeros
  Tensor<T, 1, B> running_mean;  ///< zeros
  Tensor<T, 1, B> running_var;   ///< ones
  Tensor<std::int64_t, 0, B> num_batches_tracked;

  explicit BatchNorm(index_t num_features, BatchNormLayerOptions o = {})
      : weight(ones<T, B>(Shape<1>{num_features})),
        bias(Shape<1>{num_features}),
        running_mean(Shape<1>{num_features}),
        running_var(ones<T, B>(Shape<1>{num_features})),
        num_batches_tracked(std::int64_t(0)),
        options_(o) {
    if (num_features <= 0) throw value_error(std::string(type_name) + ": num_features must be positive");
    if (!(o.eps > 0) || o.momentum < 0 || o.momentum > 1) {
      throw value_error(std::string(type_name) + ": eps must be positive and momentum in [0, 1]");
    }
  }

  auto members() {
    const bool tracked = options_.track_running_stats;
    return std::make_tuple(param("weight", weight, options_.affine), param("bias", bias, options_.affine),
                           buffer("running_mean", running_mean, tracked), buffer("running_var", running_var, tracked),
                           buffer("num_batches_tracked", num_batches_tracked, tracked));
  }
  index_t num_features() const { return weight.shape()[0]; }
  const BatchNormLayerOptions& options() const { return options_; }

  template <class X>
  auto operator()(const X& x) const {
    static_assert(rank_v<X> >= MinRank && rank_v<X> <= MaxRank,
                  "tessera::nn::BatchNorm: BatchNorm1d takes [N, C] or [N, C, L], BatchNorm2d [N, C, H, W]");
    if (x.shape()[1] != num_features()) {
      throw shape_error(std::string(type_name) + ": input of shape " + shape_to_string(x.shape()) + " has " +
                        std::to_string(x.shape()[1]) + " channels, expected " + std::to_string(num_features()));
    }
    const bool batch_statistics = this->is_training() || !options_.track_running_stats;
    RunningStats<T, B> running;
    if (options_.track_running_stats) running = {running_mean, running_var, num_batches_tracked};
    return batch_norm(x, weight, bias, running, {batch_statistics, options_.momentum, options_.eps});
  }

 private:
  BatchNormLayerOptions options_;
};

/// torch.nn.BatchNorm1d: inputs [N, C] or [N, C, L].
template <class T = float, class B = cpu>
using BatchNorm1d = BatchNorm<2, 3, T, B>;
/// torch.nn.BatchNorm2d: inputs [N, C, H, W].
template <class T = float, class B = cpu>
using BatchNorm2d = BatchNorm<4, 4, T, B>;

/// Options of LayerNorm.
struct LayerNormOptions {
  double eps = 1e-5;
  bool elementwise_affine = true;  ///< learn weight and bias of the normalized shape
};

/// Normalizes each sample over its last D axes (whose extents are the normalized shape), then
/// scales and shifts elementwise, as torch.nn.LayerNorm.
template <class T = float, std::size_t D = 1, class B = cpu>
struct LayerNorm : Module<LayerNorm<T, D, B>> {
  static constexpr const char* type_name = "LayerNorm";
  Tensor<T, D, B> weight;  ///< ones
  Tensor<T, D, B> bias;    ///< zeros

  explicit LayerNorm(const Shape<D>& normalized_shape, LayerNormOptions o = {})
      : weight(ones<T, B>(normalized_shape)), bias(normalized_shape), options_(o) {
    for (index_t e : normalized_shape) {
      if (e <= 0) throw value_error("LayerNorm: normalized shape " + shape_to_string(normalized_shape) + " must be positive");
    }
    if (!(o.eps > 0)) throw value_error("LayerNorm: eps must be positive");
  }
  /// The common case: normalize over the last axis of extent `features`.
  template <std::size_t DD = D, std::enable_if_t<DD == 1, int> = 0>
  explicit LayerNorm(index_t features, LayerNormOptions o = {}) : LayerNorm(Shape<1>{features}, o) {}

  auto members() {
    return std::make_tuple(param("weight", weight, options_.elementwise_affine), param("bias", bias, options_.elementwise_affine));
  }
  const LayerNormOptions& options() const { return options_; }

  template <class X>
  auto operator()(const X& x) const {
    constexpr std::size_t R = rank_v<X>;
    static_assert(R >= D, "tessera::nn::LayerNorm: the input has fewer axes than the normalized shape");
    static_assert(std::is_same_v<value_type_t<X>, T>, "tessera::nn::LayerNorm: input element type differs from the layer's");
    const auto s = x.shape();
    std::array<bool, R> mask{};
    for (std::size_t i = 0; i < D; ++i) {
      if (s[R - D + i] != weight.shape()[i]) {
        throw shape_error("LayerNorm: input of shape " + shape_to_string(s) + " does not end in the normalized shape " +
                          shape_to_string(weight.shape()));
      }
      mask[R - D + i] = true;
    }
    const auto mu = tessera::detail::make_reduce<ops::SumReducer, R>(x, mask, "mean", true);
    const auto variance = Variance<X, R>(x, mask, 0);
    return (x - mu) * rsqrt(variance + T(options_.eps)) * weight + bias;
  }

 private:
  LayerNormOptions options_;
};

}  // namespace tessera::nn
