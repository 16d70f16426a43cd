/* The per-ISA builds of the GEMM driver (gemm_impl.h), chosen by gemm.c at run time. */
#ifndef SN_GEMM_ISA_H
#define SN_GEMM_ISA_H

#define SN_GEMM_RUN_ARGS                                                                         \
    int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,       \
        float *c, int ldc, int accumulate, int nthreads

void sn_gemm_run_generic(SN_GEMM_RUN_ARGS);
#if defined(SN_HAVE_AVX2)
void sn_gemm_run_avx2(SN_GEMM_RUN_ARGS);
#endif

#endif
