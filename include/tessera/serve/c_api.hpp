// The implementation of the C API (tessera_c.h) for the model types a registry function
// registers. A C library is one source file:
//
//   #include <tessera/serve/c_api.hpp>
//   void register_my_models(tessera::serve::ModelRegistry& r) { r.add<Tensor<float, 2>>("mine", ...); }
//   TESSERA_C_API(register_my_models)
//
// built as a shared library (examples/c_api/ builds libtessera_c.so with the example
// architectures this way). The macro defines the extern "C" functions; everything else is inline
// here, so this header can be included anywhere without defining them. Each C function catches
// every exception and turns it into a status and a thread-local message.
#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "tessera/core/error.hpp"
#include "tessera/serve/model_manager.hpp"
#include "tessera/serve/registry.hpp"
#include "tessera/serve/signature.hpp"
#include "tessera_c.h"

/// What a tessera_model* points to.
struct tessera_model {
  tessera::serve::Manifest manifest;
  std::unique_ptr<tessera::serve::Servable> servable;
};

namespace tessera::serve::c_api {

inline std::string& last_error() {
  thread_local std::string message;
  return message;
}

/// Runs f, turning every exception into a status and the thread's last error.
template <class F>
tessera_status guarded(F&& f) noexcept {
  try {
    last_error().clear();
    return f();
  } catch (const io_error& e) {
    last_error() = e.what();
    return TESSERA_ERROR_IO;
  } catch (const std::invalid_argument& e) {  // value_error, shape_error
    last_error() = e.what();
    return TESSERA_ERROR_INVALID_ARGUMENT;
  } catch (const std::out_of_range& e) {  // index_error: an index in the input
    last_error() = e.what();
    return TESSERA_ERROR_INVALID_ARGUMENT;
  } catch (const std::bad_alloc&) {
    last_error() = "out of memory";
    return TESSERA_ERROR_INTERNAL;
  } catch (const std::exception& e) {
    last_error() = e.what();
    return TESSERA_ERROR_INTERNAL;
  } catch (...) {
    last_error() = "unknown error";
    return TESSERA_ERROR_INTERNAL;
  }
}

inline tessera_status fail(tessera_status status, const std::string& message) {
  last_error() = message;
  return status;
}

inline tessera_dtype to_c(DataType t) {
  switch (t) {
    case DataType::float32: return TESSERA_FLOAT32;
    case DataType::float64: return TESSERA_FLOAT64;
    case DataType::int32: return TESSERA_INT32;
    case DataType::int64: return TESSERA_INT64;
    case DataType::boolean: return TESSERA_BOOL;
  }
  return TESSERA_FLOAT32;
}

inline tessera_status open(const ModelRegistry& registry, const char* version_dir, tessera_model** model) {
  return guarded([&] {
    if (model == nullptr) return fail(TESSERA_ERROR_INVALID_ARGUMENT, "tessera_model_open: model is NULL");
    *model = nullptr;
    if (version_dir == nullptr) return fail(TESSERA_ERROR_INVALID_ARGUMENT, "tessera_model_open: version_dir is NULL");
    struct ::stat st {};
    if (::stat(version_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
      return fail(TESSERA_ERROR_NOT_FOUND, std::string(version_dir) + ": no such version directory");
    }
    auto m = std::make_unique<tessera_model>();
    m->servable = detail::load_servable(registry, version_dir, m->manifest);
    for (const auto* list : {&m->manifest.signature.inputs, &m->manifest.signature.outputs}) {
      for (const auto& s : *list) {
        if (s.shape.size() > TESSERA_MAX_RANK) {
          return fail(TESSERA_ERROR_INVALID_ARGUMENT, s.name + " has rank " + std::to_string(s.shape.size()) +
                                                          ", more than the C API's TESSERA_MAX_RANK");
        }
      }
    }
    *model = m.release();
    return TESSERA_OK;
  });
}

inline tessera_status count(const tessera_model* model, int32_t* out, bool inputs) {
  return guarded([&] {
    if (model == nullptr || out == nullptr) return fail(TESSERA_ERROR_INVALID_ARGUMENT, "a NULL model or count");
    *out = int32_t(inputs ? model->manifest.signature.inputs.size() : model->manifest.signature.outputs.size());
    return TESSERA_OK;
  });
}

inline tessera_status info(const tessera_model* model, int32_t index, tessera_tensor_info* info, bool inputs) {
  return guarded([&] {
    if (model == nullptr || info == nullptr) return fail(TESSERA_ERROR_INVALID_ARGUMENT, "a NULL model or info");
    const auto& list = inputs ? model->manifest.signature.inputs : model->manifest.signature.outputs;
    if (index < 0 || std::size_t(index) >= list.size()) {
      return fail(TESSERA_ERROR_INVALID_ARGUMENT, std::string(inputs ? "input" : "output") + " index " +
                                                      std::to_string(index) + " out of range (" +
                                                      std::to_string(list.size()) + ")");
    }
    const TensorSpec& s = list[std::size_t(index)];
    info->name = s.name.c_str();
    info->dtype = to_c(s.dtype);
    info->rank = int32_t(s.shape.size());
    std::fill(std::begin(info->shape), std::end(info->shape), 0);
    std::copy(s.shape.begin(), s.shape.end(), info->shape);
    return TESSERA_OK;
  });
}

inline tessera_status run(tessera_model* model, const tessera_tensor* inputs, int32_t num_inputs, tessera_tensor* outputs,
                          int32_t num_outputs) {
  return guarded([&] {
    if (model == nullptr) return fail(TESSERA_ERROR_INVALID_ARGUMENT, "tessera_model_run: model is NULL");
    const Signature& sig = model->manifest.signature;
    if (num_inputs != int32_t(sig.inputs.size()) || (num_inputs > 0 && inputs == nullptr)) {
      return fail(TESSERA_ERROR_INVALID_ARGUMENT, "tessera_model_run: the model takes " + std::to_string(sig.inputs.size()) +
                                                      " inputs, got " + std::to_string(num_inputs));
    }
    if (num_outputs != int32_t(sig.outputs.size()) || (num_outputs > 0 && outputs == nullptr)) {
      return fail(TESSERA_ERROR_INVALID_ARGUMENT, "tessera_model_run: the model has " + std::to_string(sig.outputs.size()) +
                                                      " outputs, got room for " + std::to_string(num_outputs));
    }
    std::vector<HostTensor> host;
    for (std::size_t i = 0; i < sig.inputs.size(); ++i) {
      const tessera_tensor& in = inputs[i];
      const TensorSpec& spec = sig.inputs[i];
      const std::string what = "input " + spec.name;
      if (in.dtype != to_c(spec.dtype)) {
        return fail(TESSERA_ERROR_INVALID_ARGUMENT, what + ": dtype " + std::to_string(int(in.dtype)) + ", the model takes " +
                                                        dtype_name(spec.dtype));
      }
      if (in.rank < 0 || in.rank > TESSERA_MAX_RANK) return fail(TESSERA_ERROR_INVALID_ARGUMENT, what + ": bad rank");
      std::vector<std::int64_t> shape(in.shape, in.shape + in.rank);
      for (auto d : shape) {
        if (d < 0) return fail(TESSERA_ERROR_INVALID_ARGUMENT, what + ": negative extent in shape " + shape_string(shape));
      }
      if (!detail::fits(spec.shape, shape)) {
        return fail(TESSERA_ERROR_INVALID_ARGUMENT,
                    what + ": shape " + shape_string(shape) + " does not fit the signature's " + shape_string(spec.shape));
      }
      const std::size_t needed = std::size_t(checked_elements(shape, dtype_size(spec.dtype))) * dtype_size(spec.dtype);
      if (in.bytes != needed) {
        return fail(TESSERA_ERROR_INVALID_ARGUMENT, what + ": " + std::to_string(in.bytes) + " bytes given, shape " +
                                                        shape_string(shape) + " needs " + std::to_string(needed));
      }
      HostTensor t(spec.dtype, shape);
      if (!t.bytes.empty()) {
        if (in.data == nullptr) return fail(TESSERA_ERROR_INVALID_ARGUMENT, what + ": data is NULL");
        std::memcpy(t.bytes.data(), in.data, t.bytes.size());
        if (spec.dtype == DataType::boolean) {  // one byte each; anything but 0 is true
          for (auto& byte : t.bytes) byte = byte != 0;
        }
      }
      host.push_back(std::move(t));
    }
    const auto results = model->servable->run(host);
    tessera_status status = TESSERA_OK;
    for (std::size_t k = 0; k < results.size(); ++k) {
      tessera_tensor& out = outputs[k];
      const HostTensor& r = results[k];
      out.dtype = to_c(r.dtype);
      out.rank = int32_t(r.shape.size());
      std::fill(std::begin(out.shape), std::end(out.shape), 0);
      std::copy(r.shape.begin(), r.shape.end(), out.shape);
      if (out.bytes < r.bytes.size() || (!r.bytes.empty() && out.data == nullptr)) {
        last_error() = "output " + sig.outputs[k].name + ": " + std::to_string(r.bytes.size()) + " bytes needed, " +
                       std::to_string(out.bytes) + " given";
        out.bytes = r.bytes.size();
        status = TESSERA_ERROR_BUFFER_TOO_SMALL;
        continue;
      }
      if (!r.bytes.empty()) std::memcpy(out.data, r.bytes.data(), r.bytes.size());
      out.bytes = r.bytes.size();
    }
    return status;
  });
}

}  // namespace tessera::serve::c_api

/// Defines the C API's functions for the architectures `register_function(ModelRegistry&)` adds.
/// Use once, in the source file of the shared library.
#define TESSERA_C_API(register_function)                                                                          \
  namespace {                                                                                                     \
  const tessera::serve::ModelRegistry& tessera_c_registry() {                                                     \
    static const tessera::serve::ModelRegistry registry = [] {                                                    \
      tessera::serve::ModelRegistry r;                                                                            \
      register_function(r);                                                                                       \
      return r;                                                                                                   \
    }();                                                                                                          \
    return registry;                                                                                              \
  }                                                                                                               \
  }                                                                                                               \
  extern "C" {                                                                                                    \
  const char* tessera_last_error(void) { return tessera::serve::c_api::last_error().c_str(); }                    \
  tessera_status tessera_model_open(const char* version_dir, tessera_model** model) {                             \
    return tessera::serve::c_api::guarded(                                                                        \
        [&] { return tessera::serve::c_api::open(tessera_c_registry(), version_dir, model); });                  \
  }                                                                                                               \
  void tessera_model_close(tessera_model* model) { delete model; }                                                \
  tessera_status tessera_model_num_inputs(const tessera_model* model, int32_t* count) {                           \
    return tessera::serve::c_api::count(model, count, true);                                                      \
  }                                                                                                               \
  tessera_status tessera_model_num_outputs(const tessera_model* model, int32_t* count) {                          \
    return tessera::serve::c_api::count(model, count, false);                                                     \
  }                                                                                                               \
  tessera_status tessera_model_input(const tessera_model* model, int32_t index, tessera_tensor_info* info) {      \
    return tessera::serve::c_api::info(model, index, info, true);                                                 \
  }                                                                                                               \
  tessera_status tessera_model_output(const tessera_model* model, int32_t index, tessera_tensor_info* info) {     \
    return tessera::serve::c_api::info(model, index, info, false);                                                \
  }                                                                                                               \
  tessera_status tessera_model_run(tessera_model* model, const tessera_tensor* inputs, int32_t num_inputs,        \
                                   tessera_tensor* outputs, int32_t num_outputs) {                                \
    return tessera::serve::c_api::run(model, inputs, num_inputs, outputs, num_outputs);                           \
  }                                                                                                               \
  }
