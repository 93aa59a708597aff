// Reading PNG files as 8-bit grayscale (io::read_png_gray), against the encoder's own files.
#include <doctest/doctest.h>

#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <tessera/tessera.hpp>

using namespace tessera;

namespace {
std::string write_temp(const std::string& bytes) {
  char pattern[] = "/tmp/tessera_png_XXXXXX";
  const int fd = ::mkstemp(pattern);
  REQUIRE(fd >= 0);
  ::close(fd);
  std::ofstream(pattern, std::ios::binary) << bytes;
  return pattern;
}
}  // namespace

TEST_CASE("read_png_gray reads back what encode_png wrote, and converts color to gray") {
  std::vector<std::uint8_t> gray(7 * 5);
  for (std::size_t i = 0; i < gray.size(); ++i) gray[i] = std::uint8_t(i * 7);
  const std::string path = write_temp(io::encode_png(gray, 7, 5, 1));
  const io::GrayImage g = io::read_png_gray(path);
  CHECK(g.width == 7);
  CHECK(g.height == 5);
  CHECK(g.pixels == gray);
  std::remove(path.c_str());
  // RGB: equal channels stay that gray; pure colors give distinct, ordered grays.
  std::vector<std::uint8_t> rgb = {100, 100, 100, 255, 0, 0, 0, 255, 0, 0, 0, 255};
  const std::string color = write_temp(io::encode_png(rgb, 4, 1, 3));
  const io::GrayImage c = io::read_png_gray(color);
  REQUIRE(c.pixels.size() == 4);
  CHECK(int(c.pixels[0]) == doctest::Approx(100).epsilon(0.02));
  CHECK(c.pixels[2] > c.pixels[1]);  // green is brighter than red
  CHECK(c.pixels[1] > c.pixels[3]);  // and red than blue
  std::remove(color.c_str());
}

TEST_CASE("read_png_gray: missing, truncated and non-PNG files are io_errors naming the path") {
  CHECK_THROWS_WITH_AS(io::read_png_gray("/no/such.png"), doctest::Contains("/no/such.png"), io_error);
  const std::string text = write_temp("not a png at all");
  CHECK_THROWS_WITH_AS(io::read_png_gray(text), doctest::Contains(text.c_str()), io_error);
  std::remove(text.c_str());
  std::vector<std::uint8_t> gray(16 * 16, 128);
  const std::string bytes = io::encode_png(gray, 16, 16, 1);
  const std::string truncated = write_temp(bytes.substr(0, bytes.size() / 2));
  CHECK_THROWS_AS(io::read_png_gray(truncated), io_error);
  std::remove(truncated.c_str());
}

TEST_CASE("read_png_gray refuses a header claiming more pixels than the file could encode, before allocating") {
  // A valid 16 x 16 PNG whose header (with its checksum fixed) claims 16000 x 16000 pixels: 32 MB
  // of rows at one bit per pixel cannot come out of a file of a hundred bytes.
  std::vector<std::uint8_t> gray(16 * 16, 128);
  std::string bytes = io::encode_png(gray, 16, 16, 1);
  REQUIRE(bytes.substr(12, 4) == "IHDR");
  auto put_be32 = [&](std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes[at + std::size_t(i)] = char((v >> (24 - 8 * i)) & 0xff);
  };
  put_be32(16, 16000);
  put_be32(20, 16000);
  put_be32(29, static_cast<std::uint32_t>(::crc32(0, reinterpret_cast<const Bytef*>(bytes.data() + 12), 17)));
  const std::string claims = write_temp(bytes);
  CHECK_THROWS_WITH_AS(io::read_png_gray(claims), doctest::Contains("claims 16000x16000 pixels"), io_error);
  // Control: the same checksum repair with the true size reads back, so the refusal above is the
  // bound's, not a checksum error.
  put_be32(16, 16);
  put_be32(20, 16);
  put_be32(29, static_cast<std::uint32_t>(::crc32(0, reinterpret_cast<const Bytef*>(bytes.data() + 12), 17)));
  std::ofstream(claims, std::ios::binary) << bytes;
  CHECK(io::read_png_gray(claims).pixels == gray);
  std::remove(claims.c_str());
}
