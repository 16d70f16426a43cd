/* What the files of the command-line tool share: the descriptor that each tools/cmd_<name>.c
 * exports, the flag tables (with the entries several commands write alike), and the helpers.
 * A command is one file, tools/cmd_<name>.c, with its options struct `opts`, their values before
 * any flag `k_defaults`, its flag table `k_flags` (in the order of its --help), its function
 * `run` and `const cli_command cmd_<name> = {..., CLI_PARTS(rule)}`; and its row in main.c. */
#ifndef SN_TOOLS_CLI_H
#define SN_TOOLS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "spinenet.h"

/* ---- Flags --------------------------------------------------------------------------------- */

typedef enum { CLI_STR, CLI_INT, CLI_NUM, CLI_SEED, CLI_SWITCH, CLI_HELP } cli_flag_kind;

/* A flag as one command takes it; a command's table lists them in the order its --help prints
 * them. -h, --help is every command's last flag without being in its table. */
typedef struct {
    const char *names; /* "--size"; several spellings separated by ", " */
    const char *arg;   /* the value's name in the help; NULL: takes no value */
    cli_flag_kind kind;
    size_t field;      /* offsetof(opts, ...): where the value goes in the command's options */
    double lo, hi;     /* the range of CLI_INT and CLI_NUM */
    const char *help;
    const char *def;   /* the default as printed; NULL: the field's value in the command's
                          defaults; "required..." is printed as it is */
} cli_flag;

/* Entries of a flag table. f is a field of the file's options struct, which every
 * tools/cmd_<name>.c names opts (so that these macros and the fragments below can find it). */
#define FSTR(n, a, f, h, d) {n, a, CLI_STR, offsetof(opts, f), 0, 0, h, d}
#define FINT(n, a, f, lo, hi, h, d) {n, a, CLI_INT, offsetof(opts, f), lo, hi, h, d}
#define FNUM(n, a, f, lo, hi, h, d) {n, a, CLI_NUM, offsetof(opts, f), lo, hi, h, d}
#define FSWITCH(n, f, h, d) {n, NULL, CLI_SWITCH, offsetof(opts, f), 0, 0, h, d}
#define FSEED(f, h, d) {"--seed", "N", CLI_SEED, offsetof(opts, f), 0, 0, h, d}
#define FOUT(a, h, d) FSTR("-o, --out, --output", a, out, h, d)

#define SIZE_MAX_PX 16384
#define VARIANT_SIZES "640, 1024 (96), 1280 (143, 143l, 190), 384 (mobile-49, -49s), 256 (-49xs)"

/* ---- The model flags ---------------------------------------------------------------------- */

/* What builds or loads a model: the model flags of info, init, bench and train. An options
 * struct embeds it as m, the field the fragments below name. */
typedef struct {
    const char *model, *flavour, *head, *act, *block_spec;
    const char *weights; /* load this file instead (info, bench); NULL: build from the flags */
    int classes, endpoints, min_level, max_level, p2;
    int size;            /* the input size; 0: the variant's (or the file's) */
    double anchor_size, bn_momentum; /* init and train; 0: the variant's */
    uint64_t seed;       /* of the weights' initialisation */
} cli_model_opts;

/* The values before any flag: 0 and NULL mean the variant's, a level of -1 its default. */
#define CLI_MODEL_DEFAULTS {.model = "spinenet-49", .min_level = -1, .max_level = -1}

/* The flags that describe a model, in the order of the help. The texts that differ between
 * the commands that build one (info, init, bench) and train are the arguments. */
#define CLI_MODEL_FLAGS(flavour_def, head_help, head_def, classes_help, classes_def)            \
    FSTR("--model", "NAME", m.model,                                                           \
         "the variant: spinenet-49s, -49, -96, -143, -143l, -190, spinenet-mobile-49, -49s, -49xs", \
         NULL),                                                                                \
    FSTR("--flavour", "F", m.flavour,                                                          \
         "garden (the Model Garden's) or tpu (the TF1 TPU code's; serves any size >= 64)",      \
         flavour_def),                                                                         \
    FSTR("--head", "H", m.head, head_help, head_def),                                          \
    FSTR("--act", "A", m.act, "activation: relu, swish or hswish",                             \
         "the variant's: hswish for garden Mobile-49 and -49S, swish otherwise"),              \
    FINT("--classes", "N", m.classes, 1, 100000, classes_help, classes_def),                   \
    FINT("--endpoints-filters", "N", m.endpoints, 1, 4096, "endpoint width",                   \
         "the variant's scaling map"),                                                         \
    FINT("--min-level", "L", m.min_level, 2, 7, "lowest endpoint level", "3; 2 with --p2"),     \
    FINT("--max-level", "L", m.max_level, 2, 7, "highest endpoint level", "7"),                \
    FSWITCH("--p2", m.p2, "also build the level-2 output row and P2 (garden)", "off"),          \
    FSTR("--block-spec", "FILE", m.block_spec,                                                 \
         "read the block-spec table from FILE (docs/blockspec.md)", "the variant's built-in table")

/* info, init and bench: a model built from these flags. */
#define CLI_BUILD_FLAGS                                                                        \
    CLI_MODEL_FLAGS("garden", "retinanet, classifier or none", "retinanet", "classes of the head", \
                    "91 for retinanet, 1001 for classifier")

/* info and bench: a model loaded from --weights or built from the model flags. */
#define CLI_WEIGHTS_OR_BUILD_FLAGS                                                             \
    FSTR("--weights", "FILE", m.weights,                                                       \
         "load the model from a spinenet safetensors file instead of building it from the model " \
         "flags", "none"),                                                                     \
    CLI_BUILD_FLAGS

/* info and bench: the input, square or not (fields m.size, height and width). */
#define CLI_INPUT_FLAGS                                                                        \
    FINT("--size", "S", m.size, 1, SIZE_MAX_PX, "square input size",                           \
         "the --weights file's, or the variant's: " VARIANT_SIZES),                            \
    FINT("--height", "H", height, 1, SIZE_MAX_PX, "input height (non-square input)", "--size"), \
    FINT("--width", "W", width, 1, SIZE_MAX_PX, "input width (non-square input)", "--size")

/* init and train: the parts of the head and the batch norm a new model is made with. */
#define CLI_NEW_MODEL_FLAGS                                                                    \
    FNUM("--anchor-size", "A", m.anchor_size, 0.01, 64.0,                                      \
         "RetinaNet anchor size, in strides of its level", "the variant's: 3, or 4 for 143, 143l " \
         "and 190"),                                                                           \
    FNUM("--bn-momentum", "M", m.bn_momentum, 0.0001, 0.9999,                                  \
         "batch-norm moving-average momentum",                                                 \
         "the flavour's: garden 0.99, tpu 0.997, tpu classifier 0.9")

/* init and bench. */
#define CLI_SEED_WEIGHTS_FLAG FSEED(m.seed, "seed of the weights' initialisation", NULL)

/* eval, classify and detect: the size the model runs at (field size). */
#define CLI_RUN_SIZE_FLAG                                                                      \
    FINT("--size", "S", size, 1, SIZE_MAX_PX, "input size S", "the model's, stored in --weights")

/* bench, eval, classify and detect (field threads). */
#define CLI_THREADS_FLAG                                                                       \
    FINT("--threads", "T", threads, 0, 1024, "threads of the kernels; 0: all cores", NULL)

/* train and eval (field skip_bad). */
#define CLI_SKIP_BAD_FLAG                                                                      \
    FSWITCH("--skip-bad", skip_bad,                                                            \
            "leave out unreadable images (with a warning) instead of failing: a folder's, and " \
            "detection images whose header fails or disagrees with --ann's size",               \
            "off")

/* train and eval (field strict). */
#define CLI_STRICT_FLAG                                                                        \
    FSWITCH("--strict", strict,                                                                \
            "refuse an image folder with an empty class folder (a class without a sample) "     \
            "instead of warning", "off")

/* ---- Commands ------------------------------------------------------------------------------ */

/* The arguments that are not flags, as main checks them before the command runs. */
typedef enum {
    CLI_POS_NONE, /* none: main refuses the first */
    CLI_POS_ONE,  /* exactly one: main says pos_missing when there is none or it is not one of
                     pos_choices, and refuses a second */
    CLI_POS_LIST, /* any number: the command says when it needs one, after its own checks */
} cli_positional;

typedef struct {
    const char *name;
    const char *summary;  /* its line in the overview */
    const char *usage;    /* usage lines */
    const char *about;    /* a paragraph, wrapped when printed */
    const char *examples; /* one per line; continuation lines start with spaces */
    const cli_flag *flags;
    int n_flags;
    const void *defaults; /* its options struct before any flag; the help prints these as the
                             defaults of the flags whose entry gives none */
    size_t opts_size;
    cli_positional positional;
    const char *pos_missing;        /* CLI_POS_ONE: the error when it is missing or wrong */
    const char *const *pos_choices; /* CLI_POS_ONE: the values it takes, NULL-terminated; NULL:
                                       any */
    /* opts: its options struct, filled from the command line; args: the other arguments. */
    int (*run)(const void *opts, const char *const *args, int n_args);
} cli_command;

/* The parts of a descriptor that every command file names alike: its flag table k_flags, the
 * defaults of its options k_defaults and its function run; pos: its rule for arguments. */
#define CLI_PARTS(pos)                                                                         \
    .flags = k_flags, .n_flags = (int)(sizeof k_flags / sizeof k_flags[0]),                    \
    .defaults = &k_defaults, .opts_size = sizeof k_defaults, .positional = pos, .run = run

/* Every command, in the overview's order (tools/main.c). */
extern const cli_command *const cli_commands[];
extern const int cli_n_commands;

/* ---- The command line (tools/cli.c) -------------------------------------------------------- */

/* The command called name, or NULL. */
const cli_command *cli_find_command(const char *name);
/* The error for an unknown command (with the nearest name); returns the exit status, 2. */
int cli_unknown_command(const char *name);
/* Fills opts (c->opts_size bytes) from c's defaults and argv[2..], and args with the arguments
 * that are not flags; -1 after printing the error. */
int cli_parse(const cli_command *c, int argc, char **argv, void *opts, const char **args,
              int *n_args);
void cli_command_help(const cli_command *c);
/* Whether the last cli_parse met the flag whose value goes to `field` (offsetof in the
 * command's options) on the command line: train --resume tells a flag given from a default. */
int cli_flag_given(size_t field);
/* spinenet --help: the commands, the common flags and where to find the rest. */
void cli_overview(FILE *f);

/* ---- Helpers of the commands (tools/shared.c) ---------------------------------------------- */

/* "spinenet: error: " fmt (with one string argument); returns 1, the exit status. */
int die(const char *fmt, const char *arg);
/* The same for a bad command line (a missing or conflicting flag, an unknown value): returns 2,
 * the exit status docs/guide.md gives it. */
int usage_error(const char *fmt, const char *arg);
/* The library's last error as the error line; returns 1. */
int fail_status(void);
/* The library's last error for a model or an input the flags describe: 2 (a bad command line)
 * when st says that what they ask for is invalid or unsupported (levels out of range, a size
 * the flavour cannot serve), else 1 (out of memory, a file). */
int fail_flags(sn_status st);
/* An input that must exist: a file (dir 0) or a folder (dir 1); says what the flag takes when
 * it does not. */
int need_path(const char *path, int dir, const char *takes);
/* An output: a file whose folder must exist, or (dir) a folder, created later when missing. */
int need_out(const char *path, int dir, const char *flag);
double now_s(void);

#define TAKES_WEIGHTS                                                                          \
    "--weights takes a spinenet safetensors file, e.g. one written by spinenet train or init"

/* The config the model flags describe; else the exit status after the error (2 for an unknown
 * name, 1 for a --block-spec file that cannot be read). */
int get_config(const cli_model_opts *o, sn_config *cfg);
/* The model of a spinenet safetensors file. */
int load_model(const char *weights, sn_model **m);
/* The model of a spinenet safetensors file that has the given head; else the error not_it
 * (a format for the file's name). */
int load_model_with_head(const char *weights, sn_head head, const char *not_it, sn_model **m);
/* Copies of a model's class names (NULL: it has none, or out of memory); free_class_names
 * frees them. */
char **model_class_names(const sn_model *m);
void free_class_names(char **names, int k);
/* The model of o->weights, or the one the model flags describe, seeded with o->seed; else the
 * exit status after the error. */
int get_model(const cli_model_opts *o, sn_model **m);
/* The input size: --size or the model's, and --height/--width where given (0: not given). */
void input_dims(int size, int height, int width, int model_size, int *h, int *w);

/* "fashion-mnist" or "fashion-mnist:DIR" -> the IDX folder; otherwise NULL (an image folder). */
const char *fmnist_dir(const char *spec);
/* A dataset given as --data or --eval-data: fashion-mnist[:DIR] or an image folder (det: the
 * images of a COCO instances file). */
int need_data(const char *spec, int det, const char *flag);
/* --task classify (NULL too) or detect; else 2 after the error. */
int task_of(const char *task, int *det);
/* What classify and detect run: the model, with what they say about a wrong one or a missing
 * image. */
typedef struct {
    const char *cmd;    /* in the line for a missing image: "CMD takes JPEG or PNG image files" */
    sn_head head;       /* the head the model must have */
    const char *not_it; /* the error otherwise, a format for the file's name */
} cli_image_model;

/* The model and the image arguments of classify or detect. */
typedef struct {
    sn_model *model;
    unsigned char *skip; /* per image, 1: it does not exist and is left out (the others run) */
    int missing;         /* how many are left out */
} cli_images;

/* Loads weights as the model of what, then writes a line for each image that does not exist.
 * 1 after the error (no image left is one), with nothing to free; else close_images frees. */
int open_images(const cli_image_model *what, const char *weights, const char *const *files, int n,
                cli_images *im);
void close_images(cli_images *im);

#endif
