/* Max-pooling over k x k windows with explicit padding, forward and backward. */
#include "kernels.h"

#include <math.h>

void sn_maxpool_f32(int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh, int ow,
                    const float *x, float *y, int nthreads) {
    const long rows = (long)n * oh;
    if (rows <= 0 || ow <= 0 || c <= 0) return;
    int nt = nthreads > 0 ? nthreads : 1;
    if (nt > rows) nt = (int)rows;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long row = 0; row < rows; row++) {
        const int b = (int)(row / oh), oy = (int)(row % oh);
        const int iy0 = oy * stride - pad.top;
        /* Clip the window to the image: padded cells are skipped, never compared as zeros. */
        const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = h - iy0 < k ? h - iy0 : k;
        for (int ox = 0; ox < ow; ox++) {
            const int ix0 = ox * stride - pad.left;
            const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = w - ix0 < k ? w - ix0 : k;
            float *yp = y + ((size_t)row * ow + ox) * c;
            /* A window with no valid cell stays at -inf. */
            for (int ch = 0; ch < c; ch++) yp[ch] = -INFINITY;
            for (int ky = ky0; ky < ky1; ky++)
                for (int kx = kx0; kx < kx1; kx++) {
                    const float *xp = x + (((size_t)b * h + iy0 + ky) * w + ix0 + kx) * c;
                    for (int ch = 0; ch < c; ch++) yp[ch] = xp[ch] > yp[ch] ? xp[ch] : yp[ch];
                }
        }
    }
}

/* Channels routed at a time: the running maximum and its position live on the stack. */
#define PCH 64

/* Windows overlap when stride < k, so a scatter of dy into dx from several threads would race.
 * Work is split over (image, channel block) pairs instead: each pair owns a disjoint slice of
 * dx, and within it the output cells are visited in raster order, so every dx element receives
 * its contributions in the same order whatever nthreads is. The winner is found exactly as the
 * forward does: strict '>' over the clipped window in row-major order, starting from -inf, so
 * the first maximum wins ties, padded cells are never candidates, and a window whose valid
 * cells are all -inf (or that has none) routes its dy nowhere, as the forward output -inf
 * depends on no input. */
void sn_maxpool_backward_f32(int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh,
                             int ow, const float *x, const float *dy, float *dx, int nthreads) {
    if (!dx || n <= 0 || oh <= 0 || ow <= 0 || c <= 0) return;
    const int ncb = (c + PCH - 1) / PCH;
    const long tasks = (long)n * ncb;
    int nt = nthreads > 0 ? nthreads : 1;
    if (nt > tasks) nt = (int)tasks;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long t = 0; t < tasks; t++) {
        const int b = (int)(t / ncb), c0 = (int)(t % ncb) * PCH;
        const int cn = c - c0 < PCH ? c - c0 : PCH;
        float best[PCH];
        long arg[PCH];
        for (int oy = 0; oy < oh; oy++) {
            const int iy0 = oy * stride - pad.top;
            const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = h - iy0 < k ? h - iy0 : k;
            for (int ox = 0; ox < ow; ox++) {
                const int ix0 = ox * stride - pad.left;
                const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = w - ix0 < k ? w - ix0 : k;
                for (int j = 0; j < cn; j++) {
                    best[j] = -INFINITY;
                    arg[j] = -1;
                }
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        const long off =
                            (((long)b * h + iy0 + ky) * w + ix0 + kx) * (long)c + c0;
                        const float *xp = x + off;
                        for (int j = 0; j < cn; j++)
                            if (xp[j] > best[j]) {
                                best[j] = xp[j];
                                arg[j] = off + j;
                            }
                    }
                const float *dp = dy + (((size_t)b * oh + oy) * ow + ox) * c + c0;
                for (int j = 0; j < cn; j++)
                    if (arg[j] >= 0) dx[arg[j]] += dp[j];
            }
        }
    }
}
