// expect: cannot assign an expression to a tensor of a different rank
// A rank-3 expression assigned to a rank-2 tensor is rejected at compile time.
#include <tessera/tessera.hpp>

int main() {
  tessera::Tensor<float, 3> a(2, 2, 2);
  tessera::Tensor<float, 2> b(2, 2);
  b = a + a;
  return 0;
}
