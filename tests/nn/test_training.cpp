// The whole chain trains: a small MLP learns XOR with grad + an optimizer, and gradients of a
// module come back as a module of the same type.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;

TEST_CASE("grad of a loss over a model returns the gradients as a model of the same type") {
  Generator gen(1);
  auto model = nn::sequential(nn::Linear<float>(3, 4, {.bias = true, .generator = &gen}), nn::ReLU{},
                              nn::Linear<float>(4, 2, {.bias = true, .generator = &gen}));
  const auto x = normal<float>(gen, {8, 3});
  const auto target = normal<float>(gen, {8, 2});
  auto [value, grads] = value_and_grad([&](const auto& m) { return nn::mse(m(x), target); }, model);
  auto& g = std::get<0>(grads);
  static_assert(std::is_same_v<std::decay_t<decltype(g)>, decltype(model)>);
  // The model's parameters are untouched and distinct from the gradients.
  CHECK(g.layer<0>().weight.data() != model.layer<0>().weight.data());

  // The same loss written over the four parameter tensors: the value and every gradient agree.
  const auto& l0 = model.layer<0>();
  const auto& l2 = model.layer<2>();
  auto by_tensors = [&](const auto& w0, const auto& b0, const auto& w2, const auto& b2) {
    return nn::mse(matmul(relu(matmul(x, transpose(w0)) + b0), transpose(w2)) + b2, target);
  };
  auto [expected_value, expected] = value_and_grad(by_tensors, l0.weight, l0.bias, l2.weight, l2.bias);
  CHECK(value() == doctest::Approx(expected_value()).epsilon(1e-6));
  CHECK(value() > 0);
  CHECK_TENSOR_NEAR(g.layer<0>().weight, std::get<0>(expected), 1e-6);
  CHECK_TENSOR_NEAR(g.layer<0>().bias, std::get<1>(expected), 1e-6);
  CHECK_TENSOR_NEAR(g.layer<2>().weight, std::get<2>(expected), 1e-6);
  CHECK_TENSOR_NEAR(g.layer<2>().bias, std::get<3>(expected), 1e-6);
}

namespace {
/// The parameterless layer of docs/nn.md.
struct Square : nn::Stateless<Square> {
  static constexpr const char* type_name = "Square";
  template <class X>
  auto operator()(const X& x) const {
    return x * x;
  }
};
}  // namespace

TEST_CASE("a parameterless layer of one's own (nn::Stateless) trains inside Sequential") {
  Generator gen(3);
  auto model = nn::sequential(nn::Linear<double>(2, 3, {.bias = true, .generator = &gen}), Square{},
                              nn::Linear<double>(3, 1, {.bias = true, .generator = &gen}));
  CHECK(nn::parameter_count(model) == 2 * 3 + 3 + 3 + 1);
  const auto x = normal<double>(gen, {5, 2});
  GRAD_CHECK([&](const auto& m) { return sum(m(x)); }, model, grad_test::tight());
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
