/* Batch-norm statistics of one tile of rows, shared by the convolution's forward (which takes
 * them while its output tile is in cache, sn_conv2d_stats_f32) and the separate pass that is
 * its reference (sn_batchnorm_tile_stats_f32): the same function on the same rows gives the
 * same bits. No include guard is needed beyond this one: the ISA units include it from several
 * portable sources. */
#ifndef SN_BN_TILE_H
#define SN_BN_TILE_H

#include <stddef.h>

/* part[0..c) = the mean and part[c..2c) = the sum of squared deviations from it (M2) of each
 * channel over rows [0, mt) of y (leading dimension ld). One pass in double about the tile's
 * first row: for any n values, one of them lies within sqrt(n - 1) standard deviations of their
 * mean, so with d = y - y[0] the cancellation in M2 = sum(d^2) - sum(d)^2 / n loses at most a
 * factor n of double precision, whatever the ratio of the mean to the spread (a shift known
 * before the tile, such as a moving mean, has no such bound early in training). */
static void bn_tile_stats(const float *y, size_t ld, int mt, int c, double *part) {
    double *s1 = part, *s2 = part + c;
    for (int k = 0; k < c; k++) s1[k] = s2[k] = 0.0;
    for (int r = 1; r < mt; r++) {
        const float *yr = y + (size_t)r * ld;
        for (int k = 0; k < c; k++) {
            const double d = (double)yr[k] - (double)y[k];
            s1[k] += d;
            s2[k] += d * d;
        }
    }
    const double n = (double)mt;
    for (int k = 0; k < c; k++) {
        double m2 = s2[k] - s1[k] * s1[k] / n;
        if (m2 < 0.0) m2 = 0.0;
        s1[k] = (double)y[k] + s1[k] / n;
        s2[k] = m2;
    }
}

#endif
