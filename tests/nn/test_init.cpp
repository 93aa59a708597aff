// Initializers: bounds and standard deviations from PyTorch's formulas, seeding, orthogonality.
#include <doctest/doctest.h>

#include <cmath>

#include <tessera/tessera.hpp>

using namespace tessera;

namespace {
double stddev(const Tensor<double, 2>& t) { return std::sqrt(Tensor<double, 0>(var(t))()); }
double max_abs(const Tensor<double, 2>& t) { return Tensor<double, 0>(max(abs(t)))(); }
}  // namespace

TEST_CASE("fans follow PyTorch: [out, in, k...] gives fan_in = in * k, fan_out = out * k") {
  const Tensor<float, 4> conv(Shape<4>{32, 16, 3, 3});
  const auto [in, out] = nn::init::fans(conv, "test");
  CHECK(in == 16 * 9);
  CHECK(out == 32 * 9);
  const Tensor<float, 1> bias(Shape<1>{4});
  CHECK_THROWS_AS(nn::init::fans(bias, "xavier_uniform_"), value_error);
}

TEST_CASE("Xavier and Kaiming: bounds and standard deviations") {
  Generator gen(1);
  Tensor<double, 2> w(Shape<2>{400, 600});
  nn::init::xavier_uniform_(w, gen);
  const double a = std::sqrt(6.0 / 1000.0);
  CHECK(max_abs(w) <= a);
  CHECK(max_abs(w) > 0.99 * a);
  CHECK(stddev(w) == doctest::Approx(a / std::sqrt(3.0)).epsilon(0.01));

  nn::init::xavier_normal_(w, gen, 2.0);
  CHECK(stddev(w) == doctest::Approx(2.0 * std::sqrt(2.0 / 1000.0)).epsilon(0.01));

  nn::init::kaiming_uniform_(w, gen, {.a = 0, .mode = nn::init::FanMode::fan_in, .nonlinearity = nn::init::Nonlinearity::relu});
  const double b = std::sqrt(2.0) * std::sqrt(3.0 / 600.0);
  CHECK(max_abs(w) <= b);
  CHECK(max_abs(w) > 0.99 * b);

  nn::init::kaiming_normal_(w, gen, {.a = 0, .mode = nn::init::FanMode::fan_out, .nonlinearity = nn::init::Nonlinearity::relu});
  CHECK(stddev(w) == doctest::Approx(std::sqrt(2.0 / 400.0)).epsilon(0.01));

  // PyTorch's default (leaky_relu with a = 0): gain sqrt(2).
  nn::init::kaiming_normal_(w, gen);
  CHECK(stddev(w) == doctest::Approx(std::sqrt(2.0 / 600.0)).epsilon(0.01));
  CHECK(nn::init::calculate_gain(nn::init::Nonlinearity::tanh) == doctest::Approx(5.0 / 3.0));
  CHECK(nn::init::calculate_gain(nn::init::Nonlinearity::leaky_relu, 0.2) == doctest::Approx(std::sqrt(2.0 / 1.04)));
}

TEST_CASE("initializers are seeded: the same seed gives the same tensor") {
  Tensor<float, 2> a(Shape<2>{8, 8}), b(Shape<2>{8, 8});
  Generator g1(42), g2(42);
  nn::init::kaiming_uniform_(a, g1);
  nn::init::kaiming_uniform_(b, g2);
  CHECK(Tensor<bool, 0>(all(a == b))());
  nn::init::kaiming_uniform_(b, g2);
  CHECK(Tensor<bool, 0>(any(a != b))());
}

TEST_CASE("constants") {
  Tensor<float, 2> w(Shape<2>{2, 3});
  nn::init::constant_(w, 0.5);
  CHECK(Tensor<bool, 0>(all(w == 0.5f))());
  nn::init::zeros_(w);
  CHECK(Tensor<bool, 0>(all(w == 0.0f))());
  nn::init::ones_(w);
  CHECK(Tensor<bool, 0>(all(w == 1.0f))());
}

TEST_CASE("orthogonal: W W^T = gain^2 I for wide, W^T W = gain^2 I for tall; conv kernels flattened") {
  Generator gen(9);
  Tensor<double, 2> wide(Shape<2>{4, 10});
  nn::init::orthogonal_(wide, gen, 1.5);
  const Tensor<double, 2> wwt = matmul(wide, transpose(wide));
  const Tensor<double, 2> expected = eye<double>(4) * 2.25;
  CHECK(Tensor<double, 0>(max(abs(wwt - expected)))() < 1e-12);

  Tensor<double, 2> tall(Shape<2>{10, 4});
  nn::init::orthogonal_(tall, gen);
  const Tensor<double, 2> wtw = matmul(transpose(tall), tall);
  CHECK(Tensor<double, 0>(max(abs(wtw - eye<double>(4))))() < 1e-12);

  Tensor<double, 4> kernel(Shape<4>{6, 2, 3, 3});
  nn::init::orthogonal_(kernel, gen);
  const auto k2 = kernel.reshape({6, 18});
  const Tensor<double, 2> kkt = matmul(k2, transpose(k2));
  CHECK(Tensor<double, 0>(max(abs(kkt - eye<double>(6))))() < 1e-12);
}
