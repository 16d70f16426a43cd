/* spinenet: the command-line tool. One function per subcommand; errors print
 * "spinenet: error: ..." and exit non-zero. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include <jansson.h>

#include "coco.h"
#include "coco_eval.h"
#include "core.h"
#include "data.h"
#include "det_train.h"
#include "draw.h"
#include "fashion_det.h"
#include "kernels.h"
#include "trainer.h"
#include "spinenet.h"

static int die(const char *fmt, const char *arg) {
    fprintf(stderr, "spinenet: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return 1;
}

static int fail_status(void) {
    fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
    return 1;
}

/* Options shared by the subcommands that build or load a model. */
typedef struct {
    const char *model, *flavour, *head, *act, *block_spec, *weights, *out, *tensor;
    const char *data, *eval_data, *schedule;
    const char *task, *ann, *eval_ann, *gt, *dets, *images, *init;
    double lr, warmup_lr, wd, momentum, clip, smoothing, drop, min_area, scale_min, scale_max, score,
        anchor_size, bn_momentum;
    int epochs, steps, warmup_steps, resume, skip_bad, no_flip, checkpoint_every, eval_every;
    int n_train, n_val, min_objects, max_objects;
    int classes, endpoints, size, height, width, min_level, max_level, p2, threads, replicas, runs, batch, json, nofold,
        warmup, top, profile;
    uint64_t seed;
    const char **files;
    int n_files;
} opts;

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "spinenet: error: %s needs an integer in %d..%d, got '%s'\n", flag, lo, hi,
                v ? v : "(nothing)");
        return -1;
    }
    *out = (int)x;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: spinenet <command> [options]\n"
            "\n"
            "commands:\n"
            "  info     per-block table of a model: level, type, channels, size, params, MACs\n"
            "  init     write a seeded, initialised model as safetensors\n"
            "  bench    time the forward pass\n"
            "  train    train a classifier (Fashion-MNIST or an image folder) or, with --task\n"
            "           detect, a RetinaNet detector on COCO-format data; with checkpoints\n"
            "  eval     top-1, top-5 and the confusion matrix of a classifier on a dataset, or COCO\n"
            "           AP/AR of a detector (--task detect) or of a results file (--gt --dets)\n"
            "  classify top-k classes of images with a classifier: --weights W IMAGE...\n"
            "  detect   boxes, classes and scores in images with a detector: --weights W IMAGE...\n"
            "  make-dataset fashion-det --out DIR   the built-in multi-scale detection set\n"
            "  version  print the version\n"
            "\n"
            "model options (info, init, bench):\n"
            "  --model NAME        spinenet-49s, spinenet-49 (default), spinenet-96, spinenet-143,\n"
            "                      spinenet-143l, spinenet-190, spinenet-mobile-49, -49s, -49xs\n"
            "  --weights FILE      load a model from safetensors instead of building one\n"
            "  --flavour F         garden (default) or tpu\n"
            "  --head H            retinanet (default), classifier or none\n"
            "  --act A             relu, swish or hswish (default: the variant's)\n"
            "  --classes N         classes of the head (default 91 retinanet, 1001 classifier)\n"
            "  --endpoints-filters N  endpoint width (default: the variant's scaling map)\n"
            "  --min-level L       lowest endpoint level (default 3)\n"
            "  --max-level L       highest endpoint level (default 7)\n"
            "  --p2                also build the level-2 output row and P2 (garden)\n"
            "  --block-spec FILE   read the block-spec table from FILE (docs/blockspec.md)\n"
            "  --size S            square input size (default: the variant's)\n"
            "  --height H --width W  a non-square input\n"
            "\n"
            "info:  [--json]                       JSON: {\"params\": N, \"macs\": N, ...}\n"
            "init:  -o FILE [--seed N (default 0)]\n"
            "bench: [--threads T (default 1)] [--runs N (default 10)] [--batch B (default 1)]\n"
            "       [--warmup N (default 1)] [--no-fold] [--json]\n"
            "       [--profile (then N more runs, timed layer by layer: time and GFLOP/s per\n"
            "        layer shape and per op, largest first)]\n"
            "train: --data fashion-mnist[:DIR] | --data DIR (one subfolder per class)\n"
            "       [--eval-data DIR (folders; fashion-mnist uses its t10k split)] -o OUTDIR\n"
            "       [--model M] [--flavour F (tpu serves any size >= 64)] [--act A] [--size S (64)]\n"
            "       [--batch B (32)] [--epochs E (1) | --steps N] [--lr LR (0.1)]\n"
            "       [--schedule cosine|constant (cosine)] [--warmup-steps N (0)] [--warmup-lr LR (0)]\n"
            "       [--momentum M (0.9)] [--weight-decay WD (4e-5, on kernels)] [--clip NORM (off)]\n"
            "       [--label-smoothing S (0.1)] [--drop-rate R (0)] [--threads T (1)] [--seed N (0)]\n"
            "       [--min-crop-area A (0.08: random crops keep A..1 of the image; 1: no cropping)]\n"
            "       [--checkpoint-every N (500)] [--eval-every N (0: each epoch; -1: never)]\n"
            "       [--skip-bad (leave out unreadable images)] [--resume (continue OUTDIR/last)]\n"
            "       [--no-flip (no random horizontal mirroring; default: on)]\n"
            "       [--init FILE (start from the tensors of FILE that match by name and shape,\n"
            "        e.g. a classifier's backbone for a detector)]\n"
            "       [--bn-momentum M (the flavour's: garden 0.99, tpu 0.997, tpu classifier 0.9)]\n"
            "       [--replicas R (1: split each batch into R parts trained side by side, one\n"
            "        thread each, each with its own batch-norm statistics; faster for small\n"
            "        models; a multiple of R as --batch)]\n"
            "       writes OUTDIR/last.safetensors and OUTDIR/best.safetensors; Ctrl-C stops cleanly\n"
            "train --task detect: --data IMAGEDIR --ann ANN.json (COCO instances) -o OUTDIR\n"
            "       [--eval-data IMAGEDIR --eval-ann ANN.json (evaluated as COCO AP)]\n"
            "       [--model M (spinenet-49)] [--flavour F (garden)] [--size S (the variant's;\n"
            "        the input is S padded to a multiple of 128)] [--batch B (8)]\n"
            "       [--anchor-size A (the variant's: 3, or 4 for 143/190)]\n"
            "       [--scale-min A (0.5)] [--scale-max B (2.0): scale jitter with random crop]\n"
            "       and the training options above (lr, schedule, steps, threads, seed, resume...);\n"
            "       best.safetensors is the checkpoint of the best eval AP\n"
            "eval: --weights FILE --data fashion-mnist[:DIR] | --data DIR [--size S] [--batch B]\n"
            "       [--threads T] [--json]\n"
            "eval --gt ANN.json --dets RESULTS.json [--json]   score a COCO results file\n"
            "eval --task detect --weights FILE --gt ANN.json --images DIR [--size S] [--batch B (1)]\n"
            "       [--threads T] [-o RESULTS.json (write the detections)] [--json]\n"
            "       --json prints {\"AP\", \"AP50\", \"AP75\", \"APs\", \"APm\", \"APl\", \"AR1\",\n"
            "       \"AR10\", \"AR100\", \"ARs\", \"ARm\", \"ARl\"}\n"
            "detect: --weights FILE [--size S (the model's)] [--score T (0.3: drawn and printed)]\n"
            "       [--threads T] [-o OUTDIR (.)] IMAGE...   writes OUTDIR/<name>.det.png (boxes,\n"
            "       class names, scores) and OUTDIR/<name>.det.json (every detection >= 0.05)\n"
            "make-dataset fashion-det --out DIR [--train-images N (3000)] [--val-images N (300)]\n"
            "       [--size S (256; items 12..200 px, the largest scaled down below 256)]\n"
            "       [--min-objects N (1)] [--max-objects N (12)] [--seed N (1)]\n"
            "       [--threads T] [--data FMNISTDIR (/usr/share/datasets/fashion-mnist)]\n"
            "classify: --weights FILE [--size S (default: the model's)] [--top K (default 5)]\n"
            "       [--threads T] IMAGE... (JPEG or PNG; resized to S x S, normalised as spec 7.6)\n");
}

static int parse_opts(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->model = "spinenet-49";
    o->threads = 1;
    o->replicas = 1;
    o->runs = 10;
    o->batch = 1;
    o->min_level = -1;
    o->max_level = -1;
    o->warmup = 1;
    o->top = 5;
    o->epochs = 1;
    o->lr = 0.1;
    o->momentum = 0.9;
    o->wd = 4e-5;
    o->smoothing = 0.1;
    o->checkpoint_every = 500;
    o->eval_every = 0;
    o->min_area = 0.08;
    o->n_train = -1;
    o->n_val = -1;
    o->scale_min = 0.5;
    o->scale_max = 2.0;
    o->score = 0.3;
    o->files = calloc((size_t)argc, sizeof *o->files);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define STR(flag, field)                                                         \
    if (strcmp(a, flag) == 0) {                                                  \
        if (!v) return die("%s needs a value", flag), -1;                        \
        o->field = v;                                                            \
        i++;                                                                     \
        continue;                                                                \
    }
#define INT(flag, field, lo, hi)                                                 \
    if (strcmp(a, flag) == 0) {                                                  \
        if (parse_int(flag, v, lo, hi, &o->field)) return -1;                    \
        i++;                                                                     \
        continue;                                                                \
    }
        STR("--model", model)
        STR("--flavour", flavour)
        STR("--head", head)
        STR("--act", act)
        STR("--block-spec", block_spec)
        STR("--weights", weights)
        STR("--data", data)
        STR("--eval-data", eval_data)
        STR("--schedule", schedule)
        STR("--task", task)
        STR("--ann", ann)
        STR("--eval-ann", eval_ann)
        STR("--gt", gt)
        STR("--dets", dets)
        STR("--images", images)
        STR("--init", init)
        STR("-o", out)
        STR("--output", out)
        STR("--out", out)
        INT("--classes", classes, 1, 100000)
        INT("--endpoints-filters", endpoints, 1, 4096)
        INT("--size", size, 1, 16384)
        INT("--height", height, 1, 16384)
        INT("--width", width, 1, 16384)
        INT("--min-level", min_level, 2, 7)
        INT("--max-level", max_level, 2, 7)
        INT("--threads", threads, 0, 1024)
        INT("--replicas", replicas, 1, 16)
        INT("--runs", runs, 1, 100000)
        INT("--batch", batch, 1, 65536)
        INT("--warmup", warmup, 0, 1000)
        INT("--top", top, 1, 100000)
        INT("--epochs", epochs, 1, 100000)
        INT("--steps", steps, 1, 1000000000)
        INT("--warmup-steps", warmup_steps, 0, 1000000000)
        INT("--checkpoint-every", checkpoint_every, 0, 1000000000)
        INT("--eval-every", eval_every, -1, 1000000000)
        INT("--train-images", n_train, 0, 10000000)
        INT("--val-images", n_val, 0, 10000000)
        INT("--min-objects", min_objects, 1, SN_FASHION_DET_MAX_OBJECTS)
        INT("--max-objects", max_objects, 1, SN_FASHION_DET_MAX_OBJECTS)
#define DBL(flag, field, lo, hi)                                                 \
    if (strcmp(a, flag) == 0) {                                                  \
        char *end_;                                                              \
        double x_ = v ? strtod(v, &end_) : 0;                                    \
        if (!v || end_ == v || *end_ || !(x_ >= lo && x_ <= hi)) {               \
            fprintf(stderr, "spinenet: error: %s needs a number in %g..%g, got '%s'\n", \
                    flag, (double)lo, (double)hi, v ? v : "(nothing)");         \
            return -1;                                                           \
        }                                                                        \
        o->field = x_;                                                           \
        i++;                                                                     \
        continue;                                                                \
    }
        DBL("--lr", lr, 0.0, 100.0)
        DBL("--warmup-lr", warmup_lr, 0.0, 100.0)
        DBL("--weight-decay", wd, 0.0, 1.0)
        DBL("--momentum", momentum, 0.0, 0.9999)
        DBL("--clip", clip, 0.0, 1e9)
        DBL("--label-smoothing", smoothing, 0.0, 0.99)
        DBL("--drop-rate", drop, 0.0, 0.99)
        DBL("--min-crop-area", min_area, 0.01, 1.0)
        DBL("--scale-min", scale_min, 0.01, 10.0)
        DBL("--scale-max", scale_max, 0.01, 10.0)
        DBL("--score", score, 0.0, 1.0)
        DBL("--anchor-size", anchor_size, 0.01, 64.0)
        DBL("--bn-momentum", bn_momentum, 0.0001, 0.9999)
#undef DBL
        if (strcmp(a, "--seed") == 0) {
            char *end;
            if (!v) return die("%s needs a value", a), -1;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end) return die("--seed needs a non-negative integer, got '%s'", v), -1;
            o->seed = s;
            i++;
            continue;
        }
        if (strcmp(a, "--json") == 0) { o->json = 1; continue; }
        if (strcmp(a, "--p2") == 0) { o->p2 = 1; continue; }
        if (strcmp(a, "--no-fold") == 0) { o->nofold = 1; continue; }
        if (strcmp(a, "--profile") == 0) { o->profile = 1; continue; }
        if (strcmp(a, "--resume") == 0) { o->resume = 1; continue; }
        if (strcmp(a, "--skip-bad") == 0) { o->skip_bad = 1; continue; }
        if (strcmp(a, "--no-flip") == 0) { o->no_flip = 1; continue; }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
#undef STR
#undef INT
        if (a[0] != '-' && o->files) {
            o->files[o->n_files++] = a; /* positional: image files (classify) */
            continue;
        }
        fprintf(stderr, "spinenet: error: unknown option '%s' (see spinenet --help)\n", a);
        return -1;
    }
    return 0;
}

/* The config the options describe. */
static int get_config(const opts *o, sn_config *cfg) {
    if (sn_config_init(cfg, o->model) != SN_OK) return fail_status();
    if (o->flavour && sn_parse_flavour(o->flavour, &cfg->flavour) != SN_OK) return fail_status();
    if (o->head && sn_parse_head(o->head, &cfg->head) != SN_OK) return fail_status();
    if (o->act && sn_parse_act(o->act, &cfg->activation) != SN_OK) return fail_status();
    if (o->classes) cfg->num_classes = o->classes;
    if (o->endpoints) cfg->endpoints_filters = o->endpoints;
    if (o->min_level >= 0) cfg->min_level = o->min_level;
    if (o->max_level >= 0) cfg->max_level = o->max_level;
    cfg->p2 = o->p2;
    if (o->size) cfg->input_size = o->size;
    if (o->anchor_size > 0) cfg->anchor_size = (float)o->anchor_size;
    if (o->bn_momentum > 0) cfg->bn_momentum = (float)o->bn_momentum;
    if (o->block_spec) {
        if (strlen(o->block_spec) >= sizeof cfg->block_spec_path)
            return die("--block-spec path too long: %s", o->block_spec);
        snprintf(cfg->block_spec_path, sizeof cfg->block_spec_path, "%s", o->block_spec);
    }
    return 0;
}

/* Build the model the options describe, or load it from --weights. */
static int get_model(const opts *o, sn_model **m) {
    if (o->weights) {
        if (sn_model_load(o->weights, m) != SN_OK) return fail_status();
        return 0;
    }
    sn_config cfg;
    if (get_config(o, &cfg)) return 1;
    if (sn_model_create(&cfg, o->seed, m) != SN_OK) return fail_status();
    return 0;
}

static void input_dims(const opts *o, const sn_model *m, int *h, int *w) {
    int s = o->size ? o->size : sn_model_config(m)->input_size;
    *h = o->height ? o->height : s;
    *w = o->width ? o->width : s;
}

static void fmt_count(char *buf, size_t n, int64_t v) {
    if (v >= 1000000000LL)
        snprintf(buf, n, "%.2fG", (double)v / 1e9);
    else if (v >= 1000000LL)
        snprintf(buf, n, "%.2fM", (double)v / 1e6);
    else if (v >= 1000LL)
        snprintf(buf, n, "%.1fK", (double)v / 1e3);
    else
        snprintf(buf, n, "%lld", (long long)v);
}

static int cmd_info(const opts *o) {
    /* Without --weights the report needs shapes only: no weights are allocated. */
    sn_model *m = NULL;
    sn_config cfg;
    if (o->weights) {
        if (get_model(o, &m)) return 1;
        cfg = *sn_model_config(m);
    } else if (get_config(o, &cfg)) {
        return 1;
    }
    sn_config_resolve(&cfg);
    int s = o->size ? o->size : cfg.input_size;
    int h = o->height ? o->height : s, w = o->width ? o->width : s;
    int n_rows = 0;
    int64_t tp = 0, tm = 0;
    sn_status st = m ? sn_model_info(m, h, w, NULL, 0, &n_rows, &tp, &tm)
                     : sn_config_info(&cfg, h, w, NULL, 0, &n_rows, &tp, &tm);
    if (st != SN_OK) {
        sn_model_free(m);
        return fail_status();
    }
    sn_block_info *rows = calloc((size_t)n_rows, sizeof *rows);
    if (!rows) {
        sn_model_free(m);
        return die("%s", "out of memory");
    }
    if (m)
        sn_model_info(m, h, w, rows, n_rows, &n_rows, &tp, &tm);
    else
        sn_config_info(&cfg, h, w, rows, n_rows, &n_rows, &tp, &tm);
    const sn_config *c = &cfg;
    int64_t head_p = 0, head_m = 0;
    for (int i = 0; i < n_rows; i++)
        if (rows[i].index == -2) {
            head_p = rows[i].params;
            head_m = rows[i].macs;
        }
    if (o->json) {
        printf("{\"model\": \"%s\", \"flavour\": \"%s\", \"head\": \"%s\", \"activation\": \"%s\", "
               "\"height\": %d, \"width\": %d, \"num_classes\": %d, \"params\": %lld, \"macs\": %lld, "
               "\"backbone_params\": %lld, \"backbone_macs\": %lld, \"head_params\": %lld, "
               "\"head_macs\": %lld, \"blocks\": [",
               c->model, sn_flavour_name(c->flavour), sn_head_name(c->head),
               sn_act_name(c->activation), h, w, c->num_classes, (long long)tp, (long long)tm,
               (long long)(tp - head_p), (long long)(tm - head_m), (long long)head_p,
               (long long)head_m);
        for (int i = 0; i < n_rows; i++) {
            const sn_block_info *r = &rows[i];
            printf("%s{\"index\": %d, \"level\": %d, \"type\": \"%s\", \"channels\": %d, "
                   "\"height\": %d, \"width\": %d, \"params\": %lld, \"macs\": %lld, "
                   "\"parents\": [%d, %d], \"output\": %s}",
                   i ? ", " : "", r->index, r->level, r->type, r->channels, r->height, r->width,
                   (long long)r->params, (long long)r->macs, r->parents[0], r->parents[1],
                   r->is_output ? "true" : "false");
        }
        printf("]}\n");
    } else {
        printf("%s (%s flavour, %s head, %s), input %dx%d\n", c->model, sn_flavour_name(c->flavour),
               sn_head_name(c->head), sn_act_name(c->activation), h, w);
        printf("%6s %5s %-11s %8s %11s %10s %10s %9s %s\n", "block", "level", "type", "channels",
               "size", "params", "MACs", "parents", "out");
        for (int i = 0; i < n_rows; i++) {
            const sn_block_info *r = &rows[i];
            char idx[24], size[32], p[24], mc[24], par[32];
            if (r->index >= 0)
                snprintf(idx, sizeof idx, "%d", r->index);
            else
                snprintf(idx, sizeof idx, "%s", r->index == -1 ? "stem" : r->index == -2 ? "head" : "endp");
            if (r->index >= -1)
                snprintf(size, sizeof size, "%dx%d", r->height, r->width);
            else
                snprintf(size, sizeof size, "-");
            fmt_count(p, sizeof p, r->params);
            fmt_count(mc, sizeof mc, r->macs);
            if (r->parents[0] >= 0)
                snprintf(par, sizeof par, "%d,%d", r->parents[0], r->parents[1]);
            else
                snprintf(par, sizeof par, "-");
            printf("%6s %5d %-11s %8d %11s %10s %10s %9s %s\n", idx, r->level, r->type, r->channels,
                   size, p, mc, par, r->is_output ? "yes" : "");
        }
        printf("total: %lld params (%.2f M), %lld multiply-adds (%.2f G); backbone %.2f M / %.2f G, "
               "head %.2f M / %.2f G\n",
               (long long)tp, (double)tp / 1e6, (long long)tm, (double)tm / 1e9,
               (double)(tp - head_p) / 1e6, (double)(tm - head_m) / 1e9, (double)head_p / 1e6,
               (double)head_m / 1e9);
    }
    free(rows);
    sn_model_free(m);
    return 0;
}

static int cmd_init(const opts *o) {
    if (!o->out) return die("%s", "init needs -o FILE (where to write the model)");
    if (o->weights) return die("%s", "init builds a new model; --weights is not used here");
    sn_model *m = NULL;
    if (get_model(o, &m)) return 1;
    sn_status st = sn_model_save(m, o->out);
    sn_model_free(m);
    if (st != SN_OK) return fail_status();
    printf("wrote %s\n", o->out);
    return 0;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Layers of one shape (op, window, stride, groups, input and output size, activation) summed. */
typedef struct {
    char key[96];
    int count;
    int64_t macs;
    double seconds;
} prof_group;

static int cmp_group(const void *a, const void *b) {
    double x = ((const prof_group *)a)->seconds, y = ((const prof_group *)b)->seconds;
    return (x < y) - (x > y);
}

/* Groups the per-layer times of `runs` profiled runs by shape and prints them, largest first
 * (text), or appends them as "profile": [...] to the JSON object being printed. */
static int print_profile(sn_model *m, int json) {
    const int n = sn_model_profile(m, NULL, 0);
    sn_layer_profile *lp = calloc((size_t)(n > 0 ? n : 1), sizeof *lp);
    prof_group *gr = calloc((size_t)(n > 0 ? n : 1), sizeof *gr);
    prof_group ops[16];
    memset(ops, 0, sizeof ops);
    int ng = 0, nops = 0;
    if (!lp || !gr) {
        free(lp);
        free(gr);
        return die("%s", "out of memory");
    }
    sn_model_profile(m, lp, n);
    const long runs = n > 0 && lp[0].runs > 0 ? lp[0].runs : 1;
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const sn_layer_profile *p = &lp[i];
        char key[96];
        if (p->kh)
            snprintf(key, sizeof key, "%s %dx%d/%d%s %dx%dx%d -> %dx%dx%d %s", p->op, p->kh, p->kw,
                     p->stride, p->groups == 1 ? "" : (p->groups == p->in_c ? " dw" : " grouped"),
                     p->in_h, p->in_w, p->in_c, p->out_h, p->out_w, p->out_c, p->act);
        else
            snprintf(key, sizeof key, "%s %dx%dx%d -> %dx%dx%d %s", p->op, p->in_h, p->in_w, p->in_c,
                     p->out_h, p->out_w, p->out_c, p->act);
        if (p->fused) strncat(key, " (fused)", sizeof key - strlen(key) - 1);
        int g = 0;
        while (g < ng && strcmp(gr[g].key, key) != 0) g++;
        if (g == ng) {
            memcpy(gr[ng].key, key, sizeof key);
            ng++;
        }
        gr[g].count++;
        gr[g].macs += p->macs;
        gr[g].seconds += p->seconds / runs;
        int k = 0;
        const char *opk = p->kh ? (p->groups > 1 && p->groups == p->in_c ? "conv dw" :
                                   p->kh == 1 && p->kw == 1 ? "conv 1x1" : "conv kxk")
                                : p->fused ? "add (fused)" : p->op;
        while (k < nops && strcmp(ops[k].key, opk) != 0) k++;
        if (k == nops && nops < 16) {
            snprintf(ops[nops].key, sizeof ops[nops].key, "%s", opk);
            nops++;
        }
        if (k < nops) {
            ops[k].count++;
            ops[k].macs += p->macs;
            ops[k].seconds += p->seconds / runs;
        }
        total += p->seconds / runs;
    }
    qsort(gr, (size_t)ng, sizeof *gr, cmp_group);
    qsort(ops, (size_t)nops, sizeof *ops, cmp_group);
    if (json) {
        printf(", \"profile_runs\": %ld, \"profile\": [", runs);
        for (int g = 0; g < ng; g++)
            printf("%s{\"layer\": \"%s\", \"count\": %d, \"ms\": %.4f, \"gflops\": %.2f}",
                   g ? ", " : "", gr[g].key, gr[g].count, gr[g].seconds * 1e3,
                   gr[g].seconds > 0 ? 2.0 * (double)gr[g].macs / gr[g].seconds / 1e9 : 0.0);
        printf("]");
    } else {
        printf("\nprofile: %ld runs, %.1f ms per run in the layers\n", runs, total * 1e3);
        printf("%-16s %6s %10s %6s %10s\n", "op", "layers", "ms/run", "%", "GFLOP/s");
        for (int k = 0; k < nops; k++)
            printf("%-16s %6d %10.2f %6.1f %10.1f\n", ops[k].key, ops[k].count,
                   ops[k].seconds * 1e3, total > 0 ? 100.0 * ops[k].seconds / total : 0.0,
                   ops[k].seconds > 0 ? 2.0 * (double)ops[k].macs / ops[k].seconds / 1e9 : 0.0);
        printf("\n%-58s %6s %10s %6s %10s\n", "layer shape", "layers", "ms/run", "%", "GFLOP/s");
        for (int g = 0; g < ng && g < 30; g++)
            printf("%-58s %6d %10.2f %6.1f %10.1f\n", gr[g].key, gr[g].count,
                   gr[g].seconds * 1e3, total > 0 ? 100.0 * gr[g].seconds / total : 0.0,
                   gr[g].seconds > 0 ? 2.0 * (double)gr[g].macs / gr[g].seconds / 1e9 : 0.0);
        if (ng > 30) printf("(%d more shapes)\n", ng - 30);
    }
    free(lp);
    free(gr);
    return 0;
}

static int cmd_bench(const opts *o) {
    sn_model *m = NULL;
    if (get_model(o, &m)) return 1;
    int h, w;
    input_dims(o, m, &h, &w);
    int n_rows;
    int64_t tp, tm;
    if (sn_model_info(m, h, w, NULL, 0, &n_rows, &tp, &tm) != SN_OK ||
        sn_model_set_threads(m, o->threads) != SN_OK || sn_model_set_fold_bn(m, !o->nofold) != SN_OK ||
        sn_model_plan(m, o->batch, h, w) != SN_OK) {
        sn_model_free(m);
        return fail_status();
    }
    size_t count = (size_t)o->batch * (size_t)h * (size_t)w * 3;
    float *x = malloc(count * sizeof *x);
    double *t = malloc((size_t)o->runs * sizeof *t);
    if (!x || !t) {
        free(x);
        free(t);
        sn_model_free(m);
        return die("%s", "out of memory");
    }
    uint64_t s = 88172645463325252ULL;
    for (size_t i = 0; i < count; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    int rc = 0;
    for (int i = 0; i < o->warmup + o->runs && !rc; i++) {
        double t0 = now_s();
        if (sn_model_run(m, x) != SN_OK) rc = fail_status();
        if (i >= o->warmup) t[i - o->warmup] = now_s() - t0;
    }
    if (!rc) {
        qsort(t, (size_t)o->runs, sizeof *t, cmp_double);
        double med = o->runs % 2 ? t[o->runs / 2] : 0.5 * (t[o->runs / 2 - 1] + t[o->runs / 2]);
        double macs = (double)tm * o->batch;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double rss_mb = (double)ru.ru_maxrss / 1024.0;
        const sn_config *c = sn_model_config(m);
        double gflops = 2.0 * macs / med / 1e9;
        if (o->json)
            printf("{\"model\": \"%s\", \"height\": %d, \"width\": %d, \"batch\": %d, \"threads\": %d, "
                   "\"runs\": %d, \"median_ms\": %.3f, \"min_ms\": %.3f, \"max_ms\": %.3f, "
                   "\"macs\": %.0f, \"gflops\": %.2f, \"arena_mb\": %.1f, \"peak_rss_mb\": %.1f, "
                   "\"isa\": \"%s\"",
                   c->model, h, w, o->batch, o->threads, o->runs, med * 1e3, t[0] * 1e3,
                   t[o->runs - 1] * 1e3, macs, gflops,
                   (double)sn_model_arena_bytes(m) / 1048576.0, rss_mb, sn_isa_name(sn_isa_active()));
        else
            printf("%s %s %dx%d batch %d, %d thread(s): median %.1f ms over %d runs (min %.1f, max "
                   "%.1f), %.2f GMACs, %.1f GFLOP/s; arena %.1f MB, peak RSS %.1f MB; "
                   "kernels %s\n",
                   c->model, sn_head_name(c->head), h, w, o->batch, o->threads, med * 1e3, o->runs,
                   t[0] * 1e3, t[o->runs - 1] * 1e3, macs / 1e9, gflops,
                   (double)sn_model_arena_bytes(m) / 1048576.0, rss_mb, sn_isa_name(sn_isa_active()));
    }
    /* Layer by layer, in separate runs so the clock reads do not touch the timings above. */
    if (!rc && o->profile) {
        if (sn_model_set_profile(m, 1) != SN_OK) rc = fail_status();
        for (int i = 0; i < o->runs && !rc; i++)
            if (sn_model_run(m, x) != SN_OK) rc = fail_status();
        if (!rc) rc = print_profile(m, o->json);
    }
    if (!rc && o->json) printf("}\n");
    free(x);
    free(t);
    sn_model_free(m);
    return rc;
}

#define SN_FMNIST_DIR "/usr/share/datasets/fashion-mnist"

/* "fashion-mnist" or "fashion-mnist:DIR" -> the IDX folder; otherwise NULL (an image folder). */
static const char *fmnist_dir(const char *spec) {
    if (strcmp(spec, "fashion-mnist") == 0) return SN_FMNIST_DIR;
    if (strncmp(spec, "fashion-mnist:", 14) == 0) return spec + 14;
    return NULL;
}

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

static double now_s(void);

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
        if (p->best_top1 >= 0)
            snprintf(ev, sizeof ev, "  best %s %.2f%%", det ? "AP" : "top-1", 100 * p->best_top1);
        if (p->evaluated)
            snprintf(ev, sizeof ev, "  eval %s %.2f%% %s %.2f%% (best %.2f%%)",
                     det ? "AP" : "top-1", 100 * p->eval_top1, det ? "AP50" : "top-5",
                     100 * p->eval_top5, 100 * p->best_top1);
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

/* --task classify (default) or detect. */
static int task_of(const opts *o, int *det) {
    *det = o->task && strcmp(o->task, "detect") == 0;
    if (o->task && !*det && strcmp(o->task, "classify") != 0)
        return die("unknown --task '%s' (classify or detect)", o->task);
    return 0;
}

static int copy_path(char *dst, size_t n, const char *src, const char *flag) {
    if (strlen(src) >= n) return die("%s: path too long", flag);
    snprintf(dst, n, "%s", src);
    return 0;
}

static int cmd_train(const opts *o) {
    int det;
    if (task_of(o, &det)) return 1;
    if (!o->data)
        return die("%s", det ? "train --task detect needs --data IMAGEDIR --ann ANNOTATIONS.json"
                             : "train needs --data fashion-mnist or --data DIR");
    if (det && !o->ann) return die("%s", "train --task detect needs --ann ANNOTATIONS.json (COCO "
                                         "instances format) for the --data images");
    if (det && o->eval_data && !o->eval_ann)
        return die("%s", "--eval-data needs --eval-ann ANNOTATIONS.json for detection");
    if (!o->out) return die("%s", "train needs -o OUTDIR (where checkpoints go)");
    if (o->init && access(o->init, R_OK) != 0)
        return die("%s: cannot open it (--init FILE: the spinenet safetensors file to start "
                   "from)", o->init);
    if (det && !(o->scale_max >= o->scale_min))
        return die("%s", "--scale-max must be at least --scale-min");
    sn_train_config tc;
    sn_train_config_defaults(&tc);
    opts mo = *o;
    if (!o->head) mo.head = det ? "retinanet" : "classifier";
    if (!o->flavour) mo.flavour = det ? "garden" : "tpu"; /* tpu serves inputs such as 64x64 */
    if (!o->size && !det) mo.size = 64;
    if (get_config(&mo, &tc.model)) return 1;
    if (!o->classes) tc.model.num_classes = 0; /* take the dataset's */
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
    tc.seed = o->seed;
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
    if (sn_trainer_best_top1(t) >= 0)
        snprintf(best, sizeof best, "best eval %s %.2f%%", det ? "AP" : "top-1",
                 100 * sn_trainer_best_top1(t));
    printf("%s after %lld steps in %.1f s; %s; checkpoints in %s\n", g_stop ? "stopped" : "done",
           (long long)sn_trainer_step(t), now_s() - t0, best, o->out);
    sn_trainer_free(t);
    return 0;
}

static void print_coco_stats(const sn_coco_eval_result *r, int json) {
    if (json) {
        printf("{");
        for (int i = 0; i < SN_COCO_NUM_STATS; i++)
            printf("%s\"%s\": %.6f", i ? ", " : "", sn_coco_stat_name(i), r->stats[i]);
        printf("}\n");
        return;
    }
    for (int i = 0; i < SN_COCO_NUM_STATS; i++)
        printf(" %s = %.3f\n", sn_coco_stat_label(i), r->stats[i]);
}

static void coco_load_warnings(const char *path, const sn_coco *c) {
    for (int k = 0; k < SN_COCO_WARN_KINDS; k++)
        if (c->warn_count[k])
            fprintf(stderr, "spinenet: warning: %s: %lld annotations: %s (first: id %lld)\n", path,
                    (long long)c->warn_count[k], sn_coco_warning_text(k),
                    (long long)c->warn_first_id[k]);
}

static void eval_progress(void *user, int done, int total) {
    const int *tty = user;
    if (*tty) {
        fprintf(stderr, "\r\033[Kdetecting: %d/%d images", done, total);
        if (done == total) fprintf(stderr, "\n");
    }
}

/* Detection evaluation: score a results file (--dets), or run a detector (--weights) over the
 * images of the annotation file and score what it finds (and write it with -o). */
static int cmd_eval_detect(const opts *o) {
    if (!o->gt) return die("%s", "detection eval needs --gt ANNOTATIONS.json");
    if (!o->dets && !o->weights)
        return die("%s", "eval --gt needs --dets RESULTS.json (a COCO results file) or --weights "
                         "FILE --images DIR (a detector to run)");
    if (o->dets && o->weights)
        return die("%s", "give either --dets or --weights, not both");
    if (o->weights && !o->images)
        return die("%s", "eval --weights needs --images DIR (the folder of the --gt images)");
    sn_coco *gt = NULL;
    if (sn_coco_load(o->gt, 0, &gt) != SN_OK) return fail_status();
    coco_load_warnings(o->gt, gt);
    sn_coco_dets dets = {0};
    sn_coco_eval_result r;
    memset(&r, 0, sizeof r);
    sn_model *m = NULL;
    sn_status st = SN_OK;
    if (o->dets) {
        st = sn_coco_dets_load(o->dets, gt, &dets);
        if (st == SN_OK) st = sn_coco_evaluate(gt, dets.items, dets.count, &r);
    } else {
        int tty = isatty(STDERR_FILENO);
        if (get_model(o, &m)) {
            sn_coco_free(gt);
            return 1;
        }
        if ((st = sn_model_set_threads(m, o->threads)) == SN_OK) {
            sn_det_params p;
            sn_det_params_init(&p);
            const int size = o->size ? o->size : sn_model_config(m)->input_size;
            st = sn_det_evaluate(m, gt, o->images, size, o->batch, &p, &dets, &r, eval_progress,
                                 &tty);
        }
        if (st == SN_OK && o->out) st = sn_coco_dets_save(o->out, dets.items, dets.count);
    }
    if (st != SN_OK) {
        fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
    } else {
        if (!o->json)
            printf("%s: %d images, %zu detections%s%s\n", o->gt, gt->num_images, dets.count,
                   o->out && o->weights ? ", written to " : "", o->out && o->weights ? o->out : "");
        print_coco_stats(&r, o->json);
    }
    sn_coco_eval_free(&r);
    sn_coco_dets_free(&dets);
    sn_model_free(m);
    sn_coco_free(gt);
    return st == SN_OK ? 0 : 1;
}

static int cmd_eval(const opts *o) {
    int det;
    if (task_of(o, &det)) return 1;
    if (det || o->gt || o->dets) return cmd_eval_detect(o);
    if (!o->weights) return die("%s", "eval needs --weights FILE (a classifier)");
    if (!o->data) return die("%s", "eval needs --data fashion-mnist or --data DIR");
    sn_model *m = NULL;
    if (get_model(o, &m)) return 1;
    const sn_config *c = sn_model_config(m);
    if (c->head != SN_HEAD_CLASSIFIER) {
        sn_model_free(m);
        return die("%s: not a classifier", o->weights);
    }
    sn_dataset *ds = NULL;
    const char *fm = fmnist_dir(o->data);
    sn_status st;
    if (fm) {
        st = sn_fashion_mnist_open(fm, 0, &ds);
    } else {
        sn_folder_options fo;
        memset(&fo, 0, sizeof fo);
        fo.skip_bad = o->skip_bad;
        sn_folder_stats fs;
        st = sn_folder_open(o->data, &fo, &ds, &fs);
    }
    int64_t *conf = NULL;
    double top1 = 0, top5 = 0;
    int k = c->num_classes;
    if (st == SN_OK) {
        conf = calloc((size_t)k * k, sizeof *conf);
        st = sn_trainer_evaluate(m, ds, o->size ? o->size : c->input_size, o->batch > 1 ? o->batch : 64,
                                 o->threads, NULL, &top1, &top5, conf);
    }
    if (st != SN_OK) {
        fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
    } else if (o->json) {
        printf("{\"top1\": %.6f, \"top5\": %.6f, \"count\": %d, \"confusion\": [", top1, top5, ds->count);
        for (int i = 0; i < k; i++) {
            printf("%s[", i ? ", " : "");
            for (int j = 0; j < k; j++) printf("%s%lld", j ? ", " : "", (long long)conf[i * k + j]);
            printf("]");
        }
        printf("]}\n");
    } else {
        printf("%d images: top-1 %.2f%%, top-5 %.2f%%\nconfusion (rows: true class, columns: predicted)\n",
               ds->count, 100 * top1, 100 * top5);
        for (int i = 0; i < k && k <= 50; i++) {
            const char *name = sn_model_class_name(m, i);
            printf("%-14.14s", name ? name : "");
            for (int j = 0; j < k; j++) printf(" %6lld", (long long)conf[i * k + j]);
            printf("\n");
        }
    }
    free(conf);
    sn_dataset_free(ds);
    sn_model_free(m);
    return st == SN_OK ? 0 : 1;
}

static void make_progress(void *user, int done, int total) {
    const int *tty = user;
    if (*tty)
        fprintf(stderr, "\r\033[Kfashion-det: %d/%d images", done, total);
    else if (done == total || done % 500 == 0)
        fprintf(stderr, "fashion-det: %d/%d images\n", done, total);
    if (*tty && done == total) fprintf(stderr, "\n");
}

/* make-dataset fashion-det --out DIR: the built-in multi-scale detection set (fashion_det.h). */
static int cmd_make_dataset(int argc, char **argv, const opts *o) {
    if (argc < 3 || argv[2][0] == '-' || strcmp(argv[2], "fashion-det") != 0)
        return die("%s", "make-dataset needs the dataset's name: spinenet make-dataset fashion-det "
                         "--out DIR");
    if (!o->out) return die("%s", "make-dataset needs --out DIR");
    sn_fashion_det_options fo;
    sn_fashion_det_defaults(&fo);
    if (o->data) fo.fmnist_dir = o->data;
    if (o->size) fo.image_size = o->size;
    /* Items up to 200 px in a 256 px image: the same proportion in smaller images. */
    if (fo.max_size > fo.image_size) fo.max_size = fo.image_size * 200.0 / 256.0;
    if (o->n_train >= 0) fo.train_count = o->n_train;
    if (o->n_val >= 0) fo.val_count = o->n_val;
    if (o->min_objects) fo.min_objects = o->min_objects;
    if (o->max_objects) fo.max_objects = o->max_objects;
    fo.seed = o->seed ? o->seed : fo.seed;
    fo.threads = o->threads;
    int tty = isatty(STDERR_FILENO);
    fo.progress = make_progress;
    fo.user = &tty;
    sn_fashion_det_stats fs;
    double t0 = now_s();
    if (sn_fashion_det_make(o->out, &fo, &fs) != SN_OK) return fail_status();
    printf("fashion-det in %s (%.1f s): train %d images, %d objects; val %d images, %d objects\n"
           "  images: %s/train, %s/val; annotations: %s/annotations/instances_{train,val}.json\n",
           o->out, now_s() - t0, fs.images[0], fs.objects[0], fs.images[1], fs.objects[1], o->out,
           o->out, o->out);
    return 0;
}

/* The file name of a path without its folder and extension, for output names. */
static void stem_of(const char *path, char *out, size_t n) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, n, "%s", b);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
}

/* Detections of one image: printed, drawn into OUTDIR/<name>.det.png, listed in
 * OUTDIR/<name>.det.json. */
static sn_status detect_one(sn_model *m, sn_det_head *h, const sn_det_params *p, int size,
                            float *canvas, sn_detections *d, const char *path, const opts *o) {
    sn_image img;
    sn_status st = sn_image_load(path, &img);
    if (st != SN_OK) return st;
    sn_det_xform xf;
    if ((st = sn_det_plan(img.height, img.width, size, 0, NULL, NULL, &xf)) != SN_OK ||
        (st = sn_det_render(&img, &xf, h->canvas, canvas)) != SN_OK ||
        (st = sn_model_run(m, canvas)) != SN_OK || (st = sn_det_detect(m, h, p, 0, d)) != SN_OK) {
        sn_image_free(&img);
        return st;
    }
    const char *dir = o->out ? o->out : ".";
    char stem[512], png[2048], js[2048];
    stem_of(path, stem, sizeof stem);
    snprintf(png, sizeof png, "%s/%s.det.png", dir, stem);
    snprintf(js, sizeof js, "%s/%s.det.json", dir, stem);
    json_t *list = json_array();
    int shown = 0;
    const int scale = img.width >= 480 ? 2 : 1, thick = img.width >= 480 ? 3 : 2;
    printf("%s (%dx%d):\n", path, img.width, img.height);
    /* Boxes weakest first, so the strongest end up on top; then labels strongest first, each
     * moved below the labels already drawn where they would cover one. */
    for (int k = d->count - 1; k >= 0; k--) {
        float ob[4];
        sn_det_unmap_box(&xf, d->boxes + 4 * k, ob);
        const char *name = sn_model_class_name(m, d->classes[k]);
        char cls[64];
        snprintf(cls, sizeof cls, "%s", name && name[0] ? name : "class");
        if (!name || !name[0]) snprintf(cls, sizeof cls, "class %d", (int)d->classes[k]);
        json_array_insert_new(list, 0, json_pack("{s:i, s:s, s:[f,f,f,f], s:f}", "class",
                                                 (int)d->classes[k], "name", cls, "bbox",
                                                 (double)ob[1], (double)ob[0],
                                                 (double)(ob[3] - ob[1]), (double)(ob[2] - ob[0]),
                                                 "score", (double)d->scores[k]));
        if (d->scores[k] < o->score) continue;
        uint8_t col[3];
        sn_draw_class_colour(d->classes[k], col);
        sn_draw_box(&img, (int)ob[1], (int)ob[0], (int)ob[3], (int)ob[2], thick, col);
    }
    int placed[128][4], n_placed = 0;
    for (int k = 0; k < d->count; k++) {
        if (d->scores[k] < o->score) continue;
        float ob[4];
        sn_det_unmap_box(&xf, d->boxes + 4 * k, ob);
        const char *name = sn_model_class_name(m, d->classes[k]);
        uint8_t col[3], black[3] = {0, 0, 0};
        sn_draw_class_colour(d->classes[k], col);
        char label[96];
        snprintf(label, sizeof label, "%s %.2f", name && name[0] ? name : "class", d->scores[k]);
        sn_draw_label_avoid(&img, (int)ob[1], (int)ob[0], label, scale, col, black, placed,
                            &n_placed, 128);
        printf("  %-16s %.3f  x %.1f y %.1f w %.1f h %.1f\n", name && name[0] ? name : "?",
               d->scores[k], ob[1], ob[0], ob[3] - ob[1], ob[2] - ob[0]);
        shown++;
    }
    printf("  %d detection%s at score >= %.2f (%d in %s)\n", shown, shown == 1 ? "" : "s",
           o->score, d->count, js);
    st = sn_image_save_png(&img, png);
    sn_image_free(&img);
    json_t *root = json_pack("{s:s, s:i, s:i, s:o}", "image", path, "width", xf.orig_w, "height",
                             xf.orig_h, "detections", list);
    if (st == SN_OK && (!root || json_dump_file(root, js, JSON_INDENT(1)) != 0))
        st = sn_error(SN_ERR_IO, "%s: cannot write", js);
    json_decref(root);
    if (st == SN_OK) printf("  wrote %s\n", png);
    return st;
}

static int cmd_detect(const opts *o) {
    if (!o->weights) return die("%s", "detect needs --weights FILE (a RetinaNet detector)");
    if (o->n_files == 0) return die("%s", "detect needs at least one image file");
    sn_model *m = NULL;
    if (get_model(o, &m)) return 1;
    const sn_config *c = sn_model_config(m);
    if (c->head != SN_HEAD_RETINANET) {
        sn_model_free(m);
        return die("%s: not a detector (the RetinaNet head)", o->weights);
    }
    const int size = o->size ? o->size : c->input_size, canvas = sn_det_canvas_size(size);
    sn_det_head h;
    sn_det_params p;
    sn_det_params_init(&p);
    sn_detections d = {0};
    d.capacity = p.max_detections;
    float *img = malloc(sizeof(float) * (size_t)canvas * canvas * 3);
    d.boxes = malloc(sizeof(float) * 4 * (size_t)d.capacity);
    d.scores = malloc(sizeof(float) * (size_t)d.capacity);
    d.classes = malloc(sizeof(int32_t) * (size_t)d.capacity);
    int failed = 0;
    if (!img || !d.boxes || !d.scores || !d.classes || sn_model_set_threads(m, o->threads) != SN_OK ||
        sn_model_plan(m, 1, canvas, canvas) != SN_OK ||
        sn_det_head_init(&h, m, canvas, 0, 0) != SN_OK) {
        fail_status();
        failed = -1;
    }
    if (o->out && failed == 0) {
        struct stat sb;
        if (stat(o->out, &sb) != 0 && mkdir(o->out, 0777) != 0) {
            fprintf(stderr, "spinenet: error: %s: cannot create the output folder\n", o->out);
            failed = -1;
        }
    }
    for (int i = 0; failed >= 0 && i < o->n_files; i++)
        if (detect_one(m, &h, &p, size, img, &d, o->files[i], o) != SN_OK) {
            fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
            failed++;
        }
    if (failed >= 0) sn_det_head_free(&h);
    free(img);
    free(d.boxes);
    free(d.scores);
    free(d.classes);
    sn_model_free(m);
    return failed != 0;
}

/* Top-k classes of each image; an unreadable image is reported and the others still run. */
static int cmd_classify(const opts *o) {
    if (!o->weights) return die("%s", "classify needs --weights FILE (a classifier)");
    if (o->n_files == 0) return die("%s", "classify needs at least one image file");
    sn_model *m = NULL;
    if (get_model(o, &m)) return 1;
    const sn_config *c = sn_model_config(m);
    if (c->head != SN_HEAD_CLASSIFIER) {
        sn_model_free(m);
        return die("%s: not a classifier (head is not 'classifier')", o->weights);
    }
    int s = o->size ? o->size : c->input_size;
    if (sn_model_set_threads(m, o->threads) != SN_OK || sn_model_plan(m, 1, s, s) != SN_OK) {
        sn_model_free(m);
        return fail_status();
    }
    float *x = malloc((size_t)s * s * 3 * sizeof *x);
    int *order = malloc((size_t)c->num_classes * sizeof *order);
    double *prob = malloc((size_t)c->num_classes * sizeof *prob);
    int failed = 0;
    for (int f = 0; f < o->n_files && x && order && prob; f++) {
        sn_image img = {0};
        sn_aug_params aug;
        sn_aug_defaults(&aug);
        sn_output out;
        if (sn_image_load(o->files[f], &img) != SN_OK ||
            sn_crop_resize_normalize(&img, sn_crop_eval(img.width, img.height, &aug), s, s, x) != SN_OK ||
            sn_model_run(m, x) != SN_OK || sn_model_output(m, "logits", &out) != SN_OK) {
            fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
            sn_image_free(&img);
            failed++;
            continue;
        }
        sn_image_free(&img);
        double mx = out.data[0], sum = 0;
        for (int k = 1; k < out.c; k++) mx = out.data[k] > mx ? out.data[k] : mx;
        for (int k = 0; k < out.c; k++) sum += prob[k] = exp(out.data[k] - mx);
        for (int k = 0; k < out.c; k++) {
            prob[k] /= sum;
            order[k] = k;
        }
        int top = o->top < out.c ? o->top : out.c;
        for (int a = 0; a < top; a++) /* partial selection sort: k is small */
            for (int b = a + 1; b < out.c; b++)
                if (prob[order[b]] > prob[order[a]]) {
                    int t = order[a];
                    order[a] = order[b];
                    order[b] = t;
                }
        printf("%s:", o->files[f]);
        for (int a = 0; a < top; a++) {
            const char *name = sn_model_class_name(m, order[a]);
            if (name)
                printf(" %s %.4f%s", name, prob[order[a]], a + 1 < top ? "," : "");
            else
                printf(" class %d %.4f%s", order[a], prob[order[a]], a + 1 < top ? "," : "");
        }
        printf("\n");
    }
    free(x);
    free(order);
    free(prob);
    sn_model_free(m);
    return failed ? 1 : 0;
}

int main(int argc, char **argv) {
    sn_tame_openmp_spinning(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("spinenet %s (kernels: %s; SN_ISA=generic|avx2|avx512 picks a build)\n",
               SN_VERSION_STRING, sn_isa_name(sn_isa_active()));
        return 0;
    }
    opts o;
    if (strcmp(cmd, "info") != 0 && strcmp(cmd, "init") != 0 && strcmp(cmd, "bench") != 0 &&
        strcmp(cmd, "classify") != 0 && strcmp(cmd, "train") != 0 && strcmp(cmd, "eval") != 0 &&
        strcmp(cmd, "make-dataset") != 0 && strcmp(cmd, "detect") != 0)
        return die("unknown command '%s' (info, init, bench, train, eval, classify, detect, "
                   "make-dataset, version; see spinenet --help)",
                   cmd);
    int rc;
    const int mk = strcmp(cmd, "make-dataset") == 0;
    /* make-dataset takes the dataset's name as its first argument. */
    if (parse_opts(argc - mk, argv + mk, &o))
        rc = 2;
    else if (mk)
        rc = cmd_make_dataset(argc, argv, &o);
    else if (o.n_files && strcmp(cmd, "classify") != 0 && strcmp(cmd, "detect") != 0)
        rc = die("unexpected argument '%s' (see spinenet --help)", o.files[0]);
    else if (strcmp(cmd, "info") == 0)
        rc = cmd_info(&o);
    else if (strcmp(cmd, "init") == 0)
        rc = cmd_init(&o);
    else if (strcmp(cmd, "classify") == 0)
        rc = cmd_classify(&o);
    else if (strcmp(cmd, "detect") == 0)
        rc = cmd_detect(&o);
    else if (strcmp(cmd, "train") == 0)
        rc = cmd_train(&o);
    else if (strcmp(cmd, "eval") == 0)
        rc = cmd_eval(&o);
    else
        rc = cmd_bench(&o);
    free(o.files);
    return rc;
}
