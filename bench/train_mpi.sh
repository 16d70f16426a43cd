#!/usr/bin/env bash
# Detection training over MPI against one process, alternated (ABAB, ROUNDS rounds): one process
# with --threads 2 against `mpirun -np 2` with --threads 1 each, the images/s of each run's
# train_log.csv (the run's mean, first step included), and the per-round ratio.
# Usage: bash bench/train_mpi.sh [ROUNDS (5)]   (needs a build with MPI: spinenet version)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
sn=$PWD/build/spinenet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mpi=(mpirun --oversubscribe --bind-to none -x GOMP_SPINCOUNT=10000)
[ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
grep -m1 'model name' /proc/cpuinfo || true
"$sn" make-dataset fashion-det --out "$tmp/fd" --train-images 32 --val-images 2 >/dev/null
for m in spinenet-mobile-49xs spinenet-49s; do
  if [ $m = spinenet-mobile-49xs ]; then steps=6 b=8; else steps=4 b=4; fi
  args=(train --task detect --model $m --data "$tmp/fd/train" --ann "$tmp/fd/annotations/instances_train.json"
        --size 256 --batch $b --steps $steps --eval-every -1 --checkpoint-every 0 --seed 3 --force)
  for r in $(seq 1 "$rounds"); do
    "$sn" "${args[@]}" --threads 2 -o "$tmp/one" >/dev/null 2>&1
    a=$(tail -1 "$tmp/one/train_log.csv" | cut -d, -f8)
    "${mpi[@]}" -np 2 "$sn" "${args[@]}" --threads 1 -o "$tmp/two" >/dev/null 2>&1
    c=$(tail -1 "$tmp/two/train_log.csv" | cut -d, -f8)
    echo "$m batch $b round $r: one process $a img/s, 2 processes $c img/s, ratio $(python3 -c "print(round($c / $a, 3))")"
  done
done
