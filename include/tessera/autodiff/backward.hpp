// The reverse sweep: walks an expression's type from the output to the leaves at compile time,
// asking each node for its inputs' adjoints (lazy expressions built by the op's grad rule), and
// returns one Contribution per occurrence of a variable. Nothing is evaluated here, except by the
// sink that receives the adjoints of plain tensor leaves (parameter structs; see grad.hpp).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>

#include "tessera/autodiff/var.hpp"
#include "tessera/core/expr_base.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/elementwise.hpp"
#include "tessera/expr/evaluator.hpp"
#include "tessera/expr/rewrite.hpp"
#include "tessera/expr/shape_ops.hpp"

namespace tessera::detail {

/// The adjoint of one occurrence of argument `Index`.
template <std::size_t Index, class E>
struct Contribution {
  static constexpr std::size_t index = Index;
  E adjoint;
};

/// The sink of a sweep that reports no plain tensor leaves (MatchTensors false).
struct NoTensorSink {
  template <class Leaf, class E>
  void operator()(const Leaf&, const E&) const {}
};

template <class E>
using inputs_t = decltype(std::declval<const E&>().inputs());

/// Largest Var level below Cap inside E (-1 when none).
template <int Cap, class E, class = void>
struct max_level_below {
  static constexpr int value = -1;
};
template <int Cap, int L, std::size_t I, class X>
struct max_level_below<Cap, Var<L, I, X>> {
  static constexpr int own = L < Cap ? L : -1;
  static constexpr int value = own > max_level_below<Cap, X>::value ? own : max_level_below<Cap, X>::value;
};
template <int Cap, class Tuple>
struct max_level_below_tuple;
template <int Cap, class... A>
struct max_level_below_tuple<Cap, std::tuple<A...>> {
  static constexpr int value = std::max({-1, max_level_below<Cap, std::decay_t<A>>::value...});
};
template <int Cap, class E>
struct max_level_below<Cap, E, std::enable_if_t<has_inputs<E>::value && !is_var<E>::value>> {
  static constexpr int value = max_level_below_tuple<Cap, inputs_t<E>>::value;
};

/// A tuple of expressions (vjp of a function with several outputs): the largest among them.
template <int Cap, class... A>
struct max_level_below<Cap, std::tuple<A...>> : max_level_below_tuple<Cap, std::tuple<A...>> {};

/// Largest Var level inside E (-1 when none).
template <class E>
using max_level = max_level_below<std::numeric_limits<int>::max(), E>;

/// Whether E contains a Var of level L.
template <int L, class E, class = void>
struct depends_on : std::false_type {};
template <int L, int L2, std::size_t I, class X>
struct depends_on<L, Var<L2, I, X>> : std::bool_constant<L == L2 || depends_on<L, X>::value> {};
template <int L, class Tuple>
struct depends_on_tuple;
template <int L, class... A>
struct depends_on_tuple<L, std::tuple<A...>> : std::bool_constant<(depends_on<L, std::decay_t<A>>::value || ...)> {};
template <int L, class E>
struct depends_on<L, E, std::enable_if_t<has_inputs<E>::value && !is_var<E>::value>>
    : depends_on_tuple<L, inputs_t<E>> {};

template <int L, bool MatchTensors, class E, class G, class Sink>
auto backward(const E& e, const G& g, const Sink& sink);

template <int L, bool MatchTensors, class Inputs, class Adjoints, class Sink, std::size_t... K>
auto backward_inputs(const Inputs& ins, const Adjoints& adj, const Sink& sink, std::index_sequence<K...>) {
  auto one = [&sink](const auto& input, const auto& adjoint) {
    if constexpr (std::is_same_v<std::decay_t<decltype(adjoint)>, NoAdjoint>) {
      return std::tuple<>{};
    } else {
      return backward<L, MatchTensors>(input, adjoint, sink);
    }
  };
  return std::tuple_cat(one(std::get<K>(ins), std::get<K>(adj))...);
}

/// Contributions of every variable of level L reached from `e`, given e's adjoint `g`.
/// MatchTensors: also hand every plain floating-point tensor leaf (a parameter struct's member)
/// and its adjoint to `sink(leaf, adjoint)`, as the sweep reaches it. (Returning them as
/// contributions made a tuple of all of them at every node on the way up: the tuple types the
/// compiler then instantiates grow with the square of a model's depth.)
template <int L, bool MatchTensors, class E, class G, class Sink>
auto backward(const E& e, const G& g, const Sink& sink) {
  if constexpr (is_var_v<E>) {
    if constexpr (E::level == L) {
      return std::make_tuple(Contribution<E::index, G>{g});
    } else {
      return backward<L, MatchTensors>(e.value, g, sink);  // an outer variable: pass through
    }
  } else if constexpr (is_tensor_v<E>) {
    if constexpr (MatchTensors && std::is_floating_point_v<value_type_t<E>>) sink(e, g);
    return std::tuple<>{};
  } else if constexpr (is_scalar_node<E>::value) {
    return std::tuple<>{};
  } else if constexpr (!has_inputs<E>::value) {
    static_assert(dependent_false_v<E>,
                  "tessera::grad: this expression node has no inputs()/input_adjoints(); see docs/autodiff.md on custom ops");
    return std::tuple<>{};
  } else if constexpr (MatchTensors ? !std::is_floating_point_v<value_type_t<E>> : !depends_on<L, E>::value) {
    return std::tuple<>{};  // constant with respect to the variables: nothing to differentiate
  } else if constexpr (has_division_by_one_value<E>::value) {
    return backward<L, MatchTensors>(with_reciprocals(e), g, sink);
  } else {
    const auto ins = e.inputs();
    const auto adj = e.input_adjoints(g);
    return backward_inputs<L, MatchTensors>(ins, adj, sink, std::make_index_sequence<std::tuple_size_v<decltype(ins)>>{});
  }
}

/// Marker for an argument that received no contribution.
struct NoContribution {};

/// The sum of the adjoints of every contribution to argument I (NoContribution if none).
template <std::size_t I, std::size_t K = 0, class Acc, class Tuple>
auto sum_contributions(const Acc& acc, const Tuple& t) {
  if constexpr (K == std::tuple_size_v<Tuple>) {
    return acc;
  } else {
    using C = std::tuple_element_t<K, Tuple>;
    if constexpr (C::index != I) {
      return sum_contributions<I, K + 1>(acc, t);
    } else if constexpr (std::is_same_v<Acc, NoContribution>) {
      return sum_contributions<I, K + 1>(std::get<K>(t).adjoint, t);
    } else {
      return sum_contributions<I, K + 1>(acc + std::get<K>(t).adjoint, t);
    }
  }
}

/// Whether the adjoints of argument I may be added before reducing: adding adjoints of different
/// shapes would broadcast (replicate) the smaller one, so each must then be reduced on its own.
template <std::size_t I, class Tuple>
bool contributions_align(const Tuple& t) {
  bool ok = true, first = true;
  std::array<index_t, max_rank> ref{};
  auto padded = [](const auto& shape) {
    std::array<index_t, max_rank> p{};
    p.fill(1);
    const std::size_t r = shape.size();
    for (std::size_t i = 0; i < r; ++i) p[max_rank - r + i] = shape[i];
    return p;
  };
  std::apply(
      [&](const auto&... c) {
        auto one = [&](const auto& ci) {
          using C = std::decay_t<decltype(ci)>;
          if constexpr (C::index == I) {
            const auto p = padded(ci.adjoint.shape());
            if (first) {
              ref = p;
              first = false;
            } else {
              ok = ok && p == ref;
            }
          }
        };
        (one(c), ...);
      },
      t);
  return ok;
}

/// The sum over every contribution to argument I of sum_to(adjoint, shape): always correct, one
/// reduction per contribution (used when contributions_align is false, and for nested grad).
template <std::size_t I, std::size_t K = 0, class Acc, class Tuple, std::size_t R>
auto sum_fitted_contributions(const Acc& acc, const Tuple& t, const Shape<R>& shape) {
  if constexpr (K == std::tuple_size_v<Tuple>) {
    return acc;
  } else {
    using C = std::tuple_element_t<K, Tuple>;
    if constexpr (C::index != I) {
      return sum_fitted_contributions<I, K + 1>(acc, t, shape);
    } else if constexpr (std::is_same_v<Acc, NoContribution>) {
      return sum_fitted_contributions<I, K + 1>(sum_to(std::get<K>(t).adjoint, shape), t, shape);
    } else {
      return sum_fitted_contributions<I, K + 1>(acc + sum_to(std::get<K>(t).adjoint, shape), t, shape);
    }
  }
}

/// An adjoint passed through the speed rewrites of expr/rewrite.hpp: every adjoint the sweep hands
/// out goes through here.
template <class E>
auto rewritten_adjoint(const E& adjoint) {
  return with_reciprocals(adjoint);
}

template <std::size_t I, class E>
auto rewritten(const Contribution<I, E>& c) {
  auto adjoint = rewritten_adjoint(c.adjoint);
  return Contribution<I, decltype(adjoint)>{std::move(adjoint)};
}

/// Passes a plain tensor leaf's adjoint through the same rewrites on its way to the sink.
template <class Sink>
struct RewrittenSink {
  const Sink& sink;
  template <class Leaf, class E>
  void operator()(const Leaf& leaf, const E& adjoint) const {
    sink(leaf, rewritten_adjoint(adjoint));
  }
};

/// The reverse sweep: every contribution of `backward`, rewritten for speed (the adjoints of plain
/// tensor leaves go to `sink` when MatchTensors).
template <int L, bool MatchTensors, class E, class G, class Sink = NoTensorSink>
auto reverse_sweep(const E& e, const G& g, const Sink& sink = {}) {
  return std::apply([](const auto&... c) { return std::make_tuple(rewritten(c)...); },
                    backward<L, MatchTensors>(e, g, RewrittenSink<Sink>{sink}));
}

}  // namespace tessera::detail
