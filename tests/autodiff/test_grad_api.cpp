// The user-facing API of autodiff: value_and_grad, tuple arguments, parameter structs, and
// arguments left untouched (vjp, unused and repeated arguments and check_gradients are in
// test_grad_api_vjp.cpp).
#include <doctest/doctest.h>

#include <tuple>
#include <type_traits>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;

namespace {

/// A linear layer as a parameter struct: only the non-const parameters(), as users write it.
struct Linear {
  Tensor<double, 2> W;  // [out, in]
  Tensor<double, 1> b;  // [out]
  auto parameters() { return std::tie(W, b); }
};

}  // namespace

TEST_CASE("value_and_grad returns f's value and the same gradients as grad") {
  const auto a = sample({3, 4}, -1, 1, 61);
  const auto b = sample({4}, -1, 1, 62);
  const auto f = [](const auto& x, const auto& y) { return sum(tanh(x * y) + square(y)); };
  const auto [value, grads] = value_and_grad(f, a, b);
  static_assert(std::is_same_v<std::decay_t<decltype(value)>, Tensor<double, 0>>);
  const Tensor<double, 0> direct = f(a, b);
  CHECK(value() == direct());
  const auto [da, db] = grad(f, a, b);
  CHECK_TENSOR_EQ(std::get<0>(grads), da);
  CHECK_TENSOR_EQ(std::get<1>(grads), db);
}

TEST_CASE("tuple arguments, nested: gradients come back in the same structure") {
  const auto a = sample({2, 3}, -1, 1, 63);
  const auto b = sample({3}, -1, 1, 64);
  const auto c = sample({2, 3}, -1, 1, 65);
  const auto d = sample({2, 1}, -1, 1, 66);
  const auto as_tuples = [](const auto& abc, const auto& dd) {
    const auto& aa = std::get<0>(abc);
    const auto& bb = std::get<0>(std::get<1>(abc));
    const auto& cc = std::get<1>(std::get<1>(abc));
    return sum(sin(aa * bb) * cc + dd * cc);
  };
  const auto flat = [](const auto& aa, const auto& bb, const auto& cc, const auto& dd) {
    return sum(sin(aa * bb) * cc + dd * cc);
  };
  const auto [g_abc, g_d] = grad(as_tuples, std::make_tuple(a, std::make_tuple(b, c)), d);
  static_assert(std::is_same_v<std::decay_t<decltype(g_abc)>,
                               std::tuple<Tensor<double, 2>, std::tuple<Tensor<double, 1>, Tensor<double, 2>>>>);
  const auto [da, db, dc, dd] = grad(flat, a, b, c, d);
  CHECK_TENSOR_EQ(std::get<0>(g_abc), da);
  CHECK_TENSOR_EQ(std::get<0>(std::get<1>(g_abc)), db);
  CHECK_TENSOR_EQ(std::get<1>(std::get<1>(g_abc)), dc);
  CHECK_TENSOR_EQ(g_d, dd);
}

TEST_CASE("a parameter struct, a member used through a view (q.W.transpose())") {
  const auto x = sample({5, 3}, -1, 1, 67);
  const Linear layer{sample({4, 3}, -1, 1, 68), sample({4}, -1, 1, 69)};
  const auto [g] = grad([&](const auto& q) { return sum(square(tanh(matmul(x, q.W.transpose()) + q.b))); }, layer);
  static_assert(std::is_same_v<std::decay_t<decltype(g)>, Linear>);
  // The same loss with the tensors as ordinary arguments.
  const auto [dW, db] = grad([&](const auto& W, const auto& b) { return sum(square(tanh(matmul(x, transpose(W)) + b))); },
                             layer.W, layer.b);
  CHECK_TENSOR_NEAR(g.W, dW, 1e-14);
  CHECK_TENSOR_NEAR(g.b, db, 1e-14);
  // The gradient struct holds new tensors, not the parameters.
  CHECK(g.W.storage_id() != layer.W.storage_id());
  CHECK(g.b.storage_id() != layer.b.storage_id());
}

TEST_CASE("a parameter struct member used through a broadcast_to view is refused, not summed wrongly") {
  const auto x = sample({5, 3}, -1, 1, 71);
  const Linear layer{sample({4, 3}, -1, 1, 72), sample({4}, -1, 1, 73)};
  // Tensor::broadcast_to is a stride-0 view: its gradient would have to be written through
  // shared memory locations.
  const auto through_view = [&](const auto& q) { return sum(square(matmul(x, q.W.transpose()) + q.b.broadcast_to({5, 4}))); };
  CHECK_THROWS_WITH_AS(grad(through_view, layer), doctest::Contains("broadcast inside the expression"), tessera::value_error);
  // Broadcasting inside the expression (free function, lazy) is the supported way.
  const auto inside = [&](const auto& q) { return sum(square(matmul(x, q.W.transpose()) + broadcast_to(q.b, Shape<2>{5, 4}))); };
  const auto [g] = grad(inside, layer);
  const auto [dW, db] = grad([&](const auto& W, const auto& b) { return sum(square(matmul(x, transpose(W)) + b)); }, layer.W, layer.b);
  CHECK_TENSOR_NEAR(g.W, dW, 1e-14);
  CHECK_TENSOR_NEAR(g.b, db, 1e-14);
}

TEST_CASE("a parameter struct next to a tensor argument, a member used twice") {
  const auto x = sample({5, 3}, -1, 1, 70);
  const Linear layer{sample({4, 3}, -1, 1, 71), sample({4}, -1, 1, 72)};
  const auto [g, dx] = grad(
      [](const auto& q, const auto& in) { return sum(square(matmul(in, q.W.transpose()) + q.b)) + sum(q.W * q.W) * 0.5; },
      layer, x);
  const auto [dW, db, dx2] = grad(
      [](const auto& W, const auto& b, const auto& in) {
        return sum(square(matmul(in, transpose(W)) + b)) + sum(W * W) * 0.5;
      },
      layer.W, layer.b, x);
  CHECK_TENSOR_NEAR(g.W, dW, 1e-14);
  CHECK_TENSOR_NEAR(g.b, db, 1e-14);
  CHECK_TENSOR_NEAR(dx, dx2, 1e-14);
}

namespace {
/// Two weights and one that the loss below never reads.
struct Pair {
  Tensor<double, 2> A;
  Tensor<double, 2> B;
  Tensor<double, 1> unused;
  auto parameters() { return std::tie(A, B, unused); }
};
}  // namespace

TEST_CASE("a parameter struct: shared adjoint buffers, members used twice or not at all") {
  // A matmul adjoint becomes a gradient without a copy (see add_if_same_storage); these are the
  // cases where that buffer must not be shared or written in place.
  const auto x = sample({5, 4}, -1, 1, 73);
  const auto y = sample({4, 3}, -1, 1, 74);
  const auto w = sample({5, 3}, -1, 1, 75);
  const Pair pair{sample({5, 4}, -1, 1, 76), sample({5, 4}, -1, 1, 77), sample({2}, -1, 1, 78)};

  // A + B: both receive the same matmul node as adjoint, hence the same buffer.
  const auto [g] = grad([&](const auto& q) { return sum(matmul(q.A + q.B, y) * w); }, pair);
  const auto [dA, dB] = grad([&](const auto& a, const auto& b) { return sum(matmul(a + b, y) * w); }, pair.A, pair.B);
  CHECK_TENSOR_NEAR(g.A, dA, 1e-14);
  CHECK_TENSOR_NEAR(g.B, dB, 1e-14);
  CHECK(g.A.storage_id() != g.B.storage_id());
  const Tensor<double, 2> b_before = g.B.clone();
  auto gA = g.A;
  gA *= 2.0;  // gradient clipping scales in place: the other gradient must not change
  CHECK_TENSOR_EQ(g.B, b_before);
  // Never read: zeros of its shape.
  CHECK(g.unused.shape() == pair.unused.shape());
  CHECK_TENSOR_EQ(g.unused, (Tensor<double, 1>{0.0, 0.0}));

  // A used by two matmuls (tied weights), then whole, then through a view: the contributions add up.
  const auto tied = [&](const auto& q) {
    return sum(matmul(q.A, y) * w) + sum(matmul(transpose(q.A), x)) * 0.5 + sum(q.A * q.A) + sum(q.A.transpose() * 3.0);
  };
  const auto tied_flat = [&](const auto& a) {
    return sum(matmul(a, y) * w) + sum(matmul(transpose(a), x)) * 0.5 + sum(a * a) + sum(transpose(a) * 3.0);
  };
  const auto [gt] = grad(tied, pair);
  const auto [dt] = grad(tied_flat, pair.A);
  CHECK_TENSOR_NEAR(gt.A, dt, 1e-13);
  const Tensor<double, 2> zero_b = zeros_like(pair.B);
  CHECK_TENSOR_EQ(gt.B, zero_b);
}

TEST_CASE("grad leaves its arguments unchanged") {
  const auto a = sample({3, 4}, -1, 1, 81);
  const auto b = sample({4}, -1, 1, 82);
  Linear layer{sample({2, 4}, -1, 1, 83), sample({2}, -1, 1, 84)};
  const auto a0 = a.clone(), w0 = layer.W.clone();
  const auto b0 = b.clone(), bias0 = layer.b.clone();
  const double* a_data = a.data();
  const auto f = [](const auto& x, const auto& y) { return sum(square(x * y)); };
  const auto [da, db] = grad(f, a, b);
  const auto [value, g] = value_and_grad([&](const auto& q) { return sum(square(matmul(a, q.W.transpose()) + q.b)); }, layer);
  (void)value;
  CHECK(a.data() == a_data);
  CHECK_TENSOR_EQ(a, a0);
  CHECK_TENSOR_EQ(b, b0);
  CHECK_TENSOR_EQ(layer.W, w0);
  CHECK_TENSOR_EQ(layer.b, bias0);
  // The gradients are not aliases of the arguments either.
  CHECK(da.storage_id() != a.storage_id());
  CHECK(std::get<0>(g).W.storage_id() != layer.W.storage_id());
}
