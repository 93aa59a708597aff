// libFuzzer target: arbitrary bytes as a PNG file. read_png_gray must return or throw io_error;
// the reader takes a path, so each input goes through a per-process temporary file.
#include <tessera/tessera.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "input_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera;
  const FuzzInputFile input("png", data, size);
  const std::string path = input.path();
  if (path.empty()) return 0;
  try {
    const auto image = io::read_png_gray(path);
    if (image.pixels.size() != std::size_t(image.width) * image.height) std::abort();
  } catch (const io_error&) {
  }
  return 0;
}
