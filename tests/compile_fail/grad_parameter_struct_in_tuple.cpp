// expect: a parameter struct inside a std::tuple argument gets no gradients
// Parameter structs are matched by storage only as arguments of their own; inside a std::tuple
// argument one would silently get empty gradients, so it is rejected at compile time.
#include <tuple>

#include <tessera/tessera.hpp>

struct Params {
  tessera::Tensor<double, 1> w;
  auto parameters() { return std::tie(w); }
};

int main() {
  tessera::Tensor<double, 1> x = {1.0, -2.0, 3.0};
  Params p{x.clone()};
  auto [g] = tessera::grad([](const auto& args) { return tessera::sum(std::get<0>(args).w * std::get<1>(args)); },
                           std::make_tuple(p, x));
  (void)g;
  return 0;
}
