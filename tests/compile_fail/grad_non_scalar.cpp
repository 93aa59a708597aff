// expect: f must return a scalar \(rank-0\) expression
// grad needs a scalar-valued function; a rank-1 result is rejected (vjp handles non-scalar outputs).
#include <tessera/tessera.hpp>

int main() {
  tessera::Tensor<double, 1> x = {1.0, -2.0, 3.0};
  auto [g] = tessera::grad([](const auto& v) { return tessera::exp(v) * 2.0; }, x);
  (void)g;
  return 0;
}
