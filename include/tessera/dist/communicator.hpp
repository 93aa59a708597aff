// Processes that train together: MPI set up from the launcher's environment, and the collectives
// (all-reduce, broadcast, all-gather, barrier) on tensors.
//
//   int main(int argc, char** argv) {
//     dist::Environment mpi(argc, argv);      // MPI_Init; MPI_Finalize at the end
//     dist::Communicator world(mpi);           // every process of the job
//     world.allreduce(t, dist::ReduceOp::mean);
//   }
//
// `mpirun -np 4 prog` (or a scheduler's `srun`) starts the processes; tessera has no launcher and
// no transport of its own. Every collective is MPI's nonblocking call, waited for by polling, so
// that a wait that lasts longer than the communicator's timeout (a rank that died or stopped
// participating) ends the whole job with MPI_Abort and a message naming the call, the training
// step and the gradient bucket, instead of hanging. Errors MPI returns become `dist_error`
// exceptions naming the call and the rank.
//
// Tensors of any backend are accepted: CPU tensors are exchanged in place, others through a host
// copy. CUDA tensors have their own transport, NCCL (nccl.hpp), whose communicator is set up
// through this one.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/dist/collective.hpp"
#include "tessera/train/distributed.hpp"

namespace tessera::dist {

/// True when this process was started by an MPI launcher (Open MPI's or MPICH's mpirun, Slurm's
/// srun with PMI or PMIx): programs use it to train alone when started directly.
inline bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS"}) {
    if (std::getenv(v)) return true;
  }
  return false;
}

namespace detail {

inline int world_rank() {
  int initialized = 0, finalized = 0, rank = -1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

/// Throws dist_error for an MPI error code, naming the call and this rank.
inline void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw dist_error(std::string(call) + " failed on rank " + std::to_string(world_rank()) + ": " +
                   std::string(text, static_cast<std::size_t>(length)));
}

template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, std::int32_t>) return MPI_INT32_T;
  else if constexpr (std::is_same_v<T, std::int64_t>) return MPI_INT64_T;
  else static_assert(sizeof(T) == 0, "tessera::dist: tensors of float, double, int32 or int64 only");
}

inline MPI_Datatype mpi_type(train::Buffer::Kind k) {
  switch (k) {
    case train::Buffer::Kind::float32:
      return MPI_FLOAT;
    case train::Buffer::Kind::float64:
      return MPI_DOUBLE;
    case train::Buffer::Kind::int32:
      return MPI_INT32_T;
    case train::Buffer::Kind::int64:
      return MPI_INT64_T;
  }
  return MPI_DATATYPE_NULL;
}

}  // namespace detail

/// MPI for this process: MPI_Init_thread on construction (unless the program already called it),
/// MPI_Finalize on destruction. Destroyed while an exception unwinds the stack, it calls
/// MPI_Abort instead: the other ranks may be waiting for this one, and MPI_Finalize would wait for
/// them in turn.
class Environment {
 public:
  Environment() { init(nullptr, nullptr); }
  Environment(int& argc, char**& argv) { init(&argc, &argv); }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
  ~Environment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!owner_ || finalized) return;
    if (std::uncaught_exceptions() > uncaught_at_start_) {
      std::fprintf(stderr, "tessera::dist: rank %d is leaving with an exception; aborting the job\n", rank_);
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Finalize();
  }

  int rank() const noexcept { return rank_; }
  int world_size() const noexcept { return size_; }
  /// Ends every process of the job with exit status `code` (after an error on this rank, when the
  /// others may be waiting for it).
  [[noreturn]] void abort(int code) const {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }
  /// This process's rank among those on the same host, and how many there are (to pick a GPU or
  /// a share of the cores).
  int local_rank() const noexcept { return local_rank_; }
  int local_size() const noexcept { return local_size_; }

 private:
  void init(int* argc, char*** argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      // Open MPI's nonblocking all-reduce (libnbc) picks recursive doubling for a few processes,
      // which moves the whole buffer in every round: measured 2.2x slower than its blocking
      // MPI_Allreduce on 64 MiB over shared memory. Its ring moves 2(n-1)/n of the buffer and is
      // as fast. A choice made in the environment stays; other MPIs ignore the variable.
      setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", /*overwrite=*/0);
      int provided = 0;
      // Funneled: only the thread that called MPI_Init calls MPI (tessera's worker threads never do).
      detail::check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      owner_ = true;
      if (provided < MPI_THREAD_FUNNELED) {
        MPI_Finalize();
        owner_ = false;
        throw dist_error("MPI_Init_thread: this MPI offers no thread support (MPI_THREAD_FUNNELED), which a process with "
                         "worker threads needs");
      }
    }
    uncaught_at_start_ = std::uncaught_exceptions();
    detail::check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    detail::check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
    detail::check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
    MPI_Comm node = MPI_COMM_NULL;
    detail::check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
                  "MPI_Comm_split_type");
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_size(node, &local_size_);
    MPI_Comm_free(&node);
  }

  bool owner_ = false;
  int uncaught_at_start_ = 0;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
};

/// Every process of the job (a duplicate of MPI_COMM_WORLD, so tessera's messages never meet the
/// program's own), with a watchdog timeout on every collective.
class Communicator {
 public:
  /// `timeout_seconds`: how long a collective may wait for the other ranks before the job is
  /// aborted (0: forever).
  explicit Communicator(const Environment& env, double timeout_seconds = 300) : timeout_(timeout_seconds) {
    (void)env;  // MPI must be initialized: an Environment proves it
    if (!(timeout_seconds >= 0)) throw value_error("dist::Communicator: the timeout must be >= 0 seconds");
    detail::check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    detail::check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  ~Communicator() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  MPI_Comm handle() const noexcept { return comm_; }
  double timeout_seconds() const noexcept { return timeout_; }
  void set_timeout_seconds(double s) {
    if (!(s >= 0)) throw value_error("dist::Communicator: the timeout must be >= 0 seconds");
    timeout_ = s;
  }

  // ---- on tensors ------------------------------------------------------------------------------

  /// Element-wise sum, mean or maximum over ranks, in place; the same shape on every rank.
  template <class T, std::size_t R, class B>
  void allreduce(Tensor<T, R, B>& t, ReduceOp op = ReduceOp::sum) {
    check_same_shape(t.shape(), "allreduce");
    on_host(t, [&](T* data, std::size_t n) {
      wait(iallreduce(data, n, detail::mpi_type<T>(), op == ReduceOp::max ? MPI_MAX : MPI_SUM), {"MPI_Iallreduce"});
      if (op == ReduceOp::mean) {
        for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<T>(data[i] / static_cast<T>(size_));
      }
    });
  }
  /// Every rank's t becomes rank `root`'s; the same shape on every rank.
  template <class T, std::size_t R, class B>
  void broadcast(Tensor<T, R, B>& t, int root = 0) {
    check_root(root);
    check_same_shape(t.shape(), "broadcast");
    on_host(t, [&](T* data, std::size_t n) { wait(ibcast(data, n, detail::mpi_type<T>(), root), {"MPI_Ibcast"}); });
  }
  /// Every rank's t, concatenated along the first axis in rank order (all of the same shape).
  template <class T, std::size_t R, class B>
  Tensor<T, R, B> allgather(const Tensor<T, R, B>& t) {
    static_assert(R >= 1, "dist::allgather: concatenates along the first axis; a scalar has none");
    check_same_shape(t.shape(), "allgather");
    const Tensor<T, R, cpu> mine = t.template to<cpu>().contiguous();
    auto shape = t.shape();
    shape[0] *= size_;
    auto all = Tensor<T, R, cpu>::uninitialized(shape);
    const auto n = static_cast<std::size_t>(mine.size());
    if (n > std::size_t(std::numeric_limits<int>::max())) throw dist_error("dist::allgather: more than 2^31 elements per rank");
    MPI_Request r;
    detail::check(MPI_Iallgather(mine.data(), int(n), detail::mpi_type<T>(), all.data(), int(n), detail::mpi_type<T>(), comm_, &r),
                  "MPI_Iallgather");
    wait(std::vector<MPI_Request>{r}, {"MPI_Iallgather"});
    if constexpr (std::is_same_v<B, cpu>) {
      return all;
    } else {
      return all.template to<B>();
    }
  }
  /// Every rank's `bytes` bytes at `data` become rank `root`'s (an id, a seed).
  void broadcast_bytes(void* data, std::size_t bytes, int root = 0) {
    check_root(root);
    wait(ibcast(data, bytes, MPI_BYTE, root), {"MPI_Ibcast (bytes)"});
  }
  /// Returns once every rank has called it.
  void barrier() {
    MPI_Request r;
    detail::check(MPI_Ibarrier(comm_, &r), "MPI_Ibarrier");
    wait(std::vector<MPI_Request>{r}, {"MPI_Ibarrier"});
  }

  // ---- on raw buffers (what dist::DataParallel builds on) ---------------------------------------

  /// Starts an in-place all-reduce of n elements (split into calls of at most 2^30 elements).
  std::vector<MPI_Request> iallreduce(void* data, std::size_t n, MPI_Datatype type, MPI_Op op) {
    std::vector<MPI_Request> out;
    for_chunks(data, n, type, [&](void* p, int count) {
      MPI_Request r;
      detail::check(MPI_Iallreduce(MPI_IN_PLACE, p, count, type, op, comm_, &r), "MPI_Iallreduce");
      out.push_back(r);
    });
    return out;
  }
  /// Starts a broadcast of n elements from `root`.
  std::vector<MPI_Request> ibcast(void* data, std::size_t n, MPI_Datatype type, int root) {
    std::vector<MPI_Request> out;
    for_chunks(data, n, type, [&](void* p, int count) {
      MPI_Request r;
      detail::check(MPI_Ibcast(p, count, type, root, comm_, &r), "MPI_Ibcast");
      out.push_back(r);
    });
    return out;
  }
  /// Lets MPI progress the started collectives; true when all of them are done.
  bool test(std::vector<MPI_Request>& requests) {
    int done = 0;
    detail::check(MPI_Testall(int(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
    return done != 0;
  }
  /// Waits for the started collectives, polling; past the timeout the job is aborted with a
  /// message naming `site`.
  void wait(std::vector<MPI_Request> requests, const CallSite& site) {
    if (requests.empty()) return;
    const auto start = std::chrono::steady_clock::now();
    for (unsigned spins = 0;; ++spins) {
      if (test(requests)) return;
      // Yielding keeps oversubscribed ranks (more processes than cores) moving; MPI only makes
      // progress inside its calls, so there is no sleeping here.
      std::this_thread::yield();
      if (timeout_ > 0 && spins % 256 == 255) {
        const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (waited > timeout_) watchdog_abort(site, waited);
      }
    }
  }

 private:
  template <class F>
  static void for_chunks(void* data, std::size_t n, MPI_Datatype type, F&& f) {
    int type_size = 0;
    MPI_Type_size(type, &type_size);
    constexpr std::size_t chunk = std::size_t{1} << 30;
    auto* p = static_cast<char*>(data);
    for (std::size_t done = 0; done < n; done += chunk) {
      const std::size_t count = std::min(chunk, n - done);
      f(p + done * std::size_t(type_size), int(count));
    }
  }

  /// f(host pointer, elements) on t's values; copied back into t when they were a host copy.
  template <class T, std::size_t R, class B, class F>
  void on_host(Tensor<T, R, B>& t, F&& f) {
    if constexpr (std::is_same_v<B, cpu>) {
      if (t.is_contiguous()) {
        f(t.data(), static_cast<std::size_t>(t.size()));
        return;
      }
    }
    Tensor<T, R, cpu> host = t.template to<cpu>().contiguous();
    f(host.data(), static_cast<std::size_t>(host.size()));
    t.assign(host.template to<B>());
  }

  void check_root(int root) const {
    if (root < 0 || root >= size_) {
      throw value_error("dist: root rank " + std::to_string(root) + " outside [0, " + std::to_string(size_) + ")");
    }
  }

  /// Every rank's shape must equal rank 0's; all ranks throw together when one differs (a rank
  /// that threw alone would leave the others waiting in the next collective).
  template <std::size_t R>
  void check_same_shape(const Shape<R>& shape, const char* who) {
    std::vector<std::int64_t> mine(shape.begin(), shape.end()), zero = mine;
    std::vector<MPI_Request> r;
    if (R > 0) r = ibcast(zero.data(), R, MPI_INT64_T, 0);
    wait(std::move(r), {"MPI_Ibcast (shape check)"});
    int differs = zero != mine ? 1 : 0;
    wait(iallreduce(&differs, 1, MPI_INT, MPI_MAX), {"MPI_Iallreduce (shape check)"});
    if (differs) {
      throw dist_error(std::string("dist::") + who + ": the tensors differ in shape between ranks (rank " +
                       std::to_string(rank_) + " has " + shape_string(mine) + ", rank 0 " + shape_string(zero) + ")");
    }
  }
  static std::string shape_string(const std::vector<std::int64_t>& s) {
    std::string out = "[";
    for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
  }

  [[noreturn]] void watchdog_abort(const CallSite& site, double waited) const {
    std::string where = site.what;
    if (site.step >= 0) where += ", training step " + std::to_string(site.step);
    if (site.bucket >= 0) where += ", gradient bucket " + std::to_string(site.bucket + 1) + " of " + std::to_string(site.buckets);
    std::fprintf(stderr,
                 "tessera::dist watchdog: rank %d waited %.1f s (timeout %.1f s) in %s; another rank died or stopped "
                 "participating. Aborting the job.\n",
                 rank_, waited, timeout_, where.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
    std::_Exit(3);  // MPI_Abort does not return; this is for an implementation whose abort does
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  double timeout_;
};

}  // namespace tessera::dist
