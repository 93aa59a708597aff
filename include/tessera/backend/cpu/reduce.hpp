// CPU kernels for reductions over any set of axes (reading a fused elementwise input), for
// prod's gradient (exclusive products) and for argmax/argmin along one axis.
#pragma once

#include <algorithm>
#include <array>
#include <limits>
#include <type_traits>
#include <vector>

#include "tessera/backend/cpu/device.hpp"
#include "tessera/backend/cpu/elementwise.hpp"
#include "tessera/core/config.hpp"
#include "tessera/core/instrument.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/evaluator.hpp"

namespace tessera {

namespace detail {

/// Folds ev(j) for j in [j0, j1) into acc with the reducer (SIMD when both allow it).
template <class Red, class T, class Ev>
TESSERA_ALWAYS_INLINE T reduce_row(const Red& red, const Ev& ev, index_t j0, index_t j1, T acc) {
  index_t j = j0;
  if constexpr (Ev::vectorizable && std::is_same_v<typename Ev::value_type, T> && Red::template vectorizable<T>) {
    using P = packet_t<T>;
    constexpr index_t ps = packet_size_v<T>;
    if (j1 - j >= 4 * ps) {
      const P id = Eigen::internal::pset1<P>(Red::template identity<T>());
      P a0 = id, a1 = id, a2 = id, a3 = id;
      for (; j + 4 * ps <= j1; j += 4 * ps) {
        a0 = red.packet(a0, ev.template packet<P>(j));
        a1 = red.packet(a1, ev.template packet<P>(j + ps));
        a2 = red.packet(a2, ev.template packet<P>(j + 2 * ps));
        a3 = red.packet(a3, ev.template packet<P>(j + 3 * ps));
      }
      for (; j + ps <= j1; j += ps) a0 = red.packet(a0, ev.template packet<P>(j));
      acc = red(acc, red.reduce_packet(red.packet(red.packet(a0, a1), red.packet(a2, a3))));
    }
  }
  for (; j < j1; ++j) acc = red(acc, static_cast<T>(ev.coeff(j)));
  return acc;
}

/// out[j] = red(out[j], ev(j)) for j in [j0, j1).
template <class Red, class T, class Ev>
TESSERA_ALWAYS_INLINE void accumulate_row(const Red& red, const Ev& ev, T* out, index_t j0, index_t j1) {
  index_t j = j0;
  if constexpr (Ev::vectorizable && std::is_same_v<typename Ev::value_type, T> && Red::template vectorizable<T>) {
    using P = packet_t<T>;
    constexpr index_t ps = packet_size_v<T>;
    for (; j + ps <= j1; j += ps) {
      Eigen::internal::pstoreu(out + j, red.packet(Eigen::internal::ploadu<P>(out + j), ev.template packet<P>(j)));
    }
  }
  for (; j < j1; ++j) out[j] = red(out[j], static_cast<T>(ev.coeff(j)));
}

/// out[i] = g times the product of x[j] over j in [0, n), j != i. Exclusive products need prefix
/// and suffix products, two chains of dependent multiplications; here they run as W independent
/// chains at once (four SIMD registers): x is read as rows of W elements, column c's chain
/// multiplies x[c], x[c + W], ..., and the product of the other columns' totals (and of the tail
/// after the last full row) completes each element. Two passes, no division, so zeros need no
/// special case.
template <class T>
void exclusive_products_contiguous(const T* x, T* out, index_t n, T g) {
  namespace pk = Eigen::internal;
  using P = packet_t<T>;
  constexpr index_t S = packet_size_v<T>;
  constexpr index_t W = 4 * S;
  const index_t rows = n / W, body = rows * W;
  // Down the columns: out = the product of the column's elements above.
  P a0 = pk::pset1<P>(T(1)), a1 = a0, a2 = a0, a3 = a0;
  for (index_t r = 0; r < rows; ++r) {
    const T* xr = x + r * W;
    T* o = out + r * W;
    pk::pstoreu(o, a0);
    pk::pstoreu(o + S, a1);
    pk::pstoreu(o + 2 * S, a2);
    pk::pstoreu(o + 3 * S, a3);
    a0 = pk::pmul(a0, pk::ploadu<P>(xr));
    a1 = pk::pmul(a1, pk::ploadu<P>(xr + S));
    a2 = pk::pmul(a2, pk::ploadu<P>(xr + 2 * S));
    a3 = pk::pmul(a3, pk::ploadu<P>(xr + 3 * S));
  }
  std::array<T, W> column;  // each column's product
  pk::pstoreu(column.data(), a0);
  pk::pstoreu(column.data() + S, a1);
  pk::pstoreu(column.data() + 2 * S, a2);
  pk::pstoreu(column.data() + 3 * S, a3);
  // The tail (n % W elements): exclusive products within it, times the body's product.
  T tail_product(1), body_product(1);
  for (index_t i = body; i < n; ++i) {
    out[i] = tail_product;
    tail_product *= x[i];
  }
  for (index_t c = 0; c < W; ++c) body_product *= column[c];
  T after = g;
  for (index_t i = n - 1; i >= body; --i) {
    out[i] *= after * body_product;
    after *= x[i];
  }
  if (rows == 0) return;
  // Each column's factor from outside it: the other columns' products and the tail's.
  std::array<T, W> outside;
  T before = g;
  for (index_t c = 0; c < W; ++c) {
    outside[c] = before;
    before *= column[c];
  }
  after = tail_product;
  for (index_t c = W - 1; c >= 0; --c) {
    outside[c] *= after;
    after *= column[c];
  }
  // Up the columns: times the product of the column's elements below and the outside factor.
  a0 = pk::ploadu<P>(outside.data());
  a1 = pk::ploadu<P>(outside.data() + S);
  a2 = pk::ploadu<P>(outside.data() + 2 * S);
  a3 = pk::ploadu<P>(outside.data() + 3 * S);
  for (index_t r = rows - 1; r >= 0; --r) {
    const T* xr = x + r * W;
    T* o = out + r * W;
    pk::pstoreu(o, pk::pmul(pk::ploadu<P>(o), a0));
    pk::pstoreu(o + S, pk::pmul(pk::ploadu<P>(o + S), a1));
    pk::pstoreu(o + 2 * S, pk::pmul(pk::ploadu<P>(o + 2 * S), a2));
    pk::pstoreu(o + 3 * S, pk::pmul(pk::ploadu<P>(o + 3 * S), a3));
    a0 = pk::pmul(a0, pk::ploadu<P>(xr));
    a1 = pk::pmul(a1, pk::ploadu<P>(xr + S));
    a2 = pk::pmul(a2, pk::ploadu<P>(xr + 2 * S));
    a3 = pk::pmul(a3, pk::ploadu<P>(xr + 3 * S));
  }
}

/// out[i] = q / x[i] for i in [0, n), by a reciprocal refined with Newton steps where AVX-512
/// has one (a division per element costs more than the rest of the pass). The caller has checked
/// that every x[i] is finite and nonzero (their product is a normal number); false (out partly
/// written) when some |x[i]| is subnormal, where 1 / x could overflow.
template <class T>
bool scaled_reciprocals(const T* x, T* out, index_t n, T q) {
  namespace pk = Eigen::internal;
  using P = packet_t<T>;
  constexpr index_t S = packet_size_v<T>;
  const P qp = pk::pset1<P>(q);
  P smallest = pk::pset1<P>(std::numeric_limits<T>::max());
  index_t i = 0;
  for (; i + S <= n; i += S) {
    const P v = pk::ploadu<P>(x + i);
    smallest = pk::pmin(smallest, pk::pabs(v));
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, double> && S == 8) {  // P is __m512d
      __m512d r = _mm512_rcp14_pd(v);  // 14 bits; two Newton steps give full precision
      r = _mm512_fmadd_pd(r, _mm512_fnmadd_pd(v, r, _mm512_set1_pd(1.0)), r);
      r = _mm512_fmadd_pd(r, _mm512_fnmadd_pd(v, r, _mm512_set1_pd(1.0)), r);
      pk::pstoreu(out + i, pk::pmul(qp, r));
      continue;
    } else if constexpr (std::is_same_v<T, float> && S == 16) {  // P is __m512
      __m512 r = _mm512_rcp14_ps(v);
      r = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(v, r, _mm512_set1_ps(1.0f)), r);
      pk::pstoreu(out + i, pk::pmul(qp, r));
      continue;
    }
#endif
    pk::pstoreu(out + i, pk::pdiv(qp, v));
  }
  T least = pk::predux_min(smallest);
  for (; i < n; ++i) {
    least = std::min(least, x[i] < T(0) ? -x[i] : x[i]);
    out[i] = q / x[i];
  }
  return least >= std::numeric_limits<T>::min();
}

/// out[i] = g * (the product of the other elements of x[0, n)), given p, the product of all of
/// them as the forward pass computed it, or NaN when unknown. Where p and g * p are normal numbers
/// and so is every element, that is g * p / x[i]: one pass (PyTorch's prod backward divides too,
/// when no element is zero). Otherwise (zeros, underflow, overflow) prefix and suffix products.
template <class T>
void prod_adjoint_contiguous(const T* x, T* out, index_t n, T g, T p) {
  const T q = g * p;
  const auto normal = [](T v) {
    const T a = v < T(0) ? -v : v;
    return a >= std::numeric_limits<T>::min() && a <= std::numeric_limits<T>::max();
  };
  if (normal(p) && (normal(q) || q == T(0)) && scaled_reciprocals(x, out, n, q)) return;
  exclusive_products_contiguous(x, out, n, g);
}

/// out[i] = g[k] * (the product of the other elements of x's group of i), where k is the group's
/// position (row-major over the kept axes; groups are the elements that differ only along the
/// reduced axes) and p[k] its product, when p is not empty. x and out are contiguous with x's shape.
template <class T, std::size_t R>
void prod_adjoint(const T* x, T* out, const Shape<R>& shape, const std::array<bool, R>& reduced, const T* g,
                  const T* p) {
  // When the reduced axes are the trailing ones (as for a full reduction), groups are contiguous.
  bool trailing = true, seen_reduced = false;
  index_t group_size = 1, total = 1;
  for (std::size_t i = 0; i < R; ++i) {
    total *= shape[i];
    if (reduced[i]) {
      seen_reduced = true;
      group_size *= shape[i];
    } else if (seen_reduced && shape[i] != 1) {
      trailing = false;
    }
  }
  if (trailing) {
    index_t k = 0;
    for (index_t base = 0; base + group_size <= total && group_size > 0; base += group_size, ++k) {
      prod_adjoint_contiguous(x + base, out + base, group_size, g[k], p ? p[k] : std::numeric_limits<T>::quiet_NaN());
    }
    return;
  }
  // Otherwise: offsets of one group's elements and of each group's first element (row-major),
  // then prefix and suffix products along each group.
  std::vector<index_t> group{0}, starts{0};
  const Shape<R> strides = contiguous_strides(shape);
  for (std::size_t i = 0; i < R; ++i) {
    auto& list = reduced[i] ? group : starts;
    std::vector<index_t> grown;
    grown.reserve(list.size() * static_cast<std::size_t>(shape[i]));
    for (const index_t o : list) {
      for (index_t k = 0; k < shape[i]; ++k) grown.push_back(o + k * strides[i]);
    }
    list.swap(grown);
  }
  for (std::size_t k = 0; k < starts.size(); ++k) {
    const index_t base = starts[k];
    T acc(1);
    for (const index_t o : group) {
      out[base + o] = acc;
      acc *= x[base + o];
    }
    acc = g[k];
    for (auto it = group.rbegin(); it != group.rend(); ++it) {
      out[base + *it] *= acc;
      acc *= x[base + *it];
    }
  }
}
}  // namespace detail

namespace detail {
/// Position of the largest (Largest) or smallest of the n > 0 elements p[0], p[stride], ...: the
/// first one on ties, and the first NaN if there is one (as NumPy). Shared with the CUDA kernel.
template <bool Largest, class T>
TESSERA_HD index_t arg_extremum(const T* p, index_t n, index_t stride) {
  index_t best = 0;
  T bv = p[0];
  for (index_t k = 1; k < n; ++k) {
    const T v = p[k * stride];
    bool better;
    if constexpr (std::is_floating_point_v<T>) {
      if (bv != bv) break;  // a NaN is already the answer
      better = (v != v) || (Largest ? v > bv : v < bv);
    } else {
      better = Largest ? v > bv : v < bv;
    }
    if (better) {
      bv = v;
      best = k;
    }
  }
  return best;
}
}  // namespace detail

namespace detail {
/// Index arithmetic of a CPU reduction over a coalesced plan, independent of the element type
/// and the expression (so compiled once, not per reduction kernel): the outer axes (all but the
/// innermost) split into kept and reduced ones, each enumerated in row-major order.
struct ReductionIndexer {
  const IterPlan& plan;
  int kept_axes[max_rank] = {}, reduced_axes[max_rank] = {};
  int n_kept = 0, n_reduced = 0;
  index_t kept_combos = 1, reduced_combos = 1;
  index_t out_strides[max_rank] = {};  ///< the output's strides along the coalesced axes

  template <std::size_t R>
  ReductionIndexer(const IterPlan& p, const Shape<R>& out_st) : plan(p) {
    plan.map(out_st, out_strides);
    for (int k = 0; k + 1 < plan.rank; ++k) {
      if (plan.reduced[k]) {
        reduced_axes[n_reduced++] = k;
        reduced_combos *= plan.dims[k];
      } else {
        kept_axes[n_kept++] = k;
        kept_combos *= plan.dims[k];
      }
    }
  }
  /// Sets idx along the kept outer axes to their combination number `combo`.
  void set_kept(index_t* idx, index_t combo) const { set(idx, kept_axes, n_kept, combo); }
  /// Sets idx along the reduced outer axes to their combination number `combo`.
  void set_reduced(index_t* idx, index_t combo) const { set(idx, reduced_axes, n_reduced, combo); }
  /// The output element idx (along the kept outer axes) writes to.
  index_t out_offset(const index_t* idx) const {
    index_t off = 0;
    for (int a = 0; a < n_kept; ++a) off += idx[kept_axes[a]] * out_strides[kept_axes[a]];
    return off;
  }

 private:
  void set(index_t* idx, const int* axes, int n, index_t combo) const {
    for (int a = n - 1; a >= 0; --a) {
      const int k = axes[a];
      idx[k] = combo % plan.dims[k];
      combo /= plan.dims[k];
    }
  }
};
}  // namespace detail

namespace detail {
/// The loops of a reduction (see reduce_into), templated on the evaluator's type rather than the
/// expression's, so that reductions of different expressions with the same evaluator type (the
/// sum of any materialized operand, say) share one compiled kernel.
template <class Red, class T, class Ev>
void run_reduction(const Red& red, T* obase, index_t n_out, const ReductionIndexer& ix, const Ev& ev, index_t work, T scale) {
  auto finish = [&](T v) { return scale == T(1) ? v : static_cast<T>(v * scale); };
  const IterPlan& plan = ix.plan;
  const index_t inner = plan.inner();
  const index_t serial_below = work < 32768 ? (index_t(1) << 62) : 0;
  const int threads = cpu::num_threads();

  if (plan.reduced[plan.rank - 1]) {
    // Innermost axis reduced: each output folds a run of rows.
    const index_t len = ix.reduced_combos * inner;
    auto fold = [&](auto& local, index_t* idx, index_t begin, index_t end) {
      T a = Red::template identity<T>();
      index_t r = begin / inner, j = begin % inner;
      while (begin < end) {
        ix.set_reduced(idx, r);
        local.seek(idx);
        const index_t j1 = std::min(inner, j + (end - begin));
        a = reduce_row(red, local, j, j1, a);
        begin += j1 - j;
        j = 0;
        ++r;
      }
      return a;
    };
    // Each result folds fixed blocks of the run and combines the block results in order, so the
    // arithmetic (and the result) is the same whatever the thread count.
    constexpr index_t block = 16384;
    const index_t blocks = (len + block - 1) / block;
    if (n_out > 1 || blocks == 1 || threads == 1 || serial_below > 0) {
      parallel_for(n_out, 1, serial_below > 0 ? serial_below : 1, [&](index_t b, index_t e) {
        auto local = ev;
        index_t idx[max_rank] = {};
        for (index_t o = b; o < e; ++o) {
          ix.set_kept(idx, o);
          T a = Red::template identity<T>();
          for (index_t k = 0; k < blocks; ++k) a = red(a, fold(local, idx, k * block, std::min(len, (k + 1) * block)));
          obase[ix.out_offset(idx)] = finish(a);
        }
      });
    } else {
      // One long reduction: blocks in parallel, then their results in order.
      std::vector<T> partial(static_cast<std::size_t>(blocks), Red::template identity<T>());
      parallel_for(blocks, 1, 1, [&](index_t b0, index_t b1) {
        auto local = ev;
        index_t idx[max_rank] = {};
        for (index_t b = b0; b < b1; ++b) {
          partial[static_cast<std::size_t>(b)] = fold(local, idx, b * block, std::min(len, (b + 1) * block));
        }
      });
      T a = Red::template identity<T>();
      for (T p : partial) a = red(a, p);
      obase[0] = finish(a);  // one output
    }
  } else {
    // Innermost axis kept: accumulate whole rows into the output row.
    const index_t total = ix.kept_combos * inner;
    parallel_rows(total, inner, serial_below > 0 ? serial_below : 1, [&](index_t begin, index_t end) {
      auto local = ev;
      index_t idx[max_rank] = {};
      index_t ko = begin / inner, j = begin % inner;
      while (begin < end) {
        const index_t j1 = std::min(inner, j + (end - begin));
        ix.set_kept(idx, ko);
        T* orow = obase + ix.out_offset(idx);
        std::fill(orow + j, orow + j1, Red::template identity<T>());
        for (index_t r = 0; r < ix.reduced_combos; ++r) {
          ix.set_reduced(idx, r);
          local.seek(idx);
          accumulate_row(red, local, orow, j, j1);
        }
        if (scale != T(1)) {
          for (index_t q = j; q < j1; ++q) orow[q] = finish(orow[q]);
        }
        begin += j1 - j;
        j = 0;
        ++ko;
      }
    });
  }
}
}  // namespace detail

/// out = reduce(input) over the axes flagged in `reduced`, each result multiplied by `scale`
/// (mean passes 1/count). `out` is contiguous with the kept extents (keepdims or not).
template <class Red, class T, std::size_t RO, std::size_t RI, class E>
void reduce_into(cpu, Tensor<T, RO, cpu>& out, const E& input, const std::array<bool, RI>& reduced, const Red& red,
                 T scale) {
  instrument::count_materialization();
  const Shape<RI> in_shape = input.shape();
  const index_t n_out = out.size();
  if (n_out == 0) return;
  T* const obase = out.data();
  auto finish = [&](T v) { return scale == T(1) ? v : static_cast<T>(v * scale); };
  if (numel(in_shape) == 0) {
    if (!Red::has_identity) {
      throw shape_error(std::string(Red::name) + ": cannot reduce an empty extent of shape " + shape_to_string(in_shape));
    }
    std::fill(obase, obase + n_out, finish(Red::template identity<T>()));
    return;
  }

  const auto reduction = detail::reduction_plan(input, reduced);
  const detail::ReductionIndexer ix(reduction.plan, reduction.out_strides);
  detail::run_reduction(red, obase, n_out, ix, detail::make_evaluator(input, in_shape, reduction.plan), numel(in_shape), scale);
}

/// prod's adjoint: out[i] = g[k] * (the product of the other elements of x's reduction group k
/// of i). g and p (the groups' products from the forward pass, or empty when unknown) hold one
/// value per group, in row-major order of the kept axes.
template <class T, std::size_t R>
void prod_adjoint_into(cpu, Tensor<T, R, cpu>& out, const Tensor<T, R, cpu>& x, const std::array<bool, R>& reduced,
                       const Tensor<T, 1, cpu>& g, const Tensor<T, 1, cpu>& p) {
  const auto xc = x.contiguous();
  const auto gc = g.contiguous();
  const auto pc = p.contiguous();
  const T* pp = pc.size() == 0 ? nullptr : pc.data();
  if (out.is_contiguous()) {
    detail::prod_adjoint(xc.data(), out.data(), xc.shape(), reduced, gc.data(), pp);
    return;
  }
  auto tmp = Tensor<T, R, cpu>::uninitialized(xc.shape());
  detail::prod_adjoint(xc.data(), tmp.data(), xc.shape(), reduced, gc.data(), pp);
  out.assign(tmp);
}

/// Index of the largest (Greater) or smallest (Less) element along `axis` of a contiguous input.
template <bool Largest, class T, std::size_t R>
void arg_reduce_into(cpu, std::bool_constant<Largest>, Tensor<std::int64_t, (R > 0 ? R - 1 : 0), cpu>& out, const Tensor<T, R, cpu>& in,
                     std::size_t axis) {
  instrument::count_materialization();
  index_t outer = 1, inner = 1;
  for (std::size_t i = 0; i < axis; ++i) outer *= in.shape()[i];
  for (std::size_t i = axis + 1; i < R; ++i) inner *= in.shape()[i];
  const index_t n = in.shape()[axis];
  if (n == 0) throw shape_error(std::string(Largest ? "argmax" : "argmin") + ": axis " + std::to_string(axis) +
                                " of shape " + shape_to_string(in.shape()) + " is empty");
  const T* src = in.data();
  std::int64_t* dst = out.data();
  detail::parallel_for(outer * inner, 16, 32768 / std::max<index_t>(n, 1), [&](index_t b, index_t e) {
    for (index_t q = b; q < e; ++q) {
      const index_t o = q / inner, i = q % inner;
      dst[q] = detail::arg_extremum<Largest>(src + o * n * inner + i, n, inner);
    }
  });
}

}  // namespace tessera
