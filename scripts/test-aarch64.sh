#!/usr/bin/env bash
# Cross-compiles the tests of the core, autodiff, nn and io layers for aarch64 (Eigen's NEON
# kernels, no OpenBLAS) and runs them under qemu-user, through CMake's
# CMAKE_CROSSCOMPILING_EMULATOR (cmake/aarch64-linux-gnu.cmake). Not part of the default test run:
# on the 2-core development machine it takes longer than CI's budget for it (docs/deploy.md).
#
#   scripts/test-aarch64.sh [ctest arguments...]
#
# Installs what is missing unless TESSERA_SKIP_APT is set: crossbuild-essential-arm64, qemu-user,
# and the arm64 zlib and libpng (dpkg --add-architecture arm64). Environment: BUILD_DIR
# (build-aarch64), JOBS (2).
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"
BUILD_DIR="${BUILD_DIR:-build-aarch64}"
JOBS="${JOBS:-2}"

if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null ||
   [ ! -e /usr/lib/aarch64-linux-gnu/libpng.so ] || [ ! -e /usr/lib/aarch64-linux-gnu/libz.so ]; then
  if [ -n "${TESSERA_SKIP_APT:-}" ]; then
    echo "test-aarch64.sh: the aarch64 toolchain, qemu-user or the arm64 zlib/libpng are missing" >&2
    exit 2
  fi
  sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  "${sudo[@]}" dpkg --add-architecture arm64
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y --no-install-recommends crossbuild-essential-arm64 qemu-user zlib1g-dev:arm64 \
    libpng-dev:arm64 libeigen3-dev doctest-dev nlohmann-json3-dev cmake
fi

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "${BUILD_DIR}" "${generator[@]}" -DCMAKE_TOOLCHAIN_FILE="${repo_root}/cmake/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DTESSERA_BUILD_TESTS=ON -DTESSERA_BUILD_EXAMPLES=OFF -DTESSERA_BUILD_BENCHMARKS=OFF \
  -DTESSERA_BLAS=OFF -DTESSERA_CUDA=OFF -DTESSERA_SERVE=OFF -DTESSERA_NATIVE=OFF
labels='^(core|autodiff|nn|io)$'
# The test programs of those layers (integration checks, which run host Python, are left out).
mapfile -t targets < <(ctest --test-dir "${BUILD_DIR}" -N -L "${labels}" -LE integration |
                       sed -n 's/^ *Test *#[0-9]*: \(test_[A-Za-z0-9_]*\)$/\1/p')
echo "test-aarch64.sh: building ${#targets[@]} test programs for aarch64"
start=$(date +%s)
cmake --build "${BUILD_DIR}" -j "${JOBS}" --target "${targets[@]}"
echo "test-aarch64.sh: built in $(( $(date +%s) - start )) s; running them under qemu-aarch64"
ctest --test-dir "${BUILD_DIR}" -L "${labels}" -LE integration -j "${JOBS}" --output-on-failure "$@"
