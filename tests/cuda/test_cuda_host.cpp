// The CUDA backend's host side, without a GPU: status checks name the call, file and line for
// all four libraries; tessera::cuda satisfies the backend contract; a machine without a device
// reports 0 devices instead of failing.
#include <doctest/doctest.h>

#include <tessera/cuda.hpp>

#include <string>

using namespace tessera;

static_assert(is_backend_v<cuda>, "tessera::cuda must satisfy backend/concept.hpp");
static_assert(!cuda::host_accessible);

namespace {
template <class Status>
std::string failure_message(Status s) {
  try {
    TESSERA_CUDA_CHECK(s);
  } catch (const cuda_error& e) {
    return e.what();
  }
  return {};
}
}  // namespace

TEST_CASE("a failing status becomes a cuda_error naming the call, the status, the file and the line") {
  const std::string runtime = failure_message(cudaErrorInvalidValue);
  CHECK(runtime.find("s failed: cudaErrorInvalidValue") != std::string::npos);
  CHECK(runtime.find("test_cuda_host.cpp:") != std::string::npos);
  CHECK(failure_message(CUBLAS_STATUS_NOT_INITIALIZED).find("CUBLAS_STATUS_NOT_INITIALIZED") != std::string::npos);
  CHECK(!failure_message(CUDNN_STATUS_BAD_PARAM).empty());
  CHECK(failure_message(CURAND_STATUS_LAUNCH_FAILURE).find("CURAND_STATUS_LAUNCH_FAILURE") != std::string::npos);
  // Success passes silently.
  CHECK_NOTHROW(TESSERA_CUDA_CHECK(cudaSuccess));
  CHECK_NOTHROW(TESSERA_CUDA_CHECK(CUBLAS_STATUS_SUCCESS));
  CHECK_NOTHROW(TESSERA_CUDA_CHECK(CUDNN_STATUS_SUCCESS));
  CHECK_NOTHROW(TESSERA_CUDA_CHECK(CURAND_STATUS_SUCCESS));
}

TEST_CASE("the device count never throws; allocating without a device raises cuda_error, not a crash") {
  int n = -1;
  CHECK_NOTHROW(n = cuda::device_count());
  CHECK(cuda::available() == (n > 0));
  const Tensor<float, 1> host = {1.0f, 2.0f};
  if (n == 0) {
    CHECK_THROWS_WITH_AS((Tensor<float, 1, cuda>(16)), doctest::Contains("cuda"), cuda_error);
    // A host tensor cannot move there either, and says why.
    CHECK_THROWS_AS((void)host.to<cuda>(), cuda_error);
  } else {
    REQUIRE(n > 0);
    CHECK(host.to<cuda>().to<cpu>()(1) == 2.0f);
  }
}

TEST_CASE("to<B>() onto its own backend is the tensor itself, as in PyTorch") {
  const Tensor<float, 2> a = {{1.0f, 2.0f}, {3.0f, 4.0f}};
  const auto same = a.to<cpu>();
  CHECK(same.data() == a.data());
}
