#!/bin/sh
# A rank that leaves a data-parallel job must end the whole job with a non-zero exit status:
#   failure_check.sh kill  MPIEXEC "FLAGS" PROBE   # rank 1 SIGKILLed at step 5: the job ends within 5 s
#   failure_check.sh stall MPIEXEC "FLAGS" PROBE   # rank 1 asleep after step 5: the watchdog (2 s)
#                                                  # aborts the job naming the step
set -u
mode=$1 mpiexec=$2 flags=$3 probe=$4
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# shellcheck disable=SC2086 # the flags are separate words
"$mpiexec" $flags -np 2 "$probe" "$mode" 1 5 >"$out" 2>&1
status=$?
end=$(date +%s.%N)
cat "$out"
if [ "$status" -eq 0 ]; then
  echo "FAIL: the job exited 0 although rank 1 left"
  exit 1
fi
if grep -q "nobody left" "$out"; then
  echo "FAIL: a rank finished training without rank 1"
  exit 1
fi
case $mode in
  kill)
    killed=$(sed -n 's/^probe: rank 1 killed at \([0-9.]*\)$/\1/p' "$out")
    if [ -z "$killed" ]; then
      echo "FAIL: rank 1 did not reach step 5"
      exit 1
    fi
    awk -v a="$killed" -v b="$end" 'BEGIN { d = b - a; printf "the job ended %.2f s after the kill (exit status '"$status"')\n", d; exit !(d <= 5) }' ||
      { echo "FAIL: more than 5 s"; exit 1; }
    ;;
  stall)
    if ! grep -q "watchdog: rank 0 waited .* training step 5, gradient bucket 1 of 1" "$out"; then
      echo "FAIL: no watchdog message naming the step and the bucket"
      exit 1
    fi
    echo "the watchdog ended the job (exit status $status)"
    ;;
esac
