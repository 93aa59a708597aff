#!/usr/bin/env python3
"""Runs an exported tessera model from Python through libtessera_c (tessera_c.h) with ctypes only
(no compiled extension, no NumPy), and prints its outputs exactly as predict.c does.

    predict.py LIBRARY VERSION_DIR [BATCH]

LIBRARY is the path of libtessera_c.so (the CMake target tessera_c). The inputs follow predict.c's
pattern, so the two programs print the same text for the same model.
"""
import ctypes
import sys

MAX_RANK = 8
OK, BUFFER_TOO_SMALL = 0, 4
FLOAT32, FLOAT64, INT32, INT64, BOOL = range(5)
CTYPES = {FLOAT32: ctypes.c_float, FLOAT64: ctypes.c_double, INT32: ctypes.c_int32, INT64: ctypes.c_int64, BOOL: ctypes.c_uint8}


class Tensor(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int), ("rank", ctypes.c_int32), ("shape", ctypes.c_int64 * MAX_RANK),
                ("data", ctypes.c_void_p), ("bytes", ctypes.c_size_t)]


class TensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("rank", ctypes.c_int32),
                ("shape", ctypes.c_int64 * MAX_RANK)]


class TesseraError(RuntimeError):
    pass


class Model:
    """An opened version directory; run() takes and returns lists of (dtype, shape, flat values)."""

    def __init__(self, library, version_dir):
        self.lib = ctypes.CDLL(library)
        lib = self.lib
        lib.tessera_last_error.restype = ctypes.c_char_p
        lib.tessera_model_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
        lib.tessera_model_close.argtypes = [ctypes.c_void_p]
        for f in (lib.tessera_model_num_inputs, lib.tessera_model_num_outputs):
            f.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32)]
        for f in (lib.tessera_model_input, lib.tessera_model_output):
            f.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.POINTER(TensorInfo)]
        lib.tessera_model_run.argtypes = [ctypes.c_void_p, ctypes.POINTER(Tensor), ctypes.c_int32,
                                          ctypes.POINTER(Tensor), ctypes.c_int32]
        self.handle = ctypes.c_void_p()
        self._check(lib.tessera_model_open(version_dir.encode(), ctypes.byref(self.handle)), "tessera_model_open")
        self.inputs = self._infos(lib.tessera_model_num_inputs, lib.tessera_model_input)
        self.outputs = self._infos(lib.tessera_model_num_outputs, lib.tessera_model_output)

    def _check(self, status, what):
        if status != OK:
            raise TesseraError(f"{what} failed (status {status}): {self.lib.tessera_last_error().decode()}")

    def _infos(self, count_function, info_function):
        n = ctypes.c_int32()
        self._check(count_function(self.handle, ctypes.byref(n)), "count")
        infos = []
        for i in range(n.value):
            info = TensorInfo()
            self._check(info_function(self.handle, i, ctypes.byref(info)), "info")
            infos.append((info.name.decode(), info.dtype, list(info.shape[:info.rank])))
        return infos

    def run(self, inputs):
        keep = []
        c_inputs = (Tensor * len(inputs))()
        for t, (dtype, shape, values) in zip(c_inputs, inputs):
            buffer = (CTYPES[dtype] * len(values))(*values)
            keep.append(buffer)
            t.dtype, t.rank = dtype, len(shape)
            for d, extent in enumerate(shape):
                t.shape[d] = extent
            t.data, t.bytes = ctypes.cast(buffer, ctypes.c_void_p), ctypes.sizeof(buffer)
        c_outputs = (Tensor * len(self.outputs))()
        # First with no room: the run says how much each output needs.
        status = self.lib.tessera_model_run(self.handle, c_inputs, len(inputs), c_outputs, len(self.outputs))
        if status != BUFFER_TOO_SMALL:
            self._check(status, "tessera_model_run (sizing)")
        buffers = []
        for t in c_outputs:
            buffer = ctypes.create_string_buffer(max(t.bytes, 1))
            buffers.append(buffer)
            t.data = ctypes.cast(buffer, ctypes.c_void_p)
        self._check(self.lib.tessera_model_run(self.handle, c_inputs, len(inputs), c_outputs, len(self.outputs)),
                    "tessera_model_run")
        results = []
        for t in c_outputs:
            shape = list(t.shape[:t.rank])
            n = 1
            for extent in shape:
                n *= extent
            values = list((CTYPES[t.dtype] * n).from_address(t.data))
            results.append((t.dtype, shape, values))
        return results

    def close(self):
        if self.handle:
            self.lib.tessera_model_close(self.handle)
            self.handle = ctypes.c_void_p()


def pattern(inputs, batch):
    """predict.c's inputs."""
    out = []
    for i, (_, dtype, spec) in enumerate(inputs):
        shape, first = [], True
        for extent in spec:
            shape.append(extent if extent >= 0 else (batch if first else 5))
            if extent < 0:
                first = False
        n = 1
        for extent in shape:
            n *= extent
        if dtype in (FLOAT32, FLOAT64):
            values = [((j * 7919 + i * 13) % 1000) / 1000.0 for j in range(n)]
        elif dtype == BOOL:
            values = [((j * 31 + i) % 256) % 2 for j in range(n)]
        else:
            values = [(j * 31 + i) % 256 for j in range(n)]
        out.append((dtype, shape, values))
    return out


def main():
    if len(sys.argv) < 3:
        print("usage: predict.py LIBRARY VERSION_DIR [BATCH]", file=sys.stderr)
        return 2
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    try:
        model = Model(sys.argv[1], sys.argv[2])
        results = model.run(pattern(model.inputs, batch))
    except TesseraError as e:
        print(f"predict.py: {e}", file=sys.stderr)
        return 1
    for (name, _, _), (dtype, shape, values) in zip(model.outputs, results):
        print(f"{name}: " + " x ".join(str(d) for d in shape))
        row = shape[-1] if shape and shape[-1] > 0 else 1
        for j, v in enumerate(values):
            text = "%.9g" % v if dtype in (FLOAT32, FLOAT64) else str(int(v))
            print(text, end="\n" if (j + 1) % row == 0 else " ")
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
