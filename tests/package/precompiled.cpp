// A consumer that links tessera::precompiled: the CPU kernels and the out-of-line functions come
// compiled from the installed library (the link fails if the package does not ship them).
#include <cstdio>
#include <string>

#include <tessera/tessera.hpp>

#ifndef TESSERA_PRECOMPILED
#error "tessera::precompiled did not pass TESSERA_PRECOMPILED on"
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
    std::fprintf(stderr, "tessera consumer (precompiled): wrong result: y %g, loss %g, dx %g\n",
                 static_cast<double>(y(0, 2, 1, 1)), static_cast<double>(loss.item()), static_cast<double>(dx_corner));
    return 1;
  }
  // Out-of-line functions (SafetensorsFile::write, ::parse): the output saved and read back.
  const std::string path = "tessera_consumer_precompiled.safetensors";
  tessera::io::SafetensorsFile file;
  file.add("y", y);
  file.write(path);
  const float read_back = tessera::io::SafetensorsFile::read(path).tensor<float, 4>("y")(0, 2, 1, 1);
  std::remove(path.c_str());
  if (read_back != 18.0f) {
    std::fprintf(stderr, "tessera consumer (precompiled): safetensors read back %g\n", static_cast<double>(read_back));
    return 1;
  }
  std::printf("tessera consumer (precompiled): ok\n");
  return 0;
}
