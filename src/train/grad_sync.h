/* grad_sync.h: summing the parameter gradients of a data-parallel step over the processes of
 * the job (dist.h) in buckets, each started (non-blocking all-reduce) as soon as the backward
 * has finished all of its parameters (sn_graph.grads_ready), so that communication overlaps
 * the rest of the backward. */
#ifndef SN_GRAD_SYNC_H
#define SN_GRAD_SYNC_H

#include <stddef.h>

#include "model.h"

typedef struct sn_grad_sync sn_grad_sync;

/* A bucket size that works: on one machine with Open MPI 4.1 (2 ranks, shared memory), 1 MiB
 * buckets summed the 45 MB of SpineNet-49S RetinaNet's gradients in about 50 ms where one
 * 45 MB all-reduce took 300-500 ms, and the backward hid 84-97% of it (medians of runs on a
 * busy machine; tests/mpi_dist.c --bench). */
#define SN_GRAD_SYNC_BUCKET_BYTES ((size_t)1 << 20)

typedef struct {
    double comm_s;   /* seconds from the first bucket's start to the last one's completion */
    double wait_s;   /* seconds spent waiting after the backward ended (the part not hidden) */
    double bytes;    /* bytes summed per step */
    int buckets;
} sn_grad_sync_stats;

/* For the parameters of m (grads[i]: the gradient buffer of parameter i, count floats; NULL
 * entries are skipped), buckets of about bucket_bytes in the order the backward completes them.
 * Installs the grads_ready hook on m's training graph (call after the last sn_model_plan_train:
 * a new plan drops the hook). With one process it installs nothing and the end only scales; with
 * a plan split into replicas (parts > 1) it installs nothing either and every bucket is summed
 * at the end. */
sn_status sn_grad_sync_create(sn_model *m, float *const *grads, size_t bucket_bytes,
                              sn_grad_sync **out);
/* Before the step's backward: forget the last step's buckets. */
void sn_grad_sync_begin(sn_grad_sync *s);
/* After the backward: start what is left, wait for all, and scale by `scale` (1/ranks for a
 * mean). The buffers then hold the sums over every rank. */
sn_status sn_grad_sync_end(sn_grad_sync *s, float scale, sn_grad_sync_stats *stats);
void sn_grad_sync_free(sn_grad_sync *s);

#endif
