#!/usr/bin/python3
"""Independent reference for the C COCO box evaluation (src/eval/coco_eval.c).

Writes seeded detection scenarios on the coco-tiny ground truth as COCO results files
(dets_<scenario>.json) and the numbers a COCOeval-style evaluation gives for them
(expected.json). The evaluation below is written from the definitions of pycocotools' COCOeval
for iouType "bbox" (evaluateImg / accumulate / summarize), with numpy; it does not look at the
C code. pycocotools itself is not installable here; where it is, `--check-pycocotools` compares
it with this reference on the same files.

Ground truth policy shared with the C loader (src/data/coco.c): annotations whose category is
not among "categories" are dropped, and so are boxes with no area left after clipping to their
image; evaluation uses the boxes as written in the file and the "area" field.

Run with Debian's python3 (numpy):  /usr/bin/python3 tests/golden/coco_eval/gen_coco_eval.py
"""
import argparse
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_GT = os.path.join(HERE, "..", "..", "..", "..", "shared", "data", "coco-tiny",
                          "annotations", "instances_train2017.json")

IOU_THRS = np.linspace(0.5, 0.95, 10)
REC_THRS = np.linspace(0.0, 1.0, 101)
AREAS = [(0.0, 1e10), (0.0, 32.0 ** 2), (32.0 ** 2, 96.0 ** 2), (96.0 ** 2, 1e10)]
MAX_DETS = [1, 10, 100]


def load_gt(path):
    with open(path) as f:
        d = json.load(f)
    images = {im["id"]: im for im in d["images"]}
    cats = sorted(c["id"] for c in d["categories"])
    catset = set(cats)
    anns = []
    for a in d.get("annotations", []):
        if a["category_id"] not in catset:
            continue
        im = images[a["image_id"]]
        x, y, w, h = a["bbox"]
        x0, y0 = max(x, 0.0), max(y, 0.0)
        x1, y1 = min(x + w, im["width"]), min(y + h, im["height"])
        if not (x1 - x0 > 0 and y1 - y0 > 0):
            continue
        anns.append(dict(image_id=a["image_id"], category_id=a["category_id"],
                         bbox=[float(v) for v in a["bbox"]],
                         area=float(a["area"]) if "area" in a else float(w * h),
                         iscrowd=int(a.get("iscrowd", 0))))
    return images, cats, anns


def iou_matrix(dboxes, gboxes, crowd):
    """IoU of detections (rows) with ground truths (columns), the union of a crowd ground truth
    being the detection's area."""
    out = np.zeros((len(dboxes), len(gboxes)))
    for i, d in enumerate(dboxes):
        for j, g in enumerate(gboxes):
            iw = min(d[0] + d[2], g[0] + g[2]) - max(d[0], g[0])
            if iw <= 0:
                continue
            ih = min(d[1] + d[3], g[1] + g[3]) - max(d[1], g[1])
            if ih <= 0:
                continue
            inter = iw * ih
            da = d[2] * d[3]
            union = da if crowd[j] else da + g[2] * g[3] - inter
            out[i, j] = inter / union
    return out


def match_image(gts, dts, arng):
    """Greedy matching of one image and category in one area range, at every IoU threshold.
    Returns (scores, matched[T,D], ignored[T,D], number of non-ignored ground truths)."""
    order = sorted(range(len(dts)), key=lambda i: (-dts[i]["score"], i))[:MAX_DETS[-1]]
    dts = [dts[i] for i in order]
    g_ign = [bool(g["iscrowd"]) or g["area"] < arng[0] or g["area"] > arng[1] for g in gts]
    gorder = [j for j in range(len(gts)) if not g_ign[j]] + [j for j in range(len(gts)) if g_ign[j]]
    gts = [gts[j] for j in gorder]
    g_ign = [g_ign[j] for j in gorder]
    crowd = [g["iscrowd"] for g in gts]
    ious = iou_matrix([d["bbox"] for d in dts], [g["bbox"] for g in gts], crowd)
    T, D, G = len(IOU_THRS), len(dts), len(gts)
    matched = np.zeros((T, D), bool)
    ignored = np.zeros((T, D), bool)
    for t, thr in enumerate(IOU_THRS):
        taken = [False] * G
        for i in range(D):
            best, m = min(thr, 1 - 1e-10), None
            for j in range(G):
                if taken[j] and not crowd[j]:
                    continue
                if m is not None and not g_ign[m] and g_ign[j]:
                    break
                if ious[i, j] < best:
                    continue
                best, m = ious[i, j], j
            if m is None:
                continue
            matched[t, i] = True
            ignored[t, i] = g_ign[m]
            taken[m] = True
    outside = np.array([d["bbox"][2] * d["bbox"][3] < arng[0] or
                        d["bbox"][2] * d["bbox"][3] > arng[1] for d in dts], bool)
    ignored |= ~matched & outside[None, :]
    return np.array([d["score"] for d in dts]), matched, ignored, G - sum(g_ign)


def evaluate(gt, dets):
    images, cats, anns = gt
    img_ids = sorted(images)
    T, R, K, A, M = len(IOU_THRS), len(REC_THRS), len(cats), len(AREAS), len(MAX_DETS)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    by_gt, by_dt = {}, {}
    for a in anns:
        by_gt.setdefault((a["image_id"], a["category_id"]), []).append(a)
    for d in dets:
        by_dt.setdefault((d["image_id"], d["category_id"]), []).append(d)
    for k, cat in enumerate(cats):
        for ai, arng in enumerate(AREAS):
            per_image = []
            for img in img_ids:
                g = by_gt.get((img, cat), [])
                d = by_dt.get((img, cat), [])
                if g or d:
                    per_image.append(match_image(g, d, arng))
            npig = sum(p[3] for p in per_image)
            if npig == 0:
                continue
            for mi, md in enumerate(MAX_DETS):
                scores = np.concatenate([p[0][:md] for p in per_image])
                # Stable: ties keep image-id order, then the order inside the image.
                idx = np.argsort(-scores, kind="stable")
                mt = np.concatenate([p[1][:, :md] for p in per_image], axis=1)[:, idx]
                ig = np.concatenate([p[2][:, :md] for p in per_image], axis=1)[:, idx]
                tp = np.cumsum(mt & ~ig, axis=1).astype(float)
                fp = np.cumsum(~mt & ~ig, axis=1).astype(float)
                for t in range(T):
                    rc = tp[t] / npig
                    pr = tp[t] / (fp[t] + tp[t] + np.spacing(1))
                    recall[t, k, ai, mi] = rc[-1] if len(rc) else 0.0
                    env = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr
                    pos = np.searchsorted(rc, REC_THRS, side="left")
                    q = np.zeros(R)
                    ok = pos < len(env)
                    q[ok] = env[pos[ok]]
                    precision[t, :, k, ai, mi] = q
    return precision, recall


def summarize(precision, recall):
    def mean(s):
        s = s[s > -1]
        return float(np.mean(s)) if s.size else -1.0
    t50, t75 = 0, 5
    assert IOU_THRS[t50] == 0.5 and IOU_THRS[t75] == 0.75
    return [mean(precision[:, :, :, 0, 2]), mean(precision[t50, :, :, 0, 2]),
            mean(precision[t75, :, :, 0, 2]), mean(precision[:, :, :, 1, 2]),
            mean(precision[:, :, :, 2, 2]), mean(precision[:, :, :, 3, 2]),
            mean(recall[:, :, 0, 0]), mean(recall[:, :, 0, 1]), mean(recall[:, :, 0, 2]),
            mean(recall[:, :, 1, 2]), mean(recall[:, :, 2, 2]), mean(recall[:, :, 3, 2])]


def per_category_ap(precision):
    out = []
    for k in range(precision.shape[2]):
        s = precision[:, :, k, 0, 2]
        s = s[s > -1]
        out.append(float(np.mean(s)) if s.size else -1.0)
    return out


# ------------------------------------------------------------------------------------------
# Scenarios

def jitter(rng, box, scale):
    x, y, w, h = box
    return [x + rng.normal(0, scale * w), y + rng.normal(0, scale * h),
            max(0.5, w * np.exp(rng.normal(0, scale))), max(0.5, h * np.exp(rng.normal(0, scale)))]


def random_box(rng, im):
    side = np.exp(rng.uniform(np.log(4), np.log(min(im["width"], im["height"]))))
    aspect = np.exp(rng.uniform(-0.7, 0.7))
    w, h = side * aspect, side / aspect
    return [rng.uniform(-5, im["width"] - w / 2), rng.uniform(-5, im["height"] - h / 2), w, h]


def det(img, cat, box, score, ndig=4):
    return {"image_id": int(img), "category_id": int(cat),
            "bbox": [round(float(v), 2) for v in box], "score": round(float(score), ndig)}


def scenario_perturbed(rng, gt):
    images, cats, anns = gt
    # Every object of the images taken, so that some categories can reach full recall.
    by_image = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a)
    ids = sorted(images)
    chosen = []
    for i in rng.permutation(len(ids)):
        if len(chosen) + len(by_image.get(ids[i], [])) > 200:
            continue
        chosen += by_image.get(ids[i], [])
    out = []
    for a in chosen:
        cat = a["category_id"] if rng.uniform() > 0.1 else cats[rng.randint(len(cats))]
        out.append(det(a["image_id"], cat, jitter(rng, a["bbox"], 0.05), rng.uniform()))
        if rng.uniform() < 0.2:  # a second, looser detection of the same object
            out.append(det(a["image_id"], cat, jitter(rng, a["bbox"], 0.3), rng.uniform()))
    for _ in range(50):
        img = ids[rng.randint(len(ids))]
        out.append(det(img, cats[rng.randint(len(cats))], random_box(rng, images[img]),
                       rng.uniform()))
    return out


def scenario_random(rng, gt):
    images, cats, anns = gt
    ids = sorted(images)
    present = {}
    for a in anns:
        present.setdefault(a["image_id"], []).append(a["category_id"])
    out = []
    for _ in range(280):
        img = ids[rng.randint(len(ids))]
        cs = present.get(img, cats)
        out.append(det(img, cs[rng.randint(len(cs))], random_box(rng, images[img]),
                       rng.uniform()))
    return out


def scenario_ties(rng, gt):
    """Scores on a coarse grid, so that many ties cross images and images' own lists, and
    exact duplicates."""
    images, cats, anns = gt
    out = []
    for i in rng.choice(len(anns), 180, replace=False):
        a = anns[i]
        d = det(a["image_id"], a["category_id"], jitter(rng, a["bbox"], 0.15),
                rng.randint(1, 6) / 5.0, ndig=1)
        out.append(d)
        if rng.uniform() < 0.15:
            out.append(dict(d))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def scenario_crowded(rng, gt):
    """More than 100 detections in some image/category pairs (the maxDets cut), several
    detections on every crowd region, and small objects."""
    images, cats, anns = gt
    out = []
    pairs = {}
    for a in anns:
        pairs.setdefault((a["image_id"], a["category_id"]), []).append(a)
    big = sorted(pairs, key=lambda p: -len(pairs[p]))[:2]
    for img, cat in big:
        objs = pairs[(img, cat)]
        for _ in range(115):
            o = objs[rng.randint(len(objs))]
            out.append(det(img, cat, jitter(rng, o["bbox"], 0.2), rng.uniform()))
    for a in anns:
        if a["iscrowd"]:
            x, y, w, h = a["bbox"]
            for _ in range(3):
                bw, bh = w * rng.uniform(0.1, 0.5), h * rng.uniform(0.1, 0.5)
                out.append(det(a["image_id"], a["category_id"],
                               [x + rng.uniform(0, w - bw), y + rng.uniform(0, h - bh), bw, bh],
                               rng.uniform()))
    small = [a for a in anns if a["area"] < 32 ** 2 and not a["iscrowd"]]
    for i in rng.choice(len(small), 40, replace=False):
        a = small[i]
        out.append(det(a["image_id"], a["category_id"], jitter(rng, a["bbox"], 0.1),
                       rng.uniform()))
    return out


SCENARIOS = [("perturbed", scenario_perturbed, 11), ("random", scenario_random, 12),
             ("ties", scenario_ties, 13), ("crowded", scenario_crowded, 14)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gt", default=DEFAULT_GT)
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--check-pycocotools", action="store_true")
    args = ap.parse_args()
    gt = load_gt(args.gt)
    expected = {"gt": "coco-tiny/annotations/instances_train2017.json",
                "iou_thresholds": [float(v) for v in IOU_THRS],
                "recall_thresholds": [float(v) for v in REC_THRS],
                "category_ids": gt[1], "scenarios": {}}
    for name, fn, seed in SCENARIOS:
        dets = fn(np.random.RandomState(seed), gt)
        path = os.path.join(args.out, "dets_%s.json" % name)
        with open(path, "w") as f:
            json.dump(dets, f, separators=(",", ":"))
        with open(path) as f:  # evaluate exactly what the C test will read
            dets = json.load(f)
        precision, recall = evaluate(gt, dets)
        stats = summarize(precision, recall)
        expected["scenarios"][name] = {"count": len(dets), "stats": stats,
                                       "category_ap": per_category_ap(precision)}
        print("%-10s %4d dets  AP %.4f AP50 %.4f AR100 %.4f" % (name, len(dets), stats[0],
                                                                stats[1], stats[8]))
        if args.check_pycocotools:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
            cg = COCO(args.gt)
            e = COCOeval(cg, cg.loadRes(path), "bbox")
            e.evaluate()
            e.accumulate()
            e.summarize()
            diff = np.max(np.abs(np.array(e.stats) - np.array(stats)))
            print("pycocotools max |diff| %.3g" % diff)
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
