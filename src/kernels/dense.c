/* Fully connected layer: one GEMM plus bias, and its backward (two transposed GEMMs). */
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

void sn_dense_backward_f32(int n, int cin, int cout, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, float *db, int nthreads) {
    if (n <= 0 || cin <= 0 || cout <= 0) return;
    /* dx [n][cin] += dy [n][cout] * w^T, w stored [cin][cout]. */
    if (dx) sn_gemm_ex_f32(0, 1, n, cin, cout, dy, cout, w, cout, dx, cin, 1, nthreads);
    /* dw [cin][cout] += x^T [cin][n] * dy [n][cout]. */
    if (dw) sn_gemm_ex_f32(1, 0, cin, cout, n, x, cin, dy, cout, dw, cout, 1, nthreads);
    if (!db) return;
    /* Rows in order on one thread: a fixed summation order whatever nthreads is. */
    for (int b = 0; b < n; b++) {
        const float *g = dy + (size_t)b * cout;
        for (int co = 0; co < cout; co++) db[co] += g[co];
    }
}
