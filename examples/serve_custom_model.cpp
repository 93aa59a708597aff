// Serving your own model type: train it, export it, register it, and build your own server.
//
// A tessera model is a C++ type, so a server is compiled with the types it serves. This program
// is that server for one model of its own: a small regressor. It trains the model for a moment on
// y = sin(x0) + x1 * x2, exports it as version 1 (or the next version) under --base, registers the
// architecture and serves it with TensorFlow Serving's REST API and the open inference protocol.
//
//   serve_custom_model --base /tmp/regressor [--rest_api_port 8501] [--self-test]
//   curl -d '{"instances": [[0.5, 1.0, -2.0]]}' localhost:8501/v1/models/regressor:predict
//
// --self-test asks its own server for one prediction over HTTP, prints it and exits (what the
// example's smoke test runs); otherwise it serves until SIGINT or SIGTERM.
#include <tessera/tessera.hpp>
#include <tessera/serve/serve.hpp>

#include <cmath>
#include <cstdio>
#include <string>

using namespace tessera;

// 1. The model: a module like any other.
struct Regressor : nn::Module<Regressor> {
  static constexpr const char* type_name = "Regressor";
  nn::Linear<float> hidden, out;
  explicit Regressor(index_t width) : hidden(3, width), out(width, 1) {}
  auto members() { return std::make_tuple(nn::child("hidden", hidden), nn::child("out", out)); }
  template <class X>
  auto operator()(const X& x) const {
    return out(tanh(hidden(x)));
  }
};

int main(int argc, char** argv) {
  std::string base = "/tmp/tessera_regressor";
  int port = 8501;
  bool self_test = false;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--base" && i + 1 < argc) base = argv[++i];
      else if (a == "--rest_api_port" && i + 1 < argc) port = std::stoi(argv[++i]);
      else if (a == "--self-test") self_test = true;
      else {
        std::fprintf(stderr, "usage: serve_custom_model [--base DIR] [--rest_api_port PORT] [--self-test]\n");
        return 2;
      }
    }
    // 2. Train it briefly on y = sin(x0) + x1 * x2.
    manual_seed(0);
    const index_t width = 32;
    Regressor model(width);
    Generator gen(1);
    const auto x = uniform<float>(gen, {512, 3}, -2.0f, 2.0f);
    const Tensor<float, 2> y = sin(x.slice(1, 0, 1)) + x.slice(1, 1, 2) * x.slice(1, 2, 3);
    optim::Adam<float> opt({.lr = 1e-2});
    for (int step = 0; step < 500; ++step) {
      auto [loss, g] = value_and_grad([&](const auto& m) { return nn::mse(m(x), y); }, model);
      opt.step(model, std::get<0>(g));
      if (step % 100 == 0) std::printf("step %d: loss %.4f\n", step, double(loss()));
    }

    // 3. Export it: what it takes and answers, its architecture name and hyperparameters.
    serve::Signature signature;
    signature.inputs = {{"x", serve::DataType::float32, {-1, 3}}};
    signature.outputs = {{"y", serve::DataType::float32, {-1, 1}}};
    const std::string dir =
        serve::export_model(model, base, serve::next_version(base), signature, {"regressor", {{"width", width}}});
    std::printf("exported %s\n", dir.c_str());

    // 4. Register the architecture: its input type and how to build it from the hyperparameters.
    serve::ModelRegistry registry;
    registry.add<Tensor<float, 2>>("regressor", [](const nlohmann::json& hp) { return Regressor(hp.at("width").get<index_t>()); });

    // 5. Serve it (the latest version under `base`).
    serve::ModelConfig config;
    config.name = "regressor";
    config.base_path = base;
    serve::ServerOptions options;
    options.port = self_test ? 0 : port;
    serve::StopSignals signals;  // Ctrl-C or SIGTERM: stop cleanly (below)
    serve::Server server(registry, {config}, options);
    server.start();
    std::printf("serving on http://127.0.0.1:%d/v1/models/regressor\n", server.port());
    if (self_test) {
      httplib::Client client("127.0.0.1", server.port());
      const auto r = client.Post("/v1/models/regressor:predict", R"({"instances": [[0.5, 1.0, -2.0]]})", "application/json");
      if (!r || r->status != 200) {
        std::fprintf(stderr, "serve_custom_model: the self-test request failed\n");
        return 1;
      }
      const float expected = std::sin(0.5f) + 1.0f * -2.0f;
      const float got = nlohmann::json::parse(r->body)["predictions"][0][0].get<float>();
      std::printf("prediction for [0.5, 1, -2]: %.3f (y = %.3f)\n", double(got), double(expected));
      return std::fabs(got - expected) < 0.5f ? 0 : 3;
    }
    signals.wait();
    server.stop();
    server.wait();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "serve_custom_model: %s\n", e.what());
    return 1;
  }
}
