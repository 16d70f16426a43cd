#!/usr/bin/python3
"""PyTorch / torchvision references for the RetinaNet post-processing (src/post/).

Writes three small safetensors files next to this script:
  decode.safetensors  box decoding (spec 7.3) of random deltas on random anchors, including
                      dh/dw above the log(1000/16) clip and boxes leaving the image;
  nms.safetensors     torchvision.ops.nms / batched_nms on overlapping random boxes with tied
                      scores, at several IoU thresholds, plus pairwise IoUs;
  detect.safetensors  the detection generator of spec 7.4 on a 128x128 layout (levels 3..7,
                      9 anchors, 91 classes, 2 images) with two parameter sets.

The detection inputs are not stored: both sides rebuild them from the shared hash fill of
tests/golden/README.md (see `logits_from_u` for the contract), so only the anchors and the
results are in the file. Run with Debian's python3 (torch 1.13, torchvision 0.14):
    /usr/bin/python3 tests/golden/post/gen_post.py
"""
import math
import os
import sys

import numpy as np
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from gen_golden import hash_fill, write_safetensors  # noqa: E402

CLIP = math.log(1000.0 / 16.0)
torch.set_num_threads(2)


# ---------------------------------------------------------------------------------------------
# Box coding, IoU and NMS references (float32 unless told otherwise)
# ---------------------------------------------------------------------------------------------
def decode(deltas, anchors, img_h, img_w, clip=CLIP):
    """Garden box_ops.decode_boxes order of operations, then clip to [0, H] x [0, W]."""
    dy, dx, dh, dw = deltas.unbind(-1)
    dh = torch.clamp(dh, max=clip)
    dw = torch.clamp(dw, max=clip)
    ha = anchors[:, 2] - anchors[:, 0]
    wa = anchors[:, 3] - anchors[:, 1]
    yca = anchors[:, 0] + 0.5 * ha
    xca = anchors[:, 1] + 0.5 * wa
    yc = dy * ha + yca
    xc = dx * wa + xca
    h = torch.exp(dh) * ha
    w = torch.exp(dw) * wa
    ymin = yc - 0.5 * h
    xmin = xc - 0.5 * w
    out = torch.stack([ymin, xmin, ymin + h, xmin + w], -1)
    lim = torch.tensor([img_h, img_w, img_h, img_w], dtype=out.dtype)
    return torch.minimum(torch.clamp(out, min=0), lim)


def to_xyxy(b):
    """(ymin, xmin, ymax, xmax) -> torchvision's (x1, y1, x2, y2)."""
    return b[:, [1, 0, 3, 2]]


def greedy_nms(boxes, scores, thr):
    """Plain greedy NMS in (score desc, index asc) order; a check on torchvision."""
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    b = boxes
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    kept = []
    for i in order:
        ok = True
        if kept:
            k = torch.tensor(kept)
            yy1 = torch.maximum(b[k, 0], b[i, 0])
            xx1 = torch.maximum(b[k, 1], b[i, 1])
            yy2 = torch.minimum(b[k, 2], b[i, 2])
            xx2 = torch.minimum(b[k, 3], b[i, 3])
            inter = torch.clamp(xx2 - xx1, min=0) * torch.clamp(yy2 - yy1, min=0)
            iou = inter / (area[k] + area[i] - inter)
            ok = not bool((iou > thr).any())
        if ok:
            kept.append(i)
    return kept


def tv_nms(boxes, scores, thr):
    return torchvision.ops.nms(to_xyxy(boxes), scores, thr).tolist()


def rank_sort(idx, scores):
    """Indices re-sorted by (score desc, index asc): the C functions' documented order."""
    return sorted(idx, key=lambda i: (-float(scores[i]), i))


# ---------------------------------------------------------------------------------------------
# (a) decode
# ---------------------------------------------------------------------------------------------
def case_decode(rng):
    n = 512
    img_h, img_w = 96.0, 160.0  # not square, so a swapped axis shows
    yc = rng.uniform(-20, 116, n)
    xc = rng.uniform(-20, 180, n)
    h = np.exp(rng.uniform(np.log(2), np.log(200), n))
    w = np.exp(rng.uniform(np.log(2), np.log(200), n))
    anchors = np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], 1).astype(np.float32)
    deltas = rng.normal(0, 1.0, (n, 4)).astype(np.float32)
    # dh/dw above the clip (and far above, where exp without the clip would overflow).
    sel = rng.choice(n, 96, replace=False)
    deltas[sel[:32], 2] = rng.uniform(4.2, 12, 32)
    deltas[sel[32:64], 3] = rng.uniform(4.2, 12, 32)
    deltas[sel[64:], 2:] = rng.uniform(-8, 100, (32, 2))
    deltas[sel[:8], 2] = CLIP  # exactly at the clip (float32 rounding of it)
    a = torch.from_numpy(anchors)
    d = torch.from_numpy(deltas)
    out = decode(d, a, img_h, img_w)
    out64 = decode(d.double(), a.double(), img_h, img_w)
    assert float((out.double() - out64).abs().max()) < 1e-3
    raw = decode(d, a, 1e30, 1e30)
    outside = (raw[:, 0] < 0) | (raw[:, 1] < 0) | (raw[:, 2] > img_h) | (raw[:, 3] > img_w)
    n_out = int(outside.sum())
    n_clip = int(((deltas[:, 2] > CLIP) | (deltas[:, 3] > CLIP)).sum())
    print(f"decode: {n} boxes, {n_clip} hit the dh/dw clip, {n_out} leave the image")
    assert n_out > 100 and n_clip > 60
    return ({"anchors": anchors, "deltas": deltas, "boxes": out.numpy()},
            {"image_h": img_h, "image_w": img_w, "clip": repr(CLIP)})


# ---------------------------------------------------------------------------------------------
# (b) NMS
# ---------------------------------------------------------------------------------------------
def case_nms(rng):
    n = 400
    # Boxes on a half-pixel grid around a few centres: heavy overlaps, exact IoU values
    # (including some exactly at the thresholds), and ties in score.
    centres = rng.uniform(10, 90, (12, 2))
    c = centres[rng.integers(0, 12, n)] + rng.normal(0, 4, (n, 2))
    hw = rng.uniform(4, 30, (n, 2))
    b = np.concatenate([c - hw / 2, c + hw / 2], 1)
    b = (np.round(b * 2) / 2).astype(np.float32)
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 0.5)
    b[:8] = [[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 10], [0, 0, 10, 10],
             [20, 20, 30, 30], [20, 20, 30, 30], [40, 40, 40, 50], [40, 40, 40, 50]]
    scores = (np.floor(rng.uniform(0, 1, n) * 32) / 32).astype(np.float32)
    scores[:8] = [0.9, 0.8, 0.9, 0.9, 0.7, 0.7, 0.6, 0.6]
    classes = rng.integers(0, 4, n).astype(np.int64)
    classes[:8] = [0, 0, 1, 0, 2, 3, 0, 0]
    bt, st, ct = torch.from_numpy(b), torch.from_numpy(scores), torch.from_numpy(classes)
    tensors = {"boxes": b, "scores": scores, "classes": classes.astype(np.float32)}
    ties = n - len(np.unique(scores))
    for thr in (0.3, 0.5, 0.7):
        tag = f"{int(thr * 10):02d}"
        plain = tv_nms(bt, st, thr)
        assert plain == greedy_nms(bt, st, thr), "torchvision.ops.nms != greedy reference"
        aware = torchvision.ops.batched_nms(to_xyxy(bt), st, ct, thr).tolist()
        mine = []
        for k in range(4):
            idx = np.nonzero(classes == k)[0]
            mine += [int(idx[j]) for j in greedy_nms(bt[idx], st[idx], thr)]
        assert sorted(aware) == sorted(mine), "batched_nms != per-class greedy reference"
        # torchvision orders ties in batched_nms arbitrarily: store the documented C order.
        tensors[f"keep_t{tag}"] = np.array(rank_sort(plain, scores), np.float32)
        tensors[f"keep_class_t{tag}"] = np.array(rank_sort(aware, scores), np.float32)
        print(f"nms t={thr}: {len(plain)} kept plain, {len(aware)} class-aware "
              f"(of {n}, {ties} tied scores)")
    # The exact-threshold pair: IoU([0,0,10,10], [0,0,10,5]) = 50 / 100 = 0.5 is not > 0.5.
    iou = torchvision.ops.box_iou(to_xyxy(bt[:64]), to_xyxy(bt[:64]))
    assert float(iou[0, 1]) == 0.5
    tensors["iou64"] = iou.numpy()
    return tensors, {"n": n}


# ---------------------------------------------------------------------------------------------
# (c) the detection generator
# ---------------------------------------------------------------------------------------------
LEVELS = (3, 4, 5, 6, 7)
A, C, N, SIZE, SEED = 9, 91, 2, 128, 7


def anchors_for(size, levels, anchor_size=3.0, ratios=(0.5, 1.0, 2.0)):
    """Spec 7.2 (Garden ratio order), float64 then float32."""
    out = []
    for lv in levels:
        s = 2 ** lv
        n = -(-size // s)
        for i in range(n):
            for j in range(n):
                yc, xc = s / 2 + i * s, s / 2 + j * s
                for q in range(3):
                    base = anchor_size * s * 2 ** (q / 3)
                    for r in ratios:
                        w, h = base * math.sqrt(r), base / math.sqrt(r)
                        out.append([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2])
    return np.array(out, np.float32)


def logits_from_u(u):
    """The contract with tests/test_post.c: u = hash_fill("class.L", [N,h,w,A*C], SEED, 0, 1)
    (float32, exactly k / 2^24), promoted to double; u2 = u*u, u4 = u2*u2, u8 = u4*u4,
    u16 = u8*u8, v = u16*u4 (= u^20); logit = floor((13*v - 7) * 1024) / 1024 (exact in
    float32). A grid of logits in [-7, 6): equal logits give bit-equal scores on both sides
    (exact ties), distinct ones differ by far more than a sigmoid's rounding; the 20th power
    makes high scores rare, so the best hundred are spread over many grid values."""
    x = u.astype(np.float64)
    u2 = x * x
    u4 = u2 * u2
    u8 = u4 * u4
    u16 = u8 * u8
    v = u16 * u4
    return (np.floor((13.0 * v - 7.0) * 1024.0) / 1024.0).astype(np.float32)


def level_inputs():
    cls, box = [], []
    for lv in LEVELS:
        hw = -(-SIZE // 2 ** lv)
        u = hash_fill(f"class.{lv}", [N, hw, hw, A * C], SEED, 0.0, 1.0)
        cls.append(logits_from_u(u))
        box.append(hash_fill(f"box.{lv}", [N, hw, hw, A * 4], SEED, -0.5, 0.5))
    return cls, box


def detect_ref(cls, box, anchors, image, p, dtype=torch.float32, use_tv=True, stats=None):
    logits = torch.cat([torch.from_numpy(c[image]).reshape(-1, C) for c in cls]).to(dtype)
    deltas = torch.cat([torch.from_numpy(b[image]).reshape(-1, 4) for b in box]).to(dtype)
    scores = torch.sigmoid(logits)
    boxes = decode(deltas, torch.from_numpy(anchors).to(dtype), float(SIZE), float(SIZE))
    res = []  # (score, class, anchor, box), concatenated in class order
    for c in range(1, C):
        s = scores[:, c]
        order = torch.sort(s, descending=True, stable=True).indices[: p["pre_nms_top_k"]]
        order = order[s[order] > p["score_threshold"]]
        if len(order) == 0:
            continue
        if use_tv:
            keep = tv_nms(boxes[order], s[order], p["iou_threshold"])
        else:
            keep = greedy_nms(boxes[order], s[order], p["iou_threshold"])
        if stats is not None:
            stats.append((int((s > p["score_threshold"]).sum()), len(order), len(keep)))
        for j in keep[: p["max_per_class"]]:
            a = int(order[j])
            res.append((float(s[a]), c, a, boxes[a].tolist()))
    # Stable sort by score: ties stay in class order, then NMS (score, anchor) order.
    res.sort(key=lambda r: -r[0])
    return res[: p["max_detections"]]


def case_detect():
    anchors = anchors_for(SIZE, LEVELS)
    cls, box = level_inputs()
    params = [
        dict(pre_nms_top_k=5000, score_threshold=0.05, iou_threshold=0.5, max_per_class=100,
             max_detections=100),
        dict(pre_nms_top_k=60, score_threshold=0.2, iou_threshold=0.6, max_per_class=20,
             max_detections=300),
        dict(pre_nms_top_k=5000, score_threshold=0.5, iou_threshold=0.3, max_per_class=100,
             max_detections=50),
    ]
    tensors = {"anchors": anchors}
    checks = []
    for lv, c in zip(LEVELS, cls):
        checks.append(float(np.sum(c, dtype=np.float64)))
    tensors["logit_sums"] = np.array(checks, np.float32)
    tensors["logit_samples"] = np.concatenate([c.reshape(-1)[:16] for c in cls])
    meta = {"levels": ",".join(map(str, LEVELS)), "num_anchors": A, "num_classes": C, "batch": N,
            "height": SIZE, "width": SIZE, "seed": SEED, "cases": len(params)}
    for k, p in enumerate(params):
        for key, v in p.items():
            meta[f"case{k}.{key}"] = repr(v)
        for img in range(N):
            stats = []
            res = detect_ref(cls, box, anchors, img, p, stats=stats)
            # The same with plain greedy NMS and in float64: a golden that moved with rounding
            # (a score or an IoU within rounding of a cut) would not be one to test against.
            res_g = detect_ref(cls, box, anchors, img, p, use_tv=False)
            res64 = detect_ref(cls, box, anchors, img, p, dtype=torch.float64, use_tv=False)
            key = [(r[1], r[2]) for r in res]
            assert key == [(r[1], r[2]) for r in res_g], "torchvision nms != greedy"
            assert key == [(r[1], r[2]) for r in res64], "float32 and float64 disagree"
            cand = [s[0] for s in stats]
            surv = [s[2] for s in stats]
            cut = sum(1 for s in stats if s[0] > s[1])
            capped = sum(1 for s in stats if s[2] > p["max_per_class"])
            total = sum(min(s[2], p["max_per_class"]) for s in stats)
            sc = [r[0] for r in res]
            print(f"detect case {k} image {img}: candidates/class {min(cand)}..{max(cand)}, "
                  f"top-k cut in {cut} classes, NMS keeps {min(surv)}..{max(surv)}, "
                  f"per-class cap in {capped}, {total} after NMS, "
                  f"{len(res)} kept, {len(sc) - len(set(sc))} tied scores among them, "
                  f"scores {sc[-1]:.4f}..{sc[0]:.4f}")
            assert total > p["max_detections"]
            pre = f"case{k}.image{img}."
            tensors[pre + "boxes"] = np.array([r[3] for r in res], np.float32).reshape(-1, 4)
            tensors[pre + "scores"] = np.array(sc, np.float32)
            tensors[pre + "classes"] = np.array([r[1] for r in res], np.float32)
            tensors[pre + "anchors"] = np.array([r[2] for r in res], np.float32)
    return tensors, meta


def main():
    rng = np.random.default_rng(20240607)
    for name, (tensors, meta) in (("decode", case_decode(rng)), ("nms", case_nms(rng)),
                                  ("detect", case_detect())):
        path = os.path.join(HERE, name + ".safetensors")
        meta = dict(meta, generator="tests/golden/post/gen_post.py",
                    torch=torch.__version__, torchvision=torchvision.__version__)
        write_safetensors(path, tensors, meta)
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
