// matmul (a materialization point): 2-D, batched with NumPy batch broadcasting, and vectors
// (rank-1 operands as in numpy.matmul). Transposed views are passed to GEMM without copies.
#pragma once

#include <string>
#include <type_traits>

#include "tessera/backend/cpu/gemm.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/assign.hpp"
#include "tessera/expr/cache.hpp"
#include "tessera/expr/evaluator.hpp"
#include "tessera/expr/shape_ops.hpp"

namespace tessera {

namespace detail {
constexpr std::size_t matmul_rank(std::size_t ra, std::size_t rb) {
  if (ra == 1 && rb == 1) return 0;
  if (ra == 1) return rb - 1;
  if (rb == 1) return ra - 1;
  return ra > rb ? ra : rb;
}

/// How GEMM reads one matrix operand: pointer to the first matrix, transposed or not, leading dim.
struct GemmOperand {
  bool trans = false;
  index_t ld = 0;
};
/// Whether the last two axes can be read by GEMM directly (row-major or transposed with a stride).
template <std::size_t R>
bool gemm_layout(const Shape<R>& s, const Shape<R>& st, GemmOperand& op) {
  const index_t rows = s[R - 2], cols = s[R - 1];
  const index_t rs = st[R - 2], cs = st[R - 1];
  if ((cs == 1 || cols == 1) && (rs >= cols || rows == 1) && rs > 0) {
    op = {false, std::max<index_t>(rs, cols)};
    return true;
  }
  if ((rs == 1 || rows == 1) && (cs >= rows || cols == 1) && cs > 0) {
    op = {true, std::max<index_t>(cs, rows)};
    return true;
  }
  if (rows == 1 && cols == 1) {
    op = {false, 1};
    return true;
  }
  return false;
}
}  // namespace detail

/// Matrix product of A and B (see numpy.matmul for the rank rules).
template <class A, class B>
struct MatMul : ExprBase<MatMul<A, B>> {
  using value_type = value_type_t<A>;
  using backend_type = common_backend_t<backend_t<A>, backend_t<B>>;
  static constexpr std::size_t rank_a = rank_v<A>, rank_b = rank_v<B>;
  static constexpr std::size_t rank = detail::matmul_rank(rank_a, rank_b);
  static constexpr std::size_t rank_a2 = rank_a < 2 ? 2 : rank_a;  // after promoting vectors
  static constexpr std::size_t rank_b2 = rank_b < 2 ? 2 : rank_b;
  static constexpr std::size_t batch_rank = (rank_a2 > rank_b2 ? rank_a2 : rank_b2) - 2;
  static constexpr const char* name = "matmul";
  static_assert(rank_a >= 1 && rank_b >= 1, "tessera::matmul: operands must have rank 1 or more");
  static_assert(std::is_same_v<value_type_t<A>, value_type_t<B>>,
                "tessera::matmul: operands have different element types; convert one with cast<T>()");
  static_assert(!std::is_same_v<value_type, bool>, "tessera::matmul is not defined for bool tensors");

  /// Shared by every copy of this node; holds its buffer during an autodiff sweep.
  std::shared_ptr<detail::CacheSlot<Tensor<value_type, rank, backend_type>>> cache =
      std::make_shared<detail::CacheSlot<Tensor<value_type, rank, backend_type>>>();
  A lhs;
  B rhs;
  MatMul(A a, B b) : lhs(std::move(a)), rhs(std::move(b)) { compute_shape(); }

  const Shape<rank>& shape() const { return shape_; }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(lhs, f);
    detail::for_each_tensor(rhs, f);
  }
  auto inputs() const { return std::tie(lhs, rhs); }
  /// dA = G B^T and dB = A^T G, with vectors treated as numpy.matmul does (batch axes summed by
  /// the consumer's sum_to when an operand was broadcast).
  template <class G>
  auto input_adjoints(const G& g) const {
    const auto gg = sum_to(g, shape_);
    const auto sa = lhs.shape();
    const auto sb = rhs.shape();
    if constexpr (rank_a == 1 && rank_b == 1) {
      return std::make_tuple(gg * rhs, gg * lhs);
    } else if constexpr (rank_a == 1) {
      static_assert(rank_b == 2, "tessera::grad: matmul of a vector with a batch of matrices is not differentiable yet");
      // y[n] = a[k] B[k, n]: da = B g, dB = a (outer) g
      Shape<2> col{sa[0], 1};
      Shape<rank + 1> grow{};
      for (std::size_t i = 0; i + 1 < rank; ++i) grow[i] = shape_[i];
      grow[rank - 1] = 1;
      grow[rank] = shape_[rank - 1];
      return std::make_tuple(matmul(rhs, gg), matmul(reshape(lhs, col), reshape(gg, grow)));
    } else if constexpr (rank_b == 1) {
      static_assert(rank_a == 2, "tessera::grad: matmul of a batch of matrices with a vector is not differentiable yet");
      // y[m] = A[m, k] b[k]: dA = g (outer) b, db = A^T g
      Shape<rank + 1> gcol{};
      for (std::size_t i = 0; i < rank; ++i) gcol[i] = shape_[i];
      gcol[rank] = 1;
      Shape<2> row{1, sb[0]};
      return std::make_tuple(matmul(reshape(gg, gcol), reshape(rhs, row)), matmul(transpose(lhs), gg));
    } else if constexpr (rank_a == 2 && rank_b == 2 && detail::is_uniform_v<G>) {
      // G has one value u everywhere (the output went straight into a sum or mean), so
      // dA = u 1 B^T has the row sums of B in every row, and dB = A^T u 1 the column sums of A in
      // every column: O(n^2) instead of two GEMMs. sum_to would add up `count` copies of u.
      using T = value_type;
      const index_t m = shape_[0], n = shape_[1], k = sa[1];
      const T count = static_cast<T>(numel(g.shape())) / static_cast<T>(std::max<index_t>(numel(shape_), 1));
      const auto u = detail::uniform_value(g) * count;
      return std::make_tuple(broadcast_to(reshape(sum(rhs, 1) * u, Shape<2>{1, k}), Shape<2>{m, k}),
                             broadcast_to(reshape(sum(lhs, 0) * u, Shape<2>{k, 1}), Shape<2>{k, n}));
    } else {
      return std::make_tuple(matmul(gg, transpose(rhs)), matmul(transpose(lhs), gg));
    }
  }

  void evaluate_into(Tensor<value_type, rank, backend_type>& out) const {
    using T = value_type;
    auto a = promote_a(operand(lhs));
    auto b = promote_b(operand(rhs));
    detail::GemmOperand ga, gb;
    if (!detail::gemm_layout(a.shape(), a.strides(), ga)) {
      a = a.clone();
      detail::gemm_layout(a.shape(), a.strides(), ga);
    }
    if (!detail::gemm_layout(b.shape(), b.strides(), gb)) {
      b = b.clone();
      detail::gemm_layout(b.shape(), b.strides(), gb);
    }
    const index_t m = a.shape()[rank_a2 - 2], k = a.shape()[rank_a2 - 1], n = b.shape()[rank_b2 - 1];
    T* c = out.data();
    if (m == 0 || n == 0) return;
    // Batch offsets of each operand under NumPy broadcasting of the batch axes.
    Shape<batch_rank> batch{}, sa{}, sb{};
    for (std::size_t i = 0; i < batch_rank; ++i) {
      const index_t ea = axis_or_one(a.shape(), rank_a2, i), eb = axis_or_one(b.shape(), rank_b2, i);
      batch[i] = ea == 1 ? eb : ea;  // broadcasting: an extent of 1 yields (also to 0)
      sa[i] = ea == 1 ? 0 : axis_or_one(a.strides(), rank_a2, i, 0);
      sb[i] = eb == 1 ? 0 : axis_or_one(b.strides(), rank_b2, i, 0);
    }
    const index_t batches = numel(batch);
    // One large GEMM when B is shared by every batch and A's matrices are stacked densely.
    bool b_shared = true;
    for (std::size_t i = 0; i < batch_rank; ++i) b_shared = b_shared && sb[i] == 0;
    if (batches > 1 && b_shared && !ga.trans && a_rows_dense(a, ga)) {
      gemm(backend_type{}, false, gb.trans, batches * m, n, k, T(1), a.data(), ga.ld, b.data(), gb.ld, T(0), c, n);
      return;
    }
    // Offsets affine in the flat batch number (dense batches, or one matrix broadcast to all):
    // one strided-batched call, which a device backend runs as one cuBLAS launch.
    index_t stride_a = 0, stride_b = 0;
    if (batches > 1 && affine_batches(batch, sa, stride_a) && affine_batches(batch, sb, stride_b)) {
      gemm_batched(backend_type{}, ga.trans, gb.trans, m, n, k, T(1), a.data(), ga.ld, stride_a, b.data(), gb.ld, stride_b,
                   T(0), c, n, m * n, batches);
      return;
    }
    Shape<batch_rank> idx{};
    for (index_t bi = 0; bi < batches; ++bi) {
      index_t oa = 0, ob = 0;
      for (std::size_t i = 0; i < batch_rank; ++i) {
        oa += idx[i] * sa[i];
        ob += idx[i] * sb[i];
      }
      gemm(backend_type{}, ga.trans, gb.trans, m, n, k, T(1), a.data() + oa, ga.ld, b.data() + ob, gb.ld, T(0),
           c + bi * m * n, n);
      for (std::size_t i = batch_rank; i-- > 0;) {
        if (++idx[i] < batch[i]) break;
        idx[i] = 0;
      }
    }
  }

 private:
  /// Whether offsets[i] * idx[i] summed over the batch axes equals flat * stride for every batch
  /// index (row-major flat numbering); sets `stride`.
  static bool affine_batches(const Shape<batch_rank>& batch, const Shape<batch_rank>& offsets, index_t& stride) {
    if constexpr (batch_rank == 0) {
      stride = 0;
      return true;
    } else {
      stride = offsets[batch_rank - 1];
      index_t expected = stride;
      for (std::size_t i = batch_rank; i-- > 0;) {
        if (batch[i] != 1 && offsets[i] != expected) return false;
        expected *= batch[i];
      }
      return true;
    }
  }
  using TA = Tensor<value_type, rank_a, backend_type>;
  using TB = Tensor<value_type, rank_b, backend_type>;

  template <class E>
  static Tensor<value_type, rank_v<E>, backend_type> operand(const E& e) {
    return detail::value_of(e);
  }
  static Tensor<value_type, rank_a2, backend_type> promote_a(const TA& a) {
    if constexpr (rank_a == 1) {
      return a.unsqueeze(0);
    } else {
      return a;
    }
  }
  static Tensor<value_type, rank_b2, backend_type> promote_b(const TB& b) {
    if constexpr (rank_b == 1) {
      return b.unsqueeze(1);
    } else {
      return b;
    }
  }
  /// Extent (or stride) of batch axis i of a promoted operand, right-aligned; `missing` if absent.
  template <std::size_t R>
  static index_t axis_or_one(const Shape<R>& s, std::size_t r, std::size_t i, index_t missing = 1) {
    const std::size_t lead = batch_rank - (r - 2);
    return i < lead ? missing : s[i - lead];
  }
  static bool a_rows_dense(const Tensor<value_type, rank_a2, backend_type>& a, const detail::GemmOperand& ga) {
    // Batch axes must continue the row stride: stride(axis) == extent(next) * stride(next).
    index_t expect = a.shape()[rank_a2 - 2] * ga.ld;
    for (std::size_t i = rank_a2 - 2; i-- > 0;) {
      if (a.shape()[i] != 1 && a.strides()[i] != expect) return false;
      expect *= a.shape()[i];
    }
    return true;
  }

  void compute_shape() {
    const auto sa = lhs.shape();
    const auto sb = rhs.shape();
    const index_t ka = sa[rank_a - 1];
    const index_t kb = rank_b == 1 ? sb[0] : sb[rank_b - 2];
    if (ka != kb) {
      throw shape_error("matmul: " + shape_to_string(sa) + " x " + shape_to_string(sb) + ": inner extents " +
                        std::to_string(ka) + " and " + std::to_string(kb) + " differ");
    }
    std::size_t k = 0;
    for (std::size_t i = 0; i < batch_rank; ++i) {
      const std::size_t lead_a = batch_rank - (rank_a2 - 2), lead_b = batch_rank - (rank_b2 - 2);
      const index_t ea = i < lead_a ? 1 : sa[i - lead_a];
      const index_t eb = i < lead_b ? 1 : sb[i - lead_b];
      if (ea != eb && ea != 1 && eb != 1) {
        throw shape_error("matmul: " + shape_to_string(sa) + " x " + shape_to_string(sb) + ": batch extents " +
                          std::to_string(ea) + " and " + std::to_string(eb) + " at axis " + std::to_string(i) +
                          " cannot be broadcast");
      }
      shape_[k++] = ea == 1 ? eb : ea;
    }
    if constexpr (rank_a >= 2) shape_[k++] = sa[rank_a - 2];
    if constexpr (rank_b >= 2) shape_[k++] = sb[rank_b - 1];
  }

  Shape<rank> shape_{};
};

/// Lazy matrix product; evaluated by GEMM when assigned or used inside another expression.
template <class A, class B, std::enable_if_t<is_expr_v<A> && is_expr_v<B>, int> = 0>
MatMul<A, B> matmul(const A& a, const B& b) {
  return MatMul<A, B>(a, b);
}

}  // namespace tessera
