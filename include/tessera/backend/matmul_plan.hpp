// How a (batched, broadcast) matrix product maps onto GEMM calls: the default `matmul_into` entry
// of every backend, written once over the contract's `gemm` and `gemm_batched` (a backend with a
// better plan overloads matmul_into for its own tag). Operands are read in place when their last
// two axes are row-major or transposed with a stride; others are copied once.
#pragma once

#include <algorithm>
#include <cstddef>

#include "tessera/core/shape.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera {

namespace detail {

/// How GEMM reads one matrix operand: transposed or not, and its leading dimension.
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

/// Extent (or stride) of batch axis i (of `batch_rank`) of an operand of rank R, right-aligned
/// under NumPy broadcasting; `missing` where the operand has no such axis.
template <std::size_t R>
index_t batch_axis(const Shape<R>& s, std::size_t batch_rank, std::size_t i, index_t missing = 1) {
  const std::size_t lead = batch_rank - (R - 2);
  return i < lead ? missing : s[i - lead];
}

/// Whether offsets[i] * idx[i] summed over the batch axes equals flat * stride for every batch
/// index (row-major flat numbering); sets `stride`.
template <std::size_t BR>
bool affine_batches(const Shape<BR>& batch, const Shape<BR>& offsets, index_t& stride) {
  if constexpr (BR == 0) {
    stride = 0;
    return true;
  } else {
    stride = offsets[BR - 1];
    index_t expected = stride;
    for (std::size_t i = BR; i-- > 0;) {
      if (batch[i] != 1 && offsets[i] != expected) return false;
      expected *= batch[i];
    }
    return true;
  }
}

/// Whether A's batch axes continue its row stride (stride(axis) == extent(next) * stride(next)),
/// so that all its matrices form one tall matrix.
template <class T, std::size_t R, class B>
bool rows_stack_densely(const Tensor<T, R, B>& a, const GemmOperand& ga) {
  index_t expect = a.shape()[R - 2] * ga.ld;
  for (std::size_t i = R - 2; i-- > 0;) {
    if (a.shape()[i] != 1 && a.strides()[i] != expect) return false;
    expect *= a.shape()[i];
  }
  return true;
}

}  // namespace detail

/// out = a @ b for operands of rank >= 2 whose batch axes (all but the last two) broadcast as in
/// NumPy; `out` is contiguous with the broadcast batch shape followed by [m, n]. One GEMM when b
/// is shared by every batch and a's matrices stack densely, one strided-batched GEMM when both
/// operands' batch offsets are affine in the batch number, else one GEMM per batch.
template <class B, class T, std::size_t RO, std::size_t RA, std::size_t RB>
void matmul_into(B, Tensor<T, RO, B> out, Tensor<T, RA, B> a, Tensor<T, RB, B> b) {
  static_assert(RA >= 2 && RB >= 2 && RO == (RA > RB ? RA : RB), "tessera: matmul_into takes promoted operands");
  constexpr std::size_t batch_rank = RO - 2;
  detail::GemmOperand ga, gb;
  if (!detail::gemm_layout(a.shape(), a.strides(), ga)) {
    a = a.clone();
    detail::gemm_layout(a.shape(), a.strides(), ga);
  }
  if (!detail::gemm_layout(b.shape(), b.strides(), gb)) {
    b = b.clone();
    detail::gemm_layout(b.shape(), b.strides(), gb);
  }
  const index_t m = a.shape()[RA - 2], k = a.shape()[RA - 1], n = b.shape()[RB - 1];
  T* c = out.data();
  if (m == 0 || n == 0) return;
  // Batch offsets of each operand under NumPy broadcasting of the batch axes.
  Shape<batch_rank> batch{}, sa{}, sb{};
  for (std::size_t i = 0; i < batch_rank; ++i) {
    const index_t ea = detail::batch_axis(a.shape(), batch_rank, i), eb = detail::batch_axis(b.shape(), batch_rank, i);
    batch[i] = ea == 1 ? eb : ea;  // broadcasting: an extent of 1 yields (also to 0)
    sa[i] = ea == 1 ? 0 : detail::batch_axis(a.strides(), batch_rank, i, 0);
    sb[i] = eb == 1 ? 0 : detail::batch_axis(b.strides(), batch_rank, i, 0);
  }
  const index_t batches = numel(batch);
  // One large GEMM when B is shared by every batch and A's matrices are stacked densely.
  bool b_shared = true;
  for (std::size_t i = 0; i < batch_rank; ++i) b_shared = b_shared && sb[i] == 0;
  if (batches > 1 && b_shared && !ga.trans && detail::rows_stack_densely(a, ga)) {
    gemm(B{}, false, gb.trans, batches * m, n, k, T(1), a.data(), ga.ld, b.data(), gb.ld, T(0), c, n);
    return;
  }
  // Offsets affine in the flat batch number (dense batches, or one matrix broadcast to all):
  // one strided-batched call, which a device backend runs as one cuBLAS launch.
  index_t stride_a = 0, stride_b = 0;
  if (batches > 1 && detail::affine_batches(batch, sa, stride_a) && detail::affine_batches(batch, sb, stride_b)) {
    gemm_batched(B{}, ga.trans, gb.trans, m, n, k, T(1), a.data(), ga.ld, stride_a, b.data(), gb.ld, stride_b, T(0), c, n,
                 m * n, batches);
    return;
  }
  Shape<batch_rank> idx{};
  for (index_t bi = 0; bi < batches; ++bi) {
    index_t oa = 0, ob = 0;
    for (std::size_t i = 0; i < batch_rank; ++i) {
      oa += idx[i] * sa[i];
      ob += idx[i] * sb[i];
    }
    gemm(B{}, ga.trans, gb.trans, m, n, k, T(1), a.data() + oa, ga.ld, b.data() + ob, gb.ld, T(0), c + bi * m * n, n);
    for (std::size_t i = batch_rank; i-- > 0;) {
      if (++idx[i] < batch[i]) break;
      idx[i] = 0;
    }
  }
}

}  // namespace tessera
