// Reading PNG files as 8-bit grayscale (io::read_png_gray), against the encoder's own files.
#include <doctest/doctest.h>

#include <unistd.h>

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
