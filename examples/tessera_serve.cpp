// tessera-serve: the model server, with TensorFlow Serving's flags so its deployment scripts carry
// over. It serves models exported by serve::export_model (the main job's --export) over
// TensorFlow Serving's REST API and the open inference protocol (KServe v2, Triton's clients).
//
//   tessera-serve --model_name fashion --model_base_path runs/export/fashion
//   curl -d @request.json localhost:8501/v1/models/fashion:predict
//
// The architectures it can serve are compiled in (register_architectures below); to serve your
// own model type, see examples/serve_custom_model.cpp. SIGTERM or SIGINT: stop accepting, answer
// the requests in flight, exit 0.
#include <tessera/serve/serve.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>

#include "char_models.hpp"
#include "fashion_models.hpp"

namespace {

using namespace tessera;

const char* const usage = R"(usage: tessera-serve [flags]

Serves models exported by tessera (serve::export_model; the main job's --export DIR) over
TensorFlow Serving's REST API (/v1/models/...) and the open inference protocol (/v2/...).

  --model_name NAME                   with --model_base_path: serve one model (default name: default)
  --model_base_path DIR               its versions are DIR/<integer>/
  --model_config_file FILE            or several models, in TensorFlow Serving's model config format
  --rest_api_port PORT                HTTP port (default 8501; 0: any free port, printed at start)
  --host ADDRESS                      address to bind (default 127.0.0.1: this machine only)
  --file_system_poll_wait_seconds S   poll base paths for new versions every S seconds (default 1;
                                      0: load once at start)
  --enable_batching[=true|false]      run concurrent requests in batches (default false)
  --batching_parameters_file FILE     max_batch_size, batch_timeout_micros, max_enqueued_batches,
                                      num_batch_threads (TensorFlow Serving's format)
  --rest_api_num_threads N            HTTP worker threads (default: 16 per core, at least 32)
  --rest_api_timeout_in_ms MS         per-request deadline (default 30000)
  --max_body_bytes N                  larger request bodies are refused with 413 (default 64 MiB)
  --tensorflow_intra_op_parallelism N threads each model run may use (default 1: requests run in
                                      parallel instead)
  --help

Architectures in this binary: fashion_cnn, fashion_mlp (examples/fashion_models.hpp), char_lstm,
char_transformer (examples/char_models.hpp).
)";

struct Flags {
  std::string model_name = "default";
  std::string model_base_path;
  std::string model_config_file;
  serve::ServerOptions server;
  bool enable_batching = false;
  std::string batching_parameters_file;
  double poll_seconds = 1;
  int intra_op_threads = 1;
};

bool parse_bool(const std::string& flag, const std::string& v) {
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  throw std::invalid_argument(flag + " takes true or false, got '" + v + "'");
}

long long parse_integer(const std::string& flag, const std::string& v, long long min) {
  std::size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty() || n < min) {
    throw std::invalid_argument(flag + " takes an integer >= " + std::to_string(min) + ", got '" + v + "'");
  }
  return n;
}

Flags parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], value;
    bool has_value = false;
    if (const auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    auto next = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::cout << usage;
      std::exit(0);
    } else if (a == "--model_name") {
      f.model_name = next();
    } else if (a == "--model_base_path") {
      f.model_base_path = next();
    } else if (a == "--model_config_file") {
      f.model_config_file = next();
    } else if (a == "--rest_api_port") {
      f.server.port = int(parse_integer(a, next(), 0));
      if (f.server.port > 65535) throw std::invalid_argument("--rest_api_port must be at most 65535");
    } else if (a == "--host") {
      f.server.host = next();
    } else if (a == "--file_system_poll_wait_seconds") {
      f.poll_seconds = double(parse_integer(a, next(), 0));
    } else if (a == "--enable_batching") {
      f.enable_batching = has_value ? parse_bool(a, value) : true;
    } else if (a == "--batching_parameters_file") {
      f.batching_parameters_file = next();
    } else if (a == "--rest_api_num_threads") {
      f.server.threads = int(parse_integer(a, next(), 1));
    } else if (a == "--rest_api_timeout_in_ms") {
      f.server.timeout = std::chrono::milliseconds(parse_integer(a, next(), 1));
      if (f.server.timeout.count() > 1000000000) throw std::invalid_argument("--rest_api_timeout_in_ms must be at most 10^9");
    } else if (a == "--max_body_bytes") {
      f.server.max_body_bytes = std::size_t(parse_integer(a, next(), 1));
    } else if (a == "--tensorflow_intra_op_parallelism") {
      f.intra_op_threads = int(parse_integer(a, next(), 0));
    } else if (a == "--port") {
      (void)next();
      std::fprintf(stderr, "tessera-serve: --port (gRPC) ignored: tessera-serve speaks REST only (--rest_api_port)\n");
    } else {
      throw std::invalid_argument("unknown flag " + a + " (see --help)");
    }
  }
  if (f.model_config_file.empty() == f.model_base_path.empty()) {
    throw std::invalid_argument("give either --model_base_path (with --model_name) or --model_config_file (see --help)");
  }
  if (!f.batching_parameters_file.empty() && !f.enable_batching) {
    throw std::invalid_argument("--batching_parameters_file needs --enable_batching");
  }
  f.server.poll_period = std::chrono::milliseconds(static_cast<long long>(f.poll_seconds * 1000));
  return f;
}

/// The architectures this binary can serve.
void register_architectures(serve::ModelRegistry& registry) {
  fashion::register_models(registry);
  char_models::register_models(registry);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Flags f = parse(argc, argv);
    cpu::set_num_threads(f.intra_op_threads);
    std::vector<serve::ModelConfig> models;
    if (!f.model_config_file.empty()) {
      models = serve::read_model_config_file(f.model_config_file);
    } else {
      serve::ModelConfig c;
      c.name = f.model_name;
      c.base_path = f.model_base_path;
      models.push_back(c);
    }
    if (f.enable_batching) {
      f.server.batching = f.batching_parameters_file.empty() ? serve::BatchingParameters{}
                                                               : serve::read_batching_parameters_file(f.batching_parameters_file);
    }
    serve::ModelRegistry registry;
    register_architectures(registry);
    serve::StopSignals signals;  // SIGTERM and SIGINT from here on stop the server cleanly
    serve::Server server(registry, models, f.server);
    server.start();
    for (const auto& m : models) {
      const auto statuses = server.models().model(m.name).statuses();
      if (statuses.empty()) {
        std::printf("model %s: no version under %s yet (polled for new ones)\n", m.name.c_str(), m.base_path.c_str());
      }
      for (const auto& s : statuses) {
        std::printf("model %s version %lld: %s%s%s\n", m.name.c_str(), static_cast<long long>(s.version),
                    serve::state_name(s.state), s.error_message.empty() ? "" : ": ", s.error_message.c_str());
      }
    }
    std::printf("tessera-serve: listening on http://%s:%d (REST: /v1/models/..., open inference protocol: /v2/...)\n",
                f.server.host.c_str(), server.port());
    std::fflush(stdout);
    // The listener ends on its own only when its socket fails: then wake the wait below too.
    std::thread watcher([&] {
      server.wait();
      signals.interrupt();
    });
    if (const int signal = signals.wait(); signal != 0) {
      std::printf("tessera-serve: signal %d: finishing the requests in flight\n", signal);
      std::fflush(stdout);
    }
    server.stop();
    watcher.join();
    std::printf("tessera-serve: stopped\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessera-serve: %s\n", e.what());
    return 1;
  }
}
