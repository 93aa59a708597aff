#!/usr/bin/env python3
"""The GPU benchmarks' target ratios (scripts/gpu-check).

    gpu_targets.py BENCH_DIR TORCH_JSON MERGED_JSON

BENCH_DIR holds one Google Benchmark JSON file per bench/cuda_bench run (bench_*.json); TORCH_JSON
is bench/torch_cuda_reference.py's output (may be missing or empty). Writes the medians of both to
MERGED_JSON and prints the targets as a table.
"""
import glob
import json
import os
import sys


def tessera_medians(bench_dir):
    """Median milliseconds per benchmark, named without Google Benchmark's suffixes."""
    ms = {}
    for path in sorted(glob.glob(os.path.join(bench_dir, "bench_*.json"))):
        try:
            runs = json.load(open(path)).get("benchmarks", [])
        except (OSError, ValueError):
            continue
        for run in runs:
            if run.get("aggregate_name", "median") != "median" or run.get("error_occurred"):
                continue
            # UseManualTime() names a run "<name>/manual_time"; keep the benchmark's own name.
            name = run["run_name"].split("/")[0]
            scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[run.get("time_unit", "ns")]
            ms[name] = run["real_time"] * scale
    return ms


def torch_medians(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return {}


def targets(ms, torch):
    """(what, value or None, target, passed) rows."""
    rows = []

    def ratio(what, num, den, target):
        value = num / den if num is not None and den else None
        rows.append((what, value, f">= {target}", value is not None and value >= target))

    copy = ms.get("device_copy")
    fused = ms.get("fused_elementwise")
    # Bandwidth: the fused kernel moves 6 arrays (5 read, 1 written), the copy 2; PyTorch eager
    # runs 4 kernels that move 14 arrays, so memory traffic allows at most 14/6 = 2.3x over it.
    ratio("fused a*b+c*d-tanh(e), 2^26 floats: bandwidth / copy's",
          6 / fused if fused else None, 2 / copy if copy else None, 0.85)
    ratio("fused a*b+c*d-tanh(e): PyTorch eager time / tessera's", torch.get("fused_elementwise_ms"), fused, 2.0)
    ratio("GEMM 4096^3 FP32: cuBLAS time / tessera's", ms.get("gemm_cublas"), ms.get("gemm_tessera"), 0.9)
    ratio("CNN train step, batch 256: PyTorch time / tessera's", torch.get("cnn_train_step_ms"),
          ms.get("cnn_train_step"), 1.0)
    ratio("causal MHA fwd+bwd, 16x128x256, 8 heads: PyTorch / tessera", torch.get("attention_fwd_bwd_ms"),
          ms.get("attention_fwd_bwd"), 1.0)
    for name in ("lstm", "gru"):
        ratio(f"{name.upper()} train step, hidden 256, 32 steps, batch 32: PyTorch (cuDNN) / tessera",
              torch.get(f"{name}_train_step_ms"), ms.get(f"{name}_train_step"), 1.0)
    return rows


def main():
    bench_dir, torch_path, merged_path = sys.argv[1:4]
    ms = tessera_medians(bench_dir)
    torch = torch_medians(torch_path)
    with open(merged_path, "w") as f:
        json.dump({"tessera_ms": ms, "torch": torch}, f, indent=1)
    print()
    print(f"{'benchmark (median ms)':40s} {'tessera':>10s} {'PyTorch':>10s}")
    for name in sorted(ms):
        theirs = torch.get(f"{name}_ms") or (torch.get("gemm_ms") if name == "gemm_tessera" else None)
        print(f"{name:40s} {ms[name]:10.3f} {theirs if theirs is not None else float('nan'):10.3f}")
    print()
    print(f"{'target':62s} {'value':>8s}  {'target':8s} result")
    for what, value, target, passed in targets(ms, torch):
        shown = f"{value:8.3f}" if value is not None else "     n/a"
        print(f"{what:62s} {shown}  {target:8s} {'met' if passed else 'NOT MET'}")


if __name__ == "__main__":
    main()
