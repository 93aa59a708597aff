// The CPU convolution and pooling kernels (backend/cpu/conv.hpp, conv_direct.hpp, pool.hpp) called directly, against
// naive loops in double: every path (direct at stride 1, tiled with GEMM, tiled with few taps,
// pointwise, several tiles per image, batched for small images, Winograd) in float and double, with stride, padding,
// dilation, groups and a bias and the relu epilogue; 2x2 max pooling's fast path against the general rule (ties, NaN,
// odd sizes); and the pooling epilogue (conv2d_pool_forward) against the convolution followed by the pooling.
#include <doctest/doctest.h>
#include <tessera/tessera.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using tessera::Conv2dGeometry;
using tessera::cpu;
using tessera::index_t;
using tessera::Shape;
using tessera::Tensor;

template <class T, std::size_t R>
Tensor<T, R> random_tensor(const Shape<R>& shape, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1, 1);
  auto t = Tensor<T, R>::uninitialized(shape);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(dist(rng));
  return t;
}

/// Output tensors start out as garbage, so a kernel that leaves an element unwritten fails.
template <class T, std::size_t R>
Tensor<T, R> garbage(const Shape<R>& shape) {
  auto t = Tensor<T, R>::uninitialized(shape);
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = T(1e6);
  return t;
}

struct Case {
  std::string name;
  index_t N, C, H, W, O, kh, kw;
  Conv2dGeometry g;
};

Conv2dGeometry geometry(index_t stride_h, index_t stride_w, index_t pad_h, index_t pad_w, index_t dil_h, index_t dil_w,
                        index_t groups) {
  Conv2dGeometry g;
  g.stride_h = stride_h, g.stride_w = stride_w, g.pad_h = pad_h, g.pad_w = pad_w;
  g.dilation_h = dil_h, g.dilation_w = dil_w, g.groups = groups;
  return g;
}

/// The input position a tap reads for an output position, or -1 outside the input.
index_t input_index(const Case& c, index_t oh, index_t ow, index_t i, index_t j) {
  const index_t ih = oh * c.g.stride_h - c.g.pad_h + i * c.g.dilation_h;
  const index_t iw = ow * c.g.stride_w - c.g.pad_w + j * c.g.dilation_w;
  return ih < 0 || ih >= c.H || iw < 0 || iw >= c.W ? -1 : ih * c.W + iw;
}

template <class T>
void check_case(const Case& c, double tolerance) {
  CAPTURE(c.name);
  const index_t Cg = c.C / c.g.groups, Og = c.O / c.g.groups;
  const index_t Ho = Conv2dGeometry::out_extent(c.H, c.kh, c.g.stride_h, c.g.pad_h, c.g.dilation_h, "test");
  const index_t Wo = Conv2dGeometry::out_extent(c.W, c.kw, c.g.stride_w, c.g.pad_w, c.g.dilation_w, "test");
  const auto x = random_tensor<T>(Shape<4>{c.N, c.C, c.H, c.W}, 1);
  const auto w = random_tensor<T>(Shape<4>{c.O, Cg, c.kh, c.kw}, 2);
  const auto bias = random_tensor<T>(Shape<1>{c.O}, 3);
  const auto dy = random_tensor<T>(Shape<4>{c.N, c.O, Ho, Wo}, 4);

  // The three passes in double, straight from the definition.
  std::vector<double> y_ref(std::size_t(c.N * c.O * Ho * Wo)), dx_ref(std::size_t(x.size())), dw_ref(std::size_t(w.size()));
  for (index_t n = 0; n < c.N; ++n)
    for (index_t o = 0; o < c.O; ++o)
      for (index_t oh = 0; oh < Ho; ++oh)
        for (index_t ow = 0; ow < Wo; ++ow) {
          const index_t out = ((n * c.O + o) * Ho + oh) * Wo + ow;
          double acc = double(bias.data()[o]);
          for (index_t ci = 0; ci < Cg; ++ci)
            for (index_t i = 0; i < c.kh; ++i)
              for (index_t j = 0; j < c.kw; ++j) {
                const index_t at = input_index(c, oh, ow, i, j);
                if (at < 0) continue;
                const index_t xi = (n * c.C + o / Og * Cg + ci) * c.H * c.W + at, wi = ((o * Cg + ci) * c.kh + i) * c.kw + j;
                acc += double(x.data()[xi]) * double(w.data()[wi]);
                dx_ref[std::size_t(xi)] += double(w.data()[wi]) * double(dy.data()[out]);
                dw_ref[std::size_t(wi)] += double(x.data()[xi]) * double(dy.data()[out]);
              }
          y_ref[std::size_t(out)] = acc;
        }

  auto y = garbage<T>(Shape<4>{c.N, c.O, Ho, Wo});
  auto dx = garbage<T>(x.shape());
  auto dw = garbage<T>(w.shape());
  tessera::conv2d_forward(cpu{}, x, w, y, c.g, bias.data());
  tessera::conv2d_backward_data(cpu{}, w, dy, dx, c.g);
  tessera::conv2d_backward_filter(cpu{}, x, dy, dw, c.g);
  auto check = [&](const char* what, const Tensor<T, 4>& got, const std::vector<double>& want) {
    const std::string pass = what;
    CAPTURE(pass);
    double worst = 0, scale = 1;
    for (double v : want) scale = std::max(scale, std::abs(v));
    for (index_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(double(got.data()[i]) - want[std::size_t(i)]));
    CHECK(worst <= tolerance * scale);
  };
  check("forward", y, y_ref);
  // The relu epilogue: exactly max(y, 0) of the same products.
  auto y_relu = garbage<T>(y.shape());
  tessera::conv2d_forward(cpu{}, x, w, y_relu, c.g, bias.data(), true);
  bool relu_exact = true;
  for (index_t i = 0; i < y.size(); ++i) relu_exact = relu_exact && y_relu.data()[i] == (y.data()[i] > T(0) ? y.data()[i] : T(0));
  CHECK(relu_exact);
  // A weight_scale (a batch norm folded in) gives what a scaled copy of the weights gives, bit for
  // bit: on the direct path the products w * scale are made while the weights are packed.
  const auto scale = random_tensor<T>(Shape<1>{c.O}, 5);
  auto w_scaled = garbage<T>(w.shape());
  for (index_t i = 0; i < w.size(); ++i) w_scaled.data()[i] = w.data()[i] * scale.data()[i / (w.size() / c.O)];
  auto y_scaled = garbage<T>(y.shape()), y_scale = garbage<T>(y.shape());
  tessera::conv2d_forward(cpu{}, x, w_scaled, y_scaled, c.g, bias.data(), true);
  tessera::conv2d_forward(cpu{}, x, w, y_scale, c.g, bias.data(), true, scale.data());
  CHECK(std::memcmp(y_scaled.data(), y_scale.data(), sizeof(T) * std::size_t(y.size())) == 0);
  check("data gradient", dx, dx_ref);
  check("filter gradient", dw, dw_ref);
}

std::vector<Case> cases() {
  const auto plain = geometry(1, 1, 1, 1, 1, 1, 1);
  return {
      {"first layer: one channel, 28x28 (tiled, few taps)", 5, 1, 28, 28, 6, 3, 3, plain},
      {"first layer, 13 outputs, 27x27 (few taps: rows in blocks of 8, 4 and 1; a column tail)", 2, 1, 27, 27, 13, 3, 3,
       plain},
      {"3x3, 14x14 (direct)", 3, 8, 14, 14, 16, 3, 3, plain},
      {"1x1, 12 channels (pointwise, few taps)", 3, 12, 9, 9, 10, 1, 1, geometry(1, 1, 0, 0, 1, 1, 1)},
      {"1x1, 24 channels, 2 groups (pointwise, GEMM)", 3, 24, 9, 9, 10, 1, 1, geometry(1, 1, 0, 0, 1, 1, 2)},
      {"1x1, 16 channels (few taps at the boundary)", 2, 16, 8, 8, 5, 1, 1, geometry(1, 1, 0, 0, 1, 1, 1)},
      {"1x1, 17 channels (GEMM at the boundary)", 2, 17, 8, 8, 5, 1, 1, geometry(1, 1, 0, 0, 1, 1, 1)},
      {"strided, dilated, 3 groups, odd sizes (tiled)", 2, 6, 20, 17, 9, 3, 2, geometry(2, 1, 1, 2, 2, 1, 3)},
      {"1x1 with stride 2 (tiled, not pointwise)", 2, 5, 16, 16, 4, 1, 1, geometry(2, 2, 0, 0, 1, 1, 1)},
      {"3x3 with stride 2 (tiled, GEMM)", 2, 16, 20, 20, 8, 3, 3, geometry(2, 2, 1, 1, 1, 1, 1)},
      {"several tiles per image (tiled, GEMM)", 2, 64, 24, 80, 8, 3, 3, geometry(2, 2, 1, 1, 1, 1, 1)},
      {"several tiles per image (direct)", 2, 64, 12, 40, 8, 3, 3, plain},
      {"several tiles, batch of one (direct)", 1, 64, 12, 40, 8, 3, 3, plain},
      {"batch of one, 40 output channels, too few products to share (direct, one task)", 1, 16, 3, 3, 40, 3, 3, plain},
      {"batch of one, small input: runs of blocks shared out, one uneven (direct)", 1, 16, 14, 14, 36, 3, 3, plain},
      {"batch of one, 2 groups, small input: blocks shared out (direct)", 1, 16, 12, 12, 36, 3, 3,
       geometry(1, 1, 1, 1, 1, 1, 2)},
      {"batch of one, 2 groups, small input: blocks shared out, each packed by transposes (direct)", 1, 16, 12, 12, 32,
       3, 3, geometry(1, 1, 1, 1, 1, 1, 2)},
      {"no padding (direct)", 2, 20, 11, 13, 9, 3, 3, geometry(1, 1, 0, 0, 1, 1, 1)},
      {"5x5, output channels not a multiple of the kernel's rows, taps in runs (direct)", 4, 5, 30, 30, 13, 5, 5,
       geometry(1, 1, 2, 2, 1, 1, 1)},
      {"3x5, unequal padding (direct)", 4, 4, 30, 30, 6, 3, 5, geometry(1, 1, 1, 2, 1, 1, 1)},
      {"17 images in 16 runs (direct filter gradient)", 17, 6, 32, 32, 5, 3, 3, plain},
      {"images too small for the direct filter gradient (direct, tiled)", 5, 8, 14, 14, 16, 3, 3, plain},
      {"dilated, 2 groups (direct)", 4, 12, 30, 29, 12, 3, 3, geometry(1, 1, 2, 2, 2, 2, 2)},
      {"padding wider than the kernel (direct forward, tiled data gradient)", 2, 4, 6, 7, 5, 3, 3,
       geometry(1, 1, 3, 3, 1, 1, 1)},
      {"200 channels: the sums continue over runs of channels (direct)", 1, 200, 9, 30, 10, 3, 3, plain},
      {"batch of one, large input, unequal padding: each plane padded in one pass (direct)", 1, 32, 20, 30, 8, 5, 3,
       geometry(1, 1, 2, 1, 1, 1, 1)},
      {"batch of one, large input, no padding (direct)", 1, 40, 20, 24, 8, 3, 3, geometry(1, 1, 0, 0, 1, 1, 1)},
      {"6 input channels: 54 products, not a multiple of the kernel's rows (direct)", 2, 6, 14, 14, 16, 3, 3, plain},
      {"batch of one, one tile (direct; batched filter gradient)", 1, 8, 10, 10, 4, 3, 3, plain},
      {"small images (direct; batched filter gradient)", 4, 3, 6, 6, 5, 3, 3, plain},
      {"small images, strided groups (batched)", 3, 4, 7, 6, 6, 3, 2, geometry(2, 1, 1, 0, 1, 2, 2)},
      {"Winograd: odd output extents, output channels not a multiple of the kernel's rows", 4, 32, 23, 21, 40, 3, 3,
       plain},
      {"Winograd: no padding (the data gradient's padding is 2)", 3, 48, 30, 26, 32, 3, 3,
       geometry(1, 1, 0, 0, 1, 1, 1)},
      {"Winograd: unequal padding of 2 and 1, an odd output width", 2, 32, 20, 33, 64, 3, 3,
       geometry(1, 1, 2, 1, 1, 1, 1)},
      {"Winograd: batch of one, rows of tiles split between units", 1, 64, 34, 30, 64, 3, 3, plain},
      {"Winograd: 16 -> 20 channels at 14x14 (tiles of rows from several images in a unit)", 64, 16, 14, 14, 20, 3, 3,
       plain},
      {"Winograd: 29 columns (one piece of 15 tiles per row, the last tile's second column past the edge)", 4, 16, 29,
       29, 40, 3, 3, plain},
      {"Winograd: 1x1 images, padding 2, 128 channels (a 3x3 output; the data gradient's one tile)", 16, 128, 1, 1, 128,
       3, 3, geometry(1, 1, 2, 2, 1, 1, 1)},
  };
}

}  // namespace

TEST_CASE_TEMPLATE("conv2d's three passes match the definition on every path", T, float, double) {
  const double tolerance = std::is_same_v<T, float> ? 2e-5 : 1e-12;
  for (const auto& c : cases()) {
    if (c.N > 1) {
      check_case<T>(c, tolerance);
      continue;
    }
    // A batch of one is split differently by thread count (by blocks of output channels, each task
    // packing its own weights): whatever the machine's core count, one thread and several.
    for (const int threads : {1, 2, 3}) {
      CAPTURE(threads);
      tessera::cpu::set_num_threads(threads);
      check_case<T>(c, tolerance);
    }
    tessera::cpu::set_num_threads(0);
  }
}

TEST_CASE("the Winograd cases take the Winograd path, and the rule leaves few channels or little work to the others") {
  index_t winograd = 0;
  for (const auto& c : cases()) {
    CAPTURE(c.name);
    const index_t Ho = Conv2dGeometry::out_extent(c.H, c.kh, c.g.stride_h, c.g.pad_h, c.g.dilation_h, "test");
    const index_t Wo = Conv2dGeometry::out_extent(c.W, c.kw, c.g.stride_w, c.g.pad_w, c.g.dilation_w, "test");
    const auto d = tessera::detail::conv_dims(Shape<4>{c.N, c.C, c.H, c.W}, Shape<4>{c.O, c.C / c.g.groups, c.kh, c.kw},
                                              c.g, Ho, Wo);
    const bool named = c.name.rfind("Winograd", 0) == 0;
    CHECK(tessera::detail::winograd_conv_forward(d, c.g) == named);
    CHECK(tessera::detail::winograd_conv_backward_data(d, c.g) == named);
    CHECK(tessera::detail::winograd_conv_backward_filter(d, c.g) == (named && c.N >= 4));
    winograd += named ? 1 : 0;
  }
  CHECK(winograd == 7);
  const auto plain = geometry(1, 1, 1, 1, 1, 1, 1);
  auto takes = [](index_t N, index_t C, index_t H, index_t O, const Conv2dGeometry& g) {
    const index_t Ho = Conv2dGeometry::out_extent(H, 3, g.stride_h, g.pad_h, g.dilation_h, "test");
    return tessera::detail::winograd_conv_forward(
        tessera::detail::conv_dims(Shape<4>{N, C, H, H}, Shape<4>{O, C / g.groups, 3, 3}, g, Ho, Ho), g);
  };
  CHECK(takes(1, 64, 56, 64, plain));                                // the serving benchmark's convolution
  CHECK(takes(64, 16, 14, 32, plain));                               // the main job's second layer
  CHECK_FALSE(takes(64, 8, 28, 16, plain));                          // 8 input channels
  CHECK_FALSE(takes(64, 16, 28, 8, plain));                          // 8 output channels
  CHECK_FALSE(takes(1, 64, 14, 64, plain));                          // 7M multiply-adds
  CHECK_FALSE(takes(1, 256, 28, 256, plain));                        // 256 channels
  CHECK_FALSE(takes(8, 64, 56, 64, geometry(2, 2, 1, 1, 1, 1, 1)));  // stride 2
  CHECK_FALSE(takes(8, 64, 56, 64, geometry(1, 1, 1, 1, 2, 2, 1)));  // dilation 2
  CHECK_FALSE(takes(8, 64, 56, 64, geometry(1, 1, 1, 1, 1, 1, 2)));  // 2 groups
  CHECK_FALSE(takes(8, 64, 56, 64, geometry(1, 1, 3, 3, 1, 1, 1)));  // padding 3
}

TEST_CASE("conv2d's paths give the same results at 1 and 2 threads") {
  for (const auto& c : cases()) {
    CAPTURE(c.name);
    const index_t Ho = Conv2dGeometry::out_extent(c.H, c.kh, c.g.stride_h, c.g.pad_h, c.g.dilation_h, "test");
    const index_t Wo = Conv2dGeometry::out_extent(c.W, c.kw, c.g.stride_w, c.g.pad_w, c.g.dilation_w, "test");
    const auto x = random_tensor<float>(Shape<4>{c.N, c.C, c.H, c.W}, 5);
    const auto w = random_tensor<float>(Shape<4>{c.O, c.C / c.g.groups, c.kh, c.kw}, 6);
    const auto dy = random_tensor<float>(Shape<4>{c.N, c.O, Ho, Wo}, 7);
    std::vector<std::vector<float>> runs;
    for (int threads : {1, 2, 3}) {
      tessera::cpu::set_num_threads(threads);
      auto y = garbage<float>(dy.shape());
      auto dx = garbage<float>(x.shape());
      auto dw = garbage<float>(w.shape());
      tessera::conv2d_forward(cpu{}, x, w, y, c.g);
      tessera::conv2d_backward_data(cpu{}, w, dy, dx, c.g);
      tessera::conv2d_backward_filter(cpu{}, x, dy, dw, c.g);
      std::vector<float> all(y.data(), y.data() + y.size());
      all.insert(all.end(), dx.data(), dx.data() + dx.size());
      all.insert(all.end(), dw.data(), dw.data() + dw.size());
      runs.push_back(all);
    }
    tessera::cpu::set_num_threads(0);
    CHECK(runs[0] == runs[1]);
    CHECK(runs[0] == runs[2]);
  }
}

TEST_CASE("the relu epilogue maps NaN to +0, as relu does, on every path") {
  const auto plain = geometry(1, 1, 1, 1, 1, 1, 1);
  const std::vector<Case> paths = {
      {"direct", 2, 8, 14, 14, 16, 3, 3, plain},
      {"tiled, few taps", 2, 1, 14, 14, 6, 3, 3, plain},
      {"tiled, GEMM", 2, 16, 20, 20, 8, 3, 3, geometry(2, 2, 1, 1, 1, 1, 1)},
      {"batched", 4, 3, 6, 6, 5, 3, 3, geometry(2, 2, 1, 1, 1, 1, 1)},
      {"Winograd", 2, 32, 26, 26, 48, 3, 3, plain},
  };
  for (const auto& c : paths) {
    CAPTURE(c.name);
    const index_t Ho = Conv2dGeometry::out_extent(c.H, c.kh, c.g.stride_h, c.g.pad_h, c.g.dilation_h, "test");
    const index_t Wo = Conv2dGeometry::out_extent(c.W, c.kw, c.g.stride_w, c.g.pad_w, c.g.dilation_w, "test");
    auto x = random_tensor<float>(Shape<4>{c.N, c.C, c.H, c.W}, 8);
    x.data()[c.H * c.W / 2] = std::numeric_limits<float>::quiet_NaN();  // image 0, channel 0
    const auto w = random_tensor<float>(Shape<4>{c.O, c.C / c.g.groups, c.kh, c.kw}, 9);
    auto y = garbage<float>(Shape<4>{c.N, c.O, Ho, Wo});
    auto y_relu = garbage<float>(y.shape());
    tessera::conv2d_forward(cpu{}, x, w, y, c.g);
    tessera::conv2d_forward(cpu{}, x, w, y_relu, c.g, static_cast<const float*>(nullptr), true);
    index_t nans = 0, mismatches = 0;
    for (index_t i = 0; i < y.size(); ++i) {
      nans += std::isnan(y.data()[i]) ? 1 : 0;
      const float want = y.data()[i] > 0.0f ? y.data()[i] : 0.0f;
      mismatches += std::memcmp(&want, &y_relu.data()[i], sizeof(float)) != 0 ? 1 : 0;
    }
    CHECK(nans > 0);
    CHECK(mismatches == 0);
  }
}

TEST_CASE("2x2 max pooling's fast path: first maximum, NaN propagates, odd sizes, every element written") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const index_t H = 7, W = 9, Ho = 3, Wo = 4;
  auto x = random_tensor<double>(Shape<4>{2, 3, H, W}, 8);
  // Ties (the first maximum gets the gradient) and NaN (it wins over numbers, the first NaN wins).
  for (index_t k : {index_t(0), index_t(1), W, W + 1}) x.data()[k] = 0.5;        // window (0, 0): four equal values
  x.data()[2] = nan;                                           // window (0, 1): NaN first...
  x.data()[W + 3] = nan;                                       // ...and NaN last
  x.data()[2 * W + 5] = 2.0, x.data()[3 * W + 4] = nan;        // window (1, 2): NaN after the max
  Conv2dGeometry g;
  g.stride_h = g.stride_w = 2;
  const auto dy = random_tensor<double>(Shape<4>{2, 3, Ho, Wo}, 9);
  auto y = garbage<double>(dy.shape());
  auto dx = garbage<double>(x.shape());
  tessera::pool2d_forward(cpu{}, std::true_type{}, x, y, 2, 2, g);
  tessera::pool2d_backward(cpu{}, std::true_type{}, x, dy, dx, 2, 2, g);
  std::vector<double> want_dx(std::size_t(x.size()), 0.0);
  for (index_t p = 0; p < 6; ++p)
    for (index_t oh = 0; oh < Ho; ++oh)
      for (index_t ow = 0; ow < Wo; ++ow) {
        index_t best = -1;
        double m = 0;
        for (index_t i = 0; i < 2; ++i)
          for (index_t j = 0; j < 2; ++j) {
            const index_t at = p * H * W + (2 * oh + i) * W + 2 * ow + j;
            const double v = x.data()[at];
            if (best < 0 || v > m || (std::isnan(v) && !std::isnan(m))) best = at, m = v;
          }
        const double got = y.data()[(p * Ho + oh) * Wo + ow];
        CHECK((std::isnan(m) ? std::isnan(got) : got == m));
        want_dx[std::size_t(best)] += dy.data()[(p * Ho + oh) * Wo + ow];
      }
  CHECK(std::isnan(y.data()[1]));
  CHECK(dx.data()[0] == dy.data()[0]);  // the first of four equal values
  CHECK(dx.data()[1] == 0.0);
  CHECK(dx.data()[2] == dy.data()[1]);  // the first NaN
  for (index_t i = 0; i < x.size(); ++i) {
    CAPTURE(i);
    CHECK(dx.data()[i] == want_dx[std::size_t(i)]);
  }
}

TEST_CASE("2x2 max pooling in float: the vector paths give the scalar rule's values and gradients, bit for bit") {
  // 37 windows a row: two 16-wide bodies (AVX-512), 8-wide ones (AVX2; test_backend_cpu_conv_avx2
  // builds this file without AVX-512) and a scalar tail. An odd last column and row are in no window.
  const index_t H = 7, W = 75, Ho = 3, Wo = 37;
  auto x = random_tensor<float>(Shape<4>{2, 2, H, W}, 12);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::mt19937 rng(13);
  for (index_t i = 0; i < x.size(); ++i) {
    switch (rng() % 8) {  // ties of 0 and -0 (the first keeps its sign), NaN anywhere in a window
      case 0: x.data()[i] = 0.0f; break;
      case 1: x.data()[i] = -0.0f; break;
      case 2: x.data()[i] = nan; break;
      default: break;
    }
  }
  Conv2dGeometry g;
  g.stride_h = g.stride_w = 2;
  auto y = garbage<float>(Shape<4>{2, 2, Ho, Wo});
  const auto dy = random_tensor<float>(y.shape(), 14);
  auto dx = garbage<float>(x.shape());
  tessera::pool2d_forward(cpu{}, std::true_type{}, x, y, 2, 2, g);
  tessera::pool2d_backward(cpu{}, std::true_type{}, x, dy, dx, 2, 2, g);
  std::vector<float> want_dx(std::size_t(x.size()), 0.0f);  // 0 outside the windows too
  index_t nans = 0, negative_zeros = 0;
  for (index_t p = 0; p < 4; ++p)
    for (index_t oh = 0; oh < Ho; ++oh)
      for (index_t ow = 0; ow < Wo; ++ow) {
        float m = 0;
        index_t best = -1;
        for (index_t i = 0; i < 2; ++i)
          for (index_t j = 0; j < 2; ++j) {
            const index_t at = p * H * W + (2 * oh + i) * W + 2 * ow + j;
            const float v = x.data()[at];
            if (best < 0 || v > m || (std::isnan(v) && !std::isnan(m))) m = v, best = at;
          }
        const float got = y.data()[(p * Ho + oh) * Wo + ow];
        CAPTURE(p);
        CAPTURE(oh);
        CAPTURE(ow);
        CHECK(std::memcmp(&got, &m, sizeof m) == 0);
        want_dx[std::size_t(best)] = dy.data()[(p * Ho + oh) * Wo + ow];
        nans += std::isnan(m);
        negative_zeros += m == 0.0f && std::signbit(m);
      }
  CHECK(nans > 20);  // the cases above occur
  CHECK(negative_zeros > 5);
  index_t wrong = 0;
  for (index_t i = 0; i < x.size(); ++i) wrong += std::memcmp(&dx.data()[i], &want_dx[std::size_t(i)], sizeof(float)) != 0;
  CHECK(wrong == 0);
}

TEST_CASE("conv2d_pool_forward equals conv2d_forward then pool2d_forward, bit for bit, on every path") {
  // The pooling epilogue (inference): per image into scratch on the direct and tiled paths, after
  // the whole output for a batch of one and on the batched path. A NaN in the input reaches the
  // output without relu (pooled in order: the first maximum, NaN propagating) and becomes +0 with
  // it (the faster unordered pooling of a relu's output must agree).
  const auto plain = geometry(1, 1, 1, 1, 1, 1, 1);
  const std::vector<Case> paths = {
      {"direct, many images", 6, 8, 14, 14, 16, 3, 3, plain},
      {"direct, batch of one", 1, 8, 14, 14, 16, 3, 3, plain},
      {"direct, 2 groups, output channels not a multiple of the kernel's rows", 5, 12, 13, 11, 10, 3, 3,
       geometry(1, 1, 1, 1, 1, 1, 2)},
      {"direct, 200 channels in runs", 4, 200, 9, 10, 9, 3, 3, plain},
      {"direct, batch of one, small input: blocks shared out", 1, 16, 14, 14, 36, 3, 3, plain},
      {"few taps, many images (plain: tiled; pooled: direct)", 6, 1, 28, 28, 6, 3, 3, plain},
      {"few taps, batch of one (plain: tiled; pooled: direct)", 1, 1, 28, 28, 6, 3, 3, plain},
      {"tiled, GEMM, strided", 5, 16, 20, 20, 8, 3, 3, geometry(2, 2, 1, 1, 1, 1, 1)},
      {"batched (small images)", 5, 3, 6, 6, 5, 3, 3, geometry(2, 2, 1, 1, 1, 1, 1)},
      {"Winograd (max 2x2: pooled as the tiles are written; else after)", 2, 32, 26, 26, 48, 3, 3, plain},
      {"Winograd, odd output extents (the last row and column of tiles make no whole 2x2 window)", 8, 32, 15, 13, 48, 3,
       3, plain},
      {"Winograd, 16 -> 32 channels at 14x14 (the main job's second layer)", 64, 16, 14, 14, 32, 3, 3, plain},
  };
  struct Pool {
    const char* name;
    bool max;
    index_t k;
    Conv2dGeometry g;
  };
  const std::vector<Pool> pools = {{"max 2x2", true, 2, geometry(2, 2, 0, 0, 1, 1, 1)},
                                   {"max 3x3, stride 2, padding 1", true, 3, geometry(2, 2, 1, 1, 1, 1, 1)},
                                   {"average 2x2", false, 2, geometry(2, 2, 0, 0, 1, 1, 1)},
                                   {"average 3x3, stride 1", false, 3, geometry(1, 1, 0, 0, 1, 1, 1)}};
  for (const auto& c : paths) {
    const index_t Ho = Conv2dGeometry::out_extent(c.H, c.kh, c.g.stride_h, c.g.pad_h, c.g.dilation_h, "test");
    const index_t Wo = Conv2dGeometry::out_extent(c.W, c.kw, c.g.stride_w, c.g.pad_w, c.g.dilation_w, "test");
    auto x = random_tensor<float>(Shape<4>{c.N, c.C, c.H, c.W}, 15);
    x.data()[c.H * c.W / 2 + 1] = std::numeric_limits<float>::quiet_NaN();  // image 0, channel 0
    // And at row 2, column 2: on the Winograd path, the last of the four outputs of tile (0, 0) only
    // (the last element of a window must win for being NaN).
    x.data()[2 * c.W + 2] = std::numeric_limits<float>::quiet_NaN();
    const auto w = random_tensor<float>(Shape<4>{c.O, c.C / c.g.groups, c.kh, c.kw}, 16);
    const auto bias = random_tensor<float>(Shape<1>{c.O}, 17);
    const auto scale = random_tensor<float>(Shape<1>{c.O}, 18);
    auto w_scaled = garbage<float>(w.shape());
    for (index_t i = 0; i < w.size(); ++i) w_scaled.data()[i] = w.data()[i] * scale.data()[i / (w.size() / c.O)];
    for (const auto& pool : pools) {
      const index_t Hq = Conv2dGeometry::out_extent(Ho, pool.k, pool.g.stride_h, pool.g.pad_h, 1, "test");
      const index_t Wq = Conv2dGeometry::out_extent(Wo, pool.k, pool.g.stride_w, pool.g.pad_w, 1, "test");
      for (bool relu : {false, true}) {
        for (bool with_bias : {false, true}) {
          for (int threads : {1, 2, 3}) {
            CAPTURE(c.name);
            CAPTURE(pool.name);
            CAPTURE(relu);
            CAPTURE(with_bias);
            CAPTURE(threads);
            tessera::cpu::set_num_threads(threads);
            const float* b = with_bias ? bias.data() : nullptr;
            auto conv = garbage<float>(Shape<4>{c.N, c.O, Ho, Wo});
            auto want = garbage<float>(Shape<4>{c.N, c.O, Hq, Wq});
            tessera::conv2d_forward(cpu{}, x, w, conv, c.g, b, relu);
            if (pool.max) {
              tessera::pool2d_forward(cpu{}, std::true_type{}, conv, want, pool.k, pool.k, pool.g);
            } else {
              tessera::pool2d_forward(cpu{}, std::false_type{}, conv, want, pool.k, pool.k, pool.g);
            }
            auto got = garbage<float>(want.shape());
            tessera::conv2d_pool_forward(cpu{}, x, w, got, conv.shape(), c.g, b, relu,
                                         tessera::PoolEpilogue{pool.max, pool.k, pool.k, pool.g});
            // With a weight_scale: what the scaled copy of the weights gives (see check_case).
            auto got_scale = garbage<float>(want.shape()), want_scale = garbage<float>(want.shape());
            tessera::conv2d_pool_forward(cpu{}, x, w, got_scale, conv.shape(), c.g, b, relu,
                                         tessera::PoolEpilogue{pool.max, pool.k, pool.k, pool.g}, scale.data());
            tessera::conv2d_pool_forward(cpu{}, x, w_scaled, want_scale, conv.shape(), c.g, b, relu,
                                         tessera::PoolEpilogue{pool.max, pool.k, pool.k, pool.g});
            CHECK(std::memcmp(got_scale.data(), want_scale.data(), sizeof(float) * std::size_t(want.size())) == 0);
            index_t mismatches = 0, nans = 0;
            for (index_t i = 0; i < want.size(); ++i) {
              mismatches += std::memcmp(&want.data()[i], &got.data()[i], sizeof(float)) != 0 ? 1 : 0;
              nans += std::isnan(got.data()[i]) ? 1 : 0;
            }
            CHECK(mismatches == 0);
            CHECK((nans > 0) == !relu);  // the NaN is pooled (a window that reads it) unless relu maps it to +0
            // The Winograd cases' max 2x2 pooling takes the fused path (the tiles are its windows).
            const auto d = tessera::detail::conv_dims(x.shape(), w.shape(), c.g, Ho, Wo);
            const bool fused =
                tessera::detail::winograd_conv_forward(d, c.g) &&
                tessera::detail::winograd_pools(tessera::detail::PooledOutput<float>{
                    tessera::PoolEpilogue{pool.max, pool.k, pool.k, pool.g}, got.data(), Ho, Wo, Hq, Wq, relu});
            CHECK(fused == (c.name.rfind("Winograd", 0) == 0 && pool.max && pool.k == 2));
          }
        }
      }
    }
  }
  tessera::cpu::set_num_threads(0);
}

TEST_CASE("max pooling of a relu's output: the unordered 2x2 plane equals the ordered rows") {
  // Planes of +0, positive values, +infinity and ties; rows of 37 windows (16- and 8-wide bodies,
  // a tail) and of 7 (one masked step), 2 * Wo + 3 elements apart.
  for (const index_t Wo : {index_t(37), index_t(7)}) {
    CAPTURE(Wo);
    const index_t Ho = 3, row_stride = 2 * Wo + 3;
    std::vector<float> in(std::size_t(2 * Ho * row_stride)), ordered(std::size_t(Ho * Wo)), unordered(ordered.size());
    std::mt19937 rng(18);
    std::uniform_real_distribution<float> dist(0, 1);
    for (auto& v : in) {
      switch (rng() % 6) {
        case 0:
          v = 0.0f;
          break;
        case 1:
          v = 0.5f;
          break;
        case 2:
          v = std::numeric_limits<float>::infinity();
          break;
        default:
          v = dist(rng);
          break;
      }
    }
    for (index_t oh = 0; oh < Ho; ++oh) {
      const float* r0 = in.data() + 2 * oh * row_stride;
      tessera::detail::max_pool_2x2_row(r0, r0 + row_stride, ordered.data() + oh * Wo, Wo);
    }
    tessera::detail::max_pool_2x2_plane_unordered(in.data(), row_stride, unordered.data(), Ho, Wo);
    CHECK(std::memcmp(ordered.data(), unordered.data(), sizeof(float) * ordered.size()) == 0);
  }
}
