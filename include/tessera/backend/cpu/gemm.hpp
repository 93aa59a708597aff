// CPU GEMM: C = alpha * op(A) * op(B) + beta * C on row-major operands with leading dimensions.
// float/double go to a CBLAS (OpenBLAS) when TESSERA_HAS_CBLAS is defined (the CMake package does
// this when it finds OpenBLAS); otherwise, and for integer types, Eigen's GEMM runs on row blocks
// of C in parallel on tessera's thread pool.
#pragma once

#include <algorithm>
#include <type_traits>

#include <Eigen/Core>

#include "tessera/backend/cpu/device.hpp"
#include "tessera/backend/cpu/gemm_dot.hpp"
#include "tessera/core/config.hpp"
#include "tessera/core/instrument.hpp"

#ifdef TESSERA_HAS_CBLAS
extern "C" {
// The CBLAS entry points tessera needs, declared here so no cblas.h include path is required.
// Enum values are fixed by the CBLAS standard: RowMajor = 101, NoTrans = 111, Trans = 112.
void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc);
void cblas_dgemm(int order, int trans_a, int trans_b, int m, int n, int k, double alpha, const double* a, int lda,
                 const double* b, int ldb, double beta, double* c, int ldc);
void cblas_sgemv(int order, int trans, int m, int n, float alpha, const float* a, int lda, const float* x, int incx,
                 float beta, float* y, int incy);
void cblas_dgemv(int order, int trans, int m, int n, double alpha, const double* a, int lda, const double* x, int incx,
                 double beta, double* y, int incy);
// Present in OpenBLAS only; weak so that other CBLAS implementations still link.
void openblas_set_num_threads(int) __attribute__((weak));
int openblas_get_num_threads() __attribute__((weak));
}
#endif

namespace tessera {

namespace detail {
/// A product's C is split into row (or column) blocks that depend on its extent alone, never on
/// the thread count: a BLAS call's blocking (and so its rounding) can depend on the size of the
/// block it is given, so blocks that moved with the thread count would make results depend on it.
///
/// Each block is one BLAS call, and each call packs all of the other operand again, so a block
/// needs enough rows to pay for that (64-row blocks lost a fifth of the throughput;
/// docs/cpu-performance.md, "Matrix products"). So: the largest power of two from 2 (or
/// `fewest_blocks`) to 16 blocks (a power of two, so that 2, 4 or 8 threads share them evenly)
/// that leaves at least 256 (`least`) rows each, rounded up to a multiple of 16 (the kernels'
/// panel sizes divide it; a coarser rounding would load threads unevenly: 784 rows in 448 + 336).
inline index_t gemm_block(index_t extent, index_t least = 256, index_t fewest_blocks = 2) {
  index_t blocks = fewest_blocks;
  while (blocks < 16 && extent / (2 * blocks) >= least) blocks *= 2;
  const index_t block = (extent + blocks - 1) / blocks;
  return (block + 15) / 16 * 16;
}

/// When C is large both ways (at least 2048 x 2048), it is cut into tiles of at least 512 rows by
/// 1024 columns instead of strips: every call packs the rows of op(A) and the columns of op(B) it
/// reads, and a strip reads all of op(B). For 2048 x 2048 x k, 8 strips of 256 rows pack
/// 18 x 1024 x k elements in all, 8 tiles of 512 x 1024 pack 12 x 1024 x k. Like strips, tiles
/// depend on the shape alone.
inline bool gemm_tiled(index_t m, index_t n) { return m >= 2048 && n >= 2048; }
inline index_t gemm_tile_rows(index_t m) { return gemm_block(m, 512, 1); }
inline index_t gemm_tile_cols(index_t n) { return gemm_block(n, 1024, 1); }

/// A matrix-vector product's column blocks: reading the matrix is all the work, so blocks can be
/// small (up to 16 of a multiple of 64) and each core keeps its own in cache call after call.
inline index_t gemv_block(index_t extent) {
  const index_t block = (extent + 15) / 16;
  return std::max<index_t>(64, (block + 63) / 64 * 64);
}

#ifdef TESSERA_HAS_CBLAS
/// OpenBLAS runs single-threaded inside tessera: tessera splits large products over its own pool
/// instead. OpenBLAS's worker threads wait for work by spinning on sched_yield; beside tessera's
/// pool (and a DataLoader thread) on a 2-core machine they took a quarter of a CNN training
/// step's samples, and the step did not get faster from 1 to 2 threads.
/// Checked before every product (from the calling thread, before the pool splits it), because the
/// setting is process-wide: another library in the process may raise it again.
inline void single_threaded_blas() {
  if (openblas_set_num_threads && (!openblas_get_num_threads || openblas_get_num_threads() != 1)) {
    openblas_set_num_threads(1);
  }
}

template <class T>
void cblas_gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda, const T* b,
                index_t ldb, T beta, T* c, index_t ldc) {
  constexpr int row_major = 101, no_trans = 111, trans = 112;
  const int ta = trans_a ? trans : no_trans, tb = trans_b ? trans : no_trans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(row_major, ta, tb, int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
  } else {
    cblas_dgemm(row_major, ta, tb, int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
  }
}

/// The one-row product c [1, n] = alpha a [1, k] op(B) + beta c as a matrix-vector product:
/// columns [j0, j1) of c, from the matching columns of op(B). (A batch of one through a dense
/// layer: GEMM's kernels pack op(B) first; GEMV reads it once.)
template <class T>
void cblas_row_times_matrix(bool trans_a, bool trans_b, index_t j0, index_t j1, index_t k, T alpha, const T* a,
                            index_t lda, const T* b, index_t ldb, T beta, T* c) {
  constexpr int row_major = 101, no_trans = 111, trans = 112;
  const int inc_a = trans_a ? int(lda) : 1;  // op(A) is one row: A's row, or A's column
  // op(B) = B^T (B stored [n, k]): c_j = B[j, :] . a, GEMV with B's rows j0..j1. Else B is [k, n]:
  // c = B^T a, GEMV with B transposed over its columns j0..j1.
  const T* b_block = trans_b ? b + j0 * ldb : b + j0;
  const int op = trans_b ? no_trans : trans;
  const int rows = trans_b ? int(j1 - j0) : int(k), cols = trans_b ? int(k) : int(j1 - j0);
  // BLAS may compute beta * c even for beta = 0, and c may be uninitialized memory (NaN * 0).
  if (beta == T(0)) std::fill(c + j0, c + j1, T(0));
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemv(row_major, op, rows, cols, alpha, b_block, int(ldb), a, inc_a, beta, c + j0, 1);
  } else {
    cblas_dgemv(row_major, op, rows, cols, alpha, b_block, int(ldb), a, inc_a, beta, c + j0, 1);
  }
}

/// C = alpha op(A) op(B) + beta C with the rows (or, when C is wider than tall, the columns) of C
/// split into gemm_block()s, each a single-threaded BLAS call.
template <class T>
void parallel_cblas_gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                         const T* b, index_t ldb, T beta, T* c, index_t ldc) {
  single_threaded_blas();
  if (m == 1) {
    // Bound by reading op(B): from 64K elements up its column blocks are shared out, so that
    // each core reads its block (from its own cache, call after call).
    const index_t chunk = n * k >= (index_t(1) << 16) ? gemv_block(n) : n;
    parallel_tasks((n + chunk - 1) / chunk, [&](index_t t) {
      const index_t j0 = t * chunk;
      cblas_row_times_matrix(trans_a, trans_b, j0, std::min(n, j0 + chunk), k, alpha, a, lda, b, ldb, beta, c);
    });
    return;
  }
  const bool split_rows = m >= n;
  const index_t extent = split_rows ? m : n;
  // Small products, or too few rows/columns to share: one call.
  if (double(m) * double(n) * double(k) < double(1 << 21) || extent < 128) {
    cblas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (gemm_tiled(m, n)) {
    const index_t rows = gemm_tile_rows(m), cols = gemm_tile_cols(n);
    const index_t row_tiles = (m + rows - 1) / rows, col_tiles = (n + cols - 1) / cols;
    parallel_tasks(row_tiles * col_tiles, [&](index_t t) {
      // Tile (r, c) of C from rows [r0, r1) of op(A) and columns [c0, c1) of op(B).
      const index_t r0 = t / col_tiles * rows, c0 = t % col_tiles * cols;
      const index_t r1 = std::min(m, r0 + rows), c1 = std::min(n, c0 + cols);
      const T* a_block = trans_a ? a + r0 : a + r0 * lda;
      const T* b_block = trans_b ? b + c0 * ldb : b + c0;
      cblas_gemm(trans_a, trans_b, r1 - r0, c1 - c0, k, alpha, a_block, lda, b_block, ldb, beta, c + r0 * ldc + c0,
                 ldc);
    });
    return;
  }
  const index_t chunk = gemm_block(extent);
  const index_t tasks = (extent + chunk - 1) / chunk;
  parallel_tasks(tasks, [&](index_t t) {
    const index_t b0 = t * chunk, b1 = std::min(extent, b0 + chunk);
    if (split_rows) {
      // Rows [b0, b1) of C come from rows [b0, b1) of op(A).
      const T* a_block = trans_a ? a + b0 : a + b0 * lda;
      cblas_gemm(trans_a, trans_b, b1 - b0, n, k, alpha, a_block, lda, b, ldb, beta, c + b0 * ldc, ldc);
    } else {
      // Columns [b0, b1) of C come from columns [b0, b1) of op(B).
      const T* b_block = trans_b ? b + b0 * ldb : b + b0;
      cblas_gemm(trans_a, trans_b, m, b1 - b0, k, alpha, a, lda, b_block, ldb, beta, c + b0, ldc);
    }
  });
}
#endif

/// Eigen's product; large ones are split into row blocks over the pool unless `split` is false.
template <class T>
void eigen_gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                const T* b, index_t ldb, T beta, T* c, index_t ldc, bool split = true) {
  using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using Stride = Eigen::OuterStride<>;
  // Row block [r0, r1) of C from the matching rows of op(A).
  auto block = [&](index_t r0, index_t r1) {
    const index_t rows = r1 - r0;
    if (rows <= 0) return;
    Eigen::Map<RowMat, 0, Stride> C(c + r0 * ldc, rows, n, Stride(ldc));
    auto run = [&](const auto& A) {
      auto product = [&](const auto& B) {
        if (beta == T(0)) {
          C.noalias() = alpha * (A * B);
        } else {
          C *= beta;
          C.noalias() += alpha * (A * B);
        }
      };
      if (trans_b) {
        product(Eigen::Map<const ColMat, 0, Stride>(b, k, n, Stride(ldb)));
      } else {
        product(Eigen::Map<const RowMat, 0, Stride>(b, k, n, Stride(ldb)));
      }
    };
    if (trans_a) {
      run(Eigen::Map<const ColMat, 0, Stride>(a + r0, rows, k, Stride(lda)));
    } else {
      run(Eigen::Map<const RowMat, 0, Stride>(a + r0 * lda, rows, k, Stride(lda)));
    }
  };
  const index_t flops = m * n * k;
  if (!split || flops < (index_t(1) << 18) || m < 128) {
    block(0, m);
    return;
  }
  const index_t chunk = gemm_block(m);
  parallel_tasks((m + chunk - 1) / chunk, [&](index_t t) { block(t * chunk, std::min(m, (t + 1) * chunk)); });
}

/// gemm (below) on the calling thread alone, for kernels that already run one task per thread
/// (a convolution's per-image work). k > 0.
template <class T>
void gemm_on_this_thread(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                         const T* b, index_t ldb, T beta, T* c, index_t ldc) {
#ifdef TESSERA_HAS_CBLAS
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    single_threaded_blas();
    cblas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
#endif
  eigen_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, false);
}
}  // namespace detail

/// C[m x n] = alpha * op(A) * op(B) + beta * C. op(A) is m x k: A is stored m x k (lda >= k) or,
/// with trans_a, k x m (lda >= m); likewise B. All matrices row-major.
template <class T>
void gemm(cpu, bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
          const T* b, index_t ldb, T beta, T* c, index_t ldc) {
  instrument::count_materialization();
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (index_t i = 0; i < m; ++i) {
      for (index_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    }
    return;
  }
  if constexpr (detail::dot_gemm_enabled && (std::is_same_v<T, float> || std::is_same_v<T, double>)) {
    if (detail::dot_gemm_applies(trans_a, trans_b, m, n, k)) {
      // Column blocks of whole tiles, one per thread (a dot_gemm output does not depend on where
      // its block starts); small products on the calling thread.
      const index_t R = detail::dot_gemm_rows, threads = detail::CpuPool::instance().threads();
      const index_t chunk = double(m) * double(n) * double(k) < double(1 << 21)
                                ? n
                                : std::max<index_t>(4 * R, ((n + threads - 1) / threads + R - 1) / R * R);
      detail::parallel_tasks((n + chunk - 1) / chunk, [&](index_t t) {
        const index_t j0 = t * chunk;
        detail::dot_gemm(m, j0, std::min(n, j0 + chunk), k, alpha, a, lda, b, ldb, beta, c, ldc);
      });
      return;
    }
  }
#ifdef TESSERA_HAS_CBLAS
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    detail::parallel_cblas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
#endif
  detail::eigen_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// C_i = alpha * op(A_i) op(B_i) + beta * C_i for i < batches, with X_i at x + i * stride_x
/// (a stride of 0 shares one matrix). On the CPU: one GEMM per batch.
template <class T>
void gemm_batched(cpu, bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                  index_t stride_a, const T* b, index_t ldb, index_t stride_b, T beta, T* c, index_t ldc, index_t stride_c,
                  index_t batches) {
  for (index_t i = 0; i < batches; ++i) {
    gemm(cpu{}, trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
  }
}

}  // namespace tessera
