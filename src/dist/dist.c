/* dist.c: the processes of one training job (dist.h). With SN_HAVE_MPI and a launch by mpirun,
 * MPI on MPI_COMM_WORLD (errors returned, not fatal); otherwise one process of rank 0 whose
 * collectives leave their buffers as they are. Only the calling (main) thread uses MPI. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "dist.h"

#ifdef SN_HAVE_MPI
#include <mpi.h>
#endif

/* The non-blocking sum: one MPI request per chunk of at most INT_MAX elements. */
struct sn_dist_req {
#ifdef SN_HAVE_MPI
    MPI_Request *r;
#endif
    int n;
};

int sn_dist_compiled(void) {
#ifdef SN_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

#ifdef SN_HAVE_MPI

static int g_started; /* MPI_Init_thread done by us */
static int g_rank, g_size = 1;

/* Whether a launcher (mpirun / a PMI-based one) started this process. */
static int launched(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE",
                                       "PMI_RANK", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

static sn_status mpi_fail(int rc, const char *op) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    return sn_error(SN_ERR_IO, "%s on rank %d of %d: %s", op, g_rank, g_size, msg);
}

sn_status sn_dist_init(int *argc, char ***argv) {
    if (g_started) return SN_OK;
    int already = 0;
    MPI_Initialized(&already);
    if (already || !launched()) return SN_OK;
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return sn_error(SN_ERR_IO, "MPI_Init_thread failed (code %d)", rc);
    g_started = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (provided < MPI_THREAD_FUNNELED) {
        sn_status st = sn_error(SN_ERR_UNSUPPORTED, "MPI_Init_thread on rank %d: the library "
                                "gives thread level %d, below MPI_THREAD_FUNNELED", g_rank,
                                provided);
        sn_dist_finalize();
        return st;
    }
    return SN_OK;
}

void sn_dist_finalize(void) {
    if (!g_started) return;
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
    g_started = 0;
    g_rank = 0;
    g_size = 1;
}

void sn_dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    if (g_started) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

int sn_dist_rank(void) { return g_rank; }
int sn_dist_size(void) { return g_size; }

/* In-place all-reduce in chunks of at most INT_MAX elements. */
static sn_status allreduce(void *buf, size_t n, MPI_Datatype type, size_t elem, MPI_Op op,
                           const char *name) {
    if (g_size <= 1 || n == 0) return SN_OK;
    char *p = buf;
    while (n > 0) {
        const int k = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        int rc = MPI_Allreduce(MPI_IN_PLACE, p, k, type, op, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, name);
        p += (size_t)k * elem;
        n -= (size_t)k;
    }
    return SN_OK;
}

sn_status sn_dist_sum_f32(float *buf, size_t n) {
    return allreduce(buf, n, MPI_FLOAT, sizeof(float), MPI_SUM, "MPI_Allreduce (sum of floats)");
}

sn_status sn_dist_sum_f64(double *buf, size_t n) {
    return allreduce(buf, n, MPI_DOUBLE, sizeof(double), MPI_SUM,
                     "MPI_Allreduce (sum of doubles)");
}

sn_status sn_dist_max_i32(int32_t *buf, size_t n) {
    return allreduce(buf, n, MPI_INT32_T, sizeof(int32_t), MPI_MAX,
                     "MPI_Allreduce (max of int32)");
}

sn_status sn_dist_bcast(void *buf, size_t bytes, int root) {
    if (root < 0 || root >= g_size)
        return sn_error(SN_ERR_INVALID_ARG, "broadcast from rank %d: the job has %d process%s",
                        root, g_size, g_size == 1 ? "" : "es");
    if (g_size <= 1) return SN_OK;
    char *p = buf;
    while (bytes > 0) {
        const int k = bytes > (size_t)INT_MAX ? INT_MAX : (int)bytes;
        int rc = MPI_Bcast(p, k, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Bcast");
        p += k;
        bytes -= (size_t)k;
    }
    return SN_OK;
}

sn_status sn_dist_barrier(void) {
    if (g_size <= 1) return SN_OK;
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? SN_OK : mpi_fail(rc, "MPI_Barrier");
}

sn_status sn_dist_isum_f32(float *buf, size_t n, sn_dist_req **req) {
    if (!req) return sn_error(SN_ERR_INVALID_ARG, "sn_dist_isum_f32: NULL request");
    *req = NULL;
    sn_dist_req *q = sn_calloc(1, sizeof *q);
    const int chunks = g_size <= 1 ? 0 : (int)((n + (size_t)INT_MAX - 1) / (size_t)INT_MAX);
    if (!q || (chunks && !(q->r = sn_calloc((size_t)chunks, sizeof *q->r)))) {
        sn_free(q);
        return SN_ERR_OOM;
    }
    for (int c = 0; c < chunks; c++) {
        const size_t first = (size_t)c * (size_t)INT_MAX;
        const int k = n - first > (size_t)INT_MAX ? INT_MAX : (int)(n - first);
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf + first, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                                &q->r[c]);
        if (rc != MPI_SUCCESS) {
            /* The chunks already started must still finish (every rank started them). */
            MPI_Waitall(c, q->r, MPI_STATUSES_IGNORE);
            sn_free(q->r);
            sn_free(q);
            return mpi_fail(rc, "MPI_Iallreduce (sum of floats)");
        }
        q->n = c + 1;
    }
    *req = q;
    return SN_OK;
}

static void req_free(sn_dist_req **req) {
    sn_free((*req)->r);
    sn_free(*req);
    *req = NULL;
}

int sn_dist_test(sn_dist_req **req, sn_status *st) {
    if (st) *st = SN_OK;
    if (!req || !*req) return 1;
    int done = 1;
    int rc = (*req)->n ? MPI_Testall((*req)->n, (*req)->r, &done, MPI_STATUSES_IGNORE)
                       : MPI_SUCCESS;
    if (rc != MPI_SUCCESS) {
        sn_status s = mpi_fail(rc, "MPI_Test (sum of floats)");
        if (st) *st = s;
        req_free(req);
        return 1;
    }
    if (done) req_free(req);
    return done;
}

sn_status sn_dist_wait(sn_dist_req **req) {
    if (!req || !*req) return SN_OK;
    int rc = (*req)->n ? MPI_Waitall((*req)->n, (*req)->r, MPI_STATUSES_IGNORE) : MPI_SUCCESS;
    req_free(req);
    return rc == MPI_SUCCESS ? SN_OK : mpi_fail(rc, "MPI_Wait (sum of floats)");
}

const char *sn_dist_library(void) {
    static char line[MPI_MAX_LIBRARY_VERSION_STRING];
    if (!line[0]) {
        int len = 0;
        if (MPI_Get_library_version(line, &len) != MPI_SUCCESS) return "MPI (version unknown)";
        line[strcspn(line, "\r\n")] = 0;
        /* Open MPI ends its first line with ", ident: ..., repo rev: ..., date": keep it. */
    }
    return line;
}

#else /* one process */

sn_status sn_dist_init(int *argc, char ***argv) { return SN_OK; }
void sn_dist_finalize(void) {}

void sn_dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    exit(code);
}

int sn_dist_rank(void) { return 0; }
int sn_dist_size(void) { return 1; }
sn_status sn_dist_sum_f32(float *buf, size_t n) { return SN_OK; }
sn_status sn_dist_sum_f64(double *buf, size_t n) { return SN_OK; }
sn_status sn_dist_max_i32(int32_t *buf, size_t n) { return SN_OK; }

sn_status sn_dist_bcast(void *buf, size_t bytes, int root) {
    if (root != 0)
        return sn_error(SN_ERR_INVALID_ARG, "broadcast from rank %d: the job has 1 process",
                        root);
    return SN_OK;
}

sn_status sn_dist_barrier(void) { return SN_OK; }

sn_status sn_dist_isum_f32(float *buf, size_t n, sn_dist_req **req) {
    if (!req) return sn_error(SN_ERR_INVALID_ARG, "sn_dist_isum_f32: NULL request");
    if (!(*req = sn_calloc(1, sizeof **req))) return SN_ERR_OOM;
    return SN_OK;
}

int sn_dist_test(sn_dist_req **req, sn_status *st) {
    if (st) *st = SN_OK;
    if (req && *req) {
        sn_free(*req);
        *req = NULL;
    }
    return 1;
}

sn_status sn_dist_wait(sn_dist_req **req) {
    if (req && *req) {
        sn_free(*req);
        *req = NULL;
    }
    return SN_OK;
}

const char *sn_dist_library(void) { return "none (built without MPI)"; }

#endif
