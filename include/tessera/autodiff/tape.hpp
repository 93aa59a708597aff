// The run-time tape: the escape hatch for what cannot be one static expression -- loops whose trip
// count depends on the data, variable-length sequences, beam search. Each recorded step is a whole
// static expression (differentiated at compile time through vjp); the tape only remembers the order
// of steps. Nothing is recorded per scalar.
//
//   Tape tape;
//   auto W = tape.variable(W0), b = tape.variable(b0), x = tape.variable(x0);
//   do { prev = x; x = tape.apply([](const auto& W, const auto& x, const auto& b) {
//          return tanh(matmul(W, x) + b); }, W, x, b);
//   } while (change(prev, x) > tol);
//   auto loss = tape.apply([](const auto& x) { return sum(square(x)); }, x);
//   auto [dW, db] = tape.gradient(loss, W, b);
#pragma once

#include <any>
#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "tessera/autodiff/grad.hpp"

namespace tessera {

class Tape;

/// A value recorded on a tape: its tensor and the step that produced it.
template <class T, std::size_t R, class B = cpu>
class TapeValue {
 public:
  using tensor_type = Tensor<T, R, B>;
  const tensor_type& value() const noexcept { return value_; }
  std::size_t id() const noexcept { return id_; }

 private:
  friend class Tape;
  TapeValue(tensor_type v, std::size_t id) : value_(std::move(v)), id_(id) {}
  tensor_type value_;
  std::size_t id_;
};

/// Records steps in execution order and runs them backwards for gradients. The recorded steps
/// hold no pointer to the tape (they are handed its adjoints when run), so a tape may be copied
/// (the copy continues independently) or moved like any value.
class Tape {
 public:
  /// Starts tracking a tensor (an input or a parameter).
  template <class T, std::size_t R, class B>
  TapeValue<T, R, B> variable(const Tensor<T, R, B>& t) {
    adjoints_.emplace_back();
    return TapeValue<T, R, B>(t, adjoints_.size() - 1);
  }

  /// Evaluates f on the inputs' values as one static expression and records its pullback.
  template <class F, class... V>
  auto apply(F&& f, const V&... inputs) {
    auto [out, pullback] = vjp(f, inputs.value()...);
    using OutTensor = decltype(out);
    adjoints_.emplace_back();
    const std::size_t out_id = adjoints_.size() - 1;
    const std::array<std::size_t, sizeof...(V)> in_ids{inputs.id()...};
    steps_.push_back([out_id, in_ids, pullback = std::move(pullback)](std::vector<std::any>& adjoints) {
      if (!adjoints[out_id].has_value()) return;  // the output did not reach the loss
      const auto& cot = std::any_cast<const OutTensor&>(adjoints[out_id]);
      auto grads = pullback(cot);
      accumulate_all(adjoints, grads, in_ids, std::index_sequence_for<V...>{});
    });
    return TapeValue<value_type_t<OutTensor>, rank_v<OutTensor>, backend_t<OutTensor>>(out, out_id);
  }

  /// Gradients of a scalar tape value with respect to the given tape values (zeros for those the
  /// loss does not depend on). The tape can be differentiated again for another loss.
  template <class T, class B, class... V>
  auto gradient(const TapeValue<T, 0, B>& loss, const V&... wrt) {
    for (auto& a : adjoints_) a.reset();
    adjoints_[loss.id()] = Tensor<T, 0, B>(T(1));
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) (*it)(adjoints_);
    return std::make_tuple(adjoint_or_zero(wrt)...);
  }

  /// Number of recorded steps.
  std::size_t size() const noexcept { return steps_.size(); }

 private:
  template <class Grads, std::size_t N, std::size_t... K>
  static void accumulate_all(std::vector<std::any>& adjoints, Grads& grads, const std::array<std::size_t, N>& ids,
                             std::index_sequence<K...>) {
    (accumulate(adjoints, ids[K], std::get<K>(grads)), ...);
  }
  template <class G>
  static void accumulate(std::vector<std::any>& adjoints, std::size_t id, const G& g) {
    auto& slot = adjoints[id];
    if (!slot.has_value()) {
      slot = g;
    } else {
      auto& acc = std::any_cast<G&>(slot);
      acc = eval(acc + g);
    }
  }
  template <class V>
  auto adjoint_or_zero(const V& v) const {
    using TT = typename V::tensor_type;
    const auto& slot = adjoints_[v.id()];
    if (!slot.has_value()) return zeros_like(v.value());
    return std::any_cast<const TT&>(slot);
  }

  std::vector<std::function<void(std::vector<std::any>&)>> steps_;
  std::vector<std::any> adjoints_;  // one per tape value; empty until an adjoint arrives
};

}  // namespace tessera
