// The server over HTTP on a loopback port: every endpoint of both protocols and their error
// answers, predictions equal to the in-process forward, batching on and off, a new version rolled
// in under load with no failed request, and a stop that finishes the requests in flight.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include <tessera/serve/serve.hpp>

#include "serve/serve_fixtures.hpp"

using namespace serve_test;

namespace {

struct Running {
  std::string base;  // holds <model>/<version>/ directories
  std::unique_ptr<serve::Server> server;
  std::unique_ptr<httplib::Client> client;

  explicit Running(serve::ServerOptions options = {}, std::vector<serve::ModelConfig> models = {}) : base(temp_dir()) {
    if (models.empty()) models = default_models();
    options.port = 0;
    server = std::make_unique<serve::Server>(registry_, models, options);
    server->start();
    client = std::make_unique<httplib::Client>("127.0.0.1", server->port());
  }
  std::vector<serve::ModelConfig> default_models() {
    export_mlp(base + "/mlp", 1, 1);
    export_mlp(base + "/mlp", 2, 2);
    manual_seed(3);
    TwoTower two;
    serve::export_model(two, base + "/two", 1, two_tower_signature(), {"two_tower", {}});
    nn::Embedding<float> embedding(10, 4);
    serve::export_model(embedding, base + "/embedding", 1, embedding_signature(), {"embedding", {}});
    serve::ModelConfig mlp;
    mlp.name = "mlp";
    mlp.base_path = base + "/mlp";
    mlp.policy.kind = serve::VersionPolicy::Kind::all;
    mlp.labels = {{"stable", 1}, {"canary", 2}};
    serve::ModelConfig t;
    t.name = "two";
    t.base_path = base + "/two";
    serve::ModelConfig e;
    e.name = "embedding";
    e.base_path = base + "/embedding";
    return {mlp, t, e};
  }
  httplib::Result get(const std::string& path) { return client->Get(path.c_str()); }
  httplib::Result post(const std::string& path, const std::string& body) {
    return client->Post(path.c_str(), body, "application/json");
  }

  serve::ModelRegistry registry_ = registry();
};

nlohmann::json json_of(const httplib::Result& r) {
  REQUIRE(r);
  return nlohmann::json::parse(r->body);
}
/// Status and the error message of an answer that must be an error.
std::pair<int, std::string> error_of(const httplib::Result& r) {
  REQUIRE(r);
  const auto j = nlohmann::json::parse(r->body);
  REQUIRE(j.contains("error"));
  return {r->status, j["error"].get<std::string>()};
}

}  // namespace

TEST_CASE("TensorFlow Serving's REST API: status, metadata, predict, versions and labels") {
  Running s;
  auto status = json_of(s.get("/v1/models/mlp"));
  REQUIRE(status["model_version_status"].size() == 2);
  CHECK(status["model_version_status"][0]["version"] == "2");
  CHECK(status["model_version_status"][0]["state"] == "AVAILABLE");
  CHECK(status["model_version_status"][0]["status"]["error_code"] == "OK");
  CHECK(json_of(s.get("/v1/models/mlp/versions/1"))["model_version_status"].size() == 1);
  CHECK(json_of(s.get("/v1/models/mlp/labels/canary"))["model_version_status"][0]["version"] == "2");

  const auto meta = json_of(s.get("/v1/models/mlp/metadata"));
  CHECK(meta["model_spec"]["name"] == "mlp");
  CHECK(meta["model_spec"]["version"] == "2");
  const auto& def = meta["metadata"]["signature_def"]["signature_def"]["serving_default"];
  CHECK(def["inputs"]["x"]["dtype"] == "DT_FLOAT");
  CHECK(def["inputs"]["x"]["tensor_shape"]["dim"][0]["size"] == "-1");
  CHECK(def["inputs"]["x"]["tensor_shape"]["dim"][1]["size"] == "4");
  CHECK(def["outputs"]["logits"]["tensor_shape"]["dim"][1]["size"] == "3");
  CHECK(def["method_name"] == "tensorflow/serving/predict");
  CHECK(json_of(s.get("/v1/models/mlp/versions/1/metadata"))["model_spec"]["version"] == "1");

  // Predictions from each version equal the in-process forward of that version's weights.
  const Tensor<float, 2> x = {{0.5f, -1, 2, 0.25f}, {3, 1, -2, 0}};
  const std::string body = R"({"instances": [[0.5, -1, 2, 0.25], [3, 1, -2, 0]]})";
  for (int v : {1, 2}) {
    auto m = tiny_mlp(8);
    io::load_weights(s.base + "/mlp/" + std::to_string(v) + "/weights.safetensors", m);
    const Tensor<float, 2> expected = m(x);
    for (const std::string& path :
         {"/v1/models/mlp/versions/" + std::to_string(v) + ":predict", std::string("/v1/models/mlp/labels/") + (v == 1 ? "stable" : "canary") + ":predict"}) {
      const auto p = json_of(s.post(path, body));
      for (index_t i = 0; i < 2; ++i) {
        for (index_t j = 0; j < 3; ++j) CHECK(p["predictions"][i][j].get<float>() == expected(i, j));
      }
    }
  }
  // Latest is version 2; the column form answers with "outputs"; paths match in any case.
  const auto latest = json_of(s.post("/v1/models/mlp:predict", body));
  CHECK(latest == json_of(s.post("/v1/models/mlp/versions/2:predict", body)));
  const auto columns = json_of(s.post("/V1/Models/mlp:PREDICT", R"({"inputs": [[0.5, -1, 2, 0.25], [3, 1, -2, 0]]})"));
  CHECK(columns["outputs"] == latest["predictions"]);

  // A body over 8 KB sent as a form (what `curl -d` does): read as JSON all the same.
  std::string many = "{\"instances\": [";
  for (int k = 0; k < 1000; ++k) many += (k ? ", " : "") + std::string("[1, 2, 3, 4]");
  many += "]}";
  REQUIRE(many.size() > 8192);
  const auto form = s.client->Post("/v1/models/mlp:predict", many, "application/x-www-form-urlencoded");
  REQUIRE(form);
  CHECK(form->status == 200);
  CHECK(nlohmann::json::parse(form->body)["predictions"].size() == 1000);
  // Two inputs and two outputs, by name; an int64 input.
  const auto two = json_of(s.post("/v1/models/two:predict", R"({"instances": [{"a": [1, 2, 3, 4], "b": [1, -1]}]})"));
  CHECK(two["predictions"][0].contains("sum"));
  CHECK(two["predictions"][0]["relu"].size() == 3);
  const auto emb = json_of(s.post("/v1/models/embedding:predict", R"({"inputs": [[1, 2, 3], [9, 0, 0]]})"));
  CHECK(emb["outputs"].size() == 2);
  CHECK(emb["outputs"][0].size() == 3);
  CHECK(emb["outputs"][0][0].size() == 4);
  CHECK(emb["outputs"][1][1] == emb["outputs"][1][2]);
}

TEST_CASE("TensorFlow Serving's error answers: JSON bodies with its status codes") {
  serve::ServerOptions options;
  options.max_body_bytes = 4096;
  Running s(options);
  auto expect = [](const httplib::Result& r, int status, const std::string& text) {
    // Not a structured binding: CAPTURE's lambda cannot capture one in C++17 (Clang rejects it).
    const std::pair<int, std::string> error = error_of(r);
    const int code = error.first;
    const std::string& message = error.second;
    CAPTURE(message);
    CHECK(code == status);
    CHECK(message.find(text) != std::string::npos);
  };
  const std::string ok = R"({"instances": [[1, 2, 3, 4]]})";
  expect(s.post("/v1/models/nope:predict", ok), 404, "Could not find any versions of model nope");
  expect(s.get("/v1/models/nope"), 404, "Could not find any versions of model nope");
  expect(s.post("/v1/models/mlp/versions/7:predict", ok), 404, "Servable not found for request: Specific(mlp, 7)");
  expect(s.get("/v1/models/mlp/versions/7"), 404, "Could not find version 7 of model mlp");
  expect(s.post("/v1/models/mlp/labels/beta:predict", ok), 404, "Unrecognized servable version label: beta");
  expect(s.post("/v1/models/mlp:classify", ok), 501, ":classify is not implemented");
  expect(s.post("/v1/models/mlp:regress", ok), 501, ":regress is not implemented");
  expect(s.get("/v1/models/mlp:predict"), 400, "Malformed request");
  expect(s.get("/v1/foo"), 400, "Malformed request");
  expect(s.post("/v1/models/mlp:predict", "{\"instances\": [[1, 2"), 400, "JSON Parse error");
  expect(s.post("/v1/models/mlp:predict", R"({"instances": [[1, 2, 3]]})"), 400, "does not fit the signature");
  expect(s.post("/v1/models/mlp:predict", R"({"instances": [["a", 2, 3, 4]]})"), 400, "is not a number");
  expect(s.post("/v1/models/mlp:predict", R"({"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]})"), 400,
         "Missing 'inputs' or 'instances' key");
  expect(s.post("/v1/models/embedding:predict", R"({"inputs": [[1, 2, 30]]})"), 400, "");  // an id out of range
  expect(s.post("/v1/models/mlp:predict", "{\"instances\": [" + std::string(5000, ' ') + "[1, 2, 3, 4]]}"), 413,
         "exceeds the server's limit");
  expect(s.get("/nothing/here"), 404, "no endpoint GET /nothing/here");
  // The server still answers after all that.
  CHECK(s.post("/v1/models/mlp:predict", ok)->status == 200);
}

TEST_CASE("the open inference protocol: health, metadata, readiness, infer in JSON and binary") {
  Running s;
  const auto server = json_of(s.get("/v2"));
  CHECK(server["name"] == "tessera");
  CHECK(server["extensions"] == nlohmann::json({"binary_tensor_data"}));
  CHECK(s.get("/v2/health/live")->status == 200);
  CHECK(s.get("/v2/health/ready")->status == 200);
  CHECK(s.get("/v2/models/mlp/ready")->status == 200);
  CHECK(s.get("/v2/models/mlp/versions/1/ready")->status == 200);
  CHECK(error_of(s.get("/v2/models/mlp/versions/9/ready")).first == 404);
  CHECK(error_of(s.get("/v2/models/nope/ready")).first == 404);
  const auto meta = json_of(s.get("/v2/models/mlp"));
  CHECK(meta["name"] == "mlp");
  CHECK(meta["versions"] == nlohmann::json({"1", "2"}));
  CHECK(meta["platform"] == "tessera");
  CHECK(meta["inputs"][0] == nlohmann::json({{"name", "x"}, {"datatype", "FP32"}, {"shape", {-1, 4}}}));
  CHECK(meta["outputs"][0]["name"] == "logits");
  CHECK(json_of(s.get("/v2/models/mlp/versions/1"))["inputs"][0]["name"] == "x");

  const std::string json_request =
      R"({"id": "r7", "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [0.5, -1, 2, 0.25, 3, 1, -2, 0]}]})";
  const auto out = json_of(s.post("/v2/models/mlp/versions/1/infer", json_request));
  CHECK(out["model_name"] == "mlp");
  CHECK(out["model_version"] == "1");
  CHECK(out["id"] == "r7");
  CHECK(out["outputs"][0]["shape"] == nlohmann::json({2, 3}));
  const auto tf = json_of(s.post("/v1/models/mlp/versions/1:predict", R"({"instances": [[0.5, -1, 2, 0.25], [3, 1, -2, 0]]})"));
  for (int i = 0; i < 6; ++i) CHECK(out["outputs"][0]["data"][i] == tf["predictions"][i / 3][i % 3]);

  // Binary in, binary out.
  const std::string head = R"({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}}],
                               "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]})";
  const float x[8] = {0.5f, -1, 2, 0.25f, 3, 1, -2, 0};
  std::string body = head;
  body.append(reinterpret_cast<const char*>(x), sizeof x);
  httplib::Headers headers = {{"Inference-Header-Content-Length", std::to_string(head.size())}};
  const auto r = s.client->Post("/v2/models/mlp/versions/1/infer", headers, body, "application/octet-stream");
  REQUIRE(r);
  CHECK(r->status == 200);
  const std::size_t json_length = std::stoul(r->get_header_value("Inference-Header-Content-Length"));
  const auto j = nlohmann::json::parse(r->body.substr(0, json_length));
  CHECK(j["outputs"][0]["parameters"]["binary_data_size"] == 24);
  REQUIRE(r->body.size() == json_length + 24);
  for (int i = 0; i < 6; ++i) {
    float v;
    std::memcpy(&v, r->body.data() + json_length + 4 * i, 4);
    CHECK(v == tf["predictions"][i / 3][i % 3].get<float>());
  }
  // Errors: JSON bodies, 400 for bad requests, 404 for unknown models.
  CHECK(error_of(s.post("/v2/models/nope/infer", json_request)).first == 404);
  CHECK(error_of(s.post("/v2/models/mlp/versions/x/infer", json_request)).first == 404);
  CHECK(error_of(s.post("/v2/models/mlp/infer", R"({"inputs": [{"name": "x"}]})")).first == 400);
  CHECK(error_of(s.client->Post("/v2/models/mlp/infer", {{"Inference-Header-Content-Length", "abc"}}, body,
                                "application/octet-stream"))
            .first == 400);
  CHECK(error_of(s.get("/v2/models/mlp/infer")).first == 405);

  // Metrics: requests by model, version and status; latency and batch-size histograms; versions.
  const auto metrics = s.get("/monitoring/prometheus/metrics");
  REQUIRE(metrics);
  CHECK(metrics->get_header_value("Content-Type").find("text/plain") == 0);
  CHECK(metrics->body.find("tessera_serve_requests_total{model=\"mlp\",version=\"1\",code=\"200\"} 4") != std::string::npos);
  // Unknown model names are counted without their name (a client must not grow the metrics).
  CHECK(metrics->body.find("model=\"nope\"") == std::string::npos);
  CHECK(metrics->body.find("tessera_serve_requests_total{model=\"\",version=\"\",code=\"404\"}") != std::string::npos);
  CHECK(metrics->body.find("tessera_serve_request_latency_seconds_bucket{model=\"mlp\",le=\"+Inf\"}") != std::string::npos);
  CHECK(metrics->body.find("tessera_serve_batch_size_count{model=\"mlp\"} 3") != std::string::npos);
  CHECK(metrics->body.find("tessera_serve_loaded_versions{model=\"mlp\"} 2") != std::string::npos);
}

TEST_CASE("batching on and off give the same predictions") {
  Running plain;
  serve::ServerOptions options;
  serve::BatchingParameters p;
  p.max_batch_size = 8;
  p.batch_timeout_micros = 2000;
  p.num_batch_threads = 2;
  options.batching = p;
  serve::ModelConfig c;
  c.name = "mlp";
  c.base_path = plain.base + "/mlp";
  Running batched(options, {c});
  constexpr int clients = 8, requests = 10;
  std::vector<std::string> with(clients * requests), without(clients * requests);
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      httplib::Client client("127.0.0.1", batched.server->port());
      for (int k = 0; k < requests; ++k) {
        const int id = t * requests + k;
        const std::string body = "{\"instances\": [[" + std::to_string(id) + ", 1, -2, 0.5], [0, " + std::to_string(k) + ", 3, 1]]}";
        const auto r = client.Post("/v1/models/mlp:predict", body, "application/json");
        with[std::size_t(id)] = r ? std::to_string(r->status) + r->body : "no answer";
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int id = 0; id < clients * requests; ++id) {
    const std::string body = "{\"instances\": [[" + std::to_string(id) + ", 1, -2, 0.5], [0, " + std::to_string(id % requests) + ", 3, 1]]}";
    const auto r = plain.post("/v1/models/mlp:predict", body);
    without[std::size_t(id)] = std::to_string(r->status) + r->body;
  }
  CHECK(with == without);
  // The batches did form: fewer model runs than requests.
  const std::string metrics = batched.server->metrics().exposition();
  const std::string key = "tessera_serve_batch_size_count{model=\"mlp\"} ";
  const auto at = metrics.find(key);
  REQUIRE(at != std::string::npos);
  CHECK(std::stoi(metrics.substr(at + key.size())) < clients * requests);
}

TEST_CASE("a new version rolls in under load with no failed request; a corrupt one never replaces it") {
  const std::string base = temp_dir();
  export_mlp(base, 1, 1);
  serve::ServerOptions options;
  options.poll_period = std::chrono::milliseconds(50);
  serve::ModelConfig c;
  c.name = "m";
  c.base_path = base;
  Running s(options, {c});
  std::atomic<bool> done{false};
  std::atomic<int> ok{0}, failed{0}, on_new{0};
  std::thread load([&] {
    httplib::Client client("127.0.0.1", s.server->port());
    const std::string body = R"({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})";
    while (!done) {
      const auto r = client.Post("/v2/models/m/infer", body, "application/json");
      if (r && r->status == 200) {
        ++ok;
        if (nlohmann::json::parse(r->body)["model_version"] == "2") ++on_new;
      } else {
        ++failed;
      }
    }
  });
  auto state_of = [&](std::int64_t v) {
    for (const auto& st : s.server->models().model("m").statuses()) {
      if (st.version == v) return std::string(serve::state_name(st.state));
    }
    return std::string("absent");
  };
  auto wait_for = [&](const std::function<bool()>& condition) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!condition() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return condition();
  };
  REQUIRE(wait_for([&] { return ok > 20; }));
  export_mlp(base, 2, 2);
  CHECK(wait_for([&] { return state_of(2) == "AVAILABLE" && state_of(1) == "END" && on_new > 20; }));
  // A corrupt version 3 (weights that are not safetensors), moved in whole.
  const std::string tmp = base + "/.tmp-3";
  ::mkdir(tmp.c_str(), 0755);
  {
    std::ifstream in(base + "/2/manifest.json");
    std::ofstream(tmp + "/manifest.json") << in.rdbuf();
    std::ofstream(tmp + "/weights.safetensors") << "not safetensors";
  }
  REQUIRE(::rename(tmp.c_str(), (base + "/3").c_str()) == 0);
  CHECK(wait_for([&] { return state_of(3) == "END"; }));
  const int before = on_new;
  CHECK(wait_for([&] { return on_new > before + 20; }));  // version 2 keeps serving
  done = true;
  load.join();
  CHECK(failed == 0);
  CHECK(ok > 60);
  const auto status = json_of(s.get("/v1/models/m/versions/3"));
  CHECK(status["model_version_status"][0]["state"] == "END");
  CHECK(status["model_version_status"][0]["status"]["error_code"] == "DATA_LOSS");
  CHECK(status["model_version_status"][0]["status"]["error_message"].get<std::string>().find("weights.safetensors") !=
        std::string::npos);
}

TEST_CASE("stop() lets the requests in flight finish") {
  serve::ServerOptions options;
  serve::BatchingParameters p;
  p.max_batch_size = 64;
  p.batch_timeout_micros = 300000;  // the request waits 0.3 s for company
  p.num_batch_threads = 1;
  options.batching = p;
  const std::string base = temp_dir();
  export_mlp(base, 1, 1);
  serve::ModelConfig c;
  c.name = "m";
  c.base_path = base;
  Running s(options, {c});
  int status = 0;
  std::thread request([&] {
    httplib::Client client("127.0.0.1", s.server->port());
    const auto r = client.Post("/v1/models/m:predict", R"({"instances": [[1, 2, 3, 4]]})", "application/json");
    status = r ? r->status : -1;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  s.server->stop();
  s.server->wait();
  request.join();
  CHECK(status == 200);
  // Stopped: nothing listens any more.
  httplib::Client late("127.0.0.1", s.server->port());
  CHECK_FALSE(late.Get("/v2/health/live"));
}

TEST_CASE("a port in use is an error, not a port shared with another server") {
  Running first;
  serve::ServerOptions options;
  options.port = first.server->port();
  const auto r = registry();
  serve::Server second(r, {}, options);
  CHECK_THROWS_WITH_AS(second.start(), doctest::Contains("(in use?)"), io_error);
  CHECK(first.get("/v2/health/live")->status == 200);
}

TEST_CASE("with batching, requests whose inputs disagree on the batch run alone and get their own answers") {
  serve::ServerOptions options;
  serve::BatchingParameters p;
  p.max_batch_size = 16;
  p.batch_timeout_micros = 20000;
  p.num_batch_threads = 1;
  options.batching = p;
  Running s(options);
  std::vector<int> status(8, 0);
  std::vector<std::size_t> rows(8, 0);
  std::vector<std::thread> clients;
  for (int k = 0; k < 8; ++k) {
    clients.emplace_back([&, k] {
      httplib::Client c("127.0.0.1", s.server->port());
      // Odd k: a has 1 row and b 2, which the model broadcasts to 2 rows of "sum"; such a request
      // cannot be joined with others along the first axis.
      const std::string body = k % 2 ? R"({"inputs": {"a": [[1, 2, 3, 4]], "b": [[1, 2], [3, 4]]}})"
                                     : R"({"inputs": {"a": [[1, 2, 3, 4]], "b": [[1, 2]]}})";
      const auto r = c.Post("/v1/models/two:predict", body, "application/json");
      status[std::size_t(k)] = r ? r->status : -1;
      if (r && r->status == 200) rows[std::size_t(k)] = nlohmann::json::parse(r->body)["outputs"]["sum"].size();
    });
  }
  for (auto& t : clients) t.join();
  for (int k = 0; k < 8; ++k) {
    CAPTURE(k);
    CHECK(status[std::size_t(k)] == 200);
    CHECK(rows[std::size_t(k)] == (k % 2 ? 2u : 1u));
  }
}
