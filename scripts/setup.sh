#!/usr/bin/env bash
# Installs the build dependencies that are missing (Debian/Ubuntu), then configures and builds tessera.
#
#   scripts/setup.sh [extra cmake configure arguments...]
#
# Environment: BUILD_DIR (default: build), BUILD_TYPE (default: Release), JOBS (default: 2),
# BUILD_TARGETS="t1 t2" to build only those targets,
# TESSERA_SKIP_APT=1 to never touch apt, TESSERA_EXTRA_PACKAGES="pkg ..." to install more.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

BUILD_DIR="${BUILD_DIR:-build}"
BUILD_TYPE="${BUILD_TYPE:-Release}"
JOBS="${JOBS:-2}"

packages=(cmake g++ libeigen3-dev doctest-dev libbenchmark-dev libopenblas-dev libopenblas0-pthread zlib1g-dev libpng-dev nlohmann-json3-dev
          libcpp-httplib-dev libopenmpi-dev openmpi-bin)
# Callers add what only they need (scripts/run.sh adds the Fashion-MNIST data package).
read -r -a extra_packages <<<"${TESSERA_EXTRA_PACKAGES:-}"
packages+=("${extra_packages[@]}")

install_missing_packages() {
  if [[ "${TESSERA_SKIP_APT:-0}" == "1" ]]; then
    return 0
  fi
  if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup.sh: no dpkg/apt-get here; install these yourself if the build fails: ${packages[*]}" >&2
    return 0
  fi
  local missing=()
  local pkg
  for pkg in "${packages[@]}"; do
    # dpkg -s also succeeds for removed-but-configured packages, so check the status line too.
    if ! dpkg -s "${pkg}" 2>/dev/null | grep -q '^Status: install ok installed'; then
      missing+=("${pkg}")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    return 0
  fi
  echo "setup.sh: installing missing packages: ${missing[*]}"
  local sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "setup.sh: not root and no sudo; cannot install: ${missing[*]}" >&2
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
}

install_missing_packages

cmake -S . -B "${BUILD_DIR}" -DCMAKE_BUILD_TYPE="${BUILD_TYPE}" "$@"
if [[ -n "${BUILD_TARGETS:-}" ]]; then
  read -r -a targets <<<"${BUILD_TARGETS}"
  cmake --build "${BUILD_DIR}" -j "${JOBS}" --target "${targets[@]}"
else
  cmake --build "${BUILD_DIR}" -j "${JOBS}"
fi
