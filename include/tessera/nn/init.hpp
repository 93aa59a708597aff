// Initializers (torch.nn.init): Glorot/Xavier, Kaiming/He, orthogonal, constants; all seeded.
// Fans follow PyTorch: for a weight of shape [out, in, k...], fan_in = in * prod(k), fan_out =
// out * prod(k).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include <Eigen/QR>

#include "tessera/backend/cpu/device.hpp"  // initializers that need a host buffer
#include "tessera/core/error.hpp"
#include "tessera/core/factories.hpp"
#include "tessera/core/random.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/assign.hpp"

namespace tessera::nn::init {

/// The nonlinearity a weight feeds, for the recommended gain (torch.nn.init.calculate_gain).
enum class Nonlinearity { linear, sigmoid, tanh, relu, leaky_relu, selu };
/// Which fan the Kaiming initializers preserve the variance of.
enum class FanMode { fan_in, fan_out };

/// Recommended gain for a nonlinearity; `negative_slope` is leaky_relu's.
inline double calculate_gain(Nonlinearity nl, double negative_slope = 0.01) {
  switch (nl) {
    case Nonlinearity::linear:
    case Nonlinearity::sigmoid: return 1.0;
    case Nonlinearity::tanh: return 5.0 / 3.0;
    case Nonlinearity::relu: return std::sqrt(2.0);
    case Nonlinearity::leaky_relu: return std::sqrt(2.0 / (1.0 + negative_slope * negative_slope));
    case Nonlinearity::selu: return 0.75;
  }
  return 1.0;
}

/// {fan_in, fan_out} of a weight tensor (rank >= 2).
template <class T, std::size_t R, class B>
std::pair<double, double> fans(const Tensor<T, R, B>& t, const char* who) {
  if constexpr (R < 2) {
    throw value_error(std::string(who) + ": fan in and fan out need a tensor of rank >= 2, got rank " +
                      std::to_string(R));
  } else {
    double receptive = 1;
    for (std::size_t i = 2; i < R; ++i) receptive *= double(t.shape()[i]);
    return {double(t.shape()[1]) * receptive, double(t.shape()[0]) * receptive};
  }
}

template <class T, std::size_t R, class B>
void uniform_(Tensor<T, R, B>& t, Generator& gen, double low, double high) {
  t.assign(uniform<T, B>(gen, t.shape(), T(low), T(high)));
}
template <class T, std::size_t R, class B>
void normal_(Tensor<T, R, B>& t, Generator& gen, double mean, double stddev) {
  t.assign(normal<T, B>(gen, t.shape(), T(mean), T(stddev)));
}
template <class T, std::size_t R, class B>
void constant_(Tensor<T, R, B>& t, double value) {
  t.fill(T(value));
}
template <class T, std::size_t R, class B>
void zeros_(Tensor<T, R, B>& t) {
  t.fill(T(0));
}
template <class T, std::size_t R, class B>
void ones_(Tensor<T, R, B>& t) {
  t.fill(T(1));
}

/// U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).
template <class T, std::size_t R, class B>
void xavier_uniform_(Tensor<T, R, B>& t, Generator& gen, double gain = 1.0) {
  const auto [in, out] = fans(t, "xavier_uniform_");
  const double a = gain * std::sqrt(6.0 / (in + out));
  uniform_(t, gen, -a, a);
}
/// N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).
template <class T, std::size_t R, class B>
void xavier_normal_(Tensor<T, R, B>& t, Generator& gen, double gain = 1.0) {
  const auto [in, out] = fans(t, "xavier_normal_");
  normal_(t, gen, 0.0, gain * std::sqrt(2.0 / (in + out)));
}

/// Options of the Kaiming initializers; the defaults are PyTorch's.
struct KaimingOptions {
  double a = 0;  ///< negative slope of the leaky_relu that follows
  FanMode mode = FanMode::fan_in;
  Nonlinearity nonlinearity = Nonlinearity::leaky_relu;
};

template <class T, std::size_t R, class B>
double kaiming_std(const Tensor<T, R, B>& t, const KaimingOptions& o, const char* who) {
  const auto [in, out] = fans(t, who);
  const double fan = o.mode == FanMode::fan_in ? in : out;
  if (fan <= 0) throw value_error(std::string(who) + ": the tensor has a zero fan");
  return calculate_gain(o.nonlinearity, o.a) / std::sqrt(fan);
}
/// U(-b, b) with b = gain * sqrt(3 / fan).
template <class T, std::size_t R, class B>
void kaiming_uniform_(Tensor<T, R, B>& t, Generator& gen, KaimingOptions o = {}) {
  const double b = std::sqrt(3.0) * kaiming_std(t, o, "kaiming_uniform_");
  uniform_(t, gen, -b, b);
}
/// N(0, (gain / sqrt(fan))^2).
template <class T, std::size_t R, class B>
void kaiming_normal_(Tensor<T, R, B>& t, Generator& gen, KaimingOptions o = {}) {
  normal_(t, gen, 0.0, kaiming_std(t, o, "kaiming_normal_"));
}

/// A (semi-)orthogonal matrix (over the tensor flattened to [shape[0], rest]) times gain, from the
/// QR decomposition of a Gaussian matrix with the signs fixed so the result is uniformly distributed.
template <class T, std::size_t R, class B>
void orthogonal_(Tensor<T, R, B>& t, Generator& gen, double gain = 1.0) {
  static_assert(R >= 2, "tessera::nn::init::orthogonal_ needs a tensor of rank >= 2");
  const index_t rows = t.shape()[0];
  const index_t cols = rows == 0 ? 0 : t.size() / rows;
  if (rows == 0 || cols == 0) return;
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const bool wide = rows < cols;
  const index_t m = wide ? cols : rows, n = wide ? rows : cols;  // m >= n
  const auto g = normal<double>(gen, Shape<2>{m, n});
  const Mat a = Eigen::Map<const Mat>(g.data(), m, n);
  Eigen::HouseholderQR<Mat> qr(a);
  Mat q = qr.householderQ() * Mat::Identity(m, n);
  const Mat r = qr.matrixQR().topRows(n).template triangularView<Eigen::Upper>();
  for (index_t j = 0; j < n; ++j) {
    if (r(j, j) < 0) q.col(j) *= -1.0;
  }
  const Mat w = wide ? Mat(q.transpose()) : q;  // [rows, cols]
  auto dst = Tensor<T, 2, cpu>::uninitialized(Shape<2>{rows, cols});  // built on the host, then copied
  for (index_t i = 0; i < rows; ++i) {
    for (index_t j = 0; j < cols; ++j) dst(i, j) = T(gain * w(i, j));
  }
  t.assign(dst.template to<B>().reshape(t.shape()));
}

}  // namespace tessera::nn::init
