/* spinenet info: the per-block table of a model (level, type, channels, size, params, MACs) and
 * its totals, as text or JSON; without --weights from the shapes alone. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

typedef struct {
    cli_model_opts m;
    int height, width, json;
} opts;

static const opts k_defaults = {.m = CLI_MODEL_DEFAULTS};

static const cli_flag k_flags[] = {
    CLI_WEIGHTS_OR_BUILD_FLAGS,
    CLI_INPUT_FLAGS,
    FSWITCH("--json", json, "print JSON: {\"params\": N, \"macs\": N, ..., \"blocks\": [...]}",
            "off"),
};

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

static void print_json(const sn_config *c, int h, int w, const sn_block_info *rows, int n_rows,
                       int64_t tp, int64_t tm, int64_t head_p, int64_t head_m) {
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
}

static void print_table(const sn_config *c, int h, int w, const sn_block_info *rows, int n_rows,
                        int64_t tp, int64_t tm, int64_t head_p, int64_t head_m) {
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

static int run(const void *options, const char *const *args, int n_args) {
    const opts *o = options;
    /* Without --weights the report needs shapes only: no weights are allocated. */
    sn_model *m = NULL;
    sn_config cfg;
    if (o->m.weights) {
        int rc = get_model(&o->m, &m);
        if (rc) return rc;
        cfg = *sn_model_config(m);
    } else {
        int rc = get_config(&o->m, &cfg);
        if (rc) return rc;
    }
    sn_config_resolve(&cfg);
    int h, w;
    input_dims(o->m.size, o->height, o->width, cfg.input_size, &h, &w);
    int n_rows = 0;
    int64_t tp = 0, tm = 0;
    sn_status st = m ? sn_model_info(m, h, w, NULL, 0, &n_rows, &tp, &tm)
                     : sn_config_info(&cfg, h, w, NULL, 0, &n_rows, &tp, &tm);
    if (st != SN_OK) {
        sn_model_free(m);
        return fail_flags(st);
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
    int64_t head_p = 0, head_m = 0;
    for (int i = 0; i < n_rows; i++)
        if (rows[i].index == -2) {
            head_p = rows[i].params;
            head_m = rows[i].macs;
        }
    if (o->json)
        print_json(&cfg, h, w, rows, n_rows, tp, tm, head_p, head_m);
    else
        print_table(&cfg, h, w, rows, n_rows, tp, tm, head_p, head_m);
    free(rows);
    sn_model_free(m);
    return 0;
}

const cli_command cmd_info = {
    .name = "info",
    .summary = "per-block table of a model: level, type, channels, size, params, MACs",
    .usage = "spinenet info [--model NAME] [model flags] [--size S] [--json]\n"
             "spinenet info --weights FILE [--size S] [--json]",
    .about = "The blocks of a model (level, type, channels, output size, parents, params and "
             "multiply-adds) and the totals, split into backbone and head. Without --weights "
             "only shapes are computed: no weights are allocated.",
    .examples = "spinenet info --model spinenet-49 --head retinanet --size 640\n"
                "spinenet info --model spinenet-mobile-49 --size 384 --json",
    CLI_PARTS(CLI_POS_NONE),
};
