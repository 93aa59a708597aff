/* Runs an exported tessera model from C through libtessera_c (tessera_c.h) and prints its outputs.
 *
 *   predict VERSION_DIR [BATCH]
 *
 * The inputs are a fixed pattern (so that the C, Python and C++ runs can be compared): element j of
 * input i is ((j * 7919 + i * 13) % 1000) / 1000 for floating-point inputs and (j * 31 + i) % 256
 * for integer ones; the first varying dimension is BATCH (default 2), any other is 5. Each output
 * is printed as a line "name: d0 x d1 x ..." and then its values, one row of the last axis per line
 * (%.9g). Exit status 1 with tessera's message on any error. */
#include <stdio.h>
#include <stdlib.h>

#include <tessera_c.h>

static size_t dtype_size(tessera_dtype t) {
  switch (t) {
    case TESSERA_FLOAT64:
    case TESSERA_INT64: return 8;
    case TESSERA_BOOL: return 1;
    default: return 4;
  }
}

static int check(tessera_status s, const char* what) {
  if (s == TESSERA_OK) return 0;
  fprintf(stderr, "predict: %s failed (status %d): %s\n", what, (int)s, tessera_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: predict VERSION_DIR [BATCH]\n");
    return 2;
  }
  const int64_t batch = argc > 2 ? atoll(argv[2]) : 2;
  tessera_model* model = NULL;
  if (check(tessera_model_open(argv[1], &model), "tessera_model_open")) return 1;
  int32_t n_in = 0, n_out = 0;
  if (check(tessera_model_num_inputs(model, &n_in), "num_inputs") || check(tessera_model_num_outputs(model, &n_out), "num_outputs")) {
    return 1;
  }
  tessera_tensor* inputs = calloc((size_t)n_in, sizeof(tessera_tensor));
  tessera_tensor* outputs = calloc((size_t)n_out, sizeof(tessera_tensor));
  for (int32_t i = 0; i < n_in; ++i) {
    tessera_tensor_info info;
    if (check(tessera_model_input(model, i, &info), "tessera_model_input")) return 1;
    tessera_tensor* t = &inputs[i];
    t->dtype = info.dtype;
    t->rank = info.rank;
    size_t n = 1;
    int first = 1;
    for (int32_t d = 0; d < info.rank; ++d) {
      t->shape[d] = info.shape[d] >= 0 ? info.shape[d] : (first ? batch : 5);
      if (info.shape[d] < 0) first = 0;
      n *= (size_t)t->shape[d];
    }
    t->bytes = n * dtype_size(info.dtype);
    t->data = malloc(t->bytes > 0 ? t->bytes : 1);
    for (size_t j = 0; j < n; ++j) {
      const double f = (double)((j * 7919 + (size_t)i * 13) % 1000) / 1000.0;
      const long k = (long)((j * 31 + (size_t)i) % 256);
      switch (info.dtype) {
        case TESSERA_FLOAT32: ((float*)t->data)[j] = (float)f; break;
        case TESSERA_FLOAT64: ((double*)t->data)[j] = f; break;
        case TESSERA_INT32: ((int32_t*)t->data)[j] = (int32_t)k; break;
        case TESSERA_INT64: ((int64_t*)t->data)[j] = (int64_t)k; break;
        case TESSERA_BOOL: ((unsigned char*)t->data)[j] = (unsigned char)(k % 2); break;
      }
    }
  }
  /* First with no room: the run says how much each output needs. */
  tessera_status s = tessera_model_run(model, inputs, n_in, outputs, n_out);
  if (s != TESSERA_ERROR_BUFFER_TOO_SMALL && check(s, "tessera_model_run (sizing)")) return 1;
  for (int32_t k = 0; k < n_out; ++k) outputs[k].data = malloc(outputs[k].bytes > 0 ? outputs[k].bytes : 1);
  if (check(tessera_model_run(model, inputs, n_in, outputs, n_out), "tessera_model_run")) return 1;
  for (int32_t k = 0; k < n_out; ++k) {
    tessera_tensor_info info;
    if (check(tessera_model_output(model, k, &info), "tessera_model_output")) return 1;
    const tessera_tensor* t = &outputs[k];
    printf("%s:", info.name);
    size_t n = 1;
    for (int32_t d = 0; d < t->rank; ++d) {
      printf(d ? " x %lld" : " %lld", (long long)t->shape[d]);
      n *= (size_t)t->shape[d];
    }
    printf("\n");
    const size_t row = t->rank > 0 && t->shape[t->rank - 1] > 0 ? (size_t)t->shape[t->rank - 1] : 1;
    for (size_t j = 0; j < n; ++j) {
      switch (t->dtype) {
        case TESSERA_FLOAT32: printf("%.9g", (double)((const float*)t->data)[j]); break;
        case TESSERA_FLOAT64: printf("%.9g", ((const double*)t->data)[j]); break;
        case TESSERA_INT32: printf("%d", (int)((const int32_t*)t->data)[j]); break;
        case TESSERA_INT64: printf("%lld", (long long)((const int64_t*)t->data)[j]); break;
        case TESSERA_BOOL: printf("%d", (int)((const unsigned char*)t->data)[j]); break;
      }
      printf((j + 1) % row == 0 ? "\n" : " ");
    }
  }
  for (int32_t i = 0; i < n_in; ++i) free(inputs[i].data);
  for (int32_t k = 0; k < n_out; ++k) free(outputs[k].data);
  free(inputs);
  free(outputs);
  tessera_model_close(model);
  return 0;
}
