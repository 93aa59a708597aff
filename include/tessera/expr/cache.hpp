// Forward-value cache for materialization points during differentiation.
//
// Outside autodiff, expressions are recomputed every time they are evaluated (ordinary lazy
// semantics). While an autodiff sweep runs it opens a cache *epoch*: every materialization node
// (matmul, reduction, softmax, ...) then computes its buffer once and every copy of that node
// (nodes are copied into the backward expressions) reuses it. Elementwise nodes are never stored.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>

#include "tessera/core/numerics.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/node_concept.hpp"

namespace tessera::detail {

/// The epoch of the current thread's autodiff sweep; 0 when none is active.
inline std::uint64_t& active_cache_epoch() {
  thread_local std::uint64_t epoch = 0;
  return epoch;
}
inline std::uint64_t new_cache_epoch() {
  static std::atomic<std::uint64_t> counter{0};
  return ++counter;
}

/// Makes `epoch` the active one for the scope's lifetime (restores the previous one after).
class CacheEpochScope {
 public:
  explicit CacheEpochScope(std::uint64_t epoch) : previous_(active_cache_epoch()) { active_cache_epoch() = epoch; }
  ~CacheEpochScope() { active_cache_epoch() = previous_; }
  CacheEpochScope(const CacheEpochScope&) = delete;
  CacheEpochScope& operator=(const CacheEpochScope&) = delete;

 private:
  std::uint64_t previous_;
};

template <class E>
using materialized_tensor_t = Tensor<value_type_t<E>, rank_v<E>, backend_t<E>>;

/// The buffer of a materialization node: computed, or reused within the active epoch.
/// (Nodes without a `cache` member, e.g. users' own, are always computed.)
template <class E>
materialized_tensor_t<E> materialize(const E& e) {
  const std::uint64_t epoch = active_cache_epoch();
  if constexpr (has_cache_slot<E>::value) {
    if (epoch != 0 && e.cache && e.cache->epoch == epoch) return *e.cache->value;
  }
  auto out = materialized_tensor_t<E>::uninitialized(e.shape());
  e.evaluate_into(out);
  check_numerics_hook(out, op_name(e));
  if constexpr (has_cache_slot<E>::value) {
    if (epoch != 0 && e.cache) {
      e.cache->value = out;
      e.cache->epoch = epoch;
    }
  }
  return out;
}

/// The value of a materialization node for reading only (an evaluator's or a view's operand): may
/// be an existing buffer (see has_alias), so it must never be written to or handed to users. It is
/// always contiguous: a pass plans its loops (visit_leaves) before it reads the value, from the
/// node's shape alone, so a strided buffer would be read out of bounds.
template <class E>
materialized_tensor_t<E> read_only_value(const E& e) {
  if constexpr (has_alias<E>::value) {
    if (auto existing = e.alias(); existing && existing->is_contiguous()) return *existing;
  }
  return materialize(e);
}

}  // namespace tessera::detail
