// What train::fit needs from a data-parallel strategy, without knowing how processes talk.
//
// fit trains one replica of the model per process; a `Distributed` object (dist::DataParallel,
// which links MPI, docs/distributed.md) keeps the replicas equal: it copies rank 0's state to every
// rank at the start, sums the ranks' gradients (each weighted by its share of the global batch)
// after every step, and sums metrics over ranks. The interface sees tensors as typed buffers (in host
// memory, or in a device's when the strategy reduces there, as NCCL does), so the training layer
// stays free of MPI and NCCL, and the strategy free of model types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "tessera/backend/cpu/device.hpp"  // host copies of device tensors
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::train {

/// A contiguous buffer, named for error messages. Gradients are float32 or float64; state that is
/// broadcast may also hold integers (counters such as a batch norm's batches seen).
struct Buffer {
  enum class Kind { float32, float64, int32, int64 };
  /// Where `data` points: host memory, or the memory of a backend whose tensors the host cannot
  /// read (the CUDA backend's device), given only to a strategy whose takes_device_memory() is true.
  enum class Memory { host, device };
  void* data = nullptr;
  std::size_t count = 0;
  Kind kind = Kind::float32;
  std::string name;
  /// Set by the caller when the next buffer in the list starts in the same allocation less than 64
  /// bytes after this one ends, with zeros between them on every rank (consecutive slots of a
  /// GradientArena): a run of joined buffers may then be summed by one call over the whole range.
  bool joined_with_next = false;
  Memory memory = Memory::host;

  static std::size_t element_size(Kind k) { return k == Kind::float64 || k == Kind::int64 ? 8 : 4; }
  std::size_t bytes() const { return count * element_size(kind); }
};

class Distributed {
 public:
  virtual ~Distributed() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// True when the strategy reduces device tensors where they are (NCCL on CUDA tensors); false
  /// when every buffer it gets must be in host memory (MPI), device tensors then going through a
  /// host copy.
  virtual bool takes_device_memory() const { return false; }
  /// Makes every rank's buffers equal to rank 0's, in place (same names and sizes on every rank).
  virtual void broadcast(const std::vector<Buffer>& buffers) = 0;
  /// The number of samples in this step's global batch: every rank's `local_samples` summed. fit
  /// asks before computing the step's gradients and weights its loss (a mean over the rank's
  /// samples) by local / global, so that the sum of the ranks' gradients is the gradient of the
  /// mean loss over the global batch, exact even when ranks hold different numbers of samples.
  /// `step` names the step in error and watchdog messages.
  virtual double global_samples(index_t local_samples, std::int64_t step) = 0;
  /// Sums the ranks' (weighted) gradients, in place, bitwise the same on every rank.
  virtual void sum_gradients(const std::vector<Buffer>& gradients, std::int64_t step) = 0;
  /// Element-wise sums over ranks, in place (metrics: loss sums, hit and sample counts).
  virtual void sum(std::vector<double>& values) = 0;
};

namespace detail {

template <class T>
inline constexpr bool exchangeable_v = std::is_same_v<T, float> || std::is_same_v<T, double> ||
                                       std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::int64_t>;

template <class T>
Buffer::Kind buffer_kind() {
  static_assert(exchangeable_v<T>, "tessera::train: distributed training exchanges float, double, int32 or int64 tensors");
  if constexpr (std::is_same_v<T, float>)
    return Buffer::Kind::float32;
  else if constexpr (std::is_same_v<T, double>)
    return Buffer::Kind::float64;
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return Buffer::Kind::int32;
  else
    return Buffer::Kind::int64;
}

}  // namespace detail

/// Named tensors seen as buffers for a Distributed call. A contiguous tensor is used in place when
/// the strategy can reach its memory (a CPU tensor always; a device tensor when the strategy
/// takes_device_memory()); anything else (a strided view, a device tensor for a host-only strategy)
/// goes through a contiguous host copy that `write_back` copies into the tensor afterwards.
class Buffers {
 public:
  explicit Buffers(const Distributed& strategy) : device_in_place_(strategy.takes_device_memory()) {}

  template <class T, std::size_t R, class B>
  void add(const std::string& name, Tensor<T, R, B>& t) {
    const auto memory = B::host_accessible ? Buffer::Memory::host : Buffer::Memory::device;
    if (t.is_contiguous() && (B::host_accessible || device_in_place_)) {
      buffers_.push_back({t.data(), static_cast<std::size_t>(t.size()), detail::buffer_kind<T>(), name, false, memory});
      return;
    }
    auto host = std::make_shared<Tensor<T, R, cpu>>(t.template to<cpu>().contiguous());
    buffers_.push_back({host->data(), static_cast<std::size_t>(host->size()), detail::buffer_kind<T>(), name});
    Tensor<T, R, B> target = t;  // a handle: written in place, so every other handle sees it
    write_back_.push_back([target, host]() mutable { target.assign(host->template to<B>()); });
  }
  const std::vector<Buffer>& buffers() const noexcept { return buffers_; }
  void write_back() {
    for (auto& w : write_back_) w();
  }

 private:
  bool device_in_place_;
  std::vector<Buffer> buffers_;
  std::vector<std::function<void()>> write_back_;
};

}  // namespace tessera::train
