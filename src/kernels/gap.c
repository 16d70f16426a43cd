/* Global average pooling over the spatial positions of an NHWC tensor. */
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
