/* The instruction-set registry: one row per build of the kernels, in order of preference (the
 * last one this CPU and build support is the default). From the rows come the sn_isa enumeration
 * (kernels.h), each build's table declaration (kernel_table.h), and the names, CPU tests and
 * table list of the dispatcher (dispatch.c).
 *
 * Rows: SN_ISA(ID, name, CPU test). ID gives SN_ISA_<ID>; name is what sn_isa_name and the
 * SN_ISA environment variable spell, and names the file src/kernels/isa/<name>.c that builds it
 * (with the flags on its "cflags:" line; see isa_unit.h). The CPU test is an expression, true when
 * this CPU runs that code; SN_CPU_HAS("feature") is __builtin_cpu_supports on x86, 0 elsewhere.
 * It is evaluated in dispatch.c, which is compiled for the baseline ISA (the test must not itself
 * run instructions the CPU may lack). Whether this compiler could build the file is in its table.
 * Adding an ISA: a row here and its file in src/kernels/isa/. No include guard: the includer
 * defines SN_ISA, includes this file and undefines it. */

SN_ISA(GENERIC, generic, 1)
SN_ISA(AVX2, avx2, SN_CPU_HAS("avx2") && SN_CPU_HAS("fma"))
SN_ISA(AVX512, avx512, SN_CPU_HAS("avx512f") && SN_CPU_HAS("fma"))
