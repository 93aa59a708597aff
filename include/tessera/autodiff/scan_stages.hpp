// scan_stages: a scan step in two stages -- `pre` (what reads the parameters, one buffer per step)
// and `post` (the rest) -- and the staged steps' plumbing that scan uses: splitting the pre value
// into column blocks and joining their gradients, calling each stage, and recognizing a post stage
// with a hand-derived backward. scan itself is in autodiff/scan.hpp (docs/autodiff.md).
#pragma once

#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "tessera/core/error.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/join.hpp"

namespace tessera {

namespace detail {

/// A step in two stages (see scan_stages): `pre(carry, x, params)` computes one tensor (the part
/// that reads the parameters, e.g. a recurrent matmul), `post(pre_value, carry, x)` the rest.
template <class Pre, class Post, std::size_t Parts = 1, bool SplitInput = false>
struct ScanStages {
  static constexpr std::size_t parts = Parts;
  static constexpr bool split_input = SplitInput;
  Pre pre;
  Post post;
};
template <class S>
struct is_scan_stages : std::false_type {};
template <class Pre, class Post, std::size_t Parts, bool SplitInput>
struct is_scan_stages<ScanStages<Pre, Post, Parts, SplitInput>> : std::true_type {};

/// The pre value as the post stage receives it: itself, or (Parts > 1) a tuple of Parts equal
/// column blocks of it (views along the last axis; an LSTM's four gates).
template <std::size_t Parts, class V, std::size_t... K>
auto split_columns(const V& v, std::index_sequence<K...>) {
  const index_t w = v.shape()[rank_v<V> - 1] / index_t(Parts);
  return std::make_tuple(v.slice(-1, index_t(K) * w, index_t(K + 1) * w)...);
}
template <std::size_t Parts, class V>
auto split_parts(const V& v) {
  if constexpr (Parts == 1) {
    return v;
  } else {
    if (v.shape()[rank_v<V> - 1] % index_t(Parts) != 0) {
      throw shape_error("scan_stages: a value of shape " + shape_to_string(v.shape()) + " does not split into " +
                        std::to_string(Parts) + " equal parts along its last axis");
    }
    return split_columns<Parts>(v, std::make_index_sequence<Parts>{});
  }
}
/// The inverse: the parts' gradients joined into one tensor.
template <std::size_t Parts, class V, class G>
V join_parts(const G& g) {
  if constexpr (Parts == 1) {
    return g;
  } else {
    return std::apply([](const auto&... p) { return concat({p...}, -1); }, g);
  }
}

/// Calls the user's step (or a staged step's post stage) with or without parameters.
template <class Step, class C, class X, class P>
auto call_step(const Step& step, const C& c, const X& x, const P& p) {
  if constexpr (std::is_same_v<P, std::tuple<>>) {
    return step(c, x);
  } else {
    return step(c, x, p);
  }
}
template <class Pre, class Post, std::size_t Parts, bool SplitInput, class PV, class C, class X>
auto call_step(const ScanStages<Pre, Post, Parts, SplitInput>& stages, const PV& pre_value, const C& c, const X& x) {
  return stages.post(pre_value, c, x);
}
template <class Pre, class Post, std::size_t Parts, bool SplitInput, class PV, class C, class X>
auto call_pre(const ScanStages<Pre, Post, Parts, SplitInput>& stages, const C& c, const X& x, const PV& params) {
  if constexpr (std::is_same_v<PV, std::tuple<>>) {
    return stages.pre(c, x);
  } else {
    return stages.pre(c, x, params);
  }
}

/// A staged step's pre stage with the parameters fixed (per step, only the carry and the input are
/// differentiated; the parameters' gradient is taken once over all steps).
template <class Step, class PV>
struct PreBody {
  const Step* step;
  const PV* params;
  template <class C, class X>
  auto operator()(const C& c, const X& x) const {
    return call_pre(*step, c, x, *params);
  }
};

/// What the pre stage of a step with a hand-derived post stage receives for the step's input:
/// nothing. Its post stage alone reads the input, so its backward alone gives the input's gradient.
struct NoStepInput {};
template <class Step, class PV>
struct PreCarryBody {
  const Step* step;
  const PV* params;
  template <class C>
  auto operator()(const C& c) const {
    return call_pre(*step, c, NoStepInput{}, *params);
  }
};

/// A staged step whose post stage has a hand-derived backward (the library's recurrent cells). The
/// post stage declares `static constexpr bool hand_derived = true` and has
///   forward(pre value, carry, x)     -> std::pair<std::tuple<new carry components..., output>, Saved>
///   backward(const Saved&, cotangent) -> std::tuple<d pre value, d carry, d x>
/// (the cotangent shaped like forward's first). Why: a derived backward recomputes the forward's
/// elementwise values -- every sigmoid and tanh once per gradient that reads it -- where a
/// hand-derived one reads the activations its forward saved. Its pre stage must not read the input
/// (it receives a NoStepInput).
template <class Step, class = void>
struct has_hand_derived_post : std::false_type {};
template <class Pre, class Post, std::size_t Parts, bool SplitInput>
struct has_hand_derived_post<ScanStages<Pre, Post, Parts, SplitInput>, std::enable_if_t<Post::hand_derived>>
    : std::true_type {};

}  // namespace detail

/// A step in two stages: `pre(carry, x_t, params)` returns one expression (the part that reads the
/// parameters, such as a recurrent matmul, evaluated into a buffer), `post(pre_value, carry, x_t)`
/// returns {new carry, output} from it. Why: a value that several outputs share (an LSTM's gates
/// feed both h and c) is then differentiated once per step, with the shares of its gradient added in
/// one fused pass, instead of once per use; and the parameters' gradient is taken once over all
/// steps (one large GEMM instead of a small GEMM and an addition per step). `pre` must treat axis
/// 0 of the carry and of x_t as independent examples (matmuls over the batch, elementwise ops).
template <class Pre, class Post>
detail::ScanStages<Pre, Post> scan_stages(Pre pre, Post post) {
  return {std::move(pre), std::move(post)};
}
/// scan_stages whose post stage receives the pre value as a std::tuple of Parts equal blocks of
/// its last axis (views): `scan_stages<4>(pre, post)` hands an LSTM's post stage its four gates from
/// one GEMM, and their gradients are joined back into one buffer for the pre stage's backward.
/// With SplitInput, post's input x_t is split the same way (x_t a tensor whose last axis holds the
/// same Parts blocks: an RNN's input projections of its gates, computed for all steps in one GEMM).
template <std::size_t Parts, bool SplitInput = false, class Pre, class Post>
detail::ScanStages<Pre, Post, Parts, SplitInput> scan_stages(Pre pre, Post post) {
  static_assert(Parts >= 1, "tessera::scan_stages: at least one part");
  return {std::move(pre), std::move(post)};
}

}  // namespace tessera
