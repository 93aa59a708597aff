// expect: tessera::exp needs a floating-point expression
// Transcendental functions need a floating-point tensor; integer tensors must be cast first.
#include <cstdint>

#include <tessera/tessera.hpp>

int main() {
  tessera::Tensor<std::int32_t, 1> labels(4);
  auto e = tessera::exp(labels);
  (void)e;
  return 0;
}
