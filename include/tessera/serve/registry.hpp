// The model types a server can serve, registered by architecture name, the type-erased servable
// each loaded version becomes, and loading a version directory through the registry.
//
// tessera's models are C++ types, so the server is compiled with the types it serves (the way
// llama.cpp's server is compiled with its architectures): a registration names the architecture,
// its input tensor types and a factory that builds the model from the manifest's hyperparameters.
//
//   serve::ModelRegistry registry;
//   registry.add<Tensor<float, 2>>("mlp", [](const nlohmann::json& hp) {
//     return nn::sequential(nn::Linear<float>(784, hp.at("hidden")), nn::ReLU{}, nn::Linear<float>(hp.at("hidden"), 10));
//   });
//
// A third argument replaces the forward (default: `model(inputs...)`); it may return one
// expression or a std::tuple of them, one per output of the signature. Inference runs that forward
// in eval mode with no autodiff: the fused forward expression, materialized once per output.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "tessera/backend/cpu/device.hpp"
#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/io/file.hpp"
#include "tessera/serve/signature.hpp"

namespace tessera::serve {

/// The largest tensor a request or a manifest may describe (16 GiB): beyond it, or when the
/// element count overflows, a shape is an error before anything is allocated.
inline constexpr std::uint64_t max_tensor_bytes = std::uint64_t(1) << 34;

/// The element count of `shape`; value_error for a negative extent, an overflow, or more than
/// max_tensor_bytes of `element_size`-byte elements.
TESSERA_OUT_OF_LINE std::int64_t checked_elements(const std::vector<std::int64_t>& shape, std::size_t element_size);

/// A tensor on the host in transit between the protocols and a model: dtype, shape and the
/// elements as little-endian bytes in row-major order.
struct HostTensor {
  DataType dtype = DataType::float32;
  std::vector<std::int64_t> shape;
  std::vector<unsigned char> bytes;

  HostTensor() = default;
  /// Zero-filled; value_error for a shape checked_elements refuses.
  HostTensor(DataType t, std::vector<std::int64_t> s) : dtype(t), shape(std::move(s)) {
    bytes.resize(static_cast<std::size_t>(checked_elements(shape, dtype_size(dtype))) * dtype_size(dtype));
  }
  std::int64_t elements() const { return std::int64_t(bytes.size() / dtype_size(dtype)); }
  template <class T>
  T* data() {
    return reinterpret_cast<T*>(bytes.data());
  }
  template <class T>
  const T* data() const {
    return reinterpret_cast<const T*>(bytes.data());
  }
};

/// A loaded model version, ready to run. Thread-safe: run may be called concurrently.
class Servable {
 public:
  virtual ~Servable() = default;
  /// Runs the model on `inputs` (in the signature's order, dtypes and ranks already checked) and
  /// returns the outputs in the signature's order. value_error or shape_error for inputs the model
  /// rejects (the server answers 400 with the message).
  virtual std::vector<HostTensor> run(const std::vector<HostTensor>& inputs) const = 0;
};

/// The default forward: the model called on its inputs.
struct CallModel {
  template <class M, class... X>
  auto operator()(const M& model, const X&... x) const {
    return model(x...);
  }
};

namespace detail {
template <class X>
struct is_tuple : std::false_type {};
template <class... X>
struct is_tuple<std::tuple<X...>> : std::true_type {};

/// The forward's outputs as a tuple, whether it returned one expression or a tuple of them.
template <class R>
auto as_tuple(R&& r) {
  if constexpr (is_tuple<std::decay_t<R>>::value) {
    return std::forward<R>(r);
  } else {
    return std::tuple<std::decay_t<R>>(std::forward<R>(r));
  }
}

template <class TensorType>
struct input_traits;
template <class T, std::size_t R>
struct input_traits<Tensor<T, R, cpu>> {
  using value_type = T;
  static constexpr std::size_t rank = R;
};

template <class T, std::size_t R>
Tensor<T, R, cpu> to_tensor(const HostTensor& h, const std::string& name) {
  if (h.dtype != dtype_of<T>()) {
    throw value_error("input " + name + ": expected " + dtype_name(dtype_of<T>()) + ", got " + dtype_name(h.dtype));
  }
  if (h.shape.size() != R) {
    throw shape_error("input " + name + ": expected rank " + std::to_string(R) + ", got shape " + shape_string(h.shape));
  }
  Shape<R> s{};
  for (std::size_t i = 0; i < R; ++i) s[i] = static_cast<index_t>(h.shape[i]);
  auto t = Tensor<T, R, cpu>::uninitialized(s);
  if (!h.bytes.empty()) std::memcpy(t.data(), h.bytes.data(), h.bytes.size());
  return t;
}

template <class E>
HostTensor to_host(const E& e) {
  using T = value_type_t<E>;
  const Tensor<T, rank_v<E>, cpu> t = e;  // one materialization of the fused expression
  std::vector<std::int64_t> shape(t.shape().begin(), t.shape().end());
  HostTensor h(dtype_of<T>(), std::move(shape));
  if constexpr (rank_v<E> == 0) {
    *h.data<T>() = t.item();
  } else if (t.is_contiguous()) {
    if (!h.bytes.empty()) std::memcpy(h.bytes.data(), t.data(), h.bytes.size());
  } else {
    const Tensor<T, rank_v<E>, cpu> dense = t + T(0);  // a strided view made dense
    if (!h.bytes.empty()) std::memcpy(h.bytes.data(), dense.data(), h.bytes.size());
  }
  return h;
}

/// The dtype and rank of each output of a forward, known at compile time.
template <class Tuple, std::size_t... I>
std::vector<std::pair<DataType, std::size_t>> output_kinds(std::index_sequence<I...>) {
  return {{dtype_of<value_type_t<std::tuple_element_t<I, Tuple>>>(), rank_v<std::tuple_element_t<I, Tuple>>}...};
}

template <class M, class Forward, class... Inputs>
class ServableModel final : public Servable {
 public:
  ServableModel(M model, Forward forward, std::vector<std::string> input_names)
      : model_(std::move(model)), forward_(std::move(forward)), names_(std::move(input_names)) {
    model_.eval();
  }
  std::vector<HostTensor> run(const std::vector<HostTensor>& inputs) const override {
    if (inputs.size() != sizeof...(Inputs)) {
      throw value_error("expected " + std::to_string(sizeof...(Inputs)) + " inputs, got " + std::to_string(inputs.size()));
    }
    return run_with(inputs, std::index_sequence_for<Inputs...>{});
  }

 private:
  template <std::size_t... I>
  std::vector<HostTensor> run_with(const std::vector<HostTensor>& inputs, std::index_sequence<I...>) const {
    const std::tuple<Inputs...> xs{
        to_tensor<typename input_traits<Inputs>::value_type, input_traits<Inputs>::rank>(inputs[I], names_[I])...};
    auto outputs = as_tuple(forward_(model_, std::get<I>(xs)...));
    return std::apply([](const auto&... e) { return std::vector<HostTensor>{to_host(e)...}; }, outputs);
  }
  M model_;
  Forward forward_;
  std::vector<std::string> names_;
};
}  // namespace detail

/// One registered architecture: how to check a manifest against it and load a version.
struct RegisteredArchitecture {
  std::string name;
  std::uint64_t structural_hash = 0;
  std::vector<std::pair<DataType, std::size_t>> inputs;   ///< dtype and rank of each input
  std::vector<std::pair<DataType, std::size_t>> outputs;  ///< dtype and rank of each output
  /// Builds the model from the manifest's hyperparameters and loads the weights file.
  std::function<std::unique_ptr<Servable>(const Manifest&, const std::string& weights_path)> build;
};

/// The architectures a server can serve.
class ModelRegistry {
 public:
  /// Registers `factory` (nlohmann::json hyperparameters -> model) under `name`, for inputs of
  /// types Inputs (host tensors: Tensor<T, R>). Returns *this to chain registrations.
  template <class... Inputs, class Factory, class Forward = CallModel>
  ModelRegistry& add(const std::string& name, Factory factory, Forward forward = {}) {
    static_assert(sizeof...(Inputs) > 0, "tessera::serve: name the input tensor types: registry.add<Tensor<float, 2>>(...)");
    using M = std::decay_t<decltype(factory(std::declval<const nlohmann::json&>()))>;
    using Outputs = decltype(detail::as_tuple(forward(std::declval<const M&>(), std::declval<const Inputs&>()...)));
    if (name.empty()) throw value_error("ModelRegistry::add: empty architecture name");
    if (architectures_.count(name) != 0) throw value_error("ModelRegistry::add: '" + name + "' is registered already");
    RegisteredArchitecture a;
    a.name = name;
    a.structural_hash = structural_hash<M>();
    a.inputs = {{dtype_of<typename detail::input_traits<Inputs>::value_type>(), detail::input_traits<Inputs>::rank}...};
    a.outputs = detail::output_kinds<Outputs>(std::make_index_sequence<std::tuple_size_v<Outputs>>{});
    a.build = [factory, forward](const Manifest& manifest, const std::string& weights_path) -> std::unique_ptr<Servable> {
      M model = factory(manifest.hyperparameters);
      io::load_weights(weights_path, model, /*strict=*/true);
      std::vector<std::string> names;
      for (const auto& s : manifest.signature.inputs) names.push_back(s.name);
      return std::make_unique<detail::ServableModel<M, Forward, Inputs...>>(std::move(model), forward, std::move(names));
    };
    architectures_.emplace(name, std::move(a));
    return *this;
  }

  const RegisteredArchitecture* find(const std::string& name) const {
    const auto it = architectures_.find(name);
    return it == architectures_.end() ? nullptr : &it->second;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, a] : architectures_) out.push_back(name);
    return out;
  }

 private:
  std::map<std::string, RegisteredArchitecture> architectures_;
};

namespace detail {
/// Checks a manifest against its registered architecture; value_error saying what differs.
TESSERA_OUT_OF_LINE void check_manifest(const Manifest& m, const RegisteredArchitecture& a);

/// The signature's shape with each -1 made `fill`.
inline std::vector<std::int64_t> concrete_shape(const std::vector<std::int64_t>& s, std::int64_t fill) {
  std::vector<std::int64_t> out = s;
  for (auto& d : out) {
    if (d < 0) d = fill;
  }
  return out;
}

/// True when `shape` fits `spec` (-1 matches any extent).
inline bool fits(const std::vector<std::int64_t>& spec, const std::vector<std::int64_t>& shape) {
  if (spec.size() != shape.size()) return false;
  for (std::size_t i = 0; i < spec.size(); ++i) {
    if (spec[i] >= 0 && spec[i] != shape[i]) return false;
  }
  return true;
}

/// Loads the version in `dir`: manifest, checks, model, weights, and one run on a single zero
/// example whose outputs must fit the signature. Throws with the reason.
TESSERA_OUT_OF_LINE std::unique_ptr<Servable> load_servable(const ModelRegistry& registry, const std::string& dir,
                                                            Manifest& manifest);
}  // namespace detail

#if TESSERA_OUT_OF_LINE_DEFINITIONS

TESSERA_OUT_OF_LINE std::int64_t checked_elements(const std::vector<std::int64_t>& shape, std::size_t element_size) {
  // The nonzero extents are bounded even beside a zero (an empty tensor): the tensor's element
  // count and strides are still products of them.
  std::uint64_t nonzero = 1;
  bool empty = false;
  for (auto d : shape) {
    if (d < 0) throw value_error("shape " + shape_string(shape) + " has a negative extent");
    if (d == 0)
      empty = true;
    else if (nonzero > max_tensor_bytes / std::uint64_t(d))
      nonzero = max_tensor_bytes + 1;
    else
      nonzero *= std::uint64_t(d);
  }
  if (nonzero * element_size > max_tensor_bytes || nonzero > max_tensor_bytes) {
    throw value_error("shape " + shape_string(shape) + " is too large (more than " +
                      std::to_string(max_tensor_bytes >> 30) + " GiB)");
  }
  return empty ? 0 : std::int64_t(nonzero);
}

TESSERA_OUT_OF_LINE void detail::check_manifest(const Manifest& m, const RegisteredArchitecture& a) {
  if (m.structural_hash != hash_string(a.structural_hash)) {
    throw value_error("structural hash " + m.structural_hash + " differs from architecture '" + a.name +
                      "' as this server has it (" + hash_string(a.structural_hash) +
                      "): the weights come from a different model type");
  }
  auto check = [&](const std::vector<TensorSpec>& specs, const std::vector<std::pair<DataType, std::size_t>>& kinds,
                   const char* what) {
    if (specs.size() != kinds.size()) {
      throw value_error(std::string("the signature has ") + std::to_string(specs.size()) + " " + what + ", architecture '" +
                        a.name + "' has " + std::to_string(kinds.size()));
    }
    for (std::size_t i = 0; i < specs.size(); ++i) {
      if (specs[i].dtype != kinds[i].first || specs[i].shape.size() != kinds[i].second) {
        throw value_error(std::string("signature ") + what + " " + specs[i].name + " is " + dtype_name(specs[i].dtype) + " " +
                          shape_string(specs[i].shape) + ", architecture '" + a.name + "' takes " +
                          dtype_name(kinds[i].first) + " of rank " + std::to_string(kinds[i].second));
      }
    }
  };
  check(m.signature.inputs, a.inputs, "inputs");
  check(m.signature.outputs, a.outputs, "outputs");
}

TESSERA_OUT_OF_LINE std::unique_ptr<Servable> detail::load_servable(const ModelRegistry& registry,
                                                                    const std::string& dir, Manifest& manifest) {
  const auto bytes = io::read_file(dir + "/manifest.json");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(bytes.begin(), bytes.end());
  } catch (const nlohmann::json::exception& e) {
    throw value_error(dir + "/manifest.json: not valid JSON: " + e.what());
  }
  manifest = manifest_from_json(j, dir + "/manifest.json");
  const RegisteredArchitecture* a = registry.find(manifest.architecture);
  if (a == nullptr) {
    std::string known;
    for (const auto& n : registry.names()) known += (known.empty() ? "" : ", ") + n;
    throw value_error("architecture '" + manifest.architecture + "' is not registered in this server (it has: " + known + ")");
  }
  check_manifest(manifest, *a);
  std::unique_ptr<Servable> servable;
  try {
    servable = a->build(manifest, dir + "/" + Manifest::weights_file);
  } catch (const nlohmann::json::exception& e) {
    throw value_error("hyperparameters " + manifest.hyperparameters.dump() + " do not build '" + a->name + "': " + e.what());
  }
  std::vector<HostTensor> probe;
  for (const auto& s : manifest.signature.inputs) probe.emplace_back(s.dtype, concrete_shape(s.shape, 1));
  for (auto& p : probe) std::fill(p.bytes.begin(), p.bytes.end(), 0);
  const auto out = servable->run(probe);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto& s = manifest.signature.outputs[i];
    if (!fits(s.shape, out[i].shape)) {
      throw shape_error("on one example, output " + s.name + " has shape " + shape_string(out[i].shape) +
                        " where the signature says " + shape_string(s.shape));
    }
  }
  return servable;
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

}  // namespace tessera::serve
