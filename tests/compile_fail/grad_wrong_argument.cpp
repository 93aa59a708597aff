// expect: arguments must be tensors, std::tuples of them, or parameter structs
// A std::vector is not something grad can differentiate with respect to: one static_assert at the
// call, not the errors of instantiating the sweep over it.
#include <tessera/tessera.hpp>

#include <vector>

int main() {
  const std::vector<double> x = {1.0, 2.0, 3.0};
  auto [g] = tessera::grad([](const auto& v) { return v[0] * v[1]; }, x);
  (void)g;
  return 0;
}
