/* IoU and greedy non-maximum suppression (plain and class-aware), with torchvision's
 * arithmetic and suppression rule (IoU > threshold) and a deterministic order for ties. */
#include <math.h>
#include <stdlib.h>

#include "core.h"
#include "post.h"

/* torchvision computes max/min as std::max/std::min, i.e. (a < b ? b : a); same here so that
 * NaN coordinates behave alike. */
static inline float fmax_tv(float a, float b) { return a < b ? b : a; }
static inline float fmin_tv(float a, float b) { return b < a ? b : a; }

static inline float box_area(const float *b) { return (b[2] - b[0]) * (b[3] - b[1]); }

/* IoU of a kept box (k, area ka) and a candidate (c, area ca); the order of the operands is
 * torchvision's (kept box first), which matters only for the rounding of the sum. */
static inline float iou_area(const float *k, float ka, const float *c, float ca) {
    const float yy1 = fmax_tv(k[0], c[0]);
    const float xx1 = fmax_tv(k[1], c[1]);
    const float yy2 = fmin_tv(k[2], c[2]);
    const float xx2 = fmin_tv(k[3], c[3]);
    const float w = fmax_tv(0.0f, xx2 - xx1);
    const float h = fmax_tv(0.0f, yy2 - yy1);
    const float inter = w * h;
    return inter / (ka + ca - inter);
}

float sn_box_iou(const float a[4], const float b[4]) {
    return iou_area(a, box_area(a), b, box_area(b));
}

int sn_nms_sorted(const float *boxes, const float *areas, int n, float iou_threshold, int max_keep,
                  int32_t *keep) {
    int nk = 0;
    if (max_keep <= 0) max_keep = n;
    /* Comparing each candidate with the kept boxes only (rather than marking suppressed boxes
     * ahead) is the same greedy rule, costs O(n * kept) and stops as soon as max_keep are in. */
    for (int i = 0; i < n && nk < max_keep; i++) {
        const float *c = boxes + 4 * (size_t)i;
        const float ca = areas[i];
        int drop = 0;
        for (int j = 0; j < nk; j++) {
            const int k = keep[j];
            if (iou_area(boxes + 4 * (size_t)k, areas[k], c, ca) > iou_threshold) {
                drop = 1;
                break;
            }
        }
        if (!drop) keep[nk++] = i;
    }
    return nk;
}

typedef struct {
    float score;
    int32_t cls;
    int32_t idx;
} ranked;

/* Higher score first, NaN last, then lower index. */
static int cmp_score_idx(const ranked *a, const ranked *b) {
    const int na = isnan(a->score), nb = isnan(b->score);
    if (na != nb) return na - nb;
    if (!na) {
        if (a->score > b->score) return -1;
        if (a->score < b->score) return 1;
    }
    return (a->idx > b->idx) - (a->idx < b->idx);
}

static int cmp_rank(const void *pa, const void *pb) { return cmp_score_idx(pa, pb); }

static int cmp_class_rank(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    if (a->cls != b->cls) return a->cls < b->cls ? -1 : 1;
    return cmp_score_idx(a, b);
}

sn_status sn_nms(const float *boxes, const float *scores, const int32_t *classes, int n,
                 float iou_threshold, int max_keep, int32_t *keep, int *n_keep) {
    if (n_keep) *n_keep = 0;
    if (!n_keep || n < 0 || (n > 0 && (!boxes || !scores || !keep)))
        return sn_error(SN_ERR_INVALID_ARG, "sn_nms: NULL argument or negative count (%d)", n);
    if (n == 0) return SN_OK;
    if (max_keep <= 0 || max_keep > n) max_keep = n;

    ranked *r = sn_alloc((size_t)n * sizeof *r);
    float *sb = sn_alloc((size_t)n * 4 * sizeof *sb);
    float *sa = sn_alloc((size_t)n * sizeof *sa);
    int32_t *pos = sn_alloc((size_t)n * sizeof *pos);
    if (!r || !sb || !sa || !pos) {
        sn_free(r);
        sn_free(sb);
        sn_free(sa);
        sn_free(pos);
        return SN_ERR_OOM; /* message set by sn_alloc */
    }
    for (int i = 0; i < n; i++) {
        r[i].score = scores[i];
        r[i].cls = classes ? classes[i] : 0;
        r[i].idx = i;
    }
    /* Class-aware NMS is plain NMS on each class's run of the (class, rank) order; the kept
     * boxes of all runs are then put back in rank order. */
    qsort(r, (size_t)n, sizeof *r, classes ? cmp_class_rank : cmp_rank);
    for (int i = 0; i < n; i++) {
        const float *b = boxes + 4 * (size_t)r[i].idx;
        for (int k = 0; k < 4; k++) sb[4 * (size_t)i + k] = b[k];
        sa[i] = box_area(b);
    }
    int total = 0;
    for (int s = 0; s < n;) {
        int e = s + 1;
        while (e < n && r[e].cls == r[s].cls) e++;
        /* Each run keeps at most max_keep: later boxes of a run cannot change earlier ones, so
         * the overall first max_keep are among them. */
        const int nk = sn_nms_sorted(sb + 4 * (size_t)s, sa + s, e - s, iou_threshold, max_keep,
                                     pos + total);
        for (int j = 0; j < nk; j++) pos[total + j] += s;
        total += nk;
        s = e;
    }
    /* Compact the kept entries (pos is ascending, so in place is safe). */
    for (int j = 0; j < total; j++) r[j] = r[pos[j]];
    if (classes) qsort(r, (size_t)total, sizeof *r, cmp_rank);
    if (total > max_keep) total = max_keep;
    for (int j = 0; j < total; j++) keep[j] = r[j].idx;
    *n_keep = total;
    sn_free(r);
    sn_free(sb);
    sn_free(sa);
    sn_free(pos);
    return SN_OK;
}

sn_status sn_detections_suppress_overlaps(sn_detections *d, float iou_threshold) {
    if (d->count <= 1) return SN_OK;
    int32_t *keep = sn_alloc(sizeof *keep * (size_t)d->count);
    if (!keep) return SN_ERR_OOM;
    int nk = 0;
    sn_status st = sn_nms(d->boxes, d->scores, NULL, d->count, iou_threshold, 0, keep, &nk);
    if (st == SN_OK) {
        /* keep[] is in rank order, which is d's order: compacting forwards is safe. */
        for (int i = 0; i < nk; i++) {
            const int k = keep[i];
            for (int j = 0; j < 4; j++) d->boxes[4 * i + j] = d->boxes[4 * k + j];
            d->scores[i] = d->scores[k];
            d->classes[i] = d->classes[k];
            if (d->anchors) d->anchors[i] = d->anchors[k];
        }
        d->count = nk;
    }
    sn_free(keep);
    return st;
}
