// scan: a loop over the leading (time) axis whose body is one static expression.
//
//   auto [h_T, hs] = tessera::scan([](const auto& h, const auto& x, const auto& p) {
//         auto h2 = tanh(matmul(x, transpose(p.W)) + matmul(h, transpose(p.U)));
//         return std::make_pair(h2, h2);            // (new carry, this step's output)
//       }, h0, xs, params);                          // xs: [T, batch, ...]; hs: [T, batch, ...]
//
// The step's type is fixed at compile time (its forward fuses and its backward is derived from the
// op rules like any expression); the number of steps is the run-time extent of xs. scan runs the
// loop when it is called -- eagerly, like nn::cut -- and stands in the surrounding expression as
// one node per output (the final carry's components and the stacked outputs). Inside
// value_and_grad/grad/vjp each step is run through vjp and its pullback kept; the node's grad rule
// runs them backwards (backpropagation through time), summing the parameters' per-step gradients.
//
// Memory per step (docs/autodiff.md): by default each step keeps what its own backward reads --
// the buffers of its materialization points (matmul outputs, reductions), its input carry and a
// view of its input; elementwise values are recomputed. With `checkpoint = true` a step keeps only
// its input carry and is run again, forward then backward, when the gradient is computed. A step
// in two stages whose post stage is hand-derived (see has_hand_derived_post) keeps what that stage's
// forward saves instead of the buffers its derived backward would read.
//
// Limits: first-order gradients only (a static_assert says so for variables of an enclosing grad);
// when a loss uses both the final carry and the stacked outputs, the backward loop runs once for
// each (gradients add up correctly; the cost doubles).
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/autodiff/grad.hpp"
#include "tessera/autodiff/scan_stages.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/cache.hpp"
#include "tessera/expr/elementwise.hpp"
#include "tessera/expr/join.hpp"
#include "tessera/expr/shape_ops.hpp"

namespace tessera {

/// Options of scan.
struct ScanOptions {
  /// Run from the last step to the first (the backward direction of a bidirectional layer). The
  /// outputs stay indexed by time.
  bool reverse = false;
  /// Keep only each step's input carry and recompute the step during the backward pass.
  bool checkpoint = false;
  /// Per-example sequence lengths (examples along axis 0 of every carry and of every step's
  /// input). Steps at or past an example's length leave its carry unchanged, output zeros for it
  /// and pass it no gradient. Empty: every example runs all steps.
  std::vector<index_t> lengths = {};
};

namespace detail {

/// A scan "structure" is one expression or a std::tuple of expressions.
template <class S>
auto as_flat(const S& s) {
  if constexpr (is_std_tuple<S>::value) {
    return s;
  } else {
    return std::tuple<S>(s);
  }
}
template <class S, class Flat>
decltype(auto) from_flat(Flat&& flat) {
  if constexpr (is_std_tuple<S>::value) {
    return std::forward<Flat>(flat);
  } else {
    return std::get<0>(std::forward<Flat>(flat));
  }
}
template <class S>
using flat_t = decltype(as_flat(std::declval<const S&>()));

/// The tensors a structure's expressions evaluate to.
template <class S>
struct scan_values {
  using type = materialized_tensor_t<S>;
};
template <class... E>
struct scan_values<std::tuple<E...>> {
  using type = std::tuple<materialized_tensor_t<E>...>;
};
template <class S>
using scan_values_t = typename scan_values<S>::type;

template <class S>
scan_values_t<S> values_of_struct(const S& s) {
  if constexpr (is_std_tuple<S>::value) {
    return std::apply([](const auto&... e) { return scan_values_t<S>(materialized_tensor_t<std::decay_t<decltype(e)>>(value_of(e))...); }, s);
  } else {
    return scan_values_t<S>(value_of(s));
  }
}

/// Step t of every tensor of a structure ([T, ...] -> [...]).
template <class V>
auto select_step(const V& v, index_t t) {
  if constexpr (is_std_tuple<V>::value) {
    return std::apply([t](const auto&... x) { return std::make_tuple(x.select(0, t)...); }, v);
  } else {
    return v.select(0, t);
  }
}

/// The mask of one tensor type: true for the examples (axis 0) still running at step t, shaped
/// [batch, 1, ..., 1] to broadcast over the tensor.
template <class V>
using step_mask_t = Tensor<bool, rank_v<V>, backend_t<V>>;
template <class V>
step_mask_t<V> step_mask(const std::vector<index_t>& lengths, index_t t) {
  static_assert(rank_v<V> >= 1, "tessera::scan: with lengths, every carry and output needs a batch axis (axis 0)");
  Shape<rank_v<V>> s{};
  for (auto& e : s) e = 1;
  s[0] = static_cast<index_t>(lengths.size());
  Tensor<bool, rank_v<V>, cpu> host(s);
  auto flat = host.flatten();
  for (index_t b = 0; b < s[0]; ++b) flat(b) = t < lengths[static_cast<std::size_t>(b)];
  return host.template to<backend_t<V>>();
}

template <class Tuple>
struct step_masks;
template <class... V>
struct step_masks<std::tuple<V...>> {
  using type = std::tuple<step_mask_t<V>...>;
};

template <class C>
void check_carry_shape(const C& before, const C& after) {
  if constexpr (is_std_tuple<C>::value) {
    std::apply([&](const auto&... b) { std::apply([&](const auto&... a) { (check_carry_shape(b, a), ...); }, after); }, before);
  } else {
    if (before.shape() != after.shape()) {
      throw shape_error("scan: the step changed a carry's shape from " + shape_to_string(before.shape()) + " to " +
                        shape_to_string(after.shape()) + "; the carry must keep its shape");
    }
  }
}

/// The body vjp differentiates: the user's step, its outputs flattened into one tuple (carry
/// components, then the step's output). Its arguments are (carry, x, params), or for a staged
/// step's post stage (pre value, carry, x). Masked: examples whose sequence ended keep their carry
/// and output zeros (CarryMasks: one mask per carry component; YMask: the output's).
template <class Step, class CarryMasks = std::tuple<>, class YMask = std::tuple<>>
struct ScanBody {
  static constexpr std::size_t carry_arg = is_scan_stages<Step>::value ? 1 : 0;
  static constexpr bool masked = !std::is_same_v<YMask, std::tuple<>>;
  const Step* step;
  CarryMasks carry_masks;
  YMask y_mask;

  template <class... A>
  auto operator()(const A&... a) const {
    auto r = call_step(*step, a...);
    const auto& c = std::get<carry_arg>(std::tie(a...));
    const auto new_carry = as_flat(std::get<0>(r));
    const auto& y = std::get<1>(r);
    static_assert(is_expr_v<std::decay_t<decltype(y)>>, "tessera::scan: the step must return (new carry, output expression)");
    static_assert(std::tuple_size_v<decltype(new_carry)> == std::tuple_size_v<decltype(as_flat(c))>,
                  "tessera::scan: the step's new carry must have as many components as the carry it received");
    if constexpr (!masked) {
      return std::tuple_cat(new_carry, std::make_tuple(y));
    } else {
      const auto old_carry = as_flat(c);
      auto keep = [](const auto& m, const auto& fresh, const auto& old) { return where(m, fresh, old); };
      auto masked_carry = apply3(keep, carry_masks, new_carry, old_carry,
                                 std::make_index_sequence<std::tuple_size_v<decltype(new_carry)>>{});
      using T = value_type_t<std::decay_t<decltype(y)>>;
      return std::tuple_cat(masked_carry, std::make_tuple(where(y_mask, y, T(0))));
    }
  }

 private:
  template <class F, class A, class B, class C, std::size_t... K>
  static auto apply3(F& f, const A& a, const B& b, const C& c, std::index_sequence<K...>) {
    return std::make_tuple(f(std::get<K>(a), std::get<K>(b), std::get<K>(c))...);
  }
};
/// The parameters as scan keeps them: a parameter struct as it is (its tensors are shared), a
/// tuple of expressions as their values.
template <class P>
auto params_value(const P& p) {
  if constexpr (has_parameters<P>::value) {
    return p;
  } else {
    return values_of_struct(p);
  }
}
template <class P>
using params_value_t = decltype(params_value(std::declval<const P&>()));

/// The parameters' tensors in order (the inputs through which the outer sweep routes their
/// gradients), as handles.
template <class P>
auto param_leaves(P& p) {
  if constexpr (has_parameters<P>::value) {
    return std::apply([](auto&... t) { return std::make_tuple(t...); }, p.parameters());
  } else {
    return p;
  }
}

/// Adds `g` to `acc`. Rebinding assignment: it writes in place only into a buffer no one else
/// holds (a first step's gradient may be a cached buffer that a pullback still reads).
template <class T>
void accumulate_into(T& acc, const T& g);
template <class A, class B, std::size_t... K>
void accumulate_tuple(A& acc, const B& g, std::index_sequence<K...>) {
  (accumulate_into(std::get<K>(acc), std::get<K>(g)), ...);
}
template <class T>
void accumulate_into(T& acc, const T& g) {
  if constexpr (is_std_tuple<T>::value) {
    accumulate_tuple(acc, g, std::make_index_sequence<std::tuple_size_v<T>>{});
  } else if constexpr (has_parameters<T>::value) {
    auto a = acc.parameters();
    auto b = const_cast<T&>(g).parameters();
    accumulate_tuple(a, b, std::make_index_sequence<std::tuple_size_v<decltype(a)>>{});
  } else {
    acc = acc + g;
  }
}

/// The pre stage's value type (a staged step), or std::tuple<> (a plain step).
template <class Step, class CarryV, class XtV, class ParamsV, bool Staged = is_scan_stages<Step>::value>
struct pre_value {
  using type = std::tuple<>;
};
template <class Step, class CarryV, class XtV, class ParamsV>
struct pre_value<Step, CarryV, XtV, ParamsV, true> {
  using type = scan_values_t<decltype(std::declval<const PreBody<Step, ParamsV>&>()(std::declval<const CarryV&>(),
                                                                                    std::declval<const XtV&>()))>;
};

/// a + b for tensors and tuples of them (a carry's or an input's two gradient parts).
template <class V>
V add_values(const V& a, const V& b);
template <class V, std::size_t... K>
V add_tuple(const V& a, const V& b, std::index_sequence<K...>) {
  return V(add_values(std::get<K>(a), std::get<K>(b))...);
}
template <class V>
V add_values(const V& a, const V& b) {
  if constexpr (is_std_tuple<V>::value) {
    return add_tuple(a, b, std::make_index_sequence<std::tuple_size_v<V>>{});
  } else {
    return V(a + b);
  }
}
/// [T, N, ...] -> [T N, ...]: every step's examples as one batch.
template <class T, std::size_t R, class B>
Tensor<T, R - 1, B> merge_time(const Tensor<T, R, B>& v) {
  Shape<R - 1> s{};
  s[0] = v.shape()[0] * v.shape()[1];
  for (std::size_t i = 1; i + 1 < R; ++i) s[i] = v.shape()[i + 1];
  return v.contiguous().reshape(s);
}

/// Per-step values (a tensor or a tuple of them) stacked along a new axis 0, then merged with the
/// batch axis: [T N, ...] per component.
template <class V, std::size_t... K>
auto stack_merged_tuple(const std::vector<V>& per_step, std::index_sequence<K...>) {
  auto component = [&](auto k) {
    std::vector<std::decay_t<std::tuple_element_t<decltype(k)::value, V>>> parts;
    parts.reserve(per_step.size());
    for (const auto& v : per_step) parts.push_back(std::get<decltype(k)::value>(v));
    return merge_time(stack(parts, 0));
  };
  return std::make_tuple(component(std::integral_constant<std::size_t, K>{})...);
}

template <class V>
auto stack_merged(const std::vector<V>& per_step) {
  if constexpr (is_std_tuple<V>::value) {
    return stack_merged_tuple(per_step, std::make_index_sequence<std::tuple_size_v<V>>{});
  } else {
    return merge_time(stack(per_step, 0));
  }
}
/// The gradient type of a step's input: the body's (Split: the joined parts', a tensor).
template <bool Split, class XtV, class BodyGrads, std::size_t I>
struct step_input_grad {
  using type = std::tuple_element_t<I, BodyGrads>;
};
template <class XtV, class BodyGrads, std::size_t I>
struct step_input_grad<true, XtV, BodyGrads, I> {
  using type = materialized_tensor_t<XtV>;
};

/// The differentiated body's result: (carry components..., output) and the pullback. A plain step's
/// arguments are (carry, x, params); a staged step's post stage's (pre value, carry, x).
template <bool Staged, class B, class PV, class C, class X, class P>
auto scan_body_vjp(const B& body, const PV& pre, const C& carry, const X& xt, const P& params) {
  if constexpr (Staged) {
    return vjp(body, pre, carry, xt);
  } else {
    static_cast<void>(pre);
    return vjp(body, carry, xt, params);
  }
}

/// A step's values (carry components..., output) and the gradient types of its carry and input:
/// from the vjp of the body (derived), or from a hand-derived post stage.
template <bool Staged, bool SplitX, class Body, class PostPreV, class CarryV, class PostXV, class ParamsV, class XtV>
struct derived_step_types {
  using VjpResult = decltype(scan_body_vjp<Staged>(std::declval<const Body&>(), std::declval<const PostPreV&>(),
                                                   std::declval<const CarryV&>(), std::declval<const PostXV&>(),
                                                   std::declval<const ParamsV&>()));
  using Values = typename VjpResult::first_type;
  using BodyGrads = decltype(std::declval<typename VjpResult::second_type&>()(std::declval<const Values&>()));
  static constexpr std::size_t grad_offset = Staged ? 1 : 0;  // a staged post stage's first gradient is the pre value's
  using CarryGrad = std::tuple_element_t<grad_offset, BodyGrads>;
  using XtGrad = typename step_input_grad<SplitX, XtV, BodyGrads, grad_offset + 1>::type;
};
template <class Step, class PreV, class CarryV, class XtV>
struct hand_derived_step_types {
  using Values = typename decltype(std::declval<const Step&>().post.forward(
      std::declval<const PreV&>(), std::declval<const CarryV&>(), std::declval<const XtV&>()))::first_type;
  using CarryGrad = CarryV;
  using XtGrad = materialized_tensor_t<XtV>;
};

/// Everything one scan shares among its output nodes: the inputs' values, the per-step pullbacks
/// (or, checkpointing, the per-step carries) and the outputs.
template <class Step, class Init, class Xs, class Params>
struct ScanState {
  static constexpr bool staged = is_scan_stages<Step>::value;
  using CarryV = scan_values_t<Init>;
  using XsV = scan_values_t<Xs>;
  using XtV = decltype(select_step(std::declval<const XsV&>(), 0));
  using ParamsV = params_value_t<Params>;
  using PreV = typename pre_value<Step, CarryV, XtV, ParamsV>::type;
  static constexpr std::size_t pre_parts = [] {
    if constexpr (is_scan_stages<Step>::value) {
      return Step::parts;
    } else {
      return std::size_t{1};
    }
  }();
  static constexpr bool split_x = [] {
    if constexpr (is_scan_stages<Step>::value) {
      return Step::split_input;
    } else {
      return false;
    }
  }();
  static constexpr std::size_t x_parts = split_x ? pre_parts : 1;
  using PostPreV = decltype(split_parts<pre_parts>(std::declval<const PreV&>()));  // what post receives
  using PostXV = decltype(split_parts<x_parts>(std::declval<const XtV&>()));
  using Body = ScanBody<Step>;
  static constexpr bool hand_derived = has_hand_derived_post<Step>::value;
  using Types = std::conditional_t<hand_derived, hand_derived_step_types<Step, PreV, CarryV, XtV>,
                                   derived_step_types<staged, split_x, Body, PostPreV, CarryV, PostXV, ParamsV, XtV>>;
  using Values = typename Types::Values;  // carry components..., output
  using CarryGrad = typename Types::CarryGrad;
  using XtGrad = typename Types::XtGrad;
  using ParamsGrad = ParamsV;  // a tensor's gradient has its type; a parameter struct's is a copy of it
  /// One step's gradients: the carry's, the input's, the parameters' (plain steps) and the pre
  /// value's (staged steps: the parameters' gradient is taken from them once, after the loop).
  using StepGrads = std::tuple<CarryGrad, XtGrad, std::conditional_t<staged, std::tuple<>, ParamsGrad>, PreV>;
  static constexpr std::size_t carry_count = std::tuple_size_v<flat_t<Init>>;
  using YT = std::tuple_element_t<carry_count, Values>;
  using YsV = Tensor<value_type_t<YT>, rank_v<YT> + 1, backend_t<YT>>;
  using CarryMasks = typename step_masks<flat_t<CarryV>>::type;
  using MaskedBody = ScanBody<Step, CarryMasks, step_mask_t<YT>>;
  using FlatCarry = flat_t<CarryV>;
  using Pullback = std::function<StepGrads(const Values&)>;

  Step step;
  ParamsV params;
  XsV xs;
  ScanOptions options;
  index_t steps = 0;
  bool recorded = false;          ///< run inside a sweep: the backward is available
  std::vector<Pullback> pullbacks;  // by time index
  std::vector<CarryV> carries;    // the carry entering step t (checkpointing, staged steps)
  FlatCarry final_carry;
  YsV ys;

  ScanState(Step s, const CarryV& init, XsV x, ParamsV p, ScanOptions o)
      : step(std::move(s)), params(std::move(p)), xs(std::move(x)), options(std::move(o)) {
    steps = leading_extent();
    check_lengths(init);
    run(init);
  }

  /// Time index of the s-th step run.
  index_t time_of(index_t s) const { return options.reverse ? steps - 1 - s : s; }
  bool masked_at(index_t t) const {
    return std::any_of(options.lengths.begin(), options.lengths.end(), [t](index_t n) { return t >= n; });
  }
  MaskedBody masked_body(index_t t) const { return masked_body_impl(t, std::make_index_sequence<carry_count>{}); }
  bool keeps_carries() const { return recorded && (options.checkpoint || staged); }

  /// Runs the step at time t from `carry` and hands `use` its outputs and (if asked) its pullback.
  template <class F>
  void with_step(const CarryV& carry, index_t t, bool want_pullback, F&& use) const {
    const XtV xt = select_step(xs, t);
    if constexpr (hand_derived) {
      hand_derived_step(carry, xt, t, want_pullback, use);
    } else {
      derived_step(carry, xt, t, want_pullback, use);
    }
  }

  /// A step with a hand-derived post stage. Masked examples keep their carry and output zeros, as
  /// in ScanBody; their cotangents pass to the carry they kept.
  template <class F>
  void hand_derived_step(const CarryV& carry, const XtV& xt, index_t t, bool want_pullback, F& use) const {
    std::optional<MaskedBody> masks;
    if (masked_at(t)) masks.emplace(masked_body(t));
    const PreCarryBody<Step, ParamsV> pre_body{&step, &params};
    if (!want_pullback) {
      const PreV pre = values_of_struct(pre_body(carry));
      const Values fresh = step.post.forward(pre, carry, xt).first;
      use(masks ? masked_values(fresh, carry, *masks) : fresh, Pullback());
      return;
    }
    auto pre_result = vjp(pre_body, carry);
    auto forward = step.post.forward(pre_result.first, carry, xt);
    const Values values = masks ? masked_values(forward.first, carry, *masks) : forward.first;
    use(values, Pullback([pre_pullback = std::move(pre_result.second), saved = std::move(forward.second),
                          post = &step.post, masks](const Values& cot) mutable {
          auto grads = masks ? post->backward(saved, masked_cotangent(cot, *masks)) : post->backward(saved, cot);
          const PreV& dpre = std::get<0>(grads);
          const CarryV from_pre = std::get<0>(pre_pullback(dpre));
          CarryV dcarry = add_values(std::get<1>(grads), from_pre);
          if (masks) dcarry = add_values(dcarry, kept_carry_cotangent(cot, *masks));
          return StepGrads(std::move(dcarry), std::move(std::get<2>(grads)), std::tuple<>{}, dpre);
        }));
  }
  template <class M, std::size_t... C>
  static Values masked_values_impl(const Values& fresh, const CarryV& old, const M& m, std::index_sequence<C...>) {
    const auto old_flat = as_flat(old);
    using T = value_type_t<YT>;
    return Values(std::tuple_element_t<C, Values>(where(std::get<C>(m.carry_masks), std::get<C>(fresh), std::get<C>(old_flat)))...,
                  YT(where(m.y_mask, std::get<carry_count>(fresh), T(0))));
  }
  static Values masked_values(const Values& fresh, const CarryV& old, const MaskedBody& m) {
    return masked_values_impl(fresh, old, m, std::make_index_sequence<carry_count>{});
  }
  template <std::size_t... C>
  static Values masked_cotangent_impl(const Values& cot, const MaskedBody& m, std::index_sequence<C...>) {
    using T = value_type_t<YT>;
    return Values(std::tuple_element_t<C, Values>(where(std::get<C>(m.carry_masks), std::get<C>(cot), T(0)))...,
                  YT(where(m.y_mask, std::get<carry_count>(cot), T(0))));
  }
  static Values masked_cotangent(const Values& cot, const MaskedBody& m) {
    return masked_cotangent_impl(cot, m, std::make_index_sequence<carry_count>{});
  }
  template <std::size_t... C>
  static CarryV kept_carry_cotangent_impl(const Values& cot, const MaskedBody& m, std::index_sequence<C...>) {
    using T = value_type_t<YT>;
    return from_flat<CarryV>(FlatCarry(std::tuple_element_t<C, FlatCarry>(where(std::get<C>(m.carry_masks), T(0), std::get<C>(cot)))...));
  }
  static CarryV kept_carry_cotangent(const Values& cot, const MaskedBody& m) {
    return kept_carry_cotangent_impl(cot, m, std::make_index_sequence<carry_count>{});
  }

  /// A step whose backward is derived from its body's expression.
  template <class F>
  void derived_step(const CarryV& carry, const XtV& xt, index_t t, bool want_pullback, F& use) const {
    auto go = [&](const auto& body) {
      if (want_pullback) {
        if constexpr (staged) {
          // (Not structured bindings: C++17 lambdas cannot capture them.)
          auto pre_result = vjp(PreBody<Step, ParamsV>{&step, &params}, carry, xt);
          auto post_result =
              scan_body_vjp<staged>(body, split_parts<pre_parts>(pre_result.first), carry, split_parts<x_parts>(xt), params);
          use(post_result.first, Pullback([pre_pullback = std::move(pre_result.second),
                                           post_pullback = std::move(post_result.second)](const Values& cot) mutable {
                auto post = post_pullback(cot);
                const PreV dpre = join_parts<pre_parts, PreV>(std::get<0>(post));
                auto [dcarry, dx] = pre_pullback(dpre);
                const XtGrad dx_post = join_parts<x_parts, XtGrad>(std::get<2>(post));
                return StepGrads(add_values(std::get<1>(post), dcarry), add_values(dx_post, dx), std::tuple<>{}, dpre);
              }));
        } else {
          auto result = scan_body_vjp<staged>(body, PreV{}, carry, xt, params);
          use(result.first, Pullback([pullback = std::move(result.second)](const Values& cot) mutable {
                auto g = pullback(cot);
                return StepGrads(std::get<0>(g), std::get<1>(g), std::get<2>(g), PreV{});
              }));
        }
      } else {
        const auto out = [&] {
          if constexpr (staged) {
            const PreV pre = values_of_struct(PreBody<Step, ParamsV>{&step, &params}(carry, xt));
            return body(split_parts<pre_parts>(pre), carry, split_parts<x_parts>(xt));
          } else {
            return body(carry, xt, params);
          }
        }();
        const Values values = std::apply([](const auto&... o) { return Values(materialized_tensor_t<std::decay_t<decltype(o)>>(o)...); }, out);
        use(values, Pullback());
      }
    };
    if (masked_at(t)) {
      go(masked_body(t));
    } else {
      go(Body{&step, {}, {}});
    }
  }

  void run(const CarryV& init) {
    recorded = active_cache_epoch() != 0;
    const auto n = static_cast<std::size_t>(steps);
    if (keeps_carries()) carries.resize(n);
    if (recorded && !options.checkpoint) pullbacks.resize(n);
    std::vector<YT> ys_list(n);
    CarryV carry = init;
    for (index_t s = 0; s < steps; ++s) {
      const index_t t = time_of(s);
      const auto ti = static_cast<std::size_t>(t);
      if (keeps_carries()) carries[ti] = carry;
      with_step(carry, t, recorded && !options.checkpoint, [&](const Values& values, Pullback pullback) {
        if (pullback) pullbacks[ti] = std::move(pullback);
        CarryV next = from_flat<Init>(first_components(values));
        check_carry_shape(carry, next);
        carry = std::move(next);
        ys_list[ti] = std::get<carry_count>(values);
      });
    }
    final_carry = as_flat(carry);
    ys = stack(ys_list, 0);
  }

  /// Backpropagation through time for a cotangent of output K (K < carry_count: that component of
  /// the final carry; K == carry_count: the stacked outputs). Returns the gradients of the initial
  /// carry's components, of the inputs' components and of the parameters, as one flat tuple.
  template <std::size_t K, class G>
  auto backward(const G& cotangent) const {
    if (!recorded) {
      throw value_error("scan: a gradient was requested for a scan evaluated outside value_and_grad/grad/vjp");
    }
    FlatCarry dcarry = std::apply([](const auto&... c) { return FlatCarry(std::decay_t<decltype(c)>(c.shape())...); }, final_carry);
    if constexpr (K < carry_count) std::get<K>(dcarry) = cotangent;
    const YT zero_y(ys.select(0, 0).shape());
    auto dxs = uninitialized_like(xs);
    std::optional<ParamsGrad> dparams;
    std::vector<PreV> dpre(staged ? static_cast<std::size_t>(steps) : 0);
    for (index_t s = steps - 1; s >= 0; --s) {
      const index_t t = time_of(s);
      const auto ti = static_cast<std::size_t>(t);
      YT dy = zero_y;
      if constexpr (K == carry_count) dy = cotangent.select(0, t);
      const Values cot = std::tuple_cat(dcarry, std::make_tuple(dy));
      std::optional<StepGrads> grads;
      if (options.checkpoint) {
        with_step(carries[ti], t, true, [&](const Values&, Pullback pullback) { grads.emplace(pullback(cot)); });
      } else {
        grads.emplace(pullbacks[ti](cot));
      }
      dcarry = as_flat(std::get<0>(*grads));
      write_step(dxs, std::get<1>(*grads), t);
      if constexpr (staged) {
        dpre[ti] = std::get<3>(*grads);
      } else if (dparams) {
        accumulate_into(*dparams, std::get<2>(*grads));
      } else {
        dparams.emplace(std::get<2>(*grads));
      }
    }
    if constexpr (staged) dparams.emplace(pre_parameter_gradient(dpre));
    return std::tuple_cat(dcarry, as_flat(dxs), param_leaves(*dparams));
  }

 private:
  /// The parameters' gradient of a staged step's pre stage, taken once over every step: the pre
  /// stage treats axis 0 as independent examples, so it runs on all steps' carries and inputs as one
  /// batch with the per-step cotangents of its value stacked the same way (one GEMM where a
  /// recurrent matmul's weight would otherwise take one small GEMM and one addition per step).
  ParamsGrad pre_parameter_gradient(const std::vector<PreV>& dpre) const {
    if constexpr (std::is_same_v<ParamsV, std::tuple<>>) {
      return ParamsGrad{};
    } else {
      const auto carries_all = stack_merged(carries);
      const auto dpre_all = stack_merged(dpre);
      const Step* st = &step;
      auto f = [&](const auto& p) {
        if constexpr (hand_derived) {
          return call_pre(*st, carries_all, NoStepInput{}, p);
        } else {
          const auto xs_all = std::apply([](const auto&... x) { return std::make_tuple(merge_time(x)...); }, as_flat(xs));
          return call_pre(*st, carries_all, from_flat<Xs>(xs_all), p);
        }
      };
      using Plan = GradPlan<decltype(f), ParamsV>;
      CacheEpochScope scope(new_cache_epoch());
      const auto out = call_with_vars<0>(f, std::tuple<const ParamsV&>(params), std::index_sequence<0>{});
      const auto sweep = [&](const auto& sink) {
        if constexpr (is_std_tuple<std::decay_t<decltype(out)>>::value) {
          return sweep_outputs<Plan::match_tensors>(out, dpre_all, sink, std::make_index_sequence<std::tuple_size_v<PreV>>{});
        } else {
          return reverse_sweep<0, Plan::match_tensors>(out, dpre_all, sink);
        }
      };
      return std::get<0>(gradients_from<Plan::match_tensors>(sweep, std::tuple<const ParamsV&>(params)));
    }
  }
  template <std::size_t... C>
  MaskedBody masked_body_impl(index_t t, std::index_sequence<C...>) const {
    return MaskedBody{&step, CarryMasks(step_mask<std::tuple_element_t<C, FlatCarry>>(options.lengths, t)...),
                      step_mask<YT>(options.lengths, t)};
  }
  index_t leading_extent() const {
    index_t T = -1;
    std::apply(
        [&](const auto&... x) {
          auto one = [&](const auto& v) {
            static_assert(rank_v<std::decay_t<decltype(v)>> >= 1, "tessera::scan: inputs need a leading time axis");
            if (T >= 0 && v.shape()[0] != T) {
              throw shape_error("scan: inputs of " + std::to_string(T) + " and " + std::to_string(v.shape()[0]) +
                                " steps (axis 0 is time and must agree)");
            }
            T = v.shape()[0];
          };
          (one(x), ...);
        },
        as_flat(xs));
    if (T <= 0) throw value_error("scan: an input sequence with no steps");
    return T;
  }
  void check_lengths(const CarryV& init) const {
    if (options.lengths.empty()) return;
    const auto n = static_cast<index_t>(options.lengths.size());
    auto check_batch = [&](const auto& v, const char* what) {
      if (rank_v<std::decay_t<decltype(v)>> == 0 || v.shape()[0] != n) {
        throw shape_error(std::string("scan: ") + std::to_string(n) + " lengths for a " + what + " of shape " +
                          shape_to_string(v.shape()) + " (lengths need one per example, along axis 0)");
      }
    };
    std::apply([&](const auto&... c) { (check_batch(c, "carry"), ...); }, as_flat(init));
    std::apply([&](const auto&... x) { (check_batch(x.select(0, 0), "step input"), ...); }, as_flat(xs));
    for (std::size_t b = 0; b < options.lengths.size(); ++b) {
      const index_t len = options.lengths[b];
      if (len < 0 || len > steps) {
        throw value_error("scan: length " + std::to_string(len) + " of example " + std::to_string(b) +
                          " is outside [0, " + std::to_string(steps) + "] (the input has " + std::to_string(steps) +
                          " steps)");
      }
    }
  }
  template <std::size_t... C>
  static auto first_components_impl(const Values& v, std::index_sequence<C...>) {
    return std::make_tuple(std::get<C>(v)...);
  }
  static auto first_components(const Values& v) { return first_components_impl(v, std::make_index_sequence<carry_count>{}); }
  template <class V>
  static auto uninitialized_like(const V& v) {
    if constexpr (is_std_tuple<V>::value) {
      return std::apply([](const auto&... x) { return std::make_tuple(std::decay_t<decltype(x)>::uninitialized(x.shape())...); }, v);
    } else {
      return V::uninitialized(v.shape());
    }
  }
  template <class D, class G>
  static void write_step(D& dxs, const G& g, index_t t) {
    if constexpr (is_std_tuple<D>::value) {
      write_tuple(dxs, g, t, std::make_index_sequence<std::tuple_size_v<D>>{});
    } else {
      dxs.select(0, t).assign(g);
    }
  }
  template <class D, class G, std::size_t... C>
  static void write_tuple(D& dxs, const G& g, index_t t, std::index_sequence<C...>) {
    (std::get<C>(dxs).select(0, t).assign(std::get<C>(g)), ...);
  }
};

/// One output of a scan in the surrounding expression: component K of the final carry (K <
/// carry_count) or the stacked outputs (K == carry_count). Its grad rule runs the scan's backward
/// and hands the initial carry, the inputs and the parameters their gradients as plain tensors.
template <class Step, class Init, class Xs, class Params, std::size_t K>
struct ScanOutput : ExprBase<ScanOutput<Step, Init, Xs, Params, K>> {
  using State = ScanState<Step, Init, Xs, Params>;
  using Out = std::conditional_t<(K < State::carry_count), std::tuple_element_t<K, typename State::Values>, typename State::YsV>;
  using value_type = value_type_t<Out>;
  using backend_type = backend_t<Out>;
  static constexpr std::size_t rank = rank_v<Out>;
  static constexpr const char* name = "scan";

  std::shared_ptr<const State> state;
  flat_t<Init> init;
  flat_t<Xs> xs;
  decltype(param_leaves(std::declval<params_value_t<Params>&>())) params;  ///< the outer sweep routes gradients by these
  std::conditional_t<has_parameters<Params>::value, std::tuple<>, Params> param_exprs;

  ScanOutput(std::shared_ptr<const State> s, const Init& i, const Xs& x, const Params& p)
      : state(std::move(s)), init(as_flat(i)), xs(as_flat(x)), params(leaves_of(*state)), param_exprs(exprs_of(p)) {}

  const Out& value() const {
    if constexpr (K < State::carry_count) {
      return std::get<K>(state->final_carry);
    } else {
      return state->ys;
    }
  }
  const auto& shape() const { return value().shape(); }
  std::optional<Out> alias() const { return value(); }
  void evaluate_into(Out& out) const { out.assign(value()); }
  template <class F>
  void for_each_tensor(F&& f) const {
    std::apply([&](const auto&... e) { (detail::for_each_tensor(e, f), ...); }, init);
    std::apply([&](const auto&... e) { (detail::for_each_tensor(e, f), ...); }, xs);
  }

  auto inputs() const {
    auto tie_all = [](const auto&... e) { return std::tie(e...); };
    if constexpr (has_parameters<Params>::value) {
      return std::tuple_cat(std::apply(tie_all, init), std::apply(tie_all, xs), std::apply(tie_all, params));
    } else {
      return std::tuple_cat(std::apply(tie_all, init), std::apply(tie_all, xs), std::apply(tie_all, param_exprs));
    }
  }
  template <class G>
  auto input_adjoints(const G& g) const {
    const Out cotangent = sum_to(g, value().shape());
    return state->template backward<K>(cotangent);
  }

 private:
  static auto leaves_of(const State& s) {
    auto copy = s.params;
    return param_leaves(copy);
  }
  static auto exprs_of(const Params& p) {
    if constexpr (has_parameters<Params>::value) {
      return std::tuple<>{};
    } else {
      return p;
    }
  }
};

template <class Step, class Init, class Xs, class Params, std::size_t... K>
auto scan_outputs(const std::shared_ptr<const ScanState<Step, Init, Xs, Params>>& state, const Init& init, const Xs& xs,
                  const Params& params, std::index_sequence<K...>) {
  constexpr std::size_t n = ScanState<Step, Init, Xs, Params>::carry_count;
  auto carry = std::make_tuple(ScanOutput<Step, Init, Xs, Params, K>(state, init, xs, params)...);
  ScanOutput<Step, Init, Xs, Params, n> ys(state, init, xs, params);
  if constexpr (is_std_tuple<Init>::value) {
    return std::make_pair(carry, ys);
  } else {
    return std::make_pair(std::get<0>(carry), ys);
  }
}

}  // namespace detail

/// Runs `step(carry, x_t, params)` for t = 0 .. T-1 (T = the leading extent of xs) and returns
/// {final carry, stacked outputs}. `init` and `xs` are expressions or std::tuples of expressions;
/// `params` is a parameter struct (a module: its tensors get gradients summed over the steps) or a
/// std::tuple of expressions. The step returns a std::pair (or tuple) {new carry, output}, the new
/// carry in the structure of `init`; the outputs are stacked along a new leading axis.
template <class Step, class Init, class Xs, class Params>
auto scan(Step step, const Init& init, const Xs& xs, const Params& params, ScanOptions options = {}) {
  static_assert(detail::has_parameters<Params>::value || detail::is_std_tuple<Params>::value,
                "tessera::scan: params must be a parameter struct (a module) or a std::tuple of expressions");
  static_assert(detail::max_level_below<detail::probe_level, std::decay_t<decltype(detail::as_flat(init))>>::value <= 0 &&
                    detail::max_level_below<detail::probe_level, std::decay_t<decltype(detail::as_flat(xs))>>::value <= 0,
                "tessera::scan: higher-order gradients through a scan are not supported");
  using State = detail::ScanState<Step, Init, Xs, Params>;
  auto state = std::make_shared<const State>(std::move(step), detail::values_of_struct(init), detail::values_of_struct(xs),
                                             detail::params_value(params), std::move(options));
  return detail::scan_outputs(std::shared_ptr<const State>(state), init, xs, params,
                              std::make_index_sequence<State::carry_count>{});
}

/// scan without parameters: `step(carry, x_t)`.
template <class Step, class Init, class Xs>
auto scan(Step step, const Init& init, const Xs& xs, ScanOptions options = {}) {
  return scan(std::move(step), init, xs, std::tuple<>{}, std::move(options));
}

}  // namespace tessera
