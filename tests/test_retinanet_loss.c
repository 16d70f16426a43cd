/* RetinaNet anchors, labelling and losses: against the PyTorch goldens of tests/golden/retinanet/,
 * the loss gradient against central differences, thread-count independence, bad input and
 * allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anchors.h"
#include "core.h"
#include "retinanet_loss.h"
#include "safetensors.h"
#include "golden_st.h"
#include "test.h"

#define SEED 1234
#define MAXL (SN_ANCHOR_MAX_LEVEL + 1)

static char g_dir[1024];

static int load(const char *name, sn_st_file *f) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    return t_golden_read(path, f);
}

/* Ground truths from a golden [G, 6] tensor. */
static sn_gt_box *gt_from(const sn_st_tensor *t, int *n) {
    *n = (int)t->shape[0];
    sn_gt_box *g = calloc((size_t)*n + 1, sizeof *g);
    for (int i = 0; i < *n; i++) {
        const float *r = t->data + i * 6;
        g[i] = (sn_gt_box){r[0], r[1], r[2], r[3], (int32_t)r[4], (int32_t)r[5]};
    }
    return g;
}

static int near_rel(double c, double r, double rel, double abs_floor) {
    return fabs(c - r) <= rel * fabs(r) + abs_floor;
}

/* ---------------------------------------------------------------------------------------- */
static void test_anchor_layout(void) {
    int64_t n = 0;
    CHECK_OK(sn_anchor_count(3, 7, 640, 640, &n));
    CHECK(n == 76725, "640x640 levels 3..7: %lld anchors, want 76725", (long long)n);
    sn_anchor_layout l;
    CHECK_OK(sn_anchor_layout_init(3, 7, 256, 384, &l));
    CHECK(l.num_levels == 5 && l.level_h[0] == 32 && l.level_w[0] == 48 && l.level_h[4] == 2 &&
              l.level_w[4] == 3 && l.level_start[1] == 32 * 48 * 9 && l.count == 9 * 2046,
          "256x384 layout: levels %d, L3 %dx%d, L7 %dx%d, count %lld", l.num_levels, l.level_h[0],
          l.level_w[0], l.level_h[4], l.level_w[4], (long long)l.count);
    CHECK(sn_anchor_count(3, 7, 640, 600, &n) == SN_ERR_INVALID_ARG,
          "600 is not a multiple of 128");
    CHECK(strstr(sn_last_error(), "multiple") != NULL, "message: %s", sn_last_error());
    CHECK(sn_anchor_count(5, 3, 640, 640, &n) == SN_ERR_INVALID_ARG, "min > max");
    CHECK(sn_anchor_count(3, SN_ANCHOR_MAX_LEVEL + 1, 640, 640, &n) == SN_ERR_INVALID_ARG,
          "level too high");
    CHECK(sn_anchor_count(3, 7, 0, 640, &n) == SN_ERR_INVALID_ARG, "zero height");

    /* Hand values: level 3, first location (centre 4, 4), anchor_size 3: base 24. Garden's
     * first anchor has ratio 0.5 (w = 24 sqrt .5, h = 24 / sqrt .5); TPU's is square. */
    CHECK_OK(sn_anchor_layout_init(3, 4, 128, 128, &l));
    float *b = malloc((size_t)l.count * 4 * sizeof *b);
    CHECK_OK(sn_anchors_generate(&l, SN_FLAVOUR_GARDEN, 3.0, b));
    const double hw = 12 * sqrt(0.5), hh = 12 / sqrt(0.5);
    CHECK(fabs(b[0] - (4 - hh)) < 1e-5 && fabs(b[1] - (4 - hw)) < 1e-5 &&
              fabs(b[2] - (4 + hh)) < 1e-5 && fabs(b[3] - (4 + hw)) < 1e-5,
          "garden anchor 0: %g %g %g %g", b[0], b[1], b[2], b[3]);
    /* Anchor 9 is the next location along x (centre 4, 12); anchor 3 is scale 1, ratio 0.5. */
    CHECK(fabs(0.5 * (b[36 + 1] + b[36 + 3]) - 12) < 1e-5 && fabs(0.5 * (b[36] + b[38]) - 4) < 1e-5,
          "anchor 9 centre (%g, %g)", 0.5 * (b[36] + b[38]), 0.5 * (b[37] + b[39]));
    CHECK(fabs((b[12 + 3] - b[12 + 1]) - 24 * pow(2, 1 / 3.0) * sqrt(0.5)) < 1e-4,
          "anchor 3 width %g", b[15] - b[13]);
    CHECK_OK(sn_anchors_generate(&l, SN_FLAVOUR_TPU, 4.0, b));
    CHECK(b[0] == -12.0f && b[1] == -12.0f && b[2] == 20.0f && b[3] == 20.0f,
          "tpu anchor 0: %g %g %g %g", b[0], b[1], b[2], b[3]);
    /* Level 4 starts at 16*16*9 with stride 16: centre (8, 8), base 64. */
    const float *b4 = b + l.level_start[1] * 4;
    CHECK(b4[0] == -24.0f && b4[3] == 40.0f, "tpu level-4 anchor 0: %g %g %g %g", b4[0], b4[1],
          b4[2], b4[3]);
    CHECK(sn_anchors_generate(&l, SN_FLAVOUR_TPU, 0.0, b) == SN_ERR_INVALID_ARG, "anchor_size 0");
    free(b);

    float enc[4];
    sn_box_encode((const float[4]){0, 0, 10, 20}, (const float[4]){5, 5, 15, 45}, enc);
    CHECK(fabs(enc[0] - 0.5) < 1e-7 && fabs(enc[1] - 0.75) < 1e-7 && fabs(enc[2]) < 1e-7 &&
              fabs(enc[3] - log(2.0)) < 1e-7,
          "encode: %g %g %g %g", enc[0], enc[1], enc[2], enc[3]);
}

static void test_anchors_golden(void) {
    sn_st_file f;
    if (!load("anchors.safetensors", &f)) return;
    const int H = t_meta_i(&f, "height"), W = t_meta_i(&f, "width");
    sn_anchor_layout l;
    CHECK_OK(sn_anchor_layout_init(t_meta_i(&f, "min_level"), t_meta_i(&f, "max_level"), H, W, &l));
    const sn_st_tensor *cnt = t_need(&f, "count");
    CHECK(cnt && l.count == (int64_t)cnt->data[0], "count %lld, golden %g", (long long)l.count,
          cnt ? cnt->data[0] : -1.0);
    float *b = malloc((size_t)l.count * 4 * sizeof *b);
    static const struct {
        const char *name;
        sn_flavour fl;
        double size;
    } cfgs[] = {{"garden3", SN_FLAVOUR_GARDEN, 3},
                {"garden4", SN_FLAVOUR_GARDEN, 4},
                {"tpu3", SN_FLAVOUR_TPU, 3},
                {"tpu4", SN_FLAVOUR_TPU, 4}};
    for (int c = 0; c < 4; c++) {
        char n1[64], n2[64];
        snprintf(n1, sizeof n1, "%s.index", cfgs[c].name);
        snprintf(n2, sizeof n2, "%s.boxes", cfgs[c].name);
        const sn_st_tensor *idx = t_need(&f, n1), *ref = t_need(&f, n2);
        if (!idx || !ref) continue;
        CHECK_OK(sn_anchors_generate(&l, cfgs[c].fl, cfgs[c].size, b));
        double worst = 0;
        size_t bitwise = 0;
        for (size_t i = 0; i < idx->count; i++) {
            const int64_t a = (int64_t)idx->data[i];
            for (int k = 0; k < 4; k++) {
                const double d = fabs((double)b[a * 4 + k] - ref->data[i * 4 + k]);
                if (d > worst) worst = d;
                bitwise += b[a * 4 + k] == ref->data[i * 4 + k];
            }
        }
        /* Both sides form float32 centre -/+ float32 half size: expect identical bits. */
        CHECK(worst == 0.0, "%s anchors: max abs diff %g over %zu sampled anchors", cfgs[c].name,
              worst, idx->count);
        printf("anchors %s: %zu sampled anchors, %zu/%zu values bit-identical\n", cfgs[c].name,
               idx->count, bitwise, idx->count * 4);
    }
    free(b);
    sn_st_free(&f);
}

/* Compare labels with a golden's positive list: same anchors, classes; targets to 1e-6. */
static void compare_labels(const char *what, int64_t count, const int32_t *cls, const float *box,
                           const sn_st_tensor *pidx, const sn_st_tensor *pcls,
                           const sn_st_tensor *pbox, int64_t offset) {
    int64_t bad_cls = 0, n_pos_c = 0, pos_seen = 0;
    double worst = 0;
    size_t p = 0;
    /* pidx is ascending; those below `offset` or past this image belong to other images. */
    while (p < pidx->count && (int64_t)pidx->data[p] < offset) p++;
    for (int64_t a = 0; a < count; a++) {
        n_pos_c += cls[a] > 0;
        if (p < pidx->count && (int64_t)pidx->data[p] == offset + a) {
            pos_seen++;
            if (cls[a] != (int32_t)pcls->data[p]) bad_cls++;
            for (int k = 0; k < 4; k++) {
                const double r = pbox->data[p * 4 + k];
                const double d = fabs(box[a * 4 + k] - r) / fmax(1.0, fabs(r));
                if (d > worst) worst = d;
            }
            p++;
        } else {
            if (cls[a] != 0 || box[a * 4] != 0 || box[a * 4 + 1] != 0 || box[a * 4 + 2] != 0 ||
                box[a * 4 + 3] != 0)
                bad_cls++;
        }
    }
    CHECK(bad_cls == 0 && n_pos_c == pos_seen,
          "%s: %lld anchors differ (C has %lld positives, golden %lld)", what, (long long)bad_cls,
          (long long)n_pos_c, (long long)pos_seen);
    CHECK(worst <= 1e-6, "%s: box targets max rel err %g", what, worst);
    printf("labels %s: %lld positives, box targets max rel err %.2g\n", what, (long long)n_pos_c,
           worst);
}

static void test_labels_golden(const char *file, sn_flavour fl) {
    sn_st_file f;
    if (!load(file, &f)) return;
    sn_anchor_layout l;
    CHECK_OK(sn_anchor_layout_init(t_meta_i(&f, "min_level"), t_meta_i(&f, "max_level"),
                                   t_meta_i(&f, "height"), t_meta_i(&f, "width"), &l));
    const sn_st_tensor *tg = t_need(&f, "gt"), *pidx = t_need(&f, "pos_index"),
                       *pcls = t_need(&f, "pos_class"), *pbox = t_need(&f, "pos_box");
    if (!tg || !pidx || !pcls || !pbox) {
        sn_st_free(&f);
        return;
    }
    int ng;
    sn_gt_box *gt = gt_from(tg, &ng);
    float *anchors = malloc((size_t)l.count * 4 * sizeof *anchors);
    int32_t *cls = malloc((size_t)l.count * sizeof *cls);
    float *box = malloc((size_t)l.count * 4 * sizeof *box);
    CHECK_OK(sn_anchors_generate(&l, fl, t_meta_i(&f, "anchor_size"), anchors));
    int64_t npos = -1;
    CHECK_OK(sn_anchor_label(&l, anchors, gt, ng, t_meta_i(&f, "num_classes"), cls, box, &npos));
    CHECK(npos == (int64_t)pidx->count, "%s: %lld positives, golden %zu", file, (long long)npos,
          pidx->count);
    compare_labels(file, l.count, cls, box, pidx, pcls, pbox, 0);
    CHECK_OK(sn_anchor_label_all_pairs(anchors, l.count, gt, ng, t_meta_i(&f, "num_classes"), cls,
                                       box, &npos));
    compare_labels("(all pairs)", l.count, cls, box, pidx, pcls, pbox, 0);
    /* The special cases the generator built in (gen_retinanet.py, label_case_gts). */
    int64_t n5 = 0, n6 = 0, n7 = 0, n77 = 0, n88 = 0;
    for (int64_t a = 0; a < l.count; a++) {
        n5 += cls[a] == 5;
        n6 += cls[a] == 6;
        n7 += cls[a] == 7;
        n77 += cls[a] == 77;
        n88 += cls[a] == 88;
    }
    CHECK(n77 == 0, "%s: crowd class labelled on %lld anchors", file, (long long)n77);
    CHECK(n5 == 1, "%s: tiny box on %lld anchors, want its one forced anchor", file, (long long)n5);
    CHECK(n6 == 1 && n7 == 0, "%s: contested anchor: gt 12 has %lld, gt 13 %lld (want 1, 0)", file,
          (long long)n6, (long long)n7);
    CHECK(n88 == 0, "%s: duplicate box (higher index) won %lld anchors", file, (long long)n88);
    free(anchors);
    free(cls);
    free(box);
    free(gt);
    sn_st_free(&f);
}

/* A plain all-pairs labeller (every anchor against every box, the official definition) to check
 * the labeller's cell pruning on boxes of every size, partly or wholly outside the input. */
static float ref_iou(const float *a, const float *g) {
    const float ih = fminf(a[2], g[2]) - fmaxf(a[0], g[0]),
                iw = fminf(a[3], g[3]) - fmaxf(a[1], g[1]);
    const float inter = fmaxf(ih, 0.0f) * fmaxf(iw, 0.0f);
    if (inter == 0.0f) return 0.0f;
    const float area_a = (a[2] - a[0]) * (a[3] - a[1]), area_g = (g[2] - g[0]) * (g[3] - g[1]);
    return inter / ((area_a + area_g) - inter);
}

static void ref_label(int64_t count, const float *anchors, const sn_gt_box *gt, int n, int32_t *cls,
                      float *box) {
    int *match = malloc((size_t)count * sizeof *match);
    for (int64_t a = 0; a < count; a++) {
        float bv = 0;
        match[a] = -1;
        for (int i = 0; i < n; i++) {
            if (gt[i].iscrowd) continue;
            const float g[4] = {gt[i].ymin, gt[i].xmin, gt[i].ymax, gt[i].xmax};
            const float v = ref_iou(anchors + a * 4, g);
            if (v > bv) {
                bv = v;
                match[a] = i;
            }
        }
        if (bv < 0.5f) match[a] = -1;
    }
    int64_t *forced = malloc((size_t)(n + 1) * sizeof *forced);
    for (int i = 0; i < n; i++) {
        forced[i] = -1;
        if (gt[i].iscrowd) continue;
        const float g[4] = {gt[i].ymin, gt[i].xmin, gt[i].ymax, gt[i].xmax};
        float bv = 0;
        for (int64_t a = 0; a < count; a++) {
            const float v = ref_iou(anchors + a * 4, g);
            if (v > bv) {
                bv = v;
                forced[i] = a;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        int claimed = 0; /* an earlier box forced the same anchor */
        for (int j = 0; j < i; j++) claimed |= forced[j] == forced[i];
        if (forced[i] >= 0 && !claimed) match[forced[i]] = i;
    }
    for (int64_t a = 0; a < count; a++) {
        cls[a] = match[a] >= 0 ? gt[match[a]].cls : 0;
        if (match[a] >= 0) {
            const float g[4] = {gt[match[a]].ymin, gt[match[a]].xmin, gt[match[a]].ymax,
                                gt[match[a]].xmax};
            sn_box_encode(anchors + a * 4, g, box + a * 4);
        } else {
            box[a * 4] = box[a * 4 + 1] = box[a * 4 + 2] = box[a * 4 + 3] = 0;
        }
    }
    free(match);
    free(forced);
}

static void test_labels_vs_all_pairs(void) {
    static const struct {
        sn_flavour fl;
        double size;
        int lo, hi, H, W;
    } cases[] = {{SN_FLAVOUR_GARDEN, 3, 3, 7, 256, 384}, {SN_FLAVOUR_TPU, 4, 2, 5, 96, 64}};
    for (int ci = 0; ci < 2; ci++) {
        sn_anchor_layout l;
        CHECK_OK(sn_anchor_layout_init(cases[ci].lo, cases[ci].hi, cases[ci].H, cases[ci].W, &l));
        float *anchors = malloc((size_t)l.count * 4 * sizeof *anchors);
        int32_t *c1 = malloc((size_t)l.count * sizeof *c1),
                *c2 = malloc((size_t)l.count * sizeof *c2);
        float *b1 = malloc((size_t)l.count * 16), *b2 = malloc((size_t)l.count * 16);
        CHECK_OK(sn_anchors_generate(&l, cases[ci].fl, cases[ci].size, anchors));
        enum { N = 60 };
        sn_gt_box gt[N];
        float u[N * 4];
        sn_hash_fill(u, N * 4, "allpairs", (uint64_t)ci, 0.0, 1.0);
        const float H = (float)l.height, W = (float)l.width;
        for (int i = 0; i < N; i++) {
            /* Sizes from 0.5 px to 1.5x the input; corners from -0.5x to 1.2x the input. */
            const float h = 0.5f + 1.5f * H * u[i * 4] * u[i * 4] * u[i * 4];
            const float w = 0.5f + 1.5f * W * u[i * 4 + 1] * u[i * 4 + 1] * u[i * 4 + 1];
            const float y = -0.5f * H + 1.7f * H * u[i * 4 + 2],
                        x = -0.5f * W + 1.7f * W * u[i * 4 + 3];
            gt[i] = (sn_gt_box){y, x, y + h, x + w, 1 + i % 5, i % 11 == 3};
        }
        gt[7] = gt[6]; /* an exact duplicate */
        gt[7].cls = 4;
        gt[9] = (sn_gt_box){H + 500, W + 500, H + 520, W + 530, 2, 0}; /* far outside: no overlap */
        int64_t np = 0, np2 = 0;
        ref_label(l.count, anchors, gt, N, c2, b2);
        for (int grid = 0; grid < 2; grid++) {
            if (grid)
                CHECK_OK(sn_anchor_label(&l, anchors, gt, N, 6, c1, b1, &np));
            else
                CHECK_OK(sn_anchor_label_all_pairs(anchors, l.count, gt, N, 6, c1, b1, &np2));
            int64_t diff = 0;
            for (int64_t a = 0; a < l.count; a++)
                diff += c1[a] != c2[a] || memcmp(b1 + a * 4, b2 + a * 4, 16) != 0;
            CHECK(diff == 0, "case %d (%s): %lld anchors differ from the reference", ci,
                  grid ? "grid" : "all pairs", (long long)diff);
        }
        CHECK(np == np2 && np > 0, "case %d: %lld vs %lld positives", ci, (long long)np,
              (long long)np2);
        printf("labels vs reference, case %d: %lld anchors, %lld positives\n", ci,
               (long long)l.count, (long long)np);
        free(anchors);
        free(c1);
        free(c2);
        free(b1);
        free(b2);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The loss case: per-level tensors from the hash fill, targets from the golden. */
typedef struct {
    sn_anchor_layout l;
    int batch, C;
    float *cls[MAXL], *box[MAXL], *dcls[MAXL], *dbox[MAXL];
    size_t ncls[MAXL], nbox[MAXL];
    int32_t *ct;
    float *bt;
} loss_case;

static void case_free(loss_case *c) {
    for (int i = 0; i < c->l.num_levels; i++) {
        free(c->cls[i]);
        free(c->box[i]);
        free(c->dcls[i]);
        free(c->dbox[i]);
    }
    free(c->ct);
    free(c->bt);
    memset(c, 0, sizeof *c);
}

static void case_alloc(loss_case *c, int batch, int C) {
    c->batch = batch;
    c->C = C;
    for (int i = 0; i < c->l.num_levels; i++) {
        const size_t n = (size_t)batch * (c->l.level_start[i + 1] - c->l.level_start[i]);
        c->ncls[i] = n * C;
        c->nbox[i] = n * 4;
        c->cls[i] = calloc(c->ncls[i], sizeof(float));
        c->box[i] = calloc(c->nbox[i], sizeof(float));
        c->dcls[i] = calloc(c->ncls[i], sizeof(float));
        c->dbox[i] = calloc(c->nbox[i], sizeof(float));
    }
    c->ct = calloc((size_t)batch * c->l.count, sizeof *c->ct);
    c->bt = calloc((size_t)batch * c->l.count * 4, sizeof *c->bt);
}

static sn_status case_loss(loss_case *c, int nthreads, int grads, sn_retinanet_loss_value *v) {
    return sn_retinanet_loss(&c->l, c->batch, c->C, (const float *const *)c->cls,
                             (const float *const *)c->box, c->ct, c->bt, NULL, nthreads,
                             grads ? c->dcls : NULL, grads ? c->dbox : NULL, v);
}

static void test_loss_golden(void) {
    sn_st_file f;
    if (!load("loss.safetensors", &f)) return;
    loss_case c;
    memset(&c, 0, sizeof c);
    const int B = t_meta_i(&f, "batch"), C = t_meta_i(&f, "num_classes");
    CHECK_OK(sn_anchor_layout_init(t_meta_i(&f, "min_level"), t_meta_i(&f, "max_level"),
                                   t_meta_i(&f, "height"), t_meta_i(&f, "width"), &c.l));
    case_alloc(&c, B, C);
    for (int i = 0; i < c.l.num_levels; i++) {
        char name[32];
        snprintf(name, sizeof name, "class.%d", c.l.min_level + i);
        sn_hash_fill(c.cls[i], c.ncls[i], name, SEED, -5.0, 3.0);
        snprintf(name, sizeof name, "box.%d", c.l.min_level + i);
        sn_hash_fill(c.box[i], c.nbox[i], name, SEED, -0.3, 0.3);
    }
    const sn_st_tensor *ov = t_need(&f, "overrides"), *pidx = t_need(&f, "pos_index"),
                       *pcls = t_need(&f, "pos_class"), *pbox = t_need(&f, "pos_box"),
                       *lossr = t_need(&f, "loss"), *dcp = t_need(&f, "dcls_pos"),
                       *dbp = t_need(&f, "dbox_pos"), *dcs = t_need(&f, "dcls_sample"),
                       *dproj = t_need(&f, "dcls_proj"), *g0 = t_need(&f, "gt0"), *g1 = t_need(&f, "gt1");
    if (!ov || !pidx || !pcls || !pbox || !lossr || !dcp || !dbp || !dcs || !dproj || !g0 || !g1) {
        case_free(&c);
        sn_st_free(&f);
        return;
    }
    for (size_t k = 0; k < (size_t)ov->shape[0]; k++) {
        const int li = (int)ov->data[k * 3] - c.l.min_level;
        c.cls[li][(size_t)ov->data[k * 3 + 1]] = ov->data[k * 3 + 2];
    }
    for (size_t p = 0; p < pidx->count; p++) {
        const size_t a = (size_t)pidx->data[p];
        c.ct[a] = (int32_t)pcls->data[p];
        memcpy(c.bt + a * 4, pbox->data + p * 4, 4 * sizeof(float));
    }

    /* The C labeller on the same ground truths must give the golden's targets. */
    {
        float *anchors = malloc((size_t)c.l.count * 4 * sizeof *anchors);
        int32_t *cls = malloc((size_t)c.l.count * sizeof *cls);
        float *box = malloc((size_t)c.l.count * 4 * sizeof *box);
        CHECK_OK(sn_anchors_generate(&c.l, SN_FLAVOUR_GARDEN, t_meta_i(&f, "anchor_size"), anchors));
        const sn_st_tensor *gts[2] = {g0, g1};
        for (int b = 0; b < 2 && b < B; b++) {
            int ng;
            sn_gt_box *gt = gt_from(gts[b], &ng);
            CHECK_OK(sn_anchor_label(&c.l, anchors, gt, ng, C, cls, box, NULL));
            compare_labels(b ? "loss case image 1" : "loss case image 0", c.l.count, cls, box, pidx,
                           pcls, pbox, b * c.l.count);
            free(gt);
        }
        free(anchors);
        free(cls);
        free(box);
    }

    sn_retinanet_loss_value v;
    CHECK_OK(case_loss(&c, 1, 1, &v));
    CHECK(v.num_positives == (int64_t)lossr->data[3], "positives %lld, golden %g",
          (long long)v.num_positives, lossr->data[3]);
    /* The reference is float64 rounded to float32: 1e-6 relative is ~16 of its ulps. */
    CHECK(near_rel(v.cls, lossr->data[0], 1e-6, 0), "cls loss %.9g, golden %.9g", v.cls,
          lossr->data[0]);
    CHECK(near_rel(v.box, lossr->data[1], 1e-6, 0), "box loss %.9g, golden %.9g", v.box,
          lossr->data[1]);
    CHECK(near_rel(v.total, lossr->data[2], 1e-6, 0), "total %.9g, golden %.9g", v.total,
          lossr->data[2]);
    printf("loss: cls %.9g (golden %.9g) box %.9g (%.9g) total %.9g (%.9g), %lld positives\n",
           v.cls, lossr->data[0], v.box, lossr->data[1], v.total, lossr->data[2],
           (long long)v.num_positives);

    /* Gradients: both sides are float32 roundings of (nearly) the same double, so 2e-6 relative
     * (plus a floor far below the 1/(P+1) ~ 1e-2 scale) is a few ulps. */
    double worst = 0;
    int64_t bad = 0, nonzero_dbox_neg = 0;
    for (size_t p = 0; p < pidx->count; p++) {
        const int64_t a_all = (int64_t)pidx->data[p];
        const int b = (int)(a_all / c.l.count);
        const int64_t a = a_all % c.l.count;
        int li = 0;
        while (c.l.level_start[li + 1] <= a) li++;
        const size_t row =
            (size_t)b * (c.l.level_start[li + 1] - c.l.level_start[li]) + (a - c.l.level_start[li]);
        for (int k = 0; k < C; k++) {
            const double g = c.dcls[li][row * C + k], r = dcp->data[p * C + k];
            if (!near_rel(g, r, 2e-6, 1e-12)) bad++;
            if (fabs(g - r) > worst) worst = fabs(g - r);
        }
        for (int k = 0; k < 4; k++) {
            const double g = c.dbox[li][row * 4 + k], r = dbp->data[p * 4 + k];
            if (!near_rel(g, r, 2e-6, 1e-12)) bad++;
            if (fabs(g - r) > worst) worst = fabs(g - r);
        }
    }
    /* Deltas of non-positive anchors get exactly zero gradient. */
    for (int li = 0; li < c.l.num_levels; li++) {
        const int64_t nl = c.l.level_start[li + 1] - c.l.level_start[li];
        for (int b = 0; b < B; b++)
            for (int64_t a = 0; a < nl; a++)
                if (c.ct[(size_t)b * c.l.count + c.l.level_start[li] + a] == 0)
                    for (int k = 0; k < 4; k++)
                        nonzero_dbox_neg += c.dbox[li][((size_t)b * nl + a) * 4 + k] != 0.0f;
    }
    CHECK(bad == 0, "%lld gradient values of positive anchors off (max abs err %g)", (long long)bad,
          worst);
    CHECK(nonzero_dbox_neg == 0, "%lld delta gradients of negative anchors are not zero",
          (long long)nonzero_dbox_neg);

    /* Sampled logit gradients and projections over the levels' concatenation. */
    size_t total = 0;
    for (int li = 0; li < c.l.num_levels; li++) total += c.ncls[li];
    float *flat = malloc(total * sizeof *flat), *r = malloc(total * sizeof *r);
    for (int li = 0, o = 0; li < c.l.num_levels; li++) {
        memcpy(flat + o, c.dcls[li], c.ncls[li] * sizeof *flat);
        o += (int)c.ncls[li];
    }
    bad = 0;
    worst = 0;
    for (size_t i = 0; i < dcs->count; i++) {
        const size_t k = (size_t)((i * 2654435761ull) % total);
        if (!near_rel(flat[k], dcs->data[i], 2e-6, 1e-12)) bad++;
        if (fabs(flat[k] - dcs->data[i]) > worst) worst = fabs(flat[k] - dcs->data[i]);
    }
    CHECK(bad == 0, "%lld of %zu sampled logit gradients off (max abs err %g)", (long long)bad,
          dcs->count, worst);
    for (int k = 0; k < 2; k++) {
        char name[32];
        snprintf(name, sizeof name, "proj%d:dcls", k);
        sn_hash_fill(r, total, name, SEED, -1.0, 1.0);
        double p = 0, pabs = 0;
        for (size_t i = 0; i < total; i++) {
            p += (double)flat[i] * r[i];
            pabs += fabs((double)flat[i] * r[i]);
        }
        /* Each term carries <= 1 float32 rounding of the gradient: bound by 1e-6 of sum |g r|. */
        CHECK(fabs(p - dproj->data[k]) <= 1e-6 * pabs + 1e-6 * fabs(dproj->data[k]),
              "projection %d: %.9g, golden %.9g (sum |g r| %g)", k, p, dproj->data[k], pabs);
    }
    free(flat);
    free(r);

    /* Thread counts: identical bits; no-gradient calls: the same values. */
    float *keep_c[MAXL], *keep_b[MAXL];
    for (int li = 0; li < c.l.num_levels; li++) {
        keep_c[li] = malloc(c.ncls[li] * sizeof(float));
        keep_b[li] = malloc(c.nbox[li] * sizeof(float));
        memcpy(keep_c[li], c.dcls[li], c.ncls[li] * sizeof(float));
        memcpy(keep_b[li], c.dbox[li], c.nbox[li] * sizeof(float));
    }
    const int threads[] = {2, 3, 0};
    for (int t = 0; t < 3; t++) {
        sn_retinanet_loss_value w;
        for (int li = 0; li < c.l.num_levels; li++) {
            memset(c.dcls[li], 0xff, c.ncls[li] * sizeof(float));
            memset(c.dbox[li], 0xff, c.nbox[li] * sizeof(float));
        }
        CHECK_OK(case_loss(&c, threads[t], 1, &w));
        int same = w.cls == v.cls && w.box == v.box && w.total == v.total &&
                   w.num_positives == v.num_positives;
        for (int li = 0; li < c.l.num_levels; li++)
            same &= !memcmp(keep_c[li], c.dcls[li], c.ncls[li] * sizeof(float)) &&
                    !memcmp(keep_b[li], c.dbox[li], c.nbox[li] * sizeof(float));
        CHECK(same, "nthreads %d: results differ from 1 thread (total %.17g vs %.17g)", threads[t],
              w.total, v.total);
    }
    sn_retinanet_loss_value w;
    CHECK_OK(case_loss(&c, 2, 0, &w));
    CHECK(w.total == v.total && w.cls == v.cls && w.box == v.box,
          "without gradients: %.17g vs %.17g", w.total, v.total);
    for (int li = 0; li < c.l.num_levels; li++) {
        free(keep_c[li]);
        free(keep_b[li]);
    }
    case_free(&c);
    sn_st_free(&f);
}

/* ---------------------------------------------------------------------------------------- */
/* Central differences of the C loss (double) on a tiny case: levels 2..3 over 8x8 (45 anchors),
 * 3 classes, batch 2, h = 2^-10 on every logit and delta. The loss is smooth there (deltas are
 * kept >= 0.01 away from the Huber kink |x| = 0.1), so the truncation error is h^2/6 |f'''|
 * ~ 2e-7 / (P+1) at most, the double round-off ~1e-16 * 100 / h ~ 1e-11, and the analytic
 * gradient is a float32 (relative 6e-8): 1e-5 relative + 1e-7 absolute leaves a wide margin
 * while a wrong factor or sign (or a missing 1/4 or 1/(P+1)) fails by orders of magnitude. */
static void test_finite_differences(void) {
    loss_case c;
    memset(&c, 0, sizeof c);
    CHECK_OK(sn_anchor_layout_init(2, 3, 8, 8, &c.l));
    const int B = 2, C = 3;
    case_alloc(&c, B, C);
    for (int li = 0; li < c.l.num_levels; li++) {
        sn_hash_fill(c.cls[li], c.ncls[li], li ? "fd.cls.1" : "fd.cls.0", 7, -4.0, 4.0);
        sn_hash_fill(c.box[li], c.nbox[li], li ? "fd.box.1" : "fd.box.0", 7, -0.4, 0.4);
    }
    /* Every 4th anchor positive with a class in 1..2 and targets in [-0.5, 0.5]. */
    sn_hash_fill(c.bt, (size_t)B * c.l.count * 4, "fd.targets", 7, -0.5, 0.5);
    for (int64_t i = 0; i < B * c.l.count; i++) c.ct[i] = i % 4 == 1 ? 1 + (int)(i / 4) % 2 : 0;
    for (int b = 0; b < B; b++)
        for (int li = 0; li < c.l.num_levels; li++) {
            const int64_t nl = c.l.level_start[li + 1] - c.l.level_start[li];
            for (int64_t a = 0; a < nl; a++)
                for (int k = 0; k < 4; k++) {
                    float *d = &c.box[li][((size_t)b * nl + a) * 4 + k];
                    const float t = c.bt[((size_t)b * c.l.count + c.l.level_start[li] + a) * 4 + k];
                    if (fabsf(fabsf(*d - t) - 0.1f) < 0.01f) *d += 0.03f;
                }
        }
    sn_retinanet_loss_value v;
    CHECK_OK(case_loss(&c, 1, 1, &v));
    CHECK(v.num_positives == 23, "fd case positives %lld", (long long)v.num_positives);
    const double h = 1.0 / 1024;
    double worst = 0;
    int bad = 0, n = 0;
    for (int which = 0; which < 2; which++)
        for (int li = 0; li < c.l.num_levels; li++) {
            float *x = which ? c.box[li] : c.cls[li];
            const float *g = which ? c.dbox[li] : c.dcls[li];
            const size_t cnt = which ? c.nbox[li] : c.ncls[li];
            for (size_t i = 0; i < cnt; i++) {
                const float x0 = x[i];
                const float xp = (float)(x0 + h), xm = (float)(x0 - h);
                sn_retinanet_loss_value lp, lm;
                x[i] = xp;
                sn_status s1 = case_loss(&c, 1, 0, &lp);
                x[i] = xm;
                sn_status s2 = case_loss(&c, 1, 0, &lm);
                x[i] = x0;
                if (s1 != SN_OK || s2 != SN_OK) {
                    bad++;
                    continue;
                }
                const double fd = (lp.total - lm.total) / ((double)xp - xm);
                const double err = fabs(fd - g[i]);
                if (err > 1e-5 * fabs(fd) + 1e-7) bad++;
                if (err > worst) worst = err;
                n++;
            }
        }
    CHECK(bad == 0, "%d of %d gradients disagree with central differences (max abs err %g)", bad, n,
          worst);
    printf("finite differences: %d values, max abs err %.2g\n", n, worst);
    case_free(&c);
}

/* ---------------------------------------------------------------------------------------- */
static void test_bad_input(void) {
    sn_anchor_layout l;
    CHECK_OK(sn_anchor_layout_init(3, 4, 64, 64, &l));
    float *anchors = malloc((size_t)l.count * 4 * sizeof *anchors);
    int32_t *cls = malloc((size_t)l.count * sizeof *cls);
    float *box = malloc((size_t)l.count * 4 * sizeof *box);
    CHECK_OK(sn_anchors_generate(&l, SN_FLAVOUR_GARDEN, 3, anchors));
    sn_gt_box gt[3] = {{10, 10, 30, 40, 1, 0}, {5, 5, 20, 20, 2, 0}, {0, 0, 64, 64, 0, 1}};
    int64_t npos = -1;
    CHECK_OK(sn_anchor_label_all_pairs(anchors, l.count, gt, 3, 3, cls, box,
                                       &npos)); /* crowd: class 0 is fine */
    CHECK(npos > 0, "positives %lld", (long long)npos);

    for (int64_t i = 0; i < l.count; i++) cls[i] = -7;
    const struct {
        sn_gt_box g;
        const char *what;
    } bad[] = {
        {{5, 5, 5, 20, 2, 0}, "zero height"},
        {{5, 20, 20, 5, 2, 0}, "inverted x"},
        {{5, 5, NAN, 20, 2, 0}, "NaN"},
        {{5, 5, 20, INFINITY, 2, 0}, "infinite"},
        {{5, 5, 20, 20, 0, 0}, "class 0"},
        {{5, 5, 20, 20, 3, 0}, "class == num_classes"},
        {{5, 5, 20, 20, -1, 0}, "negative class"},
        {{5, 5, 5, 20, 2, 1}, "empty crowd box"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gt[1] = bad[i].g;
        sn_status st = i % 2
                           ? sn_anchor_label_all_pairs(anchors, l.count, gt, 3, 3, cls, box, &npos)
                           : sn_anchor_label(&l, anchors, gt, 3, 3, cls, box, &npos);
        CHECK(st == SN_ERR_INVALID_ARG, "%s: %s", bad[i].what, sn_status_name(st));
        CHECK(strstr(sn_last_error(), "ground truth 1") != NULL, "%s: message '%s'", bad[i].what,
              sn_last_error());
        CHECK(cls[0] == -7 && cls[l.count - 1] == -7, "%s: outputs written on error", bad[i].what);
    }
    CHECK(sn_anchor_label_all_pairs(anchors, l.count, NULL, 1, 3, cls, box, NULL) ==
              SN_ERR_INVALID_ARG,
          "NULL gt");
    CHECK(sn_anchor_label_all_pairs(anchors, l.count, gt, 1, 1, cls, box, NULL) ==
              SN_ERR_INVALID_ARG,
          "1 class");
    /* No ground truth: every anchor negative. */
    CHECK(sn_anchor_label(NULL, anchors, gt, 1, 3, cls, box, NULL) == SN_ERR_INVALID_ARG,
          "NULL layout");
    CHECK_OK(sn_anchor_label(&l, anchors, NULL, 0, 3, cls, box, &npos));
    int64_t nz = 0;
    for (int64_t i = 0; i < l.count; i++) nz += cls[i] != 0 || box[i * 4] != 0;
    CHECK(npos == 0 && nz == 0, "no ground truth: %lld positives, %lld nonzero", (long long)npos,
          (long long)nz);
    free(anchors);
    free(cls);
    free(box);

    /* Loss: a bad class target, NaN / infinite / extreme logits. */
    loss_case c;
    memset(&c, 0, sizeof c);
    CHECK_OK(sn_anchor_layout_init(2, 3, 8, 8, &c.l));
    const int C = 4;
    case_alloc(&c, 1, C);
    for (int li = 0; li < c.l.num_levels; li++)
        sn_hash_fill(c.cls[li], c.ncls[li], "bad.cls", 1, -3, 3);
    c.ct[3] = 2;
    sn_retinanet_loss_value v;
    CHECK_OK(case_loss(&c, 1, 1, &v));
    CHECK(isfinite(v.total) && v.num_positives == 1, "plain case %g, %lld", v.total,
          (long long)v.num_positives);
    c.ct[5] = C;
    c.dcls[0][0] = 12345.0f;
    CHECK(case_loss(&c, 1, 1, &v) == SN_ERR_INVALID_ARG, "class target == num_classes");
    CHECK(strstr(sn_last_error(), "anchor 5") != NULL, "message '%s'", sn_last_error());
    CHECK(c.dcls[0][0] == 12345.0f, "gradient written before the error");
    c.ct[5] = -1;
    CHECK(case_loss(&c, 1, 1, &v) == SN_ERR_INVALID_ARG, "negative class target");
    c.ct[5] = 0;
    sn_retinanet_loss_params p;
    sn_retinanet_loss_defaults(&p);
    p.huber_delta = 0;
    CHECK(sn_retinanet_loss(&c.l, 1, C, (const float *const *)c.cls, (const float *const *)c.box,
                            c.ct, c.bt, &p, 1, NULL, NULL, &v) == SN_ERR_INVALID_ARG,
          "huber delta 0");
    float *keep = c.cls[1];
    c.cls[1] = NULL;
    CHECK(case_loss(&c, 1, 1, &v) == SN_ERR_INVALID_ARG, "NULL level tensor");
    c.cls[1] = keep;

    c.cls[0][7] = NAN;
    CHECK_OK(case_loss(&c, 2, 1, &v));
    CHECK(isnan(v.total) && isnan(v.cls), "NaN logit: total %g", v.total);
    c.cls[0][7] = INFINITY;
    CHECK_OK(case_loss(&c, 2, 1, &v));
    CHECK(!isfinite(v.total), "infinite logit: total %g", v.total);
    c.cls[0][7] = 0;
    c.box[0][3 * 4 + 1] = NAN; /* a delta of the positive anchor */
    CHECK_OK(case_loss(&c, 1, 1, &v));
    CHECK(isnan(v.box) && isnan(v.total) && isfinite(v.cls), "NaN delta: box %g cls %g", v.box,
          v.cls);
    c.box[0][3 * 4 + 1] = 0;

    /* Extreme but finite logits: finite loss and gradients with the asymptotic values. Anchor 3
     * (positive, class 2) and anchor 4 (negative); norm = 2. */
    for (int li = 0; li < c.l.num_levels; li++) memset(c.cls[li], 0, c.ncls[li] * sizeof(float));
    const float big = 1e4f;
    c.cls[0][3 * C + 2] = -big; /* positive target, hopelessly wrong: loss 0.25 * big */
    c.cls[0][3 * C + 1] = big;  /* negative target, hopelessly wrong: loss 0.75 * big */
    c.cls[0][4 * C + 0] = -big; /* negative, right: ~0 */
    c.cls[0][4 * C + 1] = 1e30f;
    CHECK_OK(case_loss(&c, 1, 1, &v));
    double rest = 0; /* every other logit is 0: p = 0.5 */
    {
        const double ce = log(2.0), mod = pow(0.5, 1.5);
        const int64_t n_all = c.l.count * C;
        rest = (n_all - 4) * 0.75 * mod * ce;
    }
    const double want = (0.25 * big + 0.75 * big + 0.75 * (double)1e30f + rest) / 2.0;
    CHECK(isfinite(v.cls) && near_rel(v.cls, want, 1e-9, 0), "extreme logits: cls %.17g want %.17g",
          v.cls, want);
    CHECK(near_rel(c.dcls[0][3 * C + 2], -0.25 / 2, 1e-6, 0) &&
              near_rel(c.dcls[0][3 * C + 1], 0.75 / 2, 1e-6, 0) &&
              fabsf(c.dcls[0][4 * C + 0]) < 1e-30f &&
              near_rel(c.dcls[0][4 * C + 1], 0.75 / 2, 1e-6, 0),
          "extreme gradients %g %g %g %g", c.dcls[0][3 * C + 2], c.dcls[0][3 * C + 1],
          c.dcls[0][4 * C + 0], c.dcls[0][4 * C + 1]);
    int finite = 1;
    for (int li = 0; li < c.l.num_levels; li++)
        for (size_t i = 0; i < c.ncls[li]; i++) finite &= isfinite(c.dcls[li][i]) != 0;
    CHECK(finite, "extreme logits gave a non-finite gradient");
    case_free(&c);
}

static void test_alloc_failures(void) {
    sn_anchor_layout l;
    CHECK_OK(sn_anchor_layout_init(3, 4, 64, 64, &l));
    float *anchors = malloc((size_t)l.count * 4 * sizeof *anchors);
    int32_t *cls = malloc((size_t)l.count * sizeof *cls);
    float *box = malloc((size_t)l.count * 4 * sizeof *box);
    CHECK_OK(sn_anchors_generate(&l, SN_FLAVOUR_TPU, 4, anchors));
    const sn_gt_box gt[2] = {{10, 10, 30, 40, 1, 0}, {5, 5, 20, 20, 2, 0}};
    int n, failures = 0;
    for (int grid = 0; grid < 2; grid++) {
        failures = 0;
        for (n = 1; n < 50; n++) {
            sn_alloc_fail_after(n);
            sn_status st =
                grid ? sn_anchor_label(&l, anchors, gt, 2, 3, cls, box, NULL)
                     : sn_anchor_label_all_pairs(anchors, l.count, gt, 2, 3, cls, box, NULL);
            sn_alloc_fail_after(0);
            if (st == SN_OK) break;
            failures++;
            CHECK(st == SN_ERR_OOM && strstr(sn_last_error(), "memory") != NULL,
                  "label, failure %d: %s %s", n, sn_status_name(st), sn_last_error());
        }
        CHECK(failures == 4 && n == 5, "label: %d injected failures, success at %d", failures, n);
    }

    loss_case c;
    memset(&c, 0, sizeof c);
    c.l = l;
    case_alloc(&c, 2, 3);
    CHECK_OK(sn_anchor_label(&l, anchors, gt, 2, 3, c.ct, c.bt, NULL));
    failures = 0;
    for (n = 1; n < 50; n++) {
        sn_retinanet_loss_value v;
        sn_alloc_fail_after(n);
        sn_status st = case_loss(&c, 2, 1, &v);
        sn_alloc_fail_after(0);
        if (st == SN_OK) break;
        failures++;
        CHECK(st == SN_ERR_OOM, "loss, failure %d: %s %s", n, sn_status_name(st), sn_last_error());
    }
    CHECK(failures == 1 && n == 2, "loss: %d injected failures, success at %d", failures, n);
    case_free(&c);
    free(anchors);
    free(cls);
    free(box);
}

/* The real sizes: 640x640 (76 725 anchors) with 100 ground truths, and the loss of one image
 * with 91 classes. Timed for information; asserted only loosely (shared machine, sanitizers). */
static void test_full_size(void) {
    sn_anchor_layout l;
    CHECK_OK(sn_anchor_layout_init(3, 7, 640, 640, &l));
    float *anchors = malloc((size_t)l.count * 4 * sizeof *anchors);
    int32_t *cls = malloc((size_t)l.count * sizeof *cls);
    float *box = malloc((size_t)l.count * 4 * sizeof *box);
    CHECK_OK(sn_anchors_generate(&l, SN_FLAVOUR_GARDEN, 3, anchors));
    sn_gt_box gt[100];
    float u[400];
    sn_hash_fill(u, 400, "full.gt", 3, 0.0, 1.0);
    for (int i = 0; i < 100; i++) {
        const float h = 8 + 300 * u[i * 4] * u[i * 4], w = 8 + 300 * u[i * 4 + 1] * u[i * 4 + 1];
        const float y = (640 - h) * u[i * 4 + 2], x = (640 - w) * u[i * 4 + 3];
        gt[i] = (sn_gt_box){y, x, y + h, x + w, 1 + i % 90, i % 17 == 0};
    }
    int64_t npos = 0, npos2 = 0;
    double t0 = now_s();
    CHECK_OK(sn_anchor_label_all_pairs(anchors, l.count, gt, 100, 91, cls, box, &npos2));
    const double t_all = now_s() - t0;
    t0 = now_s();
    CHECK_OK(sn_anchor_label(&l, anchors, gt, 100, 91, cls, box, &npos));
    const double t_label = now_s() - t0;
    CHECK(npos >= 50 && npos == npos2 && t_label < 5.0,
          "640x640, 100 boxes: %lld positives in %.3f s", (long long)npos, t_label);

    loss_case c;
    memset(&c, 0, sizeof c);
    c.l = l;
    case_alloc(&c, 1, 91);
    memcpy(c.ct, cls, (size_t)l.count * sizeof *cls);
    memcpy(c.bt, box, (size_t)l.count * 4 * sizeof *box);
    for (int li = 0; li < l.num_levels; li++) {
        sn_hash_fill(c.cls[li], c.ncls[li], "full.cls", 3, -7.0, -2.0);
        sn_hash_fill(c.box[li], c.nbox[li], "full.box", 3, -0.2, 0.2);
    }
    sn_retinanet_loss_value v;
    t0 = now_s();
    CHECK_OK(case_loss(&c, 2, 1, &v));
    const double t_loss = now_s() - t0;
    CHECK(isfinite(v.total) && v.num_positives == npos && t_loss < 10.0, "full loss %g in %.3f s",
          v.total, t_loss);
    printf("640x640: labelling 100 boxes %.4f s (all pairs %.4f s), %lld positives; loss + "
           "gradients, 91 classes, 2 threads %.3f s\n",
           t_label, t_all, (long long)npos, t_loss);
    case_free(&c);
    free(anchors);
    free(cls);
    free(box);
}

int main(void) {
    const char *src = getenv("SN_SOURCE_DIR");
    snprintf(g_dir, sizeof g_dir, "%s/tests/golden/retinanet", src ? src : ".");
    test_anchor_layout();
    test_anchors_golden();
    test_labels_golden("labels_garden3.safetensors", SN_FLAVOUR_GARDEN);
    test_labels_golden("labels_tpu4.safetensors", SN_FLAVOUR_TPU);
    test_labels_vs_all_pairs();
    test_loss_golden();
    test_finite_differences();
    test_bad_input();
    test_alloc_failures();
    test_full_size();
    return TEST_SUMMARY();
}
