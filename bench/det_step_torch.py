#!/usr/bin/python3
"""One RetinaNet training step of a SpineNet detector in PyTorch, the counterpart of
bench/det_step.c.

The network is the independent reference tests/golden/gen_golden.py's Net (every variant, garden
and tpu flavours, the RetinaNet head), through bench/infer_torch.py's FloatNet (float32, native
ops: F.conv2d with the symmetric padding inside, F.silu / F.hardswish, F.max_pool2d,
F.interpolate), with two changes for training: the parameters are nn.Parameters (BN moving
mean/var buffers) loaded from the C bench's --save-weights file, and batch-norm runs in training
mode (F.batch_norm with batch statistics, moving statistics updated). The garden squeeze-excite
gate keeps the reference's hard sigmoid constant 0.16667 (as the C kernels do), not 1/6.

The loss is computed here from the C bench's --dump (the images and the targets of the
project's anchor labelling; PyTorch does not label): sigmoid focal loss (alpha 0.25, gamma 1.5)
over every class logit, one-hot targets with column 0 never a target, plus box_weight (50) x the
Huber loss (delta 0.1, averaged over an anchor's 4 deltas) of the positive anchors, both divided
by (positive anchors + 1): src/models/retinanet_loss.c's definition. One step = zero_grad +
forward + loss + backward + SGD(momentum 0.9, weight decay on the kernels only).

Checks before any timing (each stops the program with an error):
  * parameter count equal to the C bench's (and `spinenet info --json`'s when the CLI is there);
  * every C tensor has a counterpart of the same shape here (HWIO -> OIHW) and vice versa;
  * with --c-json: the first step's loss (focal and Huber parts), image 0's first 16 values of
    every class.L / box.L output, and the gradient norm (weight decay included, as sn_optim_step
    reports it), from C and from each PyTorch float32 memory format, against a float64 PyTorch
    step: see TOL_* below and bench/README.md.

Times the contiguous (NCHW) and channels_last memory formats and reports the faster.
Run with Debian's torch 1.13: /usr/bin/python3 bench/det_step_torch.py --help
"""
import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
sys.path.insert(0, HERE)
import gen_golden as G  # noqa: E402  (the reference network)
import infer_torch as IT  # noqa: E402  (its float32 native-op subclass, FloatNet)
from train_step_torch import read_safetensors  # noqa: E402


class TrainNet(IT.FloatNet):
    """FloatNet with trainable parameters and training-mode batch-norm."""

    def __init__(self, owner, *a, bn_momentum=0.99, **kw):
        super().__init__(owner, *a, **kw)
        del self.gen  # FloatNet's random initialiser: the weights come from C (and it cannot be
        # deep-copied, which the float64 reference and each memory format do)
        self.torch_momentum = 1.0 - bn_momentum  # torch: the weight of the new value
        self.keys = {}  # C name -> attribute of the owner

    def param(self, name, shape):
        shape = tuple(int(s) for s in shape)
        key = "p_" + name.replace(".", "_")
        if name in self.params:
            assert self.params[name] == shape, (name, self.params[name], shape)
            return getattr(self.owner, key)
        assert key not in self.keys.values(), "attribute name clash: " + key
        self.params[name] = shape
        self.keys[name] = key
        if len(shape) == 4:  # HWIO -> OIHW (depthwise [3,3,1,C] -> [C,1,3,3])
            shape = (shape[3], shape[2], shape[0], shape[1])
        t = torch.zeros(shape, dtype=torch.float32)
        if name.endswith(".mean") or name.endswith(".var"):
            self.owner.register_buffer(key, t)
        else:
            self.owner.register_parameter(key, nn.Parameter(t))
        return getattr(self.owner, key)

    def bn(self, x, prefix):
        g = self.param(prefix + ".gamma", (x.c,))
        b = self.param(prefix + ".beta", (x.c,))
        m = self.param(prefix + ".mean", (x.c,))
        v = self.param(prefix + ".var", (x.c,))
        if x.t is None:
            return x
        return x.like(F.batch_norm(x.t, m, v, g, b, True, self.torch_momentum, self.bn_eps))

    def act(self, x, kind=None):
        if (kind or self.act_name) == "hsigmoid" and x.t is not None:
            return x.like(F.relu6(x.t + 3.0) * 0.16667)  # the reference's (and C's) constant
        return super().act(x, kind)


class Detector(nn.Module):
    def __init__(self, model, flavour, act, classes, size, bn_eps, bn_momentum):
        super().__init__()
        self.net = TrainNet(self, model, flavour, "retinanet", classes, activation=act,
                            bn_eps=bn_eps, bn_momentum=bn_momentum)
        net = self.net
        # a shape-only pass (no data: Net's ops skip the arithmetic) creates the parameters
        net.H, net.W = size, size
        f = G.Feat(None, 1, 3, size, size)
        outs = net.backbone_mobile(f) if net.mobile else net.backbone_spinenet(f)
        eps = {l: net.conv_bn(outs[l], "endpoints.%d" % l, 1, net.v["ep"])
               for l in range(net.min_level, net.max_level + 1)}
        heads = net.retinanet(eps)
        self.levels = list(range(net.min_level, net.max_level + 1))
        # FloatNet.forward returns the endpoints, then the head outputs in sorted name order
        self.head_names = sorted(heads)
        self.n_ep = len(eps)

    def forward(self, x):
        res = self.net.forward(x)
        out = dict(zip(self.head_names, res[self.n_ep:]))
        return [out["class.%d" % l] for l in self.levels], [out["box.%d" % l] for l in self.levels]


def load_c_weights(det, tensors):
    net = det.net
    names = set(net.keys)
    missing, extra = sorted(names - set(tensors)), sorted(set(tensors) - names)
    if missing or extra:
        raise SystemExit("det_step_torch: ARCHITECTURE MISMATCH with the C model: %d tensors only "
                         "here (%s), %d only in C (%s)" % (len(missing), missing[:5], len(extra),
                                                         extra[:5]))
    with torch.no_grad():
        for name, key in net.keys.items():
            a = tensors[name]
            if a.ndim == 4:
                a = a.transpose(3, 2, 0, 1)
            t = getattr(det, key)
            if tuple(a.shape) != tuple(t.shape):
                raise SystemExit("det_step_torch: ARCHITECTURE MISMATCH: %s is %s in C, %s here"
                                 % (name, tuple(a.shape), tuple(t.shape)))
            t.copy_(torch.from_numpy(np.array(a, dtype=np.float32)))


# ------------------------------------------------------------------------------ the loss
def flat(outs, per):
    """Per-level NCHW outputs [n, A*per, h, w] -> [n, anchors, per] in the anchors' order
    (levels, then y, x, then the anchor's channel group: class.L channel a * C + c)."""
    n = outs[0].shape[0]
    return torch.cat([o.permute(0, 2, 3, 1).reshape(n, -1, per) for o in outs], dim=1)


def retinanet_loss(cls_outs, box_outs, cls_t, box_t, lp):
    """(total, focal, Huber) as retinanet_loss.c defines them; cls_t int64 [n, anchors]."""
    C = cls_outs[0].shape[1] // G.NUM_ANCHORS
    z = flat(cls_outs, C)
    d = flat(box_outs, 4)
    pos = cls_t > 0
    norm = float(pos.sum()) + 1.0
    y = F.one_hot(cls_t, C).to(z.dtype)
    y[..., 0] = 0.0  # column 0 (background) is never a target
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    p = torch.sigmoid(z)
    one_minus_pt = p + y * (1.0 - 2.0 * p)  # sigmoid(-q): 1 - p for targets, p otherwise
    alpha_t = (1.0 - lp["alpha"]) + y * (2.0 * lp["alpha"] - 1.0)
    focal = (alpha_t * one_minus_pt.pow(lp["gamma"]) * ce).sum() / norm
    hub = F.huber_loss(d[pos], box_t[pos], reduction="none", delta=lp["huber_delta"])
    box = hub.mean(dim=1).sum() / norm
    return focal + lp["box_weight"] * box, focal, box


# ------------------------------------------------------------------------------ the step
def make_optimizer(det, lr, wd):
    decay = [getattr(det, k) for n, k in det.net.keys.items() if n.endswith(".weight")]
    ids = {id(t) for t in decay}
    rest = [p for p in det.parameters() if id(p) not in ids]
    groups = [dict(params=decay, weight_decay=wd), dict(params=rest, weight_decay=0.0)]
    try:
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, foreach=True)
    except TypeError:  # older torch without foreach
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)


def grad_norm(det, wd):
    """sqrt(sum (g + wd*w)^2) over trainable tensors, decay on kernels: sn_optim_step's norm."""
    s = 0.0
    for n, k in det.net.keys.items():
        t = getattr(det, k)
        if not isinstance(t, nn.Parameter) or t.grad is None:
            continue
        g = t.grad.double()
        if n.endswith(".weight"):
            g = g + wd * t.detach().double()
        s += float((g * g).sum())
    return math.sqrt(s)


def head_sample(cls_outs, box_outs, per):
    """Image 0's first `per` values (NHWC order) of class.L then box.L, every level: C's head0."""
    v = []
    for c, b in zip(cls_outs, box_outs):
        for o in (c, b):
            v += o.detach()[0].permute(1, 2, 0).reshape(-1)[:per].double().tolist()
    return v


def first_step(det, x, cls_t, box_t, lp, wd, per):
    cls_outs, box_outs = det(x)
    loss, focal, box = retinanet_loss(cls_outs, box_outs, cls_t, box_t, lp)
    loss.backward()
    return dict(loss0=float(loss), cls_loss0=float(focal), box_loss0=float(box),
                grad_norm0=grad_norm(det, wd), head0=head_sample(cls_outs, box_outs, per))


def reference(base, x, cls_t, box_t, lp, wd, per):
    """The first step in float64 (contiguous)."""
    det = copy.deepcopy(base).double()
    det.train()
    return first_step(det, x.double(), cls_t, box_t.double(), lp, wd, per)


# float32 against the float64 reference; see bench/README.md for why these values.
TOL_LOSS, TOL_HEAD, TOL_NORM = 1e-4, 1e-3, 5e-2


def deviation(r, ref):
    rel = lambda a, b: abs(a - b) / max(1e-30, abs(b))  # noqa: E731
    scale = max(1e-30, max(abs(v) for v in ref["head0"]))
    dh = max(abs(a - b) for a, b in zip(r["head0"], ref["head0"])) / scale
    return dict(loss=rel(r["loss0"], ref["loss0"]), cls=rel(r["cls_loss0"], ref["cls_loss0"]),
                box=rel(r["box_loss0"], ref["box_loss0"]), head=dh,
                norm=rel(r["grad_norm0"], ref["grad_norm0"]))


def check(what, r, ref):
    d = deviation(r, ref)
    msg = ("%s vs float64: loss %.1e (focal %.1e, Huber %.1e), head outputs %.1e, grad norm %.1e"
           % (what, d["loss"], d["cls"], d["box"], d["head"], d["norm"]))
    ok = (max(d["loss"], d["cls"], d["box"]) <= TOL_LOSS and d["head"] <= TOL_HEAD
          and d["norm"] <= TOL_NORM and len(r["head0"]) == len(ref["head0"]))
    if not ok:
        raise SystemExit("det_step_torch: FUNCTION MISMATCH (%s; tolerances: loss parts %.0e "
                         "relative, head outputs %.0e of the largest, grad norm %.0e relative): "
                         "not the same step" % (msg, TOL_LOSS, TOL_HEAD, TOL_NORM))
    return msg


def run_format(base, fmt, x, cls_t, box_t, lp, args):
    det = copy.deepcopy(base)  # the name registry is copied along and points at the copy's tensors
    xf = x
    if fmt == "channels_last":
        det = det.to(memory_format=torch.channels_last)
        xf = x.contiguous(memory_format=torch.channels_last)
    det.train()
    opt = make_optimizer(det, args.lr, args.weight_decay)
    times, first, loss = [], None, None
    for s in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        cls_outs, box_outs = det(xf)
        loss, focal, box = retinanet_loss(cls_outs, box_outs, cls_t, box_t, lp)
        loss.backward()
        if s == 0:  # the check's extra pass over the gradients is not timed
            t_check = time.perf_counter()
            first = dict(loss0=float(loss), cls_loss0=float(focal), box_loss0=float(box),
                         grad_norm0=grad_norm(det, args.weight_decay),
                         head0=head_sample(cls_outs, box_outs, args.head_per))
            t0 += time.perf_counter() - t_check
        opt.step()
        times.append(time.perf_counter() - t0)
    timed = [1e3 * t for t in times[args.warmup:]]
    med = statistics.median(timed)
    return dict(median_ms=med, min_ms=min(timed), images_per_s=args.batch * 1e3 / med,
                loss_last=float(loss), **first)


def spinenet_info_params(args):
    exe = args.spinenet
    if not exe or not os.path.exists(exe):
        return None
    cmd = [exe, "info", "--model", args.model, "--act", args.act, "--flavour", args.flavour,
           "--head", "retinanet", "--classes", str(args.classes), "--size", str(args.size),
           "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(json.loads(out)["params"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--c-weights", required=True, help="bench_det_step --save-weights FILE")
    ap.add_argument("--c-dump", required=True, help="bench_det_step --dump FILE (batch, targets)")
    ap.add_argument("--c-json", help="bench_det_step --json output (a file or the line itself): "
                    "the first step's numbers to check against; without it, no check")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--weight-decay", type=float, default=4e-5)
    ap.add_argument("--formats", default="contiguous,channels_last")
    ap.add_argument("--spinenet", default=os.path.join(ROOT, "build", "spinenet"),
                    help="the CLI, for `spinenet info` (parameter count)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.steps < 10:
        print("det_step_torch: note: fewer than 10 timed steps", file=sys.stderr)

    c = None
    if args.c_json:
        txt = open(args.c_json).read() if os.path.exists(args.c_json) else args.c_json
        c = json.loads(txt.strip().splitlines()[-1])
    meta, tensors = read_safetensors(args.c_weights)
    dmeta, batch = read_safetensors(args.c_dump)
    # The model as the C side saved it (its metadata names the architecture).
    args.model = meta["model"]
    args.flavour = meta["flavour"]
    args.act = meta["activation"]
    args.classes = int(meta["num_classes"])
    images = batch["images"]
    args.batch, args.size = images.shape[0], images.shape[1]
    bn_eps = float(meta["bn_eps"])
    bn_mom = float(meta.get("bn_momentum", (c or {}).get("bn_momentum", 0.99)))
    args.head_per = int((c or {}).get("head0_per", 16))
    lp = {k: float(dmeta[k]) for k in ("alpha", "gamma", "huber_delta", "box_weight")}

    torch.set_num_threads(args.threads)
    det = Detector(args.model, args.flavour, args.act, args.classes, args.size, bn_eps, bn_mom)
    n_params = sum(p.numel() for p in det.parameters())
    want = spinenet_info_params(args)
    if want is not None and n_params != want:
        raise SystemExit("det_step_torch: PARAMETER COUNT MISMATCH: %d here, %d from spinenet info"
                         % (n_params, want))
    if c is not None and int(c["params"]) != n_params:
        raise SystemExit("det_step_torch: PARAMETER COUNT MISMATCH: %d here, %d in the C bench"
                         % (n_params, c["params"]))
    load_c_weights(det, tensors)

    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    cls_t = torch.from_numpy(batch["cls_targets"].astype(np.int64))
    box_t = torch.from_numpy(np.array(batch["box_targets"]))
    npos = int((cls_t > 0).sum())
    if npos != int(dmeta["num_positives"]):
        raise SystemExit("det_step_torch: the dump says %s positives, its targets have %d"
                         % (dmeta["num_positives"], npos))
    anchors = sum(((args.size + 2 ** l - 1) // 2 ** l) ** 2 * G.NUM_ANCHORS
                  for l in range(int(dmeta["min_level"]), int(dmeta["max_level"]) + 1))
    if cls_t.shape[1] != anchors:
        raise SystemExit("det_step_torch: %d anchors per image in the dump, %d for the levels"
                         % (cls_t.shape[1], anchors))
    checks, ref = [], None
    if c is not None:
        t_ref = time.perf_counter()
        ref = reference(det, x, cls_t, box_t, lp, args.weight_decay, args.head_per)
        checks.append(check("C", c, ref))
        print("det_step_torch: float64 reference step took %.1f s" % (time.perf_counter() - t_ref),
              file=sys.stderr)
    results = {}
    for fmt in [f for f in args.formats.split(",") if f]:
        if fmt not in ("contiguous", "channels_last"):
            raise SystemExit("det_step_torch: unknown memory format %r" % fmt)
        r = results[fmt] = run_format(det, fmt, x, cls_t, box_t, lp, args)
        if ref is not None:
            checks.append(check("PyTorch " + fmt, r, ref))
    best = max(results, key=lambda f: results[f]["images_per_s"])
    if args.json:
        out = dict(impl="torch", task="detect", torch=torch.__version__, model=args.model,
                   flavour=args.flavour, activation=args.act, size=args.size, batch=args.batch,
                   threads=args.threads, steps=args.steps, warmup=args.warmup, params=n_params,
                   params_checked=want is not None, function_checked=ref is not None,
                   positives=npos, checks=checks, best_format=best,
                   median_ms=results[best]["median_ms"], min_ms=results[best]["min_ms"],
                   images_per_s=results[best]["images_per_s"],
                   formats={f: {k: v for k, v in r.items() if k != "head0"}
                            for f, r in results.items()})
        print(json.dumps(out))
        return
    print("PyTorch %s detection training step: %s (%s, %s), RetinaNet %d classes, %d params%s" % (
        torch.__version__, args.model, args.flavour, args.act, args.classes, n_params,
        " (= spinenet info)" if want is not None else ""))
    print("  input %dx%d, batch %d, %d threads; %d warmup + %d timed steps; %d positive anchors"
          % (args.size, args.size, args.batch, args.threads, args.warmup, args.steps, npos))
    for fmt, r in results.items():
        print("  %-13s median %.2f ms, min %.2f ms -> %.2f images/s; loss first %.5f last %.5f" % (
            fmt, r["median_ms"], r["min_ms"], r["images_per_s"], r["loss0"], r["loss_last"]))
    for m in checks:
        print("  check: " + m)
    print("  best: %s, %.2f images/s" % (best, results[best]["images_per_s"]))


if __name__ == "__main__":
    main()
