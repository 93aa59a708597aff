// io/graph.hpp: graphs of expressions and models -- nodes, wiring, shapes, scopes, that tracing
// evaluates nothing and leaves the model as it was, and the GraphDef and DOT outputs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <tessera/io/graph.hpp>
#include <tessera/tessera.hpp>

#include "io/tensorboard_reader.hpp"

using namespace tessera;
using io::Graph;
using io::GraphNode;

namespace {
using Dims = std::vector<index_t>;

const GraphNode& node(const Graph& g, const std::string& name) {
  const GraphNode* n = g.find(name);
  if (!n) {
    std::string all;
    for (const auto& m : g.nodes) all += " " + m.name + "(" + m.op + ")";
    FAIL("no node " << name << " among" << all);
  }
  return *n;
}
std::vector<const GraphNode*> with_op(const Graph& g, const std::string& op) {
  std::vector<const GraphNode*> out;
  for (const auto& n : g.nodes) {
    if (n.op == op) out.push_back(&n);
  }
  return out;
}
bool same_values(const Tensor<double, 1>& a, const Tensor<double, 1>& b) {
  if (a.shape() != b.shape()) return false;
  for (index_t i = 0; i < a.size(); ++i) {
    if (a(i) != b(i)) return false;
  }
  return true;
}
bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

/// Names unique, every input an earlier node.
void check_wiring(const Graph& g) {
  std::vector<std::string> seen;
  for (const auto& n : g.nodes) {
    for (const auto& in : n.inputs)
      CHECK_MESSAGE(std::count(seen.begin(), seen.end(), in) == 1, n.name << " reads " << in);
    CHECK_MESSAGE(std::count(seen.begin(), seen.end(), n.name) == 0, "duplicate " << n.name);
    seen.push_back(n.name);
  }
}

struct Net : nn::Module<Net> {
  nn::Conv2d<> conv1{1, 2, 3};
  nn::Linear<> fc{2 * 4 * 4, 3};
  auto members() { return std::make_tuple(nn::child("conv1", conv1), nn::child("fc", fc)); }
  template <class X>
  auto operator()(const X& x) const {
    return fc(nn::Flatten{}(relu(conv1(x))));
  }
};
}  // namespace

TEST_CASE("trace_graph: one node per op and per tensor, wired, shaped and scoped by the parameters") {
  Tensor<float, 2> x(3, 4), w(4, 5);
  Tensor<float, 1> b(5);
  const Graph g = io::trace_graph(relu(matmul(x, w) + b) + x.slice(1, 0, 1) * 2.0f,
                                  {{"fc.weight", w.data()}, {"fc.bias", b.data()}});
  check_wiring(g);
  REQUIRE(g.nodes.size() == 9);  // x, w, matmul, b, add, relu, x (same storage: no node), Const, mul, add
  CHECK(node(g, "input").op == "Placeholder");
  CHECK(node(g, "input").shape == Dims{3, 4});
  CHECK(node(g, "fc/weight").op == "VariableV2");
  CHECK(node(g, "fc/matmul").inputs == std::vector<std::string>{"input", "fc/weight"});
  CHECK(node(g, "fc/matmul").shape == Dims{3, 5});
  CHECK(node(g, "fc/add").inputs == std::vector<std::string>{"fc/matmul", "fc/bias"});
  CHECK(node(g, "fc/relu").dtype == "float32");
  // The slice shares x's storage (same data()): one node. Its reader is at the root.
  CHECK(node(g, "mul").inputs == std::vector<std::string>{"input", "Const"});
  CHECK(node(g, "Const").shape.empty());
  CHECK(node(g, "add").inputs == std::vector<std::string>{"fc/relu", "mul"});
  CHECK(g.nodes.back().name == "add");

  // Repeated ops get _1, _2; a node is never called like a scope ("fc" beside "fc/weight").
  Tensor<float, 2> w2(4, 4);
  const Graph h = io::trace_graph(exp(x) + exp(x) + matmul(x, w2), {{"fc", x.data()}, {"fc.w", w2.data()}});
  check_wiring(h);
  CHECK(h.find("fc_1") != nullptr);
  CHECK(h.find("exp") != nullptr);
  CHECK(h.find("exp_1") != nullptr);
  // Its parameters' scopes are the root and "fc": they share the root.
  CHECK(node(h, "matmul").inputs == std::vector<std::string>{"fc_1", "fc/w"});
}

TEST_CASE("name helpers: TensorFlow-valid names, common scopes, DOT quoting") {
  CHECK(io::detail::sanitize_name("conv 1//w\"x/") == "conv_1/w_x");
  CHECK(io::detail::sanitize_name("_a") == "n_a");
  CHECK(io::detail::sanitize_name("") == "node");
  CHECK(io::detail::common_scope("2/0", "2/1") == "2");
  CHECK(io::detail::common_scope("2/10", "2/1") == "2");
  CHECK(io::detail::common_scope("conv1", "fc") == "");
  CHECK(io::detail::common_scope("a/b", "a/b") == "a/b");
  CHECK(io::detail::dot_quote("a\"b\\c\nd") == "\"a\\\"b\\\\c\\nd\"");
}

TEST_CASE("model_graph of a Sequential with a loss: layer scopes, loss scope, nothing evaluated") {
  Generator gen(1);
  nn::Conv2dLayerOptions conv_options;
  conv_options.padding = 1;
  conv_options.generator = &gen;
  auto model = nn::sequential(nn::Conv2d(1, 4, 3, conv_options), nn::ReLU{}, nn::MaxPool2d(2), nn::Flatten{},
                              nn::Linear(4 * 14 * 14, 10, {.bias = true, .generator = &gen}));
  const Tensor<float, 4> x(2, 1, 28, 28);
  const Tensor<std::int64_t, 1> labels = {3, 7};
  instrument::reset();
  const Graph g = io::model_graph(model, x, [&](const auto& y) { return nn::cross_entropy(y, labels); });
  CHECK(instrument::counters().elementwise_passes == 0);
  CHECK(instrument::counters().materializations == 0);
  CHECK(model.is_training());
  check_wiring(g);

  CHECK(node(g, "input").shape == Dims{2, 1, 28, 28});
  CHECK(node(g, "0/weight").shape == Dims{4, 1, 3, 3});
  CHECK(node(g, "0/weight").op == "VariableV2");
  CHECK(node(g, "4/bias").shape == Dims{10});
  CHECK(node(g, "0/conv2d").inputs == std::vector<std::string>{"input", "0/weight", "0/bias"});  // bias fused
  CHECK(node(g, "1/relu").shape == Dims{2, 4, 28, 28});
  CHECK(node(g, "2/max_pool2d").inputs == std::vector<std::string>{"1/relu"});
  CHECK(node(g, "3/reshape").shape == Dims{2, 4 * 14 * 14});
  CHECK(node(g, "4/matmul").inputs[0] == "3/reshape");
  const char* layer_of[][2] = {{"conv2d", "0/"}, {"relu", "1/"},           {"max_pool2d", "2/"},
                               {"matmul", "4/"}, {"log_softmax", "loss/"}, {"sum", "loss/"}};
  for (const auto& [op, scope] : layer_of) {
    for (const GraphNode* n : with_op(g, op)) CHECK_MESSAGE(starts_with(n->name, scope), n->name);
  }
  for (const auto& n : g.nodes) {
    if (starts_with(n.name, "0/") && n.op != "VariableV2") CHECK(n.inputs.size() > 0);
  }
  CHECK(starts_with(g.nodes.back().name, "loss/"));
  CHECK(g.nodes.back().shape.empty());
  CHECK(node(g, "loss/log_softmax").inputs == std::vector<std::string>{"4/add"});
}

TEST_CASE("model_graph: nested Sequential, transparent Cut, BatchNorm and Dropout untouched, modes restored") {
  Generator gen(2), drop_gen(3);
  auto model = nn::sequential(nn::Linear<double>(4, 3, {.bias = true, .generator = &gen}), nn::BatchNorm1d<double>(3),
                              nn::Dropout<double>(0.5, {.generator = &drop_gen}),
                              nn::sequential(nn::Linear<double>(3, 3, {.bias = true, .generator = &gen}), nn::Tanh{}),
                              nn::cut(nn::sequential(nn::Linear<double>(3, 2, {.bias = true, .generator = &gen}))));
  model.layer<3>().eval();  // a mixed mode must come back as it was
  auto& bn = model.layer<1>();
  const Tensor<double, 1> mean_before = bn.running_mean.clone(), var_before = bn.running_var.clone();
  const auto offset = drop_gen.offset();
  const Tensor<double, 2> x(5, 4);
  instrument::reset();
  const Graph g = io::model_graph(model, x, [](const auto& y) { return sum(square(y)); });
  CHECK(instrument::counters().elementwise_passes == 0);
  CHECK(instrument::counters().materializations == 0);
  CHECK(drop_gen.offset() == offset);
  CHECK(bn.num_batches_tracked() == 0);
  CHECK(same_values(bn.running_mean, mean_before));
  CHECK(same_values(bn.running_var, var_before));
  CHECK(model.is_training());
  CHECK(bn.is_training());
  CHECK(!model.layer<3>().is_training());
  CHECK(!model.layer<3>().layer<0>().is_training());
  check_wiring(g);

  CHECK(node(g, "1/batch_norm").inputs == std::vector<std::string>{"0/add", "1/weight", "1/bias"});
  CHECK(node(g, "2/mul").inputs == std::vector<std::string>{"1/batch_norm", "2/Const"});  // eval: x * ones
  CHECK(node(g, "3/0/matmul").inputs[0] == "2/mul");
  CHECK(node(g, "3/1/tanh").shape == Dims{5, 3});
  CHECK(node(g, "4/0/weight").shape == Dims{2, 3});  // the cut adds no scope, like its parameter names
  CHECK(node(g, "4/0/matmul").inputs[0] == "3/1/tanh");
  CHECK(with_op(g, "cut").empty());
  CHECK(node(g, "loss/square").inputs == std::vector<std::string>{"4/0/add"});
  CHECK(g.nodes.back().shape.empty());

  // Without a loss the graph ends at the model's output.
  const Graph plain = io::model_graph(model, x);
  CHECK(plain.nodes.back().name == "4/0/add");
}

TEST_CASE("model_graph of a user module: parameters named by member, ops scoped by the parameters they read") {
  Net net;
  const Tensor<float, 4> x(2, 1, 6, 6);
  const Graph g = io::model_graph(net, x);
  check_wiring(g);
  CHECK(node(g, "conv1/weight").shape == Dims{2, 1, 3, 3});
  // relu(conv2d(...)) is one node: the convolution applies relu as it writes its output.
  CHECK(node(g, "conv1/conv2d_relu").inputs == std::vector<std::string>{"input", "conv1/weight", "conv1/bias"});
  CHECK(node(g, "conv1/reshape").shape == Dims{2, 2 * 4 * 4});  // its input is in conv1
  CHECK(node(g, "fc/transpose").inputs == std::vector<std::string>{"fc/weight"});
  CHECK(node(g, "fc/matmul").inputs == std::vector<std::string>{"conv1/reshape", "fc/transpose"});
  CHECK(g.nodes.back().name == "fc/add");
  CHECK(g.nodes.back().shape == Dims{2, 3});

  // An input expression is walked at the root; the module reads its output.
  const Graph h = io::model_graph(net, x * 2.0f);
  check_wiring(h);
  CHECK(node(h, "mul").inputs == std::vector<std::string>{"input", "Const"});
  CHECK(node(h, "conv1/conv2d_relu").inputs == std::vector<std::string>{"mul", "conv1/weight", "conv1/bias"});
}

TEST_CASE("to_graph_def and to_dot carry every node, edge, shape and type") {
  Net net;
  const Tensor<float, 4> x(2, 1, 6, 6);
  const Tensor<std::int64_t, 1> labels = {0, 2};
  const Graph g = io::model_graph(net, x, [&](const auto& y) { return nn::cross_entropy(y, labels); });

  const tbtest::GraphDef def = tbtest::decode_graph(g.to_graph_def());
  CHECK(def.producer == 22);
  REQUIRE(def.nodes.size() == g.nodes.size());
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const auto& d = def.nodes[i];
    const auto& n = g.nodes[i];
    CHECK(d.name == n.name);
    CHECK(d.op == n.op);
    CHECK(d.inputs == n.inputs);
    REQUIRE(d.attr.count("_output_shapes"));
    REQUIRE(d.attr.at("_output_shapes").shape_list.size() == 1);
    CHECK(d.attr.at("_output_shapes").shape_list[0] == std::vector<std::int64_t>(n.shape.begin(), n.shape.end()));
    const char* type_key = n.inputs.empty() ? "dtype" : "T";
    REQUIRE(d.attr.count(type_key));
    CHECK(d.attr.at(type_key).type == 1);  // DT_FLOAT
  }

  const std::string dot = g.to_dot();
  CHECK(starts_with(dot, "digraph"));
  CHECK(std::count(dot.begin(), dot.end(), '{') == std::count(dot.begin(), dot.end(), '}'));
  for (const auto& n : g.nodes) CHECK(dot.find("\"" + n.name + "\" [label=") != std::string::npos);
  CHECK(dot.find("subgraph \"cluster_conv1\"") != std::string::npos);
  CHECK(dot.find("\"input\" -> \"conv1/conv2d_relu\" [label=\"[2, 1, 6, 6]\"]") != std::string::npos);
}
