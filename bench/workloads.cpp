// The workload table and the thread settings shared by every benchmark program.
//
// Adding a workload: write its runner in tessera_workloads.cpp and libtorch_workloads.cpp (declare
// both in runners.hpp), then add a row below with its inputs, unit and tolerance. bench_core and
// tessera_vs_libtorch pick it up from the table.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include <Eigen/Core>
#include <tessera/tessera.hpp>

#include "runners.hpp"

// OpenBLAS's own entry points (weak: absent from other BLAS libraries). LibTorch computes GEMM with
// the same OpenBLAS but never sets its thread count, so the harness does it for both libraries.
extern "C" {
void openblas_set_num_threads(int) __attribute__((weak));
int openblas_get_num_threads() __attribute__((weak));
char* openblas_get_config() __attribute__((weak));
}

#ifdef TESSERA_BENCH_HAS_LIBTORCH
#define TESSERA_BENCH_LIBTORCH_FACTORY(factory) with_blas_threads(libtorch_impl::factory)
#else
#define TESSERA_BENCH_LIBTORCH_FACTORY(factory) RunnerFactory()
#endif

namespace tessera_bench {

namespace {
int libtorch_blas_thread_count = 1;

/// A LibTorch runner whose turns start with OpenBLAS at libtorch_blas_threads(). OpenBLAS's thread
/// count is process-wide, and tessera sets it to one before each of its own products (its pool
/// shares them out instead; docs/core.md): without this, LibTorch's turns ran with whatever the
/// previous turn left.
class WithBlasThreads final : public Runner {
 public:
  explicit WithBlasThreads(std::unique_ptr<Runner> inner) : inner_(std::move(inner)) {}
  void before_turn() override {
    if (openblas_set_num_threads) openblas_set_num_threads(libtorch_blas_thread_count);
    inner_->before_turn();
  }
  void run() override { inner_->run(); }
  std::vector<float> result() const override { return inner_->result(); }

 private:
  std::unique_ptr<Runner> inner_;
};

[[maybe_unused]] RunnerFactory with_blas_threads(RunnerFactory factory) {
  return
      [factory](const Inputs& in) -> std::unique_ptr<Runner> { return std::make_unique<WithBlasThreads>(factory(in)); };
}

/// `shape`-sized array of uniform values in [low, high), the same for a given seed on any thread count.
HostArray uniform_array(std::vector<std::int64_t> shape, float low, float high, std::uint64_t seed) {
  std::int64_t n = 1;
  for (auto e : shape) n *= e;
  tessera::Generator gen(seed);
  const auto t = tessera::uniform<float>(gen, tessera::Shape<1>{n}, low, high);
  return {std::move(shape), std::vector<float>(t.data(), t.data() + n)};
}

Workload elementwise_chain() {
  const std::int64_t n = stream_elements;
  Workload w;
  w.name = "elementwise_chain";
  w.bytes = 6.0 * double(n) * sizeof(float);  // a, b, c, d, e read; y written
  w.tolerance = 1e-5;                         // |y| < 9; both tanh approximations are within ~1 ulp
  w.floor_arrays = 6;
  w.make_inputs = [n] {
    Inputs in;
    for (std::uint64_t seed = 1; seed <= 5; ++seed) in.push_back(uniform_array({n}, -2.0f, 2.0f, seed));
    return in;
  };
  w.tessera = tessera_impl::elementwise_chain;
  w.libtorch = TESSERA_BENCH_LIBTORCH_FACTORY(elementwise_chain);
#ifdef TESSERA_BENCH_HAS_LIBTORCH
  w.variants.push_back({"libtorch_out", libtorch_impl::elementwise_chain_out});
#endif
  return w;
}

Workload gemm(std::int64_t n) {
  Workload w;
  w.name = "gemm_" + std::to_string(n);
  w.unit = Unit::gflops;
  w.flops = 2.0 * double(n) * double(n) * double(n);
  w.tolerance = 1e-3;  // entries ~ sqrt(n) / 3; summation-order differences stay near 1e-5
  w.make_inputs = [n] {
    return Inputs{uniform_array({n, n}, -1.0f, 1.0f, 11), uniform_array({n, n}, -1.0f, 1.0f, 12)};
  };
  w.tessera = tessera_impl::gemm;
  w.libtorch = TESSERA_BENCH_LIBTORCH_FACTORY(gemm);
  return w;
}

Workload sum() {
  const std::int64_t n = stream_elements;
  Workload w;
  w.name = "sum";
  w.bytes = double(n) * sizeof(float);
  w.floor_arrays = 1;  // x read once
  // The result is ~1e3; float partial sums of 2^24 values (in different orders) differ by ~1e-2.
  w.tolerance = 0.1;
  w.make_inputs = [n] { return Inputs{uniform_array({n}, -1.0f, 1.0f, 21)}; };
  w.tessera = tessera_impl::sum;
  w.libtorch = TESSERA_BENCH_LIBTORCH_FACTORY(sum);
  return w;
}

Workload softmax() {
  const std::int64_t rows = 4096, cols = 1000;
  Workload w;
  w.name = "softmax";
  w.bytes = 2.0 * double(rows * cols) * sizeof(float);
  w.tolerance = 1e-6;  // outputs are ~1e-3
  w.make_inputs = [=] { return Inputs{uniform_array({rows, cols}, -4.0f, 4.0f, 31)}; };
  w.tessera = tessera_impl::softmax;
  w.libtorch = TESSERA_BENCH_LIBTORCH_FACTORY(softmax);
  return w;
}

/// Labels 0..classes-1 as floats, the same for a given seed.
HostArray label_array(std::int64_t n, int classes, std::uint64_t seed) {
  HostArray h = uniform_array({n}, 0.0f, static_cast<float>(classes), seed);
  for (auto& v : h.values) v = std::min(static_cast<float>(classes - 1), std::floor(v));
  return h;
}

/// Loss and gradients of a 784-512-512-10 ReLU MLP, batch 128, softmax cross-entropy: the
/// forward and backward of one training step (the optimizer update is the nn issue's).
Workload mlp_grad() {
  const std::int64_t batch = 128, in = 784, hidden = 512, classes = 10;
  Workload w;
  w.name = "mlp_grad";
  // Forward 2*b*(in*h + h*h + h*c); backward twice that (input and weight gradients; the first
  // layer's input gradient is not needed, LibTorch skips it too).
  const double fwd = 2.0 * double(batch) * double(in * hidden + hidden * hidden + hidden * classes);
  w.flops = fwd + 2.0 * fwd - 2.0 * double(batch) * double(in * hidden);
  w.tolerance = 1e-4;  // gradients ~1e-2; float sums of up to 512 terms in different orders
  w.make_inputs = [=] {
    // PyTorch's default Linear initialization: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    auto layer = [](std::int64_t fan_in, std::int64_t fan_out, std::uint64_t seed, Inputs& out) {
      const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
      out.push_back(uniform_array({fan_in, fan_out}, -bound, bound, seed));
      out.push_back(uniform_array({fan_out}, -bound, bound, seed + 1));
    };
    Inputs inputs{uniform_array({batch, in}, 0.0f, 1.0f, 41), label_array(batch, int(classes), 42)};
    layer(in, hidden, 43, inputs);
    layer(hidden, hidden, 45, inputs);
    layer(hidden, classes, 47, inputs);
    return inputs;
  };
  w.tessera = tessera_impl::mlp_grad;
  w.libtorch = TESSERA_BENCH_LIBTORCH_FACTORY(mlp_grad);
  return w;
}

/// PyTorch-default-initialized parameters [out, in, k...] and [out] of a layer, in PyTorch's layout.
void pytorch_layer(std::vector<std::int64_t> weight_shape, std::uint64_t seed, Inputs& out) {
  std::int64_t fan_in = 1;
  for (std::size_t i = 1; i < weight_shape.size(); ++i) fan_in *= weight_shape[i];
  const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
  const std::int64_t outputs = weight_shape[0];
  out.push_back(uniform_array(std::move(weight_shape), -bound, bound, seed));
  out.push_back(uniform_array({outputs}, -bound, bound, seed + 1));
}

/// The MLP of mlp_grad trained for a step: forward, backward and SGD (lr 0.01, momentum 0.9).
Workload mlp_train_step() {
  Workload w;
  w.name = "mlp_train_step";
  w.tolerance = 1e-4;  // the losses of the first two steps (~2.3)
  w.make_inputs = [] {
    Inputs in{uniform_array({128, 784}, 0.0f, 1.0f, 51), label_array(128, 10, 52)};
    pytorch_layer({512, 784}, 53, in);
    pytorch_layer({512, 512}, 55, in);
    pytorch_layer({10, 512}, 57, in);
    return in;
  };
  w.tessera = tessera_impl::mlp_train_step;
  w.libtorch = TESSERA_BENCH_LIBTORCH_FACTORY(mlp_train_step);
  return w;
}

/// A training step of the nn issue's CNN on a batch of 64 28x28 images with Adam (lr 1e-3).
Workload cnn_train_step() {
  Workload w;
  w.name = "cnn_train_step";
  w.tolerance = 1e-4;
  w.make_inputs = [] {
    Inputs in{uniform_array({64, 1, 28, 28}, 0.0f, 1.0f, 61), label_array(64, 10, 62)};
    pytorch_layer({32, 1, 3, 3}, 63, in);
    pytorch_layer({64, 32, 3, 3}, 65, in);
    pytorch_layer({128, 3136}, 67, in);
    pytorch_layer({10, 128}, 69, in);
    return in;
  };
  w.tessera = tessera_impl::cnn_train_step;
  w.libtorch = TESSERA_BENCH_LIBTORCH_FACTORY(cnn_train_step);
  return w;
}

/// A 3x3 convolution (padding 1, bias) of one 64-channel 56x56 image into 64 channels, in inference
/// mode: the serving case, where a batch of one leaves only the image itself to share out.
Workload conv_batch1() {
  const std::int64_t C = 64, O = 64, H = 56, W = 56;
  Workload w;
  w.name = "conv_batch1";
  w.unit = Unit::gflops;
  w.flops = 2.0 * double(O * H * W) * double(C * 9);
  w.tolerance = 1e-4;  // |y| < ~3; float sums of 576 products in different orders
  w.make_inputs = [=] {
    Inputs in{uniform_array({1, C, H, W}, 0.0f, 1.0f, 81)};
    pytorch_layer({O, C, 3, 3}, 82, in);
    return in;
  };
  w.tessera = tessera_impl::conv_batch1;
  w.libtorch = TESSERA_BENCH_LIBTORCH_FACTORY(conv_batch1);
  return w;
}

/// One Adam step (lr 1e-3) over a parameter of 10M floats with a given gradient.
Workload adam_10m_step() {
  const std::int64_t n = 10'000'000;
  Workload w;
  w.name = "adam_10M_step";
  w.bytes = 7.0 * double(n) * sizeof(float);  // p, g, m, v read; p, m, v written
  w.tolerance = 1e-6;
  // Gradients away from 0, so that the first step (lr * sign(g), as Adam's first step is) cannot
  // flip on rounding differences.
  w.make_inputs = [n] { return Inputs{uniform_array({n}, -1.0f, 1.0f, 71), uniform_array({n}, 0.1f, 1.0f, 72)}; };
  w.tessera = tessera_impl::adam_10m_step;
  w.libtorch = TESSERA_BENCH_LIBTORCH_FACTORY(adam_10m_step);
  return w;
}

/// One SGD step of a one-layer LSTM or GRU: input 64, hidden 256, 32 steps, batch 32, MSE of the
/// last step's output (the sequence-models issue's lstm_train_step and gru_train_step).
Workload recurrent_train_step(bool lstm) {
  const std::int64_t steps = 32, batch = 32, in_features = 64, hidden = 256, gates = lstm ? 4 : 3;
  Workload w;
  w.name = lstm ? "lstm_train_step" : "gru_train_step";
  w.tolerance = 1e-4;
  w.make_inputs = [=] {
    Inputs in{uniform_array({steps, batch, in_features}, -1.0f, 1.0f, 81),
              uniform_array({batch, hidden}, -0.5f, 0.5f, 82)};
    // torch.nn.LSTM/GRU: every tensor from U(-1/sqrt(hidden), 1/sqrt(hidden)).
    const float bound = 1.0f / std::sqrt(static_cast<float>(hidden));
    in.push_back(uniform_array({gates * hidden, in_features}, -bound, bound, 83));
    in.push_back(uniform_array({gates * hidden, hidden}, -bound, bound, 84));
    in.push_back(uniform_array({gates * hidden}, -bound, bound, 85));
    in.push_back(uniform_array({gates * hidden}, -bound, bound, 86));
    return in;
  };
  if (lstm) {
    w.tessera = tessera_impl::lstm_train_step;
    w.libtorch = TESSERA_BENCH_LIBTORCH_FACTORY(lstm_train_step);
  } else {
    w.tessera = tessera_impl::gru_train_step;
    w.libtorch = TESSERA_BENCH_LIBTORCH_FACTORY(gru_train_step);
  }
  return w;
}

/// PyTorch-like initial parameters of one attention block (MultiheadAttention: in_proj_weight
/// [3E, E], in_proj_bias, out_proj.weight, out_proj.bias), appended to `in`; seeds from `seed`.
void push_attention_parameters(Inputs& in, std::int64_t e, std::uint64_t seed) {
  const float xavier = std::sqrt(6.0f / static_cast<float>(4 * e)), linear = 1.0f / std::sqrt(static_cast<float>(e));
  in.push_back(uniform_array({3 * e, e}, -xavier, xavier, seed));
  in.push_back(uniform_array({3 * e}, -0.1f, 0.1f, seed + 1));  // PyTorch starts at 0; nonzero tests more
  in.push_back(uniform_array({e, e}, -linear, linear, seed + 2));
  in.push_back(uniform_array({e}, -0.1f, 0.1f, seed + 3));
}

/// MultiheadAttention forward and backward (batch 16, seq 128, d_model 256, 8 heads, causal mask):
/// loss sum(out * w) / batch, gradients of the input and every parameter.
Workload attention_fwd_bwd() {
  const std::int64_t batch = 16, seq = 128, e = 256;
  Workload w;
  w.name = "attention_fwd_bwd";
  w.tolerance = 1e-2;  // the loss and in_proj_bias's gradient, both of order 1-10
  w.make_inputs = [=] {
    Inputs in{uniform_array({batch, seq, e}, -1.0f, 1.0f, 91), uniform_array({batch, seq, e}, -1.0f, 1.0f, 92)};
    push_attention_parameters(in, e, 93);
    return in;
  };
  w.tessera = tessera_impl::attention_fwd_bwd;
  w.libtorch = TESSERA_BENCH_LIBTORCH_FACTORY(attention_fwd_bwd);
  return w;
}

/// One Adam step (lr 1e-3) of two post-norm TransformerEncoderLayers (d_model 256, 8 heads,
/// feed-forward 1024, ReLU, dropout 0), seq 128, batch 16, MSE against a target.
Workload transformer_train_step() {
  const std::int64_t batch = 16, seq = 128, e = 256, ff = 1024;
  Workload w;
  w.name = "transformer_train_step";
  w.tolerance = 1e-4;
  w.make_inputs = [=] {
    Inputs in{uniform_array({batch, seq, e}, -1.0f, 1.0f, 101), uniform_array({batch, seq, e}, -1.0f, 1.0f, 102)};
    for (std::uint64_t layer = 0; layer < 2; ++layer) {
      const std::uint64_t seed = 110 + 20 * layer;
      push_attention_parameters(in, e, seed);
      const float b1 = 1.0f / std::sqrt(static_cast<float>(e)), b2 = 1.0f / std::sqrt(static_cast<float>(ff));
      in.push_back(uniform_array({ff, e}, -b1, b1, seed + 4));  // linear1
      in.push_back(uniform_array({ff}, -b1, b1, seed + 5));
      in.push_back(uniform_array({e, ff}, -b2, b2, seed + 6));  // linear2
      in.push_back(uniform_array({e}, -b2, b2, seed + 7));
      for (std::uint64_t k = 0; k < 2; ++k) {  // norm1, norm2: weight near 1, bias near 0
        in.push_back(uniform_array({e}, 0.9f, 1.1f, seed + 8 + 2 * k));
        in.push_back(uniform_array({e}, -0.1f, 0.1f, seed + 9 + 2 * k));
      }
    }
    return in;
  };
  w.tessera = tessera_impl::transformer_train_step;
  w.libtorch = TESSERA_BENCH_LIBTORCH_FACTORY(transformer_train_step);
  return w;
}

}  // namespace

const std::vector<Workload>& workloads() {
  static const std::vector<Workload> table{elementwise_chain(), gemm(512), gemm(1024),       gemm(2048),
                                           sum(),               softmax(), mlp_grad(),       mlp_train_step(),
                                           cnn_train_step(),    conv_batch1(),     adam_10m_step(),   recurrent_train_step(true),
                                           recurrent_train_step(false), attention_fwd_bwd(),
                                           transformer_train_step()};
  return table;
}

bool libtorch_available() {
#ifdef TESSERA_BENCH_HAS_LIBTORCH
  return true;
#else
  return false;
#endif
}

int set_threads(int n) {
  tessera::cpu::set_num_threads(n > 0 ? n : 0);
  const int t = tessera::cpu::num_threads();
  if (openblas_set_num_threads) openblas_set_num_threads(t);
#ifdef TESSERA_BENCH_HAS_LIBTORCH
  libtorch_impl::set_num_threads(t);
#endif
  return t;
}

int threads() { return tessera::cpu::num_threads(); }

void set_libtorch_blas_threads(int n) { libtorch_blas_thread_count = std::max(1, n); }
int libtorch_blas_threads() { return libtorch_blas_thread_count; }

std::vector<std::pair<std::string, std::string>> library_info() {
  std::string tessera_line = std::string(tessera::version) + ", threads " +
                             std::to_string(tessera::cpu::num_threads()) + ", Eigen SIMD " +
                             Eigen::SimdInstructionSetsInUse();
#ifdef TESSERA_HAS_CBLAS
  tessera_line += ", GEMM via cblas_sgemm";
#else
  tessera_line += ", GEMM via Eigen";
#endif
  std::vector<std::pair<std::string, std::string>> lines{{"tessera", tessera_line}};
  if (openblas_get_config) {
    lines.push_back({"openblas", std::string(openblas_get_config()) + ", threads " +
                                     std::to_string(openblas_get_num_threads ? openblas_get_num_threads() : -1)});
  }
#ifdef TESSERA_BENCH_HAS_LIBTORCH
  lines.push_back({"libtorch", libtorch_impl::info() + "; OpenBLAS threads in its turns " +
                                   std::to_string(libtorch_blas_thread_count)});
#endif
  return lines;
}

}  // namespace tessera_bench

#undef TESSERA_BENCH_LIBTORCH_FACTORY
