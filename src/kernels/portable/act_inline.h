/* The activations as inline code, for act.c: one definition of each, shared by the array loops
 * and sn_act_scalar, so that both compute the same function. Included only by kernel sources
 * (each build compiles them with its own flags). */
#ifndef SN_ACT_INLINE_H
#define SN_ACT_INLINE_H

#include <stdint.h>
#include <string.h>

#include "kernels.h"


/* exp(-a) for a >= 0, written without calls or branches so that the array loops
 * vectorise (libm's expf kept swish at ~20 % of a SpineNet-49 forward). Range reduction
 * a = n ln2 + r with ln2 split in two, |r| <= ln2/2, then the degree-7 minimax polynomial of the
 * Cephes library for exp(r) (relative error ~1e-7), then 2^n assembled in the exponent bits.
 * Beyond a = 87 the result would leave the normal range: it is 0 there. NaN stays NaN. */
static inline float exp_neg(float a) {
    const float t = a > 87.0f ? -87.0f : -a;
    /* Round t*log2(e) to the nearest integer n with the 1.5*2^23 trick: the sum's low mantissa
     * bits then hold n (no float-to-int conversion, so no undefined cast for NaN). */
    const float big = 12582912.0f;
    const float nb = t * 1.44269504088896341f + big;
    const float n = nb - big;
    float r = t - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    uint32_t nbits;
    memcpy(&nbits, &nb, sizeof nbits);
    /* n >= -126 here, so n + 127 is a normal exponent. */
    const uint32_t sbits = (nbits - 0x4B400000u + 127u) << 23;
    float scale;
    memcpy(&scale, &sbits, sizeof scale);
    const float e = p * scale;
    return a > 87.0f ? 0.0f : e;
}

/* 1/(1+exp(-v)) for v >= 0 and exp(v)/(1+exp(v)) below: exp only ever sees -|v|, so nothing
 * overflows, the tails go cleanly to 0 and 1 and small values keep their relative accuracy. */
static inline float sigmoid_stable(float v) {
    const float e = exp_neg(v < 0.0f ? -v : v);
    const float r = 1.0f / (1.0f + e);
    return v >= 0.0f ? r : e * r;
}

static inline float relu6(float v) { return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v); }

/* One switch per call rather than per element, so that the cheap activations vectorise. */
static inline void sn_act_apply(sn_act act, size_t count, const float *x, float *y) {
    switch (act) {
    case SN_ACT_NONE:
        if (y != x)
            for (size_t i = 0; i < count; i++) y[i] = x[i];
        return;
    case SN_ACT_RELU:
        for (size_t i = 0; i < count; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        return;
    case SN_ACT_RELU6:
        for (size_t i = 0; i < count; i++) y[i] = relu6(x[i]);
        return;
    case SN_ACT_HSWISH:
        for (size_t i = 0; i < count; i++) y[i] = x[i] * relu6(x[i] + 3.0f) * (1.0f / 6.0f);
        return;
    case SN_ACT_HSIGMOID:
        for (size_t i = 0; i < count; i++) y[i] = relu6(x[i] + 3.0f) * 0.16667f;
        return;
    case SN_ACT_SWISH:
        for (size_t i = 0; i < count; i++) y[i] = x[i] * sigmoid_stable(x[i]);
        return;
    case SN_ACT_SIGMOID:
        for (size_t i = 0; i < count; i++) y[i] = sigmoid_stable(x[i]);
        return;
    }
    for (size_t i = 0; i < count; i++) y[i] = sn_act_scalar(act, x[i]);
}

#endif
