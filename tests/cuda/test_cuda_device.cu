// The CUDA backend on a GPU: memory, zero fills and copies between host and device. Compiled by
// nvcc wherever the toolkit is; where no device is present it prints why and exits 77 (CTest:
// skipped).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <tessera/cuda.hpp>

#include <cstdio>

using namespace tessera;
// Unqualified `cuda` would be ambiguous: CUB (used by the kernels) declares a global namespace cuda.
using Dev = tessera::cuda;

TEST_CASE("host -> device -> host round trips keep every element") {
  const Tensor<float, 2> a = {{1.0f, -2.0f, 3.5f}, {4.0f, 5.0f, -6.25f}};
  const auto d = a.to<Dev>();
  CHECK(d.shape() == a.shape());
  const auto back = d.to<cpu>();
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 3; ++j) CHECK(back(i, j) == a(i, j));
  // A non-contiguous host view is packed before the copy.
  const auto column = a.transpose(0, 1).to<Dev>().to<cpu>();
  CHECK(column(2, 1) == a(1, 2));
}

TEST_CASE("device tensors: zero-filled construction, braces, rank 0") {
  const Tensor<double, 1, Dev> zeros(1000);
  const auto host = zeros.to<cpu>();
  for (index_t i = 0; i < 1000; ++i) CHECK(host(i) == 0.0);
  const Tensor<int, 2, Dev> braces = {{1, 2}, {3, 4}};
  CHECK(braces.to<cpu>()(1, 0) == 3);
  const Tensor<float, 0, Dev> scalar(2.5f);
  CHECK(scalar.to<cpu>()() == 2.5f);
}

TEST_CASE("freed device blocks are reused") {
  Dev::release_cached_memory();
  const void* first = nullptr;
  {
    const Tensor<float, 1, Dev> t(4096);
    first = t.data();
    CHECK(Dev::memory_stats().in_use >= 4096 * sizeof(float));
  }
  CHECK(Dev::memory_stats().cached >= 4096 * sizeof(float));
  const Tensor<float, 1, Dev> again(4096);
  CHECK(again.data() == first);
}

int main(int argc, char** argv) {
  if (!Dev::available()) {
    std::printf("test_cuda_device: no CUDA device here; skipped (exit 77)\n");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
