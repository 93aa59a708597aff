// Lazy slicing, axis swapping and joining of expressions: slice(e, axis, begin, end),
// transpose(e, a, b) and concat(std::tuple(a, b, ...), axis). Recurrent cells split their gate
// pre-activations with slice; batch-first layers swap batch and time; bidirectional layers join
// their two directions with concat. Both are differentiable: a slice's adjoint is its
// gradient placed into zeros of the input's shape, a concat's is one slice of the gradient per part.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "tessera/core/tensor.hpp"
#include "tessera/expr/assign.hpp"
#include "tessera/expr/cache.hpp"
#include "tessera/expr/evaluator.hpp"
#include "tessera/expr/node_concept.hpp"
#include "tessera/expr/shape_ops.hpp"

namespace tessera {

namespace detail {
/// [begin, end) along one axis, normalized with Python's rules as Tensor::slice does.
struct SliceRange {
  std::size_t axis = 0;
  index_t begin = 0, end = 0;
};
template <std::size_t R>
TESSERA_NOINLINE SliceRange slice_range(const Shape<R>& s, index_t axis, index_t begin, index_t end) {
  const std::size_t a = normalize_axis(axis, R, "slice");
  const index_t n = s[a];
  auto clamp_bound = [n](index_t v) {
    if (v < 0) v += n;
    return v < 0 ? index_t{0} : (v > n ? n : v);
  };
  SliceRange r{a, clamp_bound(begin), 0};
  r.end = clamp_bound(end) < r.begin ? r.begin : clamp_bound(end);
  return r;
}

/// The backend all of several expressions run on (a compile error names a mix, as for two).
template <class B0, class... Bs>
struct common_backend_all {
  using type = B0;
};
template <class B0, class B1, class... Bs>
struct common_backend_all<B0, B1, Bs...> : common_backend_all<common_backend_t<B0, B1>, Bs...> {};
}  // namespace detail

/// Elements [begin, end) of A along one axis: a view of A's value (no copy when A is a tensor, a
/// variable or a materialization node such as a matmul; an elementwise A is evaluated first).
template <class A>
struct Sliced : detail::ViewOfValue<Sliced<A>, A> {
  static constexpr const char* name = "slice";
  static_assert(rank_v<A> >= 1, "tessera::slice: a rank-0 expression has no axis to slice");
  detail::SliceRange range;

  Sliced(A a, index_t axis, index_t begin, index_t end)
      : detail::ViewOfValue<Sliced<A>, A>(std::move(a)),
        range(detail::slice_range(this->arg.shape(), axis, begin, end)) {}
  Shape<rank_v<A>> shape() const {
    auto s = this->arg.shape();
    s[range.axis] = range.end - range.begin;
    return s;
  }
  Tensor<value_type_t<A>, rank_v<A>, backend_t<A>> view() const {
    return detail::value_of(this->arg).slice(static_cast<index_t>(range.axis), range.begin, range.end);
  }
  Shape<rank_v<A>> computed_strides() const { return contiguous_strides(this->arg.shape()); }
  template <class G>
  auto input_adjoints(const G& g) const;
};

/// The adjoint of a slice: G written into zeros of the sliced input's shape.
template <class G>
struct Unslice : detail::MaterializedNode<Unslice<G>, value_type_t<G>, rank_v<G>, backend_t<G>> {
  static constexpr std::size_t rank = rank_v<G>;
  static constexpr const char* name = "slice_backward";
  G arg;
  Shape<rank> full;
  detail::SliceRange range;
  Unslice(G g, const Shape<rank>& full_shape, detail::SliceRange r) : arg(std::move(g)), full(full_shape), range(r) {}
  const Shape<rank>& shape() const { return full; }
  void evaluate_into(Tensor<value_type_t<G>, rank, backend_t<G>>& out) const {
    out.fill(value_type_t<G>(0));
    if (range.end > range.begin) out.slice(static_cast<index_t>(range.axis), range.begin, range.end).assign(arg);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(arg, f);
  }
  auto inputs() const { return std::tie(arg); }
  template <class GG>
  auto input_adjoints(const GG& gg) const {
    return std::make_tuple(Sliced<GG>(gg, static_cast<index_t>(range.axis), range.begin, range.end));
  }
};

template <class A>
template <class G>
auto Sliced<A>::input_adjoints(const G& g) const {
  return std::make_tuple(Unslice<G>(g, this->arg.shape(), range));
}

/// Lazy slice of an expression along `axis` (a tensor gets its view, as Tensor::slice).
template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>
auto slice(const A& a, index_t axis, index_t begin, index_t end) {
  if constexpr (detail::is_tensor_v<A>) {
    return a.slice(axis, begin, end);
  } else {
    return Sliced<A>(a, axis, begin, end);
  }
}

/// A with axes a and b swapped: a view of A's value, as Sliced (the adjoint swaps them back).
template <class A>
struct SwapAxes : detail::ViewOfValue<SwapAxes<A>, A> {
  static constexpr const char* name = "transpose";
  static_assert(rank_v<A> >= 2, "tessera::transpose(e, a, b): needs an expression of rank 2 or more");
  std::size_t a, b;

  SwapAxes(A x, index_t axis_a, index_t axis_b)
      : detail::ViewOfValue<SwapAxes<A>, A>(std::move(x)),
        a(normalize_axis(axis_a, rank_v<A>, "transpose")),
        b(normalize_axis(axis_b, rank_v<A>, "transpose")) {}
  Shape<rank_v<A>> shape() const {
    auto s = this->arg.shape();
    std::swap(s[a], s[b]);
    return s;
  }
  Tensor<value_type_t<A>, rank_v<A>, backend_t<A>> view() const {
    return detail::value_of(this->arg).transpose(static_cast<index_t>(a), static_cast<index_t>(b));
  }
  Shape<rank_v<A>> computed_strides() const {
    auto strides = contiguous_strides(this->arg.shape());
    std::swap(strides[a], strides[b]);
    return strides;
  }
  template <class G>
  auto input_adjoints(const G& g) const {
    // Through a buffer of the adjoint's own shape, so that the swapped read is of a tensor.
    constexpr std::size_t R = rank_v<A>;
    return std::make_tuple(SwapAxes<SumTo<G, R>>(SumTo<G, R>(g, shape()), static_cast<index_t>(a), static_cast<index_t>(b)));
  }
};

/// Lazy swap of two axes of an expression (a tensor gets its view, as Tensor::transpose(a, b)).
template <class A, std::enable_if_t<is_expr_v<A>, int> = 0>
auto transpose(const A& x, index_t a, index_t b) {
  if constexpr (detail::is_tensor_v<A>) {
    return x.transpose(a, b);
  } else {
    return SwapAxes<A>(x, a, b);
  }
}

/// Expressions joined along an existing axis (all other extents agree): one buffer, one pass per part.
template <class... A>
struct Concat : detail::MaterializedNode<Concat<A...>, value_type_t<std::tuple_element_t<0, std::tuple<A...>>>,
                                         rank_v<std::tuple_element_t<0, std::tuple<A...>>>,
                                         typename detail::common_backend_all<backend_t<A>...>::type> {
  using First = std::tuple_element_t<0, std::tuple<A...>>;
  using value_type = value_type_t<First>;
  using backend_type = typename detail::common_backend_all<backend_t<A>...>::type;
  static constexpr std::size_t rank = rank_v<First>;
  static constexpr const char* name = "concat";
  static_assert(rank >= 1, "tessera::concat: rank-0 expressions have no axis to join along");
  static_assert(((rank_v<A> == rank) && ...), "tessera::concat: the parts must have the same rank");
  static_assert((std::is_same_v<value_type_t<A>, value_type> && ...),
                "tessera::concat: the parts must have the same element type");
  std::tuple<A...> parts;
  std::size_t axis;
  Shape<rank> joined;

  Concat(std::tuple<A...> p, index_t ax) : parts(std::move(p)), axis(normalize_axis(ax, rank, "concat")) {
    joined = std::get<0>(parts).shape();
    joined[axis] = 0;
    std::apply([&](const auto&... x) { (add_part(x.shape()), ...); }, parts);
  }
  const Shape<rank>& shape() const { return joined; }
  void evaluate_into(Tensor<value_type, rank, backend_type>& out) const {
    index_t at = 0;
    std::apply(
        [&](const auto&... x) {
          auto one = [&](const auto& part) {
            const index_t n = part.shape()[axis];
            if (n > 0) out.slice(static_cast<index_t>(axis), at, at + n).assign(part);
            at += n;
          };
          (one(x), ...);
        },
        parts);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    std::apply([&](const auto&... x) { (detail::for_each_tensor(x, f), ...); }, parts);
  }
  auto inputs() const {
    return std::apply([](const auto&... x) { return std::tie(x...); }, parts);
  }
  /// One slice of the gradient per part. The gradient is computed once into a buffer (a SumTo of
  /// its own shape is a materialization whose copies share it) and the parts read views of it.
  template <class G>
  auto input_adjoints(const G& g) const {
    const SumTo<G, rank> whole(g, joined);
    return adjoints_of(whole, std::index_sequence_for<A...>{});
  }

 private:
  template <std::size_t RP>
  void add_part(const Shape<RP>& s) {
    const auto& first = std::get<0>(parts).shape();
    for (std::size_t i = 0; i < rank; ++i) {
      if (i != axis && s[i] != first[i]) {
        throw shape_error("concat: " + shape_to_string(first) + " and " + shape_to_string(s) + " differ at axis " +
                          std::to_string(i) + " (joining along axis " + std::to_string(axis) + ")");
      }
    }
    joined[axis] += s[axis];
  }
  template <class W, std::size_t... K>
  auto adjoints_of(const W& whole, std::index_sequence<K...>) const {
    std::array<index_t, sizeof...(A) + 1> at{};
    std::size_t k = 0;
    std::apply([&](const auto&... x) { ((at[k + 1] = at[k] + x.shape()[axis], ++k), ...); }, parts);
    return std::make_tuple(Sliced<W>(whole, static_cast<index_t>(axis), at[K], at[K + 1])...);
  }
};

/// Lazy concatenation of expressions along `axis`: `concat(std::make_tuple(forward, backward), -1)`.
template <class... A>
Concat<A...> concat(const std::tuple<A...>& parts, index_t axis) {
  static_assert(sizeof...(A) >= 1, "tessera::concat: no expressions given");
  return Concat<A...>(parts, axis);
}

}  // namespace tessera
