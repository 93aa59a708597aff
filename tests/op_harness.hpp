// One harness every public op goes through (the op table is tests/op_table.hpp): an op is a
// generic callable over tensors, its reference is written independently with plain loops over
// elements (or a closed form per element), and check_op compares
//   1. the op in double with the reference (relative 1e-12, or the entry's tolerance),
//   2. the op in float with the same reference (relative 1e-5 scaled by the entry's tolerance),
//   3. for differentiable ops, the gradient of sum(op(x) * w) (w random, so every output element
//      gets its own adjoint) with central finite differences in double.
// tests/cuda/test_cuda_device.cu runs the same table CPU against GPU.
#pragma once

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>

#include <tessera/tessera.hpp>

namespace op_harness {

using tessera::index_t;
using tessera::Shape;
using tessera::Tensor;

/// Seeded uniform inputs in [lo, hi).
template <std::size_t R>
Tensor<double, R> input(const Shape<R>& shape, double lo, double hi, std::uint64_t seed) {
  tessera::Generator gen(seed);
  return tessera::uniform<double>(gen, shape, lo, hi);
}

/// The multi-index of flat row-major position `flat` in `shape`.
template <std::size_t R>
std::array<index_t, R> unravel(index_t flat, const Shape<R>& shape) {
  std::array<index_t, R> idx{};
  for (std::size_t i = R; i-- > 0;) {
    idx[i] = shape[i] == 0 ? 0 : flat % shape[i];
    flat = shape[i] == 0 ? 0 : flat / shape[i];
  }
  return idx;
}

/// Element of `t` at the right-aligned, broadcast position of `idx` (an index in a larger shape).
template <std::size_t R, std::size_t RO>
double at_broadcast(const Tensor<double, R>& t, const std::array<index_t, RO>& idx) {
  const auto c = t.contiguous();
  index_t off = 0, stride = 1;
  for (std::size_t i = R; i-- > 0;) {
    const index_t k = t.shape()[i] == 1 ? 0 : idx[RO - R + i];
    off += k * stride;
    stride *= t.shape()[i];
  }
  return c.data()[off];
}

template <std::size_t R>
double at(const Tensor<double, R>& t, const std::array<index_t, R>& idx) {
  return at_broadcast(t, idx);
}

/// out[i] = f(x[i]...) with NumPy broadcasting of the inputs to `out_shape`.
template <std::size_t RO, class F, class... X>
Tensor<double, RO> map(const Shape<RO>& out_shape, F f, const X&... x) {
  Tensor<double, RO> out(out_shape);
  for (index_t k = 0; k < out.size(); ++k) {
    const auto idx = unravel(k, out_shape);
    out.data()[k] = f(at_broadcast(x, idx)...);
  }
  return out;
}
template <std::size_t R, class F>
Tensor<double, R> map(const Tensor<double, R>& x, F f) {
  return map(x.shape(), f, x);
}

/// A reduction over axis `axis` (kept with extent 1 when `keep`): fold from `init`, then `finish`
/// with the count of folded elements.
template <std::size_t R, class Fold, class Finish>
auto reduce_axis(const Tensor<double, R>& x, std::size_t axis, double init, Fold fold, Finish finish) {
  Shape<R - 1> out_shape{};
  for (std::size_t i = 0, k = 0; i < R; ++i) {
    if (i != axis) out_shape[k++] = x.shape()[i];
  }
  Tensor<double, R - 1> out(out_shape);
  for (index_t k = 0; k < out.size(); ++k) {
    const auto o = unravel(k, out_shape);
    std::array<index_t, R> idx{};
    for (std::size_t i = 0, j = 0; i < R; ++i) idx[i] = i == axis ? 0 : o[j++];
    double acc = init;
    for (index_t a = 0; a < x.shape()[axis]; ++a) {
      idx[axis] = a;
      acc = fold(acc, at(x, idx));
    }
    out.data()[k] = finish(acc, x.shape()[axis]);
  }
  return out;
}

/// Largest |got - want| / max(1, |want|) over all elements (infinity when the shapes differ).
template <class T, std::size_t R>
double max_error(const Tensor<T, R>& got, const Tensor<double, R>& want) {
  if (got.shape() != want.shape()) return INFINITY;
  const auto g = got.contiguous();
  const auto w = want.contiguous();
  double worst = 0;
  for (index_t i = 0; i < g.size(); ++i) {
    const double a = static_cast<double>(g.data()[i]), b = w.data()[i];
    if (std::isnan(b) && std::isnan(a)) continue;
    const double e = std::abs(a - b) / std::max(1.0, std::abs(b));
    if (!(e <= worst)) worst = e;
  }
  return worst;
}

/// How an op is checked. Whether its gradient is checked is part of the type: a gradient of a
/// non-differentiable op does not compile.
template <bool Differentiable>
struct CheckOptions {
  static constexpr bool differentiable = Differentiable;
  double tolerance = 1.0;  ///< multiplies the default tolerances (1e-12 double, 1e-5 float)
  bool float_too = true;   ///< also run in float
};
using Options = CheckOptions<true>;
using ForwardOnly = CheckOptions<false>;

template <class X>
auto as_float(const X& x) {
  if constexpr (std::is_same_v<tessera::value_type_t<X>, double>) {
    return Tensor<float, tessera::rank_v<X>>(tessera::cast<float>(x));
  } else {
    return x;  // integer inputs (embedding ids) stay as they are
  }
}

/// The ops with integer inputs take them last and one at a time (embedding: table, ids); the
/// gradient is taken with respect to the first input, the others closed over.
template <class F, class X, class I>
tessera::GradCheckResult check_first_differentiable(F f, const X& x, const I& ids) {
  return tessera::check_gradients([&](const auto& t) { return f(t, ids); }, x, tessera::GradCheckOptions{1e-6, 1e-6});
}
template <class F, class X, class I>
auto first_gradient(F f, const X& x, const I& ids) {
  return tessera::grad([&](const auto& t) { return f(t, ids); }, x);
}

/// check_gradients over the floating-point inputs only (integer ones are closed over).
template <class F, class... X>
tessera::GradCheckResult check_differentiable(F f, const X&... inputs) {
  if constexpr ((std::is_floating_point_v<tessera::value_type_t<X>> && ...)) {
    return tessera::check_gradients(f, inputs..., tessera::GradCheckOptions{1e-6, 1e-6});
  } else {
    return check_first_differentiable(f, inputs...);
  }
}

/// The gradients of f with respect to its floating-point inputs (as check_differentiable chooses
/// them), for comparing backends.
template <class F, class... X>
auto gradients(F f, const X&... inputs) {
  if constexpr ((std::is_floating_point_v<tessera::value_type_t<X>> && ...)) {
    return tessera::grad(f, inputs...);
  } else {
    return first_gradient(f, inputs...);
  }
}

/// Checks `op` (a generic callable) against `reference` on `inputs` (host tensors; double ones are
/// the differentiable arguments, integer ones constants).
template <class Op, class Ref, bool D, class... X>
void check_op(const char* name, Op op, Ref reference, const CheckOptions<D>& o, const X&... inputs) {
  const std::string op_name = name;
  CAPTURE(op_name);
  const auto want = reference(inputs...);
  const auto got = tessera::eval(op(inputs...));
  const double err = max_error(got, want);
  INFO("double forward: max error " << err);
  CHECK(err <= 1e-12 * o.tolerance);
  if (o.float_too) {
    const auto got_f = tessera::eval(op(as_float(inputs)...));
    const double err_f = max_error(got_f, want);
    INFO("float forward: max error " << err_f);
    CHECK(err_f <= 1e-5 * o.tolerance);
  }
  if constexpr (D) {
    const auto w = input(want.shape(), -1.0, 1.0, 99);
    auto weighted = [&](const auto&... x) { return tessera::sum(op(x...) * w); };
    const auto result = check_differentiable(weighted, inputs...);
    INFO(result.message());
    CHECK(result.passed);
  }
}

}  // namespace op_harness
