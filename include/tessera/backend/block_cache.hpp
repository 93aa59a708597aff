// Freed device blocks kept by exact size for the next allocation of that size: the allocation
// pattern of a training step repeats every step, so after the first step allocation is a lookup.
// Shared by the CPU backend (host blocks of 64 KiB or more) and the CUDA backend (every block).
#pragma once

#include <cstddef>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace tessera::detail {

class BlockCache {
 public:
  /// Keeps at most `max_cached_bytes` in freed blocks.
  explicit BlockCache(std::size_t max_cached_bytes) : max_cached_(max_cached_bytes) {}
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  /// A cached block of exactly `bytes`, or nullptr.
  void* take(std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(bytes);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= bytes;
    return p;
  }
  /// Keeps p for reuse; false when that would exceed the limit (the caller frees it then).
  bool give(void* p, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_ + bytes > max_cached_) return false;
    free_[bytes].push_back(p);
    cached_ += bytes;
    return true;
  }
  /// Frees every cached block with free_block(p, bytes); returns the bytes released.
  template <class Free>
  std::size_t release(Free&& free_block) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::size_t released = cached_;
    for (auto& [bytes, blocks] : free_) {
      for (void* p : blocks) free_block(p, bytes);
    }
    free_.clear();
    cached_ = 0;
    return released;
  }
  std::size_t cached_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::size_t cached_ = 0;
  std::size_t max_cached_;
};

}  // namespace tessera::detail
