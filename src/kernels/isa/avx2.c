/* The kernels built for AVX2 + FMA (Haswell, Zen and later x86-64 CPUs).
 * cflags: -mavx2 -mfma
 */
#define SN_ISA_NAME avx2
/* 16 ymm registers hold a 6 x 16 tile (12 accumulators). */
#define SN_GEMM_MR 6
#define SN_GEMM_NR 16
#define SN_GEMM_FMA 1
#include "isa_unit.h"
