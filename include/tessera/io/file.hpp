// Whole-file reads and crash-safe whole-file writes (POSIX), with errors that name the path.
//
// write_file_atomically writes to a temporary file in the same directory, fsyncs it, renames it
// over the target and fsyncs the directory: a crash at any point leaves either the old file or the
// complete new one, never a mixture.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"

namespace tessera::io {

namespace detail {

inline std::string errno_text(int err) { return std::strerror(err); }

/// Closes a descriptor on scope exit unless released.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) noexcept : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }
  /// Closes now and reports close's error (a delayed write error surfaces here on some systems).
  int close() noexcept {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

TESSERA_OUT_OF_LINE void write_all(int fd, const unsigned char* data, std::size_t n, const std::string& path);

inline std::string parent_directory(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace detail

/// The bytes of the file at `path`; io_error naming the path when it cannot be opened or read.
TESSERA_OUT_OF_LINE std::vector<unsigned char> read_file(const std::string& path);

/// Replaces the file at `path` with the concatenation of `parts`, atomically and durably
/// (temporary file, fsync, rename, fsync of the directory). The previous file, if any, stays
/// intact until the new one is complete. io_error names the path and the failing step.
TESSERA_OUT_OF_LINE void write_file_atomically(const std::string& path, const std::vector<std::string_view>& parts);

/// Creates `dir` and its missing parents (mkdir -p); io_error naming the path on failure.
TESSERA_OUT_OF_LINE void create_directories(const std::string& dir);

#if TESSERA_OUT_OF_LINE_DEFINITIONS

TESSERA_OUT_OF_LINE void detail::write_all(int fd, const unsigned char* data, std::size_t n, const std::string& path) {
  while (n > 0) {
    const ::ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw io_error(path + ": write failed: " + errno_text(errno));
    }
    data += w;
    n -= static_cast<std::size_t>(w);
  }
}

TESSERA_OUT_OF_LINE std::vector<unsigned char> read_file(const std::string& path) {
  detail::FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw io_error(path + ": cannot open: " + detail::errno_text(errno));
  struct ::stat st {};
  if (::fstat(fd.get(), &st) != 0) throw io_error(path + ": cannot stat: " + detail::errno_text(errno));
  if (!S_ISREG(st.st_mode)) throw io_error(path + ": not a regular file");
  std::vector<unsigned char> bytes(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < bytes.size()) {
    const ::ssize_t r = ::read(fd.get(), bytes.data() + got, bytes.size() - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw io_error(path + ": read failed: " + detail::errno_text(errno));
    }
    if (r == 0) break;  // shrank while reading
    got += static_cast<std::size_t>(r);
  }
  bytes.resize(got);
  return bytes;
}

TESSERA_OUT_OF_LINE void write_file_atomically(const std::string& path, const std::vector<std::string_view>& parts) {
  static std::atomic<unsigned> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  try {
    detail::FileDescriptor fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (fd.get() < 0) throw io_error(path + ": cannot create " + tmp + ": " + detail::errno_text(errno));
    for (const auto& p : parts) {
      detail::write_all(fd.get(), reinterpret_cast<const unsigned char*>(p.data()), p.size(), path);
    }
    if (::fsync(fd.get()) != 0) throw io_error(path + ": fsync failed: " + detail::errno_text(errno));
    if (fd.close() != 0) throw io_error(path + ": close failed: " + detail::errno_text(errno));
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      throw io_error(path + ": cannot rename " + tmp + " over it: " + detail::errno_text(errno));
    }
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename itself durable. Some file systems refuse fsync on directories; the data is
  // already safe then, so that is not an error.
  detail::FileDescriptor dir(::open(detail::parent_directory(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) (void)::fsync(dir.get());
}

TESSERA_OUT_OF_LINE void create_directories(const std::string& dir) {
  if (dir.empty()) return;
  std::string partial;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (partial.empty()) continue;
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      throw io_error(dir + ": cannot create directory " + partial + ": " + detail::errno_text(errno));
    }
  }
  struct ::stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw io_error(dir + ": not a directory");
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

}  // namespace tessera::io
