// The Fashion-MNIST models of the examples in one place, so that what a program trains and what
// tessera-serve serves are the same types: the main job (fashion_mnist.cpp) trains `cnn`,
// mlp_fashion.cpp trains `mlp`, and tessera_serve.cpp registers both.
//
// Served, both take pixels in [0, 1] (what the IDX files hold divided by 255) and answer class
// probabilities: the input normalization the main job's data loader applied and the softmax the
// loss applied are part of the served forward.
#pragma once

#include <tessera/tessera.hpp>
#include <tessera/serve/export.hpp>
#include <tessera/serve/registry.hpp>

#include <string>

namespace fashion {

using tessera::index_t;

/// The training pixels' mean and standard deviation (the main job normalizes with them).
inline constexpr float pixel_mean = 0.2860f;
inline constexpr float pixel_std = 0.3530f;

/// The main job's CNN: two conv + batch-norm + pooling stages, dropout, two dense layers.
template <class B>
auto cnn(index_t channels, index_t hidden) {
  namespace nn = tessera::nn;
  nn::Conv2dLayerOptions no_bias;
  no_bias.padding = 1;
  no_bias.bias = false;
  return nn::sequential(nn::Conv2d<float, B>(1, channels, 3, no_bias), nn::BatchNorm2d<float, B>(channels), nn::ReLU{},
                        nn::MaxPool2d(2), nn::Conv2d<float, B>(channels, 2 * channels, 3, no_bias),
                        nn::BatchNorm2d<float, B>(2 * channels), nn::ReLU{}, nn::MaxPool2d(2), nn::Flatten{},
                        nn::Linear<float, B>(2 * channels * 7 * 7, hidden), nn::ReLU{}, nn::Dropout<float, B>(0.3),
                        nn::Linear<float, B>(hidden, 10));
}

/// mlp_fashion's model: 784 -> hidden -> hidden -> 10 with ReLU and dropout.
template <class B>
auto mlp(index_t hidden, double dropout) {
  namespace nn = tessera::nn;
  return nn::sequential(nn::Linear<float, B>(784, hidden), nn::ReLU{}, nn::Dropout<float, B>(dropout),
                        nn::Linear<float, B>(hidden, hidden), nn::ReLU{}, nn::Dropout<float, B>(dropout),
                        nn::Linear<float, B>(hidden, 10));
}

/// What the served CNN takes and answers.
inline tessera::serve::Signature cnn_signature() {
  using tessera::serve::DataType;
  tessera::serve::Signature s;
  s.inputs = {{"images", DataType::float32, {-1, 1, 28, 28}}};
  s.outputs = {{"probabilities", DataType::float32, {-1, 10}}};
  return s;
}
inline tessera::serve::Signature mlp_signature() {
  using tessera::serve::DataType;
  tessera::serve::Signature s;
  s.inputs = {{"images", DataType::float32, {-1, 784}}};
  s.outputs = {{"probabilities", DataType::float32, {-1, 10}}};
  return s;
}

/// Registers "fashion_cnn" and "fashion_mlp" (hyperparameters: channels and hidden; hidden and
/// dropout) for serving on the CPU. (A template, so the training programs that include this
/// header do not compile the serving code they never call.)
template <class Registry = tessera::serve::ModelRegistry>
void register_models(Registry& registry) {
  using namespace tessera;
  registry.template add<Tensor<float, 4>>(
      "fashion_cnn",
      [](const nlohmann::json& hp) { return cnn<cpu>(hp.at("channels").get<index_t>(), hp.at("hidden").get<index_t>()); },
      [](const auto& model, const Tensor<float, 4>& images) {
        return softmax(model((images - pixel_mean) * (1.0f / pixel_std)), -1);
      });
  registry.template add<Tensor<float, 2>>(
      "fashion_mlp",
      [](const nlohmann::json& hp) { return mlp<cpu>(hp.at("hidden").get<index_t>(), hp.at("dropout").get<double>()); },
      [](const auto& model, const Tensor<float, 2>& images) { return softmax(model(images), -1); });
}

}  // namespace fashion
