#!/usr/bin/python3
"""Whole-network gradient goldens for the SpineNet C training path (see README.md, "Gradient
goldens").

Reuses the float64 PyTorch reference of gen_golden.py (same architecture, same hash fill, seed
1234) without changing it: a subclass switches every BN to TRAINING mode (batch mean, biased batch
variance in the normalisation; running stats updated with momentum and, as TF's fused BN, the
unbiased batch variance) and marks every trainable parameter (conv/dense weights, biases, BN
gamma/beta) as requiring grad. Loss = softmax cross-entropy with label smoothing 0.1, mean over
the batch, labels [3, 7]. No stochastic depth (rate 0), no weight decay.

Writes grad/<case>.safetensors and grad/MANIFEST. Run:  /usr/bin/python3 tests/golden/gen_grad_golden.py
Options: --only SUBSTR, --no-fd (skip the finite-difference check), --no-f32 (skip the float32
error measurement).
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_golden as G  # noqa: E402

OUT = os.path.join(HERE, "grad")
SEED = G.SEED
LABELS = [3, 7]
SMOOTHING = 0.1
NUM_PROJ = 4
NUM_SAMPLES = 16
SAMPLE_MULT = 2654435761


def is_running(name):
    return name.endswith(".mean") or name.endswith(".var")


class TrainNet(G.Net):
    """G.Net with training-mode BN and trainable leaf parameters."""

    def __init__(self, *a, momentum=0.99, unbiased_running_var=True, dtype=torch.float64, **kw):
        super().__init__(*a, **kw)
        self.momentum = momentum
        self.unbiased = unbiased_running_var
        self.dtype = dtype
        self.running = {}  # name (.mean/.var) -> updated running stat (float64 tensor)

    def param(self, name, shape):
        t = super().param(name, shape)
        if t is None:
            return t
        if t.dtype != self.dtype:  # float32 experiment: convert once, keep in the cache
            t = t.to(self.dtype)
            self.cache[(name, tuple(int(s) for s in shape))] = t
        if not is_running(name) and not t.requires_grad:
            t.requires_grad_(True)
        return t

    def bn(self, x, prefix):
        g = self.param(prefix + ".gamma", (x.c,))
        b = self.param(prefix + ".beta", (x.c,))
        m = self.param(prefix + ".mean", (x.c,))
        v = self.param(prefix + ".var", (x.c,))
        if x.t is None:
            return x
        t = x.t
        rows = t.shape[0] * t.shape[2] * t.shape[3]
        mu = t.mean(dim=(0, 2, 3))
        d = t - mu.view(1, -1, 1, 1)
        var = (d * d).mean(dim=(0, 2, 3))  # biased: used in the normalisation
        inv = 1.0 / torch.sqrt(var + self.bn_eps)
        y = d * (g * inv).view(1, -1, 1, 1) + b.view(1, -1, 1, 1)
        with torch.no_grad():
            vr = var * (rows / (rows - 1.0)) if self.unbiased else var
            mom = self.momentum
            self.running[prefix + ".mean"] = (mom * m.double() + (1.0 - mom) * mu.double())
            self.running[prefix + ".var"] = (mom * v.double() + (1.0 - mom) * vr.double())
        return x.like(y)


def to_hwio(name, t):
    """Torch layout (OIHW / fc [out,in]) -> the stored layout of README (HWIO / fc [in,out])."""
    if t.dim() == 4:
        return t.permute(2, 3, 1, 0).contiguous()
    if name == "head.fc.weight":
        return t.t().contiguous()
    return t


def loss_fn(logits, labels, classes, s):
    logp = torch.log_softmax(logits, dim=1)
    target = torch.full_like(logp, s / classes)
    target[torch.arange(len(labels)), torch.tensor(labels)] += 1.0 - s
    return -(target * logp).sum(dim=1).mean()


def forward(c, dtype=torch.float64, cache=None):
    net = TrainNet(c["model"], c["flavour"], "classifier", c["num_classes"],
                   activation=c["activation"], bn_eps=c["bn_eps"], cache=cache if cache is not None else {},
                   momentum=c["momentum"], unbiased_running_var=True, dtype=dtype)
    if dtype != torch.float64:
        G_run_input_dtype(net, dtype)
    out = net.run(c["batch"], c["height"], c["width"])
    logits = out["logits"]
    loss = loss_fn(logits, LABELS, c["num_classes"], SMOOTHING)
    return net, logits, loss


def G_run_input_dtype(net, dtype):
    """Make Net.run build its input in `dtype` (it builds float64); wraps backbone entry."""
    for attr in ("backbone_mobile", "backbone_spinenet"):
        orig = getattr(net, attr)

        def wrapped(x, _orig=orig):
            return _orig(x.like(x.t.to(dtype)))
        setattr(net, attr, wrapped)


def trainable(net):
    """(name, HWIO shape, torch leaf) in creation order."""
    res = []
    for name, shape in net.params.items():
        if is_running(name):
            continue
        res.append((name, shape, net.cache[(name, shape)]))
    return res


def proj_vectors(name, shape):
    return [G.hash_fill("proj%d:%s" % (k, name), shape, SEED, -1.0, 1.0).reshape(-1).astype(np.float64)
            for k in range(NUM_PROJ)]


def sample_idx(count):
    return [(i * SAMPLE_MULT) % count for i in range(NUM_SAMPLES)]


def summarize(name, shape, g):
    """g: float64 numpy, HWIO flat. -> proj[4], norm, samples[16]."""
    g = g.reshape(-1)
    r = proj_vectors(name, shape)
    proj = np.array([float(np.dot(g, rk)) for rk in r])
    norm = float(np.sqrt(np.dot(g, g)))
    samp = g[sample_idx(g.size)]
    rn = np.array([float(np.sqrt(np.dot(rk, rk))) for rk in r])
    return proj, norm, samp, rn


def grads_of(net, loss):
    params = trainable(net)
    gs = torch.autograd.grad(loss, [p for _, _, p in params])
    return {n: to_hwio(n, gt.detach()).double().numpy() for (n, s, _), gt in zip(params, gs)}, \
        {n: s for n, s, _ in params}


def fd_check(c, grads, shapes, n_checks=6):
    """Central differences in float64 on a few single elements (HWIO flat index)."""
    cache = {}
    net, _, loss0 = forward(c, cache=cache)
    names = [n for n in shapes]
    picks = []
    want = ["stem.weight", "stem.bn.gamma", "head.fc.weight", "head.fc.bias"]
    for w in want:
        if w in shapes:
            picks.append(w)
    mids = [n for n in names if n.endswith(".weight") and n not in picks]
    picks += [mids[len(mids) // 3], mids[2 * len(mids) // 3]]
    betas = [n for n in names if n.endswith(".beta")]
    picks.append(betas[len(betas) // 2])
    rng = np.random.RandomState(7)
    worst = 0.0
    for name in picks:
        shape = shapes[name]
        g = grads[name].reshape(-1)
        # the element with the largest |g| among 50 random ones (avoid ~0 gradients)
        cand = rng.randint(0, g.size, size=min(50, g.size))
        i = int(cand[np.argmax(np.abs(g[cand]))])
        # HWIO flat index -> torch tensor index
        hw = np.unravel_index(i, shape)
        if len(shape) == 4:
            tidx = (hw[3], hw[2], hw[0], hw[1])
        elif name == "head.fc.weight":
            tidx = (hw[1], hw[0])
        else:
            tidx = hw
        leaf = cache[(name, shape)]
        best = None
        # A kink (ReLU, relu6 of the SE gate, max-pool) crossed inside +-h biases the difference;
        # shrink h when the first one disagrees and keep the best agreement.
        for h in (1e-6, 1e-7, 1e-8):
            vals = []
            for sgn in (1, -1):
                with torch.no_grad():
                    old = float(leaf[tidx])
                    leaf[tidx] = old + sgn * h
                    _, _, lo = forward(c, cache=cache)
                    leaf[tidx] = old
                vals.append(float(lo))
            fd = (vals[0] - vals[1]) / (2 * h)
            rel = abs(fd - g[i]) / max(abs(g[i]), 1e-12)
            print("    fd %-45s [%7d] h %.0e autograd % .9e  fd % .9e  rel %.1e"
                  % (name, i, h, g[i], fd, rel), flush=True)
            best = rel if best is None else min(best, rel)
            if best < 1e-6:
                break
        worst = max(worst, best)
    return worst


def f32_errors(c, grads, shapes, logits64, loss64):
    """Rerun the same computation in float32 (torch CPU kernels) and measure the errors of every
    stored quantity in the units of the recommended rule: e = |x32 - x64| / (S_t * |r_k|) for a
    projection and |x32 - x64| / S_t for a sample or the norm, with S_t = max(|g_t|, 1e-3 * G),
    G = median over tensors of |g_t| (tensors whose exact gradient cancels to ~0 are measured
    against the floor)."""
    net, logits, loss = forward(c, dtype=torch.float32)
    g32, _ = grads_of(net, loss)
    norms = sorted(float(np.sqrt((g * g).sum())) for g in grads.values())
    G = norms[len(norms) // 2]
    rows = []
    for name, shape in shapes.items():
        p64, n64, s64, rn = summarize(name, shape, grads[name])
        p32, n32, s32, _ = summarize(name, shape, g32[name].astype(np.float32).astype(np.float64))
        S = max(n64, 1e-3 * G)
        ep = float(np.max(np.abs(p32 - p64) / (S * rn)))
        es = float(np.max(np.abs(s32 - s64))) / S
        en = abs(n32 - n64) / S
        ef = float(np.max(np.abs(g32[name] - grads[name]))) / S
        rows.append((ep, es, en, ef, name))
    el = float((logits.double() - logits64).abs().max())
    eloss = abs(float(loss) - float(loss64))
    er = 0.0
    for k, v in net.running.items():
        r64 = net_running64[k]
        er = max(er, float(((v - r64).abs() / r64.abs().clamp(min=1e-3)).max()))

    def q(col):
        v = sorted(r[col] for r in rows)
        return "median %.1e p90 %.1e p99 %.1e max %.1e (%s)" % (
            v[len(v) // 2], v[int(len(v) * 0.9)], v[min(len(v) - 1, int(len(v) * 0.99))], v[-1],
            max(rows, key=lambda r: r[col])[4])
    print("    float32 vs float64 (G = median |g_t| = %.3g): |dloss| %.2e  max|dlogits| %.2e  "
          "running max rel %.2e" % (G, eloss, el, er))
    print("      proj  : " + q(0))
    print("      sample: " + q(1))
    print("      norm  : " + q(2))
    print("      full  : " + q(3), flush=True)
    return rows


net_running64 = {}


def make_cases():
    cases = [
        # 256 px, like 49S: at 128 px the 1x1 level-7 maps make float32 gradients drift ~20%.
        dict(model="spinenet-mobile-49xs", flavour="garden", batch=2, height=256, width=256,
             activation="swish", full=False),
        # 49S at 256 px: at 96/128 px the level-7 maps are 1x1 (and level 6 2x2), so with batch 2
        # a training-mode BN normalises 2 (or 8) values; the network is then so ill-conditioned
        # that float32 and float64 forwards already disagree by 0.2 in the logits (README).
        dict(model="spinenet-49s", flavour="tpu", batch=2, height=256, width=256,
             activation="relu", full=False),
        dict(model="spinenet-49s", flavour="garden", batch=2, height=256, width=256,
             activation="relu", full=False),
    ]
    extra = os.environ.get("GRAD_EXTRA")  # model,flavour,size,act,batch (experiments only)
    if extra:
        m, f, sz, a, b = extra.split(",")
        cases.append(dict(model=m, flavour=f, batch=int(b), height=int(sz), width=int(sz),
                          activation=a, full=False))
    for c in cases:
        c["num_classes"] = 10
        c["bn_eps"] = G.default_bn_eps(c["flavour"], "classifier")
        c["momentum"] = 0.99 if c["flavour"] == "garden" else 0.9
        c["name"] = "%s__%s__classifier__%dx%d__%s__b%d__train" % (
            c["model"], c["flavour"], c["height"], c["width"], c["activation"], c["batch"])
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--no-fd", action="store_true")
    ap.add_argument("--no-f32", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    cases = [c for c in make_cases() if args.only in c["name"]]
    names = []
    t_all = time.time()
    for c in cases:
        t0 = time.time()
        net, logits, loss = forward(c)
        grads, shapes = grads_of(net, loss)
        t_fb = time.time() - t0
        net_running64.clear()
        net_running64.update(net.running)
        print("%s: loss %.9f  params %d (%d tensors)  forward+backward %.1fs"
              % (c["name"], float(loss), net.num_params(), len(shapes), t_fb), flush=True)
        tensors = {"loss": np.array([float(loss)]), "logits": logits.detach().numpy()}
        for name, shape in shapes.items():
            g = grads[name]
            assert np.all(np.isfinite(g)), name
            if c["full"]:
                tensors["grad." + name] = g
            p, n, s, _ = summarize(name, shape, g)
            tensors["gradproj." + name] = p
            tensors["gradnorm." + name] = np.array([n])
            tensors["gradsample." + name] = s
        for name, shape in net.params.items():
            if is_running(name):
                tensors["running." + name] = net.running[name].numpy()
        gn = sorted((float(np.sqrt((g * g).sum())), n) for n, g in grads.items())
        print("    |g| min %.3g (%s)  median %.3g  max %.3g (%s); zero-grad tensors: %d"
              % (gn[0][0], gn[0][1], gn[len(gn) // 2][0], gn[-1][0], gn[-1][1],
                 sum(1 for v, _ in gn if v == 0.0)))
        meta = dict(model=c["model"], flavour=c["flavour"], head="classifier",
                    activation=c["activation"], batch=c["batch"], height=c["height"],
                    width=c["width"], num_classes=c["num_classes"], seed=SEED,
                    labels=",".join(str(l) for l in LABELS), label_smoothing=repr(SMOOTHING),
                    bn_momentum=repr(c["momentum"]), bn_eps=repr(c["bn_eps"]),
                    unbiased_running_var=1, stochastic_depth=0, weight_decay=0,
                    min_level=3, max_level=7, num_params=net.num_params(),
                    grad_storage="full+proj" if c["full"] else "proj",
                    grad_layout="HWIO (depthwise [3,3,1,C]), head.fc.weight [in,out]",
                    proj_k=NUM_PROJ, proj_fill="hash_fill('proj<k>:'+name, seed, -1, 1)",
                    sample_count=NUM_SAMPLES, sample_index="(i*%d) %% count" % SAMPLE_MULT)
        fname = c["name"] + ".safetensors"
        G.write_safetensors(os.path.join(OUT, fname), tensors, meta)
        names.append(fname)
        print("    wrote %s (%.2f MB)" % (fname, os.path.getsize(os.path.join(OUT, fname)) / 1e6))
        if not args.no_fd:
            t1 = time.time()
            w = fd_check(c, grads, shapes)
            print("    fd worst rel %.1e (%.1fs)" % (w, time.time() - t1))
            assert w < 1e-4, w
        if not args.no_f32:
            f32_errors(c, grads, shapes, logits.detach(), loss.detach())
        print("    case time %.1fs" % (time.time() - t0), flush=True)
    if not args.only:
        with open(os.path.join(OUT, "MANIFEST"), "w") as fh:
            fh.write("".join(n + "\n" for n in names))
        total = sum(os.path.getsize(os.path.join(OUT, n)) for n in names)
        print("wrote %d cases, %.2f MB" % (len(names), total / 1e6))
        assert total < 5e6
    print("total time %.1fs" % (time.time() - t_all))
    return 0


if __name__ == "__main__":
    sys.exit(main())
