// Recurrent layers with PyTorch's conventions: LSTMCell, GRUCell, LSTM and GRU.
//
// Gate order, parameter names, shapes and initialization are torch.nn's, so weights and fixtures
// carry over: an LSTM has weight_ih_l{k} [4H, in], weight_hh_l{k} [4H, H], bias_ih_l{k} and
// bias_hh_l{k} [4H] per layer k (suffix _reverse for the backward direction), gates i, f, g, o; a
// GRU has 3H rows, gates r, z, n. Every tensor starts from U(-1/sqrt(H), 1/sqrt(H)).
//
// The layers run over time with tessera::scan (docs/autodiff.md): the input projection of all steps
// is one GEMM before the loop; each step is one static expression (the hidden projection and the
// gates, fused), differentiated from the op rules. The number of layers and bidirectionality shape
// the parameter list and so are template parameters; batch_first, dropout and bias are options.
#pragma once

#include <array>
#include <cmath>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "tessera/autodiff/scan.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/factories.hpp"
#include "tessera/core/random.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/matmul.hpp"
#include "tessera/expr/shape_ops.hpp"
#include "tessera/expr/slice.hpp"
#include "tessera/expr/unary_ops.hpp"
#include "tessera/nn/dropout.hpp"
#include "tessera/nn/init.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::nn {

/// Options of LSTMCell and GRUCell.
struct RNNCellOptions {
  bool bias = true;                ///< false: no bias_ih/bias_hh (kept at zero, not reported)
  Generator* generator = nullptr;  ///< for the initial weights; nullptr: default_generator()
};

/// Options of LSTM and GRU.
struct RNNOptions {
  bool bias = true;
  bool batch_first = false;        ///< input and output [N, T, features] instead of [T, N, features]
  double dropout = 0.0;            ///< dropout on each layer's output except the last, in training
  Generator* generator = nullptr;  ///< initial weights and dropout masks; nullptr: default_generator()
};

namespace detail {

/// Gate k (columns [k H, (k + 1) H) of the last axis) of the summed pre-activations.
template <class... A>
auto gate_sum(index_t k, index_t H, const A&... pre) {
  return (... + slice(pre, -1, k * H, (k + 1) * H));
}

/// One LSTM update from the gates' pre-activations (PyTorch's order i, f, g, o):
/// c' = f c + i g, h' = o tanh(c'). Returns {h', c'}.
template <class C, class I, class F, class G, class O>
auto lstm_update(const C& c, const I& i_pre, const F& f_pre, const G& g_pre, const O& o_pre) {
  auto c2 = sigmoid(f_pre) * c + sigmoid(i_pre) * tanh(g_pre);
  return std::make_tuple(sigmoid(o_pre) * tanh(c2), c2);
}

/// One GRU update (gates r, z, n): r = s(x_r + h_r), z = s(x_z + h_z), n = tanh(x_n + r h_n),
/// h' = (1 - z) n + z h, where x_* are the input's pre-activations and h_* the hidden state's
/// (the hidden bias inside r's product, as PyTorch has it).
template <class Hx, class XR, class XZ, class XN, class HR, class HZ, class HN>
auto gru_update(const Hx& h, const XR& xr, const XZ& xz, const XN& xn, const HR& hr, const HZ& hz, const HN& hn) {
  using T = value_type_t<Hx>;
  auto z = sigmoid(xz + hz);
  auto n = tanh(xn + sigmoid(xr + hr) * hn);
  return (T(1) - z) * n + z * h;
}

template <class T, class B>
void init_recurrent(Tensor<T, 2, B>& w_ih, Tensor<T, 2, B>& w_hh, Tensor<T, 1, B>& b_ih, Tensor<T, 1, B>& b_hh,
                    index_t hidden, bool bias, Generator& gen) {
  const double bound = 1.0 / std::sqrt(double(hidden));
  init::uniform_(w_ih, gen, -bound, bound);
  init::uniform_(w_hh, gen, -bound, bound);
  if (bias) {
    init::uniform_(b_ih, gen, -bound, bound);
    init::uniform_(b_hh, gen, -bound, bound);
  }
}

TESSERA_NOINLINE inline void check_sizes(const char* layer, index_t input_size, index_t hidden_size) {
  if (input_size <= 0 || hidden_size <= 0) {
    throw value_error(std::string(layer) + ": sizes must be positive, got input " + std::to_string(input_size) +
                      ", hidden " + std::to_string(hidden_size));
  }
}

template <std::size_t R, std::size_t RE>
TESSERA_NOINLINE void check_state_shape(const char* layer, const char* what, const Shape<R>& got, const Shape<RE>& want) {
  if (got != want) {
    throw shape_error(std::string(layer) + ": " + what + " of shape " + shape_to_string(got) + ", expected " +
                      shape_to_string(want));
  }
}

template <std::size_t R>
TESSERA_NOINLINE void check_features(const char* layer, const Shape<R>& s, index_t features) {
  if (s[R - 1] != features) {
    throw shape_error(std::string(layer) + ": input of shape " + shape_to_string(s) + " has " +
                      std::to_string(s[R - 1]) + " features, expected " + std::to_string(features));
  }
}

TESSERA_NOINLINE inline void check_lengths(const char* layer, const std::vector<index_t>& lengths, index_t batch,
                                           index_t steps) {
  if (lengths.empty()) return;
  if (static_cast<index_t>(lengths.size()) != batch) {
    throw shape_error(std::string(layer) + ": " + std::to_string(lengths.size()) + " lengths for a batch of " +
                      std::to_string(batch));
  }
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    if (lengths[b] < 0 || lengths[b] > steps) {
      throw value_error(std::string(layer) + ": length " + std::to_string(lengths[b]) + " of example " +
                        std::to_string(b) + " is outside [0, " + std::to_string(steps) + "] (the input has " +
                        std::to_string(steps) + " steps)");
    }
  }
}

/// The hidden-to-hidden weights one step reads (the scan's parameters). The LSTM folds its hidden
/// bias into the input projection (both are added to every gate); the GRU cannot (b_hn is inside
/// r's product), so its step reads it too.
template <class T, class B, bool WithBias>
struct HiddenWeights {
  Tensor<T, 2, B> W;
  Tensor<T, 1, B> b;
  auto parameters() {
    if constexpr (WithBias) {
      return std::tie(W, b);
    } else {
      return std::tie(W);
    }
  }
};

/// The layers' steps, in two stages (tessera::scan_stages): the hidden projection of all gates in
/// one GEMM, which reads the weights (its gradient for the hidden state is one GEMM per step, the
/// weight's one GEMM over all steps), then the gates from its column blocks and those of the input
/// projection. The gates' backward is written out by hand (the formulas below): derived from the
/// expression it would recompute every sigmoid and tanh once per gradient that reads it, where
/// here each step's forward saves the activated gates and its backward reads them -- four
/// elementwise passes per step instead of a dozen passes over transcendentals.
struct LSTMPre {
  template <class C, class X, class P>
  auto operator()(const C& carry, const X&, const P& p) const {
    return matmul(std::get<0>(carry), transpose(p.W));
  }
};
struct GRUPre {
  template <class Hx, class X, class P>
  auto operator()(const Hx& h, const X&, const P& p) const {
    return matmul(h, transpose(p.W)) + p.b;
  }
};

/// Column block k of a [N, G H] value (gate k).
template <class V>
V gate_block(const V& v, index_t k, index_t H) {
  return v.slice(-1, k * H, (k + 1) * H);
}

/// LSTM gates (PyTorch's order i, f, g, o) from the hidden projection hp and the input projection
/// xp (both biases in xp): c' = f c + i g, h' = o tanh(c'). Forward saves the activated gates a,
/// c and tanh(c'). Backward, from the cotangents of h' (the carry's and the output's, added) and c':
///   dc' += dh' o (1 - tanh(c')^2);  di = dc' g i (1 - i);  df = dc' c f (1 - f);
///   dg = dc' i (1 - g^2);  do = dh' tanh(c') o (1 - o);  dc = dc' f.
/// The gates' gradient is both the hidden projection's and the input projection's.
struct LSTMPost {
  static constexpr bool hand_derived = true;
  template <class V>
  struct Saved {
    V a, c, tanh_c2;
  };
  template <class V, class X>
  auto forward(const V& hp, const std::tuple<V, V>& carry, const X& xp) const {
    const V& c = std::get<1>(carry);
    const index_t H = c.shape()[1];
    V a = V::uninitialized(hp.shape());
    auto pre = [&](index_t k) { return gate_block(xp, k, H) + gate_block(hp, k, H); };
    gate_block(a, 0, H).assign(sigmoid(pre(0)));
    gate_block(a, 1, H).assign(sigmoid(pre(1)));
    gate_block(a, 2, H).assign(tanh(pre(2)));
    gate_block(a, 3, H).assign(sigmoid(pre(3)));
    const V i = gate_block(a, 0, H), f = gate_block(a, 1, H), g = gate_block(a, 2, H), o = gate_block(a, 3, H);
    V c2 = f * c + i * g;
    V tanh_c2 = tanh(c2);
    V h2 = o * tanh_c2;
    return std::make_pair(std::make_tuple(h2, c2, h2), Saved<V>{std::move(a), c, std::move(tanh_c2)});
  }
  template <class V>
  auto backward(const Saved<V>& s, const std::tuple<V, V, V>& cot) const {
    using T = value_type_t<V>;
    const index_t H = s.c.shape()[1];
    const V i = gate_block(s.a, 0, H), f = gate_block(s.a, 1, H), g = gate_block(s.a, 2, H), o = gate_block(s.a, 3, H);
    const V dh = std::get<0>(cot) + std::get<2>(cot);
    const V dc2 = std::get<1>(cot) + dh * o * (T(1) - s.tanh_c2 * s.tanh_c2);
    V dgates = V::uninitialized(s.a.shape());
    gate_block(dgates, 0, H).assign(dc2 * g * i * (T(1) - i));
    gate_block(dgates, 1, H).assign(dc2 * s.c * f * (T(1) - f));
    gate_block(dgates, 2, H).assign(dc2 * i * (T(1) - g * g));
    gate_block(dgates, 3, H).assign(dh * s.tanh_c2 * o * (T(1) - o));
    V dc = dc2 * f;
    V dh_direct(s.c.shape());  // h reaches the gates only through the hidden projection
    return std::make_tuple(dgates, std::make_tuple(std::move(dh_direct), std::move(dc)), dgates);
  }
};

/// GRU gates (r, z, n) from the hidden projection hp (with the hidden bias) and the input
/// projection xp: r = s(x_r + h_r), z = s(x_z + h_z), n = tanh(x_n + r h_n), h' = (1 - z) n + z h.
/// Forward saves the activated gates a (and keeps hp, h). Backward, from dh' (carry's and output's):
///   dn = dh' (1 - z) (1 - n^2) (x_n's gradient);  dz = dh' (h - n) z (1 - z);
///   dr = dn h_n r (1 - r);  h_n's gradient dn r;  dh = dh' z.
struct GRUPost {
  static constexpr bool hand_derived = true;
  template <class V>
  struct Saved {
    V a, hp, h;
  };
  template <class V, class X>
  auto forward(const V& hp, const V& h, const X& xp) const {
    using T = value_type_t<V>;
    const index_t H = h.shape()[1];
    V a = V::uninitialized(hp.shape());
    const V r = gate_block(a, 0, H), z = gate_block(a, 1, H), n = gate_block(a, 2, H);
    gate_block(a, 0, H).assign(sigmoid(gate_block(xp, 0, H) + gate_block(hp, 0, H)));
    gate_block(a, 1, H).assign(sigmoid(gate_block(xp, 1, H) + gate_block(hp, 1, H)));
    gate_block(a, 2, H).assign(tanh(gate_block(xp, 2, H) + r * gate_block(hp, 2, H)));
    V h2 = (T(1) - z) * n + z * h;
    return std::make_pair(std::make_tuple(h2, h2), Saved<V>{std::move(a), hp, h});
  }
  template <class V>
  auto backward(const Saved<V>& s, const std::tuple<V, V>& cot) const {
    using T = value_type_t<V>;
    const index_t H = s.h.shape()[1];
    const V r = gate_block(s.a, 0, H), z = gate_block(s.a, 1, H), n = gate_block(s.a, 2, H);
    const V dh2 = std::get<0>(cot) + std::get<1>(cot);
    V dx = V::uninitialized(s.a.shape());
    V dn = gate_block(dx, 2, H);
    dn.assign(dh2 * (T(1) - z) * (T(1) - n * n));
    gate_block(dx, 0, H).assign(dn * gate_block(s.hp, 2, H) * r * (T(1) - r));
    gate_block(dx, 1, H).assign(dh2 * (s.h - n) * z * (T(1) - z));
    V dpre = dx.clone();
    gate_block(dpre, 2, H).assign(dn * r);
    V dh = dh2 * z;
    return std::make_tuple(std::move(dpre), std::move(dh), std::move(dx));
  }
};

struct LSTMKind {
  static constexpr const char* name = "LSTM";
  static constexpr const char* cell_name = "LSTMCell";
  static constexpr index_t gates = 4;
  static constexpr bool hidden_bias_in_step = false;
  static constexpr std::size_t carry_size = 2;  // (h, c)
  using Step = tessera::detail::ScanStages<LSTMPre, LSTMPost>;
};
struct GRUKind {
  static constexpr const char* name = "GRU";
  static constexpr const char* cell_name = "GRUCell";
  static constexpr index_t gates = 3;
  static constexpr bool hidden_bias_in_step = true;
  static constexpr std::size_t carry_size = 1;  // h
  using Step = tessera::detail::ScanStages<GRUPre, GRUPost>;
};

/// No initial state given: zeros.
struct NoState {};

}  // namespace detail

/// torch.nn.LSTMCell (Kind = LSTMKind): (x [N, in], (h, c) [N, H]) -> (h', c') as a std::tuple of
/// expressions; torch.nn.GRUCell (GRUKind): (x [N, in], h [N, H]) -> h'. Called with x alone, a
/// cell starts from zeros. Use the aliases LSTMCell and GRUCell below.
template <class Kind, class T, class B>
struct Cell : Module<Cell<Kind, T, B>> {
  static constexpr const char* type_name = Kind::cell_name;
  Tensor<T, 2, B> weight_ih, weight_hh;  ///< [G H, in], [G H, H] (G gates)
  Tensor<T, 1, B> bias_ih, bias_hh;      ///< [G H]

  Cell(index_t input_size, index_t hidden_size, RNNCellOptions o = {})
      : weight_ih(checked(input_size, hidden_size, Shape<2>{Kind::gates * hidden_size, input_size})),
        weight_hh(Shape<2>{Kind::gates * hidden_size, hidden_size}),
        bias_ih(Shape<1>{Kind::gates * hidden_size}),
        bias_hh(Shape<1>{Kind::gates * hidden_size}),
        has_bias_(o.bias) {
    detail::init_recurrent(weight_ih, weight_hh, bias_ih, bias_hh, hidden_size, has_bias_,
                           o.generator ? *o.generator : default_generator());
  }
  auto members() {
    return std::make_tuple(param("weight_ih", weight_ih), param("weight_hh", weight_hh),
                           param("bias_ih", bias_ih, has_bias_), param("bias_hh", bias_hh, has_bias_));
  }
  index_t input_size() const { return weight_ih.shape()[1]; }
  index_t hidden_size() const { return weight_hh.shape()[1]; }

  template <class X, class S>
  auto operator()(const X& x, const S& state) const {
    static_assert(rank_v<X> == 2, "tessera::nn::LSTMCell/GRUCell: the input must be [batch, features]");
    detail::check_features(Kind::cell_name, x.shape(), input_size());
    const index_t H = hidden_size();
    const Shape<2> hs{x.shape()[0], H};
    const auto mx = matmul(x, transpose(weight_ih));
    if constexpr (Kind::carry_size == 2) {
      detail::check_state_shape(Kind::cell_name, "h", std::get<0>(state).shape(), hs);
      detail::check_state_shape(Kind::cell_name, "c", std::get<1>(state).shape(), hs);
      const auto mh = matmul(std::get<0>(state), transpose(weight_hh));
      auto pre = [&](index_t k) { return detail::gate_sum(k, H, mx, bias_ih, mh, bias_hh); };
      return detail::lstm_update(std::get<1>(state), pre(0), pre(1), pre(2), pre(3));
    } else {
      detail::check_state_shape(Kind::cell_name, "h", state.shape(), hs);
      const auto mh = matmul(state, transpose(weight_hh));
      auto xg = [&](index_t k) { return detail::gate_sum(k, H, mx, bias_ih); };
      auto hg = [&](index_t k) { return detail::gate_sum(k, H, mh, bias_hh); };
      return detail::gru_update(state, xg(0), xg(1), xg(2), hg(0), hg(1), hg(2));
    }
  }
  template <class X>
  auto operator()(const X& x) const {
    const Tensor<T, 2, B> zero(Shape<2>{x.shape()[0], hidden_size()});
    if constexpr (Kind::carry_size == 2) {
      return (*this)(x, std::make_tuple(zero, zero));
    } else {
      return (*this)(x, zero);
    }
  }

 private:
  static Shape<2> checked(index_t in, index_t hidden, Shape<2> s) {
    detail::check_sizes(Kind::cell_name, in, hidden);
    return s;
  }
  bool has_bias_;
};

/// torch.nn.LSTMCell.
template <class T = float, class B = cpu>
using LSTMCell = Cell<detail::LSTMKind, T, B>;
/// torch.nn.GRUCell.
template <class T = float, class B = cpu>
using GRUCell = Cell<detail::GRUKind, T, B>;

/// A stack of recurrent layers (LSTM or GRU below), torch.nn.LSTM / torch.nn.GRU.
///
/// Input [T, N, in] ([N, T, in] with batch_first). Returns {output, final state}: output
/// [T, N, D H] (D = 2 when bidirectional: forward and backward outputs side by side), and the final
/// state [Layers D, N, H] -- (h_n, c_n) as a std::tuple for the LSTM, h_n for the GRU. An initial
/// state of the same shapes may be given; forward(x, lengths) and forward(x, state, lengths) take
/// per-example lengths (steps past them leave the state unchanged and output zeros, as PyTorch's
/// packed sequences).
template <class Kind, class T, class B, std::size_t Layers, bool Bidirectional>
struct Recurrent : Module<Recurrent<Kind, T, B, Layers, Bidirectional>> {
  static_assert(Layers >= 1, "tessera::nn::LSTM/GRU: at least one layer");
  static constexpr const char* type_name = Kind::name;
  static constexpr std::size_t directions = Bidirectional ? 2 : 1;
  static constexpr std::size_t count = Layers * directions;  ///< (layer, direction) pairs, layer-major
  std::array<Tensor<T, 2, B>, count> weight_ih, weight_hh;
  std::array<Tensor<T, 1, B>, count> bias_ih, bias_hh;

  Recurrent(index_t input_size, index_t hidden_size, RNNOptions o = {})
      : has_bias_(o.bias), batch_first_(o.batch_first), dropout_(o.dropout), generator_(o.generator) {
    detail::check_sizes(Kind::name, input_size, hidden_size);
    if (!(dropout_ >= 0 && dropout_ <= 1)) {
      throw value_error(std::string(Kind::name) + ": dropout must be in [0, 1], got " + std::to_string(dropout_));
    }
    Generator& gen = o.generator ? *o.generator : default_generator();
    const index_t G = Kind::gates * hidden_size;
    for (std::size_t k = 0; k < count; ++k) {
      const std::size_t layer = k / directions;
      const index_t in = layer == 0 ? input_size : index_t(directions) * hidden_size;
      weight_ih[k] = Tensor<T, 2, B>(Shape<2>{G, in});
      weight_hh[k] = Tensor<T, 2, B>(Shape<2>{G, hidden_size});
      bias_ih[k] = Tensor<T, 1, B>(Shape<1>{G});
      bias_hh[k] = Tensor<T, 1, B>(Shape<1>{G});
      detail::init_recurrent(weight_ih[k], weight_hh[k], bias_ih[k], bias_hh[k], hidden_size, has_bias_, gen);
      const std::string suffix = "_l" + std::to_string(layer) + (k % directions == 1 ? "_reverse" : "");
      names_[4 * k] = "weight_ih" + suffix;
      names_[4 * k + 1] = "weight_hh" + suffix;
      names_[4 * k + 2] = "bias_ih" + suffix;
      names_[4 * k + 3] = "bias_hh" + suffix;
    }
  }

  auto members() { return members_impl(std::make_index_sequence<count>{}); }
  index_t input_size() const { return weight_ih[0].shape()[1]; }
  index_t hidden_size() const { return weight_hh[0].shape()[1]; }
  bool batch_first() const { return batch_first_; }

  template <class X>
  auto operator()(const X& x) const {
    return run(x, detail::NoState{}, {});
  }
  template <class X, class S>
  auto operator()(const X& x, const S& state) const {
    return run(x, state, {});
  }
  template <class X>
  auto forward(const X& x, const std::vector<index_t>& lengths) const {
    return run(x, detail::NoState{}, lengths);
  }
  template <class X, class S>
  auto forward(const X& x, const S& state, const std::vector<index_t>& lengths) const {
    return run(x, state, lengths);
  }

 private:
  template <std::size_t... K>
  auto members_impl(std::index_sequence<K...>) {
    return std::tuple_cat(std::make_tuple(param(names_[4 * K], weight_ih[K]), param(names_[4 * K + 1], weight_hh[K]),
                                          param(names_[4 * K + 2], bias_ih[K], has_bias_),
                                          param(names_[4 * K + 3], bias_hh[K], has_bias_))...);
  }

  template <class X, class S>
  auto run(const X& x, const S& state, const std::vector<index_t>& lengths) const {
    static_assert(rank_v<X> == 3,
                  "tessera::nn::LSTM/GRU: the input must be [time, batch, features] ([batch, time, features] with batch_first)");
    static_assert(std::is_same_v<value_type_t<X>, T>, "tessera::nn::LSTM/GRU: input element type differs from the layer's");
    detail::check_features(Kind::name, x.shape(), input_size());
    auto seq = transpose(x, 0, batch_first_ ? 1 : 0);  // time-major (a no-op swap otherwise)
    const index_t steps = seq.shape()[0], batch = seq.shape()[1];
    detail::check_lengths(Kind::name, lengths, batch, steps);
    check_state(state, batch);
    ScanOptions options;
    options.lengths = lengths;
    auto [out, finals] = layer<0>(seq, state, options, batch);
    auto output = transpose(out, 0, batch_first_ ? 1 : 0);
    return std::make_pair(output, final_state(finals, batch, std::make_index_sequence<count>{}));
  }

  template <class S>
  void check_state(const S& state, index_t batch) const {
    if constexpr (!std::is_same_v<S, detail::NoState>) {
      const Shape<3> want{index_t(count), batch, hidden_size()};
      if constexpr (Kind::carry_size == 2) {
        detail::check_state_shape(Kind::name, "initial h", std::get<0>(state).shape(), want);
        detail::check_state_shape(Kind::name, "initial c", std::get<1>(state).shape(), want);
      } else {
        static_assert(rank_v<S> == 3, "tessera::nn::GRU: the initial state must be h [layers * directions, batch, hidden]");
        detail::check_state_shape(Kind::name, "initial h", state.shape(), want);
      }
    }
  }

  /// Entry k of a [count, N, H] state expression, as [N, H].
  template <class E>
  static auto state_entry(const E& e, std::size_t k, index_t batch, index_t hidden) {
    return reshape(slice(e, 0, index_t(k), index_t(k) + 1), Shape<2>{batch, hidden});
  }
  template <std::size_t K, class S>
  auto initial_carry(const S& state, index_t batch) const {
    const index_t H = hidden_size();
    if constexpr (std::is_same_v<S, detail::NoState>) {
      const Tensor<T, 2, B> zero(Shape<2>{batch, H});
      if constexpr (Kind::carry_size == 2) {
        return std::make_tuple(zero, zero);
      } else {
        return zero;
      }
    } else if constexpr (Kind::carry_size == 2) {
      return std::make_tuple(state_entry(std::get<0>(state), K, batch, H), state_entry(std::get<1>(state), K, batch, H));
    } else {
      return state_entry(state, K, batch, H);
    }
  }

  /// One direction of one layer: the input projection of every step in one GEMM (over all T N
  /// rows: a [T, N, in] matmul would be T batched GEMMs), then the scan, whose steps split it and
  /// the hidden projection into the gates' column blocks. The LSTM adds both biases here (they
  /// reach every gate alike); the GRU's hidden bias stays in the step (r multiplies it).
  template <std::size_t K, class In, class S>
  auto direction(const In& in, const S& state, ScanOptions options, index_t batch) const {
    options.reverse = K % directions == 1;
    const Shape<3> s = in.shape();
    const auto rows = reshape(in, Shape<2>{s[0] * s[1], s[2]});
    const Shape<3> projected{s[0], s[1], Kind::gates * hidden_size()};
    detail::HiddenWeights<T, B, Kind::hidden_bias_in_step> hidden{weight_hh[K], bias_hh[K]};
    if constexpr (Kind::hidden_bias_in_step) {
      auto xp = reshape(matmul(rows, transpose(weight_ih[K])) + bias_ih[K], projected);
      return scan(typename Kind::Step{}, initial_carry<K>(state, batch), xp, hidden, std::move(options));
    } else {
      auto xp = reshape(matmul(rows, transpose(weight_ih[K])) + (bias_ih[K] + bias_hh[K]), projected);
      return scan(typename Kind::Step{}, initial_carry<K>(state, batch), xp, hidden, std::move(options));
    }
  }

  /// Layers L.. on a time-major input: {last layer's output, tuple of final carries per (layer,
  /// direction)}.
  template <std::size_t L, class In, class S>
  auto layer(const In& layer_input, const S& state, const ScanOptions& options, index_t batch) const {
    // Both directions' projections read the input: computed once (a SumTo of its own shape is a
    // buffer its copies share; a tensor is its own).
    const SumTo<In, 3> in(layer_input, layer_input.shape());
    const auto fwd = direction<L * directions>(in, state, options, batch);  // {final carry, outputs}
    auto joined = [&] {
      if constexpr (Bidirectional) {
        const auto bwd = direction<L * directions + 1>(in, state, options, batch);
        return std::make_pair(concat(std::make_tuple(fwd.second, bwd.second), -1), std::make_tuple(fwd.first, bwd.first));
      } else {
        return std::make_pair(fwd.second, std::make_tuple(fwd.first));
      }
    }();
    if constexpr (L + 1 == Layers) {
      return joined;
    } else {
      // Dropout between layers (a multiply by ones outside training: the same expression type).
      const auto& out = joined.first;
      Shape<3> unit{1, 1, 1};
      const bool drop = this->is_training() && dropout_ > 0;
      const Tensor<T, 3, B> mask =
          drop ? detail::dropout_mask<T, 3, B>(generator_ ? *generator_ : default_generator(), out.shape(), dropout_)
               : ones<T, B>(unit);
      auto rest = layer<L + 1>(out * mask, state, options, batch);
      return std::make_pair(rest.first, std::tuple_cat(joined.second, rest.second));
    }
  }

  /// The final carries stacked into [count, N, H] (h_n; and c_n for the LSTM).
  template <class Finals, std::size_t... K>
  auto final_state(const Finals& finals, index_t batch, std::index_sequence<K...>) const {
    const Shape<3> one{1, batch, hidden_size()};
    if constexpr (Kind::carry_size == 2) {
      return std::make_tuple(concat(std::make_tuple(reshape(std::get<0>(std::get<K>(finals)), one)...), 0),
                             concat(std::make_tuple(reshape(std::get<1>(std::get<K>(finals)), one)...), 0));
    } else {
      return concat(std::make_tuple(reshape(std::get<K>(finals), one)...), 0);
    }
  }

  std::array<std::string, 4 * count> names_;
  bool has_bias_;
  bool batch_first_;
  double dropout_;
  Generator* generator_;
};

/// torch.nn.LSTM with `Layers` layers, bidirectional if `Bidirectional`.
template <class T = float, class B = cpu, std::size_t Layers = 1, bool Bidirectional = false>
using LSTM = Recurrent<detail::LSTMKind, T, B, Layers, Bidirectional>;
/// torch.nn.GRU with `Layers` layers, bidirectional if `Bidirectional`.
template <class T = float, class B = cpu, std::size_t Layers = 1, bool Bidirectional = false>
using GRU = Recurrent<detail::GRUKind, T, B, Layers, Bidirectional>;

}  // namespace tessera::nn
