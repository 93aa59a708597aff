// CUDA kernels for fused elementwise passes: dst = expr, and several same-shaped outputs at once
// (autodiff's gradients, optimizer updates). One kernel launch per pass, whatever the expression:
// the device evaluator tree (device_eval.hpp) is the kernel's parameter.
//
// Two kernel forms, chosen on the host per pass:
//   flat     the coalesced plan has rank 1 (operands dense or broadcast scalars): grid-stride over
//            elements, 16-byte vector loads and stores when every buffer is aligned;
//   strided  any other plan: each element's multi-index is unravelled and every operand reads
//            through its own strides (0 along broadcast axes).
// Kernels need nvcc: including this header in a host-compiled file is fine, but evaluating an
// expression over cuda tensors there is a compile error that says to compile the file with nvcc.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <tuple>
#include <utility>
#include <vector>

#include "tessera/backend/cuda/device.hpp"
#include "tessera/backend/cuda/device_eval.hpp"
#include "tessera/core/instrument.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/expr/evaluator.hpp"

namespace tessera {

namespace detail::gpu {

/// Threads per block of tessera's kernels.
inline constexpr int block_threads = 256;

/// Streaming multiprocessors of the current device (1 when it cannot be asked).
inline int multiprocessor_count() {
  static const int count = [] {
    int device = 0, n = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || n < 1) {
      (void)cudaGetLastError();
      n = 1;
    }
    return n;
  }();
  return count;
}

/// Blocks for a grid-stride loop over `work` items: one item per thread up to a few waves of the
/// device; beyond that threads loop.
inline unsigned grid_for(index_t work) {
  const index_t wanted = (work + block_threads - 1) / block_threads;
  const index_t cap = static_cast<index_t>(multiprocessor_count()) * 32;
  return static_cast<unsigned>(std::max<index_t>(1, std::min(wanted, cap)));
}

/// Device scratch memory from the caching pool for the length of one call (workspaces, flags).
/// Freed blocks are reused in stream order, so it may be released right after the launch.
class Scratch {
 public:
  explicit Scratch(std::size_t bytes) : bytes_(bytes), data_(bytes ? cuda::allocate(bytes) : nullptr) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    if (data_) cuda::deallocate(data_, bytes_);
  }
  void* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return bytes_; }

 private:
  std::size_t bytes_;
  void* data_;
};

/// Says how to compile device expressions when a host compiler reaches one.
template <class E>
constexpr void require_nvcc() {
#if !defined(__CUDACC__)
  static_assert(dependent_false_v<E>,
                "tessera: expressions over cuda tensors run as CUDA kernels; compile this file with nvcc "
                "(a .cu file, or set_source_files_properties(file PROPERTIES LANGUAGE CUDA))");
#endif
}

#if defined(__CUDACC__)

template <int V, class T, std::size_t N, class P>
__global__ void __launch_bounds__(block_threads) flat_kernel(Outputs<T, N> out, P evs, index_t n, bool vectors) {
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  const index_t first = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  index_t done = 0;
  if constexpr (V > 1) {
    if (vectors) {
      const index_t groups = n / V;
      for (index_t g = first; g < groups; g += step) store_vector<V>(out, evs, g * V);
      done = groups * V;
    }
  }
  for (index_t i = done + first; i < n; i += step) store_flat(out, evs, i);
}

template <class T, std::size_t N, class P>
__global__ void __launch_bounds__(block_threads) strided_kernel(Outputs<T, N> out, P evs, PassShape shape, index_t n) {
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  index_t idx[max_rank];
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    unravel(i, shape, idx);
    store_at(out, evs, idx, shape.rank);
  }
}

/// Queues one pass writing every output of `out` from the matching evaluator of `evs`.
template <class T, std::size_t N, class P>
void launch_pass(const Outputs<T, N>& out, const P& evs, const IterPlan& plan, index_t total) {
  constexpr int V = vector_width_v<T>;
  if (plan.rank == 1) {
    const bool vectors = V > 1 && out.stores_vectors(V) && evs.loads_vectors(V);
    const index_t work = vectors ? (total + V - 1) / V : total;
    flat_kernel<V><<<grid_for(work), block_threads, 0, cuda::stream()>>>(out, evs, total, vectors);
  } else {
    strided_kernel<<<grid_for(total), block_threads, 0, cuda::stream()>>>(out, evs, pass_shape(plan), total);
  }
  TESSERA_CUDA_CHECK(cudaGetLastError());
}

#endif  // __CUDACC__

}  // namespace detail::gpu

/// One fused pass on the device: dst[i] = expr[i] (expr broadcast to dst's shape). The caller has
/// checked shapes and aliasing.
template <class T, std::size_t R, class E>
void elementwise_assign(cuda, Tensor<T, R, cuda>& dst, const E& expr) {
  detail::gpu::require_nvcc<E>();
#if defined(__CUDACC__)
  const index_t total = dst.size();
  if (total == 0) return;
  instrument::count_elementwise_pass();
  const detail::IterPlan plan = detail::pass_plan(dst.shape(), dst.strides(), expr);
  // The host evaluator holds materialized operands alive until the kernel is queued.
  const auto host_ev = detail::make_evaluator(expr, dst.shape(), plan);
  detail::gpu::Outputs<T, 1> out{{dst.data()}, {}};
  plan.map(dst.strides(), out.strides[0]);
  detail::gpu::launch_pass(out, detail::gpu::make_pack(detail::gpu::to_device(host_ev)), plan, total);
#else
  (void)dst;
  (void)expr;
#endif
}

/// One pass writing several contiguous outputs of the same shape: dsts[k] = exprs[k].
template <class T, std::size_t R, class... E, std::size_t... K>
void elementwise_assign_multi(cuda, const std::array<Tensor<T, R, cuda>*, sizeof...(E)>& dsts, const std::tuple<E...>& exprs,
                              std::index_sequence<K...>) {
  detail::gpu::require_nvcc<std::tuple<E...>>();
#if defined(__CUDACC__)
  const Shape<R> shape = dsts[0]->shape();
  const index_t total = numel(shape);
  if (total == 0) return;
  instrument::count_elementwise_pass();
  const detail::IterPlan plan = detail::pass_plan(shape, dsts[0]->strides(), std::get<K>(exprs)...);
  const auto host_evs = std::make_tuple(detail::make_evaluator(std::get<K>(exprs), shape, plan)...);
  detail::gpu::Outputs<T, sizeof...(E)> out{{dsts[K]->data()...}, {}};
  for (std::size_t o = 0; o < sizeof...(E); ++o) plan.map(dsts[o]->strides(), out.strides[o]);
  detail::gpu::launch_pass(out, detail::gpu::make_pack(detail::gpu::to_device(std::get<K>(host_evs))...), plan, total);
#else
  (void)dsts;
  (void)exprs;
#endif
}

}  // namespace tessera
