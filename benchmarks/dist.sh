#!/usr/bin/env bash
# Data-parallel training over Open MPI on this machine (benchmarks/dist/bench_dist.cpp says what
# is measured and how the scaling model works): builds bench_dist in build-bench, runs it as 1 rank
# × 2 threads and as 2 ranks × 1 thread (each rank bound to its own core), and prints one Markdown
# report with both, the allreduce sweep and the model of 8, 64 and 512 ranks.
#
#   bash benchmarks/dist.sh [--steps S] [--latency-us A --bandwidth-gbs B]   (model a network's links)
set -euo pipefail
cd "$(dirname "$0")/.."

./tools/install-deps.sh
cmake -S . -B build-bench -DDIFFUSE_BUILD_BENCHMARKS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench --target bench_dist -j2 >/dev/null
bench=build-bench/benchmarks/bench_dist

# One machine: no ssh needed (isolated launcher), shared memory without CMA (absent in containers),
# root allowed (containers run as root). Passive waits: an idle OpenMP thread must not steal the
# other rank's core.
export OMPI_MCA_plm=isolated OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
lscpu | sed -n 's/^Model name: *//p' | sed 's/^/machine: /'
echo "machine: $(nproc) cores; $(mpirun --version | head -n 1)"
echo

single=$(OMP_NUM_THREADS=2 mpirun -np 1 --bind-to none "$bench" "$@" | sed -n 's/^images\/s //p')
OMP_NUM_THREADS=1 mpirun -np 2 --bind-to core "$bench" --single "$single" "$@"
