#!/usr/bin/env bash
# diffuse beside PyTorch, case by case, on this machine: installs what is missing (Debian's
# python3-torch, and an optimized BLAS for it), builds the C++ side (bench_compare) in build-bench,
# and runs benchmarks/compare_torch.py, which checks and times both sides and prints a Markdown table
# (its docstring says what is compared and how).
#
#   bash benchmarks/compare.sh [--threads N] [--rounds R] [--cases PREFIX,...] [--out FILE]
set -euo pipefail
cd "$(dirname "$0")/.."

./tools/install-deps.sh --torch
# install-deps.sh installs without recommends; torch recommends an optimized BLAS, without which its
# float32 matrix products (Linear, attention) run on the reference BLAS at ~2 GFLOP/s.
status=$(dpkg-query -W -f='${Status}\n' 'libopenblas0*' 2>/dev/null || true)
if ! grep -q "install ok installed" <<<"$status"; then
  sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends libopenblas0-openmp
fi

cmake -S . -B build-bench -DDIFFUSE_BUILD_BENCHMARKS=ON -DCMAKE_BUILD_TYPE=Release
cmake --build build-bench --target bench_compare -j2
exec /usr/bin/python3 benchmarks/compare_torch.py --binary build-bench/benchmarks/bench_compare "$@"
