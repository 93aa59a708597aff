// expect: tessera::grad: the comparison greater \(>\) is not differentiable
// A comparison that depends on the variable has no derivative: grad reports the op at compile time
// instead of silently treating cast<double>(x > 0) as a constant.
#include <tessera/tessera.hpp>

int main() {
  tessera::Tensor<double, 1> x = {1.0, -2.0, 3.0};
  auto [g] = tessera::grad([](const auto& v) { return tessera::sum(tessera::cast<double>(v > 0.0) * v); }, x);
  (void)g;
  return 0;
}
