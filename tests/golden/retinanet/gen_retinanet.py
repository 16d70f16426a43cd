#!/usr/bin/python3
"""Goldens for the RetinaNet anchors, anchor labelling and losses (tests/test_retinanet_loss.c).

Written from the spec (§7.2-§7.5) and the facts of the official code (tensorflow/models
official/vision/ops/{anchor,box_matcher,iou_similarity}.py, losses/focal_loss.py,
tasks/retinanet.py), independently of the C code:
  * anchors: float32 centres minus/plus float32 half sizes formed in double;
  * IoU in float32 (intersection clamped at 0, union = area sum - intersection, 0 where the
    intersection is 0); each anchor takes its first-maximum ground truth, positive at >= 0.5;
    each ground truth forces its first-maximum anchor (lowest ground-truth index wins an anchor
    claimed twice; a ground truth with no overlap at all forces nothing); crowd boxes dropped;
  * box targets (dy, dx, dh, dw) in float64, no scaling weights;
  * loss in float64 with autograd: official focal-loss formula (sigmoid, pow, BCE with logits),
    Keras Huber (mean over the 4 deltas), both / (positives in the batch + 1), total = cls + 50 box.

Files (tests/golden/retinanet/*.safetensors, float32 tensors; integers are exact floats):
  anchors.safetensors   per config "<flavour><size>" (garden3, garden4, tpu3, tpu4) at 256x384,
                        levels 3..7: "<cfg>.index" [S] sampled flat anchor indices (every level's
                        first 9 and last 9 anchors plus a strided sample), "<cfg>.boxes" [S, 4];
                        "count" [1].
  labels_<cfg>.safetensors  (garden3, tpu4) 256x384, levels 3..7, 91 classes: "gt" [G, 6]
                        (ymin, xmin, ymax, xmax, class, iscrowd), "pos_index" [P], "pos_class" [P],
                        "pos_box" [P, 4] (every positive anchor, ascending); all others negative.
  loss.safetensors      garden, anchor_size 3, 128x128, levels 3..7, C = 5, batch 2. Logits and
                        deltas are the hash fill (seed 1234) of "class.L" in [-5, 3] and "box.L"
                        in [-0.3, 0.3] (shape [2, h, w, 9*C] / [2, h, w, 36]), then "overrides"
                        [K, 3] (level, flat index in that level's tensor, value) sets a few
                        extreme logits. "gt0", "gt1" [G, 6]; targets "pos_index" [P] (b * count +
                        anchor), "pos_class", "pos_box" [P, 4]; "loss" [4] = cls, box, total,
                        positives; gradients: "dcls_pos" [P, C] and "dbox_pos" [P, 4] (every
                        positive anchor), "dcls_sample" [S] at flat indices (i * 2654435761) % N
                        of the levels' gradients concatenated (level 3 first, each [2,h,w,9C]),
                        "dcls_proj" [2]: sum of that concatenation times the hash fill
                        "proj<k>:dcls" (seed 1234, [-1, 1], same flat order), in float64.
Run:  /usr/bin/python3 tests/golden/retinanet/gen_retinanet.py   (a few seconds)
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import gen_golden as G  # noqa: E402  (hash fill and safetensors writer, unchanged)

SEED = 1234
ASPECTS = {"garden": [0.5, 1.0, 2.0], "tpu": [1.0, 2.0, 0.5]}
ALPHA, GAMMA, DELTA, BOX_WEIGHT = 0.25, 1.5, 0.1, 50.0


def make_anchors(flavour, anchor_size, min_level, max_level, height, width):
    per_level = []
    for level in range(min_level, max_level + 1):
        stride = 2 ** level
        ys = torch.arange(stride / 2, height, stride, dtype=torch.float32)
        xs = torch.arange(stride / 2, width, stride, dtype=torch.float32)
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        cy, cx = cy.reshape(-1), cx.reshape(-1)
        kinds = []
        for scale in range(3):
            base = anchor_size * stride * 2 ** (scale / 3.0)
            for r in ASPECTS[flavour]:
                hx = torch.tensor(base * r ** 0.5 / 2.0, dtype=torch.float32)
                hy = torch.tensor(base * r ** -0.5 / 2.0, dtype=torch.float32)
                kinds.append(torch.stack([cy - hy, cx - hx, cy + hy, cx + hx], dim=1))
        per_level.append(torch.stack(kinds, dim=1).reshape(-1, 4))  # [hw, 9, 4] -> [hw*9, 4]
    return torch.cat(per_level, dim=0)


def iou_f32(anchors, gts):
    """[N, G] float32 IoU in the official operation order."""
    a = anchors[:, None, :]
    g = gts[None, :, :]
    ih = torch.clamp(torch.minimum(a[..., 2], g[..., 2]) - torch.maximum(a[..., 0], g[..., 0]), min=0)
    iw = torch.clamp(torch.minimum(a[..., 3], g[..., 3]) - torch.maximum(a[..., 1], g[..., 1]), min=0)
    inter = ih * iw
    area_a = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    area_g = (gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1])
    union = (area_a[:, None] + area_g[None, :]) - inter
    return torch.where(inter == 0, torch.zeros_like(inter), inter / union)


def encode(anchor, box):
    anchor, box = anchor.double(), box.double()
    ha, wa = anchor[:, 2] - anchor[:, 0], anchor[:, 3] - anchor[:, 1]
    ya, xa = (anchor[:, 0] + anchor[:, 2]) / 2, (anchor[:, 1] + anchor[:, 3]) / 2
    h, w = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    yc, xc = (box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2
    return torch.stack([(yc - ya) / ha, (xc - xa) / wa, torch.log(h / ha), torch.log(w / wa)], 1)


def label(anchors, gt, report=""):
    """gt: float64 numpy [G, 6]. Returns (cls [N] int64, box [N, 4] float64, info dict)."""
    n = anchors.shape[0]
    keep = np.nonzero(gt[:, 5] == 0)[0]
    cls = torch.zeros(n, dtype=torch.int64)
    box = torch.zeros(n, 4, dtype=torch.float64)
    if len(keep) == 0:
        return cls, box, {}
    boxes = torch.tensor(gt[keep, :4], dtype=torch.float32)
    sim = iou_f32(anchors, boxes)  # [N, K]
    vals, matched = sim.max(dim=1)  # first maximum over ground truths
    assert torch.equal(matched, torch.argmax(sim, dim=1))
    positive = vals >= 0.5
    best_anchor = torch.argmax(sim, dim=0)  # [K], first maximum over anchors
    has_overlap = sim.max(dim=0).values > 0
    onehot = torch.zeros(len(keep), n, dtype=torch.int64)
    for k in range(len(keep)):
        if has_overlap[k]:
            onehot[k, best_anchor[k]] = 1
    forced_col = torch.argmax(onehot, dim=0)  # lowest ground truth claiming the anchor
    forced = onehot.max(dim=0).values > 0
    matched = torch.where(forced, forced_col, matched)
    positive = positive | forced
    classes = torch.tensor(gt[keep, 4], dtype=torch.int64)
    cls[positive] = classes[matched[positive]]
    box[positive] = encode(anchors[positive], boxes[matched[positive]])
    # Distance of every IoU from the 0.5 threshold (both sides compute the same float32 ops, but
    # a margin makes the golden robust to a different rounding order).
    d = (sim.double() - 0.5).abs()
    margin = d[d > 0].min().item() if (d > 0).any() else 1.0
    info = dict(best_anchor=best_anchor, forced=forced, forced_col=forced_col, matched=matched,
                positive=positive, keep=keep, sim=sim, margin=margin)
    if report:
        print(f"{report}: {int(positive.sum())} positives, {int(forced.sum())} forced, "
              f"min |IoU - 0.5| = {margin:.3g}")
    return cls, box, info


def q4(x):
    return np.round(np.asarray(x) * 4.0) / 4.0  # quarter pixels: exact in float32


def label_case_gts(rng, height, width):
    """Random boxes plus the special cases the C test relies on (indices fixed here)."""
    rows = []
    for _ in range(10):
        h, w = rng.uniform(16, 200), rng.uniform(16, 200)
        y0, x0 = rng.uniform(0, height - h), rng.uniform(0, width - w)
        c = int(rng.integers(1, 91))
        while c in (5, 6, 7, 77, 88):
            c = int(rng.integers(1, 91))
        rows.append([y0, x0, y0 + h, x0 + w, c, 0])
    rows = [list(q4(r[:4])) + r[4:] for r in rows]
    rows.append(list(q4([40, 40, 220, 300])) + [77, 1])  # 10: crowd, class 77 never appears
    rows.append([100.25, 200.5, 104.25, 205.5, 5, 0])  # 11: tiny: only a forced match
    rows.append([50.0, 300.0, 58.0, 309.0, 6, 0])  # 12 and 13: small neighbours whose best
    rows.append([51.0, 301.0, 59.0, 310.0, 7, 0])  #   anchor is the same: 12 keeps it
    dup = list(rows[0])
    dup[4] = 88
    rows.append(dup)  # 14: exact duplicate of 0 with class 88: every tie goes to 0
    return np.array(rows, dtype=np.float64)


def check_label_case(gt, cls, info):
    keep = list(info["keep"])
    col = {orig: k for k, orig in enumerate(keep)}
    assert 10 not in keep and not (cls == 77).any(), "crowd box must be skipped"
    k11 = col[11]
    assert info["sim"][:, k11].max() < 0.5 and info["forced"][info["best_anchor"][k11]]
    assert int((cls == 5).sum()) == 1, "tiny box: exactly its forced anchor"
    k12, k13 = col[12], col[13]
    assert info["best_anchor"][k12] == info["best_anchor"][k13], "12 and 13 share a best anchor"
    assert info["sim"][:, k12].max() < 0.5 and info["sim"][:, k13].max() < 0.5
    assert int((cls == 6).sum()) == 1 and int((cls == 7).sum()) == 0, "12 wins, 13 loses"
    assert int((cls == 88).sum()) == 0 and int((cls == gt[0, 4]).sum()) > 0, "ties go to 0"


def write(path, tensors, meta):
    G.write_safetensors(path, tensors, meta)
    print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path)} bytes)")


def gen_anchors():
    H, W = 256, 384
    t = {}
    count = None
    for flavour in ("garden", "tpu"):
        for size in (3, 4):
            a = make_anchors(flavour, size, 3, 7, H, W)
            n = a.shape[0]
            starts = [0]
            for level in range(3, 8):
                starts.append(starts[-1] + (H >> level) * (W >> level) * 9)
            assert starts[-1] == n
            count = n
            idx = set()
            for s, e in zip(starts[:-1], starts[1:]):
                idx.update(range(s, s + 9))
                idx.update(range(e - 9, e))
            idx.update(range(5, n, 97))
            idx = np.array(sorted(idx))
            cfg = f"{flavour}{size}"
            t[f"{cfg}.index"] = idx.astype(np.float32)
            t[f"{cfg}.boxes"] = a[idx].numpy()
    t["count"] = np.array([count], dtype=np.float32)
    write(os.path.join(HERE, "anchors.safetensors"), t,
          dict(height=H, width=W, min_level=3, max_level=7))


def gen_labels():
    H, W = 256, 384
    rng = np.random.default_rng(20240601)
    gt = label_case_gts(rng, H, W)
    for flavour, size in (("garden", 3), ("tpu", 4)):
        anchors = make_anchors(flavour, size, 3, 7, H, W)
        cls, box, info = label(anchors, gt, report=f"labels {flavour}{size}")
        check_label_case(gt, cls, info)
        pos = torch.nonzero(cls > 0).reshape(-1)
        write(os.path.join(HERE, f"labels_{flavour}{size}.safetensors"),
              {"gt": gt.astype(np.float32), "pos_index": pos.numpy().astype(np.float32),
               "pos_class": cls[pos].numpy().astype(np.float32),
               "pos_box": box[pos].numpy().astype(np.float32)},
              dict(flavour=flavour, anchor_size=size, height=H, width=W, min_level=3,
                   max_level=7, num_classes=91))


def focal_huber(logits, deltas, cls_t, box_t, num_classes):
    """logits [B, N, C], deltas [B, N, 4] (float64, leaves); cls_t [B, N]; box_t [B, N, 4]."""
    y = F.one_hot(cls_t, num_classes).double()
    y[..., 0] = 0  # column 0 is background: negatives are all zero
    p = torch.sigmoid(logits)
    pos = y == 1.0
    p_t = torch.where(pos, p, 1.0 - p)
    ce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    fl = torch.where(pos, ALPHA * (1.0 - p_t) ** GAMMA * ce, (1.0 - ALPHA) * (1.0 - p_t) ** GAMMA * ce)
    err = (deltas - box_t).abs()
    hub = torch.where(err <= DELTA, 0.5 * err ** 2, DELTA * err - 0.5 * DELTA ** 2).mean(dim=-1)
    w = (cls_t > 0).double()
    npos = w.sum() + 1.0
    cls_loss = fl.sum() / npos
    box_loss = (hub * w).sum() / npos
    return cls_loss, box_loss, cls_loss + BOX_WEIGHT * box_loss, int(w.sum())


def gen_loss():
    H = W = 128
    B, C = 2, 5
    levels = range(3, 8)
    anchors = make_anchors("garden", 3, 3, 7, H, W)
    n = anchors.shape[0]
    rng = np.random.default_rng(7)
    gts, cls_t, box_t = [], [], []
    for b in range(B):
        rows = []
        for _ in range(5):
            h, w = rng.uniform(10, 100), rng.uniform(10, 100)
            y0, x0 = rng.uniform(0, H - h), rng.uniform(0, W - w)
            rows.append(list(q4([y0, x0, y0 + h, x0 + w])) + [int(rng.integers(1, C)), 0])
        rows.append(list(q4([10, 10, 90, 120])) + [2, 1])  # crowd
        g = np.array(rows, dtype=np.float64)
        c, bx, _ = label(anchors, g, report=f"loss image {b}")
        gts.append(g)
        cls_t.append(c)
        box_t.append(bx)
    cls_t = torch.stack(cls_t)
    box_t = torch.stack(box_t)

    shapes = {L: (B, H >> L, W >> L) for L in levels}
    cls_lv = {L: G.hash_fill(f"class.{L}", shapes[L] + (9 * C,), SEED, -5.0, 3.0) for L in levels}
    box_lv = {L: G.hash_fill(f"box.{L}", shapes[L] + (36,), SEED, -0.3, 0.3) for L in levels}
    overrides = [(3, 0, 80.0), (3, 7, -80.0), (4, 11, 30.0), (5, 3, -30.0), (7, 44, 1e3),
                 (6, 100, -1e3)]
    # Make some of them land on positive targets too: the positives' own columns at level 3.
    pos_idx = torch.nonzero(cls_t.reshape(-1) > 0).reshape(-1)
    for i, v in zip(pos_idx[:2].tolist(), (60.0, -60.0)):
        b, a = divmod(i, n)
        assert a < (H >> 3) * (W >> 3) * 9, "first positives expected at level 3"
        overrides.append((3, (b * (n_level(3, H, W)) + a) * C + int(cls_t[b, a]), v))
    for L, i, v in overrides:
        cls_lv[L].reshape(-1)[i] = v

    def to_flat(lv, k):  # per-level [B, h, w, 9k] -> [B, N, k]
        return torch.cat([torch.from_numpy(lv[L].astype(np.float64)).reshape(B, -1, k)
                          for L in levels], dim=1)

    logits = to_flat(cls_lv, C).requires_grad_(True)
    deltas = to_flat(box_lv, 4).requires_grad_(True)
    cls_loss, box_loss, total, npos = focal_huber(logits, deltas, cls_t, box_t, C)
    gl, gd = torch.autograd.grad(total, (logits, deltas))
    print(f"loss: cls {cls_loss.item():.9g} box {box_loss.item():.9g} total {total.item():.9g} "
          f"positives {npos}")
    e = (deltas - box_t).abs()[cls_t > 0]
    print(f"huber: {int((e <= DELTA).sum())} quadratic, {int((e > DELTA).sum())} linear deltas")
    assert (e <= DELTA).sum() > 10 and (e > DELTA).sum() > 10

    # Gradients back to the per-level layout, concatenated level after level.
    parts, off = [], 0
    for L in levels:
        m = n_level(L, H, W)
        parts.append(gl[:, off:off + m, :].reshape(-1))
        off += m
    flat = torch.cat(parts)
    N = flat.numel()
    S = 2048
    sample_idx = [(i * 2654435761) % N for i in range(S)]
    proj = [float((flat * torch.from_numpy(G.hash_fill(f"proj{k}:dcls", (N,), SEED, -1.0, 1.0)
                                            .astype(np.float64))).sum()) for k in range(2)]
    pos = torch.nonzero(cls_t.reshape(-1) > 0).reshape(-1)
    write(os.path.join(HERE, "loss.safetensors"),
          {"gt0": gts[0].astype(np.float32), "gt1": gts[1].astype(np.float32),
           "overrides": np.array(overrides, dtype=np.float32),
           "pos_index": pos.numpy().astype(np.float32),
           "pos_class": cls_t.reshape(-1)[pos].numpy().astype(np.float32),
           "pos_box": box_t.reshape(-1, 4)[pos].numpy().astype(np.float32),
           "loss": np.array([cls_loss.item(), box_loss.item(), total.item(), npos], dtype=np.float32),
           "dcls_pos": gl.reshape(-1, C)[pos].numpy().astype(np.float32),
           "dbox_pos": gd.reshape(-1, 4)[pos].numpy().astype(np.float32),
           "dcls_sample": flat[sample_idx].numpy().astype(np.float32),
           "dcls_proj": np.array(proj, dtype=np.float32)},
          dict(flavour="garden", anchor_size=3, height=H, width=W, min_level=3, max_level=7,
               num_classes=C, batch=B, seed=SEED, alpha=ALPHA, gamma=GAMMA, huber_delta=DELTA,
               box_weight=BOX_WEIGHT, sample_count=S, sample_index="(i * 2654435761) % N"))


def n_level(L, H, W):
    return (H >> L) * (W >> L) * 9


if __name__ == "__main__":
    gen_anchors()
    gen_labels()
    gen_loss()
