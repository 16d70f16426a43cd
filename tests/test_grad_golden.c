/* Whole-network gradients against PyTorch autograd (tests/golden/gen_grad_golden.py): training-
 * mode batch-norm, label-smoothed cross-entropy, the loss, the logits, the moving statistics and
 * every parameter's gradient (4 random projections, the norm and 16 sampled elements), with the
 * rule of tests/golden/README.md "Gradient goldens". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "model.h"
#include "model_train.h"
#include "safetensors.h"
#include "golden_fill.h"
#include "golden_st.h"
#include "spinenet.h"
#include "test.h"

#define SEED 1234

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void run_case(const char *dir, const char *file) {
    sn_st_file g;
    sn_config cfg;
    if (!t_golden_open(dir, file, &g, &cfg)) return;
    cfg.head = SN_HEAD_CLASSIFIER;
    cfg.num_classes = atoi(sn_st_meta(&g, "num_classes"));
    cfg.bn_momentum = (float)atof(sn_st_meta(&g, "bn_momentum"));
    cfg.bn_eps = (float)atof(sn_st_meta(&g, "bn_eps"));
    int n = atoi(sn_st_meta(&g, "batch")), h = atoi(sn_st_meta(&g, "height")),
        w = atoi(sn_st_meta(&g, "width"));
    float smoothing = (float)atof(sn_st_meta(&g, "label_smoothing"));
    int32_t labels[64];
    const char *lp = sn_st_meta(&g, "labels");
    for (int i = 0; i < n && i < 64; i++) {
        labels[i] = (int32_t)strtol(lp, (char **)&lp, 10);
        if (*lp == ',') lp++;
    }
    sn_model *m = NULL;
    float *x = NULL, **grads = NULL;
    int np = 0;
    sn_status st = sn_model_create_uninit(&cfg, &m);
    CHECK(st == SN_OK, "%s: %s", file, sn_last_error());
    if (st != SN_OK) goto out;
    golden_fill_params(m, SEED);
    np = sn_model_num_params(m);
    grads = calloc((size_t)np, sizeof *grads);
    for (int i = 0; i < np; i++) {
        sn_param p;
        sn_model_param_at(m, i, &p);
        grads[i] = calloc(p.count, sizeof(float));
    }
    size_t count = (size_t)n * h * w * 3;
    x = malloc(count * sizeof *x);
    sn_hash_fill(x, count, "input", SEED, -1.0, 1.0);
    CHECK_OK(sn_model_set_threads(m, 2));
    CHECK_OK(sn_model_plan_train(m, n, h, w));
    double loss = NAN;
    st = sn_model_loss_grad(m, x, labels, smoothing, 0, &loss, grads);
    CHECK(st == SN_OK, "%s: %s", file, sn_last_error());
    if (st != SN_OK) goto out;

    const sn_st_tensor *t = sn_st_find(&g, "loss");
    CHECK(t && fabs(loss - t->data[0]) <= 1e-3, "%s: loss %.7f, reference %.7f", file, loss,
          t ? t->data[0] : NAN);
    sn_output o;
    CHECK_OK(sn_model_output(m, "logits", &o));
    t = sn_st_find(&g, "logits");
    if (t && t->count == (size_t)o.n * o.c) {
        double amax = 0;
        for (size_t i = 0; i < t->count; i++) amax = fmax(amax, fabs(t->data[i]));
        double err = t_max_abs_diff(o.data, t->data, t->count);
        CHECK(err <= 1e-2 * fmax(1, amax), "%s: logits err %.3g", file, err);
    }
    /* G: the median reference gradient norm, the floor of the per-tensor scale. */
    double *norms = calloc((size_t)np, sizeof *norms);
    int nn = 0;
    for (int i = 0; i < np; i++) {
        sn_param p;
        sn_model_param_at(m, i, &p);
        char key[256];
        snprintf(key, sizeof key, "gradnorm.%s", p.name);
        if ((t = sn_st_find(&g, key))) norms[nn++] = t->data[0];
    }
    qsort(norms, (size_t)nn, sizeof *norms, cmp_double);
    double G = nn ? norms[nn / 2] : 0;
    free(norms);
    int compared = 0, bad = 0, running = 0;
    double worst = 0;
    for (int i = 0; i < np; i++) {
        sn_param p;
        sn_model_param_at(m, i, &p);
        char key[256];
        if (gf_ends_with(p.name, ".mean") || gf_ends_with(p.name, ".var")) {
            snprintf(key, sizeof key, "running.%s", p.name);
            t = sn_st_find(&g, key);
            CHECK(t && t->count == p.count, "%s: %s missing", file, key);
            if (!t || t->count != p.count) continue;
            for (size_t k = 0; k < p.count; k++)
                if (fabs(p.data[k] - t->data[k]) > 0.2 * fmax(fabs(t->data[k]), 1e-3)) {
                    bad++;
                    fprintf(stderr, "%s: %s[%zu] %g vs %g\n", file, key, k, p.data[k], t->data[k]);
                    break;
                }
            running++;
            continue;
        }
        snprintf(key, sizeof key, "gradnorm.%s", p.name);
        const sn_st_tensor *tn = sn_st_find(&g, key);
        snprintf(key, sizeof key, "gradproj.%s", p.name);
        const sn_st_tensor *tp = sn_st_find(&g, key);
        snprintf(key, sizeof key, "gradsample.%s", p.name);
        const sn_st_tensor *ts = sn_st_find(&g, key);
        CHECK(tn && tp && ts, "%s: no reference gradient for %s", file, p.name);
        if (!tn || !tp || !ts) continue;
        double S = fmax(tn->data[0], 1e-3 * G), e = 0;
        const float *gc = grads[i];
        double norm = 0;
        for (size_t k = 0; k < p.count; k++) norm += (double)gc[k] * gc[k];
        e = fmax(e, fabs(sqrt(norm) - tn->data[0]) / S);
        float *r = malloc(p.count * sizeof *r);
        for (int k = 0; k < (int)tp->count; k++) {
            char rn[300];
            snprintf(rn, sizeof rn, "proj%d:%s", k, p.name);
            sn_hash_fill(r, p.count, rn, SEED, -1.0, 1.0);
            double dot = 0, rr = 0;
            for (size_t j = 0; j < p.count; j++) {
                dot += (double)gc[j] * r[j];
                rr += (double)r[j] * r[j];
            }
            e = fmax(e, fabs(dot - tp->data[k]) / (S * sqrt(rr)));
        }
        free(r);
        for (int k = 0; k < (int)ts->count; k++) {
            size_t idx = (size_t)(((uint64_t)k * 2654435761ULL) % p.count);
            e = fmax(e, fabs(gc[idx] - ts->data[k]) / S);
        }
        if (e > worst) worst = e;
        if (e > 0.1) {
            bad++;
            fprintf(stderr, "%s: %s error %.3f of its scale (|g| ref %.3g, C %.3g)\n", file,
                    p.name, e, tn->data[0], sqrt(norm));
        }
        compared++;
    }
    printf("%-62s loss %.6f (ref %.6f), %d gradients (worst %.4f of scale), %d moving stats\n",
           file, loss, sn_st_find(&g, "loss")->data[0], compared, worst, running);
    CHECK(compared > 100, "%s: only %d gradients compared", file, compared);
    CHECK(bad == 0, "%s: %d tensors off", file, bad);
out:
    for (int i = 0; grads && i < np; i++) free(grads[i]);
    free(grads);
    free(x);
    sn_model_free(m);
    sn_st_free(&g);
}

/* SN_QUICK=1 (the sanitizer run) checks Mobile-49XS only; the Release run checks all. */
static int g_quick;

static int skip_case(const char *name) { return g_quick && !strstr(name, "mobile"); }

int main(void) {
    const char *q = getenv("SN_QUICK");
    g_quick = q && q[0] == '1';
    const int cases = t_golden_manifest("grad", skip_case, run_case);
    CHECK(cases >= (g_quick ? 1 : 3), "only %d gradient goldens", cases);
    return TEST_SUMMARY();
}
