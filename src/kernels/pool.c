/* Max-pooling over k x k windows with explicit padding. */
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
