/* The training loop end to end on a tiny synthetic image folder (3 colour classes, 64x64 PNGs):
 * learning, bit-exact resume, checkpoints readable by sn_model_load, divergence handling that
 * keeps the last good checkpoint, class-count refusal, and evaluation metrics. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core.h"
#include "data.h"
#include "safetensors.h"
#include "spinenet.h"
#include "test.h"
#include "trainer.h"

#define PER_CLASS 8
#define SIDE 64

static char root[256];

/* Class k has colour channel k bright on a dim background, with per-pixel noise and a random
 * brightness, so every crop and flip still shows the class. */
static int make_dataset(const char *dir, int classes) {
    if (mkdir(dir, 0777) != 0) return -1;
    sn_rng r;
    sn_rng_seed(&r, 42);
    for (int k = 0; k < classes; k++) {
        char cdir[512];
        snprintf(cdir, sizeof cdir, "%s/class%d", dir, k);
        if (mkdir(cdir, 0777) != 0) return -1;
        for (int i = 0; i < PER_CLASS; i++) {
            sn_image img;
            if (sn_image_alloc(&img, SIDE, SIDE, 3) != SN_OK) return -1;
            int hi = 160 + (int)(sn_rng_uniform(&r) * 90);
            for (int p = 0; p < SIDE * SIDE; p++)
                for (int ch = 0; ch < 3; ch++) {
                    int v = (ch == k % 3 ? hi : 40) + (int)(sn_rng_uniform(&r) * 30);
                    img.pixels[p * 3 + ch] = (uint8_t)(v > 255 ? 255 : v);
                }
            char path[SN_PATH_MAX + 32];
            snprintf(path, sizeof path, "%s/img%02d.png", cdir, i);
            sn_status st = sn_image_save_png(&img, path);
            sn_image_free(&img);
            if (st != SN_OK) return -1;
        }
    }
    return 0;
}

static void base_cfg(sn_train_config *c, const char *out_dir) {
    sn_train_config_defaults(c);
    sn_config_init(&c->model, "spinenet-mobile-49xs");
    c->model.flavour = SN_FLAVOUR_TPU;
    c->model.head = SN_HEAD_CLASSIFIER;
    c->model.num_classes = 3;
    c->model.activation = SN_ACT_RELU;
    c->data = SN_TRAIN_DATA_FOLDER;
    snprintf(c->data_path, sizeof c->data_path, "%s/data", root);
    snprintf(c->eval_path, sizeof c->eval_path, "%s/data", root);
    c->image_size = 64;
    c->batch = 4;
    c->steps = 6;
    sn_lr_schedule_init(&c->lr, SN_LR_COSINE, 0.05);
    c->lr.total_steps = 6;
    c->lr.warmup_steps = 2;
    c->lr.warmup_init_lr = 0.01;
    c->sgd.clip_norm = 10.0;
    c->drop_path_rate = 0.2f;
    c->threads = 2;
    c->seed = 7;
    c->eval_every = -1;
    c->checkpoint_every = 0;
    snprintf(c->out_dir, sizeof c->out_dir, "%s/%s", root, out_dir);
}

static sn_status train(const sn_train_config *c, sn_trainer **out) {
    sn_trainer *t = NULL;
    sn_status st = sn_trainer_create(c, &t);
    if (st == SN_OK) st = sn_trainer_run(t);
    if (st != SN_OK && out) *out = NULL;
    if (out && st == SN_OK) *out = t;
    else sn_trainer_free(t);
    return st;
}

static int read_file(const char *path, unsigned char **buf, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc((size_t)len + 1);
    *n = fread(*buf, 1, (size_t)len, f);
    fclose(f);
    return *n == (size_t)len ? 0 : -1;
}

/* The windowed loss after the first 6 steps and at the end, as the progress line shows it. */
typedef struct {
    double early_loss, last_loss, last_acc;
    int calls, evals;
    int ckpts, bad_ckpt; /* reports announcing a checkpoint; those at a step that writes none */
    int64_t every, total;
} prog_log;

static int on_progress(void *user, const sn_train_progress *p) {
    prog_log *l = user;
    l->calls++;
    if (p->step == 6) l->early_loss = p->loss;
    l->last_loss = p->loss;
    l->last_acc = p->accuracy;
    l->evals += p->evaluated;
    /* The checkpoint flag comes with exactly the steps that write last.safetensors. */
    const int writes = (l->every > 0 && p->step % l->every == 0) || p->step == l->total;
    l->ckpts += p->checkpoint;
    l->bad_ckpt += p->checkpoint != writes;
    return 0;
}

/* (1) Learning, (3) checkpoints readable by sn_model_load, (6) evaluation consistency.
 * The learning criterion is the training loss/accuracy of the recent batches: with batch 8 and
 * 1x1 level-7 maps, batch-norm's moving statistics need more than 36 steps before inference
 * accuracy leaves chance, so eval top-1 is only checked for consistency here. The run is
 * deterministic (fixed seed and threads), so the margins below are not a matter of luck. */
static void test_learns(void) {
    sn_train_config c;
    base_cfg(&c, "learn");
    /* SN_QUICK=1 (the sanitizer run) trains 12 steps and skips the learning thresholds. */
    const char *q = getenv("SN_QUICK");
    int quick = q && *q && *q != '0';
    c.batch = 8;
    c.steps = quick ? 12 : 36; /* 36: twelve epochs of 24 images */
    sn_lr_schedule_init(&c.lr, SN_LR_CONSTANT, 0.1);
    c.drop_path_rate = 0.0f;
    c.label_smoothing = 0.0f;
    c.sgd.clip_norm = 0.0;
    c.eval_every = 0; /* each epoch */
    c.checkpoint_every = 5;
    prog_log pl = {0};
    pl.every = c.checkpoint_every;
    pl.total = c.steps;
    c.progress = on_progress;
    c.user = &pl;
    sn_trainer *t = NULL;
    CHECK_OK(train(&c, &t));
    if (!t) return;
    CHECK(pl.calls == c.steps && pl.evals == c.steps / 3, "progress calls %d evals %d", pl.calls,
          pl.evals);
    CHECK(pl.bad_ckpt == 0 && pl.ckpts == c.steps / 5 + (c.steps % 5 != 0),
          "progress announced %d checkpoints, %d of them wrongly", pl.ckpts, pl.bad_ckpt);
    if (!quick) {
        CHECK(pl.last_loss < 0.8 * pl.early_loss, "recent loss %g -> %g", pl.early_loss,
              pl.last_loss);
        CHECK(pl.last_acc > 0.55, "recent training accuracy %g", pl.last_acc);
    }
    double best = sn_trainer_best_metric(t);
    CHECK(best >= 0.0 && best <= 1.0, "best eval top-1 %g", best);

    /* Evaluate the final model; top-5 covers all 3 classes; the confusion matrix sums up. */
    sn_dataset *ds = NULL;
    CHECK_OK(sn_folder_open(c.data_path, NULL, &ds, NULL));
    double top1 = -1, top5 = -1;
    int64_t conf[9];
    CHECK_OK(sn_trainer_evaluate(sn_trainer_model(t), ds, 64, 5, 2, NULL, &top1, &top5, conf));
    int64_t sum = 0, diag = 0;
    for (int i = 0; i < 9; i++) sum += conf[i];
    for (int i = 0; i < 3; i++) diag += conf[i * 3 + i];
    CHECK(sum == 24, "confusion sums to %lld", (long long)sum);
    CHECK(top1 == (double)diag / 24.0, "top1 %g vs diagonal %lld/24", top1, (long long)diag);
    CHECK(top5 == 1.0, "top5 %g with 3 classes", top5);
    for (int k = 0; k < 3; k++) {
        int64_t row = conf[k * 3] + conf[k * 3 + 1] + conf[k * 3 + 2];
        CHECK(row == PER_CLASS, "class %d row sum %lld", k, (long long)row);
    }

    /* best.safetensors loads with sn_model_load and scores what the trainer recorded (same
     * threads and batch, so bit-identical logits). */
    char path[SN_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/best.safetensors", c.out_dir);
    sn_model *bm = NULL;
    CHECK_OK(sn_model_load(path, &bm));
    if (bm) {
        CHECK(sn_model_config(bm)->num_classes == 3, "classes %d", sn_model_config(bm)->num_classes);
        const char *n0 = sn_model_class_name(bm, 0);
        CHECK(n0 && strcmp(n0, "class0") == 0, "class name %s", n0 ? n0 : "(null)");
        double b1 = -1;
        CHECK_OK(sn_trainer_evaluate(bm, ds, 64, 8, 2, &c.aug, &b1, NULL, NULL));
        CHECK(b1 == best, "best file top-1 %g vs recorded %g", b1, best);
        fprintf(stderr, "learn: loss %.3f -> %.3f, train acc %.2f, best eval top-1 %.3f\n", pl.early_loss, pl.last_loss, pl.last_acc, best);
        sn_model_free(bm);
    }
    /* last.safetensors holds the final weights bit for bit, momentum and the step. */
    snprintf(path, sizeof path, "%s/last.safetensors", c.out_dir);
    sn_st_file f;
    CHECK_OK(sn_st_read(path, &f));
    sn_model *m = sn_trainer_model(t);
    int same = 1, found = 1;
    for (int i = 0; i < sn_model_num_params(m); i++) {
        sn_param p;
        sn_model_param_at(m, i, &p);
        const sn_st_tensor *ft = sn_st_find(&f, p.name);
        if (!ft) {
            found = 0;
            continue;
        }
        same &= memcmp(ft->data, p.data, p.count * sizeof(float)) == 0;
        char on[300];
        snprintf(on, sizeof on, "opt.momentum.%s", p.name);
        if (sn_optim_is_trainable(p.name) && !sn_st_find(&f, on)) found = 0;
    }
    CHECK(found && same, "last.safetensors: all tensors %d, identical %d", found, same);
    const char *sv = sn_st_meta(&f, "train.step");
    CHECK(sv && atoll(sv) == c.steps, "train.step %s", sv ? sv : "(null)");
    CHECK(sn_st_meta(&f, "format") && sn_st_meta(&f, "model"), "model metadata present");
    sn_st_free(&f);
    /* A training checkpoint loads as a model (its optimizer tensors are ignored). */
    sn_model *lm = NULL;
    CHECK_OK(sn_model_load(path, &lm));
    sn_model_free(lm);
    sn_dataset_free(ds);
    sn_trainer_free(t);
}

/* Asks the trainer to stop after step 3, as the CLI does on an interrupt. */
static int stop_at_3(void *user, const sn_train_progress *p) {
    (void)user;
    return p->step == 3;
}

/* (2) 6 steps straight == a run stopped after 3 steps, then a fresh trainer resuming it: bit-
 * identical weights (incl. BN moving statistics), momentum and checkpoint bytes, with stochastic
 * depth, a warmup+cosine schedule, clipping and evaluation every 2 steps on. */
static void test_resume(void) {
    sn_train_config a, b;
    base_cfg(&a, "straight");
    a.eval_every = 2;
    base_cfg(&b, "resumed");
    b.eval_every = 2;
    b.progress = stop_at_3;
    sn_trainer *ta = NULL, *tb = NULL;
    CHECK_OK(train(&a, &ta));
    CHECK_OK(train(&b, &tb));
    CHECK(tb && sn_trainer_step(tb) == 3, "stopped at step %lld", tb ? (long long)sn_trainer_step(tb) : -1LL);
    sn_trainer_free(tb);
    tb = NULL;
    b.progress = NULL;
    b.resume = 1;
    CHECK_OK(train(&b, &tb));
    if (!ta || !tb) {
        sn_trainer_free(ta);
        sn_trainer_free(tb);
        return;
    }
    CHECK(sn_trainer_step(tb) == 6, "resumed step %lld", (long long)sn_trainer_step(tb));
    sn_model *ma = sn_trainer_model(ta), *mb = sn_trainer_model(tb);
    int diff = 0;
    for (int i = 0; i < sn_model_num_params(ma); i++) {
        sn_param pa, pb;
        sn_model_param_at(ma, i, &pa);
        sn_model_param_at(mb, i, &pb);
        if (memcmp(pa.data, pb.data, pa.count * sizeof(float)) != 0) {
            if (!diff) fprintf(stderr, "first differing tensor: %s\n", pa.name);
            diff++;
        }
    }
    CHECK(diff == 0, "%d parameter tensors differ after resume", diff);
    const sn_opt_tensor *oa, *ob;
    int na = 0, nb = 0, mdiff = 0;
    CHECK_OK(sn_optim_state_tensors(sn_trainer_optim(ta), &oa, &na));
    CHECK_OK(sn_optim_state_tensors(sn_trainer_optim(tb), &ob, &nb));
    CHECK(na == nb && na > 0, "momentum tensors %d vs %d", na, nb);
    for (int i = 0; i < na && i < nb; i++)
        mdiff += memcmp(oa[i].data, ob[i].data, oa[i].count * sizeof(float)) != 0;
    CHECK(mdiff == 0, "%d momentum tensors differ after resume", mdiff);
    CHECK(sn_optim_get_step(sn_trainer_optim(tb)) == 6, "optimizer step");
    CHECK(sn_trainer_best_metric(ta) == sn_trainer_best_metric(tb), "best %g vs %g",
          sn_trainer_best_metric(ta), sn_trainer_best_metric(tb));
    /* The two last.safetensors are the same bytes too (same state, same writer). */
    char pa_[SN_PATH_MAX + 32], pb_[SN_PATH_MAX + 32];
    snprintf(pa_, sizeof pa_, "%s/last.safetensors", a.out_dir);
    snprintf(pb_, sizeof pb_, "%s/last.safetensors", b.out_dir);
    unsigned char *ba = NULL, *bb = NULL;
    size_t la = 0, lb = 0;
    CHECK(read_file(pa_, &ba, &la) == 0 && read_file(pb_, &bb, &lb) == 0, "read checkpoints");
    CHECK(la == lb && ba && bb && memcmp(ba, bb, la) == 0, "last.safetensors differ (%zu vs %zu)", la, lb);
    free(ba);
    free(bb);
    sn_trainer_free(ta);
    sn_trainer_free(tb);
}

/* (4) A learning rate that overflows float32 makes the weights infinite: the run stops with an
 * error naming the step and last.safetensors keeps the bytes of the last good step. */
static void test_divergence(void) {
    sn_train_config c;
    base_cfg(&c, "nan");
    c.steps = 2;
    c.checkpoint_every = 1;
    CHECK_OK(train(&c, NULL));
    char path[SN_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/last.safetensors", c.out_dir);
    unsigned char *before = NULL, *after = NULL;
    size_t nb = 0, na = 0;
    CHECK(read_file(path, &before, &nb) == 0, "read %s", path);
    c.resume = 1;
    c.steps = 6;
    sn_lr_schedule_init(&c.lr, SN_LR_CONSTANT, 1e39); /* finite double, inf as float */
    sn_status st = train(&c, NULL);
    CHECK(st == SN_ERR_INVALID_ARG, "status %s", sn_status_name(st));
    CHECK(strstr(sn_last_error(), "step 3") != NULL, "message: %s", sn_last_error());
    CHECK(read_file(path, &after, &na) == 0, "read %s", path);
    CHECK(na == nb && before && after && memcmp(before, after, na) == 0,
          "last.safetensors changed by a diverged run");
    free(after);
    after = NULL;
    /* The same with checkpoints only at the end: the non-finite loss itself is caught. */
    c.checkpoint_every = 0;
    st = train(&c, NULL);
    CHECK(st == SN_ERR_INVALID_ARG, "status %s", sn_status_name(st));
    CHECK(strstr(sn_last_error(), "step 4") && strstr(sn_last_error(), "loss is not finite"),
          "message: %s", sn_last_error());
    CHECK(read_file(path, &after, &na) == 0 && na == nb && before && after &&
              memcmp(before, after, na) == 0,
          "last.safetensors changed by a diverged run (end-only checkpoints)");
    free(before);
    free(after);
}

/* (5) A dataset with another class count than the model is refused by name. */
static void test_class_mismatch(void) {
    sn_train_config c;
    base_cfg(&c, "mismatch");
    c.model.num_classes = 5;
    sn_trainer *t = NULL;
    sn_status st = sn_trainer_create(&c, &t);
    CHECK(st == SN_ERR_INVALID_ARG && t == NULL, "status %s", sn_status_name(st));
    CHECK(strstr(sn_last_error(), "3 classes") && strstr(sn_last_error(), "5"), "message: %s",
          sn_last_error());
    /* Evaluation refuses it too. */
    sn_config mc;
    sn_config_init(&mc, "spinenet-mobile-49xs");
    mc.head = SN_HEAD_CLASSIFIER;
    mc.flavour = SN_FLAVOUR_TPU;
    mc.num_classes = 4;
    sn_model *m = NULL;
    sn_dataset *ds = NULL;
    CHECK_OK(sn_model_create(&mc, 1, &m));
    CHECK_OK(sn_folder_open(c.data_path, NULL, &ds, NULL));
    double top1;
    CHECK(sn_trainer_evaluate(m, ds, 64, 4, 1, NULL, &top1, NULL, NULL) == SN_ERR_INVALID_ARG,
          "evaluate accepted a 3-class set for a 4-class model");
    sn_dataset_free(ds);
    sn_model_free(m);
}

/* (6) Evaluation on a known case: a model whose classifier ignores the image (zero kernel) and
 * prefers class 1 through its bias predicts 1 everywhere: top-1 = 1/3, the confusion matrix is
 * column 1 only, and top-5 over 3 classes is 1. */
static void test_eval_known(void) {
    sn_config mc;
    sn_config_init(&mc, "spinenet-mobile-49xs");
    mc.head = SN_HEAD_CLASSIFIER;
    mc.flavour = SN_FLAVOUR_TPU;
    mc.num_classes = 3;
    sn_model *m = NULL;
    CHECK_OK(sn_model_create(&mc, 1, &m));
    if (!m) return;
    int found = 0;
    for (int i = 0; i < sn_model_num_params(m); i++) {
        sn_param p;
        sn_model_param_at(m, i, &p);
        if (!strstr(p.name, "head.fc")) continue;
        size_t len = strlen(p.name);
        if (len > 7 && strcmp(p.name + len - 7, ".weight") == 0) {
            memset(p.data, 0, p.count * sizeof(float));
            found |= 1;
        } else if (len > 5 && strcmp(p.name + len - 5, ".bias") == 0 && p.count == 3) {
            p.data[0] = 0.0f;
            p.data[1] = 1.0f;
            p.data[2] = 0.5f;
            found |= 2;
        }
    }
    CHECK(found == 3, "classifier tensors found: %d", found);
    sn_dataset *ds = NULL;
    char dpath[600];
    snprintf(dpath, sizeof dpath, "%s/data", root);
    CHECK_OK(sn_folder_open(dpath, NULL, &ds, NULL));
    double top1 = -1, top5 = -1;
    int64_t conf[9];
    CHECK_OK(sn_trainer_evaluate(m, ds, 64, 5, 1, NULL, &top1, &top5, conf));
    CHECK(fabs(top1 - 1.0 / 3.0) < 1e-12, "top1 %g", top1);
    CHECK(top5 == 1.0, "top5 %g", top5);
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 3; j++)
            CHECK(conf[k * 3 + j] == (j == 1 ? PER_CLASS : 0), "confusion[%d][%d] = %lld", k, j,
                  (long long)conf[k * 3 + j]);
    sn_dataset_free(ds);
    sn_model_free(m);
}

/* A tiny COCO detection set: 6 PNGs of 128x128 with 1-3 bright rectangles of 2 categories
 * (ids 1 and 2) on a dim background, and its instances JSON. */
static int make_det_dataset(const char *dir) {
    char imgs[600], ann[600];
    snprintf(imgs, sizeof imgs, "%s/images", dir);
    snprintf(ann, sizeof ann, "%s/ann.json", dir);
    if (mkdir(dir, 0777) != 0 || mkdir(imgs, 0777) != 0) return -1;
    FILE *f = fopen(ann, "w");
    if (!f) return -1;
    fprintf(f, "{\"categories\": [{\"id\": 1, \"name\": \"red\"}, {\"id\": 2, \"name\": "
               "\"green\"}], \"images\": [");
    sn_rng r;
    sn_rng_seed(&r, 9);
    int aid = 1;
    char anns[8192] = "";
    for (int i = 1; i <= 6; i++) {
        sn_image img;
        if (sn_image_alloc(&img, 128, 128, 3) != SN_OK) return -1;
        memset(img.pixels, 30, 128 * 128 * 3);
        const int n = 1 + i % 3;
        for (int k = 0; k < n; k++) {
            const int w = 16 + (int)(sn_rng_uniform(&r) * 60), h = 16 + (int)(sn_rng_uniform(&r) * 60);
            const int x = (int)(sn_rng_uniform(&r) * (128 - w)), y = (int)(sn_rng_uniform(&r) * (128 - h));
            const int cat = 1 + (k + i) % 2;
            for (int yy = y; yy < y + h; yy++)
                for (int xx = x; xx < x + w; xx++) img.pixels[((size_t)yy * 128 + xx) * 3 + cat - 1] = 230;
            char one[200];
            snprintf(one, sizeof one, "%s{\"id\": %d, \"image_id\": %d, \"category_id\": %d, "
                     "\"bbox\": [%d, %d, %d, %d], \"area\": %d, \"iscrowd\": 0}", aid > 1 ? ", " : "",
                     aid, i, cat, x, y, w, h, w * h);
            strncat(anns, one, sizeof anns - strlen(anns) - 1);
            aid++;
        }
        char path[700];
        snprintf(path, sizeof path, "%s/%d.png", imgs, i);
        sn_status st = sn_image_save_png(&img, path);
        sn_image_free(&img);
        if (st != SN_OK) return -1;
        fprintf(f, "%s{\"id\": %d, \"file_name\": \"%d.png\", \"width\": 128, \"height\": 128}",
                i > 1 ? ", " : "", i, i);
    }
    fprintf(f, "], \"annotations\": [%s]}\n", anns);
    return fclose(f) == 0 ? 0 : -1;
}

static void det_cfg(sn_train_config *c, const char *out_dir) {
    base_cfg(c, out_dir);
    c->task = SN_TASK_DETECT;
    c->model.flavour = SN_FLAVOUR_GARDEN;
    c->model.head = SN_HEAD_RETINANET;
    c->model.num_classes = 0;
    c->image_size = 128;
    c->batch = 2;
    snprintf(c->data_path, sizeof c->data_path, "%s/det/images", root);
    snprintf(c->ann_path, sizeof c->ann_path, "%s/det/ann.json", root);
    snprintf(c->eval_path, sizeof c->eval_path, "%s/det/images", root);
    snprintf(c->eval_ann_path, sizeof c->eval_ann_path, "%s/det/ann.json", root);
}

/* Detection training: 6 steps straight == 3 steps, stop, resume (weights, momentum, the best
 * AP so far, with scale jitter, flips, stochastic depth and an evaluation every 2 steps); the
 * model gets the dataset's class columns and names; a NaN-producing learning rate stops with
 * the step named. */
static void test_init_from(void);
static void test_detection(void) {
    char dir[400];
    snprintf(dir, sizeof dir, "%s/det", root);
    CHECK(make_det_dataset(dir) == 0, "detection set in %s", dir);
    test_init_from();
    sn_train_config a, b;
    det_cfg(&a, "det_straight");
    a.eval_every = 2;
    det_cfg(&b, "det_resumed");
    b.eval_every = 2;
    b.progress = stop_at_3;
    sn_trainer *ta = NULL, *tb = NULL;
    CHECK_OK(train(&a, &ta));
    CHECK_OK(train(&b, &tb));
    sn_trainer_free(tb);
    tb = NULL;
    b.progress = NULL;
    b.resume = 1;
    CHECK_OK(train(&b, &tb));
    if (ta && tb) {
        sn_model *ma = sn_trainer_model(ta), *mb = sn_trainer_model(tb);
        CHECK(sn_model_config(ma)->num_classes == 3, "columns %d (ids 1, 2 + background)",
              sn_model_config(ma)->num_classes);
        const char *n2 = sn_model_class_name(ma, 2);
        CHECK(n2 && strcmp(n2, "green") == 0, "class name of column 2: %s", n2 ? n2 : "(none)");
        int diff = 0;
        for (int i = 0; i < sn_model_num_params(ma); i++) {
            sn_param pa, pb;
            sn_model_param_at(ma, i, &pa);
            sn_model_param_at(mb, i, &pb);
            diff += memcmp(pa.data, pb.data, pa.count * sizeof(float)) != 0;
        }
        CHECK(diff == 0, "detection: %d parameter tensors differ after resume", diff);
        CHECK(sn_trainer_step(tb) == 6 && sn_trainer_best_metric(ta) >= 0 &&
                  sn_trainer_best_metric(ta) == sn_trainer_best_metric(tb),
              "best AP %g vs %g", sn_trainer_best_metric(ta), sn_trainer_best_metric(tb));
    }
    sn_trainer_free(ta);
    sn_trainer_free(tb);
    /* Divergence: the step is named, no checkpoint is written for it. */
    sn_train_config c;
    det_cfg(&c, "det_nan");
    sn_lr_schedule_init(&c.lr, SN_LR_CONSTANT, 1e30);
    c.sgd.clip_norm = 0.0;
    c.eval_every = -1;
    sn_status st = train(&c, NULL);
    CHECK(st != SN_OK && strstr(sn_last_error(), "not finite") && strstr(sn_last_error(), "step"),
          "huge lr: %s", sn_last_error());
    /* A missing annotation file and a missing image are named. */
    det_cfg(&c, "det_bad");
    snprintf(c.ann_path, sizeof c.ann_path, "%s/det/nope.json", root);
    st = train(&c, NULL);
    CHECK(st != SN_OK && strstr(sn_last_error(), "nope.json"), "missing annotations: %s",
          sn_last_error());
    det_cfg(&c, "det_bad");
    char png[500];
    snprintf(png, sizeof png, "%s/det/images/4.png", root);
    remove(png);
    st = train(&c, NULL);
    CHECK(st != SN_OK && strstr(sn_last_error(), "4.png"), "missing image: %s", sn_last_error());
}

/* --init: a classifier's weights start a detector (every tensor the file has with the model's
 * name and shape is copied, the head keeps its seeded initialisation); a file with nothing that
 * matches and a missing file are refused, naming the file. */
static void test_init_from(void) {
    sn_train_config c;
    base_cfg(&c, "cls_for_init");
    sn_model *cls = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/cls_init.safetensors", root);
    CHECK_OK(sn_model_create(&c.model, 123, &cls));
    if (cls) CHECK_OK(sn_model_save(cls, path));
    sn_model_free(cls);
    det_cfg(&c, "det_init");
    c.model.flavour = SN_FLAVOUR_TPU;
    snprintf(c.init_path, sizeof c.init_path, "%s", path);
    sn_trainer *t = NULL;
    CHECK_OK(sn_trainer_create(&c, &t));
    sn_st_file f;
    memset(&f, 0, sizeof f);
    CHECK_OK(sn_st_read(path, &f));
    if (t && f.n_tensors > 0) {
        sn_model *m = sn_trainer_model(t);
        int copied = 0, head_same = 0, head = 0, wrong = 0;
        for (int i = 0; i < sn_model_num_params(m); i++) {
            sn_param p;
            sn_model_param_at(m, i, &p);
            const sn_st_tensor *ft = sn_st_find(&f, p.name);
            const int is_head = strncmp(p.name, "head.", 5) == 0;
            if (ft && ft->count == p.count) {
                copied++;
                wrong += memcmp(ft->data, p.data, p.count * sizeof(float)) != 0;
            }
            if (is_head) {
                head++;
                head_same += ft != NULL;
            }
        }
        CHECK(copied > 100 && wrong == 0, "init: %d tensors copied, %d differ from the file",
              copied, wrong);
        CHECK(head > 0 && head_same == 0, "init: %d head tensors, %d of them in the file", head,
              head_same);
    }
    sn_st_free(&f);
    sn_trainer_free(t);
    /* A file with no tensor of the model. */
    char bad[512];
    snprintf(bad, sizeof bad, "%s/unrelated.safetensors", root);
    float one = 1.0f;
    sn_st_tensor tens = {.name = "not.a.spinenet.tensor", .ndim = 1, .shape = {1}, .count = 1,
                         .data = &one};
    sn_st_file uf = {.tensors = &tens, .n_tensors = 1};
    CHECK_OK(sn_st_write(bad, &uf));
    snprintf(c.init_path, sizeof c.init_path, "%s", bad);
    t = NULL;
    sn_status st = sn_trainer_create(&c, &t);
    CHECK(st != SN_OK && strstr(sn_last_error(), "unrelated.safetensors") &&
              strstr(sn_last_error(), "no tensor matches"),
          "unrelated init file: %s", sn_last_error());
    sn_trainer_free(t);
    snprintf(c.init_path, sizeof c.init_path, "%s/missing.safetensors", root);
    t = NULL;
    st = sn_trainer_create(&c, &t);
    CHECK(st != SN_OK && strstr(sn_last_error(), "missing.safetensors"), "missing init file: %s",
          sn_last_error());
    sn_trainer_free(t);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/sn_trainer_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        fprintf(stderr, "mkdtemp failed\n");
        return 1;
    }
    char data[300];
    snprintf(data, sizeof data, "%s/data", root);
    CHECK(make_dataset(data, 3) == 0, "synthetic dataset in %s", data);
    test_class_mismatch();
    test_eval_known();
    test_divergence();
    test_resume();
    test_learns();
    const double t0 = (double)clock();
    test_detection();
    printf("detection trainer tests: %.1f s of CPU\n", ((double)clock() - t0) / CLOCKS_PER_SEC);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return TEST_SUMMARY();
}
