// The library-neutral half of the harness: option parsing, timing, and the triad.
#include "harness.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>

namespace tessera_bench {

const char* unit_name(Unit unit) { return unit == Unit::gflops ? "GFLOP/s" : "ms"; }

int parse_threads(int& argc, char** argv) {
  int n = 0;
  if (const char* env = std::getenv("TESSERA_THREADS")) n = std::atoi(env);
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    const char* arg = argv[i];
    if (std::strcmp(arg, "--threads") == 0 && i + 1 < argc) {
      n = std::atoi(argv[++i]);
    } else if (std::strncmp(arg, "--threads=", 10) == 0) {
      n = std::atoi(arg + 10);
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  argv[argc] = nullptr;
  if (n < 0) throw std::invalid_argument("--threads / TESSERA_THREADS must be positive");
  return n;
}

namespace {
/// CPU time used so far by all threads of this process.
double process_cpu_ms() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto ms = [](const timeval& t) { return double(t.tv_sec) * 1e3 + double(t.tv_usec) * 1e-3; };
  return ms(usage.ru_utime) + ms(usage.ru_stime);
}
}  // namespace

void wait_until_idle(int max_ms) {
  constexpr int slice_ms = 10;
  double before = process_cpu_ms();
  for (int waited = 0; waited < max_ms; waited += slice_ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(slice_ms));
    const double now = process_cpu_ms();
    if (now - before < 0.05 * slice_ms) return;  // under 5% of one core: nothing is spinning
    before = now;
  }
}

std::vector<Timing> time_rounds(const std::vector<Runner*>& runners, int warmup, int reps, int settle_ms, int burst) {
  using clock = std::chrono::steady_clock;
  reps = std::max(reps, 1);
  burst = std::max(burst, 0);
  std::vector<std::vector<double>> ms(runners.size());
  for (int round = 0; round < warmup + reps; ++round) {
    for (std::size_t r = 0; r < runners.size(); ++r) {
      if (settle_ms > 0) wait_until_idle(settle_ms);
      runners[r]->before_turn();
      if (burst > 0) runners[r]->run();  // the wake-up run (see the header)
      for (int b = 0; b < std::max(burst, 1); ++b) {
        const auto t0 = clock::now();
        runners[r]->run();
        const double t = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
        if (round >= warmup) ms[r].push_back(t);
      }
    }
  }
  std::vector<Timing> timings;
  for (auto& v : ms) {
    std::sort(v.begin(), v.end());
    const std::size_t mid = v.size() / 2;
    timings.push_back({v.size() % 2 ? v[mid] : 0.5 * (v[mid - 1] + v[mid]), v.front()});
  }
  return timings;
}

// ---- triad ---------------------------------------------------------------------------------------

namespace {
constexpr std::align_val_t triad_alignment{64};

/// Runs f(begin, end) on `threads()` contiguous shares of [0, stream_elements); the calling thread
/// takes the first share, like tessera's pool does.
template <class F>
void split_over_threads(F f) {
  const int t = std::max(threads(), 1);
  const std::int64_t n = stream_elements;
  const std::int64_t chunk = (n + t - 1) / t;
  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(t - 1));
  for (int i = 1; i < t; ++i) {
    const std::int64_t b = std::min(n, i * chunk), e = std::min(n, b + chunk);
    workers.emplace_back([&f, b, e] { f(b, e); });
  }
  f(0, std::min(n, chunk));
  for (auto& w : workers) w.join();
}

/// The triad's arrays, first touched by the threads that later stream each share.
class Triad final : public Runner {
 public:
  Triad() {
    const std::size_t bytes = std::size_t(stream_elements) * sizeof(float);
    a_ = static_cast<float*>(::operator new(bytes, triad_alignment));
    b_ = static_cast<float*>(::operator new(bytes, triad_alignment));
    y_ = static_cast<float*>(::operator new(bytes, triad_alignment));
    split_over_threads([this](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        a_[i] = float(i % 1000) * 1e-3f;
        b_[i] = float(i % 997) * 1e-3f;
        y_[i] = 0.0f;
      }
    });
  }
  ~Triad() override {
    ::operator delete(a_, triad_alignment);
    ::operator delete(b_, triad_alignment);
    ::operator delete(y_, triad_alignment);
  }
  Triad(const Triad&) = delete;
  Triad& operator=(const Triad&) = delete;

  void run() override {
    float* __restrict y = y_;
    const float* __restrict a = a_;
    const float* __restrict b = b_;
    split_over_threads([=](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) y[i] = a[i] + 2.0f * b[i];
    });
  }
  std::vector<float> result() const override { return std::vector<float>(y_, y_ + stream_elements); }

 private:
  float* a_;
  float* b_;
  float* y_;
};

}  // namespace

std::unique_ptr<Runner> make_triad() { return std::make_unique<Triad>(); }

}  // namespace tessera_bench
