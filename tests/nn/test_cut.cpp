// nn::cut, the type boundary for deep models: same values and gradients as without it, transparent
// names and modes, the expression's nesting depth (one level per cut, whatever the block holds),
// and a 24-layer model whose type stays small (each distinct block type is instantiated once,
// however many times it repeats).
#include <doctest/doctest.h>

#include <algorithm>
#include <tuple>
#include <type_traits>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"
#include "nn/module_names.hpp"

using namespace tessera;
using nn_test::parameter_names;

namespace {
auto make_block(Generator& gen) {
  return nn::sequential(nn::Linear<double>(5, 5, {.bias = true, .generator = &gen}), nn::Tanh{},
                        nn::Linear<double>(5, 5, {.bias = true, .generator = &gen}));
}

/// The nesting depth of an expression type: 0 for a tensor, else 1 + the deepest of its inputs().
template <class E, class = void>
struct depth : std::integral_constant<int, 0> {};
template <class Tuple>
struct deepest;
template <class... I>
struct deepest<std::tuple<I...>> : std::integral_constant<int, std::max({0, depth<std::decay_t<I>>::value...})> {};
template <class E>
struct depth<E, std::void_t<decltype(std::declval<const E&>().inputs())>>
    : std::integral_constant<int, 1 + deepest<decltype(std::declval<const E&>().inputs())>::value> {};
}  // namespace

TEST_CASE("a cut adds one level to the expression's type, however deep its block") {
  Generator gen(3);
  const auto x = normal<double>(gen, {2, 5});
  auto deep = nn::sequential(make_block(gen), nn::Tanh{}, make_block(gen), nn::Tanh{}, make_block(gen));
  auto plain = nn::sequential(deep, deep);
  auto cut = nn::sequential(nn::cut(deep), nn::cut(deep));
  auto cut_shallow = nn::sequential(nn::cut(make_block(gen)), nn::cut(make_block(gen)));
  constexpr int plain_depth = depth<decltype(plain(x))>::value;
  static_assert(plain_depth >= 20, "ten linear layers and their activations nest");
  static_assert(depth<decltype(cut(x))>::value == 2, "two cuts: two levels, the blocks' layers hidden");
  static_assert(depth<decltype(cut_shallow(x))>::value == depth<decltype(cut(x))>::value);
  CHECK_TENSOR_NEAR(eval(cut(x)), eval(plain(x)), 1e-12);
}

TEST_CASE("a cut model computes the same loss and gradients as the uncut one") {
  Generator g1(3), g2(3), gx(4);
  auto plain = nn::sequential(make_block(g1), nn::ReLU{}, make_block(g1));
  auto cut = nn::sequential(nn::cut(make_block(g2)), nn::ReLU{}, nn::cut(make_block(g2)));
  const auto x = normal<double>(gx, {6, 5});
  auto loss = [&](const auto& m) { return sum(square(m(x))); };
  auto [v1, gp] = value_and_grad(loss, plain);
  auto [v2, gc] = value_and_grad(loss, cut);
  CHECK(v1() == doctest::Approx(v2()).epsilon(1e-14));
  CHECK(parameter_names(cut) == parameter_names(plain));  // "0.0.weight": the cut adds no name
  CHECK_TENSOR_NEAR(std::get<0>(gp).layer<0>().layer<0>().weight, std::get<0>(gc).layer<0>().inner.layer<0>().weight, 1e-14);
  CHECK_TENSOR_NEAR(std::get<0>(gp).layer<2>().layer<2>().bias, std::get<0>(gc).layer<2>().inner.layer<2>().bias, 1e-14);

  GRAD_CHECK(loss, cut, grad_test::tight());
  GRAD_CHECK([&](const auto& in) { return sum(sin(cut(in))); }, x, grad_test::tight());
  // vjp and the tape go through the same sweep machinery.
  auto [y, pullback] = vjp([&](const auto& in) { return cut(in); }, x);
  auto [dx] = pullback(ones<double>(y.shape()));
  auto [dx_plain] = grad([&](const auto& in) { return sum(plain(in)); }, x);
  CHECK_TENSOR_NEAR(dx, dx_plain, 1e-13);
}

TEST_CASE("a cut evaluates its block once per sweep and passes train/eval mode to it") {
  Generator gen(5);
  auto model = nn::sequential(nn::cut(nn::sequential(nn::Linear<double>(4, 3, {.bias = true, .generator = &gen}),
                                                     nn::BatchNorm1d<double>(3))),
                              nn::Linear<double>(3, 1, {.bias = true, .generator = &gen}));
  const auto x = normal<double>(gen, {8, 4});
  auto [v, g] = value_and_grad([&](const auto& m) { return sum(m(x)); }, model);
  (void)v;
  (void)g;
  CHECK(model.layer<0>().inner.layer<1>().num_batches_tracked() == 1);
  model.eval();
  CHECK(!model.layer<0>().inner.is_training());
  CHECK(!model.layer<0>().inner.layer<1>().is_training());
  const Tensor<double, 2> y = model(x);  // outside a sweep: plain evaluation, statistics untouched
  CHECK(y.shape() == Shape<2>{8, 1});
  CHECK(model.layer<0>().inner.layer<1>().num_batches_tracked() == 1);
}

namespace {
/// Conv -> BatchNorm -> ReLU, the unit deep CNNs repeat.
auto conv_unit(index_t in, index_t out) {
  return nn::sequential(nn::Conv2d<float>(in, out, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d<float>(out), nn::ReLU{});
}
auto residual_stage(index_t c) { return nn::cut(nn::residual(nn::sequential(conv_unit(c, c), conv_unit(c, c)))); }
}  // namespace

TEST_CASE("a 24-layer residual CNN with cuts builds, summarizes and trains") {
  manual_seed(0);
  // Stem (3 layers) + 3 residual stages of 6 layers + pooling, flatten, head = 24 layers.
  auto model = nn::sequential(nn::cut(conv_unit(1, 8)), residual_stage(8), residual_stage(8), residual_stage(8),
                              nn::GlobalAvgPool2d{}, nn::Linear<float>(8, 4));
  Generator gen(1);
  const auto x = normal<float>(gen, {16, 1, 8, 8});
  const Tensor<std::int64_t, 1> labels = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
  // 16 samples with fixed labels: a working chain memorizes them.
  optim::Adam<float> opt({.lr = 0.01});
  auto loss = [&](const auto& m) { return nn::cross_entropy(m(x), labels); };
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    auto [l, g] = value_and_grad(loss, model);
    if (step == 0) first = l();
    last = l();
    opt.step(model, std::get<0>(g));
  }
  MESSAGE("24-layer CNN loss " << first << " -> " << last);
  CHECK(last < 0.5f * first);
  CHECK(nn::parameter_count(model) == 72 + 16 + 3 * 2 * (576 + 16) + 36);
  const std::string s = nn::summary(model, x);
  CHECK(s.find("1 (Cut)") != std::string::npos);
  CHECK(s.find("[16, 8, 8, 8]") != std::string::npos);
}
