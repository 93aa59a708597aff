// A tour of tessera's tensors and lazy expressions (the README's example).
#include <tessera/tessera.hpp>

#include <iostream>

int main() {
  using namespace tessera;
  Tensor<float, 2> a = {{1, 2, 3}, {4, 5, 6}};            // nested braces, row-major
  Tensor<float, 1> bias = {0.5f, -0.5f, 1.0f};
  Generator gen(42);                                         // seeded, thread-count independent
  auto w = normal<float>(gen, {3, 4}, 0.0f, 0.1f);

  // Nothing runs until assignment; the elementwise part is one fused pass.
  Tensor<float, 2> h = relu(matmul(a + bias, w) * 2.0f - 0.1f);
  Tensor<float, 1> row_max = max(h, 1);                      // reduce over axis 1
  Tensor<float, 2> p = softmax(h, -1);                       // stable softmax along the last axis
  Tensor<std::int64_t, 1> best = argmax(p, 1);

  std::cout << "h =\n" << h << "\nrow max = " << row_max << "\nsoftmax =\n" << p
            << "\nargmax = " << best << "\n";
  std::cout << "transpose view: " << a.transpose() << "\nslice: " << a.slice(1, 0, 3, 2) << "\n";
  try {
    Tensor<float, 2> bad = matmul(a, a);                    // [2, 3] x [2, 3]
  } catch (const shape_error& e) {
    std::cout << "error: " << e.what() << "\n";
  }
  return 0;
}
