// Small models, their registry and export helpers shared by the server's tests.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <string>
#include <tuple>

#include <tessera/tessera.hpp>
#include <tessera/serve/export.hpp>
#include <tessera/serve/registry.hpp>

#include "../temp_dir.hpp"

namespace serve_test {

using namespace tessera;
namespace serve = tessera::serve;

/// [N, 4] -> logits [N, 3].
inline auto tiny_mlp(index_t hidden) { return nn::sequential(nn::Linear<float>(4, hidden), nn::ReLU{}, nn::Linear<float>(hidden, 3)); }
using TinyMlp = decltype(tiny_mlp(1));

/// Two inputs and two outputs: (a [N, 4], b [N, 2]) -> (sum [N, 3], relu [N, 3]).
struct TwoTower : nn::Module<TwoTower> {
  static constexpr const char* type_name = "TwoTower";
  nn::Linear<float> left{4, 3}, right{2, 3};
  auto members() { return std::make_tuple(nn::child("left", left), nn::child("right", right)); }
};

inline serve::Signature mlp_signature() {
  serve::Signature s;
  s.inputs = {{"x", serve::DataType::float32, {-1, 4}}};
  s.outputs = {{"logits", serve::DataType::float32, {-1, 3}}};
  return s;
}
inline serve::Signature two_tower_signature() {
  serve::Signature s;
  s.inputs = {{"a", serve::DataType::float32, {-1, 4}}, {"b", serve::DataType::float32, {-1, 2}}};
  s.outputs = {{"sum", serve::DataType::float32, {-1, 3}}, {"relu", serve::DataType::float32, {-1, 3}}};
  return s;
}
/// Token ids [N, T] -> embeddings [N, T, 4].
inline serve::Signature embedding_signature() {
  serve::Signature s;
  s.inputs = {{"tokens", serve::DataType::int64, {-1, -1}}};
  s.outputs = {{"vectors", serve::DataType::float32, {-1, -1, 4}}};
  return s;
}

inline serve::ModelRegistry registry() {
  serve::ModelRegistry r;
  r.add<Tensor<float, 2>>("tiny_mlp", [](const nlohmann::json& hp) { return tiny_mlp(hp.at("hidden").get<index_t>()); });
  r.add<Tensor<float, 2>, Tensor<float, 2>>(
      "two_tower", [](const nlohmann::json&) { return TwoTower{}; },
      [](const TwoTower& m, const Tensor<float, 2>& a, const Tensor<float, 2>& b) {
        return std::make_tuple(m.left(a) + m.right(b), relu(m.left(a)));
      });
  r.add<Tensor<std::int64_t, 2>>("embedding", [](const nlohmann::json&) { return nn::Embedding<float>(10, 4); });
  return r;
}

/// A fresh temporary directory, removed when the test program exits.
inline std::string temp_dir() { return tessera_test::make_temp_dir("tessera_serve_test_"); }

/// Exports a tiny_mlp (weights from `seed`) as `version` under base; returns the model.
inline TinyMlp export_mlp(const std::string& base, std::int64_t version, std::uint64_t seed, index_t hidden = 8) {
  manual_seed(seed);
  auto m = tiny_mlp(hidden);
  serve::export_model(m, base, version, mlp_signature(), {"tiny_mlp", {{"hidden", hidden}}});
  return m;
}

}  // namespace serve_test
