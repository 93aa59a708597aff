// Collectives on CUDA tensors over NCCL, and data-parallel training on GPUs (train::fit's
// `.distributed`): the GPU counterpart of communicator.hpp and data_parallel.hpp.
//
//   dist::Environment mpi(argc, argv);                    // mpirun starts one process per GPU
//   dist::Communicator world(mpi);
//   dist::NcclCommunicator gpus(world, mpi.local_rank()); // rank 0's NCCL id, broadcast over MPI
//   dist::NcclDataParallel data_parallel(gpus);
//   train::fit(model, opt, loss, device_batches, {.epochs = 2, .distributed = &data_parallel});
//
// MPI only starts the processes and carries the NCCL id; every collective after that is NCCL's,
// on device memory. The communicator works on a stream of its own: it waits for the work already
// issued on tessera's stream (cuda::stream()), and tessera's later work waits for the collective,
// both on the device. The host then waits too, polling, so that an error NCCL reports later
// (a peer that died, a network error: ncclCommGetAsyncError) aborts the communicator and becomes a
// `dist_error` naming the call and the rank, and a wait longer than the timeout (a rank that stopped
// participating) ends the process with a message naming the call, the training step and the
// bucket. Under mpirun one process ending that way ends the job.
//
// Needs the CUDA backend and NCCL (link tessera::nccl; no MPI unless the communicator is made over
// an MPI one). NCCL allows one rank per GPU. docs/distributed.md has more.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/backend/cuda/device.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/dist/collective.hpp"
#include "tessera/train/distributed.hpp"

namespace tessera::dist {

namespace detail {

/// Throws dist_error for a failed NCCL call, naming the call, the rank, NCCL's description and,
/// when there is a communicator, its last error message.
inline void nccl_check(ncclResult_t result, const char* call, int rank, ncclComm_t comm = nullptr) {
  if (result == ncclSuccess) return;
  std::string text = std::string(call) + " failed on rank " + std::to_string(rank) + ": " + ncclGetErrorString(result);
  if (comm) {
    const char* last = ncclGetLastError(comm);
    if (last && *last) text += " (" + std::string(last) + ")";
  }
  throw dist_error(text);
}

template <class T>
ncclDataType_t nccl_type() {
  if constexpr (std::is_same_v<T, float>)
    return ncclFloat32;
  else if constexpr (std::is_same_v<T, double>)
    return ncclFloat64;
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return ncclInt32;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return ncclInt64;
  else
    static_assert(sizeof(T) == 0, "tessera::dist: tensors of float, double, int32 or int64 only");
}

inline ncclDataType_t nccl_type(train::Buffer::Kind k) {
  switch (k) {
    case train::Buffer::Kind::float32:
      return ncclFloat32;
    case train::Buffer::Kind::float64:
      return ncclFloat64;
    case train::Buffer::Kind::int32:
      return ncclInt32;
    case train::Buffer::Kind::int64:
      return ncclInt64;
  }
  return ncclUint8;
}

/// Offsets in a staging buffer start at multiples of this (cudaMalloc's alignment, and NCCL's
/// fastest).
inline constexpr std::size_t staging_alignment = 256;
inline std::size_t align_up(std::size_t n) {
  return (n + staging_alignment - 1) / staging_alignment * staging_alignment;
}

}  // namespace detail

/// One rank of a group of GPUs that exchange tensors through NCCL.
class NcclCommunicator {
 public:
  /// A new id for a communicator: made by one rank (rank 0) and given to every other one.
  static ncclUniqueId unique_id() {
    ncclUniqueId id;
    detail::nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId", 0);
    return id;
  }

  /// Rank `rank` of `size`, on GPU `device` (made current for this thread), joining the
  /// communicator of `id` (every rank passes the same id; ncclCommInitRank returns once all have
  /// joined). `timeout_seconds`: how long a collective may wait for the other ranks (0: forever).
  /// Make it before the process's first CUDA tensor: tessera's stream belongs to the GPU that is
  /// current when it is first used.
  NcclCommunicator(const ncclUniqueId& id, int rank, int size, int device, double timeout_seconds = 300)
      : rank_(rank), size_(size), device_(device), timeout_(timeout_seconds) {
    if (size < 1 || rank < 0 || rank >= size) {
      throw value_error("dist::NcclCommunicator: rank " + std::to_string(rank) + " of " + std::to_string(size) +
                        " (a rank in [0, size) of a size >= 1)");
    }
    if (!(timeout_seconds >= 0)) throw value_error("dist::NcclCommunicator: the timeout must be >= 0 seconds");
    const int devices = tessera::cuda::device_count();
    if (device < 0 || device >= devices) {
      throw value_error("dist::NcclCommunicator: rank " + std::to_string(rank) + " was given GPU " +
                        std::to_string(device) + ", but this process sees " + std::to_string(devices) + " GPU(s)");
    }
    TESSERA_CUDA_CHECK(cudaSetDevice(device));
    detail::nccl_check(ncclCommInitRank(&comm_, size, id, rank), "ncclCommInitRank", rank_);
    try {
      TESSERA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      TESSERA_CUDA_CHECK(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming));
    } catch (...) {
      release();
      throw;
    }
  }

  /// Over a host communicator that already joins the same processes (dist::Communicator, MPI):
  /// its rank 0 makes the id and broadcasts it. `HostComm` needs rank(), size() and
  /// broadcast_bytes(data, bytes, root).
  template <class HostComm, class = decltype(std::declval<HostComm&>().broadcast_bytes(nullptr, std::size_t{}, 0))>
  NcclCommunicator(HostComm& world, int device, double timeout_seconds = 300)
      : NcclCommunicator(id_from_rank0(world), world.rank(), world.size(), device, timeout_seconds) {}

  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;
  ~NcclCommunicator() { release(); }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  int device() const noexcept { return device_; }
  /// NCCL's communicator (refused after an abort, which frees it).
  ncclComm_t handle() const {
    require_usable();
    return comm_;
  }
  /// The stream the collectives run on.
  cudaStream_t stream() const noexcept { return stream_; }
  double timeout_seconds() const noexcept { return timeout_; }
  void set_timeout_seconds(double s) {
    if (!(s >= 0)) throw value_error("dist::NcclCommunicator: the timeout must be >= 0 seconds");
    timeout_ = s;
  }

  // ---- on tensors ------------------------------------------------------------------------------

  /// Element-wise sum, mean (NCCL's average; floating-point tensors only, as truncating integers
  /// is rarely meant) or maximum over ranks, in place; the same shape on every rank.
  template <class T, std::size_t R>
  void allreduce(Tensor<T, R, tessera::cuda>& t, ReduceOp op = ReduceOp::sum) {
    if (op == ReduceOp::mean && !std::is_floating_point_v<T>) {
      throw value_error(
          "dist::NcclCommunicator::allreduce: mean of an integer tensor (NCCL would truncate each "
          "element); reduce integers with sum");
    }
    check_same_shape(t.shape(), "allreduce");
    Tensor<T, R, tessera::cuda> c = t.contiguous();
    const ncclRedOp_t nccl_op = op == ReduceOp::sum ? ncclSum : op == ReduceOp::mean ? ncclAvg : ncclMax;
    begin();
    enqueue(ncclAllReduce(c.data(), c.data(), std::size_t(c.size()), detail::nccl_type<T>(), nccl_op, comm_, stream_),
            "ncclAllReduce");
    finish({"ncclAllReduce"});
    if (!t.is_contiguous()) t.assign(c);
  }
  /// Every rank's t becomes rank `root`'s; the same shape on every rank.
  template <class T, std::size_t R>
  void broadcast(Tensor<T, R, tessera::cuda>& t, int root = 0) {
    check_root(root);
    check_same_shape(t.shape(), "broadcast");
    Tensor<T, R, tessera::cuda> c = t.contiguous();
    begin();
    enqueue(ncclBroadcast(c.data(), c.data(), std::size_t(c.size()), detail::nccl_type<T>(), root, comm_, stream_),
            "ncclBroadcast");
    finish({"ncclBroadcast"});
    if (!t.is_contiguous()) t.assign(c);
  }
  /// Every rank's t, concatenated along the first axis in rank order (all of the same shape).
  template <class T, std::size_t R>
  Tensor<T, R, tessera::cuda> allgather(const Tensor<T, R, tessera::cuda>& t) {
    static_assert(R >= 1, "dist::allgather: concatenates along the first axis; a scalar has none");
    check_same_shape(t.shape(), "allgather");
    const Tensor<T, R, tessera::cuda> mine = t.contiguous();
    auto shape = t.shape();
    shape[0] *= size_;
    auto all = Tensor<T, R, tessera::cuda>::uninitialized(shape);
    begin();
    enqueue(ncclAllGather(mine.data(), all.data(), std::size_t(mine.size()), detail::nccl_type<T>(), comm_, stream_),
            "ncclAllGather");
    finish({"ncclAllGather"});
    return all;
  }
  /// Returns once every rank has called it (NCCL has no barrier: an all-reduce of one host value;
  /// device work is not ordered by it).
  void barrier() {
    std::int32_t one = 1;
    allreduce_host(&one, 1, ncclInt32, ncclSum, {"barrier (ncclAllReduce)"});
  }

  // ---- what NcclDataParallel builds on ----------------------------------------------------------

  /// Starts a batch of collectives on device tensors: they will run after the work already issued
  /// on tessera's stream.
  void begin() {
    require_usable();
    TESSERA_CUDA_CHECK(cudaEventRecord(compute_ready_, tessera::cuda::stream()));
    TESSERA_CUDA_CHECK(cudaStreamWaitEvent(stream_, compute_ready_, 0));
  }
  /// Checks the status of an NCCL call that enqueued a collective (aborting the communicator when
  /// it failed: the other ranks' matching calls would wait for it).
  void enqueue(ncclResult_t result, const char* call) {
    if (result == ncclSuccess) return;
    std::string text;
    try {
      detail::nccl_check(result, call, rank_, comm_);
    } catch (const dist_error& e) {
      text = e.what();
    }
    abort_communicator();
    throw dist_error(text);
  }
  /// A point on the communicator's stream: everything enqueued so far. Wait for it with wait().
  std::size_t mark() {
    require_usable();
    if (marks_used_ == marks_.size()) {
      marks_.reserve(marks_.size() + 1);  // no event left behind if this throws
      cudaEvent_t e = nullptr;
      TESSERA_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      marks_.push_back(e);
    }
    TESSERA_CUDA_CHECK(cudaEventRecord(marks_[marks_used_], stream_));
    return marks_used_++;
  }
  /// Waits for a mark, polling: an error NCCL reports meanwhile aborts the communicator and throws
  /// dist_error; past the timeout the process ends with a message naming `site`.
  void wait(std::size_t mark_index, const CallSite& site) {
    require_usable();
    const cudaEvent_t e = marks_.at(mark_index);
    const auto start = std::chrono::steady_clock::now();
    for (unsigned spins = 0;; ++spins) {
      const cudaError_t state = cudaEventQuery(e);
      if (state == cudaSuccess) return;
      if (state != cudaErrorNotReady) {
        (void)cudaGetLastError();
        abort_communicator();
        throw dist_error(std::string(site.what) + " failed on rank " + std::to_string(rank_) + ": " +
                         cudaGetErrorName(state) + ": " + cudaGetErrorString(state));
      }
      ncclResult_t async = ncclSuccess;
      const ncclResult_t asked = ncclCommGetAsyncError(comm_, &async);
      if (asked != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
        std::string text = std::string(site.what) + " failed on rank " + std::to_string(rank_) + ": " +
                           ncclGetErrorString(asked != ncclSuccess ? asked : async);
        const char* last = ncclGetLastError(comm_);
        if (last && *last) text += " (" + std::string(last) + ")";
        abort_communicator();
        throw dist_error(text + "; the communicator was aborted");
      }
      // Yields first (a collective of small buffers ends in microseconds), then sleeps a little so
      // that a long wait does not hold a core.
      if (spins < 4096) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
      if (timeout_ > 0 && spins % 256 == 255) {
        const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (waited > timeout_) watchdog_exit(site, waited);
      }
    }
  }
  /// Ends a batch begun with begin(): tessera's stream waits (on the device) for the collectives,
  /// the host waits (as wait()) for all of them, and the marks are free again.
  void finish(const CallSite& site) {
    const std::size_t last = mark();
    TESSERA_CUDA_CHECK(cudaStreamWaitEvent(tessera::cuda::stream(), marks_[last], 0));
    wait(last, site);
    marks_used_ = 0;
  }
  /// The same for collectives on host values only (staged): no ordering with tessera's stream, so
  /// that the host does not wait for the model's work to ask for a sample count.
  void finish_host_only(const CallSite& site) {
    const std::size_t last = mark();
    wait(last, site);
    marks_used_ = 0;
  }
  /// Device memory of at least `bytes` for host values on their way through a collective
  /// (grown as needed; valid until the next call).
  void* staging(std::size_t bytes) {
    require_usable();
    if (bytes > staging_bytes_) {
      if (staging_) tessera::cuda::deallocate(staging_, staging_bytes_);
      staging_ = nullptr;
      staging_bytes_ = 0;
      staging_ = tessera::cuda::allocate(bytes);
      staging_bytes_ = bytes;
      // The pool hands out blocks in the order of tessera's stream, where the block's last user
      // may still be running: this stream waits for that work before it first writes the block.
      TESSERA_CUDA_CHECK(cudaEventRecord(compute_ready_, tessera::cuda::stream()));
      TESSERA_CUDA_CHECK(cudaStreamWaitEvent(stream_, compute_ready_, 0));
    }
    return staging_;
  }
  /// Copies on the communicator's stream, between host memory and the staging buffer.
  void copy_to_device(void* device_dst, const void* host_src, std::size_t bytes) {
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  /// Returns when the bytes have arrived (called after the collective was waited for, so it never
  /// waits on another rank).
  void copy_to_host(void* host_dst, const void* device_src, std::size_t bytes) {
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, stream_));
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  /// An all-reduce of n host values (metrics, counters) through the staging buffer.
  void allreduce_host(void* data, std::size_t n, ncclDataType_t type, ncclRedOp_t op, const CallSite& site) {
    const std::size_t bytes = n * type_size(type);
    void* device = staging(bytes);
    copy_to_device(device, data, bytes);
    enqueue(ncclAllReduce(device, device, n, type, op, comm_, stream_), "ncclAllReduce");
    finish_host_only(site);
    copy_to_host(data, device, bytes);
  }
  /// Every rank's `bytes` bytes at host address `data` become rank `root`'s.
  void broadcast_host(void* data, std::size_t bytes, int root, const CallSite& site) {
    check_root(root);
    void* device = staging(bytes);
    copy_to_device(device, data, bytes);
    enqueue(ncclBroadcast(device, device, bytes, ncclUint8, root, comm_, stream_), "ncclBroadcast");
    finish_host_only(site);
    copy_to_host(data, device, bytes);
  }

  static std::size_t type_size(ncclDataType_t type) {
    switch (type) {
      case ncclInt8:
      case ncclUint8:
        return 1;
      case ncclFloat16:
      case ncclBfloat16:
        return 2;
      case ncclInt32:
      case ncclUint32:
      case ncclFloat32:
        return 4;
      default:
        return 8;
    }
  }

 private:
  template <class HostComm>
  static ncclUniqueId id_from_rank0(HostComm& world) {
    // Rank 0 says whether it could make an id, so that every rank throws together when it could not.
    struct {
      std::int32_t made;
      ncclUniqueId id;
    } message{};
    std::string why;
    if (world.rank() == 0) {
      try {
        message.id = unique_id();
        message.made = 1;
      } catch (const dist_error& e) {
        why = e.what();
      }
    }
    world.broadcast_bytes(&message, sizeof message, 0);
    if (!message.made) {
      throw dist_error(why.empty()
                           ? "dist::NcclCommunicator: rank 0 could not make an NCCL id (ncclGetUniqueId failed there)"
                           : why);
    }
    return message.id;
  }

  void check_root(int root) const {
    if (root < 0 || root >= size_) {
      throw value_error("dist: root rank " + std::to_string(root) + " outside [0, " + std::to_string(size_) + ")");
    }
  }

  void require_usable() const {
    if (aborted_) {
      throw dist_error("dist::NcclCommunicator on rank " + std::to_string(rank_) +
                       ": the communicator was aborted after an earlier error; make a new one");
    }
  }

  /// Every rank's shape must equal rank 0's; all ranks throw together when one differs.
  template <std::size_t R>
  void check_same_shape(const Shape<R>& shape, const char* who) {
    std::int64_t mine[R + 1] = {}, zero[R + 1] = {};
    for (std::size_t i = 0; i < R; ++i) mine[i] = zero[i] = shape[i];
    broadcast_host(zero, sizeof zero, 0, {"ncclBroadcast (shape check)"});
    std::int32_t differs = 0;
    for (std::size_t i = 0; i < R; ++i) differs |= zero[i] != mine[i] ? 1 : 0;
    allreduce_host(&differs, 1, ncclInt32, ncclMax, {"ncclAllReduce (shape check)"});
    if (differs) {
      auto text = [](const std::int64_t* s) {
        std::string out = "[";
        for (std::size_t i = 0; i < R; ++i) out += (i ? ", " : "") + std::to_string(s[i]);
        return out + "]";
      };
      throw dist_error(std::string("dist::") + who + ": the tensors differ in shape between ranks (rank " +
                       std::to_string(rank_) + " has " + text(mine) + ", rank 0 " + text(zero) + ")");
    }
  }

  /// Aborts the communicator (its pending kernels end) and, unless the process is about to end,
  /// waits for the stream: memory the abandoned work used goes back to the pool only after it.
  void abort_communicator(bool drain_stream = true) noexcept {
    if (comm_ && !aborted_) {
      (void)ncclCommAbort(comm_);
      aborted_ = true;
      if (drain_stream && stream_) {
        (void)cudaStreamSynchronize(stream_);
        (void)cudaGetLastError();
      }
    }
  }

  [[noreturn]] void watchdog_exit(const CallSite& site, double waited) noexcept {
    std::string where = site.what;
    if (site.step >= 0) where += ", training step " + std::to_string(site.step);
    if (site.bucket >= 0)
      where += ", gradient bucket " + std::to_string(site.bucket + 1) + " of " + std::to_string(site.buckets);
    std::fprintf(stderr,
                 "tessera::dist watchdog: rank %d waited %.1f s (timeout %.1f s) in %s on GPU %d; another rank died or "
                 "stopped participating. Aborting the NCCL communicator and ending this process.\n",
                 rank_, waited, timeout_, where.c_str(), device_);
    std::fflush(stdout);
    std::fflush(stderr);
    abort_communicator(/*drain_stream=*/false);
    std::_Exit(3);  // under mpirun, a process that ends with a non-zero status ends the job
  }

  void release() noexcept {
    for (cudaEvent_t e : marks_) (void)cudaEventDestroy(e);
    marks_.clear();
    if (compute_ready_) (void)cudaEventDestroy(compute_ready_);
    if (staging_) tessera::cuda::deallocate(staging_, staging_bytes_);
    staging_ = nullptr;
    if (comm_) {
      if (aborted_) {
        // ncclCommAbort already freed it
      } else {
        (void)ncclCommDestroy(comm_);
      }
      comm_ = nullptr;
    }
    if (stream_) (void)cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }

  int rank_, size_, device_;
  double timeout_;
  ncclComm_t comm_ = nullptr;
  bool aborted_ = false;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t compute_ready_ = nullptr;
  std::vector<cudaEvent_t> marks_;
  std::size_t marks_used_ = 0;
  void* staging_ = nullptr;
  std::size_t staging_bytes_ = 0;
};

/// How NcclDataParallel groups gradients.
struct NcclDataParallelOptions {
  /// The most gradient bytes summed by one group of NCCL calls (PyTorch DDP's default bucket size).
  /// NCCL launches a group's calls together, so small gradients cost no call of their own and need
  /// no packing.
  std::size_t bucket_bytes = std::size_t{25} << 20;
};

/// Data-parallel training over NCCL: dist::DataParallel's contract (docs/distributed.md) with the
/// gradients summed where they are, in device memory. Host values (metrics, counters, the sample
/// count) go through the communicator's staging buffer.
class NcclDataParallel final : public train::Distributed {
 public:
  explicit NcclDataParallel(NcclCommunicator& comm, NcclDataParallelOptions options = {})
      : comm_(&comm), options_(options) {
    if (options_.bucket_bytes == 0) throw value_error("dist::NcclDataParallel: bucket_bytes must be positive");
  }

  int rank() const override { return comm_->rank(); }
  int world_size() const override { return comm_->size(); }
  bool takes_device_memory() const override { return true; }
  /// Rank 0 writes files (checkpoints, TensorBoard, logs); the others do not.
  bool is_chief() const { return comm_->rank() == 0; }
  NcclCommunicator& communicator() const noexcept { return *comm_; }

  void broadcast(const std::vector<train::Buffer>& buffers) override {
    check_layout(buffers, "broadcast");
    run(
        buffers,
        [&](void* data, const train::Buffer& b) {
          return ncclBroadcast(data, data, b.bytes(), ncclUint8, 0, comm_->handle(), comm_->stream());
        },
        "ncclBroadcast", {"ncclBroadcast (rank 0's state)"}, -1);
  }

  double global_samples(index_t local_samples, std::int64_t step) override {
    if (local_samples < 0) throw value_error("dist::NcclDataParallel: negative sample count");
    double samples = static_cast<double>(local_samples);
    comm_->allreduce_host(&samples, 1, ncclFloat64, ncclSum, {"ncclAllReduce (the global sample count)", step});
    if (!(samples > 0))
      throw value_error("dist::NcclDataParallel: no rank had samples at step " + std::to_string(step));
    return samples;
  }

  void sum_gradients(const std::vector<train::Buffer>& gradients, std::int64_t step) override {
    const auto start = std::chrono::steady_clock::now();
    for (const auto& g : gradients) {
      if (g.kind != train::Buffer::Kind::float32 && g.kind != train::Buffer::Kind::float64) {
        throw value_error("dist::NcclDataParallel: gradient " + g.name + " is not float32 or float64");
      }
    }
    std::vector<std::tuple<std::size_t, train::Buffer::Kind>> signature;
    for (const auto& g : gradients) signature.emplace_back(g.count, g.kind);
    if (signature != signature_) {
      check_layout(gradients, "gradients");
      signature_ = std::move(signature);
    }
    buckets_ = run(
        gradients,
        [&](void* data, const train::Buffer& g) {
          return ncclAllReduce(data, data, g.count, detail::nccl_type(g.kind), ncclSum, comm_->handle(),
                               comm_->stream());
        },
        "ncclAllReduce", {"ncclAllReduce (gradients)", step}, step);
    last_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  void sum(std::vector<double>& values) override {
    if (values.empty()) return;
    comm_->allreduce_host(values.data(), values.size(), ncclFloat64, ncclSum, {"ncclAllReduce (metrics)"});
  }

  /// How many groups of calls the last sum_gradients made, and how long it took.
  std::size_t buckets() const noexcept { return buckets_; }
  double last_sum_seconds() const noexcept { return last_seconds_; }

 private:
  /// `call(data, buffer)` for every buffer, in reverse order (the layers nearest the loss first),
  /// grouped in buckets of at most bucket_bytes; device buffers in place, host ones through the
  /// staging buffer. Each bucket is waited for in turn, the watchdog naming it. Returns the number
  /// of buckets.
  template <class Call>
  std::size_t run(const std::vector<train::Buffer>& buffers, Call&& call, const char* name, CallSite site,
                  std::int64_t step) {
    std::vector<std::size_t> staged_at(buffers.size(), 0);
    std::size_t staged_bytes = 0;
    for (std::size_t i = 0; i < buffers.size(); ++i) {
      if (buffers[i].memory == train::Buffer::Memory::host) {
        staged_at[i] = staged_bytes;
        staged_bytes += detail::align_up(buffers[i].bytes());
      }
    }
    auto* staging = static_cast<unsigned char*>(staged_bytes ? comm_->staging(staged_bytes) : nullptr);
    auto device_data = [&](std::size_t i) -> void* {
      return buffers[i].memory == train::Buffer::Memory::host ? staging + staged_at[i] : buffers[i].data;
    };
    for (std::size_t i = 0; i < buffers.size(); ++i) {
      if (buffers[i].memory == train::Buffer::Memory::host) {
        comm_->copy_to_device(device_data(i), buffers[i].data, buffers[i].bytes());
      }
    }
    comm_->begin();  // the device buffers' values come from tessera's stream
    // Buckets: runs of buffers (from the last) of at most bucket_bytes, or one larger buffer.
    std::vector<std::size_t> marks;
    std::size_t i = buffers.size();
    while (i > 0) {
      std::size_t bytes = 0, first = i;
      while (first > 0 && (first == i || bytes + buffers[first - 1].bytes() <= options_.bucket_bytes)) {
        bytes += buffers[--first].bytes();
      }
      comm_->enqueue(ncclGroupStart(), "ncclGroupStart");
      ncclResult_t result = ncclSuccess;
      for (std::size_t k = i; k-- > first && result == ncclSuccess;) result = call(device_data(k), buffers[k]);
      const ncclResult_t ended = ncclGroupEnd();
      comm_->enqueue(result, name);
      comm_->enqueue(ended, "ncclGroupEnd");
      marks.push_back(comm_->mark());
      i = first;
    }
    for (std::size_t k = 0; k < marks.size(); ++k) {
      CallSite bucket = site;
      bucket.step = step;
      bucket.bucket = int(k);
      bucket.buckets = int(marks.size());
      comm_->wait(marks[k], bucket);
    }
    comm_->finish(site);
    for (std::size_t k = 0; k < buffers.size(); ++k) {
      if (buffers[k].memory == train::Buffer::Memory::host) {
        comm_->copy_to_host(buffers[k].data, device_data(k), buffers[k].bytes());
      }
    }
    return marks.size();
  }

  /// All ranks must exchange the same buffers (names, sizes, types): checked against rank 0 with
  /// a hash, and every rank throws together when one differs.
  void check_layout(const std::vector<train::Buffer>& buffers, const char* what) {
    LayoutHash hash;
    for (const auto& b : buffers) hash.add(b);
    const std::uint64_t h = hash.value();
    std::uint64_t zero = h;
    comm_->broadcast_host(&zero, sizeof zero, 0, {"ncclBroadcast (layout check)"});
    std::int32_t differs = zero != h ? 1 : 0;
    comm_->allreduce_host(&differs, 1, ncclInt32, ncclMax, {"ncclAllReduce (layout check)"});
    if (differs) {
      throw dist_error(std::string("dist::NcclDataParallel: the ") + what +
                       " differ between ranks (names, sizes or element types): every rank must build the same model "
                       "and optimizer (rank " +
                       std::to_string(comm_->rank()) + (zero != h ? " differs from rank 0)" : " agrees with rank 0)"));
    }
  }

  NcclCommunicator* comm_;
  NcclDataParallelOptions options_;
  std::vector<std::tuple<std::size_t, train::Buffer::Kind>> signature_;
  std::size_t buckets_ = 0;
  double last_seconds_ = 0;
};

}  // namespace tessera::dist
