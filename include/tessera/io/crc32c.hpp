// CRC32C (Castagnoli), the checksum of TFRecord framing, and TFRecord's "masked" form of it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace tessera::io {

namespace detail {
/// The byte-at-a-time table of the reflected polynomial 0x82F63B78.
inline const std::array<std::uint32_t, 256>& crc32c_table() {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}
}  // namespace detail

/// CRC32C of n bytes (initial value and final xor 0xFFFFFFFF): "123456789" gives 0xE3069283.
inline std::uint32_t crc32c(const void* data, std::size_t n) {
  const auto& table = detail::crc32c_table();
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

/// TFRecord's masked CRC: rotate right by 15 bits, then add 0xA282EAD8 (mod 2^32).
inline std::uint32_t masked_crc32c(const void* data, std::size_t n) {
  const std::uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

}  // namespace tessera::io
