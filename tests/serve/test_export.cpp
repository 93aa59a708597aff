// Export (versioned, atomic, never overwriting), the structural hash, loading a version through
// the registry with every way it can fail, and the model lifecycle (policies, labels, hot reload,
// failed versions), all without HTTP.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include <tessera/serve/model_manager.hpp>

#include "serve/serve_fixtures.hpp"

using namespace serve_test;

namespace {
bool exists(const std::string& path) {
  struct ::stat st {};
  return ::stat(path.c_str(), &st) == 0;
}
std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void spit(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}
std::vector<serve::HostTensor> one_input(std::vector<float> values) {
  serve::HostTensor t(serve::DataType::float32, {std::int64_t(values.size() / 4), 4});
  std::copy(values.begin(), values.end(), t.data<float>());
  return {t};
}
serve::ModelConfig config(const std::string& name, const std::string& base) {
  serve::ModelConfig c;
  c.name = name;
  c.base_path = base;
  return c;
}
}  // namespace

// The hash is a compile-time constant.
static_assert(serve::structural_hash<TinyMlp>() != 0);
static_assert(serve::structural_hash<TinyMlp>() == serve::structural_hash<decltype(tiny_mlp(100))>());
static_assert(serve::structural_hash<TinyMlp>() != serve::structural_hash<TwoTower>());
static_assert(serve::structural_hash<nn::Linear<float>>() != serve::structural_hash<nn::Linear<double>>());
static_assert(serve::structural_hash<decltype(nn::sequential(nn::Linear<float>(1, 1), nn::ReLU{}))>() !=
              serve::structural_hash<decltype(nn::sequential(nn::Linear<float>(1, 1), nn::Tanh{}))>());

TEST_CASE("export_model writes a complete version directory and never overwrites one") {
  const std::string base = temp_dir() + "/models/mlp";
  CHECK(serve::list_versions(base).empty());
  CHECK(serve::next_version(base) == 1);
  auto m = export_mlp(base, 1, 7);
  CHECK(exists(base + "/1/manifest.json"));
  CHECK(exists(base + "/1/weights.safetensors"));
  const auto manifest = nlohmann::json::parse(slurp(base + "/1/manifest.json"));
  CHECK(manifest["architecture"] == "tiny_mlp");
  CHECK(manifest["structural_hash"] == serve::hash_string(serve::structural_hash<TinyMlp>()));
  CHECK(manifest["hyperparameters"]["hidden"] == 8);
  CHECK(manifest["inputs"][0]["shape"] == nlohmann::json({-1, 4}));
  CHECK(manifest["signature_name"] == "serving_default");
  // The weights are the model's.
  auto copy = tiny_mlp(8);
  io::load_weights(base + "/1/weights.safetensors", copy);
  CHECK(copy.template layer<0>().weight(2, 3) == m.template layer<0>().weight(2, 3));

  CHECK(serve::next_version(base) == 2);
  CHECK_THROWS_WITH_AS(export_mlp(base, 1, 8), doctest::Contains("version 1 exists already"), io_error);
  // The refused export left nothing behind, and the version kept its weights.
  CHECK(serve::list_versions(base) == std::vector<std::int64_t>{1});
  io::load_weights(base + "/1/weights.safetensors", copy);
  CHECK(copy.template layer<0>().weight(2, 3) == m.template layer<0>().weight(2, 3));
  export_mlp(base, 10, 8);
  // Other names are not versions: files, temporaries, leading zeros, signs.
  spit(base + "/11", "a file");
  ::mkdir((base + "/.tmp-12-1-0").c_str(), 0755);
  ::mkdir((base + "/012").c_str(), 0755);
  ::mkdir((base + "/-3").c_str(), 0755);
  CHECK(serve::list_versions(base) == std::vector<std::int64_t>{1, 10});
  CHECK(serve::next_version(base) == 11);
}

TEST_CASE("export_model rejects bad arguments before writing") {
  const std::string base = temp_dir();
  auto m = tiny_mlp(4);
  CHECK_THROWS_AS(serve::export_model(m, base, -1, mlp_signature(), {"tiny_mlp", {{"hidden", 4}}}), value_error);
  CHECK_THROWS_AS(serve::export_model(m, base, 1, mlp_signature(), {"", {}}), value_error);
  CHECK_THROWS_AS(serve::export_model(m, base, 1, serve::Signature{}, {"tiny_mlp", {}}), value_error);
  CHECK_THROWS_AS(serve::export_model(m, base, 1, mlp_signature(), {"tiny_mlp", nlohmann::json::array()}), value_error);
  CHECK(serve::list_versions(base).empty());
  // An unwritable base path: io_error naming it, nothing left.
  CHECK_THROWS_AS(serve::export_model(m, "/proc/tessera_cannot_write", 1, mlp_signature(), {"tiny_mlp", {}}), io_error);
}

TEST_CASE("a loaded version runs the model in eval mode and equals the in-process forward") {
  const std::string base = temp_dir();
  auto m = export_mlp(base, 1, 3);
  const auto registry = serve_test::registry();
  serve::Manifest manifest;
  const auto servable = serve::detail::load_servable(registry, base + "/1", manifest);
  const std::vector<float> x = {0.1f, -0.2f, 0.3f, 0.4f, 1.0f, 2.0f, -3.0f, 0.5f};
  const auto out = servable->run(one_input(x));
  REQUIRE(out.size() == 1);
  CHECK(out[0].shape == std::vector<std::int64_t>{2, 3});
  const Tensor<float, 2> input = {{0.1f, -0.2f, 0.3f, 0.4f}, {1.0f, 2.0f, -3.0f, 0.5f}};
  const Tensor<float, 2> expected = m(input);
  for (index_t i = 0; i < 2; ++i) {
    for (index_t j = 0; j < 3; ++j) CHECK(out[0].data<float>()[i * 3 + j] == expected(i, j));
  }
  // Inputs the model rejects: a value_error or shape_error that names the input.
  serve::HostTensor wrong(serve::DataType::int64, {1, 4});
  CHECK_THROWS_WITH_AS(servable->run({wrong}), doctest::Contains("input x: expected float32, got int64"), value_error);
  serve::HostTensor rank3(serve::DataType::float32, {1, 4, 1});
  CHECK_THROWS_AS(servable->run({rank3}), shape_error);
}

TEST_CASE("every way a version can fail to load is an error that says why") {
  const std::string base = temp_dir();
  export_mlp(base, 1, 3);
  const auto registry = serve_test::registry();
  serve::Manifest manifest;
  auto load = [&] { return serve::detail::load_servable(registry, base + "/1", manifest); };
  const std::string good = slurp(base + "/1/manifest.json");
  auto edit = [&](const std::string& key, const nlohmann::json& value) {
    auto j = nlohmann::json::parse(good);
    j[key] = value;
    spit(base + "/1/manifest.json", j.dump());
  };
  edit("architecture", "resnet");
  CHECK_THROWS_WITH(load(), doctest::Contains("architecture 'resnet' is not registered in this server (it has: embedding, tiny_mlp, two_tower)"));
  edit("structural_hash", "0123456789abcdef");
  CHECK_THROWS_WITH(load(), doctest::Contains("the weights come from a different model type"));
  edit("hyperparameters", {{"hidden", 9}});  // the weights are [8, 4]
  CHECK_THROWS_WITH(load(), doctest::Contains("shape"));
  edit("hyperparameters", nlohmann::json::object());
  CHECK_THROWS_WITH(load(), doctest::Contains("do not build 'tiny_mlp'"));
  edit("inputs", {{{"name", "x"}, {"dtype", "int64"}, {"shape", {-1, 4}}}});
  CHECK_THROWS_WITH(load(), doctest::Contains("signature inputs x is int64 [-1, 4], architecture 'tiny_mlp' takes float32 of rank 2"));
  edit("outputs", {{{"name", "logits"}, {"dtype", "float32"}, {"shape", {-1, 5}}}});
  CHECK_THROWS_WITH(load(), doctest::Contains("output logits has shape [1, 3] where the signature says [-1, 5]"));
  edit("format_version", 2);
  CHECK_THROWS_WITH(load(), doctest::Contains("format_version"));
  spit(base + "/1/manifest.json", "{not json");
  CHECK_THROWS_WITH(load(), doctest::Contains("not valid JSON"));
  spit(base + "/1/manifest.json", good);
  CHECK_NOTHROW(load());
  // Corrupt weights: truncated.
  const std::string weights = slurp(base + "/1/weights.safetensors");
  spit(base + "/1/weights.safetensors", weights.substr(0, weights.size() / 2));
  CHECK_THROWS_AS(load(), io_error);
  ::unlink((base + "/1/weights.safetensors").c_str());
  CHECK_THROWS_AS(load(), io_error);
}

TEST_CASE("version policies, labels, and a model that keeps serving while a new version loads") {
  const std::string base = temp_dir();
  const auto registry = serve_test::registry();
  export_mlp(base, 1, 1);
  export_mlp(base, 2, 2);
  export_mlp(base, 3, 3);

  SUBCASE("latest 1 (the default)") {
    serve::ServedModel model(config("m", base), registry, std::nullopt, nullptr);
    model.poll();
    CHECK(model.available_versions() == std::vector<std::int64_t>{3});
    CHECK(model.resolve(std::nullopt, "")->version == 3);
    CHECK_THROWS_WITH_AS(model.resolve(1, ""), doctest::Contains("Servable not found for request: Specific(m, 1)"),
                         serve::ServingError);
  }
  SUBCASE("latest 2, all, specific, labels") {
    auto c = config("m", base);
    c.policy.kind = serve::VersionPolicy::Kind::latest;
    c.policy.num_versions = 2;
    serve::ServedModel latest2(c, registry, std::nullopt, nullptr);
    latest2.poll();
    CHECK(latest2.available_versions() == std::vector<std::int64_t>{2, 3});
    c.policy.kind = serve::VersionPolicy::Kind::all;
    serve::ServedModel all(c, registry, std::nullopt, nullptr);
    all.poll();
    CHECK(all.available_versions() == std::vector<std::int64_t>{1, 2, 3});
    c.policy.kind = serve::VersionPolicy::Kind::specific;
    c.policy.versions = {1, 3, 7};
    c.labels = {{"stable", 1}, {"canary", 3}, {"future", 7}};
    serve::ServedModel specific(c, registry, std::nullopt, nullptr);
    specific.poll();
    CHECK(specific.available_versions() == std::vector<std::int64_t>{1, 3});
    CHECK(specific.resolve(std::nullopt, "stable")->version == 1);
    CHECK(specific.resolve(std::nullopt, "canary")->version == 3);
    CHECK_THROWS_AS(specific.resolve(std::nullopt, "future"), serve::ServingError);
    CHECK_THROWS_WITH(specific.resolve(std::nullopt, "nope"), doctest::Contains("Unrecognized servable version label: nope"));
  }
  SUBCASE("a new version replaces the old one; a request holding the old one finishes first") {
    serve::ServedModel model(config("m", base), registry, std::nullopt, nullptr);
    model.poll();
    auto held = model.resolve(std::nullopt, "");  // a request in flight on version 3
    export_mlp(base, 4, 4);
    model.poll();
    CHECK(model.resolve(std::nullopt, "")->version == 4);
    auto state_of = [&](std::int64_t v) {
      for (const auto& s : model.statuses()) {
        if (s.version == v) return std::string(serve::state_name(s.state));
      }
      return std::string("absent");
    };
    CHECK(state_of(3) == "UNLOADING");
    CHECK(held->servable->run(one_input({1, 2, 3, 4}))[0].shape == std::vector<std::int64_t>{1, 3});
    model.poll();
    CHECK(state_of(3) == "UNLOADING");  // still held
    CHECK(held->version == 3);
    held.reset();  // the request ends
    model.poll();
    CHECK(state_of(3) == "END");
  }
  SUBCASE("a corrupt new version is reported and never replaces the good one") {
    serve::ServedModel model(config("m", base), registry, std::nullopt, nullptr);
    model.poll();
    const std::string tmp = base + "/.tmp-bad";
    ::mkdir(tmp.c_str(), 0755);
    spit(tmp + "/manifest.json", slurp(base + "/3/manifest.json"));
    spit(tmp + "/weights.safetensors", "garbage");
    REQUIRE(::rename(tmp.c_str(), (base + "/4").c_str()) == 0);
    model.poll();
    CHECK(model.resolve(std::nullopt, "")->version == 3);
    const auto statuses = model.statuses();
    REQUIRE(statuses.size() == 2);
    CHECK(statuses[0].version == 4);
    CHECK(statuses[0].state == serve::VersionState::end);
    CHECK(statuses[0].error_code == "DATA_LOSS");
    CHECK(statuses[0].error_message.find("weights.safetensors") != std::string::npos);
    CHECK(statuses[1].state == serve::VersionState::available);
    model.poll();  // not retried, still serving 3
    CHECK(model.resolve(std::nullopt, "")->version == 3);
    // A good version 5 then replaces 3.
    export_mlp(base, 5, 5);
    model.poll();
    CHECK(model.resolve(std::nullopt, "")->version == 5);
  }
  SUBCASE("a version whose directory disappears unloads") {
    auto c = config("m", base);
    c.policy.kind = serve::VersionPolicy::Kind::all;
    serve::ServedModel model(c, registry, std::nullopt, nullptr);
    model.poll();
    for (const char* f : {"/1/manifest.json", "/1/weights.safetensors"}) ::unlink((base + f).c_str());
    ::rmdir((base + "/1").c_str());
    model.poll();
    CHECK(model.available_versions() == std::vector<std::int64_t>{2, 3});
  }
}

TEST_CASE("the batcher runs concurrent requests together and answers each with its own rows") {
  const std::string base = temp_dir();
  auto m = export_mlp(base, 1, 11);
  const auto registry = serve_test::registry();
  serve::BatchingParameters p;
  p.max_batch_size = 16;
  p.batch_timeout_micros = 20000;
  p.num_batch_threads = 1;
  serve::Metrics metrics;
  serve::ServedModel model(config("m", base), registry, p, &metrics);
  model.poll();
  const auto version = model.resolve(std::nullopt, "");
  REQUIRE(version->batcher != nullptr);
  constexpr int clients = 8;
  std::vector<std::vector<serve::HostTensor>> answers(clients);
  std::vector<std::thread> threads;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      answers[std::size_t(c)] = version->run(one_input({float(c), 1, 2, 3, float(-c), 0, 1, 0}), deadline, &metrics);
    });
  }
  for (auto& t : threads) t.join();
  for (int c = 0; c < clients; ++c) {
    const Tensor<float, 2> input = {{float(c), 1, 2, 3}, {float(-c), 0, 1, 0}};
    const Tensor<float, 2> expected = m(input);
    const auto& got = answers[std::size_t(c)][0];
    REQUIRE(got.shape == std::vector<std::int64_t>{2, 3});
    for (index_t i = 0; i < 2; ++i) {
      for (index_t j = 0; j < 3; ++j) CHECK(got.data<float>()[i * 3 + j] == doctest::Approx(expected(i, j)).epsilon(1e-6));
    }
  }
  // The 16 rows ran in fewer than 8 model runs (the batch filled within the timeout).
  const std::string text = metrics.exposition();
  const auto at = text.find("tessera_serve_batch_size_count{model=\"m\"} ");
  REQUIRE(at != std::string::npos);
  const int runs = std::stoi(text.substr(at + std::string("tessera_serve_batch_size_count{model=\"m\"} ").size()));
  CHECK(runs < clients);
  // A deadline that passes while the request waits for its batch: 504.
  p.batch_timeout_micros = 300000;
  serve::ServedModel slow(config("slow", base), registry, p, nullptr);
  slow.poll();
  const auto soon = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
  try {
    slow.resolve(std::nullopt, "")->run(one_input({1, 2, 3, 4}), soon, nullptr);
    FAIL("expected a deadline error");
  } catch (const serve::ServingError& e) {
    CHECK(e.status() == 504);
  }
}
