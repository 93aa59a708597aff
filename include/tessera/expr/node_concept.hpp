// The node contract: what a type must provide to appear in a tessera expression, and the roles a
// node can play. The evaluators, the cache and the reverse sweep dispatch on these traits, so a new
// op is written against this page (see docs/architecture.md, "Node roles").
//
// EVERY NODE (is_node_v):
//   derives from ExprBase<Self>
//   using value_type; using backend_type; static constexpr std::size_t rank;
//   shape() const -> Shape<rank>
//   static constexpr const char* name    (op name in graphs and errors; tensors have none)
//
// ROLES (a node has exactly one of the first three):
//   leaf          a Tensor (storage and strides) or a Scalar constant.
//   elementwise   fuses into the pass that reads it:
//                   evaluator(const Shape<RO>& out, const IterPlan&) const  -> per-element reader
//                   visit_leaves(const Shape<RO>& out, F f) const           -> every buffer it reads
//   materialized  computes into a buffer of its own (matmul, reductions, softmax, conv, ...):
//                   evaluate_into(Tensor<value_type, rank, backend_type>& out) const
//                 OPTIONAL: `cache` (a shared CacheSlot; MaterializedNode provides it) to compute
//                 once per autodiff sweep; alias() const -> std::optional<Tensor> to hand over an
//                 existing buffer when computing would only copy (used only when contiguous);
//                 evaluate_pooled(out, const PoolEpilogue&) const -> bool to write its value pooled
//                 when a pooling reads it (a convolution's epilogue; false: not done, pool as usual).
// OPTIONAL for every non-leaf node:
//   inputs() const -> std::tuple<const Input&...>     (the graph's edges; needed by grad and graphs)
//   input_adjoints(const G& g) const -> std::tuple<adjoint expression or NoAdjoint, ...>
//                                                      (the grad rule: one lazy expression per input)
//   for_each_tensor(F f) const                         (every tensor read, also inside buffers)
//   value_of_inner() const -> Tensor                   (a view node: its value as a view, no copy)
//
// The C++17 traits below are the contract; with C++20 the same checks are concepts.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "tessera/core/expr_base.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera {

namespace detail {

struct IterPlan;  // expr/evaluator.hpp

template <class E>
struct is_tensor : std::false_type {};
template <class T, std::size_t R, class B>
struct is_tensor<Tensor<T, R, B>> : std::true_type {};
/// Whether E is a Tensor (a leaf with storage).
template <class E>
inline constexpr bool is_tensor_v = is_tensor<std::decay_t<E>>::value;

/// The value type, backend, rank and shape() every node declares.
template <class E, class = void>
struct has_node_members : std::false_type {};
template <class E>
struct has_node_members<E, std::void_t<typename E::value_type, typename E::backend_type, decltype(E::rank),
                                       decltype(std::declval<const E&>().shape())>>
    : std::bool_constant<std::is_same_v<std::decay_t<decltype(std::declval<const E&>().shape())>, Shape<E::rank>>> {};

/// Elementwise nodes: read element by element inside a fused pass.
template <class E, class = void>
struct is_elementwise_node : std::false_type {};
template <class E>
struct is_elementwise_node<E, std::void_t<decltype(std::declval<const E&>().evaluator(std::declval<const Shape<E::rank>&>(),
                                                                                       std::declval<const IterPlan&>()))>>
    : std::bool_constant<!is_tensor_v<E>> {};

/// Nodes that compute into a buffer (matmul, reductions, softmax) rather than fuse.
template <class E, class = void>
struct is_materialized : std::false_type {};
template <class E>
struct is_materialized<E, std::void_t<decltype(&E::evaluate_into)>> : std::true_type {};
template <class E>
inline constexpr bool is_materialized_v = is_materialized<std::decay_t<E>>::value;

/// Nodes with children, which they list in `inputs()`; leaves have none.
template <class E, class = void>
struct has_inputs : std::false_type {};
template <class E>
struct has_inputs<E, std::void_t<decltype(std::declval<const E&>().inputs())>> : std::true_type {};

/// Materialized nodes that keep their buffer for the rest of an autodiff sweep (`cache`).
template <class E, class = void>
struct has_cache_slot : std::false_type {};
template <class E>
struct has_cache_slot<E, std::void_t<decltype(std::declval<const E&>().cache)>> : std::true_type {};

/// Nodes that may hand over an existing buffer as their value: `std::optional<Tensor> alias() const`
/// (e.g. a sum_to with nothing to sum).
template <class E, class = void>
struct has_alias : std::false_type {};
template <class E>
struct has_alias<E, std::void_t<decltype(std::declval<const E&>().alias())>> : std::true_type {};

/// Nodes that can write their value pooled (`bool evaluate_pooled(out, const PoolEpilogue&) const`):
/// a convolution whose pooling runs in its epilogue at inference.
template <class E, class = void>
struct has_pooled_evaluation : std::false_type {};
template <class E>
struct has_pooled_evaluation<E, std::void_t<decltype(&E::evaluate_pooled)>> : std::true_type {};

/// View nodes (transpose, reshape of a computed value): `value_of_inner()` is their value as a view.
template <class E, class = void>
struct has_inner_expression : std::false_type {};
template <class E>
struct has_inner_expression<E, std::void_t<decltype(std::declval<const E&>().value_of_inner())>> : std::true_type {};

}  // namespace detail

/// Whether E satisfies the node contract above: an expression with the common members and
/// exactly one of the roles leaf (a Tensor or a node without inputs that evaluates per element),
/// elementwise, materialized.
template <class E>
inline constexpr bool is_node_v = is_expr_v<E> && detail::has_node_members<std::decay_t<E>>::value &&
                                  (int(detail::is_tensor_v<E>) + int(detail::is_elementwise_node<std::decay_t<E>>::value) +
                                       int(detail::is_materialized_v<E>) ==
                                   1);

/// Whether E is a node that grad can differentiate through: it lists its inputs and has a rule.
template <class E>
inline constexpr bool is_differentiable_node_v = is_node_v<E> && detail::has_inputs<std::decay_t<E>>::value;

#if defined(__cpp_concepts) && __cpp_concepts >= 201907L
/// The node contract as C++20 concepts (the same checks as the traits).
template <class E>
concept Node = is_node_v<E>;
template <class E>
concept ElementwiseNode = Node<E> && detail::is_elementwise_node<std::decay_t<E>>::value;
template <class E>
concept MaterializedNode = Node<E> && detail::is_materialized_v<E>;
#endif

namespace detail {

/// Shared by all copies of one materialization node (see expr/cache.hpp).
template <class TensorType>
struct CacheSlot {
  std::uint64_t epoch = 0;
  std::optional<TensorType> value;  // optional: an empty rank-0 tensor would allocate its scalar
};

/// Base of every materialized node: declares its value type, rank and backend, and owns the cache
/// slot its copies share (the buffer is computed once per autodiff sweep). Derived adds `name`,
/// `shape()`, `evaluate_into` and, when differentiable, `inputs()` and `input_adjoints`.
template <class Derived, class T, std::size_t R, class B>
struct MaterializedNode : ExprBase<Derived> {
  using value_type = T;
  using backend_type = B;
  static constexpr std::size_t rank = R;
  using tensor_type = Tensor<T, R, B>;
  /// Shared by every copy of this node; holds its buffer during an autodiff sweep.
  std::shared_ptr<CacheSlot<tensor_type>> cache = std::make_shared<CacheSlot<tensor_type>>();
};

}  // namespace detail

}  // namespace tessera
