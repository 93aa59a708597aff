// The CPU backend's device side: aligned host memory and the thread pool every CPU kernel uses.
#pragma once

#ifndef EIGEN_USE_THREADS
#define EIGEN_USE_THREADS
#endif
#include <unsupported/Eigen/CXX11/ThreadPool>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <unordered_map>
#include <vector>

#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/instrument.hpp"

namespace tessera {

/// The CPU backend policy (Eigen 3.4 + optional BLAS). Satisfies backend/concept.hpp.
struct cpu {
  static constexpr const char* name = "cpu";
  /// Elements can be read and written directly by host code.
  static constexpr bool host_accessible = true;
  /// Buffers are aligned for the widest SIMD loads (AVX-512).
  static constexpr std::size_t alignment = 64;

  /// Uninitialized storage for `bytes` bytes; throws std::bad_alloc on failure.
  static void* allocate(std::size_t bytes);
  static void deallocate(void* p, std::size_t bytes) noexcept;
  /// Frees the blocks the allocator keeps for reuse (see detail::HostBlockCache).
  static void release_cached_memory() noexcept;
  /// Host memory is device memory here, so the three copies are one memcpy.
  static void copy_to_host(void* host_dst, const void* src, std::size_t bytes) { std::memcpy(host_dst, src, bytes); }
  static void copy_from_host(void* dst, const void* host_src, std::size_t bytes) { std::memcpy(dst, host_src, bytes); }
  static void copy_device(void* dst, const void* src, std::size_t bytes) { std::memmove(dst, src, bytes); }
  static void fill_zero(void* dst, std::size_t bytes) { std::memset(dst, 0, bytes); }

  /// Threads used by CPU kernels (default: all hardware threads).
  static int num_threads();
  /// Changes the thread count for later kernels; 0 restores the default. Not safe while kernels run.
  static void set_num_threads(int n);
};

namespace detail {

/// The process-wide pool behind tessera::cpu; rebuilt when the thread count changes.
class CpuPool {
 public:
  static CpuPool& instance() {
    static CpuPool pool;
    return pool;
  }
  int threads() const { return threads_; }
  void set_threads(int n) {
    if (n <= 0) n = default_threads();
    std::lock_guard<std::mutex> lock(mutex_);
    if (n == threads_) return;
    pool_.reset();
    threads_ = n;
    pool_ = std::make_unique<Eigen::ThreadPool>(n);
  }
  Eigen::ThreadPool& pool() { return *pool_; }
  /// True on a pool worker: nested kernels then run inline instead of deadlocking the pool.
  bool on_worker() const { return pool_->CurrentThreadId() != -1; }

 private:
  static int default_threads() {
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
  }
  CpuPool() : threads_(default_threads()) {
    pool_ = std::make_unique<Eigen::ThreadPool>(threads_);
  }
  std::mutex mutex_;
  int threads_;
  std::unique_ptr<Eigen::ThreadPool> pool_;
};

/// Runs f(task) for task in [0, tasks) on the pool; the calling thread takes a share.
template <class F>
void parallel_tasks(index_t tasks, F&& f) {
  if (tasks <= 0) return;
  auto& pool = CpuPool::instance();
  if (tasks == 1 || pool.threads() == 1 || pool.on_worker()) {
    for (index_t t = 0; t < tasks; ++t) f(t);
    return;
  }
  Eigen::Barrier barrier(static_cast<unsigned>(tasks - 1));
  for (index_t t = 1; t < tasks; ++t) {
    pool.pool().Schedule([&f, &barrier, t] {
      f(t);
      barrier.Notify();
    });
  }
  f(index_t{0});
  barrier.Wait();
}

/// Splits [0, n) into contiguous chunks (multiples of `grain`) over the pool's threads and runs
/// f(begin, end) on each; small ranges (below `serial_below`) run inline.
template <class F>
void parallel_for(index_t n, index_t grain, index_t serial_below, F&& f) {
  if (n <= 0) return;
  const index_t threads = CpuPool::instance().threads();
  if (n < serial_below || threads == 1) {
    f(index_t{0}, n);
    return;
  }
  grain = std::max<index_t>(grain, 1);
  index_t chunk = (n + threads - 1) / threads;
  chunk = (chunk + grain - 1) / grain * grain;
  const index_t tasks = (n + chunk - 1) / chunk;
  parallel_tasks(tasks, [&](index_t t) {
    const index_t b = t * chunk;
    const index_t e = std::min(n, b + chunk);
    f(b, e);
  });
}

/// The sum of f(x) over channel c of contiguous x viewed as [N, C, S] (batch norm's statistics, a
/// conv bias's gradient), in eight interleaved double accumulators: independent additions the
/// compiler vectorizes, where one accumulator would be a chain of dependent ones.
template <class T, class F>
double sum_by_lanes(const T* x, index_t c, index_t N, index_t C, index_t S, F f) {
  double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (index_t n = 0; n < N; ++n) {
    const T* p = x + (n * C + c) * S;
    index_t i = 0;
    for (; i + 8 <= S; i += 8)
      for (int k = 0; k < 8; ++k) lanes[k] += f(p[i + k]);
    for (; i < S; ++i) lanes[i % 8] += f(p[i]);
  }
  return ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
}

}  // namespace detail

namespace detail {

/// Freed blocks of 64 KiB or more, kept by exact size for the next allocation of that size (up to
/// 1 GiB in all). A training step allocates the same activation and gradient buffers every
/// step; without this, each large one is a fresh mmap whose pages the kernel faults in and zeroes
/// again (page faults and page zeroing were ~8% of the samples in a profile of an MLP step).
class HostBlockCache {
 public:
  static HostBlockCache& instance() {
    static auto* cache = new HostBlockCache;  // never destroyed: tensors may outlive static destructors
    return *cache;
  }
  static constexpr std::size_t min_bytes = std::size_t(64) << 10;
  static constexpr std::size_t max_cached_bytes = std::size_t(1) << 30;

  void* take(std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(bytes);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= bytes;
    return p;
  }
  /// Keeps p for reuse; false when the cache is full (the caller frees it).
  bool give(void* p, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_ + bytes > max_cached_bytes) return false;
    free_[bytes].push_back(p);
    cached_ += bytes;
    return true;
  }
  void release(std::size_t alignment) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [bytes, blocks] : free_) {
      for (void* p : blocks) ::operator delete(p, std::align_val_t(alignment));
    }
    free_.clear();
    cached_ = 0;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::size_t cached_ = 0;
};

}  // namespace detail

inline void* cpu::allocate(std::size_t bytes) {
  instrument::count_allocation();
  if (bytes == 0) bytes = alignment;
  if (bytes >= detail::HostBlockCache::min_bytes) {
    if (void* p = detail::HostBlockCache::instance().take(bytes)) return p;
  }
  return ::operator new(bytes, std::align_val_t(alignment));
}
inline void cpu::deallocate(void* p, std::size_t bytes) noexcept {
  if (bytes == 0) bytes = alignment;
  if (bytes >= detail::HostBlockCache::min_bytes) {
    try {
      if (detail::HostBlockCache::instance().give(p, bytes)) return;
    } catch (...) {  // the cache could not grow its index: free the block instead
    }
  }
  ::operator delete(p, std::align_val_t(alignment));
}
inline void cpu::release_cached_memory() noexcept { detail::HostBlockCache::instance().release(alignment); }

inline int cpu::num_threads() { return detail::CpuPool::instance().threads(); }
inline void cpu::set_num_threads(int n) { detail::CpuPool::instance().set_threads(n); }

}  // namespace tessera
