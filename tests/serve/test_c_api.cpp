// The C API (tessera_c.h, implemented by serve/c_api.hpp) on the example Fashion models: results
// equal to the C++ forward, every error a status and a message, concurrent runs on one handle.
// With TESSERA_C_API_DIR set, it also leaves there what the C and Python examples are compared
// with: the exported models and the C++ predictions in predict.c's format (tests/serve/c_api.cmake).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <tessera/serve/c_api.hpp>

#include "../../examples/fashion_models.hpp"
#include "serve/serve_fixtures.hpp"

namespace {
void register_fashion(tessera::serve::ModelRegistry& r) { fashion::register_models(r); }
}  // namespace

TESSERA_C_API(register_fashion)

using namespace serve_test;

namespace {

/// predict.c's input pattern for a float input of `n` elements (input index 0).
std::vector<float> pattern(std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t j = 0; j < n; ++j) v[j] = float(double((j * 7919) % 1000) / 1000.0);
  return v;
}

struct Exported {
  std::string dir;
  std::string cnn, mlp;  // version directories
  Exported() {
    const char* env = std::getenv("TESSERA_C_API_DIR");
    dir = env != nullptr ? std::string(env) : temp_dir();
    ::mkdir(dir.c_str(), 0755);
    if (serve::list_versions(dir + "/cnn").empty()) {
      manual_seed(21);
      auto c = fashion::cnn<cpu>(4, 16);
      serve::export_model(c, dir + "/cnn", 1, fashion::cnn_signature(), {"fashion_cnn", {{"channels", 4}, {"hidden", 16}}});
      auto m = fashion::mlp<cpu>(32, 0.2);
      serve::export_model(m, dir + "/mlp", 1, fashion::mlp_signature(), {"fashion_mlp", {{"hidden", 32}, {"dropout", 0.2}}});
    }
    cnn = dir + "/cnn/1";
    mlp = dir + "/mlp/1";
  }
};

/// The C++ forward of a version on predict.c's pattern: the registered servable, run directly.
std::vector<float> cpp_forward(const std::string& version_dir, const std::vector<std::int64_t>& shape) {
  serve::ModelRegistry r;
  fashion::register_models(r);
  serve::Manifest manifest;
  const auto servable = serve::detail::load_servable(r, version_dir, manifest);
  serve::HostTensor in(serve::DataType::float32, shape);
  const auto values = pattern(std::size_t(in.elements()));
  std::copy(values.begin(), values.end(), in.data<float>());
  const auto out = servable->run({in});
  return {out[0].data<float>(), out[0].data<float>() + out[0].elements()};
}

tessera_tensor input_tensor(std::vector<float>& values, const std::vector<std::int64_t>& shape) {
  tessera_tensor t{};
  t.dtype = TESSERA_FLOAT32;
  t.rank = int32_t(shape.size());
  std::copy(shape.begin(), shape.end(), t.shape);
  t.data = values.data();
  t.bytes = values.size() * sizeof(float);
  return t;
}

}  // namespace

TEST_CASE("the C API gives the C++ forward's results, and the examples' expected output") {
  const Exported e;
  for (const auto& case_ : {std::make_pair(e.cnn, std::vector<std::int64_t>{3, 1, 28, 28}),
                            std::make_pair(e.mlp, std::vector<std::int64_t>{3, 784})}) {
    // Not a structured binding: CAPTURE's lambda cannot capture one in C++17 (Clang rejects it).
    const std::string& version = case_.first;
    const std::vector<std::int64_t>& shape = case_.second;
    CAPTURE(version);
    tessera_model* m = nullptr;
    REQUIRE(tessera_model_open(version.c_str(), &m) == TESSERA_OK);
    CHECK(std::string(tessera_last_error()).empty());
    int32_t n_in = 0, n_out = 0;
    REQUIRE(tessera_model_num_inputs(m, &n_in) == TESSERA_OK);
    REQUIRE(tessera_model_num_outputs(m, &n_out) == TESSERA_OK);
    CHECK(n_in == 1);
    CHECK(n_out == 1);
    tessera_tensor_info info{};
    REQUIRE(tessera_model_input(m, 0, &info) == TESSERA_OK);
    CHECK(std::string(info.name) == "images");
    CHECK(info.dtype == TESSERA_FLOAT32);
    CHECK(info.rank == int32_t(shape.size()));
    CHECK(info.shape[0] == -1);
    REQUIRE(tessera_model_output(m, 0, &info) == TESSERA_OK);
    CHECK(std::string(info.name) == "probabilities");
    CHECK(info.shape[1] == 10);

    std::size_t n = 1;
    for (auto d : shape) n *= std::size_t(d);
    auto values = pattern(n);
    const tessera_tensor in = input_tensor(values, shape);
    std::vector<float> result(30, -1);
    tessera_tensor out{};
    out.data = result.data();
    out.bytes = result.size() * sizeof(float);
    REQUIRE(tessera_model_run(m, &in, 1, &out, 1) == TESSERA_OK);
    CHECK(out.rank == 2);
    CHECK(out.shape[0] == 3);
    CHECK(out.shape[1] == 10);
    CHECK(out.bytes == 30 * sizeof(float));
    CHECK(result == cpp_forward(version, shape));

    // What predict.c and predict.py must print for this model with BATCH 3.
    if (std::getenv("TESSERA_C_API_DIR") != nullptr) {
      const std::string name = version == e.cnn ? "cnn" : "mlp";
      std::FILE* f = std::fopen((e.dir + "/" + name + "_expected.txt").c_str(), "w");
      REQUIRE(f != nullptr);
      std::fprintf(f, "probabilities: 3 x 10\n");
      for (std::size_t j = 0; j < 30; ++j) std::fprintf(f, (j + 1) % 10 == 0 ? "%.9g\n" : "%.9g ", double(result[j]));
      std::fclose(f);
    }
    tessera_model_close(m);
  }
}

TEST_CASE("C API errors: a status and a message, never an exception") {
  const Exported e;
  tessera_model* m = nullptr;
  CHECK(tessera_model_open("/no/such/dir", &m) == TESSERA_ERROR_NOT_FOUND);
  CHECK(std::string(tessera_last_error()).find("/no/such/dir") != std::string::npos);
  CHECK(m == nullptr);
  CHECK(tessera_model_open(nullptr, &m) == TESSERA_ERROR_INVALID_ARGUMENT);
  CHECK(tessera_model_open(e.cnn.c_str(), nullptr) == TESSERA_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(tessera_last_error()).find("NULL") != std::string::npos);

  // A corrupt weights file.
  const std::string broken = temp_dir();
  manual_seed(3);
  auto c = fashion::cnn<cpu>(4, 16);
  serve::export_model(c, broken, 1, fashion::cnn_signature(), {"fashion_cnn", {{"channels", 4}, {"hidden", 16}}});
  { std::ofstream(broken + "/1/weights.safetensors", std::ios::trunc) << "garbage"; }
  CHECK(tessera_model_open((broken + "/1").c_str(), &m) == TESSERA_ERROR_IO);
  CHECK(std::string(tessera_last_error()).find("weights.safetensors") != std::string::npos);
  // A manifest that names another architecture than the type its weights come from.
  export_mlp(broken, 2, 1);
  {
    std::ifstream in(broken + "/2/manifest.json");
    auto j = nlohmann::json::parse(in);
    j["architecture"] = "fashion_mlp";
    std::ofstream(broken + "/2/manifest.json", std::ios::trunc) << j.dump();
  }
  CHECK(tessera_model_open((broken + "/2").c_str(), &m) == TESSERA_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(tessera_last_error()).find("structural hash") != std::string::npos);

  REQUIRE(tessera_model_open(e.mlp.c_str(), &m) == TESSERA_OK);
  std::vector<float> values = pattern(2 * 784);
  std::vector<float> result(20);
  tessera_tensor out{};
  out.data = result.data();
  out.bytes = result.size() * sizeof(float);
  // A wrong input size: bytes that do not match the shape.
  tessera_tensor in = input_tensor(values, {2, 784});
  in.bytes -= 4;
  CHECK(tessera_model_run(m, &in, 1, &out, 1) == TESSERA_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(tessera_last_error()).find("6268 bytes given, shape [2, 784] needs 6272") != std::string::npos);
  // A shape the signature does not take, a wrong dtype, NULL pointers, wrong counts.
  in = input_tensor(values, {2, 783});
  CHECK(tessera_model_run(m, &in, 1, &out, 1) == TESSERA_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(tessera_last_error()).find("does not fit the signature's [-1, 784]") != std::string::npos);
  in = input_tensor(values, {2, 784});
  in.dtype = TESSERA_FLOAT64;
  CHECK(tessera_model_run(m, &in, 1, &out, 1) == TESSERA_ERROR_INVALID_ARGUMENT);
  in = input_tensor(values, {2, 784});
  in.data = nullptr;
  CHECK(tessera_model_run(m, &in, 1, &out, 1) == TESSERA_ERROR_INVALID_ARGUMENT);
  CHECK(std::string(tessera_last_error()).find("data is NULL") != std::string::npos);
  in = input_tensor(values, {2, 784});
  CHECK(tessera_model_run(nullptr, &in, 1, &out, 1) == TESSERA_ERROR_INVALID_ARGUMENT);
  CHECK(tessera_model_run(m, nullptr, 1, &out, 1) == TESSERA_ERROR_INVALID_ARGUMENT);
  CHECK(tessera_model_run(m, &in, 2, &out, 1) == TESSERA_ERROR_INVALID_ARGUMENT);
  CHECK(tessera_model_run(m, &in, 1, nullptr, 1) == TESSERA_ERROR_INVALID_ARGUMENT);
  int32_t count = 0;
  CHECK(tessera_model_num_inputs(nullptr, &count) == TESSERA_ERROR_INVALID_ARGUMENT);
  tessera_tensor_info info{};
  CHECK(tessera_model_input(m, 1, &info) == TESSERA_ERROR_INVALID_ARGUMENT);
  CHECK(tessera_model_output(m, -1, &info) == TESSERA_ERROR_INVALID_ARGUMENT);
  // An output buffer too small: the status says so and `bytes` says how much is needed.
  out.bytes = 8;
  CHECK(tessera_model_run(m, &in, 1, &out, 1) == TESSERA_ERROR_BUFFER_TOO_SMALL);
  CHECK(out.bytes == 20 * sizeof(float));
  CHECK(out.shape[0] == 2);
  CHECK(tessera_model_run(m, &in, 1, &out, 1) == TESSERA_OK);
  tessera_model_close(m);
  tessera_model_close(nullptr);
}

TEST_CASE("eight threads running one handle agree with the serial results") {
  const Exported e;
  tessera_model* m = nullptr;
  REQUIRE(tessera_model_open(e.cnn.c_str(), &m) == TESSERA_OK);
  constexpr int threads = 8, runs = 10;
  auto run_one = [&](int t, std::vector<float>& result) {
    std::vector<float> values = pattern(std::size_t(t + 1) * 784);
    for (auto& v : values) v = std::fmod(v + 0.1f * float(t), 1.0f);
    const tessera_tensor in = input_tensor(values, {t + 1, 1, 28, 28});
    result.assign(std::size_t(t + 1) * 10, 0);
    tessera_tensor out{};
    out.data = result.data();
    out.bytes = result.size() * sizeof(float);
    return tessera_model_run(m, &in, 1, &out, 1);
  };
  std::vector<std::vector<float>> serial(threads);
  for (int t = 0; t < threads; ++t) REQUIRE(run_one(t, serial[std::size_t(t)]) == TESSERA_OK);
  std::vector<int> mismatches(threads, 0), failures(threads, 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::vector<float> result;
      for (int r = 0; r < runs; ++r) {
        if (run_one(t, result) != TESSERA_OK) ++failures[std::size_t(t)];
        if (result != serial[std::size_t(t)]) ++mismatches[std::size_t(t)];
      }
    });
  }
  for (auto& t : pool) t.join();
  for (int t = 0; t < threads; ++t) {
    CHECK(failures[std::size_t(t)] == 0);
    CHECK(mismatches[std::size_t(t)] == 0);
  }
  tessera_model_close(m);
}
