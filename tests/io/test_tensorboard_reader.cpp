// Tests of the test-side TensorBoard reader (tensorboard_reader.hpp) on bytes built here by hand:
// CRC32C check values, TFRecord framing with every bit flip and every truncation detected, and
// hand-encoded Event / Summary / GraphDef / hparams / PNG / WAV payloads decoded field by field.
// tessera's writer is not used here: these tests check the checker.
#include <doctest/doctest.h>

#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io/tensorboard_reader.hpp"

namespace {

// ---- a minimal protobuf encoder, only for building test inputs ----
std::string varint(std::uint64_t v) {
  std::string s;
  do {
    unsigned char b = v & 0x7F;
    v >>= 7;
    if (v) b |= 0x80;
    s.push_back(static_cast<char>(b));
  } while (v);
  return s;
}
std::string le(std::uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i, v >>= 8) s.push_back(static_cast<char>(v & 0xFF));
  return s;
}
std::string be32(std::uint32_t v) {
  std::string s;
  for (int i = 3; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  return s;
}
std::string key(int field, int wire) { return varint(std::uint64_t(field) << 3 | std::uint64_t(wire)); }
std::string pb_varint(int field, std::uint64_t v) { return key(field, 0) + varint(v); }
std::string pb_bytes(int field, const std::string& b) { return key(field, 2) + varint(b.size()) + b; }
std::string pb_double(int field, double d) {
  std::uint64_t bits;
  std::memcpy(&bits, &d, 8);
  return key(field, 1) + le(bits, 8);
}
std::string pb_float(int field, float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return key(field, 5) + le(bits, 4);
}
std::string packed_doubles(int field, const std::vector<double>& v) {
  std::string b;
  for (double d : v) b += pb_double(field, d).substr(1);  // drop the one-byte key
  return pb_bytes(field, b);
}

std::string record(const std::string& data) {
  const std::string len = le(data.size(), 8);
  return len + le(tbtest::masked(tbtest::crc32c(len.data(), 8)), 4) + data +
         le(tbtest::masked(tbtest::crc32c(data.data(), data.size())), 4);
}
std::string temp_file(const std::string& name, const std::string& bytes) {
  const std::string path = "tessera_test_tb_reader_" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
  return path;
}
std::string read_error(const std::string& bytes) {
  const std::string path = temp_file("bad.tfevents", bytes);
  try {
    tbtest::read_event_file(path);
  } catch (const std::runtime_error& e) {
    std::remove(path.c_str());
    return e.what();
  }
  std::remove(path.c_str());
  return {};
}
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const std::string file_version_event = pb_double(1, 1234.5) + pb_bytes(3, "brain.Event:2");

}  // namespace

TEST_CASE("CRC32C check values and the mask") {
  CHECK(tbtest::crc32c("123456789", 9) == 0xE3069283u);
  const std::string zeros(32, '\0');
  CHECK(tbtest::crc32c(zeros.data(), zeros.size()) == 0x8A9136AAu);
  CHECK(tbtest::crc32c("", 0) == 0u);
  CHECK(tbtest::masked(0) == 0xA282EAD8u);
  CHECK(tbtest::masked(0x00008000u) == 0xA282EAD8u + 1u);  // bit 15 rotates to bit 0
}

TEST_CASE("wire decoder: fields, and malformed input throws") {
  const auto fields =
      tbtest::parse_message(pb_varint(1, 300) + pb_bytes(2, "ab") + pb_float(3, 1.5f) + pb_double(4, -2.25));
  REQUIRE(fields.size() == 4);
  CHECK(fields[0].number == 1);
  CHECK(tbtest::as_varint(fields[0]) == 300);
  CHECK(tbtest::as_bytes(fields[1]) == "ab");
  CHECK(tbtest::as_float(fields[2]) == 1.5f);
  CHECK(tbtest::as_double(fields[3]) == -2.25);
  CHECK_THROWS_AS(tbtest::as_double(fields[2]), std::runtime_error);  // wrong wire type
  CHECK(tbtest::as_int32(tbtest::parse_message(pb_varint(1, std::uint64_t(-7)))[0]) == -7);

  for (const std::string& bad :
       {std::string("\x08\x80", 2),
        std::string("\x0a\x05"
                    "ab",
                    4),
        std::string("\x09\x01\x02", 3), std::string("\x0d\x01", 2), std::string("\x0b", 1), std::string("\x0c", 1),
        std::string("\x0e\x00", 2), std::string("\x0f\x00", 2), std::string("\x00\x00", 2),
        std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 11)})
    CHECK_THROWS_AS(tbtest::parse_message(bad), std::runtime_error);
  CHECK(tbtest::parse_message("").empty());
}

TEST_CASE("a hand-built event file decodes") {
  const std::string path = temp_file("one.tfevents", record(file_version_event) + record(pb_varint(2, 7)));
  const auto events = tbtest::read_event_file(path);
  std::remove(path.c_str());
  REQUIRE(events.size() == 2);
  CHECK(events[0].wall_time == 1234.5);
  CHECK(events[0].file_version == "brain.Event:2");
  CHECK(events[0].step == 0);
  CHECK(!events[0].summary);
  CHECK(!events[0].graph);
  CHECK(events[1].step == 7);
  CHECK(read_error("").empty());  // an empty file is zero records
}

TEST_CASE("every bit flip and every truncation is detected") {
  const std::string good = record(file_version_event);
  REQUIRE(read_error(good).empty());
  CHECK(contains(read_error(good.substr(0, good.size() - 1)), "byte offset 0"));
  CHECK(contains(read_error(good + good.substr(0, 5)), "byte offset " + std::to_string(good.size())));
  for (std::size_t byte = 0; byte < good.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = good;
      bad[byte] = static_cast<char>(bad[byte] ^ (1 << bit));
      const std::string err = read_error(bad);
      CHECK_MESSAGE(contains(err, "CRC mismatch"), "byte ", byte, " bit ", bit, ": ", err);
      if (byte >= 8 && byte < 12) CHECK(contains(err, "length CRC"));
      if (byte >= 12) CHECK(contains(err, "data CRC"));
    }
  }
  for (std::size_t n = 1; n < good.size(); ++n) CHECK_MESSAGE(!read_error(good.substr(0, n)).empty(), "length ", n);
  // A record whose framing is right but whose payload is not a message.
  CHECK(contains(read_error(record(std::string("\x0a\x09", 2))), "bad Event"));
}

TEST_CASE("a summary with a simple value, a histogram and a tensor") {
  const std::string histo = pb_double(1, -1.0) + pb_double(2, 2.0) + pb_double(3, 4) + pb_double(4, 3.0) +
                            pb_double(5, 7.0) + packed_doubles(6, {0.0, 1.0}) + pb_double(6, 1.7976931348623157e308) +
                            pb_double(7, 1) + packed_doubles(7, {2, 1});
  const std::string metadata = pb_bytes(1, pb_bytes(1, "text") + pb_bytes(2, "")) + pb_varint(4, 2);
  const std::string tensor = pb_varint(1, 7) + pb_bytes(2, pb_bytes(2, pb_varint(1, 1))) + pb_bytes(8, "**hi**");
  const std::string summary = pb_bytes(1, pb_bytes(1, "loss") + pb_float(2, 0.25f)) +
                              pb_bytes(1, pb_bytes(1, "w") + pb_bytes(5, histo)) +
                              pb_bytes(1, pb_bytes(1, "notes") + pb_bytes(9, metadata) + pb_bytes(8, tensor));
  const auto e = tbtest::decode_event(pb_double(1, 1.0) + pb_varint(2, 3) + pb_bytes(5, summary) + pb_varint(99, 1));
  CHECK(e.step == 3);
  REQUIRE(e.summary);
  REQUIRE(e.summary->values.size() == 3);
  const auto& loss = e.summary->values[0];
  CHECK(loss.tag == "loss");
  REQUIRE(loss.simple_value);
  CHECK(*loss.simple_value == 0.25f);
  CHECK(!loss.histo);
  const auto& w = e.summary->values[1];
  REQUIRE(w.histo);
  CHECK(w.histo->min == -1.0);
  CHECK(w.histo->max == 2.0);
  CHECK(w.histo->num == 4);
  CHECK(w.histo->sum == 3.0);
  CHECK(w.histo->sum_squares == 7.0);
  CHECK(w.histo->bucket_limit == std::vector<double>{0.0, 1.0, 1.7976931348623157e308});
  CHECK(w.histo->bucket == std::vector<double>{1, 2, 1});
  const auto& notes = e.summary->values[2];
  REQUIRE(notes.metadata);
  CHECK(notes.metadata->plugin_name == "text");
  CHECK(notes.metadata->data_class == 2);
  REQUIRE(notes.tensor);
  CHECK(notes.tensor->dtype == 7);
  CHECK(notes.tensor->dims == std::vector<std::int64_t>{1});
  CHECK(notes.tensor->string_val == std::vector<std::string>{"**hi**"});
}

TEST_CASE("image and audio summaries, and the PNG and WAV they carry") {
  // A 3x2 RGB PNG built by hand: zlib stream of rows with filter byte 0.
  std::string raw;
  for (int y = 0; y < 2; ++y) {
    raw.push_back('\0');
    for (int x = 0; x < 3; ++x)
      for (int c = 0; c < 3; ++c) raw.push_back(static_cast<char>(40 * y + 10 * x + c));
  }
  std::string z(compressBound(uLong(raw.size())), '\0');
  uLongf zn = uLongf(z.size());
  REQUIRE(compress(reinterpret_cast<Bytef*>(&z[0]), &zn, reinterpret_cast<const Bytef*>(raw.data()),
                   uLong(raw.size())) == Z_OK);
  z.resize(zn);
  const auto chunk = [](const std::string& type, const std::string& body) {
    const std::string td = type + body;
    return be32(std::uint32_t(body.size())) + td +
           be32(std::uint32_t(crc32(0L, reinterpret_cast<const Bytef*>(td.data()), uInt(td.size()))));
  };
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) +
                          chunk("IHDR", be32(3) + be32(2) + std::string("\x08\x02\x00\x00\x00", 5)) + chunk("IDAT", z) +
                          chunk("IEND", "");
  const auto img = tbtest::decode_png(png);
  CHECK(img.width == 3);
  CHECK(img.height == 2);
  CHECK(img.channels == 3);
  REQUIRE(img.pixels.size() == 18);
  CHECK(img.pixels[0] == 0);
  CHECK(img.pixels[5] == 12);
  CHECK(img.pixels[17] == 62);
  CHECK_THROWS_AS(tbtest::decode_png(png.substr(0, png.size() - 3)), std::runtime_error);
  CHECK_THROWS_AS(tbtest::decode_png(png + "x"), std::runtime_error);
  std::string flipped = png;
  flipped[45] = static_cast<char>(flipped[45] ^ 4);  // inside the IDAT data
  CHECK_THROWS_AS(tbtest::decode_png(flipped), std::runtime_error);
  const std::string no_idat = std::string("\x89PNG\r\n\x1a\n", 8) +
                              chunk("IHDR", be32(3) + be32(2) + std::string("\x08\x02\x00\x00\x00", 5)) +
                              chunk("IEND", "");
  CHECK_THROWS_AS(tbtest::decode_png(no_idat), std::runtime_error);
  CHECK_THROWS_AS(tbtest::decode_png(png.substr(0, png.size() - 12)), std::runtime_error);  // no IEND

  // A mono 16-bit WAV of 3 frames.
  const std::string fmt = le(1, 2) + le(1, 2) + le(8000, 4) + le(16000, 4) + le(2, 2) + le(16, 2);
  const std::string data = le(0, 2) + le(1000, 2) + le(std::uint16_t(-1000), 2);
  const std::string body = "WAVE" + std::string("fmt ") + le(16, 4) + fmt + "data" + le(data.size(), 4) + data;
  const std::string wav = "RIFF" + le(body.size(), 4) + body;
  const auto w = tbtest::decode_wav(wav);
  CHECK(w.channels == 1);
  CHECK(w.sample_rate == 8000);
  CHECK(w.bits_per_sample == 16);
  CHECK(w.samples == std::vector<std::int16_t>{0, 1000, -1000});
  CHECK_THROWS_AS(tbtest::decode_wav(wav.substr(0, wav.size() - 2)), std::runtime_error);
  CHECK_THROWS_AS(tbtest::decode_wav(wav + "xx"), std::runtime_error);
  std::string bad_rate = wav;
  bad_rate[28] = 1;  // byte_rate no longer sample_rate * block_align
  CHECK_THROWS_AS(tbtest::decode_wav(bad_rate), std::runtime_error);

  const std::string value =
      pb_bytes(1, "sample") + pb_bytes(4, pb_varint(1, 2) + pb_varint(2, 3) + pb_varint(3, 3) + pb_bytes(4, png));
  const std::string audio = pb_bytes(1, "tone") + pb_bytes(6, pb_float(1, 8000.f) + pb_varint(2, 1) + pb_varint(3, 3) +
                                                                  pb_bytes(4, wav) + pb_bytes(5, "audio/wav"));
  const auto s = tbtest::decode_summary(pb_bytes(1, value) + pb_bytes(1, audio));
  REQUIRE(s.values.size() == 2);
  REQUIRE(s.values[0].image);
  CHECK(s.values[0].image->height == 2);
  CHECK(s.values[0].image->width == 3);
  CHECK(s.values[0].image->colorspace == 3);
  CHECK(tbtest::decode_png(s.values[0].image->encoded).pixels == img.pixels);
  REQUIRE(s.values[1].audio);
  CHECK(s.values[1].audio->sample_rate == 8000.f);
  CHECK(s.values[1].audio->num_channels == 1);
  CHECK(s.values[1].audio->length_frames == 3);
  CHECK(s.values[1].audio->content_type == "audio/wav");
  CHECK(tbtest::decode_wav(s.values[1].audio->encoded).samples.size() == 3);
}

TEST_CASE("a graph and hparams plugin content") {
  const auto shape = [](std::vector<std::int64_t> dims) {
    std::string s;
    for (auto d : dims) s += pb_bytes(2, pb_varint(1, std::uint64_t(d)));
    return s;
  };
  const std::string attr_entry =
      pb_bytes(1, "_output_shapes") + pb_bytes(2, pb_bytes(1, pb_bytes(7, shape({2, 3})) + pb_bytes(7, shape({-1}))));
  const std::string dtype_entry = pb_bytes(1, "T") + pb_bytes(2, pb_varint(6, 1));
  const std::string graph = pb_bytes(1, pb_bytes(1, "x") + pb_bytes(2, "Placeholder")) +
                            pb_bytes(1, pb_bytes(1, "layer/matmul") + pb_bytes(2, "MatMul") + pb_bytes(3, "x") +
                                            pb_bytes(3, "^w:1") + pb_bytes(5, attr_entry) + pb_bytes(5, dtype_entry)) +
                            pb_bytes(4, pb_varint(1, 27));
  const auto e = tbtest::decode_event(pb_bytes(4, graph));
  REQUIRE(e.graph);
  CHECK(e.graph->producer == 27);
  REQUIRE(e.graph->nodes.size() == 2);
  const auto& mm = e.graph->nodes[1];
  CHECK(mm.name == "layer/matmul");
  CHECK(mm.op == "MatMul");
  CHECK(mm.inputs == std::vector<std::string>{"x", "^w:1"});
  REQUIRE(mm.attr.count("_output_shapes"));
  CHECK(mm.attr.at("_output_shapes").shape_list == std::vector<std::vector<std::int64_t>>{{2, 3}, {-1}});
  CHECK(mm.attr.at("T").type == 1);
  CHECK(!mm.attr.at("T").i);

  const auto hp_value = [](const std::string& value) { return pb_bytes(2, value); };
  const std::string start = pb_bytes(1, pb_bytes(1, "lr") + hp_value(pb_double(2, 0.01))) +
                            pb_bytes(1, pb_bytes(1, "optimizer") + hp_value(pb_bytes(3, "adam"))) +
                            pb_bytes(1, pb_bytes(1, "batch_norm") + hp_value(pb_varint(4, 1))) + pb_bytes(4, "g") +
                            pb_double(5, 99.5);
  const auto h = tbtest::decode_hparams(pb_varint(1, 0) + pb_bytes(3, start));
  CHECK(h.has_start);
  CHECK(!h.has_end);
  CHECK(!h.has_experiment);
  CHECK(std::get<double>(h.hparams.at("lr")) == 0.01);
  CHECK(std::get<std::string>(h.hparams.at("optimizer")) == "adam");
  CHECK(std::get<bool>(h.hparams.at("batch_norm")) == true);
  CHECK(h.group_name == "g");
  CHECK(h.start_time_secs == 99.5);
  const auto end = tbtest::decode_hparams(pb_bytes(4, pb_varint(1, 1) + pb_double(2, 100.0)));
  CHECK(end.has_end);
  CHECK(end.end_status == 1);
  CHECK(end.end_time_secs == 100.0);
  const std::string experiment =
      pb_bytes(4, pb_bytes(1, "lr") + pb_varint(4, 3)) + pb_bytes(5, pb_bytes(1, pb_bytes(2, "hparam/accuracy")));
  const auto x = tbtest::decode_hparams(pb_varint(1, 0) + pb_bytes(2, experiment));
  CHECK(x.has_experiment);
  CHECK(x.experiment_hparam_names == std::vector<std::string>{"lr"});
  CHECK(x.experiment_metric_tags == std::vector<std::string>{"hparam/accuracy"});
  CHECK_THROWS_AS(tbtest::decode_hparams(pb_bytes(3, pb_bytes(1, pb_bytes(1, "k")))), std::runtime_error);  // no value
}

TEST_CASE("event_files lists only tfevents files, by name") {
  const std::filesystem::path dir = "tessera_test_tb_reader_dir";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directory(dir);
  for (const char* name : {"events.out.tfevents.2.h", "notes.txt", "events.out.tfevents.1.h"})
    std::ofstream(dir / name) << "";
  const auto files = tbtest::event_files(dir.string());
  std::filesystem::remove_all(dir);
  REQUIRE(files.size() == 2);
  CHECK(std::filesystem::path(files[0]).filename() == "events.out.tfevents.1.h");
  CHECK(std::filesystem::path(files[1]).filename() == "events.out.tfevents.2.h");
}
