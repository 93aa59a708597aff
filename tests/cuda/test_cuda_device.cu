// The CUDA backend on a GPU: device memory, and the CPU-vs-GPU parity of every kernel — every
// elementwise op (fused chains, broadcasting, views, several outputs), reductions over every axis
// combination, softmax, GEMM, argmax, random fills, gradients, optimizer steps, cuDNN convolution,
// pooling and batch norm, embedding and train::fit — each result compared with the CPU backend's
// on the same input. One nvcc translation unit (each costs CI half a minute of parsing).
// Compiled wherever the toolkit is; where no device is present it prints why and exits 77 (CTest:
// skipped).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <tessera/cuda.hpp>

#include "cuda/device_test_support.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

using namespace tessera;
using device_test::Dev;
using device_test::check_close;
using device_test::host;
using device_test::to_dev;

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

// ---- parity with the CPU backend ----------------------------------------------------------------

namespace ts = tessera;

namespace {

template <class T = float>
Tensor<T, 3, cpu> random3(index_t a, index_t b, index_t c, std::uint64_t seed, T low = T(-2), T high = T(2)) {
  ts::Generator gen(seed);
  return ts::uniform<T>(gen, Shape<3>{a, b, c}, low, high);
}
template <class T = float>
Tensor<T, 2, cpu> random2(index_t a, index_t b, std::uint64_t seed, T low = T(-2), T high = T(2)) {
  ts::Generator gen(seed);
  return ts::uniform<T>(gen, Shape<2>{a, b}, low, high);
}

}  // namespace

TEST_CASE("fused elementwise chains with broadcasting, views and rank-0 device tensors") {
  const auto a = random3(4, 33, 65, 1), b = random3(4, 33, 65, 2);
  const auto row = random3(1, 1, 65, 3), col = random3(4, 33, 1, 4);
  const Tensor<float, 0, cpu> s(1.75f);
  const auto da = to_dev(a), db = to_dev(b), drow = to_dev(row), dcol = to_dev(col);
  const auto ds = to_dev(s);

  check_close(Tensor<float, 3, Dev>(da * db + drow * dcol - ts::tanh(da)), Tensor<float, 3, cpu>(a * b + row * col - ts::tanh(a)));
  check_close(Tensor<float, 3, Dev>((da - ds) / ds + 1.0f), Tensor<float, 3, cpu>((a - s) / s + 1.0f));
  check_close(Tensor<float, 3, Dev>(da.transpose(0, 2).transpose(0, 2) * 2.0f), Tensor<float, 3, cpu>(a * 2.0f));
  const auto at = a.transpose(1, 2);
  check_close(Tensor<float, 3, Dev>(da.transpose(1, 2) + 1.0f), Tensor<float, 3, cpu>(at + 1.0f));
  check_close(Tensor<float, 3, Dev>(ts::where(da > db, da, db * 0.5f)), Tensor<float, 3, cpu>(ts::where(a > b, a, b * 0.5f)));
  check_close(Tensor<double, 3, Dev>(ts::cast<double>(da) * 3.0), Tensor<double, 3, cpu>(ts::cast<double>(a) * 3.0));
  // A strided destination (a view) and compound assignment.
  auto dc = da.clone();
  auto c = a.clone();
  dc.slice(2, 1, 65, 2) = db.slice(2, 1, 65, 2) * 10.0f;
  c.slice(2, 1, 65, 2) = b.slice(2, 1, 65, 2) * 10.0f;
  check_close(dc, c);
  dc += db;
  c += b;
  check_close(dc, c);
  // A non-contiguous device view copied to the host is packed by a kernel.
  check_close(to_dev(a).transpose(0, 1).to<Dev>(), Tensor<float, 3, cpu>(a.transpose(0, 1)));
  CHECK(host(to_dev(a).transpose(0, 1)).shape() == Shape<3>{33, 4, 65});
}

TEST_CASE("every unary and binary op matches the CPU") {
  const auto x = random3(3, 17, 29, 5);
  const auto y = random3(3, 17, 29, 6, 0.25f, 3.0f);
  const auto dx = to_dev(x), dy = to_dev(y);
#define UNARY(expr_of)                                                                   \
  {                                                                                      \
    auto f = [](const auto& v) { return expr_of; };                                      \
    CAPTURE(#expr_of);                                                                   \
    check_close(Tensor<float, 3, Dev>(f(dx)), Tensor<float, 3, cpu>(f(x)), 2e-5);        \
  }
  UNARY(ts::exp(v))
  UNARY(ts::log(ts::abs(v) + 0.5f))
  UNARY(ts::log1p(ts::abs(v)))
  UNARY(ts::sqrt(ts::abs(v)))
  UNARY(ts::rsqrt(ts::abs(v) + 0.1f))
  UNARY(ts::sin(v))
  UNARY(ts::cos(v))
  UNARY(ts::tanh(v))
  UNARY(ts::erf(v))
  UNARY(ts::sigmoid(v))
  UNARY(ts::gelu(v))
  UNARY(ts::softplus(v * 20.0f))
  UNARY(ts::abs(v))
  UNARY(ts::sign(v))
  UNARY(ts::relu(v))
  UNARY(ts::square(v))
  UNARY(-v)
  UNARY(ts::clamp(v, -0.5f, 0.75f))
#undef UNARY
  check_close(Tensor<float, 3, Dev>(dx / dy), Tensor<float, 3, cpu>(x / y));
  check_close(Tensor<float, 3, Dev>(ts::pow(dy, dx)), Tensor<float, 3, cpu>(ts::pow(y, x)), 2e-5);
  check_close(Tensor<float, 3, Dev>(ts::minimum(dx, dy) - ts::maximum(dx, 0.0f)),
              Tensor<float, 3, cpu>(ts::minimum(x, y) - ts::maximum(x, 0.0f)));
  check_close(Tensor<bool, 3, Dev>(ts::logical_and(dx < dy, !(dx >= 0.5f))), Tensor<bool, 3, cpu>(ts::logical_and(x < y, !(x >= 0.5f))));
  const Tensor<int, 2, cpu> i = {{1, -2, 3}, {7, 0, -5}};
  check_close(Tensor<int, 2, Dev>(to_dev(i) * 3 - ts::pow(to_dev(i), 2)), Tensor<int, 2, cpu>(i * 3 - ts::pow(i, 2)));
}

TEST_CASE("reductions over every axis combination, fused with their input") {
  const auto x = random3(5, 37, 130, 7);
  const auto dx = to_dev(x);
  for (int mask = 1; mask < 8; ++mask) {
    CAPTURE(mask);
    const std::array<bool, 3> axes{(mask & 4) != 0, (mask & 2) != 0, (mask & 1) != 0};
    using namespace tessera::detail;
    check_close(Tensor<float, 3, Dev>(make_reduce<tessera::ops::SumReducer, 3>(dx * dx + 1.0f, axes, "sum", false)),
                Tensor<float, 3, cpu>(make_reduce<tessera::ops::SumReducer, 3>(x * x + 1.0f, axes, "sum", false)), 1e-4);
    check_close(Tensor<float, 3, Dev>(make_reduce<tessera::ops::SumReducer, 3>(dx, axes, "mean", true)),
                Tensor<float, 3, cpu>(make_reduce<tessera::ops::SumReducer, 3>(x, axes, "mean", true)), 1e-4);
    check_close(Tensor<float, 3, Dev>(make_reduce<tessera::ops::MaxReducer, 3>(dx, axes, "max", false)),
                Tensor<float, 3, cpu>(make_reduce<tessera::ops::MaxReducer, 3>(x, axes, "max", false)));
    check_close(Tensor<float, 3, Dev>(make_reduce<tessera::ops::MinReducer, 3>(dx, axes, "min", false)),
                Tensor<float, 3, cpu>(make_reduce<tessera::ops::MinReducer, 3>(x, axes, "min", false)));
  }
  // A large full reduction (split over many blocks, then combined), in double to compare tightly.
  ts::Generator gen(8);
  const auto big = ts::uniform<double>(gen, Shape<1>{(1 << 22) + 3}, -1.0, 1.0);
  check_close(Tensor<double, 0, Dev>(ts::sum(to_dev(big))), Tensor<double, 0, cpu>(ts::sum(big)), 1e-9);
  const auto near_one = random3(2, 3, 40, 9, 0.9f, 1.1f);
  check_close(Tensor<float, 2, Dev>(ts::prod(to_dev(near_one), 2)), Tensor<float, 2, cpu>(ts::prod(near_one, 2)), 1e-4);
  check_close(Tensor<bool, 2, Dev>(ts::all(to_dev(x) > -1.5f, 2)), Tensor<bool, 2, cpu>(ts::all(x > -1.5f, 2)));
  check_close(Tensor<std::int64_t, 2, Dev>(ts::argmax(dx, 2)), Tensor<std::int64_t, 2, cpu>(ts::argmax(x, 2)));
  check_close(Tensor<std::int64_t, 2, Dev>(ts::argmin(dx, 1)), Tensor<std::int64_t, 2, cpu>(ts::argmin(x, 1)));
  // Empty extents: sum gives 0, max raises as on the CPU.
  const Tensor<float, 2, Dev> empty(Shape<2>{3, 0});
  check_close(Tensor<float, 1, Dev>(ts::sum(empty, 1)), Tensor<float, 1, cpu>(ts::zeros<float>(Shape<1>{3})));
  CHECK_THROWS_AS((Tensor<float, 1, Dev>(ts::max(empty, 1))), tessera::shape_error);
}

TEST_CASE("softmax and log_softmax along every axis, with infinities") {
  auto x = random3(6, 10, 300, 10, -5.0f, 5.0f);
  x(0, 0, 0) = -std::numeric_limits<float>::infinity();
  const auto dx = to_dev(x);
  for (index_t axis = 0; axis < 3; ++axis) {
    CAPTURE(axis);
    check_close(Tensor<float, 3, Dev>(ts::softmax(dx, axis)), Tensor<float, 3, cpu>(ts::softmax(x, axis)));
    check_close(Tensor<float, 3, Dev>(ts::log_softmax(dx, axis)), Tensor<float, 3, cpu>(ts::log_softmax(x, axis)), 1e-4);
  }
}

TEST_CASE("matmul through cuBLAS: transposed operands, batches, vectors") {
  const auto a = random2(70, 45, 11), b = random2(45, 33, 12), bt = random2(33, 45, 13);
  check_close(Tensor<float, 2, Dev>(ts::matmul(to_dev(a), to_dev(b))), Tensor<float, 2, cpu>(ts::matmul(a, b)), 1e-4);
  check_close(Tensor<float, 2, Dev>(ts::matmul(to_dev(a), ts::transpose(to_dev(bt)))),
              Tensor<float, 2, cpu>(ts::matmul(a, ts::transpose(bt))), 1e-4);
  check_close(Tensor<float, 2, Dev>(ts::matmul(ts::transpose(to_dev(b)), ts::transpose(to_dev(a)))),
              Tensor<float, 2, cpu>(ts::matmul(ts::transpose(b), ts::transpose(a))), 1e-4);
  const auto batch = random3(4, 20, 45, 14), rhs = random3(4, 45, 8, 15);
  check_close(Tensor<float, 3, Dev>(ts::matmul(to_dev(batch), to_dev(rhs))), Tensor<float, 3, cpu>(ts::matmul(batch, rhs)), 1e-4);
  check_close(Tensor<float, 3, Dev>(ts::matmul(to_dev(batch), to_dev(b))), Tensor<float, 3, cpu>(ts::matmul(batch, b)), 1e-4);
  // Transposed batches: one strided-batched cuBLAS call with transposed operands.
  check_close(Tensor<float, 3, Dev>(ts::matmul(to_dev(rhs).transpose(1, 2), to_dev(batch).transpose(1, 2))),
              Tensor<float, 3, cpu>(ts::matmul(rhs.transpose(1, 2), batch.transpose(1, 2))), 1e-4);
  ts::Generator gen(16);
  const auto v = ts::uniform<double>(gen, Shape<1>{45});
  const auto ad = ts::cast<double>(a);
  check_close(Tensor<double, 1, Dev>(ts::matmul(to_dev(Tensor<double, 2, cpu>(ad)), to_dev(v))),
              Tensor<double, 1, cpu>(ts::matmul(Tensor<double, 2, cpu>(ad), v)), 1e-10);
}

TEST_CASE("random fills draw the CPU's values") {
  ts::Generator g1(42), g2(42);
  // Uniform draws and dropout masks are bit-identical; normal draws go through the device's log,
  // sin and cos, which may differ from the host's in the last bit of a double.
  check_close(ts::uniform<float, Dev>(g1, Shape<2>{31, 17}, -1.0f, 3.0f), ts::uniform<float>(g2, Shape<2>{31, 17}, -1.0f, 3.0f), 0);
  check_close(ts::uniform<double, Dev>(g1, Shape<1>{999}, -0.5, 7.0), ts::uniform<double>(g2, Shape<1>{999}, -0.5, 7.0), 0);
  check_close(ts::normal<double, Dev>(g1, Shape<1>{1001}, 0.5, 2.0), ts::normal<double>(g2, Shape<1>{1001}, 0.5, 2.0), 1e-12);
  check_close(ts::normal<float, Dev>(g1, Shape<1>{1001}, 0.5f, 2.0f), ts::normal<float>(g2, Shape<1>{1001}, 0.5f, 2.0f), 1e-6);
  CHECK(g1.offset() == g2.offset());
  check_close(tessera::nn::detail::dropout_mask<float, 2, Dev>(g1, Shape<2>{9, 13}, 0.3),
              tessera::nn::detail::dropout_mask<float, 2, cpu>(g2, Shape<2>{9, 13}, 0.3), 0);
}

TEST_CASE("gradients of a small network and of prod match the CPU's") {
  const auto x = random2(64, 20, 17), w1 = random2(20, 32, 18, -0.3f, 0.3f), w2 = random2(32, 10, 19, -0.3f, 0.3f);
  const auto b1 = Tensor<float, 1, cpu>(ts::zeros<float>(Shape<1>{32}) + 0.1f);
  auto loss = [](const auto& xx, const auto& a, const auto& bias, const auto& b) {
    const auto h = ts::relu(ts::matmul(xx, a) + bias);
    return -ts::mean(ts::log_softmax(ts::matmul(h, b), 1)) + 0.01f * ts::sum(ts::square(a));
  };
  const auto [g1c, gb1c, g2c] = [&] {
    auto [gx, ga, gb, gc] = ts::grad(loss, x, w1, b1, w2);
    (void)gx;
    return std::make_tuple(ga, gb, gc);
  }();
  auto [dgx, dg1, dgb1, dg2] = ts::grad(loss, to_dev(x), to_dev(w1), to_dev(b1), to_dev(w2));
  (void)dgx;
  check_close(dg1, g1c, 1e-4);
  check_close(dgb1, gb1c, 1e-4);
  check_close(dg2, g2c, 1e-4);

  Tensor<double, 2, cpu> p = {{1.5, 0.0, 2.0, -1.0}, {0.5, 3.0, 0.25, 2.0}};
  auto f = [](const auto& t) { return ts::sum(ts::prod(t, 1)); };
  check_close(std::get<0>(ts::grad(f, to_dev(p))), std::get<0>(ts::grad(f, p)), 1e-12);
}

TEST_CASE("an Adam step on device parameters matches the CPU's (one fused update kernel per parameter)") {
  ts::nn::Linear<float, cpu> host_layer(12, 5);
  ts::nn::Linear<float, Dev> device_layer(12, 5);
  device_layer.weight = to_dev(host_layer.weight);
  device_layer.bias = to_dev(host_layer.bias);
  ts::optim::Adam<float, cpu> host_opt({0.01});
  ts::optim::Adam<float, Dev> device_opt({0.01});
  const auto x = random2(16, 12, 20);
  const auto dx = to_dev(x);
  for (int step = 0; step < 3; ++step) {
    auto [hg] = ts::grad([&](const auto& m) { return ts::mean(ts::square(m(x))); }, host_layer);
    auto [dg] = ts::grad([&](const auto& m) { return ts::mean(ts::square(m(dx))); }, device_layer);
    host_opt.step(host_layer, hg);
    device_opt.step(device_layer, dg);
  }
  check_close(device_layer.weight, host_layer.weight, 1e-4);
  check_close(device_layer.bias, host_layer.bias, 1e-4);
}

TEST_CASE("cuDNN convolution, pooling and batch norm: forward and gradients match the CPU's") {
  const auto x = random2(2 * 3 * 9, 11, 21).reshape(Shape<4>{2, 3, 9, 11});
  const auto w = random2(4 * 3 * 3, 3, 22, -0.5f, 0.5f).reshape(Shape<4>{4, 3, 3, 3});
  const auto bias = Tensor<float, 1, cpu>(random2(1, 4, 23).reshape(Shape<1>{4}));
  const auto r = random2(2 * 4 * 5, 6, 24).reshape(Shape<4>{2, 4, 5, 6});  // weights the output
  const ts::Conv2dOptions opt{.stride = 2, .padding = 1};
  auto conv_loss = [&](const auto& rr) {
    return [&rr, opt](const auto& xx, const auto& ww, const auto& bb) { return ts::sum(ts::conv2d(xx, ww, bb, opt) * rr); };
  };
  check_close(Tensor<float, 4, Dev>(ts::conv2d(to_dev(x), to_dev(w), to_dev(bias), opt)),
              Tensor<float, 4, cpu>(ts::conv2d(x, w, bias, opt)), 1e-4);
  const auto dr = to_dev(r);
  auto [gx, gw, gb] = ts::grad(conv_loss(dr), to_dev(x), to_dev(w), to_dev(bias));
  auto [hx, hw, hb] = ts::grad(conv_loss(r), x, w, bias);
  check_close(gx, hx, 1e-4);
  check_close(gw, hw, 1e-4);
  check_close(gb, hb, 1e-4);
  // Grouped and dilated.
  const auto wg = random2(4 * 1 * 3, 3, 25).reshape(Shape<4>{4, 1, 3, 3});
  const auto x4 = random2(2 * 4 * 9, 11, 26).reshape(Shape<4>{2, 4, 9, 11});
  const ts::Conv2dOptions grouped{.stride = 1, .padding = 2, .dilation = 2, .groups = 4};
  check_close(Tensor<float, 4, Dev>(ts::conv2d(to_dev(x4), to_dev(wg), grouped)), Tensor<float, 4, cpu>(ts::conv2d(x4, wg, grouped)),
              1e-4);

  // A layer without bias: the bias gradient its node still produces is zeros, filled on the device.
  ts::manual_seed(7);
  tessera::nn::Conv2d<float, Dev> no_bias(3, 4, 3, {.bias = false});
  auto [layer_grads] = ts::grad([&](const auto& m) { return ts::sum(m(to_dev(x))); }, no_bias);
  check_close(layer_grads.bias, ts::zeros<float>({4}), 0);

  // Pooling (max and average, with padding) and its gradient.
  const auto y = random2(2 * 3 * 8, 10, 27).reshape(Shape<4>{2, 3, 8, 10});
  auto pool_loss = [](const auto& t) {
    return ts::sum(ts::square(ts::max_pool2d(t, 2))) + ts::sum(ts::avg_pool2d(t, 3, {.stride = 2, .padding = 1}));
  };
  check_close(Tensor<float, 4, Dev>(ts::max_pool2d(to_dev(y), 2)), Tensor<float, 4, cpu>(ts::max_pool2d(y, 2)));
  check_close(std::get<0>(ts::grad(pool_loss, to_dev(y))), std::get<0>(ts::grad(pool_loss, y)), 1e-5);

  // Batch norm in training mode: output, and gradients through the batch statistics.
  const auto gamma = Tensor<float, 1, cpu>(random2(1, 3, 28, 0.5f, 1.5f).reshape(Shape<1>{3}));
  const auto beta = Tensor<float, 1, cpu>(random2(1, 3, 29).reshape(Shape<1>{3}));
  auto bn_loss = [](const auto& weight) {
    return [&weight](const auto& t, const auto& g, const auto& b) { return ts::sum(ts::batch_norm(t, g, b) * weight); };
  };
  check_close(Tensor<float, 4, Dev>(ts::batch_norm(to_dev(y), to_dev(gamma), to_dev(beta))),
              Tensor<float, 4, cpu>(ts::batch_norm(y, gamma, beta)), 1e-4);
  const auto wy = random2(2 * 3 * 8, 10, 30).reshape(Shape<4>{2, 3, 8, 10});
  const auto dwy = to_dev(wy);
  auto [dy1, dg1, db1] = ts::grad(bn_loss(dwy), to_dev(y), to_dev(gamma), to_dev(beta));
  auto [hy1, hg1, hb1] = ts::grad(bn_loss(wy), y, gamma, beta);
  check_close(dy1, hy1, 1e-3);
  check_close(dg1, hg1, 1e-3);
  check_close(db1, hb1, 1e-3);
}

TEST_CASE("embedding lookups and their gradient; a bad index raises as on the CPU") {
  const auto table = random2(7, 5, 31);
  const Tensor<std::int64_t, 1, cpu> ids = {3, 0, 3, 6, 1};
  auto f = [](const auto& t, const auto& i) { return ts::sum(ts::square(ts::embedding(t, i))); };
  check_close(Tensor<float, 2, Dev>(ts::embedding(to_dev(table), to_dev(ids))), Tensor<float, 2, cpu>(ts::embedding(table, ids)));
  check_close(std::get<0>(ts::grad(f, to_dev(table), to_dev(ids))), std::get<0>(ts::grad(f, table, ids)), 1e-5);
  const Tensor<std::int64_t, 1, cpu> bad = {1, 9};
  CHECK_THROWS_AS((Tensor<float, 2, Dev>(ts::embedding(to_dev(table), to_dev(bad)))), tessera::index_error);
}

TEST_CASE("train::fit runs a small CNN on the device with batches copied from a host loader") {
  auto make = [](auto backend) {
    using B = decltype(backend);
    namespace nn = tessera::nn;
    ts::manual_seed(5);
    return nn::sequential(nn::Conv2d<float, B>(1, 4, 3, {.padding = 1}), nn::BatchNorm2d<float, B>(4), nn::ReLU{},
                          nn::MaxPool2d(2), nn::Flatten{}, nn::Linear<float, B>(4 * 4 * 4, 3));
  };
  ts::Generator gen(32);
  const auto images = ts::uniform<float>(gen, Shape<4>{48, 1, 8, 8});
  Tensor<std::int64_t, 1, cpu> labels(48);
  for (index_t i = 0; i < 48; ++i) labels(i) = i % 3;
  ts::data::TensorDataset data(images, labels);
  ts::data::DataLoader loader(data, {.batch_size = 16, .shuffle = false});
  auto loss = [](const auto& out, const auto& y) { return ts::nn::cross_entropy(out, y); };
  ts::train::FitOptions options;
  options.epochs = 2;
  options.verbose = 0;

  auto host_model = make(cpu{});
  ts::optim::Adam<float, cpu> host_opt({0.01});
  const auto host_history = ts::train::fit(host_model, host_opt, loss, loader, options);

  auto device_model = make(Dev{});
  ts::optim::Adam<float, Dev> device_opt({0.01});
  auto device_batches = ts::data::on_device<Dev>(loader);
  const auto device_history = ts::train::fit(device_model, device_opt, loss, device_batches, options);
  // Losses agree to float rounding; an accuracy may differ by a prediction whose two largest logits
  // are within that rounding: at most one of the 48 samples per epoch.
  const double one_prediction = 1.0 / 48.0;
  for (std::size_t e = 0; e < 2; ++e) {
    CHECK(device_history["loss"][e] == doctest::Approx(host_history["loss"][e]).epsilon(1e-3));
    CHECK(std::abs(device_history["accuracy"][e] - host_history["accuracy"][e]) <= one_prediction + 1e-12);
  }
  const auto eval = ts::train::evaluate(device_model, loss, device_batches);
  CHECK(eval.loss == doctest::Approx(ts::train::evaluate(host_model, loss, loader).loss).epsilon(1e-3));
  const auto predictions = ts::train::predict(device_model, device_batches);  // stacked on the host
  CHECK(predictions.shape() == Shape<2>{48, 3});
}

int main(int argc, char** argv) { return device_test::run(argc, argv, "test_cuda_device"); }
