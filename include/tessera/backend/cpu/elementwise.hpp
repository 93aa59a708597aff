// CPU kernel for one fused elementwise pass: coalesced iteration, SIMD inner loop, thread pool.
#pragma once

#include <vector>

#include "tessera/backend/cpu/device.hpp"
#include "tessera/core/instrument.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/evaluator.hpp"

namespace tessera {

namespace detail {

/// Advances a multi-index over the outer (all but innermost) coalesced axes.
inline void next_outer_index(index_t* idx, const IterPlan& plan) {
  for (int k = plan.rank - 2; k >= 0; --k) {
    if (++idx[k] < plan.dims[k]) return;
    idx[k] = 0;
  }
}
inline void outer_index_of(index_t row, index_t* idx, const IterPlan& plan) {
  for (int k = plan.rank - 2; k >= 0; --k) {
    idx[k] = row % plan.dims[k];
    row /= plan.dims[k];
  }
}

/// Writes ev(j) for j in [j0, j1) to out[j * out_stride].
template <class T, class Ev>
TESSERA_ALWAYS_INLINE void eval_row(const Ev& ev, T* out, index_t out_stride, index_t j0, index_t j1) {
  index_t j = j0;
  if constexpr (Ev::vectorizable && std::is_same_v<typename Ev::value_type, T>) {
    using P = packet_t<T>;
    constexpr index_t ps = packet_size_v<T>;
    if (out_stride == 1) {
      for (; j + 2 * ps <= j1; j += 2 * ps) {
        const P p0 = ev.template packet<P>(j);
        const P p1 = ev.template packet<P>(j + ps);
        Eigen::internal::pstoreu(out + j, p0);
        Eigen::internal::pstoreu(out + j + ps, p1);
      }
      for (; j + ps <= j1; j += ps) Eigen::internal::pstoreu(out + j, ev.template packet<P>(j));
    }
  }
  for (; j < j1; ++j) out[j * out_stride] = static_cast<T>(ev.coeff(j));
}

/// The loop of one pass: out[i] = ev(i) over `total` elements laid out by `plan`, written through
/// `dst_strides`. Templated on the evaluator's type only, not on the expression's: every expression
/// whose evaluator has the same type (a + b over any two materialized operands, say) shares one
/// compiled loop, which keeps the code a model's backward instantiates, and its compile time, down.
template <class T, class Ev>
void run_pass(T* base, const index_t* dst_strides, const IterPlan& plan, const Ev& ev, index_t total) {
  const index_t inner = plan.inner();
  parallel_rows(total, inner, 32768, [&](index_t begin, index_t end) {
    auto local = ev;
    index_t idx[max_rank] = {};
    index_t row = begin / inner;
    index_t j = begin % inner;
    outer_index_of(row, idx, plan);
    while (begin < end) {
      local.seek(idx);
      index_t off = 0;
      for (int k = 0; k + 1 < plan.rank; ++k) off += idx[k] * dst_strides[k];
      const index_t j1 = std::min(inner, j + (end - begin));
      eval_row(local, base + off, dst_strides[plan.rank - 1], j, j1);
      begin += j1 - j;
      j = 0;
      next_outer_index(idx, plan);
    }
  });
}

/// The loop of a pass with several contiguous outputs of one shape (see run_pass). A row is taken
/// in stretches of `multi_output_stretch` elements, each output in turn: a later output that
/// reads an earlier one, or an operand they share, then finds it in L1. Over a whole long row
/// (an optimizer's flat state) each output would be its own pass over memory: Adam's three
/// outputs would move 10 streams instead of 7 (docs/cpu-performance.md). The stretch is a
/// multiple of 16, so split points stay where parallel_rows puts them.
inline constexpr index_t multi_output_stretch = 256;
template <class T, class... Ev, std::size_t... K>
void run_pass_multi(T* const* outs, const IterPlan& plan, const std::tuple<Ev...>& evs, index_t total,
                    std::index_sequence<K...>) {
  const index_t inner = plan.inner();
  parallel_rows(total, inner, 32768, [&](index_t begin, index_t end) {
    auto local = evs;
    index_t idx[max_rank] = {};
    index_t row = begin / inner;
    index_t j = begin % inner;
    outer_index_of(row, idx, plan);
    while (begin < end) {
      (std::get<K>(local).seek(idx), ...);
      const index_t off = row * inner;  // contiguous destinations
      const index_t j1 = std::min(inner, j + (end - begin));
      for (index_t s = j; s < j1; s += multi_output_stretch) {
        const index_t s1 = std::min(j1, s + multi_output_stretch);
        (eval_row(std::get<K>(local), outs[K] + off, 1, s, s1), ...);
      }
      begin += j1 - j;
      j = 0;
      ++row;
      next_outer_index(idx, plan);
    }
  });
}

}  // namespace detail

/// One fused pass: dst[i] = expr[i] for every element of dst (expr broadcast to dst's shape).
/// The caller has checked shapes and aliasing.
template <class T, std::size_t R, class E>
void elementwise_assign(cpu, Tensor<T, R, cpu>& dst, const E& expr) {
  const index_t total = dst.size();
  if (total == 0) return;
  instrument::count_elementwise_pass();
  const detail::IterPlan plan = detail::pass_plan(dst.shape(), dst.strides(), expr);
  index_t dst_strides[max_rank];
  plan.map(dst.strides(), dst_strides);
  detail::run_pass(dst.data(), dst_strides, plan, detail::make_evaluator(expr, dst.shape(), plan), total);
}

}  // namespace tessera

namespace tessera {

/// One pass writing several outputs of the same shape: dsts[k] = exprs[k] (autodiff writes all
/// same-shaped gradients this way). Every dst must be contiguous; the caller checks shapes.
template <class T, std::size_t R, class... E, std::size_t... K>
void elementwise_assign_multi(cpu, const std::array<Tensor<T, R, cpu>*, sizeof...(E)>& dsts, const std::tuple<E...>& exprs,
                              std::index_sequence<K...>) {
  const Shape<R> shape = dsts[0]->shape();
  const index_t total = numel(shape);
  if (total == 0) return;
  instrument::count_elementwise_pass();
  const detail::IterPlan plan = detail::pass_plan(shape, dsts[0]->strides(), std::get<K>(exprs)...);
  const auto evs = std::make_tuple(detail::make_evaluator(std::get<K>(exprs), shape, plan)...);
  T* const outs[] = {dsts[K]->data()...};
  detail::run_pass_multi(outs, plan, evs, total, std::index_sequence<K...>{});
}

}  // namespace tessera
