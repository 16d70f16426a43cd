/* Elementwise activations (relu, relu6, swish, hard-swish, sigmoid, hard-sigmoid). */
#include "kernels.h"

#include "act_inline.h"

float sn_act_scalar(sn_act act, float v) {
    switch (act) {
    case SN_ACT_NONE: return v;
    case SN_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case SN_ACT_RELU6: return relu6(v);
    case SN_ACT_SWISH: return v * sigmoid_stable(v);
    /* Operation order of the Model Garden: x * relu6(x + 3) * (1/6). */
    case SN_ACT_HSWISH: return v * relu6(v + 3.0f) * (1.0f / 6.0f);
    case SN_ACT_SIGMOID: return sigmoid_stable(v);
    /* 0.16667, not 1/6: the constant of the Model Garden, which the weights were trained with. */
    case SN_ACT_HSIGMOID: return relu6(v + 3.0f) * 0.16667f;
    }
    return v;
}

/* Below this many elements per thread the fork/join costs more than it saves. */
#define MIN_PER_THREAD 16384

void sn_act_f32(sn_act act, size_t count, const float *x, float *y, int nthreads) {
    size_t nt = nthreads > 0 ? (size_t)nthreads : 1;
    if (nt > count / MIN_PER_THREAD) nt = count / MIN_PER_THREAD;
    if (nt <= 1) {
        sn_act_apply(act, count, x, y);
        return;
    }
    const size_t chunk = (count + nt - 1) / nt;
#pragma omp parallel for num_threads((int)nt) schedule(static)
    for (size_t t = 0; t < nt; t++) {
        const size_t i0 = t * chunk;
        if (i0 < count)
            sn_act_apply(act, (count - i0 < chunk ? count - i0 : chunk), x + i0, y + i0);
    }
}

/* ---- Backward ----------------------------------------------------------------------------
 * dy is loaded unconditionally before the select so that the loops compile to vector blends;
 * a load inside the branch keeps them scalar, and the sign of x is unpredictable.
 * Derivatives at the kinks follow PyTorch's one-sided conventions, so that gradients match a
 * PyTorch port bit for bit in sign and support:
 *   relu'(0) = 0;  relu6' = 1 only on the open interval (0, 6);
 *   hardswish'(x) = 0 for x < -3, x/3 + 1/2 for -3 <= x <= 3 (both ends inclusive, so -1/2 at
 *   -3 and 3/2 at 3, as torch.nn.functional.hardswish's backward), 1 for x > 3;
 *   hardsigmoid'(x) = 0.16667 (the forward's constant) on the open interval (-3, 3), else 0. */
/* g = dy * act'(x) for each element, then out += g (accumulate) or out = g; out may be dy when
 * assigning (each element is read before it is written). One copy of every derivative; the
 * accumulate test is loop-invariant, so the compiler splits each loop in two. */
#define EMIT(i, g)                                                                                 \
    do {                                                                                           \
        const float g_ = (g);                                                                      \
        out[i] = accumulate ? out[i] + g_ : g_;                                                    \
    } while (0)

static void act_grad_range(sn_act act, size_t count, const float *x, const float *dy, float *out,
                           int accumulate) {
    switch (act) {
    case SN_ACT_NONE:
        if (accumulate || out != dy)
            for (size_t i = 0; i < count; i++) EMIT(i, dy[i]);
        return;
    case SN_ACT_RELU:
        for (size_t i = 0; i < count; i++) {
            const float g = dy[i];
            EMIT(i, x[i] > 0.0f ? g : 0.0f);
        }
        return;
    case SN_ACT_RELU6:
        for (size_t i = 0; i < count; i++) {
            const float g = dy[i];
            EMIT(i, (x[i] > 0.0f && x[i] < 6.0f) ? g : 0.0f);
        }
        return;
    case SN_ACT_HSWISH:
        for (size_t i = 0; i < count; i++) {
            const float v = x[i];
            const float d = v < -3.0f ? 0.0f : (v <= 3.0f ? v / 3.0f + 0.5f : 1.0f);
            EMIT(i, dy[i] * d);
        }
        return;
    case SN_ACT_HSIGMOID:
        for (size_t i = 0; i < count; i++) {
            const float g = dy[i] * 0.16667f;
            EMIT(i, (x[i] > -3.0f && x[i] < 3.0f) ? g : 0.0f);
        }
        return;
    case SN_ACT_SIGMOID:
        for (size_t i = 0; i < count; i++) {
            const float sg = sigmoid_stable(x[i]);
            EMIT(i, dy[i] * (sg * (1.0f - sg)));
        }
        return;
    case SN_ACT_SWISH:
        /* d/dx x*s(x) = s + x*s*(1-s) = s*(1 + x*(1-s)). */
        for (size_t i = 0; i < count; i++) {
            const float sg = sigmoid_stable(x[i]);
            EMIT(i, dy[i] * (sg * (1.0f + x[i] * (1.0f - sg))));
        }
        return;
    }
}
#undef EMIT

/* Elementwise: any split gives the same bits. */
static void act_grad_run(sn_act act, size_t count, const float *x, const float *dy, float *out,
                         int accumulate, int nthreads) {
    size_t nt = nthreads > 0 ? (size_t)nthreads : 1;
    if (nt > count / MIN_PER_THREAD) nt = count / MIN_PER_THREAD;
    if (nt <= 1) {
        act_grad_range(act, count, x, dy, out, accumulate);
        return;
    }
    const size_t chunk = (count + nt - 1) / nt;
#pragma omp parallel for num_threads((int)nt) schedule(static)
    for (size_t t = 0; t < nt; t++) {
        const size_t i0 = t * chunk;
        if (i0 < count)
            act_grad_range(act, (count - i0 < chunk ? count - i0 : chunk), x + i0, dy + i0,
                           out + i0, accumulate);
    }
}

void sn_act_backward_f32(sn_act act, size_t count, const float *x, const float *dy, float *dx,
                         int nthreads) {
    if (dx) act_grad_run(act, count, x, dy, dx, 1, nthreads);
}

void sn_act_grad_range_f32(sn_act act, size_t count, const float *x, const float *dy, float *out) {
    act_grad_range(act, count, x, dy, out, 0);
}

void sn_act_grad_f32(sn_act act, size_t count, const float *x, const float *dy, float *out,
                     int nthreads) {
    act_grad_run(act, count, x, dy, out, 0, nthreads);
}
