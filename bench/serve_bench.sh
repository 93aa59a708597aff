#!/usr/bin/env bash
# The serving benchmark: the Fashion CNN behind tessera-serve, batch-1 requests from wrk at
# concurrency 1, 8 and 32, with batching off and on, beside the same model's in-process forward
# (bench/serve_forward), all in one run on one machine (load generator and server share it).
#
#   bench/serve_bench.sh [BUILD_DIR]      # BUILD_DIR: a Release build with benchmarks (default build-bench)
#
# Needs wrk (Debian's wrk) and python3. Environment: SECONDS_PER_RUN (10), PORT (8591).
# Prints a table: requests/s, p50 and p99 latency, errors (non-2xx answers and socket errors).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-${repo_root}/build-bench}"
duration="${SECONDS_PER_RUN:-10}"
port="${PORT:-8591}"
command -v wrk >/dev/null || { echo "serve_bench.sh: wrk is needed (apt install wrk)" >&2; exit 2; }
for program in "${build}/examples/tessera-serve" "${build}/bench/serve_forward"; do
  [ -x "${program}" ] || { echo "serve_bench.sh: ${program} is missing; build tessera-serve and serve_forward in ${build}" >&2; exit 2; }
done

work="$(mktemp -d)"
server_pid=""
cleanup() {
  [ -n "${server_pid}" ] && kill "${server_pid}" 2>/dev/null && wait "${server_pid}" 2>/dev/null
  rm -rf "${work}"
}
trap cleanup EXIT

# The model (seeded weights: the speed does not depend on them) and one request: a batch-1
# image in the row form, ~6 KB of JSON.
version_dir="$("${build}/bench/serve_forward" --export "${work}/fashion")"
python3 - "${work}/request.json" <<'PY'
import json, random, sys
random.seed(0)
image = [[[round(random.random(), 4) for _ in range(28)] for _ in range(28)]]
json.dump({"instances": [image]}, open(sys.argv[1], "w"))
PY
cat > "${work}/post.lua" <<LUA
wrk.method = "POST"
local f = io.open("${work}/request.json", "r")
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA
printf 'max_batch_size { value: 32 }\nbatch_timeout_micros { value: 200 }\nnum_batch_threads { value: 2 }\n' > "${work}/batching.config"

echo "in-process (one thread): $("${build}/bench/serve_forward" --version "${version_dir}" --request "${work}/request.json")"
echo "  forward_us: the registered forward on one example, host tensors in and out"
echo "  protocol_us: parsing the request body and writing the response, in-process"
echo
printf '%-9s %6s %12s %10s %10s %8s\n' batching conc "requests/s" "p50 ms" "p99 ms" errors
for batching in off on; do
  flags=()
  [ "${batching}" = on ] && flags=(--enable_batching --batching_parameters_file "${work}/batching.config")
  "${build}/examples/tessera-serve" --model_name fashion --model_base_path "${work}/fashion" \
    --rest_api_port "${port}" "${flags[@]}" > "${work}/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 50); do
    grep -q listening "${work}/server.log" && break
    sleep 0.1
  done
  for conc in 1 8 32; do
    threads=2
    [ "${conc}" = 1 ] && threads=1
    wrk -t"${threads}" -c"${conc}" -d"${duration}s" --latency -s "${work}/post.lua" \
      "http://127.0.0.1:${port}/v1/models/fashion:predict" > "${work}/wrk.txt"
    rps=$(awk '/Requests\/sec/ {print $2}' "${work}/wrk.txt")
    p50=$(awk '$1 == "50%" {print $2}' "${work}/wrk.txt")
    p99=$(awk '$1 == "99%" {print $2}' "${work}/wrk.txt")
    non2xx=$(awk '/Non-2xx/ {print $5}' "${work}/wrk.txt")
    socket=$(awk -F'[ ,]+' '/Socket errors/ {print $4 + $6 + $8 + $10}' "${work}/wrk.txt")
    to_ms() { python3 -c "import sys; v=sys.argv[1]; print('%.3f' % (float(v[:-2]) / 1000 if v.endswith('us') else float(v[:-2]) if v.endswith('ms') else float(v[:-1]) * 1000))" "$1"; }
    printf '%-9s %6s %12s %10s %10s %8s\n' "${batching}" "${conc}" "${rps}" "$(to_ms "${p50}")" "$(to_ms "${p99}")" \
      "$(( ${non2xx:-0} + ${socket:-0} ))"
  done
  kill -TERM "${server_pid}"
  wait "${server_pid}" || { echo "tessera-serve exited with an error:" >&2; cat "${work}/server.log" >&2; }
  server_pid=""
done
