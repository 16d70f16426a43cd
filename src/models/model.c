/* The public model API: create, load, save, plan, run, outputs, parameters and the info report. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "model.h"
#include "safetensors.h"

/* ---------------------------------------------------------------- names */

static const char *const k_act_names[] = {"none", "relu", "swish", "hswish", "sigmoid", "hsigmoid", "relu6"};

const char *sn_act_name(sn_act a) {
    return (unsigned)a < sizeof k_act_names / sizeof *k_act_names ? k_act_names[a] : "?";
}
const char *sn_flavour_name(sn_flavour f) { return f == SN_FLAVOUR_TPU ? "tpu" : "garden"; }
const char *sn_head_name(sn_head h) {
    return h == SN_HEAD_RETINANET ? "retinanet" : h == SN_HEAD_CLASSIFIER ? "classifier" : "none";
}

sn_status sn_parse_act(const char *s, sn_act *out) {
    if (s && (strcmp(s, "hard-swish") == 0 || strcmp(s, "hard_swish") == 0)) s = "hswish";
    for (unsigned i = 1; s && i < sizeof k_act_names / sizeof *k_act_names; i++)
        if (strcmp(s, k_act_names[i]) == 0) {
            *out = (sn_act)i;
            return SN_OK;
        }
    return sn_error(SN_ERR_INVALID_ARG, "unknown activation '%s' (relu, swish, hswish)", s ? s : "");
}

sn_status sn_parse_flavour(const char *s, sn_flavour *out) {
    if (s && strcmp(s, "garden") == 0) *out = SN_FLAVOUR_GARDEN;
    else if (s && strcmp(s, "tpu") == 0) *out = SN_FLAVOUR_TPU;
    else return sn_error(SN_ERR_INVALID_ARG, "unknown flavour '%s' (garden or tpu)", s ? s : "");
    return SN_OK;
}

sn_status sn_parse_head(const char *s, sn_head *out) {
    if (s && strcmp(s, "retinanet") == 0) *out = SN_HEAD_RETINANET;
    else if (s && (strcmp(s, "classifier") == 0 || strcmp(s, "cls") == 0)) *out = SN_HEAD_CLASSIFIER;
    else if (s && strcmp(s, "none") == 0) *out = SN_HEAD_NONE;
    else return sn_error(SN_ERR_INVALID_ARG, "unknown head '%s' (retinanet, classifier or none)", s ? s : "");
    return SN_OK;
}

/* ---------------------------------------------------------------- lifecycle */

void sn_model_free(sn_model *m) {
    if (!m) return;
    /* The kernels' work buffers of this thread go too (they are re-made on the next call). */
    sn_scratch_release();
    sn_model_free_parts(m);
    sn_graph_free(&m->graph);
    sn_paramtab_free(&m->params);
    sn_free(m->specs);
    sn_free(m->spec_text);
    sn_free(m->class_names);
    sn_free(m);
}

sn_status sn_model_set_class_names(sn_model *m, const char *const *names, int n) {
    if (!m || (n && !names)) return sn_error(SN_ERR_INVALID_ARG, "sn_model_set_class_names: NULL argument");
    if (n != m->cfg.num_classes)
        return sn_error(SN_ERR_SHAPE, "%d class names for a model with %d classes", n,
                        m->cfg.num_classes);
    size_t len = 1;
    for (int i = 0; i < n; i++) {
        if (!names[i] || strchr(names[i], '\n'))
            return sn_error(SN_ERR_INVALID_ARG, "class name %d is NULL or holds a newline", i);
        len += strlen(names[i]) + 1;
    }
    char *buf = sn_alloc(len);
    if (!buf) return SN_ERR_OOM;
    buf[0] = 0;
    for (int i = 0; i < n; i++) {
        strcat(buf, names[i]);
        if (i + 1 < n) strcat(buf, "\n");
    }
    sn_free(m->class_names);
    m->class_names = buf;
    return SN_OK;
}

const char *sn_model_class_name(const sn_model *m, int i) {
    /* One static buffer per thread keeps the API allocation-free for callers. */
    static _Thread_local char name[256];
    if (!m || !m->class_names || i < 0 || i >= m->cfg.num_classes) return NULL;
    const char *p = m->class_names;
    for (int k = 0; k < i; k++) {
        p = strchr(p, '\n');
        if (!p) return NULL;
        p++;
    }
    size_t len = strcspn(p, "\n");
    if (len >= sizeof name) len = sizeof name - 1;
    memcpy(name, p, len);
    name[len] = 0;
    return name;
}

const sn_config *sn_model_config(const sn_model *m) { return m ? &m->cfg : NULL; }

/* Build the parameter table (shapes only) at the reference size, then allocate the data. */
static sn_status model_new(const sn_config *cfg, const char *spec_text, int alloc, sn_model **out) {
    *out = NULL;
    sn_config c = *cfg;
    sn_config_resolve(&c);
    sn_status st = sn_config_validate(&c);
    if (st != SN_OK) return st;
    sn_model *m = sn_calloc(1, sizeof *m);
    if (!m) return SN_ERR_OOM;
    m->cfg = c;
    m->nthreads = 1;
    m->fold = 1;
    st = sn_model_load_specs(m, spec_text);
    if (st == SN_OK) {
        sn_graph g = {0};
        int size = m->cfg.input_size;
        int need = 1 << m->cfg.max_level;
        if (m->cfg.flavour == SN_FLAVOUR_GARDEN && size % need) size = (size + need - 1) / need * need;
        st = sn_build_graph(m, 1, size, size, 1, &g);
        sn_graph_free(&g);
    }
    for (int i = 0; alloc && st == SN_OK && i < m->params.n; i++) {
        sn_tensor_param *t = &m->params.t[i];
        t->data = sn_alloc(t->count * sizeof(float));
        if (!t->data) st = SN_ERR_OOM;
    }
    if (st != SN_OK) {
        sn_model_free(m);
        return st;
    }
    *out = m;
    return SN_OK;
}

sn_status sn_model_create(const sn_config *cfg, uint64_t seed, sn_model **out) {
    if (!cfg || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_model_create: NULL argument");
    sn_status st = model_new(cfg, NULL, 1, out);
    if (st != SN_OK) return st;
    sn_params_init(&(*out)->params, seed);
    return SN_OK;
}

sn_status sn_model_create_uninit(const sn_config *cfg, sn_model **out) {
    if (!cfg || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_model_create: NULL argument");
    return model_new(cfg, NULL, 1, out);
}

sn_status sn_model_create_shapes(const sn_config *cfg, sn_model **out) {
    if (!cfg || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_model_create: NULL argument");
    return model_new(cfg, NULL, 0, out);
}

sn_status sn_model_set_threads(sn_model *m, int nthreads) {
    if (!m) return sn_error(SN_ERR_INVALID_ARG, "sn_model_set_threads: NULL model");
    m->nthreads = sn_resolve_threads(nthreads);
    m->graph.nthreads = m->nthreads;
    return SN_OK;
}

sn_status sn_model_set_fold_bn(sn_model *m, int fold) {
    if (!m) return sn_error(SN_ERR_INVALID_ARG, "sn_model_set_fold_bn: NULL model");
    m->fold = fold != 0;
    m->planned = 0;
    return SN_OK;
}

void sn_model_free_parts(sn_model *m) {
    if (!m) return;
    if (m->rgraph)
        for (int r = 1; r < m->parts; r++) sn_graph_free(&m->rgraph[r - 1]);
    sn_free(m->rgraph);
    m->rgraph = NULL;
    for (int i = 0; i < m->rgrad_n; i++) sn_free(m->rgrad[i]);
    sn_free(m->rgrad);
    m->rgrad = NULL;
    m->rgrad_n = 0;
    m->parts = 0;
    if (m->psync_free) m->psync_free(m->psync);
    m->psync = NULL;
    m->psync_free = NULL;
}

sn_status sn_model_plan(sn_model *m, int batch, int height, int width) {
    if (!m) return sn_error(SN_ERR_INVALID_ARG, "sn_model_plan: NULL model");
    sn_model_free_parts(m);
    sn_graph_free(&m->graph);
    m->planned = 0;
    sn_status st = sn_build_graph(m, batch, height, width, 0, &m->graph);
    if (st == SN_OK) st = sn_graph_plan(&m->graph, &m->params, m->fold);
    if (st != SN_OK) {
        sn_graph_free(&m->graph);
        return st;
    }
    m->graph.nthreads = m->nthreads;
    if (m->profile) {
        m->graph.prof_sec = sn_calloc((size_t)m->graph.n, sizeof *m->graph.prof_sec);
        if (!m->graph.prof_sec) {
            sn_graph_free(&m->graph);
            return SN_ERR_OOM;
        }
    }
    m->planned = 1;
    return SN_OK;
}

sn_status sn_model_set_profile(sn_model *m, int on) {
    if (!m) return sn_error(SN_ERR_INVALID_ARG, "sn_model_set_profile: NULL model");
    m->profile = on != 0;
    sn_graph *g = &m->graph;
    sn_free(g->prof_sec);
    g->prof_sec = NULL;
    g->prof_runs = 0;
    if (m->profile && m->planned && !g->training) {
        g->prof_sec = sn_calloc((size_t)g->n, sizeof *g->prof_sec);
        if (!g->prof_sec) return SN_ERR_OOM;
    }
    return SN_OK;
}

int sn_model_profile(const sn_model *m, sn_layer_profile *out, int max) {
    if (!m || !m->planned || !m->graph.prof_sec) return 0;
    const sn_graph *g = &m->graph;
    int k = 0;
    for (int i = 0; i < g->n; i++) {
        const sn_node *nd = &g->nodes[i];
        if (nd->op == SN_OP_INPUT) continue;
        if (out && k < max) {
            const sn_node *x = nd->n_in ? &g->nodes[nd->in[0]] : NULL;
            sn_layer_profile *p = &out[k];
            memset(p, 0, sizeof *p);
            p->op = sn_op_name(nd->op);
            p->batch = nd->n;
            p->in_c = x ? x->c : 0;
            p->in_h = x ? x->h : 0;
            p->in_w = x ? x->w : 0;
            p->out_c = nd->c;
            p->out_h = nd->h;
            p->out_w = nd->w;
            if (nd->op == SN_OP_CONV) {
                p->kh = nd->conv.kh;
                p->kw = nd->conv.kw;
                p->stride = nd->conv.stride_h;
                p->groups = nd->conv.groups;
            }
            p->macs = sn_node_macs(g, nd);
            p->fused = nd->alias >= 0;
            p->act = sn_act_name(nd->act);
            p->seconds = g->prof_sec[i];
            p->runs = g->prof_runs;
        }
        k++;
    }
    return k;
}

sn_status sn_model_run(sn_model *m, const float *input) {
    if (!m || !input) return sn_error(SN_ERR_INVALID_ARG, "sn_model_run: NULL argument");
    if (!m->planned) return sn_error(SN_ERR_STATE, "sn_model_run: call sn_model_plan first");
    return sn_graph_run(&m->graph, &m->params, input);
}

size_t sn_model_arena_bytes(const sn_model *m) {
    return m && m->planned ? m->graph.arena_bytes : 0;
}

/* ---------------------------------------------------------------- outputs and parameters */

int sn_model_num_outputs(const sn_model *m) {
    if (!m || !m->planned) return 0;
    int k = 0;
    for (int i = 0; i < m->graph.n; i++) k += m->graph.nodes[i].out_name[0] != 0;
    return k;
}

static void fill_output(const sn_model *m, int i, sn_output *out) {
    const sn_node *nd = &m->graph.nodes[i];
    out->name = nd->out_name;
    out->data = sn_graph_f32(&m->graph, i);
    out->n = nd->n;
    out->h = nd->h;
    out->w = nd->w;
    out->c = nd->c;
}

sn_status sn_model_output_at(const sn_model *m, int idx, sn_output *out) {
    if (!m || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_model_output_at: NULL argument");
    if (!m->planned) return sn_error(SN_ERR_STATE, "sn_model_output_at: model not planned");
    int k = 0;
    for (int i = 0; i < m->graph.n; i++) {
        if (!m->graph.nodes[i].out_name[0]) continue;
        if (k++ == idx) {
            fill_output(m, i, out);
            return SN_OK;
        }
    }
    return sn_error(SN_ERR_NOT_FOUND, "output %d out of range (%d outputs)", idx, k);
}

sn_status sn_model_output(const sn_model *m, const char *name, sn_output *out) {
    if (!m || !name || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_model_output: NULL argument");
    if (!m->planned) return sn_error(SN_ERR_STATE, "sn_model_output: model not planned");
    for (int i = 0; i < m->graph.n; i++)
        if (strcmp(m->graph.nodes[i].out_name, name) == 0) {
            fill_output(m, i, out);
            return SN_OK;
        }
    return sn_error(SN_ERR_NOT_FOUND, "model has no output '%s'", name);
}

int sn_model_num_params(const sn_model *m) { return m ? m->params.n : 0; }

static void fill_param(sn_model *m, int i, sn_param *out) {
    sn_tensor_param *t = &m->params.t[i];
    out->name = t->name;
    out->data = t->data;
    out->ndim = t->ndim;
    for (int k = 0; k < 4; k++) out->shape[k] = k < t->ndim ? t->shape[k] : 0;
    out->count = t->count;
}

sn_status sn_model_param_at(sn_model *m, int i, sn_param *out) {
    if (!m || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_model_param_at: NULL argument");
    if (i < 0 || i >= m->params.n)
        return sn_error(SN_ERR_NOT_FOUND, "parameter %d out of range (%d)", i, m->params.n);
    fill_param(m, i, out);
    return SN_OK;
}

sn_status sn_model_param(sn_model *m, const char *name, sn_param *out) {
    if (!m || !name || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_model_param: NULL argument");
    int i = sn_paramtab_find(&m->params, name);
    if (i < 0) return sn_error(SN_ERR_NOT_FOUND, "model has no tensor '%s'", name);
    fill_param(m, i, out);
    return SN_OK;
}

/* ---------------------------------------------------------------- files */

#define N_META 24 /* metadata entries, with room to spare */

sn_status sn_model_save(const sn_model *m, const char *path) {
    if (!m || !path) return sn_error(SN_ERR_INVALID_ARG, "sn_model_save: NULL argument");
    const sn_config *c = &m->cfg;
    char vals[N_META][SN_NAME_MAX + 16];
    const char *keys[N_META];
    const char *vptr[N_META];
    int k = 0;
#define META(key, ...)                                      \
    do {                                                    \
        keys[k] = key;                                      \
        snprintf(vals[k], sizeof vals[k], __VA_ARGS__);     \
        vptr[k] = vals[k];                                  \
        k++;                                                \
    } while (0)
    META("format", "spinenet");
    META("format_version", "1");
    META("model", "%s", c->model);
    META("flavour", "%s", sn_flavour_name(c->flavour));
    META("head", "%s", sn_head_name(c->head));
    META("activation", "%s", sn_act_name(c->activation));
    META("num_classes", "%d", c->num_classes);
    META("input_size", "%d", c->input_size);
    META("min_level", "%d", c->min_level);
    META("max_level", "%d", c->max_level);
    META("p2", "%d", c->p2);
    META("bn_eps", "%.9g", (double)c->bn_eps);
    META("head_convs", "%d", c->head_convs);
    META("head_filters", "%d", c->head_filters);
    META("anchor_size", "%.9g", (double)c->anchor_size);
    /* The anchor order of each code base (docs/architecture.md): it fixes the meaning of head
     * channels. */
    META("aspect_ratios", "%s", c->flavour == SN_FLAVOUR_TPU ? "1,2,0.5" : "0.5,1,2");
    META("endpoints_filters", "%d", c->endpoints_filters);
    META("filter_scale", "%.9g", (double)c->filter_scale);
    META("resample_alpha", "%.9g", (double)c->resample_alpha);
    META("block_repeats", "%d", c->block_repeats);
#undef META
    if (m->spec_text) {
        keys[k] = "block_spec";
        vptr[k] = m->spec_text;
        k++;
    }
    if (m->class_names) {
        keys[k] = "class_names";
        vptr[k] = m->class_names;
        k++;
    }
    sn_st_file f = {0};
    f.n_meta = k;
    f.meta_keys = (char **)keys;
    f.meta_vals = (char **)vptr;
    f.n_tensors = m->params.n;
    f.tensors = sn_calloc((size_t)m->params.n, sizeof *f.tensors);
    if (!f.tensors) return SN_ERR_OOM;
    for (int i = 0; i < m->params.n; i++) {
        const sn_tensor_param *t = &m->params.t[i];
        f.tensors[i].name = t->name;
        f.tensors[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) f.tensors[i].shape[d] = t->shape[d];
        f.tensors[i].count = t->count;
        f.tensors[i].data = t->data;
    }
    sn_status st = sn_st_write(path, &f);
    sn_free(f.tensors);
    return st;
}

static sn_status meta_int(const sn_st_file *f, const char *path, const char *key, int *out) {
    const char *v = sn_st_meta(f, key);
    if (!v) return sn_error(SN_ERR_FORMAT, "%s: metadata '%s' is missing", path, key);
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < -1000000000L || x > 1000000000L)
        return sn_error(SN_ERR_FORMAT, "%s: metadata '%s' = '%s' is not an integer", path, key, v);
    *out = (int)x;
    return SN_OK;
}

static sn_status meta_float(const sn_st_file *f, const char *path, const char *key, float *out) {
    const char *v = sn_st_meta(f, key);
    if (!v) return sn_error(SN_ERR_FORMAT, "%s: metadata '%s' is missing", path, key);
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !isfinite(x))
        return sn_error(SN_ERR_FORMAT, "%s: metadata '%s' = '%s' is not a number", path, key, v);
    *out = (float)x;
    return SN_OK;
}

static sn_status config_from_meta(const sn_st_file *f, const char *path, sn_config *c) {
    const char *fmt = sn_st_meta(f, "format");
    if (!fmt || strcmp(fmt, "spinenet") != 0)
        return sn_error(SN_ERR_FORMAT, "%s: not a spinenet weight file (metadata 'format' is %s)",
                        path, fmt ? fmt : "missing");
    const char *model = sn_st_meta(f, "model");
    if (!model) return sn_error(SN_ERR_FORMAT, "%s: metadata 'model' is missing", path);
    sn_status st = sn_config_init(c, model);
    if (st != SN_OK) return sn_error(st, "%s: %s", path, sn_last_error());
    const char *s;
    if ((s = sn_st_meta(f, "flavour")) && sn_parse_flavour(s, &c->flavour) != SN_OK)
        return sn_error(SN_ERR_FORMAT, "%s: %s", path, sn_last_error());
    if ((s = sn_st_meta(f, "head")) && sn_parse_head(s, &c->head) != SN_OK)
        return sn_error(SN_ERR_FORMAT, "%s: %s", path, sn_last_error());
    if ((s = sn_st_meta(f, "activation")) && sn_parse_act(s, &c->activation) != SN_OK)
        return sn_error(SN_ERR_FORMAT, "%s: %s", path, sn_last_error());
    static const char *const ikeys[] = {"num_classes", "input_size", "min_level", "max_level", "p2",
                                        "head_convs", "head_filters",
                                        "endpoints_filters", "block_repeats"};
    int *idst[] = {&c->num_classes, &c->input_size, &c->min_level, &c->max_level, &c->p2,
                   &c->head_convs, &c->head_filters, &c->endpoints_filters,
                   &c->block_repeats};
    for (unsigned i = 0; i < sizeof ikeys / sizeof *ikeys; i++)
        if ((st = meta_int(f, path, ikeys[i], idst[i])) != SN_OK) return st;
    if ((st = meta_float(f, path, "bn_eps", &c->bn_eps)) != SN_OK) return st;
    if ((st = meta_float(f, path, "anchor_size", &c->anchor_size)) != SN_OK) return st;
    if ((st = meta_float(f, path, "filter_scale", &c->filter_scale)) != SN_OK) return st;
    if ((st = meta_float(f, path, "resample_alpha", &c->resample_alpha)) != SN_OK) return st;
    return SN_OK;
}

sn_status sn_model_load(const char *path, sn_model **out) {
    if (!path || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_model_load: NULL argument");
    *out = NULL;
    sn_st_file f;
    sn_status st = sn_st_read(path, &f);
    if (st != SN_OK) return st;
    sn_config cfg;
    sn_model *m = NULL;
    st = config_from_meta(&f, path, &cfg);
    if (st == SN_OK) {
        st = model_new(&cfg, sn_st_meta(&f, "block_spec"), 1, &m);
        if (st != SN_OK && strncmp(sn_last_error(), path, strlen(path)) != 0)
            st = sn_error(st, "%s: %s", path, sn_last_error());
    }
    for (int i = 0; st == SN_OK && i < m->params.n; i++) {
        sn_tensor_param *t = &m->params.t[i];
        const sn_st_tensor *ft = sn_st_find(&f, t->name);
        if (!ft) {
            st = sn_error(SN_ERR_NOT_FOUND, "%s: tensor '%s' is missing", path, t->name);
            break;
        }
        int same = ft->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = ft->shape[d] == t->shape[d];
        if (!same) {
            char have[96] = "", want[96] = "";
            int o = 0;
            for (int d = 0; d < ft->ndim && o < 80; d++)
                o += snprintf(have + o, sizeof have - (size_t)o, d ? ",%lld" : "%lld", (long long)ft->shape[d]);
            o = 0;
            for (int d = 0; d < t->ndim && o < 80; d++)
                o += snprintf(want + o, sizeof want - (size_t)o, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            st = sn_error(SN_ERR_SHAPE, "%s: tensor '%s' has shape [%s], model %s needs [%s]", path,
                          t->name, have, m->cfg.model, want);
            break;
        }
        memcpy(t->data, ft->data, t->count * sizeof(float));
    }
    if (st == SN_OK && f.n_tensors != m->params.n) {
        for (int i = 0; i < f.n_tensors; i++)
            /* A training checkpoint also holds optimizer state ("opt.*"); the model ignores it. */
            if (strncmp(f.tensors[i].name, "opt.", 4) != 0 &&
                sn_paramtab_find(&m->params, f.tensors[i].name) < 0) {
                st = sn_error(SN_ERR_FORMAT, "%s: unexpected tensor '%s' for model %s", path,
                              f.tensors[i].name, m->cfg.model);
                break;
            }
    }
    const char *names = st == SN_OK ? sn_st_meta(&f, "class_names") : NULL;
    if (names) {
        size_t len = strlen(names);
        m->class_names = sn_alloc(len + 1);
        if (!m->class_names)
            st = SN_ERR_OOM;
        else
            memcpy(m->class_names, names, len + 1);
    }
    sn_st_free(&f);
    if (st != SN_OK) {
        sn_model_free(m);
        return st;
    }
    *out = m;
    return SN_OK;
}

/* ---------------------------------------------------------------- info */

sn_status sn_config_info(const sn_config *cfg, int height, int width, sn_block_info *rows,
                         int max_rows, int *n_rows, int64_t *total_params, int64_t *total_macs) {
    if (!cfg) return sn_error(SN_ERR_INVALID_ARG, "sn_config_info: NULL config");
    sn_model *m = NULL;
    sn_status st = model_new(cfg, NULL, 0, &m);
    if (st != SN_OK) return st;
    st = sn_model_info(m, height, width, rows, max_rows, n_rows, total_params, total_macs);
    sn_model_free(m);
    return st;
}

sn_status sn_model_info(sn_model *m, int height, int width, sn_block_info *rows, int max_rows,
                        int *n_rows, int64_t *total_params, int64_t *total_macs) {
    if (!m || !n_rows || !total_params || !total_macs)
        return sn_error(SN_ERR_INVALID_ARG, "sn_model_info: NULL argument");
    sn_graph g = {0};
    sn_status st = sn_build_graph(m, 1, height, width, 0, &g);
    if (st != SN_OK) {
        sn_graph_free(&g);
        return st;
    }
    int n_feat = 2 + m->n_specs;
    int n_slots = n_feat + 3; /* stem, features, endpoints, head */
    sn_block_info *acc = sn_calloc((size_t)n_slots, sizeof *acc);
    char *seen = sn_calloc((size_t)m->params.n + 1, 1);
    if (!acc || !seen) {
        sn_free(acc);
        sn_free(seen);
        sn_graph_free(&g);
        return SN_ERR_OOM;
    }
    /* slot 0 stem, 1..n_feat features, n_feat+1 endpoints, n_feat+2 head */
    int64_t tp = 0, tm = 0;
    for (int i = 0; i < g.n; i++) {
        const sn_node *nd = &g.nodes[i];
        int slot = nd->block == SN_BLOCK_STEM ? 0
                   : nd->block == SN_BLOCK_ENDPOINTS ? n_feat + 1
                   : nd->block == SN_BLOCK_HEAD      ? n_feat + 2
                                                     : nd->block + 1;
        sn_block_info *r = &acc[slot];
        int64_t macs = sn_node_macs(&g, nd);
        r->macs += macs;
        tm += macs;
        int ps[6] = {nd->p_weight, nd->p_bias, nd->p_gamma, nd->p_beta, nd->p_mean, nd->p_var};
        for (int k = 0; k < 6; k++) {
            int p = ps[k];
            if (p < 0 || seen[p]) continue;
            seen[p] = 1;
            if (!m->params.t[p].trainable_count) continue;
            r->params += (int64_t)m->params.t[p].count;
            tp += (int64_t)m->params.t[p].count;
        }
        r->channels = nd->c;
        r->height = nd->h;
        r->width = nd->w;
        r->is_output = 1; /* marks the slot as used */
    }
    int k = 0;
    for (int s = 0; s < n_slots; s++) {
        if (!acc[s].is_output) continue;
        sn_block_info r = acc[s];
        r.parents[0] = r.parents[1] = -1;
        r.is_output = 0;
        if (s == 0) {
            r.index = -1;
            r.level = 1;
            snprintf(r.type, sizeof r.type, "stem");
        } else if (s == n_feat + 1) {
            r.index = SN_BLOCK_ENDPOINTS;
            r.level = m->cfg.min_level;
            snprintf(r.type, sizeof r.type, "endpoints");
        } else if (s == n_feat + 2) {
            r.index = SN_BLOCK_HEAD;
            r.level = m->cfg.min_level;
            snprintf(r.type, sizeof r.type, "%s", sn_head_name(m->cfg.head));
        } else {
            int idx = s - 1;
            r.index = idx;
            int mobile = sn_config_is_mobile(&m->cfg);
            if (idx < 2) {
                r.level = mobile ? idx + 1 : 2;
                snprintf(r.type, sizeof r.type, "%s", mobile ? "mbconv" : "bottleneck");
            } else {
                const sn_block_spec *sp = &m->specs[idx - 2];
                r.level = sp->level;
                snprintf(r.type, sizeof r.type, "%s",
                         sp->type == SN_BLOCK_BOTTLENECK ? "bottleneck"
                         : sp->type == SN_BLOCK_RESIDUAL ? "residual"
                                                         : "mbconv");
                r.parents[0] = sp->parents[0];
                r.parents[1] = sp->parents[1];
                r.is_output = sp->is_output;
            }
        }
        if (rows && k < max_rows) rows[k] = r;
        k++;
    }
    *n_rows = k;
    *total_params = tp;
    *total_macs = tm;
    sn_free(acc);
    sn_free(seen);
    sn_graph_free(&g);
    return SN_OK;
}
