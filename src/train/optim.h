/* optim.h: learning-rate schedules and the SGD-with-momentum optimizer used for training
 * (internal API; the recipes it serves are the official SpineNet ones, tensorflow/models
 * official/vision/configs/retinanet.py and image_classification.py).
 *
 * Learning rate (sn_lr_at), all in double precision:
 *   warmup   for 0 <= step < warmup_steps:
 *              lr = warmup_init_lr + (target - warmup_init_lr) * step / warmup_steps,
 *            where target is the schedule's own value at step == warmup_steps (Model Garden
 *            LinearWarmup); from warmup_steps on, the schedule alone. warmup_steps = 0: none.
 *   constant base_lr.
 *   step     piecewise constant: base_lr before boundaries[0]; values[i] (ABSOLUTE learning
 *            rates, not multipliers) once step >= boundaries[i]. This is the TF1 TPU form
 *            (learning_rate_levels / learning_rate_steps); Keras' PiecewiseConstantDecay used by
 *            the Garden switches one step later (step > boundary), a difference of one update
 *            out of thousands. Garden recipe for SpineNet COCO: base 0.32, boundaries
 *            {219450, 226380}, values {0.032, 0.0032}, warmup 2000 steps from 0.0067.
 *   cosine   lr = final_lr + 0.5 * (base_lr - final_lr) * (1 + cos(pi * t / T)), t clamped to
 *            [0, T] (final_lr after the end). Default (cosine_from_zero = 0): the decay starts
 *            after warmup, t = step - warmup_steps, T = total_steps - warmup_steps (the TF1 TPU
 *            classification code that produced the SpineNet ImageNet numbers). With
 *            cosine_from_zero = 1: t = step, T = total_steps (Garden CosineDecay with offset 0
 *            and decay_steps = total_steps; warmup then ramps to the cosine's value at
 *            warmup_steps). final_lr = alpha * base_lr in Keras terms.
 *
 * Optimizer (sn_optim_step), per trainable tensor, elementwise in float32:
 *   1. g' = g + weight_decay * w   only for tensors whose name ends in ".weight" (conv, depthwise
 *      and dense kernels). weight_decay is the official l2_weight_decay (4e-5 for SpineNet COCO):
 *      the Garden adds the loss l2_weight_decay/2 * ||w||^2, whose gradient is l2_weight_decay*w.
 *      Biases and BN gamma/beta get no decay. Tensors ending in ".mean" or ".var" (BN moving
 *      statistics) are not trainable: never read, never changed, no state.
 *   2. global norm N = sqrt(sum over all trainable g'^2), accumulated in double. It is taken
 *      AFTER adding weight decay, because both the Garden and the TF1 code differentiate the
 *      total loss (task loss + L2 loss) and clip those gradients (tf.clip_by_global_norm /
 *      Keras global_clipnorm) before the optimizer sees them. If clip_norm > 0 and N > clip_norm,
 *      every g' is multiplied by clip_norm / N (TF: g * clip / max(N, clip)).
 *   3. momentum, SN_MOMENTUM_KERAS (default; Garden's Keras SGD):  v = m*v - lr*g';  w += v.
 *      SN_MOMENTUM_ACCUM (TF1 MomentumOptimizer, also PyTorch SGD with dampening 0):
 *      a = m*a + g';  w -= lr*a. The two agree while lr is constant and differ when it changes
 *      (Keras' v already carries the old lr; the accumulator is scaled by the new one), so a
 *      checkpoint's momentum buffers are only meaningful in the form that wrote them.
 *   The step counter counts successful updates; a step with a non-finite N changes nothing and
 *   returns SN_ERR_INVALID_ARG (a NaN/Inf gradient would otherwise poison every weight).
 *   The loops are serial so the result does not depend on the thread count.
 *
 * Checkpoints: sn_optim_state_tensors lists the momentum buffers as named float tensors
 * "opt.momentum.<param name>" (same count as the parameter); a reader fills them in place and
 * restores the counter with sn_optim_set_step.
 */
#ifndef SN_OPTIM_H
#define SN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "spinenet.h"

#define SN_LR_MAX_BOUNDARIES 16

typedef enum { SN_LR_CONSTANT = 0, SN_LR_STEP = 1, SN_LR_COSINE = 2 } sn_lr_kind;

typedef struct {
    sn_lr_kind kind;
    double base_lr;
    int64_t warmup_steps;   /* 0: no warmup */
    double warmup_init_lr;  /* lr at step 0 of the warmup */
    /* step */
    int n_boundaries;       /* 0 .. SN_LR_MAX_BOUNDARIES, boundaries strictly increasing */
    int64_t boundaries[SN_LR_MAX_BOUNDARIES];
    double values[SN_LR_MAX_BOUNDARIES]; /* absolute lr from boundaries[i] on */
    /* cosine */
    int64_t total_steps;    /* step at which the cosine reaches final_lr */
    double final_lr;
    int cosine_from_zero;   /* 0: decay over [warmup_steps, total_steps]; 1: over [0, total_steps] */
} sn_lr_schedule;

/* Zeroed schedule of the given kind with base_lr (no warmup). */
void sn_lr_schedule_init(sn_lr_schedule *s, sn_lr_kind kind, double base_lr);
/* Checks the fields (negative steps, unordered boundaries, cosine total <= start, ...). */
sn_status sn_lr_schedule_check(const sn_lr_schedule *s);
/* The learning rate for the update made at `step` (0-based; steps < 0 are treated as 0).
 * Call sn_lr_schedule_check first: on a bad schedule this returns a best-effort value. */
double sn_lr_at(const sn_lr_schedule *s, int64_t step);

typedef enum { SN_MOMENTUM_KERAS = 0, SN_MOMENTUM_ACCUM = 1 } sn_momentum_form;

typedef struct {
    double momentum;      /* 0.9 in every SpineNet recipe; 0 = plain SGD */
    double weight_decay;  /* l2_weight_decay (gradient term wd * w on ".weight" tensors) */
    double clip_norm;     /* <= 0: no clipping; 10 in the TPU recipes and Garden 143 */
    sn_momentum_form form;
} sn_sgd_config;

/* 0.9 momentum, no decay, no clipping, Keras form. */
void sn_sgd_config_default(sn_sgd_config *c);

/* One parameter: weights and their gradient of the task loss (without weight decay). */
typedef struct {
    const char *name;
    float *w;
    const float *g; /* may be NULL for a non-trainable (.mean/.var) tensor */
    size_t count;
} sn_opt_param;

/* A named float tensor of optimizer state, owned by the optimizer. */
typedef struct {
    const char *name; /* "opt.momentum.<param name>" */
    float *data;
    size_t count;
} sn_opt_tensor;

typedef struct sn_optim sn_optim;

/* Create for this parameter list (names and counts are copied and must match at every step,
 * in the same order). Momentum buffers start at zero, the step at 0. */
sn_status sn_optim_create(const sn_sgd_config *cfg, const sn_opt_param *params, int n,
                          sn_optim **out);
void sn_optim_free(sn_optim *o);
const sn_sgd_config *sn_optim_config(const sn_optim *o);

/* Whether the optimizer updates a tensor of this name (all but "*.mean", "*.var"). */
int sn_optim_is_trainable(const char *name);
/* Whether weight decay applies to a tensor of this name ("*.weight"). */
int sn_optim_has_decay(const char *name);

/* The global norm of the gradients the optimizer would clip (weight decay included). */
sn_status sn_optim_grad_norm(const sn_optim *o, const sn_opt_param *params, int n,
                             double *norm);
/* One update with learning rate lr; *norm_out (may be NULL) gets the norm before clipping. */
sn_status sn_optim_step(sn_optim *o, const sn_opt_param *params, int n, double lr,
                        double *norm_out);

int64_t sn_optim_get_step(const sn_optim *o);
sn_status sn_optim_set_step(sn_optim *o, int64_t step);
/* The state tensors (array owned by the optimizer, valid until free); data is writable. */
sn_status sn_optim_state_tensors(sn_optim *o, const sn_opt_tensor **tensors, int *n);
/* The state tensor of this name, or NULL (and an SN_ERR_NOT_FOUND message). */
sn_opt_tensor *sn_optim_state_find(sn_optim *o, const char *name);

#endif
