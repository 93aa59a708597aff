#!/usr/bin/env bash
# The reliability figures of docs/reliability.md, read from the last full test run in a build
# folder (scripts/test.sh; CTest's Testing/Temporary/LastTest.log): the tests run under each
# sanitizer and their results, fuzz executions and crashes per target, the kill test's count, the
# thread counts compared. Nothing is re-run.
#
#   scripts/reliability-report.sh [build folder, default: build]
set -euo pipefail
log="${1:-build}/Testing/Temporary/LastTest.log"
[[ -f "${log}" ]] || { echo "reliability-report.sh: no ${log}: run scripts/test.sh (or ctest) first" >&2; exit 1; }
python3 - "${log}" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
# LastTest.log: one block per test, "<n>/<total> Testing: <name>" ... "Test Passed." / "Test Failed."
blocks = re.split(r"\n(?=\d+/\d+ Testing: )", text)
tests = {}
for b in blocks:
    m = re.match(r"\d+/\d+ Testing: (\S+)", b)
    if not m:
        continue
    if "Test Passed." in b or "Test Pass Reason:" in b:
        status = "passed"
    elif re.search(r"Skipped|Not Run|SKIP_RETURN_CODE", b):
        status = "skipped"
    else:
        status = "failed"
    tests[m.group(1)] = (status, b)
def count(prefix):
    names = [n for n in tests if n.startswith(prefix)]
    by = {s: sum(1 for n in names if tests[n][0] == s) for s in ("passed", "failed", "skipped")}
    return len(names), by
print("| check | figure |")
print("|---|---|")
for kind, title in (("asan_", "AddressSanitizer + UBSan"), ("tsan_", "ThreadSanitizer")):
    n, by = count(kind)
    canaries = sum(1 for t in tests if t.startswith(kind + "canary_") and tests[t][0] == "passed")
    print(f"| {title}: programs run (planted-fault canaries among them) | {n} ({canaries} canaries): "
          f"{by['passed']} passed, {by['failed']} failed, {by['skipped']} skipped |")
for name in sorted(t for t in tests if t.startswith("fuzz_") and t != "fuzz_build"):
    status, b = tests[name]
    runs = re.search(r"stat::number_of_executed_units: (\d+)", b)
    secs = re.search(r"Done \d+ runs in (\d+) second", b)
    crashes = len(re.findall(r"-- reproducer ", b))
    print(f"| {name}: executions in {secs.group(1) if secs else '?'} s, crashes | "
          f"{runs.group(1) if runs else '?'}, {crashes} ({status}) |")
if "test_io_crash_safety" in tests:
    status, b = tests["test_io_crash_safety"]
    m = re.search(r"(\d+) kills: .*", b)
    print(f"| crash-safe saves: SIGKILLs survived | {m.group(0).strip() if m else '?'} ({status}) |")
if "test_train_thread_determinism" in tests:
    status, b = tests["test_train_thread_determinism"]
    m = re.search(r"thread counts compared: [\d, ]+", b)
    print(f"| thread-count determinism | {m.group(0) if m else '?'}: {status} |")
total = len(tests)
failed = [t for t in tests if tests[t][0] == "failed"]
print(f"| whole run | {total} tests, {len(failed)} failed{(': ' + ', '.join(failed)) if failed else ''} |")
PY
