// expect: input and target have different ranks
// A [n, 1] model output against the [n] labels read_csv returns: one static_assert, not pages of
// overload failures.
#include <tessera/tessera.hpp>

int main() {
  tessera::Tensor<float, 2> prediction(8, 1);
  tessera::Tensor<float, 1> labels(8);
  auto loss = tessera::nn::mse(prediction, labels);
  (void)loss;
  return 0;
}
