// Batch transforms for images [N, C, H, W] (the first tensor of a batch), applied by the
// DataLoader's background thread with a generator of their own per batch:
//
//   data::compose(data::RandomCrop(28, 2), data::RandomHorizontalFlip(), data::Normalize({0.286}, {0.353}))
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/random.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::data {

namespace detail {
template <class Batch>
auto& images_of(Batch& batch) {
  auto& x = std::get<0>(batch);
  static_assert(rank_v<std::decay_t<decltype(x)>> == 4, "tessera::data: image transforms need [N, C, H, W] inputs");
  return x;
}
/// Uniform integer in [0, n) from one 32-bit word.
inline index_t below(std::uint32_t word, index_t n) { return static_cast<index_t>((std::uint64_t{word} * std::uint64_t(n)) >> 32); }
}  // namespace detail

/// (x - mean[c]) / std[c] per channel (one value each: the same for every channel).
struct Normalize {
  std::vector<double> mean, stddev;
  TESSERA_OUT_OF_LINE Normalize(std::vector<double> m, std::vector<double> s);
  template <class Batch>
  void operator()(Batch& batch, Generator&) const {
    auto& x = detail::images_of(batch);
    using T = value_type_t<std::decay_t<decltype(x)>>;
    const auto s = x.shape();
    if (mean.size() != 1 && index_t(mean.size()) != s[1]) {
      throw shape_error("Normalize: " + std::to_string(mean.size()) + " means for " + std::to_string(s[1]) + " channels");
    }
    const index_t plane = s[2] * s[3];
    T* p = x.data();
    for (index_t n = 0; n < s[0]; ++n) {
      for (index_t c = 0; c < s[1]; ++c) {
        const std::size_t k = mean.size() == 1 ? 0 : std::size_t(c);
        const T m = T(mean[k]), inv = T(1.0 / stddev[k]);
        T* q = p + (n * s[1] + c) * plane;
        for (index_t i = 0; i < plane; ++i) q[i] = (q[i] - m) * inv;
      }
    }
  }
};

/// Pads each image by `padding` zeros on every side and crops a random window of the original
/// size (torchvision's RandomCrop(size, padding) with size = the input's).
struct RandomCrop {
  index_t padding;
  explicit RandomCrop(index_t pad) : padding(pad) {
    if (pad < 0) throw value_error("RandomCrop: padding must not be negative");
  }
  template <class Batch>
  void operator()(Batch& batch, Generator& gen) const {
    auto& x = detail::images_of(batch);
    using T = value_type_t<std::decay_t<decltype(x)>>;
    const auto s = x.shape();
    const index_t H = s[2], W = s[3], plane = H * W;
    std::vector<T> copy(static_cast<std::size_t>(s[1] * plane));
    const std::uint64_t first = gen.advance(static_cast<std::uint64_t>(s[0]));
    for (index_t n = 0; n < s[0]; ++n) {
      const auto w = gen.at(first + static_cast<std::uint64_t>(n));
      // Offset of the window in the padded image, minus the padding: in [-padding, padding].
      const index_t dy = detail::below(w[0], 2 * padding + 1) - padding;
      const index_t dx = detail::below(w[1], 2 * padding + 1) - padding;
      T* img = x.data() + n * s[1] * plane;
      std::copy(img, img + s[1] * plane, copy.begin());
      for (index_t c = 0; c < s[1]; ++c) {
        for (index_t i = 0; i < H; ++i) {
          for (index_t j = 0; j < W; ++j) {
            const index_t si = i + dy, sj = j + dx;
            img[c * plane + i * W + j] = (si >= 0 && si < H && sj >= 0 && sj < W) ? copy[std::size_t(c * plane + si * W + sj)] : T(0);
          }
        }
      }
    }
  }
};

/// Mirrors each image left-right with probability p.
struct RandomHorizontalFlip {
  double p = 0.5;
  RandomHorizontalFlip() = default;
  explicit RandomHorizontalFlip(double prob) : p(prob) {
    if (!(p >= 0 && p <= 1)) throw value_error("RandomHorizontalFlip: probability must be in [0, 1]");
  }
  template <class Batch>
  void operator()(Batch& batch, Generator& gen) const {
    auto& x = detail::images_of(batch);
    const auto s = x.shape();
    const auto threshold = static_cast<std::uint64_t>(p * 4294967296.0);
    const std::uint64_t first = gen.advance(static_cast<std::uint64_t>(s[0]));
    for (index_t n = 0; n < s[0]; ++n) {
      if (std::uint64_t{gen.at(first + static_cast<std::uint64_t>(n))[0]} >= threshold) continue;
      auto* img = x.data() + n * s[1] * s[2] * s[3];
      for (index_t r = 0; r < s[1] * s[2]; ++r) std::reverse(img + r * s[3], img + (r + 1) * s[3]);
    }
  }
};

/// Applies transforms in order.
template <class... T>
struct Compose {
  std::tuple<T...> transforms;
  template <class Batch>
  void operator()(Batch& batch, Generator& gen) const {
    std::apply([&](const auto&... t) { (t(batch, gen), ...); }, transforms);
  }
};
template <class... T>
Compose<std::decay_t<T>...> compose(T&&... t) {
  return {std::tuple<std::decay_t<T>...>(std::forward<T>(t)...)};
}

#if TESSERA_OUT_OF_LINE_DEFINITIONS

TESSERA_OUT_OF_LINE Normalize::Normalize(std::vector<double> m, std::vector<double> s)
    : mean(std::move(m)), stddev(std::move(s)) {
  if (mean.empty() || mean.size() != stddev.size())
    throw value_error("Normalize: give as many means as standard deviations");
  for (double v : stddev) {
    if (!(v > 0)) throw value_error("Normalize: standard deviations must be positive");
  }
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

}  // namespace tessera::data
