// Lazy slice and concat of expressions: values, views without copies, gradients, bad arguments.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;

TEST_CASE("slice of an expression equals the slice of its value, on every axis and with Python bounds") {
  const auto a = sample({3, 4, 5}, -1, 1, 1);
  const auto b = sample({3, 4, 5}, -1, 1, 2);
  for (index_t axis = 0; axis < 3; ++axis) {
    const Tensor<double, 3> sum_ab = a + b;
    const Tensor<double, 3> lazy = slice(a + b, axis, 1, 3);
    CHECK_TENSOR_EQ(lazy, sum_ab.slice(axis, 1, 3).contiguous());
  }
  const Tensor<double, 3> tail = slice(exp(a), -1, -2, 100);
  CHECK(tail.shape() == Shape<3>{3, 4, 2});
  const Tensor<double, 3> expected_tail = exp(a.slice(2, 3, 5));
  CHECK_TENSOR_NEAR(tail, expected_tail, 1e-15);  // packet and scalar exp may differ in the last bit
  // Slicing a tensor gives its view; slicing a matmul reads its buffer.
  auto v = slice(a, 1, 0, 2);
  CHECK(v.data() == a.data());
  const auto m = sample({4, 6}, -1, 1, 3);
  const Tensor<double, 2> mm = matmul(m, transpose(m));
  const Tensor<double, 2> mm_slice = slice(matmul(m, transpose(m)), 1, 2, 4) * 1.0;
  CHECK_TENSOR_NEAR(mm_slice, mm.slice(1, 2, 4).contiguous(), 1e-15);
  CHECK_THROWS_WITH(slice(a + b, 3, 0, 1), "slice: axis 3 is out of range for rank 3");
}

TEST_CASE("slice's gradient lands in zeros of the input's shape") {
  const auto a = sample({3, 6}, -1, 1, 4);
  auto f = [](const auto& x) {
    return sum(square(slice(x, 1, 0, 2)) * 3.0) + sum(sin(slice(x * 2.0, 1, 4, 6))) + sum(slice(exp(x), 0, 1, 2));
  };
  GRAD_CHECK(f, a, grad_test::tight());
  const auto [g] = grad([](const auto& x) { return sum(slice(x, 1, 2, 3)); }, a);
  auto e = zeros<double>(Shape<2>{3, 6});
  e.slice(1, 2, 3).fill(1.0);
  CHECK_TENSOR_EQ(g, e);
}

TEST_CASE("concat joins expressions along an axis and splits the gradient back") {
  const auto a = sample({2, 3}, -1, 1, 5);
  const auto b = sample({2, 4}, -1, 1, 6);
  const Tensor<double, 2> joined = concat(std::make_tuple(a * 2.0, exp(b)), 1);
  const Tensor<double, 2> a2 = a * 2.0, eb = exp(b);
  CHECK_TENSOR_EQ(joined, tessera::concat({a2, eb}, 1));
  const Tensor<double, 2> rows = concat(std::make_tuple(a, a * 3.0, a), -2);
  CHECK(rows.shape() == Shape<2>{6, 3});
  auto f = [](const auto& x, const auto& y) {
    auto j = concat(std::make_tuple(x, tanh(y)), 1);
    return sum(square(j) * j) + sum(slice(j, 1, 2, 5) * 0.5);
  };
  GRAD_CHECK(f, a, b, grad_test::tight());
  CHECK_THROWS_WITH_AS(concat(std::make_tuple(a, b), 0),
                       "concat: [2, 3] and [2, 4] differ at axis 1 (joining along axis 0)", shape_error);
}
