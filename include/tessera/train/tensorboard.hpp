// The TensorBoard callback for train::fit (Keras's tf.keras.callbacks.TensorBoard): scalars per
// batch and per epoch, weight and gradient histograms per epoch, sample input images when training
// begins, a confusion matrix when it ends, and optionally an HParams session around the run.
//
//   summary::Writer writer("runs/mnist");
//   train::TensorBoard<decltype(model)> tensorboard(writer, model);
//   tensorboard.sample_images(first_inputs);                 // [N, C, H, W]
//   tensorboard.confusion_matrix_on(loss, test_loader);      // drawn when training ends
//   train::fit(model, opt, loss, train_loader, test_loader, {.epochs = 3, ..., .callbacks = {&tensorboard}});
//
// Every summary's step is the optimizer step (batches done since training began, resumes
// included), so batch and epoch curves share one x axis. batch/loss and batch/accuracy are the
// epoch's running means (what the progress bar shows, as in Keras); batch/lr is the rate when the
// callback runs -- list it before a per-batch LearningRateScheduler to log the rate the step used. Tags: "batch/loss", "batch/accuracy",
// "batch/lr", "epoch/<metric>" for every metric of the epoch's logs ("epoch/val_accuracy", ...),
// "weights/<parameter>", "gradients/<parameter>", "inputs", "confusion_matrix" (an image) and
// "confusion_matrix/counts" (a Markdown table).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <utility>

#include "tessera/core/config.hpp"
#include "tessera/core/factories.hpp"
#include "tessera/io/summary.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/train/callbacks.hpp"
#include "tessera/train/fit.hpp"

namespace tessera::train {

struct TensorBoardOptions {
  std::int64_t update_freq = 1;   ///< batch scalars every this many steps; 0: epoch scalars only
  bool histograms = true;         ///< weight and gradient histograms at the end of each epoch
  summary::HParams hparams = {};  ///< non-empty: the run is an HParams session with these values
};

/// An RGB image [rows * cell, cols * cell, 3] of a confusion matrix (rows: true class, columns:
/// predicted), each row normalized by its count: white for 0, dark blue for 1.
TESSERA_OUT_OF_LINE Tensor<float, 3> confusion_matrix_image(const Tensor<std::int64_t, 2>& counts, index_t cell = 16);

/// The confusion matrix as a Markdown table (for the Text tab: the exact counts).
TESSERA_OUT_OF_LINE std::string confusion_matrix_markdown(const Tensor<std::int64_t, 2>& counts);

/// Writes a fit run's summaries to a summary::Writer (see the top of this file).
template <class Model>
class TensorBoard : public Callback {
 public:
  TensorBoard(summary::Writer& writer, Model& model, TensorBoardOptions options = {})
      : writer_(writer), model_(model), options_(std::move(options)) {
    if (options_.update_freq < 0) throw value_error("TensorBoard: update_freq must be >= 0");
  }

  /// Images written as one grid when training begins (e.g. a batch of inputs, [N, C, H, W]).
  template <class E>
  void sample_images(const E& images, summary::ImageLayout layout = summary::ImageLayout::CHW) {
    auto value = tessera::detail::value_of(images).template to<cpu>().contiguous();
    write_images_ = [this, value, layout](std::int64_t step) { writer_.image("inputs", value, step, layout); };
  }

  /// Evaluates the model on `loader` when training ends and draws the confusion matrix.
  template <class Loss, class Loader>
  void confusion_matrix_on(Loss loss, Loader& loader) {
    confusion_ = [this, loss, &loader] {
      EvaluateOptions options;  // (the headers are C++17: no designated initializers)
      options.confusion_matrix = true;
      return evaluate(model_, loss, loader, options).confusion;
    };
  }

  bool wants_gradients() const override { return options_.histograms; }

  void on_train_begin(TrainingContext& ctx) override {
    // TensorBoard drops what this run directory holds from this step on: on resume, what the
    // interrupted run wrote after its checkpoint; on a fresh start (step 0), an older run's curves.
    writer_.restart_at(ctx.step);
    if (!options_.hparams.empty()) {
      writer_.hparams_start(options_.hparams, {"epoch/val_accuracy", "epoch/val_loss", "epoch/accuracy", "epoch/loss"});
    }
    if (write_images_) write_images_(ctx.step);
  }

  void on_batch_end(TrainingContext& ctx, const Logs& logs) override {
    if (options_.update_freq == 0 || ctx.step % options_.update_freq != 0) return;
    for (const auto& [name, value] : logs) writer_.scalar("batch/" + name, value, ctx.step);
    if (ctx.learning_rate) writer_.scalar("batch/lr", ctx.learning_rate(), ctx.step);
  }

  void on_epoch_end(TrainingContext& ctx, Logs& logs) override {
    for (const auto& [name, value] : logs) writer_.scalar("epoch/" + name, value, ctx.step);
    if (options_.histograms) {
      nn::for_each_parameter(model_, [&](const std::string& name, const auto& w) { writer_.histogram("weights/" + name, w, ctx.step); });
      if (ctx.visit_gradients) {
        ctx.visit_gradients([&](const std::string& name, const std::vector<double>& g) {
          writer_.histogram("gradients/" + name, g, ctx.step);
        });
      }
    }
    writer_.flush();
  }

  void on_train_end(TrainingContext& ctx) override {
    if (confusion_) {
      const auto counts = confusion_();
      if (counts.size() > 0) {
        writer_.image("confusion_matrix", confusion_matrix_image(counts), ctx.step);
        writer_.text("confusion_matrix/counts", confusion_matrix_markdown(counts), ctx.step);
      }
    }
    if (!options_.hparams.empty()) writer_.hparams_end(summary::SessionStatus::success);
    writer_.flush();
  }

 private:
  summary::Writer& writer_;
  Model& model_;
  TensorBoardOptions options_;
  std::function<void(std::int64_t)> write_images_;
  std::function<Tensor<std::int64_t, 2>()> confusion_;
};

#if TESSERA_OUT_OF_LINE_DEFINITIONS

TESSERA_OUT_OF_LINE Tensor<float, 3> confusion_matrix_image(const Tensor<std::int64_t, 2>& counts, index_t cell) {
  const index_t rows = counts.shape()[0], cols = counts.shape()[1];
  if (rows < 1 || cols < 1 || cell < 1) throw value_error("confusion_matrix_image: needs a non-empty matrix");
  Tensor<float, 3> img(Shape<3>{rows * cell, cols * cell, 3});
  static constexpr float dark[3] = {0.03f, 0.19f, 0.42f};
  for (index_t r = 0; r < rows; ++r) {
    double total = 0;
    for (index_t c = 0; c < cols; ++c) total += double(counts(r, c));
    for (index_t c = 0; c < cols; ++c) {
      const float share = total > 0 ? float(double(counts(r, c)) / total) : 0.0f;
      for (index_t y = 0; y < cell; ++y)
        for (index_t x = 0; x < cell; ++x) {
          const bool border = y == cell - 1 || x == cell - 1;  // thin grid lines between cells
          for (int ch = 0; ch < 3; ++ch) {
            const float v = 1.0f + share * (dark[ch] - 1.0f);
            img(r * cell + y, c * cell + x, ch) = border ? 0.8f * v : v;
          }
        }
    }
  }
  return img;
}

TESSERA_OUT_OF_LINE std::string confusion_matrix_markdown(const Tensor<std::int64_t, 2>& counts) {
  std::ostringstream md;
  md << "| true \\ predicted |";
  for (index_t c = 0; c < counts.shape()[1]; ++c) md << " " << c << " |";
  md << "\n|---|";
  for (index_t c = 0; c < counts.shape()[1]; ++c) md << "---|";
  md << "\n";
  for (index_t r = 0; r < counts.shape()[0]; ++r) {
    md << "| **" << r << "** |";
    for (index_t c = 0; c < counts.shape()[1]; ++c) md << " " << counts(r, c) << " |";
    md << "\n";
  }
  return md.str();
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

}  // namespace tessera::train
