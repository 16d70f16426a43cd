#!/usr/bin/env bash
# Trains the two models shipped in models/ (models/README.md): the fashion-det detector and the
# Fashion-MNIST classifier, both Mobile SpineNet-49XS, with the README's recipes (2 threads, one
# after the other), then scores them and copies their weights and training logs into
# OUTDIR/models. About 70 minutes on an otherwise idle 2-core machine.
# Usage: bash scripts/train_models.sh [OUTDIR (runs/models)]   (after scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/models}
sn=./build/spinenet
[ -x "$sn" ] || { echo "train_models.sh: $sn is missing: run bash scripts/build.sh first" >&2; exit 1; }
mkdir -p "$out/models"
fd=$out/fashion-det
if [ ! -f "$fd/annotations/instances_val.json" ]; then
  "$sn" make-dataset fashion-det --out "$fd" --seed 1 --threads 2
fi
stamp() { date +%s; }

# Each run continues from its last checkpoint when the script is started again.
resume() { [ -f "$1/last.safetensors" ] && echo --resume || true; }

t0=$(stamp)
"$sn" train --task detect --model spinenet-mobile-49xs \
  --data "$fd/train" --ann "$fd/annotations/instances_train.json" \
  --eval-data "$fd/val" --eval-ann "$fd/annotations/instances_val.json" \
  --size 256 --batch 16 --steps 2000 --eval-every 500 --lr 0.08 --warmup-steps 100 \
  --warmup-lr 0.008 --clip 10 --scale-min 0.8 --scale-max 1.25 --threads 2 --seed 1 \
  -o "$out/detector" $(resume "$out/detector")
t1=$(stamp)
echo "detector: trained in $(( t1 - t0 )) s"
"$sn" train --data fashion-mnist --model spinenet-mobile-49xs --act relu --size 64 \
  --batch 64 --epochs 7 --lr 0.2 --warmup-steps 200 --min-crop-area 1 --threads 2 --seed 1 \
  -o "$out/classifier" $(resume "$out/classifier")
echo "classifier: trained in $(( $(stamp) - t1 )) s"

cp "$out/detector/best.safetensors" "$out/models/fashion-det-detector.safetensors"
cp "$out/detector/train_log.csv" "$out/models/fashion-det-detector.train_log.csv"
cp "$out/classifier/best.safetensors" "$out/models/fashion-mnist-classifier.safetensors"
cp "$out/classifier/train_log.csv" "$out/models/fashion-mnist-classifier.train_log.csv"

echo "== the detector on the fashion-det val split (300 images)"
"$sn" eval --task detect --weights "$out/models/fashion-det-detector.safetensors" --size 256 \
  --threads 2 --gt "$fd/annotations/instances_val.json" --images "$fd/val"
echo "== the classifier on Fashion-MNIST's 10 000 test images"
"$sn" eval --weights "$out/models/fashion-mnist-classifier.safetensors" --data fashion-mnist \
  --size 64 --threads 2
ls -l "$out/models"
