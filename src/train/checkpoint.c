/* checkpoint.c: training checkpoints (weights + optimizer momentum + loop state) as one
 * safetensors file written atomically, and their restoration for --resume. Layout: trainer.h. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "model.h"
#include "safetensors.h"
#include "trainer.h"

#define N_TRAIN_META 12

/* Extra metadata values are formatted into fixed slots. */
typedef struct {
    const char *keys[N_TRAIN_META];
    char vals[N_TRAIN_META][64];
    int n;
} train_meta;

static void tm_add(train_meta *tm, const char *key, const char *fmt, ...) SN_PRINTF(3, 4);

static void tm_add(train_meta *tm, const char *key, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tm->vals[tm->n], sizeof tm->vals[tm->n], fmt, ap);
    va_end(ap);
    tm->keys[tm->n++] = key;
}

sn_status sn_checkpoint_write(const char *path, const sn_model *m, sn_optim *opt,
                              const sn_train_state *st) {
    if (!path || !m || !st) return sn_error(SN_ERR_INVALID_ARG, "sn_checkpoint_write: NULL argument");
    /* The weights and model metadata go through sn_model_save into a side file that is read
     * back, so the checkpoint carries exactly what sn_model_save writes (and keeps doing so as
     * that layout evolves) without duplicating its key list here. The side file is itself
     * written atomically and is not the checkpoint: a kill here leaves `path` untouched. */
    size_t plen = strlen(path);
    char *side = sn_alloc(plen + 16);
    if (!side) return SN_ERR_OOM;
    snprintf(side, plen + 16, "%s.weights", path);
    sn_status s = sn_model_save(m, side);
    if (s != SN_OK) {
        sn_free(side);
        return s;
    }
    sn_st_file w;
    s = sn_st_read(side, &w);
    unlink(side);
    sn_free(side);
    if (s != SN_OK) return s;

    const sn_opt_tensor *ot = NULL;
    int n_opt = 0;
    if (opt && (s = sn_optim_state_tensors(opt, &ot, &n_opt)) != SN_OK) {
        sn_st_free(&w);
        return s;
    }
    train_meta tm = {0};
    tm_add(&tm, "train.format_version", "1");
    tm_add(&tm, "train.step", "%" PRId64, st->step);
    /* %.17g round-trips a double exactly, so a resumed run compares "improved" identically. The
     * key says top1 for every task (AP for a detector): renaming it would break older runs. */
    tm_add(&tm, "train.best_top1", "%.17g", st->best_metric);
    tm_add(&tm, "train.best_step", "%" PRId64, st->best_step);
    tm_add(&tm, "train.seed", "%" PRIu64, st->seed);
    tm_add(&tm, "train.loader_seed", "%" PRIu64, st->loader.seed);
    tm_add(&tm, "train.loader_epoch", "%" PRId64, st->loader.epoch);
    tm_add(&tm, "train.loader_position", "%" PRId64, st->loader.position);
    tm_add(&tm, "train.rng", "stateless: drop-path seed = mix(train.seed, step)");
    if (opt) {
        tm_add(&tm, "train.optim_step", "%" PRId64, sn_optim_get_step(opt));
        tm_add(&tm, "train.momentum_form", "%s",
               sn_optim_config(opt)->form == SN_MOMENTUM_ACCUM ? "accum" : "keras");
    }

    sn_st_file f = {0};
    f.n_tensors = w.n_tensors + n_opt;
    f.n_meta = w.n_meta + tm.n;
    f.tensors = sn_calloc((size_t)f.n_tensors, sizeof *f.tensors);
    f.meta_keys = sn_calloc((size_t)f.n_meta, sizeof *f.meta_keys);
    f.meta_vals = sn_calloc((size_t)f.n_meta, sizeof *f.meta_vals);
    if (!f.tensors || !f.meta_keys || !f.meta_vals) {
        s = SN_ERR_OOM;
    } else {
        for (int i = 0; i < w.n_tensors; i++) f.tensors[i] = w.tensors[i];
        for (int i = 0; i < n_opt; i++) {
            sn_st_tensor *t = &f.tensors[w.n_tensors + i];
            t->name = (char *)ot[i].name;
            t->ndim = 1;
            t->shape[0] = (int64_t)ot[i].count;
            t->count = ot[i].count;
            t->data = ot[i].data;
        }
        for (int i = 0; i < w.n_meta; i++) {
            f.meta_keys[i] = w.meta_keys[i];
            f.meta_vals[i] = w.meta_vals[i];
        }
        for (int i = 0; i < tm.n; i++) {
            f.meta_keys[w.n_meta + i] = (char *)tm.keys[i];
            f.meta_vals[w.n_meta + i] = tm.vals[i];
        }
        s = sn_st_write(path, &f);
    }
    sn_free(f.tensors);
    sn_free(f.meta_keys);
    sn_free(f.meta_vals);
    sn_st_free(&w);
    return s;
}

static sn_status meta_i64(const sn_st_file *f, const char *path, const char *key, int64_t *out) {
    const char *v = sn_st_meta(f, key);
    if (!v) return sn_error(SN_ERR_FORMAT, "%s: checkpoint metadata '%s' is missing", path, key);
    char *end;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end)
        return sn_error(SN_ERR_FORMAT, "%s: checkpoint metadata '%s' = '%s' is not an integer", path,
                        key, v);
    *out = (int64_t)x;
    return SN_OK;
}

static sn_status meta_u64(const sn_st_file *f, const char *path, const char *key, uint64_t *out) {
    const char *v = sn_st_meta(f, key);
    if (!v) return sn_error(SN_ERR_FORMAT, "%s: checkpoint metadata '%s' is missing", path, key);
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (end == v || *end)
        return sn_error(SN_ERR_FORMAT, "%s: checkpoint metadata '%s' = '%s' is not an integer", path,
                        key, v);
    *out = (uint64_t)x;
    return SN_OK;
}

sn_status sn_checkpoint_read(const char *path, sn_model *m, sn_optim *opt, sn_train_state *st) {
    if (!path || !m || !st) return sn_error(SN_ERR_INVALID_ARG, "sn_checkpoint_read: NULL argument");
    sn_st_file f;
    sn_train_state ns = {0};
    int64_t optim_step = 0;
    const char *v;
    const sn_opt_tensor *ot = NULL;
    int n_opt = 0;
    sn_status s = sn_st_read(path, &f);
    if (s != SN_OK) return s;
    const char *model = sn_st_meta(&f, "model");
    if (!model || strcmp(model, m->cfg.model) != 0) {
        s = sn_error(SN_ERR_INVALID_ARG, "%s: checkpoint is for model '%s', the run is for '%s'",
                     path, model ? model : "?", m->cfg.model);
        goto done;
    }
    /* Parse the whole state before touching the model, so a bad file changes nothing. */
    if ((s = meta_i64(&f, path, "train.step", &ns.step)) != SN_OK ||
        (s = meta_i64(&f, path, "train.best_step", &ns.best_step)) != SN_OK ||
        (s = meta_u64(&f, path, "train.seed", &ns.seed)) != SN_OK ||
        (s = meta_u64(&f, path, "train.loader_seed", &ns.loader.seed)) != SN_OK ||
        (s = meta_i64(&f, path, "train.loader_epoch", &ns.loader.epoch)) != SN_OK ||
        (s = meta_i64(&f, path, "train.loader_position", &ns.loader.position)) != SN_OK)
        goto done;
    if (!(v = sn_st_meta(&f, "train.best_top1"))) {
        s = sn_error(SN_ERR_FORMAT, "%s: checkpoint metadata 'train.best_top1' is missing", path);
        goto done;
    }
    ns.best_metric = strtod(v, NULL);
    if (opt) {
        if ((s = meta_i64(&f, path, "train.optim_step", &optim_step)) != SN_OK) goto done;
        const char *form = sn_st_meta(&f, "train.momentum_form");
        const char *want = sn_optim_config(opt)->form == SN_MOMENTUM_ACCUM ? "accum" : "keras";
        /* The two momentum forms store different quantities (optim.h): never mix them. */
        if (!form || strcmp(form, want) != 0) {
            s = sn_error(SN_ERR_INVALID_ARG, "%s: checkpoint momentum form is '%s', the run uses '%s'",
                         path, form ? form : "missing", want);
            goto done;
        }
    }
    for (int i = 0; i < m->params.n; i++) {
        const sn_tensor_param *t = &m->params.t[i];
        const sn_st_tensor *ft = sn_st_find(&f, t->name);
        int same = ft && ft->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = ft->shape[d] == t->shape[d];
        if (!same) {
            s = sn_error(SN_ERR_SHAPE, "%s: tensor '%s' is %s", path, t->name,
                         ft ? "of another shape than the model's" : "missing");
            goto done;
        }
    }
    if (opt) {
        if ((s = sn_optim_state_tensors(opt, &ot, &n_opt)) != SN_OK) goto done;
        for (int i = 0; i < n_opt; i++) {
            const sn_st_tensor *ft = sn_st_find(&f, ot[i].name);
            if (!ft || ft->count != ot[i].count) {
                s = sn_error(SN_ERR_FORMAT, "%s: optimizer tensor '%s' is %s", path, ot[i].name,
                             ft ? "of the wrong size" : "missing (not a training checkpoint?)");
                goto done;
            }
        }
    }
    /* Everything checked: copy. */
    for (int i = 0; i < m->params.n; i++) {
        const sn_tensor_param *t = &m->params.t[i];
        memcpy(t->data, sn_st_find(&f, t->name)->data, t->count * sizeof(float));
    }
    for (int i = 0; i < n_opt; i++)
        memcpy(ot[i].data, sn_st_find(&f, ot[i].name)->data, ot[i].count * sizeof(float));
    if (opt && (s = sn_optim_set_step(opt, optim_step)) != SN_OK) goto done;
    *st = ns;
done:
    sn_st_free(&f);
    return s;
}
