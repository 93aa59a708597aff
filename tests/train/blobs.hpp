// A small 3-class problem for training tests (tests/train/, tests/dist/): three Gaussian blobs in
// the plane.
#pragma once

#include <tessera/tessera.hpp>

#include <cstdint>

namespace train_test {

using BlobSet = tessera::data::TensorDataset<tessera::Tensor<float, 2>, tessera::Tensor<std::int64_t, 1>>;

/// `n` samples around (-2, 0), (2, 0) and (0, 2.5) with deviation 0.6, labels 0..2 in turn; the
/// same for the same seed.
inline BlobSet blobs(tessera::index_t n, std::uint64_t seed) {
  using namespace tessera;
  Generator gen(seed);
  const Tensor<float, 2> noise = normal<float>(gen, {n, 2}, 0.0f, 0.6f);
  Tensor<float, 2> x = zeros<float>({n, 2});
  Tensor<std::int64_t, 1> y = zeros<std::int64_t>({n});
  const float centers[3][2] = {{-2, 0}, {2, 0}, {0, 2.5f}};
  for (index_t i = 0; i < n; ++i) {
    y(i) = i % 3;
    x(i, 0) = centers[i % 3][0] + noise(i, 0);
    x(i, 1) = centers[i % 3][1] + noise(i, 1);
  }
  return data::TensorDataset(x, y);
}

}  // namespace train_test
