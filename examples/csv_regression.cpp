// Regression from a CSV file: read numeric columns with data::read_csv, standardize the features
// with statistics of the training rows, fit a small MLP with the Huber loss and Adam, and report
// the validation RMSE next to a least-squares baseline.
//
//   csv_regression [--csv FILE] [--label NAME] [--epochs N]
//
// Without --csv it writes (and then reads) examples' own data: 1,000 rows of a noisy nonlinear
// function, y = 3 x1 - 2 x2 + x1 x3 + sin(2 x4) + noise, to csv_regression_data.csv.
#include <tessera/tessera.hpp>

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>

using namespace tessera;

namespace {
/// Solves m w = r (m square, r [n, 1]) by Gaussian elimination with partial pivoting.
Tensor<double, 2> solve(Tensor<double, 2> m, Tensor<double, 2> r) {
  m = m.clone();
  r = r.clone();
  const index_t n = m.shape()[0];
  for (index_t c = 0; c < n; ++c) {
    index_t p = c;
    for (index_t i = c + 1; i < n; ++i) {
      if (std::fabs(m(i, c)) > std::fabs(m(p, c))) p = i;
    }
    if (std::fabs(m(p, c)) < 1e-12) throw std::runtime_error("least squares: singular system");
    for (index_t j = 0; j < n; ++j) std::swap(m(c, j), m(p, j));
    std::swap(r(c, 0), r(p, 0));
    for (index_t i = 0; i < n; ++i) {
      if (i == c) continue;
      const double f = m(i, c) / m(c, c);
      for (index_t j = c; j < n; ++j) m(i, j) -= f * m(c, j);
      r(i, 0) -= f * r(c, 0);
    }
  }
  for (index_t i = 0; i < n; ++i) r(i, 0) /= m(i, i);
  return r;
}

std::string make_demo_csv() {
  const std::string path = "csv_regression_data.csv";
  Generator gen(42);
  const index_t n = 1000;
  const Tensor<float, 2> x = uniform<float>(gen, {n, 4}, -1.0f, 1.0f);
  const Tensor<float, 1> noise = normal<float>(gen, {n}, 0.0f, 0.1f);
  Tensor<float, 1> y = zeros<float>({n});
  for (index_t i = 0; i < n; ++i) {
    y(i) = 3 * x(i, 0) - 2 * x(i, 1) + x(i, 0) * x(i, 2) + std::sin(2 * x(i, 3)) + noise(i);
  }
  data::write_csv(path, x, y, {"x1", "x2", "x3", "x4"}, "y");
  return path;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    std::string csv, label = "y";
    int epochs = 60;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value (usage: csv_regression [--csv FILE] [--label NAME] [--epochs N])");
      if (a == "--csv") csv = argv[++i];
      else if (a == "--label") label = argv[++i];
      else if (a == "--epochs") epochs = std::stoi(argv[++i]);
      else throw std::invalid_argument("unknown flag " + a);
    }
    if (csv.empty()) csv = make_demo_csv();
    const auto table = data::read_csv<float, float>(csv, {.header = true, .delimiter = ',', .label = label, .label_index = -1});
    const index_t n = table.features.shape()[0], d = table.features.shape()[1];
    const index_t n_train = n * 4 / 5;
    std::printf("%s: %ld rows, %ld features, label \"%s\"; %ld for training\n", csv.c_str(), long(n), long(d),
                table.label_name.c_str(), long(n_train));

    // Standardize with the training rows' mean and standard deviation.
    const Tensor<float, 2> train_x = table.features.slice(0, 0, n_train);
    const Tensor<float, 1> mean = tessera::mean(train_x, 0);
    const Tensor<float, 1> stddev = sqrt(var(train_x, 0) + 1e-8f);
    const Tensor<float, 2> x = (table.features - mean) / stddev;
    const Tensor<float, 2> y = reshape(table.labels, Shape<2>{n, 1});
    const data::TensorDataset all(x, y);
    const auto train_set = all.slice(0, n_train), val_set = all.slice(n_train, n);

    manual_seed(1);
    auto model = nn::sequential(nn::Linear<float>(d, 32), nn::Tanh{}, nn::Linear<float>(32, 32), nn::Tanh{}, nn::Linear<float>(32, 1));
    optim::Adam<float> opt({.lr = 1e-2});
    optim::ReduceLROnPlateau plateau(opt, {.maximize = false, .factor = 0.5, .patience = 5, .threshold = 1e-4, .cooldown = 0, .min_lr = 1e-4});
    train::PlateauScheduler on_plateau(plateau, "val_loss");
    data::DataLoader train_loader(train_set, {.batch_size = 32, .shuffle = true, .drop_last = false, .seed = 1, .prefetch = 0});
    data::DataLoader val_loader(val_set, {.batch_size = 200, .shuffle = false, .drop_last = false, .seed = 0, .prefetch = 0});
    const auto huber = [](const auto& out, const auto& target) { return nn::huber(out, target, 1.0); };
    train::fit(model, opt, huber, train_loader, val_loader, {.epochs = epochs, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {&on_plateau}});

    // Validation RMSE of the MLP and of ordinary least squares (with intercept) on the same split.
    const Tensor<float, 2> x_val = std::get<0>(val_set.tensors()), y_val = std::get<1>(val_set.tensors());
    const Tensor<float, 2> pred = train::predict(model, x_val);
    const double rmse = std::sqrt(double(Tensor<float, 0>(tessera::mean(square(pred - y_val)))()));
    const Tensor<double, 2> a = concat({Tensor<double, 2>(cast<double>(std::get<0>(train_set.tensors()))), ones<double>({n_train, 1})}, 1);
    const Tensor<double, 2> b = cast<double>(std::get<1>(train_set.tensors()));
    const Tensor<double, 2> w = solve(matmul(a.transpose(0, 1), a), matmul(a.transpose(0, 1), b));
    const Tensor<double, 2> a_val = concat({Tensor<double, 2>(cast<double>(x_val)), ones<double>({n - n_train, 1})}, 1);
    const double rmse_ls = std::sqrt(double(Tensor<double, 0>(tessera::mean(square(matmul(a_val, w) - cast<double>(y_val))))()));
    std::printf("validation RMSE: MLP %.4f, linear least squares %.4f\n", rmse, rmse_ls);
    std::printf("{\"val_rmse\": %.4f, \"least_squares_rmse\": %.4f}\n", rmse, rmse_ls);
    return rmse < rmse_ls ? 0 : 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "csv_regression: %s\n", e.what());
    return 1;
  }
}
