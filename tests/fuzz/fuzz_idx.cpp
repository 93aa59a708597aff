// libFuzzer target: arbitrary bytes as an IDX file (plain, or gzip when they start with its magic).
// read_idx must return or throw io_error. The reader takes a path, so each input goes through a
// per-process temporary file.
#include <tessera/tessera.hpp>

#include <cstdint>
#include <string>

#include "input_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera;
  const FuzzInputFile input("idx", data, size);
  const std::string path = input.path();
  if (path.empty()) return 0;
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
