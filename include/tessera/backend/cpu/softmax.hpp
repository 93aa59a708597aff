// CPU softmax / log_softmax along one axis of a contiguous tensor viewed as [outer, n, inner].
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <Eigen/Core>

#include "tessera/backend/cpu/device.hpp"
#include "tessera/core/instrument.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/evaluator.hpp"
#include "tessera/expr/unary_ops.hpp"

namespace tessera {

/// out = softmax(in) (or log_softmax when `log`) along `axis`; both contiguous, same shape.
template <class T, std::size_t R>
void softmax_into(cpu, Tensor<T, R, cpu>& out, const Tensor<T, R, cpu>& in, std::size_t axis, bool log) {
  static_assert(std::is_floating_point_v<T>, "tessera::softmax needs a floating-point tensor");
  instrument::count_materialization();
  index_t outer = 1, inner = 1;
  for (std::size_t i = 0; i < axis; ++i) outer *= in.shape()[i];
  for (std::size_t i = axis + 1; i < R; ++i) inner *= in.shape()[i];
  const index_t n = in.shape()[axis];
  if (out.size() == 0 || n == 0) return;
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  using Map = Eigen::Map<Arr>;
  using CMap = Eigen::Map<const Arr>;
  const T* src = in.data();
  T* dst = out.data();
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const index_t serial_below = std::max<index_t>(1, 32768 / std::max<index_t>(n * inner, 1));
  // exp with results below the smallest normal number flushed to 0, as tessera::exp does
  // (Eigen's exp clamps its argument, which would leave exp(-inf) at ~1e-38).
  auto exp_flushed = [](const auto& z) {
    const T underflow = std::is_same_v<T, float> ? T(-87.33654) : T(-708.3964185322641);
    return (z < underflow).select(T(0), z.exp());
  };

  if (inner == 1) {
    // Softmax along the contiguous axis: one row at a time, exp in SIMD packets (tessera's Exp,
    // which flushes underflow to 0) summed as it is written.
    namespace pk = Eigen::internal;
    using P = detail::packet_t<T>;
    constexpr index_t ps = detail::packet_size_v<T>;
    const ops::Exp exp_op;
    detail::parallel_for(outer, 1, serial_below, [&](index_t b, index_t e) {
      for (index_t o = b; o < e; ++o) {
        CMap x(src + o * n, n);
        Map y(dst + o * n, n);
        T m = x.maxCoeff();
        if (!(std::abs(m) < std::numeric_limits<T>::infinity())) m = (m != m) ? m : T(0);
        const T* xr = src + o * n;
        T* yr = dst + o * n;
        T s = 0;
        index_t j = 0;
        if constexpr (detail::packet_capable_v<T> && ops::Exp::vectorizable<T>) {
          const P pm = pk::pset1<P>(m);
          P acc = pk::pzero(pm);
          for (; j + ps <= n; j += ps) {
            const P v = exp_op.packet(pk::psub(pk::ploadu<P>(xr + j), pm));
            pk::pstoreu(yr + j, v);
            acc = pk::padd(acc, v);
          }
          s = pk::predux(acc);
        }
        for (; j < n; ++j) {
          yr[j] = exp_op(xr[j] - m);
          s += yr[j];
        }
        if (log) {
          y = (x - m) - std::log(s);  // (x - m) first: exact, so the result keeps full precision
        } else {
          y *= T(1) / s;
        }
      }
    });
    return;
  }
  // Softmax along a strided axis: vectorize across the `inner` positions.
  detail::parallel_for(outer, 1, serial_below, [&](index_t b, index_t e) {
    Arr m(inner), s(inner);
    for (index_t o = b; o < e; ++o) {
      const T* x0 = src + o * n * inner;
      T* y0 = dst + o * n * inner;
      m.setConstant(neg_inf);
      for (index_t k = 0; k < n; ++k) m = m.max(CMap(x0 + k * inner, inner));
      m = (m.abs() < std::numeric_limits<T>::infinity()).select(m, T(0));
      s.setZero();
      for (index_t k = 0; k < n; ++k) {
        Map y(y0 + k * inner, inner);
        y = exp_flushed(CMap(x0 + k * inner, inner) - m);
        s += y;
      }
      if (log) {
        const Arr log_s = s.log();
        for (index_t k = 0; k < n; ++k) Map(y0 + k * inner, inner) = (CMap(x0 + k * inner, inner) - m) - log_s;
      } else {
        const Arr inv = s.inverse();
        for (index_t k = 0; k < n; ++k) Map(y0 + k * inner, inner) *= inv;
      }
    }
  });
}

}  // namespace tessera
