// Data-parallel training with train::fit and dist::DataParallel, run by mpirun with 2, 3 and 4
// processes (tests/dist/dist.cmake): the replicas equal one process trained on the same global
// batches, stay bitwise equal after every step, report metrics over all ranks, and start from
// rank 0's state. A global batch of 11 samples splits unevenly for every process count, which the
// naive average of per-rank means gets wrong (checked too).
#include <doctest/doctest.h>

#include <tessera/dist/dist.hpp>
#include <tessera/tessera.hpp>

#include "dist/world.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "train/blobs.hpp"

using namespace tessera;

using dist_test::world;

namespace {

using Set = train_test::BlobSet;

using train_test::blobs;

auto make_model() {
  manual_seed(5);
  return nn::sequential(nn::Linear<float>(2, 16), nn::Tanh{}, nn::Linear<float>(16, 3));
}
using Model = decltype(make_model());

const auto loss_fn = [](const auto& logits, const auto& labels) { return nn::cross_entropy(logits, labels); };

constexpr index_t global_batch = 11;  // uneven shards for 2, 3 and 4 processes
constexpr index_t steps = 20;

Tensor<float, 1> flat(Model& m) {
  std::vector<float> v;
  nn::for_each_parameter(m, [&](const std::string&, const auto& t) {
    const auto c = t.contiguous();
    v.insert(v.end(), c.data(), c.data() + c.size());
  });
  Tensor<float, 1> out = zeros<float>({index_t(v.size())});
  std::copy(v.begin(), v.end(), out.data());
  return out;
}

double relative_deviation(const Tensor<float, 1>& a, const Tensor<float, 1>& b) {
  double diff = 0, scale = 0;
  for (index_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, double(std::fabs(a(i) - b(i))));
    scale = std::max(scale, double(std::fabs(b(i))));
  }
  return diff / scale;
}

/// True when every rank holds bitwise the same values.
bool same_on_every_rank(const Tensor<float, 1>& v) {
  const Tensor<float, 1> all = world().allgather(v);
  const index_t n = v.size();
  for (int r = 1; r < world().size(); ++r) {
    for (index_t i = 0; i < n; ++i) {
      if (std::memcmp(&all(r * n + i), &all(i), sizeof(float)) != 0) return false;
    }
  }
  return true;
}

/// The parameters after `steps` steps of one process on the unsharded global batches.
template <class Opt>
Tensor<float, 1> alone(const Set& set, Opt opt) {
  Model model = make_model();
  data::DataLoader loader(set, {.batch_size = global_batch, .shuffle = true, .seed = 9});
  train::fit(model, opt, loss_fn, loader, {.epochs = 1, .verbose = 0});
  return flat(model);
}

/// The same with every rank training on its shard through `strategy`; checks that the replicas
/// are bitwise equal after every step.
template <class Opt>
Tensor<float, 1> together(const Set& set, Opt opt, train::Distributed& strategy, int& unequal_steps) {
  Model model = make_model();
  data::DataLoader loader(set, {.batch_size = global_batch, .shuffle = true, .seed = 9, .shards = world().size(),
                                .shard = world().rank()});
  train::LambdaCallback equal;
  equal.batch_end = [&](train::TrainingContext&, const train::Logs&) {
    if (!same_on_every_rank(flat(model))) ++unequal_steps;
  };
  train::fit(model, opt, loss_fn, loader, {.epochs = 1, .verbose = 0, .callbacks = {&equal}, .distributed = &strategy});
  return flat(model);
}

/// The naive reduction: every rank's mean gradient averaged over ranks, whatever their sample
/// counts (right only when every rank has as many samples): DataParallel told that every rank
/// holds as many samples as this one.
class MeanOfMeans final : public train::Distributed {
 public:
  explicit MeanOfMeans(dist::DataParallel& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  void broadcast(const std::vector<train::Buffer>& b) override { inner_.broadcast(b); }
  double global_samples(index_t local, std::int64_t) override { return double(local) * world_size(); }
  void sum_gradients(const std::vector<train::Buffer>& grads, std::int64_t step) override {
    inner_.sum_gradients(grads, step);
  }
  void sum(std::vector<double>& v) override { inner_.sum(v); }

 private:
  dist::DataParallel& inner_;
};

}  // namespace

TEST_CASE("replicas trained on shards of every global batch equal one process, and stay bitwise equal") {
  const Set set = blobs(global_batch * steps, 1);  // exactly `steps` global batches
  dist::DataParallel dp(world());

  int unequal = 0;
  const auto sgd = optim::SGD<float>({.lr = 0.1, .momentum = 0.9});
  const double sgd_dev = relative_deviation(together(set, sgd, dp, unequal), alone(set, sgd));
  CHECK(sgd_dev <= 1e-5);
  CHECK(unequal == 0);
  // fit computes the gradients into one arena: all four are summed by one call, none copied.
  CHECK(dp.buckets() == 1);
  CHECK(dp.packed_buckets() == 0);

  const auto adam = optim::Adam<float>({.lr = 0.01});
  const double adam_dev = relative_deviation(together(set, adam, dp, unequal), alone(set, adam));
  CHECK(adam_dev <= 1e-5);
  CHECK(unequal == 0);
  if (world().rank() == 0) {
    MESSAGE("max|dtheta|/max|theta| after ", steps, " steps on ", world().size(), " ranks: SGD-momentum ", sgd_dev, ", Adam ",
            adam_dev);
  }

  // With uneven shards, averaging the ranks' means weights some samples more than others: the
  // same comparison must then fail.
  MeanOfMeans naive(dp);
  const double naive_dev = relative_deviation(together(set, sgd, naive, unequal), alone(set, sgd));
  CHECK(naive_dev > 1e-5);
  if (world().rank() == 0) MESSAGE("the average of per-rank means instead: SGD-momentum ", naive_dev);
}

TEST_CASE("fit reports loss and accuracy over every rank's samples") {
  const Set train_set = blobs(global_batch * 4, 2), test_set = blobs(90, 3);
  dist::DataParallel dp(world());
  Model model = make_model();
  optim::Adam<float> opt({.lr = 0.01});
  data::DataLoader train_loader(train_set, {.batch_size = global_batch, .shuffle = true, .seed = 4, .shards = world().size(),
                                            .shard = world().rank()});
  data::DataLoader test_shard(test_set, {.batch_size = 30, .shards = world().size(), .shard = world().rank()});
  const train::History h =
      train::fit(model, opt, loss_fn, train_loader, test_shard, {.epochs = 2, .verbose = 0, .callbacks = {}, .distributed = &dp});

  // Every rank now holds the same model: evaluated alone on the whole test set it must give what
  // fit reported from the shards.
  data::DataLoader test_all(test_set, {.batch_size = 30});
  const train::Evaluation e = train::evaluate(model, loss_fn, test_all);
  CHECK(h["val_loss"].back() == doctest::Approx(e.loss).epsilon(1e-5));
  CHECK(h["val_accuracy"].back() == doctest::Approx(e.accuracy).epsilon(1e-9));
  // The training metrics too are the same number on every rank.
  Tensor<float, 1> metrics = {float(h["loss"].back()), float(h["accuracy"].back())};
  CHECK(same_on_every_rank(metrics));
}

TEST_CASE("fit starts every rank from rank 0's weights, optimizer state and counters") {
  dist::DataParallel dp(world());
  const Set set = blobs(global_batch * 3, 6);
  Model model = make_model();
  optim::Adam<float> opt({.lr = 0.01});
  train::FitOptions o{.epochs = 3, .verbose = 0, .callbacks = {}, .distributed = &dp};
  if (world().rank() == 0) {
    // As if rank 0 alone had loaded a checkpoint written after two epochs.
    data::DataLoader loader(set, {.batch_size = global_batch, .shuffle = true, .seed = 1});
    train::fit(model, opt, loss_fn, loader, {.epochs = 2, .verbose = 0});
    o.initial_epoch = 2;
    o.initial_step = 6;
    opt.set_lr(0.003);  // the checkpoint's learning rate
  }
  data::DataLoader shard(set, {.batch_size = global_batch, .shuffle = true, .seed = 1, .shards = world().size(),
                               .shard = world().rank()});
  int first_epoch = -1;
  std::int64_t first_step = -1;
  train::LambdaCallback seen;
  seen.train_begin = [&](train::TrainingContext& ctx) {
    first_epoch = ctx.epoch;
    first_step = ctx.step;
  };
  o.callbacks = {&seen};
  const train::History h = train::fit(model, opt, loss_fn, shard, o);
  CHECK(first_epoch == 2);
  CHECK(first_step == 6);
  REQUIRE(h.epochs.size() == 1);  // only the third epoch ran, on every rank
  CHECK(opt.step_count() == 9);
  CHECK(opt.lr() == doctest::Approx(0.003));
  CHECK(same_on_every_rank(flat(model)));
  std::vector<float> state;
  for (const auto& s : opt.named_state()) {
    const auto c = s.value.contiguous();
    state.insert(state.end(), c.data(), c.data() + c.size());
  }
  Tensor<float, 1> st = zeros<float>({index_t(state.size())});
  std::copy(state.begin(), state.end(), st.data());
  CHECK(same_on_every_rank(st));
}

TEST_CASE("a short last global batch, and a callback that stops one rank, keep the replicas together") {
  const Set set = blobs(global_batch * 5 + 2, 7);  // a tail of 2: split 1 + 1, or padded to one per rank
  dist::DataParallel dp(world());
  Model model = make_model();
  optim::SGD<float> opt({.lr = 0.1, .momentum = 0.9});
  data::DataLoader shard(set, {.batch_size = global_batch, .shuffle = true, .seed = 3, .shards = world().size(),
                               .shard = world().rank()});
  train::LambdaCallback stop_on_rank0;
  stop_on_rank0.epoch_end = [&](train::TrainingContext& ctx, train::Logs&) {
    if (world().rank() == 0 && ctx.epoch == 1) ctx.stop_training = true;
  };
  const train::History h = train::fit(model, opt, loss_fn, shard, {.epochs = 4, .verbose = 0, .callbacks = {&stop_on_rank0},
                                                                    .distributed = &dp});
  CHECK(h.epochs.size() == 2);  // every rank stopped after the second epoch
  CHECK(opt.step_count() == 12);
  CHECK(same_on_every_rank(flat(model)));
  if (world().size() == 2) {  // 1 + 1: the tail is not padded, so one process on the same batches agrees
    Model one = make_model();
    optim::SGD<float> opt1({.lr = 0.1, .momentum = 0.9});
    data::DataLoader whole(set, {.batch_size = global_batch, .shuffle = true, .seed = 3});
    train::fit(one, opt1, loss_fn, whole, {.epochs = 2, .verbose = 0});
    CHECK(relative_deviation(flat(model), flat(one)) <= 1e-5);
  }
}

TEST_CASE("ranks whose loaders differ are an error on every rank") {
  dist::DataParallel dp(world());
  const Set set = blobs(world().rank() == 1 ? global_batch * 4 : global_batch * 3, 8);
  Model model = make_model();
  optim::SGD<float> opt({.lr = 0.1});
  data::DataLoader shard(set, {.batch_size = global_batch, .shards = world().size(), .shard = world().rank()});
  CHECK_THROWS_WITH_AS(train::fit(model, opt, loss_fn, shard, {.epochs = 1, .verbose = 0, .callbacks = {}, .distributed = &dp}),
                       doctest::Contains("differ in steps per epoch"), value_error);
}
