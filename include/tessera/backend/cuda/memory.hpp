// The CUDA backend's allocator: device blocks rounded up (512 B below 1 MiB, 128 KiB above) and
// cached by size after they are freed, so a training step that repeats its allocations stops
// calling cudaMalloc (which synchronizes the device) after its first step. An allocation the
// device refuses is retried once after the cache is freed; then it raises tessera::out_of_memory
// with the bytes requested and the pool's state.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <limits>
#include <string>

#include "tessera/backend/block_cache.hpp"
#include "tessera/core/error.hpp"

namespace tessera::detail {

/// Bytes held by a DevicePool.
struct DevicePoolStats {
  std::size_t in_use = 0;  ///< in live tensors (rounded sizes)
  std::size_t cached = 0;  ///< freed, kept for reuse
  std::size_t peak = 0;    ///< the most ever in use at once
};

/// A caching allocator over `Raw`, which provides `static void* try_allocate(std::size_t)`
/// (nullptr when the device is out of memory; other failures throw) and
/// `static void free(void*) noexcept`. Raw is cudaMalloc/cudaFree for the backend and a fake
/// device in the host tests.
template <class Raw>
class DevicePool {
 public:
  static constexpr std::size_t small_granularity = 512;
  static constexpr std::size_t large_granularity = std::size_t(128) << 10;
  static constexpr std::size_t large_threshold = std::size_t(1) << 20;

  DevicePool() : cache_(std::numeric_limits<std::size_t>::max()) {}

  /// The size a request of `bytes` occupies.
  static std::size_t rounded(std::size_t bytes) {
    const std::size_t g = bytes >= large_threshold ? large_granularity : small_granularity;
    return (std::max<std::size_t>(bytes, 1) + g - 1) / g * g;
  }

  void* allocate(std::size_t bytes) {
    const std::size_t size = rounded(bytes);
    void* p = cache_.take(size);
    if (p == nullptr) p = Raw::try_allocate(size);
    std::size_t released = 0;
    if (p == nullptr) {
      released = release_cached();
      p = Raw::try_allocate(size);
    }
    if (p == nullptr) {
      const DevicePoolStats s = stats();
      throw out_of_memory("tessera::cuda: out of device memory allocating " + std::to_string(bytes) + " bytes (" +
                          std::to_string(size) + " rounded); the pool holds " + std::to_string(s.in_use) +
                          " bytes in live tensors (peak " + std::to_string(s.peak) + ") and released " +
                          std::to_string(released) + " cached bytes before retrying");
    }
    const std::size_t now = in_use_.fetch_add(size) + size;
    std::size_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    return p;
  }

  void deallocate(void* p, std::size_t bytes) noexcept {
    if (p == nullptr) return;
    const std::size_t size = rounded(bytes);
    in_use_.fetch_sub(size);
    bool kept = false;
    try {
      kept = cache_.give(p, size);
    } catch (...) {  // the cache could not grow its index: free the block instead
    }
    if (!kept) Raw::free(p);
  }

  /// Frees every cached block; returns the bytes freed.
  std::size_t release_cached() noexcept {
    return cache_.release([](void* p, std::size_t) { Raw::free(p); });
  }

  DevicePoolStats stats() const { return {in_use_.load(), cache_.cached_bytes(), peak_.load()}; }

 private:
  BlockCache cache_;
  std::atomic<std::size_t> in_use_{0};
  std::atomic<std::size_t> peak_{0};
};

}  // namespace tessera::detail
