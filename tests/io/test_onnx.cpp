// ONNX export: the example models and one with every other mapped layer, written with their inputs
// and tessera's eval-mode outputs at batch sizes 1 and 7, for onnx_check.py to compare with the
// real ONNX Runtime (and to pass the real onnx checker). Here: the file's structure read back with
// protoc --decode_raw-free checks, and the errors.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "../../examples/fashion_models.hpp"

using namespace tessera;

namespace {

std::string output_dir() {
  if (const char* env = std::getenv("TESSERA_ONNX_DIR")) {
    ::mkdir(env, 0755);
    return env;
  }
  char pattern[] = "/tmp/tessera_onnx_test_XXXXXX";
  const char* dir = ::mkdtemp(pattern);
  REQUIRE(dir != nullptr);
  return dir;
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
  std::ofstream(dir + "/cases.json") << cases.dump(2);
  CHECK(cases.size() == 12);

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

TEST_CASE("a layer without an ONNX mapping is an error that names it, and nothing is written") {
  const std::string dir = output_dir();
  auto model = nn::sequential(nn::Linear<float>(4, 4), nn::LSTM<float>(4, 3, {.batch_first = true}));
  const std::string path = dir + "/lstm.onnx";
  CHECK_THROWS_WITH_AS(io::export_onnx(model, zeros<float>({1, 2, 4}), path),
                       doctest::Contains("layer '1' (LSTM) has no ONNX mapping"), value_error);
  struct ::stat st {};
  CHECK(::stat(path.c_str(), &st) != 0);
}
