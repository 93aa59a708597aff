// Graphs of expressions and models, for TensorBoard's Graphs view (a GraphDef) and GraphViz (DOT).
//
// An expression's type is its graph (docs/architecture.md): each node names its op,
// knows its shape and element type, and lists its children (`inputs()`). trace_graph records a node
// per op node, per leaf tensor (per data(); named after `named_tensors`, else "input", "input_1")
// and per scalar ("Const"), named "<scope>/<op>" made unique with "_1", ... (TensorBoard folds each
// '/' scope into a group). A materialization node (matmul, conv, reduction) reached twice is one
// node (its copies share a cache); an elementwise subexpression used twice appears twice, as it is
// computed twice.
//
// model_graph(model, input[, loss]) names leaves after the module's parameters and buffers
// ("conv1/weight", op VariableV2), the input "input" (Placeholder), and tensors the layers or the
// loss make (dropout's ones, cross_entropy's class coefficients) "Const". It walks a Sequential
// layer by layer, each layer applied to a stand-in tensor of the previous output's shape (allocated,
// zero-filled, never read), so every op node of layer K lands in scope "K" (nested: "2/0"; a Cut is
// transparent: its block is walked, not run); any other module's whole forward at once (Sequentials
// inside it included); and the loss, called on a stand-in for the model's output, in scope "loss".
//
// Scoping rule for op nodes, each module or loss being walked within its own scope S:
//   1. an op that reads parameters -- directly or through ops that read only parameters and
//      constants, such as transpose(W) or reshape(b) -- belongs to the scope those parameters share;
//   2. else to the scope its inputs share, the walked module's input counting as S;
//   3. "share" is the longest common prefix ("2/0" and "2/1" share "2"; unrelated scopes share the
//      root), and a result outside S becomes S. Constants take their first reader's scope.
// So in a user module conv1's conv2d and bias add land in "conv1", the relu after them too.
//
// Nothing is evaluated: building a forward expression computes nothing, and the model is in
// evaluation mode meanwhile (no dropout masks drawn, BatchNorm statistics untouched; each module's
// own mode is restored after). Exceptions: a Cut inside a user module's forward runs its block when
// built, and a loss may compute from its targets.
#pragma once

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/core/config.hpp"
#include "tessera/core/dtype.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/cache.hpp"
#include "tessera/expr/elementwise.hpp"
#include "tessera/expr/evaluator.hpp"
#include "tessera/io/protobuf.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/nn/sequential.hpp"
#include "tessera/nn/summary.hpp"

namespace tessera::nn {
template <class M>
struct Cut;  // nn/cut.hpp pulls in autodiff; recognizing the type needs only this
}  // namespace tessera::nn

namespace tessera::io {

/// One node of a traced graph.
struct GraphNode {
  std::string name;                 ///< unique, TensorFlow-style: "conv1/weight", "0/conv2d_1"
  std::string op;                   ///< "conv2d", "add", ...; leaves "Placeholder", "VariableV2", "Const"
  std::vector<std::string> inputs;  ///< names of the nodes it reads, in argument order
  std::vector<index_t> shape;       ///< output shape (empty for rank 0)
  std::string dtype;                ///< "float32", "int64", ...
};

/// A traced graph; every node comes after the nodes it reads.
struct Graph {
  std::vector<GraphNode> nodes;
  /// The node called `name`, or nullptr.
  const GraphNode* find(std::string_view name) const {
    const auto it = std::find_if(nodes.begin(), nodes.end(), [&](const GraphNode& n) { return n.name == name; });
    return it == nodes.end() ? nullptr : &*it;
  }
  /// GraphViz source: boxes labelled name, op and shape; edges labelled with the shape they carry;
  /// a cluster per top-level scope. Render with `dot -Tsvg graph.dot -o graph.svg`.
  TESSERA_OUT_OF_LINE std::string to_dot() const;
  /// The serialized tensorflow.GraphDef (what Event.graph_def holds).
  TESSERA_OUT_OF_LINE std::string to_graph_def() const;
};

namespace detail {

/// TensorFlow's DataType of a dtype name (0: none).
inline int tf_dtype(std::string_view d) {
  return d == "float32" ? 1 : d == "float64" ? 2 : d == "int32" ? 3 : d == "int64" ? 9 : d == "bool" ? 10 : 0;
}

/// A name TensorFlow accepts, [A-Za-z0-9.][A-Za-z0-9_.\-/]*, without empty '/' components.
inline std::string sanitize_name(std::string_view s) {
  std::string out;
  for (char c : s) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '.' || c == '-' || c == '/';
    if (c == '/' && (out.empty() || out.back() == '/')) continue;
    out.push_back(ok ? c : '_');
  }
  while (!out.empty() && out.back() == '/') out.pop_back();
  if (out.empty()) return "node";
  return out[0] == '_' || out[0] == '-' ? "n" + out : out;
}
/// The scope a name lives in: "conv1/weight" -> "conv1", "input" -> "".
inline std::string parent_scope(const std::string& name) {
  const auto p = name.rfind('/');
  return p == std::string::npos ? std::string() : name.substr(0, p);
}
/// Longest common prefix at '/' boundaries: ("2/0", "2/1") -> "2".
inline std::string common_scope(const std::string& a, const std::string& b) {
  std::size_t end = 0;
  for (std::size_t i = 0; i <= a.size() && i <= b.size(); ++i) {
    if ((i == a.size() || a[i] == '/') && (i == b.size() || b[i] == '/')) end = i;
    if (i == a.size() || i == b.size() || a[i] != b[i]) break;
  }
  return a.substr(0, end);
}

template <class M>
struct is_cut : std::false_type {};
template <class M>
struct is_cut<nn::Cut<M>> : std::true_type {};

enum class Role { op, placeholder, variable, constant };

/// Collects the nodes of one or more walks ("generations") and names them at the end.
class Tracer {
 public:
  /// Names the leaf whose data() is `data`, "conv1.weight" as "conv1/weight". Without `shape`, the
  /// leaf's shape is that of the first view met.
  TESSERA_OUT_OF_LINE void name_tensor(const void* data, std::string name, Role role,
                                       std::optional<std::vector<index_t>> shape = {});
  /// Starts a walk within `scope`; unnamed tensors met then are inputs (Placeholder) or constants.
  void begin(std::string scope, bool unnamed_are_inputs) {
    scope_ = std::move(scope);
    unnamed_are_inputs_ = unnamed_are_inputs;
    ++generation_;
  }

  /// Records `e` and everything below it; returns its node.
  template <class E>
  std::size_t visit(const E& e) {
    using D = std::decay_t<E>;
    const std::string dtype = dtype_name<value_type_t<D>>();
    if constexpr (tessera::detail::is_tensor_v<D>) {
      const void* key = e.data();
      if (key) {
        if (auto it = by_data_.find(key); it != by_data_.end()) return it->second;
        keep_.push_back(e.storage());  // keeps the address from being reused by a later walk's tensor
      }
      std::size_t id;
      if (auto it = key ? names_.find(key) : names_.end(); it != names_.end()) {
        const Named& n = it->second;
        id = add(n.role == Role::variable ? "VariableV2" : "Placeholder", n.role, n.name, {},
                 n.shape ? *n.shape : shape_of(e), dtype);
      } else if (unnamed_are_inputs_) {
        id = add("Placeholder", Role::placeholder, "input", {}, shape_of(e), dtype);
      } else {
        id = add("Const", Role::constant, "", {}, shape_of(e), dtype);
      }
      return key ? by_data_[key] = id : id;
    } else if constexpr (tessera::detail::is_scalar_node<D>::value || !tessera::detail::has_inputs<D>::value) {
      // Scalars, and leaves of other kinds (autodiff's Var) named by their op.
      return add(tessera::detail::is_scalar_node<D>::value ? "Const" : std::string(e.name), Role::constant, "", {}, shape_of(e), dtype);
    } else {
      const void* identity = nullptr;
      if constexpr (tessera::detail::has_cache_slot<D>::value) {
        identity = e.cache.get();
        if (auto it = by_identity_.find(identity); it != by_identity_.end()) return it->second;
        keep_.push_back(e.cache);  // as above
      }
      std::vector<std::size_t> ins;
      std::apply([&](const auto&... in) { (ins.push_back(visit(in)), ...); }, e.inputs());
      const std::size_t id = add(e.name, Role::op, "", std::move(ins), shape_of(e), dtype);
      if (identity) by_identity_[identity] = id;
      return id;
    }
  }

  /// A tensor standing for node `id` (the value of `e`) in later walks: `e` itself when it is a
  /// tensor, else a zero-filled tensor of its shape.
  template <class E>
  auto stand_in(const E& e, std::size_t id) {
    if constexpr (tessera::detail::is_tensor_v<E>) {
      return e;
    } else {
      Tensor<value_type_t<E>, rank_v<E>, backend_t<E>> t(e.shape());
      keep_.push_back(t.storage());
      by_data_[t.data()] = id;
      return t;
    }
  }

  /// Names every node ("<scope>/<op>", unique) and returns the graph.
  TESSERA_OUT_OF_LINE Graph finish() const;

 private:
  struct Named {
    std::string name;
    Role role;
    std::optional<std::vector<index_t>> shape;
  };
  struct Node {
    std::string op, scope, fixed_name;  // fixed_name: leaves named by the caller, or "input"
    Role role;
    std::vector<std::size_t> inputs;
    std::vector<index_t> shape;
    std::string dtype;
    int generation;
    bool weight_side, pending;  // a parameter or computed from parameters only; a constant without scope
  };

  template <class E>
  static std::vector<index_t> shape_of(const E& e) {
    const auto s = e.shape();  // may be a temporary: begin() and end() must come from one copy
    return {s.begin(), s.end()};
  }

  TESSERA_OUT_OF_LINE std::size_t add(std::string op, Role role, std::string fixed_name, std::vector<std::size_t> ins,
                                      std::vector<index_t> shape, std::string dtype);

  std::vector<Node> nodes_;
  std::map<const void*, Named> names_;
  std::map<const void*, std::size_t> by_data_, by_identity_;
  std::vector<std::shared_ptr<const void>> keep_;
  std::string scope_;
  bool unnamed_are_inputs_ = true;
  int generation_ = 0;
};

#if TESSERA_OUT_OF_LINE_DEFINITIONS

TESSERA_OUT_OF_LINE void Tracer::name_tensor(const void* data, std::string name, Role role,
                                             std::optional<std::vector<index_t>> shape) {
  std::replace(name.begin(), name.end(), '.', '/');
  names_[data] = {sanitize_name(name), role, std::move(shape)};
}

TESSERA_OUT_OF_LINE std::size_t Tracer::add(std::string op, Role role, std::string fixed_name,
                                            std::vector<std::size_t> ins, std::vector<index_t> shape,
                                            std::string dtype) {
  // The scoping rule of the header comment (leaves: the walk's scope; constants: their reader's).
  std::vector<std::string> weight_scopes, input_scopes;
  bool all_weight = true;
  for (std::size_t i : ins) {
    const Node& c = nodes_[i];
    if (c.role == Role::constant) continue;
    const bool ours = c.role == Role::op && c.generation == generation_;
    const bool weight = c.role == Role::variable || (ours && c.weight_side);
    const std::string scope = c.role == Role::variable ? parent_scope(c.fixed_name) : c.scope;
    if (weight) weight_scopes.push_back(scope);
    all_weight = all_weight && weight;
    input_scopes.push_back(ours ? scope : scope_);
  }
  const auto& basis = !weight_scopes.empty() ? weight_scopes : input_scopes;
  std::string scope = basis.empty() ? scope_ : basis[0];
  for (const auto& s : basis) scope = common_scope(scope, s);
  if (common_scope(scope, scope_) != scope_) scope = scope_;  // not within the walk's scope
  for (std::size_t i : ins) {
    if (std::exchange(nodes_[i].pending, false)) nodes_[i].scope = scope;
  }
  const bool weight_side = role == Role::variable || (role == Role::op && !weight_scopes.empty() && all_weight);
  nodes_.push_back({std::move(op), std::move(scope), std::move(fixed_name), role, std::move(ins), std::move(shape),
                    std::move(dtype), generation_, weight_side, role == Role::constant});
  return nodes_.size() - 1;
}

TESSERA_OUT_OF_LINE Graph Tracer::finish() const {
  std::vector<std::string> wanted(nodes_.size()), names(nodes_.size());
  std::set<std::string> prefixes, used;  // no node may be called like a scope ("fc" beside "fc/weight")
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    wanted[i] = n.fixed_name.empty() ? sanitize_name(n.scope.empty() ? n.op : n.scope + "/" + n.op) : n.fixed_name;
    for (auto p = wanted[i].find('/'); p != std::string::npos; p = wanted[i].find('/', p + 1)) {
      prefixes.insert(wanted[i].substr(0, p));
    }
  }
  // Caller-chosen names first, so that "conv1/weight" keeps its name whatever the ops are called.
  for (const bool fixed : {true, false}) {
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i].fixed_name.empty() == fixed) continue;
      names[i] = wanted[i];
      for (int k = 1; used.count(names[i]) || prefixes.count(names[i]); ++k)
        names[i] = wanted[i] + "_" + std::to_string(k);
      used.insert(names[i]);
    }
  }
  Graph g;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    g.nodes.push_back({names[i], n.op, {}, n.shape, n.dtype});
    for (std::size_t in : n.inputs) g.nodes.back().inputs.push_back(names[in]);
  }
  return g;
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

/// DOT's double-quoted string: quotes and backslashes escaped, newlines as \n.
inline std::string dot_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\' || c == '\n') out.push_back('\\');
    out.push_back(c == '\n' ? 'n' : c);
  }
  return out + "\"";
}

template <class M, class X>
auto trace_module(Tracer& tracer, M& m, const X& in, const std::string& scope);

template <std::size_t K, class... L, class X>
auto trace_layers(Tracer& tracer, nn::Sequential<L...>& seq, const X& in, const std::string& scope) {
  auto out = trace_module(tracer, seq.template layer<K>(), in, (scope.empty() ? "" : scope + "/") + std::to_string(K));
  if constexpr (K + 1 == sizeof...(L)) {
    return out;
  } else {
    return trace_layers<K + 1>(tracer, seq, out, scope);
  }
}

/// Walks module `m` applied to the stand-in `in` within `scope`; returns a stand-in for its output.
template <class M, class X>
auto trace_module(Tracer& tracer, M& m, const X& in, const std::string& scope) {
  if constexpr (nn::detail::is_sequential<M>::value) {
    return trace_layers<0>(tracer, m, in, scope);
  } else if constexpr (is_cut<M>::value) {
    return trace_module(tracer, m.inner, in, scope);
  } else {
    tracer.begin(scope, false);
    const auto y = m(in);
    return tracer.stand_in(y, tracer.visit(y));
  }
}

}  // namespace detail

/// The graph of expression `expr`: a node per op node, per leaf tensor (one per data()) and per
/// scalar constant. Tensors whose data() is in `named_tensors` take that name ('.' becomes '/':
/// "conv1.weight" -> "conv1/weight") and op "VariableV2"; others are "input", "input_1", ...
/// (op "Placeholder"). Op nodes are scoped by the rule at the top of this file. Evaluates nothing.
template <class E>
Graph trace_graph(const E& expr, const std::vector<std::pair<std::string, const void*>>& named_tensors = {}) {
  detail::Tracer tracer;
  for (const auto& [name, data] : named_tensors) tracer.name_tensor(data, name, detail::Role::variable);
  tracer.begin("", true);
  tracer.visit(expr);
  return tracer.finish();
}

/// The graph of `model` applied to `input` (a tensor or an expression) and, when given, of
/// `loss(output)`, in scope "loss". Names and scopes: see the top of this file.
template <class M, class X, class LossFn>
Graph model_graph(M& model, const X& input, LossFn&& loss) {
  nn::ModeGuard<M> eval_mode(model, false);
  detail::Tracer tracer;
  const auto name = [&](const std::string& n, const auto& t) {
    tracer.name_tensor(t.data(), n, detail::Role::variable, std::vector<index_t>(t.shape().begin(), t.shape().end()));
  };
  nn::for_each_parameter(model, name);
  nn::for_each_buffer(model, name);
  tracer.begin("", true);
  const auto y = detail::trace_module(tracer, model, tracer.stand_in(input, tracer.visit(input)), "");
  if constexpr (!std::is_same_v<std::decay_t<LossFn>, std::nullptr_t>) {
    tracer.begin("loss", false);
    tracer.visit(loss(y));
  }
  return tracer.finish();
}
/// The graph of `model` applied to `input`.
template <class M, class X>
Graph model_graph(M& model, const X& input) {
  return model_graph(model, input, nullptr);
}

#if TESSERA_OUT_OF_LINE_DEFINITIONS

TESSERA_OUT_OF_LINE std::string Graph::to_graph_def() const {
  proto::Message graph;
  for (const auto& n : nodes) {
    proto::Message node;
    node.bytes(1, n.name).bytes(2, n.op);
    for (const auto& in : n.inputs) node.bytes(3, in);
    const auto attr = [&node](std::string_view key, const proto::Message& value) {
      node.message(5, proto::Message().bytes(1, key).message(2, value));  // map entry {key=1, value=2}
    };
    proto::Message shape;  // TensorShapeProto: dim=2 {size=1}
    for (index_t d : n.shape) shape.message(2, proto::Message().int64(1, d));
    attr("_output_shapes", proto::Message().message(1, proto::Message().message(7, shape)));  // list.shape
    // TensorFlow's convention: sources carry "dtype", ops their type parameter "T".
    if (const int type = detail::tf_dtype(n.dtype))
      attr(n.inputs.empty() ? "dtype" : "T", proto::Message().uint(6, type));
    graph.message(1, node);
  }
  graph.message(4, proto::Message().int64(1, 22));  // versions.producer, as PyTorch's writer sets it
  return graph.data();
}

TESSERA_OUT_OF_LINE std::string Graph::to_dot() const {
  using detail::dot_quote;
  std::map<std::string, std::string> shapes, clusters;
  std::vector<std::string> order;  // top-level scopes, in order of appearance
  std::string out = "digraph tessera {\n  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n", top_level, edges;
  for (const auto& n : nodes) {
    shapes[n.name] = shape_to_string(n.shape);
    const std::string line = dot_quote(n.name) + " [label=" + dot_quote(n.name + "\n" + n.op + "\n" + shapes[n.name]) +
                             (n.inputs.empty() ? ", shape=ellipse" : "") + "];\n";
    const auto slash = n.name.find('/');
    if (slash == std::string::npos) {
      top_level += "  " + line;
    } else {
      const std::string scope = n.name.substr(0, slash);
      if (!clusters.count(scope)) order.push_back(scope);
      clusters[scope] += "    " + line;
    }
    for (const auto& in : n.inputs) {
      edges += "  " + dot_quote(in) + " -> " + dot_quote(n.name) + " [label=" + dot_quote(shapes[in]) + "];\n";
    }
  }
  for (const auto& c : order) {
    out += "  subgraph " + dot_quote("cluster_" + c) + " {\n    label=" + dot_quote(c) + ";\n" + clusters[c] + "  }\n";
  }
  return out + top_level + edges + "}\n";
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

}  // namespace tessera::io
