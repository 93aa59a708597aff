// PNG through libpng: encoding 8-bit images (TensorBoard image summaries) and reading a file as
// 8-bit grayscale (the image classifier example).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"

// libpng is needed by the definitions only: a program that takes them from tessera::precompiled
// does not parse it.
#if TESSERA_OUT_OF_LINE_DEFINITIONS
#include <png.h>
#include <sys/stat.h>

#include <csetjmp>
#include <cstdio>
#endif

namespace tessera::io {

/// The PNG file of an 8-bit image, rows top to bottom, channels interleaved: 1 gray, 2 gray+alpha,
/// 3 RGB, 4 RGBA. io_error if libpng fails.
TESSERA_OUT_OF_LINE std::string encode_png(const std::vector<std::uint8_t>& pixels, std::uint32_t width,
                                           std::uint32_t height, int channels);

/// An 8-bit grayscale image, rows top to bottom.
struct GrayImage {
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::vector<std::uint8_t> pixels;
};

/// Reads a PNG file as 8-bit grayscale (libpng converts color, alpha over black, and other bit
/// depths). io_error naming the path when the file is missing, not a PNG, corrupt, or larger than
/// 16384 pixels a side.
TESSERA_OUT_OF_LINE GrayImage read_png_gray(const std::string& path);

#if TESSERA_OUT_OF_LINE_DEFINITIONS

namespace detail {
struct PngOutput {
  std::string* bytes;
  char message[256];
};

extern "C" inline void tessera_png_write(png_structp png, png_bytep data, png_size_t n) {
  auto* out = static_cast<PngOutput*>(png_get_io_ptr(png));
  try {
    out->bytes->append(reinterpret_cast<const char*>(data), n);
  } catch (...) {  // no C++ exception may cross libpng's C frames
    png_error(png, "out of memory");
  }
}
extern "C" inline void tessera_png_flush(png_structp) {}
extern "C" inline void tessera_png_error(png_structp png, png_const_charp message) {
  auto* out = static_cast<PngOutput*>(png_get_error_ptr(png));
  std::snprintf(out->message, sizeof out->message, "%s", message);
  png_longjmp(png, 1);
}
extern "C" inline void tessera_png_warning(png_structp, png_const_charp) {}

/// The libpng calls, in a frame that holds nothing with a destructor (libpng reports errors by
/// longjmp). Returns false with `out.message` set on failure.
inline bool png_encode_rows(PngOutput& out, std::uint32_t width, std::uint32_t height, int color_type,
                            png_bytep* rows) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &out, tessera_png_error, tessera_png_warning);
  if (!png) return false;
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, info ? &info : nullptr);
    return false;
  }
  png_set_write_fn(png, &out, tessera_png_write, tessera_png_flush);
  png_set_IHDR(png, info, width, height, 8, color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}
}  // namespace detail

TESSERA_OUT_OF_LINE std::string encode_png(const std::vector<std::uint8_t>& pixels, std::uint32_t width,
                                           std::uint32_t height, int channels) {
  if (channels < 1 || channels > 4) throw value_error("encode_png: channels must be 1..4, got " + std::to_string(channels));
  if (width == 0 || height == 0 || pixels.size() != std::size_t(width) * height * std::size_t(channels)) {
    throw value_error("encode_png: " + std::to_string(pixels.size()) + " bytes do not make a " + std::to_string(width) +
                      "x" + std::to_string(height) + " image of " + std::to_string(channels) + " channels");
  }
  static constexpr int color_types[] = {PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                        PNG_COLOR_TYPE_RGB_ALPHA};
  std::vector<png_bytep> rows(height);
  auto* base = const_cast<std::uint8_t*>(pixels.data());  // libpng's row type is non-const; it only reads
  for (std::uint32_t r = 0; r < height; ++r) rows[r] = base + std::size_t(r) * width * std::size_t(channels);
  std::string bytes;
  detail::PngOutput out{&bytes, "unknown error"};
  if (!detail::png_encode_rows(out, width, height, color_types[channels - 1], rows.data())) {
    throw io_error(std::string("encode_png: libpng failed: ") + out.message);
  }
  return bytes;
}

TESSERA_OUT_OF_LINE GrayImage read_png_gray(const std::string& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) {
    throw io_error(path + ": not a readable PNG file (" + image.message + ")");
  }
  if (image.width == 0 || image.height == 0 || image.width > 16384 || image.height > 16384) {
    png_image_free(&image);
    throw io_error(path + ": a PNG of " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                   " pixels is outside 1..16384 a side");
  }
  // Deflate expands at most about 1032 times, and every row holds at least a filter byte and one
  // bit per pixel: a header claiming more rows and columns than the file's bytes could encode is
  // refused before the pixel buffer is allocated.
  struct ::stat st {};
  const std::uint64_t min_raw = std::uint64_t(image.height) * (1 + (std::uint64_t(image.width) + 7) / 8);
  if (::stat(path.c_str(), &st) == 0 && min_raw > std::uint64_t(st.st_size) * 1032u + 1024u) {
    png_image_free(&image);
    throw io_error(path + ": the header claims " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                   " pixels but the file has only " + std::to_string(st.st_size) + " bytes");
  }
  image.format = PNG_FORMAT_GRAY;
  GrayImage g;
  g.width = image.width;
  g.height = image.height;
  g.pixels.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, g.pixels.data(), 0, nullptr)) {
    const std::string message = image.message;
    png_image_free(&image);
    throw io_error(path + ": corrupt PNG data (" + message + ")");
  }
  return g;
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

}  // namespace tessera::io
