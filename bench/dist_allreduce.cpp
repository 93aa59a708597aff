// The data-parallel gradient all-reduce against MPI's own, on the same bytes in the same run:
//
//   mpirun -np 2 build/bench/dist_allreduce [--tensors 8] [--reps 10] [--max-mib 256] [--pack-below-kib 64]
//
// For each size from 1 MiB to 256 MiB, the gradients (float32, split into --tensors tensors of
// equal size) are summed as train::fit does each step, by dist::DataParallel::global_samples and
// sum_gradients (the default options: gradients of 64 KiB or more in place, smaller ones packed
// into buckets of up to 25 MiB, a nonblocking all-reduce per bucket), and the same bytes by one
// blocking MPI_Allreduce. Reported: the median time of --reps calls and the
// bus bandwidth, bytes x 2(n-1)/n / time (NCCL's convention: what each link carries), and their
// ratio. Rank 0 prints one line per size.
#include <tessera/dist/dist.hpp>

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
  dist::DataParallel dp(world, options);
  const int n = world.size();
  if (world.rank() == 0) {
    std::printf("%d processes, %d gradient tensors per size, %d calls each (median); bus bandwidth = bytes x 2(n-1)/n / time\n",
                n, tensors, reps);
    std::printf("%10s  %14s %12s  %14s %12s  %7s\n", "bytes", "DataParallel", "bus GB/s", "MPI_Allreduce", "bus GB/s", "ratio");
  }
  for (std::size_t mib = 1; mib <= max_mib; mib *= 2) {
    const std::size_t bytes = mib << 20, count = bytes / sizeof(float);
    std::vector<std::vector<float>> grads(std::size_t(tensors), std::vector<float>(count / std::size_t(tensors), 1.0f));
    std::vector<train::HostBuffer> views;
    for (int t = 0; t < tensors; ++t) {
      views.push_back({grads[std::size_t(t)].data(), grads[std::size_t(t)].size(), train::HostBuffer::Kind::float32,
                       "g" + std::to_string(t)});
    }
    std::vector<float> raw(count, 1.0f);
    std::vector<double> ours, theirs;
    for (int r = -1; r < reps; ++r) {  // r = -1: warm-up (plans the buckets, touches the pages)
      world.barrier();
      auto t0 = std::chrono::steady_clock::now();
      dp.global_samples(32, r);
      dp.sum_gradients(views, r);
      const double a = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      world.barrier();
      t0 = std::chrono::steady_clock::now();
      MPI_Allreduce(MPI_IN_PLACE, raw.data(), int(count), MPI_FLOAT, MPI_SUM, world.handle());
      const double b = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (r >= 0) {
        ours.push_back(a);
        theirs.push_back(b);
      }
    }
    // The slowest rank's median decides.
    double times[2] = {median(ours), median(theirs)};
    MPI_Allreduce(MPI_IN_PLACE, times, 2, MPI_DOUBLE, MPI_MAX, world.handle());
    const double factor = 2.0 * (n - 1) / n * double(bytes) / 1e9;
    if (world.rank() == 0) {
      std::printf("%7zu MiB  %11.3f ms %12.2f  %11.3f ms %12.2f  %6.0f%%\n", mib, times[0] * 1e3, factor / times[0], times[1] * 1e3,
                  factor / times[1], 100.0 * times[1] / times[0]);
    }
  }
  return 0;
}
