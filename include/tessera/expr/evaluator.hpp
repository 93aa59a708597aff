// Iteration plans and evaluators: how an expression tree is read element by element.
//
// An elementwise pass iterates over the output's extents. Every leaf is described by its strides
// in that space (0 along broadcast axes). Axes that all operands traverse contiguously together
// are merged ("coalesced"), so most passes become one long inner loop that vectorizes. Each node
// turns into an evaluator: a small copyable object with seek(outer index) and coeff(j)/packet(j)
// along the innermost axis. Evaluators are copied per thread.
#pragma once

#include <array>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "tessera/core/config.hpp"
#include "tessera/core/expr_base.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/cache.hpp"

namespace tessera::detail {

/// The coalesced iteration space of one pass.
struct IterPlan {
  int rank = 1;                      ///< coalesced rank (at least 1)
  index_t dims[max_rank] = {1};      ///< coalesced extents, outermost first
  int src_axis[max_rank] = {-1};     ///< original axis whose stride each coalesced axis uses (-1: none)
  bool reduced[max_rank] = {false};  ///< for reductions: whether the coalesced axis is reduced

  /// Coalesced strides of an operand given its strides in the original space.
  template <std::size_t R>
  void map(const Shape<R>& full, index_t* out) const {
    for (int k = 0; k < rank; ++k) out[k] = src_axis[k] < 0 ? 0 : full[static_cast<std::size_t>(src_axis[k])];
  }
  index_t outer_count() const {
    index_t n = 1;
    for (int k = 0; k + 1 < rank; ++k) n *= dims[k];
    return n;
  }
  index_t inner() const { return dims[rank - 1]; }
};

/// Builds the plan for `shape` read through every stride set in `operands`. When `reduced` is
/// given, axes are merged only with axes of the same reduced/kept status.
template <std::size_t R>
IterPlan make_plan(const Shape<R>& shape, const std::vector<Shape<R>>& operands, const bool* reduced = nullptr) {
  IterPlan plan;
  int axes[max_rank + 1];
  int n = 0;
  for (std::size_t i = 0; i < R; ++i) {
    if (shape[i] != 1) axes[n++] = static_cast<int>(i);
  }
  if (n == 0) {
    plan.rank = 1;
    plan.dims[0] = 1;
    plan.src_axis[0] = -1;
    plan.reduced[0] = false;
    return plan;
  }
  // Walk from the innermost axis outwards, merging while every operand stays dense across the pair.
  index_t gdims[max_rank];
  int gsrc[max_rank];
  bool gred[max_rank];
  int g = 0;
  gdims[0] = shape[static_cast<std::size_t>(axes[n - 1])];
  gsrc[0] = axes[n - 1];
  gred[0] = reduced ? reduced[axes[n - 1]] : false;
  for (int k = n - 1; k-- > 0;) {
    const auto a = static_cast<std::size_t>(axes[k]);
    const bool red = reduced ? reduced[a] : false;
    bool mergeable = red == gred[g];
    for (const auto& st : operands) {
      if (!mergeable) break;
      mergeable = st[a] == st[static_cast<std::size_t>(gsrc[g])] * gdims[g];
    }
    if (mergeable) {
      gdims[g] *= shape[a];
    } else {
      ++g;
      gdims[g] = shape[a];
      gsrc[g] = static_cast<int>(a);
      gred[g] = red;
    }
  }
  plan.rank = g + 1;
  for (int k = 0; k <= g; ++k) {
    plan.dims[k] = gdims[g - k];
    plan.src_axis[k] = gsrc[g - k];
    plan.reduced[k] = gred[g - k];
  }
  return plan;
}

template <class T>
using packet_t = typename Eigen::internal::packet_traits<T>::type;
template <class T>
inline constexpr int packet_size_v = Eigen::internal::unpacket_traits<packet_t<T>>::size;
/// Whether SIMD packets of T exist on this build (bool is always read element by element).
template <class T>
inline constexpr bool packet_capable_v = !std::is_same_v<T, bool> && Eigen::internal::packet_traits<T>::Vectorizable;

/// Reads a strided buffer. Holds `keep` alive when it evaluated a materialized node.
template <class T>
struct LeafEval {
  using value_type = T;
  static constexpr bool vectorizable = packet_capable_v<T>;

  const T* data = nullptr;
  index_t strides[max_rank] = {};
  int rank = 1;
  const T* row = nullptr;
  index_t inner = 0;
  std::shared_ptr<T> keep;

  void seek(const index_t* idx) {
    index_t off = 0;
    for (int k = 0; k + 1 < rank; ++k) off += idx[k] * strides[k];
    row = data + off;
    inner = strides[rank - 1];
  }
  TESSERA_ALWAYS_INLINE T coeff(index_t j) const { return row[j * inner]; }
  template <class P>
  TESSERA_ALWAYS_INLINE P packet(index_t j) const {
    if (inner == 1) return Eigen::internal::ploadu<P>(row + j);
    if (inner == 0) return Eigen::internal::pset1<P>(*row);
    // Eigen's generic pgather silently ignores the stride for some packet types: gather by hand.
    constexpr int ps = Eigen::internal::unpacket_traits<P>::size;
    alignas(64) T buf[ps];
    for (int k = 0; k < ps; ++k) buf[k] = row[(j + k) * inner];
    return Eigen::internal::pload<P>(buf);
  }
};

/// A scalar constant broadcast everywhere.
template <class T>
struct ConstEval {
  using value_type = T;
  static constexpr bool vectorizable = packet_capable_v<T>;
  T value;
  void seek(const index_t*) {}
  TESSERA_ALWAYS_INLINE T coeff(index_t) const { return value; }
  template <class P>
  TESSERA_ALWAYS_INLINE P packet(index_t) const {
    return Eigen::internal::pset1<P>(value);
  }
};

/// Calls f(storage id, strides in `out`'s space) for every buffer an elementwise pass over `e` reads.
template <class E, std::size_t RO, class F>
void visit_leaves(const E& e, const Shape<RO>& out, F&& f) {
  if constexpr (is_tensor_v<E>) {
    f(e.storage_id(), broadcast_strides(e.shape(), e.strides(), out));
  } else if constexpr (is_materialized_v<E>) {
    f(static_cast<const void*>(nullptr), broadcast_strides(e.shape(), contiguous_strides(e.shape()), out));
  } else {
    e.visit_leaves(out, f);
  }
}

/// Collects the strides visit_leaves reports. A named type rather than a lambda, so that the walk
/// over a node type is compiled once for all the expressions that contain it.
template <std::size_t R>
struct CollectStrides {
  std::vector<Shape<R>>& strides;
  void operator()(const void*, const Shape<R>& st) { strides.push_back(st); }
};

/// The plan of one elementwise pass that writes every expression of `exprs` (broadcast to `shape`)
/// through the destination strides `dst_strides`.
template <std::size_t R, class... E>
IterPlan pass_plan(const Shape<R>& shape, const Shape<R>& dst_strides, const E&... exprs) {
  std::vector<Shape<R>> operands;
  operands.reserve(8);
  operands.push_back(dst_strides);
  CollectStrides<R> collect{operands};
  (visit_leaves(exprs, shape, collect), ...);
  return make_plan(shape, operands);
}

/// The iteration plan of a reduction of `input` over the axes flagged in `reduced` into a
/// contiguous output of the kept extents: out_strides are the output's strides in the input's
/// space (0 along reduced axes), and the plan merges axes only where the output and every leaf
/// stay dense and the axes agree on being reduced or kept.
template <std::size_t R>
struct ReductionPlan {
  Shape<R> out_strides{};
  IterPlan plan;
};
template <class E, std::size_t R>
ReductionPlan<R> reduction_plan(const E& input, const std::array<bool, R>& reduced) {
  const Shape<R> shape = input.shape();
  ReductionPlan<R> r;
  index_t acc = 1;
  for (std::size_t i = R; i-- > 0;) {
    r.out_strides[i] = reduced[i] ? 0 : acc;
    acc *= reduced[i] ? 1 : shape[i];
  }
  std::vector<Shape<R>> operands{r.out_strides};
  CollectStrides<R> collect{operands};
  visit_leaves(input, shape, collect);
  r.plan = make_plan(shape, operands, reduced.data());
  return r;
}

/// Calls f(tensor) for every tensor the expression reads, also those inside materialized nodes.
template <class E, class F>
void for_each_tensor(const E& e, F&& f) {
  if constexpr (is_tensor_v<E>) {
    f(e);
  } else {
    e.for_each_tensor(f);
  }
}

/// Base of a node computed by a kernel of its own but differentiated as an equivalent expression,
/// `closed_form`: the reverse sweep sees closed_form as the node's one input and passes the
/// adjoint through to it unchanged, so higher derivatives are the expression's. A materialization
/// node (its buffer is cached within an autodiff sweep); Derived adds `name` and `evaluate_into`.
template <class Derived, class Expr>
struct KernelOfClosedForm : MaterializedNode<Derived, value_type_t<Expr>, rank_v<Expr>, backend_t<Expr>> {
  using value_type = value_type_t<Expr>;
  using backend_type = backend_t<Expr>;
  static constexpr std::size_t rank = rank_v<Expr>;
  Expr closed_form;

  explicit KernelOfClosedForm(Expr e) : closed_form(std::move(e)) {}
  Shape<rank> shape() const { return closed_form.shape(); }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(closed_form, f);
  }
  auto inputs() const { return std::tie(closed_form); }
  template <class H>
  auto input_adjoints(const H& h) const {
    return std::make_tuple(h);
  }
};

/// Whether every element of E has the same value, as far as E's type tells: rank-0 expressions
/// (scalars among them), and broadcasts, reshapes and elementwise ops of such (specialized beside
/// those nodes). The adjoint that sum and mean hand to their input is one: the seed broadcast
/// over the summed shape, often times constants.
template <class E>
struct is_uniform : std::bool_constant<rank_v<E> == 0> {};

/// Whether host code may read E's elements: constants, and expressions over host memory. Device
/// expressions are never evaluated on the host (make_evaluator does not hoist their subexpressions).
template <class E, class B = backend_t<E>>
inline constexpr bool host_readable_v = B::host_accessible;
template <class E>
inline constexpr bool host_readable_v<E, any_backend> = true;

/// The evaluator of `e` for a pass over `out` described by `plan`.
template <class E, std::size_t RO>
auto make_evaluator(const E& e, const Shape<RO>& out, const IterPlan& plan) {
  if constexpr (is_tensor_v<E>) {
    LeafEval<value_type_t<E>> ev;
    ev.data = e.data();
    ev.rank = plan.rank;
    plan.map(broadcast_strides(e.shape(), e.strides(), out), ev.strides);
    return ev;
  } else if constexpr (is_materialized_v<E>) {
    using T = value_type_t<E>;
    const auto buffer = read_only_value(e);
    LeafEval<T> ev;
    ev.data = buffer.data();
    ev.rank = plan.rank;
    ev.keep = buffer.storage();
    plan.map(broadcast_strides(buffer.shape(), buffer.strides(), out), ev.strides);
    return ev;
  } else if constexpr (rank_v<E> == 0 && RO > 0 && host_readable_v<E>) {
    // A rank-0 subexpression (log(sigma), 1 / sigma, a loss scale) has one value: compute it once
    // here instead of once per element of the pass. Its evaluator is built for a pass of its own
    // (rank 0), so this branch is not taken again inside it.
    const Shape<0> point{};
    const IterPlan single = make_plan(point, std::vector<Shape<0>>{});
    auto inner = e.evaluator(point, single);
    const index_t origin[max_rank] = {};
    inner.seek(origin);
    return ConstEval<value_type_t<E>>{inner.coeff(0)};
  } else if constexpr (RO > 0 && is_uniform<E>::value && host_readable_v<E>) {
    // Likewise a uniform one (a broadcast seed times constants): its first element is all of them.
    auto inner = e.evaluator(out, plan);
    const index_t origin[max_rank] = {};
    inner.seek(origin);
    return ConstEval<value_type_t<E>>{inner.coeff(0)};
  } else {
    return e.evaluator(out, plan);
  }
}

}  // namespace tessera::detail
