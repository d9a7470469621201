#!/usr/bin/env bash
# Runs fuzz targets from their seed corpus for a while each, one after the other:
#   fuzz/run.sh BUILD_DIR SECONDS [TARGET...]     (default: every target)
# New inputs go to BUILD_DIR/fuzz/work/TARGET (the checked-in seeds stay as they are), logs to
# BUILD_DIR/fuzz/work/TARGET.log, and a crashing input to BUILD_DIR/fuzz/work/crash-TARGET-*.
# Exits non-zero if any target finds a crash, leak, timeout or sanitizer report.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$1" seconds="$2"
shift 2
targets=("$@")
((${#targets[@]})) || targets=(fuzz_json fuzz_safetensors fuzz_idx fuzz_png fuzz_jpeg fuzz_metadata fuzz_tokenizer)
work="$build/fuzz/work"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  # -rss_limit_mb: an input that makes a reader allocate far more than a real file of its size is
  # a finding (a decompression bomb the readers failed to refuse early).
  if "$build/fuzz/$t" "$work/$t" "$here/corpus/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="$work/crash-$t-" -print_final_stats=1 >"$work/$t.log" 2>&1; then
    echo "$t: $(grep -E '^#[0-9]+.*DONE' "$work/$t.log" | tail -1)"
  else
    echo "$t: FAILED, see $work/$t.log"
    tail -30 "$work/$t.log"
    failed+=("$t")
  fi
done
((${#failed[@]} == 0)) || { echo "fuzzing found problems in: ${failed[*]}"; exit 1; }
