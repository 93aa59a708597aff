// The FastAD / ADBench-style suite: for each function, time(value and gradient) / time(value).
// FastAD reports 1.25x-3.2x on these; tessera's target is at most 3x on every one.
//
//   autodiff_ratios [--threads N] [--reps R]
// Prints one line per workload: `<name> <gradient us> <function us> <ratio> <dense floor>`.
//
// The dense floor is the least ratio any implementation can reach on this machine while writing
// the gradient to memory: (function time + time to store as many doubles as the gradients hold) /
// function time, the store timed here in the same run as a plain std::fill loop. Where storing
// costs more than the function's read of its input (16384 doubles overflow L1, and a store to L2
// also reads the line first), that floor is above FastAD's ratios whatever autodiff does.
#include <tessera/tessera.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

using namespace tessera;

namespace {

/// Median wall time of `reps` calls of fn, in microseconds (after a warm-up).
template <class Fn>
double median_us(Fn&& fn, int reps) {
  for (int i = 0; i < 3; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::nth_element(t.begin(), t.begin() + static_cast<long>(t.size() / 2), t.end());
  return t[t.size() / 2];
}

volatile double sink = 0;

/// Median time of storing n doubles into an existing 64-byte-aligned buffer (as tessera's are), with
/// a plain loop rather than tessera's kernels.
double store_us(std::size_t n, int reps) {
  std::vector<double> buffer(n + 8);
  double* first = buffer.data();
  while (reinterpret_cast<std::uintptr_t>(first) % 64 != 0) ++first;
  return median_us(
      [&] {
        std::fill(first, first + n, sink);
        asm volatile("" : : "r"(first) : "memory");  // the stores must happen
      },
      reps);
}

template <class F, class... A>
void report(const char* name, int reps, F f, const A&... args) {
  const double fn_us = median_us([&] { sink = sink + Tensor<double, 0>(f(args...))(); }, reps);
  const double grad_us = median_us(
      [&] {
        auto [v, g] = value_and_grad(f, args...);
        sink = sink + v();
        (void)g;
      },
      reps);
  const std::size_t gradient_elements =
      std::apply([](const auto&... t) { return (std::size_t(t.size()) + ...); }, grad(f, args...));
  const double floor = (fn_us + store_us(gradient_elements, reps)) / fn_us;
  std::printf("%-22s %10.1f %10.1f %6.2f %11.2f\n", name, grad_us, fn_us, grad_us / fn_us, floor);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, reps = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads") threads = std::atoi(argv[i + 1]);
    if (a == "--reps") reps = std::atoi(argv[i + 1]);
  }
  cpu::set_num_threads(threads);
  Generator gen(42);
  const index_t n = 16384;
  const auto x = uniform<double>(gen, {n}, 0.5, 1.5);
  // The product of 16384 values from [0.5, 1.5] underflows to about 1e-321, a subnormal, and its
  // gradient (product / x) is then subnormal arithmetic, which this CPU runs about 5x slower than
  // normal arithmetic: that line measures the CPU, not autodiff. Values near 1 keep the product
  // (about 0.8) and its gradient normal; the subnormal case is still printed, for the record.
  const auto x_near_one = uniform<double>(gen, {n}, 0.99, 1.01);
  const auto mu = Tensor<double, 0>(0.3);
  const auto sigma = Tensor<double, 0>(1.7);
  const auto X = normal<double>(gen, {n, 10});
  const auto w = normal<double>(gen, {10});
  const auto y = normal<double>(gen, {n});
  const auto A = normal<double>(gen, {181, 181});
  const auto B = normal<double>(gen, {181, 181});
  const double half_log_2pi = 0.5 * std::log(2 * M_PI);

  std::printf("# %s: gradient time / function time (FastAD's published ratios: 1.25x-3.2x)\n", "autodiff_ratios");
  std::printf("%-22s %10s %10s %6s %11s\n", "workload", "grad_us", "func_us", "ratio", "dense_floor");
  report("sum", reps, [](const auto& v) { return sum(v); }, x);
  report("product", reps, [](const auto& v) { return prod(v); }, x_near_one);
  report("product_subnormal", reps, [](const auto& v) { return prod(v); }, x);
  report("log_sum_exp", reps, [](const auto& v) { return logsumexp(v); }, x);
  report("normal_log_pdf", reps,
         [&](const auto& v, const auto& m, const auto& s) {
           return sum(square((v - m) / s) * -0.5 - log(s) - half_log_2pi);
         },
         x, mu, sigma);
  report("regression_log_lik", reps,
         [&](const auto& weights, const auto& s) {
           return sum(square((y - matmul(X, weights)) / s) * -0.5 - log(s) - half_log_2pi);
         },
         w, sigma);
  report("matrix_product_181", reps, [](const auto& a, const auto& b) { return sum(matmul(a, b)); }, A, B);
  return 0;
}
