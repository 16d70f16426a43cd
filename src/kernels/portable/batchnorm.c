/* Batch-norm over the channel (last) axis: inference with stored statistics, and the training-mode
 * forward and backward with batch statistics. */
#include "kernels.h"

#include <math.h>
#include <string.h>

/* Channels folded at a time: the per-channel factor lives on the stack, since this function has
 * no way to report an allocation failure. */
#define CHUNK 256
#define MIN_ROWS_PER_THREAD 64

void sn_batchnorm_f32(size_t rows, int c, const float *x, const float *gamma, const float *beta,
                      const float *mean, const float *var, float eps, float *y, int nthreads) {
    if (rows == 0 || c <= 0) return;
    size_t nt = nthreads > 0 ? (size_t)nthreads : 1;
    if (nt > rows / MIN_ROWS_PER_THREAD) nt = rows / MIN_ROWS_PER_THREAD;
    if (nt < 1) nt = 1;
    const size_t chunk_rows = (rows + nt - 1) / nt;
#pragma omp parallel for num_threads((int)nt) schedule(static) if (nt > 1)
    for (size_t t = 0; t < nt; t++) {
        const size_t r0 = t * chunk_rows;
        const size_t r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
        float mul[CHUNK], mu[CHUNK], add[CHUNK];
        for (int c0 = 0; c0 < c; c0 += CHUNK) {
            const int cn = c - c0 < CHUNK ? c - c0 : CHUNK;
            /* (x - mean) * (gamma/sqrt(var+eps)) + beta: the factor is folded once per channel
             * (in double); subtracting the mean before scaling keeps inputs close to the mean
             * accurate, which folding the mean into the offset would not. */
            for (int k = 0; k < cn; k++) {
                const double g = gamma ? gamma[c0 + k] : 1.0;
                mul[k] = (float)(g / sqrt((double)var[c0 + k] + (double)eps));
                mu[k] = mean[c0 + k];
                add[k] = beta ? beta[c0 + k] : 0.0f;
            }
            for (size_t r = r0; r < r1; r++) {
                const float *xr = x + r * (size_t)c + c0;
                float *yr = y + r * (size_t)c + c0;
                for (int k = 0; k < cn; k++) yr[k] = (xr[k] - mu[k]) * mul[k] + add[k];
            }
        }
    }
}

/* ---- Training mode ------------------------------------------------------------------------
 * Per-channel sums over all rows are taken in double. For determinism the rows are cut into a
 * number of blocks that depends on `rows` alone (never on nthreads); each block's partial sums
 * land in their own slot and the slots are added in block order, so 1, 2 or 16 threads give the
 * same bits. Channels are handled CCH at a time so the partials fit on the stack (these
 * functions have no failure path). */
#define CCH 64
#define NBLK 16
#define MIN_ROWS_PER_BLOCK 256

static int row_blocks(size_t rows) {
    const size_t b = rows / MIN_ROWS_PER_BLOCK;
    return b < 1 ? 1 : (b > NBLK ? NBLK : (int)b);
}

/* What a channel sum adds per element. */
enum { SUM_X, SUM_SQDEV, SUM_DY_XHAT };

/* s1[k] (and s2[k] for SUM_DY_XHAT) over channels c0..c0+cn-1:
 *   SUM_X:       s1 = sum x
 *   SUM_SQDEV:   s1 = sum (x - m)^2            (m = a[k], the mean, in double)
 *   SUM_DY_XHAT: s1 = sum dy, s2 = sum dy * (x - m) * is   (m = a[k], is = b[k]) */
static void channel_sums(int mode, size_t rows, int c, int c0, int cn, const float *x,
                         const float *dy, const double *a, const double *b, double *s1,
                         double *s2, int nthreads) {
    double p1[NBLK][CCH], p2[NBLK][CCH];
    const int nb = row_blocks(rows);
    const size_t per = (rows + (size_t)nb - 1) / (size_t)nb;
    int nt = nthreads > 0 ? nthreads : 1;
    if (nt > nb) nt = nb;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int blk = 0; blk < nb; blk++) {
        const size_t r0 = (size_t)blk * per;
        const size_t r1 = r0 + per < rows ? r0 + per : rows;
        double *q1 = p1[blk], *q2 = p2[blk];
        for (int k = 0; k < cn; k++) q1[k] = q2[k] = 0.0;
        for (size_t r = r0; r < r1; r++) {
            const float *xr = x + r * (size_t)c + c0;
            if (mode == SUM_X) {
                for (int k = 0; k < cn; k++) q1[k] += xr[k];
            } else if (mode == SUM_SQDEV) {
                for (int k = 0; k < cn; k++) {
                    const double d = xr[k] - a[k];
                    q1[k] += d * d;
                }
            } else {
                const float *dr = dy + r * (size_t)c + c0;
                for (int k = 0; k < cn; k++) {
                    q1[k] += dr[k];
                    q2[k] += (double)dr[k] * ((xr[k] - a[k]) * b[k]);
                }
            }
        }
    }
    for (int k = 0; k < cn; k++) {
        double t1 = 0.0, t2 = 0.0;
        for (int blk = 0; blk < nb; blk++) {
            t1 += p1[blk][k];
            t2 += p2[blk][k];
        }
        s1[k] = t1;
        if (s2) s2[k] = t2;
    }
}

void sn_batchnorm_train_f32(size_t rows, int c, const float *x, const float *gamma,
                            const float *beta, float eps, float momentum, int unbiased_running_var,
                            float *running_mean, float *running_var, float *y, float *save_mean,
                            float *save_invstd, int nthreads) {
    if (rows == 0 || c <= 0) return;
    int nt = nthreads > 0 ? nthreads : 1;
    for (int c0 = 0; c0 < c; c0 += CCH) {
        const int cn = c - c0 < CCH ? c - c0 : CCH;
        double mean[CCH], var[CCH], invstd[CCH];
        /* Two passes (mean, then squared deviations): no cancellation of E[x^2] - E[x]^2. */
        channel_sums(SUM_X, rows, c, c0, cn, x, NULL, NULL, NULL, mean, NULL, nthreads);
        for (int k = 0; k < cn; k++) mean[k] /= (double)rows;
        channel_sums(SUM_SQDEV, rows, c, c0, cn, x, NULL, mean, NULL, var, NULL, nthreads);
        for (int k = 0; k < cn; k++) {
            var[k] /= (double)rows;
            invstd[k] = 1.0 / sqrt(var[k] + (double)eps);
            const int ch = c0 + k;
            if (save_mean) save_mean[ch] = (float)mean[k];
            if (save_invstd) save_invstd[ch] = (float)invstd[k];
            const double mom = momentum;
            if (running_mean)
                running_mean[ch] = (float)(mom * running_mean[ch] + (1.0 - mom) * mean[k]);
            if (running_var) {
                /* A single row has no unbiased estimate (0/0): the biased one is used then. */
                const double v = (unbiased_running_var && rows > 1)
                                     ? var[k] * (double)rows / (double)(rows - 1)
                                     : var[k];
                running_var[ch] = (float)(mom * running_var[ch] + (1.0 - mom) * v);
            }
        }
        if (!y) continue;
        float mul[CCH], mu[CCH], add[CCH];
        for (int k = 0; k < cn; k++) {
            const double g = gamma ? gamma[c0 + k] : 1.0;
            mul[k] = (float)(g * invstd[k]);
            mu[k] = (float)mean[k];
            add[k] = beta ? beta[c0 + k] : 0.0f;
        }
        /* Elementwise: any row split gives the same bits. */
        int ntr = nt;
        if ((size_t)ntr > rows / MIN_ROWS_PER_BLOCK) ntr = (int)(rows / MIN_ROWS_PER_BLOCK);
        if (ntr < 1) ntr = 1;
#pragma omp parallel for num_threads(ntr) schedule(static) if (ntr > 1)
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * (size_t)c + c0;
            float *yr = y + r * (size_t)c + c0;
            for (int k = 0; k < cn; k++) yr[k] = (xr[k] - mu[k]) * mul[k] + add[k];
        }
    }
}

/* With xhat = (x - mean) * invstd and N = rows, differentiating through the batch mean and
 * variance gives, per channel,
 *   dx = gamma * invstd * (dy - sum(dy)/N - xhat * sum(dy * xhat)/N),
 * evaluated in double per element since the three terms can nearly cancel. */
void sn_batchnorm_train_backward_f32(size_t rows, int c, const float *x, const float *gamma,
                                     const float *save_mean, const float *save_invstd,
                                     const float *dy, float *dx, float *dgamma, float *dbeta,
                                     int nthreads) {
    if (rows == 0 || c <= 0) return;
    if (!dx && !dgamma && !dbeta) return;
    int nt = nthreads > 0 ? nthreads : 1;
    for (int c0 = 0; c0 < c; c0 += CCH) {
        const int cn = c - c0 < CCH ? c - c0 : CCH;
        double m[CCH], is[CCH], sdy[CCH], sdyx[CCH];
        for (int k = 0; k < cn; k++) {
            m[k] = save_mean[c0 + k];
            is[k] = save_invstd[c0 + k];
        }
        channel_sums(SUM_DY_XHAT, rows, c, c0, cn, x, dy, m, is, sdy, sdyx, nthreads);
        for (int k = 0; k < cn; k++) {
            if (dbeta) dbeta[c0 + k] += (float)sdy[k];
            if (dgamma) dgamma[c0 + k] += (float)sdyx[k];
        }
        if (!dx) continue;
        double a[CCH], mdy[CCH], mdyx[CCH];
        for (int k = 0; k < cn; k++) {
            a[k] = (gamma ? gamma[c0 + k] : 1.0) * is[k];
            mdy[k] = sdy[k] / (double)rows;
            mdyx[k] = sdyx[k] / (double)rows;
        }
        int ntr = nt;
        if ((size_t)ntr > rows / MIN_ROWS_PER_BLOCK) ntr = (int)(rows / MIN_ROWS_PER_BLOCK);
        if (ntr < 1) ntr = 1;
#pragma omp parallel for num_threads(ntr) schedule(static) if (ntr > 1)
        for (size_t r = 0; r < rows; r++) {
            const float *xr = x + r * (size_t)c + c0;
            const float *dr = dy + r * (size_t)c + c0;
            float *gr = dx + r * (size_t)c + c0;
            for (int k = 0; k < cn; k++) {
                const double xhat = (xr[k] - m[k]) * is[k];
                gr[k] += (float)(a[k] * (dr[k] - mdy[k] - xhat * mdyx[k]));
            }
        }
    }
}

/* ---- Fused training-mode batch-norm + activation ------------------------------------------
 * The forward takes the statistics in one pass and writes only y = act(bn(x)); the backward
 * recomputes the pre-activation from x and the saved statistics, so neither the BN output nor
 * the activation's gradient is ever stored: two passes over x and dy in all, where the unfused
 * pair makes five over larger data. Sums are taken in float over TROWS rows at a time, then in
 * double, with the same row blocks (a function of rows alone) as channel_sums: the bits do not
 * depend on the thread count. */
#define FCH 128
#define TROWS 16

typedef struct {
    int nb;
    size_t per;
    int nt;
} row_split;

static row_split split_rows(size_t rows, int nthreads) {
    row_split s;
    s.nb = row_blocks(rows);
    s.per = (rows + (size_t)s.nb - 1) / (size_t)s.nb;
    s.nt = nthreads > 0 ? nthreads : 1;
    if (s.nt > s.nb) s.nt = s.nb;
    return s;
}

/* A shift close to the batch mean (the mean of up to 64 evenly spaced rows) so that the one-pass
 * variance sum(d^2)/N - (sum(d)/N)^2 of d = x - shift does not cancel. */
static void mean_estimate(size_t rows, int c, int c0, int cn, const float *x, float *shift) {
    const size_t m = rows < 64 ? rows : 64;
    double acc[FCH];
    for (int k = 0; k < cn; k++) acc[k] = 0.0;
    for (size_t i = 0; i < m; i++) {
        const float *xr = x + (i * rows / m) * (size_t)c + c0;
        for (int k = 0; k < cn; k++) acc[k] += xr[k];
    }
    for (int k = 0; k < cn; k++) shift[k] = (float)(acc[k] / (double)m);
}

void sn_batchnorm_act_train_f32(size_t rows, int c, const float *x, const float *gamma,
                                const float *beta, float eps, float momentum,
                                int unbiased_running_var, float *running_mean, float *running_var,
                                sn_act act, float *y, float *save_mean, float *save_invstd,
                                int nthreads) {
    if (rows == 0 || c <= 0) return;
    const row_split rs = split_rows(rows, nthreads);
    for (int c0 = 0; c0 < c; c0 += FCH) {
        const int cn = c - c0 < FCH ? c - c0 : FCH;
        float shift[FCH];
        mean_estimate(rows, c, c0, cn, x, shift);
        double p1[NBLK][FCH], p2[NBLK][FCH];
#pragma omp parallel for num_threads(rs.nt) schedule(static) if (rs.nt > 1)
        for (int blk = 0; blk < rs.nb; blk++) {
            const size_t r0 = (size_t)blk * rs.per;
            const size_t r1 = r0 + rs.per < rows ? r0 + rs.per : rows;
            double *q1 = p1[blk], *q2 = p2[blk];
            for (int k = 0; k < cn; k++) q1[k] = q2[k] = 0.0;
            for (size_t r = r0; r < r1; r += TROWS) {
                const size_t re = r + TROWS < r1 ? r + TROWS : r1;
                float f1[FCH], f2[FCH];
                for (int k = 0; k < cn; k++) f1[k] = f2[k] = 0.0f;
                for (size_t i = r; i < re; i++) {
                    const float *xr = x + i * (size_t)c + c0;
                    for (int k = 0; k < cn; k++) {
                        const float d = xr[k] - shift[k];
                        f1[k] += d;
                        f2[k] += d * d;
                    }
                }
                for (int k = 0; k < cn; k++) {
                    q1[k] += f1[k];
                    q2[k] += f2[k];
                }
            }
        }
        float mul[FCH], mu[FCH], add[FCH];
        for (int k = 0; k < cn; k++) {
            double s1 = 0.0, s2 = 0.0;
            for (int blk = 0; blk < rs.nb; blk++) {
                s1 += p1[blk][k];
                s2 += p2[blk][k];
            }
            const double dm = s1 / (double)rows;
            double var = s2 / (double)rows - dm * dm;
            if (var < 0.0) var = 0.0;
            const double mean = (double)shift[k] + dm;
            const float fmean = (float)mean, finv = (float)(1.0 / sqrt(var + (double)eps));
            const int ch = c0 + k;
            if (save_mean) save_mean[ch] = fmean;
            if (save_invstd) save_invstd[ch] = finv;
            const double mom = momentum;
            if (running_mean)
                running_mean[ch] = (float)(mom * running_mean[ch] + (1.0 - mom) * mean);
            if (running_var) {
                const double v = (unbiased_running_var && rows > 1)
                                     ? var * (double)rows / (double)(rows - 1)
                                     : var;
                running_var[ch] = (float)(mom * running_var[ch] + (1.0 - mom) * v);
            }
            /* From the rounded statistics, exactly as the backward recomputes it. */
            mul[k] = (float)((gamma ? (double)gamma[ch] : 1.0) * (double)finv);
            mu[k] = fmean;
            add[k] = beta ? beta[ch] : 0.0f;
        }
        if (!y) continue;
#pragma omp parallel for num_threads(rs.nt) schedule(static) if (rs.nt > 1)
        for (int blk = 0; blk < rs.nb; blk++) {
            const size_t r0 = (size_t)blk * rs.per;
            const size_t r1 = r0 + rs.per < rows ? r0 + rs.per : rows;
            for (size_t r = r0; r < r1; r += TROWS) {
                const size_t re = r + TROWS < r1 ? r + TROWS : r1;
                /* ReLU inline; the rest through the activation kernel, a tile at a time. */
                const int other = act != SN_ACT_NONE && act != SN_ACT_RELU;
                for (size_t i = r; i < re; i++) {
                    const float *xr = x + i * (size_t)c + c0;
                    float *yr = y + i * (size_t)c + c0;
                    if (act == SN_ACT_RELU) {
                        for (int k = 0; k < cn; k++) {
                            const float v = (xr[k] - mu[k]) * mul[k] + add[k];
                            yr[k] = v > 0.0f ? v : 0.0f;
                        }
                        continue;
                    }
                    for (int k = 0; k < cn; k++) yr[k] = (xr[k] - mu[k]) * mul[k] + add[k];
                    if (cn != c && other) sn_act_f32(act, (size_t)cn, yr, yr, 1);
                }
                if (cn == c && other) {
                    float *yt = y + r * (size_t)c;
                    sn_act_f32(act, (re - r) * (size_t)c, yt, yt, 1);
                }
            }
        }
    }
}

/* g = dy * act'(u) for rows r..re of channels c0..c0+cn, u = (x - mu) * mul + add recomputed.
 * Returns the rows' g with leading dimension *ld: dy itself without an activation, else the
 * dense tile d [re - r][cn] (u is scratch of the same size). */
static const float *grad_tile(sn_act act, size_t r, size_t re, int c, int c0, int cn,
                              const float *x, const float *dy, const float *mu, const float *mul,
                              const float *add, float *u, float *d, size_t *ld) {
    if (act == SN_ACT_NONE) {
        *ld = (size_t)c;
        return dy + r * (size_t)c + c0;
    }
    *ld = (size_t)cn;
    size_t j = 0;
    if (act == SN_ACT_RELU) {
        for (size_t i = r; i < re; i++, j += (size_t)cn) {
            const float *xr = x + i * (size_t)c + c0, *dr = dy + i * (size_t)c + c0;
            for (int k = 0; k < cn; k++) {
                const float v = (xr[k] - mu[k]) * mul[k] + add[k], g = dr[k];
                d[j + (size_t)k] = v > 0.0f ? g : 0.0f;
            }
        }
        return d;
    }
    for (size_t i = r; i < re; i++, j += (size_t)cn) {
        const float *xr = x + i * (size_t)c + c0, *dr = dy + i * (size_t)c + c0;
        for (int k = 0; k < cn; k++) {
            d[j + (size_t)k] = dr[k];
            u[j + (size_t)k] = (xr[k] - mu[k]) * mul[k] + add[k];
        }
    }
    sn_act_grad_range_f32(act, j, u, d, d);
    return d;
}

void sn_batchnorm_act_train_backward_f32(size_t rows, int c, const float *x, const float *gamma,
                                         const float *beta, const float *save_mean,
                                         const float *save_invstd, sn_act act, const float *dy,
                                         float *dx, float *dgamma, float *dbeta, int nthreads) {
    if (rows == 0 || c <= 0) return;
    if (!dx && !dgamma && !dbeta) return;
    const row_split rs = split_rows(rows, nthreads);
    /* The derivatives with an exp (swish, sigmoid) or several compares cost more than a pass
     * over memory: the first pass keeps g in dx and the second reads it back (same values, so
     * the same bits) instead of computing it again. */
    const int keep = dx && act != SN_ACT_NONE && act != SN_ACT_RELU;
    for (int c0 = 0; c0 < c; c0 += FCH) {
        const int cn = c - c0 < FCH ? c - c0 : FCH;
        float mu[FCH], is[FCH], mul[FCH], add[FCH];
        for (int k = 0; k < cn; k++) {
            const int ch = c0 + k;
            mu[k] = save_mean[ch];
            is[k] = save_invstd[ch];
            mul[k] = (float)((gamma ? (double)gamma[ch] : 1.0) * (double)save_invstd[ch]);
            add[k] = beta ? beta[ch] : 0.0f;
        }
        double p1[NBLK][FCH], p2[NBLK][FCH];
#pragma omp parallel for num_threads(rs.nt) schedule(static) if (rs.nt > 1)
        for (int blk = 0; blk < rs.nb; blk++) {
            const size_t r0 = (size_t)blk * rs.per;
            const size_t r1 = r0 + rs.per < rows ? r0 + rs.per : rows;
            double *q1 = p1[blk], *q2 = p2[blk];
            for (int k = 0; k < cn; k++) q1[k] = q2[k] = 0.0;
            float u[TROWS * FCH], d[TROWS * FCH];
            for (size_t r = r0; r < r1; r += TROWS) {
                const size_t re = r + TROWS < r1 ? r + TROWS : r1;
                size_t ld;
                const float *gt = grad_tile(act, r, re, c, c0, cn, x, dy, mu, mul, add, u, d, &ld);
                if (keep)
                    for (size_t i = r; i < re; i++)
                        memcpy(dx + i * (size_t)c + c0, gt + (i - r) * ld, sizeof(float) * (size_t)cn);
                float f1[FCH], f2[FCH];
                for (int k = 0; k < cn; k++) f1[k] = f2[k] = 0.0f;
                size_t j = 0;
                for (size_t i = r; i < re; i++, j += ld) {
                    const float *xr = x + i * (size_t)c + c0;
                    for (int k = 0; k < cn; k++) {
                        const float g = gt[j + (size_t)k];
                        f1[k] += g;
                        f2[k] += g * ((xr[k] - mu[k]) * is[k]);
                    }
                }
                for (int k = 0; k < cn; k++) {
                    q1[k] += f1[k];
                    q2[k] += f2[k];
                }
            }
        }
        float a[FCH], mdy[FCH], mdyx[FCH];
        for (int k = 0; k < cn; k++) {
            double sdy = 0.0, sdyx = 0.0;
            for (int blk = 0; blk < rs.nb; blk++) {
                sdy += p1[blk][k];
                sdyx += p2[blk][k];
            }
            if (dbeta) dbeta[c0 + k] += (float)sdy;
            if (dgamma) dgamma[c0 + k] += (float)sdyx;
            a[k] = mul[k];
            mdy[k] = (float)(sdy / (double)rows);
            mdyx[k] = (float)(sdyx / (double)rows);
        }
        if (!dx) continue;
#pragma omp parallel for num_threads(rs.nt) schedule(static) if (rs.nt > 1)
        for (int blk = 0; blk < rs.nb; blk++) {
            const size_t r0 = (size_t)blk * rs.per;
            const size_t r1 = r0 + rs.per < rows ? r0 + rs.per : rows;
            float u[TROWS * FCH], d[TROWS * FCH];
            for (size_t r = r0; r < r1; r += TROWS) {
                const size_t re = r + TROWS < r1 ? r + TROWS : r1;
                size_t ld = (size_t)c;
                const float *gt = keep ? dx + r * (size_t)c + c0
                                       : grad_tile(act, r, re, c, c0, cn, x, dy, mu, mul, add, u,
                                                   d, &ld);
                size_t j = 0;
                for (size_t i = r; i < re; i++, j += ld) {
                    const float *xr = x + i * (size_t)c + c0;
                    float *gr = dx + i * (size_t)c + c0;
                    for (int k = 0; k < cn; k++) {
                        const float xhat = (xr[k] - mu[k]) * is[k];
                        gr[k] = a[k] * (gt[j + (size_t)k] - mdy[k] - xhat * mdyx[k]);
                    }
                }
            }
        }
    }
}

/* ---- Synchronized batch-norm (the statistics summed over several graphs) -------------------
 * The fused kernels above split: the local per-channel sums, which the caller sums over every
 * process (sn_graph.bn_reduce), then the statistics from the global sums, then the elementwise
 * pass with them. The backward likewise: local sums of g and g * xhat, summed by the caller, then
 * dx from the global ones. Row blocks as above (a function of rows alone): the bits do not depend
 * on the thread count. */

void sn_batchnorm_sums_f32(size_t rows, int c, const float *x, double *sum, double *sumsq,
                           int nthreads) {
    if (c <= 0) return;
    if (rows == 0) {
        for (int k = 0; k < c; k++) sum[k] = sumsq[k] = 0.0;
        return;
    }
    const row_split rs = split_rows(rows, nthreads);
    for (int c0 = 0; c0 < c; c0 += FCH) {
        const int cn = c - c0 < FCH ? c - c0 : FCH;
        double p1[NBLK][FCH], p2[NBLK][FCH];
#pragma omp parallel for num_threads(rs.nt) schedule(static) if (rs.nt > 1)
        for (int blk = 0; blk < rs.nb; blk++) {
            const size_t r0 = (size_t)blk * rs.per;
            const size_t r1 = r0 + rs.per < rows ? r0 + rs.per : rows;
            double *q1 = p1[blk], *q2 = p2[blk];
            for (int k = 0; k < cn; k++) q1[k] = q2[k] = 0.0;
            /* Every element in double: the raw sum of squares must keep its low digits, since
             * the variance is sumsq / N - mean^2. */
            for (size_t r = r0; r < r1; r++) {
                const float *xr = x + r * (size_t)c + c0;
                for (int k = 0; k < cn; k++) {
                    const double v = xr[k];
                    q1[k] += v;
                    q2[k] += v * v;
                }
            }
        }
        for (int k = 0; k < cn; k++) {
            double s1 = 0.0, s2 = 0.0;
            for (int blk = 0; blk < rs.nb; blk++) {
                s1 += p1[blk][k];
                s2 += p2[blk][k];
            }
            sum[c0 + k] = s1;
            sumsq[c0 + k] = s2;
        }
    }
}

void sn_batchnorm_stats_from_sums_f32(int c, double rows, const double *sum, const double *sumsq,
                                      float eps, float momentum, int unbiased_running_var,
                                      float *running_mean, float *running_var, float *save_mean,
                                      float *save_invstd) {
    if (c <= 0 || !(rows > 0.0)) return;
    for (int ch = 0; ch < c; ch++) {
        const double mean = sum[ch] / rows;
        double var = sumsq[ch] / rows - mean * mean;
        if (var < 0.0) var = 0.0;
        if (save_mean) save_mean[ch] = (float)mean;
        if (save_invstd) save_invstd[ch] = (float)(1.0 / sqrt(var + (double)eps));
        const double mom = momentum;
        if (running_mean) running_mean[ch] = (float)(mom * running_mean[ch] + (1.0 - mom) * mean);
        if (running_var) {
            const double v = (unbiased_running_var && rows > 1.0) ? var * rows / (rows - 1.0) : var;
            running_var[ch] = (float)(mom * running_var[ch] + (1.0 - mom) * v);
        }
    }
}

void sn_batchnorm_act_apply_f32(size_t rows, int c, const float *x, const float *gamma,
                                const float *beta, const float *mean, const float *invstd,
                                sn_act act, float *y, int nthreads) {
    if (rows == 0 || c <= 0) return;
    const row_split rs = split_rows(rows, nthreads);
    const int other = act != SN_ACT_NONE && act != SN_ACT_RELU;
    for (int c0 = 0; c0 < c; c0 += FCH) {
        const int cn = c - c0 < FCH ? c - c0 : FCH;
        float mul[FCH], mu[FCH], add[FCH];
        for (int k = 0; k < cn; k++) {
            const int ch = c0 + k;
            mul[k] = (float)((gamma ? (double)gamma[ch] : 1.0) * (double)invstd[ch]);
            mu[k] = mean[ch];
            add[k] = beta ? beta[ch] : 0.0f;
        }
#pragma omp parallel for num_threads(rs.nt) schedule(static) if (rs.nt > 1)
        for (int blk = 0; blk < rs.nb; blk++) {
            const size_t r0 = (size_t)blk * rs.per;
            const size_t r1 = r0 + rs.per < rows ? r0 + rs.per : rows;
            for (size_t r = r0; r < r1; r += TROWS) {
                const size_t re = r + TROWS < r1 ? r + TROWS : r1;
                for (size_t i = r; i < re; i++) {
                    const float *xr = x + i * (size_t)c + c0;
                    float *yr = y + i * (size_t)c + c0;
                    if (act == SN_ACT_RELU) {
                        for (int k = 0; k < cn; k++) {
                            const float v = (xr[k] - mu[k]) * mul[k] + add[k];
                            yr[k] = v > 0.0f ? v : 0.0f;
                        }
                        continue;
                    }
                    for (int k = 0; k < cn; k++) yr[k] = (xr[k] - mu[k]) * mul[k] + add[k];
                    if (cn != c && other) sn_act_f32(act, (size_t)cn, yr, yr, 1);
                }
                if (cn == c && other) {
                    float *yt = y + r * (size_t)c;
                    sn_act_f32(act, (re - r) * (size_t)c, yt, yt, 1);
                }
            }
        }
    }
}

void sn_batchnorm_act_backward_sums_f32(size_t rows, int c, const float *x, const float *gamma,
                                        const float *beta, const float *mean,
                                        const float *invstd, sn_act act, const float *dy,
                                        double *sum_g, double *sum_gxhat, float *g,
                                        float *dgamma, float *dbeta, int nthreads) {
    if (c <= 0) return;
    if (rows == 0) {
        for (int k = 0; k < c; k++) sum_g[k] = sum_gxhat[k] = 0.0;
        return;
    }
    const row_split rs = split_rows(rows, nthreads);
    for (int c0 = 0; c0 < c; c0 += FCH) {
        const int cn = c - c0 < FCH ? c - c0 : FCH;
        float mu[FCH], is[FCH], mul[FCH], add[FCH];
        for (int k = 0; k < cn; k++) {
            const int ch = c0 + k;
            mu[k] = mean[ch];
            is[k] = invstd[ch];
            mul[k] = (float)((gamma ? (double)gamma[ch] : 1.0) * (double)invstd[ch]);
            add[k] = beta ? beta[ch] : 0.0f;
        }
        double p1[NBLK][FCH], p2[NBLK][FCH];
#pragma omp parallel for num_threads(rs.nt) schedule(static) if (rs.nt > 1)
        for (int blk = 0; blk < rs.nb; blk++) {
            const size_t r0 = (size_t)blk * rs.per;
            const size_t r1 = r0 + rs.per < rows ? r0 + rs.per : rows;
            double *q1 = p1[blk], *q2 = p2[blk];
            for (int k = 0; k < cn; k++) q1[k] = q2[k] = 0.0;
            float u[TROWS * FCH], d[TROWS * FCH];
            for (size_t r = r0; r < r1; r += TROWS) {
                const size_t re = r + TROWS < r1 ? r + TROWS : r1;
                size_t ld;
                const float *gt = grad_tile(act, r, re, c, c0, cn, x, dy, mu, mul, add, u, d, &ld);
                if (g)
                    for (size_t i = r; i < re; i++)
                        memcpy(g + i * (size_t)c + c0, gt + (i - r) * ld,
                               sizeof(float) * (size_t)cn);
                /* As the fused backward: float over a tile of rows, then double. */
                float f1[FCH], f2[FCH];
                for (int k = 0; k < cn; k++) f1[k] = f2[k] = 0.0f;
                size_t j = 0;
                for (size_t i = r; i < re; i++, j += ld) {
                    const float *xr = x + i * (size_t)c + c0;
                    for (int k = 0; k < cn; k++) {
                        const float gv = gt[j + (size_t)k];
                        f1[k] += gv;
                        f2[k] += gv * ((xr[k] - mu[k]) * is[k]);
                    }
                }
                for (int k = 0; k < cn; k++) {
                    q1[k] += f1[k];
                    q2[k] += f2[k];
                }
            }
        }
        for (int k = 0; k < cn; k++) {
            double s1 = 0.0, s2 = 0.0;
            for (int blk = 0; blk < rs.nb; blk++) {
                s1 += p1[blk][k];
                s2 += p2[blk][k];
            }
            sum_g[c0 + k] = s1;
            sum_gxhat[c0 + k] = s2;
            if (dbeta) dbeta[c0 + k] += (float)s1;
            if (dgamma) dgamma[c0 + k] += (float)s2;
        }
    }
}

void sn_batchnorm_act_backward_dx_f32(size_t rows, int c, const float *x, const float *gamma,
                                      const float *beta, const float *mean, const float *invstd,
                                      sn_act act, const float *dy, const double *sum_g,
                                      const double *sum_gxhat, double rows_total, float *dx,
                                      int nthreads) {
    if (rows == 0 || c <= 0 || !(rows_total > 0.0)) return;
    const row_split rs = split_rows(rows, nthreads);
    for (int c0 = 0; c0 < c; c0 += FCH) {
        const int cn = c - c0 < FCH ? c - c0 : FCH;
        float mu[FCH], is[FCH], mul[FCH], add[FCH], mg[FCH], mgx[FCH];
        for (int k = 0; k < cn; k++) {
            const int ch = c0 + k;
            mu[k] = mean[ch];
            is[k] = invstd[ch];
            mul[k] = (float)((gamma ? (double)gamma[ch] : 1.0) * (double)invstd[ch]);
            add[k] = beta ? beta[ch] : 0.0f;
            mg[k] = (float)(sum_g[ch] / rows_total);
            mgx[k] = (float)(sum_gxhat[ch] / rows_total);
        }
#pragma omp parallel for num_threads(rs.nt) schedule(static) if (rs.nt > 1)
        for (int blk = 0; blk < rs.nb; blk++) {
            const size_t r0 = (size_t)blk * rs.per;
            const size_t r1 = r0 + rs.per < rows ? r0 + rs.per : rows;
            float u[TROWS * FCH], d[TROWS * FCH];
            for (size_t r = r0; r < r1; r += TROWS) {
                const size_t re = r + TROWS < r1 ? r + TROWS : r1;
                size_t ld;
                /* Without an activation gt is dy itself, which may be dx: each element is read
                 * before it is written. */
                const float *gt = grad_tile(act, r, re, c, c0, cn, x, dy, mu, mul, add, u, d, &ld);
                size_t j = 0;
                for (size_t i = r; i < re; i++, j += ld) {
                    const float *xr = x + i * (size_t)c + c0;
                    float *gr = dx + i * (size_t)c + c0;
                    for (int k = 0; k < cn; k++) {
                        const float xhat = (xr[k] - mu[k]) * is[k];
                        gr[k] = mul[k] * (gt[j + (size_t)k] - mg[k] - xhat * mgx[k]);
                    }
                }
            }
        }
    }
}
