// dist/nccl.hpp on a GPU, as one rank (NCCL allows one rank per GPU, and the GPU machine has one):
// the collectives on device tensors, and train::fit through NcclDataParallel, which must leave the
// model bitwise equal to fit without it. The last case also times the two (the main job's model,
// alternating rounds) and prints `nccl_one_rank_overhead: <ratio>` for scripts/gpu-check, whose
// target is at most 1.03. Where no device is present it exits 77 (CTest: skipped).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <tessera/cuda.hpp>
#include <tessera/dist/nccl.hpp>

#include "../examples/fashion_models.hpp"
#include "cuda/device_test_support.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

using namespace tessera;
using device_test::Dev;
using device_test::host;
using device_test::to_dev;

namespace {

/// One communicator per process, never destroyed: at exit the CUDA runtime may already be gone.
dist::NcclCommunicator& one_rank() {
  static auto* comm = new dist::NcclCommunicator(dist::NcclCommunicator::unique_id(), 0, 1, 0, /*timeout_seconds=*/60);
  return *comm;
}

/// Every parameter and buffer of a model, on the host, in order.
template <class M>
std::vector<float> state_of(M& model) {
  std::vector<float> out;
  auto take = [&](const std::string&, auto& t) {
    using T = value_type_t<std::decay_t<decltype(t)>>;
    if constexpr (std::is_same_v<T, float>) {
      const auto h = t.template to<cpu>().contiguous();
      out.insert(out.end(), h.data(), h.data() + h.size());
    }
  };
  nn::for_each_parameter(model, take);
  nn::for_each_buffer(model, take);
  return out;
}

auto random_images(index_t n, std::uint64_t seed) {
  Generator gen(seed);
  const auto images = uniform<float>(gen, Shape<4>{n, 1, 28, 28});
  Tensor<std::int64_t, 1, cpu> labels(n);
  for (index_t i = 0; i < n; ++i) labels(i) = (i * 7 + 3) % 10;
  return data::TensorDataset(images, labels);
}

const auto loss_fn = [](const auto& logits, const auto& labels) { return nn::cross_entropy(logits, labels); };

/// The main job's model trained by fit for `epochs` over `set`, with or without `dist`; returns
/// the seconds fit took.
template <class Model, class Opt, class Set>
double fit_seconds(Model& model, Opt& opt, const Set& set, index_t batch, int epochs, train::Distributed* dist) {
  data::DataLoader loader(set, {.batch_size = batch, .shuffle = true, .drop_last = false, .seed = 3});
  auto batches = data::on_device<Dev>(loader);
  train::FitOptions options;
  options.epochs = epochs;
  options.verbose = 0;
  options.distributed = dist;
  const auto start = std::chrono::steady_clock::now();
  (void)train::fit(model, opt, loss_fn, batches, options);
  Dev::synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

TEST_CASE("one rank: all-reduce, broadcast, all-gather and barrier on device tensors") {
  auto& comm = one_rank();
  CHECK(comm.rank() == 0);
  CHECK(comm.size() == 1);
  const Tensor<float, 2> a = {{1.5f, -2.0f, 3.0f}, {4.0f, 5.25f, -6.0f}};
  for (const auto op : {dist::ReduceOp::sum, dist::ReduceOp::mean, dist::ReduceOp::max}) {
    auto d = to_dev(a);
    comm.allreduce(d, op);
    device_test::check_close(d, a, 0);
  }
  // A strided view is reduced through a contiguous copy and written back.
  Tensor<double, 2, Dev> wide = to_dev(Tensor<double, 2>{{1, 2}, {3, 4}});
  auto view = wide.transpose(0, 1);
  comm.allreduce(view, dist::ReduceOp::sum);
  CHECK(host(wide)(1, 0) == 3.0);
  Tensor<std::int64_t, 1, Dev> counts = to_dev(Tensor<std::int64_t, 1>{7, 8});
  comm.allreduce(counts, dist::ReduceOp::max);
  CHECK(host(counts)(1) == 8);
  CHECK_THROWS_WITH_AS(comm.allreduce(counts, dist::ReduceOp::mean), doctest::Contains("mean of an integer tensor"),
                       value_error);

  auto b = to_dev(a);
  comm.broadcast(b, 0);
  device_test::check_close(b, a, 0);
  CHECK_THROWS_WITH_AS(comm.broadcast(b, 1), doctest::Contains("root rank 1 outside [0, 1)"), value_error);

  const auto all = comm.allgather(to_dev(a));
  CHECK(all.shape() == Shape<2>{2, 3});
  device_test::check_close(all, a, 0);
  comm.barrier();
}

TEST_CASE("one rank: fit through NcclDataParallel leaves the model bitwise equal to fit alone") {
  const auto set = random_images(6 * 64 + 17, 11);                           // a short last batch too
  dist::NcclDataParallel data_parallel(one_rank(), {.bucket_bytes = 4096});  // several buckets
  CHECK(data_parallel.takes_device_memory());

  // 1 epoch of SGD with momentum, then 1 of Adam, from the same weights and dropout stream.
  auto trained_alone = [&] {
    manual_seed(1);
    auto alone = fashion::cnn<Dev>(8, 32);
    optim::SGD<float, Dev> sgd({.lr = 0.05, .momentum = 0.9});
    manual_seed(2);
    (void)fit_seconds(alone, sgd, set, 64, 1, nullptr);
    optim::Adam<float, Dev> adam({.lr = 1e-3});
    (void)fit_seconds(alone, adam, set, 64, 1, nullptr);
    return state_of(alone);
  };
  const auto x = trained_alone();
  // Training alone must itself be reproducible (deterministic cuDNN algorithms, no atomics in the
  // model's kernels); otherwise the comparison below would not be about NCCL.
  const auto again = trained_alone();
  REQUIRE(std::memcmp(x.data(), again.data(), x.size() * sizeof(float)) == 0);

  manual_seed(1);
  auto together = fashion::cnn<Dev>(8, 32);
  optim::SGD<float, Dev> together_sgd({.lr = 0.05, .momentum = 0.9});
  manual_seed(2);
  (void)fit_seconds(together, together_sgd, set, 64, 1, &data_parallel);
  CHECK(data_parallel.buckets() > 1);
  optim::Adam<float, Dev> together_adam({.lr = 1e-3});
  (void)fit_seconds(together, together_adam, set, 64, 1, &data_parallel);

  const auto y = state_of(together);
  REQUIRE(x.size() == y.size());
  CHECK(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
  manual_seed(1);
  auto untrained = fashion::cnn<Dev>(8, 32);
  CHECK(x != state_of(untrained));  // the model did train
}

TEST_CASE("one rank: NcclDataParallel's cost in the main job's training (printed for scripts/gpu-check)") {
  const auto set = random_images(40 * 256, 12);
  dist::NcclDataParallel data_parallel(one_rank());
  double seconds[2] = {1e30, 1e30};
  for (int round = 0; round < 6; ++round) {  // alternating; the best of 3 each
    const int with = round % 2;
    manual_seed(1);
    auto model = fashion::cnn<Dev>(32, 128);
    optim::Adam<float, Dev> opt({.lr = 2e-3});
    seconds[with] = std::min(seconds[with], fit_seconds(model, opt, set, 256, 1, with ? &data_parallel : nullptr));
  }
  const double ratio = seconds[1] / seconds[0];
  std::printf("nccl_one_rank_overhead: %.4f (%.4f s with NcclDataParallel, %.4f s without; 40 steps of 256)\n", ratio,
              seconds[1], seconds[0]);
  CHECK(ratio > 0);
}

int main(int argc, char** argv) { return device_test::run(argc, argv, "test_cuda_nccl"); }
