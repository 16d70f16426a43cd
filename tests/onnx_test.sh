#!/usr/bin/env bash
# spinenet export --onnx end to end: models with random weights (and random batch-norm
# statistics, tests/onnx_ref.c) exported, checked by the onnx package's checker (Debian's
# python3-onnx, with shape inference) and run in ONNX Runtime (onnxruntime-node) on the input
# spinenet ran; every output must match spinenet's:
#   max |onnx - spinenet| / max |spinenet| <= 1e-4   per output (tests/onnx_check.js).
# Cases: SpineNet-49S RetinaNet (garden, batch 2), Mobile SpineNet-49 RetinaNet (garden:
# hard-swish, hard-sigmoid gates, separable head), Mobile-49XS classifier (tpu: symmetric padding,
# swish and sigmoid gates), SpineNet-49S classifier (tpu at 120x100: non-square, odd sizes, nearest
# resizes such as 4 -> 7) and Mobile-49XS without a head (garden).
# Then the command's errors. Prints "SKIP: <reason>" and exits 77 (ctest's SKIP_RETURN_CODE) only
# when ONNX Runtime cannot be had (node, npm or the registry missing); a missing python3-onnx
# fails (scripts/setup.sh installs it).
# Usage: onnx_test.sh path/to/spinenet path/to/onnx_ref SOURCE_DIR
set -u
sn=${1:?usage: onnx_test.sh path/to/spinenet path/to/onnx_ref SOURCE_DIR}
ref=${2:?usage: onnx_test.sh path/to/spinenet path/to/onnx_ref SOURCE_DIR}
src=${3:?usage: onnx_test.sh path/to/spinenet path/to/onnx_ref SOURCE_DIR}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
t0=$(date +%s)

# ONNX Runtime for node, in bench/node_modules (git-ignored, shared with bench/infer.sh).
command -v node >/dev/null || { echo "SKIP: node is not installed (scripts/setup.sh installs nodejs)"; exit 77; }
modules=$src/bench/node_modules
if [ ! -d "$modules/onnxruntime-node" ]; then
  command -v npm >/dev/null || { echo "SKIP: npm is not installed (scripts/setup.sh installs it)"; exit 77; }
  echo "installing onnxruntime-node into $modules"
  if ! (cd "$src/bench" && ONNXRUNTIME_NODE_INSTALL=skip timeout 300 npm install --no-save \
          --no-package-lock --no-audit --no-fund onnxruntime-node >"$tmp/npm.log" 2>&1); then
    echo "SKIP: npm could not install onnxruntime-node: $(tail -3 "$tmp/npm.log" | tr '\n' ' ')"
    exit 77
  fi
fi
if ! node -e "require(process.argv[1])" "$modules/onnxruntime-node" 2>"$tmp/ort.err"; then
  echo "SKIP: onnxruntime-node does not load: $(head -3 "$tmp/ort.err" | tr '\n' ' ')"
  exit 77
fi
py=/usr/bin/python3
if ! "$py" -c 'import onnx' 2>"$tmp/py.err"; then
  echo "FAILED: $py cannot import onnx (scripts/setup.sh installs python3-onnx): $(tail -1 "$tmp/py.err")"
  exit 1
fi

pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAILED: $*" >&2; }

# case LABEL BATCH HEIGHT WIDTH INIT-FLAGS...
case_() {
  local label=$1 n=$2 h=$3 w=$4
  shift 4
  local d=$tmp/$label
  mkdir -p "$d"
  "$sn" init "$@" --seed 3 -o "$d/init.safetensors" >/dev/null || { bad "$label: init $*"; return; }
  "$ref" "$d/init.safetensors" "$d/w.safetensors" "$n" "$h" "$w" "$d" || { bad "$label: onnx_ref"; return; }
  local line
  line=$("$sn" export --weights "$d/w.safetensors" --onnx "$d/m.onnx" --height "$h" --width "$w" \
         --batch "$n") && ok || { bad "$label: export"; return; }
  echo "$line"
  echo "$line" | grep -Eq "^wrote .*m\.onnx: .* ONNX nodes \(opset [0-9]+\), [0-9]+ outputs, .* M parameters" \
    && ok || bad "$label: export's line: $line"
  "$py" - "$d/m.onnx" "$n" "$h" "$w" <<'EOF' && ok || bad "$label: onnx.checker"
import sys
import onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)  # full_check: shape inference too
dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
assert [i.name for i in m.graph.input] == ["input"], m.graph.input
assert dims == [int(a) for a in (sys.argv[2], 3, sys.argv[3], sys.argv[4])], dims
EOF
  node "$src/tests/onnx_check.js" "$modules" "$d/m.onnx" "$d" "$h" "$w" "$label" && ok \
    || bad "$label: ONNX Runtime's outputs differ from spinenet's"
}

case_ 49s-retinanet-garden 2 128 128 --model spinenet-49s --head retinanet --classes 4 --size 128
case_ mobile-49-retinanet-garden 1 128 128 --model spinenet-mobile-49 --head retinanet --classes 4 --size 128
case_ mobile-49xs-classifier-tpu 1 128 128 --model spinenet-mobile-49xs --flavour tpu --head classifier \
  --classes 10 --size 128
case_ 49s-classifier-tpu 1 120 100 --model spinenet-49s --flavour tpu --head classifier --classes 10 --size 100
case_ mobile-49xs-none-garden 1 128 128 --model spinenet-mobile-49xs --head none --size 128

# The default size is the file's input_size; errors: one line, non-zero exit.
d=$tmp/49s-retinanet-garden
"$sn" export --weights "$d/w.safetensors" --onnx "$tmp/default.onnx" | grep -q "input 1x3x128x128 NCHW" \
  && ok || bad "export without --size does not use the file's input_size (128)"
expect_error() { # WANT-RC WANT-TEXT COMMAND...
  local rc_want=$1 want=$2
  shift 2
  local err rc
  err=$("$@" 2>&1 >/dev/null)
  rc=$?
  if [ $rc -eq "$rc_want" ] && [ "$(echo "$err" | wc -l)" -eq 1 ] && [[ "$err" == "spinenet: error: "*"$want"* ]]; then
    ok
  else
    bad "'$*' -> rc $rc, '$err' (want rc $rc_want and '$want')"
  fi
}
expect_error 2 "export needs --onnx FILE" "$sn" export --weights "$d/w.safetensors"
expect_error 2 "export needs --weights FILE" "$sn" export --onnx "$tmp/x.onnx"
expect_error 1 "$tmp/none.safetensors: cannot open" "$sn" export --weights "$tmp/none.safetensors" --onnx "$tmp/x.onnx"
echo "not safetensors" >"$tmp/bad.safetensors"
expect_error 1 "$tmp/bad.safetensors" "$sn" export --weights "$tmp/bad.safetensors" --onnx "$tmp/x.onnx"
expect_error 2 "$tmp/x.onnx: cannot export: input 100x100: the garden flavour needs" \
  "$sn" export --weights "$d/w.safetensors" --onnx "$tmp/x.onnx" --size 100
expect_error 1 "the folder $tmp/no/such does not exist" "$sn" export --weights "$d/w.safetensors" --onnx "$tmp/no/such/x.onnx"
[ ! -e "$tmp/x.onnx" ] && ok || bad "a failed export left $tmp/x.onnx"
ls "$tmp" | grep -q '\.tmp\.' && bad "a temporary file was left: $(ls "$tmp")" || ok

echo "onnx: $pass passed, $fail failed in $(($(date +%s) - t0)) s"
[ "$fail" -eq 0 ]
