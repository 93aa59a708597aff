// For fuzz targets whose reader takes a path: the input written to a per-process temporary file.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

/// Writes the input to /tmp/tessera_fuzz_<name>_<pid> and returns that path; "" when it cannot.
inline std::string write_fuzz_input(const char* name, const std::uint8_t* data, std::size_t size) {
  const std::string path = "/tmp/tessera_fuzz_" + std::string(name) + "_" + std::to_string(::getpid());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return "";
  const bool written = std::fwrite(data, 1, size, f) == size;
  return std::fclose(f) == 0 && written ? path : "";
}
