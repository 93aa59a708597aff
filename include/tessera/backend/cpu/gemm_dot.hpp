// The dot-product GEMM: C = alpha * A * B^T + beta * C for A stored [m, k] and B stored [n, k]
// (both row-major, so every output is a dot product of two contiguous rows), computed with no
// packing. A dense layer's forward pass (x [batch, in] times its weight [out, in] transposed) is
// such a product; at small batches BLAS spends as long packing both operands as multiplying them
// (gemm.hpp routes a product here by dot_gemm_applies; docs/cpu-performance.md, "Matrix products",
// has the measurements).
#pragma once

#include <algorithm>

#include <Eigen/Core>

#include "tessera/core/config.hpp"
#include "tessera/expr/evaluator.hpp"

namespace tessera::detail {

/// Taken only with AVX-512 (elsewhere gemm() does not instantiate it). With AVX2's 8 lanes,
/// OpenBLAS's packing GEMM ran the Fashion CNN's dense layer (64 x 128 x 1568) at about 83 GFLOP/s
/// of the core's 90, where the best register tile for this kernel (2 x 5) reached 78.
#if defined(EIGEN_VECTORIZE_AVX512)
inline constexpr bool dot_gemm_enabled = true;
#else
inline constexpr bool dot_gemm_enabled = false;
#endif
/// The register tile: R rows of A x R rows of B, R * R packet sums plus R packets of B and one of
/// A, of AVX-512's 32 registers.
inline constexpr int dot_gemm_rows = 4;
/// The reduction runs over k in chunks of this many elements: a tile's rows of B (and of A) then
/// stay in L1 while the other operand's rows pass by, whatever k is.
inline constexpr index_t dot_gemm_chunk = 1024;

/// Whether C = op(A) op(B) (float or double) goes to dot_gemm rather than to BLAS or Eigen's
/// packing GEMM: A not transposed and B transposed (both operands read along k), and a shape where
/// packing is a large part of BLAS's work, one that it cannot spread over many rows or columns:
///   - at most 128 rows of A (a batch), and at most 32 unless C has at most 256 columns (A's rows
///     are read again for every R columns, from L2; BLAS packs them once);
///   - at least 64 columns and a reduction of at least 512;
///   - at least 2^20 multiply-adds (below, OpenBLAS's small-matrix kernels need no packing).
/// Measured on one thread against OpenBLAS 0.3.21 (AVX-512; docs/cpu-performance.md, "Matrix
/// products"): 1.1x-3.6x faster inside these bounds, 0.72x-0.99x outside them.
inline bool dot_gemm_applies(bool trans_a, bool trans_b, index_t m, index_t n, index_t k) {
  return dot_gemm_enabled && !trans_a && trans_b && m <= 128 && (m <= 32 || n <= 256) && n >= 64 && k >= 512 &&
         double(m) * double(n) * double(k) >= double(1 << 20);
}

/// sums[i * R + j] += the sum over q in [k0, k1) of a[i * lda + q] * b[j * ldb + q], for i < MR and
/// j < NR (or the first `rows` x `cols` of R x R, when MR = NR = 0: the edges, with the same sums in
/// the same order): packets of k in SIMD lanes, the lanes added, then the elements after the last
/// whole packet in order. Not inlined: inlined into a larger function, GCC kept acc in memory.
template <class T, int MR, int NR>
TESSERA_NOINLINE void dot_gemm_tile(const T* a, index_t lda, const T* b, index_t ldb, index_t k0, index_t k1, T* sums,
                                    index_t rows = MR, index_t cols = NR) {
  namespace pk = Eigen::internal;
  using P = packet_t<T>;
  constexpr index_t S = packet_size_v<T>, R = dot_gemm_rows;
  const index_t vector_end = k0 + (k1 - k0) / S * S;
  P acc[R][R];
  TESSERA_UNROLL
  for (int i = 0; i < R; ++i) {
    TESSERA_UNROLL
    for (int j = 0; j < R; ++j) acc[i][j] = pk::pset1<P>(T(0));
  }
  if constexpr (MR > 0 && NR > 0) {
    for (index_t q = k0; q < vector_end; q += S) {
      P bv[NR];
      TESSERA_UNROLL
      for (int j = 0; j < NR; ++j) bv[j] = pk::ploadu<P>(b + j * ldb + q);
      TESSERA_UNROLL
      for (int i = 0; i < MR; ++i) {
        const P av = pk::ploadu<P>(a + i * lda + q);
        TESSERA_UNROLL
        for (int j = 0; j < NR; ++j) acc[i][j] = pk::pmadd(av, bv[j], acc[i][j]);
      }
    }
  } else {
    for (index_t q = k0; q < vector_end; q += S) {
      for (index_t i = 0; i < rows; ++i) {
        const P av = pk::ploadu<P>(a + i * lda + q);
        for (index_t j = 0; j < cols; ++j) acc[i][j] = pk::pmadd(av, pk::ploadu<P>(b + j * ldb + q), acc[i][j]);
      }
    }
  }
  // With the extents known at compile time where they are, so that acc stays in registers.
  const index_t row_count = MR > 0 ? MR : rows, col_count = NR > 0 ? NR : cols;
  for (index_t i = 0; i < row_count; ++i) {
    for (index_t j = 0; j < col_count; ++j) {
      T s = pk::predux(acc[i][j]);
      for (index_t q = vector_end; q < k1; ++q) s += a[i * lda + q] * b[j * ldb + q];
      sums[i * R + j] += s;
    }
  }
}

/// Columns [j0, j1) of C = alpha * A * B^T + beta * C (see the top of this file), on the calling
/// thread. Per block of up to 128 rows of A and R columns of C: per chunk of k, every tile of R
/// rows of A, so that B's R rows of the chunk stay in L1 while A's rows pass; the block's sums so
/// far wait in `sums`. An output is the same sum in the same order wherever its tile falls.
template <class T>
void dot_gemm(index_t m, index_t j0, index_t j1, index_t k, T alpha, const T* a, index_t lda, const T* b, index_t ldb,
              T beta, T* c, index_t ldc) {
  constexpr index_t R = dot_gemm_rows, rows_per_block = 128;
  T sums[rows_per_block * R];
  for (index_t i0 = 0; i0 < m; i0 += rows_per_block) {
    const index_t i1 = std::min(m, i0 + rows_per_block);
    for (index_t j = j0; j < j1; j += R) {
      const index_t cols = std::min(R, j1 - j);
      const T* bj = b + j * ldb;
      std::fill(sums, sums + (i1 - i0) * R, T(0));
      for (index_t k0 = 0; k0 < k; k0 += dot_gemm_chunk) {
        const index_t k1 = std::min(k, k0 + dot_gemm_chunk);
        for (index_t i = i0; i < i1; i += R) {
          const index_t rows = std::min(R, i1 - i);
          T* tile_sums = sums + (i - i0) * R;
          if (rows == R && cols == R) {
            dot_gemm_tile<T, R, R>(a + i * lda, lda, bj, ldb, k0, k1, tile_sums);
          } else {
            dot_gemm_tile<T, 0, 0>(a + i * lda, lda, bj, ldb, k0, k1, tile_sums, rows, cols);
          }
        }
      }
      for (index_t i = i0; i < i1; ++i) {
        for (index_t jj = 0; jj < cols; ++jj) {
          const T s = sums[(i - i0) * R + jj];
          T& out = c[i * ldc + j + jj];
          out = beta == T(0) ? alpha * s : alpha * s + beta * out;  // c may be uninitialized
        }
      }
    }
  }
}

}  // namespace tessera::detail
