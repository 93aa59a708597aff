// A consumer that links tessera::cpu_kernels: the CPU kernels come precompiled from the installed
// library (the link fails if the package does not ship them).
#include <cstdio>

#include <tessera/tessera.hpp>

#ifndef TESSERA_PRECOMPILED_KERNELS
#error "tessera::cpu_kernels did not pass TESSERA_PRECOMPILED_KERNELS on"
#endif

int main() {
  // Ones of [1, 2, 4, 4] convolved with ones of [3, 2, 3, 3]: every output is 2 * 3 * 3 = 18.
  auto x = tessera::ones<float>(1, 2, 4, 4);
  auto w = tessera::ones<float>(3, 2, 3, 3);
  tessera::Tensor<float, 4> y = tessera::conv2d(x, w);
  // Its gradient with respect to x: at a corner one tap of each of the 3 filters.
  auto [loss, grads] = tessera::value_and_grad(
      [](const auto& input, const auto& weights) { return tessera::sum(tessera::conv2d(input, weights)); }, x, w);
  const float dx_corner = std::get<0>(grads)(0, 1, 0, 0);
  if (y(0, 2, 1, 1) != 18.0f || loss.item() != 216.0f || dx_corner != 3.0f) {
    std::fprintf(stderr, "tessera consumer (kernels): wrong result: y %g, loss %g, dx %g\n",
                 static_cast<double>(y(0, 2, 1, 1)), static_cast<double>(loss.item()), static_cast<double>(dx_corner));
    return 1;
  }
  std::printf("tessera consumer (kernels): ok\n");
  return 0;
}
