// tessera::summary::Writer: TensorBoard summaries -- scalars, histograms, images, audio, text,
// hyperparameter sessions and graphs -- written to an event file in a run directory, the files
// TensorBoard reads (`tensorboard --logdir runs`). The API follows torch.utils.tensorboard's
// SummaryWriter; the encodings are the ones TensorBoard's own writers produce (see
// shared/specs/tensorboard-events.md): legacy simple_value/histo/image/audio values, and plugin
// tensors for text and hparams.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "tessera/expr/shape_ops.hpp"
#include "tessera/io/event_writer.hpp"
#include "tessera/io/png.hpp"
#include "tessera/io/protobuf.hpp"
#include "tessera/io/wav.hpp"

namespace tessera::summary {

using WriterOptions = io::EventWriterOptions;

/// Where an image's channels are: [H, W, C] (TensorFlow) or [C, H, W] (PyTorch, tessera's conv
/// layout). A rank-4 batch is [N, H, W, C] or [N, C, H, W] respectively.
enum class ImageLayout { HWC, CHW };

/// One hyperparameter's value: a number, a string or a bool (the HParams dashboard's three types).
class HParamValue {
 public:
  enum class Kind { number, string, boolean };
  /// Any number (int, size_t, float, double, ...): implicit, for {{"lr", 0.1}, {"batch", 64}}.
  template <class N, std::enable_if_t<std::is_arithmetic_v<N> && !std::is_same_v<N, bool>, int> = 0>
  HParamValue(N v) : kind_(Kind::number), number_(double(v)) {}              // NOLINT
  HParamValue(bool v) : kind_(Kind::boolean), boolean_(v) {}                  // NOLINT
  HParamValue(std::string v) : kind_(Kind::string), string_(std::move(v)) {}  // NOLINT
  HParamValue(std::string_view v) : HParamValue(std::string(v)) {}            // NOLINT
  HParamValue(const char* v) : HParamValue(std::string(v)) {}                 // NOLINT: not a bool
  Kind kind() const noexcept { return kind_; }
  double number() const noexcept { return number_; }
  const std::string& string() const noexcept { return string_; }
  bool boolean() const noexcept { return boolean_; }

 private:
  Kind kind_;
  double number_ = 0;
  std::string string_;
  bool boolean_ = false;
};

/// A run's hyperparameters by name.
using HParams = std::map<std::string, HParamValue>;

/// How a hyperparameter session ended (tensorboard.hparams.Status).
enum class SessionStatus { unknown = 0, success = 1, failure = 2, running = 3 };

namespace detail {

using io::proto::Message;

/// TF1's default histogram bucket limits: +-1e-12 * 1.1^k up to 1e20, then +-DBL_MAX, and 0.
inline const std::vector<double>& default_bucket_limits() {
  static const std::vector<double> limits = [] {
    std::vector<double> positive;
    for (double v = 1e-12; v < 1e20; v *= 1.1) positive.push_back(v);
    positive.push_back(DBL_MAX);
    std::vector<double> all;
    all.reserve(2 * positive.size() + 1);
    for (auto it = positive.rbegin(); it != positive.rend(); ++it) all.push_back(-*it);
    all.push_back(0.0);
    all.insert(all.end(), positive.begin(), positive.end());
    return all;
  }();
  return limits;
}

/// HistogramProto of the finite values (NaN and infinities are left out), with TensorFlow's
/// encoding: runs of empty buckets merged into the last of the run.
TESSERA_OUT_OF_LINE Message histogram_proto(const std::vector<double>& values);

/// SummaryMetadata naming a plugin (plugin_data {plugin_name, content}) and the data class.
TESSERA_OUT_OF_LINE Message plugin_metadata(const std::string& plugin, const std::string& content, int data_class);

/// The elements of any expression as doubles, in row-major order.
template <class E>
std::vector<double> to_doubles(const E& e) {
  const auto t = tessera::detail::value_of(e).template to<cpu>().contiguous();  // device values: copied
  return std::vector<double>(t.data(), t.data() + t.size());
}

/// A byte per element: floating point scaled from [0, 1], integers taken as they are; clipped.
template <class T>
std::uint8_t to_pixel(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    if (!(v == v)) return 0;
    return static_cast<std::uint8_t>(std::lround(std::clamp(double(v), 0.0, 1.0) * 255.0));
  } else {
    return static_cast<std::uint8_t>(std::clamp<long long>(static_cast<long long>(v), 0, 255));
  }
}

}  // namespace detail

/// Writes summaries for one run directory. Thread-safe; movable; flushed in the background every
/// options.flush_seconds, on flush() and when destroyed. Every write error -- unwritable
/// directory, full disk -- is an io_error naming the path.
class Writer {
 public:
  /// A new event file in `log_dir` (created with its parents).
  TESSERA_OUT_OF_LINE explicit Writer(const std::string& log_dir, WriterOptions options = {});

  const std::string& log_dir() const noexcept { return log_dir_; }
  /// The event file's path.
  const std::string& file_path() const { return file_->path(); }

  /// A scalar (TensorBoard's Scalars tab).
  TESSERA_OUT_OF_LINE void scalar(const std::string& tag, double value, std::int64_t step,
                                  double wall_time = io::wall_time_now());

  /// A histogram of the values (Histograms and Distributions tabs), in TensorFlow's default
  /// buckets; NaN and infinite values are left out. `values`: any tensor or expression.
  template <class E>
  void histogram(const std::string& tag, const E& values, std::int64_t step, double wall_time = io::wall_time_now()) {
    histogram(tag, detail::to_doubles(values), step, wall_time);
  }
  TESSERA_OUT_OF_LINE void histogram(const std::string& tag, const std::vector<double>& values, std::int64_t step,
                                     double wall_time = io::wall_time_now());

  /// An image (Images tab): [H, W] gray, [H, W, C] or [C, H, W] with C = 1 (gray), 2 (gray+alpha),
  /// 3 (RGB) or 4 (RGBA), or a batch [N, ...] laid out as a grid of up to 8 columns. Floating-point
  /// values are in [0, 1], integers in [0, 255]; values outside are clipped.
  template <class E>
  void image(const std::string& tag, const E& img, std::int64_t step, ImageLayout layout = ImageLayout::HWC,
             double wall_time = io::wall_time_now()) {
    constexpr std::size_t R = rank_v<E>;
    static_assert(R >= 2 && R <= 4, "tessera::summary::Writer::image: the image must be of rank 2, 3 or 4");
    const auto t = tessera::detail::value_of(img).template to<cpu>().contiguous();
    const auto s = t.shape();
    index_t n = 1, c = 1, h, w;
    if constexpr (R == 2) {
      h = s[0], w = s[1];
    } else if constexpr (R == 3) {
      layout == ImageLayout::HWC ? (h = s[0], w = s[1], c = s[2]) : (c = s[0], h = s[1], w = s[2]);
    } else {
      n = s[0];
      layout == ImageLayout::HWC ? (h = s[1], w = s[2], c = s[3]) : (c = s[1], h = s[2], w = s[3]);
    }
    if (c < 1 || c > 4 || h < 1 || w < 1 || n < 1) {
      throw shape_error("summary image '" + tag + "': shape " + shape_to_string(s) +
                        " is not an image of 1 to 4 channels in the given layout");
    }
    const index_t cols = std::min<index_t>(n, 8), rows = (n + cols - 1) / cols;
    if (w > 1000000 / cols || h > 1000000 / rows) {  // libpng's default limit per side
      throw shape_error("summary image '" + tag + "': " + shape_to_string(s) + " makes an image over 1,000,000 pixels wide or high");
    }
    const index_t width = w * cols, height = h * rows;
    std::vector<std::uint8_t> pixels(std::size_t(width * height * c), 0);
    const auto* data = t.data();
    for (index_t k = 0; k < n; ++k) {
      const index_t y0 = (k / cols) * h, x0 = (k % cols) * w;
      for (index_t ch = 0; ch < c; ++ch)
        for (index_t y = 0; y < h; ++y)
          for (index_t x = 0; x < w; ++x) {
            const index_t src = layout == ImageLayout::HWC ? ((k * h + y) * w + x) * c + ch : ((k * c + ch) * h + y) * w + x;
            pixels[std::size_t(((y0 + y) * width + x0 + x) * c + ch)] = detail::to_pixel(data[src]);
          }
    }
    detail::Message image;
    image.int64(1, height).int64(2, width).int64(3, c);
    image.bytes(4, io::encode_png(pixels, std::uint32_t(width), std::uint32_t(height), int(c)));
    detail::Message v;
    v.bytes(1, tag).message(4, image);
    write_value(v, step, wall_time);
  }

  /// Audio (Audio tab): [frames] mono or [frames, channels], samples in [-1, 1], stored as 16-bit WAV.
  template <class E>
  void audio(const std::string& tag, const E& samples, double sample_rate, std::int64_t step,
             double wall_time = io::wall_time_now()) {
    constexpr std::size_t R = rank_v<E>;
    static_assert(R == 1 || R == 2, "tessera::summary::Writer::audio: samples must be [frames] or [frames, channels]");
    const auto t = tessera::detail::value_of(samples).template to<cpu>().contiguous();
    const index_t frames = t.shape()[0];
    const index_t channels = R == 2 ? t.shape()[R - 1] : 1;
    if (!(sample_rate > 0) || sample_rate > 1e9 || channels < 1 || channels > 32767) {
      throw value_error("summary audio '" + tag + "': needs a sample rate in (0, 1e9] Hz and 1 to 32767 channels");
    }
    std::vector<float> pcm(t.data(), t.data() + t.size());
    detail::Message audio;
    audio.float32(1, float(sample_rate)).int64(2, channels).int64(3, frames);
    audio.bytes(4, io::encode_wav(pcm, std::uint32_t(std::lround(sample_rate)), std::uint16_t(channels)));
    audio.bytes(5, "audio/wav");
    detail::Message v;
    v.bytes(1, tag).message(6, audio);
    write_value(v, step, wall_time);
  }

  /// Markdown text (Text tab): a rank-0 string tensor under the "text" plugin.
  TESSERA_OUT_OF_LINE void text(const std::string& tag, const std::string& markdown, std::int64_t step,
                                double wall_time = io::wall_time_now());

  /// A graph for the Graphs tab: anything with `to_graph_def()` (io::Graph from io/graph.hpp), or
  /// the bytes of a serialized GraphDef.
  template <class G>
  void graph(const G& g, double wall_time = io::wall_time_now()) {
    graph_def(g.to_graph_def(), wall_time);
  }
  TESSERA_OUT_OF_LINE void graph_def(const std::string& serialized, double wall_time = io::wall_time_now());

  /// Starts a hyperparameter session (HParams tab): this run's hyperparameters, and the metric
  /// tags to show beside them (scalars this run writes, e.g. "val_accuracy"). `group` names a
  /// session group (runs of one configuration); empty: the run itself.
  TESSERA_OUT_OF_LINE void hparams_start(const HParams& hparams, const std::vector<std::string>& metric_tags = {},
                                         const std::string& group = "", double wall_time = io::wall_time_now());

  /// Ends the session started by hparams_start.
  TESSERA_OUT_OF_LINE void hparams_end(SessionStatus status = SessionStatus::success,
                                       double wall_time = io::wall_time_now());

  /// A whole session at once, as torch's add_hparams: the hyperparameters, each metric as a
  /// scalar at step 0, and a successful end. Grid search: one Writer (run directory) per configuration.
  TESSERA_OUT_OF_LINE void hparams(const HParams& hparams, const std::map<std::string, double>& metrics);

  /// Marks a restart at `step` (training resumed from a checkpoint): TensorBoard then discards this
  /// run's events at steps >= `step` written before the mark, as for TensorFlow's SessionLog START
  /// (torch's `purge_step`), so a resumed run shows no doubled curves.
  TESSERA_OUT_OF_LINE void restart_at(std::int64_t step, double wall_time = io::wall_time_now());

  /// Writes what is buffered and syncs it to disk.
  void flush() { file_->flush(); }
  /// Flushes and closes the file; later writes throw io_error.
  void close() { file_->close(); }

 private:
  TESSERA_OUT_OF_LINE void write_value(const detail::Message& value, std::int64_t step, double wall_time);
  TESSERA_OUT_OF_LINE void write_hparams(const std::string& tag, const detail::Message& plugin_data, double wall_time);

  std::string log_dir_;
  std::unique_ptr<io::EventFileWriter> file_;
};

#if TESSERA_OUT_OF_LINE_DEFINITIONS

TESSERA_OUT_OF_LINE detail::Message detail::histogram_proto(const std::vector<double>& values) {
  const auto& limits = default_bucket_limits();
  std::vector<double> counts(limits.size(), 0.0);
  double lo = DBL_MAX, hi = -DBL_MAX, num = 0, sum = 0, sum_squares = 0;
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    const auto b = std::upper_bound(limits.begin(), limits.end(), v) - limits.begin();
    counts[std::size_t(std::min<std::ptrdiff_t>(b, std::ptrdiff_t(limits.size()) - 1))] += 1;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    num += 1;
    sum += v;
    sum_squares += v * v;
  }
  if (num == 0) lo = hi = 0;
  std::vector<double> out_limits, out_counts;
  for (std::size_t i = 0; i < limits.size();) {
    double end = limits[i], count = counts[i];
    ++i;
    if (count <= 0) {
      while (i < limits.size() && counts[i] <= 0) end = limits[i++];
    }
    out_limits.push_back(end);
    out_counts.push_back(count);
  }
  Message h;
  h.float64(1, lo).float64(2, hi).float64(3, num).float64(4, sum).float64(5, sum_squares);
  h.packed_float64(6, out_limits).packed_float64(7, out_counts);
  return h;
}

TESSERA_OUT_OF_LINE detail::Message detail::plugin_metadata(const std::string& plugin, const std::string& content,
                                                            int data_class) {
  Message plugin_data;
  plugin_data.bytes(1, plugin);
  if (!content.empty()) plugin_data.bytes(2, content);
  Message meta;
  meta.message(1, plugin_data);
  if (data_class != 0) meta.uint(4, std::uint64_t(data_class));
  return meta;
}

TESSERA_OUT_OF_LINE Writer::Writer(const std::string& log_dir, WriterOptions options)
    : log_dir_(log_dir), file_(std::make_unique<io::EventFileWriter>(log_dir, std::move(options))) {}

TESSERA_OUT_OF_LINE void Writer::scalar(const std::string& tag, double value, std::int64_t step, double wall_time) {
  detail::Message v;
  v.bytes(1, tag).float32(2, static_cast<float>(value));
  write_value(v, step, wall_time);
}

TESSERA_OUT_OF_LINE void Writer::histogram(const std::string& tag, const std::vector<double>& values, std::int64_t step,
                                           double wall_time) {
  detail::Message v;
  v.bytes(1, tag).message(5, detail::histogram_proto(values));
  write_value(v, step, wall_time);
}

TESSERA_OUT_OF_LINE void Writer::text(const std::string& tag, const std::string& markdown, std::int64_t step,
                                      double wall_time) {
  detail::Message shape, tensor;
  tensor.uint(1, 7).message(2, shape).bytes(8, markdown);  // DT_STRING, shape []
  detail::Message v;
  v.bytes(1, tag).message(9, detail::plugin_metadata("text", "", 2)).message(8, tensor);
  write_value(v, step, wall_time);
}

TESSERA_OUT_OF_LINE void Writer::graph_def(const std::string& serialized, double wall_time) {
  detail::Message event;
  event.float64(1, wall_time).bytes(4, serialized);
  file_->write_event(event.data());
}

TESSERA_OUT_OF_LINE void Writer::hparams_start(const HParams& hparams, const std::vector<std::string>& metric_tags,
                                               const std::string& group, double wall_time) {
  // The experiment lists the hyperparameters and metrics, so the dashboard need not guess them
  // from the scalars.
  detail::Message experiment;
  for (const auto& [name, value] : hparams) {
    detail::Message info;
    info.bytes(1, name).uint(4, value.kind() == HParamValue::Kind::string    ? 1
                                : value.kind() == HParamValue::Kind::boolean ? 2
                                                                             : 3);
    experiment.message(4, info);
  }
  for (const auto& tag : metric_tags) {
    detail::Message metric_name, info;
    metric_name.bytes(2, tag);
    info.message(1, metric_name);
    experiment.message(5, info);
  }
  write_hparams("_hparams_/experiment", detail::Message().message(2, experiment), wall_time);

  detail::Message start;
  for (const auto& [name, value] : hparams) {
    detail::Message proto_value;
    switch (value.kind()) {
      case HParamValue::Kind::number:
        proto_value.float64(2, value.number());
        break;
      case HParamValue::Kind::string:
        proto_value.bytes(3, value.string());
        break;
      case HParamValue::Kind::boolean:
        proto_value.boolean(4, value.boolean());
        break;
    }
    detail::Message entry;
    entry.bytes(1, name).message(2, proto_value);
    start.message(1, entry);
  }
  if (!group.empty()) start.bytes(4, group);
  start.float64(5, wall_time);
  write_hparams("_hparams_/session_start_info", detail::Message().message(3, start), wall_time);
}

TESSERA_OUT_OF_LINE void Writer::hparams_end(SessionStatus status, double wall_time) {
  detail::Message end;
  end.uint(1, std::uint64_t(status)).float64(2, wall_time);
  write_hparams("_hparams_/session_end_info", detail::Message().message(4, end), wall_time);
}

TESSERA_OUT_OF_LINE void Writer::hparams(const HParams& hparams, const std::map<std::string, double>& metrics) {
  std::vector<std::string> tags;
  for (const auto& m : metrics) tags.push_back(m.first);
  hparams_start(hparams, tags);
  for (const auto& [tag, value] : metrics) scalar(tag, value, 0);
  hparams_end(SessionStatus::success);
}

TESSERA_OUT_OF_LINE void Writer::restart_at(std::int64_t step, double wall_time) {
  detail::Message session_log, event;
  session_log.uint(1, 1);  // SessionLog.START
  event.float64(1, wall_time).int64(2, step).message(7, session_log);
  file_->write_event(event.data());
}

TESSERA_OUT_OF_LINE void Writer::write_value(const detail::Message& value, std::int64_t step, double wall_time) {
  detail::Message summary, event;
  summary.message(1, value);
  event.float64(1, wall_time).int64(2, step).message(5, summary);
  file_->write_event(event.data());
}

TESSERA_OUT_OF_LINE void Writer::write_hparams(const std::string& tag, const detail::Message& plugin_data,
                                               double wall_time) {
  detail::Message v;
  v.bytes(1, tag).message(9, detail::plugin_metadata("hparams", plugin_data.data(), 0));
  write_value(v, 0, wall_time);
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

}  // namespace tessera::summary
