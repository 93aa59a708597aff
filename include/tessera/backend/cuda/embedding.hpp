// Embedding lookups on the device: row gather, and scatter-add with atomics for the gradient.
// An index out of range cannot throw inside a kernel: the kernel records the first offending
// position, and the host reads it back after the launch (a synchronization) to throw the same
// tessera::index_error as the CPU backend.
#pragma once

#include <cstdint>
#include <limits>

#include "tessera/backend/op_args.hpp"
#include "tessera/backend/cuda/elementwise.hpp"

namespace tessera {

namespace detail::gpu {
#if defined(__CUDACC__)
/// The table row position p refers to, or -1 when its index is out of range (then p is recorded
/// in first_bad if it is the first such position).
template <class I>
__device__ std::int64_t checked_row(const I* ids, index_t p, index_t rows, unsigned long long* first_bad) {
  const auto id = static_cast<std::int64_t>(ids[p]);
  if (id >= 0 && id < rows) return id;
  atomicMin(first_bad, static_cast<unsigned long long>(p));
  return -1;
}

template <class T, class I>
__global__ void __launch_bounds__(block_threads) embedding_gather(const T* table, index_t rows, index_t dim, const I* ids,
                                                                  index_t count, T* out, unsigned long long* first_bad) {
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < count * dim; k += step) {
    const std::int64_t row = checked_row(ids, k / dim, rows, first_bad);
    out[k] = row < 0 ? T(0) : table[row * dim + k % dim];
  }
}

template <class T, class I>
__global__ void __launch_bounds__(block_threads) embedding_scatter_add(const T* dy, const I* ids, index_t count, T* grad,
                                                                       index_t rows, index_t dim, index_t skip,
                                                                       unsigned long long* first_bad) {
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < count * dim; k += step) {
    const std::int64_t row = checked_row(ids, k / dim, rows, first_bad);
    if (row >= 0 && row != skip) atomicAdd(grad + row * dim + k % dim, dy[k]);
  }
}

/// A device word holding the first bad position (all ones: none).
struct BadIndexFlag {
  Scratch memory{sizeof(unsigned long long)};
  BadIndexFlag() { TESSERA_CUDA_CHECK(cudaMemsetAsync(memory.data(), 0xff, sizeof(unsigned long long), cuda::stream())); }
  unsigned long long* word() const { return static_cast<unsigned long long*>(memory.data()); }
  /// Throws the CPU backend's index_error when a kernel recorded a position (synchronizes).
  template <class I>
  void check(const I* ids, index_t rows) const {
    unsigned long long bad = 0;
    cuda::copy_to_host(&bad, word(), sizeof bad);
    if (bad == std::numeric_limits<unsigned long long>::max()) return;
    I id{};
    cuda::copy_to_host(&id, ids + bad, sizeof(I));
    check_embedding_index(static_cast<std::int64_t>(id), rows, static_cast<index_t>(bad));
  }
};
#endif
}  // namespace detail::gpu

/// out[p, :] = table[ids[p], :] (see backend/cpu/embedding.hpp).
template <class T, class I>
void embedding_forward(cuda, const T* table, index_t rows, index_t dim, const I* ids, index_t count, T* out) {
  detail::gpu::require_nvcc<T>();
  if (count * dim == 0) return;
#if defined(__CUDACC__)
  const detail::gpu::BadIndexFlag flag;
  detail::gpu::embedding_gather<<<detail::gpu::grid_for(count * dim), detail::gpu::block_threads, 0, cuda::stream()>>>(
      table, rows, dim, ids, count, out, flag.word());
  TESSERA_CUDA_CHECK(cudaGetLastError());
  flag.check(ids, rows);
#else
  (void)table, (void)rows, (void)ids, (void)out;
#endif
}

/// grad = 0, then grad[ids[p], :] += dy[p, :] for every p whose index is not `skip`.
template <class T, class I>
void embedding_backward(cuda, const T* dy, const I* ids, index_t count, T* grad, index_t rows, index_t dim, index_t skip) {
  detail::gpu::require_nvcc<T>();
#if defined(__CUDACC__)
  cuda::fill_zero(grad, static_cast<std::size_t>(rows * dim) * sizeof(T));
  if (count * dim == 0) return;
  const detail::gpu::BadIndexFlag flag;
  detail::gpu::embedding_scatter_add<<<detail::gpu::grid_for(count * dim), detail::gpu::block_threads, 0, cuda::stream()>>>(
      dy, ids, count, grad, rows, dim, skip, flag.word());
  TESSERA_CUDA_CHECK(cudaGetLastError());
  flag.check(ids, rows);
#else
  (void)dy, (void)ids, (void)count, (void)grad, (void)rows, (void)dim, (void)skip;
#endif
}

}  // namespace tessera
