// embedding: rows of a table picked by integer indices (torch.nn.functional.embedding), with its
// gradient -- the output gradient's rows added into a table-shaped buffer -- as the grad rule.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>

#include "tessera/backend/op_args.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/cache.hpp"
#include "tessera/expr/evaluator.hpp"
#include "tessera/expr/shape_ops.hpp"

namespace tessera {

template <class I, class G>
struct EmbeddingGrad;

/// out[i..., :] = weight[indices[i...], :]: weight [rows, dim], indices of any rank R -> R + 1.
template <class W, class I>
struct Embedding : detail::MaterializedNode<Embedding<W, I>, value_type_t<W>, rank_v<I> + 1, backend_t<W>> {
  using value_type = value_type_t<W>;
  using backend_type = backend_t<W>;
  static constexpr std::size_t rank = rank_v<I> + 1;
  static constexpr const char* name = "embedding";
  static_assert(rank_v<W> == 2, "tessera::embedding: the table must be [rows, dim]");
  static_assert(std::is_integral_v<value_type_t<I>> && !std::is_same_v<value_type_t<I>, bool>,
                "tessera::embedding: indices must be an integer tensor");

  W weight;
  I indices;
  index_t padding_idx;  ///< this row receives no gradient; -1: none

  Embedding(W w, I i, index_t padding) : weight(std::move(w)), indices(std::move(i)), padding_idx(padding) {
    const auto s = indices.shape();
    for (std::size_t k = 0; k < rank_v<I>; ++k) shape_[k] = s[k];
    shape_[rank - 1] = weight.shape()[1];
  }
  const Shape<rank>& shape() const { return shape_; }
  void evaluate_into(Tensor<value_type, rank, backend_type>& out) const {
    const Tensor<value_type, 2, backend_type> w = detail::value_of(weight).contiguous();
    const auto idx = detail::value_of(indices).contiguous();
    embedding_forward(backend_type{}, w.data(), w.shape()[0], w.shape()[1], idx.data(), idx.size(), out.data());
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(weight, f);
    detail::for_each_tensor(indices, f);
  }
  auto inputs() const { return std::tie(weight, indices); }
  template <class G>
  auto input_adjoints(const G& g) const {
    const auto dy = sum_to(g, shape_);
    return std::make_tuple(EmbeddingGrad<I, std::decay_t<decltype(dy)>>(indices, dy, weight.shape(), padding_idx), NoAdjoint{});
  }

 private:
  Shape<rank> shape_{};
};

/// The table's gradient: every output-gradient row added to the row its index picked.
template <class I, class G>
struct EmbeddingGrad : detail::MaterializedNode<EmbeddingGrad<I, G>, value_type_t<G>, 2, backend_t<G>> {
  using value_type = value_type_t<G>;
  using backend_type = backend_t<G>;
  static constexpr std::size_t rank = 2;
  static constexpr const char* name = "embedding_grad";
  I indices;
  G dy;
  Shape<2> table_shape;
  index_t padding_idx;
  EmbeddingGrad(I i, G g, const Shape<2>& table, index_t padding)
      : indices(std::move(i)), dy(std::move(g)), table_shape(table), padding_idx(padding) {}
  const Shape<2>& shape() const { return table_shape; }
  void evaluate_into(Tensor<value_type, 2, backend_type>& out) const {
    const auto idx = detail::value_of(indices).contiguous();
    const auto d = detail::value_of(dy).contiguous();
    embedding_backward(backend_type{}, d.data(), idx.data(), idx.size(), out.data(), table_shape[0], table_shape[1],
                       padding_idx);
  }
  template <class F>
  void for_each_tensor(F&& f) const {
    detail::for_each_tensor(indices, f);
    detail::for_each_tensor(dy, f);
  }
  auto inputs() const { return std::tie(indices, dy); }
  template <class GG>
  auto input_adjoints(const GG&) const {
    static_assert(detail::dependent_false_v<GG>, "tessera::grad: second derivatives through embedding are not implemented");
    return std::make_tuple(NoAdjoint{}, NoAdjoint{});
  }
};

/// Lazy row lookup: `embedding(table, ids)` has shape ids.shape() + [dim]. Indices out of range
/// throw tessera::index_error when evaluated. padding_idx (if >= 0) gets no gradient.
template <class W, class I, std::enable_if_t<is_expr_v<W> && is_expr_v<I>, int> = 0>
Embedding<W, I> embedding(const W& weight, const I& indices, index_t padding_idx = -1) {
  return Embedding<W, I>(weight, indices, padding_idx);
}

}  // namespace tessera
