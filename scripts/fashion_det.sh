#!/usr/bin/env bash
# The fashion-det detection recipe of the README, end to end: the built-in dataset, the
# detector's training and the twelve COCO numbers on the val split, with the wall times.
# Usage: bash scripts/fashion_det.sh [OUTDIR (runs/fashion-det)]   (after scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/fashion-det}
sn=./build/spinenet
[ -x "$sn" ] || { echo "fashion_det.sh: $sn is missing: run bash scripts/build.sh first" >&2; exit 1; }
mkdir -p "$out"
stamp() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b - a }'; }

fd=$out/data
if [ ! -f "$fd/annotations/instances_val.json" ]; then
  t=$(stamp)
  "$sn" make-dataset fashion-det --out "$fd" --threads 2
  echo "dataset: $(secs "$t" "$(stamp)") s"
fi

t0=$(stamp)
# The detector, from a seeded initialisation (garden flavour, the variant's swish). A variant with
# the backbone pre-trained on Fashion-MNIST's training items (train --init, tpu flavour, ReLU)
# scored lower (README).
"$sn" train --task detect --model spinenet-mobile-49xs \
  --data "$fd/train" --ann "$fd/annotations/instances_train.json" \
  --eval-data "$fd/val" --eval-ann "$fd/annotations/instances_val.json" \
  --size 256 --batch 16 --steps 2000 --eval-every 500 --lr 0.08 --warmup-steps 100 \
  --warmup-lr 0.008 --clip 10 --scale-min 0.8 --scale-max 1.25 --threads 2 --seed 1 \
  -o "$out/detector"
t1=$(stamp)
echo "detector training $(secs "$t0" "$t1") s"
# The twelve numbers of the final weights on the val split.
"$sn" eval --task detect --weights "$out/detector/last.safetensors" --size 256 --threads 2 \
  --gt "$fd/annotations/instances_val.json" --images "$fd/val" -o "$out/val_dets.json"
