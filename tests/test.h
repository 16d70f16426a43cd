/* A minimal test harness: CHECK records a failure and goes on; the program ends with
 * TEST_SUMMARY(), which prints "N passed, N failed" and returns the exit code. */
#ifndef SN_TEST_H
#define SN_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int t_pass, t_fail;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (cond) {                                                                        \
            t_pass++;                                                                      \
        } else {                                                                           \
            t_fail++;                                                                      \
            fprintf(stderr, "%s:%d: FAILED: %s: ", __FILE__, __LINE__, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fprintf(stderr, "\n");                                                         \
        }                                                                                  \
    } while (0)

#define CHECK_OK(expr)                                                                     \
    do {                                                                                   \
        sn_status st_ = (expr);                                                            \
        CHECK(st_ == SN_OK, "%s -> %s: %s", #expr, sn_status_name(st_), sn_last_error()); \
    } while (0)

#define TEST_SUMMARY()                                                                     \
    (printf("%d passed, %d failed\n", t_pass, t_fail), t_fail ? 1 : 0)

/* The largest absolute difference |a[i] - b[i]| (not relative: callers scale their tolerance);
 * a NaN in either makes it infinite. */
static inline double t_max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return INFINITY;
        if (d > m) m = d;
    }
    return m;
}

/* The folder that holds data/coco-tiny/: $SN_SHARED_DIR (CMake sets it to tests/, where the
 * repository keeps the files the tests need), else $SN_SOURCE_DIR/tests, else ./tests. */
static inline void t_shared_dir(char *dst, size_t cap) {
    const char *e = getenv("SN_SHARED_DIR");
    const char *src = getenv("SN_SOURCE_DIR");
    if (e && *e)
        snprintf(dst, cap, "%s", e);
    else if (src && *src)
        snprintf(dst, cap, "%s/tests", src);
    else
        snprintf(dst, cap, "tests");
}

/* Monotonic seconds, for the tests' timing lines. */
static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Make a fresh temporary folder $TMPDIR/<prefix>_XXXXXX (or under /tmp) into dst; 0 on
 * success, else -1 with the reason printed. */
static inline int t_make_tmpdir(char *dst, size_t cap, const char *prefix) {
    const char *base = getenv("TMPDIR");
    snprintf(dst, cap, "%s/%s_XXXXXX", base && *base ? base : "/tmp", prefix);
    if (mkdtemp(dst)) return 0;
    perror("mkdtemp");
    return -1;
}

/* Remove a test's temporary folder and everything in it (a failure is reported, not fatal). */
static inline void t_rm_tree(const char *path) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", path);
}

#endif
