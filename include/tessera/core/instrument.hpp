// Test hook: counts buffer allocations and elementwise passes so tests can prove fusion.
// Compiled in only when TESSERA_INSTRUMENT is defined; otherwise every call is a no-op.
#pragma once

#ifdef TESSERA_INSTRUMENT
#include <atomic>
#endif

namespace tessera::instrument {

#ifdef TESSERA_INSTRUMENT
/// Running totals since the last reset(); relaxed atomics, cheap enough for tests.
struct Counters {
  std::atomic<long> allocations{0};        ///< tensor buffers allocated
  std::atomic<long> elementwise_passes{0}; ///< fused elementwise kernels launched
  std::atomic<long> materializations{0};   ///< matmul/reduction/softmax kernels launched
};
inline Counters& counters() {
  static Counters c;
  return c;
}
inline void reset() {
  counters().allocations = 0;
  counters().elementwise_passes = 0;
  counters().materializations = 0;
}
inline void count_allocation() { counters().allocations.fetch_add(1, std::memory_order_relaxed); }
inline void count_elementwise_pass() { counters().elementwise_passes.fetch_add(1, std::memory_order_relaxed); }
inline void count_materialization() { counters().materializations.fetch_add(1, std::memory_order_relaxed); }
#else
inline void count_allocation() {}
inline void count_elementwise_pass() {}
inline void count_materialization() {}
#endif

}  // namespace tessera::instrument
