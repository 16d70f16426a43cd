/* spinenet bench: the forward pass timed on a seeded random input (median, min, max, GFLOP/s,
 * memory), and with --profile layer by layer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "kernels.h"

typedef struct {
    cli_model_opts m;
    int height, width, batch, runs, warmup, nofold, profile, threads, json;
} opts;

static const opts k_defaults = {
    .m = CLI_MODEL_DEFAULTS, .batch = 1, .runs = 10, .warmup = 1, .threads = 1};

static const cli_flag k_flags[] = {
    CLI_WEIGHTS_OR_BUILD_FLAGS,
    CLI_INPUT_FLAGS,
    FINT("--batch", "B", batch, 1, 65536, "images per forward pass", NULL),
    FINT("--runs", "N", runs, 1, 100000, "timed runs (and, with --profile, profiled ones)", NULL),
    FINT("--warmup", "N", warmup, 0, 1000, "untimed runs first", NULL),
    FSWITCH("--no-fold", nofold, "keep batch-norm apart from the convolutions",
            "off: folded into them"),
    FSWITCH("--profile", profile,
            "then --runs more runs, timed layer by layer: time and GFLOP/s per layer shape and "
            "per op, largest first", "off"),
    CLI_THREADS_FLAG,
    CLI_SEED_WEIGHTS_FLAG,
    FSWITCH("--json", json,
            "print one JSON object: {\"median_ms\", \"min_ms\", \"max_ms\", \"gflops\", ...}",
            "off"),
};

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

static int run(const void *options, const char *const *args, int n_args) {
    const opts *o = options;
    sn_model *m = NULL;
    int rc0 = get_model(&o->m, &m);
    if (rc0) return rc0;
    int h, w;
    input_dims(o->m.size, o->height, o->width, sn_model_config(m)->input_size, &h, &w);
    int n_rows;
    int64_t tp, tm;
    sn_status st;
    if ((st = sn_model_info(m, h, w, NULL, 0, &n_rows, &tp, &tm)) != SN_OK ||
        (st = sn_model_set_threads(m, o->threads)) != SN_OK ||
        (st = sn_model_set_fold_bn(m, !o->nofold)) != SN_OK ||
        (st = sn_model_plan(m, o->batch, h, w)) != SN_OK) {
        sn_model_free(m);
        return fail_flags(st); /* --size, --height, --width or --batch the model cannot take */
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

const cli_command cmd_bench = {
    .name = "bench",
    .summary = "time the forward pass",
    .usage = "spinenet bench [--model NAME] [model flags] [--size S] [--threads T] [--runs N] "
             "[--json]\n"
             "spinenet bench --weights FILE [--size S] [--threads T] [--runs N] [--json]",
    .about = "Times the forward pass on a seeded random input: --warmup untimed runs, then "
             "--runs timed ones; prints the median, min and max, the multiply-adds, GFLOP/s, "
             "the arena and the peak RSS, and the kernels' build in use. Without --weights "
             "the model is built from the model flags with seeded random weights.",
    .examples = "spinenet bench --model spinenet-49 --size 640 --threads 2\n"
                "spinenet bench --weights model.safetensors --size 384 --runs 5 --profile",
    CLI_PARTS(CLI_POS_NONE),
};
