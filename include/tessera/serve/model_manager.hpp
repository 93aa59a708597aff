// Model lifecycle: which versions of which models are loaded, following TensorFlow Serving.
//
// Each configured model has a base path holding integer-named version directories (serve/export.hpp).
// poll() lists them, applies the model's version policy (latest N, all, specific) and
//   - loads each wanted version that is not loaded (LOADING, then AVAILABLE), while the loaded ones
//     keep serving;
//   - unloads loaded versions the policy no longer wants, once a wanted version is AVAILABLE (so a
//     model never goes dark because its new version is broken) or once their directory is gone;
//     an unloading version finishes the requests that hold it (UNLOADING, then END);
//   - records a version that fails to load (unreadable manifest, unknown architecture, structural
//     hash, signature, corrupt or mismatched weights) as END with the reason, and does not retry it.
// Requests hold a version by shared_ptr, so unloading never pulls a model from under a request.
//
// With batching on, each loaded version has a Batcher: requests queue their inputs, and batch
// threads run up to max_batch_size examples at once, waiting at most batch_timeout_micros for a
// batch to fill.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tessera/core/error.hpp"
#include "tessera/io/file.hpp"
#include "tessera/serve/export.hpp"
#include "tessera/serve/metrics.hpp"
#include "tessera/serve/registry.hpp"
#include "tessera/serve/signature.hpp"
#include "tessera/serve/config.hpp"

namespace tessera::serve {

/// An error a request ends in: the HTTP status and TensorFlow's error code name ("NOT_FOUND").
class ServingError : public std::runtime_error {
 public:
  ServingError(int status, std::string code, const std::string& message)
      : std::runtime_error(message), status_(status), code_(std::move(code)) {}
  int status() const noexcept { return status_; }
  const std::string& code() const noexcept { return code_; }

 private:
  int status_;
  std::string code_;
};
inline ServingError not_found(const std::string& m) { return ServingError(404, "NOT_FOUND", m); }
inline ServingError invalid_argument(const std::string& m) { return ServingError(400, "INVALID_ARGUMENT", m); }

/// A version's state, with TensorFlow Serving's names.
enum class VersionState { start, loading, available, unloading, end };
inline const char* state_name(VersionState s) {
  switch (s) {
    case VersionState::start: return "START";
    case VersionState::loading: return "LOADING";
    case VersionState::available: return "AVAILABLE";
    case VersionState::unloading: return "UNLOADING";
    case VersionState::end: return "END";
  }
  return "UNKNOWN";
}

struct VersionStatus {
  std::int64_t version = 0;
  VersionState state = VersionState::start;
  std::string error_code = "OK";  ///< TensorFlow's code name; "OK" unless the load failed
  std::string error_message;
};

/// Runs a servable on batches of queued requests (see the file comment).
class Batcher {
 public:
  /// `batchable`: every input's first axis is the batch (-1 in the signature); otherwise each
  /// request runs alone, in the order it came.
  Batcher(const Servable& servable, const BatchingParameters& p, bool batchable, std::string model_name, Metrics* metrics)
      : servable_(servable), params_(p), batchable_(batchable), model_(std::move(model_name)), metrics_(metrics) {
    if (p.max_batch_size < 1 || p.max_enqueued_batches < 1 || p.batch_timeout_micros < 0 ||
        p.batch_timeout_micros > 1000000000 || p.num_batch_threads < 0 || p.num_batch_threads > 1024) {
      throw value_error("batching parameters out of range (max_batch_size and max_enqueued_batches >= 1, "
                        "batch_timeout_micros in [0, 10^9], num_batch_threads in [0, 1024])");
    }
    // The queue's capacity in examples, saturating instead of overflowing for huge settings.
    capacity_ = p.max_enqueued_batches > std::numeric_limits<std::int64_t>::max() / p.max_batch_size
                    ? std::numeric_limits<std::int64_t>::max()
                    : p.max_enqueued_batches * p.max_batch_size;
    int threads = int(p.num_batch_threads);
    if (threads == 0) threads = std::max(1, int(std::thread::hardware_concurrency()));
    try {
      for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
    } catch (...) {
      stop_threads();  // the ones that did start
      throw;
    }
  }
  ~Batcher() { stop_threads(); }
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  /// Queues `inputs` and waits for the outputs. ServingError 503 when the queue is full, 504 when
  /// `deadline` passes before the batch holding the request starts.
  std::vector<HostTensor> run(std::vector<HostTensor> inputs, std::chrono::steady_clock::time_point deadline) {
    auto task = std::make_shared<Task>();
    task->inputs = std::move(inputs);
    task->rows = task->inputs.empty() || task->inputs[0].shape.empty() ? 1 : task->inputs[0].shape[0];
    task->deadline = deadline;
    auto future = task->result.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (task->rows > capacity_ - queued_rows_) {
        throw ServingError(503, "UNAVAILABLE", "the batch queue of model " + model_ + " is full");
      }
      queued_rows_ += task->rows;
      queue_.push_back(std::move(task));
    }
    ready_.notify_one();
    return future.get();
  }

 private:
  void stop_threads() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    ready_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  struct Task {
    std::vector<HostTensor> inputs;
    std::int64_t rows = 1;
    bool answered = false;
    std::chrono::steady_clock::time_point deadline;
    std::chrono::steady_clock::time_point queued = std::chrono::steady_clock::now();
    std::promise<std::vector<HostTensor>> result;
  };
  using TaskPtr = std::shared_ptr<Task>;

  /// A task whose every input has `rows` as its first extent (what concatenating along the first
  /// axis needs).
  static bool rows_first(const Task& t) {
    for (const auto& x : t.inputs) {
      if (x.shape.empty() || x.shape[0] != t.rows) return false;
    }
    return true;
  }
  /// Tasks can share a batch when the model's inputs are batch-major and theirs agree in dtype and
  /// in every extent but the first.
  bool compatible(const Task& a, const Task& b) const {
    if (!batchable_ || a.inputs.size() != b.inputs.size() || !rows_first(a) || !rows_first(b)) return false;
    for (std::size_t i = 0; i < a.inputs.size(); ++i) {
      const auto& x = a.inputs[i];
      const auto& y = b.inputs[i];
      if (x.dtype != y.dtype || x.shape.size() != y.shape.size()) return false;
      if (!std::equal(x.shape.begin() + 1, x.shape.end(), y.shape.begin() + 1)) return false;
    }
    return true;
  }

  void loop() {
    for (;;) {
      std::vector<TaskPtr> batch;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, nothing left
        // Wait for the batch to fill, at most batch_timeout after its first request arrived.
        const auto until = queue_.front()->queued + std::chrono::microseconds(params_.batch_timeout_micros);
        while (!stop_ && fillable_rows(lock) < params_.max_batch_size && std::chrono::steady_clock::now() < until) {
          ready_.wait_until(lock, until);
          if (queue_.empty()) break;
        }
        if (queue_.empty()) continue;
        batch.push_back(queue_.front());
        queue_.pop_front();
        std::int64_t rows = batch[0]->rows;
        for (auto it = queue_.begin(); it != queue_.end() && rows < params_.max_batch_size;) {
          if (rows + (*it)->rows <= params_.max_batch_size && compatible(*batch[0], **it)) {
            rows += (*it)->rows;
            batch.push_back(*it);
            it = queue_.erase(it);
          } else {
            ++it;
          }
        }
        for (const auto& t : batch) queued_rows_ -= t->rows;
      }
      run_batch(batch);
    }
  }
  std::int64_t fillable_rows(std::unique_lock<std::mutex>&) const {
    // A request that cannot share a batch does not wait for company.
    if (!compatible(*queue_.front(), *queue_.front())) return params_.max_batch_size;
    std::int64_t rows = 0;
    for (const auto& t : queue_) {
      if (compatible(*queue_.front(), *t)) rows += t->rows;
    }
    return rows;
  }

  /// Runs a batch; whatever goes wrong (even allocating the joined inputs) reaches every request
  /// of it that has no answer yet, never the batch thread.
  void run_batch(std::vector<TaskPtr>& batch) {
    try {
      run_batch_unguarded(batch);
    } catch (...) {
      for (auto& t : batch) {
        if (!t->answered) {
          t->answered = true;
          t->result.set_exception(std::current_exception());
        }
      }
    }
  }
  void run_batch_unguarded(std::vector<TaskPtr>& batch) {
    const auto now = std::chrono::steady_clock::now();
    std::vector<TaskPtr> live;
    for (auto& t : batch) {
      if (now > t->deadline) {
        t->answered = true;
        t->result.set_exception(std::make_exception_ptr(
            ServingError(504, "DEADLINE_EXCEEDED", "the request's deadline passed while it waited for a batch")));
      } else {
        live.push_back(t);
      }
    }
    if (live.empty()) return;
    if (live.size() == 1) {
      run_alone(*live[0]);
      return;
    }
    // Concatenate every input along its first axis.
    std::int64_t rows = 0;
    for (const auto& t : live) rows += t->rows;
    std::vector<HostTensor> inputs;
    for (std::size_t i = 0; i < live[0]->inputs.size(); ++i) {
      auto shape = live[0]->inputs[i].shape;
      shape[0] = rows;
      HostTensor joined(live[0]->inputs[i].dtype, shape);
      std::size_t at = 0;
      for (const auto& t : live) {
        const auto& b = t->inputs[i].bytes;
        std::copy(b.begin(), b.end(), joined.bytes.begin() + std::ptrdiff_t(at));
        at += b.size();
      }
      inputs.push_back(std::move(joined));
    }
    std::vector<HostTensor> outputs;
    try {
      outputs = servable_.run(inputs);
      if (metrics_ != nullptr) metrics_->batch(model_, rows);
    } catch (...) {
      // One bad request must not fail its neighbours: run each alone to give each its own answer.
      for (auto& t : live) run_alone(*t);
      return;
    }
    for (const auto& o : outputs) {
      if (o.shape.empty() || o.shape[0] != rows) {  // not batch-major: cannot be split by rows
        for (auto& t : live) run_alone(*t);
        return;
      }
    }
    std::int64_t first = 0;
    for (auto& t : live) {
      std::vector<HostTensor> mine;
      for (const auto& o : outputs) {
        auto shape = o.shape;
        shape[0] = t->rows;
        HostTensor part(o.dtype, shape);
        const std::size_t row_bytes = rows == 0 ? 0 : o.bytes.size() / std::size_t(rows);
        std::copy(o.bytes.begin() + std::ptrdiff_t(row_bytes * std::size_t(first)),
                  o.bytes.begin() + std::ptrdiff_t(row_bytes * std::size_t(first + t->rows)), part.bytes.begin());
        mine.push_back(std::move(part));
      }
      first += t->rows;
      t->answered = true;
      t->result.set_value(std::move(mine));
    }
  }
  void run_alone(Task& t) {
    if (t.answered) return;
    try {
      auto out = servable_.run(t.inputs);
      if (metrics_ != nullptr) metrics_->batch(model_, t.rows);
      t.answered = true;
      t.result.set_value(std::move(out));
    } catch (...) {
      t.answered = true;
      t.result.set_exception(std::current_exception());
    }
  }

  const Servable& servable_;
  BatchingParameters params_;
  bool batchable_;
  std::string model_;
  Metrics* metrics_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<TaskPtr> queue_;
  std::int64_t queued_rows_ = 0;
  std::int64_t capacity_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;  // last: started once everything above exists
};

/// A loaded version: what a request holds while it runs.
struct LoadedVersion {
  std::string model_name;
  std::int64_t version = 0;
  Manifest manifest;
  std::unique_ptr<Servable> servable;
  std::unique_ptr<Batcher> batcher;  ///< null without batching

  /// Runs the model, through the batcher when there is one.
  std::vector<HostTensor> run(std::vector<HostTensor> inputs, std::chrono::steady_clock::time_point deadline,
                              Metrics* metrics) const {
    if (batcher) return batcher->run(std::move(inputs), deadline);
    if (std::chrono::steady_clock::now() > deadline) {
      throw ServingError(504, "DEADLINE_EXCEEDED", "the request's deadline passed before it ran");
    }
    const std::int64_t rows = inputs.empty() || inputs[0].shape.empty() ? 1 : inputs[0].shape[0];
    auto out = servable->run(inputs);
    if (metrics != nullptr) metrics->batch(model_name, rows);
    return out;
  }
};


/// One configured model: its versions, their states, and the ones requests may use.
class ServedModel {
 public:
  ServedModel(ModelConfig config, const ModelRegistry& registry, std::optional<BatchingParameters> batching, Metrics* metrics)
      : config_(std::move(config)), registry_(registry), batching_(batching), metrics_(metrics) {}

  const ModelConfig& config() const { return config_; }

  /// Brings the loaded versions in line with the base path and the policy (see the file comment).
  void poll() {
    std::vector<std::int64_t> on_disk;
    try {
      on_disk = list_versions(config_.base_path);
    } catch (const std::exception&) {
      on_disk.clear();  // an unreadable base path: keep serving what is loaded
      return;
    }
    std::vector<std::int64_t> candidates;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto v : on_disk) {
        if (failed_.count(v) == 0) candidates.push_back(v);
      }
    }
    const std::vector<std::int64_t> wanted = apply_policy(candidates);
    for (auto v : wanted) {
      bool loaded;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        loaded = available_.count(v) != 0;
        if (!loaded) status_[v] = {v, VersionState::loading, "OK", ""};
      }
      if (!loaded) load(v);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    bool any_wanted_available = false;
    for (auto v : wanted) any_wanted_available = any_wanted_available || available_.count(v) != 0;
    for (auto it = available_.begin(); it != available_.end();) {
      const std::int64_t v = it->first;
      const bool is_wanted = std::find(wanted.begin(), wanted.end(), v) != wanted.end();
      const bool gone = std::find(on_disk.begin(), on_disk.end(), v) == on_disk.end();
      if (!is_wanted && (any_wanted_available || gone)) {
        status_[v].state = VersionState::unloading;
        unloading_.push_back(std::move(it->second));
        it = available_.erase(it);
      } else {
        ++it;
      }
    }
    // A version that was unloading has ended once no request holds it any more.
    for (auto it = unloading_.begin(); it != unloading_.end();) {
      if (it->use_count() == 1) {
        status_[(*it)->version].state = VersionState::end;
        it = unloading_.erase(it);
      } else {
        ++it;
      }
    }
    if (metrics_ != nullptr) metrics_->loaded_versions(config_.name, int(available_.size()));
  }

  /// The version a request names: `version` when given, else the label's, else the newest available.
  std::shared_ptr<const LoadedVersion> resolve(std::optional<std::int64_t> version, const std::string& label) const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!label.empty()) {
      const auto l = config_.labels.find(label);
      if (l == config_.labels.end()) throw not_found("Unrecognized servable version label: " + label);
      version = l->second;
    }
    if (version) {
      const auto it = available_.find(*version);
      if (it == available_.end()) {
        throw not_found("Servable not found for request: Specific(" + config_.name + ", " + std::to_string(*version) + ")");
      }
      return it->second;
    }
    if (available_.empty()) throw not_found("Servable not found for request: Latest(" + config_.name + ")");
    return available_.rbegin()->second;
  }

  /// Every version seen, newest first (TensorFlow Serving's model status order).
  std::vector<VersionStatus> statuses() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<VersionStatus> out;
    for (auto it = status_.rbegin(); it != status_.rend(); ++it) out.push_back(it->second);
    return out;
  }
  std::vector<std::int64_t> available_versions() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::int64_t> out;
    for (const auto& [v, loaded] : available_) out.push_back(v);
    return out;
  }
  bool ready() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return !available_.empty();
  }

 private:
  std::vector<std::int64_t> apply_policy(const std::vector<std::int64_t>& versions) const {
    const auto& p = config_.policy;
    switch (p.kind) {
      case VersionPolicy::Kind::all: return versions;
      case VersionPolicy::Kind::specific: {
        std::vector<std::int64_t> out;
        for (auto v : versions) {
          if (std::find(p.versions.begin(), p.versions.end(), v) != p.versions.end()) out.push_back(v);
        }
        return out;
      }
      case VersionPolicy::Kind::latest:
      default: {
        const std::size_t n = std::min(versions.size(), std::size_t(std::max<std::int64_t>(p.num_versions, 1)));
        return std::vector<std::int64_t>(versions.end() - std::ptrdiff_t(n), versions.end());
      }
    }
  }

  void load(std::int64_t v) {
    const std::string dir = config_.base_path + "/" + std::to_string(v);
    auto loaded = std::make_shared<LoadedVersion>();
    loaded->model_name = config_.name;
    loaded->version = v;
    std::string code = "OK", message;
    try {
      loaded->servable = detail::load_servable(registry_, dir, loaded->manifest);
      if (batching_) {
        bool batchable = true;
        for (const auto& spec : loaded->manifest.signature.inputs) batchable = batchable && !spec.shape.empty() && spec.shape[0] < 0;
        loaded->batcher = std::make_unique<Batcher>(*loaded->servable, *batching_, batchable, config_.name, metrics_);
      }
    } catch (const io_error& e) {
      code = "DATA_LOSS";
      message = e.what();
    } catch (const std::exception& e) {
      code = "INVALID_ARGUMENT";
      message = dir + ": " + e.what();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (code == "OK") {
      available_[v] = std::move(loaded);
      status_[v] = {v, VersionState::available, "OK", ""};
    } else {
      failed_.insert(v);
      status_[v] = {v, VersionState::end, code, message};
    }
  }

  const ModelConfig config_;
  const ModelRegistry& registry_;
  const std::optional<BatchingParameters> batching_;
  Metrics* metrics_;
  mutable std::mutex mutex_;
  std::map<std::int64_t, std::shared_ptr<const LoadedVersion>> available_;
  std::vector<std::shared_ptr<const LoadedVersion>> unloading_;
  std::map<std::int64_t, VersionStatus> status_;
  std::set<std::int64_t> failed_;
};

/// Every configured model, polled by one background thread.
class ModelManager {
 public:
  ModelManager(const ModelRegistry& registry, const std::vector<ModelConfig>& configs,
               std::optional<BatchingParameters> batching, Metrics* metrics) {
    for (const auto& c : configs) {
      if (c.name.empty() || c.name.find_first_of("/:") != std::string::npos) {
        throw value_error("model name '" + c.name + "' cannot be served: names are non-empty and hold no '/' or ':'");
      }
      if (models_.count(c.name) != 0) throw value_error("model " + c.name + " is configured twice");
      models_.emplace(c.name, std::make_unique<ServedModel>(c, registry, batching, metrics));
    }
  }
  ~ModelManager() { stop_polling(); }
  ModelManager(const ModelManager&) = delete;
  ModelManager& operator=(const ModelManager&) = delete;

  /// Polls every model once, now (one poll at a time: the poller thread's and a caller's).
  void poll() {
    std::lock_guard<std::mutex> lock(poll_mutex_);
    for (auto& [name, m] : models_) m->poll();
  }
  /// Polls every `period` on a background thread (a period of zero: never).
  void start_polling(std::chrono::milliseconds period) {
    if (period.count() <= 0 || poller_.joinable()) return;
    poller_ = std::thread([this, period] {
      std::unique_lock<std::mutex> lock(mutex_);
      while (!stop_) {
        if (wake_.wait_for(lock, period, [&] { return stop_; })) break;
        lock.unlock();
        poll();
        lock.lock();
      }
    });
  }
  void stop_polling() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    if (poller_.joinable()) poller_.join();
  }

  /// The model called `name`; ServingError 404 when none is configured.
  const ServedModel& model(const std::string& name) const {
    const auto it = models_.find(name);
    if (it == models_.end()) throw not_found("Could not find any versions of model " + name);
    return *it->second;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, m] : models_) out.push_back(name);
    return out;
  }
  bool all_ready() const {
    for (const auto& [name, m] : models_) {
      if (!m->ready()) return false;
    }
    return true;
  }

 private:
  std::map<std::string, std::unique_ptr<ServedModel>> models_;
  std::mutex poll_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread poller_;
};

}  // namespace tessera::serve
