// The IDX reader: round trips (plain and gzip), every element type, and hostile files -- bad
// magic, unknown type, wrong rank, truncated header or data, trailing bytes, absurd extents,
// corrupt gzip -- each an io_error naming the file and the problem.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "autodiff/grad_test_support.hpp"

using namespace tessera;

namespace {
std::string temp_path(const std::string& name) { return "tessera_test_idx_" + name; }

void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes, bool gz = false) {
  if (gz) {
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    REQUIRE(gzwrite(f, bytes.data(), unsigned(bytes.size())) == int(bytes.size()));
    gzclose(f);
  } else {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  }
}
std::vector<unsigned char> header(unsigned char type, std::vector<std::uint32_t> dims) {
  std::vector<unsigned char> b{0, 0, type, static_cast<unsigned char>(dims.size())};
  for (auto d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(d >> s));
  }
  return b;
}
template <std::size_t R, class T = float>
std::string read_error(const std::string& path) {
  try {
    (void)data::read_idx<T, R>(path);
  } catch (const io_error& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST_CASE("IDX round trip through write_idx_u8, plain and gzip") {
  Tensor<float, 3> t(Shape<3>{2, 3, 4});
  for (index_t i = 0; i < t.size(); ++i) t.data()[i] = float((i * 37) % 256);
  for (const std::string name : {"rt.idx", "rt.idx.gz"}) {
    const auto path = temp_path(name);
    data::write_idx_u8(path, t);
    data::IdxInfo info;
    const auto back = data::read_idx<float, 3>(path, &info);
    CHECK_TENSOR_EQ(back, t);
    CHECK(info.type_code == 0x08);
    CHECK(info.extents == std::vector<index_t>{2, 3, 4});
    std::remove(path.c_str());
  }
  CHECK_THROWS_AS(data::write_idx_u8(temp_path("bad.idx"), full<float>({2}, 300.0f)), value_error);
  std::remove(temp_path("bad.idx").c_str());
}

TEST_CASE("IDX element types: signed bytes, 16/32-bit integers, floats and doubles, big-endian") {
  const auto path = temp_path("types.idx");
  auto b = header(0x09, {2});
  b.insert(b.end(), {0xFF, 0x05});  // -1, 5
  write_bytes(path, b);
  CHECK_TENSOR_EQ((data::read_idx<double, 1>(path)), (Tensor<double, 1>{-1, 5}));
  b = header(0x0B, {1});
  b.insert(b.end(), {0xFF, 0xFE});  // -2
  write_bytes(path, b);
  CHECK(data::read_idx<int, 1>(path)(0) == -2);
  b = header(0x0C, {1});
  b.insert(b.end(), {0x00, 0x01, 0x00, 0x00});  // 65536
  write_bytes(path, b);
  CHECK(data::read_idx<std::int64_t, 1>(path)(0) == 65536);
  b = header(0x0D, {1});
  b.insert(b.end(), {0x3F, 0xC0, 0x00, 0x00});  // 1.5f
  write_bytes(path, b);
  CHECK(data::read_idx<float, 1>(path)(0) == 1.5f);
  b = header(0x0E, {1});
  b.insert(b.end(), {0xC0, 0x04, 0, 0, 0, 0, 0, 0});  // -2.5
  write_bytes(path, b);
  CHECK(data::read_idx<double, 1>(path)(0) == -2.5);
  std::remove(path.c_str());
}

TEST_CASE("hostile IDX files raise io_error naming the file and the problem") {
  const auto path = temp_path("hostile.idx");
  CHECK(read_error<1>(temp_path("missing.idx")).find("cannot open") != std::string::npos);

  write_bytes(path, {0, 0});
  CHECK(read_error<1>(path).find("truncated header") != std::string::npos);
  CHECK(read_error<1>(path).find(path) != std::string::npos);

  write_bytes(path, {1, 0, 8, 1, 0, 0, 0, 1, 7});
  CHECK(read_error<1>(path).find("not an IDX file") != std::string::npos);

  write_bytes(path, {0, 0, 0x0A, 1, 0, 0, 0, 1, 7});
  CHECK(read_error<1>(path).find("unknown IDX element type 0x0A") != std::string::npos);

  auto b = header(0x08, {2, 2});
  b.insert(b.end(), {1, 2, 3, 4});
  write_bytes(path, b);
  CHECK(read_error<1>(path).find("has 2 dimensions, expected 1") != std::string::npos);
  CHECK(read_error<3>(path).find("has 2 dimensions, expected 3") != std::string::npos);

  b = header(0x08, {3, 2});
  write_bytes(path, b);
  CHECK(read_error<2>(path).find("truncated data: expected 6 elements, got 0") != std::string::npos);
  b.insert(b.end(), {1, 2, 3, 4, 5});
  write_bytes(path, b, true);  // gzip, one byte short
  CHECK(read_error<2>(path).find("expected 6 elements, got 5") != std::string::npos);

  b = header(0x08, {2});
  b.insert(b.end(), {1, 2, 3});
  write_bytes(path, b);
  CHECK(read_error<1>(path).find("unexpected bytes after the 2 elements") != std::string::npos);

  // Extents whose product is far beyond any real file: refused before allocating.
  write_bytes(path, header(0x08, {0xFFFFFFFFu, 0xFFFFFFFFu}));
  CHECK(read_error<2>(path).find("implausibly large") != std::string::npos);
  // Also beside a zero extent, where the element count is 0 but products of the others overflow
  // (fuzzer find: [0, 4294967295, 4294967043] was signed overflow in the shape's element count).
  write_bytes(path, header(0x08, {0, 0xFFFFFFFFu, 0xFFFFFF03u}));
  CHECK(read_error<3>(path).find("implausibly large") != std::string::npos);
  // Floating-point elements read into an integer tensor must fit it: NaN, an infinity or 1e30 is
  // an error, not undefined behaviour (fuzzer find: a NaN read as int64).
  for (const std::uint32_t bits : {0x7FC00000u, 0x7F800000u, 0x7149F2CAu}) {  // NaN, +inf, 1e30f
    auto f = header(0x0D, {2});
    for (const std::uint32_t v : {0x3F800000u, bits}) {  // 1.0f, then the bad one
      for (int k = 3; k >= 0; --k) f.push_back(static_cast<unsigned char>(v >> (8 * k)));
    }
    write_bytes(path, f);
    CHECK(read_error<1, std::int64_t>(path).find("element 1: the value") != std::string::npos);
    CHECK(read_error<1, std::int32_t>(path).find("does not fit the integer element type") != std::string::npos);
    CHECK(data::read_idx<float, 1>(path)(0) == 1.0f);  // as floats they read back
  }
  // An empty file of plausible extents is fine.
  write_bytes(path, header(0x08, {0, 5, 7}));
  CHECK(data::read_idx<float, 3>(path).shape() == Shape<3>{0, 5, 7});
  // Plausible extents that a tiny file cannot hold (fuzzer find: 28 bytes asking for 277 GB).
  write_bytes(path, header(0x08, {513, 50331648}));
  CHECK(read_error<2>(path).find("the header claims 25820135424 elements but the file has only 12 bytes") != std::string::npos);
  write_bytes(path, header(0x08, {513, 50331648}), true);
  CHECK(read_error<2>(path).find("the header claims") != std::string::npos);

  // A gzip stream with its compressed body damaged.
  Tensor<float, 1> big(Shape<1>{4096});
  for (index_t i = 0; i < big.size(); ++i) big.data()[i] = float(i % 251);
  data::write_idx_u8(path + ".gz", big);
  {
    std::fstream f(path + ".gz", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    const char junk[16] = {'\x13', '\x37', '\x00', '\x7f', '\x13', '\x37', '\x00', '\x7f',
                           '\x13', '\x37', '\x00', '\x7f', '\x13', '\x37', '\x00', '\x7f'};
    f.write(junk, 16);
  }
  const std::string corrupt = read_error<1>(path + ".gz");
  CHECK(corrupt.find(path + ".gz") != std::string::npos);
  MESSAGE(corrupt);
  std::remove((path + ".gz").c_str());
  std::remove(path.c_str());
}
