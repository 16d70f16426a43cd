/* Backward kernels of the non-convolution ops against central finite differences of
 * double-precision forwards written out here, plus accumulate, NULL, thread-determinism and
 * tie/kink conventions. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core.h"
#include "kernels.h"
#include "test.h"
#define T_RNG_SEED 0x13198A2E03707344ULL
#include "testutil.h"

/* Central-difference step, relative to max(1, |v|): truncation ~h^2 and rounding ~1e-16/h are
 * both ~1e-8 with double forwards, far under the 1e-4 tolerance on float gradients. */
#define FD_H 1e-4
#define GRAD_TOL 1e-4

/* dL/dp[i] by central differences; p is one of the arrays the loss reads through ctx. */
static double *fd_grad(t_loss_fn f, const void *ctx, double *p, size_t n) {
    double *g = t_xalloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++)
        g[i] = t_central_diff(f, ctx, p, i, FD_H * (fabs(p[i]) > 1.0 ? fabs(p[i]) : 1.0));
    return g;
}

/* Largest |g - ref| / (|ref| + 1e-2 * max|ref| + 1e-6): relative for every component that is
 * not tiny next to the largest one (whose float rounding would otherwise dominate). */
static double grad_err(const float *g, const double *ref, size_t n) {
    double mx = 0.0, e = 0.0;
    for (size_t i = 0; i < n; i++)
        if (fabs(ref[i]) > mx) mx = fabs(ref[i]);
    for (size_t i = 0; i < n; i++) {
        const double d = fabs(g[i] - ref[i]) / (fabs(ref[i]) + 1e-2 * mx + 1e-6);
        if (!(d <= e)) e = d;
    }
    return e;
}

/* got == pre + base elementwise, exactly (each kernel adds its result to the buffer once). */
static int accumulated(const float *got, const float *pre, const float *base, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (got[i] != pre[i] + base[i]) return 0;
    return 1;
}

static int same_bits(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof *a) == 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Activations                                                                              */

static double clampd(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

static double act_d(sn_act a, double v) {
    switch (a) {
    case SN_ACT_NONE: return v;
    case SN_ACT_RELU: return v > 0 ? v : 0;
    case SN_ACT_RELU6: return clampd(v, 0, 6);
    case SN_ACT_SWISH: return v / (1.0 + exp(-v));
    case SN_ACT_HSWISH: return v * clampd(v + 3, 0, 6) / 6.0;
    case SN_ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case SN_ACT_HSIGMOID: return clampd(v + 3, 0, 6) * (double)0.16667f;
    }
    return v;
}

typedef struct {
    sn_act act;
    size_t n;
    double *x, *r;
} act_ctx;

static double act_loss(const void *p) {
    const act_ctx *c = p;
    double s = 0.0;
    for (size_t i = 0; i < c->n; i++) s += act_d(c->act, c->x[i]) * c->r[i];
    return s;
}

static const sn_act all_acts[] = {SN_ACT_NONE,    SN_ACT_RELU,    SN_ACT_RELU6, SN_ACT_SWISH,
                                  SN_ACT_HSWISH,  SN_ACT_SIGMOID, SN_ACT_HSIGMOID};
#define NACTS (sizeof all_acts / sizeof all_acts[0])

/* Uniform in [-8, 8] but at least 0.05 from every kink (0, +-3, 6). */
static float away_from_kinks(void) {
    for (;;) {
        const float v = t_urand(-8.0f, 8.0f);
        if (fabsf(v) > 0.05f && fabsf(v - 3.0f) > 0.05f && fabsf(v + 3.0f) > 0.05f &&
            fabsf(v - 6.0f) > 0.05f)
            return v;
    }
}

static void test_act(void) {
    const size_t n = 301;
    float *x = t_xalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = away_from_kinks();
    float *r = t_frand(n, -1, 1), *pre = t_frand(n, -1, 1);
    for (size_t a = 0; a < NACTS; a++) {
        const sn_act act = all_acts[a];
        float *g = t_fzero(n), *g1 = t_fcopy(pre, n);
        sn_act_backward_f32(act, n, x, r, g, 1);
        act_ctx c = {act, n, t_dfrom(x, n), t_dfrom(r, n)};
        double *ref = fd_grad(act_loss, &c, c.x, n);
        const double e = grad_err(g, ref, n);
        CHECK(e < GRAD_TOL, "act %s: grad err %g", sn_act_name(act), e);
        sn_act_backward_f32(act, n, x, r, g1, 1);
        CHECK(accumulated(g1, pre, g, n), "act %s: not accumulated", sn_act_name(act));
        sn_free(g);
        sn_free(g1);
        sn_free(c.x);
        sn_free(c.r);
        sn_free(ref);
    }
    sn_free(x);
    sn_free(r);
    sn_free(pre);

    /* Kinks, exact (PyTorch's one-sided conventions): dy = 1 so dx is the derivative. */
    static const float kx[] = {0.0f, 6.0f, -3.0f, 3.0f, -3.5f, 3.5f, 1.0f, 6.5f, -1.0f};
    const size_t nk = sizeof kx / sizeof kx[0];
    static const float want_relu[] = {0, 1, 0, 1, 0, 1, 1, 1, 0};
    static const float want_relu6[] = {0, 0, 0, 1, 0, 1, 1, 0, 0};
    static const float want_hswish[] = {0.5f, 1, -0.5f, 1.5f, 0, 1, 1.0f / 3.0f + 0.5f, 1,
                                        -1.0f / 3.0f + 0.5f};
    static const float h6 = 0.16667f;
    const float want_hsig[] = {h6, 0, 0, 0, 0, 0, h6, 0, h6};
    float ones[9], dx[9];
    for (size_t i = 0; i < nk; i++) ones[i] = 1.0f;
    struct {
        sn_act act;
        const float *want;
    } kinks[] = {{SN_ACT_RELU, want_relu},
                 {SN_ACT_RELU6, want_relu6},
                 {SN_ACT_HSWISH, want_hswish},
                 {SN_ACT_HSIGMOID, want_hsig}};
    for (size_t t = 0; t < sizeof kinks / sizeof kinks[0]; t++) {
        memset(dx, 0, sizeof dx);
        sn_act_backward_f32(kinks[t].act, nk, kx, ones, dx, 1);
        for (size_t i = 0; i < nk; i++)
            CHECK(dx[i] == kinks[t].want[i], "act %s'(%g) = %.9g, want %.9g",
                  sn_act_name(kinks[t].act), kx[i], dx[i], kinks[t].want[i]);
    }

    /* Threads: large enough to split; elementwise so the bits must match exactly. */
    const size_t big = 70001;
    float *bx = t_frand(big, -8, 8), *bd = t_frand(big, -1, 1);
    for (size_t a = 0; a < NACTS; a++) {
        float *g1 = t_fzero(big), *g2 = t_fzero(big), *g3 = t_fzero(big);
        sn_act_backward_f32(all_acts[a], big, bx, bd, g1, 1);
        sn_act_backward_f32(all_acts[a], big, bx, bd, g2, 2);
        sn_act_backward_f32(all_acts[a], big, bx, bd, g3, 3);
        CHECK(same_bits(g1, g2, big) && same_bits(g1, g3, big), "act %s: threads differ",
              sn_act_name(all_acts[a]));
        sn_free(g1);
        sn_free(g2);
        sn_free(g3);
    }
    sn_free(bx);
    sn_free(bd);
    /* NULL dx is skipped. */
    sn_act_backward_f32(SN_ACT_RELU, nk, kx, ones, NULL, 1);
}

/* Equal values (+0 == -0: accumulating onto +0 turns a -0 product into +0). */
static int same_values(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* sn_act_grad_f32 assigns what sn_act_backward_f32 adds: the values of accumulating onto zeros,
 * in place (out == dy) too, and the same bits for any thread count. */
static void test_act_grad(void) {
    const size_t n = 70001;
    float *x = t_frand(n, -8, 8), *dy = t_frand(n, -1, 1);
    for (size_t i = 0; i < 9; i++) x[i * 1000] = (float)i - 4.0f; /* kinks, exactly */
    x[9000] = 6.0f;
    x[9001] = -3.0f;
    for (size_t a = 0; a < NACTS; a++) {
        const sn_act act = all_acts[a];
        float *ref = t_fzero(n), *o1 = t_frand(n, -5, 5), *o2 = t_frand(n, -5, 5);
        sn_act_backward_f32(act, n, x, dy, ref, 1);
        sn_act_grad_f32(act, n, x, dy, o1, 1);
        sn_act_grad_f32(act, n, x, dy, o2, 2);
        float *io = t_fcopy(dy, n);
        sn_act_grad_f32(act, n, x, io, io, 3);
        CHECK(same_values(o1, ref, n), "act grad %s: differs from the accumulating kernel",
              sn_act_name(act));
        CHECK(same_bits(o2, o1, n) && same_bits(io, o1, n),
              "act grad %s: threads or in place differ", sn_act_name(act));
        sn_free(ref), sn_free(o1), sn_free(o2), sn_free(io);
    }
    sn_free(x), sn_free(dy);
}

/* ---------------------------------------------------------------------------------------- */
/* Batch-norm, training mode                                                                */

typedef struct {
    size_t rows;
    int c;
    double eps;
    double *x, *gamma, *beta, *r;
} bn_ctx;

/* Double batch statistics of channel ch (biased variance). */
static void bn_stats(const bn_ctx *b, int ch, double *mean, double *var) {
    double s = 0.0;
    for (size_t i = 0; i < b->rows; i++) s += b->x[i * b->c + ch];
    const double m = s / (double)b->rows;
    double v = 0.0;
    for (size_t i = 0; i < b->rows; i++) {
        const double d = b->x[i * b->c + ch] - m;
        v += d * d;
    }
    *mean = m;
    *var = v / (double)b->rows;
}

/* sum(r * act(bn(x))) in double, batch statistics; SN_ACT_NONE gives the plain BN loss. */
static double bn_act_loss(const bn_ctx *b, sn_act act) {
    double s = 0.0;
    for (int ch = 0; ch < b->c; ch++) {
        double m, v;
        bn_stats(b, ch, &m, &v);
        const double is = 1.0 / sqrt(v + b->eps);
        for (size_t i = 0; i < b->rows; i++) {
            const size_t k = i * b->c + ch;
            s += act_d(act, b->gamma[ch] * (b->x[k] - m) * is + b->beta[ch]) * b->r[k];
        }
    }
    return s;
}

static double bn_loss(const void *p) { return bn_act_loss(p, SN_ACT_NONE); }

static void test_bn_case(size_t rows, int c, float shift) {
    const size_t n = rows * (size_t)c;
    const float eps = 1e-3f, mom = 0.99f;
    float *x = t_frand(n, -2, 2), *gamma = t_frand((size_t)c, 0.5f, 1.5f);
    float *beta = t_frand((size_t)c, -1, 1), *r = t_frand(n, -1, 1);
    for (size_t i = 0; i < n; i++) x[i] += shift;
    float *y = t_fzero(n), *sm = t_fzero((size_t)c), *si = t_fzero((size_t)c);
    float *rm0 = t_frand((size_t)c, -1, 1), *rv0 = t_frand((size_t)c, 0.5f, 2);
    bn_ctx b = {rows, c, eps, t_dfrom(x, n), t_dfrom(gamma, (size_t)c), t_dfrom(beta, (size_t)c),
                t_dfrom(r, n)};

    /* Forward and running statistics, both variance conventions. */
    for (int unb = 0; unb <= 1; unb++) {
        float *rm = t_fcopy(rm0, (size_t)c), *rv = t_fcopy(rv0, (size_t)c);
        sn_batchnorm_train_f32(rows, c, x, gamma, beta, eps, mom, unb, rm, rv, y, sm, si, 1);
        double ey = 0, es = 0, er = 0;
        for (int ch = 0; ch < c; ch++) {
            double m, v;
            bn_stats(&b, ch, &m, &v);
            const double is = 1.0 / sqrt(v + eps);
            for (size_t i = 0; i < rows; i++) {
                const size_t k = i * (size_t)c + ch;
                const double want = gamma[ch] * (b.x[k] - m) * is + beta[ch];
                const double d = fabs(y[k] - want) / (fabs(want) > 1 ? fabs(want) : 1);
                if (!(d <= ey)) ey = d;
            }
            const double dm = fabs(sm[ch] - m) / (fabs(m) > 1 ? fabs(m) : 1);
            const double di = fabs(si[ch] - is) / is;
            if (!(dm <= es)) es = dm;
            if (!(di <= es)) es = di;
            const double bv = (unb && rows > 1) ? v * (double)rows / (double)(rows - 1) : v;
            const double wm = (double)mom * rm0[ch] + (1.0 - (double)mom) * m;
            const double wv = (double)mom * rv0[ch] + (1.0 - (double)mom) * bv;
            const double d1 = fabs(rm[ch] - wm) / (fabs(wm) > 1 ? fabs(wm) : 1);
            const double d2 = fabs(rv[ch] - wv) / wv;
            if (!(d1 <= er)) er = d1;
            if (!(d2 <= er)) er = d2;
        }
        CHECK(ey < 2e-5, "bn %zux%d shift %g: y err %g", rows, c, shift, ey);
        CHECK(es < 1e-6, "bn %zux%d shift %g: saved stats err %g", rows, c, shift, es);
        CHECK(er < 1e-6, "bn %zux%d unbiased=%d: running stats err %g", rows, c, unb, er);
        sn_free(rm);
        sn_free(rv);
    }

    /* Gradients for x (through the batch statistics), gamma and beta. */
    float *dx = t_fzero(n), *dg = t_fzero((size_t)c), *db = t_fzero((size_t)c);
    sn_batchnorm_train_backward_f32(rows, c, x, gamma, sm, si, r, dx, dg, db, 1);
    double *fx = fd_grad(bn_loss, &b, b.x, n);
    double *fg = fd_grad(bn_loss, &b, b.gamma, (size_t)c);
    double *fb = fd_grad(bn_loss, &b, b.beta, (size_t)c);
    double e = grad_err(dx, fx, n);
    CHECK(e < GRAD_TOL, "bn %zux%d shift %g: dx err %g", rows, c, shift, e);
    e = grad_err(dg, fg, (size_t)c);
    CHECK(e < GRAD_TOL, "bn %zux%d: dgamma err %g", rows, c, e);
    e = grad_err(db, fb, (size_t)c);
    CHECK(e < GRAD_TOL, "bn %zux%d: dbeta err %g", rows, c, e);

    /* Accumulate, and NULL skipping one gradient leaves the others as they were. */
    float *px = t_frand(n, -1, 1), *pg = t_frand((size_t)c, -1, 1), *pb = t_frand((size_t)c, -1, 1);
    float *ax = t_fcopy(px, n), *ag = t_fcopy(pg, (size_t)c), *ab = t_fcopy(pb, (size_t)c);
    sn_batchnorm_train_backward_f32(rows, c, x, gamma, sm, si, r, ax, ag, ab, 1);
    CHECK(accumulated(ax, px, dx, n) && accumulated(ag, pg, dg, (size_t)c) &&
              accumulated(ab, pb, db, (size_t)c),
          "bn %zux%d: not accumulated", rows, c);
    float *ng = t_fzero((size_t)c);
    sn_batchnorm_train_backward_f32(rows, c, x, gamma, sm, si, r, NULL, ng, NULL, 1);
    CHECK(same_bits(ng, dg, (size_t)c), "bn %zux%d: dgamma alone differs", rows, c);
    sn_free(ng);
    sn_free(px), sn_free(pg), sn_free(pb), sn_free(ax), sn_free(ag), sn_free(ab);
    sn_free(fx), sn_free(fg), sn_free(fb), sn_free(dx), sn_free(dg), sn_free(db);
    sn_free(b.x), sn_free(b.gamma), sn_free(b.beta), sn_free(b.r);
    sn_free(x), sn_free(gamma), sn_free(beta), sn_free(r), sn_free(y), sn_free(sm);
    sn_free(si), sn_free(rm0), sn_free(rv0);
}

/* The fused BN + activation of the training path against the plain pair (sn_batchnorm_train_f32,
 * sn_act_f32, sn_act_backward_f32, sn_batchnorm_train_backward_f32), plus a finite-difference
 * check of its own backward and thread determinism. */
typedef struct {
    bn_ctx b;
    sn_act act;
} bnact_ctx;

static double bnact_loss(const void *p) {
    const bnact_ctx *q = p;
    return bn_act_loss(&q->b, q->act);
}

static double max_rel_err(const float *got, const float *want, size_t n) {
    double mx = 0.0, e = 0.0;
    for (size_t i = 0; i < n; i++)
        if (fabs(want[i]) > mx) mx = fabs(want[i]);
    if (mx < 1.0) mx = 1.0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - want[i]) / mx;
        if (!(d <= e)) e = d;
    }
    return e;
}

static void test_bn_act_case(size_t rows, int c, float shift, sn_act act, int fd) {
    const size_t n = rows * (size_t)c;
    const float eps = 1e-3f, mom = 0.99f;
    float *x = t_frand(n, -2, 2), *gamma = t_frand((size_t)c, 0.5f, 1.5f);
    float *beta = t_frand((size_t)c, -1, 1), *dy = t_frand(n, -1, 1);
    for (size_t i = 0; i < n; i++) x[i] += shift;
    /* Plain pair. */
    float *u = t_fzero(n), *yp = t_fzero(n), *sm = t_fzero((size_t)c), *si = t_fzero((size_t)c);
    float *rm = t_frand((size_t)c, -1, 1), *rv = t_frand((size_t)c, 0.5f, 2);
    float *rm2 = t_fcopy(rm, (size_t)c), *rv2 = t_fcopy(rv, (size_t)c);
    sn_batchnorm_train_f32(rows, c, x, gamma, beta, eps, mom, 1, rm, rv, u, sm, si, 2);
    sn_act_f32(act, n, u, yp, 2);
    float *du = t_fzero(n), *dxp = t_fzero(n), *dgp = t_fzero((size_t)c), *dbp = t_fzero((size_t)c);
    sn_act_backward_f32(act, n, u, dy, du, 2);
    sn_batchnorm_train_backward_f32(rows, c, x, gamma, sm, si, du, dxp, dgp, dbp, 2);
    /* Fused. */
    float *yf = t_fzero(n), *fm = t_fzero((size_t)c), *fi = t_fzero((size_t)c);
    sn_batchnorm_act_train_f32(rows, c, x, gamma, beta, eps, mom, 1, rm2, rv2, act, yf, fm, fi, 2);
    float *dxf = t_frand(n, -9, 9), *dgf = t_fzero((size_t)c), *dbf = t_fzero((size_t)c);
    sn_batchnorm_act_train_backward_f32(rows, c, x, gamma, beta, fm, fi, act, dy, dxf, dgf, dbf, 2);
    const char *an = sn_act_name(act);
    double e = max_rel_err(yf, yp, n);
    CHECK(e < 2e-5, "bn+%s %zux%d shift %g: y err %g", an, rows, c, shift, e);
    e = fmax(max_rel_err(fm, sm, (size_t)c), max_rel_err(fi, si, (size_t)c));
    CHECK(e < 1e-6, "bn+%s %zux%d shift %g: saved stats err %g", an, rows, c, shift, e);
    e = fmax(max_rel_err(rm2, rm, (size_t)c), max_rel_err(rv2, rv, (size_t)c));
    CHECK(e < 1e-6, "bn+%s %zux%d: running stats err %g", an, rows, c, e);
    e = max_rel_err(dxf, dxp, n);
    CHECK(e < 1e-4, "bn+%s %zux%d shift %g: dx err %g", an, rows, c, shift, e);
    e = fmax(max_rel_err(dgf, dgp, (size_t)c), max_rel_err(dbf, dbp, (size_t)c));
    CHECK(e < 1e-4, "bn+%s %zux%d: dgamma/dbeta err %g", an, rows, c, e);
    if (fd) {
        bnact_ctx q = {{rows, c, eps, t_dfrom(x, n), t_dfrom(gamma, (size_t)c), t_dfrom(beta, (size_t)c),
                        t_dfrom(dy, n)},
                       act};
        double *fx = fd_grad(bnact_loss, &q, q.b.x, n);
        double *fg = fd_grad(bnact_loss, &q, q.b.gamma, (size_t)c);
        double *fb = fd_grad(bnact_loss, &q, q.b.beta, (size_t)c);
        e = grad_err(dxf, fx, n);
        CHECK(e < GRAD_TOL, "bn+%s %zux%d: dx vs finite differences err %g", an, rows, c, e);
        e = fmax(grad_err(dgf, fg, (size_t)c), grad_err(dbf, fb, (size_t)c));
        CHECK(e < GRAD_TOL, "bn+%s %zux%d: dgamma/dbeta vs finite differences err %g", an, rows,
              c, e);
        sn_free(fx), sn_free(fg), sn_free(fb);
        sn_free(q.b.x), sn_free(q.b.gamma), sn_free(q.b.beta), sn_free(q.b.r);
    }
    /* Thread counts give the same bits; NULL outputs are skipped without changing the rest. */
    float *y1 = t_fzero(n), *s1 = t_fzero(2 * (size_t)c), *d1 = t_fzero(n), *g1 = t_fzero(2 * (size_t)c);
    sn_batchnorm_act_train_f32(rows, c, x, gamma, beta, eps, mom, 0, NULL, NULL, act, y1, s1,
                               s1 + c, 1);
    sn_batchnorm_act_train_backward_f32(rows, c, x, gamma, beta, s1, s1 + c, act, dy, d1, g1,
                                        g1 + c, 3);
    float *g2 = t_fzero(2 * (size_t)c);
    sn_batchnorm_act_train_backward_f32(rows, c, x, gamma, beta, s1, s1 + c, act, dy, NULL, g2,
                                        NULL, 1);
    CHECK(same_bits(y1, yf, n) && same_bits(s1, fm, (size_t)c) && same_bits(s1 + c, fi, (size_t)c),
          "bn+%s %zux%d: forward differs across thread counts", an, rows, c);
    CHECK(same_bits(d1, dxf, n) && same_bits(g1, dgf, (size_t)c) &&
              same_bits(g1 + c, dbf, (size_t)c) && same_bits(g2, dgf, (size_t)c),
          "bn+%s %zux%d: backward differs across thread counts or with NULL outputs", an, rows, c);
    sn_free(y1), sn_free(s1), sn_free(d1), sn_free(g1), sn_free(g2);
    sn_free(x), sn_free(gamma), sn_free(beta), sn_free(dy), sn_free(u), sn_free(yp), sn_free(sm);
    sn_free(si), sn_free(rm), sn_free(rv), sn_free(rm2), sn_free(rv2), sn_free(du), sn_free(dxp);
    sn_free(dgp), sn_free(dbp), sn_free(yf), sn_free(fm), sn_free(fi), sn_free(dxf), sn_free(dgf);
    sn_free(dbf);
}

static void test_bn_act(void) {
    for (size_t a = 0; a < NACTS; a++) {
        test_bn_act_case(37, 13, 0.0f, all_acts[a], 1);
        test_bn_act_case(16 * 256 + 37, 130, 0.0f, all_acts[a], 0); /* 16 blocks, 2 chunks */
    }
    test_bn_act_case(5, 3, 10.0f, SN_ACT_RELU, 1);
    test_bn_act_case(3000, 20, 100.0f, SN_ACT_SWISH, 0); /* one-pass variance, mean far off 0 */
    test_bn_act_case(1, 4, 0.0f, SN_ACT_NONE, 0);
}

/* The batch-norm statistics taken inside the convolution's output tiles (sn_conv2d_stats_f32)
 * against the separate pass that is their reference (sn_batchnorm_tile_stats_f32, the same
 * arithmetic on the same tiles): the same bits, for any thread count, for a GEMM convolution
 * (im2col and direct 1x1) and a depthwise one. */
static void test_bn_conv_tiles_case(int n, int h, int w, int cin, int cout, int k, int stride,
                                    int groups) {
    const sn_conv_desc d = {k, k, stride, stride, {k / 2, k / 2, k / 2, k / 2}, groups, cin, cout};
    const int oh = sn_window_out(h, k, stride, k / 2, k / 2);
    const int ow = sn_window_out(w, k, stride, k / 2, k / 2);
    const size_t rows = (size_t)n * oh * ow, ny = rows * (size_t)cout;
    float *x = t_frand((size_t)n * h * w * cin, -1, 1);
    float *wt = t_frand((size_t)k * k * (cin / groups) * cout, -1, 1);
    float *bias = t_frand((size_t)cout, 2, 3); /* a mean away from 0 */
    const sn_epilogue ep = {NULL, bias, NULL, SN_ACT_NONE, NULL};
    const long tile = sn_conv2d_stat_tile(&d, n, oh, ow);
    CHECK(tile >= 1, "conv tiles: tile %ld", tile);
    const size_t ntiles = (rows + (size_t)tile - 1) / (size_t)tile, np = ntiles * 2 * (size_t)cout;
    float *yr = t_fzero(ny), *y1 = t_fzero(ny), *y3 = t_fzero(ny);
    double *pr = t_xalloc(np * sizeof *pr), *p1 = t_xalloc(np * sizeof *p1);
    double *p3 = t_xalloc(np * sizeof *p3);
    CHECK_OK(sn_conv2d_f32(&d, n, h, w, x, wt, &ep, oh, ow, yr, 2));
    sn_batchnorm_tile_stats_f32(rows, cout, yr, (size_t)tile, pr, 2);
    CHECK_OK(sn_conv2d_stats_f32(&d, n, h, w, x, wt, &ep, oh, ow, y1, p1, 1));
    CHECK_OK(sn_conv2d_stats_f32(&d, n, h, w, x, wt, &ep, oh, ow, y3, p3, 3));
    CHECK(same_bits(y1, yr, ny) && same_bits(y3, yr, ny),
          "conv %dx%d/%d groups %d: output differs with statistics", k, k, stride, groups);
    CHECK(memcmp(p1, pr, np * sizeof *pr) == 0 && memcmp(p3, pr, np * sizeof *pr) == 0,
          "conv %dx%d/%d groups %d, %zu rows in tiles of %ld: statistics differ from the "
          "separate pass", k, k, stride, groups, rows, tile);
    sn_free(x), sn_free(wt), sn_free(bias), sn_free(yr), sn_free(y1), sn_free(y3);
    sn_free(pr), sn_free(p1), sn_free(p3);
}

/* The training batch-norm from per-tile statistics against the one-pass reference
 * (sn_batchnorm_act_train_f32): the same statistics within float rounding, the same output
 * within the fused kernels' tolerance, the same bits for any thread count. */
static void test_bn_parts_case(size_t rows, int c, size_t tile, float shift, sn_act act) {
    const size_t n = rows * (size_t)c;
    const float eps = 1e-3f, mom = 0.9f;
    float *x = t_frand(n, -2, 2), *gamma = t_frand((size_t)c, 0.5f, 1.5f);
    float *beta = t_frand((size_t)c, -1, 1);
    for (size_t i = 0; i < n; i++) x[i] += shift;
    float *rm = t_frand((size_t)c, -1, 1), *rv = t_frand((size_t)c, 0.5f, 2);
    float *rm2 = t_fcopy(rm, (size_t)c), *rv2 = t_fcopy(rv, (size_t)c);
    float *yp = t_fzero(n), *sp = t_fzero(2 * (size_t)c);
    sn_batchnorm_act_train_f32(rows, c, x, gamma, beta, eps, mom, 1, rm, rv, act, yp, sp, sp + c,
                               2);
    const size_t np = (rows + tile - 1) / tile * 2 * (size_t)c;
    double *part = t_xalloc(np * sizeof *part);
    sn_batchnorm_tile_stats_f32(rows, c, x, tile, part, 3);
    float *yf = t_fzero(n), *sf = t_fzero(2 * (size_t)c), *y1 = t_fzero(n), *s1 = t_fzero(2 * (size_t)c);
    sn_batchnorm_act_train_parts_f32(rows, c, x, tile, part, gamma, beta, eps, mom, 1, rm2, rv2,
                                     act, yf, sf, sf + c, 2);
    sn_batchnorm_act_train_parts_f32(rows, c, x, tile, part, gamma, beta, eps, mom, 1, NULL, NULL,
                                     act, y1, s1, s1 + c, 1);
    const char *an = sn_act_name(act);
    double e = max_rel_err(sf, sp, 2 * (size_t)c);
    CHECK(e < 1e-6, "bn parts+%s %zux%d tile %zu shift %g: saved stats err %g", an, rows, c, tile,
          shift, e);
    e = fmax(max_rel_err(rm2, rm, (size_t)c), max_rel_err(rv2, rv, (size_t)c));
    CHECK(e < 1e-6, "bn parts+%s %zux%d tile %zu: running stats err %g", an, rows, c, tile, e);
    e = max_rel_err(yf, yp, n);
    CHECK(e < 2e-5, "bn parts+%s %zux%d tile %zu shift %g: y err %g", an, rows, c, tile, shift, e);
    CHECK(same_bits(y1, yf, n) && same_bits(s1, sf, 2 * (size_t)c),
          "bn parts+%s %zux%d tile %zu: differs across thread counts", an, rows, c, tile);
    sn_free(x), sn_free(gamma), sn_free(beta), sn_free(rm), sn_free(rv), sn_free(rm2);
    sn_free(rv2), sn_free(yp), sn_free(sp), sn_free(part), sn_free(yf), sn_free(sf);
    sn_free(y1), sn_free(s1);
}

/* A mean 10^4 times the spread: the per-tile statistics must still give the variance to float
 * rounding (the exact one in double, two passes). E[x^2] - E[x]^2 in double would lose about
 * 8 of its 16 digits here, and in float all of them. */
static void test_bn_parts_far_mean(void) {
    const size_t rows = 5000, tile = 120;
    const int c = 3;
    const size_t n = rows * (size_t)c;
    float *x = t_frand(n, -0.5f, 0.5f);
    for (size_t i = 0; i < n; i++) x[i] += 3000.0f;
    double *part = t_xalloc((rows + tile - 1) / tile * 2 * (size_t)c * sizeof *part);
    sn_batchnorm_tile_stats_f32(rows, c, x, tile, part, 2);
    float rm[3] = {0, 0, 0}, rv[3] = {0, 0, 0}, sm[3], si[3];
    /* momentum 0: the running averages become the batch's mean and (biased) variance */
    sn_batchnorm_act_train_parts_f32(rows, c, x, tile, part, NULL, NULL, 0.0f, 0.0f, 0, rm, rv,
                                     SN_ACT_NONE, NULL, sm, si, 2);
    for (int k = 0; k < c; k++) {
        double m = 0.0, v = 0.0;
        for (size_t r = 0; r < rows; r++) m += x[r * (size_t)c + (size_t)k];
        m /= (double)rows;
        for (size_t r = 0; r < rows; r++) {
            const double dd = x[r * (size_t)c + (size_t)k] - m;
            v += dd * dd;
        }
        v /= (double)rows;
        const double ev = fabs(rv[k] - v) / v, em = fabs(rm[k] - m) / sqrt(v);
        CHECK(ev < 3e-7 && em < 1e-3, "bn parts, mean 3000 spread 0.3: channel %d var %.9g vs "
              "%.9g (err %g), mean err %g std", k, rv[k], v, ev, em);
    }
    sn_free(x), sn_free(part);
}

static void test_bn_conv_stats(void) {
    test_bn_conv_tiles_case(2, 9, 7, 5, 19, 3, 1, 1);      /* im2col, tiles of 12 */
    test_bn_conv_tiles_case(3, 20, 20, 8, 130, 3, 2, 1);   /* 300 rows */
    test_bn_conv_tiles_case(4, 17, 19, 16, 40, 1, 1, 1);   /* direct 1x1, 1292 rows: tiles of 120 */
    test_bn_conv_tiles_case(2, 11, 13, 21, 21, 3, 1, 21);  /* depthwise: one output row a tile */
    test_bn_conv_tiles_case(2, 12, 10, 35, 35, 3, 2, 35);
    test_bn_conv_tiles_case(2, 8, 8, 12, 24, 3, 1, 4);     /* grouped */
    for (size_t a = 0; a < NACTS; a++) test_bn_parts_case(1292, 40, 120, 0.0f, all_acts[a]);
    test_bn_parts_case(16 * 256 + 37, 600, 120, 5.0f, SN_ACT_SWISH); /* two channel chunks */
    test_bn_parts_case(37, 13, 12, 100.0f, SN_ACT_RELU);
    test_bn_parts_case(7, 5, 1, 0.0f, SN_ACT_NONE); /* one-row tiles */
    test_bn_parts_case(1, 4, 12, 0.0f, SN_ACT_NONE);
    test_bn_parts_far_mean();
}

static void test_bn_threads(void) {
    /* Enough rows for all 16 reduction blocks, and channels spanning two channel chunks. */
    const size_t rows = 16 * 256 + 37;
    const int c = 70;
    const size_t n = rows * (size_t)c;
    float *x = t_frand(n, -3, 5), *gamma = t_frand((size_t)c, 0.5f, 1.5f);
    float *beta = t_frand((size_t)c, -1, 1), *dy = t_frand(n, -1, 1);
    float *out[3][7];
    for (int t = 0; t < 3; t++) {
        float *y = t_fzero(n), *sm = t_fzero((size_t)c), *si = t_fzero((size_t)c);
        float *rm = t_fzero((size_t)c), *rv = t_fzero((size_t)c);
        float *dx = t_fzero(n), *dgb = t_fzero(2 * (size_t)c);
        sn_batchnorm_train_f32(rows, c, x, gamma, beta, 1e-3f, 0.99f, 1, rm, rv, y, sm, si, t + 1);
        sn_batchnorm_train_backward_f32(rows, c, x, gamma, sm, si, dy, dx, dgb, dgb + c, t + 1);
        out[t][0] = y, out[t][1] = sm, out[t][2] = si, out[t][3] = rm, out[t][4] = rv;
        out[t][5] = dx, out[t][6] = dgb;
    }
    const size_t len[7] = {n, (size_t)c, (size_t)c, (size_t)c, (size_t)c, n, 2 * (size_t)c};
    for (int k = 0; k < 7; k++) {
        CHECK(same_bits(out[0][k], out[1][k], len[k]) && same_bits(out[0][k], out[2][k], len[k]),
              "bn threads: output %d differs", k);
        for (int t = 0; t < 3; t++) sn_free(out[t][k]);
    }
    sn_free(x), sn_free(gamma), sn_free(beta), sn_free(dy);
}

/* ---------------------------------------------------------------------------------------- */
/* Max-pool                                                                                 */

typedef struct {
    int n, h, w, c, k, s, oh, ow;
    sn_pad pad;
    double *x, *r;
} pool_ctx;

static double pool_loss(const void *p) {
    const pool_ctx *q = p;
    double s = 0.0;
    for (int b = 0; b < q->n; b++)
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++)
                for (int ch = 0; ch < q->c; ch++) {
                    double m = -INFINITY;
                    for (int ky = 0; ky < q->k; ky++)
                        for (int kx = 0; kx < q->k; kx++) {
                            const int iy = oy * q->s - q->pad.top + ky;
                            const int ix = ox * q->s - q->pad.left + kx;
                            if (iy < 0 || iy >= q->h || ix < 0 || ix >= q->w) continue;
                            const double v = q->x[(((size_t)b * q->h + iy) * q->w + ix) * q->c + ch];
                            if (v > m) m = v;
                        }
                    s += m * q->r[(((size_t)b * q->oh + oy) * q->ow + ox) * q->c + ch];
                }
    return s;
}

/* The documented rule written out as a plain scatter: first strict maximum in row-major window
 * order, padded cells skipped, empty/-inf windows route nothing. Same add order per dx cell as
 * any race-free kernel visiting outputs in raster order, so the comparison is exact. */
static void pool_scatter_ref(const pool_ctx *q, const float *x, const float *dy, float *dx) {
    for (int b = 0; b < q->n; b++)
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++)
                for (int ch = 0; ch < q->c; ch++) {
                    float m = -INFINITY;
                    long arg = -1;
                    for (int ky = 0; ky < q->k; ky++)
                        for (int kx = 0; kx < q->k; kx++) {
                            const int iy = oy * q->s - q->pad.top + ky;
                            const int ix = ox * q->s - q->pad.left + kx;
                            if (iy < 0 || iy >= q->h || ix < 0 || ix >= q->w) continue;
                            const long i = (((long)b * q->h + iy) * q->w + ix) * q->c + ch;
                            if (x[i] > m) m = x[i], arg = i;
                        }
                    if (arg >= 0) dx[arg] += dy[(((size_t)b * q->oh + oy) * q->ow + ox) * q->c + ch];
                }
}

static pool_ctx pool_geom(int n, int h, int w, int c, int k, int s, sn_pad pad) {
    pool_ctx q = {n, h, w, c, k, s, 0, 0, pad, NULL, NULL};
    q.oh = sn_window_out(h, k, s, pad.top, pad.bottom);
    q.ow = sn_window_out(w, k, s, pad.left, pad.right);
    return q;
}

static sn_pad same_pad(int h, int w, int k, int s) {
    sn_pad p;
    sn_pad_same_1d(h, k, s, &p.top, &p.bottom);
    sn_pad_same_1d(w, k, s, &p.left, &p.right);
    return p;
}

/* Distinct values 0.01 apart (so no FD step can change a window's winner), shuffled. */
static float *distinct(size_t n) {
    float *x = t_xalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = 0.01f * (float)i - 0.005f * (float)n;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)t_urand(0.0f, (float)i);
        if (j >= i) j = i - 1;
        const float t = x[i - 1];
        x[i - 1] = x[j], x[j] = t;
    }
    return x;
}

static void test_pool_fd(pool_ctx q) {
    const size_t nx = (size_t)q.n * q.h * q.w * q.c, ny = (size_t)q.n * q.oh * q.ow * q.c;
    float *x = distinct(nx), *r = t_frand(ny, -1, 1), *g = t_fzero(nx);
    sn_maxpool_backward_f32(q.n, q.h, q.w, q.c, q.k, q.s, q.pad, q.oh, q.ow, x, r, g, 1);
    q.x = t_dfrom(x, nx), q.r = t_dfrom(r, ny);
    double *ref = fd_grad(pool_loss, &q, q.x, nx);
    const double e = grad_err(g, ref, nx);
    CHECK(e < GRAD_TOL, "maxpool %dx%dx%d k%d s%d: grad err %g", q.h, q.w, q.c, q.k, q.s, e);
    sn_free(x), sn_free(r), sn_free(g), sn_free(q.x), sn_free(q.r), sn_free(ref);
}

/* Ties (values from a two-element set), all negative, windows hanging over padding: exact
 * against the scatter reference, accumulating onto a pre-filled buffer, for 1, 2, 3 threads. */
static void test_pool_exact(pool_ctx q) {
    const size_t nx = (size_t)q.n * q.h * q.w * q.c, ny = (size_t)q.n * q.oh * q.ow * q.c;
    float *x = t_xalloc(nx * sizeof *x);
    for (size_t i = 0; i < nx; i++) x[i] = t_urand(0, 1) < 0.5f ? -1.0f : -2.0f;
    float *dy = t_frand(ny, -1, 1), *pre = t_frand(nx, -1, 1), *want = t_fcopy(pre, nx);
    pool_scatter_ref(&q, x, dy, want);
    for (int t = 1; t <= 3; t++) {
        float *g = t_fcopy(pre, nx);
        sn_maxpool_backward_f32(q.n, q.h, q.w, q.c, q.k, q.s, q.pad, q.oh, q.ow, x, dy, g, t);
        CHECK(same_bits(g, want, nx), "maxpool ties %dx%dx%d k%d s%d pad %d,%d threads %d", q.h,
              q.w, q.c, q.k, q.s, q.pad.top, q.pad.left, t);
        sn_free(g);
    }
    sn_free(x), sn_free(dy), sn_free(pre), sn_free(want);
}

static void test_pool(void) {
    test_pool_fd(pool_geom(2, 7, 6, 3, 3, 2, same_pad(7, 6, 3, 2)));
    test_pool_fd(pool_geom(1, 5, 5, 70, 3, 1, (sn_pad){1, 1, 1, 1}));
    test_pool_fd(pool_geom(2, 6, 4, 5, 2, 2, (sn_pad){0, 0, 0, 0}));
    test_pool_exact(pool_geom(2, 7, 6, 3, 3, 2, same_pad(7, 6, 3, 2)));
    test_pool_exact(pool_geom(1, 9, 8, 70, 3, 1, (sn_pad){1, 1, 1, 1}));
    test_pool_exact(pool_geom(2, 17, 17, 67, 3, 2, (sn_pad){1, 1, 1, 1}));
    /* Windows lying wholly in the padding (output -inf) route nothing. */
    test_pool_exact(pool_geom(1, 4, 4, 2, 2, 2, (sn_pad){2, 2, 0, 0}));

    /* By hand: a 3x3 map all -2, k3 s2, pad 1 each side: every window's first valid cell is the
     * one nearest the top-left, never a (zero) padded cell. */
    const float x[9] = {-2, -2, -2, -2, -2, -2, -2, -2, -2};
    const float dy[4] = {1, 2, 3, 4};
    float dx[9] = {0};
    sn_maxpool_backward_f32(1, 3, 3, 1, 3, 2, (sn_pad){1, 1, 1, 1}, 2, 2, x, dy, dx, 1);
    const float want[9] = {1, 2, 0, 3, 4, 0, 0, 0, 0};
    CHECK(same_bits(dx, want, 9), "maxpool all-negative by hand: %g %g %g / %g %g %g", dx[0],
          dx[1], dx[2], dx[3], dx[4], dx[5]);
}

/* ---------------------------------------------------------------------------------------- */
/* Nearest upsample and resize                                                              */

typedef struct {
    int n, h, w, c, oh, ow, fh, fw; /* fh == 0: resize (floor(dst*in/out), clamped) */
    double *x, *r;
} rs_ctx;

static int rs_src(const rs_ctx *q, int dst, int in, int out, int f) {
    if (q->fh) return dst / f;
    const long s = (long)dst * in / out;
    return (int)(s < in - 1 ? s : in - 1);
}

static double rs_loss(const void *p) {
    const rs_ctx *q = p;
    double s = 0.0;
    for (int b = 0; b < q->n; b++)
        for (int i = 0; i < q->oh; i++)
            for (int j = 0; j < q->ow; j++) {
                const int si = rs_src(q, i, q->h, q->oh, q->fh), sj = rs_src(q, j, q->w, q->ow, q->fw);
                for (int ch = 0; ch < q->c; ch++)
                    s += q->x[(((size_t)b * q->h + si) * q->w + sj) * q->c + ch] *
                         q->r[(((size_t)b * q->oh + i) * q->ow + j) * q->c + ch];
            }
    return s;
}

static void rs_backward(const rs_ctx *q, const float *dy, float *dx, int nt) {
    if (q->fh)
        sn_upsample_nearest_backward_f32(q->n, q->h, q->w, q->c, q->fh, q->fw, dy, dx, nt);
    else
        sn_resize_nearest_backward_f32(q->n, q->h, q->w, q->c, q->oh, q->ow, dy, dx, nt);
}

static void test_rs_case(int n, int h, int w, int c, int oh, int ow, int fh, int fw) {
    rs_ctx q = {n, h, w, c, fh ? h * fh : oh, fw ? w * fw : ow, fh, fw, NULL, NULL};
    const size_t nx = (size_t)n * h * w * c, ny = (size_t)n * q.oh * q.ow * c;
    float *r = t_frand(ny, -1, 1), *x = t_frand(nx, -1, 1), *g = t_fzero(nx);
    rs_backward(&q, r, g, 1);
    q.x = t_dfrom(x, nx), q.r = t_dfrom(r, ny);
    double *ref = fd_grad(rs_loss, &q, q.x, nx);
    const double e = grad_err(g, ref, nx);
    CHECK(e < GRAD_TOL, "%s %dx%d -> %dx%d c%d: grad err %g", fh ? "upsample" : "resize", h, w,
          q.oh, q.ow, c, e);
    /* Every dy lands somewhere exactly once: the sums agree. */
    double sy = 0, sx = 0;
    for (size_t i = 0; i < ny; i++) sy += r[i];
    for (size_t i = 0; i < nx; i++) sx += g[i];
    CHECK(fabs(sy - sx) < 1e-4 * (1 + fabs(sy)), "%s %dx%d -> %dx%d: mass %g vs %g",
          fh ? "upsample" : "resize", h, w, q.oh, q.ow, sx, sy);
    float *pre = t_frand(nx, -1, 1);
    for (int t = 1; t <= 3; t++) {
        float *a = t_fcopy(pre, nx);
        rs_backward(&q, r, a, t);
        CHECK(accumulated(a, pre, g, nx), "%s %dx%d -> %dx%d: threads %d / accumulate",
              fh ? "upsample" : "resize", h, w, q.oh, q.ow, t);
        sn_free(a);
    }
    sn_free(r), sn_free(x), sn_free(g), sn_free(q.x), sn_free(q.r), sn_free(ref), sn_free(pre);
}

static void test_resize(void) {
    test_rs_case(2, 3, 4, 5, 0, 0, 2, 3);
    test_rs_case(1, 2, 2, 70, 0, 0, 2, 2);
    test_rs_case(2, 7, 3, 3, 4, 5, 0, 0); /* 7->4 down, 3->5 up, both non-integer */
    test_rs_case(2, 3, 7, 3, 5, 4, 0, 0);
    test_rs_case(1, 4, 8, 2, 8, 4, 0, 0); /* integer up and down */
    test_rs_case(1, 5, 5, 2, 5, 5, 0, 0); /* identity */
    test_rs_case(1, 5, 6, 2, 1, 1, 0, 0); /* to 1x1 */
    test_rs_case(1, 1, 1, 3, 3, 2, 0, 0); /* from 1x1 */
    test_rs_case(3, 9, 11, 70, 4, 17, 0, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Global average pool, channel gate, axpy, drop path                                      */

typedef struct {
    int n, hw, c;
    double *x, *g, *r;
} ew_ctx;

static double gap_loss(const void *p) {
    const ew_ctx *q = p;
    double s = 0.0;
    for (int b = 0; b < q->n; b++)
        for (int ch = 0; ch < q->c; ch++) {
            double m = 0.0;
            for (int i = 0; i < q->hw; i++) m += q->x[((size_t)b * q->hw + i) * q->c + ch];
            s += m / q->hw * q->r[(size_t)b * q->c + ch];
        }
    return s;
}

static double gate_loss(const void *p) {
    const ew_ctx *q = p;
    double s = 0.0;
    for (int b = 0; b < q->n; b++)
        for (int i = 0; i < q->hw; i++)
            for (int ch = 0; ch < q->c; ch++) {
                const size_t k = ((size_t)b * q->hw + i) * q->c + ch;
                s += q->x[k] * q->g[(size_t)b * q->c + ch] * q->r[k];
            }
    return s;
}

static void test_gap(void) {
    const int n = 2, hw = 7, c = 5;
    const size_t nx = (size_t)n * hw * c, ny = (size_t)n * c;
    float *x = t_frand(nx, -1, 1), *r = t_frand(ny, -1, 1), *g = t_fzero(nx), *pre = t_frand(nx, -1, 1);
    sn_gap_backward_f32(n, hw, c, r, g);
    ew_ctx q = {n, hw, c, t_dfrom(x, nx), NULL, t_dfrom(r, ny)};
    double *ref = fd_grad(gap_loss, &q, q.x, nx);
    const double e = grad_err(g, ref, nx);
    CHECK(e < GRAD_TOL, "gap: grad err %g", e);
    float *a = t_fcopy(pre, nx);
    sn_gap_backward_f32(n, hw, c, r, a);
    CHECK(accumulated(a, pre, g, nx), "gap: not accumulated");
    sn_gap_backward_f32(n, hw, c, r, NULL);
    sn_free(x), sn_free(r), sn_free(g), sn_free(pre), sn_free(a), sn_free(q.x), sn_free(q.r);
    sn_free(ref);
}

static void test_gate(void) {
    const int n = 2, hw = 6, c = 5;
    const size_t nx = (size_t)n * hw * c, ng = (size_t)n * c;
    float *x = t_frand(nx, -1, 1), *gt = t_frand(ng, -1, 1), *r = t_frand(nx, -1, 1);
    float *dx = t_fzero(nx), *dg = t_fzero(ng);
    sn_mul_channel_backward_f32(n, hw, c, x, gt, r, dx, dg, 1);
    ew_ctx q = {n, hw, c, t_dfrom(x, nx), t_dfrom(gt, ng), t_dfrom(r, nx)};
    double *fx = fd_grad(gate_loss, &q, q.x, nx), *fg = fd_grad(gate_loss, &q, q.g, ng);
    double e = grad_err(dx, fx, nx);
    CHECK(e < GRAD_TOL, "mul_channel: dx err %g", e);
    e = grad_err(dg, fg, ng);
    CHECK(e < GRAD_TOL, "mul_channel: dg err %g", e);
    float *px = t_frand(nx, -1, 1), *pg = t_frand(ng, -1, 1);
    float *ax = t_fcopy(px, nx), *ag = t_fcopy(pg, ng);
    sn_mul_channel_backward_f32(n, hw, c, x, gt, r, ax, NULL, 1);
    sn_mul_channel_backward_f32(n, hw, c, x, gt, r, NULL, ag, 1);
    CHECK(accumulated(ax, px, dx, nx) && accumulated(ag, pg, dg, ng),
          "mul_channel: not accumulated (or NULL not skipped)");
    sn_free(x), sn_free(gt), sn_free(r), sn_free(dx), sn_free(dg), sn_free(q.x), sn_free(q.g);
    sn_free(q.r), sn_free(fx), sn_free(fg), sn_free(px), sn_free(pg), sn_free(ax), sn_free(ag);

    /* Threads: big enough that both loops split. */
    const int bn = 3, bhw = 300, bc = 70;
    const size_t bx = (size_t)bn * bhw * bc, bg = (size_t)bn * bc;
    float *X = t_frand(bx, -1, 1), *G = t_frand(bg, -1, 1), *D = t_frand(bx, -1, 1);
    float *dx1 = t_fzero(bx), *dg1 = t_fzero(bg);
    sn_mul_channel_backward_f32(bn, bhw, bc, X, G, D, dx1, dg1, 1);
    for (int t = 2; t <= 3; t++) {
        float *dxt = t_fzero(bx), *dgt = t_fzero(bg);
        sn_mul_channel_backward_f32(bn, bhw, bc, X, G, D, dxt, dgt, t);
        CHECK(same_bits(dx1, dxt, bx) && same_bits(dg1, dgt, bg), "mul_channel: threads %d", t);
        sn_free(dxt), sn_free(dgt);
    }
    sn_free(X), sn_free(G), sn_free(D), sn_free(dx1), sn_free(dg1);
}

static void test_axpy(void) {
    /* The backward of y = s * x is dx += s * dy. */
    const size_t n = 50;
    const float s = -0.7f;
    float *dy = t_frand(n, -1, 1), *pre = t_frand(n, -1, 1), *g = t_fzero(n);
    sn_axpy_f32(n, s, dy, g, 1);
    double *want = t_xalloc(n * sizeof *want);
    for (size_t i = 0; i < n; i++) want[i] = (double)s * dy[i]; /* d/dx sum(s x dy) */
    const double e = grad_err(g, want, n);
    CHECK(e < GRAD_TOL, "axpy: grad err %g", e);
    float *a = t_fcopy(pre, n);
    sn_axpy_f32(n, s, dy, a, 1);
    CHECK(accumulated(a, pre, g, n), "axpy: not accumulated");
    sn_free(dy), sn_free(pre), sn_free(g), sn_free(want), sn_free(a);

    const size_t big = 70001;
    float *x = t_frand(big, -1, 1), *y0 = t_frand(big, -1, 1);
    float *y1 = t_fcopy(y0, big);
    sn_axpy_f32(big, 1.5f, x, y1, 1);
    for (int t = 2; t <= 3; t++) {
        float *yt = t_fcopy(y0, big);
        sn_axpy_f32(big, 1.5f, x, yt, t);
        CHECK(same_bits(y1, yt, big), "axpy: threads %d", t);
        sn_free(yt);
    }
    sn_free(x), sn_free(y0), sn_free(y1);
}

typedef struct {
    int n;
    size_t per;
    const uint8_t *keep;
    double rate;
    double *x, *r;
} dp_ctx;

static double dp_loss(const void *p) {
    const dp_ctx *q = p;
    double s = 0.0;
    for (int b = 0; b < q->n; b++)
        if (q->keep[b])
            for (size_t i = 0; i < q->per; i++)
                s += q->x[b * q->per + i] / (1.0 - q->rate) * q->r[b * q->per + i];
    return s;
}

static void test_drop_path(void) {
    const int n = 5;
    const size_t per = 7, total = (size_t)n * per;
    const uint8_t keep[5] = {1, 0, 1, 1, 0};
    const float rate = 0.2f;
    float *x = t_frand(total, -2, 2), *y = t_frand(total, -1, 1);
    sn_drop_path_f32(n, per, x, keep, rate, y);
    int ok = 1;
    for (size_t i = 0; i < total; i++) {
        const float want = keep[i / per] ? x[i] / (1.0f - rate) : 0.0f;
        if (y[i] != want) ok = 0;
    }
    CHECK(ok, "drop_path forward");

    float *r = t_frand(total, -1, 1), *g = t_fzero(total), *pre = t_frand(total, -1, 1);
    sn_drop_path_backward_f32(n, per, r, keep, rate, g);
    dp_ctx q = {n, per, keep, rate, t_dfrom(x, total), t_dfrom(r, total)};
    double *ref = fd_grad(dp_loss, &q, q.x, total);
    const double e = grad_err(g, ref, total);
    CHECK(e < GRAD_TOL, "drop_path: grad err %g", e);
    float *a = t_fcopy(pre, total);
    sn_drop_path_backward_f32(n, per, r, keep, rate, a);
    CHECK(accumulated(a, pre, g, total), "drop_path: not accumulated");
    ok = 1;
    for (size_t i = 0; i < total; i++)
        if (!keep[i / per] && a[i] != pre[i]) ok = 0;
    CHECK(ok, "drop_path: dropped samples touched");
    sn_free(x), sn_free(y), sn_free(r), sn_free(g), sn_free(pre), sn_free(a), sn_free(q.x);
    sn_free(q.r), sn_free(ref);
}

int main(void) {
    test_act();
    test_bn_case(37, 13, 0.0f);
    test_bn_case(9, 70, 0.0f);
    test_bn_case(5, 3, 10.0f); /* a mean far from 0: the two-pass variance must hold up */
    test_bn_case(2, 1, 0.0f);
    test_bn_threads();
    test_act_grad();
    test_bn_act();
    test_bn_conv_stats();
    test_pool();
    test_resize();
    test_gap();
    test_gate();
    test_axpy();
    test_drop_path();
    return TEST_SUMMARY();
}
