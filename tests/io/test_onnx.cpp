// ONNX export: the example models and one with every other mapped layer, written with their inputs
// and tessera's eval-mode outputs at batch sizes 1 and 7, for onnx_check.py to compare with the
// real ONNX Runtime (and to pass the real onnx checker). Here: the file's structure read back with
// protoc --decode_raw-free checks, and the errors.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "../../examples/char_models.hpp"
#include "../../examples/fashion_models.hpp"
#include "../temp_dir.hpp"

using namespace tessera;

namespace {

std::string output_dir() {
  if (const char* env = std::getenv("TESSERA_ONNX_DIR")) {
    ::mkdir(env, 0755);
    return env;
  }
  return tessera_test::make_temp_dir("tessera_onnx_test_");
}

template <class T, std::size_t R>
void write_raw(const std::string& path, const Tensor<T, R>& t) {
  const Tensor<T, R> dense = t + T(0);
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(dense.data()), std::streamsize(dense.size() * index_t(sizeof(T))));
}

template <std::size_t R>
nlohmann::json shape_json(const Shape<R>& s) {
  return nlohmann::json(std::vector<index_t>(s.begin(), s.end()));
}

/// Exports `model` as <name>.onnx and, for batch sizes 1 and 7, the input and tessera's output.
template <class M, class MakeInput>
void export_case(const std::string& dir, const std::string& name, M& model, MakeInput make_input, nlohmann::json& cases) {
  const auto example = make_input(1);
  model.train();
  io::export_onnx(model, example, dir + "/" + name + ".onnx");
  CHECK(model.is_training());  // export ran in eval mode and gave the model its own mode back
  model.eval();
  for (index_t batch : {1, 7}) {
    const auto x = make_input(batch);
    using Y = decltype(model(x));
    const Tensor<value_type_t<Y>, rank_v<Y>> y = model(x);
    const std::string stem = dir + "/" + name + "_b" + std::to_string(batch);
    write_raw(stem + "_input.bin", x);
    write_raw(stem + "_output.bin", y);
    cases.push_back({{"model", name + ".onnx"},
                     {"input", stem + "_input.bin"},
                     {"input_dtype", x.dtype()},
                     {"input_shape", shape_json(x.shape())},
                     {"output", stem + "_output.bin"},
                     {"output_dtype", y.dtype()},
                     {"output_shape", shape_json(y.shape())}});
  }
}

/// Every mapped layer the example models do not use.
auto zoo() {
  return nn::sequential(
      nn::Conv2d<float>(3, 6, 3, {.stride = 2, .padding = 1, .bias = true}), nn::BatchNorm2d<float>(6), nn::SiLU{},
      nn::AvgPool2d(2, {.stride = 1, .padding = 1}), nn::MaxPool2d(3, {.stride = 2, .padding = 1, .dilation = 1}),
      nn::residual(nn::sequential(nn::Conv2d<float>(6, 6, 3, {.padding = 1}), nn::LeakyReLU(0.2))), nn::GlobalAvgPool2d{},
      nn::Linear<float>(6, 12), nn::LayerNorm<float>(12), nn::GELU{}, nn::Dropout<float>(0.5), nn::Linear<float>(12, 8, {.bias = false}),
      nn::Tanh{}, nn::Linear<float>(8, 5));
}

/// The squashing activations, apart: at the end of the zoo they would hide its differences.
auto heads() { return nn::sequential(nn::Linear<float>(4, 6), nn::Sigmoid{}, nn::Linear<float>(6, 5), nn::Softmax(-1)); }

/// Embedding and Linear on a rank-3 value (MatMul + Add).
auto sequence_model() { return nn::sequential(nn::Embedding<float>(20, 6), nn::Linear<float>(6, 4), nn::ReLU{}, nn::Flatten{}); }

/// Stacked bidirectional LSTM (batch-first) and GRU (time-major, between transposes), both final
/// states used: x [N, 4, 6] -> [N, 4, 3]. The GRU has no biases. (4 steps: as many as the LSTM's
/// state entries, so that the final states add to the outputs.)
struct Recurrent : nn::Module<Recurrent> {
  static constexpr const char* type_name = "Recurrent";
  nn::LSTM<float, cpu, 2, true> lstm{6, 5, {.batch_first = true}};
  nn::GRU<float, cpu, 2, true> gru{10, 4, {.bias = false}};
  nn::Linear<float> head{8, 3};
  nn::Linear<float> state_head{5, 3};
  nn::Linear<float> gru_state_head{4, 3};
  auto members() {
    return std::make_tuple(nn::child("lstm", lstm), nn::child("gru", gru), nn::child("head", head),
                           nn::child("state_head", state_head), nn::child("gru_state_head", gru_state_head));
  }
  template <class X>
  auto operator()(const X& x) const {
    const auto [out, state] = lstm(x);
    const auto [h, c] = state;
    const auto [g, g_n] = gru(transpose(out, 0, 1));
    return head(transpose(g, 0, 1)) + state_head(transpose(h + c, 0, 1)) + gru_state_head(relu(transpose(g_n, 0, 1)));
  }
  template <class G, class V>
  auto onnx(G& g, const V& x) const {
    const auto [out, state] = g(lstm, x);
    const auto [h, c] = state;
    const auto [y, y_n] = g(gru, g.transpose(out, 0, 1));
    return g.add(g.add(g(head, g.transpose(y, 0, 1)), g(state_head, g.transpose(g.add(h, c), 0, 1))),
                 g(gru_state_head, g(nn::ReLU{}, g.transpose(y_n, 0, 1))));
  }
};

/// A post-norm encoder layer (ReLU) after sinusoidal positions, then attention of its own:
/// x [N, 5, 4] -> [N, 5, 3].
struct Encoder : nn::Module<Encoder> {
  static constexpr const char* type_name = "Encoder";
  nn::Linear<float> in{4, 8};
  nn::SinusoidalPositionalEncoding<float> positions{8, 16};
  nn::TransformerEncoderLayer<float> layer{8, 2, {.dim_feedforward = 16}};
  nn::MultiheadAttention<float> attention{8, 4};
  nn::Linear<float> out{8, 3};
  auto members() {
    return std::make_tuple(nn::child("in", in), nn::child("positions", positions), nn::child("layer", layer),
                           nn::child("attention", attention), nn::child("out", out));
  }
  template <class X>
  auto operator()(const X& x) const {
    const Tensor<float, 3> h = layer(positions(in(x)));
    return out(attention(h, h, h));
  }
  template <class G, class V>
  auto onnx(G& g, const V& x) const {
    const auto h = g(layer, g(positions, g(in, x)));
    return g(out, g(attention, h, h, h));
  }
};

/// Batch-norm statistics that are not the defaults, so that an exporter ignoring them is caught.
template <class M>
void randomize_buffers(M& model, Generator& gen) {
  nn::for_each_buffer(model, [&](const std::string& name, auto& t) {
    using T = value_type_t<std::decay_t<decltype(t)>>;
    if constexpr (std::is_floating_point_v<T>) {
      if (name.find("running_var") != std::string::npos) t = uniform<T>(gen, t.shape(), T(0.5), T(2));
      else t = uniform<T>(gen, t.shape(), T(-0.5), T(0.5));
    }
  });
  nn::for_each_parameter(model, [&](const std::string& name, auto& t) {
    using T = value_type_t<std::decay_t<decltype(t)>>;
    if (name.find("bias") != std::string::npos) t = uniform<T>(gen, t.shape(), T(-0.3), T(0.3));
  });
}

}  // namespace

TEST_CASE("the example models and every mapped layer export to ONNX, with tessera's outputs beside them") {
  const std::string dir = output_dir();
  nlohmann::json cases = nlohmann::json::array();
  Generator gen(5);
  manual_seed(5);
  auto cnn = fashion::cnn<cpu>(4, 16);
  randomize_buffers(cnn, gen);
  export_case(dir, "fashion_cnn", cnn, [&](index_t n) { return uniform<float>(gen, {n, 1, 28, 28}); }, cases);
  auto mlp = fashion::mlp<cpu>(32, 0.2);
  export_case(dir, "fashion_mlp", mlp, [&](index_t n) { return uniform<float>(gen, {n, 784}); }, cases);
  auto z = zoo();
  randomize_buffers(z, gen);
  export_case(dir, "zoo", z, [&](index_t n) { return normal<float>(gen, {n, 3, 10, 10}); }, cases);
  auto h = heads();
  export_case(dir, "heads", h, [&](index_t n) { return normal<float>(gen, {n, 4}, 0.0f, 3.0f); }, cases);
  // Double precision, and constants the exporter makes itself (a BatchNorm without affine). (GELU
  // in double exports too, but ONNX Runtime's CPU provider has no double Erf to run it.)
  auto doubles = nn::sequential(nn::Linear<double>(4, 6), nn::Tanh{},
                                nn::BatchNorm1d<double>(6, {.eps = 1e-5, .momentum = 0.1, .affine = false}),
                                nn::Linear<double>(6, 3));
  randomize_buffers(doubles, gen);
  export_case(dir, "doubles", doubles, [&](index_t n) { return normal<double>(gen, {n, 4}); }, cases);
  auto seq = sequence_model();
  export_case(
      dir, "sequence", seq,
      [&](index_t n) {
        Tensor<std::int64_t, 2> ids(n, 5);
        for (index_t i = 0; i < n; ++i)
          for (index_t t = 0; t < 5; ++t) ids(i, t) = (i * 7 + t * 3) % 20;
        return ids;
      },
      cases);
  // Token ids [N, 6] for the language models.
  const auto tokens = [](index_t n) {
    Tensor<std::int64_t, 2> ids(n, 6);
    for (index_t i = 0; i < n; ++i)
      for (index_t t = 0; t < 6; ++t) ids(i, t) = (i * 31 + t * 17 + 5) % char_models::vocab;
    return ids;
  };
  char_models::Sizes sizes;
  sizes.embed = 8;
  sizes.hidden = 16;
  sizes.d_model = 16;
  sizes.heads = 2;
  sizes.feedforward = 32;
  sizes.seq = 12;
  char_models::CharLSTM char_lstm(sizes);
  randomize_buffers(char_lstm, gen);
  export_case(dir, "char_lstm", char_lstm, tokens, cases);
  char_models::CharTransformer char_transformer(sizes);
  randomize_buffers(char_transformer, gen);
  export_case(dir, "char_transformer", char_transformer, tokens, cases);
  Recurrent recurrent;
  randomize_buffers(recurrent, gen);
  export_case(dir, "recurrent", recurrent, [&](index_t n) { return normal<float>(gen, {n, 4, 6}); }, cases);
  Encoder encoder;
  randomize_buffers(encoder, gen);
  export_case(dir, "encoder", encoder, [&](index_t n) { return normal<float>(gen, {n, 5, 4}); }, cases);
  std::ofstream(dir + "/cases.json") << cases.dump(2);
  CHECK(cases.size() == 20);

  // The file starts as a ModelProto does: field 1 (ir_version) = 8.
  std::ifstream f(dir + "/fashion_cnn.onnx", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), {});
  REQUIRE(bytes.size() > 4 * 1000);  // the weights are in it
  CHECK(bytes[0] == 0x08);
  CHECK(bytes[1] == 0x08);
  for (const char* text : {"Conv", "BatchNormalization", "MaxPool", "Flatten", "Gemm", "0.weight", "1.running_var", "batch"}) {
    CAPTURE(text);
    CHECK(bytes.find(text) != std::string::npos);
  }
  CHECK(bytes.find("Dropout") == std::string::npos);  // dropped in eval mode
}

/// A module of its own without an onnx member.
struct Unmapped : nn::Module<Unmapped> {
  static constexpr const char* type_name = "Unmapped";
  nn::Linear<float> fc{4, 4};
  auto members() { return std::make_tuple(nn::child("fc", fc)); }
  template <class X>
  auto operator()(const X& x) const {
    return fc(x) * fc(x);
  }
};

/// An onnx member that calls a layer it does not list in members().
struct Unlisted : nn::Module<Unlisted> {
  static constexpr const char* type_name = "Unlisted";
  nn::Linear<float> fc{4, 4};
  nn::Linear<float> hidden{4, 4};
  auto members() { return std::make_tuple(nn::child("fc", fc)); }
  template <class X>
  auto operator()(const X& x) const {
    return hidden(fc(x));
  }
  template <class G, class V>
  auto onnx(G& g, const V& x) const {
    return g(hidden, g(fc, x));
  }
};

TEST_CASE("a layer without an ONNX mapping is an error that names it, and nothing is written") {
  const std::string dir = output_dir();
  struct ::stat st {};
  auto model = nn::sequential(nn::Linear<float>(4, 4), Unmapped{});
  const std::string path = dir + "/unmapped.onnx";
  CHECK_THROWS_WITH_AS(io::export_onnx(model, zeros<float>({1, 4}), path),
                       doctest::Contains("layer '1' (Unmapped) has no ONNX mapping"), value_error);
  CHECK(::stat(path.c_str(), &st) != 0);
  Unlisted unlisted;
  CHECK_THROWS_WITH_AS(io::export_onnx(unlisted, zeros<float>({1, 4}), path),
                       "export_onnx: Unlisted::onnx calls a Linear that is not one of its members() (its weights would have no name)",
                       value_error);
  CHECK(::stat(path.c_str(), &st) != 0);
}

/// An LSTM's outputs.
struct LSTMOutputs : nn::Module<LSTMOutputs> {
  static constexpr const char* type_name = "LSTMOutputs";
  nn::LSTM<float> lstm;
  explicit LSTMOutputs(nn::LSTM<float> l) : lstm(std::move(l)) {}
  auto members() { return std::make_tuple(nn::child("lstm", lstm)); }
  template <class X>
  auto operator()(const X& x) const {
    return lstm(x).first;
  }
  template <class G, class V>
  auto onnx(G& g, const V& x) const {
    return g(lstm, x).first;
  }
};

TEST_CASE("recurrent layers become ONNX LSTM and GRU nodes with their gates in ONNX's order") {
  // One forward LSTM layer with hidden size 1: the four gate rows of W are PyTorch's i f g o, and
  // the exported W must hold them as i o f c.
  nn::LSTM<float> lstm(1, 1);
  lstm.weight_ih[0] = Tensor<float, 2>({{1.f}, {2.f}, {3.f}, {4.f}});
  LSTMOutputs holder(lstm);
  const std::string path = output_dir() + "/gates.onnx";
  io::export_onnx(holder, zeros<float>({1, 2, 1}), path);
  std::ifstream f(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), {});
  // The initializer "lstm.W_l0" holds 1, 4, 2, 3 (float32, little-endian) as its raw data.
  const float want[] = {1.f, 4.f, 2.f, 3.f};
  std::string raw(reinterpret_cast<const char*>(want), sizeof want);
  CHECK(bytes.find("lstm.W_l0") != std::string::npos);
  CHECK(bytes.find(raw) != std::string::npos);
  for (const char* text : {"LSTM", "hidden_size", "direction", "forward"}) {
    CAPTURE(std::string(text));
    CHECK(bytes.find(text) != std::string::npos);
  }
}
