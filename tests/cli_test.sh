#!/usr/bin/env bash
# The command-line tool end to end: info (table and JSON), init, bench from a weight file, and
# one-line errors with a non-zero exit for bad input; each command's --help against the flags it
# takes (listed here, independently of the tool); plot; train_log.csv.
set -u
sn=${1:?usage: cli_test.sh path/to/spinenet}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAILED: $*" >&2; }

# info --json reproduces the published SpineNet-49 numbers (the paper's 28.5 M, 85.4 G).
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
# -o through a symbolic link saves the file it names and keeps the link; a FIFO is written into,
# not replaced by a regular file (nor would /dev/null be).
ln -s m3.safetensors "$tmp/m3.link"
"$sn" init --model spinenet-mobile-49xs --flavour tpu --classes 5 --seed 7 -o "$tmp/m3.link" >/dev/null \
  && [ -L "$tmp/m3.link" ] && [ -f "$tmp/m3.safetensors" ] && [ ! -L "$tmp/m3.safetensors" ] \
  && cmp -s "$tmp/m.safetensors" "$tmp/m3.safetensors" && ok || bad "init -o through a symbolic link"
mkfifo "$tmp/fifo"
timeout 30 cat "$tmp/fifo" > "$tmp/fifo.out" & # the timeout ends a reader nobody writes to
"$sn" init --model spinenet-mobile-49xs --flavour tpu --classes 5 --seed 7 -o "$tmp/fifo" >/dev/null \
  || bad "init -o FIFO failed"
wait $!
[ -p "$tmp/fifo" ] && cmp -s "$tmp/m.safetensors" "$tmp/fifo.out" && ok || bad "init -o FIFO: replaced or not written"

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
img=${SN_SHARED_DIR:-$(dirname "$0")}/data/coco-tiny/train2017/000000008193.jpg
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

# Help: the overview (exit 0, stdout) names every command; each command's --help lists exactly
# the flags below (one per flag line, in the name column) with their defaults, and every one of
# them parses for that command (no "does not take", no "unknown option").
declare -A flags=(
  [info]="--weights --model --flavour --head --act --classes --endpoints-filters --min-level
    --max-level --p2 --block-spec --size --height --width --json --help -h"
  [init]="-o --out --output --model --flavour --head --act --classes --endpoints-filters
    --min-level --max-level --p2 --block-spec --anchor-size --bn-momentum --size --seed --help -h"
  [bench]="--weights --model --flavour --head --act --classes --endpoints-filters --min-level
    --max-level --p2 --block-spec --size --height --width --batch --runs --warmup --no-fold
    --profile --threads --seed --json --help -h"
  [train]="--task --data --ann --eval-data --eval-ann --init -o --out --output --model --flavour
    --head --act --classes --endpoints-filters --min-level --max-level --p2 --block-spec
    --anchor-size --bn-momentum --size --batch --epochs --steps --lr --schedule --warmup-steps
    --warmup-lr --momentum --weight-decay --clip --label-smoothing --drop-rate --min-crop-area
    --scale-min --scale-max --no-flip --replicas --checkpoint-every --eval-every --resume --force
    --skip-bad --strict --sync-bn --no-sync-bn --threads --seed --help -h"
  [eval]="--task --data --gt --dets --images --weights -o --out --output --size --skip-bad --strict --batch
    --threads --per-class --class-agnostic --json --help -h"
  [classify]="--weights --size --top --threads --help -h"
  [detect]="--weights -o --out --output --results --ann --size --nms-iou --max-detections --classes
    --agnostic-nms --score --no-draw --threads --help -h"
  [export]="--onnx --weights --size --height --width --batch --help -h"
  [make-dataset]="-o --out --output --size --train-images --val-images --min-objects --max-objects
    --data --split --first --count --threads --seed --help -h"
  [plot]="-o --out --output --title --width --height --x --labels --help -h"
  [inspect-checkpoint]="--filter --verify --json --help -h"
  [convert]="--from -o --out --output --check --model --flavour --head --act --classes
    --endpoints-filters --min-level --max-level --p2 --block-spec --num-classes --bn-eps --size
    --ema --ignore --help -h"
)
overview=$("$sn" --help) && ok || bad "spinenet --help: exit $?"
[ "$("$sn" help)" = "$overview" ] && ok || bad "spinenet help differs from spinenet --help"
for cmd in info init bench train eval classify detect export make-dataset plot inspect-checkpoint convert; do
  echo "$overview" | grep -Eq "^  $cmd " && ok || bad "spinenet --help does not list $cmd"
  help=$("$sn" "$cmd" --help 2>"$tmp/help.err")
  rc=$?
  [ $rc -eq 0 ] && [ ! -s "$tmp/help.err" ] && echo "$help" | grep -q "^usage: spinenet $cmd" \
    && echo "$help" | grep -q "(default: " && ok || bad "$cmd --help: rc $rc, $(head -c 300 "$tmp/help.err")"
  [ "$("$sn" help "$cmd")" = "$help" ] && ok || bad "spinenet help $cmd differs from $cmd --help"
  # The name column of the flag lines: "  -o, --out, --output FILE   text" -> -o --out --output
  listed=$(echo "$help" | awk '/^  -/ { s = substr($0, 3); i = index(s, "  "); if (i) s = substr(s, 1, i - 1); print s }' \
    | tr ',' ' ' | tr ' ' '\n' | grep '^-' | sort -u)
  want=$(echo ${flags[$cmd]} | tr ' ' '\n' | sort -u)
  [ "$listed" = "$want" ] && ok || bad "$cmd --help lists [$(echo $listed)], want [$(echo $want)]"
  # Each listed flag with a default or "(required)" on its lines: every flag line but --help's.
  n_flag_lines=$(echo "$help" | awk '/^flags:/ { f = 1; next } /^$/ { f = 0 } f' | awk '
    /^  -/ { if (n && !d) missing++; n = 1; d = ($0 ~ /^  -h, --help/); }
    /\(default:|\(required/ { d = 1 }
    END { if (n && !d) missing++; print missing + 0 }')
  [ "$n_flag_lines" -eq 0 ] && ok || bad "$cmd --help: $n_flag_lines flags without a default"
  for f in ${flags[$cmd]}; do
    [ "$f" = --help ] || [ "$f" = -h ] && continue
    err=$("$sn" "$cmd" "$f" 2 --zzz-no-such-flag 2>&1 >/dev/null)
    case "$err" in
      *"does not take"*|*"unknown option '$f'"*) bad "$cmd does not accept its flag $f: $err" ;;
      *) ok ;;
    esac
  done
done

# Flags another command takes, and unknown flags: one line, exit 2, the fix.
expect_usage() {
  local want=$1
  shift
  local err
  err=$("$@" 2>&1 >/dev/null)
  local rc=$?
  if [ $rc -eq 2 ] && [ "$err" = "spinenet: error: $want" ]; then
    ok
  else
    bad "'$*' -> rc $rc, '$err' (want rc 2, 'spinenet: error: $want')"
  fi
}
expect_usage "info does not take --lr (see spinenet info --help)" "$sn" info --lr 0.1
expect_usage "init does not take --weights (see spinenet init --help)" "$sn" init --weights "$tmp/m.safetensors" -o "$tmp/x.safetensors"
expect_usage "classify does not take --score (see spinenet classify --help)" "$sn" classify --score 0.5 x.png
expect_usage "plot does not take --size (see spinenet plot --help)" "$sn" plot --size 3 log.csv
expect_usage "unknown option '--batchsize' for train; did you mean --batch? (see spinenet train --help)" \
  "$sn" train --batchsize 3
expect_usage "unknown option '--sise' for info; did you mean --size? (see spinenet info --help)" "$sn" info --sise 640
expect_usage "unknown option '--scor' for detect; did you mean --score? (see spinenet detect --help)" \
  "$sn" detect --scor 0.5 x.png
expect_usage "unknown option '--train-image' for make-dataset; did you mean --train-images? (see spinenet make-dataset --help)" \
  "$sn" make-dataset fashion-det --train-image 5
expect_usage "unknown option '--qqq' for eval (see spinenet eval --help)" "$sn" eval --qqq
expect_usage "--width needs an integer in 200..8192, got '10'" "$sn" plot x.csv -o x.png --width 10
# Every bad command line exits 2 (docs/guide.md): an unknown command, a missing required flag or
# argument, an unexpected argument, an unknown name, values that conflict.
expect_status() {
  local want_rc=$1 want=$2
  shift 2
  local err
  err=$("$@" 2>&1 >/dev/null)
  local rc=$?
  if [ $rc -eq "$want_rc" ] && echo "$err" | grep -q "^spinenet: error: .*$want" && [ "$(echo "$err" | wc -l)" -eq 1 ]; then
    ok
  else
    bad "'$*' -> rc $rc, '$err' (want rc $want_rc, '$want')"
  fi
}
expect_status 2 "unknown command 'trian'; did you mean train?" "$sn" trian
expect_status 2 "init needs -o FILE" "$sn" init --model spinenet-49
expect_status 2 "plot needs -o PNG" "$sn" plot x.csv
expect_status 2 "plot needs the training log" "$sn" plot -o x.png
expect_status 2 "classify needs --weights FILE" "$sn" classify x.png
expect_status 2 "detect needs at least one image file" "$sn" detect --weights x.safetensors
expect_status 2 "give either --dets or --weights, not both" "$sn" eval --gt g.json --dets d.json --weights w.safetensors
expect_status 2 "make-dataset needs --out DIR" "$sn" make-dataset fashion-det
expect_status 2 "train needs -o OUTDIR" "$sn" train --data fashion-mnist
expect_status 2 "--sync-bn and --no-sync-bn contradict each other" "$sn" train --data fashion-mnist \
  -o "$tmp/sbn" --sync-bn --no-sync-bn
expect_status 2 "unexpected argument 'foo'" "$sn" info foo
expect_status 2 "unknown model 'spinenet-77'" "$sn" info --model spinenet-77
expect_status 2 "unknown model 'spinenet-77'" "$sn" init --model spinenet-77 -o "$tmp/x.safetensors"
expect_status 2 "unknown flavour" "$sn" info --flavour keras
expect_status 2 "unknown --task 'segment'" "$sn" eval --task segment
expect_status 2 "levels 6..3 out of range" "$sn" info --min-level 6 --max-level 3
expect_status 2 "P2 output row exists only in the garden flavour" "$sn" info --flavour tpu --p2
expect_status 2 "divisible by 128" "$sn" bench --model spinenet-49s --size 200 --runs 1
if [ -f "$img" ]; then
  expect_status 2 "input 32x32 is too small" "$sn" classify --weights "$tmp/c.safetensors" --size 32 "$img"
fi
expect_status 2 "--scale-max must be at least --scale-min" "$sn" train --task detect --data x --ann y \
  -o "$tmp/x" --scale-min 2 --scale-max 1
# Not the command line: a missing input file exits 1.
expect_status 1 "nope.safetensors: cannot open" "$sn" bench --weights "$tmp/nope.safetensors"
# --flag=value is --flag value; a switch takes no value.
[ "$("$sn" info --model=spinenet-mobile-49xs --size=256 --json)" = "$("$sn" info --model spinenet-mobile-49xs --size 256 --json)" ] \
  && ok || bad "info --flag=value differs from --flag value"
expect_usage "--json takes no value, got '--json=1'" "$sn" info --json=1
expect_usage "--size needs an integer in 1..16384, got ''" "$sn" info --size=
expect_usage "unknown option '--sise' for info; did you mean --size? (see spinenet info --help)" "$sn" info --sise=640

# Missing inputs and output folders: one line naming the file and what the flag takes.
for args in info bench "eval --data fashion-mnist" "classify $tmp/m.safetensors" "detect $tmp/m.safetensors"; do
  expect_error "nope.safetensors: cannot open: .*(--weights takes a spinenet safetensors file" \
    "$sn" $args --weights "$tmp/nope.safetensors"
done
expect_error "nospec.txt: cannot open: .*--block-spec takes" "$sn" info --block-spec "$tmp/nospec.txt"
expect_error "the folder $tmp/no/such does not exist" "$sn" init --model spinenet-mobile-49xs -o "$tmp/no/such/m.safetensors"
expect_error "nodir: cannot open: .*--data takes" "$sn" train --data "$tmp/nodir" -o "$tmp/x"
expect_error "nope.json: cannot open: .*--gt takes" "$sn" eval --gt "$tmp/nope.json" --dets "$tmp/nope2.json"
expect_error "nope.png: cannot open: .*classify takes JPEG or PNG" "$sn" classify --weights "$tmp/c.safetensors" "$tmp/nope.png"

# plot: a small log (empty fields: not measured) -> a PNG; a missing log -> one line.
cat > "$tmp/log.csv" <<'CSV'
step,epoch,lr,loss,loss_cls,loss_box,train_top1,images_per_s,eval_top1,eval_top5
1,1,0.01,2.30,,,0.10,50.5,,
2,1,0.02,2.10,,,0.20,51.0,,
3,1,0.03,1.90,,,0.35,52.1,0.40,0.85
4,2,0.04,1.70,,,0.45,51.7,,
CSV
png_sig() { head -c 8 "$1" | od -An -tx1 | tr -d ' \n'; }
out=$("$sn" plot "$tmp/log.csv" -o "$tmp/curves.png" --title "tiny run" --width 640 --height 600) \
  && [ "$out" = "wrote $tmp/curves.png" ] && [ "$(png_sig "$tmp/curves.png")" = 89504e470d0a1a0a ] \
  && ok || bad "plot: '$out', signature $(png_sig "$tmp/curves.png" 2>/dev/null)"
expect_error "nolog.csv: cannot open: .*plot takes a training log" "$sn" plot "$tmp/nolog.csv" -o "$tmp/c.png"
expect_error "plot needs -o PNG" "$sn" plot "$tmp/log.csv"
# Several logs in one figure; --x time needs the train_s column; --labels one per log.
cat > "$tmp/log2.csv" <<'CSV'
step,epoch,lr,loss,loss_cls,loss_box,train_top1,images_per_s,train_s,eval_top1,eval_top5
1,1,0.01,2.20,,,0.10,40.5,1.5,,
2,1,0.02,2.00,,,0.20,41.0,3.1,0.30,0.80
CSV
out=$("$sn" plot "$tmp/log.csv" "$tmp/log2.csv" -o "$tmp/cmp.png" --labels "a,b") \
  && [ "$out" = "wrote $tmp/cmp.png" ] && [ "$(png_sig "$tmp/cmp.png")" = 89504e470d0a1a0a ] \
  && ok || bad "plot of two logs: '$out'"
out=$("$sn" plot "$tmp/log2.csv" "$tmp/log2.csv" --x time -o "$tmp/cmp-t.png") && ok \
  || bad "plot --x time: '$out'"
expect_error "log.csv: no 'train_s' column .*--x step" "$sn" plot "$tmp/log2.csv" "$tmp/log.csv" --x time -o "$tmp/c.png"
expect_usage "--labels names 1 run, but 2 logs are given" "$sn" plot "$tmp/log.csv" "$tmp/log2.csv" --labels a -o "$tmp/c.png"
expect_usage "--x takes step or time, got 'epoch'" "$sn" plot "$tmp/log.csv" --x epoch -o "$tmp/c.png"
# The default title is the run's name (the folder holding the log), not the log's file name;
# a name of another picture format is refused (exit 2, nothing written): plot writes PNG only.
mkdir -p "$tmp/run-b7" && cp "$tmp/log.csv" "$tmp/run-b7/train_log.csv"
"$sn" plot "$tmp/run-b7/train_log.csv" -o "$tmp/t-default.png" >/dev/null \
  && "$sn" plot "$tmp/run-b7/train_log.csv" -o "$tmp/t-named.png" --title run-b7 >/dev/null \
  && "$sn" plot "$tmp/run-b7/train_log.csv" -o "$tmp/t-file.png" --title train_log.csv >/dev/null \
  && cmp -s "$tmp/t-default.png" "$tmp/t-named.png" && ! cmp -s "$tmp/t-default.png" "$tmp/t-file.png" \
  && ok || bad "plot's default title is not the run folder's name"
expect_status 2 "$tmp/c.jpg: plot writes PNG only; give -o a name ending in .png" "$sn" plot "$tmp/log.csv" -o "$tmp/c.jpg"
[ ! -e "$tmp/c.jpg" ] && ok || bad "plot -o c.jpg wrote a file"

# inspect-checkpoint and convert on real TensorFlow checkpoints (tests/data/tf, see the
# README there): the TF2 Keras one with its data shard, the TF1 SpineNet-49S index alone.
tf=$(dirname "$0")/data/tf
out=$("$sn" inspect-checkpoint "$tf/keras-cnn-tf2/variables" --verify) \
  && echo "$out" | grep -q "^64 tensor(s), 393960 elements; 1 data shard" \
  && echo "$out" | grep -q "^verified: 63 numeric tensor(s) read, every CRC32C matches" \
  && echo "$out" | grep -Eq "^layer_with_weights-7/kernel/.ATTRIBUTES/VARIABLE_VALUE +float32 +\[128,10\]$" \
  && ok || bad "inspect-checkpoint --verify: $(echo "$out" | tail -2)"
"$sn" inspect-checkpoint "$tf/spinenet-49s-tf1-retinanet/model.ckpt.index" --json \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); t={x["name"]: x for x in d["tensors"]}; assert len(t)==1321 and d["num_shards"]==1 and t["retinanet/box_net/box-0/kernel"]["shape"]==[3,3,256,128] and t["global_step"]["dtype"]=="int64", len(t)' \
  && ok || bad "inspect-checkpoint --json on the SpineNet-49S index"
out=$("$sn" inspect-checkpoint "$tf/spinenet-49s-tf1-retinanet" --filter class-predict) \
  && echo "$out" | grep -q "^4 tensor(s) matching" && ok || bad "inspect-checkpoint --filter: $out"
expect_status 1 "model.ckpt.data-00000-of-00001: cannot open the data shard" \
  "$sn" inspect-checkpoint "$tf/spinenet-49s-tf1-retinanet/model.ckpt" --verify
expect_status 1 "nope.index: cannot open" "$sn" inspect-checkpoint "$tmp/nope"
head -c 3000 "$tf/spinenet-49s-tf1-retinanet/model.ckpt.index" > "$tmp/cut.index"
expect_status 1 "cut.index: bad magic" "$sn" inspect-checkpoint "$tmp/cut"
expect_status 2 "inspect-checkpoint needs the checkpoint" "$sn" inspect-checkpoint
# convert --check maps every tensor of the real SpineNet-49S index (names and shapes).
out=$("$sn" convert --from tf "$tf/spinenet-49s-tf1-retinanet/model.ckpt" --model spinenet-49s --check) \
  && echo "$out" | grep -q "^mapped: 830 of 830 model tensors" \
  && echo "$out" | grep -q "^skipped by rule: 490 optimizer slot(s), 1 optimizer/step state" \
  && echo "$out" | grep -q "read off the checkpoint's shapes: endpoints-filters 256" \
  && echo "$out" | grep -q "^model: spinenet-49s, flavour tpu .*head retinanet .*91 classes" \
  && echo "$out" | grep -q "^ok: the checkpoint fits the model" \
  && ok || bad "convert --check on the SpineNet-49S index: $out"
# A wrong width is reported tensor by tensor (exit 1), with nothing written.
out=$("$sn" convert --from tf "$tf/spinenet-49s-tf1-retinanet/model.ckpt" --model spinenet-49s \
  --endpoints-filters 128 -o "$tmp/c49s.safetensors" 2>"$tmp/conv.err")
rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -Eq "^  shape +endpoints.3.weight \[1, 1, 332, 128\] <- spinenet/conv2d_8/kernel \[1, 1, 332, 256\]" \
  && grep -q "problem(s) mapping the checkpoint" "$tmp/conv.err" && [ ! -e "$tmp/c49s.safetensors" ] \
  && ok || bad "convert with the wrong endpoints: rc $rc, $(echo "$out" | tail -3) $(cat "$tmp/conv.err")"
expect_status 2 "convert needs --model" "$sn" convert --from tf "$tf/spinenet-49s-tf1-retinanet" --check
expect_status 2 "convert needs -o OUT.safetensors" "$sn" convert --from tf "$tf/spinenet-49s-tf1-retinanet" --model spinenet-49s
expect_status 2 "--from onnx: the only source format is tf" "$sn" convert --from onnx x --model spinenet-49s --check
expect_status 1 "nope.index: cannot open" "$sn" convert --from tf "$tmp/nope" --model spinenet-49s --check

# train: a few steps on Fashion-MNIST write last.safetensors; --resume continues to more steps;
# the checkpoint loads for classify.
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  "$sn" train --data fashion-mnist --model spinenet-mobile-49xs --act relu --size 64 --batch 4 \
    --steps 3 --eval-every -1 --threads 2 -o "$tmp/run" > "$tmp/train.out" 2>&1 \
    && grep -q "done after 3 steps" "$tmp/train.out" && [ -f "$tmp/run/last.safetensors" ] \
    && ok || bad "train: $(tail -3 "$tmp/train.out")"
  # OUTDIR/train_log.csv: the header and one row per step; spinenet plot draws it.
  [ "$(head -1 "$tmp/run/train_log.csv")" = "step,epoch,lr,loss,loss_cls,loss_box,train_top1,images_per_s,train_s,eval_top1,eval_top5" ] \
    && [ "$(tail -n +2 "$tmp/run/train_log.csv" | cut -d, -f1 | tr '\n' ' ')" = "1 2 3 " ] \
    && ok || bad "train_log.csv: $(cat "$tmp/run/train_log.csv" 2>&1 | head -5)"
  "$sn" plot "$tmp/run/train_log.csv" -o "$tmp/run.png" >/dev/null \
    && [ "$(png_sig "$tmp/run.png")" = 89504e470d0a1a0a ] && ok || bad "plot of train_log.csv"
  # A row cut by a kill mid-write (no newline) is dropped on resume, not glued to the next row.
  cp -r "$tmp/run" "$tmp/run-cut"
  head -3 "$tmp/run/train_log.csv" > "$tmp/run-cut/train_log.csv" && printf '3,1,0.0' >> "$tmp/run-cut/train_log.csv"
  "$sn" train -o "$tmp/run-cut" --resume --steps 5 > "$tmp/train-cut.out" 2>&1 \
    && [ "$(tail -n +2 "$tmp/run-cut/train_log.csv" | cut -d, -f1 | tr '\n' ' ')" = "1 2 4 5 " ] \
    && [ -z "$(awk -F, 'NF != 11' "$tmp/run-cut/train_log.csv")" ] \
    && ok || bad "resume after a cut log row: $(cat "$tmp/run-cut/train_log.csv") $(tail -2 "$tmp/train-cut.out")"
  "$sn" train --data fashion-mnist --model spinenet-mobile-49xs --act relu --size 64 --batch 4 \
    --steps 5 --eval-every -1 --threads 2 -o "$tmp/run" --resume > "$tmp/train2.out" 2>&1 \
    && grep -q "done after 5 steps" "$tmp/train2.out" && grep -q "step 4/5" "$tmp/train2.out" \
    && ! grep -q "step 1/5" "$tmp/train2.out" && ok || bad "resume: $(tail -3 "$tmp/train2.out")"
  [ "$(tail -n +2 "$tmp/run/train_log.csv" | cut -d, -f1 | tr '\n' ' ')" = "1 2 3 4 5 " ] \
    && [ -z "$(awk -F, 'NF != 11' "$tmp/run/train_log.csv")" ] \
    && ok || bad "train_log.csv after --resume: $(cut -d, -f1 "$tmp/run/train_log.csv" | tr '\n' ' ')"
  # train_s: the run's training seconds, growing across the resume (the log carries it on).
  python3 -c '
import csv, sys
t = [float(r["train_s"]) for r in csv.DictReader(open(sys.argv[1]))]
assert len(t) == 5 and t[0] > 0 and all(b > a for a, b in zip(t, t[1:])), t' "$tmp/run/train_log.csv" \
    && ok || bad "train_s after --resume: $(cut -d, -f9 "$tmp/run/train_log.csv" | tr '\n' ' ')"
  # OUTDIR/run.json holds the settings as the run resolved them; --resume needs only -o (and may
  # extend --steps); a flag that contradicts the run is refused, naming it and both values.
  python3 -c '
import json, sys
f = json.load(open(sys.argv[1]))["flags"]
want = {"--task": "classify", "--data": "fashion-mnist", "--model": "spinenet-mobile-49xs",
        "--head": "classifier", "--flavour": "tpu", "--act": "relu", "--size": 64, "--batch": 4,
        "--steps": 5, "--lr": 0.1, "--classes": 10, "--seed": "0", "--no-flip": False}
assert all(f[k] == v for k, v in want.items()), {k: f.get(k) for k in want}
assert "-o" not in f and "--resume" not in f and "--force" not in f' "$tmp/run/run.json" \
    && ok || bad "run.json: $(tr -d '\n' < "$tmp/run/run.json" | head -c 400)"
  "$sn" train -o "$tmp/run" --resume --steps 6 > "$tmp/train3.out" 2>&1 \
    && grep -q "done after 6 steps" "$tmp/train3.out" \
    && [ "$(tail -n +2 "$tmp/run/train_log.csv" | cut -d, -f1 | tr '\n' ' ')" = "1 2 3 4 5 6 " ] \
    && grep -q '"--steps": 6' "$tmp/run/run.json" && ok || bad "train -o --resume alone: $(tail -3 "$tmp/train3.out")"
  # A log written before the train_s column: resuming adds it, empty in the old rows, and in the
  # new ones too (the earlier sessions' time is unknown: no number rather than a wrong one).
  cut -d, -f1-8,10- "$tmp/run/train_log.csv" > "$tmp/oldlog.csv" && cp "$tmp/oldlog.csv" "$tmp/run/train_log.csv"
  "$sn" train -o "$tmp/run" --resume --steps 7 > "$tmp/train4.out" 2>&1 && python3 -c '
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [r["step"] for r in rows] == [str(i) for i in range(1, 8)], rows
assert all(r["train_s"] == "" for r in rows), rows
assert all(r["loss"] for r in rows), rows' "$tmp/run/train_log.csv" \
    && ok || bad "resume of an old-format log: $(head -3 "$tmp/run/train_log.csv") $(tail -2 "$tmp/train4.out")"
  expect_usage "--lr 0.5 contradicts the run in $tmp/run (run.json: --lr 0.1); --resume continues with the run's settings: leave --lr out, or start a new run" \
    "$sn" train -o "$tmp/run" --resume --lr 0.5
  expect_usage "--no-flip contradicts the run in $tmp/run (run.json: --no-flip off); --resume continues with the run's settings: leave --no-flip out, or start a new run" \
    "$sn" train -o "$tmp/run" --resume --no-flip
  expect_usage "--model spinenet-mobile-49 contradicts the run in $tmp/run (run.json: --model spinenet-mobile-49xs); --resume continues with the run's settings: leave --model out, or start a new run" \
    "$sn" train -o "$tmp/run" --resume --model spinenet-mobile-49 --steps 7
  if [ -f "${img:-}" ]; then
    "$sn" classify --weights "$tmp/run/last.safetensors" --top 1 "$img" | grep -Eq "(T-shirt/top|Trouser|Pullover|Dress|Coat|Sandal|Shirt|Sneaker|Bag|Ankle boot) [01]\." \
      && ok || bad "classify with the trained checkpoint's class names"
  fi
  # A run in OUTDIR without --resume is refused (exit 2, naming --resume and --force) and left
  # as it was; --force starts over, and the old run's best.safetensors does not outlive it.
  cp "$tmp/run/last.safetensors" "$tmp/run/best.safetensors"
  sums=$(cat "$tmp/run/last.safetensors" "$tmp/run/train_log.csv" | cksum)
  fm_run=(train --data fashion-mnist --model spinenet-mobile-49xs --act relu --size 64 --batch 4
    --eval-every -1 --threads 2 -o "$tmp/run")
  err=$("$sn" "${fm_run[@]}" --steps 2 2>&1 >/dev/null)
  rc=$?
  [ $rc -eq 2 ] && [ "$err" = "spinenet: error: $tmp/run already holds a run (last.safetensors, best.safetensors, train_log.csv, run.json): continue it with --resume, start it over with --force (removes those files), or give another -o" ] \
    && [ "$(cat "$tmp/run/last.safetensors" "$tmp/run/train_log.csv" | cksum)" = "$sums" ] \
    && ok || bad "train into an earlier run: rc $rc, '$err'"
  expect_usage "--resume continues the run in -o OUTDIR and --force starts it over: give one of them" \
    "$sn" "${fm_run[@]}" --steps 2 --resume --force
  "$sn" "${fm_run[@]}" --steps 2 --force > "$tmp/force.out" 2>&1 \
    && grep -q "removed the earlier run's last.safetensors, best.safetensors, train_log.csv, run.json" "$tmp/force.out" \
    && grep -q "done after 2 steps" "$tmp/force.out" && [ ! -e "$tmp/run/best.safetensors" ] \
    && [ "$(tail -n +2 "$tmp/run/train_log.csv" | cut -d, -f1 | tr '\n' ' ')" = "1 2 " ] \
    && ok || bad "train --force: $(tail -3 "$tmp/force.out")"
  # Stopped by SIGTERM or Ctrl-C (SIGINT): the run writes last.safetensors, says so and exits
  # 128 + the signal, so that `train && eval` stops too. OUTDIR appears once the handlers are in.
  for s in TERM:143 INT:130; do
    sig=${s%%:*} want=${s##*:}
    "$sn" train --data fashion-mnist --model spinenet-mobile-49xs --act relu --size 64 --batch 4 \
      --steps 100000 --eval-every -1 --checkpoint-every 0 --threads 2 -o "$tmp/sig$sig" \
      > "$tmp/sig.out" 2>&1 &
    pid=$!
    for _ in $(seq 600); do [ -d "$tmp/sig$sig" ] && break; sleep 0.05; done
    kill -s "$sig" $pid
    wait $pid
    rc=$?
    [ $rc -eq "$want" ] && [ -f "$tmp/sig$sig/last.safetensors" ] && grep -q "^stopped after" "$tmp/sig.out" \
      && ok || bad "train stopped by SIG$sig: rc $rc (want $want), $(tail -2 "$tmp/sig.out")"
  done
  # make-dataset fashion-mnist: test items 5..7 as PNGs in class folders (labels 1, 4, 6);
  # classify reads them.
  "$sn" make-dataset fashion-mnist --out "$tmp/fmpng" --first 5 --count 3 > "$tmp/fm.out" \
    && [ "$(cd "$tmp/fmpng" && ls */*.png | tr '\n' ' ')" = "Coat/t10k-00006.png Shirt/t10k-00007.png Trouser/t10k-00005.png " ] \
    && "$sn" classify --weights "$tmp/run/last.safetensors" --top 1 "$tmp/fmpng/Coat/t10k-00006.png" >/dev/null \
    && ok || bad "make-dataset fashion-mnist: $(cat "$tmp/fm.out"; ls -R "$tmp/fmpng" 2>&1 | head)"
  # Issue 17: eval --data FOLDER matches the folders (sorted, file-safe names) to the model's
  # classes by name. The shipped classifier has Fashion-MNIST's order; scored by position, the
  # sorted folders gave 35 %. A subset of the classes is scored on those; an unknown one is an
  # error naming it.
  cls=$(dirname "$0")/../models/fashion-mnist-classifier.safetensors
  "$sn" make-dataset fashion-mnist --out "$tmp/fm200" --count 200 > /dev/null
  top1() { python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["count"]==int(sys.argv[1]) and d["top1"]>=0.85, d; print(d["top1"])' "$@"; }
  out=$("$sn" eval --weights "$cls" --data "$tmp/fm200" --threads 2 --json 2>&1)
  echo "$out" | top1 200 > /dev/null && ok || bad "eval of make-dataset's folder by class name: ${out:0:300}"
  rm -r "$tmp/fm200/Bag" "$tmp/fm200/Trouser"
  n=$(ls "$tmp"/fm200/*/*.png | wc -l)
  out=$("$sn" eval --weights "$cls" --data "$tmp/fm200" --threads 2 --json 2>&1)
  echo "$out" | top1 "$n" > /dev/null && ok || bad "eval of a subset of the classes: ${out:0:300}"
  # train --init from the classifier: the folder's classes take its order, so its head keeps
  # its meaning (learning rate 0 and BN momentum near 1: the weights stay as they are).
  "$sn" train --data "$tmp/fm200" --model spinenet-mobile-49xs --act relu --size 64 --batch 8 \
    --steps 1 --lr 0 --bn-momentum 0.9999 --eval-every -1 --threads 2 --init "$cls" \
    -o "$tmp/fminit" > "$tmp/fminit.out" 2>&1 \
    && out=$("$sn" eval --weights "$tmp/fminit/last.safetensors" --data "$tmp/fm200" --threads 2 --json) \
    && echo "$out" | top1 "$n" > /dev/null && ok || bad "train --init from a folder: $(tail -2 "$tmp/fminit.out") ${out:0:300}"
  mkdir "$tmp/fm200/Socks" && cp "$tmp/fm200/Coat/"*.png "$tmp/fm200/Socks/"
  expect_error "fm200: class 'Socks' is not one of the 10 classes of .*fashion-mnist-classifier" \
    "$sn" eval --weights "$cls" --data "$tmp/fm200" --threads 2
  # ... while train --init with new classes starts them from the file's backbone.
  "$sn" train --data "$tmp/fm200" --model spinenet-mobile-49xs --act relu --size 64 --batch 8 \
    --steps 1 --eval-every -1 --threads 2 --init "$cls" -o "$tmp/fminit2" > "$tmp/fminit2.out" 2>&1 \
    && grep -q "class 'Socks' is not one of the 10 classes of .*(head.fc) is not copied" "$tmp/fminit2.out" \
    && ok || bad "train --init with new classes: $(cat "$tmp/fminit2.out" | head -5)"
  # An empty class folder is a class without an image: a warning naming it; --strict refuses it.
  rm -r "$tmp/fm200/Socks" && mkdir "$tmp/fm200/Bag"
  "$sn" eval --weights "$cls" --data "$tmp/fm200" --threads 2 > /dev/null 2> "$tmp/empty.err" \
    && grep -q "^spinenet: warning: .*fm200/Bag: empty class folder" "$tmp/empty.err" \
    && ok || bad "eval with an empty class folder: $(cat "$tmp/empty.err")"
  expect_error "fm200/Bag: empty class folder" "$sn" eval --weights "$cls" --data "$tmp/fm200" --strict
  expect_error "fm200/Bag: empty class folder" "$sn" train --data "$tmp/fm200" --strict -o "$tmp/x"
  # eval reads the headers up front: a broken file is named, or left out with --skip-bad.
  rmdir "$tmp/fm200/Bag" && printf 'not a png' > "$tmp/fm200/Coat/zz.png"
  expect_error "fm200/Coat/zz.png: not a JPEG or PNG" "$sn" eval --weights "$cls" --data "$tmp/fm200"
  "$sn" eval --weights "$cls" --data "$tmp/fm200" --skip-bad --threads 2 > /dev/null 2> "$tmp/skip.err" \
    && grep -q "^spinenet: warning: skipping .*fm200/Coat/zz.png: not a JPEG or PNG" "$tmp/skip.err" \
    && ok || bad "eval --skip-bad: $(cat "$tmp/skip.err")"
  expect_error "fashion-mnist takes --out" "$sn" make-dataset fashion-mnist --out "$tmp/y" --size 64
  expect_error "--split must be test or train" "$sn" make-dataset fashion-mnist --out "$tmp/y" --split val
  expect_error "needs -o OUTDIR" "$sn" train --data fashion-mnist
else
  echo "note: Fashion-MNIST not installed, train test skipped"
fi
expect_error "needs --data" "$sn" train -o "$tmp/x"

# Detection: a tiny fashion-det set; a results file made from the ground truth scores AP 1;
# two training steps with evaluation, resume, eval --task detect writing a results file that
# eval --dets scores the same; detect draws a PNG and lists its detections in JSON. Output
# folders (train's and detect's -o) are created with their parents.
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
  # Every box found but named as the next class: AP 0 per class, 1 with the classes merged;
  # --per-class counts each class's boxes as the file has them.
  python3 - "$fd/annotations/instances_val.json" "$tmp/shifted.json" <<'PY'
import json, sys
gt = json.load(open(sys.argv[1]))
ids = sorted(c["id"] for c in gt["categories"])
nxt = {a: ids[(i + 1) % len(ids)] for i, a in enumerate(ids)}
json.dump([{"image_id": a["image_id"], "category_id": nxt[a["category_id"]], "bbox": a["bbox"],
            "score": 0.9} for a in gt["annotations"]], open(sys.argv[2], "w"))
PY
  out=$("$sn" eval --gt "$fd/annotations/instances_val.json" --dets "$tmp/shifted.json" --json \
    --per-class --class-agnostic)
  echo "$out" | python3 -c '
import collections, json, sys
d = json.load(sys.stdin)
gt = json.load(open(sys.argv[1]))
n = collections.Counter(a["category_id"] for a in gt["annotations"])
assert d["AP"] == 0 and d["class_agnostic"]["AP"] == 1 and d["class_agnostic"]["AR100"] == 1, d
pc = {c["id"]: c for c in d["per_class"]}
assert sorted(pc) == sorted(c["id"] for c in gt["categories"]), pc
for k, c in pc.items():
    assert c["boxes"] == n[k], (k, c, n[k])
    assert c["stats"]["AP"] == (0 if n[k] else -1), c
' "$fd/annotations/instances_val.json" && ok || bad "eval --per-class --class-agnostic: $out"
  out=$("$sn" eval --gt "$fd/annotations/instances_val.json" --dets "$tmp/perfect.json" --per-class)
  echo "$out" | grep -q "^per class" && echo "$out" | grep -Eq "^ +[0-9]+ .* 1\.000 +1\.000" \
    && ok || bad "eval --per-class table: $out"
  expect_usage "--per-class and --class-agnostic are for detection (--task detect --gt ...); a classifier's per-class view is its confusion matrix" "$sn" eval \
    --weights "$tmp/c.safetensors" --data fashion-mnist --per-class
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
    --init "$tmp/det/last.safetensors" -o "$tmp/new/det_init" > "$tmp/det3.out" 2>&1 \
    && grep -q "initialised \([0-9]*\) of \1 tensors from $tmp/det/last.safetensors" "$tmp/det3.out" \
    && python3 -c 'import json,struct,sys; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; assert json.loads(b[8:8+n])["__metadata__"]["anchor_size"]=="2.5"' "$tmp/new/det_init/last.safetensors" \
    && ok || bad "train --init --anchor-size: $(tail -3 "$tmp/det3.out")"
  # Issue 17: every image's header is checked against the annotations before step 1 (not when
  # the loader reaches it): a broken image and one of another size are errors naming the file
  # before training; --skip-bad leaves them out with a warning each.
  cp -r "$fd/train" "$tmp/fdbad"
  head -c 12 "$fd/train/000003.png" > "$tmp/fdbad/000003.png"
  "$sn" train --task detect --model spinenet-mobile-49xs --data "$tmp/fdbad" \
    --ann "$fd/annotations/instances_train.json" --size 128 --batch 2 --steps 1 \
    --eval-every -1 --threads 2 -o "$tmp/detbad" > "$tmp/detbad.out" 2> "$tmp/detbad.err"
  rc=$?
  [ $rc -ne 0 ] && [ "$(wc -l < "$tmp/detbad.err")" -eq 1 ] && [ ! -s "$tmp/detbad.out" ] \
    && grep -q "^spinenet: error: .*fdbad/000003.png: " "$tmp/detbad.err" && ! grep -q "loader" "$tmp/detbad.err" \
    && ok || bad "train --task detect with a broken image: rc $rc, $(cat "$tmp/detbad.err")"
  cp "$fd/val/000001.png" "$tmp/fdbad/000005.png" # a val image: same size, so swap in a smaller one
  python3 -c 'import struct,sys,zlib
w,h=64,32; raw=b"".join(b"\0"+b"\x80"*w*3 for _ in range(h))
c=lambda t,d: struct.pack(">I",len(d))+t+d+struct.pack(">I",zlib.crc32(t+d))
open(sys.argv[1],"wb").write(b"\x89PNG\r\n\x1a\n"+c(b"IHDR",struct.pack(">IIBBBBB",w,h,8,2,0,0,0))+c(b"IDAT",zlib.compress(raw))+c(b"IEND",b""))' "$tmp/fdbad/000005.png"
  expect_error "fdbad/000003.png" "$sn" train --task detect --data "$tmp/fdbad" \
    --ann "$fd/annotations/instances_train.json" --size 128 --steps 1 -o "$tmp/detbad"
  "$sn" train --task detect --model spinenet-mobile-49xs --data "$tmp/fdbad" \
    --ann "$fd/annotations/instances_train.json" --size 128 --batch 2 --steps 2 --skip-bad \
    --eval-every -1 --threads 2 -o "$tmp/detbad" > "$tmp/detbad.out" 2> "$tmp/detbad.err" \
    && grep -q "warning: .*000003.png" "$tmp/detbad.err" \
    && grep -q "warning: .*000005.png: the image is 64x32 but the annotation file says 128x128" "$tmp/detbad.err" \
    && grep -q "2 of 8 images left out (--skip-bad)" "$tmp/detbad.err" && grep -q "done after 2 steps" "$tmp/detbad.out" \
    && ok || bad "train --task detect --skip-bad: $(cat "$tmp/detbad.err" "$tmp/detbad.out" | tail -5)"
  # An image cut short after its header passes the check; decoding it at load time fails, and
  # with --skip-bad it is skipped and counted, not fatal (4 steps of 2: the whole epoch).
  cp "$fd/train/000005.png" "$tmp/fdbad/000005.png"
  head -c 60 "$fd/train/000003.png" > "$tmp/fdbad/000003.png"
  "$sn" train --task detect --model spinenet-mobile-49xs --data "$tmp/fdbad" \
    --ann "$fd/annotations/instances_train.json" --size 128 --batch 2 --steps 4 --skip-bad \
    --eval-every -1 --threads 2 -o "$tmp/detbad2" > "$tmp/detbad.out" 2> "$tmp/detbad.err" \
    && grep -q "warning: step [1-4]: skipping .*000003.png: .*(--skip-bad; 1 image left out at load time so far)" "$tmp/detbad.err" \
    && grep -q "done after 4 steps" "$tmp/detbad.out" \
    && ok || bad "train --skip-bad with an image that fails to decode: $(cat "$tmp/detbad.err" "$tmp/detbad.out" | tail -5)"
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
  "$sn" detect --weights "$tmp/det/last.safetensors" --size 128 --score 0 -o "$tmp/deep/er/shots" \
    "$fd/val/000001.png" > "$tmp/detect.out" 2>&1 && [ -s "$tmp/deep/er/shots/000001.det.png" ] \
    && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["width"]==128 and isinstance(d["detections"], list)' "$tmp/deep/er/shots/000001.det.json" \
    && ok || bad "detect: $(tail -3 "$tmp/detect.out")"
  # --agnostic-nms, with the shipped detector: its overlapping labels of different classes
  # shrink to fewer, and no two kept boxes overlap by more than the threshold.
  shipped=$(dirname "$0")/../models/fashion-det-detector.safetensors
  "$sn" detect --weights "$shipped" --score 0 -o "$tmp/agn0" "$fd/val/000001.png" > /dev/null 2>&1 \
    && "$sn" detect --weights "$shipped" --score 0 --agnostic-nms 0.5 -o "$tmp/agn" \
      "$fd/val/000001.png" > /dev/null 2>&1 \
    && python3 -c '
import json, sys
a = json.load(open(sys.argv[1]))["detections"]; b = json.load(open(sys.argv[2]))["detections"]
def iou(p, q):
    w = min(p[0] + p[2], q[0] + q[2]) - max(p[0], q[0]); h = min(p[1] + p[3], q[1] + q[3]) - max(p[1], q[1])
    i = max(w, 0) * max(h, 0); return i / (p[2] * p[3] + q[2] * q[3] - i)
assert 0 < len(b) < len(a), (len(a), len(b))
assert all(iou(p["bbox"], q["bbox"]) <= 0.5 + 1e-4 for i, p in enumerate(b) for q in b[i + 1:])
' "$tmp/agn0/000001.det.json" "$tmp/agn/000001.det.json" \
    && ok || bad "detect --agnostic-nms"
  # At sizes other than the model's 256 (300: the image on part of a 384 canvas; 512: grid
  # cells its coarsest levels never saw in training) every box has an area inside the image.
  for s in 300 512; do
    "$sn" detect --weights "$shipped" --size $s --score 0 -o "$tmp/size$s" "$fd"/val/00000[1-4].png \
      > "$tmp/size.out" 2>&1 && python3 -c '
import json, sys
for f in sys.argv[1:]:
    d = json.load(open(f)); dets = d["detections"]
    assert dets, f
    for x in dets:
        b = x["bbox"]
        assert b[2] > 0 and b[3] > 0 and b[0] >= 0 and b[1] >= 0, (f, x)
        assert b[0] + b[2] <= d["width"] + 1e-3 and b[1] + b[3] <= d["height"] + 1e-3, (f, x)
' "$tmp/size$s"/00000[1-4].det.json && ok || bad "detect --size $s: empty or outside boxes: $(tail -2 "$tmp/size.out")"
  done
  # Two images with one name in different folders: both results kept (x, x-2), said on the
  # output; a second run says it replaces the files.
  mkdir -p "$tmp/same/a" "$tmp/same/b"
  cp "$fd/val/000001.png" "$tmp/same/a/x.png"
  cp "$fd/val/000002.png" "$tmp/same/b/x.png"
  "$sn" detect --weights "$shipped" -o "$tmp/same/out" "$tmp/same/a/x.png" "$tmp/same/b/x.png" \
    > "$tmp/same.out" 2>&1 \
    && python3 -c '
import json, sys
a = json.load(open(sys.argv[1] + "/x.det.json")); b = json.load(open(sys.argv[1] + "/x-2.det.json"))
assert a["image"].endswith("a/x.png") and b["image"].endswith("b/x.png"), (a["image"], b["image"])
' "$tmp/same/out" && [ -s "$tmp/same/out/x-2.det.png" ] && grep -q "writing .*/x-2.det" "$tmp/same.out" \
    && ! grep -q "replacing" "$tmp/same.out" \
    && "$sn" detect --weights "$shipped" -o "$tmp/same/out" "$tmp/same/a/x.png" 2>&1 \
      | grep -q "x.det.json (replacing the files there)" \
    && ok || bad "detect a/x.png b/x.png: $(cat "$tmp/same.out" | grep -v '^  [A-Z]')"
  # detect as a tool: a folder (recursively, names kept below OUTDIR), --no-draw, one COCO
  # results file with the dataset's ids that eval --dets scores as eval --task detect does.
  mkdir -p "$tmp/tree/sub"
  cp "$fd/val/000001.png" "$fd/val/000002.png" "$tmp/tree/"
  cp "$fd/val/000003.png" "$tmp/tree/sub/"
  echo notes > "$tmp/tree/notes.txt"
  "$sn" detect --weights "$shipped" --no-draw -o "$tmp/treeout" "$tmp/tree" > "$tmp/tree.out" 2>&1 \
    && [ -s "$tmp/treeout/000001.det.json" ] && [ -s "$tmp/treeout/sub/000003.det.json" ] \
    && [ "$(find "$tmp/treeout" -type f | wc -l)" -eq 3 ] && ! find "$tmp/treeout" -name '*.png' | grep -q . \
    && ok || bad "detect FOLDER --no-draw: $(find "$tmp/treeout" -type f) $(tail -2 "$tmp/tree.out")"
  "$sn" detect --weights "$shipped" --no-draw --ann "$fd/annotations/instances_val.json" \
    --results "$tmp/detect_results.json" -o "$tmp/resout" "$fd/val" > "$tmp/res.out" 2>&1 \
    && a=$("$sn" eval --gt "$fd/annotations/instances_val.json" --dets "$tmp/detect_results.json" --json) \
    && b=$("$sn" eval --task detect --weights "$shipped" --gt "$fd/annotations/instances_val.json" \
      --images "$fd/val" --json 2>/dev/null) && [ -n "$a" ] && [ "$a" = "$b" ] \
    && python3 -c '
import json, sys
gt = json.load(open(sys.argv[1])); d = json.load(open(sys.argv[2] + "/000001.det.json"))
names = {c["name"]: c["id"] for c in gt["categories"]}
assert d["detections"] and all(x["category_id"] == names[x["name"]] for x in d["detections"]), d
' "$fd/annotations/instances_val.json" "$tmp/resout" \
    && ok || bad "detect --results: '$a' vs eval --task detect '$b': $(tail -2 "$tmp/res.out")"
  expect_usage "--results needs --ann ANN.json (the COCO instances file of the images, for their ids)" \
    "$sn" detect --weights "$shipped" --results "$tmp/r.json" "$fd/val"
  # --classes (names, any case), --max-detections, --nms-iou.
  "$sn" detect --weights "$shipped" --no-draw --classes "coat,BAG" --max-detections 3 \
    --nms-iou 0.3 -o "$tmp/filt" "$fd/val/000001.png" "$fd/val/000002.png" > /dev/null 2>&1 \
    && python3 -c '
import json, sys
def iou(p, q):
    w = min(p[0] + p[2], q[0] + q[2]) - max(p[0], q[0]); h = min(p[1] + p[3], q[1] + q[3]) - max(p[1], q[1])
    i = max(w, 0) * max(h, 0); return i / (p[2] * p[3] + q[2] * q[3] - i)
n = 0
for f in sys.argv[1:]:
    d = json.load(open(f))["detections"]; n += len(d)
    assert len(d) <= 3 and all(x["name"] in ("Coat", "Bag") for x in d), d
    assert all(iou(p["bbox"], q["bbox"]) <= 0.3 + 1e-4 for i, p in enumerate(d) for q in d[i + 1:] if p["class"] == q["class"]), d
assert n > 0
' "$tmp/filt/000001.det.json" "$tmp/filt/000002.det.json" \
    && ok || bad "detect --classes --max-detections --nms-iou"
  expect_usage "--classes: the model has no class 'Hat' (its classes: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot)" \
    "$sn" detect --weights "$shipped" --classes Hat "$fd/val/000001.png"
  # A JPEG photo's picture is a JPEG.
  if [ -f "$img" ]; then
    "$sn" detect --weights "$shipped" -o "$tmp/jpg" "$img" > /dev/null 2>&1 \
      && [ "$(head -c 2 "$tmp/jpg/000000008193.det.jpg" | od -An -tx1 | tr -d ' ')" = ffd8 ] \
      && [ ! -e "$tmp/jpg/000000008193.det.png" ] \
      && ok || bad "detect on a JPEG: $(ls "$tmp/jpg")"
  fi
  expect_error "not a detector" "$sn" detect --weights "$tmp/c.safetensors" x.png
  # A missing image: one line naming it, the others still run, exit 1.
  "$sn" detect --weights "$tmp/det/last.safetensors" --size 128 -o "$tmp/shots2" "$tmp/nope.png" \
    "$fd/val/000002.png" > "$tmp/detect2.out" 2> "$tmp/detect2.err"
  rc=$?
  [ $rc -eq 1 ] && [ -s "$tmp/shots2/000002.det.png" ] && [ "$(wc -l < "$tmp/detect2.err")" -eq 1 ] \
    && grep -q "nope.png: cannot open: .*detect takes JPEG or PNG" "$tmp/detect2.err" \
    && ok || bad "detect with a missing image: rc $rc, $(cat "$tmp/detect2.err")"
  expect_error "needs --ann" "$sn" train --task detect --data "$fd/train" -o "$tmp/x"
  # --ann implies --task detect (a detector is trained, not a folder classifier); with --task
  # classify it is a usage error.
  "$sn" train --model spinenet-mobile-49xs --data "$fd/train" \
    --ann "$fd/annotations/instances_train.json" --size 128 --batch 2 --steps 1 \
    --eval-every -1 --threads 2 -o "$tmp/det_ann" > "$tmp/det_ann.out" 2>&1 \
    && python3 -c 'import json,struct,sys; b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; assert json.loads(b[8:8+n])["__metadata__"]["head"]=="retinanet"' "$tmp/det_ann/last.safetensors" \
    && ok || bad "train --ann without --task: $(tail -3 "$tmp/det_ann.out")"
  expect_usage "--ann takes the COCO annotations of a detector, which --task classify does not train (leave out --task, or give --task detect)" \
    "$sn" train --task classify --data "$fd/train" --ann "$fd/annotations/instances_train.json" -o "$tmp/x"
  # --eval-ann without --eval-data: a usage error, not an evaluation on the --data images.
  expect_usage "--eval-ann needs --eval-data DIR (the folder of its images)" "$sn" train \
    --task detect --data "$fd/train" --ann "$fd/annotations/instances_train.json" \
    --eval-ann "$fd/annotations/instances_val.json" --size 128 --steps 1 -o "$tmp/noeval"
  [ ! -e "$tmp/noeval" ] && ok || bad "train --eval-ann without --eval-data made $tmp/noeval"
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
