// Every public op of tessera, once: for_each_op(visit) calls
//   visit(name, op, reference, options, inputs...)
// where `op` is a generic callable over tensors (or expressions), `reference` computes the same
// result from double host tensors with plain loops or a closed form per element (tests/op_harness.hpp),
// and the inputs are seeded double tensors (integer ones, embedding ids, are constants).
// tests/expr/test_ops.cpp checks each against its reference and finite differences;
// tests/cuda/test_cuda_device.cu checks each on the GPU against the CPU.
// A new op gets one entry here.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "op_harness.hpp"

namespace op_harness {

namespace ts = tessera;

/// The inputs the entries share: a matrix, a column and a row for broadcasting, positive values
/// for the ops defined there, an image batch and convolution weights.
struct Inputs {
  Tensor<double, 2> x = input(Shape<2>{4, 5}, -2.0, 2.0, 1);
  Tensor<double, 2> y = input(Shape<2>{4, 5}, -2.0, 2.0, 2);
  Tensor<double, 2> column = input(Shape<2>{4, 1}, -1.0, 1.0, 3);
  Tensor<double, 1> row = input(Shape<1>{5}, -1.0, 1.0, 4);
  Tensor<double, 2> positive = input(Shape<2>{4, 5}, 0.2, 3.0, 5);
  Tensor<double, 3> cube = input(Shape<3>{2, 3, 4}, -2.0, 2.0, 6);
  Tensor<double, 2> w = input(Shape<2>{5, 3}, -1.0, 1.0, 7);
  Tensor<double, 3> batch_w = input(Shape<3>{2, 4, 3}, -1.0, 1.0, 8);
  Tensor<double, 4> image = input(Shape<4>{2, 3, 6, 7}, -1.0, 1.0, 9);
  Tensor<double, 4> kernel = input(Shape<4>{4, 3, 3, 3}, -0.5, 0.5, 10);
  Tensor<double, 1> channels3 = input(Shape<1>{3}, 0.5, 1.5, 11);
  Tensor<double, 1> shift3 = input(Shape<1>{3}, -0.5, 0.5, 12);
  Tensor<double, 1> bias4 = input(Shape<1>{4}, -0.5, 0.5, 13);
  Tensor<double, 2> table = input(Shape<2>{6, 5}, -1.0, 1.0, 14);
  Tensor<std::int64_t, 2> ids = {{0, 3, 1}, {4, 4, 2}};
};

// ---- references -----------------------------------------------------------------------------

inline double gelu_ref(double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }
inline double sigmoid_ref(double v) { return 1 / (1 + std::exp(-v)); }
inline double softplus_ref(double v) { return v > 30 ? v : std::log1p(std::exp(v)); }

/// Row-major matrix product of [m, k] and [k, n].
inline Tensor<double, 2> matmul_ref(const Tensor<double, 2>& a, const Tensor<double, 2>& b) {
  const index_t m = a.shape()[0], k = a.shape()[1], n = b.shape()[1];
  Tensor<double, 2> out(Shape<2>{m, n});
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      double s = 0;
      for (index_t q = 0; q < k; ++q) s += at(a, {i, q}) * at(b, {q, j});
      out(i, j) = s;
    }
  return out;
}

/// softmax (or log_softmax) along the last axis of a matrix.
inline Tensor<double, 2> softmax_ref(const Tensor<double, 2>& x, bool log) {
  Tensor<double, 2> out(x.shape());
  for (index_t i = 0; i < x.shape()[0]; ++i) {
    double m = -INFINITY, s = 0;
    for (index_t j = 0; j < x.shape()[1]; ++j) m = std::max(m, at(x, {i, j}));
    for (index_t j = 0; j < x.shape()[1]; ++j) s += std::exp(at(x, {i, j}) - m);
    for (index_t j = 0; j < x.shape()[1]; ++j) {
      const double v = at(x, {i, j}) - m;
      out(i, j) = log ? v - std::log(s) : std::exp(v) / s;
    }
  }
  return out;
}

/// Cross-correlation, NCHW, with stride and padding (groups 1), plus a bias per output channel.
inline Tensor<double, 4> conv2d_ref(const Tensor<double, 4>& x, const Tensor<double, 4>& w, const Tensor<double, 1>& b,
                                    index_t stride, index_t pad) {
  const index_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  const index_t O = w.shape()[0], kh = w.shape()[2], kw = w.shape()[3];
  const index_t Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
  Tensor<double, 4> out(Shape<4>{N, O, Ho, Wo});
  for (index_t n = 0; n < N; ++n)
    for (index_t o = 0; o < O; ++o)
      for (index_t i = 0; i < Ho; ++i)
        for (index_t j = 0; j < Wo; ++j) {
          double s = at(b, {o});
          for (index_t c = 0; c < C; ++c)
            for (index_t p = 0; p < kh; ++p)
              for (index_t q = 0; q < kw; ++q) {
                const index_t h = i * stride - pad + p, ww = j * stride - pad + q;
                if (h >= 0 && h < H && ww >= 0 && ww < W) s += at(x, {n, c, h, ww}) * at(w, {o, c, p, q});
              }
          out(n, o, i, j) = s;
        }
  return out;
}

/// Max or average pooling, NCHW, square kernel k, stride s, padding p (average counts padding).
inline Tensor<double, 4> pool_ref(const Tensor<double, 4>& x, index_t k, index_t s, index_t p, bool max) {
  const index_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  const index_t Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
  Tensor<double, 4> out(Shape<4>{N, C, Ho, Wo});
  for (index_t n = 0; n < N; ++n)
    for (index_t c = 0; c < C; ++c)
      for (index_t i = 0; i < Ho; ++i)
        for (index_t j = 0; j < Wo; ++j) {
          double acc = max ? -INFINITY : 0;
          for (index_t a = 0; a < k; ++a)
            for (index_t b = 0; b < k; ++b) {
              const index_t h = i * s - p + a, w = j * s - p + b;
              if (h < 0 || h >= H || w < 0 || w >= W) continue;
              acc = max ? std::max(acc, at(x, {n, c, h, w})) : acc + at(x, {n, c, h, w});
            }
          out(n, c, i, j) = max ? acc : acc / double(k * k);
        }
  return out;
}

/// Batch normalization in training mode over N, H, W (biased batch variance, eps 1e-5).
inline Tensor<double, 4> batch_norm_ref(const Tensor<double, 4>& x, const Tensor<double, 1>& g, const Tensor<double, 1>& b) {
  const index_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], W = x.shape()[3];
  Tensor<double, 4> out(x.shape());
  for (index_t c = 0; c < C; ++c) {
    double mean = 0, var = 0;
    const double count = double(N * H * W);
    for (index_t n = 0; n < N; ++n)
      for (index_t h = 0; h < H; ++h)
        for (index_t w = 0; w < W; ++w) mean += at(x, {n, c, h, w}) / count;
    for (index_t n = 0; n < N; ++n)
      for (index_t h = 0; h < H; ++h)
        for (index_t w = 0; w < W; ++w) var += std::pow(at(x, {n, c, h, w}) - mean, 2) / count;
    for (index_t n = 0; n < N; ++n)
      for (index_t h = 0; h < H; ++h)
        for (index_t w = 0; w < W; ++w)
          out(n, c, h, w) = (at(x, {n, c, h, w}) - mean) / std::sqrt(var + 1e-5) * at(g, {c}) + at(b, {c});
  }
  return out;
}

// ---- the table ----------------------------------------------------------------------------------

template <class Visit>
void for_each_op(Visit&& visit) {
  const Inputs in;
  const Options d{};
  const ForwardOnly not_differentiable{};

  // Unary elementwise ops: the closed form per element.
#define TESSERA_UNARY_CASE(fn, ref, arg)                                                                     \
  visit(#fn, [](const auto& v) { return ts::fn(v); }, [](const auto& v) { return map(v, [](double e) { return ref; }); }, d, \
        arg)
  TESSERA_UNARY_CASE(exp, std::exp(e), in.x);
  TESSERA_UNARY_CASE(log, std::log(e), in.positive);
  TESSERA_UNARY_CASE(log1p, std::log1p(e), in.positive);
  TESSERA_UNARY_CASE(sqrt, std::sqrt(e), in.positive);
  TESSERA_UNARY_CASE(rsqrt, 1 / std::sqrt(e), in.positive);
  TESSERA_UNARY_CASE(sin, std::sin(e), in.x);
  TESSERA_UNARY_CASE(cos, std::cos(e), in.x);
  TESSERA_UNARY_CASE(tanh, std::tanh(e), in.x);
  TESSERA_UNARY_CASE(erf, std::erf(e), in.x);
  TESSERA_UNARY_CASE(sigmoid, sigmoid_ref(e), in.x);
  TESSERA_UNARY_CASE(gelu, gelu_ref(e), in.x);
  TESSERA_UNARY_CASE(softplus, softplus_ref(e), in.x);
  TESSERA_UNARY_CASE(abs, std::abs(e), in.x);
  TESSERA_UNARY_CASE(relu, std::max(e, 0.0), in.x);
  TESSERA_UNARY_CASE(square, e * e, in.x);
#undef TESSERA_UNARY_CASE
  visit("sign", [](const auto& v) { return ts::sign(v); },
        [](const auto& v) { return map(v, [](double e) { return double((e > 0) - (e < 0)); }); }, not_differentiable, in.x);
  visit("negate", [](const auto& v) { return -v; }, [](const auto& v) { return map(v, [](double e) { return -e; }); }, d, in.x);
  visit("clamp", [](const auto& v) { return ts::clamp(v, -0.5, 0.75); },
        [](const auto& v) { return map(v, [](double e) { return std::min(std::max(e, -0.5), 0.75); }); }, d, in.x);

  // Binary elementwise ops, with broadcasting of a column and a row.
  const Shape<2> s45{4, 5};
  visit("add (broadcast)", [](const auto& a, const auto& b, const auto& c) { return a + b + c; },
        [&](const auto& a, const auto& b, const auto& c) { return map(s45, [](double p, double q, double r) { return p + q + r; }, a, b, c); },
        d, in.x, in.column, in.row);
  visit("subtract", [](const auto& a, const auto& b) { return a - b; },
        [&](const auto& a, const auto& b) { return map(s45, [](double p, double q) { return p - q; }, a, b); }, d, in.x, in.row);
  visit("multiply", [](const auto& a, const auto& b) { return a * b; },
        [&](const auto& a, const auto& b) { return map(s45, [](double p, double q) { return p * q; }, a, b); }, d, in.x, in.y);
  visit("divide", [](const auto& a, const auto& b) { return a / b; },
        [&](const auto& a, const auto& b) { return map(s45, [](double p, double q) { return p / q; }, a, b); }, d, in.x, in.positive);
  visit("pow", [](const auto& a, const auto& b) { return ts::pow(a, b); },
        [&](const auto& a, const auto& b) { return map(s45, [](double p, double q) { return std::pow(p, q); }, a, b); }, d,
        in.positive, in.y);
  visit("minimum", [](const auto& a, const auto& b) { return ts::minimum(a, b); },
        [&](const auto& a, const auto& b) { return map(s45, [](double p, double q) { return std::min(p, q); }, a, b); }, d, in.x, in.y);
  visit("maximum", [](const auto& a, const auto& b) { return ts::maximum(a, b); },
        [&](const auto& a, const auto& b) { return map(s45, [](double p, double q) { return std::max(p, q); }, a, b); }, d, in.x, in.y);
  visit("where", [](const auto& a, const auto& b) { return ts::where(b > 0.0, a * 2.0, b); },
        [&](const auto& a, const auto& b) { return map(s45, [](double p, double q) { return q > 0 ? 2 * p : q; }, a, b); }, d, in.x, in.y);
  visit("compare", [](const auto& a, const auto& b) { return ts::cast<double>(ts::logical_or(ts::logical_and(a < b, !(a >= 0.5)), a == b)); },
        [&](const auto& a, const auto& b) { return map(s45, [](double p, double q) { return double((p < q && !(p >= 0.5)) || p == q); }, a, b); },
        not_differentiable, in.x, in.y);

  // Reductions over one axis and over all axes.
  const auto sum_fold = [](double a, double v) { return a + v; };
  const auto none = [](double a, index_t) { return a; };
  visit("sum(axis)", [](const auto& v) { return ts::sum(v, 1); }, [=](const auto& v) { return reduce_axis(v, 1, 0.0, sum_fold, none); },
        d, in.cube);
  visit("mean(axis)", [](const auto& v) { return ts::mean(v, 0); },
        [=](const auto& v) { return reduce_axis(v, 0, 0.0, sum_fold, [](double a, index_t n) { return a / double(n); }); }, d, in.cube);
  visit("prod(axis)", [](const auto& v) { return ts::prod(v, 2); },
        [=](const auto& v) { return reduce_axis(v, 2, 1.0, [](double a, double e) { return a * e; }, none); }, d, in.cube);
  visit("max(axis)", [](const auto& v) { return ts::max(v, 1); },
        [=](const auto& v) { return reduce_axis(v, 1, -INFINITY, [](double a, double e) { return std::max(a, e); }, none); }, d, in.cube);
  visit("min(axis)", [](const auto& v) { return ts::min(v, 2); },
        [=](const auto& v) { return reduce_axis(v, 2, INFINITY, [](double a, double e) { return std::min(a, e); }, none); }, d, in.cube);
  visit("logsumexp(axis)", [](const auto& v) { return ts::logsumexp(v, 1); },
        [=](const auto& v) {
          return map(reduce_axis(v, 1, 0.0, [](double a, double e) { return a + std::exp(e); }, none), [](double s) { return std::log(s); });
        },
        d, in.cube);
  visit("var(axis)", [](const auto& v) { return ts::var(v, 1, ts::ddof(1)); },
        [=](const auto& v) {
          const auto mean = reduce_axis(v, 1, 0.0, sum_fold, [](double a, index_t n) { return a / double(n); });
          Tensor<double, 2> out(mean.shape());
          for (index_t i = 0; i < out.shape()[0]; ++i)
            for (index_t k = 0; k < out.shape()[1]; ++k) {
              double s = 0;
              for (index_t j = 0; j < v.shape()[1]; ++j) s += std::pow(at(v, {i, j, k}) - at(mean, {i, k}), 2);
              out(i, k) = s / double(v.shape()[1] - 1);
            }
          return out;
        },
        d, in.cube);
  visit("sum(all)", [](const auto& v) { return ts::sum(v); },
        [](const auto& v) {
          double s = 0;
          for (index_t i = 0; i < v.size(); ++i) s += v.contiguous().data()[i];
          return Tensor<double, 0>(s);
        },
        d, in.cube);
  visit("argmax", [](const auto& v) { return ts::cast<double>(ts::argmax(v, 1)); },
        [](const auto& v) {
          Tensor<double, 1> out(Shape<1>{v.shape()[0]});
          for (index_t i = 0; i < v.shape()[0]; ++i) {
            index_t best = 0;
            for (index_t j = 1; j < v.shape()[1]; ++j) best = at(v, {i, j}) > at(v, {i, best}) ? j : best;
            out(i) = double(best);
          }
          return out;
        },
        not_differentiable, in.x);

  // matmul: matrices, a batch against a shared matrix, a vector.
  visit("argmin", [](const auto& v) { return ts::cast<double>(ts::argmin(v, 0)); },
        [](const auto& v) {
          Tensor<double, 1> out(Shape<1>{v.shape()[1]});
          for (index_t j = 0; j < v.shape()[1]; ++j) {
            index_t best = 0;
            for (index_t i = 1; i < v.shape()[0]; ++i) best = at(v, {i, j}) < at(v, {best, j}) ? i : best;
            out(j) = double(best);
          }
          return out;
        },
        not_differentiable, in.x);
  visit("all/any(axis)", [](const auto& v) { return ts::cast<double>(ts::all(v > -1.5, 1)) + ts::cast<double>(ts::any(v > 1.5, 1)) * 2.0; },
        [=](const auto& v) {
          const auto all = reduce_axis(v, 1, 1.0, [](double a, double e) { return double(a > 0 && e > -1.5); }, none);
          const auto any = reduce_axis(v, 1, 0.0, [](double a, double e) { return double(a > 0 || e > 1.5); }, none);
          return map(all.shape(), [](double p, double q) { return p + 2 * q; }, all, any);
        },
        not_differentiable, in.x);
  visit("sum_to", [](const auto& v) { return ts::sum_to(v, Shape<2>{1, 5}); },
        [=](const auto& v) { return reduce_axis(v, 0, 0.0, sum_fold, none).reshape(Shape<2>{1, 5}).clone(); }, d, in.x);

  visit("matmul", [](const auto& a, const auto& b) { return ts::matmul(a, b); }, [](const auto& a, const auto& b) { return matmul_ref(a, b); },
        d, in.x, in.w);
  visit("matmul(batched)", [](const auto& a, const auto& b) { return ts::matmul(a, b); },
        [](const auto& a, const auto& b) {
          Tensor<double, 3> out(Shape<3>{2, 3, 3});
          for (index_t k = 0; k < 2; ++k) {
            Tensor<double, 2> ak(Shape<2>{3, 4});
            for (index_t i = 0; i < 3; ++i)
              for (index_t j = 0; j < 4; ++j) ak(i, j) = at(a, {k, i, j});
            const auto ck = matmul_ref(ak, b.select(0, k).contiguous());
            for (index_t i = 0; i < 3; ++i)
              for (index_t j = 0; j < 3; ++j) out(k, i, j) = ck(i, j);
          }
          return out;
        },
        d, in.cube.slice(1, 0, 3), in.batch_w);
  visit("matmul(vector)", [](const auto& a, const auto& b) { return ts::matmul(a, b); },
        [](const auto& a, const auto& b) {
          const auto col = matmul_ref(a, b.reshape(Shape<2>{5, 1}).contiguous());
          return col.reshape(Shape<1>{4}).contiguous();
        },
        d, in.x, in.row);

  // softmax and log_softmax along the last axis.
  visit("softmax", [](const auto& v) { return ts::softmax(v, -1); }, [](const auto& v) { return softmax_ref(v, false); }, d, in.x);
  visit("log_softmax", [](const auto& v) { return ts::log_softmax(v, 1); }, [](const auto& v) { return softmax_ref(v, true); }, d, in.x);

  // Shape ops.
  visit("transpose", [](const auto& v) { return ts::transpose(v) * 1.0; },
        [](const auto& v) {
          Tensor<double, 2> out(Shape<2>{v.shape()[1], v.shape()[0]});
          for (index_t i = 0; i < v.shape()[0]; ++i)
            for (index_t j = 0; j < v.shape()[1]; ++j) out(j, i) = at(v, {i, j});
          return out;
        },
        d, in.x);
  visit("reshape", [](const auto& v) { return ts::reshape(v * 1.0, Shape<3>{2, 2, 5}); },
        [](const auto& v) { return v.contiguous().reshape(Shape<3>{2, 2, 5}).clone(); }, d, in.x);
  visit("broadcast_to", [](const auto& v) { return ts::broadcast_to(v, Shape<3>{3, 4, 5}); },
        [](const auto& v) { return map(Shape<3>{3, 4, 5}, [](double e) { return e; }, v); }, d, in.column);
  visit("slice", [](const auto& v) { return ts::slice(v * 1.0, 1, 1, 4); },
        [](const auto& v) {
          Tensor<double, 2> out(Shape<2>{v.shape()[0], 3});
          for (index_t i = 0; i < v.shape()[0]; ++i)
            for (index_t j = 0; j < 3; ++j) out(i, j) = at(v, {i, j + 1});
          return out;
        },
        d, in.x);
  visit("concat", [](const auto& a, const auto& b) { return ts::concat(std::make_tuple(a, b * 1.0), 0); },
        [](const auto& a, const auto& b) {
          Tensor<double, 2> out(Shape<2>{8, 5});
          for (index_t i = 0; i < 8; ++i)
            for (index_t j = 0; j < 5; ++j) out(i, j) = i < 4 ? at(a, {i, j}) : at(b, {i - 4, j});
          return out;
        },
        d, in.x, in.y);
  visit("cast", [](const auto& v) { return ts::cast<float>(v) * 2.0f; },
        [](const auto& v) { return map(v, [](double e) { return double(float(e)) * 2; }); }, ForwardOnly{1e5, false}, in.x);

  // Convolution, pooling, batch norm, embedding.
  visit("conv2d", [](const auto& x, const auto& w, const auto& b) { return ts::conv2d(x, w, b, {.stride = 2, .padding = 1}); },
        [](const auto& x, const auto& w, const auto& b) { return conv2d_ref(x, w, b, 2, 1); }, d, in.image, in.kernel, in.bias4);
  visit("max_pool2d", [](const auto& x) { return ts::max_pool2d(x, 2); }, [](const auto& x) { return pool_ref(x, 2, 2, 0, true); }, d,
        in.image);
  visit("avg_pool2d", [](const auto& x) { return ts::avg_pool2d(x, 3, {.stride = 2, .padding = 1}); },
        [](const auto& x) { return pool_ref(x, 3, 2, 1, false); }, d, in.image);
  visit("batch_norm", [](const auto& x, const auto& g, const auto& b) { return ts::batch_norm(x, g, b); },
        [](const auto& x, const auto& g, const auto& b) { return batch_norm_ref(x, g, b); }, Options{10.0, true}, in.image,
        in.channels3, in.shift3);
  visit("embedding", [](const auto& table, const auto& ids) { return ts::embedding(table, ids); },
        [](const auto& table, const auto& ids) {
          Tensor<double, 3> out(Shape<3>{2, 3, 5});
          for (index_t i = 0; i < 2; ++i)
            for (index_t j = 0; j < 3; ++j)
              for (index_t k = 0; k < 5; ++k) out(i, j, k) = at(table, {ids(i, j), k});
          return out;
        },
        d, in.table, in.ids);
}

}  // namespace op_harness
