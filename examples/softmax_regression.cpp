// Multinomial logistic regression on Fashion-MNIST, trained with minibatch SGD. The loss is an
// ordinary tessera expression; tessera::value_and_grad derives its gradient at compile time.
// Data: Debian's dataset-fashion-mnist package.
//
//   softmax_regression [--data DIR] [--epochs N] [--batch B] [--lr X] [--threads T]
#include <tessera/tessera.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using tessera::index_t;

struct Split {
  tessera::Tensor<float, 2> images;        // [n, 784], scaled to [0, 1]
  tessera::Tensor<std::int64_t, 1> labels;  // [n]
};

Split load_split(const std::string& dir, const std::string& prefix) {
  // tessera::data::read_idx validates the files and names the file in any error (io_error).
  const auto pixels = tessera::data::read_idx<float, 3>(dir + "/" + prefix + "-images-idx3-ubyte.gz");
  const auto labels = tessera::data::read_idx<std::int64_t, 1>(dir + "/" + prefix + "-labels-idx1-ubyte.gz");
  const index_t n = pixels.shape(0);
  if (labels.shape(0) != n) throw std::runtime_error(dir + ": image and label counts differ");
  return Split{tessera::reshape(pixels * (1.0f / 255.0f), tessera::Shape<2>{n, pixels.shape(1) * pixels.shape(2)}), labels};
}

struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  int epochs = 10;
  index_t batch = 128;
  float lr = 0.1f;
  int threads = 0;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    if (a == "--data") o.data = value();
    else if (a == "--epochs") o.epochs = std::stoi(value());
    else if (a == "--batch") o.batch = std::stol(value());
    else if (a == "--lr") o.lr = std::stof(value());
    else if (a == "--threads") o.threads = std::stoi(value());
    else throw std::invalid_argument("unknown option " + a + " (see the comment at the top of softmax_regression.cpp)");
  }
  if (o.epochs < 1 || o.batch < 1 || !(o.lr > 0)) throw std::invalid_argument("epochs, batch and lr must be positive");
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  using namespace tessera;
  const Options opt = parse(argc, argv);
  cpu::set_num_threads(opt.threads);
  const Split train = load_split(opt.data, "train");
  const Split test = load_split(opt.data, "t10k");
  const index_t n = train.images.shape(0), features = train.images.shape(1), classes = 10;
  std::cout << "Fashion-MNIST: " << n << " training and " << test.images.shape(0) << " test images, "
            << cpu::num_threads() << " threads\n";

  Tensor<float, 2> W(features, classes);
  Tensor<float, 1> b(classes);
  const Tensor<std::int64_t, 1> class_ids = arange<std::int64_t>(classes);
  std::vector<index_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 shuffle_rng(7);

  Tensor<float, 2> xb(opt.batch, features);
  Tensor<std::int64_t, 1> yb(opt.batch);
  const auto start = std::chrono::steady_clock::now();
  for (int epoch = 1; epoch <= opt.epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), shuffle_rng);
    double loss_sum = 0;
    index_t seen = 0;
    for (index_t first = 0; first + opt.batch <= n; first += opt.batch) {
      for (index_t r = 0; r < opt.batch; ++r) {
        const index_t src = order[static_cast<std::size_t>(first + r)];
        std::copy_n(train.images.data() + src * features, features, xb.data() + r * features);
        yb(r) = train.labels(src);
      }
      const Tensor<float, 2> onehot = cast<float>(yb.reshape({opt.batch, 1}) == class_ids);
      auto cross_entropy = [&](const auto& weights, const auto& bias) {
        return -sum(log_softmax(matmul(xb, weights) + bias, 1) * onehot) / static_cast<float>(opt.batch);
      };
      auto [loss, grads] = value_and_grad(cross_entropy, W, b);
      auto& [dW, db] = grads;
      W -= dW * opt.lr;
      b -= db * opt.lr;
      loss_sum += loss() * static_cast<double>(opt.batch);
      seen += opt.batch;
    }
    std::printf("epoch %d/%d  train loss %.4f\n", epoch, opt.epochs, loss_sum / static_cast<double>(seen));
  }
  const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const Tensor<std::int64_t, 1> predicted = argmax(matmul(test.images, W) + b, 1);
  const Tensor<std::int64_t, 0> correct = sum(cast<std::int64_t>(predicted == test.labels));
  const double accuracy = static_cast<double>(correct()) / static_cast<double>(test.images.shape(0));
  std::printf("{\"test_accuracy\": %.4f, \"train_seconds\": %.1f, \"epochs\": %d}\n", accuracy, train_seconds,
              opt.epochs);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "softmax_regression: %s\n", e.what());
  return 1;
}
