// The main job's model trained by a plain loop with LibTorch: the peer of tessera_loop.cpp in
// bench/compile_time.sh.
#include <torch/torch.h>

#include <cstdio>

int main() {
  namespace nn = torch::nn;
  torch::manual_seed(0);
  nn::Sequential model(nn::Conv2d(nn::Conv2dOptions(1, 16, 3).padding(1).bias(false)), nn::BatchNorm2d(16), nn::ReLU(),
                       nn::MaxPool2d(2), nn::Conv2d(nn::Conv2dOptions(16, 32, 3).padding(1).bias(false)),
                       nn::BatchNorm2d(32), nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(), nn::Linear(32 * 7 * 7, 128),
                       nn::ReLU(), nn::Dropout(0.3), nn::Linear(128, 10));
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-3));
  const auto images = torch::rand({64, 1, 28, 28});
  const auto labels = torch::arange(64) % 10;
  model->train();
  for (int step = 0; step < 20; ++step) {
    opt.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model->forward(images), labels);
    loss.backward();
    opt.step();
    if (step % 5 == 0) std::printf("step %d loss %.4f\n", step, loss.item<double>());
  }
  model->eval();
  torch::NoGradGuard no_grad;
  const auto predicted = model->forward(images).argmax(1);
  std::printf("first prediction %lld\n", static_cast<long long>(predicted[0].item<std::int64_t>()));
}
