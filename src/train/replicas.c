/* Data-parallel training inside one process (see sn_model.replicas in model.h), and the model's
 * training plan, which splits the batch into those parts.
 *
 * Why: the kernels split each op over the threads, and a small model's ops are too small for
 * that to pay: Mobile-49XS detection training at 256 px ran 1.5-1.7x faster on 2 threads than on
 * 1, while two single-threaded runs side by side ran 2x. Giving each thread its own part of the
 * batch, through its own graph, turns the second case into one training run. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core.h"
#include "model.h"
#include "model_train.h"

#ifdef _OPENMP
#include <omp.h>
#endif

sn_status sn_model_set_train_replicas(sn_model *m, int r) {
    if (!m) return sn_error(SN_ERR_INVALID_ARG, "sn_model_set_train_replicas: NULL model");
    if (r < 1 || r > SN_MAX_REPLICAS)
        return sn_error(SN_ERR_INVALID_ARG, "replicas %d: expected 1 .. %d", r, SN_MAX_REPLICAS);
    if (r != (m->replicas > 1 ? m->replicas : 1) && m->planned && m->graph.training) {
        /* The graphs of the old split no longer fit: plan again before training. */
        sn_model_free_parts(m);
        m->planned = 0;
    }
    m->replicas = r;
    return SN_OK;
}

sn_status sn_model_set_train_sync_bn(sn_model *m, int on) {
    if (!m) return sn_error(SN_ERR_INVALID_ARG, "sn_model_set_train_sync_bn: NULL model");
    if ((on != 0) != m->sync_parts && m->planned && m->graph.training) {
        sn_model_free_parts(m);
        m->planned = 0;
    }
    m->sync_parts = on != 0;
    return SN_OK;
}

/* The parts' synchronized batch-norm: each part's bn_reduce hands its buffer over, waits for
 * every part, adds the parts' buffers in part order into its own copy, waits again (no part may
 * overwrite its buffer while another still reads it), and writes the sum back. A part that
 * fails breaks the barrier, so that the others return instead of waiting for it. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int parts, arrived, broken;
    unsigned gen;
    double *buf[SN_MAX_REPLICAS];
    size_t n[SN_MAX_REPLICAS];
    struct psync_slot {
        void *sync;
        int r;
    } slot[SN_MAX_REPLICAS];
} psync;

static int psync_wait(psync *s) {
    pthread_mutex_lock(&s->mu);
    const unsigned gen = s->gen;
    if (!s->broken && ++s->arrived == s->parts) {
        s->arrived = 0;
        s->gen++;
        pthread_cond_broadcast(&s->cv);
    } else {
        while (gen == s->gen && !s->broken) pthread_cond_wait(&s->cv, &s->mu);
    }
    const int broken = s->broken;
    pthread_mutex_unlock(&s->mu);
    return broken ? -1 : 0;
}

static void psync_break(psync *s) {
    pthread_mutex_lock(&s->mu);
    s->broken = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static sn_status psync_reduce(void *ctx, double *buf, size_t n) {
    struct psync_slot *slot = ctx;
    psync *s = slot->sync;
    s->buf[slot->r] = buf;
    s->n[slot->r] = n;
    if (psync_wait(s)) return sn_error(SN_ERR_STATE, "synchronized batch-norm: another part failed");
    for (int q = 0; q < s->parts; q++)
        if (s->n[q] != n) {
            psync_break(s);
            return sn_error(SN_ERR_STATE, "synchronized batch-norm: parts %d and %d reduce %zu "
                            "and %zu values", slot->r, q, n, s->n[q]);
        }
    double *sum = sn_alloc(n * sizeof *sum);
    if (!sum) {
        psync_break(s);
        return sn_error(SN_ERR_OOM, "synchronized batch-norm: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        double a = s->buf[0][i];
        for (int q = 1; q < s->parts; q++) a += s->buf[q][i];
        sum[i] = a;
    }
    int broken = psync_wait(s);
    if (!broken) memcpy(buf, sum, n * sizeof *sum);
    sn_free(sum);
    return broken ? sn_error(SN_ERR_STATE, "synchronized batch-norm: another part failed") : SN_OK;
}

static void psync_free(void *p) {
    psync *s = p;
    if (!s) return;
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    sn_free(s);
}

/* The shared state and each part graph's hook (after the parts' graphs were planned). */
static sn_status psync_install(sn_model *m) {
    psync *s = sn_calloc(1, sizeof *s);
    if (!s) return SN_ERR_OOM;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        sn_free(s);
        return sn_error(SN_ERR_OOM, "synchronized batch-norm: no mutex");
    }
    if (pthread_cond_init(&s->cv, NULL) != 0) {
        pthread_mutex_destroy(&s->mu);
        sn_free(s);
        return sn_error(SN_ERR_OOM, "synchronized batch-norm: no condition variable");
    }
    s->parts = m->parts;
    m->psync = s;
    m->psync_free = psync_free;
    for (int r = 0; r < m->parts; r++) {
        s->slot[r].sync = s;
        s->slot[r].r = r;
        sn_graph *g = sn_model_part_graph(m, r);
        g->bn_reduce = psync_reduce;
        g->bn_reduce_ctx = &s->slot[r];
    }
    return SN_OK;
}

int sn_model_train_parts(const sn_model *m) { return m && m->parts > 1 ? m->parts : 1; }

sn_graph *sn_model_part_graph(sn_model *m, int r) { return r == 0 ? &m->graph : &m->rgraph[r - 1]; }

/* Build (or free, when not split) the graphs of parts 1.. after m->graph was planned for
 * training at the part's batch. */
static sn_status plan_parts(sn_model *m, int part_batch, int height, int width) {
    sn_model_free_parts(m);
    m->graph.keep_moving_stats = 0;
    if (m->replicas <= 1) return SN_OK;
    m->graph.nthreads = 1;
    m->rgraph = sn_calloc((size_t)(m->replicas - 1), sizeof *m->rgraph);
    if (!m->rgraph) return SN_ERR_OOM;
    m->parts = m->replicas;
    for (int r = 1; r < m->parts; r++) {
        sn_graph *g = &m->rgraph[r - 1];
        sn_status st = sn_build_graph(m, part_batch, height, width, 0, g);
        if (st == SN_OK) st = sn_graph_plan_train(g);
        if (st != SN_OK) {
            sn_model_free_parts(m);
            return st;
        }
        g->nthreads = 1;
        g->keep_moving_stats = 1;
    }
    if (m->sync_parts) {
        sn_status st = psync_install(m);
        if (st != SN_OK) {
            sn_model_free_parts(m);
            return st;
        }
    }
    return SN_OK;
}

sn_status sn_model_plan_train(sn_model *m, int batch, int height, int width) {
    if (!m) return sn_error(SN_ERR_INVALID_ARG, "sn_model_plan_train: NULL model");
    if (m->cfg.head != SN_HEAD_CLASSIFIER && m->cfg.head != SN_HEAD_RETINANET)
        return sn_error(SN_ERR_UNSUPPORTED,
                        "training needs a head (classifier or retinanet), this model has none");
    sn_model_free_parts(m);
    sn_graph_free(&m->graph);
    m->planned = 0;
    const int parts = m->replicas > 1 ? m->replicas : 1;
    if (batch < 1 || batch % parts != 0)
        return sn_error(SN_ERR_INVALID_ARG, "batch %d cannot be split into %d equal parts (the "
                        "replicas): use a multiple of %d", batch, parts, parts);
    sn_status st = sn_build_graph(m, batch / parts, height, width, 0, &m->graph);
    if (st == SN_OK) st = sn_graph_plan_train(&m->graph);
    if (st != SN_OK) {
        sn_graph_free(&m->graph);
        return st;
    }
    m->graph.nthreads = m->nthreads;
    if ((st = plan_parts(m, batch / parts, height, width)) != SN_OK) {
        sn_graph_free(&m->graph);
        return st;
    }
    m->planned = 1;
    return SN_OK;
}

int sn_model_train_batch(const sn_model *m) {
    if (!m || !m->planned || !m->graph.training) return 0;
    return m->graph.nodes[0].n * sn_model_train_parts(m);
}

const float *sn_model_train_logits(sn_model *m, int i) {
    const int per = m->graph.nodes[0].n;
    sn_graph *g = sn_model_part_graph(m, i / per);
    const int out = g->n - 1;
    return sn_graph_f32(g, out) + (size_t)(i % per) * (size_t)g->nodes[out].c;
}

uint64_t sn_part_seed(uint64_t seed, int r) {
    return r == 0 ? seed : seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)r);
}

/* view[(r - 1) * np + i]: part r's zeroed buffer for parameter i where the caller wants that
 * gradient (grads[i] != NULL), else NULL. The buffers are the model's, kept across calls. */
static sn_status part_grads(sn_model *m, float *const *grads, float **view) {
    const int np = m->params.n, parts = m->parts;
    if (!m->rgrad) {
        m->rgrad = sn_calloc((size_t)(parts - 1) * (size_t)np, sizeof *m->rgrad);
        if (!m->rgrad) return SN_ERR_OOM;
        m->rgrad_n = (parts - 1) * np;
    }
    for (int r = 1; r < parts; r++)
        for (int i = 0; i < np; i++) {
            float **slot = &m->rgrad[(size_t)(r - 1) * np + i];
            view[(size_t)(r - 1) * np + i] = NULL;
            if (!grads[i]) continue;
            const size_t bytes = m->params.t[i].count * sizeof(float);
            if (!*slot && !(*slot = sn_alloc(bytes))) return SN_ERR_OOM;
            memset(*slot, 0, bytes);
            view[(size_t)(r - 1) * np + i] = *slot;
        }
    return SN_OK;
}

sn_status sn_model_run_parts(sn_model *m, float *const *grads, sn_part_fn fn, void *user) {
    const int parts = sn_model_train_parts(m);
    if (parts == 1) return fn(m, 0, grads, user);
    const int np = m->params.n;
    float **view = NULL;
    if (grads) {
        if (!(view = sn_alloc((size_t)(parts - 1) * (size_t)np * sizeof *view))) return SN_ERR_OOM;
        sn_status st = part_grads(m, grads, view);
        if (st != SN_OK) {
            sn_free(view);
            return st;
        }
    }
    sn_status status[SN_MAX_REPLICAS];
    char msg[SN_MAX_REPLICAS][256];
    psync *sync = m->psync;
    if (sync) {
        sync->arrived = 0;
        sync->broken = 0;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(parts)
    {
        /* Synchronized parts wait for each other: one thread each, or none runs. */
        const int together = !sync || omp_get_num_threads() == parts;
        for (int r = omp_get_thread_num(); r < parts; r += omp_get_num_threads()) {
#else
    {
        const int together = !sync;
        for (int r = 0; r < parts; r++) {
#endif
            msg[r][0] = 0;
            if (!together) {
                status[r] = SN_ERR_STATE;
                snprintf(msg[r], sizeof msg[r], "synchronized batch-norm over %d parts needs %d "
                         "threads at once (OpenMP gave fewer)", parts, parts);
                continue;
            }
            status[r] = fn(m, r, r == 0 || !view ? grads : view + (size_t)(r - 1) * np, user);
            if (status[r] != SN_OK) {
                snprintf(msg[r], sizeof msg[r], "%s", sn_last_error());
                if (sync) psync_break(sync);
            }
        }
    }
    /* The first failure's own message (a synchronized part that only saw another fail says
     * so, and comes after it). */
    for (int pass = 0; pass < 2; pass++)
        for (int r = 0; r < parts; r++)
            if (status[r] != SN_OK &&
                (pass || !strstr(msg[r], "synchronized batch-norm: another part failed"))) {
                sn_free(view);
                return sn_error(status[r], "%s", msg[r]);
            }
    if (!grads) return SN_OK;
    /* grads += part 1 + part 2 + ..., element by element in part order, so the sum does not
     * depend on the thread count. */
#ifdef _OPENMP
#pragma omp parallel for num_threads(parts) schedule(dynamic, 1)
#endif
    for (int i = 0; i < np; i++) {
        if (!grads[i]) continue;
        float *acc = grads[i];
        const size_t count = m->params.t[i].count;
        for (int r = 1; r < parts; r++) {
            const float *src = view[(size_t)(r - 1) * np + i];
            for (size_t k = 0; k < count; k++) acc[k] += src[k];
        }
    }
    sn_free(view);
    return SN_OK;
}
