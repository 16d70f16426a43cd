/* spinenet: the command-line tool. One function per subcommand; errors print
 * "spinenet: error: ..." and exit non-zero. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "data.h"
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
    int classes, endpoints, size, height, width, min_level, max_level, p2, threads, runs, batch, json, nofold,
        warmup, top;
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
            "  classify top-k classes of images with a classifier: --weights W IMAGE...\n"
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
            "       [--no-fold] [--json]\n"
            "classify: --weights FILE [--size S (default: the model's)] [--top K (default 5)]\n"
            "       [--threads T] IMAGE... (JPEG or PNG; resized to S x S, normalised as spec 7.6)\n");
}

static int parse_opts(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->model = "spinenet-49";
    o->threads = 1;
    o->runs = 10;
    o->batch = 1;
    o->min_level = -1;
    o->max_level = -1;
    o->warmup = 1;
    o->top = 5;
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
        STR("-o", out)
        STR("--output", out)
        INT("--classes", classes, 1, 100000)
        INT("--endpoints-filters", endpoints, 1, 4096)
        INT("--size", size, 1, 16384)
        INT("--height", height, 1, 16384)
        INT("--width", width, 1, 16384)
        INT("--min-level", min_level, 2, 7)
        INT("--max-level", max_level, 2, 7)
        INT("--threads", threads, 0, 1024)
        INT("--runs", runs, 1, 100000)
        INT("--batch", batch, 1, 65536)
        INT("--warmup", warmup, 0, 1000)
        INT("--top", top, 1, 100000)
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
                   "\"macs\": %.0f, \"gflops\": %.2f, \"arena_mb\": %.1f, \"peak_rss_mb\": %.1f}\n",
                   c->model, h, w, o->batch, o->threads, o->runs, med * 1e3, t[0] * 1e3,
                   t[o->runs - 1] * 1e3, macs, gflops,
                   (double)sn_model_arena_bytes(m) / 1048576.0, rss_mb);
        else
            printf("%s %s %dx%d batch %d, %d thread(s): median %.1f ms over %d runs (min %.1f, max "
                   "%.1f), %.2f GMACs, %.1f GFLOP/s; arena %.1f MB, peak RSS %.1f MB\n",
                   c->model, sn_head_name(c->head), h, w, o->batch, o->threads, med * 1e3, o->runs,
                   t[0] * 1e3, t[o->runs - 1] * 1e3, macs / 1e9, gflops,
                   (double)sn_model_arena_bytes(m) / 1048576.0, rss_mb);
    }
    free(x);
    free(t);
    sn_model_free(m);
    return rc;
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
        printf("spinenet %s\n", SN_VERSION_STRING);
        return 0;
    }
    opts o;
    if (strcmp(cmd, "info") != 0 && strcmp(cmd, "init") != 0 && strcmp(cmd, "bench") != 0 &&
        strcmp(cmd, "classify") != 0)
        return die("unknown command '%s' (info, init, bench, classify, version; see spinenet --help)",
                   cmd);
    int rc;
    if (parse_opts(argc, argv, &o))
        rc = 2;
    else if (o.n_files && strcmp(cmd, "classify") != 0)
        rc = die("unexpected argument '%s' (see spinenet --help)", o.files[0]);
    else if (strcmp(cmd, "info") == 0)
        rc = cmd_info(&o);
    else if (strcmp(cmd, "init") == 0)
        rc = cmd_init(&o);
    else if (strcmp(cmd, "classify") == 0)
        rc = cmd_classify(&o);
    else
        rc = cmd_bench(&o);
    free(o.files);
    return rc;
}
