// GradientArena: value_and_grad under GradientArena::Use puts every parameter's gradient in its
// slot of one buffer per element type, with the same bits as without the arena, whichever way the
// gradient was computed (a matmul's adjoint computed into the slot, a bias's reduction copied in,
// several contributions added, none at all, a rank-0 parameter).
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <tuple>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;

namespace {

struct Net {
  Tensor<double, 2> w1;  // [4, 5]
  Tensor<double, 1> b1;  // [5]
  Tensor<double, 2> w2;  // [5, 3]
  Tensor<double, 1> unused;
  Tensor<double, 0> scale;
  Tensor<float, 1> f;  // another element type: a buffer of its own
  auto parameters() { return std::tie(w1, b1, w2, unused, scale, f); }
};

Net make_net() {
  Net n{sample({4, 5}, -1, 1, 11), sample({5}, -1, 1, 12), sample({5, 3}, -1, 1, 13),
        sample({3}, -1, 1, 14),    Tensor<double, 0>(1.5), Tensor<float, 1>{0.5f, -0.25f}};
  return n;
}

// w1: a matmul's adjoint plus an elementwise term (two contributions); b1: a reduction over the
// batch; w2: only a matmul's adjoint (computed into its slot); unused: none; scale: rank 0; f: float.
const auto loss = [](const Tensor<double, 2>& x) {
  return [x](const auto& m) {
    const auto h = tanh(matmul(x, m.w1) + m.b1);
    return sum(matmul(h, m.w2) * m.scale) + sum(m.w1 * m.w1) * 0.5 + cast<double>(sum(m.f * m.f));
  };
};

/// Slots for every parameter of a parameter struct, in order (what fit does for a model).
template <class Params>
void lay_out(GradientArena& arena, Params& params) {
  arena.begin_layout();
  std::apply([&](auto&... p) { (arena.add(p), ...); }, params.parameters());
  arena.end_layout();
}

/// A parameter struct with one weight.
struct Layer {
  Tensor<double, 2> W;
  auto parameters() { return std::tie(W); }
};

template <class A, class B>
bool same_bits(const A& a, const B& b) {
  return a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous() &&
         std::memcmp(a.data(), b.data(), sizeof(*a.data()) * std::size_t(a.size())) == 0;
}

}  // namespace

TEST_CASE("under GradientArena::Use the gradients are the same bits, in the arena's slots") {
  Net net = make_net();
  const auto x = sample({7, 4}, -1, 1, 15);
  const auto [plain_value, plain] = value_and_grad(loss(x), net);
  const auto& g0 = std::get<0>(plain);

  GradientArena arena;
  lay_out(arena, net);
  CHECK(arena.slots() == 6);
  auto [value, grads] = [&] {
    GradientArena::Use use(arena);
    return value_and_grad(loss(x), net);
  }();
  const auto& g = std::get<0>(grads);
  CHECK(value() == plain_value());
  CHECK(same_bits(g.w1, g0.w1));
  CHECK(same_bits(g.b1, g0.b1));
  CHECK(same_bits(g.w2, g0.w2));
  CHECK(same_bits(g.unused, g0.unused));
  CHECK(same_bits(g.scale, g0.scale));
  CHECK(same_bits(g.f, g0.f));
  CHECK(g.unused(0) == 0.0);

  // Every gradient is its parameter's slot; consecutive slots of one type are adjacent, the float
  // one is in a buffer of its own.
  CHECK(g.w1.data() == arena.slot_of(net.w1)->data());
  CHECK(g.b1.data() == arena.slot_of(net.b1)->data());
  CHECK(g.w2.data() == arena.slot_of(net.w2)->data());
  CHECK(g.unused.data() == arena.slot_of(net.unused)->data());
  CHECK(g.scale.data() == arena.slot_of(net.scale)->data());
  CHECK(g.f.data() == arena.slot_of(net.f)->data());
  CHECK(arena.adjacent(g.w1.data(), g.b1.data()));
  CHECK(arena.adjacent(g.b1.data(), g.w2.data()));
  CHECK(arena.adjacent(g.unused.data(), g.scale.data()));
  CHECK_FALSE(arena.adjacent(g.scale.data(), g.f.data()));
  CHECK_FALSE(arena.adjacent(g.w1.data(), g.w2.data()));
  CHECK(reinterpret_cast<std::uintptr_t>(g.b1.data()) % GradientArena::slot_alignment == 0);

  // Scaling one gradient in place (clipping) leaves its neighbours alone.
  const Tensor<double, 1> b1_before = g.b1.clone();
  auto w1 = g.w1;
  w1 *= 2.0;
  CHECK(same_bits(g.b1, b1_before));

  // The next step reuses the slots: same addresses, the new batch's values.
  const auto x2 = sample({3, 4}, -1, 1, 16);
  const auto [plain2_value, plain2] = value_and_grad(loss(x2), net);
  lay_out(arena, net);
  auto [value2, grads2] = [&] {
    GradientArena::Use use(arena);
    return value_and_grad(loss(x2), net);
  }();
  (void)plain2_value;
  (void)value2;
  CHECK(std::get<0>(grads2).w2.data() == g.w2.data());
  CHECK(same_bits(std::get<0>(grads2).w2, std::get<0>(plain2).w2));
  CHECK(same_bits(std::get<0>(grads2).w1, std::get<0>(plain2).w1));
  CHECK(same_bits(g.w2, std::get<0>(plain2).w2));  // the first step's gradient handle sees the new values
}

TEST_CASE("without a Use, or for a parameter the arena does not know, gradients have buffers of their own") {
  Net net = make_net();
  const auto x = sample({7, 4}, -1, 1, 17);
  GradientArena arena;
  lay_out(arena, net);
  const auto [v, grads] = value_and_grad(loss(x), net);
  (void)v;
  CHECK(std::get<0>(grads).w2.data() != arena.slot_of(net.w2)->data());

  // A parameter replaced after the layout has no slot until the next layout.
  const double* old_slot = arena.slot_of(net.w2)->data();
  net.w2 = sample({5, 3}, -1, 1, 18);
  CHECK_FALSE(arena.slot_of(net.w2).has_value());
  {
    GradientArena::Use use(arena);
    const auto [v2, g2] = value_and_grad(loss(x), net);
    (void)v2;
    CHECK(std::get<0>(g2).w2.data() != old_slot);
    CHECK(std::get<0>(g2).w1.data() == arena.slot_of(net.w1)->data());
  }
  lay_out(arena, net);
  REQUIRE(arena.slot_of(net.w2).has_value());
  GradientArena::Use use(arena);
  const auto [v3, g3] = value_and_grad(loss(x), net);
  (void)v3;
  CHECK(std::get<0>(g3).w2.data() == arena.slot_of(net.w2)->data());
}

TEST_CASE("a matmul adjoint computed into a slot still serves the other readers of that node") {
  // Both parameters receive the same matmul node (A + B): it is computed into A's slot, and B's
  // gradient is copied from it into B's slot.
  struct Pair {
    Tensor<double, 2> A, B;
    auto parameters() { return std::tie(A, B); }
  };
  Pair pair{sample({5, 4}, -1, 1, 21), sample({5, 4}, -1, 1, 22)};
  const auto y = sample({4, 3}, -1, 1, 23);
  const auto w = sample({5, 3}, -1, 1, 24);
  const auto f = [&](const auto& q) { return sum(matmul(q.A + q.B, y) * w); };
  const auto [plain] = grad(f, pair);
  GradientArena arena;
  lay_out(arena, pair);
  GradientArena::Use use(arena);
  const auto [g] = grad(f, pair);
  CHECK(same_bits(g.A, plain.A));
  CHECK(same_bits(g.B, plain.B));
  CHECK(g.A.data() == arena.slot_of(pair.A)->data());
  CHECK(g.B.data() == arena.slot_of(pair.B)->data());
}

TEST_CASE("a weight's matmul adjoint is computed into its slot, not copied there") {
  Layer layer{sample({4, 3}, -1, 1, 31)};
  const auto x = sample({6, 4}, -1, 1, 32);
  const auto w = sample({6, 3}, -1, 1, 33);
  const auto f = [&](const auto& l) { return sum(matmul(x, l.W) * w); };
  GradientArena arena;
  lay_out(arena, layer);
  const auto count = [&](bool in_arena) {
    std::optional<GradientArena::Use> use;
    if (in_arena) use.emplace(arena);
    instrument::reset();
    const auto [g] = grad(f, layer);
    CHECK(g.W.shape() == layer.W.shape());
    return std::make_pair(instrument::counters().elementwise_passes.load(), instrument::counters().allocations.load());
  };
  const auto [passes, allocations] = count(false);
  const auto [arena_passes, arena_allocations] = count(true);
  CHECK(arena_passes == passes);                // no copy into the slot
  CHECK(arena_allocations == allocations - 1);  // and no buffer of its own
}

TEST_CASE("a struct that lists one tensor twice: the first gets the slot and the gradient, as without an arena") {
  struct Tied {
    Tensor<double, 2> A, alias, B;
    auto parameters() { return std::tie(A, alias, B); }
  };
  Tied t{sample({3, 4}, -1, 1, 41), Tensor<double, 2>(), sample({4, 2}, -1, 1, 42)};
  t.alias = t.A;  // the same tensor
  const auto x = sample({5, 3}, -1, 1, 43);
  const auto f = [&](const auto& m) { return sum(matmul(matmul(x, m.A), m.B)) + sum(m.A * m.A); };
  const auto [plain] = grad(f, t);
  GradientArena arena;
  lay_out(arena, t);
  CHECK(arena.slots() == 2);
  GradientArena::Use use(arena);
  const auto [g] = grad(f, t);
  CHECK(same_bits(g.A, plain.A));
  CHECK(same_bits(g.alias, plain.alias));
  CHECK(same_bits(g.B, plain.B));
  CHECK(g.A.data() == arena.slot_of(t.A)->data());
  CHECK(g.alias.data() != g.A.data());
  CHECK(arena.adjacent(g.A.data(), g.B.data()));
}

TEST_CASE("a grad call inside f does not write into the outer call's slots") {
  Layer layer{sample({4, 3}, -1, 1, 51)};
  const auto x = sample({6, 4}, -1, 1, 52);
  // A gradient penalty: the inner gradient is evaluated inside f, and kept.
  Tensor<double, 2> kept;
  const auto f = [&](const auto& l) {
    const auto [inner] = grad([&](const auto& m) { return sum(square(matmul(x, m.W))); }, layer);
    kept = inner.W;
    return sum(matmul(x, l.W)) + sum(inner.W);
  };
  const auto [plain] = grad(f, layer);
  const Tensor<double, 2> plain_inner = kept.clone();
  GradientArena arena;
  lay_out(arena, layer);
  GradientArena::Use use(arena);
  const auto [g] = grad(f, layer);
  CHECK(same_bits(g.W, plain.W));
  CHECK(g.W.data() == arena.slot_of(layer.W)->data());
  CHECK(kept.data() != g.W.data());
  CHECK(same_bits(kept, plain_inner));
}

namespace {
struct Rnn {
  Tensor<double, 2> W, U;
  Tensor<double, 1> b;
  auto parameters() { return std::tie(W, U, b); }
  auto parameters() const { return std::tie(W, U, b); }
};
}  // namespace

TEST_CASE("a scan's steps (vjp pullbacks inside the sweep) do not write into the slots") {
  // Each step's pullback computes the step's parameter gradients, which the scan adds up: were
  // they put in the slots, each step would overwrite the sum.
  Rnn rnn{sample({3, 4}, -1, 1, 61), sample({4, 4}, -1, 1, 62), sample({4}, -1, 1, 63)};
  const auto xs = sample({5, 2, 3}, -1, 1, 64);
  const auto h0 = sample({2, 4}, -1, 1, 65);
  const auto step = [](const auto& h, const auto& x, const Rnn& p) {
    auto h2 = tanh(matmul(x, p.W) + matmul(h, p.U) + p.b);
    return std::make_pair(h2, h2 * 2.0);
  };
  const auto f = [&](const Rnn& p) {
    auto [hT, ys] = scan(step, h0, xs, p);
    return sum(ys) + sum(square(hT));
  };
  const auto [plain] = grad(f, rnn);
  GradientArena arena;
  lay_out(arena, rnn);
  GradientArena::Use use(arena);
  const auto [g] = grad(f, rnn);
  CHECK(same_bits(g.W, plain.W));
  CHECK(same_bits(g.U, plain.U));
  CHECK(same_bits(g.b, plain.b));
  CHECK(g.U.data() == arena.slot_of(rnn.U)->data());
}
