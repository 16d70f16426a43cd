#!/usr/bin/env bash
# The fashion-det detection recipe of the README, end to end: the built-in dataset, a short
# Fashion-MNIST classification pre-training of the backbone, the detector's training, and the
# twelve COCO numbers on the val split, with the wall time of each stage.
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
# 1. Backbone pre-training: Fashion-MNIST's 60,000 training items (the val split of fashion-det
#    is drawn from the t10k items, which this stage never reads: no evaluation, last weights).
"$sn" train --data fashion-mnist --model spinenet-mobile-49xs --flavour tpu --act relu \
  --size 64 --batch 64 --epochs 2 --lr 0.2 --warmup-steps 200 --min-crop-area 1 \
  --eval-every -1 --threads 2 --seed 1 -o "$out/pretrain"
t1=$(stamp)
# 2. The detector: the classifier's backbone, a new RetinaNet head.
"$sn" train --task detect --model spinenet-mobile-49xs --flavour tpu --act relu \
  --init "$out/pretrain/last.safetensors" --bn-momentum 0.9 \
  --data "$fd/train" --ann "$fd/annotations/instances_train.json" \
  --eval-data "$fd/val" --eval-ann "$fd/annotations/instances_val.json" \
  --size 256 --batch 16 --steps 2300 --eval-every 1150 --lr 0.08 --warmup-steps 100 \
  --warmup-lr 0.008 --clip 10 --scale-min 0.8 --scale-max 1.25 --threads 2 --seed 1 \
  -o "$out/detector"
t2=$(stamp)
echo "pre-training $(secs "$t0" "$t1") s, detector $(secs "$t1" "$t2") s, together $(secs "$t0" "$t2") s"
# 3. The twelve numbers of the final weights on the val split.
"$sn" eval --task detect --weights "$out/detector/last.safetensors" --size 256 --threads 2 \
  --gt "$fd/annotations/instances_val.json" --images "$fd/val" -o "$out/val_dets.json"
