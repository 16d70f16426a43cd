/* 2-D convolution (im2col + GEMM; direct depthwise) with fused epilogue, and its backward
 * (col2im / im2col^T GEMMs). */
#include "kernels.h"

#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "bn_tile.h"
#include "core.h"

/* Output pixels per tile of the forward GEMM (and of the dx pass): the GEMM's MC, so that a
 * tile's rows are one row block (sn_gemm_packed_f32's bit-for-bit promise); a multiple of every
 * ISA's register-tile height (6, 12). Fixed, so tile boundaries never depend on the thread
 * count. */
#define TILE_M 120
/* Fewer rows than this many full tiles: smaller tiles (a multiple of 12, every ISA's row tile
 * divides it), so that both threads get work on the small maps of levels 5-7. Chosen from m
 * only, so tile boundaries still never depend on the thread count; a row's result does not
 * depend on where tile boundaries fall (see gemm.c). */
#define MIN_TILES 8
static int tile_rows(long m) {
    if (m >= (long)MIN_TILES * TILE_M) return TILE_M;
    long t = (m + MIN_TILES - 1) / MIN_TILES;
    t = (t + 11) / 12 * 12;
    return (int)(t < 12 ? 12 : t);
}
/* Output channels per column block of the forward GEMM (a multiple of SN_GEMM_N_ALIGN). */
#define FWD_NBLK 256

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

/* Columns [k0, k0+kc) of rows [m0, m0+mt) of the im2col matrix of group g (row = output pixel,
 * columns ordered (ky, kx, ci) like the rows of the HWIO weight, padding cells as zeros), into
 * col with leading dimension kc: one K block of the GEMM's A, built just before it is used
 * so that it is still in cache (a whole 3x3x256 tile is 1.1 MB, beyond a core's L2). */
static void im2col_cols(const conv_args *c, int g, long m0, int mt, int k0, int kc, float *col) {
    const sn_conv_desc *d = c->d;
    const int cg = d->cin / d->groups;
    const int rowk = d->kw * cg; /* columns per kernel row ky */
    const long plane = (long)c->oh * c->ow;
    const int t0 = k0 / cg, t1 = (k0 + kc - 1) / cg; /* taps (ky, kx) touched */
    for (int r = 0; r < mt; r++) {
        const long q = m0 + r;
        const int b = (int)(q / plane);
        const int oy = (int)((q % plane) / c->ow), ox = (int)(q % c->ow);
        const int iy0 = oy * d->stride_h - d->pad.top, ix0 = ox * d->stride_w - d->pad.left;
        float *dst = col + (size_t)r * kc;
        /* Without groups, the taps of one kernel row lie side by side in the NHWC input when
         * the window row is inside the image: one copy per kernel row (the stem's 3-channel
         * taps were 3-float copies). */
        if (d->groups == 1 && ix0 >= 0 && ix0 + d->kw <= c->w) {
            for (int kk = k0; kk < k0 + kc;) {
                const int ky = kk / rowk, off = kk - ky * rowk;
                const int len = (rowk - off < k0 + kc - kk) ? rowk - off : k0 + kc - kk;
                const int iy = iy0 + ky;
                if (iy < 0 || iy >= c->h)
                    memset(dst, 0, (size_t)len * sizeof *dst);
                else
                    memcpy(dst, c->x + (((size_t)b * c->h + iy) * c->w + ix0) * d->cin + off,
                           (size_t)len * sizeof *dst);
                dst += len;
                kk += len;
            }
            continue;
        }
        for (int tap = t0; tap <= t1; tap++) {
            const int lo = tap == t0 ? k0 - tap * cg : 0;
            const int hi = tap == t1 ? k0 + kc - tap * cg : cg;
            const int iy = iy0 + tap / d->kw, ix = ix0 + tap % d->kw;
            if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w)
                memset(dst, 0, (size_t)(hi - lo) * sizeof *dst);
            else
                memcpy(dst,
                       c->x + (((size_t)b * c->h + iy) * c->w + ix) * d->cin + (size_t)g * cg + lo,
                       (size_t)(hi - lo) * sizeof *dst);
            dst += hi - lo;
        }
    }
}

/* Grouped convolution as one GEMM per group and tile. The weight matrix of each group is packed
 * into the GEMM's panel layout once per call and shared by every tile. A 1x1, stride-1,
 * unpadded convolution reads the NHWC input directly as its A matrix (lda = cin); anything
 * else goes through a per-thread im2col buffer of TILE_M rows (never a full im2col matrix). */
static sn_status conv_gemm(const conv_args *c, int nt, double *part) {
    const sn_conv_desc *d = c->d;
    const int cg = d->cin / d->groups, og = d->cout / d->groups;
    const int kdim = d->kh * d->kw * cg;
    const long m = (long)c->n * c->oh * c->ow;
    const int tm = tile_rows(m);
    const long ntiles = (m + tm - 1) / tm;
    const int direct = d->kh == 1 && d->kw == 1 && d->stride_h == 1 && d->stride_w == 1 &&
                       d->pad.top == 0 && d->pad.left == 0 && d->pad.bottom == 0 &&
                       d->pad.right == 0;
    if (nt > ntiles) nt = (int)ntiles;

    /* Read once: the packed layout belongs to one instruction set. */
    const sn_isa isa = sn_isa_active();
    const size_t pg = sn_gemm_packb_f32(isa, 0, kdim, og, NULL, d->cout, NULL);
    const size_t pbytes = (size_t)d->groups * pg * sizeof(float);
    float *packed = sn_scratch(SN_SCRATCH_PACKB, pbytes);
    if (!packed)
        return sn_error(SN_ERR_OOM, "conv2d: cannot allocate %zu bytes of weight panels", pbytes);
    for (int g = 0; g < d->groups; g++)
        sn_gemm_packb_f32(isa, 0, kdim, og, c->wt + (size_t)g * og, d->cout, packed + g * pg);

    float *cols = NULL;
    const int kblk = kdim < SN_GEMM_KC ? kdim : SN_GEMM_KC;
    const size_t per_thread = (size_t)TILE_M * kblk;
    if (!direct) {
        const size_t bytes = (size_t)nt * per_thread * sizeof *cols;
        /* Taken here, not per thread inside the region, so a failure is one clean return. */
        cols = sn_scratch(SN_SCRATCH_COLS, bytes);
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
            const long m0 = t * tm;
            const int mt = (int)(m - m0 < tm ? m - m0 : tm);
            float *yt = c->y + (size_t)m0 * d->cout;
            for (int g = 0; g < d->groups; g++) {
                const float *pb = packed + g * pg;
                float *yg = yt + (size_t)g * og;
                /* Column blocks of FWD_NBLK outputs keep the C tile in L2 over the K blocks; the
                 * im2col block is rebuilt per column block (cheap next to the GEMM). */
                for (int n0 = 0; n0 < og; n0 += FWD_NBLK) {
                    const int nn = og - n0 < FWD_NBLK ? og - n0 : FWD_NBLK;
                    if (direct) {
                        sn_gemm_packed_f32(isa, mt, n0, nn, 0, kdim,
                                           c->x + (size_t)m0 * d->cin + (size_t)g * cg, d->cin,
                                           pb, kdim, yg + n0, d->cout, 0);
                        continue;
                    }
                    for (int k0 = 0; k0 < kdim; k0 += kblk) {
                        const int kc = kdim - k0 < kblk ? kdim - k0 : kblk;
                        im2col_cols(c, g, m0, mt, k0, kc, col);
                        sn_gemm_packed_f32(isa, mt, n0, nn, k0, kc, col, kc, pb, kdim, yg + n0,
                                           d->cout, k0 > 0);
                    }
                }
            }
            epilogue_rows(c, m0, mt);
            /* Training batch-norm statistics of the finished tile, while it is in cache. */
            if (part)
                bn_tile_stats(yt, (size_t)d->cout, mt, d->cout, part + (size_t)t * 2 * d->cout);
        }
    }
    return SN_OK;
}

/* Depthwise convolution computed directly: it does kh*kw multiply-adds per output and is bound
 * by memory, so im2col would only add traffic. Each output pixel is summed DW_BLOCK channels at
 * a time in registers over its taps (in (ky, kx) order, padding taps skipped) and stored once;
 * the epilogue then runs on the row while it is in cache. */
#define DW_BLOCK 16
/* Output pixels of a row summed together by dw_span, and the widest window it takes. */
#define DW_PIX 4
#define DW_KMAX 5

/* Eight floats as one value of GCC's vector extension (SSE pairs on the portable build, one
 * AVX register on the others), loadable from any float address. */
typedef float dw_vec __attribute__((vector_size(32), aligned(4), may_alias));

/* DW_PIX consecutive output pixels of one row, all of whose window columns lie inside the
 * image, 16 channels at a time (channels past the last multiple of 16 are left to the caller):
 * each window column is loaded once and multiplied into every pixel that uses it, so the
 * 2 * DW_PIX sums stay in registers and are independent. S (stride) and KW are compile-time
 * constants in the callers that matter, which unroll the column loop completely. Each output is
 * the one-pixel loop's sum in the same (ky, kx) order, so the bits are the same. */
static inline __attribute__((always_inline)) void
dw_span(const conv_args *c, const float *xg, int ky0, int ky1, float *yp, const int S,
        const int KW) {
    const int ch = c->d->cout;
    const size_t xrow = (size_t)c->w * ch;
    const int cfull = ch / DW_BLOCK * DW_BLOCK;
    for (int c0 = 0; c0 < cfull; c0 += DW_BLOCK) {
        dw_vec acc[DW_PIX][2];
        for (int p = 0; p < DW_PIX; p++) acc[p][0] = acc[p][1] = (dw_vec){0};
        for (int ky = ky0; ky < ky1; ky++) {
            const float *xc = xg + (size_t)ky * xrow + c0;
            const float *wr = c->wt + (size_t)ky * KW * ch + c0;
            dw_vec w[DW_KMAX][2];
            for (int kx = 0; kx < KW; kx++) {
                w[kx][0] = *(const dw_vec *)(wr + (size_t)kx * ch);
                w[kx][1] = *(const dw_vec *)(wr + (size_t)kx * ch + 8);
            }
#pragma GCC unroll 16
            for (int j = 0; j < S * (DW_PIX - 1) + KW; j++, xc += ch) {
                const dw_vec x0 = *(const dw_vec *)xc, x1 = *(const dw_vec *)(xc + 8);
#pragma GCC unroll 8
                for (int p = 0; p < DW_PIX; p++) {
                    const int kx = j - S * p;
                    if (kx < 0 || kx >= KW) continue;
                    acc[p][0] += x0 * w[kx][0];
                    acc[p][1] += x1 * w[kx][1];
                }
            }
        }
        for (int p = 0; p < DW_PIX; p++) {
            *(dw_vec *)(yp + (size_t)p * ch + c0) = acc[p][0];
            *(dw_vec *)(yp + (size_t)p * ch + c0 + 8) = acc[p][1];
        }
    }
}

/* dw_span for one geometry: 3x3 at stride 1 and 2 (every depthwise layer of the mobile
 * variants) get their own unrolled copies. */
static void dw_span_any(const conv_args *c, const float *xg, int ky0, int ky1, float *yp) {
    const int s = c->d->stride_w, kw = c->d->kw;
    if (kw == 3 && s == 1)
        dw_span(c, xg, ky0, ky1, yp, 1, 3);
    else if (kw == 3 && s == 2)
        dw_span(c, xg, ky0, ky1, yp, 2, 3);
    else
        dw_span(c, xg, ky0, ky1, yp, s, kw);
}

/* One output pixel, channels [c0, ch): DW_BLOCK channels at a time summed in registers over
 * the taps in (ky, kx) order, padding taps skipped, then the channel tail. */
static void dw_pixel(const conv_args *c, int b, int iy0, int ky0, int ky1, int ox, int c0,
                     float *yp) {
    const sn_conv_desc *d = c->d;
    const int ch = d->cout;
    const int ix0 = ox * d->stride_w - d->pad.left;
    const int kx0 = ix0 < 0 ? -ix0 : 0;
    const int kx1 = c->w - ix0 < d->kw ? c->w - ix0 : d->kw;
    for (; c0 + DW_BLOCK <= ch; c0 += DW_BLOCK) {
        float acc[DW_BLOCK];
        for (int k = 0; k < DW_BLOCK; k++) acc[k] = 0.0f;
        for (int ky = ky0; ky < ky1; ky++) {
            const float *xr = c->x + (((size_t)b * c->h + iy0 + ky) * c->w + ix0) * ch + c0;
            const float *wr = c->wt + (size_t)ky * d->kw * ch + c0;
            for (int kx = kx0; kx < kx1; kx++) {
                const float *xp = xr + (size_t)kx * ch, *wp = wr + (size_t)kx * ch;
                for (int k = 0; k < DW_BLOCK; k++) acc[k] += xp[k] * wp[k];
            }
        }
        for (int k = 0; k < DW_BLOCK; k++) yp[c0 + k] = acc[k];
    }
    if (c0 < ch) {
        const int cn = ch - c0;
        float acc[DW_BLOCK];
        for (int k = 0; k < cn; k++) acc[k] = 0.0f;
        for (int ky = ky0; ky < ky1; ky++)
            for (int kx = kx0; kx < kx1; kx++) {
                const float *xp =
                    c->x + (((size_t)b * c->h + iy0 + ky) * c->w + ix0 + kx) * ch + c0;
                const float *wp = c->wt + ((size_t)ky * d->kw + kx) * ch + c0;
                for (int k = 0; k < cn; k++) acc[k] += xp[k] * wp[k];
            }
        for (int k = 0; k < cn; k++) yp[c0 + k] = acc[k];
    }
}

static void conv_depthwise(const conv_args *c, int nt, double *part) {
    const sn_conv_desc *d = c->d;
    const int ch = d->cout, cfull = ch / DW_BLOCK * DW_BLOCK;
    const long rows = (long)c->n * c->oh;
    /* Output columns [ox_in0, ox_in1) have every window column inside the image. */
    const int ox_in0 = (d->pad.left + d->stride_w - 1) / d->stride_w;
    int ox_in1 = c->w - d->kw + d->pad.left < 0 ? 0
                                                : (c->w - d->kw + d->pad.left) / d->stride_w + 1;
    if (ox_in1 > c->ow) ox_in1 = c->ow;
    const int use_span = cfull > 0 && d->kw <= DW_KMAX;
    if (nt > rows) nt = (int)(rows > 0 ? rows : 1);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (long row = 0; row < rows; row++) {
        const int b = (int)(row / c->oh), oy = (int)(row % c->oh);
        const int iy0 = oy * d->stride_h - d->pad.top;
        const int ky0 = iy0 < 0 ? -iy0 : 0;
        const int ky1 = c->h - iy0 < d->kh ? c->h - iy0 : d->kh;
        float *yrow = c->y + (size_t)row * c->ow * ch;
        int ox = 0;
        while (ox < c->ow) {
            if (use_span && ox >= ox_in0 && ox + DW_PIX <= ox_in1) {
                const float *xg =
                    c->x + (((size_t)b * c->h + iy0) * c->w + (size_t)ox * d->stride_w -
                            d->pad.left) * ch;
                dw_span_any(c, xg, ky0, ky1, yrow + (size_t)ox * ch);
                if (cfull < ch)
                    for (int q = 0; q < DW_PIX; q++)
                        dw_pixel(c, b, iy0, ky0, ky1, ox + q, cfull, yrow + (size_t)(ox + q) * ch);
                ox += DW_PIX;
                continue;
            }
            dw_pixel(c, b, iy0, ky0, ky1, ox, 0, yrow + (size_t)ox * ch);
            ox++;
        }
        epilogue_rows(c, row * c->ow, c->ow);
        if (part) bn_tile_stats(yrow, (size_t)ch, c->ow, ch, part + (size_t)row * 2 * ch);
    }
}

/* sn_epilogue.in_scale: one image at a time, with the weights' rows (ky, kx, ci) scaled by
 * that image's gate[ci]. */
static sn_status conv_gated(const sn_conv_desc *d, int n, int h, int w, const float *x,
                            const float *wt, const sn_epilogue *ep, int oh, int ow, float *y,
                            int nt) {
    if (d->groups != 1)
        return sn_error(SN_ERR_INVALID_ARG, "conv2d: an input scale needs groups 1, not %d",
                        d->groups);
    const size_t rows = (size_t)d->kh * d->kw * d->cin;
    const size_t bytes = rows * d->cout * sizeof(float);
    float *ws = sn_scratch(SN_SCRATCH_WSCALE, bytes);
    if (!ws) return sn_error(SN_ERR_OOM, "conv2d: cannot allocate %zu bytes of gated weights",
                             bytes);
    const size_t in_img = (size_t)h * w * d->cin, out_img = (size_t)oh * ow * d->cout;
    for (int b = 0; b < n; b++) {
        const float *s = ep->in_scale + (size_t)b * d->cin;
        for (size_t r = 0; r < rows; r++) {
            const float sr = s[r % (size_t)d->cin];
            const float *wr = wt + r * d->cout;
            float *dr = ws + r * d->cout;
            for (int co = 0; co < d->cout; co++) dr[co] = wr[co] * sr;
        }
        sn_epilogue eb = *ep;
        eb.in_scale = NULL;
        if (eb.residual) eb.residual += (size_t)b * out_img;
        const conv_args c = {d, 1, h, w, oh, ow, x + (size_t)b * in_img, ws, &eb,
                             y + (size_t)b * out_img};
        sn_status st = conv_gemm(&c, nt, NULL);
        if (st != SN_OK) return st;
    }
    return SN_OK;
}

/* The forward, and with part non-NULL the batch-norm statistics of each output tile. */
static sn_status conv_forward(const sn_conv_desc *d, int n, int h, int w, const float *x,
                              const float *wt, const sn_epilogue *ep, int oh, int ow, float *y,
                              double *part, int nthreads) {
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

    const int nt = nthreads > 0 ? nthreads : 1;
    if (ep && ep->in_scale) {
        if (part)
            return sn_error(SN_ERR_INVALID_ARG,
                            "conv2d: batch-norm statistics with an input scale are not supported");
        return conv_gated(d, n, h, w, x, wt, ep, oh, ow, y, nt);
    }
    const conv_args c = {d, n, h, w, oh, ow, x, wt, ep, y};
    if (d->groups == d->cin && d->groups == d->cout) {
        conv_depthwise(&c, nt, part);
        return SN_OK;
    }
    return conv_gemm(&c, nt, part);
}

sn_status sn_conv2d_f32(const sn_conv_desc *d, int n, int h, int w, const float *x,
                        const float *wt, const sn_epilogue *ep, int oh, int ow, float *y,
                        int nthreads) {
    return conv_forward(d, n, h, w, x, wt, ep, oh, ow, y, NULL, nthreads);
}

/* The tiles are those the forward computes: a function of the shape alone, so the statistics'
 * bits do not depend on the thread count. */
long sn_conv2d_stat_tile(const sn_conv_desc *d, int n, int oh, int ow) {
    if (d->groups == d->cin && d->groups == d->cout) return ow;
    return tile_rows((long)n * oh * ow);
}

sn_status sn_conv2d_stats_f32(const sn_conv_desc *d, int n, int h, int w, const float *x,
                              const float *wt, const sn_epilogue *ep, int oh, int ow, float *y,
                              double *part, int nthreads) {
    if (!part) return sn_error(SN_ERR_INVALID_ARG, "conv2d_stats: NULL statistics buffer");
    return conv_forward(d, n, h, w, x, wt, ep, oh, ow, y, part, nthreads);
}

/* ---- backward --------------------------------------------------------------------------- */

/* Minimum output pixels per dx band (whole output rows); see conv_backward_dx. */
#define BAND_PIXELS 240
/* Output pixels per dw chunk: one im2col of this many rows and one GEMM whose k (< the GEMM's
 * KC of 256) is the chunk, so the partial dw is written once per chunk. Fixed, like TILE_M. */
#define DW_CHUNK 240
/* Columns of the im2col matrix per dx block (a multiple of SN_GEMM_N_ALIGN). */
#define DX_NBLK 256

static int imax(int a, int b) { return a > b ? a : b; }

typedef struct {
    conv_args c; /* geometry and x, for im2col_cols */
    const float *dy;
    float *dx, *dw, *db;
    int direct; /* 1x1, stride 1, unpadded */
} bwd_args;

/* Shape checks shared by the backward entry point (the forward keeps its own messages). */
static sn_status conv_check(const sn_conv_desc *d, int n, int h, int w, int oh, int ow,
                            const char *who) {
    if (d->kh < 1 || d->kw < 1 || d->stride_h < 1 || d->stride_w < 1 || d->pad.top < 0 ||
        d->pad.left < 0 || d->pad.bottom < 0 || d->pad.right < 0)
        return sn_error(SN_ERR_INVALID_ARG, "%s: bad window %dx%d stride %dx%d pad %d,%d,%d,%d",
                        who, d->kh, d->kw, d->stride_h, d->stride_w, d->pad.top, d->pad.left,
                        d->pad.bottom, d->pad.right);
    if (d->groups < 1 || d->cin < 1 || d->cout < 1 || d->cin % d->groups || d->cout % d->groups)
        return sn_error(SN_ERR_INVALID_ARG, "%s: %d groups do not divide cin %d / cout %d", who,
                        d->groups, d->cin, d->cout);
    if (n < 0 || h < 1 || w < 1)
        return sn_error(SN_ERR_INVALID_ARG, "%s: bad input shape %dx%dx%d", who, n, h, w);
    const int eh = sn_window_out(h, d->kh, d->stride_h, d->pad.top, d->pad.bottom);
    const int ew = sn_window_out(w, d->kw, d->stride_w, d->pad.left, d->pad.right);
    if (oh != eh || ow != ew)
        return sn_error(SN_ERR_INVALID_ARG, "%s: output %dx%d given, geometry gives %dx%d", who,
                        oh, ow, eh, ew);
    return SN_OK;
}

/* Scatter-add columns [k0, k0+kc) of rows [m0, m0+mt) of an im2col-shaped gradient of group g
 * (dcol, leading dimension kc) back onto the input pixels im2col_cols gathers them from;
 * padding cells are dropped. */
static void col2im_cols(const bwd_args *a, int g, long m0, int mt, int k0, int kc,
                        const float *dcol) {
    const conv_args *c = &a->c;
    const sn_conv_desc *d = c->d;
    const int cg = d->cin / d->groups;
    const long plane = (long)c->oh * c->ow;
    const int t0 = k0 / cg, t1 = (k0 + kc - 1) / cg;
    for (int r = 0; r < mt; r++) {
        const long q = m0 + r;
        const int b = (int)(q / plane);
        const int oy = (int)((q % plane) / c->ow), ox = (int)(q % c->ow);
        const int iy0 = oy * d->stride_h - d->pad.top, ix0 = ox * d->stride_w - d->pad.left;
        const float *src = dcol + (size_t)r * kc;
        for (int tap = t0; tap <= t1; tap++) {
            const int lo = tap == t0 ? k0 - tap * cg : 0;
            const int hi = tap == t1 ? k0 + kc - tap * cg : cg;
            const int iy = iy0 + tap / d->kw, ix = ix0 + tap % d->kw;
            if (iy >= 0 && iy < c->h && ix >= 0 && ix < c->w) {
                float *dst = a->dx + (((size_t)b * c->h + iy) * c->w + ix) * d->cin +
                             (size_t)g * cg + lo;
                for (int ci = 0; ci < hi - lo; ci++) dst[ci] += src[ci];
            }
            src += hi - lo;
        }
    }
}

/* dx of the im2col path. Each tile's dcol = dy_tile * W_g^T is scattered into dx. Tiles of one
 * image overlap in dx, so the output rows of an image are cut into bands of at least
 * ceil(kh/stride) rows: bands two apart never touch the same input row. All even bands run in
 * parallel, then all odd ones; every dx element thus receives its terms in the same order
 * (even band, then odd band, each in tile order) whatever the thread count. */
static void conv_backward_dx(const bwd_args *a, sn_isa isa, const float *packed, size_t pg,
                             float *dcols, size_t per_thread, int nt) {
    const conv_args *c = &a->c;
    const sn_conv_desc *d = c->d;
    const int og = d->cout / d->groups, cg = d->cin / d->groups;
    const int kdim = d->kh * d->kw * cg;
    const int kblk = kdim < DX_NBLK ? kdim : DX_NBLK;
    const int band = imax((d->kh + d->stride_h - 1) / d->stride_h,
                          (BAND_PIXELS + c->ow - 1) / c->ow);
    const int nbands = (c->oh + band - 1) / band;
    const long plane = (long)c->oh * c->ow;
    for (int phase = 0; phase < 2; phase++) {
        const int per_img = (nbands - phase + 1) / 2; /* bands phase, phase+2, ... */
        const long jobs = (long)c->n * per_img;
        if (jobs == 0) continue;
        const int t = nt < jobs ? nt : (int)jobs;
#pragma omp parallel num_threads(t) if (t > 1)
        {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            float *dcol = dcols + (size_t)tid * per_thread;
#pragma omp for schedule(dynamic, 1)
            for (long job = 0; job < jobs; job++) {
                const int b = (int)(job / per_img);
                const int bi = phase + 2 * (int)(job % per_img);
                const int r0 = bi * band, r1 = r0 + band < c->oh ? r0 + band : c->oh;
                const long q0 = b * plane + (long)r0 * c->ow, q1 = b * plane + (long)r1 * c->ow;
                for (long m0 = q0; m0 < q1; m0 += TILE_M) {
                    const int mt = (int)(q1 - m0 < TILE_M ? q1 - m0 : TILE_M);
                    for (int g = 0; g < d->groups; g++)
                        /* dcol = dy_tile W_g^T one column block (of the im2col matrix) at a
                         * time, scattered while it is still in cache. */
                        for (int k0 = 0; k0 < kdim; k0 += kblk) {
                            const int kc = kdim - k0 < kblk ? kdim - k0 : kblk;
                            sn_gemm_packed_f32(isa, mt, k0, kc, 0, og,
                                               a->dy + (size_t)m0 * d->cout + g * og, d->cout,
                                               packed + g * pg, og, dcol, kc, 0);
                            col2im_cols(a, g, m0, mt, k0, kc, dcol);
                        }
                }
            }
        }
    }
}

/* Partial dw (kdim x cout, the HWIO layout) and db (cout) of pixel chunk `ch`, overwritten. */
static void dw_chunk(const bwd_args *a, long ch, float *part, float *col) {
    const conv_args *c = &a->c;
    const sn_conv_desc *d = c->d;
    const int cg = d->cin / d->groups, og = d->cout / d->groups;
    const int kdim = d->kh * d->kw * cg;
    const long m = (long)c->n * c->oh * c->ow;
    const long m0 = ch * DW_CHUNK;
    const int mt = (int)(m - m0 < DW_CHUNK ? m - m0 : DW_CHUNK);
    const float *dyt = a->dy + (size_t)m0 * d->cout;
    if (a->dw) {
        for (int g = 0; g < d->groups; g++) {
            im2col_cols(c, g, m0, mt, 0, kdim, col);
            sn_gemm_ex_f32(1, 0, kdim, og, mt, col, kdim, dyt + (size_t)g * og, d->cout,
                           part + (size_t)g * og, d->cout, 0, 1);
        }
    }
    if (a->db) {
        float *pb = part + (size_t)kdim * d->cout;
        for (int co = 0; co < d->cout; co++) pb[co] = 0.0f;
        for (int r = 0; r < mt; r++) {
            const float *dr = dyt + (size_t)r * d->cout;
            for (int co = 0; co < d->cout; co++) pb[co] += dr[co];
        }
    }
}

/* dw of the im2col path without partials: the chunk-order sum of reduce_chunks + dw_chunk,
 * bit for bit, computed by row blocks of dw instead of by chunks. Each job owns rows
 * [r0, r0+rb) (im2col columns) and columns [n0, n0+nn) of group g's dw and adds every chunk's
 * product onto them in chunk order: sn_gemm_ex_f32 with accumulate adds each chunk's product,
 * summed from zero over the chunk's pixels exactly as dw_chunk's GEMM sums it (one K block,
 * since DW_CHUNK < the GEMM's KC; the arithmetic of an element depends on neither its row nor
 * its column block), to dw, which is ((dw + P0) + P1) + ... So nothing depends on the block
 * sizes or the thread count, and there is no partial to write, re-read and reduce (15 % of a
 * head convolution's dw) and one parallel region instead of one per wave. Each job re-reads dy
 * (and builds only its own im2col columns), so jobs are as tall as the thread count allows;
 * dw_jobs returns 0 when there are too few for the threads, and the caller keeps the chunked
 * path. col: per thread, DW_CHUNK x DWJ_ROWS floats. */
#define DWJ_ROWS 120
#define DWJ_COLS 256
static int dw_job_rows(int kdim, int og, int groups, int nt) {
    static const int rows[] = {120, 96, 72, 48};
    const int cb = (og + DWJ_COLS - 1) / DWJ_COLS;
    for (int i = 0; i < 4; i++)
        if ((long)groups * cb * ((kdim + rows[i] - 1) / rows[i]) >= 4L * nt) return rows[i];
    return 0;
}

static void dw_by_rows(const bwd_args *a, int rb, float *cols, int nt) {
    const conv_args *c = &a->c;
    const sn_conv_desc *d = c->d;
    const int cg = d->cin / d->groups, og = d->cout / d->groups;
    const int kdim = d->kh * d->kw * cg;
    const long m = (long)c->n * c->oh * c->ow;
    const int nrb = (kdim + rb - 1) / rb, ncb = (og + DWJ_COLS - 1) / DWJ_COLS;
    const int jobs = d->groups * nrb * ncb;
    if (nt > jobs) nt = jobs;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *col = cols + (size_t)tid * DW_CHUNK * DWJ_ROWS;
#pragma omp for schedule(dynamic, 1)
        for (int job = 0; job < jobs; job++) {
            const int g = job / (nrb * ncb), rbi = job / ncb % nrb, cbi = job % ncb;
            const int r0 = rbi * rb, kb = kdim - r0 < rb ? kdim - r0 : rb;
            const int n0 = cbi * DWJ_COLS, nn = og - n0 < DWJ_COLS ? og - n0 : DWJ_COLS;
            float *dwb = a->dw + (size_t)r0 * d->cout + (size_t)g * og + n0;
            for (long m0 = 0; m0 < m; m0 += DW_CHUNK) {
                const int mt = (int)(m - m0 < DW_CHUNK ? m - m0 : DW_CHUNK);
                im2col_cols(c, g, m0, mt, r0, kb, col);
                sn_gemm_ex_f32(1, 0, kb, nn, mt, col, kb,
                               a->dy + (size_t)m0 * d->cout + (size_t)g * og + n0, d->cout, dwb,
                               d->cout, 1, 1);
            }
        }
    }
}

/* db alone, in dw_chunk's order: per chunk a sum from zero over its pixels, added to db in
 * chunk order; channels are independent, so threads take channel blocks. */
static void db_by_chunks(const bwd_args *a, int nt) {
    const conv_args *c = &a->c;
    const int cout = c->d->cout;
    const long m = (long)c->n * c->oh * c->ow;
    const int blocks = (cout + 15) / 16;
    if (nt > blocks) nt = blocks;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int bi = 0; bi < blocks; bi++) {
        const int c0 = bi * 16, cn = cout - c0 < 16 ? cout - c0 : 16;
        for (long m0 = 0; m0 < m; m0 += DW_CHUNK) {
            const int mt = (int)(m - m0 < DW_CHUNK ? m - m0 : DW_CHUNK);
            float pb[16];
            for (int k = 0; k < cn; k++) pb[k] = 0.0f;
            for (int r = 0; r < mt; r++) {
                const float *dr = a->dy + (size_t)(m0 + r) * cout + c0;
                for (int k = 0; k < cn; k++) pb[k] += dr[k];
            }
            for (int k = 0; k < cn; k++) a->db[c0 + k] += pb[k];
        }
    }
}

/* Partial dw and db of depthwise output-row chunk `ch` (rows of DW rows each). */
static void dw_chunk_depthwise(const bwd_args *a, long ch, float *part, float *unused) {
    const conv_args *c = &a->c;
    const sn_conv_desc *d = c->d;
    const int C = d->cout;
    const int rows_per = imax(1, DW_CHUNK / c->ow);
    const long rows = (long)c->n * c->oh;
    const long r0 = ch * rows_per, r1 = r0 + rows_per < rows ? r0 + rows_per : rows;
    float *pw = part, *pb = part + (size_t)d->kh * d->kw * C;
    if (a->dw) memset(pw, 0, (size_t)d->kh * d->kw * C * sizeof *pw);
    if (a->db) memset(pb, 0, (size_t)C * sizeof *pb);
    for (long row = r0; row < r1; row++) {
        const int b = (int)(row / c->oh), oy = (int)(row % c->oh);
        const int iy0 = oy * d->stride_h - d->pad.top;
        for (int ox = 0; ox < c->ow; ox++) {
            const float *g = a->dy + ((size_t)row * c->ow + ox) * C;
            if (a->db)
                for (int k = 0; k < C; k++) pb[k] += g[k];
            if (!a->dw) continue;
            const int ix0 = ox * d->stride_w - d->pad.left;
            for (int ky = 0; ky < d->kh; ky++) {
                const int iy = iy0 + ky;
                if (iy < 0 || iy >= c->h) continue;
                for (int kx = 0; kx < d->kw; kx++) {
                    const int ix = ix0 + kx;
                    if (ix < 0 || ix >= c->w) continue;
                    const float *xp = c->x + (((size_t)b * c->h + iy) * c->w + ix) * C;
                    float *wp = pw + ((size_t)ky * d->kw + kx) * C;
                    for (int k = 0; k < C; k++) wp[k] += xp[k] * g[k];
                }
            }
        }
    }
}

typedef void (*chunk_fn)(const bwd_args *a, long ch, float *part, float *scratch);

/* dw and db as a sum over fixed pixel chunks. Waves of `slots` chunks are computed into
 * partials (one per slot, any thread computing any slot; a thread's scratch is its own), then
 * added to dw/db in chunk order (parallel over elements), so dw = ((dw + P0) + P1) + ... exactly:
 * neither the wave size nor nt changes a bit (a partial sum between waves is stored as the
 * float it already is). Waves wider than the thread count (reduce_slots) matter on a loaded
 * machine: every wave ends in barriers, and a barrier waits for the slowest thread to be
 * scheduled again; with two chunks per wave the stem's dw took 4x its single-thread time. The
 * partial holds dw then db: `wsize` + cout floats. */
static void reduce_chunks(const bwd_args *a, long nchunks, chunk_fn fn, size_t wsize,
                          float *parts, int slots, float *scratch, size_t scratch_per, int nt) {
    const int cout = a->c.d->cout;
    const size_t psize = wsize + (size_t)cout;
    if (slots > nchunks) slots = (int)nchunks;
    if (nt > slots) nt = slots;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *mine = scratch ? scratch + (size_t)tid * scratch_per : NULL;
        for (long c0 = 0; c0 < nchunks; c0 += slots) {
            const int wave = (int)(nchunks - c0 < slots ? nchunks - c0 : slots);
#pragma omp for schedule(dynamic, 1)
            for (int t = 0; t < wave; t++) fn(a, c0 + t, parts + (size_t)t * psize, mine);
            if (a->dw) {
#pragma omp for schedule(static)
                for (size_t e = 0; e < wsize; e++) {
                    float s = a->dw[e];
                    for (int t = 0; t < wave; t++) s += parts[(size_t)t * psize + e];
                    a->dw[e] = s;
                }
            }
            if (a->db) {
#pragma omp single
                for (int t = 0; t < wave; t++) {
                    const float *pb = parts + (size_t)t * psize + wsize;
                    for (int co = 0; co < cout; co++) a->db[co] += pb[co];
                }
            }
        }
    }
}

/* Partials per wave of reduce_chunks: as many as fit in REDUCE_BYTES (at least nt, at most
 * REDUCE_MAX_SLOTS and nchunks). Only the barrier count depends on it, never the bits. */
#define REDUCE_BYTES ((size_t)8 << 20)
#define REDUCE_MAX_SLOTS 64
static int reduce_slots(long nchunks, size_t psize, int nt) {
    size_t s = REDUCE_BYTES / (psize * sizeof(float));
    if (s > REDUCE_MAX_SLOTS) s = REDUCE_MAX_SLOTS;
    if (s < (size_t)nt) s = (size_t)nt;
    if (s > (size_t)nchunks) s = (size_t)nchunks;
    return (int)s;
}

/* Depthwise dx gathered per input pixel (race-free, so rows run in parallel): each input pixel
 * sums, in (ky, kx) order, the dy of every output pixel whose window covered it. */
static void dx_depthwise(const bwd_args *a, int nt) {
    const conv_args *c = &a->c;
    const sn_conv_desc *d = c->d;
    const int C = d->cout;
    const long rows = (long)c->n * c->h;
    if (nt > rows) nt = (int)rows;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long row = 0; row < rows; row++) {
        const int b = (int)(row / c->h), iy = (int)(row % c->h);
        for (int ix = 0; ix < c->w; ix++) {
            float *dxp = a->dx + ((size_t)row * c->w + ix) * C;
            for (int ky = 0; ky < d->kh; ky++) {
                /* Output row oy read input row oy*stride - pad + ky. */
                const int ty = iy + d->pad.top - ky;
                if (ty < 0 || ty % d->stride_h) continue;
                const int oy = ty / d->stride_h;
                if (oy >= c->oh) continue;
                for (int kx = 0; kx < d->kw; kx++) {
                    const int tx = ix + d->pad.left - kx;
                    if (tx < 0 || tx % d->stride_w) continue;
                    const int ox = tx / d->stride_w;
                    if (ox >= c->ow) continue;
                    const float *g = a->dy + (((size_t)b * c->oh + oy) * c->ow + ox) * C;
                    const float *wp = c->wt + ((size_t)ky * d->kw + kx) * C;
                    for (int k = 0; k < C; k++) dxp[k] += g[k] * wp[k];
                }
            }
        }
    }
}

sn_status sn_conv2d_backward_f32(const sn_conv_desc *d, int n, int h, int w, const float *x,
                                 const float *wt, int oh, int ow, const float *dy, float *dx,
                                 float *dw, float *db, int nthreads) {
    if (!d || !dy || (dx && !wt) || (dw && !x))
        return sn_error(SN_ERR_INVALID_ARG, "conv2d_backward: NULL descriptor or tensor");
    const sn_status st = conv_check(d, n, h, w, oh, ow, "conv2d_backward");
    if (st != SN_OK) return st;
    if (n == 0 || oh == 0 || ow == 0 || (!dx && !dw && !db)) return SN_OK;

    const int nt = nthreads > 0 ? nthreads : 1;
    const int cg = d->cin / d->groups, og = d->cout / d->groups;
    const int kdim = d->kh * d->kw * cg;
    const long m = (long)n * oh * ow;
    bwd_args a = {{d, n, h, w, oh, ow, x, wt, NULL, NULL}, dy, dx, dw, db, 0};
    a.direct = d->kh == 1 && d->kw == 1 && d->stride_h == 1 && d->stride_w == 1 &&
               d->pad.top == 0 && d->pad.left == 0 && d->pad.bottom == 0 && d->pad.right == 0;
    const size_t wsize = (size_t)kdim * d->cout;

    if (d->groups == d->cin && d->groups == d->cout) {
        if (dx) dx_depthwise(&a, nt);
        if (!dw && !db) return SN_OK;
        const long rows_per = imax(1, DW_CHUNK / ow);
        const long nchunks = ((long)n * oh + rows_per - 1) / rows_per;
        const int t = nt < nchunks ? nt : (int)nchunks;
        const int slots = reduce_slots(nchunks, wsize + d->cout, t);
        const size_t bytes = (size_t)slots * (wsize + d->cout) * sizeof(float);
        float *parts = sn_alloc(bytes);
        if (!parts)
            return sn_error(SN_ERR_OOM, "conv2d_backward: cannot allocate %zu bytes", bytes);
        reduce_chunks(&a, nchunks, dw_chunk_depthwise, wsize, parts, slots, NULL, 0, t);
        sn_free(parts);
        return SN_OK;
    }

    if (a.direct) {
        /* The NHWC tensors are the GEMM operands themselves: dx_g += dy_g W_g^T and
         * dw_g += x_g^T dy_g over all pixels; the GEMM's fixed blocking keeps it deterministic. */
        for (int g = 0; g < d->groups; g++) {
            if (dx)
                sn_gemm_ex_f32(0, 1, (int)m, cg, og, dy + (size_t)g * og, d->cout,
                               wt + (size_t)g * og, d->cout, dx + (size_t)g * cg, d->cin, 1, nt);
            if (dw)
                sn_gemm_ex_f32(1, 0, cg, og, (int)m, x + (size_t)g * cg, d->cin,
                               dy + (size_t)g * og, d->cout, dw + (size_t)g * og, d->cout, 1, nt);
        }
        if (!db) return SN_OK;
        a.dw = NULL;
    }

    /* One work buffer for everything (kept between calls: fresh pages are slow to touch), so
     * that a failure is a single clean return: W^T packed per group for dx, per-thread dcol
     * blocks, per-thread im2col chunks and partial dw/db for dw and db. */
    const sn_isa isa = sn_isa_active();
    const long nchunks = (m + DW_CHUNK - 1) / DW_CHUNK;
    const int tw = nt < nchunks ? nt : (int)nchunks;
    const int dx_im2col = dx && !a.direct;
    const size_t pg = dx_im2col ? sn_gemm_packb_f32(isa, 1, og, kdim, NULL, d->cout, NULL) : 0;
    const size_t pack_size = (size_t)d->groups * pg;
    const size_t dcol_per = dx_im2col ? (size_t)TILE_M * (kdim < DX_NBLK ? kdim : DX_NBLK) : 0;
    /* dw by row blocks (no partials) when there are enough of them for the threads */
    const int rb = a.dw ? dw_job_rows(kdim, og, d->groups, nt) : 0;
    const size_t col_per = !a.dw ? 0 : rb ? (size_t)DW_CHUNK * DWJ_ROWS : (size_t)DW_CHUNK * kdim;
    const int slots = reduce_slots(nchunks, wsize + d->cout, tw);
    const size_t part_size = (a.dw || db) && !rb ? (size_t)slots * (wsize + d->cout) : 0;
    const size_t floats = pack_size + (size_t)nt * dcol_per + (size_t)nt * col_per + part_size;
    float *buf = sn_scratch(SN_SCRATCH_BWD, floats * sizeof(float));
    if (!buf)
        return sn_error(SN_ERR_OOM, "conv2d_backward: cannot allocate %zu bytes of work buffers",
                        floats * sizeof(float));
    float *packed = buf, *dcols = buf + pack_size;
    float *parts = dcols + (size_t)nt * dcol_per, *cols = parts + part_size;
    if (dx_im2col) {
        for (int g = 0; g < d->groups; g++)
            sn_gemm_packb_f32(isa, 1, og, kdim, wt + (size_t)g * og, d->cout, packed + g * pg);
        conv_backward_dx(&a, isa, packed, pg, dcols, dcol_per, nt);
    }
    if (rb) {
        dw_by_rows(&a, rb, cols, nt);
        if (db) db_by_chunks(&a, nt);
    } else if (a.dw || db) {
        reduce_chunks(&a, nchunks, dw_chunk, wsize, parts, slots, col_per ? cols : NULL, col_per,
                      tw);
    }
    return SN_OK;
}
