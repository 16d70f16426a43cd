#!/usr/bin/env bash
# The main job: install what is missing, build, then show the shipped SpineNet models at work
# (models/README.md says how they were trained):
#   1. the fashion-det detector on a few images of the built-in detection set: boxes drawn into
#      PNGs and printed, then its COCO AP on the whole val split (300 images);
#   2. the Fashion-MNIST classifier on a few test images written as PNGs;
#   3. the models' training curves (spinenet plot) and SpineNet-49's size against the paper.
# Everything goes to out/demo (OUT_DIR=... to change it). 36 s on 2 idle cores from a fresh clone,
# the build included, once the Debian packages are installed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh release
sn=./build/spinenet
out=${OUT_DIR:-out/demo}
det=models/fashion-det-detector.safetensors
cls=models/fashion-mnist-classifier.safetensors
for f in "$det" "$cls"; do
  [ -f "$f" ] || { echo "demo.sh: $f is missing (see models/README.md)" >&2; exit 1; }
done
mkdir -p "$out"
t0=$(date +%s)

echo
echo "== 1. Detection: the shipped Mobile SpineNet-49XS RetinaNet on fashion-det"
# The val split alone (--train-images 0): each image depends only on (seed, split, index), so
# these are the same 300 images the detector was scored on in models/README.md.
"$sn" make-dataset fashion-det --out "$out/fashion-det" --train-images 0 --val-images 300 \
  --seed 1 --threads 2
# --agnostic-nms 0.7: one label per object in the pictures (the official per-class NMS may
# give one box several labels); the AP below is of the official output.
"$sn" detect --weights "$det" --threads 2 --agnostic-nms 0.7 -o "$out/detections" \
  "$out"/fashion-det/val/00000{1,2,3,4}.png
echo
echo "-- COCO AP of the shipped detector on all 300 val images, per class, and with the classes"
echo "   merged (the gap is what naming the items wrongly costs)"
"$sn" eval --task detect --weights "$det" --threads 2 \
  --gt "$out/fashion-det/annotations/instances_val.json" --images "$out/fashion-det/val" \
  --per-class --class-agnostic -o "$out/val_detections.json"

echo
echo "== 2. Classification: the shipped Mobile SpineNet-49XS classifier on Fashion-MNIST"
# The first 8 of Fashion-MNIST's test images as PNGs; each one's folder is its true class.
"$sn" make-dataset fashion-mnist --out "$out/fashion-mnist" --split test --count 8
"$sn" classify --weights "$cls" --top 3 "$out"/fashion-mnist/*/*.png

echo
echo "== 3. Training curves of the shipped models, and SpineNet-49's size"
"$sn" plot models/fashion-det-detector.train_log.csv -o "$out/detector_curves.png" \
  --title "fashion-det detector (Mobile SpineNet-49XS)"
"$sn" plot models/fashion-mnist-classifier.train_log.csv -o "$out/classifier_curves.png" \
  --title "Fashion-MNIST classifier (Mobile SpineNet-49XS)"
"$sn" info --model spinenet-49 --size 640 | tail -n 1
echo "   (the paper: 28.5 M parameters, 85.4 G multiply-adds)"

echo
echo "Done in $(( $(date +%s) - t0 )) s after the build. The pictures:"
echo "  $out/detections/*.det.png       boxes, class names and scores (also .det.json)"
echo "  $out/detector_curves.png        loss, learning rate and val AP over the training steps"
echo "  $out/classifier_curves.png      the same for the classifier (val top-1)"
