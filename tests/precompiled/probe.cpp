// Calls every kernel that backend/cpu/precompiled.hpp lists and every optimizer update that
// optim/optimizers.hpp lists, for float and double, and some of the
// functions declared TESSERA_OUT_OF_LINE (core/config.hpp), with TESSERA_PRECOMPILED defined (it
// links tessera::precompiled). The precompiled_symbols test checks that this program's object file
// defines none of them (it only refers to them); precompiled_probe, that the program, linked
// against the library, computes them.
#include <cmath>
#include <cstdio>
#include <string>
#include <tuple>
#include <utility>

#include <tessera/tessera.hpp>

#ifndef TESSERA_PRECOMPILED
#error "precompiled_probe must be compiled with TESSERA_PRECOMPILED (link tessera::precompiled)"
#endif

namespace {

using tessera::cpu;
using tessera::index_t;
using tessera::Tensor;

int failures = 0;

void expect(bool ok, const char* what, const char* type) {
  if (!ok) {
    std::fprintf(stderr, "precompiled_probe: %s (%s) is wrong\n", what, type);
    ++failures;
  }
}

template <class T>
void probe(const char* type) {
  const tessera::Conv2dGeometry g{};  // stride 1, no padding
  // 2 images of 3 channels 6x6, 4 filters 3x3: every output of ones * ones is 27.
  auto x = tessera::ones<T>(2, 3, 6, 6);
  auto w = tessera::ones<T>(4, 3, 3, 3);
  Tensor<T, 4> y(2, 4, 4, 4);
  conv2d_forward(cpu{}, x, w, y, g, static_cast<const T*>(nullptr), false, static_cast<const T*>(nullptr));
  expect(y(1, 3, 2, 2) == T(27), "conv2d_forward", type);

  Tensor<T, 4> pooled(2, 4, 2, 2);
  const tessera::PoolEpilogue max_2x2{true, 2, 2, tessera::Conv2dGeometry{2, 2}};
  conv2d_pool_forward(cpu{}, x, w, pooled, y.shape(), g, static_cast<const T*>(nullptr), true, max_2x2,
                      static_cast<const T*>(nullptr));
  expect(pooled(0, 2, 1, 1) == T(27), "conv2d_pool_forward", type);

  auto dy = tessera::ones<T>(2, 4, 4, 4);
  Tensor<T, 4> dx(2, 3, 6, 6);
  conv2d_backward_data(cpu{}, w, dy, dx, g);
  expect(dx(0, 0, 0, 0) == T(4) && dx(0, 0, 3, 3) == T(36), "conv2d_backward_data", type);
  Tensor<T, 4> dw(4, 3, 3, 3);
  conv2d_backward_filter(cpu{}, x, dy, dw, g);
  expect(dw(3, 2, 1, 1) == T(32), "conv2d_backward_filter", type);
  Tensor<T, 1> db(4);
  conv2d_backward_bias(cpu{}, dy, db);
  expect(db(0) == T(32), "conv2d_backward_bias", type);

  const tessera::Conv2dGeometry stride_2{2, 2};
  Tensor<T, 4> max_out(2, 3, 3, 3), avg_out(2, 3, 3, 3);
  pool2d_forward(cpu{}, std::true_type{}, x, max_out, 2, 2, stride_2);
  pool2d_forward(cpu{}, std::false_type{}, x, avg_out, 2, 2, stride_2);
  expect(max_out(1, 1, 2, 2) == T(1) && avg_out(0, 0, 0, 0) == T(1), "pool2d_forward", type);
  auto pool_dy = tessera::ones<T>(2, 3, 3, 3);
  Tensor<T, 4> max_dx(2, 3, 6, 6), avg_dx(2, 3, 6, 6);
  pool2d_backward(cpu{}, std::true_type{}, x, pool_dy, max_dx, 2, 2, stride_2);
  pool2d_backward(cpu{}, std::false_type{}, x, pool_dy, avg_dx, 2, 2, stride_2);
  expect(max_dx(0, 0, 0, 0) + max_dx(0, 0, 0, 1) + max_dx(0, 0, 1, 0) + max_dx(0, 0, 1, 1) == T(1) &&
             avg_dx(0, 0, 1, 1) == T(0.25),
         "pool2d_backward", type);

  // Softmax of equal logits is uniform, at every listed rank.
  auto logits_1 = tessera::zeros<T>(4);
  Tensor<T, 1> softmax_1(4);
  softmax_into(cpu{}, softmax_1, logits_1, 0, false);
  Tensor<T, 2> logits_2 = {{0, 0, 0, 0}, {1, 1, 1, 1}};
  Tensor<T, 2> softmax_2(2, 4);
  softmax_into(cpu{}, softmax_2, logits_2, 1, false);
  auto logits_3 = tessera::ones<T>(2, 4, 3);
  Tensor<T, 3> softmax_3(2, 4, 3);
  softmax_into(cpu{}, softmax_3, logits_3, 1, false);
  auto logits_4 = tessera::ones<T>(2, 3, 4, 2);
  Tensor<T, 4> log_softmax_4(2, 3, 4, 2);
  softmax_into(cpu{}, log_softmax_4, logits_4, 2, true);
  expect(std::abs(softmax_1(3) - T(0.25)) < T(1e-6) && std::abs(softmax_2(1, 2) - T(0.25)) < T(1e-6) &&
             std::abs(softmax_3(1, 3, 2) - T(0.25)) < T(1e-6) &&
             std::abs(log_softmax_4(1, 2, 3, 1) - std::log(T(0.25))) < T(1e-6),
         "softmax_into", type);

  // Batch norm of [2, 3, 6, 6] ones: mean 1, variance 0, so y = beta.
  auto gamma = tessera::ones<T>(3);
  Tensor<T, 1> beta = {T(0.5), T(1.5), T(2.5)};
  Tensor<T, 1> mean(3), invstd(3), var(3);
  Tensor<T, 4> normalized(2, 3, 6, 6);
  tessera::BatchNormForwardArgs args = tessera::BatchNormForwardArgs::of(x.shape(), 1e-5, true);
  batch_norm_forward(cpu{}, x.data(), gamma.data(), beta.data(), normalized.data(), mean.data(), invstd.data(),
                     var.data(), args);
  expect(std::abs(normalized(1, 2, 5, 5) - T(2.5)) < T(1e-5) && mean(1) == T(1), "batch_norm_forward", type);
  Tensor<T, 1> scale(3), shift(3);
  // eps 1 and variance 0: scale = gamma / sqrt(1) = 1, shift = beta - mean * scale = beta - 1.
  batch_norm_scale_shift(cpu{}, 3, gamma.data(), beta.data(), mean.data(), var.data(), 1.0,
                         static_cast<const T*>(nullptr), scale.data(), shift.data());
  expect(scale(0) == T(1) && shift(2) == T(1.5), "batch_norm_scale_shift", type);

  // [2 x 3] * [3 x 2] of ones: every entry 3; two batches of the same.
  auto a = tessera::ones<T>(2, 2, 3);
  auto b = tessera::ones<T>(2, 3, 2);
  Tensor<T, 3> c(2, 2, 2);
  gemm(cpu{}, false, false, 2, 2, 3, T(1), a.data(), 3, b.data(), 2, T(0), c.data(), 2);
  expect(c(0, 1, 1) == T(3), "gemm", type);
  gemm_batched(cpu{}, false, false, 2, 2, 3, T(1), a.data(), 3, 6, b.data(), 2, 6, T(0), c.data(), 2, 4, 2);
  expect(c(1, 0, 1) == T(3), "gemm_batched", type);
}

/// A module with one parameter, for the optimizers.
template <class T>
struct One : tessera::nn::Module<One<T>> {
  Tensor<T, 1> w;
  explicit One(Tensor<T, 1> t) : w(std::move(t)) {}
  auto members() { return std::make_tuple(tessera::nn::param("w", w)); }
};

/// One step of every optimizer whose update optim/optimizers.hpp lists, from w = 1 with gradient
/// 1, against the closed form of its first step.
template <class T>
void probe_optimizers(const char* type) {
  auto after_one_step = [](auto opt) {
    One<T> model(tessera::ones<T>(3));
    One<T> grads(tessera::ones<T>(3));
    opt.step(model, grads);
    return double(model.w(2));
  };
  auto near = [](double got, double want) { return std::abs(got - want) < 1e-5; };
  expect(near(after_one_step(tessera::optim::SGD<T>({.lr = 0.5})), 0.5), "SGD::update", type);
  // Adam's first step is lr * g / (|g| + eps); AdamW also shrinks w by lr * weight_decay first.
  expect(near(after_one_step(tessera::optim::Adam<T>({.lr = 0.1})), 0.9), "Adam's update", type);
  expect(near(after_one_step(tessera::optim::AdamW<T>({.lr = 0.1, .weight_decay = 0.01})), 0.999 - 0.1),
         "AdamW's update", type);
  // RMSprop: v = (1 - 0.99) g^2, w -= lr g / sqrt(v) = 0.01 / 0.1. Adagrad: s = g^2, w -= lr.
  expect(near(after_one_step(tessera::optim::RMSprop<T>({.lr = 0.01})), 0.9), "RMSprop::update", type);
  expect(near(after_one_step(tessera::optim::Adagrad<T>({.lr = 0.1})), 0.9), "Adagrad::update", type);
}

// Out-of-line functions: a safetensors file written, read back and checked; shape rules.
void probe_functions() {
  const std::string path = "precompiled_probe.safetensors";  // in the test's working directory
  tessera::io::SafetensorsFile file;
  file.add("w", tessera::full<float>({2, 3}, 1.5f));
  file.write(path);
  const auto read = tessera::io::SafetensorsFile::read(path);
  expect(read.tensor<float, 2>("w")(1, 2) == 1.5f, "SafetensorsFile::write and read", "float");
  std::remove(path.c_str());

  // Shape rules (src/precompiled_core.cpp): a reshape that infers an extent, one that cannot be
  // done, and a convolution node's output shape.
  const auto m = tessera::full<float>({2, 3}, 1.0f);
  expect(m.reshape(tessera::Shape<2>{3, -1}).shape() == tessera::Shape<2>{3, 2}, "resolve_reshape", "float");
  try {
    (void)m.reshape(tessera::Shape<1>{4});
    expect(false, "resolve_reshape's error", "float");
  } catch (const tessera::shape_error& e) {
    expect(std::string(e.what()) == "reshape: cannot reshape [2, 3] (6 elements) into [4] (4 elements)",
           "resolve_reshape's error", "float");
  }
  const auto y = tessera::conv2d(tessera::ones<float>(1, 3, 6, 6), tessera::ones<float>(4, 3, 3, 3));
  expect(y.shape() == tessera::Shape<4>{1, 4, 4, 4}, "conv2d_output_shape", "float");
}

}  // namespace

int main() {
  probe<float>("float");
  probe<double>("double");
  probe_optimizers<float>("float");
  probe_optimizers<double>("double");
  probe_functions();
  if (failures == 0) std::printf("precompiled_probe: ok\n");
  return failures == 0 ? 0 : 1;
}
