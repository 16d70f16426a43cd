/* Tests of the Model Garden (TF2) checkpoint names (src/models/tf_names_garden.c): every
 * parameter of SpineNet-49 and Mobile SpineNet-49 (RetinaNet) gets one distinct, well-formed key;
 * spot checks of keys that pin the layer numbering; EMA keys; P2; the refusals.
 *
 * Where the expected keys come from:
 *  - derived by hand from the Garden code and Keras functional.py (see tf_names_garden.c): the
 *    stem conv and BN are the deepest layers with weights (layer_with_weights-0, -1), then the
 *    first stem block (-2); the second stem block is -3 in SpineNet (its output feeds the
 *    resampling chains of rows 0 and 1, so it is deeper than all of them); in Mobile SpineNet
 *    row 0's depthwise down-sampling conv of feature 0 is one deeper than the second stem block
 *    (-3, then -4). The endpoints are the shallowest: with N layers with weights, the endpoint
 *    convs are N-2n .. N-n-1 and their BNs N-n .. N-1 (n levels, in level order): N is 181 for
 *    SpineNet-49 (4 + 15 rows x 9 + 2 x 16 down-sampling convs + 10), 148 for Mobile-49
 *    (4 + 16 x 5 + 2 x 27 depthwise steps + 10) and 192 with P2.
 *  - the rest (e.g. row 1's resampling convs at -4/-5 and -8/-9, the residual block of row 1 at
 *    -24) from a separate Python re-implementation of Keras' _map_graph_network on the same
 *    Garden graph, which agreed with the C code layer for layer on all three models. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "model.h"
#include "test.h"
#include "tf_names.h"

#define SUFFIX "/.ATTRIBUTES/VARIABLE_VALUE"
#define SLOT "/.OPTIMIZER_SLOT/optimizer/average"

static sn_model *make(const char *name, int p2, sn_head head) {
    sn_config c;
    if (sn_config_init(&c, name) != SN_OK) return NULL;
    c.p2 = p2;
    c.head = head;
    sn_model *m = NULL;
    sn_status st = sn_model_create_uninit(&c, &m);
    CHECK(st == SN_OK, "create %s: %s", name, sn_last_error());
    return m;
}

static const char *key_of(const sn_tf_names *t, const char *model) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->v[i].model, model) == 0) return t->v[i].tf;
    return NULL;
}

/* The key of `model` must be `path` + SUFFIX (or + SLOT + SUFFIX with slot). */
static void expect(const sn_tf_names *t, const char *model, const char *path, int slot) {
    char want[300];
    snprintf(want, sizeof want, "%s%s%s", path, slot ? SLOT : "", SUFFIX);
    const char *got = key_of(t, model);
    CHECK(got && strcmp(got, want) == 0, "%s: got %s, want %s", model, got ? got : "(none)",
          want);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* One entry per parameter, in order; keys distinct and well formed. */
static void check_all(const sn_model *m, const sn_tf_names *t, int ema) {
    CHECK(t->n == m->params.n, "%d names for %d parameters", t->n, m->params.n);
    if (t->n != m->params.n) return;
    const char **keys = malloc((size_t)t->n * sizeof *keys);
    if (!keys) return;
    int bad = 0;
    for (int i = 0; i < t->n; i++) {
        const char *k = t->v[i].tf, *name = m->params.t[i].name;
        size_t len = strlen(k), sl = strlen(SUFFIX);
        int ok = strcmp(t->v[i].model, name) == 0 && len > sl &&
                 strcmp(k + len - sl, SUFFIX) == 0 && !strstr(k, "//") &&
                 (strncmp(k, "backbone/layer_with_weights-", 28) == 0 ||
                  strncmp(k, "head/_", 6) == 0);
        /* The EMA slot exactly on the trainable ones (not the moving statistics). */
        int moving = strstr(name, ".mean") || strstr(name, ".var");
        ok = ok && (!!strstr(k, SLOT) == (ema && !moving));
        if (!ok && bad++ < 5) CHECK(0, "malformed: %s -> %s", name, k);
        keys[i] = k;
    }
    CHECK(bad == 0, "%d malformed keys", bad);
    qsort(keys, (size_t)t->n, sizeof *keys, cmp_str);
    int dup = 0;
    for (int i = 1; i < t->n; i++)
        if (strcmp(keys[i], keys[i - 1]) == 0 && dup++ < 5) CHECK(0, "duplicate key %s", keys[i]);
    CHECK(dup == 0, "%d duplicate keys", dup);
    free(keys);
}

static void test_spinenet49(void) {
    sn_model *m = make("spinenet-49", 0, SN_HEAD_RETINANET);
    if (!m) return;
    sn_tf_names t;
    CHECK_OK(sn_tf_names_make(m, 0, &t));
    check_all(m, &t, 0);
    const char *lw = "backbone/layer_with_weights-";
    char p[160];
#define LW(k, rest) (snprintf(p, sizeof p, "%s%d/%s", lw, k, rest), p)
    expect(&t, "stem.weight", LW(0, "kernel"), 0);
    expect(&t, "stem.bn.gamma", LW(1, "gamma"), 0);
    expect(&t, "stem.bn.mean", LW(1, "moving_mean"), 0);
    expect(&t, "blocks.0.0.conv1.weight", LW(2, "_conv1/kernel"), 0);
    expect(&t, "blocks.0.0.conv2.bn.beta", LW(2, "_norm2/beta"), 0);
    expect(&t, "blocks.0.0.proj.weight", LW(2, "_shortcut/kernel"), 0);
    expect(&t, "blocks.0.0.proj.bn.var", LW(2, "_norm0/moving_variance"), 0);
    expect(&t, "blocks.1.0.conv3.weight", LW(3, "_conv3/kernel"), 0);
    expect(&t, "blocks.1.0.conv3.bn.gamma", LW(3, "_norm3/gamma"), 0);
    /* Row 1 (feature 3, level-4 residual): its resampling of features 0 and 1. */
    expect(&t, "blocks.3.resample0.reduce.weight", LW(4, "kernel"), 0);
    expect(&t, "blocks.3.resample1.reduce.weight", LW(5, "kernel"), 0);
    expect(&t, "blocks.3.resample0.down0.weight", LW(8, "kernel"), 0);
    expect(&t, "blocks.3.resample1.down0.bn.gamma", LW(11, "gamma"), 0);
    expect(&t, "blocks.2.resample0.reduce.weight", LW(12, "kernel"), 0);
    expect(&t, "blocks.3.0.conv1.weight", LW(24, "_conv1/kernel"), 0);
    expect(&t, "blocks.3.0.conv2.bn.mean", LW(24, "_norm2/moving_mean"), 0);
    expect(&t, "blocks.9.resample0.reduce.weight", LW(84, "kernel"), 0);
    expect(&t, "blocks.9.resample0.project.weight", LW(91, "kernel"), 0);
    expect(&t, "blocks.14.0.conv2.weight", LW(135, "_conv2/kernel"), 0);
    expect(&t, "blocks.16.0.conv1.weight", LW(169, "_conv1/kernel"), 0);
    expect(&t, "endpoints.3.weight", LW(171, "kernel"), 0);
    expect(&t, "endpoints.7.weight", LW(175, "kernel"), 0);
    expect(&t, "endpoints.3.bn.gamma", LW(176, "gamma"), 0);
    expect(&t, "endpoints.7.bn.var", LW(180, "moving_variance"), 0);
    CHECK(!key_of(&t, "blocks.2.0.proj.weight"), "no projection outside the stem");
    /* The head: per-level BN lists indexed from min_level. */
    expect(&t, "head.class.conv0.weight", "head/_cls_convs/0/kernel", 0);
    expect(&t, "head.class.conv0.bias", "head/_cls_convs/0/bias", 0);
    expect(&t, "head.class.conv2.bn_l3.gamma", "head/_cls_norms/0/2/gamma", 0);
    expect(&t, "head.class.conv3.bn_l7.var", "head/_cls_norms/4/3/moving_variance", 0);
    expect(&t, "head.class.pred.weight", "head/_classifier/kernel", 0);
    expect(&t, "head.class.pred.bias", "head/_classifier/bias", 0);
    expect(&t, "head.box.conv1.weight", "head/_box_convs/1/kernel", 0);
    expect(&t, "head.box.conv0.bn_l5.beta", "head/_box_norms/2/0/beta", 0);
    expect(&t, "head.box.pred.weight", "head/_box_regressor/kernel", 0);
    sn_tf_names_free(&t);

    /* EMA: the "average" slot of the EMA optimizer (the root's "optimizer") on trainables. */
    CHECK_OK(sn_tf_names_make(m, 1, &t));
    check_all(m, &t, 1);
    expect(&t, "stem.weight", LW(0, "kernel"), 1);
    expect(&t, "stem.bn.beta", LW(1, "beta"), 1);
    expect(&t, "stem.bn.mean", LW(1, "moving_mean"), 0);
    expect(&t, "head.class.pred.bias", "head/_classifier/bias", 1);
    expect(&t, "head.box.conv3.bn_l4.var", "head/_box_norms/1/3/moving_variance", 0);
    sn_tf_names_free(&t);
    sn_model_free(m);

    /* Backbone alone: the same backbone keys. */
    m = make("spinenet-49", 0, SN_HEAD_NONE);
    if (m) {
        CHECK_OK(sn_tf_names_make(m, 0, &t));
        check_all(m, &t, 0);
        expect(&t, "endpoints.3.weight", LW(171, "kernel"), 0);
        sn_tf_names_free(&t);
        sn_model_free(m);
    }
}

static void test_p2(void) {
    sn_model *m = make("spinenet-49", 1, SN_HEAD_RETINANET);
    if (!m) return;
    sn_tf_names t;
    CHECK_OK(sn_tf_names_make(m, 0, &t));
    check_all(m, &t, 0);
    const char *lw = "backbone/layer_with_weights-";
    char p[160];
    /* 192 layers with weights, 6 levels: endpoint convs 180..185, BNs 186..191. */
    expect(&t, "endpoints.2.weight", LW(180, "kernel"), 0);
    expect(&t, "endpoints.7.bn.gamma", LW(191, "gamma"), 0);
    expect(&t, "blocks.17.0.conv1.weight", LW(177, "_conv1/kernel"), 0);
    expect(&t, "head.class.conv0.bn_l2.gamma", "head/_cls_norms/0/0/gamma", 0);
    expect(&t, "head.box.conv3.bn_l7.mean", "head/_box_norms/5/3/moving_mean", 0);
    sn_tf_names_free(&t);
    sn_model_free(m);
}

static void test_mobile49(void) {
    sn_model *m = make("spinenet-mobile-49", 0, SN_HEAD_RETINANET);
    if (!m) return;
    sn_tf_names t;
    CHECK_OK(sn_tf_names_make(m, 0, &t));
    check_all(m, &t, 0);
    const char *lw = "backbone/layer_with_weights-";
    char p[160];
    expect(&t, "stem.weight", LW(0, "kernel"), 0);
    expect(&t, "stem.bn.var", LW(1, "moving_variance"), 0);
    expect(&t, "blocks.0.0.expand.weight", LW(2, "_conv0/kernel"), 0);
    expect(&t, "blocks.0.0.expand.bn.gamma", LW(2, "_norm0/gamma"), 0);
    expect(&t, "blocks.0.0.dw.weight", LW(2, "_conv1/depthwise_kernel"), 0);
    expect(&t, "blocks.0.0.dw.bn.mean", LW(2, "_norm1/moving_mean"), 0);
    expect(&t, "blocks.0.0.se_reduce.weight", LW(2, "_squeeze_excitation/_se_reduce/kernel"), 0);
    expect(&t, "blocks.0.0.se_reduce.bias", LW(2, "_squeeze_excitation/_se_reduce/bias"), 0);
    expect(&t, "blocks.0.0.se_expand.weight", LW(2, "_squeeze_excitation/_se_expand/kernel"), 0);
    expect(&t, "blocks.0.0.se_expand.bias", LW(2, "_squeeze_excitation/_se_expand/bias"), 0);
    expect(&t, "blocks.0.0.project.weight", LW(2, "_conv2/kernel"), 0);
    expect(&t, "blocks.0.0.project.bn.beta", LW(2, "_norm2/beta"), 0);
    expect(&t, "blocks.2.resample0.down0.weight", LW(3, "depthwise_kernel"), 0);
    expect(&t, "blocks.1.0.expand.weight", LW(4, "_conv0/kernel"), 0);
    expect(&t, "blocks.2.0.se_expand.bias", LW(10, "_squeeze_excitation/_se_expand/bias"), 0);
    expect(&t, "blocks.3.0.dw.weight", LW(28, "_conv1/depthwise_kernel"), 0);
    expect(&t, "blocks.16.resample0.down2.weight", LW(117, "depthwise_kernel"), 0);
    expect(&t, "blocks.16.resample1.project.weight", LW(128, "kernel"), 0);
    expect(&t, "blocks.14.0.project.weight", LW(135, "_conv2/kernel"), 0);
    expect(&t, "endpoints.3.weight", LW(138, "kernel"), 0);
    expect(&t, "endpoints.7.bn.gamma", LW(147, "gamma"), 0);
    /* Separable head layers: SeparableConv2D depthwise_kernel, pointwise_kernel, bias. */
    expect(&t, "head.class.conv0.dw.weight", "head/_cls_convs/0/depthwise_kernel", 0);
    expect(&t, "head.class.conv0.weight", "head/_cls_convs/0/pointwise_kernel", 0);
    expect(&t, "head.class.conv0.bias", "head/_cls_convs/0/bias", 0);
    expect(&t, "head.class.conv1.bn_l6.gamma", "head/_cls_norms/3/1/gamma", 0);
    expect(&t, "head.class.pred.dw.weight", "head/_classifier/depthwise_kernel", 0);
    expect(&t, "head.box.pred.weight", "head/_box_regressor/pointwise_kernel", 0);
    sn_tf_names_free(&t);
    CHECK_OK(sn_tf_names_make(m, 1, &t));
    check_all(m, &t, 1);
    expect(&t, "blocks.0.0.se_reduce.bias", LW(2, "_squeeze_excitation/_se_reduce/bias"), 1);
    expect(&t, "blocks.0.0.dw.bn.var", LW(2, "_norm1/moving_variance"), 0);
    sn_tf_names_free(&t);
    sn_model_free(m);
}

/* Write a block-spec file; returns 0 with its path in `path`. */
static int write_spec(char *path, size_t cap, const char *text) {
    snprintf(path, cap, "/tmp/sn_tfg_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    size_t n = strlen(text);
    int ok = write(fd, text, n) == (ssize_t)n;
    close(fd);
    return ok ? 0 : -1;
}

static void test_refusals(void) {
    sn_tf_names t;
    /* Classifier: no Garden SpineNet classification model. */
    sn_model *m = make("spinenet-49", 0, SN_HEAD_CLASSIFIER);
    if (m) {
        t.n = 7;
        sn_status st = sn_tf_names_make(m, 0, &t);
        CHECK(st == SN_ERR_UNSUPPORTED, "classifier: %s", sn_status_name(st));
        CHECK(strstr(sn_last_error(), "classification") != NULL, "message: %s", sn_last_error());
        CHECK(t.n == 0 && t.v == NULL, "out zeroed on failure");
        sn_model_free(m);
    }
    /* A block-spec file: the Garden's own table is fine, any other is refused. Read from a
     * file, the level-2 row is an ordinary row that this project builds (it feeds nothing when
     * min_level is 3) while the Garden leaves it out of its model: the Garden's table without
     * that row names as the built-in table; with it, the row's parameters have no Garden
     * variable. */
    static const char *rows[16] = {
        "2 bottleneck 0 1 no",   "4 residual 0 1 no",     "3 bottleneck 2 3 no",
        "4 bottleneck 2 4 no",   "6 residual 3 5 no",     "4 bottleneck 3 5 no",
        "5 residual 6 7 no",     "7 residual 6 8 no",     "5 bottleneck 8 9 no",
        "5 bottleneck 8 10 no",  "4 bottleneck 5 10 yes", "3 bottleneck 4 10 yes",
        "5 bottleneck 7 12 yes", "7 bottleneck 5 14 yes", "6 bottleneck 12 14 yes",
        "2 bottleneck 2 13 yes"};
    sn_model *ref = make("spinenet-49", 0, SN_HEAD_RETINANET);
    for (int variant = 0; variant < 3 && ref; variant++) {
        char text[2048] = "", path[64];
        for (int i = 0; i < (variant == 0 ? 15 : 16); i++) {
            strcat(text, rows[i]);
            strcat(text, "\n");
        }
        if (variant == 2) {
            char *r5 = strstr(text, "4 bottleneck 3 5 no");
            if (r5) memcpy(r5, "4 bottleneck 2 5 no", 19); /* row 5 now reads feature 2 */
        }
        if (write_spec(path, sizeof path, text) != 0) {
            CHECK(0, "cannot write a block-spec file");
            break;
        }
        sn_config c;
        sn_config_init(&c, "spinenet-49");
        snprintf(c.block_spec_path, sizeof c.block_spec_path, "%s", path);
        m = NULL;
        CHECK_OK(sn_model_create_uninit(&c, &m));
        unlink(path);
        if (!m) continue;
        sn_status st = sn_tf_names_make(m, 0, &t);
        if (variant == 0) {
            CHECK(st == SN_OK, "the Garden's table from a file: %s", sn_last_error());
            sn_tf_names r;
            if (st == SN_OK && sn_tf_names_make(ref, 0, &r) == SN_OK) {
                int same = r.n == t.n;
                for (int i = 0; same && i < t.n; i++)
                    same = strcmp(r.v[i].tf, t.v[i].tf) == 0;
                CHECK(same, "a file with the Garden's table names as the built-in table");
                sn_tf_names_free(&r);
            }
            sn_tf_names_free(&t);
        } else {
            CHECK(st == SN_ERR_UNSUPPORTED, "table variant %d: %s", variant, sn_status_name(st));
            CHECK(strstr(sn_last_error(), variant == 1 ? "blocks.17." : "block-spec") != NULL,
                  "message: %s", sn_last_error());
        }
        sn_model_free(m);
    }
    sn_model_free(ref);
    /* A tpu-flavour model through the garden scheme directly. */
    sn_config c;
    sn_config_init(&c, "spinenet-49");
    c.flavour = SN_FLAVOUR_TPU;
    m = NULL;
    if (sn_model_create_uninit(&c, &m) == SN_OK) {
        CHECK(sn_tf_names_garden(m, 0, &t) == SN_ERR_UNSUPPORTED, "tpu model in garden scheme");
        sn_model_free(m);
    }
    CHECK(sn_tf_names_make(NULL, 0, &t) == SN_ERR_INVALID_ARG, "NULL model");
}

int main(void) {
    test_spinenet49();
    test_p2();
    test_mobile49();
    test_refusals();
    return TEST_SUMMARY();
}
