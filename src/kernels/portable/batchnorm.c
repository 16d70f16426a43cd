/* Batch-norm over the channel (last) axis: inference with stored statistics, and the training-mode
 * forward and backward with batch statistics. */
#include "kernels.h"

#include <math.h>
#include <string.h>

#include "bn_tile.h"

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
 * depend on the thread count.
 *
 * A pass is one parallel region over every (row block, FCH-channel block) pair, not one region
 * per channel block: on a machine whose cores are shared, each fork, barrier and join costs a
 * reschedule of the sleeping threads, which on the small maps of the upper levels cost more than
 * the pass itself. Each pair's partial sums are the same arithmetic in the same order as when
 * the channel blocks ran one after another, so the bits did not change. */
#define FCH 128
#define TROWS 16
/* Channels per parallel region. The partials of every (row block, channel) live on the caller's
 * stack (2 * NBLK * SCH doubles, 128 KiB): these functions have no failure path. No layer of the
 * networks here is wider, so a pass is one region. */
#define SCH 512
/* Below this many elements a single row block is left to one thread: waking the other costs
 * more than it saves. */
#define MIN_PAR_ELEMS 65536

typedef struct {
    int nb;
    size_t per;
} row_split;

static row_split split_rows(size_t rows) {
    row_split s;
    s.nb = row_blocks(rows);
    s.per = (rows + (size_t)s.nb - 1) / (size_t)s.nb;
    return s;
}

/* One work item of a pass over a super-chunk of sn channels: row block blk (rows [r0, r1)) and
 * the channels [c0, c0+cn) counted from the super-chunk's first. Items are numbered row-block
 * major, so a thread's static share is one band of rows. */
typedef struct {
    int blk, c0, cn;
    size_t r0, r1;
} work_item;

static work_item item_at(row_split rs, size_t rows, int sn, int it) {
    const int ncb = (sn + FCH - 1) / FCH;
    work_item w;
    w.blk = it / ncb;
    w.c0 = (it % ncb) * FCH;
    w.cn = sn - w.c0 < FCH ? sn - w.c0 : FCH;
    w.r0 = (size_t)w.blk * rs.per;
    w.r1 = w.r0 + rs.per < rows ? w.r0 + rs.per : rows;
    return w;
}

static int item_count(row_split rs, int sn) { return rs.nb * ((sn + FCH - 1) / FCH); }

static int pass_threads(row_split rs, size_t rows, int sn, int nthreads) {
    int nt = nthreads > 0 ? nthreads : 1;
    const int items = item_count(rs, sn);
    if (nt > items) nt = items;
    if (rs.nb < 2 && rows * (size_t)sn < MIN_PAR_ELEMS) nt = 1;
    return nt;
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

/* y = act((x - mu) * mul + add) on rows [r0, r1) of channels [c0, c0+cn) (mu, mul, add indexed
 * from c0), TROWS rows at a time: ReLU inline, the rest through the activation kernel, over the
 * whole tile when it is contiguous (cn == c). */
static void apply_block(sn_act act, size_t r0, size_t r1, int c, int c0, int cn, const float *x,
                        float *y, const float *mu, const float *mul, const float *add) {
    const int other = act != SN_ACT_NONE && act != SN_ACT_RELU;
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

void sn_batchnorm_act_train_f32(size_t rows, int c, const float *x, const float *gamma,
                                const float *beta, float eps, float momentum,
                                int unbiased_running_var, float *running_mean, float *running_var,
                                sn_act act, float *y, float *save_mean, float *save_invstd,
                                int nthreads) {
    if (rows == 0 || c <= 0) return;
    const row_split rs = split_rows(rows);
    for (int s0 = 0; s0 < c; s0 += SCH) {
        const int sn = c - s0 < SCH ? c - s0 : SCH;
        const int items = item_count(rs, sn);
        const int nt = pass_threads(rs, rows, sn, nthreads);
        float shift[SCH];
        for (int b = 0; b < sn; b += FCH)
            mean_estimate(rows, c, s0 + b, sn - b < FCH ? sn - b : FCH, x, shift + b);
        double p1[NBLK][SCH], p2[NBLK][SCH];
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
#pragma omp for schedule(static)
            for (int it = 0; it < items; it++) {
                const work_item w = item_at(rs, rows, sn, it);
                const int cn = w.cn;
                const float *sh = shift + w.c0;
                double *q1 = p1[w.blk] + w.c0, *q2 = p2[w.blk] + w.c0;
                for (int k = 0; k < cn; k++) q1[k] = q2[k] = 0.0;
                for (size_t r = w.r0; r < w.r1; r += TROWS) {
                    const size_t re = r + TROWS < w.r1 ? r + TROWS : w.r1;
                    float f1[FCH], f2[FCH];
                    for (int k = 0; k < cn; k++) f1[k] = f2[k] = 0.0f;
                    for (size_t i = r; i < re; i++) {
                        const float *xr = x + i * (size_t)c + s0 + w.c0;
                        for (int k = 0; k < cn; k++) {
                            const float d = xr[k] - sh[k];
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
            /* Every thread folds the partials itself (the same bits in each) rather than one
             * folding while the others wait at a second barrier; one of them writes the
             * statistics out. */
            double mean[SCH], var[SCH];
            float mul[SCH], mu[SCH], add[SCH];
            for (int k = 0; k < sn; k++) {
                double s1 = 0.0, s2 = 0.0;
                for (int blk = 0; blk < rs.nb; blk++) {
                    s1 += p1[blk][k];
                    s2 += p2[blk][k];
                }
                const double dm = s1 / (double)rows;
                double v = s2 / (double)rows - dm * dm;
                if (v < 0.0) v = 0.0;
                mean[k] = (double)shift[k] + dm;
                var[k] = v;
                const int ch = s0 + k;
                const float finv = (float)(1.0 / sqrt(v + (double)eps));
                /* From the rounded statistics, exactly as the backward recomputes it. */
                mul[k] = (float)((gamma ? (double)gamma[ch] : 1.0) * (double)finv);
                mu[k] = (float)mean[k];
                add[k] = beta ? beta[ch] : 0.0f;
            }
#pragma omp single nowait
            for (int k = 0; k < sn; k++) {
                const int ch = s0 + k;
                if (save_mean) save_mean[ch] = mu[k];
                if (save_invstd) save_invstd[ch] = (float)(1.0 / sqrt(var[k] + (double)eps));
                const double mom = momentum;
                if (running_mean)
                    running_mean[ch] = (float)(mom * running_mean[ch] + (1.0 - mom) * mean[k]);
                if (running_var) {
                    const double v = (unbiased_running_var && rows > 1)
                                         ? var[k] * (double)rows / (double)(rows - 1)
                                         : var[k];
                    running_var[ch] = (float)(mom * running_var[ch] + (1.0 - mom) * v);
                }
            }
            if (y) {
#pragma omp for schedule(static) nowait
                for (int it = 0; it < items; it++) {
                    const work_item w = item_at(rs, rows, sn, it);
                    apply_block(act, w.r0, w.r1, c, s0 + w.c0, w.cn, x, y, mu + w.c0,
                                mul + w.c0, add + w.c0);
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

/* Local sums of g and g * xhat over one work item into q1, q2 (indexed from the item's first
 * channel), in float over a tile of rows, then double; g is copied to gout when it is non-NULL. */
static void grad_sums_item(sn_act act, work_item w, int c, int s0, const float *x,
                           const float *dy, const float *mu, const float *is, const float *mul,
                           const float *add, double *q1, double *q2, float *gout) {
    const int cn = w.cn, c0 = s0 + w.c0;
    for (int k = 0; k < cn; k++) q1[k] = q2[k] = 0.0;
    float u[TROWS * FCH], d[TROWS * FCH];
    for (size_t r = w.r0; r < w.r1; r += TROWS) {
        const size_t re = r + TROWS < w.r1 ? r + TROWS : w.r1;
        size_t ld;
        const float *gt = grad_tile(act, r, re, c, c0, cn, x, dy, mu, mul, add, u, d, &ld);
        if (gout)
            for (size_t i = r; i < re; i++)
                memcpy(gout + i * (size_t)c + c0, gt + (i - r) * ld, sizeof(float) * (size_t)cn);
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

/* dx = mul * (g - mg - xhat * mgx) over one work item (arrays indexed from its first channel),
 * g recomputed from x and dy, or read from gin (leading dimension c) when it is non-NULL. gin
 * and dy may be dx itself: each element is read before it is written. */
static void dx_item(sn_act act, work_item w, int c, int s0, const float *x, const float *dy,
                    const float *gin, const float *mu, const float *is, const float *mul,
                    const float *add, const float *mg, const float *mgx, float *dx) {
    const int cn = w.cn, c0 = s0 + w.c0;
    float u[TROWS * FCH], d[TROWS * FCH];
    for (size_t r = w.r0; r < w.r1; r += TROWS) {
        const size_t re = r + TROWS < w.r1 ? r + TROWS : w.r1;
        size_t ld = (size_t)c;
        const float *gt = gin ? gin + r * (size_t)c + c0
                              : grad_tile(act, r, re, c, c0, cn, x, dy, mu, mul, add, u, d, &ld);
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

/* The per-channel factors of the backward from the saved statistics, for channels
 * [s0, s0+sn). */
static void bwd_factors(int s0, int sn, const float *gamma, const float *beta, const float *mean,
                        const float *invstd, float *mu, float *is, float *mul, float *add) {
    for (int k = 0; k < sn; k++) {
        const int ch = s0 + k;
        mu[k] = mean[ch];
        is[k] = invstd[ch];
        mul[k] = (float)((gamma ? (double)gamma[ch] : 1.0) * (double)invstd[ch]);
        add[k] = beta ? beta[ch] : 0.0f;
    }
}

void sn_batchnorm_act_train_backward_f32(size_t rows, int c, const float *x, const float *gamma,
                                         const float *beta, const float *save_mean,
                                         const float *save_invstd, sn_act act, const float *dy,
                                         float *dx, float *dgamma, float *dbeta, int nthreads) {
    if (rows == 0 || c <= 0) return;
    if (!dx && !dgamma && !dbeta) return;
    const row_split rs = split_rows(rows);
    /* The derivatives with an exp (swish, sigmoid) or several compares cost more than a pass
     * over memory: the first pass keeps g in dx and the second reads it back (same values, so
     * the same bits) instead of computing it again. */
    const int keep = dx && act != SN_ACT_NONE && act != SN_ACT_RELU;
    for (int s0 = 0; s0 < c; s0 += SCH) {
        const int sn = c - s0 < SCH ? c - s0 : SCH;
        const int items = item_count(rs, sn);
        const int nt = pass_threads(rs, rows, sn, nthreads);
        float mu[SCH], is[SCH], mul[SCH], add[SCH];
        bwd_factors(s0, sn, gamma, beta, save_mean, save_invstd, mu, is, mul, add);
        double p1[NBLK][SCH], p2[NBLK][SCH];
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
#pragma omp for schedule(static)
            for (int it = 0; it < items; it++) {
                const work_item w = item_at(rs, rows, sn, it);
                grad_sums_item(act, w, c, s0, x, dy, mu + w.c0, is + w.c0, mul + w.c0,
                               add + w.c0, p1[w.blk] + w.c0, p2[w.blk] + w.c0,
                               keep ? dx : NULL);
            }
            /* As the forward: each thread folds the partials (same bits), one writes them. */
            double sdy[SCH], sdyx[SCH];
            float mdy[SCH], mdyx[SCH];
            for (int k = 0; k < sn; k++) {
                double s1 = 0.0, s2 = 0.0;
                for (int blk = 0; blk < rs.nb; blk++) {
                    s1 += p1[blk][k];
                    s2 += p2[blk][k];
                }
                sdy[k] = s1;
                sdyx[k] = s2;
                mdy[k] = (float)(s1 / (double)rows);
                mdyx[k] = (float)(s2 / (double)rows);
            }
#pragma omp single nowait
            for (int k = 0; k < sn; k++) {
                if (dbeta) dbeta[s0 + k] += (float)sdy[k];
                if (dgamma) dgamma[s0 + k] += (float)sdyx[k];
            }
            if (dx) {
#pragma omp for schedule(static) nowait
                for (int it = 0; it < items; it++) {
                    const work_item w = item_at(rs, rows, sn, it);
                    dx_item(act, w, c, s0, x, dy, keep ? dx : NULL, mu + w.c0, is + w.c0,
                            mul + w.c0, add + w.c0, mdy + w.c0, mdyx + w.c0, dx);
                }
            }
        }
    }
}

/* ---- Training batch-norm from per-tile statistics -------------------------------------------
 * The convolution that feeds a training batch-norm takes the statistics of each output tile
 * while the tile is in cache (sn_conv2d_stats_f32), so the batch-norm's forward skips its read
 * pass over x. The tiles' (mean, M2) are merged in tile order, a function of the shape alone,
 * so the bits do not depend on the thread count; the pairwise update (Chan, Golub and LeVeque)
 * adds only non-negative M2 terms, so merging does not cancel either. */

void sn_batchnorm_tile_stats_f32(size_t rows, int c, const float *x, size_t tile, double *part,
                                 int nthreads) {
    if (rows == 0 || c <= 0 || tile == 0) return;
    const long ntiles = (long)((rows + tile - 1) / tile);
    int nt = nthreads > 0 ? nthreads : 1;
    if (nt > ntiles) nt = (int)ntiles;
    if (rows * (size_t)c < MIN_PAR_ELEMS) nt = 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long t = 0; t < ntiles; t++) {
        const size_t r0 = (size_t)t * tile;
        const int mt = (int)(rows - r0 < tile ? rows - r0 : tile);
        bn_tile_stats(x + r0 * (size_t)c, (size_t)c, mt, c, part + (size_t)t * 2 * (size_t)c);
    }
}

void sn_batchnorm_act_train_parts_f32(size_t rows, int c, const float *x, size_t tile,
                                      const double *part, const float *gamma, const float *beta,
                                      float eps, float momentum, int unbiased_running_var,
                                      float *running_mean, float *running_var, sn_act act,
                                      float *y, float *save_mean, float *save_invstd,
                                      int nthreads) {
    if (rows == 0 || c <= 0 || tile == 0) return;
    const size_t ntiles = (rows + tile - 1) / tile;
    const row_split rs = split_rows(rows);
    for (int s0 = 0; s0 < c; s0 += SCH) {
        const int sn = c - s0 < SCH ? c - s0 : SCH;
        double mean[SCH], m2[SCH];
        for (int k = 0; k < sn; k++) mean[k] = m2[k] = 0.0;
        double n = 0.0;
        for (size_t t = 0; t < ntiles; t++) {
            const size_t r0 = t * tile;
            const double nb = (double)(rows - r0 < tile ? rows - r0 : tile), nn = n + nb;
            const double wb = nb / nn, wab = n * nb / nn;
            const double *pm = part + t * 2 * (size_t)c + s0, *pq = pm + c;
            for (int k = 0; k < sn; k++) {
                const double delta = pm[k] - mean[k];
                mean[k] += delta * wb;
                m2[k] += pq[k] + delta * delta * wab;
            }
            n = nn;
        }
        float mul[SCH], mu[SCH], add[SCH];
        for (int k = 0; k < sn; k++) {
            const int ch = s0 + k;
            const double var = m2[k] / (double)rows;
            const float fmean = (float)mean[k], finv = (float)(1.0 / sqrt(var + (double)eps));
            if (save_mean) save_mean[ch] = fmean;
            if (save_invstd) save_invstd[ch] = finv;
            const double mom = momentum;
            if (running_mean)
                running_mean[ch] = (float)(mom * running_mean[ch] + (1.0 - mom) * mean[k]);
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
        const int items = item_count(rs, sn);
        const int nt = pass_threads(rs, rows, sn, nthreads);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int it = 0; it < items; it++) {
            const work_item w = item_at(rs, rows, sn, it);
            apply_block(act, w.r0, w.r1, c, s0 + w.c0, w.cn, x, y, mu + w.c0, mul + w.c0,
                        add + w.c0);
        }
    }
}

/* ---- Synchronized batch-norm (the statistics summed over several graphs) -------------------
 * The fused kernels above split: the local per-channel sums, which the caller sums over every
 * process (sn_graph.bn_reduce), then the statistics from the global sums, then the elementwise
 * pass with them. The backward likewise: local sums of g and g * xhat, summed by the caller, then
 * dx from the global ones. Row blocks and work items as above (a function of rows alone): the
 * bits do not depend on the thread count. */

void sn_batchnorm_sums_f32(size_t rows, int c, const float *x, double *sum, double *sumsq,
                           int nthreads) {
    if (c <= 0) return;
    if (rows == 0) {
        for (int k = 0; k < c; k++) sum[k] = sumsq[k] = 0.0;
        return;
    }
    const row_split rs = split_rows(rows);
    for (int s0 = 0; s0 < c; s0 += SCH) {
        const int sn = c - s0 < SCH ? c - s0 : SCH;
        const int items = item_count(rs, sn);
        const int nt = pass_threads(rs, rows, sn, nthreads);
        double p1[NBLK][SCH], p2[NBLK][SCH];
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int it = 0; it < items; it++) {
            const work_item w = item_at(rs, rows, sn, it);
            double *q1 = p1[w.blk] + w.c0, *q2 = p2[w.blk] + w.c0;
            for (int k = 0; k < w.cn; k++) q1[k] = q2[k] = 0.0;
            /* Every element in double: the raw sum of squares must keep its low digits, since
             * the variance is sumsq / N - mean^2. */
            for (size_t r = w.r0; r < w.r1; r++) {
                const float *xr = x + r * (size_t)c + s0 + w.c0;
                for (int k = 0; k < w.cn; k++) {
                    const double v = xr[k];
                    q1[k] += v;
                    q2[k] += v * v;
                }
            }
        }
        for (int k = 0; k < sn; k++) {
            double s1 = 0.0, s2 = 0.0;
            for (int blk = 0; blk < rs.nb; blk++) {
                s1 += p1[blk][k];
                s2 += p2[blk][k];
            }
            sum[s0 + k] = s1;
            sumsq[s0 + k] = s2;
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
    const row_split rs = split_rows(rows);
    for (int s0 = 0; s0 < c; s0 += SCH) {
        const int sn = c - s0 < SCH ? c - s0 : SCH;
        const int items = item_count(rs, sn);
        const int nt = pass_threads(rs, rows, sn, nthreads);
        float mu[SCH], is[SCH], mul[SCH], add[SCH];
        bwd_factors(s0, sn, gamma, beta, mean, invstd, mu, is, mul, add);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int it = 0; it < items; it++) {
            const work_item w = item_at(rs, rows, sn, it);
            apply_block(act, w.r0, w.r1, c, s0 + w.c0, w.cn, x, y, mu + w.c0, mul + w.c0,
                        add + w.c0);
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
    const row_split rs = split_rows(rows);
    for (int s0 = 0; s0 < c; s0 += SCH) {
        const int sn = c - s0 < SCH ? c - s0 : SCH;
        const int items = item_count(rs, sn);
        const int nt = pass_threads(rs, rows, sn, nthreads);
        float mu[SCH], is[SCH], mul[SCH], add[SCH];
        bwd_factors(s0, sn, gamma, beta, mean, invstd, mu, is, mul, add);
        double p1[NBLK][SCH], p2[NBLK][SCH];
        /* As the fused backward: float over a tile of rows, then double. */
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int it = 0; it < items; it++) {
            const work_item w = item_at(rs, rows, sn, it);
            grad_sums_item(act, w, c, s0, x, dy, mu + w.c0, is + w.c0, mul + w.c0, add + w.c0,
                           p1[w.blk] + w.c0, p2[w.blk] + w.c0, g);
        }
        for (int k = 0; k < sn; k++) {
            double s1 = 0.0, s2 = 0.0;
            for (int blk = 0; blk < rs.nb; blk++) {
                s1 += p1[blk][k];
                s2 += p2[blk][k];
            }
            sum_g[s0 + k] = s1;
            sum_gxhat[s0 + k] = s2;
            if (dbeta) dbeta[s0 + k] += (float)s1;
            if (dgamma) dgamma[s0 + k] += (float)s2;
        }
    }
}

void sn_batchnorm_act_backward_dx_f32(size_t rows, int c, const float *x, const float *gamma,
                                      const float *beta, const float *mean, const float *invstd,
                                      sn_act act, const float *dy, const double *sum_g,
                                      const double *sum_gxhat, double rows_total, float *dx,
                                      int nthreads) {
    if (rows == 0 || c <= 0 || !(rows_total > 0.0)) return;
    const row_split rs = split_rows(rows);
    for (int s0 = 0; s0 < c; s0 += SCH) {
        const int sn = c - s0 < SCH ? c - s0 : SCH;
        const int items = item_count(rs, sn);
        const int nt = pass_threads(rs, rows, sn, nthreads);
        float mu[SCH], is[SCH], mul[SCH], add[SCH], mg[SCH], mgx[SCH];
        bwd_factors(s0, sn, gamma, beta, mean, invstd, mu, is, mul, add);
        for (int k = 0; k < sn; k++) {
            mg[k] = (float)(sum_g[s0 + k] / rows_total);
            mgx[k] = (float)(sum_gxhat[s0 + k] / rows_total);
        }
        /* Without an activation g is dy itself, which may be dx: each element is read before it
         * is written. */
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int it = 0; it < items; it++) {
            const work_item w = item_at(rs, rows, sn, it);
            dx_item(act, w, c, s0, x, dy, NULL, mu + w.c0, is + w.c0, mul + w.c0, add + w.c0,
                    mg + w.c0, mgx + w.c0, dx);
        }
    }
}
