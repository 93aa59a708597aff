// Residual connections: y = body(x) + shortcut(x), with the identity as the default shortcut
// (ResNet's blocks; a projection such as a 1x1 Conv2d when the shapes change).
#pragma once

#include <tuple>
#include <utility>

#include "tessera/core/error.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::nn {

/// x unchanged (torch.nn.Identity).
struct Identity : Stateless<Identity> {
  static constexpr const char* type_name = "Identity";
  template <class X>
  auto operator()(const X& x) const {
    return x;
  }
};

/// body(x) + shortcut(x). Members are named "body" and "shortcut".
template <class Body, class Shortcut = Identity>
struct Residual : Module<Residual<Body, Shortcut>> {
  static constexpr const char* type_name = "Residual";
  Body body;
  Shortcut shortcut;

  explicit Residual(Body b, Shortcut s = {}) : body(std::move(b)), shortcut(std::move(s)) {}
  auto members() { return std::make_tuple(child("body", body), child("shortcut", shortcut)); }

  template <class X>
  auto operator()(const X& x) const {
    auto main = body(x);
    auto skip = shortcut(x);
    static_assert(rank_v<decltype(main)> == rank_v<decltype(skip)>,
                  "tessera::nn::Residual: the body's and the shortcut's outputs differ in rank");
    if (main.shape() != skip.shape()) {
      throw shape_error("Residual: the body's output " + shape_to_string(main.shape()) + " and the shortcut's " +
                        shape_to_string(skip.shape()) + " differ; give a projection shortcut");
    }
    return main + skip;
  }
};

/// `residual(body)`: body(x) + x; `residual(body, shortcut)`: body(x) + shortcut(x).
template <class Body>
Residual<std::decay_t<Body>> residual(Body&& body) {
  return Residual<std::decay_t<Body>>(std::forward<Body>(body));
}
template <class Body, class Shortcut>
Residual<std::decay_t<Body>, std::decay_t<Shortcut>> residual(Body&& body, Shortcut&& shortcut) {
  return Residual<std::decay_t<Body>, std::decay_t<Shortcut>>(std::forward<Body>(body), std::forward<Shortcut>(shortcut));
}

}  // namespace tessera::nn
