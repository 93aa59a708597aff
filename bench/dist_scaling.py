#!/usr/bin/env python3
"""The scaling model of docs/distributed.md: predicted data-parallel efficiency from the compute
time per step and the all-reduce's bus bandwidth.

A ring all-reduce of S bytes over n workers moves 2(n-1)/n * S bytes through each link and takes
2(n-1) latency hops:  T_ar(n) = 2(n-1)/n * S / B + 2(n-1) * alpha.
Efficiency (speed-up / n) with compute time T_c per step:
  without overlap (tessera today: the sweep returns every gradient at once)  T_c / (T_c + T_ar)
  with the backward overlapped (PyTorch DDP, Horovod; backward ~ 2/3 of T_c)  T_c / (T_c + max(0, T_ar - 2/3 T_c))

  bench/dist_scaling.py                          # the tables of docs/distributed.md
  bench/dist_scaling.py --tc 0.014 --bytes 827880 --bw 3.1e9 --alpha 5e-6   # your own numbers
"""
import argparse


def allreduce_seconds(n, size, bandwidth, alpha):
    return 0.0 if n == 1 else 2 * (n - 1) / n * size / bandwidth + 2 * (n - 1) * alpha


def efficiency(n, tc, size, bandwidth, alpha, overlap):
    t = allreduce_seconds(n, size, bandwidth, alpha)
    exposed = max(0.0, t - overlap * tc)
    return tc / (tc + exposed)


def table(title, tc, size, links):
    print(f"{title}: T_c = {tc * 1e3:.1f} ms per step, gradients {size / 1e6:.2f} MB")
    print(f"  {'workers':>7} {'bus GB/s':>9} {'T_ar ms':>8} {'no overlap':>11} {'overlapped':>11}")
    for n, bandwidth, alpha in links:
        t = allreduce_seconds(n, size, bandwidth, alpha)
        print(f"  {n:>7} {bandwidth / 1e9:>9.0f} {t * 1e3:>8.2f} {efficiency(n, tc, size, bandwidth, alpha, 0):>10.0%}"
              f" {efficiency(n, tc, size, bandwidth, alpha, 2 / 3):>11.0%}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tc", type=float, help="compute seconds per step")
    p.add_argument("--bytes", type=float, help="gradient bytes")
    p.add_argument("--bw", type=float, help="all-reduce bus bandwidth, bytes/s")
    p.add_argument("--alpha", type=float, default=10e-6, help="latency per ring hop, s")
    a = p.parse_args()
    if a.tc and a.bytes and a.bw:
        table("your numbers", a.tc, a.bytes, [(n, a.bw, a.alpha) for n in (2, 4, 8, 16, 64)])
        return
    # Links assumed for V100 servers (DGX-1 class): 8 GPUs per node on NVLink (NCCL bus bandwidth
    # about 130 GB/s); nodes joined by 4 x 100 Gb/s InfiniBand (about 40 GB/s between nodes), or,
    # more commonly in clouds, by one 100 Gb/s link (about 10 GB/s).
    gpu_links = [(8, 130e9, 5e-6), (16, 40e9, 10e-6), (64, 40e9, 10e-6), (16, 10e9, 10e-6), (64, 10e9, 10e-6)]
    # ResNet-50: 25.6 M float32 parameters; a V100 trains about 370 images/s in float32, so a
    # per-GPU batch of 64 takes 173 ms.
    table("ResNet-50-sized, V100 float32, 64 images per GPU", 0.173, 25.6e6 * 4, gpu_links)
    # The main job's CNN: 206,970 float32 parameters. Its GPU step time is not measured yet (the
    # CUDA backend has not run on a GPU); 2 ms per step of 64 images is assumed.
    table("Main job CNN, GPU (assumed 2 ms per step of 64 images)", 0.002, 206970 * 4, gpu_links)


if __name__ == "__main__":
    main()
