// expect: cannot mix tensors of different backends
// Tensors of two backends cannot meet in one expression, even when one backend derives from the other.
#include <tessera/tessera.hpp>

struct other_backend : tessera::cpu {};

int main() {
  tessera::Tensor<float, 1> a(4);
  tessera::Tensor<float, 1, other_backend> b(4);
  auto c = a + b;
  (void)c;
  return 0;
}
