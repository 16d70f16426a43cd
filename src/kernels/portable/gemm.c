/* Blocked single-precision GEMM (optionally with transposed operands for the backward passes),
 * the engine behind every convolution, written once and compiled once per instruction set: each
 * build's file (src/kernels/isa/) defines the register tile SN_GEMM_MR x SN_GEMM_NR and, where
 * the ISA fuses multiply-adds, SN_GEMM_FMA, and compiles with that ISA's flags; the compiler
 * turns the column loops into that ISA's vectors. Results are the same for any thread count
 * within one ISA (fixed blocks, each output element summed by one thread in one order); across
 * ISAs they differ by rounding (FMA, vector width), which tests/test_kernels.c bounds against the
 * plain path. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* The builds for CPUs with FMA units (SN_GEMM_FMA) round each multiply-add once: fmaf, which
 * the compiler turns into vector FMAs there. Written out rather than left to -ffp-contract=fast,
 * which fuses every multiply and add of a translation unit: the other kernels, compiled into the
 * same one (isa_unit.h), must keep the portable build's rounding. The portable build
 * multiplies, then adds. */
#if defined(SN_GEMM_FMA)
#define MADD(acc, a, b) fmaf(a, b, acc)
#else
#define MADD(acc, a, b) ((acc) + (a) * (b))
#endif

/* Register tile of the micro-kernel: MR rows of A broadcast against NR packed columns of B. The
 * compiler keeps the accumulators in vector registers only when it fully unrolls the rows and
 * vectorises the columns (see the pragmas in tile_body), so the tile is sized to the ISA's
 * registers. */
#define MR SN_GEMM_MR
#define NR SN_GEMM_NR
/* K block: one packed B panel (KC x NR floats, 8 KiB at NR = 8) stays in L1 while every row tile
 * of an M block reuses it. */
#define KC 256
/* M and N block of one parallel job; the A block (MC x KC, 120 KiB) stays in L2 while the N
 * panels sweep over it. Fixed sizes, never derived from the thread count, so that every output
 * element is summed in the same order whatever nthreads is. MC is 120 rows in every build
 * (kernel_list.h promises sn_gemm_packed_f32 the bits of sn_gemm_f32 for m <= 120). */
#define MC 120
#define NC 256

_Static_assert(MC % MR == 0, "an M block holds whole row tiles");
_Static_assert(KC == SN_GEMM_KC, "kernels.h documents the K block");
_Static_assert(SN_GEMM_N_ALIGN % NR == 0 && NC % NR == 0,
               "packed column offsets must fall on panels");

static int imin(int a, int b) { return a < b ? a : b; }

/* Copy B[0..kc)[0..nr) into a dense kc x NR panel, zero-filling the unused columns so that the
 * micro-kernel never needs a column-tail variant. */
static void pack_b(int kc, int nr, const float *b, int ldb, float *bp) {
    if (nr == NR) {
        for (int p = 0; p < kc; p++)
            memcpy(bp + (size_t)p * NR, b + (size_t)p * ldb, NR * sizeof *bp);
        return;
    }
    for (int p = 0; p < kc; p++) {
        const float *src = b + (size_t)p * ldb;
        float *dst = bp + (size_t)p * NR;
        int j = 0;
        for (; j < nr; j++) dst[j] = src[j];
        for (; j < NR; j++) dst[j] = 0.0f;
    }
}

/* The same panel from a transposed B: op(B)[p][j] = b[j][p], so each of the nr source rows is
 * read contiguously along k and scattered with stride NR. */
static void pack_bt(int kc, int nr, const float *b, int ldb, float *bp) {
    for (int j = 0; j < nr; j++) {
        const float *src = b + (size_t)j * ldb;
        for (int p = 0; p < kc; p++) bp[(size_t)p * NR + j] = src[p];
    }
    for (int j = nr; j < NR; j++)
        for (int p = 0; p < kc; p++) bp[(size_t)p * NR + j] = 0.0f;
}

/* op(A) rows [0, m) x k range [0, kc) from a transposed A (op(A)[i][p] = a[p][i]) into MR-row
 * micro-panels: kc steps of MR consecutive values, one per row, short panels padded with copies
 * of their row 0 (as micro_kernel reads them). Each source row p is read once, contiguously, and
 * dealt out to every panel (a panel at a time re-read each source row from L2 once per panel:
 * half the time of a 1x1 convolution's dw went there). */
static void pack_at(int m, int kc, const float *a, int lda, float *ap) {
    const size_t pstride = (size_t)kc * MR;
    for (int p = 0; p < kc; p++) {
        const float *src = a + (size_t)p * lda;
        float *dst = ap + (size_t)p * MR;
        int i0 = 0;
        for (; i0 + MR <= m; i0 += MR, dst += pstride)
            for (int i = 0; i < MR; i++) dst[i] = src[i0 + i];
        if (i0 < m) {
            const int mr = m - i0;
            for (int i = 0; i < MR; i++) dst[i] = src[i0 + (i < mr ? i : 0)];
        }
    }
}

/* One MR x NR tile over kc, NW (NR or NR/2) columns of it computed: the last panel of an
 * output whose width leaves at most NR/2 columns there runs the half-width tile instead of
 * multiplying zeros. A is either row-major (lda) or an MR-row micro-panel (pack_at: kc steps of
 * MR consecutive values, one sequential stream). Row tails read a duplicate of row 0 instead of
 * a shorter loop, so a row's result does not depend on where a tile boundary falls. Every
 * variant does the same arithmetic per element, so they give the same bits. */
static inline __attribute__((always_inline)) void
tile_body(int kc, int mr, int nr, const float *a, int lda, int a_packed, const float *bp,
          float *c, int ldc, int accumulate, const int NW) {
    const float *ar[MR];
    for (int i = 0; i < MR; i++) ar[i] = a + (size_t)(i < mr ? i : 0) * lda;

    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NW; j++) acc[i][j] = 0.0f;

    /* Four k steps per loop iteration: fewer loop-carried updates between the FMAs (a 6 x 16
     * tile went from ~75 to ~87 GFLOP/s on one Zen core with its operands in L2). */
#pragma GCC unroll 4
    for (int p = 0; p < kc; p++) {
        const float *bq = bp + (size_t)p * NR;
        /* Unrolled rows keep the accumulators in registers at -O2 too (GCC and Clang honour
         * this pragma); without the simd hint GCC vectorises along p and spills them. */
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            const float av = a_packed ? a[(size_t)p * MR + i] : ar[i][p];
#pragma omp simd
            for (int j = 0; j < NW; j++) acc[i][j] = MADD(acc[i][j], av, bq[j]);
        }
    }

    if (mr == MR && nr == NW) {
        for (int i = 0; i < MR; i++) {
            float *ci = c + (size_t)i * ldc;
            if (accumulate)
                for (int j = 0; j < NW; j++) ci[j] += acc[i][j];
            else
                for (int j = 0; j < NW; j++) ci[j] = acc[i][j];
        }
        return;
    }
    for (int i = 0; i < mr; i++) {
        float *ci = c + (size_t)i * ldc;
        for (int j = 0; j < nr; j++) ci[j] = accumulate ? ci[j] + acc[i][j] : acc[i][j];
    }
}

static void micro_kernel(int kc, int mr, int nr, const float *a, int lda, const float *bp,
                         float *c, int ldc, int accumulate) {
    if (nr <= NR / 2)
        tile_body(kc, mr, nr, a, lda, 0, bp, c, ldc, accumulate, NR / 2);
    else
        tile_body(kc, mr, nr, a, lda, 0, bp, c, ldc, accumulate, NR);
}

static void micro_kernel_pa(int kc, int mr, int nr, const float *ap, const float *bp, float *c,
                            int ldc, int accumulate) {
    if (nr <= NR / 2)
        tile_body(kc, mr, nr, ap, 0, 1, bp, c, ldc, accumulate, NR / 2);
    else
        tile_body(kc, mr, nr, ap, 0, 1, bp, c, ldc, accumulate, NR);
}

/* C block [m][n] += / = op(A) [m][k] * op(B) [k][n] on the calling thread; m <= MC. For a
 * transposed A, `a` points at the block's first column (a + i0) and each K block of op(A) is
 * packed once, then reused by every N panel. */
static void gemm_block(int ta, int tb, int m, int n, int k, const float *a, int lda,
                       const float *b, int ldb, float *c, int ldc, int accumulate) {
    float bp[KC * NR];
    /* Only the transposed-A path touches this (120 KiB, well within a thread's stack). */
    float ap[ta ? ((MC + MR - 1) / MR) * MR * KC : 1];
    for (int pc = 0; pc < k; pc += KC) {
        const int kc = imin(KC, k - pc);
        /* Later K blocks add onto the partial sums of earlier ones. */
        const int acc = accumulate || pc > 0;
        if (ta) pack_at(m, kc, a + (size_t)pc * lda, lda, ap);
        for (int jc = 0; jc < n; jc += NR) {
            const int nr = imin(NR, n - jc);
            if (tb)
                pack_bt(kc, nr, b + (size_t)jc * ldb + pc, ldb, bp);
            else
                pack_b(kc, nr, b + (size_t)pc * ldb + jc, ldb, bp);
            for (int i = 0; i < m; i += MR) {
                if (ta)
                    micro_kernel_pa(kc, imin(MR, m - i), nr, ap + (size_t)i * kc, bp,
                                    c + (size_t)i * ldc + jc, ldc, acc);
                else
                    micro_kernel(kc, imin(MR, m - i), nr, a + (size_t)i * lda + pc, lda, bp,
                                 c + (size_t)i * ldc + jc, ldc, acc);
            }
        }
    }
}

/* Start of op(A) row i0 and op(B) column j0 inside the stored matrices. */
static const float *a_at(int ta, const float *a, int lda, int i0) {
    return ta ? a + i0 : a + (size_t)i0 * lda;
}
static const float *b_at(int tb, const float *b, int ldb, int j0) {
    return tb ? b + (size_t)j0 * ldb : b + j0;
}

/* Long, thin products (the weight gradients: C is cin x cout, k runs over every pixel) have too
 * few MC x NC blocks to keep the threads busy, so k is cut into chunks as well: each (chunk,
 * block) job writes its own partial C, and the partials are added in chunk order. Whether and
 * how k is cut depends on m, n and k only, never on nthreads, so the bits do not either. Returns
 * 0 (and does nothing) when the partials cannot be allocated; the caller then runs unsplit. */
#define KSPLIT_MIN 4096 /* rows of k per chunk, at least; a multiple of KC */
#define KSPLIT_MAX_CHUNKS 16
static int gemm_split_k(int ta, int tb, int m, int n, int k, const float *a, int lda,
                        const float *b, int ldb, float *c, int ldc, int accumulate, int nt) {
    const int nb = (n + NC - 1) / NC, jobs = ((m + MC - 1) / MC) * nb;
    int ks = KSPLIT_MIN;
    if ((k + ks - 1) / ks > KSPLIT_MAX_CHUNKS) {
        ks = (k + KSPLIT_MAX_CHUNKS - 1) / KSPLIT_MAX_CHUNKS;
        ks = (ks + KC - 1) / KC * KC;
    }
    const int nk = (k + ks - 1) / ks;
    const size_t csz = (size_t)m * n;
    float *part = malloc((size_t)nk * csz * sizeof *part);
    if (!part) return 0;
    const int total = nk * jobs;
    if (nt > total) nt = total;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (int q = 0; q < total; q++) {
        const int kc = q / jobs, job = q % jobs;
        const int i0 = (job / nb) * MC, j0 = (job % nb) * NC, k0 = kc * ks;
        const float *ab = ta ? a + (size_t)k0 * lda + i0 : a + (size_t)i0 * lda + k0;
        const float *bb = tb ? b + (size_t)j0 * ldb + k0 : b + (size_t)k0 * ldb + j0;
        gemm_block(ta, tb, imin(MC, m - i0), imin(NC, n - j0), imin(ks, k - k0), ab, lda, bb, ldb,
                   part + (size_t)kc * csz + (size_t)i0 * n + j0, n, 0);
    }
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int i = 0; i < m; i++) {
        float *ci = c + (size_t)i * ldc;
        for (int j = 0; j < n; j++) {
            float v = accumulate ? ci[j] : 0.0f;
            for (int kc = 0; kc < nk; kc++) v += part[(size_t)kc * csz + (size_t)i * n + j];
            ci[j] = v;
        }
    }
    free(part);
    return 1;
}

static size_t pack_b_all(int tb, int k, int n, const float *b, int ldb, float *bp);
static void gemm_packed(int m, int n0, int n, int k0, int k, const float *a, int lda,
                        const float *bp, int ktotal, float *c, int ldc, int accumulate);

/* Both entry points share this driver: jobs are fixed MC x NC blocks of C, each summed over all
 * of k by one thread (or over fixed chunks of k, see gemm_split_k), so results never depend on
 * nthreads. */
static void gemm_run(int ta, int tb, int m, int n, int k, const float *a, int lda,
                     const float *b, int ldb, float *c, int ldc, int accumulate, int nthreads) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (!accumulate)
            for (int i = 0; i < m; i++) memset(c + (size_t)i * ldc, 0, (size_t)n * sizeof *c);
        return;
    }
    const int mb = (m + MC - 1) / MC, nb = (n + NC - 1) / NC;
    const int jobs = mb * nb;
    int nt = nthreads > 0 ? nthreads : 1;
    if (jobs < 4 && k >= 2 * KSPLIT_MIN &&
        gemm_split_k(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate, nt))
        return;
    if (nt > jobs) nt = jobs;
    /* Many row blocks over one B (the 1x1 convolutions' dx, dense layers): pack all of op(B)
     * once instead of once per row block, as the convolutions do; the packed product sums in
     * gemm_block's order, so the bits are the same. Not inside a parallel region (the
     * convolutions' own tiles come here with m <= MC anyway), so the scratch is the caller's. */
    int in_parallel = 0;
#ifdef _OPENMP
    in_parallel = omp_in_parallel();
#endif
    if (!ta && mb >= 4 && !in_parallel) {
        const size_t pf = pack_b_all(tb, k, n, NULL, ldb, NULL);
        float *bp = sn_scratch(SN_SCRATCH_GEMM_B, pf * sizeof *bp);
        if (bp) {
            pack_b_all(tb, k, n, b, ldb, bp);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
            for (int job = 0; job < jobs; job++) {
                const int i0 = (job / nb) * MC, j0 = (job % nb) * NC;
                gemm_packed(imin(MC, m - i0), j0, imin(NC, n - j0), 0, k, a + (size_t)i0 * lda,
                            lda, bp, k, c + (size_t)i0 * ldc + j0, ldc, accumulate);
            }
            return;
        }
        sn_clear_error(); /* no memory for the panels: the unpacked path needs none */
    }
    if (nt <= 1) {
        /* No parallel region at all: convolutions call this from inside their own. */
        for (int job = 0; job < jobs; job++) {
            const int i0 = (job / nb) * MC, j0 = (job % nb) * NC;
            gemm_block(ta, tb, imin(MC, m - i0), imin(NC, n - j0), k, a_at(ta, a, lda, i0), lda,
                       b_at(tb, b, ldb, j0), ldb, c + (size_t)i0 * ldc + j0, ldc, accumulate);
        }
        return;
    }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int job = 0; job < jobs; job++) {
        const int i0 = (job / nb) * MC, j0 = (job % nb) * NC;
        gemm_block(ta, tb, imin(MC, m - i0), imin(NC, n - j0), k, a_at(ta, a, lda, i0), lda,
                   b_at(tb, b, ldb, j0), ldb, c + (size_t)i0 * ldc + j0, ldc, accumulate);
    }
}


/* ---- Pre-packed B ------------------------------------------------------------------------
 * A convolution multiplies many row tiles by the same weight matrix; packing B once per call
 * instead of once per tile removed ~15 % of a SpineNet-49 forward. The packed layout: panels of
 * NR columns (the last zero-filled), each k x NR row-major, so the K block at pc is at
 * panel + pc * NR. */
static size_t pack_b_all(int tb, int k, int n, const float *b, int ldb, float *bp) {
    const size_t panel = (size_t)k * NR;
    if (bp)
        for (int jc = 0; jc < n; jc += NR) {
            float *dst = bp + (size_t)(jc / NR) * panel;
            if (tb)
                pack_bt(k, imin(NR, n - jc), b + (size_t)jc * ldb, ldb, dst);
            else
                pack_b(k, imin(NR, n - jc), b + jc, ldb, dst);
        }
    return (size_t)((n + NR - 1) / NR) * panel;
}

/* C [m][n] (+)= A [m][k] (lda) * rows [k0, k0+k) x columns [n0, n0+n) of a B packed with
 * `ktotal` rows, on the calling thread, in gemm_block's K-block, panel and row-tile order: with
 * k0 a multiple of KC and m <= MC, the bits are those of the unpacked driver's. n0 must be a
 * multiple of NR. */
static void gemm_packed(int m, int n0, int n, int k0, int k, const float *a, int lda,
                        const float *bp, int ktotal, float *c, int ldc, int accumulate) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (!accumulate)
            for (int i = 0; i < m; i++) memset(c + (size_t)i * ldc, 0, (size_t)n * sizeof *c);
        return;
    }
    const size_t panel = (size_t)ktotal * NR;
    bp += (size_t)(n0 / NR) * panel + (size_t)k0 * NR;
    for (int pc = 0; pc < k; pc += KC) {
        const int kc = imin(KC, k - pc);
        const int acc = accumulate || pc > 0;
        for (int jc = 0; jc < n; jc += NR) {
            const float *bq = bp + (size_t)(jc / NR) * panel + (size_t)pc * NR;
            const int nr = imin(NR, n - jc);
            for (int i = 0; i < m; i += MR)
                micro_kernel(kc, imin(MR, m - i), nr, a + (size_t)i * lda + pc, lda, bq,
                             c + (size_t)i * ldc + jc, ldc, acc);
        }
    }
}


/* ---- The entry points of kernel_list.h --------------------------------------------------- */

void sn_gemm_f32(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c,
                 int ldc, int accumulate, int nthreads) {
    gemm_run(0, 0, m, n, k, a, lda, b, ldb, c, ldc, accumulate, nthreads);
}

void sn_gemm_ex_f32(int trans_a, int trans_b, int m, int n, int k, const float *a, int lda,
                    const float *b, int ldb, float *c, int ldc, int accumulate, int nthreads) {
    gemm_run(trans_a != 0, trans_b != 0, m, n, k, a, lda, b, ldb, c, ldc, accumulate, nthreads);
}

/* `isa` chose this build (dispatch.c); inside it there is nothing left to choose. */
size_t sn_gemm_packb_f32(sn_isa isa, int trans_b, int k, int n, const float *b, int ldb,
                         float *packed) {
    return pack_b_all(trans_b != 0, k, n, b, ldb, packed);
}

void sn_gemm_packed_f32(sn_isa isa, int m, int n0, int n, int k0, int k, const float *a,
                        int lda, const float *packed, int ktotal, float *c, int ldc,
                        int accumulate) {
    gemm_packed(m, n0, n, k0, k, a, lda, packed, ktotal, c, ldc, accumulate);
}
