#!/usr/bin/env bash
# Trains the two models shipped in models/ (models/README.md): the fashion-det detector and the
# Fashion-MNIST classifier, both Mobile SpineNet-49XS, with the recipes of models/README.md
# (2 threads, one after the other), then scores them and copies their weights and training logs
# into OUTDIR/models. About 3 h 20 min on an otherwise idle 2-core machine (the detector about
# 2 h 50 min of it). Interrupted (Ctrl-C, a reboot), it continues each run from its last
# checkpoint when started again with the same OUTDIR.
# Usage: bash scripts/train_models.sh [OUTDIR (runs/models)] [all|detector|classifier (all)]
#        (after scripts/build.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/models}
which=${2:-all}
case "$which" in
  all|detector|classifier) ;;
  *) echo "train_models.sh: the second argument is all, detector or classifier, not '$which'" >&2; exit 2 ;;
esac
# SPINENET: another spinenet binary (e.g. a copy, so that rebuilding build/ cannot touch a
# long run's program).
sn=${SPINENET:-./build/spinenet}
[ -x "$sn" ] || { echo "train_models.sh: $sn is missing: run bash scripts/build.sh first" >&2; exit 1; }
mkdir -p "$out/models"
fd=$out/fashion-det
if [ ! -f "$fd/annotations/instances_val.json" ]; then
  "$sn" make-dataset fashion-det --out "$fd" --train-images 12000 --seed 1 --threads 2
fi
n=$(find "$fd/train" -name '*.png' | wc -l)
if [ "$n" -ne 12000 ]; then
  echo "train_models.sh: $fd/train holds $n images, not the recipe's 12000 (a set made by an" \
       "older recipe?): remove $fd, or give another OUTDIR" >&2
  exit 1
fi
stamp() { date +%s; }

# Each run continues from its last checkpoint when the script is started again.
resume() { [ -f "$1/last.safetensors" ] && echo --resume || true; }

t0=$(stamp)
if [ "$which" != classifier ]; then
  "$sn" train --task detect --model spinenet-mobile-49xs \
    --data "$fd/train" --ann "$fd/annotations/instances_train.json" \
    --eval-data "$fd/val" --eval-ann "$fd/annotations/instances_val.json" \
    --size 256 --batch 16 --steps 8000 --eval-every 1000 --checkpoint-every 250 --lr 0.08 \
    --warmup-steps 100 --warmup-lr 0.008 --clip 10 --scale-min 0.8 --scale-max 1.25 \
    --threads 2 --seed 1 -o "$out/detector" $(resume "$out/detector")
  echo "detector: trained in $(( $(stamp) - t0 )) s (this start)"
  cp "$out/detector/best.safetensors" "$out/models/fashion-det-detector.safetensors"
  cp "$out/detector/train_log.csv" "$out/models/fashion-det-detector.train_log.csv"
fi
t1=$(stamp)
if [ "$which" != detector ]; then
  "$sn" train --data fashion-mnist --model spinenet-mobile-49xs --act relu --size 64 \
    --batch 64 --epochs 7 --lr 0.2 --warmup-steps 200 --min-crop-area 1 --threads 2 --seed 1 \
    -o "$out/classifier" $(resume "$out/classifier")
  echo "classifier: trained in $(( $(stamp) - t1 )) s (this start)"
  cp "$out/classifier/best.safetensors" "$out/models/fashion-mnist-classifier.safetensors"
  cp "$out/classifier/train_log.csv" "$out/models/fashion-mnist-classifier.train_log.csv"
fi

if [ "$which" != classifier ]; then
  echo "== the detector on the fashion-det val split (300 images)"
  "$sn" eval --task detect --weights "$out/models/fashion-det-detector.safetensors" --size 256 \
    --threads 2 --gt "$fd/annotations/instances_val.json" --images "$fd/val" --per-class \
    --class-agnostic
fi
if [ "$which" != detector ]; then
  echo "== the classifier on Fashion-MNIST's 10 000 test images"
  "$sn" eval --weights "$out/models/fashion-mnist-classifier.safetensors" --data fashion-mnist \
    --size 64 --threads 2
fi
ls -l "$out/models"
