// Recurrent layers, continued: stacked and bidirectional layers against central differences,
// torch.nn's names, shapes and initialization, dropout between layers, errors for bad input, and
// an LSTM that trains. (A program of its own so that the two halves compile in parallel.)
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"
#include "nn/module_names.hpp"

using namespace tessera;

namespace {
template <class A, class B>
void expect_eq(const A& actual, const B& expected) {
  CHECK_TENSOR_EQ(actual, expected);
}
}  // namespace

TEST_CASE("stacked and bidirectional layers: gradients match central differences in both directions") {
  Generator gen(5);
  const auto x = normal<double>(gen, {4, 2, 3});
  const auto w = normal<double>(gen, {4, 2, 10});
  nn::LSTM<double, cpu, 2, true> lstm(3, 5, {.generator = &gen});
  GRAD_CHECK([&](const auto& m, const auto& xs) { return sum(m(xs).first * w); }, lstm, x, grad_test::tight());
  nn::GRU<double, cpu, 2, true> gru(3, 5, {.generator = &gen});
  GRAD_CHECK([&](const auto& m, const auto& xs) { return sum(m(xs).first * w) + sum(square(m(xs).second)); }, gru, x,
             grad_test::tight());
  // Only the final state in the loss (the backward pass starts from the carries).
  GRAD_CHECK([&](const auto& m, const auto& xs) { return sum(sin(std::get<1>(m(xs).second))); }, lstm, x,
             grad_test::tight());
}

TEST_CASE("names, shapes and initialization follow torch.nn") {
  nn::LSTM<float, cpu, 2, true> lstm(10, 8);
  const std::vector<std::string> expected{
      "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
      "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse",
      "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
      "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse"};
  CHECK(nn_test::parameter_names(lstm) == expected);
  CHECK(lstm.weight_ih[0].shape() == Shape<2>{32, 10});
  CHECK(lstm.weight_ih[2].shape() == Shape<2>{32, 16});  // layer 1 reads both directions
  CHECK(lstm.weight_hh[3].shape() == Shape<2>{32, 8});
  // PyTorch: 4 * 8 * (10 + 8 + 2) + 4 * 8 * (16 + 8 + 2), times two directions.
  CHECK(nn::parameter_count(lstm) == 2 * (32 * 20 + 32 * 26));
  const float bound = 1.0f / std::sqrt(8.0f);
  CHECK(Tensor<float, 0>(max(abs(lstm.weight_hh[1])))() <= bound);
  CHECK(Tensor<float, 0>(max(abs(lstm.weight_hh[1])))() > 0.8f * bound);
  nn::GRU<float> gru(10, 8, {.bias = false});
  CHECK(nn_test::parameter_names(gru) == std::vector<std::string>{"weight_ih_l0", "weight_hh_l0"});
  CHECK(gru.weight_ih[0].shape() == Shape<2>{24, 10});
}

TEST_CASE("dropout between layers acts in training only") {
  Generator gen(9);
  const auto x = normal<float>(gen, {6, 2, 3});
  nn::LSTM<float, cpu, 2> dropped(3, 4, {.dropout = 0.5, .generator = &gen});
  nn::LSTM<float, cpu, 2> plain = dropped;
  Tensor<float, 3> a = dropped(x).first;
  plain.eval();
  Tensor<float, 3> b = plain(x).first;
  CHECK(Tensor<float, 0>(max(abs(a - b)))() > 1e-3f);  // training: masks changed the second layer's input
  dropped.eval();
  Tensor<float, 3> c = dropped(x).first;
  expect_eq(c, b);
}

TEST_CASE("bad input: wrong extents, states and lengths name the layer and the shapes") {
  nn::LSTM<float> lstm(4, 6);
  Tensor<float, 3> x(Shape<3>{5, 3, 4});
  CHECK_THROWS_WITH_AS(lstm(Tensor<float, 3>(Shape<3>{5, 3, 7})), "LSTM: input of shape [5, 3, 7] has 7 features, expected 4",
                       shape_error);
  const Tensor<float, 3> bad_state(Shape<3>{1, 2, 6});
  CHECK_THROWS_WITH_AS(lstm(x, std::make_tuple(bad_state, bad_state)),
                       "LSTM: initial h of shape [1, 2, 6], expected [1, 3, 6]", shape_error);
  CHECK_THROWS_WITH_AS(lstm.forward(x, {5, 5}), "LSTM: 2 lengths for a batch of 3", shape_error);
  CHECK_THROWS_WITH_AS(lstm.forward(x, {5, 6, 1}),
                       "LSTM: length 6 of example 1 is outside [0, 5] (the input has 5 steps)", value_error);
  nn::GRU<float> gru(4, 6, {.batch_first = true});
  CHECK_THROWS_WITH_AS(gru.forward(x, {5, 5, 5}), "GRU: 3 lengths for a batch of 5", shape_error);
  nn::GRUCell<float> cell(4, 6);
  CHECK_THROWS_WITH_AS(cell(Tensor<float, 2>(Shape<2>{3, 4}), Tensor<float, 2>(Shape<2>{3, 5})),
                       "GRUCell: h of shape [3, 5], expected [3, 6]", shape_error);
  CHECK_THROWS_WITH_AS(nn::LSTM<float>(0, 3), "LSTM: sizes must be positive, got input 0, hidden 3", value_error);
  CHECK_THROWS_AS(nn::LSTM<float>(3, 3, {.dropout = 1.5}), value_error);
}

TEST_CASE("an LSTM regressor trains: Adam lowers the loss of a sequence-sum task") {
  Generator gen(13);
  const auto x = normal<float>(gen, {8, 16, 2});
  const Tensor<float, 2> target = sum(x, 0) * 0.5f;  // [16, 2]
  struct Model : nn::Module<Model> {
    nn::LSTM<float> rnn;
    nn::Linear<float> out;
    explicit Model(Generator& g) : rnn(2, 8, {.generator = &g}), out(8, 2, {.generator = &g}) {}
    auto members() { return std::make_tuple(nn::child("rnn", rnn), nn::child("out", out)); }
  };
  Model model(gen);
  optim::Adam<> opt({.lr = 0.02});
  auto loss = [&](const Model& m) {
    auto [out, state] = m.rnn(x);
    auto last = reshape(slice(out, 0, 7, 8), Shape<2>{16, 8});
    return nn::mse(m.out(last), target);
  };
  float first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    auto [value, grads] = value_and_grad(loss, model);
    if (step == 0) first = value();
    last = value();
    opt.step(model, std::get<0>(grads));
  }
  CHECK(last < 0.3f * first);
}
