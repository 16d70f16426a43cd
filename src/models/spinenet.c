/* SpineNet and Mobile SpineNet: block-spec tables, scaling maps, and the builder that turns a
 * table into a graph for one input size, in the Model Garden ("garden") or TF1 ("tpu") flavour.
 * The official code it follows: tensorflow/models official/vision/modeling/backbones/spinenet.py
 * and spinenet_mobile.py (garden), tensorflow/tpu models/official/detection/modeling/
 * architecture/spinenet.py and spinenet_mobile.py (tpu); heads in dense_prediction_heads.py
 * (garden) and heads.py (tpu). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "model.h"

/* ---------------------------------------------------------------- tables */

/* level, type, parents, output. The last row is the Model Garden's level-2 output row. */
static const sn_block_spec k_spinenet_specs[] = {
    {2, SN_BLOCK_BOTTLENECK, {0, 1}, 0, 0},   {4, SN_BLOCK_RESIDUAL, {0, 1}, 0, 0},
    {3, SN_BLOCK_BOTTLENECK, {2, 3}, 0, 0},   {4, SN_BLOCK_BOTTLENECK, {2, 4}, 0, 0},
    {6, SN_BLOCK_RESIDUAL, {3, 5}, 0, 0},     {4, SN_BLOCK_BOTTLENECK, {3, 5}, 0, 0},
    {5, SN_BLOCK_RESIDUAL, {6, 7}, 0, 0},     {7, SN_BLOCK_RESIDUAL, {6, 8}, 0, 0},
    {5, SN_BLOCK_BOTTLENECK, {8, 9}, 0, 0},   {5, SN_BLOCK_BOTTLENECK, {8, 10}, 0, 0},
    {4, SN_BLOCK_BOTTLENECK, {5, 10}, 1, 0},  {3, SN_BLOCK_BOTTLENECK, {4, 10}, 1, 0},
    {5, SN_BLOCK_BOTTLENECK, {7, 12}, 1, 0},  {7, SN_BLOCK_BOTTLENECK, {5, 14}, 1, 0},
    {6, SN_BLOCK_BOTTLENECK, {12, 14}, 1, 0}, {2, SN_BLOCK_BOTTLENECK, {2, 13}, 1, 1},
};

static const sn_block_spec k_mobile_specs[] = {
    {2, SN_BLOCK_MBCONV, {0, 1}, 0, 0},   {2, SN_BLOCK_MBCONV, {1, 2}, 0, 0},
    {4, SN_BLOCK_MBCONV, {1, 2}, 0, 0},   {3, SN_BLOCK_MBCONV, {3, 4}, 0, 0},
    {4, SN_BLOCK_MBCONV, {3, 5}, 0, 0},   {6, SN_BLOCK_MBCONV, {4, 6}, 0, 0},
    {4, SN_BLOCK_MBCONV, {4, 6}, 0, 0},   {5, SN_BLOCK_MBCONV, {7, 8}, 0, 0},
    {7, SN_BLOCK_MBCONV, {7, 9}, 0, 0},   {5, SN_BLOCK_MBCONV, {9, 10}, 0, 0},
    {5, SN_BLOCK_MBCONV, {9, 11}, 0, 0},  {4, SN_BLOCK_MBCONV, {6, 11}, 1, 0},
    {3, SN_BLOCK_MBCONV, {5, 11}, 1, 0},  {5, SN_BLOCK_MBCONV, {8, 13}, 1, 0},
    {7, SN_BLOCK_MBCONV, {6, 15}, 1, 0},  {6, SN_BLOCK_MBCONV, {13, 15}, 1, 0},
};

static const int k_filters[8] = {0, 32, 64, 128, 256, 256, 256, 256};       /* per level */
static const int k_mobile_filters[8] = {8, 16, 24, 40, 80, 112, 112, 112}; /* mobile */

typedef struct {
    const char *name;
    int mobile;
    int endpoints;
    float scale, alpha;
    int repeats;
    int head_convs, head_filters, anchor_size, input_size;
} variant;

static const variant k_variants[] = {
    {"spinenet-49s", 0, 128, 0.65f, 0.5f, 1, 4, 128, 3, 640},
    {"spinenet-49", 0, 256, 1.0f, 0.5f, 1, 4, 256, 3, 640},
    {"spinenet-96", 0, 256, 1.0f, 0.5f, 2, 4, 256, 3, 1024},
    {"spinenet-143", 0, 256, 1.0f, 1.0f, 3, 4, 256, 4, 1280},
    {"spinenet-143l", 0, 256, 1.3f, 1.0f, 3, 4, 256, 4, 1280},
    {"spinenet-190", 0, 512, 1.3f, 1.0f, 4, 7, 512, 4, 1280},
    {"spinenet-mobile-49", 1, 48, 1.0f, 0.0f, 1, 4, 48, 3, 384},
    {"spinenet-mobile-49s", 1, 40, 0.65f, 0.0f, 1, 4, 40, 3, 384},
    {"spinenet-mobile-49xs", 1, 24, 0.6f, 0.0f, 1, 4, 24, 3, 256},
};
#define N_VARIANTS ((int)(sizeof k_variants / sizeof k_variants[0]))

static const char *const k_names[] = {
    "spinenet-49s",       "spinenet-49",         "spinenet-96", "spinenet-143", "spinenet-143l",
    "spinenet-190",       "spinenet-mobile-49",  "spinenet-mobile-49s",
    "spinenet-mobile-49xs", NULL};

const char *const *sn_model_names(void) { return k_names; }

static const variant *find_variant(const char *name) {
    for (int i = 0; i < N_VARIANTS; i++)
        if (strcmp(k_variants[i].name, name) == 0) return &k_variants[i];
    return NULL;
}

int sn_config_is_mobile(const sn_config *cfg) {
    const variant *v = find_variant(cfg->model);
    return v ? v->mobile : 0;
}

sn_status sn_config_init(sn_config *cfg, const char *model_name) {
    if (!cfg || !model_name) return sn_error(SN_ERR_INVALID_ARG, "sn_config_init: NULL argument");
    const variant *v = find_variant(model_name);
    if (!v) {
        char list[512] = "";
        for (int i = 0; k_names[i]; i++) {
            strcat(list, i ? ", " : "");
            strcat(list, k_names[i]);
        }
        return sn_error(SN_ERR_NOT_FOUND, "unknown model '%s' (known: %s)", model_name, list);
    }
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->model, sizeof cfg->model, "%s", v->name);
    cfg->flavour = SN_FLAVOUR_GARDEN;
    cfg->head = SN_HEAD_RETINANET;
    cfg->activation = SN_ACT_NONE; /* resolved per variant and flavour */
    cfg->min_level = 3;
    cfg->max_level = 7;
    cfg->input_size = v->input_size;
    cfg->head_convs = v->head_convs;
    cfg->head_filters = v->head_filters;
    cfg->anchor_size = v->anchor_size;
    cfg->endpoints_filters = v->endpoints;
    cfg->filter_scale = v->scale;
    cfg->resample_alpha = v->alpha;
    cfg->block_repeats = v->repeats;
    return SN_OK;
}

/* Defaults that depend on several fields, resolved when a model is created. */
void sn_config_resolve(sn_config *c) {
    int mobile = sn_config_is_mobile(c);
    if (c->activation == SN_ACT_NONE) {
        /* Mobile-49/49S use hard-swish in the Model Garden; the TF1 code has only relu/swish. */
        int hs = mobile && c->flavour == SN_FLAVOUR_GARDEN &&
                 strcmp(c->model, "spinenet-mobile-49xs") != 0;
        c->activation = hs ? SN_ACT_HSWISH : SN_ACT_SWISH;
    }
    if (c->bn_eps <= 0.0f) {
        if (c->flavour == SN_FLAVOUR_GARDEN)
            c->bn_eps = 1e-3f;
        else
            c->bn_eps = c->head == SN_HEAD_CLASSIFIER ? 1e-5f : 1e-4f;
    }
    if (c->num_classes <= 0) c->num_classes = c->head == SN_HEAD_CLASSIFIER ? 1001 : 91;
    if (c->bn_momentum <= 0.0f) {
        if (c->flavour == SN_FLAVOUR_GARDEN)
            c->bn_momentum = 0.99f;
        else
            c->bn_momentum = c->head == SN_HEAD_CLASSIFIER ? 0.9f : 0.997f;
    }
    if (c->p2) c->min_level = 2;
}

sn_status sn_config_validate(const sn_config *c) {
    const variant *v = find_variant(c->model);
    if (!v) {
        sn_config tmp;
        return sn_config_init(&tmp, c->model); /* sets the message */
    }
    if (c->flavour != SN_FLAVOUR_GARDEN && c->flavour != SN_FLAVOUR_TPU)
        return sn_error(SN_ERR_INVALID_ARG, "unknown flavour %d", (int)c->flavour);
    if (c->head < SN_HEAD_NONE || c->head > SN_HEAD_CLASSIFIER)
        return sn_error(SN_ERR_INVALID_ARG, "unknown head %d", (int)c->head);
    if (c->min_level < 2 || c->max_level > 7 || c->min_level > c->max_level)
        return sn_error(SN_ERR_INVALID_ARG, "levels %d..%d out of range (min 2 or 3, max <= 7)",
                        c->min_level, c->max_level);
    if (c->p2 && c->flavour != SN_FLAVOUR_GARDEN)
        return sn_error(SN_ERR_UNSUPPORTED, "the P2 output row exists only in the garden flavour");
    if (c->head == SN_HEAD_CLASSIFIER && (c->min_level != 3 || c->max_level != 7))
        return sn_error(SN_ERR_UNSUPPORTED, "the classification head needs levels 3..7");
    if (c->num_classes <= 0 || c->num_classes > 100000)
        return sn_error(SN_ERR_INVALID_ARG, "num_classes %d out of range", c->num_classes);
    if (c->head == SN_HEAD_RETINANET && (c->head_convs < 0 || c->head_convs > 16 ||
                                          c->head_filters <= 0 || c->head_filters > 4096))
        return sn_error(SN_ERR_INVALID_ARG, "retinanet head %d x %d out of range", c->head_convs,
                        c->head_filters);
    if (c->endpoints_filters <= 0 || c->endpoints_filters > 4096 || c->filter_scale <= 0.0f ||
        c->filter_scale > 8.0f || c->block_repeats < 1 || c->block_repeats > 16 ||
        (!v->mobile && (c->resample_alpha <= 0.0f || c->resample_alpha > 4.0f)))
        return sn_error(SN_ERR_INVALID_ARG, "scaling map out of range");
    if (!(c->drop_path_rate >= 0.0f && c->drop_path_rate < 1.0f) ||
        !(c->bn_momentum >= 0.0f && c->bn_momentum < 1.0f))
        return sn_error(SN_ERR_INVALID_ARG, "drop_path_rate %g or bn_momentum %g outside [0, 1)",
                        (double)c->drop_path_rate, (double)c->bn_momentum);
    if (c->head == SN_HEAD_RETINANET && !(c->anchor_size > 0.0f && c->anchor_size <= 64.0f))
        return sn_error(SN_ERR_INVALID_ARG, "anchor size %g out of range (0, 64]",
                        (double)c->anchor_size);
    if (c->input_size < 32 || c->input_size > 8192)
        return sn_error(SN_ERR_INVALID_ARG, "input size %d out of range", c->input_size);
    return SN_OK;
}

/* ---------------------------------------------------------------- block-spec files */

static const char *type_name(sn_block_type t) {
    return t == SN_BLOCK_BOTTLENECK ? "bottleneck" : t == SN_BLOCK_RESIDUAL ? "residual" : "mbconv";
}

sn_status sn_block_specs_parse(const char *text, const char *origin, sn_block_spec **out, int *n) {
    *out = NULL;
    *n = 0;
    int cap = 64, count = 0;
    sn_block_spec *specs = sn_alloc((size_t)cap * sizeof *specs);
    if (!specs) return SN_ERR_OOM;
    int line_no = 0, have_level[8] = {0};
    const char *p = text;
    sn_status st = SN_OK;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[256];
        line_no++;
        if (len >= sizeof line) {
            st = sn_error(SN_ERR_FORMAT, "%s:%d: line too long", origin, line_no);
            break;
        }
        memcpy(line, p, len);
        line[len] = 0;
        p += len + (eol ? 1 : 0);
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *s = line;
        while (isspace((unsigned char)*s)) s++;
        if (!*s) continue;
        int level, p0, p1, used = 0;
        char type[32], outw[16];
        if (sscanf(s, "%d %31s %d %d %15s %n", &level, type, &p0, &p1, outw, &used) != 5 ||
            s[used] != 0) {
            st = sn_error(SN_ERR_FORMAT,
                          "%s:%d: expected 'level type parent0 parent1 output', got '%s'", origin,
                          line_no, s);
            break;
        }
        sn_block_spec b = {0};
        if (strcmp(type, "bottleneck") == 0)
            b.type = SN_BLOCK_BOTTLENECK;
        else if (strcmp(type, "residual") == 0)
            b.type = SN_BLOCK_RESIDUAL;
        else if (strcmp(type, "mbconv") == 0)
            b.type = SN_BLOCK_MBCONV;
        else {
            st = sn_error(SN_ERR_FORMAT,
                          "%s:%d: unknown block type '%s' (bottleneck, residual or mbconv)",
                          origin, line_no, type);
            break;
        }
        if (strcmp(outw, "yes") == 0 || strcmp(outw, "1") == 0 || strcmp(outw, "true") == 0)
            b.is_output = 1;
        else if (strcmp(outw, "no") == 0 || strcmp(outw, "0") == 0 || strcmp(outw, "false") == 0)
            b.is_output = 0;
        else {
            st = sn_error(SN_ERR_FORMAT, "%s:%d: output must be yes or no, got '%s'", origin,
                          line_no, outw);
            break;
        }
        if (level < 1 || level > 7) {
            st = sn_error(SN_ERR_FORMAT, "%s:%d: level %d out of range 1..7", origin, line_no, level);
            break;
        }
        int index = count + 2;
        if (p0 < 0 || p1 < 0 || p0 >= index || p1 >= index) {
            st = sn_error(SN_ERR_FORMAT,
                          "%s:%d: parents (%d, %d) must name earlier features 0..%d", origin,
                          line_no, p0, p1, index - 1);
            break;
        }
        if (count && (b.type == SN_BLOCK_MBCONV) != (specs[0].type == SN_BLOCK_MBCONV)) {
            st = sn_error(SN_ERR_FORMAT, "%s:%d: mbconv rows cannot be mixed with %s rows", origin,
                          line_no, b.type == SN_BLOCK_MBCONV ? type_name(specs[0].type) : "mbconv");
            break;
        }
        if (b.is_output) {
            if (have_level[level]) {
                st = sn_error(SN_ERR_FORMAT, "%s:%d: a second output row for level %d", origin,
                              line_no, level);
                break;
            }
            have_level[level] = 1;
        }
        b.level = level;
        b.parents[0] = p0;
        b.parents[1] = p1;
        if (count == cap) {
            sn_block_spec *q = sn_alloc((size_t)cap * 2 * sizeof *q);
            if (!q) {
                st = SN_ERR_OOM;
                break;
            }
            memcpy(q, specs, (size_t)count * sizeof *q);
            sn_free(specs);
            specs = q;
            cap *= 2;
        }
        specs[count++] = b;
    }
    if (st == SN_OK && count == 0) st = sn_error(SN_ERR_FORMAT, "%s: no block rows", origin);
    if (st != SN_OK) {
        sn_free(specs);
        return st;
    }
    *out = specs;
    *n = count;
    return SN_OK;
}

static sn_status read_text_file(const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return sn_error(SN_ERR_IO, "%s: cannot open block-spec file", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (1u << 20)) {
                fclose(f);
                sn_free(buf);
                return sn_error(SN_ERR_FORMAT, "%s: block-spec file larger than 1 MiB", path);
            }
            char *q = sn_alloc(cap);
            if (!q) {
                fclose(f);
                sn_free(buf);
                return SN_ERR_OOM;
            }
            if (len) memcpy(q, buf, len);
            sn_free(buf);
            buf = q;
        }
        size_t got = fread(buf + len, 1, 4096, f);
        len += got;
        if (got < 4096) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        sn_free(buf);
        return sn_error(SN_ERR_IO, "%s: read error", path);
    }
    buf[len] = 0;
    *out = buf;
    return SN_OK;
}

sn_status sn_model_load_specs(sn_model *m, const char *text) {
    int mobile = sn_config_is_mobile(&m->cfg);
    sn_free(m->specs);
    m->specs = NULL;
    sn_free(m->spec_text);
    m->spec_text = NULL;
    if (!text && !m->cfg.block_spec_path[0]) {
        const sn_block_spec *src = mobile ? k_mobile_specs : k_spinenet_specs;
        int n = mobile ? (int)(sizeof k_mobile_specs / sizeof *src)
                       : (int)(sizeof k_spinenet_specs / sizeof *src);
        m->specs = sn_alloc((size_t)n * sizeof *src);
        if (!m->specs) return SN_ERR_OOM;
        memcpy(m->specs, src, (size_t)n * sizeof *src);
        m->n_specs = n;
        return SN_OK;
    }
    char *buf = NULL;
    const char *origin = text ? "block_spec (weight file metadata)" : m->cfg.block_spec_path;
    if (text) {
        size_t len = strlen(text);
        buf = sn_alloc(len + 1);
        if (!buf) return SN_ERR_OOM;
        memcpy(buf, text, len + 1);
    } else {
        sn_status st = read_text_file(m->cfg.block_spec_path, &buf);
        if (st != SN_OK) return st;
    }
    sn_status st = sn_block_specs_parse(buf, origin, &m->specs, &m->n_specs);
    if (st != SN_OK) {
        sn_free(buf);
        return st;
    }
    if ((m->specs[0].type == SN_BLOCK_MBCONV) != mobile) {
        sn_free(buf);
        return sn_error(SN_ERR_FORMAT, "%s: %s rows do not fit model %s", origin,
                        type_name(m->specs[0].type), m->cfg.model);
    }
    m->spec_text = buf;
    return SN_OK;
}

/* ---------------------------------------------------------------- builder */

typedef struct {
    sn_model *m;
    sn_graph *g;
    int create;
    int N, H, W;
    sn_flavour fl;
    sn_act act;
    float eps;
    int block; /* current feature index, for the info report */
    float drop_rate; /* stochastic depth of the current block group */
    sn_status st;
} bctx;

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        if ((expr) < 0) return -1;                                                                 \
    } while (0)

static int fail(bctx *b, sn_status st) {
    if (b->st == SN_OK) b->st = st;
    return -1;
}

/* Find or create a parameter, checking its shape. */
static int param(bctx *b, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2,
                 int64_t d3, sn_init_kind init, double value, int64_t fan_in, int64_t fan_out,
                 int counted) {
    int64_t shape[4] = {d0, d1, d2, d3};
    sn_paramtab *pt = &b->m->params;
    int idx = sn_paramtab_find(pt, name);
    if (idx >= 0) {
        const sn_tensor_param *t = &pt->t[idx];
        int same = t->ndim == ndim;
        for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
        if (!same) {
            char want[64], have[64];
            int o = 0;
            for (int i = 0; i < ndim; i++)
                o += snprintf(want + o, sizeof want - (size_t)o, i ? ",%lld" : "%lld",
                              (long long)shape[i]);
            o = 0;
            have[0] = 0;
            for (int i = 0; i < t->ndim; i++)
                o += snprintf(have + o, sizeof have - (size_t)o, i ? ",%lld" : "%lld",
                              (long long)t->shape[i]);
            sn_error(SN_ERR_SHAPE, "tensor '%s' has shape [%s], the model needs [%s]", name, have,
                     want);
            return fail(b, SN_ERR_SHAPE);
        }
        return idx;
    }
    if (!b->create) {
        sn_error(SN_ERR_NOT_FOUND,
                 "tensor '%s' is missing: the weights do not fit this model at %dx%d", name, b->H,
                 b->W);
        return fail(b, SN_ERR_NOT_FOUND);
    }
    if (pt->n == pt->cap) {
        int cap = pt->cap ? pt->cap * 2 : 256;
        sn_tensor_param *q = sn_alloc((size_t)cap * sizeof *q);
        if (!q) return fail(b, SN_ERR_OOM);
        if (pt->n) memcpy(q, pt->t, (size_t)pt->n * sizeof *q);
        sn_free(pt->t);
        pt->t = q;
        pt->cap = cap;
    }
    sn_tensor_param *t = &pt->t[pt->n];
    memset(t, 0, sizeof *t);
    size_t len = strlen(name);
    t->name = sn_alloc(len + 1);
    if (!t->name) return fail(b, SN_ERR_OOM);
    memcpy(t->name, name, len + 1);
    t->ndim = ndim;
    t->count = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->count *= (size_t)shape[i];
    }
    t->init = init;
    t->init_value = value;
    t->fan_in = fan_in;
    t->fan_out = fan_out;
    t->trainable_count = counted;
    return pt->n++;
}

static int add_node(bctx *b, sn_node *nd) {
    nd->block = b->block;
    int i = sn_graph_add(b->g, nd);
    if (i < 0) return fail(b, SN_ERR_OOM);
    return i;
}

static const sn_node *node(bctx *b, int i) { return &b->g->nodes[i]; }

typedef struct {
    int k, stride, cout;
    int depthwise;
    int bias, bn;
    const char *bn_name; /* "bn" or "bn_l3" */
    sn_act act;
    sn_init_kind init;   /* of the kernel */
    double init_value;
    double bias_init;
} conv_opts;

static conv_opts copts(int k, int stride, int cout, int bn, sn_act act) {
    conv_opts o = {k, stride, cout, 0, 0, bn, "bn", act, SN_INIT_VARIANCE_SCALING, 0.0, 0.0};
    return o;
}

/* Padding of a conv or pool along one axis for this flavour (docs/architecture.md, "Flavours"). */
static void axis_pad(bctx *b, int in, int k, int stride, int *before, int *after) {
    if (b->fl == SN_FLAVOUR_TPU && stride > 1)
        sn_pad_fixed_1d(k, before, after);
    else
        sn_pad_same_1d(in, k, stride, before, after);
}

static int conv(bctx *b, int x, const char *prefix, const conv_opts *o) {
    const sn_node *in = node(b, x);
    int cin = in->c, groups = o->depthwise ? cin : 1;
    int cout = o->depthwise ? cin : o->cout;
    char name[160];
    snprintf(name, sizeof name, "%s.weight", prefix);
    /* TensorFlow computes fans of a depthwise kernel [k,k,C,1] as k*k*C and k*k. */
    int64_t fan_in = (int64_t)o->k * o->k * cin, fan_out = (int64_t)o->k * o->k * (o->depthwise ? 1 : cout);
    sn_node nd = sn_node_init(SN_OP_CONV);
    nd.p_weight = param(b, name, 4, o->k, o->k, cin / groups, cout, o->init, o->init_value, fan_in,
                        fan_out, 1);
    TRY(nd.p_weight);
    if (o->bias) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        nd.p_bias = param(b, name, 1, cout, 0, 0, 0, SN_INIT_CONST, o->bias_init, 0, 0, 1);
        TRY(nd.p_bias);
    }
    if (o->bn) {
        static const char *const parts[4] = {"gamma", "beta", "mean", "var"};
        static const double init[4] = {1.0, 0.0, 0.0, 1.0};
        int *dst[4] = {&nd.p_gamma, &nd.p_beta, &nd.p_mean, &nd.p_var};
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "%s.%s.%s", prefix, o->bn_name, parts[i]);
            *dst[i] = param(b, name, 1, cout, 0, 0, 0, SN_INIT_CONST, init[i], 0, 0, i < 2);
            TRY(*dst[i]);
        }
        nd.bn_eps = b->eps;
    }
    nd.in[0] = x;
    nd.n_in = 1;
    sn_conv_desc *d = &nd.conv;
    d->kh = d->kw = o->k;
    d->stride_h = d->stride_w = o->stride;
    axis_pad(b, in->h, o->k, o->stride, &d->pad.top, &d->pad.bottom);
    axis_pad(b, in->w, o->k, o->stride, &d->pad.left, &d->pad.right);
    d->groups = groups;
    d->cin = cin;
    d->cout = cout;
    nd.act = o->act;
    nd.n = in->n;
    nd.h = sn_window_out(in->h, o->k, o->stride, d->pad.top, d->pad.bottom);
    nd.w = sn_window_out(in->w, o->k, o->stride, d->pad.left, d->pad.right);
    nd.c = cout;
    if (nd.h <= 0 || nd.w <= 0) {
        sn_error(SN_ERR_UNSUPPORTED, "%s: input %dx%d too small", prefix, in->h, in->w);
        return fail(b, SN_ERR_UNSUPPORTED);
    }
    return add_node(b, &nd);
}

static int maxpool(bctx *b, int x, int k, int stride) {
    const sn_node *in = node(b, x);
    sn_node nd = sn_node_init(SN_OP_MAXPOOL);
    nd.in[0] = x;
    nd.n_in = 1;
    nd.pool_k = k;
    nd.pool_stride = stride;
    /* Both code bases pool with 'SAME' padding. */
    sn_pad_same_1d(in->h, k, stride, &nd.pool_pad.top, &nd.pool_pad.bottom);
    sn_pad_same_1d(in->w, k, stride, &nd.pool_pad.left, &nd.pool_pad.right);
    nd.n = in->n;
    nd.c = in->c;
    nd.h = sn_window_out(in->h, k, stride, nd.pool_pad.top, nd.pool_pad.bottom);
    nd.w = sn_window_out(in->w, k, stride, nd.pool_pad.left, nd.pool_pad.right);
    return add_node(b, &nd);
}

static int upsample(bctx *b, int x, int fh, int fw) {
    const sn_node *in = node(b, x);
    sn_node nd = sn_node_init(SN_OP_UPSAMPLE);
    nd.in[0] = x;
    nd.n_in = 1;
    nd.up_h = fh;
    nd.up_w = fw;
    nd.n = in->n;
    nd.c = in->c;
    nd.h = in->h * fh;
    nd.w = in->w * fw;
    return add_node(b, &nd);
}

static int resize(bctx *b, int x, int oh, int ow) {
    const sn_node *in = node(b, x);
    if (in->h == oh && in->w == ow) return x;
    sn_node nd = sn_node_init(SN_OP_RESIZE);
    nd.in[0] = x;
    nd.n_in = 1;
    nd.n = in->n;
    nd.c = in->c;
    nd.h = oh;
    nd.w = ow;
    return add_node(b, &nd);
}

static int add(bctx *b, const int *xs, int k, sn_act act) {
    const sn_node *a = node(b, xs[0]);
    sn_node nd = sn_node_init(SN_OP_ADD);
    if (k > SN_MAX_NODE_INPUTS) {
        sn_error(SN_ERR_UNSUPPORTED, "a merge of %d inputs (at most %d)", k, SN_MAX_NODE_INPUTS);
        return fail(b, SN_ERR_UNSUPPORTED);
    }
    for (int i = 0; i < k; i++) {
        const sn_node *o = node(b, xs[i]);
        if (o->n != a->n || o->h != a->h || o->w != a->w || o->c != a->c) {
            sn_error(SN_ERR_SHAPE, "cannot add %dx%dx%d and %dx%dx%d (feature %d)", a->h, a->w,
                     a->c, o->h, o->w, o->c, b->block);
            return fail(b, SN_ERR_SHAPE);
        }
        nd.in[i] = xs[i];
    }
    nd.n_in = k;
    nd.act = act;
    nd.n = a->n;
    nd.h = a->h;
    nd.w = a->w;
    nd.c = a->c;
    return add_node(b, &nd);
}

/* Bottleneck and residual blocks; the shortcut projects only when channels differ. */
static int resnet_block(bctx *b, int x, sn_block_type type, int f, int idx, int r) {
    char p[128];
    int cin = node(b, x)->c, cout = type == SN_BLOCK_BOTTLENECK ? 4 * f : f;
    int y;
    conv_opts o;
    if (type == SN_BLOCK_BOTTLENECK) {
        snprintf(p, sizeof p, "blocks.%d.%d.conv1", idx, r);
        o = copts(1, 1, f, 1, b->act);
        TRY(y = conv(b, x, p, &o));
        snprintf(p, sizeof p, "blocks.%d.%d.conv2", idx, r);
        o = copts(3, 1, f, 1, b->act);
        TRY(y = conv(b, y, p, &o));
        snprintf(p, sizeof p, "blocks.%d.%d.conv3", idx, r);
        o = copts(1, 1, 4 * f, 1, SN_ACT_NONE);
        TRY(y = conv(b, y, p, &o));
    } else {
        snprintf(p, sizeof p, "blocks.%d.%d.conv1", idx, r);
        o = copts(3, 1, f, 1, b->act);
        TRY(y = conv(b, x, p, &o));
        snprintf(p, sizeof p, "blocks.%d.%d.conv2", idx, r);
        o = copts(3, 1, f, 1, SN_ACT_NONE);
        TRY(y = conv(b, y, p, &o));
    }
    int sc = x;
    if (cin != cout) {
        snprintf(p, sizeof p, "blocks.%d.%d.proj", idx, r);
        o = copts(1, 1, cout, 1, SN_ACT_NONE);
        TRY(sc = conv(b, x, p, &o));
    }
    int xs[2] = {y, sc};
    int out = add(b, xs, 2, b->act);
    if (out >= 0) b->g->nodes[out].drop_rate = b->drop_rate; /* on the main path, input 0 */
    return out;
}

/* Mobile SpineNet: inverted bottleneck with squeeze-excitation. */
static int mbconv_block(bctx *b, int x, int cout, int stride, int idx, int r) {
    char p[128];
    int cin = node(b, x)->c, e = cin * 6, red = (int)(cin * 0.2);
    if (red < 1) red = 1;
    int y, s;
    conv_opts o;
    snprintf(p, sizeof p, "blocks.%d.%d.expand", idx, r);
    o = copts(1, 1, e, 1, b->act);
    TRY(y = conv(b, x, p, &o));
    snprintf(p, sizeof p, "blocks.%d.%d.dw", idx, r);
    o = copts(3, stride, e, 1, b->act);
    o.depthwise = 1;
    TRY(y = conv(b, y, p, &o));
    /* SE: Model Garden gates with ReLU + hard-sigmoid; the TF1 code with swish + sigmoid. */
    sn_node g = sn_node_init(SN_OP_GAP);
    g.in[0] = y;
    g.n_in = 1;
    g.n = node(b, y)->n;
    g.h = g.w = 1;
    g.c = e;
    TRY(s = add_node(b, &g));
    snprintf(p, sizeof p, "blocks.%d.%d.se_reduce", idx, r);
    o = copts(1, 1, red, 0, b->fl == SN_FLAVOUR_TPU ? SN_ACT_SWISH : SN_ACT_RELU);
    o.bias = 1;
    TRY(s = conv(b, s, p, &o));
    snprintf(p, sizeof p, "blocks.%d.%d.se_expand", idx, r);
    o = copts(1, 1, e, 0, b->fl == SN_FLAVOUR_TPU ? SN_ACT_SIGMOID : SN_ACT_HSIGMOID);
    o.bias = 1;
    TRY(s = conv(b, s, p, &o));
    sn_node mc = sn_node_init(SN_OP_MUL_CHANNEL);
    mc.in[0] = y;
    mc.in[1] = s;
    mc.n_in = 2;
    const sn_node *yn = node(b, y);
    mc.n = yn->n;
    mc.h = yn->h;
    mc.w = yn->w;
    mc.c = yn->c;
    TRY(y = add_node(b, &mc));
    snprintf(p, sizeof p, "blocks.%d.%d.project", idx, r);
    o = copts(1, 1, cout, 1, SN_ACT_NONE);
    TRY(y = conv(b, y, p, &o));
    if (cin == cout && stride == 1) {
        int xs[2] = {y, x};
        int out = add(b, xs, 2, SN_ACT_NONE);
        if (out >= 0) b->g->nodes[out].drop_rate = b->drop_rate;
        return out;
    }
    return y;
}

typedef struct {
    int node;
    int level;
    sn_block_type type;
    int outdeg;
} feature;

static int target_dim(int in, int level) { return (in + (1 << level) - 1) >> level; }

static int bad_resample(bctx *b, int idx, int j, const char *why) {
    sn_error(SN_ERR_UNSUPPORTED,
             "input %dx%d cannot be served by the %s flavour: feature %d, parent %d: %s", b->H,
             b->W, b->fl == SN_FLAVOUR_GARDEN ? "garden" : "tpu", idx, j, why);
    return fail(b, SN_ERR_UNSUPPORTED);
}

/* Resampling connection of a SpineNet block. */
static int resample_alpha(bctx *b, const feature *src, int level, sn_block_type ttype, int f,
                          int idx, int j) {
    char p[128];
    const sn_model *m = b->m;
    int x = src->node;
    int cin = node(b, x)->c;
    int base = src->type == SN_BLOCK_BOTTLENECK ? cin / 4 : cin;
    int mid = (int)(base * m->cfg.resample_alpha);
    int th = target_dim(b->H, level), tw = target_dim(b->W, level);
    conv_opts o;
    snprintf(p, sizeof p, "blocks.%d.resample%d.reduce", idx, j);
    o = copts(1, 1, mid, 1, b->act);
    TRY(x = conv(b, x, p, &o));
    int w = node(b, x)->w;
    if (w > tw) {
        snprintf(p, sizeof p, "blocks.%d.resample%d.down0", idx, j);
        o = copts(3, 2, mid, 1, b->act);
        TRY(x = conv(b, x, p, &o));
        if (b->fl == SN_FLAVOUR_GARDEN) {
            double run = w / 2.0;
            while (run > tw) {
                TRY(x = maxpool(b, x, 3, 2));
                run /= 2.0;
            }
        } else {
            if (w / tw > 2) {
                int stride = w % tw != 0 ? 2 : w / tw / 2;
                int k = (double)w / tw <= 4.0 ? 3 : 5;
                TRY(x = maxpool(b, x, k, stride));
            }
            TRY(x = resize(b, x, th, tw));
        }
    } else if (w < tw) {
        if (tw % w == 0 && (b->fl == SN_FLAVOUR_GARDEN || th % node(b, x)->h == 0)) {
            TRY(x = upsample(b, x, tw / w, tw / w));
        } else if (b->fl == SN_FLAVOUR_TPU) {
            TRY(x = resize(b, x, th, tw));
        } else {
            return bad_resample(b, idx, j, "width ratio is not an integer");
        }
    }
    if (b->fl == SN_FLAVOUR_TPU) TRY(x = resize(b, x, th, tw));
    if (node(b, x)->h != th || node(b, x)->w != tw)
        return bad_resample(b, idx, j, "resampled size differs from the target (garden needs "
                                       "sizes divisible by 2^max_level)");
    snprintf(p, sizeof p, "blocks.%d.resample%d.project", idx, j);
    o = copts(1, 1, ttype == SN_BLOCK_BOTTLENECK ? 4 * f : f, 1, SN_ACT_NONE);
    return conv(b, x, p, &o);
}

/* Resampling connection of a Mobile SpineNet block. */
static int resample_mobile(bctx *b, const feature *src, int level, int f, int idx, int j) {
    char p[128];
    int x = src->node;
    int th = target_dim(b->H, level), tw = target_dim(b->W, level);
    int w = node(b, x)->w;
    conv_opts o;
    if (w > tw) {
        if (w % tw != 0) return bad_resample(b, idx, j, "width not divisible by the target width");
        double run = w;
        for (int k = 0; run > tw; k++) {
            snprintf(p, sizeof p, "blocks.%d.resample%d.down%d", idx, j, k);
            o = copts(3, 2, 0, 1, b->act);
            o.depthwise = 1;
            TRY(x = conv(b, x, p, &o));
            run /= 2.0;
        }
    } else if (w < tw) {
        if (tw % w != 0) return bad_resample(b, idx, j, "target width not divisible by width");
        TRY(x = upsample(b, x, tw / w, tw / w));
    }
    if (node(b, x)->h != th || node(b, x)->w != tw)
        return bad_resample(b, idx, j, "resampled size differs from the target");
    snprintf(p, sizeof p, "blocks.%d.resample%d.project", idx, j);
    o = copts(1, 1, f, 1, SN_ACT_NONE);
    return conv(b, x, p, &o);
}

static int block_group(bctx *b, int x, sn_block_type type, int f, int stride, int idx) {
    for (int r = 0; r < b->m->cfg.block_repeats; r++) {
        if (type == SN_BLOCK_MBCONV)
            TRY(x = mbconv_block(b, x, f, r == 0 ? stride : 1, idx, r));
        else
            TRY(x = resnet_block(b, x, type, f, idx, r));
    }
    return x;
}

/* int(base * scale) as Python computes it on the decimal scale: the float32 config value is
 * first brought back to its 6-digit decimal so that 40 * 0.65 is 26, not 25.99999. */
static int scaled(int base, float s) {
    double sd = round((double)s * 1e6) / 1e6;
    return (int)((double)base * sd + 1e-9);
}

static int build_backbone(bctx *b, int input, int *endpoint_nodes) {
    sn_model *m = b->m;
    const sn_config *c = &m->cfg;
    int mobile = sn_config_is_mobile(c);
    float s = c->filter_scale;
    int n_feat = 2 + m->n_specs;
    feature *feats = sn_calloc((size_t)n_feat, sizeof *feats);
    if (!feats) return fail(b, SN_ERR_OOM);
    int out_level_node[8];
    for (int i = 0; i < 8; i++) out_level_node[i] = -1;
    int x, ret = -1;
    conv_opts o;
    b->block = SN_BLOCK_STEM;
    if (!mobile) {
        o = copts(7, 2, 64, 1, b->act); /* 64 filters whatever the scale (official stem) */
        if ((x = conv(b, input, "stem", &o)) < 0) goto done;
        if ((x = maxpool(b, x, 3, 2)) < 0) goto done;
        int f = scaled(k_filters[2], s);
        for (int i = 0; i < 2; i++) {
            b->block = i;
            if ((x = block_group(b, x, SN_BLOCK_BOTTLENECK, f, 1, i)) < 0) goto done;
            feats[i] = (feature){x, 2, SN_BLOCK_BOTTLENECK, 0};
        }
    } else {
        o = copts(3, 2, scaled(k_mobile_filters[0], s), 1, b->act);
        if ((x = conv(b, input, "stem", &o)) < 0) goto done;
        for (int i = 0; i < 2; i++) {
            b->block = i;
            if ((x = block_group(b, x, SN_BLOCK_MBCONV, scaled(k_mobile_filters[i + 1], s), i + 1,
                                 i)) < 0)
                goto done;
            feats[i] = (feature){x, i + 1, SN_BLOCK_MBCONV, 0};
        }
    }
    int built = 2;
    for (int row = 0; row < m->n_specs; row++) {
        const sn_block_spec *sp = &m->specs[row];
        int idx = row + 2;
        b->block = idx;
        if (sp->p2_row && c->min_level > 2) break; /* the P2 row feeds nothing then */
        int level = sp->level > c->max_level ? c->max_level : sp->level;
        int f = mobile ? scaled(k_mobile_filters[level], s) : scaled(k_filters[level], s);
        int parts[SN_MAX_NODE_INPUTS], n_parts = 0;
        for (int j = 0; j < 2; j++) {
            const feature *src = &feats[sp->parents[j]];
            int r = mobile ? resample_mobile(b, src, level, f, idx, j)
                           : resample_alpha(b, src, level, sp->type, f, idx, j);
            if (r < 0) goto done;
            parts[n_parts++] = r;
        }
        feats[sp->parents[0]].outdeg++;
        feats[sp->parents[1]].outdeg++;
        if (sp->is_output) {
            /* Unused features of the same size and width join the output block raw. */
            const sn_node *t = node(b, parts[0]);
            for (int k = 0; k < built; k++) {
                const sn_node *fk = node(b, feats[k].node);
                if (feats[k].outdeg == 0 && fk->w == t->w && fk->c == t->c) {
                    if (n_parts == SN_MAX_NODE_INPUTS) {
                        add(b, parts, SN_MAX_NODE_INPUTS + 1, SN_ACT_NONE); /* sets the error */
                        goto done;
                    }
                    parts[n_parts++] = feats[k].node;
                    feats[k].outdeg++;
                }
            }
        }
        if ((x = add(b, parts, n_parts, b->act)) < 0) goto done;
        /* Stochastic depth: rate * (row + 1) / rows; the TF1 table has no P2 row, Garden's
         * counts it. */
        int rows = m->n_specs;
        if (c->flavour == SN_FLAVOUR_TPU && m->specs[m->n_specs - 1].p2_row) rows--;
        b->drop_rate = c->drop_path_rate * (float)(row + 1) / (float)rows;
        x = block_group(b, x, sp->type, f, 1, idx);
        b->drop_rate = 0.0f;
        if (x < 0) goto done;
        feats[idx] = (feature){x, level, sp->type, 0};
        built = idx + 1;
        if (sp->is_output && level >= c->min_level && level <= c->max_level) {
            if (out_level_node[level] >= 0) {
                sn_error(SN_ERR_FORMAT, "two output blocks for level %d", level);
                fail(b, SN_ERR_FORMAT);
                goto done;
            }
            out_level_node[level] = x;
        }
    }
    b->block = SN_BLOCK_ENDPOINTS;
    for (int L = c->min_level; L <= c->max_level; L++) {
        if (out_level_node[L] < 0) {
            sn_error(SN_ERR_FORMAT, "the block-spec table has no output block for level %d", L);
            fail(b, SN_ERR_FORMAT);
            goto done;
        }
        char p[64];
        snprintf(p, sizeof p, "endpoints.%d", L);
        o = copts(1, 1, c->endpoints_filters, 1, b->act);
        if ((x = conv(b, out_level_node[L], p, &o)) < 0) goto done;
        endpoint_nodes[L] = x;
        snprintf(b->g->nodes[x].out_name, sizeof b->g->nodes[x].out_name, "P%d", L);
    }
    ret = 0;
done:
    sn_free(feats);
    return ret;
}

/* A RetinaNet head layer: a 3x3 conv initialised N(0, std), or for the mobile variants a
 * separable one (depthwise 3x3, then the 1x1 with the bias), Glorot-initialised (Keras). */
static int head_conv(bctx *b, int x, const char *prefix, conv_opts *o, int sep, double std) {
    if (sep) {
        char dp[112];
        snprintf(dp, sizeof dp, "%s.dw", prefix);
        conv_opts od = copts(3, 1, 0, 0, SN_ACT_NONE);
        od.depthwise = 1;
        od.init = SN_INIT_GLOROT_UNIFORM;
        TRY(x = conv(b, x, dp, &od));
        o->k = 1;
        o->init = SN_INIT_GLOROT_UNIFORM;
    } else {
        o->init = SN_INIT_NORMAL;
        o->init_value = std;
    }
    return conv(b, x, prefix, o);
}

/* RetinaNet head, convs shared across levels, batch-norm per level. */
static int build_retinanet(bctx *b, const int *endpoints) {
    const sn_config *c = &b->m->cfg;
    int sep = sn_config_is_mobile(c);
    b->block = SN_BLOCK_HEAD;
    for (int L = c->min_level; L <= c->max_level; L++) {
        for (int tower = 0; tower < 2; tower++) {
            const char *tn = tower == 0 ? "class" : "box";
            int x = endpoints[L];
            char p[96], bn[16];
            snprintf(bn, sizeof bn, "bn_l%d", L);
            for (int k = 0; k < c->head_convs; k++) {
                snprintf(p, sizeof p, "head.%s.conv%d", tn, k);
                conv_opts o = copts(3, 1, c->head_filters, 1, b->act);
                o.bias = 1;
                o.bn_name = bn;
                TRY(x = head_conv(b, x, p, &o, sep, 0.01));
            }
            snprintf(p, sizeof p, "head.%s.pred", tn);
            conv_opts o = copts(3, 1, tower == 0 ? 9 * c->num_classes : 9 * 4, 0, SN_ACT_NONE);
            o.bias = 1;
            o.bias_init = tower == 0 ? -log((1.0 - 0.01) / 0.01) : 0.0;
            TRY(x = head_conv(b, x, p, &o, sep, 1e-5));
            snprintf(b->g->nodes[x].out_name, sizeof b->g->nodes[x].out_name, "%s.%d", tn, L);
        }
    }
    return 0;
}

/* Classification head: P7..P3 resized and summed, averaged, pooled, then one dense layer. */
static int build_classifier(bctx *b, const int *endpoints) {
    const sn_config *c = &b->m->cfg;
    b->block = SN_BLOCK_HEAD;
    int x = endpoints[c->max_level];
    for (int L = c->max_level - 1; L >= c->min_level; L--) {
        const sn_node *t = node(b, endpoints[L]);
        TRY(x = resize(b, x, t->h, t->w));
        int xs[2] = {x, endpoints[L]};
        TRY(x = add(b, xs, 2, SN_ACT_NONE));
    }
    sn_node sc = sn_node_init(SN_OP_SCALE);
    const sn_node *xn = node(b, x);
    sc.in[0] = x;
    sc.n_in = 1;
    sc.scale = 1.0f / (float)(c->max_level - c->min_level + 1);
    sc.n = xn->n;
    sc.h = xn->h;
    sc.w = xn->w;
    sc.c = xn->c;
    TRY(x = add_node(b, &sc));
    sn_node g = sn_node_init(SN_OP_GAP);
    g.in[0] = x;
    g.n_in = 1;
    g.n = sc.n;
    g.h = g.w = 1;
    g.c = sc.c;
    TRY(x = add_node(b, &g));
    sn_node d = sn_node_init(SN_OP_DENSE);
    d.in[0] = x;
    d.n_in = 1;
    d.n = g.n;
    d.h = d.w = 1;
    d.c = c->num_classes;
    TRY(d.p_weight = param(b, "head.fc.weight", 2, g.c, c->num_classes, 0, 0, SN_INIT_NORMAL, 0.01,
                           g.c, c->num_classes, 1));
    TRY(d.p_bias = param(b, "head.fc.bias", 1, c->num_classes, 0, 0, 0, SN_INIT_CONST, 0.0, 0, 0, 1));
    snprintf(d.out_name, sizeof d.out_name, "logits");
    TRY(add_node(b, &d));
    return 0;
}

sn_status sn_build_graph(sn_model *m, int n, int h, int w, int create, sn_graph *g) {
    sn_config *c = &m->cfg;
    sn_config_resolve(c);
    if (n < 1 || h < 1 || w < 1 || n > 65536 || h > 16384 || w > 16384)
        return sn_error(SN_ERR_SHAPE, "input %dx%dx%dx3 out of range", n, h, w);
    int need = 1 << c->max_level;
    if (c->flavour == SN_FLAVOUR_GARDEN && (h % need || w % need)) {
        /* The size nearest to the one asked for, so that the message says what works. */
        const int off = h % need ? h : w, lo = off / need * need, hi = lo + need;
        return sn_error(SN_ERR_UNSUPPORTED,
                        "input %dx%d: the garden flavour needs height and width divisible by %d "
                        "(e.g. %d instead of %d; a tpu-flavour model takes any size >= %d)",
                        h, w, need, hi - off < off - lo || lo == 0 ? hi : lo, off, need / 2);
    }
    if (h < need / 2 || w < need / 2)
        return sn_error(SN_ERR_UNSUPPORTED, "input %dx%d is too small (at least %d)", h, w, need / 2);
    bctx b = {m, g, create, n, h, w, c->flavour, c->activation, c->bn_eps, SN_BLOCK_STEM, 0.0f, SN_OK};
    sn_node in = sn_node_init(SN_OP_INPUT);
    in.n = n;
    in.h = h;
    in.w = w;
    in.c = 3;
    int x = add_node(&b, &in);
    int endpoints[8];
    if (x >= 0 && build_backbone(&b, x, endpoints) == 0) {
        if (c->head == SN_HEAD_RETINANET)
            build_retinanet(&b, endpoints);
        else if (c->head == SN_HEAD_CLASSIFIER)
            build_classifier(&b, endpoints);
    }
    return b.st;
}

/* ---------------------------------------------------------------- initialisation */

void sn_params_init(sn_paramtab *pt, uint64_t seed) {
    for (int i = 0; i < pt->n; i++) {
        sn_tensor_param *t = &pt->t[i];
        /* Each tensor draws from its own stream, so adding a tensor changes no other. */
        sn_rng r;
        sn_rng_seed(&r, seed ^ sn_fnv1a64(t->name));
        switch (t->init) {
        case SN_INIT_CONST:
            for (size_t k = 0; k < t->count; k++) t->data[k] = (float)t->init_value;
            break;
        case SN_INIT_NORMAL:
            for (size_t k = 0; k < t->count; k++)
                t->data[k] = (float)(sn_rng_normal(&r) * t->init_value);
            break;
        case SN_INIT_VARIANCE_SCALING: {
            /* TF: stddev of the untruncated normal, divided by the truncation's std factor. */
            double sd = sqrt(1.0 / (double)t->fan_in) / 0.87962566103423978;
            for (size_t k = 0; k < t->count; k++) t->data[k] = (float)sn_rng_truncnormal(&r, sd);
            break;
        }
        case SN_INIT_GLOROT_UNIFORM: {
            double lim = sqrt(6.0 / (double)(t->fan_in + t->fan_out));
            for (size_t k = 0; k < t->count; k++)
                t->data[k] = (float)((2.0 * sn_rng_uniform(&r) - 1.0) * lim);
            break;
        }
        }
    }
}
