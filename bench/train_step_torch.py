#!/usr/bin/python3
"""One SpineNet classifier training step in PyTorch, the counterpart of bench/train_step.c.

The network is a plain nn.Module of native float32 ops (nn.Conv2d, nn.BatchNorm2d in training
mode, F.relu, F.max_pool2d, F.interpolate, nn.Linear), built for the `tpu` flavour from the
architecture tables of the independent PyTorch reference (tests/golden/gen_golden.py, which never
looks at the C code). One step = zero_grad + forward + CrossEntropyLoss(label_smoothing) +
backward + SGD(momentum 0.9, weight decay on conv/dense kernels only), as the C trainer does.

Honesty checks before any timing:
  * the trainable parameter count equals `spinenet info ... --json`'s "params" (which, like
    model.parameters() here, leaves out the BN moving mean/var);
  * with --c-weights (the C bench's --save-weights file), every C tensor has a PyTorch
    counterpart of the same shape and vice versa, the weights are loaded, and the first step's
    loss and gradient norm (weight decay included, as sn_optim_step reports it) on the same input
    and labels (the hash fill of src/core/core.h) must match the C numbers (--c-json).

Times both memory formats (contiguous NCHW and channels_last) and reports the faster.
Run with Debian's torch 1.13: /usr/bin/python3 bench/train_step_torch.py --help
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
import gen_golden as G  # noqa: E402  (architecture tables and the hash fill only)


# ------------------------------------------------------------------------------ building blocks
def make_act(name):
    if name == "relu":
        return lambda x: F.relu(x, inplace=True)
    if name == "relu6":
        return lambda x: F.relu6(x, inplace=True)
    if name == "swish":
        return F.silu
    if name == "hswish":
        return F.hardswish
    if name == "sigmoid":
        return torch.sigmoid
    raise SystemExit("train_step_torch: activation %r is not supported here" % name)


class ConvBN(nn.Module):
    """Convolution (TF1 padding: symmetric k//2 for the odd kernels used) + optional BN + act."""

    def __init__(self, cin, cout, k, stride=1, groups=1, act=None, bn=True, bias=False, bnargs=None):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(cout, **bnargs) if bn else None
        self.act = act

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x) if self.act is not None else x


def out_size(n, s):
    return -(-n // s)


class MaxPoolSame(nn.Module):
    """TF 'SAME' max-pool: padding after (and maybe before); padded cells never win."""

    def __init__(self, h, w, k, s):
        super().__init__()
        self.k, self.s = k, s
        (oh, ht, hb), (ow, wl, wr) = G.same_pad(h, k, s), G.same_pad(w, k, s)
        self.pad = (wl, wr, ht, hb)
        # No padding before: ceil_mode gives the same windows without a padded copy.
        self.ceil = (ht == 0 and wl == 0 and
                     math.ceil((h - k) / s) + 1 == oh and math.ceil((w - k) / s) + 1 == ow)
        self.out = (oh, ow)

    def forward(self, x):
        if self.ceil:
            return F.max_pool2d(x, self.k, self.s, ceil_mode=True)
        return F.max_pool2d(F.pad(x, self.pad, value=-math.inf), self.k, self.s)


def nearest(x, size):
    """TF1 nearest resize (src = floor(dst * in / out)), PyTorch's legacy 'nearest'."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="nearest")


class Net(nn.Module):
    """SpineNet / Mobile SpineNet classifier, tpu flavour, for a fixed input size."""

    def __init__(self, model, act, classes, size, bn_eps, bn_momentum):
        super().__init__()
        if model not in G.VARIANTS:
            raise SystemExit("train_step_torch: unknown model %r" % model)
        self.v = v = G.VARIANTS[model]
        self.mobile = v["mobile"]
        self.act = make_act(act)
        self.bnargs = dict(eps=bn_eps, momentum=1.0 - bn_momentum)  # torch: weight of the new value
        self.H = self.W = size
        self.names = {}  # C tensor name -> (torch tensor, layout)
        self.rows = nn.ModuleList()  # per spec row: resample0, resample1, block group
        self.row_info = []  # per spec row: (parent a, parent b, merged feature indices)
        if self.mobile:
            self._build_mobile()
        else:
            self._build_spinenet()
        levels = range(3, 8)
        ep = v["ep"]
        self.endpoints = nn.ModuleList(
            [self.cbn("endpoints.%d" % l, self.feat_c[self.out_idx[l]], ep, 1, act=True) for l in levels])
        self.fc = nn.Linear(ep, classes)
        self.names["head.fc.weight"] = (self.fc.weight, "fc")
        self.names["head.fc.bias"] = (self.fc.bias, "vec")

    # --- registry of C names -> torch tensors
    def cbn(self, prefix, cin, cout, k, stride=1, dw=False, act=True, bn=True, bias=False, act_fn=None):
        m = ConvBN(cin, cout, k, stride, groups=cin if dw else 1,
                   act=(act_fn or self.act) if act else None, bn=bn, bias=bias, bnargs=self.bnargs)
        self.names[prefix + ".weight"] = (m.conv.weight, "conv")
        if bias:
            self.names[prefix + ".bias"] = (m.conv.bias, "vec")
        if bn:
            for cname, t in (("gamma", m.bn.weight), ("beta", m.bn.bias),
                             ("mean", m.bn.running_mean), ("var", m.bn.running_var)):
                self.names["%s.bn.%s" % (prefix, cname)] = (t, "vec")
        return m

    def level_size(self, level):
        return out_size(self.H, 2 ** level), out_size(self.W, 2 ** level)

    def merges(self, feats_hw, feat_c, outdeg, th, tw, c):
        res = []
        for j in range(len(feat_c)):
            if outdeg[j] == 0 and feats_hw[j][1] == tw and feat_c[j] == c:
                assert feats_hw[j][0] == th
                outdeg[j] += 1
                res.append(j)
        return res

    # --- SpineNet (bottleneck / residual blocks)
    def _build_spinenet(self):
        v, scale = self.v, self.v["scale"]
        self.stem = self.cbn("stem", 3, 64, 7, 2)
        h, w = out_size(self.H, 2), out_size(self.W, 2)
        self.stem_pool = MaxPoolSame(h, w, 3, 2)
        h, w = self.stem_pool.out
        f2 = int(G.FILTERS[2] * scale)
        groups, feat_c, feats_hw, fns = [], [], [], []
        c = 64
        for i in range(2):
            g, c = self.block_group("blocks.%d" % i, "bottleneck", c, f2)
            groups.append(g)
            feat_c.append(c)
            feats_hw.append((h, w))
            fns.append("bottleneck")
        self.stem_groups = nn.ModuleList(groups)
        outdeg = [0, 0]
        self.out_idx = {}
        for row, (level, fn, (a, b), is_out) in enumerate(G.BLOCK_SPECS):
            idx = len(feat_c)
            th, tw = self.level_size(level)
            f = int(G.FILTERS[level] * scale)
            out_c = 4 * f if fn == "bottleneck" else f
            r0 = self.resample("blocks.%d.resample0" % idx, feat_c[a], fns[a], feats_hw[a], th, tw, out_c)
            r1 = self.resample("blocks.%d.resample1" % idx, feat_c[b], fns[b], feats_hw[b], th, tw, out_c)
            outdeg[a] += 1
            outdeg[b] += 1
            merged = self.merges(feats_hw, feat_c, outdeg, th, tw, out_c) if is_out else []
            g, c = self.block_group("blocks.%d" % idx, fn, out_c, f)
            self.rows.append(nn.ModuleList([r0, r1, g]))
            self.row_info.append((a, b, merged))
            feat_c.append(c)
            feats_hw.append((th, tw))
            fns.append(fn)
            outdeg.append(0)
            if is_out:
                self.out_idx[level] = idx
        self.feat_c = feat_c

    def block_group(self, p, fn, cin, f):
        out_c = 4 * f if fn == "bottleneck" else f
        blocks = []
        for r in range(self.v["rep"]):
            q = "%s.%d" % (p, r)
            proj = r == 0 and cin != out_c
            blocks.append(Bottleneck(self, q, cin, f, proj) if fn == "bottleneck"
                          else Residual(self, q, cin, f, proj))
            cin = out_c
        return nn.Sequential(*blocks), out_c

    def resample(self, p, cin, parent_fn, hw, th, tw, out_c):
        return Resample(self, p, cin, parent_fn, hw, th, tw, out_c)

    # --- Mobile SpineNet (mbconv blocks)
    def _build_mobile(self):
        scale = self.v["scale"]

        def fs(level):
            return int(G.MB_FILTERS[level] * scale)

        self.stem = self.cbn("stem", 3, fs(0), 3, 2)
        h, w = out_size(self.H, 2), out_size(self.W, 2)
        g0 = self.mb_group("blocks.0", fs(0), fs(1), 1)
        g1 = self.mb_group("blocks.1", fs(1), fs(2), 2)
        self.stem_groups = nn.ModuleList([g0, g1])
        feat_c = [fs(1), fs(2)]
        feats_hw = [(h, w), (out_size(h, 2), out_size(w, 2))]
        outdeg = [0, 0]
        self.out_idx = {}
        for row, (level, fn, (a, b), is_out) in enumerate(G.MB_BLOCK_SPECS):
            idx = len(feat_c)
            th, tw = self.level_size(level)
            f = fs(level)
            r0 = ResampleMobile(self, "blocks.%d.resample0" % idx, feat_c[a], feats_hw[a], th, tw, f)
            r1 = ResampleMobile(self, "blocks.%d.resample1" % idx, feat_c[b], feats_hw[b], th, tw, f)
            outdeg[a] += 1
            outdeg[b] += 1
            merged = self.merges(feats_hw, feat_c, outdeg, th, tw, f) if is_out else []
            g = self.mb_group("blocks.%d" % idx, f, f, 1)
            self.rows.append(nn.ModuleList([r0, r1, g]))
            self.row_info.append((a, b, merged))
            feat_c.append(f)
            feats_hw.append((th, tw))
            outdeg.append(0)
            if is_out:
                self.out_idx[level] = idx
        self.feat_c = feat_c

    def mb_group(self, p, cin, cout, stride):
        blocks = []
        for r in range(self.v["rep"]):
            blocks.append(MBConv(self, "%s.%d" % (p, r), cin if r == 0 else cout, cout,
                                 stride if r == 0 else 1))
        return nn.Sequential(*blocks)

    # --- forward
    def forward(self, x):
        x = self.stem(x)
        if not self.mobile:
            x = self.stem_pool(x)
        feats = []
        for g in self.stem_groups:
            x = g(x)
            feats.append(x)
        for (r0, r1, g), (a, b, merged) in zip(self.rows, self.row_info):
            y = r0(feats[a]) + r1(feats[b])
            for j in merged:
                y = y + feats[j]
            feats.append(g(self.act(y)))
        eps = [m(feats[self.out_idx[l]]) for m, l in zip(self.endpoints, range(3, 8))]
        y = eps[-1]
        for p in reversed(eps[:-1]):
            y = nearest(y, p.shape[-2:]) + p
        pooled = y.mean(dim=(2, 3)) * (1.0 / len(eps))
        return self.fc(pooled)


class Bottleneck(nn.Module):
    def __init__(self, net, p, cin, f, proj):
        super().__init__()
        self.proj = net.cbn(p + ".proj", cin, 4 * f, 1, act=False) if proj else None
        self.conv1 = net.cbn(p + ".conv1", cin, f, 1)
        self.conv2 = net.cbn(p + ".conv2", f, f, 3)
        self.conv3 = net.cbn(p + ".conv3", f, 4 * f, 1, act=False)
        self.act = net.act

    def forward(self, x):
        sc = self.proj(x) if self.proj is not None else x
        return self.act(self.conv3(self.conv2(self.conv1(x))) + sc)


class Residual(nn.Module):
    def __init__(self, net, p, cin, f, proj):
        super().__init__()
        self.proj = net.cbn(p + ".proj", cin, f, 1, act=False) if proj else None
        self.conv1 = net.cbn(p + ".conv1", cin, f, 3)
        self.conv2 = net.cbn(p + ".conv2", f, f, 3, act=False)
        self.act = net.act

    def forward(self, x):
        sc = self.proj(x) if self.proj is not None else x
        return self.act(self.conv2(self.conv1(x)) + sc)


class Resample(nn.Module):
    """TPU resample_with_alpha: 1x1 reduce; down: 3x3/2 conv, at most one max-pool, nearest
    resize; up: nearest resize; then the 1x1 projection."""

    def __init__(self, net, p, cin, parent_fn, hw, th, tw, out_c):
        super().__init__()
        h, w = hw
        base = cin // 4 if parent_fn == "bottleneck" else cin
        mid = int(base * net.v["alpha"])
        self.reduce = net.cbn(p + ".reduce", cin, mid, 1)
        self.down = self.pool = None
        if h > th or w > tw:
            self.down = net.cbn(p + ".down0", mid, mid, 3, 2)

            def rule(n_in, n_t):
                if n_in // n_t > 2:
                    return (3 if n_in / n_t <= 4 else 5), (2 if n_in % n_t else n_in // n_t // 2)
                return 1, 1
            (kh, sh), (kw, sw) = rule(h, th), rule(w, tw)
            assert (kh, sh) == (kw, sw), "non-square resampling is not supported here"
            if (kh, sh) != (1, 1):
                self.pool = MaxPoolSame(out_size(h, 2), out_size(w, 2), kh, sh)
        self.size = (th, tw)
        self.project = net.cbn(p + ".project", mid, out_c, 1, act=False)

    def forward(self, x):
        y = self.reduce(x)
        if self.down is not None:
            y = self.down(y)
            if self.pool is not None:
                y = self.pool(y)
        return self.project(nearest(y, self.size))


class MBConv(nn.Module):
    def __init__(self, net, p, cin, cout, stride):
        super().__init__()
        mid = cin * G.EXPAND_RATIO
        r = max(1, int(cin * G.SE_RATIO))
        self.expand = net.cbn(p + ".expand", cin, mid, 1)
        self.dw = net.cbn(p + ".dw", mid, mid, 3, stride, dw=True)
        # tpu flavour: swish inside the squeeze-excitation, sigmoid gate
        self.se_reduce = net.cbn(p + ".se_reduce", mid, r, 1, bn=False, bias=True, act_fn=F.silu)
        self.se_expand = net.cbn(p + ".se_expand", r, mid, 1, bn=False, bias=True,
                                 act_fn=torch.sigmoid)
        self.project = net.cbn(p + ".project", mid, cout, 1, act=False)
        self.residual = cin == cout and stride == 1

    def forward(self, x):
        y = self.dw(self.expand(x))
        y = y * self.se_expand(self.se_reduce(y.mean(dim=(2, 3), keepdim=True)))
        y = self.project(y)
        return y + x if self.residual else y


class ResampleMobile(nn.Module):
    def __init__(self, net, p, cin, hw, th, tw, f):
        super().__init__()
        h, w = hw
        downs = []
        if h > th or w > tw:
            n, k = float(w), 0
            while n > tw:
                n, k = n / 2, k + 1
            assert h % th == 0 and w % tw == 0, "tpu mobile needs divisible sizes"
            for i in range(k):
                downs.append(net.cbn("%s.down%d" % (p, i), cin, cin, 3, 2, dw=True))
        self.downs = nn.Sequential(*downs)
        self.up = (th // h, tw // w) if (h < th or w < tw) else None
        self.project = net.cbn(p + ".project", cin, f, 1, act=False)

    def forward(self, x):
        y = self.downs(x)
        if self.up is not None:
            y = F.interpolate(y, scale_factor=self.up, mode="nearest")
        return self.project(y)


# ------------------------------------------------------------------------------ C weights
def read_safetensors(path):
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
        data = fh.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, d in header.items():
        assert d["dtype"] == "F32", name
        b, e = d["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(d["shape"])
    return meta, out


def to_torch_layout(a, layout):
    if layout == "conv":  # HWIO -> OIHW (depthwise [3,3,1,C] -> [C,1,3,3])
        return a.transpose(3, 2, 0, 1)
    if layout == "fc":  # [in, out] -> [out, in]
        return a.T
    return a


def load_c_weights(net, tensors):
    missing = sorted(set(net.names) - set(tensors))
    extra = sorted(set(tensors) - set(net.names))
    if missing or extra:
        raise SystemExit("train_step_torch: ARCHITECTURE MISMATCH with the C model: %d tensors only "
                         "here (%s), %d only in C (%s)" % (len(missing), missing[:5], len(extra), extra[:5]))
    with torch.no_grad():
        for name, (t, layout) in net.names.items():
            a = to_torch_layout(tensors[name], layout)
            if tuple(a.shape) != tuple(t.shape):
                raise SystemExit("train_step_torch: ARCHITECTURE MISMATCH: %s is %s in C, %s here"
                                 % (name, tuple(a.shape), tuple(t.shape)))
            t.copy_(torch.from_numpy(np.array(a, dtype=np.float32)))


# ------------------------------------------------------------------------------ the step
def make_batch(batch, size, classes, seed):
    """The C bench's input and labels (sn_hash_fill of names bench.input / bench.labels)."""
    s3 = math.sqrt(3.0)
    x = G.hash_fill("bench.input", (batch, size, size, 3), seed, -s3, s3)
    u = G.hash_fill("bench.labels", (batch,), seed, 0.0, float(classes))
    y = np.minimum(u.astype(np.int64), classes - 1)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y)


def make_optimizer(net, lr, wd):
    decay = [t for n, (t, _) in net.names.items() if n.endswith(".weight")]
    ids = {id(t) for t in decay}
    rest = [p for p in net.parameters() if id(p) not in ids]
    groups = [dict(params=decay, weight_decay=wd), dict(params=rest, weight_decay=0.0)]
    try:
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, foreach=True)
    except TypeError:  # older torch without foreach
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)


def grad_norm(net, wd):
    """sqrt(sum (g + wd*w)^2) over trainable tensors, decay on kernels: sn_optim_step's norm."""
    s = 0.0
    for n, (t, _) in net.names.items():
        if t.grad is None:
            continue
        g = t.grad.double()
        if n.endswith(".weight"):
            g = g + wd * t.detach().double()
        s += float((g * g).sum())
    return math.sqrt(s)


def first_logits(z):
    """The logits the C bench reports: up to 4 samples, up to 64 classes each, flattened."""
    return z.detach()[:4, :64].double().reshape(-1).tolist()


def reference(base, x, y, args):
    """Loss, gradient norm and logits of the first step in float64 (contiguous)."""
    net = copy.deepcopy(base).double()
    net.train()
    z = net(x.double())
    loss = nn.CrossEntropyLoss(label_smoothing=args.smoothing)(z, y)
    loss.backward()
    return dict(loss0=float(loss), grad_norm0=grad_norm(net, args.weight_decay), logits0=first_logits(z))


def deviation(r, ref):
    """(|loss diff|, relative gradient-norm diff, logits diff relative to max |reference logit|)."""
    scale = max(1e-30, max(abs(v) for v in ref["logits0"]))
    dz = max(abs(a - b) for a, b in zip(r["logits0"], ref["logits0"])) / scale
    return (abs(r["loss0"] - ref["loss0"]),
            abs(r["grad_norm0"] - ref["grad_norm0"]) / max(1e-30, abs(ref["grad_norm0"])), dz)


# float32 tolerances against the float64 reference. The gradient norm is loose on purpose: batch-
# norm in training mode over the 1x1 and 2x2 maps of levels 6-7 (a handful of values per channel)
# amplifies float32 rounding; PyTorch's own channels_last float32 gradient norm is up to ~2% off
# its float64 one there, while the loss and logits agree to ~1e-6.
TOL_LOSS, TOL_NORM, TOL_LOGITS = 1e-4, 5e-2, 1e-3


def check(what, r, ref):
    dl, dn, dz = deviation(r, ref)
    msg = "%s vs float64: loss %.1e, logits %.1e, grad norm %.1e" % (what, dl, dz, dn)
    if not (dl <= TOL_LOSS and dn <= TOL_NORM and len(r["logits0"]) == len(ref["logits0"])
            and dz <= TOL_LOGITS):
        raise SystemExit("train_step_torch: FUNCTION MISMATCH (%s; tolerances loss %.0e, logits "
                         "%.0e, grad norm %.0e): not the same network" % (msg, TOL_LOSS, TOL_LOGITS, TOL_NORM))
    return msg


def run_format(base, fmt, x, y, args):
    net = copy.deepcopy(base)  # the name registry is copied along and points at the copy's tensors
    xf = x
    if fmt == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        xf = x.contiguous(memory_format=torch.channels_last)
    net.train()
    opt = make_optimizer(net, args.lr, args.weight_decay)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.smoothing)
    times, first, loss = [], None, None
    for s in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        z = net(xf)
        loss = loss_fn(z, y)
        loss.backward()
        if s == 0:  # the check's extra pass over the gradients is not timed
            t_check = time.perf_counter()
            first = dict(loss0=float(loss), grad_norm0=grad_norm(net, args.weight_decay),
                         logits0=first_logits(z))
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
    cmd = [exe, "info", "--model", args.model, "--act", args.act, "--flavour", "tpu", "--head",
           "classifier", "--classes", str(args.classes), "--size", str(args.size), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(json.loads(out)["params"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="spinenet-mobile-49xs")
    ap.add_argument("--act", default=None, help="default: the C weights' metadata, else swish")
    ap.add_argument("--flavour", default="tpu", help="only tpu is built here")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--weight-decay", type=float, default=4e-5)
    ap.add_argument("--smoothing", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--formats", default="contiguous,channels_last")
    ap.add_argument("--c-weights", help="initial weights written by bench_train_step --save-weights")
    ap.add_argument("--c-json", help="bench_train_step --json output (a file or the line itself)")
    ap.add_argument("--spinenet", default=os.path.join(ROOT, "build", "spinenet"),
                    help="the CLI, for `spinenet info` (parameter count)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.flavour != "tpu":
        raise SystemExit("train_step_torch: only the tpu flavour is built in PyTorch (asked: %s)"
                         % args.flavour)
    if args.steps < 10:
        print("train_step_torch: note: fewer than 10 timed steps", file=sys.stderr)

    c = None
    if args.c_json:
        txt = open(args.c_json).read() if os.path.exists(args.c_json) else args.c_json
        c = json.loads(txt.strip().splitlines()[-1])
    meta, tensors = read_safetensors(args.c_weights) if args.c_weights else ({}, None)
    if args.act is None:
        args.act = meta.get("activation") or (c or {}).get("activation") or "swish"
    bn_eps = float(meta.get("bn_eps", 1e-5))  # tpu classifier default
    bn_mom = float((c or {}).get("bn_momentum", 0.9))

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    net = Net(args.model, args.act, args.classes, args.size, bn_eps, bn_mom)
    n_params = sum(p.numel() for p in net.parameters())
    want = spinenet_info_params(args)
    if want is not None and n_params != want:
        raise SystemExit("train_step_torch: PARAMETER COUNT MISMATCH: %d here, %d from spinenet info"
                         % (n_params, want))
    if c is not None and int(c["params"]) != n_params:
        raise SystemExit("train_step_torch: PARAMETER COUNT MISMATCH: %d here, %d in the C bench"
                         % (n_params, c["params"]))
    if tensors is not None:
        load_c_weights(net, tensors)

    x, y = make_batch(args.batch, args.size, args.classes, args.seed)
    checks = []
    ref = None
    if c is not None and tensors is not None:
        t_ref = time.perf_counter()
        ref = reference(net, x, y, args)
        checks.append(check("C", c, ref))
        print("train_step_torch: float64 reference step took %.1f s" % (time.perf_counter() - t_ref),
              file=sys.stderr)
    results = {}
    for fmt in [f for f in args.formats.split(",") if f]:
        if fmt not in ("contiguous", "channels_last"):
            raise SystemExit("train_step_torch: unknown memory format %r" % fmt)
        r = results[fmt] = run_format(net, fmt, x, y, args)
        if ref is not None:
            checks.append(check("PyTorch " + fmt, r, ref))
    best = max(results, key=lambda f: results[f]["images_per_s"])
    if args.json:
        out = dict(impl="torch", torch=torch.__version__, model=args.model, activation=args.act,
                   size=args.size, batch=args.batch, threads=args.threads, steps=args.steps,
                   warmup=args.warmup, params=n_params, params_checked=want is not None,
                   weights_checked=tensors is not None, function_checked=ref is not None,
                   checks=checks, best_format=best,
                   median_ms=results[best]["median_ms"], min_ms=results[best]["min_ms"],
                   images_per_s=results[best]["images_per_s"],
                   formats={f: {k: v for k, v in r.items() if k != "logits0"} for f, r in results.items()})
        print(json.dumps(out))
        return
    print("PyTorch %s training step: %s (tpu, %s), classifier %d classes, %d params%s" % (
        torch.__version__, args.model, args.act, args.classes, n_params,
        " (= spinenet info)" if want is not None else ""))
    print("  input %dx%d, batch %d, %d threads; %d warmup + %d timed steps" % (
        args.size, args.size, args.batch, args.threads, args.warmup, args.steps))
    for fmt, r in results.items():
        print("  %-13s median %.2f ms, min %.2f ms -> %.1f images/s; loss first %.5f last %.5f" % (
            fmt, r["median_ms"], r["min_ms"], r["images_per_s"], r["loss0"], r["loss_last"]))
    for m in checks:
        print("  check: " + m)
    print("  best: %s, %.1f images/s" % (best, results[best]["images_per_s"]))


if __name__ == "__main__":
    main()
