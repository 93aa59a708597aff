// Sequential: layers applied in order, assembled at compile time from a sequential(...) call.
// The forward is one expression: elementwise layers fuse with their neighbours' epilogues.
#pragma once

#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "tessera/nn/module.hpp"

namespace tessera::nn {

/// Layers L... applied in order; their members are named "0", "1", ... as in torch.nn.Sequential.
template <class... L>
struct Sequential : Module<Sequential<L...>> {
  static constexpr const char* type_name = "Sequential";
  static_assert(sizeof...(L) > 0, "tessera::nn::Sequential needs at least one layer");
  std::tuple<L...> layers;

  explicit Sequential(L... l) : layers(std::move(l)...) {}

  auto members() { return members_impl(std::index_sequence_for<L...>{}); }

  /// Layer K.
  template <std::size_t K>
  auto& layer() {
    return std::get<K>(layers);
  }
  template <std::size_t K>
  const auto& layer() const {
    return std::get<K>(layers);
  }
  static constexpr std::size_t size() { return sizeof...(L); }

  template <class X>
  auto operator()(const X& x) const {
    return forward_from<0>(x);
  }
  /// The output of the first K layers.
  template <std::size_t K, class X>
  auto forward_to(const X& x) const {
    return forward_range<0, K>(x);
  }

 private:
  template <std::size_t... K>
  auto members_impl(std::index_sequence<K...>) {
    return std::make_tuple(child(std::to_string(K), std::get<K>(layers))...);
  }
  /// Layer K applied to x; a shape error it raises names the layer, as Keras does.
  template <std::size_t K, class X>
  auto apply(const X& x) const {
    try {
      return std::get<K>(layers)(x);
    } catch (const shape_error& e) {
      using Layer = std::tuple_element_t<K, std::tuple<L...>>;
      throw shape_error("Sequential layer " + std::to_string(K) + " (" + detail::type_name_of<Layer>() + "): " + e.what());
    }
  }
  template <std::size_t K, class X>
  auto forward_from(const X& x) const {
    if constexpr (K + 1 == sizeof...(L)) {
      return apply<K>(x);
    } else {
      return forward_from<K + 1>(apply<K>(x));
    }
  }
  template <std::size_t K, std::size_t End, class X>
  auto forward_range(const X& x) const {
    if constexpr (K == End) {
      return x;
    } else {
      return forward_range<K + 1, End>(apply<K>(x));
    }
  }
};

/// Builds a Sequential from layers: `sequential(Linear(784, 128), ReLU{}, Linear(128, 10))`.
template <class... L>
Sequential<std::decay_t<L>...> sequential(L&&... layers) {
  return Sequential<std::decay_t<L>...>(std::forward<L>(layers)...);
}

}  // namespace tessera::nn
