/* trainer.c: the training loop (datasets, loader, SGD steps, evaluation, checkpoints, resume)
 * for classification and detection, and classifier evaluation. Contract and determinism notes:
 * trainer.h. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core.h"
#include "det_train.h"
#include "dist.h"
#include "grad_sync.h"
#include "model.h"
#include "model_train.h"
#include "safetensors.h"
#include "trainer.h"

struct sn_trainer {
    sn_train_config cfg;
    sn_model *m;
    sn_dataset *train_ds, *eval_ds;
    int own_train, own_eval;
    int32_t *det_keep;  /* detection: the images that passed the check (NULL: all) */
    int init_keep_head;
    int load_skipped;   /* --skip-bad: samples that failed to load during the run */ /* --init: the file's classes are not the data's, head.fc is not copied */
    sn_loader *loader;
    sn_optim *opt;
    int np;
    float **grads;     /* per parameter; NULL for BN moving statistics */
    sn_opt_param *op;
    int64_t step, total_steps, per_epoch;
    double best_metric;
    int64_t best_step;
    char last_path[SN_PATH_MAX + 32], best_path[SN_PATH_MAX + 32];
    /* Detection */
    sn_coco *coco_train, *coco_eval;
    sn_det_source det_src;
    sn_det_head head;
    sn_det_params det_params;
    /* Data parallelism over processes (dist.h) */
    int rank, ranks;   /* this process, and how many train (1: alone) */
    int local_batch;   /* images of each batch this process trains on: batch / ranks */
    sn_grad_sync *gs;  /* ranks > 1: the gradients' sums */
    sn_loss_sync lsync;
    double wait_eval_s; /* ranks > 1: seconds this process waited for process 0's evaluations
                         * and checkpoints */
    int64_t check_every; /* ranks > 1: compare the weights with rank 0's every N steps (the
                          * environment's SN_DIST_CHECK_EVERY; 0: never) */
};

void sn_train_config_defaults(sn_train_config *c) {
    memset(c, 0, sizeof *c);
    c->data = SN_TRAIN_DATA_FASHION_MNIST;
    c->image_size = 64;
    c->batch = 32;
    c->epochs = 1;
    sn_lr_schedule_init(&c->lr, SN_LR_CONSTANT, 0.1);
    sn_sgd_config_default(&c->sgd);
    c->sgd.weight_decay = 4e-5;
    c->label_smoothing = 0.1f;
    sn_aug_defaults(&c->aug);
    /* Small inputs (28 px Fashion-MNIST) lose the object with Inception's 8% crops. */
    c->aug.min_area = 0.25f;
    c->threads = 1;
    c->seed = 1;
    c->checkpoint_every = 500;
    c->eval_every = 0;
    c->sync_bn = 1;
    sn_det_aug_defaults(&c->det_aug);
}

uint64_t sn_train_step_seed(uint64_t seed, int64_t step) {
    /* splitmix64 finaliser over (seed, step): adjacent steps get unrelated seeds. */
    uint64_t z = seed * 0xD1B54A32D192ED03ull + (uint64_t)step * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void tlog(const sn_trainer *t, sn_log_level lv, const char *fmt, ...) SN_PRINTF(3, 4);
static void tlog(const sn_trainer *t, sn_log_level lv, const char *fmt, ...) {
    if (!t->cfg.log) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    t->cfg.log(t->cfg.user, lv, buf);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------- evaluation */

sn_status sn_trainer_evaluate(sn_model *m, sn_dataset *ds, int image_size, int batch, int threads,
                              const sn_aug_params *aug, double *top1, double *top5,
                              int64_t *confusion) {
    if (!m || !ds || image_size <= 0 || batch <= 0)
        return sn_error(SN_ERR_INVALID_ARG, "sn_trainer_evaluate: bad arguments");
    int classes = sn_model_config(m)->num_classes;
    if (ds->num_classes != classes)
        return sn_error(SN_ERR_INVALID_ARG,
                        "the dataset has %d classes but the model has %d: they must match",
                        ds->num_classes, classes);
    sn_loader_config lc;
    sn_loader_config_defaults(&lc);
    lc.batch_size = batch;
    lc.image_size = image_size;
    lc.train = 0;
    lc.seed = 0;
    if (aug) lc.aug = *aug;
    else lc.aug.eval_fraction = 1.0f;
    sn_loader *l = NULL;
    sn_status st = sn_model_set_threads(m, threads);
    if (st == SN_OK) st = sn_loader_create(ds, &lc, &l);
    if (st != SN_OK) return st;
    if (confusion) memset(confusion, 0, sizeof(int64_t) * (size_t)classes * (size_t)classes);
    int k5 = classes < 5 ? classes : 5;
    int64_t seen = 0, hit1 = 0, hit5 = 0;
    int planned_n = 0;
    int64_t nb = sn_loader_batches_per_epoch(l);
    for (int64_t b = 0; b < nb && st == SN_OK; b++) {
        sn_batch bt;
        if ((st = sn_loader_next(l, &bt)) != SN_OK) break;
        /* The last batch may be smaller: plan for the size at hand. */
        if (bt.n != planned_n) {
            if ((st = sn_model_plan(m, bt.n, image_size, image_size)) != SN_OK) break;
            planned_n = bt.n;
        }
        sn_output o;
        if ((st = sn_model_run(m, bt.images)) != SN_OK ||
            (st = sn_model_output(m, "logits", &o)) != SN_OK)
            break;
        for (int i = 0; i < bt.n; i++) {
            const float *z = o.data + (size_t)i * (size_t)o.c;
            int y = bt.labels[i], pred = 0, rank = 0;
            for (int c = 1; c < o.c; c++)
                if (z[c] > z[pred]) pred = c;
            /* Rank of the true class: how many classes score strictly higher (ties favour it,
             * as tf.nn.in_top_k does). */
            for (int c = 0; c < o.c; c++) rank += z[c] > z[y];
            hit1 += pred == y;
            hit5 += rank < k5;
            if (confusion) confusion[(size_t)y * (size_t)classes + (size_t)pred]++;
            seen++;
        }
    }
    sn_loader_free(l);
    if (st != SN_OK) return st;
    if (top1) *top1 = seen ? (double)hit1 / (double)seen : 0.0;
    if (top5) *top5 = seen ? (double)hit5 / (double)seen : 0.0;
    return SN_OK;
}

/* ---------------------------------------------------------------- creation */

static void folder_warn(void *user, const char *path, const char *reason) {
    tlog((const sn_trainer *)user, SN_LOG_WARN, "skipping %s: %s", path, reason);
}

static void folder_empty(void *user, const char *dir) {
    tlog((const sn_trainer *)user, SN_LOG_WARN,
         "%s: empty class folder: counted as a class without a sample (--strict refuses it)", dir);
}

static void probe_progress(void *user, int done, int total) {
    if (done % 10000 == 0 || done == total)
        tlog((const sn_trainer *)user, SN_LOG_INFO, "checking image headers: %d/%d", done, total);
}

static void coco_warnings(const sn_trainer *t, const char *path, const sn_coco *c) {
    for (int k = 0; k < SN_COCO_WARN_KINDS; k++)
        if (c->warn_count[k])
            tlog(t, SN_LOG_WARN, "%s: %" PRId64 " annotations: %s (first: id %" PRId64 ")", path,
                 c->warn_count[k], sn_coco_warning_text(k), c->warn_first_id[k]);
}

/* Detection data: the annotation files (parsed, repaired and counted), their image files
 * checked, and count-only datasets for the loader (sn_det_prepare makes the samples). */
static sn_status open_det_data(sn_trainer *t) {
    const sn_train_config *c = &t->cfg;
    if (!c->data_path[0] || !c->ann_path[0])
        return sn_error(SN_ERR_INVALID_ARG, "detection training needs an image folder and its "
                        "COCO annotation file");
    sn_status st = sn_coco_load(c->ann_path, 0, &t->coco_train);
    if (st != SN_OK) return st;
    coco_warnings(t, c->ann_path, t->coco_train);
    /* Every image's header against the annotations now, not hours into the run. */
    const int n_img = t->coco_train->num_images;
    unsigned char *bad = sn_calloc((size_t)(n_img ? n_img : 1), 1);
    if (!bad) return SN_ERR_OOM;
    int n_bad = 0;
    st = sn_coco_probe_images(t->coco_train, c->data_path, c->skip_bad, bad, &n_bad, folder_warn,
                              n_img >= 2000 ? probe_progress : NULL, t);
    if (st == SN_OK && n_bad == n_img)
        st = sn_error(SN_ERR_NOT_FOUND, "%s: none of the %d images of %s is usable", c->data_path,
                      n_img, c->ann_path);
    if (st == SN_OK && n_bad) {
        tlog(t, SN_LOG_WARN, "%s: %d of %d images left out (--skip-bad)", c->data_path, n_bad,
             n_img);
        if (!(t->det_keep = sn_alloc(sizeof(int32_t) * (size_t)(n_img - n_bad)))) st = SN_ERR_OOM;
        for (int i = 0, k = 0; st == SN_OK && i < n_img; i++)
            if (!bad[i]) t->det_keep[k++] = i;
    }
    sn_free(bad);
    if (st != SN_OK) return st;
    int boxes = 0;
    for (int i = 0; i < t->coco_train->num_images; i++) boxes += t->coco_train->images[i].num_anns;
    tlog(t, SN_LOG_INFO, "%s: %d images, %d boxes, %d categories (%d class columns)", c->ann_path,
         t->coco_train->num_images, boxes, t->coco_train->num_categories,
         t->coco_train->num_classes);
    if (c->eval_ann_path[0] && c->eval_every >= 0) {
        if ((st = sn_coco_load(c->eval_ann_path, 0, &t->coco_eval)) != SN_OK) return st;
        coco_warnings(t, c->eval_ann_path, t->coco_eval);
        const char *dir = c->eval_path[0] ? c->eval_path : c->data_path;
        if ((st = sn_coco_probe_images(t->coco_eval, dir, 0, NULL, NULL, NULL,
                                       t->coco_eval->num_images >= 2000 ? probe_progress : NULL,
                                       t)) != SN_OK)
            return st;
        if (t->coco_eval->num_classes != t->coco_train->num_classes)
            return sn_error(SN_ERR_INVALID_ARG, "%s has %d class columns but %s has %d: the "
                            "categories must be the same", c->eval_ann_path,
                            t->coco_eval->num_classes, c->ann_path, t->coco_train->num_classes);
    }
    if ((st = sn_det_source_init(&t->det_src, t->coco_train, c->data_path, c->image_size,
                                 &c->det_aug)) != SN_OK)
        return st;
    if (t->det_keep) {
        t->det_src.keep = t->det_keep;
        t->det_src.num_keep = n_img - n_bad;
    }
    /* Column names as the model's class names: "background" and unused COCO ids named so. */
    const int k = t->coco_train->num_classes;
    const char **names = sn_calloc((size_t)k, sizeof *names);
    if (!names) return SN_ERR_OOM;
    for (int i = 0; i < k; i++) {
        const char *nm = sn_coco_column_name(t->coco_train, i);
        names[i] = i == 0 ? "background" : nm ? nm : "unused";
    }
    st = sn_dataset_new(k, names, &t->train_ds);
    sn_free(names);
    if (st != SN_OK) return st;
    t->own_train = 1;
    t->train_ds->count = t->det_keep ? n_img - n_bad : n_img;
    return SN_OK;
}

static sn_status open_data(sn_trainer *t) {
    const sn_train_config *c = &t->cfg;
    sn_status st;
    if (c->task == SN_TASK_DETECT) return open_det_data(t);
    if (c->train_set) {
        t->train_ds = c->train_set;
        t->eval_ds = c->eval_set;
        return SN_OK;
    }
    if (!c->data_path[0]) return sn_error(SN_ERR_INVALID_ARG, "no training data given");
    if (c->data == SN_TRAIN_DATA_FASHION_MNIST) {
        if ((st = sn_fashion_mnist_open(c->data_path, 1, &t->train_ds)) != SN_OK) return st;
        t->own_train = 1;
        if (c->eval_every >= 0) {
            if ((st = sn_fashion_mnist_open(c->data_path, 0, &t->eval_ds)) != SN_OK) return st;
            t->own_eval = 1;
        }
        return SN_OK;
    }
    sn_folder_options fo = {0};
    fo.skip_bad = c->skip_bad;
    fo.verify = SN_VERIFY_HEADER;
    fo.warn = folder_warn;
    fo.user = t;
    fo.strict = c->strict;
    fo.empty = folder_empty;
    sn_folder_stats fs;
    if ((st = sn_folder_open(c->data_path, &fo, &t->train_ds, &fs)) != SN_OK) return st;
    t->own_train = 1;
    tlog(t, SN_LOG_INFO, "%s: %d images in %d classes (%d skipped)", c->data_path, fs.kept,
         t->train_ds->num_classes, fs.skipped);
    if (c->eval_path[0] && c->eval_every >= 0) {
        if ((st = sn_folder_open(c->eval_path, &fo, &t->eval_ds, &fs)) != SN_OK) return st;
        t->own_eval = 1;
    }
    return SN_OK;
}

static sn_status check_classes(const sn_trainer *t, const sn_dataset *ds, const char *what) {
    int mc = t->cfg.model.num_classes;
    if (ds->num_classes != mc)
        return sn_error(SN_ERR_INVALID_ARG,
                        "the %s dataset has %d classes but the model is configured for %d: "
                        "they must match", what, ds->num_classes, mc);
    if (ds->count <= 0) return sn_error(SN_ERR_INVALID_ARG, "the %s dataset is empty", what);
    return SN_OK;
}

/* The classes of the weights a classifier run starts from (--init FILE, or last.safetensors
 * with resume) are in that file's output order; the image folder's, sorted by name, need not
 * be. The training data takes the file's order by name (a folder "Ankle_boot" is its class
 * "Ankle boot"), so that the copied head keeps meaning the same classes; when a class of the
 * data is not among the file's, the run trains new classes from the file's backbone and the
 * head is not copied. Then the evaluation folder takes the training classes by name. */
static sn_status match_eval_classes(sn_trainer *t) {
    if (!t->eval_ds || !t->own_eval) return SN_OK;
    return sn_dataset_match_classes(t->eval_ds, (const char *const *)t->train_ds->class_names,
                                    t->train_ds->num_classes,
                                    t->cfg.eval_path[0] ? t->cfg.eval_path : "evaluation data",
                                    "the training data");
}

static sn_status match_start_classes(sn_trainer *t) {
    const sn_train_config *c = &t->cfg;
    const char *path = c->resume ? t->last_path : c->init_path;
    struct stat sb;
    if (!c->resume && !c->init_path[0]) return match_eval_classes(t);
    if (c->resume && stat(path, &sb) != 0) return match_eval_classes(t); /* the checkpoint
                                                                             read says why */
    sn_st_file f;
    sn_status st = sn_st_read(path, &f);
    if (st != SN_OK) return st;
    const char *head = sn_st_meta(&f, "head");
    const char *list = sn_st_meta(&f, "class_names");
    int n = 0;
    char *buf = NULL;
    const char **names = NULL;
    if (head && strcmp(head, "classifier") == 0 && list && list[0]) {
        size_t len = strlen(list);
        n = 1;
        for (size_t i = 0; i < len; i++) n += list[i] == '\n';
        buf = sn_alloc(len + 1);
        names = sn_calloc((size_t)n, sizeof *names);
        if (!buf || !names) st = SN_ERR_OOM;
        else {
            memcpy(buf, list, len + 1);
            char *p = buf;
            for (int i = 0; i < n; i++) {
                names[i] = p;
                p += strcspn(p, "\n");
                if (*p) *p++ = 0;
            }
        }
    }
    sn_st_free(&f);
    const char *unknown = NULL;
    for (int k = 0; st == SN_OK && names && k < t->train_ds->num_classes && !unknown; k++)
        if (sn_class_find(names, n, t->train_ds->class_names[k]) < 0)
            unknown = t->train_ds->class_names[k];
    if (st == SN_OK && names && !unknown && (c->model.num_classes <= 0 || c->model.num_classes == n)) {
        st = sn_dataset_match_classes(t->train_ds, names, n, c->data_path, path);
        if (st == SN_OK) t->cfg.model.num_classes = n;
    } else if (st == SN_OK && names && unknown && !c->resume) {
        t->init_keep_head = 1;
        tlog(t, SN_LOG_WARN, "%s: class '%s' is not one of the %d classes of %s: its classifier "
             "head (head.fc) is not copied, the new classes start from its backbone",
             c->data_path, unknown, n, path);
    }
    sn_free(names);
    sn_free(buf);
    return st == SN_OK ? match_eval_classes(t) : st;
}

static int is_stat(const char *name) {
    return !sn_optim_is_trainable(name);
}

/* Copies the tensors of `path` whose name and shape match a model tensor (see init_path). */
static sn_status init_from_file(sn_trainer *t, const char *path) {
    sn_st_file f;
    sn_status st = sn_st_read(path, &f);
    if (st != SN_OK) return st;
    const int np = sn_model_num_params(t->m);
    int copied = 0, kept = 0, mismatched = 0;
    const char *first_kept = NULL, *first_mismatch = NULL;
    for (int i = 0; i < np; i++) {
        sn_param p;
        sn_model_param_at(t->m, i, &p);
        const sn_st_tensor *src = t->init_keep_head && strncmp(p.name, "head.fc.", 8) == 0
                                      ? NULL
                                      : sn_st_find(&f, p.name);
        int same = src && src->ndim == p.ndim && src->count == p.count;
        for (int d = 0; same && d < p.ndim; d++) same = src->shape[d] == p.shape[d];
        if (same) {
            memcpy(p.data, src->data, p.count * sizeof(float));
            copied++;
        } else if (src) {
            if (!first_mismatch) first_mismatch = p.name;
            mismatched++;
        } else {
            if (!first_kept) first_kept = p.name;
            kept++;
        }
    }
    if (copied == 0) {
        st = sn_error(SN_ERR_INVALID_ARG,
                      "%s: no tensor matches the model by name and shape (is it a SpineNet "
                      "weight file of the same variant?)", path);
        sn_st_free(&f);
        return st;
    }
    sn_config mc = t->cfg.model;
    sn_config_resolve(&mc);
    const char *keys[] = {"model", "flavour", "activation"};
    for (int k = 0; k < 3; k++) {
        const char *v = sn_st_meta(&f, keys[k]);
        const char *mine = k == 0   ? mc.model
                           : k == 1 ? sn_flavour_name(mc.flavour)
                                    : sn_act_name(mc.activation);
        if (v && mine && strcmp(v, mine) != 0)
            tlog(t, SN_LOG_WARN, "%s: %s is '%s' but this model's is '%s'", path, keys[k], v,
                 mine);
    }
    char why[2 * SN_NAME_MAX + 600] = "";
    if (first_kept)
        snprintf(why, sizeof why, "; first not in the file: %.256s", first_kept);
    if (first_mismatch)
        snprintf(why + strlen(why), sizeof why - strlen(why), "; %d of another shape, first: %.256s",
                 mismatched, first_mismatch);
    tlog(t, SN_LOG_INFO, "initialised %d of %d tensors from %s; %d keep their initialisation%s",
         copied, np, path, kept + mismatched, why);
    sn_st_free(&f);
    return SN_OK;
}

/* ---------------------------------------------------------------- processes (dist.h) */

/* Agreement of the job's processes on a failure: every process calls it at the same point with
 * its own status. SN_OK when none failed; the failed process's own status (its message) when it
 * failed; else an error saying which process failed (the lowest) and `what` it was doing. Alone,
 * st itself. */
static sn_status agree(const sn_trainer *t, sn_status st, const char *what) {
    if (t->ranks <= 1) return st;
    int32_t who = st != SN_OK ? t->ranks - t->rank : 0; /* the max: the lowest failed rank */
    char msg[1024] = "";
    if (st != SN_OK) snprintf(msg, sizeof msg, "%s", sn_last_error());
    sn_status cs = sn_dist_max_i32(&who, 1);
    if (cs != SN_OK) return cs;
    if (who == 0) return SN_OK;
    if (st != SN_OK) return sn_error(st, "%s", msg);
    return sn_error(SN_ERR_STATE, "%s failed on rank %d (its message says why); every rank stops",
                    what, t->ranks - who);
}

/* A debugging check that the processes' weights are still equal (the same sums, the same
 * updates): a hash of every trained parameter's bits, rank 0's sent to every process and
 * compared. */
static sn_status check_same_weights(const sn_trainer *t) {
    uint64_t h = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < t->np; i++) {
        if (!t->grads[i]) continue; /* moving statistics: rank 0's alone without sync BN */
        const uint32_t *w = (const uint32_t *)(const void *)t->op[i].w;
        for (size_t k = 0; k < t->op[i].count; k++) h = (h ^ w[k]) * 0x100000001B3ull;
    }
    uint64_t h0 = h;
    sn_status st = sn_dist_bcast(&h0, sizeof h0, 0);
    if (st != SN_OK) return st;
    st = h0 == h ? SN_OK
                 : sn_error(SN_ERR_STATE, "step %" PRId64 ": the weights of rank %d are no longer "
                            "rank 0's (SN_DIST_CHECK_EVERY)", t->step, t->rank);
    return agree(t, st, "the check of the weights");
}

/* Sync batch-norm: the per-channel sums of every process's slice. */
static sn_status bn_reduce_sum(void *ctx, double *buf, size_t n) {
    (void)ctx;
    return sn_dist_sum_f64(buf, n);
}

/* Before the backward: whether any process's loss is not finite (then every one stops). */
static sn_status loss_agree(void *ctx, int finite) {
    const sn_trainer *t = ctx;
    int32_t who = finite ? 0 : t->ranks - t->rank;
    sn_status st = sn_dist_max_i32(&who, 1);
    if (st != SN_OK) return st;
    if (who)
        return sn_error(SN_ERR_INVALID_ARG, "the loss is not finite on rank %d", t->ranks - who);
    return SN_OK;
}

/* The training plan at this process's batch, with the hooks of data parallelism: evaluation
 * re-plans the graph, which forgets them. */
static sn_status plan_train(sn_trainer *t) {
    const int in_size = t->cfg.task == SN_TASK_DETECT ? sn_det_canvas_size(t->cfg.image_size)
                                                       : t->cfg.image_size;
    sn_status st = sn_model_plan_train(t->m, t->local_batch, in_size, in_size);
    if (st != SN_OK || t->ranks <= 1) return st;
    sn_graph *g = sn_model_part_graph(t->m, 0);
    if (t->cfg.sync_bn) {
        g->bn_reduce = bn_reduce_sum;
        g->bn_reduce_ctx = t;
    }
    sn_grad_sync_free(t->gs);
    t->gs = NULL;
    return sn_grad_sync_create(t->m, t->grads, SN_GRAD_SYNC_BUCKET_BYTES, &t->gs);
}

static sn_status create_local(sn_trainer *t);

sn_status sn_trainer_create(const sn_train_config *cfg, sn_trainer **out) {
    if (!cfg || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_trainer_create: NULL argument");
    *out = NULL;
    sn_trainer *t = sn_calloc(1, sizeof *t);
    if (!t) return SN_ERR_OOM;
    t->cfg = *cfg;
    t->rank = sn_dist_rank();
    t->ranks = sn_dist_size();
    /* Every process opens its data and builds its model; a failure on any of them (an unreadable
     * file on one host) stops them all here, before the first step. */
    sn_status st = agree(t, create_local(t), "opening the data or the model");
    if (st != SN_OK) {
        sn_trainer_free(t);
        return st;
    }
    *out = t;
    return SN_OK;
}

static sn_status create_local(sn_trainer *t) {
    const sn_train_config *cfg = &t->cfg;
    const int det = cfg->task == SN_TASK_DETECT;
    if (!det && cfg->model.head != SN_HEAD_CLASSIFIER)
        return sn_error(SN_ERR_INVALID_ARG, "classification training needs the classifier head");
    if (det && cfg->model.head != SN_HEAD_RETINANET)
        return sn_error(SN_ERR_INVALID_ARG, "detection training needs the RetinaNet head");
    if (cfg->batch <= 0 || cfg->image_size <= 0 || (cfg->steps <= 0 && cfg->epochs <= 0))
        return sn_error(SN_ERR_INVALID_ARG, "batch, image size and epochs or steps must be positive");
    if (!(cfg->label_smoothing >= 0.0f && cfg->label_smoothing < 1.0f) ||
        !(cfg->drop_path_rate >= 0.0f && cfg->drop_path_rate < 1.0f))
        return sn_error(SN_ERR_INVALID_ARG, "label smoothing and drop-path rate must be in [0, 1)");
    if (cfg->resume && !cfg->out_dir[0])
        return sn_error(SN_ERR_INVALID_ARG, "resume needs the output directory of the run");
    /* A cosine schedule with no length decays over the whole run (filled in below). */
    sn_lr_schedule lr_probe = cfg->lr;
    if (lr_probe.kind == SN_LR_COSINE && lr_probe.total_steps <= 0)
        lr_probe.total_steps = lr_probe.warmup_steps + 1;
    sn_status st = sn_lr_schedule_check(&lr_probe);
    if (st != SN_OK) return st;
    t->local_batch = cfg->batch;
    if (t->ranks > 1) {
        if (cfg->batch % t->ranks != 0)
            return sn_error(SN_ERR_INVALID_ARG, "--batch %d cannot be split among %d processes: "
                            "the global batch must be a multiple of the processes (e.g. %d)",
                            cfg->batch, t->ranks, (cfg->batch / t->ranks + 1) * t->ranks);
        if (cfg->replicas > 1)
            return sn_error(SN_ERR_INVALID_ARG, "--replicas %d cannot be combined with %d "
                            "processes: each process trains its slice of the batch as one part",
                            cfg->replicas, t->ranks);
        if (cfg->skip_bad)
            return sn_error(SN_ERR_UNSUPPORTED,
                            "--skip-bad cannot be used with %d processes: an image one process "
                            "leaves out would change only its own part of the batch, so the "
                            "processes would no longer train on one batch; check the data on one "
                            "process (or remove the unreadable files) and run without --skip-bad",
                            t->ranks);
        t->local_batch = cfg->batch / t->ranks;
        t->lsync.before_backward = loss_agree;
        t->lsync.ctx = t;
        const char *ce = getenv("SN_DIST_CHECK_EVERY");
        t->check_every = ce ? strtoll(ce, NULL, 10) : 0;
    }
    t->best_metric = -1.0;
    t->best_step = -1;
    t->cfg.model.drop_path_rate = cfg->drop_path_rate;
    if (t->cfg.out_dir[0]) {
        snprintf(t->last_path, sizeof t->last_path, "%s/last.safetensors", t->cfg.out_dir);
        snprintf(t->best_path, sizeof t->best_path, "%s/best.safetensors", t->cfg.out_dir);
    }
    if ((st = open_data(t)) != SN_OK) return st;
    if (!det && t->own_train && (st = match_start_classes(t)) != SN_OK) return st;
    if (t->cfg.model.num_classes <= 0) t->cfg.model.num_classes = t->train_ds->num_classes;
    if ((st = check_classes(t, t->train_ds, "training")) != SN_OK) return st;
    if (t->eval_ds && (st = check_classes(t, t->eval_ds, "evaluation")) != SN_OK) return st;
    /* The model's input: the canvas for detection (S padded to a multiple of 128). */
    const int in_size = det ? sn_det_canvas_size(t->cfg.image_size) : t->cfg.image_size;

    if ((st = sn_model_create(&t->cfg.model, t->cfg.seed, &t->m)) != SN_OK) return st;
    if (t->train_ds->class_names &&
        (st = sn_model_set_class_names(t->m, (const char *const *)t->train_ds->class_names,
                                       t->train_ds->num_classes)) != SN_OK)
        return st;
    if ((st = sn_model_set_threads(t->m, t->cfg.threads)) != SN_OK) return st;
    /* A batch the parts cannot split is refused by the training plan below. */
    if (t->cfg.replicas > 1 &&
        ((st = sn_model_set_train_replicas(t->m, t->cfg.replicas)) != SN_OK ||
         (st = sn_model_set_train_sync_bn(t->m, t->cfg.replicas_sync_bn)) != SN_OK))
        return st;
    if (t->cfg.init_path[0] && !t->cfg.resume &&
        (st = init_from_file(t, t->cfg.init_path)) != SN_OK)
        return st;

    t->np = sn_model_num_params(t->m);
    t->grads = sn_calloc((size_t)t->np, sizeof *t->grads);
    t->op = sn_calloc((size_t)t->np, sizeof *t->op);
    if (!t->grads || !t->op) {
        return SN_ERR_OOM;
    }
    for (int i = 0; i < t->np; i++) {
        sn_param p;
        sn_model_param_at(t->m, i, &p);
        t->op[i].name = p.name;
        t->op[i].w = p.data;
        t->op[i].count = p.count;
        if (is_stat(p.name)) continue;
        if (!(t->grads[i] = sn_calloc(p.count, sizeof(float)))) {
            return SN_ERR_OOM;
        }
        t->op[i].g = t->grads[i];
    }
    if ((st = sn_optim_create(&t->cfg.sgd, t->op, t->np, &t->opt)) != SN_OK) return st;

    sn_loader_config lc;
    sn_loader_config_defaults(&lc);
    lc.batch_size = t->cfg.batch;
    lc.image_size = in_size;
    lc.train = 1;
    lc.skip_bad = t->cfg.skip_bad;
    lc.seed = t->cfg.seed;
    lc.aug = t->cfg.aug;
    lc.shard_rank = t->rank;
    lc.shard_count = t->ranks;
    if (det) {
        lc.prepare = sn_det_prepare;
        lc.prepare_user = &t->det_src;
        lc.extra_bytes = sn_det_sample_bytes(&t->det_src);
        sn_det_params_init(&t->det_params);
        if ((st = sn_det_head_init(&t->head, t->m, in_size, t->local_batch,
                                   t->det_src.max_boxes)) != SN_OK)
            return st;
    }
    if ((st = sn_loader_create(t->train_ds, &lc, &t->loader)) != SN_OK) return st;
    t->per_epoch = sn_loader_batches_per_epoch(t->loader);
    t->total_steps = t->cfg.steps > 0 ? t->cfg.steps : t->cfg.epochs * t->per_epoch;
    if (t->cfg.lr.kind == SN_LR_COSINE && t->cfg.lr.total_steps <= 0) {
        t->cfg.lr.total_steps = t->total_steps;
        if ((st = sn_lr_schedule_check(&t->cfg.lr)) != SN_OK) return st;
    }

    if (t->cfg.out_dir[0]) {
        /* Create the directory and its parents if needed; an existing one is fine. */
        if ((st = sn_make_dirs(t->cfg.out_dir)) != SN_OK) return st;
    }
    if (t->cfg.resume) {
        sn_train_state ts;
        if ((st = sn_checkpoint_read(t->last_path, t->m, t->opt, &ts)) != SN_OK) return st;
        if (ts.seed != t->cfg.seed) {
            st = sn_error(SN_ERR_INVALID_ARG,
                          "%s: the run was started with seed %" PRIu64 ", not %" PRIu64
                          " (resume needs the same seed)", t->last_path, ts.seed, t->cfg.seed);
            return st;
        }
        if ((st = sn_loader_set_state(t->loader, &ts.loader)) != SN_OK) return st;
        t->step = ts.step;
        t->best_metric = ts.best_metric;
        t->best_step = ts.best_step;
        tlog(t, SN_LOG_INFO, "resumed from %s at step %" PRId64, t->last_path, t->step);
    }
    return plan_train(t);
}

void sn_trainer_free(sn_trainer *t) {
    if (!t) return;
    sn_grad_sync_free(t->gs);
    sn_loader_free(t->loader);
    sn_optim_free(t->opt);
    if (t->grads)
        for (int i = 0; i < t->np; i++) sn_free(t->grads[i]);
    sn_free(t->grads);
    sn_free(t->op);
    sn_model_free(t->m);
    if (t->own_train) sn_dataset_free(t->train_ds);
    if (t->own_eval) sn_dataset_free(t->eval_ds);
    sn_det_head_free(&t->head);
    sn_coco_free(t->coco_train);
    sn_coco_free(t->coco_eval);
    sn_free(t->det_keep);
    sn_free(t);
}

sn_model *sn_trainer_model(sn_trainer *t) { return t ? t->m : NULL; }
int64_t sn_trainer_step(const sn_trainer *t) { return t ? t->step : 0; }
double sn_trainer_best_metric(const sn_trainer *t) { return t ? t->best_metric : -1.0; }
sn_optim *sn_trainer_optim(sn_trainer *t) { return t ? t->opt : NULL; }
double sn_trainer_wait_s(const sn_trainer *t) { return t ? t->wait_eval_s : 0.0; }

/* ---------------------------------------------------------------- the loop */

static sn_status save_last(sn_trainer *t) {
    if (!t->cfg.out_dir[0]) return SN_OK;
    sn_train_state ts = {0};
    ts.step = t->step;
    ts.best_metric = t->best_metric;
    ts.best_step = t->best_step;
    ts.seed = t->cfg.seed;
    sn_loader_get_state(t->loader, &ts.loader);
    sn_status st = sn_checkpoint_write(t->last_path, t->m, t->opt, &ts);
    if (st == SN_OK) tlog(t, SN_LOG_INFO, "step %" PRId64 ": wrote %s", t->step, t->last_path);
    return st;
}

/* A huge learning rate can leave finite losses but infinite weights after the update; such a
 * state must never replace the last good checkpoint. */
static sn_status check_weights(const sn_trainer *t) {
    for (int i = 0; i < t->np; i++) {
        const float *w = t->op[i].w;
        for (size_t k = 0; k < t->op[i].count; k++)
            if (!isfinite(w[k]))
                return sn_error(SN_ERR_INVALID_ARG,
                                "step %" PRId64 ": training diverged: weight '%s' is not finite "
                                "(lower the learning rate); no checkpoint written, the last good "
                                "one is kept", t->step, t->op[i].name);
    }
    return SN_OK;
}

/* Detection: COCO AP and AP50 of the model on the evaluation annotations. */
static sn_status det_eval(sn_trainer *t, int batch, double *ap, double *ap50) {
    sn_coco_eval_result r;
    memset(&r, 0, sizeof r);
    const char *dir = t->cfg.eval_path[0] ? t->cfg.eval_path : t->cfg.data_path;
    sn_status st = sn_det_evaluate(t->m, t->coco_eval, dir, t->cfg.image_size, batch,
                                   &t->det_params, NULL, &r, NULL, NULL);
    if (st == SN_OK) {
        *ap = r.stats[SN_COCO_AP];
        *ap50 = r.stats[SN_COCO_AP50];
        tlog(t, SN_LOG_INFO, "step %" PRId64 ": eval AP %.4f AP50 %.4f AP75 %.4f APs %.4f APm %.4f "
             "APl %.4f AR100 %.4f", t->step, r.stats[SN_COCO_AP], r.stats[SN_COCO_AP50],
             r.stats[SN_COCO_AP75], r.stats[SN_COCO_APS], r.stats[SN_COCO_APM],
             r.stats[SN_COCO_APL], r.stats[SN_COCO_AR100]);
    }
    sn_coco_eval_free(&r);
    return st;
}

static sn_status run_eval(sn_trainer *t, double *top1, double *top5) {
    int eb = t->cfg.eval_batch > 0 ? t->cfg.eval_batch : t->cfg.batch;
    const int det = t->cfg.task == SN_TASK_DETECT;
    sn_status st = det ? det_eval(t, eb, top1, top5)
                       : sn_trainer_evaluate(t->m, t->eval_ds, t->cfg.image_size, eb,
                                             t->cfg.threads, &t->cfg.aug, top1, top5, NULL);
    /* Back to the training plan (evaluation re-planned the graph for inference). */
    sn_status st2 = plan_train(t);
    if (st != SN_OK) return st;
    if (st2 != SN_OK) return st2;
    if (!det)
        tlog(t, SN_LOG_INFO, "step %" PRId64 ": eval top-1 %.4f top-5 %.4f", t->step, *top1,
             *top5);
    if (*top1 > t->best_metric) {
        t->best_metric = *top1;
        t->best_step = t->step;
        if (t->cfg.out_dir[0]) {
            sn_train_state ts = {0};
            ts.step = t->step;
            ts.best_metric = t->best_metric;
            ts.best_step = t->best_step;
            ts.seed = t->cfg.seed;
            sn_loader_get_state(t->loader, &ts.loader);
            if ((st = sn_checkpoint_write(t->best_path, t->m, NULL, &ts)) != SN_OK) return st;
            tlog(t, SN_LOG_INFO, "step %" PRId64 ": new best %s %.4f, wrote %s", t->step,
                 det ? "AP" : "top-1", t->best_metric, t->best_path);
        }
    }
    return SN_OK;
}

/* The step's message for a status every process agreed on (agree, loss_agree). */
static sn_status step_error(const sn_trainer *t, sn_status st, int64_t step) {
    return sn_error(st, "step %" PRId64 ": %s", step, sn_last_error());
}

sn_status sn_trainer_run(sn_trainer *t) {
    if (!t) return sn_error(SN_ERR_INVALID_ARG, "sn_trainer_run: NULL trainer");
    const sn_train_config *c = &t->cfg;
    double win_loss[SN_TRAIN_WINDOW], win_acc[SN_TRAIN_WINDOW], win_cls[SN_TRAIN_WINDOW],
        win_box[SN_TRAIN_WINDOW];
    const int det = c->task == SN_TASK_DETECT;
    const int multi = t->ranks > 1;
    void *has_eval = det ? (void *)t->coco_eval : (void *)t->eval_ds;
    int win_n = 0, win_i = 0;
    int64_t start_step = t->step;
    double t_train = 0.0;
    int64_t images = 0;
    int stop = 0;
    sn_status st = SN_OK;
    while (t->step < t->total_steps && !stop) {
        double t0 = now_s();
        sn_batch b;
        /* A batch this process cannot load (an unreadable image on its host) stops every
         * process at this step, before any of them trains on it. */
        st = sn_loader_next(t->loader, &b);
        if (st == SN_OK && det)
            st = sn_det_head_targets(&t->head, &t->det_src, b.extra, b.n);
        if (st == SN_OK && !det)
            /* Dataset labels are checked here so that a non-finite loss below can only mean
             * divergence (the images are 8-bit, hence finite), and the message can say so. */
            for (int i = 0; i < b.n && st == SN_OK; i++)
                if (b.labels[i] < 0 || b.labels[i] >= c->model.num_classes)
                    st = sn_error(SN_ERR_INVALID_ARG, "sample %d has label %d, outside 0..%d",
                                  b.indices[i], b.labels[i], c->model.num_classes - 1);
        if ((st = agree(t, st, "loading the batch")) != SN_OK) return step_error(t, st, t->step + 1);
        if (b.skipped) {
            t->load_skipped += b.skipped;
            tlog(t, SN_LOG_WARN, "step %" PRId64 ": skipping %s (--skip-bad; %d image%s left out "
                 "at load time so far)", t->step + 1, b.skip_reason, t->load_skipped,
                 t->load_skipped == 1 ? "" : "s");
        }
        for (int i = 0; i < t->np; i++)
            if (t->grads[i]) memset(t->grads[i], 0, t->op[i].count * sizeof(float));
        if (t->gs) sn_grad_sync_begin(t->gs);
        /* Stochastic depth draws from a seed fixed by (seed, step) (and the process, whose
         * images are other than process 0's): nothing to save on resume. */
        const uint64_t seed = sn_part_seed(sn_train_step_seed(c->seed, t->step), t->rank);
        const sn_loss_sync *ls = multi ? &t->lsync : NULL;
        double loss = NAN, lcls = 0.0, lbox = 0.0;
        if (det) {
            if (multi) {
                /* The loss is normalised by the whole batch's positive anchors (+ 1). */
                const size_t all = (size_t)b.n * (size_t)t->head.layout.count;
                double pos = 0.0;
                for (size_t a = 0; a < all; a++) pos += t->head.cls_targets[a] > 0;
                if ((st = sn_dist_sum_f64(&pos, 1)) != SN_OK) return step_error(t, st, t->step + 1);
                t->lsync.global_positives = (int64_t)pos;
            }
            sn_retinanet_loss_value lv;
            st = sn_det_loss_grad_sync(t->m, &t->head, b.images, b.n, seed, ls, &lv, t->grads);
            if (st == SN_OK) {
                loss = lv.total;
                lcls = lv.cls;
                lbox = lv.box;
            }
        } else {
            st = sn_model_loss_grad_sync(t->m, b.images, b.labels, c->label_smoothing, seed, ls,
                                         &loss, t->grads);
        }
        if (st != SN_OK || !isfinite(loss)) {
            /* The forward already moved the BN moving statistics; nothing is saved, so the last
             * checkpoint on disk remains the last good state. Under several processes they all
             * agreed on it before the backward (loss_agree), so all stop here. */
            if (st == SN_ERR_INVALID_ARG || st == SN_OK)
                return sn_error(SN_ERR_INVALID_ARG,
                                "step %" PRId64 ": training diverged: %s (lower the learning "
                                "rate or clip gradients); no checkpoint written, the last good "
                                "one is kept", t->step + 1,
                                multi && st != SN_OK ? sn_last_error() : "the loss is not finite");
            return sn_error(st, "step %" PRId64 ": training stopped: %s; no checkpoint written, "
                            "the last good one is kept", t->step + 1, sn_last_error());
        }
        /* Training accuracy from the logits this forward left in the graph. */
        int hits = 0;
        if (!det)
            for (int i = 0; i < b.n; i++) {
                const float *z = sn_model_train_logits(t->m, i);
                const int nc = c->model.num_classes;
                int pred = 0;
                for (int k = 1; k < nc; k++)
                    if (z[k] > z[pred]) pred = k;
                hits += pred == b.labels[i];
            }
        int n_img = b.n;
        if (multi) {
            /* The sums over every process: a classifier's losses are means over each slice
             * (their mean is the batch's), a detector's add up to the batch's loss. */
            sn_grad_sync_stats gst;
            if ((st = sn_grad_sync_end(t->gs, det ? 1.0f : 1.0f / (float)t->ranks, &gst)) != SN_OK)
                return step_error(t, st, t->step + 1);
            double v[4] = {loss, lcls, lbox, (double)hits};
            if ((st = sn_dist_sum_f64(v, 4)) != SN_OK) return step_error(t, st, t->step + 1);
            const double k = det ? 1.0 : 1.0 / t->ranks;
            loss = v[0] * k;
            lcls = v[1] * k;
            lbox = v[2] * k;
            hits = (int)v[3];
            n_img = b.n * t->ranks;
        }
        double lr = sn_lr_at(&c->lr, t->step);
        double norm = 0.0;
        st = sn_optim_step(t->opt, t->op, t->np, lr, &norm);
        if (st != SN_OK)
            return sn_error(st, "step %" PRId64 ": training stopped: %s (gradient norm %g); no "
                            "checkpoint written, the last good one is kept", t->step + 1,
                            sn_last_error(), norm);
        t->step++;
        t_train += now_s() - t0;
        images += n_img;
        win_loss[win_i] = loss;
        win_acc[win_i] = n_img ? (double)hits / n_img : 0.0;
        win_cls[win_i] = lcls;
        win_box[win_i] = lbox;
        win_i = (win_i + 1) % SN_TRAIN_WINDOW;
        if (win_n < SN_TRAIN_WINDOW) win_n++;

        int at_end = t->step >= t->total_steps;
        int want_eval = has_eval && c->eval_every >= 0 &&
                        ((c->eval_every > 0 && t->step % c->eval_every == 0) ||
                         (c->eval_every == 0 && b.last_in_epoch) || at_end);
        int want_ckpt = (c->checkpoint_every > 0 && t->step % c->checkpoint_every == 0) || at_end;
        /* The weights are the same on every process (the same sums, the same update). */
        if ((want_eval || want_ckpt) && (st = check_weights(t)) != SN_OK) return st;
        if (t->check_every > 0 && t->step % t->check_every == 0 &&
            (st = check_same_weights(t)) != SN_OK)
            return st;

        sn_train_progress p = {0};
        p.epoch = b.epoch;
        p.step = t->step;
        p.total_steps = t->total_steps;
        p.steps_per_epoch = t->per_epoch;
        for (int i = 0; i < win_n; i++) {
            p.loss += win_loss[i] / win_n;
            p.accuracy += win_acc[i] / win_n;
            p.loss_cls += win_cls[i] / win_n;
            p.loss_box += win_box[i] / win_n;
        }
        if (det) p.accuracy = NAN;
        p.lr = lr;
        p.images_per_s = t_train > 0 ? (double)images / t_train : 0.0;
        p.train_s = t_train;
        p.eta_s = t->step > start_step
                      ? t_train / (double)(t->step - start_step) * (double)(t->total_steps - t->step)
                      : 0.0;
        p.best_metric = t->best_metric;
        p.checkpoint = want_ckpt;
        /* Process 0 evaluates; the others wait for it at the agreement below. */
        sn_status est = SN_OK;
        if (want_eval && t->rank == 0) {
            if ((est = run_eval(t, &p.eval_top1, &p.eval_top5)) != SN_OK)
                est = sn_error(est, "step %" PRId64 ": evaluation failed: %s", t->step,
                               sn_last_error());
            p.evaluated = est == SN_OK;
            p.best_metric = t->best_metric;
        }
        int ask_stop = est == SN_OK && c->progress && c->progress(c->user, &p);
        if (multi) {
            /* One agreement per step: an evaluation that failed, and a stop asked on any
             * process (a signal reaches each process of the job on its own). */
            const double w0 = now_s();
            int32_t f[2] = {est != SN_OK, ask_stop};
            if ((st = sn_dist_max_i32(f, 2)) != SN_OK) return step_error(t, st, t->step);
            if (want_eval && t->rank != 0) t->wait_eval_s += now_s() - w0;
            if (f[0] && est == SN_OK)
                return sn_error(SN_ERR_STATE, "step %" PRId64 ": the evaluation failed on rank 0 "
                                "(its message says why); every rank stops", t->step);
            ask_stop = f[1];
        }
        if (est != SN_OK) return est;
        if (ask_stop) {
            stop = 1;
            want_ckpt = 1;
            if ((st = check_weights(t)) != SN_OK) return st;
        }
        if (want_ckpt) {
            /* Process 0 writes the checkpoint (atomically); the others wait for it to succeed. */
            const double w0 = now_s();
            st = t->rank == 0 ? save_last(t) : SN_OK;
            if (st != SN_OK)
                st = sn_error(st, "step %" PRId64 ": checkpoint failed: %s", t->step,
                              sn_last_error());
            if ((st = agree(t, st, "writing the checkpoint")) != SN_OK)
                return t->rank == 0 ? st : step_error(t, st, t->step);
            if (t->rank != 0) t->wait_eval_s += now_s() - w0;
        }
    }
    if (stop) tlog(t, SN_LOG_INFO, "stopped at step %" PRId64 " of %" PRId64, t->step, t->total_steps);
    return SN_OK;
}
