#!/bin/sh
# Runs serve_check.py (tessera-serve asked by curl and Triton's Python client) with a Python that
# has tritonclient[http] and numpy.
#
# Usage: serve_check.sh <tessera-serve> <models_dir> <venv_dir>
#
# <models_dir> is what test_serve_fashion_models leaves with TESSERA_SERVE_MODELS set (versions of
# "fashion" and "mlp" and a models.config naming them). If <venv_dir>/bin/python cannot import
# tritonclient.http and numpy, creates the venv (python3 -m venv) and pip-installs them into it
# (at most 300 s). When that is impossible (no python3, no venv module, no network or package
# index), prints "SKIPPED: tritonclient not installable here (...)" and exits 77, CTest's skip
# code (SKIP_RETURN_CODE 77). Otherwise exits with the checker's status.
set -u

if [ $# -ne 3 ]; then
  echo "usage: $0 <tessera-serve> <models_dir> <venv_dir>" >&2
  exit 2
fi
server=$1
models=$2
venv=$3
here=$(cd "$(dirname "$0")" && pwd)
py="$venv/bin/python"
log="${TMPDIR:-/tmp}/serve_check.$$.log"
packages="tritonclient[http] numpy"
probe='import tritonclient.http, numpy'

skip() {
  reason=$1
  if [ -s "$log" ]; then
    reason="$reason: $(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | cut -c 1-200)"
  fi
  rm -f "$log"
  echo "SKIPPED: tritonclient not installable here ($reason)"
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
      echo "serve_check: creating a virtual environment in $venv"
      python3 -m venv "$venv" >>"$log" 2>&1 || skip "python3 -m venv $venv failed"
    fi
    echo "serve_check: installing $packages into $venv (up to 300 s)"
    runner=""
    command -v timeout >/dev/null 2>&1 && runner="timeout 300"
    # shellcheck disable=SC2086  # $packages is a list of words
    $runner "$py" -m pip install --quiet --disable-pip-version-check --timeout 30 --retries 1 $packages \
      >>"$log" 2>&1 || skip "pip install $packages failed or timed out"
    "$py" -c "$probe" >>"$log" 2>&1 || skip "tritonclient installed but not importable"
  fi
  rm -f "$log"
fi

exec "$py" "$here/serve_check.py" "$server" "$models"
