// The in-process side of the serving benchmark (bench/serve_bench.sh): the time the Fashion CNN's
// registered forward takes for one example, measured the way the server runs it (a loaded
// servable, host tensors in and out), and the time tessera's request parsing and response writing
// take for the same request, so that the server's overhead can be read off the HTTP latencies.
//
//   serve_forward --export BASE [--channels C] [--hidden H]   # a seeded CNN as BASE/<next version>
//   serve_forward --version BASE/N [--request FILE] [--seconds S]
//
// Prints one JSON line: {"forward_us": {"p50", "p99", "mean"}, "protocol_us": {...}}.
#include <tessera/tessera.hpp>
#include <tessera/serve/serve.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "../examples/fashion_models.hpp"

namespace {
using namespace tessera;
using clock_type = std::chrono::steady_clock;

struct Stats {
  double p50, p99, mean;
};
template <class F>
Stats time_calls(F&& f, double seconds) {
  for (int i = 0; i < 200; ++i) f();  // warm up
  std::vector<double> us;
  const auto end = clock_type::now() + std::chrono::duration<double>(seconds);
  while (clock_type::now() < end) {
    const auto t0 = clock_type::now();
    f();
    us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
  }
  std::sort(us.begin(), us.end());
  double sum = 0;
  for (double u : us) sum += u;
  return {us[us.size() / 2], us[us.size() * 99 / 100], sum / double(us.size())};
}
std::string json(const Stats& s) {
  char b[128];
  std::snprintf(b, sizeof b, "{\"p50\": %.1f, \"p99\": %.1f, \"mean\": %.1f}", s.p50, s.p99, s.mean);
  return b;
}
}  // namespace

int main(int argc, char** argv) {
  std::string export_base, version_dir, request_file;
  index_t channels = 16, hidden = 128;
  double seconds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--export") export_base = v;
    else if (a == "--version") version_dir = v;
    else if (a == "--request") request_file = v;
    else if (a == "--channels") channels = std::stol(v);
    else if (a == "--hidden") hidden = std::stol(v);
    else if (a == "--seconds") seconds = std::stod(v);
  }
  try {
    if (!export_base.empty()) {
      manual_seed(1);
      auto model = fashion::cnn<cpu>(channels, hidden);
      std::printf("%s\n", serve::export_model(model, export_base, serve::next_version(export_base), fashion::cnn_signature(),
                                              {"fashion_cnn", {{"channels", channels}, {"hidden", hidden}}})
                              .c_str());
      return 0;
    }
    if (version_dir.empty()) {
      std::fprintf(stderr, "usage: serve_forward --export BASE | --version BASE/N [--request FILE] [--seconds S]\n");
      return 2;
    }
    cpu::set_num_threads(1);  // as tessera-serve runs models by default
    serve::ModelRegistry registry;
    fashion::register_models(registry);
    serve::Manifest manifest;
    const auto servable = serve::detail::load_servable(registry, version_dir, manifest);
    Generator gen(3);
    const Tensor<float, 4> image = uniform<float>(gen, {1, 1, 28, 28});
    serve::HostTensor input(serve::DataType::float32, {1, 1, 28, 28});
    std::copy(image.data(), image.data() + 784, input.data<float>());
    const std::vector<serve::HostTensor> inputs{input};
    const Stats forward = time_calls([&] { (void)servable->run(inputs); }, seconds);
    std::string protocol = "null";
    if (!request_file.empty()) {
      std::ifstream f(request_file);
      const std::string body((std::istreambuf_iterator<char>(f)), {});
      const auto outputs = servable->run(inputs);
      protocol = json(time_calls(
          [&] {
            const auto r = serve::parse_predict(body, manifest.signature);
            (void)serve::predict_response(outputs, manifest.signature, r.row_form);
          },
          seconds));
    }
    std::printf("{\"forward_us\": %s, \"protocol_us\": %s}\n", json(forward).c_str(), protocol.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "serve_forward: %s\n", e.what());
    return 1;
  }
}
