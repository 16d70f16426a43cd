#!/usr/bin/env bash
# SpineNet inference, batch 1, side by side in one invocation: this project (`spinenet bench`),
# PyTorch CPU (Debian's torch, best of TorchScript variants) and ONNX Runtime (onnxruntime-node)
# on the same architecture, exported from the same PyTorch module; plus a peak-FMA probe.
# Usage: bash bench/infer.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: bash bench/infer.sh [options]
  --model M --size S   one case (default: spinenet-mobile-49 at 384, then spinenet-49 at 640;
                       flavour garden, RetinaNet head, 91 classes, the variant's activation)
  --case mobile|49|all the default cases: Mobile SpineNet-49 @384, SpineNet-49 @640, both (default)
  --threads "1 2"      thread counts (default "1 2")
  --runs N             timed runs per side (default 10, at least 10 for the table's claim)
  --rounds N           run the three sides one after another N times (default 1) and keep each
                       side's best median: on a shared machine a busy spell then cannot fall on
                       one side only
  --warmup N           untimed runs first (default 2)
  --torch-variants L   PyTorch variants tried, best reported (default ofi,ofi_cl,frozen,frozen_cl
                       for Mobile SpineNet, ofi for the others; also eager,eager_cl).
                       frozen = torch.jit.freeze(trace); ofi = torch.jit.optimize_for_inference
                       (freeze + oneDNN convolutions); _cl = channels_last. frozen at 1 thread
                       sends batch-1 1x1 convolutions to BLAS (Debian's reference BLAS here), so
                       it is minutes per run on SpineNet-49 at 640
  --skip-torch --skip-ort   leave a peer out
  --no-build           do not run scripts/build.sh (use build/spinenet as it is)
  --json FILE          also write every measurement as JSON lines to FILE
Environment: GOMP_SPINCOUNT=10000 for every side unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is
set; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed for the PyTorch side only.
EOF
}

model="" size="" case_sel=all threads="1 2" runs=10 warmup=2 tvars="" rounds=1
skip_torch=0 skip_ort=0 build=1 json_out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --case) case_sel=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --torch-variants) tvars=$2; shift 2 ;;
    --skip-torch) skip_torch=1; shift ;;
    --skip-ort) skip_ort=1; shift ;;
    --no-build) build=0; shift ;;
    --json) json_out=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "infer.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

cases=()
if [ -n "$model" ]; then
  if [ -z "$size" ]; then
    case "$model" in spinenet-mobile-*) size=384 ;; *) size=640 ;; esac
  fi
  cases+=("$model:$size")
else
  case "$case_sel" in
    mobile) cases+=("spinenet-mobile-49:384") ;;
    49) cases+=("spinenet-49:640") ;;
    all) cases+=("spinenet-mobile-49:384" "spinenet-49:640") ;;
    *) echo "infer.sh: --case mobile|49|all" >&2; exit 2 ;;
  esac
fi

if [ -z "${OMP_WAIT_POLICY:-}" ] && [ -z "${GOMP_SPINCOUNT:-}" ]; then
  export GOMP_SPINCOUNT=10000
fi

out=build/infer
mkdir -p "$out"
if [ "$build" = 1 ]; then
  bash scripts/build.sh >/dev/null
fi
exe=./build/spinenet
[ -x "$exe" ] || { echo "infer.sh: $exe missing (bash scripts/build.sh)" >&2; exit 1; }

# peak-FMA probe
gcc -O2 -mavx2 -mfma -fopenmp bench/infer_peak.c -o "$out/infer_peak"
py=/usr/bin/python3
if ! $py -c 'import torch' 2>/dev/null; then
  echo "infer.sh: no PyTorch (apt-get install python3-torch python3-numpy); peers skipped" >&2
  skip_torch=1 skip_ort=1
fi
if [ "$skip_ort" = 0 ] && [ ! -d bench/node_modules/onnxruntime-node ]; then
  echo "infer.sh: installing onnxruntime-node into bench/node_modules (bundled CPU library)" >&2
  if ! (cd bench && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-save --no-package-lock \
          --no-audit --no-fund onnxruntime-node >/dev/null); then
    echo "infer.sh: npm install failed; ONNX Runtime skipped" >&2
    skip_ort=1
  fi
fi

res="$out/results.jsonl"
: > "$res"
# shellcheck disable=SC2086
"$out/infer_peak" $threads | while read -r line; do echo "{\"side\": \"peak\", \"r\": $line}"; done >> "$res"
uptime_before=$(uptime)

for c in "${cases[@]}"; do
  m=${c%%:*} s=${c##*:}
  info=$("$exe" info --model "$m" --size "$s" --json)
  echo "{\"side\": \"info\", \"model\": \"$m\", \"size\": $s, \"r\": $info}" >> "$res"
  onnx="$out/$m-$s.onnx"
  # (re-)export when missing or older than the code that defines the network
  if [ "$skip_ort" = 0 ] && { [ ! -s "$onnx" ] || [ ! -s "$onnx.ref.json" ] ||
       [ "$onnx" -ot bench/infer_torch.py ] || [ "$onnx" -ot tests/golden/gen_golden.py ]; }; then
    echo "infer.sh: exporting $m @$s to $onnx" >&2
    if ! $py bench/infer_torch.py export --model "$m" --size "$s" --onnx "$onnx.tmp" \
         --spinenet "$exe" 2> "$out/export.log" >/dev/null; then
      echo "infer.sh: ONNX export failed (see $out/export.log); ORT skipped for $m" >&2
      rm -f "$onnx.tmp" "$onnx.tmp.ref.json"
    else
      mv "$onnx.tmp.ref.json" "$onnx.ref.json"
      mv "$onnx.tmp" "$onnx"
    fi
  fi
  tv=$tvars
  if [ -z "$tv" ]; then
    case "$m" in spinenet-mobile-*) tv=ofi,ofi_cl,frozen,frozen_cl ;; *) tv=ofi ;; esac
  fi
  for t in $threads; do
   for round in $(seq 1 "$rounds"); do
    echo "infer.sh: $m @$s, $t thread(s), round $round/$rounds: ours" >&2
    r=$("$exe" bench --model "$m" --size "$s" --threads "$t" --runs "$runs" --json)
    echo "{\"side\": \"ours\", \"model\": \"$m\", \"size\": $s, \"threads\": $t, \"r\": $r}" >> "$res"
    if [ "$skip_torch" = 0 ]; then
      echo "infer.sh: $m @$s, $t thread(s): PyTorch ($tv)" >&2
      if r=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $py bench/infer_torch.py time \
               --model "$m" --size "$s" --threads "$t" --runs "$runs" --warmup "$warmup" \
               --variants "$tv" --spinenet "$exe" 2> >(grep -v 'Warning\|^ \|^$' >&2)); then
        echo "{\"side\": \"torch\", \"model\": \"$m\", \"size\": $s, \"threads\": $t, \"r\": $r}" >> "$res"
      else
        echo "infer.sh: PyTorch run failed" >&2
      fi
    fi
    if [ "$skip_ort" = 0 ] && [ -s "$onnx" ]; then
      echo "infer.sh: $m @$s, $t thread(s): ONNX Runtime" >&2
      if r=$(node bench/infer_ort.js "$onnx" "$s" "$t" "$runs" "$warmup"); then
        echo "{\"side\": \"ort\", \"model\": \"$m\", \"size\": $s, \"threads\": $t, \"r\": $r}" >> "$res"
      else
        echo "infer.sh: ONNX Runtime run failed" >&2
      fi
    fi
   done
  done
done
# the probe again at the end: on a shared machine one probe can catch a busy moment; the table
# uses the higher figure of the two for each thread count
# shellcheck disable=SC2086
"$out/infer_peak" $threads | while read -r line; do echo "{\"side\": \"peak\", \"r\": $line}"; done >> "$res"
uptime_after=$(uptime)
[ -n "$json_out" ] && cp "$res" "$json_out"

$py - "$res" "$uptime_before" "$uptime_after" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
peak = {}
for r in rows:
    if r["side"] == "peak":
        t = r["r"]["threads"]
        peak[t] = max(peak.get(t, 0.0), r["r"]["gflops"])
macs = {(r["model"], r["size"]): r["r"]["macs"] for r in rows if r["side"] == "info"}
params = {(r["model"], r["size"]): r["r"]["params"] for r in rows if r["side"] == "info"}
res = {}
nround = {}
for r in rows:
    if r["side"] in ("ours", "torch", "ort"):
        k = (r["model"], r["size"], r["threads"], r["side"])
        nround[k] = nround.get(k, 0) + 1
        # several rounds: each side's best median
        if k not in res or r["r"]["median_ms"] < res[k]["median_ms"]:
            res[k] = r["r"]
print("peak-FMA probe (bench/infer_peak.c, AVX2 FMA; best of a probe before and after): " +
      ", ".join("%d thread(s) %.1f GFLOP/s" % (t, g) for t, g in sorted(peak.items())))
print("load before: %s\nload after:  %s" % (sys.argv[2].strip(), sys.argv[3].strip()))
if nround and max(nround.values()) > 1:
    print("rounds: %d per side; each side's best median is reported" % max(nround.values()))
hdr = ("| model | size | threads | ours ms | PyTorch ms (variant) | ORT ms | ours/PyTorch | ours/ORT "
       "| GFLOP/s ours / PyTorch / ORT | % of peak ours / PyTorch / ORT | peak RSS MB ours / PyTorch / ORT |")
print()
print(hdr)
print("|" + "---|" * (hdr.count("|") - 1))
def f(x, fmt="%.1f"):
    return "-" if x is None else fmt % x
for (m, s) in macs:
    for t in sorted({k[2] for k in res if k[0] == m and k[1] == s}):
        o, p, q = (res.get((m, s, t, k)) for k in ("ours", "torch", "ort"))
        ms = [x["median_ms"] if x else None for x in (o, p, q)]
        gf = [2.0 * macs[(m, s)] / (x * 1e6) if x else None for x in ms]
        pk = peak.get(t)
        pc = [100.0 * g / pk if (g and pk) else None for g in gf]
        rss = [x.get("peak_rss_mb") if x else None for x in (o, p, q)]
        rat = [ms[0] / x if (ms[0] and x) else None for x in ms[1:]]
        print("| %s | %d | %d | %s | %s%s | %s | %s | %s | %s | %s | %s |" % (
            m, s, t, f(ms[0]), f(ms[1]), " (%s)" % p["best"] if p else "", f(ms[2]),
            f(rat[0], "%.2f"), f(rat[1], "%.2f"), " / ".join(f(g) for g in gf),
            " / ".join(f(x, "%.0f") for x in pc), " / ".join(f(x, "%.0f") for x in rss)))
print()
for (m, s) in macs:
    print("%s @%d: %.3f G multiply-adds, %d params (PyTorch/ONNX model checked equal)" %
          (m, s, macs[(m, s)] / 1e9, params[(m, s)]))
for k, r in sorted(res.items()):
    if k[3] == "torch":
        print("PyTorch %s @%d, %d thread(s), all variants (median ms): %s" % (
            k[0], k[1], k[2], ", ".join("%s %.1f" % kv for kv in r["variants"].items())))
    if k[3] == "ort" and "ort_version" in r:
        ver = r["ort_version"]
        print("ONNX Runtime %s @%d, %d thread(s): outputs %s" % (k[0], k[1], k[2],
                                                               r.get("check", "not checked")))
if any(k[3] == "ort" for k in res):
    print("ONNX Runtime (onnxruntime-node) %s" % ver)
EOF
