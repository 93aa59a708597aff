#!/usr/bin/env bash
# The main job: installs what is missing (packages and the Fashion-MNIST data), builds, then trains
# and evaluates the example model. Arguments go to the program (see examples/fashion_mnist.cpp).
#
#   scripts/run.sh [--epochs N] [--batch B] [--lr X] [--threads T] [--seed S] [--data DIR]
#
# Environment: as setup.sh (BUILD_DIR, BUILD_TYPE, JOBS, TESSERA_SKIP_APT).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

BUILD_DIR="${BUILD_DIR:-build}"
JOBS="${JOBS:-2}"

TESSERA_EXTRA_PACKAGES="dataset-fashion-mnist ${TESSERA_EXTRA_PACKAGES:-}" BUILD_TARGETS=fashion_mnist \
  "${repo_root}/scripts/setup.sh" -DTESSERA_BUILD_EXAMPLES=ON -DTESSERA_EXAMPLES_OPTIMIZE=
exec "${BUILD_DIR}/examples/fashion_mnist" "$@"
