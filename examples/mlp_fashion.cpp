// A multilayer perceptron (784-512-512-10, ReLU, dropout) on Fashion-MNIST with SGD + Nesterov
// momentum and weight decay, a step learning-rate schedule, and early stopping on the validation
// loss that puts back the best epoch's weights. The last 5,000 training images are held out for
// validation; the test set is only used once, at the end.
//
//   mlp_fashion [--data DIR] [--epochs N (10)] [--batch B (128)] [--lr X (0.05)] [--patience P (2)]
//               [--export DIR]
//
// --export DIR writes the trained model for tessera-serve as DIR/<next version>/ (architecture
// fashion_mlp; the model itself is fashion::mlp in fashion_models.hpp).
//
// Ends with {"test_accuracy": ..., "train_seconds": ..., "epochs": <epochs actually run>}.
#include <tessera/tessera.hpp>

#include "fashion_models.hpp"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>

using namespace tessera;

namespace {
struct Options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  int epochs = 10;
  index_t batch = 128;
  double lr = 0.05;
  int patience = 2;
  std::string export_dir;  // "": no export
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
    else if (a == "--patience") o.patience = std::stoi(value());
    else if (a == "--export") o.export_dir = value();
    else throw std::invalid_argument("unknown flag " + a +
                                     "\nusage: mlp_fashion [--data DIR] [--epochs N] [--batch B] [--lr X] [--patience P] [--export DIR]");
  }
  if (o.epochs < 1 || o.batch < 1 || !(o.lr > 0) || o.patience < 0) throw std::invalid_argument("bad flag value");
  return o;
}

/// Flat [N, 784] images scaled to [0, 1], and int64 labels.
auto load(const std::string& dir, const std::string& split) {
  const auto images = data::read_idx<float, 3>(dir + "/" + split + "-images-idx3-ubyte.gz");
  const auto labels = data::read_idx<std::int64_t, 1>(dir + "/" + split + "-labels-idx1-ubyte.gz");
  const index_t n = images.shape()[0];
  Tensor<float, 2> x = reshape(images * (1.0f / 255.0f), Shape<2>{n, 784});
  return data::TensorDataset(x, labels);
}
}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    const auto all_train = load(o.data, "train");
    const auto test_set = load(o.data, "t10k");
    const auto train_set = all_train.slice(0, all_train.size() - 5000);
    const auto val_set = all_train.slice(all_train.size() - 5000, all_train.size());

    manual_seed(7);
    const index_t hidden = 512;
    const double dropout = 0.2;
    auto model = fashion::mlp<cpu>(hidden, dropout);
    std::cout << nn::summary(model, zeros<float>({o.batch, 784}));
    optim::SGD<float> opt({.lr = o.lr, .momentum = 0.9, .dampening = 0, .nesterov = true, .weight_decay = 5e-4});
    optim::StepLR step(opt, 4, 0.3);
    train::LearningRateScheduler schedule(step);
    train::EarlyStopping early({.monitor = "val_loss", .min_delta = 1e-4, .patience = o.patience}, model);

    data::DataLoader train_loader(train_set, {.batch_size = o.batch, .shuffle = true, .drop_last = false, .seed = 7, .prefetch = 2});
    data::DataLoader val_loader(val_set, {.batch_size = 1000, .shuffle = false, .drop_last = false, .seed = 0, .prefetch = 2});
    data::DataLoader test_loader(test_set, {.batch_size = 1000, .shuffle = false, .drop_last = false, .seed = 0, .prefetch = 2});
    const auto loss = [](const auto& logits, const auto& labels) { return nn::cross_entropy(logits, labels); };

    const auto history = train::fit(model, opt, loss, train_loader, val_loader,
                                    {.epochs = o.epochs, .initial_epoch = 0, .initial_step = 0, .verbose = 1,
                                     .callbacks = {&schedule, &early}});
    if (early.stopped_epoch() >= 0) {
      std::printf("early stop after epoch %d; restored the weights of epoch %d (val_loss %.4f)\n", early.stopped_epoch() + 1,
                  early.best_epoch() + 1, early.best());
    }
    const auto test = train::evaluate(model, loss, test_loader, {.top_k = 2, .confusion_matrix = true});
    std::printf("test: loss %.4f  accuracy %.4f  top-2 accuracy %.4f\nconfusion matrix (rows: true class):\n", test.loss,
                test.accuracy, test.top_k_accuracy);
    for (index_t i = 0; i < 10; ++i) {
      for (index_t j = 0; j < 10; ++j) std::printf("%5ld", long(test.confusion(i, j)));
      std::printf("\n");
    }
    if (!o.export_dir.empty()) {
      const std::string dir = serve::export_model(model, o.export_dir, serve::next_version(o.export_dir), fashion::mlp_signature(),
                                                  {"fashion_mlp", {{"hidden", hidden}, {"dropout", dropout}}});
      std::printf("exported for serving: %s\n", dir.c_str());
    }
    double seconds = 0;
    for (const double s : history["seconds"]) seconds += s;
    std::printf("{\"test_accuracy\": %.4f, \"train_seconds\": %.1f, \"epochs\": %zu}\n", test.accuracy, seconds,
                history.epochs.size());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mlp_fashion: %s\n", e.what());
    return 1;
  }
}
