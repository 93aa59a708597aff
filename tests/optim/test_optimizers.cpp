// Optimizers: several steps against PyTorch's optimizers and against hand-written scalar
// references of the update rules; one fused pass per parameter; state enumerable by name.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"
#include "nn/fixture_support.hpp"

using namespace tessera;
namespace fx = torch_fixtures;

namespace {

/// A module with one parameter, so tests can hand optimizers arbitrary gradients.
struct One : nn::Module<One> {
  Tensor<double, 1> w;
  explicit One(Tensor<double, 1> t) : w(std::move(t)) {}
  auto members() { return std::make_tuple(nn::param("w", w)); }
};

/// Runs the optimizer over the fixture's gradients and returns the parameter after every step.
template <class Opt>
Tensor<double, 2> run(Opt opt) {
  One model(fixture::d1(fx::opt_p0));
  const auto grads = fixture::d2(fx::opt_grads);
  Tensor<double, 2> steps(grads.shape());
  for (index_t t = 0; t < grads.shape()[0]; ++t) {
    One g(grads.select(0, t).clone());
    opt.step(model, g);
    steps.select(0, t).assign(model.w);
  }
  return steps;
}

/// The same steps computed by a scalar reference `update(p, g, t)` per element (t from 1).
template <class Update>
Tensor<double, 2> reference(Update update) {
  auto p = fixture::d1(fx::opt_p0);
  const auto grads = fixture::d2(fx::opt_grads);
  Tensor<double, 2> steps(grads.shape());
  for (index_t t = 0; t < grads.shape()[0]; ++t) {
    for (index_t i = 0; i < p.size(); ++i) p(i) = update(p(i), grads(t, i), int(t + 1), i);
    steps.select(0, t).assign(p);
  }
  return steps;
}

}  // namespace

TEST_CASE("SGD, with momentum and dampening, and Nesterov: PyTorch and the hand-written rule agree") {
  CHECK_TENSOR_NEAR(run(optim::SGD<double>({.lr = 0.1})), fixture::d2(fx::opt_sgd), 1e-15);
  CHECK_TENSOR_NEAR(run(optim::SGD<double>({.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01})),
                    fixture::d2(fx::opt_sgd_momentum), 1e-14);
  CHECK_TENSOR_NEAR(run(optim::SGD<double>({.lr = 0.1, .momentum = 0.9, .nesterov = true, .weight_decay = 0.01})),
                    fixture::d2(fx::opt_sgd_nesterov), 1e-14);
  std::vector<double> buf(5);
  const auto hand = reference([&](double p, double g, int t, index_t i) {
    g += 0.01 * p;
    buf[size_t(i)] = t == 1 ? g : 0.9 * buf[size_t(i)] + 0.9 * g;
    return p - 0.1 * buf[size_t(i)];
  });
  CHECK_TENSOR_NEAR(run(optim::SGD<double>({.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01})), hand, 1e-15);
}

TEST_CASE("Adam and AdamW: PyTorch and the hand-written rule agree") {
  CHECK_TENSOR_NEAR(run(optim::Adam<double>({.lr = 0.01, .weight_decay = 0.1})), fixture::d2(fx::opt_adam),
                    1e-14);
  CHECK_TENSOR_NEAR(run(optim::AdamW<double>({.lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .weight_decay = 0.1})),
                    fixture::d2(fx::opt_adamw), 1e-14);
  std::vector<double> m(5), v(5);
  const auto hand = reference([&](double p, double g, int t, index_t i) {
    const auto k = size_t(i);
    p *= 1 - 0.01 * 0.1;
    m[k] = 0.8 * m[k] + 0.2 * g;
    v[k] = 0.99 * v[k] + 0.01 * g * g;
    const double mhat = m[k] / (1 - std::pow(0.8, t)), vhat = v[k] / (1 - std::pow(0.99, t));
    return p - 0.01 * mhat / (std::sqrt(vhat) + 1e-8);
  });
  CHECK_TENSOR_NEAR(run(optim::AdamW<double>({.lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .weight_decay = 0.1})), hand, 1e-14);
}

TEST_CASE("RMSprop (plain; centered with momentum) and Adagrad agree with PyTorch") {
  CHECK_TENSOR_NEAR(run(optim::RMSprop<double>({.lr = 0.01, .weight_decay = 0.1})), fixture::d2(fx::opt_rmsprop),
                    1e-14);
  CHECK_TENSOR_NEAR(run(optim::RMSprop<double>({.lr = 0.01, .momentum = 0.5, .centered = true})),
                    fixture::d2(fx::opt_rmsprop_centered_momentum), 1e-14);
  CHECK_TENSOR_NEAR(run(optim::Adagrad<double>({.lr = 0.1, .lr_decay = 0.01, .weight_decay = 0.1, .initial_accumulator_value = 0.2})),
                    fixture::d2(fx::opt_adagrad), 1e-14);
  std::vector<double> s(5, 0.2);
  const auto hand = reference([&](double p, double g, int t, index_t i) {
    g += 0.1 * p;
    s[size_t(i)] += g * g;
    return p - 0.1 / (1 + (t - 1) * 0.01) * g / (std::sqrt(s[size_t(i)]) + 1e-10);
  });
  CHECK_TENSOR_NEAR(run(optim::Adagrad<double>({.lr = 0.1, .lr_decay = 0.01, .weight_decay = 0.1, .initial_accumulator_value = 0.2})),
                    hand, 1e-15);
}

TEST_CASE("a long parameter: the fused pass runs in stretches, each output reading the ones before it") {
  // 10,007 elements in one row: many of the pass's stretches, a tail that is not a whole packet,
  // and at 2 threads a split inside the row. Adam's parameter update reads the m and v it has
  // just written, element by element, as the scalar rule does.
  const index_t n = 10007;
  Generator gen(5);
  const auto p0 = normal<double>(gen, {n});
  std::vector<Tensor<double, 1>> grads;
  for (int t = 0; t < 3; ++t) grads.push_back(normal<double>(gen, {n}));
  auto steps = [&](int threads) {
    const int before = cpu::num_threads();
    cpu::set_num_threads(threads);
    One model(p0.clone());
    optim::Adam<double> adam({.lr = 0.01, .beta1 = 0.8, .beta2 = 0.99});
    for (const auto& g : grads) {
      One gm(g.clone());
      adam.step(model, gm);
    }
    cpu::set_num_threads(before);
    return model.w;
  };
  std::vector<double> p(p0.data(), p0.data() + n), m(static_cast<std::size_t>(n)), v(static_cast<std::size_t>(n));
  for (int t = 1; t <= 3; ++t) {
    for (index_t i = 0; i < n; ++i) {
      const auto k = std::size_t(i);
      const double g = grads[std::size_t(t - 1)](i);
      m[k] = 0.8 * m[k] + 0.2 * g;
      v[k] = 0.99 * v[k] + 0.01 * g * g;
      p[k] -= 0.01 * (m[k] / (1 - std::pow(0.8, t))) / (std::sqrt(v[k] / (1 - std::pow(0.99, t))) + 1e-8);
    }
  }
  Tensor<double, 1> hand(Shape<1>{n});
  std::copy(p.begin(), p.end(), hand.data());
  const auto one = steps(1), two = steps(2);
  CHECK_TENSOR_NEAR(one, hand, 1e-14);
  CHECK(std::equal(one.data(), one.data() + n, two.data()));  // bit for bit across thread counts
}

TEST_CASE("each step is one fused pass per parameter, reading and writing parameter and state") {
  Generator gen(2);
  auto model = nn::sequential(nn::Linear<float>(64, 32, {.bias = true, .generator = &gen}), nn::Tanh{},
                              nn::Linear<float>(32, 4, {.bias = true, .generator = &gen}));
  const auto x = normal<float>(gen, {16, 64});
  auto [g] = grad([&](const auto& m) { return sum(square(m(x))); }, model);
  optim::Adam<float> adam;
  optim::SGD<float> sgd({.lr = 0.1, .momentum = 0.9});
  optim::RMSprop<float> rms({.lr = 0.01, .momentum = 0.9, .centered = true});
  adam.step(model, g);  // creates the state
  sgd.step(model, g);
  rms.step(model, g);
  instrument::reset();
  adam.step(model, g);
  CHECK(instrument::counters().elementwise_passes == 4);  // 4 parameters, 1 pass each
  CHECK(instrument::counters().materializations == 0);
  instrument::reset();
  sgd.step(model, g);
  CHECK(instrument::counters().elementwise_passes == 4);
  instrument::reset();
  rms.step(model, g);
  CHECK(instrument::counters().elementwise_passes == 4);
}

TEST_CASE("optimizer state is enumerable by name and restores a run exactly") {
  Generator gen(3);
  auto model = nn::sequential(nn::Linear<double>(3, 2, {.bias = true, .generator = &gen}));
  const auto x = normal<double>(gen, {4, 3});
  auto loss = [&](const auto& m) { return sum(square(m(x))); };
  optim::Adam<double> opt({.lr = 0.1});
  CHECK(opt.named_state().empty());
  auto [g] = grad(loss, model);
  opt.step(model, g);
  const auto state = opt.named_state();
  std::vector<std::string> names;
  for (const auto& s : state) names.push_back(s.name);
  CHECK(names == std::vector<std::string>{"0.weight.exp_avg", "0.weight.exp_avg_sq", "0.bias.exp_avg", "0.bias.exp_avg_sq"});
  CHECK(state[0].shape == std::vector<index_t>{2, 3});

  // Snapshot the parameters, the state and the step count, then take two more steps.
  std::vector<Tensor<double, 1>> saved_params, saved_state;
  nn::for_each_parameter(model, [&](const std::string&, const auto& p) { saved_params.push_back(p.clone().flatten()); });
  for (const auto& s : state) saved_state.push_back(s.value.clone());
  const auto saved_steps = opt.step_count();
  for (int i = 0; i < 2; ++i) {
    auto [gi] = grad(loss, model);
    opt.step(model, gi);
  }

  // A fresh model and optimizer loaded from the snapshot continue identically.
  auto resumed = nn::sequential(nn::Linear<double>(3, 2));
  std::size_t k = 0;
  nn::for_each_parameter(resumed, [&](const std::string&, auto& p) { p.flatten().assign(saved_params[k++]); });
  optim::Adam<double> opt2({.lr = 0.1});
  opt2.prepare(resumed);
  auto st2 = opt2.named_state();
  REQUIRE(st2.size() == saved_state.size());
  for (std::size_t i = 0; i < st2.size(); ++i) st2[i].value.assign(saved_state[i]);
  opt2.set_step_count(saved_steps);
  for (int i = 0; i < 2; ++i) {
    auto [gi] = grad(loss, resumed);
    opt2.step(resumed, gi);
  }
  CHECK_TENSOR_EQ(resumed.layer<0>().weight, model.layer<0>().weight);
  CHECK_TENSOR_EQ(resumed.layer<0>().bias, model.layer<0>().bias);
}

TEST_CASE("optimizers reject bad options and mismatched gradients") {
  CHECK_THROWS_AS(optim::SGD<float>({.lr = -1}), value_error);
  CHECK_THROWS_AS(optim::SGD<float>({.lr = 0.1, .momentum = 0, .nesterov = true}), value_error);
  CHECK_THROWS_AS(optim::Adam<float>({.lr = 0.1, .beta1 = 1.0}), value_error);
  CHECK_THROWS_AS(optim::RMSprop<float>({.lr = 0.1, .alpha = -0.5}), value_error);
  One model(Tensor<double, 1>{1.0, 2.0});
  One wrong(Tensor<double, 1>{1.0, 2.0, 3.0});
  optim::SGD<double> sgd({.lr = 0.1});
  CHECK_THROWS_AS(sgd.step(model, wrong), shape_error);
}
