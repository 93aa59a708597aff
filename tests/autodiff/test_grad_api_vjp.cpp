// The user-facing API of autodiff, continued: vjp, a leaf used several times, an argument f
// ignores, and check_gradients catching a deliberately wrong grad_rule of a custom op.
#include <doctest/doctest.h>

#include <string>
#include <type_traits>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;

namespace {

/// x * x with a deliberately wrong derivative (2x (1 + x^2) instead of 2x), and the same op with
/// the right one: check_gradients must tell them apart.
struct SquareWrongGrad {
  static constexpr const char* name = "square_wrong_grad";
  template <class T>
  T operator()(T x) const {
    return x * x;
  }
};
struct SquareRightGrad {
  static constexpr const char* name = "square_right_grad";
  template <class T>
  T operator()(T x) const {
    return x * x;
  }
};
template <class Op, class A>
Unary<Op, A> custom(const A& a) {
  return Unary<Op, A>(Op{}, a);
}

}  // namespace

template <>
struct tessera::grad_rule<SquareWrongGrad> {
  template <class X, class G>
  static auto input_adjoint(const SquareWrongGrad&, const X& x, const G& g) {
    return g * (x * 2.0 * (1.0 + x * x));
  }
};
template <>
struct tessera::grad_rule<SquareRightGrad> {
  template <class X, class G>
  static auto input_adjoint(const SquareRightGrad&, const X& x, const G& g) {
    return g * (x * 2.0);
  }
};

TEST_CASE("vjp: a non-scalar output, its pullback called twice") {
  const auto x = sample({2, 4}, -1, 1, 73);
  const auto w = sample({4, 3}, -1, 1, 74);
  const auto f = [](const auto& a, const auto& b) { return tanh(matmul(a, b)); };
  auto [out, pullback] = vjp(f, x, w);
  static_assert(std::is_same_v<std::decay_t<decltype(out)>, Tensor<double, 2>>);
  const Tensor<double, 2> expected_out = tanh(matmul(x, w));
  CHECK_TENSOR_EQ(out, expected_out);

  const auto c1 = sample({2, 3}, -2, 2, 75);
  const auto c2 = sample({2, 3}, -2, 2, 76);
  const auto [dx1, dw1] = pullback(c1);
  const auto [dx2, dw2] = pullback(c2);
  // A vjp is the gradient of sum(f * cotangent).
  const auto [ex1, ew1] = grad([&](const auto& a, const auto& b) { return sum(f(a, b) * c1); }, x, w);
  const auto [ex2, ew2] = grad([&](const auto& a, const auto& b) { return sum(f(a, b) * c2); }, x, w);
  CHECK_TENSOR_NEAR(dx1, ex1, 1e-14);
  CHECK_TENSOR_NEAR(dw1, ew1, 1e-14);
  CHECK_TENSOR_NEAR(dx2, ex2, 1e-14);
  CHECK_TENSOR_NEAR(dw2, ew2, 1e-14);
  // Calling it again with the first cotangent repeats the first result exactly.
  const auto [dx3, dw3] = pullback(c1);
  CHECK_TENSOR_EQ(dx3, dx1);
  CHECK_TENSOR_EQ(dw3, dw1);
}

TEST_CASE("vjp: a cotangent of the wrong shape throws shape_error") {
  const auto x = sample({2, 4}, -1, 1, 77);
  auto [out, pullback] = vjp([](const auto& a) { return exp(a) * 2.0; }, x);
  CHECK(out.shape() == x.shape());
  CHECK_THROWS_AS(pullback(zeros<double>(4, 2)), shape_error);
  CHECK_THROWS_AS(pullback(zeros<double>(2, 1)), shape_error);
  CHECK_NOTHROW(pullback(ones<double>(2, 4)));
}

TEST_CASE("vjp: several outputs, one cotangent each") {
  const auto x = sample({2, 4}, -1, 1, 78);
  const auto w = sample({4, 3}, -1, 1, 79);
  const auto f = [](const auto& a, const auto& b) {
    auto m = matmul(a, b);
    return std::make_tuple(tanh(m), sum(m * m), a * 2.0);
  };
  auto [out, pullback] = vjp(f, x, w);
  static_assert(std::is_same_v<std::decay_t<decltype(out)>, std::tuple<Tensor<double, 2>, Tensor<double, 0>, Tensor<double, 2>>>);
  const Tensor<double, 2> expected_tanh = tanh(matmul(x, w));
  CHECK_TENSOR_EQ(std::get<0>(out), expected_tanh);
  const auto c0 = sample({2, 3}, -2, 2, 80);
  const Tensor<double, 0> c1(0.75);
  const auto c2 = sample({2, 4}, -2, 2, 81);
  const auto [dx, dw] = pullback(std::make_tuple(c0, c1, c2));
  // The gradient of the cotangent-weighted sum of the outputs.
  const auto [ex, ew] = grad(
      [&](const auto& a, const auto& b) {
        auto m = matmul(a, b);
        return sum(tanh(m) * c0) + sum(m * m) * 0.75 + sum(a * 2.0 * c2);
      },
      x, w);
  CHECK_TENSOR_NEAR(dx, ex, 1e-14);
  CHECK_TENSOR_NEAR(dw, ew, 1e-14);
  CHECK_THROWS_WITH_AS(pullback(std::make_tuple(c0, c1, zeros<double>(2, 3))),
                       "vjp: cotangent of shape [2, 3] for an output of shape [2, 4]", shape_error);
}

TEST_CASE("a leaf used in several places gets the sum of its uses") {
  const auto x = sample({3, 2}, -1, 1, 78);
  // d/dx sum(x^3 + x sin(x)) = 3 x^2 + sin(x) + x cos(x)
  const auto [g] = grad([](const auto& a) { return sum(a * a * a + sin(a) * a); }, x);
  const Tensor<double, 2> expected = x * x * 3.0 + sin(x) + x * cos(x);
  CHECK_TENSOR_NEAR(g, expected, 1e-14);
}

TEST_CASE("an argument f ignores gets zeros of its shape") {
  const auto a = sample({3, 2}, -1, 1, 79);
  const auto b = sample({4, 1, 5}, -1, 1, 80);
  const auto [da, db] = grad([](const auto& x, const auto&) { return sum(exp(x)); }, a, b);
  const Tensor<double, 2> expected_da = exp(a);
  CHECK_TENSOR_EQ(da, expected_da);
  CHECK_TENSOR_EQ(db, zeros_like(b));
}

TEST_CASE("check_gradients catches a wrong grad_rule and says where") {
  const Tensor<double, 2> a = {{0.2, -0.4, 0.6}, {0.1, 0.3, -0.5}};
  const Tensor<double, 2> b = {{0.5, -0.8, 0.3}, {1.7, 0.9, -0.4}};  // largest |b| at flat index 3
  // The same function with the right rule passes: the failure below is the rule's.
  const auto right = check_gradients([](const auto& x, const auto& y) { return sum(x * x) + sum(custom<SquareRightGrad>(y)); },
                                     a, b, grad_test::tight());
  CHECK_MESSAGE(right.passed, right.message());

  const auto wrong = check_gradients([](const auto& x, const auto& y) { return sum(x * x) + sum(custom<SquareWrongGrad>(y)); },
                                     a, b, grad_test::tight());
  CHECK_FALSE(wrong.passed);
  // The relative error 2 |y|^3 / (2 |y| (1 + y^2)) is largest where |y| is: argument 1, element 3.
  CHECK(wrong.argument == 1);
  CHECK(wrong.element == 3);
  CHECK(wrong.analytic == doctest::Approx(2 * 1.7 * (1 + 1.7 * 1.7)).epsilon(1e-12));
  CHECK(wrong.numeric == doctest::Approx(2 * 1.7).epsilon(1e-8));
  CHECK(wrong.max_error == doctest::Approx(1.7 * 1.7 / (1 + 1.7 * 1.7)).epsilon(1e-8));
  const std::string message = wrong.message();
  CAPTURE(message);
  CHECK(message.find("FAILED") != std::string::npos);
  CHECK(message.find("argument 1") != std::string::npos);
  CHECK(message.find("element 3") != std::string::npos);
}
