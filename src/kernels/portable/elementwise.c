/* Elementwise sums, scalar scaling and per-channel gating, and their backward passes. */
#include "kernels.h"

/* Elements summed at a time into a stack buffer: it makes aliasing of y with any input safe and
 * lets the inner loops vectorise without runtime alias checks. */
#define BLOCK 1024
#define EW_MIN_PER_THREAD 16384

static void add_range(int k, const float *const *xs, size_t i0, size_t i1, sn_act act,
                      float *y) {
    float acc[BLOCK];
    for (size_t b0 = i0; b0 < i1; b0 += BLOCK) {
        const size_t len = i1 - b0 < BLOCK ? i1 - b0 : BLOCK;
        /* Summed left to right, xs[0] + xs[1] + ..., whatever the thread split. */
        if (k > 0)
            for (size_t i = 0; i < len; i++) acc[i] = xs[0][b0 + i];
        else
            for (size_t i = 0; i < len; i++) acc[i] = 0.0f;
        for (int j = 1; j < k; j++) {
            const float *xj = xs[j] + b0;
            for (size_t i = 0; i < len; i++) acc[i] += xj[i];
        }
        sn_act_f32(act, len, acc, y + b0, 1);
    }
}

void sn_add_f32(int k, const float *const *xs, size_t count, sn_act act, float *y, int nthreads) {
    size_t nt = nthreads > 0 ? (size_t)nthreads : 1;
    if (nt > count / EW_MIN_PER_THREAD) nt = count / EW_MIN_PER_THREAD;
    if (nt <= 1) {
        add_range(k, xs, 0, count, act, y);
        return;
    }
    const size_t chunk = (count + nt - 1) / nt;
#pragma omp parallel for num_threads((int)nt) schedule(static)
    for (size_t t = 0; t < nt; t++) {
        const size_t i0 = t * chunk;
        if (i0 < count) add_range(k, xs, i0, i0 + chunk < count ? i0 + chunk : count, act, y);
    }
}

void sn_scale_f32(size_t count, const float *x, float s, float *y) {
    for (size_t i = 0; i < count; i++) y[i] = x[i] * s;
}

void sn_mul_channel_f32(int n, int hw, int c, const float *x, const float *g, float *y,
                        int nthreads) {
    const long rows = (long)n * hw;
    if (rows <= 0 || c <= 0) return;
    int nt = nthreads > 0 ? nthreads : 1;
    if ((long)nt * 64 > rows) nt = (int)(rows / 64 > 0 ? rows / 64 : 1);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long r = 0; r < rows; r++) {
        const float *gr = g + (size_t)(r / hw) * c;
        const float *xr = x + (size_t)r * c;
        float *yr = y + (size_t)r * c;
        for (int ch = 0; ch < c; ch++) yr[ch] = xr[ch] * gr[ch];
    }
}

/* Channels of the gate gradient summed at a time, in double on the stack. */
#define GCH 64

void sn_mul_channel_backward_f32(int n, int hw, int c, const float *x, const float *g,
                                 const float *dy, float *dx, float *dg, int nthreads) {
    const long rows = (long)n * hw;
    if (rows <= 0 || c <= 0) return;
    int nt = nthreads > 0 ? nthreads : 1;
    if (dx) {
        int ntx = nt;
        if ((long)ntx * 64 > rows) ntx = (int)(rows / 64 > 0 ? rows / 64 : 1);
#pragma omp parallel for num_threads(ntx) schedule(static) if (ntx > 1)
        for (long r = 0; r < rows; r++) {
            const float *gr = g + (size_t)(r / hw) * c;
            const float *dr = dy + (size_t)r * c;
            float *xr = dx + (size_t)r * c;
            for (int ch = 0; ch < c; ch++) xr[ch] += dr[ch] * gr[ch];
        }
    }
    if (dg) {
        /* One task per (image, channel block): each owns its dg slice and sums the pixels in
         * order, so the result does not depend on nthreads. */
        const int ncb = (c + GCH - 1) / GCH;
        const long tasks = (long)n * ncb;
        int ntg = nt < tasks ? nt : (int)tasks;
#pragma omp parallel for num_threads(ntg) schedule(static) if (ntg > 1)
        for (long t = 0; t < tasks; t++) {
            const int b = (int)(t / ncb), c0 = (int)(t % ncb) * GCH;
            const int cn = c - c0 < GCH ? c - c0 : GCH;
            double acc[GCH];
            for (int k = 0; k < cn; k++) acc[k] = 0.0;
            for (int p = 0; p < hw; p++) {
                const size_t off = ((size_t)b * hw + p) * c + c0;
                for (int k = 0; k < cn; k++) acc[k] += (double)dy[off + k] * x[off + k];
            }
            float *gb = dg + (size_t)b * c + c0;
            for (int k = 0; k < cn; k++) gb[k] += (float)acc[k];
        }
    }
}

static void axpy_range(size_t count, float a, const float *x, float *y) {
    for (size_t i = 0; i < count; i++) y[i] += a * x[i];
}

void sn_axpy_f32(size_t count, float a, const float *x, float *y, int nthreads) {
    if (!y) return;
    size_t nt = nthreads > 0 ? (size_t)nthreads : 1;
    if (nt > count / EW_MIN_PER_THREAD) nt = count / EW_MIN_PER_THREAD;
    if (nt <= 1) {
        axpy_range(count, a, x, y);
        return;
    }
    const size_t chunk = (count + nt - 1) / nt;
#pragma omp parallel for num_threads((int)nt) schedule(static)
    for (size_t t = 0; t < nt; t++) {
        const size_t i0 = t * chunk;
        if (i0 < count) axpy_range(count - i0 < chunk ? count - i0 : chunk, a, x + i0, y + i0);
    }
}
