// Gradients of composite functions compared exactly (1e-12) with gradients derived by hand and
// written with tessera's own ops: logsumexp -> softmax, softmax cross-entropy -> (p - onehot) / n,
// and a 2-layer MLP with a relu hidden layer.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;

TEST_CASE("the gradient of logsumexp is softmax") {
  const auto x = sample({4, 5}, -3, 3, 51);
  SUBCASE("over one axis") {
    const auto [g] = grad([](const auto& a) { return sum(logsumexp(a, 1)); }, x);
    const Tensor<double, 2> expected = softmax(x, 1);
    CHECK_TENSOR_NEAR(g, expected, 1e-12);
  }
  SUBCASE("over all elements: the softmax of the flattened tensor") {
    const auto [g] = grad([](const auto& a) { return logsumexp(a); }, x);
    const Tensor<double, 1> flat = softmax(x.reshape({20}), 0);
    const Tensor<double, 2> expected = flat.reshape({4, 5});
    CHECK_TENSOR_NEAR(g, expected, 1e-12);
  }
}

TEST_CASE("softmax cross-entropy with one-hot labels: (softmax - onehot) / batch") {
  const index_t batch = 6, classes = 4;
  const auto logits = sample({6, 4}, -2, 2, 52);
  const std::int64_t labels[] = {0, 3, 1, 1, 2, 0};
  Tensor<double, 2> onehot = zeros<double>(batch, classes);
  for (index_t i = 0; i < batch; ++i) onehot(i, labels[i]) = 1.0;

  // Written without unary minus, which does not compile yet under -Wextra -Werror (see
  // test_grad_negate.cpp, which has the same loss as -sum(...)).
  const auto [value, grads] = value_and_grad(
      [&](const auto& z) { return sum(log_softmax(z, 1) * onehot) * (-1.0 / static_cast<double>(batch)); }, logits);
  const auto& [g] = grads;
  const Tensor<double, 2> expected = (softmax(logits, 1) - onehot) / static_cast<double>(batch);
  CHECK_TENSOR_NEAR(g, expected, 1e-12);

  // The value itself: the mean of -log p[label].
  const Tensor<double, 2> p = softmax(logits, 1);
  double loss = 0;
  for (index_t i = 0; i < batch; ++i) loss -= std::log(p(i, labels[i]));
  CHECK(value() == doctest::Approx(loss / batch).epsilon(1e-12));
}

TEST_CASE("2-layer MLP with a relu hidden layer: backpropagation written by hand") {
  const index_t n = 8;
  const auto x = sample({8, 5}, -1, 1, 53);
  const auto y = sample({8, 3}, -1, 1, 54);
  const auto w1 = sample({5, 6}, -1, 1, 55);
  const auto b1 = sample({6}, -0.5, 0.5, 56);
  const auto w2 = sample({6, 3}, -1, 1, 57);
  const auto b2 = sample({3}, -0.5, 0.5, 58);

  // loss = sum((relu(x w1 + b1) w2 + b2 - y)^2) / (2 n)
  const auto loss = [&](const auto& W1, const auto& B1, const auto& W2, const auto& B2) {
    const auto h = relu(matmul(x, W1) + B1);
    return sum(square(matmul(h, W2) + B2 - y)) / (2.0 * static_cast<double>(n));
  };
  const auto [dw1, db1, dw2, db2] = grad(loss, w1, b1, w2, b2);

  // By hand.
  const Tensor<double, 2> z1 = matmul(x, w1) + b1;
  const Tensor<double, 2> h = relu(z1);
  const Tensor<double, 2> d_out = (matmul(h, w2) + b2 - y) / static_cast<double>(n);
  const Tensor<double, 2> expected_dw2 = matmul(h.transpose(), d_out);
  const Tensor<double, 1> expected_db2 = sum(d_out, 0);
  const Tensor<double, 2> d_h = matmul(d_out, w2.transpose());
  const Tensor<double, 2> d_z1 = where(z1 > 0.0, d_h, 0.0);
  const Tensor<double, 2> expected_dw1 = matmul(x.transpose(), d_z1);
  const Tensor<double, 1> expected_db1 = sum(d_z1, 0);

  CHECK_TENSOR_NEAR(dw1, expected_dw1, 1e-12);
  CHECK_TENSOR_NEAR(db1, expected_db1, 1e-12);
  CHECK_TENSOR_NEAR(dw2, expected_dw2, 1e-12);
  CHECK_TENSOR_NEAR(db2, expected_db2, 1e-12);
  // Some hidden units are inactive for some rows, so the relu mask matters.
  const Tensor<double, 0> inactive = sum(cast<double>(z1 <= 0.0));
  CHECK(inactive() > 0);
  CHECK(inactive() < static_cast<double>(z1.size()));
}
