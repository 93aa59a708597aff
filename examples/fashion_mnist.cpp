// The main job: a small CNN (two conv + batch-norm + pooling stages, dropout, two dense layers)
// trained with Adam on Fashion-MNIST from Debian's dataset-fashion-mnist package, then evaluated
// on the 10,000 test images. Gradients come from tessera::value_and_grad; batches from a
// DataLoader that shuffles (seeded) and prepares the next batches on a background thread.
//
//   fashion_mnist [--data DIR] [--epochs N] [--batch B] [--lr X] [--threads T] [--seed S]
//                 [--limit N]     (train on the first N images only: a quick smoke run)
//
// Ends with one machine-readable line:
//   {"test_accuracy": 0.9012, "train_seconds": 151.2, "epochs": 2}
#include <tessera/tessera.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>

namespace {

using namespace tessera;

struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  int epochs = 2;
  index_t batch = 64;
  double lr = 2e-3;
  int threads = 0;  // 0: all cores
  std::uint64_t seed = 1;
  index_t limit = 0;  // 0: all training images
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
    else if (a == "--lr") o.lr = std::stod(value());
    else if (a == "--threads") o.threads = std::stoi(value());
    else if (a == "--seed") o.seed = std::stoull(value());
    else if (a == "--limit") o.limit = std::stol(value());
    else if (a == "--help" || a == "-h") {
      std::cout << "usage: fashion_mnist [--data DIR] [--epochs N] [--batch B] [--lr X] [--threads T] [--seed S] [--limit N]\n";
      std::exit(0);
    } else {
      throw std::invalid_argument("unknown flag " + a + " (see --help)");
    }
  }
  if (o.epochs < 1 || o.batch < 1 || !(o.lr > 0) || o.limit < 0) throw std::invalid_argument("epochs, batch and lr must be positive");
  return o;
}

/// Images as [N, 1, 28, 28] floats in [0, 1] and labels as int64.
data::TensorDataset<Tensor<float, 4>, Tensor<std::int64_t, 1>> load(const std::string& dir, const std::string& split,
                                                                   index_t limit) {
  const auto images = data::read_idx<float, 3>(dir + "/" + split + "-images-idx3-ubyte.gz");
  const auto labels = data::read_idx<std::int64_t, 1>(dir + "/" + split + "-labels-idx1-ubyte.gz");
  index_t n = images.shape()[0];
  if (limit > 0 && limit < n) n = limit;
  Tensor<float, 4> x = reshape(images.slice(0, 0, n) * (1.0f / 255.0f), Shape<4>{n, 1, images.shape()[1], images.shape()[2]});
  return data::TensorDataset(x, Tensor<std::int64_t, 1>(labels.slice(0, 0, n)));
}

auto make_model() {
  namespace nn = tessera::nn;
  return nn::sequential(nn::Conv2d<float>(1, 32, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d<float>(32), nn::ReLU{},
                        nn::MaxPool2d(2),
                        nn::Conv2d<float>(32, 64, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d<float>(64), nn::ReLU{},
                        nn::MaxPool2d(2), nn::Flatten{},
                        nn::Linear<float>(64 * 7 * 7, 128), nn::ReLU{}, nn::Dropout<float>(0.3),
                        nn::Linear<float>(128, 10));
}

/// Fraction of correctly classified samples (evaluation mode, batches of 1000).
template <class Model, class Dataset>
double accuracy(Model& model, const Dataset& ds, const data::Normalize& normalize) {
  model.eval();
  data::DataLoader loader(ds, {.batch_size = 1000, .shuffle = false, .drop_last = false, .seed = 0, .prefetch = 2}, normalize);
  index_t correct = 0;
  for (auto& [x, y] : loader) {
    const Tensor<std::int64_t, 1> predicted = argmax(model(x), 1);
    correct += Tensor<std::int64_t, 0>(sum(cast<std::int64_t>(predicted == y)))();
  }
  model.train();
  return double(correct) / double(ds.size());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    if (o.threads > 0) cpu::set_num_threads(o.threads);
    const auto train = load(o.data, "train", o.limit);
    const auto test = load(o.data, "t10k", 0);
    std::printf("Fashion-MNIST: %ld training and %ld test images, %d thread(s)\n", long(train.size()), long(test.size()),
                int(cpu::num_threads()));

    manual_seed(o.seed);
    auto model = make_model();
    std::cout << nn::summary(model, zeros<float>({o.batch, 1, 28, 28}));
    optim::Adam<float> opt({.lr = o.lr});
    // Mean and standard deviation of the training pixels.
    const data::Normalize normalize({0.2860}, {0.3530});
    data::DataLoader loader(train, {.batch_size = o.batch, .shuffle = true, .drop_last = false, .seed = o.seed, .prefetch = 2},
                            normalize);
    const bool terminal = isatty(fileno(stdout));
    const index_t steps = loader.size();
    const std::int64_t total_steps = std::int64_t(steps) * o.epochs;
    optim::CosineWithWarmup schedule(opt, std::min<std::int64_t>(100, total_steps / 10), total_steps);

    double train_seconds = 0, test_accuracy = 0;
    for (int epoch = 1; epoch <= o.epochs; ++epoch) {
      const auto start = std::chrono::steady_clock::now();
      double loss_sum = 0;
      index_t seen = 0, correct = 0, step = 0;
      for (auto& [x, y] : loader) {
        Tensor<float, 2> logits;
        auto [loss, grads] = value_and_grad(
            [&](const auto& m) {
              auto out = m(x);
              // Evaluated inside the sweep's cache epoch: the loss below reuses every buffer.
              logits = Tensor<float, 2>(out);
              return nn::cross_entropy(out, y);
            },
            model);
        opt.step(model, std::get<0>(grads));
        schedule.step();
        ++step;
        seen += y.size();
        loss_sum += double(loss()) * double(y.size());
        correct += Tensor<std::int64_t, 0>(sum(cast<std::int64_t>(argmax(logits, 1) == y)))();
        if (terminal && (step % 10 == 0 || step == steps)) {
          const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          std::printf("\repoch %d/%d  %4ld/%ld  %5.1fs  ETA %5.1fs  %6.0f samples/s  loss %.4f  acc %.4f", epoch, o.epochs,
                      long(step), long(steps), elapsed, elapsed / double(step) * double(steps - step), double(seen) / elapsed,
                      loss_sum / double(seen), double(correct) / double(seen));
          std::fflush(stdout);
        }
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      train_seconds += seconds;
      test_accuracy = accuracy(model, test, normalize);  // the last epoch's is the result
      std::printf("%sepoch %d/%d  %.1fs  %.0f samples/s  train loss %.4f  train acc %.4f  test acc %.4f\n", terminal ? "\r" : "",
                  epoch, o.epochs, seconds, double(seen) / seconds, loss_sum / double(seen), double(correct) / double(seen),
                  test_accuracy);
      std::fflush(stdout);
    }
    std::printf("{\"test_accuracy\": %.4f, \"train_seconds\": %.1f, \"epochs\": %d}\n", test_accuracy, train_seconds, o.epochs);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fashion_mnist: %s\n", e.what());
    return 1;
  }
}
