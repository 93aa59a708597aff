// The CUDA backend policy: Tensor<T, R, tessera::cuda> lives in device memory. Memory comes from a
// caching pool (memory.hpp); copies and fills run on one stream per process, so work issued by
// tessera is ordered and a freed block can be reused by the next allocation at once.
//
// This header needs the CUDA toolkit's headers and links (target tessera::cuda); it compiles with
// the host compiler. Expression kernels and the cuBLAS/cuDNN entries are the next stage: until
// they land, what runs on the device is allocation, zero fills and copies (to<cuda>(), to<cpu>()).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "tessera/backend/cuda/error.hpp"
#include "tessera/backend/cuda/memory.hpp"
#include "tessera/core/instrument.hpp"

namespace tessera {

/// The CUDA backend policy. Satisfies backend/concept.hpp.
struct cuda {
  static constexpr const char* name = "cuda";
  /// Host code must not dereference device pointers: copy with .to<cpu>().
  static constexpr bool host_accessible = false;

  /// Device memory for `bytes` bytes from the caching pool; throws tessera::out_of_memory when the
  /// device has none left, cuda_error when there is no usable device.
  static void* allocate(std::size_t bytes) {
    instrument::count_allocation();
    return pool().allocate(bytes);
  }
  static void deallocate(void* p, std::size_t bytes) noexcept { pool().deallocate(p, bytes); }
  /// Frees the pool's cached blocks (cudaFree); tensors still alive keep theirs.
  static void release_cached_memory() noexcept { pool().release_cached(); }
  static detail::DevicePoolStats memory_stats() { return pool().stats(); }

  /// Device to host; returns when the bytes have arrived.
  static void copy_to_host(void* host_dst, const void* src, std::size_t bytes) {
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream()));
  }
  /// Host to device; returns when the host buffer may be reused.
  static void copy_from_host(void* dst, const void* host_src, std::size_t bytes) {
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, stream()));
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream()));
  }
  /// Device to device, ordered after earlier work on the stream.
  static void copy_device(void* dst, const void* src, std::size_t bytes) {
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
  }
  static void fill_zero(void* dst, std::size_t bytes) { TESSERA_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream())); }

  /// The stream all of tessera's device work is issued on (created on first use).
  static cudaStream_t stream() {
    static const cudaStream_t s = [] {
      cudaStream_t created = nullptr;
      TESSERA_CUDA_CHECK(cudaStreamCreateWithFlags(&created, cudaStreamNonBlocking));
      return created;
    }();
    return s;
  }
  /// Waits for all work issued on the stream.
  static void synchronize() { TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream())); }

  /// Number of usable CUDA devices; 0 when there is no device or driver (never throws).
  static int device_count() noexcept {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return n;
  }
  static bool available() noexcept { return device_count() > 0; }

 private:
  /// cudaMalloc/cudaFree behind the pool. Running out of memory is reported as nullptr (the pool
  /// retries after freeing its cache); any other failure (no device) throws cuda_error.
  struct RawMemory {
    static void* try_allocate(std::size_t bytes) {
      void* p = nullptr;
      const cudaError_t status = cudaMalloc(&p, bytes);
      if (status == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        return nullptr;
      }
      detail::check_status(status, "cudaMalloc", __FILE__, __LINE__);
      return p;
    }
    static void free(void* p) noexcept { (void)cudaFree(p); }
  };
  static detail::DevicePool<RawMemory>& pool() {
    static auto* p = new detail::DevicePool<RawMemory>;  // never destroyed: tensors may outlive static destructors
    return *p;
  }
};

}  // namespace tessera
