// What grad costs, counted by the instrument counters (the tests are built with TESSERA_INSTRUMENT):
// the backward of an elementwise chain is ONE fused pass writing every gradient, and a
// materialization node used several times is computed once.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;

namespace {

struct Counts {
  long passes, materializations, allocations;
};
Counts counts() {
  const auto& c = instrument::counters();
  return {c.elementwise_passes.load(), c.materializations.load(), c.allocations.load()};
}
/// Counts of running `body` from zero.
template <class F>
Counts measure(F&& body) {
  instrument::reset();
  body();
  return counts();
}

// Ten elementwise ops over five same-shaped inputs, then one reduction.
const auto chain = [](const auto& a, const auto& b, const auto& c, const auto& d, const auto& e) {
  return sum(tanh(a * b + c) * exp(d) - e * a / (1.0 + b * b));
};

}  // namespace

TEST_CASE("the backward of a 10-op elementwise chain of 5 inputs is one elementwise pass") {
  const auto a = sample({64, 48}, -1, 1, 91), b = sample({64, 48}, -1, 1, 92), c = sample({64, 48}, -1, 1, 93);
  const auto d = sample({64, 48}, -1, 1, 94), e = sample({64, 48}, -1, 1, 95);

  // The forward value alone: the sum reads the fused chain in its own pass (one materialization).
  const Counts forward = measure([&] { const Tensor<double, 0> v = chain(a, b, c, d, e); });
  CHECK(forward.passes == 0);
  CHECK(forward.materializations == 1);

  // value_and_grad = the forward value + the gradient phase.
  Tensor<double, 0> value;
  std::tuple<Tensor<double, 2>, Tensor<double, 2>, Tensor<double, 2>, Tensor<double, 2>, Tensor<double, 2>> grads;
  const Counts both = measure([&] { std::tie(value, grads) = value_and_grad(chain, a, b, c, d, e); });
  const long gradient_passes = both.passes - forward.passes;
  const long gradient_materializations = both.materializations - forward.materializations;
  MESSAGE("forward: " << forward.passes << " passes, " << forward.materializations << " materializations; "
          << "value_and_grad: " << both.passes << " passes, " << both.materializations << " materializations");
  CHECK(gradient_passes == 1);           // all five gradients in ONE fused pass
  CHECK(gradient_materializations == 0); // nothing in the chain's backward needs a buffer

  // The same split measured with vjp: its pullback is the gradient phase alone.
  auto [out, pullback] = vjp(chain, a, b, c, d, e);
  const Counts backward_only = measure([&] { pullback(Tensor<double, 0>(1.0)); });
  CHECK(backward_only.passes == 1);
  CHECK(backward_only.materializations == 0);

  // And the one pass computed the right gradients.
  const auto [da, db, dc, dd, de] = grads;
  const Tensor<double, 2> t = tanh(a * b + c);
  const Tensor<double, 2> dt = (1.0 - t * t) * exp(d);  // d/d(a*b + c)
  const Tensor<double, 2> q = 1.0 + b * b;
  CHECK_TENSOR_NEAR(da, eval(dt * b - e / q), 1e-13);
  CHECK_TENSOR_NEAR(db, eval(dt * a + e * a * 2.0 * b / (q * q)), 1e-13);
  CHECK_TENSOR_NEAR(dc, dt, 1e-13);
  CHECK_TENSOR_NEAR(dd, eval(t * exp(d)), 1e-13);
  CHECK_TENSOR_NEAR(de, eval(-a / q), 1e-13);
  CHECK(value() == doctest::Approx(Tensor<double, 0>(chain(a, b, c, d, e))()).epsilon(1e-12));
}

TEST_CASE("a matmul of constants used twice in f is computed once during grad") {
  const auto A = sample({16, 8}, -1, 1, 96), B = sample({8, 12}, -1, 1, 97), X = sample({16, 12}, -1, 1, 98);
  const auto f = [&](const auto& x) {
    const auto m = matmul(A, B);
    return sum(m * x * m);
  };
  // Outside autodiff a lazy node is recomputed at every use: 2 GEMMs + the sum.
  const Counts plain = measure([&] { const Tensor<double, 0> v = f(X); });
  CHECK(plain.materializations == 3);
  // During grad its buffer is cached: 1 GEMM + the sum, and the backward (x's adjoint m * m)
  // reads the cached buffer twice without computing it again.
  const Counts with_grad = measure([&] { value_and_grad(f, X); });
  CHECK(with_grad.materializations == 2);
  const auto [g] = grad(f, X);
  const Tensor<double, 2> m = matmul(A, B);
  CHECK_TENSOR_NEAR(g, eval(m * m), 1e-14);
}

TEST_CASE("a matmul of variables used three times is computed once during grad") {
  const auto A = sample({16, 8}, -1, 1, 99), B = sample({8, 12}, -1, 1, 100);
  const auto one_node = [](const auto& p, const auto& q) {
    const auto m = matmul(p, q);
    return sum(m * m) + sum(tanh(m));
  };
  const auto three_nodes = [](const auto& p, const auto& q) {
    return sum(matmul(p, q) * matmul(p, q)) + sum(tanh(matmul(p, q)));
  };
  const Counts one = measure([&] { value_and_grad(one_node, A, B); });
  const Counts three = measure([&] { value_and_grad(three_nodes, A, B); });
  MESSAGE("one node: " << one.materializations << " materializations, three nodes: " << three.materializations);
  // The backward is the same for both (two GEMMs per use); the forward computes one GEMM per node.
  CHECK(three.materializations - one.materializations >= 2);
  // 1 forward GEMM + 2 sums + 2 backward GEMMs for each of the 3 uses.
  CHECK(one.materializations == 1 + 2 + 6);
  const auto [da1, db1] = grad(one_node, A, B);
  const auto [da3, db3] = grad(three_nodes, A, B);
  CHECK_TENSOR_NEAR(da1, da3, 1e-13);
  CHECK_TENSOR_NEAR(db1, db3, 1e-13);
}

TEST_CASE("the gradient of a one-value parameter is one fused reduction, with no buffer of the input's size") {
  const Tensor<double, 1> x = sample({1000}, -1, 1, 31);
  const Tensor<double, 0> s(1.5);
  const auto f = [](const auto& v, const auto& scale) { return sum(tanh(v * scale)); };
  const auto [dx, ds] = grad(f, x, s);  // warm-up: nothing below is a first-time allocation
  const Counts both = measure([&] { (void)grad(f, x, s); });
  const Counts x_only = measure([&] { (void)grad([&](const auto& v) { return f(v, s); }, x); });
  // ds = sum(g * (1 - tanh^2) * v): one reduction straight from the expression; with the input
  // evaluated into a temporary first it would also cost a pass and a 1000-element allocation.
  CHECK(both.passes == x_only.passes);
  CHECK(both.materializations == x_only.materializations + 1);
  CHECK(both.allocations == x_only.allocations + 1);  // ds's own one-element buffer
  const auto [ds_again] = grad([&](const auto& scale) { return f(x, scale); }, s);
  CHECK(ds() == doctest::Approx(ds_again()).epsilon(1e-14));
}

TEST_CASE("prod's gradient is its own kernel: no elementwise pass for g *, none to copy it") {
  // Values near 1 (a normal product: the one-pass path) and with a zero (prefix/suffix products).
  Tensor<double, 1> x = sample({1000}, 0.95, 1.05, 96);
  // (prod alone: a scale after it would add a rank-0 pass of its own.)
  const auto f = [](const auto& v) { return prod(v); };
  for (const bool with_zero : {false, true}) {
    CAPTURE(with_zero);
    if (with_zero) x(17) = 0.0;
    Tensor<double, 1> g;
    const Counts c = measure([&] { g = std::get<0>(grad(f, x)); });
    CHECK(c.passes == 0);
    double others = 1.0;
    for (index_t j = 0; j < x.size(); ++j) others *= j == 17 ? 1.0 : x(j);
    CHECK(g(17) == doctest::Approx(others).epsilon(1e-12));
  }
}
