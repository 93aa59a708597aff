// What every transport of tessera::dist shares (MPI in communicator.hpp, NCCL in nccl.hpp): the
// error type, the reductions, and where a collective was called from. No MPI or NCCL header here.
#pragma once

#include <cstdint>
#include <stdexcept>

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

}  // namespace tessera::dist
