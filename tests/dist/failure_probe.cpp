// Data-parallel training (train::fit with dist::DataParallel) on a toy problem, in which one rank
// leaves on purpose at a given step, for failure_check.sh:
//
//   dist_failure_probe kill  RANK STEP   # that rank kills itself with SIGKILL (no watchdog: the
//                                        # launcher alone must end the job)
//   dist_failure_probe stall RANK STEP   # that rank sleeps for a minute in that step's forward pass,
//                                        # while the others wait in its gradient all-reduce; the
//                                        # watchdog times out after 2 s
//
// Prints "probe: rank R killed at <unix time>" before the kill, so the caller can time the job's end.
#include <tessera/dist/dist.hpp>
#include <tessera/tessera.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace tessera;

int main(int argc, char** argv) {
  dist::Environment mpi(argc, argv);
  if (argc != 4) {
    std::fprintf(stderr, "usage: dist_failure_probe kill|stall RANK STEP\n");
    return 2;
  }
  const std::string mode = argv[1];
  const int target = std::atoi(argv[2]);
  const std::int64_t at = std::atoll(argv[3]);
  dist::Communicator world(mpi, /*timeout_seconds=*/mode == "kill" ? 0 : 2);
  dist::DataParallel dp(world);

  manual_seed(1);
  const index_t n = 40000;
  Generator gen(1);
  const Tensor<float, 2> x = normal<float>(gen, {n, 8}, 0.0f, 1.0f);
  Tensor<std::int64_t, 1> y = zeros<std::int64_t>({n});
  for (index_t i = 0; i < n; ++i) y(i) = x(i, 0) > 0 ? 1 : 0;
  const data::TensorDataset set(x, y);
  data::DataLoader loader(set, {.batch_size = 8, .shuffle = true, .seed = 2, .shards = world.size(), .shard = world.rank()});
  auto model = nn::sequential(nn::Linear<float>(8, 16), nn::ReLU{}, nn::Linear<float>(16, 2));
  optim::SGD<float> opt({.lr = 0.01});

  std::int64_t step = 0;  // the step in progress
  train::LambdaCallback leave;
  leave.batch_end = [&](train::TrainingContext& ctx, const train::Logs&) {
    step = ctx.step;
    if (mode != "kill" || world.rank() != target || ctx.step != at) return;
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::printf("probe: rank %d killed at %.3f\n", world.rank(), now);
    std::fflush(stdout);
    raise(SIGKILL);
  };
  const auto loss = [&](const auto& logits, const auto& labels) {
    if (mode == "stall" && world.rank() == target && step == at) {
      std::printf("probe: rank %d stalls in step %ld\n", world.rank(), long(at));
      std::fflush(stdout);
      sleep(60);
    }
    return nn::cross_entropy(logits, labels);
  };
  train::fit(model, opt, loss, loader, {.epochs = 1, .verbose = 0, .callbacks = {&leave}, .distributed = &dp});
  std::printf("probe: rank %d finished training: nobody left\n", world.rank());
  return 0;
}
