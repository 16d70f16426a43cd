/* Post-processing (src/post/) against the torch/torchvision goldens of tests/golden/post/
 * (decoding, IoU, nms and batched_nms, the whole detection generator), against a plain full-sort
 * reference on random inputs with ties, on hand cases at the edges (threshold equalities,
 * class-aware NMS, tie order), bad arguments, every allocation failure and two threads. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "post.h"
#include "safetensors.h"
#include "golden_st.h"
#include "test.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static int load(const char *name, sn_st_file *f) {
    const char *src = getenv("SN_SOURCE_DIR");
    char path[2048];
    snprintf(path, sizeof path, "%s/tests/golden/post/%s", src ? src : ".", name);
    return t_golden_read(path, f);
}

/* ---- decode ------------------------------------------------------------------------------ */

static void test_decode_golden(void) {
    sn_st_file g;
    if (!load("decode.safetensors", &g)) return;
    const sn_st_tensor *a = t_need(&g, "anchors"), *d = t_need(&g, "deltas"), *ref = t_need(&g, "boxes");
    if (a && d && ref && a->count == d->count && d->count == ref->count) {
        const size_t n = a->count / 4;
        const float H = (float)t_meta_d(&g, "image_h"), W = (float)t_meta_d(&g, "image_w");
        float *out = malloc(n * 4 * sizeof *out);
        CHECK_OK(sn_box_decode(d->data, a->data, n, H, W, out));
        double err = t_max_abs_diff(out, ref->data, n * 4);
        /* Coordinates are at most 160; the float ops are the reference's, only expf may differ. */
        CHECK(err <= 1e-4, "decode: max abs err %.3g", err);
        int clipped = 0, inside = 1;
        for (size_t i = 0; i < n; i++) {
            clipped += out[4 * i] == 0.0f || out[4 * i + 1] == 0.0f || out[4 * i + 2] == H ||
                       out[4 * i + 3] == W;
            inside &= out[4 * i] >= 0 && out[4 * i + 1] >= 0 && out[4 * i + 2] <= H &&
                      out[4 * i + 3] <= W && out[4 * i] <= out[4 * i + 2];
        }
        CHECK(clipped > 100 && inside, "decode: %d boxes at the border, all inside %d", clipped,
              inside);
        /* In place (boxes over the deltas), one at a time, and without clipping. */
        float *buf = malloc(n * 4 * sizeof *buf);
        memcpy(buf, d->data, n * 4 * sizeof *buf);
        CHECK_OK(sn_box_decode(buf, a->data, n, H, W, buf));
        CHECK(memcmp(buf, out, n * 4 * sizeof *buf) == 0, "in-place decode differs");
        float one[4], raw[4];
        sn_box_decode_one(d->data + 4 * 7, a->data + 4 * 7, SN_BOX_XFORM_CLIP, H, W, one);
        CHECK(memcmp(one, out + 4 * 7, sizeof one) == 0, "sn_box_decode_one differs");
        int beyond = 0;
        for (size_t i = 0; i < n; i++) {
            sn_box_decode_one(d->data + 4 * i, a->data + 4 * i, SN_BOX_XFORM_CLIP, 0, 0, raw);
            beyond += raw[0] < 0 || raw[1] < 0 || raw[2] > H || raw[3] > W;
        }
        CHECK(beyond > 100, "unclipped decode: only %d boxes leave the image", beyond);
        printf("decode: %zu boxes, max abs err %.3g, %d at the border\n", n, err, clipped);
        free(buf);
        free(out);
    }
    sn_st_free(&g);

    /* Hand values: zero deltas give the anchor back; dh = 10 is clipped to log(1000/16). */
    const float anc[4] = {10, 20, 30, 60}, zero[4] = {0, 0, 0, 0}, big[4] = {0.5f, -0.25f, 10, 0};
    float b[4];
    sn_box_decode_one(zero, anc, SN_BOX_XFORM_CLIP, 100, 100, b);
    CHECK(b[0] == 10 && b[1] == 20 && b[2] == 30 && b[3] == 60, "zero deltas: %g %g %g %g",
          b[0], b[1], b[2], b[3]);
    sn_box_decode_one(big, anc, SN_BOX_XFORM_CLIP, 0, 0, b);
    const double h = 20.0 * 1000.0 / 16.0, yc = 20 + 0.5 * 20;
    CHECK(fabs(b[0] - (yc - h / 2)) < 1e-2 && fabs(b[2] - (yc + h / 2)) < 1e-2,
          "clipped dh: %g %g want %g %g", b[0], b[2], yc - h / 2, yc + h / 2);
    CHECK(b[1] == 10 && b[3] == 50, "dx: %g %g", b[1], b[3]);
    CHECK(sn_box_decode(NULL, anc, 1, 1, 1, b) == SN_ERR_INVALID_ARG, "NULL decode");
    CHECK_OK(sn_box_decode(NULL, NULL, 0, 1, 1, NULL));
}

/* ---- IoU and NMS ------------------------------------------------------------------------- */

static int same_keep(const int32_t *keep, int nk, const sn_st_tensor *ref, const char *what) {
    int ok = ref && (size_t)nk == ref->count;
    for (int i = 0; ok && i < nk; i++) ok = keep[i] == (int32_t)ref->data[i];
    CHECK(ok, "%s: %d kept, golden %zu (first difference shown by order)", what, nk,
          ref ? ref->count : 0);
    return ok;
}

static void test_nms_golden(void) {
    sn_st_file g;
    if (!load("nms.safetensors", &g)) return;
    const sn_st_tensor *bt = t_need(&g, "boxes"), *st = t_need(&g, "scores"), *ct = t_need(&g, "classes");
    const sn_st_tensor *iou = t_need(&g, "iou64");
    if (!bt || !st || !ct || !iou) {
        sn_st_free(&g);
        return;
    }
    const int n = (int)st->count;
    int32_t *cls = malloc((size_t)n * sizeof *cls), *keep = malloc((size_t)n * sizeof *keep);
    for (int i = 0; i < n; i++) cls[i] = (int32_t)ct->data[i];

    double ierr = 0;
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++) {
            double e = fabs(sn_box_iou(bt->data + 4 * i, bt->data + 4 * j) - iou->data[64 * i + j]);
            if (!(e <= ierr)) ierr = e;
        }
    CHECK(ierr <= 1e-6, "IoU vs torchvision box_iou: max err %.3g", ierr);
    CHECK(sn_box_iou(bt->data, bt->data + 4) == 0.5f, "the exact-threshold pair: %.9g",
          sn_box_iou(bt->data, bt->data + 4));

    const char *tags[] = {"03", "05", "07"};
    const float thr[] = {0.3f, 0.5f, 0.7f};
    for (int t = 0; t < 3; t++) {
        char name[64];
        int nk = -1;
        snprintf(name, sizeof name, "keep_t%s", tags[t]);
        const sn_st_tensor *rp = t_need(&g, name);
        CHECK_OK(sn_nms(bt->data, st->data, NULL, n, thr[t], 0, keep, &nk));
        same_keep(keep, nk, rp, name);
        snprintf(name, sizeof name, "keep_class_t%s", tags[t]);
        const sn_st_tensor *rc = t_need(&g, name);
        CHECK_OK(sn_nms(bt->data, st->data, cls, n, thr[t], 0, keep, &nk));
        same_keep(keep, nk, rc, name);
        /* A limit returns the head of the unlimited answer. */
        CHECK_OK(sn_nms(bt->data, st->data, cls, n, thr[t], 17, keep, &nk));
        int head = nk == 17;
        for (int i = 0; head && i < nk; i++) head = keep[i] == (int32_t)rc->data[i];
        CHECK(head, "max_keep 17 at %s: %d kept", tags[t], nk);
        printf("nms t=0.%s: %zu kept plain, %zu class-aware, same as torchvision\n", tags[t] + 1,
               rp ? rp->count : 0, rc ? rc->count : 0);
    }
    free(cls);
    free(keep);
    sn_st_free(&g);
}

static void test_nms_hand(void) {
    /* 0 and 1: IoU exactly 0.5 (kept at 0.5, dropped below). 2: same box as 0, other class.
     * 3: same box as 0, same class, same score: the lower index (0) wins. */
    const float b[] = {0, 0, 10, 10, 0, 0, 10, 5, 0, 0, 10, 10, 0, 0, 10, 10};
    const float s[] = {0.9f, 0.8f, 0.9f, 0.9f};
    const int32_t c[] = {0, 0, 1, 0};
    int32_t keep[4];
    int nk = 0;
    CHECK_OK(sn_nms(b, s, c, 4, 0.5f, 0, keep, &nk));
    CHECK(nk == 3 && keep[0] == 0 && keep[1] == 2 && keep[2] == 1,
          "class-aware at IoU = threshold: %d kept (%d %d %d)", nk, keep[0], keep[1], keep[2]);
    CHECK_OK(sn_nms(b, s, c, 4, 0.49f, 0, keep, &nk));
    CHECK(nk == 2 && keep[0] == 0 && keep[1] == 2, "threshold 0.49: %d kept", nk);
    CHECK_OK(sn_nms(b, s, NULL, 4, 0.5f, 0, keep, &nk));
    CHECK(nk == 2 && keep[0] == 0 && keep[1] == 1, "class-agnostic: %d kept (%d %d)", nk, keep[0],
          keep[1]);
    /* NaN scores rank last, and zero-area boxes never suppress (their IoU is 0 or NaN). */
    const float s2[] = {NAN, 0.1f, 0.2f, 0.3f};
    CHECK_OK(sn_nms(b, s2, NULL, 4, 0.5f, 0, keep, &nk));
    CHECK(nk == 2 && keep[0] == 3 && keep[1] == 1, "NaN score: %d kept (%d %d)", nk, keep[0],
          keep[1]);
    const float e[] = {5, 5, 5, 5, 5, 5, 5, 5};
    CHECK_OK(sn_nms(e, s, NULL, 2, 0.5f, 0, keep, &nk));
    CHECK(nk == 2, "empty boxes: %d kept", nk);
    CHECK(isnan(sn_box_iou(e, e + 4)), "IoU of two empty boxes %g", sn_box_iou(e, e + 4));
    CHECK_OK(sn_nms(NULL, NULL, NULL, 0, 0.5f, 0, NULL, &nk));
    CHECK(nk == 0, "n = 0");
    CHECK(sn_nms(b, s, NULL, -1, 0.5f, 0, keep, &nk) == SN_ERR_INVALID_ARG, "n < 0");
    CHECK(sn_nms(b, NULL, NULL, 4, 0.5f, 0, keep, &nk) == SN_ERR_INVALID_ARG, "NULL scores");
    CHECK(sn_nms(b, s, NULL, 4, 0.5f, 0, keep, NULL) == SN_ERR_INVALID_ARG, "NULL n_keep");

    int failed = 0, done = 0;
    for (long k = 1; k < 32 && !done; k++) {
        sn_alloc_fail_after(k);
        nk = -1;
        const sn_status st = sn_nms(b, s, c, 4, 0.5f, 0, keep, &nk);
        sn_alloc_fail_after(0);
        if (st == SN_OK) {
            done = 1;
            CHECK(nk == 3, "after failures: %d kept", nk);
        } else {
            failed++;
            CHECK(st == SN_ERR_OOM && nk == 0, "nms failure %ld: %s", k, sn_status_name(st));
        }
    }
    CHECK(done && failed >= 1, "nms under injected failures: %d failures, done %d", failed, done);
}

/* ---- the detection generator ------------------------------------------------------------- */

typedef struct {
    int n, A, C, n_levels, hw[8];
    float *cls[8], *box[8];
    sn_det_level lv[8];
    float *anchors;
    int64_t n_anchors;
} layout;

static void layout_free(layout *L) {
    for (int l = 0; l < L->n_levels; l++) {
        free(L->cls[l]);
        free(L->box[l]);
    }
    free(L->anchors);
}

/* The golden inputs, from the shared hash fill (contract in gen_post.py, logits_from_u). */
static void golden_inputs(layout *L, uint64_t seed) {
    for (int l = 0; l < L->n_levels; l++) {
        const int lvl = 3 + l, hw = L->hw[l];
        const size_t cells = (size_t)L->n * hw * hw * L->A;
        const size_t nc = cells * L->C, nb = cells * 4;
        char name[32];
        L->cls[l] = malloc(nc * sizeof(float));
        L->box[l] = malloc(nb * sizeof(float));
        snprintf(name, sizeof name, "class.%d", lvl);
        sn_hash_fill(L->cls[l], nc, name, seed, 0.0, 1.0);
        for (size_t i = 0; i < nc; i++) {
            const double u = L->cls[l][i];
            const double u2 = u * u, u4 = u2 * u2, u8 = u4 * u4, u16 = u8 * u8, v = u16 * u4;
            L->cls[l][i] = (float)(floor((13.0 * v - 7.0) * 1024.0) / 1024.0);
        }
        snprintf(name, sizeof name, "box.%d", lvl);
        sn_hash_fill(L->box[l], nb, name, seed, -0.5, 0.5);
        L->lv[l] = (sn_det_level){L->cls[l], L->box[l], hw, hw};
    }
}

typedef struct {
    float boxes[4 * 512], scores[512];
    int32_t classes[512], anchors[512];
    sn_detections d;
} det_buf;

static void det_buf_init(det_buf *b) {
    b->d = (sn_detections){b->boxes, b->scores, b->classes, b->anchors, 512, -1};
}

static void test_detect_golden(void) {
    sn_st_file g;
    if (!load("detect.safetensors", &g)) return;
    layout L = {0};
    L.n = (int)t_meta_d(&g, "batch");
    L.A = (int)t_meta_d(&g, "num_anchors");
    L.C = (int)t_meta_d(&g, "num_classes");
    L.n_levels = 5;
    const int size = (int)t_meta_d(&g, "height");
    for (int l = 0; l < 5; l++) L.hw[l] = (size + (1 << (l + 3)) - 1) >> (l + 3);
    golden_inputs(&L, (uint64_t)t_meta_d(&g, "seed"));
    const sn_st_tensor *anc = t_need(&g, "anchors"), *sums = t_need(&g, "logit_sums"),
                       *samp = t_need(&g, "logit_samples");
    int ok_inputs = anc && sums && samp && sums->count == 5 && samp->count == 80;
    for (int l = 0; ok_inputs && l < 5; l++) {
        double s = 0;
        const size_t nc = (size_t)L.n * L.hw[l] * L.hw[l] * L.A * L.C;
        for (size_t i = 0; i < nc; i++) s += L.cls[l][i];
        ok_inputs = (float)s == sums->data[l] && memcmp(L.cls[l], samp->data + 16 * l, 64) == 0;
    }
    CHECK(ok_inputs, "the hash-filled logits differ from the generator's");
    if (!ok_inputs) {
        layout_free(&L);
        sn_st_free(&g);
        return;
    }
    const sn_det_input base = {L.lv, 5, 0, L.A, L.C, anc->data, (int64_t)(anc->count / 4),
                               (float)size, (float)size};
    const int cases = (int)t_meta_d(&g, "cases");
    CHECK(cases == 3, "%d golden cases", cases);
    for (int k = 0; k < cases; k++) {
        sn_det_params p;
        sn_det_params_init(&p);
        char key[96];
        p.drop_empty = 0; /* the official generator, which reports empty boxes */
        snprintf(key, sizeof key, "case%d.pre_nms_top_k", k);
        p.pre_nms_top_k = (int)t_meta_d(&g, key);
        snprintf(key, sizeof key, "case%d.score_threshold", k);
        p.score_threshold = (float)t_meta_d(&g, key);
        snprintf(key, sizeof key, "case%d.iou_threshold", k);
        p.iou_threshold = (float)t_meta_d(&g, key);
        snprintf(key, sizeof key, "case%d.max_per_class", k);
        p.max_per_class = (int)t_meta_d(&g, key);
        snprintf(key, sizeof key, "case%d.max_detections", k);
        p.max_detections = (int)t_meta_d(&g, key);
        for (int img = 0; img < L.n; img++) {
            det_buf out;
            det_buf_init(&out);
            sn_det_input in = base;
            in.image = img;
            const double t0 = now_s();
            CHECK_OK(sn_detect(&p, &in, &out.d));
            const double t1 = now_s();
            char pre[64], nm[96];
            snprintf(pre, sizeof pre, "case%d.image%d.", k, img);
            snprintf(nm, sizeof nm, "%sscores", pre);
            const sn_st_tensor *rs = t_need(&g, nm);
            snprintf(nm, sizeof nm, "%sclasses", pre);
            const sn_st_tensor *rc = t_need(&g, nm);
            snprintf(nm, sizeof nm, "%sanchors", pre);
            const sn_st_tensor *ra = t_need(&g, nm);
            snprintf(nm, sizeof nm, "%sboxes", pre);
            const sn_st_tensor *rb = t_need(&g, nm);
            if (!rs || !rc || !ra || !rb) continue;
            CHECK((size_t)out.d.count == rs->count, "%s: %d detections, golden %zu", pre,
                  out.d.count, rs->count);
            if ((size_t)out.d.count != rs->count) continue;
            int first_bad = -1;
            for (int i = 0; i < out.d.count && first_bad < 0; i++)
                if (out.classes[i] != (int32_t)rc->data[i] ||
                    out.anchors[i] != (int32_t)ra->data[i])
                    first_bad = i;
            CHECK(first_bad < 0, "%s: detection %d is class %d anchor %d, golden %d %d", pre,
                  first_bad, first_bad < 0 ? 0 : out.classes[first_bad],
                  first_bad < 0 ? 0 : out.anchors[first_bad],
                  first_bad < 0 ? 0 : (int)rc->data[first_bad],
                  first_bad < 0 ? 0 : (int)ra->data[first_bad]);
            const double es = t_max_abs_diff(out.scores, rs->data, rs->count);
            const double eb = t_max_abs_diff(out.boxes, rb->data, rb->count);
            CHECK(es <= 1e-6 && eb <= 1e-4, "%s: score err %.3g, box err %.3g", pre, es, eb);
            printf("detect case %d image %d: %d detections match (score err %.2g, box err %.2g), "
                   "%.2f ms\n", k, img, out.d.count, es, eb, 1e3 * (t1 - t0));
        }
    }
    layout_free(&L);
    sn_st_free(&g);
}

/* A plain version of the generator for random cross-checks: all scores, a full sort per
 * class, then sn_nms_sorted; differs from sn_detect in how it selects (no heap, no logit
 * pre-test) and in holding everything. */
static int detect_plain(const sn_det_params *p, const sn_det_input *in, det_buf *out) {
    const int C = in->num_classes;
    const int64_t N = in->n_anchors;
    typedef struct { float s; int32_t c, a; float b[4]; } row;
    row *all = malloc((size_t)N * C * sizeof *all), *res = malloc((size_t)N * C * sizeof *res);
    float *bx = malloc((size_t)N * 4 * sizeof *bx), *ar = malloc((size_t)N * sizeof *ar);
    int32_t *keep = malloc((size_t)N * sizeof *keep);
    int nres = 0;
    for (int c = 1; c < C; c++) {
        int m = 0;
        int64_t g = 0;
        for (int l = 0; l < in->n_levels; l++) {
            const sn_det_level *lv = &in->levels[l];
            const int64_t rows = (int64_t)lv->h * lv->w * in->num_anchors;
            for (int64_t r = 0; r < rows; r++, g++) {
                const float x = lv->cls[((size_t)in->image * rows + r) * C + c];
                const float s = 1.0f / (1.0f + expf(-x));
                if (!(s > p->score_threshold)) continue;
                row *e = &all[m++];
                e->s = s;
                e->c = c;
                e->a = (int32_t)g;
                sn_box_decode_one(lv->box + ((size_t)in->image * rows + r) * 4,
                                  in->anchors + 4 * g, p->box_clip, in->image_h, in->image_w,
                                  e->b);
            }
        }
        /* Insertion sort: (score desc, anchor asc); small inputs only. */
        for (int i = 1; i < m; i++) {
            row t = all[i];
            int j = i - 1;
            while (j >= 0 && (all[j].s < t.s || (all[j].s == t.s && all[j].a > t.a))) {
                all[j + 1] = all[j];
                j--;
            }
            all[j + 1] = t;
        }
        if (m > p->pre_nms_top_k) m = p->pre_nms_top_k;
        for (int i = 0; i < m; i++) {
            memcpy(bx + 4 * i, all[i].b, sizeof all[i].b);
            ar[i] = (all[i].b[2] - all[i].b[0]) * (all[i].b[3] - all[i].b[1]);
        }
        const int nk = sn_nms_sorted(bx, ar, m, p->iou_threshold, p->max_per_class, keep);
        for (int j = 0; j < nk; j++) res[nres++] = all[keep[j]];
    }
    /* Stable insertion sort by score keeps class order for ties. */
    for (int i = 1; i < nres; i++) {
        row t = res[i];
        int j = i - 1;
        while (j >= 0 && res[j].s < t.s) {
            res[j + 1] = res[j];
            j--;
        }
        res[j + 1] = t;
    }
    const int n = nres < p->max_detections ? nres : p->max_detections;
    for (int i = 0; i < n; i++) {
        out->scores[i] = res[i].s;
        out->classes[i] = res[i].c;
        out->anchors[i] = res[i].a;
        memcpy(out->boxes + 4 * i, res[i].b, sizeof res[i].b);
    }
    free(all);
    free(res);
    free(bx);
    free(ar);
    free(keep);
    return n;
}

/* A small random layout: levels of 4x4 and 2x2, A = 3, C = 6, 2 images, coarse logits (many
 * exact ties) and anchors on a grid that overlap a lot. */
static void small_layout(layout *L, uint64_t seed, double logit_lo, double logit_hi) {
    memset(L, 0, sizeof *L);
    L->n = 2;
    L->A = 3;
    L->C = 6;
    L->n_levels = 2;
    L->hw[0] = 4;
    L->hw[1] = 2;
    L->n_anchors = 0;
    for (int l = 0; l < 2; l++) L->n_anchors += (int64_t)L->hw[l] * L->hw[l] * L->A;
    L->anchors = malloc((size_t)L->n_anchors * 4 * sizeof(float));
    int64_t g = 0;
    for (int l = 0; l < 2; l++) {
        const int hw = L->hw[l];
        const float s = 32.0f / hw;
        const size_t cells = (size_t)L->n * hw * hw * L->A;
        const size_t nc = cells * L->C, nb = cells * 4;
        L->cls[l] = malloc(nc * sizeof(float));
        L->box[l] = malloc(nb * sizeof(float));
        char name[32];
        snprintf(name, sizeof name, "small.cls.%d", l);
        sn_hash_fill(L->cls[l], nc, name, seed, 0.0, 1.0);
        for (size_t i = 0; i < nc; i++)
            L->cls[l][i] = (float)(logit_lo + floor(L->cls[l][i] * 8) * (logit_hi - logit_lo) / 8);
        snprintf(name, sizeof name, "small.box.%d", l);
        sn_hash_fill(L->box[l], nb, name, seed, -0.3, 0.3);
        for (int y = 0; y < hw; y++)
            for (int x = 0; x < hw; x++)
                for (int a = 0; a < L->A; a++, g++) {
                    const float half = s * (0.6f + 0.3f * a);
                    float *b = L->anchors + 4 * g;
                    b[0] = s * (y + 0.5f) - half;
                    b[1] = s * (x + 0.5f) - half;
                    b[2] = s * (y + 0.5f) + half;
                    b[3] = s * (x + 0.5f) + half;
                }
        L->lv[l] = (sn_det_level){L->cls[l], L->box[l], hw, hw};
    }
}

static void test_detect_vs_plain(void) {
    int runs = 0, agree = 0, cut_seen = 0;
    const int topk[] = {1, 3, 7, 30, 5000};
    const float iou[] = {0.3f, 0.5f, 0.8f};
    for (uint64_t seed = 1; seed <= 4; seed++) {
        layout L;
        small_layout(&L, seed, -4.0, 3.0);
        for (int ti = 0; ti < 5; ti++)
            for (int ii = 0; ii < 3; ii++)
                for (int img = 0; img < 2; img++) {
                    sn_det_params p;
                    sn_det_params_init(&p);
                    p.pre_nms_top_k = topk[ti];
                    p.iou_threshold = iou[ii];
                    p.max_per_class = 2 + (int)seed;
                    p.max_detections = 4 + 5 * (int)seed;
                    p.score_threshold = seed == 4 ? 0.0f : 0.05f * (float)seed;
                    const sn_det_input in = {L.lv, 2, img, L.A, L.C, L.anchors, L.n_anchors,
                                             32, 32};
                    det_buf a, b;
                    det_buf_init(&a);
                    det_buf_init(&b);
                    CHECK_OK(sn_detect(&p, &in, &a.d));
                    const int n = detect_plain(&p, &in, &b);
                    int same = a.d.count == n;
                    for (int i = 0; same && i < n; i++)
                        same = a.classes[i] == b.classes[i] && a.anchors[i] == b.anchors[i] &&
                               a.scores[i] == b.scores[i] &&
                               memcmp(a.boxes + 4 * i, b.boxes + 4 * i, 16) == 0;
                    runs++;
                    agree += same;
                    cut_seen += n == p.max_detections;
                    CHECK(same, "seed %llu top-k %d iou %.1f image %d: %d vs %d detections",
                          (unsigned long long)seed, p.pre_nms_top_k, (double)p.iou_threshold, img,
                          a.d.count, n);
                }
        layout_free(&L);
    }
    CHECK(cut_seen > 10, "the final cut was reached in only %d runs", cut_seen);
    printf("detect vs plain reference: %d of %d runs identical (%d at the final cut)\n", agree,
           runs, cut_seen);
}

/* One level of 1x1 with A = 4 anchors given as boxes (zero deltas decode them exactly). */
static void test_detect_hand(void) {
    enum { A = 4, C = 4 };
    /* anchors 0, 1: IoU exactly 0.5; 2: same box as 0; 3: far away. */
    float anchors[A * 4] = {0, 0, 10, 10, 0, 0, 10, 5, 0, 0, 10, 10, 20, 20, 30, 30};
    float box[A * 4] = {0};
    float cls[A * C];
    for (int i = 0; i < A * C; i++) cls[i] = -10.0f;
    sn_det_level lv = {cls, box, 1, 1};
    sn_det_input in = {&lv, 1, 0, A, C, anchors, A, 64, 64};
    sn_det_params p;
    sn_det_params_init(&p);
    CHECK(p.pre_nms_top_k == 5000 && p.max_detections == 100 && p.max_per_class == 100 &&
              p.score_threshold == 0.05f && p.iou_threshold == 0.5f &&
              fabsf(p.box_clip - (float)log(1000.0 / 16.0)) < 1e-6f,
          "defaults");
    det_buf o;
    det_buf_init(&o);
    CHECK_OK(sn_detect(&p, &in, &o.d));
    CHECK(o.d.count == 0, "nothing above threshold: %d detections", o.d.count);

    /* Background column 0 is never reported, however high. */
    for (int a = 0; a < A; a++) cls[a * C] = 10.0f;
    CHECK_OK(sn_detect(&p, &in, &o.d));
    CHECK(o.d.count == 0, "background reported: %d detections", o.d.count);

    /* Class 1 on anchors 0 and 1 (IoU = 0.5, kept at threshold 0.5), class 2 on anchor 2 (the
     * same box as anchor 0, another class: kept), class 3 on anchors 0 and 2 with equal logits
     * (identical boxes: the lower anchor survives) and on anchor 3. */
    cls[0 * C + 1] = 2.0f;
    cls[1 * C + 1] = 1.0f;
    cls[2 * C + 2] = 2.0f;
    cls[0 * C + 3] = 2.0f;
    cls[2 * C + 3] = 2.0f;
    cls[3 * C + 3] = 0.5f;
    CHECK_OK(sn_detect(&p, &in, &o.d));
    /* Expected order: score desc, then class, then anchor. */
    const int32_t want_c[] = {1, 2, 3, 1, 3}, want_a[] = {0, 2, 0, 1, 3};
    int ok = o.d.count == 5;
    for (int i = 0; ok && i < 5; i++) ok = o.classes[i] == want_c[i] && o.anchors[i] == want_a[i];
    CHECK(ok, "hand case: %d detections (first: class %d anchor %d)", o.d.count, o.classes[0],
          o.anchors[0]);
    CHECK(o.scores[0] == o.scores[1] && o.scores[1] == o.scores[2] &&
              fabsf(o.scores[0] - 1.0f / (1.0f + expf(-2.0f))) < 1e-7f,
          "tied scores %g %g %g", o.scores[0], o.scores[1], o.scores[2]);
    CHECK(o.boxes[0] == 0 && o.boxes[1] == 0 && o.boxes[2] == 10 && o.boxes[3] == 10 &&
              o.boxes[4 * 3 + 3] == 5,
          "boxes are the anchors");
    /* Just below 0.5, anchor 1 falls to anchor 0 in class 1. */
    p.iou_threshold = 0.49f;
    CHECK_OK(sn_detect(&p, &in, &o.d));
    CHECK(o.d.count == 4, "threshold 0.49: %d detections", o.d.count);
    /* Limits: one per class, two in all, one candidate per class. */
    p.iou_threshold = 0.5f;
    p.max_per_class = 1;
    CHECK_OK(sn_detect(&p, &in, &o.d));
    CHECK(o.d.count == 3 && o.anchors[2] == 0, "max_per_class 1: %d detections", o.d.count);
    p.max_detections = 2;
    CHECK_OK(sn_detect(&p, &in, &o.d));
    CHECK(o.d.count == 2 && o.classes[0] == 1 && o.classes[1] == 2, "max_detections 2: %d",
          o.d.count);
    sn_det_params_init(&p);
    p.pre_nms_top_k = 1;
    CHECK_OK(sn_detect(&p, &in, &o.d));
    CHECK(o.d.count == 3 && o.anchors[2] == 0, "pre_nms_top_k 1: %d detections", o.d.count);
    /* A score equal to the threshold is not above it. */
    sn_det_params_init(&p);
    p.score_threshold = 1.0f / (1.0f + expf(-0.5f));
    CHECK_OK(sn_detect(&p, &in, &o.d));
    CHECK(o.d.count == 4, "score == threshold: %d detections (want 4, anchor 3 dropped)",
          o.d.count);
    /* Boxes clipped to the image; anchors output optional. */
    sn_det_params_init(&p);
    CHECK(p.drop_empty == 1, "empty boxes dropped by default");
    p.drop_empty = 0;
    in.image_h = 8;
    in.image_w = 4;
    o.d.anchors = NULL;
    CHECK_OK(sn_detect(&p, &in, &o.d));
    /* Clipped, anchors 0 and 1 become the same box (class 1 keeps one), and anchor 3 an empty
     * one, which suppresses nothing and is still reported by the official generator. */
    CHECK(o.d.count == 4 && o.boxes[2] == 8 && o.boxes[3] == 4 && o.classes[3] == 3 &&
              o.boxes[4 * 3] == 8 && o.boxes[4 * 3 + 3] == 4,
          "clipped: %d detections, %g %g", o.d.count, o.boxes[2], o.boxes[3]);
    /* drop_empty (the default): anchor 3's empty box is no detection; the rest are the same. */
    p.drop_empty = 1;
    CHECK_OK(sn_detect(&p, &in, &o.d));
    int kept_nonempty = o.d.count == 3;
    for (int i = 0; i < o.d.count; i++)
        kept_nonempty &= o.boxes[4 * i + 2] > o.boxes[4 * i] && o.boxes[4 * i + 3] > o.boxes[4 * i + 1];
    CHECK(kept_nonempty && o.classes[0] == 1 && o.classes[1] == 2 && o.classes[2] == 3,
          "drop_empty: %d detections, want the 3 non-empty", o.d.count);
    /* Dropped before NMS and the per-class limit: when the empty box is class 3's best, one per
     * class still leaves class 3 its best real box (the official generator keeps the empty). */
    cls[3 * C + 3] = 3.0f;
    p.max_per_class = 1;
    CHECK_OK(sn_detect(&p, &in, &o.d));
    CHECK(o.d.count == 3 && o.classes[2] == 3 && o.boxes[4 * 2 + 2] == 8,
          "drop_empty, max_per_class 1: %d detections", o.d.count);
    p.drop_empty = 0;
    CHECK_OK(sn_detect(&p, &in, &o.d));
    CHECK(o.d.count == 3 && o.classes[0] == 3 && o.boxes[0] == 8 && o.boxes[2] == 8,
          "official, max_per_class 1: %d detections, class %d first", o.d.count, o.classes[0]);
    cls[3 * C + 3] = 0.5f;

    /* Bad arguments. */
    o.d.anchors = o.anchors;
    in.image_h = in.image_w = 64;
    CHECK(sn_detect(NULL, &in, &o.d) == SN_ERR_INVALID_ARG, "NULL params");
    CHECK(sn_detect(&p, NULL, &o.d) == SN_ERR_INVALID_ARG, "NULL input");
    CHECK(sn_detect(&p, &in, NULL) == SN_ERR_INVALID_ARG, "NULL output");
    sn_det_params q = p;
    q.score_threshold = 1.0f;
    CHECK(sn_detect(&q, &in, &o.d) == SN_ERR_INVALID_ARG && o.d.count == 0, "threshold 1");
    q = p;
    q.pre_nms_top_k = 0;
    CHECK(sn_detect(&q, &in, &o.d) == SN_ERR_INVALID_ARG, "top-k 0");
    q = p;
    q.iou_threshold = NAN;
    CHECK(sn_detect(&q, &in, &o.d) == SN_ERR_INVALID_ARG, "NaN IoU threshold");
    o.d.capacity = 99;
    CHECK(sn_detect(&p, &in, &o.d) == SN_ERR_INVALID_ARG, "capacity < max_detections");
    o.d.capacity = 512;
    sn_det_input bad = in;
    bad.n_anchors = 5;
    CHECK(sn_detect(&p, &bad, &o.d) == SN_ERR_SHAPE, "anchor count mismatch");
    bad = in;
    bad.num_classes = 1;
    CHECK(sn_detect(&p, &bad, &o.d) == SN_ERR_INVALID_ARG, "one class");
    bad = in;
    bad.image_w = 0;
    CHECK(sn_detect(&p, &bad, &o.d) == SN_ERR_INVALID_ARG, "zero image width");
    sn_det_level bl = lv;
    bl.box = NULL;
    bad = in;
    bad.levels = &bl;
    CHECK(sn_detect(&p, &bad, &o.d) == SN_ERR_INVALID_ARG, "NULL box data");
}

static void test_detect_alloc_failures(void) {
    layout L;
    small_layout(&L, 3, -4.0, 3.0);
    sn_det_params p;
    sn_det_params_init(&p);
    p.pre_nms_top_k = 7; /* heaps fill and then replace */
    const sn_det_input in = {L.lv, 2, 1, L.A, L.C, L.anchors, L.n_anchors, 32, 32};
    det_buf ref, o;
    det_buf_init(&ref);
    CHECK_OK(sn_detect(&p, &in, &ref.d));
    int failures = 0, done = 0;
    for (long k = 1; k < 200 && !done; k++) {
        det_buf_init(&o);
        sn_alloc_fail_after(k);
        const sn_status st = sn_detect(&p, &in, &o.d);
        sn_alloc_fail_after(0);
        if (st == SN_OK) {
            done = 1;
            CHECK(o.d.count == ref.d.count && memcmp(o.anchors, ref.anchors,
                                                     (size_t)o.d.count * sizeof *o.anchors) == 0,
                  "result after injected failures differs");
        } else {
            failures++;
            CHECK(st == SN_ERR_OOM && o.d.count == 0, "failure %ld: %s (count %d)", k,
                  sn_status_name(st), o.d.count);
        }
    }
    CHECK(done && failures >= 6, "detect under injected failures: %d failures, done %d", failures,
          done);
    printf("detect: %d allocation failures reported cleanly\n", failures);
    layout_free(&L);
}

/* Two threads running the same detections at once must get the single-thread answer. */
typedef struct {
    const sn_det_input *in;
    const sn_det_params *p;
    det_buf out;
    int ok;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    j->ok = 1;
    for (int r = 0; r < 20 && j->ok; r++) {
        det_buf_init(&j->out);
        j->ok = sn_detect(j->p, j->in, &j->out.d) == SN_OK;
    }
    return NULL;
}

static void test_detect_threads(void) {
    layout L;
    small_layout(&L, 2, -3.0, 3.0);
    sn_det_params p;
    sn_det_params_init(&p);
    p.pre_nms_top_k = 5;
    const sn_det_input in = {L.lv, 2, 0, L.A, L.C, L.anchors, L.n_anchors, 32, 32};
    det_buf ref;
    det_buf_init(&ref);
    CHECK_OK(sn_detect(&p, &in, &ref.d));
    job jobs[2];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < 2; i++) {
        jobs[i].in = &in;
        jobs[i].p = &p;
    }
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, run_job, &jobs[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++)
        CHECK(jobs[i].ok && jobs[i].out.d.count == ref.d.count &&
                  memcmp(jobs[i].out.scores, ref.scores, (size_t)ref.d.count * 4) == 0 &&
                  memcmp(jobs[i].out.anchors, ref.anchors, (size_t)ref.d.count * 4) == 0,
              "thread %d differs", i);
    layout_free(&L);
}

/* The 640x640 COCO layout (76 725 anchors x 91 classes): the initial head bias puts every
 * score near 0.01, with a few hundred objects' worth of anchors above the threshold; and the
 * worst case, every score above it. Timed (printed), not asserted. */
static void test_detect_speed(void) {
    layout L = {0};
    L.n = 1;
    L.A = 9;
    L.C = 91;
    L.n_levels = 5;
    for (int l = 0; l < 5; l++) L.hw[l] = 640 >> (l + 3);
    for (int l = 0; l < 5; l++) {
        const int hw = L.hw[l];
        const size_t nc = (size_t)hw * hw * L.A * L.C, nb = (size_t)hw * hw * L.A * 4;
        char name[32];
        L.cls[l] = malloc(nc * sizeof(float));
        L.box[l] = malloc(nb * sizeof(float));
        snprintf(name, sizeof name, "speed.cls.%d", l);
        sn_hash_fill(L.cls[l], nc, name, 5, -5.6, -3.6);
        for (size_t i = 0; i < nc; i += 997) L.cls[l][i] = 1.0f; /* ~7000 candidates */
        snprintf(name, sizeof name, "speed.box.%d", l);
        sn_hash_fill(L.box[l], nb, name, 5, -0.2, 0.2);
        L.lv[l] = (sn_det_level){L.cls[l], L.box[l], hw, hw};
        L.n_anchors += (int64_t)hw * hw * L.A;
    }
    L.anchors = malloc((size_t)L.n_anchors * 4 * sizeof(float));
    int64_t g = 0;
    for (int l = 0; l < 5; l++) {
        const float s = (float)(8 << l);
        for (int y = 0; y < L.hw[l]; y++)
            for (int x = 0; x < L.hw[l]; x++)
                for (int a = 0; a < L.A; a++, g++) {
                    const float half = 1.5f * s * (1.0f + 0.26f * (a / 3));
                    float *b = L.anchors + 4 * g;
                    b[0] = s * (y + 0.5f) - half;
                    b[1] = s * (x + 0.5f) - half;
                    b[2] = s * (y + 0.5f) + half;
                    b[3] = s * (x + 0.5f) + half;
                }
    }
    CHECK(L.n_anchors == 76725, "%lld anchors", (long long)L.n_anchors);
    sn_det_params p;
    sn_det_params_init(&p);
    const sn_det_input in = {L.lv, 5, 0, L.A, L.C, L.anchors, L.n_anchors, 640, 640};
    det_buf o;
    det_buf_init(&o);
    CHECK_OK(sn_detect(&p, &in, &o.d)); /* warm */
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        const double t0 = now_s();
        CHECK_OK(sn_detect(&p, &in, &o.d));
        const double t = now_s() - t0;
        if (t < best) best = t;
    }
    CHECK(o.d.count == 100, "typical case: %d detections", o.d.count);
    printf("speed 640x640, 91 classes, typical scores: %.2f ms (best of 5)\n", 1e3 * best);
    if (!getenv("SN_QUICK")) {
        for (int l = 0; l < 5; l++) {
            const size_t nc = (size_t)L.hw[l] * L.hw[l] * L.A * L.C;
            for (size_t i = 0; i < nc; i++) L.cls[l][i] += 8.0f;
        }
        const double t0 = now_s();
        CHECK_OK(sn_detect(&p, &in, &o.d));
        printf("speed 640x640, 91 classes, every score above threshold: %.1f ms\n",
               1e3 * (now_s() - t0));
        CHECK(o.d.count == 100, "worst case: %d detections", o.d.count);
    }
    layout_free(&L);
}

/* Class-agnostic suppression after the generator: one label per object, order kept. */
static void test_suppress_overlaps(void) {
    /* A; B = A's box, other class; C far away; D overlaps A with IoU 0.6; E far away. */
    const float b0[5][4] = {{0, 0, 10, 10}, {0, 0, 10, 10}, {20, 20, 30, 30}, {0, 0, 10, 6},
                            {40, 40, 50, 50}};
    const float s0[5] = {0.9f, 0.8f, 0.7f, 0.6f, 0.5f};
    const int32_t c0[5] = {1, 2, 1, 3, 2}, a0[5] = {10, 11, 12, 13, 14};
    const float thr[2] = {0.5f, 0.7f};
    const int want_n[2] = {3, 4};
    const int want[2][4] = {{0, 2, 4, -1}, {0, 2, 3, 4}};
    for (int t = 0; t < 2; t++) {
        float b[5][4], sc[5];
        int32_t c[5], a[5];
        memcpy(b, b0, sizeof b);
        memcpy(sc, s0, sizeof sc);
        memcpy(c, c0, sizeof c);
        memcpy(a, a0, sizeof a);
        sn_detections d = {&b[0][0], sc, c, a, 5, 5};
        CHECK_OK(sn_detections_suppress_overlaps(&d, thr[t]));
        CHECK(d.count == want_n[t], "IoU %.1f: %d kept, want %d", thr[t], d.count, want_n[t]);
        for (int i = 0; i < d.count && i < want_n[t]; i++) {
            const int k = want[t][i];
            CHECK(sc[i] == s0[k] && c[i] == c0[k] && a[i] == a0[k] &&
                      memcmp(b[i], b0[k], sizeof b[i]) == 0,
                  "IoU %.1f: detection %d is not input %d", thr[t], i, k);
        }
    }
    /* Without anchors, and a single detection: untouched. */
    float b1[4] = {1, 2, 3, 4}, s1 = 0.4f;
    int32_t c1 = 5;
    sn_detections d1 = {b1, &s1, &c1, NULL, 1, 1};
    CHECK_OK(sn_detections_suppress_overlaps(&d1, 0.5f));
    CHECK(d1.count == 1 && s1 == 0.4f && c1 == 5 && b1[3] == 4, "single detection changed");
}

int main(void) {
    test_suppress_overlaps();
    test_decode_golden();
    test_nms_golden();
    test_nms_hand();
    test_detect_golden();
    test_detect_vs_plain();
    test_detect_hand();
    test_detect_alloc_failures();
    test_detect_threads();
    test_detect_speed();
    return TEST_SUMMARY();
}
