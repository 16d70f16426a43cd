/* Blocked single-precision GEMM (optionally with transposed operands for the backward passes),
 * the engine behind every convolution: the portable C build of gemm_impl.h, the AVX2 + FMA build
 * beside it (gemm_avx2.c), and the run-time choice between them. An AVX-512 build is not shipped:
 * this project's machines expose AVX2 only, so it could not be tested here. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "gemm_isa.h"
#include "kernels.h"

/* Register tile of the micro-kernel: MR rows of A broadcast against NR packed columns of B. The
 * compiler keeps the accumulators in vector registers only when it fully unrolls the rows and
 * vectorises the columns (see the pragmas in gemm_impl.h). With the baseline x86-64 ISA (16 SSE
 * registers) 6x8 is the largest tile that fits: 12 accumulators, 2 B vectors, 1 broadcast; 4x16
 * spills. */
#ifndef SN_GEMM_MR
#define SN_GEMM_MR 6
#endif
#ifndef SN_GEMM_NR
#define SN_GEMM_NR 8
#endif
#define MR SN_GEMM_MR
#define NR SN_GEMM_NR
/* K block: one packed B panel (KC x NR floats, 8 KiB) stays in L1 while every row tile of an
 * M block reuses it. */
#define KC 256
/* M and N block of one parallel job (MC a multiple of MR); the A block (MC x KC, 120 KiB) stays
 * in L2 while the N panels sweep over it. Fixed sizes, never derived from the thread count, so
 * that every output element is summed in the same order whatever nthreads is. */
#define MC (20 * MR)
#define NC 256
#define SN_GEMM_RUN sn_gemm_run_generic
#define SN_GEMM_PACKB sn_gemm_packb_generic
#define SN_GEMM_PACKED sn_gemm_packed_generic
#include "gemm_impl.h"

/* ---- Instruction-set choice -------------------------------------------------------------- */

static const char *const isa_names[] = {"generic", "avx2", "avx512"};

const char *sn_isa_name(sn_isa isa) {
    return (unsigned)isa < sizeof isa_names / sizeof isa_names[0] ? isa_names[isa] : "unknown";
}

int sn_isa_available(sn_isa isa) {
    switch (isa) {
    case SN_ISA_GENERIC: return 1;
#if defined(SN_HAVE_AVX2)
    case SN_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#if defined(SN_HAVE_AVX512)
    case SN_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#endif
    default: return 0;
    }
}

/* -1 until first use; then the ISA in use. */
static atomic_int g_isa = -1;

static sn_isa best_isa(void) {
    const char *env = getenv("SN_ISA");
    if (env && *env) {
        for (int i = 0; i < SN_ISA_COUNT; i++)
            if (strcmp(env, isa_names[i]) == 0 && sn_isa_available((sn_isa)i)) return (sn_isa)i;
        /* An unknown or unavailable request falls back to the portable path, never to a guess. */
        return SN_ISA_GENERIC;
    }
    for (int i = SN_ISA_COUNT - 1; i > 0; i--)
        if (sn_isa_available((sn_isa)i)) return (sn_isa)i;
    return SN_ISA_GENERIC;
}

sn_isa sn_isa_active(void) {
    int v = atomic_load(&g_isa);
    if (v < 0) {
        v = (int)best_isa();
        atomic_store(&g_isa, v);
    }
    return (sn_isa)v;
}

sn_status sn_isa_set(sn_isa isa) {
    if ((unsigned)isa >= SN_ISA_COUNT)
        return sn_error(SN_ERR_INVALID_ARG, "unknown instruction set %d", (int)isa);
    if (!sn_isa_available(isa))
        return sn_error(SN_ERR_UNSUPPORTED, "instruction set %s: not supported by this %s",
                        sn_isa_name(isa), "CPU or build");
    atomic_store(&g_isa, (int)isa);
    return SN_OK;
}

static void gemm_dispatch(int ta, int tb, int m, int n, int k, const float *a, int lda,
                          const float *b, int ldb, float *c, int ldc, int accumulate,
                          int nthreads) {
    switch (sn_isa_active()) {
#if defined(SN_HAVE_AVX512)
    case SN_ISA_AVX512:
        sn_gemm_run_avx512(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate, nthreads);
        return;
#endif
#if defined(SN_HAVE_AVX2)
    case SN_ISA_AVX2:
        sn_gemm_run_avx2(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate, nthreads);
        return;
#endif
    default: sn_gemm_run_generic(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate, nthreads);
    }
}

void sn_gemm_f32(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c,
                 int ldc, int accumulate, int nthreads) {
    gemm_dispatch(0, 0, m, n, k, a, lda, b, ldb, c, ldc, accumulate, nthreads);
}

void sn_gemm_ex_f32(int trans_a, int trans_b, int m, int n, int k, const float *a, int lda,
                    const float *b, int ldb, float *c, int ldc, int accumulate, int nthreads) {
    gemm_dispatch(trans_a != 0, trans_b != 0, m, n, k, a, lda, b, ldb, c, ldc, accumulate,
                  nthreads);
}

size_t sn_gemm_packb_f32(sn_isa isa, int trans_b, int k, int n, const float *b, int ldb,
                         float *packed) {
#if defined(SN_HAVE_AVX512)
    if (isa == SN_ISA_AVX512) return sn_gemm_packb_avx512(trans_b != 0, k, n, b, ldb, packed);
#endif
#if defined(SN_HAVE_AVX2)
    if (isa == SN_ISA_AVX2) return sn_gemm_packb_avx2(trans_b != 0, k, n, b, ldb, packed);
#endif
    return sn_gemm_packb_generic(trans_b != 0, k, n, b, ldb, packed);
}

void sn_gemm_packed_f32(sn_isa isa, int m, int n0, int n, int k0, int k, const float *a,
                        int lda, const float *packed, int ktotal, float *c, int ldc,
                        int accumulate) {
#if defined(SN_HAVE_AVX512)
    if (isa == SN_ISA_AVX512) {
        sn_gemm_packed_avx512(m, n0, n, k0, k, a, lda, packed, ktotal, c, ldc, accumulate);
        return;
    }
#endif
#if defined(SN_HAVE_AVX2)
    if (isa == SN_ISA_AVX2) {
        sn_gemm_packed_avx2(m, n0, n, k0, k, a, lda, packed, ktotal, c, ldc, accumulate);
        return;
    }
#endif
    sn_gemm_packed_generic(m, n0, n, k0, k, a, lda, packed, ktotal, c, ldc, accumulate);
}
