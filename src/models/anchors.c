/* RetinaNet anchors, box encoding and the per-image anchor labeller (the official argmax matcher
 * with forced matches); see anchors.h for the conventions. */
#include "anchors.h"

#include <math.h>
#include <string.h>

#include "core.h"

#define SN_ANCHOR_MAX_SIDE 65536 /* keeps every count comfortably inside int64 */

sn_status sn_anchor_layout_init(int min_level, int max_level, int height, int width,
                                sn_anchor_layout *out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "anchor layout: NULL output");
    if (min_level < 0 || max_level > SN_ANCHOR_MAX_LEVEL || min_level > max_level)
        return sn_error(SN_ERR_INVALID_ARG,
                        "anchor layout: levels %d..%d (need 0 <= min <= max <= %d)", min_level,
                        max_level, SN_ANCHOR_MAX_LEVEL);
    const int top = 1 << max_level;
    if (height <= 0 || width <= 0 || height > SN_ANCHOR_MAX_SIDE || width > SN_ANCHOR_MAX_SIDE)
        return sn_error(SN_ERR_INVALID_ARG, "anchor layout: input %dx%d out of range 1..%d", height,
                        width, SN_ANCHOR_MAX_SIDE);
    if (height % top || width % top)
        return sn_error(SN_ERR_INVALID_ARG,
                        "anchor layout: input %dx%d is not a multiple of 2^%d = %d (pad it first)",
                        height, width, max_level, top);
    memset(out, 0, sizeof *out);
    out->min_level = min_level;
    out->max_level = max_level;
    out->num_levels = max_level - min_level + 1;
    out->per_location = SN_ANCHORS_PER_LOCATION;
    out->height = height;
    out->width = width;
    int64_t n = 0;
    for (int i = 0; i < out->num_levels; i++) {
        const int s = 1 << (min_level + i);
        out->level_h[i] = height / s;
        out->level_w[i] = width / s;
        out->level_start[i] = n;
        n += (int64_t)out->level_h[i] * out->level_w[i] * SN_ANCHORS_PER_LOCATION;
    }
    out->level_start[out->num_levels] = n;
    out->count = n;
    return SN_OK;
}

sn_status sn_anchor_count(int min_level, int max_level, int height, int width, int64_t *count) {
    if (!count) return sn_error(SN_ERR_INVALID_ARG, "anchor count: NULL output");
    sn_anchor_layout l = {0}; /* zeroed for GCC, which cannot see that failures return */
    sn_status st = sn_anchor_layout_init(min_level, max_level, height, width, &l);
    if (st != SN_OK) return st;
    *count = l.count;
    return SN_OK;
}

void sn_anchor_aspect_ratios(sn_flavour flavour, double ratios[SN_ANCHOR_ASPECTS]) {
    /* The TPU code's default list starts at 1.0, which permutes the anchors (and so the head's
     * channels) relative to Garden's. */
    static const double garden[SN_ANCHOR_ASPECTS] = {0.5, 1.0, 2.0};
    static const double tpu[SN_ANCHOR_ASPECTS] = {1.0, 2.0, 0.5};
    memcpy(ratios, flavour == SN_FLAVOUR_TPU ? tpu : garden, sizeof garden);
}

sn_status sn_anchors_generate(const sn_anchor_layout *layout, sn_flavour flavour,
                              double anchor_size, float *boxes) {
    if (!layout || !boxes) return sn_error(SN_ERR_INVALID_ARG, "anchors: NULL argument");
    if (flavour != SN_FLAVOUR_GARDEN && flavour != SN_FLAVOUR_TPU)
        return sn_error(SN_ERR_INVALID_ARG, "anchors: unknown flavour %d", (int)flavour);
    if (!(anchor_size > 0) || !isfinite(anchor_size))
        return sn_error(SN_ERR_INVALID_ARG, "anchors: anchor_size %g must be positive",
                        anchor_size);
    if (layout->num_levels <= 0 || layout->per_location != SN_ANCHORS_PER_LOCATION)
        return sn_error(SN_ERR_INVALID_ARG, "anchors: layout not initialised");
    double ratios[SN_ANCHOR_ASPECTS];
    sn_anchor_aspect_ratios(flavour, ratios);
    float *o = boxes;
    for (int li = 0; li < layout->num_levels; li++) {
        const double stride = (double)(1 << (layout->min_level + li));
        /* Half sizes as the official code forms them: in double (pow for the square roots of
         * the ratio, as Python's ** does), then rounded to float32 when subtracted from the
         * float32 centres. */
        float hy[SN_ANCHORS_PER_LOCATION], hx[SN_ANCHORS_PER_LOCATION];
        for (int q = 0; q < SN_ANCHOR_SCALES; q++) {
            const double base = anchor_size * stride * pow(2.0, q / (double)SN_ANCHOR_SCALES);
            for (int r = 0; r < SN_ANCHOR_ASPECTS; r++) {
                hx[q * SN_ANCHOR_ASPECTS + r] = (float)(base * pow(ratios[r], 0.5) / 2.0);
                hy[q * SN_ANCHOR_ASPECTS + r] = (float)(base * pow(ratios[r], -0.5) / 2.0);
            }
        }
        for (int y = 0; y < layout->level_h[li]; y++) {
            const float cy = (float)(stride / 2 + y * stride);
            for (int x = 0; x < layout->level_w[li]; x++) {
                const float cx = (float)(stride / 2 + x * stride);
                for (int a = 0; a < SN_ANCHORS_PER_LOCATION; a++) {
                    o[0] = cy - hy[a];
                    o[1] = cx - hx[a];
                    o[2] = cy + hy[a];
                    o[3] = cx + hx[a];
                    o += 4;
                }
            }
        }
    }
    return SN_OK;
}

void sn_box_encode(const float anchor[4], const float box[4], float out[4]) {
    const double ha = (double)anchor[2] - anchor[0], wa = (double)anchor[3] - anchor[1];
    const double ya = 0.5 * ((double)anchor[0] + anchor[2]),
                 xa = 0.5 * ((double)anchor[1] + anchor[3]);
    const double h = (double)box[2] - box[0], w = (double)box[3] - box[1];
    const double yc = 0.5 * ((double)box[0] + box[2]), xc = 0.5 * ((double)box[1] + box[3]);
    out[0] = (float)((yc - ya) / ha);
    out[1] = (float)((xc - xa) / wa);
    out[2] = (float)log(h / ha);
    out[3] = (float)log(w / wa);
}

/* IoU in float32 with the official operation order (intersection clamped at 0; union = the sum
 * of the areas minus the intersection), so the >= 0.5 decisions and the argmax ties are the
 * ones the official labeller makes. */
static inline float iou_f32(const float *a, float area_a, const float *g, float area_g) {
    const float ih = fminf(a[2], g[2]) - fmaxf(a[0], g[0]);
    if (!(ih > 0.0f)) return 0.0f;
    const float iw = fminf(a[3], g[3]) - fmaxf(a[1], g[1]);
    if (!(iw > 0.0f)) return 0.0f;
    const float inter = ih * iw;
    if (inter == 0.0f) return 0.0f;
    return inter / ((area_a + area_g) - inter);
}

static sn_status check_gt(const sn_gt_box *gt, int n_gt, int num_classes) {
    for (int i = 0; i < n_gt; i++) {
        const sn_gt_box *g = &gt[i];
        if (!isfinite(g->ymin) || !isfinite(g->xmin) || !isfinite(g->ymax) || !isfinite(g->xmax))
            return sn_error(SN_ERR_INVALID_ARG,
                            "anchor labels: ground truth %d has a non-finite coordinate", i);
        if (!(g->ymax > g->ymin) || !(g->xmax > g->xmin))
            return sn_error(
                SN_ERR_INVALID_ARG,
                "anchor labels: ground truth %d (ymin %g, xmin %g, ymax %g, xmax %g) has "
                "zero or negative size",
                i, g->ymin, g->xmin, g->ymax, g->xmax);
        if (!g->iscrowd && (g->cls < 1 || g->cls >= num_classes))
            return sn_error(SN_ERR_INVALID_ARG,
                            "anchor labels: ground truth %d has class column %d, outside 1..%d", i,
                            (int)g->cls, num_classes - 1);
    }
    return SN_OK;
}

/* Rows (or columns) of a level whose anchors can overlap [lo, hi]: centres s/2 + i*s within
 * `half` (the largest half size of the level's anchors) of the span, widened by one cell so that
 * rounding can never drop an overlapping anchor; clamped to 0 .. n-1 (first > last when none). */
static void cell_range(double lo, double hi, double half, int s, int n, int *first, int *last) {
    double f = floor((lo - half - 0.5 * s) / s) - 1, l = ceil((hi + half - 0.5 * s) / s) + 1;
    if (f < 0) f = 0;
    if (l > n - 1) l = n - 1;
    if (f > l) {
        *first = 1;
        *last = 0;
        return;
    }
    *first = (int)f;
    *last = (int)l;
}

/* Visit every anchor that can overlap box b, in ascending anchor index, keeping each anchor's
 * best box and the box's best anchor. Strict comparisons with boxes visited in ascending order
 * keep an anchor's first maximum (tf.argmax); ascending anchors keep the box's first best
 * anchor; a best IoU of 0 (no overlap) forces nothing. */
static inline void visit(const float *anchors, int64_t a0, int64_t a1, const float *b, int k,
                         float *best, int32_t *match, float *top, int64_t *top_anchor) {
    for (int64_t a = a0; a < a1; a++) {
        const float *ab = anchors + a * 4;
        const float v = iou_f32(ab, (ab[2] - ab[0]) * (ab[3] - ab[1]), b, b[4]);
        if (v > best[a]) {
            best[a] = v;
            match[a] = k;
        }
        if (v > *top) {
            *top = v;
            *top_anchor = a;
        }
    }
}

/* The labeller behind both entry points: with a layout, each box visits only the grid cells
 * around it (IoU is 0 elsewhere); at 640x640 with 100 boxes that is 12 ms instead of 70 ms. */
static sn_status label(const sn_anchor_layout *layout, const float *anchors, int64_t count,
                       const sn_gt_box *gt, int n_gt, int num_classes, int32_t *cls_targets,
                       float *box_targets, int64_t *num_positive) {
    if (!anchors || !cls_targets || !box_targets || (n_gt > 0 && !gt))
        return sn_error(SN_ERR_INVALID_ARG, "anchor labels: NULL argument");
    if (count <= 0 || n_gt < 0 || num_classes < 2)
        return sn_error(
            SN_ERR_INVALID_ARG,
            "anchor labels: %lld anchors, %d ground truths, %d classes (need > 0, >= 0, >= 2)",
            (long long)count, n_gt, num_classes);
    sn_status st = check_gt(gt, n_gt, num_classes);
    if (st != SN_OK) return st;

    int ng = 0;
    for (int i = 0; i < n_gt; i++) ng += !gt[i].iscrowd;
    /* Compact copy of the non-crowd boxes with their areas, each one's forced anchor, and each
     * anchor's best IoU so far (its best ground truth lives in cls_targets until the end). */
    float *gb = NULL, *best = NULL;
    int *orig = NULL;
    int64_t *forced = NULL;
    if (ng > 0) {
        gb = sn_alloc((size_t)ng * 5 * sizeof *gb);
        orig = sn_alloc((size_t)ng * sizeof *orig);
        forced = sn_alloc((size_t)ng * sizeof *forced);
        best = sn_alloc((size_t)count * sizeof *best);
        if (!gb || !best || !orig || !forced) {
            sn_free(gb);
            sn_free(best);
            sn_free(orig);
            sn_free(forced);
            return SN_ERR_OOM; /* sn_alloc set the message */
        }
        for (int i = 0, k = 0; i < n_gt; i++) {
            if (gt[i].iscrowd) continue;
            float *b = gb + (size_t)k * 5;
            b[0] = gt[i].ymin;
            b[1] = gt[i].xmin;
            b[2] = gt[i].ymax;
            b[3] = gt[i].xmax;
            b[4] = (b[2] - b[0]) * (b[3] - b[1]);
            orig[k++] = i;
        }
        for (int64_t a = 0; a < count; a++) best[a] = 0.0f;
    }
    for (int64_t a = 0; a < count; a++) cls_targets[a] = -1;

    for (int k = 0; k < ng; k++) {
        const float *b = gb + (size_t)k * 5;
        float top = 0.0f;
        int64_t top_anchor = -1;
        if (!layout) {
            visit(anchors, 0, count, b, k, best, cls_targets, &top, &top_anchor);
            forced[k] = top_anchor;
            continue;
        }
        const int A = layout->per_location;
        for (int li = 0; li < layout->num_levels; li++) {
            const int s = 1 << (layout->min_level + li), h = layout->level_h[li],
                      w = layout->level_w[li];
            const int64_t start = layout->level_start[li];
            double half_y = 0, half_x = 0;
            for (int a = 0; a < A; a++) {
                const float *ab = anchors + (start + a) * 4;
                half_y = fmax(half_y, 0.5 * ((double)ab[2] - ab[0]));
                half_x = fmax(half_x, 0.5 * ((double)ab[3] - ab[1]));
            }
            int y0, y1, x0, x1;
            cell_range(b[0], b[2], half_y, s, h, &y0, &y1);
            cell_range(b[1], b[3], half_x, s, w, &x0, &x1);
            for (int y = y0; y <= y1; y++) {
                /* A row's cells x0..x1 are consecutive anchors. */
                const int64_t first = start + ((int64_t)y * w + x0) * A;
                if (x0 <= x1)
                    visit(anchors, first, first + (int64_t)(x1 - x0 + 1) * A, b, k, best,
                          cls_targets, &top, &top_anchor);
            }
        }
        forced[k] = top_anchor;
    }
    for (int64_t a = 0; a < count; a++)
        if (cls_targets[a] >= 0 && !(best[a] >= 0.5f)) cls_targets[a] = -1;
    /* Forced matches, highest index first so that the lowest ground truth wins a shared anchor. */
    for (int k = ng - 1; k >= 0; k--)
        if (forced[k] >= 0) cls_targets[forced[k]] = k;

    int64_t npos = 0;
    for (int64_t a = 0; a < count; a++) {
        float *t = box_targets + a * 4;
        const int k = cls_targets[a];
        if (k < 0) {
            cls_targets[a] = 0;
            t[0] = t[1] = t[2] = t[3] = 0.0f;
            continue;
        }
        cls_targets[a] = gt[orig[k]].cls;
        sn_box_encode(anchors + a * 4, gb + (size_t)k * 5, t);
        npos++;
    }
    if (num_positive) *num_positive = npos;
    sn_free(gb);
    sn_free(best);
    sn_free(orig);
    sn_free(forced);
    return SN_OK;
}

sn_status sn_anchor_label(const sn_anchor_layout *layout, const float *anchors, const sn_gt_box *gt,
                          int n_gt, int num_classes, int32_t *cls_targets, float *box_targets,
                          int64_t *num_positive) {
    if (!layout) return sn_error(SN_ERR_INVALID_ARG, "anchor labels: NULL layout");
    if (layout->num_levels < 1 || layout->num_levels > SN_ANCHOR_MAX_LEVEL + 1 ||
        layout->per_location != SN_ANCHORS_PER_LOCATION || layout->count <= 0 ||
        layout->count != layout->level_start[layout->num_levels])
        return sn_error(SN_ERR_INVALID_ARG, "anchor labels: anchor layout not initialised");
    return label(layout, anchors, layout->count, gt, n_gt, num_classes, cls_targets, box_targets,
                 num_positive);
}

sn_status sn_anchor_label_all_pairs(const float *anchors, int64_t count, const sn_gt_box *gt,
                                    int n_gt, int num_classes, int32_t *cls_targets,
                                    float *box_targets, int64_t *num_positive) {
    return label(NULL, anchors, count, gt, n_gt, num_classes, cls_targets, box_targets,
                 num_positive);
}
