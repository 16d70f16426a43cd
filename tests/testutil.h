/* Helpers shared by the op-level tests (test_kernels, test_grad_ops, test_grad_conv): a fixed
 * random stream, buffers that end the test on out of memory, float/double copies and central
 * finite differences. Each test defines T_RNG_SEED before including this, so each keeps its own
 * fixed sequence of numbers. */
#ifndef SN_TESTUTIL_H
#define SN_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#ifndef T_RNG_SEED
#error "define T_RNG_SEED (the test's fixed random seed) before including testutil.h"
#endif

static uint64_t t_rng = T_RNG_SEED;

/* xorshift64*: a fixed sequence, so every run tests the same numbers. */
static inline uint64_t t_rnd64(void) {
    t_rng ^= t_rng >> 12;
    t_rng ^= t_rng << 25;
    t_rng ^= t_rng >> 27;
    return t_rng * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [lo, hi), from the top 24 bits (exactly representable in a float). */
static inline float t_urand(float lo, float hi) {
    return lo + (hi - lo) * (float)((double)(t_rnd64() >> 40) / 16777216.0);
}

/* sn_alloc that ends the test (exit 2) when memory runs out: the tests' buffers are small, so
 * that is a broken machine, not a result. */
static inline void *t_xalloc(size_t bytes) {
    void *p = sn_alloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "test: out of memory\n");
        exit(2);
    }
    return p;
}

/* n floats uniform in [lo, hi), drawn in order from the stream. */
static inline float *t_frand(size_t n, float lo, float hi) {
    float *p = t_xalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = t_urand(lo, hi);
    return p;
}

static inline float *t_fzero(size_t n) {
    float *p = t_xalloc(n * sizeof *p);
    memset(p, 0, n * sizeof *p);
    return p;
}

static inline float *t_fcopy(const float *src, size_t n) {
    float *p = t_xalloc(n * sizeof *p);
    memcpy(p, src, n * sizeof *p);
    return p;
}

/* n doubles, zeroed (references accumulate into them). */
static inline double *t_dzero(size_t n) {
    double *p = t_xalloc(n * sizeof *p);
    memset(p, 0, n * sizeof *p);
    return p;
}

static inline double *t_dfrom(const float *src, size_t n) {
    double *p = t_xalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = src[i];
    return p;
}

/* A scalar loss of the op under test, evaluated in double from the arrays ctx points to. */
typedef double (*t_loss_fn)(const void *ctx);

/* dL/dp[i] by a central difference with step h; p is one of the arrays the loss reads through
 * ctx, and p[i] is restored afterwards. */
static inline double t_central_diff(t_loss_fn f, const void *ctx, double *p, size_t i, double h) {
    const double v = p[i];
    p[i] = v + h;
    const double lp = f(ctx);
    p[i] = v - h;
    const double lm = f(ctx);
    p[i] = v;
    return (lp - lm) / (2.0 * h);
}

#endif
