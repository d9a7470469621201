#!/usr/bin/env bash
# Reproducibility of the real programs (Tiny preset, Fashion-MNIST): the same seed and thread count
# give byte-identical checkpoints, weights and images run after run, and (as the README says) so
# does another thread count: train twice on 2 threads and once on 1, then txt2img from those
# weights twice on 2 threads and once on 1, with the EMA and with the raw weights.
# Usage: reproducible.sh BIN_DIR FASHION_DIR. Exit 77 (skipped) without Fashion-MNIST.
set -uo pipefail
bin=$1 fashion=$2
[[ -f $fashion/train-images-idx3-ubyte.gz || -f $fashion/train-images-idx3-ubyte ]] ||
  { echo "Fashion-MNIST not found in $fashion: skipped"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() {
  echo "FAILED: $*"
  exit 1
}
same() { cmp -s "$1" "$2" || fail "$3: $1 and $2 differ"; }

train() {  # train OUT THREADS
  "$bin/train" --preset tiny --vae-steps 6 --steps 8 --checkpoint-every 0 --sample-every 0 --sample-steps 2 \
    --log-every 100 --seed 9 --fashion-dir "$fashion" --out-dir "$1" --threads "$2" >"$1.log" 2>&1 ||
    fail "train --threads $2: $(tail -n 3 "$1.log")"
}
train "$dir/a" 2
train "$dir/b" 2
train "$dir/c" 1
grep -q "; 2 threads" "$dir/a.log" || fail "train --threads 2 did not run 2 OpenMP threads: $(grep threads "$dir/a.log")"
for f in checkpoint.safetensors diffusion.safetensors samples_final.png; do
  same "$dir/a/$f" "$dir/b/$f" "train twice, 2 threads"
  same "$dir/a/$f" "$dir/c/$f" "train on 2 threads and on 1"
done

sample() {  # sample OUT THREADS [FLAGS...]
  local out=$1 threads=$2
  shift 2
  "$bin/txt2img" --weights "$dir/a/diffusion.safetensors" --prompt "a photo of a bag" --negative "a shirt" --n 5 \
    --steps 4 --seed 4 --threads "$threads" --grid "$out" "$@" >/dev/null 2>"$out.log" ||
    fail "txt2img --threads $threads $*: $(tail -n 3 "$out.log")"
}
for variant in "" --raw-weights; do
  sample "$dir/x.png" 2 $variant
  sample "$dir/y.png" 2 $variant
  sample "$dir/z.png" 1 $variant --sampler euler_a
  sample "$dir/w.png" 2 $variant --sampler euler_a
  same "$dir/x.png" "$dir/y.png" "txt2img twice, 2 threads $variant"
  same "$dir/z.png" "$dir/w.png" "txt2img euler_a on 1 and 2 threads $variant"
  cmp -s "$dir/x.png" "$dir/w.png" && fail "two samplers gave the same images: the comparison shows nothing"
done
echo "train and txt2img: byte-identical checkpoints, weights and images run after run and on 1 or 2 threads"
