#!/usr/bin/env python3
"""Two builds of diffuse, case by case, on this machine: is the change faster?

    python3 benchmarks/compare_builds.py OLD/bench_compare NEW/bench_compare [CASE_PREFIX ...]
        [--threads N] [--rounds R] [--calls K] [--model FILE]

Runs both bench_compare binaries as long-lived processes (the stdin protocol at the top of
benchmarks/bench_compare.cpp), sets up the same case in each, then times `run K` on one and the
other alternately, R rounds, swapping which goes first every round, so that both see the same
moments of a noisy machine. Prints per case the median and the fastest round of each, and
old/new (above 1: the new build is faster). No PyTorch is needed; compare_torch.py is the
comparison with it.

On a shared or virtual machine, set OMP_WAIT_POLICY=passive: otherwise the idle process's
OpenMP threads spin while the other one runs and take its cores.
"""
import argparse
import os
import statistics
import sys
import tempfile

from bench_client import BenchCompare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def die(message):
    sys.exit(f"compare_builds.py: {message}")


def bench(binary, threads, model):
    if not os.access(binary, os.X_OK):
        die(f"{binary}: not an executable (build it: cmake --build build-bench --target bench_compare)")
    return BenchCompare(binary, threads, model, die, cwd=ROOT)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", help="bench_compare of the build before the change")
    ap.add_argument("new", help="bench_compare of the build after it")
    ap.add_argument("cases", nargs="*", help="case-name prefixes (default: every case); quote names with spaces")
    ap.add_argument("--threads", type=int, default=2, help="threads of each build (default 2)")
    ap.add_argument("--rounds", type=int, default=11, help="alternating rounds per case (default 11)")
    ap.add_argument("--calls", type=int, default=3, help="calls of the case timed per round (default 3)")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "diffusion.safetensors"),
                    help="weights for the model cases (default models/diffusion.safetensors)")
    args = ap.parse_args()
    if args.threads < 1 or args.rounds < 1 or args.calls < 1:
        die("--threads, --rounds and --calls must be at least 1")
    if not os.path.isfile(args.model):
        die(f"{args.model}: no such file")

    benches = [bench(args.old, args.threads, args.model), bench(args.new, args.threads, args.model)]
    names = benches[0].ask("list").split("\t")
    chosen = [n for n in names if not args.cases or any(n.startswith(p) for p in args.cases)]
    if not chosen:
        die(f"no case matches {args.cases}; the cases: {', '.join(names)}")
    print(f"old: {args.old}\nnew: {args.new}\n{args.threads} threads, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}, {args.rounds} rounds of {args.calls} calls, medians\n")
    print("| case | old median | new median | old fastest | new fastest | old/new |\n|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for case in chosen:
            for b in benches:
                b.ask("setup", case, scratch)
            times = [[], []]
            for r in range(args.rounds):
                for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                    times[i].append(benches[i].run(args.calls)[0])
            old, new = (statistics.median(t) for t in times)
            ms = lambda s: f"{s * 1e3:.3f} ms"
            print(f"| {case} | {ms(old)} | {ms(new)} | {ms(min(times[0]))} | {ms(min(times[1]))} | {old / new:.2f} |",
                  flush=True)
    for b in benches:
        b.close()


if __name__ == "__main__":
    main()
