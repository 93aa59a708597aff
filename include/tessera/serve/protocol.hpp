// The two wire formats the server speaks, as pure functions from request bodies to tensors and
// from tensors to response bodies (no sockets here, so every rule is testable on its own):
//   - TensorFlow Serving's REST predict API: row form {"instances": [...]} and column form
//     {"inputs": ...}, values nested lists, NaN / Infinity / -Infinity tokens, {"b64": ...} values;
//   - the open inference protocol (KServe v2, what Triton's clients send): {"inputs": [{"name",
//     "shape", "datatype", "data"}]}, with the binary tensor data extension (raw bytes after the
//     JSON, whose length the Inference-Header-Content-Length header gives).
// Malformed requests end in ServingError 400 whose message says what is wrong and where.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tessera/serve/model_manager.hpp"
#include "tessera/serve/registry.hpp"
#include "tessera/serve/signature.hpp"

namespace tessera::serve {

namespace detail {
// JSON has no NaN or Infinity; TensorFlow Serving accepts them as bare tokens. Outside strings,
// each token is rewritten to a string starting with the control character U+0001, which the tensor
// conversion reads back as the number. (A request that itself spells the string "\u0001NaN" gets
// NaN too: strings are never valid numbers otherwise, so nothing valid changes meaning.)
inline constexpr std::string_view nan_marker = "\x01NaN";
inline constexpr std::string_view inf_marker = "\x01Infinity";
inline constexpr std::string_view ninf_marker = "\x01-Infinity";

inline std::string rewrite_nonfinite_tokens(std::string_view body) {
  std::string out;
  bool in_string = false, changed = false;
  std::size_t copied = 0;
  auto replace = [&](std::size_t at, std::size_t length, std::string_view marker) {
    out.append(body.substr(copied, at - copied));
    out += "\"\\u0001";
    out.append(marker.substr(1));
    out += '"';
    copied = at + length;
    changed = true;
  };
  for (std::size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == 'N' && body.substr(i, 3) == "NaN") {
      replace(i, 3, nan_marker);
      i += 2;
    } else if (c == 'I' && body.substr(i, 8) == "Infinity") {
      replace(i, 8, inf_marker);
      i += 7;
    } else if (c == '-' && body.substr(i, 9) == "-Infinity") {
      replace(i, 9, ninf_marker);
      i += 8;
    }
  }
  if (!changed) return std::string(body);
  out.append(body.substr(copied));
  return out;
}

inline nlohmann::json parse_body(std::string_view body) {
  try {
    return nlohmann::json::parse(rewrite_nonfinite_tokens(body));
  } catch (const nlohmann::json::exception& e) {
    throw invalid_argument(std::string("JSON Parse error: ") + e.what());
  }
}

inline bool is_b64(const nlohmann::json& v) { return v.is_object() && v.size() == 1 && v.contains("b64"); }

/// A value as an error message shows it: primitives as JSON (cut at 40 characters), lists and
/// objects by their kind (dumping one is recursive, and a hostile request nests them deeply).
inline std::string describe(const nlohmann::json& v) {
  if (v.is_structured()) return std::string("a JSON ") + v.type_name();
  return "JSON value " + v.dump().substr(0, 40);
}

/// Writes one JSON leaf into element `i` of `t`, converting to t's dtype; 400 otherwise.
inline void put_leaf(HostTensor& t, std::size_t i, const nlohmann::json& v, const std::string& name) {
  auto bad = [&](const std::string& why) { throw invalid_argument("input " + name + ": " + why); };
  if (is_b64(v)) bad(std::string("a {\"b64\": ...} value needs a string input, and this one is ") + dtype_name(t.dtype));
  switch (t.dtype) {
    case DataType::float32:
    case DataType::float64: {
      double x;
      if (v.is_number()) {
        x = v.get<double>();
      } else if (v.is_string()) {
        const auto& s = v.get_ref<const std::string&>();
        if (s == nan_marker) x = std::numeric_limits<double>::quiet_NaN();
        else if (s == inf_marker) x = std::numeric_limits<double>::infinity();
        else if (s == ninf_marker) x = -std::numeric_limits<double>::infinity();
        else bad("JSON value \"" + s.substr(0, 40) + "\" is not a number");
      } else {
        bad(describe(v) + " is not a number");
      }
      if (t.dtype == DataType::float32) t.data<float>()[i] = static_cast<float>(x);
      else t.data<double>()[i] = x;
      return;
    }
    case DataType::int32:
    case DataType::int64: {
      if (!v.is_number_integer()) bad(describe(v) + " is not an integer");
      if (v.is_number_unsigned() && v.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<std::int64_t>::max())) {
        bad("JSON value " + v.dump() + " is out of range");
      }
      const std::int64_t x = v.get<std::int64_t>();
      if (t.dtype == DataType::int32) {
        if (x < std::numeric_limits<std::int32_t>::min() || x > std::numeric_limits<std::int32_t>::max()) {
          bad("JSON value " + v.dump() + " is out of int32's range");
        }
        t.data<std::int32_t>()[i] = static_cast<std::int32_t>(x);
      } else {
        t.data<std::int64_t>()[i] = x;
      }
      return;
    }
    case DataType::boolean:
      if (!v.is_boolean()) bad(describe(v) + " is not a bool");
      t.data<bool>()[i] = v.get<bool>();
      return;
  }
}

/// The shape of a nested JSON list (following first elements); a scalar has shape [].
inline std::vector<std::int64_t> nested_shape(const nlohmann::json& v) {
  std::vector<std::int64_t> shape;
  const nlohmann::json* p = &v;
  while (p->is_array()) {
    shape.push_back(std::int64_t(p->size()));
    if (p->empty() || shape.size() > 32) break;
    p = &(*p)[0];
  }
  return shape;
}

/// Copies nested list `v` of shape shape[axis:] into t from element `at`; 400 when ragged.
inline void fill_nested(HostTensor& t, std::size_t& at, const nlohmann::json& v, const std::vector<std::int64_t>& shape,
                        std::size_t axis, const std::string& name) {
  if (axis == shape.size()) {
    if (v.is_array()) throw invalid_argument("input " + name + ": the nested lists are deeper in some places than others");
    put_leaf(t, at++, v, name);
    return;
  }
  if (!v.is_array() || std::int64_t(v.size()) != shape[axis]) {
    throw invalid_argument("input " + name + ": the nested lists are ragged (expected " + std::to_string(shape[axis]) +
                           " elements at depth " + std::to_string(axis) + ")");
  }
  for (const auto& e : v) fill_nested(t, at, e, shape, axis + 1, name);
}

inline void check_fits(const TensorSpec& spec, const std::vector<std::int64_t>& shape) {
  if (!fits(spec.shape, shape)) {
    throw invalid_argument("input " + spec.name + ": shape " + shape_string(shape) + " does not fit the signature's " +
                           shape_string(spec.shape));
  }
}

/// True when nested list `v` is rectangular with shape shape[axis:] (checked before allocating:
/// the shape comes from first elements, and a ragged request must not size a tensor).
inline bool rectangular(const nlohmann::json& v, const std::vector<std::int64_t>& shape, std::size_t axis) {
  if (axis == shape.size()) return !v.is_array();
  if (!v.is_array() || std::int64_t(v.size()) != shape[axis]) return false;
  for (const auto& e : v) {
    if (!rectangular(e, shape, axis + 1)) return false;
  }
  return true;
}

/// One input from a nested list that holds the whole tensor.
inline HostTensor tensor_from_nested(const nlohmann::json& v, const TensorSpec& spec) {
  const auto shape = nested_shape(v);
  check_fits(spec, shape);
  if (!rectangular(v, shape, 0)) {
    throw invalid_argument("input " + spec.name + ": the nested lists are ragged (or deeper in some places than others)");
  }
  HostTensor t(spec.dtype, shape);
  std::size_t at = 0;
  fill_nested(t, at, v, shape, 0, spec.name);
  return t;
}

inline void append_number(std::string& out, double x, bool single) {
  if (std::isnan(x)) {
    out += "NaN";
  } else if (std::isinf(x)) {
    out += x > 0 ? "Infinity" : "-Infinity";
  } else {
    char buffer[32];
    const auto r = single ? std::to_chars(buffer, buffer + sizeof buffer, static_cast<float>(x))
                          : std::to_chars(buffer, buffer + sizeof buffer, x);
    out.append(buffer, r.ptr);
  }
}
inline void append_element(std::string& out, const HostTensor& t, std::size_t i) {
  switch (t.dtype) {
    case DataType::float32: append_number(out, t.data<float>()[i], true); break;
    case DataType::float64: append_number(out, t.data<double>()[i], false); break;
    case DataType::int32: out += std::to_string(t.data<std::int32_t>()[i]); break;
    case DataType::int64: out += std::to_string(t.data<std::int64_t>()[i]); break;
    case DataType::boolean: out += t.data<bool>()[i] ? "true" : "false"; break;
  }
}
/// Elements [at, at + prod(shape[axis:])) of t as nested lists.
inline void append_nested(std::string& out, const HostTensor& t, std::size_t& at, std::size_t axis) {
  if (axis == t.shape.size()) {
    append_element(out, t, at++);
    return;
  }
  out += '[';
  for (std::int64_t k = 0; k < t.shape[axis]; ++k) {
    if (k) out += ',';
    append_nested(out, t, at, axis + 1);
  }
  out += ']';
}
inline void append_string(std::string& out, const std::string& s) { out += nlohmann::json(s).dump(); }
}  // namespace detail

// ---- TensorFlow Serving ---------------------------------------------------------------------------
/// A parsed predict request: the inputs in the signature's order, and which form it came in.
struct PredictRequest {
  std::vector<HostTensor> inputs;
  bool row_form = true;
};

namespace detail {
inline PredictRequest parse_predict_document(std::string_view body, const Signature& signature);

/// The common predict request, read straight into a tensor: {"instances": X} or {"inputs": X}
/// (and optionally "signature_name") for a model with one floating-point input, X nested lists of
/// plain numbers. Building nlohmann's document and converting its numbers took longer than the
/// Fashion CNN's forward on one image; this reads each number once with std::from_chars (correctly
/// rounded to double, then to the input's dtype: the same values as the general parser). Returns
/// nullopt for anything else or anything unexpected (escapes, tokens, booleans, ragged or empty
/// lists, a shape that does not fit, trailing bytes), and the general parser then answers,
/// with its messages.
class NumericRequestReader {
 public:
  NumericRequestReader(std::string_view body, const Signature& signature) : s_(body), signature_(signature) {}

  std::optional<PredictRequest> read() {
    if (signature_.inputs.size() != 1) return std::nullopt;
    const TensorSpec& spec = signature_.inputs[0];
    if (spec.dtype != DataType::float32 && spec.dtype != DataType::float64) return std::nullopt;
    if (!skip_to('{')) return std::nullopt;
    bool have_value = false, row_form = false;
    for (;;) {
      std::string_view key;
      if (!string(key) || !skip_to(':')) return std::nullopt;
      if (key == "signature_name") {
        std::string_view name;
        if (!string(name) || name != signature_.name) return std::nullopt;
      } else if ((key == "instances" || key == "inputs") && !have_value) {
        have_value = true;
        row_form = key == "instances";
        if (!array(0)) return std::nullopt;
      } else {
        return std::nullopt;
      }
      whitespace();
      if (at_ < s_.size() && s_[at_] == ',') {
        ++at_;
        whitespace();
        continue;
      }
      if (!skip_to('}')) return std::nullopt;
      break;
    }
    whitespace();
    if (at_ != s_.size() || !have_value || leaf_depth_ == 0) return std::nullopt;
    shape_.resize(leaf_depth_);
    if (!fits(spec.shape, shape_)) return std::nullopt;
    std::uint64_t count = 1;
    for (auto d : shape_) count *= std::uint64_t(d);  // no overflow: every element was read
    if (count != values_.size()) return std::nullopt;
    PredictRequest r;
    r.row_form = row_form;
    HostTensor t(spec.dtype, shape_);
    if (spec.dtype == DataType::float32) {
      for (std::size_t i = 0; i < values_.size(); ++i) t.data<float>()[i] = static_cast<float>(values_[i]);
    } else {
      std::copy(values_.begin(), values_.end(), t.data<double>());
    }
    r.inputs.push_back(std::move(t));
    return r;
  }

 private:
  static bool space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
  void whitespace() {
    while (at_ < s_.size() && space(s_[at_])) ++at_;
  }
  bool skip_to(char c) {
    whitespace();
    if (at_ >= s_.size() || s_[at_] != c) return false;
    ++at_;
    whitespace();
    return true;
  }
  /// A string without escapes.
  bool string(std::string_view& out) {
    if (at_ >= s_.size() || s_[at_] != '"') return false;
    const std::size_t begin = ++at_;
    while (at_ < s_.size() && s_[at_] != '"') {
      if (s_[at_] == '\\' || static_cast<unsigned char>(s_[at_]) < 0x20) return false;
      ++at_;
    }
    if (at_ >= s_.size()) return false;
    out = s_.substr(begin, at_ - begin);
    ++at_;
    return true;
  }
  /// A list at `depth`: its extent must equal every other list's at that depth.
  bool array(std::size_t depth) {
    if (depth >= 32 || at_ >= s_.size() || s_[at_] != '[') return false;
    ++at_;
    whitespace();
    std::int64_t n = 0;
    for (;;) {
      if (at_ >= s_.size()) return false;
      const char c = s_[at_];
      if (c == '[') {
        if (leaf_depth_ != 0 && depth + 1 >= leaf_depth_) return false;
        if (!array(depth + 1)) return false;
      } else {
        if (leaf_depth_ == 0) leaf_depth_ = depth + 1;
        if (leaf_depth_ != depth + 1 || !number()) return false;
      }
      ++n;
      whitespace();
      if (at_ < s_.size() && s_[at_] == ',') {
        ++at_;
        whitespace();
        continue;
      }
      if (at_ < s_.size() && s_[at_] == ']') {
        ++at_;
        break;
      }
      return false;
    }
    if (shape_.size() <= depth) shape_.resize(depth + 1, -1);
    if (shape_[depth] == -1) shape_[depth] = n;
    return shape_[depth] == n;
  }
  /// A JSON number (no leading zeros, no '+', nothing but digits, '-', '.', 'e'), finite.
  bool number() {
    const std::size_t begin = at_;
    std::size_t i = at_;
    if (i < s_.size() && s_[i] == '-') ++i;
    if (i >= s_.size() || s_[i] < '0' || s_[i] > '9') return false;
    if (s_[i] == '0' && i + 1 < s_.size() && s_[i + 1] >= '0' && s_[i + 1] <= '9') return false;
    double v = 0;
    const auto r = std::from_chars(s_.data() + begin, s_.data() + s_.size(), v);
    if (r.ec != std::errc() || !std::isfinite(v)) return false;
    at_ = std::size_t(r.ptr - s_.data());
    const std::string_view token = s_.substr(begin, at_ - begin);
    const std::size_t dot = token.find('.');
    if (dot != std::string_view::npos && (dot + 1 == token.size() || token[dot + 1] < '0' || token[dot + 1] > '9')) {
      return false;  // "1." and "1.e5" are not JSON
    }
    // "-0" is an integer to the document parser, so 0.0 there: the same here.
    if (v == 0 && token.find_first_of(".eE") == std::string_view::npos) v = 0;
    values_.push_back(v);
    return true;
  }

  std::string_view s_;
  const Signature& signature_;
  std::size_t at_ = 0;
  std::size_t leaf_depth_ = 0;  // lists nest this deep (0: no number seen yet)
  std::vector<std::int64_t> shape_;
  std::vector<double> values_;
};
}  // namespace detail

/// Parses a :predict body against `signature`; ServingError 400 for anything malformed.
inline PredictRequest parse_predict(std::string_view body, const Signature& signature) {
  if (auto fast = detail::NumericRequestReader(body, signature).read()) return std::move(*fast);
  return detail::parse_predict_document(body, signature);
}

namespace detail {
/// parse_predict through nlohmann's document: every form, every message.
inline PredictRequest parse_predict_document(std::string_view body, const Signature& signature) {
  const nlohmann::json j = detail::parse_body(body);
  if (!j.is_object()) throw invalid_argument("the request body must be a JSON object");
  if (j.contains("signature_name")) {
    if (!j["signature_name"].is_string()) throw invalid_argument("'signature_name' must be a string");
    const auto& s = j["signature_name"].get_ref<const std::string&>();
    if (s != signature.name) throw invalid_argument("Serving signature name: \"" + s + "\" not found in signature def");
  }
  const bool rows = j.contains("instances"), columns = j.contains("inputs");
  if (rows == columns) throw invalid_argument("Missing 'inputs' or 'instances' key");
  for (const auto& [key, value] : j.items()) {
    if (key != "instances" && key != "inputs" && key != "signature_name") {
      throw invalid_argument("unexpected key '" + key + "' (expected 'instances' or 'inputs', and 'signature_name')");
    }
  }
  const auto& specs = signature.inputs;
  PredictRequest request;
  request.row_form = rows;
  auto index_of = [&](const std::string& name) {
    for (std::size_t i = 0; i < specs.size(); ++i) {
      if (specs[i].name == name) return i;
    }
    std::string known;
    for (const auto& s : specs) known += (known.empty() ? "" : ", ") + s.name;
    throw invalid_argument("unknown input '" + name + "' (the signature's inputs: " + known + ")");
  };
  // An object that is not a b64 value names the inputs; anything else is the single input's value.
  auto named = [](const nlohmann::json& v) { return v.is_object() && !detail::is_b64(v); };
  if (columns) {
    const auto& v = j["inputs"];
    std::vector<std::optional<HostTensor>> got(specs.size());
    if (named(v)) {
      for (const auto& [name, value] : v.items()) {
        const std::size_t i = index_of(name);
        got[i] = detail::tensor_from_nested(value, specs[i]);
      }
    } else {
      if (specs.size() != 1) throw invalid_argument("the model has several inputs: name them, {\"inputs\": {\"name\": ...}}");
      got[0] = detail::tensor_from_nested(v, specs[0]);
    }
    for (std::size_t i = 0; i < specs.size(); ++i) {
      if (!got[i]) throw invalid_argument("input " + specs[i].name + " is missing");
      request.inputs.push_back(std::move(*got[i]));
    }
    return request;
  }
  const auto& instances = j["instances"];
  if (!instances.is_array()) throw invalid_argument("'instances' must be a list");
  if (instances.empty()) throw invalid_argument("'instances' is empty");
  const std::int64_t n = std::int64_t(instances.size());
  // The first instance fixes each input's shape; every other must agree.
  std::vector<std::vector<std::int64_t>> item_shapes(specs.size());
  auto value_for = [&](const nlohmann::json& item, std::size_t i, std::int64_t k) -> const nlohmann::json& {
    if (named(item)) {
      for (const auto& [name, value] : item.items()) (void)index_of(name);
      if (!item.contains(specs[i].name)) {
        throw invalid_argument("instance " + std::to_string(k) + " lacks input " + specs[i].name);
      }
      return item[specs[i].name];
    }
    if (specs.size() != 1) {
      throw invalid_argument("the model has several inputs: each instance must be an object naming them");
    }
    return item;
  };
  for (std::size_t i = 0; i < specs.size(); ++i) {
    item_shapes[i] = detail::nested_shape(value_for(instances[0], i, 0));
    std::vector<std::int64_t> shape{n};
    shape.insert(shape.end(), item_shapes[i].begin(), item_shapes[i].end());
    detail::check_fits(specs[i], shape);
    // Every instance is checked before the tensor is allocated.
    for (std::int64_t k = 0; k < n; ++k) {
      const auto& v = value_for(instances[std::size_t(k)], i, k);
      if (!detail::rectangular(v, item_shapes[i], 0)) {
        throw invalid_argument("instance " + std::to_string(k) + " of input " + specs[i].name + " has shape " +
                               shape_string(detail::nested_shape(v)) + ", instance 0 has " + shape_string(item_shapes[i]) +
                               " (or its nested lists are ragged)");
      }
    }
    HostTensor t(specs[i].dtype, shape);
    std::size_t at = 0;
    for (std::int64_t k = 0; k < n; ++k) {
      detail::fill_nested(t, at, value_for(instances[std::size_t(k)], i, k), item_shapes[i], 0, specs[i].name);
    }
    request.inputs.push_back(std::move(t));
  }
  return request;
}

}  // namespace detail

/// The body answering a predict request: {"predictions": ...} (row form) or {"outputs": ...}.
inline std::string predict_response(const std::vector<HostTensor>& outputs, const Signature& signature, bool row_form) {
  std::string out;
  const bool single = outputs.size() == 1;
  // One value per output: bare for a single output, else an object by output name.
  auto append_each = [&](auto&& append_one) {
    if (!single) out += '{';
    for (std::size_t o = 0; o < outputs.size(); ++o) {
      if (!single) {
        if (o) out += ',';
        detail::append_string(out, signature.outputs[o].name);
        out += ':';
      }
      append_one(o);
    }
    if (!single) out += '}';
  };
  if (!row_form) {
    out += "{\"outputs\":";
    append_each([&](std::size_t o) {
      std::size_t at = 0;
      detail::append_nested(out, outputs[o], at, 0);
    });
    return out + "}";
  }
  std::int64_t n = -1;
  for (std::size_t o = 0; o < outputs.size(); ++o) {
    const auto& t = outputs[o];
    if (t.shape.empty() || (n >= 0 && t.shape[0] != n)) {
      throw ServingError(500, "INTERNAL", "output " + signature.outputs[o].name +
                                              " has no batch dimension shared with the other outputs; ask in column form");
    }
    n = t.shape[0];
  }
  std::vector<std::size_t> at(outputs.size(), 0);
  out += "{\"predictions\":[";
  for (std::int64_t k = 0; k < n; ++k) {
    if (k) out += ',';
    append_each([&](std::size_t o) { detail::append_nested(out, outputs[o], at[o], 1); });
  }
  return out + "]}";
}

// ---- the open inference protocol (KServe v2) ------------------------------------------------------
struct InferRequest {
  std::vector<HostTensor> inputs;  ///< in the signature's order
  std::string id;
  bool has_id = false;
  std::vector<std::size_t> outputs;  ///< signature indices to return, in the requested order
  std::vector<bool> binary;          ///< per entry of `outputs`: return as raw bytes
};

/// Parses an infer request. `json_length` is the Inference-Header-Content-Length value when the
/// header was sent (the JSON is then followed by the binary tensor data).
inline InferRequest parse_infer(std::string_view body, std::optional<std::size_t> json_length, const Signature& signature) {
  std::string_view json_part = body, binary;
  if (json_length) {
    if (*json_length > body.size()) {
      throw invalid_argument("Inference-Header-Content-Length " + std::to_string(*json_length) + " exceeds the body's " +
                             std::to_string(body.size()) + " bytes");
    }
    json_part = body.substr(0, *json_length);
    binary = body.substr(*json_length);
  }
  const nlohmann::json j = detail::parse_body(json_part);
  if (!j.is_object()) throw invalid_argument("the request body must be a JSON object");
  InferRequest r;
  if (j.contains("id")) {
    if (!j["id"].is_string()) throw invalid_argument("'id' must be a string");
    r.id = j["id"].get<std::string>();
    r.has_id = true;
  }
  bool binary_output = false;
  if (j.contains("parameters")) {
    const auto& p = j["parameters"];
    if (!p.is_object()) throw invalid_argument("'parameters' must be an object");
    if (p.contains("binary_data_output")) {
      if (!p["binary_data_output"].is_boolean()) throw invalid_argument("'binary_data_output' must be a bool");
      binary_output = p["binary_data_output"].get<bool>();
    }
  }
  if (!j.contains("inputs") || !j["inputs"].is_array()) throw invalid_argument("the request needs an 'inputs' list");
  const auto& specs = signature.inputs;
  std::vector<std::optional<HostTensor>> got(specs.size());
  std::size_t consumed = 0;
  for (const auto& in : j["inputs"]) {
    if (!in.is_object() || !in.contains("name") || !in["name"].is_string()) {
      throw invalid_argument("each input needs a string 'name'");
    }
    const std::string name = in["name"].get<std::string>();
    std::size_t i = 0;
    while (i < specs.size() && specs[i].name != name) ++i;
    if (i == specs.size()) throw invalid_argument("unexpected inference input '" + name + "'");
    if (got[i]) throw invalid_argument("input '" + name + "' is given twice");
    if (!in.contains("datatype") || !in["datatype"].is_string()) throw invalid_argument("input '" + name + "' needs a 'datatype'");
    DataType dtype;
    try {
      dtype = parse_v2_dtype(in["datatype"].get<std::string>());
    } catch (const value_error& e) {
      throw invalid_argument("input '" + name + "': " + e.what());
    }
    if (dtype != specs[i].dtype) {
      throw invalid_argument("input '" + name + "' has datatype " + in["datatype"].get<std::string>() + ", the model expects " +
                             v2_dtype_name(specs[i].dtype));
    }
    if (!in.contains("shape") || !in["shape"].is_array()) throw invalid_argument("input '" + name + "' needs a 'shape'");
    std::vector<std::int64_t> shape;
    for (const auto& d : in["shape"]) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0 || d.get<std::int64_t>() > (std::int64_t(1) << 40)) {
        throw invalid_argument("input '" + name + "': shape entries must be non-negative integers");
      }
      shape.push_back(d.get<std::int64_t>());
    }
    detail::check_fits(specs[i], shape);
    // The element count is checked against what the request carries before anything is allocated.
    std::int64_t elements;
    try {
      elements = checked_elements(shape, dtype_size(dtype));
    } catch (const value_error& e) {
      throw invalid_argument("input '" + name + "': " + e.what());
    }
    const std::uint64_t needed = std::uint64_t(elements) * dtype_size(dtype);
    const nlohmann::json* parameters = in.contains("parameters") ? &in["parameters"] : nullptr;
    if (parameters != nullptr && parameters->is_object() && parameters->contains("binary_data_size")) {
      const auto& b = (*parameters)["binary_data_size"];
      if (!b.is_number_unsigned()) throw invalid_argument("input '" + name + "': 'binary_data_size' must be a non-negative integer");
      const std::uint64_t size = b.get<std::uint64_t>();
      if (size != needed) {
        throw invalid_argument("input '" + name + "': binary_data_size " + std::to_string(size) + " is not the " +
                               std::to_string(needed) + " bytes of shape " + shape_string(shape));
      }
      if (binary.size() - consumed < size) throw invalid_argument("input '" + name + "': the binary data ends early");
      HostTensor t(dtype, shape);
      if (size != 0) std::memcpy(t.bytes.data(), binary.data() + consumed, size);
      consumed += size;
      if (dtype == DataType::boolean) {  // one byte each; anything but 0 is true
        for (auto& byte : t.bytes) byte = byte != 0;
      }
      got[i] = std::move(t);
    } else {
      if (!in.contains("data")) throw invalid_argument("input '" + name + "' has neither 'data' nor binary data");
      const auto& data = in["data"];
      // Flat or nested, in row-major order: count the leaves first.
      std::vector<const nlohmann::json*> leaves;
      std::vector<const nlohmann::json*> stack{&data};
      while (!stack.empty()) {
        const nlohmann::json* v = stack.back();
        stack.pop_back();
        if (v->is_array()) {
          for (auto it = v->rbegin(); it != v->rend(); ++it) stack.push_back(&*it);
        } else {
          leaves.push_back(v);
        }
      }
      if (std::int64_t(leaves.size()) != elements) {
        throw invalid_argument("input '" + name + "': 'data' has " + std::to_string(leaves.size()) + " elements, shape " +
                               shape_string(shape) + " needs " + std::to_string(elements));
      }
      HostTensor t(dtype, shape);
      for (std::size_t k = 0; k < leaves.size(); ++k) detail::put_leaf(t, k, *leaves[k], name);
      got[i] = std::move(t);
    }
  }
  if (consumed != binary.size()) {
    throw invalid_argument(std::to_string(binary.size() - consumed) + " bytes of binary data belong to no input");
  }
  for (std::size_t i = 0; i < specs.size(); ++i) {
    if (!got[i]) throw invalid_argument("expected input '" + specs[i].name + "'");
    r.inputs.push_back(std::move(*got[i]));
  }
  if (j.contains("outputs")) {
    if (!j["outputs"].is_array()) throw invalid_argument("'outputs' must be a list");
    for (const auto& o : j["outputs"]) {
      if (!o.is_object() || !o.contains("name") || !o["name"].is_string()) {
        throw invalid_argument("each requested output needs a string 'name'");
      }
      const std::string name = o["name"].get<std::string>();
      std::size_t k = 0;
      while (k < signature.outputs.size() && signature.outputs[k].name != name) ++k;
      if (k == signature.outputs.size()) throw invalid_argument("unexpected inference output '" + name + "'");
      bool as_binary = binary_output;
      if (o.contains("parameters") && o["parameters"].is_object() && o["parameters"].contains("binary_data")) {
        if (!o["parameters"]["binary_data"].is_boolean()) throw invalid_argument("'binary_data' must be a bool");
        as_binary = o["parameters"]["binary_data"].get<bool>();
      }
      r.outputs.push_back(k);
      r.binary.push_back(as_binary);
    }
  } else {
    for (std::size_t k = 0; k < signature.outputs.size(); ++k) {
      r.outputs.push_back(k);
      r.binary.push_back(binary_output);
    }
  }
  return r;
}

/// An infer response: the body, and the JSON part's length when binary outputs follow it (for
/// the Inference-Header-Content-Length header).
struct InferResponse {
  std::string body;
  std::optional<std::size_t> json_length;
};

inline InferResponse infer_response(const InferRequest& r, const std::vector<HostTensor>& outputs,
                                    const Signature& signature, const std::string& model, std::int64_t version) {
  std::string json = "{\"model_name\":";
  detail::append_string(json, model);
  json += ",\"model_version\":\"" + std::to_string(version) + "\"";
  if (r.has_id) {
    json += ",\"id\":";
    detail::append_string(json, r.id);
  }
  json += ",\"outputs\":[";
  std::string bytes;
  for (std::size_t k = 0; k < r.outputs.size(); ++k) {
    const HostTensor& t = outputs[r.outputs[k]];
    if (k) json += ',';
    json += "{\"name\":";
    detail::append_string(json, signature.outputs[r.outputs[k]].name);
    json += ",\"datatype\":\"";
    json += v2_dtype_name(t.dtype);
    json += "\",\"shape\":[";
    for (std::size_t d = 0; d < t.shape.size(); ++d) json += (d ? "," : "") + std::to_string(t.shape[d]);
    json += "]";
    if (r.binary[k]) {
      json += ",\"parameters\":{\"binary_data_size\":" + std::to_string(t.bytes.size()) + "}}";
      bytes.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
    } else {
      json += ",\"data\":[";
      for (std::int64_t e = 0; e < t.elements(); ++e) {
        if (e) json += ',';
        detail::append_element(json, t, std::size_t(e));
      }
      json += "]}";
    }
  }
  json += "]}";
  InferResponse response;
  if (!bytes.empty() || std::find(r.binary.begin(), r.binary.end(), true) != r.binary.end()) {
    response.json_length = json.size();
    response.body = json + bytes;
  } else {
    response.body = std::move(json);
  }
  return response;
}

}  // namespace tessera::serve
