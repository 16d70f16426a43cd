/* The per-ISA builds of the GEMM driver (gemm_impl.h), chosen by gemm.c at run time. */
#ifndef SN_GEMM_ISA_H
#define SN_GEMM_ISA_H

#include <stddef.h>

#define SN_GEMM_RUN_ARGS                                                                         \
    int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,       \
        float *c, int ldc, int accumulate, int nthreads

#define SN_GEMM_PACKB_ARGS int tb, int k, int n, const float *b, int ldb, float *bp
#define SN_GEMM_PACKED_ARGS                                                                      \
    int m, int n0, int n, int k0, int k, const float *a, int lda, const float *bp, int ktotal,   \
        float *c, int ldc, int accumulate

void sn_gemm_run_generic(SN_GEMM_RUN_ARGS);
size_t sn_gemm_packb_generic(SN_GEMM_PACKB_ARGS);
void sn_gemm_packed_generic(SN_GEMM_PACKED_ARGS);
#if defined(SN_HAVE_AVX2)
void sn_gemm_run_avx2(SN_GEMM_RUN_ARGS);
size_t sn_gemm_packb_avx2(SN_GEMM_PACKB_ARGS);
void sn_gemm_packed_avx2(SN_GEMM_PACKED_ARGS);
#endif
#if defined(SN_HAVE_AVX512)
void sn_gemm_run_avx512(SN_GEMM_RUN_ARGS);
size_t sn_gemm_packb_avx512(SN_GEMM_PACKB_ARGS);
void sn_gemm_packed_avx512(SN_GEMM_PACKED_ARGS);
#endif

#endif
