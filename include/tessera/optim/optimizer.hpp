// What every optimizer shares: the parameters and gradients of a module paired by name, state
// tensors named after their parameter ("0.weight.exp_avg"), and the fused update that reads the
// parameter, gradient and state and writes parameter and state in ONE pass over memory.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/factories.hpp"
#include "tessera/core/numerics.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::optim {

/// One named state tensor of an optimizer, flat, with the shape of its parameter (for checkpoints).
template <class T, class B = cpu>
struct NamedState {
  std::string name;
  Tensor<T, 1, B> value;  ///< shares storage with the optimizer: writing it restores the state
  std::vector<index_t> shape;
};

namespace detail {

/// A parameter and its gradient, flattened (views of the same storage).
template <class T, class B>
struct ParamSlot {
  std::string name;
  Tensor<T, 1, B> param;
  Tensor<T, 1, B> grad;
  std::vector<index_t> shape;
};

/// Pairs the parameters of `model` with those of `grads` (a module of the same type, as
/// tessera::grad returns it), checking names and shapes.
template <class T, class B, class M>
std::vector<ParamSlot<T, B>> pair_parameters(M& model, M& grads, const char* who) {
  std::vector<ParamSlot<T, B>> slots;
  nn::for_each_parameter(model, [&](const std::string& name, auto& p) {
    using P = std::decay_t<decltype(p)>;
    static_assert(std::is_same_v<value_type_t<P>, T> && std::is_same_v<backend_t<P>, B>,
                  "tessera::optim: the optimizer's element type or backend differs from a parameter's");
    if (!p.is_contiguous()) throw value_error(std::string(who) + ": parameter " + name + " is not contiguous");
    std::vector<index_t> shape(p.shape().begin(), p.shape().end());
    slots.push_back({name, p.flatten(), Tensor<T, 1, B>(), std::move(shape)});
  });
  std::size_t k = 0;
  nn::for_each_parameter(grads, [&](const std::string& name, auto& g) {
    if (k >= slots.size() || slots[k].name != name) {
      throw value_error(std::string(who) + ": the gradients do not match the model's parameters (at " + name + ")");
    }
    std::vector<index_t> shape(g.shape().begin(), g.shape().end());
    if (shape != slots[k].shape) {
      throw shape_error(std::string(who) + ": gradient of " + name + " has shape " + shape_to_string(g.shape()) +
                        ", the parameter has another");
    }
    slots[k].grad = g.is_contiguous() ? g.flatten() : g.clone().flatten();
    ++k;
  });
  if (k != slots.size()) throw value_error(std::string(who) + ": fewer gradients than parameters");
  return slots;
}

}  // namespace detail

/// Writes dsts[0] = exprs[0], dsts[1] = exprs[1], ... in one pass over memory. Within each stretch
/// of elements the outputs are written in order, so a later expression that reads an earlier
/// destination sees its new value (how the parameter update reads the state just updated).
template <class T, class B, class... E>
void fused_update(const std::array<Tensor<T, 1, B>*, sizeof...(E)>& dsts, const std::tuple<E...>& exprs) {
  for (const auto* d : dsts) {
    if (d->shape() != dsts[0]->shape() || !d->is_contiguous()) {
      throw shape_error("optimizer update: state and parameter buffers differ in shape or are not contiguous");
    }
  }
  elementwise_assign_multi(B{}, dsts, exprs, std::index_sequence_for<E...>{});
  for (const auto* d : dsts) tessera::detail::check_numerics_hook(*d, "optimizer update");
}

/// Base of the optimizers: learning rate, step count and the named state, made on first use.
template <class T, class B>
class OptimizerBase {
 public:
  /// `state_names`: the state each parameter gets ("exp_avg", ...), filled with `initial`.
  OptimizerBase(double lr, std::vector<std::string> state_names, T initial = T(0))
      : lr_(lr), state_names_(std::move(state_names)), initial_(initial) {
    if (!(lr >= 0)) throw value_error("optimizer: learning rate must be non-negative, got " + std::to_string(lr));
  }
  double lr() const noexcept { return lr_; }
  void set_lr(double lr) {
    if (!(lr >= 0)) throw value_error("optimizer: learning rate must be non-negative, got " + std::to_string(lr));
    lr_ = lr;
  }
  /// Steps taken so far (restored from checkpoints with set_step_count).
  std::int64_t step_count() const noexcept { return steps_; }
  void set_step_count(std::int64_t s) noexcept { steps_ = s; }

  /// Creates the state for model's parameters now (a step does it otherwise), so that a checkpoint
  /// can be loaded into named_state() before the first step.
  template <class M>
  void prepare(M& model) {
    ensure_state(detail::pair_parameters<T, B>(model, model, "optimizer"));
  }

  /// Every state tensor, named "<parameter>.<state>" (empty before the first step or prepare).
  std::vector<NamedState<T, B>> named_state() const {
    std::vector<NamedState<T, B>> out;
    for (std::size_t i = 0; i < names_.size(); ++i) {
      for (std::size_t k = 0; k < state_names_.size(); ++k) {
        out.push_back({names_[i] + "." + state_names_[k], state_[i][k], shapes_[i]});
      }
    }
    return out;
  }

 protected:
  /// Makes the state on first use; afterwards checks that the parameters are still the same.
  void ensure_state(const std::vector<detail::ParamSlot<T, B>>& slots) {
    if (state_names_.empty()) return;  // a stateless rule (plain SGD)
    if (!names_.empty()) {
      if (names_.size() != slots.size()) throw value_error("optimizer: the model's parameters changed between steps");
      for (std::size_t i = 0; i < slots.size(); ++i) {
        if (names_[i] != slots[i].name || shapes_[i] != slots[i].shape) {
          throw value_error("optimizer: parameter " + slots[i].name + " changed between steps");
        }
      }
      return;
    }
    for (const auto& s : slots) {
      names_.push_back(s.name);
      shapes_.push_back(s.shape);
      std::vector<Tensor<T, 1, B>> st;
      for (std::size_t k = 0; k < state_names_.size(); ++k) st.push_back(full<T, B>(s.param.shape(), initial_));
      state_.push_back(std::move(st));
    }
  }
  /// State k of parameter i.
  Tensor<T, 1, B>& state(std::size_t i, std::size_t k) { return state_[i][k]; }

  double lr_;
  std::int64_t steps_ = 0;

 private:
  std::vector<std::string> state_names_;
  T initial_;
  std::vector<std::string> names_;
  std::vector<std::vector<index_t>> shapes_;
  std::vector<std::vector<Tensor<T, 1, B>>> state_;
};

}  // namespace tessera::optim
