#!/bin/sh
# scripts/gpu-check on a machine without a GPU, over this build's programs: every device test case
# must be reported as a failure ("no device"), the script must exit non-zero within a minute, and
# leave at most 8 files (what the GPU machine's tool returns) in its output folder.
#
#   gpu_check_without_device.sh <repo> <test_cuda_device> <test_cuda_ops> <fashion_mnist_cuda> <scratch folder> [<test_cuda_nccl>]
set -u
repo=$1 tests_bin=$2 ops_bin=$3 main_bin=$4 scratch=$5 nccl_bin=${6:-}

if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1; then
  echo "a GPU is present; this test is for machines without one"
  exit 77
fi
rm -rf "${scratch}"
mkdir -p "${scratch}/bundle/bin" "${scratch}/out"
ln -s "${tests_bin}" "${scratch}/bundle/bin/test_cuda_device"
ln -s "${ops_bin}" "${scratch}/bundle/bin/test_cuda_ops"
ln -s "${main_bin}" "${scratch}/bundle/bin/fashion_mnist_cuda"
[ -z "${nccl_bin}" ] || ln -s "${nccl_bin}" "${scratch}/bundle/bin/test_cuda_nccl"

start=$(date +%s)
BUNDLE="${scratch}/bundle" OUT="${scratch}/out" "${repo}/scripts/gpu-check" > "${scratch}/stdout" 2>&1
status=$?
elapsed=$(($(date +%s) - start))
cat "${scratch}/stdout"

fail() { echo "FAILED: $*"; exit 1; }
[ "${status}" -ne 0 ] || fail "gpu-check exited 0 without a device"
[ "${elapsed}" -le 60 ] || fail "gpu-check took ${elapsed} s (at most 60)"
files=$(find "${scratch}/out" -type f | wc -l)
[ "${files}" -le 8 ] || fail "${files} files in the output folder (at most 8)"
cases=$(for program in "${tests_bin}" "${ops_bin}" ${nccl_bin:+"${nccl_bin}"}; do "${program}" --list-test-cases; done |
  grep -cv -e '^\[doctest\]' -e '^===' -e '^$')
[ "${cases}" -gt 0 ] || fail "test_cuda_device lists no test case"
no_device=$(grep -c '^tests .*FAIL (no device)' "${scratch}/out/summary.txt")
[ "${no_device}" -eq "${cases}" ] || fail "${no_device} of ${cases} cases reported as 'no device'"
! grep -q ' PASS ' "${scratch}/out/summary.txt" || fail "a case passed without a device"
# The summary table is printed last.
tail -1 "${scratch}/stdout" | grep -q '^failed test cases: [1-9]' || fail "the summary is not the last thing printed"
echo "ok: ${cases} cases reported as 'no device', exit ${status}, ${elapsed} s, ${files} files"
