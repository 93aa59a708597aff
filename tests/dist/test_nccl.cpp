// dist/nccl.hpp on the host, with or without a GPU: NCCL's failures become dist_error naming the
// call and the rank; a communicator asked for an impossible rank, timeout or GPU refuses with a
// message before touching NCCL; the constructor over a host communicator takes only types that can
// broadcast an id. The collectives themselves run on a GPU: tests/cuda/test_cuda_nccl.cu.
#include <doctest/doctest.h>

#include <tessera/dist/nccl.hpp>
#include <tessera/tessera.hpp>

#include <cstddef>
#include <string>
#include <type_traits>

using namespace tessera;

namespace {

std::string message_of(ncclResult_t result, const char* call, int rank) {
  try {
    dist::detail::nccl_check(result, call, rank);
  } catch (const dist::dist_error& e) {
    return e.what();
  }
  return {};
}

/// What a host communicator offers for sharing the NCCL id (dist::Communicator does it over MPI).
struct OneProcess {
  int broadcasts = 0;
  int rank() const { return 0; }
  int size() const { return 1; }
  void broadcast_bytes(void*, std::size_t, int) { ++broadcasts; }
};

template <class F>
std::string value_error_of(F&& f) {
  try {
    f();
  } catch (const value_error& e) {
    return e.what();
  }
  return {};
}

}  // namespace

static_assert(std::is_constructible_v<dist::NcclCommunicator, OneProcess&, int>);
static_assert(!std::is_constructible_v<dist::NcclCommunicator, int&, int>, "only a host communicator can share the id");
static_assert(!std::is_copy_constructible_v<dist::NcclCommunicator>);

TEST_CASE("a failed NCCL call becomes a dist_error naming the call, the rank and NCCL's reason") {
  const std::string m = message_of(ncclInvalidArgument, "ncclAllReduce", 3);
  CHECK(m.find("ncclAllReduce failed on rank 3: ") == 0);
  CHECK(m.size() > std::string("ncclAllReduce failed on rank 3: ").size());  // NCCL's own description follows
  CHECK(message_of(ncclSuccess, "ncclAllReduce", 0).empty());
}

TEST_CASE("a communicator refuses an impossible rank, timeout or GPU before touching NCCL") {
  const ncclUniqueId id{};  // never used: every case below is refused first
  CHECK(value_error_of([&] { dist::NcclCommunicator c(id, 2, 2, 0); }).find("rank 2 of 2") != std::string::npos);
  CHECK(value_error_of([&] { dist::NcclCommunicator c(id, 0, 0, 0); }).find("rank 0 of 0") != std::string::npos);
  CHECK(value_error_of([&] { dist::NcclCommunicator c(id, 0, 1, 0, -1.0); }).find("timeout") != std::string::npos);
  const int devices = cuda::device_count();
  const std::string gpu = value_error_of([&] { dist::NcclCommunicator c(id, 0, 1, devices); });
  CHECK(gpu.find("was given GPU " + std::to_string(devices) + ", but this process sees " + std::to_string(devices) +
                 " GPU(s)") != std::string::npos);
  CHECK(value_error_of([&] { dist::NcclCommunicator c(id, 0, 1, -1); }).find("was given GPU -1") != std::string::npos);
}

TEST_CASE("over a host communicator, the id goes through its broadcast before the GPU is checked") {
  OneProcess world;
  const int devices = cuda::device_count();
  if (devices > 0) return;  // with a GPU this would make a real communicator: the device test's job
  // Rank 0 makes an id (or fails to, without a driver) and broadcasts what it got; then the missing
  // GPU is refused. Either way an exception, not a crash or a hang.
  CHECK_THROWS_AS(dist::NcclCommunicator(world, 0), std::exception);
  CHECK(world.broadcasts == 1);
}

TEST_CASE("Buffers give a host-only strategy host memory: tensors in place, strided views as copies written back") {
  struct HostOnly final : train::Distributed {
    int rank() const override { return 0; }
    int world_size() const override { return 1; }
    void broadcast(const std::vector<train::Buffer>&) override {}
    double global_samples(index_t n, std::int64_t) override { return double(n); }
    void sum_gradients(const std::vector<train::Buffer>&, std::int64_t) override {}
    void sum(std::vector<double>&) override {}
  } host_only;
  CHECK_FALSE(host_only.takes_device_memory());
  Tensor<float, 2> t = {{1, 2}, {3, 4}};
  auto column = t.transpose(0, 1);
  train::Buffers b(host_only);
  b.add("t", t);
  b.add("column", column);
  REQUIRE(b.buffers().size() == 2);
  CHECK(b.buffers()[0].data == t.data());  // contiguous host tensor: in place
  CHECK(b.buffers()[0].memory == train::Buffer::Memory::host);
  CHECK(b.buffers()[1].data != column.data());          // a strided view: a host copy, written back
  static_cast<float*>(b.buffers()[1].data)[1] = 30.0f;  // column(0, 1) is t(1, 0)
  b.write_back();
  CHECK(t(1, 0) == 30.0f);
}
