/* Softmax cross-entropy with label smoothing: the classification loss and its gradient. */
#include "kernels.h"

#include <math.h>

double sn_softmax_xent_f32(int n, int classes, const float *logits, const int32_t *labels,
                           float smoothing, float *dlogits) {
    if (n <= 0) return 0.0;
    if (classes <= 0 || !logits || !labels) return NAN;
    /* Validate every label first, so a bad one leaves dlogits untouched rather than half
     * written, and nothing is ever indexed out of bounds. */
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= classes) return NAN;

    const double s = smoothing, off = s / classes, on = 1.0 - s + off;
    const double inv_n = 1.0 / n;
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * classes;
        const int lab = labels[i];
        /* log-sum-exp shifted by the max so that exp never overflows. */
        double mx = z[0];
        for (int j = 1; j < classes; j++)
            if (z[j] > mx) mx = z[j];
        double sum = 0.0, zsum = 0.0;
        for (int j = 0; j < classes; j++) {
            sum += exp((double)z[j] - mx);
            zsum += z[j];
        }
        const double lse = mx + log(sum);
        /* -sum_j t_j (z_j - lse) with sum_j t_j = 1: lse - off * sum z - (on - off) * z_label. */
        total += lse - off * zsum - (on - off) * z[lab];
        if (dlogits) {
            float *g = dlogits + (size_t)i * classes;
            for (int j = 0; j < classes; j++) {
                const double p = exp((double)z[j] - lse);
                const double t = j == lab ? on : off;
                g[j] = (float)((p - t) * inv_n);
            }
        }
    }
    return total * inv_n;
}
