// Data-parallel training over MPI: the strategy train::fit uses when given `.distributed`.
//
//   dist::Environment mpi(argc, argv);
//   dist::Communicator world(mpi);
//   dist::DataParallel data_parallel(world);
//   data::DataLoader loader(train, {.batch_size = 256 /* global */, .shuffle = true, .seed = 1,
//                                   .shards = world.size(), .shard = world.rank()});
//   train::fit(model, opt, loss, loader, {.epochs = 2, .distributed = &data_parallel});
//
// Each step, fit asks for the global sample count first and weights its rank's mean loss by
// local / global; the gradients that come out then only need summing over ranks to be the exact
// gradient of the global batch's mean loss, even when ranks hold different numbers of samples
// (dividing each rank's mean by the number of ranks would not be), and no pass over the gradients
// scales them. The sums are nonblocking MPI all-reduces in buckets, in reverse parameter order
// (the layers nearest the loss first; the same order on every rank). fit computes the gradients
// into one GradientArena, and gradients marked joined there (Buffer::joined_with_next) are
// summed in place by runs of up to `bucket_bytes`, one call per run. Otherwise a gradient of at
// least `pack_below_bytes` is a bucket of its own, reduced in place, and smaller ones are packed
// together into buckets of up to `bucket_bytes`, so that biases and norms do not cost a call each.
// Every rank receives the same sums, so the replicas stay bitwise equal. docs/distributed.md has
// more.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "tessera/dist/communicator.hpp"
#include "tessera/train/distributed.hpp"

namespace tessera::dist {

struct DataParallelOptions {
  /// The most gradient bytes packed into one all-reduce (PyTorch DDP's default bucket size).
  std::size_t bucket_bytes = std::size_t{25} << 20;
  /// Gradients this large are reduced in place, in a bucket of their own: on a CPU, copying them
  /// into a bucket and back costs about as much memory traffic as the reduction itself, while a
  /// call costs microseconds (measured in docs/distributed.md).
  std::size_t pack_below_bytes = std::size_t{64} << 10;
};

class DataParallel final : public train::Distributed {
 public:
  explicit DataParallel(Communicator& comm, DataParallelOptions options = {}) : comm_(&comm), options_(options) {
    if (options_.bucket_bytes == 0) throw value_error("dist::DataParallel: bucket_bytes must be positive");
  }

  int rank() const override { return comm_->rank(); }
  int world_size() const override { return comm_->size(); }
  /// Rank 0 writes files (checkpoints, TensorBoard, logs); the others do not.
  bool is_chief() const { return comm_->rank() == 0; }
  Communicator& communicator() const noexcept { return *comm_; }
  const DataParallelOptions& options() const noexcept { return options_; }

  void broadcast(const std::vector<train::Buffer>& buffers) override {
    check_layout(buffers, "broadcast");
    std::vector<MPI_Request> requests;
    for (const auto& b : buffers) {
      auto r = comm_->ibcast(b.data, b.count, detail::mpi_type(b.kind), 0);
      requests.insert(requests.end(), r.begin(), r.end());
    }
    comm_->wait(std::move(requests), {"MPI_Ibcast (rank 0's state)"});
  }

  double global_samples(index_t local_samples, std::int64_t step) override {
    if (local_samples < 0) throw value_error("dist::DataParallel: negative sample count");
    double samples = static_cast<double>(local_samples);
    comm_->wait(comm_->iallreduce(&samples, 1, MPI_DOUBLE, MPI_SUM), {"MPI_Iallreduce (the global sample count)", step});
    if (!(samples > 0)) throw value_error("dist::DataParallel: no rank had samples at step " + std::to_string(step));
    return samples;
  }

  void sum_gradients(const std::vector<train::Buffer>& gradients, std::int64_t step) override {
    const auto start = std::chrono::steady_clock::now();
    for (const auto& g : gradients) {
      if (g.kind != train::Buffer::Kind::float32 && g.kind != train::Buffer::Kind::float64) {
        throw value_error("dist::DataParallel: gradient " + g.name + " is not float32 or float64");
      }
    }
    plan_buckets(gradients);
    const int nb = static_cast<int>(buckets_.size());
    std::vector<std::vector<MPI_Request>> requests(buckets_.size());
    for (int k = 0; k < nb; ++k) {
      Bucket& b = buckets_[std::size_t(k)];
      if (b.packed()) pack(b, gradients);
      requests[std::size_t(k)] = comm_->iallreduce(b.data(gradients), b.count, detail::mpi_type(b.kind), MPI_SUM);
      for (int j = 0; j < k; ++j) comm_->test(requests[std::size_t(j)]);  // progress the earlier buckets meanwhile
    }
    for (int k = 0; k < nb; ++k) {
      comm_->wait(std::move(requests[std::size_t(k)]), {"MPI_Iallreduce (gradients)", step, k, nb});
      if (buckets_[std::size_t(k)].packed()) unpack(buckets_[std::size_t(k)], gradients);
    }
    last_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  void sum(std::vector<double>& values) override {
    comm_->wait(comm_->iallreduce(values.data(), values.size(), MPI_DOUBLE, MPI_SUM), {"MPI_Iallreduce (metrics)"});
  }

  /// How the last step's gradients were split, and how long summing them took.
  std::size_t buckets() const noexcept { return buckets_.size(); }
  std::size_t packed_buckets() const noexcept {
    std::size_t n = 0;
    for (const auto& b : buckets_) n += b.packed() ? 1 : 0;
    return n;
  }
  double last_sum_seconds() const noexcept { return last_seconds_; }

 private:
  /// Gradients (indices, in reverse order) of one element type summed by one call: in place (one
  /// gradient, or a run of joined ones from `count` elements at the lowest one's data), or several
  /// packed into `storage`.
  struct Bucket {
    train::Buffer::Kind kind;
    bool pack = false;
    std::vector<std::size_t> members;
    std::size_t count = 0;
    std::vector<unsigned char> storage;
    bool packed() const { return pack; }
    void* data(const std::vector<train::Buffer>& g) {
      return pack ? static_cast<void*>(storage.data()) : g[members.back()].data;
    }
  };

  static void pack(Bucket& b, const std::vector<train::Buffer>& g) {
    const std::size_t size = train::Buffer::element_size(b.kind);
    std::size_t offset = 0;
    for (const std::size_t m : b.members) {
      std::memcpy(b.storage.data() + offset * size, g[m].data, g[m].count * size);
      offset += g[m].count;
    }
  }
  static void unpack(const Bucket& b, const std::vector<train::Buffer>& g) {
    const std::size_t size = train::Buffer::element_size(b.kind);
    std::size_t offset = 0;
    for (const std::size_t m : b.members) {
      std::memcpy(g[m].data, b.storage.data() + offset * size, g[m].count * size);
      offset += g[m].count;
    }
  }

  /// The bytes between g[i]'s end and g[i + 1]'s start when g[i] is joined to it, else -1.
  /// Checked: the same element type, and the next buffer starts less than 64 bytes after.
  static std::int64_t joined_gap(const std::vector<train::Buffer>& g, std::size_t i) {
    if (i + 1 >= g.size() || !g[i].joined_with_next) return -1;
    const auto& a = g[i];
    const auto& b = g[i + 1];
    const auto* end = static_cast<const unsigned char*>(a.data) + a.count * train::Buffer::element_size(a.kind);
    const auto* next = static_cast<const unsigned char*>(b.data);
    if (a.kind != b.kind || next < end || next - end >= 64) {
      throw value_error("dist::DataParallel: gradient " + a.name + " is marked joined with " + b.name +
                        ", but they are not adjacent buffers of one element type");
    }
    return next - end;
  }
  static bool joined(const std::vector<train::Buffer>& g, std::size_t i) { return joined_gap(g, i) >= 0; }

  /// The elements from g[lo]'s first to g[hi]'s last (a run of joined gradients, padding included).
  static std::size_t span(const std::vector<train::Buffer>& g, std::size_t lo, std::size_t hi) {
    const std::size_t size = train::Buffer::element_size(g[lo].kind);
    const auto bytes = static_cast<const unsigned char*>(g[hi].data) + g[hi].count * size -
                       static_cast<const unsigned char*>(g[lo].data);
    return static_cast<std::size_t>(bytes) / size;
  }

  /// Buckets for these gradients: planned once, again only when the gradients change.
  void plan_buckets(const std::vector<train::Buffer>& g) {
    // The gaps too: a run's bucket spans them, so the same signature gives the same calls.
    std::vector<std::tuple<std::size_t, train::Buffer::Kind, std::int64_t>> signature;
    for (std::size_t i = 0; i < g.size(); ++i) signature.emplace_back(g[i].count, g[i].kind, joined_gap(g, i));
    if (signature == signature_) return;
    check_layout(g, "gradients");
    signature_ = signature;
    buckets_.clear();
    std::size_t open_f32 = SIZE_MAX, open_f64 = SIZE_MAX;  // the packed bucket being filled, per type
    for (std::size_t i = g.size(); i-- > 0;) {
      const auto& x = g[i];
      const std::size_t size = train::Buffer::element_size(x.kind), bytes = x.count * size;
      if (i > 0 && joined(g, i - 1)) {
        // A run of joined gradients, taken from its end down while it fits in one bucket.
        Bucket b{x.kind, false, {i}, x.count, {}};
        while (i > 0 && joined(g, i - 1) && span(g, i - 1, b.members.front()) * size <= options_.bucket_bytes) {
          b.members.push_back(--i);
          b.count = span(g, i, b.members.front());
        }
        if (b.members.size() > 1 || bytes >= options_.pack_below_bytes) {
          buckets_.push_back(std::move(b));
          continue;
        }
        // (one small gradient whose run continues past the bucket's limit: packed below)
      }
      if (bytes >= options_.pack_below_bytes) {
        buckets_.push_back(Bucket{x.kind, false, {i}, x.count, {}});
        continue;
      }
      std::size_t& open = x.kind == train::Buffer::Kind::float32 ? open_f32 : open_f64;
      if (open == SIZE_MAX || (buckets_[open].count * size + bytes > options_.bucket_bytes)) {
        open = buckets_.size();
        buckets_.push_back(Bucket{x.kind, true, {}, 0, {}});
      }
      buckets_[open].members.push_back(i);
      buckets_[open].count += x.count;
    }
    for (auto& b : buckets_) {
      if (b.packed()) b.storage.resize(b.count * train::Buffer::element_size(b.kind));
    }
  }

  /// All ranks must exchange the same buffers (names, sizes, types): checked against rank 0 with
  /// a hash, and every rank throws together when one differs. Device memory is refused: MPI is
  /// given host memory (device tensors reach it as host copies; NcclDataParallel sums them in place).
  void check_layout(const std::vector<train::Buffer>& buffers, const char* what) {
    for (const auto& b : buffers) {
      if (b.memory != train::Buffer::Memory::host) {
        throw value_error("dist::DataParallel: buffer " + b.name +
                          " is in device memory, which MPI is not given (use dist::NcclDataParallel)");
      }
    }
    LayoutHash hash;
    for (std::size_t i = 0; i < buffers.size(); ++i) {
      hash.add(buffers[i]);
      const std::int64_t gap = joined_gap(buffers, i);
      hash.mix(&gap, sizeof gap);
    }
    const std::uint64_t h = hash.value();
    std::uint64_t zero = h;
    comm_->wait(comm_->ibcast(&zero, 1, MPI_UINT64_T, 0), {"MPI_Ibcast (layout check)"});
    int differs = zero != h ? 1 : 0;
    comm_->wait(comm_->iallreduce(&differs, 1, MPI_INT, MPI_MAX), {"MPI_Iallreduce (layout check)"});
    if (differs) {
      throw dist_error(std::string("dist::DataParallel: the ") + what +
                       " differ between ranks (names, sizes, element types or how they are joined): every rank "
                       "must build the same model and optimizer (rank " +
                       std::to_string(comm_->rank()) + (zero != h ? " differs from rank 0)" : " agrees with rank 0)"));
    }
  }

  Communicator* comm_;
  DataParallelOptions options_;
  std::vector<std::tuple<std::size_t, train::Buffer::Kind, std::int64_t>> signature_;
  std::vector<Bucket> buckets_;
  double last_seconds_ = 0;
};

}  // namespace tessera::dist
