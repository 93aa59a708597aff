// Callbacks for train::fit, as in Keras: hooks at the start and end of training, of each epoch and
// after each batch, with the metrics so far ("loss", "accuracy", "val_loss", ...). Provided:
// EarlyStopping, ModelCheckpoint, LearningRateScheduler (any schedule of optim/schedule.hpp),
// PlateauScheduler (ReduceLROnPlateau), CSVLogger and ProgressBar (what fit prints). The
// TensorBoard callback is in train/tensorboard.hpp.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "tessera/io/checkpoint.hpp"

namespace tessera::train {

/// Named metrics of a batch or an epoch ("loss", "accuracy", "val_loss", "lr", ...).
using Logs = std::map<std::string, double>;

/// What callbacks see and may change while fit runs.
struct TrainingContext {
  int epoch = 0;                 ///< the current epoch, 0-based
  int epochs = 0;                ///< fit runs epochs [initial epoch, epochs)
  index_t batch = 0;             ///< batches done in the current epoch
  index_t steps_per_epoch = 0;   ///< batches per epoch
  std::int64_t step = 0;         ///< batches done since training began (optimizer steps)
  index_t samples = 0;           ///< samples seen in the current epoch
  double epoch_seconds = 0;      ///< time spent in the current epoch so far
  bool stop_training = false;    ///< set by a callback to end fit after this epoch
  std::function<double()> learning_rate;          ///< the optimizer's current learning rate
  std::function<void(double)> set_learning_rate;  ///< changes it
  /// Calls f(parameter name, its gradient's elements) for the last batch's gradients. Set by fit
  /// after each batch when a callback's wants_gradients() is true; empty otherwise.
  std::function<void(const std::function<void(const std::string&, const std::vector<double>&)>& f)> visit_gradients;
};

/// Base of every callback; override what you need.
class Callback {
 public:
  virtual ~Callback() = default;
  virtual void on_train_begin(TrainingContext&) {}
  virtual void on_epoch_begin(TrainingContext&) {}
  /// `logs`: the running means over the epoch so far ("loss", "accuracy").
  virtual void on_batch_end(TrainingContext&, const Logs&) {}
  /// `logs`: the epoch's metrics, validation included; a callback may add its own.
  virtual void on_epoch_end(TrainingContext&, Logs&) {}
  virtual void on_train_end(TrainingContext&) {}
  /// True if the callback reads TrainingContext::visit_gradients (fit then keeps the last batch's
  /// gradients alive until the next batch).
  virtual bool wants_gradients() const { return false; }
};

namespace detail {
/// Keras's "auto" mode: metrics named like accuracy grow, everything else (losses) shrinks.
inline bool metric_grows(const std::string& name) {
  return name.find("acc") != std::string::npos || name.find("auc") != std::string::npos;
}
TESSERA_OUT_OF_LINE double metric_of(const Logs& logs, const std::string& name, const char* who);

/// Tracks the best value of a metric.
class BestTracker {
 public:
  BestTracker(std::string monitor, double min_delta) : monitor_(std::move(monitor)), delta_(std::fabs(min_delta)) {
    grows_ = metric_grows(monitor_);
    best_ = grows_ ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  }
  /// Records v; true when it improves on the best by more than min_delta.
  bool improved(double v) {
    const bool better = grows_ ? v > best_ + delta_ : v < best_ - delta_;
    if (better) best_ = v;
    return better;
  }
  const std::string& monitor() const noexcept { return monitor_; }
  double best() const noexcept { return best_; }

 private:
  std::string monitor_;
  double delta_;
  bool grows_;
  double best_;
};
}  // namespace detail

struct EarlyStoppingOptions {
  std::string monitor = "val_loss";
  double min_delta = 0;  ///< smaller changes do not count as improvement
  int patience = 0;      ///< epochs without improvement tolerated before stopping (Keras's meaning)
};

/// Stops training when the monitored metric stops improving; optionally puts back the weights of
/// the best epoch at the end (construct with the model).
class EarlyStopping : public Callback {
 public:
  explicit EarlyStopping(EarlyStoppingOptions o = {}) : o_(o), best_(o.monitor, o.min_delta) {
    if (o.patience < 0) throw value_error("EarlyStopping: patience must not be negative");
  }
  /// Also restores the best epoch's weights (parameters and buffers) when training ends.
  template <class M>
  EarlyStopping(EarlyStoppingOptions o, M& model_to_restore) : EarlyStopping(std::move(o)) {
    snapshot_ = [&model_to_restore](io::SafetensorsFile& f) {
      f = io::SafetensorsFile();
      io::add_module(f, model_to_restore);
    };
    restore_ = [&model_to_restore](const io::SafetensorsFile& f) { io::load_module(f, model_to_restore); };
  }

  void on_train_begin(TrainingContext&) override {
    best_ = detail::BestTracker(o_.monitor, o_.min_delta);
    wait_ = 0;
    stopped_epoch_ = -1;
    have_best_ = false;
  }
  void on_epoch_end(TrainingContext& ctx, Logs& logs) override {
    if (best_.improved(detail::metric_of(logs, o_.monitor, "EarlyStopping"))) {
      wait_ = 0;
      best_epoch_ = ctx.epoch;
      if (snapshot_) {
        snapshot_(best_weights_);
        have_best_ = true;
      }
    } else if (++wait_ >= std::max(o_.patience, 1)) {
      ctx.stop_training = true;
      stopped_epoch_ = ctx.epoch;
    }
  }
  void on_train_end(TrainingContext&) override {
    if (restore_ && have_best_) restore_(best_weights_);
  }
  /// The epoch training stopped in (-1: it ran to the end).
  int stopped_epoch() const noexcept { return stopped_epoch_; }
  int best_epoch() const noexcept { return best_epoch_; }
  double best() const noexcept { return best_.best(); }

 private:
  EarlyStoppingOptions o_;
  detail::BestTracker best_;
  int wait_ = 0, stopped_epoch_ = -1, best_epoch_ = -1;
  std::function<void(io::SafetensorsFile&)> snapshot_;
  std::function<void(const io::SafetensorsFile&)> restore_;
  io::SafetensorsFile best_weights_;
  bool have_best_ = false;
};

struct ModelCheckpointOptions {
  std::string monitor = "val_loss";  ///< with save_best_only
  bool save_best_only = false;       ///< false: save after every epoch
};

/// Saves model, optimizer and progress (io::save_checkpoint) after every epoch, or only when the
/// monitored metric improves. "{epoch}" in the path becomes the 1-based epoch number.
template <class M, class Opt>
class ModelCheckpoint : public Callback {
 public:
  ModelCheckpoint(std::string path, M& model, Opt& optimizer, ModelCheckpointOptions o = {})
      : path_(std::move(path)), model_(model), opt_(optimizer), o_(o), best_(o.monitor, 0) {}

  void on_epoch_end(TrainingContext& ctx, Logs& logs) override {
    if (o_.save_best_only && !best_.improved(detail::metric_of(logs, o_.monitor, "ModelCheckpoint"))) return;
    std::string path = path_;
    const auto at = path.find("{epoch}");
    if (at != std::string::npos) path.replace(at, 7, std::to_string(ctx.epoch + 1));
    io::save_checkpoint(path, model_, opt_, {ctx.epoch + 1, ctx.step});
    last_saved_ = path;
  }
  /// The file written last (empty before the first save).
  const std::string& last_saved() const noexcept { return last_saved_; }

 private:
  std::string path_;
  M& model_;
  Opt& opt_;
  ModelCheckpointOptions o_;
  detail::BestTracker best_;
  std::string last_saved_;
};

/// Steps a learning-rate schedule (StepLR, ExponentialLR, CosineWithWarmup) once per epoch or once
/// per batch. When fit resumes (initial epoch/step > 0) the schedule continues from there.
template <class Schedule>
class LearningRateScheduler : public Callback {
 public:
  explicit LearningRateScheduler(Schedule& schedule, bool per_batch = false) : schedule_(schedule), per_batch_(per_batch) {}
  void on_train_begin(TrainingContext& ctx) override {
    schedule_.set_count(per_batch_ ? ctx.step : std::int64_t(ctx.epoch));
  }
  void on_batch_end(TrainingContext&, const Logs&) override {
    if (per_batch_) schedule_.step();
  }
  void on_epoch_end(TrainingContext&, Logs&) override {
    if (!per_batch_) schedule_.step();
  }

 private:
  Schedule& schedule_;
  bool per_batch_;
};

/// Feeds an epoch metric to optim::ReduceLROnPlateau.
template <class Plateau>
class PlateauScheduler : public Callback {
 public:
  PlateauScheduler(Plateau& plateau, std::string monitor = "val_loss") : plateau_(plateau), monitor_(std::move(monitor)) {}
  void on_epoch_end(TrainingContext&, Logs& logs) override {
    plateau_.step(detail::metric_of(logs, monitor_, "PlateauScheduler"));
  }

 private:
  Plateau& plateau_;
  std::string monitor_;
};

/// Appends one CSV row per epoch (epoch, then the metrics in name order) to a file, flushed each
/// epoch so a crash loses at most the current epoch.
class CSVLogger : public Callback {
 public:
  explicit CSVLogger(std::string path, bool append = false) : path_(std::move(path)), append_(append) {}
  TESSERA_OUT_OF_LINE void on_train_begin(TrainingContext&) override;
  TESSERA_OUT_OF_LINE void on_epoch_end(TrainingContext& ctx, Logs& logs) override;
  void on_train_end(TrainingContext&) override { out_.close(); }

 private:
  std::string path_;
  bool append_;
  std::ofstream out_;
  std::vector<std::string> columns_;
  bool header_written_ = false;
};

/// Calls the given functions (empty ones are skipped): a callback without a class.
struct LambdaCallback : Callback {
  std::function<void(TrainingContext&)> train_begin, epoch_begin, train_end;
  std::function<void(TrainingContext&, const Logs&)> batch_end;
  std::function<void(TrainingContext&, Logs&)> epoch_end;
  void on_train_begin(TrainingContext& c) override {
    if (train_begin) train_begin(c);
  }
  void on_epoch_begin(TrainingContext& c) override {
    if (epoch_begin) epoch_begin(c);
  }
  void on_batch_end(TrainingContext& c, const Logs& l) override {
    if (batch_end) batch_end(c, l);
  }
  void on_epoch_end(TrainingContext& c, Logs& l) override {
    if (epoch_end) epoch_end(c, l);
  }
  void on_train_end(TrainingContext& c) override {
    if (train_end) train_end(c);
  }
};

/// Progress output. On a terminal, a bar per epoch redrawn in place (steps, elapsed, ETA,
/// samples/s, running loss and accuracy); otherwise one plain line per epoch.
class ProgressBar : public Callback {
 public:
  /// `terminal`: draw the bar; by default, whether `out` is std::cout on a terminal.
  explicit ProgressBar(std::ostream& out = std::cout, int terminal = -1)
      : out_(out), terminal_(terminal >= 0 ? terminal != 0 : (&out == &std::cout && ::isatty(STDOUT_FILENO))) {}

  void on_epoch_begin(TrainingContext&) override { last_draw_ = -1; }
  TESSERA_OUT_OF_LINE void on_batch_end(TrainingContext& ctx, const Logs& logs) override;
  void on_epoch_end(TrainingContext& ctx, Logs& logs) override {
    out_ << (terminal_ ? "\r" : "") << line(ctx, logs, false) << (terminal_ ? "\033[K\n" : "\n") << std::flush;
  }

 private:
  TESSERA_OUT_OF_LINE static std::string line(const TrainingContext& ctx, const Logs& logs, bool running);

  std::ostream& out_;
  bool terminal_;
  double last_draw_ = -1;
};

#if TESSERA_OUT_OF_LINE_DEFINITIONS

TESSERA_OUT_OF_LINE double detail::metric_of(const Logs& logs, const std::string& name, const char* who) {
  const auto it = logs.find(name);
  if (it == logs.end()) {
    std::string known;
    for (const auto& [k, v] : logs) known += (known.empty() ? "" : ", ") + k;
    throw value_error(std::string(who) + ": no metric \"" + name + "\" in this epoch's logs (have: " + known + ")");
  }
  return it->second;
}

TESSERA_OUT_OF_LINE void CSVLogger::on_train_begin(TrainingContext&) {
  out_.open(path_, append_ ? std::ios::app : std::ios::trunc);
  if (!out_) throw io_error(path_ + ": cannot open for writing");
  columns_.clear();
  out_.seekp(0, std::ios::end);
  header_written_ = append_ && out_.tellp() > 0;
}

TESSERA_OUT_OF_LINE void CSVLogger::on_epoch_end(TrainingContext& ctx, Logs& logs) {
  if (columns_.empty()) {
    for (const auto& [k, v] : logs) columns_.push_back(k);
  }
  if (!header_written_) {
    out_ << "epoch";
    for (const auto& c : columns_) out_ << ',' << c;
    out_ << '\n';
    header_written_ = true;
  }
  out_ << ctx.epoch + 1;
  char buf[32];
  for (const auto& c : columns_) {
    const auto it = logs.find(c);
    if (it == logs.end()) {
      out_ << ',';
    } else {
      std::snprintf(buf, sizeof buf, "%.9g", it->second);
      out_ << ',' << buf;
    }
  }
  out_ << '\n';
  out_.flush();
  if (!out_) throw io_error(path_ + ": write failed");
}

TESSERA_OUT_OF_LINE void ProgressBar::on_batch_end(TrainingContext& ctx, const Logs& logs) {
  if (!terminal_) return;
  // Redraw at most ten times a second (and at the last batch).
  if (ctx.batch != ctx.steps_per_epoch && ctx.epoch_seconds - last_draw_ < 0.1) return;
  last_draw_ = ctx.epoch_seconds;
  out_ << '\r' << line(ctx, logs, true) << std::flush;
}

TESSERA_OUT_OF_LINE std::string ProgressBar::line(const TrainingContext& ctx, const Logs& logs, bool running) {
  char buf[160];
  std::string s;
  std::snprintf(buf, sizeof buf, "epoch %d/%d  %ld/%ld", ctx.epoch + 1, ctx.epochs, long(ctx.batch),
                long(ctx.steps_per_epoch));
  s += buf;
  if (running) {
    const int width = 20;
    const int filled = ctx.steps_per_epoch > 0 ? int(width * ctx.batch / ctx.steps_per_epoch) : width;
    s += " [" + std::string(std::size_t(filled), '=') + (filled < width ? ">" : "") +
         std::string(std::size_t(std::max(0, width - filled - 1)), ' ') + "]";
  }
  const double rate = ctx.epoch_seconds > 0 ? double(ctx.samples) / ctx.epoch_seconds : 0;
  std::snprintf(buf, sizeof buf, "  %.1fs", ctx.epoch_seconds);
  s += buf;
  if (running && ctx.batch > 0) {
    std::snprintf(buf, sizeof buf, "  ETA %.1fs",
                  ctx.epoch_seconds / double(ctx.batch) * double(ctx.steps_per_epoch - ctx.batch));
    s += buf;
  }
  std::snprintf(buf, sizeof buf, "  %.0f samples/s", rate);
  s += buf;
  for (const auto& [k, v] : logs) {
    if (k == "seconds") continue;
    std::snprintf(buf, sizeof buf, (k == "lr" ? "  %s %.3g" : "  %s %.4f"), k.c_str(), v);
    s += buf;
  }
  return s;
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

}  // namespace tessera::train
