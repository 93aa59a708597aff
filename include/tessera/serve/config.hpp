// TensorFlow Serving's two config files, as tessera's model server reads them: the model server
// config (`--model_config_file`: models, base paths, version policies, labels) and the batching
// parameters (`--batching_parameters_file`), both in the protocol-buffer text format
// (serve/text_format.hpp).
//
//   std::vector<serve::ModelConfig> models = serve::read_model_config_file("models.config");
//   serve::BatchingParameters batching = serve::read_batching_parameters_file("batching.config");
//
// Every field is checked against the fields TensorFlow Serving defines, so a typo is an error
// naming the field and the allowed ones, not a silently ignored setting.
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/serve/text_format.hpp"

namespace tessera::serve {

/// Which versions of a model to serve (TF Serving's ServableVersionPolicy).
struct VersionPolicy {
  enum class Kind { latest, all, specific };
  Kind kind = Kind::latest;
  std::int64_t num_versions = 1;       ///< for latest: how many of the highest versions (>= 1)
  std::vector<std::int64_t> versions;  ///< for specific: sorted, without duplicates, never empty
};

/// One `config { ... }` of a model server config.
struct ModelConfig {
  std::string name;
  std::string base_path;
  std::string platform;                        ///< model_platform as written ("" when not given); not checked here
  VersionPolicy policy;                        ///< latest 1 when not given, as TF Serving does
  std::map<std::string, std::int64_t> labels;  ///< version_labels: label -> version
};

/// What the server does when it has no batching parameters file; each field is checked on read.
struct BatchingParameters {
  std::int64_t max_batch_size = 32;          ///< >= 1
  std::int64_t batch_timeout_micros = 1000;  ///< >= 0
  std::int64_t max_enqueued_batches = 100;   ///< >= 1
  std::int64_t num_batch_threads = 0;        ///< 0: one per hardware thread
};

namespace detail {

/// A field a config message may hold: its name, whether its value is a message, whether it may
/// repeat.
struct TextFieldRule {
  const char* name;
  bool message;
  bool repeated;
};

inline std::string text_rule_names(std::initializer_list<TextFieldRule> rules) {
  if (rules.size() == 0) return "(none)";
  std::string out;
  for (const auto& r : rules) out += (out.empty() ? "" : ", ") + std::string(r.name);
  return out;
}

/// Checks every field of `m` (called `where` in errors) against `rules`: a name not in them, a
/// scalar for a message or a message for a scalar, a non-repeated field given twice. Reading a
/// config field by field after this check cannot meet a surprise, and a misspelled setting is
/// an error rather than silently ignored.
inline void text_check_fields(const TextMessage& m, const std::string& source, const std::string& where,
                              std::initializer_list<TextFieldRule> rules) {
  std::map<std::string, const TextField*> seen;
  for (const auto& f : m.fields) {
    const TextFieldRule* rule = nullptr;
    for (const auto& r : rules) {
      if (f.name == r.name) rule = &r;
    }
    if (!rule) {
      throw_text_error(source, f.line, f.column,
                       "unknown field '" + text_quote_for_error(f.name) + "' in " + where +
                           "; allowed fields: " + text_rule_names(rules));
    }
    if (rule->message && !f.value.is_message()) {
      throw_text_error(
          source, f.value.line, f.value.column,
          "field '" + f.name + "' in " + where + " expects a message ('" + f.name + " { ... }'), got a scalar value");
    }
    if (!rule->message && f.value.is_message()) {
      throw_text_error(
          source, f.value.line, f.value.column,
          "field '" + f.name + "' in " + where + " expects a scalar value ('" + f.name + ": ...'), got a message");
    }
    auto [it, inserted] = seen.emplace(f.name, &f);
    if (!inserted && !rule->repeated) {
      throw_text_error(source, f.line, f.column,
                       "field '" + f.name + "' given more than once in " + where + " (first at line " +
                           std::to_string(it->second->line) + ")");
    }
  }
}

/// `latest { num_versions: N }`, `all {}` or `specific { versions: N ... }`.
inline VersionPolicy text_version_policy(const TextField& field, const std::string& source, const std::string& model) {
  const std::string where = "model_version_policy of model '" + model + "'";
  const TextMessage& m = field.value.message;
  text_check_fields(m, source, where, {{"latest", true, false}, {"all", true, false}, {"specific", true, false}});
  VersionPolicy p;
  if (m.fields.empty()) return p;  // no policy chosen: TF Serving's default, the latest version
  if (m.fields.size() > 1) {
    const TextField& second = m.fields[1];
    throw_text_error(source, second.line, second.column,
                     where + " sets more than one policy ('" + m.fields[0].name + "' and '" + second.name +
                         "'); choose one of latest, all, specific");
  }
  const TextField& chosen = m.fields[0];
  const TextMessage& body = chosen.value.message;
  if (chosen.name == "latest") {
    text_check_fields(body, source, "latest policy of model '" + model + "'", {{"num_versions", false, false}});
    p.kind = VersionPolicy::Kind::latest;
    if (const TextField* n = body.find("num_versions")) {
      p.num_versions = text_int64(*n, source);
      if (p.num_versions < 1) {
        throw_text_error(source, n->value.line, n->value.column,
                         "num_versions of model '" + model + "' must be >= 1, got " + std::to_string(p.num_versions));
      }
    }
  } else if (chosen.name == "all") {
    text_check_fields(body, source, "all policy of model '" + model + "'", {});
    p.kind = VersionPolicy::Kind::all;
  } else {
    text_check_fields(body, source, "specific policy of model '" + model + "'", {{"versions", false, true}});
    p.kind = VersionPolicy::Kind::specific;
    for (const TextField* v : body.all("versions")) {
      const std::int64_t version = text_int64(*v, source);
      if (version < 0) {
        throw_text_error(source, v->value.line, v->value.column,
                         "version of model '" + model + "' must be >= 0, got " + std::to_string(version));
      }
      p.versions.push_back(version);
    }
    if (p.versions.empty()) {
      throw_text_error(source, chosen.line, chosen.column,
                       "specific policy of model '" + model + "' lists no versions (write 'versions: N')");
    }
    std::sort(p.versions.begin(), p.versions.end());
    p.versions.erase(std::unique(p.versions.begin(), p.versions.end()), p.versions.end());
  }
  return p;
}

/// Whether `key` is a valid version label: non-empty, [A-Za-z0-9_-] only (what TF Serving allows,
/// and what fits the REST path /v1/models/<name>/labels/<label>).
inline bool text_is_label(const std::string& key) {
  if (key.empty()) return false;
  for (char c : key) {
    if (!(text_is_ident(c) || c == '-')) return false;
  }
  return true;
}

/// One `config { ... }` of model_config_list.
inline ModelConfig text_model_config(const TextField& field, const std::string& source) {
  const TextMessage& m = field.value.message;
  text_check_fields(m, source, "model_config_list.config",
                    {{"name", false, false},
                     {"base_path", false, false},
                     {"model_platform", false, false},
                     {"model_version_policy", true, false},
                     {"version_labels", true, true}});
  ModelConfig c;
  const TextField* name = m.find("name");
  if (!name) throw_text_error(source, field.line, field.column, "model config is missing 'name'");
  c.name = text_string(*name, source);
  if (c.name.empty()) throw_text_error(source, name->value.line, name->value.column, "model name is empty");
  const std::string model = text_quote_for_error(c.name);

  const TextField* base_path = m.find("base_path");
  if (!base_path) throw_text_error(source, field.line, field.column, "model '" + model + "' is missing 'base_path'");
  c.base_path = text_string(*base_path, source);
  if (c.base_path.empty()) {
    throw_text_error(source, base_path->value.line, base_path->value.column,
                     "base_path of model '" + model + "' is empty");
  }
  if (const TextField* platform = m.find("model_platform")) c.platform = text_string(*platform, source);
  if (const TextField* policy = m.find("model_version_policy")) c.policy = text_version_policy(*policy, source, model);

  for (const TextField* entry : m.all("version_labels")) {
    const TextMessage& e = entry->value.message;
    text_check_fields(e, source, "version_labels of model '" + model + "'",
                      {{"key", false, false}, {"value", false, false}});
    const TextField* key = e.find("key");
    const TextField* value = e.find("value");
    if (!key) {
      throw_text_error(source, entry->line, entry->column,
                       "version_labels entry of model '" + model + "' has no 'key'");
    }
    if (!value) {
      throw_text_error(source, entry->line, entry->column,
                       "version_labels entry of model '" + model + "' has no 'value'");
    }
    const std::string label = text_string(*key, source);
    if (!text_is_label(label)) {
      throw_text_error(source, key->value.line, key->value.column,
                       "version label '" + text_quote_for_error(label) + "' of model '" + model +
                           "' must be letters, digits, '_' and '-' only");
    }
    const std::int64_t version = text_int64(*value, source);
    if (version < 0) {
      throw_text_error(source, value->value.line, value->value.column,
                       "version label '" + label + "' of model '" + model + "' must name a version >= 0, got " +
                           std::to_string(version));
    }
    if (!c.labels.emplace(label, version).second) {
      throw_text_error(source, key->value.line, key->value.column,
                       "version label '" + label + "' of model '" + model + "' given more than once");
    }
  }
  return c;
}

/// The whole text of `path`, or io_error "<path>: ..." when it cannot be opened or read.
inline std::string text_read_file(const std::string& path) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    throw io_error(path + ": cannot open for reading" + (err ? std::string(": ") + std::strerror(err) : std::string()));
  }
  std::string text;
  char buffer[1 << 14];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) text.append(buffer, static_cast<std::size_t>(in.gcount()));
  if (in.bad()) throw io_error(path + ": cannot read (is it a directory?)");
  return text;
}

}  // namespace detail

/// The models of a TF Serving model server config (`--model_config_file`):
///
///   model_config_list {
///     config {
///       name: 'fashion'
///       base_path: '/models/fashion'
///       model_platform: 'tessera'                                # optional, kept as written
///       model_version_policy { latest { num_versions: 2 } }   # or all {}, or specific { versions: 3 }
///       version_labels { key: 'stable' value: 3 }
///     }
///   }
///
/// Every field is checked: unknown names, missing name or base_path, duplicate model names,
/// num_versions < 1, an empty or negative specific list, bad, negative or duplicate labels, two
/// policies at once, a scalar for a message or a message for a scalar, integer overflow. Each is
/// a value_error "<source>:<line>:<column>: ...". A text without model_config_list is an error
/// (it is almost surely the wrong file); an empty model_config_list gives no models.
inline std::vector<ModelConfig> parse_model_config(std::string_view text, const std::string& source) {
  const TextMessage root = parse_text_format(text, source);
  detail::text_check_fields(root, source, "the model server config", {{"model_config_list", true, false}});
  const TextField* list = root.find("model_config_list");
  if (!list) {
    throw value_error(source +
                      ": no model_config_list (a model config file holds 'model_config_list { config { "
                      "name: ... base_path: ... } }')");
  }
  detail::text_check_fields(list->value.message, source, "model_config_list", {{"config", true, true}});
  std::vector<ModelConfig> models;
  std::map<std::string, std::size_t> first_line;
  for (const TextField* field : list->value.message.all("config")) {
    ModelConfig c = detail::text_model_config(*field, source);
    const TextField* name = field->value.message.find("name");  // present: text_model_config checked
    auto [it, inserted] = first_line.emplace(c.name, name->line);
    if (!inserted) {
      throw_text_error(source, name->value.line, name->value.column,
                       "duplicate model name '" + detail::text_quote_for_error(c.name) + "' (first at line " +
                           std::to_string(it->second) + ")");
    }
    models.push_back(std::move(c));
  }
  return models;
}

/// parse_model_config of the file at `path` (errors name the path as their source); io_error
/// when the file cannot be read.
inline std::vector<ModelConfig> read_model_config_file(const std::string& path) {
  return parse_model_config(detail::text_read_file(path), path);
}

/// TF Serving's batching parameters (`--batching_parameters_file`), each field a wrapper message:
///
///   max_batch_size { value: 32 }
///   batch_timeout_micros { value: 1000 }
///   max_enqueued_batches { value: 100 }
///   num_batch_threads { value: 4 }
///
/// Fields not given keep BatchingParameters' defaults. TF Serving fields tessera's server does
/// not implement (allowed_batch_sizes, pad_variable_length_inputs, thread_pool_name, ...) are an
/// error naming the field rather than ignored, since a user setting them expects an effect.
/// Unknown fields, a wrapper without `value`, and values out of range (max_batch_size >= 1,
/// batch_timeout_micros >= 0, max_enqueued_batches >= 1, num_batch_threads >= 0) are errors too.
inline BatchingParameters parse_batching_parameters(std::string_view text, const std::string& source) {
  const TextMessage root = parse_text_format(text, source);
  static const char* const unsupported[] = {"allowed_batch_sizes", "pad_variable_length_inputs", "thread_pool_name",
                                            "enable_large_batch_splitting", "max_execution_batch_size"};
  for (const auto& f : root.fields) {
    for (const char* u : unsupported) {
      if (f.name == u) {
        throw_text_error(source, f.line, f.column,
                         "batching parameter '" + f.name + "' is not supported by tessera's server yet");
      }
    }
  }
  detail::text_check_fields(root, source, "the batching parameters",
                            {{"max_batch_size", true, false},
                             {"batch_timeout_micros", true, false},
                             {"max_enqueued_batches", true, false},
                             {"num_batch_threads", true, false}});
  BatchingParameters p;
  struct Setting {
    const char* name;
    std::int64_t* target;
    std::int64_t min;
  };
  const Setting settings[] = {{"max_batch_size", &p.max_batch_size, 1},
                              {"batch_timeout_micros", &p.batch_timeout_micros, 0},
                              {"max_enqueued_batches", &p.max_enqueued_batches, 1},
                              {"num_batch_threads", &p.num_batch_threads, 0}};
  for (const Setting& s : settings) {
    const TextField* f = root.find(s.name);
    if (!f) continue;
    const TextMessage& wrapper = f->value.message;
    detail::text_check_fields(wrapper, source, std::string(s.name), {{"value", false, false}});
    const TextField* value = wrapper.find("value");
    if (!value) {
      throw_text_error(source, f->line, f->column,
                       std::string(s.name) + " has no value (write '" + s.name + " { value: N }')");
    }
    const std::int64_t v = text_int64(*value, source);
    if (v < s.min) {
      throw_text_error(source, value->value.line, value->value.column,
                       std::string(s.name) + " must be >= " + std::to_string(s.min) + ", got " + std::to_string(v));
    }
    *s.target = v;
  }
  return p;
}

/// parse_batching_parameters of the file at `path`; io_error when the file cannot be read.
inline BatchingParameters read_batching_parameters_file(const std::string& path) {
  return parse_batching_parameters(detail::text_read_file(path), path);
}

}  // namespace tessera::serve
