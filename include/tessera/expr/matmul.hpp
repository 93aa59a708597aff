// matmul (a materialization point): 2-D, batched with NumPy batch broadcasting, and vectors
// (rank-1 operands as in numpy.matmul). Transposed views are passed to GEMM without copies.
#pragma once

#include <string>
#include <type_traits>

#include "tessera/backend/matmul_plan.hpp"
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

}  // namespace detail

/// Matrix product of A and B (see numpy.matmul for the rank rules).
template <class A, class B>
struct MatMul : detail::MaterializedNode<MatMul<A, B>, value_type_t<A>, detail::matmul_rank(rank_v<A>, rank_v<B>),
                                          common_backend_t<backend_t<A>, backend_t<B>>> {
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
    } else if constexpr (rank_a > 2 && rank_b == 2) {
      // One B for every batch (a Linear layer on [N, L, in]): dB = sum over the batch of A_i^T G_i
      // is one GEMM over the stacked rows, A^T G with A as [N L, K], instead of a batched GEMM
      // writing N partial products and a reduction of them.
      const index_t rows = numel(sa) / sa[rank_a - 1];
      return std::make_tuple(matmul(gg, transpose(rhs)),
                             matmul(transpose(reshape(lhs, Shape<2>{rows, sa[rank_a - 1]})), reshape(gg, Shape<2>{rows, shape_[rank - 1]})));
    } else {
      return std::make_tuple(matmul(gg, transpose(rhs)), matmul(transpose(lhs), gg));
    }
  }

  void evaluate_into(Tensor<value_type, rank, backend_type>& out) const {
    // Vectors promoted to matrices as numpy.matmul does; the output's shape is unchanged by that
    // (its promoted axes have extent 1), so the backend writes the same buffer.
    matmul_into(backend_type{}, out.reshape(promoted_out_shape()), promote_a(operand(lhs)), promote_b(operand(rhs)));
  }

 private:
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
  /// The output's shape with the axes promoted vectors dropped put back as extent 1.
  Shape<batch_rank + 2> promoted_out_shape() const {
    Shape<batch_rank + 2> p{};
    for (std::size_t i = 0; i < batch_rank; ++i) p[i] = shape_[i];
    p[batch_rank] = rank_a == 1 ? 1 : shape_[batch_rank];
    p[batch_rank + 1] = rank_b == 1 ? 1 : shape_[rank - 1];
    return p;
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
