// Recurrent layers: LSTMCell, GRUCell, LSTM and GRU against PyTorch (forward values and every
// gradient, from fixtures/sequence.safetensors made by make_sequence_fixtures.py) in double, over
// padded sequences with per-example lengths; the cells against central differences.
// (test_recurrent_float.cpp: the same fixtures in float; test_recurrent_layers.cpp: the rest.)
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <tessera/tessera.hpp>

#include "nn/recurrent_fixtures.hpp"

using namespace tessera;
using namespace recurrent_test;

TEST_CASE("LSTM: 2 layers, bidirectional, initial state: outputs and every gradient equal PyTorch's") {
  check_lstm_fixture<double>(1e-12);
}

TEST_CASE("GRU: 2 layers, bidirectional, batch_first, initial state: outputs and every gradient equal PyTorch's") {
  check_gru_fixture<double>(1e-12);
}

TEST_CASE("LSTM and GRU over packed sequences (per-example lengths) equal PyTorch's") {
  {
    nn::LSTM<double, cpu, 1, true> lstm(I, H);
    load_parameters(lstm, "lstm_packed");
    const auto lengths = fx_lengths("lstm_packed.lengths");
    const auto x = fx<double, 3>("lstm_packed.x");
    const auto w_out = fx<double, 3>("lstm_packed.w_out"), w_h = fx<double, 3>("lstm_packed.w_h"),
               w_c = fx<double, 3>("lstm_packed.w_c");
    auto loss = [&](const auto& m, const auto& xs) {
      auto [out, state] = m.forward(xs, lengths);
      return sum(out * w_out) + sum(std::get<0>(state) * w_h) + sum(std::get<1>(state) * w_c);
    };
    auto [out, state] = lstm.forward(x, lengths);
    expect_near(Tensor<double, 3>(out), fx<double, 3>("lstm_packed.output"), 1e-12);
    expect_near(Tensor<double, 3>(std::get<0>(state)), fx<double, 3>("lstm_packed.h_n"), 1e-12);
    expect_near(Tensor<double, 3>(std::get<1>(state)), fx<double, 3>("lstm_packed.c_n"), 1e-12);
    auto [value, grads] = value_and_grad(loss, lstm, x);
    CHECK(value() == doctest::Approx(fixtures().tensor<double, 0>("lstm_packed.loss")()).epsilon(1e-12));
    check_parameter_gradients(std::get<0>(grads), "lstm_packed", 1e-12);
    expect_near(std::get<1>(grads), fx<double, 3>("lstm_packed.grad.x"), 1e-12);
  }
  {
    nn::GRU<double> gru(I, H);
    load_parameters(gru, "gru_packed");
    const auto lengths = fx_lengths("gru_packed.lengths");
    const auto x = fx<double, 3>("gru_packed.x");
    const auto w_out = fx<double, 3>("gru_packed.w_out"), w_h = fx<double, 3>("gru_packed.w_h");
    auto loss = [&](const auto& m, const auto& xs) {
      auto [out, h_n] = m.forward(xs, lengths);
      return sum(out * w_out) + sum(h_n * w_h);
    };
    auto [value, grads] = value_and_grad(loss, gru, x);
    CHECK(value() == doctest::Approx(fixtures().tensor<double, 0>("gru_packed.loss")()).epsilon(1e-12));
    check_parameter_gradients(std::get<0>(grads), "gru_packed", 1e-12);
    expect_near(std::get<1>(grads), fx<double, 3>("gru_packed.grad.x"), 1e-12);
  }
}

TEST_CASE("LSTMCell and GRUCell equal PyTorch's, and their gradients match central differences") {
  nn::LSTMCell<double> lstm(I, H);
  load_parameters(lstm, "lstm_cell");
  const auto x = fx<double, 2>("lstm_cell.x");
  const auto h0 = fx<double, 2>("lstm_cell.h0"), c0 = fx<double, 2>("lstm_cell.c0");
  const auto w_h = fx<double, 2>("lstm_cell.w_h"), w_c = fx<double, 2>("lstm_cell.w_c");
  auto lstm_loss = [&](const auto& m, const auto& xs, const auto& h, const auto& c) {
    auto [h1, c1] = m(xs, std::make_tuple(h, c));
    return sum(h1 * w_h) + sum(c1 * w_c);
  };
  auto [h1, c1] = lstm(x, std::make_tuple(h0, c0));
  expect_near(Tensor<double, 2>(h1), fx<double, 2>("lstm_cell.h1"), 1e-12);
  expect_near(Tensor<double, 2>(c1), fx<double, 2>("lstm_cell.c1"), 1e-12);
  auto [lv, lg] = value_and_grad(lstm_loss, lstm, x, h0, c0);
  check_parameter_gradients(std::get<0>(lg), "lstm_cell", 1e-12);
  expect_near(std::get<1>(lg), fx<double, 2>("lstm_cell.grad.x"), 1e-12);
  expect_near(std::get<2>(lg), fx<double, 2>("lstm_cell.grad.h0"), 1e-12);
  expect_near(std::get<3>(lg), fx<double, 2>("lstm_cell.grad.c0"), 1e-12);
  GRAD_CHECK(lstm_loss, lstm, x, h0, c0, grad_test::tight());

  nn::GRUCell<double> gru(I, H);
  load_parameters(gru, "gru_cell");
  const auto gx = fx<double, 2>("gru_cell.x"), gh0 = fx<double, 2>("gru_cell.h0");
  const auto gw_h = fx<double, 2>("gru_cell.w_h");
  auto gru_loss = [&](const auto& m, const auto& xs, const auto& h) { return sum(m(xs, h) * gw_h); };
  expect_near(Tensor<double, 2>(gru(gx, gh0)), fx<double, 2>("gru_cell.h1"), 1e-12);
  auto [gv, gg] = value_and_grad(gru_loss, gru, gx, gh0);
  check_parameter_gradients(std::get<0>(gg), "gru_cell", 1e-12);
  expect_near(std::get<1>(gg), fx<double, 2>("gru_cell.grad.x"), 1e-12);
  expect_near(std::get<2>(gg), fx<double, 2>("gru_cell.grad.h0"), 1e-12);
  GRAD_CHECK(gru_loss, gru, gx, gh0, grad_test::tight());
  // Without a state: zeros.
  const Tensor<double, 2> zero(Shape<2>{N, H});
  expect_eq(Tensor<double, 2>(gru(gx)), Tensor<double, 2>(gru(gx, zero)));
}

