/* Data-parallel training (sn_model_set_train_replicas): a batch split into two parts must give
 * exactly what two single-graph passes over the two halves give, combined as documented in
 * model.h: the parts' gradients summed (classification: each half's mean loss halved;
 * detection: each half rescaled to the whole batch's positives + 1), the moving statistics of
 * the first half only, the same logits, the same bits on every call. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anchors.h"
#include "core.h"
#include "det_train.h"
#include "golden_fill.h"
#include "model_util.h"
#include "model_train.h"
#include "spinenet.h"
#include "test.h"

typedef struct {
    sn_model *m;
    float **g; /* one buffer per parameter */
    int np;
} net;

static int net_make(net *t, sn_head head, int classes, int replicas, int batch, int size) {
    sn_config c;
    sn_config_init(&c, "spinenet-mobile-49xs");
    c.head = head;
    c.num_classes = classes;
    memset(t, 0, sizeof *t);
    if (sn_model_create(&c, 1, &t->m) != SN_OK) return -1;
    golden_fill_params(t->m, 31);
    sn_model_set_threads(t->m, 2);
    if (sn_model_set_train_replicas(t->m, replicas) != SN_OK) return -1;
    if (sn_model_plan_train(t->m, batch, size, size) != SN_OK) return -1;
    t->np = sn_model_num_params(t->m);
    t->g = tm_grads_new(t->m);
    return 0;
}

static void net_free(net *t) {
    tm_buffers_free(t->m, t->g);
    sn_model_free(t->m);
}

/* A copy of the current gradients. */
static float **grads_copy(net *t) {
    float **s = tm_grads_new(t->m);
    for (int i = 0; i < t->np; i++) {
        sn_param p;
        sn_model_param_at(t->m, i, &p);
        memcpy(s[i], t->g[i], p.count * sizeof(float));
    }
    return s;
}

static int is_stat(const char *name) {
    const size_t n = strlen(name);
    return (n > 5 && strcmp(name + n - 5, ".mean") == 0) || (n > 4 && strcmp(name + n - 4, ".var") == 0);
}

static void test_classifier(void) {
    const int size = 128, classes = 5;
    net a, b;
    if (net_make(&a, SN_HEAD_CLASSIFIER, classes, 2, 4, size) != 0 ||
        net_make(&b, SN_HEAD_CLASSIFIER, classes, 1, 2, size) != 0) {
        CHECK(0, "set-up: %s", sn_last_error());
        return;
    }
    CHECK(sn_model_train_parts(a.m) == 2 && sn_model_train_batch(a.m) == 4,
          "parts %d batch %d", sn_model_train_parts(a.m), sn_model_train_batch(a.m));
    const size_t per = (size_t)size * size * 3;
    float *x = malloc(4 * per * sizeof *x);
    sn_hash_fill(x, 4 * per, "replica-input", 3, -1, 1);
    const int32_t labels[4] = {1, 4, 0, 2};
    float **start = tm_params_copy(a.m);

    double la = 0.0, la2 = 0.0, l0 = 0.0, l1 = 0.0;
    CHECK_OK(sn_model_loss_grad(a.m, x, labels, 0.1f, 7, &la, a.g));
    float **ga = grads_copy(&a);
    float **after_a = tm_params_copy(a.m);
    float logits_a[4][8] = {{0}};
    for (int i = 0; i < 4; i++) memcpy(logits_a[i], sn_model_train_logits(a.m, i), classes * sizeof(float));
    /* The same call again, from the same parameters: the same bits. */
    tm_params_set(a.m, start);
    tm_buffers_zero(a.m, a.g);
    CHECK_OK(sn_model_loss_grad(a.m, x, labels, 0.1f, 7, &la2, a.g));
    int same = la2 == la;
    for (int i = 0; i < a.np; i++) {
        sn_param p;
        sn_model_param_at(a.m, i, &p);
        same &= memcmp(ga[i], a.g[i], p.count * sizeof(float)) == 0;
    }
    CHECK(same, "two identical split passes differ");

    /* The halves through one graph each. */
    tm_params_set(b.m, start);
    CHECK_OK(sn_model_loss_grad(b.m, x, labels, 0.1f, 7, &l0, b.g));
    float **g0 = grads_copy(&b);
    float **after_b = tm_params_copy(b.m);
    float logits_b[4][8] = {{0}};
    for (int i = 0; i < 2; i++) memcpy(logits_b[i], sn_model_train_logits(b.m, i), classes * sizeof(float));
    tm_params_set(b.m, start);
    tm_buffers_zero(b.m, b.g);
    CHECK_OK(sn_model_loss_grad(b.m, x + 2 * per, labels + 2, 0.1f, sn_part_seed(7, 1), &l1, b.g));
    for (int i = 0; i < 2; i++)
        memcpy(logits_b[2 + i], sn_model_train_logits(b.m, i), classes * sizeof(float));

    /* Halving is exact in binary floating point, so the sum is reproduced bit for bit. */
    CHECK(la == l0 / 2 + l1 / 2, "loss %.9g, halves %.9g %.9g", la, l0, l1);
    long bad = 0, stats_bad = 0, compared = 0;
    for (int i = 0; i < a.np; i++) {
        sn_param p;
        sn_model_param_at(a.m, i, &p);
        if (is_stat(p.name)) {
            /* Only the first part moves the moving statistics. */
            stats_bad += memcmp(after_a[i], after_b[i], p.count * sizeof(float)) != 0;
            continue;
        }
        for (size_t k = 0; k < p.count; k++) {
            const float want = 0.5f * g0[i][k] + 0.5f * b.g[i][k];
            bad += ga[i][k] != want;
            compared++;
        }
    }
    CHECK(compared > 10000 && bad == 0, "%ld of %ld gradient elements differ from the halves' mean",
          bad, compared);
    CHECK(stats_bad == 0, "%ld moving-statistics tensors differ from the first half's", stats_bad);
    CHECK(memcmp(logits_a, logits_b, sizeof logits_a) == 0, "training logits differ");
    printf("classifier, 2 parts of 2: loss %.6f = (%.6f + %.6f) / 2, %ld gradient elements equal\n",
           la, l0, l1, compared);

    /* A batch the parts cannot split, and a bad replica count. */
    CHECK(sn_model_plan_train(a.m, 3, size, size) == SN_ERR_INVALID_ARG &&
              strstr(sn_last_error(), "2 equal parts"),
          "batch 3 in 2 parts: %s", sn_last_error());
    CHECK(sn_model_set_train_replicas(a.m, 0) == SN_ERR_INVALID_ARG, "0 replicas accepted");
    CHECK(sn_model_set_train_replicas(a.m, SN_MAX_REPLICAS + 1) == SN_ERR_INVALID_ARG,
          "too many replicas accepted");
    /* Another split of a planned model needs a new plan; then it trains as one graph. */
    CHECK_OK(sn_model_plan_train(a.m, 4, size, size));
    CHECK_OK(sn_model_set_train_replicas(a.m, 1));
    double l1g = 0.0;
    CHECK(sn_model_loss_grad(a.m, x, labels, 0.1f, 7, &l1g, NULL) == SN_ERR_STATE,
          "a changed split trained on the old plan");
    CHECK_OK(sn_model_plan_train(a.m, 4, size, size));
    CHECK(sn_model_train_parts(a.m) == 1 && sn_model_train_batch(a.m) == 4, "parts %d batch %d",
          sn_model_train_parts(a.m), sn_model_train_batch(a.m));
    CHECK_OK(sn_model_loss_grad(a.m, x, labels, 0.1f, 7, &l1g, NULL));
    CHECK(isfinite(l1g) && l1g != la, "one graph over 4 images: loss %g (split: %g)", l1g, la);

    tm_buffers_free(a.m, g0);
    tm_buffers_free(a.m, ga);
    tm_buffers_free(a.m, start);
    tm_buffers_free(a.m, after_a);
    tm_buffers_free(b.m, after_b);
    free(x);
    net_free(&a);
    net_free(&b);
}

/* Targets of image i: a few boxes on the 128 px canvas, a different number per image so that
 * the halves' positives differ. */
static int64_t label_image(sn_det_head *h, int slot, int image) {
    sn_gt_box gt[4];
    const int n = image == 0 ? 1 : 3;
    for (int k = 0; k < n; k++) {
        const float y = 10.0f + 25.0f * k + 7.0f * image, x = 15.0f + 30.0f * k;
        const float s = 20.0f + 18.0f * k;
        gt[k] = (sn_gt_box){y, x, y + s, x + 0.8f * s, 1 + (k + image) % 2, 0};
    }
    int64_t pos = 0;
    const size_t count = (size_t)h->layout.count;
    CHECK_OK(sn_anchor_label(&h->layout, h->anchors, gt, n, h->num_classes,
                             h->cls_targets + (size_t)slot * count,
                             h->box_targets + (size_t)slot * count * 4, &pos));
    return pos;
}

static void test_detector(void) {
    const int size = 128, classes = 3;
    net a, b;
    if (net_make(&a, SN_HEAD_RETINANET, classes, 2, 2, size) != 0 ||
        net_make(&b, SN_HEAD_RETINANET, classes, 1, 1, size) != 0) {
        CHECK(0, "set-up: %s", sn_last_error());
        return;
    }
    sn_det_head ha, hb;
    CHECK_OK(sn_det_head_init(&ha, a.m, size, 2, 4));
    CHECK_OK(sn_det_head_init(&hb, b.m, size, 1, 4));
    const size_t per = (size_t)size * size * 3;
    float *x = malloc(2 * per * sizeof *x);
    sn_hash_fill(x, 2 * per, "replica-det", 5, -1, 1);
    float **start = tm_params_copy(a.m);

    const int64_t p0 = label_image(&ha, 0, 0), p1 = label_image(&ha, 1, 1);
    sn_retinanet_loss_value la, l0, l1;
    CHECK_OK(sn_det_loss_grad(a.m, &ha, x, 2, 9, &la, a.g));
    float **ga = grads_copy(&a);

    tm_params_set(b.m, start);
    label_image(&hb, 0, 0);
    CHECK_OK(sn_det_loss_grad(b.m, &hb, x, 1, 9, &l0, b.g));
    float **g0 = grads_copy(&b);
    tm_params_set(b.m, start);
    tm_buffers_zero(b.m, b.g);
    label_image(&hb, 0, 1);
    CHECK_OK(sn_det_loss_grad(b.m, &hb, x + per, 1, sn_part_seed(9, 1), &l1, b.g));

    const double s0 = (double)(p0 + 1) / (double)(p0 + p1 + 1),
                 s1 = (double)(p1 + 1) / (double)(p0 + p1 + 1);
    const double want = s0 * l0.total + s1 * l1.total;
    CHECK(p0 != p1 && la.num_positives == p0 + p1, "positives %lld + %lld, split pass %lld",
          (long long)p0, (long long)p1, (long long)la.num_positives);
    CHECK(fabs(la.total - want) <= 1e-9 * fabs(want), "loss %.12g, halves rescaled %.12g", la.total,
          want);
    CHECK(fabs(la.cls + 50.0 * la.box - la.total) <= 1e-9 * la.total, "cls %g box %g total %g",
          la.cls, la.box, la.total);
    /* The rescaling by s0 and s1 happens in float on the head's outputs here, in double on the
     * parameter gradients of the halves, so the two differ by rounding: ~1e-6 of the
     * network's largest gradient. Per tensor (relative to its own largest gradient, with a
     * floor of 1e-4 of the network's) the rounding shows up to ~1e-3 in tensors whose gradient
     * is zero up to cancellation (a BN beta feeding only convolutions into batch-norm), while a
     * part missing from a tensor, or counted twice, or scaled wrongly, is off by 5 % or more. */
    double gmax = 0.0, worst = 0.0, dmax = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < a.np; i++) {
        sn_param p;
        sn_model_param_at(a.m, i, &p);
        for (size_t k = 0; k < p.count; k++)
            if (fabs(ga[i][k]) > gmax) gmax = fabs(ga[i][k]);
    }
    for (int i = 0; i < a.np; i++) {
        sn_param p;
        sn_model_param_at(a.m, i, &p);
        if (is_stat(p.name)) continue;
        double amax = 1e-4 * gmax, d = 0.0;
        for (size_t k = 0; k < p.count; k++) {
            const double w = s0 * g0[i][k] + s1 * b.g[i][k];
            if (fabs(w) > amax) amax = fabs(w);
            if (fabs(ga[i][k] - w) > d) d = fabs(ga[i][k] - w);
        }
        if (d > dmax) dmax = d;
        if (d / amax > worst) {
            worst = d / amax;
            worst_name = p.name;
        }
    }
    CHECK(gmax > 0.1 && dmax <= 1e-5 * gmax, "split vs halves: largest difference %g (largest "
          "gradient %g)", dmax, gmax);
    CHECK(worst < 5e-3, "split vs halves: %s off by %g of its largest gradient", worst_name, worst);
    printf("detector, 2 parts of 1: loss %.6f (positives %lld + %lld); gradients within %.2g of "
           "the largest %.3g, per tensor within %.2g (%s)\n", la.total, (long long)p0,
           (long long)p1, dmax, gmax, worst, worst_name);

    sn_det_head_free(&ha);
    sn_det_head_free(&hb);
    tm_buffers_free(a.m, g0);
    tm_buffers_free(a.m, ga);
    tm_buffers_free(a.m, start);
    free(x);
    net_free(&a);
    net_free(&b);
}

/* sn_model_set_train_sync_bn: two parts of 2 images whose batch-norms add their sums in-process
 * compute what one graph of 4 computes, up to rounding: the synchronized kernels sum in double
 * where one graph's fused kernel takes a float pass about a shift, a last-bit difference per
 * statistic that this small model's 1x1 deepest levels amplify (test_sync_bn measures the
 * plain path itself moving by 1.6e-4 in the moving statistics and 1e-2 in the gradient for
 * one-ulp input changes). Bounds: loss 1e-5, moving statistics 1e-3 (|d| / (|v| + 1e-3)),
 * gradient 1e-3 relative L2 (as tests/mpi_train_test.sh's one step of 2 processes against one,
 * whose sums this reducer makes in the processes' order); and the unsynchronized split must be
 * 100x farther. */
static void test_sync_parts(void) {
    const int size = 128, classes = 5;
    net a, b, c;
    if (net_make(&a, SN_HEAD_CLASSIFIER, classes, 2, 4, size) != 0 ||
        net_make(&b, SN_HEAD_CLASSIFIER, classes, 1, 4, size) != 0 ||
        net_make(&c, SN_HEAD_CLASSIFIER, classes, 2, 4, size) != 0) {
        CHECK(0, "set-up: %s", sn_last_error());
        return;
    }
    CHECK_OK(sn_model_set_train_sync_bn(a.m, 1));
    CHECK_OK(sn_model_plan_train(a.m, 4, size, size));
    const size_t per = (size_t)size * size * 3;
    float *x = malloc(4 * per * sizeof *x);
    sn_hash_fill(x, 4 * per, "sync-parts-input", 5, -1, 1);
    const int32_t labels[4] = {3, 0, 4, 1};
    double la = 0, lb = 0, lc = 0;
    CHECK_OK(sn_model_loss_grad(a.m, x, labels, 0.1f, 7, &la, a.g));
    CHECK_OK(sn_model_loss_grad(b.m, x, labels, 0.1f, 7, &lb, b.g));
    CHECK_OK(sn_model_loss_grad(c.m, x, labels, 0.1f, 7, &lc, c.g));
    CHECK(fabs(la - lb) <= 1e-5 * fabs(lb), "loss %.9g vs one graph %.9g", la, lb);
    double d2 = 0, n2 = 0, dc2 = 0, stat = 0, statc = 0;
    for (int i = 0; i < a.np; i++) {
        sn_param pa, pb, pc;
        sn_model_param_at(a.m, i, &pa);
        sn_model_param_at(b.m, i, &pb);
        sn_model_param_at(c.m, i, &pc);
        for (size_t k = 0; k < pa.count; k++) {
            d2 += ((double)a.g[i][k] - b.g[i][k]) * ((double)a.g[i][k] - b.g[i][k]);
            dc2 += ((double)c.g[i][k] - b.g[i][k]) * ((double)c.g[i][k] - b.g[i][k]);
            n2 += (double)b.g[i][k] * b.g[i][k];
            if (is_stat(pa.name)) {
                const double den = fabs(pb.data[k]) + 1e-3;
                stat = fmax(stat, fabs((double)pa.data[k] - pb.data[k]) / den);
                statc = fmax(statc, fabs((double)pc.data[k] - pb.data[k]) / den);
            }
        }
    }
    const double rel = sqrt(d2 / n2), relc = sqrt(dc2 / n2);
    CHECK(rel <= 1e-3, "gradient, synchronized parts vs one graph: %.3g", rel);
    CHECK(stat <= 1e-3, "moving statistics, synchronized parts vs one graph: %.3g", stat);
    CHECK(relc > 100 * rel && statc > 100 * stat,
          "the unsynchronized split is not farther: gradient %.3g, statistics %.3g", relc, statc);
    printf("sync parts vs one graph: loss %.3g, gradient %.3g, statistics %.3g (unsynchronized: "
           "%.3g, %.3g)\n", fabs(la - lb) / fabs(lb), rel, stat, relc, statc);
    free(x);
    net_free(&a);
    net_free(&b);
    net_free(&c);
}

int main(void) {
    test_classifier();
    test_sync_parts();
    test_detector();
    return TEST_SUMMARY();
}
