// Exporting a trained model for serving, in TensorFlow Serving's layout: one directory per
// version under a base path, `<base_path>/<version>/` holding manifest.json (serve/signature.hpp)
// and weights.safetensors (io::save_weights: parameters and buffers, PyTorch's names).
//
//   serve::Signature sig{{{"images", serve::DataType::float32, {-1, 1, 28, 28}}},
//                        {{"logits", serve::DataType::float32, {-1, 10}}}};
//   serve::export_model(model, "models/fashion", serve::next_version("models/fashion"), sig,
//                       {"fashion_cnn", {{"channels", 16}, {"hidden", 128}}});
//
// A version appears whole or not at all: it is written under a temporary name that no server
// takes for a version, made durable, then renamed into place. An existing version is never
// overwritten.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tessera/core/config.hpp"
#include "tessera/core/error.hpp"
#include "tessera/io/checkpoint.hpp"
#include "tessera/io/file.hpp"
#include "tessera/serve/signature.hpp"

namespace tessera::serve {

/// The architecture a model is registered under in a server, and the hyperparameters its
/// factory needs to build it (widths, layer counts...).
struct Architecture {
  std::string name;
  nlohmann::json hyperparameters = nlohmann::json::object();
};

namespace detail {
/// The version a directory entry names: a non-negative decimal integer without sign or leading
/// zeros ("7"); -1 for anything else (temporary directories, files of the user's).
inline std::int64_t version_of(const std::string& name) {
  if (name.empty() || name.size() > 18 || (name.size() > 1 && name[0] == '0')) return -1;
  std::int64_t v = 0;
  for (char c : name) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}
inline bool is_directory(const std::string& path) {
  struct ::stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
TESSERA_OUT_OF_LINE void remove_tree_quietly(const std::string& dir);
inline void fsync_directory(const std::string& dir) {
  io::detail::FileDescriptor fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() >= 0) (void)::fsync(fd.get());
}
}  // namespace detail

/// The versions under `base_path` (subdirectories named by an integer), ascending; empty when the
/// base path does not exist. io_error when it exists but cannot be read.
TESSERA_OUT_OF_LINE std::vector<std::int64_t> list_versions(const std::string& base_path);

/// One more than the newest version under `base_path`; 1 when there is none.
inline std::int64_t next_version(const std::string& base_path) {
  const auto versions = list_versions(base_path);
  return versions.empty() ? 1 : versions.back() + 1;
}

namespace detail {
/// The text of manifest.json for a model whose structural hash is `structural_hash`, read back as a
/// server will read it; value_error for a malformed signature or architecture.
TESSERA_OUT_OF_LINE std::string manifest_text(const std::string& structural_hash, const Signature& signature,
                                              const Architecture& architecture);
/// Publishes `<base_path>/<version>/`: writes manifest.json and, by calling `write_weights` with
/// its path, weights.safetensors under a temporary name, then renames the directory into place.
/// Returns its path; io_error when the version exists or a write fails, leaving nothing behind.
TESSERA_OUT_OF_LINE std::string publish_version(const std::string& base_path, std::int64_t version,
                                                const std::string& manifest,
                                                const std::function<void(const std::string&)>& write_weights);
}  // namespace detail

/// Writes `<base_path>/<version>/` (manifest.json and weights.safetensors) and returns its path.
/// Creates base_path if needed. io_error when the version exists (it is never overwritten) or a
/// write fails; nothing is left behind then. value_error for a malformed signature or name.
template <class M>
std::string export_model(M& model, const std::string& base_path, std::int64_t version, const Signature& signature,
                         const Architecture& architecture) {
  if (version < 0) throw value_error("export_model: version must be >= 0, got " + std::to_string(version));
  const std::string manifest = detail::manifest_text(hash_string(structural_hash<M>()), signature, architecture);
  return detail::publish_version(base_path, version, manifest,
                                 [&model](const std::string& weights_path) { io::save_weights(weights_path, model); });
}

#if TESSERA_OUT_OF_LINE_DEFINITIONS

TESSERA_OUT_OF_LINE void detail::remove_tree_quietly(const std::string& dir) {
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") ::unlink((dir + "/" + name).c_str());
    }
    ::closedir(d);
  }
  ::rmdir(dir.c_str());
}

TESSERA_OUT_OF_LINE std::vector<std::int64_t> list_versions(const std::string& base_path) {
  std::vector<std::int64_t> versions;
  DIR* d = ::opendir(base_path.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return versions;
    throw io_error(base_path + ": cannot list versions: " + io::detail::errno_text(errno));
  }
  while (const dirent* e = ::readdir(d)) {
    const std::int64_t v = detail::version_of(e->d_name);
    if (v >= 0 && detail::is_directory(base_path + "/" + e->d_name)) versions.push_back(v);
  }
  ::closedir(d);
  std::sort(versions.begin(), versions.end());
  return versions;
}

TESSERA_OUT_OF_LINE std::string detail::manifest_text(const std::string& structural_hash, const Signature& signature,
                                                      const Architecture& architecture) {
  if (architecture.name.empty()) throw value_error("export_model: the architecture needs a name");
  // `{}` in a brace-initialized Architecture is JSON null: no hyperparameters.
  if (!architecture.hyperparameters.is_object() && !architecture.hyperparameters.is_null()) {
    throw value_error("export_model: hyperparameters must be a JSON object");
  }
  if (signature.inputs.empty() || signature.outputs.empty()) {
    throw value_error("export_model: the signature needs at least one input and one output");
  }
  Manifest manifest;
  manifest.architecture = architecture.name;
  manifest.structural_hash = structural_hash;
  if (architecture.hyperparameters.is_object()) manifest.hyperparameters = architecture.hyperparameters;
  manifest.signature = signature;
  std::string text = to_json(manifest).dump(2) + "\n";
  (void)manifest_from_json(nlohmann::json::parse(text), "export_model");  // what a server will read
  return text;
}

TESSERA_OUT_OF_LINE std::string detail::publish_version(const std::string& base_path, std::int64_t version,
                                                        const std::string& manifest,
                                                        const std::function<void(const std::string&)>& write_weights) {
  io::create_directories(base_path);
  const std::string target = base_path + "/" + std::to_string(version);
  if (is_directory(target)) throw io_error(target + ": version " + std::to_string(version) + " exists already");
  static std::atomic<unsigned> counter{0};
  // Not an integer, so a polling server never takes it for a version.
  const std::string tmp = base_path + "/.tmp-" + std::to_string(version) + "-" + std::to_string(::getpid()) + "-" +
                          std::to_string(counter++);
  if (::mkdir(tmp.c_str(), 0755) != 0) throw io_error(tmp + ": cannot create: " + io::detail::errno_text(errno));
  try {
    write_weights(tmp + "/" + Manifest::weights_file);
    io::write_file_atomically(tmp + "/manifest.json", {manifest});
    fsync_directory(tmp);
    int renamed = -1;
#if defined(RENAME_NOREPLACE)
    renamed = ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE);
    if (renamed != 0 && errno != EINVAL && errno != ENOSYS) {
      const int err = errno;
      throw io_error(target + (err == EEXIST ? ": version " + std::to_string(version) + " exists already"
                                             : ": cannot rename " + tmp + " to it: " + io::detail::errno_text(err)));
    }
#endif
    if (renamed != 0) {  // no renameat2 here: rename() still refuses a non-empty target
      if (is_directory(target)) throw io_error(target + ": version " + std::to_string(version) + " exists already");
      if (::rename(tmp.c_str(), target.c_str()) != 0) {
        throw io_error(target + ": cannot rename " + tmp + " to it: " + io::detail::errno_text(errno));
      }
    }
  } catch (...) {
    remove_tree_quietly(tmp);
    throw;
  }
  fsync_directory(base_path);
  return target;
}

#endif  // TESSERA_OUT_OF_LINE_DEFINITIONS

}  // namespace tessera::serve
