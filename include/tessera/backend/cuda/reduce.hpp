// CUDA reductions: sum/mean/prod/max/min/all/any over any axes of an elementwise expression (the
// expression is evaluated inside the reduction kernel, not stored first), prod's adjoint
// (exclusive products), and argmax/argmin. Block-level combining goes through CUB (BlockReduce, BlockScan).
//
// Plan per reduce_into call, from the coalesced plan's kept and reduced axes:
//   few inputs per output (<= 64), or many outputs along a kept innermost axis: one thread per
//     output, neighbouring threads reading neighbouring elements;
//   otherwise one 256-thread block per output, split over several blocks when there are too few
//     outputs to fill the device; the partial results are combined by a second launch.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#if defined(__CUDACC__)
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#endif

#include "tessera/backend/cuda/elementwise.hpp"
#include "tessera/core/error.hpp"
#include "tessera/expr/reduce.hpp"

namespace tessera {

namespace detail::gpu {

#if defined(__CUDACC__)

/// A reducer as the binary functor CUB calls.
template <class Red, class T>
struct Combine {
  Red red;
  __device__ T operator()(const T& a, const T& b) const { return red(a, b); }
};

template <class T>
struct Multiply {
  __device__ T operator()(const T& a, const T& b) const { return a * b; }
};

template <class T>
TESSERA_HD T scaled(T v, T scale) {
  return scale == T(1) ? v : static_cast<T>(v * scale);
}

/// One thread per output.
template <class Red, class T, class Ev>
__global__ void __launch_bounds__(block_threads) reduce_per_thread(T* out, Ev ev, ReduceShape s, T scale) {
  const Red red{};
  index_t idx[max_rank];
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t o = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < s.outputs; o += step) {
    T acc = Red::template identity<T>();
    for (index_t r = 0; r < s.count; ++r) {
      reduce_index(s, o, r, idx);
      acc = red(acc, static_cast<T>(ev.at(idx, s.rank)));
    }
    out[o] = scaled(acc, scale);
  }
}

/// Block (blockIdx.x, blockIdx.y) folds part y of output x's inputs; `splits` parts per output.
/// With one part the block writes the scaled result, else the raw partial out[x * splits + y].
template <class Red, class T, class Ev>
__global__ void __launch_bounds__(block_threads) reduce_per_block(T* out, Ev ev, ReduceShape s, index_t splits, T scale) {
  const Red red{};
  const index_t o = blockIdx.x, part = blockIdx.y;
  index_t idx[max_rank];
  T acc = Red::template identity<T>();
  for (index_t r = part * blockDim.x + threadIdx.x; r < s.count; r += splits * blockDim.x) {
    reduce_index(s, o, r, idx);
    acc = red(acc, static_cast<T>(ev.at(idx, s.rank)));
  }
  using BlockReduce = cub::BlockReduce<T, block_threads>;
  __shared__ typename BlockReduce::TempStorage temp;
  const T total = BlockReduce(temp).Reduce(acc, Combine<Red, T>{red});
  if (threadIdx.x == 0) out[o * splits + part] = splits == 1 ? scaled(total, scale) : total;
}

/// Queues the reduction of `ev` (read through `s`) into the contiguous outputs at `out`.
template <class Red, class T, class Ev>
void launch_reduce(T* out, const Ev& ev, const ReduceShape& s, T scale, bool innermost_kept) {
  if (s.outputs > 0x7fffffff) throw shape_error("cuda reductions: more than 2^31 - 1 outputs");
  if (s.count <= 64 || (innermost_kept && s.outputs >= 8192)) {
    reduce_per_thread<Red><<<grid_for(s.outputs), block_threads, 0, cuda::stream()>>>(out, ev, s, scale);
    TESSERA_CUDA_CHECK(cudaGetLastError());
    return;
  }
  // Enough blocks for a few waves, each folding at least 2048 inputs.
  const index_t want_blocks = static_cast<index_t>(multiprocessor_count()) * 4;
  index_t splits = std::max<index_t>(1, want_blocks / s.outputs);
  splits = std::min<index_t>({splits, (s.count + 2047) / 2048, 65535});
  splits = std::max<index_t>(splits, 1);
  const dim3 grid(static_cast<unsigned>(s.outputs), static_cast<unsigned>(splits));
  if (splits == 1) {
    reduce_per_block<Red><<<grid, block_threads, 0, cuda::stream()>>>(out, ev, s, index_t{1}, scale);
    TESSERA_CUDA_CHECK(cudaGetLastError());
    return;
  }
  Tensor<T, 1, cuda> partial = Tensor<T, 1, cuda>::uninitialized(Shape<1>{s.outputs * splits});
  reduce_per_block<Red><<<grid, block_threads, 0, cuda::stream()>>>(partial.data(), ev, s, splits, scale);
  TESSERA_CUDA_CHECK(cudaGetLastError());
  // Second pass: the partials as an [outputs, splits] buffer reduced over its last axis.
  ReduceShape p;
  p.rank = 2;
  p.dims[0] = s.outputs;
  p.dims[1] = splits;
  p.kept[0] = 0;
  p.n_kept = 1;
  p.red[0] = 1;
  p.n_red = 1;
  p.count = splits;
  p.outputs = s.outputs;
  Leaf<T> leaf{partial.data(), {}};
  leaf.strides[0] = splits;
  leaf.strides[1] = 1;
  reduce_per_block<Red><<<dim3(static_cast<unsigned>(s.outputs), 1), block_threads, 0, cuda::stream()>>>(
      out, leaf, p, index_t{1}, scale);
  TESSERA_CUDA_CHECK(cudaGetLastError());
}

/// Block x computes, for reduction group x, every element's product of the others times g[x]: a
/// forward exclusive scan (prefix products) written to out, then a backward one (starting from
/// g[x]) multiplied in.
template <class T>
__global__ void __launch_bounds__(block_threads) prod_adjoint_kernel(T* out, Leaf<T> x, ReduceShape s, const T* g) {
  using BlockScan = cub::BlockScan<T, block_threads>;
  __shared__ typename BlockScan::TempStorage temp;
  const index_t o = blockIdx.x;
  index_t idx[max_rank];
  auto offset = [&](index_t r) {
    reduce_index(s, o, r, idx);
    index_t off = 0;
    for (int k = 0; k < s.rank; ++k) off += idx[k] * x.strides[k];
    return off;
  };
  for (int backward = 0; backward < 2; ++backward) {
    T carry = backward ? g[o] : T(1);
    for (index_t base = 0; base < s.count; base += blockDim.x) {
      const index_t t = base + threadIdx.x;
      const index_t r = backward ? s.count - 1 - t : t;
      const bool live = t < s.count;
      const index_t off = live ? offset(r) : 0;
      const T v = live ? x.data[off] : T(1);
      T before, tile;
      BlockScan(temp).ExclusiveScan(v, before, T(1), Multiply<T>{}, tile);
      if (live) out[off] = backward ? out[off] * (carry * before) : carry * before;
      carry *= tile;
      __syncthreads();  // temp is reused by the next tile
    }
  }
}

/// out[q] = index of the largest (Largest) or smallest element of row q of [outer, n, inner].
template <bool Largest, class T>
__global__ void __launch_bounds__(block_threads) arg_reduce_kernel(std::int64_t* out, const T* in, index_t outer, index_t n,
                                                                   index_t inner) {
  const index_t step = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t q = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; q < outer * inner; q += step) {
    out[q] = arg_extremum<Largest>(in + (q / inner) * n * inner + q % inner, n, inner);
  }
}

#endif  // __CUDACC__

}  // namespace detail::gpu

/// out = reduce(input) over the axes flagged in `reduced`, each result multiplied by `scale`;
/// `out` is contiguous with the kept extents. The input expression is evaluated in the kernel.
template <class Red, class T, std::size_t RO, std::size_t RI, class E>
void reduce_into(cuda, Tensor<T, RO, cuda>& out, const E& input, const std::array<bool, RI>& reduced, const Red& red,
                 T scale) {
  detail::gpu::require_nvcc<E>();
  (void)red;
#if defined(__CUDACC__)
  instrument::count_materialization();
  const Shape<RI> in_shape = input.shape();
  if (out.size() == 0) return;
  if (numel(in_shape) == 0) {
    if (!Red::has_identity) {
      throw shape_error(std::string(Red::name) + ": cannot reduce an empty extent of shape " + shape_to_string(in_shape));
    }
    out.fill(detail::gpu::scaled(Red::template identity<T>(), scale));
    return;
  }
  const detail::IterPlan plan = detail::reduction_plan(input, reduced).plan;
  const auto host_ev = detail::make_evaluator(input, in_shape, plan);
  const detail::gpu::ReduceShape s = detail::gpu::reduce_shape(plan);
  detail::gpu::launch_reduce<Red>(out.data(), detail::gpu::to_device(host_ev), s, scale, !plan.reduced[plan.rank - 1]);
#else
  (void)out;
  (void)input;
  (void)reduced;
  (void)scale;
#endif
}

/// prod's adjoint: out[i] = g[k] * (the product of the other elements of x's reduction group k of
/// i), g in row-major order of the kept axes (backend/cpu/reduce.hpp). The groups' products p are
/// not needed here: prefix and suffix products cost one scan each, no more than a division.
template <class T, std::size_t R>
void prod_adjoint_into(cuda, Tensor<T, R, cuda>& out, const Tensor<T, R, cuda>& x, const std::array<bool, R>& reduced,
                       const Tensor<T, 1, cuda>& g, const Tensor<T, 1, cuda>& p) {
  detail::gpu::require_nvcc<Tensor<T, R, cuda>>();
  (void)p;
#if defined(__CUDACC__)
  if (!out.is_contiguous()) {
    auto tmp = Tensor<T, R, cuda>::uninitialized(x.shape());
    prod_adjoint_into(cuda{}, tmp, x, reduced, g, p);
    out.assign(tmp);
    return;
  }
  const auto xc = x.contiguous();
  const auto gc = g.contiguous();
  if (xc.size() == 0) return;
  const auto strides = contiguous_strides(xc.shape());
  const detail::IterPlan plan = detail::make_plan(xc.shape(), std::vector<Shape<R>>{strides}, reduced.data());
  const detail::gpu::ReduceShape s = detail::gpu::reduce_shape(plan);
  detail::gpu::Leaf<T> leaf{xc.data(), {}};
  plan.map(strides, leaf.strides);
  if (s.outputs > 0x7fffffff) throw shape_error("cuda prod gradient: more than 2^31 - 1 groups");
  detail::gpu::prod_adjoint_kernel<<<static_cast<unsigned>(s.outputs), detail::gpu::block_threads, 0, cuda::stream()>>>(
      out.data(), leaf, s, gc.data());
  TESSERA_CUDA_CHECK(cudaGetLastError());
#else
  (void)out;
  (void)x;
  (void)reduced;
  (void)g;
#endif
}

/// Index of the largest (Largest) or smallest element along `axis` of a contiguous input.
template <bool Largest, class T, std::size_t R>
void arg_reduce_into(cuda, std::bool_constant<Largest>, Tensor<std::int64_t, (R > 0 ? R - 1 : 0), cuda>& out, const Tensor<T, R, cuda>& in,
                     std::size_t axis) {
  detail::gpu::require_nvcc<Tensor<T, R, cuda>>();
#if defined(__CUDACC__)
  instrument::count_materialization();
  index_t outer = 1, inner = 1;
  for (std::size_t i = 0; i < axis; ++i) outer *= in.shape()[i];
  for (std::size_t i = axis + 1; i < R; ++i) inner *= in.shape()[i];
  const index_t n = in.shape()[axis];
  if (n == 0) throw shape_error(std::string(Largest ? "argmax" : "argmin") + ": axis " + std::to_string(axis) +
                                " of shape " + shape_to_string(in.shape()) + " is empty");
  if (outer * inner == 0) return;
  detail::gpu::arg_reduce_kernel<Largest><<<detail::gpu::grid_for(outer * inner), detail::gpu::block_threads, 0,
                                            cuda::stream()>>>(out.data(), in.data(), outer, n, inner);
  TESSERA_CUDA_CHECK(cudaGetLastError());
#else
  (void)out;
  (void)in;
  (void)axis;
#endif
}

}  // namespace tessera
