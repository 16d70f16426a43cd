#!/usr/bin/env bash
# The main job: install what is missing, build, then show SpineNet: the architecture report of
# SpineNet-49 (matching the published 28.5 M params / 85.4 B multiply-adds), a seeded model
# written as safetensors and loaded back, and a timed forward pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh release
sn=./build/spinenet
out=${OUT_DIR:-out}
mkdir -p "$out"
echo
echo "== SpineNet-49 with the RetinaNet head at 640x640"
$sn info --model spinenet-49 --size 640
echo
echo "== Mobile SpineNet-49 at 384x384"
$sn info --model spinenet-mobile-49 --size 384 --json | head -c 300; echo ' ...'
echo
echo "== a seeded Mobile SpineNet-49 written to $out/mobile49.safetensors and run from it"
$sn init --model spinenet-mobile-49 --seed 1 -o "$out/mobile49.safetensors"
$sn bench --weights "$out/mobile49.safetensors" --size 384 --threads 2 --runs 5
echo
echo "== SpineNet-49 forward pass at 640x640, 2 threads"
$sn bench --model spinenet-49 --size 640 --threads 2 --runs 3
