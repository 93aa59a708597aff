// Dropout, Embedding, residual blocks and the model summary.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"
#include "nn/module_names.hpp"
#include "nn/fixture_support.hpp"

using namespace tessera;
using nn_test::parameter_names;
namespace fx = torch_fixtures;

namespace {
double fraction_zero(const Tensor<float, 2>& t) {
  return Tensor<double, 0>(mean(cast<double>(t == 0.0f)))();
}
}  // namespace

TEST_CASE("Dropout in training: drops about p, scales the rest by 1/(1-p), seeded, fresh mask per call") {
  const auto x = full<float>({200, 500}, 2.0f);
  Generator gen(42);
  nn::Dropout<float> drop(0.3, {.generator = &gen});
  const Tensor<float, 2> y = drop(x);
  CHECK(fraction_zero(y) == doctest::Approx(0.3).epsilon(0.02));
  const Tensor<float, 0> off_values = sum(where(y == 0.0f, 0.0f, abs(y - 2.0f / 0.7f)));
  CHECK(off_values() < 1e-3f);
  const Tensor<float, 2> y_next = drop(x);
  CHECK(Tensor<bool, 0>(any(y_next != y))());

  Generator same(42);
  nn::Dropout<float> replay(0.3, {.generator = &same});
  const Tensor<float, 2> y_again = replay(x);
  CHECK_TENSOR_EQ(y_again, y);
}

TEST_CASE("Dropout: identity in evaluation and for p = 0, zeros for p = 1, bad p rejected") {
  Generator gen(1);
  const auto x = normal<float>(gen, {4, 5});
  nn::Dropout<float> drop(0.5, {.generator = &gen});
  drop.eval();
  const Tensor<float, 2> y = drop(x);
  CHECK_TENSOR_EQ(y, x);
  CHECK(gen.offset() == Generator(1).offset() + 10);  // evaluation draws nothing (normal used 10)
  nn::Dropout<float> none(0.0);
  const Tensor<float, 2> y0 = none(x);
  CHECK_TENSOR_EQ(y0, x);
  nn::Dropout<float> all_dropped(1.0);
  const Tensor<float, 2> y1 = all_dropped(x);
  CHECK_TENSOR_EQ(y1, zeros<float>({4, 5}));
  CHECK_THROWS_AS(nn::Dropout<float>(1.5), value_error);
  CHECK_THROWS_AS(nn::Dropout<float>(-0.1), value_error);
}

TEST_CASE("Dropout's gradient uses the mask of the same forward") {
  Generator gen(7);
  const auto x = normal<double>(gen, {30, 20});
  const auto w = normal<double>(gen, {30, 20});
  nn::Dropout<double> drop(0.4, {.generator = &gen});
  Tensor<double, 2> y;
  auto [dx] = grad([&](const auto& in) {
    auto out = drop(in);
    y = Tensor<double, 2>(out * 1.0);  // the forward's output, with its mask
    return sum(out * w);
  }, x);
  // d/dx sum(x * mask * w) = mask * w, and y = x * mask.
  const Tensor<double, 2> lhs = dx * x, rhs = y * w;
  CHECK_TENSOR_NEAR(lhs, rhs, 1e-12);
}

TEST_CASE("Embedding matches torch.nn.Embedding: lookup, gradient with a padding row, errors") {
  nn::Embedding<double> emb(6, 3, {.padding_idx = 2});
  CHECK(Tensor<double, 0>(sum(abs(emb.weight.slice(0, 2, 3))))() == 0.0);  // padding row starts at zero
  emb.weight.assign(fixture::d2(fx::emb_weight));
  const auto ids = fixture::tensor<std::int64_t, 2>(fx::emb_ids);
  const Tensor<double, 3> y = emb(ids);
  CHECK_TENSOR_NEAR(y, fixture::d3(fx::emb_y), 0.0);
  const auto r = fixture::d3(fx::emb_r);
  auto [g] = grad([&](const auto& m) { return sum(m(ids) * r); }, emb);
  CHECK_TENSOR_NEAR(g.weight, fixture::d2(fx::emb_dweight), 1e-14);
  CHECK(parameter_names(emb) == std::vector<std::string>{"weight"});

  GRAD_CHECK([&](const auto& table) { return sum(square(embedding(table, ids)) * r); }, emb.weight, grad_test::tight());
  const Tensor<std::int64_t, 1> bad = {0, 6};
  const auto lookup_bad = [&] { return Tensor<double, 2>(emb(bad)); };
  CHECK_THROWS_WITH_AS(lookup_bad(), doctest::Contains("index 6 at position 1"), index_error);
  CHECK_THROWS_AS(nn::Embedding<float>(0, 3), value_error);
  CHECK_THROWS_AS(nn::Embedding<float>(4, 3, {.padding_idx = 4}), value_error);
}

TEST_CASE("Residual blocks: identity and projection shortcuts, names, gradients, shape errors") {
  Generator gen(9);
  auto block = nn::residual(nn::sequential(nn::Linear<double>(4, 4, {.bias = true, .generator = &gen}), nn::Tanh{},
                                           nn::Linear<double>(4, 4, {.bias = true, .generator = &gen})));
  const auto x = normal<double>(gen, {3, 4});
  const Tensor<double, 2> y = block(x);
  const Tensor<double, 2> expected = block.body(x) + x;
  CHECK_TENSOR_NEAR(y, expected, 1e-15);
  CHECK(parameter_names(block) ==
        std::vector<std::string>{"body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"});
  GRAD_CHECK([&](const auto& m) { return sum(square(m(x))); }, block, grad_test::tight());

  auto projected = nn::residual(nn::Linear<double>(4, 2, {.bias = true, .generator = &gen}),
                                nn::Linear<double>(4, 2, {.bias = false, .generator = &gen}));
  CHECK(parameter_names(projected) == std::vector<std::string>{"body.weight", "body.bias", "shortcut.weight"});
  GRAD_CHECK([&](const auto& m, const auto& in) { return sum(sin(m(in))); }, projected, x, grad_test::tight());

  auto mismatched = nn::residual(nn::Linear<double>(4, 3));
  CHECK_THROWS_WITH_AS(mismatched(x), doctest::Contains("give a projection shortcut"), shape_error);
}

TEST_CASE("summary lists each layer with its output shape and parameter count") {
  auto model = nn::sequential(nn::Conv2d<float>(1, 8, 3, {.padding = 1}), nn::BatchNorm2d<float>(8), nn::ReLU{},
                              nn::MaxPool2d(2), nn::Dropout<float>(0.25), nn::Flatten{}, nn::Linear<float>(8 * 14 * 14, 10));
  const auto x = zeros<float>({32, 1, 28, 28});
  const std::string s = nn::summary(model, x);
  MESSAGE(s);
  CHECK(s.find("0 (Conv2d)") != std::string::npos);
  CHECK(s.find("[32, 8, 28, 28]") != std::string::npos);
  CHECK(s.find("3 (MaxPool2d)") != std::string::npos);
  CHECK(s.find("[32, 8, 14, 14]") != std::string::npos);
  CHECK(s.find("6 (Linear)") != std::string::npos);
  CHECK(s.find("15,690") != std::string::npos);            // 1568 * 10 + 10
  CHECK(s.find("Trainable params: 15,786") != std::string::npos);  // 80 + 16 + 15,690
  CHECK(s.find("Buffers (non-trainable): 17") != std::string::npos);
  CHECK(s.find("Output shape: [32, 10]") != std::string::npos);
  CHECK(model.is_training());  // restored
  CHECK(model.layer<1>().num_batches_tracked() == 0);  // nothing was evaluated
}
