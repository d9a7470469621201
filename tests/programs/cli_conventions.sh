#!/usr/bin/env bash
# Every example program follows the command-line conventions (examples/common/cli.hpp, on CLI11):
# --help exits 0 with its options and their defaults; --version names the library version; an unknown
# flag, a value that is not a whole number and a real number that is not finite each exit 2 with a
# message naming the flag, before any work. Usage: cli_conventions.sh BIN_DIR VERSION
set -u
bin=$1 version=$2 failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
expect() {  # expect PROGRAM STATUS PATTERN ARGS...: exit STATUS and PATTERN in the output
  local p=$1 status=$2 pattern=$3 out rc
  shift 3
  out=$("$bin/$p" "$@" 2>&1 </dev/null)
  rc=$?
  [[ $rc == "$status" ]] || fail "$p $*: exit $rc, expected $status; output: $out"
  grep -qE -- "$pattern" <<<"$out" || fail "$p $*: output lacks /$pattern/: $out"
}
programs=(txt2img evaluate train train_classifier reconstruct prompt_following export_model)
for p in "${programs[@]}" img2img inpaint lora_train; do
  [[ -x $bin/$p ]] || { [[ " ${programs[*]} " == *" $p "* ]] && fail "$p was not built"; continue; }
  expect "$p" 0 "^Options:" --help
  expect "$p" 0 "^diffuse $version\$" --version
  expect "$p" 2 "^$p: .*--no-such-flag" --no-such-flag
  expect "$p" 2 "Run '$p --help'" --no-such-flag
done
expect txt2img 2 "^txt2img: --guidance: 'nan' is not a finite number" --prompt x --grid x.png --guidance nan
expect txt2img 2 "^txt2img: --guidance: 'inf' is not a finite number" --prompt x --grid x.png --guidance inf
expect txt2img 2 "^txt2img: --n: '1.5' is not a whole number" --prompt x --grid x.png --n 1.5
expect txt2img 2 "^txt2img: --seed: '99999999999999999999' is out of range" --seed 99999999999999999999
expect txt2img 0 "--guidance X +.*\(default: 3\)" --help   # defaults as a person writes them
expect train 0 "--lr X +.*\(default: 0.0003\)" --help
expect train_classifier 2 "^train_classifier: --lr: 'abc' is not a number" --lr abc
[[ $failures == 0 ]] && echo "cli conventions: ${#programs[@]} programs checked" || exit 1
