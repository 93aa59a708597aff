// Crash-safe saves, proven by killing: this program starts itself as a writer that saves a
// checkpoint (model and Adam state) and appends a scalar to a TensorBoard event file in a loop, and
// kills it with SIGKILL at a random moment, 200 times. Every time, the newest checkpoint must load
// and hold exactly what was saved (the last acknowledged save or the one after it), and the event
// file must read back, up to its last complete record, as the scalars 0, 1, ..., with none that
// was acknowledged missing. The checkers are shown to catch a torn checkpoint and a corrupted or
// torn event record.
#include <doctest/doctest.h>

#include <tessera/tessera.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "io/tensorboard_reader.hpp"

using namespace tessera;
namespace fs = std::filesystem;

namespace {

auto make_model() { return nn::sequential(nn::Linear<float>(4, 3), nn::ReLU{}, nn::Linear<float>(3, 2)); }
using Model = decltype(make_model());

/// Save number k: every parameter and optimizer state element is k + position / 1000.
void fill(Model& model, optim::Adam<float>& opt, std::int64_t k) {
  float position = 0;
  nn::for_each_parameter(model, [&](const std::string&, auto& t) {
    for (index_t i = 0; i < t.size(); ++i) t.data()[i] = float(k) + (position++) / 1000.0f;
  });
  for (auto& s : opt.named_state()) {
    for (index_t i = 0; i < s.value.size(); ++i) s.value.data()[i] = float(k) + (position++) / 1000.0f;
  }
}

/// True when model and optimizer hold save number k exactly.
bool holds(Model& model, optim::Adam<float>& opt, std::int64_t k) {
  float position = 0;
  bool same = true;
  nn::for_each_parameter(model, [&](const std::string&, auto& t) {
    for (index_t i = 0; i < t.size(); ++i) same = same && t.data()[i] == float(k) + (position++) / 1000.0f;
  });
  for (auto& s : opt.named_state()) {
    for (index_t i = 0; i < s.value.size(); ++i) same = same && s.value.data()[i] == float(k) + (position++) / 1000.0f;
  }
  return same;
}

/// The scalars of the event file's complete records, in order: records are read while a whole
/// one (header, length CRC, data, data CRC) fits; a checksum that does not match in a complete
/// record is an error, a record cut short at the end is where the file ends.
std::vector<double> complete_scalars(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t pos = 0;
  while (bytes.size() - pos >= 12) {
    std::uint64_t length = 0;
    std::memcpy(&length, bytes.data() + pos, 8);
    if (bytes.size() - pos < 12 + length + 4) break;  // torn at the end
    pos += 12 + length + 4;
  }
  // Everything up to there must read as strict, well-formed records.
  const std::string prefix = path + ".complete";
  std::ofstream(prefix, std::ios::binary).write(bytes.data(), std::streamsize(pos));
  std::vector<double> out;
  for (const auto& e : tbtest::read_event_file(prefix)) {
    if (!e.summary) continue;  // the file_version record
    for (const auto& v : e.summary->values) out.push_back(v.simple_value ? double(*v.simple_value) : -1.0);
  }
  return out;
}

std::string event_file_in(const std::string& dir) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("events.out.tfevents.", 0) == 0 && name.find(".complete") == std::string::npos) return entry.path().string();
  }
  return "";
}

}  // namespace

// The writer: runs only when started by the test below (with TESSERA_CRASH_DIR set), saving until
// it is killed and acknowledging every finished save on file descriptor 3.
TEST_CASE("crash safety writer") {
  const char* dir = std::getenv("TESSERA_CRASH_DIR");
  if (!dir) return;
  Model model = make_model();
  optim::Adam<float> opt({.lr = 0.01});
  opt.prepare(model);
  summary::Writer writer(dir);
  for (std::int64_t k = 0;; ++k) {
    fill(model, opt, k);
    io::save_checkpoint(std::string(dir) + "/checkpoint.safetensors", model, opt, {k, k});
    writer.scalar("k", double(k), k);
    writer.flush();
    const std::string ack = std::to_string(k) + "\n";
    if (::write(3, ack.data(), ack.size()) != ssize_t(ack.size())) std::_Exit(2);
  }
}

TEST_CASE("killed at random moments 200 times, the newest checkpoint and the event file are whole") {
  const fs::path root = fs::temp_directory_path() / ("tessera_crash_" + std::to_string(::getpid()));
  fs::remove_all(root);
  std::mt19937 random(12345);
  int mid_run = 0, checkpoint_was_next = 0, leftover_temporaries = 0;
  for (int run = 0; run < 200; ++run) {
    const std::string dir = (root / std::to_string(run)).string();
    fs::create_directories(dir);
    int acks[2];
    REQUIRE(::pipe(acks) == 0);
    // The child's environment and arguments are made before fork: between fork and exec only
    // async-signal-safe calls are allowed (this process has threads).
    const std::string dir_variable = "TESSERA_CRASH_DIR=" + dir;
    std::vector<char*> envp;
    for (char** e = environ; *e; ++e) envp.push_back(*e);
    envp.push_back(const_cast<char*>(dir_variable.c_str()));
    envp.push_back(nullptr);
    const char* argv[] = {"/proc/self/exe", "--test-case=crash safety writer", "--no-version=true", nullptr};
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      ::dup2(acks[1], 3);
      ::execve("/proc/self/exe", const_cast<char* const*>(argv), envp.data());
      ::_exit(127);
    }
    ::close(acks[1]);
    // Wait for the first save, then kill within the next 0-20 ms (a few saves).
    char c = 0;
    std::string acked;
    while (::read(acks[0], &c, 1) == 1) {
      acked += c;
      if (c == '\n') break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 20000)(random)));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    CHECK(WIFSIGNALED(status));
    while (::read(acks[0], &c, 1) == 1) acked += c;
    ::close(acks[0]);
    std::int64_t last = -1;
    for (std::size_t p = 0, q; (q = acked.find('\n', p)) != std::string::npos; p = q + 1) last = std::stoll(acked.substr(p, q - p));
    REQUIRE(last >= 0);  // the first save was acknowledged before the kill
    if (last >= 1) ++mid_run;

    // The checkpoint: the last acknowledged save, or the next one if it finished before the kill.
    Model model = make_model();
    optim::Adam<float> opt({.lr = 0.01});
    opt.prepare(model);
    const io::TrainingProgress p = io::load_checkpoint(dir + "/checkpoint.safetensors", model, opt);
    CHECK((p.epoch == last || p.epoch == last + 1));
    CHECK(p.step == p.epoch);
    CHECK(holds(model, opt, p.epoch));
    if (p.epoch == last + 1) ++checkpoint_was_next;

    // The event file: complete records are the scalars 0, 1, ..., at least up to the last
    // acknowledged one (flushed and synced before the acknowledgement).
    const std::string events = event_file_in(dir);
    REQUIRE(!events.empty());
    const std::vector<double> scalars = complete_scalars(events);
    CHECK(std::int64_t(scalars.size()) >= last + 1);
    CHECK(std::int64_t(scalars.size()) <= last + 2);
    for (std::size_t i = 0; i < scalars.size(); ++i) CHECK(scalars[i] == double(i));
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string name = entry.path().filename().string();
      if (name != "checkpoint.safetensors" && name.rfind("events.out.tfevents.", 0) != 0) ++leftover_temporaries;
    }
  }
  MESSAGE("200 kills: ", mid_run, " after at least two saves, ", checkpoint_was_next,
          " with the next checkpoint complete but not yet acknowledged, ", leftover_temporaries,
          " temporary files left by interrupted saves (never read)");
  fs::remove_all(root);
}

TEST_CASE("the checkers catch a torn checkpoint and a corrupted or torn event record") {
  const fs::path dir = fs::temp_directory_path() / ("tessera_torn_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  Model model = make_model();
  optim::Adam<float> opt({.lr = 0.01});
  opt.prepare(model);
  fill(model, opt, 7);
  const std::string path = (dir / "checkpoint.safetensors").string();
  io::save_checkpoint(path, model, opt, {7, 7});
  {
    summary::Writer writer(dir.string());
    for (int k = 0; k < 3; ++k) writer.scalar("k", k, k);
  }
  // A checkpoint written in place and cut off half-way: loading refuses it, nothing changes.
  const auto size = fs::file_size(path);
  fs::resize_file(path, size / 2);
  Model other = make_model();
  optim::Adam<float> other_opt({.lr = 0.01});
  other_opt.prepare(other);
  CHECK_THROWS_AS(io::load_checkpoint(path, other, other_opt), io_error);
  CHECK_FALSE(holds(other, other_opt, 7));
  // An event file cut inside its last record reads back without it.
  const std::string events = event_file_in(dir.string());
  CHECK(complete_scalars(events).size() == 3);
  fs::resize_file(events, fs::file_size(events) - 3);
  CHECK(complete_scalars(events).size() == 2);
  // A flipped byte inside a complete record is an error, not a shorter file.
  {
    std::fstream f(events, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x5a');
  }
  CHECK_THROWS(complete_scalars(events));
  fs::remove_all(dir);
}
