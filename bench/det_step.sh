#!/usr/bin/env bash
# One SpineNet RetinaNet training step (forward with batch statistics, focal + Huber loss over
# the project's anchor labelling, backward, SGD momentum), C against PyTorch, on the same
# network, weights, images and targets; the two sides alternate for several rounds and the
# decision number is the median of the per-round ratios. Usage: bash bench/det_step.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: bash bench/det_step.sh [options]      (also: bash bench/train_step.sh --case c|d|det ...)
  --case c|d|all     c: spinenet-mobile-49xs, 256 px, batch 16
                     d: spinenet-49s, 256 px, batch 8;  all (default): both
                     (flavour garden, the variant's activation (swish), 11 class
                     columns: fashion-det's 10 classes and the background)
  --model M --size S --batch N [--act A] [--flavour F]
                     a custom case instead
  --threads T        threads for both sides (default 2)
  --rounds N         C, PyTorch, C, PyTorch, ... N times (default 5); each round's ratio is
                     C images/s / PyTorch images/s, and the median of the ratios is the result
  --steps N          timed steps per round and side (default 10 for c, 6 for d)
  --warmup N         untimed steps first in each run (default 3 for c, 2 for d)
  --wait-policy auto|active|passive|keep
                     OMP_WAIT_POLICY for both sides (see bench/README.md); auto (default) =
                     passive when the 1-minute load is >= 0.5 before we start
  --no-check         skip the first-step check against a float64 PyTorch step
  --profile          after the rounds, one C run with --profile: where the step's time goes
  --json             also print each side's JSON line
EOF
}

case_sel=all model="" act="" size="" batch="" flavour=garden threads=2 steps="" warmup=""
policy=auto check=1 show_json=0 rounds=5 profile=0
while [ $# -gt 0 ]; do
  case "$1" in
    --case) case_sel=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --act) act=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --flavour) flavour=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --wait-policy) policy=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --no-check) check=0; shift ;;
    --profile) profile=1; shift ;;
    --json) show_json=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "det_step.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "det_step.sh: --rounds must be a positive integer" >&2; exit 2; }
# Cases: "model act size batch steps warmup" (act "-": the variant's default)
cases=()
if [ -n "$model" ]; then
  [ -n "$size" ] && [ -n "$batch" ] || { echo "det_step.sh: --model needs --size and --batch" >&2; exit 2; }
  cases+=("$model ${act:--} $size $batch ${steps:-10} ${warmup:-2}")
else
  case "$case_sel" in
    c|d|all|det) ;;
    *) echo "det_step.sh: --case must be c, d or all" >&2; exit 2 ;;
  esac
  [[ "$case_sel" =~ ^(c|all|det)$ ]] && cases+=("spinenet-mobile-49xs ${act:--} 256 16 ${steps:-10} ${warmup:-3}")
  [[ "$case_sel" =~ ^(d|all|det)$ ]] && cases+=("spinenet-49s ${act:--} 256 8 ${steps:-6} ${warmup:-2}")
fi

# Build the C side (incremental; a fresh tree gets the full Release build).
if [ -f build/build.ninja ]; then
  ninja -C build bench_det_step spinenet >/dev/null
else
  bash scripts/build.sh >/dev/null
fi

load=$(cut -d' ' -f1 /proc/loadavg)
case "$policy" in
  auto) if awk -v l="$load" 'BEGIN { exit !(l >= 0.5) }'; then export OMP_WAIT_POLICY=passive; fi ;;
  active|passive) export OMP_WAIT_POLICY=$policy ;;
  keep) ;;
  *) echo "det_step.sh: --wait-policy must be auto, active, passive or keep" >&2; exit 2 ;;
esac

py=${SN_BENCH_PYTHON:-/usr/bin/python3}
have_torch=1
if ! [ -x "$py" ] || ! "$py" -c 'import torch, numpy' 2>/dev/null; then
  have_torch=0
  echo "det_step.sh: PyTorch is not installed for $py; only the C side runs." >&2
  echo "  install it with: apt-get install python3-torch python3-numpy" >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
jnum() { sed -n "s/.*\"$2\": \([-0-9.eE+]*\).*/\1/p" "$1" | head -n 1; }
jget() { python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(eval(sys.argv[2], d))' "$@"; }
median() { python3 -c 'import statistics,sys; print("%.3f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "machine: ${cpu:-unknown CPU}, $(nproc) cores; 1-min load $load at start; OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}"
rows=()
for cs in "${cases[@]}"; do
  read -r m a s b n w <<<"$cs"
  aopt=()
  [ "$a" != "-" ] && aopt=(--act "$a")
  echo "== $m ($flavour${aopt[1]:+, ${aopt[1]}}), RetinaNet 11 class columns, ${s}x${s}, batch $b, $threads threads: $rounds round(s) of $w warmup + $n timed steps per side"
  c_ips=() t_ips=() ratios=()
  for ((r = 1; r <= rounds; r++)); do
    cargs=(--model "$m" "${aopt[@]}" --flavour "$flavour" --size "$s" --batch "$b"
           --threads "$threads" --steps "$n" --warmup "$w" --classes 11 --json)
    # The weights and the labelled batch are the same every round (fixed seed): written once.
    [ "$r" = 1 ] && cargs+=(--save-weights "$tmp/weights.safetensors" --dump "$tmp/batch.safetensors")
    ./build/bench_det_step "${cargs[@]}" >"$tmp/c.json"
    [ "$r" = 1 ] && cp "$tmp/c.json" "$tmp/c1.json"
    [ "$show_json" = 1 ] && cat "$tmp/c.json"
    c_raw=$(jnum "$tmp/c.json" images_per_s)
    c_ips+=("$c_raw")
    line="   round $r: C $(printf '%.1f' "$(jnum "$tmp/c.json" median_ms)") ms/step ($(printf '%.3g' "$c_raw") images/s)"
    if [ "$have_torch" = 1 ]; then
      targs=(--threads "$threads" --steps "$n" --warmup "$w" --spinenet build/spinenet --json
             --c-weights "$tmp/weights.safetensors" --c-dump "$tmp/batch.safetensors")
      # The function check (a float64 step) once per case, on the first round.
      [ "$check" = 1 ] && [ "$r" = 1 ] && targs+=(--c-json "$tmp/c1.json")
      # This machine's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE halve PyTorch's speed: not for it.
      env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" bench/det_step_torch.py "${targs[@]}" \
        >"$tmp/t.json" 2>"$tmp/t.err" || { cat "$tmp/t.err" >&2; exit 1; }
      [ "$show_json" = 1 ] && cat "$tmp/t.json"
      t_raw=$(jget "$tmp/t.json" 'images_per_s')
      t_ips+=("$t_raw")
      ratio=$(awk -v c="$c_raw" -v t="$t_raw" 'BEGIN { printf "%.3f", c / t }')
      ratios+=("$ratio")
      line+=", PyTorch $(jget "$tmp/t.json" '", ".join("%s %.1f ms" % (k, v["median_ms"]) for k, v in formats.items())') (best $(printf '%.3g' "$t_raw") images/s, $(jget "$tmp/t.json" best_format)): C/PyTorch $ratio"
      echo "$line"
      if [ "$check" = 1 ] && [ "$r" = 1 ]; then jget "$tmp/t.json" '"\n".join("     check: " + x for x in checks)'; fi
    else
      echo "$line"
    fi
  done
  c_med=$(median "${c_ips[@]}")
  t_med="-" r_med="-"
  if [ "$have_torch" = 1 ]; then
    t_med=$(median "${t_ips[@]}")
    r_med=$(median "${ratios[@]}")
    echo "   per-round C/PyTorch: ${ratios[*]} -> median $r_med"
  fi
  rows+=("| $m | $flavour | $(jget "$tmp/c1.json" activation) | $s | $b | $threads | $n x $rounds | $c_med | $t_med | ${ratios[*]:--} | **$r_med** |")
  if [ "$profile" = 1 ]; then
    ./build/bench_det_step --model "$m" "${aopt[@]}" --flavour "$flavour" --size "$s" --batch "$b" \
      --threads "$threads" --steps "$n" --warmup "$w" --classes 11 --profile | sed 's/^/   /'
  fi
done

echo
echo "| model | flavour | act | size | batch | threads | steps x rounds | C images/s (median) | PyTorch images/s (median, best format) | C / PyTorch per round | median ratio |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
