/* Every reference kernel against a naive double-precision version written out here. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core.h"
#include "kernels.h"
#include "test.h"
#define T_RNG_SEED 0x243F6A8885A308D3ULL
#include "testutil.h"

/* float32 kernels vs double references: |got - ref| <= TOL * max(1, |ref|, mag), where mag, for
 * the ops that sum products, is the sum of the magnitudes of the summed terms: a float sum of
 * many terms of both signs can be relatively inaccurate when the terms cancel, through no fault
 * of the kernel; while one dropped or doubled term (~mag/K) is still far above the tolerance. */
#define TOL 1e-5

/* Largest |got - ref| / max(1, |ref|, mag[i]) (mag may be NULL); NaN or a one-sided infinity
 * counts as infinite. */
static double max_err_mag(const float *got, const double *ref, const double *mag, size_t count) {
    double m = 0.0;
    for (size_t i = 0; i < count; i++) {
        const double g = got[i], r = ref[i];
        if (g == r) continue;
        double den = fabs(r) > 1.0 ? fabs(r) : 1.0;
        if (mag && mag[i] > den) den = mag[i];
        const double e = fabs(g - r) / den;
        if (!(e <= m)) m = e;
    }
    return m;
}

static double max_rel_err(const float *got, const double *ref, size_t count) {
    return max_err_mag(got, ref, NULL, count);
}

static double relu6_d(double v) { return v < 0 ? 0 : (v > 6 ? 6 : v); }

static double act_ref(sn_act act, double v) {
    switch (act) {
    case SN_ACT_NONE: return v;
    case SN_ACT_RELU: return v > 0 ? v : 0;
    case SN_ACT_RELU6: return relu6_d(v);
    case SN_ACT_SWISH: return v / (1.0 + exp(-v));
    case SN_ACT_HSWISH: return v * relu6_d(v + 3) / 6.0;
    case SN_ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case SN_ACT_HSIGMOID: return relu6_d(v + 3) * 0.16667;
    }
    return v;
}

static const sn_act k_acts[] = {SN_ACT_NONE,    SN_ACT_RELU,    SN_ACT_RELU6,  SN_ACT_SWISH,
                                SN_ACT_HSWISH,  SN_ACT_SIGMOID, SN_ACT_HSIGMOID};
#define N_ACTS ((int)(sizeof k_acts / sizeof k_acts[0]))

/* ---- padding helpers ------------------------------------------------------------------- */

static void test_padding(void) {
    int b, a;
    sn_pad_same_1d(8, 3, 2, &b, &a);
    CHECK(b == 0 && a == 1, "SAME 8/3/2: %d %d", b, a);
    sn_pad_same_1d(8, 7, 2, &b, &a);
    CHECK(b == 2 && a == 3, "SAME 8/7/2: %d %d", b, a);
    sn_pad_same_1d(640, 7, 2, &b, &a);
    CHECK(b == 2 && a == 3, "SAME 640/7/2: %d %d", b, a);
    sn_pad_same_1d(5, 3, 2, &b, &a);
    CHECK(b == 1 && a == 1, "SAME 5/3/2: %d %d", b, a);
    sn_pad_same_1d(5, 3, 1, &b, &a);
    CHECK(b == 1 && a == 1, "SAME 5/3/1: %d %d", b, a);
    sn_pad_same_1d(8, 1, 2, &b, &a);
    CHECK(b == 0 && a == 0, "SAME 8/1/2: %d %d", b, a);
    sn_pad_same_1d(7, 1, 2, &b, &a);
    CHECK(b == 0 && a == 0, "SAME 7/1/2: %d %d", b, a);
    /* The general rule: output ceil(in/stride), total split with the extra cell after. */
    for (int in = 1; in <= 20; in++)
        for (int k = 1; k <= 7; k++)
            for (int s = 1; s <= 3; s++) {
                sn_pad_same_1d(in, k, s, &b, &a);
                const int out = (in + s - 1) / s;
                int total = (out - 1) * s + k - in;
                if (total < 0) total = 0;
                CHECK(b + a == total && a - b >= 0 && a - b <= 1, "SAME %d/%d/%d: %d %d", in,
                      k, s, b, a);
                CHECK(sn_window_out(in, k, s, b, a) == out, "SAME out %d/%d/%d", in, k, s);
            }
    sn_pad_fixed_1d(3, &b, &a);
    CHECK(b == 1 && a == 1, "fixed 3: %d %d", b, a);
    sn_pad_fixed_1d(7, &b, &a);
    CHECK(b == 3 && a == 3, "fixed 7: %d %d", b, a);
    sn_pad_fixed_1d(1, &b, &a);
    CHECK(b == 0 && a == 0, "fixed 1: %d %d", b, a);
    sn_pad_fixed_1d(2, &b, &a);
    CHECK(b == 0 && a == 1, "fixed 2: %d %d", b, a);
    CHECK(sn_window_out(8, 3, 2, 1, 1) == 4, "window 8/3/2 fixed");
    CHECK(sn_window_out(7, 3, 2, 0, 0) == 3, "window 7/3/2 valid");
    CHECK(sn_window_out(2, 3, 1, 0, 0) == 0, "window shorter than kernel");
    CHECK(sn_window_out(2, 3, 1, 1, 0) == 1, "window exactly kernel");
}

/* ---- GEMM ------------------------------------------------------------------------------ */

static void gemm_case(int m, int n, int k, int lda, int ldb, int ldc, int accumulate) {
    float *a = t_frand((size_t)m * lda, -1, 1);
    float *bm = t_frand((size_t)(k > 0 ? k : 1) * ldb, -1, 1);
    float *c0 = t_frand((size_t)m * ldc, -1, 1);
    float *c1 = sn_alloc((size_t)m * ldc * sizeof *c1);
    float *c2 = sn_alloc((size_t)m * ldc * sizeof *c2);
    double *ref = t_dzero((size_t)m * n), *mag = t_dzero((size_t)m * n);
    float *got = sn_alloc((size_t)m * n * sizeof *got);
    memcpy(c1, c0, (size_t)m * ldc * sizeof *c1);
    memcpy(c2, c0, (size_t)m * ldc * sizeof *c2);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = accumulate ? c0[(size_t)i * ldc + j] : 0.0, sa = fabs(s);
            for (int p = 0; p < k; p++) {
                const double t = (double)a[(size_t)i * lda + p] * bm[(size_t)p * ldb + j];
                s += t;
                sa += fabs(t);
            }
            ref[(size_t)i * n + j] = s;
            mag[(size_t)i * n + j] = sa;
        }
    sn_gemm_f32(m, n, k, a, lda, bm, ldb, c1, ldc, accumulate, 1);
    sn_gemm_f32(m, n, k, a, lda, bm, ldb, c2, ldc, accumulate, 3);
    for (int i = 0; i < m; i++) memcpy(got + (size_t)i * n, c1 + (size_t)i * ldc, n * sizeof *got);
    const double e = max_err_mag(got, ref, mag, (size_t)m * n);
    CHECK(e <= TOL, "gemm %dx%dx%d acc %d: err %g", m, n, k, accumulate, e);
    CHECK(memcmp(c1, c2, (size_t)m * ldc * sizeof *c1) == 0, "gemm %dx%dx%d: 1 vs 3 threads", m,
          n, k);
    /* Columns beyond n (the ld padding) must be left alone. */
    int untouched = 1;
    for (int i = 0; i < m; i++)
        for (int j = n; j < ldc; j++)
            untouched &= c1[(size_t)i * ldc + j] == c0[(size_t)i * ldc + j];
    CHECK(untouched, "gemm %dx%dx%d wrote past n", m, n, k);
    sn_free(a);
    sn_free(bm);
    sn_free(c0);
    sn_free(c1);
    sn_free(c2);
    sn_free(ref);
    sn_free(mag);
    sn_free(got);
}

/* Each fast build against the portable one on the same inputs, directly. */
static void test_gemm_isa_vs_generic(void) {
    static const int shapes[][3] = {{1, 1, 1}, {7, 33, 19}, {130, 270, 300}, {513, 24, 144},
                                    {64, 144, 24}, {17, 5, 700}};
    for (int isa = 1; isa < SN_ISA_COUNT; isa++) {
        if (!sn_isa_available((sn_isa)isa)) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            float *a = t_frand((size_t)m * k, -1, 1), *b = t_frand((size_t)k * n, -1, 1);
            float *cg = t_frand((size_t)m * n, -1, 1);
            float *cf = sn_alloc((size_t)m * n * sizeof *cf);
            memcpy(cf, cg, (size_t)m * n * sizeof *cf);
            sn_isa_set(SN_ISA_GENERIC);
            sn_gemm_f32(m, n, k, a, k, b, n, cg, n, 1, 2);
            sn_isa_set((sn_isa)isa);
            sn_gemm_f32(m, n, k, a, k, b, n, cf, n, 1, 2);
            /* |a|, |b| <= 1: each sum has k + 1 terms of magnitude <= 1. */
            double e = 0.0;
            for (size_t i = 0; i < (size_t)m * n; i++) {
                const double d = fabs((double)cf[i] - cg[i]) / (double)(k + 1);
                if (!(d <= e)) e = d;
            }
            CHECK(e <= TOL, "gemm %s vs generic %dx%dx%d: err %g", sn_isa_name((sn_isa)isa), m, n,
                  k, e);
            sn_free(a), sn_free(b), sn_free(cg), sn_free(cf);
        }
    }
    sn_isa_set(SN_ISA_GENERIC);
}

/* The pre-packed-B pair against the plain driver: the same bits (documented) for m <= 120, B
 * plain or transposed, every ISA, accumulate or not, odd n (zero-filled last panel) and k over
 * several K blocks. */
static void test_gemm_packed(void) {
    static const int shapes[][3] = {{1, 1, 1}, {7, 33, 19}, {120, 270, 300}, {61, 24, 144},
                                    {6, 16, 513}, {17, 5, 700}, {120, 64, 0}, {45, 200, 600}};
    for (int isa = 0; isa < SN_ISA_COUNT; isa++) {
        if (!sn_isa_available((sn_isa)isa)) continue;
        sn_isa_set((sn_isa)isa);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int tb = 0; tb < 2; tb++)
                for (int acc = 0; acc < 2; acc++) {
                    const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
                    const int lda = k + 3, ldb = (tb ? k : n) + 2, ldc = n + 1;
                    const size_t bsz = (size_t)(tb ? n : (k > 0 ? k : 1)) * ldb;
                    float *a = t_frand((size_t)m * lda, -1, 1), *b = t_frand(bsz, -1, 1);
                    float *c1 = t_frand((size_t)m * ldc, -1, 1);
                    float *c2 = sn_alloc((size_t)m * ldc * sizeof *c2);
                    memcpy(c2, c1, (size_t)m * ldc * sizeof *c2);
                    const size_t pf = sn_gemm_packb_f32((sn_isa)isa, tb, k, n, b, ldb, NULL);
                    float *pb = sn_alloc((pf ? pf : 1) * sizeof *pb);
                    CHECK(sn_gemm_packb_f32((sn_isa)isa, tb, k, n, b, ldb, pb) == pf,
                          "packb size changes");
                    sn_gemm_ex_f32(0, tb, m, n, k, a, lda, b, ldb, c1, ldc, acc, 1);
                    sn_gemm_packed_f32((sn_isa)isa, m, 0, n, 0, k, a, lda, pb, k, c2, ldc, acc);
                    int same = 1;
                    for (int i = 0; i < m; i++)
                        same &= memcmp(c1 + (size_t)i * ldc, c2 + (size_t)i * ldc,
                                       (size_t)n * sizeof *c1) == 0;
                    CHECK(same, "packed gemm %s tb=%d acc=%d %dx%dx%d differs from sn_gemm",
                          sn_isa_name((sn_isa)isa), tb, acc, m, n, k);
                    /* Block by block, as the convolution sums it: column blocks of 64 and K
                     * blocks of SN_GEMM_KC, the first assigning (or accumulating), the rest
                     * accumulating, must give the same bits again. */
                    memcpy(c2, c1, (size_t)m * ldc * sizeof *c2);
                    float *c3 = t_frand((size_t)m * ldc, -1, 1);
                    if (acc)
                        for (int i = 0; i < m; i++)
                            for (int j = 0; j < n; j++)
                                c3[(size_t)i * ldc + j] = c2[(size_t)i * ldc + j];
                    sn_gemm_ex_f32(0, tb, m, n, k, a, lda, b, ldb, c2, ldc, acc, 1);
                    for (int n0 = 0; n0 < n; n0 += SN_GEMM_N_ALIGN) {
                        const int nn = n - n0 < SN_GEMM_N_ALIGN ? n - n0 : SN_GEMM_N_ALIGN;
                        if (k == 0)
                            sn_gemm_packed_f32((sn_isa)isa, m, n0, nn, 0, 0, a, lda, pb, k,
                                               c3 + n0, ldc, acc);
                        for (int k0 = 0; k0 < k; k0 += SN_GEMM_KC) {
                            const int kc = k - k0 < SN_GEMM_KC ? k - k0 : SN_GEMM_KC;
                            sn_gemm_packed_f32((sn_isa)isa, m, n0, nn, k0, kc, a + k0, lda, pb,
                                               k, c3 + n0, ldc, acc || k0 > 0);
                        }
                    }
                    same = 1;
                    for (int i = 0; i < m; i++)
                        same &= memcmp(c2 + (size_t)i * ldc, c3 + (size_t)i * ldc,
                                       (size_t)n * sizeof *c2) == 0;
                    CHECK(same, "blocked packed gemm %s tb=%d acc=%d %dx%dx%d differs",
                          sn_isa_name((sn_isa)isa), tb, acc, m, n, k);
                    sn_free(c3);
                    sn_free(a), sn_free(b), sn_free(c1), sn_free(c2), sn_free(pb);
                }
    }
    sn_isa_set(SN_ISA_GENERIC);
}

static void test_gemm(void) {
    gemm_case(1, 1, 1, 1, 1, 1, 0);
    gemm_case(3, 5, 7, 9, 6, 8, 0);
    gemm_case(4, 16, 32, 32, 16, 16, 1);
    gemm_case(7, 33, 19, 19, 40, 35, 1);
    gemm_case(130, 270, 300, 301, 275, 272, 0); /* crosses the M, N and K blocks */
    gemm_case(257, 17, 513, 513, 17, 17, 1);
    gemm_case(37, 45, 9000, 9000, 45, 47, 1);   /* long k, few blocks: split into k chunks */
    gemm_case(3, 300, 8200, 8201, 300, 300, 0); /* ... two N blocks, a short last chunk */
    gemm_case(5, 9, 0, 1, 9, 9, 0);             /* k = 0 zeroes C */
    gemm_case(5, 9, 0, 1, 9, 9, 1);             /* ... or leaves it */
}

/* ---- convolution ----------------------------------------------------------------------- */

/* Also returns in mag a bound of the magnitudes that went into each output (see TOL); 1.5 is
 * the largest slope of any activation (hard-swish at 3). */
static void conv_ref(const sn_conv_desc *d, int n, int h, int w, const float *x, const float *wt,
                     const sn_epilogue *ep, int oh, int ow, double *y, double *mag) {
    const int cg = d->cin / d->groups, og = d->cout / d->groups;
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int co = 0; co < d->cout; co++) {
                    const int g = co / og;
                    double s = 0.0, sa = 0.0;
                    for (int ky = 0; ky < d->kh; ky++)
                        for (int kx = 0; kx < d->kw; kx++)
                            for (int ci = 0; ci < cg; ci++) {
                                const int iy = oy * d->stride_h - d->pad.top + ky;
                                const int ix = ox * d->stride_w - d->pad.left + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                const size_t xi =
                                    (((size_t)b * h + iy) * w + ix) * d->cin + (size_t)g * cg + ci;
                                const size_t wi =
                                    (((size_t)ky * d->kw + kx) * cg + ci) * d->cout + co;
                                s += (double)x[xi] * wt[wi];
                                sa += fabs((double)x[xi] * wt[wi]);
                            }
                    const size_t o = (((size_t)b * oh + oy) * ow + ox) * d->cout + co;
                    if (ep) {
                        if (ep->scale) s *= ep->scale[co], sa *= fabs(ep->scale[co]);
                        if (ep->shift) s += ep->shift[co], sa += fabs(ep->shift[co]);
                        if (ep->residual) s += ep->residual[o], sa += fabs(ep->residual[o]);
                        s = act_ref(ep->act, s);
                        sa *= 1.5;
                    }
                    y[o] = s;
                    mag[o] = sa;
                }
}

typedef struct {
    int n, h, w, cin, cout, groups, k, stride;
    int pad_mode; /* 0 SAME, 1 fixed, 2 none, 3 the explicit pads below */
    sn_pad pad;
    int scale, shift, residual;
    sn_act act;
} conv_case;

static int g_conv_cases;

static void run_conv_case(const conv_case *cc) {
    sn_conv_desc d = {cc->k, cc->k, cc->stride, cc->stride, {0, 0, 0, 0}, cc->groups, cc->cin,
                      cc->cout};
    switch (cc->pad_mode) {
    case 0:
        sn_pad_same_1d(cc->h, cc->k, cc->stride, &d.pad.top, &d.pad.bottom);
        sn_pad_same_1d(cc->w, cc->k, cc->stride, &d.pad.left, &d.pad.right);
        break;
    case 1:
        sn_pad_fixed_1d(cc->k, &d.pad.top, &d.pad.bottom);
        sn_pad_fixed_1d(cc->k, &d.pad.left, &d.pad.right);
        break;
    case 3: d.pad = cc->pad; break;
    default: break;
    }
    const int oh = sn_window_out(cc->h, cc->k, cc->stride, d.pad.top, d.pad.bottom);
    const int ow = sn_window_out(cc->w, cc->k, cc->stride, d.pad.left, d.pad.right);
    const size_t xs = (size_t)cc->n * cc->h * cc->w * cc->cin;
    const size_t ws = (size_t)cc->k * cc->k * (cc->cin / cc->groups) * cc->cout;
    const size_t ys = (size_t)cc->n * oh * ow * cc->cout;
    float *x = t_frand(xs, -1, 1), *wt = t_frand(ws, -1, 1);
    float *scale = t_frand(cc->cout, 0.5f, 1.5f), *shift = t_frand(cc->cout, -1, 1);
    float *res = t_frand(ys + 1, -1, 1);
    float *y1 = t_frand(ys + 1, -9, 9), *y2 = t_frand(ys + 1, -9, 9);
    double *ref = t_dzero(ys + 1), *mag = t_dzero(ys + 1);
    const sn_epilogue ep = {cc->scale ? scale : NULL, cc->shift ? shift : NULL,
                            cc->residual ? res : NULL, cc->act, NULL};

    conv_ref(&d, cc->n, cc->h, cc->w, x, wt, &ep, oh, ow, ref, mag);
    CHECK_OK(sn_conv2d_f32(&d, cc->n, cc->h, cc->w, x, wt, &ep, oh, ow, y1, 1));
    CHECK_OK(sn_conv2d_f32(&d, cc->n, cc->h, cc->w, x, wt, &ep, oh, ow, y2, 2));
    const double e = max_err_mag(y1, ref, mag, ys);
    CHECK(e <= TOL,
          "conv n%d %dx%d %d->%d g%d k%d s%d pad%d(%d,%d,%d,%d) ep%d%d%d act %d: err %g", cc->n,
          cc->h, cc->w, cc->cin, cc->cout, cc->groups, cc->k, cc->stride, cc->pad_mode,
          d.pad.top, d.pad.left, d.pad.bottom, d.pad.right, cc->scale, cc->shift, cc->residual,
          (int)cc->act, e);
    CHECK(memcmp(y1, y2, ys * sizeof *y1) == 0, "conv %dx%d %d->%d g%d k%d s%d: 1 vs 2 threads",
          cc->h, cc->w, cc->cin, cc->cout, cc->groups, cc->k, cc->stride);
    g_conv_cases++;
    sn_free(x);
    sn_free(wt);
    sn_free(scale);
    sn_free(shift);
    sn_free(res);
    sn_free(y1);
    sn_free(y2);
    sn_free(ref);
    sn_free(mag);
}

static void test_conv_sweep(void) {
    static const int sizes[][2] = {{5, 7}, {13, 9}, {8, 8}, {1, 1}};
    static const int cin1[] = {3, 5, 17}, cout1[] = {5, 12, 24, 33};
    static const int cin2[] = {4, 6, 18}, cout2[] = {6, 10, 22};
    static const int cdw[] = {3, 8, 13, 19};
    int idx = 0;
    for (int ki = 0; ki < 4; ki++)
        for (int s = 1; s <= 2; s++)
            for (int pm = 0; pm < 2; pm++)
                for (int si = 0; si < 4; si++)
                    for (int gm = 0; gm < 3; gm++, idx++) {
                        conv_case cc;
                        memset(&cc, 0, sizeof cc);
                        cc.k = 1 + 2 * ki;
                        cc.stride = s;
                        cc.pad_mode = pm;
                        cc.h = sizes[si][0];
                        cc.w = sizes[si][1];
                        cc.n = idx % 3 == 0 ? 3 : 1;
                        if (gm == 0) {
                            cc.groups = 1;
                            cc.cin = cin1[idx % 3];
                            cc.cout = cout1[idx % 4];
                        } else if (gm == 1) {
                            cc.groups = 2;
                            cc.cin = cin2[idx % 3];
                            cc.cout = cout2[(idx / 3) % 3];
                        } else {
                            cc.cin = cc.cout = cc.groups = cdw[idx % 4];
                        }
                        /* Epilogue: every subset of scale/shift/residual, every activation. */
                        cc.scale = idx & 1;
                        cc.shift = (idx >> 1) & 1;
                        cc.residual = (idx >> 2) & 1;
                        cc.act = k_acts[idx % N_ACTS];
                        run_conv_case(&cc);
                    }
}

static void test_conv_special(void) {
    conv_case cc;
    /* Many tiles (m > 128), K over one K block (3x3x40 = 360), N tail of the register tile. */
    cc = (conv_case){2, 17, 15, 40, 37, 1, 3, 1, 0, {0}, 1, 1, 1, SN_ACT_SWISH};
    run_conv_case(&cc);
    /* 1x1 stride 1: the input is the GEMM's A; wide N crosses the N block. */
    cc = (conv_case){1, 20, 19, 300, 270, 1, 1, 1, 2, {0}, 1, 1, 0, SN_ACT_RELU};
    run_conv_case(&cc);
    /* K blocks that cut through a tap and more than one column block (NBLK), plain and
     * grouped, for the blocked im2col of the forward. */
    cc = (conv_case){1, 11, 10, 44, 290, 1, 3, 2, 1, {0}, 1, 1, 0, SN_ACT_SWISH};
    run_conv_case(&cc);
    cc = (conv_case){2, 8, 9, 120, 530, 2, 3, 1, 0, {0}, 0, 1, 1, SN_ACT_NONE};
    run_conv_case(&cc);
    /* 1x1 grouped, direct A with an offset per group. */
    cc = (conv_case){3, 9, 11, 12, 18, 3, 1, 1, 2, {0}, 0, 1, 1, SN_ACT_NONE};
    run_conv_case(&cc);
    /* 1x1 stride 2 goes through im2col. */
    cc = (conv_case){1, 13, 9, 7, 9, 1, 1, 2, 0, {0}, 1, 1, 0, SN_ACT_HSWISH};
    run_conv_case(&cc);
    /* Channel multiplier (groups == cin, cout = 2 cin): the grouped GEMM path with cin/g = 1. */
    cc = (conv_case){1, 9, 10, 5, 10, 5, 3, 2, 0, {0}, 1, 0, 0, SN_ACT_RELU6};
    run_conv_case(&cc);
    /* Arbitrary asymmetric explicit padding, larger than the kernel on one side. */
    cc = (conv_case){3, 6, 7, 5, 6, 1, 3, 2, 3, {0, 2, 4, 1}, 0, 1, 0, SN_ACT_SIGMOID};
    run_conv_case(&cc);
    cc = (conv_case){1, 6, 7, 6, 6, 6, 5, 1, 3, {3, 0, 1, 4}, 1, 1, 1, SN_ACT_HSIGMOID};
    run_conv_case(&cc);
    /* Valid padding with a window as large as the input: a single output pixel. */
    cc = (conv_case){3, 7, 7, 4, 9, 1, 7, 2, 2, {0}, 1, 1, 1, SN_ACT_NONE};
    run_conv_case(&cc);
    /* The stem of the network at a small size: 7x7/2 SAME on 3 channels, even input. */
    cc = (conv_case){1, 32, 24, 3, 64, 1, 7, 2, 0, {0}, 1, 1, 0, SN_ACT_SWISH};
    run_conv_case(&cc);
    /* Depthwise with many channels and 5x5/2 on an odd map. */
    cc = (conv_case){2, 11, 13, 72, 72, 72, 5, 2, 0, {0}, 1, 1, 0, SN_ACT_HSWISH};
    run_conv_case(&cc);
    /* Depthwise rows wide enough for several 4-pixel groups plus single-pixel leftovers, with
     * two full 16-channel blocks and a channel tail; stride 1 and 2. */
    cc = (conv_case){2, 5, 23, 40, 40, 40, 3, 1, 0, {0}, 1, 1, 1, SN_ACT_SWISH};
    run_conv_case(&cc);
    cc = (conv_case){1, 6, 30, 35, 35, 35, 3, 2, 0, {0}, 0, 1, 0, SN_ACT_RELU};
    run_conv_case(&cc);
}

/* Depthwise pixels are summed four at a time inside the image and one at a time elsewhere;
 * both must give the same bits. With every input column alike, all pixels whose window lies
 * inside the image sum the same products in the same order, so they must be equal. */
static void test_depthwise_paths_agree(void) {
    static const int strides[] = {1, 2};
    for (int si = 0; si < 2; si++) {
        /* Widths that leave inside pixels after the last group of four. */
        const int s = strides[si], h = 6, w = s == 1 ? 27 : 25, c = 40;
        sn_conv_desc d = {3, 3, s, s, {0, 0, 0, 0}, c, c, c};
        sn_pad_same_1d(h, 3, s, &d.pad.top, &d.pad.bottom);
        sn_pad_same_1d(w, 3, s, &d.pad.left, &d.pad.right);
        const int oh = sn_window_out(h, 3, s, d.pad.top, d.pad.bottom);
        const int ow = sn_window_out(w, 3, s, d.pad.left, d.pad.right);
        float *col = t_frand((size_t)h * c, -1, 1), *wt = t_frand((size_t)9 * c, -1, 1);
        float *x = t_frand((size_t)h * w * c, 0, 0), *y = t_frand((size_t)oh * ow * c, 0, 0);
        for (int iy = 0; iy < h; iy++)
            for (int ix = 0; ix < w; ix++)
                memcpy(x + ((size_t)iy * w + ix) * c, col + (size_t)iy * c, c * sizeof *x);
        CHECK_OK(sn_conv2d_f32(&d, 1, h, w, x, wt, NULL, oh, ow, y, 1));
        int first = -1, last = -1, bad = 0;
        for (int ox = 0; ox < ow; ox++) {
            const int ix0 = ox * s - d.pad.left;
            if (ix0 < 0 || ix0 + 3 > w) continue;
            if (first < 0) first = ox;
            last = ox;
            for (int oy = 0; oy < oh; oy++)
                bad += memcmp(y + ((size_t)oy * ow + ox) * c, y + ((size_t)oy * ow + first) * c,
                              c * sizeof *y) != 0;
        }
        CHECK(last - first >= 8, "stride %d: too few inside pixels (%d..%d)", s, first, last);
        CHECK(bad == 0, "depthwise stride %d: %d inside pixels differ from pixel %d", s, bad,
              first);
        sn_free(col);
        sn_free(wt);
        sn_free(x);
        sn_free(y);
    }
}

/* sn_epilogue.in_scale (a squeeze-excitation gate folded into the weights, per image) against
 * the reference convolution of the gated input, with every other epilogue part on; 1x1 (the
 * direct path) and 3x3/2 (im2col), several images. Groups other than 1 are refused. */
static void test_conv_gated(void) {
    static const int shapes[][6] = {/* n, h, w, cin, cout, k */ {3, 7, 9, 37, 20, 1},
                                    {2, 9, 8, 12, 9, 3}};
    for (int si = 0; si < 2; si++) {
        const int n = shapes[si][0], h = shapes[si][1], w = shapes[si][2], cin = shapes[si][3],
                  cout = shapes[si][4], k = shapes[si][5], s = k == 1 ? 1 : 2;
        sn_conv_desc d = {k, k, s, s, {0, 0, 0, 0}, 1, cin, cout};
        sn_pad_same_1d(h, k, s, &d.pad.top, &d.pad.bottom);
        sn_pad_same_1d(w, k, s, &d.pad.left, &d.pad.right);
        const int oh = sn_window_out(h, k, s, d.pad.top, d.pad.bottom);
        const int ow = sn_window_out(w, k, s, d.pad.left, d.pad.right);
        const size_t xs = (size_t)n * h * w * cin, ys = (size_t)n * oh * ow * cout;
        float *x = t_frand(xs, -1, 1), *wt = t_frand((size_t)k * k * cin * cout, -1, 1);
        float *gate = t_frand((size_t)n * cin, 0, 1), *shift = t_frand(cout, -1, 1);
        float *scale = t_frand(cout, 0.5f, 1.5f), *res = t_frand(ys, -1, 1);
        float *xg = t_frand(xs, 0, 0), *y1 = t_frand(ys, -9, 9), *y2 = t_frand(ys, -9, 9);
        double *ref = t_dzero(ys), *mag = t_dzero(ys);
        for (size_t i = 0; i < xs; i++)
            xg[i] = x[i] * gate[(i / ((size_t)h * w * cin)) * cin + i % cin];
        const sn_epilogue plain = {scale, shift, res, SN_ACT_HSWISH, NULL};
        const sn_epilogue gated = {scale, shift, res, SN_ACT_HSWISH, gate};
        conv_ref(&d, n, h, w, xg, wt, &plain, oh, ow, ref, mag);
        CHECK_OK(sn_conv2d_f32(&d, n, h, w, x, wt, &gated, oh, ow, y1, 1));
        CHECK_OK(sn_conv2d_f32(&d, n, h, w, x, wt, &gated, oh, ow, y2, 2));
        const double e = max_err_mag(y1, ref, mag, ys);
        CHECK(e <= TOL, "gated conv %dx%d k%d n%d: err %g", cin, cout, k, n, e);
        CHECK(memcmp(y1, y2, ys * sizeof *y1) == 0, "gated conv k%d: 1 vs 2 threads", k);
        if (si == 0) {
            d.groups = cin;
            d.cout = cin;
            CHECK(sn_conv2d_f32(&d, n, h, w, x, wt, &gated, oh, ow, y1, 1) ==
                      SN_ERR_INVALID_ARG,
                  "gated depthwise accepted");
        }
        sn_free(x);
        sn_free(wt);
        sn_free(gate);
        sn_free(shift);
        sn_free(scale);
        sn_free(res);
        sn_free(xg);
        sn_free(y1);
        sn_free(y2);
        sn_free(ref);
        sn_free(mag);
    }
}

static void test_conv_errors(void) {
    float x[64] = {0}, wt[64] = {0}, y[64];
    sn_conv_desc d = {3, 3, 1, 1, {1, 1, 1, 1}, 1, 2, 2};
    /* nthreads 0 means one thread. */
    CHECK_OK(sn_conv2d_f32(&d, 1, 4, 4, x, wt, NULL, 4, 4, y, 0));
    CHECK(sn_conv2d_f32(&d, 1, 4, 4, x, wt, NULL, 3, 4, y, 1) == SN_ERR_INVALID_ARG,
          "wrong output size accepted");
    CHECK(strlen(sn_last_error()) > 0, "no message");
    d.groups = 3;
    CHECK(sn_conv2d_f32(&d, 1, 4, 4, x, wt, NULL, 4, 4, y, 1) == SN_ERR_INVALID_ARG,
          "groups not dividing channels accepted");
    d.groups = 1;
    d.stride_h = 0;
    CHECK(sn_conv2d_f32(&d, 1, 4, 4, x, wt, NULL, 4, 4, y, 1) == SN_ERR_INVALID_ARG,
          "stride 0 accepted");
    d.stride_h = 1;
    /* A window longer than the padded input has no output at all. */
    d.pad = (sn_pad){0, 0, 0, 0};
    CHECK_OK(sn_conv2d_f32(&d, 1, 2, 2, x, wt, NULL, 0, 0, y, 1));

    /* The weight panels and the im2col buffers are the two allocations (kept between calls as
     * scratch, so released first); failing either must report OOM and leak nothing, and the
     * next call must work. */
    d.pad = (sn_pad){1, 1, 1, 1};
    for (int nth = 1; nth <= 2; nth++) {
        sn_scratch_release();
        sn_clear_error();
        sn_alloc_fail_after(nth);
        const sn_status st = sn_conv2d_f32(&d, 1, 4, 4, x, wt, NULL, 4, 4, y, 2);
        sn_alloc_fail_after(0);
        CHECK(st == SN_ERR_OOM, "injected OOM at allocation %d gave %s", nth,
              sn_status_name(st));
        CHECK(strlen(sn_last_error()) > 0, "OOM without message");
        CHECK_OK(sn_conv2d_f32(&d, 1, 4, 4, x, wt, NULL, 4, 4, y, 2));
    }
}

/* ---- batch-norm ------------------------------------------------------------------------ */

static void test_batchnorm(void) {
    const size_t rows = 300;
    const int c = 290; /* more than one channel chunk */
    float *x = t_frand(rows * c, -3, 3), *gamma = t_frand(c, 0.5f, 2), *beta = t_frand(c, -1, 1);
    float *mean = t_frand(c, -1, 1), *var = t_frand(c, 0.01f, 3);
    float *y1 = sn_alloc(rows * c * sizeof *y1), *y2 = sn_alloc(rows * c * sizeof *y2);
    double *ref = t_dzero(rows * c);
    const float eps = 1e-3f;
    for (size_t r = 0; r < rows; r++)
        for (int k = 0; k < c; k++)
            ref[r * c + k] = gamma[k] * ((double)x[r * c + k] - mean[k]) /
                                 sqrt((double)var[k] + (double)eps) +
                             beta[k];
    sn_batchnorm_f32(rows, c, x, gamma, beta, mean, var, eps, y1, 1);
    sn_batchnorm_f32(rows, c, x, gamma, beta, mean, var, eps, y2, 2);
    const double e = max_rel_err(y1, ref, rows * c);
    CHECK(e <= TOL, "batchnorm err %g", e);
    CHECK(memcmp(y1, y2, rows * c * sizeof *y1) == 0, "batchnorm 1 vs 2 threads");
    /* In place. */
    sn_batchnorm_f32(rows, c, x, gamma, beta, mean, var, eps, x, 2);
    CHECK(memcmp(x, y1, rows * c * sizeof *x) == 0, "batchnorm in place");
    sn_free(x);
    sn_free(gamma);
    sn_free(beta);
    sn_free(mean);
    sn_free(var);
    sn_free(y1);
    sn_free(y2);
    sn_free(ref);
}

/* ---- activations ----------------------------------------------------------------------- */

static void test_act(void) {
    /* Exact points. */
    CHECK(sn_act_scalar(SN_ACT_SIGMOID, 0.0f) == 0.5f, "sigmoid(0)");
    CHECK(sn_act_scalar(SN_ACT_HSIGMOID, 0.0f) == 3.0f * 0.16667f, "hsigmoid(0)");
    CHECK(sn_act_scalar(SN_ACT_HSIGMOID, 3.0f) == 6.0f * 0.16667f, "hsigmoid(3) is 1.00002");
    CHECK(sn_act_scalar(SN_ACT_HSIGMOID, 9.0f) == 6.0f * 0.16667f, "hsigmoid(9)");
    CHECK(sn_act_scalar(SN_ACT_HSIGMOID, -3.0f) == 0.0f, "hsigmoid(-3)");
    CHECK(sn_act_scalar(SN_ACT_HSIGMOID, -7.0f) == 0.0f, "hsigmoid(-7)");
    CHECK(sn_act_scalar(SN_ACT_HSWISH, 3.0f) == 3.0f, "hswish(3)");
    CHECK(sn_act_scalar(SN_ACT_HSWISH, 10.0f) == 10.0f, "hswish(10)");
    CHECK(sn_act_scalar(SN_ACT_HSWISH, -3.0f) == 0.0f, "hswish(-3)");
    CHECK(sn_act_scalar(SN_ACT_HSWISH, -5.0f) == 0.0f, "hswish(-5)");
    CHECK(sn_act_scalar(SN_ACT_HSWISH, 1.0f) == 4.0f * (1.0f / 6.0f), "hswish(1)");
    CHECK(sn_act_scalar(SN_ACT_HSWISH, -1.0f) == -2.0f * (1.0f / 6.0f), "hswish(-1)");
    CHECK(sn_act_scalar(SN_ACT_RELU6, 7.5f) == 6.0f, "relu6(7.5)");
    CHECK(sn_act_scalar(SN_ACT_RELU6, -0.5f) == 0.0f, "relu6(-0.5)");
    CHECK(sn_act_scalar(SN_ACT_RELU, -2.0f) == 0.0f, "relu(-2)");
    CHECK(sn_act_scalar(SN_ACT_RELU, 2.5f) == 2.5f, "relu(2.5)");
    CHECK(sn_act_scalar(SN_ACT_SWISH, 0.0f) == 0.0f, "swish(0)");
    CHECK(sn_act_scalar(SN_ACT_NONE, -1.25f) == -1.25f, "none");
    /* Tails: no overflow or NaN where exp(|x|) overflows, and the right limits. */
    const float big[] = {88.0f, 89.0f, 200.0f, 1e4f, FLT_MAX};
    for (int i = 0; i < 5; i++) {
        const float sp = sn_act_scalar(SN_ACT_SIGMOID, big[i]);
        const float sn = sn_act_scalar(SN_ACT_SIGMOID, -big[i]);
        const float wp = sn_act_scalar(SN_ACT_SWISH, big[i]);
        const float wn = sn_act_scalar(SN_ACT_SWISH, -big[i]);
        CHECK(sp == 1.0f, "sigmoid(%g) = %g", big[i], sp);
        CHECK(sn >= 0.0f && sn <= 1e-38f, "sigmoid(-%g) = %g", big[i], sn);
        CHECK(wp == big[i], "swish(%g) = %g", big[i], wp);
        CHECK(wn <= 0.0f && wn > -1e-36f, "swish(-%g) = %g", big[i], wn);
    }
    CHECK(sn_act_scalar(SN_ACT_SIGMOID, -200.0f) == 0.0f, "sigmoid(-200)");
    CHECK(sn_act_scalar(SN_ACT_SWISH, -200.0f) == 0.0f, "swish(-200)");
    CHECK(sn_act_scalar(SN_ACT_SIGMOID, -20.0f) > 0.0f &&
              fabs(sn_act_scalar(SN_ACT_SIGMOID, -20.0f) / exp(-20.0) - 1.0) < 1e-5,
          "sigmoid(-20) keeps its relative accuracy");
    /* The polynomial exp across its whole range, at every residue of the range reduction. */
    double worst = 0.0;
    for (float v = -86.0f; v <= 20.0f; v += 0.0123f) {
        const double s = sn_act_scalar(SN_ACT_SIGMOID, v), ref = 1.0 / (1.0 + exp(-(double)v));
        const double e = fabs(s / ref - 1.0);
        if (e > worst) worst = e;
    }
    CHECK(worst < 1e-6, "sigmoid over [-86, 20]: worst relative error %g", worst);

    /* Arrays against the double references, with and without threads, in place. */
    const size_t count = 70001;
    float *x = t_frand(count, -10, 10);
    float *y1 = sn_alloc(count * sizeof *y1), *y2 = sn_alloc(count * sizeof *y2);
    float *y3 = sn_alloc(count * sizeof *y3);
    double *ref = t_dzero(count);
    for (int a = 0; a < N_ACTS; a++) {
        const sn_act act = k_acts[a];
        for (size_t i = 0; i < count; i++) ref[i] = act_ref(act, x[i]);
        sn_act_f32(act, count, x, y1, 1);
        sn_act_f32(act, count, x, y2, 2);
        memcpy(y3, x, count * sizeof *y3);
        sn_act_f32(act, count, y3, y3, 2);
        const double e = max_rel_err(y1, ref, count);
        CHECK(e <= TOL, "act %d err %g", (int)act, e);
        CHECK(memcmp(y1, y2, count * sizeof *y1) == 0, "act %d 1 vs 2 threads", (int)act);
        CHECK(memcmp(y1, y3, count * sizeof *y1) == 0, "act %d in place", (int)act);
        int same = 1;
        for (size_t i = 0; i < count; i += 97) same &= y1[i] == sn_act_scalar(act, x[i]);
        CHECK(same, "act %d array vs scalar", (int)act);
    }
    sn_free(x);
    sn_free(y1);
    sn_free(y2);
    sn_free(y3);
    sn_free(ref);
}

/* ---- max-pool -------------------------------------------------------------------------- */

static void maxpool_case(int n, int h, int w, int c, int k, int s, int same, float lo, float hi) {
    sn_pad p = {0, 0, 0, 0};
    if (same) {
        sn_pad_same_1d(h, k, s, &p.top, &p.bottom);
        sn_pad_same_1d(w, k, s, &p.left, &p.right);
    } else {
        sn_pad_fixed_1d(k, &p.top, &p.bottom);
        sn_pad_fixed_1d(k, &p.left, &p.right);
    }
    const int oh = sn_window_out(h, k, s, p.top, p.bottom);
    const int ow = sn_window_out(w, k, s, p.left, p.right);
    const size_t ys = (size_t)n * oh * ow * c;
    float *x = t_frand((size_t)n * h * w * c, lo, hi);
    float *y1 = sn_alloc(ys * sizeof *y1), *y2 = sn_alloc(ys * sizeof *y2);
    double *ref = t_dzero(ys);
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                for (int ch = 0; ch < c; ch++) {
                    double m = -INFINITY;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            const int iy = oy * s - p.top + ky, ix = ox * s - p.left + kx;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                            const double v = x[(((size_t)b * h + iy) * w + ix) * c + ch];
                            if (v > m) m = v;
                        }
                    ref[(((size_t)b * oh + oy) * ow + ox) * c + ch] = m;
                }
    sn_maxpool_f32(n, h, w, c, k, s, p, oh, ow, x, y1, 1);
    sn_maxpool_f32(n, h, w, c, k, s, p, oh, ow, x, y2, 2);
    CHECK(max_rel_err(y1, ref, ys) == 0.0, "maxpool %dx%d c%d k%d s%d same %d", h, w, c, k, s,
          same);
    CHECK(memcmp(y1, y2, ys * sizeof *y1) == 0, "maxpool 1 vs 2 threads");
    if (hi < 0) {
        int neg = 1;
        for (size_t i = 0; i < ys; i++) neg &= y1[i] < 0.0f;
        CHECK(neg, "maxpool %dx%d k%d s%d: a padded zero won on all-negative input", h, w, k, s);
    }
    sn_free(x);
    sn_free(y1);
    sn_free(y2);
    sn_free(ref);
}

static void test_maxpool(void) {
    maxpool_case(1, 8, 8, 5, 3, 2, 1, -1, 1);
    maxpool_case(3, 7, 9, 17, 3, 2, 1, -1, 1);
    maxpool_case(2, 13, 9, 3, 3, 1, 1, -1, 1);
    maxpool_case(1, 10, 6, 4, 2, 2, 1, -1, 1);
    maxpool_case(1, 9, 9, 8, 5, 1, 0, -1, 1);
    /* All negative: any padded cell treated as zero would win. */
    maxpool_case(2, 8, 8, 6, 3, 2, 1, -5, -1);
    maxpool_case(1, 5, 7, 3, 3, 1, 0, -5, -1);
    maxpool_case(1, 6, 6, 3, 5, 1, 1, -5, -1);

    /* A window entirely in the padding has no valid cell: -inf. */
    const float x[2] = {-3.0f, 4.0f};
    float y[4];
    const sn_pad p = {1, 0, 0, 0};
    const int oh = sn_window_out(1, 1, 1, 1, 0), ow = sn_window_out(1, 1, 1, 0, 0);
    CHECK(oh == 2 && ow == 1, "geometry %d %d", oh, ow);
    sn_maxpool_f32(1, 1, 1, 2, 1, 1, p, oh, ow, x, y, 1);
    CHECK(isinf(y[0]) && y[0] < 0 && isinf(y[1]) && y[1] < 0, "empty window: %g %g", y[0], y[1]);
    CHECK(y[2] == -3.0f && y[3] == 4.0f, "valid window: %g %g", y[2], y[3]);
}

/* ---- resize ---------------------------------------------------------------------------- */

static void test_resize(void) {
    const int n = 2, h = 5, w = 3, c = 7;
    float *x = t_frand((size_t)n * h * w * c, -1, 1);
    /* Upsample by 2x3 and 1x1. */
    for (int f = 0; f < 2; f++) {
        const int fh = f ? 1 : 2, fw = f ? 1 : 3, oh = h * fh, ow = w * fw;
        float *y1 = sn_alloc((size_t)n * oh * ow * c * sizeof *y1);
        float *y2 = sn_alloc((size_t)n * oh * ow * c * sizeof *y2);
        sn_upsample_nearest_f32(n, h, w, c, fh, fw, x, y1, 1);
        sn_upsample_nearest_f32(n, h, w, c, fh, fw, x, y2, 2);
        int ok = 1;
        for (int b = 0; b < n; b++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                    for (int k = 0; k < c; k++)
                        ok &= y1[(((size_t)b * oh + i) * ow + j) * c + k] ==
                              x[(((size_t)b * h + i / fh) * w + j / fw) * c + k];
        CHECK(ok, "upsample %dx%d", fh, fw);
        CHECK(memcmp(y1, y2, (size_t)n * oh * ow * c * sizeof *y1) == 0, "upsample threads");
        sn_free(y1);
        sn_free(y2);
    }
    /* Resize up, down, mixed, and identity. */
    static const int sizes[][2] = {{8, 5}, {3, 2}, {10, 1}, {5, 3}, {1, 7}};
    for (int s = 0; s < 5; s++) {
        const int oh = sizes[s][0], ow = sizes[s][1];
        float *y1 = sn_alloc((size_t)n * oh * ow * c * sizeof *y1);
        float *y2 = sn_alloc((size_t)n * oh * ow * c * sizeof *y2);
        sn_resize_nearest_f32(n, h, w, c, oh, ow, x, y1, 1);
        sn_resize_nearest_f32(n, h, w, c, oh, ow, x, y2, 2);
        int ok = 1;
        for (int b = 0; b < n; b++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    int si = (int)floor((double)i * h / oh), sj = (int)floor((double)j * w / ow);
                    if (si > h - 1) si = h - 1;
                    if (sj > w - 1) sj = w - 1;
                    for (int k = 0; k < c; k++)
                        ok &= y1[(((size_t)b * oh + i) * ow + j) * c + k] ==
                              x[(((size_t)b * h + si) * w + sj) * c + k];
                }
        CHECK(ok, "resize %dx%d -> %dx%d", h, w, oh, ow);
        CHECK(memcmp(y1, y2, (size_t)n * oh * ow * c * sizeof *y1) == 0, "resize threads");
        sn_free(y1);
        sn_free(y2);
    }
    /* Known indices: 3 -> 5 reads 0,0,1,1,2 and 5 -> 3 reads 0,1,3. */
    const float row5[5] = {10, 11, 12, 13, 14}, row3[3] = {20, 21, 22};
    float o5[5], o3[3];
    sn_resize_nearest_f32(1, 1, 3, 1, 1, 5, row3, o5, 1);
    CHECK(o5[0] == 20 && o5[1] == 20 && o5[2] == 21 && o5[3] == 21 && o5[4] == 22, "3->5");
    sn_resize_nearest_f32(1, 1, 5, 1, 1, 3, row5, o3, 1);
    CHECK(o3[0] == 10 && o3[1] == 11 && o3[2] == 13, "5->3");
    sn_free(x);
}

/* ---- elementwise, gap, dense ----------------------------------------------------------- */

static void test_elementwise(void) {
    const size_t count = 50003; /* > one block, odd tail, enough for two threads */
    float *in[4];
    for (int j = 0; j < 4; j++) in[j] = t_frand(count, -2, 2);
    float *y1 = sn_alloc(count * sizeof *y1), *y2 = sn_alloc(count * sizeof *y2);
    float *tmp = sn_alloc(count * sizeof *tmp);
    double *ref = t_dzero(count);
    for (int k = 1; k <= 4; k++) {
        const sn_act act = k_acts[(k * 3) % N_ACTS];
        const float *xs[4] = {in[0], in[1], in[2], in[3]};
        for (size_t i = 0; i < count; i++) {
            double s = 0;
            for (int j = 0; j < k; j++) s += xs[j][i];
            ref[i] = act_ref(act, s);
        }
        sn_add_f32(k, xs, count, act, y1, 1);
        sn_add_f32(k, xs, count, act, y2, 2);
        CHECK(max_rel_err(y1, ref, count) <= TOL, "add k%d err %g", k,
              max_rel_err(y1, ref, count));
        CHECK(memcmp(y1, y2, count * sizeof *y1) == 0, "add k%d threads", k);
        /* Output aliasing the last input. */
        memcpy(tmp, in[k - 1], count * sizeof *tmp);
        xs[k - 1] = tmp;
        sn_add_f32(k, xs, count, act, tmp, 2);
        CHECK(memcmp(y1, tmp, count * sizeof *y1) == 0, "add k%d in place", k);
    }
    sn_scale_f32(count, in[0], 0.25f, y1);
    int ok = 1;
    for (size_t i = 0; i < count; i++) ok &= y1[i] == in[0][i] * 0.25f;
    CHECK(ok, "scale");
    memcpy(tmp, in[0], count * sizeof *tmp);
    sn_scale_f32(count, tmp, 0.25f, tmp);
    CHECK(memcmp(y1, tmp, count * sizeof *y1) == 0, "scale in place");

    /* Channel gate: 3 images of 40x40 positions x 10 channels (fits in count). */
    const int n = 3, hw = 40 * 40, c = 10;
    float *g = t_frand((size_t)n * c, 0, 1);
    sn_mul_channel_f32(n, hw, c, in[1], g, y1, 1);
    memcpy(tmp, in[1], (size_t)n * hw * c * sizeof *tmp);
    sn_mul_channel_f32(n, hw, c, tmp, g, tmp, 2);
    ok = 1;
    for (int b = 0; b < n; b++)
        for (int p = 0; p < hw; p++)
            for (int k = 0; k < c; k++) {
                const size_t i = ((size_t)b * hw + p) * c + k;
                ok &= y1[i] == in[1][i] * g[(size_t)b * c + k];
            }
    CHECK(ok, "mul_channel");
    CHECK(memcmp(y1, tmp, (size_t)n * hw * c * sizeof *y1) == 0, "mul_channel threads, in place");
    sn_free(g);
    for (int j = 0; j < 4; j++) sn_free(in[j]);
    sn_free(y1);
    sn_free(y2);
    sn_free(tmp);
    sn_free(ref);
}

static void test_gap_dense(void) {
    const int n = 3, hw = 37, c = 300;
    float *x = t_frand((size_t)n * hw * c, -1, 1);
    float *y = sn_alloc((size_t)n * c * sizeof *y);
    double *ref = t_dzero((size_t)n * c);
    for (int b = 0; b < n; b++)
        for (int k = 0; k < c; k++) {
            double s = 0;
            for (int p = 0; p < hw; p++) s += x[((size_t)b * hw + p) * c + k];
            ref[(size_t)b * c + k] = s / hw;
        }
    /* The kernel sums in double in pixel order, as the reference does: the same bits, for
     * one thread and for two (tasks split over images and 16-channel blocks, c = 300 leaves
     * a tail of 12). A large map takes the threaded path. */
    for (int nt = 1; nt <= 2; nt++) {
        for (size_t i = 0; i < (size_t)n * c; i++) y[i] = -7.0f;
        sn_gap_f32(n, hw, c, x, y, nt);
        int same = 1;
        for (size_t i = 0; i < (size_t)n * c; i++) same &= y[i] == (float)ref[i];
        CHECK(same, "gap, %d thread(s): not the double pixel-order mean", nt);
    }
    {
        const int bhw = 50 * 41, bc = 40;
        float *bx = t_frand((size_t)bhw * bc, -1, 1), *by1 = sn_alloc(bc * sizeof *by1),
              *by2 = sn_alloc(bc * sizeof *by2);
        sn_gap_f32(1, bhw, bc, bx, by1, 1);
        sn_gap_f32(1, bhw, bc, bx, by2, 2);
        int same = 1;
        for (int k = 0; k < bc; k++) {
            double s = 0;
            for (int p = 0; p < bhw; p++) s += bx[(size_t)p * bc + k];
            same &= by1[k] == (float)(s / bhw) && by2[k] == by1[k];
        }
        CHECK(same, "gap on a large map, 1 and 2 threads");
        sn_free(bx);
        sn_free(by1);
        sn_free(by2);
    }

    /* Dense with a classifier-like width: cin over one K block, cout over one N block. */
    const int cin = c, cout = 1001;
    float *wt = t_frand((size_t)cin * cout, -1, 1), *bias = t_frand(cout, -1, 1);
    float *d1 = sn_alloc((size_t)n * cout * sizeof *d1);
    float *d2 = sn_alloc((size_t)n * cout * sizeof *d2);
    double *dref = t_dzero((size_t)n * cout), *dmag = t_dzero((size_t)n * cout);
    for (int nb = 0; nb < 2; nb++) {
        const float *bb = nb ? NULL : bias;
        for (int b = 0; b < n; b++)
            for (int co = 0; co < cout; co++) {
                double s = bb ? bb[co] : 0.0, sa = fabs(s);
                for (int ci = 0; ci < cin; ci++) {
                    const double t = (double)y[(size_t)b * cin + ci] * wt[(size_t)ci * cout + co];
                    s += t;
                    sa += fabs(t);
                }
                dref[(size_t)b * cout + co] = s;
                dmag[(size_t)b * cout + co] = sa;
            }
        sn_dense_f32(n, cin, cout, y, wt, bb, d1, 1);
        sn_dense_f32(n, cin, cout, y, wt, bb, d2, 2);
        const double e = max_err_mag(d1, dref, dmag, (size_t)n * cout);
        CHECK(e <= TOL, "dense bias %d err %g", !nb, e);
        CHECK(memcmp(d1, d2, (size_t)n * cout * sizeof *d1) == 0, "dense threads");
    }
    sn_free(x);
    sn_free(y);
    sn_free(ref);
    sn_free(wt);
    sn_free(bias);
    sn_free(d1);
    sn_free(d2);
    sn_free(dref);
    sn_free(dmag);
}

int main(void) {
    test_padding();
    /* The GEMM behind every convolution, in each instruction set this CPU and build support,
     * against the double references (so the fast builds are checked as strictly as the plain). */
    for (int isa = 0; isa < SN_ISA_COUNT; isa++) {
        if (!sn_isa_available((sn_isa)isa)) {
            printf("isa %s: not available here, skipped\n", sn_isa_name((sn_isa)isa));
            continue;
        }
        CHECK(sn_isa_set((sn_isa)isa) == SN_OK, "select isa %s", sn_isa_name((sn_isa)isa));
        printf("isa %s\n", sn_isa_name((sn_isa)isa));
        test_gemm();
        test_conv_sweep();
        test_conv_special();
        test_depthwise_paths_agree();
        test_conv_gated();
    }
    test_gemm_isa_vs_generic();
    test_gemm_packed();
    test_conv_errors();
    test_batchnorm();
    test_act();
    test_maxpool();
    test_resize();
    test_elementwise();
    test_gap_dense();
    printf("%d convolution cases\n", g_conv_cases);
    return TEST_SUMMARY();
}
