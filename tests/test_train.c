/* Whole-network training pass: the loss gradient of a classifier against finite differences of
 * the loss (on the elements with the largest gradients, where float32 differences are
 * meaningful), determinism across thread counts, stochastic depth and BN moving statistics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "model.h"
#include "model_train.h"
#include "golden_fill.h"
#include "model_util.h"
#include "spinenet.h"
#include "test.h"

typedef struct {
    sn_model *m;
    float **grads;
    int np;
} trainer;

static int setup(trainer *t, const char *model, sn_flavour fl, sn_act act, float drop, int threads,
                 int n, int size) {
    sn_config c;
    sn_config_init(&c, model);
    c.flavour = fl;
    c.head = SN_HEAD_CLASSIFIER;
    c.num_classes = 5;
    c.activation = act;
    c.drop_path_rate = drop;
    t->m = NULL;
    if (sn_model_create(&c, 1, &t->m) != SN_OK) return -1;
    golden_fill_params(t->m, 99);
    sn_model_set_threads(t->m, threads);
    if (sn_model_plan_train(t->m, n, size, size) != SN_OK) return -1;
    t->np = sn_model_num_params(t->m);
    t->grads = tm_grads_new(t->m);
    return 0;
}

static void teardown(trainer *t) {
    tm_buffers_free(t->m, t->grads);
    sn_model_free(t->m);
}

static void zero_grads(trainer *t) { tm_buffers_zero(t->m, t->grads); }

/* A copy of every parameter, and its restoration (and release): a training forward moves the
 * BN moving statistics, which the finite differences must not see. */
static float **save_params(trainer *t) { return tm_params_copy(t->m); }

static void restore_params(trainer *t, float **saved) {
    tm_params_set(t->m, saved);
    tm_buffers_free(t->m, saved);
}

/* Loss only, with the moving statistics restored afterwards (the forward updates them). */
static double loss_at(trainer *t, const float *x, const int32_t *labels) {
    float **saved = save_params(t);
    double l = NAN;
    sn_model_loss_grad(t->m, x, labels, 0.1f, 7, &l, NULL);
    restore_params(t, saved);
    return l;
}

static void test_fd(const char *model, sn_flavour fl, sn_act act, int size) {
    trainer t;
    /* Batch 4 at 256 px: the 2x2 level-7 maps give batch-norm 16 rows; with fewer the batch
     * statistics are ill-conditioned and float32 finite differences mean nothing. */
    int n = 4;
    CHECK(setup(&t, model, fl, act, 0.0f, 2, n, size) == 0, "setup %s: %s", model, sn_last_error());
    if (!t.m) return;
    size_t count = (size_t)n * size * size * 3;
    float *x = malloc(count * sizeof *x);
    sn_hash_fill(x, count, "input", 5, -1, 1);
    int32_t labels[4] = {1, 3, 0, 4};
    /* Gradients at the starting point (moving stats restored like loss_at does). */
    double l0 = loss_at(&t, x, labels);
    zero_grads(&t);
    double l;
    CHECK_OK(sn_model_loss_grad(t.m, x, labels, 0.1f, 7, &l, t.grads));
    CHECK(fabs(l - l0) < 1e-6, "loss %g vs %g", l, l0);
    /* SN_QUICK=1 (the sanitizer run) checks fewer tensors. */
    const char *q = getenv("SN_QUICK");
    int stride = q && q[0] == '1' ? 100 : 25;
    int checked = 0, bad = 0;
    for (int i = 0; i < t.np; i++) {
        sn_param p;
        sn_model_param_at(t.m, i, &p);
        size_t len = strlen(p.name);
        if ((len > 5 && strcmp(p.name + len - 5, ".mean") == 0) ||
            (len > 4 && strcmp(p.name + len - 4, ".var") == 0))
            continue;
        /* A spread of tensors: the classifier, the stem and every 25th other one (the PyTorch
         * gradient goldens check every tensor; this is the independent cross-check). */
        if (i % stride != 0 && !strstr(p.name, "head.fc") && strcmp(p.name, "stem.weight") != 0)
            continue;
        /* The element with the largest gradient. */
        size_t best = 0;
        for (size_t k = 1; k < p.count; k++)
            if (fabs(t.grads[i][k]) > fabs(t.grads[i][best])) best = k;
        double gk = t.grads[i][best];
        if (fabs(gk) < 2e-3) continue; /* below what float32 differences resolve */
        float orig = p.data[best];
        double h = 1e-2 * (fabs(orig) > 0.1 ? fabs(orig) : 0.1);
        p.data[best] = (float)(orig + h);
        double lp = loss_at(&t, x, labels);
        p.data[best] = (float)(orig - h);
        double lm = loss_at(&t, x, labels);
        p.data[best] = orig;
        double fd = (lp - lm) / (((double)(float)(orig + h)) - ((double)(float)(orig - h)));
        double rel = fabs(fd - gk) / (fabs(gk) + 1e-3);
        checked++;
        if (rel > 0.05) {
            bad++;
            fprintf(stderr, "%s %s[%zu]: analytic %.6g, finite difference %.6g\n", model, p.name,
                    best, gk, fd);
        }
    }
    printf("%s %s: finite differences on %d tensors, %d off by > 5%%\n", model,
           fl == SN_FLAVOUR_TPU ? "tpu" : "garden", checked, bad);
    CHECK(checked >= (stride > 25 ? 4 : 8), "%s: only %d tensors had a resolvable gradient", model,
          checked);
    CHECK(bad == 0, "%s: %d gradients disagree with finite differences", model, bad);
    free(x);
    teardown(&t);
}

/* Same gradients for 1 and 2 threads; stochastic depth reproducible from its seed. */
static void test_determinism(void) {
    trainer a, b;
    CHECK(setup(&a, "spinenet-mobile-49xs", SN_FLAVOUR_GARDEN, SN_ACT_NONE, 0.2f, 1, 2, 128) == 0,
          "%s", sn_last_error());
    CHECK(setup(&b, "spinenet-mobile-49xs", SN_FLAVOUR_GARDEN, SN_ACT_NONE, 0.2f, 2, 2, 128) == 0,
          "%s", sn_last_error());
    if (!a.m || !b.m) return;
    size_t count = 2 * 128 * 128 * 3;
    float *x = malloc(count * sizeof *x);
    sn_hash_fill(x, count, "input", 5, -1, 1);
    int32_t labels[2] = {0, 4};
    double la, lb;
    CHECK_OK(sn_model_loss_grad(a.m, x, labels, 0.0f, 11, &la, a.grads));
    CHECK_OK(sn_model_loss_grad(b.m, x, labels, 0.0f, 11, &lb, b.grads));
    CHECK(la == lb, "loss differs between 1 and 2 threads: %.9g vs %.9g", la, lb);
    int same = 1;
    for (int i = 0; i < a.np; i++) {
        sn_param p;
        sn_model_param_at(a.m, i, &p);
        if (memcmp(a.grads[i], b.grads[i], p.count * sizeof(float)) != 0) same = 0;
    }
    CHECK(same, "gradients differ between 1 and 2 threads");
    /* Moving statistics moved, towards the batch. */
    sn_param pa, pb;
    CHECK_OK(sn_model_param(a.m, "stem.bn.mean", &pa));
    CHECK(pa.data[0] != 0.0f, "moving mean unchanged");
    CHECK_OK(sn_model_param(b.m, "stem.bn.mean", &pb));
    CHECK(memcmp(pa.data, pb.data, pa.count * 4) == 0, "moving means differ across threads");
    /* Another stochastic-depth seed gives another loss (drop rate 0.2 over 16 rows). */
    double lc = 0;
    int differs = 0;
    for (uint64_t s = 12; s < 20 && !differs; s++) {
        CHECK_OK(sn_model_loss_grad(a.m, x, labels, 0.0f, s, &lc, NULL));
        differs = lc != la;
    }
    CHECK(differs, "stochastic depth has no effect");
    free(x);
    teardown(&a);
    teardown(&b);
}

/* The detection head trains through sn_graph_backward_multi: a loss that is a fixed linear
 * function of three outputs (class and box towers, two levels: the tower convolutions are
 * shared across levels, their BN is not) against finite differences, and the one-pass backward
 * against the sum of one backward per output. */
#define DET_OUTS 3
static const char *const k_det_outs[DET_OUTS] = {"class.3", "box.3", "class.6"};

static int det_node(const sn_model *m, const char *name) {
    for (int i = 0; i < m->graph.n; i++)
        if (strcmp(m->graph.nodes[i].out_name, name) == 0) return i;
    return -1;
}

/* sum_j <w_j, out_j> after a training forward; moving statistics restored. */
static double det_functional(trainer *t, const float *x, const int *nodes, float *const *w) {
    float **saved = save_params(t);
    sn_graph *g = &t->m->graph;
    double l = NAN;
    if (sn_graph_forward_train(g, &t->m->params, x, 0.99f, 1, 7) == SN_OK) {
        l = 0.0;
        for (int j = 0; j < DET_OUTS; j++) {
            const float *o = sn_graph_f32(g, nodes[j]);
            const size_t cnt = sn_node_elems(&g->nodes[nodes[j]]);
            for (size_t k = 0; k < cnt; k++) l += (double)w[j][k] * o[k];
        }
    }
    restore_params(t, saved);
    return l;
}

static void test_detection_backward(void) {
    sn_config c;
    sn_config_init(&c, "spinenet-mobile-49xs");
    c.head = SN_HEAD_RETINANET;
    c.num_classes = 3;
    trainer t = {0};
    const int n = 2, size = 256;
    CHECK_OK(sn_model_create(&c, 1, &t.m));
    if (!t.m) return;
    golden_fill_params(t.m, 5);
    sn_model_set_threads(t.m, 2);
    CHECK_OK(sn_model_plan_train(t.m, n, size, size));
    t.np = sn_model_num_params(t.m);
    t.grads = tm_grads_new(t.m);
    float **g2 = tm_grads_new(t.m);
    const size_t count = (size_t)n * size * size * 3;
    float *x = malloc(count * sizeof *x);
    sn_hash_fill(x, count, "input", 6, -1, 1);
    int nodes[DET_OUTS];
    float *w[DET_OUTS];
    sn_graph *g = &t.m->graph;
    for (int j = 0; j < DET_OUTS; j++) {
        nodes[j] = det_node(t.m, k_det_outs[j]);
        CHECK(nodes[j] >= 0, "no output %s", k_det_outs[j]);
        if (nodes[j] < 0) return;
        const size_t cnt = sn_node_elems(&g->nodes[nodes[j]]);
        w[j] = malloc(cnt * sizeof(float));
        sn_hash_fill(w[j], cnt, k_det_outs[j], 3, -1, 1);
    }
    /* One pass from all three outputs, and one backward per output summed. */
    const double l0 = det_functional(&t, x, nodes, w);
    CHECK_OK(sn_graph_forward_train(g, &t.m->params, x, 0.99f, 1, 7));
    CHECK_OK(sn_graph_backward_multi(g, &t.m->params, DET_OUTS, nodes,
                                     (const float *const *)w, t.grads));
    for (int j = 0; j < DET_OUTS; j++)
        CHECK_OK(sn_graph_backward(g, &t.m->params, nodes[j], w[j], g2));
    /* Each tensor's largest difference relative to its largest gradient, with a floor of 1e-4
     * of the network's largest gradient: tensors whose gradient is zero up to cancellation
     * (a convolution bias followed by batch-norm) differ at the rounding level of the sums
     * that cancel, which the two summation orders do not share. A missing or overwritten
     * output gradient shows up as a difference of the size of the gradient itself. */
    double gmax = 0.0, worst = 0.0;
    for (int i = 0; i < t.np; i++) {
        sn_param p;
        sn_model_param_at(t.m, i, &p);
        for (size_t k = 0; k < p.count; k++)
            if (fabs(t.grads[i][k]) > gmax) gmax = fabs(t.grads[i][k]);
    }
    for (int i = 0; i < t.np; i++) {
        sn_param p;
        sn_model_param_at(t.m, i, &p);
        double amax = 1e-4 * gmax, d = 0.0;
        for (size_t k = 0; k < p.count; k++) {
            if (fabs(t.grads[i][k]) > amax) amax = fabs(t.grads[i][k]);
            if (fabs(t.grads[i][k] - g2[i][k]) > d) d = fabs(t.grads[i][k] - g2[i][k]);
        }
        if (d / amax > worst) worst = d / amax;
    }
    CHECK(gmax > 1.0 && worst < 1e-4,
          "one-pass vs per-output backward: relative difference %g (largest gradient %g)", worst,
          gmax);
    CHECK(sn_graph_backward_multi(g, &t.m->params, 2, (int[]){nodes[0], nodes[0]},
                                  (const float *const *)w, g2) == SN_ERR_INVALID_ARG,
          "an output given twice accepted");

    /* Finite differences on the largest gradient of the head's tensors and a spread of others;
     * SN_QUICK=1 (the sanitizer run) takes every 4th head tensor and fewer others. */
    const char *q = getenv("SN_QUICK");
    const int quick = q && q[0] == '1', head_stride = quick ? 4 : 1, other_stride = quick ? 120 : 40;
    int checked = 0, bad = 0, head_checked = 0, head_seen = 0;
    for (int i = 0; i < t.np; i++) {
        sn_param p;
        sn_model_param_at(t.m, i, &p);
        size_t len = strlen(p.name);
        if ((len > 5 && strcmp(p.name + len - 5, ".mean") == 0) ||
            (len > 4 && strcmp(p.name + len - 4, ".var") == 0))
            continue;
        const int head = strncmp(p.name, "head.", 5) == 0;
        if (head ? head_seen++ % head_stride != 0 : i % other_stride != 0) continue;
        size_t best = 0;
        for (size_t k = 1; k < p.count; k++)
            if (fabs(t.grads[i][k]) > fabs(t.grads[i][best])) best = k;
        const double gk = t.grads[i][best];
        if (fabs(gk) < 5e-2) continue;
        const float orig = p.data[best];
        const double h = 1e-2 * (fabs(orig) > 0.1 ? fabs(orig) : 0.1);
        p.data[best] = (float)(orig + h);
        const double lp = det_functional(&t, x, nodes, w);
        p.data[best] = (float)(orig - h);
        const double lm = det_functional(&t, x, nodes, w);
        p.data[best] = orig;
        const double fd = (lp - lm) / (((double)(float)(orig + h)) - ((double)(float)(orig - h)));
        const double rel = fabs(fd - gk) / (fabs(gk) + 1e-2);
        checked++;
        head_checked += head;
        if (rel > 0.05) {
            bad++;
            fprintf(stderr, "detection %s[%zu]: analytic %.6g, finite difference %.6g\n", p.name,
                    best, gk, fd);
        }
    }
    printf("detection head: functional %.6g, finite differences on %d tensors (%d of the head), "
           "%d off by > 5%%; one-pass vs per-output %.2g of the largest gradient %.3g\n", l0, checked,
           head_checked, bad, worst, gmax);
    CHECK(head_checked >= (quick ? 4 : 12) && checked >= (quick ? 6 : 20),
          "only %d tensors (%d head) had a resolvable gradient", checked, head_checked);
    CHECK(bad == 0, "%d detection gradients disagree with finite differences", bad);
    for (int j = 0; j < DET_OUTS; j++) free(w[j]);
    tm_buffers_free(t.m, g2);
    free(x);
    teardown(&t);
}

/* The training profile (sn_graph_set_train_profile) only reads clocks: the same loss, gradients
 * and moving statistics bit for bit with it on as off, and it accounts every node pass. */
static void test_profile_identical(void) {
    trainer a, b;
    CHECK(setup(&a, "spinenet-mobile-49xs", SN_FLAVOUR_GARDEN, SN_ACT_SWISH, 0.2f, 2, 2, 128) == 0,
          "%s", sn_last_error());
    CHECK(setup(&b, "spinenet-mobile-49xs", SN_FLAVOUR_GARDEN, SN_ACT_SWISH, 0.2f, 2, 2, 128) == 0,
          "%s", sn_last_error());
    if (!a.m || !b.m) return;
    sn_graph *gb = sn_model_part_graph(b.m, 0);
    CHECK_OK(sn_graph_set_train_profile(gb, 1));
    size_t count = 2 * 128 * 128 * 3;
    float *x = malloc(count * sizeof *x);
    sn_hash_fill(x, count, "input", 6, -1, 1);
    int32_t labels[2] = {1, 3};
    for (int step = 0; step < 2; step++) {
        double la, lb;
        zero_grads(&a);
        zero_grads(&b);
        CHECK_OK(sn_model_loss_grad(a.m, x, labels, 0.1f, 21 + (uint64_t)step, &la, a.grads));
        CHECK_OK(sn_model_loss_grad(b.m, x, labels, 0.1f, 21 + (uint64_t)step, &lb, b.grads));
        CHECK(memcmp(&la, &lb, sizeof la) == 0, "step %d: loss %.17g profiled, %.17g not", step,
              lb, la);
        int same = 1;
        for (int i = 0; i < a.np; i++) {
            sn_param pa, pb;
            sn_model_param_at(a.m, i, &pa);
            sn_model_param_at(b.m, i, &pb);
            if (a.grads[i] && memcmp(a.grads[i], b.grads[i], pa.count * sizeof(float)) != 0)
                same = 0;
            if (memcmp(pa.data, pb.data, pa.count * sizeof(float)) != 0) same = 0;
        }
        CHECK(same, "step %d: gradients or moving statistics differ with profiling on", step);
    }
    CHECK(gb->prof_train_runs == 2 && gb->prof_train_fwd_runs == 2,
          "profile counted %ld backward and %ld forward passes, want 2 and 2", gb->prof_train_runs,
          gb->prof_train_fwd_runs);
    double fwd = 0.0, bwd = 0.0;
    for (int i = 0; i < gb->n; i++) {
        fwd += gb->prof_train[(size_t)i * SN_PROF_SLOTS + SN_PROF_FWD_OP] +
               gb->prof_train[(size_t)i * SN_PROF_SLOTS + SN_PROF_FWD_NORM];
        bwd += gb->prof_train[(size_t)i * SN_PROF_SLOTS + SN_PROF_BWD_NORM] +
               gb->prof_train[(size_t)i * SN_PROF_SLOTS + SN_PROF_BWD_OP];
    }
    CHECK(fwd > 0.0 && bwd > 0.0, "profile recorded forward %g s, backward %g s", fwd, bwd);
    CHECK_OK(sn_graph_set_train_profile(gb, 0));
    CHECK(gb->prof_train == NULL, "profile still allocated after turning it off");
    free(x);
    teardown(&a);
    teardown(&b);
}

int main(void) {
    test_profile_identical();
    test_detection_backward();
    test_fd("spinenet-mobile-49xs", SN_FLAVOUR_GARDEN, SN_ACT_NONE, 256);
    test_determinism();
    return TEST_SUMMARY();
}
