// CUDA softmax / log_softmax along one axis of a contiguous tensor viewed as [outer, n, inner].
// Along the innermost axis (inner == 1) one warp handles a row: maximum, sum of exponentials and
// the output in three strided sweeps, combined with CUB's WarpReduce. Along another axis one
// thread handles a column, its neighbours reading neighbouring elements.
#pragma once

#include <cmath>
#include <limits>
#include <type_traits>

#if defined(__CUDACC__)
#include <cub/warp/warp_reduce.cuh>
#endif

#include "tessera/backend/cuda/elementwise.hpp"
#include "tessera/backend/cuda/reduce.hpp"
#include "tessera/expr/unary_ops.hpp"

namespace tessera {

namespace detail::gpu {

#if defined(__CUDACC__)

template <class T>
__global__ void __launch_bounds__(block_threads) softmax_rows(T* out, const T* in, index_t rows, index_t n, bool log) {
  using WarpReduce = cub::WarpReduce<T>;
  __shared__ typename WarpReduce::TempStorage temp[block_threads / 32];
  const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
  const index_t warps = static_cast<index_t>(gridDim.x) * (block_threads / 32);
  const ops::Exp exp_op;
  for (index_t row = static_cast<index_t>(blockIdx.x) * (block_threads / 32) + warp; row < rows; row += warps) {
    const T* x = in + row * n;
    T* y = out + row * n;
    T m = -std::numeric_limits<T>::infinity();
    for (index_t j = lane; j < n; j += 32) m = ops::MaxReducer{}(m, x[j]);
    m = WarpReduce(temp[warp]).Reduce(m, Combine<ops::MaxReducer, T>{});
    __syncwarp();  // temp is reused by the next reduction
    m = softmax_shift(__shfl_sync(0xffffffffu, m, 0));
    T s = 0;
    for (index_t j = lane; j < n; j += 32) {
      const T e = exp_op(x[j] - m);
      if (!log) y[j] = e;
      s += e;
    }
    s = WarpReduce(temp[warp]).Sum(s);
    __syncwarp();
    s = __shfl_sync(0xffffffffu, s, 0);
    if (log) {
      const T log_s = std::log(s);
      for (index_t j = lane; j < n; j += 32) y[j] = (x[j] - m) - log_s;
    } else {
      const T inv = T(1) / s;
      for (index_t j = lane; j < n; j += 32) y[j] *= inv;
    }
  }
}

template <class T>
__global__ void __launch_bounds__(block_threads) softmax_columns(T* out, const T* in, index_t outer, index_t n,
                                                                 index_t inner, bool log) {
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  const ops::Exp exp_op;
  for (index_t q = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; q < outer * inner; q += step) {
    const index_t base = (q / inner) * n * inner + q % inner;
    const T* x = in + base;
    T* y = out + base;
    T m = -std::numeric_limits<T>::infinity();
    for (index_t k = 0; k < n; ++k) m = ops::MaxReducer{}(m, x[k * inner]);
    m = softmax_shift(m);
    T s = 0;
    for (index_t k = 0; k < n; ++k) {
      const T e = exp_op(x[k * inner] - m);
      if (!log) y[k * inner] = e;
      s += e;
    }
    if (log) {
      const T log_s = std::log(s);
      for (index_t k = 0; k < n; ++k) y[k * inner] = (x[k * inner] - m) - log_s;
    } else {
      const T inv = T(1) / s;
      for (index_t k = 0; k < n; ++k) y[k * inner] *= inv;
    }
  }
}

#endif  // __CUDACC__

}  // namespace detail::gpu

/// out = softmax(in) (or log_softmax when `log`) along `axis`; both contiguous, same shape.
template <class T, std::size_t R>
void softmax_into(cuda, Tensor<T, R, cuda>& out, const Tensor<T, R, cuda>& in, std::size_t axis, bool log) {
  static_assert(std::is_floating_point_v<T>, "tessera::softmax needs a floating-point tensor");
  detail::gpu::require_nvcc<Tensor<T, R, cuda>>();
#if defined(__CUDACC__)
  instrument::count_materialization();
  index_t outer = 1, inner = 1;
  for (std::size_t i = 0; i < axis; ++i) outer *= in.shape()[i];
  for (std::size_t i = axis + 1; i < R; ++i) inner *= in.shape()[i];
  const index_t n = in.shape()[axis];
  if (out.size() == 0 || n == 0) return;
  using namespace detail::gpu;
  if (inner == 1) {
    constexpr index_t rows_per_block = block_threads / 32;
    const index_t blocks = std::min<index_t>((outer + rows_per_block - 1) / rows_per_block,
                                             static_cast<index_t>(multiprocessor_count()) * 32);
    softmax_rows<<<static_cast<unsigned>(blocks), block_threads, 0, cuda::stream()>>>(out.data(), in.data(), outer, n, log);
  } else {
    softmax_columns<<<grid_for(outer * inner), block_threads, 0, cuda::stream()>>>(out.data(), in.data(), outer, n, inner,
                                                                                  log);
  }
  TESSERA_CUDA_CHECK(cudaGetLastError());
#else
  (void)out;
  (void)in;
  (void)axis;
  (void)log;
#endif
}

}  // namespace tessera
