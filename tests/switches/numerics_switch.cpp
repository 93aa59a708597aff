// The compile-time switch of check_numerics (core/numerics.hpp), built twice by tests/CMakeLists.txt:
// TESSERA_CHECK_NUMERICS=1 checks every materialization without a guard; =0 removes the checks,
// and a CheckNumerics guard then refuses to pretend.
#include <tessera/tessera.hpp>

#include <cmath>
#include <cstdio>

int main() {
  using namespace tessera;
  const Tensor<float, 1> x = {1.0f, -1.0f};
#if TESSERA_CHECK_NUMERICS == 1
  if (!check_numerics_enabled()) return std::puts("enabled without a guard: expected"), 1;
  try {
    (void)eval(log(x));
  } catch (const numeric_error& e) {
    std::printf("caught: %s\n", e.what());
    return 0;
  }
  std::puts("no numeric_error for log(-1)");
  return 1;
#elif TESSERA_CHECK_NUMERICS == 0
  if (check_numerics_enabled()) return std::puts("compiled out, yet enabled"), 1;
  try {
    CheckNumerics guard;
    std::puts("a guard was accepted although the checks are compiled out");
    return 1;
  } catch (const value_error& e) {
    std::printf("caught: %s\n", e.what());
  }
  const Tensor<float, 1> y = log(x);  // unchecked
  return std::isnan(y(1)) ? 0 : 1;
#else
#error "build with TESSERA_CHECK_NUMERICS=0 or 1"
#endif
}
