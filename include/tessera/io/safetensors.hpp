// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of JSON
//
//   {"conv1.weight": {"dtype": "F32", "shape": [32, 1, 3, 3], "data_offsets": [0, 1152]}, ...,
//    "__metadata__": {"format": "pt", ...}}
//
// then the raw little-endian data, each tensor C-contiguous at its offsets (relative to the end of
// the header). Python's `safetensors.torch.load_file` reads what SafetensorsFile writes.
//
// Reading trusts nothing: the header length, the JSON, every dtype, shape and offset pair, the
// tiling of the data area, and the byte counts are checked, and any problem is an io_error naming
// the file and what is wrong. No read ever leaves the bytes of the file.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tessera/core/config.hpp"
#include "tessera/core/dtype.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/tensor.hpp"
#include "tessera/io/file.hpp"

// Only the definitions read and write the JSON header: a program that takes them from
// tessera::precompiled does not parse nlohmann-json for this header.
#if TESSERA_OUT_OF_LINE_DEFINITIONS
#include <nlohmann/json.hpp>
#endif

namespace tessera::io {

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tessera::io::SafetensorsFile assumes a little-endian host"
#endif

/// The safetensors dtype tag of an element type ("F32", "I64", ...).
template <class T>
constexpr const char* safetensors_dtype() noexcept {
  if constexpr (std::is_same_v<T, float>) return "F32";
  else if constexpr (std::is_same_v<T, double>) return "F64";
  else if constexpr (std::is_same_v<T, std::int32_t>) return "I32";
  else if constexpr (std::is_same_v<T, std::int64_t>) return "I64";
  else if constexpr (std::is_same_v<T, bool>) return "BOOL";
  else return nullptr;
}

/// Bytes per element of a safetensors dtype tag; 0 for a tag the format does not define.
inline std::size_t safetensors_dtype_size(std::string_view tag) noexcept {
  static const std::pair<std::string_view, std::size_t> table[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};
  for (const auto& [name, size] : table) {
    if (name == tag) return size;
  }
  return 0;
}

/// One tensor of a safetensors file.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;               ///< safetensors tag ("F32")
  std::vector<std::int64_t> shape;
  std::size_t begin = 0, end = 0;  ///< byte range in the file's data area
};

/// A safetensors file in memory: named tensors and string metadata. Build one with add() and
/// write() it, or read() one and copy tensors out with copy_to() / tensor().
class SafetensorsFile {
 public:
  /// Largest header accepted (the reference implementation's limit).
  static constexpr std::uint64_t max_header_bytes = 100'000'000;

  SafetensorsFile() = default;

  /// Reads and validates the file at `path`.
  static SafetensorsFile read(const std::string& path) { return parse(read_file(path), path); }

  /// Validates `bytes` as a safetensors file; `source` names it in error messages.
  TESSERA_OUT_OF_LINE static SafetensorsFile parse(std::vector<unsigned char> bytes, const std::string& source);

  /// Adds a tensor (copied; any layout) under `name`.
  template <class T, std::size_t R, class B>
  void add(const std::string& name, const Tensor<T, R, B>& t) {
    static_assert(safetensors_dtype<T>() != nullptr, "tessera::io::SafetensorsFile: no safetensors dtype for this element type");
    if (name.empty() || name == "__metadata__") throw value_error("safetensors: invalid tensor name \"" + name + "\"");
    if (find(name)) throw value_error("safetensors: tensor \"" + name + "\" added twice");
    const Tensor<T, R, cpu> c = t.template to<cpu>().contiguous();  // device tensors: copied to the host first
    SafetensorsEntry e;
    e.name = name;
    e.dtype = safetensors_dtype<T>();
    for (const auto extent : c.shape()) e.shape.push_back(extent);
    e.begin = data_.size();
    e.end = e.begin + sizeof(T) * static_cast<std::size_t>(c.size());
    data_.resize(e.end);
    if (c.size() > 0) std::memcpy(data_.data() + e.begin, c.data(), e.end - e.begin);
    entries_.push_back(std::move(e));
  }

  /// Adds a flat contiguous tensor under `name` with the given shape (optimizer state, kept flat).
  template <class T, class B>
  void add(const std::string& name, const Tensor<T, 1, B>& flat, const std::vector<index_t>& shape) {
    index_t n = 1;
    for (const auto x : shape) n *= x;
    if (n != flat.size()) throw shape_error("safetensors: tensor \"" + name + "\": shape does not match its element count");
    add(name, flat);
    entries_.back().shape.assign(shape.begin(), shape.end());
  }

  /// Writes the file atomically (see write_file_atomically).
  TESSERA_OUT_OF_LINE void write(const std::string& path) const;

  const std::vector<SafetensorsEntry>& entries() const noexcept { return entries_; }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  std::map<std::string, std::string>& metadata() noexcept { return metadata_; }
  /// Where the file came from (its path when read; empty when built in memory).
  const std::string& source() const noexcept { return source_; }

  /// The entry called `name`, or nullptr.
  const SafetensorsEntry* find(std::string_view name) const noexcept {
    for (const auto& e : entries_) {
      if (e.name == name) return &e;
    }
    return nullptr;
  }

  /// Throws io_error unless tensor `name` exists with T's dtype and exactly `shape`.
  template <class T, class ShapeRange>
  const SafetensorsEntry& check(std::string_view name, const ShapeRange& shape) const {
    const SafetensorsEntry& e = checked(name, safetensors_dtype<T>(), std::size(shape));
    std::size_t i = 0;
    for (const auto extent : shape) {
      if (e.shape[i++] != static_cast<std::int64_t>(extent)) {
        std::vector<std::int64_t> expected(std::begin(shape), std::end(shape));
        throw io_error(where() + "tensor \"" + e.name + "\" has shape " + shape_text(e.shape) + ", expected " +
                       shape_text(expected));
      }
    }
    return e;
  }

  /// Copies tensor `name` into `dst` in place; element type and shape must match the file's.
  template <class T, std::size_t R, class B>
  void copy_to(std::string_view name, Tensor<T, R, B>& dst) const {
    const SafetensorsEntry& e = check<T>(name, dst.shape());
    if (dst.is_contiguous()) {
      copy_bytes_to<B>(dst.data(), e);
    } else {
      dst.assign(tensor<T, R, B>(name));
    }
  }

  /// Copies tensor `name`, which must have `shape`, into the flat contiguous `dst`.
  template <class T, class B>
  void copy_to(std::string_view name, Tensor<T, 1, B>& dst, const std::vector<index_t>& shape) const {
    const SafetensorsEntry& e = check<T>(name, shape);
    if (!dst.is_contiguous() || static_cast<std::size_t>(dst.size()) * sizeof(T) != e.end - e.begin) {
      throw shape_error(where() + "tensor \"" + e.name + "\": destination buffer does not match");
    }
    copy_bytes_to<B>(dst.data(), e);
  }

  /// Tensor `name` as a new tensor; its element type and rank must match the file's.
  template <class T, std::size_t R, class B = cpu>
  Tensor<T, R, B> tensor(std::string_view name) const {
    const SafetensorsEntry& e = checked(name, safetensors_dtype<T>(), R);
    Shape<R> shape{};
    for (std::size_t i = 0; i < R; ++i) shape[i] = static_cast<index_t>(e.shape[i]);
    auto out = Tensor<T, R, B>::uninitialized(shape);
    copy_bytes_to<B>(out.data(), e);
    return out;
  }

 private:
  /// The entry's bytes into contiguous memory of backend B (host or device).
  template <class B>
  void copy_bytes_to(void* dst, const SafetensorsEntry& e) const {
    const std::size_t bytes = e.end - e.begin;
    if (bytes == 0) return;
    if constexpr (B::host_accessible) {
      std::memcpy(dst, data_.data() + e.begin, bytes);
    } else {
      B::copy_from_host(dst, data_.data() + e.begin, bytes);
    }
  }

  std::string where() const { return source_.empty() ? std::string("safetensors: ") : source_ + ": "; }

  TESSERA_OUT_OF_LINE static std::string shape_text(const std::vector<std::int64_t>& s);

  TESSERA_OUT_OF_LINE const SafetensorsEntry& checked(std::string_view name, const char* dtype, std::size_t rank) const;

  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
  std::vector<unsigned char> data_;
  std::string source_;
};

#if TESSERA_OUT_OF_LINE_DEFINITIONS

namespace detail {
/// One entry of a safetensors header, checked against the data area's size.
template <class Fail>
SafetensorsEntry parse_safetensors_entry(const std::string& name, const nlohmann::json& value, std::size_t data_size,
                                         const Fail& fail) {
  const std::string which = "tensor \"" + name + "\": ";
  if (name.empty()) throw fail("a tensor has an empty name");
  if (!value.is_object()) throw fail(which + "entry is not an object");
  for (const auto& [key, unused] : value.items()) {
    (void)unused;
    if (key != "dtype" && key != "shape" && key != "data_offsets") throw fail(which + "unknown field \"" + key + "\"");
  }
  SafetensorsEntry e;
  e.name = name;
  const auto dtype = value.find("dtype");
  if (dtype == value.end() || !dtype->is_string()) throw fail(which + "missing or non-string \"dtype\"");
  e.dtype = dtype->get<std::string>();
  const std::size_t element_size = safetensors_dtype_size(e.dtype);
  if (element_size == 0) throw fail(which + "unknown dtype \"" + e.dtype + "\"");
  const auto shape = value.find("shape");
  if (shape == value.end() || !shape->is_array()) throw fail(which + "missing or non-array \"shape\"");
  // The product of the nonzero extents is bounded too: beside a zero the tensor is empty, but its
  // element count and strides are still products of the others.
  std::uint64_t elements = 1, nonzero = 1;
  for (const auto& extent : *shape) {
    if (!extent.is_number_unsigned())
      throw fail(which + "shape " + shape->dump() + " has an entry that is not a non-negative integer");
    const auto x = extent.get<std::uint64_t>();
    if (x != 0 && nonzero > (std::uint64_t{1} << 62) / x)
      throw fail(which + "shape " + shape->dump() + " is too large");
    if (x != 0) nonzero *= x;
    elements *= x;
    e.shape.push_back(static_cast<std::int64_t>(x));
  }
  const auto offsets = value.find("data_offsets");
  if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
      !(*offsets)[1].is_number_unsigned()) {
    throw fail(which + "\"data_offsets\" is not a pair of non-negative integers");
  }
  const auto begin = (*offsets)[0].get<std::uint64_t>(), end = (*offsets)[1].get<std::uint64_t>();
  if (begin > end || end > data_size) {
    throw fail(which + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
               "] do not lie within the " + std::to_string(data_size) + " bytes of data (truncated file?)");
  }
  if (elements > std::numeric_limits<std::uint64_t>::max() / element_size || end - begin != elements * element_size) {
    throw fail(which + "data_offsets span " + std::to_string(end - begin) + " bytes but dtype " + e.dtype +
               " and shape " + shape->dump() + " need " + std::to_string(elements * element_size));
  }
  e.begin = static_cast<std::size_t>(begin);
  e.end = static_cast<std::size_t>(end);
  return e;
}
}  // namespace detail

TESSERA_OUT_OF_LINE SafetensorsFile SafetensorsFile::parse(std::vector<unsigned char> bytes,
                                                           const std::string& source) {
  SafetensorsFile f;
  f.source_ = source;
  auto fail = [&](const std::string& what) -> io_error {
    return io_error(source + ": not a valid safetensors file: " + what);
  };
  if (bytes.size() < 8)
    throw fail("shorter than the 8-byte header length (" + std::to_string(bytes.size()) + " bytes)");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[static_cast<std::size_t>(i)];
  if (n > max_header_bytes) throw fail("header length " + std::to_string(n) + " exceeds the limit of 100 MB");
  if (n > bytes.size() - 8) {
    throw fail("truncated: header length " + std::to_string(n) + " but only " + std::to_string(bytes.size() - 8) +
               " bytes follow");
  }
  const char* header_begin = reinterpret_cast<const char*>(bytes.data() + 8);
  if (n == 0 || header_begin[0] != '{') throw fail("the header does not start with '{'");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + n);
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!header.is_object()) throw fail("the header is not a JSON object");
  const std::size_t data_size = bytes.size() - 8 - static_cast<std::size_t>(n);
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) throw fail("__metadata__ is not an object");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) throw fail("__metadata__ entry \"" + k + "\" is not a string");
        f.metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    f.entries_.push_back(detail::parse_safetensors_entry(name, value, data_size, fail));
  }
  // The tensors must tile the data area exactly: sorted by offset, no gaps, no overlaps.
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : f.entries_) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  std::size_t expected = 0;
  for (const auto* e : by_offset) {
    if (e->begin != expected) {
      throw fail("tensor \"" + e->name + "\" starts at byte " + std::to_string(e->begin) + " of the data, expected " +
                 std::to_string(expected) + " (overlap or gap)");
    }
    expected = e->end;
  }
  if (expected != data_size) {
    throw fail("the tensors cover " + std::to_string(expected) + " bytes of data but the file has " +
               std::to_string(data_size) + (expected < data_size ? " (trailing bytes)" : ""));
  }
  bytes.erase(bytes.begin(), bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  f.data_ = std::move(bytes);
  return f;
}

TESSERA_OUT_OF_LINE void SafetensorsFile::write(const std::string& path) const {
  nlohmann::json header = nlohmann::json::object();
  for (const auto& e : entries_) {
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
  }
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception&) {
    throw value_error("safetensors: " + path + ": a tensor name or metadata string is not valid UTF-8");
  }
  // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string length(8, '\0');
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i, n >>= 8) length[static_cast<std::size_t>(i)] = static_cast<char>(n & 0xFF);
  write_file_atomically(path,
                        {length, text, std::string_view(reinterpret_cast<const char*>(data_.data()), data_.size())});
}

TESSERA_OUT_OF_LINE std::string SafetensorsFile::shape_text(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

TESSERA_OUT_OF_LINE const SafetensorsEntry& SafetensorsFile::checked(std::string_view name, const char* dtype,
                                                                     std::size_t rank) const {
  const SafetensorsEntry* e = find(name);
  if (!e) throw io_error(where() + "no tensor \"" + std::string(name) + "\"");
  if (e->dtype != dtype) {
    throw io_error(where() + "tensor \"" + e->name + "\" has dtype " + e->dtype + ", expected " + dtype);
  }
  if (e->shape.size() != rank) {
    throw io_error(where() + "tensor \"" + e->name + "\" has shape " + shape_text(e->shape) + " (rank " +
                   std::to_string(e->shape.size()) + "), expected rank " + std::to_string(rank));
  }
  return *e;
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

}  // namespace tessera::io
