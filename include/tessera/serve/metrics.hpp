// The server's counters in Prometheus' text exposition format (served at
// /monitoring/prometheus/metrics, where TensorFlow Serving serves its own): requests by model,
// version and HTTP status, a request latency histogram per model, the batch sizes the models ran,
// and the versions loaded per model.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

namespace tessera::serve {

class Metrics {
 public:
  /// Upper bounds of the latency buckets, in seconds (Prometheus' `le`).
  static constexpr std::array<double, 14> latency_bounds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                         0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   5.0};
  static constexpr std::array<double, 10> batch_bounds{1, 2, 4, 8, 16, 32, 64, 128, 256, 1024};

  /// One finished request: `model` and `version` are empty for requests that reached no model.
  void request(const std::string& model, const std::string& version, int status, double seconds) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++requests_[{model, version, status}];
    if (!model.empty()) latency_[model].observe(seconds, latency_bounds);
  }
  /// One run of a model on `rows` examples (one request's, or a batch of several requests').
  void batch(const std::string& model, std::int64_t rows) {
    std::lock_guard<std::mutex> lock(mutex_);
    batches_[model].observe(double(rows), batch_bounds);
  }
  void loaded_versions(const std::string& model, int count) {
    std::lock_guard<std::mutex> lock(mutex_);
    loaded_[model] = count;
  }

  /// Everything, in the text exposition format (version 0.0.4).
  std::string exposition() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out;
    out += "# HELP tessera_serve_requests_total Requests answered, by model, version and HTTP status.\n";
    out += "# TYPE tessera_serve_requests_total counter\n";
    for (const auto& [key, n] : requests_) {
      const auto& [model, version, status] = key;
      out += "tessera_serve_requests_total{model=\"" + escape(model) + "\",version=\"" + escape(version) +
             "\",code=\"" + std::to_string(status) + "\"} " + std::to_string(n) + "\n";
    }
    histogram(out, "tessera_serve_request_latency_seconds", "Request latency from the request's arrival to its answer.",
              latency_, latency_bounds);
    histogram(out, "tessera_serve_batch_size", "Examples per model run (with batching: per batch).", batches_,
              batch_bounds);
    out += "# HELP tessera_serve_loaded_versions Versions loaded and available, by model.\n";
    out += "# TYPE tessera_serve_loaded_versions gauge\n";
    for (const auto& [model, n] : loaded_) {
      out += "tessera_serve_loaded_versions{model=\"" + escape(model) + "\"} " + std::to_string(n) + "\n";
    }
    return out;
  }

 private:
  struct Histogram {
    std::array<std::uint64_t, 16> buckets{};  // cumulative counts are computed when printed
    std::uint64_t count = 0;
    double sum = 0;
    template <std::size_t N>
    void observe(double v, const std::array<double, N>& bounds) {
      static_assert(N < 16);
      std::size_t i = 0;
      while (i < N && v > bounds[i]) ++i;
      ++buckets[i];
      ++count;
      sum += v;
    }
  };
  static std::string escape(const std::string& s) {
    std::string out;
    for (char c : s) {
      if (c == '\\' || c == '"') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    return out;
  }
  static std::string number(double v) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.9g", v);
    return buffer;
  }
  template <std::size_t N>
  static void histogram(std::string& out, const char* name, const char* help, const std::map<std::string, Histogram>& hs,
                        const std::array<double, N>& bounds) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " histogram\n";
    for (const auto& [model, h] : hs) {
      const std::string label = "model=\"" + escape(model) + "\"";
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < N; ++i) {
        cumulative += h.buckets[i];
        out += std::string(name) + "_bucket{" + label + ",le=\"" + number(bounds[i]) + "\"} " + std::to_string(cumulative) + "\n";
      }
      out += std::string(name) + "_bucket{" + label + ",le=\"+Inf\"} " + std::to_string(h.count) + "\n";
      out += std::string(name) + "_sum{" + label + "} " + number(h.sum) + "\n";
      out += std::string(name) + "_count{" + label + "} " + std::to_string(h.count) + "\n";
    }
  }

  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, std::uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  std::map<std::string, Histogram> batches_;
  std::map<std::string, int> loaded_;
};

}  // namespace tessera::serve
