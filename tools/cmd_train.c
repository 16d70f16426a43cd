/* spinenet train: a classifier (Fashion-MNIST or an image folder) or a RetinaNet detector
 * (COCO-format data), with checkpoints, OUTDIR/train_log.csv and a progress line. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "trainer.h"

typedef struct {
    cli_model_opts m;
    const char *task, *data, *ann, *eval_data, *eval_ann, *init, *out, *schedule;
    int batch, epochs, steps, warmup_steps, replicas, checkpoint_every, eval_every;
    int no_flip, resume, skip_bad, strict, threads;
    double lr, warmup_lr, momentum, wd, clip, smoothing, drop, min_area, scale_min, scale_max;
} opts;

/* 1 for --batch means the default too (see its help). */
static const opts k_defaults = {
    .m = CLI_MODEL_DEFAULTS, .batch = 1, .epochs = 1, .replicas = 1, .checkpoint_every = 500,
    .threads = 1, .lr = 0.1, .momentum = 0.9, .wd = 4e-5, .smoothing = 0.1, .min_area = 0.08,
    .scale_min = 0.5, .scale_max = 2.0};

static const cli_flag k_flags[] = {
    FSTR("--task", "T", task, "classify, or detect (a RetinaNet detector on COCO-format data)",
         "classify"),
    FSTR("--data", "SPEC", data,
         "fashion-mnist, fashion-mnist:DIR or a folder with one subfolder per class; with --task "
         "detect, the image folder of --ann", "required"),
    FSTR("--ann", "ANN.json", ann, "COCO instances file of the --data images (detection)",
         "required with --task detect"),
    FSTR("--eval-data", "DIR", eval_data,
         "folder of evaluation images (detection: those of --eval-ann)",
         "none; fashion-mnist uses its test images"),
    FSTR("--eval-ann", "ANN.json", eval_ann,
         "COCO instances file of the --eval-data images (detection; evaluated as COCO AP)", "none"),
    FSTR("--init", "FILE", init,
         "start from the tensors of FILE that match by name and shape (e.g. a classifier's "
         "backbone for a detector)", "none"),
    FOUT("OUTDIR", "folder for the checkpoints and train_log.csv (made if missing)", "required"),
    CLI_MODEL_FLAGS("tpu for a classifier, garden for a detector", "retinanet or classifier",
                    "classifier; retinanet with --task detect",
                    "classes of the head; must match the dataset's", "the dataset's"),
    CLI_NEW_MODEL_FLAGS,
    FINT("--size", "S", m.size, 1, SIZE_MAX_PX,
         "input size S (detection: the model sees S padded to a multiple of 128)",
         "64 for a classifier, the variant's for a detector"),
    FINT("--batch", "B", batch, 1, 65536,
         "images per step (a multiple of --replicas); 1 also means the default",
         "32 for a classifier, 8 for a detector"),
    FINT("--epochs", "E", epochs, 1, 100000, "passes over the training set, unless --steps", NULL),
    FINT("--steps", "N", steps, 1, 1000000000, "total steps of the run (overrides --epochs)",
         "--epochs' worth"),
    FNUM("--lr", "LR", lr, 0.0, 100.0, "peak learning rate", NULL),
    FSTR("--schedule", "S", schedule, "learning-rate schedule: cosine or constant", "cosine"),
    FINT("--warmup-steps", "N", warmup_steps, 0, 1000000000,
         "steps of linear warmup from --warmup-lr to --lr", NULL),
    FNUM("--warmup-lr", "LR", warmup_lr, 0.0, 100.0,
         "learning rate at the first step of the warmup", NULL),
    FNUM("--momentum", "M", momentum, 0.0, 0.9999, "SGD momentum", NULL),
    FNUM("--weight-decay", "WD", wd, 0.0, 1.0, "weight decay, on kernels only", NULL),
    FNUM("--clip", "NORM", clip, 0.0, 1e9, "clip the global gradient norm at NORM", "0: off"),
    FNUM("--label-smoothing", "S", smoothing, 0.0, 0.99, "label smoothing (classifier)", NULL),
    FNUM("--drop-rate", "R", drop, 0.0, 0.99, "stochastic-depth (drop path) rate", NULL),
    FNUM("--min-crop-area", "A", min_area, 0.01, 1.0,
         "random crops keep A..1 of the image; 1: no cropping (classifier)", NULL),
    FNUM("--scale-min", "A", scale_min, 0.01, 10.0,
         "smallest scale of the scale jitter with random crop (detector)", NULL),
    FNUM("--scale-max", "B", scale_max, 0.01, 10.0,
         "largest scale of the scale jitter (detector; at least --scale-min)", NULL),
    FSWITCH("--no-flip", no_flip, "no random horizontal mirroring",
            "off: images are mirrored at random"),
    FINT("--replicas", "R", replicas, 1, 16,
         "split each batch into R parts trained side by side, one thread each, with their own "
         "batch-norm statistics", NULL),
    FINT("--checkpoint-every", "N", checkpoint_every, 0, 1000000000,
         "steps between writes of OUTDIR/last.safetensors; 0: at the end only", NULL),
    FINT("--eval-every", "N", eval_every, -1, 1000000000,
         "steps between evaluations (and one at the end); 0: at each epoch's end; -1: never",
         NULL),
    FSWITCH("--resume", resume,
            "continue from OUTDIR/last.safetensors (its step, optimizer and random state)", "off"),
    CLI_SKIP_BAD_FLAG,
    CLI_STRICT_FLAG,
    FINT("--threads", "T", threads, 0, 1024,
         "threads of the kernels (with --replicas: of the evaluation); 0: all cores", NULL),
    FSEED(m.seed, "seed of the initialisation, the data order, the augmentation and stochastic "
          "depth", NULL),
};

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

typedef struct {
    int tty;
    double last_print;
    FILE *csv;           /* OUTDIR/train_log.csv, one row per step (NULL: not written) */
    const char *csv_path;
} progress_state;

/* The training log: a header, then one row per step. loss is the mean of the last
 * SN_TRAIN_WINDOW batches; an empty field was not measured at that step (the eval columns
 * outside evaluations, train_top1 for detectors, the loss parts for classifiers). */
static void csv_row(progress_state *ps, const sn_train_progress *p) {
    if (!ps->csv) return;
    char f[6][32] = {"", "", "", "", "", ""};
    const int det = isnan(p->accuracy);
    if (det) {
        snprintf(f[0], sizeof f[0], "%.6g", p->loss_cls);
        snprintf(f[1], sizeof f[1], "%.6g", p->loss_box);
    } else {
        snprintf(f[2], sizeof f[2], "%.6g", p->accuracy);
    }
    if (p->evaluated) {
        snprintf(f[3], sizeof f[3], "%.6g", p->eval_top1);
        snprintf(f[4], sizeof f[4], "%.6g", p->eval_top5);
    }
    int bad = fprintf(ps->csv, "%lld,%lld,%.6g,%.6g,%s,%s,%s,%.4g,%s,%s\n", (long long)p->step,
                      (long long)p->epoch + 1, p->lr, p->loss, f[0], f[1], f[2], p->images_per_s,
                      f[3], f[4]) < 0;
    if (!bad && (p->evaluated || p->step >= p->total_steps)) bad = fflush(ps->csv) != 0;
    if (bad) {
        fprintf(stderr, "spinenet: warning: %s: cannot write the training log (%s); training "
                "goes on without it\n", ps->csv_path, strerror(errno));
        fclose(ps->csv);
        ps->csv = NULL;
    }
}

/* Opens OUTDIR/train_log.csv: a new file for a new run; when resuming from step `step`, the
 * rows up to that step are kept (later ones belong to steps that will be trained again). */
static FILE *csv_open(const char *path, int det, int resume, int64_t step) {
    char *keep = NULL;
    size_t nkeep = 0;
    if (resume) {
        FILE *in = fopen(path, "rb");
        if (in) {
            char line[512];
            size_t cap = 0;
            int first = 1;
            while (fgets(line, sizeof line, in)) {
                long long s = 0;
                if (!first && (sscanf(line, "%lld,", &s) != 1 || s > step)) continue;
                first = 0;
                size_t n = strlen(line);
                if (nkeep + n + 1 > cap) {
                    cap = 2 * (nkeep + n + 1) + 4096;
                    char *k = realloc(keep, cap);
                    if (!k) {
                        free(keep);
                        fclose(in);
                        return NULL;
                    }
                    keep = k;
                }
                memcpy(keep + nkeep, line, n + 1);
                nkeep += n;
            }
            fclose(in);
        }
    }
    FILE *f = fopen(path, "wb");
    if (f && nkeep) fwrite(keep, 1, nkeep, f);
    else if (f)
        fprintf(f, "step,epoch,lr,loss,loss_cls,loss_box,train_top1,images_per_s,%s\n",
                det ? "eval_AP,eval_AP50" : "eval_top1,eval_top5");
    free(keep);
    if (f) fflush(f);
    return f;
}

/* One line per report: redrawn in place on a terminal, plain lines every few seconds otherwise. */
static int on_progress(void *user, const sn_train_progress *p) {
    progress_state *ps = user;
    csv_row(ps, p);
    double t = now_s();
    int final = p->step >= p->total_steps;
    if (p->evaluated || final || g_stop || t - ps->last_print >= (ps->tty ? 0.2 : 10.0)) {
        ps->last_print = t;
        char ev[96] = "", acc[64];
        const int det = isnan(p->accuracy); /* detection reports no accuracy */
        if (p->best_metric >= 0)
            snprintf(ev, sizeof ev, "  best %s %.2f%%", det ? "AP" : "top-1", 100 * p->best_metric);
        if (p->evaluated)
            snprintf(ev, sizeof ev, "  eval %s %.2f%% %s %.2f%% (best %.2f%%)",
                     det ? "AP" : "top-1", 100 * p->eval_top1, det ? "AP50" : "top-5",
                     100 * p->eval_top5, 100 * p->best_metric);
        if (det)
            snprintf(acc, sizeof acc, "cls %.4f box %.4f", p->loss_cls, p->loss_box);
        else
            snprintf(acc, sizeof acc, "acc %.1f%%", 100 * p->accuracy);
        long eta = (long)p->eta_s;
        printf("%sepoch %lld  step %lld/%lld  loss %.4f  %s  lr %.4g  %.1f img/s  ETA %ld:%02ld%s%s",
               ps->tty ? "\r\033[K" : "", (long long)p->epoch + 1, (long long)p->step,
               (long long)p->total_steps, p->loss, acc, p->lr, p->images_per_s, eta / 60,
               eta % 60, ev, ps->tty && !p->evaluated && !final ? "" : "\n");
        fflush(stdout);
    }
    return g_stop ? 1 : 0;
}

static void on_log(void *user, sn_log_level level, const char *msg) {
    (void)user;
    fprintf(stderr, "spinenet: %s%s\n", level == SN_LOG_WARN ? "warning: " : "", msg);
}

static int copy_path(char *dst, size_t n, const char *src, const char *flag) {
    if (strlen(src) >= n) return die("%s: path too long", flag);
    snprintf(dst, n, "%s", src);
    return 0;
}

static int run(const void *options, const char *const *args, int n_args) {
    const opts *o = options;
    int det;
    if (task_of(o->task, &det)) return 1;
    if (!o->data)
        return die("%s", det ? "train --task detect needs --data IMAGEDIR --ann ANNOTATIONS.json"
                             : "train needs --data fashion-mnist or --data DIR");
    if (det && !o->ann) return die("%s", "train --task detect needs --ann ANNOTATIONS.json (COCO "
                                         "instances format) for the --data images");
    if (det && o->eval_data && !o->eval_ann)
        return die("%s", "--eval-data needs --eval-ann ANNOTATIONS.json for detection");
    if (!o->out) return die("%s", "train needs -o OUTDIR (where checkpoints go)");
    if (det && !(o->scale_max >= o->scale_min))
        return die("%s", "--scale-max must be at least --scale-min");
    if (need_data(o->data, det, "--data") ||
        (o->eval_data && (det || !fmnist_dir(o->data)) &&
         need_data(o->eval_data, det, "--eval-data")) ||
        (det && need_path(o->ann, 0, "--ann takes the COCO instances file of the --data images, "
                          "e.g. fd/annotations/instances_train.json of spinenet make-dataset")) ||
        (o->eval_ann && need_path(o->eval_ann, 0, "--eval-ann takes the COCO instances file of the "
                                  "--eval-data images")) ||
        (o->init && need_path(o->init, 0, "--init takes a spinenet safetensors file to start "
                              "from, e.g. the best.safetensors of an earlier run")) ||
        need_out(o->out, 1, "-o"))
        return 1;
    sn_train_config tc;
    sn_train_config_defaults(&tc);
    cli_model_opts mo = o->m;
    if (!mo.head) mo.head = det ? "retinanet" : "classifier";
    if (!mo.flavour) mo.flavour = det ? "garden" : "tpu"; /* tpu serves inputs such as 64x64 */
    if (!mo.size && !det) mo.size = 64;
    if (get_config(&mo, &tc.model)) return 1;
    if (!o->m.classes) tc.model.num_classes = 0; /* take the dataset's */
    const char *fm = det ? NULL : fmnist_dir(o->data);
    tc.task = det ? SN_TASK_DETECT : SN_TASK_CLASSIFY;
    tc.data = fm ? SN_TRAIN_DATA_FASHION_MNIST : SN_TRAIN_DATA_FOLDER;
    if (copy_path(tc.data_path, sizeof tc.data_path, fm ? fm : o->data, "--data")) return 1;
    if (o->eval_data && copy_path(tc.eval_path, sizeof tc.eval_path, o->eval_data, "--eval-data"))
        return 1;
    if (det) {
        if (copy_path(tc.ann_path, sizeof tc.ann_path, o->ann, "--ann")) return 1;
        if (o->eval_ann &&
            copy_path(tc.eval_ann_path, sizeof tc.eval_ann_path, o->eval_ann, "--eval-ann"))
            return 1;
        tc.det_aug.scale_min = (float)o->scale_min;
        tc.det_aug.scale_max = (float)o->scale_max;
    }
    tc.skip_bad = o->skip_bad;
    tc.strict = o->strict;
    if (o->no_flip) tc.aug.hflip = tc.det_aug.hflip = 0;
    tc.image_size = mo.size ? mo.size : tc.model.input_size;
    tc.batch = o->batch > 1 ? o->batch : det ? 8 : 32;
    tc.epochs = o->epochs;
    tc.steps = o->steps;
    int cosine = !o->schedule || strcmp(o->schedule, "cosine") == 0;
    if (!cosine && strcmp(o->schedule, "constant") != 0)
        return die("unknown --schedule '%s' (cosine or constant)", o->schedule);
    sn_lr_schedule_init(&tc.lr, cosine ? SN_LR_COSINE : SN_LR_CONSTANT, o->lr);
    tc.lr.warmup_steps = o->warmup_steps;
    tc.lr.warmup_init_lr = o->warmup_lr;
    sn_sgd_config_default(&tc.sgd);
    tc.sgd.momentum = o->momentum;
    tc.sgd.weight_decay = o->wd;
    tc.sgd.clip_norm = o->clip;
    tc.label_smoothing = (float)o->smoothing;
    tc.drop_path_rate = (float)o->drop;
    tc.aug.min_area = (float)o->min_area;
    tc.threads = o->threads;
    tc.replicas = o->replicas;
    if (tc.batch % tc.replicas != 0) {
        fprintf(stderr, "spinenet: error: --batch %d cannot be split into %d replicas: use a "
                "multiple of %d\n", tc.batch, tc.replicas, tc.replicas);
        return 1;
    }
    tc.seed = o->m.seed;
    snprintf(tc.out_dir, sizeof tc.out_dir, "%s", o->out);
    tc.checkpoint_every = o->checkpoint_every;
    tc.eval_every = o->eval_every;
    tc.resume = o->resume;
    if (o->init && copy_path(tc.init_path, sizeof tc.init_path, o->init, "--init")) return 1;
    progress_state ps = {isatty(STDOUT_FILENO), 0, NULL, NULL};
    tc.progress = on_progress;
    tc.log = on_log;
    tc.user = &ps;
    signal(SIGINT, on_sigint);
    sn_trainer *t = NULL;
    if (sn_trainer_create(&tc, &t) != SN_OK) return fail_status();
    char csv_path[SN_PATH_MAX + 16];
    snprintf(csv_path, sizeof csv_path, "%s/train_log.csv", o->out);
    ps.csv_path = csv_path;
    ps.csv = csv_open(csv_path, det, o->resume, sn_trainer_step(t));
    if (!ps.csv)
        fprintf(stderr, "spinenet: warning: %s: cannot write the training log (%s); training "
                "goes on without it\n", csv_path, strerror(errno));
    double t0 = now_s();
    sn_status st = sn_trainer_run(t);
    if (ps.csv) fclose(ps.csv);
    if (st != SN_OK) {
        fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
        sn_trainer_free(t);
        return 1;
    }
    char best[64] = "no evaluation";
    if (sn_trainer_best_metric(t) >= 0)
        snprintf(best, sizeof best, "best eval %s %.2f%%", det ? "AP" : "top-1",
                 100 * sn_trainer_best_metric(t));
    printf("%s after %lld steps in %.1f s; %s; checkpoints in %s\n", g_stop ? "stopped" : "done",
           (long long)sn_trainer_step(t), now_s() - t0, best, o->out);
    sn_trainer_free(t);
    return 0;
}

const cli_command cmd_train = {
    .name = "train",
    .summary = "train a classifier (Fashion-MNIST or an image folder) or, with --task detect, "
               "a RetinaNet detector on COCO-format data; checkpoints and OUTDIR/train_log.csv",
    .usage = "spinenet train --data fashion-mnist[:DIR] -o OUTDIR [flags]\n"
             "spinenet train --data DIR [--eval-data DIR] -o OUTDIR [flags]\n"
             "spinenet train --task detect --data IMAGEDIR --ann ANN.json -o OUTDIR [flags]",
    .about = "Trains a classifier on Fashion-MNIST or an image folder (one subfolder per "
             "class) or, with --task detect, a RetinaNet detector on COCO-format data. "
             "Writes OUTDIR/last.safetensors (every --checkpoint-every steps and at the end), "
             "OUTDIR/best.safetensors (the checkpoint of the best evaluation: top-1, or COCO "
             "AP for a detector) and OUTDIR/train_log.csv (one row per step: step, epoch, lr, "
             "loss, loss_cls, loss_box, train_top1, images_per_s and eval_top1, eval_top5 or "
             "eval_AP, eval_AP50; spinenet plot draws it). Ctrl-C stops cleanly after writing "
             "last.safetensors; --resume continues from it.",
    .examples = "spinenet train --data fashion-mnist --model spinenet-mobile-49xs --act relu "
                "--size 64 --batch 64 \\\n"
                "    --epochs 7 --lr 0.2 --warmup-steps 200 --min-crop-area 1 --threads 2 "
                "--seed 1 -o runs/fm\n"
                "spinenet train --task detect --model spinenet-mobile-49xs --size 256 --batch 16 "
                "--steps 2000 \\\n"
                "    --data fd/train --ann fd/annotations/instances_train.json "
                "--eval-data fd/val \\\n"
                "    --eval-ann fd/annotations/instances_val.json --eval-every 500 -o run\n"
                "spinenet plot runs/fm/train_log.csv -o curves.png",
    CLI_PARTS(CLI_POS_NONE),
};
