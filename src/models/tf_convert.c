/* A model from a TensorFlow checkpoint. See tf_convert.h. */
#include "tf_convert.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "tf_names.h"

static void shape_str(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t u = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && u < cap; d++)
        u += (size_t)snprintf(buf + u, cap - u, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (u < cap) snprintf(buf + u, cap - u, "]");
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Whether a checkpoint tensor of shape tf[] fits a parameter of shape ours[]: equal, or a
 * depthwise kernel, [kh, kw, C, 1] in TensorFlow and [kh, kw, 1, C] here (the same bytes). */
static int shape_fits(const sn_tensor_param *p, const sn_tf_entry *e) {
    if (p->ndim == e->ndim) {
        int same = 1;
        for (int d = 0; d < p->ndim; d++) same &= p->shape[d] == e->shape[d];
        if (same) return 1;
    }
    return p->ndim == 4 && e->ndim == 4 && p->shape[2] == 1 && e->shape[3] == 1 &&
           p->shape[0] == e->shape[0] && p->shape[1] == e->shape[1] && p->shape[3] == e->shape[2];
}

static int add_problem(sn_tf_report *r, sn_tf_problem_kind kind, const char *model,
                       const sn_tensor_param *p, const sn_tf_entry *e, const char *tf) {
    sn_tf_problem *np = realloc(r->problems, (size_t)(r->n_problems + 1) * sizeof *np);
    if (!np) return -1;
    r->problems = np;
    sn_tf_problem *q = &np[r->n_problems];
    memset(q, 0, sizeof *q);
    q->kind = kind;
    q->model = model ? strdup(model) : NULL;
    q->tf = strdup(tf);
    if ((model && !q->model) || !q->tf) {
        free(q->model);
        free(q->tf);
        return -1;
    }
    if (p) shape_str(q->model_shape, sizeof q->model_shape, p->shape, p->ndim);
    if (e) shape_str(q->tf_shape, sizeof q->tf_shape, e->shape, e->ndim);
    r->n_problems++;
    return 0;
}

void sn_tf_report_free(sn_tf_report *rep) {
    if (!rep) return;
    for (int i = 0; i < rep->n_problems; i++) {
        free(rep->problems[i].model);
        free(rep->problems[i].tf);
    }
    free(rep->problems);
    memset(rep, 0, sizeof *rep);
}

/* The checkpoint entry of the parameter called `param` of m (NULL if either is absent). */
static const sn_tf_entry *source_of(const sn_model *m, const sn_tf_names *nm, const sn_tf_ckpt *c,
                                    const char *param) {
    int i = sn_paramtab_find(&m->params, param);
    if (i < 0 || i >= nm->n) return NULL;
    return sn_tf_find(c, nm->v[i].tf);
}

/* Reads the sizes the checkpoint decides off its shapes into cfg where they differ; returns
 * whether anything changed. */
static int infer_sizes(const sn_model *m, const sn_tf_names *nm, const sn_tf_ckpt *c, int infer,
                       sn_config *cfg, sn_tf_report *rep) {
    int changed = 0;
    char name[64];
    size_t u = strlen(rep->inferred);
    snprintf(name, sizeof name, "endpoints.%d.weight", cfg->min_level);
    const sn_tf_entry *e = source_of(m, nm, c, name);
    if ((infer & SN_TF_INFER_ENDPOINTS) && e && e->ndim == 4 && e->shape[3] > 0 &&
        e->shape[3] <= 4096 && e->shape[3] != cfg->endpoints_filters) {
        cfg->endpoints_filters = (int)e->shape[3];
        u += (size_t)snprintf(rep->inferred + u, u < sizeof rep->inferred ? sizeof rep->inferred - u : 0,
                              "%sendpoints-filters %d", u ? ", " : "", cfg->endpoints_filters);
        changed = 1;
    }
    e = source_of(m, nm, c, "head.class.conv0.weight");
    if ((infer & SN_TF_INFER_HEAD_FILTERS) && e && e->ndim == 4 && e->shape[3] > 0 &&
        e->shape[3] <= 4096 && e->shape[3] != cfg->head_filters) {
        cfg->head_filters = (int)e->shape[3];
        u += (size_t)snprintf(rep->inferred + u, u < sizeof rep->inferred ? sizeof rep->inferred - u : 0,
                              "%shead-filters %d", u ? ", " : "", cfg->head_filters);
        changed = 1;
    }
    int classes = 0;
    e = source_of(m, nm, c, "head.class.pred.weight");
    if (e && e->ndim == 4 && e->shape[3] % 9 == 0) classes = (int)(e->shape[3] / 9);
    e = source_of(m, nm, c, "head.fc.weight");
    if (e && e->ndim == 2) classes = (int)e->shape[1];
    if ((infer & SN_TF_INFER_CLASSES) && classes > 0 && classes <= 100000 &&
        classes != cfg->num_classes) {
        cfg->num_classes = classes;
        u += (size_t)snprintf(rep->inferred + u, u < sizeof rep->inferred ? sizeof rep->inferred - u : 0,
                              "%sclasses %d", u ? ", " : "", classes);
        changed = 1;
    }
    return changed;
}

/* Whether name is one of the `ignore` substrings' (comma-separated). */
static int ignored(const char *name, const char *ignore) {
    if (!ignore) return 0;
    const char *p = ignore;
    while (*p) {
        const char *q = strchr(p, ',');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n) {
            char pat[256];
            if (n >= sizeof pat) n = sizeof pat - 1;
            memcpy(pat, p, n);
            pat[n] = '\0';
            if (strstr(name, pat)) return 1;
        }
        if (!q) break;
        p = q + 1;
    }
    return 0;
}

/* Optimizer state and bookkeeping that no model has: TF1 global_step and Adam's power
 * accumulators, TF2's optimizer/ subtree, save counter and object graph. */
static int is_state(const char *n) {
    return !strcmp(n, "global_step") || starts_with(n, "global_step/") ||
           starts_with(n, "optimizer/") || starts_with(n, "save_counter/") ||
           !strcmp(n, "_CHECKPOINTABLE_OBJECT_GRAPH") || ends_with(n, "beta1_power") ||
           ends_with(n, "beta2_power");
}

/* An optimizer slot: TF2 ".OPTIMIZER_SLOT" paths, and in TF1 a variable named under another
 * variable ("<var>/Momentum", "<var>/Adam_1", ...), except the moving-average shadow. */
static int is_slot(const sn_tf_ckpt *c, const char *n) {
    if (strstr(n, "/.OPTIMIZER_SLOT/")) return 1;
    const char *slash = strrchr(n, '/');
    if (!slash || ends_with(n, "/ExponentialMovingAverage")) return 0;
    size_t k = (size_t)(slash - n);
    char *parent = malloc(k + 1);
    if (!parent) return 0;
    memcpy(parent, n, k);
    parent[k] = '\0';
    int yes = sn_tf_find(c, parent) != NULL;
    free(parent);
    return yes;
}

/* COCO 2017's category names at their ids: the 91 columns of the official COCO detectors
 * (column 0 background, ids 1..90, ten of them unused), as training on COCO names them. */
static const char *const k_coco91[91] = {
    "background", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "unused", "stop sign", "parking meter", "bench",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "unused", "backpack", "umbrella", "unused", "unused", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
    "surfboard", "tennis racket", "bottle", "unused", "wine glass", "cup", "fork", "knife",
    "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog",
    "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "unused", "dining table",
    "unused", "unused", "toilet", "unused", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "unused", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"};

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

sn_status sn_tf_convert(sn_config *cfg, const char *path, const sn_tf_convert_opts *opts,
                        sn_tf_report *rep, sn_model **out) {
    if (out) *out = NULL;
    if (!rep) return sn_error(SN_ERR_INVALID_ARG, "sn_tf_convert: NULL report");
    memset(rep, 0, sizeof *rep);
    if (!cfg || !path || !opts) return sn_error(SN_ERR_INVALID_ARG, "sn_tf_convert: NULL argument");
    sn_tf_ckpt c;
    sn_status st = sn_tf_open(path, &c);
    if (st != SN_OK) return st;
    sn_model *m = NULL;
    sn_tf_names nm = {0}, other = {0};
    unsigned char *used = NULL;
    const char **other_names = NULL;
    /* The sizes the checkpoint decides: at most two rounds (the second confirms). */
    for (int round = 0; round < 3; round++) {
        sn_model_free(m);
        m = NULL;
        sn_tf_names_free(&nm);
        if ((st = sn_model_create_shapes(cfg, &m)) != SN_OK) goto done;
        if ((st = sn_tf_names_make(m, opts->ema, &nm)) != SN_OK) goto done;
        if (round == 2 || !infer_sizes(m, &nm, &c, opts->infer, cfg, rep)) break;
    }
    /* The other copy of the weights (raw with ema, shadows without), skipped by rule. */
    if ((st = sn_tf_names_make(m, !opts->ema, &other)) != SN_OK) goto done;
    other_names = malloc((size_t)(other.n ? other.n : 1) * sizeof *other_names);
    used = calloc((size_t)(c.n_entries ? c.n_entries : 1), 1);
    if (!other_names || !used) {
        st = sn_error(SN_ERR_OOM, "out of memory");
        goto done;
    }
    for (int i = 0; i < other.n; i++) other_names[i] = other.v[i].tf;
    qsort(other_names, (size_t)other.n, sizeof *other_names, cmp_str);
    rep->n_params = m->params.n;
    rep->n_entries = c.n_entries;
    for (int i = 0; i < m->params.n; i++) {
        const sn_tensor_param *p = &m->params.t[i];
        const sn_tf_entry *e = sn_tf_find(&c, nm.v[i].tf);
        int bad = 0;
        if (!e) bad = add_problem(rep, SN_TF_MISSING, p->name, p, NULL, nm.v[i].tf);
        else {
            used[e - c.entries] = 1;
            if (!shape_fits(p, e)) bad = add_problem(rep, SN_TF_SHAPE, p->name, p, e, e->name);
            else if (e->dtype != SN_TF_FLOAT && e->dtype != SN_TF_BFLOAT16 &&
                     e->dtype != SN_TF_HALF && e->dtype != SN_TF_DOUBLE)
                bad = add_problem(rep, SN_TF_DTYPE, p->name, p, e, e->name);
            else rep->n_mapped++;
        }
        if (bad) {
            st = sn_error(SN_ERR_OOM, "out of memory");
            goto done;
        }
    }
    for (int i = 0; i < c.n_entries; i++) {
        if (used[i]) continue;
        const char *n = c.entries[i].name;
        const char *key = n;
        /* The other copy first: the Model Garden keeps its averages as optimizer slots. */
        if (is_state(n)) rep->n_state++;
        else if (bsearch(&key, other_names, (size_t)other.n, sizeof *other_names, cmp_str))
            rep->n_other_copy++;
        else if (is_slot(&c, n)) rep->n_slots++;
        else if (ignored(n, opts->ignore)) rep->n_ignored++;
        else if (add_problem(rep, SN_TF_UNUSED, NULL, NULL, &c.entries[i], n)) {
            st = sn_error(SN_ERR_OOM, "out of memory");
            goto done;
        }
    }
    if (rep->n_problems) {
        st = sn_error(SN_ERR_FORMAT, "%s: %d problem(s) mapping the checkpoint onto %s (%s, %s "
                      "head): %d of %d model tensors mapped", c.index_path, rep->n_problems,
                      cfg->model, sn_flavour_name(cfg->flavour), sn_head_name(cfg->head),
                      rep->n_mapped, rep->n_params);
        goto done;
    }
    if (!opts->read_data || !out) goto done;
    sn_model *full = NULL;
    if ((st = sn_model_create_uninit(cfg, &full)) != SN_OK) goto done;
    for (int i = 0; i < full->params.n && st == SN_OK; i++) {
        const sn_tf_entry *e = sn_tf_find(&c, nm.v[i].tf);
        if (full->params.t[i].count != (size_t)e->count)
            st = sn_error(SN_ERR_SHAPE, "%s: %s has %" PRId64 " elements, %s %zu", c.index_path,
                          e->name, e->count, full->params.t[i].name, full->params.t[i].count);
        else st = sn_tf_read_f32(&c, e, full->params.t[i].data);
    }
    if (st == SN_OK && cfg->head == SN_HEAD_RETINANET && cfg->num_classes == 91)
        st = sn_model_set_class_names(full, k_coco91, 91);
    if (st != SN_OK) sn_model_free(full);
    else *out = full;
done:
    free(used);
    free(other_names);
    sn_tf_names_free(&other);
    sn_tf_names_free(&nm);
    sn_model_free(m);
    sn_tf_close(&c);
    return st;
}
