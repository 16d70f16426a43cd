/* Peak fp32 FMA probe: independent FMA chains on ymm registers, 1..T threads.
 * Build: gcc -O2 -mavx2 -mfma -fopenmp bench/infer_peak.c -o build/infer_peak
 * Usage: infer_peak [threads...]   (default: 1 2). Prints one JSON line per thread count:
 * {"threads": T, "gflops": G} -- best of 5 trials, each about 0.2 s. */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* 12 independent accumulators: enough to cover FMA latency x throughput (4 x 2 on Zen/Intel,
 * with headroom). Each iteration: 12 FMAs x 8 lanes x 2 flops = 192 flops. */
static float chains(long iters, float seed) {
    __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    __m256 c0 = _mm256_set1_ps(seed), c1 = _mm256_set1_ps(seed + 1), c2 = _mm256_set1_ps(seed + 2),
           c3 = _mm256_set1_ps(seed + 3), c4 = _mm256_set1_ps(seed + 4), c5 = _mm256_set1_ps(seed + 5),
           c6 = _mm256_set1_ps(seed + 6), c7 = _mm256_set1_ps(seed + 7), c8 = _mm256_set1_ps(seed + 8),
           c9 = _mm256_set1_ps(seed + 9), c10 = _mm256_set1_ps(seed + 10), c11 = _mm256_set1_ps(seed + 11);
    for (long i = 0; i < iters; i++) {
        c0 = _mm256_fmadd_ps(c0, a, b); c1 = _mm256_fmadd_ps(c1, a, b);
        c2 = _mm256_fmadd_ps(c2, a, b); c3 = _mm256_fmadd_ps(c3, a, b);
        c4 = _mm256_fmadd_ps(c4, a, b); c5 = _mm256_fmadd_ps(c5, a, b);
        c6 = _mm256_fmadd_ps(c6, a, b); c7 = _mm256_fmadd_ps(c7, a, b);
        c8 = _mm256_fmadd_ps(c8, a, b); c9 = _mm256_fmadd_ps(c9, a, b);
        c10 = _mm256_fmadd_ps(c10, a, b); c11 = _mm256_fmadd_ps(c11, a, b);
        __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5));
        __asm__ volatile("" : "+x"(c6), "+x"(c7), "+x"(c8), "+x"(c9), "+x"(c10), "+x"(c11));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[7];
}

int main(int argc, char **argv) {
    int counts[16] = {1, 2}, n = 2;
    if (argc > 1) {
        n = 0;
        for (int i = 1; i < argc && n < 16; i++) counts[n++] = atoi(argv[i]);
    }
    const long iters = 20000000; /* 3.84 GFLOP per thread per trial */
    volatile float sink = 0;
    for (int k = 0; k < n; k++) {
        int t = counts[k] > 0 ? counts[k] : 1;
        double best = 0;
        for (int trial = 0; trial < 5; trial++) {
            double t0 = now();
            float acc = 0;
#pragma omp parallel num_threads(t) reduction(+ : acc)
            acc += chains(iters, (float)omp_get_thread_num());
            double dt = now() - t0;
            sink += acc;
            double g = 192.0 * (double)iters * t / dt * 1e-9;
            if (g > best) best = g;
        }
        printf("{\"threads\": %d, \"gflops\": %.1f}\n", t, best);
    }
    return sink == 12345.0f; /* keep the work */
}
