/* The model API: published parameter and MAC counts (the SpineNet paper's), folded == unfolded
 * batch-norm, save/load round trips, block-spec files, and clear errors on bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "model.h"
#include "safetensors.h"
#include "spinenet.h"
#include "test.h"

static char g_dir[256];

static void path_in(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", g_dir, name); }

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* ------------------------------------------------------------ published numbers */

typedef struct {
    const char *model;
    const char *flavour;
    sn_head head;
    int classes, size;
    double params_m, gmacs; /* published */
    double macs_tol;        /* relative tolerance on MACs */
} published;

static void test_published_counts(void) {
    static const published k[] = {
        {"spinenet-49", "garden", SN_HEAD_RETINANET, 91, 640, 28.5, 85.4, 0.005},
        {"spinenet-96", "garden", SN_HEAD_RETINANET, 91, 1024, 43.0, 265.4, 0.005},
        {"spinenet-143", "garden", SN_HEAD_RETINANET, 91, 1280, 67.0, 524.0, 0.005},
        {"spinenet-190", "garden", SN_HEAD_RETINANET, 91, 1280, 163.6, 1885.0, 0.005},
        {"spinenet-49", "tpu", SN_HEAD_CLASSIFIER, 1001, 224, 22.1, 3.5, 0.005},
        {"spinenet-96", "tpu", SN_HEAD_CLASSIFIER, 1001, 224, 36.5, 5.7, 0.005},
        {"spinenet-143", "tpu", SN_HEAD_CLASSIFIER, 1001, 224, 60.5, 9.1, 0.005},
        {"spinenet-190", "tpu", SN_HEAD_CLASSIFIER, 1001, 224, 127.1, 19.1, 0.005},
        /* Published as "1.0 B": two significant digits, so +-5% is the precision printed. */
        {"spinenet-mobile-49", "garden", SN_HEAD_RETINANET, 91, 384, 2.34, 1.0, 0.05},
    };
    for (unsigned i = 0; i < sizeof k / sizeof *k; i++) {
        sn_config c;
        CHECK_OK(sn_config_init(&c, k[i].model));
        CHECK_OK(sn_parse_flavour(k[i].flavour, &c.flavour));
        c.head = k[i].head;
        c.num_classes = k[i].classes;
        int n_rows;
        int64_t p, m;
        CHECK_OK(sn_config_info(&c, k[i].size, k[i].size, NULL, 0, &n_rows, &p, &m));
        double pm = (double)p / 1e6, gm = (double)m / 1e9;
        printf("%-20s %-10s %5d: %.3f M params (published %.1f), %.2f G MACs (published %.1f)\n",
               k[i].model, sn_head_name(k[i].head), k[i].size, pm, k[i].params_m, gm, k[i].gmacs);
        CHECK(fabs(pm - k[i].params_m) <= 0.005 * k[i].params_m, "%s params %.3f M vs %.2f",
              k[i].model, pm, k[i].params_m);
        /* 0.5%, or half a unit of the last printed digit where that is coarser (3.5 G). */
        double tol = k[i].macs_tol * k[i].gmacs;
        if (tol < 0.05) tol = 0.05;
        CHECK(fabs(gm - k[i].gmacs) <= tol, "%s MACs %.3f G vs %.1f", k[i].model, gm, k[i].gmacs);
    }
    /* The parameter breakdown of SpineNet-49 RetinaNet at 640 (stem, head, endpoints, rest). */
    sn_config c;
    CHECK_OK(sn_config_init(&c, "spinenet-49"));
    sn_block_info rows[64];
    int n_rows;
    int64_t p, m;
    CHECK_OK(sn_config_info(&c, 640, 640, rows, 64, &n_rows, &p, &m));
    int64_t stem = 0, head = 0, endp = 0;
    for (int i = 0; i < n_rows; i++) {
        if (rows[i].index == -1) stem = rows[i].params;
        if (rows[i].index == -2) head = rows[i].params;
        if (rows[i].index == -3) endp = rows[i].params;
    }
    CHECK(stem == 9536, "stem params %lld (want 9 536)", (long long)stem);
    CHECK(head == 6711895, "head params %lld (want 6 711 895)", (long long)head);
    CHECK(endp == 1182208, "endpoint params %lld (want 1 182 208)", (long long)endp);
    CHECK(p - head == 21831488, "backbone params %lld (want 21 831 488)", (long long)(p - head));
}

/* ------------------------------------------------------------ folding */

static void fill_random_bn(sn_model *m) {
    /* Non-trivial batch-norm statistics so that folding has something to fold. */
    for (int i = 0; i < sn_model_num_params(m); i++) {
        sn_param p;
        sn_model_param_at(m, i, &p);
        size_t len = strlen(p.name);
        if (len > 4 && strcmp(p.name + len - 4, ".var") == 0)
            sn_hash_fill(p.data, p.count, p.name, 7, 0.5, 1.5);
        else if (len > 5 && strcmp(p.name + len - 5, ".mean") == 0)
            sn_hash_fill(p.data, p.count, p.name, 7, -0.1, 0.1);
        else if (len > 6 && strcmp(p.name + len - 6, ".gamma") == 0)
            sn_hash_fill(p.data, p.count, p.name, 7, 0.8, 1.2);
        else if (len > 5 && strcmp(p.name + len - 5, ".beta") == 0)
            sn_hash_fill(p.data, p.count, p.name, 7, -0.1, 0.1);
    }
}

static void test_fold(const char *model, sn_head head) {
    sn_config c;
    CHECK_OK(sn_config_init(&c, model));
    c.head = head;
    c.num_classes = 5;
    sn_model *m = NULL;
    CHECK_OK(sn_model_create(&c, 3, &m));
    if (!m) return;
    fill_random_bn(m);
    size_t count = 2 * 128 * 128 * 3;
    float *x = malloc(count * sizeof *x);
    sn_hash_fill(x, count, "input", 1, -1, 1);
    int n_out = 0;
    float *ref[16] = {0};
    size_t cnt[16] = {0};
    for (int fold = 0; fold < 2; fold++) {
        CHECK_OK(sn_model_set_fold_bn(m, fold));
        CHECK_OK(sn_model_set_threads(m, 2));
        CHECK_OK(sn_model_plan(m, 2, 128, 128));
        CHECK_OK(sn_model_run(m, x));
        n_out = sn_model_num_outputs(m);
        for (int i = 0; i < n_out && i < 16; i++) {
            sn_output o;
            CHECK_OK(sn_model_output_at(m, i, &o));
            size_t k = (size_t)o.n * o.h * o.w * o.c;
            if (!fold) {
                ref[i] = malloc(k * sizeof(float));
                memcpy(ref[i], o.data, k * sizeof(float));
                cnt[i] = k;
            } else {
                double amax = 0;
                for (size_t j = 0; j < k; j++)
                    if (fabs(ref[i][j]) > amax) amax = fabs(ref[i][j]);
                double err = t_max_abs_diff(o.data, ref[i], k);
                CHECK(k == cnt[i] && err <= 1e-4 * (amax > 1 ? amax : 1),
                      "%s %s: folded vs unfolded %s err %.3g (max %.3g)", model,
                      sn_head_name(head), o.name, err, amax);
            }
        }
    }
    for (int i = 0; i < 16; i++) free(ref[i]);
    free(x);
    sn_model_free(m);
}

/* Per-layer profile: one entry per layer, every layer timed, the convolutions' and dense
 * layers' multiply-adds summing to the model's, counters reset by re-planning. */
static void test_profile(void) {
    sn_config c;
    CHECK_OK(sn_config_init(&c, "spinenet-49s"));
    sn_model *m = NULL;
    CHECK_OK(sn_model_create(&c, 1, &m));
    if (!m) return;
    CHECK(sn_model_profile(m, NULL, 0) == 0, "profile before plan");
    int rows;
    int64_t params, macs;
    CHECK_OK(sn_model_info(m, 128, 128, NULL, 0, &rows, &params, &macs));
    CHECK_OK(sn_model_plan(m, 1, 128, 128));
    CHECK(sn_model_profile(m, NULL, 0) == 0, "profile while off");
    CHECK_OK(sn_model_set_profile(m, 1));
    float *x = calloc((size_t)128 * 128 * 3, sizeof *x);
    for (int r = 0; r < 2; r++) CHECK_OK(sn_model_run(m, x));
    const int n = sn_model_profile(m, NULL, 0);
    CHECK(n > 100, "%d profiled layers", n);
    sn_layer_profile *lp = calloc((size_t)(n > 0 ? n : 1), sizeof *lp);
    CHECK(sn_model_profile(m, lp, n) == n, "profile count");
    int64_t sum = 0;
    int timed = 0, convs = 0;
    for (int i = 0; i < n; i++) {
        sum += lp[i].macs;
        timed += lp[i].runs == 2 && lp[i].seconds >= 0.0;
        if (strcmp(lp[i].op, "conv") == 0) convs += lp[i].kh > 0 && lp[i].out_c > 0;
    }
    CHECK(sum == macs, "profiled MACs %lld vs model %lld", (long long)sum, (long long)macs);
    CHECK(timed == n, "%d of %d layers timed over 2 runs", timed, n);
    CHECK(convs > 50, "%d convolutions described", convs);
    /* Folded BN: the bottlenecks' last 1x1 convolution takes its block's add. */
    int fused = 0;
    for (int i = 0; i < n; i++) fused += lp[i].fused && strcmp(lp[i].op, "add") == 0;
    CHECK(fused >= 10, "%d adds fused into convolutions", fused);
    CHECK_OK(sn_model_plan(m, 1, 128, 128));
    CHECK(sn_model_profile(m, lp, 1) == n && lp[0].runs == 0 && lp[0].seconds == 0.0,
          "re-plan resets the counters");
    /* Unfolded BN runs after the convolution: nothing is fused then. */
    CHECK_OK(sn_model_set_fold_bn(m, 0));
    CHECK_OK(sn_model_plan(m, 1, 128, 128));
    CHECK(sn_model_profile(m, lp, n) == n, "profile count unfolded");
    fused = 0;
    for (int i = 0; i < n; i++) fused += lp[i].fused;
    CHECK(fused == 0, "%d layers fused without folding", fused);
    free(lp);
    free(x);
    sn_model_free(m);
}

/* ------------------------------------------------------------ files */

static void test_save_load(void) {
    char path[512];
    path_in(path, sizeof path, "m49xs.safetensors");
    sn_config c;
    CHECK_OK(sn_config_init(&c, "spinenet-mobile-49xs"));
    c.num_classes = 7;
    c.flavour = SN_FLAVOUR_TPU;
    sn_model *a = NULL, *b = NULL;
    CHECK_OK(sn_model_create(&c, 42, &a));
    static const char *const names[7] = {"cat", "dog", "ankle boot", "d", "e", "f", "g"};
    CHECK(sn_model_set_class_names(a, names, 6) == SN_ERR_SHAPE, "6 names for 7 classes refused");
    CHECK_OK(sn_model_set_class_names(a, names, 7));
    CHECK_OK(sn_model_save(a, path));
    CHECK_OK(sn_model_load(path, &b));
    CHECK(b && sn_model_class_name(b, 2) && strcmp(sn_model_class_name(b, 2), "ankle boot") == 0,
          "class names round trip");
    CHECK(b && sn_model_class_name(b, 7) == NULL, "class name out of range");
    if (!a || !b) {
        sn_model_free(a);
        sn_model_free(b);
        return;
    }
    const sn_config *cb = sn_model_config(b);
    CHECK(strcmp(cb->model, "spinenet-mobile-49xs") == 0 && cb->num_classes == 7 &&
              cb->flavour == SN_FLAVOUR_TPU && cb->activation == sn_model_config(a)->activation,
          "config round trip");
    CHECK(sn_model_num_params(a) == sn_model_num_params(b), "param count");
    int same = 1;
    for (int i = 0; i < sn_model_num_params(a); i++) {
        sn_param pa, pb;
        sn_model_param_at(a, i, &pa);
        if (sn_model_param(b, pa.name, &pb) != SN_OK || pa.count != pb.count ||
            memcmp(pa.data, pb.data, pa.count * sizeof(float)) != 0)
            same = 0;
    }
    CHECK(same, "weights round trip bit-exactly");
    /* Initialisation (docs/architecture.md): BN gamma 1, class bias -log(99), seeded and
     * reproducible. */
    sn_param p;
    CHECK_OK(sn_model_param(a, "head.class.pred.bias", &p));
    CHECK(fabs(p.data[0] + 4.59512) < 1e-4, "class bias init %f", p.data[0]);
    CHECK_OK(sn_model_param(a, "endpoints.3.bn.gamma", &p));
    CHECK(p.data[0] == 1.0f, "gamma init %f", p.data[0]);
    sn_model *a2 = NULL;
    CHECK_OK(sn_model_create(&c, 42, &a2));
    sn_param q;
    CHECK_OK(sn_model_param(a, "blocks.5.0.expand.weight", &p));
    CHECK_OK(sn_model_param(a2, "blocks.5.0.expand.weight", &q));
    CHECK(memcmp(p.data, q.data, p.count * 4) == 0, "same seed, same weights");
    double ss = 0;
    for (size_t i = 0; i < p.count; i++) ss += (double)p.data[i] * p.data[i];
    double sd = sqrt(ss / (double)p.count), want = sqrt(1.0 / (double)p.shape[2]);
    CHECK(fabs(sd - want) < 0.1 * want, "variance scaling std %.4f, want ~%.4f", sd, want);
    sn_model_free(a2);
    sn_model_free(a);
    sn_model_free(b);
}

static void expect_load_error(const char *path, sn_status want, const char *needle) {
    sn_model *m = NULL;
    sn_status st = sn_model_load(path, &m);
    CHECK(st == want, "load %s: got %s (%s), want %s", path, sn_status_name(st), sn_last_error(),
          sn_status_name(want));
    CHECK(m == NULL, "no model on error");
    CHECK(strstr(sn_last_error(), needle) != NULL, "message '%s' lacks '%s'", sn_last_error(), needle);
    sn_model_free(m);
}

static void test_bad_weights(void) {
    char good[512], bad[512];
    path_in(good, sizeof good, "good.safetensors");
    sn_config c;
    CHECK_OK(sn_config_init(&c, "spinenet-mobile-49xs"));
    c.head = SN_HEAD_CLASSIFIER;
    c.num_classes = 3;
    sn_model *m = NULL;
    CHECK_OK(sn_model_create(&c, 1, &m));
    CHECK_OK(sn_model_save(m, good));
    sn_model_free(m);

    /* Truncated at several points. */
    FILE *f = fopen(good, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)size);
    CHECK(fread(buf, 1, (size_t)size, f) == (size_t)size, "read back");
    fclose(f);
    long cuts[] = {4, 100, size / 2, size - 1};
    path_in(bad, sizeof bad, "bad.safetensors");
    for (int i = 0; i < 4; i++) {
        f = fopen(bad, "wb");
        fwrite(buf, 1, (size_t)cuts[i], f);
        fclose(f);
        sn_model *x = NULL;
        sn_status st = sn_model_load(bad, &x);
        CHECK(st == SN_ERR_FORMAT && strstr(sn_last_error(), bad), "truncated at %ld: %s (%s)",
              cuts[i], sn_status_name(st), sn_last_error());
        sn_model_free(x);
    }
    /* Corrupt header byte. */
    memcpy(buf + 8, "{{{{", 4);
    f = fopen(bad, "wb");
    fwrite(buf, 1, (size_t)size, f);
    fclose(f);
    expect_load_error(bad, SN_ERR_FORMAT, bad);
    free(buf);

    /* A missing tensor, a misshaped tensor, an unknown variant, a foreign file: rewrite the good
     * file through the safetensors layer with one thing changed. */
    sn_st_file g;
    CHECK_OK(sn_st_read(good, &g));
    sn_st_file h = g;
    h.tensors = malloc((size_t)g.n_tensors * sizeof *h.tensors);
    memcpy(h.tensors, g.tensors, (size_t)g.n_tensors * sizeof *h.tensors);
    h.n_tensors = g.n_tensors - 1; /* drops the last one */
    CHECK_OK(sn_st_write(bad, &h));
    expect_load_error(bad, SN_ERR_NOT_FOUND, "is missing");

    memcpy(h.tensors, g.tensors, (size_t)g.n_tensors * sizeof *h.tensors);
    h.n_tensors = g.n_tensors;
    int wi = -1;
    for (int i = 0; i < h.n_tensors; i++)
        if (strcmp(h.tensors[i].name, "head.fc.weight") == 0) wi = i;
    CHECK(wi >= 0, "head.fc.weight present");
    if (wi >= 0) {
        h.tensors[wi].shape[1] = 1;
        h.tensors[wi].count /= 3;
        CHECK_OK(sn_st_write(bad, &h));
        expect_load_error(bad, SN_ERR_SHAPE, "head.fc.weight");
        h.tensors[wi] = g.tensors[wi];
    }
    for (int i = 0; i < h.n_meta; i++)
        if (strcmp(h.meta_keys[i], "model") == 0) {
            char *old = h.meta_vals[i];
            h.meta_vals[i] = "spinenet-77";
            CHECK_OK(sn_st_write(bad, &h));
            expect_load_error(bad, SN_ERR_NOT_FOUND, "spinenet-77");
            h.meta_vals[i] = old;
        }
    h.n_meta = 0;
    CHECK_OK(sn_st_write(bad, &h));
    expect_load_error(bad, SN_ERR_FORMAT, "not a spinenet weight file");
    free(h.tensors);
    sn_st_free(&g);
    expect_load_error("/nonexistent/weights.safetensors", SN_ERR_IO, "/nonexistent/weights.safetensors");
    unlink(bad);
    unlink(good);
}

/* ------------------------------------------------------------ configs and block specs */

static void test_bad_configs(void) {
    sn_config c;
    CHECK(sn_config_init(&c, "spinenet-77") == SN_ERR_NOT_FOUND, "unknown variant");
    CHECK(strstr(sn_last_error(), "spinenet-77") && strstr(sn_last_error(), "spinenet-49s"),
          "message names the variant and the known ones: %s", sn_last_error());
    sn_flavour fl;
    CHECK(sn_parse_flavour("keras", &fl) == SN_ERR_INVALID_ARG, "unknown flavour");

    /* garden needs multiples of 128; tpu serves 224. */
    CHECK_OK(sn_config_init(&c, "spinenet-49s"));
    c.num_classes = 3;
    sn_model *m = NULL;
    CHECK_OK(sn_model_create(&c, 1, &m));
    sn_status st = sn_model_plan(m, 1, 200, 200);
    CHECK(st == SN_ERR_UNSUPPORTED && strstr(sn_last_error(), "divisible by 128"),
          "garden 200x200: %s %s", sn_status_name(st), sn_last_error());
    float x[3] = {0};
    CHECK(sn_model_run(m, x) == SN_ERR_STATE, "run before a successful plan");
    sn_model_free(m);
    c.flavour = SN_FLAVOUR_TPU;
    int n_rows;
    int64_t p, mm;
    CHECK_OK(sn_config_info(&c, 224, 224, NULL, 0, &n_rows, &p, &mm));
    CHECK(sn_config_info(&c, 16, 16, NULL, 0, &n_rows, &p, &mm) == SN_ERR_UNSUPPORTED,
          "tiny input refused: %s", sn_last_error());
    c.min_level = 5;
    c.max_level = 4;
    CHECK(sn_config_info(&c, 256, 256, NULL, 0, &n_rows, &p, &mm) == SN_ERR_INVALID_ARG,
          "bad levels refused");
}

static void test_block_spec_files(void) {
    char path[512];
    path_in(path, sizeof path, "spec.txt");
    /* The built-in SpineNet table written as a file builds the same model. */
    write_text(path,
               "# level type parent0 parent1 output\n"
               "2 bottleneck 0 1 no\n4 residual 0 1 no\n3 bottleneck 2 3 no\n"
               "4 bottleneck 2 4 no\n6 residual 3 5 no\n4 bottleneck 3 5 no\n"
               "5 residual 6 7 no\n7 residual 6 8 no\n5 bottleneck 8 9 no\n"
               "5 bottleneck 8 10 no\n4 bottleneck 5 10 yes\n3 bottleneck 4 10 yes\n"
               "5 bottleneck 7 12 yes  # P5\n7 bottleneck 5 14 yes\n6 bottleneck 12 14 yes\n");
    sn_config c;
    CHECK_OK(sn_config_init(&c, "spinenet-49"));
    int n_rows;
    int64_t p0, m0, p1, m1;
    CHECK_OK(sn_config_info(&c, 640, 640, NULL, 0, &n_rows, &p0, &m0));
    snprintf(c.block_spec_path, sizeof c.block_spec_path, "%s", path);
    CHECK_OK(sn_config_info(&c, 640, 640, NULL, 0, &n_rows, &p1, &m1));
    CHECK(p0 == p1 && m0 == m1, "table from file: %lld/%lld vs %lld/%lld", (long long)p1,
          (long long)m1, (long long)p0, (long long)m0);
    /* It travels inside the weight file. */
    char wpath[512];
    path_in(wpath, sizeof wpath, "spec.safetensors");
    c.num_classes = 2;
    c.head = SN_HEAD_NONE;
    sn_model *m = NULL, *l = NULL;
    CHECK_OK(sn_model_create(&c, 1, &m));
    CHECK_OK(sn_model_save(m, wpath));
    unlink(path);
    CHECK_OK(sn_model_load(wpath, &l));
    sn_model_free(m);
    sn_model_free(l);
    unlink(wpath);

    static const struct {
        const char *text, *needle;
    } bad[] = {
        {"2 bottleneck 0 1\n", ":1: expected"},
        {"2 bottleneck 0 1 no\n9 residual 0 1 no\n", ":2: level 9"},
        {"2 bottleneck 0 5 no\n", "parents (0, 5)"},
        {"2 squeeze 0 1 no\n", "unknown block type"},
        {"2 bottleneck 0 1 maybe\n", "yes or no"},
        {"2 bottleneck 0 1 no\n2 mbconv 0 1 no\n", "cannot be mixed"},
        {"3 bottleneck 0 1 yes\n3 bottleneck 0 2 yes\n", "second output row for level 3"},
        {"# nothing\n", "no block rows"},
        {"2 bottleneck 0 1 no\n4 bottleneck 0 1 yes\n", "no output block for level 3"},
        {"2 mbconv 0 1 no\n", "do not fit"},
    };
    for (unsigned i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(path, bad[i].text);
        CHECK_OK(sn_config_init(&c, "spinenet-49"));
        snprintf(c.block_spec_path, sizeof c.block_spec_path, "%s", path);
        sn_status st = sn_config_info(&c, 256, 256, NULL, 0, &n_rows, &p1, &m1);
        CHECK(st == SN_ERR_FORMAT && strstr(sn_last_error(), bad[i].needle),
              "bad spec %u: %s '%s' (want '%s')", i, sn_status_name(st), sn_last_error(),
              bad[i].needle);
    }
    unlink(path);
    snprintf(c.block_spec_path, sizeof c.block_spec_path, "%s/missing.txt", g_dir);
    CHECK(sn_config_info(&c, 256, 256, NULL, 0, &n_rows, &p1, &m1) == SN_ERR_IO &&
              strstr(sn_last_error(), "missing.txt"),
          "missing spec file: %s", sn_last_error());
}

/* Every allocation failing in turn is reported, and nothing leaks (checked under ASan). */
static void test_oom(void) {
    sn_config c;
    CHECK_OK(sn_config_init(&c, "spinenet-mobile-49xs"));
    c.num_classes = 3;
    int failures = 0;
    for (long k = 1; k < 100000; k++) {
        sn_model *m = NULL;
        sn_alloc_fail_after(k);
        /* The initialisation allocates nothing: without it the allocation points are the
         * same and the sweep runs 1.7x faster under ASan. */
        sn_status st = sn_model_create_uninit(&c, &m);
        if (st == SN_OK) st = sn_model_plan(m, 1, 128, 128);
        sn_alloc_fail_after(0);
        sn_model_free(m);
        if (st == SN_OK) break;
        if (st != SN_ERR_OOM) {
            CHECK(0, "injected failure %ld gave %s: %s", k, sn_status_name(st), sn_last_error());
            break;
        }
        failures++;
    }
    CHECK(failures > 100, "only %d allocation points", failures);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/sn_test_model_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    test_published_counts();
    test_bad_configs();
    test_block_spec_files();
    test_save_load();
    test_bad_weights();
    /* SN_QUICK=1 (the sanitizer run) folds the smaller models only; the golden tests also
     * compare SpineNet-49S folded and unfolded there. */
    const char *q = getenv("SN_QUICK");
    int quick = q && q[0] == '1';
    if (!quick) test_fold("spinenet-49s", SN_HEAD_RETINANET);
    test_fold("spinenet-mobile-49", SN_HEAD_RETINANET);
    test_fold(quick ? "spinenet-mobile-49xs" : "spinenet-49s", SN_HEAD_CLASSIFIER);
    test_profile();
    test_oom();
    rmdir(g_dir);
    return TEST_SUMMARY();
}
