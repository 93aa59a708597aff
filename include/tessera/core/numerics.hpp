// check_numerics, like tf.debugging.check_numerics and tf.debugging.enable_check_numerics: NaN and
// infinity caught where they are born. While a CheckNumerics guard is alive (or everywhere, when
// compiled with TESSERA_CHECK_NUMERICS=1), every materialization point checks the tensor it wrote
// -- each materialized node (matmul, reductions, softmax, convolutions...), every evaluation or
// assignment of an expression, the gradients a reverse sweep writes and every optimizer update --
// and throws numeric_error naming the op, the shape and the first bad index.
//
//   {
//     tessera::CheckNumerics guard;        // on until the end of the scope (nests; all threads)
//     auto y = tessera::eval(log(x));      // numeric_error: check_numerics: log produced NaN at [2] ...
//   }
//   tessera::check_numerics(t, "logits");  // one explicit check, whatever the mode
//
// Off (the default) the only cost is one relaxed atomic load per materialization; with
// TESSERA_CHECK_NUMERICS=0 the hooks compile to nothing and a CheckNumerics guard throws, so a
// build that promised zero cost cannot silently check nothing.
#pragma once

#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/core/shape.hpp"
#include "tessera/core/tensor.hpp"

#ifndef TESSERA_CHECK_NUMERICS
#define TESSERA_CHECK_NUMERICS 2  // 2: available, off until a CheckNumerics guard turns it on
#endif

namespace tessera {

namespace detail {
inline std::atomic<int>& check_numerics_depth() {
  static std::atomic<int> depth{0};
  return depth;
}

template <class E, class = void>
struct has_op_name : std::false_type {};
template <class E>
struct has_op_name<E, std::void_t<decltype(std::declval<const E&>().name)>> : std::true_type {};

/// The op name of expression e for messages: its `name` (static, or per node as for reductions:
/// "sum", "mean", "var"), or "copy" for a tensor.
template <class E>
const char* op_name(const E& e) {
  if constexpr (has_op_name<E>::value) {
    return e.name;
  } else {
    (void)e;
    return "copy";
  }
}

/// The row-major position of the first NaN or infinity in the view (base, shape, strides), or -1.
template <class T, std::size_t R>
index_t first_nonfinite(const T* base, const Shape<R>& shape, const std::array<index_t, R>& strides) {
  const index_t n = numel(shape);
  if (n == 0) return -1;
  std::array<index_t, R> idx{};
  for (index_t flat = 0; flat < n; ++flat) {
    index_t off = 0;
    for (std::size_t k = 0; k < R; ++k) off += idx[k] * strides[k];
    if (!std::isfinite(base[off])) return flat;
    for (std::size_t k = R; k-- > 0;) {
      if (++idx[k] < shape[k]) break;
      idx[k] = 0;
    }
  }
  return -1;
}
}  // namespace detail

/// Whether materialization points are being checked now.
inline bool check_numerics_enabled() noexcept {
#if TESSERA_CHECK_NUMERICS == 0
  return false;
#elif TESSERA_CHECK_NUMERICS == 1
  return true;
#else
  return detail::check_numerics_depth().load(std::memory_order_relaxed) > 0;
#endif
}

/// Turns check_numerics on for its lifetime, in every thread of the process. Guards nest.
class CheckNumerics {
 public:
  CheckNumerics() {
#if TESSERA_CHECK_NUMERICS == 0
    throw value_error("CheckNumerics: this program was compiled with TESSERA_CHECK_NUMERICS=0, which removes the checks");
#endif
    detail::check_numerics_depth().fetch_add(1, std::memory_order_relaxed);
  }
  ~CheckNumerics() { detail::check_numerics_depth().fetch_sub(1, std::memory_order_relaxed); }
  CheckNumerics(const CheckNumerics&) = delete;
  CheckNumerics& operator=(const CheckNumerics&) = delete;
};

namespace detail {
/// check_numerics' error for the non-finite value v at row-major position `flat` of a tensor of
/// shape (rank extents at) `shape`; compiled once (TESSERA_OUT_OF_LINE).
[[noreturn]] TESSERA_OUT_OF_LINE void throw_nonfinite(const index_t* shape, std::size_t rank, index_t flat, double v,
                                                      std::string_view op);
}  // namespace detail

/// Throws numeric_error when t holds a NaN or an infinity: "check_numerics: <op> produced NaN at
/// [i, j] of a [m, n] tensor". Device tensors are copied to the host to be checked. Integer
/// tensors always pass.
template <class T, std::size_t R, class B>
void check_numerics(const Tensor<T, R, B>& t, std::string_view op) {
  if constexpr (std::is_floating_point_v<T>) {
    if (t.size() == 0) return;
    const T* base = t.data();
    std::vector<T> copy;  // a device tensor: the span of storage its view covers, on the host
    if constexpr (!B::host_accessible) {
      index_t span = 1;
      for (std::size_t k = 0; k < R; ++k) span += (t.shape()[k] - 1) * t.strides()[k];
      copy.resize(static_cast<std::size_t>(span));
      B::copy_to_host(copy.data(), t.data(), copy.size() * sizeof(T));
      base = copy.data();
    }
    const index_t bad = detail::first_nonfinite(base, t.shape(), t.strides());
    if (bad < 0) return;
    index_t rest = bad, off = 0;
    for (std::size_t k = R; k-- > 0;) {
      off += rest % t.shape()[k] * t.strides()[k];
      rest /= t.shape()[k];
    }
    detail::throw_nonfinite(t.shape().data(), R, bad, static_cast<double>(base[off]), op);
  } else {
    (void)t;
    (void)op;
  }
}

namespace detail {
/// The hook at every materialization point: checks t when check_numerics is on.
template <class T, std::size_t R, class B>
inline void check_numerics_hook(const Tensor<T, R, B>& t, const char* op) {
#if TESSERA_CHECK_NUMERICS != 0
  if (check_numerics_enabled()) check_numerics(t, op);
#else
  (void)t;
  (void)op;
#endif
}
}  // namespace detail

#if TESSERA_OUT_OF_LINE_CORE_DEFINITIONS
TESSERA_OUT_OF_LINE void detail::throw_nonfinite(const index_t* shape, std::size_t rank, index_t flat, double v,
                                                 std::string_view op) {
  std::vector<index_t> idx(rank);
  for (std::size_t k = rank; k-- > 0;) {
    idx[k] = flat % shape[k];
    flat /= shape[k];
  }
  const char* what = std::isnan(v) ? "NaN" : (v > 0 ? "+infinity" : "-infinity");
  throw numeric_error("check_numerics: " + std::string(op) + " produced " + what + " at " +
                      extents_to_string(idx.data(), rank) + " of a " + extents_to_string(shape, rank) + " tensor");
}
#endif  // TESSERA_OUT_OF_LINE_CORE_DEFINITIONS

}  // namespace tessera
