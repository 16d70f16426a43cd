/* Synchronized batch-norm (sn_graph.bn_reduce): (a) the split kernels against naive double
 * references; (d) finite differences through the split path, a batch cut in two halves whose
 * sums are added in between; (b) a model's training graph with an identity hook against the
 * plain (NULL hook) path; (c) the point of it: two graphs of batch 2, run side by side in two
 * threads whose hook sums their buffers, against one graph of batch 4 (the loss and the moving
 * statistics the same, the gradients the halves' mean). SN_QUICK=1 (the sanitizer run) takes
 * smaller kernel cases. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core.h"
#include "graph.h"
#include "kernels.h"
#include "model.h"
#include "model_train.h"
#include "model_util.h"
#include "spinenet.h"
#include "test.h"
#define T_RNG_SEED 0x5EB1C0DE2026ULL
#include "testutil.h"

static int quick;

static const sn_act all_acts[] = {SN_ACT_NONE,   SN_ACT_RELU,    SN_ACT_RELU6,   SN_ACT_SWISH,
                                  SN_ACT_HSWISH, SN_ACT_SIGMOID, SN_ACT_HSIGMOID};
#define NACTS (sizeof all_acts / sizeof all_acts[0])

static int same_bits(const void *a, const void *b, size_t bytes) {
    return memcmp(a, b, bytes) == 0;
}

/* ---------------------------------------------------------------------------------------- */
/* (a) Each kernel against a naive double reference                                          */

/* The activation's input as the kernels compute it from the saved (float) statistics. */
static void u_ref(size_t rows, int c, const float *x, const float *gamma, const float *beta,
                  const float *mean, const float *invstd, float *u) {
    for (size_t r = 0; r < rows; r++)
        for (int k = 0; k < c; k++) {
            const float mul = (float)((double)gamma[k] * (double)invstd[k]);
            u[r * c + k] = (x[r * c + k] - mean[k]) * mul + beta[k];
        }
}

static void test_kernels_case(size_t rows, int c, float shift, sn_act act) {
    const size_t n = rows * (size_t)c;
    const char *an = sn_act_name(act);
    float *x = t_frand(n, -2, 2), *gamma = t_frand((size_t)c, 0.5f, 1.5f);
    float *beta = t_frand((size_t)c, -1, 1), *dy = t_frand(n, -1, 1);
    for (size_t i = 0; i < n; i++) x[i] += shift;

    /* Forward sums: double accumulation, so the only error is double rounding. */
    double *s = t_dzero(2 * (size_t)c), *s3 = t_dzero(2 * (size_t)c);
    sn_batchnorm_sums_f32(rows, c, x, s, s + c, 1);
    sn_batchnorm_sums_f32(rows, c, x, s3, s3 + c, 3);
    double es = 0.0;
    for (int k = 0; k < c; k++) {
        double r1 = 0.0, r2 = 0.0, a1 = 0.0;
        for (size_t r = 0; r < rows; r++) {
            const double v = x[r * c + k];
            r1 += v;
            r2 += v * v;
            a1 += fabs(v);
        }
        es = fmax(es, fmax(fabs(s[k] - r1) / (a1 + 1e-300), fabs(s[c + k] - r2) / (r2 + 1e-300)));
    }
    CHECK(es < 1e-13, "sums %zux%d: err %g", rows, c, es);
    CHECK(same_bits(s, s3, 2 * (size_t)c * sizeof *s), "sums %zux%d: differ across threads", rows,
          c);

    /* Statistics from the sums, both running-variance conventions. */
    const float eps = 1e-3f, mom = 0.9f;
    float *rm0 = t_frand((size_t)c, -1, 1), *rv0 = t_frand((size_t)c, 0.5f, 2);
    float *mean = t_fzero((size_t)c), *invstd = t_fzero((size_t)c);
    for (int unb = 0; unb <= 1; unb++) {
        float *rm = t_fcopy(rm0, (size_t)c), *rv = t_fcopy(rv0, (size_t)c);
        sn_batchnorm_stats_from_sums_f32(c, (double)rows, s, s + c, eps, mom, unb, rm, rv, mean,
                                         invstd);
        double e = 0.0;
        for (int k = 0; k < c; k++) {
            /* Two-pass double statistics straight from x. */
            double m = 0.0, v = 0.0;
            for (size_t r = 0; r < rows; r++) m += x[r * c + k];
            m /= (double)rows;
            for (size_t r = 0; r < rows; r++) v += (x[r * c + k] - m) * (x[r * c + k] - m);
            v /= (double)rows;
            const double is = 1.0 / sqrt(v + eps);
            const double bv = unb && rows > 1 ? v * (double)rows / (double)(rows - 1) : v;
            const double wm = (double)mom * rm0[k] + (1.0 - (double)mom) * m;
            const double wv = (double)mom * rv0[k] + (1.0 - (double)mom) * bv;
            e = fmax(e, fabs(mean[k] - m) / fmax(fabs(m), 1.0));
            e = fmax(e, fabs(invstd[k] - is) / is);
            e = fmax(e, fabs(rm[k] - wm) / fmax(fabs(wm), 1.0));
            e = fmax(e, fabs(rv[k] - wv) / wv);
        }
        /* float rounding of the results (6e-8), plus sumsq/N - mean^2 in double: its rounding
         * (1e-16 * mean^2 / var, mean^2 / var up to 1e4 for the shifted case) is far smaller. */
        CHECK(e < 2e-7, "stats %zux%d shift %g unbiased=%d: err %g", rows, c, shift, unb, e);
        sn_free(rm), sn_free(rv);
    }

    /* Apply: y = act(u) with u from the float statistics (as sn_batchnorm_act_train_f32). */
    float *u = t_fzero(n), *yref = t_fzero(n), *y = t_fzero(n), *y3 = t_fzero(n);
    u_ref(rows, c, x, gamma, beta, mean, invstd, u);
    sn_act_f32(act, n, u, yref, 1);
    sn_batchnorm_act_apply_f32(rows, c, x, gamma, beta, mean, invstd, act, y, 1);
    sn_batchnorm_act_apply_f32(rows, c, x, gamma, beta, mean, invstd, act, y3, 3);
    CHECK(same_bits(y, yref, n * sizeof *y), "apply+%s %zux%d: differs from act(u)", an, rows, c);
    CHECK(same_bits(y, y3, n * sizeof *y), "apply+%s %zux%d: differs across threads", an, rows, c);
    /* ... and against the fused kernel given the same statistics: its own y. */
    {
        float *fm = t_fzero((size_t)c), *fi = t_fzero((size_t)c);
        float *yf = t_fzero(n), *ya = t_fzero(n);
        sn_batchnorm_act_train_f32(rows, c, x, gamma, beta, eps, mom, 0, NULL, NULL, act, yf, fm,
                                   fi, 1);
        sn_batchnorm_act_apply_f32(rows, c, x, gamma, beta, fm, fi, act, ya, 1);
        CHECK(same_bits(ya, yf, n * sizeof *ya), "apply+%s %zux%d: differs from the fused y", an,
              rows, c);
        sn_free(fm), sn_free(fi), sn_free(yf), sn_free(ya);
    }

    /* Backward sums: g = dy * act'(u) (the tested sn_act_grad_f32), then double sums. */
    float *g = t_fzero(n), *gk = t_fzero(n);
    sn_act_grad_f32(act, n, u, dy, g, 1);
    double *bs = t_dzero(2 * (size_t)c), *bs3 = t_dzero(2 * (size_t)c);
    float *dg0 = t_frand((size_t)c, -1, 1), *db0 = t_frand((size_t)c, -1, 1);
    float *dg = t_fcopy(dg0, (size_t)c), *db = t_fcopy(db0, (size_t)c);
    sn_batchnorm_act_backward_sums_f32(rows, c, x, gamma, beta, mean, invstd, act, dy, bs, bs + c,
                                       gk, dg, db, 1);
    sn_batchnorm_act_backward_sums_f32(rows, c, x, gamma, beta, mean, invstd, act, dy, bs3,
                                       bs3 + c, NULL, NULL, NULL, 3);
    double eb = 0.0;
    int acc_ok = 1;
    for (int k = 0; k < c; k++) {
        double r1 = 0.0, r2 = 0.0, a1 = 0.0, a2 = 0.0;
        for (size_t r = 0; r < rows; r++) {
            const size_t i = r * c + k;
            const double xh = (double)((x[i] - mean[k]) * invstd[k]);
            r1 += g[i];
            r2 += g[i] * xh;
            a1 += fabs(g[i]);
            a2 += fabs(g[i] * xh);
        }
        /* Float over tiles of 16 rows, then double: at most ~16 roundings of 6e-8 per term. */
        eb = fmax(eb, fmax(fabs(bs[k] - r1) / (a1 + 1e-30), fabs(bs[c + k] - r2) / (a2 + 1e-30)));
        acc_ok &= dg[k] == dg0[k] + (float)bs[c + k] && db[k] == db0[k] + (float)bs[k];
    }
    CHECK(eb < 2e-6, "backward sums+%s %zux%d: err %g", an, rows, c, eb);
    CHECK(acc_ok, "backward sums+%s %zux%d: dgamma/dbeta not the sums added", an, rows, c);
    CHECK(same_bits(gk, g, n * sizeof *g), "backward sums+%s %zux%d: g differs", an, rows, c);
    CHECK(same_bits(bs, bs3, 2 * (size_t)c * sizeof *bs), "backward sums+%s %zux%d: threads", an,
          rows, c);

    /* dx from given "global" sums and row count (here other numbers than the local ones: what
     * another process would have added). */
    const double total = 3.0 * (double)rows;
    double *gsum = t_dzero(2 * (size_t)c);
    for (int k = 0; k < 2 * c; k++) gsum[k] = 2.5 * bs[k] + t_urand(-1, 1);
    float *dx = t_frand(n, -9, 9), *dx3 = t_fzero(n);
    sn_batchnorm_act_backward_dx_f32(rows, c, x, gamma, beta, mean, invstd, act, dy, gsum,
                                     gsum + c, total, dx, 1);
    sn_batchnorm_act_backward_dx_f32(rows, c, x, gamma, beta, mean, invstd, act, dy, gsum,
                                     gsum + c, total, dx3, 3);
    double ed = 0.0;
    for (size_t r = 0; r < rows; r++)
        for (int k = 0; k < c; k++) {
            const size_t i = r * c + k;
            const double mul = (double)gamma[k] * invstd[k];
            const double xh = ((double)x[i] - mean[k]) * invstd[k];
            const double mg = gsum[k] / total, mgx = gsum[c + k] / total;
            const double want = mul * (g[i] - mg - xh * mgx);
            /* float evaluation of three terms that may cancel: relative to their size */
            const double scale = fabs(mul) * (fabs(g[i]) + fabs(mg) + fabs(xh * mgx)) + 1e-30;
            ed = fmax(ed, fabs(dx[i] - want) / scale);
        }
    CHECK(ed < 1e-6, "dx+%s %zux%d: err %g", an, rows, c, ed);
    CHECK(same_bits(dx, dx3, n * sizeof *dx), "dx+%s %zux%d: differs across threads", an, rows, c);
    /* In place from g (act NONE, dy == dx): the same bits. */
    float *ip = t_fcopy(g, n);
    sn_batchnorm_act_backward_dx_f32(rows, c, x, gamma, beta, mean, invstd, SN_ACT_NONE, ip, gsum,
                                     gsum + c, total, ip, 1);
    CHECK(same_bits(ip, dx, n * sizeof *ip), "dx+%s %zux%d: in place from g differs", an, rows, c);
    /* Local sums as global ones: the fused backward's dx, bit for bit. */
    {
        float *fdx = t_fzero(n), *sdx = t_fzero(n);
        sn_batchnorm_act_train_backward_f32(rows, c, x, gamma, beta, mean, invstd, act, dy, fdx,
                                            NULL, NULL, 1);
        sn_batchnorm_act_backward_dx_f32(rows, c, x, gamma, beta, mean, invstd, act, dy, bs, bs + c,
                                         (double)rows, sdx, 1);
        CHECK(same_bits(fdx, sdx, n * sizeof *fdx), "dx+%s %zux%d: differs from the fused dx", an,
              rows, c);
        sn_free(fdx), sn_free(sdx);
    }

    sn_free(ip), sn_free(dx), sn_free(dx3), sn_free(gsum), sn_free(g), sn_free(gk), sn_free(bs);
    sn_free(bs3), sn_free(dg0), sn_free(db0), sn_free(dg), sn_free(db), sn_free(u), sn_free(yref);
    sn_free(y), sn_free(y3), sn_free(rm0), sn_free(rv0), sn_free(mean), sn_free(invstd);
    sn_free(s), sn_free(s3), sn_free(x), sn_free(gamma), sn_free(beta), sn_free(dy);
}

static void test_kernels(void) {
    for (size_t a = 0; a < NACTS; a++) test_kernels_case(37, 13, 0.0f, all_acts[a]);
    /* 16 row blocks and two channel chunks */
    test_kernels_case(quick ? 1000 : 16 * 256 + 37, 130, 0.5f, SN_ACT_SWISH);
    test_kernels_case(3000, 20, 100.0f, SN_ACT_RELU); /* mean far off 0: sumsq/N - mean^2 */
    test_kernels_case(1, 4, 0.0f, SN_ACT_NONE);
}

/* ---------------------------------------------------------------------------------------- */
/* (d) Finite differences through the synchronized path: a batch in two halves of unequal size
 * (two "processes"), their sums added between the split kernels, against the double loss of
 * act(bn(x)) over the whole batch. */

#define FD_H 1e-4
#define GRAD_TOL 1e-4

typedef struct {
    size_t rows;
    int c;
    double eps;
    sn_act act;
    double *x, *gamma, *beta, *r;
} fd_ctx;

static double act_d(sn_act a, double v) {
    switch (a) {
    case SN_ACT_NONE: return v;
    case SN_ACT_RELU: return v > 0 ? v : 0;
    case SN_ACT_RELU6: return v < 0 ? 0 : (v > 6 ? 6 : v);
    case SN_ACT_SWISH: return v / (1.0 + exp(-v));
    case SN_ACT_HSWISH: return v * (v + 3 < 0 ? 0 : (v + 3 > 6 ? 6 : v + 3)) / 6.0;
    case SN_ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case SN_ACT_HSIGMOID: return (v + 3 < 0 ? 0 : (v + 3 > 6 ? 6 : v + 3)) * (double)0.16667f;
    }
    return v;
}

/* sum(r * act(bn(x))) with the whole batch's statistics. */
static double fd_loss(const void *p) {
    const fd_ctx *q = p;
    double s = 0.0;
    for (int k = 0; k < q->c; k++) {
        double m = 0.0, v = 0.0;
        for (size_t i = 0; i < q->rows; i++) m += q->x[i * q->c + k];
        m /= (double)q->rows;
        for (size_t i = 0; i < q->rows; i++) {
            const double d = q->x[i * q->c + k] - m;
            v += d * d;
        }
        v /= (double)q->rows;
        const double is = 1.0 / sqrt(v + q->eps);
        for (size_t i = 0; i < q->rows; i++) {
            const size_t j = i * q->c + k;
            s += act_d(q->act, q->gamma[k] * (q->x[j] - m) * is + q->beta[k]) * q->r[j];
        }
    }
    return s;
}

static double *fd_grad(t_loss_fn f, const void *ctx, double *p, size_t n) {
    double *g = t_xalloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++)
        g[i] = t_central_diff(f, ctx, p, i, FD_H * (fabs(p[i]) > 1.0 ? fabs(p[i]) : 1.0));
    return g;
}

/* As test_grad_ops.c: relative for every component not tiny next to the largest. */
static double grad_err(const float *g, const double *ref, size_t n) {
    double mx = 0.0, e = 0.0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) {
        const double d = fabs(g[i] - ref[i]) / (fabs(ref[i]) + 1e-2 * mx + 1e-6);
        if (!(d <= e)) e = d;
    }
    return e;
}

static void test_fd_case(size_t ra, size_t rb, int c, sn_act act) {
    const size_t rows = ra + rb, n = rows * (size_t)c, na = ra * (size_t)c, nb = rb * (size_t)c;
    const float eps = 1e-3f;
    float *x = t_frand(n, -2, 2), *gamma = t_frand((size_t)c, 0.5f, 1.5f);
    float *beta = t_frand((size_t)c, -1, 1), *dy = t_frand(n, -1, 1);
    const float *xa = x, *xb = x + na;
    /* Forward: local sums per half, added (the hook), the statistics, the halves' outputs. */
    double *sa = t_dzero(2 * (size_t)c), *sb = t_dzero(2 * (size_t)c);
    sn_batchnorm_sums_f32(ra, c, xa, sa, sa + c, 1);
    sn_batchnorm_sums_f32(rb, c, xb, sb, sb + c, 2);
    for (int k = 0; k < 2 * c; k++) sa[k] += sb[k];
    float *mean = t_fzero((size_t)c), *invstd = t_fzero((size_t)c), *y = t_fzero(n);
    sn_batchnorm_stats_from_sums_f32(c, (double)rows, sa, sa + c, eps, 0.9f, 1, NULL, NULL, mean,
                                     invstd);
    sn_batchnorm_act_apply_f32(ra, c, xa, gamma, beta, mean, invstd, act, y, 1);
    sn_batchnorm_act_apply_f32(rb, c, xb, gamma, beta, mean, invstd, act, y + na, 1);
    /* Backward: local sums (dgamma, dbeta accumulate the two), added, dx per half. */
    float *dx = t_fzero(n), *dg = t_fzero((size_t)c), *db = t_fzero((size_t)c);
    double *ba = t_dzero(2 * (size_t)c), *bb = t_dzero(2 * (size_t)c);
    sn_batchnorm_act_backward_sums_f32(ra, c, xa, gamma, beta, mean, invstd, act, dy, ba, ba + c,
                                       NULL, dg, db, 1);
    sn_batchnorm_act_backward_sums_f32(rb, c, xb, gamma, beta, mean, invstd, act, dy + na, bb,
                                       bb + c, NULL, dg, db, 1);
    for (int k = 0; k < 2 * c; k++) ba[k] += bb[k];
    sn_batchnorm_act_backward_dx_f32(ra, c, xa, gamma, beta, mean, invstd, act, dy, ba, ba + c,
                                     (double)rows, dx, 1);
    sn_batchnorm_act_backward_dx_f32(rb, c, xb, gamma, beta, mean, invstd, act, dy + na, ba,
                                     ba + c, (double)rows, dx + na, 1);
    (void)nb;

    fd_ctx q = {rows, c, eps, act, t_dfrom(x, n), t_dfrom(gamma, (size_t)c),
                t_dfrom(beta, (size_t)c), t_dfrom(dy, n)};
    /* The forward against the double one over the whole batch. */
    double ey = 0.0;
    {
        const double l = fd_loss(&q);
        double ls = 0.0, as = 0.0;
        for (size_t i = 0; i < n; i++) {
            ls += (double)y[i] * dy[i];
            as += fabs((double)y[i] * dy[i]);
        }
        ey = fabs(ls - l) / as;
    }
    CHECK(ey < 1e-5, "fd+%s %zu+%zu x%d: forward loss err %g", sn_act_name(act), ra, rb, c, ey);
    double *fx = fd_grad(fd_loss, &q, q.x, n);
    double *fg = fd_grad(fd_loss, &q, q.gamma, (size_t)c);
    double *fb = fd_grad(fd_loss, &q, q.beta, (size_t)c);
    const double ex = grad_err(dx, fx, n);
    const double egb = fmax(grad_err(dg, fg, (size_t)c), grad_err(db, fb, (size_t)c));
    CHECK(ex < GRAD_TOL, "fd+%s %zu+%zu x%d: dx err %g", sn_act_name(act), ra, rb, c, ex);
    CHECK(egb < GRAD_TOL, "fd+%s %zu+%zu x%d: dgamma/dbeta err %g", sn_act_name(act), ra, rb, c,
          egb);
    printf("finite differences, %s, halves of %zu and %zu rows x %d: dx err %.2e, dgamma/dbeta "
           "err %.2e (tolerance %g)\n", sn_act_name(act), ra, rb, c, ex, egb, GRAD_TOL);
    sn_free(fx), sn_free(fg), sn_free(fb), sn_free(q.x), sn_free(q.gamma), sn_free(q.beta);
    sn_free(q.r), sn_free(x), sn_free(gamma), sn_free(beta), sn_free(dy), sn_free(sa), sn_free(sb);
    sn_free(mean), sn_free(invstd), sn_free(y), sn_free(dx), sn_free(dg), sn_free(db);
    sn_free(ba), sn_free(bb);
}

static void test_fd(void) {
    test_fd_case(20, 13, 5, SN_ACT_NONE);
    test_fd_case(20, 13, 5, SN_ACT_SWISH);
    test_fd_case(7, 24, 4, SN_ACT_RELU);
    test_fd_case(11, 9, 3, SN_ACT_HSWISH);
}

/* ---------------------------------------------------------------------------------------- */
/* (b), (c): a model's training graphs                                                        */

#define SIZE 64
#define CLASSES 5

static sn_model *model_make(int batch) {
    sn_config c;
    sn_config_init(&c, "spinenet-mobile-49xs");
    c.flavour = SN_FLAVOUR_TPU;
    c.head = SN_HEAD_CLASSIFIER;
    c.num_classes = CLASSES;
    c.drop_path_rate = 0.0f;
    sn_model *m = NULL;
    if (sn_model_create(&c, 1, &m) != SN_OK) return NULL;
    sn_model_set_threads(m, 1);
    if (sn_model_plan_train(m, batch, SIZE, SIZE) != SN_OK) {
        sn_model_free(m);
        return NULL;
    }
    return m;
}

static int is_stat(const char *name) {
    const size_t n = strlen(name);
    return (n > 5 && strcmp(name + n - 5, ".mean") == 0) ||
           (n > 4 && strcmp(name + n - 4, ".var") == 0);
}

/* Over every parameter tensor: the largest |got - want| / (max|want| of the tensor + 1e-3 * G),
 * separately for the gradients of the trainable ones and for the moving statistics (the
 * parameters themselves after the step), G being the largest |want| over all the tensors of
 * that kind. The floor: some gradients are zero but for rounding (the beta of a batch-norm
 * whose output only reaches other batch-norms through linear ops: the next normalisation
 * removes any shift), and some moving means are (a 1x1 convolution of a normalised input);
 * relative to their own tiny maximum they would compare noise with noise. */
typedef struct {
    double grad, stat;
    long elems;
} cmp_result;

static cmp_result compare(sn_model *m, float *const *got_g, float *const *want_g,
                          float *const *got_p, float *const *want_p) {
    cmp_result r = {0, 0, 0};
    double big[2] = {0, 0};
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < sn_model_num_params(m); i++) {
            sn_param p;
            sn_model_param_at(m, i, &p);
            const int st = is_stat(p.name);
            const float *a = st ? got_p[i] : got_g[i], *b = st ? want_p[i] : want_g[i];
            double mx = 0.0, d = 0.0;
            for (size_t k = 0; k < p.count; k++) mx = fmax(mx, fabs(b[k]));
            if (pass == 0) {
                big[st] = fmax(big[st], mx);
                continue;
            }
            for (size_t k = 0; k < p.count; k++) {
                const double e = fabs((double)a[k] - b[k]);
                if (!(e <= d)) d = e;
            }
            const double rel = d / (mx + 1e-3 * big[st] + 1e-30);
            if (getenv("SN_SYNC_DEBUG") && rel > 1e-6)
                printf("  %-50s %8zu max %.3e diff %.3e rel %.3e\n", p.name, p.count, mx, d, rel);
            double *slot = st ? &r.stat : &r.grad;
            if (!(rel <= *slot)) *slot = rel; /* NaN included */
            r.elems += (long)p.count;
        }
    return r;
}

static const int32_t labels4[4] = {1, 4, 0, 2};
static const float smoothing = 0.1f;

/* One training step's results: gradients, the parameters after it (the moving statistics
 * moved), the logits and the loss. */
typedef struct {
    float **g, **p;
    float logits[4 * CLASSES];
    double loss;
    sn_status st;
    char msg[256];
} step_out;

/* From the parameters `start`: the loss and gradients of `batch` images of x. */
static void step(sn_model *m, float *const *start, const float *x, const int32_t *labels,
                 int batch, step_out *o) {
    tm_params_set(m, start);
    o->g = tm_grads_new(m);
    o->st = sn_model_loss_grad(m, x, labels, smoothing, 5, &o->loss, o->g);
    o->msg[0] = 0;
    if (o->st != SN_OK) snprintf(o->msg, sizeof o->msg, "%s", sn_last_error());
    o->p = tm_params_copy(m);
    memset(o->logits, 0, sizeof o->logits);
    if (o->st == SN_OK)
        for (int i = 0; i < batch; i++)
            memcpy(o->logits + i * CLASSES, sn_model_train_logits(m, i), sizeof(float) * CLASSES);
}

static void step_free(sn_model *m, step_out *o) {
    tm_buffers_free(m, o->g);
    tm_buffers_free(m, o->p);
    o->g = o->p = NULL;
}

static double rel_diff(const float *got, const float *want, size_t n) {
    double d = 0.0, mx = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - want[i]);
        if (!(e <= d)) d = e;
        mx = fmax(mx, fabs(want[i]));
    }
    return d / (mx + 1e-30);
}

/* Differences of two steps over 4 images: gradients, moving statistics, logits, loss. */
typedef struct {
    double grad, stat, logits, loss;
} step_diff;

static step_diff step_compare(sn_model *m, step_out *got, step_out *want) {
    const cmp_result r = compare(m, got->g, want->g, got->p, want->p);
    step_diff d = {r.grad, r.stat, rel_diff(got->logits, want->logits, 4 * CLASSES),
                   fabs(got->loss - want->loss) / fabs(want->loss)};
    return d;
}

/* The hook of one graph: records the buffer sizes it is called with; identity, or a failure at
 * call fail_at (counted from 1). */
typedef struct {
    size_t sizes[1024];
    int calls, fail_at;
} ident_ctx;

static sn_status ident_reduce(void *ctx, double *buf, size_t n) {
    ident_ctx *c = ctx;
    (void)buf;
    if (c->calls < 1024) c->sizes[c->calls] = n;
    c->calls++;
    if (c->calls == c->fail_at)
        return sn_error(SN_ERR_IO, "test: reduce failed at call %d", c->calls);
    return SN_OK;
}

/* An in-process reducer over two graphs in two threads: each call waits for the other graph's
 * call, both add the two buffers in rank order (the same bits for both) and write the sum. */
typedef struct {
    pthread_barrier_t bar;
    double *slot[2];
    size_t n[2];
    int calls[2];
} reducer;

typedef struct {
    reducer *r;
    int rank;
    sn_model *m;
    float *const *start;
    const float *x;
    const int32_t *labels;
    step_out *out;
} peer;

static sn_status peer_reduce(void *ctx, double *buf, size_t n) {
    peer *p = ctx;
    reducer *r = p->r;
    r->slot[p->rank] = buf;
    r->n[p->rank] = n;
    r->calls[p->rank]++;
    pthread_barrier_wait(&r->bar);
    const int ok = r->n[0] == r->n[1];
    double *sum = ok ? malloc(n * sizeof *sum) : NULL;
    if (sum)
        for (size_t k = 0; k < n; k++) sum[k] = r->slot[0][k] + r->slot[1][k];
    /* Nobody overwrites its buffer before both have read them. */
    pthread_barrier_wait(&r->bar);
    if (!sum)
        return sn_error(ok ? SN_ERR_OOM : SN_ERR_STATE, "reduce: sizes %zu and %zu", r->n[0],
                        r->n[1]);
    memcpy(buf, sum, n * sizeof *sum);
    free(sum);
    return SN_OK;
}

static void *peer_run(void *arg) {
    peer *p = arg;
    step(p->m, p->start, p->x, p->labels, 2, p->out);
    sn_scratch_release(); /* the kernels' per-thread work buffers */
    return NULL;
}

/* Both halves of x through their own graph, at once, synchronized: 1 if both ran. */
static int run_halves(sn_model *half[2], float *const *start, const float *x, size_t per,
                      step_out h[2]) {
    reducer red;
    memset(&red, 0, sizeof red);
    pthread_barrier_init(&red.bar, NULL, 2);
    peer p[2];
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        p[r] = (peer){&red, r, half[r], start, x + (size_t)r * 2 * per, labels4 + 2 * r, &h[r]};
        sn_graph *g = sn_model_part_graph(half[r], 0);
        g->bn_reduce = peer_reduce;
        g->bn_reduce_ctx = &p[r];
    }
    int started = 0;
    for (int r = 0; r < 2; r++) started += pthread_create(&th[r], NULL, peer_run, &p[r]) == 0;
    CHECK(started == 2, "could not start the threads");
    if (started != 2) exit(2); /* one thread waits at the barrier for ever */
    for (int r = 0; r < 2; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&red.bar);
    for (int r = 0; r < 2; r++) {
        sn_graph *g = sn_model_part_graph(half[r], 0);
        g->bn_reduce = NULL;
        g->bn_reduce_ctx = NULL;
    }
    int ok = 1;
    for (int r = 0; r < 2; r++) {
        CHECK(h[r].st == SN_OK, "graph %d: %s: %s", r, sn_status_name(h[r].st), h[r].msg);
        ok &= h[r].st == SN_OK;
    }
    CHECK(red.calls[0] == red.calls[1] && red.calls[0] > 20, "hook calls %d and %d", red.calls[0],
          red.calls[1]);
    return ok;
}

/* The plain path's own sensitivity to rounding: how far its step moves when every 7th input
 * value moves by one float ulp. The synchronized path computes the forward statistics in
 * another way (raw double sums, sumsq/N - mean^2, where the fused kernel sums x - shift in float
 * tiles): the saved mean and inverse std may differ in their last bit at each of the ~115
 * batch-norms, and this randomly initialised network carries such differences forward and
 * backward much as it carries a 1-ulp change of its input. So against the plain path the
 * tolerance is NOISE_FACTOR times this sensitivity; a mistake in the statistics or the backward
 * formula shows as O(1) (unsynchronized halves of the batch: 1e2 and more). Measured (AVX-512
 * build): the 1-ulp change moves the gradients by 1.0e-2, the moving statistics 1.6e-4, the
 * logits 3.4e-4, the loss 1.1e-6; the identity hook by 2.9e-3, 1.2e-4, 1.9e-4, 2.9e-7 (the
 * portable build: ratios up to 3). The network is this sensitive because at 64 px its deepest
 * levels are 1x1: their batch-norms normalise over 4 rows. */
#define NOISE_FACTOR 10.0

static ident_ctx ic; /* static: 8 KiB */

static void test_models(const float *x) {
    const size_t per = (size_t)SIZE * SIZE * 3;
    sn_model *one = model_make(4), *half[2] = {model_make(2), model_make(2)};
    if (!one || !half[0] || !half[1]) {
        CHECK(0, "set-up: %s", sn_last_error());
        sn_model_free(one), sn_model_free(half[0]), sn_model_free(half[1]);
        return;
    }
    float **start = tm_params_copy(one);
    sn_graph *g = sn_model_part_graph(one, 0);

    /* The plain path (NULL hook), and its sensitivity to a 1-ulp change of the input. */
    step_out plain, bumped, ident;
    step(one, start, x, labels4, 4, &plain);
    CHECK(plain.st == SN_OK, "plain step: %s", plain.msg);
    float *xb = t_fcopy(x, 4 * per);
    for (size_t i = 0; i < 4 * per; i += 7) xb[i] = nextafterf(xb[i], 2.0f);
    step(one, start, xb, labels4, 4, &bumped);
    sn_free(xb);
    const step_diff noise = step_compare(one, &bumped, &plain);
    /* One scalar's change can be small by chance: the loss is a function of the logits, so
     * the larger of the two. */
    const double loss_noise = fmax(noise.loss, noise.logits);
    printf("plain path, 1-ulp input change: gradients %.2e, moving statistics %.2e, logits %.2e, "
           "loss %.2e (relative)\n", noise.grad, noise.stat, noise.logits, noise.loss);

    /* (b) The synchronized path with an identity hook on the same graph. */
    memset(&ic, 0, sizeof ic);
    g->bn_reduce = ident_reduce;
    g->bn_reduce_ctx = &ic;
    step(one, start, x, labels4, 4, &ident);
    CHECK(ident.st == SN_OK, "identity-hook step: %s", ident.msg);
    /* Its calls: each batch-norm in node order (1 + 2c), then in reverse order (2c). */
    int nbn = 0, order_ok = 1;
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].op == SN_OP_CONV && g->nodes[i].p_gamma >= 0) nbn++;
    CHECK(nbn > 10 && ic.calls == 2 * nbn && ic.calls <= 1024, "%d hook calls for %d batch-norms",
          ic.calls, nbn);
    if (ic.calls == 2 * nbn && ic.calls <= 1024) {
        int j = 0;
        for (int i = 0; i < g->n; i++)
            if (g->nodes[i].op == SN_OP_CONV && g->nodes[i].p_gamma >= 0)
                order_ok &= ic.sizes[j++] == 1 + 2 * (size_t)g->nodes[i].c;
        for (int i = g->n - 1; i >= 0; i--)
            if (g->nodes[i].op == SN_OP_CONV && g->nodes[i].p_gamma >= 0)
                order_ok &= ic.sizes[j++] == 2 * (size_t)g->nodes[i].c;
    }
    CHECK(order_ok, "the hook's calls are not the batch-norms in node order, then reversed");
    const step_diff di = step_compare(one, &ident, &plain);
    CHECK(di.grad <= NOISE_FACTOR * noise.grad && di.stat <= NOISE_FACTOR * noise.stat &&
              di.logits <= NOISE_FACTOR * noise.logits && di.loss <= NOISE_FACTOR * loss_noise,
          "identity hook vs plain: gradients %g, statistics %g, logits %g, loss %g", di.grad,
          di.stat, di.logits, di.loss);
    printf("identity hook vs plain (batch 4, %d batch-norms): gradients %.2e, moving statistics "
           "%.2e, logits %.2e, loss %.2e (tolerance %g x the 1-ulp change)\n", nbn, di.grad,
           di.stat, di.logits, di.loss, NOISE_FACTOR);

    /* A failing hook stops the pass with its status: in the forward, and in the backward. */
    for (int k = 0; k < 2; k++) {
        memset(&ic, 0, sizeof ic);
        ic.fail_at = k == 0 ? 3 : nbn + 2;
        step_out f;
        step(one, start, x, labels4, 4, &f);
        CHECK(f.st == SN_ERR_IO && strstr(f.msg, "reduce failed") && ic.calls == ic.fail_at,
              "failing hook in the %s: status %s (%s), %d calls", k ? "backward" : "forward",
              sn_status_name(f.st), f.msg, ic.calls);
        step_free(one, &f);
    }
    g->bn_reduce = NULL;
    g->bn_reduce_ctx = NULL;

    /* (c) Two graphs of 2 images, synchronized, in two threads: the batch of 4. */
    step_out h[2];
    const int ok = run_halves(half, start, x, per, h);
    if (ok) {
        step_out avg;
        avg.g = tm_grads_new(one);
        avg.p = h[0].p;
        avg.loss = 0.5 * (h[0].loss + h[1].loss);
        for (int i = 0; i < sn_model_num_params(one); i++) {
            sn_param q;
            sn_model_param_at(one, i, &q);
            for (size_t k = 0; k < q.count; k++)
                avg.g[i][k] = 0.5f * h[0].g[i][k] + 0.5f * h[1].g[i][k];
        }
        memcpy(avg.logits, h[0].logits, 2 * CLASSES * sizeof(float));
        memcpy(avg.logits + 2 * CLASSES, h[1].logits, 2 * CLASSES * sizeof(float));
        int same_stats = 1;
        for (int i = 0; i < sn_model_num_params(one); i++) {
            sn_param q;
            sn_model_param_at(one, i, &q);
            if (is_stat(q.name))
                same_stats &= same_bits(h[0].p[i], h[1].p[i], q.count * sizeof(float));
        }
        CHECK(same_stats, "the two graphs' moving statistics differ");
        /* Against the batch of 4 through the synchronized path (identity hook): the forward is
         * the same arithmetic but for the order of two double additions, so the statistics, the
         * logits and the loss come out the same (1e-6: a double rounding could reach a float's
         * last bit); the backward's sums over rows are grouped otherwise (the float tiles of 16
         * rows, the convolutions' weight gradients per graph, then averaged): about 1e-7
         * relative per sum, carried back through ~115 batch-norms and summed, measured ~4e-6;
         * tolerance 1e-4. */
        const step_diff ds = step_compare(one, &avg, &ident);
        CHECK(ds.grad < 1e-4 && ds.stat < 1e-6 && ds.logits < 1e-6 && ds.loss < 1e-6,
              "2 x 2 synchronized vs 4 (identity hook): gradients %g, statistics %g, logits %g, "
              "loss %g", ds.grad, ds.stat, ds.logits, ds.loss);
        printf("2 graphs x 2, synchronized, vs 1 graph x 4, identity hook: gradients %.2e, moving "
               "statistics %.2e, logits %.2e, loss %.2e (tolerances 1e-4, 1e-6, 1e-6, 1e-6)\n",
               ds.grad, ds.stat, ds.logits, ds.loss);
        /* Against the plain batch of 4: as (b). */
        const step_diff dp = step_compare(one, &avg, &plain);
        CHECK(dp.grad <= NOISE_FACTOR * noise.grad && dp.stat <= NOISE_FACTOR * noise.stat &&
                  dp.logits <= NOISE_FACTOR * noise.logits && dp.loss <= NOISE_FACTOR * loss_noise,
              "2 x 2 synchronized vs plain 4: gradients %g, statistics %g, logits %g, loss %g",
              dp.grad, dp.stat, dp.logits, dp.loss);
        printf("2 graphs x 2, synchronized, vs 1 graph x 4, plain: gradients %.2e, moving "
               "statistics %.2e, logits %.2e, loss %.2e (tolerance %g x the 1-ulp change)\n",
               dp.grad, dp.stat, dp.logits, dp.loss, NOISE_FACTOR);

        /* Without the hook the halves are not the batch (so the checks above can tell). */
        step_out u[2];
        for (int r = 0; r < 2; r++)
            step(half[r], start, x + (size_t)r * 2 * per, labels4 + 2 * r, 2, &u[r]);
        for (int i = 0; i < sn_model_num_params(one); i++) {
            sn_param q;
            sn_model_param_at(one, i, &q);
            for (size_t k = 0; k < q.count; k++)
                avg.g[i][k] = 0.5f * u[0].g[i][k] + 0.5f * u[1].g[i][k];
        }
        avg.p = u[0].p;
        const step_diff dn = step_compare(one, &avg, &plain);
        CHECK(dn.grad > 1e2 * NOISE_FACTOR * noise.grad &&
                  dn.stat > 1e2 * NOISE_FACTOR * noise.stat,
              "unsynchronized halves match the batch: gradients %g, statistics %g", dn.grad,
              dn.stat);
        printf("unsynchronized halves vs the batch of 4: gradients %.2e, moving statistics %.2e\n",
               dn.grad, dn.stat);
        for (int r = 0; r < 2; r++) step_free(half[r], &u[r]);
        tm_buffers_free(one, avg.g);
    }
    for (int r = 0; r < 2 && ok; r++) step_free(half[r], &h[r]);
    step_free(one, &plain), step_free(one, &bumped), step_free(one, &ident);
    tm_buffers_free(one, start);
    sn_model_free(one), sn_model_free(half[0]), sn_model_free(half[1]);
}

int main(void) {
    const char *q = getenv("SN_QUICK");
    quick = q && *q && *q != '0';
    double t0 = now_s();
    test_kernels();
    test_fd();
    printf("kernels and finite differences: %.2f s\n", now_s() - t0);
    float *x = t_frand(4 * (size_t)SIZE * SIZE * 3, -1, 1);
    t0 = now_s();
    test_models(x);
    printf("models: %.2f s\n", now_s() - t0);
    sn_free(x);
    return TEST_SUMMARY();
}
