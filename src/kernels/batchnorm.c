/* Inference batch-norm over the channel (last) axis. */
#include "kernels.h"

#include <math.h>

/* Channels folded at a time: the per-channel factor lives on the stack, since this function has
 * no way to report an allocation failure. */
#define CHUNK 256
#define MIN_ROWS_PER_THREAD 64

void sn_batchnorm_f32(size_t rows, int c, const float *x, const float *gamma, const float *beta,
                      const float *mean, const float *var, float eps, float *y, int nthreads) {
    if (rows == 0 || c <= 0) return;
    size_t nt = nthreads > 0 ? (size_t)nthreads : 1;
    if (nt > rows / MIN_ROWS_PER_THREAD) nt = rows / MIN_ROWS_PER_THREAD;
    if (nt < 1) nt = 1;
    const size_t chunk_rows = (rows + nt - 1) / nt;
#pragma omp parallel for num_threads((int)nt) schedule(static) if (nt > 1)
    for (size_t t = 0; t < nt; t++) {
        const size_t r0 = t * chunk_rows;
        const size_t r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
        float mul[CHUNK], mu[CHUNK], add[CHUNK];
        for (int c0 = 0; c0 < c; c0 += CHUNK) {
            const int cn = c - c0 < CHUNK ? c - c0 : CHUNK;
            /* (x - mean) * (gamma/sqrt(var+eps)) + beta: the factor is folded once per channel
             * (in double); subtracting the mean before scaling keeps inputs close to the mean
             * accurate, which folding the mean into the offset would not. */
            for (int k = 0; k < cn; k++) {
                const double g = gamma ? gamma[c0 + k] : 1.0;
                mul[k] = (float)(g / sqrt((double)var[c0 + k] + (double)eps));
                mu[k] = mean[c0 + k];
                add[k] = beta ? beta[c0 + k] : 0.0f;
            }
            for (size_t r = r0; r < r1; r++) {
                const float *xr = x + r * (size_t)c + c0;
                float *yr = y + r * (size_t)c + c0;
                for (int k = 0; k < cn; k++) yr[k] = (xr[k] - mu[k]) * mul[k] + add[k];
            }
        }
    }
}
