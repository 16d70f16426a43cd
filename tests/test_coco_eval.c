/* COCO box evaluation: hand-built cases whose answers are worked out in the comments, the
 * independent numpy reference of tests/golden/coco_eval on the coco-tiny ground truth (to
 * 1e-9), bad detections, allocation failures, and the speed at 5000 images x 100 detections. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coco.h"
#include "coco_eval.h"
#include "core.h"
#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static char g_tmp[512];

/* 1 / (1 + eps): the precision pycocotools computes for 1 true positive, 0 false positives. */
#define ONE (1.0 / (1.0 + 2.220446049250313e-16))
#define NEAR(a, b) (fabs((a) - (b)) <= 1e-12)

typedef struct {
    int64_t img;
    int cat;
    double x, y, w, h, area;
    int crowd;
} gt_box;

/* Ground truth with images 1..nimg (640 x 480) and categories 1..ncat, written as JSON and read
 * back by the loader. */
static sn_coco *make_gt(const gt_box *b, int n, int nimg, int ncat) {
    char path[600];
    snprintf(path, sizeof path, "%s/gt.json", g_tmp);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fprintf(f, "{\"images\":[");
    for (int i = 1; i <= nimg; i++)
        fprintf(f, "%s{\"id\":%d,\"file_name\":\"%d.jpg\",\"width\":640,\"height\":480}",
                i > 1 ? "," : "", i, i);
    fprintf(f, "],\"categories\":[");
    for (int k = 1; k <= ncat; k++)
        fprintf(f, "%s{\"id\":%d,\"name\":\"c%d\"}", k > 1 ? "," : "", k, k);
    fprintf(f, "],\"annotations\":[");
    for (int i = 0; i < n; i++)
        fprintf(f,
                "%s{\"id\":%d,\"image_id\":%" PRId64 ",\"category_id\":%d,\"bbox\":[%.17g,%.17g,"
                "%.17g,%.17g],\"area\":%.17g,\"iscrowd\":%d}",
                i ? "," : "", i + 1, b[i].img, b[i].cat, b[i].x, b[i].y, b[i].w, b[i].h,
                b[i].area > 0 ? b[i].area : b[i].w * b[i].h, b[i].crowd);
    fprintf(f, "]}");
    fclose(f);
    sn_coco *c = NULL;
    sn_status st = sn_coco_load(path, SN_COCO_NO_CACHE, &c);
    CHECK(st == SN_OK, "make_gt: %s", sn_last_error());
    return st == SN_OK ? c : NULL;
}

static sn_coco_det D(int64_t img, int cat, double x, double y, double w, double h, double s) {
    sn_coco_det d = {img, cat, {x, y, w, h}, s};
    return d;
}

/* Evaluate and compare the twelve numbers (NAN in `want` = not checked). */
static void expect(const char *name, const sn_coco *gt, const sn_coco_det *d, int n,
                   const double want[SN_COCO_NUM_STATS], sn_coco_eval_result *keep) {
    sn_coco_eval_result r;
    sn_status st = sn_coco_evaluate(gt, d, (size_t)n, &r);
    CHECK(st == SN_OK, "%s: %s", name, sn_last_error());
    if (st != SN_OK) return;
    for (int i = 0; i < SN_COCO_NUM_STATS; i++)
        if (!isnan(want[i]))
            CHECK(NEAR(r.stats[i], want[i]), "%s: %s = %.15g, want %.15g", name,
                  sn_coco_stat_name(i), r.stats[i], want[i]);
    if (keep)
        *keep = r;
    else
        sn_coco_eval_free(&r);
}

static void test_perfect(void) {
    /* Two objects, one large (10000) and one medium (2500), found exactly: precision 1/(1+eps)
     * at every recall point for both categories, recall 1; no small object, so APs = ARs = -1. */
    gt_box g[] = {{1, 1, 10, 10, 100, 100, 0, 0}, {1, 2, 200, 200, 50, 50, 0, 0}};
    sn_coco *gt = make_gt(g, 2, 1, 2);
    if (!gt) return;
    sn_coco_det d[] = {D(1, 1, 10, 10, 100, 100, 0.9), D(1, 2, 200, 200, 50, 50, 0.8)};
    const double want[] = {ONE, ONE, ONE, -1, ONE, ONE, 1, 1, 1, -1, 1, 1};
    sn_coco_eval_result r;
    memset(&r, 0, sizeof r);
    expect("perfect", gt, d, 2, want, &r);
    CHECK(r.num_categories == 2 && r.category_ids[0] == 1 && r.category_ids[1] == 2,
          "category ids");
    CHECK(r.num_categories == 2 && NEAR(r.category_ap[0], ONE) && NEAR(r.category_ap[1], ONE),
          "per-category AP");
    sn_coco_eval_free(&r);

    /* No detections at all: precision 0 and recall 0 wherever there is ground truth. */
    const double none[] = {0, 0, 0, -1, 0, 0, 0, 0, 0, -1, 0, 0};
    expect("no detections", gt, NULL, 0, none, NULL);
    sn_coco_free(gt);
}

static void test_fp_above_tp(void) {
    /* One large object; a false positive (score .9, medium, elsewhere) ranks above the exact
     * detection (.8). Order FP, TP: recall 0, 1; precision 0, 1/2 -> made monotone 1/2, 1/2:
     * AP = 1/2 at every threshold. Large range: the FP is unmatched and outside it, so ignored:
     * precision 0/(0+eps) = 0 then 1/(1+eps) -> APl = 1/(1+eps). No medium or small object:
     * -1. maxDets 1 keeps only the FP: AR1 = 0; AR10 = AR100 = 1. */
    gt_box g[] = {{1, 1, 0, 0, 100, 100, 0, 0}};
    sn_coco *gt = make_gt(g, 1, 1, 1);
    if (!gt) return;
    sn_coco_det d[] = {D(1, 1, 300, 300, 50, 50, 0.9), D(1, 1, 0, 0, 100, 100, 0.8)};
    const double want[] = {0.5, 0.5, 0.5, -1, -1, ONE, 0, 1, 1, -1, -1, 1};
    expect("fp above tp", gt, d, 2, want, NULL);
    sn_coco_free(gt);
}

static void test_crowd(void) {
    /* Object A [0,0,100,100] and a crowd region C [200,0,200,200]. D1 (.95) and D3 (.92) lie
     * inside C: their crowd IoU is intersection / own area = 1, so both match C (a crowd
     * region takes any number of detections) and are ignored. D2 (.9) finds A. D4 (.8) is a
     * false positive. Counted sequence: (ign), (ign), TP, FP: recall 0, 0, 1, 1; precision 0,
     * 0, 1/(1+eps), 1/2 -> monotone 1/(1+eps) up to recall 1: AP = 1/(1+eps), AR = 1. Had C
     * taken one detection only, D3 would be a false positive ahead of the TP (AP 1/2); had the
     * plain IoU (2500/40000) been used, D1 and D3 would both be (AP 1/3). */
    gt_box g[] = {{1, 1, 0, 0, 100, 100, 0, 0}, {1, 1, 200, 0, 200, 200, 0, 1}};
    sn_coco *gt = make_gt(g, 2, 1, 1);
    if (!gt) return;
    sn_coco_det d[] = {D(1, 1, 210, 10, 50, 50, 0.95), D(1, 1, 0, 0, 100, 100, 0.9),
                       D(1, 1, 300, 100, 40, 40, 0.92), D(1, 1, 500, 300, 30, 30, 0.8)};
    const double want[] = {ONE, ONE, ONE, -1, -1, ONE, 0, 1, 1, -1, -1, 1};
    expect("crowd", gt, d, 4, want, NULL);

    /* A detection 87% inside C (crowd IoU .87, nothing on A) ranked above the exact one:
     * thresholds .50 .. .85 match it to C (ignored; the exact detection then gives 1/(1+eps)),
     * at .90 and .95 it is a false positive ahead of the TP (1/2): AP = (8/(1+eps) + 1) / 10. */
    sn_coco_det e[] = {D(1, 1, 187, 0, 100, 100, 0.99), D(1, 1, 0, 0, 100, 100, 0.9)};
    const double want2[] = {(8 * ONE + 1) / 10, ONE, ONE, NAN, NAN, NAN, NAN, NAN, 1, NAN, NAN,
                            NAN};
    expect("crowd partial", gt, e, 2, want2, NULL);
    sn_coco_free(gt);
}

static void test_areas(void) {
    /* Small S (400), medium M (2500), large L (22500) of one category; exact detections of S
     * (.9) and M (.8), none of L, and a small false positive F (.95, area 100).
     * all: F, S, M = FP, TP, TP: recall 0, 1/3, 2/3; precision 0, 1/2, 2/3 -> 2/3, 2/3, 2/3;
     *      recall points 0 .. .66 (67 of them) read 2/3, the rest 0: AP = (2/3) * 67 / 101.
     * small: only S counts; M's detection matches the ignored M (ignored): F, S = FP, TP
     *      -> AP 1/2, AR 1.
     * medium: F is unmatched and outside (ignored), S's detection matches the ignored S
     *      (ignored), M's is a TP: AP 1/(1+eps), AR 1.
     * large: L is never found, every detection is ignored: AP 0, AR 0.
     * maxDets 1 keeps F only: AR1 = 0; AR10 = 2/3. */
    gt_box g[] = {{1, 1, 0, 0, 20, 20, 0, 0},
                  {1, 1, 100, 100, 50, 50, 0, 0},
                  {1, 1, 300, 100, 150, 150, 0, 0}};
    sn_coco *gt = make_gt(g, 3, 1, 1);
    if (!gt) return;
    sn_coco_det d[] = {D(1, 1, 0, 0, 20, 20, 0.9), D(1, 1, 100, 100, 50, 50, 0.8),
                       D(1, 1, 600, 400, 10, 10, 0.95)};
    const double ap = (2.0 / 3.0) * 67 / 101;
    const double want[] = {ap, ap, ap, 0.5, ONE, 0, 0, 2.0 / 3, 2.0 / 3, 1, 1, 0};
    expect("areas", gt, d, 3, want, NULL);

    /* The area field, not the box, decides the range: the same medium box declared with area
     * 900 (a thin segment) is small. Then small has S and M: F, S, M = FP, TP, TP with 2
     * objects: recall 0, 1/2, 1; precision 0, 1/2, 2/3 -> 2/3 everywhere: APs = 2/3. */
    g[1].area = 900;
    sn_coco_free(gt);
    gt = make_gt(g, 3, 1, 1);
    if (!gt) return;
    const double want2[] = {NAN, NAN, NAN, 2.0 / 3, -1, 0, NAN, NAN, NAN, 1, -1, 0};
    expect("areas from field", gt, d, 3, want2, NULL);
    sn_coco_free(gt);
}

static void test_maxdets(void) {
    /* One object; 100 false positives (scores .5 .. .599) outrank the exact detection (.1): the
     * per-image cut at 100 drops it, AP = AR100 = 0. With 99 false positives it is the 100th:
     * recall 1 reached at precision 1/100 (and the monotone precision is 1/100 before):
     * AP = 1/100 at every threshold, AR100 = 1, AR10 = AR1 = 0. */
    gt_box g[] = {{1, 1, 0, 0, 100, 100, 0, 0}};
    sn_coco *gt = make_gt(g, 1, 1, 1);
    if (!gt) return;
    sn_coco_det d[101];
    for (int i = 0; i < 100; i++) d[i] = D(1, 1, 300 + i, 300, 50, 50, 0.5 + i * 0.001);
    d[100] = D(1, 1, 0, 0, 100, 100, 0.1);
    const double want[] = {0, 0, 0, -1, -1, 0, 0, 0, 0, -1, -1, 0};
    expect("maxdets cut", gt, d, 101, want, NULL);
    const double want2[] = {0.01, 0.01, 0.01, -1, -1, NAN, 0, 0, 1, -1, -1, 1};
    expect("maxdets 100th", gt, d + 1, 100, want2, NULL);

    /* The cut is per image: image 1 keeps its TP as the 100th; image 2's TP (.05) is its own
     * best. AR1 = AR10 = 1/2 (image 2 only), AR100 = 1. */
    gt_box g2[] = {{1, 1, 0, 0, 100, 100, 0, 0}, {2, 1, 0, 0, 100, 100, 0, 0}};
    sn_coco_free(gt);
    gt = make_gt(g2, 2, 2, 1);
    if (!gt) return;
    sn_coco_det e[102];
    for (int i = 0; i < 99; i++) e[i] = D(1, 1, 300 + i, 300, 50, 50, 0.5 + i * 0.001);
    e[99] = D(1, 1, 0, 0, 100, 100, 0.1);
    e[100] = D(2, 1, 0, 0, 100, 100, 0.05);
    e[101] = D(2, 1, 300, 300, 50, 50, 0.01);
    const double want3[] = {NAN, NAN, NAN, NAN, NAN, NAN, 0.5, 0.5, 1, NAN, NAN, NAN};
    expect("maxdets per image", gt, e, 102, want3, NULL);
    sn_coco_free(gt);
}

static void test_missing_category_and_duplicates(void) {
    /* Category 2 has no ground truth: its false positive changes nothing and its AP is -1;
     * category 1 is found exactly: AP = 1/(1+eps). */
    gt_box g[] = {{1, 1, 0, 0, 100, 100, 0, 0}, {1, 1, 200, 200, 100, 100, 0, 0}};
    sn_coco *gt = make_gt(g, 1, 1, 2);
    if (!gt) return;
    sn_coco_det d[] = {D(1, 2, 0, 0, 100, 100, 0.99), D(1, 1, 0, 0, 100, 100, 0.5)};
    sn_coco_eval_result r;
    memset(&r, 0, sizeof r);
    const double want[] = {ONE, ONE, ONE, -1, -1, ONE, 1, 1, 1, -1, -1, 1};
    expect("category without gt", gt, d, 2, want, &r);
    CHECK(r.num_categories == 2 && NEAR(r.category_ap[0], ONE) && r.category_ap[1] == -1,
          "per-category AP %g %g", r.category_ap[0], r.category_ap[1]);
    sn_coco_eval_free(&r);
    sn_coco_free(gt);

    /* Objects A and B; A found twice (.9, .8), B once (.7). The duplicate finds A taken: FP.
     * TP, FP, TP: recall 1/2, 1/2, 1; precision 1/(1+eps), 1/2, 2/3 -> 1/(1+eps), 2/3, 2/3.
     * Recall points 0 .. .5 (51) read 1/(1+eps), .51 .. 1 (50) read 2/3. */
    gt = make_gt(g, 2, 1, 1);
    if (!gt) return;
    sn_coco_det e[] = {D(1, 1, 0, 0, 100, 100, 0.9), D(1, 1, 0, 0, 100, 100, 0.8),
                       D(1, 1, 200, 200, 100, 100, 0.7)};
    const double ap = (51 * ONE + 50 * (2.0 / 3)) / 101;
    const double want2[] = {ap, ap, ap, -1, -1, ap, 0.5, 1, 1, -1, -1, 1};
    expect("duplicates", gt, e, 3, want2, NULL);

    /* Equal scores: the first in input order matches, the copy is the false positive; AP
     * stays 1/(1+eps) since the TP ranks first. */
    sn_coco_det f[] = {D(1, 1, 0, 0, 100, 100, 0.9), D(1, 1, 0, 0, 100, 100, 0.9),
                       D(1, 1, 200, 200, 100, 100, 0.9)};
    const double ap3 = (51 * ONE + 50 * (2.0 / 3)) / 101;
    const double want3[] = {ap3, NAN, NAN, NAN, NAN, NAN, NAN, NAN, 1, NAN, NAN, NAN};
    expect("duplicates tied", gt, f, 3, want3, NULL);
    sn_coco_free(gt);
}

static void test_ties_across_images(void) {
    /* Images 1 and 2 with one object each. A false positive in image 1 and the exact
     * detection in image 2 share the score .5; input order puts image 2 first. The stable
     * order of pycocotools is by image id: FP (image 1), then TP: recall 0, 1/2, precision
     * 0, 1/2 -> 1/2, 1/2: recall points 0 .. .5 (51) read 1/2: AP = 51 * .5 / 101 (the other
     * order would give 51 / 101). */
    gt_box g[] = {{1, 1, 0, 0, 100, 100, 0, 0}, {2, 1, 0, 0, 100, 100, 0, 0}};
    sn_coco *gt = make_gt(g, 2, 2, 1);
    if (!gt) return;
    sn_coco_det d[] = {D(2, 1, 0, 0, 100, 100, 0.5), D(1, 1, 300, 300, 50, 50, 0.5)};
    const double want[] = {51 * 0.5 / 101, NAN, NAN, NAN, NAN, NAN, NAN, NAN, 0.5,
                           NAN, NAN, NAN};
    expect("ties across images", gt, d, 2, want, NULL);

    /* IoU exactly at a threshold matches (>=): a box shifted to IoU 0.75 exactly
     * ([0,0,100,100] vs [0,0,75,100]... IoU 7500/10000) counts at .50 ... .75 (6 of 10). */
    sn_coco_det e[] = {D(1, 1, 0, 0, 75, 100, 0.9), D(2, 1, 0, 0, 75, 100, 0.8)};
    const double want2[] = {0.6 * ONE, ONE, ONE, NAN, NAN, NAN, NAN, NAN, 0.6, NAN, NAN, NAN};
    expect("iou at threshold", gt, e, 2, want2, NULL);
    sn_coco_free(gt);
}

static void test_bad_detections(void) {
    gt_box g[] = {{1, 1, 0, 0, 100, 100, 0, 0}};
    sn_coco *gt = make_gt(g, 1, 1, 1);
    if (!gt) return;
    sn_coco_eval_result r;
    sn_coco_det d[] = {D(1, 1, 0, 0, 10, 10, 0.5), D(7, 1, 0, 0, 10, 10, 0.5)};
    sn_status st = sn_coco_evaluate(gt, d, 2, &r);
    CHECK(st == SN_ERR_INVALID_ARG && strstr(sn_last_error(), "detection 1") &&
              strstr(sn_last_error(), "image_id 7"),
          "unknown image: %s", sn_last_error());
    d[1] = D(1, 3, 0, 0, 10, 10, 0.5);
    st = sn_coco_evaluate(gt, d, 2, &r);
    CHECK(st == SN_ERR_INVALID_ARG && strstr(sn_last_error(), "category_id 3"),
          "unknown category: %s", sn_last_error());
    d[1] = D(1, 1, 0, 0, 10, 10, NAN);
    st = sn_coco_evaluate(gt, d, 2, &r);
    CHECK(st == SN_ERR_INVALID_ARG && strstr(sn_last_error(), "non-finite"), "NaN score: %s",
          sn_last_error());
    CHECK(r.precision == NULL && r.category_ap == NULL, "result left empty on error");
    sn_coco_free(gt);
}

static void test_alloc_failures(void) {
    gt_box g[] = {{1, 1, 0, 0, 100, 100, 0, 0}, {2, 2, 10, 10, 50, 50, 0, 1}};
    sn_coco *gt = make_gt(g, 2, 2, 2);
    if (!gt) return;
    sn_coco_det d[] = {D(1, 1, 0, 0, 100, 100, 0.9), D(2, 2, 10, 10, 20, 20, 0.8),
                       D(1, 2, 0, 0, 10, 10, 0.7)};
    int failures = 0, done = 0;
    for (long n = 1; n < 200 && !done; n++) {
        sn_coco_eval_result r;
        sn_alloc_fail_after(n);
        sn_status st = sn_coco_evaluate(gt, d, 3, &r);
        sn_alloc_fail_after(0);
        if (st == SN_OK) {
            done = 1;
            CHECK(NEAR(r.stats[SN_COCO_AP], ONE), "AP after %ld allocations", n);
            sn_coco_eval_free(&r);
        } else {
            failures++;
            CHECK(st == SN_ERR_OOM && r.precision == NULL, "allocation %ld: %s", n,
                  sn_last_error());
        }
    }
    CHECK(done && failures >= 8, "evaluation succeeded after %d injected failures", failures);
    sn_coco_free(gt);
}

/* ------------------------------------------------------------------------------------------ */

static void test_golden(void) {
    const char *src = getenv("SN_SOURCE_DIR");
    char dir[1024], path[1200], shared[1024];
    snprintf(dir, sizeof dir, "%s/tests/golden/coco_eval", src && *src ? src : ".");
    t_shared_dir(shared, sizeof shared);
    snprintf(path, sizeof path, "%s/data/coco-tiny/annotations/instances_train2017.json",
             shared);
    sn_coco *gt = NULL;
    const sn_status lst = sn_coco_load(path, SN_COCO_NO_CACHE, &gt);
    CHECK(lst == SN_OK, "%s", sn_last_error());
    if (lst != SN_OK) return;
    snprintf(path, sizeof path, "%s/expected.json", dir);
    json_error_t jerr;
    json_t *exp = json_load_file(path, 0, &jerr);
    CHECK(exp != NULL, "%s: %s", path, jerr.text);
    if (!exp) {
        sn_coco_free(gt);
        return;
    }
    /* The thresholds agree to the bit with numpy.linspace. */
    double iou[SN_COCO_IOUS], rec[SN_COCO_RECALLS];
    sn_coco_eval_thresholds(iou, rec);
    json_t *ji = json_object_get(exp, "iou_thresholds");
    json_t *jr = json_object_get(exp, "recall_thresholds");
    int same = json_array_size(ji) == SN_COCO_IOUS && json_array_size(jr) == SN_COCO_RECALLS;
    for (int i = 0; same && i < SN_COCO_IOUS; i++)
        same = json_real_value(json_array_get(ji, (size_t)i)) == iou[i];
    for (int i = 0; same && i < SN_COCO_RECALLS; i++)
        same = json_number_value(json_array_get(jr, (size_t)i)) == rec[i];
    CHECK(same, "thresholds differ from numpy.linspace");

    json_t *cats = json_object_get(exp, "category_ids");
    CHECK((int)json_array_size(cats) == gt->num_categories, "category count");
    const char *name;
    json_t *sc;
    int scenarios = 0;
    json_object_foreach(json_object_get(exp, "scenarios"), name, sc) {
        snprintf(path, sizeof path, "%s/dets_%s.json", dir, name);
        sn_coco_dets d = {0};
        sn_status st = sn_coco_dets_load(path, gt, &d);
        CHECK(st == SN_OK, "%s: %s", path, sn_last_error());
        if (st != SN_OK) continue;
        CHECK((json_int_t)d.count == json_integer_value(json_object_get(sc, "count")),
              "%s: %zu detections", name, d.count);
        sn_coco_eval_result r;
        st = sn_coco_evaluate(gt, d.items, d.count, &r);
        CHECK(st == SN_OK, "%s: %s", name, sn_last_error());
        if (st == SN_OK) {
            json_t *stats = json_object_get(sc, "stats"), *cap = json_object_get(sc, "category_ap");
            double worst = 0;
            for (int i = 0; i < SN_COCO_NUM_STATS; i++) {
                double want = json_number_value(json_array_get(stats, (size_t)i));
                double err = fabs(r.stats[i] - want);
                CHECK(err <= 1e-9, "%s: %s = %.12f, reference %.12f", name,
                      sn_coco_stat_name(i), r.stats[i], want);
                if (err > worst) worst = err;
            }
            for (int k = 0; k < r.num_categories && k < (int)json_array_size(cap); k++) {
                double want = json_number_value(json_array_get(cap, (size_t)k));
                double err = fabs(r.category_ap[k] - want);
                CHECK(err <= 1e-9 && r.category_ids[k] ==
                                         (int)json_integer_value(json_array_get(cats, (size_t)k)),
                      "%s: category %d AP %.12f, reference %.12f", name, r.category_ids[k],
                      r.category_ap[k], want);
                if (err > worst) worst = err;
            }
            /* Per category (eval --per-class): its AP is category_ap, and where every category
             * has ground truth of every size, each summary number is the mean of theirs. */
            double sum[SN_COCO_NUM_STATS] = {0};
            int valid[SN_COCO_NUM_STATS], checked = 0;
            for (int i = 0; i < SN_COCO_NUM_STATS; i++) valid[i] = 1;
            for (int k = 0; k < r.num_categories; k++) {
                double cs[SN_COCO_NUM_STATS];
                sn_coco_category_stats(&r, k, cs);
                CHECK(cs[SN_COCO_AP] == r.category_ap[k], "%s: category %d: AP %.12f vs %.12f",
                      name, r.category_ids[k], cs[SN_COCO_AP], r.category_ap[k]);
                for (int i = 0; i < SN_COCO_NUM_STATS; i++) {
                    if (cs[i] < 0) valid[i] = 0;
                    sum[i] += cs[i];
                }
            }
            for (int i = 0; i < SN_COCO_NUM_STATS; i++)
                if (valid[i]) {
                    checked++;
                    CHECK(fabs(sum[i] / r.num_categories - r.stats[i]) <= 1e-12,
                          "%s: mean of the categories' %s %.12f, summary %.12f", name,
                          sn_coco_stat_name(i), sum[i] / r.num_categories, r.stats[i]);
                }
            double none[SN_COCO_NUM_STATS];
            sn_coco_category_stats(&r, r.num_categories, none);
            CHECK(none[0] == -1 && none[SN_COCO_NUM_STATS - 1] == -1, "out of range: -1");
            printf("golden %-10s %4zu dets: AP %.4f AP50 %.4f AR100 %.4f, max |diff| %.2g, %d numbers = mean of the categories'\n",
                   name, d.count, r.stats[0], r.stats[1], r.stats[8], worst,
                   checked);
            sn_coco_eval_free(&r);
        }
        sn_coco_dets_free(&d);
        scenarios++;
    }
    CHECK(scenarios >= 4, "%d golden scenarios", scenarios);
    json_decref(exp);
    sn_coco_free(gt);
}

/* ------------------------------------------------------------------------------------------ */

static uint64_t g_rng = 88172645463325252ULL;
static double urand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}

/* COCO-sized: 5000 images with 7 objects each among 80 categories, 100 detections per image
 * (jittered objects and random boxes). pycocotools takes about a minute here. */
static void test_speed(void) {
    const int nimg = SANITIZED ? 1000 : 5000, per = 7, ncat = 80;
    gt_box *g = malloc(sizeof *g * (size_t)nimg * per);
    sn_coco_det *d = malloc(sizeof *d * (size_t)nimg * 100);
    if (!g || !d) {
        free(g);
        free(d);
        return;
    }
    int n = 0, nd = 0;
    for (int i = 1; i <= nimg; i++)
        for (int j = 0; j < per; j++) {
            gt_box b = {i, 1 + (int)(urand() * ncat), urand() * 500, urand() * 350,
                        8 + urand() * 130, 8 + urand() * 130, 0, urand() < 0.02};
            g[n++] = b;
        }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 10; j++) {
            const gt_box *b = &g[i];
            d[nd++] = D(b->img, urand() < 0.9 ? b->cat : 1 + (int)(urand() * ncat),
                        b->x + (urand() - 0.5) * 0.3 * b->w, b->y + (urand() - 0.5) * 0.3 * b->h,
                        b->w * (0.8 + 0.4 * urand()), b->h * (0.8 + 0.4 * urand()), urand());
        }
    for (int i = 1; i <= nimg; i++)
        for (int j = 0; j < 100 - per * 10; j++)
            d[nd++] = D(i, 1 + (int)(urand() * ncat), urand() * 600, urand() * 440,
                        5 + urand() * 200, 5 + urand() * 200, urand() * 0.5);
    sn_coco *gt = make_gt(g, n, nimg, ncat);
    if (gt) {
        sn_coco_eval_result r;
        double t0 = now_s();
        sn_status st = sn_coco_evaluate(gt, d, (size_t)nd, &r);
        double t = now_s() - t0;
        CHECK(st == SN_OK, "speed case: %s", sn_last_error());
        if (st == SN_OK) {
            printf("%d images, %d detections: %.2f s (AP %.4f AR100 %.4f)\n", nimg, nd, t,
                   r.stats[0], r.stats[8]);
            CHECK(r.stats[SN_COCO_AP] > 0.05 && r.stats[SN_COCO_AP] < 1, "AP %g",
                  r.stats[SN_COCO_AP]);
            if (!SANITIZED) CHECK(t < 10, "evaluation took %.1f s", t);
            sn_coco_eval_free(&r);
        }
        sn_coco_free(gt);
    }
    free(g);
    free(d);
}

static void rm_tree(const char *dir) {
    char p[700];
    snprintf(p, sizeof p, "%s/gt.json", dir);
    remove(p);
    rmdir(dir);
}

int main(void) {
    if (t_make_tmpdir(g_tmp, sizeof g_tmp, "sn_cocoeval") != 0) return 1;
    test_perfect();
    test_fp_above_tp();
    test_crowd();
    test_areas();
    test_maxdets();
    test_missing_category_and_duplicates();
    test_ties_across_images();
    test_bad_detections();
    test_alloc_failures();
    test_golden();
    test_speed();
    rm_tree(g_tmp);
    return TEST_SUMMARY();
}
