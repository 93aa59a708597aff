// The Fashion-MNIST models tessera-serve serves (examples/fashion_models.hpp): exported the way
// the training programs export them, loaded back through the registration tessera-serve uses, and
// answering what the in-process model answers, input normalization and softmax included.
//
// With TESSERA_SERVE_MODELS set, the exported models and a models.config naming them are left in
// that directory for tests/serve/serve_check.py, which serves them with the tessera-serve binary
// and asks it with curl and Triton's Python client (CTest: serve_models_written, then
// serve_integration). Without it, everything happens in a temporary directory removed at the end.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <system_error>
#include <vector>

#include <tessera/serve/model_manager.hpp>

#include "../../examples/fashion_models.hpp"
#include "serve/serve_fixtures.hpp"

using namespace serve_test;

namespace {

using Cnn = decltype(fashion::cnn<cpu>(1, 1));
using Mlp = decltype(fashion::mlp<cpu>(1, 0.5));

/// A CNN with weights from `seed` and batch-norm statistics that are not the identity, so that a
/// version that lost its buffers, or a forward that skipped a layer, answers differently.
Cnn seeded_cnn(std::uint64_t seed) {
  manual_seed(seed);
  auto m = fashion::cnn<cpu>(4, 16);
  Generator gen(seed + 100);
  auto& bn1 = m.layer<1>();
  bn1.running_mean = uniform<float>(gen, {4}, -0.2f, 0.2f);
  bn1.running_var = uniform<float>(gen, {4}, 0.5f, 1.5f);
  bn1.weight = uniform<float>(gen, {4}, 0.5f, 1.5f);
  bn1.bias = uniform<float>(gen, {4}, -0.2f, 0.2f);
  auto& bn2 = m.layer<5>();
  bn2.running_mean = uniform<float>(gen, {8}, -0.2f, 0.2f);
  bn2.running_var = uniform<float>(gen, {8}, 0.5f, 1.5f);
  return m;
}

Mlp seeded_mlp(std::uint64_t seed) {
  manual_seed(seed);
  return fashion::mlp<cpu>(32, 0.2);
}

/// Removes a temporary directory at the end of the test case, failed or not.
struct RemovedAtEnd {
  std::string dir;
  bool active;
  ~RemovedAtEnd() {
    std::error_code ignored;
    if (active) std::filesystem::remove_all(dir, ignored);
  }
};

/// A text-format string literal holding `s`.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  return out + "'";
}

template <class T, std::size_t R>
serve::HostTensor host(const Tensor<T, R>& t) {
  std::vector<std::int64_t> shape(t.shape().begin(), t.shape().end());
  serve::HostTensor h(serve::dtype_of<T>(), shape);
  std::memcpy(h.bytes.data(), t.data(), h.bytes.size());
  return h;
}

/// `got` ([N, 10] probabilities) against `expected` to float rounding; rows sum to 1.
void check_probabilities(const serve::HostTensor& got, const Tensor<float, 2>& expected) {
  REQUIRE(got.dtype == serve::DataType::float32);
  REQUIRE(got.shape == std::vector<std::int64_t>{expected.shape()[0], 10});
  const float* p = got.data<float>();
  for (index_t i = 0; i < expected.shape()[0]; ++i) {
    double row = 0;
    for (index_t j = 0; j < 10; ++j) {
      CAPTURE(i);
      CAPTURE(j);
      CHECK(p[i * 10 + j] == doctest::Approx(expected(i, j)).epsilon(1e-5).scale(1e-3));
      row += p[i * 10 + j];
    }
    CHECK(row == doctest::Approx(1.0).epsilon(1e-5));
  }
}

/// The largest elementwise difference of two [N, 10] results.
float max_difference(const serve::HostTensor& a, const Tensor<float, 2>& b) {
  float d = 0;
  for (index_t i = 0; i < b.shape()[0]; ++i) {
    for (index_t j = 0; j < 10; ++j) d = std::max(d, std::abs(a.data<float>()[i * 10 + j] - b(i, j)));
  }
  return d;
}

}  // namespace

TEST_CASE("the served Fashion-MNIST models answer what the in-process models answer") {
  const char* env = std::getenv("TESSERA_SERVE_MODELS");
  const bool keep = env != nullptr && *env != '\0';
  const std::string dir = keep ? std::string(env) : temp_dir();
  const RemovedAtEnd cleanup{dir, !keep};
  if (keep) {
    std::filesystem::remove_all(dir);  // export_model never overwrites a version
    std::filesystem::create_directories(dir);
  }

  auto cnn1 = seeded_cnn(1);
  auto cnn2 = seeded_cnn(2);
  auto mlp1 = seeded_mlp(3);
  const serve::Architecture cnn_arch{"fashion_cnn", {{"channels", 4}, {"hidden", 16}}};
  serve::export_model(cnn1, dir + "/fashion", 1, fashion::cnn_signature(), cnn_arch);
  serve::export_model(cnn2, dir + "/fashion", 2, fashion::cnn_signature(), cnn_arch);
  serve::export_model(mlp1, dir + "/mlp", 1, fashion::mlp_signature(), {"fashion_mlp", {{"hidden", 32}, {"dropout", 0.2}}});
  CHECK(serve::list_versions(dir + "/fashion") == std::vector<std::int64_t>{1, 2});
  CHECK(serve::list_versions(dir + "/mlp") == std::vector<std::int64_t>{1});

  {
    std::ofstream config(dir + "/models.config");
    config << "# Written by tests/serve/test_fashion_models.cpp for tests/serve/serve_check.py.\n"
              "model_config_list {\n"
              "  config {\n"
              "    name: 'fashion'\n"
              "    base_path: " << quoted(dir + "/fashion") << "\n"
              "    model_platform: 'tessera'\n"
              "    model_version_policy { all {} }\n"
              "    version_labels { key: 'stable' value: 1 }\n"
              "    version_labels { key: 'canary' value: 2 }\n"
              "  }\n"
              "  config {\n"
              "    name: 'mlp'\n"
              "    base_path: " << quoted(dir + "/mlp") << "\n"
              "  }\n"
              "}\n";
    REQUIRE(config.good());
  }
  // The config is what tessera-serve will read.
  const auto models = serve::read_model_config_file(dir + "/models.config");
  REQUIRE(models.size() == 2);
  CHECK(models[0].name == "fashion");
  CHECK(models[0].base_path == dir + "/fashion");
  CHECK(models[0].policy.kind == serve::VersionPolicy::Kind::all);
  CHECK(models[0].labels == std::map<std::string, std::int64_t>{{"stable", 1}, {"canary", 2}});
  CHECK(models[1].name == "mlp");
  CHECK(models[1].base_path == dir + "/mlp");
  CHECK(models[1].policy.kind == serve::VersionPolicy::Kind::latest);

  serve::ModelRegistry registry;
  fashion::register_models(registry);
  CHECK(registry.names() == std::vector<std::string>{"fashion_cnn", "fashion_mlp"});

  // Pixels in [0, 1], as the server is sent them.
  Generator gen(42);
  const Tensor<float, 4> images = uniform<float>(gen, {3, 1, 28, 28});
  const Tensor<float, 2> flat = uniform<float>(gen, {3, 784});

  SUBCASE("fashion_cnn: softmax(model((x - pixel_mean) / pixel_std)), each version its own weights") {
    std::vector<Tensor<float, 2>> expected;
    for (auto* m : {&cnn1, &cnn2}) {
      m->eval();
      expected.push_back(softmax((*m)((images - fashion::pixel_mean) / fashion::pixel_std), -1));
    }
    for (int v : {1, 2}) {
      CAPTURE(v);
      serve::Manifest manifest;
      const auto servable = serve::detail::load_servable(registry, dir + "/fashion/" + std::to_string(v), manifest);
      CHECK(manifest.architecture == "fashion_cnn");
      CHECK(manifest.hyperparameters == nlohmann::json{{"channels", 4}, {"hidden", 16}});
      REQUIRE(manifest.signature.inputs.size() == 1);
      CHECK(manifest.signature.inputs[0].name == "images");
      CHECK(manifest.signature.inputs[0].shape == std::vector<std::int64_t>{-1, 1, 28, 28});
      CHECK(manifest.signature.outputs[0].name == "probabilities");
      const auto out = servable->run({host(images)});
      REQUIRE(out.size() == 1);
      check_probabilities(out[0], expected[std::size_t(v - 1)]);
      // The test tells the forwards apart: the other version's weights, or a forward without the
      // input normalization, answer visibly differently.
      CHECK(max_difference(out[0], expected[std::size_t(2 - v)]) > 1e-3f);
      auto& m = v == 1 ? cnn1 : cnn2;
      const Tensor<float, 2> unnormalized = softmax(m(images), -1);
      CHECK(max_difference(out[0], unnormalized) > 1e-3f);
      // Deterministic: the same batch twice gives the same bytes.
      CHECK(servable->run({host(images)})[0].bytes == out[0].bytes);
    }
  }

  SUBCASE("fashion_mlp: softmax(model(x)) in eval mode (no dropout)") {
    mlp1.eval();
    const Tensor<float, 2> expected = softmax(mlp1(flat), -1);
    serve::Manifest manifest;
    const auto servable = serve::detail::load_servable(registry, dir + "/mlp/1", manifest);
    CHECK(manifest.architecture == "fashion_mlp");
    CHECK(manifest.hyperparameters == nlohmann::json{{"hidden", 32}, {"dropout", 0.2}});
    CHECK(manifest.signature.inputs[0].shape == std::vector<std::int64_t>{-1, 784});
    const auto out = servable->run({host(flat)});
    REQUIRE(out.size() == 1);
    check_probabilities(out[0], expected);
    CHECK(servable->run({host(flat)})[0].bytes == out[0].bytes);  // no dropout when served
  }

  SUBCASE("the server's model manager loads every version the config names") {
    serve::ModelManager manager(registry, models, std::nullopt, nullptr);
    manager.poll();
    const auto& fashion_model = manager.model("fashion");
    CHECK(fashion_model.available_versions() == std::vector<std::int64_t>{1, 2});
    CHECK(fashion_model.resolve(std::nullopt, "canary")->version == 2);
    CHECK(fashion_model.resolve(std::nullopt, "stable")->version == 1);
    CHECK(manager.model("mlp").available_versions() == std::vector<std::int64_t>{1});
    for (const auto& s : fashion_model.statuses()) {
      CAPTURE(s.error_message);
      CHECK(s.state == serve::VersionState::available);
    }
  }
}
