// The model types a server can serve, registered by architecture name, and the type-erased
// servable each loaded version becomes.
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
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/serve/signature.hpp"

namespace tessera::serve {

/// A tensor on the host in transit between the protocols and a model: dtype, shape and the
/// elements as little-endian bytes in row-major order.
struct HostTensor {
  DataType dtype = DataType::float32;
  std::vector<std::int64_t> shape;
  std::vector<unsigned char> bytes;

  HostTensor() = default;
  HostTensor(DataType t, std::vector<std::int64_t> s) : dtype(t), shape(std::move(s)) {
    bytes.resize(static_cast<std::size_t>(elements()) * dtype_size(dtype));
  }
  std::int64_t elements() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
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

}  // namespace tessera::serve
