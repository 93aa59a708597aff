// A minimal protocol-buffers (proto3) encoder for the few messages tessera writes: TensorBoard's
// Event, Summary, HistogramProto, TensorProto, GraphDef and the plugin payloads.
//
// Why not protobuf itself: generated code for TensorBoard's .proto files would add protoc to the
// build and libprotobuf (whose version must match the generated code) to every user's link line,
// for a dozen messages that need only varints, fixed-width numbers and length-delimited fields.
// The wire format is stable and small; the tests decode it with an independent reader and, when
// installed, `protoc --decode_raw` and TensorBoard itself.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::io::proto {

/// Wire types of the protobuf encoding.
enum class WireType : std::uint32_t { varint = 0, fixed64 = 1, bytes = 2, fixed32 = 5 };

/// Appends fields of one message to a byte string. Fields are written in call order; proto3
/// readers accept any order. Nested messages are encoded separately and added with message().
class Message {
 public:
  /// An unsigned varint field (uint32/uint64/bool/enum).
  Message& uint(std::uint32_t field, std::uint64_t v) {
    tag(field, WireType::varint);
    varint(v);
    return *this;
  }
  /// A signed int32/int64 field (two's complement varint: negatives take 10 bytes, as protobuf does).
  Message& int64(std::uint32_t field, std::int64_t v) { return uint(field, static_cast<std::uint64_t>(v)); }
  Message& boolean(std::uint32_t field, bool v) { return uint(field, v ? 1 : 0); }
  Message& float32(std::uint32_t field, float v) {
    tag(field, WireType::fixed32);
    std::uint32_t bits;
    std::memcpy(&bits, &v, 4);
    fixed(bits, 4);
    return *this;
  }
  Message& float64(std::uint32_t field, double v) {
    tag(field, WireType::fixed64);
    std::uint64_t bits;
    std::memcpy(&bits, &v, 8);
    fixed(bits, 8);
    return *this;
  }
  /// A string or bytes field.
  Message& bytes(std::uint32_t field, std::string_view v) {
    tag(field, WireType::bytes);
    varint(v.size());
    data_.append(v.data(), v.size());
    return *this;
  }
  /// An embedded message field.
  Message& message(std::uint32_t field, const Message& m) { return bytes(field, m.data_); }
  /// A packed repeated double field (skipped when empty, as proto3 does).
  Message& packed_float64(std::uint32_t field, const std::vector<double>& v) {
    if (v.empty()) return *this;
    tag(field, WireType::bytes);
    varint(v.size() * 8);
    for (double d : v) {
      std::uint64_t bits;
      std::memcpy(&bits, &d, 8);
      fixed(bits, 8);
    }
    return *this;
  }
  /// A packed repeated float field (skipped when empty).
  Message& packed_float32(std::uint32_t field, const std::vector<float>& v) {
    if (v.empty()) return *this;
    tag(field, WireType::bytes);
    varint(v.size() * 4);
    for (float f : v) {
      std::uint32_t bits;
      std::memcpy(&bits, &f, 4);
      fixed(bits, 4);
    }
    return *this;
  }

  /// The encoded message.
  const std::string& data() const noexcept { return data_; }
  std::size_t size() const noexcept { return data_.size(); }

 private:
  void tag(std::uint32_t field, WireType w) { varint((std::uint64_t{field} << 3) | static_cast<std::uint32_t>(w)); }
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      data_.push_back(static_cast<char>((v & 0x7F) | 0x80));
      v >>= 7;
    }
    data_.push_back(static_cast<char>(v));
  }
  void fixed(std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) data_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  }

  std::string data_;
};

}  // namespace tessera::io::proto
