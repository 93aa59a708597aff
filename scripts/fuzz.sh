#!/usr/bin/env bash
# Builds the libFuzzer targets with Clang (AddressSanitizer + UBSan) and runs each for a while on a
# scratch copy of its seed corpus (tests/fuzz/corpus/<reader>). A crash leaves a reproducer named
# crash-* in build-fuzz/ and makes this script fail.
#
#   scripts/fuzz.sh [seconds per target, default 60] [targets..., default: safetensors idx csv]
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"
seconds="${1:-60}"
shift || true
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(safetensors idx csv)

cxx="$(command -v clang++ || command -v clang++-14 || true)"
[[ -n "${cxx}" ]] || { echo "fuzz.sh: needs clang++ with libFuzzer (apt install clang)" >&2; exit 1; }

cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER="${cxx}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTESSERA_BUILD_FUZZERS=ON \
  -DTESSERA_BUILD_EXAMPLES=OFF -DTESSERA_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-fuzz -j "${JOBS:-2}" --target "${targets[@]/#/fuzz_}"

for t in "${targets[@]}"; do
  corpus="build-fuzz/corpus/${t}"
  mkdir -p "${corpus}"
  cp -n tests/fuzz/corpus/"${t}"/* "${corpus}/" 2>/dev/null || true
  echo "== fuzz_${t}: ${seconds}s"
  (cd build-fuzz && ./tests/fuzz_"${t}" -max_total_time="${seconds}" -rss_limit_mb=4096 -print_final_stats=1 "corpus/${t}" 2>&1 | tail -n 12)
done
