#!/usr/bin/env bash
# Builds the libFuzzer targets with Clang (AddressSanitizer + UBSan) and runs each for a while on a
# scratch copy of its seed corpus (tests/fuzz/corpus/<target>). A crash, a leak, a hang (10 s per
# input) or an input needing more than 2 GB fails the run and leaves a reproducer named crash-*,
# leak-*, timeout-* or oom-* in the build folder, printed here as a hex dump.
#
#   scripts/fuzz.sh [--build-only | --no-build] [seconds per target, default 60] [targets...]
#
# Targets (default: all): safetensors idx csv png predict infer text_format. Environment:
# FUZZ_BUILD_DIR (default: build-fuzz), JOBS (default: 2). Exit 77 when no Clang with libFuzzer is
# installed (apt install clang libclang-rt-14-dev).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"
build=true
run=true
case "${1:-}" in
  --build-only) run=false; shift ;;
  --no-build) build=false; shift ;;
esac
seconds="${1:-60}"
shift || true
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(safetensors idx csv png predict infer text_format)
build_dir="$(mkdir -p "${FUZZ_BUILD_DIR:-build-fuzz}" && cd "${FUZZ_BUILD_DIR:-build-fuzz}" && pwd)"

cxx="$(command -v clang++ || command -v clang++-14 || true)"
have_libfuzzer() {
  [[ -n "${cxx}" ]] && echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
    "${cxx}" -x c++ -fsanitize=fuzzer - -o "${build_dir}/libfuzzer-probe" 2>/dev/null
}
if ${build}; then
  if ! have_libfuzzer; then
    echo "fuzz.sh: skipped: needs clang++ with libFuzzer (apt install clang libclang-rt-14-dev)" >&2
    exit 77
  fi
  cmake -S . -B "${build_dir}" -DCMAKE_CXX_COMPILER="${cxx}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTESSERA_BUILD_FUZZERS=ON \
    -DTESSERA_BUILD_TESTS=ON -DTESSERA_BUILD_EXAMPLES=OFF -DTESSERA_BUILD_BENCHMARKS=OFF -DTESSERA_CUDA=OFF >/dev/null
  cmake --build "${build_dir}" -j "${JOBS:-2}" --target "${targets[@]/#/fuzz_}"
fi
${run} || exit 0

status=0
for t in "${targets[@]}"; do
  if [[ ! -x "${build_dir}/tests/fuzz_${t}" ]]; then
    have_libfuzzer || { echo "fuzz.sh: skipped: no clang++ with libFuzzer, so fuzz_${t} was not built" >&2; exit 77; }
    echo "fuzz.sh: ${build_dir}/tests/fuzz_${t} is missing (run without --no-build first)" >&2
    exit 1
  fi
  corpus="${build_dir}/corpus/${t}"
  mkdir -p "${corpus}"
  cp tests/fuzz/corpus/"${t}"/* "${corpus}/"
  echo "== fuzz_${t}: ${seconds} s on $(ls "${corpus}" | wc -l) inputs"
  # -error_exitcode=1: libFuzzer's default (77) is what CTest reads as "skipped".
  if ! (cd "${build_dir}" && ./tests/fuzz_"${t}" -max_total_time="${seconds}" -timeout=10 -rss_limit_mb=2048 \
          -error_exitcode=1 -print_final_stats=1 -artifact_prefix="${build_dir}/" "corpus/${t}" >"fuzz_${t}.log" 2>&1); then
    status=1
    tail -n 60 "${build_dir}/fuzz_${t}.log"
    for f in "${build_dir}"/crash-* "${build_dir}"/leak-* "${build_dir}"/timeout-* "${build_dir}"/oom-*; do
      [[ -e "${f}" ]] && { echo "-- reproducer ${f}:"; od -A d -t x1z "${f}" | head -n 40; }
    done
  fi
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "${build_dir}/fuzz_${t}.log" || true
done
exit "${status}"
