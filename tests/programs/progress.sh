#!/usr/bin/env bash
# The programs' progress output, as a log file and a terminal see it: train with stdout to a file
# prints plain lines (no '\r') every --log-every steps; under a pseudo-terminal (script(1)) it draws
# one bar redrawn with '\r', with a time-left field; --progress none prints neither. OUT/train_log.csv
# has one row per logged step, and after a resume from an older checkpoint no step twice; OUT/loss.png
# is drawn when gnuplot is installed, and without it one note line says so. txt2img's sampling
# progress goes to stderr: lines in a file, a bar on a terminal; its stdout stays as it was.
# Usage: progress.sh BIN_DIR SOURCE_DIR (BIN_DIR holds the example programs).
set -uo pipefail
bin=$1 src=$2
source "$(dirname "$0")/checks.sh"  # $dir, fail() and $failures
cr=$'\r'

train=("$bin/train" --preset tiny --vae-steps 12 --log-every 4 --threads 1 --sample-every 0 --checkpoint-every 0)

# Not a terminal: plain lines, one per logged step of each phase.
"${train[@]}" --steps 12 --out-dir "$dir/lines" >"$dir/lines.out" 2>&1 || fail "train to a file: $(tail -3 "$dir/lines.out")"
grep -q "$cr" "$dir/lines.out" && fail "train to a file wrote '\\r'"
[[ $(grep -cE '^(vae |diff) +[0-9]+/12 .* left$' "$dir/lines.out") == 6 ]] ||
  fail "train to a file: expected 6 progress lines (3 per phase): $(cat "$dir/lines.out")"
grep -qE '^diff +12/12  loss [0-9.]+  grad norm [0-9.]+  lr [0-9.e+-]+  [0-9]+ img/s  [0-9:]+ elapsed  [0-9:?]+ left$' \
  "$dir/lines.out" || fail "train's diffusion line lacks a figure: $(grep '^diff' "$dir/lines.out")"

# The CSV log: the header, then a row per logged step, in order.
csv=$dir/lines/train_log.csv
[[ $(head -1 "$csv") == "phase,step,loss,lr,images_per_second,elapsed_seconds,grad_norm,reconstruction,kl" ]] ||
  fail "train_log.csv header: $(head -1 "$csv")"
[[ $(tail -n +2 "$csv" | cut -d, -f1,2 | tr '\n' ' ') == "vae,4 vae,8 vae,12 diffusion,4 diffusion,8 diffusion,12 " ]] ||
  fail "train_log.csv rows: $(cat "$csv")"
if command -v gnuplot >/dev/null; then
  [[ $(head -c 8 "$dir/lines/loss.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
    fail "no PNG loss.png beside the log"
fi
# Without gnuplot (not on PATH): one note, no PNG, the CSV all the same.
env PATH=/nonexistent "$bin/train" --preset tiny --vae-steps 4 --steps 4 --log-every 4 --threads 1 --sample-every 0 \
  --out-dir "$dir/nognuplot" >"$dir/nognuplot.out" 2>&1 || fail "train without gnuplot: $(tail -3 "$dir/nognuplot.out")"
[[ $(grep -c "gnuplot is not installed" "$dir/nognuplot.out") == 1 ]] ||
  fail "train without gnuplot: expected one note: $(cat "$dir/nognuplot.out")"
[[ -e $dir/nognuplot/loss.png ]] && fail "train without gnuplot wrote loss.png"
[[ $(wc -l <"$dir/nognuplot/train_log.csv") == 3 ]] || fail "train without gnuplot: $(cat "$dir/nognuplot/train_log.csv")"

# A resume from a checkpoint older than the log: the rows past it are dropped and logged again, once.
"${train[@]}" --steps 8 --out-dir "$dir/resume" >/dev/null 2>&1 || fail "train --steps 8"
cp "$dir/resume/checkpoint.safetensors" "$dir/step8.safetensors"
"${train[@]}" --steps 16 --resume "$dir/step8.safetensors" --out-dir "$dir/resume" >/dev/null 2>&1 ||
  fail "train resumed to 16"
"${train[@]}" --steps 12 --resume "$dir/step8.safetensors" --out-dir "$dir/resume" >"$dir/resume.out" 2>&1 ||
  fail "train resumed again from step 8: $(tail -3 "$dir/resume.out")"
rows=$(tail -n +2 "$dir/resume/train_log.csv" | cut -d, -f1,2 | tr '\n' ' ')
[[ $rows == "vae,4 vae,8 vae,12 diffusion,4 diffusion,8 diffusion,12 " ]] ||
  fail "train_log.csv after resuming from step 8 twice: $rows"

# A terminal: the bar, redrawn with '\r', with a time-left field; the phase's last state on its line.
if script -qfec true /dev/null >/dev/null 2>&1; then
  script -qfec "$(printf '%q ' "${train[@]}" --steps 12 --out-dir "$dir/bar")" /dev/null >"$dir/bar.out" 2>&1 ||
    fail "train on a terminal: $(tail -3 "$dir/bar.out")"
  grep -q "$cr" "$dir/bar.out" || fail "train on a terminal wrote no '\\r'"
  grep -qE "${cr}diff \[#+\] 12/12  loss .* left" "$dir/bar.out" ||
    fail "train on a terminal: no full diffusion bar with time left: $(tr '\r' '\n' <"$dir/bar.out" | tail -5)"
  grep -qE '^(vae |diff) +[0-9]+/12 ' "$dir/bar.out" && fail "train on a terminal also printed plain lines"
  # --progress lines on a terminal: lines all the same.
  script -qfec "$(printf '%q ' "${train[@]}" --steps 4 --progress lines --out-dir "$dir/forced")" /dev/null \
    >"$dir/forced.out" 2>&1
  grep -qE "${cr}(vae |diff) \[" "$dir/forced.out" && fail "--progress lines on a terminal drew a bar"
else
  echo "script(1) cannot open a pseudo-terminal here: the terminal checks are skipped"
fi
"${train[@]}" --steps 4 --progress none --out-dir "$dir/none" >"$dir/none.out" 2>&1
grep -qE '^(vae |diff) |\[#' "$dir/none.out" && fail "--progress none printed progress: $(cat "$dir/none.out")"
"$bin/train" --progress sometimes >/dev/null 2>"$dir/err"
[[ $? == 2 ]] && grep -q -- "--progress must be auto, bar, lines or none, not 'sometimes'" "$dir/err" ||
  fail "train --progress sometimes: $(cat "$dir/err")"

# txt2img (the shipped model, 2 steps): sampling progress on stderr, stdout as before.
weights=$src/models/diffusion.safetensors
if [[ -f $weights && -x $bin/txt2img ]]; then
  t2i=("$bin/txt2img" --weights "$weights" --prompt "a photo of a bag" --n 3 --steps 2 --threads 1)
  "${t2i[@]}" --out-dir "$dir/t2i" >"$dir/t2i.out" 2>"$dir/t2i.err" || fail "txt2img: $(cat "$dir/t2i.err")"
  [[ $(cat "$dir/t2i.out") == "wrote 3 images to $dir/t2i" ]] || fail "txt2img's stdout: $(cat "$dir/t2i.out")"
  grep -q "$cr" "$dir/t2i.err" && fail "txt2img to a file wrote '\\r' on stderr"
  grep -qE '^3/3 images, [0-9.]+ s$' "$dir/t2i.err" || fail "txt2img's stderr: $(cat "$dir/t2i.err")"
  if script -qfec true /dev/null >/dev/null 2>&1; then
    script -qfec "$(printf '%q ' "${t2i[@]}" --grid "$dir/t2i.png") 2>&1 >/dev/null" /dev/null >"$dir/t2i.tty" 2>&1
    grep -qE "${cr}sampling \[#+\] 3/3 images  step 2/2  .* left" "$dir/t2i.tty" ||
      fail "txt2img on a terminal drew no sampling bar: $(tr '\r' '\n' <"$dir/t2i.tty")"
  fi
fi

((failures == 0)) && echo "progress output: all checks passed"
exit $((failures > 0))
