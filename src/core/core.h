/* Internal helpers shared by every module: error reporting, checked allocation, threads. */
#ifndef SN_CORE_H
#define SN_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "spinenet.h"

#if defined(__GNUC__)
#define SN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SN_PRINTF(a, b)
/* For the project's programs (spinenet, bench), first thing in main: unless OMP_WAIT_POLICY or
 * GOMP_SPINCOUNT is set, re-execute the program once with GOMP_SPINCOUNT=10000 (libgomp reads
 * it only at load time), so that 2 threads do not collapse on a shared machine. Returns if the
 * re-execution is not needed or not possible. Never called by the library itself. */
void sn_tame_openmp_spinning(char **argv);

#endif

/* Record a message for sn_last_error() and return `s`, so that callers can write
 * `return sn_error(SN_ERR_IO, "%s: cannot open", path);`. */
sn_status sn_error(sn_status s, const char *fmt, ...) SN_PRINTF(2, 3);
void sn_clear_error(void);

/* Allocation with a readable error on failure. Aligned to 64 bytes; free with sn_free. */
void *sn_alloc(size_t bytes);
void *sn_calloc(size_t count, size_t size);
void sn_free(void *p);
/* Test hook: make the Nth allocation from now fail (0 disables). */
void sn_alloc_fail_after(long n);

/* Work buffers that outlive the call: slot `slot` (0 .. SN_SCRATCH_SLOTS-1) of the calling
 * thread, grown when `bytes` exceeds it and otherwise returned as it is (contents undefined).
 * Reusing them matters here: fresh pages cost ~12 us per 4 KiB on first touch, which made the
 * per-call im2col and weight-panel buffers of a convolution cost as much as its arithmetic.
 * Valid until the next call with the same slot on this thread or sn_scratch_release(); NULL
 * (error set) when the memory cannot be had. Kernels call it only from the calling thread,
 * before their parallel regions. */
enum {
    SN_SCRATCH_COLS,
    SN_SCRATCH_PACKB,
    SN_SCRATCH_GEMM_B,
    SN_SCRATCH_BWD,
    SN_SCRATCH_WSCALE,
    SN_SCRATCH_SLOTS
};
void *sn_scratch(int slot, size_t bytes);
/* Frees this thread's work buffers (sn_graph_free and sn_model_free call it). */
void sn_scratch_release(void);

/* Number of threads to use for a request (<= 0: all available cores). */
int sn_resolve_threads(int requested);

/* The whole file in an sn_alloc'ed buffer with a NUL after its last byte (so text can be
 * parsed in place); *size excludes the NUL. Errors name the path (SN_ERR_IO, SN_ERR_OOM). */
sn_status sn_read_file(const char *path, char **data, size_t *size);

/* mkdir -p: creates `path` and its missing parents; an existing directory is fine. Errors name
 * the path and the reason (SN_ERR_IO), e.g. a file of that name. */
sn_status sn_make_dirs(const char *path);

/* Saving a file whole or not at all. sn_save_open picks where the bytes go and opens s->f;
 * the caller writes into s->f, then sn_save_close(s, status) publishes the file when status is
 * SN_OK (and otherwise removes what was written), and returns the final status.
 * - a regular file, or a new name: the bytes go to "<file>.tmp.<pid>" beside it, which is
 *   synced and renamed over it, so a reader or a crash sees the old or the new file whole;
 *   a file that is replaced keeps its permission bits.
 * - a symbolic link (chains too, and one to a name that does not exist yet): its final target
 *   is the file saved as above; the link stays a link.
 * - anything else that is not a folder (a device such as /dev/null, a FIFO): written straight
 *   into, never replaced by a regular file (a FIFO blocks until it has a reader, as with `>`).
 * - a folder: SN_ERR_IO naming it.
 * Errors name the path as the caller gave it, and the reason. */
typedef struct {
    FILE *f;          /* the caller writes here */
    const char *name; /* the path as given, for messages */
    char *target;     /* the file written: path with its symbolic links followed */
    char *tmp;        /* the temporary file; NULL when writing straight into target */
} sn_save_file;
sn_status sn_save_open(const char *path, sn_save_file *s);
sn_status sn_save_close(sn_save_file *s, sn_status status);
/* The whole of a buffer saved as above. */
sn_status sn_save_buffer(const char *path, const void *data, size_t size);

/* Deterministic hash-based fill (the contract shared with tests/golden/gen_golden.py):
 * key = fnv1a64(name) ^ seed; for flat index i:
 *   z = key + (i + 1) * 0x9E3779B97F4A7C15; splitmix64 finaliser on z;
 *   u = (z >> 40) / 2^24 in [0, 1);  value = (float)(lo + (hi - lo) * u)   (in double). */
uint64_t sn_fnv1a64(const char *s);
void sn_hash_fill(float *dst, size_t count, const char *name, uint64_t seed, double lo, double hi);

/* Small seeded RNG (splitmix64 state) for initialisation. */
typedef struct {
    uint64_t s;
    double spare; /* Box-Muller makes normals in pairs */
    int has_spare;
} sn_rng;
void sn_rng_seed(sn_rng *r, uint64_t seed);
uint64_t sn_rng_next(sn_rng *r);
double sn_rng_uniform(sn_rng *r); /* [0,1) */
double sn_rng_normal(sn_rng *r);
/* Truncated normal: resample outside +-2 stddev (TF's truncated_normal). */
double sn_rng_truncnormal(sn_rng *r, double stddev);

/* For the project's programs (spinenet, bench), first thing in main: unless OMP_WAIT_POLICY or
 * GOMP_SPINCOUNT is set, re-execute the program once with GOMP_SPINCOUNT=10000 (libgomp reads
 * it only at load time), so that 2 threads do not collapse on a shared machine. Returns if the
 * re-execution is not needed or not possible. Never called by the library itself. */
void sn_tame_openmp_spinning(char **argv);

#endif
