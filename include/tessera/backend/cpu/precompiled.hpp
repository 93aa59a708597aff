// The CPU kernels compiled once, into the tessera::precompiled library, instead of in every program.
//
// tessera is header-only: a program instantiates the kernels it calls. The convolution, pooling,
// GEMM, softmax and batch-norm kernels take the same time to compile in every program that uses
// them (a few seconds of optimization each at -O2) and do not depend on the program's
// expressions. With TESSERA_PRECOMPILED defined (linking tessera::precompiled defines it),
// the list below becomes explicit instantiation declarations (`extern template`): programs call
// the library's copies, for float and double, and compile none of them. Other element types and
// every expression-dependent function are still instantiated in the program.
//
// The library and its programs must agree on what changes a kernel's code: the vector
// instructions (__AVX512F__, __AVX2__), TESSERA_HAS_CBLAS and TESSERA_INSTRUMENT. Every program
// refers to a symbol whose name spells its own settings, and the library defines the one of its
// build, so a program built otherwise fails to link with "undefined reference to
// tessera_precompiled_for_<settings>" instead of running kernels compiled for another CPU. See
// docs/architecture.md, "Build time".
#pragma once

#include "tessera/backend/cpu/conv.hpp"
#include "tessera/backend/cpu/gemm.hpp"
#include "tessera/backend/cpu/normalization.hpp"
#include "tessera/backend/cpu/pool.hpp"
#include "tessera/backend/cpu/softmax.hpp"

// TESSERA_CPU_KERNEL_INSTANCES(PREFIX, T): the kernels' instantiations for element type T, each
// preceded by PREFIX (`extern` declares them; empty defines them, in src/precompiled_*.cpp).
#define TESSERA_CPU_KERNEL_INSTANCES(PREFIX, T)                                                                        \
  PREFIX template void conv2d_forward<T>(cpu, const Tensor<T, 4, cpu>&, const Tensor<T, 4, cpu>&, Tensor<T, 4, cpu>&,  \
                                         const Conv2dGeometry&, const T*, bool, const T*);                             \
  PREFIX template void conv2d_pool_forward<T>(cpu, const Tensor<T, 4, cpu>&, const Tensor<T, 4, cpu>&,                 \
                                              Tensor<T, 4, cpu>&, const Shape<4>&, const Conv2dGeometry&, const T*,    \
                                              bool, const PoolEpilogue&, const T*);                                    \
  PREFIX template void conv2d_backward_data<T>(cpu, const Tensor<T, 4, cpu>&, const Tensor<T, 4, cpu>&,                \
                                               Tensor<T, 4, cpu>&, const Conv2dGeometry&);                             \
  PREFIX template void conv2d_backward_filter<T>(cpu, const Tensor<T, 4, cpu>&, const Tensor<T, 4, cpu>&,              \
                                                 Tensor<T, 4, cpu>&, const Conv2dGeometry&);                           \
  PREFIX template void conv2d_backward_bias<T>(cpu, const Tensor<T, 4, cpu>&, Tensor<T, 1, cpu>&);                     \
  PREFIX template void pool2d_forward<true, T>(cpu, std::bool_constant<true>, const Tensor<T, 4, cpu>&,                \
                                               Tensor<T, 4, cpu>&, index_t, index_t, const Conv2dGeometry&);           \
  PREFIX template void pool2d_forward<false, T>(cpu, std::bool_constant<false>, const Tensor<T, 4, cpu>&,              \
                                                Tensor<T, 4, cpu>&, index_t, index_t, const Conv2dGeometry&);          \
  PREFIX template void pool2d_backward<true, T>(cpu, std::bool_constant<true>, const Tensor<T, 4, cpu>&,               \
                                                const Tensor<T, 4, cpu>&, Tensor<T, 4, cpu>&, index_t, index_t,        \
                                                const Conv2dGeometry&);                                                \
  PREFIX template void pool2d_backward<false, T>(cpu, std::bool_constant<false>, const Tensor<T, 4, cpu>&,             \
                                                 const Tensor<T, 4, cpu>&, Tensor<T, 4, cpu>&, index_t, index_t,       \
                                                 const Conv2dGeometry&);                                               \
  PREFIX template void softmax_into<T, 1>(cpu, Tensor<T, 1, cpu>&, const Tensor<T, 1, cpu>&, std::size_t, bool);       \
  PREFIX template void softmax_into<T, 2>(cpu, Tensor<T, 2, cpu>&, const Tensor<T, 2, cpu>&, std::size_t, bool);       \
  PREFIX template void softmax_into<T, 3>(cpu, Tensor<T, 3, cpu>&, const Tensor<T, 3, cpu>&, std::size_t, bool);       \
  PREFIX template void softmax_into<T, 4>(cpu, Tensor<T, 4, cpu>&, const Tensor<T, 4, cpu>&, std::size_t, bool);       \
  PREFIX template void batch_norm_forward<T>(cpu, const T*, const T*, const T*, T*, T*, T*, T*,                        \
                                             const BatchNormForwardArgs&);                                             \
  PREFIX template void batch_norm_scale_shift<T>(cpu, index_t, const T*, const T*, const T*, const T*, double,         \
                                                 const T*, T*, T*);                                                    \
  PREFIX template void gemm<T>(cpu, bool, bool, index_t, index_t, index_t, T, const T*, index_t, const T*, index_t, T, \
                               T*, index_t);                                                                           \
  PREFIX template void gemm_batched<T>(cpu, bool, bool, index_t, index_t, index_t, T, const T*, index_t, index_t,      \
                                       const T*, index_t, index_t, T, T*, index_t, index_t, index_t);

// TESSERA_PRECOMPILED_SETTINGS: tessera_precompiled_for_<avx512f|avx2|baseline>_<cblas|eigen>[_instrumented],
// the settings of the translation unit that expands it.
#if defined(__AVX512F__)
#define TESSERA_DETAIL_KERNELS_ISA avx512f
#elif defined(__AVX2__)
#define TESSERA_DETAIL_KERNELS_ISA avx2
#else
#define TESSERA_DETAIL_KERNELS_ISA baseline
#endif
#ifdef TESSERA_HAS_CBLAS
#define TESSERA_DETAIL_KERNELS_GEMM _cblas
#else
#define TESSERA_DETAIL_KERNELS_GEMM _eigen
#endif
#ifdef TESSERA_INSTRUMENT
#define TESSERA_DETAIL_KERNELS_COUNTERS _instrumented
#else
#define TESSERA_DETAIL_KERNELS_COUNTERS
#endif
#define TESSERA_DETAIL_PASTE4(a, b, c, d) a##b##c##d
#define TESSERA_DETAIL_EXPAND_PASTE4(a, b, c, d) TESSERA_DETAIL_PASTE4(a, b, c, d)
#define TESSERA_PRECOMPILED_SETTINGS                                                                              \
  TESSERA_DETAIL_EXPAND_PASTE4(tessera_precompiled_for_, TESSERA_DETAIL_KERNELS_ISA, TESSERA_DETAIL_KERNELS_GEMM, \
                               TESSERA_DETAIL_KERNELS_COUNTERS)

#if defined(TESSERA_PRECOMPILED)
// Defined by the library (src/precompiled_float.cpp) for the settings it was built with.
extern "C" const char TESSERA_PRECOMPILED_SETTINGS;
#if defined(__GNUC__)
namespace tessera::detail {
namespace {
// Kept even though nothing reads it (`used`), so that every program refers to the symbol.
[[gnu::used]] const char* const precompiled_settings = &TESSERA_PRECOMPILED_SETTINGS;
}  // namespace
}  // namespace tessera::detail
#endif

namespace tessera {
TESSERA_CPU_KERNEL_INSTANCES(extern, float)
TESSERA_CPU_KERNEL_INSTANCES(extern, double)
}  // namespace tessera
#endif
