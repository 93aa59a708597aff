// DataLoader: batches of a dataset, optionally shuffled (seeded) and transformed, prepared by a
// background thread a few batches ahead so the model never waits for data.
//
//   data::DataLoader loader(train, {.batch_size = 128, .shuffle = true, .seed = 1});
//   for (int epoch = 0; epoch < 3; ++epoch)
//     for (auto& [images, labels] : loader) { ... }      // each loop is one epoch
//
// Determinism: the order of epoch e is a function of (seed, e) only, and a transform gets its own
// generator per batch derived from (seed, e, batch index), so results do not depend on prefetching
// or thread timing. An exception thrown while preparing a batch is rethrown by the loop.
//
// Sharding (data-parallel training, one loader per process): with `.shards = n, .shard = r`,
// batch_size is the global batch. Every process computes the same order (same seed), cuts it into
// the same global batches, and yields positions r, r + n, r + 2n, ... of each: together the n
// loaders yield the samples of the batches one unsharded loader would (but for a padded tail),
// split n ways, with sizes differing by at most one (docs/distributed.md).
//
//   data::DataLoader loader(train, {.batch_size = 64, .shuffle = true, .seed = 1,
//                                   .shards = world_size, .shard = rank});
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/random.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::data {

struct LoaderOptions {
  index_t batch_size = 32;
  bool shuffle = false;
  bool drop_last = false;     ///< drop a last batch smaller than batch_size
  std::uint64_t seed = 0;     ///< shuffling and transforms
  index_t prefetch = 2;       ///< batches prepared ahead by the background thread; 0: none (inline)
  index_t shards = 1;         ///< processes sharing each (global) batch; batch_size >= shards
  index_t shard = 0;          ///< which of them this loader serves, in [0, shards)
  /// Sharded and !drop_last: fill the last global batch up to batch_size with the epoch's first
  /// samples (PyTorch's DistributedSampler), so every step has the same size. Otherwise the last
  /// batch stays short, but never shorter than `shards` samples: each process gets at least one.
  bool pad_last = false;
};

namespace detail {
/// splitmix64 of (a, b): independent generator keys for each (seed, epoch, batch).
inline std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  std::uint64_t z = a + 0x9E3779B97F4A7C15ull * (b + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
/// Shuffles `idx` in place with Fisher-Yates driven by `gen` (64-bit draws; modulo bias below
/// 2^-30 for any real dataset size). The same permutation for the same generator, always.
inline void shuffle_indices(std::vector<index_t>& idx, Generator& gen) {
  if (idx.size() < 2) return;
  const std::uint64_t first = gen.advance(idx.size());
  for (std::size_t i = idx.size() - 1; i > 0; --i) {
    const auto w = gen.at(first + i);
    const std::uint64_t r = (std::uint64_t{w[0]} << 32) | w[1];
    std::swap(idx[i], idx[static_cast<std::size_t>(r % (i + 1))]);
  }
}
}  // namespace detail

/// A transform that does nothing.
struct NoTransform {
  template <class Batch>
  void operator()(Batch&, Generator&) const {}
};

template <class Dataset, class Transform = NoTransform>
class DataLoader {
 public:
  using Batch = decltype(std::declval<const Dataset&>().batch(std::declval<const std::vector<index_t>&>()));

  /// Keeps a reference to `dataset`, which must outlive the loader.
  DataLoader(const Dataset& dataset, LoaderOptions options = {}, Transform transform = {})
      : dataset_(&dataset), options_(options), transform_(std::move(transform)) {
    if (options_.batch_size <= 0) throw value_error("DataLoader: batch_size must be positive");
    if (options_.prefetch < 0) throw value_error("DataLoader: prefetch must not be negative");
    if (options_.shards < 1 || options_.shard < 0 || options_.shard >= options_.shards) {
      throw value_error("DataLoader: need shards >= 1 and 0 <= shard < shards (got shard " + std::to_string(options_.shard) +
                        " of " + std::to_string(options_.shards) + ")");
    }
    if (options_.batch_size < options_.shards) {
      throw value_error("DataLoader: the global batch_size " + std::to_string(options_.batch_size) +
                        " is smaller than the number of shards " + std::to_string(options_.shards) +
                        ": some process would get no samples");
    }
  }
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  /// Batches per epoch (global batches when sharded: the same on every shard).
  index_t size() const {
    const index_t n = dataset_->size(), b = options_.batch_size;
    return options_.drop_last ? n / b : (n + b - 1) / b;
  }
  /// The dataset positions of batch k of epoch order `order` that this shard yields.
  std::vector<index_t> batch_indices(const std::vector<index_t>& order, index_t k) const {
    const index_t b = options_.batch_size, n = static_cast<index_t>(order.size());
    const index_t begin = k * b;
    index_t end = std::min<index_t>(begin + b, n);
    if (options_.shards == 1) return std::vector<index_t>(order.begin() + begin, order.begin() + end);
    // A short last batch: padded to batch_size, or at least to one sample per shard, by wrapping
    // around to the start of the epoch's order.
    const index_t want = options_.pad_last ? b : std::max(end - begin, options_.shards);
    std::vector<index_t> global(order.begin() + begin, order.begin() + end);
    for (index_t i = 0; index_t(global.size()) < want && n > 0; ++i) global.push_back(order[static_cast<std::size_t>(i % n)]);
    std::vector<index_t> mine;
    for (std::size_t i = static_cast<std::size_t>(options_.shard); i < global.size(); i += static_cast<std::size_t>(options_.shards)) {
      mine.push_back(global[i]);
    }
    return mine;
  }
  const LoaderOptions& options() const noexcept { return options_; }
  /// Epochs started so far (the next one shuffles with this number).
  std::uint64_t epochs_started() const noexcept { return next_epoch_; }
  /// Continue from a given epoch number (when resuming training).
  void set_epoch(std::uint64_t e) noexcept { next_epoch_ = e; }

  /// The sample order of epoch e.
  std::vector<index_t> order(std::uint64_t e) const {
    std::vector<index_t> idx(static_cast<std::size_t>(dataset_->size()));
    std::iota(idx.begin(), idx.end(), index_t{0});
    if (options_.shuffle) {
      Generator gen(detail::mix(options_.seed, e));
      detail::shuffle_indices(idx, gen);
    }
    return idx;
  }

 private:
  /// One epoch in progress: the order, the queue and the producer thread.
  class EpochRun {
   public:
    EpochRun(const DataLoader& loader, std::uint64_t epoch) : loader_(loader), epoch_(epoch), order_(loader.order(epoch)) {
      total_ = loader.size();
      if (loader.options_.prefetch > 0 && total_ > 0) worker_ = std::thread([this] { produce(); });
    }
    ~EpochRun() {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
      }
      changed_.notify_all();
      if (worker_.joinable()) worker_.join();
    }
    EpochRun(const EpochRun&) = delete;
    EpochRun& operator=(const EpochRun&) = delete;

    /// The next batch, or nothing at the end of the epoch.
    std::optional<Batch> next() {
      if (consumed_ == total_) return std::nullopt;
      if (!worker_.joinable()) return make(consumed_++);
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return !queue_.empty() || error_; });
      if (queue_.empty()) std::rethrow_exception(error_);  // batches made before the error come first
      Batch b = std::move(queue_.front());
      queue_.pop_front();
      ++consumed_;
      lock.unlock();
      changed_.notify_all();
      return b;
    }

   private:
    Batch make(index_t k) const {
      Batch b = loader_.dataset_->batch(loader_.batch_indices(order_, k));
      // Each shard's part of a batch gets its own transform stream.
      const auto& o = loader_.options_;
      const auto key = static_cast<std::uint64_t>(o.shards == 1 ? k : k * o.shards + o.shard);
      Generator gen(detail::mix(detail::mix(o.seed, epoch_), key));
      loader_.transform_(b, gen);
      return b;
    }
    void produce() {
      for (index_t k = 0; k < total_; ++k) {
        {
          std::unique_lock<std::mutex> lock(mutex_);
          changed_.wait(lock, [&] { return stop_ || index_t(queue_.size()) < loader_.options_.prefetch; });
          if (stop_) return;
        }
        try {
          Batch b = make(k);
          std::lock_guard<std::mutex> lock(mutex_);
          queue_.push_back(std::move(b));
        } catch (...) {
          std::lock_guard<std::mutex> lock(mutex_);
          error_ = std::current_exception();
          changed_.notify_all();
          return;
        }
        changed_.notify_all();
      }
    }

    const DataLoader& loader_;
    std::uint64_t epoch_;
    std::vector<index_t> order_;
    index_t total_ = 0, consumed_ = 0;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<Batch> queue_;
    std::exception_ptr error_;
    bool stop_ = false;
    std::thread worker_;  // last: started after everything it uses is constructed
  };

 public:
  /// Iterates one epoch; obtained from begin().
  class iterator {
   public:
    using value_type = Batch;
    iterator() = default;
    explicit iterator(std::shared_ptr<EpochRun> run) : run_(std::move(run)) { advance(); }
    Batch& operator*() { return *current_; }
    Batch* operator->() { return &*current_; }
    iterator& operator++() {
      advance();
      return *this;
    }
    bool operator==(const iterator& o) const { return !current_ && !o.current_; }
    bool operator!=(const iterator& o) const { return !(*this == o); }

   private:
    void advance() {
      current_ = run_ ? run_->next() : std::nullopt;
      if (!current_) run_.reset();  // joins the producer at the end of the epoch
    }
    std::shared_ptr<EpochRun> run_;
    std::optional<Batch> current_;
  };

  /// Starts the next epoch (leaving a loop early stops its producer).
  iterator begin() { return iterator(std::make_shared<EpochRun>(*this, next_epoch_++)); }
  iterator end() { return iterator(); }

 private:
  const Dataset* dataset_;
  LoaderOptions options_;
  Transform transform_;
  std::uint64_t next_epoch_ = 0;
};

template <class Dataset>
DataLoader(const Dataset&, LoaderOptions) -> DataLoader<Dataset>;
template <class Dataset, class Transform>
DataLoader(const Dataset&, LoaderOptions, Transform) -> DataLoader<Dataset, Transform>;

namespace detail {
template <class V>
struct is_tensor : std::false_type {};
template <class T, std::size_t R, class B>
struct is_tensor<Tensor<T, R, B>> : std::true_type {};

template <class B, class V>
auto batch_element_on(const V& v) {
  if constexpr (is_tensor<V>::value) {
    return v.template to<B>();
  } else {
    return v;
  }
}
template <class B, class Tuple>
struct batch_on;
template <class B, class... E>
struct batch_on<B, std::tuple<E...>> {
  using type = std::tuple<decltype(batch_element_on<B>(std::declval<const E&>()))...>;
};
}  // namespace detail

/// The batches of another loader, each tensor in them copied to backend B as it is read:
/// `train::fit(model, opt, loss, data::on_device<cuda>(train_loader))`. Other batch elements pass
/// unchanged. Batching, shuffling and prefetching stay with the wrapped loader (on the host).
template <class B, class Loader>
class DeviceLoader {
 public:
  using HostBatch = std::decay_t<decltype(*std::declval<Loader&>().begin())>;
  using Batch = typename detail::batch_on<B, HostBatch>::type;

  explicit DeviceLoader(Loader& loader) : loader_(&loader) {}
  /// Batches per epoch.
  index_t size() const { return loader_->size(); }
  /// Forwarded to loaders that have it (so fit can resume mid-way).
  template <class L = Loader>
  auto set_epoch(std::uint64_t e) -> decltype(std::declval<L&>().set_epoch(e)) {
    return loader_->set_epoch(e);
  }

  class iterator {
   public:
    using value_type = Batch;
    using Inner = decltype(std::declval<Loader&>().begin());
    iterator() = default;
    iterator(Inner it, Inner end) : it_(std::move(it)), end_(std::move(end)) { load(); }
    Batch& operator*() { return *current_; }
    Batch* operator->() { return &*current_; }
    iterator& operator++() {
      ++*it_;
      load();
      return *this;
    }
    bool operator==(const iterator& o) const { return !current_ && !o.current_; }
    bool operator!=(const iterator& o) const { return !(*this == o); }

   private:
    void load() {
      if (it_ && *it_ != *end_) {
        current_ = std::apply([](const auto&... e) { return Batch(detail::batch_element_on<B>(e)...); }, **it_);
      } else {
        current_.reset();
        it_.reset();  // ends the wrapped loader's epoch
      }
    }
    std::optional<Inner> it_, end_;
    std::optional<Batch> current_;
  };

  iterator begin() { return iterator(loader_->begin(), loader_->end()); }
  iterator end() { return iterator(); }

 private:
  Loader* loader_;
};

/// A view of `loader` whose batches arrive on backend B (see DeviceLoader).
template <class B, class Loader>
DeviceLoader<B, Loader> on_device(Loader& loader) {
  return DeviceLoader<B, Loader>(loader);
}

}  // namespace tessera::data
