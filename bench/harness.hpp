// What every benchmark program shares: the workload table, the thread-count option, the timing
// loop and the memory-bandwidth reference (the std::thread triad). No tessera or LibTorch types
// appear here, so each library's workloads compile in their own translation unit.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tessera_bench {

/// Elements in the streaming arrays of the triad and the elementwise chain (2^24 floats = 64 MiB).
inline constexpr std::int64_t stream_elements = std::int64_t(1) << 24;

/// One input array in a library-neutral form, so both libraries start from identical values.
struct HostArray {
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};
using Inputs = std::vector<HostArray>;

/// A workload prepared on one library: inputs copied in, output buffers allocated.
class Runner {
 public:
  virtual ~Runner() = default;
  /// The timed part: computes the output from the inputs once.
  virtual void run() = 0;
  /// The output of the last run(), flattened (not timed).
  virtual std::vector<float> result() const = 0;
  /// Called before each turn of run()s, untimed (time_rounds).
  virtual void before_turn() {}
};
using RunnerFactory = std::function<std::unique_ptr<Runner>(const Inputs&)>;

/// How a workload's time is reported: milliseconds per run, or GFLOP/s from `Workload::flops`.
enum class Unit { milliseconds, gflops };
const char* unit_name(Unit unit);

/// An implementation beyond the tessera/LibTorch pair, benchmarked by bench_core only.
struct Variant {
  std::string label;  ///< suffix in the benchmark name, e.g. "libtorch_out"
  RunnerFactory make;
};

/// One row of the workload table: a computation run through each library on the same inputs.
struct Workload {
  std::string name;  ///< e.g. "elementwise_chain", "gemm_1024"
  Unit unit = Unit::milliseconds;
  double flops = 0;      ///< floating-point operations per run (for GFLOP/s), 0 if not reported
  double bytes = 0;      ///< bytes a run must move at least (bytes_per_second counter), 0 if not reported
  double tolerance = 0;  ///< largest |tessera - LibTorch| accepted for any output element
  /// Arrays of `stream_elements` floats a run must move; when > 0, programs also report the time
  /// relative to the memory floor (that many arrays at the triad's bandwidth, measured alongside).
  double floor_arrays = 0;
  std::function<Inputs()> make_inputs;
  RunnerFactory tessera;
  RunnerFactory libtorch;  ///< empty when built without LibTorch
  std::vector<Variant> variants;
};

/// The table, in the order programs run it (defined in workloads.cpp).
const std::vector<Workload>& workloads();

/// Whether the LibTorch runners were compiled in.
bool libtorch_available();

/// Reads `--threads N` / `--threads=N` (removed from argv) or the TESSERA_THREADS environment
/// variable; 0 when neither is given.
int parse_threads(int& argc, char** argv);
/// Sets tessera's, LibTorch's and the triad's thread count (n <= 0: tessera's default, all
/// hardware threads) and returns the count now in effect.
int set_threads(int n);
/// The thread count every library and the triad use.
int threads();
/// OpenBLAS's thread count in LibTorch's turns (default 1). LibTorch parallelizes its ops with its
/// own threads and uses the same OpenBLAS: at 1 its GEMMs run on one core, at the thread count
/// they run on all of them but its small products slow down several times (OpenBLAS's threads and
/// LibTorch's compete; docs/cpu-performance.md, "Measuring").
void set_libtorch_blas_threads(int n);
int libtorch_blas_threads();
/// {library, one line on its build and threading} for each library, for the benchmark context.
std::vector<std::pair<std::string, std::string>> library_info();

/// Milliseconds per run of one runner over the timed rounds.
struct Timing {
  double median_ms;
  double min_ms;  ///< on a shared machine, the best estimate of the uncontended time
};

/// Times `runners` in alternating rounds (each round gives every runner one turn, in order):
/// `warmup` untimed rounds, then `reps` timed ones. Alternating keeps slow drift of a shared machine
/// out of the ratios. Before each turn it waits (up to `settle_ms`) until the process is idle: the
/// previous runner's workers spin after their work (measured here: LibTorch's OpenMP ~10-50 ms,
/// OpenBLAS ~100-200 ms, Eigen's pool ~0), and would otherwise take a core from the next runner.
///
/// A turn is one untimed run and then `burst` timed runs back to back, which is how training
/// steps follow each other. The first run after the idle wait pays for the wait itself: on the
/// 2-core VM an MLP step after a 2-20 ms sleep took 1.4-2x as long as back to back, in both
/// libraries (halted vCPUs, cold caches), so timing only that run measured the machine's wake-up.
/// `burst` 0 keeps that protocol: one timed run per turn, right after the wait.
std::vector<Timing> time_rounds(const std::vector<Runner*>& runners, int warmup, int reps, int settle_ms, int burst = 0);

/// Sleeps until this process's threads stop using CPU (checked every 10 ms), at most `max_ms`.
void wait_until_idle(int max_ms);

/// y = a + 2 * b over `stream_elements` floats as a plain loop split over threads() std::threads
/// (the calling thread takes the first share): the memory-bandwidth reference.
std::unique_ptr<Runner> make_triad();
/// Arrays of `stream_elements` floats one triad pass moves, as STREAM counts them (2 read, 1 written).
inline constexpr double triad_arrays = 3;
/// Milliseconds to move `arrays` arrays of `stream_elements` floats at the triad's bandwidth.
inline double memory_floor_ms(double triad_ms, double arrays) { return triad_ms * arrays / triad_arrays; }

}  // namespace tessera_bench
