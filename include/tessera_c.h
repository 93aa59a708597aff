/* tessera's C API: run an exported tessera model (serve::export_model's version directory) from C,
 * or from any language that calls C (Python's ctypes, Go's cgo, Java's JNI/FFM...).
 *
 *   tessera_model* m = NULL;
 *   if (tessera_model_open("models/fashion/1", &m) != TESSERA_OK) {
 *     fprintf(stderr, "%s\n", tessera_last_error());
 *   }
 *   tessera_tensor in = {TESSERA_FLOAT32, 4, {2, 1, 28, 28}, pixels, sizeof pixels};
 *   tessera_tensor out = {TESSERA_FLOAT32, 0, {0}, probabilities, sizeof probabilities};
 *   tessera_model_run(m, &in, 1, &out, 1);      (out.rank, out.shape and out.bytes are set)
 *   tessera_model_close(m);
 *
 * The library (libtessera_c.so, CMake target tessera_c) is compiled with the model types it can
 * open, the way tessera-serve is (tessera/serve/c_api.hpp says how to build one with your own).
 * Every function returns a status; on failure, tessera_last_error() gives the message. No C++
 * exception crosses this interface. tessera_model_run may be called from several threads on one
 * model at once. Tensors are dense, row-major, in the caller's memory. */
#ifndef TESSERA_C_H
#define TESSERA_C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define TESSERA_C_EXPORT __declspec(dllexport)
#else
#define TESSERA_C_EXPORT __attribute__((visibility("default")))
#endif

typedef enum tessera_status {
  TESSERA_OK = 0,
  TESSERA_ERROR_INVALID_ARGUMENT = 1, /* a null pointer, a wrong dtype, rank or size */
  TESSERA_ERROR_NOT_FOUND = 2,        /* no such file or directory, an unknown architecture */
  TESSERA_ERROR_IO = 3,               /* a file that cannot be read or is corrupt */
  TESSERA_ERROR_BUFFER_TOO_SMALL = 4, /* an output buffer: its `bytes` is then the size needed */
  TESSERA_ERROR_INTERNAL = 5
} tessera_status;

typedef enum tessera_dtype {
  TESSERA_FLOAT32 = 0,
  TESSERA_FLOAT64 = 1,
  TESSERA_INT32 = 2,
  TESSERA_INT64 = 3,
  TESSERA_BOOL = 4 /* one byte per element */
} tessera_dtype;

#define TESSERA_MAX_RANK 8

/* A tensor in the caller's memory. For an input, every field is the caller's. For an output, the
 * caller gives `data` and its capacity in `bytes`; the run sets dtype, rank, shape and bytes. */
typedef struct tessera_tensor {
  tessera_dtype dtype;
  int32_t rank;
  int64_t shape[TESSERA_MAX_RANK];
  void* data;
  size_t bytes;
} tessera_tensor;

/* One input or output of a model's signature; -1 in shape marks a dimension that varies (the
 * batch). `name` lives as long as the model. */
typedef struct tessera_tensor_info {
  const char* name;
  tessera_dtype dtype;
  int32_t rank;
  int64_t shape[TESSERA_MAX_RANK];
} tessera_tensor_info;

typedef struct tessera_model tessera_model;

/* The message of this thread's last failed call ("" when none); valid until its next call. */
TESSERA_C_EXPORT const char* tessera_last_error(void);

/* Opens an exported version directory (BASE/N); checks it as a server does (manifest, registered
 * architecture, structural hash, signature, weights). */
TESSERA_C_EXPORT tessera_status tessera_model_open(const char* version_dir, tessera_model** model);
/* Closes a model (NULL is allowed). No run may be in progress on it. */
TESSERA_C_EXPORT void tessera_model_close(tessera_model* model);

TESSERA_C_EXPORT tessera_status tessera_model_num_inputs(const tessera_model* model, int32_t* count);
TESSERA_C_EXPORT tessera_status tessera_model_num_outputs(const tessera_model* model, int32_t* count);
TESSERA_C_EXPORT tessera_status tessera_model_input(const tessera_model* model, int32_t index, tessera_tensor_info* info);
TESSERA_C_EXPORT tessera_status tessera_model_output(const tessera_model* model, int32_t index, tessera_tensor_info* info);

/* Runs the model: `inputs` in the signature's order, `outputs` likewise (all of them). Thread-safe. */
TESSERA_C_EXPORT tessera_status tessera_model_run(tessera_model* model, const tessera_tensor* inputs, int32_t num_inputs,
                                                  tessera_tensor* outputs, int32_t num_outputs);

#ifdef __cplusplus
}
#endif

#endif /* TESSERA_C_H */
