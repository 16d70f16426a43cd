/* bench/bench_util.h: what the C bench programs (train_step.c, det_step.c) share: a monotonic
 * clock, the median of the timed steps, and strict number parsing of their flags. */
#ifndef SN_BENCH_UTIL_H
#define SN_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The whole string as an integer in [lo, hi] (1), or 0. */
static inline int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end != 0 || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

/* The whole string as a number in [lo, hi] (1), or 0. */
static inline int parse_dbl(const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (*s == 0 || *end != 0 || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}

#endif
