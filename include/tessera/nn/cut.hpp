// Cut: a type boundary around a block of layers (docs/architecture.md, "Type depth").
//
// Without it a model's forward is one expression whose type nests every layer, and its backward is
// instantiated over that whole type, so compile time grows with depth. `nn::cut(block)` evaluates
// the block when the forward is built and stands in the outer expression as a small node whose
// type names only the block's module type and its input's expression type -- never the block's
// internal expression. Its backward is one run-time step: the block's own static backward (vjp),
// called with the output gradient when the outer backward is built, giving the input gradient and
// the gradients of the block's parameters as plain tensors.
//
// Semantics: inside value_and_grad/grad/vjp the block runs eagerly in the sweep's cache epoch (so
// the layers before it are evaluated once); outside, it simply evaluates the block. First-order
// gradients only. Parameter and buffer names are the block's own, as if it were not wrapped.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "tessera/autodiff/grad.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/cache.hpp"
#include "tessera/expr/evaluator.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::nn {

namespace detail {

template <class M, class In>
using cut_output_t = tessera::detail::materialized_tensor_t<decltype(std::declval<const M&>()(std::declval<const In&>()))>;

template <class Refs>
struct decayed_tuple;
template <class... T>
struct decayed_tuple<std::tuple<T...>> {
  using type = std::tuple<std::decay_t<T>...>;
};
/// A std::tuple of the block's parameter tensors (handles, not references).
template <class M>
using parameter_values_t = typename decayed_tuple<decltype(parameter_tuple(std::declval<M&>()))>::type;

/// What every copy of one cut node shares: the block's pullback (empty: built outside a sweep).
template <class M, class In, class Out>
struct CutState {
  std::function<std::tuple<In, M>(const Out&)> pullback;
};

/// Whether a block computes its own value and pullback (`forward_with_pullback(in)`, returning
/// the output and a function from its cotangent to the input's gradient and the block's gradients),
/// instead of one vjp over `block(in)`: a block that runs in stages (the transformer layers).
template <class M, class In, class = void>
struct has_staged_forward : std::false_type {};
template <class M, class In>
struct has_staged_forward<M, In, std::void_t<decltype(std::declval<const M&>().forward_with_pullback(std::declval<const In&>()))>>
    : std::true_type {};

/// Runs the block on its input: with its pullback inside a sweep, plainly outside. Depends only on
/// the block's and the input's types, so a block type repeated at any depth is compiled once.
template <class M, class In, class Out = cut_output_t<M, In>>
Out run_block(const In& in, const M& block, CutState<M, In, Out>& state) {
  if (tessera::detail::active_cache_epoch() == 0) return Out(block(in));
  if constexpr (has_staged_forward<M, In>::value) {
    auto [out, pullback] = block.forward_with_pullback(in);
    state.pullback = std::move(pullback);
    return out;
  } else {
    auto [out, pullback] = vjp([](const auto& t, const auto& m) { return m(t); }, in, block);
    state.pullback = std::move(pullback);
    return out;
  }
}

/// The block's output inside the outer expression. X: the input's expression type; M: the block.
///
/// Its grad rule runs the block's pullback when the outer backward is built (the output gradient
/// is evaluated then, in the sweep's epoch) and returns the input's and the parameters' gradients
/// as plain tensors: the adjoint types below a cut do not nest the ones above it either.
template <class X, class M>
struct CutNode : ExprBase<CutNode<X, M>> {
  using In = tessera::detail::materialized_tensor_t<X>;
  using Out = cut_output_t<M, In>;
  using value_type = value_type_t<Out>;
  using backend_type = backend_t<Out>;
  static constexpr std::size_t rank = rank_v<Out>;
  static constexpr const char* name = "cut";
  using State = CutState<M, In, Out>;
  using Params = parameter_values_t<M>;
  static_assert(tessera::detail::max_level_below<tessera::detail::probe_level, X>::value <= 0,
                "tessera::nn::cut: higher-order gradients through a cut are not supported");

  std::shared_ptr<State> state = std::make_shared<State>();  // declared first: value's initializer uses it
  X input;
  Out value;
  Params params;  ///< handles to the block's parameters: the outer sweep routes their gradients

  CutNode(X x, M block)
      : input(std::move(x)), value(run_block(tessera::detail::value_of(input), block, *state)),
        params(values_of(parameter_tuple(block))) {}
  const auto& shape() const { return value.shape(); }
  /// The block's output, read in place by the expressions that use it.
  std::optional<Out> alias() const { return value; }
  void evaluate_into(Out& out) const { out.assign(value); }
  template <class F>
  void for_each_tensor(F&& f) const {
    tessera::detail::for_each_tensor(input, f);
  }

  auto inputs() const {
    return std::tuple_cat(std::tie(input), std::apply([](const auto&... p) { return std::tie(p...); }, params));
  }
  template <class G>
  auto input_adjoints(const G& g) const {
    if (!state->pullback) {
      throw value_error("nn::cut: a gradient was requested for a block evaluated outside value_and_grad/grad/vjp");
    }
    const Out dy = sum_to(g, value.shape());
    auto [dx, block_grads] = state->pullback(dy);
    return std::tuple_cat(std::make_tuple(std::move(dx)), values_of(parameter_tuple(block_grads)));
  }

 private:
  template <class Tuple>
  static Params values_of(const Tuple& refs) {
    return std::apply([](const auto&... p) { return Params(p...); }, refs);
  }
};

}  // namespace detail

/// A block whose forward is a type boundary (see the top of this file). Build with nn::cut(block).
template <class M>
struct Cut : Module<Cut<M>> {
  static constexpr const char* type_name = "Cut";
  M inner;

  explicit Cut(M block) : inner(std::move(block)) {}
  /// The block's members: names are the block's own ("0.weight"), as if it were not wrapped.
  auto members() { return inner.members(); }
  /// Sets the mode of the block itself too (its members are this module's children).
  void train(bool on = true) {
    Module<Cut<M>>::train(on);
    inner.train(on);
  }
  void eval() { train(false); }

  template <class X>
  auto operator()(const X& x) const {
    return detail::CutNode<X, M>(x, inner);
  }
};

/// Wraps a block (often a Sequential) in a type boundary: `nn::sequential(nn::cut(block1), ...)`.
template <class M>
Cut<std::decay_t<M>> cut(M&& block) {
  return Cut<std::decay_t<M>>(std::forward<M>(block));
}

}  // namespace tessera::nn
