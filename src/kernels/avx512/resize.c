/* resize.c built for AVX-512F (512-bit vectors, FMA) (see kernel_isa.h). */
#define SN_KERNEL_AVX512 1
#include "../resize.c"
