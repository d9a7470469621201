#!/usr/bin/env bash
# Every program validates its inputs before doing any work, as a user meets them: a number that is
# not finite or out of range, an output path that cannot be written (found before the model loads,
# creating nothing), weights that are missing, not a weights file or of an unknown preset. Bad flags
# exit 2 with the problem named; other errors exit 1 with one line. txt2img makes exactly --n images.
# Usage: validation.sh BIN_DIR SOURCE_DIR (BIN_DIR holds the example programs).
set -uo pipefail
bin=$1 src=$2
source "$(dirname "$0")/checks.sh"  # $dir, fail() and $failures

# expect CODE TEXT PROGRAM ARGS...: exit status CODE and TEXT in stderr (one line when CODE is 1).
expect() {
  local code=$1 text=$2
  shift 2
  "$@" >"$dir/out" 2>"$dir/err"
  local got=$?
  local shown="$(basename "$1") ${*:2}"
  if ((got != code)); then
    fail "$shown: exit $got, expected $code; stderr: $(head -c 400 "$dir/err")"
  elif ! grep -qF -- "$text" "$dir/err"; then
    fail "$shown: stderr does not say \"$text\": $(head -c 400 "$dir/err")"
  elif ((code == 1)) && [[ $(wc -l <"$dir/err") != 1 ]]; then
    fail "$shown: $(wc -l <"$dir/err") lines on stderr, expected one: $(head -c 400 "$dir/err")"
  fi
}

touch "$dir/file"
mkdir "$dir/adir"
echo "not a model" >"$dir/garbage.safetensors"
# A safetensors file whose metadata names a preset no program is built with.
header='{"__metadata__":{"format":"diffuse-latent-diffusion-1","config":"Huge"}}'
{
  printf "\\x$(printf %02x ${#header})\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
  printf '%s' "$header"
} >"$dir/huge.safetensors"
weights="$src/models/diffusion.safetensors"
t2i=("$bin/txt2img" --prompt "a bag" --threads 1)

# Numbers: not finite, or out of range.
expect 2 "--guidance: 'nan' is not a finite number" "${t2i[@]}" --grid "$dir/g.png" --guidance nan
expect 2 "--guidance: 'inf' is not a finite number" "${t2i[@]}" --grid "$dir/g.png" --guidance inf
expect 2 "--guidance: 'x1' is not a number" "${t2i[@]}" --grid "$dir/g.png" --guidance x1
expect 2 "--steps must be at most 1000" "${t2i[@]}" --grid "$dir/g.png" --steps 5000
expect 2 "--steps: '99999999999' is out of range" "${t2i[@]}" --grid "$dir/g.png" --steps 99999999999
expect 2 "--n must be at least 1" "${t2i[@]}" --grid "$dir/g.png" --n 0
expect 2 "--n must be at most 10000" "${t2i[@]}" --grid "$dir/g.png" --n 20000
expect 2 "--seed must not be negative" "${t2i[@]}" --grid "$dir/g.png" --seed -3
expect 2 "--n: '2.5' is not a whole number" "${t2i[@]}" --grid "$dir/g.png" --n 2.5
# Outputs that cannot be written: named before the model loads, nothing created.
expect 2 "--grid: the directory $dir/missing does not exist" "${t2i[@]}" --grid "$dir/missing/g.png"
expect 2 "--grid: $dir/adir is a directory" "${t2i[@]}" --grid "$dir/adir"
expect 2 "--out-dir: $dir/file is not a directory" "${t2i[@]}" --out-dir "$dir/file/sub/out"
[[ -e "$dir/missing" ]] && fail "txt2img created $dir/missing"
if [[ $(id -u) != 0 ]]; then  # root writes anywhere
  mkdir "$dir/locked" && chmod a-w "$dir/locked"
  expect 2 "--grid: cannot create files in $dir/locked" "${t2i[@]}" --grid "$dir/locked/g.png"
fi
# Weights: missing, not a weights file, an unknown preset: one line, exit 1, nothing created.
expect 1 "$dir/none.safetensors" "${t2i[@]}" --out-dir "$dir/o1" --weights "$dir/none.safetensors"
expect 1 "$dir/garbage.safetensors" "${t2i[@]}" --out-dir "$dir/o2" --weights "$dir/garbage.safetensors"
expect 1 "preset 'Huge'" "${t2i[@]}" --out-dir "$dir/o3" --weights "$dir/huge.safetensors"
[[ -e "$dir/o1" || -e "$dir/o2" || -e "$dir/o3" ]] && fail "txt2img created its --out-dir before failing"

# train
tr=("$bin/train" --preset tiny --threads 1)
expect 2 "--lr: 'nan' is not a finite number" "${tr[@]}" --lr nan
expect 2 "--ema-decay: '-inf' is not a finite number" "${tr[@]}" --ema-decay -inf
expect 2 "--vae-steps and --steps must not be negative" "${tr[@]}" --steps -1
expect 2 "--out-dir: $dir/file is not a directory" "${tr[@]}" --out-dir "$dir/file/run"
expect 2 "--resume $dir/none: cannot be read" "${tr[@]}" --out-dir "$dir/t" --resume "$dir/none"
expect 2 "--preset must be default, rgb32, rgb64 or tiny" "$bin/train" --preset huge
[[ -e "$dir/t" ]] && fail "train created its --out-dir before failing"

# evaluate, reconstruct, export_model, prompt_following, train_classifier
expect 2 "--guidance: 'inf' is not a finite number" "$bin/evaluate" --guidance inf
expect 2 "--grid: the directory $dir/missing does not exist" "$bin/evaluate" --grid "$dir/missing/g.png"
expect 2 "--steps must be at least 1" "$bin/evaluate" --steps 0
expect 2 "--out-dir: $dir/file is not a directory" "$bin/reconstruct" --out-dir "$dir/file/r" "$dir/x.png"
expect 1 "$dir/x.png" "$bin/reconstruct" --out-dir "$dir/r" "$dir/x.png"
expect 2 "--out: the directory $dir/missing does not exist" "$bin/export_model" --from "$weights" --out "$dir/missing/w"
expect 2 "--from $dir/none: cannot be read" "$bin/export_model" --from "$dir/none" --out "$dir/w"
expect 1 "preset 'Huge'" "$bin/export_model" --from "$dir/huge.safetensors" --out "$dir/w"
[[ -e "$dir/w" ]] && fail "export_model wrote its output after failing"
expect 2 "--grid: $dir/adir is a directory" "$bin/prompt_following" --data "$dir/adir" --weights "$weights" \
  --grid "$dir/adir"
expect 2 "--guidance: 'nan' is not a finite number" "$bin/prompt_following" --data "$dir/adir" --weights "$weights" \
  --guidance nan
expect 2 "--lr: 'nan' is not a finite number" "$bin/train_classifier" --lr nan
expect 2 "--out: the directory $dir/missing does not exist" "$bin/train_classifier" --out "$dir/missing/c.safetensors"

# txt2img makes exactly --n images (the shipped model, 2 steps).
if [[ -f $weights ]]; then
  "${t2i[@]}" --weights "$weights" --n 3 --steps 2 --out-dir "$dir/three" >"$dir/out" 2>"$dir/err" ||
    fail "txt2img --n 3: $(cat "$dir/err")"
  [[ $(ls "$dir/three" | wc -l) == 3 ]] || fail "txt2img --n 3 wrote $(ls "$dir/three" | wc -l) files"
  grep -q "3 images" "$dir/err" || fail "txt2img --n 3 does not report 3 images: $(tr '\r' '\n' <"$dir/err")"
  # reconstruct --grid: two 28x28 inputs in a row above their reconstructions, scaled 2x: the PNG
  # header's width is 2 * (2 * 28 + 1) = 114 pixels.
  "$bin/reconstruct" --grid "$dir/pairs.png" --scale 2 --threads 1 "$dir/three/0000.png" "$dir/three/0001.png" \
    >"$dir/out" 2>"$dir/err" || fail "reconstruct --grid: $(cat "$dir/err")"
  [[ $(od -An -tu4 --endian=big -j16 -N4 "$dir/pairs.png" 2>/dev/null | tr -d ' ') == 114 ]] ||
    fail "reconstruct --grid --scale 2 wrote a grid $(od -An -tu4 --endian=big -j16 -N4 "$dir/pairs.png") pixels wide, not 114"
fi

# The grid flags of every program that writes grids: a --scale outside [1, 16], both caption flags,
# and a missing font (named with the flag that changes it) refused before any work.
printf 'a bag\na shoe\n' >"$dir/prompts.txt"
for s in 0 -1 100; do
  expect 2 "--scale must be in [1, 16], not $s" "${t2i[@]}" --grid "$dir/g.png" --scale "$s"
done
expect 2 "--scale must be in [1, 16], not 0" "$bin/evaluate" --grid "$dir/g.png" --scale 0
expect 2 "--scale must be in [1, 16], not 17" "$bin/reconstruct" --grid "$dir/g.png" --scale 17 "$dir/x.png"
expect 2 "--scale must be in [1, 16], not -1" "$bin/img2img" --input "$dir/x.png" --prompt x --grid "$dir/g.png" \
  --scale -1
expect 2 "--scale must be in [1, 16], not 0" "$bin/prompt_following" --data "$dir/adir" --weights "$weights" --scale 0
expect 2 "--scale must be in [1, 16], not 0" "$bin/train" --scale 0 --out-dir "$dir/t"
expect 2 "give either --captions or --no-captions" "${t2i[@]}" --grid "$dir/g.png" --captions --no-captions
expect 2 "--font: the font file $dir/none.ttf does not exist" "$bin/txt2img" --prompts "$dir/prompts.txt" \
  --grid "$dir/g.png" --font "$dir/none.ttf"
expect 2 "--font: the font file $dir/none.ttf does not exist" "$bin/reconstruct" --grid "$dir/g.png" \
  --font "$dir/none.ttf" "$dir/x.png"
[[ -e "$dir/g.png" || -e "$dir/t" ]] && fail "a grid program wrote output after a bad grid flag"

# A NaN in training (a learning rate of 1e30 overflows the weights within two steps) stops train with
# one line naming the step and the tensor; the checkpoint on disk is the last good step's, byte for
# byte the one a run that stops there writes.
if [[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
  nan=("$bin/train" --preset tiny --vae-steps 3 --lr 1e30 --warmup 0 --checkpoint-every 1 --sample-every 0
    --sample-steps 2 --threads 1)
  expect 1 "train: diffusion step 2: the loss is nan; first non-finite gradient: text_encoder." \
    "${nan[@]}" --steps 10 --out-dir "$dir/nan"
  grep -qF "the last good checkpoint $dir/nan/checkpoint.safetensors (VAE step 3, diffusion step 1) is intact" \
    "$dir/err" || fail "train's NaN message does not name the intact checkpoint: $(cat "$dir/err")"
  "${nan[@]}" --steps 1 --out-dir "$dir/one" >/dev/null 2>&1 || fail "train --steps 1 failed"
  cmp -s "$dir/nan/checkpoint.safetensors" "$dir/one/checkpoint.safetensors" ||
    fail "the checkpoint left by the NaN is not the last good step's"
fi

((failures == 0)) || exit 1
echo "programs: every bad input named before any work"
