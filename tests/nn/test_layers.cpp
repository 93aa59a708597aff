// Linear, the activations, Flatten and Sequential: forward against PyTorch, gradient checks in
// double, parameter names and counts, train/eval mode, errors.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"
#include "nn/module_names.hpp"
#include "nn/fixture_support.hpp"

using namespace tessera;
using nn_test::parameter_names;
namespace fx = torch_fixtures;

namespace {
/// A user-defined module: an encoder and a head (any module).
template <class Head>
struct Net : nn::Module<Net<Head>> {
  nn::Linear<double> encoder;
  Head head;
  Net(nn::Linear<double> e, Head h) : encoder(std::move(e)), head(std::move(h)) {}
  auto members() { return std::make_tuple(nn::child("encoder", encoder), nn::child("head", head)); }
  template <class X>
  auto operator()(const X& in) const {
    return head(tanh(encoder(in)));
  }
};
}  // namespace

TEST_CASE("Linear matches torch.nn.Linear and names its parameters weight and bias") {
  nn::Linear<double> lin(3, 2);
  lin.weight = fixture::d2(fx::linear_weight);
  lin.bias = fixture::d1(fx::linear_bias);
  const Tensor<double, 2> y = lin(fixture::d2(fx::linear_x));
  CHECK_TENSOR_NEAR(y, fixture::d2(fx::linear_y), 1e-14);
  CHECK(parameter_names(lin) == std::vector<std::string>{"weight", "bias"});
  CHECK(nn::parameter_count(lin) == 8);
}

TEST_CASE("Linear initializes like PyTorch: U(-1/sqrt(in), 1/sqrt(in)), seeded") {
  manual_seed(7);
  nn::Linear<> a(100, 50);
  manual_seed(7);
  nn::Linear<> b(100, 50);
  CHECK_TENSOR_EQ(a.weight, b.weight);
  const double bound = 0.1;
  CHECK(Tensor<float, 0>(max(abs(a.weight)))() <= bound);
  CHECK(Tensor<float, 0>(max(abs(a.weight)))() > 0.95 * bound);
  Generator gen(3);
  nn::Linear<> c(100, 50, {.bias = true, .generator = &gen});
  CHECK(Tensor<bool, 0>(any(c.weight != a.weight))());
}

TEST_CASE("Linear without bias: no bias parameter, the output has none") {
  nn::Linear<double> lin(3, 2, {.bias = false});
  CHECK(parameter_names(lin) == std::vector<std::string>{"weight"});
  const auto x = fixture::d2(fx::linear_x);
  const Tensor<double, 2> y = lin(x);
  CHECK_TENSOR_NEAR(y, eval(matmul(x, transpose(lin.weight))), 1e-15);
}

TEST_CASE("Linear rejects inputs with the wrong number of features") {
  nn::Linear<> lin(3, 2);
  CHECK_THROWS_WITH_AS(lin(Tensor<float, 2>(Shape<2>{4, 5})), "Linear: input of shape [4, 5] has 5 features, expected 3",
                       shape_error);
  CHECK_THROWS_AS(nn::Linear<>(0, 2), value_error);
}

TEST_CASE("a shape error inside Sequential names the layer's index and type, also when nested") {
  auto model = nn::sequential(nn::Linear<>(4, 8), nn::ReLU{}, nn::Linear<>(6, 2));
  CHECK_THROWS_WITH_AS(model(Tensor<float, 2>(Shape<2>{3, 4})),
                       "Sequential layer 2 (Linear): Linear: input of shape [3, 8] has 8 features, expected 6", shape_error);
  auto outer = nn::sequential(nn::Flatten{}, nn::sequential(nn::Linear<>(5, 3)));
  CHECK_THROWS_WITH_AS(outer(Tensor<float, 3>(Shape<3>{2, 2, 2})),
                       "Sequential layer 1 (Sequential): Sequential layer 0 (Linear): Linear: input of shape [2, 4] has 4 "
                       "features, expected 5",
                       shape_error);
}

TEST_CASE("Linear: gradients of weight, bias and input check against finite differences") {
  Generator gen(11);
  nn::Linear<double> lin(3, 2, {.bias = true, .generator = &gen});
  const auto x = normal<double>(gen, {4, 3});
  GRAD_CHECK([&](const auto& m) { return sum(square(m(x))); }, lin, grad_test::tight());
  GRAD_CHECK([&](const auto& in) { return sum(tanh(lin(in))); }, x, grad_test::tight());
}

TEST_CASE("activations match PyTorch") {
  const auto x = fixture::d2(fx::act_x);
  CHECK_TENSOR_NEAR(eval(nn::ReLU{}(x)), fixture::d2(fx::act_relu), 1e-15);
  CHECK_TENSOR_NEAR(eval(nn::LeakyReLU{0.2}(x)), fixture::d2(fx::act_leaky_relu_0_2), 1e-15);
  CHECK_TENSOR_NEAR(eval(nn::GELU{}(x)), fixture::d2(fx::act_gelu), 1e-14);
  CHECK_TENSOR_NEAR(eval(nn::SiLU{}(x)), fixture::d2(fx::act_silu), 1e-14);
  CHECK_TENSOR_NEAR(eval(nn::Sigmoid{}(x)), fixture::d2(fx::act_sigmoid), 1e-15);
  CHECK_TENSOR_NEAR(eval(nn::Tanh{}(x)), fixture::d2(fx::act_tanh), 1e-15);
  CHECK_TENSOR_NEAR(eval(nn::Softmax{}(x)), fixture::d2(fx::act_softmax), 1e-15);
  // Float layers agree too.
  const auto xf = fixture::f2(fx::act_x);
  CHECK_TENSOR_NEAR(eval(nn::GELU{}(xf)), fixture::f2(fx::act_gelu), 1e-6);
}

TEST_CASE("activations: gradients check against finite differences") {
  // Points away from ReLU's kink at 0 (finite differences straddling it would be wrong).
  const auto x = fixture::d2(fx::act_x);
  GRAD_CHECK([](const auto& a) { return sum(nn::ReLU{}(a) * a); }, x, grad_test::tight());
  GRAD_CHECK([](const auto& a) { return sum(nn::LeakyReLU{0.2}(a) * a); }, x, grad_test::tight());
  GRAD_CHECK([](const auto& a) { return sum(nn::GELU{}(a) * a); }, x, grad_test::tight());
  GRAD_CHECK([](const auto& a) { return sum(nn::SiLU{}(a) * a); }, x, grad_test::tight());
  GRAD_CHECK([](const auto& a) { return sum(nn::Sigmoid{}(a) * a); }, x, grad_test::tight());
  GRAD_CHECK([](const auto& a) { return sum(nn::Tanh{}(a) * a); }, x, grad_test::tight());
  GRAD_CHECK([](const auto& a) { return sum(nn::Softmax{}(a) * a); }, x, grad_test::tight());
}

TEST_CASE("Flatten matches torch.nn.Flatten and passes gradients back in the input's shape") {
  const auto x = fixture::d4(fx::flatten_x);
  const Tensor<double, 2> y = nn::Flatten{}(x);
  CHECK_TENSOR_EQ(y, fixture::d2(fx::flatten_y));
  const auto w = arange<double>(0, 12).reshape({1, 12});
  GRAD_CHECK([&](const auto& a) { return sum(nn::Flatten{}(a) * w); }, x, grad_test::tight());
}

TEST_CASE("Sequential: hierarchical names, counts, forward, train/eval mode, nested modules") {
  Generator gen(5);
  auto model = nn::sequential(nn::Linear<double>(4, 8, {.bias = true, .generator = &gen}), nn::ReLU{},
                              nn::Linear<double>(8, 3, {.bias = true, .generator = &gen}));
  CHECK(parameter_names(model) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  CHECK(nn::parameter_count(model) == 4 * 8 + 8 + 8 * 3 + 3);
  const auto x = normal<double>(gen, {5, 4});
  const Tensor<double, 2> y = model(x);
  const Tensor<double, 2> expected =
      matmul(relu(matmul(x, transpose(model.layer<0>().weight)) + model.layer<0>().bias), transpose(model.layer<2>().weight)) +
      model.layer<2>().bias;
  CHECK_TENSOR_NEAR(y, expected, 1e-14);

  CHECK(model.is_training());
  model.eval();
  CHECK(!model.is_training());
  CHECK(!model.layer<1>().is_training());
  model.train();
  CHECK(model.layer<2>().is_training());

  // A user-defined module holding a Sequential.
  Net<decltype(model)> net(nn::Linear<double>(2, 4, {.bias = true, .generator = &gen}), model);
  CHECK(parameter_names(net) ==
        std::vector<std::string>{"encoder.weight", "encoder.bias", "head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"});
  const auto z = normal<double>(gen, {3, 2});
  GRAD_CHECK([&](const auto& m) { return sum(square(m(z))); }, net, grad_test::tight());
}
