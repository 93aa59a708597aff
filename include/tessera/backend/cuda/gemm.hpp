// GEMM on the device through cuBLAS. tessera's matrices are row-major and cuBLAS's column-major:
// a row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T, so the operands are passed
// swapped and nothing is transposed in memory. One cuBLAS handle per process, bound to tessera's
// stream. Math mode is cuBLAS's default (full FP32, no TF32), as PyTorch's default.
#pragma once

#include <cublas_v2.h>

#include <string>
#include <type_traits>

#include "tessera/backend/cuda/device.hpp"
#include "tessera/backend/cuda/error.hpp"
#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/instrument.hpp"

namespace tessera {

namespace detail::gpu {

/// The process's cuBLAS handle (created on first use, on tessera's stream).
inline cublasHandle_t cublas_handle() {
  static const cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    TESSERA_CUDA_CHECK(cublasCreate(&h));
    TESSERA_CUDA_CHECK(cublasSetStream(h, cuda::stream()));
    return h;
  }();
  return handle;
}

/// cuBLAS takes int extents; larger ones are an error, not a silent truncation.
inline int blas_int(index_t v, const char* what) {
  if (v < 0 || v > 0x7fffffff) throw shape_error(std::string("cuda gemm: ") + what + " exceeds cuBLAS's int range");
  return static_cast<int>(v);
}

}  // namespace detail::gpu

/// C[m x n] = alpha * op(A) * op(B) + beta * C, all row-major (see backend/cpu/gemm.hpp).
template <class T>
void gemm(cuda, bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
          const T* b, index_t ldb, T beta, T* c, index_t ldc) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "tessera: matmul on cuda tensors supports float and double");
  instrument::count_materialization();
  if (m == 0 || n == 0) return;
  using detail::gpu::blas_int;
  if (k == 0 && beta == T(0)) {
    TESSERA_CUDA_CHECK(cudaMemset2DAsync(c, static_cast<std::size_t>(ldc) * sizeof(T), 0,
                                         static_cast<std::size_t>(n) * sizeof(T), static_cast<std::size_t>(m),
                                         cuda::stream()));
    return;
  }
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int M = blas_int(n, "n"), N = blas_int(m, "m"), K = blas_int(k, "k");
  const int LA = blas_int(lda, "lda"), LB = blas_int(ldb, "ldb"), LC = blas_int(ldc, "ldc");
  if constexpr (std::is_same_v<T, float>) {
    TESSERA_CUDA_CHECK(cublasSgemm(detail::gpu::cublas_handle(), op_b, op_a, M, N, K, &alpha, b, LB, a, LA, &beta, c, LC));
  } else {
    TESSERA_CUDA_CHECK(cublasDgemm(detail::gpu::cublas_handle(), op_b, op_a, M, N, K, &alpha, b, LB, a, LA, &beta, c, LC));
  }
}

/// C_i = alpha * op(A_i) op(B_i) + beta * C_i for i < batches (X_i at x + i * stride_x): one
/// cublas<S|D>gemmStridedBatched launch.
template <class T>
void gemm_batched(cuda, bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* a, index_t lda,
                  index_t stride_a, const T* b, index_t ldb, index_t stride_b, T beta, T* c, index_t ldc, index_t stride_c,
                  index_t batches) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "tessera: matmul on cuda tensors supports float and double");
  if (m == 0 || n == 0 || batches == 0) return;
  if (k == 0) {
    for (index_t i = 0; i < batches; ++i) {
      gemm(cuda{}, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c + i * stride_c, ldc);
    }
    return;
  }
  instrument::count_materialization();
  using detail::gpu::blas_int;
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int M = blas_int(n, "n"), N = blas_int(m, "m"), K = blas_int(k, "k"), count = blas_int(batches, "batches");
  const int LA = blas_int(lda, "lda"), LB = blas_int(ldb, "ldb"), LC = blas_int(ldc, "ldc");
  const auto sa = static_cast<long long>(stride_a), sb = static_cast<long long>(stride_b), sc = static_cast<long long>(stride_c);
  if constexpr (std::is_same_v<T, float>) {
    TESSERA_CUDA_CHECK(cublasSgemmStridedBatched(detail::gpu::cublas_handle(), op_b, op_a, M, N, K, &alpha, b, LB, sb, a, LA,
                                                 sa, &beta, c, LC, sc, count));
  } else {
    TESSERA_CUDA_CHECK(cublasDgemmStridedBatched(detail::gpu::cublas_handle(), op_b, op_a, M, N, K, &alpha, b, LB, sb, a, LA,
                                                 sa, &beta, c, LC, sc, count));
  }
}

}  // namespace tessera
