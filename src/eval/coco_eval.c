/* COCO box evaluation, following the definitions of pycocotools' COCOeval (evaluateImg,
 * accumulate, summarize) for iouType "bbox". See coco_eval.h. */
#include "coco_eval.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define T_ SN_COCO_IOUS
#define R_ SN_COCO_RECALLS
#define A_ SN_COCO_AREAS
#define M_ SN_COCO_MAXDETS

/* COCO's area ranges: [0, 1e5^2], [0, 32^2], [32^2, 96^2], [96^2, 1e5^2], both ends inside. */
static const double area_lo[A_] = {0.0, 0.0, 1024.0, 9216.0};
static const double area_hi[A_] = {1e10, 1024.0, 9216.0, 1e10};
static const int max_dets[M_] = {1, 10, 100};

void sn_coco_eval_thresholds(double iou[SN_COCO_IOUS], double recall[SN_COCO_RECALLS]) {
    /* numpy.linspace: start + i * ((stop - start) / (n - 1)), the last value set to stop. A
     * threshold one ulp off would flip an IoU of exactly .55 from match to miss. */
    volatile double step = (0.95 - 0.5) / (T_ - 1);
    for (int i = 0; i < T_; i++) {
        volatile double p = (double)i * step;
        iou[i] = p + 0.5;
    }
    iou[T_ - 1] = 0.95;
    step = (1.0 - 0.0) / (R_ - 1);
    for (int i = 0; i < R_; i++) {
        volatile double p = (double)i * step;
        recall[i] = p + 0.0;
    }
    recall[R_ - 1] = 1.0;
}

static const char *const stat_names[SN_COCO_NUM_STATS] = {
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"};

static const char *const stat_labels[SN_COCO_NUM_STATS] = {
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ]",
    "Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ]"};

const char *sn_coco_stat_name(int i) {
    return i >= 0 && i < SN_COCO_NUM_STATS ? stat_names[i] : "?";
}

const char *sn_coco_stat_label(int i) {
    return i >= 0 && i < SN_COCO_NUM_STATS ? stat_labels[i] : "?";
}

void sn_coco_eval_free(sn_coco_eval_result *r) {
    if (!r) return;
    sn_free(r->category_ids);
    sn_free(r->category_ap);
    sn_free(r->precision);
    sn_free(r->recall);
    memset(r, 0, sizeof *r);
}

/* Ground truths and detections are visited grouped by (category, image in id order), keeping
 * their original order inside a group, which the tie rules depend on. */
typedef struct {
    int k, img, idx;
} group_key;

static int cmp_key(const void *a, const void *b) {
    const group_key *x = a, *y = b;
    if (x->k != y->k) return x->k < y->k ? -1 : 1;
    if (x->img != y->img) return x->img < y->img ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* A detection of one image and category, highest score first, ties in input order (the
 * per-image stable sort). */
typedef struct {
    double score;
    int idx;
} scored;

static int cmp_scored(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* One kept detection of a category with its outcome for every area range and threshold. */
typedef struct {
    double score;
    int img, pos;        /* image rank by id; rank among its image's detections */
    uint16_t tp[A_];     /* bit t: matched at threshold t */
    uint16_t ignore[A_]; /* bit t: counts neither as true nor as false positive */
} entry;

/* The accumulation's order: score descending, then image id, then rank in the image: what a
 * stable sort of the per-image lists concatenated in image-id order gives. */
static int cmp_entry(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->img != y->img) return x->img < y->img ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Growable work arrays. */
typedef struct {
    double *iou;
    size_t iou_cap;
    scored *det;
    size_t det_cap;
    void *gt_block; /* order, then the three flag arrays */
    size_t gt_cap;
    int *order;
    unsigned char *gt_ig, *gt_used, *crowd;
} work;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = sn_alloc(n * elem);
    if (!q) return 0;
    sn_free(*p);
    *p = q;
    *cap = n;
    return 1;
}

static void work_free(work *w) {
    sn_free(w->iou);
    sn_free(w->det);
    sn_free(w->gt_block);
}

static int work_gt(work *w, size_t g) {
    if (!grow(&w->gt_block, &w->gt_cap, g, sizeof(int) + 3)) return 0;
    w->order = w->gt_block;
    w->gt_ig = (unsigned char *)(w->order + w->gt_cap);
    w->gt_used = w->gt_ig + w->gt_cap;
    w->crowd = w->gt_used + w->gt_cap;
    return 1;
}

/* Box IoU as pycocotools computes it (maskApi bbIou): for a crowd ground truth the union is
 * the detection's own area, so a detection inside a crowd region scores 1. */
static double box_iou(const double *d, const double *g, int crowd) {
    double w = fmin(d[0] + d[2], g[0] + g[2]) - fmax(d[0], g[0]);
    if (w <= 0) return 0;
    double h = fmin(d[1] + d[3], g[1] + g[3]) - fmax(d[1], g[1]);
    if (h <= 0) return 0;
    double da = d[2] * d[3], ga = g[2] * g[3];
    double inter = w * h;
    double uni = crowd ? da : da + ga - inter;
    return inter / uni;
}

/* evaluateImg for one image and category over every area range and threshold: appends the
 * detections (already sorted and cut at 100) to `out` and adds the non-ignored ground truths
 * to npig. */
static void eval_unit(const sn_coco *gt, const group_key *gk, int ng, const sn_coco_det *dets,
                      const scored *ds, int nd, int img, const double *thr, work *w,
                      int64_t npig[A_], entry *out) {
    double *iou = w->iou;
    for (int d = 0; d < nd; d++)
        for (int g = 0; g < ng; g++) {
            const sn_coco_ann *an = &gt->anns[gk[g].idx];
            iou[d * ng + g] = box_iou(dets[ds[d].idx].bbox, an->file_box, an->iscrowd);
        }
    for (int g = 0; g < ng; g++) w->crowd[g] = (unsigned char)gt->anns[gk[g].idx].iscrowd;
    for (int d = 0; d < nd; d++) {
        out[d].score = ds[d].score;
        out[d].img = img;
        out[d].pos = d;
        memset(out[d].tp, 0, sizeof out[d].tp);
        memset(out[d].ignore, 0, sizeof out[d].ignore);
    }
    for (int a = 0; a < A_; a++) {
        /* Ground truths ignored in this range (crowds, areas outside) go last, stably. */
        int n = 0;
        for (int g = 0; g < ng; g++) {
            const sn_coco_ann *an = &gt->anns[gk[g].idx];
            w->gt_ig[g] = an->iscrowd || an->area < area_lo[a] || an->area > area_hi[a];
            if (!w->gt_ig[g]) w->order[n++] = g;
        }
        npig[a] += n;
        for (int g = 0; g < ng; g++)
            if (w->gt_ig[g]) w->order[n++] = g;
        for (int t = 0; t < T_; t++) {
            memset(w->gt_used, 0, (size_t)ng);
            const uint16_t bit = (uint16_t)(1u << t);
            for (int d = 0; d < nd; d++) {
                double best = fmin(thr[t], 1 - 1e-10);
                int m = -1;
                for (int j = 0; j < ng; j++) {
                    int g = w->order[j];
                    if (w->gt_used[j] && !w->crowd[g]) continue;
                    /* Holding a match to a real object: never trade it for an ignored one. */
                    if (m > -1 && !w->gt_ig[w->order[m]] && w->gt_ig[g]) break;
                    if (iou[d * ng + g] < best) continue;
                    best = iou[d * ng + g];
                    m = j;
                }
                if (m == -1) continue;
                out[d].tp[a] |= bit;
                if (w->gt_ig[w->order[m]]) out[d].ignore[a] |= bit;
                w->gt_used[m] = 1;
            }
        }
        /* Unmatched detections outside the range are not false positives. */
        for (int d = 0; d < nd; d++) {
            const double *b = dets[ds[d].idx].bbox;
            double area = b[2] * b[3];
            if (area < area_lo[a] || area > area_hi[a])
                out[d].ignore[a] |= (uint16_t)~out[d].tp[a] & (uint16_t)((1u << T_) - 1);
        }
    }
}

/* accumulate for one category and area range with npig > 0: precision averaged over the recall
 * points and final recall, for each maxDets and threshold. */
static void accumulate(const entry *e, int ne, int a, int64_t npig, const double *rec_thr,
                       double *rc, double *pr, double *prec_out, double *rec_out) {
    for (int m = 0; m < M_; m++) {
        for (int t = 0; t < T_; t++) {
            const uint16_t bit = (uint16_t)(1u << t);
            double tp = 0, fp = 0;
            int nd = 0;
            for (int i = 0; i < ne; i++) {
                if (e[i].pos >= max_dets[m]) continue;
                if (!(e[i].ignore[a] & bit)) {
                    if (e[i].tp[a] & bit)
                        tp += 1;
                    else
                        fp += 1;
                }
                rc[nd] = tp / (double)npig;
                pr[nd] = tp / (fp + tp + DBL_EPSILON);
                nd++;
            }
            rec_out[m * T_ + t] = nd ? rc[nd - 1] : 0.0;
            /* Precision made non-increasing in recall, then read at the first detection whose
             * recall reaches each recall point (0 beyond the last one reached). */
            for (int i = nd - 1; i > 0; i--)
                if (pr[i] > pr[i - 1]) pr[i - 1] = pr[i];
            double sum = 0;
            int p = 0;
            for (int r = 0; r < R_; r++) {
                while (p < nd && rc[p] < rec_thr[r]) p++;
                if (p == nd) break;
                sum += pr[p];
            }
            prec_out[m * T_ + t] = sum / R_;
        }
    }
}

static double mean_valid(const double *v, const int *idx, int n) {
    double s = 0;
    int c = 0;
    for (int i = 0; i < n; i++)
        if (v[idx[i]] > -1) {
            s += v[idx[i]];
            c++;
        }
    return c ? s / c : -1.0;
}

/* The twelve numbers over categories [k0, k1) into stats (idx: room for (k1 - k0) * T_). */
static void summarize_range(const sn_coco_eval_result *r, int k0, int k1, int *idx,
                            double stats[SN_COCO_NUM_STATS]) {
    /* {is AP, t (-1: all), area, maxDets index} for each summary number. */
    static const int spec[SN_COCO_NUM_STATS][4] = {
        {1, -1, 0, 2}, {1, 0, 0, 2}, {1, 5, 0, 2}, {1, -1, 1, 2}, {1, -1, 2, 2}, {1, -1, 3, 2},
        {0, -1, 0, 0}, {0, -1, 0, 1}, {0, -1, 0, 2}, {0, -1, 1, 2}, {0, -1, 2, 2}, {0, -1, 3, 2}};
    for (int s = 0; s < SN_COCO_NUM_STATS; s++) {
        int n = 0;
        for (int k = k0; k < k1; k++)
            for (int t = 0; t < T_; t++)
                if (spec[s][1] < 0 || spec[s][1] == t)
                    idx[n++] = ((k * A_ + spec[s][2]) * M_ + spec[s][3]) * T_ + t;
        stats[s] = mean_valid(spec[s][0] ? r->precision : r->recall, idx, n);
    }
}

static sn_status summarize(sn_coco_eval_result *r) {
    const int K = r->num_categories;
    int *idx = sn_alloc(((size_t)K * T_ + 1) * sizeof *idx);
    if (!idx) return sn_error(SN_ERR_OOM, "coco eval: out of memory");
    summarize_range(r, 0, K, idx, r->stats);
    for (int k = 0; k < K; k++) {
        for (int t = 0; t < T_; t++) idx[t] = ((k * A_ + 0) * M_ + 2) * T_ + t;
        r->category_ap[k] = mean_valid(r->precision, idx, T_);
    }
    sn_free(idx);
    return SN_OK;
}

void sn_coco_category_stats(const sn_coco_eval_result *r, int k, double stats[SN_COCO_NUM_STATS]) {
    int idx[T_];
    if (k < 0 || k >= r->num_categories || !r->precision) {
        for (int s = 0; s < SN_COCO_NUM_STATS; s++) stats[s] = -1;
        return;
    }
    summarize_range(r, k, k + 1, idx, stats);
}

sn_status sn_coco_evaluate(const sn_coco *gt, const sn_coco_det *dets, size_t count,
                           sn_coco_eval_result *out) {
    memset(out, 0, sizeof *out);
    if (!gt || (!dets && count))
        return sn_error(SN_ERR_INVALID_ARG, "sn_coco_evaluate: NULL argument");
    if (count > INT32_MAX)
        return sn_error(SN_ERR_INVALID_ARG, "coco eval: too many detections (%zu)", count);
    const int K = gt->num_categories, ndet = (int)count;
    double thr[T_], rec_thr[R_];
    sn_coco_eval_thresholds(thr, rec_thr);

    sn_status st = SN_OK;
    int *rank = sn_alloc(((size_t)gt->num_images + 1) * sizeof *rank);
    group_key *gk = sn_alloc(((size_t)gt->num_anns + 1) * sizeof *gk);
    group_key *dk = sn_alloc(((size_t)ndet + 1) * sizeof *dk);
    entry *ent = NULL;
    double *rc = NULL, *pr = NULL;
    work w;
    memset(&w, 0, sizeof w);
    out->num_categories = K;
    out->category_ids = sn_alloc(((size_t)K + 1) * sizeof *out->category_ids);
    out->category_ap = sn_alloc(((size_t)K + 1) * sizeof *out->category_ap);
    out->precision = sn_alloc(((size_t)K * A_ * M_ * T_ + 1) * sizeof(double));
    out->recall = sn_alloc(((size_t)K * A_ * M_ * T_ + 1) * sizeof(double));
    if (!rank || !gk || !dk || !out->category_ids || !out->category_ap || !out->precision ||
        !out->recall) {
        st = sn_error(SN_ERR_OOM, "coco eval: out of memory");
        goto out;
    }
    for (size_t i = 0; i < (size_t)K * A_ * M_ * T_; i++) out->precision[i] = out->recall[i] = -1;
    for (int k = 0; k < K; k++) out->category_ids[k] = gt->categories[k].id;
    for (int r = 0; r < gt->num_images; r++) rank[gt->image_index[r].index] = r;

    for (int a = 0; a < gt->num_anns; a++) {
        const sn_coco_ann *an = &gt->anns[a];
        gk[a].k = sn_coco_find_category(gt, an->category_id);
        gk[a].img = rank[an->image];
        gk[a].idx = a;
    }
    for (int i = 0; i < ndet; i++) {
        const sn_coco_det *d = &dets[i];
        int im = sn_coco_find_image(gt, d->image_id);
        int k = sn_coco_find_category(gt, d->category_id);
        if (im < 0) {
            st = sn_error(SN_ERR_INVALID_ARG,
                          "coco eval: detection %d: image_id %" PRId64
                          " is not an image of the ground truth",
                          i, d->image_id);
            goto out;
        }
        if (k < 0) {
            st = sn_error(SN_ERR_INVALID_ARG,
                          "coco eval: detection %d: category_id %d is not a category of the "
                          "ground truth",
                          i, d->category_id);
            goto out;
        }
        if (!isfinite(d->score) || !isfinite(d->bbox[0]) || !isfinite(d->bbox[1]) ||
            !isfinite(d->bbox[2]) || !isfinite(d->bbox[3])) {
            st = sn_error(SN_ERR_INVALID_ARG,
                          "coco eval: detection %d has a non-finite box or score", i);
            goto out;
        }
        dk[i].k = k;
        dk[i].img = rank[im];
        dk[i].idx = i;
    }
    qsort(gk, (size_t)gt->num_anns, sizeof *gk, cmp_key);
    qsort(dk, (size_t)ndet, sizeof *dk, cmp_key);

    /* Work arrays sized for the category with the most detections. */
    int most = 0;
    for (int i = 0, j; i < ndet; i = j) {
        for (j = i; j < ndet && dk[j].k == dk[i].k; j++) {}
        if (j - i > most) most = j - i;
    }
    ent = sn_alloc(((size_t)most + 1) * sizeof *ent);
    rc = sn_alloc(((size_t)most + 1) * sizeof *rc);
    pr = sn_alloc(((size_t)most + 1) * sizeof *pr);
    if (!ent || !rc || !pr) {
        st = sn_error(SN_ERR_OOM, "coco eval: out of memory");
        goto out;
    }

    int gi = 0, di = 0;
    for (int k = 0; k < K; k++) {
        int64_t npig[A_] = {0, 0, 0, 0};
        int ne = 0;
        while ((gi < gt->num_anns && gk[gi].k == k) || (di < ndet && dk[di].k == k)) {
            int img = INT32_MAX;
            if (gi < gt->num_anns && gk[gi].k == k) img = gk[gi].img;
            if (di < ndet && dk[di].k == k && dk[di].img < img) img = dk[di].img;
            int g0 = gi, d0 = di;
            while (gi < gt->num_anns && gk[gi].k == k && gk[gi].img == img) gi++;
            while (di < ndet && dk[di].k == k && dk[di].img == img) di++;
            int ng = gi - g0, nd = di - d0;
            if (!grow((void **)&w.det, &w.det_cap, (size_t)nd + 1, sizeof *w.det) ||
                !work_gt(&w, (size_t)ng + 1)) {
                st = sn_error(SN_ERR_OOM, "coco eval: out of memory");
                goto out;
            }
            for (int d = 0; d < nd; d++) {
                w.det[d].score = dets[dk[d0 + d].idx].score;
                w.det[d].idx = dk[d0 + d].idx;
            }
            qsort(w.det, (size_t)nd, sizeof *w.det, cmp_scored);
            if (nd > max_dets[M_ - 1]) nd = max_dets[M_ - 1];
            if (!grow((void **)&w.iou, &w.iou_cap, (size_t)nd * ng + 1, sizeof *w.iou)) {
                st = sn_error(SN_ERR_OOM, "coco eval: out of memory");
                goto out;
            }
            eval_unit(gt, gk + g0, ng, dets, w.det, nd, img, thr, &w, npig, ent + ne);
            ne += nd;
        }
        qsort(ent, (size_t)ne, sizeof *ent, cmp_entry);
        for (int a = 0; a < A_; a++) {
            if (npig[a] == 0) continue; /* no ground truth: stays -1 */
            size_t base = (size_t)(k * A_ + a) * M_ * T_;
            accumulate(ent, ne, a, npig[a], rec_thr, rc, pr, out->precision + base,
                       out->recall + base);
        }
    }
    st = summarize(out);
out:
    sn_free(rank);
    sn_free(gk);
    sn_free(dk);
    sn_free(ent);
    sn_free(rc);
    sn_free(pr);
    work_free(&w);
    if (st != SN_OK) sn_coco_eval_free(out);
    return st;
}
