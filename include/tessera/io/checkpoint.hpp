// Checkpoints: a model's parameters and buffers, an optimizer's state and the training progress in
// one safetensors file, so that training resumes exactly where it stopped and Python reads the
// weights (`safetensors.torch.load_file(path)` gives {"conv1.weight": tensor, ...}).
//
//   io::save_checkpoint("runs/cnn/checkpoint.safetensors", model, optimizer, {.epoch = 3, .step = 2814});
//   io::TrainingProgress p = io::load_checkpoint("runs/cnn/checkpoint.safetensors", model, optimizer);
//   io::save_weights("model.safetensors", model);      // weights and buffers only
//   io::load_weights("model.safetensors", model);
//
// Layout: model tensors under their own names ("0.weight", "1.running_mean"), optimizer state under
// "optimizer.<parameter>.<state>" ("optimizer.0.weight.exp_avg"), and in __metadata__ the epoch,
// step, optimizer step count and learning rate, and the default generator's seed and position (so
// dropout masks continue the same stream). Loading checks every name, dtype and shape before
// writing anything: a file that does not fit leaves the model and optimizer untouched.
#pragma once

#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/random.hpp"
#include "tessera/io/safetensors.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::io {

/// Where training stands when a checkpoint is written.
struct TrainingProgress {
  std::int64_t epoch = 0;  ///< epochs completed
  std::int64_t step = 0;   ///< batches (optimizer steps) completed
};

/// Prefix of the optimizer's tensors in a checkpoint.
inline constexpr const char* optimizer_prefix = "optimizer.";

namespace detail {

inline bool is_optimizer_entry(const std::string& name) { return name.rfind(optimizer_prefix, 0) == 0; }

TESSERA_OUT_OF_LINE std::string name_list(const std::vector<std::string>& names);

/// Throws io_error when tensors of `wanted` are missing from f or (strict) when f's section (model
/// or optimizer) holds tensors not in `wanted`; the message lists them.
TESSERA_OUT_OF_LINE void check_same_names(const SafetensorsFile& f, const std::vector<std::string>& wanted,
                                          bool optimizer_section, const char* what, bool strict = true);

/// Metadata `key` of f parsed completely as an I (std::int64_t, std::uint64_t or double).
template <class I>
I metadata_number(const SafetensorsFile& f, const std::string& key) {
  const std::string file = f.source().empty() ? "checkpoint" : f.source();
  const auto it = f.metadata().find(key);
  if (it == f.metadata().end()) throw io_error(file + ": metadata \"" + key + "\" is missing (not a tessera checkpoint?)");
  const std::string& text = it->second;
  std::size_t used = 0;
  I v{};
  try {
    if constexpr (std::is_same_v<I, double>) v = std::stod(text, &used);
    else if constexpr (std::is_signed_v<I>) v = static_cast<I>(std::stoll(text, &used));
    else if (!text.empty() && text[0] != '-') v = static_cast<I>(std::stoull(text, &used));
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) throw io_error(file + ": metadata \"" + key + "\" is not a valid number: \"" + text + "\"");
  return v;
}

/// Checks that f holds every parameter and buffer of m with the right dtype and shape (and, when
/// strict, no other model tensors).
template <class M>
void check_module(const SafetensorsFile& f, M& m, bool strict) {
  std::vector<std::string> names;
  auto name_of = [&](const std::string& name, const auto&) { names.push_back(name); };
  nn::for_each_parameter(m, name_of);
  nn::for_each_buffer(m, name_of);
  check_same_names(f, names, false, "model", strict);
  auto check = [&](const std::string& name, const auto& t) { f.check<value_type_t<std::decay_t<decltype(t)>>>(name, t.shape()); };
  nn::for_each_parameter(m, check);
  nn::for_each_buffer(m, check);
}

/// What an optimizer section holds: step count, learning rate; the state tensors are checked.
struct OptimizerRecord {
  std::int64_t steps = 0;
  double lr = 0;
};

template <class Opt, class M>
OptimizerRecord check_optimizer(const SafetensorsFile& f, Opt& opt, M& model) {
  OptimizerRecord r;
  r.steps = metadata_number<std::int64_t>(f, "tessera.optimizer.steps");
  r.lr = metadata_number<double>(f, "tessera.optimizer.lr");
  if (r.steps < 0 || !(r.lr >= 0)) throw io_error(f.source() + ": invalid optimizer step count or learning rate");
  opt.prepare(model);
  const auto state = opt.named_state();
  std::vector<std::string> names;
  for (const auto& s : state) names.push_back(optimizer_prefix + s.name);
  check_same_names(f, names, true, "optimizer");
  for (const auto& s : state) f.check<value_type_t<decltype(s.value)>>(optimizer_prefix + s.name, s.shape);
  return r;
}

template <class M>
void copy_module(const SafetensorsFile& f, M& m) {
  auto copy = [&](const std::string& name, auto& t) { f.copy_to(name, t); };
  nn::for_each_parameter(m, copy);
  nn::for_each_buffer(m, copy);
}

template <class Opt>
void copy_optimizer(const SafetensorsFile& f, Opt& opt, const OptimizerRecord& r) {
  auto state = opt.named_state();
  for (auto& s : state) f.copy_to(optimizer_prefix + s.name, s.value, s.shape);
  opt.set_step_count(r.steps);
  opt.set_lr(r.lr);
}

}  // namespace detail

/// Adds m's parameters and buffers to f under their hierarchical names.
template <class M>
void add_module(SafetensorsFile& f, M& m) {
  nn::for_each_parameter(m, [&](const std::string& name, const auto& t) { f.add(name, t); });
  nn::for_each_buffer(m, [&](const std::string& name, const auto& t) { f.add(name, t); });
}

/// Copies f's model tensors into m's parameters and buffers. Every one must be present with the
/// right dtype and shape, and (strict) the file may hold no other model tensors; all is checked
/// before anything is written.
template <class M>
void load_module(const SafetensorsFile& f, M& m, bool strict = true) {
  detail::check_module(f, m, strict);
  detail::copy_module(f, m);
}

/// Adds an optimizer's state tensors (made now for `model` if it has not stepped yet), its step
/// count and learning rate.
template <class Opt, class M>
void add_optimizer(SafetensorsFile& f, Opt& opt, M& model) {
  opt.prepare(model);
  for (const auto& s : opt.named_state()) f.add(optimizer_prefix + s.name, s.value, s.shape);
  f.metadata()["tessera.optimizer.steps"] = std::to_string(opt.step_count());
  char lr[32];
  std::snprintf(lr, sizeof lr, "%.17g", opt.lr());
  f.metadata()["tessera.optimizer.lr"] = lr;
}

/// Restores an optimizer saved by add_optimizer (for the same model); checks everything first.
template <class Opt, class M>
void load_optimizer(const SafetensorsFile& f, Opt& opt, M& model) {
  const auto record = detail::check_optimizer(f, opt, model);
  detail::copy_optimizer(f, opt, record);
}

/// Writes m's parameters and buffers (no optimizer state) to `path`, atomically.
template <class M>
void save_weights(const std::string& path, M& m) {
  SafetensorsFile f;
  f.metadata()["format"] = "pt";
  add_module(f, m);
  f.write(path);
}

/// Loads weights written by save_weights (or by Python's safetensors with the same names).
template <class M>
void load_weights(const std::string& path, M& m, bool strict = true) {
  load_module(SafetensorsFile::read(path), m, strict);
}

/// Writes model, optimizer and progress (and the default generator's position) to `path`, atomically.
template <class M, class Opt>
void save_checkpoint(const std::string& path, M& model, Opt& opt, const TrainingProgress& progress) {
  SafetensorsFile f;
  f.metadata()["format"] = "pt";
  f.metadata()["tessera.epoch"] = std::to_string(progress.epoch);
  f.metadata()["tessera.step"] = std::to_string(progress.step);
  f.metadata()["tessera.rng.seed"] = std::to_string(default_generator().seed());
  f.metadata()["tessera.rng.offset"] = std::to_string(default_generator().offset());
  add_module(f, model);
  add_optimizer(f, opt, model);
  f.write(path);
}

/// Restores what save_checkpoint wrote and returns the progress to resume from. The file is
/// validated completely before model, optimizer or generator change.
template <class M, class Opt>
TrainingProgress load_checkpoint(const std::string& path, M& model, Opt& opt) {
  const SafetensorsFile f = SafetensorsFile::read(path);
  TrainingProgress p;
  p.epoch = detail::metadata_number<std::int64_t>(f, "tessera.epoch");
  p.step = detail::metadata_number<std::int64_t>(f, "tessera.step");
  if (p.epoch < 0 || p.step < 0) throw io_error(path + ": negative epoch or step in the metadata");
  const auto seed = detail::metadata_number<std::uint64_t>(f, "tessera.rng.seed");
  const auto offset = detail::metadata_number<std::uint64_t>(f, "tessera.rng.offset");
  detail::check_module(f, model, true);
  const auto record = detail::check_optimizer(f, opt, model);
  // Everything fits: only now change model, optimizer and generator.
  detail::copy_module(f, model);
  detail::copy_optimizer(f, opt, record);
  default_generator() = Generator(seed);
  default_generator().set_offset(offset);
  return p;
}

#if TESSERA_OUT_OF_LINE_DEFINITIONS

TESSERA_OUT_OF_LINE std::string detail::name_list(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < 8; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > 8) out += ", ... (" + std::to_string(names.size()) + " in all)";
  return out;
}

TESSERA_OUT_OF_LINE void detail::check_same_names(const SafetensorsFile& f, const std::vector<std::string>& wanted,
                                                  bool optimizer_section, const char* what, bool strict) {
  const std::set<std::string> want(wanted.begin(), wanted.end());
  std::vector<std::string> missing, unexpected;
  for (const auto& w : wanted) {
    if (!f.find(w)) missing.push_back(w);
  }
  for (const auto& e : f.entries()) {
    if (is_optimizer_entry(e.name) == optimizer_section && !want.count(e.name)) unexpected.push_back(e.name);
  }
  const std::string file = f.source().empty() ? "checkpoint" : f.source();
  if (!missing.empty()) throw io_error(file + ": " + what + " tensors missing from the file: " + name_list(missing));
  if (strict && !unexpected.empty()) {
    throw io_error(file + ": unexpected " + std::string(what) + " tensors in the file: " + name_list(unexpected));
  }
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

}  // namespace tessera::io
