// The model server: TensorFlow Serving's REST API and the open inference protocol (KServe v2)
// over HTTP, for the models a ModelManager keeps loaded. HTTP itself is cpp-httplib's (Debian's
// libcpp-httplib-dev; link tessera::serve); this file only routes and answers.
//
//   serve::ModelRegistry registry;               // the architectures this binary can serve
//   registry.add<Tensor<float, 4>>("fashion_cnn", make_cnn);
//   serve::Server server(registry, {{"fashion", "/models/fashion"}}, serve::ServerOptions{});
//   server.start();                              // loads the models, binds 127.0.0.1:8501
//   server.wait();                               // until stop() (e.g. from a SIGTERM handler)
//
// Every answer is JSON; every error is {"error": "..."} with TensorFlow Serving's status codes.
// stop() stops accepting, lets the requests in flight finish, then returns from wait().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <httplib.h>
// httplib.h brings in <resolv.h> and <sys/param.h>, whose macros _res and HZ are names Eigen and
// tessera use (a parameter, a template parameter): a header included after this one would not
// parse. Nothing here uses either macro.
#undef _res
#undef HZ
#include <nlohmann/json.hpp>

#include "tessera/core/error.hpp"
#include "tessera/serve/metrics.hpp"
#include "tessera/serve/model_manager.hpp"
#include "tessera/serve/protocol.hpp"
#include "tessera/serve/registry.hpp"
#include "tessera/serve/config.hpp"

namespace tessera::serve {

inline constexpr const char* server_version = "0.1.0";

struct ServerOptions {
  std::string host = "127.0.0.1";  ///< loopback unless told otherwise
  int port = 8501;                 ///< 0: any free port (see Server::port())
  int threads = 0;                 ///< HTTP worker threads; 0: 16 per hardware thread, at least 32
  std::size_t max_body_bytes = std::size_t(64) << 20;
  std::chrono::milliseconds timeout{30000};  ///< per request: reading, waiting for a batch, writing
  std::chrono::milliseconds poll_period{1000};  ///< base paths polled this often; 0: only at start
  std::optional<BatchingParameters> batching;   ///< server-side batching when set
};

class Server {
 public:
  Server(const ModelRegistry& registry, const std::vector<ModelConfig>& models, ServerOptions options)
      : options_(std::move(options)), manager_(registry, models, options_.batching, &metrics_) {
    configure();
  }
  ~Server() {
    stop();
    wait();
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Loads every model's versions, binds the port and serves on a background thread. io_error
  /// when the address cannot be bound.
  void start() {
    manager_.poll();
    manager_.start_polling(options_.poll_period);
    if (options_.port == 0) {
      port_ = http_.bind_to_any_port(options_.host);
      if (port_ < 0) throw io_error("cannot bind " + options_.host + " to any port");
    } else {
      if (!http_.bind_to_port(options_.host, options_.port)) {
        throw io_error("cannot bind " + options_.host + ":" + std::to_string(options_.port) + " (in use?)");
      }
      port_ = options_.port;
    }
    listener_ = std::thread([this] {
      http_.listen_after_bind();
      listening_done_ = true;
    });
    // httplib's stop() does nothing before the listener runs: return only once it does, so that a
    // stop() right after start() (a SIGTERM that came while the models loaded) takes effect.
    while (!http_.is_running() && !listening_done_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  /// The bound port (after start()).
  int port() const { return port_; }
  /// Stops accepting connections; requests in flight finish. Safe from any thread, repeatedly.
  void stop() {
    if (!stopping_.exchange(true)) {
      http_.stop();
      manager_.stop_polling();
    }
  }
  /// Returns once the server has stopped and every request in flight has been answered.
  void wait() {
    if (listener_.joinable()) listener_.join();
  }

  ModelManager& models() { return manager_; }
  const Metrics& metrics() const { return metrics_; }

 private:
  struct Reply {
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
    std::optional<std::size_t> json_length;  // the open inference protocol's binary outputs
    std::string model, version;              // for the metrics
  };

  void configure() {
    int threads = options_.threads;
    if (threads <= 0) threads = std::max(32, 16 * int(std::max(1u, std::thread::hardware_concurrency())));
    http_.new_task_queue = [threads] { return new httplib::ThreadPool(std::size_t(threads)); };
    http_.set_payload_max_length(options_.max_body_bytes);
    const auto seconds = std::chrono::duration_cast<std::chrono::microseconds>(options_.timeout);
    http_.set_read_timeout(seconds);
    http_.set_write_timeout(seconds);
    http_.set_keep_alive_max_count(100000);
    http_.set_keep_alive_timeout(5);
    http_.set_tcp_nodelay(true);
    // httplib's default also sets SO_REUSEPORT, with which a second server binds a port that is in
    // use and the kernel splits the connections between the two. Only SO_REUSEADDR (a restarted
    // server rebinds while old connections linger in TIME_WAIT).
    http_.set_socket_options([](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    http_.Get(".*", [this](const httplib::Request& req, httplib::Response& res) { answer(req, req.body, res); });
    // POST bodies are read here, whatever their Content-Type: httplib parses a body it is handed as
    // application/x-www-form-urlencoded (what `curl -d` sends) as a form and refuses one over 8 KB
    // with 413; TensorFlow Serving reads the JSON regardless. (The size limit above still applies.)
    http_.Post(".*", [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& read) {
      std::string body;
      const bool complete = read([&](const char* data, std::size_t n) {
        body.append(data, n);
        return true;
      });
      if (!complete) {  // over the size limit, or the client stopped sending
        const std::int64_t declared = detail::version_of(req.get_header_value("Content-Length"));  // a plain count, or -1
        const bool too_large = declared < 0 || std::uint64_t(declared) > options_.max_body_bytes;
        res.status = too_large ? 413 : 400;
        res.set_content(error_body(too_large ? "the request body exceeds the server's limit" : "the request body ended early"),
                        "application/json");
        metrics_.request("", "", res.status, 0);
        return;
      }
      answer(req, body, res);
    });
    // What httplib answers itself (413 for a body over the limit, 404 for other methods...): JSON too.
    http_.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      std::string message = "HTTP status " + std::to_string(res.status);
      if (res.status == 413) message = "the request body exceeds the server's limit";
      if (res.status == 400) message = "malformed HTTP request";
      if (res.status == 404 || res.status == 405) message = "no such endpoint for this method";
      res.set_content(nlohmann::json{{"error", message}}.dump(), "application/json");
    });
    http_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      res.status = 500;
      res.set_content(R"({"error": "internal error"})", "application/json");
    });
  }

  void answer(const httplib::Request& req, const std::string& body, httplib::Response& res) {
    const auto start = std::chrono::steady_clock::now();
    Reply reply;
    try {
      route(req, body, reply, start + options_.timeout);
    } catch (const ServingError& e) {
      reply.status = e.status();
      reply.body = error_body(e.what());
      reply.content_type = "application/json";
      reply.json_length.reset();
    } catch (const std::bad_alloc&) {
      reply.status = 429;
      reply.body = error_body("out of memory for this request");
      reply.json_length.reset();
    } catch (const index_error& e) {  // an index in the input out of range (an embedding's token id)
      reply.status = 400;
      reply.body = error_body(e.what());
      reply.json_length.reset();
    } catch (const std::invalid_argument& e) {  // tessera's shape_error and value_error: the input's fault
      reply.status = 400;
      reply.body = error_body(e.what());
      reply.json_length.reset();
    } catch (const std::exception& e) {
      reply.status = 500;
      reply.body = error_body(e.what());
      reply.json_length.reset();
    }
    res.status = reply.status;
    if (reply.json_length) res.set_header("Inference-Header-Content-Length", std::to_string(*reply.json_length));
    res.set_content(std::move(reply.body), reply.json_length ? "application/octet-stream" : reply.content_type.c_str());
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    metrics_.request(reply.model, reply.version, reply.status, seconds);
  }

  static std::string error_body(const std::string& message) { return nlohmann::json{{"error", message}}.dump(); }

  void route(const httplib::Request& req, const std::string& body, Reply& reply,
             std::chrono::steady_clock::time_point deadline) {
    static const std::regex tf_post(R"(/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(predict|classify|regress))",
                                    std::regex::icase | std::regex::optimize);
    static const std::regex tf_get(R"(/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata)?)",
                                   std::regex::icase | std::regex::optimize);
    static const std::regex v2_model(R"(/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?)", std::regex::optimize);
    const std::string& path = req.path;
    const bool get = req.method == "GET", post = req.method == "POST";
    std::smatch m;
    if (path.size() >= 4 && (path.compare(0, 4, "/v1/") == 0 || path.compare(0, 4, "/V1/") == 0)) {
      if (post && std::regex_match(path, m, tf_post)) {
        const ServedModel& model = manager_.model(m[1]);
        reply.model = m[1];  // after the lookup: unknown names must not grow the metrics
        const auto version = resolve(model, m[2], m[3]);
        reply.version = std::to_string(version->version);
        const std::string verb = lower(m[4]);
        if (verb != "predict") {
          throw ServingError(501, "UNIMPLEMENTED", ":" + verb + " is not implemented by tessera's server; use :predict");
        }
        auto request = parse_predict(body, version->manifest.signature);
        const auto outputs = version->run(std::move(request.inputs), deadline, &metrics_);
        reply.body = predict_response(outputs, version->manifest.signature, request.row_form);
        return;
      }
      if (get && std::regex_match(path, m, tf_get)) {
        const ServedModel& model = manager_.model(m[1]);
        reply.model = m[1];
        if (m[4].matched) {
          const auto version = resolve(model, m[2], m[3]);
          reply.version = std::to_string(version->version);
          reply.body = tf_metadata(model, *version).dump();
        } else {
          reply.body = tf_status(model, m[2], m[3]).dump();
        }
        return;
      }
      throw invalid_argument("Malformed request: " + req.method + " " + path);
    }
    if (path == "/v2" || path == "/v2/") {
      require(get, req);
      reply.body = nlohmann::json{{"name", "tessera"}, {"version", server_version}, {"extensions", {"binary_tensor_data"}}}.dump();
      return;
    }
    if (path == "/v2/health/live") {
      require(get, req);
      reply.body = "{}";
      return;
    }
    if (path == "/v2/health/ready") {
      require(get, req);
      if (!manager_.all_ready()) throw ServingError(503, "UNAVAILABLE", "not every model has a version available");
      reply.body = "{}";
      return;
    }
    if (std::regex_match(path, m, v2_model)) {
      const ServedModel& model = manager_.model(m[1]);
      reply.model = m[1];
      std::string version_text = m[2];
      if (m[2].matched && detail::version_of(version_text) < 0) throw not_found("version '" + version_text + "' of model " + std::string(m[1]) + " is not a version number");
      const std::string what = m[3];
      if (what == "/ready") {
        require(get, req);
        (void)resolve(model, version_text, "");  // 404 when not available
        reply.body = "{}";
        return;
      }
      if (what == "/infer") {
        require(post, req);
        const auto version = resolve(model, version_text, "");
        reply.version = std::to_string(version->version);
        std::optional<std::size_t> json_length;
        if (req.has_header("Inference-Header-Content-Length")) {
          const std::string h = req.get_header_value("Inference-Header-Content-Length");
          const std::int64_t n = detail::version_of(h);  // a plain non-negative integer
          if (n < 0) throw invalid_argument("Inference-Header-Content-Length '" + h + "' is not a byte count");
          json_length = std::size_t(n);
        }
        auto request = parse_infer(body, json_length, version->manifest.signature);
        const auto outputs = version->run(std::move(request.inputs), deadline, &metrics_);
        auto response = infer_response(request, outputs, version->manifest.signature, model.config().name, version->version);
        reply.body = std::move(response.body);
        reply.json_length = response.json_length;
        return;
      }
      require(get, req);
      const auto version = resolve(model, version_text, "");
      reply.version = std::to_string(version->version);
      reply.body = v2_metadata(model, *version).dump();
      return;
    }
    if (path == "/monitoring/prometheus/metrics") {
      require(get, req);
      reply.body = metrics_.exposition();
      reply.content_type = "text/plain; version=0.0.4";
      return;
    }
    throw not_found("no endpoint " + req.method + " " + path);
  }

  static void require(bool method_ok, const httplib::Request& req) {
    if (!method_ok) throw ServingError(405, "INVALID_ARGUMENT", req.method + " is not allowed on " + req.path);
  }
  static std::string lower(std::string s) {
    for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  static std::shared_ptr<const LoadedVersion> resolve(const ServedModel& model, const std::string& version, const std::string& label) {
    std::optional<std::int64_t> v;
    if (!version.empty()) {
      const std::int64_t parsed = detail::version_of(version);
      if (parsed < 0) throw invalid_argument("version '" + version + "' is not a version number");
      v = parsed;
    }
    return model.resolve(v, label);
  }

  static nlohmann::json tf_status(const ServedModel& model, const std::string& version, const std::string& label) {
    std::optional<std::int64_t> only;
    if (!label.empty()) {
      const auto l = model.config().labels.find(label);
      if (l == model.config().labels.end()) throw not_found("Unrecognized servable version label: " + label);
      only = l->second;
    } else if (!version.empty()) {
      only = detail::version_of(version);
    }
    nlohmann::json list = nlohmann::json::array();
    for (const auto& s : model.statuses()) {
      if (only && s.version != *only) continue;
      list.push_back({{"version", std::to_string(s.version)},
                      {"state", state_name(s.state)},
                      {"status", {{"error_code", s.error_code}, {"error_message", s.error_message}}}});
    }
    if (list.empty()) {
      if (only) {
        throw not_found("Could not find version " + std::to_string(*only) + " of model " + model.config().name);
      }
      throw not_found("Could not find any versions of model " + model.config().name);
    }
    return {{"model_version_status", list}};
  }

  static nlohmann::json tf_metadata(const ServedModel& model, const LoadedVersion& v) {
    auto specs = [](const std::vector<TensorSpec>& list) {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& s : list) {
        nlohmann::json dims = nlohmann::json::array();
        for (auto d : s.shape) dims.push_back({{"size", std::to_string(d)}, {"name", ""}});
        out[s.name] = {{"dtype", tf_dtype_name(s.dtype)},
                       {"tensor_shape", {{"dim", dims}, {"unknown_rank", false}}},
                       {"name", s.name}};
      }
      return out;
    };
    const auto& sig = v.manifest.signature;
    nlohmann::json def = {{"inputs", specs(sig.inputs)}, {"outputs", specs(sig.outputs)}, {"method_name", "tensorflow/serving/predict"}};
    return {{"model_spec", {{"name", model.config().name}, {"signature_name", ""}, {"version", std::to_string(v.version)}}},
            {"metadata", {{"signature_def", {{"signature_def", {{sig.name, def}}}}}}}};
  }

  static nlohmann::json v2_metadata(const ServedModel& model, const LoadedVersion& v) {
    auto specs = [](const std::vector<TensorSpec>& list) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& s : list) out.push_back({{"name", s.name}, {"datatype", v2_dtype_name(s.dtype)}, {"shape", s.shape}});
      return out;
    };
    nlohmann::json versions = nlohmann::json::array();
    for (auto n : model.available_versions()) versions.push_back(std::to_string(n));
    return {{"name", model.config().name},
            {"versions", versions},
            {"platform", "tessera"},
            {"inputs", specs(v.manifest.signature.inputs)},
            {"outputs", specs(v.manifest.signature.outputs)}};
  }

  ServerOptions options_;
  Metrics metrics_;
  ModelManager manager_;
  httplib::Server http_;
  int port_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> listening_done_{false};
  std::thread listener_;
};

}  // namespace tessera::serve
