// The CPU backend (backend/cpu/*.hpp, backend/concept.hpp): results independent of the thread
// count, the pool's parallel_tasks and wake steering, the backend concept check, device memory entry points, and gemm()
// called directly with transpose flags, leading dimensions, alpha and beta against a naive loop.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

namespace {

using tessera::index_t;
using tessera::Shape;
using tessera::Tensor;

template <class T, std::size_t R>
Tensor<T, R> random_tensor(const Shape<R>& shape, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-2, 2);
  Tensor<T, R> t(shape);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(dist(rng));
  return t;
}

/// Bitwise equality of two contiguous tensors of one shape.
template <class T, std::size_t R>
bool identical(const Tensor<T, R>& a, const Tensor<T, R>& b) {
  return a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous() &&
         std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(T)) == 0;
}

/// Restores the default thread count when a test case ends, whatever happens in it.
struct ThreadGuard {
  ~ThreadGuard() { tessera::cpu::set_num_threads(0); }
};

/// The results compared across thread counts.
template <class T>
struct Results {
  Tensor<T, 2> chain, broadcast_chain, matmul;
  Tensor<T, 0> total;
  Tensor<T, 1> rows, cols;
};

template <class T>
Results<T> compute(const Tensor<T, 2>& x, const Tensor<T, 1>& row, const Tensor<T, 2>& w) {
  Results<T> r;
  r.chain = tessera::tanh(x * T(0.5)) + tessera::exp(-tessera::abs(x)) - tessera::sigmoid(x);
  // x [rows, 77] + row [77] does not coalesce: each 77-element row is its own inner loop, so a
  // thread's chunk can start and end in the middle of a row.
  r.broadcast_chain = tessera::exp(x + row) * tessera::tanh(row);
  r.total = tessera::sum(x);
  r.rows = tessera::sum(x * x, {1});
  r.cols = tessera::max(x, {0});
  r.matmul = tessera::matmul(x.slice(0, 0, 300), w);
  return r;
}

/// A naive C = alpha op(A) op(B) + beta C on row-major storage with leading dimensions.
template <class T>
void naive_gemm(bool ta, bool tb, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda, const T* b,
                index_t ldb, T beta, T* c, index_t ldc) {
  for (index_t i = 0; i < m; ++i) {
    for (index_t j = 0; j < n; ++j) {
      long double acc = 0;
      for (index_t p = 0; p < k; ++p) {
        const T av = ta ? a[p * lda + i] : a[i * lda + p];
        const T bv = tb ? b[j * ldb + p] : b[p * ldb + j];
        acc += static_cast<long double>(av) * bv;
      }
      c[i * ldc + j] =
          static_cast<T>(alpha * acc + (beta == T(0) ? 0.0L : static_cast<long double>(beta) * c[i * ldc + j]));
    }
  }
}

template <class T>
std::vector<T> random_buffer(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(-8, 8);  // small integers: products exact in every type
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

/// Every transpose combination with padded leading dimensions (ld = needed + pad), alpha = 2,
/// beta = 0 and beta = -1 (accumulate into C), writing an m x n block of a wider C whose padding
/// must stay untouched. `call` runs the GEMM under test with gemm()'s signature.
template <class T, class Call>
void check_gemm(Call call, const char* what) {
  // One-row products (a batch of one) take the matrix-vector path: {1, 300, 400} in column blocks.
  // {70, 81, 1100} with B transposed takes the dot-product path (gemm_dot.hpp): rows and columns
  // not whole tiles, two chunks of k, the second with elements after its last whole packet.
  const index_t shapes[][3] = {{1, 1, 1},   {1, 7, 5},    {1, 300, 400}, {3, 5, 7},
                               {17, 9, 33}, {70, 80, 90}, {70, 81, 1100}};
  unsigned seed = 1;
  for (const auto& s : shapes) {
    const index_t m = s[0], n = s[1], k = s[2];
    for (int flags = 0; flags < 4; ++flags) {
      const bool ta = flags & 1, tb = flags & 2;
      for (T beta : {T(0), T(-1)}) {
        CAPTURE(m);
        CAPTURE(n);
        CAPTURE(k);
        CAPTURE(ta);
        CAPTURE(tb);
        INFO(what);
        const index_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
        const auto a = random_buffer<T>(static_cast<std::size_t>((ta ? k : m) * lda), seed++);
        const auto b = random_buffer<T>(static_cast<std::size_t>((tb ? n : k) * ldb), seed++);
        auto c = random_buffer<T>(static_cast<std::size_t>(m * ldc), seed++);
        auto want = c;
        call(ta, tb, m, n, k, T(2), a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
        naive_gemm(ta, tb, m, n, k, T(2), a.data(), lda, b.data(), ldb, beta, want.data(), ldc);
        CHECK(c == want);  // small integers: exact, padding included
      }
    }
  }
}

struct LacksFillZero {
  static constexpr const char* name = "lacks_fill_zero";
  static constexpr bool host_accessible = true;
  static void* allocate(std::size_t) { return nullptr; }
  static void deallocate(void*, std::size_t) noexcept {}
  static void copy_to_host(void*, const void*, std::size_t) {}
  static void copy_from_host(void*, const void*, std::size_t) {}
  static void copy_device(void*, const void*, std::size_t) {}
};
struct Complete : LacksFillZero {
  static void fill_zero(void*, std::size_t) {}
};
struct Empty {};

}  // namespace

TEST_CASE_TEMPLATE("results do not depend on the thread count", T, float, double) {
  ThreadGuard guard;
  const auto x = random_tensor<T>(Shape<2>{1000, 77}, 1);
  const auto row = random_tensor<T>(Shape<1>{77}, 2);
  const auto w = random_tensor<T>(Shape<2>{77, 120}, 3);

  tessera::cpu::set_num_threads(1);
  CHECK(tessera::cpu::num_threads() == 1);
  const Results<T> one = compute(x, row, w);
  for (const int threads : {2, 3, 8, 0}) {  // 0: the default (one per core)
    tessera::cpu::set_num_threads(threads);
    if (threads > 0) CHECK(tessera::cpu::num_threads() == threads);
    const Results<T> r = compute(x, row, w);
    INFO(threads << " threads (0: the default) vs 1 thread");
    CHECK(identical(one.chain, r.chain));
    CHECK(identical(one.broadcast_chain, r.broadcast_chain));
    CHECK(identical(one.total, r.total));
    CHECK(identical(one.rows, r.rows));
    CHECK(identical(one.cols, r.cols));
    // The product's blocks depend on its shape alone (gemm_block), so it too is bit-identical.
    CHECK(identical(one.matmul, r.matmul));
  }
  // And the values are right (identical but wrong would not do).
  double total = 0;
  for (index_t i = 0; i < x.size(); ++i) total += static_cast<double>(x.data()[i]);
  CHECK(static_cast<double>(one.total()) == doctest::Approx(total).epsilon(1e-4));
}

TEST_CASE("set_num_threads(0) restores the default and 1 runs serially") {
  ThreadGuard guard;
  tessera::cpu::set_num_threads(0);
  const int dflt = tessera::cpu::num_threads();
  CHECK(dflt >= 1);
  tessera::cpu::set_num_threads(3);
  CHECK(tessera::cpu::num_threads() == 3);
  tessera::cpu::set_num_threads(-5);  // non-positive: the default again
  CHECK(tessera::cpu::num_threads() == dflt);
  // A kernel inside a kernel (a matmul materialized inside a threaded elementwise pass) completes.
  tessera::cpu::set_num_threads(2);
  const auto a = random_tensor<float>(Shape<2>{300, 200}, 4);
  const auto b = random_tensor<float>(Shape<2>{200, 150}, 5);
  const Tensor<float, 2> y = tessera::relu(tessera::matmul(a, b)) + tessera::sum(a, {1}, tessera::keepdims);
  CHECK(y.shape() == Shape<2>{300, 150});
}

TEST_CASE("parallel_tasks: every task once, exceptions reach the caller, nesting and concurrent callers") {
  ThreadGuard guard;
  for (const int threads : {1, 2, 3, 5}) {
    tessera::cpu::set_num_threads(threads);
    for (const index_t tasks : {1, 2, 3, 7, 16}) {
      std::vector<std::atomic<int>> runs(static_cast<std::size_t>(tasks));
      tessera::detail::parallel_tasks(tasks, [&](index_t t) { runs[static_cast<std::size_t>(t)].fetch_add(1); });
      for (const auto& r : runs) CHECK(r.load() == 1);
    }
  }

  tessera::cpu::set_num_threads(2);
  // A slow task on whichever thread takes it: the others are still done exactly once, by the
  // caller if the worker is busy or late.
  {
    std::vector<std::atomic<int>> runs(6);
    tessera::detail::parallel_tasks(6, [&](index_t t) {
      if (t == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      runs[static_cast<std::size_t>(t)].fetch_add(1);
    });
    for (const auto& r : runs) CHECK(r.load() == 1);
  }
  // The first exception is rethrown after the started tasks finished; the pool keeps working.
  std::atomic<int> started{0};
  CHECK_THROWS_WITH_AS(tessera::detail::parallel_tasks(4,
                                                       [&](index_t t) {
                                                         started.fetch_add(1);
                                                         if (t == 1) throw std::runtime_error("task 1 failed");
                                                       }),
                       "task 1 failed", std::runtime_error);
  CHECK(started.load() >= 1);
  std::atomic<index_t> total{0};
  tessera::detail::parallel_for(1000, 1, 1, [&](index_t b, index_t e) { total.fetch_add(e - b); });
  CHECK(total.load() == 1000);
  // A parallel kernel inside a task runs inline on that thread.
  std::atomic<int> inner{0};
  tessera::detail::parallel_tasks(2, [&](index_t) {
    tessera::detail::parallel_tasks(3, [&](index_t) { inner.fetch_add(1); });
  });
  CHECK(inner.load() == 6);
  // Two threads of the user's starting kernels at once (a DataLoader beside training).
  std::atomic<int> a_runs{0}, b_runs{0};
  std::thread other([&] {
    for (int i = 0; i < 200; ++i) tessera::detail::parallel_tasks(2, [&](index_t) { b_runs.fetch_add(1); });
  });
  for (int i = 0; i < 200; ++i) tessera::detail::parallel_tasks(2, [&](index_t) { a_runs.fetch_add(1); });
  other.join();
  CHECK(a_runs.load() == 400);
  CHECK(b_runs.load() == 400);
}

TEST_CASE("InlineRegions: regions started under it run every task on the calling thread, and it nests") {
  ThreadGuard guard;
  tessera::cpu::set_num_threads(3);
  const auto caller = std::this_thread::get_id();
  // Every task sleeps, so that a worker, if one were offered the region, would take some.
  auto tasks_elsewhere = [&] {
    std::atomic<int> elsewhere{0}, runs{0};
    tessera::detail::parallel_tasks(6, [&](index_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      runs.fetch_add(1);
      if (std::this_thread::get_id() != caller) elsewhere.fetch_add(1);
    });
    CHECK(runs.load() == 6);
    return elsewhere.load();
  };
  {
    const tessera::detail::InlineRegions outer(true);
    CHECK(tessera::detail::InlineRegions::active());
    CHECK(tasks_elsewhere() == 0);
    {
      const tessera::detail::InlineRegions inner(false);  // does not lift the outer one
      CHECK(tessera::detail::InlineRegions::active());
      CHECK(tasks_elsewhere() == 0);
    }
    CHECK(tessera::detail::InlineRegions::active());
  }
  CHECK_FALSE(tessera::detail::InlineRegions::active());
  const tessera::detail::InlineRegions off(false);
  CHECK_FALSE(tessera::detail::InlineRegions::active());
}

#if defined(__linux__)
/// The CPUs the calling thread may run on (none if the kernel does not say; no doctest macro, as
/// pool workers call it).
std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return {};
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

TEST_CASE("WakeSteering: a woken worker's CPU is an allowed one other than the waker's, spread over workers") {
  const tessera::detail::WakeSteering steering;
  const auto cpus = allowed_cpus();
  REQUIRE_FALSE(cpus.empty());
  CHECK(steering.possible() == (cpus.size() > 1));
  if (!steering.possible()) {
    MESSAGE("one allowed CPU: nothing to steer between");
    CHECK(steering.target(0, cpus.front()) == -1);
    return;
  }
  for (const int waker : cpus) {
    std::vector<int> first;  // the first cpus.size() - 1 workers' CPUs: every other CPU once
    for (std::size_t index = 0; index < 2 * cpus.size() + 1; ++index) {
      const int target = steering.target(index, waker);
      CHECK(std::find(cpus.begin(), cpus.end(), target) != cpus.end());
      CHECK(target != waker);
      if (index + 1 < cpus.size()) first.push_back(target);
    }
    std::sort(first.begin(), first.end());
    CHECK(std::adjacent_find(first.begin(), first.end()) == first.end());
  }
  // A waker whose CPU is unknown (-1) or not allowed: the allowed CPUs in turn.
  for (std::size_t index = 0; index < cpus.size(); ++index) CHECK(steering.target(index, -1) == cpus[index]);
}

TEST_CASE("WakeSteering: pin restricts another thread to one CPU, restore gives the thread back its CPUs") {
  const tessera::detail::WakeSteering steering;
  const auto cpus = allowed_cpus();
  if (!steering.possible()) {
    MESSAGE("one allowed CPU: nothing to steer between");
    return;
  }
  std::atomic<long> tid{0};
  std::atomic<int> step{0};
  std::vector<int> pinned_to, restored_to;
  std::thread other([&] {
    tid.store(tessera::detail::WakeSteering::thread_id());
    while (step.load() != 1) std::this_thread::yield();
    pinned_to = allowed_cpus();
    steering.restore();
    restored_to = allowed_cpus();
  });
  while (tid.load() == 0) std::this_thread::yield();
  const int target = steering.target(0, cpus.front());
  CHECK(tessera::detail::WakeSteering::pin(tid.load(), target));
  step.store(1);
  other.join();
  CHECK(pinned_to == std::vector<int>{target});
  CHECK(restored_to == cpus);
  CHECK_FALSE(tessera::detail::WakeSteering::pin(0, target));  // no such thread
}

TEST_CASE("WorkerPool: a steered wake pins a blocked worker away from the waker, which then has all its CPUs again") {
  const auto cpus = allowed_cpus();
  REQUIRE_FALSE(cpus.empty());
  for (const bool steer : {false, true}) {
    CAPTURE(steer);
    tessera::detail::WorkerPool pool(1);
    if (steer) pool.steer_wakes();
    CHECK(pool.steers_wakes() == (steer && cpus.size() > 1));
    for (int wake = 1; wake <= 3; ++wake) {
      // Past its polling time the worker blocks; the offer then wakes it. (Without steer_wakes the
      // pool steers from the wake after one it sees land on the waker's CPU, as on a VM that
      // packs threads onto busy vCPUs.)
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (pool.blocked_workers() != 1 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(tessera::detail::WorkerPool::spin);
      }
      REQUIRE(pool.blocked_workers() == 1);
      const bool steering = pool.steers_wakes();
      const std::size_t before = pool.steered();
      std::atomic<bool> ran{false};
      std::vector<int> worker_cpus;
      pool.offer(std::make_shared<const std::function<void()>>([&] {
        worker_cpus = allowed_cpus();
        ran.store(true, std::memory_order_release);
      }));
      while (!ran.load(std::memory_order_acquire)) std::this_thread::yield();
      CHECK(worker_cpus == cpus);
      CHECK(pool.steered() - before == (steering ? 1u : 0u));
    }
  }
}
#endif

TEST_CASE("the backend concept check") {
  static_assert(tessera::is_backend_v<tessera::cpu>);
  static_assert(!tessera::is_backend_v<Empty>);
  static_assert(!tessera::is_backend_v<LacksFillZero>);
  static_assert(tessera::is_backend_v<Complete>);
  static_assert(!tessera::is_backend_v<int>);
  CHECK(tessera::is_backend_v<tessera::cpu>);
  CHECK_FALSE(tessera::is_backend_v<LacksFillZero>);
  CHECK(std::string(tessera::cpu::name) == "cpu");
  CHECK(tessera::cpu::host_accessible);
}

TEST_CASE("batch_norm_scale_shift: the scale and the shift, with and without a convolution bias") {
  const index_t O = 40;
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> dist(-1, 1), positive(0.5f, 2.0f);
  const auto n = static_cast<std::size_t>(O);
  std::vector<float> gamma(n), beta(n), mean(n), var(n), bias(n);
  for (auto* v : {&gamma, &beta, &mean, &bias})
    for (auto& e : *v) e = dist(rng);
  for (auto& e : var) e = positive(rng);
  const double eps = 1e-3;
  for (const bool with_bias : {false, true}) {
    CAPTURE(with_bias);
    std::vector<float> scale(n), shift(n);
    tessera::batch_norm_scale_shift(tessera::cpu{}, O, gamma.data(), beta.data(), mean.data(), var.data(), eps,
                                    with_bias ? bias.data() : nullptr, scale.data(), shift.data());
    double worst = 0;
    for (std::size_t o = 0; o < n; ++o) {
      const double s = double(gamma[o]) / std::sqrt(double(var[o]) + eps);
      const double want = double(beta[o]) - double(mean[o]) * s + (with_bias ? double(bias[o]) * s : 0.0);
      worst = std::max({worst, std::abs(double(scale[o]) - s), std::abs(double(shift[o]) - want)});
    }
    CHECK(worst < 1e-5);
  }
}

TEST_CASE("cpu memory entry points") {
  tessera::instrument::reset();
  for (std::size_t bytes : {std::size_t{0}, std::size_t{1}, std::size_t{100}, std::size_t{1} << 20}) {
    void* p = tessera::cpu::allocate(bytes);
    REQUIRE(p != nullptr);
    // Small buffers get operator new's alignment, the others the SIMD alignment.
    const std::size_t expected = bytes < tessera::cpu::small_bytes ? alignof(std::max_align_t) : tessera::cpu::alignment;
    CHECK(reinterpret_cast<std::uintptr_t>(p) % expected == 0);
    tessera::cpu::deallocate(p, bytes);
  }
  CHECK(tessera::instrument::counters().allocations.load() == 4);
  std::vector<int> src(10), dst(10, -1);
  for (int i = 0; i < 10; ++i) src[static_cast<std::size_t>(i)] = i * i;
  tessera::cpu::copy_from_host(dst.data(), src.data(), 10 * sizeof(int));
  CHECK(dst == src);
  tessera::cpu::fill_zero(dst.data(), 5 * sizeof(int));
  CHECK(dst[4] == 0);
  CHECK(dst[5] == 25);
  tessera::cpu::copy_device(dst.data() + 1, dst.data(), 9 * sizeof(int));  // overlapping
  CHECK(dst[1] == 0);
  CHECK(dst[9] == 64);
  tessera::cpu::copy_to_host(src.data(), dst.data(), 10 * sizeof(int));
  CHECK(src == dst);
  // Tensor buffers come from the backend: aligned.
  Tensor<float, 2> t(16, 16);
  CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % tessera::cpu::alignment == 0);
}

TEST_CASE_TEMPLATE("gemm() with transpose flags, leading dimensions, alpha and beta", T, float, double, std::int32_t,
                   std::int64_t) {
  const auto blas_or_eigen = [](bool ta, bool tb, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                                const T* b, index_t ldb, T beta, T* c, index_t ldc) {
    tessera::gemm(tessera::cpu{}, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  };
  check_gemm<T>(blas_or_eigen, "gemm (BLAS for float/double when linked)");
  // The Eigen fallback used when no CBLAS is linked, and for integers.
  const auto eigen = [](bool ta, bool tb, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda, const T* b,
                        index_t ldb, T beta, T* c, index_t ldc) {
    tessera::detail::eigen_gemm<T>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  };
  check_gemm<T>(eigen, "eigen_gemm");
}

TEST_CASE_TEMPLATE("gemm()'s dot-product path: taken where its rule says, the same at every thread count", T, float,
                   double) {
  ThreadGuard guard;
  // Built for AVX-512 only (gemm_dot.hpp); elsewhere the products below go to BLAS or Eigen.
  CHECK(tessera::detail::dot_gemm_applies(false, true, 64, 128, 1568) == tessera::detail::dot_gemm_enabled);
  CHECK(tessera::detail::dot_gemm_applies(false, true, 8, 4096, 512) == tessera::detail::dot_gemm_enabled);
  CHECK_FALSE(tessera::detail::dot_gemm_applies(false, true, 1, 128, 1568));  // one row: matrix-vector
  CHECK_FALSE(tessera::detail::dot_gemm_applies(false, true, 4, 128, 1568));  // BLAS's small-matrix kernels
  CHECK_FALSE(tessera::detail::dot_gemm_applies(false, true, 256, 128, 1568));
  CHECK_FALSE(tessera::detail::dot_gemm_applies(false, true, 64, 512, 512));
  CHECK_FALSE(tessera::detail::dot_gemm_applies(false, true, 64, 16, 1568));
  CHECK_FALSE(tessera::detail::dot_gemm_applies(false, true, 64, 128, 256));
  CHECK_FALSE(tessera::detail::dot_gemm_applies(false, false, 64, 128, 1568));
  CHECK_FALSE(tessera::detail::dot_gemm_applies(true, true, 64, 128, 1568));
  // Random values (not small integers): the sums round, so agreement across thread counts is the
  // blocking's doing. k = 2100: three chunks, the last with a partial packet; beta = 0 ignores C.
  const index_t m = 37, n = 150, k = 2100;
  const auto a = random_tensor<T>(Shape<2>{m, k}, 31);
  const auto b = random_tensor<T>(Shape<2>{n, k}, 32);
  std::vector<T> want(std::size_t(m * n));
  naive_gemm(false, true, m, n, k, T(1), a.data(), k, b.data(), k, T(0), want.data(), n);
  std::vector<std::vector<T>> runs;
  for (int threads : {1, 2, 3}) {
    CAPTURE(threads);
    tessera::cpu::set_num_threads(threads);
    std::vector<T> c(std::size_t(m * n), std::numeric_limits<T>::quiet_NaN());
    tessera::gemm(tessera::cpu{}, false, true, m, n, k, T(1), a.data(), k, b.data(), k, T(0), c.data(), n);
    double worst = 0;
    for (std::size_t i = 0; i < c.size(); ++i) worst = std::max(worst, std::abs(double(c[i]) - double(want[i])));
    CHECK(worst <= (std::is_same_v<T, float> ? 1e-3 : 1e-11));
    runs.push_back(c);
  }
  CHECK(runs[0] == runs[1]);
  CHECK(runs[0] == runs[2]);
}

TEST_CASE("gemm() of a product large both ways: tiles of C, right, and the same at every thread count") {
  ThreadGuard guard;
  using tessera::detail::gemm_tile_cols;
  using tessera::detail::gemm_tile_rows;
  using tessera::detail::gemm_tiled;
  CHECK(gemm_tiled(2048, 2048));
  CHECK_FALSE(gemm_tiled(2047, 4096));  // strips
  CHECK_FALSE(gemm_tiled(4096, 1024));
  CHECK(gemm_tile_rows(2048) == 512);
  CHECK(gemm_tile_cols(2048) == 1024);
  CHECK(gemm_tile_rows(2100) == 528);   // 4 tiles, rounded up to 16 rows: the last one 516
  CHECK(gemm_tile_cols(5000) == 1264);  // 4 tiles
  // 2100 x 2200 with k = 24: 4 x 2 tiles, the last row and column of them smaller; all four
  // transpose cases; random values, so sums round and agreement across thread counts is the tiling's doing.
  const index_t m = 2100, n = 2200, k = 24;
  const auto a = random_tensor<float>(Shape<2>{m, k}, 41);
  const auto at = random_tensor<float>(Shape<2>{k, m}, 42);
  const auto b = random_tensor<float>(Shape<2>{k, n}, 43);
  const auto bt = random_tensor<float>(Shape<2>{n, k}, 44);
  for (const bool trans_a : {false, true}) {
    for (const bool trans_b : {false, true}) {
      CAPTURE(trans_a);
      CAPTURE(trans_b);
      const float* pa = trans_a ? at.data() : a.data();
      const float* pb = trans_b ? bt.data() : b.data();
      const index_t lda = trans_a ? m : k, ldb = trans_b ? k : n;
      std::vector<float> want(std::size_t(m * n));
      naive_gemm(trans_a, trans_b, m, n, k, 1.0f, pa, lda, pb, ldb, 0.0f, want.data(), n);
      std::vector<std::vector<float>> runs;
      for (const int threads : {1, 2, 3}) {
        CAPTURE(threads);
        tessera::cpu::set_num_threads(threads);
        std::vector<float> c(std::size_t(m * n), std::numeric_limits<float>::quiet_NaN());
        tessera::gemm(tessera::cpu{}, trans_a, trans_b, m, n, k, 1.0f, pa, lda, pb, ldb, 0.0f, c.data(), n);
        double worst = 0;
        for (std::size_t i = 0; i < c.size(); ++i) worst = std::max(worst, std::abs(double(c[i]) - double(want[i])));
        CHECK(worst <= 1e-4);
        runs.push_back(std::move(c));
      }
      CHECK(runs[0] == runs[1]);
      CHECK(runs[0] == runs[2]);
    }
  }
}

TEST_CASE("gemm() of one row with beta = 0 ignores what C held (NaN), at every thread count") {
  ThreadGuard guard;
  const index_t n = 300, k = 400;
  const auto a = random_buffer<float>(std::size_t(k), 21);
  const auto b = random_buffer<float>(std::size_t(n * k), 22);
  std::vector<float> want(std::size_t(n), 0.0f);
  naive_gemm(false, true, 1, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, want.data(), n);
  for (int threads : {1, 2, 3}) {
    CAPTURE(threads);
    tessera::cpu::set_num_threads(threads);
    std::vector<float> c(std::size_t(n), std::numeric_limits<float>::quiet_NaN());
    tessera::gemm(tessera::cpu{}, false, true, 1, n, k, 1.0f, a.data(), k, b.data(), k, 0.0f, c.data(), n);
    CHECK(c == want);
  }
}

TEST_CASE("gemm() edge cases: k = 0 scales C by beta, m = 0 or n = 0 touch nothing") {
  std::vector<double> c = {1, 2, 3, 4, 5, 6};
  const double* none = nullptr;
  tessera::gemm(tessera::cpu{}, false, false, 2, 3, 0, 1.0, none, 1, none, 3, 0.5, c.data(), 3);
  CHECK(c == std::vector<double>{0.5, 1, 1.5, 2, 2.5, 3});
  tessera::gemm(tessera::cpu{}, false, false, 2, 3, 0, 1.0, none, 1, none, 3, 0.0, c.data(), 3);
  CHECK(c == std::vector<double>{0, 0, 0, 0, 0, 0});
  std::vector<float> d = {7, 8};
  tessera::gemm(tessera::cpu{}, false, false, 0, 2, 4, 1.f, static_cast<const float*>(nullptr), 4,
                static_cast<const float*>(nullptr), 2, 0.f, d.data(), 2);
  CHECK(d == std::vector<float>{7, 8});
  // Each call is one materialization.
  tessera::instrument::reset();
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6, 7, 8}, out(4);
  tessera::gemm(tessera::cpu{}, false, false, 2, 2, 2, 1.f, a.data(), 2, b.data(), 2, 0.f, out.data(), 2);
  CHECK(tessera::instrument::counters().materializations.load() == 1);
  CHECK(out == std::vector<float>{19, 22, 43, 50});
}
