/* dist.h: the processes of one training job (data parallelism over MPI).
 *
 * Built with MPI (CMake finds OpenMPI: SN_HAVE_MPI) the job is the processes that mpirun
 * started; built without it, or run without mpirun, it is one process of rank 0 and every
 * collective is the identity. Collectives are blocking, in the same order on every rank.
 * Errors name the operation and the rank (sn_last_error).
 */
#ifndef SN_DIST_H
#define SN_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "spinenet.h"

/* Whether MPI support was compiled in. */
int sn_dist_compiled(void);
/* The MPI library's version (the first line of MPI_Get_library_version, e.g. "Open MPI v4.1.4,
 * ..."), or "none (built without MPI)"; a static string, callable before sn_dist_init. */
const char *sn_dist_library(void);
/* Start: MPI_Init_thread when compiled with MPI and started by mpirun (the environment says
 * so: OMPI_COMM_WORLD_SIZE, PMI_SIZE, ...), else nothing. Idempotent. */
sn_status sn_dist_init(int *argc, char ***argv);
/* End (MPI_Finalize when it was started); safe to call more than once or without init. */
void sn_dist_finalize(void);
/* Stop every process of the job now with exit status `code` (MPI_Abort; exit() when alone). */
void sn_dist_abort(int code);
int sn_dist_rank(void); /* 0 when alone */
int sn_dist_size(void); /* 1 when alone */

/* In-place sums over every rank (all-reduce). */
sn_status sn_dist_sum_f32(float *buf, size_t n);
sn_status sn_dist_sum_f64(double *buf, size_t n);
/* In-place maximum of ints over every rank (agreement on a flag: error, NaN, stop). */
sn_status sn_dist_max_i32(int32_t *buf, size_t n);
/* Rank root's bytes to every rank. */
sn_status sn_dist_bcast(void *buf, size_t bytes, int root);
sn_status sn_dist_barrier(void);

/* Non-blocking sum of floats (the gradient buckets): start, then test or wait. */
typedef struct sn_dist_req sn_dist_req;
sn_status sn_dist_isum_f32(float *buf, size_t n, sn_dist_req **req);
/* 1 when done (req freed and set to NULL), 0 when still running; drives MPI's progress. */
int sn_dist_test(sn_dist_req **req, sn_status *st);
sn_status sn_dist_wait(sn_dist_req **req);

#endif
