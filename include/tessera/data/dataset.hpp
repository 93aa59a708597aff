// Datasets. A dataset is any type with
//
//   index_t size() const;                                   // number of samples
//   Batch   batch(const std::vector<index_t>& idx) const;   // those samples, stacked
//
// TensorDataset keeps samples in memory as tensors whose first axis is the sample axis (images
// [N, C, H, W] and labels [N]) and gathers a batch by copying rows.
#pragma once

#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::data {

/// Samples held in memory: tensors with equal first extents.
template <class... Tensors>
class TensorDataset {
 public:
  static_assert(sizeof...(Tensors) > 0, "tessera::data::TensorDataset needs at least one tensor");
  using Batch = std::tuple<Tensors...>;

  explicit TensorDataset(Tensors... tensors) : tensors_(tensors.contiguous()...) {
    size_ = std::get<0>(tensors_).shape()[0];
    std::apply(
        [&](const auto&... t) {
          auto check = [&](const auto& x) {
            static_assert(rank_v<std::decay_t<decltype(x)>> >= 1, "tessera::data::TensorDataset: tensors need a sample axis");
            if (x.shape()[0] != size_) {
              throw shape_error("TensorDataset: tensors have different sample counts (" + std::to_string(size_) + " and " +
                                std::to_string(x.shape()[0]) + ")");
            }
          };
          (check(t), ...);
        },
        tensors_);
  }

  index_t size() const noexcept { return size_; }
  const Batch& tensors() const noexcept { return tensors_; }

  /// The samples at `indices`, in that order, as new tensors [indices.size(), ...].
  Batch batch(const std::vector<index_t>& indices) const {
    for (std::size_t k = 0; k < indices.size(); ++k) {
      if (indices[k] < 0 || indices[k] >= size_) {
        throw index_error("TensorDataset: sample " + std::to_string(indices[k]) + " (position " + std::to_string(k) +
                          ") is outside [0, " + std::to_string(size_) + ")");
      }
    }
    return std::apply([&](const auto&... t) { return Batch(gather(t, indices)...); }, tensors_);
  }

  /// Samples [begin, end) as a dataset sharing these tensors' storage (a view, no copy).
  TensorDataset slice(index_t begin, index_t end) const {
    if (begin < 0 || end > size_ || begin > end) {
      throw index_error("TensorDataset: slice [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " +
                        std::to_string(size_) + " samples");
    }
    return std::apply([&](const auto&... t) { return TensorDataset(t.slice(0, begin, end)...); }, tensors_);
  }

 private:
  template <class T, std::size_t R, class B>
  static Tensor<T, R, B> gather(const Tensor<T, R, B>& t, const std::vector<index_t>& indices) {
    auto shape = t.shape();
    const index_t row = shape[0] == 0 ? 0 : t.size() / shape[0];
    shape[0] = static_cast<index_t>(indices.size());
    auto out = Tensor<T, R, B>::uninitialized(shape);
    for (std::size_t k = 0; k < indices.size(); ++k) {
      std::memcpy(out.data() + static_cast<index_t>(k) * row, t.data() + indices[k] * row, sizeof(T) * std::size_t(row));
    }
    return out;
  }

  Batch tensors_;
  index_t size_ = 0;
};

template <class... Tensors>
TensorDataset(Tensors...) -> TensorDataset<Tensors...>;

/// The samples of another dataset at given indices, in that order (k-fold splits, train/validation
/// splits). Keeps a reference to the dataset, which must outlive it.
template <class Dataset>
class Subset {
 public:
  using Batch = decltype(std::declval<const Dataset&>().batch(std::declval<const std::vector<index_t>&>()));

  Subset(const Dataset& dataset, std::vector<index_t> indices) : dataset_(&dataset), indices_(std::move(indices)) {
    for (std::size_t k = 0; k < indices_.size(); ++k) {
      if (indices_[k] < 0 || indices_[k] >= dataset.size()) {
        throw index_error("Subset: index " + std::to_string(indices_[k]) + " (position " + std::to_string(k) +
                          ") is outside [0, " + std::to_string(dataset.size()) + ")");
      }
    }
  }
  index_t size() const noexcept { return static_cast<index_t>(indices_.size()); }
  const std::vector<index_t>& indices() const noexcept { return indices_; }

  Batch batch(const std::vector<index_t>& idx) const {
    std::vector<index_t> mapped(idx.size());
    for (std::size_t k = 0; k < idx.size(); ++k) {
      if (idx[k] < 0 || idx[k] >= size()) {
        throw index_error("Subset: sample " + std::to_string(idx[k]) + " is outside [0, " + std::to_string(size()) + ")");
      }
      mapped[k] = indices_[static_cast<std::size_t>(idx[k])];
    }
    return dataset_->batch(mapped);
  }

 private:
  const Dataset* dataset_;
  std::vector<index_t> indices_;
};

}  // namespace tessera::data
