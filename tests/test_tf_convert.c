/* spinenet convert's library side (src/models/tf_convert.c) on checkpoints written by the test
 * writer (tfckpt_write.h) under both naming schemes (tf_names.h): for a SpineNet and a Mobile
 * SpineNet in each flavour, RetinaNet and classifier heads, random values survive bit for bit,
 * the converted model's forward pass equals the original's exactly, --ema takes the shadow
 * variables, optimizer slots and global_step are skipped by rule, and every missing, extra or
 * misshapen tensor is reported (all of them) with the conversion refused. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core.h"
#define T_RNG_SEED 1818u
#include "test.h"
#include "testutil.h"
#include "tf_convert.h"
#include "tf_names.h"
#include "tfckpt_write.h"

static char g_tmp[512];

/* Every parameter filled with distinct values (variances positive), so that a swapped tensor
 * or a wrong layout shows. */
static void fill_params(sn_model *m, uint64_t seed) {
    for (int i = 0; i < m->params.n; i++) {
        sn_tensor_param *p = &m->params.t[i];
        const char *n = p->name;
        size_t len = strlen(n);
        int var = len > 7 && strcmp(n + len - 7, ".bn.var") == 0;
        int bnv = strstr(n, ".bn_l") && len > 4 && strcmp(n + len - 4, ".var") == 0;
        if (var || bnv) sn_hash_fill(p->data, p->count, n, seed, 0.5, 1.5);
        else sn_hash_fill(p->data, p->count, n, seed, -0.2, 0.2);
    }
}

/* The checkpoint's shape of a parameter: depthwise kernels are [kh, kw, C, 1] in TensorFlow. */
static void tf_shape(const sn_tensor_param *p, tw_tensor *t) {
    t->ndim = p->ndim;
    for (int d = 0; d < p->ndim; d++) t->shape[d] = p->shape[d];
    if (p->ndim == 4 && p->shape[0] == 3 && p->shape[2] == 1) {
        t->shape[2] = p->shape[3];
        t->shape[3] = 1;
    }
}

typedef struct {
    const char *model;
    sn_flavour flavour;
    sn_head head;
    int size;
    int cli; /* also run `spinenet convert` on it (a variant at its own widths but the
                endpoints and head, which the command reads off the checkpoint) */
} conv_case;

/* Writes a checkpoint of m under its scheme: the weights, their moving averages (ema_vals, when
 * not NULL) for the trainable ones, an optimizer slot for some of them, global_step; `drop`,
 * `extra` and `reshape` make faults (-1: none). */
static int write_ckpt(const sn_model *m, const char *prefix, int snappy, int drop, int extra,
                      int reshape, float **ema_vals) {
    sn_tf_names nm, em;
    if (sn_tf_names_make(m, 0, &nm) != SN_OK || sn_tf_names_make(m, 1, &em) != SN_OK) return -1;
    int garden = m->cfg.flavour == SN_FLAVOUR_GARDEN;
    int cap = 3 * m->params.n + 4, n = 0;
    tw_tensor *t = calloc((size_t)cap, sizeof *t);
    char **names = calloc((size_t)cap, sizeof *names);
    static int64_t step = 12345;
    static float extra_data[6];
    for (int i = 0; i < m->params.n; i++) {
        const sn_tensor_param *p = &m->params.t[i];
        if (i == drop) continue;
        tw_tensor *w = &t[n++];
        w->name = nm.v[i].tf;
        w->dtype = SN_TF_FLOAT;
        tf_shape(p, w);
        if (i == reshape) w->shape[w->ndim - 1] += 1;
        w->data = p->data;
        w->bytes = p->count * sizeof(float);
        if (i == reshape) w->bytes += (p->count / (size_t)p->shape[p->ndim - 1]) * sizeof(float);
        if (i == reshape) { /* more bytes than the tensor has: give it a buffer of its own */
            float *b = calloc(w->bytes / sizeof(float), sizeof(float));
            w->data = b;
            names[n - 1] = (char *)b;
        }
        w->shard = i % 2;
        if (i == reshape || !strcmp(em.v[i].tf, nm.v[i].tf)) continue; /* not trainable */
        if (ema_vals) { /* the moving average */
            tw_tensor *e = &t[n++];
            *e = *w;
            e->name = em.v[i].tf;
            e->data = ema_vals[i];
        }
        if (i % 8 == 0) { /* an optimizer slot (some of them: they only need to be skipped) */
            tw_tensor *s = &t[n++];
            *s = *w;
            size_t len = strlen(nm.v[i].tf) + 64;
            char *sn = malloc(len);
            if (garden) {
                /* ".../kernel/.ATTRIBUTES/VARIABLE_VALUE" -> ".../kernel/.OPTIMIZER_SLOT/optimizer/momentum/.ATTRIBUTES/VARIABLE_VALUE" */
                const char *attr = strstr(nm.v[i].tf, "/.ATTRIBUTES/");
                size_t k = attr ? (size_t)(attr - nm.v[i].tf) : strlen(nm.v[i].tf);
                snprintf(sn, len, "%.*s/.OPTIMIZER_SLOT/optimizer/momentum/.ATTRIBUTES/VARIABLE_VALUE",
                         (int)k, nm.v[i].tf);
            } else {
                snprintf(sn, len, "%s/Momentum", nm.v[i].tf);
            }
            s->name = sn;
            names[n - 1] = sn;
        }
    }
    t[n++] = (tw_tensor){garden ? "global_step/.ATTRIBUTES/VARIABLE_VALUE" : "global_step",
                         SN_TF_INT64, 0, {0}, &step, 8, 0, 0, NULL, 0};
    if (extra >= 0)
        t[n++] = (tw_tensor){"extra/unknown_tensor", SN_TF_FLOAT, 2, {2, 3}, extra_data,
                             sizeof extra_data, 0, 0, NULL, 0};
    tw_opts o = {.snappy = snappy, .num_shards = 2};
    int rc = tw_write(prefix, t, n, &o);
    for (int i = 0; i < cap; i++) free(names[i]);
    free(names);
    free(t);
    sn_tf_names_free(&nm);
    sn_tf_names_free(&em);
    return rc;
}

static int params_equal(const sn_model *a, const sn_model *b, float *const *alt) {
    if (a->params.n != b->params.n) return 0;
    for (int i = 0; i < a->params.n; i++) {
        const float *want = alt ? alt[i] : a->params.t[i].data;
        if (strcmp(a->params.t[i].name, b->params.t[i].name) != 0 ||
            a->params.t[i].count != b->params.t[i].count ||
            memcmp(want, b->params.t[i].data, a->params.t[i].count * sizeof(float)) != 0) {
            fprintf(stderr, "differs: %s\n", a->params.t[i].name);
            return 0;
        }
    }
    return 1;
}

/* The outputs of both models on the same input are the same bits. */
static int same_forward(sn_model *a, sn_model *b, int size) {
    size_t n = (size_t)size * size * 3;
    float *x = t_frand(n, -2.0f, 2.0f);
    int ok = sn_model_plan(a, 1, size, size) == SN_OK && sn_model_plan(b, 1, size, size) == SN_OK &&
             sn_model_run(a, x) == SN_OK && sn_model_run(b, x) == SN_OK;
    int outs = ok ? sn_model_num_outputs(a) : 0;
    for (int i = 0; ok && i < outs; i++) {
        sn_output oa, ob;
        ok = sn_model_output_at(a, i, &oa) == SN_OK && sn_model_output_at(b, i, &ob) == SN_OK &&
             oa.n * oa.h * oa.w * oa.c == ob.n * ob.h * ob.w * ob.c &&
             memcmp(oa.data, ob.data, (size_t)oa.n * oa.h * oa.w * oa.c * sizeof(float)) == 0;
        if (!ok) fprintf(stderr, "output %s differs\n", oa.name);
    }
    free(x);
    return ok && outs > 0;
}

static void test_case(const conv_case *k, int idx) {
    sn_config cfg;
    CHECK_OK(sn_config_init(&cfg, k->model));
    cfg.flavour = k->flavour;
    cfg.head = k->head;
    cfg.num_classes = k->head == SN_HEAD_CLASSIFIER ? 10 : 0;
    cfg.input_size = k->size;
    /* Narrower than the variant (the names do not depend on the widths), to keep the files
     * small: half of SpineNet-49S's filters, 64-wide endpoints, a 32-wide head. */
    if (strstr(k->model, "mobile") == NULL) cfg.filter_scale = 0.5f;
    cfg.endpoints_filters = 64;
    cfg.head_filters = 32;
    sn_config_resolve(&cfg);
    sn_model *a = NULL;
    CHECK_OK(sn_model_create(&cfg, 7, &a));
    if (!a) return;
    fill_params(a, 100 + (uint64_t)idx);
    {   /* the narrowing keeps every tensor of the variant (no projection appears or goes) */
        sn_config full;
        sn_model *f = NULL;
        CHECK_OK(sn_config_init(&full, k->model));
        full.flavour = k->flavour;
        full.head = k->head;
        full.num_classes = cfg.num_classes;
        full.input_size = k->size;
        CHECK_OK(sn_model_create_shapes(&full, &f));
        int same = f && f->params.n == a->params.n;
        for (int i = 0; same && i < a->params.n; i++)
            same = !strcmp(f->params.t[i].name, a->params.t[i].name);
        CHECK(same, "%s: the narrowed model has the variant's tensors", k->model);
        sn_model_free(f);
    }
    int np = a->params.n > 0 ? a->params.n : 1;
    float **ema = calloc((size_t)np, sizeof *ema);
    for (int i = 0; i < a->params.n; i++) {
        ema[i] = malloc(a->params.t[i].count * sizeof(float));
        for (size_t j = 0; j < a->params.t[i].count; j++) ema[i][j] = a->params.t[i].data[j] + 1.0f;
    }
    char label[160];
    snprintf(label, sizeof label, "%s %s %s", k->model, sn_flavour_name(k->flavour),
             sn_head_name(k->head));
    char prefix[700];
    snprintf(prefix, sizeof prefix, "%s/case%d/model.ckpt-5", g_tmp, idx);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/case%d", g_tmp, idx);
    mkdir(dir, 0755);
    CHECK(write_ckpt(a, prefix, idx % 2, -1, -1, -1, ema) == 0, "%s: write", label);

    /* The names alone (--check), then the data: bit for bit, and the same forward pass. */
    sn_tf_report rep;
    sn_config c2 = cfg;
    sn_tf_convert_opts co = {0};
    CHECK(sn_tf_convert(&c2, prefix, &co, &rep, NULL) == SN_OK && rep.n_problems == 0 &&
              rep.n_mapped == a->params.n,
          "%s: check: %s (%d of %d)", label, sn_last_error(), rep.n_mapped, a->params.n);
    CHECK(rep.n_state == 1 && rep.n_slots > 0 && rep.n_other_copy >= rep.n_slots,
          "%s: skipped: %d state, %d slots, %d averages", label, rep.n_state, rep.n_slots,
          rep.n_other_copy);
    sn_tf_report_free(&rep);
    sn_model *b = NULL;
    co.read_data = 1;
    c2 = cfg;
    CHECK(sn_tf_convert(&c2, prefix, &co, &rep, &b) == SN_OK && b, "%s: convert: %s", label,
          sn_last_error());
    sn_tf_report_free(&rep);
    if (b) {
        CHECK(params_equal(a, b, NULL), "%s: every tensor bit for bit", label);
        CHECK(same_forward(a, b, k->size), "%s: the same outputs", label);
        sn_model_free(b);
        b = NULL;
    }
    const char *cli = getenv("SN_CLI");
    if (k->cli && cli && *cli) {
        /* The command: flavour and head read off the names, the endpoint and head widths off
         * the shapes; the file it writes loads as the same model, with complete metadata. */
        char cmd[2400], out[800];
        snprintf(out, sizeof out, "%s/case%d/converted.safetensors", g_tmp, idx);
        snprintf(cmd, sizeof cmd, "'%s' convert --from tf '%s' --model %s -o '%s' > '%s.log' 2>&1",
                 cli, prefix, k->model, out, out);
        int rc = system(cmd);
        CHECK(rc == 0, "%s: %s -> %d", label, cmd, rc);
        CHECK_OK(sn_model_load(out, &b));
        if (b) {
            const sn_config *bc = sn_model_config(b);
            CHECK(bc->flavour == cfg.flavour && bc->head == cfg.head &&
                      bc->num_classes == cfg.num_classes && bc->endpoints_filters == 64 &&
                      bc->head_filters == 32 && bc->bn_eps == cfg.bn_eps &&
                      bc->activation == cfg.activation && bc->anchor_size == cfg.anchor_size,
                  "%s: the converted file's configuration", label);
            CHECK(params_equal(a, b, NULL), "%s: spinenet convert: every tensor bit for bit", label);
            sn_model_free(b);
            b = NULL;
        }
    }
    /* --ema: the shadow values (the raw ones are skipped by rule). */
    co.ema = 1;
    c2 = cfg;
    CHECK(sn_tf_convert(&c2, prefix, &co, &rep, &b) == SN_OK && b, "%s: convert --ema: %s", label,
          sn_last_error());
    sn_tf_report_free(&rep);
    if (b) {
        /* Moving statistics have no shadow: their key is the same either way. */
        sn_tf_names nm, em;
        int ok = sn_tf_names_make(a, 0, &nm) == SN_OK && sn_tf_names_make(a, 1, &em) == SN_OK;
        for (int i = 0; ok && i < a->params.n; i++)
            if (!strcmp(nm.v[i].tf, em.v[i].tf)) memcpy(ema[i], a->params.t[i].data,
                                                         a->params.t[i].count * sizeof(float));
        CHECK(ok && params_equal(a, b, ema), "%s: --ema takes the averages", label);
        sn_tf_names_free(&nm);
        sn_tf_names_free(&em);
        sn_model_free(b);
        b = NULL;
    }
    /* Faults: one tensor missing, one extra, one misshapen: all three reported, no model. */
    int drop = a->params.n / 2, reshape = a->params.n / 3;
    CHECK(write_ckpt(a, prefix, 0, drop, 1, reshape, NULL) == 0, "%s: write faults", label);
    co.ema = 0;
    c2 = cfg;
    sn_status st = sn_tf_convert(&c2, prefix, &co, &rep, &b);
    int kinds[4] = {0};
    for (int i = 0; i < rep.n_problems; i++) kinds[rep.problems[i].kind]++;
    CHECK(st == SN_ERR_FORMAT && !b && rep.n_problems == 3 && kinds[SN_TF_MISSING] == 1 &&
              kinds[SN_TF_SHAPE] == 1 && kinds[SN_TF_UNUSED] == 1 && strstr(sn_last_error(), "3 problem"),
          "%s: faults: %s, %d problems", label, sn_status_name(st), rep.n_problems);
    for (int i = 0; i < rep.n_problems; i++) {
        const sn_tf_problem *p = &rep.problems[i];
        if (p->kind == SN_TF_MISSING)
            CHECK(!strcmp(p->model, a->params.t[drop].name), "%s: missing names %s", label, p->model);
        if (p->kind == SN_TF_SHAPE)
            CHECK(!strcmp(p->model, a->params.t[reshape].name) && p->tf_shape[0] == '[',
                  "%s: shape names %s", label, p->model);
        if (p->kind == SN_TF_UNUSED)
            CHECK(!strcmp(p->tf, "extra/unknown_tensor") && !strcmp(p->tf_shape, "[2, 3]"),
                  "%s: unused names %s", label, p->tf);
    }
    sn_tf_report_free(&rep);
    /* --ignore takes the extra one out of the report; the other two remain. */
    co.ignore = "nothing,unknown_tensor";
    c2 = cfg;
    st = sn_tf_convert(&c2, prefix, &co, &rep, NULL);
    CHECK(st == SN_ERR_FORMAT && rep.n_problems == 2 && rep.n_ignored == 1, "%s: --ignore", label);
    sn_tf_report_free(&rep);
    for (int i = 0; i < a->params.n; i++) free(ema[i]);
    free(ema);
    sn_model_free(a);
}

/* Sizes the checkpoint decides are read off its shapes when asked, and reported otherwise. */
static void test_infer(void) {
    sn_config cfg;
    CHECK_OK(sn_config_init(&cfg, "spinenet-49s"));
    cfg.flavour = SN_FLAVOUR_TPU;
    cfg.endpoints_filters = 64;
    cfg.head_filters = 32;
    cfg.num_classes = 7;
    cfg.filter_scale = 0.5f;
    cfg.input_size = 128;
    sn_model *a = NULL;
    CHECK_OK(sn_model_create(&cfg, 3, &a));
    if (!a) return;
    int np = a->params.n > 0 ? a->params.n : 1;
    float **ema = calloc((size_t)np, sizeof *ema);
    for (int i = 0; i < a->params.n; i++) ema[i] = a->params.t[i].data;
    char prefix[700];
    snprintf(prefix, sizeof prefix, "%s/infer", g_tmp);
    CHECK(write_ckpt(a, prefix, 1, -1, -1, -1, ema) == 0, "write");
    sn_config c2;
    CHECK_OK(sn_config_init(&c2, "spinenet-49s"));
    c2.flavour = SN_FLAVOUR_TPU;
    c2.filter_scale = 0.5f;
    sn_tf_report rep;
    sn_tf_convert_opts co = {.infer = 0};
    CHECK(sn_tf_convert(&c2, prefix, &co, &rep, NULL) == SN_ERR_FORMAT && rep.n_problems > 0,
          "without inference the widths differ");
    sn_tf_report_free(&rep);
    co.infer = SN_TF_INFER_CLASSES | SN_TF_INFER_ENDPOINTS | SN_TF_INFER_HEAD_FILTERS;
    CHECK(sn_tf_convert(&c2, prefix, &co, &rep, NULL) == SN_OK && c2.endpoints_filters == 64 &&
              c2.head_filters == 32 && c2.num_classes == 7 &&
              strstr(rep.inferred, "endpoints-filters 64") && strstr(rep.inferred, "classes 7"),
          "inferred: %s (%s)", rep.inferred, sn_last_error());
    sn_tf_report_free(&rep);
    free(ema);
    sn_model_free(a);
}

int main(void) {
    if (t_make_tmpdir(g_tmp, sizeof g_tmp, "sn_tfconv") != 0) return 1;
    const conv_case cases[] = {
        {"spinenet-49s", SN_FLAVOUR_TPU, SN_HEAD_RETINANET, 128, 0},
        {"spinenet-49s", SN_FLAVOUR_GARDEN, SN_HEAD_RETINANET, 128, 0},
        {"spinenet-mobile-49", SN_FLAVOUR_TPU, SN_HEAD_RETINANET, 128, 1},
        {"spinenet-mobile-49xs", SN_FLAVOUR_GARDEN, SN_HEAD_RETINANET, 128, 0},
        {"spinenet-49s", SN_FLAVOUR_TPU, SN_HEAD_CLASSIFIER, 224, 0},
        {"spinenet-mobile-49", SN_FLAVOUR_TPU, SN_HEAD_CLASSIFIER, 256, 0},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) test_case(&cases[i], i);
    test_infer();
    /* The Model Garden has no SpineNet classifier: refused with a message. */
    sn_config cfg;
    CHECK_OK(sn_config_init(&cfg, "spinenet-49s"));
    cfg.head = SN_HEAD_CLASSIFIER;
    cfg.flavour = SN_FLAVOUR_GARDEN;
    sn_model *m = NULL;
    CHECK_OK(sn_model_create_shapes(&cfg, &m));
    sn_tf_names nm;
    CHECK(m && sn_tf_names_make(m, 0, &nm) == SN_ERR_UNSUPPORTED && nm.v == NULL,
          "garden classifier refused: %s", sn_last_error());
    sn_model_free(m);
    t_rm_tree(g_tmp);
    return TEST_SUMMARY();
}
