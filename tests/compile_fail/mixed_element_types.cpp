// expect: operands have different element types
// float and double tensors do not combine implicitly; cast<T>() one of them.
#include <tessera/tessera.hpp>

int main() {
  tessera::Tensor<float, 2> a(2, 2);
  tessera::Tensor<double, 2> b(2, 2);
  auto c = a + b;
  (void)c;
  return 0;
}
