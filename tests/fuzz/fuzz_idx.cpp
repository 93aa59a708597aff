// libFuzzer target: arbitrary bytes as an IDX file (plain, or gzip when they start with its magic).
// read_idx must return or throw io_error. The reader takes a path, so each input goes through a
// per-process temporary file.
#include <tessera/tessera.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera;
  static const std::string path = "/tmp/tessera_fuzz_idx_" + std::to_string(::getpid());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    (void)data::read_idx<float, 3>(path);
  } catch (const io_error&) {
  }
  try {
    (void)data::read_idx<std::int64_t, 1>(path);
  } catch (const io_error&) {
  }
  return 0;
}
