/* What several commands do alike: the error lines, the checks of inputs and outputs before any
 * long work, building or loading the model, and the dataset flags of train and eval. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"

int die(const char *fmt, const char *arg) {
    fprintf(stderr, "spinenet: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return 1;
}

int usage_error(const char *fmt, const char *arg) { return die(fmt, arg) + 1; }

int fail_status(void) {
    fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
    return 1;
}

int fail_flags(sn_status st) {
    const int usage = st == SN_ERR_INVALID_ARG || st == SN_ERR_UNSUPPORTED || st == SN_ERR_NOT_FOUND;
    return fail_status() + usage;
}

/* One line naming the input and what the flag takes when it does not exist. */
int need_path(const char *path, int dir, const char *takes) {
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

/* A missing output folder is not an error here: the command creates it with its parents. */
int need_out(const char *path, int dir, const char *flag) {
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

double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- The model ------------------------------------------------------------------------------ */

/* An unknown model, flavour, head or activation is a bad command line: exit status 2. */
int get_config(const cli_model_opts *o, sn_config *cfg) {
    if (sn_config_init(cfg, o->model) != SN_OK ||
        (o->flavour && sn_parse_flavour(o->flavour, &cfg->flavour) != SN_OK) ||
        (o->head && sn_parse_head(o->head, &cfg->head) != SN_OK) ||
        (o->act && sn_parse_act(o->act, &cfg->activation) != SN_OK))
        return fail_status() + 1;
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
            return usage_error("--block-spec path too long: %s", o->block_spec);
        snprintf(cfg->block_spec_path, sizeof cfg->block_spec_path, "%s", o->block_spec);
    }
    return 0;
}

int load_model(const char *weights, sn_model **m) {
    if (need_path(weights, 0, TAKES_WEIGHTS)) return 1;
    if (sn_model_load(weights, m) != SN_OK) return fail_status();
    return 0;
}

int load_model_with_head(const char *weights, sn_head head, const char *not_it, sn_model **m) {
    if (load_model(weights, m)) return 1;
    if (sn_model_config(*m)->head == head) return 0;
    sn_model_free(*m);
    *m = NULL;
    return die(not_it, weights);
}

char **model_class_names(const sn_model *m) {
    const int k = sn_model_config(m)->num_classes;
    if (k <= 0 || !sn_model_class_name(m, 0)) return NULL;
    char **names = calloc((size_t)k, sizeof *names);
    for (int i = 0; names && i < k; i++) {
        /* sn_model_class_name's buffer is reused by the next call: copy each name */
        const char *nm = sn_model_class_name(m, i);
        if (!(names[i] = strdup(nm ? nm : ""))) {
            free_class_names(names, i);
            return NULL;
        }
    }
    return names;
}

void free_class_names(char **names, int k) {
    for (int i = 0; names && i < k; i++) free(names[i]);
    free(names);
}

int get_model(const cli_model_opts *o, sn_model **m) {
    if (o->weights) return load_model(o->weights, m);
    sn_config cfg;
    int rc = get_config(o, &cfg);
    if (rc) return rc;
    sn_status st = sn_model_create(&cfg, o->seed, m);
    if (st != SN_OK) return fail_flags(st);
    return 0;
}

void input_dims(int size, int height, int width, int model_size, int *h, int *w) {
    const int s = size ? size : model_size;
    *h = height ? height : s;
    *w = width ? width : s;
}

/* ---- Datasets ------------------------------------------------------------------------------- */

#define SN_FMNIST_DIR "/usr/share/datasets/fashion-mnist"

const char *fmnist_dir(const char *spec) {
    if (strcmp(spec, "fashion-mnist") == 0) return SN_FMNIST_DIR;
    if (strncmp(spec, "fashion-mnist:", 14) == 0) return spec + 14;
    return NULL;
}

int need_data(const char *spec, int det, const char *flag) {
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

int task_of(const char *task, int *det) {
    *det = task && strcmp(task, "detect") == 0;
    if (task && !*det && strcmp(task, "classify") != 0)
        return usage_error("unknown --task '%s' (classify or detect)", task);
    return 0;
}

int open_images(const cli_image_model *what, const char *weights, const char *const *files, int n,
                cli_images *im) {
    memset(im, 0, sizeof *im);
    if (load_model_with_head(weights, what->head, what->not_it, &im->model)) return 1;
    im->skip = calloc((size_t)n, 1);
    if (!im->skip) {
        close_images(im);
        return die("%s", "out of memory");
    }
    char takes[64];
    snprintf(takes, sizeof takes, "%s takes JPEG or PNG image files", what->cmd);
    for (int i = 0; i < n; i++) {
        im->skip[i] = (unsigned char)need_path(files[i], 0, takes);
        im->missing += im->skip[i];
    }
    if (im->missing < n) return 0;
    close_images(im);
    return 1;
}

void close_images(cli_images *im) {
    free(im->skip);
    sn_model_free(im->model);
    memset(im, 0, sizeof *im);
}
