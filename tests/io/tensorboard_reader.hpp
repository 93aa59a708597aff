// A test-side reader of TensorBoard event files, written from the event-file format description
// (the shared spec tensorboard-events.md; field numbers checked against TensorBoard's .proto
// files) and independently of tessera's writer: a bitwise CRC32C, a generic protobuf wire decoder,
// decoders for the messages TensorBoard reads, and strict PNG/WAV checks. Everything malformed
// throws std::runtime_error; unknown protobuf fields are skipped, known fields with the wrong wire
// type are errors.
#pragma once

#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tbtest {

// ---- checksums --------------------------------------------------------------------------------

/// CRC32C (Castagnoli), one bit at a time: reflected polynomial 0x82F63B78.
inline std::uint32_t crc32c(const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int bit = 0; bit < 8; ++bit) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return c ^ 0xFFFFFFFFu;
}
inline std::uint32_t masked(std::uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u; }

// ---- protobuf wire format ---------------------------------------------------------------------

/// One field as found on the wire. Varints land in `varint`; fixed32/fixed64 keep their raw bits
/// in `varint`; length-delimited payloads land in `bytes`.
struct Field {
  std::uint32_t number = 0;
  std::uint32_t wire = 0;
  std::uint64_t varint = 0;
  std::string bytes;
};

namespace detail {
[[noreturn]] inline void fail(const std::string& what) { throw std::runtime_error("tbtest: " + what); }

inline std::uint64_t read_varint(std::string_view s, std::size_t& pos) {
  std::uint64_t v = 0;
  for (int i = 0; i < 10; ++i) {
    if (pos >= s.size()) fail("truncated varint at byte " + std::to_string(pos));
    const auto b = static_cast<unsigned char>(s[pos++]);
    if (i == 9 && b > 1) fail("varint overflows 64 bits at byte " + std::to_string(pos - 1));
    v |= std::uint64_t(b & 0x7Fu) << (7 * i);
    if (!(b & 0x80u)) return v;
  }
  fail("varint longer than 10 bytes at byte " + std::to_string(pos));
}
inline std::uint64_t read_le(std::string_view s, std::size_t pos, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[pos + std::size_t(i)]);
  return v;
}
inline void expect_wire(const Field& f, std::uint32_t wire) {
  if (f.wire != wire)
    fail("field " + std::to_string(f.number) + " has wire type " + std::to_string(f.wire) + ", expected " +
         std::to_string(wire));
}
}  // namespace detail

/// Splits one serialized message into its fields, in order. Throws on anything malformed.
inline std::vector<Field> parse_message(std::string_view s) {
  std::vector<Field> out;
  std::size_t pos = 0;
  while (pos < s.size()) {
    const std::size_t start = pos;
    const std::uint64_t key = detail::read_varint(s, pos);
    Field f;
    f.wire = std::uint32_t(key & 7u);
    if ((key >> 3) == 0 || (key >> 3) > 0x1FFFFFFFu)
      detail::fail("bad field number " + std::to_string(key >> 3) + " at byte " + std::to_string(start));
    f.number = std::uint32_t(key >> 3);
    const auto need = [&](std::uint64_t n) {
      if (n > s.size() - pos)
        detail::fail("field " + std::to_string(f.number) + " at byte " + std::to_string(start) + " runs past the end");
    };
    switch (f.wire) {
      case 0:
        f.varint = detail::read_varint(s, pos);
        break;
      case 1:
        need(8);
        f.varint = detail::read_le(s, pos, 8);
        pos += 8;
        break;
      case 5:
        need(4);
        f.varint = detail::read_le(s, pos, 4);
        pos += 4;
        break;
      case 2: {
        const std::uint64_t n = detail::read_varint(s, pos);
        need(n);
        f.bytes.assign(s.data() + pos, std::size_t(n));
        pos += std::size_t(n);
        break;
      }
      default:
        detail::fail("unsupported wire type " + std::to_string(f.wire) + " at byte " + std::to_string(start));
    }
    out.push_back(std::move(f));
  }
  return out;
}

inline std::uint64_t as_varint(const Field& f) {
  detail::expect_wire(f, 0);
  return f.varint;
}
inline std::int64_t as_int64(const Field& f) { return static_cast<std::int64_t>(as_varint(f)); }
inline int as_int32(const Field& f) { return static_cast<int>(static_cast<std::int32_t>(as_varint(f))); }
inline bool as_bool(const Field& f) { return as_varint(f) != 0; }
inline const std::string& as_bytes(const Field& f) {
  detail::expect_wire(f, 2);
  return f.bytes;
}
inline double as_double(const Field& f) {
  detail::expect_wire(f, 1);
  double d;
  std::memcpy(&d, &f.varint, 8);
  return d;
}
inline float as_float(const Field& f) {
  detail::expect_wire(f, 5);
  const auto bits = static_cast<std::uint32_t>(f.varint);
  float v;
  std::memcpy(&v, &bits, 4);
  return v;
}
/// Repeated double, packed (wire 2) or one element (wire 1): appends to `out`.
inline void append_doubles(const Field& f, std::vector<double>& out) {
  if (f.wire == 1) {
    out.push_back(as_double(f));
    return;
  }
  const std::string& b = as_bytes(f);
  if (b.size() % 8) detail::fail("packed doubles of " + std::to_string(b.size()) + " bytes");
  for (std::size_t i = 0; i < b.size(); i += 8)
    out.push_back(as_double(Field{f.number, 1, detail::read_le(b, i, 8), {}}));
}
inline void append_floats(const Field& f, std::vector<float>& out) {
  if (f.wire == 5) {
    out.push_back(as_float(f));
    return;
  }
  const std::string& b = as_bytes(f);
  if (b.size() % 4) detail::fail("packed floats of " + std::to_string(b.size()) + " bytes");
  for (std::size_t i = 0; i < b.size(); i += 4)
    out.push_back(as_float(Field{f.number, 5, detail::read_le(b, i, 4), {}}));
}

// ---- messages ---------------------------------------------------------------------------------

struct Metadata {
  std::string plugin_name, plugin_content, display_name, description;
  int data_class = 0;
};
struct Image {
  int height = 0, width = 0, colorspace = 0;
  std::string encoded;
};
struct Audio {
  float sample_rate = 0;
  std::int64_t num_channels = 0, length_frames = 0;
  std::string encoded, content_type;
};
struct Histogram {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> bucket_limit, bucket;
};
struct TensorProto {
  int dtype = 0;
  std::vector<std::int64_t> dims;
  std::string tensor_content;
  std::vector<float> float_val;
  std::vector<double> double_val;
  std::vector<std::string> string_val;
};
struct SummaryValue {
  std::string tag;
  std::optional<Metadata> metadata;
  std::optional<float> simple_value;
  std::optional<Image> image;
  std::optional<Histogram> histo;
  std::optional<Audio> audio;
  std::optional<TensorProto> tensor;
};
struct Summary {
  std::vector<SummaryValue> values;
};
struct AttrValue {
  std::string s;
  std::optional<std::int64_t> i;
  std::optional<float> f;
  std::optional<bool> b;
  std::optional<int> type;
  std::optional<std::vector<std::int64_t>> shape;
  std::vector<std::vector<std::int64_t>> shape_list;  // from list.shape
};
struct NodeDef {
  std::string name, op, device;
  std::vector<std::string> inputs;
  std::map<std::string, AttrValue> attr;
};
struct GraphDef {
  std::vector<NodeDef> nodes;
  int producer = 0;
};
struct Event {
  double wall_time = 0;
  std::int64_t step = 0;
  std::string file_version;
  std::optional<GraphDef> graph;
  std::optional<Summary> summary;
};

/// TensorShapeProto: dim=2 {size=1, name=2}; unknown_rank=3 (ignored).
inline std::vector<std::int64_t> decode_shape(std::string_view s) {
  std::vector<std::int64_t> dims;
  for (const Field& f : parse_message(s)) {
    if (f.number != 2) continue;
    std::int64_t size = 0;
    for (const Field& d : parse_message(as_bytes(f)))
      if (d.number == 1) size = as_int64(d);
    dims.push_back(size);
  }
  return dims;
}

inline Metadata decode_metadata(std::string_view s) {
  Metadata m;
  for (const Field& f : parse_message(s)) {
    if (f.number == 1) {
      for (const Field& p : parse_message(as_bytes(f))) {
        if (p.number == 1)
          m.plugin_name = as_bytes(p);
        else if (p.number == 2)
          m.plugin_content = as_bytes(p);
      }
    } else if (f.number == 2)
      m.display_name = as_bytes(f);
    else if (f.number == 3)
      m.description = as_bytes(f);
    else if (f.number == 4)
      m.data_class = as_int32(f);
  }
  return m;
}

inline Image decode_image(std::string_view s) {
  Image im;
  for (const Field& f : parse_message(s)) {
    if (f.number == 1)
      im.height = as_int32(f);
    else if (f.number == 2)
      im.width = as_int32(f);
    else if (f.number == 3)
      im.colorspace = as_int32(f);
    else if (f.number == 4)
      im.encoded = as_bytes(f);
  }
  return im;
}

inline Audio decode_audio(std::string_view s) {
  Audio a;
  for (const Field& f : parse_message(s)) {
    if (f.number == 1)
      a.sample_rate = as_float(f);
    else if (f.number == 2)
      a.num_channels = as_int64(f);
    else if (f.number == 3)
      a.length_frames = as_int64(f);
    else if (f.number == 4)
      a.encoded = as_bytes(f);
    else if (f.number == 5)
      a.content_type = as_bytes(f);
  }
  return a;
}

inline Histogram decode_histogram(std::string_view s) {
  Histogram h;
  for (const Field& f : parse_message(s)) {
    if (f.number == 1)
      h.min = as_double(f);
    else if (f.number == 2)
      h.max = as_double(f);
    else if (f.number == 3)
      h.num = as_double(f);
    else if (f.number == 4)
      h.sum = as_double(f);
    else if (f.number == 5)
      h.sum_squares = as_double(f);
    else if (f.number == 6)
      append_doubles(f, h.bucket_limit);
    else if (f.number == 7)
      append_doubles(f, h.bucket);
  }
  return h;
}

inline TensorProto decode_tensor(std::string_view s) {
  TensorProto t;
  for (const Field& f : parse_message(s)) {
    if (f.number == 1)
      t.dtype = as_int32(f);
    else if (f.number == 2)
      t.dims = decode_shape(as_bytes(f));
    else if (f.number == 4)
      t.tensor_content = as_bytes(f);
    else if (f.number == 5)
      append_floats(f, t.float_val);
    else if (f.number == 6)
      append_doubles(f, t.double_val);
    else if (f.number == 8)
      t.string_val.push_back(as_bytes(f));
  }
  return t;
}

inline SummaryValue decode_summary_value(std::string_view s) {
  SummaryValue v;
  for (const Field& f : parse_message(s)) {
    if (f.number == 1)
      v.tag = as_bytes(f);
    else if (f.number == 2)
      v.simple_value = as_float(f);
    else if (f.number == 4)
      v.image = decode_image(as_bytes(f));
    else if (f.number == 5)
      v.histo = decode_histogram(as_bytes(f));
    else if (f.number == 6)
      v.audio = decode_audio(as_bytes(f));
    else if (f.number == 8)
      v.tensor = decode_tensor(as_bytes(f));
    else if (f.number == 9)
      v.metadata = decode_metadata(as_bytes(f));
  }
  return v;
}

inline Summary decode_summary(std::string_view s) {
  Summary sum;
  for (const Field& f : parse_message(s))
    if (f.number == 1) sum.values.push_back(decode_summary_value(as_bytes(f)));
  return sum;
}

/// AttrValue: list=1 (only list.shape=7 kept), s=2, i=3, f=4, b=5, type=6, shape=7.
inline AttrValue decode_attr(std::string_view s) {
  AttrValue a;
  for (const Field& f : parse_message(s)) {
    if (f.number == 1) {
      for (const Field& l : parse_message(as_bytes(f)))
        if (l.number == 7) a.shape_list.push_back(decode_shape(as_bytes(l)));
    } else if (f.number == 2)
      a.s = as_bytes(f);
    else if (f.number == 3)
      a.i = as_int64(f);
    else if (f.number == 4)
      a.f = as_float(f);
    else if (f.number == 5)
      a.b = as_bool(f);
    else if (f.number == 6)
      a.type = as_int32(f);
    else if (f.number == 7)
      a.shape = decode_shape(as_bytes(f));
  }
  return a;
}

inline NodeDef decode_node(std::string_view s) {
  NodeDef n;
  for (const Field& f : parse_message(s)) {
    if (f.number == 1)
      n.name = as_bytes(f);
    else if (f.number == 2)
      n.op = as_bytes(f);
    else if (f.number == 3)
      n.inputs.push_back(as_bytes(f));
    else if (f.number == 4)
      n.device = as_bytes(f);
    else if (f.number == 5) {  // map entry: key=1, value=2
      std::string key;
      AttrValue value;
      for (const Field& e : parse_message(as_bytes(f))) {
        if (e.number == 1)
          key = as_bytes(e);
        else if (e.number == 2)
          value = decode_attr(as_bytes(e));
      }
      n.attr[key] = std::move(value);
    }
  }
  return n;
}

inline GraphDef decode_graph(std::string_view s) {
  GraphDef g;
  for (const Field& f : parse_message(s)) {
    if (f.number == 1)
      g.nodes.push_back(decode_node(as_bytes(f)));
    else if (f.number == 4)
      for (const Field& v : parse_message(as_bytes(f)))
        if (v.number == 1) g.producer = as_int32(v);
  }
  return g;
}

inline Event decode_event(std::string_view s) {
  Event e;
  for (const Field& f : parse_message(s)) {
    if (f.number == 1)
      e.wall_time = as_double(f);
    else if (f.number == 2)
      e.step = as_int64(f);
    else if (f.number == 3)
      e.file_version = as_bytes(f);
    else if (f.number == 4)
      e.graph = decode_graph(as_bytes(f));
    else if (f.number == 5)
      e.summary = decode_summary(as_bytes(f));
  }
  return e;
}

// ---- hparams plugin content -------------------------------------------------------------------

/// HParamsPluginData (tensorboard/plugins/hparams/plugin_data.proto): version=1, experiment=2,
/// session_start_info=3, session_end_info=4. end_status: 0 unknown, 1 success, 2 failure, 3 running.
struct HParamsData {
  int version = 0;
  bool has_experiment = false, has_start = false, has_end = false;
  std::map<std::string, std::variant<double, std::string, bool>> hparams;
  std::string group_name;
  double start_time_secs = 0;
  int end_status = 0;
  double end_time_secs = 0;
  std::vector<std::string> experiment_hparam_names, experiment_metric_tags;
};

inline HParamsData decode_hparams(std::string_view content) {
  HParamsData h;
  for (const Field& f : parse_message(content)) {
    if (f.number == 1) {
      h.version = as_int32(f);
    } else if (f.number == 2) {  // Experiment: hparam_infos=4 {name=1}, metric_infos=5 {name=1 {group=1, tag=2}}
      h.has_experiment = true;
      for (const Field& x : parse_message(as_bytes(f))) {
        if (x.number != 4 && x.number != 5) continue;
        for (const Field& info : parse_message(as_bytes(x))) {
          if (info.number != 1) continue;
          if (x.number == 4) {
            h.experiment_hparam_names.push_back(as_bytes(info));
            continue;
          }
          std::string tag;
          for (const Field& n : parse_message(as_bytes(info)))
            if (n.number == 2) tag = as_bytes(n);
          h.experiment_metric_tags.push_back(tag);
        }
      }
    } else if (f.number == 3) {  // SessionStartInfo: hparams=1 map<string, Value>, group_name=4, start_time_secs=5
      h.has_start = true;
      for (const Field& x : parse_message(as_bytes(f))) {
        if (x.number == 4)
          h.group_name = as_bytes(x);
        else if (x.number == 5)
          h.start_time_secs = as_double(x);
        if (x.number != 1) continue;
        std::string key;
        std::optional<std::variant<double, std::string, bool>> value;
        for (const Field& e : parse_message(as_bytes(x))) {
          if (e.number == 1) key = as_bytes(e);
          if (e.number != 2) continue;
          for (const Field& v : parse_message(as_bytes(e))) {  // Value: number=2, string=3, bool=4
            if (v.number == 2)
              value = as_double(v);
            else if (v.number == 3)
              value = as_bytes(v);
            else if (v.number == 4)
              value = as_bool(v);
            else
              detail::fail("hparam '" + key + "': Value kind " + std::to_string(v.number) + " not supported");
          }
        }
        if (!value) detail::fail("hparam '" + key + "' has no value");
        h.hparams[key] = *value;
      }
    } else if (f.number == 4) {  // SessionEndInfo: status=1, end_time_secs=2
      h.has_end = true;
      for (const Field& x : parse_message(as_bytes(f))) {
        if (x.number == 1)
          h.end_status = as_int32(x);
        else if (x.number == 2)
          h.end_time_secs = as_double(x);
      }
    }
  }
  return h;
}

// ---- files ------------------------------------------------------------------------------------

inline std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) detail::fail(path + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// Walks the TFRecords of one event file, checking both CRCs of every record and that the file ends
/// exactly on a record boundary, and decodes every record as an Event.
inline std::vector<Event> read_event_file(const std::string& path) {
  const std::string file = read_file_bytes(path);
  std::vector<Event> events;
  std::size_t pos = 0;
  const auto fail_at = [&](std::size_t at, const std::string& what) {
    detail::fail(path + ": byte offset " + std::to_string(at) + ": " + what);
  };
  while (pos < file.size()) {
    if (file.size() - pos < 12)
      fail_at(pos, "truncated record header (" + std::to_string(file.size() - pos) + " bytes left)");
    const std::uint64_t length = detail::read_le(file, pos, 8);
    if (masked(crc32c(file.data() + pos, 8)) != std::uint32_t(detail::read_le(file, pos + 8, 4)))
      fail_at(pos, "length CRC mismatch");
    if (length > file.size() - pos - 12 || file.size() - pos - 12 - length < 4)
      fail_at(pos, "truncated record: length " + std::to_string(length) + " runs past the end of the file");
    const std::size_t data = pos + 12;
    const auto n = std::size_t(length);
    if (masked(crc32c(file.data() + data, n)) != std::uint32_t(detail::read_le(file, data + n, 4)))
      fail_at(pos, "data CRC mismatch");
    try {
      events.push_back(decode_event(std::string_view(file).substr(data, n)));
    } catch (const std::runtime_error& e) {
      fail_at(pos, std::string("bad Event: ") + e.what());
    }
    pos = data + n + 4;
  }
  return events;
}

/// Files in `dir` whose name contains "tfevents", sorted by name (full paths).
inline std::vector<std::string> event_files(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.is_regular_file() && entry.path().filename().string().find("tfevents") != std::string::npos)
      names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  for (std::string& n : names) n = (std::filesystem::path(dir) / n).string();
  return names;
}

// ---- PNG --------------------------------------------------------------------------------------

struct DecodedPng {
  int width = 0, height = 0, channels = 0;
  std::vector<unsigned char> pixels;  // row-major, 8 bits per sample, `channels` samples per pixel
};

/// Checks the chunk structure (signature, every chunk CRC, IHDR first, IEND last and nothing after
/// it) by hand, then decodes with libpng's simplified read API to 8-bit samples in the file's own
/// channel layout (gray, gray+alpha, RGB, RGBA).
inline DecodedPng decode_png(const std::string& bytes) {
  static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (bytes.size() < 8 || std::memcmp(bytes.data(), signature, 8) != 0) detail::fail("png: bad signature");
  const auto be32 = [&](std::size_t at) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[at + std::size_t(i)]);
    return v;
  };
  std::size_t pos = 8;
  bool first = true, ended = false;
  while (pos < bytes.size()) {
    if (ended) detail::fail("png: data after IEND at byte " + std::to_string(pos));
    if (bytes.size() - pos < 12) detail::fail("png: truncated chunk at byte " + std::to_string(pos));
    const std::uint32_t n = be32(pos);
    if (n > bytes.size() - pos - 12) detail::fail("png: chunk at byte " + std::to_string(pos) + " runs past the end");
    const std::string type = bytes.substr(pos + 4, 4);
    const auto* typed = reinterpret_cast<const Bytef*>(bytes.data() + pos + 4);
    if (std::uint32_t(::crc32(::crc32(0L, Z_NULL, 0), typed, uInt(n + 4))) != be32(pos + 8 + n))
      detail::fail("png: CRC mismatch in chunk " + type + " at byte " + std::to_string(pos));
    if (first && type != "IHDR") detail::fail("png: first chunk is " + type + ", not IHDR");
    first = false;
    ended = type == "IEND";
    pos += 12 + n;
  }
  if (!ended) detail::fail("png: no IEND chunk");

  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()))
    detail::fail(std::string("png: ") + image.message);  // libpng has freed its state on failure
  image.format &= ~png_uint_32(PNG_FORMAT_FLAG_COLORMAP | PNG_FORMAT_FLAG_LINEAR);
  DecodedPng out;
  out.width = int(image.width);
  out.height = int(image.height);
  out.channels = int(PNG_IMAGE_SAMPLE_CHANNELS(image.format));
  out.pixels.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, out.pixels.data(), 0, nullptr))
    detail::fail(std::string("png: ") + image.message);
  png_image_free(&image);  // a no-op after a successful finish_read; harmless
  return out;
}

// ---- WAV --------------------------------------------------------------------------------------

struct DecodedWav {
  int channels = 0, sample_rate = 0, bits_per_sample = 0;
  std::vector<std::int16_t> samples;  // interleaved
};

/// RIFF/WAVE with a PCM 16-bit "fmt " chunk before the "data" chunk; the RIFF size must match the
/// byte count, every chunk must fit, and the fmt fields must agree with each other.
inline DecodedWav decode_wav(const std::string& bytes) {
  const auto le = [&](std::size_t at, int n) { return std::uint32_t(detail::read_le(bytes, at, n)); };
  if (bytes.size() < 12 || bytes.compare(0, 4, "RIFF") != 0 || bytes.compare(8, 4, "WAVE") != 0)
    detail::fail("wav: not a RIFF/WAVE file");
  if (std::uint64_t(le(4, 4)) + 8 != bytes.size())
    detail::fail("wav: RIFF size " + std::to_string(le(4, 4)) + " does not match the " + std::to_string(bytes.size()) +
                 " bytes");
  DecodedWav w;
  bool have_fmt = false, have_data = false;
  std::size_t pos = 12;
  while (pos < bytes.size()) {
    if (bytes.size() - pos < 8) detail::fail("wav: truncated chunk header at byte " + std::to_string(pos));
    const std::string id = bytes.substr(pos, 4);
    const std::uint32_t n = le(pos + 4, 4);
    if (n > bytes.size() - pos - 8) detail::fail("wav: chunk '" + id + "' runs past the end");
    const std::size_t body = pos + 8;
    if (id == "fmt ") {
      if (n < 16) detail::fail("wav: fmt chunk of " + std::to_string(n) + " bytes");
      if (le(body, 2) != 1) detail::fail("wav: format " + std::to_string(le(body, 2)) + " is not PCM");
      w.channels = int(le(body + 2, 2));
      w.sample_rate = int(le(body + 4, 4));
      w.bits_per_sample = int(le(body + 14, 2));
      if (w.channels < 1 || w.sample_rate < 1 || w.bits_per_sample != 16)
        detail::fail("wav: unsupported fmt (channels/rate/bits)");
      const std::uint32_t block = std::uint32_t(w.channels) * 2u;
      if (le(body + 12, 2) != block || le(body + 8, 4) != block * std::uint32_t(w.sample_rate))
        detail::fail("wav: block_align/byte_rate disagree with channels and rate");
      have_fmt = true;
    } else if (id == "data") {
      if (!have_fmt) detail::fail("wav: data chunk before fmt chunk");
      if (have_data) detail::fail("wav: two data chunks");
      if (n % std::uint32_t(2 * w.channels)) detail::fail("wav: data is not whole frames");
      for (std::size_t i = 0; i < n; i += 2) w.samples.push_back(static_cast<std::int16_t>(le(body + i, 2)));
      have_data = true;
    }
    pos = body + n + (n & 1u);
    if (pos > bytes.size()) detail::fail("wav: missing pad byte after chunk '" + id + "'");
  }
  if (!have_fmt || !have_data) detail::fail("wav: missing fmt or data chunk");
  return w;
}

}  // namespace tbtest
