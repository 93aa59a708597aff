// libFuzzer target: arbitrary bytes as a PNG file. read_png_gray must return or throw io_error;
// the reader takes a path, so each input goes through a per-process temporary file.
#include <tessera/tessera.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera;
  static const std::string path = "/tmp/tessera_fuzz_png_" + std::to_string(::getpid());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    const auto image = io::read_png_gray(path);
    if (image.pixels.size() != std::size_t(image.width) * image.height) std::abort();
  } catch (const io_error&) {
  }
  return 0;
}
