#!/usr/bin/env bash
# Builds examples/fashion_classify.cpp as one static, stripped binary per architecture and reports
# its size; on a machine that is not that architecture, runs it under qemu-user on Fashion-MNIST
# test images to show that it works there.
#
#   scripts/static-classify.sh VERSION_DIR [ARCH...]   # ARCH: x86_64 (default), aarch64
#
# VERSION_DIR is an exported Fashion model (the main job's runs/fashion_mnist/export/<version>).
# aarch64 needs Debian's crossbuild-essential-arm64, qemu-user and the arm64 static libraries of
# zlib and libpng (dpkg --add-architecture arm64; apt install zlib1g-dev:arm64 libpng-dev:arm64);
# TESSERA_SKIP_APT unset, they are installed when missing. The GEMMs use Eigen (no OpenBLAS), which
# keeps the binary small; Eigen's NEON kernels run on aarch64. Output: build-static/.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"
if [ $# -lt 1 ]; then
  echo "usage: scripts/static-classify.sh VERSION_DIR [x86_64|aarch64]..." >&2
  exit 2
fi
version_dir="$1"
shift
arches=("$@")
[ ${#arches[@]} -eq 0 ] && arches=(x86_64)
data=/usr/share/datasets/fashion-mnist
out=build-static
mkdir -p "${out}"

for arch in "${arches[@]}"; do
  case "${arch}" in
    x86_64) cxx=g++; strip=strip; runner=() ;;
    aarch64)
      cxx=aarch64-linux-gnu-g++; strip=aarch64-linux-gnu-strip; runner=(qemu-aarch64)
      if ! command -v "${cxx}" >/dev/null || ! command -v qemu-aarch64 >/dev/null ||
         [ ! -e /usr/lib/aarch64-linux-gnu/libpng.a ]; then
        if [ -n "${TESSERA_SKIP_APT:-}" ]; then
          echo "static-classify.sh: the aarch64 toolchain, qemu-user or the arm64 libraries are missing" >&2
          exit 2
        fi
        dpkg --add-architecture arm64
        apt-get update -q
        apt-get install -y -q crossbuild-essential-arm64 qemu-user zlib1g-dev:arm64 libpng-dev:arm64
      fi
      ;;
    *) echo "static-classify.sh: unknown architecture ${arch}" >&2; exit 2 ;;
  esac
  binary="${out}/fashion_classify-${arch}"
  start=$(date +%s)
  "${cxx}" -std=c++17 -O2 -DNDEBUG -static -Iinclude -I/usr/include/eigen3 examples/fashion_classify.cpp \
    -o "${binary}" -lpng -lz -lm -pthread
  "${strip}" "${binary}"
  echo "${arch}: ${binary}, $(stat -c %s "${binary}") bytes stripped ($(( $(date +%s) - start )) s to build)"
  if [ -f "${data}/t10k-images-idx3-ubyte.gz" ]; then
    "${runner[@]}" "${binary}" "${version_dir}" --idx "${data}/t10k-images-idx3-ubyte.gz" \
      --labels "${data}/t10k-labels-idx1-ubyte.gz" --limit 1000 | tail -n 1 | sed "s/^/${arch}: /"
  fi
done
