/* Global average pooling over the spatial positions of an NHWC tensor, forward and backward. */
#include "kernels.h"

/* Channels of one task: their double sums stay in registers over the whole map (each 64-byte
 * line of x is read once), and tasks (image, channel block) are independent, so they are
 * shared between threads without changing any result. */
#define GAP_BLOCK 16
/* Channels of the backward's share buffer. */
#define GAP_CHUNK 256

void sn_gap_f32(int n, int hw, int c, const float *x, float *y, int nthreads) {
    if (n <= 0 || c <= 0) return;
    const int nblk = (c + GAP_BLOCK - 1) / GAP_BLOCK;
    const long tasks = (long)n * nblk;
    int nt = nthreads > 0 ? nthreads : 1;
    /* Small maps are not worth waking a thread for. */
    if ((long)hw * c * n < 32768) nt = 1;
    if (nt > tasks) nt = (int)tasks;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long t = 0; t < tasks; t++) {
        const int b = (int)(t / nblk), c0 = (int)(t % nblk) * GAP_BLOCK;
        const float *xb = x + (size_t)b * hw * c + c0;
        float *yb = y + (size_t)b * c + c0;
        /* Double sums in pixel order: a float running sum over a large map loses the small
         * terms. An empty map averages to 0 rather than NaN. */
        if (c - c0 >= GAP_BLOCK) {
            double acc[GAP_BLOCK];
            for (int k = 0; k < GAP_BLOCK; k++) acc[k] = 0.0;
            for (int p = 0; p < hw; p++) {
                const float *xp = xb + (size_t)p * c;
#pragma omp simd
                for (int k = 0; k < GAP_BLOCK; k++) acc[k] += xp[k];
            }
            for (int k = 0; k < GAP_BLOCK; k++) yb[k] = hw > 0 ? (float)(acc[k] / hw) : 0.0f;
        } else {
            const int cn = c - c0;
            double acc[GAP_BLOCK];
            for (int k = 0; k < cn; k++) acc[k] = 0.0;
            for (int p = 0; p < hw; p++)
                for (int k = 0; k < cn; k++) acc[k] += xb[(size_t)p * c + k];
            for (int k = 0; k < cn; k++) yb[k] = hw > 0 ? (float)(acc[k] / hw) : 0.0f;
        }
    }
}

/* Every position received weight 1/hw in the mean. The share is formed in double, as the
 * forward divides in double; an empty map has no input to receive anything. */
void sn_gap_backward_f32(int n, int hw, int c, const float *dy, float *dx) {
    if (!dx || hw <= 0 || c <= 0) return;
    for (int b = 0; b < n; b++) {
        const float *db = dy + (size_t)b * c;
        float *xb = dx + (size_t)b * hw * c;
        for (int c0 = 0; c0 < c; c0 += GAP_CHUNK) {
            const int cn = c - c0 < GAP_CHUNK ? c - c0 : GAP_CHUNK;
            float share[GAP_CHUNK];
            for (int k = 0; k < cn; k++) share[k] = (float)((double)db[c0 + k] / hw);
            for (int p = 0; p < hw; p++) {
                float *xp = xb + (size_t)p * c + c0;
                for (int k = 0; k < cn; k++) xp[k] += share[k];
            }
        }
    }
}
