// Basic configuration shared by every tessera header: index type, rank limit, macros.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tessera {

/// Signed index type used for extents, strides and element offsets.
using index_t = std::ptrdiff_t;

/// Largest rank a tensor may have (bounds the fixed-size arrays used by evaluators).
inline constexpr std::size_t max_rank = 8;

}  // namespace tessera

#if defined(__GNUC__) || defined(__clang__)
#define TESSERA_LIKELY(x) __builtin_expect(!!(x), 1)
#define TESSERA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TESSERA_ALWAYS_INLINE inline __attribute__((always_inline))
// Kept out of line: shape checks and the messages of their exceptions are called from every
// instantiation of a node's constructor; inlined, they multiply the code the compiler optimizes.
#define TESSERA_NOINLINE __attribute__((noinline))
#else
#define TESSERA_LIKELY(x) (x)
#define TESSERA_UNLIKELY(x) (x)
#define TESSERA_ALWAYS_INLINE inline
#define TESSERA_NOINLINE
#endif

// Before a loop whose trip count is a template constant (a register tile's rows, packets or taps):
// unroll it completely, so that the tile's arrays of packets live in registers. GCC does that by
// itself at -O3 only; at -O2 it kept them in memory, loading and storing every packet at every
// step (docs/cpu-performance.md, "Register tiles and the optimization level"). nvcc's front end
// does not know the pragma; host code in CUDA translation units goes without it.
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define TESSERA_UNROLL _Pragma("GCC unroll 64")
#else
#define TESSERA_UNROLL
#endif

// Functions compiled once into tessera::precompiled (docs/architecture.md, "Build time"): the
// non-template code that is the same in every program. Each is declared with TESSERA_OUT_OF_LINE
// and defined in the same header under one of two conditions, one per object of the library, so
// that a program links only the group it calls:
//   TESSERA_OUT_OF_LINE_CORE_DEFINITIONS  the shape rules and node checks every program calls
//                                         (src/precompiled_core.cpp);
//   TESSERA_OUT_OF_LINE_DEFINITIONS       files, checkpoints, summaries, model export and training
//                                         callbacks, with the libraries they need
//                                         (src/precompiled_functions.cpp).
// Header-only (the default) they are inline functions like any other. A program that links
// tessera::precompiled (which defines TESSERA_PRECOMPILED) sees the declarations only and calls the
// library's copies; each of the two sources defines TESSERA_PRECOMPILED_CORE_DEFINITIONS or
// TESSERA_PRECOMPILED_DEFINITIONS to compile its group.
#if !defined(TESSERA_PRECOMPILED)
#define TESSERA_OUT_OF_LINE inline
#define TESSERA_OUT_OF_LINE_DEFINITIONS 1
#define TESSERA_OUT_OF_LINE_CORE_DEFINITIONS 1
#else
#define TESSERA_OUT_OF_LINE
#if defined(TESSERA_PRECOMPILED_DEFINITIONS)
#define TESSERA_OUT_OF_LINE_DEFINITIONS 1
#else
#define TESSERA_OUT_OF_LINE_DEFINITIONS 0
#endif
#if defined(TESSERA_PRECOMPILED_CORE_DEFINITIONS)
#define TESSERA_OUT_OF_LINE_CORE_DEFINITIONS 1
#else
#define TESSERA_OUT_OF_LINE_CORE_DEFINITIONS 0
#endif
#endif

// Functions that run on the host and, under nvcc, in CUDA kernels too: the scalar form of every
// elementwise op and reducer, and the device evaluators (backend/cuda/device_eval.hpp).
#if defined(__CUDACC__)
#define TESSERA_HD __host__ __device__
#else
#define TESSERA_HD
#endif
