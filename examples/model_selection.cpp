// Model selection: 3-fold cross-validated grid search over the learning rate and the hidden width
// of an MLP on a Fashion-MNIST subset (scikit-learn's GridSearchCV, as TensorFlow's estimators
// offered it), then the best configuration retrained on the whole subset and scored on the test set.
// Each configuration becomes a TensorBoard run under --out with its hyperparameters and
// cross-validated metrics, so `tensorboard --logdir runs` compares them in the HParams tab.
//
//   model_selection [--data DIR] [--out DIR (runs/model_selection)] [--samples N (6000)] [--epochs E (5)] [--folds K (3)]
#include <tessera/tessera.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>

using namespace tessera;

namespace {
auto load(const std::string& dir, const std::string& split, index_t limit) {
  const auto images = data::read_idx<float, 3>(dir + "/" + split + "-images-idx3-ubyte.gz");
  const auto labels = data::read_idx<std::int64_t, 1>(dir + "/" + split + "-labels-idx1-ubyte.gz");
  const index_t n = std::min(limit, images.shape()[0]);
  Tensor<float, 2> x = reshape(images.slice(0, 0, n) * (1.0f / 255.0f), Shape<2>{n, 784});
  return data::TensorDataset(x, Tensor<std::int64_t, 1>(labels.slice(0, 0, n)));
}

const auto loss = [](const auto& logits, const auto& labels) { return nn::cross_entropy(logits, labels); };

/// Trains a fresh MLP with the given hyperparameters; returns its metrics on `validation`.
template <class TrainSet, class ValSet>
train::Logs fit_and_score(const train::ParamSet& p, const TrainSet& train_set, const ValSet& validation, int epochs) {
  manual_seed(1);
  const auto hidden = static_cast<index_t>(p.at("hidden"));
  auto model = nn::sequential(nn::Linear<float>(784, hidden), nn::ReLU{}, nn::Linear<float>(hidden, 10));
  optim::Adam<float> opt({.lr = p.at("lr")});
  data::DataLoader train_loader(train_set, {.batch_size = 64, .shuffle = true, .drop_last = false, .seed = 1, .prefetch = 2});
  data::DataLoader val_loader(validation, {.batch_size = 500, .shuffle = false, .drop_last = false, .seed = 0, .prefetch = 2});
  train::fit(model, opt, loss, train_loader, {.epochs = epochs, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {}});
  return train::evaluate(model, loss, val_loader).logs();
}
}  // namespace

int main(int argc, char** argv) {
  try {
    std::string dir = "/usr/share/datasets/fashion-mnist", out = "runs/model_selection";
    index_t samples = 6000;
    int epochs = 5, folds = 3;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      if (a == "--data") dir = argv[++i];
      else if (a == "--out") out = argv[++i];
      else if (a == "--samples") samples = std::stol(argv[++i]);
      else if (a == "--epochs") epochs = std::stoi(argv[++i]);
      else if (a == "--folds") folds = std::stoi(argv[++i]);
      else throw std::invalid_argument("unknown flag " + a + " (usage: model_selection [--data DIR] [--out DIR] [--samples N] [--epochs E] [--folds K])");
    }
    const auto dataset = load(dir, "train", samples);
    const auto test_set = load(dir, "t10k", 10000);

    const train::ParamGrid grid = {{"lr", {3e-4, 1e-3, 3e-3}}, {"hidden", {32, 128}}};
    const auto search = train::grid_search(
        grid, dataset, folds,
        [&](const train::ParamSet& p, const auto& tr, const auto& va) { return fit_and_score(p, tr, va, epochs); },
        {.metric = "accuracy", .maximize = -1, .folds = {.shuffle = true, .seed = 3}});

    std::printf("%-8s %-7s %-22s %-10s\n", "lr", "hidden", "cv accuracy (mean+-sd)", "cv loss");
    for (const auto& r : search.results) {
      std::printf("%-8g %-7g %.4f +- %.4f        %.4f\n", r.params.at("lr"), r.params.at("hidden"), r.mean.at("accuracy"),
                  r.stddev.at("accuracy"), r.mean.at("loss"));
    }
    for (const auto& r : search.results) {
      std::string run;
      for (const auto& [name, value] : r.params) {
        char number[32];
        std::snprintf(number, sizeof number, "%g", value);
        run += (run.empty() ? "" : ",") + name + "=" + number;  // e.g. hidden=32,lr=0.001
      }
      summary::Writer writer(out + "/" + run);
      writer.hparams(summary::HParams(r.params.begin(), r.params.end()),
                     {{"cv/accuracy", r.mean.at("accuracy")}, {"cv/accuracy_sd", r.stddev.at("accuracy")}, {"cv/loss", r.mean.at("loss")}});
    }
    std::printf("TensorBoard runs (HParams tab): tensorboard --logdir %s\n", out.c_str());

    const auto& best = search.best();
    std::printf("best: lr %g, hidden %g\n", best.params.at("lr"), best.params.at("hidden"));

    const auto test = fit_and_score(best.params, dataset, test_set, epochs);
    std::printf("{\"best_lr\": %g, \"best_hidden\": %g, \"cv_accuracy\": %.4f, \"test_accuracy\": %.4f}\n", best.params.at("lr"),
                best.params.at("hidden"), best.mean.at("accuracy"), test.at("accuracy"));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "model_selection: %s\n", e.what());
    return 1;
  }
}
