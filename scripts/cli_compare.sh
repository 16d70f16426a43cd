#!/usr/bin/env bash
# Compares the command lines of two spinenet binaries, to show that a change to tools/ leaves
# what users see byte-identical: the overview, help and version, every command's help, a battery
# of errors and a few quick runs, each with stdout, stderr and exit status apart, and the files
# they write. Prints the differences; nothing, and exit 0, when the two agree.
# usage: scripts/cli_compare.sh OLD_BIN NEW_BIN
set -u
old=$(realpath "${1:?usage: cli_compare.sh OLD_BIN NEW_BIN}")
new=$(realpath "${2:?usage: cli_compare.sh OLD_BIN NEW_BIN}")
top=$(mktemp -d)
trap 'rm -rf "$top"' EXIT
w=$top/w # the work folder: the same path for both binaries (messages name it), made afresh

commands="info init bench train eval classify detect make-dataset plot"
fm=/usr/share/datasets/fashion-mnist

# One command line per case, after the binary; $w is expanded when it runs (in $w).
cases=(
    '' '--help' '-h' 'help' 'help help' 'help -h' 'version' '--version' 'help version'
    'version --json'
    # Commands: unknown, misspelt, help for an unknown one.
    'bogus' 'inf' 'trian' 'make-datset' 'help bogus' '-x' '--verbose' 'INFO'
    # Flags: misspelt, another command's, unknown, a lone dash, help anywhere.
    'info --sise 640' 'info --lr 0.1' 'init --weights x -o y' 'classify --score 0.5 x.png'
    'plot --size 3 log.csv' 'train --batchsize 3' 'detect --scor 0.5 x.png'
    'make-dataset fashion-det --train-image 5' 'eval --qqq' 'bench --hel' 'bench --prof'
    'eval --eval' 'train --evalevery 3' 'info -' 'info --' 'info -o x' 'bench --title t'
    'plot x.csv -o y.png --threads 2' 'make-dataset fashion-det --top 3' 'classify --jsn'
    'info --size --help' 'plot --title --help' 'info --help extra' 'help info extra'
    # Values: missing, not numbers, out of range, bad seeds.
    'info --size' 'info --model' 'info --size big' 'info --size 0' 'info --size 99999'
    'info --size 12x' 'info --min-level 1' 'info --max-level 8' 'info --classes 0'
    'init --seed' 'init --seed abc' 'init --seed 99999999999999999999999' 'init --seed 1.5'
    'bench --threads 2000' 'bench --runs 0' 'bench --warmup -1' 'bench --batch 0'
    'train --replicas 17' 'train --lr -1' 'train --lr abc' 'train --momentum 1'
    'train --eval-every -2' 'train --drop-rate' 'detect --score 2 x.png' 'detect --score nan x.png'
    'detect --agnostic-nms 1.5 x.png' 'classify --top 0' 'init --anchor-size 0'
    'init --bn-momentum 1' 'make-dataset fashion-det --max-objects 65' 'plot x.csv -o x.png --width 10'
    'plot x.csv -o x.png --height 9000' 'eval --batch 0' 'make-dataset fashion-mnist --count -1'
    # Names the library refuses.
    'info --model spinenet-77' 'info --flavour keras' 'info --head foo' 'info --act foo'
    'info --model spinenet-49 --head none --flavour tpu --act relu --size 64'
    'info --block-spec "$w/nospec.txt"' 'info --block-spec "$w/dir"' 'info --block-spec "$w/spec.txt"'
    'bench --model spinenet-49s --size 200 --runs 1'
    # Arguments that are not flags.
    'info foo' 'init foo -o x' 'bench foo' 'train foo' 'eval foo' 'info --json foo bar'
    # init.
    'init --model spinenet-49' 'init -o "$w/no/such/m.safetensors"' 'init -o "$w/dir"'
    'init --model spinenet-77 -o "$w/x.safetensors"'
    # bench and info with --weights.
    'bench --weights "$w/nope.safetensors"' 'info --weights "$w/nope.safetensors"'
    'info --weights "$w/dir"' 'bench --weights "$w/file"'
    # train.
    'train' 'train --task detect' 'train --task foo' 'train --task detect --data x'
    'train --task detect --data x --ann y --eval-data z' 'train --data x'
    'train --task detect --data x --ann y -o o --scale-min 2 --scale-max 1'
    'train --data "$w/nodir" -o "$w/x"' 'train --data "$w/file" -o "$w/x"'
    'train --data "fashion-mnist:$w/nodir" -o "$w/x"'
    'train --data "$w/dir" --eval-data "$w/nodir" -o "$w/x"'
    'train --task detect --data "$w/nodir" --ann y -o "$w/x"'
    'train --task detect --data "$w/dir" --ann "$w/nope.json" -o "$w/x"'
    'train --task detect --data "$w/dir" --ann "$w/gt.json" --eval-data "$w/dir" --eval-ann "$w/nope.json" -o "$w/x"'
    'train --data "$w/dir" -o "$w/x" --init "$w/nope.safetensors"' 'train --data "$w/dir" -o "$w/file"'
    'train --data "$w/dir" -o "$w/x" --schedule foo' 'train --data "$w/dir" -o "$w/x" --batch 6 --replicas 4'
    'train --data "$w/dir" -o "$w/x" --model spinenet-77' 'train --data "$w/dir" -o "$w/x" --head none'
    # eval.
    'eval' 'eval --weights w' 'eval --weights "$w/nope.safetensors" --data fashion-mnist'
    'eval --weights "$w/file" --data "$w/nodir"' 'eval --task detect' 'eval --task bogus' 'eval --gt g'
    'eval --gt g --dets d --weights w' 'eval --gt g --weights w' 'eval --dets d'
    'eval --gt "$w/nope.json" --dets "$w/nope2.json"' 'eval --gt "$w/gt.json" --dets "$w/nope.json"'
    'eval --gt "$w/gt.json" --weights "$w/nope.safetensors" --images "$w/dir"'
    'eval --gt "$w/gt.json" --weights "$w/file" --images "$w/nodir"'
    'eval --gt "$w/gt.json" --weights "$w/file" --images "$w/dir" -o "$w/no/such/r.json"'
    'eval --gt "$w/gt.json" --dets "$w/gt.json"'
    # classify and detect.
    'classify' 'classify x.png' 'classify --weights w' 'classify --weights "$w/nope.safetensors" x.png'
    'detect' 'detect x.png' 'detect --weights w' 'detect --weights "$w/nope.safetensors" x.png'
    'detect --weights w -o "$w/file" x.png'
    # make-dataset.
    'make-dataset' 'make-dataset bogus' 'make-dataset bogus extra' 'make-dataset fashion-det extra'
    'make-dataset fashion-det' 'make-dataset fashion-det --out "$w/fd" --data "$w/nodir"'
    'make-dataset fashion-det --out "$w/fd" --data "$w/file"'
    'make-dataset fashion-mnist --out "$w/fm" --size 5' 'make-dataset fashion-mnist --out "$w/fm" --seed 2'
    'make-dataset fashion-mnist --out "$w/fm" --train-images 0' 'make-dataset fashion-mnist --out "$w/fm" --split foo'
    'make-dataset fashion-det --out "$w/fd" --split train' 'make-dataset fashion-det --out "$w/fd" --count 5'
    'make-dataset fashion-mnist --out "$w/fm" --data "$w/dir" --count 2'
    # plot.
    'plot' 'plot a b' 'plot "$w/log.csv"' 'plot "$w/nolog.csv" -o x.png' 'plot "$w/dir" -o x.png'
    'plot "$w/log.csv" -o "$w/no/dir/x.png"' 'plot "$w/log.csv" -o "$w/dir"' 'plot "$w/gt.json" -o "$w/bad.png"'
    # Quick runs: their output and the files they write.
    'info --model spinenet-mobile-49 --size 384' 'info --model spinenet-49 --head retinanet --size 640 --json'
    'info --model spinenet-mobile-49xs --flavour tpu --height 128 --width 256 --json'
    'init --model spinenet-mobile-49xs --flavour tpu --head classifier --classes 10 --size 64 --seed 3 -o "$w/c.safetensors"'
    'init --model spinenet-mobile-49xs --size 128 --classes 5 --anchor-size 2 --bn-momentum 0.9 -o "$w/d.safetensors"'
    'info --weights "$w/c.safetensors"' 'info --weights "$w/d.safetensors" --size 256 --json'
    'plot "$w/log.csv" -o "$w/p.png" --title "tiny run" --width 320 --height 300' 'plot "$w/log.csv" -o p2.png'
    'classify --weights "$w/d.safetensors" x.png' 'detect --weights "$w/c.safetensors" x.png'
    'classify --weights "$w/c.safetensors" "$w/nope.png" "$w/dir"'
    'classify --weights "$w/c.safetensors" --top 3 "$w/p.png" "$w/nope.png"'
    'classify --weights "$w/c.safetensors" --size 32 "$w/p.png"'
    'classify --weights "$w/c.safetensors" --size 128 --top 20 --threads 2 "$w/p.png"'
    'classify --weights "$w/c.safetensors" --size 64 --top 20 --threads 2 "$w/p.png"'
    'detect --weights "$w/d.safetensors" "$w/nope.png"'
    'detect --weights "$w/d.safetensors" --score 0 "$w/p.png" -o "$w/shots/a"'
    'detect --weights "$w/d.safetensors" --score 0.01 --agnostic-nms 0.5 "$w/p.png" "$w/nope.png"'
    'eval --weights "$w/d.safetensors" --data "$w/dir"' 'eval --weights "$w/c.safetensors" --data "$w/file"'
)
if [ -d "$fm" ]; then
    cases+=('make-dataset fashion-mnist --out "$w/fm" --count 3 --first 7'
            'make-dataset fashion-mnist --out "$w/fm2" --split train --count 2'
            'init --model spinenet-mobile-49xs --flavour tpu --head classifier --classes 3 --size 64 -o "$w/c3.safetensors"'
            'eval --weights "$w/c.safetensors" --data "$w/fm"'
            'eval --weights "$w/c3.safetensors" --data "$w/fm" --json'
            'eval --weights "$w/c3.safetensors" --data "$w/fm" --batch 2 --size 128'
            'classify --weights "$w/c3.safetensors" "$w/fm/Shirt/t10k-00007.png" "$w/fm/Sandal/t10k-00008.png"')
fi
for c in $commands; do cases+=("$c --help" "help $c" "$c -h"); done
# Each command without flags (but bench, which would time spinenet-49).
for c in ${commands/bench/}; do cases+=("$c"); done

# Runs every case with one binary; $2 receives CASE.out, CASE.err, CASE.rc and the work folder.
run_all() {
    local bin=$1 out=$2
    rm -rf "$w"
    mkdir -p "$w/dir" "$out"
    : > "$w/file"
    echo '{}' > "$w/gt.json"
    printf '2 bottleneck 0 1 no\n9 residual 0 1 no\n' > "$w/spec.txt"
    cat > "$w/log.csv" <<'CSV'
step,epoch,lr,loss,loss_cls,loss_box,train_top1,images_per_s,eval_top1,eval_top5
1,1,0.01,2.30,,,0.10,50.5,,
2,1,0.02,2.10,,,0.20,51.0,,
3,1,0.03,1.90,,,0.35,52.1,0.40,0.85
4,2,0.04,1.70,,,0.45,51.7,,
CSV
    for i in "${!cases[@]}"; do
        (cd "$w" && eval "\"\$bin\" ${cases[$i]}" </dev/null >"$out/$i.out" 2>"$out/$i.err")
        echo $? > "$out/$i.rc"
    done
    mv "$w" "$out/files"
}

run_all "$old" "$top/old"
run_all "$new" "$top/new"
status=0
for i in "${!cases[@]}"; do
    for part in out err rc; do
        if ! cmp -s "$top/old/$i.$part" "$top/new/$i.$part"; then
            echo "== spinenet ${cases[$i]}: $part differs"
            diff "$top/old/$i.$part" "$top/new/$i.$part" | head -20
            status=1
        fi
    done
done
diff -r "$top/old/files" "$top/new/files" || status=1
exit $status
