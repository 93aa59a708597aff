// IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed:
//
//   bytes 0-1  zero;  byte 2  element type (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64);
//   byte 3     number of dimensions;  then one big-endian u32 extent per dimension;
//   then the elements, big-endian, row-major.
//
// read_idx<T, R>(path) validates all of it -- magic, type, rank, extents (and their product
// against the data actually present), truncation, trailing bytes -- and throws tessera::io_error
// naming the file and the problem. It never reads past what the header promises.
#pragma once

#include <sys/stat.h>
#include <zlib.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"

namespace tessera::data {

namespace detail {

/// A gzip (or plain: zlib reads those transparently) input file; closes itself.
class GzReader {
 public:
  TESSERA_OUT_OF_LINE explicit GzReader(const std::string& path);
  ~GzReader() {
    if (file_) gzclose(file_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  /// Reads up to n bytes; returns how many were read (fewer only at the end of the data).
  TESSERA_OUT_OF_LINE std::size_t read(void* dst, std::size_t n);
  /// Reads exactly n bytes or throws naming `what`.
  TESSERA_OUT_OF_LINE void read_exact(void* dst, std::size_t n, const std::string& what);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  gzFile file_;
};

inline std::uint32_t big_endian_u32(const unsigned char* b) {
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | std::uint32_t{b[3]};
}

/// Bytes per element of an IDX type code; 0 for an unknown code.
inline std::size_t idx_element_size(unsigned code) {
  switch (code) {
    case 0x08: case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C: case 0x0D: return 4;
    case 0x0E: return 8;
    default: return 0;
  }
}

/// A floating-point element as T. Converting NaN, an infinity or a value outside an integer T's
/// range is undefined behaviour, so those are refused (found by fuzzing: a NaN read as int64).
template <class T, class F>
T idx_from_floating(F f) {
  if constexpr (std::is_integral_v<T>) {
    const bool fits = (std::is_signed_v<T> ? f >= F(std::numeric_limits<T>::lowest()) : f > F(-1)) &&
                      f < std::ldexp(F(1), std::numeric_limits<T>::digits);
    if (!fits) throw io_error("the value " + std::to_string(f) + " does not fit the integer element type asked for");
  }
  return static_cast<T>(f);
}

/// The element at `p` (big-endian, type `code`) as T.
template <class T>
T idx_element(const unsigned char* p, unsigned code) {
  auto be = [p](std::size_t n) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
    return v;
  };
  switch (code) {
    case 0x08: return static_cast<T>(p[0]);
    case 0x09: return static_cast<T>(static_cast<std::int8_t>(p[0]));
    case 0x0B: return static_cast<T>(static_cast<std::int16_t>(static_cast<std::uint16_t>(be(2))));
    case 0x0C: return static_cast<T>(static_cast<std::int32_t>(static_cast<std::uint32_t>(be(4))));
    case 0x0D: {
      const auto bits = static_cast<std::uint32_t>(be(4));
      float f;
      std::memcpy(&f, &bits, 4);
      return idx_from_floating<T>(f);
    }
    default: {
      const std::uint64_t bits = be(8);
      double d;
      std::memcpy(&d, &bits, 8);
      return idx_from_floating<T>(d);
    }
  }
}

/// An IDX file's header: element type code and size, extents, element count.
struct IdxHeader {
  unsigned code = 0;
  std::size_t element_size = 0;
  std::vector<index_t> extents;
  std::uint64_t count = 0;
};
/// Reads and checks the header of the IDX file `in` reads (`path`): `rank` dimensions, a known
/// element type, and extents the file can hold. io_error naming the path otherwise.
TESSERA_OUT_OF_LINE IdxHeader read_idx_header(GzReader& in, const std::string& path, std::size_t rank);

}  // namespace detail

/// The header of an IDX file.
struct IdxInfo {
  unsigned type_code = 0;          ///< 0x08 (u8) ... 0x0E (f64)
  std::vector<index_t> extents;    ///< one per dimension
};

/// Reads an IDX file (gzip or plain) into a Tensor<T, R>; the file must have R dimensions.
/// Elements convert to T as static_cast does (u8 pixels stay 0..255: scale them yourself).
template <class T, std::size_t R>
Tensor<T, R> read_idx(const std::string& path, IdxInfo* info = nullptr) {
  static_assert(R >= 1, "tessera::data::read_idx: an IDX file has at least one dimension");
  detail::GzReader in(path);
  const detail::IdxHeader h = detail::read_idx_header(in, path, R);
  const unsigned code = h.code;
  const std::size_t element_size = h.element_size;
  const std::uint64_t count = h.count;
  Shape<R> shape{};
  for (std::size_t d = 0; d < R; ++d) shape[d] = h.extents[d];
  if (info) {
    info->type_code = code;
    info->extents = h.extents;
  }
  Tensor<T, R> out(shape);
  T* dst = out.data();
  // Stream in chunks: the data is never held twice in full.
  std::vector<unsigned char> buffer(std::size_t{1} << 20);
  const std::size_t per_chunk = buffer.size() / element_size;
  std::uint64_t done = 0;
  while (done < count) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(per_chunk, count - done));
    const std::size_t got = in.read(buffer.data(), n * element_size);
    if (got != n * element_size) {
      throw io_error(path + ": truncated data: expected " + std::to_string(count) + " elements, got " +
                     std::to_string(done + got / element_size));
    }
    for (std::size_t i = 0; i < n; ++i) {
      try {
        dst[done + i] = detail::idx_element<T>(buffer.data() + i * element_size, code);
      } catch (const io_error& e) {
        throw io_error(path + ": element " + std::to_string(done + i) + ": " + e.what());
      }
    }
    done += n;
  }
  unsigned char extra;
  if (in.read(&extra, 1) != 0) throw io_error(path + ": unexpected bytes after the " + std::to_string(count) + " elements");
  return out;
}

/// Writes a tensor as an IDX file of unsigned bytes (values must be 0..255), gzip-compressed when
/// the path ends in ".gz". For tests and small datasets.
template <class T, std::size_t R>
void write_idx_u8(const std::string& path, const Tensor<T, R>& t) {
  const bool gz = path.size() >= 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  gzFile f = gzopen(path.c_str(), gz ? "wb" : "wbT");
  if (!f) throw io_error(path + ": cannot open for writing");
  std::vector<unsigned char> bytes{0, 0, 0x08, static_cast<unsigned char>(R)};
  for (index_t e : t.shape()) {
    const auto u = static_cast<std::uint32_t>(e);
    for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<unsigned char>(u >> s));
  }
  const Tensor<T, R> c = t.contiguous();
  for (index_t i = 0; i < c.size(); ++i) {
    const T v = c.data()[i];
    if (!(v >= T(0) && v <= T(255))) {
      gzclose(f);
      throw value_error("write_idx_u8: element " + std::to_string(i) + " is outside 0..255");
    }
    bytes.push_back(static_cast<unsigned char>(v));
  }
  const bool ok = gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size());
  if (gzclose(f) != Z_OK || !ok) throw io_error(path + ": write failed");
}

#if TESSERA_OUT_OF_LINE_DEFINITIONS

TESSERA_OUT_OF_LINE detail::GzReader::GzReader(const std::string& path)
    : path_(path), file_(gzopen(path.c_str(), "rb")) {
  if (!file_) throw io_error(path + ": cannot open for reading");
  gzbuffer(file_, 1 << 17);
}

TESSERA_OUT_OF_LINE std::size_t detail::GzReader::read(void* dst, std::size_t n) {
  std::size_t done = 0;
  auto* out = static_cast<unsigned char*>(dst);
  while (done < n) {
    const auto chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
    const int got = gzread(file_, out + done, chunk);
    if (got < 0) {
      int code = 0;
      const char* msg = gzerror(file_, &code);
      throw io_error(path_ + ": corrupt compressed data (" + std::string(msg ? msg : "zlib error") + ")");
    }
    if (got == 0) break;
    done += static_cast<std::size_t>(got);
  }
  return done;
}

TESSERA_OUT_OF_LINE void detail::GzReader::read_exact(void* dst, std::size_t n, const std::string& what) {
  const std::size_t got = read(dst, n);
  if (got != n) {
    throw io_error(path_ + ": truncated " + what + ": expected " + std::to_string(n) + " bytes, got " +
                   std::to_string(got));
  }
}

TESSERA_OUT_OF_LINE detail::IdxHeader detail::read_idx_header(GzReader& in, const std::string& path, std::size_t rank) {
  unsigned char magic[4];
  in.read_exact(magic, 4, "header");
  if (magic[0] != 0 || magic[1] != 0)
    throw io_error(path + ": not an IDX file (the magic number must start with two zero bytes)");
  const unsigned code = magic[2];
  const std::size_t element_size = detail::idx_element_size(code);
  if (element_size == 0) {
    const char* hex = "0123456789ABCDEF";
    throw io_error(path + ": unknown IDX element type 0x" + std::string{hex[code >> 4], hex[code & 15]});
  }
  if (magic[3] != rank) {
    throw io_error(path + ": has " + std::to_string(magic[3]) + " dimensions, expected " + std::to_string(rank));
  }
  IdxHeader h;
  h.code = code;
  h.element_size = element_size;
  std::uint64_t count = 1, nonzero = 1;
  for (std::size_t d = 0; d < rank; ++d) {
    unsigned char b[4];
    in.read_exact(b, 4, "header");
    const std::uint32_t e = detail::big_endian_u32(b);
    h.extents.push_back(static_cast<index_t>(e));
    // Refuse sizes that cannot be real before allocating anything (hostile headers). The nonzero
    // extents are bounded too: with a zero among them the file is empty, but the tensor's
    // element count and strides are still products of them (found by fuzzing: [0, 2^32-1, ...]
    // overflowed those products).
    if (e != 0 && nonzero > (std::uint64_t{1} << 40) / e) throw io_error(path + ": extents are implausibly large");
    if (e != 0) nonzero *= e;
    count *= e;
  }
  // Nor allocate more than the file can hold: deflate compresses at most ~1032:1, so a header
  // claiming more data than that is a lie (found by fuzzing: a 28-byte file asking for 277 GB).
  struct ::stat st {};
  if (::stat(path.c_str(), &st) == 0 && count * element_size > std::uint64_t(st.st_size) * 1040u + 1024u) {
    throw io_error(path + ": the header claims " + std::to_string(count) + " elements but the file has only " +
                   std::to_string(st.st_size) + " bytes");
  }
  h.count = count;
  return h;
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

}  // namespace tessera::data
