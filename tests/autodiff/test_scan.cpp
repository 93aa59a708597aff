// scan: a loop over time whose body is one static expression. Its backward (backpropagation through
// time from each step's own derived gradient) is checked against the same computation written out
// as one static expression, against central differences, with checkpointing, per-example lengths,
// the reverse direction and a parameter struct; bad inputs end in clear exceptions.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;
using grad_test::sample;

namespace {

constexpr index_t B = 3, I = 4, H = 5;

/// An Elman step h' = tanh(x W + h U + b), output h' * 2 (so output and carry differ).
const auto rnn_step = [](const auto& h, const auto& x, const auto& p) {
  const auto& [W, U, b] = p;
  auto h2 = tanh(matmul(x, W) + matmul(h, U) + b);
  return std::make_pair(h2, h2 * 2.0);
};

const auto W0 = sample({I, H}, -0.6, 0.6, 11);
const auto U0 = sample({H, H}, -0.6, 0.6, 12);
const auto b0 = sample({H}, -0.3, 0.3, 13);
const auto h00 = sample({B, H}, -0.5, 0.5, 14);

Tensor<double, 3> inputs(index_t T, std::uint64_t seed = 15) {
  Generator gen(seed);
  return uniform<double>(gen, Shape<3>{T, B, I}, -1.0, 1.0);
}

/// Weights for the loss over the stacked outputs and over the final carry.
Tensor<double, 3> output_weights(index_t T) {
  Generator gen(16);
  return uniform<double>(gen, Shape<3>{T, B, H}, -1.0, 1.0);
}
const auto carry_weights = sample({B, H}, -1, 1, 17);

/// The loss through scan: outputs and final carry both used.
template <class H0, class Xs, class W, class U, class Bias>
auto scan_loss(const H0& h0, const Xs& xs, const W& w, const U& u, const Bias& b, const Tensor<double, 3>& cy,
               ScanOptions options = {}) {
  auto [hT, ys] = scan(rnn_step, h0, xs, std::make_tuple(w, u, b), options);
  return sum(ys * cy) + sum(hT * carry_weights);
}

/// The same computation written out as one static expression of T steps (compile-time recursion).
template <index_t T, index_t t = 0, class Hx, class Xs, class W, class U, class Bias>
auto unrolled_loss(const Hx& h, const Xs& xs, const W& w, const U& u, const Bias& b, const Tensor<double, 3>& cy) {
  if constexpr (t == T) {
    return sum(h * carry_weights);
  } else {
    auto x = reshape(slice(xs, 0, t, t + 1), Shape<2>{B, I});
    auto h2 = tanh(matmul(x, w) + matmul(h, u) + b);
    return sum(h2 * 2.0 * cy.select(0, t)) + unrolled_loss<T, t + 1>(h2, xs, w, u, b, cy);
  }
}

template <index_t T>
void check_against_unrolled() {
  const auto xs0 = inputs(T);
  const auto cy = output_weights(T);
  auto via_scan = [&](const auto& h0, const auto& xs, const auto& w, const auto& u, const auto& b) {
    return scan_loss(h0, xs, w, u, b, cy);
  };
  auto via_unrolled = [&](const auto& h0, const auto& xs, const auto& w, const auto& u, const auto& b) {
    return unrolled_loss<T>(h0, xs, w, u, b, cy);
  };
  const auto [v1, g1] = value_and_grad(via_scan, h00, xs0, W0, U0, b0);
  const auto [v2, g2] = value_and_grad(via_unrolled, h00, xs0, W0, U0, b0);
  CHECK(v1() == doctest::Approx(v2()).epsilon(1e-13));
  CHECK_TENSOR_NEAR(std::get<0>(g1), std::get<0>(g2), 1e-12);
  CHECK_TENSOR_NEAR(std::get<1>(g1), std::get<1>(g2), 1e-12);
  CHECK_TENSOR_NEAR(std::get<2>(g1), std::get<2>(g2), 1e-12);
  CHECK_TENSOR_NEAR(std::get<3>(g1), std::get<3>(g2), 1e-12);
  CHECK_TENSOR_NEAR(std::get<4>(g1), std::get<4>(g2), 1e-12);
  // The gradients are not trivially zero.
  CHECK(Tensor<double, 0>(sum(abs(std::get<3>(g1))))() > 1e-3);
}

/// A parameter struct (what a module is to grad): its tensors get the per-step gradients summed.
struct RnnParams {
  Tensor<double, 2> W, U;
  Tensor<double, 1> b;
  auto parameters() { return std::tie(W, U, b); }
  auto parameters() const { return std::tie(W, U, b); }
};
const auto struct_step = [](const auto& h, const auto& x, const RnnParams& p) {
  auto h2 = tanh(matmul(x, p.W) + matmul(h, p.U) + p.b);
  return std::make_pair(h2, h2 * 2.0);
};

}  // namespace

TEST_CASE("scan's forward equals a plain loop") {
  const index_t T = 6;
  const auto xs = inputs(T);
  auto [hT, ys] = scan(rnn_step, h00, xs, std::make_tuple(W0, U0, b0));
  Tensor<double, 2> h = h00;
  for (index_t t = 0; t < T; ++t) {
    h = eval(tanh(matmul(xs.select(0, t), W0) + matmul(h, U0) + b0));
    const Tensor<double, 2> expected = h * 2.0;
    const Tensor<double, 2> actual = ys.value().select(0, t);
    CHECK_TENSOR_NEAR(actual, expected, 1e-15);
  }
  CHECK(ys.shape() == Shape<3>{T, B, H});
  // Each output is a node of the expression contract: it materializes (from the scan's buffers).
  static_assert(is_node_v<decltype(ys)> && detail::is_materialized_v<decltype(hT)>);
  CHECK_TENSOR_NEAR(hT.value(), h, 1e-15);
}

TEST_CASE("scan's backward equals the gradient of the unrolled expression, T = 1..4") {
  check_against_unrolled<1>();
  check_against_unrolled<2>();
  check_against_unrolled<3>();
  check_against_unrolled<4>();
}

TEST_CASE("scan's gradients match central differences, with and without checkpointing") {
  const auto xs0 = inputs(5);
  const auto cy = output_weights(5);
  for (const bool checkpoint : {false, true}) {
    CAPTURE(checkpoint);
    GRAD_CHECK([&](const auto& h0, const auto& xs, const auto& w, const auto& u,
                   const auto& b) { return scan_loss(h0, xs, w, u, b, cy, {.checkpoint = checkpoint}); },
               h00, xs0, W0, U0, b0, grad_test::tight());
  }
  // Checkpointing recomputes the same steps: identical gradients.
  auto loss = [&](bool checkpoint) {
    return [&, checkpoint](const auto& h0, const auto& xs, const auto& w, const auto& u, const auto& b) {
      return scan_loss(h0, xs, w, u, b, cy, {.checkpoint = checkpoint});
    };
  };
  const auto g1 = grad(loss(false), h00, xs0, W0, U0, b0);
  const auto g2 = grad(loss(true), h00, xs0, W0, U0, b0);
  CHECK_TENSOR_EQ(std::get<3>(g1), std::get<3>(g2));
  CHECK_TENSOR_EQ(std::get<1>(g1), std::get<1>(g2));
}

TEST_CASE("scan with a parameter struct: per-step gradients are summed into the struct's tensors") {
  const auto xs0 = inputs(4);
  const auto cy = output_weights(4);
  const RnnParams p0{W0, U0, b0};
  auto loss_struct = [&](const RnnParams& p) {
    auto [hT, ys] = scan(struct_step, h00, xs0, p);
    return sum(ys * cy) + sum(hT * carry_weights);
  };
  auto loss_tuple = [&](const auto& w, const auto& u, const auto& b) {
    return scan_loss(h00, xs0, w, u, b, cy);
  };
  const auto [gp] = grad(loss_struct, p0);
  const auto [gW, gU, gb] = grad(loss_tuple, W0, U0, b0);
  CHECK_TENSOR_NEAR(gp.W, gW, 1e-13);
  CHECK_TENSOR_NEAR(gp.U, gU, 1e-13);
  CHECK_TENSOR_NEAR(gp.b, gb, 1e-13);
  GRAD_CHECK(loss_struct, p0, grad_test::tight());
}

TEST_CASE("a step in two stages gives the same values and gradients as in one") {
  // pre reads the parameters (the matmuls); post uses its value twice (carry and output).
  auto pre = [](const auto& h, const auto& x, const auto& p) {
    const auto& [W, U, b] = p;
    return matmul(x, W) + matmul(h, U) + b;
  };
  auto post = [](const auto& z, const auto& h, const auto&) {
    auto h2 = tanh(z) * 0.5 + h * 0.5;
    return std::make_pair(h2, tanh(z) * 2.0);
  };
  auto plain = [](const auto& h, const auto& x, const auto& p) {
    const auto& [W, U, b] = p;
    auto z = matmul(x, W) + matmul(h, U) + b;
    return std::make_pair(tanh(z) * 0.5 + h * 0.5, tanh(z) * 2.0);
  };
  const index_t T = 4;
  const auto xs0 = inputs(T);
  const auto cy = output_weights(T);
  for (const auto& options : {ScanOptions{}, ScanOptions{.reverse = true}, ScanOptions{.checkpoint = true},
                              ScanOptions{.lengths = {4, 1, 3}}}) {
    auto loss = [&](const auto& step) {
      return [&, step](const auto& h0, const auto& xs, const auto& w, const auto& u, const auto& b) {
        auto [hT, ys] = scan(step, h0, xs, std::make_tuple(w, u, b), options);
        return sum(ys * cy) + sum(hT * carry_weights);
      };
    };
    const auto [v1, g1] = value_and_grad(loss(scan_stages(pre, post)), h00, xs0, W0, U0, b0);
    const auto [v2, g2] = value_and_grad(loss(plain), h00, xs0, W0, U0, b0);
    CHECK(v1() == doctest::Approx(v2()).epsilon(1e-14));
    CHECK_TENSOR_NEAR(std::get<0>(g1), std::get<0>(g2), 1e-13);
    CHECK_TENSOR_NEAR(std::get<1>(g1), std::get<1>(g2), 1e-13);
    CHECK_TENSOR_NEAR(std::get<2>(g1), std::get<2>(g2), 1e-13);
    CHECK_TENSOR_NEAR(std::get<3>(g1), std::get<3>(g2), 1e-13);
    CHECK_TENSOR_NEAR(std::get<4>(g1), std::get<4>(g2), 1e-13);
  }
  // With a parameter struct.
  auto struct_pre = [](const auto& h, const auto& x, const RnnParams& p) { return matmul(x, p.W) + matmul(h, p.U) + p.b; };
  const RnnParams p0{W0, U0, b0};
  auto loss_struct = [&](const RnnParams& p) {
    auto [hT, ys] = scan(scan_stages(struct_pre, post), h00, xs0, p);
    return sum(ys * cy) + sum(hT * carry_weights);
  };
  GRAD_CHECK(loss_struct, p0, grad_test::tight());
}

/// A post stage with its backward written out (as nn::LSTM's and nn::GRU's are): z' = z + x,
/// a = tanh(z'), new carry a / 2 + h / 2, output 2 a. Forward saves a; backward reads it.
struct HandDerivedPost {
  static constexpr bool hand_derived = true;
  struct Saved {
    Tensor<double, 2> a;
  };
  auto forward(const Tensor<double, 2>& z, const Tensor<double, 2>& h, const Tensor<double, 2>& x) const {
    const Tensor<double, 2> a = tanh(z + x);
    return std::make_pair(std::make_tuple(Tensor<double, 2>(a * 0.5 + h * 0.5), Tensor<double, 2>(a * 2.0)), Saved{a});
  }
  auto backward(const Saved& s, const std::tuple<Tensor<double, 2>, Tensor<double, 2>>& cot) const {
    const Tensor<double, 2> dz = (std::get<0>(cot) * 0.5 + std::get<1>(cot) * 2.0) * (1.0 - s.a * s.a);
    return std::make_tuple(dz, Tensor<double, 2>(std::get<0>(cot) * 0.5), dz);  // d pre, d carry, d x
  }
};

TEST_CASE("a hand-derived post stage gives the derived one's values and gradients") {
  // The pre stage reads only the carry (the input goes to the post stage alone); xs is [T, B, H].
  auto pre = [](const auto& h, const auto&, const auto& p) {
    const auto& [U, b] = p;
    return matmul(h, U) + b;
  };
  auto derived_post = [](const auto& z, const auto& h, const auto& x) {
    auto a = tanh(z + x);
    return std::make_pair(a * 0.5 + h * 0.5, a * 2.0);
  };
  const index_t T = 4;
  Generator gen(18);
  const auto xs0 = uniform<double>(gen, Shape<3>{T, B, H}, -1.0, 1.0);
  const auto cy = output_weights(T);
  for (const auto& options : {ScanOptions{}, ScanOptions{.reverse = true}, ScanOptions{.checkpoint = true},
                              ScanOptions{.lengths = {4, 1, 0}}, ScanOptions{.reverse = true, .lengths = {2, 4, 3}}}) {
    auto loss = [&](const auto& step) {
      return [&, step](const auto& h0, const auto& xs, const auto& u, const auto& b) {
        auto [hT, ys] = scan(step, h0, xs, std::make_tuple(u, b), options);
        return sum(ys * cy) + sum(hT * carry_weights);
      };
    };
    const auto hand = loss(scan_stages(pre, HandDerivedPost{}));
    const auto [v1, g1] = value_and_grad(hand, h00, xs0, U0, b0);
    const auto [v2, g2] = value_and_grad(loss(scan_stages(pre, derived_post)), h00, xs0, U0, b0);
    CHECK(v1() == doctest::Approx(v2()).epsilon(1e-14));
    CHECK_TENSOR_NEAR(std::get<0>(g1), std::get<0>(g2), 1e-13);
    CHECK_TENSOR_NEAR(std::get<1>(g1), std::get<1>(g2), 1e-13);
    CHECK_TENSOR_NEAR(std::get<2>(g1), std::get<2>(g2), 1e-13);
    CHECK_TENSOR_NEAR(std::get<3>(g1), std::get<3>(g2), 1e-13);
    GRAD_CHECK(hand, h00, xs0, U0, b0, grad_test::tight());
  }
}

TEST_CASE("a carry of several tensors and inputs of several tensors") {
  // An LSTM-like carry (h, c) and two input streams.
  const auto xs_a = inputs(3, 21);
  const auto xs_b = inputs(3, 22);
  const auto c00 = sample({B, H}, -0.5, 0.5, 23);
  auto step = [](const auto& carry, const auto& x, const auto& p) {
    const auto& [h, c] = carry;
    const auto& [xa, xb] = x;
    const auto& [W, U] = p;
    auto c2 = c * sigmoid(matmul(xa, W)) + tanh(matmul(h, U) + matmul(xb, W));
    auto h2 = tanh(c2) * sigmoid(matmul(h, U));
    return std::make_pair(std::make_tuple(h2, c2), h2 + c2);
  };
  auto loss = [&](const auto& h0, const auto& c0, const auto& xa, const auto& xb, const auto& w, const auto& u) {
    auto [carry, ys] = scan(step, std::make_tuple(h0, c0), std::make_tuple(xa, xb), std::make_tuple(w, u));
    return sum(ys * ys) + sum(std::get<1>(carry) * carry_weights) + sum(std::get<0>(carry));
  };
  GRAD_CHECK(loss, h00, c00, xs_a, xs_b, W0, U0, grad_test::tight());
}

TEST_CASE("scan without parameters, over an input computed by an expression") {
  const auto xs0 = sample({4, B, H}, -1, 1, 31);
  auto loss = [&](const auto& h0, const auto& xs) {
    auto [hT, ys] = scan([](const auto& h, const auto& x) { return std::make_pair(h * 0.5 + sin(x), h * x); }, h0,
                         exp(xs * 0.5));
    return sum(ys) + sum(hT * hT);
  };
  GRAD_CHECK(loss, h00, xs0, grad_test::tight());
}

TEST_CASE("reverse scans run from the last step and keep outputs indexed by time") {
  const index_t T = 4;
  const auto xs = inputs(T);
  auto [hT, ys] = scan(rnn_step, h00, xs, std::make_tuple(W0, U0, b0), {.reverse = true});
  Tensor<double, 2> h = h00;
  for (index_t t = T - 1; t >= 0; --t) {
    h = eval(tanh(matmul(xs.select(0, t), W0) + matmul(h, U0) + b0));
    const Tensor<double, 2> expected = h * 2.0;
    const Tensor<double, 2> actual = ys.value().select(0, t);
    CHECK_TENSOR_NEAR(actual, expected, 1e-15);
  }
  CHECK_TENSOR_NEAR(hT.value(), h, 1e-15);
  const auto cy = output_weights(T);
  GRAD_CHECK([&](const auto& h0, const auto& x, const auto& w, const auto& u,
                 const auto& b) { return scan_loss(h0, x, w, u, b, cy, {.reverse = true}); },
             h00, xs, W0, U0, b0, grad_test::tight());
}

TEST_CASE("per-example lengths: padded steps change nothing and get no gradient") {
  const index_t T = 5;
  const std::vector<index_t> lengths{5, 2, 0};
  const auto xs0 = inputs(T);
  const auto cy = output_weights(T);
  auto loss = [&](const auto& h0, const auto& xs, const auto& w, const auto& u, const auto& b) {
    return scan_loss(h0, xs, w, u, b, cy, {.lengths = lengths});
  };
  // Perturb only padded inputs: example 1 from step 2 on, example 2 everywhere.
  auto padded = xs0.clone();
  for (index_t t = 0; t < T; ++t) {
    for (index_t b = 1; b < B; ++b) {
      if (t >= lengths[static_cast<std::size_t>(b)]) padded.select(0, t).select(0, b).fill(100.0 + double(t));
    }
  }
  const auto [v1, g1] = value_and_grad(loss, h00, xs0, W0, U0, b0);
  const auto [v2, g2] = value_and_grad(loss, h00, padded, W0, U0, b0);
  CHECK(v1() == doctest::Approx(v2()).epsilon(1e-15));
  CHECK_TENSOR_EQ(std::get<3>(g1), std::get<3>(g2));
  CHECK_TENSOR_EQ(std::get<0>(g1), std::get<0>(g2));
  // Padded positions get zero input gradient; example 2 passes its initial carry's cotangent through.
  const auto& dxs = std::get<1>(g1);
  CHECK(Tensor<double, 0>(sum(abs(dxs.slice(0, 2, T).select(1, 1))))() == 0.0);
  CHECK(Tensor<double, 0>(sum(abs(dxs.select(1, 2))))() == 0.0);
  const Tensor<double, 1> dh0_padded = std::get<0>(g1).select(0, 2);
  CHECK_TENSOR_EQ(dh0_padded, carry_weights.select(0, 2));

  // The outputs: zeros past each length; the final carry of example 1 is its carry after 2 steps.
  auto [hT, ys] = scan(rnn_step, h00, xs0, std::make_tuple(W0, U0, b0), {.lengths = lengths});
  CHECK(Tensor<double, 0>(sum(abs(ys.value().slice(0, 2, T).select(1, 1))))() == 0.0);
  auto [h2, ys2] = scan(rnn_step, h00, xs0.slice(0, 0, 2), std::make_tuple(W0, U0, b0));
  const Tensor<double, 1> h_ex1 = hT.value().select(0, 1), h_ex1_short = h2.value().select(0, 1);
  CHECK_TENSOR_EQ(h_ex1, h_ex1_short);
  const Tensor<double, 1> h_ex2 = hT.value().select(0, 2), h0_ex2 = h00.select(0, 2);
  CHECK_TENSOR_EQ(h_ex2, h0_ex2);
  GRAD_CHECK(loss, h00, xs0, W0, U0, b0, grad_test::tight());
}

TEST_CASE("scan's bad inputs end in exceptions naming the extents") {
  const auto xs = inputs(3);
  const auto params = std::make_tuple(W0, U0, b0);
  CHECK_THROWS_WITH_AS(scan(rnn_step, h00, xs, params, {.lengths = {3, 3}}),
                       "scan: 2 lengths for a carry of shape [3, 5] (lengths need one per example, along axis 0)",
                       shape_error);
  CHECK_THROWS_WITH_AS(scan(rnn_step, h00, xs, params, {.lengths = {3, 4, 1}}),
                       "scan: length 4 of example 1 is outside [0, 3] (the input has 3 steps)", value_error);
  auto two_inputs = [](const auto& h, const auto& x) { return std::make_pair(h, std::get<0>(x) + std::get<1>(x)); };
  CHECK_THROWS_WITH_AS(scan(two_inputs, h00, std::make_tuple(xs, inputs(4))),
                       "scan: inputs of 3 and 4 steps (axis 0 is time and must agree)", shape_error);
  CHECK_THROWS_WITH_AS(scan(rnn_step, h00, Tensor<double, 3>(Shape<3>{0, B, I}), params),
                       "scan: an input sequence with no steps", value_error);
  // A step that changes the carry's shape.
  auto grow = [](const auto& h, const auto& x) { return std::make_pair(broadcast_to(sum(h), Shape<2>{2, 2}), x); };
  CHECK_THROWS_WITH_AS(scan(grow, Tensor<double, 2>(Shape<2>{2, 3}), xs),
                       "scan: the step changed a carry's shape from [2, 3] to [2, 2]; the carry must keep its shape",
                       shape_error);
  // A staged step whose pre value does not split into the parts its post stage takes.
  auto pre5 = [](const auto& h, const auto&) { return h * 2.0; };  // [3, 5]: not 2 equal blocks
  auto post2 = [](const auto& parts, const auto& h, const auto&) { return std::make_pair(h, std::get<0>(parts)); };
  CHECK_THROWS_WITH_AS(scan(scan_stages<2>(pre5, post2), h00, xs),
                       "scan_stages: a value of shape [3, 5] does not split into 2 equal parts along its last axis",
                       shape_error);
  // Shape errors inside the step propagate (an input of the wrong feature extent).
  CHECK_THROWS_AS(scan(rnn_step, h00, inputs(3).slice(2, 0, 3), params), shape_error);
}

TEST_CASE("a scan evaluated outside a sweep refuses to give gradients") {
  auto [hT, ys] = scan(rnn_step, h00, inputs(2), std::make_tuple(W0, U0, b0));
  struct Scale {
    Tensor<double, 0> s;
    auto parameters() { return std::tie(s); }
    auto parameters() const { return std::tie(s); }
  };
  const Scale p{Tensor<double, 0>(2.0)};
  auto f = [&, node = ys](const Scale& q) { return sum(node * q.s); };
  CHECK_THROWS_WITH_AS(value_and_grad(f, p),
                       "scan: a gradient was requested for a scan evaluated outside value_and_grad/grad/vjp",
                       value_error);
}
