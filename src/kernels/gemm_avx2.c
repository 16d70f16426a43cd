/* The GEMM of gemm_impl.h built for AVX2 + FMA (CMake compiles this file with -mavx2 -mfma; its
 * multiply-adds are fused, SN_GEMM_FMA): 16 ymm registers hold a 6 x 16 tile (12 accumulators). */
#include "gemm_isa.h"

#if defined(SN_HAVE_AVX2)
#define MR 6
#define NR 16
#define KC 256
#define MC (20 * MR)
#define NC 256
#define SN_GEMM_RUN sn_gemm_run_avx2
#define SN_GEMM_PACKB sn_gemm_packb_avx2
#define SN_GEMM_PACKED sn_gemm_packed_avx2
#define SN_GEMM_FMA 1
#include "gemm_impl.h"
#else
typedef int sn_gemm_avx2_unused; /* ISO C forbids an empty translation unit */
#endif
