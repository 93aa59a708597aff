// Gradient checks of matmul in every rank combination autodiff supports: matrix x matrix,
// vector x matrix, matrix x vector, vector x vector, batched, and batches broadcast against a
// matrix on either side or against each other.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;
using grad_test::tight;

// The output is weighted by a fixed tensor of its shape so every element gets its own adjoint.
TEST_CASE("matrix x matrix") {
  const auto a = sample({3, 4}, -1, 1, 1);
  const auto b = sample({4, 5}, -1, 1, 2);
  const auto w = sample({3, 5}, -2, 2, 3);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(matmul(x, y) * w); }, a, b, tight());
}

TEST_CASE("matrix x matrix by hand: dA = G B^T, dB = A^T G") {
  const auto a = sample({3, 4}, -1, 1, 1);
  const auto b = sample({4, 5}, -1, 1, 2);
  const auto w = sample({3, 5}, -2, 2, 3);
  const auto [da, db] = grad([&](const auto& x, const auto& y) { return sum(matmul(x, y) * w); }, a, b);
  const Tensor<double, 2> expected_da = matmul(w, b.transpose());
  const Tensor<double, 2> expected_db = matmul(a.transpose(), w);
  CHECK_TENSOR_NEAR(da, expected_da, 1e-14);
  CHECK_TENSOR_NEAR(db, expected_db, 1e-14);
}

TEST_CASE("matrix x matrix summed directly: the uniform adjoint gives row and column sums") {
  // sum and mean hand matmul one value u everywhere, so dA = u 1 B^T and dB = u A^T 1 are computed
  // from row and column sums of the operands instead of two GEMMs; check both against the GEMMs.
  const auto a = sample({3, 4}, -1, 1, 15);
  const auto b = sample({4, 5}, -1, 1, 16);
  const Tensor<double, 2> ones = full<double>({3, 5}, 1.0);
  const auto [da, db] = grad([](const auto& x, const auto& y) { return sum(matmul(x, y)); }, a, b);
  const Tensor<double, 2> gemm_da = matmul(ones, b.transpose());
  const Tensor<double, 2> gemm_db = matmul(a.transpose(), ones);
  CHECK_TENSOR_NEAR(da, gemm_da, 1e-14);
  CHECK_TENSOR_NEAR(db, gemm_db, 1e-14);
  const auto [ma, mb] = grad([](const auto& x, const auto& y) { return mean(matmul(x, y)) * 3.0; }, a, b);
  const Tensor<double, 2> scaled_da = gemm_da * (3.0 / 15.0);
  const Tensor<double, 2> scaled_db = gemm_db * (3.0 / 15.0);
  CHECK_TENSOR_NEAR(ma, scaled_da, 1e-14);
  CHECK_TENSOR_NEAR(mb, scaled_db, 1e-14);
  GRAD_CHECK([](const auto& x, const auto& y) { return sum(matmul(transpose(x), y)) * 2.0; }, sample({4, 3}, -1, 1, 17), b,
             tight());
  // Through a second grad: the rule's sums are differentiable like everything else.
  GRAD_CHECK(
      [&](const auto& x) {
        const auto [dx, dy] = grad([](const auto& p, const auto& q) { return sum(matmul(p, q)); }, x, b);
        return sum(dx * x * x);
      },
      a, tight());
}

TEST_CASE("vector x matrix") {
  const auto v = sample({4}, -1, 1, 4);
  const auto b = sample({4, 5}, -1, 1, 5);
  const auto w = sample({5}, -2, 2, 6);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(matmul(x, y) * w); }, v, b, tight());
}

TEST_CASE("matrix x vector") {
  const auto a = sample({3, 4}, -1, 1, 7);
  const auto v = sample({4}, -1, 1, 8);
  const auto w = sample({3}, -2, 2, 9);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(matmul(x, y) * w); }, a, v, tight());
}

TEST_CASE("vector x vector (a rank-0 result)") {
  const auto u = sample({5}, -1, 1, 10);
  const auto v = sample({5}, -1, 1, 11);
  GRAD_CHECK([](const auto& x, const auto& y) { return square(matmul(x, y)); }, u, v, tight());
}

TEST_CASE("batched [b, m, k] x [b, k, n]") {
  const auto a = sample({2, 3, 4}, -1, 1, 12);
  const auto b = sample({2, 4, 5}, -1, 1, 13);
  const auto w = sample({2, 3, 5}, -2, 2, 14);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(matmul(x, y) * w); }, a, b, tight());
}

TEST_CASE("batch broadcast [b, m, k] x [k, n]: the matrix's gradient sums over the batch") {
  const auto a = sample({2, 3, 4}, -1, 1, 15);
  const auto b = sample({4, 5}, -1, 1, 16);
  const auto w = sample({2, 3, 5}, -2, 2, 17);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(matmul(x, y) * w); }, a, b, tight());
}

TEST_CASE("[b1, b2, m, k] x [k, n] of a transposed view: the matrix's gradient is one GEMM over the stacked rows") {
  const auto a = sample({3, 2, 3, 4}, -1, 1, 40);
  const auto b = sample({4, 5}, -1, 1, 41);
  const auto w = sample({2, 3, 3, 5}, -2, 2, 42);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(matmul(transpose(x, 0, 1), y) * w); }, a, b, tight());
  // Second order through the reshaped form.
  GRAD_CHECK([&](const auto& x, const auto& y) {
    auto [gx, gy] = grad([&](const auto& p, const auto& q) { return sum(square(matmul(p, q))); }, x, y);
    return sum(gy * gy) + sum(sin(gx));
  }, a, b, tight());
}

TEST_CASE("batch broadcast [m, k] x [b, k, n]") {
  const auto a = sample({3, 4}, -1, 1, 18);
  const auto b = sample({2, 4, 5}, -1, 1, 19);
  const auto w = sample({2, 3, 5}, -2, 2, 20);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(matmul(x, y) * w); }, a, b, tight());
}

TEST_CASE("batch broadcast against each other [2, 1, m, k] x [3, k, n]") {
  const auto a = sample({2, 1, 3, 4}, -1, 1, 21);
  const auto b = sample({3, 4, 5}, -1, 1, 22);
  const auto w = sample({2, 3, 3, 5}, -2, 2, 23);
  GRAD_CHECK([&](const auto& x, const auto& y) { return sum(matmul(x, y) * w); }, a, b, tight());
}
