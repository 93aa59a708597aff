// Exceptions thrown for errors a user can cause (bad shapes, bad indices, bad arguments, bad files).
#pragma once

#include <new>
#include <stdexcept>
#include <string>
#include <utility>

namespace tessera {

/// Extents that do not fit an operation: `matmul: [64, 784] x [128, 10]: inner extents ...`.
class shape_error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// An element index or axis outside a tensor's extents.
class index_error : public std::out_of_range {
 public:
  using std::out_of_range::out_of_range;
};

/// A value argument that makes no sense for the operation (negative count, bad step...).
class value_error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// A file that cannot be read or written, or whose contents are malformed; the message names the
/// file and the problem: `data/train.idx.gz: truncated: expected 47040016 bytes of data, got 1024`.
class io_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A NaN or infinity where check_numerics is on (core/numerics.hpp); the message names the op that
/// produced it, the tensor's shape and the first bad element: `check_numerics: log produced NaN at
/// [3, 7] of a [64, 10] tensor`.
class numeric_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A device allocation that failed even after the allocator freed its cached blocks; the message
/// names the bytes requested and the pool's state. A std::bad_alloc, as the backend contract asks.
class out_of_memory : public std::bad_alloc {
 public:
  explicit out_of_memory(std::string message) : message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

}  // namespace tessera
