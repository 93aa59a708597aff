// Model selection, as TensorFlow's scikit-learn-compatible estimators offered: k-fold
// cross-validation and grid search over hyperparameters, each returning per-configuration metrics.
//
//   auto cv = train::cross_validate(dataset, 5, [&](const auto& train_part, const auto& val_part) {
//     auto model = make_model();  ...  train::fit(model, opt, loss, train_loader, {.epochs = 3, .verbose = 0});
//     return train::evaluate(model, loss, val_loader).logs();      // {"loss": ..., "accuracy": ...}
//   });
//   cv.mean["accuracy"], cv.stddev["accuracy"], cv.folds[2]["loss"]
//
//   auto gs = train::grid_search({{"lr", {1e-3, 1e-2}}, {"hidden", {32, 128}}}, dataset, 3,
//                                [&](const train::ParamSet& p, const auto& tr, const auto& va) { ... return logs; },
//                                {.metric = "accuracy"});
//   gs.best().params.at("lr")
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/random.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/data/loader.hpp"
#include "tessera/train/callbacks.hpp"

namespace tessera::train {

/// The sample indices of one cross-validation fold.
struct Fold {
  std::vector<index_t> train, validation;
};

struct KFoldOptions {
  bool shuffle = true;     ///< shuffle samples (seeded) before cutting the folds
  std::uint64_t seed = 0;
};

/// Splits n samples into k folds of (nearly) equal size; fold i validates on its part and trains
/// on the rest (scikit-learn's KFold: the first n % k folds get one extra sample).
inline std::vector<Fold> k_fold(index_t n, int k, const KFoldOptions& o = {}) {
  if (k < 2) throw value_error("k_fold: need at least 2 folds, got " + std::to_string(k));
  if (n < k) throw value_error("k_fold: " + std::to_string(n) + " samples cannot make " + std::to_string(k) + " folds");
  std::vector<index_t> order(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) order[std::size_t(i)] = i;
  if (o.shuffle) {
    Generator gen(data::detail::mix(o.seed, 0x6b666f6c64ull));  // "kfold"
    data::detail::shuffle_indices(order, gen);
  }
  std::vector<Fold> folds(static_cast<std::size_t>(k));
  index_t begin = 0;
  for (int f = 0; f < k; ++f) {
    const index_t size = n / k + (f < n % k ? 1 : 0);
    for (index_t i = 0; i < n; ++i) {
      auto& part = (i >= begin && i < begin + size) ? folds[std::size_t(f)].validation : folds[std::size_t(f)].train;
      part.push_back(order[std::size_t(i)]);
    }
    begin += size;
  }
  return folds;
}

/// Per-fold metrics and their mean and (population) standard deviation.
struct CrossValidation {
  std::vector<Logs> folds;
  Logs mean, stddev;
};

namespace detail {
inline void summarize(CrossValidation& cv) {
  if (cv.folds.empty()) return;
  for (const auto& [name, unused] : cv.folds[0]) {
    (void)unused;
    double sum = 0, sq = 0;
    for (const auto& f : cv.folds) {
      const double v = metric_of(f, name, "cross_validate");
      sum += v;
      sq += v * v;
    }
    const double n = double(cv.folds.size()), mean = sum / n;
    cv.mean[name] = mean;
    cv.stddev[name] = std::sqrt(std::max(0.0, sq / n - mean * mean));
  }
}
}  // namespace detail

/// k-fold cross-validation: for each fold calls fit_and_score(train_subset, validation_subset)
/// (two data::Subset views of `dataset`), which trains a fresh model and returns its metrics.
template <class Dataset, class Fn>
CrossValidation cross_validate(const Dataset& dataset, int k, Fn&& fit_and_score, const KFoldOptions& o = {}) {
  CrossValidation cv;
  for (auto& fold : k_fold(dataset.size(), k, o)) {
    const data::Subset<Dataset> train_part(dataset, std::move(fold.train));
    const data::Subset<Dataset> validation_part(dataset, std::move(fold.validation));
    cv.folds.push_back(fit_and_score(train_part, validation_part));
  }
  detail::summarize(cv);
  return cv;
}

/// One point of a hyperparameter grid: name -> value.
using ParamSet = std::map<std::string, double>;
/// Hyperparameter names and the values to try, in order.
using ParamGrid = std::vector<std::pair<std::string, std::vector<double>>>;

/// Every combination of the grid's values (the last name varies fastest).
inline std::vector<ParamSet> expand_grid(const ParamGrid& grid) {
  std::vector<ParamSet> out{ParamSet{}};
  for (const auto& [name, values] : grid) {
    if (values.empty()) throw value_error("grid_search: no values for \"" + name + "\"");
    std::vector<ParamSet> next;
    for (const auto& partial : out) {
      for (const double v : values) {
        ParamSet p = partial;
        if (!p.emplace(name, v).second) throw value_error("grid_search: \"" + name + "\" appears twice in the grid");
        next.push_back(std::move(p));
      }
    }
    out = std::move(next);
  }
  return out;
}

struct GridSearchOptions {
  std::string metric = "accuracy";  ///< what ranks the configurations
  int maximize = -1;                ///< 1 / 0; -1: by name (accuracy grows, losses shrink)
  KFoldOptions folds;               ///< with cross-validation
};

/// Metrics of every configuration, and which one is best.
struct GridSearchResult {
  struct Entry {
    ParamSet params;
    Logs mean, stddev;         ///< over folds (stddev 0 without cross-validation)
    std::vector<Logs> folds;   ///< per fold (one entry without cross-validation)
  };
  std::vector<Entry> results;  ///< in grid order
  std::size_t best_index = 0;
  const Entry& best() const { return results.at(best_index); }
};

namespace detail {
inline void rank(GridSearchResult& r, const GridSearchOptions& o) {
  const bool grows = o.maximize < 0 ? metric_grows(o.metric) : o.maximize != 0;
  for (std::size_t i = 0; i < r.results.size(); ++i) {
    const double v = metric_of(r.results[i].mean, o.metric, "grid_search");
    const double b = metric_of(r.results[r.best_index].mean, o.metric, "grid_search");
    if (grows ? v > b : v < b) r.best_index = i;
  }
}
}  // namespace detail

/// Grid search without cross-validation: score(params) trains and returns metrics.
template <class Fn>
GridSearchResult grid_search(const ParamGrid& grid, Fn&& score, const GridSearchOptions& o = {}) {
  GridSearchResult r;
  for (const auto& params : expand_grid(grid)) {
    GridSearchResult::Entry e;
    e.params = params;
    e.folds.push_back(score(params));
    e.mean = e.folds[0];
    for (const auto& kv : e.mean) e.stddev[kv.first] = 0.0;
    r.results.push_back(std::move(e));
  }
  detail::rank(r, o);
  return r;
}

/// Grid search with k-fold cross-validation (scikit-learn's GridSearchCV):
/// fit_and_score(params, train_subset, validation_subset) returns one fold's metrics.
template <class Dataset, class Fn>
GridSearchResult grid_search(const ParamGrid& grid, const Dataset& dataset, int k, Fn&& fit_and_score,
                             const GridSearchOptions& o = {}) {
  GridSearchResult r;
  for (const auto& params : expand_grid(grid)) {
    auto cv = cross_validate(
        dataset, k, [&](const auto& tr, const auto& va) { return fit_and_score(params, tr, va); }, o.folds);
    r.results.push_back({params, std::move(cv.mean), std::move(cv.stddev), std::move(cv.folds)});
  }
  detail::rank(r, o);
  return r;
}

}  // namespace tessera::train
