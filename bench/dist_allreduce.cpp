// The data-parallel gradient all-reduce against MPI's own, on the same bytes in the same run:
//
//   mpirun -np 2 build/bench/dist_allreduce [--tensors 8] [--reps 10] [--max-mib 256] [--pack-below-kib 64]
//
// For each size from 1 MiB to 256 MiB, the gradients (float32, split into --tensors tensors of
// equal size) are summed as train::fit does each step, by dist::DataParallel::global_samples and
// sum_gradients with the default options, in two layouts:
//   arena     the gradients in consecutive slots of a GradientArena, as fit computes them: runs
//             of up to 25 MiB are summed in place, one nonblocking all-reduce per run;
//   separate  each gradient a buffer of its own (a caller without an arena): gradients of 64 KiB
//             or more in place, one call each, smaller ones packed into buckets of up to 25 MiB;
// and the same bytes by one blocking MPI_Allreduce. Reported: the median time of --reps calls and
// the bus bandwidth, bytes x 2(n-1)/n / time (NCCL's convention: what each link carries), and
// each layout's ratio to MPI's call. Rank 0 prints one line per size.
#include <tessera/dist/dist.hpp>
#include <tessera/tessera.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace tessera;

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  dist::Environment mpi(argc, argv);
  int tensors = 8, reps = 10;
  std::size_t max_mib = 256;
  dist::DataParallelOptions options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--tensors") tensors = std::atoi(argv[i + 1]);
    else if (a == "--reps") reps = std::atoi(argv[i + 1]);
    else if (a == "--max-mib") max_mib = std::size_t(std::atoll(argv[i + 1]));
    else if (a == "--pack-below-kib") options.pack_below_bytes = std::size_t(std::atoll(argv[i + 1])) << 10;
  }
  dist::Communicator world(mpi);
  const int n = world.size();
  if (world.rank() == 0) {
    std::printf("%d processes, %d gradient tensors per size, %d calls each (median); bus bandwidth = bytes x 2(n-1)/n / time\n",
                n, tensors, reps);
    std::printf("%10s  %14s %9s  %14s %9s  %14s %9s  %7s %7s\n", "bytes", "arena", "bus GB/s", "separate", "bus GB/s",
                "MPI_Allreduce", "bus GB/s", "arena", "separ.");
  }
  for (std::size_t mib = 1; mib <= max_mib; mib *= 2) {
    const std::size_t bytes = mib << 20, count = bytes / sizeof(float), each = count / std::size_t(tensors);
    // separate: one vector per gradient.
    std::vector<std::vector<float>> grads(std::size_t(tensors), std::vector<float>(each, 1.0f));
    std::vector<train::Buffer> separate;
    for (int t = 0; t < tensors; ++t) {
      separate.push_back({grads[std::size_t(t)].data(), each, train::Buffer::Kind::float32, "g" + std::to_string(t)});
    }
    // arena: the slots of parameters of the same sizes, joined as fit joins them.
    std::vector<Tensor<float, 1>> parameters;
    for (int t = 0; t < tensors; ++t) parameters.push_back(ones<float>({index_t(each)}));
    GradientArena arena;
    arena.begin_layout();
    for (const auto& p : parameters) arena.add(p);
    arena.end_layout();
    std::vector<Tensor<float, 1>> slots;
    std::vector<train::Buffer> joined;
    for (int t = 0; t < tensors; ++t) {
      slots.push_back(*arena.slot_of(parameters[std::size_t(t)]));
      slots.back().fill(1.0f);
      joined.push_back({slots.back().data(), each, train::Buffer::Kind::float32, "g" + std::to_string(t)});
    }
    for (int t = 0; t + 1 < tensors; ++t)
      joined[std::size_t(t)].joined_with_next =
          arena.adjacent(joined[std::size_t(t)].data, joined[std::size_t(t) + 1].data);
    dist::DataParallel dp_arena(world, options), dp_separate(world, options);
    std::vector<float> raw(count, 1.0f);
    std::vector<double> in_arena, apart, theirs;
    const auto timed = [&](const auto& f) {
      world.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      f();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    for (int r = -1; r < reps; ++r) {  // r = -1: warm-up (plans the buckets, touches the pages)
      const double a = timed([&] {
        dp_arena.global_samples(32, r);
        dp_arena.sum_gradients(joined, r);
      });
      const double s = timed([&] {
        dp_separate.global_samples(32, r);
        dp_separate.sum_gradients(separate, r);
      });
      const double m =
          timed([&] { MPI_Allreduce(MPI_IN_PLACE, raw.data(), int(count), MPI_FLOAT, MPI_SUM, world.handle()); });
      if (r >= 0) {
        in_arena.push_back(a);
        apart.push_back(s);
        theirs.push_back(m);
      }
    }
    // The slowest rank's median decides.
    double times[3] = {median(in_arena), median(apart), median(theirs)};
    MPI_Allreduce(MPI_IN_PLACE, times, 3, MPI_DOUBLE, MPI_MAX, world.handle());
    const double factor = 2.0 * (n - 1) / n * double(bytes) / 1e9;
    if (world.rank() == 0) {
      std::printf("%7zu MiB  %11.3f ms %9.2f  %11.3f ms %9.2f  %11.3f ms %9.2f  %6.0f%% %6.0f%%\n", mib, times[0] * 1e3,
                  factor / times[0], times[1] * 1e3, factor / times[1], times[2] * 1e3, factor / times[2],
                  100.0 * times[2] / times[0], 100.0 * times[2] / times[1]);
    }
  }
  return 0;
}
