/* Stochastic depth (drop path): whole samples of a residual branch are dropped or rescaled. */
#include "kernels.h"

/* The keep mask is drawn by the caller (so the RNG stays in one place and the backward reuses
 * the same mask). Conventions beyond the header: keep == NULL keeps every sample; rate >= 1
 * drops every sample (there is no finite scale to apply), so nothing is divided by zero. The
 * division x / (1 - rate) is done per element, as documented, rather than by a rounded
 * reciprocal. */
static int keep_scale_ok(float rate) { return rate < 1.0f; }

void sn_drop_path_f32(int n, size_t per_sample, const float *x, const uint8_t *keep, float rate,
                      float *y) {
    const float denom = 1.0f - rate;
    for (int b = 0; b < n; b++) {
        const float *xs = x + (size_t)b * per_sample;
        float *ys = y + (size_t)b * per_sample;
        if ((keep && !keep[b]) || !keep_scale_ok(rate)) {
            for (size_t i = 0; i < per_sample; i++) ys[i] = 0.0f;
        } else {
            for (size_t i = 0; i < per_sample; i++) ys[i] = xs[i] / denom;
        }
    }
}

/* The forward is linear in x with a diagonal map, so the backward applies the same map to dy;
 * dropped samples contribute nothing (dx is left as is). */
void sn_drop_path_backward_f32(int n, size_t per_sample, const float *dy, const uint8_t *keep,
                               float rate, float *dx) {
    if (!dx || !keep_scale_ok(rate)) return;
    const float denom = 1.0f - rate;
    for (int b = 0; b < n; b++) {
        if (keep && !keep[b]) continue;
        const float *ds = dy + (size_t)b * per_sample;
        float *xs = dx + (size_t)b * per_sample;
        for (size_t i = 0; i < per_sample; i++) xs[i] += ds[i] / denom;
    }
}
