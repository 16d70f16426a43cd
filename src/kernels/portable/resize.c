/* Nearest-neighbour upsampling by integer factors and nearest resize to an arbitrary size,
 * forward and backward. */
#include "kernels.h"

#include <string.h>

void sn_upsample_nearest_f32(int n, int h, int w, int c, int fh, int fw, const float *x, float *y,
                             int nthreads) {
    const int oh = h * fh, ow = w * fw;
    const long rows = (long)n * oh;
    if (rows <= 0 || ow <= 0 || c <= 0) return;
    int nt = nthreads > 0 ? nthreads : 1;
    if (nt > rows) nt = (int)rows;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long row = 0; row < rows; row++) {
        const int b = (int)(row / oh), i = (int)(row % oh);
        const float *src = x + ((size_t)b * h + i / fh) * w * (size_t)c;
        float *dst = y + (size_t)row * ow * c;
        for (int j = 0; j < ow; j++) memcpy(dst + (size_t)j * c, src + (size_t)(j / fw) * c,
                                            (size_t)c * sizeof *dst);
    }
}

/* floor(dst * in / out) in integers, so no float rounding can move a sample to the neighbouring
 * pixel. For dst < out it is already below in; the clamp is a guard, as in the TF1 kernel. */
static int src_index(int dst, int in, int out) {
    const long s = ((long)dst * in) / out;
    return (int)(s < in - 1 ? s : in - 1);
}

void sn_resize_nearest_f32(int n, int h, int w, int c, int oh, int ow, const float *x, float *y,
                           int nthreads) {
    const long rows = (long)n * oh;
    if (rows <= 0 || ow <= 0 || c <= 0 || h <= 0 || w <= 0) return;
    int nt = nthreads > 0 ? nthreads : 1;
    if (nt > rows) nt = (int)rows;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long row = 0; row < rows; row++) {
        const int b = (int)(row / oh), i = (int)(row % oh);
        const float *src = x + ((size_t)b * h + src_index(i, h, oh)) * w * (size_t)c;
        float *dst = y + (size_t)row * ow * c;
        for (int j = 0; j < ow; j++)
            memcpy(dst + (size_t)j * c, src + (size_t)src_index(j, w, ow) * c,
                   (size_t)c * sizeof *dst);
    }
}

/* ---- Backward ----------------------------------------------------------------------------
 * Both are written as gathers: each dx pixel sums, in raster order, the dy pixels that read it.
 * Threads own disjoint dx rows, so there is no race and the bits do not depend on nthreads.
 * Sums are in double over a channel block held on the stack. */
#define RCH 64

void sn_upsample_nearest_backward_f32(int n, int h, int w, int c, int fh, int fw, const float *dy,
                                      float *dx, int nthreads) {
    const long rows = (long)n * h;
    if (!dx || rows <= 0 || w <= 0 || c <= 0 || fh <= 0 || fw <= 0) return;
    const int oh = h * fh, ow = w * fw;
    int nt = nthreads > 0 ? nthreads : 1;
    if (nt > rows) nt = (int)rows;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long row = 0; row < rows; row++) {
        const int b = (int)(row / h), iy = (int)(row % h);
        double acc[RCH];
        for (int ix = 0; ix < w; ix++) {
            float *d = dx + ((size_t)row * w + ix) * c;
            for (int c0 = 0; c0 < c; c0 += RCH) {
                const int cn = c - c0 < RCH ? c - c0 : RCH;
                for (int j = 0; j < cn; j++) acc[j] = 0.0;
                for (int i = iy * fh; i < (iy + 1) * fh; i++)
                    for (int jx = ix * fw; jx < (ix + 1) * fw; jx++) {
                        const float *s = dy + (((size_t)b * oh + i) * ow + jx) * c + c0;
                        for (int j = 0; j < cn; j++) acc[j] += s[j];
                    }
                for (int j = 0; j < cn; j++) d[c0 + j] += (float)acc[j];
            }
        }
    }
}

/* Output indices [lo, hi) whose source index (src_index above) is s. Since src_index is
 * non-decreasing in dst, that set is a contiguous range; the first dst mapping to s or beyond
 * is found by bisection on src_index itself, so the backward agrees with the forward by
 * construction, clamp included. */
static int first_dst_at_least(int s, int in, int out) {
    int lo = 0, hi = out;
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        if (src_index(mid, in, out) >= s)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

void sn_resize_nearest_backward_f32(int n, int h, int w, int c, int oh, int ow, const float *dy,
                                    float *dx, int nthreads) {
    const long rows = (long)n * h;
    if (!dx || rows <= 0 || w <= 0 || c <= 0 || oh <= 0 || ow <= 0) return;
    int nt = nthreads > 0 ? nthreads : 1;
    if (nt > rows) nt = (int)rows;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (long row = 0; row < rows; row++) {
        const int b = (int)(row / h), iy = (int)(row % h);
        const int i0 = first_dst_at_least(iy, h, oh), i1 = first_dst_at_least(iy + 1, h, oh);
        double acc[RCH];
        for (int ix = 0; ix < w; ix++) {
            const int j0 = first_dst_at_least(ix, w, ow), j1 = first_dst_at_least(ix + 1, w, ow);
            float *d = dx + ((size_t)row * w + ix) * c;
            for (int c0 = 0; c0 < c; c0 += RCH) {
                const int cn = c - c0 < RCH ? c - c0 : RCH;
                for (int j = 0; j < cn; j++) acc[j] = 0.0;
                for (int i = i0; i < i1; i++)
                    for (int jx = j0; jx < j1; jx++) {
                        const float *s = dy + (((size_t)b * oh + i) * ow + jx) * c + c0;
                        for (int j = 0; j < cn; j++) acc[j] += s[j];
                    }
                for (int j = 0; j < cn; j++) d[c0 + j] += (float)acc[j];
            }
        }
    }
}
