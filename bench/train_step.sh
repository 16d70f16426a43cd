#!/usr/bin/env bash
# One SpineNet classifier training step (forward + loss + backward + SGD update), C against
# PyTorch, on the same model, batch, input size, thread count, weights and input; prints a table.
# Usage: bash bench/train_step.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: bash bench/train_step.sh [options]
  --case a|b|all     a: spinenet-mobile-49xs relu, 64 px, batch 64 (the Fashion-MNIST recipe)
                     b: spinenet-49s relu, 256 px, batch 8;  all (default): both
  --case c|d|det     the RetinaNet detection step instead (c: spinenet-mobile-49xs, d:
                     spinenet-49s, det: both): hands over to bench/det_step.sh, with the other
                     options (see bash bench/det_step.sh --help)
  --model M --act A --size S --batch N
                     a custom case instead (flavour tpu, 10 classes)
  --threads T        threads for both sides (default 2)
  --steps N          timed steps (default 20 for a, 10 for b, at least 10)
  --warmup N         untimed steps first (default 3 for a, 2 for b)
  --wait-policy auto|active|passive|keep
                     OMP_WAIT_POLICY for both sides. Both use libgomp, whose spinning barriers
                     collapse when another process shares the cores (a step 10-20x slower);
                     auto (default) = passive when the 1-minute load is >= 0.5 before we start,
                     else keep the environment as it is.
  --rounds N         alternate C and PyTorch N times (default 1) and keep each side's best
                     round: on a shared machine the load changes between runs
  --no-check         skip PyTorch's float64 check against the C step (saves its time)
  --json             also print each side's JSON line
EOF
}

# The detection cases are bench/det_step.sh's (its own rounds, ratios and profile).
for ((i = 1; i <= $#; i++)); do
  if [ "${!i}" = "--case" ]; then
    j=$((i + 1))
    case "${!j:-}" in c|d|det) exec bash bench/det_step.sh "$@" ;; esac
  fi
done

case_sel=all model="" act="" size="" batch="" threads=2 steps="" warmup="" policy=auto
check=1 show_json=0 rounds=1
while [ $# -gt 0 ]; do
  case "$1" in
    --case) case_sel=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --act) act=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --wait-policy) policy=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --no-check) check=0; shift ;;
    --json) show_json=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "train_step.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "train_step.sh: --rounds must be a positive integer" >&2; exit 2; }
# Cases: "model act size batch steps warmup"
cases=()
if [ -n "$model" ]; then
  [ -n "$size" ] && [ -n "$batch" ] || { echo "train_step.sh: --model needs --size and --batch" >&2; exit 2; }
  cases+=("$model ${act:-relu} $size $batch ${steps:-10} ${warmup:-2}")
else
  case "$case_sel" in
    a|all) cases+=("spinenet-mobile-49xs relu 64 64 ${steps:-20} ${warmup:-3}") ;;&
    b|all) cases+=("spinenet-49s relu 256 8 ${steps:-10} ${warmup:-2}") ;;
    a) ;;
    *) echo "train_step.sh: --case must be a, b or all" >&2; exit 2 ;;
  esac
fi

# Build the C side (incremental; a fresh tree gets the full Release build).
if [ -f build/build.ninja ]; then
  ninja -C build bench_train_step spinenet >/dev/null
else
  bash scripts/build.sh >/dev/null
fi

load=$(cut -d' ' -f1 /proc/loadavg)
case "$policy" in
  auto) if awk -v l="$load" 'BEGIN { exit !(l >= 0.5) }'; then export OMP_WAIT_POLICY=passive; fi ;;
  active|passive) export OMP_WAIT_POLICY=$policy ;;
  keep) ;;
  *) echo "train_step.sh: --wait-policy must be auto, active, passive or keep" >&2; exit 2 ;;
esac

py=${SN_BENCH_PYTHON:-/usr/bin/python3}
have_torch=1
if ! [ -x "$py" ] || ! "$py" -c 'import torch, numpy' 2>/dev/null; then
  have_torch=0
  echo "train_step.sh: PyTorch is not installed for $py; only the C side runs." >&2
  echo "  install it with: apt-get install python3-torch python3-numpy" >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Readers of the JSON lines: jnum for the C side's flat line (no python needed), jget (python)
# for PyTorch's.
jnum() { sed -n "s/.*\"$2\": \([-0-9.eE+]*\).*/\1/p" "$1" | head -n 1; }
jget() { python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(eval(sys.argv[2], d))' "$@"; }

echo "machine: $(nproc) cores, 1-min load $load before start; OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}"
rows=()
for c in "${cases[@]}"; do
  read -r m a s b n w <<<"$c"
  echo "== $m --act $a, ${s}x${s}, batch $b, $threads threads: $w warmup + $n timed steps, $rounds round(s)"
  c_best=0 t_best=0 fmt=""
  for ((r = 1; r <= rounds; r++)); do
    ./build/bench_train_step --model "$m" --act "$a" --flavour tpu --size "$s" --batch "$b" \
      --threads "$threads" --steps "$n" --warmup "$w" --classes 10 --json \
      --save-weights "$tmp/weights.safetensors" >"$tmp/c.json"
    [ "$show_json" = 1 ] && cat "$tmp/c.json"
    c_raw=$(jnum "$tmp/c.json" images_per_s)
    awk -v x="$c_raw" -v y="$c_best" 'BEGIN { exit !(x > y) }' && c_best=$c_raw
    echo "   $r C:       median $(printf '%.1f' "$(jnum "$tmp/c.json" median_ms)") ms/step -> $(printf '%.3g' "$c_raw") images/s"
    [ "$have_torch" = 1 ] || continue
    targs=(--model "$m" --act "$a" --flavour tpu --size "$s" --batch "$b" --threads "$threads"
           --steps "$n" --warmup "$w" --classes 10 --spinenet build/spinenet --json
           --c-weights "$tmp/weights.safetensors")
    # The function check (a float64 step) once per case.
    [ "$check" = 1 ] && [ "$r" = 1 ] && targs+=(--c-json "$tmp/c.json")
    # This machine's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE halve PyTorch's speed: not for it.
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" bench/train_step_torch.py "${targs[@]}" \
      >"$tmp/t.json" 2>"$tmp/t.err" || { cat "$tmp/t.err" >&2; exit 1; }
    [ "$show_json" = 1 ] && cat "$tmp/t.json"
    t_raw=$(jget "$tmp/t.json" 'images_per_s')
    if awk -v x="$t_raw" -v y="$t_best" 'BEGIN { exit !(x > y) }'; then
      t_best=$t_raw
      fmt=$(jget "$tmp/t.json" 'best_format')
    fi
    echo "   $r PyTorch: $(jget "$tmp/t.json" '", ".join("%s %.1f ms/step -> %.3g images/s" % (k, v["median_ms"], v["images_per_s"]) for k, v in formats.items())')"
    if [ "$check" = 1 ] && [ "$r" = 1 ]; then jget "$tmp/t.json" '"\n".join("     check: " + x for x in checks)'; fi
  done
  t_ips="-" ratio="-"
  if [ "$have_torch" = 1 ]; then
    t_ips=$(printf '%.3g' "$t_best")
    ratio=$(awk -v c="$c_best" -v t="$t_best" 'BEGIN { printf "%.2f", c / t }')
  fi
  rows+=("| $m | $a | $s | $b | $threads | $n x $rounds | $(printf '%.3g' "$c_best") | $t_ips${fmt:+ ($fmt)} | $ratio |")
done

echo
echo "| model | act | size | batch | threads | steps x rounds | C images/s | PyTorch images/s (best format) | C / PyTorch |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
