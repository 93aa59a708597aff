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
//   LSTM, GRU         one LSTM / GRU node per layer (gates reordered to ONNX's i o f c / z r h)
//   MultiheadAttention, TransformerEncoderLayer, TransformerDecoderOnlyLayer   MatMul, Softmax, ...
//   Learned/SinusoidalPositionalEncoding   Slice of the table + Add      Cut   its inner layer
//   Sequential        its layers in order
//
// A module of your own maps through a const member `onnx(g, x)` that repeats its forward on graph
// values (docs/io.md, "ONNX export"):
//
//   template <class G, class V>
//   auto onnx(G& g, const V& ids) const { return g(head, g(lstm, g(embed, ids)).first); }
//
// A layer without a mapping is a value_error that names it; nothing is written then.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/backend/cpu/device.hpp"
#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/io/file.hpp"
#include "tessera/io/protobuf.hpp"
#include "tessera/nn/activation.hpp"
#include "tessera/nn/attention.hpp"
#include "tessera/nn/conv.hpp"
#include "tessera/nn/cut.hpp"
#include "tessera/nn/dropout.hpp"
#include "tessera/nn/embedding.hpp"
#include "tessera/nn/linear.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/nn/normalization.hpp"
#include "tessera/nn/recurrent.hpp"
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
  enum class Kind { integer, real, integers, text } kind = Kind::integer;
  std::int64_t i = 0;
  float f = 0;
  std::vector<std::int64_t> ints;
  std::string s;
};
inline Attribute int_attr(std::string n, std::int64_t v) { return {std::move(n), Attribute::Kind::integer, v, 0, {}, {}}; }
inline Attribute float_attr(std::string n, double v) { return {std::move(n), Attribute::Kind::real, 0, float(v), {}, {}}; }
inline Attribute ints_attr(std::string n, std::vector<std::int64_t> v) {
  return {std::move(n), Attribute::Kind::integers, 0, 0, std::move(v), {}};
}
inline Attribute string_attr(std::string n, std::string v) {
  return {std::move(n), Attribute::Kind::text, 0, 0, {}, std::move(v)};
}

/// The graph being built: nodes in order, initializers, unique names.
class Builder {
 public:
  /// Adds an initializer holding t's elements (any backend; copied to the host, made dense). A
  /// name added before is the same tensor again (a weight two layers share): not added twice.
  template <class T, std::size_t R, class B>
  std::string initializer(const std::string& name, const Tensor<T, R, B>& t) {
    if (initialized_.count(name)) return name;
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
  /// A 1-D int64 constant (shapes, permutations, slice bounds).
  std::string int64s(const std::string& name, const std::vector<std::int64_t>& v) {
    return raw_initializer(unique(name), elem_type<std::int64_t>(), {std::int64_t(v.size())},
                           reinterpret_cast<const char*>(v.data()), v.size() * sizeof(std::int64_t));
  }
  /// Adds a node with one output; returns its name: `output` when given, else a fresh name from
  /// the scope and the op.
  TESSERA_OUT_OF_LINE std::string node(const std::string& op, const std::vector<std::string>& inputs,
                                       const std::string& scope, const std::vector<Attribute>& attributes = {},
                                       const std::string& output = "");
  /// Adds a node with `count` outputs (<name>, <name>_1, ...); returns their names.
  TESSERA_OUT_OF_LINE std::vector<std::string> node_outputs(const std::string& op,
                                                            const std::vector<std::string>& inputs,
                                                            const std::string& scope,
                                                            const std::vector<Attribute>& attributes, int count);

  /// A ValueInfoProto: name, element type and shape (-1: the symbolic batch).
  TESSERA_OUT_OF_LINE static proto::Message value_info(const std::string& name, int elem,
                                                       const std::vector<std::int64_t>& shape);

  TESSERA_OUT_OF_LINE std::string model(const OnnxOptions& o, const proto::Message& input,
                                        const proto::Message& output) const;

  /// `base`, or base_1, base_2, ... when taken: a name no value, node or initializer has yet.
  TESSERA_OUT_OF_LINE std::string unique(const std::string& base);

 private:
  TESSERA_OUT_OF_LINE void add(const std::string& op, const std::vector<std::string>& inputs,
                               const std::vector<std::string>& outputs, const std::string& name,
                               const std::vector<Attribute>& attributes);
  TESSERA_OUT_OF_LINE std::string raw_initializer(const std::string& name, int elem,
                                                  const std::vector<std::int64_t>& dims, const char* data,
                                                  std::size_t bytes);
  std::vector<proto::Message> nodes_;
  std::vector<proto::Message> initializers_;
  std::set<std::string> initialized_;
  std::set<std::string> taken_;
  std::map<std::string, int> next_;
};

#if TESSERA_OUT_OF_LINE_DEFINITIONS

TESSERA_OUT_OF_LINE std::string Builder::node(const std::string& op, const std::vector<std::string>& inputs,
                                              const std::string& scope, const std::vector<Attribute>& attributes,
                                              const std::string& output) {
  const std::string out = !output.empty() ? output : unique(scope.empty() ? op : scope + "/" + op);
  add(op, inputs, {out}, out, attributes);
  return out;
}

TESSERA_OUT_OF_LINE std::vector<std::string> Builder::node_outputs(const std::string& op,
                                                                   const std::vector<std::string>& inputs,
                                                                   const std::string& scope,
                                                                   const std::vector<Attribute>& attributes,
                                                                   int count) {
  const std::string name = unique(scope.empty() ? op : scope + "/" + op);
  std::vector<std::string> outputs{name};
  for (int k = 1; k < count; ++k) outputs.push_back(unique(name + "_" + std::to_string(k)));
  add(op, inputs, outputs, name, attributes);
  return outputs;
}

TESSERA_OUT_OF_LINE proto::Message Builder::value_info(const std::string& name, int elem,
                                                       const std::vector<std::int64_t>& shape) {
  proto::Message dims;
  for (auto d : shape) {
    proto::Message dim;
    if (d < 0)
      dim.bytes(2, "batch");
    else
      dim.int64(1, d);
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

TESSERA_OUT_OF_LINE std::string Builder::model(const OnnxOptions& o, const proto::Message& input,
                                               const proto::Message& output) const {
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

TESSERA_OUT_OF_LINE std::string Builder::unique(const std::string& base) {
  std::string name = base;
  for (int& n = next_[base]; !taken_.insert(name).second;) name = base + "_" + std::to_string(++n);
  return name;
}

TESSERA_OUT_OF_LINE void Builder::add(const std::string& op, const std::vector<std::string>& inputs,
                                      const std::vector<std::string>& outputs, const std::string& name,
                                      const std::vector<Attribute>& attributes) {
  proto::Message n;
  for (const auto& in : inputs) n.bytes(1, in);
  for (const auto& out : outputs) n.bytes(2, out);
  n.bytes(3, name);
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
      case Attribute::Kind::text:
        m.bytes(4, a.s);
        m.uint(20, 3);  // STRING
        break;
    }
    n.message(5, m);
  }
  nodes_.push_back(std::move(n));
}

TESSERA_OUT_OF_LINE std::string Builder::raw_initializer(const std::string& name, int elem,
                                                         const std::vector<std::int64_t>& dims, const char* data,
                                                         std::size_t bytes) {
  proto::Message t;
  for (auto d : dims) t.int64(1, d);
  t.int64(2, elem);
  t.bytes(8, name);
  t.bytes(9, std::string_view(data, bytes));
  initializers_.push_back(std::move(t));
  initialized_.insert(name);
  taken_.insert(name);
  return name;
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

/// A value of the graph being built: its name there, and its example (what the layers computed
/// from the example input, in eval mode), which carries its type and shape.
template <class Y>
struct Value {
  std::string name;
  Y example;
};
/// A Value holding the expression e materialized.
template <class E>
auto value(std::string name, const E& e) {
  using Y = Tensor<value_type_t<E>, rank_v<E>, backend_t<E>>;
  return Value<Y>{std::move(name), Y(e)};
}

template <class X>
struct is_value : std::false_type {};
template <class Y>
struct is_value<Value<Y>> : std::true_type {};

template <class X>
struct is_sequential : std::false_type {};
template <class... L>
struct is_sequential<nn::Sequential<L...>> : std::true_type {};
template <class X>
struct is_residual : std::false_type {};
template <class Body, class Shortcut>
struct is_residual<nn::Residual<Body, Shortcut>> : std::true_type {};
template <class X>
struct is_cut : std::false_type {};
template <class M>
struct is_cut<nn::Cut<M>> : std::true_type {};
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
template <class X>
struct is_recurrent : std::false_type {};
template <class K, class T, class B, std::size_t L, bool Bi>
struct is_recurrent<nn::Recurrent<K, T, B, L, Bi>> : std::true_type {};
template <class X>
struct is_attention : std::false_type {};
template <class T, class B>
struct is_attention<nn::MultiheadAttention<T, B>> : std::true_type {};
template <class X>
struct is_transformer_layer : std::false_type {};
template <class T, class B, bool Causal>
struct is_transformer_layer<nn::TransformerLayer<T, B, Causal>> : std::true_type {};
template <class X>
struct is_positional_encoding : std::false_type {};
template <class T, class B>
struct is_positional_encoding<nn::LearnedPositionalEncoding<T, B>> : std::true_type {};
template <class T, class B>
struct is_positional_encoding<nn::SinusoidalPositionalEncoding<T, B>> : std::true_type {};

/// Whether module L has a const member onnx(g, x) for graph G and value V.
template <class L, class G, class V, class = void>
struct has_onnx_member : std::false_type {};
template <class L, class G, class V>
struct has_onnx_member<L, G, V, std::void_t<decltype(std::declval<const L&>().onnx(std::declval<G&>(), std::declval<const V&>()))>>
    : std::true_type {};

inline std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

/// The permutation that swaps axes a and b of a rank-r value.
inline std::vector<std::int64_t> swap_permutation(std::size_t r, std::size_t a, std::size_t b) {
  std::vector<std::int64_t> perm(r);
  for (std::size_t i = 0; i < r; ++i) perm[i] = std::int64_t(i);
  std::swap(perm[a], perm[b]);
  return perm;
}

/// A recurrent weight [G H, cols] (or bias [G H]) on the host with its G gate blocks in ONNX's
/// order: block j of the result is block order[j] of t.
template <class T, std::size_t R, class B>
Tensor<T, R, cpu> gates_reordered(const Tensor<T, R, B>& t, const std::vector<index_t>& order) {
  const Tensor<T, R, cpu> host = t.template to<cpu>() + T(0);  // dense
  const index_t block = host.size() / index_t(order.size());
  Tensor<T, R, cpu> out(host.shape());
  for (std::size_t j = 0; j < order.size(); ++j) {
    std::memcpy(out.data() + index_t(j) * block, host.data() + order[j] * block, std::size_t(block) * sizeof(T));
  }
  return out;
}

/// One recurrent layer's per-direction tensors (dense, same shape) stacked as ONNX's [directions, ...].
template <class T, std::size_t R>
Tensor<T, R + 1, cpu> stack_directions(const std::vector<Tensor<T, R, cpu>>& parts) {
  Shape<R + 1> s;
  s[0] = index_t(parts.size());
  for (std::size_t i = 0; i < R; ++i) s[i + 1] = parts[0].shape()[i];
  Tensor<T, R + 1, cpu> out(s);
  const index_t each = parts[0].size();
  for (std::size_t d = 0; d < parts.size(); ++d) {
    std::memcpy(out.data() + index_t(d) * each, parts[d].data(), std::size_t(each) * sizeof(T));
  }
  return out;
}

}  // namespace detail::onnx

/// Writes `model` as an ONNX model to `path` (atomically); see OnnxGraph below and docs/io.md.
template <class M, class X>
void export_onnx(M& model, const X& example_input, const std::string& path, const OnnxOptions& options = {});

/// The graph a module's onnx(g, x) member builds on (export_onnx makes it). A call mirrors the
/// module's forward on graph values, whose `.name` is the ONNX value and `.example` what the
/// module computes from the example input:
///
///   g(layer, x)               any layer with a mapping, or a module with its own onnx member;
///                             a layer that has parameters or buffers must be one of the module's
///                             members() (its initializers take the state_dict names); a recurrent
///                             layer gives {output, final state} as it does in C++ (use .first)
///   g(attention, q, k, v)     a MultiheadAttention (no masks)
///   g.add(a, b)               a + b (broadcasting)
///   g.transpose(x, a, b)      x with axes a and b swapped
///   g.attend(embedding, h)    embedding.attend(h): h times the table's transpose (tied weights)
class OnnxGraph {
  using Attrs = std::vector<detail::onnx::Attribute>;

 public:
  template <class L, class... V>
  auto operator()(const L& layer, const V&... x) {
    static_assert((detail::onnx::is_value<V>::value && ...),
                  "tessera::io::OnnxGraph: a layer takes the graph's values (what g(...) returns), not tensors");
    return emit(layer, member_scope(layer), x...);
  }
  template <class A, class C>
  auto add(const A& a, const C& b) {
    const std::string& left = a.name;  // (nvcc drops a braced list of dependent members)
    const std::string& right = b.name;
    return detail::onnx::value(b_.node("Add", {left, right}, hook_scope()), a.example + b.example);
  }
  template <class V>
  auto transpose(const V& x, index_t a, index_t b) {
    constexpr std::size_t R = rank_v<decltype(x.example)>;
    const std::size_t ua = std::size_t(a < 0 ? a + index_t(R) : a), ub = std::size_t(b < 0 ? b + index_t(R) : b);
    const std::string& in = x.name;
    const std::string name =
        b_.node("Transpose", {in}, hook_scope(), Attrs{detail::onnx::ints_attr("perm", detail::onnx::swap_permutation(R, ua, ub))});
    return detail::onnx::value(name, tessera::transpose(x.example, a, b));
  }
  template <class T, class B, class V>
  auto attend(const nn::Embedding<T, B>& embedding, const V& h) {
    const std::string scope = member_scope(embedding);
    const std::string table = b_.initializer(detail::onnx::join(scope, "weight"), embedding.weight);
    const std::string transposed = b_.node("Transpose", {table}, scope, Attrs{detail::onnx::ints_attr("perm", {1, 0})});
    const std::string& in = h.name;
    return detail::onnx::value(b_.node("MatMul", {in, transposed}, scope), embedding.attend(h.example));
  }

 private:
  template <class M, class X>
  friend void export_onnx(M& model, const X& example_input, const std::string& path, const OnnxOptions& options);
  OnnxGraph() = default;

  /// The module whose onnx member is running: its scope and its children by address.
  struct HookFrame {
    std::string scope;
    std::string type;
    std::map<const void*, std::string> children;
  };

  std::string hook_scope() const { return frames_.empty() ? std::string() : frames_.back().scope; }

  /// The scope of a layer called from an onnx member: its name among the module's children;
  /// a layer without state that is not a member (nn::ReLU{}) takes the module's scope.
  template <class L>
  std::string member_scope(const L& layer) const {
    if (frames_.empty()) throw value_error("export_onnx: an OnnxGraph is used only inside a module's onnx member");
    const HookFrame& f = frames_.back();
    const auto it = f.children.find(static_cast<const void*>(&layer));
    if (it != f.children.end()) return detail::onnx::join(f.scope, it->second);
    if (std::is_base_of_v<nn::Stateless<L>, L>) return f.scope;
    throw value_error("export_onnx: " + f.type + "::onnx calls a " + nn::detail::type_name_of<L>() +
                      " that is not one of its members() (its weights would have no name)");
  }

  /// ONNX nodes of a Linear applied to the rank-R value `in`.
  template <class T, class B>
  std::string linear_nodes(const nn::Linear<T, B>& layer, const std::string& scope, const std::string& in, std::size_t rank) {
    using detail::onnx::join;
    const std::string w = join(scope, "weight"), bias = join(scope, "bias");
    if (rank == 2) {
      std::vector<std::string> inputs{in, b_.initializer(w, layer.weight)};
      if (layer.has_bias()) inputs.push_back(b_.initializer(bias, layer.bias));
      return b_.node("Gemm", inputs, scope, Attrs{detail::onnx::int_attr("transB", 1)});
    }
    // MatMul takes the weight as [in, out]: stored transposed, as "<name>.weight_transposed".
    const Tensor<T, 2, B> wt = tessera::transpose(layer.weight);
    std::string out = b_.node("MatMul", {in, b_.initializer(w + "_transposed", wt)}, scope);
    if (layer.has_bias()) out = b_.node("Add", {out, b_.initializer(bias, layer.bias)}, scope);
    return out;
  }

  template <class T, std::size_t D, class B>
  std::string layer_norm_nodes(const nn::LayerNorm<T, D, B>& layer, const std::string& scope, const std::string& in) {
    using detail::onnx::join;
    const auto& o = layer.options();
    const std::string scale = o.elementwise_affine ? b_.initializer(join(scope, "weight"), layer.weight)
                                                   : b_.initializer(join(scope, "weight"), Tensor<T, D, cpu>(ones<T>(layer.weight.shape())));
    const std::string shift = o.elementwise_affine ? b_.initializer(join(scope, "bias"), layer.bias)
                                                   : b_.initializer(join(scope, "bias"), Tensor<T, D, cpu>(layer.weight.shape()));
    return b_.node("LayerNormalization", {in, scale, shift}, scope,
                   {detail::onnx::int_attr("axis", -std::int64_t(D)), detail::onnx::float_attr("epsilon", o.eps)});
  }

  template <class T>
  std::string gelu_nodes(const std::string& scope, const std::string& in) {
    const std::string scaled = b_.node("Div", {in, b_.scalar(scope + "/sqrt2", T(std::sqrt(2.0)))}, scope);
    const std::string erf = b_.node("Erf", {scaled}, scope);
    const std::string one_plus = b_.node("Add", {erf, b_.scalar(scope + "/one", T(1))}, scope);
    const std::string half_x = b_.node("Mul", {in, b_.scalar(scope + "/half", T(0.5))}, scope);
    return b_.node("Mul", {half_x, one_plus}, scope);
  }

  /// Multi-head attention of q [N, L, E] over k, v [N, S, E] (names): per head softmax(q k^T *
  /// scale + mask) v, the heads side by side, then out_proj. Causal: an [L, S] additive mask.
  template <class T, class B>
  std::string attention_nodes(const nn::MultiheadAttention<T, B>& mha, const std::string& scope, const std::string& q,
                              const std::string& k, const std::string& v, index_t L, index_t S, bool causal) {
    using detail::onnx::ints_attr;
    using detail::onnx::join;
    const index_t E = mha.embed_dim();
    const std::string heads_shape = b_.int64s(scope + "/heads_shape", {0, 0, mha.num_heads(), mha.head_dim()});
    const auto project = [&](const std::string& x, index_t part, const char* which, std::vector<std::int64_t> perm) {
      const std::string w = b_.initializer(join(scope, std::string("in_proj_weight_") + which + "_transposed"),
                                           Tensor<T, 2, B>(tessera::transpose(slice(mha.in_proj_weight, 0, part * E, (part + 1) * E))));
      const std::string bias = b_.initializer(join(scope, std::string("in_proj_bias_") + which),
                                              Tensor<T, 1, B>(slice(mha.in_proj_bias, 0, part * E, (part + 1) * E)));
      const std::string y = b_.node("Add", {b_.node("MatMul", {x, w}, scope), bias}, scope);
      return b_.node("Transpose", {b_.node("Reshape", {y, heads_shape}, scope)}, scope, Attrs{ints_attr("perm", std::move(perm))});
    };
    const std::string qh = project(q, 0, "q", {0, 2, 1, 3});  // [N, heads, L, d]
    const std::string kt = project(k, 1, "k", {0, 2, 3, 1});  // [N, heads, d, S]
    const std::string vh = project(v, 2, "v", {0, 2, 1, 3});  // [N, heads, S, d]
    std::string scores = b_.node("Mul", {b_.node("MatMul", {qh, kt}, scope), b_.scalar(scope + "/scale", T(1.0 / std::sqrt(double(mha.head_dim()))))}, scope);
    if (causal) scores = b_.node("Add", {scores, b_.initializer(join(scope, "causal_mask"), nn::detail::causal_mask<T>(L, S))}, scope);
    const std::string weights = b_.node("Softmax", {scores}, scope, Attrs{detail::onnx::int_attr("axis", -1)});
    const std::string heads = b_.node("Transpose", {b_.node("MatMul", {weights, vh}, scope)}, scope, Attrs{ints_attr("perm", {0, 2, 1, 3})});
    const std::string joined = b_.node("Reshape", {heads, b_.int64s(scope + "/joined_shape", {0, 0, E})}, scope);
    return linear_nodes(mha.out_proj, join(scope, "out_proj"), joined, 3);
  }

  /// A transformer layer on x [N, L, d]: pre-norm x + sa(norm1(x)), h + ff(norm2(h)); post-norm
  /// norm1(x + sa(x)), norm2(h + ff(h)). Dropout is gone in eval mode.
  template <class T, class B, bool Causal>
  std::string transformer_nodes(const nn::TransformerLayer<T, B, Causal>& layer, const std::string& scope, const std::string& x,
                                index_t L) {
    using detail::onnx::join;
    const auto attention = [&](const std::string& z) {
      return attention_nodes(layer.self_attn, join(scope, "self_attn"), z, z, z, L, L, Causal);
    };
    const auto feed_forward = [&](const std::string& z) {
      const std::string h = linear_nodes(layer.linear1, join(scope, "linear1"), z, 3);
      const std::string a = layer.options().activation == nn::Activation::gelu ? gelu_nodes<T>(scope + "/gelu", h)
                                                                              : b_.node("Relu", {h}, scope);
      return linear_nodes(layer.linear2, join(scope, "linear2"), a, 3);
    };
    const auto norm = [&](const auto& n, const char* name, const std::string& z) { return layer_norm_nodes(n, join(scope, name), z); };
    if (layer.options().norm_first) {
      const std::string h = b_.node("Add", {x, attention(norm(layer.norm1, "norm1", x))}, scope);
      return b_.node("Add", {h, feed_forward(norm(layer.norm2, "norm2", h))}, scope);
    }
    const std::string h = norm(layer.norm1, "norm1", b_.node("Add", {x, attention(x)}, scope));
    return norm(layer.norm2, "norm2", b_.node("Add", {h, feed_forward(h)}, scope));
  }

  /// An LSTM or GRU stack on x: one ONNX LSTM/GRU node per layer (both directions in it), its
  /// weights stacked [directions, G H, in] with the gates in ONNX's order (LSTM i o f c from
  /// PyTorch's i f g o; GRU z r h from r z n, linear_before_reset as PyTorch computes n). Returns
  /// {output, final state} as the layer does.
  template <class Kind, class T, class B, std::size_t Layers, bool Bi, class V>
  auto recurrent(const nn::Recurrent<Kind, T, B, Layers, Bi>& layer, const std::string& scope, const V& x) {
    using detail::onnx::int_attr;
    using detail::onnx::ints_attr;
    using detail::onnx::join;
    using Out = Tensor<T, 3, B>;
    constexpr bool lstm = Kind::carry_size == 2;
    constexpr std::size_t D = Bi ? 2 : 1;
    const std::vector<index_t> order = lstm ? std::vector<index_t>{0, 3, 1, 2} : std::vector<index_t>{1, 0, 2};
    const auto result = layer(x.example);
    std::string seq = x.name;
    if (layer.batch_first()) seq = b_.node("Transpose", {seq}, scope, Attrs{ints_attr("perm", {1, 0, 2})});
    const std::string merged_shape = b_.int64s(scope + "/merged_shape", {0, 0, -1});
    std::vector<std::string> h_n, c_n;
    for (std::size_t l = 0; l < Layers; ++l) {
      std::vector<Tensor<T, 2, cpu>> w, r;
      std::vector<Tensor<T, 1, cpu>> bias;
      for (std::size_t d = 0; d < D; ++d) {
        const std::size_t k = l * D + d;
        w.push_back(detail::onnx::gates_reordered(layer.weight_ih[k], order));
        r.push_back(detail::onnx::gates_reordered(layer.weight_hh[k], order));
        // Without bias the layer's biases stay zero: exported as they are.
        bias.push_back(Tensor<T, 1, cpu>(concat(std::make_tuple(detail::onnx::gates_reordered(layer.bias_ih[k], order),
                                                                detail::onnx::gates_reordered(layer.bias_hh[k], order)),
                                                0)));
      }
      const std::string suffix = "_l" + std::to_string(l);
      std::vector<detail::onnx::Attribute> attributes{
          int_attr("hidden_size", layer.hidden_size()), detail::onnx::string_attr("direction", Bi ? "bidirectional" : "forward")};
      if constexpr (!lstm) attributes.push_back(int_attr("linear_before_reset", 1));
      const auto outs = b_.node_outputs(Kind::name,
                                        {seq, b_.initializer(join(scope, "W" + suffix), detail::onnx::stack_directions(w)),
                                         b_.initializer(join(scope, "R" + suffix), detail::onnx::stack_directions(r)),
                                         b_.initializer(join(scope, "B" + suffix), detail::onnx::stack_directions(bias))},
                                        scope, attributes, lstm ? 3 : 2);
      // Y [T, D, N, H] -> [T, N, D H]: the directions side by side, as the layer's output.
      seq = b_.node("Reshape", {b_.node("Transpose", {outs[0]}, scope, Attrs{ints_attr("perm", {0, 2, 1, 3})}), merged_shape}, scope);
      h_n.push_back(outs[1]);
      if (lstm) c_n.push_back(outs[2]);
    }
    if (layer.batch_first()) seq = b_.node("Transpose", {seq}, scope, Attrs{ints_attr("perm", {1, 0, 2})});
    const auto stacked = [&](const std::vector<std::string>& parts) {
      return parts.size() == 1 ? parts[0] : b_.node("Concat", parts, scope, Attrs{int_attr("axis", 0)});
    };
    detail::onnx::Value<Out> output{seq, Out(result.first)};
    if constexpr (lstm) {
      return std::make_pair(output, std::make_tuple(detail::onnx::Value<Out>{stacked(h_n), Out(std::get<0>(result.second))},
                                                    detail::onnx::Value<Out>{stacked(c_n), Out(std::get<1>(result.second))}));
    } else {
      return std::make_pair(output, detail::onnx::Value<Out>{stacked(h_n), Out(result.second)});
    }
  }

  template <std::size_t K, class... L, class V>
  auto emit_sequence(const nn::Sequential<L...>& seq, const std::string& scope, const V& x) {
    if constexpr (K == sizeof...(L)) {
      return x;
    } else {
      return emit_sequence<K + 1>(seq, scope, emit(seq.template layer<K>(), detail::onnx::join(scope, std::to_string(K)), x));
    }
  }

  /// `layer` applied to the graph value(s) x under `scope`: the value it gives.
  template <class L, class... V>
  auto emit(const L& layer, const std::string& scope, const V&... xs) {
    using detail::onnx::int_attr;
    using detail::onnx::ints_attr;
    using detail::onnx::join;
    using detail::onnx::value;
    if constexpr (detail::onnx::is_attention<L>::value) {
      static_assert(sizeof...(V) == 3, "tessera::io::OnnxGraph: g(attention, query, key, value)");
      const auto& [q, k, v] = std::tie(xs...);
      return value(attention_nodes(layer, scope, q.name, k.name, v.name, q.example.shape()[1], k.example.shape()[1], false),
                   layer(q.example, k.example, v.example));
    } else {
      static_assert(sizeof...(V) == 1, "tessera::io::OnnxGraph: this layer takes one value");
      const auto& x = std::get<0>(std::tie(xs...));
      const std::string& in = x.name;
      if constexpr (detail::onnx::has_onnx_member<L, OnnxGraph, std::decay_t<decltype(x)>>::value) {
        HookFrame frame{scope, nn::detail::type_name_of<L>(), {}};
        nn::for_each_child(const_cast<L&>(layer), [&](const std::string& name, auto& child) {
          frame.children.emplace(static_cast<const void*>(&child), name);
        });
        frames_.push_back(std::move(frame));
        auto y = layer.onnx(*this, x);
        frames_.pop_back();
        return y;
      } else if constexpr (detail::onnx::is_sequential<L>::value) {
        return emit_sequence<0>(layer, scope, x);
      } else if constexpr (detail::onnx::is_cut<L>::value) {
        return emit(layer.inner, scope, x);
      } else if constexpr (detail::onnx::is_residual<L>::value) {
        const auto main = emit(layer.body, join(scope, "body"), x);
        const auto skip = emit(layer.shortcut, join(scope, "shortcut"), x);
        const std::string &left = main.name, &right = skip.name;
        return value(b_.node("Add", {left, right}, scope), main.example + skip.example);
      } else if constexpr (detail::onnx::is_dropout<L>::value || std::is_same_v<L, nn::Identity>) {
        return x;
      } else if constexpr (detail::onnx::is_recurrent<L>::value) {
        return recurrent(layer, scope, x);
      } else if constexpr (detail::onnx::is_transformer_layer<L>::value) {
        return value(transformer_nodes(layer, scope, in, x.example.shape()[1]), layer(x.example));
      } else {
        return value(nodes(layer, scope, in, x.example), layer(x.example));
      }
    }
  }

  /// The nodes of a layer that maps to a fixed pattern; returns the output's name.
  template <class L, class X>
  std::string nodes(const L& layer, const std::string& scope, const std::string& in, const X& x) {
    using detail::onnx::float_attr;
    using detail::onnx::int_attr;
    using detail::onnx::ints_attr;
    using detail::onnx::join;
    using T = value_type_t<X>;
    if constexpr (detail::onnx::is_linear<L>::value) {
      return linear_nodes(layer, scope, in, rank_v<X>);
    } else if constexpr (detail::onnx::is_conv<L>::value) {
      const auto& o = layer.options();
      std::vector<std::string> inputs{in, b_.initializer(join(scope, "weight"), layer.weight)};
      if (layer.has_bias()) inputs.push_back(b_.initializer(join(scope, "bias"), layer.bias));
      return b_.node("Conv", inputs, scope,
                     {ints_attr("kernel_shape", {layer.weight.shape()[2], layer.weight.shape()[3]}),
                      ints_attr("strides", {o.stride.h, o.stride.w}),
                      ints_attr("pads", {o.padding.h, o.padding.w, o.padding.h, o.padding.w}),
                      ints_attr("dilations", {o.dilation.h, o.dilation.w}), int_attr("group", o.groups)});
    } else if constexpr (detail::onnx::is_batch_norm<L>::value) {
      const auto& o = layer.options();
      if (!o.track_running_stats) {
        throw value_error("export_onnx: " + std::string(L::type_name) + " at '" + scope +
                          "' keeps no running statistics, so its eval mode uses each batch's: ONNX has no such op");
      }
      const index_t c = layer.num_features();
      const std::string scale = o.affine ? b_.initializer(join(scope, "weight"), layer.weight) : b_.filled(join(scope, "weight"), c, T(1));
      const std::string shift = o.affine ? b_.initializer(join(scope, "bias"), layer.bias) : b_.filled(join(scope, "bias"), c, T(0));
      return b_.node("BatchNormalization",
                     {in, scale, shift, b_.initializer(join(scope, "running_mean"), layer.running_mean),
                      b_.initializer(join(scope, "running_var"), layer.running_var)},
                     scope, Attrs{float_attr("epsilon", o.eps)});
    } else if constexpr (detail::onnx::is_layer_norm<L>::value) {
      return layer_norm_nodes(layer, scope, in);
    } else if constexpr (detail::onnx::is_embedding<L>::value) {
      return b_.node("Gather", {b_.initializer(join(scope, "weight"), layer.weight), in}, scope, Attrs{int_attr("axis", 0)});
    } else if constexpr (detail::onnx::is_positional_encoding<L>::value) {
      // x + the table's first L rows (the table stays whole under its state_dict name).
      const std::int64_t length = x.shape()[1];
      std::string table;
      if constexpr (std::is_same_v<L, nn::LearnedPositionalEncoding<T, backend_t<X>>>) {
        table = b_.initializer(join(scope, "weight"), layer.weight);
      } else {
        table = b_.initializer(join(scope, "pe"), layer.pe);
      }
      const std::string rows = b_.node("Slice",
                                       {table, b_.int64s(scope + "/starts", {0}), b_.int64s(scope + "/ends", {length}),
                                        b_.int64s(scope + "/axes", {0})},
                                       scope);
      return b_.node("Add", {in, rows}, scope);
    } else if constexpr (std::is_same_v<L, nn::MaxPool2d> || std::is_same_v<L, nn::AvgPool2d>) {
      const auto& o = layer.options;
      const Size2 stride = o.stride ? *o.stride : layer.kernel;
      std::vector<detail::onnx::Attribute> attributes{ints_attr("kernel_shape", {layer.kernel.h, layer.kernel.w}),
                                                      ints_attr("strides", {stride.h, stride.w}),
                                                      ints_attr("pads", {o.padding.h, o.padding.w, o.padding.h, o.padding.w})};
      if constexpr (std::is_same_v<L, nn::MaxPool2d>) {
        attributes.push_back(ints_attr("dilations", {o.dilation.h, o.dilation.w}));
        return b_.node("MaxPool", {in}, scope, attributes);
      } else {
        attributes.push_back(int_attr("count_include_pad", 1));  // padding counts as zeros, as tessera's does
        return b_.node("AveragePool", {in}, scope, attributes);
      }
    } else if constexpr (std::is_same_v<L, nn::GlobalAvgPool2d>) {
      return b_.node("Flatten", {b_.node("GlobalAveragePool", {in}, scope)}, scope, Attrs{int_attr("axis", 1)});
    } else if constexpr (std::is_same_v<L, nn::Flatten>) {
      return b_.node("Flatten", {in}, scope, Attrs{int_attr("axis", 1)});
    } else if constexpr (std::is_same_v<L, nn::ReLU>) {
      return b_.node("Relu", {in}, scope);
    } else if constexpr (std::is_same_v<L, nn::Sigmoid>) {
      return b_.node("Sigmoid", {in}, scope);
    } else if constexpr (std::is_same_v<L, nn::Tanh>) {
      return b_.node("Tanh", {in}, scope);
    } else if constexpr (std::is_same_v<L, nn::LeakyReLU>) {
      return b_.node("LeakyRelu", {in}, scope, Attrs{float_attr("alpha", layer.negative_slope)});
    } else if constexpr (std::is_same_v<L, nn::SiLU>) {
      return b_.node("Mul", {in, b_.node("Sigmoid", {in}, scope)}, scope);
    } else if constexpr (std::is_same_v<L, nn::GELU>) {
      return gelu_nodes<T>(scope, in);
    } else if constexpr (std::is_same_v<L, nn::Softmax>) {
      return b_.node("Softmax", {in}, scope, Attrs{int_attr("axis", layer.axis)});
    } else {
      throw value_error("export_onnx: layer '" + scope + "' (" + nn::detail::type_name_of<L>() +
                        ") has no ONNX mapping (docs/io.md lists the layers that have one; a module of your own maps "
                        "through an onnx member)");
    }
  }

  detail::onnx::Builder b_;
  std::vector<HookFrame> frames_;
};

/// Writes `model` as an ONNX model to `path` (atomically). `example_input` fixes the input's dtype
/// and the shapes (its first axis becomes the symbolic batch); the model runs on it once in eval
/// mode. value_error naming the layer when one has no ONNX mapping; io_error when writing fails.
template <class M, class X>
void export_onnx(M& model, const X& example_input, const std::string& path, const OnnxOptions& options) {
  using T = value_type_t<X>;
  constexpr std::size_t R = rank_v<X>;
  static_assert(R >= 1, "tessera::io::export_onnx: the example input needs a batch axis");
  nn::ModeGuard<M> eval(model, false);
  OnnxGraph g;
  g.b_.unique(options.input_name);  // reserved: no node takes these names
  g.b_.unique(options.output_name);
  const detail::onnx::Value<Tensor<T, R, backend_t<X>>> x{options.input_name, example_input};
  const auto y = g.emit(model, "", x);
  using Y = std::decay_t<decltype(y)>;
  static_assert(detail::onnx::is_value<Y>::value,
                "tessera::io::export_onnx: the model must give one tensor (a recurrent layer gives {output, state}: "
                "a module's onnx member picks .first)");
  // The graph's output under its own name: an Identity of the last value (which may be the input).
  const std::string& last = y.name;
  const std::string result = g.b_.node("Identity", {last}, "", {}, options.output_name);
  std::vector<std::int64_t> input_shape(x.example.shape().begin(), x.example.shape().end());
  std::vector<std::int64_t> output_shape(y.example.shape().begin(), y.example.shape().end());
  if (options.dynamic_batch) {
    input_shape[0] = -1;
    if (!output_shape.empty()) output_shape[0] = -1;
  }
  const auto input = detail::onnx::Builder::value_info(options.input_name, detail::onnx::elem_type<T>(), input_shape);
  const auto output =
      detail::onnx::Builder::value_info(result, detail::onnx::elem_type<typename decltype(y.example)::value_type>(), output_shape);
  const std::string bytes = g.b_.model(options, input, output);
  write_file_atomically(path, {bytes});
}

}  // namespace tessera::io
