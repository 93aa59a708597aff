// Modules: layers and models as plain structs whose members are declared once, by name.
//
// A module derives from nn::Module<Self> and lists its members:
//
//   struct Block : nn::Module<Block> {
//     nn::Linear<> fc1{784, 128}, fc2{128, 10};
//     auto members() { return std::make_tuple(nn::child("fc1", fc1), nn::child("fc2", fc2)); }
//     template <class X> auto operator()(const X& x) const { return fc2(relu(fc1(x))); }
//   };
//
// From that one list come the hierarchical names ("fc1.weight"), parameter counts, train/eval mode
// and the parameters() tuple through which tessera::grad treats a module as a parameter struct:
// `auto [g] = grad(loss, model)` returns the gradients as a module of the same type.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/core/tensor.hpp"

namespace tessera::nn {

namespace detail {
template <class M, class = void>
struct has_type_name : std::false_type {};
template <class M>
struct has_type_name<M, std::void_t<decltype(M::type_name)>> : std::true_type {};

/// A layer's type as summaries and error messages show it ("Conv2d"); "Module" for user modules
/// without a `type_name`.
template <class M>
std::string type_name_of() {
  if constexpr (has_type_name<M>::value) {
    return M::type_name;
  } else {
    return "Module";
  }
}
}  // namespace detail

/// A trainable tensor of a module, with its name.
template <class TensorType>
struct ParameterMember {
  std::string_view name;
  TensorType& tensor;
  bool present = true;  ///< false: kept at zero and not reported (Linear with bias = false)
};
/// A tensor a module keeps but does not train (BatchNorm's running statistics).
template <class TensorType>
struct BufferMember {
  std::string_view name;
  TensorType& tensor;
  bool present = true;  ///< false: not used and not reported (BatchNorm without running statistics)
};
/// A submodule, with its name (Sequential names its layers "0", "1", ...).
template <class M>
struct ChildMember {
  std::string name;
  M& module;
};

template <class T, std::size_t R, class B>
ParameterMember<Tensor<T, R, B>> param(std::string_view name, Tensor<T, R, B>& t, bool present = true) {
  return {name, t, present};
}
template <class T, std::size_t R, class B>
BufferMember<Tensor<T, R, B>> buffer(std::string_view name, Tensor<T, R, B>& t, bool present = true) {
  return {name, t, present};
}
template <class M>
ChildMember<M> child(std::string name, M& m) {
  return {std::move(name), m};
}

namespace detail {
template <class M>
struct is_parameter_member : std::false_type {};
template <class X>
struct is_parameter_member<ParameterMember<X>> : std::true_type {};
template <class M>
struct is_buffer_member : std::false_type {};
template <class X>
struct is_buffer_member<BufferMember<X>> : std::true_type {};
template <class M>
struct is_child_member : std::false_type {};
template <class X>
struct is_child_member<ChildMember<X>> : std::true_type {};

inline std::string join_name(const std::string& prefix, std::string_view name) {
  return prefix.empty() ? std::string(name) : prefix + "." + std::string(name);
}
}  // namespace detail

namespace detail {
/// The tensors of one kind (parameters, or buffers when Buffers) of m and its submodules, in
/// declaration order, as one flat std::tuple of references; absent ones included, so the tuple's
/// type does not depend on options.
template <bool Buffers, class M>
auto member_tensors(M& m) {
  return std::apply(
      [](auto&&... member) {
        auto one = [](auto& mb) {
          using Mb = std::decay_t<decltype(mb)>;
          if constexpr (Buffers ? is_buffer_member<Mb>::value : is_parameter_member<Mb>::value) {
            return std::tie(mb.tensor);
          } else if constexpr (is_child_member<Mb>::value) {
            return member_tensors<Buffers>(mb.module);
          } else {
            return std::tuple<>{};
          }
        };
        (void)one;
        return std::tuple_cat(one(member)...);
      },
      m.members());
}

/// The hierarchical names of member_tensors' tensors, and which are present.
struct MemberNames {
  std::vector<std::string> names;
  std::vector<bool> present;
};
template <bool Buffers, class M>
void collect_member_names(M& m, const std::string& prefix, MemberNames& out) {
  std::apply(
      [&](auto&&... member) {
        auto one = [&](auto& mb) {
          using Mb = std::decay_t<decltype(mb)>;
          if constexpr (Buffers ? is_buffer_member<Mb>::value : is_parameter_member<Mb>::value) {
            out.names.push_back(join_name(prefix, mb.name));
            out.present.push_back(mb.present);
          } else if constexpr (is_child_member<Mb>::value) {
            collect_member_names<Buffers>(mb.module, join_name(prefix, mb.name), out);
          }
        };
        (void)one;  // unused for modules without members
        (one(member), ...);
      },
      m.members());
}

/// Calls f(name, tensor) for every present tensor of member_tensors<Buffers>(m). The walk over the
/// module tree does not depend on f, so it is compiled once per module type, not once per caller.
template <bool Buffers, class M, class F>
void for_each_member_tensor(M& m, F& f, const std::string& prefix) {
  MemberNames info;
  collect_member_names<Buffers>(m, prefix, info);
  std::size_t i = 0;
  auto visit = [&](auto& t) {
    if (info.present[i]) f(std::as_const(info.names[i]), t);
    ++i;
  };
  std::apply([&](auto&... t) { (visit(t), ...); }, member_tensors<Buffers>(m));
}
}  // namespace detail

/// Calls f(name, tensor) for every parameter of m and its submodules, in declaration order, with
/// hierarchical names ("0.weight", "conv1.bias").
template <class M, class F>
void for_each_parameter(M& m, F&& f, const std::string& prefix = "") {
  detail::for_each_member_tensor<false>(m, f, prefix);
}

/// Calls f(name, tensor) for every buffer of m and its submodules.
template <class M, class F>
void for_each_buffer(M& m, F&& f, const std::string& prefix = "") {
  detail::for_each_member_tensor<true>(m, f, prefix);
}

/// Calls f(name, module) for m's direct submodules.
template <class M, class F>
void for_each_child(M& m, F&& f) {
  std::apply(
      [&](auto&&... member) {
        auto one = [&](auto& mb) {
          if constexpr (detail::is_child_member<std::decay_t<decltype(mb)>>::value) f(mb.name, mb.module);
        };
        (void)one;  // unused for modules without members
        (one(member), ...);
      },
      m.members());
}

/// Every parameter of m as one flat std::tuple of references (the autodiff parameter protocol;
/// absent ones included, so the tuple's type does not depend on options).
template <class M>
auto parameter_tuple(M& m) {
  return detail::member_tensors<false>(m);
}

/// Number of trainable scalars in m.
template <class M>
index_t parameter_count(M& m) {
  index_t n = 0;
  for_each_parameter(m, [&](const std::string&, const auto& t) { n += t.size(); });
  return n;
}

/// Base of every module: train/eval mode and the parameter protocol, derived from members().
template <class Self>
class Module {
 public:
  /// Whether the module is in training mode (Dropout drops, BatchNorm uses batch statistics).
  bool is_training() const noexcept { return training_; }
  /// Sets training mode on this module and every submodule.
  void train(bool on = true) {
    training_ = on;
    for_each_child(self(), [&](const std::string&, auto& c) { c.train(on); });
  }
  /// Evaluation mode: train(false).
  void eval() { train(false); }

  /// The parameters as a tuple of references (what tessera::grad and the optimizers read).
  auto parameters() { return parameter_tuple(self()); }

 private:
  Self& self() { return static_cast<Self&>(*this); }
  bool training_ = true;
};

/// Calls f(module) for m and every submodule, parents before their children.
template <class M, class F>
void for_each_module(M& m, F&& f) {
  f(m);
  for_each_child(m, [&](const std::string&, auto& c) { for_each_module(c, f); });
}

/// Sets a model's training mode for a scope (evaluate, predict, summaries, graph tracing), then
/// gives every module its own mode back -- a BatchNorm frozen in eval stays frozen. Restored
/// parents first: train(on) recurses, so each child's own flag is set after its parent's.
template <class M>
class ModeGuard {
 public:
  ModeGuard(M& m, bool training) : model_(m) {
    for_each_module(model_, [&](auto& x) { modes_.push_back(x.is_training()); });
    model_.train(training);
  }
  ~ModeGuard() {
    std::size_t i = 0;
    for_each_module(model_, [&](auto& x) { x.train(modes_[i++]); });
  }
  ModeGuard(const ModeGuard&) = delete;
  ModeGuard& operator=(const ModeGuard&) = delete;

 private:
  M& model_;
  std::vector<bool> modes_;
};

/// Modules without members (activations, pooling, Flatten) derive from this.
template <class Self>
struct Stateless : Module<Self> {
  std::tuple<> members() { return {}; }
};

}  // namespace tessera::nn
