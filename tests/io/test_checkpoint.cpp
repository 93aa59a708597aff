// safetensors files and checkpoints: the bytes follow the format (checked by a reader written here
// from the format's description, not by SafetensorsFile), round trips of every dtype, model +
// optimizer + progress round trips, and hostile files -- every truncation, a bit flip in every byte,
// hand-crafted headers -- each an io_error naming the file, never a crash, and never a half-loaded
// model.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;

namespace {

std::string temp_path(const std::string& name) { return "tessera_test_io_" + name; }

std::vector<unsigned char> bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), {});
}
void write_bytes(const std::string& path, const std::vector<unsigned char>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}
/// A file made of an 8-byte length, the given header text and `data_bytes` zero bytes.
std::vector<unsigned char> crafted(const std::string& header, std::size_t data_bytes, std::uint64_t length_override = 0) {
  std::vector<unsigned char> b(8);
  std::uint64_t n = length_override ? length_override : header.size();
  for (int i = 0; i < 8; ++i, n >>= 8) b[std::size_t(i)] = static_cast<unsigned char>(n & 0xFF);
  b.insert(b.end(), header.begin(), header.end());
  b.resize(b.size() + data_bytes, 0);
  return b;
}
std::string parse_error(const std::vector<unsigned char>& b) {
  try {
    io::SafetensorsFile::parse(b, "hostile.safetensors");
  } catch (const io_error& e) {
    return e.what();
  }
  return "";
}

auto make_model() {
  return nn::sequential(nn::Linear<float>(4, 3), nn::BatchNorm1d<float>(3), nn::ReLU{}, nn::Linear<float>(3, 2));
}
using Model = decltype(make_model());

/// Every parameter and buffer of m flattened into one vector (for bitwise comparisons).
template <class M>
std::vector<float> flat_state(M& m) {
  std::vector<float> out;
  auto add = [&](const std::string&, const auto& t) {
    const auto c = t.contiguous();
    for (index_t i = 0; i < c.size(); ++i) out.push_back(float(c.data()[i]));
  };
  nn::for_each_parameter(m, add);
  nn::for_each_buffer(m, add);
  return out;
}

/// A few Adam steps on random data so that parameters, running statistics and state are non-trivial.
void train_a_little(Model& model, optim::Adam<float>& opt, int steps) {
  for (int s = 0; s < steps; ++s) {
    const Tensor<float, 2> x = normal<float>(default_generator(), {8, 4});
    const Tensor<std::int64_t, 1> y = full<std::int64_t>({8}, std::int64_t(s % 2));
    auto [loss, grads] = value_and_grad([&](const auto& m) { return nn::cross_entropy(m(x), y); }, model);
    (void)loss;
    opt.step(model, std::get<0>(grads));
  }
}

}  // namespace

TEST_CASE("safetensors: the bytes follow the format") {
  io::SafetensorsFile f;
  f.add("b", Tensor<float, 2>({{1, 2, 3}, {4, 5, 6}}));
  f.add("a", Tensor<std::int64_t, 1>({7, -8}));
  f.metadata()["format"] = "pt";
  const auto path = temp_path("format.safetensors");
  f.write(path);
  const auto b = bytes_of(path);
  REQUIRE(b.size() > 8);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | b[std::size_t(i)];
  CHECK((8 + n) % 8 == 0);  // data 8-byte aligned
  REQUIRE(8 + n + 24 + 16 == b.size());
  const std::string header(b.begin() + 8, b.begin() + 8 + std::ptrdiff_t(n));
  const auto json = nlohmann::json::parse(header);
  CHECK(json["b"]["dtype"] == "F32");
  CHECK(json["b"]["shape"] == nlohmann::json::array({2, 3}));
  CHECK(json["a"]["dtype"] == "I64");
  CHECK(json["__metadata__"]["format"] == "pt");
  // Data little-endian at the stated offsets.
  const auto off_b = json["b"]["data_offsets"];
  const auto off_a = json["a"]["data_offsets"];
  float b5 = 0;
  std::memcpy(&b5, b.data() + 8 + n + off_b[0].get<std::size_t>() + 5 * 4, 4);
  CHECK(b5 == 6.0f);
  CHECK(off_b[1].get<std::size_t>() - off_b[0].get<std::size_t>() == 24);
  std::int64_t a1 = 0;
  std::memcpy(&a1, b.data() + 8 + n + off_a[0].get<std::size_t>() + 8, 8);
  CHECK(a1 == -8);
  std::remove(path.c_str());
}

TEST_CASE("safetensors: round trip of every dtype, empty tensors and scalars") {
  io::SafetensorsFile f;
  f.add("f32", Tensor<float, 3>(normal<float>(default_generator(), {2, 3, 4})));
  f.add("f64", Tensor<double, 1>({1.5, -2.25}));
  f.add("i32", Tensor<std::int32_t, 1>({3, -4, 5}));
  f.add("i64", Tensor<std::int64_t, 2>({{1}, {2}}));
  f.add("bool", Tensor<bool, 1>({true, false, true}));
  f.add("empty", zeros<float>({0, 5}));
  f.add("scalar", Tensor<float, 0>(full<float>(Shape<0>{}, 3.5f)));
  const Tensor<float, 2> base = normal<float>(default_generator(), {4, 6});
  f.add("view", base.transpose(0, 1));  // non-contiguous: written in logical order
  CHECK_THROWS_AS(f.add("f32", zeros<float>({1})), value_error);
  const auto path = temp_path("dtypes.safetensors");
  f.write(path);
  const auto g = io::SafetensorsFile::read(path);
  CHECK(g.entries().size() == 8);
  CHECK_TENSOR_NEAR((g.tensor<float, 3>("f32")), (f.tensor<float, 3>("f32")), 0.0);
  CHECK(g.tensor<double, 1>("f64")(1) == -2.25);
  CHECK(g.tensor<std::int32_t, 1>("i32")(1) == -4);
  CHECK(g.tensor<std::int64_t, 2>("i64")(1, 0) == 2);
  CHECK(g.tensor<bool, 1>("bool")(2) == true);
  CHECK(g.tensor<float, 2>("empty").shape() == Shape<2>{0, 5});
  CHECK(g.tensor<float, 0>("scalar")() == 3.5f);
  const Tensor<float, 2> transposed = base.transpose(0, 1);
  CHECK_TENSOR_NEAR((g.tensor<float, 2>("view")), transposed, 0.0);
  // Wrong dtype, rank or shape: io_error naming the tensor.
  auto as_double = [&] { return g.tensor<double, 3>("f32"); };
  auto as_rank2 = [&] { return g.tensor<float, 2>("f32"); };
  auto missing = [&] { return g.tensor<float, 1>("nope"); };
  CHECK_THROWS_WITH_AS(as_double(), doctest::Contains("has dtype F32, expected F64"), io_error);
  CHECK_THROWS_WITH_AS(as_rank2(), doctest::Contains("expected rank 2"), io_error);
  Tensor<float, 3> wrong = zeros<float>({2, 3, 5});
  CHECK_THROWS_WITH_AS(g.copy_to("f32", wrong), doctest::Contains("has shape [2, 3, 4], expected [2, 3, 5]"), io_error);
  CHECK_THROWS_WITH_AS(missing(), doctest::Contains("no tensor \"nope\""), io_error);
  // Copy into a strided view writes the viewed elements.
  Tensor<float, 2> target = zeros<float>({4, 6});
  Tensor<float, 2> view = target.transpose(0, 1);
  g.copy_to("view", view);
  CHECK_TENSOR_NEAR(target, base, 0.0);
  std::remove(path.c_str());
}

TEST_CASE("safetensors: hand-crafted hostile headers are io_errors that say what is wrong") {
  const std::string ok_entry = R"("t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})";
  CHECK(parse_error(crafted("{" + ok_entry + "}", 8)).empty());
  CHECK(parse_error({1, 2, 3}).find("shorter than the 8-byte header length") != std::string::npos);
  CHECK(parse_error(crafted("{}", 0, 1ull << 40)).find("exceeds the limit") != std::string::npos);
  CHECK(parse_error(crafted("{}", 0, 50)).find("truncated") != std::string::npos);
  CHECK(parse_error(crafted("[]", 0)).find("does not start with '{'") != std::string::npos);
  CHECK(parse_error(crafted("{\"t\": ", 0)).find("not valid JSON") != std::string::npos);
  CHECK(parse_error(crafted(R"({"t": 5})", 0)).find("entry is not an object") != std::string::npos);
  CHECK(parse_error(crafted(R"({"t": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}})", 8))
            .find("unknown dtype \"F33\"") != std::string::npos);
  CHECK(parse_error(crafted(R"({"t": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8))
            .find("not a non-negative integer") != std::string::npos);
  CHECK(parse_error(crafted(R"({"t": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", 8))
            .find("not a non-negative integer") != std::string::npos);
  CHECK(parse_error(crafted(R"({"t": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})", 8))
            .find("too large") != std::string::npos);
  // Beside a zero extent too: the element count is 0, but products of the others would overflow.
  CHECK(parse_error(crafted(R"({"t": {"dtype": "F32", "shape": [0, 4294967296, 4294967296], "data_offsets": [0, 0]}})", 0))
            .find("too large") != std::string::npos);
  CHECK(parse_error(crafted(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 800]}})", 8))
            .find("do not lie within the 8 bytes of data") != std::string::npos);
  CHECK(parse_error(crafted(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", 8))
            .find("do not lie within") != std::string::npos);
  CHECK(parse_error(crafted(R"({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8))
            .find("need 12") != std::string::npos);
  CHECK(parse_error(crafted(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8))
            .find("not a pair") != std::string::npos);
  CHECK(parse_error(crafted(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}})", 8))
            .find("unknown field \"x\"") != std::string::npos);
  CHECK(parse_error(crafted(R"({"t": {"shape": [2], "data_offsets": [0, 8]}})", 8)).find("\"dtype\"") != std::string::npos);
  // Overlap, gap, trailing bytes.
  CHECK(parse_error(crafted(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                               "u": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8))
            .find("overlap or gap") != std::string::npos);
  CHECK(parse_error(crafted(R"({"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8))
            .find("overlap or gap") != std::string::npos);
  CHECK(parse_error(crafted("{" + ok_entry + "}", 12)).find("trailing bytes") != std::string::npos);
  CHECK(parse_error(crafted(R"({"__metadata__": {"a": 1}})", 0)).find("is not a string") != std::string::npos);
  CHECK(parse_error(crafted(R"({"__metadata__": [1]})", 0)).find("__metadata__ is not an object") != std::string::npos);
  // Pathologically deep JSON: an error, not a stack overflow.
  const std::string deep = "{\"t\": " + std::string(200000, '[') + std::string(200000, ']') + "}";
  CHECK(parse_error(crafted(deep, 0)).find("entry is not an object") != std::string::npos);
  // Every message names the file.
  CHECK(parse_error(crafted("[]", 0)).rfind("hostile.safetensors: ", 0) == 0);
  CHECK_THROWS_WITH_AS(io::SafetensorsFile::read(temp_path("missing.safetensors")), doctest::Contains("cannot open"), io_error);
}

TEST_CASE("safetensors: every truncation and a bit flip in every byte of a checkpoint fail cleanly or load") {
  manual_seed(3);
  Model model = make_model();
  optim::Adam<float> opt;
  train_a_little(model, opt, 2);
  const auto path = temp_path("flip.safetensors");
  io::save_checkpoint(path, model, opt, {1, 2});
  const auto good = bytes_of(path);
  const auto before = flat_state(model);
  for (std::size_t n = 0; n < good.size(); ++n) {
    const std::vector<unsigned char> cut(good.begin(), good.begin() + std::ptrdiff_t(n));
    CHECK_MESSAGE(!parse_error(cut).empty(), "truncated to " << n << " bytes");
  }
  // One flipped bit per byte (cycling through the bit positions) keeps this fast at -O0 while
  // touching every byte of the length, the header and the data.
  int loaded = 0, rejected = 0;
  for (std::size_t byte = 0; byte < good.size(); ++byte) {
    {
      const int bit = int(byte % 8);
      auto bad = good;
      bad[byte] ^= static_cast<unsigned char>(1u << bit);
      write_bytes(path, bad);
      Model other = make_model();
      optim::Adam<float> other_opt;
      try {
        io::load_checkpoint(path, other, other_opt);
        ++loaded;  // a flip inside tensor data or a harmless header byte
      } catch (const io_error& e) {
        ++rejected;
        CHECK(std::string(e.what()).rfind(path + ": ", 0) == 0);
      }
    }
  }
  CHECK(loaded > 0);
  CHECK(rejected > 0);
  CHECK(flat_state(model) == before);
  std::remove(path.c_str());
}

TEST_CASE("checkpoint: model, buffers, optimizer state and progress round trip exactly") {
  manual_seed(5);
  Model model = make_model();
  optim::Adam<float> opt({.lr = 0.01});
  train_a_little(model, opt, 3);
  const auto path = temp_path("roundtrip.safetensors");
  io::save_checkpoint(path, model, opt, {.epoch = 4, .step = 3});
  const std::uint64_t rng_offset = default_generator().offset();

  // Names as PyTorch's state_dict would have them, optimizer state under "optimizer.".
  const auto file = io::SafetensorsFile::read(path);
  for (const char* name : {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                           "1.num_batches_tracked", "3.weight", "optimizer.0.weight.exp_avg", "optimizer.3.bias.exp_avg_sq"}) {
    CHECK_MESSAGE(file.find(name) != nullptr, name);
  }
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.metadata().at("tessera.optimizer.steps") == "3");

  manual_seed(99);
  Model restored = make_model();
  optim::Adam<float> restored_opt({.lr = 0.5});
  const io::TrainingProgress p = io::load_checkpoint(path, restored, restored_opt);
  CHECK(p.epoch == 4);
  CHECK(p.step == 3);
  CHECK(default_generator().offset() == rng_offset);
  CHECK(flat_state(restored) == flat_state(model));
  CHECK(restored_opt.step_count() == 3);
  CHECK(restored_opt.lr() == doctest::Approx(0.01));
  // The next steps agree bitwise, so optimizer state came back too.
  manual_seed(7);
  train_a_little(model, opt, 2);
  manual_seed(7);
  train_a_little(restored, restored_opt, 2);
  CHECK(flat_state(restored) == flat_state(model));

  // Weights only, readable into a fresh model.
  const auto weights = temp_path("weights.safetensors");
  io::save_weights(weights, model);
  Model fresh = make_model();
  io::load_weights(weights, fresh);
  CHECK(flat_state(fresh) == flat_state(model));
  std::remove(path.c_str());
  std::remove(weights.c_str());
}

TEST_CASE("checkpoint: a file that does not fit the model is rejected before anything changes") {
  manual_seed(11);
  Model model = make_model();
  const auto before = flat_state(model);
  const auto path = temp_path("mismatch.safetensors");

  auto other = nn::sequential(nn::Linear<float>(4, 3), nn::BatchNorm1d<float>(3), nn::ReLU{}, nn::Linear<float>(3, 5));
  io::save_weights(path, other);  // "3.weight" is [5, 3]: the earlier tensors fit, this one does not
  CHECK_THROWS_WITH_AS(io::load_weights(path, model), doctest::Contains("\"3.weight\" has shape [5, 3], expected [2, 3]"), io_error);
  CHECK(flat_state(model) == before);

  auto smaller = nn::sequential(nn::Linear<float>(4, 3), nn::BatchNorm1d<float>(3));
  io::save_weights(path, smaller);
  CHECK_THROWS_WITH_AS(io::load_weights(path, model), doctest::Contains("missing from the file: 3.weight, 3.bias"), io_error);
  CHECK(flat_state(model) == before);
  io::load_weights(path, smaller);  // fine for the model it came from

  io::SafetensorsFile extra;
  io::add_module(extra, model);
  extra.add("head.weight", zeros<float>({1}));
  extra.write(path);
  CHECK_THROWS_WITH_AS(io::load_weights(path, model), doctest::Contains("unexpected model tensors in the file: head.weight"), io_error);
  io::load_weights(path, model, /*strict=*/false);

  io::SafetensorsFile wrong_type;
  auto as_double = [&](const std::string& name, const auto&) { wrong_type.add(name, Tensor<double, 2>(zeros<double>({1, 1}))); };
  nn::for_each_parameter(model, as_double);
  nn::for_each_buffer(model, as_double);
  wrong_type.write(path);
  CHECK_THROWS_WITH_AS(io::load_weights(path, model, false), doctest::Contains("has dtype F64, expected F32"), io_error);

  // A weights-only file is not a checkpoint.
  io::save_weights(path, model);
  optim::Adam<float> opt;
  CHECK_THROWS_WITH_AS(io::load_checkpoint(path, model, opt), doctest::Contains("metadata \"tessera.epoch\" is missing"), io_error);
  CHECK(flat_state(model) == before);
  std::remove(path.c_str());
}

TEST_CASE("atomic writes: the previous file survives a failed save, and errors name the path") {
  const auto path = temp_path("atomic.safetensors");
  io::SafetensorsFile f;
  f.add("x", Tensor<float, 1>({1, 2, 3}));
  f.write(path);
  const auto good = bytes_of(path);
  // A save into a directory that does not exist fails with the path in the message.
  CHECK_THROWS_WITH_AS(f.write("no_such_dir_tessera/ck.safetensors"), doctest::Contains("no_such_dir_tessera/ck.safetensors"), io_error);
  // A name that is not valid UTF-8 cannot be written; the old file is untouched and no temporary is left.
  io::SafetensorsFile bad;
  bad.add("\xff\xfe", Tensor<float, 1>({1}));
  CHECK_THROWS_AS(bad.write(path), value_error);
  CHECK(bytes_of(path) == good);
  io::create_directories(temp_path("dir/a/b"));
  f.write(temp_path("dir/a/b/ck.safetensors"));
  CHECK(io::SafetensorsFile::read(temp_path("dir/a/b/ck.safetensors")).entries().size() == 1);
  std::remove(temp_path("dir/a/b/ck.safetensors").c_str());
  std::remove(temp_path("dir/a/b").c_str());
  std::remove(temp_path("dir/a").c_str());
  std::remove(temp_path("dir").c_str());
  std::remove(path.c_str());
}
