// Random expression trees chosen at compile time from a seed, for property tests of autodiff:
// every tree is an ordinary tessera expression type, so grad differentiates it statically, and
// check_gradients compares the result with finite differences.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include <tessera/tessera.hpp>

namespace random_trees {

constexpr std::uint64_t mix(std::uint64_t x) {  // splitmix64 finalizer
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// The [3, 4] value a subtree broadcasts to (subtrees are [3, 4], [3, 1], [1, 4], [4] or [1, 1]).
template <class A>
auto to_full(const A& a) {
  return tessera::broadcast_to(a, tessera::Shape<2>{3, 4});
}

/// A tree of depth <= Depth over leaves x [3, 4], y [3, 1], z [4]: unary, binary (with
/// broadcasting), keepdims-reduction, matmul, softmax, where and shape nodes, all with bounded,
/// smooth derivatives away from kinks.
template <std::uint64_t Seed, int Depth>
struct Tree {
  static constexpr std::uint64_t h = mix(Seed);
  static constexpr std::uint64_t left = mix(Seed * 3 + 1), right = mix(Seed * 7 + 2);

  template <class X, class Y, class Z>
  static auto build(const X& x, const Y& y, const Z& z) {
    if constexpr (Depth == 0 || h % 4 == 0) {
      if constexpr (h % 3 == 0) {
        return x * 1.0;
      } else if constexpr (h % 3 == 1) {
        return y * 1.0;
      } else {
        return z * 1.0;
      }
    } else {
      const auto a = Tree<left, Depth - 1>::build(x, y, z);
      constexpr int op = static_cast<int>((h >> 8) % 20);
      if constexpr (op >= 16) {
        if constexpr (op == 16) {
          // A product with a fixed [4, 4] matrix (the identity plus 0.1 everywhere).
          const auto m = tessera::full<double>({4, 4}, 0.1) + tessera::eye<double>(4);
          return tessera::matmul(to_full(a), m) * 0.5;
        } else if constexpr (op == 17) {
          return tessera::softmax(to_full(a), -1) * 2.0 + tessera::log_softmax(to_full(a), 0) * 0.1;
        } else if constexpr (op == 18) {
          // The condition is a constant of the graph; both branches carry gradients.
          const auto b = Tree<right, Depth - 1>::build(x, y, z);
          return tessera::where(x > 0.0, tessera::tanh(a), b * 0.5);
        } else {
          // Transposed to [4, 3], reshaped to [3, 4]: a permutation of the elements.
          return tessera::reshape(tessera::transpose(to_full(a)), tessera::Shape<2>{3, 4}) - a * 0.2;
        }
      } else if constexpr (op < 8) {
        if constexpr (op == 0) return tessera::tanh(a);
        else if constexpr (op == 1) return tessera::sigmoid(a);
        else if constexpr (op == 2) return tessera::sin(a);
        else if constexpr (op == 3) return tessera::exp(tessera::tanh(a));
        else if constexpr (op == 4) return tessera::log(1.0 + tessera::square(a));
        else if constexpr (op == 5) return tessera::sqrt(1.0 + tessera::square(a));
        else if constexpr (op == 6) return tessera::sum(a, -1, tessera::keepdims) * 0.5;
        else return tessera::mean(a, 0, tessera::keepdims) - a * 0.3;
      } else {
        const auto b = Tree<right, Depth - 1>::build(x, y, z);
        if constexpr (op == 8 || op == 9) return a + b;
        else if constexpr (op == 10) return a - b * 0.5;
        else if constexpr (op == 11 || op == 12) return a * b;
        else if constexpr (op == 13) return a / (1.0 + tessera::square(b));
        else if constexpr (op == 14) return tessera::softplus(a) * tessera::cos(b);
        else return tessera::logsumexp(a + b, -1, tessera::keepdims);
      }
    }
  }
};

/// Checks the tree of seed `Seed`; returns the check result.
template <std::uint64_t Seed>
tessera::GradCheckResult check_tree(const tessera::Tensor<double, 2>& x, const tessera::Tensor<double, 2>& y,
                                    const tessera::Tensor<double, 1>& z) {
  constexpr int depth = 1 + static_cast<int>(mix(Seed ^ 0x5555) % 5);  // 1..5
  auto f = [](const auto& a, const auto& b, const auto& c) { return tessera::sum(Tree<Seed, depth>::build(a, b, c)); };
  return tessera::check_gradients(f, x, y, z, tessera::GradCheckOptions{1e-6, 1e-5});
}

/// Checks trees First, First+1, ... on fixed seeded inputs, one CHECK per tree.
template <std::uint64_t First, std::size_t... K>
void check_range(std::index_sequence<K...>) {
  tessera::Generator gen(1234 + First);
  const auto x = tessera::uniform<double>(gen, {3, 4}, -1.0, 1.0);
  const auto y = tessera::uniform<double>(gen, {3, 1}, -1.0, 1.0);
  const auto z = tessera::uniform<double>(gen, {4}, -1.0, 1.0);
  auto one = [&](auto seed_const) {
    constexpr std::uint64_t seed = decltype(seed_const)::value;
    const auto r = check_tree<seed>(x, y, z);
    INFO("tree seed " << seed << ": " << r.message());
    CHECK(r.passed);
  };
  (one(std::integral_constant<std::uint64_t, First + K>{}), ...);
}

}  // namespace random_trees
