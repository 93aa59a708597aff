#!/usr/bin/env bash
# Compile times side by side, on this machine, in one run:
#   tessera_loop   the main job's CNN trained by a plain loop with tessera (compile_time/)
#   libtorch_loop  the same program with LibTorch (Debian's libtorch-dev; skipped without it)
#   main_job       examples/fashion_mnist.cpp, the full main job (fit, checkpoints, TensorBoard)
# each compiled and linked by one `g++ -std=c++17 -O2 -march=native` command, as a user would;
# wall time (best of REPEAT) and the compiler's peak memory are printed as a table. The two
# tessera programs are compiled twice: header-only, and with tessera::precompiled (what linking it
# does: -DTESSERA_PRECOMPILED and the library of kernels and out-of-line functions, built here once
# beforehand by the same compiler; its own build time is printed as precompiled).
#
#   bench/compile_time.sh                    # the three programs
#   bench/compile_time.sh --suite REF...     # also configure + build + ctest (scripts/test.sh, as
#                                            # CI runs it) of each git REF, in clean worktrees
#
# Environment: CXX (g++), REPEAT (3), JOBS (2, for --suite).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"
CXX="${CXX:-g++}"
REPEAT="${REPEAT:-3}"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

eigen="$(pkg-config --cflags eigen3 2>/dev/null || echo -I/usr/include/eigen3)"
blas=""
if [ -e /usr/lib/x86_64-linux-gnu/libopenblas.so ] || ldconfig -p | grep -q libopenblas.so; then
  blas="-DTESSERA_HAS_CBLAS=1 -lopenblas"
fi
tessera_flags="-Iinclude ${eigen} -pthread ${blas} -lz -lpng"
torch_include="/usr/include/torch/csrc/api/include"
torch_flags="-I${torch_include} -Wl,--no-as-needed -ltorch -ltorch_cpu -Wl,--as-needed -lc10"

# Prints "<best wall seconds> <peak MiB>" for compiling $1 into $2 with the flags in $3.
measure() {
  local best="" peak=0 t m
  for _ in $(seq "${REPEAT}"); do
    # shellcheck disable=SC2086
    /usr/bin/time -f '%e %M' -o "${work}/time" "${CXX}" -std=c++17 -O2 -march=native "$1" -o "$2" $3
    read -r t m < "${work}/time"
    if [ -z "${best}" ] || awk -v a="${t}" -v b="${best}" 'BEGIN { exit !(a < b) }'; then best="${t}"; fi
    [ "${m}" -gt "${peak}" ] && peak="${m}"
  done
  echo "${best} $((peak / 1024))"
}

printf '%-16s %10s %10s\n' program "seconds" "peak MiB"
row() { printf '%-16s %10s %10s\n' "$1" "$2" "$3"; }
# tessera::precompiled: its four objects in one archive, compiled at the programs' -O2 (CMake uses
# the build type's level).
library_start=$(date +%s.%N)
compile_flags="-Iinclude ${eigen} -pthread"
[ -n "${blas}" ] && compile_flags="${compile_flags} -DTESSERA_HAS_CBLAS=1"
for part in float double core functions; do
  # shellcheck disable=SC2086
  "${CXX}" -std=c++17 -O2 -march=native -DTESSERA_PRECOMPILED ${compile_flags} -c "src/precompiled_${part}.cpp" \
    -o "${work}/precompiled_${part}.o"
done
ar rcs "${work}/libtessera_precompiled.a" "${work}/precompiled_float.o" "${work}/precompiled_double.o" \
  "${work}/precompiled_core.o" "${work}/precompiled_functions.o"
library_seconds=$(awk -v a="${library_start}" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
# The library before the ones it needs (OpenBLAS), as the linker reads them in order.
precompiled_flags="-DTESSERA_PRECOMPILED -L${work} -ltessera_precompiled ${tessera_flags}"

read -r s m < <(measure bench/compile_time/tessera_loop.cpp "${work}/tessera_loop" "${tessera_flags}")
row tessera_loop "${s}" "${m}"
read -r s m < <(measure bench/compile_time/tessera_loop.cpp "${work}/tessera_loop" "${precompiled_flags}")
row "  precompiled" "${s}" "${m}"
if [ -f "${torch_include}/torch/torch.h" ]; then
  read -r s m < <(measure bench/compile_time/libtorch_loop.cpp "${work}/libtorch_loop" "${torch_flags}")
  row libtorch_loop "${s}" "${m}"
else
  row libtorch_loop "skipped" "(no libtorch-dev)"
fi
read -r s m < <(measure examples/fashion_mnist.cpp "${work}/fashion_mnist" "${tessera_flags}")
row main_job "${s}" "${m}"
read -r s m < <(measure examples/fashion_mnist.cpp "${work}/fashion_mnist" "${precompiled_flags}")
row "  precompiled" "${s}" "${m}"
row precompiled "${library_seconds}" "(once)"

if [ "${1:-}" = "--suite" ]; then
  shift
  printf '\n%-16s %10s\n' "test suite at" "seconds"
  for ref in "$@"; do
    tree="${work}/suite-${ref//\//_}"
    git worktree add --detach -q "${tree}" "${ref}"
    start=$(date +%s)
    (cd "${tree}" && TESSERA_SKIP_APT=1 JOBS="${JOBS:-2}" scripts/test.sh > "${work}/suite.log" 2>&1) ||
      echo "  (${ref}: the suite failed; see its log)" >&2
    printf '%-16s %10d   %s\n' "${ref}" $(($(date +%s) - start)) "$(grep -E 'tests passed|tests failed' "${work}/suite.log" | tail -1)"
    git worktree remove --force "${tree}"
  done
fi
