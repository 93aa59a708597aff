// GPU benchmarks of the CUDA backend, timed with CUDA events (targets: bench/gpu_targets.py):
//   fused_elementwise   a*b + c*d - tanh(e) over 2^26 floats: one kernel; bytes moved = 6 arrays
//   device_copy         cudaMemcpy device-to-device of 2^26 floats: the bandwidth reference
//   gemm_tessera/_cublas  4096^3 SGEMM through tessera::matmul and through cublasSgemm directly
//   cnn_train_step      the benchmarks' CNN (conv 32, conv 64, dense 128; BN, ReLU, max pooling,
//                       dropout), batch 256 of 1x28x28, forward + backward + Adam step
//   attention_fwd_bwd   nn::MultiheadAttention(256, 8) on [16, 128, 256] (batch first), causal mask,
//                       loss sum(out * w) / 16, value_and_grad over the module and the input
//   lstm_train_step     nn::LSTM(64, 256) over [32, 32, 64] (time major), MSE of the last output
//                       against a [32, 256] target, value_and_grad and an SGD step
//   gru_train_step      the same with nn::GRU
// attention_fwd_bwd, lstm_train_step and gru_train_step are bench/workloads.cpp's CPU workloads of
// the same names.
// scripts/gpu-check runs it next to bench/torch_cuda_reference.py (PyTorch eager, same shapes).
#include <benchmark/benchmark.h>

#include <tessera/cuda.hpp>

#include <cstdio>
#include <cstring>

namespace {

namespace ts = tessera;
using Dev = tessera::cuda;

/// Times `f` per iteration with CUDA events on tessera's stream.
template <class F>
void time_on_device(benchmark::State& state, F&& f) {
  cudaEvent_t start, stop;
  TESSERA_CUDA_CHECK(cudaEventCreate(&start));
  TESSERA_CUDA_CHECK(cudaEventCreate(&stop));
  f();  // warm-up: kernels loaded, algorithms chosen, pool filled
  Dev::synchronize();
  for (auto _ : state) {
    TESSERA_CUDA_CHECK(cudaEventRecord(start, Dev::stream()));
    f();
    TESSERA_CUDA_CHECK(cudaEventRecord(stop, Dev::stream()));
    TESSERA_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    TESSERA_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(ms / 1000.0);
  }
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
}

constexpr ts::index_t kElements = ts::index_t{1} << 26;

void fused_elementwise(benchmark::State& state) {
  ts::Generator gen(1);
  const auto a = ts::uniform<float, Dev>(gen, ts::Shape<1>{kElements});
  const auto b = ts::uniform<float, Dev>(gen, ts::Shape<1>{kElements});
  const auto c = ts::uniform<float, Dev>(gen, ts::Shape<1>{kElements});
  const auto d = ts::uniform<float, Dev>(gen, ts::Shape<1>{kElements});
  const auto e = ts::uniform<float, Dev>(gen, ts::Shape<1>{kElements});
  auto out = ts::Tensor<float, 1, Dev>::uninitialized(ts::Shape<1>{kElements});
  time_on_device(state, [&] { out.assign(a * b + c * d - ts::tanh(e)); });
  state.SetBytesProcessed(state.iterations() * 6 * kElements * static_cast<std::int64_t>(sizeof(float)));
}

void device_copy(benchmark::State& state) {
  const ts::Tensor<float, 1, Dev> src(kElements);
  auto dst = ts::Tensor<float, 1, Dev>::uninitialized(ts::Shape<1>{kElements});
  time_on_device(state, [&] { Dev::copy_device(dst.data(), src.data(), kElements * sizeof(float)); });
  state.SetBytesProcessed(state.iterations() * 2 * kElements * static_cast<std::int64_t>(sizeof(float)));
}

constexpr ts::index_t kGemm = 4096;

void gemm_tessera(benchmark::State& state) {
  ts::Generator gen(2);
  const auto a = ts::uniform<float, Dev>(gen, ts::Shape<2>{kGemm, kGemm});
  const auto b = ts::uniform<float, Dev>(gen, ts::Shape<2>{kGemm, kGemm});
  auto c = ts::Tensor<float, 2, Dev>::uninitialized(ts::Shape<2>{kGemm, kGemm});
  time_on_device(state, [&] { c.assign(ts::matmul(a, b)); });
  state.counters["TFLOPS"] = benchmark::Counter(2.0 * kGemm * kGemm * kGemm * 1e-12 * double(state.iterations()),
                                                benchmark::Counter::kIsRate);
}

void gemm_cublas(benchmark::State& state) {
  ts::Generator gen(2);
  const auto a = ts::uniform<float, Dev>(gen, ts::Shape<2>{kGemm, kGemm});
  const auto b = ts::uniform<float, Dev>(gen, ts::Shape<2>{kGemm, kGemm});
  auto c = ts::Tensor<float, 2, Dev>::uninitialized(ts::Shape<2>{kGemm, kGemm});
  const float one = 1, zero = 0;
  const int n = static_cast<int>(kGemm);
  time_on_device(state, [&] {
    TESSERA_CUDA_CHECK(cublasSgemm(ts::detail::gpu::cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, b.data(), n,
                                   a.data(), n, &zero, c.data(), n));
  });
  state.counters["TFLOPS"] = benchmark::Counter(2.0 * kGemm * kGemm * kGemm * 1e-12 * double(state.iterations()),
                                                benchmark::Counter::kIsRate);
}

void cnn_train_step(benchmark::State& state) {
  namespace nn = tessera::nn;
  const ts::index_t batch = 256;
  ts::manual_seed(3);
  auto model = nn::sequential(nn::Conv2d<float, Dev>(1, 32, 3, {.padding = 1}), nn::BatchNorm2d<float, Dev>(32), nn::ReLU{},
                              nn::MaxPool2d(2), nn::Conv2d<float, Dev>(32, 64, 3, {.padding = 1}),
                              nn::BatchNorm2d<float, Dev>(64), nn::ReLU{}, nn::MaxPool2d(2), nn::Flatten{},
                              nn::Linear<float, Dev>(64 * 7 * 7, 128), nn::ReLU{}, nn::Dropout<float, Dev>(0.3),
                              nn::Linear<float, Dev>(128, 10));
  ts::optim::Adam<float, Dev> opt({.lr = 1e-3});
  ts::Generator gen(4);
  const auto x = ts::uniform<float, Dev>(gen, ts::Shape<4>{batch, 1, 28, 28});
  ts::Tensor<std::int64_t, 1> host_labels(batch);
  for (ts::index_t i = 0; i < batch; ++i) host_labels(i) = i % 10;
  const auto labels = host_labels.to<Dev>();
  model.train();
  time_on_device(state, [&] {
    auto [value, grads] = ts::value_and_grad([&](const auto& m) { return nn::cross_entropy(m(x), labels); }, model);
    opt.step(model, std::get<0>(grads));
  });
}

/// AttentionFwdBwd of bench/tessera_workloads.cpp on the device: causal self-attention, forward and
/// backward (gradients of the input and of every parameter), no update.
void attention_fwd_bwd(benchmark::State& state) {
  namespace nn = tessera::nn;
  const ts::index_t batch = 16, seq = 128, embed = 256, heads = 8;
  ts::manual_seed(7);
  nn::MultiheadAttention<float, Dev> mha(embed, heads);
  nn::AttentionMasks<float, Dev> masks;
  masks.causal = true;
  ts::Generator gen(8);
  const auto x = ts::uniform<float, Dev>(gen, ts::Shape<3>{batch, seq, embed}, -1.0f, 1.0f);
  const auto w = ts::uniform<float, Dev>(gen, ts::Shape<3>{batch, seq, embed}, -1.0f, 1.0f);
  const float per_example = 1.0f / static_cast<float>(batch);
  auto loss = [&](const auto& m, const auto& in) { return ts::sum(m(in, in, in, masks) * w) * per_example; };
  time_on_device(state, [&] {
    auto [value, grads] = ts::value_and_grad(loss, mha, x);
    benchmark::DoNotOptimize(grads);
  });
}

/// RecurrentTrainStep of bench/tessera_workloads.cpp on the device.
template <class Layer>
void recurrent_train_step(benchmark::State& state) {
  const ts::index_t steps = 32, batch = 32, in = 64, hidden = 256;
  ts::manual_seed(7);
  Layer model(in, hidden);
  ts::Generator gen(8);
  const auto x = ts::uniform<float, Dev>(gen, ts::Shape<3>{steps, batch, in}, -1.0f, 1.0f);
  const auto target = ts::uniform<float, Dev>(gen, ts::Shape<2>{batch, hidden}, -1.0f, 1.0f);
  ts::optim::SGD<float, Dev> opt({.lr = 0.1});
  auto loss = [&](const auto& m) {
    auto [out, final_state] = m(x);
    return tessera::nn::mse(ts::reshape(ts::slice(out, 0, steps - 1, steps), target.shape()), target);
  };
  time_on_device(state, [&] {
    auto [value, grads] = ts::value_and_grad(loss, model);
    opt.step(model, std::get<0>(grads));
  });
}
void lstm_train_step(benchmark::State& state) { recurrent_train_step<tessera::nn::LSTM<float, Dev>>(state); }
void gru_train_step(benchmark::State& state) { recurrent_train_step<tessera::nn::GRU<float, Dev>>(state); }

}  // namespace

BENCHMARK(fused_elementwise)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(device_copy)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(gemm_tessera)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(gemm_cublas)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(cnn_train_step)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(attention_fwd_bwd)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(lstm_train_step)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(gru_train_step)->UseManualTime()->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  // Listing the benchmarks needs no device (scripts/gpu-check runs each in its own process).
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing = listing || std::strncmp(argv[i], "--benchmark_list_tests", 22) == 0;
  if (!listing && !Dev::available()) {
    std::printf("cuda_bench: no CUDA device here\n");
    return 77;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
