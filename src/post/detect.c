/* The RetinaNet detection generator for one image (the Model Garden's, tensorflow/models
 * official/vision/modeling/layers/detection_generator.py), read straight from the head's
 * per-level NHWC outputs: threshold, per-class top-k, decode, class-aware NMS, final top-k. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "post.h"

void sn_det_params_init(sn_det_params *p) {
    if (!p) return;
    p->pre_nms_top_k = 5000;
    p->score_threshold = 0.05f;
    p->iou_threshold = 0.5f;
    p->max_per_class = 100;
    p->max_detections = 100;
    p->box_clip = SN_BOX_XFORM_CLIP;
    p->drop_empty = 1;
}

typedef struct {
    float score;
    int32_t idx; /* flat anchor index */
} cand;

/* One class's candidates, appended in anchor order; when the buffer reaches twice the limit
 * the best `limit` are selected and the rest dropped, and from then on a candidate must beat
 * the worst kept one (`cut`) to get in. Appends are sequential, so the ~90 lists interleaved in
 * the scan stay cheap in cache (a heap per class cost a cache miss per level of every sift:
 * 430 of 900 ms with every score of a 640-pixel image above the threshold); the selections
 * cost O(limit) each, once per `limit` accepted candidates. */
typedef struct {
    cand *v;
    int n, cap;
    float cut;
} cand_list;

typedef struct {
    float score;
    int32_t cls;
    int32_t idx;
    float box[4];
} det;

static inline int better(cand a, cand b) {
    return a.score > b.score || (a.score == b.score && a.idx < b.idx);
}

static int cmp_cand(const void *pa, const void *pb);

/* Reorder v[0..n) so that v[k-1] is the k-th best and everything before it is better
 * (quickselect, median of three; the order is total, as anchors are unique). A run that
 * takes too many rounds, which only a contrived input can cause, is finished by sorting. */
static void select_best(cand *v, int n, int k) {
    int lo = 0, hi = n - 1;
    const int target = k - 1;
    for (int round = 0; hi > lo; round++) {
        if (round == 64) {
            qsort(v + lo, (size_t)(hi - lo + 1), sizeof *v, cmp_cand);
            return;
        }
        const int mid = lo + (hi - lo) / 2;
        cand t;
#define SWAP(i, j) (t = v[i], v[i] = v[j], v[j] = t)
        if (better(v[mid], v[lo])) SWAP(mid, lo);
        if (better(v[hi], v[lo])) SWAP(hi, lo);
        if (better(v[hi], v[mid])) SWAP(hi, mid);
        SWAP(mid, hi); /* the median is the pivot, parked at hi */
        const cand pivot = v[hi];
        int store = lo;
        for (int i = lo; i < hi; i++)
            if (better(v[i], pivot)) {
                SWAP(i, store);
                store++;
            }
        SWAP(store, hi);
#undef SWAP
        if (store == target) return;
        if (store < target)
            lo = store + 1;
        else
            hi = store - 1;
    }
}

static sn_status push(cand_list *L, cand x, int limit) {
    if (L->n == L->cap) {
        const int64_t room64 = 2 * (int64_t)limit;
        const int room = room64 > INT32_MAX ? INT32_MAX : (int)room64;
        if (L->cap >= room) {
            select_best(L->v, L->n, limit);
            L->n = limit;
            L->cut = L->v[limit - 1].score;
            /* x has the highest anchor index so far, so a tie with the cut loses. */
            if (!(x.score > L->cut)) return SN_OK;
        } else {
            const int nc = L->cap ? (L->cap > room / 2 ? room : 2 * L->cap)
                                  : (room < 64 ? room : 64);
            cand *nv = sn_alloc((size_t)nc * sizeof *nv);
            if (!nv) return SN_ERR_OOM;
            if (L->n) memcpy(nv, L->v, (size_t)L->n * sizeof *nv);
            sn_free(L->v);
            L->v = nv;
            L->cap = nc;
        }
    }
    L->v[L->n++] = x;
    return SN_OK;
}

static int cmp_cand(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* Final order: score, then class, then anchor: a stable top-k over the per-class results
 * concatenated in class order, each already in (score, anchor) order. */
static int cmp_det(const void *pa, const void *pb) {
    const det *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->cls != b->cls) return a->cls < b->cls ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

static sn_status check_args(const sn_det_params *p, const sn_det_input *in,
                            const sn_detections *out, int64_t *n_anchors) {
    if (!p || !in || !out)
        return sn_error(SN_ERR_INVALID_ARG, "sn_detect: NULL argument");
    if (!out->boxes || !out->scores || !out->classes)
        return sn_error(SN_ERR_INVALID_ARG, "sn_detect: NULL output buffer");
    if (p->pre_nms_top_k < 1 || p->max_per_class < 1 || p->max_detections < 1)
        return sn_error(SN_ERR_INVALID_ARG,
                        "sn_detect: pre_nms_top_k (%d), max_per_class (%d) and max_detections "
                        "(%d) must be >= 1",
                        p->pre_nms_top_k, p->max_per_class, p->max_detections);
    if (!(p->score_threshold >= 0.0f && p->score_threshold < 1.0f))
        return sn_error(SN_ERR_INVALID_ARG, "sn_detect: score_threshold %g is not in [0, 1)",
                        (double)p->score_threshold);
    if (isnan(p->iou_threshold) || isnan(p->box_clip))
        return sn_error(SN_ERR_INVALID_ARG, "sn_detect: NaN iou_threshold or box_clip");
    if (out->capacity < p->max_detections)
        return sn_error(SN_ERR_INVALID_ARG, "sn_detect: output capacity %d < max_detections %d",
                        out->capacity, p->max_detections);
    if (!in->levels || in->n_levels < 1 || !in->anchors)
        return sn_error(SN_ERR_INVALID_ARG, "sn_detect: no levels or no anchors");
    if (in->image < 0 || in->num_anchors < 1 || in->num_classes < 2)
        return sn_error(SN_ERR_INVALID_ARG,
                        "sn_detect: image %d, num_anchors %d, num_classes %d (need >= 0, >= 1, "
                        ">= 2)",
                        in->image, in->num_anchors, in->num_classes);
    if (!(in->image_h > 0.0f && in->image_w > 0.0f))
        return sn_error(SN_ERR_INVALID_ARG, "sn_detect: image size %g x %g must be positive",
                        (double)in->image_h, (double)in->image_w);
    int64_t total = 0;
    for (int l = 0; l < in->n_levels; l++) {
        const sn_det_level *lv = &in->levels[l];
        if (!lv->cls || !lv->box || lv->h < 1 || lv->w < 1)
            return sn_error(SN_ERR_INVALID_ARG, "sn_detect: level %d: NULL data or size %dx%d", l,
                            lv->h, lv->w);
        total += (int64_t)lv->h * lv->w * in->num_anchors;
        if (total > INT32_MAX)
            return sn_error(SN_ERR_SHAPE, "sn_detect: more than 2^31 anchors");
    }
    if (total != in->n_anchors)
        return sn_error(SN_ERR_SHAPE, "sn_detect: the levels make %lld anchors, %lld given",
                        (long long)total, (long long)in->n_anchors);
    *n_anchors = total;
    return SN_OK;
}

/* The box deltas of flat anchor g: find its level (few levels, so a linear walk). */
static const float *deltas_of(const sn_det_input *in, const int64_t *start, int32_t g) {
    int l = 0;
    while (g >= start[l + 1]) l++;
    const sn_det_level *lv = &in->levels[l];
    const size_t hwa = (size_t)lv->h * lv->w * in->num_anchors;
    return lv->box + ((size_t)in->image * hwa + (size_t)(g - start[l])) * 4;
}

/* Every candidate into its class's list: one pass over the logits, which for C = 91 and a
 * 640-pixel input is 7 M floats; a row of C logits is usually all below the threshold, and the
 * branch-free check of a whole row keeps that case a vector compare. */
static sn_status collect(const sn_det_params *p, const sn_det_input *in, const int64_t *start,
                         int limit, cand_list *lists) {
    const int C = in->num_classes;
    const double t = p->score_threshold;
    /* A logit at or below `bound` cannot have a score above the threshold; the margin keeps
     * the test conservative against the rounding of the float sigmoid. */
    const float bound = t > 0.0 ? (float)(log(t / (1.0 - t)) - 1e-3) : -INFINITY;
    const float thr = p->score_threshold;
    for (int l = 0; l < in->n_levels; l++) {
        const sn_det_level *lv = &in->levels[l];
        const size_t rows = (size_t)lv->h * lv->w * in->num_anchors;
        const float *base = lv->cls + (size_t)in->image * rows * C;
        for (size_t r = 0; r < rows; r++) {
            const float *row = base + r * C;
            int any = 0;
            for (int c = 1; c < C; c++) any |= row[c] > bound;
            if (!any) continue;
            const int32_t g = (int32_t)(start[l] + (int64_t)r);
            for (int c = 1; c < C; c++) {
                if (!(row[c] > bound)) continue;
                const float s = 1.0f / (1.0f + expf(-row[c]));
                if (!(s > thr) || !(s > lists[c].cut)) continue;
                const cand x = {s, g};
                if (push(&lists[c], x, limit) != SN_OK) return SN_ERR_OOM;
            }
        }
    }
    return SN_OK;
}

sn_status sn_detect(const sn_det_params *p, const sn_det_input *in, sn_detections *out) {
    if (out) out->count = 0;
    int64_t n_anchors = 0;
    sn_status st = check_args(p, in, out, &n_anchors);
    if (st != SN_OK) return st;
    const int C = in->num_classes;
    const int limit = p->pre_nms_top_k < n_anchors ? p->pre_nms_top_k : (int)n_anchors;
    const int per_class = p->max_per_class;

    int64_t *start = sn_alloc((size_t)(in->n_levels + 1) * sizeof *start);
    cand_list *lists = sn_calloc((size_t)C, sizeof *lists);
    float *bx = NULL, *area = NULL;
    int32_t *keep = NULL;
    det *dets = NULL;
    if (!start || !lists) {
        st = SN_ERR_OOM;
        goto done;
    }
    for (int c = 0; c < C; c++) lists[c].cut = -INFINITY;
    start[0] = 0;
    for (int l = 0; l < in->n_levels; l++)
        start[l + 1] = start[l] + (int64_t)in->levels[l].h * in->levels[l].w * in->num_anchors;

    st = collect(p, in, start, limit, lists);
    if (st != SN_OK) goto done;

    /* Work buffers sized by what the scan found, not by the worst case. */
    int most = 0;
    size_t n_det_max = 0;
    for (int c = 1; c < C; c++) {
        const int n = lists[c].n < limit ? lists[c].n : limit;
        if (n > most) most = n;
        n_det_max += (size_t)(n < per_class ? n : per_class);
    }
    if (most == 0) goto done;
    bx = sn_alloc((size_t)most * 4 * sizeof *bx);
    area = sn_alloc((size_t)most * sizeof *area);
    keep = sn_alloc((size_t)most * sizeof *keep);
    dets = sn_alloc(n_det_max * sizeof *dets);
    if (!bx || !area || !keep || !dets) {
        st = SN_ERR_OOM;
        goto done;
    }

    size_t nd = 0;
    for (int c = 1; c < C; c++) {
        cand_list *L = &lists[c];
        if (L->n == 0) continue;
        if (L->n > limit) {
            select_best(L->v, L->n, limit);
            L->n = limit;
        }
        qsort(L->v, (size_t)L->n, sizeof *L->v, cmp_cand);
        int n = 0; /* candidates kept, compacted in place (n <= i) */
        for (int i = 0; i < L->n; i++) {
            const int32_t g = L->v[i].idx;
            float *b = bx + 4 * (size_t)n;
            sn_box_decode_one(deltas_of(in, start, g), in->anchors + 4 * (size_t)g, p->box_clip,
                              in->image_h, in->image_w, b);
            area[n] = (b[2] - b[0]) * (b[3] - b[1]);
            if (p->drop_empty && !(b[2] > b[0] && b[3] > b[1])) continue;
            L->v[n++] = L->v[i];
        }
        L->n = n;
        const int nk = sn_nms_sorted(bx, area, L->n, p->iou_threshold, per_class, keep);
        for (int j = 0; j < nk; j++) {
            det *d = &dets[nd++];
            const int i = keep[j];
            d->score = L->v[i].score;
            d->cls = c;
            d->idx = L->v[i].idx;
            memcpy(d->box, bx + 4 * (size_t)i, sizeof d->box);
        }
    }
    qsort(dets, nd, sizeof *dets, cmp_det);
    const int n_out = nd < (size_t)p->max_detections ? (int)nd : p->max_detections;
    for (int j = 0; j < n_out; j++) {
        memcpy(out->boxes + 4 * (size_t)j, dets[j].box, sizeof dets[j].box);
        out->scores[j] = dets[j].score;
        out->classes[j] = dets[j].cls;
        if (out->anchors) out->anchors[j] = dets[j].idx;
    }
    out->count = n_out;

done:
    if (lists)
        for (int c = 0; c < C; c++) sn_free(lists[c].v);
    sn_free(lists);
    sn_free(start);
    sn_free(bx);
    sn_free(area);
    sn_free(keep);
    sn_free(dets);
    return st;
}
