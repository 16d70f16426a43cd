/* spinenet train: a classifier (Fashion-MNIST or an image folder) or a RetinaNet detector
 * (COCO-format data), with checkpoints, OUTDIR/train_log.csv and a progress line. */
#define _XOPEN_SOURCE 700 /* realpath, for the absolute paths of run.json */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "core.h"
#include "dist.h"
#include "trainer.h"

typedef struct {
    cli_model_opts m;
    const char *task, *data, *ann, *eval_data, *eval_ann, *init, *out, *schedule;
    int batch, epochs, steps, warmup_steps, replicas, checkpoint_every, eval_every;
    int no_flip, resume, force, skip_bad, strict, threads, sync_bn, no_sync_bn;
    double lr, warmup_lr, momentum, wd, clip, smoothing, drop, min_area, scale_min, scale_max;
} opts;

/* 1 for --batch means the default too (see its help). */
static const opts k_defaults = {
    .m = CLI_MODEL_DEFAULTS, .batch = 1, .epochs = 1, .replicas = 1, .checkpoint_every = 500,
    .threads = 1, .lr = 0.1, .momentum = 0.9, .wd = 4e-5, .smoothing = 0.1, .min_area = 0.08,
    .scale_min = 0.5, .scale_max = 2.0};

static const cli_flag k_flags[] = {
    FSTR("--task", "T", task, "classify, or detect (a RetinaNet detector on COCO-format data)",
         "classify; detect when --ann or --eval-ann is given"),
    FSTR("--data", "SPEC", data,
         "fashion-mnist, fashion-mnist:DIR or a folder with one subfolder per class; with --task "
         "detect, the image folder of --ann", "required"),
    FSTR("--ann", "ANN.json", ann, "COCO instances file of the --data images (detection)",
         "required with --task detect"),
    FSTR("--eval-data", "DIR", eval_data,
         "folder of evaluation images (detection: those of --eval-ann)",
         "none: no evaluation, but fashion-mnist evaluates on its test images; required with "
         "--eval-ann"),
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
            "continue from OUTDIR/last.safetensors (its step, optimizer and random state) with the "
            "settings of OUTDIR/run.json: only -o is needed; a flag that contradicts them is "
            "refused, except --steps, --epochs, --threads, --checkpoint-every and --eval-every",
            "off"),
    FSWITCH("--force", force,
            "start a new run in an OUTDIR that holds one: its checkpoints, training log and "
            "settings are removed first", "off: such an OUTDIR is refused"),
    CLI_SKIP_BAD_FLAG,
    CLI_STRICT_FLAG,
    FSWITCH("--sync-bn", sync_bn,
            "under mpirun: batch-norm normalises with the statistics of the whole batch, summed "
            "over the processes, as one process does (the default); with --replicas R: the "
            "same over the R parts (then exactly what R processes of one thread compute)",
            "on under mpirun, off with --replicas"),
    FSWITCH("--no-sync-bn", no_sync_bn,
            "under mpirun: each process's batch-norm uses its own slice of the batch (like "
            "--replicas; fewer messages, other results)", "off"),
    FINT("--threads", "T", threads, 0, 1024,
         "threads of the kernels (with --replicas: of the evaluation); under mpirun, of each "
         "process; 0: all cores", NULL),
    FSEED(m.seed, "seed of the initialisation, the data order, the augmentation and stochastic "
          "depth", NULL),
};

/* The signal that asked the run to stop (SIGINT: Ctrl-C, SIGTERM: kill, a job scheduler), 0
 * while none did: the run saves its checkpoint and exits 128 + that signal, as a shell reports
 * a program the signal killed, so that `train && eval` does not go on. */
static volatile sig_atomic_t g_stop;
static void on_stop_signal(int sig) { g_stop = sig; }

typedef struct {
    int tty;
    double last_print;
    FILE *csv;           /* OUTDIR/train_log.csv, one row per step (NULL: not written) */
    const char *csv_path;
    double train_s0;     /* the earlier sessions' training seconds (the log's train_s at the
                          * resumed step); NAN when unknown: train_s is then left empty */
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
    if (!isnan(ps->train_s0)) snprintf(f[5], sizeof f[5], "%.3f", ps->train_s0 + p->train_s);
    int bad = fprintf(ps->csv, "%lld,%lld,%.6g,%.6g,%s,%s,%s,%.4g,%s,%s,%s\n", (long long)p->step,
                      (long long)p->epoch + 1, p->lr, p->loss, f[0], f[1], f[2], p->images_per_s,
                      f[5], f[3], f[4]) < 0;
    /* On disk before each checkpoint: a run killed later resumes from that checkpoint and
     * finds its row (and its train_s) in the log. */
    if (!bad && (p->evaluated || p->checkpoint || p->step >= p->total_steps))
        bad = fflush(ps->csv) != 0;
    if (bad) {
        fprintf(stderr, "spinenet: warning: %s: cannot write the training log (%s); training "
                "goes on without it\n", ps->csv_path, strerror(errno));
        fclose(ps->csv);
        ps->csv = NULL;
    }
}

#define CSV_HEAD "step,epoch,lr,loss,loss_cls,loss_box,train_top1,images_per_s,"
#define CSV_HEAD_NEW CSV_HEAD "train_s,"

/* Opens OUTDIR/train_log.csv: a new file for a new run; when resuming from step `step`, the
 * rows up to that step are kept (later ones belong to steps that will be trained again), and
 * *train_s0 is the train_s of the row of that step: the training time of the sessions before
 * (NAN when the log has no such value: the new rows leave train_s empty rather than restart
 * it from 0). A log of a run started before the train_s column existed gets the column, empty
 * in its old rows. */
static FILE *csv_open(const char *path, int det, int resume, int64_t step, double *train_s0) {
    char *keep = NULL;
    size_t nkeep = 0;
    *train_s0 = resume ? NAN : 0.0;
    if (resume) {
        FILE *in = fopen(path, "rb");
        if (in) {
            char line[512], fixed[560];
            size_t cap = 0;
            int first = 1, old = 0;
            while (fgets(line, sizeof line, in)) {
                long long s = 0;
                /* A last line without its newline was cut by a kill mid-write: dropped. */
                if (!strchr(line, '\n')) continue;
                if (!first && (sscanf(line, "%lld,", &s) != 1 || s > step)) continue;
                const char *text = line;
                if (first) {
                    old = !strncmp(line, CSV_HEAD, strlen(CSV_HEAD)) &&
                          strncmp(line, CSV_HEAD_NEW, strlen(CSV_HEAD_NEW)) != 0;
                    if (old) {
                        snprintf(fixed, sizeof fixed, "%s%s", CSV_HEAD_NEW, line + strlen(CSV_HEAD));
                        text = fixed;
                    }
                } else {
                    /* The 9th field is train_s (an empty one is inserted into an old row). */
                    const char *c = line;
                    for (int k = 0; k < 8 && c; k++)
                        if ((c = strchr(c, ',')) != NULL) c++;
                    if (c && old) {
                        snprintf(fixed, sizeof fixed, "%.*s,%s", (int)(c - line), line, c);
                        text = fixed;
                    } else if (c && s == step) {
                        char *end;
                        const double v = strtod(c, &end);
                        *train_s0 = end != c && *end == ',' && v >= 0 ? v : NAN;
                    }
                }
                first = 0;
                size_t n = strlen(text);
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
                memcpy(keep + nkeep, text, n + 1);
                nkeep += n;
            }
            fclose(in);
        }
    }
    FILE *f = fopen(path, "wb");
    if (f && nkeep) fwrite(keep, 1, nkeep, f);
    else if (f)
        fprintf(f, CSV_HEAD_NEW "%s\n", det ? "eval_AP,eval_AP50" : "eval_top1,eval_top5");
    free(keep);
    if (f) fflush(f);
    return f;
}

/* One line per report: redrawn in place on a terminal, plain lines every few seconds otherwise. */
static int on_progress(void *user, const sn_train_progress *p) {
    progress_state *ps = user;
    /* Under mpirun rank 0 reports; the others only pass on a stop they were asked for. */
    if (sn_dist_rank() != 0) return g_stop ? 1 : 0;
    csv_row(ps, p);
    /* A stop writes a checkpoint at this step too: its row goes to disk first. */
    if (g_stop && ps->csv) fflush(ps->csv);
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
    /* Under mpirun the other ranks' news is rank 0's too: they print warnings only. */
    if (level == SN_LOG_INFO && sn_dist_rank() != 0) return;
    fprintf(stderr, "spinenet: %s%s\n", level == SN_LOG_WARN ? "warning: " : "", msg);
}

/* The files of a run in OUTDIR: a new run without --resume would overwrite some and keep
 * others (an old best.safetensors beside the new last.safetensors), so they go together. */
static const char *const k_run_files[] = {"last.safetensors", "best.safetensors", "train_log.csv",
                                          "run.json"};
#define N_RUN_FILES (int)(sizeof k_run_files / sizeof k_run_files[0])

/* The run files that exist in dir, as "a, b" into list (empty: none). */
static void run_files_in(const char *dir, char *list, size_t n) {
    list[0] = 0;
    for (int i = 0; i < N_RUN_FILES; i++) {
        char p[SN_PATH_MAX + 32];
        snprintf(p, sizeof p, "%s/%s", dir, k_run_files[i]);
        if (access(p, F_OK) == 0)
            snprintf(list + strlen(list), n - strlen(list), "%s%s", list[0] ? ", " : "",
                     k_run_files[i]);
    }
}

/* --force: the old run's files go before the new run writes any; 1 after the error. */
static int remove_run_files(const char *dir) {
    for (int i = 0; i < N_RUN_FILES; i++) {
        char p[SN_PATH_MAX + 32];
        snprintf(p, sizeof p, "%s/%s", dir, k_run_files[i]);
        if (unlink(p) != 0 && errno != ENOENT) {
            fprintf(stderr, "spinenet: error: %s: cannot remove (--force): %s\n", p,
                    strerror(errno));
            return 1;
        }
    }
    return 0;
}

/* ---- OUTDIR/run.json: the run's settings ------------------------------------------------ */

/* {"format": 1, "flags": {"--task": "classify", "--lr": 0.1, "--no-flip": false, ...}}: every
 * flag of the table but -o, --resume and --force, resolved (the task, head, flavour, size,
 * batch and schedule a default stood for; paths made absolute, so that --resume works from
 * another folder), as a command line would give it. */
#define RUN_JSON_FORMAT 1

/* What a resumed run may change: how long it goes on, how often it evaluates and saves, and
 * the threads of this machine. */
static const char *const k_may_change[] = {"--steps", "--epochs", "--threads", "--checkpoint-every",
                                           "--eval-every"};

/* A float of the model's config as the decimal a person would type (0.99, not the
 * 0.99000000953674316 of its double), so that giving that value again is no contradiction. */
static double float_value(float f) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)f);
    return strtod(buf, NULL);
}

/* Equal settings: numbers to 12 digits (run.json writes 15), the rest exactly. */
static int same_value(const json_t *a, const json_t *b) {
    if (json_is_number(a) && json_is_number(b)) {
        const double x = json_number_value(a), y = json_number_value(b);
        return fabs(x - y) <= 1e-12 * fmax(fabs(x), fabs(y));
    }
    return json_equal((json_t *)a, (json_t *)b);
}

/* The flag's first spelling ("--lr"), the key in run.json. */
static void flag_name(const cli_flag *f, char *buf, size_t n) {
    size_t len = strcspn(f->names, ",");
    if (len >= n) len = n - 1;
    memcpy(buf, f->names, len);
    buf[len] = 0;
}

static int not_recorded(const char *name) {
    return strcmp(name, "-o") == 0 || strcmp(name, "--resume") == 0 || strcmp(name, "--force") == 0;
}

static int may_change(const char *name) {
    for (size_t i = 0; i < sizeof k_may_change / sizeof k_may_change[0]; i++)
        if (strcmp(name, k_may_change[i]) == 0) return 1;
    return 0;
}

/* A path flag's value made absolute where it names a file or folder that exists (the
 * fashion-mnist spec stays as it is); buf holds it. */
static const char *abs_value(const char *name, const char *v, char *buf) {
    static const char *const paths[] = {"--data", "--ann", "--eval-data", "--eval-ann", "--init",
                                        "--block-spec"};
    int is_path = 0;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) is_path |= !strcmp(name, paths[i]);
    if (!v || !is_path) return v;
    if (strcmp(name, "--data") == 0 && fmnist_dir(v)) {
        if (strncmp(v, "fashion-mnist:", 14) != 0) return v;
        char dir[PATH_MAX];
        if (!realpath(v + 14, dir)) return v;
        snprintf(buf, PATH_MAX + 16, "fashion-mnist:%s", dir);
        return buf;
    }
    return realpath(v, buf) ? buf : v;
}

/* The flag's value in o as run.json holds it; NULL when it cannot be (not UTF-8). */
static json_t *flag_json(const cli_flag *f, const char *name, const opts *o) {
    const char *field = (const char *)o + f->field;
    char buf[PATH_MAX + 16];
    switch (f->kind) {
    case CLI_STR: {
        const char *v = abs_value(name, *(const char *const *)field, buf);
        return v ? json_string(v) : json_null();
    }
    case CLI_INT: return json_integer(*(const int *)field);
    case CLI_NUM: return json_real(*(const double *)field);
    case CLI_SEED: /* a string: JSON integers here stop at 2^63 */
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)*(const uint64_t *)field);
        return json_string(buf);
    case CLI_SWITCH: return json_boolean(*(const int *)field);
    case CLI_HELP: break;
    }
    return NULL;
}

/* A value of run.json as the command line or the help would say it. */
static void value_text(const json_t *v, int is_switch, char *buf, size_t n) {
    if (json_is_string(v)) snprintf(buf, n, "%s", json_string_value(v));
    else if (json_is_integer(v)) snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) snprintf(buf, n, "%g", json_real_value(v));
    else if (json_is_boolean(v)) snprintf(buf, n, "%s", json_is_true(v) ? "on" : "off");
    else snprintf(buf, n, "%s", is_switch ? "off" : "none");
}

/* --resume: the flags not on the command line come from OUTDIR/run.json; one given there must
 * say what the run says, unless it is one a run may change. *root keeps the strings alive
 * (json_decref after the run). 0 when there is no run.json (a run of an older spinenet: the
 * command line alone, as then), else the exit status after the error. */
static int take_run_json(const char *dir, opts *o, json_t **root) {
    char path[SN_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/run.json", dir);
    *root = NULL;
    if (access(path, F_OK) != 0) return 0;
    json_error_t je;
    json_t *r = json_load_file(path, 0, &je);
    json_t *flags = r ? json_object_get(r, "flags") : NULL;
    if (!json_is_object(flags)) {
        fprintf(stderr, "spinenet: error: %s: %s (the settings of the run --resume continues)\n",
                path, r ? "no \"flags\" object" : je.text);
        json_decref(r);
        return 1;
    }
    *root = r;
    for (int i = 0; i < (int)(sizeof k_flags / sizeof k_flags[0]); i++) {
        const cli_flag *f = &k_flags[i];
        char name[32];
        flag_name(f, name, sizeof name);
        json_t *saved = json_object_get(flags, name);
        if (not_recorded(name) || !saved) continue;
        char *field = (char *)o + f->field;
        const int sw = f->kind == CLI_SWITCH;
        if (cli_flag_given(f->field)) {
            if (may_change(name)) continue;
            json_t *now = flag_json(f, name, o);
            const int same = now && same_value(now, saved);
            if (!same) {
                char was[PATH_MAX + 16], is[PATH_MAX + 16];
                value_text(saved, sw, was, sizeof was);
                value_text(now, sw, is, sizeof is);
                if (sw)
                    fprintf(stderr, "spinenet: error: %s contradicts the run in %s (run.json: %s "
                            "%s); --resume continues with the run's settings: leave %s out, or "
                            "start a new run\n", name, dir, name, was, name);
                else
                    fprintf(stderr, "spinenet: error: %s %s contradicts the run in %s (run.json: "
                            "%s %s); --resume continues with the run's settings: leave %s out, "
                            "or start a new run\n", name, is, dir, name, was, name);
            }
            json_decref(now);
            if (!same) return 2;
            continue;
        }
        int ok = 1;
        switch (f->kind) {
        case CLI_STR:
            if ((ok = json_is_string(saved) || json_is_null(saved)))
                *(const char **)field = json_string_value(saved);
            break;
        case CLI_INT:
            if ((ok = json_is_integer(saved))) *(int *)field = (int)json_integer_value(saved);
            break;
        case CLI_NUM:
            if ((ok = json_is_number(saved))) *(double *)field = json_number_value(saved);
            break;
        case CLI_SEED: {
            const char *s = json_string_value(saved);
            char *end = NULL;
            if ((ok = s && *s)) *(uint64_t *)field = strtoull(s, &end, 10);
            ok = ok && !*end;
            break;
        }
        case CLI_SWITCH:
            if ((ok = json_is_boolean(saved))) *(int *)field = json_is_true(saved);
            break;
        case CLI_HELP: break;
        }
        if (!ok) {
            fprintf(stderr, "spinenet: error: %s: the value of %s is not of its kind\n", path, name);
            return 1;
        }
    }
    return 0;
}

/* Writes OUTDIR/run.json (saved whole, sn_save_open) from the resolved options; 1 after the
 * error. */
static int write_run_json(const char *dir, const opts *o) {
    char path[SN_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/run.json", dir);
    json_t *flags = json_object(), *root = json_object();
    int bad = !flags || !root || json_object_set_new(root, "format", json_integer(RUN_JSON_FORMAT));
    for (int i = 0; !bad && i < (int)(sizeof k_flags / sizeof k_flags[0]); i++) {
        char name[32];
        flag_name(&k_flags[i], name, sizeof name);
        if (not_recorded(name)) continue;
        json_t *v = flag_json(&k_flags[i], name, o);
        bad = !v || json_object_set_new(flags, name, v);
    }
    if (!bad) bad = json_object_set(root, "flags", flags);
    json_decref(flags);
    sn_save_file out;
    sn_status st = bad ? sn_error(SN_ERR_INVALID_ARG, "%s: a setting cannot be written as JSON "
                                  "(a path that is not UTF-8?)", path)
                       : sn_save_open(path, &out);
    if (st == SN_OK)
        st = sn_save_close(&out, json_dumpf(root, out.f, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                                                          JSON_REAL_PRECISION(15)) ||
                                         fputc('\n', out.f) == EOF
                                     ? sn_error(SN_ERR_IO, "%s: write error", path)
                                     : SN_OK);
    json_decref(root);
    return st == SN_OK ? 0 : fail_status();
}

static int copy_path(char *dst, size_t n, const char *src, const char *flag) {
    if (strlen(src) >= n) return usage_error("%s: path too long", flag);
    snprintf(dst, n, "%s", src);
    return 0;
}

/* Under mpirun each process checks its command line and its files on its own (a host may lack
 * the data or hold an older run): they agree before any of them goes on to the trainer, whose
 * collectives would otherwise wait for a process that has gone. Every process calls it at the
 * same points with its exit status so far (0: it goes on); returns the status to exit with. */
static int g_started; /* train() reached its first agreement */
static int agree_rc(int rc, const char *what) {
    if (sn_dist_size() <= 1) return rc;
    int32_t v[2] = {rc ? sn_dist_size() - sn_dist_rank() : 0, rc};
    if (sn_dist_max_i32(v, 2) != SN_OK) {
        fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
        return 1;
    }
    if (v[0] && !rc)
        fprintf(stderr, "spinenet: error: rank %d stopped %s (its message says why); every rank "
                "stops\n", sn_dist_size() - v[0], what);
    return rc ? rc : v[0] ? (v[1] ? v[1] : 1) : 0;
}

static int train(const opts *o) {
    int det;
    if (task_of(o->task, &det)) return 2;
    /* COCO annotations mean detection, as eval infers it from --gt; a classifier would ignore
     * them without a word. */
    if (!o->task && (o->ann || o->eval_ann)) det = 1;
    if (!det && (o->ann || o->eval_ann))
        return usage_error("%s takes the COCO annotations of a detector, which --task classify "
                           "does not train (leave out --task, or give --task detect)",
                           o->ann ? "--ann" : "--eval-ann");
    if (!o->data)
        return usage_error("%s", det ? "train --task detect needs --data IMAGEDIR --ann ANNOTATIONS.json"
                             : "train needs --data fashion-mnist or --data DIR");
    if (det && !o->ann) return usage_error("%s", "train --task detect needs --ann ANNOTATIONS.json (COCO "
                                         "instances format) for the --data images");
    if (det && o->eval_data && !o->eval_ann)
        return usage_error("%s", "--eval-data needs --eval-ann ANNOTATIONS.json for detection");
    /* Without it the library would look for the --eval-ann images among the --data ones, and
     * score the model on its training images where the names match. */
    if (o->eval_ann && !o->eval_data)
        return usage_error("%s", "--eval-ann needs --eval-data DIR (the folder of its images)");
    if (!o->out) return usage_error("%s", "train needs -o OUTDIR (where checkpoints go)");
    if (o->sync_bn && o->no_sync_bn)
        return usage_error("%s", "--sync-bn and --no-sync-bn contradict each other: give one");
    /* Started by mpirun but built without MPI, every process would train alone into OUTDIR. */
    const char *job = getenv("OMPI_COMM_WORLD_SIZE") ? getenv("OMPI_COMM_WORLD_SIZE")
                                                     : getenv("PMI_SIZE");
    if (!sn_dist_compiled() && job && atoi(job) > 1) {
        fprintf(stderr, "spinenet: error: started by mpirun as one of %d processes, but this "
                "spinenet was built without MPI: each would train alone into the same -o; "
                "rebuild with MPI (libopenmpi-dev, SN_MPI=ON) or run one process\n", atoi(job));
        return 2;
    }
    if (det && !(o->scale_max >= o->scale_min))
        return usage_error("%s", "--scale-max must be at least --scale-min");
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
    if (o->resume && o->force)
        return usage_error("%s", "--resume continues the run in -o OUTDIR and --force starts it "
                           "over: give one of them");
    char old_run[128];
    run_files_in(o->out, old_run, sizeof old_run);
    if (!o->resume && !o->force && old_run[0]) {
        fprintf(stderr, "spinenet: error: %s already holds a run (%s): continue it with --resume, "
                "start it over with --force (removes those files), or give another -o\n", o->out,
                old_run);
        return 2;
    }
    sn_train_config tc;
    sn_train_config_defaults(&tc);
    cli_model_opts mo = o->m;
    if (!mo.head) mo.head = det ? "retinanet" : "classifier";
    if (!mo.flavour) mo.flavour = det ? "garden" : "tpu"; /* tpu serves inputs such as 64x64 */
    if (!mo.size && !det) mo.size = 64;
    int rc = get_config(&mo, &tc.model);
    if (rc) return rc;
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
        return usage_error("unknown --schedule '%s' (cosine or constant)", o->schedule);
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
    tc.sync_bn = !o->no_sync_bn;
    tc.replicas_sync_bn = o->sync_bn; /* with --replicas: only when asked */
    tc.replicas = o->replicas;
    if (tc.batch % tc.replicas != 0) {
        fprintf(stderr, "spinenet: error: --batch %d cannot be split into %d replicas: use a "
                "multiple of %d\n", tc.batch, tc.replicas, tc.replicas);
        return 2;
    }
    tc.seed = o->m.seed;
    snprintf(tc.out_dir, sizeof tc.out_dir, "%s", o->out);
    tc.checkpoint_every = o->checkpoint_every;
    tc.eval_every = o->eval_every;
    tc.resume = o->resume;
    if (o->init && copy_path(tc.init_path, sizeof tc.init_path, o->init, "--init")) return 1;
    progress_state ps = {isatty(STDOUT_FILENO), 0, NULL, NULL, 0.0};
    tc.progress = on_progress;
    tc.log = on_log;
    tc.user = &ps;
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    sn_trainer *t = NULL;
    g_started = 1;
    if ((rc = agree_rc(0, "before training")) != 0) return rc;
    if (sn_trainer_create(&tc, &t) != SN_OK) return fail_status();
    const int rank = sn_dist_rank();
    if (rank != 0 && (rc = agree_rc(0, "writing the run's files")) != 0) {
        sn_trainer_free(t);
        return rc;
    }
    if (rank != 0) {
        /* Rank 0 writes the run's files (run.json, the log, the checkpoints) and reports. */
        sn_status st = sn_trainer_run(t);
        if (st != SN_OK) fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
        else if (sn_trainer_wait_s(t) > 0)
            fprintf(stderr, "spinenet: waited %.2f s for rank 0's evaluations and checkpoints\n",
                    sn_trainer_wait_s(t));
        sn_trainer_free(t);
        return st != SN_OK ? 1 : g_stop ? 128 + g_stop : 0;
    }
    if (sn_dist_size() > 1)
        printf("training on %d processes: %d images per step each, %s batch-norm\n",
               sn_dist_size(), tc.batch / sn_dist_size(), tc.sync_bn ? "synchronized" : "per-process");
    int frc = 0; /* rank 0's files; the other ranks wait for them (agree_rc) */
    if (o->force && old_run[0] && (frc = remove_run_files(o->out)) == 0)
        fprintf(stderr, "spinenet: --force: removed the earlier run's %s from %s\n", old_run,
                o->out);
    /* The settings as this run resolved them, for --resume and for whoever reads the run. */
    opts resolved = *o;
    resolved.task = det ? "detect" : "classify";
    resolved.m.head = mo.head;
    resolved.m.flavour = mo.flavour;
    resolved.m.size = tc.image_size;
    resolved.batch = tc.batch;
    resolved.schedule = cosine ? "cosine" : "constant";
    const sn_config *mc = sn_model_config(sn_trainer_model(t)); /* the variant's values */
    resolved.m.act = sn_act_name(mc->activation);
    resolved.m.classes = mc->num_classes;
    if (mc->endpoints_filters > 0) resolved.m.endpoints = mc->endpoints_filters;
    resolved.m.min_level = mc->min_level;
    resolved.m.max_level = mc->max_level;
    resolved.m.anchor_size = float_value(mc->anchor_size);
    resolved.m.bn_momentum = float_value(mc->bn_momentum);
    if (!frc) frc = write_run_json(o->out, &resolved);
    if ((rc = agree_rc(frc, "writing the run's files")) != 0) {
        sn_trainer_free(t);
        return rc;
    }
    char csv_path[SN_PATH_MAX + 16];
    snprintf(csv_path, sizeof csv_path, "%s/train_log.csv", o->out);
    ps.csv_path = csv_path;
    ps.csv = csv_open(csv_path, det, o->resume, sn_trainer_step(t), &ps.train_s0);
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
    return g_stop ? 128 + g_stop : 0;
}

static int run(const void *options, const char *const *args, int n_args) {
    opts o = *(const opts *)options;
    json_t *saved = NULL;
    int rc = o.resume && o.out && !o.force ? take_run_json(o.out, &o, &saved) : 0;
    if (!rc) rc = train(&o);
    if (!g_started) rc = agree_rc(rc, "before training"); /* it tells the others */
    json_decref(saved);
    return rc;
}

const cli_command cmd_train = {
    .name = "train",
    .summary = "train a classifier (Fashion-MNIST or an image folder) or, with --task detect, "
               "a RetinaNet detector on COCO-format data; checkpoints and OUTDIR/train_log.csv",
    .usage = "spinenet train --data fashion-mnist[:DIR] -o OUTDIR [flags]\n"
             "spinenet train --data DIR [--eval-data DIR] -o OUTDIR [flags]\n"
             "spinenet train --task detect --data IMAGEDIR --ann ANN.json -o OUTDIR [flags]",
    .about = "Trains a classifier on Fashion-MNIST or an image folder (one subfolder per "
             "class) or, with --task detect (implied by --ann), a RetinaNet detector on "
             "COCO-format data. "
             "Writes OUTDIR/last.safetensors (every --checkpoint-every steps and at the end), "
             "OUTDIR/best.safetensors (the checkpoint of the best evaluation: top-1, or COCO "
             "AP for a detector), OUTDIR/run.json (the run's settings, every flag resolved) and "
             "OUTDIR/train_log.csv (one row per step: step, epoch, lr, "
             "loss, loss_cls, loss_box, train_top1, images_per_s, train_s and eval_top1, eval_top5 or "
             "eval_AP, eval_AP50; spinenet plot draws it). Ctrl-C (or SIGTERM) stops cleanly after "
             "writing last.safetensors, with exit status 130 (143); --resume continues from it. "
             "Under mpirun (a build with MPI), the processes train one model together: --batch "
             "is the global batch, split among them, --threads each process's, rank 0 writes "
             "OUTDIR and reports (docs/guide.md: Training on several processes or machines).",
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
