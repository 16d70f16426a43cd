/* The choice of instruction set and the public kernel names. Each build of the kernels is a
 * constant table of function pointers (kernel_table.h, filled by its file in src/kernels/isa/);
 * the active one is chosen once, at first use, from the CPU's features and SN_ISA, or by
 * sn_isa_set, and every public name of kernel_list.h calls through it. Nothing here is written by
 * hand per kernel or per instruction set: it all comes from kernel_list.h and isa_list.h. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "kernel_table.h"

#if defined(__x86_64__) || defined(__i386__)
#define SN_CPU_HAS(feature) __builtin_cpu_supports(feature)
#define SN_CPU_INIT() __builtin_cpu_init()
#else
#define SN_CPU_HAS(feature) 0
#define SN_CPU_INIT() ((void)0)
#endif

static const sn_kernel_table *const tables[SN_ISA_COUNT] = {
#define SN_ISA(id, name, cpu_test) [SN_ISA_##id] = &sn_kernels_##name,
#include "isa_list.h"
#undef SN_ISA
};

static const char *const isa_names[SN_ISA_COUNT] = {
#define SN_ISA(id, name, cpu_test) [SN_ISA_##id] = #name,
#include "isa_list.h"
#undef SN_ISA
};

const char *sn_isa_name(sn_isa isa) {
    return (unsigned)isa < SN_ISA_COUNT ? isa_names[isa] : "unknown";
}

static int cpu_runs(sn_isa isa) {
    SN_CPU_INIT();
    switch (isa) {
#define SN_ISA(id, name, cpu_test)                                                                 \
    case SN_ISA_##id: return (cpu_test) != 0;
#include "isa_list.h"
#undef SN_ISA
    default: return 0;
    }
}

int sn_isa_available(sn_isa isa) {
    return (unsigned)isa < SN_ISA_COUNT && tables[isa]->built && cpu_runs(isa);
}

/* -1 until first use; then the ISA in use. */
static atomic_int g_isa = -1;

static sn_isa best_isa(void) {
    const char *env = getenv("SN_ISA");
    if (env && *env) {
        for (int i = 0; i < SN_ISA_COUNT; i++)
            if (strcmp(env, isa_names[i]) == 0 && sn_isa_available((sn_isa)i)) return (sn_isa)i;
        /* An unknown or unavailable request falls back to the portable path, never to a guess. */
        return SN_ISA_GENERIC;
    }
    for (int i = SN_ISA_COUNT - 1; i > 0; i--)
        if (sn_isa_available((sn_isa)i)) return (sn_isa)i;
    return SN_ISA_GENERIC;
}

/* The first use: threads racing here compute the same choice, and one that sn_isa_set stored in
 * the meantime is kept. */
static int first_use(void) {
    int expected = -1;
    const int v = (int)best_isa();
    return atomic_compare_exchange_strong(&g_isa, &expected, v) ? v : expected;
}

static inline int active_isa(void) {
    const int v = atomic_load(&g_isa);
    return v >= 0 ? v : first_use();
}

sn_isa sn_isa_active(void) { return (sn_isa)active_isa(); }

sn_status sn_isa_set(sn_isa isa) {
    if ((unsigned)isa >= SN_ISA_COUNT)
        return sn_error(SN_ERR_INVALID_ARG, "unknown instruction set %d", (int)isa);
    if (!sn_isa_available(isa))
        return sn_error(SN_ERR_UNSUPPORTED, "instruction set %s: not supported by this %s",
                        sn_isa_name(isa), "CPU or build");
    atomic_store(&g_isa, (int)isa);
    return SN_OK;
}

/* The build a SN_KERNEL_ISA_ARG kernel was asked for: one this build of the library lacks runs
 * the portable build (its layout is then the portable one, consistently). */
static const sn_kernel_table *table_of(sn_isa isa) {
    return (unsigned)isa < SN_ISA_COUNT && tables[isa]->built ? tables[isa]
                                                              : tables[SN_ISA_GENERIC];
}

/* `return` before a call whose type is not void (C forbids returning a void expression):
 * SN_RETURN(void) is empty, any other type gives `return`. The probe pastes the type's first
 * token onto SN_VOID_PROBE_; only "void" then names a macro, whose comma shifts the arguments. */
#define SN_VOID_PROBE_void ~,
#define SN_SECOND(a, b, ...) b
#define SN_SECOND_EXPANDED(...) SN_SECOND(__VA_ARGS__)
#define SN_RETURN(ret) SN_SECOND_EXPANDED(SN_VOID_PROBE_##ret, return, ~)

#define SN_KERNEL(ret, name, params, args)                                                         \
    ret name params { SN_RETURN(ret) tables[active_isa()]->name args; }
#define SN_KERNEL_ISA_ARG(ret, name, params, args)                                                 \
    ret name params { SN_RETURN(ret) table_of(isa)->name args; }
#include "kernel_list.h"
#undef SN_KERNEL
#undef SN_KERNEL_ISA_ARG
