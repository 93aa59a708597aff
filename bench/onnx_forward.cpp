// The tessera half of bench/onnx_bench.sh: exports a seeded Fashion CNN (the main job's model) as
// ONNX and times its eval-mode forward at batch 1 and 64 with the thread count given, the way
// ONNX Runtime is timed on the exported file in the same run.
//
//   onnx_forward PATH [THREADS (2)] [SECONDS per batch size (3)]
//
// Prints one JSON line: {"tessera_ms": {"1": median, "64": median}}.
#include <tessera/tessera.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "../examples/fashion_models.hpp"

int main(int argc, char** argv) {
  using namespace tessera;
  if (argc < 2) {
    std::fprintf(stderr, "usage: onnx_forward PATH [THREADS] [SECONDS]\n");
    return 2;
  }
  const int threads = argc > 2 ? std::stoi(argv[2]) : 2;
  const double seconds = argc > 3 ? std::stod(argv[3]) : 3;
  cpu::set_num_threads(threads);
  manual_seed(1);
  auto model = fashion::cnn<cpu>(16, 128);
  io::export_onnx(model, zeros<float>({1, 1, 28, 28}), argv[1]);
  model.eval();
  Generator gen(2);
  std::string out = "{\"tessera_ms\": {";
  for (index_t batch : {1, 64}) {
    const Tensor<float, 4> x = uniform<float>(gen, {batch, 1, 28, 28});
    std::vector<double> ms;
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    for (int i = 0; i < 20 || std::chrono::steady_clock::now() < end; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      const Tensor<float, 2> y = model(x);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    char b[64];
    std::snprintf(b, sizeof b, "%s\"%ld\": %.4f", batch == 1 ? "" : ", ", long(batch), ms[ms.size() / 2]);
    out += b;
  }
  std::printf("%s}}\n", out.c_str());
  return 0;
}
