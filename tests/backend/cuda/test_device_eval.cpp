// The CUDA kernels' per-element code, run on the CPU: device evaluators built from host
// expressions (to_device), the flat, vector and strided element bodies, multi-output passes and
// the reduction index arithmetic. Each result is compared with tessera's CPU evaluation of the
// same expression. backend/cuda/device_eval.hpp needs no CUDA toolkit.
#include <doctest/doctest.h>

#include <tessera/backend/cuda/device_eval.hpp>
#include <tessera/tessera.hpp>

#include <cmath>
#include <tuple>
#include <vector>

using namespace tessera;
namespace gpu = tessera::detail::gpu;

namespace {

enum class Body { flat, vector, strided };

/// Evaluates `expr` into a new tensor of `shape` the way a kernel of the given body would.
template <class T, std::size_t R, class E>
Tensor<T, R> run_pass(const E& expr, const Shape<R>& shape, Body body) {
  auto out = Tensor<T, R>::uninitialized(shape);
  std::vector<Shape<R>> operands{out.strides()};
  detail::visit_leaves(expr, shape, [&](const void*, const Shape<R>& st) { operands.push_back(st); });
  const detail::IterPlan plan = detail::make_plan(shape, operands);
  const auto host_ev = detail::make_evaluator(expr, shape, plan);
  gpu::Outputs<T, 1> o{{out.data()}, {}};
  plan.map(out.strides(), o.strides[0]);
  const auto pack = gpu::make_pack(gpu::to_device(host_ev));
  const index_t n = out.size();
  constexpr int V = gpu::vector_width_v<T>;
  switch (body) {
    case Body::flat:
      REQUIRE(plan.rank == 1);
      for (index_t i = 0; i < n; ++i) gpu::store_flat(o, pack, i);
      break;
    case Body::vector: {
      REQUIRE(plan.rank == 1);
      REQUIRE(pack.loads_vectors(V));
      REQUIRE(o.stores_vectors(V));
      const index_t groups = n / V;
      for (index_t g = 0; g < groups; ++g) gpu::store_vector<V>(o, pack, g * V);
      for (index_t i = groups * V; i < n; ++i) gpu::store_flat(o, pack, i);
      break;
    }
    case Body::strided: {
      const gpu::PassShape ps = gpu::pass_shape(plan);
      index_t idx[max_rank];
      for (index_t i = 0; i < n; ++i) {
        gpu::unravel(i, ps, idx);
        gpu::store_at(o, pack, idx, ps.rank);
      }
      break;
    }
  }
  return out;
}

template <class T, std::size_t R>
void check_equal(const Tensor<T, R>& got, const Tensor<T, R>& want) {
  REQUIRE(got.shape() == want.shape());
  const auto g = got.contiguous(), w = want.contiguous();
  for (index_t i = 0; i < g.size(); ++i) {
    if constexpr (std::is_floating_point_v<T>) {
      CHECK(g.data()[i] == doctest::Approx(w.data()[i]).epsilon(1e-6));
    } else {
      CHECK(g.data()[i] == w.data()[i]);
    }
  }
}

Tensor<float, 2> ramp(index_t rows, index_t cols, float scale = 0.37f) {
  Tensor<float, 2> t(rows, cols);
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) t(i, j) = std::sin(scale * static_cast<float>(i * cols + j) + 0.5f) * 2.0f;
  return t;
}

}  // namespace

TEST_CASE("a dense chain runs flat and with vector loads; the tail after the last full vector too") {
  // 7 x 13 = 91 elements: 22 float4 groups and a tail of 3.
  const auto a = ramp(7, 13), b = ramp(7, 13, 0.11f), c = ramp(7, 13, 0.05f);
  const auto expr = a * b + c * 2.0f - tanh(a) / (exp(b) + 1.0f);
  const Tensor<float, 2> want = expr;
  check_equal(run_pass<float>(expr, a.shape(), Body::flat), want);
  check_equal(run_pass<float>(expr, a.shape(), Body::vector), want);
  check_equal(run_pass<float>(expr, a.shape(), Body::strided), want);
}

TEST_CASE("double: two elements per vector") {
  Tensor<double, 1> x(17);
  for (index_t i = 0; i < 17; ++i) x(i) = 0.25 * static_cast<double>(i) - 2.0;
  const auto expr = sigmoid(x) * pow(abs(x) + 1.0, 1.5) + maximum(x, 0.5);
  const Tensor<double, 1> want = expr;
  check_equal(run_pass<double>(expr, x.shape(), Body::vector), want);
}

TEST_CASE("broadcasting reads through zero strides: row, column and scalar operands") {
  const auto m = ramp(5, 6);
  const auto row = ramp(1, 6, 0.9f);
  const auto col = ramp(5, 1, 0.3f);
  const Tensor<float, 0> s(3.0f);
  const auto expr = m * row - col + s;
  const Tensor<float, 2> want = expr;
  check_equal(run_pass<float>(expr, m.shape(), Body::strided), want);
  // A row broadcast over a dense matrix does not coalesce to rank 1: only the strided body applies.
  std::vector<Shape<2>> operands{m.strides(), broadcast_strides(row.shape(), row.strides(), m.shape())};
  CHECK(detail::make_plan(m.shape(), operands).rank == 2);
}

TEST_CASE("a broadcast scalar leaf loads vectors; a strided leaf does not") {
  const auto m = ramp(4, 8);
  const auto one = ramp(1, 1, 0.5f);
  const auto expr = m + one;  // `one` is read with stride 0
  const Tensor<float, 2> want = expr;
  check_equal(run_pass<float>(expr, m.shape(), Body::vector), want);

  const auto wide = ramp(4, 16);
  const auto every_other = wide.slice(1, 0, 16, 2);  // stride 2 along the row
  std::vector<Shape<2>> operands{contiguous_strides(every_other.shape()), every_other.strides()};
  const auto plan = detail::make_plan(every_other.shape(), operands);
  const auto dev = gpu::to_device(detail::make_evaluator(every_other * 2.0f, every_other.shape(), plan));
  CHECK_FALSE(dev.loads_vectors(4));
  check_equal(run_pass<float>(every_other * 2.0f, every_other.shape(), Body::strided), Tensor<float, 2>(every_other * 2.0f));
}

TEST_CASE("a misaligned contiguous leaf is refused for vector loads") {
  const auto m = ramp(1, 33);
  const auto shifted = m.slice(1, 1, 33);  // starts 4 bytes into the buffer
  std::vector<Shape<2>> operands{contiguous_strides(shifted.shape()), shifted.strides()};
  const auto plan = detail::make_plan(shifted.shape(), operands);
  REQUIRE(plan.rank == 1);
  const auto dev = gpu::to_device(detail::make_evaluator(shifted + 1.0f, shifted.shape(), plan));
  CHECK_FALSE(dev.loads_vectors(4));
  CHECK(dev.loads_vectors(1));
  check_equal(run_pass<float>(shifted + 1.0f, shifted.shape(), Body::flat), Tensor<float, 2>(shifted + 1.0f));
}

TEST_CASE("transposed operands, where with a bool condition, casts") {
  const auto a = ramp(6, 4);
  const auto b = ramp(4, 6, 0.2f);
  const auto expr = where(transpose(b) > a, a * 2.0f, transpose(b)) + cast<float>(a > 0.0f);
  const Tensor<float, 2> want = expr;
  check_equal(run_pass<float>(expr, a.shape(), Body::strided), want);

  const auto dense = where(a > 0.5f, a, 0.0f) * cast<float>(logical_not(a < -1.0f));
  check_equal(run_pass<float>(dense, a.shape(), Body::vector), Tensor<float, 2>(dense));
  const auto flags = a > 0.0f;  // bool output: 16 per vector
  Tensor<float, 2> big = ramp(16, 16);  // 1 KiB: 64-byte aligned, as 16 floats per vector need
  check_equal(run_pass<bool>(big > 0.0f, big.shape(), Body::vector), Tensor<bool, 2>(big > 0.0f));
  check_equal(run_pass<bool>(flags, a.shape(), Body::flat), Tensor<bool, 2>(flags));
}

TEST_CASE("several outputs in one pass, as autodiff and the optimizers write them") {
  const auto a = ramp(3, 10), b = ramp(3, 10, 0.7f);
  auto o1 = Tensor<float, 2>::uninitialized(a.shape());
  auto o2 = Tensor<float, 2>::uninitialized(a.shape());
  auto o3 = Tensor<float, 2>::uninitialized(a.shape());
  const auto e1 = a + b;
  const auto e2 = a * b;
  const auto e3 = relu(a - b);
  std::vector<Shape<2>> operands{o1.strides()};
  auto collect = [&](const auto& e) {
    detail::visit_leaves(e, a.shape(), [&](const void*, const Shape<2>& st) { operands.push_back(st); });
  };
  collect(e1);
  collect(e2);
  collect(e3);
  const auto plan = detail::make_plan(a.shape(), operands);
  REQUIRE(plan.rank == 1);
  const auto h1 = detail::make_evaluator(e1, a.shape(), plan);
  const auto h2 = detail::make_evaluator(e2, a.shape(), plan);
  const auto h3 = detail::make_evaluator(e3, a.shape(), plan);
  const auto pack = gpu::make_pack(gpu::to_device(h1), gpu::to_device(h2), gpu::to_device(h3));
  gpu::Outputs<float, 3> out{{o1.data(), o2.data(), o3.data()}, {}};
  for (int k = 0; k < 3; ++k) out.strides[k][0] = 1;
  REQUIRE(pack.loads_vectors(4));
  REQUIRE(out.stores_vectors(4));
  for (index_t g = 0; g < 7; ++g) gpu::store_vector<4>(out, pack, g * 4);
  for (index_t i = 28; i < 30; ++i) gpu::store_flat(out, pack, i);
  check_equal(o1, Tensor<float, 2>(e1));
  check_equal(o2, Tensor<float, 2>(e2));
  check_equal(o3, Tensor<float, 2>(e3));
}

namespace {
/// A reduction computed with the kernels' index arithmetic (reduce_shape, reduce_index, at).
template <std::size_t R, class E>
std::vector<float> reduce_like_kernel(const E& expr, const std::array<bool, R>& reduced) {
  const Shape<R> shape = expr.shape();
  const auto plan = detail::reduction_plan(expr, reduced).plan;
  const auto s = gpu::reduce_shape(plan);
  const auto dev = gpu::to_device(detail::make_evaluator(expr, shape, plan));
  std::vector<float> out(static_cast<std::size_t>(s.outputs));
  index_t idx[max_rank];
  for (index_t o = 0; o < s.outputs; ++o) {
    float total = 0;
    for (index_t r = 0; r < s.count; ++r) {
      gpu::reduce_index(s, o, r, idx);
      total += dev.at(idx, s.rank);
    }
    out[static_cast<std::size_t>(o)] = total;
  }
  return out;
}
}  // namespace

TEST_CASE("reduction index arithmetic: every axis combination of a rank-3 expression") {
  Tensor<float, 3> x(3, 4, 5);
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = std::cos(0.3f * static_cast<float>(i));
  const auto expr = x * x + 1.0f;
  for (int mask = 1; mask < 8; ++mask) {
    CAPTURE(mask);
    const std::array<bool, 3> reduced{(mask & 4) != 0, (mask & 2) != 0, (mask & 1) != 0};
    const auto got = reduce_like_kernel(expr, reduced);
    const Tensor<float, 3> want = detail::make_reduce<ops::SumReducer, 3>(expr, reduced, "sum", false);
    REQUIRE(static_cast<index_t>(got.size()) == want.size());
    for (index_t i = 0; i < want.size(); ++i) CHECK(got[static_cast<std::size_t>(i)] == doctest::Approx(want.data()[i]).epsilon(1e-5));
  }
}

TEST_CASE("softmax's shift: infinities become 0, NaN stays") {
  CHECK(gpu::softmax_shift(3.0f) == 3.0f);
  CHECK(gpu::softmax_shift(std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(gpu::softmax_shift(-std::numeric_limits<double>::infinity()) == 0.0);
  CHECK(std::isnan(gpu::softmax_shift(std::nan(""))));
}
