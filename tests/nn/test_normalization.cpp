// BatchNorm1d/2d and LayerNorm: forward and running statistics against PyTorch, train/eval mode,
// gradients (against PyTorch and by finite differences in double), parameter/buffer names, errors.
#include <doctest/doctest.h>

#include <string_view>

#include <tessera/tessera.hpp>

#include "autodiff/grad_test_support.hpp"
#include "nn/module_names.hpp"
#include "nn/fixture_support.hpp"

using namespace tessera;
using nn_test::buffer_names;
using nn_test::parameter_names;
namespace fx = torch_fixtures;

namespace {
nn::BatchNorm2d<double> fixture_bn2d() {
  nn::BatchNorm2d<double> bn(3, {.momentum = 0.2});
  bn.weight.assign(fixture::d1(fx::bn2d_weight));
  bn.bias.assign(fixture::d1(fx::bn2d_bias));
  return bn;
}
}  // namespace

TEST_CASE("BatchNorm2d in training matches PyTorch: output and running statistics over two steps") {
  auto bn = fixture_bn2d();
  const Tensor<double, 4> y1 = bn(fixture::d4(fx::bn2d_x1));
  CHECK_TENSOR_NEAR(y1, fixture::d4(fx::bn2d_y1), 1e-12);
  CHECK_TENSOR_NEAR(bn.running_mean, fixture::d1(fx::bn2d_running_mean1), 1e-12);
  CHECK_TENSOR_NEAR(bn.running_var, fixture::d1(fx::bn2d_running_var1), 1e-12);
  const Tensor<double, 4> y2 = bn(fixture::d4(fx::bn2d_x2));
  CHECK_TENSOR_NEAR(y2, fixture::d4(fx::bn2d_y2), 1e-12);
  CHECK_TENSOR_NEAR(bn.running_mean, fixture::d1(fx::bn2d_running_mean2), 1e-12);
  CHECK_TENSOR_NEAR(bn.running_var, fixture::d1(fx::bn2d_running_var2), 1e-12);
  CHECK(bn.num_batches_tracked() == 2);
  CHECK(parameter_names(bn) == std::vector<std::string>{"weight", "bias"});
  CHECK(buffer_names(bn) == std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"});

  SUBCASE("evaluation uses the running statistics and leaves them alone") {
    const Tensor<double, 1> before = bn.running_mean.clone();
    bn.eval();
    const Tensor<double, 4> ye = bn(fixture::d4(fx::bn2d_x1));
    CHECK_TENSOR_NEAR(ye, fixture::d4(fx::bn2d_eval_y), 1e-12);
    CHECK_TENSOR_NEAR(bn.running_mean, before, 0.0);
    CHECK(bn.num_batches_tracked() == 2);
  }
}

TEST_CASE("BatchNorm2d gradients in training match PyTorch, and one sweep updates the statistics once") {
  auto bn = fixture_bn2d();
  const Tensor<double, 4> warmup = bn(fixture::d4(fx::bn2d_x1));  // PyTorch's second step
  (void)warmup;
  const auto x = fixture::d4(fx::bn2d_x2);
  const auto r = fixture::d4(fx::bn2d_r);
  auto [value, grads] = value_and_grad([&](const auto& in, const auto& m) { return sum(m(in) * r); }, x, bn);
  CHECK(std::isfinite(value()));
  CHECK_TENSOR_NEAR(std::get<0>(grads), fixture::d4(fx::bn2d_dx2), 1e-12);
  CHECK_TENSOR_NEAR(std::get<1>(grads).weight, fixture::d1(fx::bn2d_dweight2), 1e-12);
  CHECK_TENSOR_NEAR(std::get<1>(grads).bias, fixture::d1(fx::bn2d_dbias2), 1e-12);
  CHECK_TENSOR_NEAR(bn.running_mean, fixture::d1(fx::bn2d_running_mean2), 1e-12);
  CHECK(bn.num_batches_tracked() == 2);
}

TEST_CASE("batch norm gradients by finite differences: training, evaluation, ranks 2 to 4, inside a model") {
  Generator gen(11);
  const auto x4 = normal<double>(gen, {3, 2, 2, 3});
  const auto w4 = normal<double>(gen, {3, 2, 2, 3});
  nn::BatchNorm2d<double> bn2(2);
  bn2.weight.assign(normal<double>(gen, {2}));
  bn2.bias.assign(normal<double>(gen, {2}));
  // A non-linear function of the output, so the centring terms of the backward matter.
  GRAD_CHECK([&](const auto& in, const auto& m) { return sum(square(m(in)) * w4); }, x4, bn2, grad_test::tight());
  bn2.eval();
  bn2.running_var.assign(uniform<double>(gen, {2}, 0.5, 2.0));
  GRAD_CHECK([&](const auto& in, const auto& m) { return sum(sin(m(in)) * w4); }, x4, bn2, grad_test::tight());

  nn::BatchNorm1d<double> bn1(3);
  const auto x2 = normal<double>(gen, {5, 3});
  const auto x3 = normal<double>(gen, {2, 3, 4});
  GRAD_CHECK([&](const auto& in) { return sum(exp(bn1(in) * 0.3) * in); }, x2, grad_test::tight());
  GRAD_CHECK([&](const auto& in) { return sum(tanh(bn1(in)) * in); }, x3, grad_test::tight());

  // Linear -> BatchNorm1d -> ReLU -> Linear, differentiated with respect to every parameter.
  auto model = nn::sequential(nn::Linear<double>(4, 6, {.bias = true, .generator = &gen}), nn::BatchNorm1d<double>(6),
                              nn::Tanh{}, nn::Linear<double>(6, 2, {.bias = true, .generator = &gen}));
  const auto xm = normal<double>(gen, {8, 4});
  GRAD_CHECK([&](const auto& m) { return sum(square(m(xm))); }, model, grad_test::tight());
}

TEST_CASE("a second derivative through an evaluation-mode batch norm, whose backward is built before its value") {
  // f(a) = sum(square(bn(a))) with bn(a) = (a - mean) * s + beta per channel (s = gamma / sqrt(var
  // + eps)): its Hessian is 2 s^2 on the diagonal, so a Hessian-vector product is 2 s_c^2 v. A
  // nested grad builds the inner backward on the unevaluated batch norm; relu(batch_norm) (one
  // node) as well, where the product is 2 s_c^2 v wherever the output is positive.
  Generator gen(3);
  const auto x = normal<double>(gen, {3, 2, 2, 3});
  const auto v = normal<double>(gen, {3, 2, 2, 3});
  const Tensor<double, 1> gamma{1.5, -0.7}, beta{0.1, 0.2};
  const RunningStats<double> running{Tensor<double, 1>{0.3, -0.2}, Tensor<double, 1>{1.2, 0.8}, {}};
  BatchNormOptions options;
  options.training = false;
  auto check = [&](auto relu_tag) {
    constexpr bool with_relu = decltype(relu_tag)::value;
    CAPTURE(with_relu);
    auto f = [&](const auto& a) {
      if constexpr (with_relu) {
        return sum(square(relu(batch_norm(a, gamma, beta, running, options)) + 0.0));
      } else {
        return sum(square(batch_norm(a, gamma, beta, running, options) + 0.0));
      }
    };
    const auto [hv] = grad(
        [&](const auto& a) {
          const auto [g] = grad(f, a);
          return sum(g * v);
        },
        x);
    double worst = 0;
    for (index_t i = 0; i < x.size(); ++i) {
      const index_t c = i / 6 % 2;
      const double s = gamma.data()[c] / std::sqrt(running.var.data()[c] + options.eps);
      const double y = (x.data()[i] - running.mean.data()[c]) * s + beta.data()[c];
      const double want = with_relu && y <= 0 ? 0.0 : 2 * s * s * v.data()[i];
      worst = std::max(worst, std::abs(hv.data()[i] - want));
    }
    CHECK(worst < 1e-12);
  };
  check(std::false_type{});
  check(std::true_type{});
}

TEST_CASE("relu(batch_norm(...)) is one node: the same values, gradients and running statistics as unfused") {
  Generator gen(12);
  const auto x = normal<double>(gen, {4, 3, 5, 6});
  const auto r = normal<double>(gen, {4, 3, 5, 6});
  nn::BatchNorm2d<double> fused_bn(3), plain_bn(3);
  for (auto* bn : {&fused_bn, &plain_bn}) {
    bn->weight.assign(Tensor<double, 1>{1.5, -0.5, 2.0});
    bn->bias.assign(Tensor<double, 1>{0.1, 0.2, -0.3});
  }
  static_assert(decltype(relu(fused_bn(x)))::name == std::string_view("batch_norm_relu"));
  // `+ 0.0` keeps the batch norm out of relu's reach: the unfused expression.
  auto [v_fused, g_fused] = value_and_grad([&](const auto& in, const auto& m) { return sum(relu(m(in)) * r); }, x, fused_bn);
  auto [v_plain, g_plain] =
      value_and_grad([&](const auto& in, const auto& m) { return sum(relu(m(in) + 0.0) * r); }, x, plain_bn);
  CHECK(v_fused() == v_plain());
  CHECK_TENSOR_EQ(std::get<0>(g_fused), std::get<0>(g_plain));
  CHECK_TENSOR_EQ(std::get<1>(g_fused).weight, std::get<1>(g_plain).weight);
  CHECK_TENSOR_EQ(std::get<1>(g_fused).bias, std::get<1>(g_plain).bias);
  CHECK_TENSOR_EQ(fused_bn.running_mean, plain_bn.running_mean);  // updated once, like the unfused node
  CHECK(fused_bn.num_batches_tracked() == 1);
  fused_bn.eval();
  plain_bn.eval();
  CHECK_TENSOR_EQ(eval(relu(fused_bn(x))), eval(relu(plain_bn(x) + 0.0)));
  CHECK(eval(min(relu(fused_bn(x)))).item() == 0.0);
}

TEST_CASE("in evaluation a batch norm after a convolution folds into it outside a sweep; inside one nothing changes") {
  Generator gen(13);
  const auto x = normal<double>(gen, {2, 4, 7, 6});
  const auto r = normal<double>(gen, {2, 6, 7, 6});
  for (const bool bias : {false, true}) {
    for (const index_t groups : {1, 2}) {
      CAPTURE(bias);
      CAPTURE(groups);
      nn::Conv2d<double> conv(4, 6, 3, {.padding = 1, .groups = groups, .bias = bias, .generator = &gen});
      nn::BatchNorm2d<double> bn(6);
      bn.weight.assign(normal<double>(gen, {6}));
      bn.bias.assign(normal<double>(gen, {6}));
      bn.running_mean.assign(normal<double>(gen, {6}));
      bn.running_var.assign(uniform<double>(gen, {6}, 0.5, 2.0));
      bn.eval();
      const Tensor<double, 4> c = conv(x);  // a batch norm of a tensor: never folded
      for (const bool with_relu : {false, true}) {
        CAPTURE(with_relu);
        const Tensor<double, 4> want = with_relu ? Tensor<double, 4>(relu(bn(c))) : Tensor<double, 4>(bn(c));
        const Tensor<double, 4> got = with_relu ? Tensor<double, 4>(relu(bn(conv(x)))) : Tensor<double, 4>(bn(conv(x)));
        const double diff = eval(max(abs(got - want))).item();
        CHECK(diff < 1e-12);
        CHECK(diff > 0);  // folded: the weights were scaled, so some element rounds differently
      }
      // Inside a sweep the convolution's output is computed (the backward reads it): the value and
      // the gradients of the unfolded expression (`+ 0.0` keeps the node from being a convolution).
      auto [v, g] = value_and_grad([&](const auto& in, const auto& cv, const auto& b) { return sum(relu(b(cv(in))) * r); }, x,
                                   conv, bn);
      auto [v0, g0] =
          value_and_grad([&](const auto& in, const auto& cv, const auto& b) { return sum(relu(b(cv(in) + 0.0)) * r); }, x, conv, bn);
      CHECK(v() == v0());
      CHECK_TENSOR_NEAR(std::get<0>(g), std::get<0>(g0), 1e-12);
      CHECK_TENSOR_NEAR(std::get<1>(g).weight, std::get<1>(g0).weight, 1e-12);
      CHECK_TENSOR_NEAR(std::get<2>(g).weight, std::get<2>(g0).weight, 1e-12);
    }
  }
}

TEST_CASE("a batch norm folded into a convolution on the CPU's direct path: plain, with relu, pooled, 1 to 3 threads") {
  // 16 -> 32 channels at 14x14 (144 products per output) takes the direct path, which applies the
  // batch norm's scale while it packs the weights: at a batch of one each thread packs its own
  // blocks. Against the unfolded batch norm of the stored convolution (rounding apart), and the
  // fused relu and pooling against those applied to the folded output (bit for bit).
  Generator gen(14);
  nn::Conv2d<float> conv(16, 32, 3, {.padding = 1, .bias = false, .generator = &gen});
  nn::BatchNorm2d<float> bn(32);
  bn.weight.assign(normal<float>(gen, {32}));
  bn.bias.assign(normal<float>(gen, {32}));
  bn.running_mean.assign(normal<float>(gen, {32}));
  bn.running_var.assign(uniform<float>(gen, {32}, 0.5f, 2.0f));
  bn.eval();
  for (const index_t batch : {1, 4}) {
    const auto x = normal<float>(gen, {batch, 16, 14, 14});
    const Tensor<float, 4> c = conv(x);
    const Tensor<float, 4> want = bn(c);
    for (const int threads : {1, 2, 3}) {
      CAPTURE(batch);
      CAPTURE(threads);
      cpu::set_num_threads(threads);
      const Tensor<float, 4> got = bn(conv(x));
      CHECK(eval(max(abs(got - want))).item() < 1e-4f * std::max(1.0f, eval(max(abs(want))).item()));
      const Tensor<float, 4> got_relu = relu(bn(conv(x)));
      const Tensor<float, 4> relu_of_got = relu(got);
      CHECK_TENSOR_EQ(got_relu, relu_of_got);
      const Tensor<float, 4> got_pooled = max_pool2d(relu(bn(conv(x))), 2);
      const Tensor<float, 4> pooled_of_got = max_pool2d(relu_of_got, 2);
      CHECK_TENSOR_EQ(got_pooled, pooled_of_got);
    }
  }
  cpu::set_num_threads(0);
}

TEST_CASE("BatchNorm1d matches PyTorch on [N, C] and [N, C, L]") {
  nn::BatchNorm1d<double> bn(4);
  const Tensor<double, 2> y = bn(fixture::d2(fx::bn1d_x));
  CHECK_TENSOR_NEAR(y, fixture::d2(fx::bn1d_y), 1e-12);
  CHECK_TENSOR_NEAR(bn.running_var, fixture::d1(fx::bn1d_running_var), 1e-12);
  nn::BatchNorm1d<double> bn3(2);
  const Tensor<double, 3> y3 = bn3(fixture::d3(fx::bn1d3_x));
  CHECK_TENSOR_NEAR(y3, fixture::d3(fx::bn1d3_y), 1e-12);
}

TEST_CASE("BatchNorm options: no affine parameters, no running statistics") {
  nn::BatchNorm2d<double> plain(2, {.affine = false});
  CHECK(parameter_names(plain).empty());
  CHECK(nn::parameter_count(plain) == 0);
  nn::BatchNorm2d<double> untracked(2, {.track_running_stats = false});
  CHECK(buffer_names(untracked).empty());
  Generator gen(3);
  const auto x = normal<double>(gen, {4, 2, 3, 3});
  untracked.eval();  // without running statistics, evaluation normalizes by the batch
  const Tensor<double, 4> y = untracked(x);
  const Tensor<double, 1> m = mean(y, {0, 2, 3});
  CHECK(Tensor<double, 0>(max(abs(m)))() < 1e-12);
}

TEST_CASE("BatchNorm errors: wrong channel count, one value per channel in training, bad options") {
  nn::BatchNorm2d<float> bn(3);
  CHECK_THROWS_AS(bn(zeros<float>({2, 4, 3, 3})), shape_error);
  const auto single_sample = [] { return nn::BatchNorm1d<float>(3)(zeros<float>({1, 3})); };
  CHECK_THROWS_WITH_AS(single_sample(), doctest::Contains("more than one value per channel"), value_error);
  CHECK_THROWS_AS(nn::BatchNorm2d<float>(0), value_error);
  CHECK_THROWS_AS(nn::BatchNorm2d<float>(3, {.eps = 0}), value_error);
  CHECK_THROWS_AS(nn::BatchNorm2d<float>(3, {.momentum = 1.5}), value_error);
}

TEST_CASE("LayerNorm matches PyTorch over the last axis and the last two axes") {
  const auto x = fixture::d3(fx::ln_x);
  nn::LayerNorm<double> ln1(4);
  ln1.weight.assign(fixture::d1(fx::ln1_weight));
  ln1.bias.assign(fixture::d1(fx::ln1_bias));
  const Tensor<double, 3> y1 = ln1(x);
  CHECK_TENSOR_NEAR(y1, fixture::d3(fx::ln1_y), 1e-12);

  nn::LayerNorm<double, 2> ln2(Shape<2>{3, 4}, {.eps = 1e-3});
  ln2.weight.assign(fixture::d2(fx::ln2_weight));
  ln2.bias.assign(fixture::d2(fx::ln2_bias));
  const Tensor<double, 3> y2 = ln2(x);
  CHECK_TENSOR_NEAR(y2, fixture::d3(fx::ln2_y), 1e-12);
  CHECK(parameter_names(ln2) == std::vector<std::string>{"weight", "bias"});
  CHECK(nn::parameter_count(ln2) == 24);

  GRAD_CHECK([&](const auto& in, const auto& m) { return sum(square(m(in)) * in); }, x, ln1, grad_test::tight());
  GRAD_CHECK([&](const auto& in, const auto& m) { return sum(sin(m(in)) * in); }, x, ln2, grad_test::tight());
  CHECK_THROWS_AS(ln1(zeros<double>({2, 5})), shape_error);
  CHECK_THROWS_AS(nn::LayerNorm<double>(0), value_error);
}
