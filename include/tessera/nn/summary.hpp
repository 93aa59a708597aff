// summary(model, input): a table of the model's layers, their output shapes and parameter counts,
// like Keras' model.summary(). Shapes come from building the forward expression, which evaluates
// nothing (and draws no random numbers: the model is put in evaluation mode meanwhile).
#pragma once

#include <cstddef>
#include <iomanip>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/core/tensor.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/nn/sequential.hpp"

namespace tessera::nn {

namespace detail {

template <class M>
struct is_sequential : std::false_type {};
template <class... L>
struct is_sequential<Sequential<L...>> : std::true_type {};

struct SummaryRow {
  std::string name, type, output;
  index_t params = 0;
};

template <class M>
index_t buffer_count(M& m) {
  index_t n = 0;
  for_each_buffer(m, [&](const std::string&, const auto& t) { n += t.size(); });
  return n;
}

template <std::size_t K, class... L, class X>
void sequential_rows(Sequential<L...>& seq, const X& x, std::vector<SummaryRow>& rows) {
  if constexpr (K < sizeof...(L)) {
    auto& layer = seq.template layer<K>();
    auto y = layer(x);
    rows.push_back({std::to_string(K), type_name_of<std::decay_t<decltype(layer)>>(), shape_to_string(y.shape()),
                    parameter_count(layer)});
    sequential_rows<K + 1>(seq, y, rows);
  }
}

}  // namespace detail

/// The summary table of `model` applied to `input` (any expression of the input's shape). A
/// Sequential lists its layers with output shapes; another module lists its direct submodules with
/// their parameter counts, then its output shape.
template <class M, class X>
std::string summary(M& model, const X& input) {
  ModeGuard<M> eval_mode(model, false);  // building the forward draws no dropout masks
  std::vector<detail::SummaryRow> rows;
  std::string output;
  if constexpr (detail::is_sequential<M>::value) {
    detail::sequential_rows<0>(model, input, rows);
    output = rows.empty() ? shape_to_string(input.shape()) : rows.back().output;
  } else {
    for_each_child(model, [&](const std::string& name, auto& child) {
      rows.push_back({name, detail::type_name_of<std::decay_t<decltype(child)>>(), "", parameter_count(child)});
    });
    output = shape_to_string(model(input).shape());
  }

  std::size_t w_layer = 13, w_shape = 12;
  for (const auto& r : rows) {
    w_layer = std::max(w_layer, r.name.size() + r.type.size() + 3);
    w_shape = std::max(w_shape, r.output.size());
  }
  w_layer += 2;
  w_shape += 2;
  const std::size_t width = w_layer + w_shape + 12;
  auto group = [](index_t v) {  // 1234567 -> "1,234,567"
    std::string s = std::to_string(v);
    for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(std::size_t(i), ",");
    return s;
  };
  std::ostringstream os;
  os << "Model: " << detail::type_name_of<M>() << "\n" << std::string(width, '=') << "\n";
  os << std::left << std::setw(int(w_layer)) << "Layer (type)" << std::setw(int(w_shape)) << "Output Shape" << "Param #\n";
  os << std::string(width, '=') << "\n";
  for (const auto& r : rows) {
    os << std::setw(int(w_layer)) << (r.name + " (" + r.type + ")") << std::setw(int(w_shape)) << r.output
       << group(r.params) << "\n";
  }
  os << std::string(width, '=') << "\n";
  os << "Output shape: " << output << "\n";
  os << "Trainable params: " << group(parameter_count(model)) << "\n";
  os << "Buffers (non-trainable): " << group(detail::buffer_count(model)) << "\n";
  return os.str();
}

}  // namespace tessera::nn
