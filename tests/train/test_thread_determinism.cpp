// Results do not depend on the number of threads: gradients (several outputs written in one pass),
// reductions, convolutions and their gradients, optimizer steps and whole training steps of a
// small CNN are bit-identical for 1, 2, 3 and 8 threads. (The elementwise kernels themselves are
// checked in tests/backend/test_cpu.cpp.) The checker is shown to catch a planted
// thread-count-dependent split.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <cstring>
#include <string>
#include <vector>

using namespace tessera;

namespace {

using Bytes = std::vector<unsigned char>;

/// Appends t's elements, in row-major order, as raw bytes.
template <class T, std::size_t R>
void append(Bytes& out, const Tensor<T, R>& t) {
  const auto c = t.contiguous();
  const auto* p = reinterpret_cast<const unsigned char*>(c.data());
  out.insert(out.end(), p, p + static_cast<std::size_t>(c.size()) * sizeof(T));
}
template <class... T>
Bytes bytes_of(const T&... tensors) {
  Bytes out;
  (append(out, tensors), ...);
  return out;
}
/// Every parameter and buffer (BatchNorm's running statistics) of a model.
template <class M>
Bytes model_bytes(M& model) {
  Bytes out;
  nn::for_each_parameter(model, [&](const std::string&, const auto& t) { append(out, t); });
  nn::for_each_buffer(model, [&](const std::string&, const auto& t) { append(out, t); });
  return out;
}

/// Compared with one thread (8 oversubscribes the 2-core CI machine on purpose).
constexpr int other_thread_counts[] = {2, 3, 8};

/// Runs `compute` (returning the bytes of its results) with 1, 2, 3 and 8 threads; returns the
/// first thread count whose bytes differ from one thread's, or 0 when all agree. Restores the
/// default thread count.
template <class F>
int first_thread_count_that_differs(F&& compute) {
  struct Restore {
    ~Restore() { cpu::set_num_threads(0); }
  } restore;
  cpu::set_num_threads(1);
  const Bytes one = compute();
  REQUIRE(!one.empty());
  for (const int threads : other_thread_counts) {
    cpu::set_num_threads(threads);
    REQUIRE(cpu::num_threads() == threads);
    if (compute() != one) return threads;
  }
  return 0;
}

}  // namespace

TEST_CASE("the checker catches a result that depends on the thread count") {
  // A planted fault: a sum split into one partial per thread, the partials then added. The
  // grouping of the additions changes with the thread count, and with it the rounding.
  Generator gen(7);
  const Tensor<float, 1> x = normal<float>(gen, {100000}) * 1000.0f;
  auto split_by_threads = [&] {
    const index_t threads = cpu::num_threads(), n = x.size();
    std::vector<float> partial(static_cast<std::size_t>(threads), 0.0f);
    for (index_t t = 0; t < threads; ++t) {
      for (index_t i = n * t / threads; i < n * (t + 1) / threads; ++i) partial[std::size_t(t)] += x(i);
    }
    float total = 0;
    for (float p : partial) total += p;
    const auto* p = reinterpret_cast<const unsigned char*>(&total);
    return Bytes(p, p + sizeof total);
  };
  CHECK(first_thread_count_that_differs(split_by_threads) != 0);
  std::string counts = "1";
  for (const int t : other_thread_counts) counts += ", " + std::to_string(t);
  const std::string compared = "thread counts compared: " + counts;
  MESSAGE(compared);
  // tessera's own sum of the same numbers does not move.
  CHECK(first_thread_count_that_differs([&] { return bytes_of(eval(sum(x))); }) == 0);
}

TEST_CASE_TEMPLATE("gradients of several same-shaped inputs (one multi-output pass)", T, float, double) {
  // 500 x 77: above the parallel threshold, rows not a multiple of the SIMD width, so chunks of a
  // naive split would start inside rows.
  Generator gen(1);
  const Tensor<T, 2> a = normal<T>(gen, {500, 77}), b = normal<T>(gen, {500, 77}), c = normal<T>(gen, {500, 77});
  const Tensor<T, 1> row = normal<T>(gen, {77});
  auto loss = [&](const auto& p, const auto& q, const auto& r) {
    return sum(tanh(p * q) * exp(-abs(r)) + sigmoid(p + r + row) * q);
  };
  CHECK(first_thread_count_that_differs([&] {
          auto [value, g] = value_and_grad(loss, a, b, c);
          return bytes_of(value, std::get<0>(g), std::get<1>(g), std::get<2>(g));
        }) == 0);
}

TEST_CASE_TEMPLATE("reductions over every axis set", T, float, double) {
  Generator gen(2);
  const Tensor<T, 3> x = normal<T>(gen, {40, 33, 77});
  CHECK(first_thread_count_that_differs([&] {
          const auto t = tanh(x) * T(3);
          return bytes_of(eval(sum(t)), eval(sum(t, {0})), eval(sum(t, {1})), eval(sum(t, {2})), eval(sum(t, {0, 2})),
                          eval(mean(exp(-abs(x)), {0, 1})), eval(max(t, {1})), eval(logsumexp(x, {2})),
                          eval(softmax(x, -1)));
        }) == 0);
}

TEST_CASE_TEMPLATE("a convolution, its input and weight gradients, pooling and batch norm", T, float, double) {
  Generator gen(3);
  const Tensor<T, 4> x = normal<T>(gen, {16, 8, 28, 28});
  const Tensor<T, 4> w = normal<T>(gen, {16, 8, 3, 3}) * T(0.2);
  const Tensor<T, 1> bias = normal<T>(gen, {16});
  CHECK(first_thread_count_that_differs([&] {
          auto loss = [&](const auto& xx, const auto& ww, const auto& bb) {
            return sum(tanh(max_pool2d(conv2d(xx, ww, bb, {.padding = 1}), 2)));
          };
          auto [value, g] = value_and_grad(loss, x, w, bias);
          return bytes_of(value, eval(conv2d(x, w, {.stride = 2})), std::get<0>(g), std::get<1>(g), std::get<2>(g));
        }) == 0);
}

TEST_CASE("optimizer steps") {
  auto run = [](auto make_optimizer) {
    return first_thread_count_that_differs([&] {
      Generator gen(4);
      // 300 x 130: a parameter above the parallel threshold with rows of an odd length.
      auto model = nn::sequential(nn::Linear<float>(130, 300, {.bias = true, .generator = &gen}));
      auto grads = nn::sequential(nn::Linear<float>(130, 300));  // a copy of model would share its buffers
      auto optimizer = make_optimizer();
      for (int step = 0; step < 3; ++step) {
        nn::for_each_parameter(grads, [&](const std::string&, auto& g) { g.assign(normal<float>(gen, g.shape())); });
        optimizer.step(model, grads);
      }
      return model_bytes(model);
    });
  };
  CHECK(run([] { return optim::Adam<float>({.lr = 0.01, .weight_decay = 0.1}); }) == 0);
  CHECK(run([] { return optim::AdamW<float>(); }) == 0);
  CHECK(run([] { return optim::SGD<float>({.lr = 0.1, .momentum = 0.9, .nesterov = true}); }) == 0);
  CHECK(run([] { return optim::RMSprop<float>(); }) == 0);
}

TEST_CASE("whole training steps of a CNN with batch norm and dropout") {
  CHECK(first_thread_count_that_differs([] {
          Generator gen(5);
          nn::Conv2dLayerOptions conv_options;
          conv_options.padding = 1;
          conv_options.bias = false;
          conv_options.generator = &gen;
          Generator dropout_gen(6);
          auto model = nn::sequential(nn::Conv2d<float>(1, 8, 3, conv_options), nn::BatchNorm2d<float>(8), nn::ReLU{},
                                      nn::MaxPool2d(2), nn::Flatten{},
                                      nn::Linear<float>(8 * 14 * 14, 64, {.bias = true, .generator = &gen}), nn::ReLU{},
                                      nn::Dropout<float>(0.3, {.generator = &dropout_gen}),
                                      nn::Linear<float>(64, 10, {.bias = true, .generator = &gen}));
          optim::Adam<float> optimizer({.lr = 1e-3});
          const Tensor<float, 4> images = normal<float>(gen, {64, 1, 28, 28});
          Tensor<std::int64_t, 1> labels = zeros<std::int64_t>({64});
          for (index_t i = 0; i < labels.size(); ++i) labels(i) = i % 10;
          Bytes losses;
          for (int step = 0; step < 3; ++step) {
            auto [value, g] = value_and_grad([&](const auto& m) { return nn::cross_entropy(m(images), labels); }, model);
            optimizer.step(model, std::get<0>(g));
            append(losses, value);
          }
          Bytes out = model_bytes(model);
          out.insert(out.end(), losses.begin(), losses.end());
          return out;
        }) == 0);
}
