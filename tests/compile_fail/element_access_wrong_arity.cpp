// expect: no match
// Element access takes exactly Rank indices (overload resolution fails, so no static_assert text).
#include <tessera/tessera.hpp>

int main() {
  tessera::Tensor<float, 2> m(2, 3);
  float x = m(1);
  return static_cast<int>(x);
}
