#!/usr/bin/env python3
"""Compare the float tensors of two safetensors files (tests/mpi_train_test.sh).

usage: st_compare.py A B TOL [--prefix P]
Prints the largest relative difference max|a-b| / max(max|b|, 1e-30) over the tensors (per
tensor, then the maximum) and the tensor it is in; exits 1 when it exceeds TOL or when the files
hold other tensors or shapes. Only the standard library (struct, json)."""
import json
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
    a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
    prefix = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--prefix" else ""
    if sorted(a) != sorted(b):
        print("the files hold other tensors:", sorted(set(a) ^ set(b))[:5])
        return 1
    worst, where = 0.0, ""
    for name in sorted(a):
        if not name.startswith(prefix):
            continue
        (sa, va), (sb, vb) = a[name], b[name]
        if sa != sb:
            print("%s: shape %s vs %s" % (name, sa, sb))
            return 1
        scale = max(max((abs(x) for x in vb), default=0.0), 1e-30)
        d = max((abs(x - y) for x, y in zip(va, vb)), default=0.0) / scale
        if d != d:  # NaN
            d = float("inf")
        if d > worst:
            worst, where = d, name
    print("max relative difference %.3g (%s), tolerance %g" % (worst, where or "-", tol))
    return 0 if worst <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
