// Fusion and laziness, proven with the TESSERA_INSTRUMENT counters (core/instrument.hpp): an
// elementwise chain is one pass and one allocation, materialization points (matmul, reductions)
// feed fused passes without extra passes, and expressions hold their operands safely.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include <cmath>
#include <cstdint>
#include <random>

namespace {

using tessera::index_t;
using tessera::Shape;
using tessera::Tensor;
namespace instrument = tessera::instrument;

template <class T, std::size_t R>
Tensor<T, R> random_tensor(const Shape<R>& shape, unsigned seed, double lo = -2, double hi = 2) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  Tensor<T, R> t(shape);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(dist(rng));
  return t;
}

long allocations() { return instrument::counters().allocations.load(); }
long passes() { return instrument::counters().elementwise_passes.load(); }
long materializations() { return instrument::counters().materializations.load(); }

/// Snapshot of the three counters since the last reset().
struct Counts {
  long allocations, passes, materializations;
};
Counts counts() { return {allocations(), passes(), materializations()}; }

}  // namespace

TEST_CASE_TEMPLATE("a*b + c*d - tanh(e) is one pass and one allocation", T, float, double) {
  // Small (serial) and large (split across threads): the pass count does not depend on threading.
  for (index_t n : {index_t{37}, index_t{70001}}) {
    CAPTURE(n);
    const Shape<2> shape{n, 3};
    const auto a = random_tensor<T>(shape, 1), b = random_tensor<T>(shape, 2), c = random_tensor<T>(shape, 3);
    const auto d = random_tensor<T>(shape, 4), e = random_tensor<T>(shape, 5);
    instrument::reset();
    Tensor<T, 2> y = a * b + c * d - tessera::tanh(e);
    const Counts first = counts();
    CHECK(first.passes == 1);
    CHECK(first.allocations == 1);
    CHECK(first.materializations == 0);
    // The values are right (so the single pass really computed the whole chain).
    index_t bad = 0;
    for (index_t i = 0; i < y.size(); ++i) {
      const T want = a.data()[i] * b.data()[i] + c.data()[i] * d.data()[i] - std::tanh(e.data()[i]);
      if (std::abs(y.data()[i] - want) > T(1e-5)) ++bad;
    }
    CHECK(bad == 0);

    // Assigning into an existing, unshared tensor of the same shape reuses its buffer.
    const void* storage = y.storage_id();
    instrument::reset();
    y = a * b + c * d - tessera::tanh(e);
    const Counts again = counts();
    CHECK(again.passes == 1);
    CHECK(again.allocations == 0);
    CHECK(y.storage_id() == storage);
  }
}

TEST_CASE("assignment into a shared or differently shaped tensor allocates a new buffer") {
  const auto a = random_tensor<float>(Shape<1>{64}, 7);
  Tensor<float, 1> y(64);
  Tensor<float, 1> alias = y;  // y's buffer is now shared: it must not be overwritten
  instrument::reset();
  y = a * 2.f;
  CHECK(passes() == 1);
  CHECK(allocations() == 1);
  CHECK(y.storage_id() != alias.storage_id());
  CHECK(alias(0) == 0.f);
  Tensor<float, 1> z(10);
  instrument::reset();
  z = a + 1.f;  // shape differs: rebinds to a new 64-element buffer
  CHECK(allocations() == 1);
  CHECK(z.shape()[0] == 64);
}

TEST_CASE("a ten-op chain is still one pass") {
  const auto x = random_tensor<float>(Shape<2>{50, 41}, 11, 0.5, 2);
  const auto y = random_tensor<float>(Shape<1>{41}, 12, 0.5, 2);
  instrument::reset();
  const Tensor<float, 2> r = tessera::sqrt(tessera::exp(-x) * y + 1.f) / (tessera::abs(x - y) + 2.f) -
                             tessera::sigmoid(x * 3.f) + tessera::relu(y);
  CHECK(passes() == 1);
  CHECK(allocations() == 1);
  CHECK(materializations() == 0);
  const float x0 = x(3, 5), y0 = y(5);
  const float want = std::sqrt(std::exp(-x0) * y0 + 1.f) / (std::abs(x0 - y0) + 2.f) -
                     1.f / (1.f + std::exp(-x0 * 3.f)) + std::max(y0, 0.f);
  CHECK(r(3, 5) == doctest::Approx(want).epsilon(1e-5));
}

TEST_CASE("compound assignment is one pass and no allocation") {
  Tensor<float, 2> w = random_tensor<float>(Shape<2>{64, 33}, 13);
  const auto g = random_tensor<float>(Shape<2>{64, 33}, 14);
  const auto bias = random_tensor<float>(Shape<1>{33}, 15);
  const void* storage = w.storage_id();
  instrument::reset();
  w -= 0.1f * g;
  w += bias;
  w *= tessera::sigmoid(g);
  CHECK(passes() == 3);
  CHECK(allocations() == 0);
  CHECK(w.storage_id() == storage);
}

TEST_CASE("relu(matmul(x, W) + b) is one materialization and one elementwise pass") {
  const auto x = random_tensor<float>(Shape<2>{32, 20}, 21);
  const auto W = random_tensor<float>(Shape<2>{20, 10}, 22);
  const auto b = random_tensor<float>(Shape<1>{10}, 23);
  instrument::reset();
  auto lazy = tessera::relu(tessera::matmul(x, W) + b);
  CHECK(materializations() == 0);  // building the expression runs nothing
  CHECK(passes() == 0);
  const Tensor<float, 2> y = lazy;
  CHECK(materializations() == 1);
  CHECK(passes() == 1);
  CHECK(allocations() <= 2);  // the product's buffer and the result
  for (index_t i = 0; i < 32; i += 7) {
    for (index_t j = 0; j < 10; j += 3) {
      double acc = b(j);
      for (index_t k = 0; k < 20; ++k) acc += double(x(i, k)) * double(W(k, j));
      CHECK(y(i, j) == doctest::Approx(std::max(acc, 0.0)).epsilon(1e-5));
    }
  }
  // Assigned directly (no elementwise work around it), matmul writes straight into the result.
  instrument::reset();
  const Tensor<float, 2> p = tessera::matmul(x, W);
  CHECK(materializations() == 1);
  CHECK(passes() == 0);
  CHECK(allocations() == 1);
}

TEST_CASE("sum(a * b) reads the fused product: one materialization, no elementwise pass") {
  const auto a = random_tensor<double>(Shape<2>{40, 70}, 31);
  const auto b = random_tensor<double>(Shape<2>{40, 70}, 32);
  double want = 0;
  for (index_t i = 0; i < a.size(); ++i) want += a.data()[i] * b.data()[i];
  instrument::reset();
  const Tensor<double, 0> s = tessera::sum(a * b);
  CHECK(materializations() == 1);
  CHECK(passes() == 0);
  CHECK(allocations() == 1);  // the rank-0 result only (see the report: rank-0 tensors allocate twice)
  CHECK(s() == doctest::Approx(want).epsilon(1e-12));
  instrument::reset();
  const Tensor<double, 1> rows = tessera::sum(a * b, {1});
  CHECK(materializations() == 1);
  CHECK(passes() == 0);
  double row3 = 0;
  for (index_t j = 0; j < 70; ++j) row3 += a(3, j) * b(3, j);
  CHECK(rows(3) == doctest::Approx(row3).epsilon(1e-12));
  // A reduction feeding an elementwise op: the reduction's result is read by the one pass.
  instrument::reset();
  const Tensor<double, 1> centered = tessera::sum(a, {0}) / 40.0 - 1.0;
  CHECK(materializations() == 1);
  CHECK(passes() == 1);
  CHECK(centered.shape()[0] == 70);
}

TEST_CASE("expressions are lazy: building one runs nothing and reads the operands when evaluated") {
  auto a = random_tensor<float>(Shape<1>{100}, 41);
  auto b = random_tensor<float>(Shape<1>{100}, 42);
  instrument::reset();
  auto e = a + b;
  auto f = tessera::exp(e) * 2.f - a;
  auto m = tessera::matmul(a.reshape({10, 10}), b.reshape({10, 10}));
  auto r = tessera::sum(a * b);
  CHECK(passes() == 0);
  CHECK(allocations() == 0);
  CHECK(materializations() == 0);
  // The expression shares the operands' storage, so a write before evaluation is seen.
  a(0) = 1.f;
  b(0) = 2.f;
  const Tensor<float, 1> y = e;
  CHECK(y(0) == 3.f);
  CHECK(passes() == 1);
  const Tensor<float, 1> z = f;
  CHECK(z(0) == doctest::Approx(2.f * std::exp(3.f) - 1.f));
  const Tensor<float, 2> mm = m;
  const Tensor<float, 0> rr = r;
  CHECK(materializations() == 2);
}

TEST_CASE("an expression outliving its temporaries still evaluates correctly") {
  const auto make = [](float scale) {
    Tensor<float, 1> a = {1.f, 2.f, 3.f};
    Tensor<float, 1> b = {10.f, 20.f, 30.f};
    return tessera::tanh(a * scale) + b * b - a;  // a and b are destroyed on return
  };
  const auto e = make(0.5f);
  // Overwrite the freed memory's likely neighbours with other allocations first.
  for (int i = 0; i < 8; ++i) {
    Tensor<float, 1> noise = {-1.f, -1.f, -1.f};
    (void)noise;
  }
  const Tensor<float, 1> y = e;
  for (index_t i = 0; i < 3; ++i) {
    const float a = float(i + 1), b = 10.f * float(i + 1);
    CHECK(y(i) == doctest::Approx(std::tanh(a * 0.5f) + b * b - a));
  }
  // Temporaries inside one full expression, kept by a lazily held matmul and reduction.
  const auto lazy_product = tessera::matmul(Tensor<float, 2>{{1.f, 2.f}, {3.f, 4.f}}, Tensor<float, 2>{{5.f}, {6.f}});
  const auto lazy_sum = tessera::sum(Tensor<float, 1>{1.f, 2.f, 3.f} * 2.f);
  const Tensor<float, 2> p = lazy_product;
  const Tensor<float, 0> s = lazy_sum;
  CHECK(p(0, 0) == 17.f);
  CHECK(p(1, 0) == 39.f);
  CHECK(s() == 12.f);
  // The same expression evaluated twice gives the same result.
  const Tensor<float, 1> y2 = e;
  CHECK(y2(2) == y(2));
}

TEST_CASE("views in an expression are one pass; clone is one pass and one allocation") {
  const auto m = random_tensor<float>(Shape<2>{30, 20}, 51);
  instrument::reset();
  const Tensor<float, 2> t = m.transpose() * 2.f + m.transpose();
  CHECK(passes() == 1);
  CHECK(allocations() == 1);
  instrument::reset();
  const auto c = m.slice(0, 0, 30, 2).clone();
  CHECK(passes() == 1);
  CHECK(allocations() == 1);
  CHECK(c(1, 0) == m(2, 0));
  CHECK(t(4, 7) == doctest::Approx(3.f * m(7, 4)));
}

TEST_CASE("a transposed product or sum is computed once per pass, then read through transposed strides") {
  const auto a = random_tensor<float>(Shape<2>{5, 4}, 31), b = random_tensor<float>(Shape<2>{4, 3}, 32);
  const auto c = random_tensor<float>(Shape<2>{3, 5}, 33);
  instrument::reset();
  Tensor<float, 2> y = transpose(matmul(a, b)) + c;
  CHECK(materializations() == 1);  // the GEMM, once
  CHECK(passes() == 1);
  const Tensor<float, 2> ab = matmul(a, b);
  CHECK(y(2, 4) == doctest::Approx(ab(4, 2) + c(2, 4)));

  instrument::reset();
  Tensor<float, 2> z = transpose(a + a) * 2.0f;
  CHECK(passes() == 2);  // a + a into a buffer, then the transposed product
  CHECK(z(3, 1) == doctest::Approx(4 * a(1, 3)));
}

TEST_CASE("sum_to of a strided tensor with nothing to sum is read through its own strides") {
  // sum_to hands over its argument when there is nothing to sum; a transposed one must not be read
  // as if it were contiguous (the pass plans its loops from the node's shape).
  const auto g = random_tensor<float>(Shape<2>{4, 3}, 41);
  const auto gt = g.transpose();
  const Tensor<float, 2> y = sum_to(gt, Shape<2>{3, 4}) + 1.0f;
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 4; ++j) CHECK(y(i, j) == g(j, i) + 1.0f);
  // The same through a vjp pullback given a transposed cotangent.
  const auto x = random_tensor<float>(Shape<2>{3, 4}, 42);
  auto [value, pullback] = vjp([](const auto& a) { return a * 2.0f; }, x);
  const auto [dx] = pullback(gt);
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 4; ++j) CHECK(dx(i, j) == 2.0f * g(j, i));
  (void)value;
}

TEST_CASE("views allocate nothing, including rank-0 views") {
  const auto m = random_tensor<float>(Shape<2>{6, 4}, 61);
  const auto v = random_tensor<float>(Shape<1>{5}, 62);
  instrument::reset();
  const auto t = m.transpose();
  const auto s = m.slice(1, 0, 4, 2);
  const auto r = m.reshape({4, 6});
  const auto row = m.select(0, 2);
  const auto b = v.broadcast_to({3, 5});
  CHECK(allocations() == 0);
  const Tensor<float, 0> element = v.select(0, 3);  // a rank-0 view of one element
  CHECK(allocations() == 0);
  CHECK(element() == v(3));
  CHECK(t(1, 2) == m(2, 1));
  CHECK(s(0, 1) == m(0, 2));
  CHECK(r(1, 0) == m(1, 2));
  CHECK(row(3) == m(2, 3));
  CHECK(b(2, 4) == v(4));
}

TEST_CASE("composite reductions are lazy like every other expression") {
  // var, logsumexp and the flattened argmax are built from other reductions. Like `a + b`, building
  // them should run nothing, and evaluating them should read the operands as they are then (see
  // the report: var computes its mean, logsumexp its max shift and argmax(x) its flattened copy
  // when the expression is built).
  Tensor<double, 1> x = {1.0, 2.0, 3.0};
  instrument::reset();
  auto v = tessera::var(x);
  auto l = tessera::logsumexp(x);
  auto am = tessera::argmax(x);
  CHECK(passes() == 0);
  CHECK(materializations() == 0);
  x(0) = 10.0;  // after building, before evaluating
  const Tensor<double, 0> var_now = v;
  const Tensor<double, 0> lse_now = l;
  const Tensor<std::int64_t, 0> argmax_now = am;
  // var({10, 2, 3}): mean 5, squared deviations 25 + 9 + 4.
  CHECK(var_now() == doctest::Approx(38.0 / 3.0));
  CHECK(lse_now() == doctest::Approx(std::log(std::exp(10.0) + std::exp(2.0) + std::exp(3.0))));
  CHECK(argmax_now() == 0);
}
