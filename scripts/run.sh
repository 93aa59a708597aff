#!/usr/bin/env bash
# The main job: installs what is missing (packages and the Fashion-MNIST data), builds, then trains
# and evaluates the example model. Arguments go to the program (see examples/fashion_mnist.cpp).
# PROGRAM=char_lm runs the character-level language model instead (examples/char_lm.cpp), with
# Debian's fortunes package for its text; PROGRAM=tessera-serve runs the model server
# (examples/tessera_serve.cpp), e.g. on the model the main job exported.
#
#   scripts/run.sh [--epochs N] [--batch B] [--lr X] [--threads T] [--seed S] [--data DIR]
#   PROGRAM=char_lm scripts/run.sh [--minutes M] [--prompt TEXT] [--resume] ...
#   PROGRAM=tessera-serve scripts/run.sh --model_name fashion --model_base_path runs/fashion_mnist/export
#   NP=2 scripts/run.sh [...]     # the main job data-parallel over 2 processes, started by mpiexec
#
# Environment: as setup.sh (BUILD_DIR, BUILD_TYPE, JOBS, TESSERA_SKIP_APT), and PROGRAM
# (fashion_mnist, the default, char_lm or tessera-serve), NP (processes for mpiexec; unset: one, no mpiexec).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

BUILD_DIR="${BUILD_DIR:-build}"
JOBS="${JOBS:-2}"
PROGRAM="${PROGRAM:-fashion_mnist}"

# The data package each program reads.
case "${PROGRAM}" in
  fashion_mnist) data_package=dataset-fashion-mnist ;;
  char_lm) data_package=fortunes ;;
  tessera-serve) data_package=curl ;;  # for the README's request
  *)
    echo "run.sh: PROGRAM must be fashion_mnist, char_lm or tessera-serve, got ${PROGRAM}" >&2
    exit 2
    ;;
esac

TESSERA_EXTRA_PACKAGES="${data_package} ${TESSERA_EXTRA_PACKAGES:-}" BUILD_TARGETS="${PROGRAM}" \
  "${repo_root}/scripts/setup.sh" -DTESSERA_BUILD_EXAMPLES=ON -DTESSERA_EXAMPLES_OPTIMIZE=
if [[ -n "${NP:-}" ]]; then
  # Open MPI wants to be told that root may run it, and that more processes than cores are fine.
  mpi_flags=()
  if mpiexec --version 2>/dev/null | grep -qE "Open MPI|OpenRTE"; then
    mpi_flags=(--oversubscribe)
    if [[ "$(id -u)" -eq 0 ]]; then mpi_flags+=(--allow-run-as-root); fi
  fi
  exec mpiexec "${mpi_flags[@]}" -np "${NP}" "${BUILD_DIR}/examples/${PROGRAM}" "$@"
fi
exec "${BUILD_DIR}/examples/${PROGRAM}" "$@"
