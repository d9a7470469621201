#!/usr/bin/python3
"""torch.optim.Adam's step time on n float32 parameters, in the units of benchmarks/bench_adam.cpp
(7 streams x 4 bytes per parameter), for comparison on the same machine and thread count.

    /usr/bin/python3 tools/reference/adam_bench_torch.py [n] [threads]
"""
import statistics
import sys
import time

import torch


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else torch.get_num_threads()
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(1)
    gb = 7 * 4 * n * 1e-9
    print(f"n = {n} float params, torch {torch.__version__}, {threads} threads, median of 21")
    for foreach in (False, True):
        p = torch.nn.Parameter(torch.randn(n, generator=gen) * 0.02)
        p.grad = torch.randn(n, generator=gen) * 1e-3
        opt = torch.optim.Adam([p], lr=1e-3, foreach=foreach)
        opt.step()  # allocates the state
        times = []
        for _ in range(21):
            t = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        print(f"  torch.optim.Adam foreach={foreach!s:5}  {med * 1e3:8.3f} ms  {gb / med:7.2f} GB/s")


if __name__ == "__main__":
    main()
