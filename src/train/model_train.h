/* model_train.h: training a model (internal API): its training plan, split into data-parallel
 * parts run side by side (replicas.c), and the classification loss (cls_train.c); the detection
 * loss, run over the same parts, is det_train.h. */
#ifndef SN_MODEL_TRAIN_H
#define SN_MODEL_TRAIN_H

#include <stdint.h>

#include "model.h"
#include "spinenet.h"

#define SN_MAX_REPLICAS 16

/* Split each training batch into r parts run side by side, one thread each (1: off, the
 * default). Takes effect at the next sn_model_plan_train, whose batch r must divide. */
sn_status sn_model_set_train_replicas(sn_model *m, int r);
/* Synchronized batch-norm across the parts of a split batch (off by default): every part
 * normalises with the statistics of the whole batch, its parts' per-channel sums added in part
 * order (sn_graph.bn_reduce), as processes do under MPI (--sync-bn), so that one process with
 * replicas r computes what r processes of one thread compute, bit for bit for r = 2 (two
 * doubles add the same in either order). The parts must then run at once, one thread each.
 * Takes effect at the next sn_model_plan_train. */
sn_status sn_model_set_train_sync_bn(sn_model *m, int on);
/* Plan the graph for training (every tensor the backward reads is kept) at batch / replicas per
 * part, and the other parts' graphs. The model needs a head. */
sn_status sn_model_plan_train(sn_model *m, int batch, int height, int width);
/* The batch of the training plan (all parts), 0 when not planned for training. */
int sn_model_train_batch(const sn_model *m);
/* The number of parts of the current training plan (1 when not split). */
int sn_model_train_parts(const sn_model *m);
/* The graph of part r (0: m->graph). */
sn_graph *sn_model_part_graph(sn_model *m, int r);
/* Run fn(m, r, grads_r, user) for every part r at once, one thread per part, and return the
 * first failing part's status with its message. grads (may be NULL): the caller's gradient
 * buffers; grads_r are the buffers part r accumulates into (grads itself for part 0, zeroed
 * model-owned ones for the others), and after every part succeeded the others are added into
 * grads, in part order. */
typedef sn_status (*sn_part_fn)(sn_model *m, int r, float *const *grads, void *user);
sn_status sn_model_run_parts(sn_model *m, float *const *grads, sn_part_fn fn, void *user);
/* The seed of part r's stochastic-depth masks (part 0 keeps the step's seed). */
uint64_t sn_part_seed(uint64_t seed, int r);
/* Sample i's logits (classifier head) from the last training forward, whichever part ran it. */
const float *sn_model_train_logits(sn_model *m, int i);

/* The classification loss (classifier head): one forward with batch statistics, softmax
 * cross-entropy with label smoothing on the logits, and the backward, accumulating dL/dparam
 * into grads[i] (one buffer per parameter; NULL entries skip). *loss gets the mean loss
 * (grads == NULL: no backward); BN moving statistics are updated; `seed` draws stochastic
 * depth. */
sn_status sn_model_loss_grad(sn_model *m, const float *input, const int32_t *labels,
                             float smoothing, uint64_t seed, double *loss, float *const *grads);

/* Data parallelism over processes (the trainer under MPI, dist.h): what a loss agrees on with
 * the other processes of the job during a step. The model must not be split into parts. */
typedef struct {
    /* Called once per step after this process's loss is known and before its backward, by
     * every process at the same point: finite says whether the local loss is finite. A non-OK
     * return (the same on every process: it agrees) skips the backward and becomes the loss
     * function's status. NULL: not called. */
    sn_status (*before_backward)(void *ctx, int finite);
    void *ctx;
    /* Detection: the positive anchors of the job's whole batch (every process's), whose + 1
     * normalises the loss so that the processes' losses and gradients add up to one process's
     * over that batch; < 0: this process's own. */
    int64_t global_positives;
} sn_loss_sync;

/* sn_model_loss_grad with the agreement hook (sync may be NULL). */
sn_status sn_model_loss_grad_sync(sn_model *m, const float *input, const int32_t *labels,
                                  float smoothing, uint64_t seed, const sn_loss_sync *sync,
                                  double *loss, float *const *grads);

#endif
