/* Elementwise sums, scalar scaling and per-channel gating. */
#include "kernels.h"

/* Elements summed at a time into a stack buffer: it makes aliasing of y with any input safe and
 * lets the inner loops vectorise without runtime alias checks. */
#define BLOCK 1024
#define MIN_PER_THREAD 16384

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
    if (nt > count / MIN_PER_THREAD) nt = count / MIN_PER_THREAD;
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
