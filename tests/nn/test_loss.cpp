// Losses against PyTorch (every reduction and option), their gradients by finite differences,
// and the errors users can cause.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"
#include "nn/fixture_support.hpp"

using namespace tessera;
namespace fx = torch_fixtures;

namespace {
template <class E>
double value(const E& e) {
  return Tensor<double, 0>(e)();
}
}  // namespace

TEST_CASE("cross_entropy matches PyTorch: mean, sum, none, label smoothing, class weights") {
  const auto logits = fixture::d2(fx::ce_logits);
  const auto labels = fixture::labels(fx::ce_labels);
  const auto weight = fixture::d1(fx::ce_weight);
  using O = nn::CrossEntropyOptions<double>;
  CHECK(value(nn::cross_entropy(logits, labels)) == doctest::Approx(fixture::scalar(fx::ce_mean)).epsilon(1e-14));
  CHECK(value(nn::cross_entropy(logits, labels, O{nn::Reduction::sum})) ==
        doctest::Approx(fixture::scalar(fx::ce_sum)).epsilon(1e-14));
  CHECK_TENSOR_NEAR(eval(nn::cross_entropy(logits, labels, nn::no_reduction)), fixture::d1(fx::ce_none), 1e-14);
  CHECK(value(nn::cross_entropy(logits, labels, O{nn::Reduction::mean, 0.1})) ==
        doctest::Approx(fixture::scalar(fx::ce_smooth)).epsilon(1e-14));
  CHECK(value(nn::cross_entropy(logits, labels, O{nn::Reduction::mean, 0.0, weight})) ==
        doctest::Approx(fixture::scalar(fx::ce_weighted)).epsilon(1e-14));
  CHECK(value(nn::cross_entropy(logits, labels, O{nn::Reduction::mean, 0.2, weight})) ==
        doctest::Approx(fixture::scalar(fx::ce_weighted_smooth)).epsilon(1e-14));
  CHECK(value(nn::cross_entropy(logits, labels, O{nn::Reduction::sum, 0.0, weight})) ==
        doctest::Approx(fixture::scalar(fx::ce_weighted_sum)).epsilon(1e-14));
  CHECK(value(nn::nll(log_softmax(logits, -1), labels)) == doctest::Approx(fixture::scalar(fx::nll_mean)).epsilon(1e-14));
}

TEST_CASE("cross_entropy: gradient is (softmax - target) / N, and checks by finite differences") {
  const auto logits = fixture::d2(fx::ce_logits);
  const auto labels = fixture::labels(fx::ce_labels);
  const auto weight = fixture::d1(fx::ce_weight);
  const auto [g] = grad([&](const auto& z) { return nn::cross_entropy(z, labels); }, logits);
  Tensor<double, 2> expected = softmax(logits, -1);
  for (index_t i = 0; i < 5; ++i) expected(i, labels(i)) -= 1.0;
  expected = expected * 0.2;
  CHECK_TENSOR_NEAR(g, expected, 1e-15);
  using O = nn::CrossEntropyOptions<double>;
  GRAD_CHECK([&](const auto& z) { return nn::cross_entropy(z, labels, O{nn::Reduction::mean, 0.2, weight}); }, logits,
             grad_test::tight());
  GRAD_CHECK([&](const auto& z) { return sum(square(nn::cross_entropy(z, labels, nn::no_reduction))); }, logits,
             grad_test::tight());
  GRAD_CHECK([&](const auto& z) { return nn::nll(log_softmax(z, -1), labels, O{nn::Reduction::sum}); }, logits,
             grad_test::tight());
}

TEST_CASE("regression losses match PyTorch") {
  const auto p = fixture::d2(fx::reg_input);
  const auto t = fixture::d2(fx::reg_target);
  const auto bt = fixture::d2(fx::bce_target);
  CHECK(value(nn::mse(p, t)) == doctest::Approx(fixture::scalar(fx::mse_mean)).epsilon(1e-14));
  CHECK(value(nn::mse(p, t, {nn::Reduction::sum})) == doctest::Approx(fixture::scalar(fx::mse_sum)).epsilon(1e-14));
  CHECK(value(nn::l1(p, t)) == doctest::Approx(fixture::scalar(fx::l1_mean)).epsilon(1e-14));
  CHECK_TENSOR_NEAR(eval(nn::l1(p, t, nn::no_reduction)), fixture::d2(fx::l1_none), 1e-15);
  CHECK(value(nn::huber(p, t, 0.5)) == doctest::Approx(fixture::scalar(fx::huber_mean_0_5)).epsilon(1e-14));
  CHECK_TENSOR_NEAR(eval(nn::huber(p, t, nn::no_reduction)), fixture::d2(fx::huber_none_1), 1e-15);
  CHECK(value(nn::binary_cross_entropy_with_logits(p * 3.0, bt)) ==
        doctest::Approx(fixture::scalar(fx::bce_mean)).epsilon(1e-14));
  CHECK_TENSOR_NEAR(eval(nn::binary_cross_entropy_with_logits(p * 3.0, bt, nn::no_reduction)),
                    fixture::d2(fx::bce_none), 1e-14);
}

TEST_CASE("regression losses: gradients check against finite differences") {
  const auto p = fixture::d2(fx::reg_input);
  const auto t = fixture::d2(fx::reg_target);
  const auto bt = fixture::d2(fx::bce_target);
  GRAD_CHECK([&](const auto& a, const auto& b) { return nn::mse(a, b); }, p, t, grad_test::tight());
  GRAD_CHECK([&](const auto& a, const auto& b) { return nn::l1(a, b, {nn::Reduction::sum}); }, p, t, grad_test::tight());
  GRAD_CHECK([&](const auto& a, const auto& b) { return nn::huber(a, b, 0.5); }, p, t, grad_test::tight());
  GRAD_CHECK([&](const auto& a, const auto& b) { return nn::binary_cross_entropy_with_logits(a, b); }, p, bt,
             grad_test::tight());
  // BCE's gradient at logit 0 is sigmoid(0) - t = 0.5 - t exactly.
  const Tensor<double, 1> zero = {0.0, 0.0};
  const Tensor<double, 1> target = {0.25, 1.0};
  const auto [g] = grad([&](const auto& z) { return nn::binary_cross_entropy_with_logits(z, target, {nn::Reduction::sum}); }, zero);
  CHECK_TENSOR_NEAR(g, (Tensor<double, 1>{0.25, -0.5}), 1e-15);
}

TEST_CASE("losses reject bad labels, shapes and options with clear messages") {
  const auto logits = fixture::d2(fx::ce_logits);
  const Tensor<std::int64_t, 1> bad = {0, 1, 4, 0, 0};
  CHECK_THROWS_WITH_AS(nn::cross_entropy(logits, bad), "cross_entropy: label 4 at position 2 is outside [0, 4)", value_error);
  const Tensor<std::int64_t, 1> negative = {0, -1, 0, 0, 0};
  CHECK_THROWS_AS(nn::cross_entropy(logits, negative), value_error);
  const Tensor<std::int64_t, 1> short_labels = {0, 1};
  CHECK_THROWS_WITH_AS(nn::cross_entropy(logits, short_labels), "cross_entropy: 2 labels for 5 rows of scores of shape [5, 4]",
                       shape_error);
  using O = nn::CrossEntropyOptions<double>;
  CHECK_THROWS_AS(nn::cross_entropy(logits, fixture::labels(fx::ce_labels), O{nn::Reduction::mean, 1.5}), value_error);
  CHECK_THROWS_AS(nn::cross_entropy(logits, fixture::labels(fx::ce_labels), O{nn::Reduction::mean, 0, Tensor<double, 1>{1.0}}),
                  shape_error);
  const Tensor<double, 2> p(Shape<2>{3, 4});
  const Tensor<double, 2> q(Shape<2>{4, 3});
  CHECK_THROWS_WITH_AS(nn::mse(p, q), "mse: input of shape [3, 4] and target of shape [4, 3] differ", shape_error);
  CHECK_THROWS_AS(nn::huber(p, p, -1.0), value_error);
}
