/* Global average pooling over the spatial positions of an NHWC tensor, forward and backward. */
#define SN_KERNEL_IMPL
#include "kernels.h"

/* Channels summed at a time; the double accumulators live on the stack (no failure path). */
#define CHUNK 256

void sn_gap_f32(int n, int hw, int c, const float *x, float *y) {
    for (int b = 0; b < n; b++) {
        const float *xb = x + (size_t)b * hw * c;
        for (int c0 = 0; c0 < c; c0 += CHUNK) {
            const int cn = c - c0 < CHUNK ? c - c0 : CHUNK;
            /* Double sums: a float running sum over a large map loses the small terms. */
            double acc[CHUNK];
            for (int k = 0; k < cn; k++) acc[k] = 0.0;
            for (int p = 0; p < hw; p++) {
                const float *xp = xb + (size_t)p * c + c0;
                for (int k = 0; k < cn; k++) acc[k] += xp[k];
            }
            /* An empty map averages to 0 rather than NaN. */
            float *yb = y + (size_t)b * c + c0;
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
        for (int c0 = 0; c0 < c; c0 += CHUNK) {
            const int cn = c - c0 < CHUNK ? c - c0 : CHUNK;
            float share[CHUNK];
            for (int k = 0; k < cn; k++) share[k] = (float)((double)db[c0 + k] / hw);
            for (int p = 0; p < hw; p++) {
                float *xp = xb + (size_t)p * c + c0;
                for (int k = 0; k < cn; k++) xp[k] += share[k];
            }
        }
    }
}
