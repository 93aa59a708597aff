// conv2d and pooling: forward against PyTorch (stride, padding, dilation, groups), gradients by
// finite differences, the layers, pooling in a convolution's epilogue at inference, and a small
// CNN that overfits 64 random images.
#include <doctest/doctest.h>

#include <cstring>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"
#include "nn/fixture_support.hpp"

using namespace tessera;
namespace fx = torch_fixtures;

namespace {
Tensor<double, 4> bias4(const fx::Array& b) { return fixture::d1(b).reshape({1, index_t(b.values.size()), 1, 1}); }
}  // namespace

TEST_CASE("conv2d matches PyTorch for stride, padding, dilation and groups") {
  const auto x = fixture::d4(fx::conv_x);
  const Tensor<double, 4> basic = conv2d(x, fixture::d4(fx::conv_basic_w)) + bias4(fx::conv_basic_b);
  CHECK_TENSOR_NEAR(basic, fixture::d4(fx::conv_basic_y), 1e-13);
  const Tensor<double, 4> strided =
      conv2d(x, fixture::d4(fx::conv_pad_stride_w), {.stride = 2, .padding = 1}) + bias4(fx::conv_pad_stride_b);
  CHECK_TENSOR_NEAR(strided, fixture::d4(fx::conv_pad_stride_y), 1e-13);
  const Tensor<double, 4> dilated =
      conv2d(x, fixture::d4(fx::conv_dilated_w), {.stride = 1, .padding = 2, .dilation = 2}) + bias4(fx::conv_dilated_b);
  CHECK_TENSOR_NEAR(dilated, fixture::d4(fx::conv_dilated_y), 1e-13);
  const Tensor<double, 4> grouped =
      conv2d(x, fixture::d4(fx::conv_groups_w), {.stride = {1, 2}, .padding = {1, 0}, .dilation = 1, .groups = 2}) +
      bias4(fx::conv_groups_b);
  CHECK_TENSOR_NEAR(grouped, fixture::d4(fx::conv_groups_y), 1e-13);
}

TEST_CASE("pooling matches PyTorch") {
  const auto x = fixture::d4(fx::conv_x);
  CHECK_TENSOR_EQ(eval(max_pool2d(x, 2)), fixture::d4(fx::pool_max_2));
  CHECK_TENSOR_EQ(eval(max_pool2d(x, 3, {.stride = 2, .padding = 1})), fixture::d4(fx::pool_max_3_s2_p1));
  CHECK_TENSOR_NEAR(eval(avg_pool2d(x, 2)), fixture::d4(fx::pool_avg_2), 1e-15);
  CHECK_TENSOR_NEAR(eval(avg_pool2d(x, 3, {.stride = 2, .padding = 1})), fixture::d4(fx::pool_avg_3_s2_p1), 1e-15);
}

TEST_CASE("conv2d: input and weight gradients check against finite differences") {
  Generator gen(4);
  const auto x = normal<double>(gen, {2, 4, 6, 5});
  const auto w = normal<double>(gen, {6, 2, 3, 2});
  const auto r = normal<double>(gen, {2, 6, 3, 4});  // random cotangent for the grouped, strided case
  GRAD_CHECK([](const auto& a, const auto& b) { return sum(square(conv2d(a, b, {.padding = 1, .groups = 2}))); }, x, w,
             grad_test::tight());
  GRAD_CHECK([&](const auto& a, const auto& b) {
    return sum(conv2d(a, b, {.stride = 2, .padding = {1, 2}, .dilation = {1, 2}, .groups = 2}) * r);
  }, x, w, grad_test::tight());
}

TEST_CASE("conv2d with a bias: added inside the convolution, gradients for all three inputs") {
  Generator gen(5);
  const auto x = normal<double>(gen, {2, 4, 6, 5});
  const auto w = normal<double>(gen, {6, 2, 3, 2});
  const auto b = normal<double>(gen, {6});
  const Tensor<double, 4> fused = conv2d(x, w, b, {.padding = 1, .groups = 2});
  const Tensor<double, 4> separate = conv2d(x, w, {.padding = 1, .groups = 2}) + reshape(b, Shape<4>{1, 6, 1, 1});
  CHECK_TENSOR_NEAR(fused, separate, 1e-14);
  GRAD_CHECK([](const auto& a, const auto& k, const auto& c) { return sum(square(conv2d(a, k, c, {.padding = 1, .groups = 2}))); },
             x, w, b, grad_test::tight());
  CHECK_THROWS_WITH_AS(conv2d(x, w, normal<double>(gen, {5})), doctest::Contains("one value per output channel"), shape_error);
}

TEST_CASE("relu(conv2d(...)) is one node: the same values and gradients as relu over the convolution") {
  Generator gen(6);
  const auto x = normal<double>(gen, {3, 4, 10, 9});  // 90 positions: the CPU's tiled path
  const auto w = normal<double>(gen, {6, 2, 3, 3});
  const auto b = normal<double>(gen, {6});
  const Conv2dOptions o{.padding = 1, .groups = 2};
  auto fused = relu(conv2d(x, w, b, o));
  static_assert(std::is_same_v<decltype(fused), Conv2d<Tensor<double, 4>, Tensor<double, 4>, Tensor<double, 1>, true>>);
  static_assert(std::is_same_v<decltype(relu(fused)), decltype(fused)>);  // relu twice is relu
  CHECK(std::string(decltype(fused)::name) == "conv2d_relu");
  // `+ 0.0` keeps the convolution out of relu's reach: the unfused expression.
  const Tensor<double, 4> want = relu(conv2d(x, w, b, o) + 0.0);
  CHECK_TENSOR_EQ(eval(fused), want);
  CHECK(eval(min(fused)).item() == 0.0);

  const auto r = normal<double>(gen, {3, 6, 10, 9});
  auto loss_fused = [&](const auto& a, const auto& k, const auto& c) { return sum(relu(conv2d(a, k, c, o)) * r); };
  auto loss_plain = [&](const auto& a, const auto& k, const auto& c) { return sum(relu(conv2d(a, k, c, o) + 0.0) * r); };
  const auto [dx, dw, db] = grad(loss_fused, x, w, b);
  const auto [dx0, dw0, db0] = grad(loss_plain, x, w, b);
  CHECK_TENSOR_EQ(dx, dx0);
  CHECK_TENSOR_EQ(dw, dw0);
  CHECK_TENSOR_EQ(db, db0);
  GRAD_CHECK([&](const auto& a, const auto& k) { return sum(square(relu(conv2d(a, k, {.padding = 1})))); },
             normal<double>(gen, {1, 2, 5, 4}), normal<double>(gen, {3, 2, 3, 3}), grad_test::tight());
}

TEST_CASE("pooling: gradients check against finite differences") {
  Generator gen(5);
  const auto x = normal<double>(gen, {2, 3, 7, 6});  // distinct values: no ties inside a window
  GRAD_CHECK([](const auto& a) { return sum(square(max_pool2d(a, 2))); }, x, grad_test::tight());
  GRAD_CHECK([](const auto& a) { return sum(square(max_pool2d(a, 3, {.stride = 2, .padding = 1}))); }, x, grad_test::tight());
  GRAD_CHECK([](const auto& a) { return sum(square(avg_pool2d(a, 3, {.stride = 2, .padding = 1}))); }, x, grad_test::tight());
  GRAD_CHECK([](const auto& a) { return sum(square(nn::GlobalAvgPool2d{}(a))); }, x, grad_test::tight());
}

TEST_CASE("conv2d and pooling reject bad shapes and options with clear messages") {
  const Tensor<float, 4> x(Shape<4>{1, 3, 5, 5});
  const Tensor<float, 4> w(Shape<4>{4, 2, 3, 3});
  CHECK_THROWS_WITH_AS(conv2d(x, w), "conv2d: input [1, 3, 5, 5], weight [4, 2, 3, 3]: the weight expects 2 input channels, the input has 3",
                       shape_error);
  const Tensor<float, 4> big(Shape<4>{4, 3, 7, 7});
  CHECK_THROWS_WITH_AS(conv2d(x, big),
                       "conv2d: window of 7 (kernel 7, dilation 1) does not fit an input of 5 with padding 0", shape_error);
  CHECK_THROWS_AS(conv2d(x, Tensor<float, 4>(Shape<4>{4, 1, 3, 3}), {.groups = 2}), shape_error);
  CHECK_THROWS_AS(conv2d(x, Tensor<float, 4>(Shape<4>{4, 3, 3, 3}), {.stride = 0}), value_error);
  CHECK_THROWS_AS(max_pool2d(x, 2, {.stride = std::nullopt, .padding = 2}), value_error);
  CHECK_THROWS_AS(nn::Conv2d<>(3, 4, 3, {.groups = 2}), value_error);
}

TEST_CASE("Conv2d layer: PyTorch's initialization bound, parameters, forward with bias") {
  Generator gen(6);
  nn::Conv2d<double> conv(4, 6, 3, {.padding = 1, .generator = &gen});
  CHECK(conv.weight.shape() == Shape<4>{6, 4, 3, 3});
  const double bound = 1.0 / 6.0;  // 1 / sqrt(4 * 3 * 3)
  CHECK(Tensor<double, 0>(max(abs(conv.weight)))() <= bound);
  CHECK(nn::parameter_count(conv) == 6 * 4 * 9 + 6);
  const auto x = normal<double>(gen, {2, 4, 5, 5});
  const Tensor<double, 4> y = conv(x);
  const Tensor<double, 4> expected = conv2d(x, conv.weight, {.padding = 1}) + conv.bias.reshape({1, 6, 1, 1});
  CHECK_TENSOR_NEAR(y, expected, 1e-15);
  GRAD_CHECK([&](const auto& m) { return sum(square(m(x))); }, conv, grad_test::tight());

  // Without bias: no bias parameter, the output is the bare convolution, the weight's gradient checks.
  nn::Conv2d<double> plain(4, 6, 3, {.padding = 1, .bias = false, .generator = &gen});
  CHECK(nn::parameter_count(plain) == 6 * 4 * 9);
  const Tensor<double, 4> bare = conv2d(x, plain.weight, {.padding = 1});
  CHECK_TENSOR_EQ(eval(plain(x)), bare);
  GRAD_CHECK([&](const auto& m) { return sum(square(m(x))); }, plain, grad_test::tight());
}

TEST_CASE("a small CNN overfits 64 random 28x28 images to 100% training accuracy") {
  Generator gen(7);
  auto model = nn::sequential(nn::Conv2d<float>(1, 8, 3, {.padding = 1, .generator = &gen}), nn::ReLU{}, nn::MaxPool2d(2),
                              nn::Conv2d<float>(8, 16, 3, {.padding = 1, .generator = &gen}), nn::ReLU{}, nn::MaxPool2d(2),
                              nn::Flatten{}, nn::Linear<float>(16 * 7 * 7, 10, {.bias = true, .generator = &gen}));
  const auto images = uniform<float>(gen, {64, 1, 28, 28});
  Tensor<std::int64_t, 1> labels(Shape<1>{64});
  for (index_t i = 0; i < 64; ++i) labels(i) = i % 10;
  optim::Adam<float> opt({.lr = 3e-3});
  auto loss = [&](const auto& m) { return nn::cross_entropy(m(images), labels); };
  float last = 0;
  for (int step = 0; step < 80; ++step) {
    auto [l, g] = value_and_grad(loss, model);
    last = l();
    opt.step(model, std::get<0>(g));
  }
  const Tensor<std::int64_t, 1> predicted = argmax(model(images), 1);
  index_t correct = 0;
  for (index_t i = 0; i < 64; ++i) correct += predicted(i) == labels(i);
  MESSAGE("loss after 80 Adam steps " << last << ", training accuracy " << correct << "/64");
  CHECK(correct == 64);
}

TEST_CASE("in evaluation a pooling after a convolution runs in its epilogue: the values of pooling the stored output") {
  // relu(conv2d + bias) and relu(batch_norm(conv2d)) (folded into the convolution), pooled: outside
  // a sweep the pooling asks the convolution to write its output pooled (evaluate_pooled); the
  // result equals pooling the stored output bit for bit. In training, or inside a sweep (whose
  // backward reads the convolution's output), the node declines and nothing changes.
  Generator gen(21);
  const auto x = normal<float>(gen, {6, 4, 10, 9});
  nn::Conv2d<float> conv(4, 12, 3, {.padding = 1, .generator = &gen});
  nn::BatchNorm2d<float> bn(12);
  bn.weight.assign(normal<float>(gen, {12}));
  bn.bias.assign(normal<float>(gen, {12}));
  bn.running_mean.assign(normal<float>(gen, {12}));
  bn.running_var.assign(uniform<float>(gen, {12}, 0.5, 2.0));
  bn.eval();
  const auto plain = relu(conv(x));
  const auto folded = relu(bn(conv(x)));
  static_assert(detail::has_pooled_evaluation<std::decay_t<decltype(plain)>>::value);
  static_assert(detail::has_pooled_evaluation<std::decay_t<decltype(folded)>>::value);
  const Tensor<float, 4> plain_stored = plain, folded_stored = folded;
  auto same = [](const Tensor<float, 4>& a, const Tensor<float, 4>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(float) * std::size_t(a.size())) == 0;
  };
  CHECK(same(Tensor<float, 4>(max_pool2d(plain, 2)), Tensor<float, 4>(max_pool2d(plain_stored, 2))));
  CHECK(same(Tensor<float, 4>(max_pool2d(folded, 2)), Tensor<float, 4>(max_pool2d(folded_stored, 2))));
  CHECK(same(Tensor<float, 4>(max_pool2d(folded, 3, {.stride = 2, .padding = 1})),
             Tensor<float, 4>(max_pool2d(folded_stored, 3, {.stride = 2, .padding = 1}))));
  CHECK(same(Tensor<float, 4>(avg_pool2d(folded, 2)), Tensor<float, 4>(avg_pool2d(folded_stored, 2))));

  // The node writes the pooled value itself, and declines in training.
  const PoolEpilogue two{true, 2, 2, detail::pool_geometry(2, 2, {})};
  auto out = Tensor<float, 4>::uninitialized(Shape<4>{6, 12, 5, 4});
  CHECK(folded.evaluate_pooled(out, two));
  CHECK(same(out, Tensor<float, 4>(max_pool2d(folded_stored, 2))));
  bn.train();
  CHECK_FALSE(relu(bn(conv(x))).evaluate_pooled(out, two));
  bn.eval();

  // Inside a sweep: the values and gradients of the expression that pools a stored output.
  const auto r = normal<float>(gen, {6, 12, 5, 4});
  auto [v, g] = value_and_grad(
      [&](const auto& in, const auto& cv, const auto& b) { return sum(max_pool2d(relu(b(cv(in))), 2) * r); }, x, conv,
      bn);
  auto [v0, g0] = value_and_grad(
      [&](const auto& in, const auto& cv, const auto& b) { return sum(max_pool2d(relu(b(cv(in) + 0.0f)), 2) * r); }, x,
      conv, bn);
  CHECK(v() == doctest::Approx(v0()).epsilon(1e-6));
  CHECK_TENSOR_NEAR(std::get<0>(g), std::get<0>(g0), 1e-6);
  CHECK_TENSOR_NEAR(std::get<1>(g).weight, std::get<1>(g0).weight, 1e-6);
}
