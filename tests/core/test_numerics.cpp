// check_numerics (core/numerics.hpp): off by default; under a CheckNumerics guard every
// materialization point -- expression evaluation and assignment, materialized nodes, gradients,
// optimizer updates -- throws numeric_error naming the op, the shape and the first bad index.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <cmath>
#include <limits>

using namespace tessera;

TEST_CASE("off by default: NaN flows through silently") {
  CHECK_FALSE(check_numerics_enabled());
  const Tensor<float, 1> x = {1.0f, -1.0f};
  const Tensor<float, 1> y = log(x);
  CHECK(std::isnan(y(1)));
}

TEST_CASE("a guard turns the checks on for its scope; guards nest") {
  const Tensor<float, 2> x = {{1, 2, 3}, {4, 5, -6}};
  {
    CheckNumerics outer;
    CHECK(check_numerics_enabled());
    {
      CheckNumerics inner;
      CHECK(check_numerics_enabled());
    }
    CHECK(check_numerics_enabled());  // the outer guard still holds
    // The planted fault: log of the negative element at [1, 2].
    CHECK_THROWS_WITH_AS(eval(log(x)), "check_numerics: log produced NaN at [1, 2] of a [2, 3] tensor", numeric_error);
    // Finite results pass.
    CHECK(eval(log(abs(x)))(1, 2) == doctest::Approx(std::log(6.0f)));
  }
  CHECK_FALSE(check_numerics_enabled());
  CHECK(std::isnan(eval(log(x))(1, 2)));
}

TEST_CASE("every kind of materialization point is checked") {
  CheckNumerics guard;
  const float big = std::numeric_limits<float>::max();
  SUBCASE("assignment into an existing tensor, and infinities of either sign") {
    Tensor<float, 1> y = zeros<float>({3});
    const Tensor<float, 1> x = {0.0f, 1.0f, 2.0f};
    CHECK_THROWS_WITH_AS(y.assign(exp(x * 100.0f)), "check_numerics: exp produced +infinity at [1] of a [3] tensor", numeric_error);
    CHECK_THROWS_WITH_AS(y.assign(log(x)), "check_numerics: log produced -infinity at [0] of a [3] tensor", numeric_error);
    // The check follows the write, as TensorFlow's follows the op: y now holds the bad values.
    CHECK(std::isinf(y(0)));
    y.fill(0.0f);
    y += x;  // finite: fine
    CHECK(y(2) == doctest::Approx(2.0f));
  }
  SUBCASE("materialized nodes: matmul, reductions, softmax") {
    const Tensor<float, 2> a = {{big, big}, {1, 1}};
    const Tensor<float, 2> b = {{2, 0}, {2, 0}};
    CHECK_THROWS_WITH_AS(eval(matmul(a, b)), "check_numerics: matmul produced +infinity at [0, 0] of a [2, 2] tensor", numeric_error);
    CHECK_THROWS_WITH_AS(eval(sum(a)), doctest::Contains("produced +infinity at [] of a [] tensor"), numeric_error);
    const Tensor<float, 2> with_nan = {{0, std::nanf("")}, {1, 2}};
    CHECK_THROWS_WITH_AS(eval(softmax(with_nan, -1)), doctest::Contains("softmax produced NaN at [0, 0]"), numeric_error);
  }
  SUBCASE("gradients, in the reverse sweep") {
    const Tensor<double, 1> x = {1.0, 0.0, 4.0};
    // d sqrt(x) / dx = 1 / (2 sqrt(x)): infinite at 0.
    CHECK_THROWS_WITH_AS(grad([](const auto& v) { return sum(sqrt(v)); }, x), doctest::Contains("+infinity at [1] of a [3]"),
                         numeric_error);
    // Two same-shaped arguments: their gradients are written in one fused pass, checked too.
    const Tensor<double, 1> y = {1.0, 1.0, 1.0};
    CHECK_THROWS_WITH_AS(grad([](const auto& u, const auto& v) { return sum(sqrt(u) * v); }, x, y),
                         doctest::Contains("gradient produced +infinity at [1] of a [3] tensor"), numeric_error);
  }
  SUBCASE("optimizer updates") {
    auto model = nn::sequential(nn::Linear<float>(2, 2));
    auto grads = nn::sequential(nn::Linear<float>(2, 2));  // (a copy of model would share its buffers)
    nn::for_each_parameter(grads, [&](const std::string&, auto& g) { g.fill(1.0f); });
    optim::SGD<float> sgd({.lr = 0.1});
    sgd.step(model, grads);  // finite: fine
    // Written element by element: fill() is itself a checked assignment.
    nn::for_each_parameter(grads, [&](const std::string&, auto& g) {
      for (index_t i = 0; i < g.size(); ++i) g.data()[i] = std::numeric_limits<float>::infinity();
    });
    CHECK_THROWS_WITH_AS(sgd.step(model, grads), doctest::Contains("check_numerics: optimizer update produced -infinity"),
                         numeric_error);
  }
  SUBCASE("integer tensors always pass") {
    const Tensor<std::int64_t, 1> i = {1, 2, 3};
    CHECK(eval(i * std::int64_t(2))(2) == 6);
  }
}

TEST_CASE("check_numerics on one tensor checks whatever the mode, through views") {
  CHECK_FALSE(check_numerics_enabled());
  Tensor<double, 2> t = zeros<double>({3, 4});
  check_numerics(t, "weights");
  t(2, 1) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(check_numerics(t, "weights"), "check_numerics: weights produced +infinity at [2, 1] of a [3, 4] tensor",
                       numeric_error);
  // A transposed view: the index is the view's.
  CHECK_THROWS_WITH_AS(check_numerics(t.transpose(), "weights^T"), doctest::Contains("at [1, 2] of a [4, 3] tensor"), numeric_error);
}
