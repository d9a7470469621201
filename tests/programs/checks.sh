# Sourced by the program tests that run many checks: a temporary directory $dir, removed on exit, and
# fail(), which reports a failed check and counts it in $failures (the script exits non-zero at the end
# when any failed).
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
fail() {
  echo "FAILED: $*"
  failures=$((failures + 1))
}
