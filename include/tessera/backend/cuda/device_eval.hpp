// Device evaluators: the form in which an elementwise expression travels into a CUDA kernel.
//
// The host builds an expression's evaluator tree as for the CPU (make_evaluator: the coalesced
// plan, materialized operands computed first) and to_device() turns it into plain structs of
// pointers, strides, constants and op objects that can be copied into a kernel's parameters. One
// kernel then evaluates the whole tree per element: a fused group is one kernel.
//
// Each device evaluator reads element i of the pass three ways:
//   flat(i)           plans of rank 1 (every operand dense or broadcast along one axis);
//   at(idx, rank)     any plan: idx is the coalesced multi-index, broadcasting by stride 0;
//   load<V>(i, out)   V consecutive elements of a rank-1 plan whose operands are all contiguous and
//                     aligned to V elements (or broadcast scalars): one vector load per leaf.
// They are __host__ __device__ under nvcc and plain functions otherwise, so the host tests run the
// same index arithmetic on the CPU (tests/backend/cuda/test_device_eval.cpp).
//
// This header needs no CUDA toolkit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include "tessera/core/config.hpp"
#include "tessera/expr/elementwise.hpp"
#include "tessera/expr/evaluator.hpp"

namespace tessera::detail::gpu {

/// Coalesced extents of a pass: how a linear element number becomes a multi-index.
struct PassShape {
  int rank = 1;
  index_t dims[max_rank] = {1};
};

inline PassShape pass_shape(const IterPlan& plan) {
  PassShape s;
  s.rank = plan.rank;
  for (int k = 0; k < plan.rank; ++k) s.dims[k] = plan.dims[k];
  return s;
}

/// idx = the coalesced multi-index of element i (row-major, outermost first).
TESSERA_HD inline void unravel(index_t i, const PassShape& s, index_t* idx) {
  for (int k = s.rank - 1; k > 0; --k) {
    idx[k] = i % s.dims[k];
    i /= s.dims[k];
  }
  idx[0] = i;
}

/// A reduction's coalesced plan split into kept axes (one output per combination) and reduced
/// axes (`count` inputs per output).
struct ReduceShape {
  int rank = 1;
  index_t dims[max_rank] = {1};
  int kept[max_rank] = {};
  int n_kept = 0;
  int red[max_rank] = {};
  int n_red = 0;
  index_t count = 1;    ///< inputs folded into each output
  index_t outputs = 1;  ///< number of outputs
};

inline ReduceShape reduce_shape(const IterPlan& plan) {
  ReduceShape s;
  s.rank = plan.rank;
  for (int k = 0; k < plan.rank; ++k) {
    s.dims[k] = plan.dims[k];
    if (plan.reduced[k]) {
      s.red[s.n_red++] = k;
      s.count *= plan.dims[k];
    } else {
      s.kept[s.n_kept++] = k;
      s.outputs *= plan.dims[k];
    }
  }
  return s;
}

/// idx = the multi-index of input r of output o (outputs and inputs numbered row-major over the
/// kept and the reduced axes).
TESSERA_HD inline void reduce_index(const ReduceShape& s, index_t o, index_t r, index_t* idx) {
  for (int a = s.n_kept - 1; a >= 0; --a) {
    const int k = s.kept[a];
    idx[k] = o % s.dims[k];
    o /= s.dims[k];
  }
  for (int a = s.n_red - 1; a >= 0; --a) {
    const int k = s.red[a];
    idx[k] = r % s.dims[k];
    r /= s.dims[k];
  }
}

/// The row maximum used to shift a softmax: infinities become 0 (so that exp(x - m) of a finite
/// x stays finite), NaN stays.
template <class T>
TESSERA_HD T softmax_shift(T m) {
  const T inf = std::numeric_limits<T>::infinity();
  if (m != m) return m;
  return (m < inf && m > -inf) ? m : T(0);
}

/// V elements stored together, aligned so that one load or store moves them all.
template <class T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

/// A buffer read through coalesced strides.
template <class T>
struct Leaf {
  using value_type = T;
  const T* data;
  index_t strides[max_rank];

  TESSERA_HD T flat(index_t i) const { return data[i * strides[0]]; }
  TESSERA_HD T at(const index_t* idx, int rank) const {
    index_t off = 0;
    for (int k = 0; k < rank; ++k) off += idx[k] * strides[k];
    return data[off];
  }
  template <int V>
  TESSERA_HD void load(index_t i, T* out) const {
    if (strides[0] == 0) {
      for (int k = 0; k < V; ++k) out[k] = data[0];
    } else {
      const Vec<T, V> p = *reinterpret_cast<const Vec<T, V>*>(data + i);
      for (int k = 0; k < V; ++k) out[k] = p.v[k];
    }
  }
  /// Whether load<V> may be used: contiguous and aligned, or one value broadcast.
  bool loads_vectors(int v) const {
    if (strides[0] == 0) return true;
    return strides[0] == 1 && reinterpret_cast<std::uintptr_t>(data) % (sizeof(T) * static_cast<std::size_t>(v)) == 0;
  }
};

/// A constant.
template <class T>
struct Const {
  using value_type = T;
  T value;
  TESSERA_HD T flat(index_t) const { return value; }
  TESSERA_HD T at(const index_t*, int) const { return value; }
  template <int V>
  TESSERA_HD void load(index_t, T* out) const {
    for (int k = 0; k < V; ++k) out[k] = value;
  }
  bool loads_vectors(int) const { return true; }
};

template <class Op, class A>
struct Unary {
  using value_type = decltype(std::declval<const Op&>()(std::declval<typename A::value_type>()));
  Op op;
  A a;
  TESSERA_HD value_type flat(index_t i) const { return op(a.flat(i)); }
  TESSERA_HD value_type at(const index_t* idx, int rank) const { return op(a.at(idx, rank)); }
  template <int V>
  TESSERA_HD void load(index_t i, value_type* out) const {
    typename A::value_type x[V];
    a.template load<V>(i, x);
    for (int k = 0; k < V; ++k) out[k] = op(x[k]);
  }
  bool loads_vectors(int v) const { return a.loads_vectors(v); }
};

template <class Op, class A, class B>
struct Binary {
  using value_type =
      decltype(std::declval<const Op&>()(std::declval<typename A::value_type>(), std::declval<typename B::value_type>()));
  Op op;
  A a;
  B b;
  TESSERA_HD value_type flat(index_t i) const { return op(a.flat(i), b.flat(i)); }
  TESSERA_HD value_type at(const index_t* idx, int rank) const { return op(a.at(idx, rank), b.at(idx, rank)); }
  template <int V>
  TESSERA_HD void load(index_t i, value_type* out) const {
    typename A::value_type x[V];
    typename B::value_type y[V];
    a.template load<V>(i, x);
    b.template load<V>(i, y);
    for (int k = 0; k < V; ++k) out[k] = op(x[k], y[k]);
  }
  bool loads_vectors(int v) const { return a.loads_vectors(v) && b.loads_vectors(v); }
};

template <class C, class A, class B>
struct Where {
  using value_type = typename A::value_type;
  C c;
  A a;
  B b;
  TESSERA_HD value_type flat(index_t i) const { return c.flat(i) ? a.flat(i) : b.flat(i); }
  TESSERA_HD value_type at(const index_t* idx, int rank) const { return c.at(idx, rank) ? a.at(idx, rank) : b.at(idx, rank); }
  template <int V>
  TESSERA_HD void load(index_t i, value_type* out) const {
    bool m[V];
    value_type x[V], y[V];
    c.template load<V>(i, m);
    a.template load<V>(i, x);
    b.template load<V>(i, y);
    for (int k = 0; k < V; ++k) out[k] = m[k] ? x[k] : y[k];
  }
  bool loads_vectors(int v) const { return c.loads_vectors(v) && a.loads_vectors(v) && b.loads_vectors(v); }
};

template <class To, class A>
struct Cast {
  using value_type = To;
  A a;
  TESSERA_HD To flat(index_t i) const { return static_cast<To>(a.flat(i)); }
  TESSERA_HD To at(const index_t* idx, int rank) const { return static_cast<To>(a.at(idx, rank)); }
  template <int V>
  TESSERA_HD void load(index_t i, To* out) const {
    typename A::value_type x[V];
    a.template load<V>(i, x);
    for (int k = 0; k < V; ++k) out[k] = static_cast<To>(x[k]);
  }
  bool loads_vectors(int v) const { return a.loads_vectors(v); }
};

// ---- host evaluator -> device evaluator -------------------------------------------------------
// Declared first so that the recursive calls see every overload.

template <class T>
Leaf<T> to_device(const LeafEval<T>& e);
template <class T>
Const<T> to_device(const ConstEval<T>& e);
template <class Op, class A>
auto to_device(const UnaryEval<Op, A>& e);
template <class Op, class A, class B>
auto to_device(const BinaryEval<Op, A, B>& e);
template <class C, class A, class B>
auto to_device(const WhereEval<C, A, B>& e);
template <class To, class A>
auto to_device(const CastEval<To, A>& e);

/// The leaf's pointer and its coalesced strides. The host evaluator keeps a materialized operand
/// alive (`keep`); the caller holds it until the kernel is queued, and the caching allocator's
/// stream order makes the memory safe to reuse after that.
template <class T>
Leaf<T> to_device(const LeafEval<T>& e) {
  Leaf<T> d{e.data, {}};
  for (int k = 0; k < static_cast<int>(max_rank); ++k) d.strides[k] = k < e.rank ? e.strides[k] : 0;
  return d;
}
template <class T>
Const<T> to_device(const ConstEval<T>& e) {
  return Const<T>{e.value};
}
template <class Op, class A>
auto to_device(const UnaryEval<Op, A>& e) {
  using DA = decltype(to_device(e.a));
  return Unary<Op, DA>{e.op, to_device(e.a)};
}
template <class Op, class A, class B>
auto to_device(const BinaryEval<Op, A, B>& e) {
  using DA = decltype(to_device(e.a));
  using DB = decltype(to_device(e.b));
  return Binary<Op, DA, DB>{e.op, to_device(e.a), to_device(e.b)};
}
template <class C, class A, class B>
auto to_device(const WhereEval<C, A, B>& e) {
  using DC = decltype(to_device(e.c));
  using DA = decltype(to_device(e.a));
  using DB = decltype(to_device(e.b));
  return Where<DC, DA, DB>{to_device(e.c), to_device(e.a), to_device(e.b)};
}
template <class To, class A>
auto to_device(const CastEval<To, A>& e) {
  using DA = decltype(to_device(e.a));
  return Cast<To, DA>{to_device(e.a)};
}

/// Elements per vector access for element type T: 16 bytes (float4, double2).
template <class T>
inline constexpr int vector_width_v = sizeof(T) >= 16 ? 1 : static_cast<int>(16 / sizeof(T));

// ---- several evaluators in one kernel (autodiff's gradients, optimizer updates) -----------------

template <class... E>
struct Pack;
template <>
struct Pack<> {
  bool loads_vectors(int) const { return true; }
};
template <class E0, class... E>
struct Pack<E0, E...> {
  E0 head;
  Pack<E...> tail;
  bool loads_vectors(int v) const { return head.loads_vectors(v) && tail.loads_vectors(v); }
};

inline Pack<> make_pack() { return {}; }
template <class E0, class... E>
Pack<E0, E...> make_pack(const E0& e0, const E&... e) {
  return Pack<E0, E...>{e0, make_pack(e...)};
}

/// Destinations of one pass: N buffers of T, each with its coalesced strides.
template <class T, std::size_t N>
struct Outputs {
  T* data[N];
  index_t strides[N][max_rank];
  /// Whether every output is contiguous along a rank-1 plan and aligned for vector stores.
  bool stores_vectors(int v) const {
    for (std::size_t o = 0; o < N; ++o) {
      if (strides[o][0] != 1 || reinterpret_cast<std::uintptr_t>(data[o]) % (sizeof(T) * static_cast<std::size_t>(v)) != 0)
        return false;
    }
    return true;
  }
};

// The per-element bodies of the kernels, callable on the host for tests.

/// Element i of a rank-1 pass into every output.
template <class T, std::size_t N, std::size_t K = 0, class... E>
TESSERA_HD void store_flat(const Outputs<T, N>& out, const Pack<E...>& evs, index_t i) {
  if constexpr (sizeof...(E) > 0) {
    out.data[K][i * out.strides[K][0]] = static_cast<T>(evs.head.flat(i));
    store_flat<T, N, K + 1>(out, evs.tail, i);
  }
}

/// Elements [i, i + V) of a rank-1 pass whose operands all load vectors.
template <int V, class T, std::size_t N, std::size_t K = 0, class... E>
TESSERA_HD void store_vector(const Outputs<T, N>& out, const Pack<E...>& evs, index_t i) {
  if constexpr (sizeof...(E) > 0) {
    using Head = std::decay_t<decltype(evs.head)>;
    typename Head::value_type x[V];
    evs.head.template load<V>(i, x);
    Vec<T, V> p;
    for (int k = 0; k < V; ++k) p.v[k] = static_cast<T>(x[k]);
    *reinterpret_cast<Vec<T, V>*>(out.data[K] + i) = p;
    store_vector<V, T, N, K + 1>(out, evs.tail, i);
  }
}

/// Element i of a pass of any rank (idx is its multi-index).
template <class T, std::size_t N, std::size_t K = 0, class... E>
TESSERA_HD void store_at(const Outputs<T, N>& out, const Pack<E...>& evs, const index_t* idx, int rank) {
  if constexpr (sizeof...(E) > 0) {
    index_t off = 0;
    for (int k = 0; k < rank; ++k) off += idx[k] * out.strides[K][k];
    out.data[K][off] = static_cast<T>(evs.head.at(idx, rank));
    store_at<T, N, K + 1>(out, evs.tail, idx, rank);
  }
}

}  // namespace tessera::detail::gpu
