#!/usr/bin/env bash
# The command-line tool end to end: info (table and JSON), init, bench from a weight file, and
# one-line errors with a non-zero exit for bad input.
set -u
sn=${1:?usage: cli_test.sh path/to/spinenet}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAILED: $*" >&2; }

# info --json reproduces the published SpineNet-49 numbers (spec §10).
json=$("$sn" info --model spinenet-49 --head retinanet --size 640 --json) || bad "info --json failed"
echo "$json" | grep -q '"params": 28543383' && ok || bad "info params: ${json:0:200}"
echo "$json" | grep -q '"macs": 85281555200' && ok || bad "info macs: ${json:0:200}"
table=$("$sn" info --model spinenet-mobile-49 --size 384) || bad "info table failed"
echo "$table" | grep -q "^total: 2337579 params" && ok || bad "mobile info total: $(echo "$table" | tail -1)"
echo "$table" | grep -Eq "^ +16 +7 +mbconv +112 +3x3" && ok || bad "mobile info row 16"

# init writes a loadable model; bench runs it.
"$sn" init --model spinenet-mobile-49xs --flavour tpu --classes 5 --seed 7 -o "$tmp/m.safetensors" >/dev/null \
  && ok || bad "init failed"
out=$("$sn" bench --weights "$tmp/m.safetensors" --size 128 --runs 2 --threads 2 --json) && ok || bad "bench failed"
echo "$out" | grep -q '"median_ms"' && ok || bad "bench json: $out"
# --profile: the JSON stays one valid object, with the per-shape table in it.
out=$("$sn" bench --weights "$tmp/m.safetensors" --size 128 --runs 2 --profile --json) && ok || bad "bench --profile failed"
echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); p=d["profile"]; assert d["profile_runs"]==2 and len(p)>10 and all(r["ms"]>=0 for r in p) and any(r["layer"].startswith("conv 3x3") for r in p), d' && ok || bad "bench --profile json: $out"
# The same seed writes the same bytes.
"$sn" init --model spinenet-mobile-49xs --flavour tpu --classes 5 --seed 7 -o "$tmp/m2.safetensors" >/dev/null
cmp -s "$tmp/m.safetensors" "$tmp/m2.safetensors" && ok || bad "init is not reproducible"

# Errors: one line, naming the problem, non-zero exit.
expect_error() {
  local want=$1
  shift
  local err
  err=$("$@" 2>&1 >/dev/null)
  local rc=$?
  if [ $rc -ne 0 ] && echo "$err" | grep -q "^spinenet: error: .*$want" && [ "$(echo "$err" | wc -l)" -eq 1 ]; then
    ok
  else
    bad "'$*' -> rc $rc, '$err' (want '$want')"
  fi
}
expect_error "unknown model 'spinenet-77'" "$sn" info --model spinenet-77
expect_error "unknown option '--sise'" "$sn" info --sise 640
expect_error "divisible by 128" "$sn" bench --model spinenet-49s --size 200 --runs 1
expect_error "unknown flavour" "$sn" info --flavour keras
expect_error "needs an integer" "$sn" info --size big
expect_error "cannot open" "$sn" bench --weights "$tmp/nope.safetensors"
head -c 1000 "$tmp/m.safetensors" > "$tmp/trunc.safetensors"
expect_error "trunc.safetensors" "$sn" bench --weights "$tmp/trunc.safetensors"
printf '2 bottleneck 0 1 no\n9 residual 0 1 no\n' > "$tmp/spec.txt"
expect_error "spec.txt:2: level 9" "$sn" info --block-spec "$tmp/spec.txt"
expect_error "init needs -o" "$sn" init --model spinenet-49
# tpu serves sizes garden cannot.
"$sn" info --model spinenet-49 --flavour tpu --head classifier --size 224 --json | grep -q '"params": 22088745' \
  && ok || bad "tpu classifier at 224"

# classify: top-k lines per image; an unreadable image is reported and the others still run.
"$sn" init --model spinenet-mobile-49xs --flavour tpu --head classifier --classes 4 --size 64 -o "$tmp/c.safetensors" >/dev/null
img=${SN_SHARED_DIR:-$(dirname "$0")/../../shared}/data/coco-tiny/train2017/000000008193.jpg
[ -f "$img" ] || img=/work/shared/data/coco-tiny/train2017/000000008193.jpg
if [ -f "$img" ]; then
  out=$("$sn" classify --weights "$tmp/c.safetensors" --top 2 "$img" "$tmp/nope.png" 2>"$tmp/err")
  rc=$?
  [ $rc -ne 0 ] && echo "$out" | grep -q "000000008193.jpg: class [0-9] 0\.[0-9]*, class" \
    && grep -q "nope.png: cannot open" "$tmp/err" && ok || bad "classify: rc $rc, '$out', '$(cat "$tmp/err")'"
else
  echo "note: coco-tiny not found, classify test skipped"
fi
expect_error "not a classifier" "$sn" classify --weights "$tmp/m.safetensors" x.png
expect_error "unexpected argument 'foo'" "$sn" info foo

# train: a few steps on Fashion-MNIST write last.safetensors; --resume continues to more steps;
# the checkpoint loads for classify.
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  "$sn" train --data fashion-mnist --model spinenet-mobile-49xs --act relu --size 64 --batch 4 \
    --steps 3 --eval-every -1 --threads 2 -o "$tmp/run" > "$tmp/train.out" 2>&1 \
    && grep -q "done after 3 steps" "$tmp/train.out" && [ -f "$tmp/run/last.safetensors" ] \
    && ok || bad "train: $(tail -3 "$tmp/train.out")"
  "$sn" train --data fashion-mnist --model spinenet-mobile-49xs --act relu --size 64 --batch 4 \
    --steps 5 --eval-every -1 --threads 2 -o "$tmp/run" --resume > "$tmp/train2.out" 2>&1 \
    && grep -q "done after 5 steps" "$tmp/train2.out" && grep -q "step 4/5" "$tmp/train2.out" \
    && ! grep -q "step 1/5" "$tmp/train2.out" && ok || bad "resume: $(tail -3 "$tmp/train2.out")"
  if [ -f "${img:-}" ]; then
    "$sn" classify --weights "$tmp/run/last.safetensors" --top 1 "$img" | grep -Eq "(T-shirt/top|Trouser|Pullover|Dress|Coat|Sandal|Shirt|Sneaker|Bag|Ankle boot) [01]\." \
      && ok || bad "classify with the trained checkpoint's class names"
  fi
  expect_error "needs -o OUTDIR" "$sn" train --data fashion-mnist
else
  echo "note: Fashion-MNIST not installed, train test skipped"
fi
expect_error "needs --data" "$sn" train -o "$tmp/x"

# Detection: a tiny fashion-det set; a results file made from the ground truth scores AP 1;
# two training steps with evaluation, resume, eval --task detect writing a results file that
# eval --dets scores the same; detect draws a PNG and lists its detections in JSON.
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  fd=$tmp/fd
  "$sn" make-dataset fashion-det --out "$fd" --train-images 8 --val-images 4 --size 128 \
    --threads 2 > "$tmp/mk.out" 2>&1 && [ -f "$fd/annotations/instances_train.json" ] \
    && [ -f "$fd/val/000004.png" ] && ok || bad "make-dataset: $(tail -2 "$tmp/mk.out")"
  python3 - "$fd/annotations/instances_val.json" "$tmp/perfect.json" <<'PY'
import json, sys
gt = json.load(open(sys.argv[1]))
json.dump([{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
            "score": 0.9} for a in gt["annotations"]], open(sys.argv[2], "w"))
PY
  out=$("$sn" eval --gt "$fd/annotations/instances_val.json" --dets "$tmp/perfect.json" --json)
  echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert sorted(d)==sorted(["AP","AP50","AP75","APs","APm","APl","AR1","AR10","AR100","ARs","ARm","ARl"]) and d["AP"]==1 and d["AP50"]==1 and d["AR100"]==1, d' \
    && ok || bad "eval --dets of the ground truth: $out"
  "$sn" train --task detect --model spinenet-mobile-49xs --data "$fd/train" \
    --ann "$fd/annotations/instances_train.json" --eval-data "$fd/val" \
    --eval-ann "$fd/annotations/instances_val.json" --size 128 --batch 2 --steps 2 \
    --eval-every 2 --threads 2 -o "$tmp/det" > "$tmp/det.out" 2>&1 \
    && grep -q "eval AP" "$tmp/det.out" && [ -f "$tmp/det/best.safetensors" ] \
    && ok || bad "train --task detect: $(tail -3 "$tmp/det.out")"
  "$sn" train --task detect --model spinenet-mobile-49xs --data "$fd/train" \
    --ann "$fd/annotations/instances_train.json" --size 128 --batch 2 --steps 3 \
    --eval-every -1 --threads 2 -o "$tmp/det" --resume > "$tmp/det2.out" 2>&1 \
    && grep -q "done after 3 steps" "$tmp/det2.out" && ! grep -q "step 1/3" "$tmp/det2.out" \
    && ok || bad "train --task detect --resume: $(tail -3 "$tmp/det2.out")"
  "$sn" train --task detect --model spinenet-mobile-49xs --data "$fd/train" \
    --ann "$fd/annotations/instances_train.json" --size 128 --batch 2 --steps 1 \
    --eval-every -1 --threads 2 --anchor-size 2.5 --bn-momentum 0.9 --no-flip --replicas 2 \
    --init "$tmp/det/last.safetensors" -o "$tmp/det_init" > "$tmp/det3.out" 2>&1 \
    && grep -q "initialised \([0-9]*\) of \1 tensors from $tmp/det/last.safetensors" "$tmp/det3.out" \
    && python3 -c 'import json,struct,sys; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; assert json.loads(b[8:8+n])["__metadata__"]["anchor_size"]=="2.5"' "$tmp/det_init/last.safetensors" \
    && ok || bad "train --init --anchor-size: $(tail -3 "$tmp/det3.out")"
  expect_error "--batch 3 cannot be split into 2 replicas" "$sn" train --task detect \
    --data "$fd/train" --ann "$fd/annotations/instances_train.json" --size 128 --batch 3 \
    --replicas 2 -o "$tmp/x"
  expect_error "nothere.safetensors" "$sn" train --task detect --data "$fd/train" \
    --ann "$fd/annotations/instances_train.json" --init "$tmp/nothere.safetensors" -o "$tmp/x"
  a=$("$sn" eval --task detect --weights "$tmp/det/last.safetensors" --gt "$fd/annotations/instances_val.json" \
    --images "$fd/val" --size 128 --batch 2 --threads 2 -o "$tmp/dets.json" --json 2>/dev/null) && [ -f "$tmp/dets.json" ] \
    && ok || bad "eval --task detect: $a"
  b=$("$sn" eval --gt "$fd/annotations/instances_val.json" --dets "$tmp/dets.json" --json)
  [ -n "$a" ] && [ "$a" = "$b" ] && ok || bad "eval of the written results differs: '$a' vs '$b'"
  "$sn" detect --weights "$tmp/det/last.safetensors" --size 128 --score 0 -o "$tmp/shots" \
    "$fd/val/000001.png" > "$tmp/detect.out" 2>&1 && [ -s "$tmp/shots/000001.det.png" ] \
    && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["width"]==128 and isinstance(d["detections"], list)' "$tmp/shots/000001.det.json" \
    && ok || bad "detect: $(tail -3 "$tmp/detect.out")"
  expect_error "not a detector" "$sn" detect --weights "$tmp/c.safetensors" x.png
  expect_error "needs --ann" "$sn" train --task detect --data "$fd/train" -o "$tmp/x"
  echo '{"images": [' > "$tmp/broken.json"
  expect_error "broken.json" "$sn" eval --gt "$tmp/broken.json" --dets "$tmp/perfect.json"
  echo '[{"image_id": 999, "category_id": 1, "bbox": [0,0,1,1], "score": 0.5}]' > "$tmp/stray.json"
  expect_error "stray.json" "$sn" eval --gt "$fd/annotations/instances_val.json" --dets "$tmp/stray.json"
  expect_error "make-dataset needs the dataset's name" "$sn" make-dataset --out "$tmp/y"
else
  echo "note: Fashion-MNIST not installed, detection CLI test skipped"
fi
expect_error "unknown --task" "$sn" train --task segment --data x -o "$tmp/x"
expect_error "--bn-momentum needs a number" "$sn" train --data x -o "$tmp/x" --bn-momentum 0

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
