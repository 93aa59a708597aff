// fit / evaluate / predict, the callbacks, resuming from a checkpoint (bitwise equal to an
// uninterrupted run), k-fold cross-validation and grid search, on a small 3-class problem; and a
// short fit on a Fashion-MNIST subset when the dataset package is installed.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "autodiff/grad_test_support.hpp"
#include "io/tensorboard_reader.hpp"
#include "train/blobs.hpp"

using namespace tessera;

namespace {

using train_test::blobs;

auto make_model() {
  return nn::sequential(nn::Linear<float>(2, 16), nn::ReLU{}, nn::Dropout<float>(0.1), nn::Linear<float>(16, 3));
}
using Model = decltype(make_model());

const auto loss_fn = [](const auto& logits, const auto& labels) { return nn::cross_entropy(logits, labels); };

std::vector<float> flat_state(Model& m) {
  std::vector<float> out;
  nn::for_each_parameter(m, [&](const std::string&, const auto& t) {
    const auto c = t.contiguous();
    out.insert(out.end(), c.data(), c.data() + c.size());
  });
  return out;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("fit trains, reports history, and evaluate/predict agree with the model") {
  manual_seed(1);
  const auto train_set = blobs(240, 1), test_set = blobs(90, 2);
  data::DataLoader train_loader(train_set, {.batch_size = 16, .shuffle = true, .drop_last = false, .seed = 3});
  data::DataLoader test_loader(test_set, {.batch_size = 32});
  Model model = make_model();
  optim::Adam<float> opt({.lr = 0.02});

  const auto before = train::evaluate(model, loss_fn, test_loader);
  int batches = 0;
  train::LambdaCallback counter;
  counter.batch_end = [&](train::TrainingContext& ctx, const train::Logs& logs) {
    ++batches;
    CHECK(logs.count("loss") == 1);
    CHECK(ctx.batch >= 1);
  };
  const train::History h =
      train::fit(model, opt, loss_fn, train_loader, test_loader, {.epochs = 4, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {&counter}});
  CHECK(batches == 4 * 15);
  CHECK(h.epochs == std::vector<int>{0, 1, 2, 3});
  for (const char* k : {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"}) {
    REQUIRE_MESSAGE(h.has(k), k);
    CHECK(h[k].size() == 4);
  }
  CHECK_THROWS_AS(h["nope"], value_error);
  CHECK(h["loss"].back() < h["loss"].front());
  CHECK(h["val_accuracy"].back() > 0.9);
  CHECK(model.is_training());  // evaluation inside fit restored the mode

  const auto after = train::evaluate(model, loss_fn, test_loader, {.top_k = 2, .confusion_matrix = true});
  CHECK(after.loss < before.loss);
  CHECK(after.accuracy == doctest::Approx(h["val_accuracy"].back()));
  CHECK(after.samples == 90);
  CHECK(after.top_k_accuracy >= after.accuracy);
  REQUIRE(after.confusion.shape() == Shape<2>{3, 3});
  std::int64_t total = 0, diagonal = 0;
  for (index_t i = 0; i < 3; ++i) {
    for (index_t j = 0; j < 3; ++j) total += after.confusion(i, j);
    diagonal += after.confusion(i, i);
  }
  CHECK(total == 90);
  CHECK(double(diagonal) / 90 == doctest::Approx(after.accuracy));
  CHECK(train::evaluate(model, loss_fn, test_loader, {.top_k = 3, .confusion_matrix = false}).top_k_accuracy == 1.0);
  CHECK(after.logs("val_").count("val_top_2_accuracy") == 1);

  // predict: stacked eval-mode outputs; the same from a loader or from a tensor in chunks.
  const Tensor<float, 2> from_loader = train::predict(model, test_loader);
  const Tensor<float, 2> from_tensor = train::predict(model, std::get<0>(test_set.tensors()), 7);
  REQUIRE(from_loader.shape() == Shape<2>{90, 3});
  CHECK_TENSOR_NEAR(from_tensor, from_loader, 1e-6);
  model.eval();
  const Tensor<float, 2> direct = model(std::get<0>(test_set.tensors()));
  model.train();
  CHECK_TENSOR_NEAR(from_loader, direct, 1e-6);

  CHECK_THROWS_AS(train::fit(model, opt, loss_fn, train_loader, {.epochs = 1, .initial_epoch = 2, .initial_step = 0, .verbose = 0, .callbacks = {}}), value_error);
}

TEST_CASE("callbacks: early stopping, best checkpoints, schedules, CSV log, progress output") {
  manual_seed(2);
  const auto train_set = blobs(120, 4);
  data::DataLoader loader(train_set, {.batch_size = 30});
  Model model = make_model();
  optim::SGD<float> frozen({.lr = 0.0});

  SUBCASE("early stopping when the metric stops improving, restoring the best weights") {
    auto plain = nn::sequential(nn::Linear<float>(2, 16), nn::ReLU{}, nn::Linear<float>(16, 3));
    train::EarlyStopping stop({.monitor = "loss", .min_delta = 1e-3, .patience = 2}, plain);
    // After epoch 0 (the best: nothing trains), spoil the weights so later epochs are worse.
    std::vector<float> best_weights;
    train::LambdaCallback spoil;
    spoil.epoch_end = [&](train::TrainingContext& ctx, train::Logs&) {
      if (ctx.epoch != 0) return;
      nn::for_each_parameter(plain, [&](const std::string&, auto& t) {
        best_weights.insert(best_weights.end(), t.data(), t.data() + t.size());
        t *= 3.0f;
      });
    };
    const auto h = train::fit(plain, frozen, loss_fn, loader, {.epochs = 10, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {&stop, &spoil}});
    CHECK(h.epochs.size() == 3);  // epoch 0 sets the best, 1 and 2 do not improve
    CHECK(stop.stopped_epoch() == 2);
    CHECK(stop.best_epoch() == 0);
    std::vector<float> now;
    nn::for_each_parameter(plain, [&](const std::string&, auto& t) { now.insert(now.end(), t.data(), t.data() + t.size()); });
    CHECK(now == best_weights);
    train::EarlyStopping unknown({.monitor = "val_loss"});
    CHECK_THROWS_WITH_AS(train::fit(model, frozen, loss_fn, loader, {.epochs = 1, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {&unknown}}),
                         doctest::Contains("no metric \"val_loss\""), value_error);
  }
  SUBCASE("learning-rate schedule per epoch, CSV log per epoch, best-only checkpoints") {
    optim::SGD<float> sgd({.lr = 0.1});
    optim::StepLR step_lr(sgd, 1, 0.5);
    train::LearningRateScheduler scheduler(step_lr);
    const std::string csv = "tessera_test_fit_log.csv", ck = "tessera_test_fit_best.safetensors";
    train::CSVLogger logger(csv);
    train::ModelCheckpoint best(ck, model, sgd, {.monitor = "accuracy", .save_best_only = true});
    const auto h = train::fit(model, sgd, loss_fn, loader, {.epochs = 3, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {&scheduler, &logger, &best}});
    CHECK(h["lr"] == std::vector<double>{0.1, 0.05, 0.025});
    CHECK(sgd.lr() == doctest::Approx(0.0125));
    const std::string text = read_text(csv);
    CHECK(text.rfind("epoch,accuracy,loss,lr,seconds\n1,", 0) == 0);
    CHECK(std::count(text.begin(), text.end(), '\n') == 4);
    CHECK(best.last_saved() == ck);
    Model reloaded = make_model();
    optim::SGD<float> other;
    const auto progress = io::load_checkpoint(ck, reloaded, other);
    CHECK(progress.epoch >= 1);
    std::remove(csv.c_str());
    std::remove(ck.c_str());
    train::CSVLogger unwritable("no_such_dir_tessera/log.csv");
    CHECK_THROWS_WITH_AS(train::fit(model, sgd, loss_fn, loader, {.epochs = 1, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {&unwritable}}),
                         doctest::Contains("no_such_dir_tessera/log.csv"), io_error);
  }
  SUBCASE("progress: one plain line per epoch off a terminal, a redrawn bar on one") {
    std::ostringstream plain, bar;
    train::ProgressBar lines(plain, 0), redrawn(bar, 1);
    train::fit(model, frozen, loss_fn, loader, {.epochs = 2, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {&lines, &redrawn}});
    const std::string p = plain.str();
    CHECK(std::count(p.begin(), p.end(), '\n') == 2);
    CHECK(p.find('\r') == std::string::npos);
    CHECK(p.find("epoch 1/2  4/4") != std::string::npos);
    CHECK(p.find("samples/s  accuracy ") != std::string::npos);
    CHECK(p.find(" loss ") != std::string::npos);
    const std::string b = bar.str();
    CHECK(b.find('\r') != std::string::npos);
    CHECK(b.find("[====================]") != std::string::npos);
  }
}

TEST_CASE("the TensorBoard callback: batch and epoch scalars, histograms, images, confusion matrix, hparams") {
  manual_seed(3);
  const auto train_set = blobs(120, 5);
  data::DataLoader loader(train_set, {.batch_size = 30});
  Model model = make_model();
  optim::SGD<float> sgd({.lr = 0.1});
  const std::string dir = "tessera_test_fit_tensorboard";
  std::system(("rm -rf " + dir).c_str());
  {
    summary::Writer writer(dir);
    train::TensorBoard tensorboard(writer, model, {.update_freq = 2, .histograms = true, .hparams = {{"lr", 0.1}, {"model", "mlp"}}});
    tensorboard.sample_images(zeros<float>({4, 1, 3, 3}));
    tensorboard.confusion_matrix_on(loss_fn, loader);
    train::fit(model, sgd, loss_fn, loader, loader, {.epochs = 2, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {&tensorboard}});
  }
  const auto files = tbtest::event_files(dir);
  REQUIRE(files.size() == 1);
  std::map<std::string, std::vector<std::int64_t>> steps;
  std::map<std::string, tbtest::SummaryValue> last;
  for (const auto& e : tbtest::read_event_file(files[0])) {
    if (!e.summary) continue;
    for (const auto& v : e.summary->values) {
      steps[v.tag].push_back(e.step);
      last[v.tag] = v;
    }
  }
  // 4 batches per epoch, every second one logged; epoch summaries at the step count.
  CHECK(steps["batch/loss"] == std::vector<std::int64_t>{2, 4, 6, 8});
  CHECK(steps["batch/lr"] == std::vector<std::int64_t>{2, 4, 6, 8});
  CHECK(steps["batch/accuracy"].size() == 4);
  const std::vector<std::int64_t> epoch_ends{4, 8};
  for (const char* tag : {"epoch/loss", "epoch/accuracy", "epoch/val_loss", "epoch/val_accuracy", "epoch/lr", "epoch/seconds"}) {
    CHECK_MESSAGE(steps[tag] == epoch_ends, tag);
  }
  CHECK(last["epoch/lr"].simple_value.value() == doctest::Approx(0.1));
  for (const char* name : {"0.weight", "0.bias", "3.weight", "3.bias"}) {
    CHECK_MESSAGE(steps[std::string("weights/") + name] == epoch_ends, name);
    CHECK_MESSAGE(steps[std::string("gradients/") + name] == epoch_ends, name);
  }
  CHECK(last["weights/0.weight"].histo.value().num == 32);
  CHECK(last["weights/0.weight"].histo.value().sum_squares > 0);
  CHECK(last["gradients/3.bias"].histo.value().num == 3);
  CHECK(last["gradients/3.bias"].histo.value().sum_squares > 0);
  CHECK(steps["inputs"] == std::vector<std::int64_t>{0});
  CHECK(last["inputs"].image.value().width == 12);  // 4 images of 3x3 side by side
  const auto& matrix = last["confusion_matrix"].image.value();
  CHECK(matrix.width == 48);  // 3 classes, 16 pixels each
  CHECK(tbtest::decode_png(matrix.encoded).channels == 3);
  CHECK(last["confusion_matrix/counts"].tensor.value().string_val.at(0).find("| **2** |") != std::string::npos);
  CHECK(tbtest::decode_hparams(last["_hparams_/session_start_info"].metadata.value().plugin_content).hparams.size() == 2);
  CHECK(tbtest::decode_hparams(last["_hparams_/session_end_info"].metadata.value().plugin_content).end_status == 1);
  std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("resuming from a checkpoint reproduces uninterrupted training exactly") {
  const auto train_set = blobs(96, 5);
  // Shuffled batches, dropout masks, Adam state and a per-batch cosine schedule all have to resume.
  auto run = [&](int stop_after, const std::string& resume_from) {
    manual_seed(9);
    Model model = make_model();
    optim::Adam<float> opt({.lr = 0.01});
    optim::CosineWithWarmup cosine(opt, 3, 4 * 6);
    train::LearningRateScheduler scheduler(cosine, /*per_batch=*/true);
    data::DataLoader loader(train_set, {.batch_size = 16, .shuffle = true, .drop_last = false, .seed = 21});
    train::ModelCheckpoint saver("tessera_test_fit_resume_{epoch}.safetensors", model, opt);
    train::FitOptions o{.epochs = stop_after, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {&scheduler, &saver}};
    if (!resume_from.empty()) {
      const auto p = io::load_checkpoint(resume_from, model, opt);
      o.initial_epoch = int(p.epoch);
      o.initial_step = p.step;
    }
    train::fit(model, opt, loss_fn, loader, o);
    return flat_state(model);
  };
  const auto uninterrupted = run(4, "");
  const auto resumed = run(4, "tessera_test_fit_resume_2.safetensors");
  CHECK(resumed == uninterrupted);
  // And a different seed really changes the result (the comparison can fail).
  manual_seed(10);
  Model other = make_model();
  CHECK(flat_state(other) != uninterrupted);
  for (int e = 1; e <= 4; ++e) std::remove(("tessera_test_fit_resume_" + std::to_string(e) + ".safetensors").c_str());
}

TEST_CASE("k-fold splits, cross-validation and grid search") {
  const auto folds = train::k_fold(10, 3, {.shuffle = true, .seed = 1});
  REQUIRE(folds.size() == 3);
  std::multiset<index_t> all_validation;
  for (std::size_t f = 0; f < 3; ++f) {
    CHECK(folds[f].validation.size() == (f == 0 ? 4u : 3u));
    CHECK(folds[f].train.size() + folds[f].validation.size() == 10);
    std::set<index_t> tr(folds[f].train.begin(), folds[f].train.end());
    for (auto v : folds[f].validation) CHECK(tr.count(v) == 0);
    all_validation.insert(folds[f].validation.begin(), folds[f].validation.end());
  }
  CHECK(all_validation == std::multiset<index_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(train::k_fold(10, 3, {.shuffle = false, .seed = 0})[1].validation == std::vector<index_t>{4, 5, 6});
  CHECK_THROWS_AS(train::k_fold(2, 3), value_error);
  CHECK_THROWS_AS(train::k_fold(10, 1), value_error);

  const auto dataset = blobs(90, 6);
  int calls = 0;
  const auto cv = train::cross_validate(dataset, 3, [&](const auto& tr, const auto& va) {
    ++calls;
    CHECK(tr.size() == 60);
    CHECK(va.size() == 30);
    return train::Logs{{"score", double(calls)}};
  });
  CHECK(calls == 3);
  CHECK(cv.mean.at("score") == doctest::Approx(2.0));
  CHECK(cv.stddev.at("score") == doctest::Approx(std::sqrt(2.0 / 3.0)));

  // A real grid search: the learning rate that trains wins.
  const auto gs = train::grid_search(
      {{"lr", {0.0, 0.05}}, {"hidden", {4, 16}}}, dataset, 2,
      [&](const train::ParamSet& p, const auto& tr, const auto& va) {
        manual_seed(3);
        auto model = nn::sequential(nn::Linear<float>(2, index_t(p.at("hidden"))), nn::ReLU{}, nn::Linear<float>(index_t(p.at("hidden")), 3));
        optim::Adam<float> opt({.lr = p.at("lr")});
        data::DataLoader train_loader(tr, {.batch_size = 15, .shuffle = true});
        data::DataLoader val_loader(va, {.batch_size = 45});
        train::fit(model, opt, loss_fn, train_loader, {.epochs = 5, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {}});
        return train::evaluate(model, loss_fn, val_loader).logs();
      },
      {.metric = "accuracy", .maximize = -1, .folds = {}});
  REQUIRE(gs.results.size() == 4);
  CHECK(gs.results[1].params == train::ParamSet{{"hidden", 16}, {"lr", 0.0}});
  CHECK(gs.results[0].folds.size() == 2);
  CHECK(gs.best().params.at("lr") == 0.05);
  CHECK(gs.best().mean.at("accuracy") > 0.8);
  CHECK_THROWS_AS(train::expand_grid({{"a", {}}}), value_error);
  CHECK_THROWS_AS(train::expand_grid({{"a", {1}}, {"a", {2}}}), value_error);
}

TEST_CASE("a short fit improves accuracy on a Fashion-MNIST subset") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  struct stat st {};
  if (::stat((dir + "/train-images-idx3-ubyte.gz").c_str(), &st) != 0) {
    MESSAGE("skipped: Fashion-MNIST not installed (apt install dataset-fashion-mnist)");
    return;
  }
  const auto images = data::read_idx<float, 3>(dir + "/train-images-idx3-ubyte.gz");
  const auto labels = data::read_idx<std::int64_t, 1>(dir + "/train-labels-idx1-ubyte.gz");
  const Tensor<float, 2> x = reshape(images.slice(0, 0, 2000) * (1.0f / 255.0f), Shape<2>{2000, 784});
  const data::TensorDataset all(x, Tensor<std::int64_t, 1>(labels.slice(0, 0, 2000)));
  const auto train_part = all.slice(0, 1500), held_out = all.slice(1500, 2000);
  data::DataLoader train_loader(train_part, {.batch_size = 50, .shuffle = true, .drop_last = false, .seed = 1});
  data::DataLoader test_loader(held_out, {.batch_size = 250});
  manual_seed(4);
  auto model = nn::sequential(nn::Linear<float>(784, 64), nn::ReLU{}, nn::Linear<float>(64, 10));
  optim::Adam<float> opt({.lr = 2e-3});
  const double before = train::evaluate(model, loss_fn, test_loader).accuracy;
  const auto h = train::fit(model, opt, loss_fn, train_loader, test_loader, {.epochs = 2, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {}});
  CHECK(before < 0.3);
  CHECK(h["val_accuracy"].back() > 0.7);
}

TEST_CASE("stop_on_nonfinite_loss: fit stops at the bad batch, before its update, and the checkpoint keeps the last good epoch") {
  manual_seed(6);
  const auto train_set = blobs(120, 5);
  data::DataLoader loader(train_set, {.batch_size = 30});  // 4 batches an epoch
  Model model = make_model();
  optim::SGD<float> sgd({.lr = 0.1});
  // The loss turns NaN from the 10th batch on: epoch 2, batch 1 (step 9).
  int calls = 0;
  auto poisoned = [&](const auto& logits, const auto& labels) {
    ++calls;
    return nn::cross_entropy(logits, labels) * (calls >= 10 ? std::nanf("") : 1.0f);
  };
  const std::string ck = "tessera_test_fit_nonfinite.safetensors";
  train::ModelCheckpoint every_epoch(ck, model, sgd);
  std::vector<float> after_epoch_1, before_bad_batch;
  train::LambdaCallback watch;
  watch.epoch_end = [&](train::TrainingContext& ctx, train::Logs&) {
    if (ctx.epoch == 1) after_epoch_1 = flat_state(model);
  };
  watch.batch_end = [&](train::TrainingContext& ctx, const train::Logs&) {
    if (ctx.epoch == 2) before_bad_batch = flat_state(model);
  };
  SUBCASE("with the option: stopped, parameters and checkpoint finite") {
    const auto h = train::fit(model, sgd, poisoned, loader,
                              {.epochs = 5, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {&every_epoch, &watch},
                               .distributed = nullptr, .stop_on_nonfinite_loss = true});
    CHECK(h.epochs == std::vector<int>{0, 1});
    CHECK(h.stop_reason == "fit: stopped on a non-finite loss (NaN) at epoch 2, batch 1 (step 9), before its update");
    CHECK(calls == 10);
    // The bad batch's update was not applied: the parameters are those after batch 0 of epoch 2.
    REQUIRE(!before_bad_batch.empty());
    CHECK(flat_state(model) == before_bad_batch);
    // The checkpoint holds the end of epoch 1, finite.
    Model reloaded = make_model();
    optim::SGD<float> other;
    const auto progress = io::load_checkpoint(ck, reloaded, other);
    CHECK(progress.epoch == 2);
    CHECK(flat_state(reloaded) == after_epoch_1);
    for (float v : flat_state(reloaded)) REQUIRE(std::isfinite(v));
  }
  SUBCASE("without it (the planted NaN is what the option catches): training runs on and the weights turn NaN") {
    const auto h = train::fit(model, sgd, poisoned, loader,
                              {.epochs = 4, .initial_epoch = 0, .initial_step = 0, .verbose = 0, .callbacks = {&every_epoch}});
    CHECK(h.epochs.size() == 4);
    CHECK(h.stop_reason.empty());
    CHECK(std::isnan(h["loss"].back()));
    bool any_nan = false;
    for (float v : flat_state(model)) any_nan = any_nan || std::isnan(v);
    CHECK(any_nan);
  }
  std::remove(ck.c_str());
}
