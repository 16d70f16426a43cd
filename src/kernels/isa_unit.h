/* The body of every file of src/kernels/isa/: one build of the kernels of kernel_list.h. The
 * including file names its compiler flags on a line " * cflags: ..." of its opening comment
 * (CMake reads it), then defines SN_ISA_NAME (its row's name in isa_list.h) and the GEMM's
 * register tile (SN_GEMM_MR x SN_GEMM_NR, and SN_GEMM_FMA where the ISA fuses multiply-adds; see
 * portable/gemm.c) and includes this file. Every portable kernel source is compiled into that one
 * translation unit (a unity build) with its kernels file-local (kernels.h under SN_ISA_UNIT), so
 * the builds share no symbol but their tables, sn_kernels_<name>. A file whose flags the compiler
 * rejects is compiled with SN_ISA_OFF instead: an empty table, so that the dispatcher still links
 * and never chooses it. */
#ifndef SN_ISA_NAME
#error "define SN_ISA_NAME (its name in isa_list.h) before including isa_unit.h"
#endif

#define SN_ISA_CAT_(a, b) a##b
#define SN_ISA_CAT(a, b) SN_ISA_CAT_(a, b)

#if defined(SN_ISA_OFF)

#include "kernel_table.h"

const sn_kernel_table SN_ISA_CAT(sn_kernels_, SN_ISA_NAME) = {.built = 0};

#else

#define SN_ISA_UNIT
#include "kernels.h"

/* One unit, so each source keeps its file-scope names (statics, macros) distinct from the
 * others': a clash fails to compile, except a macro defined again with the same value. */
#include "portable/act.c"
#include "portable/batchnorm.c"
#include "portable/conv.c"
#include "portable/elementwise.c"
#include "portable/gap.c"
#include "portable/gemm.c"
#include "portable/pool.c"
#include "portable/resize.c"

#include "kernel_table.h"

const sn_kernel_table SN_ISA_CAT(sn_kernels_, SN_ISA_NAME) = {
    .built = 1,
#define SN_KERNEL(ret, name, params, args) .name = name,
#define SN_KERNEL_ISA_ARG SN_KERNEL
#include "kernel_list.h"
#undef SN_KERNEL
#undef SN_KERNEL_ISA_ARG
};

#endif
