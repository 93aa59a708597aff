// Temporary directories for tests: each is made under /tmp and removed, with what the test left in
// it, when the test program exits, so repeated runs do not fill /tmp.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace tessera_test {

/// A fresh directory /tmp/<prefix>XXXXXX, removed at exit; throws when it cannot be made.
inline std::string make_temp_dir(const std::string& prefix) {
  struct Made {
    std::mutex mutex;
    std::vector<std::string> dirs;
    ~Made() {
      for (const auto& d : dirs) {
        std::error_code ignored;  // a directory a test removed itself is fine
        std::filesystem::remove_all(d, ignored);
      }
    }
  };
  static Made made;
  std::string pattern = "/tmp/" + prefix + "XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("cannot make a temporary directory " + pattern);
  std::lock_guard<std::mutex> lock(made.mutex);
  made.dirs.push_back(pattern);
  return pattern;
}

}  // namespace tessera_test
