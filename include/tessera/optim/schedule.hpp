// Learning-rate schedules (step, exponential, cosine with warmup, reduce-on-plateau) and gradient
// clipping by global norm. A schedule drives any optimizer with lr() and set_lr(); call its step()
// once per epoch (or per batch, as the schedule is meant) after the optimizer's.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "tessera/core/error.hpp"
#include "tessera/expr/reduce.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::optim {

/// lr = base_lr * gamma^floor(steps / step_size).
template <class Opt>
class StepLR {
 public:
  StepLR(Opt& opt, std::int64_t step_size, double gamma = 0.1) : opt_(opt), base_(opt.lr()), size_(step_size), gamma_(gamma) {
    if (step_size <= 0) throw value_error("StepLR: step_size must be positive, got " + std::to_string(step_size));
  }
  void step() {
    ++count_;
    opt_.set_lr(base_ * std::pow(gamma_, double(count_ / size_)));
  }
  std::int64_t count() const noexcept { return count_; }
  /// Continues as if step() had been called n times (resuming from a checkpoint).
  void set_count(std::int64_t n) {
    count_ = n;
    opt_.set_lr(base_ * std::pow(gamma_, double(count_ / size_)));
  }

 private:
  Opt& opt_;
  double base_;
  std::int64_t size_;
  double gamma_;
  std::int64_t count_ = 0;
};

/// lr = base_lr * gamma^steps.
template <class Opt>
class ExponentialLR {
 public:
  ExponentialLR(Opt& opt, double gamma) : opt_(opt), base_(opt.lr()), gamma_(gamma) {}
  void step() {
    ++count_;
    opt_.set_lr(base_ * std::pow(gamma_, double(count_)));
  }
  std::int64_t count() const noexcept { return count_; }
  /// Continues as if step() had been called n times (resuming from a checkpoint).
  void set_count(std::int64_t n) {
    count_ = n;
    opt_.set_lr(base_ * std::pow(gamma_, double(count_)));
  }

 private:
  Opt& opt_;
  double base_;
  double gamma_;
  std::int64_t count_ = 0;
};

/// Linear warmup from 0 to base_lr over `warmup` steps, then a cosine decay to min_lr at `total`
/// steps (held there afterwards). The learning rate is set for the first step on construction.
template <class Opt>
class CosineWithWarmup {
 public:
  CosineWithWarmup(Opt& opt, std::int64_t warmup, std::int64_t total, double min_lr = 0)
      : opt_(opt), base_(opt.lr()), warmup_(warmup), total_(total), min_(min_lr) {
    if (warmup < 0 || total <= warmup) {
      throw value_error("CosineWithWarmup: need 0 <= warmup < total, got warmup " + std::to_string(warmup) +
                        ", total " + std::to_string(total));
    }
    opt_.set_lr(lr_at(0));
  }
  /// The learning rate for (0-based) step s.
  double lr_at(std::int64_t s) const {
    if (s < warmup_) return base_ * double(s + 1) / double(warmup_);
    if (s >= total_) return min_;
    const double progress = double(s - warmup_) / double(total_ - warmup_);
    return min_ + 0.5 * (base_ - min_) * (1 + std::cos(M_PI * progress));
  }
  void step() { opt_.set_lr(lr_at(++count_)); }
  std::int64_t count() const noexcept { return count_; }
  /// Continues as if step() had been called n times (resuming from a checkpoint).
  void set_count(std::int64_t n) {
    count_ = n;
    opt_.set_lr(lr_at(count_));
  }

 private:
  Opt& opt_;
  double base_;
  std::int64_t warmup_, total_;
  double min_;
  std::int64_t count_ = 0;
};

struct ReduceOnPlateauOptions {
  bool maximize = false;    ///< true when the metric should grow (accuracy), false for a loss
  double factor = 0.1;      ///< new lr = lr * factor
  std::int64_t patience = 10;  ///< epochs without improvement tolerated
  double threshold = 1e-4;  ///< relative improvement that counts (PyTorch's "rel" mode)
  std::int64_t cooldown = 0;
  double min_lr = 0;
};

/// Multiplies the learning rate by `factor` when the metric has not improved for `patience` steps.
template <class Opt>
class ReduceLROnPlateau {
 public:
  explicit ReduceLROnPlateau(Opt& opt, ReduceOnPlateauOptions o = {}) : opt_(opt), o_(o) {
    if (!(o.factor > 0 && o.factor < 1)) throw value_error("ReduceLROnPlateau: factor must be in (0, 1)");
    best_ = o.maximize ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  }
  /// Reports the epoch's metric; returns true when the learning rate was reduced.
  bool step(double metric) {
    const bool better = o_.maximize ? metric > best_ * (best_ >= 0 ? 1 + o_.threshold : 1 - o_.threshold)
                                    : metric < best_ * (best_ >= 0 ? 1 - o_.threshold : 1 + o_.threshold);
    if (better) {
      best_ = metric;
      bad_ = 0;
    } else {
      ++bad_;
    }
    if (cooldown_left_ > 0) {
      --cooldown_left_;
      bad_ = 0;
    }
    if (bad_ > o_.patience) {
      const double next = std::max(opt_.lr() * o_.factor, o_.min_lr);
      bad_ = 0;
      cooldown_left_ = o_.cooldown;
      if (opt_.lr() - next > 1e-12) {
        opt_.set_lr(next);
        return true;
      }
    }
    return false;
  }
  double best() const noexcept { return best_; }

 private:
  Opt& opt_;
  ReduceOnPlateauOptions o_;
  double best_;
  std::int64_t bad_ = 0, cooldown_left_ = 0;
};

/// Scales every gradient of `grads` (a module, as grad returns it) in place so that their global
/// L2 norm is at most max_norm; returns the norm before clipping.
template <class M>
double clip_grad_norm(M& grads, double max_norm) {
  if (!(max_norm > 0)) throw value_error("clip_grad_norm: max_norm must be positive, got " + std::to_string(max_norm));
  double total = 0;
  nn::for_each_parameter(grads, [&](const std::string&, auto& g) {
    total += double(Tensor<value_type_t<std::decay_t<decltype(g)>>, 0, backend_t<std::decay_t<decltype(g)>>>(sum(square(g)))());
  });
  const double norm = std::sqrt(total);
  if (norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);  // PyTorch's epsilon
    nn::for_each_parameter(grads, [&](const std::string&, auto& g) {
      using T = value_type_t<std::decay_t<decltype(g)>>;
      g *= T(scale);
    });
  }
  return norm;
}

}  // namespace tessera::optim
