/* The kernels built for AVX-512F (512-bit vectors, FMA). -mprefer-vector-width=512: otherwise
 * GCC may vectorise the loops with 256-bit vectors.
 * cflags: -mavx512f -mfma -mprefer-vector-width=512
 */
#define SN_ISA_NAME avx512
/* 32 zmm registers hold a 12 x 32 tile (24 accumulators, two B vectors and a broadcast). */
#define SN_GEMM_MR 12
#define SN_GEMM_NR 32
#define SN_GEMM_FMA 1
#include "isa_unit.h"
