// Attention layers, continued: central differences through scaled_dot_product_attention (each
// mask kind), MultiheadAttention, both transformer layers, positional encodings and tied
// embeddings; what masks hide; torch.nn's names; dropout; errors; a model that trains.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
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
template <class A, class B>
void expect_near(const A& actual, const B& expected, double tol) {
  CHECK_TENSOR_NEAR(actual, expected, tol);
}
double max_abs(const Tensor<double, 3>& t) { return Tensor<double, 0>(max(abs(t)))(); }

/// The test's usual masks: a key padding mask hiding the last key of example 1, and causal.
nn::AttentionMasks<double> padding_and_causal(index_t S) {
  nn::AttentionMasks<double> m;
  Tensor<bool, 2> kpm(Shape<2>{2, S});
  kpm(1, S - 1) = true;
  m.key_padding_mask = kpm;
  m.causal = true;
  return m;
}
}  // namespace

TEST_CASE("scaled_dot_product_attention: gradients match central differences without a mask, with an additive mask, causal, with dropout") {
  Generator gen(3);
  const auto q = normal<double>(gen, {2, 4, 3}), k = normal<double>(gen, {2, 5, 3}), v = normal<double>(gen, {2, 5, 2});
  const auto w = normal<double>(gen, {2, 4, 2});
  GRAD_CHECK([&](const auto& a, const auto& b, const auto& c) { return sum(nn::scaled_dot_product_attention(a, b, c) * w); },
             q, k, v, grad_test::tight());
  Tensor<double, 3> additive = normal<double>(gen, {1, 4, 5});
  additive(0, 2, 4) = -std::numeric_limits<double>::infinity();
  GRAD_CHECK([&](const auto& a, const auto& b, const auto& c) {
               return sum(nn::scaled_dot_product_attention(a, b, c, additive) * w);
             },
             q, k, v, grad_test::tight());
  nn::AttentionOptions causal;
  causal.is_causal = true;
  causal.scale = 0.7;
  GRAD_CHECK([&](const auto& a, const auto& b, const auto& c) {
               return sum(nn::scaled_dot_product_attention(a, b, c, Tensor<double, 3>{}, causal) * w);
             },
             q, k, v, grad_test::tight());
  // Dropout: the mask is drawn per call, so the check redraws the same one from a fixed seed.
  nn::AttentionOptions dropped;
  dropped.dropout_p = 0.3;
  GRAD_CHECK([&](const auto& a, const auto& b, const auto& c) {
               Generator g(11);
               nn::AttentionOptions o = dropped;
               o.generator = &g;
               return sum(nn::scaled_dot_product_attention(a, b, c, Tensor<double, 3>{}, o) * w);
             },
             q, k, v, grad_test::tight());
}

TEST_CASE("scaled_dot_product_attention: equals softmax(q k^T / sqrt(E) + mask) v written out") {
  Generator gen(4);
  const auto q = normal<double>(gen, {3, 2}), k = normal<double>(gen, {4, 2}), v = normal<double>(gen, {4, 3});
  Tensor<double, 2> expected = matmul(softmax(matmul(q, transpose(k)) / std::sqrt(2.0), -1), v);
  expect_near(Tensor<double, 2>(nn::scaled_dot_product_attention(q, k, v)), expected, 1e-14);
  // Large scores: the softmax stays finite (the row maximum is subtracted).
  Tensor<double, 2> big = nn::scaled_dot_product_attention(Tensor<double, 2>(q * 1e4), k, v);
  CHECK(std::isfinite(Tensor<double, 0>(sum(big))()));
}

TEST_CASE("MultiheadAttention: gradients match central differences under each mask kind") {
  Generator gen(6);
  nn::MultiheadAttention<double> mha(4, 2, {.generator = &gen});
  // PyTorch starts the biases at zero; make them matter for the check.
  mha.in_proj_bias.assign(normal<double>(gen, {12}));
  mha.out_proj.bias.assign(normal<double>(gen, {4}));
  const auto x = normal<double>(gen, {2, 3, 4}), kv = normal<double>(gen, {2, 5, 4});
  const auto w = normal<double>(gen, {2, 3, 4});
  nn::AttentionMasks<double> none;
  GRAD_CHECK([&](const auto& m, const auto& a, const auto& b) { return sum(m(a, b, b, none) * w); }, mha, x, kv,
             grad_test::tight());
  GRAD_CHECK([&](const auto& m, const auto& a) { return sum(m(a, a, a, padding_and_causal(3)) * w); }, mha, x,
             grad_test::tight());
  nn::AttentionMasks<double> additive;
  additive.attn_mask = normal<double>(gen, {3, 5});
  GRAD_CHECK([&](const auto& m, const auto& a, const auto& b) { return sum(m(a, b, b, additive) * w); }, mha, x, kv,
             grad_test::tight());
}

TEST_CASE("a causal mask hides the future; a padded key changes nothing") {
  Generator gen(7);
  nn::MultiheadAttention<double> mha(4, 2, {.generator = &gen});
  const auto x = normal<double>(gen, {2, 5, 4});
  nn::AttentionMasks<double> causal;
  causal.causal = true;
  const Tensor<double, 3> y = mha(x, x, x, causal);
  for (index_t t = 0; t + 1 < 5; ++t) {
    CAPTURE(t);
    Tensor<double, 3> xp = x.clone();
    xp.slice(1, t + 1, 5) += 100.0;  // perturb every token after t
    const Tensor<double, 3> yp = mha(xp, xp, xp, causal);
    expect_eq(Tensor<double, 3>(yp.slice(1, 0, t + 1)), Tensor<double, 3>(y.slice(1, 0, t + 1)));
    CHECK(max_abs(Tensor<double, 3>(yp.slice(1, t + 1, 5) - y.slice(1, t + 1, 5))) > 1e-6);
  }
  // Key padding: example 1's last two keys are hidden; changing them leaves outputs and the other
  // inputs' gradients unchanged, and they get no gradient.
  nn::AttentionMasks<double> pad;
  Tensor<bool, 2> kpm(Shape<2>{2, 5});
  kpm(1, 3) = kpm(1, 4) = true;
  pad.key_padding_mask = kpm;
  const auto q = normal<double>(gen, {2, 3, 4});
  auto loss = [&](const auto& a, const auto& b) { return sum(square(mha(a, b, b, pad))); };
  auto [v0, g0] = value_and_grad(loss, q, x);
  Tensor<double, 3> xp = x.clone();
  xp.slice(0, 1, 2).slice(1, 3, 5) += 100.0;
  auto [v1, g1] = value_and_grad(loss, q, xp);
  CHECK(v1() == v0());
  expect_eq(std::get<0>(g1), std::get<0>(g0));
  expect_eq(Tensor<double, 3>(std::get<1>(g1).slice(0, 1, 2).slice(1, 3, 5)), zeros<double>(Shape<3>{1, 2, 4}));
  expect_eq(Tensor<double, 3>(std::get<1>(g1).slice(1, 0, 3)), Tensor<double, 3>(std::get<1>(g0).slice(1, 0, 3)));
}

TEST_CASE("transformer layers: gradients match central differences (post- and pre-norm, ReLU and GELU, decoder-only)") {
  Generator gen(8);
  const auto x = normal<double>(gen, {2, 3, 4});
  const auto w = normal<double>(gen, {2, 3, 4});
  for (bool norm_first : {false, true}) {
    for (auto activation : {nn::Activation::relu, nn::Activation::gelu}) {
      CAPTURE(norm_first);
      nn::TransformerEncoderLayer<double> layer(4, 2, {.dim_feedforward = 6, .dropout = 0.0, .activation = activation,
                                                       .norm_first = norm_first, .generator = &gen});
      layer.norm1.weight.assign(normal<double>(gen, {4}));
      layer.norm2.bias.assign(normal<double>(gen, {4}));
      GRAD_CHECK([&](const auto& m, const auto& a) { return sum(m(a, padding_and_causal(3)) * w); }, layer, x,
                 grad_test::tight());
    }
  }
  nn::TransformerDecoderOnlyLayer<double> block(4, 2, {.dim_feedforward = 6, .dropout = 0.0, .norm_first = true, .generator = &gen});
  GRAD_CHECK([&](const auto& m, const auto& a) { return sum(sin(m(m(a)))); }, block, x, grad_test::tight());
}

TEST_CASE("a decoder-only layer is causal; an encoder layer is not unless asked") {
  Generator gen(9), same(9);  // the same weights in both layer types
  nn::TransformerDecoderOnlyLayer<double> decoder(4, 2, {.dim_feedforward = 8, .dropout = 0.0, .generator = &gen});
  nn::TransformerEncoderLayer<double> encoder(4, 2, {.dim_feedforward = 8, .dropout = 0.0, .generator = &same});
  const auto x = normal<double>(gen, {1, 4, 4});
  Tensor<double, 3> xp = x.clone();
  xp(0, 3, 0) += 1.0;  // the last token
  const Tensor<double, 3> d0 = decoder(x), d1 = decoder(xp);
  expect_eq(Tensor<double, 3>(d1.slice(1, 0, 3)), Tensor<double, 3>(d0.slice(1, 0, 3)));
  const Tensor<double, 3> e0 = encoder(x), e1 = encoder(xp);
  CHECK(max_abs(Tensor<double, 3>(e1.slice(1, 0, 3) - e0.slice(1, 0, 3))) > 1e-6);
  nn::AttentionMasks<double> causal;
  causal.causal = true;
  expect_near(Tensor<double, 3>(encoder(x, causal)), d0, 1e-15);
}

TEST_CASE("names, shapes and initialization follow torch.nn") {
  nn::TransformerEncoderLayer<float> layer(16, 4, {.dim_feedforward = 32});
  const std::vector<std::string> expected{"self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                                          "self_attn.out_proj.bias",  "linear1.weight",         "linear1.bias",
                                          "linear2.weight",           "linear2.bias",           "norm1.weight",
                                          "norm1.bias",               "norm2.weight",           "norm2.bias"};
  CHECK(nn_test::parameter_names(layer) == expected);
  CHECK(nn::parameter_count(layer) == 3 * 16 * 16 + 3 * 16 + 16 * 16 + 16 + 32 * 16 + 32 + 16 * 32 + 16 + 4 * 16);
  CHECK(layer.self_attn.head_dim() == 4);
  // in_proj_weight: Xavier-uniform over [48, 16]; biases zero.
  const float bound = std::sqrt(6.0f / (48 + 16));
  CHECK(Tensor<float, 0>(max(abs(layer.self_attn.in_proj_weight)))() <= bound);
  CHECK(Tensor<float, 0>(max(abs(layer.self_attn.in_proj_weight)))() > 0.8f * bound);
  CHECK(Tensor<float, 0>(max(abs(layer.self_attn.in_proj_bias)))() == 0.0f);
  CHECK(Tensor<float, 0>(max(abs(layer.self_attn.out_proj.bias)))() == 0.0f);
  nn::MultiheadAttention<float> no_bias(8, 2, {.bias = false});
  CHECK(nn_test::parameter_names(no_bias) == std::vector<std::string>{"in_proj_weight", "out_proj.weight"});
  nn::SinusoidalPositionalEncoding<float> sinusoid(6, 10);
  CHECK(nn_test::parameter_names(sinusoid).empty());
  CHECK(nn_test::buffer_names(sinusoid) == std::vector<std::string>{"pe"});
}

TEST_CASE("dropout acts in training only") {
  Generator gen(10);
  nn::TransformerEncoderLayer<float> layer(8, 2, {.dim_feedforward = 16, .dropout = 0.5, .generator = &gen});
  const auto x = normal<float>(gen, {2, 3, 8});
  const Tensor<float, 3> a = layer(x);
  layer.eval();
  const Tensor<float, 3> b = layer(x), c = layer(x);
  expect_eq(b, c);
  CHECK(Tensor<float, 0>(max(abs(a - b)))() > 1e-3f);
}

TEST_CASE("positional encodings: sinusoid values, learned table gradients") {
  nn::SinusoidalPositionalEncoding<double> pe(6, 10);
  CHECK(pe.pe(3, 0) == doctest::Approx(std::sin(3.0)).epsilon(1e-15));
  CHECK(pe.pe(3, 1) == doctest::Approx(std::cos(3.0)).epsilon(1e-15));
  CHECK(pe.pe(2, 4) == doctest::Approx(std::sin(2.0 / std::pow(10000.0, 4.0 / 6))).epsilon(1e-15));
  CHECK(pe.pe(2, 5) == doctest::Approx(std::cos(2.0 / std::pow(10000.0, 4.0 / 6))).epsilon(1e-15));
  const Tensor<double, 3> zero(Shape<3>{2, 4, 6});
  const Tensor<double, 3> added = pe(zero);
  expect_eq(Tensor<double, 2>(added.slice(0, 1, 2).reshape(Shape<2>{4, 6})), Tensor<double, 2>(pe.pe.slice(0, 0, 4)));
  Generator gen(12);
  nn::LearnedPositionalEncoding<double> learned(10, 6, &gen);
  const auto x = normal<double>(gen, {2, 4, 6});
  GRAD_CHECK([&](const auto& m, const auto& a) { return sum(sin(m(a))); }, learned, x, grad_test::tight());
  auto [g] = grad([&](const auto& m) { return sum(m(x)); }, learned);
  // Rows past the sequence get nothing; each used row gets the batch size.
  expect_eq(Tensor<double, 2>(g.weight.slice(0, 4, 10)), zeros<double>(Shape<2>{6, 6}));
  expect_eq(Tensor<double, 2>(g.weight.slice(0, 0, 4)), full<double>(Shape<2>{4, 6}, 2.0));
}

TEST_CASE("an embedding tied to the output projection: one table, both gradients") {
  Generator gen(13);
  nn::Embedding<double> emb(7, 3, {.generator = &gen});
  Tensor<std::int64_t, 2> ids = {{1, 4, 4}, {6, 0, 2}};
  const auto w = normal<double>(gen, {2, 3, 7});
  GRAD_CHECK([&](const auto& m) { return sum(m.attend(tanh(m(ids))) * w); }, emb, grad_test::tight());
  const Tensor<double, 3> logits = emb.attend(emb(ids));
  CHECK(logits.shape() == Shape<3>{2, 3, 7});
  CHECK(logits(0, 1, 4) == doctest::Approx(Tensor<double, 0>(sum(square(emb.weight.slice(0, 4, 5))))()).epsilon(1e-14));
  CHECK_THROWS_WITH_AS(emb.attend(Tensor<double, 2>(Shape<2>{2, 4})), "Embedding: attend on input of shape [2, 4], expected 3 features",
                       shape_error);
}

TEST_CASE("bad input: wrong extents and masks name the layer and the shapes") {
  nn::MultiheadAttention<float> mha(8, 2);
  const Tensor<float, 3> x(Shape<3>{2, 5, 8});
  CHECK_THROWS_WITH_AS(nn::MultiheadAttention<float>(6, 4), "MultiheadAttention: embed_dim 6 must be a positive multiple of num_heads 4",
                       value_error);
  CHECK_THROWS_WITH_AS(mha(x, Tensor<float, 3>(Shape<3>{2, 5, 7}), x), "MultiheadAttention: key of shape [2, 5, 7], expected [2, length, 8]",
                       shape_error);
  CHECK_THROWS_WITH_AS(mha(x, x, Tensor<float, 3>(Shape<3>{2, 4, 8})),
                       "MultiheadAttention: key [2, 5, 8] and value [2, 4, 8] differ in length", shape_error);
  nn::AttentionMasks<float> bad_padding;
  bad_padding.key_padding_mask = Tensor<bool, 2>(Shape<2>{2, 4});
  CHECK_THROWS_WITH_AS(mha(x, x, x, bad_padding),
                       "MultiheadAttention: key_padding_mask of shape [2, 4], expected [2, 5] (batch, key length)", shape_error);
  nn::AttentionMasks<float> bad_additive;
  bad_additive.attn_mask = Tensor<float, 2>(Shape<2>{5, 4});
  CHECK_THROWS_WITH_AS(mha(x, x, x, bad_additive),
                       "MultiheadAttention: attn_mask of shape [5, 4], expected [5, 5] (query length, key length)", shape_error);
  nn::AttentionMasks<float> hide_all;  // causal, and example 0's first key padded: query 0 sees nothing
  hide_all.causal = true;
  hide_all.key_padding_mask = Tensor<bool, 2>(Shape<2>{2, 5});
  hide_all.key_padding_mask(0, 0) = true;
  CHECK_THROWS_WITH_AS(mha(x, x, x, hide_all),
                       "MultiheadAttention: the masks hide every key from a query (row 0 of the broadcast mask [2, 1, 5, 5]); "
                       "its attention is undefined",
                       value_error);
  CHECK_THROWS_WITH_AS(nn::scaled_dot_product_attention(x, Tensor<float, 3>(Shape<3>{2, 5, 4}), x),
                       "scaled_dot_product_attention: query [2, 5, 8] and key [2, 5, 4] differ in features", shape_error);
  CHECK_THROWS_WITH_AS(nn::scaled_dot_product_attention(x, x, x, Tensor<float, 3>(Shape<3>{1, 3, 5})),
                       "scaled_dot_product_attention: attn_mask of shape [1, 3, 5] does not broadcast to the scores' [..., 5, 5]",
                       shape_error);
  nn::TransformerEncoderLayer<float> layer(8, 2, {.dim_feedforward = 16});
  CHECK_THROWS_WITH_AS(layer(Tensor<float, 3>(Shape<3>{2, 5, 6})),
                       "TransformerEncoderLayer: input of shape [2, 5, 6] has 6 features, expected d_model 8", shape_error);
  nn::SinusoidalPositionalEncoding<float> pe(8, 4);
  CHECK_THROWS_WITH_AS(pe(x), "SinusoidalPositionalEncoding: input of shape [2, 5, 8], expected [batch, length <= 4, 8]",
                       shape_error);
  CHECK_THROWS_WITH_AS(nn::TransformerEncoderLayer<float>(8, 2, {.dim_feedforward = 0}),
                       "TransformerLayer: dim_feedforward must be positive, got 0", value_error);
}

namespace {
/// Embedding -> learned positions -> decoder-only layer -> the embedding as the output projection.
struct CopyModel : nn::Module<CopyModel> {
  nn::Embedding<float> embed;
  nn::LearnedPositionalEncoding<float> pos;
  nn::TransformerDecoderOnlyLayer<float> block;
  explicit CopyModel(Generator& g)
      : embed(8, 16, {.generator = &g}), pos(12, 16, &g), block(16, 2, {.dim_feedforward = 32, .dropout = 0.0, .norm_first = true, .generator = &g}) {}
  auto members() { return std::make_tuple(nn::child("embed", embed), nn::child("pos", pos), nn::child("block", block)); }
  template <class I>
  auto operator()(const I& ids) const {
    return embed.attend(block(pos(embed(ids) * 0.25f)));
  }
};
}  // namespace

TEST_CASE("a small decoder-only model learns to copy the previous token") {
  // Targets are the inputs shifted by one, which only attention to the previous position predicts.
  Generator gen(14);
  CopyModel model(gen);
  optim::Adam<float> adam({.lr = 1e-2});
  Tensor<std::int64_t, 2> ids(Shape<2>{16, 12});
  std::uint64_t state = 1;
  auto loss = [&](const CopyModel& m) {
    Tensor<std::int64_t, 1> targets = ids.slice(1, 0, 11).contiguous().reshape(Shape<1>{16 * 11});
    return nn::cross_entropy(reshape(slice(m(ids), 1, 1, 12), Shape<2>{16 * 11, 8}), targets);
  };
  float first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    for (index_t i = 0; i < ids.size(); ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      ids.data()[i] = static_cast<std::int64_t>(state >> 61);  // 0..7
    }
    auto [value, g] = value_and_grad(loss, model);
    adam.step(model, std::get<0>(g));
    if (step == 0) first = value();
    last = value();
  }
  CHECK(first > 1.8f);  // about ln 8 = 2.08
  CHECK(last < 0.5f * first);
}
