// GradientArena: parameter gradients laid out in one buffer per element type, so that a
// data-parallel step can sum runs of them with one collective call each, without copying them
// into a bucket and back (docs/distributed.md, "Buckets").
//
//   GradientArena arena;
//   arena.begin_layout();
//   for (each parameter p, in order) arena.add(p);
//   arena.end_layout();               // keeps the buffers when the parameters are the same as before
//   {
//     GradientArena::Use use(arena);  // value_and_grad on this thread writes into the slots
//     auto [loss, grads] = value_and_grad(f, model);
//   }
//
// While a Use is open, the next value_and_grad (or grad) of a parameter struct on this thread gives
// each added parameter a gradient that is a view of its slot; the grad and vjp calls nested in it
// (inside f, or a scan's steps during its sweep) run without the arena. A weight's gradient that a
// materialization node computes (a matmul, a convolution's filter gradient) is computed into the
// slot directly; any other gradient is computed as usual and copied in. The values are the same
// bits either way. The slots are reused every step: a gradient from an earlier step that is still
// held is overwritten by the next value_and_grad under a Use of the same arena.
//
// Only contiguous float and double CPU tensors get slots; other parameters keep gradients of their
// own, as without an arena.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <type_traits>
#include <vector>

#include "tessera/core/tensor.hpp"

namespace tessera {

class GradientArena {
  /// The tensors that can have a slot (of the right layout: contiguous).
  template <class T, class B>
  static constexpr bool slotted_v = std::is_same_v<B, cpu> && (std::is_same_v<T, float> || std::is_same_v<T, double>);

 public:
  /// Slots start at multiples of this many bytes: every gradient is as aligned as a tensor of its
  /// own would be, and the bytes between two slots stay zero (summing them is harmless).
  static constexpr std::size_t slot_alignment = 64;

  GradientArena() = default;
  GradientArena(const GradientArena&) = delete;
  GradientArena& operator=(const GradientArena&) = delete;

  /// Starts listing the parameters (add each in order, then end_layout).
  void begin_layout() { pending_.clear(); }

  /// Lists a parameter; one that cannot have a slot (not a contiguous float or double CPU tensor),
  /// or that is a tensor listed before (tied weights), is skipped.
  template <class T, std::size_t R, class B>
  void add(const Tensor<T, R, B>& parameter) {
    if constexpr (slotted_v<T, B>) {
      const Slot s = key(parameter);
      if (!parameter.is_contiguous() || s.count == 0) return;
      for (const auto& p : pending_) {
        if (same_tensor(p, s)) return;
      }
      pending_.push_back(s);
    }
  }

  /// Lays the listed parameters out in order, one buffer per element type. Keeps the buffers (and
  /// so the gradients' addresses) when the list is the one of the last layout.
  void end_layout() {
    if (same_parameters()) return;
    claimed_.clear();
    finished_.clear();
    slots_ = std::move(pending_);
    pending_.clear();
    std::size_t bytes[2] = {0, 0};
    for (auto& s : slots_) {
      s.offset = bytes[s.type];
      bytes[s.type] += round_up(s.count * element_size(s.type));
    }
    for (int t = 0; t < 2; ++t) {
      buffers_[t].reset();
      if (bytes[t] == 0) continue;
      void* memory = ::operator new (bytes[t], std::align_val_t{slot_alignment});
      buffers_[t] =
          std::shared_ptr<void>(memory, [](void* p) { ::operator delete (p, std::align_val_t{slot_alignment}); });
      std::memset(memory, 0, bytes[t]);  // the padding between slots must read as zeros on every rank
    }
  }

  /// The number of parameters with a slot.
  std::size_t slots() const noexcept { return slots_.size(); }

  /// The slot of `parameter` (the same tensor as one added: storage, first element and size), as
  /// a contiguous tensor of its shape; empty when it has none.
  template <class T, std::size_t R, class B>
  std::optional<Tensor<T, R, B>> slot_of(const Tensor<T, R, B>& parameter) const {
    if constexpr (slotted_v<T, B>) {
      if (const Slot* s = slot_for(parameter)) return view(*s, parameter);
    }
    return std::nullopt;
  }

  /// Called by value_and_grad before its sweep: every slot may be claimed and finished once again.
  void begin_sweep() const {
    claimed_.assign(slots_.size(), 0);
    finished_.assign(slots_.size(), 0);
  }

  /// The slot of `leaf` when it is an added parameter (or a contiguous view of all of it) whose
  /// slot no adjoint has claimed in this sweep: the sweep may compute the leaf's adjoint into it.
  /// A second adjoint of the same parameter gets none (it would overwrite the first).
  template <class T, std::size_t R, class B>
  std::optional<Tensor<T, R, B>> claim(const Tensor<T, R, B>& leaf) const {
    if constexpr (slotted_v<T, B>) {
      if (const Slot* s = slot_for(leaf)) {
        const auto i = static_cast<std::size_t>(s - slots_.data());
        if (i < claimed_.size() && !claimed_[i]) {  // (none before begin_sweep)
          claimed_[i] = 1;
          return view(*s, leaf);
        }
      }
    }
    return std::nullopt;
  }

  /// Called by value_and_grad after its sweep for each parameter: the slot of `parameter` holding
  /// its `gradient` (copied in unless the sweep computed it there; zeros when no contribution
  /// reached it and it has no storage). Empty when the parameter has no slot, or when a parameter
  /// listed before it was the same tensor (that one has the slot).
  template <class T, std::size_t R, class B>
  std::optional<Tensor<T, R, B>> finish(const Tensor<T, R, B>& parameter, const Tensor<T, R, B>& gradient) const {
    if constexpr (slotted_v<T, B>) {
      const Slot* s = slot_for(parameter);
      const bool unset = gradient.storage_id() == nullptr;
      if (s == nullptr || (!unset && gradient.shape() != parameter.shape())) return std::nullopt;
      const auto i = static_cast<std::size_t>(s - slots_.data());
      if (i >= finished_.size() || finished_[i]) return std::nullopt;  // (none before begin_sweep)
      finished_[i] = 1;
      Tensor<T, R, B> slot = view(*s, parameter);
      const std::size_t bytes = s->count * sizeof(T);
      if (unset) {
        std::memset(slot.data(), 0, bytes);
      } else if (gradient.data() != slot.data()) {
        const Tensor<T, R, B> dense = gradient.contiguous();
        std::memcpy(slot.data(), dense.data(), bytes);
      }
      return slot;
    }
    return std::nullopt;
  }

  /// Whether `next` is the slot that follows the slot starting at `data` in the same buffer, with
  /// only zeroed padding between them (less than slot_alignment bytes).
  bool adjacent(const void* data, const void* next) const noexcept {
    for (std::size_t i = 0; i + 1 < slots_.size(); ++i) {
      if (address(slots_[i]) != data) continue;
      for (std::size_t j = i + 1; j < slots_.size(); ++j) {
        if (slots_[j].type == slots_[i].type) return address(slots_[j]) == next;
      }
      return false;
    }
    return false;
  }

  /// Makes value_and_grad on this thread write gradients into `arena`'s slots while it lives.
  class Use {
   public:
    explicit Use(const GradientArena& arena) : previous_(active()) { active() = &arena; }
    ~Use() { active() = previous_; }
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;

   private:
    const GradientArena* previous_;
  };

  /// The arena in use on this thread, or null.
  static const GradientArena*& active() {
    thread_local const GradientArena* arena = nullptr;
    return arena;
  }

 private:
  struct Slot {
    const void* storage;
    const void* data;
    std::size_t count;
    int type;            // 0: float, 1: double
    std::size_t offset;  // bytes into buffers_[type]
  };

  template <class T>
  static constexpr int type_of() {
    return std::is_same_v<T, float> ? 0 : 1;
  }
  static std::size_t element_size(int type) { return type == 0 ? sizeof(float) : sizeof(double); }
  static std::size_t round_up(std::size_t bytes) {
    return (bytes + slot_alignment - 1) / slot_alignment * slot_alignment;
  }

  template <class T, std::size_t R, class B>
  static Slot key(const Tensor<T, R, B>& t) {
    return Slot{t.storage_id(), t.data(), static_cast<std::size_t>(t.size()), type_of<T>(), 0};
  }
  /// The slot of a contiguous tensor with the storage, first element, size and type of an added
  /// parameter, or null.
  template <class T, std::size_t R, class B>
  const Slot* slot_for(const Tensor<T, R, B>& t) const {
    if (!t.is_contiguous()) return nullptr;
    const Slot k = key(t);
    for (const auto& s : slots_) {
      if (same_tensor(s, k)) return &s;
    }
    return nullptr;
  }
  static bool same_tensor(const Slot& a, const Slot& b) {
    return a.storage == b.storage && a.data == b.data && a.count == b.count && a.type == b.type;
  }
  bool same_parameters() const {
    if (pending_.size() != slots_.size()) return false;
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (!same_tensor(pending_[i], slots_[i])) return false;
    }
    return true;
  }
  const void* address(const Slot& s) const {
    return static_cast<const unsigned char*>(buffers_[s.type].get()) + s.offset;
  }
  /// Slot `s` as a contiguous tensor of `like`'s shape.
  template <class T, std::size_t R, class B>
  Tensor<T, R, B> view(const Slot& s, const Tensor<T, R, B>& like) const {
    const auto& base = buffers_[s.type];
    T* data = reinterpret_cast<T*>(static_cast<unsigned char*>(base.get()) + s.offset);
    return Tensor<T, R, B>::view_of(std::shared_ptr<T>(base, data), data, like.shape(),
                                    contiguous_strides(like.shape()));
  }

  std::vector<Slot> slots_, pending_;
  // Per slot, in the current sweep (an arena is in use on one thread at a time).
  mutable std::vector<char> claimed_, finished_;
  std::shared_ptr<void> buffers_[2];
};

}  // namespace tessera
