// Shared by the recurrent-layer tests: PyTorch's fixtures (fixtures/sequence.safetensors, made by
// make_sequence_fixtures.py) and the checks of the stacked LSTM and GRU against them, in T.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <tessera/tessera.hpp>

#include "nn/safetensors_fixture.hpp"

namespace recurrent_test {

using namespace tessera;

using fixture_test::expect_eq;
using fixture_test::expect_near;

inline const fixture_test::FixtureFile& sequence_fixtures() {
  static const fixture_test::FixtureFile f("sequence.safetensors");
  return f;
}
inline const io::SafetensorsFile& fixtures() { return sequence_fixtures().file(); }
template <class T, std::size_t R>
Tensor<T, R> fx(const std::string& name) {
  return sequence_fixtures().tensor<T, R>(name);
}
inline std::vector<index_t> fx_lengths(const std::string& name) {
  const auto t = fixtures().tensor<double, 1>(name);
  std::vector<index_t> v;
  for (index_t i = 0; i < t.size(); ++i) v.push_back(static_cast<index_t>(t(i)));
  return v;
}
template <class M>
void load_parameters(M& m, const std::string& prefix) {
  sequence_fixtures().load_parameters(m, prefix);
}
template <class M>
void check_parameter_gradients(M& grads, const std::string& prefix, double tol) {
  sequence_fixtures().check_parameter_gradients(grads, prefix, tol);
}

constexpr index_t T = 5, N = 3, I = 4, H = 6;

/// The stacked LSTM of the fixture "lstm" (2 layers, bidirectional, initial state), in T.
template <class T_>
void check_lstm_fixture(double tol) {
  nn::LSTM<T_, cpu, 2, true> lstm(I, H);
  load_parameters(lstm, "lstm");
  const auto x = fx<T_, 3>("lstm.x");
  const auto h0 = fx<T_, 3>("lstm.h0");
  const auto c0 = fx<T_, 3>("lstm.c0");
  const auto w_out = fx<T_, 3>("lstm.w_out"), w_h = fx<T_, 3>("lstm.w_h"), w_c = fx<T_, 3>("lstm.w_c");
  auto loss = [&](const auto& m, const auto& xs, const auto& h, const auto& c) {
    auto [out, state] = m(xs, std::make_tuple(h, c));
    return sum(out * w_out) + sum(std::get<0>(state) * w_h) + sum(std::get<1>(state) * w_c);
  };
  {
    auto [out, state] = lstm(x, std::make_tuple(h0, c0));
    CHECK(out.shape() == Shape<3>{T, N, 2 * H});
    expect_near(Tensor<T_, 3>(out), fx<T_, 3>("lstm.output"), tol);
    expect_near(Tensor<T_, 3>(std::get<0>(state)), fx<T_, 3>("lstm.h_n"), tol);
    expect_near(Tensor<T_, 3>(std::get<1>(state)), fx<T_, 3>("lstm.c_n"), tol);
  }
  auto [value, grads] = value_and_grad(loss, lstm, x, h0, c0);
  CHECK(value() == doctest::Approx(fixtures().tensor<double, 0>("lstm.loss")()).epsilon(tol));
  check_parameter_gradients(std::get<0>(grads), "lstm", tol);
  expect_near(std::get<1>(grads), fx<T_, 3>("lstm.grad.x"), tol);
  expect_near(std::get<2>(grads), fx<T_, 3>("lstm.grad.h0"), tol);
  expect_near(std::get<3>(grads), fx<T_, 3>("lstm.grad.c0"), tol);
}

template <class T_>
void check_gru_fixture(double tol) {
  nn::GRU<T_, cpu, 2, true> gru(I, H, {.batch_first = true});
  load_parameters(gru, "gru");
  const auto x = fx<T_, 3>("gru.x");
  const auto h0 = fx<T_, 3>("gru.h0");
  const auto w_out = fx<T_, 3>("gru.w_out"), w_h = fx<T_, 3>("gru.w_h");
  auto loss = [&](const auto& m, const auto& xs, const auto& h) {
    auto [out, h_n] = m(xs, h);
    return sum(out * w_out) + sum(h_n * w_h);
  };
  {
    auto [out, h_n] = gru(x, h0);
    CHECK(out.shape() == Shape<3>{N, T, 2 * H});
    expect_near(Tensor<T_, 3>(out), fx<T_, 3>("gru.output"), tol);
    expect_near(Tensor<T_, 3>(h_n), fx<T_, 3>("gru.h_n"), tol);
  }
  auto [value, grads] = value_and_grad(loss, gru, x, h0);
  CHECK(value() == doctest::Approx(fixtures().tensor<double, 0>("gru.loss")()).epsilon(tol));
  check_parameter_gradients(std::get<0>(grads), "gru", tol);
  expect_near(std::get<1>(grads), fx<T_, 3>("gru.grad.x"), tol);
  expect_near(std::get<2>(grads), fx<T_, 3>("gru.grad.h0"), tol);
}


}  // namespace recurrent_test
