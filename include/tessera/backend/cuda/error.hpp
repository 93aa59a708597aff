// Status checks for the CUDA runtime, cuBLAS, cuDNN and cuRAND: a failing call becomes a
// tessera::cuda_error whose message names the call, the library's description of the status, and
// the file and line of the check.
//
//   TESSERA_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
//   TESSERA_CUDA_CHECK(cublasSgemm(handle, ...));   // any of the four status types
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>
#include <curand.h>

#include <stdexcept>
#include <string>
#include <type_traits>

namespace tessera {

/// A CUDA, cuBLAS, cuDNN or cuRAND call that failed: `cudaMalloc(&p, bytes) failed:
/// cudaErrorNoDevice: no CUDA-capable device is detected (at tessera/backend/cuda/memory.hpp:41)`.
class cuda_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

inline bool status_ok(cudaError_t s) { return s == cudaSuccess; }
inline bool status_ok(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }
inline bool status_ok(cudnnStatus_t s) { return s == CUDNN_STATUS_SUCCESS; }
inline bool status_ok(curandStatus_t s) { return s == CURAND_STATUS_SUCCESS; }

inline std::string status_string(cudaError_t s) { return std::string(cudaGetErrorName(s)) + ": " + cudaGetErrorString(s); }
inline std::string status_string(cublasStatus_t s) { return cublasGetStatusName(s) + std::string(": ") + cublasGetStatusString(s); }
inline std::string status_string(cudnnStatus_t s) { return cudnnGetErrorString(s); }
/// cuRAND has no function that names its statuses.
inline std::string status_string(curandStatus_t s) {
  switch (s) {
    case CURAND_STATUS_VERSION_MISMATCH: return "CURAND_STATUS_VERSION_MISMATCH";
    case CURAND_STATUS_NOT_INITIALIZED: return "CURAND_STATUS_NOT_INITIALIZED";
    case CURAND_STATUS_ALLOCATION_FAILED: return "CURAND_STATUS_ALLOCATION_FAILED";
    case CURAND_STATUS_TYPE_ERROR: return "CURAND_STATUS_TYPE_ERROR";
    case CURAND_STATUS_OUT_OF_RANGE: return "CURAND_STATUS_OUT_OF_RANGE";
    case CURAND_STATUS_LENGTH_NOT_MULTIPLE: return "CURAND_STATUS_LENGTH_NOT_MULTIPLE";
    case CURAND_STATUS_DOUBLE_PRECISION_REQUIRED: return "CURAND_STATUS_DOUBLE_PRECISION_REQUIRED";
    case CURAND_STATUS_LAUNCH_FAILURE: return "CURAND_STATUS_LAUNCH_FAILURE";
    case CURAND_STATUS_PREEXISTING_FAILURE: return "CURAND_STATUS_PREEXISTING_FAILURE";
    case CURAND_STATUS_INITIALIZATION_FAILED: return "CURAND_STATUS_INITIALIZATION_FAILED";
    case CURAND_STATUS_ARCH_MISMATCH: return "CURAND_STATUS_ARCH_MISMATCH";
    case CURAND_STATUS_INTERNAL_ERROR: return "CURAND_STATUS_INTERNAL_ERROR";
    default: return "curand status " + std::to_string(static_cast<int>(s));
  }
}

/// Throws cuda_error unless `status` is its library's success.
template <class Status>
void check_status(Status status, const char* call, const char* file, int line) {
  if (status_ok(status)) return;
  if constexpr (std::is_same_v<Status, cudaError_t>) {
    (void)cudaGetLastError();  // a non-sticky error would otherwise be reported again by the next check
  }
  throw cuda_error(std::string(call) + " failed: " + status_string(status) + " (at " + file + ":" + std::to_string(line) + ")");
}

}  // namespace detail
}  // namespace tessera

/// Checks the status a CUDA, cuBLAS, cuDNN or cuRAND call returns (see the file comment).
#define TESSERA_CUDA_CHECK(call) ::tessera::detail::check_status((call), #call, __FILE__, __LINE__)
