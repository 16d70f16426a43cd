#!/usr/bin/python3
"""Independent PyTorch reference for the SpineNet C implementation.

Builds SpineNet 49S/49/96/143/143L/190 and Mobile SpineNet 49/49S/49XS in two flavours
(`garden` = TF2 Model Garden, `tpu` = the original TF1 code in tensorflow/tpu), with the
RetinaNet head or the (TPU-style) classification head, fills every parameter with the
deterministic hash fill of README.md, runs the forward pass in float64 and writes the outputs
(float32, NHWC) to data/<case>.safetensors.

Written from docs/weights.md, docs/architecture.md and the official TensorFlow code
(see README.md, "Decisions"); it does not look at the C sources.

Run with Debian's python3 (torch 1.13 + numpy):  /usr/bin/python3 tests/golden/gen_golden.py
Options: --only SUBSTRING (generate matching cases only), --check-only (parameter counts only).
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

SEED = 1234
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")

# --------------------------------------------------------------------------------------------
# Deterministic hash fill (contract shared with the C code, see README.md)
# --------------------------------------------------------------------------------------------
_M64 = (1 << 64) - 1


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & _M64
    return h


def hash_fill(name, shape, seed, lo, hi):
    """float32 array of `shape` (row-major flat index i), bit-identical to sn_hash_fill."""
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    key = np.uint64(fnv1a64(name) ^ seed)
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = key + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) / 16777216.0
    v = (np.float64(lo) + (np.float64(hi) - np.float64(lo)) * u).astype(np.float32)
    return v.reshape(shape)


def fill_range(name, shape):
    """(lo, hi) of a tensor by its name (README.md table)."""
    if name == "input":
        return -1.0, 1.0
    if name == "head.fc.weight":
        s = math.sqrt(3.0 / shape[0])
        return -s, s
    if name.endswith(".weight"):
        assert len(shape) == 4, name
        s = math.sqrt(3.0 / (shape[0] * shape[1] * shape[2]))
        return -s, s
    if name.endswith(".bias") or name.endswith(".beta") or name.endswith(".mean"):
        return -0.1, 0.1
    if name.endswith(".gamma"):
        return 0.8, 1.2
    if name.endswith(".var"):
        return 0.5, 1.5
    raise ValueError("no fill range for " + name)


# --------------------------------------------------------------------------------------------
# Architecture tables
# --------------------------------------------------------------------------------------------
FILTERS = {1: 32, 2: 64, 3: 128, 4: 256, 5: 256, 6: 256, 7: 256}
BLOCK_SPECS = [  # (level, block fn, (parent0, parent1), is_output)
    (2, "bottleneck", (0, 1), False),
    (4, "residual", (0, 1), False),
    (3, "bottleneck", (2, 3), False),
    (4, "bottleneck", (2, 4), False),
    (6, "residual", (3, 5), False),
    (4, "bottleneck", (3, 5), False),
    (5, "residual", (6, 7), False),
    (7, "residual", (6, 8), False),
    (5, "bottleneck", (8, 9), False),
    (5, "bottleneck", (8, 10), False),
    (4, "bottleneck", (5, 10), True),
    (3, "bottleneck", (4, 10), True),
    (5, "bottleneck", (7, 12), True),
    (7, "bottleneck", (5, 14), True),
    (6, "bottleneck", (12, 14), True),
]
P2_ROW = (2, "bottleneck", (2, 13), True)  # Garden row 15, built only when P2 is requested

MB_FILTERS = {0: 8, 1: 16, 2: 24, 3: 40, 4: 80, 5: 112, 6: 112, 7: 112}
MB_BLOCK_SPECS = [
    (2, "mbconv", (0, 1), False),
    (2, "mbconv", (1, 2), False),
    (4, "mbconv", (1, 2), False),
    (3, "mbconv", (3, 4), False),
    (4, "mbconv", (3, 5), False),
    (6, "mbconv", (4, 6), False),
    (4, "mbconv", (4, 6), False),
    (5, "mbconv", (7, 8), False),
    (7, "mbconv", (7, 9), False),
    (5, "mbconv", (9, 10), False),
    (5, "mbconv", (9, 11), False),
    (4, "mbconv", (6, 11), True),
    (3, "mbconv", (5, 11), True),
    (5, "mbconv", (8, 13), True),
    (7, "mbconv", (6, 15), True),
    (6, "mbconv", (13, 15), True),
]

# name: endpoints filters, filter scale, resample alpha, block repeats, (head convs, head filters)
VARIANTS = {
    "spinenet-49s": dict(mobile=False, ep=128, scale=0.65, alpha=0.5, rep=1, head=(4, 128)),
    "spinenet-49": dict(mobile=False, ep=256, scale=1.0, alpha=0.5, rep=1, head=(4, 256)),
    "spinenet-96": dict(mobile=False, ep=256, scale=1.0, alpha=0.5, rep=2, head=(4, 256)),
    "spinenet-143": dict(mobile=False, ep=256, scale=1.0, alpha=1.0, rep=3, head=(4, 256)),
    "spinenet-143l": dict(mobile=False, ep=256, scale=1.3, alpha=1.0, rep=3, head=(4, 256)),
    "spinenet-190": dict(mobile=False, ep=512, scale=1.3, alpha=1.0, rep=4, head=(7, 512)),
    "spinenet-mobile-49": dict(mobile=True, ep=48, scale=1.0, rep=1, head=(4, 48)),
    "spinenet-mobile-49s": dict(mobile=True, ep=40, scale=0.65, rep=1, head=(4, 40)),
    "spinenet-mobile-49xs": dict(mobile=True, ep=24, scale=0.6, rep=1, head=(4, 24)),
}
MODEL_ORDER = list(VARIANTS)
NUM_ANCHORS = 9
EXPAND_RATIO = 6
SE_RATIO = 0.2


def default_activation(model, flavour):
    if flavour == "garden" and model in ("spinenet-mobile-49", "spinenet-mobile-49s"):
        return "hswish"
    return "swish"


def default_bn_eps(flavour, head):
    if flavour == "garden":
        return 1e-3
    return 1e-5 if head == "classifier" else 1e-4


# --------------------------------------------------------------------------------------------
# A feature map: shape always known; data (float64 NCHW torch tensor) only when executing
# --------------------------------------------------------------------------------------------
class Feat:
    __slots__ = ("t", "n", "c", "h", "w")

    def __init__(self, t, n, c, h, w):
        self.t, self.n, self.c, self.h, self.w = t, n, c, h, w
        if t is not None:
            assert tuple(t.shape) == (n, c, h, w), (tuple(t.shape), (n, c, h, w))

    def like(self, t, c=None, h=None, w=None):
        return Feat(t, self.n, self.c if c is None else c, self.h if h is None else h,
                    self.w if w is None else w)


def same_pad(n, k, s):
    """TF 'SAME' along one axis: (out, before, after)."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2, total - total // 2


def fixed_pad(n, k, s):
    """TF1 conv2d_fixed_padding along one axis (strided convs): total k-1, before (k-1)//2."""
    total = k - 1
    before = total // 2
    out = (n + total - k) // s + 1
    return out, before, total - before


def tf1_nearest_indices(n_in, n_out):
    """tf.image.resize_nearest_neighbor (TF1, align_corners=False, half_pixel_centers=False):
    src = min(floor(dst * in / out), in - 1). Exact integer formula; TF computes it in float32."""
    idx = [min((d * n_in) // n_out, n_in - 1) for d in range(n_out)]
    scale = np.float32(n_in) / np.float32(n_out)
    idx32 = [min(int(np.floor(np.float32(d) * scale)), n_in - 1) for d in range(n_out)]
    if idx != idx32:
        Net.float32_resize_mismatch.append((n_in, n_out))
    return idx


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------
class Net:
    float32_resize_mismatch = []

    def __init__(self, model, flavour, head, num_classes, activation=None, bn_eps=None,
                 min_level=3, max_level=7, p2=False, execute=True, cache=None):
        v = VARIANTS[model]
        self.model, self.flavour, self.head = model, flavour, head
        self.v = v
        self.mobile = v["mobile"]
        self.num_classes = num_classes
        self.act_name = activation or default_activation(model, flavour)
        self.bn_eps = bn_eps if bn_eps is not None else default_bn_eps(flavour, head)
        self.min_level = 2 if p2 else min_level
        self.max_level = max_level
        self.p2 = p2
        if p2:
            assert flavour == "garden" and not self.mobile, "P2 row exists only in Garden SpineNet"
        self.execute = execute
        self.params = {}  # name -> shape (insertion order = creation order)
        self.cache = cache if cache is not None else {}
        self.merges = []  # (new feature index, raw feature index) of the zero-out-degree merges
        self.log = []

    # ---- parameters ----
    def param(self, name, shape):
        shape = tuple(int(s) for s in shape)
        if name in self.params:
            assert self.params[name] == shape, (name, self.params[name], shape)
        else:
            self.params[name] = shape
        if not self.execute:
            return None
        key = (name, shape)
        if key not in self.cache:
            lo, hi = fill_range(name, shape)
            a = hash_fill(name, shape, SEED, lo, hi).astype(np.float64)
            if len(shape) == 4:  # HWIO -> OIHW (depthwise [3,3,1,C] -> [C,1,3,3])
                a = np.ascontiguousarray(a.transpose(3, 2, 0, 1))
            elif name == "head.fc.weight":  # [in, out] -> [out, in]
                a = np.ascontiguousarray(a.T)
            self.cache[key] = torch.from_numpy(a)
        return self.cache[key]

    def num_params(self):
        return sum(int(np.prod(s)) for n, s in self.params.items()
                   if not (n.endswith(".mean") or n.endswith(".var")))

    # ---- elementary ops ----
    def act(self, x, kind=None):
        kind = kind or self.act_name
        if x.t is None:
            return x
        t = x.t
        if kind == "relu":
            t = torch.relu(t)
        elif kind == "swish":
            t = t * torch.sigmoid(t)
        elif kind == "hswish":
            t = t * torch.clamp(t + 3.0, 0.0, 6.0) / 6.0
        elif kind == "sigmoid":
            t = torch.sigmoid(t)
        elif kind == "hsigmoid":
            t = torch.clamp(t + 3.0, 0.0, 6.0) * 0.16667
        else:
            raise ValueError(kind)
        return x.like(t)

    def bn(self, x, prefix):
        g = self.param(prefix + ".gamma", (x.c,))
        b = self.param(prefix + ".beta", (x.c,))
        m = self.param(prefix + ".mean", (x.c,))
        v = self.param(prefix + ".var", (x.c,))
        if x.t is None:
            return x
        scale = g / torch.sqrt(v + self.bn_eps)
        t = (x.t - m.view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)
        return x.like(t)

    def conv(self, x, name, k, cout, stride=1, depthwise=False, bias=False):
        """Convolution with the flavour's padding. Weight `name.weight` (HWIO)."""
        if depthwise:
            cout = x.c
            w = self.param(name + ".weight", (k, k, 1, x.c))
        else:
            w = self.param(name + ".weight", (k, k, x.c, cout))
        b = self.param(name + ".bias", (cout,)) if bias else None
        if stride > 1 and self.flavour == "tpu":
            (oh, ht, hb), (ow, wl, wr) = fixed_pad(x.h, k, stride), fixed_pad(x.w, k, stride)
        else:
            (oh, ht, hb), (ow, wl, wr) = same_pad(x.h, k, stride), same_pad(x.w, k, stride)
        if x.t is None:
            return Feat(None, x.n, cout, oh, ow)
        t = F.pad(x.t, (wl, wr, ht, hb))
        t = F.conv2d(t, w, b, stride=stride, groups=(x.c if depthwise else 1))
        return Feat(t, x.n, cout, oh, ow)

    def maxpool(self, x, kh, sh, kw, sw):
        """Max-pool with TF 'SAME' padding (padded cells never win), per-axis kernel/stride."""
        oh, ht, hb = same_pad(x.h, kh, sh)
        ow, wl, wr = same_pad(x.w, kw, sw)
        if x.t is None:
            return x.like(None, h=oh, w=ow)
        t = F.pad(x.t, (wl, wr, ht, hb), value=-math.inf)
        t = F.max_pool2d(t, kernel_size=(kh, kw), stride=(sh, sw))
        return x.like(t, h=oh, w=ow)

    def resize_nearest(self, x, th, tw):
        """TF1 nearest resize (src = floor(dst*in/out)) on each axis; identity if same size."""
        if (x.h, x.w) == (th, tw):
            return x
        ih, iw = tf1_nearest_indices(x.h, th), tf1_nearest_indices(x.w, tw)
        if x.t is None:
            return x.like(None, h=th, w=tw)
        t = x.t.index_select(2, torch.tensor(ih)).index_select(3, torch.tensor(iw))
        return x.like(t, h=th, w=tw)

    def upsample_int(self, x, sh, sw):
        if x.t is None:
            return x.like(None, h=x.h * sh, w=x.w * sw)
        t = x.t.repeat_interleave(sh, dim=2).repeat_interleave(sw, dim=3)
        return x.like(t, h=x.h * sh, w=x.w * sw)

    def add(self, xs):
        x0 = xs[0]
        for x in xs[1:]:
            assert (x.c, x.h, x.w) == (x0.c, x0.h, x0.w)
        if x0.t is None:
            return x0
        t = xs[0].t
        for x in xs[1:]:
            t = t + x.t
        return x0.like(t)

    def conv_bn(self, x, name, k, cout, stride=1, act=True, depthwise=False):
        x = self.bn(self.conv(x, name, k, cout, stride, depthwise=depthwise), name + ".bn")
        return self.act(x) if act else x

    # ---- sizes ----
    def level_size(self, level):
        return -(-self.H // (2 ** level)), -(-self.W // (2 ** level))

    # ---- SpineNet blocks ----
    def bottleneck(self, x, p, f, proj):
        sc = self.conv_bn(x, p + ".proj", 1, 4 * f, act=False) if proj else x
        y = self.conv_bn(x, p + ".conv1", 1, f)
        y = self.conv_bn(y, p + ".conv2", 3, f)
        y = self.conv_bn(y, p + ".conv3", 1, 4 * f, act=False)
        return self.act(self.add([y, sc]))

    def residual(self, x, p, f, proj):
        sc = self.conv_bn(x, p + ".proj", 1, f, act=False) if proj else x
        y = self.conv_bn(x, p + ".conv1", 3, f)
        y = self.conv_bn(y, p + ".conv2", 3, f, act=False)
        return self.act(self.add([y, sc]))

    def block_group(self, x, p, fn, f):
        out_c = 4 * f if fn == "bottleneck" else f
        blk = self.bottleneck if fn == "bottleneck" else self.residual
        for r in range(self.v["rep"]):
            x = blk(x, "%s.%d" % (p, r), f, proj=(r == 0 and x.c != out_c))
        return x

    def resample(self, x, parent_fn, p, th, tw, f, target_fn):
        alpha = self.v["alpha"]
        base = x.c / 4 if parent_fn == "bottleneck" else x.c
        mid = int(base * alpha)
        y = self.conv_bn(x, p + ".reduce", 1, mid)
        down = x.h > th or x.w > tw
        up = x.h < th or x.w < tw
        assert not (down and up), "mixed up/down resampling is not supported"
        if down:
            y = self.conv_bn(y, p + ".down0", 3, mid, stride=2)
            if self.flavour == "garden":
                # Model Garden: repeat 3x3/2 'SAME' max-pools while the running size (halved as
                # a real number, starting from in/2 after the conv) is still above the target.
                def count(n_in, n_t):
                    k, r = 0, n_in / 2
                    while r > n_t:
                        k, r = k + 1, r / 2
                    return k
                nh, nw = count(x.h, th), count(x.w, tw)
                for i in range(max(nh, nw)):
                    kh, sh = (3, 2) if i < nh else (1, 1)
                    kw, sw = (3, 2) if i < nw else (1, 1)
                    y = self.maxpool(y, kh, sh, kw, sw)
            else:
                # TPU resample_with_alpha: at most one max-pool, then nearest resize.
                def rule(n_in, n_t):
                    if n_in // n_t > 2:
                        s = 2 if n_in % n_t != 0 else n_in // n_t // 2
                        k = 3 if n_in / n_t <= 4 else 5
                        return k, s
                    return 1, 1
                (kh, sh), (kw, sw) = rule(x.h, th), rule(x.w, tw)
                if (kh, sh, kw, sw) != (1, 1, 1, 1):
                    y = self.maxpool(y, kh, sh, kw, sw)
                y = self.resize_nearest(y, th, tw)
        elif up:
            if self.flavour == "garden":
                y = self.upsample_int(y, th // x.h, tw // x.w)
            else:
                # integer replication when divisible, else floor(dst*in/out): one formula
                y = self.resize_nearest(y, th, tw)
        assert (y.h, y.w) == (th, tw), (p, y.h, y.w, th, tw)
        out_c = 4 * f if target_fn == "bottleneck" else f
        return self.conv_bn(y, p + ".project", 1, out_c, act=False)

    def backbone_spinenet(self, x):
        scale = self.v["scale"]
        x = self.conv_bn(x, "stem", 7, 64, stride=2)
        x = self.maxpool(x, 3, 2, 3, 2)
        f2 = int(FILTERS[2] * scale)
        feats, fns = [], []
        for i in range(2):
            x = self.block_group(x, "blocks.%d" % i, "bottleneck", f2)
            feats.append(x)
            fns.append("bottleneck")
        specs = list(BLOCK_SPECS) + ([P2_ROW] if self.p2 else [])
        outdeg = [0] * len(feats)
        outputs = {}
        for row, (level, fn, (a, b), is_out) in enumerate(specs):
            idx = len(feats)
            th, tw = self.level_size(level)
            f = int(FILTERS[level] * scale)
            x0 = self.resample(feats[a], fns[a], "blocks.%d.resample0" % idx, th, tw, f, fn)
            outdeg[a] += 1
            x1 = self.resample(feats[b], fns[b], "blocks.%d.resample1" % idx, th, tw, f, fn)
            outdeg[b] += 1
            parents = [x0, x1]
            if is_out:
                for j, fj in enumerate(feats):
                    if outdeg[j] == 0 and fj.w == tw and fj.c == x0.c:
                        assert fj.h == th
                        parents.append(fj)
                        outdeg[j] += 1
                        self.merges.append((idx, j))
            x = self.act(self.add(parents))
            x = self.block_group(x, "blocks.%d" % idx, fn, f)
            feats.append(x)
            fns.append(fn)
            outdeg.append(0)
            if is_out:
                outputs[level] = x
        return outputs

    # ---- Mobile SpineNet ----
    def mbconv(self, x, p, cin, cout, stride):
        assert x.c == cin
        se_inner, se_gate = ("relu", "hsigmoid") if self.flavour == "garden" else ("swish", "sigmoid")
        y = self.conv_bn(x, p + ".expand", 1, cin * EXPAND_RATIO)
        y = self.conv_bn(y, p + ".dw", 3, None, stride=stride, depthwise=True)
        # squeeze and excitation: reduced filters from the block's *input* filters
        r = max(1, int(cin * SE_RATIO))
        s = Feat(None if y.t is None else y.t.mean(dim=(2, 3), keepdim=True), y.n, y.c, 1, 1)
        s = self.act(self.conv(s, p + ".se_reduce", 1, r, bias=True), se_inner)
        s = self.act(self.conv(s, p + ".se_expand", 1, y.c, bias=True), se_gate)
        if y.t is not None:
            y = y.like(y.t * s.t)
        y = self.conv_bn(y, p + ".project", 1, cout, act=False)
        if cin == cout and stride == 1:
            y = self.add([y, x])
        return y

    def mb_group(self, x, p, cin, cout, stride):
        for r in range(self.v["rep"]):
            x = self.mbconv(x, "%s.%d" % (p, r), cin if r == 0 else cout, cout,
                            stride if r == 0 else 1)
        return x

    def resample_mobile(self, x, p, th, tw, f):
        y = x
        if x.h > th or x.w > tw:
            def count(n_in, n_t):
                k, r = 0, float(n_in)
                while r > n_t:
                    k, r = k + 1, r / 2
                return k
            nh, nw = count(x.h, th), count(x.w, tw)
            assert nh == nw, "mobile resampling with different H/W factors is not supported"
            if self.flavour == "tpu":
                assert x.w % tw == 0 and x.h % th == 0, "TPU mobile needs divisible sizes"
            for k in range(nw):
                y = self.conv_bn(y, "%s.down%d" % (p, k), 3, None, stride=2, depthwise=True)
        elif x.h < th or x.w < tw:
            if self.flavour == "tpu":
                assert tw % x.w == 0 and th % x.h == 0, "TPU mobile needs divisible sizes"
            y = self.upsample_int(y, th // x.h, tw // x.w)
        assert (y.h, y.w) == (th, tw), (p, y.h, y.w, th, tw)
        return self.conv_bn(y, p + ".project", 1, f, act=False)

    def backbone_mobile(self, x):
        scale = self.v["scale"]

        def fs(level):
            return int(MB_FILTERS[level] * scale)

        x = self.conv_bn(x, "stem", 3, fs(0), stride=2)
        f0 = self.mb_group(x, "blocks.0", fs(0), fs(1), 1)
        f1 = self.mb_group(f0, "blocks.1", fs(1), fs(2), 2)
        feats = [f0, f1]
        outdeg = [0, 0]
        outputs = {}
        for row, (level, fn, (a, b), is_out) in enumerate(MB_BLOCK_SPECS):
            level = min(level, self.max_level)
            idx = len(feats)
            th, tw = self.level_size(level)
            f = fs(level)
            x0 = self.resample_mobile(feats[a], "blocks.%d.resample0" % idx, th, tw, f)
            outdeg[a] += 1
            x1 = self.resample_mobile(feats[b], "blocks.%d.resample1" % idx, th, tw, f)
            outdeg[b] += 1
            parents = [x0, x1]
            if is_out:
                for j, fj in enumerate(feats):
                    if outdeg[j] == 0 and fj.w == tw and fj.c == x0.c:
                        assert fj.h == th
                        parents.append(fj)
                        outdeg[j] += 1
                        self.merges.append((idx, j))
            x = self.act(self.add(parents))
            x = self.mb_group(x, "blocks.%d" % idx, f, f, 1)
            feats.append(x)
            outdeg.append(0)
            if is_out:
                outputs[level] = x
        return outputs

    # ---- heads ----
    def head_conv(self, x, name, cout, separable):
        if separable:
            y = self.conv(x, name + ".dw", 3, None, depthwise=True)
            return self.conv(y, name, 1, cout, bias=True)
        return self.conv(x, name, 3, cout, bias=True)

    def retinanet(self, eps):
        nconv, nf = self.v["head"]
        sep = self.mobile
        out = {}
        for level in range(self.min_level, self.max_level + 1):
            for tower, n_out in (("class", NUM_ANCHORS * self.num_classes),
                                 ("box", NUM_ANCHORS * 4)):
                y = eps[level]
                for k in range(nconv):
                    name = "head.%s.conv%d" % (tower, k)
                    y = self.head_conv(y, name, nf, sep)
                    y = self.act(self.bn(y, "%s.bn_l%d" % (name, level)))
                out["%s.%d" % (tower, level)] = self.head_conv(y, "head.%s.pred" % tower, n_out, sep)
        return out

    def classifier(self, eps):
        lv = list(range(self.min_level, self.max_level + 1))
        y = eps[lv[-1]]
        for level in reversed(lv[:-1]):
            p = eps[level]
            y = self.add([self.resize_nearest(y, p.h, p.w), p])
        c = y.c
        w = self.param("head.fc.weight", (c, self.num_classes))
        b = self.param("head.fc.bias", (self.num_classes,))
        if y.t is None:
            return None
        pooled = (y.t / len(lv)).mean(dim=(2, 3))
        return pooled @ w.t() + b

    # ---- whole model ----
    def run(self, n, h, w):
        self.H, self.W = h, w
        t = None
        if self.execute:
            inp = hash_fill("input", (n, h, w, 3), getattr(self, "input_seed", SEED), -1.0, 1.0)
            self.input_nhwc = inp
            t = torch.from_numpy(inp.astype(np.float64)).permute(0, 3, 1, 2).contiguous()
        x = Feat(t, n, 3, h, w)
        outs = self.backbone_mobile(x) if self.mobile else self.backbone_spinenet(x)
        eps = {}
        for level in range(self.min_level, self.max_level + 1):
            eh, ew = self.level_size(level)
            e = self.conv_bn(outs[level], "endpoints.%d" % level, 1, self.v["ep"])
            assert (e.h, e.w) == (eh, ew), (level, e.h, e.w, eh, ew)
            eps[level] = e
        result = {"P%d" % l: eps[l] for l in eps}
        if self.head == "retinanet":
            result.update(self.retinanet(eps))
        elif self.head == "classifier":
            result["logits"] = self.classifier(eps)
        return result


# --------------------------------------------------------------------------------------------
# safetensors writer
# --------------------------------------------------------------------------------------------
def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, off = [], 0
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr, dtype="<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(hj)))
        fh.write(hj)
        for b in blobs:
            fh.write(b)


def read_safetensors(path):
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
        data = fh.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(data[b:e], dtype="<f4").reshape(v["shape"])
    return header.get("__metadata__", {}), out


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------
def make_cases():
    """Every variant x flavour x head with ReLU (scale-invariant: the input-dependent signal stays
    alive at every depth, see README "Signal strength"), plus the variants' own activations
    (swish, hard-swish and the SE gates) on the shallower models where their signal is live."""
    cases = []
    for model in MODEL_ORDER:
        mobile = VARIANTS[model]["mobile"]
        for flavour in ("garden", "tpu"):
            cases.append(dict(model=model, flavour=flavour, head="retinanet", num_classes=4,
                              batch=1, height=128, width=128, activation="relu"))
            size = 128 if (flavour == "garden" or mobile) else 96
            # The garden classifier's backbone equals the garden retinanet case's: keep only the
            # logits there, to stay small.
            cases.append(dict(model=model, flavour=flavour, head="classifier", num_classes=10,
                              batch=1, height=size, width=size, activation="relu",
                              logits_only=flavour == "garden"))
    cases.append(dict(model="spinenet-49", flavour="garden", head="retinanet", num_classes=4,
                      batch=2, height=128, width=256, activation="relu"))
    # The same batch and shape on the smallest model: the sanitizer run (SN_QUICK) keeps this
    # one and skips the SpineNet-49 cases.
    cases.append(dict(model="spinenet-mobile-49xs", flavour="garden", head="retinanet",
                      num_classes=4, batch=2, height=128, width=256, activation="relu"))
    cases.append(dict(model="spinenet-49", flavour="garden", head="none", num_classes=0,
                      batch=1, height=128, width=128, activation="relu", p2=True))
    cases.append(dict(model="spinenet-49s", flavour="tpu", head="classifier", num_classes=10,
                      batch=2, height=96, width=96, activation="relu"))
    # Default activations, backbone outputs only (the swish heads attenuate the input-dependent
    # signal below what the tolerance can see).
    for model, flavour in (("spinenet-49s", "garden"), ("spinenet-49", "tpu"),
                           ("spinenet-mobile-49", "garden"), ("spinenet-mobile-49", "tpu"),
                           ("spinenet-mobile-49xs", "garden")):
        cases.append(dict(model=model, flavour=flavour, head="none", num_classes=0,
                          batch=1, height=128, width=128))
    for c in cases:
        c.setdefault("activation", default_activation(c["model"], c["flavour"]))
        c.setdefault("p2", False)
        c.setdefault("logits_only", False)
        name = "%s__%s__%s__%dx%d" % (c["model"], c["flavour"], c["head"], c["height"], c["width"])
        name += "__" + c["activation"]
        if c["batch"] != 1:
            name += "__b%d" % c["batch"]
        if c["p2"]:
            name += "__p2"
        c["name"] = name
    return cases


def sensitivity_floor(ref):
    """The smallest change a second input must cause in an output: the C test's tolerance, so a C
    implementation that ignored its input could not pass."""
    return 1e-4 * max(1.0, float(np.abs(ref).max()))


# --------------------------------------------------------------------------------------------
# Parameter-count checks (the published SpineNet numbers)
# --------------------------------------------------------------------------------------------
def count_params(model, head, num_classes, size, flavour="garden"):
    if flavour == "garden":  # Garden needs sizes divisible by 128; counts do not depend on size
        size = -(-size // 128) * 128
    net = Net(model, flavour, head, num_classes, execute=False)
    net.run(1, size, size)
    return net.num_params()


def check_counts():
    # (model, head, classes, reference input size, expected millions, asserted by the brief)
    checks = [
        ("spinenet-49", "retinanet", 91, 640, 28.54, True),
        ("spinenet-190", "retinanet", 91, 1280, 163.64, True),
        ("spinenet-49", "classifier", 1001, 224, 22.09, True),
        ("spinenet-mobile-49", "retinanet", 91, 384, 2.34, True),
        ("spinenet-49s", "retinanet", 91, 640, 11.27, False),
        ("spinenet-96", "retinanet", 91, 1024, 42.97, False),
        ("spinenet-143", "retinanet", 91, 1280, 66.96, False),
        ("spinenet-96", "classifier", 1001, 224, 36.52, False),
        ("spinenet-143", "classifier", 1001, 224, 60.50, False),
        ("spinenet-190", "classifier", 1001, 224, 127.10, False),
    ]
    ok = True
    for model, head, ncls, size, want, required in checks:
        counts = {fl: count_params(model, head, ncls, size, fl) for fl in ("garden", "tpu")}
        assert counts["garden"] == counts["tpu"], (model, counts)
        got = counts["garden"]
        good = round(got / 1e6, 2) == want
        print("  params %-20s %-10s %4d classes @%4d: %12d = %.2f M (published %.2f M) %s"
              % (model, head, ncls, size, got, got / 1e6, want, "ok" if good else "MISMATCH"))
        if required:
            assert good, (model, head, got, want)
        ok = ok and good
    # SpineNet-49 RetinaNet @640 breakdown (stem, head, endpoints, rest)
    net = Net("spinenet-49", "garden", "retinanet", 91, execute=False)
    net.run(1, 640, 640)
    parts = {"stem": 0, "stemgroups": 0, "resample": 0, "blocks": 0, "endpoints": 0, "head": 0}
    for n, s in net.params.items():
        if n.endswith(".mean") or n.endswith(".var"):
            continue
        k = int(np.prod(s))
        if n.startswith("stem"):
            parts["stem"] += k
        elif n.startswith("blocks.0.") or n.startswith("blocks.1."):
            parts["stemgroups"] += k
        elif ".resample" in n:
            parts["resample"] += k
        elif n.startswith("blocks."):
            parts["blocks"] += k
        elif n.startswith("endpoints."):
            parts["endpoints"] += k
        else:
            parts["head"] += k
    want = {"stem": 9536, "stemgroups": 145408, "resample": 6203648, "blocks": 14290688,
            "endpoints": 1182208, "head": 6711895}
    print("  spinenet-49 @640 breakdown:", parts)
    assert parts == want, (parts, want)
    print("  spinenet-49 merges (new index, raw index):", net.merges)
    assert net.merges == [(14, 11)], net.merges
    m = Net("spinenet-mobile-49", "garden", "retinanet", 91, execute=False)
    m.run(1, 384, 384)
    print("  spinenet-mobile-49 merges (new index, raw index):", m.merges)
    assert m.merges == [(15, 12)], m.merges
    return ok


# --------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="generate only cases whose name contains this")
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--sensitivity", action="store_true",
                    help="also rerun each case with another input (fill seed+1) and print how "
                         "much each output changes (nothing is written)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    t_start = time.time()

    print("parameter-count checks (published numbers):")
    check_counts()
    if args.check_only:
        return 0

    os.makedirs(DATA, exist_ok=True)
    cases = make_cases()
    if args.only:
        cases = [c for c in cases if args.only in c["name"]]
    cache, cache_model = {}, None
    names = []
    for c in cases:
        t0 = time.time()
        if c["model"] != cache_model:
            cache, cache_model = {}, c["model"]
        net = Net(c["model"], c["flavour"], c["head"], c["num_classes"],
                  activation=c["activation"], p2=c["p2"], cache=cache)
        with torch.no_grad():
            out = net.run(c["batch"], c["height"], c["width"])
        tensors = {}
        for k, v in out.items():
            if k == "logits":
                tensors[k] = v.numpy().astype(np.float32)
            else:
                tensors[k] = v.t.permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32)
        for k, v in tensors.items():
            assert np.all(np.isfinite(v)), (c["name"], k)
        if c["logits_only"]:
            tensors = {"logits": tensors["logits"]}
        # A second input (fill seed + 1) must move every stored output well past the tolerance.
        net2 = Net(c["model"], c["flavour"], c["head"], c["num_classes"],
                   activation=c["activation"], p2=c["p2"], cache=cache)
        net2.input_seed = SEED + 1
        with torch.no_grad():
            out2 = net2.run(c["batch"], c["height"], c["width"])
        sens = []
        for k in tensors:
            a = out[k] if k == "logits" else out[k].t
            b = out2[k] if k == "logits" else out2[k].t
            d = float((a - b).abs().max())
            floor = sensitivity_floor(tensors[k])
            sens.append("%s=%.2g" % (k, d / floor))
            # Maps of 8x8 and more, and the logits, must move by 10x (5x for logits) the
            # tolerance; 1x1 and 2x2 maps at 128 px aggregate the whole image and move less.
            big = k != "logits" and tensors[k].shape[1] * tensors[k].shape[2] >= 64
            need = 10 if big else 5 if k == "logits" else 0
            assert d >= need * floor, (c["name"], k, d, floor)
        print("%-58s input change / tolerance: %s" % (c["name"], " ".join(sens)), flush=True)
        nh, nf = net.v["head"]
        meta = dict(model=c["model"], flavour=c["flavour"], head=c["head"],
                    activation=net.act_name, batch=c["batch"], height=c["height"],
                    width=c["width"], num_classes=c["num_classes"], seed=SEED,
                    min_level=net.min_level, max_level=net.max_level, p2=int(c["p2"]),
                    bn_eps=repr(net.bn_eps), head_convs=nh if c["head"] == "retinanet" else 0,
                    head_filters=nf if c["head"] == "retinanet" else 0,
                    num_params=net.num_params())
        fname = c["name"] + ".safetensors"
        write_safetensors(os.path.join(DATA, fname), tensors, meta)
        names.append(fname)
        mags = " ".join("%s=%.3g" % (k, float(np.abs(v).max())) for k, v in tensors.items()
                        if k.startswith("P") or k == "logits" or k.endswith(".3"))
        print("%-58s params %10d  merges %s  %.1fs\n    max|x|: %s"
              % (c["name"], net.num_params(), net.merges, time.time() - t0, mags))
        allmax = max(float(np.abs(v).max()) for v in tensors.values())
        assert allmax < 1e4, (c["name"], allmax)
        for k, v in tensors.items():
            assert float(np.abs(v).max()) > 1e-3, (c["name"], k)
    if not args.only and not args.sensitivity:
        with open(os.path.join(DATA, "MANIFEST"), "w") as fh:
            fh.write("".join(n + "\n" for n in names))
        total = sum(os.path.getsize(os.path.join(DATA, n)) for n in names)
        print("wrote %d cases, %.2f MB" % (len(names), total / 1e6))
        assert total < 15e6
    if Net.float32_resize_mismatch:
        print("WARNING: TF float32 nearest-resize indices differ from the exact formula for",
              sorted(set(Net.float32_resize_mismatch)))
    else:
        print("TF1 nearest resize: float32 and exact integer source indices agree for every "
              "resize performed")
    print("total time %.1fs" % (time.time() - t_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
