// Uses tessera exactly as an application would: find_package + tessera::tessera, nothing else.
#include <cstdio>

#include <tessera/tessera.hpp>

#if defined(TESSERA_CONSUMER_EXPECT_CBLAS) && !defined(TESSERA_HAS_CBLAS)
#error "tessera was built with BLAS, but tessera::tessera did not pass TESSERA_HAS_CBLAS on"
#endif

#if TESSERA_CONSUMER_STD >= 20
static_assert(__cplusplus >= 202002L, "the consumer was asked for C++20 but is not compiled as C++20");
#endif

int main() {
  tessera::Tensor<float, 2> a = {{1, 2, 3}, {4, 5, 6}};
  tessera::Tensor<float, 2> b = {{10, 20, 30}, {40, 50, 60}};
  tessera::Tensor<float, 2> c = a + b;
  if (c.shape(0) != 2 || c.shape(1) != 3 || c(1, 2) != 66.0f || c(0, 0) != 11.0f) {
    std::fprintf(stderr, "tessera consumer: wrong result, c(1, 2) = %g\n", static_cast<double>(c(1, 2)));
    return 1;
  }
  std::printf("tessera consumer: ok (C++%d)\n", TESSERA_CONSUMER_STD);
  return 0;
}
