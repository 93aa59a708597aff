// ONNX export: a model as an ONNX ModelProto (IR version 8, opset 17) that any ONNX runtime runs,
// written with tessera's own protobuf encoder (io/protobuf.hpp; no protobuf library).
//
//   io::export_onnx(model, zeros<float>({1, 1, 28, 28}), "fashion.onnx");
//
// The walk goes over the model's layers, which are types: each layer type maps to ONNX nodes and
// its parameters and buffers become initializers under their state_dict names ("0.weight"). The
// model runs once on `example_input` in eval mode (layer by layer), which gives every value's
// shape; the first axis of the input and the output is the symbolic dimension "batch".
//
//   Linear            Gemm (transB = 1) on 2-D inputs; MatMul (weight_transposed) + Add on more axes
//   Conv2d            Conv                     MaxPool2d, AvgPool2d   MaxPool, AveragePool
//   BatchNorm1d/2d    BatchNormalization (the running statistics: eval mode)
//   LayerNorm         LayerNormalization       GlobalAvgPool2d        GlobalAveragePool + Flatten
//   ReLU, Sigmoid, Tanh, LeakyReLU, Softmax    Relu, Sigmoid, Tanh, LeakyRelu, Softmax
//   GELU              0.5 x (1 + Erf(x / sqrt 2)) (opset 17 has no Gelu)   SiLU  x * Sigmoid(x)
//   Flatten           Flatten (axis 1)         Dropout, Identity      nothing (eval mode)
//   Embedding         Gather                   Residual               its body and shortcut, then Add
//   Sequential        its layers in order
//
// A layer without a mapping (a recurrent layer, attention, a user module) is a value_error that
// names it; nothing is written then.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/backend/cpu/device.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/io/file.hpp"
#include "tessera/io/protobuf.hpp"
#include "tessera/nn/activation.hpp"
#include "tessera/nn/conv.hpp"
#include "tessera/nn/dropout.hpp"
#include "tessera/nn/embedding.hpp"
#include "tessera/nn/linear.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/nn/normalization.hpp"
#include "tessera/nn/residual.hpp"
#include "tessera/nn/sequential.hpp"

namespace tessera::io {

struct OnnxOptions {
  std::string input_name = "input";
  std::string output_name = "output";
  std::string graph_name = "tessera";
  bool dynamic_batch = true;  ///< the input's and output's first axis is the symbolic "batch"
};

namespace detail::onnx {

inline constexpr std::int64_t ir_version = 8;
inline constexpr std::int64_t opset = 17;

// TensorProto.DataType values.
template <class T>
constexpr int elem_type() {
  if constexpr (std::is_same_v<T, float>) return 1;
  else if constexpr (std::is_same_v<T, double>) return 11;
  else if constexpr (std::is_same_v<T, std::int32_t>) return 6;
  else if constexpr (std::is_same_v<T, std::int64_t>) return 7;
  else return 9;  // bool
}

/// One attribute of a node.
struct Attribute {
  std::string name;
  enum class Kind { integer, real, integers } kind = Kind::integer;
  std::int64_t i = 0;
  float f = 0;
  std::vector<std::int64_t> ints;
};
inline Attribute int_attr(std::string n, std::int64_t v) { return {std::move(n), Attribute::Kind::integer, v, 0, {}}; }
inline Attribute float_attr(std::string n, double v) { return {std::move(n), Attribute::Kind::real, 0, float(v), {}}; }
inline Attribute ints_attr(std::string n, std::vector<std::int64_t> v) {
  return {std::move(n), Attribute::Kind::integers, 0, 0, std::move(v)};
}

/// The graph being built: nodes in order, initializers, unique names.
class Builder {
 public:
  /// Adds an initializer holding t's elements (any backend; copied to the host, made dense).
  template <class T, std::size_t R, class B>
  std::string initializer(const std::string& name, const Tensor<T, R, B>& t) {
    Tensor<T, R, cpu> host = t.template to<cpu>();
    if (!host.is_contiguous()) host = Tensor<T, R, cpu>(host + T(0));
    std::vector<std::int64_t> dims(host.shape().begin(), host.shape().end());
    return raw_initializer(name, elem_type<T>(), dims, reinterpret_cast<const char*>(host.data()),
                           std::size_t(host.size()) * sizeof(T));
  }
  /// A rank-0 constant of the model's element type T.
  template <class T>
  std::string scalar(const std::string& name, T v) {
    return raw_initializer(unique(name), elem_type<T>(), {}, reinterpret_cast<const char*>(&v), sizeof v);
  }
  /// [n] elements equal to v, of type T.
  template <class T>
  std::string filled(const std::string& name, index_t n, T v) {
    std::vector<T> values(std::size_t(n), v);
    return raw_initializer(name, elem_type<T>(), {std::int64_t(n)}, reinterpret_cast<const char*>(values.data()),
                           values.size() * sizeof(T));
  }
  /// Adds a node; returns the name of its (single) output: `output` when given, else a fresh
  /// name from the scope and the op.
  std::string node(const std::string& op, const std::vector<std::string>& inputs, const std::string& scope,
                   const std::vector<Attribute>& attributes = {}, const std::string& output = "") {
    const std::string out = !output.empty() ? output : unique(scope.empty() ? op : scope + "/" + op);
    proto::Message n;
    for (const auto& in : inputs) n.bytes(1, in);
    n.bytes(2, out);
    n.bytes(3, out);
    n.bytes(4, op);
    for (const auto& a : attributes) {
      proto::Message m;
      m.bytes(1, a.name);
      switch (a.kind) {
        case Attribute::Kind::integer:
          m.int64(3, a.i);
          m.uint(20, 2);  // INT
          break;
        case Attribute::Kind::real:
          m.float32(2, a.f);
          m.uint(20, 1);  // FLOAT
          break;
        case Attribute::Kind::integers:
          for (auto v : a.ints) m.int64(8, v);
          m.uint(20, 7);  // INTS
          break;
      }
      n.message(5, m);
    }
    nodes_.push_back(std::move(n));
    return out;
  }

  /// A ValueInfoProto: name, element type and shape (-1: the symbolic batch).
  static proto::Message value_info(const std::string& name, int elem, const std::vector<std::int64_t>& shape) {
    proto::Message dims;
    for (auto d : shape) {
      proto::Message dim;
      if (d < 0) dim.bytes(2, "batch");
      else dim.int64(1, d);
      dims.message(1, dim);
    }
    proto::Message tensor_type;
    tensor_type.uint(1, std::uint64_t(elem));
    tensor_type.message(2, dims);
    proto::Message type;
    type.message(1, tensor_type);
    proto::Message info;
    info.bytes(1, name);
    info.message(2, type);
    return info;
  }

  std::string model(const OnnxOptions& o, const proto::Message& input, const proto::Message& output) const {
    proto::Message graph;
    for (const auto& n : nodes_) graph.message(1, n);
    graph.bytes(2, o.graph_name);
    for (const auto& t : initializers_) graph.message(5, t);
    graph.message(11, input);
    graph.message(12, output);
    proto::Message opset_id;
    opset_id.bytes(1, "");
    opset_id.int64(2, opset);
    proto::Message model;
    model.int64(1, ir_version);
    model.bytes(2, "tessera");
    model.bytes(3, "0.1.0");
    model.message(7, graph);
    model.message(8, opset_id);
    return model.data();
  }

  std::string unique(const std::string& base) {
    const int n = used_[base]++;
    return n == 0 ? base : base + "_" + std::to_string(n);
  }

 private:
  std::string raw_initializer(const std::string& name, int elem, const std::vector<std::int64_t>& dims, const char* data,
                              std::size_t bytes) {
    proto::Message t;
    for (auto d : dims) t.int64(1, d);
    t.int64(2, elem);
    t.bytes(8, name);
    t.bytes(9, std::string_view(data, bytes));
    initializers_.push_back(std::move(t));
    used_[name]++;
    return name;
  }
  std::vector<proto::Message> nodes_;
  std::vector<proto::Message> initializers_;
  std::map<std::string, int> used_;
};

template <class X>
struct is_sequential : std::false_type {};
template <class... L>
struct is_sequential<nn::Sequential<L...>> : std::true_type {};
template <class X>
struct is_residual : std::false_type {};
template <class Body, class Shortcut>
struct is_residual<nn::Residual<Body, Shortcut>> : std::true_type {};
template <class X>
struct is_linear : std::false_type {};
template <class T, class B>
struct is_linear<nn::Linear<T, B>> : std::true_type {};
template <class X>
struct is_conv : std::false_type {};
template <class T, class B>
struct is_conv<nn::Conv2d<T, B>> : std::true_type {};
template <class X>
struct is_batch_norm : std::false_type {};
template <std::size_t A, std::size_t Z, class T, class B>
struct is_batch_norm<nn::BatchNorm<A, Z, T, B>> : std::true_type {};
template <class X>
struct is_layer_norm : std::false_type {};
template <class T, std::size_t D, class B>
struct is_layer_norm<nn::LayerNorm<T, D, B>> : std::true_type {};
template <class X>
struct is_dropout : std::false_type {};
template <class T, class B>
struct is_dropout<nn::Dropout<T, B>> : std::true_type {};
template <class X>
struct is_embedding : std::false_type {};
template <class T, class B>
struct is_embedding<nn::Embedding<T, B>> : std::true_type {};

/// A layer's value evaluated on x (eval mode), materialized: the next layer's input and its shape.
template <class L, class X>
auto run_layer(const L& layer, const X& x) {
  using Y = decltype(layer(x));
  return Tensor<value_type_t<Y>, rank_v<Y>, backend_t<X>>(layer(x));
}

inline std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

template <std::size_t K, class... L, class X, class Next>
void emit_sequence(Builder& b, nn::Sequential<L...>& seq, const std::string& scope, const std::string& in, const X& x,
                   Next&& next);

/// Emits `layer` applied to the value `in` (whose example is x); returns the output's name and
/// calls `next(y)` with the layer's example output (so the caller continues with the right type).
template <class L, class X, class Next>
void emit(Builder& b, L& layer, const std::string& scope, const std::string& in, const X& x, Next&& next) {
  using T = value_type_t<X>;
  constexpr std::size_t R = rank_v<X>;
  if constexpr (is_sequential<L>::value) {
    emit_sequence<0>(b, layer, scope, in, x, next);
  } else if constexpr (is_residual<L>::value) {
    emit(b, layer.body, join(scope, "body"), in, x, [&](const std::string& main, const auto& y) {
      emit(b, layer.shortcut, join(scope, "shortcut"), in, x, [&](const std::string& skip, const auto& s) {
        next(b.node("Add", {main, skip}, scope), Tensor<value_type_t<decltype(y)>, rank_v<decltype(y)>, backend_t<X>>(y + s));
      });
    });
  } else if constexpr (is_dropout<L>::value || std::is_same_v<L, nn::Identity>) {
    next(in, x);
  } else if constexpr (is_linear<L>::value) {
    const std::string w = join(scope, "weight"), bias = join(scope, "bias");
    std::string out;
    if constexpr (R == 2) {
      std::vector<std::string> inputs{in, b.initializer(w, layer.weight)};
      if (layer.has_bias()) inputs.push_back(b.initializer(bias, layer.bias));
      out = b.node("Gemm", inputs, scope, std::vector<Attribute>{int_attr("transB", 1)});
    } else {
      // MatMul takes the weight as [in, out]: stored transposed, as "<name>.weight_transposed".
      const Tensor<T, 2, backend_t<X>> wt = transpose(layer.weight);
      out = b.node("MatMul", {in, b.initializer(w + "_transposed", wt)}, scope);
      if (layer.has_bias()) out = b.node("Add", {out, b.initializer(bias, layer.bias)}, scope);
    }
    next(out, run_layer(layer, x));
  } else if constexpr (is_conv<L>::value) {
    const auto& o = layer.options();
    std::vector<std::string> inputs{in, b.initializer(join(scope, "weight"), layer.weight)};
    if (layer.has_bias()) inputs.push_back(b.initializer(join(scope, "bias"), layer.bias));
    next(b.node("Conv", inputs, scope,
                {ints_attr("kernel_shape", {layer.weight.shape()[2], layer.weight.shape()[3]}),
                 ints_attr("strides", {o.stride.h, o.stride.w}), ints_attr("pads", {o.padding.h, o.padding.w, o.padding.h, o.padding.w}),
                 ints_attr("dilations", {o.dilation.h, o.dilation.w}), int_attr("group", o.groups)}),
         run_layer(layer, x));
  } else if constexpr (is_batch_norm<L>::value) {
    const auto& o = layer.options();
    if (!o.track_running_stats) {
      throw value_error("export_onnx: " + std::string(L::type_name) + " at '" + scope +
                        "' keeps no running statistics, so its eval mode uses each batch's: ONNX has no such op");
    }
    const index_t c = layer.num_features();
    const std::string scale = o.affine ? b.initializer(join(scope, "weight"), layer.weight) : b.filled(join(scope, "weight"), c, T(1));
    const std::string shift = o.affine ? b.initializer(join(scope, "bias"), layer.bias) : b.filled(join(scope, "bias"), c, T(0));
    next(b.node("BatchNormalization",
                {in, scale, shift, b.initializer(join(scope, "running_mean"), layer.running_mean),
                 b.initializer(join(scope, "running_var"), layer.running_var)},
                scope, std::vector<Attribute>{float_attr("epsilon", o.eps)}),
         run_layer(layer, x));
  } else if constexpr (is_layer_norm<L>::value) {
    constexpr std::size_t D = rank_v<decltype(layer.weight)>;
    const auto& o = layer.options();
    const std::string scale = o.elementwise_affine ? b.initializer(join(scope, "weight"), layer.weight)
                                                   : b.initializer(join(scope, "weight"), Tensor<T, D, cpu>(ones<T>(layer.weight.shape())));
    const std::string shift = o.elementwise_affine ? b.initializer(join(scope, "bias"), layer.bias)
                                                   : b.initializer(join(scope, "bias"), Tensor<T, D, cpu>(layer.weight.shape()));
    next(b.node("LayerNormalization", {in, scale, shift}, scope,
                {int_attr("axis", -std::int64_t(D)), float_attr("epsilon", o.eps)}),
         run_layer(layer, x));
  } else if constexpr (is_embedding<L>::value) {
    next(b.node("Gather", {b.initializer(join(scope, "weight"), layer.weight), in}, scope, std::vector<Attribute>{int_attr("axis", 0)}),
         run_layer(layer, x));
  } else if constexpr (std::is_same_v<L, nn::MaxPool2d> || std::is_same_v<L, nn::AvgPool2d>) {
    const auto& o = layer.options;
    const Size2 stride = o.stride ? *o.stride : layer.kernel;
    std::vector<Attribute> attributes{ints_attr("kernel_shape", {layer.kernel.h, layer.kernel.w}),
                                      ints_attr("strides", {stride.h, stride.w}),
                                      ints_attr("pads", {o.padding.h, o.padding.w, o.padding.h, o.padding.w})};
    if constexpr (std::is_same_v<L, nn::MaxPool2d>) {
      attributes.push_back(ints_attr("dilations", {o.dilation.h, o.dilation.w}));
      next(b.node("MaxPool", {in}, scope, attributes), run_layer(layer, x));
    } else {
      attributes.push_back(int_attr("count_include_pad", 1));  // padding counts as zeros, as tessera's does
      next(b.node("AveragePool", {in}, scope, attributes), run_layer(layer, x));
    }
  } else if constexpr (std::is_same_v<L, nn::GlobalAvgPool2d>) {
    const std::string pooled = b.node("GlobalAveragePool", {in}, scope);
    next(b.node("Flatten", {pooled}, scope, std::vector<Attribute>{int_attr("axis", 1)}), run_layer(layer, x));
  } else if constexpr (std::is_same_v<L, nn::Flatten>) {
    next(b.node("Flatten", {in}, scope, std::vector<Attribute>{int_attr("axis", 1)}), run_layer(layer, x));
  } else if constexpr (std::is_same_v<L, nn::ReLU>) {
    next(b.node("Relu", {in}, scope), run_layer(layer, x));
  } else if constexpr (std::is_same_v<L, nn::Sigmoid>) {
    next(b.node("Sigmoid", {in}, scope), run_layer(layer, x));
  } else if constexpr (std::is_same_v<L, nn::Tanh>) {
    next(b.node("Tanh", {in}, scope), run_layer(layer, x));
  } else if constexpr (std::is_same_v<L, nn::LeakyReLU>) {
    next(b.node("LeakyRelu", {in}, scope, std::vector<Attribute>{float_attr("alpha", layer.negative_slope)}), run_layer(layer, x));
  } else if constexpr (std::is_same_v<L, nn::SiLU>) {
    next(b.node("Mul", {in, b.node("Sigmoid", {in}, scope)}, scope), run_layer(layer, x));
  } else if constexpr (std::is_same_v<L, nn::GELU>) {
    const std::string scaled = b.node("Div", {in, b.scalar(scope + "/sqrt2", T(std::sqrt(2.0)))}, scope);
    const std::string erf = b.node("Erf", {scaled}, scope);
    const std::string one_plus = b.node("Add", {erf, b.scalar(scope + "/one", T(1))}, scope);
    const std::string half_x = b.node("Mul", {in, b.scalar(scope + "/half", T(0.5))}, scope);
    next(b.node("Mul", {half_x, one_plus}, scope), run_layer(layer, x));
  } else if constexpr (std::is_same_v<L, nn::Softmax>) {
    next(b.node("Softmax", {in}, scope, std::vector<Attribute>{int_attr("axis", layer.axis)}), run_layer(layer, x));
  } else {
    throw value_error("export_onnx: layer '" + scope + "' (" + nn::detail::type_name_of<L>() +
                      ") has no ONNX mapping (docs/io.md lists the layers that have one)");
  }
}

template <std::size_t K, class... L, class X, class Next>
void emit_sequence(Builder& b, nn::Sequential<L...>& seq, const std::string& scope, const std::string& in, const X& x,
                   Next&& next) {
  if constexpr (K == sizeof...(L)) {
    next(in, x);
  } else {
    emit(b, seq.template layer<K>(), join(scope, std::to_string(K)), in, x,
         [&](const std::string& out, const auto& y) { emit_sequence<K + 1>(b, seq, scope, out, y, next); });
  }
}

}  // namespace detail::onnx

/// Writes `model` as an ONNX model to `path` (atomically). `example_input` fixes the input's dtype
/// and the shapes (its first axis becomes the symbolic batch); the model runs on it once in eval
/// mode. value_error naming the layer when one has no ONNX mapping; io_error when writing fails.
template <class M, class X>
void export_onnx(M& model, const X& example_input, const std::string& path, const OnnxOptions& options = {}) {
  using T = value_type_t<X>;
  constexpr std::size_t R = rank_v<X>;
  static_assert(R >= 1, "tessera::io::export_onnx: the example input needs a batch axis");
  nn::ModeGuard<M> eval(model, false);
  detail::onnx::Builder b;
  b.unique(options.input_name);  // reserved: no node takes these names
  b.unique(options.output_name);
  const Tensor<T, R, backend_t<X>> x = example_input;
  std::string result;
  std::vector<std::int64_t> output_shape;
  int output_elem = 0;
  detail::onnx::emit(b, model, "", options.input_name, x, [&](const std::string& out, const auto& y) {
    using Y = std::decay_t<decltype(y)>;
    output_shape.assign(y.shape().begin(), y.shape().end());
    output_elem = detail::onnx::elem_type<typename Y::value_type>();
    // The graph's output under its own name: an Identity of the last value (which may be the input).
    result = b.node("Identity", {out}, "", {}, options.output_name);
  });
  std::vector<std::int64_t> input_shape(x.shape().begin(), x.shape().end());
  if (options.dynamic_batch) {
    input_shape[0] = -1;
    if (!output_shape.empty()) output_shape[0] = -1;
  }
  const auto input = detail::onnx::Builder::value_info(options.input_name, detail::onnx::elem_type<T>(), input_shape);
  const auto output = detail::onnx::Builder::value_info(result, output_elem, output_shape);
  const std::string bytes = b.model(options, input, output);
  write_file_atomically(path, {bytes});
}

}  // namespace tessera::io
