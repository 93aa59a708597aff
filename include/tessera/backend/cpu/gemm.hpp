// CPU GEMM: C = alpha * op(A) * op(B) + beta * C on row-major operands with leading dimensions.
// float/double go to a CBLAS (OpenBLAS) when TESSERA_HAS_CBLAS is defined (the CMake package does
// this when it finds OpenBLAS); otherwise, and for integer types, Eigen's GEMM runs on row blocks
// of C in parallel on tessera's thread pool.
#pragma once

#include <algorithm>
#include <type_traits>

#include <Eigen/Core>

#include "tessera/backend/cpu/device.hpp"
#include "tessera/core/config.hpp"
#include "tessera/core/instrument.hpp"

#ifdef TESSERA_HAS_CBLAS
extern "C" {
// The two CBLAS entry points tessera needs, declared here so no cblas.h include path is required.
// Enum values are fixed by the CBLAS standard: RowMajor = 101, NoTrans = 111, Trans = 112.
void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc);
void cblas_dgemm(int order, int trans_a, int trans_b, int m, int n, int k, double alpha, const double* a, int lda,
                 const double* b, int ldb, double beta, double* c, int ldc);
// Present in OpenBLAS only; weak so that other CBLAS implementations still link.
void openblas_set_num_threads(int) __attribute__((weak));
int openblas_get_num_threads() __attribute__((weak));
}
#endif

namespace tessera {

namespace detail {
/// The rows (or columns) of a product's C are split into blocks that depend on the extent alone,
/// never on the thread count: a BLAS call's blocking (and so its rounding) can depend on the size
/// of the block it is given, so blocks that moved with the thread count would make results
/// depend on it. Up to 16 blocks of a multiple of 64 (the kernels' panel sizes divide it), shared
/// out to however many threads there are.
inline index_t gemm_block(index_t extent) {
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

/// C = alpha op(A) op(B) + beta C with the rows (or, when C is wider than tall, the columns) of C
/// split into gemm_block()s, each a single-threaded BLAS call.
template <class T>
void parallel_cblas_gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                         const T* b, index_t ldb, T beta, T* c, index_t ldc) {
  single_threaded_blas();
  const bool split_rows = m >= n;
  const index_t extent = split_rows ? m : n;
  // Small products, or too few rows/columns to share: one call.
  if (double(m) * double(n) * double(k) < double(1 << 21) || extent < 128) {
    cblas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
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
