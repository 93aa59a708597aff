#!/bin/sh
# Runs onnx_check.py on a run directory with a Python that has onnx and ONNX Runtime.
#
# Usage: onnx_check.sh <dir written by test_io_onnx> <venv_dir>
#
# If <venv_dir>/bin/python cannot import onnx, onnxruntime, numpy, creates the venv (python3 -m venv) and
# pip-installs onnx, onnxruntime and numpy into it (at most 300 s). When that is impossible (no python3, no venv
# module, no network or package index), prints "SKIPPED: onnx and ONNX Runtime not installable here (...)"
# and exits 77, CTest's skip code (SKIP_RETURN_CODE 77). Otherwise exits with the checker's status.
set -u

if [ $# -ne 2 ]; then
  echo "usage: $0 <logdir> <venv_dir>" >&2
  exit 2
fi
logdir=$1
venv=$2
here=$(cd "$(dirname "$0")" && pwd)
py="$venv/bin/python"
log="${TMPDIR:-/tmp}/onnx_check.$$.log"

skip() {
  reason=$1
  if [ -s "$log" ]; then
    reason="$reason: $(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | cut -c 1-200)"
  fi
  rm -f "$log"
  echo "SKIPPED: onnx and ONNX Runtime not installable here ($reason)"
  exit 77
}

if ! "$py" -c 'import onnx, onnxruntime, numpy' >/dev/null 2>&1; then
  : >"$log"
  # Two checks installing into the same venv at once would trip over each other.
  if command -v flock >/dev/null 2>&1 && mkdir -p "$(dirname "$venv")" 2>/dev/null; then
    exec 9>"$venv.lock"
    flock 9
  fi
  if ! "$py" -c 'import onnx, onnxruntime, numpy' >/dev/null 2>&1; then
    command -v python3 >/dev/null 2>&1 || skip "no python3 on PATH"
    if [ ! -x "$py" ]; then
      echo "onnx_check: creating a virtual environment in $venv"
      python3 -m venv "$venv" >>"$log" 2>&1 || skip "python3 -m venv $venv failed"
    fi
    echo "onnx_check: installing onnx, onnxruntime and numpy into $venv (up to 300 s)"
    runner=""
    command -v timeout >/dev/null 2>&1 && runner="timeout 300"
    $runner "$py" -m pip install --quiet --disable-pip-version-check --timeout 30 --retries 1 onnx onnxruntime numpy \
      >>"$log" 2>&1 || skip "pip install onnx onnxruntime numpy failed or timed out"
    "$py" -c 'import onnx, onnxruntime, numpy' >>"$log" 2>&1 || skip "onnx or onnxruntime installed but not importable"
  fi
  rm -f "$log"
fi

exec "$py" "$here/onnx_check.py" "$logdir"
