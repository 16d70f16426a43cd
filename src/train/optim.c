/* optim.c: SGD with momentum, L2 weight decay on kernels and global-norm gradient clipping, with
 * its momentum buffers exposed as named tensors for checkpoints (semantics in optim.h). */
#include <math.h>
#include <string.h>

#include "core.h"
#include "optim.h"

#define SN_OPT_PREFIX "opt.momentum."

struct sn_optim {
    sn_sgd_config cfg;
    int n;            /* parameters given at create, trainable or not */
    char **names;     /* copies, to check every step's list against the one we were built for */
    size_t *counts;
    int *slot;        /* index into state, -1 for a non-trainable tensor */
    sn_opt_tensor *state;
    int n_state;
    int64_t step;
};

static int ends_with(const char *s, const char *suffix) {
    const size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0;
}

int sn_optim_is_trainable(const char *name) {
    return name && !ends_with(name, ".mean") && !ends_with(name, ".var");
}

int sn_optim_has_decay(const char *name) { return name && ends_with(name, ".weight"); }

void sn_sgd_config_default(sn_sgd_config *c) {
    if (!c) return;
    memset(c, 0, sizeof *c);
    c->momentum = 0.9;
    c->form = SN_MOMENTUM_KERAS;
}

static char *dup_str(const char *prefix, const char *s) {
    const size_t lp = strlen(prefix), ls = strlen(s);
    char *d = sn_alloc(lp + ls + 1);
    if (!d) return NULL;
    memcpy(d, prefix, lp);
    memcpy(d + lp, s, ls + 1);
    return d;
}

void sn_optim_free(sn_optim *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) sn_free(o->names ? o->names[i] : NULL);
    for (int i = 0; i < o->n_state; i++) {
        sn_free((void *)o->state[i].name);
        sn_free(o->state[i].data);
    }
    sn_free(o->names);
    sn_free(o->counts);
    sn_free(o->slot);
    sn_free(o->state);
    sn_free(o);
}

static sn_status check_config(const sn_sgd_config *c) {
    if (!isfinite(c->momentum) || c->momentum < 0)
        return sn_error(SN_ERR_INVALID_ARG, "optimizer: momentum %g must be finite and >= 0",
                        c->momentum);
    if (!isfinite(c->weight_decay) || c->weight_decay < 0)
        return sn_error(SN_ERR_INVALID_ARG, "optimizer: weight_decay %g must be finite and >= 0",
                        c->weight_decay);
    if (!isfinite(c->clip_norm))
        return sn_error(SN_ERR_INVALID_ARG, "optimizer: clip_norm is not finite");
    if (c->form != SN_MOMENTUM_KERAS && c->form != SN_MOMENTUM_ACCUM)
        return sn_error(SN_ERR_INVALID_ARG, "optimizer: unknown momentum form %d", (int)c->form);
    return SN_OK;
}

sn_status sn_optim_create(const sn_sgd_config *cfg, const sn_opt_param *params, int n,
                          sn_optim **out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_optim_create: out is NULL");
    *out = NULL;
    if (!cfg) return sn_error(SN_ERR_INVALID_ARG, "sn_optim_create: config is NULL");
    if (n < 0 || (n > 0 && !params))
        return sn_error(SN_ERR_INVALID_ARG, "sn_optim_create: %d parameters at %p", n,
                        (const void *)params);
    sn_status st = check_config(cfg);
    if (st != SN_OK) return st;
    for (int i = 0; i < n; i++) {
        if (!params[i].name)
            return sn_error(SN_ERR_INVALID_ARG, "sn_optim_create: parameter %d has no name", i);
        /* Duplicate names would give two state tensors one checkpoint key. */
        for (int j = 0; j < i; j++)
            if (strcmp(params[i].name, params[j].name) == 0)
                return sn_error(SN_ERR_INVALID_ARG, "sn_optim_create: parameter '%s' twice",
                                params[i].name);
    }

    sn_optim *o = sn_calloc(1, sizeof *o);
    if (!o) return SN_ERR_OOM;
    o->cfg = *cfg;
    const size_t nn = n > 0 ? (size_t)n : 1;
    o->names = sn_calloc(nn, sizeof *o->names);
    o->counts = sn_calloc(nn, sizeof *o->counts);
    o->slot = sn_calloc(nn, sizeof *o->slot);
    o->state = sn_calloc(nn, sizeof *o->state);
    if (!o->names || !o->counts || !o->slot || !o->state) {
        sn_optim_free(o);
        return SN_ERR_OOM;
    }
    o->n = n;
    for (int i = 0; i < n; i++) {
        o->counts[i] = params[i].count;
        o->slot[i] = -1;
        if (!(o->names[i] = dup_str("", params[i].name))) {
            sn_optim_free(o);
            return SN_ERR_OOM;
        }
        if (!sn_optim_is_trainable(params[i].name)) continue;
        sn_opt_tensor *t = &o->state[o->n_state];
        t->count = params[i].count;
        t->name = dup_str(SN_OPT_PREFIX, params[i].name);
        /* At least one element so an empty tensor still has a valid pointer. */
        t->data = t->name ? sn_calloc(t->count ? t->count : 1, sizeof(float)) : NULL;
        if (!t->name || !t->data) {
            sn_free((void *)t->name);
            t->name = NULL;
            sn_optim_free(o);
            return SN_ERR_OOM;
        }
        o->slot[i] = o->n_state++;
    }
    *out = o;
    return SN_OK;
}

const sn_sgd_config *sn_optim_config(const sn_optim *o) { return o ? &o->cfg : NULL; }

/* The list passed to a step must be the one the optimizer was made for: a silent mismatch would
 * apply one tensor's momentum to another. */
static sn_status check_params(const sn_optim *o, const sn_opt_param *params, int n,
                              const char *fn) {
    if (!o) return sn_error(SN_ERR_INVALID_ARG, "%s: optimizer is NULL", fn);
    if (n != o->n)
        return sn_error(SN_ERR_INVALID_ARG, "%s: %d parameters, the optimizer was made for %d",
                        fn, n, o->n);
    if (n > 0 && !params) return sn_error(SN_ERR_INVALID_ARG, "%s: parameters are NULL", fn);
    for (int i = 0; i < n; i++) {
        const sn_opt_param *p = &params[i];
        if (!p->name || strcmp(p->name, o->names[i]) != 0)
            return sn_error(SN_ERR_INVALID_ARG, "%s: parameter %d is '%s', expected '%s'", fn, i,
                            p->name ? p->name : "(null)", o->names[i]);
        if (p->count != o->counts[i])
            return sn_error(SN_ERR_SHAPE, "%s: '%s' has %zu elements, expected %zu", fn, p->name,
                            p->count, o->counts[i]);
        if (o->slot[i] < 0 || p->count == 0) continue;
        if (!p->w || !p->g)
            return sn_error(SN_ERR_INVALID_ARG, "%s: '%s' has a NULL %s", fn, p->name,
                            p->w ? "gradient" : "weight");
    }
    return SN_OK;
}

/* Sum of squares of g + wd*w (the float values the update will use), in double. */
static double grad_sumsq(const sn_optim *o, const sn_opt_param *params) {
    double sum = 0.0;
    for (int i = 0; i < o->n; i++) {
        if (o->slot[i] < 0) continue;
        const sn_opt_param *p = &params[i];
        const float wd = sn_optim_has_decay(p->name) ? (float)o->cfg.weight_decay : 0.0f;
        for (size_t j = 0; j < p->count; j++) {
            const float ge = p->g[j] + wd * p->w[j];
            sum += (double)ge * (double)ge;
        }
    }
    return sum;
}

sn_status sn_optim_grad_norm(const sn_optim *o, const sn_opt_param *params, int n,
                             double *norm) {
    if (!norm) return sn_error(SN_ERR_INVALID_ARG, "sn_optim_grad_norm: norm is NULL");
    sn_status st = check_params(o, params, n, "sn_optim_grad_norm");
    if (st != SN_OK) return st;
    *norm = sqrt(grad_sumsq(o, params));
    return SN_OK;
}

sn_status sn_optim_step(sn_optim *o, const sn_opt_param *params, int n, double lr,
                        double *norm_out) {
    sn_status st = check_params(o, params, n, "sn_optim_step");
    if (st != SN_OK) return st;
    if (!isfinite(lr)) return sn_error(SN_ERR_INVALID_ARG, "sn_optim_step: lr is not finite");
    const double norm = sqrt(grad_sumsq(o, params));
    if (norm_out) *norm_out = norm;
    if (!isfinite(norm))
        return sn_error(SN_ERR_INVALID_ARG,
                        "sn_optim_step: gradient norm is not finite at step %lld; no update",
                        (long long)o->step);

    float scale = 1.0f;
    if (o->cfg.clip_norm > 0 && norm > o->cfg.clip_norm)
        scale = (float)(o->cfg.clip_norm / norm);
    const float m = (float)o->cfg.momentum, lrf = (float)lr;
    const int keras = o->cfg.form == SN_MOMENTUM_KERAS;

    for (int i = 0; i < o->n; i++) {
        if (o->slot[i] < 0) continue;
        const sn_opt_param *p = &params[i];
        float *v = o->state[o->slot[i]].data;
        float *w = p->w;
        const float *g = p->g;
        const float wd = sn_optim_has_decay(p->name) ? (float)o->cfg.weight_decay : 0.0f;
        if (keras) {
            for (size_t j = 0; j < p->count; j++) {
                const float ge = (g[j] + wd * w[j]) * scale;
                v[j] = m * v[j] - lrf * ge;
                w[j] += v[j];
            }
        } else {
            for (size_t j = 0; j < p->count; j++) {
                const float ge = (g[j] + wd * w[j]) * scale;
                v[j] = m * v[j] + ge;
                w[j] -= lrf * v[j];
            }
        }
    }
    o->step++;
    return SN_OK;
}

int64_t sn_optim_get_step(const sn_optim *o) { return o ? o->step : 0; }

sn_status sn_optim_set_step(sn_optim *o, int64_t step) {
    if (!o) return sn_error(SN_ERR_INVALID_ARG, "sn_optim_set_step: optimizer is NULL");
    if (step < 0)
        return sn_error(SN_ERR_INVALID_ARG, "sn_optim_set_step: step %lld < 0", (long long)step);
    o->step = step;
    return SN_OK;
}

sn_status sn_optim_state_tensors(sn_optim *o, const sn_opt_tensor **tensors, int *n) {
    if (!o || !tensors || !n)
        return sn_error(SN_ERR_INVALID_ARG, "sn_optim_state_tensors: NULL argument");
    *tensors = o->state;
    *n = o->n_state;
    return SN_OK;
}

sn_opt_tensor *sn_optim_state_find(sn_optim *o, const char *name) {
    if (!o || !name) {
        sn_error(SN_ERR_INVALID_ARG, "sn_optim_state_find: NULL argument");
        return NULL;
    }
    for (int i = 0; i < o->n_state; i++)
        if (strcmp(o->state[i].name, name) == 0) return &o->state[i];
    sn_error(SN_ERR_NOT_FOUND, "optimizer state '%s' not found", name);
    return NULL;
}
