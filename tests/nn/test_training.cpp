// The whole chain trains: a small MLP learns XOR with grad + an optimizer, and gradients of a
// module come back as a module of the same type.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

using namespace tessera;

TEST_CASE("grad of a loss over a model returns the gradients as a model of the same type") {
  Generator gen(1);
  auto model = nn::sequential(nn::Linear<float>(3, 4, {.bias = true, .generator = &gen}), nn::ReLU{},
                              nn::Linear<float>(4, 2, {.bias = true, .generator = &gen}));
  const auto x = normal<float>(gen, {8, 3});
  auto [value, grads] = value_and_grad([&](const auto& m) { return nn::mse(m(x), zeros<float>({8, 2})); }, model);
  auto& g = std::get<0>(grads);
  static_assert(std::is_same_v<std::decay_t<decltype(g)>, decltype(model)>);
  CHECK(g.layer<0>().weight.shape() == model.layer<0>().weight.shape());
  // The model's parameters are untouched and distinct from the gradients.
  CHECK(g.layer<0>().weight.data() != model.layer<0>().weight.data());
  CHECK(value() > 0);
}

TEST_CASE("a 2-8-1 tanh MLP learns XOR with SGD momentum") {
  Generator gen(2024);
  auto model = nn::sequential(nn::Linear<float>(2, 8, {.bias = true, .generator = &gen}), nn::Tanh{},
                              nn::Linear<float>(8, 1, {.bias = true, .generator = &gen}));
  const Tensor<float, 2> x = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
  const Tensor<float, 2> y = {{0}, {1}, {1}, {0}};
  optim::SGD<float> opt({.lr = 0.5, .momentum = 0.9});
  auto loss = [&](const auto& m) { return nn::binary_cross_entropy_with_logits(m(x), y); };
  float first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    auto [l, g] = value_and_grad(loss, model);
    if (step == 0) first = l();
    last = l();
    opt.step(model, std::get<0>(g));
  }
  MESSAGE("XOR loss " << first << " -> " << last);
  CHECK(last < 0.05f);
  const Tensor<float, 2> p = sigmoid(model(x));
  CHECK(p(0, 0) < 0.1f);
  CHECK(p(1, 0) > 0.9f);
  CHECK(p(2, 0) > 0.9f);
  CHECK(p(3, 0) < 0.1f);
}
