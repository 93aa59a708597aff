#!/usr/bin/env bash
# Builds tessera (installing missing packages first, see setup.sh) and runs every test.
#
#   scripts/test.sh [extra cmake configure arguments...]
#
# Benchmarks are not built unless asked for (-DTESSERA_BUILD_BENCHMARKS=ON); examples are.
# Environment: as setup.sh (BUILD_DIR, BUILD_TYPE, JOBS, TESSERA_SKIP_APT).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

BUILD_DIR="${BUILD_DIR:-build}"
JOBS="${JOBS:-2}"

# Examples for their smoke tests (TESSERA_EXAMPLES_OPTIMIZE): the main job at -O1, the others at -O0
# (see examples/CMakeLists.txt); a fraction of the Release compile time.
# protoc and python3-venv serve the TensorBoard tests (protoc --decode_raw; TensorBoard's own
# reader in a virtual environment); the dataset package and fortunes let the main job's and the
# language model's smoke tests run; curl is one of the clients that ask tessera-serve. clang and its
# runtimes build the fuzz targets (libFuzzer), which CTest runs for 30 s each; the unit tests are
# also built under AddressSanitizer + UBSan and ThreadSanitizer (docs/reliability.md).
TESSERA_EXTRA_PACKAGES="protobuf-compiler python3-venv dataset-fashion-mnist fortunes curl clang libclang-rt-14-dev ${TESSERA_EXTRA_PACKAGES:-}" \
"${repo_root}/scripts/setup.sh" -DTESSERA_BUILD_TESTS=ON -DTESSERA_BUILD_EXAMPLES=ON \
  -DTESSERA_BUILD_BENCHMARKS=OFF -DTESSERA_EXAMPLES_OPTIMIZE=-O1 -DTESSERA_TEST_SANITIZERS=ON -DTESSERA_TEST_FUZZ=ON "$@"
ctest --test-dir "${BUILD_DIR}" -j "${JOBS}" --output-on-failure
