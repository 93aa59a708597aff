// What an exported model promises: its input and output tensors (the signature), its
// architecture and hyperparameters, and a structural hash of its type, written next to its weights
// as manifest.json. The server builds the model from the architecture and hyperparameters, checks
// the hash against the type it has registered under that architecture's name, then loads the
// weights; each mismatch is an error that says what differs, never a model serving garbage.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::serve {

/// The element types a served tensor may have (tessera's dtypes).
enum class DataType { float32, float64, int32, int64, boolean };

namespace detail {
/// Each DataType's names in the three vocabularies, and its size; indexed by the enum's value.
struct DataTypeInfo {
  DataType type;
  const char* name;     ///< tessera's and NumPy's ("float32"), as manifests write it
  const char* tf_name;  ///< TensorFlow's enum ("DT_FLOAT"), as TensorFlow Serving's metadata writes it
  const char* v2_name;  ///< the open inference protocol's ("FP32")
  std::size_t size;     ///< bytes per element
};
inline constexpr DataTypeInfo data_types[] = {
    {DataType::float32, "float32", "DT_FLOAT", "FP32", 4},  {DataType::float64, "float64", "DT_DOUBLE", "FP64", 8},
    {DataType::int32, "int32", "DT_INT32", "INT32", 4},     {DataType::int64, "int64", "DT_INT64", "INT64", 8},
    {DataType::boolean, "bool", "DT_BOOL", "BOOL", 1},
};
inline const DataTypeInfo& data_type_info(DataType t) { return data_types[static_cast<std::size_t>(t)]; }
}  // namespace detail

inline const char* dtype_name(DataType t) { return detail::data_type_info(t).name; }
inline const char* tf_dtype_name(DataType t) { return detail::data_type_info(t).tf_name; }
inline const char* v2_dtype_name(DataType t) { return detail::data_type_info(t).v2_name; }
inline std::size_t dtype_size(DataType t) { return detail::data_type_info(t).size; }

/// Parses a manifest's dtype name; value_error naming the accepted ones otherwise.
TESSERA_OUT_OF_LINE DataType parse_dtype(std::string_view name);
/// Parses an open-inference-protocol datatype ("FP32"); value_error for the ones tessera has not.
TESSERA_OUT_OF_LINE DataType parse_v2_dtype(std::string_view name);

template <class T>
constexpr DataType dtype_of() {
  static_assert(is_supported_dtype_v<T>, "tessera::serve: unsupported element type");
  if constexpr (std::is_same_v<T, float>) return DataType::float32;
  else if constexpr (std::is_same_v<T, double>) return DataType::float64;
  else if constexpr (std::is_same_v<T, std::int32_t>) return DataType::int32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return DataType::int64;
  else return DataType::boolean;
}

/// One input or output of a signature: name, dtype and shape, -1 marking a dimension that varies
/// between requests (the batch).
struct TensorSpec {
  std::string name;
  DataType dtype = DataType::float32;
  std::vector<std::int64_t> shape;
};

/// A model's inputs and outputs, under TensorFlow Serving's signature name.
struct Signature {
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  std::string name = "serving_default";
};

TESSERA_OUT_OF_LINE std::string shape_string(const std::vector<std::int64_t>& shape);

// ---- the structural hash --------------------------------------------------------------------------
namespace detail {
constexpr std::uint64_t fnv_prime = 1099511628211ull;
constexpr std::uint64_t fnv_offset = 14695981039346656037ull;

constexpr std::uint64_t hash_text(std::uint64_t h, const char* s) {
  for (; *s != '\0'; ++s) {
    h ^= static_cast<unsigned char>(*s);
    h *= fnv_prime;
  }
  return (h ^ 0xffu) * fnv_prime;  // a terminator, so "ab" + "c" differs from "a" + "bc"
}
constexpr std::uint64_t hash_number(std::uint64_t h, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    h ^= (v >> (8 * i)) & 0xffu;
    h *= fnv_prime;
  }
  return h;
}

template <class TensorType>
struct tensor_traits;
template <class T, std::size_t R, class B>
struct tensor_traits<Tensor<T, R, B>> {
  using value_type = T;
  static constexpr std::size_t rank = R;
};

template <class M>
constexpr std::uint64_t module_hash(std::uint64_t h);

template <class Member>
constexpr std::uint64_t member_hash(std::uint64_t h) {
  if constexpr (nn::detail::is_parameter_member<Member>::value || nn::detail::is_buffer_member<Member>::value) {
    using X = std::decay_t<decltype(std::declval<Member&>().tensor)>;
    h = hash_text(h, nn::detail::is_parameter_member<Member>::value ? "parameter" : "buffer");
    h = hash_text(h, ::tessera::dtype_name<typename tensor_traits<X>::value_type>());
    return hash_number(h, tensor_traits<X>::rank);
  } else if constexpr (nn::detail::is_child_member<Member>::value) {
    using Child = std::decay_t<decltype(std::declval<Member&>().module)>;
    return module_hash<Child>(hash_text(h, "child"));
  } else {
    return hash_text(h, "member");
  }
}

template <class Tuple, std::size_t... I>
constexpr std::uint64_t members_hash(std::uint64_t h, std::index_sequence<I...>) {
  ((h = member_hash<std::decay_t<std::tuple_element_t<I, Tuple>>>(h)), ...);
  return h;
}

template <class M, class = void>
struct has_members : std::false_type {};
template <class M>
struct has_members<M, std::void_t<decltype(std::declval<M&>().members())>> : std::true_type {};

template <class M>
constexpr std::uint64_t module_hash(std::uint64_t h) {
  if constexpr (nn::detail::has_type_name<M>::value) {
    h = hash_text(h, M::type_name);
  } else {
    h = hash_text(h, "Module");
  }
  if constexpr (has_members<M>::value) {
    using Members = std::decay_t<decltype(std::declval<M&>().members())>;
    h = hash_number(h, std::tuple_size_v<Members>);
    h = members_hash<Members>(h, std::make_index_sequence<std::tuple_size_v<Members>>{});
  }
  return hash_text(h, "end");
}
}  // namespace detail

/// A hash of a module type's structure, computed by the compiler: the layer kinds (type_name), in
/// order and nesting, with each parameter's and buffer's dtype and rank. Widths and other run-time
/// values are not part of it (weight shapes are checked when the weights load), and neither is the
/// backend, so a model trained on the GPU is served on the CPU. The same on every compiler: it
/// hashes tessera's own names, not the compiler's spelling of the type.
template <class M>
constexpr std::uint64_t structural_hash() {
  return detail::module_hash<std::decay_t<M>>(detail::fnv_offset);
}

/// The hash as manifests write it: 16 lowercase hex digits.
inline std::string hash_string(std::uint64_t h) {
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(h));
  return buffer;
}

// ---- the manifest ---------------------------------------------------------------------------------
/// The contents of an exported version's manifest.json.
struct Manifest {
  static constexpr const char* format = "tessera.exported_model";
  static constexpr int format_version = 1;
  static constexpr const char* weights_file = "weights.safetensors";

  std::string architecture;
  std::string structural_hash;  ///< hash_string(structural_hash<Model>())
  nlohmann::json hyperparameters = nlohmann::json::object();
  Signature signature;
};

namespace detail {
TESSERA_OUT_OF_LINE nlohmann::json spec_json(const TensorSpec& s);
TESSERA_OUT_OF_LINE TensorSpec spec_from_json(const nlohmann::json& j, const std::string& where);
}  // namespace detail

TESSERA_OUT_OF_LINE nlohmann::json to_json(const Manifest& m);

/// Reads a manifest; value_error saying which field is missing or wrong. `where` prefixes messages.
TESSERA_OUT_OF_LINE Manifest manifest_from_json(const nlohmann::json& j, const std::string& where);

#if TESSERA_OUT_OF_LINE_DEFINITIONS

TESSERA_OUT_OF_LINE DataType parse_dtype(std::string_view name) {
  for (const auto& d : detail::data_types) {
    if (name == d.name) return d.type;
  }
  throw value_error("unknown dtype '" + std::string(name) + "' (expected float32, float64, int32, int64 or bool)");
}

TESSERA_OUT_OF_LINE DataType parse_v2_dtype(std::string_view name) {
  for (const auto& d : detail::data_types) {
    if (name == d.v2_name) return d.type;
  }
  throw value_error("datatype '" + std::string(name) +
                    "' is not supported (expected FP32, FP64, INT32, INT64 or BOOL)");
}

TESSERA_OUT_OF_LINE std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

TESSERA_OUT_OF_LINE nlohmann::json detail::spec_json(const TensorSpec& s) {
  return {{"name", s.name}, {"dtype", dtype_name(s.dtype)}, {"shape", s.shape}};
}

TESSERA_OUT_OF_LINE TensorSpec detail::spec_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw value_error(where + " must be an object");
  TensorSpec s;
  if (!j.contains("name") || !j["name"].is_string() || j["name"].get<std::string>().empty()) {
    throw value_error(where + " needs a non-empty string \"name\"");
  }
  s.name = j["name"].get<std::string>();
  if (!j.contains("dtype") || !j["dtype"].is_string()) throw value_error(where + " needs a string \"dtype\"");
  s.dtype = parse_dtype(j["dtype"].get<std::string>());
  if (!j.contains("shape") || !j["shape"].is_array()) throw value_error(where + " needs an array \"shape\"");
  for (const auto& d : j["shape"]) {
    if (!d.is_number_integer() || d.get<std::int64_t>() < -1 || d.get<std::int64_t>() > (std::int64_t(1) << 31)) {
      throw value_error(where + ": shape entries are integers from -1 (varies) to 2^31");
    }
    s.shape.push_back(d.get<std::int64_t>());
  }
  return s;
}

TESSERA_OUT_OF_LINE nlohmann::json to_json(const Manifest& m) {
  nlohmann::json inputs = nlohmann::json::array(), outputs = nlohmann::json::array();
  for (const auto& s : m.signature.inputs) inputs.push_back(detail::spec_json(s));
  for (const auto& s : m.signature.outputs) outputs.push_back(detail::spec_json(s));
  return {{"format", Manifest::format},
          {"format_version", Manifest::format_version},
          {"architecture", m.architecture},
          {"structural_hash", m.structural_hash},
          {"hyperparameters", m.hyperparameters},
          {"signature_name", m.signature.name},
          {"inputs", inputs},
          {"outputs", outputs},
          {"weights", Manifest::weights_file}};
}

TESSERA_OUT_OF_LINE Manifest manifest_from_json(const nlohmann::json& j, const std::string& where) {
  auto fail = [&](const std::string& what) { throw value_error(where + ": " + what); };
  if (!j.is_object()) fail("the manifest is not a JSON object");
  auto text = [&](const char* key) { return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : ""; };
  if (text("format") != Manifest::format) {
    fail(std::string("\"format\" is not \"") + Manifest::format + "\"");
  }
  if (!j.contains("format_version") || !j["format_version"].is_number_integer() ||
      j["format_version"].get<int>() != Manifest::format_version) {
    fail("unsupported \"format_version\" (this build reads " + std::to_string(Manifest::format_version) + ")");
  }
  Manifest m;
  auto string_field = [&](const char* key) {
    if (!j.contains(key) || !j[key].is_string() || j[key].get<std::string>().empty()) {
      fail(std::string("needs a non-empty string \"") + key + "\"");
    }
    return j[key].get<std::string>();
  };
  m.architecture = string_field("architecture");
  m.structural_hash = string_field("structural_hash");
  m.signature.name = string_field("signature_name");
  if (j.contains("hyperparameters")) {
    if (!j["hyperparameters"].is_object()) fail("\"hyperparameters\" must be an object");
    m.hyperparameters = j["hyperparameters"];
  }
  for (const char* key : {"inputs", "outputs"}) {
    if (!j.contains(key) || !j[key].is_array() || j[key].empty()) fail(std::string("needs a non-empty array \"") + key + "\"");
    auto& specs = std::string_view(key) == "inputs" ? m.signature.inputs : m.signature.outputs;
    for (std::size_t i = 0; i < j[key].size(); ++i) {
      specs.push_back(detail::spec_from_json(j[key][i], where + ": " + key + "[" + std::to_string(i) + "]"));
      for (std::size_t k = 0; k + 1 < specs.size(); ++k) {
        if (specs[k].name == specs.back().name) fail(std::string(key) + " name \"" + specs.back().name + "\" twice");
      }
    }
  }
  if (text("weights") != Manifest::weights_file) {
    fail(std::string("\"weights\" must be \"") + Manifest::weights_file + "\"");
  }
  return m;
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

}  // namespace tessera::serve
