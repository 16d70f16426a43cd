/* 2-D convolution (im2col + GEMM; direct depthwise) with fused epilogue, and padding helpers. */
#include "kernels.h"

#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core.h"

void sn_pad_same_1d(int in, int k, int stride, int *before, int *after) {
    const int out = (in + stride - 1) / stride;
    int total = (out - 1) * stride + k - in;
    if (total < 0) total = 0;
    *before = total / 2;
    *after = total - total / 2;
}

void sn_pad_fixed_1d(int k, int *before, int *after) {
    *before = (k - 1) / 2;
    *after = (k - 1) - (k - 1) / 2;
}

int sn_window_out(int in, int k, int stride, int before, int after) {
    const long padded = (long)in + before + after;
    if (padded < k || stride < 1) return 0;
    return (int)((padded - k) / stride + 1);
}

/* Output pixels per im2col tile. Big enough that re-packing the weight panels per tile costs
 * about 1% of the multiply-adds, small enough that a 3x3x512 tile (2.2 MB) stays modest; a
 * multiple of the GEMM's 4-, 6- and 8-row register tiles. Fixed, so tile boundaries never depend
 * on the thread count. */
#define TILE_M 120

typedef struct {
    const sn_conv_desc *d;
    int n, h, w, oh, ow;
    const float *x;
    const float *wt;
    const sn_epilogue *ep;
    float *y;
} conv_args;

/* scale, shift and residual in the documented order, then the activation, on rows [m0, m0+mt)
 * of the flattened [n*oh*ow][cout] output, while they are still in cache. */
static void epilogue_rows(const conv_args *c, long m0, int mt) {
    const sn_epilogue *ep = c->ep;
    const int cout = c->d->cout;
    if (!ep) return;
    for (int r = 0; r < mt; r++) {
        float *yr = c->y + (size_t)(m0 + r) * cout;
        if (ep->scale)
            for (int co = 0; co < cout; co++) yr[co] *= ep->scale[co];
        if (ep->shift)
            for (int co = 0; co < cout; co++) yr[co] += ep->shift[co];
        if (ep->residual) {
            const float *rr = ep->residual + (size_t)(m0 + r) * cout;
            for (int co = 0; co < cout; co++) yr[co] += rr[co];
        }
    }
    if (ep->act != SN_ACT_NONE)
        sn_act_f32(ep->act, (size_t)mt * cout, c->y + (size_t)m0 * cout,
                   c->y + (size_t)m0 * cout, 1);
}

/* Rows [m0, m0+mt) of the im2col matrix of group g: row = output pixel, columns ordered
 * (ky, kx, ci) like the rows of the HWIO weight, padding cells as zeros. */
static void im2col_tile(const conv_args *c, int g, long m0, int mt, float *col) {
    const sn_conv_desc *d = c->d;
    const int cg = d->cin / d->groups;
    const int kdim = d->kh * d->kw * cg;
    const long plane = (long)c->oh * c->ow;
    for (int r = 0; r < mt; r++) {
        const long q = m0 + r;
        const int b = (int)(q / plane);
        const int oy = (int)((q % plane) / c->ow), ox = (int)(q % c->ow);
        const int iy0 = oy * d->stride_h - d->pad.top, ix0 = ox * d->stride_w - d->pad.left;
        float *dst = col + (size_t)r * kdim;
        for (int ky = 0; ky < d->kh; ky++) {
            const int iy = iy0 + ky;
            if (iy < 0 || iy >= c->h) {
                memset(dst, 0, (size_t)d->kw * cg * sizeof *dst);
                dst += (size_t)d->kw * cg;
                continue;
            }
            const float *src = c->x + (((size_t)b * c->h + iy) * c->w) * d->cin + (size_t)g * cg;
            for (int kx = 0; kx < d->kw; kx++, dst += cg) {
                const int ix = ix0 + kx;
                if (ix < 0 || ix >= c->w)
                    memset(dst, 0, (size_t)cg * sizeof *dst);
                else
                    memcpy(dst, src + (size_t)ix * d->cin, (size_t)cg * sizeof *dst);
            }
        }
    }
}

/* Grouped convolution as one GEMM per group and tile. A 1x1, stride-1, unpadded convolution
 * reads the NHWC input directly as its A matrix (lda = cin); anything else goes through a
 * per-thread im2col buffer of TILE_M rows. */
static sn_status conv_gemm(const conv_args *c, int nt) {
    const sn_conv_desc *d = c->d;
    const int cg = d->cin / d->groups, og = d->cout / d->groups;
    const int kdim = d->kh * d->kw * cg;
    const long m = (long)c->n * c->oh * c->ow;
    const long ntiles = (m + TILE_M - 1) / TILE_M;
    const int direct = d->kh == 1 && d->kw == 1 && d->stride_h == 1 && d->stride_w == 1 &&
                       d->pad.top == 0 && d->pad.left == 0 && d->pad.bottom == 0 &&
                       d->pad.right == 0;
    if (nt > ntiles) nt = (int)ntiles;

    float *cols = NULL;
    const size_t per_thread = (size_t)TILE_M * kdim;
    if (!direct) {
        const size_t bytes = (size_t)nt * per_thread * sizeof *cols;
        /* Allocated here, not per thread inside the region, so a failure is one clean return. */
        cols = sn_alloc(bytes);
        if (!cols)
            return sn_error(SN_ERR_OOM, "conv2d: cannot allocate %zu bytes of im2col buffers",
                            bytes);
    }

#pragma omp parallel num_threads(nt)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *col = cols ? cols + (size_t)tid * per_thread : NULL;
#pragma omp for schedule(dynamic, 1)
        for (long t = 0; t < ntiles; t++) {
            const long m0 = t * TILE_M;
            const int mt = (int)(m - m0 < TILE_M ? m - m0 : TILE_M);
            float *yt = c->y + (size_t)m0 * d->cout;
            for (int g = 0; g < d->groups; g++) {
                const float *a;
                int lda;
                if (direct) {
                    a = c->x + (size_t)m0 * d->cin + (size_t)g * cg;
                    lda = d->cin;
                } else {
                    im2col_tile(c, g, m0, mt, col);
                    a = col;
                    lda = kdim;
                }
                sn_gemm_f32(mt, og, kdim, a, lda, c->wt + (size_t)g * og, d->cout,
                            yt + (size_t)g * og, d->cout, 0, 1);
            }
            epilogue_rows(c, m0, mt);
        }
    }
    sn_free(cols);
    return SN_OK;
}

/* Depthwise convolution computed directly: it does kh*kw multiply-adds per output and is bound
 * by memory, so im2col would only add traffic. Accumulates in the output row itself. */
static void conv_depthwise(const conv_args *c, int nt) {
    const sn_conv_desc *d = c->d;
    const int ch = d->cout;
    const long rows = (long)c->n * c->oh;
    if (nt > rows) nt = (int)(rows > 0 ? rows : 1);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (long row = 0; row < rows; row++) {
        const int b = (int)(row / c->oh), oy = (int)(row % c->oh);
        const int iy0 = oy * d->stride_h - d->pad.top;
        for (int ox = 0; ox < c->ow; ox++) {
            const int ix0 = ox * d->stride_w - d->pad.left;
            float *yp = c->y + ((size_t)row * c->ow + ox) * ch;
            for (int k = 0; k < ch; k++) yp[k] = 0.0f;
            for (int ky = 0; ky < d->kh; ky++) {
                const int iy = iy0 + ky;
                if (iy < 0 || iy >= c->h) continue;
                for (int kx = 0; kx < d->kw; kx++) {
                    const int ix = ix0 + kx;
                    if (ix < 0 || ix >= c->w) continue;
                    const float *xp = c->x + (((size_t)b * c->h + iy) * c->w + ix) * ch;
                    const float *wp = c->wt + ((size_t)ky * d->kw + kx) * ch;
                    for (int k = 0; k < ch; k++) yp[k] += xp[k] * wp[k];
                }
            }
        }
        epilogue_rows(c, row * c->ow, c->ow);
    }
}

sn_status sn_conv2d_f32(const sn_conv_desc *d, int n, int h, int w, const float *x,
                        const float *wt, const sn_epilogue *ep, int oh, int ow, float *y,
                        int nthreads) {
    if (!d || !x || !wt || !y)
        return sn_error(SN_ERR_INVALID_ARG, "conv2d: NULL descriptor or tensor");
    if (d->kh < 1 || d->kw < 1 || d->stride_h < 1 || d->stride_w < 1 || d->pad.top < 0 ||
        d->pad.left < 0 || d->pad.bottom < 0 || d->pad.right < 0)
        return sn_error(SN_ERR_INVALID_ARG,
                        "conv2d: bad window %dx%d stride %dx%d pad %d,%d,%d,%d", d->kh, d->kw,
                        d->stride_h, d->stride_w, d->pad.top, d->pad.left, d->pad.bottom,
                        d->pad.right);
    if (d->groups < 1 || d->cin < 1 || d->cout < 1 || d->cin % d->groups || d->cout % d->groups)
        return sn_error(SN_ERR_INVALID_ARG, "conv2d: %d groups do not divide cin %d / cout %d",
                        d->groups, d->cin, d->cout);
    if (n < 0 || h < 1 || w < 1)
        return sn_error(SN_ERR_INVALID_ARG, "conv2d: bad input shape %dx%dx%d", n, h, w);
    const int eh = sn_window_out(h, d->kh, d->stride_h, d->pad.top, d->pad.bottom);
    const int ew = sn_window_out(w, d->kw, d->stride_w, d->pad.left, d->pad.right);
    if (oh != eh || ow != ew)
        return sn_error(SN_ERR_INVALID_ARG, "conv2d: output %dx%d given, geometry gives %dx%d",
                        oh, ow, eh, ew);
    if (n == 0 || oh == 0 || ow == 0) return SN_OK;

    const conv_args c = {d, n, h, w, oh, ow, x, wt, ep, y};
    const int nt = nthreads > 0 ? nthreads : 1;
    if (d->groups == d->cin && d->groups == d->cout) {
        conv_depthwise(&c, nt);
        return SN_OK;
    }
    return conv_gemm(&c, nt);
}
