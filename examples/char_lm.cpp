// A character-level language model trained on the text of Debian's `fortunes` package (and
// `fortunes-min`): the model reads a window of characters and predicts each next one. Training runs
// through train::fit with the same checkpoint, CSV log, TensorBoard run, progress bar and --resume
// as the main job (examples/fashion_mnist.cpp); after training the program samples text with a
// temperature and top-k, and completes a prompt by beam search.
//
//   char_lm [--model lstm|transformer] [--data DIR] [--out DIR] [--epochs N] [--steps S] [--batch B]
//           [--seq T] [--lr X] [--clip X] [--minutes M] [--threads T] [--seed S] [--limit-chars N]
//           [--embed E] [--hidden H] [--d-model D] [--heads H] [--feedforward F] [--dropout P]
//           [--prompt TEXT] [--samples N] [--sample-length L] [--temperature X] [--top-k K]
//           [--beam W] [--beam-length L] [--resume | --resume=CHECKPOINT] [--export DIR]
//           [--export-onnx PATH]
//
// --export DIR writes the trained model for tessera-serve as DIR/<next version>/ (architectures
// char_lstm and char_transformer, char_models.hpp: token ids [N, T] in, logits [N, T, 256] out).
// --export-onnx PATH writes it as an ONNX model: int64 token ids [batch, --seq] in, logits
// [batch, --seq, 256] out (the batch axis symbolic, the length --seq).
//
// Data. Every regular file of --data (default /usr/share/games/fortunes) except the `.dat` indexes,
// symbolic links (the `.u8` names) and files whose contents repeat an earlier file's, in name
// order. Fortunes are separated by lines holding only `%`; each fortune, followed by "%\n", goes
// to the validation text if it is the 20th, 40th, ... of the whole collection, else to the training
// text (a deterministic split by entry, about 5% of the characters). Characters are bytes, and the
// vocabulary is all 256 byte values (fixed: checkpoints do not depend on the data, and any prompt is
// valid input; bytes that never occur simply get probabilities near 0).
//
// Training. An epoch is --steps optimizer steps; each step is a batch of --batch windows of --seq + 1
// characters at random positions of the training text (truncated backpropagation through time:
// every window starts from a zero state), the loss the mean cross-entropy of the next character.
// Window positions depend only on --seed, the epoch and the step, so a resumed run sees the same
// windows as an uninterrupted one. Adam with the gradients clipped to a global norm (--clip), a
// linear warmup and a cosine decay of the learning rate to lr / 10 at the last step.
//
// Models. --model lstm (the default): an embedding of --embed features, a one-layer LSTM of
// --hidden units, a linear layer to the 256 bytes; learning rate 2e-2. --model transformer: a
// decoder-only transformer (GPT-style) of two pre-norm causal blocks (--d-model 128, --heads 4,
// --feedforward 512, GELU, --dropout 0), learned positions, a final LayerNorm, and the embedding
// table as the output projection (tied weights); learning rate 3e-3. --lr overrides either.
//
// Time budget. --minutes M (default 9; 0: none) bounds each invocation's training: fit stops only
// between epochs, so after each epoch the run stops if another epoch as long as the last one
// (validation included) would end more than M minutes after training began. It counts training
// and validation, not loading or generation; a resumed run gets a budget of its own, and a stopped
// run continues with --resume. With the defaults, the 10 epochs take about 6.5 minutes on the
// 2-core development machine and reach about 2.4 bits per character (README.md).
//
//   --limit-chars N  train on the first N characters of the training text and validate on the
//                    first max(N / 10, seq + 1) of the validation text (a quick smoke run)
//
// Validation, after each epoch: the mean negative log-likelihood of every character of the
// validation text (read in consecutive windows of --seq characters, each from a zero state, the
// last one shorter), in bits per character (nats / ln 2). Logged with the training loss (nats per
// character), the learning rate and the training throughput (characters per second) to
// <out>/log.csv and to TensorBoard (`tensorboard --logdir runs`); the checkpoint
// <out>/checkpoint.safetensors holds the model, Adam's state and the progress.
//
// Generation. Each step runs the model on the last --seq characters of the text so far (the window
// length it was trained on) and reads the distribution of the next character. Samples draw from
// softmax(logits / temperature) restricted to the top-k characters; the beam search keeps the
// --beam most probable continuations and stops at the end of the prompt's line (or after
// --beam-length characters). Both start from "%\n" + prompt: the beginning of a fortune.
//
// Ends with one machine-readable line (train_seconds: this invocation's training time without
// validation; chars_per_second: characters trained per second of it):
//   {"model": "lstm", "val_bits_per_char": 2.3826, "train_seconds": 152.2, "chars_per_second": 40371}
// (the defaults on the 2-core development machine; 2.8 minutes in all, with loading and generation)
//
// Adding a model: a module with the interface of CharLSTM below -- constructed from Options, a
// `name` (for --model and the result line), `hparams(options)` for TensorBoard, and `model(ids)`
// mapping int64 ids [N, T] to logits [N, T, 256] as an expression that value_and_grad can
// differentiate -- plus its flags in Options/parse and one branch in main() calling run<ThatModel>;
// data, training, validation, sampling and beam search are shared.
#include <tessera/tessera.hpp>

#include "char_models.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

using namespace tessera;

/// Every byte value is a character of the vocabulary.
using char_models::CharLSTM;
using char_models::CharTransformer;
constexpr index_t kVocab = char_models::vocab;
/// Every kValidationEvery-th fortune (the last of each group) goes to the validation text.
constexpr std::int64_t kValidationEvery = 20;
/// What precedes a fortune in the text: generation starts from it.
const std::string kFortuneStart = "%\n";

struct Options {
  std::string model = "lstm";
  std::string data = "/usr/share/games/fortunes";
  std::string out = "runs/char_lm";
  // Tuned on the 2-core development machine for the 10-minute budget: at a fixed time, many short
  // steps beat few long ones (seq 64 and lr 2e-2 reach in 800K characters what seq 128 and lr 3e-3
  // reach in 8M), and the throughput barely depends on the batch.
  int epochs = 10;
  index_t steps = 300;  // optimizer steps per epoch
  index_t batch = 32;
  index_t seq = 64;  // characters per training window (and the generation context)
  double lr = 0;  // 0: the model's default (lstm 2e-2, transformer 3e-3)
  double clip = 1.0;   // max global gradient norm; 0: no clipping
  double minutes = 9;  // training time budget; 0: none
  int threads = 0;     // 0: all cores
  std::uint64_t seed = 1;
  index_t limit_chars = 0;  // 0: all the text
  // lstm
  index_t embed = 64;
  index_t hidden = 256;
  // transformer (its own defaults for lr and seq apply unless given: see parse)
  index_t d_model = 128;
  index_t heads = 4;
  index_t feedforward = 512;
  double dropout = 0.0;
  // generation
  std::string prompt = "The ";
  index_t samples = 3;
  index_t sample_length = 300;
  double temperature = 0.8;
  index_t top_k = 20;  // 0: every character
  index_t beam = 4;
  index_t beam_length = 80;
  std::string resume;  // checkpoint to continue from ("" : start afresh)
  std::string export_dir;  // "": no export; else the trained model goes to <export_dir>/<next version>/
  std::string export_onnx;  // "": none; else the trained model as an ONNX file
};

/// The model sizes the flags ask for.
char_models::Sizes sizes_of(const Options& o) {
  char_models::Sizes s;
  s.embed = o.embed;
  s.hidden = o.hidden;
  s.d_model = o.d_model;
  s.heads = o.heads;
  s.feedforward = o.feedforward;
  s.dropout = o.dropout;
  s.seq = o.seq;
  return s;
}

const char* const usage =
    "usage: char_lm [--model lstm|transformer] [--data DIR] [--out DIR] [--epochs N] [--steps S] [--batch B]\n"
    "               [--seq T] [--lr X] [--clip X] [--minutes M] [--threads T] [--seed S] [--limit-chars N]\n"
    "               [--embed E] [--hidden H] [--d-model D] [--heads H] [--feedforward F] [--dropout P]\n"
    "               [--prompt TEXT] [--samples N] [--sample-length L]\n"
    "               [--temperature X] [--top-k K] [--beam W] [--beam-length L] [--resume | --resume=CHECKPOINT]\n"
    "               [--export DIR] [--export-onnx PATH]\n";

/// The whole of `text` as an integer or a floating-point number; the flag is named if it is not one.
template <class N>
N number(const std::string& flag, const std::string& text) {
  std::size_t used = 0;
  N v{};
  try {
    if constexpr (std::is_floating_point_v<N>) {
      v = N(std::stod(text, &used));
    } else if constexpr (std::is_unsigned_v<N>) {
      v = N(std::stoull(text, &used));  // which accepts "-1": rejected below
    } else {
      v = N(std::stoll(text, &used));
    }
  } catch (const std::exception&) {
    used = 0;
  }
  if (std::is_unsigned_v<N> && text.find('-') != std::string::npos) used = 0;
  if (used == 0 || used != text.size()) {
    throw std::invalid_argument(flag + " expects " + (std::is_floating_point_v<N> ? "a number" : "an integer") +
                                ", got \"" + text + "\"");
  }
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  bool resume = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    // One flag a line:
    // clang-format off
    if (a == "--model") o.model = value();
    else if (a == "--data") o.data = value();
    else if (a == "--out") o.out = value();
    else if (a == "--epochs") o.epochs = number<int>(a, value());
    else if (a == "--steps") o.steps = number<index_t>(a, value());
    else if (a == "--batch") o.batch = number<index_t>(a, value());
    else if (a == "--seq") o.seq = number<index_t>(a, value());
    else if (a == "--lr") o.lr = number<double>(a, value());
    else if (a == "--clip") o.clip = number<double>(a, value());
    else if (a == "--minutes") o.minutes = number<double>(a, value());
    else if (a == "--threads") o.threads = number<int>(a, value());
    else if (a == "--seed") o.seed = number<std::uint64_t>(a, value());
    else if (a == "--limit-chars") o.limit_chars = number<index_t>(a, value());
    else if (a == "--embed") o.embed = number<index_t>(a, value());
    else if (a == "--hidden") o.hidden = number<index_t>(a, value());
    else if (a == "--d-model") o.d_model = number<index_t>(a, value());
    else if (a == "--heads") o.heads = number<index_t>(a, value());
    else if (a == "--feedforward") o.feedforward = number<index_t>(a, value());
    else if (a == "--dropout") o.dropout = number<double>(a, value());
    else if (a == "--prompt") o.prompt = value();
    else if (a == "--samples") o.samples = number<index_t>(a, value());
    else if (a == "--sample-length") o.sample_length = number<index_t>(a, value());
    else if (a == "--temperature") o.temperature = number<double>(a, value());
    else if (a == "--top-k") o.top_k = number<index_t>(a, value());
    else if (a == "--beam") o.beam = number<index_t>(a, value());
    else if (a == "--beam-length") o.beam_length = number<index_t>(a, value());
    else if (a == "--export") o.export_dir = value();
    else if (a == "--export-onnx") o.export_onnx = value();
    else if (a == "--resume") resume = true;
    else if (a.rfind("--resume=", 0) == 0) o.resume = a.substr(9);
    // clang-format on
    else if (a == "--help" || a == "-h") {
      std::cout << usage;
      std::exit(0);
    } else {
      throw std::invalid_argument("unknown flag " + a + "\n" + usage);
    }
  }
  if (o.epochs < 1 || o.steps < 1 || o.batch < 1 || o.seq < 1 || !(o.lr >= 0) || o.embed < 1 || o.hidden < 1 ||
      o.d_model < 1 || o.heads < 1 || o.feedforward < 1) {
    throw std::invalid_argument(
        "--epochs, --steps, --batch, --seq, --lr, --embed, --hidden, --d-model, --heads and --feedforward must be positive");
  }
  if (o.d_model % o.heads != 0) throw std::invalid_argument("--d-model must be a multiple of --heads");
  if (!(o.dropout >= 0 && o.dropout < 1)) throw std::invalid_argument("--dropout must be in [0, 1)");
  if (!(o.clip >= 0) || !(o.minutes >= 0) || o.threads < 0 || o.limit_chars < 0 || o.top_k < 0) {
    throw std::invalid_argument("--clip, --minutes, --threads, --limit-chars and --top-k must not be negative");
  }
  if (!(o.temperature > 0)) throw std::invalid_argument("--temperature must be positive");
  if (o.samples < 0 || o.sample_length < 0 || o.beam < 0 || o.beam_length < 0) {
    throw std::invalid_argument("--samples, --sample-length, --beam and --beam-length must not be negative (0: skip)");
  }
  if (o.model != "lstm" && o.model != "transformer") {
    throw std::invalid_argument("--model must be lstm or transformer, got \"" + o.model + "\"");
  }
  if (resume && o.resume.empty()) o.resume = o.out + "/checkpoint.safetensors";
  return o;
}

// ---- data ----------------------------------------------------------------------------------------

struct Corpus {
  std::string train, validation;
  index_t files = 0, fortunes = 0;
};

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error(p.string() + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// The fortune files of `dir` split into training and validation text (see the top of the file).
Corpus load_corpus(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw std::runtime_error(dir +
                             ": no such directory (install Debian's fortunes package: apt-get install fortunes, "
                             "or pass --data DIR)");
  }
  std::vector<fs::path> paths;
  for (const auto& entry : fs::directory_iterator(dir)) {
    // The .u8 names are links to the same files; the .dat files are strfile's binary indexes.
    if (entry.is_symlink() || !entry.is_regular_file() || entry.path().extension() == ".dat") continue;
    paths.push_back(entry.path());
  }
  std::sort(paths.begin(), paths.end());  // a fixed order: the split does not depend on the file system

  Corpus c;
  std::unordered_map<std::size_t, std::vector<std::string>> seen;  // contents by hash: skip copies
  for (const auto& path : paths) {
    std::string text = read_file(path);
    auto& same_hash = seen[std::hash<std::string>{}(text)];
    if (std::find(same_hash.begin(), same_hash.end(), text) != same_hash.end()) continue;
    same_hash.push_back(text);
    ++c.files;
    // Fortunes end at a line holding only "%" (and at the end of the file).
    std::string fortune;
    std::istringstream lines(text);
    auto finish = [&] {
      if (fortune.find_first_not_of(" \t\n") != std::string::npos) {
        std::string& to = (c.fortunes % kValidationEvery == kValidationEvery - 1) ? c.validation : c.train;
        to += fortune;
        to += kFortuneStart;
        ++c.fortunes;
      }
      fortune.clear();
    };
    for (std::string line; std::getline(lines, line);) {
      if (line == "%") {
        finish();
      } else {
        fortune += line + "\n";
      }
    }
    finish();
  }
  if (c.fortunes == 0) {
    throw std::runtime_error(dir + ": no fortune files found (expected text files of fortunes separated by % lines)");
  }
  return c;
}

/// Ids of the characters text[begin, begin + length).
void put_ids(const std::string& text, std::size_t begin, index_t length, std::int64_t* out) {
  for (index_t t = 0; t < length; ++t) out[t] = static_cast<unsigned char>(text[begin + std::size_t(t)]);
}

/// The training batches of train::fit: an epoch is `steps` batches of `batch` windows at random
/// positions of the text, each as (ids [batch, seq], next-character targets [batch, seq]). Window
/// i of step s of epoch e starts at a position drawn from counter (e steps + s) batch + i of a
/// Philox generator: a pure function of the seed, the epoch and the step, so resuming at an epoch
/// replays the same windows (fit calls set_epoch with the epoch it resumes at).
class WindowLoader {
 public:
  using Ids = Tensor<std::int64_t, 2>;
  using Batch = std::tuple<Ids, Ids>;

  WindowLoader(const std::string& text, index_t batch, index_t seq, index_t steps, std::uint64_t seed)
      : text_(text), batch_(batch), seq_(seq), steps_(steps), generator_(seed ^ 0x9E3779B97F4A7C15ull) {
    if (index_t(text.size()) < seq + 2) {
      throw std::invalid_argument("the training text has " + std::to_string(text.size()) +
                                  " characters, too few for --seq " + std::to_string(seq) +
                                  " (windows of seq + 1 characters at two positions at least)");
    }
  }
  index_t size() const noexcept { return steps_; }
  void set_epoch(std::uint64_t e) noexcept { next_epoch_ = e; }

  class iterator {
   public:
    iterator(const WindowLoader* loader, std::uint64_t epoch, index_t step)
        : loader_(loader), epoch_(epoch), step_(step) {
      if (step_ < loader_->steps_) batch_ = loader_->make(epoch_, step_);
    }
    const Batch& operator*() const { return batch_; }
    iterator& operator++() {
      if (++step_ < loader_->steps_) batch_ = loader_->make(epoch_, step_);
      return *this;
    }
    bool operator!=(const iterator& other) const { return step_ != other.step_; }

   private:
    const WindowLoader* loader_;
    std::uint64_t epoch_;
    index_t step_;
    Batch batch_;
  };
  iterator begin() { return iterator(this, next_epoch_++, 0); }
  iterator end() const { return iterator(this, 0, steps_); }

 private:
  Batch make(std::uint64_t epoch, index_t step) const {
    auto ids = Ids::uninitialized(Shape<2>{batch_, seq_});
    auto targets = Ids::uninitialized(Shape<2>{batch_, seq_});
    const std::uint64_t positions = text_.size() - std::uint64_t(seq_);  // starts with seq + 1 characters after them
    for (index_t i = 0; i < batch_; ++i) {
      const auto w = generator_.at((epoch * std::uint64_t(steps_) + std::uint64_t(step)) * std::uint64_t(batch_) +
                                   std::uint64_t(i));
      const std::uint64_t start = ((std::uint64_t(w[0]) << 32) | w[1]) % positions;
      put_ids(text_, start, seq_, ids.data() + i * seq_);
      put_ids(text_, start + 1, seq_, targets.data() + i * seq_);
    }
    return {ids, targets};
  }

  const std::string& text_;
  index_t batch_, seq_, steps_;
  Generator generator_;
  std::uint64_t next_epoch_ = 0;
};

/// Bits per character of `text` under the training text's byte frequencies (add-one smoothed):
/// the baseline a model must beat.
double unigram_bits_per_char(const std::string& train, const std::string& text) {
  std::vector<double> count(kVocab, 1.0);
  for (const unsigned char ch : train) count[ch] += 1;
  const double total = double(train.size()) + double(kVocab);
  double bits = 0;
  for (const unsigned char ch : text) bits -= std::log2(count[ch] / total);
  return text.empty() ? 0 : bits / double(text.size());
}

// ---- training pieces ---------------------------------------------------------------------------

/// Adam (or any optimizer) that clips the gradients to a global L2 norm before each step: fit calls
/// step(model, grads), so clipping there keeps fit's loop; checkpoints and schedules see the base.
template <class Base>
class ClippedOptimizer : public Base {
 public:
  ClippedOptimizer(Base base, double max_norm) : Base(std::move(base)), max_norm_(max_norm) {}
  template <class M>
  void step(M& model, M& grads) {
    if (max_norm_ > 0) optim::clip_grad_norm(grads, max_norm_);
    Base::step(model, grads);
  }

 private:
  double max_norm_;
};

/// The mean cross-entropy of next-character logits [N, T, V] against targets [N, T], in nats.
struct NextCharLoss {
  template <class X>
  auto operator()(const X& logits, const Tensor<std::int64_t, 2>& targets,
                  nn::Reduction reduction = nn::Reduction::mean) const {
    const auto s = logits.shape();
    nn::CrossEntropyOptions<float> options;
    options.reduction = reduction;
    return nn::cross_entropy(reshape(logits, Shape<2>{s[0] * s[1], s[2]}), targets.flatten(), options);
  }
};

/// Mean negative log-likelihood (nats) of every character of `text` after the first, the model
/// reading consecutive windows of `seq` characters (each from a zero state), `batch` at a time;
/// the last window holds what is left.
template <class Model>
double nats_per_char(Model& model, const std::string& text, index_t seq, index_t batch) {
  nn::ModeGuard<Model> eval_mode(model, false);
  const index_t predicted = index_t(text.size()) - 1;
  double total = 0;
  // Windows first, first + 1, ... of `length` characters; window w starts at character w seq.
  auto add_windows = [&](index_t first, index_t n, index_t length) {
    auto ids = Tensor<std::int64_t, 2>::uninitialized(Shape<2>{n, length});
    auto targets = Tensor<std::int64_t, 2>::uninitialized(Shape<2>{n, length});
    for (index_t i = 0; i < n; ++i) {
      const std::size_t start = std::size_t((first + i) * seq);
      put_ids(text, start, length, ids.data() + i * length);
      put_ids(text, start + 1, length, targets.data() + i * length);
    }
    total += double(Tensor<float, 0>(NextCharLoss{}(model(ids), targets, nn::Reduction::sum))());
  };
  const index_t full = predicted / seq, rest = predicted % seq;
  for (index_t first = 0; first < full; first += batch) add_windows(first, std::min(batch, full - first), seq);
  if (rest > 0) add_windows(full, 1, rest);
  return total / double(predicted);
}

/// After each epoch: validation bits per character ("val_bits_per_char", and "val_loss" in nats
/// per character), the training loss in bits ("bits_per_char") and the training throughput
/// ("chars_per_second"), added to the epoch's logs for the callbacks after it.
template <class Model>
class EpochMetrics : public train::Callback {
 public:
  EpochMetrics(Model& model, const std::string& validation, index_t seq, index_t batch)
      : model_(model), validation_(validation), seq_(seq), batch_(batch) {}

  void on_epoch_end(train::TrainingContext& ctx, train::Logs& logs) override {
    const double nats = nats_per_char(model_, validation_, seq_, batch_);
    logs["val_loss"] = nats;
    logs["val_bits_per_char"] = nats / std::log(2.0);
    logs["bits_per_char"] = logs["loss"] / std::log(2.0);
    const double chars = double(ctx.samples) * double(seq_);  // fit counts windows as samples
    logs["chars_per_second"] = logs["seconds"] > 0 ? chars / logs["seconds"] : 0;
    train_seconds_ += logs["seconds"];
    chars_ += chars;
    last_val_bits_ = logs["val_bits_per_char"];
  }
  double train_seconds() const noexcept { return train_seconds_; }  ///< this invocation's, without validation
  double chars() const noexcept { return chars_; }
  double last_val_bits() const noexcept { return last_val_bits_; }

 private:
  Model& model_;
  const std::string& validation_;
  index_t seq_, batch_;
  double train_seconds_ = 0, chars_ = 0, last_val_bits_ = -1;
};

/// Ends training after the epoch when another epoch as long as it (validation included) would end
/// more than `minutes` after training began: fit can only stop between epochs, and stopping before
/// the budget runs out keeps the run inside it.
class TimeBudget : public train::Callback {
 public:
  explicit TimeBudget(double minutes) : seconds_(60 * minutes) {}
  void on_train_begin(train::TrainingContext&) override {
    start_ = std::chrono::steady_clock::now();
    last_ = 0;
  }
  void on_epoch_end(train::TrainingContext& ctx, train::Logs&) override {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double epoch = elapsed - last_;
    last_ = elapsed;
    if (seconds_ > 0 && ctx.epoch + 1 < ctx.epochs && elapsed + epoch > seconds_) {
      std::printf("time budget: %.1f of %.1f minutes used and an epoch takes %.1f; stopping after epoch %d of %d\n",
                  elapsed / 60, seconds_ / 60, epoch / 60, ctx.epoch + 1, ctx.epochs);
      ctx.stop_training = true;
    }
  }

 private:
  double seconds_;
  std::chrono::steady_clock::time_point start_;
  double last_ = 0;
};

// ---- generation ----------------------------------------------------------------------------------

/// Log-probabilities of the next character after each of `texts` (all of the same length): one
/// forward of the model on their last `window` characters, as a batch.
template <class Model>
std::vector<std::vector<double>> next_log_probs(Model& model, const std::vector<std::string>& texts, index_t window) {
  const index_t n = index_t(texts.size());
  const index_t length = std::min<index_t>(window, index_t(texts[0].size()));
  auto ids = Tensor<std::int64_t, 2>::uninitialized(Shape<2>{n, length});
  for (index_t i = 0; i < n; ++i) {
    const std::string& t = texts[std::size_t(i)];
    put_ids(t, t.size() - std::size_t(length), length, ids.data() + i * length);
  }
  const Tensor<float, 3> logits = Tensor<float, 3>(model(ids)).contiguous();
  std::vector<std::vector<double>> out(static_cast<std::size_t>(n), std::vector<double>(kVocab));
  for (index_t i = 0; i < n; ++i) {
    const float* row = logits.data() + (i * length + length - 1) * kVocab;
    const double top = *std::max_element(row, row + kVocab);
    double z = 0;
    for (index_t c = 0; c < kVocab; ++c) z += std::exp(double(row[c]) - top);
    const double log_z = top + std::log(z);
    for (index_t c = 0; c < kVocab; ++c) out[std::size_t(i)][std::size_t(c)] = double(row[c]) - log_z;
  }
  return out;
}

/// --samples continuations of --prompt, --sample-length characters each, drawn one character at a
/// time from softmax(logits / temperature) over the --top-k most probable characters (all when 0),
/// with random numbers from `gen`.
template <class Model>
std::vector<std::string> sample(Model& model, const Options& o, Generator& gen) {
  nn::ModeGuard<Model> eval_mode(model, false);
  std::vector<std::string> texts(std::size_t(o.samples), kFortuneStart + o.prompt);
  std::vector<std::size_t> order(kVocab);
  for (index_t step = 0; step < o.sample_length; ++step) {
    const auto log_probs = next_log_probs(model, texts, o.seq);
    for (std::size_t i = 0; i < texts.size(); ++i) {
      const auto& lp = log_probs[i];
      std::iota(order.begin(), order.end(), std::size_t{0});
      const std::size_t k = o.top_k > 0 ? std::size_t(std::min(o.top_k, kVocab)) : std::size_t(kVocab);
      std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(k), order.end(),
                        [&](std::size_t a, std::size_t b) { return lp[a] > lp[b]; });
      std::vector<double> weight(k);
      double total = 0;
      for (std::size_t j = 0; j < k; ++j) total += weight[j] = std::exp((lp[order[j]] - lp[order[0]]) / o.temperature);
      // A uniform number in [0, total) from the next Philox counter (53 random bits).
      const auto w = gen.at(gen.advance(1));
      double u = double((std::uint64_t(w[0]) << 21) ^ (std::uint64_t(w[1]) >> 11)) / 9007199254740992.0 * total;
      std::size_t pick = 0;
      while (pick + 1 < k && u >= weight[pick]) u -= weight[pick++];
      texts[i] += char(order[pick]);
    }
  }
  for (auto& t : texts) t.erase(0, kFortuneStart.size());
  return texts;
}

struct Completion {
  std::string text;        ///< the prompt and its completion
  double log_prob = 0;     ///< natural log-probability of the completion
  index_t characters = 0;  ///< completed characters
};

/// Beam search: extends the `width` most probable continuations of the prompt one character at a
/// time. A continuation that ends the line is finished; the search stops when no unfinished one
/// can still beat the best finished one (log-probabilities only fall), or after `max_length`
/// characters (then the best unfinished one counts too).
template <class Model>
Completion beam_complete(Model& model, const std::string& prompt, index_t width, index_t max_length, index_t window) {
  nn::ModeGuard<Model> eval_mode(model, false);
  std::vector<Completion> alive{{kFortuneStart + prompt, 0.0, 0}};
  Completion best{"", -INFINITY, 0};
  for (index_t step = 0; step < max_length && !alive.empty(); ++step) {
    std::vector<std::string> texts;
    for (const auto& a : alive) texts.push_back(a.text);
    const auto log_probs = next_log_probs(model, texts, window);
    std::vector<std::pair<double, std::size_t>> candidates;  // (score, beam * vocab + char)
    for (std::size_t b = 0; b < alive.size(); ++b) {
      for (index_t c = 0; c < kVocab; ++c) {
        candidates.emplace_back(alive[b].log_prob + log_probs[b][std::size_t(c)], b * kVocab + std::size_t(c));
      }
    }
    const std::size_t keep = std::min(candidates.size(), std::size_t(width));
    std::partial_sort(candidates.begin(), candidates.begin() + std::ptrdiff_t(keep), candidates.end(),
                      std::greater<>());
    std::vector<Completion> next;
    for (std::size_t j = 0; j < keep; ++j) {
      const auto& parent = alive[candidates[j].second / kVocab];
      const char ch = char(candidates[j].second % kVocab);
      Completion c{parent.text + ch, candidates[j].first, parent.characters + 1};
      if (ch == '\n') {
        if (c.log_prob > best.log_prob) best = c;
      } else {
        next.push_back(std::move(c));
      }
    }
    alive = std::move(next);
    if (!alive.empty() && alive.front().log_prob <= best.log_prob) break;  // sorted: the front is the best
  }
  for (const auto& a : alive) {
    if (a.log_prob > best.log_prob) best = a;  // the length limit ended the search
  }
  best.text.erase(0, kFortuneStart.size());
  return best;
}

// ---- the program -------------------------------------------------------------------------------

/// Trains, evaluates and generates with a model of type Model; returns the process's exit status.
template <class Model>
int run(Options o, const Corpus& corpus) {
  if (o.lr == 0) o.lr = Model::default_lr;
  manual_seed(o.seed);
  Model model(sizes_of(o));
  std::cout << nn::summary(model, zeros<std::int64_t>({1, 1}));
  ClippedOptimizer<optim::Adam<float>> opt(optim::Adam<float>({.lr = o.lr}), o.clip);

  WindowLoader train_loader(corpus.train, o.batch, o.seq, o.steps, o.seed);
  // Warm up for 5% of the steps (at most 100), then cosine decay to lr / 10 at the last step.
  const std::int64_t total_steps = std::int64_t(o.steps) * o.epochs;
  optim::CosineWithWarmup cosine(opt, std::min<std::int64_t>(100, total_steps / 20), total_steps, o.lr / 10);
  train::LearningRateScheduler schedule(cosine, /*per_batch=*/true);

  train::FitOptions fit_options{
      .epochs = o.epochs, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {}};
  if (!o.resume.empty()) {
    // After the schedule, which takes the configured learning rate; before anything is written to
    // the output directory, so a checkpoint that does not fit leaves it as it was. The checkpoint
    // restores the weights, Adam's moments, its step count and the learning rate.
    const io::TrainingProgress p = io::load_checkpoint(o.resume, model, opt);
    fit_options.initial_epoch = int(std::min<std::int64_t>(p.epoch, o.epochs));
    fit_options.initial_step = p.step;
    std::printf("resuming from %s after epoch %ld (step %ld)\n", o.resume.c_str(), long(p.epoch), long(p.step));
  }

  io::create_directories(o.out);
  EpochMetrics<Model> metrics(model, corpus.validation, o.seq, 2 * o.batch);
  TimeBudget budget(o.minutes);
  train::ModelCheckpoint checkpoint(o.out + "/checkpoint.safetensors", model, opt);
  train::CSVLogger log(o.out + "/log.csv", /*append=*/!o.resume.empty());
  summary::Writer writer(o.out);
  summary::HParams hparams = Model::hparams(sizes_of(o));
  hparams.insert({{"model", std::string(Model::name)},
                  {"lr", o.lr},
                  {"batch", double(o.batch)},
                  {"seq", double(o.seq)},
                  {"steps_per_epoch", double(o.steps)},
                  {"epochs", double(o.epochs)},
                  {"clip", o.clip}});
  train::TensorBoard tensorboard(writer, model, {.update_freq = 10, .histograms = true, .hparams = hparams});
  // fit's own bar (verbose = 1) would print each epoch's line before the validation metrics exist:
  // this one runs after EpochMetrics.
  train::ProgressBar progress;
  fit_options.callbacks = {&metrics, &progress, &budget, &tensorboard, &schedule, &checkpoint, &log};

  if (fit_options.initial_epoch >= o.epochs) {
    std::printf("all %d epochs are done: validating and generating only\n", o.epochs);
  } else {
    std::printf("training %s: %d epochs of %ld steps, %ld windows of %ld characters per step, budget %.1f minutes\n",
                Model::name, o.epochs, long(o.steps), long(o.batch), long(o.seq), o.minutes);
  }
  std::fflush(stdout);
  const train::History history = train::fit(model, opt, NextCharLoss{}, train_loader, fit_options);

  double val_bits = metrics.last_val_bits();
  if (history.epochs.empty()) val_bits = nats_per_char(model, corpus.validation, o.seq, 2 * o.batch) / std::log(2.0);
  const double train_seconds = metrics.train_seconds();
  const double chars_per_second = train_seconds > 0 ? metrics.chars() / train_seconds : 0;
  if (!history.epochs.empty()) {
    std::printf("validation bits/char per epoch:");
    for (std::size_t e = 0; e < history.epochs.size(); ++e) {
      std::printf(" %d: %.3f", history.epochs[e] + 1, history["val_bits_per_char"][e]);
    }
    std::printf("\ntraining: %.0f characters in %.1f s, %.0f characters/s\n", metrics.chars(), train_seconds,
                chars_per_second);
  }

  // Generation, from the trained (or restored) model.
  std::string markdown;
  const auto generation_start = std::chrono::steady_clock::now();
  if (o.samples > 0 && o.sample_length > 0) {
    Generator gen(o.seed);
    const auto texts = sample(model, o, gen);
    std::printf("\nsamples (temperature %.2f, top-k %ld):\n", o.temperature, long(o.top_k));
    for (std::size_t i = 0; i < texts.size(); ++i) {
      std::printf("--- sample %zu ---\n%s\n", i + 1, texts[i].c_str());
      markdown += "**sample " + std::to_string(i + 1) + "**\n\n```\n" + texts[i] + "\n```\n\n";
    }
  }
  if (o.beam > 0 && o.beam_length > 0) {
    const Completion c = beam_complete(model, o.prompt, o.beam, o.beam_length, o.seq);
    std::printf("\nbeam search (width %ld): %s%s", long(o.beam), c.text.c_str(),
                c.text.empty() || c.text.back() != '\n' ? "\n" : "");
    std::printf("  (%ld characters, %.2f bits/char)\n", long(c.characters),
                c.characters > 0 ? -c.log_prob / std::log(2.0) / double(c.characters) : 0.0);
    markdown += "**beam search, width " + std::to_string(o.beam) + "**\n\n```\n" + c.text + "\n```\n";
  }
  if (!markdown.empty()) {
    writer.text("samples", markdown, fit_options.initial_step + std::int64_t(history.epochs.size()) * o.steps);
    std::printf("generation: %.1f s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - generation_start).count());
  }
  writer.flush();

  if (!o.export_dir.empty()) {
    const std::string dir = serve::export_model(model, o.export_dir, serve::next_version(o.export_dir), char_models::signature(),
                                                {Model::architecture, sizes_of(o).to_json()});
    std::printf("exported for serving: %s\n", dir.c_str());
  }
  if (!o.export_onnx.empty()) {
    io::export_onnx(model, Tensor<std::int64_t, 2>(Shape<2>{1, o.seq}), o.export_onnx);
    std::printf("exported as ONNX: %s\n", o.export_onnx.c_str());
  }
  std::printf("checkpoint: %s/checkpoint.safetensors, log: %s/log.csv, TensorBoard: tensorboard --logdir %s\n",
              o.out.c_str(), o.out.c_str(), io::detail::parent_directory(o.out).c_str());
  std::printf("{\"model\": \"%s\", \"val_bits_per_char\": %.4f, \"train_seconds\": %.1f, \"chars_per_second\": %.0f}\n",
              Model::name, val_bits, train_seconds, chars_per_second);
  return 0;
}

/// One branch per model; run<Model> does the rest. Returns the exit status.
int run_model(const Options& o, const Corpus& corpus) {
  if (o.model == "lstm") return run<CharLSTM>(o, corpus);
  return run<CharTransformer>(o, corpus);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    if (o.threads > 0) cpu::set_num_threads(o.threads);
    Corpus corpus = load_corpus(o.data);
    if (o.limit_chars > 0) {  // a quick run: the first characters of each text (see the top)
      corpus.train.resize(std::min<std::size_t>(corpus.train.size(), std::size_t(o.limit_chars)));
      corpus.validation.resize(
          std::min(corpus.validation.size(), std::size_t(std::max(o.limit_chars / 10, o.seq + 1))));
    }
    if (corpus.validation.size() < 2) throw std::runtime_error(o.data + ": too little text for a validation set");
    std::printf(
        "fortunes: %ld files, %ld fortunes; %zu training and %zu validation characters (every %ldth fortune); "
        "vocabulary %ld bytes; %d thread(s)\n",
        long(corpus.files), long(corpus.fortunes), corpus.train.size(), corpus.validation.size(),
        long(kValidationEvery), long(kVocab), int(cpu::num_threads()));
    std::printf("unigram baseline: %.3f bits/char on the validation text\n",
                unigram_bits_per_char(corpus.train, corpus.validation));
    return run_model(o, corpus);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "char_lm: %s\n", e.what());
    return 1;
  }
}
