#!/usr/bin/env bash
# tessera against ONNX Runtime on the same exported Fashion CNN, in one run: median forward latency
# at batch 1 and 64, 2 threads each (ONNX Runtime in-process from Python: intra-op threads 2,
# inter-op 1). ONNX Runtime comes from PyPI into a virtual environment (VENV, default
# build-bench/onnx-venv).
#
#   bench/onnx_bench.sh [BUILD_DIR]     # a Release build with benchmarks (target onnx_forward)
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-${repo_root}/build-bench}"
venv="${VENV:-${build}/onnx-venv}"
[ -x "${build}/bench/onnx_forward" ] || { echo "onnx_bench.sh: build onnx_forward in ${build} first" >&2; exit 2; }
if ! "${venv}/bin/python" -c 'import onnxruntime, numpy' 2>/dev/null; then
  python3 -m venv "${venv}"
  "${venv}/bin/pip" install --quiet --disable-pip-version-check onnxruntime numpy
fi
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
tessera="$("${build}/bench/onnx_forward" "${work}/cnn.onnx" 2 3)"
"${venv}/bin/python" - "${work}/cnn.onnx" "${tessera}" <<'PY'
import json, sys, time
import numpy as np
import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 2
options.inter_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
tessera = json.loads(sys.argv[2])["tessera_ms"]
print(f"{'batch':>6} {'tessera ms':>11} {'onnxruntime ms':>15} {'ratio (ort / tessera)':>22}")
for batch in (1, 64):
    x = np.random.default_rng(2).random((batch, 1, 28, 28), dtype=np.float32)
    times = []
    end = time.perf_counter() + 3
    while len(times) < 20 or time.perf_counter() < end:
        t0 = time.perf_counter()
        session.run(None, {"input": x})
        times.append((time.perf_counter() - t0) * 1000)
    ort_ms = sorted(times)[len(times) // 2]
    t = tessera[str(batch)]
    print(f"{batch:>6} {t:>11.4f} {ort_ms:>15.4f} {ort_ms / t:>22.2f}")
print(f"onnxruntime {ort.__version__}")
PY
