/* trainer.h: the training loop behind `spinenet train` / `spinenet eval` (internal API), for
 * classification and for RetinaNet detection on COCO-format data: datasets and loader, SGD
 * steps, periodic evaluation (top-1, or COCO AP for detection), atomic checkpoints and bit-exact
 * resume.
 *
 * Determinism: with a fixed seed and thread count, every quantity a step depends on is a
 * function of (seed, step) or is stored in the checkpoint (weights incl. BN moving statistics,
 * momentum buffers, optimizer counter, loader cursor, best top-1). The stochastic-depth seed of
 * step s is sn_train_step_seed(seed, s) and the loader's order/augmentation are functions of
 * (seed, epoch, index), so there is no RNG stream to save: a run stopped after k steps and
 * resumed ends bit-identical to one that never stopped.
 *
 * Checkpoint files in out_dir (checkpoint.c, written with sn_st_write: temp, fsync, rename):
 *   last.safetensors  every checkpoint_every steps, when stopped, and at the end. Tensors: every
 *                     model parameter under its sn_model_save name, then "opt.momentum.<name>"
 *                     for each optimizer state tensor. Metadata: everything sn_model_save writes
 *                     plus the "train.*" keys below.
 *   best.safetensors  whenever the evaluation metric (top-1; COCO AP for a detector)
 *                     improves: exactly sn_model_save's tensors and metadata (so
 *                     sn_model_load reads it) plus the "train.*" keys.
 *   train.* metadata: train.format_version, train.step, train.best_top1 (the best evaluation
 *                     metric, AP for a detector: the key keeps its first name so that older
 *                     checkpoints resume), train.best_step,
 *                     train.seed, train.loader_seed, train.loader_epoch, train.loader_position,
 *                     train.optim_step, train.momentum_form, train.rng (how step seeds derive).
 * Nothing is written for a step whose loss or weights are not finite: the last good file stays.
 */
#ifndef SN_TRAINER_H
#define SN_TRAINER_H

#include <stdint.h>

#include "data.h"
#include "det_data.h"
#include "optim.h"
#include "spinenet.h"

typedef enum { SN_TRAIN_DATA_FASHION_MNIST = 0, SN_TRAIN_DATA_FOLDER = 1 } sn_train_data_kind;
typedef enum { SN_TASK_CLASSIFY = 0, SN_TASK_DETECT = 1 } sn_train_task;
typedef enum { SN_LOG_INFO = 0, SN_LOG_WARN = 1 } sn_log_level;

/* What the progress callback sees after each step (and after each evaluation). */
typedef struct {
    int64_t epoch;          /* 0-based epoch of the batch just used */
    int64_t step;           /* steps done so far (1 after the first update) */
    int64_t total_steps;
    int64_t steps_per_epoch;
    double loss;            /* mean loss over the recent batches (window below) */
    double accuracy;        /* training top-1 of the recent batches, from the training forward */
    double lr;              /* learning rate of the last update */
    double images_per_s;    /* training throughput of this run (excludes evaluation) */
    double train_s;         /* training seconds of this process (since it started or resumed;
                             * evaluation and checkpoint writing left out). Not in checkpoints,
                             * which stay the same bytes for the same run: spinenet train adds
                             * the earlier sessions' time from its log. */
    double eta_s;           /* remaining steps at that throughput */
    int evaluated;          /* 1: eval_top1/eval_top5 hold a fresh evaluation at this step */
    double eval_top1, eval_top5; /* detection: COCO AP and AP50 */
    double best_metric;     /* best evaluation so far: top-1, or AP for a detector (-1: none) */
    double loss_cls, loss_box; /* detection: the recent batches' focal and Huber parts */
    int checkpoint;         /* 1: last.safetensors is written at this step, right after this
                             * report: a log kept beside it should reach the disk now, so that
                             * a resume from it finds every row up to its step */
} sn_train_progress;

#define SN_TRAIN_WINDOW 20 /* batches in the "recent" loss/accuracy */

typedef struct {
    sn_config model;            /* architecture; head SN_HEAD_CLASSIFIER (classify) or
                                   SN_HEAD_RETINANET (detect). num_classes 0: take the
                                   dataset's; otherwise it must match it */
    sn_train_task task;
    /* Detection: data_path / eval_path are image folders, these their COCO instances files
     * (eval_ann "" = no evaluation); image_size is the square target S of the eval
     * pre-processing (the model sees the canvas sn_det_canvas_size(S)); det_aug the scale
     * jitter and flip. */
    char ann_path[SN_PATH_MAX];
    char eval_ann_path[SN_PATH_MAX];
    sn_det_aug det_aug;
    sn_train_data_kind data;
    char data_path[SN_PATH_MAX];/* fashion-mnist dir, or the training image folder */
    char eval_path[SN_PATH_MAX];/* folder: the evaluation image folder ("" = no evaluation);
                                   fashion-mnist: ignored (the t10k split is used) */
    int skip_bad;               /* folder: leave out unreadable images (warned via log) */
    int strict;                 /* folder: refuse an empty class folder (else warned via log) */
    /* Instead of paths, datasets owned by the caller (used when non-NULL; must outlive the
     * trainer). eval_set may be NULL (no evaluation). */
    sn_dataset *train_set, *eval_set;
    int image_size;             /* S: the model sees S x S x 3 */
    int batch;
    int64_t epochs;             /* used when steps == 0 */
    int64_t steps;              /* total steps of the run (> 0 overrides epochs) */
    sn_lr_schedule lr;
    sn_sgd_config sgd;
    float label_smoothing;
    float drop_path_rate;       /* copied into model.drop_path_rate */
    sn_aug_params aug;          /* training crop/flip and eval crop */
    int threads;                /* kernels; fix it for reproducible runs */
    /* > 1: data-parallel training steps (sn_model_set_train_replicas): each batch is split into
     * this many equal parts, each run by one thread (`threads` then serves evaluation only).
     * Each part normalises with its own batch-norm statistics, so results depend on it (and
     * parts of 2 images learned much worse in a measured memorisation run); a resumed run
     * should use the same value. Faster for small models, whose ops are too small to split
     * well (Mobile-49XS at 2 threads: 1.16x, docs/performance.md). 0 or 1: off. */
    int replicas;
    /* Data parallelism over the job's processes (dist.h: started by mpirun, sn_dist_size() >
     * 1): batch is the global batch, which the processes' number must divide; each process
     * trains on its slice of every batch (the loader's shard) with `threads` threads, the
     * gradients are summed over the processes (grad_sync.h), and the result is one process's
     * training on the whole batch up to float summation order. sync_bn 1 (the default):
     * batch-norm normalises with the statistics of the whole batch (the processes' sums), as
     * one process does; 0: each process with its own slice's (then, as with replicas, only
     * process 0's moving statistics are kept in the checkpoint). Only process 0 writes
     * checkpoints, evaluates and reports through `progress` (every process calls it, so that
     * a stop asked on any of them stops all at the same step); replicas must be 0 or 1, and
     * skip_bad is refused. */
    int sync_bn;
    /* With replicas > 1 in one process: 1 synchronizes the parts' batch-norm in-process
     * (sn_model_set_train_sync_bn), so that replicas R computes what R processes of one thread
     * compute under mpirun (bit for bit for R = 2); 0 (the default): each part its own. */
    int replicas_sync_bn;
    uint64_t seed;              /* weights init, loader, stochastic depth */
    char out_dir[SN_PATH_MAX];  /* "" = write no checkpoints */
    int64_t checkpoint_every;   /* steps between last.safetensors writes (<= 0: end only) */
    int64_t eval_every;         /* > 0: every N steps; 0: at each epoch end; < 0: never. An
                                   evaluation is also made at the end when enabled */
    int eval_batch;             /* 0: batch */
    int resume;                 /* 1: continue from out_dir/last.safetensors */
    /* Start from the tensors of this safetensors file ("" = seeded initialisation): every
     * tensor whose name and shape match one of the model's is copied (e.g. a classifier's
     * backbone into a detector); the rest keep their initialisation. Unused when resuming. */
    char init_path[SN_PATH_MAX];
    /* Called after each step; a nonzero return stops the run cleanly (last.safetensors is
     * written, sn_trainer_run returns SN_OK). May be NULL. */
    int (*progress)(void *user, const sn_train_progress *p);
    void (*log)(void *user, sn_log_level level, const char *msg);
    void *user;
} sn_train_config;

/* Defaults: fashion-mnist, size 64, batch 32, 1 epoch, constant lr 0.1, SGD 0.9 momentum, wd 4e-5,
 * no clipping, smoothing 0.1, no drop path, eval each epoch, checkpoint every 500 steps, 1 thread,
 * seed 1, train crop area 0.25..1, sync_bn 1. The model config is left for the caller (sn_config_init). */
void sn_train_config_defaults(sn_train_config *cfg);

typedef struct sn_trainer sn_trainer;

/* Opens the datasets, checks that their classes match the model's, creates (or, with resume,
 * restores) the model, optimizer and loader. */
sn_status sn_trainer_create(const sn_train_config *cfg, sn_trainer **out);
/* Trains until total steps (or until the progress callback asks to stop); returns on error
 * with a message naming the step. */
sn_status sn_trainer_run(sn_trainer *t);
void sn_trainer_free(sn_trainer *t);
/* The model being trained (owned by the trainer), its step counter and best evaluation metric
 * (top-1, or COCO AP for a detector; -1 before the first evaluation). */
sn_model *sn_trainer_model(sn_trainer *t);
int64_t sn_trainer_step(const sn_trainer *t);
double sn_trainer_best_metric(const sn_trainer *t);
/* Under several processes, the seconds this one (not rank 0) spent waiting for rank 0's
 * evaluations and checkpoints; 0 otherwise. */
double sn_trainer_wait_s(const sn_trainer *t);
/* The optimizer (for tests and tools that inspect momentum). */
sn_optim *sn_trainer_optim(sn_trainer *t);

/* Inference over the whole dataset in order (eval crop of `aug`, or the whole image when NULL);
 * top1/top5 are fractions in [0, 1] (top-5 is top-min(5, classes)); confusion, when non-NULL,
 * gets counts [true class][predicted class] (classes x classes int64). Leaves the model planned
 * for inference. */
sn_status sn_trainer_evaluate(sn_model *m, sn_dataset *ds, int image_size, int batch, int threads,
                              const sn_aug_params *aug, double *top1, double *top5,
                              int64_t *confusion);

/* The stochastic-depth seed of a step: a mix of (seed, step) with no stored state. */
uint64_t sn_train_step_seed(uint64_t seed, int64_t step);

/* ------------------------------------------------------------ checkpoints (checkpoint.c) */

typedef struct {
    int64_t step;
    double best_metric;  /* top-1, or AP for a detector; -1: no evaluation yet */
    int64_t best_step;
    uint64_t seed;
    sn_loader_state loader;
} sn_train_state;

/* Write a checkpoint atomically. opt == NULL: weights only (the best.safetensors form). */
sn_status sn_checkpoint_write(const char *path, const sn_model *m, sn_optim *opt,
                              const sn_train_state *st);
/* Restore weights (every parameter, same shapes), the optimizer's momentum and counter (opt may
 * be NULL) and the training state from a checkpoint. The file must describe the same
 * architecture as m. */
sn_status sn_checkpoint_read(const char *path, sn_model *m, sn_optim *opt, sn_train_state *st);

#endif
