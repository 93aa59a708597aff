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
}
#endif

namespace tessera {

namespace detail {
#ifdef TESSERA_HAS_CBLAS
/// Keeps OpenBLAS's thread count equal to tessera's.
inline void sync_blas_threads() {
  static int applied = 0;
  const int want = cpu::num_threads();
  if (openblas_set_num_threads && applied != want) {
    openblas_set_num_threads(want);
    applied = want;
  }
}
#endif

template <class T>
void eigen_gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                const T* b, index_t ldb, T beta, T* c, index_t ldc) {
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
  if (flops < (index_t(1) << 18)) {
    block(0, m);
    return;
  }
  parallel_for(m, 16, 1, block);
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
    detail::sync_blas_threads();
    constexpr int row_major = 101, no_trans = 111, trans = 112;
    const int ta = trans_a ? trans : no_trans, tb = trans_b ? trans : no_trans;
    if constexpr (std::is_same_v<T, float>) {
      cblas_sgemm(row_major, ta, tb, int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
    } else {
      cblas_dgemm(row_major, ta, tb, int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
    }
    return;
  }
#endif
  detail::eigen_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace tessera
