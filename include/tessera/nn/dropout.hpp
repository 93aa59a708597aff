// Dropout: in training, zeroes each element with probability p and scales the rest by 1 / (1 - p)
// (inverted dropout, as torch.nn.Dropout); in evaluation, the identity.
#pragma once

#include <cstdint>
#include <string>

#include "tessera/core/error.hpp"
#include "tessera/core/factories.hpp"
#include "tessera/core/random.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::nn {

struct DropoutOptions {
  Generator* generator = nullptr;  ///< draws the masks; nullptr: default_generator()
};

namespace detail {
/// A [shape] tensor of 0 (probability p) and 1 / (1 - p): one 32-bit Philox word per element.
template <class T, std::size_t R, class B>
Tensor<T, R, B> dropout_mask(Generator& gen, const Shape<R>& shape, double p) {
  auto mask = Tensor<T, R, B>::uninitialized(shape);
  if (p >= 1) {
    mask.fill(T(0));
    return mask;
  }
  // Compare the raw word with p * 2^32: exact and branch-free.
  const auto threshold = static_cast<std::uint64_t>(p * 4294967296.0);
  random_fill(B{}, mask.data(), mask.size(), gen, tessera::detail::DropoutDraw<T>{threshold, T(1.0 / (1.0 - p))});
  return mask;
}
}  // namespace detail

/// Inverted dropout with drop probability p. The returned expression multiplies by a mask drawn
/// when the layer is applied (so value and gradient of one forward see the same mask).
template <class T = float, class B = cpu>
struct Dropout : Stateless<Dropout<T, B>> {
  static constexpr const char* type_name = "Dropout";
  double p;
  Generator* generator;

  explicit Dropout(double probability = 0.5, DropoutOptions o = {}) : p(probability), generator(o.generator) {
    if (!(p >= 0 && p <= 1)) throw value_error("Dropout: probability must be in [0, 1], got " + std::to_string(p));
  }

  template <class X>
  auto operator()(const X& x) const {
    static_assert(std::is_same_v<value_type_t<X>, T>, "tessera::nn::Dropout: input element type differs from the layer's");
    constexpr std::size_t R = rank_v<X>;
    if (!this->is_training() || p == 0) {
      // Same expression type as in training: a multiply by a broadcast 1, which fuses for free.
      Shape<R> unit;
      for (auto& e : unit) e = 1;
      return x * ones<T, B>(unit);
    }
    Generator& gen = generator ? *generator : default_generator();
    return x * detail::dropout_mask<T, R, B>(gen, x.shape(), p);
  }
};

}  // namespace tessera::nn
