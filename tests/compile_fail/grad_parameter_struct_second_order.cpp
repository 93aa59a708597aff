// expect: parameter structs are supported for first-order gradients only
// A parameter struct's members are matched by storage, which only works for a first-order sweep:
// a grad over a struct and a variable of an outer grad is rejected at compile time.
#include <tuple>

#include <tessera/tessera.hpp>

struct Params {
  tessera::Tensor<double, 1> w;
  auto parameters() { return std::tie(w); }
};

int main() {
  tessera::Tensor<double, 1> x = {1.0, -2.0, 3.0};
  Params p{x};
  auto [h] = tessera::grad(
      [&](const auto& v) {
        auto [gq, gv] = tessera::grad([](const auto& q, const auto& u) { return tessera::sum(q.w * u * u); }, p, v);
        (void)gq;
        return tessera::sum(gv);
      },
      x);
  (void)h;
  return 0;
}
