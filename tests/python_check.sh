#!/bin/sh
# Runs a Python check that needs packages from PyPI (the real TensorBoard, onnx and ONNX Runtime,
# tritonclient), with a virtual environment made for it in the build tree.
#
# Usage: python_check.sh <venv_dir> "<modules>" "<pip packages>" <script.py> [arguments...]
#
# If <venv_dir>/bin/python cannot import every one of <modules> (comma-separated, as in Python's
# import statement), creates the venv (python3 -m venv) and pip-installs <pip packages> into it
# (at most 300 s). When that is impossible (no python3, no venv module, no network or package
# index), prints "SKIPPED: <pip packages> not installable here (...)" and exits 77, CTest's skip
# code (SKIP_RETURN_CODE 77). Otherwise runs the script and exits with its status.
set -u

if [ $# -lt 4 ]; then
  echo "usage: $0 <venv_dir> <modules> <pip packages> <script.py> [arguments...]" >&2
  exit 2
fi
venv=$1
modules=$2
packages=$3
script=$4
shift 4
py="$venv/bin/python"
log="${TMPDIR:-/tmp}/python_check.$$.log"
probe="import $modules"

skip() {
  reason=$1
  if [ -s "$log" ]; then
    reason="$reason: $(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | cut -c 1-200)"
  fi
  rm -f "$log"
  echo "SKIPPED: $packages not installable here ($reason)"
  exit 77
}

if ! "$py" -c "$probe" >/dev/null 2>&1; then
  : >"$log"
  # Two checks installing into the same venv at once would trip over each other.
  if command -v flock >/dev/null 2>&1 && mkdir -p "$(dirname "$venv")" 2>/dev/null; then
    exec 9>"$venv.lock"
    flock 9
  fi
  if ! "$py" -c "$probe" >/dev/null 2>&1; then
    command -v python3 >/dev/null 2>&1 || skip "no python3 on PATH"
    if [ ! -x "$py" ]; then
      echo "python_check: creating a virtual environment in $venv"
      python3 -m venv "$venv" >>"$log" 2>&1 || skip "python3 -m venv $venv failed"
    fi
    echo "python_check: installing $packages into $venv (up to 300 s)"
    runner=""
    command -v timeout >/dev/null 2>&1 && runner="timeout 300"
    # shellcheck disable=SC2086  # $packages is a list of words
    $runner "$py" -m pip install --quiet --disable-pip-version-check --timeout 30 --retries 1 $packages \
      >>"$log" 2>&1 || skip "pip install $packages failed or timed out"
    "$py" -c "$probe" >>"$log" 2>&1 || skip "$packages installed but not importable"
  fi
  rm -f "$log"
fi

exec "$py" "$script" "$@"
