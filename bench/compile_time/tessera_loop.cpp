// The main job's model trained by a plain loop with tessera (bench/compile_time.sh compiles it
// beside libtorch_loop.cpp, the same program written with LibTorch). Synthetic data: the point is
// what the compiler has to instantiate, not the accuracy.
#include <tessera/tessera.hpp>

#include <cstdio>

int main() {
  namespace nn = tessera::nn;
  tessera::manual_seed(0);
  auto model = nn::sequential(nn::Conv2d<float>(1, 16, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d<float>(16),
                              nn::ReLU{}, nn::MaxPool2d(2), nn::Conv2d<float>(16, 32, 3, {.padding = 1, .bias = false}),
                              nn::BatchNorm2d<float>(32), nn::ReLU{}, nn::MaxPool2d(2), nn::Flatten{},
                              nn::Linear<float>(32 * 7 * 7, 128), nn::ReLU{}, nn::Dropout<float>(0.3),
                              nn::Linear<float>(128, 10));
  tessera::optim::Adam<float> opt({.lr = 1e-3});
  tessera::Generator gen(1);
  const auto images = tessera::uniform<float>(gen, tessera::Shape<4>{64, 1, 28, 28});
  tessera::Tensor<std::int64_t, 1> labels(64);
  for (tessera::index_t i = 0; i < 64; ++i) labels(i) = i % 10;
  model.train();
  for (int step = 0; step < 20; ++step) {
    auto [loss, grads] = tessera::value_and_grad([&](const auto& m) { return nn::cross_entropy(m(images), labels); }, model);
    opt.step(model, std::get<0>(grads));
    if (step % 5 == 0) std::printf("step %d loss %.4f\n", step, static_cast<double>(loss()));
  }
  model.eval();
  const tessera::Tensor<std::int64_t, 1> predicted = tessera::argmax(model(images), 1);
  std::printf("first prediction %lld\n", static_cast<long long>(predicted(0)));
}
