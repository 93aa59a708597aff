#!/usr/bin/env bash
# tessera against ONNX Runtime on the same exported Fashion CNN, in one run: median forward latency
# at batch 1 and 64, 2 threads each (ONNX Runtime in-process from Python: intra-op threads 2,
# inter-op 1), in alternating rounds (ROUNDS, SECONDS_PER_RUN). ONNX Runtime comes from PyPI into
# a virtual environment (VENV, default build-bench/onnx-venv).
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
# Rounds alternate the two (ROUNDS, default 5, of SECONDS, default 1, per batch size each), so
# that a slow spell of a shared machine falls on both; each prints the median of its rounds'
# medians and the median of the rounds' ratios.
"${venv}/bin/python" - "${build}/bench/onnx_forward" "${work}/cnn.onnx" "${ROUNDS:-5}" "${SECONDS_PER_RUN:-1}" <<'PY'
import json, statistics, subprocess, sys, time
import numpy as np
import onnxruntime as ort
binary, model, rounds, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
def tessera_ms():
    out = subprocess.run([binary, model, "2", str(seconds)], check=True, capture_output=True, text=True).stdout
    return {int(k): v for k, v in json.loads(out)["tessera_ms"].items()}
tessera_ms()  # exports the model the session below loads
options = ort.SessionOptions()
options.intra_op_num_threads = 2
options.inter_op_num_threads = 1
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
inputs = {batch: np.random.default_rng(2).random((batch, 1, 28, 28), dtype=np.float32) for batch in (1, 64)}
def ort_ms(batch):
    times = []
    end = time.perf_counter() + seconds
    while len(times) < 20 or time.perf_counter() < end:
        t0 = time.perf_counter()
        session.run(None, {"input": inputs[batch]})
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)
runs = {batch: {"tessera": [], "ort": []} for batch in (1, 64)}
for _ in range(rounds):
    t = tessera_ms()
    for batch in (1, 64):
        runs[batch]["tessera"].append(t[batch])
        runs[batch]["ort"].append(ort_ms(batch))
print(f"{'batch':>6} {'tessera ms':>11} {'onnxruntime ms':>15} {'ratio (ort / tessera)':>22}   ({rounds} rounds)")
for batch in (1, 64):
    t, o = runs[batch]["tessera"], runs[batch]["ort"]
    ratio = statistics.median(b / a for a, b in zip(t, o))
    print(f"{batch:>6} {statistics.median(t):>11.4f} {statistics.median(o):>15.4f} {ratio:>22.2f}")
print(f"onnxruntime {ort.__version__}")
PY
