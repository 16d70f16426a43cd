/* Fully connected layer: one GEMM plus bias. */
#include "kernels.h"

void sn_dense_f32(int n, int cin, int cout, const float *x, const float *w, const float *bias,
                  float *y, int nthreads) {
    if (n <= 0 || cout <= 0) return;
    sn_gemm_f32(n, cout, cin, x, cin, w, cout, y, cout, 0, nthreads);
    if (!bias) return;
    for (int b = 0; b < n; b++) {
        float *yb = y + (size_t)b * cout;
        for (int co = 0; co < cout; co++) yb[co] += bias[co];
    }
}
