// The CUDA backend's caching allocator, on the CPU: DevicePool over a fake device with a fixed
// capacity (backend/cuda/memory.hpp needs no CUDA toolkit).
#include <doctest/doctest.h>

#include <tessera/backend/cuda/memory.hpp>

#include <cstdlib>
#include <string>
#include <vector>

using tessera::detail::DevicePool;

namespace {

/// A device of 4 MiB: allocations beyond it fail (nullptr), as cudaMalloc's out-of-memory does.
struct FakeDevice {
  static constexpr std::size_t capacity = std::size_t(4) << 20;
  static inline std::size_t used = 0;
  static inline int mallocs = 0;
  static inline int frees = 0;
  static inline std::vector<std::pair<void*, std::size_t>> live;
  static void* try_allocate(std::size_t bytes) {
    if (used + bytes > capacity) return nullptr;
    ++mallocs;
    used += bytes;
    void* p = std::malloc(bytes);
    live.emplace_back(p, bytes);
    return p;
  }
  static void free(void* p) noexcept {
    ++frees;
    for (auto it = live.begin(); it != live.end(); ++it) {
      if (it->first == p) {
        used -= it->second;
        live.erase(it);
        break;
      }
    }
    std::free(p);
  }
  static void reset() {
    used = 0;
    mallocs = 0;
    frees = 0;
    live.clear();
  }
};

}  // namespace

TEST_CASE("sizes are rounded: 512 bytes below 1 MiB, 128 KiB above") {
  using Pool = DevicePool<FakeDevice>;
  CHECK(Pool::rounded(0) == 512);
  CHECK(Pool::rounded(1) == 512);
  CHECK(Pool::rounded(512) == 512);
  CHECK(Pool::rounded(513) == 1024);
  CHECK(Pool::rounded(std::size_t(1) << 20) == std::size_t(1) << 20);
  CHECK(Pool::rounded((std::size_t(1) << 20) + 1) == (std::size_t(1) << 20) + (std::size_t(128) << 10));
}

TEST_CASE("a freed block is reused for the next request of the same rounded size, without a device call") {
  FakeDevice::reset();
  {
    DevicePool<FakeDevice> pool;
    void* a = pool.allocate(1000);
    CHECK(FakeDevice::mallocs == 1);
    CHECK(pool.stats().in_use == 1024);
    pool.deallocate(a, 1000);
    CHECK(pool.stats().in_use == 0);
    CHECK(pool.stats().cached == 1024);
    CHECK(FakeDevice::frees == 0);
    void* b = pool.allocate(1010);  // rounds to the same 1024
    CHECK(b == a);
    CHECK(FakeDevice::mallocs == 1);
    void* c = pool.allocate(3000);  // another size: a new block
    CHECK(c != a);
    CHECK(FakeDevice::mallocs == 2);
    CHECK(pool.stats().peak == 1024 + 3072);
    pool.deallocate(b, 1010);
    pool.deallocate(c, 3000);
    CHECK(pool.release_cached() == 1024 + 3072);
    CHECK(FakeDevice::frees == 2);
    CHECK(FakeDevice::used == 0);
  }
}

TEST_CASE("out of memory: the cache is freed and the request retried before out_of_memory is raised") {
  FakeDevice::reset();
  DevicePool<FakeDevice> pool;
  // 3 MiB cached, then a 2 MiB request: it fits only after the cache is released.
  void* big = pool.allocate(std::size_t(3) << 20);
  pool.deallocate(big, std::size_t(3) << 20);
  CHECK(pool.stats().cached == std::size_t(3) << 20);
  void* two = pool.allocate(std::size_t(2) << 20);
  CHECK(two != nullptr);
  CHECK(pool.stats().cached == 0);
  CHECK(FakeDevice::frees == 1);
  // Now 2 MiB live; 3 more cannot fit even with an empty cache.
  std::string message;
  try {
    (void)pool.allocate(std::size_t(3) << 20);
  } catch (const tessera::out_of_memory& e) {
    message = e.what();
  }
  CHECK(message.find("allocating 3145728 bytes") != std::string::npos);
  CHECK(message.find("holds 2097152 bytes in live tensors") != std::string::npos);
  // It is a std::bad_alloc, as the backend contract asks of allocate.
  CHECK_THROWS_AS((void)pool.allocate(std::size_t(5) << 20), std::bad_alloc);
  pool.deallocate(two, std::size_t(2) << 20);
  pool.release_cached();
  CHECK(FakeDevice::used == 0);
}
