/* Error messages, allocation, threads and seeded random numbers. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static _Thread_local char g_err[1024];

sn_status sn_error(sn_status s, const char *fmt, ...) {
    /* Format into a copy first: callers may pass sn_last_error() itself as an argument, to
     * prefix the message with context. */
    char buf[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(g_err, buf, sizeof g_err);
    return s;
}

void sn_clear_error(void) { g_err[0] = 0; }

const char *sn_last_error(void) { return g_err; }

const char *sn_status_name(sn_status s) {
    switch (s) {
    case SN_OK: return "ok";
    case SN_ERR_INVALID_ARG: return "invalid argument";
    case SN_ERR_OOM: return "out of memory";
    case SN_ERR_IO: return "i/o error";
    case SN_ERR_FORMAT: return "malformed file";
    case SN_ERR_SHAPE: return "wrong shape";
    case SN_ERR_NOT_FOUND: return "not found";
    case SN_ERR_UNSUPPORTED: return "unsupported";
    case SN_ERR_STATE: return "wrong state";
    }
    return "unknown status";
}

static long g_fail_after;

void sn_alloc_fail_after(long n) { g_fail_after = n; }

void *sn_alloc(size_t bytes) {
    if (g_fail_after > 0 && --g_fail_after == 0) {
        sn_error(SN_ERR_OOM, "out of memory allocating %zu bytes (injected failure)", bytes);
        return NULL;
    }
    if (bytes == 0) bytes = 1;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) {
        sn_error(SN_ERR_OOM, "allocation of %zu bytes overflows", bytes);
        return NULL;
    }
    void *p = aligned_alloc(64, rounded);
    if (!p) sn_error(SN_ERR_OOM, "out of memory allocating %zu bytes", bytes);
    return p;
}

void *sn_calloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) {
        sn_error(SN_ERR_OOM, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    void *p = sn_alloc(count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

void sn_free(void *p) { free(p); }

static _Thread_local struct {
    void *p;
    size_t bytes;
} g_scratch[SN_SCRATCH_SLOTS];

void *sn_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= SN_SCRATCH_SLOTS) {
        sn_error(SN_ERR_INVALID_ARG, "scratch slot %d out of range", slot);
        return NULL;
    }
    if (bytes <= g_scratch[slot].bytes && g_scratch[slot].p) return g_scratch[slot].p;
    sn_free(g_scratch[slot].p);
    g_scratch[slot].p = NULL;
    g_scratch[slot].bytes = 0;
    /* A little headroom, so that a slowly growing sequence of requests reallocates rarely. */
    const size_t want = bytes + bytes / 8;
    void *p = sn_alloc(want >= bytes ? want : bytes);
    if (!p) return NULL;
    g_scratch[slot].p = p;
    g_scratch[slot].bytes = want >= bytes ? want : bytes;
    return p;
}

void sn_scratch_release(void) {
    for (int i = 0; i < SN_SCRATCH_SLOTS; i++) {
        sn_free(g_scratch[i].p);
        g_scratch[i].p = NULL;
        g_scratch[i].bytes = 0;
    }
}

int sn_resolve_threads(int requested) {
    if (requested > 0) return requested;
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

uint64_t sn_fnv1a64(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void sn_hash_fill(float *dst, size_t count, const char *name, uint64_t seed, double lo,
                  double hi) {
    uint64_t key = sn_fnv1a64(name) ^ seed;
    for (size_t i = 0; i < count; i++) {
        uint64_t z = mix64(key + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ULL);
        double u = (double)(z >> 40) / 16777216.0;
        dst[i] = (float)(lo + (hi - lo) * u);
    }
}

void sn_rng_seed(sn_rng *r, uint64_t seed) {
    r->s = seed ^ 0x5DEECE66DULL;
    r->has_spare = 0;
}

uint64_t sn_rng_next(sn_rng *r) {
    r->s += 0x9E3779B97F4A7C15ULL;
    return mix64(r->s);
}

double sn_rng_uniform(sn_rng *r) { return (double)(sn_rng_next(r) >> 11) / 9007199254740992.0; }

double sn_rng_normal(sn_rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1 = sn_rng_uniform(r), u2 = sn_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    double rad = sqrt(-2.0 * log(u1)), ang = 6.283185307179586 * u2;
    r->spare = rad * sin(ang);
    r->has_spare = 1;
    return rad * cos(ang);
}

double sn_rng_truncnormal(sn_rng *r, double stddev) {
    for (;;) {
        double v = sn_rng_normal(r);
        if (v > -2.0 && v < 2.0) return v * stddev;
    }
}

/* OpenMP's default wait policy spins for about a millisecond at every barrier. When another
 * process holds one of the cores (this project's machines are shared), the spinning thread
 * burns the time slice its partner needs, and a 2-thread training step ran 10x slower than with
 * 1 thread (measured: 20 steps in 53 s instead of 5.5 s). A short spin keeps the uncontended
 * speed and removes the collapse. libgomp reads its settings when it is loaded, before main, so
 * the program re-executes itself once with GOMP_SPINCOUNT set, unless the user chose a policy. */
void sn_tame_openmp_spinning(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", "10000", 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* Not re-executed (no /proc): carry on with the default policy. */
}

/* ---- Files -------------------------------------------------------------------------------- */

sn_status sn_read_file(const char *path, char **data, size_t *size) {
    *data = NULL;
    if (size) *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sn_error(SN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    char *buf = NULL;
    sn_status st = SN_OK;
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0)
        st = sn_error(SN_ERR_IO, "%s: cannot determine the size", path);
    else if ((buf = sn_alloc((size_t)n + 1)) == NULL)
        st = SN_ERR_OOM;
    else if (fread(buf, 1, (size_t)n, f) != (size_t)n || ferror(f))
        st = sn_error(SN_ERR_IO, "%s: read error", path);
    fclose(f);
    if (st != SN_OK) {
        sn_free(buf);
        return st;
    }
    buf[n] = 0;
    *data = buf;
    if (size) *size = (size_t)n;
    return SN_OK;
}

/* ---- Directories -------------------------------------------------------------------------- */

static sn_status make_dir(const char *path) {
    if (mkdir(path, 0777) == 0) return SN_OK;
    int e = errno;
    struct stat sb;
    if (e == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return SN_OK;
    return sn_error(SN_ERR_IO, "%s: cannot create the directory: %s", path,
                    e == EEXIST ? "a file of that name exists" : strerror(e));
}

sn_status sn_make_dirs(const char *path) {
    char buf[4096];
    size_t n = path ? strlen(path) : 0;
    if (n == 0 || n >= sizeof buf)
        return sn_error(SN_ERR_INVALID_ARG, "bad directory name '%s'", path ? path : "(null)");
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i < n; i++)
        if (buf[i] == '/' && buf[i - 1] != '/') {
            buf[i] = 0;
            sn_status st = make_dir(buf);
            buf[i] = '/';
            if (st != SN_OK) return st;
        }
    return make_dir(buf);
}

/* ---------------------------------------------------------------- saving files whole */

static char *str_copy(const char *a, size_t na, const char *b) {
    size_t nb = b ? strlen(b) : 0;
    char *s = sn_alloc(na + nb + 1);
    if (!s) return NULL;
    memcpy(s, a, na);
    if (nb) memcpy(s + na, b, nb);
    s[na + nb] = 0;
    return s;
}

/* path with its symbolic links followed one by one (a relative link is relative to the folder
 * of the link), down to a name that is not a link, which may not exist yet: realpath() would
 * refuse a link to a file still to be written. NULL on error (set). */
static char *follow_links(const char *path, sn_status *st) {
    char *p = str_copy(path, strlen(path), NULL);
    for (int hops = 0; p; hops++) {
        struct stat sb;
        if (lstat(p, &sb) != 0 || !S_ISLNK(sb.st_mode)) return p;
        char link[4096];
        ssize_t n = hops < 40 ? readlink(p, link, sizeof link - 1) : -1;
        if (n < 0) {
            *st = sn_error(SN_ERR_IO, "%s: cannot follow the symbolic link %s: %s", path, p,
                           hops < 40 ? strerror(errno) : strerror(ELOOP));
            sn_free(p);
            return NULL;
        }
        link[n] = 0;
        const char *slash = strrchr(p, '/');
        char *next = link[0] == '/' || !slash ? str_copy(link, (size_t)n, NULL)
                                              : str_copy(p, (size_t)(slash - p + 1), link);
        sn_free(p);
        p = next;
    }
    *st = sn_error(SN_ERR_OOM, "%s: out of memory", path);
    return NULL;
}

static void save_free(sn_save_file *s) {
    sn_free(s->target);
    sn_free(s->tmp);
    s->target = s->tmp = NULL;
    s->f = NULL;
}

sn_status sn_save_open(const char *path, sn_save_file *s) {
    memset(s, 0, sizeof *s);
    if (!path || !*path) return sn_error(SN_ERR_INVALID_ARG, "sn_save_open: no path");
    s->name = path;
    sn_status st = SN_OK;
    if (!(s->target = follow_links(path, &st))) return st;
    struct stat sb;
    const int exists = stat(s->target, &sb) == 0;
    if (exists && S_ISDIR(sb.st_mode)) {
        save_free(s);
        return sn_error(SN_ERR_IO, "%s: is a folder", path);
    }
    if (exists && !S_ISREG(sb.st_mode)) {
        /* A device or a FIFO is where the bytes are meant to go; renaming over it would
         * replace it (as root, /dev/null itself). */
        s->f = fopen(s->target, "wb");
        if (!s->f) {
            st = sn_error(SN_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
            save_free(s);
            return st;
        }
        return SN_OK;
    }
    char pid[32];
    snprintf(pid, sizeof pid, ".tmp.%ld", (long)getpid());
    if (!(s->tmp = str_copy(s->target, strlen(s->target), pid))) {
        save_free(s);
        return sn_error(SN_ERR_OOM, "%s: out of memory", path);
    }
    int fd = open(s->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST) { /* a stale temporary file of an earlier process */
        unlink(s->tmp);
        fd = open(s->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    }
    if (fd >= 0 && exists) (void)fchmod(fd, sb.st_mode & 07777);
    if (fd < 0 || !(s->f = fdopen(fd, "wb"))) {
        st = sn_error(SN_ERR_IO, "%s: cannot create the temporary file %s: %s", path, s->tmp,
                      strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(s->tmp);
        }
        save_free(s);
        return st;
    }
    return SN_OK;
}

sn_status sn_save_close(sn_save_file *s, sn_status st) {
    if (!s->f) {
        save_free(s);
        return st == SN_OK ? sn_error(SN_ERR_INVALID_ARG, "sn_save_close: not open") : st;
    }
    const char *what = s->tmp ? s->tmp : s->target;
    if (st == SN_OK && fflush(s->f) != 0)
        st = sn_error(SN_ERR_IO, "%s: cannot write %s: %s", s->name, what, strerror(errno));
    if (st == SN_OK && s->tmp && fsync(fileno(s->f)) != 0)
        st = sn_error(SN_ERR_IO, "%s: cannot sync %s: %s", s->name, what, strerror(errno));
    if (fclose(s->f) != 0 && st == SN_OK)
        st = sn_error(SN_ERR_IO, "%s: cannot close %s: %s", s->name, what, strerror(errno));
    s->f = NULL;
    if (s->tmp && st == SN_OK && rename(s->tmp, s->target) != 0)
        st = sn_error(SN_ERR_IO, "%s: cannot rename %s over it: %s", s->name, s->tmp,
                      strerror(errno));
    if (s->tmp && st != SN_OK) unlink(s->tmp);
    if (s->tmp && st == SN_OK) {
        /* Make the rename durable. Best effort: if this fails the rename may not survive a
         * crash, but either the old or the new complete file is then there. */
        char *slash = strrchr(s->target, '/');
        if (slash) slash[slash == s->target ? 1 : 0] = 0;
        int dfd = open(slash ? s->target : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    save_free(s);
    return st;
}

sn_status sn_save_buffer(const char *path, const void *data, size_t size) {
    sn_save_file s;
    sn_status st = sn_save_open(path, &s);
    if (st != SN_OK) return st;
    if (size && fwrite(data, 1, size, s.f) != size)
        st = sn_error(SN_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    return sn_save_close(&s, st);
}
