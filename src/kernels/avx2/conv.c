/* conv.c built for AVX2 + FMA (see kernel_isa.h). */
#define SN_KERNEL_AVX2 1
#include "../conv.c"
