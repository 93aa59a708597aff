// Attention and transformer layers with PyTorch's conventions: scaled_dot_product_attention,
// MultiheadAttention, TransformerEncoderLayer, TransformerDecoderOnlyLayer, positional encodings.
//
// Names, shapes and initialization are torch.nn's (batch-first), so weights and fixtures carry
// over: MultiheadAttention has in_proj_weight [3E, E] (query, key and value rows in that order),
// in_proj_bias [3E] and out_proj (a Linear E -> E); a transformer layer has self_attn, linear1,
// linear2, norm1 and norm2.
//
// Attention is a composition of ops the sweep already differentiates: a batched matmul for the
// scores, one fused pass for scale and masks, a stable softmax, dropout, a batched matmul with the
// values. Masks are additive (0 keeps, -inf hides), so every variant has one expression type.
#pragma once

#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "tessera/autodiff/grad.hpp"
#include "tessera/backend/cpu/device.hpp"  // masks are built and checked on the host
#include "tessera/core/error.hpp"
#include "tessera/core/factories.hpp"
#include "tessera/core/random.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/binary_ops.hpp"
#include "tessera/expr/matmul.hpp"
#include "tessera/expr/shape_ops.hpp"
#include "tessera/expr/slice.hpp"
#include "tessera/expr/softmax.hpp"
#include "tessera/expr/unary_ops.hpp"
#include "tessera/nn/cut.hpp"
#include "tessera/nn/dropout.hpp"
#include "tessera/nn/init.hpp"
#include "tessera/nn/linear.hpp"
#include "tessera/nn/module.hpp"
#include "tessera/nn/normalization.hpp"

namespace tessera::nn {

/// Options of scaled_dot_product_attention (torch.nn.functional's).
struct AttentionOptions {
  bool is_causal = false;          ///< query i sees keys 0..i only (the upper-left triangle)
  double dropout_p = 0.0;          ///< dropout on the attention weights (pass 0 in evaluation)
  std::optional<double> scale;     ///< multiplies the scores; default 1 / sqrt(query features)
  Generator* generator = nullptr;  ///< draws the dropout mask; nullptr: default_generator()
};

namespace detail {

/// A host tensor moved to backend B (the same tensor when B is the host).
template <class B, class T, std::size_t R>
Tensor<T, R, B> host_to(const Tensor<T, R, cpu>& t) {
  if constexpr (std::is_same_v<B, cpu>) {
    return t;
  } else {
    return t.template to<B>();
  }
}
/// A tensor of backend B readable on the host.
template <class T, std::size_t R, class B>
Tensor<T, R, cpu> to_host(const Tensor<T, R, B>& t) {
  if constexpr (std::is_same_v<B, cpu>) {
    return t.contiguous();
  } else {
    return t.template to<cpu>();
  }
}

/// Shape of rank R: ones, then `tail` in the last axes.
template <std::size_t R, std::size_t K>
Shape<R> right_aligned(const Shape<K>& tail) {
  static_assert(K <= R);
  Shape<R> s{};
  for (auto& e : s) e = 1;
  for (std::size_t i = 0; i < K; ++i) s[R - K + i] = tail[i];
  return s;
}

/// [L, S] additive causal mask: 0 where key j <= query i, -inf above the diagonal.
template <class T>
Tensor<T, 2, cpu> causal_mask(index_t L, index_t S) {
  auto m = Tensor<T, 2, cpu>::uninitialized(Shape<2>{L, S});
  for (index_t i = 0; i < L; ++i) {
    for (index_t j = 0; j < S; ++j) m(i, j) = j <= i ? T(0) : -std::numeric_limits<T>::infinity();
  }
  return m;
}

/// Throws value_error naming `who` when a row of the scores (last axis of the broadcast additive
/// mask) would be hidden entirely: its softmax would be 0/0 (PyTorch returns NaN there).
template <class T, std::size_t R>
void check_rows_see_a_key(const Tensor<T, R, cpu>& mask, const char* who) {
  const index_t S = mask.shape()[R - 1];
  const index_t rows = mask.size() / std::max<index_t>(S, 1);
  const auto m = mask.contiguous();
  for (index_t r = 0; r < rows; ++r) {
    bool seen = false;
    for (index_t j = 0; j < S && !seen; ++j) seen = m.data()[r * S + j] != -std::numeric_limits<T>::infinity();
    if (!seen) {
      throw value_error(std::string(who) + ": the masks hide every key from a query (row " + std::to_string(r) +
                        " of the broadcast mask " + shape_to_string(mask.shape()) + "); its attention is undefined");
    }
  }
}

/// softmax(q k^T * scale + mask) v with dropout on the weights, for operands and a mask already
/// checked (an empty mask: none). The same expression type with and without mask and dropout (a
/// broadcast 0 or 1 fuses for free).
template <class Q, class K, class V, class T, std::size_t R, class B>
auto attend(const Q& q, const K& k, const V& v, Tensor<T, R, B> mask, double scale, double dropout_p, Generator* generator) {
  if (mask.storage_id() == nullptr) mask = zeros<T, B>(right_aligned<R>(Shape<0>{}));
  auto weights = softmax(matmul(q, transpose(k)) * static_cast<T>(scale) + mask, -1);
  Tensor<T, R, B> keep;
  if (dropout_p > 0) {
    keep = nn::detail::dropout_mask<T, R, B>(generator ? *generator : default_generator(), weights.shape(), dropout_p);
  } else {
    keep = ones<T, B>(right_aligned<R>(Shape<0>{}));
  }
  return matmul(weights * keep, v);
}

}  // namespace detail

/// softmax(q k^T * scale + mask) v over the last two axes, with dropout on the weights, as
/// torch.nn.functional.scaled_dot_product_attention: q [..., L, E], k [..., S, E], v [..., S, Ev]
/// -> [..., L, Ev]; leading axes broadcast. `attn_mask` (rank of q, broadcastable to [..., L, S];
/// empty: none) is added to the scores: 0 keeps a key, -inf hides it. Differentiable in q, k, v.
///
/// The softmax is computed stably (max subtracted). On every backend this is the composed form
/// (one GEMM per product, one fused pass for scale and mask, one softmax pass): no fused
/// single-kernel attention yet.
template <class Q, class K, class V, class T = value_type_t<Q>, std::size_t R = rank_v<Q>, class B = backend_t<Q>>
auto scaled_dot_product_attention(const Q& q, const K& k, const V& v, const Tensor<T, R, B>& attn_mask = {},
                                  const AttentionOptions& o = {}) {
  static_assert(R >= 2 && rank_v<K> == R && rank_v<V> == R,
                "tessera::nn::scaled_dot_product_attention: query, key and value need the same rank (2 or more)");
  static_assert(std::is_floating_point_v<T>, "tessera::nn::scaled_dot_product_attention needs floating-point inputs");
  const auto sq = q.shape(), sk = k.shape(), sv = v.shape();
  const index_t L = sq[R - 2], S = sk[R - 2], E = sq[R - 1];
  const char* who = "scaled_dot_product_attention";
  if (sk[R - 1] != E) {
    throw shape_error(std::string(who) + ": query " + shape_to_string(sq) + " and key " + shape_to_string(sk) +
                      " differ in features");
  }
  if (sv[R - 2] != S) {
    throw shape_error(std::string(who) + ": key " + shape_to_string(sk) + " and value " + shape_to_string(sv) +
                      " differ in length");
  }
  if (!(o.dropout_p >= 0 && o.dropout_p <= 1)) {
    throw value_error(std::string(who) + ": dropout_p must be in [0, 1], got " + std::to_string(o.dropout_p));
  }
  // One additive mask of rank R: the user's, plus the causal triangle.
  Tensor<T, R, B> mask;
  const bool user_mask = attn_mask.storage_id() != nullptr;
  if (user_mask) {
    const auto sm = attn_mask.shape();
    if ((sm[R - 2] != L && sm[R - 2] != 1) || (sm[R - 1] != S && sm[R - 1] != 1)) {
      throw shape_error(std::string(who) + ": attn_mask of shape " + shape_to_string(sm) +
                        " does not broadcast to the scores' [..., " + std::to_string(L) + ", " + std::to_string(S) + "]");
    }
    mask = attn_mask;
  }
  if (o.is_causal) {
    const auto causal = detail::host_to<B>(detail::causal_mask<T>(L, S).reshape(detail::right_aligned<R>(Shape<2>{L, S})));
    mask = user_mask ? Tensor<T, R, B>(mask + causal) : causal;
  }
  if (user_mask || o.is_causal) detail::check_rows_see_a_key(detail::to_host(mask), who);
  const double scale = o.scale ? *o.scale : 1.0 / std::sqrt(static_cast<double>(E));
  return detail::attend(q, k, v, mask, scale, o.dropout_p, o.generator);
}

/// Masks of MultiheadAttention and the transformer layers (PyTorch's conventions).
template <class T = float, class B = cpu>
struct AttentionMasks {
  bool causal = false;                  ///< query i sees keys 0..i only
  Tensor<bool, 2, B> key_padding_mask;  ///< [N, S]: true hides key s of example n; empty: none
  Tensor<T, 2, B> attn_mask;            ///< [L, S] added to every head's scores (-inf hides); empty: none
};

/// Options of MultiheadAttention.
struct MultiheadAttentionOptions {
  double dropout = 0.0;            ///< on the attention weights, in training
  bool bias = true;                ///< in_proj_bias and out_proj.bias
  Generator* generator = nullptr;  ///< initial weights and dropout masks; nullptr: default_generator()
};

/// torch.nn.MultiheadAttention with batch_first=True: query [N, L, E], key and value [N, S, E]
/// -> [N, L, E]. Each of the num_heads heads attends over E / num_heads features.
///
/// The result is one expression. Self-attention on a computed value (`mha(h, h, h)` where h is
/// not a leaf) differentiates h's producer once per use (docs/autodiff.md, "the sweep
/// differentiates a tree"): the transformer layers avoid that by running their sublayers as
/// stages; standalone, wrap the producer in nn::cut or pass a tensor.
template <class T = float, class B = cpu>
struct MultiheadAttention : Module<MultiheadAttention<T, B>> {
  static constexpr const char* type_name = "MultiheadAttention";
  Tensor<T, 2, B> in_proj_weight;  ///< [3E, E]: query, key, value projections stacked
  Tensor<T, 1, B> in_proj_bias;    ///< [3E], zeros
  Linear<T, B> out_proj;           ///< E -> E, bias zeros

  /// PyTorch's initialization: in_proj_weight Xavier-uniform, biases zero, out_proj.weight as a Linear's.
  MultiheadAttention(index_t embed_dim, index_t num_heads, MultiheadAttentionOptions o = {})
      : in_proj_weight(Shape<2>{checked_dim(embed_dim, num_heads) * 3, embed_dim}),
        in_proj_bias(Shape<1>{3 * embed_dim}),
        out_proj(embed_dim, embed_dim, LinearOptions{o.bias, o.generator}),
        num_heads_(num_heads),
        options_(o) {
    if (!(o.dropout >= 0 && o.dropout <= 1)) {
      throw value_error("MultiheadAttention: dropout must be in [0, 1], got " + std::to_string(o.dropout));
    }
    init::xavier_uniform_(in_proj_weight, o.generator ? *o.generator : default_generator());
    if (o.bias) out_proj.bias.fill(T(0));
  }

  auto members() {
    return std::make_tuple(param("in_proj_weight", in_proj_weight), param("in_proj_bias", in_proj_bias, options_.bias),
                           child("out_proj", out_proj));
  }
  index_t embed_dim() const { return in_proj_weight.shape()[1]; }
  index_t num_heads() const { return num_heads_; }
  index_t head_dim() const { return embed_dim() / num_heads_; }
  double dropout() const { return options_.dropout; }

  /// Attention of `query` over `key`/`value` (all [N, *, E]) under `masks`.
  template <class Q, class K, class V>
  auto operator()(const Q& query, const K& key, const V& value, const AttentionMasks<T, B>& masks = {}) const {
    static_assert(rank_v<Q> == 3 && rank_v<K> == 3 && rank_v<V> == 3,
                  "tessera::nn::MultiheadAttention: query, key and value are [batch, length, embed_dim]");
    const auto sq = query.shape(), sk = key.shape(), sv = value.shape();
    const index_t N = sq[0], L = sq[1], S = sk[1], E = embed_dim();
    for (const auto& [what, s] : {std::pair{"query", sq}, std::pair{"key", sk}, std::pair{"value", sv}}) {
      if (s[2] != E || s[0] != N) {
        throw shape_error(std::string("MultiheadAttention: ") + what + " of shape " + shape_to_string(s) +
                          ", expected [" + std::to_string(N) + ", length, " + std::to_string(E) + "]");
      }
    }
    if (sv[1] != S) {
      throw shape_error("MultiheadAttention: key " + shape_to_string(sk) + " and value " + shape_to_string(sv) +
                        " differ in length");
    }
    const auto project = [&](const auto& x, index_t part) {
      const auto rows = slice(in_proj_weight, 0, part * E, (part + 1) * E);
      const auto y = matmul(x, transpose(rows)) + slice(in_proj_bias, 0, part * E, (part + 1) * E);
      // [N, len, E] -> [N, heads, len, head_dim]
      return transpose(reshape(y, Shape<4>{N, x.shape()[1], num_heads_, head_dim()}), 1, 2);
    };
    // The extents and the mask are checked here already: straight to the attention expression.
    const auto heads = detail::attend(project(query, 0), project(key, 1), project(value, 2), combined_mask(masks, N, L, S),
                                      1.0 / std::sqrt(static_cast<double>(head_dim())),
                                      this->is_training() ? options_.dropout : 0.0, options_.generator);
    return out_proj(reshape(transpose(heads, 1, 2), Shape<3>{N, L, E}));
  }

 private:
  static index_t checked_dim(index_t embed_dim, index_t num_heads) {
    if (embed_dim <= 0 || num_heads <= 0 || embed_dim % num_heads != 0) {
      throw value_error("MultiheadAttention: embed_dim " + std::to_string(embed_dim) + " must be a positive multiple of num_heads " +
                        std::to_string(num_heads));
    }
    return embed_dim;
  }

  /// The masks as one additive [N or 1, 1, L or 1, S] tensor (empty when there are none).
  Tensor<T, 4, B> combined_mask(const AttentionMasks<T, B>& masks, index_t N, index_t L, index_t S) const {
    const bool padding = masks.key_padding_mask.storage_id() != nullptr;
    const bool additive = masks.attn_mask.storage_id() != nullptr;
    if (!padding && !additive && !masks.causal) return {};
    const T inf = std::numeric_limits<T>::infinity();
    Tensor<T, 4, cpu> m = zeros<T, cpu>(Shape<4>{padding ? N : 1, 1, (additive || masks.causal) ? L : 1, S});
    if (padding) {
      const auto kpm = detail::to_host(masks.key_padding_mask);
      if (kpm.shape() != Shape<2>{N, S}) {
        throw shape_error("MultiheadAttention: key_padding_mask of shape " + shape_to_string(kpm.shape()) + ", expected [" +
                          std::to_string(N) + ", " + std::to_string(S) + "] (batch, key length)");
      }
      m = Tensor<T, 4, cpu>(m + where(kpm.reshape(Shape<4>{N, 1, 1, S}), -inf, T(0)));
    }
    if (additive) {
      const auto am = detail::to_host(masks.attn_mask);
      if (am.shape() != Shape<2>{L, S}) {
        throw shape_error("MultiheadAttention: attn_mask of shape " + shape_to_string(am.shape()) + ", expected [" +
                          std::to_string(L) + ", " + std::to_string(S) + "] (query length, key length)");
      }
      m = Tensor<T, 4, cpu>(m + am.reshape(Shape<4>{1, 1, L, S}));
    }
    if (masks.causal) m = Tensor<T, 4, cpu>(m + detail::causal_mask<T>(L, S).reshape(Shape<4>{1, 1, L, S}));
    detail::check_rows_see_a_key(m, "MultiheadAttention");
    return detail::host_to<B>(m);
  }

  index_t num_heads_;
  MultiheadAttentionOptions options_;
};

/// The feed-forward activation of the transformer layers.
enum class Activation { relu, gelu };

/// Options of TransformerEncoderLayer and TransformerDecoderOnlyLayer (torch.nn's defaults).
struct TransformerLayerOptions {
  index_t dim_feedforward = 2048;
  double dropout = 0.1;                    ///< after attention, inside and after the feed-forward block
  Activation activation = Activation::relu;
  double layer_norm_eps = 1e-5;
  bool norm_first = false;                 ///< pre-norm (x + f(norm(x))) instead of post-norm (norm(x + f(x)))
  bool bias = true;                        ///< biases of the linear layers and attention
  Generator* generator = nullptr;          ///< initial weights and dropout masks; nullptr: default_generator()
};

template <class T, class B, bool Causal>
struct TransformerLayer;

namespace detail {

/// One call of a transformer layer as an nn::cut block: the layer (a copy sharing its tensors)
/// and the call's masks.
///
/// Inside a sweep it runs as a chain of stages, each one vjp over its input and the sublayers it
/// uses (forward_with_pullback, see nn/cut.hpp): pre-norm x + attention(norm1(x)), then
/// h + feed_forward(norm2(h)); post-norm x + attention(x), norm1, h + feed_forward(h), norm2.
/// Why: the sweep differentiates a tree, so a value used twice in one expression is
/// differentiated twice -- the residual stream (x and x + f(x)) feeds both the sublayer and the
/// sum, and LayerNorm reads its input three times (mean, variance, centering); post-norm as one
/// expression ran every backward GEMM three times. As a stage's input the value is a variable,
/// whose uses add up in one pass. Outside a sweep the same stages are plain evaluations.
template <class T, class B, bool Causal>
struct TransformerLayerCall : Module<TransformerLayerCall<T, B, Causal>> {
  using Layer = TransformerLayer<T, B, Causal>;
  using Value = Tensor<T, 3, B>;
  using Pullback = std::function<std::tuple<Value, TransformerLayerCall>(const Value&)>;
  Layer layer;
  AttentionMasks<T, B> masks;

  TransformerLayerCall(Layer l, AttentionMasks<T, B> m) : layer(std::move(l)), masks(std::move(m)) {
    masks.causal = masks.causal || Causal;
  }
  auto members() { return std::make_tuple(child("layer", layer)); }

  Value operator()(const Value& x) const { return run(x, nullptr); }

  std::pair<Value, Pullback> forward_with_pullback(const Value& x) const {
    std::vector<StagePullback> stages;
    Value y = run(x, &stages);
    Pullback pullback = [self = *this, stages = std::move(stages)](const Value& dy) {
      TransformerLayerCall grads = self;  // every parameter is overwritten by the stage that uses it
      Value d = dy;
      for (auto it = stages.rbegin(); it != stages.rend(); ++it) d = (*it)(d, grads.layer);
      return std::make_tuple(std::move(d), std::move(grads));
    };
    return {std::move(y), std::move(pullback)};
  }

 private:
  /// A stage's pullback: from its output's cotangent to its input's, writing its sublayers' gradients.
  using StagePullback = std::function<Value(const Value&, Layer&)>;

  /// f(x, sublayers...) evaluated; inside a sweep (stages given) as a vjp whose pullback is recorded.
  template <class F, class... M>
  Value stage(std::vector<StagePullback>* stages, const F& f, const Value& x, M Layer::*... sublayer) const {
    if (!stages) return Value(f(x, (layer.*sublayer)...));
    auto [y, pullback] = vjp(f, x, (layer.*sublayer)...);
    stages->push_back([pullback = std::move(pullback), sublayer...](const Value& dy, Layer& grads) {
      auto g = pullback(dy);
      std::apply([&](auto& dx, auto&... dm) { ((grads.*sublayer = dm), ...); (void)dx; }, g);
      return std::get<0>(g);
    });
    return Value(y);
  }

  Value run(const Value& x, std::vector<StagePullback>* stages) const {
    const Layer& L = layer;
    const AttentionMasks<T, B>& m = masks;
    auto self_attention = [&L, &m](const auto& z, const auto& attn) { return L.dropout1(attn(z, z, z, m)); };
    auto normalize = [](const auto& z, const auto& norm) { return norm(z); };
    auto feed_forward = [&L](const auto& activation) {
      return [&L, activation](const auto& z, const auto& linear1, const auto& linear2) {
        return L.dropout2(linear2(L.dropout(activation(linear1(z)))));
      };
    };
    auto relu_fn = [](const auto& z) { return relu(z); };
    auto gelu_fn = [](const auto& z) { return gelu(z); };
    const bool use_gelu = L.options().activation == Activation::gelu;
    if (L.options().norm_first) {
      auto attention_block = [&](const auto& z, const auto& attn, const auto& norm1) { return z + self_attention(norm1(z), attn); };
      auto ff_block = [&](const auto& ff) {
        return [ff](const auto& z, const auto& linear1, const auto& linear2, const auto& norm2) {
          return z + ff(norm2(z), linear1, linear2);
        };
      };
      const Value h = stage(stages, attention_block, x, &Layer::self_attn, &Layer::norm1);
      return use_gelu ? stage(stages, ff_block(feed_forward(gelu_fn)), h, &Layer::linear1, &Layer::linear2, &Layer::norm2)
                      : stage(stages, ff_block(feed_forward(relu_fn)), h, &Layer::linear1, &Layer::linear2, &Layer::norm2);
    }
    auto attention_residual = [&](const auto& z, const auto& attn) { return z + self_attention(z, attn); };
    auto ff_residual = [&](const auto& ff) {
      return [ff](const auto& z, const auto& linear1, const auto& linear2) { return z + ff(z, linear1, linear2); };
    };
    const Value h = stage(stages, normalize, stage(stages, attention_residual, x, &Layer::self_attn), &Layer::norm1);
    const Value s = use_gelu ? stage(stages, ff_residual(feed_forward(gelu_fn)), h, &Layer::linear1, &Layer::linear2)
                             : stage(stages, ff_residual(feed_forward(relu_fn)), h, &Layer::linear1, &Layer::linear2);
    return stage(stages, normalize, s, &Layer::norm2);
  }
};

}  // namespace detail

/// A transformer layer: self-attention and a feed-forward block, each with a residual connection
/// and a LayerNorm (post-norm as torch.nn.TransformerEncoderLayer's default, or pre-norm), dropout
/// and ReLU or GELU. Input and output [N, L, d_model] (batch first). Causal: the layer always hides
/// the future (a decoder-only block, as in GPT); otherwise AttentionMasks::causal chooses per call.
///
/// In an expression the layer is a type boundary like nn::cut: the outer expression sees one node,
/// and inside a sweep each sublayer runs as its own stage (the layer's input and the residual
/// stream are differentiated once, however often the stage reads them).
template <class T, class B, bool Causal>
struct TransformerLayer : Module<TransformerLayer<T, B, Causal>> {
  static constexpr const char* type_name = Causal ? "TransformerDecoderOnlyLayer" : "TransformerEncoderLayer";
  MultiheadAttention<T, B> self_attn;
  Linear<T, B> linear1;  ///< d_model -> dim_feedforward
  Dropout<T, B> dropout;
  Linear<T, B> linear2;  ///< dim_feedforward -> d_model
  LayerNorm<T, 1, B> norm1;
  LayerNorm<T, 1, B> norm2;
  Dropout<T, B> dropout1;
  Dropout<T, B> dropout2;

  TransformerLayer(index_t d_model, index_t nhead, TransformerLayerOptions o = {})
      : self_attn(d_model, nhead, MultiheadAttentionOptions{o.dropout, o.bias, o.generator}),
        linear1(d_model, checked_feedforward(o.dim_feedforward), LinearOptions{o.bias, o.generator}),
        dropout(checked_dropout(o.dropout), DropoutOptions{o.generator}),
        linear2(o.dim_feedforward, d_model, LinearOptions{o.bias, o.generator}),
        norm1(d_model, LayerNormOptions{o.layer_norm_eps}),
        norm2(d_model, LayerNormOptions{o.layer_norm_eps}),
        dropout1(o.dropout, DropoutOptions{o.generator}),
        dropout2(o.dropout, DropoutOptions{o.generator}),
        options_(o) {}

  auto members() {
    return std::make_tuple(child("self_attn", self_attn), child("linear1", linear1), child("dropout", dropout),
                           child("linear2", linear2), child("norm1", norm1), child("norm2", norm2),
                           child("dropout1", dropout1), child("dropout2", dropout2));
  }
  const TransformerLayerOptions& options() const { return options_; }
  index_t d_model() const { return self_attn.embed_dim(); }

  /// The layer on src [N, L, d_model] under `masks` (key padding, additive, causal).
  template <class X>
  auto operator()(const X& src, const AttentionMasks<T, B>& masks = {}) const {
    static_assert(rank_v<X> == 3, "tessera::nn::TransformerLayer: the input is [batch, length, d_model]");
    static_assert(std::is_same_v<value_type_t<X>, T>, "tessera::nn::TransformerLayer: input element type differs from the layer's");
    if (src.shape()[2] != d_model()) {
      throw shape_error(std::string(type_name) + ": input of shape " + shape_to_string(src.shape()) + " has " +
                        std::to_string(src.shape()[2]) + " features, expected d_model " + std::to_string(d_model()));
    }
    using Call = detail::TransformerLayerCall<T, B, Causal>;
    return nn::detail::CutNode<X, Call>(src, Call(*this, masks));
  }

 private:
  static index_t checked_feedforward(index_t f) {
    if (f <= 0) throw value_error("TransformerLayer: dim_feedforward must be positive, got " + std::to_string(f));
    return f;
  }
  static double checked_dropout(double p) {
    if (!(p >= 0 && p <= 1)) throw value_error("TransformerLayer: dropout must be in [0, 1], got " + std::to_string(p));
    return p;
  }
  TransformerLayerOptions options_;
};

/// torch.nn.TransformerEncoderLayer (batch_first=True).
template <class T = float, class B = cpu>
using TransformerEncoderLayer = TransformerLayer<T, B, false>;
/// A decoder-only (GPT) block: a TransformerEncoderLayer whose self-attention is always causal.
template <class T = float, class B = cpu>
using TransformerDecoderOnlyLayer = TransformerLayer<T, B, true>;

/// The fixed sinusoidal encoding of "Attention Is All You Need" added to x [N, L, d_model]:
/// pe[p, 2i] = sin(p / 10000^(2i / d)), pe[p, 2i + 1] = cos(p / 10000^(2i / d)). Kept as the buffer "pe".
template <class T = float, class B = cpu>
struct SinusoidalPositionalEncoding : Module<SinusoidalPositionalEncoding<T, B>> {
  static constexpr const char* type_name = "SinusoidalPositionalEncoding";
  Tensor<T, 2, B> pe;  ///< [max_len, d_model]

  explicit SinusoidalPositionalEncoding(index_t d_model, index_t max_len = 5000) {
    if (d_model <= 0 || max_len <= 0) {
      throw value_error("SinusoidalPositionalEncoding: d_model and max_len must be positive, got " + std::to_string(d_model) +
                        " and " + std::to_string(max_len));
    }
    auto host = Tensor<T, 2, cpu>::uninitialized(Shape<2>{max_len, d_model});
    for (index_t p = 0; p < max_len; ++p) {
      for (index_t i = 0; i < d_model; ++i) {
        const double rate = std::exp(-std::log(10000.0) * double(i - i % 2) / double(d_model));
        host(p, i) = static_cast<T>(i % 2 == 0 ? std::sin(double(p) * rate) : std::cos(double(p) * rate));
      }
    }
    pe = detail::host_to<B>(host);
  }
  auto members() { return std::make_tuple(buffer("pe", pe)); }

  template <class X>
  auto operator()(const X& x) const {
    return x + slice(pe, 0, 0, checked_length(x.shape(), pe.shape(), type_name));
  }

  /// Throws unless x is [N, L, d_model] with L <= max_len; returns L.
  template <std::size_t R>
  static index_t checked_length(const Shape<R>& s, const Shape<2>& table, const char* who) {
    static_assert(R == 3, "tessera::nn: positional encodings take [batch, length, d_model]");
    if (s[2] != table[1] || s[1] > table[0]) {
      throw shape_error(std::string(who) + ": input of shape " + shape_to_string(s) + ", expected [batch, length <= " +
                        std::to_string(table[0]) + ", " + std::to_string(table[1]) + "]");
    }
    return s[1];
  }
};

/// A learned position embedding (GPT's) added to x [N, L, d_model]: the parameter "weight"
/// [max_len, d_model], initialized from N(0, 0.02^2).
template <class T = float, class B = cpu>
struct LearnedPositionalEncoding : Module<LearnedPositionalEncoding<T, B>> {
  static constexpr const char* type_name = "LearnedPositionalEncoding";
  Tensor<T, 2, B> weight;  ///< [max_len, d_model]

  LearnedPositionalEncoding(index_t max_len, index_t d_model, Generator* generator = nullptr)
      : weight(Shape<2>{positive(max_len), positive(d_model)}) {
    init::normal_(weight, generator ? *generator : default_generator(), 0.0, 0.02);
  }
  auto members() { return std::make_tuple(param("weight", weight)); }

  template <class X>
  auto operator()(const X& x) const {
    return x + slice(weight, 0, 0, SinusoidalPositionalEncoding<T, B>::checked_length(x.shape(), weight.shape(), type_name));
  }

 private:
  static index_t positive(index_t e) {
    if (e <= 0) throw value_error("LearnedPositionalEncoding: max_len and d_model must be positive, got " + std::to_string(e));
    return e;
  }
};

}  // namespace tessera::nn
