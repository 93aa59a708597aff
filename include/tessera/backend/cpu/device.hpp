// The CPU backend's device side: aligned host memory and the thread pool every CPU kernel uses.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "tessera/backend/block_cache.hpp"
#include "tessera/core/config.hpp"
#include "tessera/core/random.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/instrument.hpp"

namespace tessera {

/// The CPU backend policy (Eigen 3.4 + optional BLAS). Satisfies backend/concept.hpp.
struct cpu {
  static constexpr const char* name = "cpu";
  /// Elements can be read and written directly by host code.
  static constexpr bool host_accessible = true;
  /// Buffers are aligned for the widest SIMD loads (AVX-512), except small ones (below
  /// small_bytes), which get the default alignment of operator new (16): a 64-aligned allocation
  /// takes glibc's memalign path, which splits and frees chunks and cost more than the rest of a
  /// small gradient computation, while a small buffer gains nothing from the alignment.
  static constexpr std::size_t alignment = 64;
  static constexpr std::size_t small_bytes = 1024;

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

/// Where the workers woken after a pause run. Some virtual machines' guest schedulers pack a
/// woken thread onto a busy vCPU, the one of the thread that woke it, so that idle vCPUs stay
/// halted (the 2-core development VMs boot with `sched_vcpu_pack`). A worker woken there waits
/// behind the caller, which then runs every task itself, and the two share one vCPU, call after
/// call, until the load balancer moves one (docs/cpu-performance.md, "Waking workers on a VM that
/// packs vCPUs"). Steering pins each sleeping worker, just before it is woken, to a CPU of its
/// own other than the waker's, and the worker restores its affinity as soon as it runs, so the
/// scheduler stays free to move it later. Linux only; elsewhere, and with one allowed CPU, it
/// does nothing.
class WakeSteering {
 public:
  /// The CPUs allowed to the constructing thread, which the pool's threads inherit.
  WakeSteering() {
#if defined(__linux__)
    CPU_ZERO(&home_);
    if (sched_getaffinity(0, sizeof home_, &home_) == 0) {
      for (int c = 0; c < CPU_SETSIZE; ++c) {
        if (CPU_ISSET(c, &home_)) cpus_.push_back(c);
      }
    }
#endif
  }
  /// False where there is nothing to steer between (one CPU, or not Linux).
  bool possible() const { return cpus_.size() > 1; }
  /// The CPU the calling thread runs on, or -1 where that is unknown.
  static int current_cpu() {
#if defined(__linux__)
    return sched_getcpu();
#else
    return -1;
#endif
  }
  /// The id the kernel knows the calling thread by (what pin() takes), or 0 where unknown.
  static long thread_id() {
#if defined(__linux__)
    return static_cast<long>(syscall(SYS_gettid));
#else
    return 0;
#endif
  }
  /// The CPU for the index-th worker woken by a thread on CPU `waker`: the allowed CPUs after the
  /// waker's in turn, never the waker's own (with more workers than other CPUs, they share).
  int target(std::size_t index, int waker) const {
    const std::size_t n = cpus_.size();
    if (n < 2) return -1;
    const auto at = std::find(cpus_.begin(), cpus_.end(), waker);
    if (at == cpus_.end()) return cpus_[index % n];
    const auto p = static_cast<std::size_t>(at - cpus_.begin());
    return cpus_[(p + 1 + index % (n - 1)) % n];
  }
  /// Restricts thread `tid` to CPU `cpu` (until restore()); false if the kernel refused.
  static bool pin(long tid, int cpu) {
#if defined(__linux__)
    if (tid <= 0 || cpu < 0) return false;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return sched_setaffinity(static_cast<pid_t>(tid), sizeof one, &one) == 0;
#else
    (void)tid, (void)cpu;
    return false;
#endif
  }
  /// Gives the calling thread back every CPU it was allowed when the steering was made.
  void restore() const {
#if defined(__linux__)
    if (possible()) sched_setaffinity(0, sizeof home_, &home_);
#endif
  }

 private:
#if defined(__linux__)
  cpu_set_t home_;
#endif
  std::vector<int> cpus_;
};

/// The worker threads behind tessera::cpu. Each offered job is run once by every worker that sees
/// it; a worker that is late may see only a later job (parallel_tasks does not depend on any
/// worker showing up: the caller claims every task nobody else has).
///
/// After a job a worker polls for the next one for `spin` before it blocks. Between the parallel
/// kernels of a training step there is serial work of tens to hundreds of microseconds; a worker
/// that blocked there had to be woken for the next kernel, and on the 2-core VM waking a halted
/// vCPU took long enough that the first MLP step after a pause ran at half speed. (LibTorch's
/// OpenMP threads poll too.) Polling pauses the core and yields now and then, so other threads of
/// the process (a DataLoader's) still get it.
///
/// Blocked workers are woken where WakeSteering puts them once a worker has been seen to wake on
/// the CPU of the thread that woke it; until then (on most machines, always) waking costs no
/// system call more.
class WorkerPool {
 public:
  static constexpr std::chrono::microseconds spin{1000};

  explicit WorkerPool(int workers)
      : tids_(static_cast<std::size_t>(std::max(workers, 0))), state_(tids_.size(), running) {
    threads_.reserve(tids_.size());
    for (std::size_t i = 0; i < tids_.size(); ++i) threads_.emplace_back([this, i] { loop(i); });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_.store(true, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void offer(std::shared_ptr<const std::function<void()>> job) {
    bool sleepers = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = std::move(job);
      generation_.fetch_add(1, std::memory_order_release);
      sleepers = sleeping_ > 0;
      if (sleepers) {
        waker_cpu_ = WakeSteering::current_cpu();
        const bool steer = steer_.load(std::memory_order_relaxed);
        std::size_t index = 0;
        for (std::size_t w = 0; w < state_.size(); ++w) {
          if (state_[w] != blocked) continue;
          if (steer &&
              WakeSteering::pin(tids_[w].load(std::memory_order_acquire), steering_.target(index++, waker_cpu_))) {
            ++steered_;
          }
          state_[w] = woken;
        }
      }
    }
    if (sleepers) wake_.notify_all();
  }
  /// True on a worker of any WorkerPool.
  static bool on_worker() { return is_worker(); }
  /// One step of a polling loop: lets the core rest (and a sibling hyperthread run).
  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
  }
  /// Steers every later wake, as if packing had been seen (for tests: packing depends on the machine).
  void steer_wakes() {
    if (steering_.possible()) steer_.store(true, std::memory_order_relaxed);
  }
  /// Whether wakes are steered (see WakeSteering).
  bool steers_wakes() const { return steer_.load(std::memory_order_relaxed); }
  /// How many times a blocked worker was pinned away from its waker's CPU.
  std::size_t steered() {
    std::lock_guard<std::mutex> lock(mutex_);
    return steered_;
  }
  /// How many workers are blocked, waiting to be woken.
  int blocked_workers() {
    std::lock_guard<std::mutex> lock(mutex_);
    return sleeping_;
  }

 private:
  static bool& is_worker() {
    thread_local bool worker = false;
    return worker;
  }
  void loop(std::size_t index) {
    is_worker() = true;
    tids_[index].store(WakeSteering::thread_id(), std::memory_order_release);
    std::uint64_t seen = 0;
    for (;;) {
      const auto until = std::chrono::steady_clock::now() + spin;
      for (unsigned i = 1; generation_.load(std::memory_order_acquire) == seen && !stop_.load(std::memory_order_acquire);
           ++i) {
        pause();
        if (i % 64 == 0) {
          if (std::chrono::steady_clock::now() > until) break;
          std::this_thread::yield();
        }
      }
      std::shared_ptr<const std::function<void()>> job;
      int waker_cpu = -1;
      bool was_woken = false;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ++sleeping_;
        state_[index] = blocked;
        wake_.wait(lock, [&] {
          return stop_.load(std::memory_order_relaxed) || generation_.load(std::memory_order_relaxed) != seen;
        });
        --sleeping_;
        was_woken = state_[index] == woken;
        state_[index] = running;
        if (stop_.load(std::memory_order_relaxed)) return;
        seen = generation_.load(std::memory_order_relaxed);
        job = job_;
        waker_cpu = waker_cpu_;
      }
      if (was_woken) after_wake(waker_cpu);
      (*job)();
    }
  }
  /// A worker that blocked runs again: undo a steering pin, or look for packing (see WakeSteering).
  void after_wake(int waker_cpu) {
    if (steer_.load(std::memory_order_relaxed)) {
      steering_.restore();
    } else if (steering_.possible() && waker_cpu >= 0 && WakeSteering::current_cpu() == waker_cpu) {
      steer_.store(true, std::memory_order_relaxed);
    }
  }

  enum State : char { running, blocked, woken };  // woken: by an offer, and pinned if steering
  WakeSteering steering_;
  std::vector<std::atomic<long>> tids_;  // each worker's thread id, for WakeSteering::pin
  std::vector<State> state_;             // guarded by mutex_
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> steer_{false};
  std::shared_ptr<const std::function<void()>> job_;  // guarded by mutex_
  int sleeping_ = 0;                                   // guarded by mutex_
  int waker_cpu_ = -1;                                 // guarded by mutex_: the CPU of the last offer that woke workers
  std::size_t steered_ = 0;                            // guarded by mutex_
};

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
    pool_ = make_pool(n);
  }
  WorkerPool& pool() { return *pool_; }
  /// True on a pool worker: nested kernels then run inline instead of waiting on the pool.
  bool on_worker() const { return WorkerPool::on_worker(); }

 private:
  static int default_threads() {
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
  }
  CpuPool() : threads_(default_threads()) { pool_ = make_pool(threads_); }
  /// `threads` - 1 workers: the thread that starts a parallel region works on it too.
  static std::unique_ptr<WorkerPool> make_pool(int threads) { return std::make_unique<WorkerPool>(threads - 1); }
  std::mutex mutex_;
  int threads_;
  std::unique_ptr<WorkerPool> pool_;
};

/// A non-owning reference to a callable `void(index_t)`: what the pool runs. Kernels pass their
/// lambdas through it, so the pool's machinery (ParallelRegion::work, the std::function job, the
/// shared state) is compiled once per program rather than once per kernel type; a test program
/// instantiates hundreds of kernels, and that copy per kernel was a large share of its build.
class TaskRef {
 public:
  // Not for TaskRef itself: copying one must copy it, not make a reference to it.
  template <class F, std::enable_if_t<!std::is_same_v<std::remove_const_t<F>, TaskRef>, int> = 0>
  explicit TaskRef(F& f) noexcept
      : object_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, index_t t) { (*static_cast<F*>(o))(t); }) {}
  void operator()(index_t t) const { call_(object_, t); }

 private:
  void* object_;
  void (*call_)(void*, index_t);
};

/// What the threads of one parallel_tasks call share. Helpers hold it by shared_ptr, so a helper
/// that starts after the call has returned finds no task left and touches nothing else.
struct ParallelRegion {
  explicit ParallelRegion(index_t n) : tasks(n) {}
  const index_t tasks;
  std::atomic<index_t> next{0};
  std::atomic<index_t> done{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;
  std::condition_variable finished;
  std::exception_ptr error;

  /// Claims and runs tasks until none is left. f is only called for a claimed task, and the
  /// calling thread waits for every task to be done, so f is alive whenever it runs.
  void work(TaskRef f) {
    for (index_t t; (t = next.fetch_add(1, std::memory_order_relaxed)) < tasks;) {
      if (!failed.load(std::memory_order_relaxed)) {
        try {
          f(t);
        } catch (...) {
          std::lock_guard<std::mutex> lock(mutex);
          if (!error) error = std::current_exception();
          failed.store(true, std::memory_order_relaxed);
        }
      }
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == tasks) {
        std::lock_guard<std::mutex> lock(mutex);
        finished.notify_all();
      }
    }
  }
  /// Waits for the tasks other threads are running. They were claimed, so they are running now:
  /// the caller polls for a while (as a worker does between jobs) before it blocks, because being
  /// woken costs more than the tail of a small kernel (tens of microseconds on a VM).
  void wait() {
    const auto until = std::chrono::steady_clock::now() + WorkerPool::spin;
    for (unsigned i = 1; done.load(std::memory_order_acquire) != tasks; ++i) {
      WorkerPool::pause();
      if (i % 64 == 0) {
        if (std::chrono::steady_clock::now() > until) break;
        std::this_thread::yield();  // an oversubscribed core goes to the threads doing the work
      }
    }
    if (done.load(std::memory_order_acquire) == tasks) return;
    std::unique_lock<std::mutex> lock(mutex);
    finished.wait(lock, [&] { return done.load(std::memory_order_acquire) == tasks; });
  }
};

/// While one is alive on a thread, the parallel regions that thread starts run inline on it, task
/// after task: for a kernel too small to share, whose halves would spend as long fetching each
/// other's data from the other core's cache as they save (conv2d_forward's rule, conv.hpp).
/// Results do not change: a task covers the same range wherever it runs.
class InlineRegions {
 public:
  explicit InlineRegions(bool active) : previous_(flag()) { flag() = previous_ || active; }
  ~InlineRegions() { flag() = previous_; }
  InlineRegions(const InlineRegions&) = delete;
  InlineRegions& operator=(const InlineRegions&) = delete;
  static bool active() { return flag(); }

 private:
  static bool& flag() {
    thread_local bool inline_regions = false;
    return inline_regions;
  }
  bool previous_;
};

/// parallel_tasks for a type-erased task (see TaskRef).
inline void run_parallel_tasks(index_t tasks, TaskRef f) {
  auto& pool = CpuPool::instance();
  if (tasks == 1 || pool.threads() == 1 || pool.on_worker() || InlineRegions::active()) {
    for (index_t t = 0; t < tasks; ++t) f(t);
    return;
  }
  auto region = std::make_shared<ParallelRegion>(tasks);
  pool.pool().offer(std::make_shared<const std::function<void()>>([region, f] { region->work(f); }));
  region->work(f);
  region->wait();
  if (region->error) std::rethrow_exception(region->error);
}

/// Runs f(task) for task in [0, tasks) on the pool; the calling thread takes part.
///
/// Tasks are claimed one at a time, by the caller as well as by the workers, so the call never
/// waits for a worker that has not started: it only waits for tasks already running. Each task
/// still covers a fixed range, so results do not depend on which thread ran it. The first
/// exception thrown by f is rethrown here, after every started task has finished; tasks not yet
/// started are skipped.
template <class F>
void parallel_tasks(index_t tasks, F&& f) {
  if (tasks <= 0) return;
  run_parallel_tasks(tasks, TaskRef(f));
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

/// parallel_for for passes over rows of length `inner` laid end to end (total elements), whose
/// loops run SIMD packets from a chunk's first element and scalar code for the rest: every split
/// point falls at a multiple of 16 within its row, so each element takes the same path (packet or
/// scalar, which can round differently for tanh or exp) whatever the thread count. Every parallel
/// pass whose chunk boundaries could change an element's arithmetic splits this way; the others
/// (parallel_for) only split work whose results do not depend on where a chunk starts.
template <class F>
void parallel_rows(index_t total, index_t inner, index_t serial_below, F&& f) {
  const index_t threads = CpuPool::instance().threads();
  if (total <= 0) return;
  if (total < serial_below || threads == 1) {
    f(index_t{0}, total);
    return;
  }
  constexpr index_t align = 16;
  auto split = [&](index_t t) {
    const index_t v = std::min(total, (total + threads - 1) / threads * t);
    const index_t row = v / inner, col = v % inner;
    return row * inner + col / align * align;
  };
  parallel_tasks(threads, [&](index_t t) {
    const index_t b = split(t), e = t + 1 == threads ? total : split(t + 1);
    if (b < e) f(b, e);
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

/// The CPU's cache of freed blocks of 64 KiB or more (up to 1 GiB in all). A training step
/// allocates the same activation and gradient buffers every step; without it, each large one is a
/// fresh mmap whose pages the kernel faults in and zeroes again (page faults and page zeroing were
/// ~8% of the samples in a profile of an MLP step).
struct HostBlockCache {
  static constexpr std::size_t min_bytes = std::size_t(64) << 10;
  static BlockCache& instance() {
    static auto* cache = new BlockCache(std::size_t(1) << 30);  // never destroyed: tensors may outlive static destructors
    return *cache;
  }
};
}  // namespace detail
inline void* cpu::allocate(std::size_t bytes) {
  instrument::count_allocation();
  if (bytes == 0) bytes = alignment;
  if (bytes < small_bytes) return ::operator new(bytes);
  if (bytes >= detail::HostBlockCache::min_bytes) {
    if (void* p = detail::HostBlockCache::instance().take(bytes)) return p;
  }
  return ::operator new(bytes, std::align_val_t(alignment));
}
inline void cpu::deallocate(void* p, std::size_t bytes) noexcept {
  if (bytes == 0) bytes = alignment;
  if (bytes < small_bytes) {
    ::operator delete(p);  // unsized: Clang before 19 does not declare sized deallocation by default
    return;
  }
  if (bytes >= detail::HostBlockCache::min_bytes) {
    try {
      if (detail::HostBlockCache::instance().give(p, bytes)) return;
    } catch (...) {  // the cache could not grow its index: free the block instead
    }
  }
  ::operator delete(p, std::align_val_t(alignment));
}
inline void cpu::release_cached_memory() noexcept {
  detail::HostBlockCache::instance().release([](void* p, std::size_t) { ::operator delete(p, std::align_val_t(alignment)); });
}

inline int cpu::num_threads() { return detail::CpuPool::instance().threads(); }
inline void cpu::set_num_threads(int n) { detail::CpuPool::instance().set_threads(n); }

/// Fills p[0, n) with the next values of `gen` under the draw `dist` (core/random.hpp: uniform,
/// normal, dropout masks). Counter blocks are independent, so the values do not depend on the
/// thread count, and the CUDA backend's random_fill draws the same ones.
template <class T, class Dist>
void random_fill(cpu, T* p, index_t n, Generator& gen, const Dist& dist) {
  constexpr index_t per = Dist::per_block;
  const index_t blocks = (n + per - 1) / per;
  const std::uint64_t first = gen.advance(static_cast<std::uint64_t>(blocks));
  detail::parallel_for(blocks, 256, 4096, [&](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) {
      dist.write(gen.at(first + static_cast<std::uint64_t>(i)), p + i * per, static_cast<int>(std::min(per, n - i * per)));
    }
  });
}

}  // namespace tessera
