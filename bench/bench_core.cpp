// Google Benchmark over the workload table: BM_<workload>/tessera, BM_<workload>/libtorch (when
// LibTorch is found) and any extra variants, plus BM_triad/std_thread, the memory-bandwidth
// reference. All times are wall-clock (UseRealTime), since every kernel is multithreaded.
//
// Counters: FLOPS (GEMM, printed as G/s = GFLOP/s), bytes_per_second (the bytes a run must move),
// and for workloads with a memory floor (elementwise_chain: 6 arrays at the triad's bandwidth)
// floor_ms and x_floor = time per run / floor_ms, the triad being timed right after each batch so
// that both see the same state of a shared machine.
//
//   bench_core [--threads N] [--benchmark_filter=...] [other Google Benchmark flags]
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>

#include <benchmark/benchmark.h>

#include "harness.hpp"

namespace tb = tessera_bench;

namespace {

/// The prepared runner of the benchmark now running. Google Benchmark calls a benchmark function
/// several times (to size the iteration count), so inputs and runner are built once, and only one
/// workload's buffers are alive at a time.
struct Prepared {
  std::string runner_key, inputs_key;
  std::unique_ptr<tb::Runner> runner;
  tb::Inputs inputs;
  std::unique_ptr<tb::Runner> triad;
};
Prepared current;

/// The triad every floor is measured with (192 MiB), allocated on first use.
tb::Runner& triad() {
  if (!current.triad) current.triad = tb::make_triad();
  return *current.triad;
}

tb::Runner& prepared(const tb::Workload& w, const std::string& label, const tb::RunnerFactory& make) {
  const std::string key = w.name + "/" + label;
  if (current.runner_key != key) {
    current.runner.reset();
    current.runner_key.clear();
    if (current.inputs_key != w.name) {
      current.inputs = {};
      current.inputs = w.make_inputs();
      current.inputs_key = w.name;
    }
    current.runner = make(current.inputs);
    current.runner->run();  // first touch of any lazily allocated output
    current.runner_key = key;
  }
  return *current.runner;
}

/// One benchmark of `w` through the runner `make` builds.
void run_workload(benchmark::State& state, const tb::Workload& w, const std::string& label,
                  const tb::RunnerFactory& make) {
  tb::Runner& runner = prepared(w, label, make);
  runner.before_turn();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) runner.run();
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (w.flops > 0) {
    state.counters["FLOPS"] =
        benchmark::Counter(w.flops, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  }
  if (w.bytes > 0) state.SetBytesProcessed(static_cast<std::int64_t>(w.bytes) * state.iterations());
  if (w.floor_arrays > 0) {
    const double triad_ms = tb::time_rounds({&triad()}, 1, 5, 0)[0].median_ms;
    const double floor_ms = tb::memory_floor_ms(triad_ms, w.floor_arrays);
    state.counters["floor_ms"] = floor_ms;
    state.counters["x_floor"] = ms / double(state.iterations()) / floor_ms;
  }
}

void run_triad(benchmark::State& state) {
  tb::Runner& runner = triad();
  for (auto _ : state) runner.run();
  const double bytes = tb::triad_arrays * double(tb::stream_elements) * sizeof(float);
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes) * state.iterations());
}

void register_workload(const tb::Workload& w, const std::string& label, const tb::RunnerFactory& make) {
  const std::string name = "BM_" + w.name + "/" + label;
  auto run = [&w, label, make](benchmark::State& state) { run_workload(state, w, label, make); };
  benchmark::RegisterBenchmark(name.c_str(), run)->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int threads = tb::set_threads(tb::parse_threads(argc, argv));
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

    benchmark::AddCustomContext("threads", std::to_string(threads));
    for (const auto& [library, line] : tb::library_info()) benchmark::AddCustomContext(library, line);

    benchmark::RegisterBenchmark("BM_triad/std_thread", run_triad)->UseRealTime()->Unit(benchmark::kMillisecond);
    for (const auto& w : tb::workloads()) {
      register_workload(w, "tessera", w.tessera);
      if (w.libtorch) register_workload(w, "libtorch", w.libtorch);
      for (const auto& v : w.variants) register_workload(w, v.label, v.make);
    }
    benchmark::RunSpecifiedBenchmarks();
    current = Prepared{};  // before static destruction tears down the libraries' allocators
    benchmark::Shutdown();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_core: %s\n", e.what());
    return 2;
  }
}
