// expect: argmax/argmin is not differentiable
// argmax of an expression that depends on the variable has no derivative: a compile error.
#include <tessera/tessera.hpp>

int main() {
  tessera::Tensor<double, 2> x = {{1.0, -2.0, 3.0}, {0.5, 4.0, -1.0}};
  auto [g] = tessera::grad(
      [](const auto& v) { return tessera::sum(tessera::cast<double>(tessera::argmax(v, 1))) + tessera::sum(v); }, x);
  (void)g;
  return 0;
}
