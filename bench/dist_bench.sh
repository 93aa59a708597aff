#!/usr/bin/env bash
# Distributed training's numbers, in one run on this machine:
#   1. the bucketed gradient all-reduce (dist::DataParallel) against MPI_Allreduce of the same bytes,
#      1 MiB to 256 MiB, on NP processes (bench/dist_allreduce.cpp);
#   2. the main job for 2 epochs as one process with 2 threads, then under mpirun -np 2 with one
#      thread each: samples per second and test accuracy.
#
#   bench/dist_bench.sh [BUILD_DIR]      (default build-bench; Release, benchmarks on)
# Environment: NP (default 2), EPOCHS (default 2).
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-${repo_root}/build-bench}"
np="${NP:-2}"
epochs="${EPOCHS:-2}"
flags=(--allow-run-as-root --oversubscribe --timeout 1800)
if ! mpiexec --version 2>/dev/null | grep -qE "Open MPI|OpenRTE"; then flags=(); fi

if [[ ! -x "${build}/bench/dist_allreduce" || ! -x "${build}/examples/fashion_mnist" ]]; then
  cmake -S "${repo_root}" -B "${build}" -DCMAKE_BUILD_TYPE=Release -DTESSERA_BUILD_BENCHMARKS=ON -DTESSERA_BUILD_EXAMPLES=ON \
    -DTESSERA_BUILD_TESTS=OFF >/dev/null
  cmake --build "${build}" -j 2 --target dist_allreduce fashion_mnist
fi

echo "== gradient all-reduce, ${np} processes =="
mpiexec "${flags[@]}" -np "${np}" "${build}/bench/dist_allreduce"

samples=60000
run() {  # label, command...: prints samples/s and accuracy from the result line
  local label=$1
  shift
  local out
  out=$("$@" --epochs "${epochs}" --out "$(mktemp -d)" --export none 2>&1 | grep '"test_accuracy"')
  local seconds accuracy
  seconds=$(sed -n 's/.*"train_seconds": \([0-9.]*\).*/\1/p' <<<"${out}")
  accuracy=$(sed -n 's/.*"test_accuracy": \([0-9.]*\).*/\1/p' <<<"${out}")
  awk -v l="${label}" -v s="${seconds}" -v a="${accuracy}" -v n="$((samples * epochs))" \
    'BEGIN { printf "%-34s %8.1f s  %8.0f samples/s  test accuracy %s\n", l, s, n / s, a }'
}
echo "== the main job, ${epochs} epochs =="
run "1 process x 2 threads" "${build}/examples/fashion_mnist" --threads 2
run "mpirun -np 2, 1 thread each" mpiexec "${flags[@]}" -np 2 "${build}/examples/fashion_mnist" --threads 1
