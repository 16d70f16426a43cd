/* spinenet: the command-line tool. One function per subcommand; errors print
 * "spinenet: error: ..." on one line and exit non-zero (2 for a bad command line). One table of
 * flags (k_flags) drives the parsing, each command's --help and the did-you-mean suggestions,
 * so the help cannot miss a flag. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
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
#include "plot.h"
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

/* The command line: one struct for every command; k_flags says which fields each one takes. */
typedef struct {
    const char *model, *flavour, *head, *act, *block_spec, *weights, *out, *tensor;
    const char *data, *eval_data, *schedule;
    const char *task, *ann, *eval_ann, *gt, *dets, *images, *init, *title;
    double lr, warmup_lr, wd, momentum, clip, smoothing, drop, min_area, scale_min, scale_max, score,
        anchor_size, bn_momentum, agnostic_nms;
    int epochs, steps, warmup_steps, resume, skip_bad, no_flip, checkpoint_every, eval_every;
    int n_train, n_val, min_objects, max_objects, first, count;
    const char *split;
    int classes, endpoints, size, height, width, min_level, max_level, p2, threads, replicas, runs, batch, json, nofold,
        warmup, top, profile, help;
    uint64_t seed;
    const char **files;
    int n_files;
} opts;

/* The values before any flag; 0 and NULL mostly mean "the model's", "the variant's" or "off".
 * The help prints these as the defaults of the flags whose table entry gives none. */
static void opts_init(opts *o) {
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
    o->count = 100;
    o->scale_min = 0.5;
    o->scale_max = 2.0;
    o->score = 0.3;
}

/* ---- The commands ------------------------------------------------------------------------ */

enum {
    CMD_INFO, CMD_INIT, CMD_BENCH, CMD_TRAIN, CMD_EVAL, CMD_CLASSIFY, CMD_DETECT, CMD_MAKE, CMD_PLOT,
    N_CMDS
};
#define C_INFO (1u << CMD_INFO)
#define C_INIT (1u << CMD_INIT)
#define C_BENCH (1u << CMD_BENCH)
#define C_TRAIN (1u << CMD_TRAIN)
#define C_EVAL (1u << CMD_EVAL)
#define C_CLASSIFY (1u << CMD_CLASSIFY)
#define C_DETECT (1u << CMD_DETECT)
#define C_MAKE (1u << CMD_MAKE)
#define C_PLOT (1u << CMD_PLOT)
#define C_ALL ((1u << N_CMDS) - 1)
#define C_BUILD (C_INFO | C_INIT | C_BENCH) /* build a model from the model flags */
#define C_RUN (C_BENCH | C_EVAL | C_CLASSIFY | C_DETECT) /* run a model */

typedef struct {
    const char *name;
    const char *summary;  /* its line in the overview */
    const char *usage;    /* usage lines */
    const char *about;    /* a paragraph, wrapped when printed */
    const char *examples; /* one per line; continuation lines start with spaces */
} command;

static const command k_commands[N_CMDS] = {
    [CMD_INFO] = {"info", "per-block table of a model: level, type, channels, size, params, MACs",
                  "spinenet info [--model NAME] [model flags] [--size S] [--json]\n"
                  "spinenet info --weights FILE [--size S] [--json]",
                  "The blocks of a model (level, type, channels, output size, parents, params and "
                  "multiply-adds) and the totals, split into backbone and head. Without --weights "
                  "only shapes are computed: no weights are allocated.",
                  "spinenet info --model spinenet-49 --head retinanet --size 640\n"
                  "spinenet info --model spinenet-mobile-49 --size 384 --json"},
    [CMD_INIT] = {"init", "write a seeded, initialised model as safetensors",
                  "spinenet init -o FILE [--model NAME] [model flags] [--seed N]",
                  "Builds the model the flags describe, initialises its weights from --seed (the "
                  "same seed writes the same bytes) and writes it as safetensors with its config "
                  "in the metadata.",
                  "spinenet init --model spinenet-49 --seed 1 -o model.safetensors\n"
                  "spinenet init --model spinenet-mobile-49xs --flavour tpu --head classifier "
                  "--classes 10 \\\n    --size 64 -o c.safetensors"},
    [CMD_BENCH] = {"bench", "time the forward pass",
                   "spinenet bench [--model NAME] [model flags] [--size S] [--threads T] [--runs N] "
                   "[--json]\n"
                   "spinenet bench --weights FILE [--size S] [--threads T] [--runs N] [--json]",
                   "Times the forward pass on a seeded random input: --warmup untimed runs, then "
                   "--runs timed ones; prints the median, min and max, the multiply-adds, GFLOP/s, "
                   "the arena and the peak RSS, and the kernels' build in use. Without --weights "
                   "the model is built from the model flags with seeded random weights.",
                   "spinenet bench --model spinenet-49 --size 640 --threads 2\n"
                   "spinenet bench --weights model.safetensors --size 384 --runs 5 --profile"},
    [CMD_TRAIN] = {"train",
                   "train a classifier (Fashion-MNIST or an image folder) or, with --task detect, "
                   "a RetinaNet detector on COCO-format data; checkpoints and OUTDIR/train_log.csv",
                   "spinenet train --data fashion-mnist[:DIR] -o OUTDIR [flags]\n"
                   "spinenet train --data DIR [--eval-data DIR] -o OUTDIR [flags]\n"
                   "spinenet train --task detect --data IMAGEDIR --ann ANN.json -o OUTDIR [flags]",
                   "Trains a classifier on Fashion-MNIST or an image folder (one subfolder per "
                   "class) or, with --task detect, a RetinaNet detector on COCO-format data. "
                   "Writes OUTDIR/last.safetensors (every --checkpoint-every steps and at the end), "
                   "OUTDIR/best.safetensors (the checkpoint of the best evaluation: top-1, or COCO "
                   "AP for a detector) and OUTDIR/train_log.csv (one row per step: step, epoch, lr, "
                   "loss, loss_cls, loss_box, train_top1, images_per_s and eval_top1, eval_top5 or "
                   "eval_AP, eval_AP50; spinenet plot draws it). Ctrl-C stops cleanly after writing "
                   "last.safetensors; --resume continues from it.",
                   "spinenet train --data fashion-mnist --model spinenet-mobile-49xs --act relu "
                   "--size 64 --batch 64 \\\n"
                   "    --epochs 7 --lr 0.2 --warmup-steps 200 --min-crop-area 1 --threads 2 "
                   "--seed 1 -o runs/fm\n"
                   "spinenet train --task detect --model spinenet-mobile-49xs --size 256 --batch 16 "
                   "--steps 2000 \\\n"
                   "    --data fd/train --ann fd/annotations/instances_train.json "
                   "--eval-data fd/val \\\n"
                   "    --eval-ann fd/annotations/instances_val.json --eval-every 500 -o run\n"
                   "spinenet plot runs/fm/train_log.csv -o curves.png"},
    [CMD_EVAL] = {"eval",
                  "top-1, top-5 and the confusion matrix of a classifier on a dataset, or COCO "
                  "AP/AR of a detector (--task detect) or of a results file (--gt --dets)",
                  "spinenet eval --weights FILE --data fashion-mnist[:DIR] | --data DIR [flags]\n"
                  "spinenet eval --task detect --weights FILE --gt ANN.json --images DIR "
                  "[-o RESULTS.json]\n"
                  "spinenet eval --gt ANN.json --dets RESULTS.json [--json]",
                  "A classifier's top-1, top-5 and confusion matrix on a dataset (Fashion-MNIST: "
                  "its 10 000 test images), or the twelve COCO AP/AR numbers of a detector run "
                  "over the images of --gt (--task detect, implied by --gt), or of a COCO results "
                  "file (--gt with --dets). --json prints {\"top1\", \"top5\", \"count\", \"confusion\"} "
                  "for a classifier and {\"AP\", \"AP50\", \"AP75\", \"APs\", \"APm\", \"APl\", "
                  "\"AR1\", \"AR10\", \"AR100\", \"ARs\", \"ARm\", \"ARl\"} for detection.",
                  "spinenet eval --weights runs/fm/best.safetensors --data fashion-mnist --size 64\n"
                  "spinenet eval --task detect --weights run/best.safetensors --size 256 \\\n"
                  "    --gt fd/annotations/instances_val.json --images fd/val -o dets.json\n"
                  "spinenet eval --gt fd/annotations/instances_val.json --dets dets.json --json"},
    [CMD_CLASSIFY] = {"classify", "top-k classes of images with a classifier: --weights W IMAGE...",
                      "spinenet classify --weights FILE [--top K] [--size S] IMAGE...",
                      "The top-k classes of each image (JPEG or PNG; the eval crop resized to S x S "
                      "and normalised as in spec 7.6) with their probabilities. An unreadable image "
                      "is reported and the others still run (the exit status is then 1).",
                      "spinenet classify --weights runs/fm/best.safetensors shirt.png\n"
                      "spinenet classify --weights runs/fm/best.safetensors --top 2 a.jpg b.png"},
    [CMD_DETECT] = {"detect",
                    "boxes, classes and scores in images with a detector: --weights W IMAGE...",
                    "spinenet detect --weights FILE [--score T] [-o OUTDIR] IMAGE...",
                    "Runs a RetinaNet detector on each image (JPEG or PNG), prints the detections "
                    "scoring --score or more, draws them into OUTDIR/<name>.det.png (boxes, class "
                    "names, scores) and lists every detection (score >= 0.05) in "
                    "OUTDIR/<name>.det.json.",
                    "spinenet detect --weights run/best.safetensors --size 256 fd/val/000001.png "
                    "-o shots\n"
                    "spinenet detect --weights run/best.safetensors --score 0.5 *.jpg"},
    [CMD_MAKE] = {"make-dataset",
                  "fashion-det --out DIR: the built-in multi-scale detection set; fashion-mnist "
                  "--out DIR: Fashion-MNIST images as PNG files",
                  "spinenet make-dataset fashion-det --out DIR [flags]\n"
                  "spinenet make-dataset fashion-mnist --out DIR [--split S] [--first I] "
                  "[--count N] [--data FMNISTDIR]",
                  "fashion-det: Fashion-MNIST items pasted at many sizes onto synthetic "
                  "backgrounds, as a COCO dataset: DIR/train and DIR/val (PNG images) and "
                  "DIR/annotations/instances_{train,val}.json. The same flags make byte-identical "
                  "files, whatever --threads. fashion-mnist: items --first .. --first + --count - 1 "
                  "of a Fashion-MNIST split as 28x28 grayscale PNGs, "
                  "DIR/<class>/<split>-<index>.png (class names made file-safe: T-shirt_top, "
                  "Ankle_boot), an image folder that train, eval and classify read.",
                  "spinenet make-dataset fashion-det --out fd\n"
                  "spinenet make-dataset fashion-det --out fd-small --train-images 800 "
                  "--val-images 100 --size 128\n"
                  "spinenet make-dataset fashion-mnist --out fm-test --count 10000"},
    [CMD_PLOT] = {"plot", "draw the curves of a training log (OUTDIR/train_log.csv) into a PNG",
                  "spinenet plot LOG.csv -o PNG [--title T] [--width W] [--height H]",
                  "Draws the training log that spinenet train writes (OUTDIR/train_log.csv) as "
                  "one PNG of three panels over the steps: the loss (and its parts for a "
                  "detector), the learning rate and the evaluation metrics in %.",
                  "spinenet plot runs/fm/train_log.csv -o curves.png\n"
                  "spinenet plot run/train_log.csv -o run.png --title \"fashion-det\" --width 1280"},
};

/* ---- The flags ----------------------------------------------------------------------------- */

typedef enum { K_STR, K_INT, K_NUM, K_SEED, K_SWITCH, K_HELP } flag_kind;

/* A flag as some commands take it. A flag whose meaning or default differs between commands
 * has one entry per meaning; the entries of one name share its field. Each command's --help
 * lists its entries in this order. */
typedef struct {
    const char *names; /* "--size"; several spellings separated by ", " */
    const char *arg;   /* the value's name in the help; NULL: takes no value */
    flag_kind kind;
    size_t field;      /* offsetof(opts, ...) */
    double lo, hi;     /* the range of K_INT and K_NUM */
    unsigned cmds;     /* C_* of the commands that take it */
    const char *help;
    const char *def;   /* the default as printed; NULL: the value opts_init sets; "required..."
                          is printed as it is */
} flag_def;

#define FSTR(n, a, f, c, h, d) {n, a, K_STR, offsetof(opts, f), 0, 0, c, h, d}
#define FINT(n, a, f, lo, hi, c, h, d) {n, a, K_INT, offsetof(opts, f), lo, hi, c, h, d}
#define FNUM(n, a, f, lo, hi, c, h, d) {n, a, K_NUM, offsetof(opts, f), lo, hi, c, h, d}
#define FSWITCH(n, f, c, h, d) {n, NULL, K_SWITCH, offsetof(opts, f), 0, 0, c, h, d}
#define FSEED(c, h, d) {"--seed", "N", K_SEED, offsetof(opts, seed), 0, 0, c, h, d}
#define SIZE_MAX_PX 16384
#define VARIANT_SIZES "640, 1024 (96), 1280 (143, 143l, 190), 384 (mobile-49, -49s), 256 (-49xs)"

static const flag_def k_flags[] = {
    /* What to read. */
    FSTR("--task", "T", task, C_TRAIN,
         "classify, or detect (a RetinaNet detector on COCO-format data)", "classify"),
    FSTR("--task", "T", task, C_EVAL, "classify, or detect (a detector over the --gt images)",
         "classify; detect when --gt is given"),
    FSTR("--data", "SPEC", data, C_TRAIN,
         "fashion-mnist, fashion-mnist:DIR or a folder with one subfolder per class; with --task "
         "detect, the image folder of --ann", "required"),
    FSTR("--data", "SPEC", data, C_EVAL,
         "fashion-mnist[:DIR] (its 10 000 test images) or an image folder DIR with one subfolder "
         "per class", "required for a classifier"),
    FSTR("--ann", "ANN.json", ann, C_TRAIN,
         "COCO instances file of the --data images (detection)", "required with --task detect"),
    FSTR("--eval-data", "DIR", eval_data, C_TRAIN,
         "folder of evaluation images (detection: those of --eval-ann)",
         "none; fashion-mnist uses its test images"),
    FSTR("--eval-ann", "ANN.json", eval_ann, C_TRAIN,
         "COCO instances file of the --eval-data images (detection; evaluated as COCO AP)", "none"),
    FSTR("--gt", "ANN.json", gt, C_EVAL, "COCO instances file: the ground truth of detection",
         "none: a classifier is evaluated"),
    FSTR("--dets", "RESULTS.json", dets, C_EVAL,
         "a COCO results file to score against --gt, instead of running --weights", "none"),
    FSTR("--images", "DIR", images, C_EVAL, "the folder of the --gt images, for --weights",
         "required with --gt and --weights"),
    FSTR("--weights", "FILE", weights, C_INFO | C_BENCH,
         "load the model from a spinenet safetensors file instead of building it from the model "
         "flags", "none"),
    FSTR("--weights", "FILE", weights, C_EVAL,
         "the classifier or detector to evaluate (a spinenet safetensors file)",
         "required, except with --dets"),
    FSTR("--weights", "FILE", weights, C_CLASSIFY, "the classifier (a spinenet safetensors file)",
         "required"),
    FSTR("--weights", "FILE", weights, C_DETECT,
         "the RetinaNet detector (a spinenet safetensors file)", "required"),
    FSTR("--init", "FILE", init, C_TRAIN,
         "start from the tensors of FILE that match by name and shape (e.g. a classifier's "
         "backbone for a detector)", "none"),
    /* Where to write. */
    FSTR("-o, --out, --output", "FILE", out, C_INIT, "where to write the model (safetensors)",
         "required"),
    FSTR("-o, --out, --output", "OUTDIR", out, C_TRAIN,
         "folder for the checkpoints and train_log.csv (made if missing)", "required"),
    FSTR("-o, --out, --output", "RESULTS.json", out, C_EVAL,
         "write the detections (a COCO results file)", "none"),
    FSTR("-o, --out, --output", "OUTDIR", out, C_DETECT,
         "folder of <name>.det.png and .det.json (created if missing)", "."),
    FSTR("-o, --out, --output", "DIR", out, C_MAKE,
         "the dataset's folder (created with its parents)", "required"),
    FSTR("-o, --out, --output", "PNG", out, C_PLOT, "the PNG to write", "required"),
    /* The model. */
    FSTR("--model", "NAME", model, C_BUILD | C_TRAIN,
         "the variant: spinenet-49s, -49, -96, -143, -143l, -190, spinenet-mobile-49, -49s, -49xs",
         NULL),
    FSTR("--flavour", "F", flavour, C_BUILD,
         "garden (the Model Garden's) or tpu (the TF1 TPU code's; serves any size >= 64)",
         "garden"),
    FSTR("--flavour", "F", flavour, C_TRAIN,
         "garden (the Model Garden's) or tpu (the TF1 TPU code's; serves any size >= 64)",
         "tpu for a classifier, garden for a detector"),
    FSTR("--head", "H", head, C_BUILD, "retinanet, classifier or none", "retinanet"),
    FSTR("--head", "H", head, C_TRAIN, "retinanet or classifier",
         "classifier; retinanet with --task detect"),
    FSTR("--act", "A", act, C_BUILD | C_TRAIN, "activation: relu, swish or hswish",
         "the variant's: hswish for garden Mobile-49 and -49S, swish otherwise"),
    FINT("--classes", "N", classes, 1, 100000, C_BUILD, "classes of the head",
         "91 for retinanet, 1001 for classifier"),
    FINT("--classes", "N", classes, 1, 100000, C_TRAIN,
         "classes of the head; must match the dataset's", "the dataset's"),
    FINT("--endpoints-filters", "N", endpoints, 1, 4096, C_BUILD | C_TRAIN, "endpoint width",
         "the variant's scaling map"),
    FINT("--min-level", "L", min_level, 2, 7, C_BUILD | C_TRAIN, "lowest endpoint level",
         "3; 2 with --p2"),
    FINT("--max-level", "L", max_level, 2, 7, C_BUILD | C_TRAIN, "highest endpoint level", "7"),
    FSWITCH("--p2", p2, C_BUILD | C_TRAIN, "also build the level-2 output row and P2 (garden)",
            "off"),
    FSTR("--block-spec", "FILE", block_spec, C_BUILD | C_TRAIN,
         "read the block-spec table from FILE (docs/blockspec.md)", "the variant's built-in table"),
    FNUM("--anchor-size", "A", anchor_size, 0.01, 64.0, C_INIT | C_TRAIN,
         "RetinaNet anchor size, in strides of its level", "the variant's: 3, or 4 for 143, 143l "
         "and 190"),
    FNUM("--bn-momentum", "M", bn_momentum, 0.0001, 0.9999, C_INIT | C_TRAIN,
         "batch-norm moving-average momentum",
         "the flavour's: garden 0.99, tpu 0.997, tpu classifier 0.9"),
    /* The input. */
    FINT("--size", "S", size, 1, SIZE_MAX_PX, C_INFO | C_BENCH, "square input size",
         "the --weights file's, or the variant's: " VARIANT_SIZES),
    FINT("--size", "S", size, 1, SIZE_MAX_PX, C_INIT,
         "square input size, stored as the model's",
         "the variant's: " VARIANT_SIZES),
    FINT("--size", "S", size, 1, SIZE_MAX_PX, C_TRAIN,
         "input size S (detection: the model sees S padded to a multiple of 128)",
         "64 for a classifier, the variant's for a detector"),
    FINT("--size", "S", size, 1, SIZE_MAX_PX, C_EVAL | C_CLASSIFY | C_DETECT, "input size S",
         "the model's, stored in --weights"),
    FINT("--size", "S", size, 1, SIZE_MAX_PX, C_MAKE,
         "image size S; items are 12..200 px (S < 200: up to S * 200 / 256)", "256"),
    FINT("--height", "H", height, 1, SIZE_MAX_PX, C_INFO | C_BENCH,
         "input height (non-square input)", "--size"),
    FINT("--width", "W", width, 1, SIZE_MAX_PX, C_INFO | C_BENCH,
         "input width (non-square input)", "--size"),
    FSTR("--title", "T", title, C_PLOT, "the title on top of the figure", "the CSV's file name"),
    FINT("--width", "W", width, 200, 8192, C_PLOT, "the PNG's width in pixels", "960"),
    FINT("--height", "H", height, 200, 8192, C_PLOT, "the PNG's height in pixels", "900"),
    /* bench. */
    FINT("--batch", "B", batch, 1, 65536, C_BENCH, "images per forward pass", NULL),
    FINT("--runs", "N", runs, 1, 100000, C_BENCH, "timed runs (and, with --profile, profiled ones)",
         NULL),
    FINT("--warmup", "N", warmup, 0, 1000, C_BENCH, "untimed runs first", NULL),
    FSWITCH("--no-fold", nofold, C_BENCH, "keep batch-norm apart from the convolutions",
            "off: folded into them"),
    FSWITCH("--profile", profile, C_BENCH,
            "then --runs more runs, timed layer by layer: time and GFLOP/s per layer shape and "
            "per op, largest first", "off"),
    /* train. */
    FINT("--batch", "B", batch, 1, 65536, C_TRAIN,
         "images per step (a multiple of --replicas); 1 also means the default",
         "32 for a classifier, 8 for a detector"),
    FINT("--epochs", "E", epochs, 1, 100000, C_TRAIN, "passes over the training set, unless --steps",
         NULL),
    FINT("--steps", "N", steps, 1, 1000000000, C_TRAIN,
         "total steps of the run (overrides --epochs)", "--epochs' worth"),
    FNUM("--lr", "LR", lr, 0.0, 100.0, C_TRAIN, "peak learning rate", NULL),
    FSTR("--schedule", "S", schedule, C_TRAIN, "learning-rate schedule: cosine or constant",
         "cosine"),
    FINT("--warmup-steps", "N", warmup_steps, 0, 1000000000, C_TRAIN,
         "steps of linear warmup from --warmup-lr to --lr", NULL),
    FNUM("--warmup-lr", "LR", warmup_lr, 0.0, 100.0, C_TRAIN,
         "learning rate at the first step of the warmup", NULL),
    FNUM("--momentum", "M", momentum, 0.0, 0.9999, C_TRAIN, "SGD momentum", NULL),
    FNUM("--weight-decay", "WD", wd, 0.0, 1.0, C_TRAIN, "weight decay, on kernels only", NULL),
    FNUM("--clip", "NORM", clip, 0.0, 1e9, C_TRAIN, "clip the global gradient norm at NORM",
         "0: off"),
    FNUM("--label-smoothing", "S", smoothing, 0.0, 0.99, C_TRAIN, "label smoothing (classifier)",
         NULL),
    FNUM("--drop-rate", "R", drop, 0.0, 0.99, C_TRAIN, "stochastic-depth (drop path) rate", NULL),
    FNUM("--min-crop-area", "A", min_area, 0.01, 1.0, C_TRAIN,
         "random crops keep A..1 of the image; 1: no cropping (classifier)", NULL),
    FNUM("--scale-min", "A", scale_min, 0.01, 10.0, C_TRAIN,
         "smallest scale of the scale jitter with random crop (detector)", NULL),
    FNUM("--scale-max", "B", scale_max, 0.01, 10.0, C_TRAIN,
         "largest scale of the scale jitter (detector; at least --scale-min)", NULL),
    FSWITCH("--no-flip", no_flip, C_TRAIN, "no random horizontal mirroring",
            "off: images are mirrored at random"),
    FINT("--replicas", "R", replicas, 1, 16, C_TRAIN,
         "split each batch into R parts trained side by side, one thread each, with their own "
         "batch-norm statistics", NULL),
    FINT("--checkpoint-every", "N", checkpoint_every, 0, 1000000000, C_TRAIN,
         "steps between writes of OUTDIR/last.safetensors; 0: at the end only", NULL),
    FINT("--eval-every", "N", eval_every, -1, 1000000000, C_TRAIN,
         "steps between evaluations (and one at the end); 0: at each epoch's end; -1: never",
         NULL),
    FSWITCH("--resume", resume, C_TRAIN,
            "continue from OUTDIR/last.safetensors (its step, optimizer and random state)", "off"),
    FSWITCH("--skip-bad", skip_bad, C_TRAIN | C_EVAL,
            "leave out the unreadable images of a folder (with a warning) instead of failing",
            "off"),
    /* eval, classify, detect. */
    FINT("--batch", "B", batch, 1, 65536, C_EVAL, "images per forward pass",
         "64 for a classifier (1 also means 64), 1 for a detector"),
    FINT("--top", "K", top, 1, 100000, C_CLASSIFY, "classes printed per image", NULL),
    FNUM("--agnostic-nms", "IOU", agnostic_nms, 0.0, 1.0, C_DETECT,
         "after the per-class NMS, drop a detection whose box overlaps a better one of any class "
         "by IoU > IOU (one label per object; 0: off, the official output)", "0"),
    FNUM("--score", "T", score, 0.0, 1.0, C_DETECT,
         "lowest score printed and drawn (the .det.json lists every detection >= 0.05)", NULL),
    /* make-dataset. */
    FINT("--train-images", "N", n_train, 0, 10000000, C_MAKE, "images of the train split", "3000"),
    FINT("--val-images", "N", n_val, 0, 10000000, C_MAKE, "images of the val split", "300"),
    FINT("--min-objects", "N", min_objects, 1, SN_FASHION_DET_MAX_OBJECTS, C_MAKE,
         "fewest items per image", "1"),
    FINT("--max-objects", "N", max_objects, 1, SN_FASHION_DET_MAX_OBJECTS, C_MAKE,
         "most items per image (at most 64)", "12"),
    FSTR("--data", "FMNISTDIR", data, C_MAKE, "the folder of Fashion-MNIST's .gz files",
         SN_FASHION_DET_DEFAULT_DIR),
    FSTR("--split", "S", split, C_MAKE, "fashion-mnist: test (its 10 000 t10k items) or train "
         "(60 000)", "test"),
    FINT("--first", "I", first, 0, 10000000, C_MAKE, "fashion-mnist: index of the first item "
         "written", NULL),
    FINT("--count", "N", count, 0, 10000000, C_MAKE, "fashion-mnist: items written (fewer when "
         "the split ends first)", NULL),
    /* Common. */
    FINT("--threads", "T", threads, 0, 1024, C_RUN, "threads of the kernels; 0: all cores", NULL),
    FINT("--threads", "T", threads, 0, 1024, C_TRAIN,
         "threads of the kernels (with --replicas: of the evaluation); 0: all cores", NULL),
    FINT("--threads", "T", threads, 0, 1024, C_MAKE,
         "threads making the images; 0: all cores; the files do not depend on it", NULL),
    FSEED(C_INIT | C_BENCH, "seed of the weights' initialisation", NULL),
    FSEED(C_TRAIN, "seed of the initialisation, the data order, the augmentation and stochastic "
          "depth", NULL),
    FSEED(C_MAKE, "seed of the images (0 also means 1)", "1"),
    FSWITCH("--json", json, C_INFO,
            "print JSON: {\"params\": N, \"macs\": N, ..., \"blocks\": [...]}", "off"),
    FSWITCH("--json", json, C_BENCH,
            "print one JSON object: {\"median_ms\", \"min_ms\", \"max_ms\", \"gflops\", ...}",
            "off"),
    FSWITCH("--json", json, C_EVAL, "print one JSON object instead of text (see above)", "off"),
    {"-h, --help", NULL, K_HELP, offsetof(opts, help), 0, 0, C_ALL, "print this help", NULL},
};
#define N_FLAGS ((int)(sizeof k_flags / sizeof k_flags[0]))

/* The overview's common flags: a gist each; the commands that take them come from k_flags. */
static const struct {
    const char *name, *arg, *gist;
} k_common[] = {
    {"--model", "NAME", "the SpineNet variant (default: spinenet-49)"},
    {"--weights", "FILE", "a model written by spinenet init or train (safetensors)"},
    {"--size", "S", "input size in pixels"},
    {"--threads", "T", "threads (default: 1; 0: all cores)"},
    {"--seed", "N", "seed of everything random"},
    {"-o", "PATH", "where the output goes (also --out, --output)"},
    {"--json", NULL, "one JSON object instead of text"},
};

/* The i-th spelling of a flag ("-o, --out, --output" has three) into buf; 0 when none. */
static int spelling(const char *names, int i, char *buf, size_t n) {
    const char *p = names;
    for (; i > 0; i--) {
        p = strstr(p, ", ");
        if (!p) return 0;
        p += 2;
    }
    size_t len = strcspn(p, ",");
    if (len >= n) len = n - 1;
    memcpy(buf, p, len);
    buf[len] = 0;
    return 1;
}

static int flag_is(const flag_def *f, const char *arg) {
    char s[32];
    for (int i = 0; spelling(f->names, i, s, sizeof s); i++)
        if (strcmp(s, arg) == 0) return 1;
    return 0;
}

/* The entry of `arg` for one of the commands `cmds`, or NULL. */
static const flag_def *find_flag(const char *arg, unsigned cmds) {
    for (int i = 0; i < N_FLAGS; i++)
        if ((k_flags[i].cmds & cmds) && flag_is(&k_flags[i], arg)) return &k_flags[i];
    return NULL;
}

static int edit_distance(const char *a, const char *b) {
    int prev[64], cur[64];
    const int n = (int)strlen(a), m = (int)strlen(b);
    if (n >= 63 || m >= 63) return 99;
    for (int j = 0; j <= m; j++) prev[j] = j;
    for (int i = 1; i <= n; i++) {
        cur[0] = i;
        for (int j = 1; j <= m; j++) {
            int d = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < d) d = prev[j] + 1;
            if (cur[j - 1] + 1 < d) d = cur[j - 1] + 1;
            cur[j] = d;
        }
        memcpy(prev, cur, sizeof(int) * (size_t)(m + 1));
    }
    return prev[m];
}

/* The command's flag closest to a mistyped one: at most 2 edits (and fewer than half its
 * length), else one that it starts or ends up a prefix of ("--batchsize", "--eval"); "" if
 * none. */
static void suggest(const char *arg, unsigned cmd, char *out, size_t n) {
    int best = 3;
    out[0] = 0;
    for (int pass = 0; pass < 2 && !out[0]; pass++)
        for (int i = 0; i < N_FLAGS; i++) {
            char s[32];
            if (!(k_flags[i].cmds & cmd)) continue;
            for (int k = 0; spelling(k_flags[i].names, k, s, sizeof s); k++) {
                const size_t ls = strlen(s), la = strlen(arg);
                int d = pass == 0 ? edit_distance(arg, s) : 0;
                if (pass == 0 ? d < best && 2 * d < (int)ls
                              : !out[0] && ls >= 4 && la >= 4 &&
                                    strncmp(arg, s, la < ls ? la : ls) == 0) {
                    best = d;
                    snprintf(out, n, "%s", s);
                }
            }
        }
}

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

/* Stores the value v of flag a (entry f); returns the arguments it used (0 or 1), -1 on error. */
static int set_flag(const flag_def *f, const char *a, const char *v, opts *o) {
    char *field = (char *)o + f->field;
    switch (f->kind) {
    case K_STR:
        if (!v) return die("%s needs a value", a), -1;
        *(const char **)field = v;
        return 1;
    case K_INT:
        return parse_int(a, v, (int)f->lo, (int)f->hi, (int *)field) ? -1 : 1;
    case K_NUM: {
        char *end;
        double x = v ? strtod(v, &end) : 0;
        if (!v || end == v || *end || !(x >= f->lo && x <= f->hi)) {
            fprintf(stderr, "spinenet: error: %s needs a number in %g..%g, got '%s'\n", a, f->lo,
                    f->hi, v ? v : "(nothing)");
            return -1;
        }
        *(double *)field = x;
        return 1;
    }
    case K_SEED: {
        char *end;
        if (!v) return die("%s needs a value", a), -1;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (errno || end == v || *end)
            return die("--seed needs a non-negative integer, got '%s'", v), -1;
        *(uint64_t *)field = s;
        return 1;
    }
    case K_SWITCH:
    case K_HELP:
        *(int *)field = 1;
        return 0;
    }
    return -1;
}

/* Parses argv[2..] for command cmd: its flags, and the other arguments into o->files. */
static int parse_opts(int argc, char **argv, int cmd, opts *o) {
    opts_init(o);
    o->files = calloc((size_t)argc, sizeof *o->files);
    if (!o->files) return die("%s", "out of memory"), -1;
    const char *name = k_commands[cmd].name;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            o->files[o->n_files++] = a; /* image files (classify, detect), the CSV (plot)... */
            continue;
        }
        const flag_def *f = find_flag(a, 1u << cmd);
        if (!f) {
            char near[32];
            suggest(a, 1u << cmd, near, sizeof near);
            if (find_flag(a, C_ALL))
                fprintf(stderr, "spinenet: error: %s does not take %s (see spinenet %s --help)\n",
                        name, a, name);
            else if (near[0])
                fprintf(stderr, "spinenet: error: unknown option '%s' for %s; did you mean %s? "
                        "(see spinenet %s --help)\n", a, name, near, name);
            else
                fprintf(stderr, "spinenet: error: unknown option '%s' for %s (see spinenet %s "
                        "--help)\n", a, name, name);
            return -1;
        }
        int used = set_flag(f, a, i + 1 < argc ? argv[i + 1] : NULL, o);
        if (used < 0) return -1;
        i += used;
    }
    return 0;
}

/* ---- Help ------------------------------------------------------------------------------------ */

#define HELP_WIDTH 100

/* Prints text word by word from column col, wrapping before HELP_WIDTH to column indent. */
static void print_wrapped(FILE *f, const char *text, int col, int indent) {
    int first = 1;
    for (const char *p = text; *p;) {
        while (*p == ' ') p++;
        const int n = (int)strcspn(p, " ");
        if (!n) break;
        if (!first && col + 1 + n >= HELP_WIDTH) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (!first) {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", n, p);
        col += n;
        p += n;
        first = 0;
    }
    fputc('\n', f);
}

/* Lines of text, each prefixed (the first with first, the others with rest). */
static void print_lines(const char *text, const char *first, const char *rest) {
    for (const char *p = text; *p;) {
        const int n = (int)strcspn(p, "\n");
        printf("%s%.*s\n", p == text ? first : rest, n, p);
        p += n;
        if (*p) p++;
    }
}

static void print_flag(const flag_def *f) {
    opts d;
    opts_init(&d);
    const char *field = (const char *)&d + f->field;
    char left[64], def[64], text[512];
    snprintf(left, sizeof left, "  %s%s%s", f->names, f->arg ? " " : "", f->arg ? f->arg : "");
    const char *dv = f->def;
    if (!dv) {
        switch (f->kind) {
        case K_INT: snprintf(def, sizeof def, "%d", *(const int *)field); break;
        case K_NUM: snprintf(def, sizeof def, "%g", *(const double *)field); break;
        case K_SEED:
            snprintf(def, sizeof def, "%llu", (unsigned long long)*(const uint64_t *)field);
            break;
        case K_STR: {
            const char *v = *(const char *const *)field;
            snprintf(def, sizeof def, "%s", v ? v : "none");
            break;
        }
        default: def[0] = 0; break;
        }
        dv = def;
    }
    if (f->kind == K_HELP)
        snprintf(text, sizeof text, "%s", f->help);
    else if (strncmp(dv, "required", 8) == 0)
        snprintf(text, sizeof text, "%s (%s)", f->help, dv);
    else
        snprintf(text, sizeof text, "%s (default: %s)", f->help, dv);
    const int col = 25;
    printf("%s", left);
    if ((int)strlen(left) >= col - 1)
        printf("\n%*s", col, "");
    else
        printf("%*s", col - (int)strlen(left), "");
    print_wrapped(stdout, text, col, col);
}

static void command_help(int cmd) {
    const command *c = &k_commands[cmd];
    print_lines(c->usage, "usage: ", "       ");
    printf("\n");
    print_wrapped(stdout, c->about, 0, 0);
    printf("\nflags:\n");
    for (int i = 0; i < N_FLAGS; i++)
        if (k_flags[i].cmds & (1u << cmd)) print_flag(&k_flags[i]);
    printf("\nexamples:\n");
    print_lines(c->examples, "  ", "  ");
}

/* spinenet --help: the commands, the common flags and where to find the rest. */
static void overview(FILE *f) {
    fprintf(f, "usage: spinenet COMMAND [flags]\n\ncommands:\n");
    for (int c = 0; c < N_CMDS; c++) {
        fprintf(f, "  %-14s", k_commands[c].name);
        print_wrapped(f, k_commands[c].summary, 16, 16);
    }
    fprintf(f, "  %-14s%s\n  %-14s%s\n", "version", "print the version and the kernels' build",
            "help COMMAND", "the same as spinenet COMMAND --help");
    fprintf(f, "\ncommon flags (each command's --help lists all of its flags and their "
               "defaults):\n");
    for (size_t i = 0; i < sizeof k_common / sizeof k_common[0]; i++) {
        char left[40], cmds[128] = "";
        snprintf(left, sizeof left, "%s%s%s", k_common[i].name, k_common[i].arg ? " " : "",
                 k_common[i].arg ? k_common[i].arg : "");
        unsigned mask = 0;
        for (int k = 0; k < N_FLAGS; k++)
            if (flag_is(&k_flags[k], k_common[i].name)) mask |= k_flags[k].cmds;
        for (int c = 0; c < N_CMDS; c++)
            if (mask & (1u << c))
                snprintf(cmds + strlen(cmds), sizeof cmds - strlen(cmds), "%s%s", cmds[0] ? " " : "",
                         k_commands[c].name);
        char text[256];
        snprintf(text, sizeof text, "%s [%s]", k_common[i].gist, cmds);
        fprintf(f, "  %-16s", left);
        print_wrapped(f, text, 18, 18);
    }
    fprintf(f, "  %-16s%s\n", "-h, --help", "this overview; after a command, that command's help");
    fprintf(f, "\nspinenet COMMAND --help for its flags, e.g. spinenet train --help\n");
}

/* ---- Checks of files before any long work ---------------------------------------------------- */

/* An input that must exist: a file (dir 0) or a folder (dir 1). One line naming it and what the
 * flag takes when it does not. */
static int need_path(const char *path, int dir, const char *takes) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "spinenet: error: %s: cannot open: %s (%s)\n", path, strerror(errno), takes);
        return 1;
    }
    if (!dir != !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "spinenet: error: %s: %s (%s)\n", path, dir ? "not a folder" : "is a folder",
                takes);
        return 1;
    }
    return 0;
}

/* An output: a file, whose folder must exist, or (dir) a folder, created with its parents when
 * missing. */
static int need_out(const char *path, int dir, const char *flag) {
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (!dir == !S_ISDIR(sb.st_mode)) return 0;
        fprintf(stderr, "spinenet: error: %s: %s (%s takes %s)\n", path,
                dir ? "exists and is not a folder" : "is a folder", flag,
                dir ? "a folder" : "a file name");
        return 1;
    }
    if (dir) return 0;
    char parent[SN_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/') parent[--n] = 0;
    char *slash = strrchr(parent, '/');
    if (!slash) return 0; /* in the current folder */
    slash[slash == parent] = 0; /* "/x" -> "/" */
    if (stat(parent, &sb) == 0 && S_ISDIR(sb.st_mode)) return 0;
    fprintf(stderr, "spinenet: error: %s: the folder %s does not exist (create it first: mkdir -p "
            "%s)\n", path, parent, parent);
    return 1;
}

#define TAKES_WEIGHTS                                                                              \
    "--weights takes a spinenet safetensors file, e.g. one written by spinenet train or init"

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
        if (need_path(o->block_spec, 0,
                      "--block-spec takes a block-spec table, see docs/blockspec.md"))
            return 1;
        if (strlen(o->block_spec) >= sizeof cfg->block_spec_path)
            return die("--block-spec path too long: %s", o->block_spec);
        snprintf(cfg->block_spec_path, sizeof cfg->block_spec_path, "%s", o->block_spec);
    }
    return 0;
}

/* Build the model the options describe, or load it from --weights. */
static int get_model(const opts *o, sn_model **m) {
    if (o->weights) {
        if (need_path(o->weights, 0, TAKES_WEIGHTS)) return 1;
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
    if (need_out(o->out, 0, "-o")) return 1;
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

/* A dataset given as --data or --eval-data: fashion-mnist[:DIR] or an image folder (det: the
 * images of a COCO instances file). */
static int need_data(const char *spec, int det, const char *flag) {
    char takes[256];
    const char *fm = det ? NULL : fmnist_dir(spec);
    if (fm)
        return need_path(fm, 1, "fashion-mnist reads the Fashion-MNIST .gz files from this folder: "
                                "apt-get install dataset-fashion-mnist, or give fashion-mnist:DIR");
    if (det)
        snprintf(takes, sizeof takes, "%s takes the folder of the images of %s", flag,
                 strcmp(flag, "--eval-data") == 0 ? "--eval-ann" : "--ann");
    else
        snprintf(takes, sizeof takes, "%s takes fashion-mnist, fashion-mnist:DIR or an image folder "
                 "with one subfolder per class", flag);
    return need_path(spec, 1, takes);
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
    if (sn_trainer_best_metric(t) >= 0)
        snprintf(best, sizeof best, "best eval %s %.2f%%", det ? "AP" : "top-1",
                 100 * sn_trainer_best_metric(t));
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
    if (need_path(o->gt, 0, "--gt takes a COCO instances file, e.g. "
                            "fd/annotations/instances_val.json of spinenet make-dataset") ||
        (o->dets && need_path(o->dets, 0, "--dets takes a COCO results file, e.g. one written by "
                                          "spinenet eval --task detect -o")) ||
        (o->weights && need_path(o->weights, 0, TAKES_WEIGHTS)) ||
        (o->images && o->weights &&
         need_path(o->images, 1, "--images takes the folder of the --gt images")) ||
        (o->out && o->weights && need_out(o->out, 0, "-o")))
        return 1;
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
    if (need_path(o->weights, 0, TAKES_WEIGHTS) || need_data(o->data, 0, "--data")) return 1;
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

/* make-dataset fashion-mnist --out DIR: Fashion-MNIST items as an image folder of PNGs. */
static int make_fashion_mnist(const opts *o) {
    if (o->size || o->n_train >= 0 || o->n_val >= 0 || o->min_objects || o->max_objects || o->seed)
        return die("%s", "make-dataset fashion-mnist takes --out, --split, --first, --count, "
                         "--data (the others are fashion-det's; see spinenet make-dataset --help)");
    const char *split = o->split ? o->split : "test";
    if (strcmp(split, "test") != 0 && strcmp(split, "train") != 0)
        return die("--split must be test or train, got '%s'", split);
    int written = 0;
    if (sn_fashion_mnist_export(o->data ? o->data : SN_FASHION_DET_DEFAULT_DIR,
                                strcmp(split, "train") == 0, o->first, o->count, o->out,
                                &written) != SN_OK)
        return fail_status();
    printf("fashion-mnist: %d %s images (items %d..%d) in %s/<class>/\n", written, split, o->first,
           o->first + written - 1, o->out);
    return 0;
}

/* make-dataset fashion-det --out DIR: the built-in multi-scale detection set (fashion_det.h). */
static int cmd_make_dataset(const opts *o) {
    const int fm = o->n_files >= 1 && strcmp(o->files[0], "fashion-mnist") == 0;
    if (o->n_files < 1 || (!fm && strcmp(o->files[0], "fashion-det") != 0))
        return die("%s", "make-dataset needs the dataset's name: spinenet make-dataset fashion-det "
                         "--out DIR, or fashion-mnist --out DIR");
    if (o->n_files > 1)
        return die("unexpected argument '%s' (see spinenet make-dataset --help)", o->files[1]);
    if (!o->out) return die("%s", "make-dataset needs --out DIR");
    if (o->data && need_path(o->data, 1, "--data takes the folder of Fashion-MNIST's .gz files; "
                                         "apt-get install dataset-fashion-mnist puts them in "
                                         SN_FASHION_DET_DEFAULT_DIR))
        return 1;
    if (fm) return make_fashion_mnist(o);
    if (o->split || o->first || o->count != 100)
        return die("%s", "--split, --first and --count are fashion-mnist's (see spinenet "
                         "make-dataset --help)");
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
        (st = sn_model_run(m, canvas)) != SN_OK || (st = sn_det_detect(m, h, p, 0, d)) != SN_OK ||
        (o->agnostic_nms > 0 &&
         (st = sn_detections_suppress_overlaps(d, (float)o->agnostic_nms)) != SN_OK)) {
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

/* The image arguments of classify and detect: one line for each that does not exist, which is
 * then left out (the others still run). Returns how many; skip[i] marks them. */
static int missing_images(const opts *o, const char *cmd, unsigned char *skip) {
    char takes[64];
    snprintf(takes, sizeof takes, "%s takes JPEG or PNG image files", cmd);
    int n = 0;
    for (int i = 0; i < o->n_files; i++) {
        skip[i] = (unsigned char)need_path(o->files[i], 0, takes);
        n += skip[i];
    }
    return n;
}

static int cmd_detect(const opts *o) {
    if (!o->weights) return die("%s", "detect needs --weights FILE (a RetinaNet detector)");
    if (o->n_files == 0) return die("%s", "detect needs at least one image file");
    if (o->out && need_out(o->out, 1, "-o")) return 1;
    sn_model *m = NULL;
    if (get_model(o, &m)) return 1;
    const sn_config *c = sn_model_config(m);
    if (c->head != SN_HEAD_RETINANET) {
        sn_model_free(m);
        return die("%s: not a detector (the RetinaNet head)", o->weights);
    }
    unsigned char *skip = calloc((size_t)o->n_files, 1);
    const int missing = skip ? missing_images(o, "detect", skip) : 0;
    if (!skip || missing == o->n_files) {
        free(skip);
        sn_model_free(m);
        return skip ? 1 : die("%s", "out of memory");
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
    int failed = missing;
    if (!img || !d.boxes || !d.scores || !d.classes || sn_model_set_threads(m, o->threads) != SN_OK ||
        sn_model_plan(m, 1, canvas, canvas) != SN_OK ||
        sn_det_head_init(&h, m, canvas, 0, 0) != SN_OK) {
        fail_status();
        failed = -1;
    }
    if (o->out && failed >= 0) {
        if (sn_make_dirs(o->out) != SN_OK) {
            fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
            failed = -1;
        }
    }
    for (int i = 0; failed >= 0 && i < o->n_files; i++)
        if (!skip[i] && detect_one(m, &h, &p, size, img, &d, o->files[i], o) != SN_OK) {
            fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
            failed++;
        }
    if (failed >= 0) sn_det_head_free(&h);
    free(skip);
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
    unsigned char *skip = calloc((size_t)o->n_files, 1);
    int failed = skip ? missing_images(o, "classify", skip) : 0;
    if (!skip || failed == o->n_files) {
        free(skip);
        sn_model_free(m);
        return skip ? 1 : die("%s", "out of memory");
    }
    int s = o->size ? o->size : c->input_size;
    if (sn_model_set_threads(m, o->threads) != SN_OK || sn_model_plan(m, 1, s, s) != SN_OK) {
        free(skip);
        sn_model_free(m);
        return fail_status();
    }
    float *x = malloc((size_t)s * s * 3 * sizeof *x);
    int *order = malloc((size_t)c->num_classes * sizeof *order);
    double *prob = malloc((size_t)c->num_classes * sizeof *prob);
    if (!x || !order || !prob) failed = die("%s", "classify: out of memory");
    for (int f = 0; f < o->n_files && x && order && prob; f++) {
        if (skip[f]) continue;
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
    free(skip);
    free(x);
    free(order);
    free(prob);
    sn_model_free(m);
    return failed ? 1 : 0;
}

/* plot LOG.csv -o PNG: the curves of a training log (src/data/plot.h). */
static int cmd_plot(const opts *o) {
    if (o->n_files == 0)
        return die("%s", "plot needs the training log: spinenet plot LOG.csv -o PNG (LOG.csv: the "
                         "OUTDIR/train_log.csv that spinenet train writes)");
    if (o->n_files > 1)
        return die("unexpected argument '%s' (see spinenet plot --help)", o->files[1]);
    if (!o->out) return die("%s", "plot needs -o PNG (where to write the figure)");
    if (need_path(o->files[0], 0, "plot takes a training log, e.g. the OUTDIR/train_log.csv that "
                                  "spinenet train writes") ||
        need_out(o->out, 0, "-o"))
        return 1;
    sn_plot_options po = {o->width, o->height, o->title};
    if (sn_plot_train_log(o->files[0], o->out, &po) != SN_OK) return fail_status();
    printf("wrote %s\n", o->out);
    return 0;
}

static int find_command(const char *name) {
    for (int c = 0; c < N_CMDS; c++)
        if (strcmp(k_commands[c].name, name) == 0) return c;
    return -1;
}

int main(int argc, char **argv) {
    sn_tame_openmp_spinning(argv);
    if (argc < 2) {
        overview(stderr);
        return 2;
    }
    /* spinenet help COMMAND is spinenet COMMAND --help. */
    const int help = strcmp(argv[1], "help") == 0;
    const char *cmd = help && argc > 2 ? argv[2] : argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        overview(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        if (help)
            printf("usage: spinenet version\n\nPrints the version and the kernels' build in use "
                   "(SN_ISA=generic|avx2|avx512 picks one).\n");
        else
            printf("spinenet %s (kernels: %s; SN_ISA=generic|avx2|avx512 picks a build)\n",
                   SN_VERSION_STRING, sn_isa_name(sn_isa_active()));
        return 0;
    }
    const int c = find_command(cmd);
    if (c < 0) {
        int near = -1, best = 3;
        for (int k = 0; k < N_CMDS; k++) {
            int d = edit_distance(cmd, k_commands[k].name);
            if (d < best) best = d, near = k;
        }
        fprintf(stderr, "spinenet: error: unknown command '%s'%s%s%s (info, init, bench, train, "
                "eval, classify, detect, make-dataset, plot, version; see spinenet --help)\n", cmd,
                near >= 0 ? "; did you mean " : "", near >= 0 ? k_commands[near].name : "",
                near >= 0 ? "?" : "");
        return 1;
    }
    int want_help = help;
    for (int i = 2; i < argc && !want_help; i++)
        want_help = strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0;
    if (want_help) {
        command_help(c);
        return 0;
    }
    opts o;
    int rc;
    if (parse_opts(argc, argv, c, &o))
        rc = 2;
    else if (o.n_files && c != CMD_CLASSIFY && c != CMD_DETECT && c != CMD_MAKE && c != CMD_PLOT) {
        fprintf(stderr, "spinenet: error: unexpected argument '%s' (see spinenet %s --help)\n",
                o.files[0], cmd);
        rc = 1;
    } else {
        switch (c) {
        case CMD_INFO: rc = cmd_info(&o); break;
        case CMD_INIT: rc = cmd_init(&o); break;
        case CMD_BENCH: rc = cmd_bench(&o); break;
        case CMD_TRAIN: rc = cmd_train(&o); break;
        case CMD_EVAL: rc = cmd_eval(&o); break;
        case CMD_CLASSIFY: rc = cmd_classify(&o); break;
        case CMD_DETECT: rc = cmd_detect(&o); break;
        case CMD_MAKE: rc = cmd_make_dataset(&o); break;
        default: rc = cmd_plot(&o); break;
        }
    }
    free(o.files);
    return rc;
}
