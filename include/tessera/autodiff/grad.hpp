// grad, value_and_grad and vjp: reverse-mode differentiation of a C++ callable built from tessera
// expressions. The sweep (backward.hpp) is resolved at compile time from the expression's type;
// at run time one forward evaluation fills the cache of materialization points, then the
// gradients are evaluated -- all same-shaped gradients in one fused pass.
//
// Arguments may be tensors, std::tuples of tensors (nested), or parameter structs: any struct
// with `auto parameters()` (and a const overload) returning std::tie(member tensors...). Tensors and
// tuples reach f as Var leaves (expressions), so f must be generic (auto parameters) and use free
// functions (transpose(x), reshape(x, ...)) rather than tensor methods on them; struct members
// reach f unchanged and their gradients are matched by storage (first order only).
#pragma once

#include <algorithm>
#include <array>
#include <functional>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/autodiff/backward.hpp"
#include "tessera/autodiff/gradient_arena.hpp"
#include "tessera/autodiff/var.hpp"
#include "tessera/core/factories.hpp"
#include "tessera/core/numerics.hpp"
#include "tessera/expr/assign.hpp"
#include "tessera/expr/cache.hpp"
#include "tessera/expr/shape_ops.hpp"

namespace tessera {

namespace detail {

template <class A, class = void>
struct has_parameters : std::false_type {};
template <class A>
struct has_parameters<A, std::void_t<decltype(std::declval<A&>().parameters())>> : std::true_type {};

template <class A>
struct is_std_tuple : std::false_type {};
template <class... T>
struct is_std_tuple<std::tuple<T...>> : std::true_type {};

/// What grad, value_and_grad and vjp differentiate with respect to: tensors (expressions),
/// std::tuples of them, and parameter structs (modules).
template <class A>
inline constexpr bool is_grad_argument_v = is_expr_v<A> || is_std_tuple<A>::value || has_parameters<A>::value;
template <class... A>
inline constexpr bool are_grad_arguments_v = (is_grad_argument_v<A> && ...);
#define TESSERA_GRAD_ARGUMENTS_MESSAGE "tessera::grad: arguments must be tensors, std::tuples of them, or parameter structs"

/// How many Var leaves an argument becomes.
template <class A>
struct var_count {
  static constexpr std::size_t value = has_parameters<A>::value ? 0 : 1;
};
template <class... T>
struct var_count<std::tuple<T...>> {
  static constexpr std::size_t value = (std::size_t{0} + ... + var_count<T>::value);
};

template <class... A>
constexpr std::array<std::size_t, sizeof...(A) + 1> var_offsets() {
  std::array<std::size_t, sizeof...(A) + 1> off{};
  std::size_t k = 0, acc = 0;
  ((off[k++] = acc, acc += var_count<A>::value), ...);
  off[k] = acc;
  return off;
}

/// The value f receives for an argument whose first Var index is I.
template <int L, std::size_t I, class A>
auto wrap_arg(const A& a);
template <int L, std::size_t I, class... T, std::size_t... K>
auto wrap_tuple(const std::tuple<T...>& t, std::index_sequence<K...>) {
  constexpr auto off = var_offsets<T...>();
  return std::make_tuple(wrap_arg<L, I + off[K]>(std::get<K>(t))...);
}
template <int L, std::size_t I, class A>
auto wrap_arg(const A& a) {
  if constexpr (is_std_tuple<A>::value) {
    return wrap_tuple<L, I>(a, std::make_index_sequence<std::tuple_size_v<A>>{});
  } else if constexpr (has_parameters<A>::value) {
    return a;
  } else {
    static_assert(is_expr_v<A>, TESSERA_GRAD_ARGUMENTS_MESSAGE);
    return Var<L, I, A>(a);
  }
}

/// Level of a grad call: one deeper than the deepest variable among its arguments.
template <class A>
struct arg_level {
  static constexpr int value = [] {
    if constexpr (is_expr_v<A>) {
      return max_level<A>::value;
    } else {
      return -1;
    }
  }();
};
template <class... T>
struct arg_level<std::tuple<T...>> {
  static constexpr int value = std::max({-1, arg_level<T>::value...});
};
template <class... A>
constexpr int grad_level() {
  return std::max({-1, arg_level<A>::value...}) + 1;
}

template <class... A>
inline constexpr bool has_parameter_struct_v = (has_parameters<A>::value || ...);

/// Flat list (in Var index order) of the tensors or expressions behind the Var leaves.
template <class A>
auto flatten_args(const A& a) {
  if constexpr (is_std_tuple<A>::value) {
    return std::apply([](const auto&... x) { return std::tuple_cat(flatten_args(x)...); }, a);
  } else if constexpr (has_parameters<A>::value) {
    return std::tuple<>{};
  } else {
    return std::tuple<A>(a);
  }
}

/// Gradient of flat argument K as a lazy expression of its shape.
/// (For nested grad.) Each contribution is reduced to the argument's shape before they are added.
template <std::size_t K, class Arg, class Contributions>
auto lazy_gradient(const Arg& arg, const Contributions& contributions) {
  using T = value_type_t<Arg>;
  auto total = sum_fitted_contributions<K>(NoContribution{}, contributions, arg.shape());
  if constexpr (std::is_same_v<decltype(total), NoContribution>) {
    return sum_to(Tensor<T, 0, backend_t<Arg>>(T(0)), arg.shape());
  } else {
    return total;
  }
}

/// The evaluated gradient of flat argument K: the adjoints added lazily (one fused pass) when their
/// shapes agree, else each reduced to the argument's shape separately.
template <std::size_t K, class Arg, class Contributions>
auto evaluate_gradient(const Arg& arg, const Contributions& contributions) {
  using T = value_type_t<Arg>;
  using G = Tensor<T, rank_v<Arg>, backend_t<Arg>>;
  auto total = sum_contributions<K>(NoContribution{}, contributions);
  if constexpr (std::is_same_v<decltype(total), NoContribution>) {
    return G(arg.shape());
  } else {
    if (contributions_align<K>(contributions)) {
      // A materialization node of the argument's shape (a matmul's adjoint, prod's) hands over its
      // buffer: copying it into the gradient would be one more pass. (gradients_from gives two
      // gradients that received the same buffer one copy each.)
      if constexpr (has_cache_slot<decltype(total)>::value && std::is_same_v<materialized_tensor_t<decltype(total)>, G>) {
        if (total.shape() == arg.shape()) return materialize(total);
      }
      return G(sum_to(total, arg.shape()));
    }
    return G(sum_fitted_contributions<K>(NoContribution{}, contributions, arg.shape()));
  }
}

template <class T>
struct same_types;
template <class T0, class... T>
struct same_types<std::tuple<T0, T...>> : std::bool_constant<(std::is_same_v<T0, T> && ...)> {};
template <>
struct same_types<std::tuple<>> : std::false_type {};

/// Evaluates the gradient of every flat argument; same-shaped ones in a single fused pass.
template <class Flat, class Contributions, std::size_t... K>
auto evaluate_gradients(const Flat& flat, const Contributions& contributions, std::index_sequence<K...>) {
  auto sums = std::make_tuple(sum_contributions<K>(NoContribution{}, contributions)...);
  using Grads = std::tuple<decltype(eval(std::get<K>(flat)))...>;
  constexpr bool all_present = (!std::is_same_v<std::tuple_element_t<K, decltype(sums)>, NoContribution> && ...);
  if constexpr (sizeof...(K) > 1 && all_present && same_types<Grads>::value) {
    const auto shape = std::get<0>(flat).shape();
    const bool fusable = ((std::get<K>(sums).shape() == shape && std::get<K>(flat).shape() == shape &&
                           contributions_align<K>(contributions)) &&
                          ...);
    if (fusable) {
      using G0 = std::tuple_element_t<0, Grads>;
      Grads grads{(static_cast<void>(K), G0::uninitialized(shape))...};
      std::array<G0*, sizeof...(K)> dsts{&std::get<K>(grads)...};
      elementwise_assign_multi(backend_t<G0>{}, dsts, sums, std::index_sequence<K...>{});
      for (const auto* g : dsts) check_numerics_hook(*g, "gradient");
      return grads;
    }
  }
  return Grads{evaluate_gradient<K>(std::get<K>(flat), contributions)...};
}

/// A parameter's gradient before any contribution reached it: a tensor without storage. (Only
/// rank 0 has storage from the start, one zero, and there adding to it costs nothing.)
template <class P>
P unset_gradient(const P&) {
  return P();
}
template <class G>
bool gradient_unset(const G& g) {
  return rank_v<G> > 0 && g.storage_id() == nullptr;
}

/// Rebuilds the argument structure from the flat gradients.
template <std::size_t I, class A, class Flat>
auto unflatten(const A& a, Flat& flat_grads);
template <std::size_t I, class... T, std::size_t... K, class Flat>
auto unflatten_tuple(const std::tuple<T...>& t, Flat& flat_grads, std::index_sequence<K...>) {
  constexpr auto off = var_offsets<T...>();
  return std::make_tuple(unflatten<I + off[K]>(std::get<K>(t), flat_grads)...);
}
template <std::size_t I, class A, class Flat>
auto unflatten(const A& a, Flat& flat_grads) {
  if constexpr (is_std_tuple<A>::value) {
    return unflatten_tuple<I>(a, flat_grads, std::make_index_sequence<std::tuple_size_v<A>>{});
  } else if constexpr (has_parameters<A>::value) {
    // (A struct argument of its own is filled in by the sweep; see unflatten_arg.)
    static_assert(dependent_false_v<A>,
                  "tessera::grad: a parameter struct inside a std::tuple argument gets no gradients; pass it as an "
                  "argument of its own");
    return a;
  } else {
    return std::get<I>(flat_grads);
  }
}

/// Adds the gradient `value` of a plain-tensor leaf to the gradient of `param` when the leaf is the
/// parameter or a view of it (same storage); false when it is not.
///
/// A first gradient is taken over, not copied: when it is a materialization node's buffer (a
/// Linear weight's adjoint is a matmul; see leaf_gradient) the parameter's gradient costs one
/// GEMM. Other copies of that node may still read the buffer, so later contributions rebind instead
/// of adding in place (Tensor's assignment writes in place only into an unshared buffer), and
/// finish_struct_gradients gives two parameters that received the same buffer one copy each.
template <class T, std::size_t RL, class B, class Param, class Grad>
bool add_if_same_storage(const Tensor<T, RL, B>& leaf, const Tensor<T, RL, B>& value, const Param& param, Grad& grad) {
  if constexpr (!std::is_same_v<T, value_type_t<Param>> || !std::is_same_v<B, backend_t<Param>>) {
    return false;
  } else {
    if (leaf.storage_id() != param.storage_id()) return false;
    if constexpr (RL == rank_v<Param>) {
      if (leaf.data() == param.data() && leaf.shape() == param.shape() && leaf.strides() == param.strides()) {
        grad = gradient_unset(grad) ? value : Grad(grad + value);
        return true;
      }
    }
    // A view of the parameter: accumulate through the same view of the (contiguous) gradient.
    if (!param.is_contiguous()) {
      throw value_error("tessera::grad: a view of a non-contiguous parameter cannot receive a gradient");
    }
    if (shared_memory_axis(leaf) >= 0) {
      throw value_error("tessera::grad: a broadcast_to view of a parameter cannot receive a gradient; "
                        "broadcast inside the expression instead");
    }
    // The view is written in place, so into a buffer of the gradient's own.
    if (gradient_unset(grad)) {
      grad = zeros_like(param);
    } else if (grad.storage().use_count() > 1) {
      grad = grad.clone();
    }
    auto view = Tensor<T, RL, B>::view_of(grad.storage(), grad.data() + (leaf.data() - param.data()), leaf.shape(),
                                          leaf.strides());
    view += value;
    return true;
  }
}

/// The gradient of a plain-tensor leaf from its adjoint: the adjoint reduced to the leaf's shape,
/// or, when the adjoint is a materialization node of that shape, the node's buffer itself. Given a
/// `slot` (a GradientArena's, contiguous, of the leaf's shape), such a node not yet computed in
/// this sweep is computed into the slot, which then serves as the node's buffer; any other
/// gradient is copied into its slot later (finish_struct_gradients).
template <class T, std::size_t R, class B, class Adj>
Tensor<T, R, B> leaf_gradient(const Tensor<T, R, B>& leaf, const Adj& adjoint, std::optional<Tensor<T, R, B>> slot) {
  if constexpr (has_cache_slot<Adj>::value && rank_v<Adj> == R && std::is_same_v<materialized_tensor_t<Adj>, Tensor<T, R, B>>) {
    if (adjoint.shape() == leaf.shape()) {
      const std::uint64_t epoch = active_cache_epoch();
      if (slot && epoch != 0 && adjoint.cache && adjoint.cache->epoch != epoch) {
        adjoint.evaluate_into(*slot);
        check_numerics_hook(*slot, op_name(adjoint));
        adjoint.cache->value = *slot;
        adjoint.cache->epoch = epoch;
        return *slot;
      }
      return materialize(adjoint);
    }
  }
  return Tensor<T, R, B>(sum_to(adjoint, leaf.shape()));
}

/// Calls f(parameter, its gradient) for every parameter of every struct argument, in order, until f
/// returns true; whether one did.
template <class Grads, class Args, class F, std::size_t... K>
bool find_parameter(Grads& grads, const Args& args, const F& f, std::index_sequence<K...>) {
  bool done = false;
  auto visit_arg = [&](const auto& arg, auto& g) {
    using Arg = std::decay_t<decltype(arg)>;
    if constexpr (has_parameters<Arg>::value) {
      if (done) return;
      Arg copy = arg;  // parameters() is non-const; the copy shares the tensors
      auto params = copy.parameters();
      auto gparams = g.parameters();
      std::apply(
          [&](const auto&... p) {
            std::apply([&](auto&... gp) { ((done = done || f(p, gp)), ...); }, gparams);
          },
          params);
    }
  };
  (visit_arg(std::get<K>(args), std::get<K>(grads)), ...);
  return done;
}

/// Whether some parameter of a struct argument shares the storage `id`.
struct SharesStorage {
  const void* id;
  template <class P, class G>
  bool operator()(const P& p, G&) const {
    return p.storage_id() == id;
  }
};

/// Adds a leaf's gradient to the parameter it is (or is a view of). Depends on the leaf's tensor
/// type only, not on the adjoint's expression, so it is compiled once per tensor type.
template <class T, std::size_t R, class B>
struct AddToParameter {
  const Tensor<T, R, B>& leaf;
  const Tensor<T, R, B>& value;
  template <class P, class G>
  bool operator()(const P& p, G& g) const {
    return add_if_same_storage(leaf, value, p, g);
  }
};

/// Adds the adjoint of a plain tensor leaf to the gradient of the parameter (of any struct
/// argument) it is. The adjoint is evaluated only for a leaf that is a parameter (not, say, for the
/// input images).
template <class T, std::size_t R, class B, class E, class Grads, class Args, std::size_t... K>
void route_one(const Tensor<T, R, B>& leaf, const E& adjoint, Grads& grads, const Args& args,
               const GradientArena* arena, std::index_sequence<K...> k) {
  if (!find_parameter(grads, args, SharesStorage{leaf.storage_id()}, k)) return;
  std::optional<Tensor<T, R, B>> slot;
  if (arena != nullptr) slot = arena->claim(leaf);
  const Tensor<T, R, B> value = leaf_gradient(leaf, adjoint, std::move(slot));
  find_parameter(grads, args, AddToParameter<T, R, B>{leaf, value}, k);
}

/// The sweep's sink for parameter structs: routes each plain tensor leaf's adjoint as the sweep
/// reaches it. `grads` holds, for each argument, the gradients of a struct's parameters (unset until
/// a contribution reaches them; see unset_struct_gradients). `arena`: where they go, or null.
template <class StructGrads, class Args>
struct RouteToParameters {
  StructGrads& grads;
  const Args& args;
  const GradientArena* arena;
  template <class Leaf, class E>
  void operator()(const Leaf& leaf, const E& adjoint) const {
    route_one(leaf, adjoint, grads, args, arena, std::make_index_sequence<std::tuple_size_v<Args>>{});
  }
};

/// Called on gradients in turn, replaces one whose buffer an earlier one holds by a copy.
struct UnshareBuffers {
  std::vector<const void*> seen;
  template <class G>
  void operator()(G& g) {
    const void* id = g.storage_id();
    if (id == nullptr) return;
    if (std::find(seen.begin(), seen.end(), id) != seen.end()) {
      g = g.clone();
    } else {
      seen.push_back(id);
    }
  }
};

/// Gives a parameter no contribution reached a zero gradient, and one whose gradient shares a
/// buffer with an earlier one's (see add_if_same_storage) a copy of its own. With a GradientArena
/// in use, a parameter that has a slot gets its gradient there (copied in unless computed there);
/// a struct that lists one tensor twice gets the slot for the first (the one routing fills).
struct FinishGradient {
  UnshareBuffers& unshare;
  const GradientArena* arena;
  template <class P, class G>
  bool operator()(const P& p, G& g) const {
    if constexpr (std::is_same_v<P, G>) {
      if (arena != nullptr) {
        if (auto slot = arena->finish(p, g)) {
          g = *slot;
          // Slots never share elements, but a gradient without a slot that holds a node's buffer
          // computed into one must get a copy: the arena counts as seen.
          if (std::find(unshare.seen.begin(), unshare.seen.end(), g.storage_id()) == unshare.seen.end()) {
            unshare.seen.push_back(g.storage_id());
          }
          return false;
        }
      }
    }
    if (gradient_unset(g)) g = zeros_like(p);
    unshare(g);
    return false;  // visit every parameter
  }
};

template <class Grads, class Args, std::size_t... K>
void finish_struct_gradients(Grads& grads, const Args& args, const GradientArena* arena, std::index_sequence<K...> k) {
  UnshareBuffers unshare;
  find_parameter(grads, args, FinishGradient{unshare, arena}, k);
}

/// The gradient of top-level argument K: a parameter struct's from the sweep (struct_grads), any
/// other rebuilt from the flat gradients.
template <std::size_t K, class... A, class Flat, class StructGrads>
auto unflatten_arg(const std::tuple<const A&...>& args, Flat& flat_grads, StructGrads& struct_grads) {
  using Arg = std::tuple_element_t<K, std::tuple<A...>>;
  if constexpr (has_parameters<Arg>::value) {
    return std::move(std::get<K>(struct_grads));
  } else {
    constexpr auto off = var_offsets<A...>();
    return unflatten<off[K]>(std::get<K>(args), flat_grads);
  }
}

template <class... A, class Flat, class StructGrads, std::size_t... K>
auto unflatten_args(const std::tuple<const A&...>& args, Flat& flat_grads, StructGrads& struct_grads,
                    std::index_sequence<K...>) {
  return std::make_tuple(unflatten_arg<K>(args, flat_grads, struct_grads)...);
}

/// A placeholder in unset_struct_gradients for an argument that is not a parameter struct.
struct NotAStruct {};

/// For each argument, a parameter struct's copy with every gradient unset (see gradient_unset),
/// for the sweep to fill in: the first contribution is written, not added to zeros.
template <class... A>
auto unset_struct_gradients(const std::tuple<const A&...>& args) {
  auto one = [](const auto& a) {
    using Arg = std::decay_t<decltype(a)>;
    if constexpr (has_parameters<Arg>::value) {
      Arg g = a;
      std::apply([](auto&... p) { ((p = unset_gradient(p)), ...); }, g.parameters());
      return g;
    } else {
      return NotAStruct{};
    }
  };
  return std::apply([&](const auto&... a) { return std::make_tuple(one(a)...); }, args);
}

template <class Contributions, std::size_t... K, class... X>
auto lazy_gradients(const Contributions& c, std::index_sequence<K...>, const X&... x) {
  return std::make_tuple(lazy_gradient<K>(x, c)...);
}

template <int Level, class F, class... A, std::size_t... K>
auto call_with_vars(F& f, const std::tuple<const A&...>& args, std::index_sequence<K...>) {
  constexpr auto offsets = var_offsets<A...>();
  return f(wrap_arg<Level, offsets[K]>(std::get<K>(args))...);
}

/// Var level used only to ask, in an unevaluated context, what type f returns (see GradPlan).
inline constexpr int probe_level = 1 << 20;

/// The compile-time plan of one grad call of F on arguments A...
///
/// Its level must exceed every variable f's result can contain: those of outer grad calls that
/// reach f through its arguments and those that f captures (a closure over an outer variable).
/// The captured ones are only visible in f's result type, so f's return type is first deduced with
/// the arguments at a probe level that is then ignored.
template <class F, class... A>
struct GradPlan {
  using probe_result =
      decltype(call_with_vars<probe_level>(std::declval<F&>(), std::declval<const std::tuple<const A&...>&>(),
                                           std::index_sequence_for<A...>{}));
  static constexpr int level = std::max(grad_level<A...>(), max_level_below<probe_level, probe_result>::value + 1);
  static constexpr bool match_tensors = has_parameter_struct_v<A...>;
  static constexpr auto offsets = var_offsets<A...>();
  static constexpr std::size_t vars = offsets[sizeof...(A)];
  static_assert(!(match_tensors && level > 0), "tessera::grad: parameter structs are supported for first-order gradients only");
};

/// Gives every gradient that shares its buffer with an earlier one (two arguments handed the
/// same node's buffer by evaluate_gradient) a copy of its own: users may write them in place.
template <class Grads>
void unshare_gradients(Grads& grads) {
  if constexpr (std::tuple_size_v<Grads> > 1) {
    UnshareBuffers unshare;
    std::apply([&](auto&... g) { (unshare(g), ...); }, grads);
  }
}

/// Runs the reverse sweep, `sweep(sink)` (a call of reverse_sweep at level 0), and evaluates the
/// gradients of every argument: parameter structs' as the sweep reaches their tensors (into
/// `arena`'s slots when one is given), the others' from the contributions it returns.
template <bool MatchTensors, class Sweep, class... A>
auto gradients_from(const Sweep& sweep, const std::tuple<const A&...>& args, const GradientArena* arena = nullptr) {
  constexpr std::size_t vars = var_offsets<A...>()[sizeof...(A)];
  auto struct_grads = unset_struct_gradients(args);
  const auto contributions = [&] {
    if constexpr (MatchTensors) {
      if (arena != nullptr) arena->begin_sweep();
      return sweep(RouteToParameters<decltype(struct_grads), std::tuple<const A&...>>{struct_grads, args, arena});
    } else {
      return sweep(NoTensorSink{});
    }
  }();
  auto flat = std::apply([](const auto&... x) { return std::tuple_cat(flatten_args(x)...); }, args);
  auto flat_grads = evaluate_gradients(flat, contributions, std::make_index_sequence<vars>{});
  unshare_gradients(flat_grads);
  auto grads = unflatten_args(args, flat_grads, struct_grads, std::index_sequence_for<A...>{});
  if constexpr (MatchTensors) finish_struct_gradients(grads, args, arena, std::index_sequence_for<A...>{});
  return grads;
}

/// The GradientArena in use on this thread, taken for one value_and_grad call: that call's sweep
/// fills its slots, while the grad and vjp calls nested in it (in f, or in a scan's steps during
/// the sweep) run without it; they would otherwise write their own gradients into the slots.
class TakeGradientArena {
 public:
  TakeGradientArena() : arena_(std::exchange(GradientArena::active(), nullptr)) {}
  ~TakeGradientArena() { GradientArena::active() = arena_; }
  TakeGradientArena(const TakeGradientArena&) = delete;
  TakeGradientArena& operator=(const TakeGradientArena&) = delete;
  const GradientArena* get() const noexcept { return arena_; }

 private:
  const GradientArena* arena_;
};

/// Value and gradients (evaluated at level 0, lazy at deeper levels) of f at args.
template <class F, class... A>
auto value_and_grad_impl(F& f, const A&... a) {
  using P = GradPlan<F, A...>;
  const std::tuple<const A&...> args(a...);
  using Out = typename P::probe_result;
  static_assert(is_expr_v<Out>, "tessera::grad: f must return a tessera expression");
  static_assert(rank_v<Out> == 0, "tessera::grad: f must return a scalar (rank-0) expression; use vjp for non-scalar outputs");
  using T = value_type_t<Out>;
  static_assert(std::is_floating_point_v<T>, "tessera::grad: f must return a floating-point value");
  if constexpr (P::level == 0) {
    // The sweep's epoch is open while f runs, so what f evaluates eagerly (nn::cut blocks) is
    // cached for the forward and backward that follow.
    CacheEpochScope scope(new_cache_epoch());
    const TakeGradientArena arena;
    auto out = call_with_vars<0>(f, args, std::index_sequence_for<A...>{});
    Tensor<T, 0, backend_t<decltype(out)>> value = out;
    const auto sweep = [&](const auto& sink) {
      return reverse_sweep<0, P::match_tensors>(out, Tensor<T, 0, backend_t<decltype(out)>>(T(1)), sink);
    };
    return std::make_pair(value, gradients_from<P::match_tensors>(sweep, args, arena.get()));
  } else {
    auto out = call_with_vars<P::level>(f, args, std::index_sequence_for<A...>{});
    auto flat = std::apply([](const auto&... x) { return std::tuple_cat(flatten_args(x)...); }, args);
    const auto contributions = reverse_sweep<P::level, false>(out, Tensor<T, 0, backend_t<decltype(out)>>(T(1)));
    auto flat_grads = std::apply(
        [&](const auto&... x) {
          return lazy_gradients(contributions, std::make_index_sequence<P::vars>{}, x...);
        },
        flat);
    auto no_structs = unset_struct_gradients(args);  // (parameter structs are first order only)
    auto grads = unflatten_args(args, flat_grads, no_structs, std::index_sequence_for<A...>{});
    return std::make_pair(out, grads);
  }
}

}  // namespace detail

/// Gradients of a scalar-valued f at args, in the structure of args: `auto [dA, dB] = grad(f, A, B);`.
template <class F, class... A>
auto grad(F&& f, const A&... args) {
  static_assert(detail::are_grad_arguments_v<A...>, TESSERA_GRAD_ARGUMENTS_MESSAGE);
  if constexpr (detail::are_grad_arguments_v<A...>) {
    return detail::value_and_grad_impl(f, args...).second;
  } else {
    return std::tuple<A...>{};  // never used: stops the compiler here, with the one message above
  }
}

/// {f(args), gradients}.
template <class F, class... A>
auto value_and_grad(F&& f, const A&... args) {
  static_assert(detail::are_grad_arguments_v<A...>, TESSERA_GRAD_ARGUMENTS_MESSAGE);
  if constexpr (detail::are_grad_arguments_v<A...>) {
    return detail::value_and_grad_impl(f, args...);
  } else {
    return std::pair<int, std::tuple<A...>>{};  // never used, as in grad
  }
}

namespace detail {
/// The tensor an output expression of vjp is evaluated into.
template <class E>
using vjp_value_t = Tensor<value_type_t<E>, rank_v<E>, backend_t<E>>;

template <class E>
struct vjp_values {
  using type = vjp_value_t<E>;
};
template <class... E>
struct vjp_values<std::tuple<E...>> {
  using type = std::tuple<vjp_value_t<E>...>;
};

template <std::size_t R0, std::size_t R1>
TESSERA_NOINLINE void check_cotangent(const Shape<R0>& cotangent, const Shape<R1>& output) {
  if (cotangent != output) {
    throw shape_error("vjp: cotangent of shape " + shape_to_string(cotangent) + " for an output of shape " +
                      shape_to_string(output));
  }
}

template <class... E, class Cot, std::size_t... K>
void check_cotangents(const std::tuple<E...>& out, const Cot& cot, std::index_sequence<K...>) {
  (check_cotangent(std::get<K>(cot).shape(), std::get<K>(out).shape()), ...);
}

/// Every contribution of the outputs' sweeps, one output after another.
template <bool MatchTensors, class... E, class Cot, class Sink, std::size_t... K>
auto sweep_outputs(const std::tuple<E...>& out, const Cot& cot, const Sink& sink, std::index_sequence<K...>) {
  return std::tuple_cat(reverse_sweep<0, MatchTensors>(std::get<K>(out), std::get<K>(cot), sink)...);
}
}  // namespace detail

/// The output of f at args (any rank) and its pullback: a function from a cotangent of the output's
/// shape to the gradients of the arguments (in their structure). Forward buffers are kept for the
/// pullback, which may be called several times. First order only.
///
/// f may return a std::tuple of expressions (a recurrent cell's new state and output): the output
/// is then a std::tuple of tensors and the pullback takes a std::tuple of cotangents, one per output.
template <class F, class... A>
auto vjp(F&& f, const A&... a) {
  using P = detail::GradPlan<std::remove_reference_t<F>, A...>;
  static_assert(P::level == 0,
                "tessera::vjp: first order only: its arguments (and what f captures) must not be variables of an "
                "enclosing grad");
  std::tuple<A...> args(a...);
  const std::uint64_t epoch = detail::new_cache_epoch();
  detail::CacheEpochScope forward_scope(epoch);  // open while f runs, as in value_and_grad
  auto out = std::apply([&](const auto&... x) { return detail::call_with_vars<0>(f, std::tuple<const A&...>(x...), std::index_sequence_for<A...>{}); }, args);
  using Out = decltype(out);
  using Values = typename detail::vjp_values<Out>::type;
  Values value = [&] {
    if constexpr (detail::is_std_tuple<Out>::value) {
      return std::apply([](const auto&... o) { return Values(detail::vjp_value_t<std::decay_t<decltype(o)>>(o)...); }, out);
    } else {
      return Values(out);  // constructed, not assigned: a materialized output is not copied
    }
  }();
  auto pullback = [out, args, epoch](const Values& cotangent) {
    if constexpr (detail::is_std_tuple<Out>::value) {
      detail::check_cotangents(out, cotangent, std::make_index_sequence<std::tuple_size_v<Out>>{});
    } else {
      detail::check_cotangent(cotangent.shape(), out.shape());
    }
    detail::CacheEpochScope scope(epoch);
    const auto sweep = [&](const auto& sink) {
      if constexpr (detail::is_std_tuple<Out>::value) {
        return detail::sweep_outputs<P::match_tensors>(out, cotangent, sink, std::make_index_sequence<std::tuple_size_v<Out>>{});
      } else {
        return detail::reverse_sweep<0, P::match_tensors>(out, cotangent, sink);
      }
    };
    return std::apply([&](const auto&... x) { return detail::gradients_from<P::match_tensors>(sweep, std::tuple<const A&...>(x...)); }, args);
  };
  return std::make_pair(value, pullback);
}

}  // namespace tessera

#undef TESSERA_GRAD_ARGUMENTS_MESSAGE
