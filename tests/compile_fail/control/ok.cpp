// The harness control: compiled exactly like the compile_fail cases, this one must compile, so a
// broken include path or flag cannot make every compile-fail case "pass".
#include <tessera/tessera.hpp>

int main() {
  tessera::Tensor<float, 2> a(2, 2);
  tessera::Tensor<float, 2> b(2, 2);
  tessera::Tensor<float, 2> c = a + b;
  return static_cast<int>(c(1, 1));
}
