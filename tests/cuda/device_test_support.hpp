// Shared by the programs that run on a GPU (test_cuda_device, test_cuda_ops): the copies between
// the backends, the comparison of a device result with the CPU's, and a main() that skips (exit
// 77) where there is no device but lists its cases anywhere (scripts/gpu-check runs each case in
// its own process).
#pragma once

#include <doctest/doctest.h>

#include <tessera/cuda.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>

namespace device_test {

using tessera::cpu;
using tessera::index_t;
using tessera::Tensor;
// Unqualified `cuda` would be ambiguous: CUB (used by the kernels) declares a global namespace cuda.
using Dev = tessera::cuda;

template <class T, std::size_t R>
Tensor<T, R, cpu> host(const Tensor<T, R, Dev>& t) {
  return t.template to<cpu>();
}
template <class T, std::size_t R>
Tensor<T, R, Dev> to_dev(const Tensor<T, R, cpu>& t) {
  return t.template to<Dev>();
}

/// Every element of the device result equals the CPU's within a relative tolerance (0: exactly).
template <class T, std::size_t R>
void check_close(const Tensor<T, R, Dev>& got_device, const Tensor<T, R, cpu>& want, double tol = 1e-5) {
  const auto got = host(got_device);
  REQUIRE(got.shape() == want.shape());
  const auto w = want.contiguous();
  for (index_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got.data()[i]), x = static_cast<double>(w.data()[i]);
    if (std::isnan(x)) {
      CHECK(std::isnan(g));
    } else if (std::isinf(x)) {
      CHECK(g == x);
    } else if (tol == 0) {
      CHECK(g == x);
    } else {
      CHECK(g == doctest::Approx(x).epsilon(tol).scale(1.0));
    }
  }
}

/// doctest's main, or exit 77 (CTest: skipped) without a device unless the cases are only listed.
inline int run(int argc, char** argv, const char* program) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing = listing || std::strncmp(argv[i], "--list", 6) == 0 || std::strncmp(argv[i], "-l", 2) == 0;
  if (!listing && !Dev::available()) {
    std::printf("%s: no CUDA device here; skipped (exit 77)\n", program);
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}

}  // namespace device_test
