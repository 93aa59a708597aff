// summary::Writer and its event file: CRC32C and protobuf encodings, every summary kind decoded
// back by the independent reader of tensorboard_reader.hpp, protoc --decode_raw when installed,
// write errors (unwritable directory, full disk mid-run), threads and flushing. Also writes the
// run that tensorboard_check.py loads with TensorBoard itself (TESSERA_TENSORBOARD_RUN).
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <tessera/tessera.hpp>

#include "io/tensorboard_reader.hpp"

using namespace tessera;

namespace {

std::string fresh_dir(const std::string& name) {
  const std::string dir = "test_summary_runs/" + name;
  std::system(("rm -rf '" + dir + "'").c_str());
  return dir;
}

std::vector<tbtest::Event> events_in(const std::string& dir) {
  const auto files = tbtest::event_files(dir);
  REQUIRE(files.size() == 1);
  return tbtest::read_event_file(files[0]);
}

/// The summary values of all events, with their steps.
std::vector<std::pair<std::int64_t, tbtest::SummaryValue>> values_of(const std::vector<tbtest::Event>& events) {
  std::vector<std::pair<std::int64_t, tbtest::SummaryValue>> out;
  for (const auto& e : events)
    if (e.summary)
      for (const auto& v : e.summary->values) out.emplace_back(e.step, v);
  return out;
}

const tbtest::SummaryValue& only(const std::vector<std::pair<std::int64_t, tbtest::SummaryValue>>& values,
                                 const std::string& tag) {
  const tbtest::SummaryValue* found = nullptr;
  for (const auto& [step, v] : values) {
    if (v.tag != tag) continue;
    REQUIRE_MESSAGE(found == nullptr, "tag " << tag << " written twice");
    found = &v;
  }
  REQUIRE_MESSAGE(found != nullptr, "tag " << tag << " missing");
  return *found;
}

/// A hand-made GraphDef: x (Placeholder) and dense/weight (VariableV2) into dense/matmul.
std::string small_graph_def() {
  using io::proto::Message;
  auto node = [](const std::string& name, const std::string& op, std::vector<std::string> inputs) {
    Message n;
    n.bytes(1, name).bytes(2, op);
    for (const auto& i : inputs) n.bytes(3, i);
    return n;
  };
  Message graph, versions;
  graph.message(1, node("x", "Placeholder", {})).message(1, node("dense/weight", "VariableV2", {}));
  graph.message(1, node("dense/matmul", "MatMul", {"x", "dense/weight"}));
  versions.uint(1, 22);
  graph.message(4, versions);
  return graph.data();
}

/// The contract run of tensorboard_check.py (see that script).
void write_contract_run(const std::string& dir) {
  summary::Writer w(dir);
  for (int step = 0; step < 10; ++step) w.scalar("loss", 1.0 / (step + 1), step);
  std::vector<double> values;
  for (int i = 0; i < 1000; ++i) values.push_back(i / 1000.0);
  w.histogram("weights", values, 0);
  w.histogram("weights", values, 1);
  Tensor<std::int32_t, 3> rgb(Shape<3>{4, 6, 3});
  for (index_t i = 0; i < rgb.size(); ++i) rgb.data()[i] = std::int32_t(i * 7 % 256);
  w.image("sample", rgb, 0);
  Tensor<float, 4> batch = zeros<float>({3, 1, 2, 2});
  for (index_t i = 0; i < batch.size(); ++i) batch.data()[i] = float(i) / 11.0f;
  w.image("grid", batch, 0, summary::ImageLayout::CHW);
  Tensor<float, 1> tone(Shape<1>{800});
  for (index_t i = 0; i < 800; ++i) tone(i) = 0.5f * std::sin(2.0f * 3.14159265f * 440.0f * float(i) / 8000.0f);
  w.audio("tone", tone, 8000, 0);
  w.text("notes", "**hello** tessera", 0);
  w.hparams({{"lr", 0.01}, {"optimizer", "adam"}, {"batch_norm", true}}, {{"hparam/accuracy", 0.75}});
  w.graph_def(small_graph_def());
  w.close();
}

}  // namespace

TEST_CASE("CRC32C check values and TFRecord's mask") {
  CHECK(io::crc32c("123456789", 9) == 0xE3069283u);
  const std::string zeros32(32, '\0');
  CHECK(io::crc32c(zeros32.data(), 32) == 0x8A9136AAu);
  // Against the reader's bitwise implementation on assorted bytes.
  std::string bytes;
  for (int i = 0; i < 1000; ++i) bytes.push_back(char(i * 131 % 251));
  for (std::size_t n : {0, 1, 7, 64, 1000}) {
    CHECK(io::crc32c(bytes.data(), n) == tbtest::crc32c(bytes.data(), n));
    CHECK(io::masked_crc32c(bytes.data(), n) == tbtest::masked(tbtest::crc32c(bytes.data(), n)));
  }
}

TEST_CASE("protobuf encoding of varints, negatives, fixed-width numbers and nested messages") {
  io::proto::Message m;
  m.uint(1, 150);
  CHECK(m.data() == std::string("\x08\x96\x01", 3));
  io::proto::Message neg;
  neg.int64(2, -1);
  CHECK(neg.size() == 11);  // tag + 10-byte two's complement varint, as protobuf encodes int64 -1
  io::proto::Message all;
  all.float64(1, 1.5).float32(2, -2.0f).bytes(3, "hi").message(4, m).packed_float64(5, {1.0, 2.0}).int64(6, -7);
  const auto fields = tbtest::parse_message(all.data());
  REQUIRE(fields.size() == 6);
  CHECK(tbtest::as_double(fields[0]) == 1.5);
  CHECK(tbtest::as_float(fields[1]) == -2.0f);
  CHECK(tbtest::as_bytes(fields[2]) == "hi");
  CHECK(tbtest::as_varint(tbtest::parse_message(tbtest::as_bytes(fields[3]))[0]) == 150);
  std::vector<double> packed;
  tbtest::append_doubles(fields[4], packed);
  CHECK(packed == std::vector<double>{1.0, 2.0});
  CHECK(tbtest::as_int64(fields[5]) == -7);
}

TEST_CASE("every summary kind decodes back to what was written") {
  const std::string dir = fresh_dir("contract");
  write_contract_run(dir);
  const auto files = tbtest::event_files(dir);
  REQUIRE(files.size() == 1);
  const std::string name = files[0].substr(files[0].rfind('/') + 1);
  CHECK(std::regex_match(name, std::regex(R"(events\.out\.tfevents\.\d{10}\..+\.\d+\.\d+)")));

  const auto events = tbtest::read_event_file(files[0]);  // verifies both CRCs of every record
  REQUIRE(!events.empty());
  CHECK(events[0].file_version == "brain.Event:2");
  CHECK(events[0].wall_time > 1.6e9);
  const auto values = values_of(events);

  SUBCASE("scalars") {
    std::vector<std::pair<std::int64_t, float>> loss;
    for (const auto& [step, v] : values)
      if (v.tag == "loss") loss.emplace_back(step, v.simple_value.value());
    REQUIRE(loss.size() == 10);
    for (int s = 0; s < 10; ++s) {
      CHECK(loss[std::size_t(s)].first == s);
      CHECK(loss[std::size_t(s)].second == doctest::Approx(1.0 / (s + 1)));
    }
  }
  SUBCASE("histograms: statistics, and buckets that agree with the values") {
    int seen = 0;
    for (const auto& [step, v] : values) {
      if (v.tag != "weights") continue;
      ++seen;
      const auto& h = v.histo.value();
      CHECK(h.num == 1000);
      CHECK(h.min == 0.0);
      CHECK(h.max == doctest::Approx(0.999));
      CHECK(h.sum == doctest::Approx(499.5));
      CHECK(h.sum_squares == doctest::Approx(332.8335));
      REQUIRE(h.bucket.size() == h.bucket_limit.size());
      CHECK(h.bucket_limit.back() == DBL_MAX);
      double total = 0, previous = -DBL_MAX;
      for (std::size_t i = 0; i < h.bucket.size(); ++i) {
        // A value lands in the first bucket whose limit exceeds it.
        int expected = 0;
        for (int k = 0; k < 1000; ++k) expected += (k / 1000.0 >= previous && k / 1000.0 < h.bucket_limit[i]) ? 1 : 0;
        if (i == 0) expected = 0;  // nothing is below -DBL_MAX
        CHECK(h.bucket[i] == expected);
        CHECK(h.bucket_limit[i] > previous);
        previous = h.bucket_limit[i];
        total += h.bucket[i];
      }
      CHECK(total == 1000);
      // TF1 default limits: 1e-12 * 1.1^k, so 0.5 lies in (1e-12 * 1.1^k, 1e-12 * 1.1^(k+1)].
      CHECK(h.bucket_limit.size() > 20);
    }
    CHECK(seen == 2);
  }
  SUBCASE("images: PNG pixels, sizes and the batch grid") {
    const auto& img = only(values, "sample").image.value();
    CHECK(img.height == 4);
    CHECK(img.width == 6);
    CHECK(img.colorspace == 3);
    const auto png = tbtest::decode_png(img.encoded);
    REQUIRE(png.channels == 3);
    REQUIRE(png.pixels.size() == 72);
    for (std::size_t i = 0; i < 72; ++i) CHECK(int(png.pixels[i]) == int(i * 7 % 256));

    const auto& grid = only(values, "grid").image.value();
    CHECK(grid.height == 2);
    CHECK(grid.width == 6);  // 3 images of 2x2 side by side
    CHECK(grid.colorspace == 1);
    const auto gp = tbtest::decode_png(grid.encoded);
    // Image k's pixel (y, x) is at column 2k + x; its value was (4k + 2y + x) / 11.
    for (int k = 0; k < 3; ++k)
      for (int y = 0; y < 2; ++y)
        for (int x = 0; x < 2; ++x)
          CHECK(int(gp.pixels[std::size_t(y * 6 + 2 * k + x)]) == int(std::lround((4 * k + 2 * y + x) / 11.0 * 255)));
  }
  SUBCASE("audio: a 16-bit WAV of the samples") {
    const auto& a = only(values, "tone").audio.value();
    CHECK(a.sample_rate == 8000);
    CHECK(a.num_channels == 1);
    CHECK(a.length_frames == 800);
    CHECK(a.content_type == "audio/wav");
    const auto wav = tbtest::decode_wav(a.encoded);
    CHECK(wav.channels == 1);
    CHECK(wav.sample_rate == 8000);
    CHECK(wav.bits_per_sample == 16);
    REQUIRE(wav.samples.size() == 800);
    for (int i = 0; i < 800; i += 37) {
      const float s = 0.5f * std::sin(2.0f * 3.14159265f * 440.0f * float(i) / 8000.0f);
      CHECK(wav.samples[std::size_t(i)] == std::lround(s * 32767.0f));
    }
  }
  SUBCASE("text: a string tensor under the text plugin") {
    const auto& v = only(values, "notes");
    CHECK(v.metadata.value().plugin_name == "text");
    CHECK(v.tensor.value().dtype == 7);
    CHECK(v.tensor.value().dims.empty());
    CHECK(v.tensor.value().string_val == std::vector<std::string>{"**hello** tessera"});
  }
  SUBCASE("hparams: experiment, session start with the values, metric, session end") {
    const auto experiment = tbtest::decode_hparams(only(values, "_hparams_/experiment").metadata.value().plugin_content);
    CHECK(experiment.has_experiment);
    CHECK(std::set<std::string>(experiment.experiment_hparam_names.begin(), experiment.experiment_hparam_names.end()) ==
          std::set<std::string>{"lr", "optimizer", "batch_norm"});
    CHECK(experiment.experiment_metric_tags == std::vector<std::string>{"hparam/accuracy"});
    const auto& start_value = only(values, "_hparams_/session_start_info");
    CHECK(start_value.metadata.value().plugin_name == "hparams");
    const auto start = tbtest::decode_hparams(start_value.metadata.value().plugin_content);
    REQUIRE(start.has_start);
    CHECK(std::get<double>(start.hparams.at("lr")) == 0.01);
    CHECK(std::get<std::string>(start.hparams.at("optimizer")) == "adam");
    CHECK(std::get<bool>(start.hparams.at("batch_norm")) == true);
    CHECK(only(values, "hparam/accuracy").simple_value.value() == 0.75f);
    const auto end = tbtest::decode_hparams(only(values, "_hparams_/session_end_info").metadata.value().plugin_content);
    REQUIRE(end.has_end);
    CHECK(end.end_status == 1);
  }
  SUBCASE("graph") {
    int graphs = 0;
    for (const auto& e : events) {
      if (!e.graph) continue;
      ++graphs;
      REQUIRE(e.graph->nodes.size() == 3);
      CHECK(e.graph->nodes[2].name == "dense/matmul");
      CHECK(e.graph->nodes[2].inputs == std::vector<std::string>{"x", "dense/weight"});
      CHECK(e.graph->producer == 22);
    }
    CHECK(graphs == 1);
  }
}

TEST_CASE("each record decodes with protoc --decode_raw when protoc is installed") {
  if (std::system("command -v protoc > /dev/null 2>&1") != 0) {
    MESSAGE("SKIPPED: protoc is not installed (Debian: protobuf-compiler)");
    return;
  }
  const std::string dir = fresh_dir("protoc");
  write_contract_run(dir);
  const auto files = tbtest::event_files(dir);
  REQUIRE(files.size() == 1);
  std::ifstream in(files[0], std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t pos = 0, records = 0;
  std::string all_text;
  while (pos + 12 <= bytes.size()) {
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[pos + std::size_t(i)]);
    const std::string payload_file = dir + "/record.bin", text_file = dir + "/record.txt";
    std::ofstream(payload_file, std::ios::binary) << bytes.substr(pos + 12, n);
    REQUIRE(std::system(("protoc --decode_raw < '" + payload_file + "' > '" + text_file + "'").c_str()) == 0);
    std::ifstream t(text_file);
    all_text += std::string((std::istreambuf_iterator<char>(t)), std::istreambuf_iterator<char>());
    pos += 12 + n + 4;
    ++records;
  }
  CHECK(pos == bytes.size());
  CHECK(records > 20);
  CHECK(all_text.find("brain.Event:2") != std::string::npos);
  CHECK(all_text.find("RIFF") != std::string::npos);  // the WAV inside the audio summary
  CHECK(all_text.find("**hello** tessera") != std::string::npos);
}

TEST_CASE("write errors are io_errors naming the path, and nothing flushed is lost") {
  SUBCASE("an unwritable run directory") {
    CHECK_THROWS_WITH_AS(summary::Writer("/dev/null/run"), doctest::Contains("/dev/null/run"), io_error);
  }
  SUBCASE("a full disk when the file is created") {
    CHECK_THROWS_WITH_AS(io::EventFileWriter::at_path("/dev/full"), doctest::Contains("/dev/full: write failed"), io_error);
  }
  SUBCASE("a full disk mid-run: whole records stay, later calls throw") {
    const std::string dir = fresh_dir("full");
    REQUIRE(std::system(("mkdir -p '" + dir + "'").c_str()) == 0);
    const std::string path = dir + "/events.out.tfevents.limited";
    // A file-size limit stands in for a full disk (EFBIG instead of ENOSPC; same code path).
    struct rlimit old {};
    getrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old;
    small.rlim_cur = 4096;
    setrlimit(RLIMIT_FSIZE, &small);
    std::string failure;
    int written = 0;
    {
      auto w = io::EventFileWriter::at_path(path, {.flush_seconds = 0, .max_buffer_bytes = 1, .filename_suffix = ""});
      try {
        for (; written < 1000; ++written) {
          io::proto::Message e;
          e.float64(1, 1.0).int64(2, written).bytes(3, std::string(100, 'x'));
          w.write_event(e.data());
        }
      } catch (const io_error& e) {
        failure = e.what();
      }
      CHECK_THROWS_AS(w.flush(), io_error);
      CHECK_THROWS_AS(w.close(), io_error);
    }
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK(failure.find(path + ": write failed") != std::string::npos);
    CHECK(written > 10);
    CHECK(written < 1000);
    const auto events = tbtest::read_event_file(path);  // ends on a record boundary
    CHECK(int(events.size()) == written + 1);           // the file_version event and every whole record
  }
  SUBCASE("flush makes everything readable while the writer stays open") {
    const std::string dir = fresh_dir("flush");
    summary::Writer w(dir, {.flush_seconds = 0, .max_buffer_bytes = 1u << 20, .filename_suffix = ".v2"});
    for (int i = 0; i < 50; ++i) w.scalar("x", i, i);
    w.flush();
    CHECK(values_of(tbtest::read_event_file(w.file_path())).size() == 50);
    CHECK(w.file_path().substr(w.file_path().size() - 3) == ".v2");
  }
  SUBCASE("the background thread flushes without being asked") {
    const std::string dir = fresh_dir("periodic");
    summary::Writer w(dir, {.flush_seconds = 0.05, .max_buffer_bytes = 1u << 20, .filename_suffix = ""});
    w.scalar("x", 1.0, 0);
    std::size_t seen = 0;
    for (int tries = 0; tries < 100 && seen == 0; ++tries) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      seen = values_of(tbtest::read_event_file(w.file_path())).size();
    }
    CHECK(seen == 1);
  }
  SUBCASE("bad summaries are rejected with the tag in the message") {
    const std::string dir = fresh_dir("bad");
    summary::Writer w(dir);
    CHECK_THROWS_WITH_AS(w.image("five", zeros<float>({2, 2, 5}), 0), doctest::Contains("five"), shape_error);
    CHECK_THROWS_WITH_AS(w.audio("silent", zeros<float>({10}), 0.0, 0), doctest::Contains("silent"), value_error);
    CHECK_THROWS_WITH_AS(w.audio("wide", zeros<float>({2, 40000}), 8000, 0), doctest::Contains("32767 channels"), value_error);
    CHECK_THROWS_WITH_AS(w.image("long", zeros<float>({1, 1000001}), 0), doctest::Contains("1,000,000 pixels"), shape_error);
    w.close();
    CHECK_THROWS_WITH_AS(w.scalar("late", 1.0, 0), doctest::Contains("closed"), io_error);
  }
}

TEST_CASE("hyperparameter values of every number type, strings and bools") {
  const summary::HParams hp{{"batch", std::size_t(64)}, {"units", 32u}, {"lr", 1e-3f}, {"steps", 10LL},
                            {"name", std::string_view("adam")}, {"tag", "x"}, {"bn", true}};
  CHECK(hp.at("batch").kind() == summary::HParamValue::Kind::number);
  CHECK(hp.at("batch").number() == 64);
  CHECK(hp.at("units").number() == 32);
  CHECK(hp.at("steps").number() == 10);
  CHECK(hp.at("name").string() == "adam");
  CHECK(hp.at("tag").kind() == summary::HParamValue::Kind::string);  // a string literal is no bool
  CHECK(hp.at("bn").kind() == summary::HParamValue::Kind::boolean);
}

TEST_CASE("writers on several threads: every event whole, none lost") {
  const std::string dir = fresh_dir("threads");
  {
    summary::Writer w(dir, {.flush_seconds = 0.01, .max_buffer_bytes = 4096, .filename_suffix = ""});
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&w, t] {
        for (int i = 0; i < 500; ++i) w.scalar("thread" + std::to_string(t), i, i);
      });
    }
    for (auto& th : threads) th.join();
  }  // the destructor flushes
  std::map<std::string, std::set<std::int64_t>> steps;
  for (const auto& [step, v] : values_of(events_in(dir))) steps[v.tag].insert(step);
  REQUIRE(steps.size() == 4);
  for (const auto& [tag, s] : steps) CHECK(s.size() == 500);
}

TEST_CASE("a moved writer keeps writing to the same file while its flush thread runs") {
  const std::string dir = fresh_dir("moved");
  std::string path;
  {
    summary::Writer first(dir, {.flush_seconds = 0.001, .max_buffer_bytes = 64, .filename_suffix = ""});
    path = first.file_path();
    for (int i = 0; i < 100; ++i) first.scalar("before", i, i);
    summary::Writer second(std::move(first));
    CHECK(second.file_path() == path);
    for (int i = 0; i < 100; ++i) second.scalar("after", i, i);
    summary::Writer third(fresh_dir("moved_other"), {.flush_seconds = 0.001, .max_buffer_bytes = 64, .filename_suffix = ""});
    third = std::move(second);  // third's own file is closed; it now writes to `path`
    for (int i = 0; i < 100; ++i) third.scalar("assigned", i, i);
  }
  std::map<std::string, std::set<std::int64_t>> steps;
  for (const auto& [step, v] : values_of(events_in(dir))) steps[v.tag].insert(step);
  CHECK(steps["before"].size() == 100);
  CHECK(steps["after"].size() == 100);
  CHECK(steps["assigned"].size() == 100);
}

TEST_CASE("a restart mark (SessionLog START) for resumed runs") {
  const std::string dir = fresh_dir("restart");
  {
    summary::Writer w(dir);
    w.restart_at(42);
  }
  const auto events = events_in(dir);
  REQUIRE(events.size() == 2);
  CHECK(events[1].step == 42);
}

TEST_CASE("the run for TensorBoard's own reader (tensorboard_check.py)") {
  const char* dir = std::getenv("TESSERA_TENSORBOARD_RUN");
  if (!dir) return;
  std::system(("rm -rf '" + std::string(dir) + "'").c_str());
  write_contract_run(dir);
  CHECK(tbtest::event_files(dir).size() == 1);
}
