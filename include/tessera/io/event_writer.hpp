// EventFileWriter: appends TFRecord-framed, serialized Event messages to a TensorBoard event file,
// buffered in memory and flushed by a background thread every few seconds, on flush() and on
// destruction. The summary::Writer (summary.hpp) builds the Events; this file only frames and
// stores them.
//
// Durability: flush() writes whole records and fdatasyncs the file, so a crash after it returns
// loses nothing written before; the periodic background flush only writes (no sync: it must not
// stall the writing threads on a slow disk), which a crash of the process survives. A failed
// write (disk full, I/O error) truncates the file back to its last whole record and makes this
// call and every later one throw io_error naming the file: summaries are never dropped silently.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>
#include <thread>

#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "tessera/io/crc32c.hpp"
#include "tessera/io/file.hpp"
#include "tessera/io/protobuf.hpp"

namespace tessera::io {

/// Options of an event file (torch.utils.tensorboard.SummaryWriter's, in seconds and bytes).
struct EventWriterOptions {
  double flush_seconds = 2.0;                ///< the background flush interval; <= 0: only explicit flushes
  std::size_t max_buffer_bytes = 1u << 20;   ///< a larger buffer is written at once by the caller
  std::string filename_suffix = "";          ///< appended to the event file's name
};

/// Seconds since the Unix epoch, as Event.wall_time stores them.
inline double wall_time_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

namespace detail {
/// TFRecord framing: u64 length, masked CRC of the length, data, masked CRC of the data.
/// (All or nothing: `out` is unchanged if allocating throws.)
TESSERA_OUT_OF_LINE void append_record(std::string& out, const std::string& data);

/// events.out.tfevents.<seconds, 10 digits>.<hostname>.<pid>.<counter><suffix>, as TensorBoard's
/// writers name them; the counter keeps two writers of one process apart.
TESSERA_OUT_OF_LINE std::string event_file_name(const std::string& suffix);
}  // namespace detail

/// One TensorBoard event file. Thread-safe: events from several threads are written whole, in
/// the order their write_event calls took the lock.
class EventFileWriter {
 public:
  /// Creates `log_dir` (and parents) and a new event file in it, whose first record is the
  /// file_version event. io_error naming the path when either cannot be created.
  TESSERA_OUT_OF_LINE explicit EventFileWriter(const std::string& log_dir, EventWriterOptions options = {});

  /// Appends to exactly `file_path` (created if missing). For tests and special files.
  static EventFileWriter at_path(const std::string& file_path, EventWriterOptions options = {}) {
    return EventFileWriter(FilePath{file_path}, std::move(options));
  }

  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;
  EventFileWriter(EventFileWriter&& other) = delete;

  /// Flushes and closes; an error is printed to stderr (a destructor cannot throw). Call close()
  /// first to have it thrown.
  TESSERA_OUT_OF_LINE ~EventFileWriter();

  /// The event file's path.
  const std::string& path() const noexcept { return path_; }

  /// Queues one serialized Event. Throws io_error if an earlier write failed or the file is closed.
  void write_event(const std::string& event) {
    std::unique_lock<std::mutex> lock(mutex_);
    check_usable();
    detail::append_record(buffer_, event);
    if (buffer_.size() >= options_.max_buffer_bytes) write_buffer(false);
  }

  /// Writes everything queued and syncs it to disk.
  void flush() {
    std::unique_lock<std::mutex> lock(mutex_);
    check_usable();
    write_buffer(true);
  }

  /// Flushes, stops the background thread and closes the file. Idempotent.
  TESSERA_OUT_OF_LINE void close();

 private:
  struct FilePath {
    std::string path;
  };
  TESSERA_OUT_OF_LINE EventFileWriter(FilePath file, EventWriterOptions options);

  TESSERA_OUT_OF_LINE static std::string open_in(const std::string& log_dir, const std::string& suffix);

  void check_usable() const {
    if (fd_ < 0) throw io_error(path_ + ": the event file is closed");
    if (!failure_.empty()) throw io_error(failure_);
  }

  /// Writes the buffer (caller holds the lock), then fdatasyncs when `sync`. On failure: truncate
  /// to the last whole record, remember the error for every later call, throw it.
  TESSERA_OUT_OF_LINE void write_buffer(bool sync);

  [[noreturn]] void fail(std::string message) {
    if (::ftruncate(fd_, written_) != 0) message += " (and the partial record could not be removed)";
    failure_ = message + "; the summaries not yet written are lost, the file ends with the last whole record";
    buffer_.clear();
    throw io_error(failure_);
  }

  TESSERA_OUT_OF_LINE void flush_periodically();

  std::string path_;
  EventWriterOptions options_;
  int fd_ = -1;
  ::off_t written_ = 0;  ///< bytes of whole records in the file
  std::string buffer_;   ///< framed records not yet written
  std::string failure_;  ///< the first write error; the writer refuses further work once set
  bool stopping_ = false;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::thread flusher_;
};

#if TESSERA_OUT_OF_LINE_DEFINITIONS

TESSERA_OUT_OF_LINE void detail::append_record(std::string& out, const std::string& data) {
  std::string record(12 + data.size() + 4, '\0');
  const std::uint64_t n = data.size();
  for (int i = 0; i < 8; ++i) record[std::size_t(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  const std::uint32_t length_crc = masked_crc32c(record.data(), 8);
  for (int i = 0; i < 4; ++i) record[std::size_t(8 + i)] = static_cast<char>((length_crc >> (8 * i)) & 0xFF);
  record.replace(12, data.size(), data);
  const std::uint32_t data_crc = masked_crc32c(data.data(), data.size());
  for (int i = 0; i < 4; ++i)
    record[12 + data.size() + std::size_t(i)] = static_cast<char>((data_crc >> (8 * i)) & 0xFF);
  out += record;
}

TESSERA_OUT_OF_LINE std::string detail::event_file_name(const std::string& suffix) {
  static std::atomic<unsigned> counter{0};
  char host[256] = "localhost";
  if (::gethostname(host, sizeof host) != 0) std::snprintf(host, sizeof host, "localhost");
  host[sizeof host - 1] = '\0';
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%010lld", static_cast<long long>(std::time(nullptr)));
  return std::string("events.out.tfevents.") + seconds + "." + host + "." + std::to_string(::getpid()) + "." +
         std::to_string(counter++) + suffix;
}

TESSERA_OUT_OF_LINE EventFileWriter::EventFileWriter(const std::string& log_dir, EventWriterOptions options)
    : EventFileWriter(FilePath{open_in(log_dir, options.filename_suffix)}, options) {}

TESSERA_OUT_OF_LINE EventFileWriter::~EventFileWriter() {
  try {
    close();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessera: %s\n", e.what());
  }
}

TESSERA_OUT_OF_LINE void EventFileWriter::close() {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (fd_ < 0 || stopping_) return;  // closed, or another thread is closing it
    stopping_ = true;
  }
  wake_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  std::unique_lock<std::mutex> lock(mutex_);
  const int fd = fd_;
  std::string failure;
  try {
    check_usable();
    write_buffer(true);
  } catch (const io_error& e) {
    failure = e.what();
  }
  fd_ = -1;
  if (::close(fd) != 0 && failure.empty()) failure = path_ + ": close failed: " + detail::errno_text(errno);
  if (!failure.empty()) throw io_error(failure);
}

TESSERA_OUT_OF_LINE EventFileWriter::EventFileWriter(FilePath file, EventWriterOptions options)
    : path_(std::move(file.path)), options_(std::move(options)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw io_error(path_ + ": cannot create event file: " + detail::errno_text(errno));
  const ::off_t end = ::lseek(fd_, 0, SEEK_END);
  written_ = end > 0 ? end : 0;
  proto::Message first;
  first.float64(1, wall_time_now()).bytes(3, "brain.Event:2");
  detail::append_record(buffer_, first.data());
  try {
    write_buffer(true);  // the file is a valid, empty run from the start
  } catch (...) {
    ::close(fd_);
    throw;
  }
  if (options_.flush_seconds > 0) {
    try {
      flusher_ = std::thread([this] { flush_periodically(); });
    } catch (...) {
      ::close(fd_);
      throw;
    }
  }
}

TESSERA_OUT_OF_LINE std::string EventFileWriter::open_in(const std::string& log_dir, const std::string& suffix) {
  create_directories(log_dir);
  return log_dir + "/" + detail::event_file_name(suffix);
}

TESSERA_OUT_OF_LINE void EventFileWriter::write_buffer(bool sync) {
  std::size_t done = 0;
  while (done < buffer_.size()) {
    const ::ssize_t w = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(path_ + ": write failed: " + detail::errno_text(errno));
    }
    done += static_cast<std::size_t>(w);
  }
  written_ += static_cast<::off_t>(buffer_.size());
  buffer_.clear();
  // EINVAL/EROFS: the file does not support syncing (a pipe, a special file); nothing to lose.
  if (sync && ::fdatasync(fd_) != 0 && errno != EINVAL && errno != EROFS) {
    failure_ = path_ + ": fdatasync failed: " + detail::errno_text(errno) +
               "; summaries written since the last successful flush may not be on disk";
    throw io_error(failure_);
  }
}

TESSERA_OUT_OF_LINE void EventFileWriter::flush_periodically() {
  const auto interval = std::chrono::duration<double>(options_.flush_seconds);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, interval, [this] { return stopping_; });
    if (stopping_ || !failure_.empty() || buffer_.empty()) continue;
    try {
      write_buffer(false);
    } catch (const io_error&) {
      // Remembered in failure_: the next call from the user's thread throws it.
    }
  }
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

}  // namespace tessera::io
