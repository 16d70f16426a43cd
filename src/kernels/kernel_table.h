/* The function-pointer table of one build of the kernels (one member per row of kernel_list.h)
 * and the declaration of each build's table (one per row of isa_list.h, defined by
 * src/kernels/isa/<name>.c). Shared by dispatch.c and isa_unit.h only. */
#ifndef SN_KERNEL_TABLE_H
#define SN_KERNEL_TABLE_H

#include "kernels.h"

typedef struct {
    /* 0 when this compiler could not build the ISA (its file was compiled with SN_ISA_OFF): then
     * every member is NULL and the dispatcher never chooses it. */
    int built;
#define SN_KERNEL(ret, name, params, args) ret(*name) params;
#define SN_KERNEL_ISA_ARG SN_KERNEL
#include "kernel_list.h"
#undef SN_KERNEL
#undef SN_KERNEL_ISA_ARG
} sn_kernel_table;

#define SN_ISA(id, name, cpu_test) extern const sn_kernel_table sn_kernels_##name;
#include "isa_list.h"
#undef SN_ISA

#endif
