// fit / evaluate / predict, in the spirit of Keras's Model.fit and TF.Learn's estimators.
//
//   auto loss = [](const auto& logits, const auto& labels) { return nn::cross_entropy(logits, labels); };
//   train::History h = train::fit(model, optimizer, loss, train_loader, test_loader,
//                                 {.epochs = 3, .callbacks = {&checkpoint, &early_stop}});
//   train::Evaluation e = train::evaluate(model, loss, test_loader, {.top_k = 5});
//   Tensor<float, 2> logits = train::predict(model, test_loader);
//
// The loaders yield (inputs, labels) batches (data::DataLoader does). Gradients come from
// tessera::value_and_grad, so the loss and model are any differentiable expressions. With integer
// labels and [batch, classes] outputs the metrics include accuracy (argmax); otherwise only loss.
//
// Data-parallel training: run one process per replica, give each a sharded loader and
// `.distributed = &data_parallel` (dist::DataParallel); fit then starts from rank 0's state,
// averages every step's gradients over the global batch and reports metrics over all ranks
// (docs/distributed.md).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/autodiff/grad.hpp"
#include "tessera/backend/cpu/device.hpp"  // metrics and predictions are host tensors
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/train/callbacks.hpp"
#include "tessera/train/distributed.hpp"

namespace tessera::train {

/// Per-epoch metrics of a fit run: history["loss"][e], history["val_accuracy"][e], ...
struct History {
  std::vector<int> epochs;                              ///< 0-based epoch numbers run
  std::map<std::string, std::vector<double>> metrics;   ///< one value per epoch in `epochs`

  const std::vector<double>& operator[](const std::string& name) const {
    const auto it = metrics.find(name);
    if (it == metrics.end()) throw value_error("History: no metric \"" + name + "\"");
    return it->second;
  }
  bool has(const std::string& name) const { return metrics.count(name) != 0; }
  /// Why fit stopped before its last epoch on its own account ("" otherwise; a callback that stops
  /// training, such as early stopping, says so itself): a non-finite loss, with where it was met.
  std::string stop_reason;
};

struct FitOptions {
  int epochs = 1;                 ///< train until this many epochs are done (Keras's `epochs`)
  int initial_epoch = 0;          ///< epochs already done (resuming): the loader continues from there
  std::int64_t initial_step = 0;  ///< batches already done (resuming; from io::TrainingProgress)
  int verbose = 1;                ///< 0: silent; 1: progress bar on a terminal, else a line per epoch
  /// (With an initializer, GCC accepts the member left out of a designated-initializer list.)
  std::vector<Callback*> callbacks = {};
  /// Data-parallel training over several processes (dist::DataParallel); nullptr: this process
  /// alone. Every rank calls fit with the same options; only rank 0 shows progress. Callbacks run
  /// on every rank (learning-rate schedules must): create the ones that write files on rank 0 only.
  Distributed* distributed = nullptr;
  /// Stop at the first batch whose loss is NaN or infinite (Keras's TerminateOnNaN), before that
  /// batch's update, and without the epoch's end: no epoch-end callback runs, so a checkpoint
  /// callback's file still holds the last complete epoch. History::stop_reason says where. (The
  /// model's parameters are those before the bad batch; batch-norm running statistics may already
  /// hold its values: reload the checkpoint to continue.)
  bool stop_on_nonfinite_loss = false;
};

struct EvaluateOptions {
  index_t top_k = 0;              ///< also report top-k accuracy when k > 1
  bool confusion_matrix = false;  ///< also count a [classes, classes] confusion matrix
};

/// What evaluate returns.
struct Evaluation {
  double loss = 0;            ///< mean over samples
  double accuracy = 0;        ///< classification only
  double top_k_accuracy = 0;  ///< when top_k > 1
  index_t samples = 0;
  /// confusion(true class, predicted class) counts, when asked for.
  Tensor<std::int64_t, 2> confusion;
  /// As a Logs map with Keras's names ("loss", "accuracy", "top_5_accuracy"), for callbacks.
  Logs logs(const std::string& prefix = "") const {
    Logs l{{prefix + "loss", loss}};
    if (classification) l[prefix + "accuracy"] = accuracy;
    if (top_k > 1) l[prefix + "top_" + std::to_string(top_k) + "_accuracy"] = top_k_accuracy;
    return l;
  }
  bool classification = false;
  index_t top_k = 0;
};

namespace detail {

template <class Batch>
const auto& batch_inputs(const Batch& b) {
  return std::get<0>(b);
}
template <class Batch>
const auto& batch_labels(const Batch& b) {
  static_assert(std::tuple_size_v<std::decay_t<Batch>> >= 2, "tessera::train: batches must be (inputs, labels, ...)");
  return std::get<1>(b);
}

/// A tensor's values where the host can read them: a copy from a device backend, the tensor
/// itself on the CPU. Metrics (argmax hits, loss sums) are computed on the host.
template <class T, std::size_t R, class B>
Tensor<T, R, cpu> on_host(const Tensor<T, R, B>& t) {
  return t.template to<cpu>();
}

/// The tensor type a model's output evaluates to.
template <class Model, class X>
using output_tensor_t = Tensor<value_type_t<decltype(std::declval<Model&>()(std::declval<const X&>()))>,
                               rank_v<decltype(std::declval<Model&>()(std::declval<const X&>()))>,
                               backend_t<decltype(std::declval<Model&>()(std::declval<const X&>()))>>;

template <class Out, class Labels>
inline constexpr bool is_classification_v =
    rank_v<Out> == 2 && rank_v<Labels> == 1 && std::is_integral_v<value_type_t<Labels>>;

/// Counts correct argmax predictions (and top-k hits, and confusion counts) of one batch.
template <class T, class L>
void count_hits(const Tensor<T, 2>& logits_in, const Tensor<L, 1>& labels, index_t k, index_t& correct, index_t& top_k_hits,
                Tensor<std::int64_t, 2>* confusion) {
  const Tensor<T, 2> logits = logits_in.contiguous();
  const index_t n = logits.shape()[0], classes = logits.shape()[1];
  if (labels.shape()[0] != n) throw shape_error("train: outputs and labels differ in batch size");
  const T* p = logits.data();
  for (index_t i = 0; i < n; ++i, p += classes) {
    const auto y = static_cast<index_t>(labels(i));
    index_t best = 0, above = 0;
    for (index_t c = 1; c < classes; ++c) {
      if (p[c] > p[best]) best = c;
    }
    if (best == y) ++correct;
    if (k > 1 && y >= 0 && y < classes) {
      for (index_t c = 0; c < classes; ++c) above += p[c] > p[y] ? 1 : 0;
      if (above < k) ++top_k_hits;
    }
    if (confusion) {
      if (y < 0 || y >= classes) {
        throw index_error("evaluate: label " + std::to_string(y) + " outside [0, " + std::to_string(classes) + ")");
      }
      (*confusion)(y, best) += 1;
    }
  }
}

template <class L, class = void>
inline constexpr bool has_set_epoch_v = false;
template <class L>
inline constexpr bool has_set_epoch_v<L, std::void_t<decltype(std::declval<L&>().set_epoch(std::uint64_t{}))>> = true;

template <class O, class = void>
inline constexpr bool has_named_state_v = false;
template <class O>
inline constexpr bool has_named_state_v<O, std::void_t<decltype(std::declval<O&>().named_state())>> = true;

/// The model's buffers (batch-norm statistics and counters) added to `b`.
template <class M>
void add_buffers(Buffers& b, M& model) {
  nn::for_each_buffer(model, [&](const std::string& name, auto& t) {
    if constexpr (exchangeable_v<value_type_t<std::decay_t<decltype(t)>>>) b.add(name, t);
  });
}

/// Makes every rank start where rank 0 is: parameters, buffers, the optimizer's state, step count
/// and learning rate, and the epoch and step to start from (rank 0 may have loaded a checkpoint
/// alone). Ranks whose loaders have another number of steps per epoch (other data) would pair
/// their collectives wrongly later: every rank throws here instead.
template <class Model, class Opt>
void start_from_rank0(Distributed& d, Model& model, Opt& optimizer, int& initial_epoch, std::int64_t& initial_step,
                      index_t steps_per_epoch) {
  Buffers b(d);
  nn::for_each_parameter(model, [&](const std::string& name, auto& t) { b.add(name, t); });
  add_buffers(b, model);
  std::vector<double> counters{double(initial_epoch), double(initial_step), 0, optimizer.lr(), double(steps_per_epoch)};
  if constexpr (has_named_state_v<Opt>) {
    optimizer.prepare(model);
    for (auto& s : optimizer.named_state()) b.add("optimizer." + s.name, s.value);
    counters[2] = double(optimizer.step_count());
  }
  Buffer c{counters.data(), counters.size(), Buffer::Kind::float64, "fit's counters"};
  std::vector<Buffer> all = b.buffers();
  all.push_back(c);
  d.broadcast(all);
  b.write_back();
  std::vector<double> differs{counters[4] != double(steps_per_epoch) ? 1.0 : 0.0};
  d.sum(differs);
  if (differs[0] > 0) {
    throw value_error("fit: the training loaders of the ranks differ in steps per epoch (this rank " + std::to_string(steps_per_epoch) +
                      ", rank 0 " + std::to_string(std::int64_t(counters[4])) +
                      "): every rank needs the same dataset, global batch size and shard count");
  }
  initial_epoch = int(counters[0]);
  initial_step = std::int64_t(counters[1]);
  optimizer.set_lr(counters[3]);
  if constexpr (has_named_state_v<Opt>) optimizer.set_step_count(std::int64_t(counters[2]));
}

/// The number of samples in a batch: its inputs' first extent (its labels' when the inputs are
/// not one tensor).
template <class X, class Y>
index_t samples_in(const X& x, const Y& y) {
  if constexpr (is_expr_v<X>) {
    return x.shape()[0];
  } else {
    return y.shape()[0];
  }
}

/// Lays out `arena`'s slots for the model's parameters, in parameter order (kept from the last
/// step when the parameters are the same tensors).
template <class M>
void lay_out_gradients(GradientArena& arena, M& model) {
  arena.begin_layout();
  nn::for_each_parameter(model, [&](const std::string&, const auto& t) { arena.add(t); });
  arena.end_layout();
}

/// Sums the ranks' gradients (each already weighted by its share of the global batch). Gradients
/// in consecutive slots of `arena` are marked joined, so that runs of them take one call.
template <class Grads>
void sum_gradients(Distributed& d, Grads& grads, std::int64_t step, const GradientArena& arena) {
  Buffers b(d);
  nn::for_each_parameter(grads, [&](const std::string& name, auto& t) { b.add(name, t); });
  std::vector<Buffer> buffers = b.buffers();
  for (std::size_t i = 0; i + 1 < buffers.size(); ++i) {
    buffers[i].joined_with_next =
        buffers[i].kind == buffers[i + 1].kind && arena.adjacent(buffers[i].data, buffers[i + 1].data);
  }
  d.sum_gradients(buffers, step);
  b.write_back();
}

/// Contiguous batches [n_i, ...] stacked into one tensor [rows, ...].
template <class Out>
Out stack_rows(const std::vector<Out>& parts, index_t rows) {
  auto shape = parts.at(0).shape();
  const index_t row = shape[0] == 0 ? 0 : parts[0].size() / shape[0];
  shape[0] = rows;
  auto out = Out::uninitialized(shape);
  auto* dst = out.data();
  for (const auto& p : parts) {
    std::copy(p.data(), p.data() + p.shape()[0] * row, dst);
    dst += p.shape()[0] * row;
  }
  return out;
}

}  // namespace detail

/// Loss (mean over samples), accuracy, top-k accuracy and confusion matrix of `model` on `loader`,
/// in evaluation mode (the model's mode is restored afterwards).
template <class Model, class Loss, class Loader>
Evaluation evaluate(Model& model, Loss&& loss, Loader& loader, const EvaluateOptions& o = {}) {
  nn::ModeGuard<Model> eval_mode(model, false);
  Evaluation e;
  e.top_k = o.top_k;
  double loss_sum = 0;
  index_t correct = 0, top_hits = 0;
  for (auto& batch : loader) {
    const auto& x = detail::batch_inputs(batch);
    const auto& y = detail::batch_labels(batch);
    using Out = detail::output_tensor_t<Model, std::decay_t<decltype(x)>>;
    const Out out = model(x);
    const index_t n = out.shape()[0];
    loss_sum += double(detail::on_host(Tensor<value_type_t<Out>, 0, backend_t<Out>>(loss(out, y)))()) * double(n);
    e.samples += n;
    if constexpr (detail::is_classification_v<Out, std::decay_t<decltype(y)>>) {
      e.classification = true;
      if (o.confusion_matrix && e.confusion.size() == 0) e.confusion = zeros<std::int64_t>({out.shape()[1], out.shape()[1]});
      detail::count_hits(detail::on_host(out), detail::on_host(y), o.top_k, correct, top_hits,
                         o.confusion_matrix ? &e.confusion : nullptr);
    }
  }
  if (e.samples == 0) throw value_error("evaluate: the loader yielded no samples");
  e.loss = loss_sum / double(e.samples);
  e.accuracy = double(correct) / double(e.samples);
  e.top_k_accuracy = double(top_hits) / double(e.samples);
  return e;
}

/// The model's outputs for every batch of `loader` (inputs only), stacked along the first axis into
/// a host (CPU) tensor, in evaluation mode.
template <class Model, class Loader>
auto predict(Model& model, Loader& loader) {
  nn::ModeGuard<Model> eval_mode(model, false);
  using X = std::decay_t<decltype(detail::batch_inputs(*loader.begin()))>;
  using Out = detail::output_tensor_t<Model, X>;
  std::vector<Tensor<value_type_t<Out>, rank_v<Out>, cpu>> parts;
  index_t rows = 0;
  for (auto& batch : loader) {
    parts.push_back(detail::on_host(Out(model(detail::batch_inputs(batch)))).contiguous());
    rows += parts.back().shape()[0];
  }
  if (parts.empty()) throw value_error("predict: the loader yielded no batches");
  return detail::stack_rows(parts, rows);
}

/// The model's outputs for inputs `x` (first axis: samples), `batch_size` samples at a time, in a
/// host (CPU) tensor.
template <class Model, class T, std::size_t R, class B>
auto predict(Model& model, const Tensor<T, R, B>& x, index_t batch_size = 256) {
  if (batch_size <= 0) throw value_error("predict: batch_size must be positive");
  nn::ModeGuard<Model> eval_mode(model, false);
  using Out = detail::output_tensor_t<Model, Tensor<T, R, B>>;
  std::vector<Tensor<value_type_t<Out>, rank_v<Out>, cpu>> parts;
  index_t rows = 0;
  for (index_t b = 0; b < x.shape()[0]; b += batch_size) {
    const Tensor<T, R, B> xb = x.slice(0, b, std::min(x.shape()[0], b + batch_size));
    parts.push_back(detail::on_host(Out(model(xb))).contiguous());
    rows += parts.back().shape()[0];
  }
  if (parts.empty()) throw value_error("predict: no samples");
  return detail::stack_rows(parts, rows);
}

struct NoValidation {};

/// Trains `model` with `optimizer` on the batches of `train_loader` for the epochs
/// [options.initial_epoch, options.epochs), minimizing loss(outputs, labels). After each epoch
/// the model is evaluated on `validation` (metrics "val_loss", "val_accuracy") unless it is
/// NoValidation. Returns the per-epoch metrics.
template <class Model, class Opt, class Loss, class Loader, class Validation,
          std::enable_if_t<!std::is_same_v<std::decay_t<Validation>, FitOptions>, int> = 0>
History fit(Model& model, Opt& optimizer, Loss&& loss, Loader& train_loader, Validation& validation,
            const FitOptions& o = {}) {
  if (o.initial_epoch < 0 || o.epochs < o.initial_epoch || o.initial_step < 0) {
    throw value_error("fit: need 0 <= initial_epoch <= epochs and initial_step >= 0 (got initial_epoch " +
                      std::to_string(o.initial_epoch) + ", epochs " + std::to_string(o.epochs) + ")");
  }
  Distributed* const dist = o.distributed;
  GradientArena gradient_arena;  // used with several processes only
  int initial_epoch = o.initial_epoch;
  std::int64_t initial_step = o.initial_step;
  if (dist) detail::start_from_rank0(*dist, model, optimizer, initial_epoch, initial_step, train_loader.size());
  std::vector<Callback*> callbacks;
  ProgressBar progress;
  if (o.verbose > 0 && (!dist || dist->rank() == 0)) callbacks.push_back(&progress);
  bool keep_gradients = false;
  for (auto* c : o.callbacks) {
    if (!c) throw value_error("fit: null callback");
    callbacks.push_back(c);
    keep_gradients = keep_gradients || c->wants_gradients();
  }

  TrainingContext ctx;
  ctx.epochs = o.epochs;
  ctx.epoch = initial_epoch;
  ctx.step = initial_step;
  ctx.steps_per_epoch = train_loader.size();
  ctx.learning_rate = [&optimizer] { return optimizer.lr(); };
  ctx.set_learning_rate = [&optimizer](double lr) { optimizer.set_lr(lr); };
  if constexpr (detail::has_set_epoch_v<Loader>) {
    train_loader.set_epoch(static_cast<std::uint64_t>(initial_epoch));
  }

  History history;
  for (auto* c : callbacks) c->on_train_begin(ctx);
  for (int epoch = initial_epoch; epoch < o.epochs && !ctx.stop_training; ++epoch) {
    ctx.epoch = epoch;
    ctx.batch = 0;
    ctx.samples = 0;
    ctx.epoch_seconds = 0;
    model.train();
    for (auto* c : callbacks) c->on_epoch_begin(ctx);
    const auto start = std::chrono::steady_clock::now();
    double loss_sum = 0;
    index_t correct = 0, unused_top = 0;
    bool classification = false;
    Logs running;
    for (auto& batch : train_loader) {
      const auto& x = detail::batch_inputs(batch);
      const auto& y = detail::batch_labels(batch);
      using Out = detail::output_tensor_t<Model, std::decay_t<decltype(x)>>;
      // Several processes: this rank's share of the global batch weights its loss, so that the
      // ranks' gradients sum to the gradient of the global batch's mean loss. Alone the weight is
      // 1, and multiplying by it changes no bit.
      double weight = 1;
      if (dist) {
        const index_t local = detail::samples_in(x, y);
        weight = double(local) / dist->global_samples(local, ctx.step);
      }
      Out outputs;
      // Several processes: the gradients go to one arena, so that the reduction sums runs of
      // them in place (docs/distributed.md, "Buckets").
      std::optional<GradientArena::Use> in_arena;
      if (dist) {
        detail::lay_out_gradients(gradient_arena, model);
        in_arena.emplace(gradient_arena);
      }
      auto [value, grads] = value_and_grad(
          [&](const auto& m) {
            auto out = m(x);
            // Evaluated inside the sweep's cache epoch: the loss reuses this buffer.
            outputs = Out(out);
            auto l = loss(out, y);
            return l * value_type_t<decltype(l)>(weight);
          },
          model);
      in_arena.reset();
      if (o.stop_on_nonfinite_loss) {
        const double v = double(detail::on_host(value)());
        std::vector<double> bad{std::isfinite(v) ? 0.0 : 1.0};
        if (dist) dist->sum(bad);  // every rank stops at the same batch
        if (bad[0] > 0) {
          history.stop_reason = "fit: stopped on a non-finite loss (" + std::string(std::isfinite(v) ? "on another rank" : std::isnan(v) ? "NaN" : "infinity") +
                                ") at epoch " + std::to_string(epoch) + ", batch " + std::to_string(ctx.batch) + " (step " +
                                std::to_string(ctx.step) + "), before its update";
          break;
        }
      }
      const index_t n = outputs.shape()[0];
      if (dist) detail::sum_gradients(*dist, std::get<0>(grads), ctx.step, gradient_arena);
      optimizer.step(model, std::get<0>(grads));
      if (keep_gradients) {
        auto kept = std::make_shared<std::decay_t<decltype(std::get<0>(grads))>>(std::get<0>(grads));
        ctx.visit_gradients = [kept](const auto& f) {
          nn::for_each_parameter(*kept, [&](const std::string& name, const auto& g) {
            const auto t = detail::on_host(g).contiguous();
            f(name, std::vector<double>(t.data(), t.data() + t.size()));
          });
        };
      }
      loss_sum += double(detail::on_host(value)()) / weight * double(n);
      ctx.samples += n;
      if constexpr (detail::is_classification_v<Out, std::decay_t<decltype(y)>>) {
        classification = true;
        detail::count_hits(detail::on_host(outputs), detail::on_host(y), 0, correct, unused_top, nullptr);
      }
      ++ctx.batch;
      ++ctx.step;
      ctx.epoch_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      running["loss"] = loss_sum / double(ctx.samples);
      if (classification) running["accuracy"] = double(correct) / double(ctx.samples);
      for (auto* c : callbacks) c->on_batch_end(ctx, running);
    }
    if (!history.stop_reason.empty()) {
      if (o.verbose > 0 && (!dist || dist->rank() == 0)) std::cerr << history.stop_reason << "\n";
      break;
    }
    if (ctx.samples == 0) throw value_error("fit: the training loader yielded no samples");
    Logs logs = running;
    // "seconds": the epoch's training time, without the validation pass.
    ctx.epoch_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (dist) {
      // The epoch's metrics over every rank's samples; buffers (batch-norm statistics, computed
      // from each rank's own samples) from rank 0, so that every replica evaluates the same model.
      std::vector<double> totals{loss_sum, double(correct), double(ctx.samples)};
      dist->sum(totals);
      logs["loss"] = totals[0] / totals[2];
      if (classification) logs["accuracy"] = totals[1] / totals[2];
      Buffers buffers(*dist);
      detail::add_buffers(buffers, model);
      dist->broadcast(buffers.buffers());
      buffers.write_back();
    }
    logs["seconds"] = ctx.epoch_seconds;
    if constexpr (!std::is_same_v<Validation, NoValidation>) {
      Evaluation e = evaluate(model, loss, validation);
      if (dist) {  // each rank evaluated its shard (or all of it): the mean over all those samples
        std::vector<double> totals{e.loss * double(e.samples), e.accuracy * double(e.samples), double(e.samples)};
        dist->sum(totals);
        e.loss = totals[0] / totals[2];
        e.accuracy = totals[1] / totals[2];
      }
      for (const auto& [k, v] : e.logs("val_")) logs[k] = v;
    }
    logs["lr"] = optimizer.lr();
    for (auto* c : callbacks) c->on_epoch_end(ctx, logs);
    if (dist) {  // a callback that stops one rank stops them all (the others would wait for it)
      std::vector<double> stop{ctx.stop_training ? 1.0 : 0.0};
      dist->sum(stop);
      ctx.stop_training = stop[0] > 0;
    }
    history.epochs.push_back(epoch);
    for (const auto& [k, v] : logs) history.metrics[k].push_back(v);
  }
  for (auto* c : callbacks) c->on_train_end(ctx);
  return history;
}

/// fit without validation data.
template <class Model, class Opt, class Loss, class Loader>
History fit(Model& model, Opt& optimizer, Loss&& loss, Loader& train_loader, const FitOptions& o = {}) {
  NoValidation none;
  return fit(model, optimizer, std::forward<Loss>(loss), train_loader, none, o);
}

}  // namespace tessera::train
