// Planted faults that the sanitizer builds of the tests must report (docs/reliability.md): proof
// that the asan_* and tsan_* programs run with the sanitizers armed, so that their passing means
// something. Run as `canary <fault>`; each fault is a bug on purpose.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>

namespace {
volatile int sink;

int heap_overflow() {
  auto* p = new int[4];
  sink = p[4];  // one past the end
  delete[] p;
  return 0;
}
int use_after_free() {
  auto* p = new int(1);
  delete p;
  return *p;
}
int leak() {
  auto* p = new int[100];
  sink = p[0] = 1;
  p = nullptr;  // lost
  return 0;
}
int signed_overflow() {
  volatile int big = std::numeric_limits<int>::max();
  return big + 1;
}
int data_race() {
  int shared = 0;
  std::thread a([&] { for (int i = 0; i < 100000; ++i) ++shared; });
  std::thread b([&] { for (int i = 0; i < 100000; ++i) ++shared; });
  a.join();
  b.join();
  return shared == 0;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const char* fault = argv[1];
  if (!std::strcmp(fault, "heap-overflow")) return heap_overflow();
  if (!std::strcmp(fault, "use-after-free")) return use_after_free();
  if (!std::strcmp(fault, "leak")) return leak();
  if (!std::strcmp(fault, "signed-overflow")) return signed_overflow();
  if (!std::strcmp(fault, "data-race")) return data_race();
  return 2;
}
