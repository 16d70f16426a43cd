/* The GEMM of gemm_impl.h built for AVX-512F (CMake compiles this file with -mavx512f -mfma
 * -mprefer-vector-width=512; multiply-adds fused, SN_GEMM_FMA): 32 zmm registers hold a 12 x 32
 * tile (24 accumulators, two B vectors and a broadcast). MC stays 120 rows (kernels.h promises
 * sn_gemm_packed_f32 the bits of sn_gemm_f32 for m <= 120). */
#include "gemm_isa.h"

#if defined(SN_HAVE_AVX512)
#define MR 12
#define NR 32
#define KC 256
#define MC (10 * MR)
#define NC 256
#define SN_GEMM_RUN sn_gemm_run_avx512
#define SN_GEMM_PACKB sn_gemm_packb_avx512
#define SN_GEMM_PACKED sn_gemm_packed_avx512
#define SN_GEMM_FMA 1
#include "gemm_impl.h"
#else
typedef int sn_gemm_avx512_unused; /* ISO C forbids an empty translation unit */
#endif
