// What a reduction node costs against the same function written as a composition of existing ops,
// whose gradient then comes from their rules: var, logsumexp and softmax over the last axis of a
// [4096, 1000] float tensor, value alone and value with gradient (grad of sum(f(x) * w)).
//
//   compositions [threads, default 2]
//
// logsumexp and softmax subtract the row maximum m for stability; its gradient contributions cancel,
// so the composition needs m as a constant. tessera has no stop_gradient op, so here m is a tensor
// computed from x's value by a max reduction inside every timed call (the node does the same pass).
// Times are the first quartile of 40 calls (this VM's 2-thread medians are bimodal; see
// docs/cpu-performance.md). docs/architecture.md records the figures and the decision.
#include <tessera/tessera.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

using namespace tessera;

namespace {

template <class F>
double quartile_ms(F&& f, int reps = 40) {
  f();  // warm-up
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 4];
}

}  // namespace

int main(int argc, char** argv) {
  cpu::set_num_threads(argc > 1 ? std::atoi(argv[1]) : 2);
  Generator gen(1);
  const index_t rows = 4096, cols = 1000;
  const auto x = uniform<float>(gen, Shape<2>{rows, cols}, -3.0f, 3.0f);
  const auto w = uniform<float>(gen, Shape<1>{rows}, -1.0f, 1.0f);
  const auto w2 = uniform<float>(gen, Shape<2>{rows, cols}, -1.0f, 1.0f);
  Tensor<float, 2> m = max(x, {1}, keepdims);  // the constant shift, recomputed in each timed call
  auto shift = [&] { m.assign(max(x, {1}, keepdims)); };
  volatile float sink = 0;

  const auto var_node = [&](const auto& a) { return sum(var(a, {1}) * w); };
  const auto var_comp = [&](const auto& a) { return sum(mean(square(a - mean(a, {1}, keepdims)), {1}) * w); };
  const auto lse_node = [&](const auto& a) { return sum(logsumexp(a, {1}) * w); };
  const auto lse_comp = [&](const auto& a) { return sum((log(sum(exp(a - m), {1})) + reshape(m, {rows})) * w); };
  const auto sm_node = [&](const auto& a) { return sum(softmax(a, 1) * w2); };
  const auto sm_comp = [&](const auto& a) {
    const auto e = exp(a - m);
    return sum(e / sum(e, {1}, keepdims) * w2);
  };

  std::printf("%-10s %14s %14s %8s %14s %14s %8s %14s\n", "function", "node ms", "composed ms", "ratio", "node grad ms",
              "composed grad", "ratio", "max |dg|");
  auto report = [&](const char* name, const auto& node, const auto& comp, bool needs_shift) {
    auto prep = [&] {
      if (needs_shift) shift();
    };
    auto [gn] = grad(node, x);
    prep();
    auto [gc] = grad(comp, x);
    const double diff = eval(max(abs(gn - gc)))();
    const double fn = quartile_ms([&] { sink = sink + eval(node(x))(); });
    const double fc = quartile_ms([&] {
      prep();
      sink = sink + eval(comp(x))();
    });
    const double bn = quartile_ms([&] {
      auto [g] = grad(node, x);
      sink = sink + g(0, 0);
    });
    const double bc = quartile_ms([&] {
      prep();
      auto [g] = grad(comp, x);
      sink = sink + g(0, 0);
    });
    std::printf("%-10s %14.3f %14.3f %8.2f %14.3f %14.3f %8.2f %14.2g\n", name, fn, fc, fc / fn, bn, bc, bc / bn, diff);
  };
  report("var", var_node, var_comp, false);
  report("logsumexp", lse_node, lse_comp, true);
  report("softmax", sm_node, sm_comp, true);
}
