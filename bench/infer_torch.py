#!/usr/bin/python3
"""SpineNet inference (batch 1) in PyTorch CPU, the peer of `spinenet bench`; also exports ONNX.

The network is the independent PyTorch reference of tests/golden/gen_golden.py (class Net: every
variant, garden and tpu flavours, RetinaNet and classifier heads), run here in float32 with
native ops instead of its float64 hand-written ones: Net.param is overridden to hand out seeded
random float32 tensors registered as buffers of an nn.Module, BN becomes F.batch_norm (inference,
so TorchScript freezing and ONNX Runtime can fold it into the convolution), symmetric padding goes
into F.conv2d, and the activations use F.silu / F.hardswish / F.hardsigmoid. Architecture, block
order, resampling and the head are Net's, unchanged.

Before timing it checks that its parameter count (BN moving mean/var left out, as Net counts)
equals `spinenet info --json`'s "params" for the same model, flavour, head, activation and size.

Modes:
  time   : eager, TorchScript-frozen (torch.jit.freeze) and torch.jit.optimize_for_inference
           (freeze + oneDNN convolutions), each contiguous and channels_last; prints every
           variant's median and, as the last line, one JSON object with the best.
  export : torch.onnx.export of the same module (random weights) to --onnx FILE.
Run with Debian's torch 1.13: /usr/bin/python3 bench/infer_torch.py --help
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
import gen_golden as G  # noqa: E402  (the reference network)


class FloatNet(G.Net):
    """gen_golden.Net with float32 parameters and native inference ops."""

    def __init__(self, owner, *a, **kw):
        super().__init__(*a, **kw)
        self.owner = owner
        self.gen = torch.Generator().manual_seed(1)

    def param(self, name, shape):
        shape = tuple(int(s) for s in shape)
        key = "p_" + name.replace(".", "_")
        if name in self.params:
            assert self.params[name] == shape, (name, self.params[name], shape)
            return getattr(self.owner, key)
        self.params[name] = shape
        lo, hi = G.fill_range(name, shape)
        if len(shape) == 4:  # HWIO -> OIHW (depthwise [3,3,1,C] -> [C,1,3,3])
            shape = (shape[3], shape[2], shape[0], shape[1])
        elif name == "head.fc.weight":
            shape = (shape[1], shape[0])
        t = lo + (hi - lo) * torch.rand(shape, generator=self.gen, dtype=torch.float32)
        self.owner.register_buffer(key, t)
        return t

    def act(self, x, kind=None):
        kind = kind or self.act_name
        if x.t is None:
            return x
        f = {"relu": F.relu, "swish": F.silu, "hswish": F.hardswish, "sigmoid": torch.sigmoid,
             "hsigmoid": F.hardsigmoid}[kind]  # reference hsigmoid: clamp(x+3,0,6)*0.16667
        return x.like(f(x.t))

    def bn(self, x, prefix):
        g = self.param(prefix + ".gamma", (x.c,))
        b = self.param(prefix + ".beta", (x.c,))
        m = self.param(prefix + ".mean", (x.c,))
        v = self.param(prefix + ".var", (x.c,))
        if x.t is None:
            return x
        return x.like(F.batch_norm(x.t, m, v, g, b, False, 0.0, self.bn_eps))

    def conv(self, x, name, k, cout, stride=1, depthwise=False, bias=False):
        if depthwise:
            cout = x.c
            w = self.param(name + ".weight", (k, k, 1, x.c))
        else:
            w = self.param(name + ".weight", (k, k, x.c, cout))
        b = self.param(name + ".bias", (cout,)) if bias else None
        if stride > 1 and self.flavour == "tpu":
            (oh, ht, hb), (ow, wl, wr) = G.fixed_pad(x.h, k, stride), G.fixed_pad(x.w, k, stride)
        else:
            (oh, ht, hb), (ow, wl, wr) = G.same_pad(x.h, k, stride), G.same_pad(x.w, k, stride)
        if x.t is None:
            return G.Feat(None, x.n, cout, oh, ow)
        t = x.t
        if ht == hb and wl == wr:
            pad = (ht, wl)
        else:
            t, pad = F.pad(t, (wl, wr, ht, hb)), (0, 0)
        t = F.conv2d(t, w, b, stride=stride, padding=pad, groups=(x.c if depthwise else 1))
        return G.Feat(t, x.n, cout, oh, ow)

    def maxpool(self, x, kh, sh, kw, sw):
        oh, ht, hb = G.same_pad(x.h, kh, sh)
        ow, wl, wr = G.same_pad(x.w, kw, sw)
        if x.t is None:
            return x.like(None, h=oh, w=ow)
        if ht == hb and wl == wr:  # max_pool2d pads with -inf itself
            t = F.max_pool2d(x.t, (kh, kw), (sh, sw), padding=(ht, wl))
        else:
            t = F.max_pool2d(F.pad(x.t, (wl, wr, ht, hb), value=-float("inf")), (kh, kw), (sh, sw))
        return x.like(t, h=oh, w=ow)

    def upsample_int(self, x, sh, sw):
        # integer nearest upsampling (== repeat_interleave, whose ONNX export ORT rejects: a
        # Split node with a zero-sized axis); F.interpolate exports as one Resize node
        if x.t is None:
            return x.like(None, h=x.h * sh, w=x.w * sw)
        t = F.interpolate(x.t, size=(x.h * sh, x.w * sw), mode="nearest")
        return x.like(t, h=x.h * sh, w=x.w * sw)

    def forward(self, x):
        n, _, h, w = x.shape
        n, h, w = int(n), int(h), int(w)
        self.H, self.W = h, w
        self.merges = []
        f = G.Feat(x, n, 3, h, w)
        outs = self.backbone_mobile(f) if self.mobile else self.backbone_spinenet(f)
        res = []
        eps = {}
        for level in range(self.min_level, self.max_level + 1):
            eps[level] = self.conv_bn(outs[level], "endpoints.%d" % level, 1, self.v["ep"])
            res.append(eps[level].t)
        if self.head == "retinanet":
            head = self.retinanet(eps)
            res += [head[k].t for k in sorted(head)]
        elif self.head == "classifier":
            res.append(self.classifier(eps))
        return tuple(res)


class Model(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.net = FloatNet(self, args.model, args.flavour, args.head, args.classes,
                            activation=args.act or None)
        self.size = args.size
        # a shape-only pass (no data: Net's ops skip the arithmetic) creates the parameters
        self.net.H, self.net.W = args.size, args.size
        f = G.Feat(None, 1, 3, args.size, args.size)
        outs = self.net.backbone_mobile(f) if self.net.mobile else self.net.backbone_spinenet(f)
        eps = {l: self.net.conv_bn(outs[l], "endpoints.%d" % l, 1, self.net.v["ep"])
               for l in range(self.net.min_level, self.net.max_level + 1)}
        if args.head == "retinanet":
            self.net.retinanet(eps)
        elif args.head == "classifier":
            self.net.classifier(eps)

    def forward(self, x):
        return self.net.forward(x)


def info_params(args):
    cmd = [args.spinenet, "info", "--model", args.model, "--flavour", args.flavour, "--head",
           args.head, "--size", str(args.size), "--classes", str(args.classes), "--json"]
    if args.act:
        cmd += ["--act", args.act]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def lcg_input(size):
    """The input of bench/infer_ort.js: s = s * 1103515245 + 12345 mod 2^32, s / 2^31 - 1."""
    n = 3 * size * size
    vals = [0.0] * n
    st = 12345
    for i in range(n):
        st = (st * 1103515245 + 12345) & 0xFFFFFFFF
        vals[i] = st / 2147483648.0 - 1.0
    return torch.tensor(vals, dtype=torch.float32).view(1, 3, size, size)


def time_fn(fn, x, warmup, runs):
    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn(x)
            ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts), min(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=["time", "export"])
    ap.add_argument("--model", default="spinenet-mobile-49")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--flavour", default="garden")
    ap.add_argument("--head", default="retinanet")
    ap.add_argument("--act", default="", help="default: the variant's (as spinenet)")
    ap.add_argument("--classes", type=int, default=91)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--variants", default="eager,eager_cl,frozen,frozen_cl,ofi,ofi_cl")
    ap.add_argument("--onnx", default="", help="export: output file")
    ap.add_argument("--opset", type=int, default=14)
    ap.add_argument("--spinenet", default=os.path.join(ROOT, "build", "spinenet"))
    args = ap.parse_args()
    if args.head == "classifier" and args.classes == 91:
        args.classes = 1001

    # Tracing, export and the checks run eager float32 code once: with one thread, torch 1.13
    # sends 1x1 convolutions of batch 1 to its BLAS path (Debian's reference BLAS here: slow),
    # so those use every core; only the timed runs use --threads.
    build_threads = max(args.threads, os.cpu_count() or 1)
    torch.set_num_threads(build_threads)
    torch.set_num_interop_threads(1)
    model = Model(args).eval()
    ours = model.net.num_params()
    info = info_params(args)
    if ours != info["params"]:
        raise SystemExit("infer_torch: parameter count %d != spinenet info's %d: not the same "
                         "network" % (ours, info["params"]))
    print("infer_torch: %s %s %s size %d act %s: %d params (= spinenet info), %d buffers"
          % (args.model, args.flavour, args.head, args.size, model.net.act_name, ours,
             len(list(model.buffers()))), file=sys.stderr)
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(2))

    if args.mode == "export":
        with torch.no_grad():
            torch.onnx.export(model, (x,), args.onnx, opset_version=args.opset,
                              input_names=["input"], do_constant_folding=True)
            # reference outputs for bench/infer_ort.js's check, on the input it builds
            xl = lcg_input(args.size)
            ref = [{"absmax": float(o.abs().max()), "head": o.flatten()[:64].tolist()}
                   for o in model(xl)]
        with open(args.onnx + ".ref.json", "w") as fh:
            json.dump(ref, fh)
        print(json.dumps({"onnx": args.onnx, "params": ours, "opset": args.opset}))
        return

    results = {}
    ref = None
    for var in args.variants.split(","):
        cl = var.endswith("_cl")
        fmt = torch.channels_last if cl else torch.contiguous_format
        m = model.to(memory_format=fmt)
        xi = x.contiguous(memory_format=fmt)
        with torch.no_grad():
            if var.startswith("frozen"):
                fn = torch.jit.freeze(torch.jit.trace(m, (xi,), check_trace=False).eval())
            elif var.startswith("ofi"):  # freeze + oneDNN conversion of the convolutions
                fn = torch.jit.optimize_for_inference(
                    torch.jit.trace(m, (xi,), check_trace=False).eval())
            else:
                fn = m
            out = fn(xi)
        torch.set_num_threads(args.threads)
        if ref is None:
            ref = out
        else:  # every variant computes the same thing
            err = max(float((a - b).abs().max()) for a, b in zip(out, ref))
            scale = max(float(a.abs().max()) for a in ref)
            if err > 1e-3 * max(1.0, scale):
                raise SystemExit("infer_torch: %s differs from eager: %g" % (var, err))
        med, mn = time_fn(fn, xi, args.warmup, args.runs)
        results[var] = med
        torch.set_num_threads(build_threads)
        print("infer_torch: threads %d %-9s median %.2f ms (min %.2f)" % (args.threads, var, med, mn),
              file=sys.stderr)
    best = min(results, key=results.get)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"model": args.model, "size": args.size, "threads": args.threads,
                      "runs": args.runs, "median_ms": round(results[best], 3), "best": best,
                      "variants": {k: round(v, 3) for k, v in results.items()},
                      "params": ours, "peak_rss_mb": round(rss, 1)}))


if __name__ == "__main__":
    main()
