// For fuzz targets whose reader takes a path: the input written to a per-process temporary file.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

/// The input written to /tmp/tessera_fuzz_<name>_<pid>, removed again when this goes out of scope.
class FuzzInputFile {
 public:
  FuzzInputFile(const char* name, const std::uint8_t* data, std::size_t size)
      : path_("/tmp/tessera_fuzz_" + std::string(name) + "_" + std::to_string(::getpid())) {
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (!f) return;
    const bool written = std::fwrite(data, 1, size, f) == size;
    written_ = std::fclose(f) == 0 && written;
  }
  ~FuzzInputFile() { ::unlink(path_.c_str()); }
  FuzzInputFile(const FuzzInputFile&) = delete;
  FuzzInputFile& operator=(const FuzzInputFile&) = delete;

  /// The file's path; "" when it could not be written.
  std::string path() const { return written_ ? path_ : std::string(); }

 private:
  std::string path_;
  bool written_ = false;
};
