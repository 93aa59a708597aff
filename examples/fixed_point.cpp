// The run-time tape for data-dependent control flow: iterate x <- tanh(W x + b) until it stops
// changing (the number of steps depends on W and b), then differentiate the fixed point's loss
// with respect to W and b. Each step is one static expression; the tape records only the steps.
#include <tessera/tessera.hpp>

#include <cstdio>

using namespace tessera;

struct Result {
  double loss;
  int steps;
  Tensor<double, 2> dW;
  Tensor<double, 1> db;
};

Result solve(const Tensor<double, 2>& W0, const Tensor<double, 1>& b0, bool with_gradient) {
  Tape tape;
  auto W = tape.variable(W0);
  auto b = tape.variable(b0);
  auto x = tape.variable(zeros<double>(b0.shape(0)));
  int steps = 0;
  for (double change = 1; change > 1e-12 && steps < 1000; ++steps) {
    auto next = tape.apply([](const auto& w, const auto& v, const auto& c) { return tanh(matmul(w, v) + c); }, W, x, b);
    change = Tensor<double, 0>(max(abs(next.value() - x.value())))();
    x = next;
  }
  auto loss = tape.apply([](const auto& v) { return sum(square(v - 0.5)); }, x);
  Result r{loss.value()(), steps, {}, {}};
  if (with_gradient) std::tie(r.dW, r.db) = tape.gradient(loss, W, b);
  return r;
}

int main() {
  Generator gen(5);
  const auto W = eval(normal<double>(gen, {6, 6}) * 0.3);
  const auto b = normal<double>(gen, {6});
  const Result r = solve(W, b, true);
  std::printf("fixed point after %d steps, loss %.6f\n", r.steps, r.loss);

  // Central differences through the whole loop, trip count included.
  double worst = 0;
  for (index_t i = 0; i < 6; ++i) {
    for (index_t j = 0; j < 6; ++j) {
      auto up = W.clone(), down = W.clone();
      up(i, j) += 1e-6;
      down(i, j) -= 1e-6;
      const double numeric = (solve(up, b, false).loss - solve(down, b, false).loss) / 2e-6;
      worst = std::max(worst, std::abs(numeric - r.dW(i, j)) / std::max(1.0, std::abs(numeric)));
    }
  }
  std::printf("worst relative difference from finite differences: %.2e\n", worst);
  return worst < 1e-6 ? 0 : 1;
}
