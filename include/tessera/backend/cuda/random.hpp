// Random fills on the device: the Philox counter blocks of a draw computed by a kernel, one block
// per thread. The generator and the distributions are the CPU's (core/random.hpp), so a seed gives
// the same uniform values and dropout masks on both backends, and normal values that differ at most
// where the device's log/sin/cos round differently from the host's.
#pragma once

#include <algorithm>
#include <cstdint>

#include "tessera/backend/cuda/elementwise.hpp"
#include "tessera/core/random.hpp"

namespace tessera {

namespace detail::gpu {
#if defined(__CUDACC__)
template <class T, class Dist>
__global__ void __launch_bounds__(block_threads) random_fill_kernel(T* p, index_t n, Generator gen, std::uint64_t first,
                                                                    Dist dist) {
  constexpr index_t per = Dist::per_block;
  const index_t blocks = (n + per - 1) / per;
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < blocks; i += step) {
    const index_t left = n - i * per;
    dist.write(gen.at(first + static_cast<std::uint64_t>(i)), p + i * per, static_cast<int>(left < per ? left : per));
  }
}
#endif
}  // namespace detail::gpu

/// Fills device memory p[0, n) with the next values of `gen` under `dist` (see backend/cpu/device.hpp).
template <class T, class Dist>
void random_fill(cuda, T* p, index_t n, Generator& gen, const Dist& dist) {
  detail::gpu::require_nvcc<Dist>();
  constexpr index_t per = Dist::per_block;
  const index_t blocks = (n + per - 1) / per;
  const std::uint64_t first = gen.advance(static_cast<std::uint64_t>(blocks));
  if (n == 0) return;
#if defined(__CUDACC__)
  detail::gpu::random_fill_kernel<<<detail::gpu::grid_for(blocks), detail::gpu::block_threads, 0, cuda::stream()>>>(
      p, n, gen, first, dist);
  TESSERA_CUDA_CHECK(cudaGetLastError());
#else
  (void)p;
#endif
}

}  // namespace tessera
