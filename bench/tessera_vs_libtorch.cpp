// Runs every workload of the table through tessera and LibTorch on the same inputs, checks that
// both compute the same numbers, and prints one line per workload on stdout:
//
//   <workload> <tessera value> <libtorch value> <unit>
//
// where a value is the median of the timed runs, in ms or, for GEMM, in GFLOP/s: --reps rounds
// (after --warmup untimed ones) in which each library, after waiting for the process to go idle,
// runs once untimed and then --burst times (3) back to back, timed, as training steps follow each
// other (see time_rounds in harness.hpp). The two libraries (and, for elementwise_chain, the
// triad) take turns within each round, so drift of a shared machine affects both alike. Workloads
// bound by memory add two lines (elementwise_chain's shown; sum's are sum_triad_floor, sum_vs_floor):
//   triad_floor <ms> - ms       its memory floor: 6 arrays of 64 MiB moved at the bandwidth of the
//                               std::thread triad y = a + 2b (3 arrays), i.e. 2 x the triad's median,
//                               measured in the same rounds with the same thread count (sum: 1 array)
//   elementwise_chain_vs_floor <tessera> <libtorch> x
//                               elementwise_chain's median time divided by triad_floor
// Details (library builds, max |difference| per workload) go to stderr. Exits 1 when a workload's
// results differ by more than its tolerance, 2 on an error.
//
//   tessera_vs_libtorch [--threads N] [--reps N] [--warmup N] [--settle-ms N] [--burst N]
//                       [--libtorch-blas-threads N] [workload...]
//   (TESSERA_THREADS in the environment works as --threads; workload names select a subset;
//   --libtorch-blas-threads: OpenBLAS's threads in LibTorch's turns, default 1, see harness.hpp)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness.hpp"

namespace tb = tessera_bench;

namespace {

struct Options {
  int reps = 11;
  int warmup = 2;
  int settle_ms = 500;            ///< longest wait for idle workers before each turn (see time_rounds)
  int burst = 3;                  ///< timed runs per turn, back to back after one untimed run (0: one, cold)
  std::vector<std::string> only;  ///< workloads named on the command line (all when empty)
};

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* flag) -> const char* {
      const std::size_t len = std::strlen(flag);
      if (arg == flag && i + 1 < argc) return argv[++i];
      if (arg.compare(0, len, flag) == 0 && arg.size() > len && arg[len] == '=') return argv[i] + len + 1;
      return nullptr;
    };
    if (const char* v = value("--reps")) {
      o.reps = std::max(1, std::atoi(v));
    } else if (const char* v = value("--warmup")) {
      o.warmup = std::max(0, std::atoi(v));
    } else if (const char* v = value("--settle-ms")) {
      o.settle_ms = std::max(0, std::atoi(v));
    } else if (const char* v = value("--burst")) {
      o.burst = std::max(0, std::atoi(v));
    } else if (const char* v = value("--libtorch-blas-threads")) {
      tb::set_libtorch_blas_threads(std::atoi(v));
    } else if (arg.rfind("--", 0) == 0) {
      throw std::invalid_argument("unknown option '" + arg +
                                  "' (use --threads N, --reps N, --warmup N, --settle-ms N, --burst N, "
                                  "--libtorch-blas-threads N, workload names)");
    } else {
      o.only.push_back(arg);
    }
  }
  return o;
}

/// Largest |a - b|; infinity when the sizes differ or an element is NaN in one result only.
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    if (std::isnan(d)) {
      if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
      continue;
    }
    worst = std::max(worst, d);
  }
  return worst;
}

double report_value(const tb::Workload& w, double ms) { return w.unit == tb::Unit::gflops ? w.flops / (ms * 1e6) : ms; }

/// Measures one workload, prints its lines, and returns whether both libraries agree.
bool compare(const tb::Workload& w, const Options& options) {
  std::vector<std::unique_ptr<tb::Runner>> runners;
  {
    const tb::Inputs inputs = w.make_inputs();  // freed once both libraries hold their copies
    runners.push_back(w.tessera(inputs));
    runners.push_back(w.libtorch(inputs));
  }
  if (w.floor_arrays > 0) runners.push_back(tb::make_triad());
  std::vector<tb::Runner*> order;
  for (auto& r : runners) order.push_back(r.get());
  const std::vector<tb::Timing> timings = tb::time_rounds(order, options.warmup, options.reps, options.settle_ms, options.burst);
  std::vector<double> ms;
  for (const auto& t : timings) ms.push_back(t.median_ms);

  const double diff = max_abs_diff(runners[0]->result(), runners[1]->result());
  const bool match = diff <= w.tolerance;
  std::fprintf(stderr, "# %s: max |tessera - libtorch| = %.3g (tolerance %.3g) %s; fastest runs %.2f %.2f ms\n",
               w.name.c_str(), diff, w.tolerance, match ? "ok" : "MISMATCH", timings[0].min_ms, timings[1].min_ms);
  const char* format = w.unit == tb::Unit::gflops ? "%s %.1f %.1f %s\n" : "%s %.2f %.2f %s\n";
  std::printf(format, w.name.c_str(), report_value(w, ms[0]), report_value(w, ms[1]), tb::unit_name(w.unit));
  if (w.floor_arrays > 0) {
    const double floor_ms = tb::memory_floor_ms(ms[2], w.floor_arrays);
    const std::string label = w.name == "elementwise_chain" ? "triad" : w.name + "_triad";
    std::printf("%s_floor %.2f - ms\n", label.c_str(), floor_ms);
    std::printf("%s_vs_floor %.2f %.2f x\n", w.name.c_str(), ms[0] / floor_ms, ms[1] / floor_ms);
  }
  std::fflush(stdout);
  return match;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int threads = tb::set_threads(tb::parse_threads(argc, argv));
    const Options options = parse_options(argc, argv);
    if (!tb::libtorch_available()) {
      std::fprintf(stderr, "tessera_vs_libtorch: built without LibTorch\n");
      return 2;
    }
    std::fprintf(stderr,
                 "# threads %d; medians of %d alternating rounds after %d warm-up rounds, settling <= %d ms, then per turn "
                 "%d timed run(s)%s\n",
                 threads, options.reps, options.warmup, options.settle_ms, std::max(options.burst, 1),
                 options.burst > 0 ? " after an untimed one" : "");
    for (const auto& [library, line] : tb::library_info()) {
      std::fprintf(stderr, "# %s: %s\n", library.c_str(), line.c_str());
    }
    bool all_match = true;
    for (const auto& w : tb::workloads()) {
      const bool selected =
          options.only.empty() || std::find(options.only.begin(), options.only.end(), w.name) != options.only.end();
      if (selected && w.libtorch) all_match = compare(w, options) && all_match;
    }
    if (!all_match) std::fprintf(stderr, "tessera_vs_libtorch: results differ beyond tolerance\n");
    return all_match ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessera_vs_libtorch: %s\n", e.what());
    return 2;
  }
}
