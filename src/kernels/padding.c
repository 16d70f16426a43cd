/* Padding and window arithmetic of convolutions and pools (TF 'SAME' and the TF1 fixed
 * padding). */
#include "kernels.h"

void sn_pad_same_1d(int in, int k, int stride, int *before, int *after) {
    const int out = (in + stride - 1) / stride;
    int total = (out - 1) * stride + k - in;
    if (total < 0) total = 0;
    *before = total / 2;
    *after = total - total / 2;
}

void sn_pad_fixed_1d(int k, int *before, int *after) {
    *before = (k - 1) / 2;
    *after = (k - 1) - (k - 1) / 2;
}

int sn_window_out(int in, int k, int stride, int before, int after) {
    const long padded = (long)in + before + after;
    if (padded < k || stride < 1) return 0;
    return (int)((padded - k) / stride + 1);
}
