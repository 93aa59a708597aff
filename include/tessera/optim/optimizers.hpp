// SGD (momentum, Nesterov, weight decay), Adam, AdamW, RMSprop and Adagrad, with PyTorch's update
// rules and defaults. Each step updates every parameter and its state in one fused pass:
//
//   auto [loss, grads] = value_and_grad(loss_fn, model);
//   optimizer.step(model, std::get<0>(grads));
#pragma once

#include <cmath>
#include <string>
#include <tuple>

#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/unary_ops.hpp"
#include "tessera/optim/optimizer.hpp"

namespace tessera::optim {

namespace detail {
inline void check_non_negative(double v, const char* who, const char* what) {
  if (!(v >= 0)) throw value_error(std::string(who) + ": " + what + " must be non-negative, got " + std::to_string(v));
}
inline void check_unit_interval(double v, const char* who, const char* what) {
  if (!(v >= 0 && v < 1)) throw value_error(std::string(who) + ": " + what + " must be in [0, 1), got " + std::to_string(v));
}
}  // namespace detail

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;
  double dampening = 0;
  bool nesterov = false;
  double weight_decay = 0;  ///< L2 penalty added to the gradient
};

/// Stochastic gradient descent; with momentum, buf = momentum buf + (1 - dampening) g (buf = g on
/// the first step) and p -= lr buf (Nesterov: p -= lr (g + momentum buf)).
template <class T = float, class B = cpu>
class SGD : public OptimizerBase<T, B> {
 public:
  explicit SGD(SGDOptions o = {})
      : OptimizerBase<T, B>(o.lr, o.momentum != 0 ? std::vector<std::string>{"momentum_buffer"} : std::vector<std::string>{}),
        o_(o) {
    detail::check_non_negative(o.momentum, "SGD", "momentum");
    detail::check_non_negative(o.weight_decay, "SGD", "weight_decay");
    if (o.nesterov && (o.momentum <= 0 || o.dampening != 0)) {
      throw value_error("SGD: Nesterov momentum needs momentum > 0 and dampening = 0");
    }
  }
  template <class M>
  void step(M& model, M& grads) {
    auto slots = optim::detail::pair_parameters<T, B>(model, grads, "SGD");
    update(slots);
  }

 private:
  void update(std::vector<optim::detail::ParamSlot<T, B>>& slots);
  SGDOptions o_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;  ///< Adam: L2 added to the gradient; AdamW: decoupled decay (default 0.01)
};

/// Adam (decoupled = false) and AdamW (decoupled = true): m and v are exponential averages of g and
/// g^2; p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps). AdamW first shrinks
/// p by (1 - lr weight_decay).
template <class T, class B, bool Decoupled>
class AdamBase : public OptimizerBase<T, B> {
 public:
  explicit AdamBase(AdamOptions o) : OptimizerBase<T, B>(o.lr, {"exp_avg", "exp_avg_sq"}), o_(o) {
    const char* who = Decoupled ? "AdamW" : "Adam";
    detail::check_unit_interval(o.beta1, who, "beta1");
    detail::check_unit_interval(o.beta2, who, "beta2");
    detail::check_non_negative(o.eps, who, "eps");
    detail::check_non_negative(o.weight_decay, who, "weight_decay");
  }
  template <class M>
  void step(M& model, M& grads) {
    auto slots = optim::detail::pair_parameters<T, B>(model, grads, Decoupled ? "AdamW" : "Adam");
    update(slots);
  }

 private:
  void update(std::vector<optim::detail::ParamSlot<T, B>>& slots);
  AdamOptions o_;
};

template <class T = float, class B = cpu>
class Adam : public AdamBase<T, B, false> {
 public:
  explicit Adam(AdamOptions o = {}) : AdamBase<T, B, false>(o) {}
};

/// AdamW with PyTorch's default weight decay (0.01) unless the options set one.
template <class T = float, class B = cpu>
class AdamW : public AdamBase<T, B, true> {
 public:
  AdamW() : AdamBase<T, B, true>(AdamOptions{1e-3, 0.9, 0.999, 1e-8, 0.01}) {}
  explicit AdamW(AdamOptions o) : AdamBase<T, B, true>(o) {}
};

struct RMSpropOptions {
  double lr = 0.01;
  double alpha = 0.99;  ///< smoothing of the squared-gradient average
  double eps = 1e-8;
  double weight_decay = 0;
  double momentum = 0;
  bool centered = false;  ///< divide by the estimated variance instead of the raw second moment
};

/// RMSprop: v = alpha v + (1 - alpha) g^2, p -= lr g / (sqrt(v) + eps) (with the centered and
/// momentum variants of PyTorch).
template <class T = float, class B = cpu>
class RMSprop : public OptimizerBase<T, B> {
 public:
  explicit RMSprop(RMSpropOptions o = {})
      : OptimizerBase<T, B>(o.lr, {"square_avg", "grad_avg", "momentum_buffer"}), o_(o) {
    detail::check_unit_interval(o.alpha, "RMSprop", "alpha");
    detail::check_non_negative(o.eps, "RMSprop", "eps");
    detail::check_non_negative(o.weight_decay, "RMSprop", "weight_decay");
    detail::check_non_negative(o.momentum, "RMSprop", "momentum");
  }
  template <class M>
  void step(M& model, M& grads) {
    auto slots = optim::detail::pair_parameters<T, B>(model, grads, "RMSprop");
    update(slots);
  }

 private:
  void update(std::vector<optim::detail::ParamSlot<T, B>>& slots);
  RMSpropOptions o_;
};

struct AdagradOptions {
  double lr = 0.01;
  double lr_decay = 0;
  double weight_decay = 0;
  double initial_accumulator_value = 0;
  double eps = 1e-10;
};

/// Adagrad: s += g^2, p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps).
template <class T = float, class B = cpu>
class Adagrad : public OptimizerBase<T, B> {
 public:
  explicit Adagrad(AdagradOptions o = {}) : OptimizerBase<T, B>(o.lr, {"sum"}, T(o.initial_accumulator_value)), o_(o) {
    detail::check_non_negative(o.lr_decay, "Adagrad", "lr_decay");
    detail::check_non_negative(o.weight_decay, "Adagrad", "weight_decay");
    detail::check_non_negative(o.initial_accumulator_value, "Adagrad", "initial_accumulator_value");
    detail::check_non_negative(o.eps, "Adagrad", "eps");
  }
  template <class M>
  void step(M& model, M& grads) {
    auto slots = optim::detail::pair_parameters<T, B>(model, grads, "Adagrad");
    update(slots);
  }

 private:
  void update(std::vector<optim::detail::ParamSlot<T, B>>& slots);
  AdagradOptions o_;
};

// Each rule's update of every parameter (the fused passes and the state) does not depend on the
// model: it is a non-inline member, defined here for any element type and backend, and compiled
// once, in tessera::precompiled, for float and double on the CPU. With TESSERA_PRECOMPILED the
// declarations below (`extern template`) make programs call the library's copies
// (docs/architecture.md, "Build time").
template <class T, class B>
void SGD<T, B>::update(std::vector<optim::detail::ParamSlot<T, B>>& slots) {
  const T lr = T(this->lr_), wd = T(o_.weight_decay), mu = T(o_.momentum);
  this->ensure_state(slots);
  if (o_.momentum == 0) {
    for (auto& s : slots) fused_update<T, B>({&s.param}, std::make_tuple(s.param - lr * (s.grad + wd * s.param)));
  } else {
    const bool first = this->steps_ == 0;
    const T keep = first ? T(0) : mu, take = first ? T(1) : T(1 - o_.dampening);
    for (std::size_t i = 0; i < slots.size(); ++i) {
      auto& p = slots[i].param;
      const auto& g = slots[i].grad;
      auto& buf = this->state(i, 0);
      const auto new_buf = keep * buf + take * (g + wd * p);
      if (o_.nesterov) {
        fused_update<T, B>({&buf, &p}, std::make_tuple(new_buf, p - lr * ((g + wd * p) + mu * buf)));
      } else {
        fused_update<T, B>({&buf, &p}, std::make_tuple(new_buf, p - lr * buf));
      }
    }
  }
  ++this->steps_;
}

template <class T, class B, bool Decoupled>
void AdamBase<T, B, Decoupled>::update(std::vector<optim::detail::ParamSlot<T, B>>& slots) {
  this->ensure_state(slots);
  const double t = double(this->steps_ + 1);
  const double bc1 = 1 - std::pow(o_.beta1, t), bc2 = 1 - std::pow(o_.beta2, t);
  const T b1 = T(o_.beta1), b2 = T(o_.beta2), eps = T(o_.eps);
  const T step_size = T(this->lr_ / bc1), inv_sqrt_bc2 = T(1 / std::sqrt(bc2));
  const T l2 = Decoupled ? T(0) : T(o_.weight_decay);
  const T shrink = Decoupled ? T(1 - this->lr_ * o_.weight_decay) : T(1);
  for (std::size_t i = 0; i < slots.size(); ++i) {
    auto& p = slots[i].param;
    auto& m = this->state(i, 0);
    auto& v = this->state(i, 1);
    const auto g = slots[i].grad + l2 * p;
    fused_update<T, B>({&m, &v, &p}, std::make_tuple(b1 * m + (T(1) - b1) * g, b2 * v + (T(1) - b2) * square(g),
                                                     shrink * p - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)));
  }
  ++this->steps_;
}

template <class T, class B>
void RMSprop<T, B>::update(std::vector<optim::detail::ParamSlot<T, B>>& slots) {
  this->ensure_state(slots);
  const T a = T(o_.alpha), eps = T(o_.eps), wd = T(o_.weight_decay), lr = T(this->lr_), mu = T(o_.momentum);
  for (std::size_t i = 0; i < slots.size(); ++i) {
    auto& p = slots[i].param;
    auto& v = this->state(i, 0);
    auto& ga = this->state(i, 1);
    auto& buf = this->state(i, 2);
    const auto g = slots[i].grad + wd * p;
    const auto new_v = a * v + (T(1) - a) * square(g);
    const auto new_ga = a * ga + (T(1) - a) * g;
    // Four variants, each one fused pass; the later outputs read the state written before them.
    if (o_.centered && o_.momentum > 0) {
      fused_update<T, B>({&v, &ga, &buf, &p},
                         std::make_tuple(new_v, new_ga, mu * buf + g / (sqrt(v - square(ga)) + eps), p - lr * buf));
    } else if (o_.centered) {
      fused_update<T, B>({&v, &ga, &p}, std::make_tuple(new_v, new_ga, p - lr * g / (sqrt(v - square(ga)) + eps)));
    } else if (o_.momentum > 0) {
      fused_update<T, B>({&v, &buf, &p}, std::make_tuple(new_v, mu * buf + g / (sqrt(v) + eps), p - lr * buf));
    } else {
      fused_update<T, B>({&v, &p}, std::make_tuple(new_v, p - lr * g / (sqrt(v) + eps)));
    }
  }
  ++this->steps_;
}

template <class T, class B>
void Adagrad<T, B>::update(std::vector<optim::detail::ParamSlot<T, B>>& slots) {
  this->ensure_state(slots);
  const T clr = T(this->lr_ / (1 + double(this->steps_) * o_.lr_decay));
  const T eps = T(o_.eps), wd = T(o_.weight_decay);
  for (std::size_t i = 0; i < slots.size(); ++i) {
    auto& p = slots[i].param;
    auto& s = this->state(i, 0);
    const auto g = slots[i].grad + wd * p;
    fused_update<T, B>({&s, &p}, std::make_tuple(s + square(g), p - clr * g / (sqrt(s) + eps)));
  }
  ++this->steps_;
}

// TESSERA_OPTIMIZER_INSTANCES(PREFIX, T): the updates' instantiations for element type T on the
// CPU, each preceded by PREFIX (`extern` declares them; empty defines them, in src/precompiled_*.cpp).
#define TESSERA_OPTIMIZER_INSTANCES(PREFIX, T)                                                          \
  PREFIX template void SGD<T, cpu>::update(std::vector<optim::detail::ParamSlot<T, cpu>>&);             \
  PREFIX template void AdamBase<T, cpu, false>::update(std::vector<optim::detail::ParamSlot<T, cpu>>&); \
  PREFIX template void AdamBase<T, cpu, true>::update(std::vector<optim::detail::ParamSlot<T, cpu>>&);  \
  PREFIX template void RMSprop<T, cpu>::update(std::vector<optim::detail::ParamSlot<T, cpu>>&);         \
  PREFIX template void Adagrad<T, cpu>::update(std::vector<optim::detail::ParamSlot<T, cpu>>&);

#if defined(TESSERA_PRECOMPILED)
TESSERA_OPTIMIZER_INSTANCES(extern, float)
TESSERA_OPTIMIZER_INSTANCES(extern, double)
#endif

}  // namespace tessera::optim
