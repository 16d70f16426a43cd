/* Nearest-neighbour upsampling by integer factors and nearest resize to an arbitrary size. */
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
