// Seeded random numbers: a counter-based Philox4x32-10 generator, so a tensor's values depend only
// on the seed and the draw order, never on the thread count (and a GPU can produce the same stream).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#include "tessera/core/config.hpp"

namespace tessera {

/// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
/// Each draw of n values consumes a range of counters; the generator remembers where it stopped.
class Generator {
 public:
  using block = std::array<std::uint32_t, 4>;

  explicit Generator(std::uint64_t seed = 0) : key_{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)} {}

  /// The 4 random words of counter `index` (pure function of seed and index; also in CUDA kernels,
  /// which therefore draw the same values as the CPU).
  TESSERA_HD block at(std::uint64_t index) const {
    block c{static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32), 0u, 0u};
    std::uint32_t k0 = key_[0], k1 = key_[1];
    for (int round = 0; round < 10; ++round) {
      const std::uint64_t p0 = std::uint64_t{0xD2511F53u} * c[0];
      const std::uint64_t p1 = std::uint64_t{0xCD9E8D57u} * c[2];
      const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
      const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
      c = {hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0};
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    return c;
  }
  /// Reserves `count` counters and returns the first; later draws continue after them.
  std::uint64_t advance(std::uint64_t count) {
    const std::uint64_t first = offset_;
    offset_ += count;
    return first;
  }
  std::uint64_t offset() const noexcept { return offset_; }
  /// The seed this generator was made from.
  std::uint64_t seed() const noexcept { return (std::uint64_t{key_[1]} << 32) | key_[0]; }
  /// Restarts the stream (for reproducing a run or restoring a checkpoint).
  void set_offset(std::uint64_t offset) noexcept { offset_ = offset; }

 private:
  std::array<std::uint32_t, 2> key_;
  std::uint64_t offset_ = 0;
};

/// The generator layers draw their initial weights from when none is given (PyTorch's global
/// generator). Not synchronized: construct models from one thread, or pass generators explicitly.
inline Generator& default_generator() {
  static Generator gen(0);
  return gen;
}
/// Restarts the default generator from `seed` (torch.manual_seed).
inline void manual_seed(std::uint64_t seed) { default_generator() = Generator(seed); }

namespace detail {
/// Uniform in [0, 1) from 24 (float) or 53 (double) random bits.
template <class T>
TESSERA_HD T unit_uniform(std::uint32_t w0, std::uint32_t w1) {
  if constexpr (sizeof(T) <= 4) {
    (void)w1;
    return static_cast<T>(w0 >> 8) * T(1.0 / 16777216.0);
  } else {
    const std::uint64_t bits = (std::uint64_t{w0} << 21) ^ (std::uint64_t{w1} >> 11);
    return static_cast<T>(bits & ((std::uint64_t{1} << 53) - 1)) * T(1.0 / 9007199254740992.0);
  }
}

/// low + (high - low) * u for u in [0, 1), kept below high (rounding could otherwise reach it).
/// An explicit fma: compilers may contract `low + (high - low) * u` into one (nvcc does by
/// default, host compilers with FMA flags may), and one rounding or two must not depend on that,
/// so that the CPU and the GPU draw bit-identical values.
template <class T>
TESSERA_HD T scale_uniform(T low, T high, T u) {
  const T r = std::fma(high - low, u, low);
  return (r < high || !(low < high)) ? r : std::nextafter(high, low);
}

// The distributions of a draw. Counter block b of a draw gives elements [b * per_block, ...):
// `write(w, out, count)` turns its 4 words into the first `count` of them. Backends run it over
// all blocks (random_fill), each block independently, so every thread count and device draws the
// same values.

/// Uniform in [low, high): two elements per block, 32 (float) or 64 (double) bits each.
template <class T>
struct UniformDraw {
  static constexpr int per_block = 2;
  T low, high;
  TESSERA_HD void write(const Generator::block& w, T* out, int count) const {
    out[0] = scale_uniform(low, high, unit_uniform<T>(w[0], w[1]));
    if (count > 1) out[1] = scale_uniform(low, high, unit_uniform<T>(w[2], w[3]));
  }
};

/// Normal by Box-Muller in double: two elements per block. The GPU's log, sin and cos may differ
/// from the host's in the last bit of a double, so normal draws agree to rounding, not bit for bit.
template <class T>
struct NormalDraw {
  static constexpr int per_block = 2;
  T mean, stddev;
  TESSERA_HD void write(const Generator::block& w, T* out, int count) const {
    // u1 in (0, 1] so log(u1) is finite.
    const double u1 = 1.0 - unit_uniform<double>(w[0], w[1]);
    const double u2 = unit_uniform<double>(w[2], w[3]);
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = 6.283185307179586476925 * u2;
    out[0] = std::fma(stddev, static_cast<T>(r * std::cos(theta)), mean);
    if (count > 1) out[1] = std::fma(stddev, static_cast<T>(r * std::sin(theta)), mean);
  }
};

/// Inverted-dropout mask: 0 with probability threshold / 2^32, else `keep`. One word per element.
template <class T>
struct DropoutDraw {
  static constexpr int per_block = 4;
  std::uint64_t threshold;
  T keep;
  TESSERA_HD void write(const Generator::block& w, T* out, int count) const {
    for (int k = 0; k < count; ++k) out[k] = std::uint64_t{w[k]} < threshold ? T(0) : keep;
  }
};

}  // namespace detail

}  // namespace tessera
