// Attention layers against PyTorch: MultiheadAttention (causal self-attention; cross-attention with
// a key padding mask) and TransformerEncoderLayer (post-norm ReLU with key padding; pre-norm GELU,
// causal), forward values and every gradient, from fixtures/attention.safetensors (made by
// make_attention_fixtures.py), in double (1e-12) and float (1e-5).
#include <doctest/doctest.h>

#include <string>

#include <tessera/tessera.hpp>

#include "nn/safetensors_fixture.hpp"

using namespace tessera;
using fixture_test::expect_near;

namespace {

const fixture_test::FixtureFile& fixtures() {
  static const fixture_test::FixtureFile f("attention.safetensors");
  return f;
}
template <class T, std::size_t R>
Tensor<T, R> fx(const std::string& name) {
  return fixtures().tensor<T, R>(name);
}

/// The fixture's key padding mask (stored as 1 = hide) as PyTorch's bool convention.
Tensor<bool, 2> padding_mask(const std::string& name) { return Tensor<bool, 2>(fixtures().tensor<double, 2>(name) > 0.5); }

/// Whether the case's mask is causal (stored as [1] = 1).
bool causal_flag(const std::string& c) { return fixtures().tensor<double, 1>(c + ".causal")(0) > 0.5; }

template <class T>
void check_mha_causal(double tol) {
  const std::string c = "mha_causal";
  nn::MultiheadAttention<T> mha(8, 2);
  fixtures().load_parameters(mha, c);
  const auto x = fx<T, 3>(c + ".x");
  const auto w_out = fx<T, 3>(c + ".w_out");
  nn::AttentionMasks<T> masks;
  masks.causal = causal_flag(c);
  REQUIRE(masks.causal);
  expect_near(Tensor<T, 3>(mha(x, x, x, masks)), fx<T, 3>(c + ".output"), tol);
  auto loss = [&](const auto& m, const auto& xs) { return sum(m(xs, xs, xs, masks) * w_out); };
  auto [value, grads] = value_and_grad(loss, mha, x);
  CHECK(value() == doctest::Approx(fixtures().scalar(c + ".loss")).epsilon(tol));
  fixtures().check_parameter_gradients(std::get<0>(grads), c, tol);
  expect_near(std::get<1>(grads), fx<T, 3>(c + ".grad.x"), tol);
}

template <class T>
void check_mha_padding(double tol) {
  const std::string c = "mha_padding";
  nn::MultiheadAttention<T> mha(8, 2);
  fixtures().load_parameters(mha, c);
  const auto q = fx<T, 3>(c + ".query"), k = fx<T, 3>(c + ".key"), v = fx<T, 3>(c + ".value");
  const auto w_out = fx<T, 3>(c + ".w_out");
  nn::AttentionMasks<T> masks;
  masks.key_padding_mask = padding_mask(c + ".key_padding_mask");
  expect_near(Tensor<T, 3>(mha(q, k, v, masks)), fx<T, 3>(c + ".output"), tol);
  auto loss = [&](const auto& m, const auto& qs, const auto& ks, const auto& vs) { return sum(m(qs, ks, vs, masks) * w_out); };
  auto [value, grads] = value_and_grad(loss, mha, q, k, v);
  CHECK(value() == doctest::Approx(fixtures().scalar(c + ".loss")).epsilon(tol));
  fixtures().check_parameter_gradients(std::get<0>(grads), c, tol);
  expect_near(std::get<1>(grads), fx<T, 3>(c + ".grad.query"), tol);
  expect_near(std::get<2>(grads), fx<T, 3>(c + ".grad.key"), tol);
  expect_near(std::get<3>(grads), fx<T, 3>(c + ".grad.value"), tol);
}

template <class T>
void check_encoder(const std::string& c, nn::TransformerLayerOptions o, double tol) {
  o.dim_feedforward = 16;
  o.dropout = 0.0;
  nn::TransformerEncoderLayer<T> layer(8, 2, o);
  fixtures().load_parameters(layer, c);
  const auto src = fx<T, 3>(c + ".src");
  const auto w_out = fx<T, 3>(c + ".w_out");
  nn::AttentionMasks<T> masks;
  masks.causal = causal_flag(c);
  if (fixtures().file().find(c + ".key_padding_mask") != nullptr) masks.key_padding_mask = padding_mask(c + ".key_padding_mask");
  expect_near(Tensor<T, 3>(layer(src, masks)), fx<T, 3>(c + ".output"), tol);
  auto loss = [&](const auto& m, const auto& x) { return sum(m(x, masks) * w_out); };
  auto [value, grads] = value_and_grad(loss, layer, src);
  CHECK(value() == doctest::Approx(fixtures().scalar(c + ".loss")).epsilon(tol));
  fixtures().check_parameter_gradients(std::get<0>(grads), c, tol);
  expect_near(std::get<1>(grads), fx<T, 3>(c + ".grad.src"), tol);
}

nn::TransformerLayerOptions post_norm_relu() { return {}; }
nn::TransformerLayerOptions pre_norm_gelu() {
  nn::TransformerLayerOptions o;
  o.norm_first = true;
  o.activation = nn::Activation::gelu;
  return o;
}

}  // namespace

TEST_CASE("MultiheadAttention, causal self-attention: output and every gradient equal PyTorch's") {
  check_mha_causal<double>(1e-12);
  check_mha_causal<float>(1e-5);
}

TEST_CASE("MultiheadAttention, cross-attention with a key padding mask: output and every gradient equal PyTorch's") {
  check_mha_padding<double>(1e-12);
  check_mha_padding<float>(1e-5);
}

TEST_CASE("TransformerEncoderLayer, post-norm ReLU with key padding: output and every gradient equal PyTorch's") {
  check_encoder<double>("enc_post_relu", post_norm_relu(), 1e-12);
  check_encoder<float>("enc_post_relu", post_norm_relu(), 1e-5);
}

TEST_CASE("TransformerEncoderLayer, pre-norm GELU, causal: output and every gradient equal PyTorch's") {
  check_encoder<double>("enc_pre_gelu", pre_norm_gelu(), 1e-12);
  check_encoder<float>("enc_pre_gelu", pre_norm_gelu(), 1e-5);
}
