/* The portable build of the kernels: plain C for the baseline of the target (on x86-64, SSE2),
 * always built, the reference the other builds are tested against (SN_ISA=generic selects it).
 * cflags:
 */
#define SN_ISA_NAME generic
/* With the baseline x86-64 ISA (16 SSE registers) 6x8 is the largest tile that fits: 12
 * accumulators, 2 B vectors, 1 broadcast; 4x16 spills. */
#define SN_GEMM_MR 6
#define SN_GEMM_NR 8
#include "isa_unit.h"
