// Embedding: a trainable lookup table [num_embeddings, embedding_dim] indexed by integer tensors.
#pragma once

#include <string>
#include <tuple>

#include "tessera/core/error.hpp"
#include "tessera/core/random.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/embedding.hpp"
#include "tessera/expr/matmul.hpp"
#include "tessera/expr/shape_ops.hpp"
#include "tessera/nn/init.hpp"
#include "tessera/nn/module.hpp"

namespace tessera::nn {

struct EmbeddingOptions {
  index_t padding_idx = -1;        ///< >= 0: this row starts at zero and receives no gradient
  Generator* generator = nullptr;  ///< nullptr: default_generator()
};

/// torch.nn.Embedding: weight from N(0, 1); ids of any shape -> ids.shape() + [embedding_dim].
template <class T = float, class B = cpu>
struct Embedding : Module<Embedding<T, B>> {
  static constexpr const char* type_name = "Embedding";
  Tensor<T, 2, B> weight;

  Embedding(index_t num_embeddings, index_t embedding_dim, EmbeddingOptions o = {})
      : weight(Shape<2>{num_embeddings, embedding_dim}), padding_idx_(o.padding_idx) {
    if (num_embeddings <= 0 || embedding_dim <= 0) {
      throw value_error("Embedding: sizes must be positive, got " + std::to_string(num_embeddings) + " x " +
                        std::to_string(embedding_dim));
    }
    if (padding_idx_ >= num_embeddings || padding_idx_ < -1) {
      throw value_error("Embedding: padding_idx " + std::to_string(padding_idx_) + " is not a row of the table");
    }
    init::normal_(weight, o.generator ? *o.generator : default_generator(), 0.0, 1.0);
    if (padding_idx_ >= 0) {
      weight.slice(0, padding_idx_, padding_idx_ + 1).fill(T(0));  // a view: works on any backend
    }
  }
  auto members() { return std::make_tuple(param("weight", weight)); }
  index_t num_embeddings() const { return weight.shape()[0]; }
  index_t embedding_dim() const { return weight.shape()[1]; }

  template <class I>
  auto operator()(const I& ids) const {
    return embedding(weight, ids, padding_idx_);
  }

  /// The output projection tied to this table (weight tying, as in Press & Wolf 2017; Flax's
  /// Embed.attend): h [..., embedding_dim] -> logits [..., num_embeddings] = h W^T. Used together
  /// with the lookup, the table's gradient is the sum of both uses' contributions.
  template <class H>
  auto attend(const H& h) const {
    static_assert(rank_v<H> >= 1, "tessera::nn::Embedding::attend: the input needs a feature axis");
    if (h.shape()[rank_v<H> - 1] != embedding_dim()) {
      throw shape_error("Embedding: attend on input of shape " + shape_to_string(h.shape()) + ", expected " +
                        std::to_string(embedding_dim()) + " features");
    }
    return matmul(h, transpose(weight));
  }

 private:
  index_t padding_idx_;
};

}  // namespace tessera::nn
