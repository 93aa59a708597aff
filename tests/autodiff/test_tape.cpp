// The run-time tape: a loop whose trip count depends on the data, recorded step by step and
// differentiated backwards; checked against central differences through the whole loop.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;

namespace {

const auto step = [](const auto& w, const auto& v, const auto& c) { return tanh(matmul(w, v) + c); };
const auto half_square = [](const auto& v) { return sum(square(v - 0.5)) * 0.5; };

/// Iterates x <- tanh(W x + b) from x = x0 until max |change| < tol, on a tape when one is given.
struct FixedPoint {
  Tensor<double, 1> x;
  int steps = 0;
};
FixedPoint iterate_plain(const Tensor<double, 2>& W, const Tensor<double, 1>& b, const Tensor<double, 1>& x0, double tol) {
  FixedPoint r{x0, 0};
  for (double change = 1; change >= tol && r.steps < 1000; ++r.steps) {
    const Tensor<double, 1> next = step(W, r.x, b);
    change = Tensor<double, 0>(max(abs(next - r.x)))();
    r.x = next;
  }
  return r;
}
double loss_plain(const Tensor<double, 2>& W, const Tensor<double, 1>& b, const Tensor<double, 1>& x0, double tol) {
  return Tensor<double, 0>(half_square(iterate_plain(W, b, x0, tol).x))();
}

const double tol = 1e-13;
// A contraction (||W|| < 1), so the loop converges for W and for W perturbed.
const auto W0 = eval(sample({5, 5}, -1, 1, 121) * 0.25);
const auto b0 = sample({5}, -1, 1, 122);
const auto x00 = sample({5}, -1, 1, 123);

}  // namespace

TEST_CASE("a data-dependent loop on a tape: gradients match central differences") {
  Tape tape;
  auto W = tape.variable(W0);
  auto b = tape.variable(b0);
  auto x = tape.variable(x00);
  int steps = 0;
  for (double change = 1; change >= tol && steps < 1000; ++steps) {
    auto next = tape.apply(step, W, x, b);
    change = Tensor<double, 0>(max(abs(next.value() - x.value())))();
    x = next;
  }
  auto loss = tape.apply(half_square, x);
  CHECK(steps == iterate_plain(W0, b0, x00, tol).steps);
  CHECK(steps > 10);  // the loop really iterated
  CHECK(tape.size() == static_cast<std::size_t>(steps) + 1);
  CHECK(loss.value()() == doctest::Approx(loss_plain(W0, b0, x00, tol)).epsilon(1e-14));

  const auto [dW, db, dx0] = tape.gradient(loss, W, b, tape.variable(x00));
  const auto numeric_dW = grad_test::numeric_gradient([&](const Tensor<double, 2>& w) { return loss_plain(w, b0, x00, tol); }, W0);
  const auto numeric_db = grad_test::numeric_gradient([&](const Tensor<double, 1>& c) { return loss_plain(W0, c, x00, tol); }, b0);
  CHECK_TENSOR_NEAR(dW, numeric_dW, 1e-7);
  CHECK_TENSOR_NEAR(db, numeric_db, 1e-7);
  // A variable created after the steps was never used: zeros.
  CHECK_TENSOR_EQ(dx0, zeros_like(x00));
  CHECK(Tensor<double, 0>(sum(abs(dW)))() > 1e-3);
}

TEST_CASE("a tape variable not on the loss path gets zeros; gradient can be called twice") {
  Tape tape;
  auto W = tape.variable(W0);
  auto b = tape.variable(b0);
  auto unused = tape.variable(x00);
  auto x = tape.variable(x00);
  // A side branch that uses W and `unused` but does not reach the loss.
  auto side = tape.apply([](const auto& w, const auto& u) { return exp(matmul(w, u)); }, W, unused);
  (void)side;
  for (int i = 0; i < 4; ++i) x = tape.apply(step, W, x, b);
  auto loss = tape.apply(half_square, x);

  const auto [dW1, db1, du1, dx1] = tape.gradient(loss, W, b, unused, x);
  const auto [dW2, db2, du2, dx2] = tape.gradient(loss, W, b, unused, x);
  CHECK_TENSOR_EQ(du1, zeros_like(x00));
  CHECK_TENSOR_EQ(dW2, dW1);
  CHECK_TENSOR_EQ(db2, db1);
  CHECK_TENSOR_EQ(du2, du1);
  CHECK_TENSOR_EQ(dx2, dx1);
  // The gradient of the last value is the loss's own: x - 0.5.
  const Tensor<double, 1> expected_dx = x.value() - 0.5;
  CHECK_TENSOR_NEAR(dx1, expected_dx, 1e-15);

  // Four unrolled steps are one static function: grad of it agrees with the tape.
  const auto [sW, sb] = grad(
      [&](const auto& w, const auto& c) {
        return half_square(step(w, step(w, step(w, step(w, x00, c), c), c), c));
      },
      W0, b0);
  CHECK_TENSOR_NEAR(dW1, sW, 1e-13);
  CHECK_TENSOR_NEAR(db1, sb, 1e-13);

  // Another loss on the same tape, then the first again: each gradient starts from zero.
  auto loss2 = tape.apply([](const auto& v) { return sum(v); }, x);
  const auto [dW3, db3] = tape.gradient(loss2, W, b);
  const auto [dW4, db4] = tape.gradient(loss, W, b);
  CHECK(grad_test::max_error(dW3, dW1) > 1e-3);
  CHECK_TENSOR_EQ(dW4, dW1);
  CHECK_TENSOR_EQ(db4, db1);
}

TEST_CASE("a tape value used twice in one step and in two steps") {
  Tape tape;
  auto a = tape.variable(Tensor<double, 1>{0.5, -1.5, 2.0});
  auto p = tape.apply([](const auto& u, const auto& v) { return u * v; }, a, a);  // a^2
  auto q = tape.apply([](const auto& u, const auto& v) { return sin(u) + v; }, a, p);
  auto loss = tape.apply([](const auto& v) { return sum(v); }, q);
  const auto [da] = tape.gradient(loss, a);
  // d/da sum(sin(a) + a^2) = cos(a) + 2a
  const Tensor<double, 1> expected = cos(a.value()) + a.value() * 2.0;
  CHECK_TENSOR_NEAR(da, expected, 1e-15);
}

TEST_CASE("a copied tape continues on its own; a moved tape still differentiates") {
  Tape tape;
  auto a = tape.variable(Tensor<double, 1>{0.5, -1.5, 2.0});
  auto p = tape.apply([](const auto& u) { return u * u; }, a);  // a^2
  Tape copy = tape;
  // The copy records a step of its own; the original never sees it.
  auto q = copy.apply([](const auto& v) { return sin(v); }, p);
  auto copy_loss = copy.apply([](const auto& v) { return sum(v); }, q);
  auto loss = tape.apply([](const auto& v) { return sum(v); }, p);
  CHECK(copy.size() == 3);
  CHECK(tape.size() == 2);
  // The original is destroyed before the copy runs backwards: the copy's steps must not refer to it.
  const auto [da] = tape.gradient(loss, a);
  { Tape gone = std::move(tape); }
  const auto [dc] = copy.gradient(copy_loss, a);
  const Tensor<double, 1> twice_a = a.value() * 2.0;
  CHECK_TENSOR_NEAR(da, twice_a, 1e-15);
  // d/da sum(sin(a^2)) = cos(a^2) 2a
  const Tensor<double, 1> chain = cos(a.value() * a.value()) * a.value() * 2.0;
  CHECK_TENSOR_NEAR(dc, chain, 1e-15);

  std::vector<Tape> tapes;
  tapes.push_back(std::move(copy));
  tapes.emplace_back();  // the vector reallocates: the moved tape's steps move with it
  const auto [dm] = tapes[0].gradient(copy_loss, a);
  CHECK_TENSOR_EQ(dm, dc);
}
