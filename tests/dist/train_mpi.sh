#!/usr/bin/env bash
# train under mpirun (Tiny preset, Fashion-MNIST), as a user runs it:
#   1. mpirun -np 2 train trains, rank 0 alone logs and writes the weights and checkpoint;
#   2. that checkpoint resumes in one process (another number of ranks) and finishes;
#   3. a rank killed with SIGKILL mid-training makes mpirun stop the other with a message, no hang.
# Usage: train_mpi.sh TRAIN MPIRUN. Exit 77 (skipped) without Fashion-MNIST.
set -uo pipefail
train=$1 mpirun=$2
[[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] || { echo "Fashion-MNIST not found: skipped"; exit 77; }
dir=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
fail() { echo "FAILED: $*"; for f in "$dir"/*.log; do echo "--- $f"; tail -n 20 "$f"; done; exit 1; }
# --progress lines: Open MPI hands its ranks a pseudo-terminal, where train would draw a bar.
common=(--preset tiny --sample-every 0 --sample-steps 2 --log-every 2 --threads 1 --progress lines)

# 1. Two ranks train; rank 0 alone logs (every log line once) and writes the files.
"$mpirun" -np 2 "$train" "${common[@]}" --vae-steps 4 --steps 4 --checkpoint-every 2 --out-dir "$dir/a" \
  >"$dir/two.log" 2>&1 || fail "mpirun -np 2 train exited with $?"
grep -q "on each of 2 ranks (global batch 64)" "$dir/two.log" || fail "no data-parallel line in the log"
[[ $(grep -c "^diff      4/4" "$dir/two.log") == 1 ]] || fail "the last diffusion step was not logged exactly once"
[[ -f "$dir/a/diffusion.safetensors" && -f "$dir/a/checkpoint.safetensors" ]] || fail "no weights or checkpoint"

# 2. One process resumes the two ranks' checkpoint and trains on.
"$train" "${common[@]}" --vae-steps 4 --steps 6 --resume "$dir/a/checkpoint.safetensors" --out-dir "$dir/b" \
  >"$dir/resume.log" 2>&1 || fail "resuming in one process exited with $?"
grep -q "resumed from .*diffusion step 4" "$dir/resume.log" || fail "did not resume at diffusion step 4"
grep -q "^diff      6/6" "$dir/resume.log" || fail "the resumed run did not reach step 6"

# 3. Kill rank 1 while both train: mpirun must end (non-zero) and say why, within a minute.
"$mpirun" -np 2 "$train" "${common[@]}" --vae-steps 1000000 --steps 1 --checkpoint-every 0 --out-dir "$dir/c" \
  >"$dir/kill.log" 2>&1 &
job=$!
pid=""
for _ in $(seq 600); do  # up to 60 s for rank 1 to start training
  pid=$(sed -n 's/^rank 1 of 2: pid \([0-9]*\).*/\1/p' "$dir/kill.log")
  [[ -n $pid ]] && grep -q "^vae " "$dir/kill.log" && break
  sleep 0.1
done
[[ -n $pid ]] || fail "rank 1 did not start"
kill -9 "$pid"
for _ in $(seq 600); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
kill -0 $job 2>/dev/null && fail "mpirun still runs 60 s after rank 1 was killed"
wait $job
code=$?
((code != 0)) || fail "mpirun exited 0 after a rank was killed"
grep -qi "signal 9\|killed" "$dir/kill.log" || fail "mpirun's message does not say a rank was killed"
echo "train under mpirun: trains, resumes in one process, stops when a rank dies (exit $code)"
