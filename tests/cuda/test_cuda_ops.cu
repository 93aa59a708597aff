// Every op of tests/op_table.hpp on the GPU: forward and gradients against the CPU's, in float.
// A program of its own (nvcc compiles the table's kernels for both backends), so that it builds in
// parallel with test_cuda_device. Where no device is present it lists its cases and exits 77.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <tessera/cuda.hpp>

#include <algorithm>
#include <string>
#include <tuple>

#include "cuda/device_test_support.hpp"
#include "op_table.hpp"

namespace ts = tessera;
using device_test::check_close;
using device_test::Dev;
using device_test::to_dev;

TEST_CASE("every op of tests/op_table.hpp: the GPU's forward and gradients match the CPU's") {
  op_harness::for_each_op([&](const char* name, const auto& op, const auto&, const auto& o, const auto&... inputs) {
    const std::string op_name = name;
    CAPTURE(op_name);
    const double tol = 1e-4 * std::min(o.tolerance, 10.0);
    const auto host_in = std::make_tuple(op_harness::as_float(inputs)...);
    const auto device_in = std::make_tuple(op_harness::as_float(inputs).template to<Dev>()...);
    const auto on_host = std::apply([&](const auto&... x) { return ts::eval(op(x...)); }, host_in);
    const auto on_device = std::apply([&](const auto&... x) { return ts::eval(op(x...)); }, device_in);
    check_close(on_device, on_host, tol);
    if constexpr (std::decay_t<decltype(o)>::differentiable) {
      const auto w = op_harness::as_float(op_harness::input(on_host.shape(), -1.0, 1.0, 99));
      const auto dw = to_dev(w);
      const auto host_grads = std::apply(
          [&](const auto&... x) { return op_harness::gradients([&](const auto&... v) { return ts::sum(op(v...) * w); }, x...); },
          host_in);
      const auto device_grads = std::apply(
          [&](const auto&... x) { return op_harness::gradients([&](const auto&... v) { return ts::sum(op(v...) * dw); }, x...); },
          device_in);
      std::apply([&](const auto&... d) { std::apply([&](const auto&... h) { (check_close(d, h, tol), ...); }, host_grads); },
                 device_grads);
    }
  });
}

int main(int argc, char** argv) { return device_test::run(argc, argv, "test_cuda_ops"); }
