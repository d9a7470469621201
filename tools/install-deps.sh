#!/usr/bin/env bash
# Installs what diffuse needs from Debian 12's packages, and only what is missing.
# Pass --torch to also install PyTorch (python3-torch), used only to regenerate reference data
# and for the side-by-side benchmarks.
set -euo pipefail
pkgs=(g++ cmake make libeigen3-dev libxsimd-dev doctest-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev wamerican clang-format-14 dataset-fashion-mnist
  libcli11-dev  # the example programs' command-line parser
  libopenmpi-dev openmpi-bin  # Open MPI: optional data-parallel training (include/diffuse/dist/) and its tests
  clang-14 libclang-rt-14-dev libomp-14-dev)  # libFuzzer and clang's OpenMP: the fuzz targets (fuzz/, .ci/run)
pkgs+=(pkg-config)  # the consumer.install test compiles with diffuse.pc's flags
pkgs+=(doxygen)  # the API reference (target docs, test docs_doxygen)
pkgs+=(libbenchmark-dev)  # Google Benchmark, for the benchmarks (-DDIFFUSE_BUILD_BENCHMARKS=ON)
[[ "${1:-}" == "--torch" ]] && pkgs+=(python3-torch)
pkgs+=(python3-numpy)  # tools/sparkly_fashion.py: the data of README's LoRA example
pkgs+=(libfreetype-dev fonts-dejavu-core)  # captions under the programs' grid rows (--captions, --font)
pkgs+=(gnuplot-nox)  # train's loss curve OUT/loss.png (a separate process: nothing links it)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
