// The character-level language models of examples/char_lm.cpp, in a header so that tessera-serve
// serves the same types that char_lm trains and exports (architectures "char_lstm" and
// "char_transformer": token ids [N, T] in, next-character logits [N, T, 256] out).
#pragma once

#include <tessera/tessera.hpp>
#include <tessera/serve/export.hpp>
#include <tessera/serve/registry.hpp>

#include <cstdint>
#include <tuple>

namespace char_models {

using namespace tessera;

/// Bytes: every model reads and predicts one of 256 values.
inline constexpr index_t vocab = 256;

/// The models' sizes (char_lm's flags; the hyperparameters of an exported model).
struct Sizes {
  index_t embed = 64;    // lstm
  index_t hidden = 256;  // lstm
  index_t d_model = 128;     // transformer
  index_t heads = 4;         // transformer
  index_t feedforward = 512;  // transformer
  double dropout = 0.0;      // transformer
  index_t seq = 64;  // transformer: the positions it learns (the longest input)

  nlohmann::json to_json() const {
    return {{"embed", embed}, {"hidden", hidden}, {"d_model", d_model}, {"heads", heads},
            {"feedforward", feedforward}, {"dropout", dropout}, {"seq", seq}};
  }
  static Sizes from_json(const nlohmann::json& j) {
    Sizes s;
    s.embed = j.at("embed").get<index_t>();
    s.hidden = j.at("hidden").get<index_t>();
    s.d_model = j.at("d_model").get<index_t>();
    s.heads = j.at("heads").get<index_t>();
    s.feedforward = j.at("feedforward").get<index_t>();
    s.dropout = j.at("dropout").get<double>();
    s.seq = j.at("seq").get<index_t>();
    return s;
  }
};


/// Embedding -> LSTM -> Linear to the vocabulary. Batch-first: ids [N, T] -> logits [N, T, 256].
struct CharLSTM : nn::Module<CharLSTM> {
  static constexpr const char* type_name = "CharLSTM";
  static constexpr const char* name = "lstm";
  static constexpr const char* architecture = "char_lstm";  ///< as registered for serving
  static constexpr double default_lr = 2e-2;
  nn::Embedding<float> embed;
  nn::LSTM<float> lstm;
  nn::Linear<float> head;

  explicit CharLSTM(const Sizes& o)
      : embed(vocab, o.embed), lstm(o.embed, o.hidden, {.batch_first = true}), head(o.hidden, vocab) {}
  auto members() {
    return std::make_tuple(nn::child("embed", embed), nn::child("lstm", lstm), nn::child("head", head));
  }

  template <class I>
  auto operator()(const I& ids) const {
    return head(lstm(embed(ids)).first);  // the outputs of every step; the final state is not needed
  }
  /// The same forward on io::export_onnx's graph.
  template <class G, class V>
  auto onnx(G& g, const V& ids) const {
    return g(head, g(lstm, g(embed, ids)).first);
  }
  /// The model's hyperparameters, for TensorBoard's HParams tab.
  static tessera::summary::HParams hparams(const Sizes& o) {
    return {{"embed", double(o.embed)}, {"hidden", double(o.hidden)}};
  }
};

/// A decoder-only transformer (GPT-style): the embedding, learned positions, two pre-norm causal
/// blocks with GELU, a final LayerNorm, and the embedding again as the output projection (tied
/// weights). Batch-first: ids [N, T] -> logits [N, T, 256]; T at most --seq (the positions learned).
struct CharTransformer : nn::Module<CharTransformer> {
  static constexpr const char* type_name = "CharTransformer";
  static constexpr const char* name = "transformer";
  static constexpr const char* architecture = "char_transformer";
  static constexpr double default_lr = 3e-3;
  using Block = nn::TransformerDecoderOnlyLayer<float>;
  nn::Embedding<float> embed;
  nn::LearnedPositionalEncoding<float> positions;
  Block block1, block2;
  // In a cut: LayerNorm reads its input three times, and the sweep differentiates a tree, so as
  // part of one expression it would run the blocks' backward three times (docs/nn.md).
  nn::Cut<nn::LayerNorm<float>> norm;

  explicit CharTransformer(const Sizes& o)
      : embed(vocab, o.d_model),
        positions(o.seq, o.d_model),
        block1(o.d_model, o.heads, block_options(o)),
        block2(o.d_model, o.heads, block_options(o)),
        norm(nn::LayerNorm<float>(o.d_model)) {
    // GPT's scale: the table is also the output projection, and N(0, 1) rows would start the
    // logits with a spread of sqrt(d_model).
    nn::init::normal_(embed.weight, default_generator(), 0.0, 0.02);
  }
  auto members() {
    return std::make_tuple(nn::child("embed", embed), nn::child("positions", positions), nn::child("block1", block1),
                           nn::child("block2", block2), nn::child("norm", norm));
  }

  template <class I>
  auto operator()(const I& ids) const {
    return embed.attend(norm(block2(block1(positions(embed(ids))))));
  }
  /// The same forward on io::export_onnx's graph.
  template <class G, class V>
  auto onnx(G& g, const V& ids) const {
    return g.attend(embed, g(norm, g(block2, g(block1, g(positions, g(embed, ids))))));
  }
  static tessera::summary::HParams hparams(const Sizes& o) {
    return {{"d_model", double(o.d_model)}, {"heads", double(o.heads)}, {"feedforward", double(o.feedforward)},
            {"dropout", o.dropout}, {"layers", 2.0}};
  }

 private:
  static nn::TransformerLayerOptions block_options(const Sizes& o) {
    nn::TransformerLayerOptions b;
    b.dim_feedforward = o.feedforward;
    b.dropout = o.dropout;
    b.activation = nn::Activation::gelu;
    b.norm_first = true;
    return b;
  }
};

/// What a served language model takes and answers.
inline serve::Signature signature() {
  serve::Signature s;
  s.inputs = {{"tokens", serve::DataType::int64, {-1, -1}}};
  s.outputs = {{"logits", serve::DataType::float32, {-1, -1, vocab}}};
  return s;
}

/// Registers "char_lstm" and "char_transformer" (hyperparameters: Sizes::to_json) for serving on
/// the CPU. (A template, so char_lm, which includes this header, does not compile the serving code.)
template <class Registry = serve::ModelRegistry>
void register_models(Registry& registry) {
  registry.template add<Tensor<std::int64_t, 2>>("char_lstm", [](const nlohmann::json& hp) { return CharLSTM(Sizes::from_json(hp)); });
  registry.template add<Tensor<std::int64_t, 2>>("char_transformer",
                                                 [](const nlohmann::json& hp) { return CharTransformer(Sizes::from_json(hp)); });
}

}  // namespace char_models
