// What every transport of tessera::dist shares (MPI in communicator.hpp, NCCL in nccl.hpp): the
// error type, the reductions, where a collective was called from, and the hash with which ranks
// check that they exchange the same buffers. No MPI or NCCL header here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "tessera/train/distributed.hpp"

namespace tessera::dist {

/// A call of MPI or NCCL failed, or the ranks disagree about what they exchange.
class dist_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class ReduceOp { sum, mean, max };

/// Where a collective is called from, for the watchdog's message.
struct CallSite {
  const char* what = "";
  std::int64_t step = -1;  ///< the training step, or -1
  int bucket = -1;         ///< the gradient bucket, or -1
  int buckets = 0;
};

/// FNV-1a over what a list of buffers holds: each buffer's name, size and element type (and what a
/// strategy adds). Ranks compare theirs with rank 0's before exchanging buffers, so that a rank
/// whose model differs makes every rank throw instead of pairing collectives wrongly.
class LayoutHash {
 public:
  void mix(const void* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) h_ = (h_ ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  }
  void add(const train::Buffer& b) {
    mix(b.name.data(), b.name.size());
    const std::uint64_t count = b.count, kind = static_cast<std::uint64_t>(b.kind);
    mix(&count, sizeof count);
    mix(&kind, sizeof kind);
  }
  std::uint64_t value() const noexcept { return h_; }

 private:
  std::uint64_t h_ = 1469598103934665603ull;
};

}  // namespace tessera::dist
