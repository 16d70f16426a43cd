/* Backward passes of the GEMM, convolution, dense layer and softmax cross-entropy: against
 * naive double-precision references, finite differences of a double forward, and hand-computed
 * values; plus thread-count independence (bit-identical results). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core.h"
#include "kernels.h"
#include "test.h"
#define T_RNG_SEED 0x9E3779B97F4A7C15ULL
#include "testutil.h"

/* float kernels vs double references: |got - ref| <= TOL * max(1, mag), mag being the sum of
 * the magnitudes of the summed terms (cancellation can make a float sum relatively inaccurate
 * through no fault of the kernel, while a dropped or doubled term is far above this). */
#define TOL 1e-5
/* Analytic float gradients vs central differences of a double forward. */
#define FD_TOL 1e-4

/* Max over i of |got - ref| / max(1, mag). */
static double rel_err(const float *got, const double *ref, const double *mag, size_t count) {
    double worst = 0.0;
    for (size_t i = 0; i < count; i++) {
        const double e = fabs((double)got[i] - ref[i]) / fmax(1.0, mag[i]);
        if (e != e)
            return INFINITY;
        if (e > worst)
            worst = e;
    }
    return worst;
}

/* ---- gemm_ex ---------------------------------------------------------------------------- */

static void gemm_ex_case(int ta, int tb, int m, int n, int k, int accumulate) {
    /* Stored shapes: A is m x k (k x m when transposed), B k x n (n x k); leading dimensions
     * padded past the row length to catch lda/ldb mix-ups. */
    const int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    const int lda = ac + 3, ldb = bc + 2, ldc = n + 5;
    float *a = t_frand((size_t)ar * lda + 1, -1, 1), *b = t_frand((size_t)br * ldb + 1, -1, 1);
    const size_t cs = (size_t)m * ldc;
    float *c1 = t_frand(cs, -1, 1);
    float *c2 = t_fcopy(c1, cs), *c0 = t_fcopy(c1, cs);
    double *ref = t_dzero(cs), *mag = t_dzero(cs);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = accumulate ? c0[(size_t)i * ldc + j] : 0.0, sa = fabs(s);
            for (int p = 0; p < k; p++) {
                const double av = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                const double bv = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += av * bv;
                sa += fabs(av * bv);
            }
            ref[(size_t)i * ldc + j] = s;
            mag[(size_t)i * ldc + j] = sa;
        }
    sn_gemm_ex_f32(ta, tb, m, n, k, a, lda, b, ldb, c1, ldc, accumulate, 1);
    sn_gemm_ex_f32(ta, tb, m, n, k, a, lda, b, ldb, c2, ldc, accumulate, 2);
    double worst = 0.0;
    int untouched = 1;
    for (int i = 0; i < m; i++) {
        const size_t r = (size_t)i * ldc;
        const double e = rel_err(c1 + r, ref + r, mag + r, (size_t)n);
        if (e > worst)
            worst = e;
        for (int j = n; j < ldc; j++)
            untouched &= c1[r + j] == c0[r + j];
    }
    CHECK(worst <= TOL, "gemm_ex t%d%d %dx%dx%d acc %d: err %g", ta, tb, m, n, k, accumulate,
          worst);
    CHECK(memcmp(c1, c2, cs * sizeof *c1) == 0, "gemm_ex t%d%d %dx%dx%d: 1 vs 2 threads", ta, tb, m,
          n, k);
    CHECK(untouched, "gemm_ex t%d%d %dx%dx%d wrote past n", ta, tb, m, n, k);
    sn_free(a), sn_free(b), sn_free(c0), sn_free(c1), sn_free(c2), sn_free(ref), sn_free(mag);
}

static void test_gemm_ex(void) {
    static const int sizes[][3] = {{1, 1, 1},    {3, 5, 7},     {7, 13, 5},    {37, 29, 300},
                                   {130, 19, 9}, {11, 270, 17}, {125, 9, 513}, {6, 8, 0},
                                   /* few blocks, long k: k is cut into chunks (gemm_split_k) */
                                   {21, 30, 9000}};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
                for (int acc = 0; acc < 2; acc++)
                    gemm_ex_case(ta, tb, sizes[s][0], sizes[s][1], sizes[s][2], acc);
}

/* ---- convolution backward vs a naive reference -------------------------------------------- */

/* Accumulates into dx/dw/db (already holding their initial values) and the magnitudes of the
 * added terms into the mag buffers. */
static void conv_backward_ref(const sn_conv_desc *d, int n, int h, int w, const float *x,
                              const float *wt, int oh, int ow, const float *dy, double *dx,
                              double *dw, double *db, double *mx, double *mw, double *mb) {
    const int cg = d->cin / d->groups, og = d->cout / d->groups;
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int co = 0; co < d->cout; co++) {
                    const int g = co / og;
                    const double gy = dy[(((size_t)b * oh + oy) * ow + ox) * d->cout + co];
                    db[co] += gy;
                    mb[co] += fabs(gy);
                    for (int ky = 0; ky < d->kh; ky++)
                        for (int kx = 0; kx < d->kw; kx++) {
                            const int iy = oy * d->stride_h - d->pad.top + ky;
                            const int ix = ox * d->stride_w - d->pad.left + kx;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                continue;
                            for (int ci = 0; ci < cg; ci++) {
                                const size_t xi =
                                    (((size_t)b * h + iy) * w + ix) * d->cin + (size_t)g * cg + ci;
                                const size_t wi =
                                    (((size_t)ky * d->kw + kx) * cg + ci) * d->cout + co;
                                dx[xi] += gy * wt[wi];
                                mx[xi] += fabs(gy * wt[wi]);
                                dw[wi] += gy * x[xi];
                                mw[wi] += fabs(gy * x[xi]);
                            }
                        }
                }
}

typedef struct {
    int n, h, w, cin, cout, groups, k, stride;
    int pad_mode; /* 0 SAME (asymmetric when even), 1 fixed (symmetric), 2 none */
} bcase;

static sn_conv_desc make_desc(const bcase *bc) {
    sn_conv_desc d = {bc->k,        bc->k,      bc->stride, bc->stride,
                      {0, 0, 0, 0}, bc->groups, bc->cin,    bc->cout};
    if (bc->pad_mode == 0) {
        sn_pad_same_1d(bc->h, bc->k, bc->stride, &d.pad.top, &d.pad.bottom);
        sn_pad_same_1d(bc->w, bc->k, bc->stride, &d.pad.left, &d.pad.right);
    } else if (bc->pad_mode == 1) {
        sn_pad_fixed_1d(bc->k, &d.pad.top, &d.pad.bottom);
        sn_pad_fixed_1d(bc->k, &d.pad.left, &d.pad.right);
    }
    return d;
}

static int g_bcases;

static void run_bcase(const bcase *bc) {
    const sn_conv_desc d = make_desc(bc);
    const int oh = sn_window_out(bc->h, bc->k, bc->stride, d.pad.top, d.pad.bottom);
    const int ow = sn_window_out(bc->w, bc->k, bc->stride, d.pad.left, d.pad.right);
    if (oh < 1 || ow < 1)
        return;
    const size_t xs = (size_t)bc->n * bc->h * bc->w * bc->cin;
    const size_t ws = (size_t)bc->k * bc->k * (bc->cin / bc->groups) * bc->cout;
    const size_t ys = (size_t)bc->n * oh * ow * bc->cout;
    const size_t cs = (size_t)bc->cout;
    float *x = t_frand(xs, -1, 1), *wt = t_frand(ws, -1, 1), *dy = t_frand(ys, -1, 1);
    /* Pre-filled gradients: the kernel must add to them. */
    float *dx0 = t_frand(xs, -1, 1), *dw0 = t_frand(ws, -1, 1), *db0 = t_frand(cs, -1, 1);
    double *rx = t_dzero(xs), *rw = t_dzero(ws), *rb = t_dzero(cs);
    double *mx = t_dzero(xs), *mw = t_dzero(ws), *mb = t_dzero(cs);
    for (size_t i = 0; i < xs; i++)
        rx[i] = dx0[i], mx[i] = fabs(dx0[i]);
    for (size_t i = 0; i < ws; i++)
        rw[i] = dw0[i], mw[i] = fabs(dw0[i]);
    for (size_t i = 0; i < cs; i++)
        rb[i] = db0[i], mb[i] = fabs(db0[i]);
    conv_backward_ref(&d, bc->n, bc->h, bc->w, x, wt, oh, ow, dy, rx, rw, rb, mx, mw, mb);

    float *dx[3], *dw[3], *db[3];
    static const int threads[3] = {1, 2, 3};
    for (int t = 0; t < 3; t++) {
        dx[t] = t_fcopy(dx0, xs), dw[t] = t_fcopy(dw0, ws), db[t] = t_fcopy(db0, cs);
        CHECK_OK(sn_conv2d_backward_f32(&d, bc->n, bc->h, bc->w, x, wt, oh, ow, dy, dx[t], dw[t],
                                        db[t], threads[t]));
    }
    const double ex = rel_err(dx[0], rx, mx, xs), ew = rel_err(dw[0], rw, mw, ws),
                 eb = rel_err(db[0], rb, mb, cs);
    CHECK(ex <= TOL && ew <= TOL && eb <= TOL,
          "conv bwd n%d %dx%d %d->%d g%d k%d s%d pad%d: err dx %g dw %g db %g", bc->n, bc->h, bc->w,
          bc->cin, bc->cout, bc->groups, bc->k, bc->stride, bc->pad_mode, ex, ew, eb);
    for (int t = 1; t < 3; t++)
        CHECK(memcmp(dx[0], dx[t], xs * sizeof(float)) == 0 &&
                  memcmp(dw[0], dw[t], ws * sizeof(float)) == 0 &&
                  memcmp(db[0], db[t], cs * sizeof(float)) == 0,
              "conv bwd %dx%d %d->%d g%d k%d s%d: 1 vs %d threads differ", bc->h, bc->w, bc->cin,
              bc->cout, bc->groups, bc->k, bc->stride, threads[t]);

    /* NULL skips a gradient; each one alone equals the one computed alongside the others. */
    float *ox = t_fcopy(dx0, xs), *ow_ = t_fcopy(dw0, ws), *ob = t_fcopy(db0, cs);
    CHECK_OK(sn_conv2d_backward_f32(&d, bc->n, bc->h, bc->w, x, wt, oh, ow, dy, ox, NULL, NULL, 2));
    CHECK_OK(
        sn_conv2d_backward_f32(&d, bc->n, bc->h, bc->w, x, wt, oh, ow, dy, NULL, ow_, NULL, 2));
    CHECK_OK(sn_conv2d_backward_f32(&d, bc->n, bc->h, bc->w, x, wt, oh, ow, dy, NULL, NULL, ob, 2));
    CHECK(memcmp(ox, dx[0], xs * sizeof(float)) == 0 &&
              memcmp(ow_, dw[0], ws * sizeof(float)) == 0 &&
              memcmp(ob, db[0], cs * sizeof(float)) == 0,
          "conv bwd %dx%d %d->%d g%d k%d s%d: single gradients differ", bc->h, bc->w, bc->cin,
          bc->cout, bc->groups, bc->k, bc->stride);
    g_bcases++;

    for (int t = 0; t < 3; t++)
        sn_free(dx[t]), sn_free(dw[t]), sn_free(db[t]);
    sn_free(ox), sn_free(ow_), sn_free(ob);
    sn_free(x), sn_free(wt), sn_free(dy), sn_free(dx0), sn_free(dw0), sn_free(db0);
    sn_free(rx), sn_free(rw), sn_free(rb), sn_free(mx), sn_free(mw), sn_free(mb);
}

static void test_conv_backward(void) {
    static const int kernels[] = {1, 3, 5, 7};
    for (int ki = 0; ki < 4; ki++)
        for (int s = 1; s <= 2; s++)
            for (int pm = 0; pm < 3; pm++)
                for (int gi = 0; gi < 3; gi++)
                    for (int nb = 0; nb < 2; nb++) {
                        bcase bc = {nb ? 3 : 1, 9, 8, 5, 11, 1, kernels[ki], s, pm};
                        if (gi == 1)
                            bc.cin = 6, bc.cout = 10, bc.groups = 2;
                        if (gi == 2)
                            bc.cin = bc.cout = bc.groups = 7;
                        run_bcase(&bc);
                    }
    /* Bigger ones: many tiles, chunks and dx bands; kdim past the GEMM's K block; 1x1 direct
     * path over several GEMM blocks; strided and padded 1x1 (not the direct path). */
    const bcase big[] = {
        {2, 23, 21, 36, 40, 1, 3, 1, 0},  {1, 30, 27, 9, 13, 1, 5, 2, 0},
        {2, 20, 19, 40, 37, 1, 1, 1, 2},  {1, 17, 16, 130, 20, 2, 1, 1, 2},
        {3, 12, 11, 10, 9, 1, 1, 2, 2},   {1, 8, 9, 6, 5, 1, 1, 1, 1},
        {1, 35, 33, 24, 24, 24, 3, 1, 0}, {2, 25, 26, 16, 16, 16, 5, 2, 0},
        {1, 5, 700, 3, 4, 1, 3, 1, 1},    {2, 19, 14, 12, 18, 3, 7, 1, 1},
        /* dx column blocks (256 im2col columns) that cut through a tap, plain and grouped */
        {1, 14, 13, 40, 70, 1, 3, 2, 1},  {1, 10, 9, 120, 40, 2, 3, 1, 0},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        run_bcase(&big[i]);
}

/* ---- finite differences ------------------------------------------------------------------- */

/* L = sum(y * r) for y = conv(x, w) + bias, all in double. */
static double conv_loss_d(const sn_conv_desc *d, int n, int h, int w, const double *x,
                          const double *wt, const double *bias, int oh, int ow, const double *r,
                          double *y_out) {
    const int cg = d->cin / d->groups, og = d->cout / d->groups;
    double loss = 0.0;
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int co = 0; co < d->cout; co++) {
                    const int g = co / og;
                    double s = bias[co];
                    for (int ky = 0; ky < d->kh; ky++)
                        for (int kx = 0; kx < d->kw; kx++) {
                            const int iy = oy * d->stride_h - d->pad.top + ky;
                            const int ix = ox * d->stride_w - d->pad.left + kx;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                continue;
                            for (int ci = 0; ci < cg; ci++)
                                s += x[(((size_t)b * h + iy) * w + ix) * d->cin + (size_t)g * cg +
                                       ci] *
                                     wt[(((size_t)ky * d->kw + kx) * cg + ci) * d->cout + co];
                        }
                    const size_t o = (((size_t)b * oh + oy) * ow + ox) * d->cout + co;
                    if (y_out)
                        y_out[o] = s;
                    loss += s * r[o];
                }
    return loss;
}

/* Central differences of loss() at `samples` random elements of v, compared with the analytic
 * gradient g. */
static int fd_check(t_loss_fn loss, const void *ctx, double *v, size_t count, const float *g,
                    int samples, const char *what) {
    const double step = 1e-3;
    int ok = 1;
    for (int s = 0; s < samples; s++) {
        const size_t i = (size_t)(t_rnd64() % count);
        const double fd = t_central_diff(loss, ctx, v, i, step);
        const double err = fabs(fd - g[i]) / fmax(1.0, fabs(fd));
        if (!(err <= FD_TOL)) {
            fprintf(stderr, "%s[%zu]: analytic %g, finite difference %g\n", what, i, g[i], fd);
            ok = 0;
        }
    }
    return ok;
}

typedef struct {
    const sn_conv_desc *d;
    int n, h, w, oh, ow;
    double *x, *wt, *bias, *r;
} conv_fd_ctx;

static double conv_fd_loss(const void *p) {
    const conv_fd_ctx *c = p;
    return conv_loss_d(c->d, c->n, c->h, c->w, c->x, c->wt, c->bias, c->oh, c->ow, c->r, NULL);
}

static void conv_fd_case(const bcase *bc) {
    const sn_conv_desc d = make_desc(bc);
    const int oh = sn_window_out(bc->h, bc->k, bc->stride, d.pad.top, d.pad.bottom);
    const int ow = sn_window_out(bc->w, bc->k, bc->stride, d.pad.left, d.pad.right);
    const size_t xs = (size_t)bc->n * bc->h * bc->w * bc->cin;
    const size_t ws = (size_t)bc->k * bc->k * (bc->cin / bc->groups) * bc->cout;
    const size_t ys = (size_t)bc->n * oh * ow * bc->cout;
    float *x = t_frand(xs, -1, 1), *wt = t_frand(ws, -1, 1), *bias = t_frand(bc->cout, -1, 1);
    float *r = t_frand(ys, -1, 1), *y = t_frand(ys, -1, 1);
    /* The float forward with the bias as the epilogue shift must be the function the double
     * forward differentiates. */
    const sn_epilogue ep = {NULL, bias, NULL, SN_ACT_NONE, NULL};
    CHECK_OK(sn_conv2d_f32(&d, bc->n, bc->h, bc->w, x, wt, &ep, oh, ow, y, 2));
    conv_fd_ctx c = {&d,
                     bc->n,
                     bc->h,
                     bc->w,
                     oh,
                     ow,
                     t_dfrom(x, xs),
                     t_dfrom(wt, ws),
                     t_dfrom(bias, bc->cout),
                     t_dfrom(r, ys)};
    double *yd = t_dzero(ys);
    conv_loss_d(&d, bc->n, bc->h, bc->w, c.x, c.wt, c.bias, oh, ow, c.r, yd);
    double fwd_err = 0.0;
    for (size_t i = 0; i < ys; i++)
        fwd_err = fmax(fwd_err, fabs(y[i] - yd[i]));
    CHECK(fwd_err <= 1e-4, "conv fd k%d s%d g%d: forward differs by %g", bc->k, bc->stride,
          bc->groups, fwd_err);

    /* dL/dy = r. */
    float *gx = t_fzero(xs), *gw = t_fzero(ws), *gb = t_fzero((size_t)bc->cout);
    CHECK_OK(sn_conv2d_backward_f32(&d, bc->n, bc->h, bc->w, x, wt, oh, ow, r, gx, gw, gb, 2));
    CHECK(fd_check(conv_fd_loss, &c, c.x, xs, gx, 24, "conv dx"), "conv fd dx k%d s%d g%d", bc->k,
          bc->stride, bc->groups);
    CHECK(fd_check(conv_fd_loss, &c, c.wt, ws, gw, 24, "conv dw"), "conv fd dw k%d s%d g%d", bc->k,
          bc->stride, bc->groups);
    CHECK(fd_check(conv_fd_loss, &c, c.bias, (size_t)bc->cout, gb, 8, "conv db"),
          "conv fd db k%d s%d g%d", bc->k, bc->stride, bc->groups);
    sn_free(gx), sn_free(gw), sn_free(gb);
    sn_free(x), sn_free(wt), sn_free(bias), sn_free(r), sn_free(y), sn_free(yd);
    sn_free(c.x), sn_free(c.wt), sn_free(c.bias), sn_free(c.r);
}

typedef struct {
    int n, cin, cout;
    double *x, *w, *b, *r;
} dense_fd_ctx;

static double dense_fd_loss(const void *p) {
    const dense_fd_ctx *c = p;
    double loss = 0.0;
    for (int i = 0; i < c->n; i++)
        for (int o = 0; o < c->cout; o++) {
            double s = c->b[o];
            for (int k = 0; k < c->cin; k++)
                s += c->x[(size_t)i * c->cin + k] * c->w[(size_t)k * c->cout + o];
            loss += s * c->r[(size_t)i * c->cout + o];
        }
    return loss;
}

static void test_dense(void) {
    const int n = 5, cin = 37, cout = 19;
    float *x = t_frand((size_t)n * cin, -1, 1), *w = t_frand((size_t)cin * cout, -1, 1);
    float *b = t_frand(cout, -1, 1), *r = t_frand((size_t)n * cout, -1, 1);
    float *y = t_frand((size_t)n * cout, -1, 1);
    dense_fd_ctx c = {n,
                      cin,
                      cout,
                      t_dfrom(x, (size_t)n * cin),
                      t_dfrom(w, (size_t)cin * cout),
                      t_dfrom(b, cout),
                      t_dfrom(r, (size_t)n * cout)};
    /* Pre-filled gradients check the accumulation; the FD compares the added part. */
    float *gx = t_frand((size_t)n * cin, -1, 1), *gw = t_frand((size_t)cin * cout, -1, 1),
          *gb = t_frand(cout, -1, 1);
    float *gx0 = t_fcopy(gx, (size_t)n * cin), *gw0 = t_fcopy(gw, (size_t)cin * cout),
          *gb0 = t_fcopy(gb, cout);
    sn_dense_backward_f32(n, cin, cout, x, w, r, gx, gw, gb, 2);
    for (int i = 0; i < n * cin; i++)
        gx[i] -= gx0[i];
    for (int i = 0; i < cin * cout; i++)
        gw[i] -= gw0[i];
    for (int i = 0; i < cout; i++)
        gb[i] -= gb0[i];
    sn_dense_f32(n, cin, cout, x, w, b, y, 1);
    const double l = dense_fd_loss(&c);
    double lf = 0.0;
    for (int i = 0; i < n * cout; i++)
        lf += (double)y[i] * r[i];
    CHECK(fabs(lf - l) <= 1e-4 * fmax(1.0, fabs(l)), "dense forward %g vs %g", lf, l);
    /* The subtraction of the pre-fill costs a float ulp of it, hence the element-scaled check
     * inside fd_check (relative to max(1, |fd|)). */
    CHECK(fd_check(dense_fd_loss, &c, c.x, (size_t)n * cin, gx, 40, "dense dx"), "dense fd dx");
    CHECK(fd_check(dense_fd_loss, &c, c.w, (size_t)cin * cout, gw, 40, "dense dw"), "dense fd dw");
    CHECK(fd_check(dense_fd_loss, &c, c.b, cout, gb, 19, "dense db"), "dense fd db");

    /* 1 vs 3 threads, and NULL skips. */
    float *ax = t_fzero((size_t)n * cin), *bx = t_fzero((size_t)n * cin);
    sn_dense_backward_f32(n, cin, cout, x, w, r, ax, NULL, NULL, 1);
    sn_dense_backward_f32(n, cin, cout, x, w, r, bx, NULL, NULL, 3);
    CHECK(memcmp(ax, bx, (size_t)n * cin * sizeof *ax) == 0, "dense dx: 1 vs 3 threads");
    sn_free(ax), sn_free(bx);
    sn_free(x), sn_free(w), sn_free(b), sn_free(r), sn_free(y);
    sn_free(gx), sn_free(gw), sn_free(gb), sn_free(gx0), sn_free(gw0), sn_free(gb0);
    sn_free(c.x), sn_free(c.w), sn_free(c.b), sn_free(c.r);
}

/* ---- softmax cross-entropy ---------------------------------------------------------------- */

typedef struct {
    int n, classes;
    double *z;
    const int32_t *labels;
    double s;
} xent_ctx;

/* Mean smoothed cross-entropy in double, written independently of the kernel (softmax then
 * logs, with the max subtracted). */
static double xent_d(const void *p) {
    const xent_ctx *c = p;
    double total = 0.0;
    for (int i = 0; i < c->n; i++) {
        const double *z = c->z + (size_t)i * c->classes;
        double mx = z[0], sum = 0.0;
        for (int j = 1; j < c->classes; j++)
            mx = fmax(mx, z[j]);
        for (int j = 0; j < c->classes; j++)
            sum += exp(z[j] - mx);
        for (int j = 0; j < c->classes; j++) {
            const double t = (j == c->labels[i] ? 1.0 - c->s : 0.0) + c->s / c->classes;
            total -= t * (z[j] - mx - log(sum));
        }
    }
    return total / c->n;
}

static void test_xent_fd(double smoothing) {
    const int n = 6, classes = 11;
    float *z = t_frand((size_t)n * classes, -4, 4), *g = t_frand((size_t)n * classes, -1, 1);
    int32_t labels[6];
    for (int i = 0; i < n; i++)
        labels[i] = (int32_t)(t_rnd64() % (uint64_t)classes);
    xent_ctx c = {n, classes, t_dfrom(z, (size_t)n * classes), labels, (double)(float)smoothing};
    const double loss = sn_softmax_xent_f32(n, classes, z, labels, (float)smoothing, g);
    CHECK(fabs(loss - xent_d(&c)) <= 1e-9, "xent s=%g: loss %.12g vs %.12g", smoothing, loss,
          xent_d(&c));
    CHECK(fd_check(xent_d, &c, c.z, (size_t)n * classes, g, 40, "xent dlogits"), "xent fd s=%g",
          smoothing);
    /* Also the kernel's own loss under float perturbations, dividing by the step actually
     * taken, which is exact in float. */
    int ok = 1;
    for (int s = 0; s < 20; s++) {
        const size_t i = (size_t)(t_rnd64() % (uint64_t)(n * classes));
        const float keep = z[i];
        z[i] = keep + 1e-2f;
        const double dp = (double)z[i] - keep,
                     lp = sn_softmax_xent_f32(n, classes, z, labels, (float)smoothing, NULL);
        z[i] = keep - 1e-2f;
        const double dm = (double)keep - z[i],
                     lm = sn_softmax_xent_f32(n, classes, z, labels, (float)smoothing, NULL);
        z[i] = keep;
        const double fd = (lp - lm) / (dp + dm);
        if (fabs(fd - g[i]) > 1e-3 * fmax(1e-2, fabs(fd))) {
            fprintf(stderr, "xent float fd [%zu]: %g vs %g\n", i, fd, g[i]);
            ok = 0;
        }
    }
    CHECK(ok, "xent float-step fd s=%g", smoothing);
    /* Each row's gradient sums to zero (softmax and target both sum to one). */
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int j = 0; j < classes; j++)
            s += g[(size_t)i * classes + j];
        CHECK(fabs(s) <= 1e-7, "xent row %d gradient sums to %g", i, s);
    }
    sn_free(z), sn_free(g), sn_free(c.z);
}

static void test_xent_exact(void) {
    const float z[6] = {1, 2, 3, 0, 0, 0};
    const int32_t labels[2] = {2, 1};
    float g[6];
    /* Row 0: log(e + e^2 + e^3) - 3; row 1: uniform logits, log 3. */
    const double l0 = 0.40760596444438013, l1 = 1.0986122886681098;
    const double p0[3] = {0.09003057317038046, 0.24472847105479767, 0.6652409557748219};
    double loss = sn_softmax_xent_f32(2, 3, z, labels, 0.0f, g);
    CHECK(fabs(loss - (l0 + l1) / 2) <= 1e-12, "xent exact loss %.17g", loss);
    const double want[6] = {p0[0] / 2, p0[1] / 2, (p0[2] - 1) / 2, 1.0 / 6, -1.0 / 3, 1.0 / 6};
    for (int i = 0; i < 6; i++)
        CHECK(fabs(g[i] - want[i]) <= 1e-7, "xent exact grad %d: %g vs %g", i, g[i], want[i]);
    /* Smoothing 0.3 over 3 classes: targets off = 0.1 and on = 0.8. Row 1 (uniform softmax) keeps
     * loss log 3; row 0 is -sum_j t_j (z_j - lse0) written out term by term. */
    loss = sn_softmax_xent_f32(2, 3, z, labels, 0.3f, g);
    const double s = (double)0.3f, off = s / 3, on = 1 - s + off;
    const double lse0 = l0 + 3.0;
    const double row0 = -(off * (1 - lse0) + off * (2 - lse0) + on * (3 - lse0));
    CHECK(fabs(loss - (row0 + l1) / 2) <= 1e-12, "xent smoothed loss %.17g", loss);
    CHECK(fabs(g[4] - (1.0 / 3 - on) / 2) <= 1e-7 && fabs(g[3] - (1.0 / 3 - off) / 2) <= 1e-7,
          "xent smoothed grad %g %g", g[3], g[4]);

    /* Bad labels: NAN, and dlogits left as it was. */
    const int32_t bad[2][2] = {{0, 3}, {-1, 0}};
    for (int b = 0; b < 2; b++) {
        float h[6];
        for (int i = 0; i < 6; i++)
            h[i] = 42.0f;
        loss = sn_softmax_xent_f32(2, 3, z, bad[b], 0.1f, h);
        int untouched = 1;
        for (int i = 0; i < 6; i++)
            untouched &= h[i] == 42.0f;
        CHECK(isnan(loss) && untouched, "xent bad label %d: %g", b, loss);
    }
}

/* An allocation failure is reported as SN_ERR_OOM with a message, for every path that
 * allocates (im2col and depthwise). */
static void test_conv_backward_oom(void) {
    const bcase cases[] = {{1, 6, 5, 4, 6, 1, 3, 1, 0}, {1, 6, 5, 4, 4, 4, 3, 1, 0}};
    for (int i = 0; i < 2; i++) {
        const sn_conv_desc d = make_desc(&cases[i]);
        float *x = t_frand(6 * 5 * 4, -1, 1), *wt = t_frand(9 * 4 * 6, -1, 1);
        float *dy = t_frand(6 * 5 * 6, -1, 1), *dx = t_fzero(6 * 5 * 4), *dw = t_fzero(9 * 4 * 6);
        sn_scratch_release(); /* the work buffer is kept between calls */
        sn_alloc_fail_after(1);
        const sn_status st = sn_conv2d_backward_f32(&d, 1, 6, 5, x, wt, 6, 5, dy, dx, dw, NULL, 2);
        sn_alloc_fail_after(0);
        CHECK(st == SN_ERR_OOM && strlen(sn_last_error()) > 0, "conv bwd OOM case %d: %s", i,
              sn_status_name(st));
        sn_free(x), sn_free(wt), sn_free(dy), sn_free(dx), sn_free(dw);
    }
}

/* The weight gradient of an im2col convolution is a sum over fixed chunks of 240 output pixels
 * (conv.c's DW_CHUNK): each chunk's partial is im2col_chunk^T dy_chunk (sn_gemm_ex_f32), added to
 * dw in chunk order. conv.c computes it either by chunks (partials reduced in waves of as many as
 * 8 MiB holds) or, when dw has enough row blocks for the threads, by row blocks of dw adding the
 * chunks' products in order (no partials); both must equal the plain chunk-order sum bit for bit
 * with 1, 2 and 3 threads. Case 1 (3x3, 256 -> 256: 2.4 MB partials, five chunks) takes the row
 * blocks; case 2 (3x3, 16 -> 64 over 130 x 130: 71 chunks, more than one wave of 64, and too few
 * row blocks) the chunks. A depthwise case with more chunks than the widest wave checks the
 * thread counts agree and the naive reference. */
static void dw_chunk_order_case(int n, int h, int w, int cin, int c) {
    const int k = 3, chunk = 240;
    sn_conv_desc d = {k, k, 1, 1, {0, 0, 0, 0}, 1, cin, c};
    sn_pad_same_1d(h, k, 1, &d.pad.top, &d.pad.bottom);
    sn_pad_same_1d(w, k, 1, &d.pad.left, &d.pad.right);
    const int m = n * h * w, kdim = k * k * cin; /* stride 1, SAME: oh = h, ow = w */
    const size_t xs = (size_t)m * cin, ys = (size_t)m * c, ws = (size_t)kdim * c;
    float *x = t_frand(xs, -1, 1), *dy = t_frand(ys, -1, 1), *dw0 = t_frand(ws, -1, 1);
    float *ref = t_fcopy(dw0, ws), *col = t_frand((size_t)chunk * kdim, 0, 0);
    float *part = t_frand(ws, 0, 0);
    for (int m0 = 0; m0 < m; m0 += chunk) {
        const int mt = m - m0 < chunk ? m - m0 : chunk;
        for (int r = 0; r < mt; r++) {
            const int q = m0 + r, b = q / (h * w), oy = q % (h * w) / w, ox = q % w;
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    const int iy = oy - d.pad.top + ky, ix = ox - d.pad.left + kx;
                    float *dst = col + (size_t)r * kdim + (size_t)(ky * k + kx) * cin;
                    for (int ci = 0; ci < cin; ci++)
                        dst[ci] = iy < 0 || iy >= h || ix < 0 || ix >= w
                                      ? 0.0f
                                      : x[(((size_t)b * h + iy) * w + ix) * cin + ci];
                }
        }
        sn_gemm_ex_f32(1, 0, kdim, c, mt, col, kdim, dy + (size_t)m0 * c, c, part, c, 0, 1);
        for (size_t e = 0; e < ws; e++) ref[e] += part[e];
    }
    static const int threads[3] = {1, 2, 3};
    for (int t = 0; t < 3; t++) {
        float *dw = t_fcopy(dw0, ws);
        CHECK_OK(sn_conv2d_backward_f32(&d, n, h, w, x, NULL, h, w, dy, NULL, dw, NULL,
                                        threads[t]));
        CHECK(memcmp(dw, ref, ws * sizeof(float)) == 0,
              "conv dw %d->%d over %dx%dx%d, %d threads: not the chunk-order sum of the partials",
              cin, c, n, h, w, threads[t]);
        sn_free(dw);
    }
    sn_free(x), sn_free(dy), sn_free(dw0), sn_free(ref), sn_free(col), sn_free(part);
}

static void test_dw_chunk_order(void) {
    dw_chunk_order_case(2, 24, 24, 256, 256);
    dw_chunk_order_case(1, 130, 130, 16, 64);
    /* depthwise: 4 images of 64 rows, 3 rows (192 pixels) per chunk: 86 chunks, two waves */
    const bcase dwc = {4, 64, 64, 16, 16, 16, 3, 1, 0};
    run_bcase(&dwc);
}

int main(void) {
    test_conv_backward_oom();
    /* Every instruction set this CPU and build support, against the double references. */
    for (int isa = 0; isa < SN_ISA_COUNT; isa++) {
        if (!sn_isa_available((sn_isa)isa)) continue;
        CHECK(sn_isa_set((sn_isa)isa) == SN_OK, "select isa %s", sn_isa_name((sn_isa)isa));
        printf("isa %s\n", sn_isa_name((sn_isa)isa));
        test_gemm_ex();
        test_conv_backward();
        test_dw_chunk_order();
    }
    printf("%d convolution backward cases\n", g_bcases);
    const bcase fd[] = {
        {2, 7, 6, 5, 6, 1, 3, 1, 0}, {1, 8, 9, 6, 4, 2, 3, 2, 0}, {1, 9, 7, 5, 5, 5, 5, 2, 0},
        {2, 5, 5, 4, 7, 1, 1, 1, 2}, {1, 6, 7, 3, 5, 1, 7, 1, 1},
    };
    for (size_t i = 0; i < sizeof fd / sizeof fd[0]; i++)
        conv_fd_case(&fd[i]);
    test_dense();
    test_xent_fd(0.0);
    test_xent_fd(0.1);
    test_xent_exact();
    return TEST_SUMMARY();
}
