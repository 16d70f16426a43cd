#!/usr/bin/env python3
"""Compare the float tensors of two safetensors files (tests/mpi_train_test.sh).

usage: st_compare.py A B TOL [--l2] [--only weights|momentum]
Default: the largest per-tensor relative difference max|a-b| / max|b|, exact comparisons (TOL
0). --l2: the relative difference of the whole state, ||a-b|| / ||b|| over every element (a
tensor that is pure rounding noise, e.g. the ~1e-12 gradient of a batch-norm beta that feeds
another batch-norm, cannot dominate it). --only: the model's tensors (weights and batch-norm
statistics) or the optimizer's (opt.momentum.*: after one step, the gradient). Prints the
number; exits 1 when it exceeds TOL or when the files hold other tensors or shapes. Only the
standard library (struct, json, math)."""
import json
import math
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        lo, hi = info["data_offsets"]
        out[name] = (info["shape"], struct.unpack("<%df" % ((hi - lo) // 4), data[lo:hi]))
    return out


def main():
    args = sys.argv[1:]
    l2 = "--l2" in args
    only = args[args.index("--only") + 1] if "--only" in args else ""
    a, b, tol = load(args[0]), load(args[1]), float(args[2])
    if sorted(a) != sorted(b):
        print("the files hold other tensors:", sorted(set(a) ^ set(b))[:5])
        return 1
    names = [n for n in sorted(a)
             if not only or (only == "momentum") == n.startswith("opt.momentum.")]
    worst, where, num, den = 0.0, "", 0.0, 0.0
    for name in names:
        (sa, va), (sb, vb) = a[name], b[name]
        if sa != sb:
            print("%s: shape %s vs %s" % (name, sa, sb))
            return 1
        num += sum((x - y) ** 2 for x, y in zip(va, vb))
        den += sum(y * y for y in vb)
        scale = max(max((abs(x) for x in vb), default=0.0), 1e-30)
        d = max((abs(x - y) for x, y in zip(va, vb)), default=0.0) / scale
        if d != d:  # NaN
            d = float("inf")
        if d > worst:
            worst, where = d, name
    what = only or "all tensors"
    if l2:
        d = math.sqrt(num / den) if den > 0 else (0.0 if num == 0 else float("inf"))
        print("relative L2 difference %.3g (%s), tolerance %g; largest per-tensor relative "
              "difference %.3g (%s)" % (d, what, tol, worst, where or "-"))
        return 0 if d <= tol else 1
    print("max relative difference %.3g (%s), tolerance %g" % (worst, where or "-", tol))
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
