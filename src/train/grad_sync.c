/* grad_sync.c: the parameter gradients summed over the job's processes in buckets started while
 * the backward runs (grad_sync.h).
 *
 * The plan, made once from the training graph: parameter p's gradient is complete once the
 * backward has called back the lowest-numbered node that reads it (ready[p]; the backward runs
 * the nodes in reverse order). The parameters, sorted by ready node from last to first, are
 * packed into buckets of about bucket_bytes; a bucket may start once its last parameter is
 * complete (its ready node). Every rank builds the same graph, so every rank makes the same
 * buckets and starts them in the same order, as MPI's collectives require.
 *
 * Each step: at each callback, the buckets whose ready node has been reached are packed (copied
 * into the bucket's buffer; a one-parameter bucket is summed in place) and started
 * (sn_dist_isum_f32), and the oldest outstanding one is tested, since MPI progresses only inside
 * its calls. sn_grad_sync_end starts the rest, waits for all, unpacks and scales. With one
 * process there is nothing to sum: no hook is installed and the end only scales. Nor is the hook
 * installed when the training plan splits the batch into parts inside the process (replicas > 1:
 * the parts' gradients are added together only after the last part's backward); then every
 * bucket starts at the end. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "dist.h"
#include "grad_sync.h"
#include "model_train.h"

typedef struct {
    int first, count;   /* its parameters: order[first .. first + count) */
    size_t n;           /* floats */
    int ready;          /* the node after whose callback it may start; -1: only at the end */
    float *buf;         /* the packed gradients (owned), or the one parameter's own buffer */
    int owned;
    sn_dist_req *req;   /* while summing */
} bucket;

struct sn_grad_sync {
    sn_graph *g;        /* the graph whose hook is ours, or NULL */
    float **grads;      /* [np], the caller's buffers */
    size_t *count;      /* [np] floats of each parameter */
    int np;
    int *order;         /* the summed parameters, in the order they complete */
    int n_order;
    bucket *b;
    int nb;
    int ranks;
    /* the step */
    int next;           /* the first bucket not started */
    int oldest;         /* the first bucket maybe still outstanding */
    double t_first, t_done;
    sn_status err;      /* of a start or test inside the callback */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static sn_status start_bucket(sn_grad_sync *s, int k) {
    bucket *b = &s->b[k];
    if (b->owned) {
        float *p = b->buf;
        for (int j = 0; j < b->count; j++) {
            const int i = s->order[b->first + j];
            memcpy(p, s->grads[i], s->count[i] * sizeof(float));
            p += s->count[i];
        }
    }
    if (k == 0) s->t_first = now_s();
    return sn_dist_isum_f32(b->buf, b->n, &b->req);
}

/* Test the oldest outstanding buckets, in order, while they are done. */
static sn_status poll(sn_grad_sync *s) {
    while (s->oldest < s->next) {
        sn_status st = SN_OK;
        if (!sn_dist_test(&s->b[s->oldest].req, &st)) break;
        if (st != SN_OK) return st;
        s->t_done = now_s();
        s->oldest++;
    }
    return SN_OK;
}

static sn_status on_grads_ready(void *ctx, int node) {
    sn_grad_sync *s = ctx;
    if (s->err != SN_OK) return s->err;
    sn_status st = SN_OK;
    while (st == SN_OK && s->next < s->nb && s->b[s->next].ready >= node)
        if ((st = start_bucket(s, s->next)) == SN_OK) s->next++;
    if (st == SN_OK) st = poll(s);
    s->err = st;
    return st;
}

/* Parameters by ready node, last first; ties by index. */
typedef struct {
    int ready, index;
} param_key;

static int by_ready(const void *a, const void *b) {
    const param_key *x = a, *y = b;
    if (x->ready != y->ready) return x->ready > y->ready ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

sn_status sn_grad_sync_create(sn_model *m, float *const *grads, size_t bucket_bytes,
                              sn_grad_sync **out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_grad_sync_create: NULL output");
    *out = NULL;
    if (!m || !grads) return sn_error(SN_ERR_INVALID_ARG, "sn_grad_sync_create: NULL argument");
    if (!m->planned || !m->graph.training)
        return sn_error(SN_ERR_STATE, "sn_grad_sync_create: plan the model for training first");
    if (bucket_bytes < sizeof(float)) bucket_bytes = sizeof(float);
    sn_grad_sync *s = sn_calloc(1, sizeof *s);
    if (!s) return SN_ERR_OOM;
    const int np = m->params.n;
    s->np = np;
    s->ranks = sn_dist_size();
    s->err = SN_OK;
    s->grads = sn_calloc((size_t)np + 1, sizeof *s->grads);
    s->count = sn_calloc((size_t)np + 1, sizeof *s->count);
    s->order = sn_calloc((size_t)np + 1, sizeof *s->order);
    s->b = sn_calloc((size_t)np + 1, sizeof *s->b);
    int *ready = sn_calloc((size_t)np + 1, sizeof *ready);
    param_key *keys = sn_calloc((size_t)np + 1, sizeof *keys);
    if (!s->grads || !s->count || !s->order || !s->b || !ready || !keys) goto oom;
    for (int i = 0; i < np; i++) {
        s->grads[i] = grads[i];
        s->count[i] = m->params.t[i].count;
        ready[i] = INT_MAX;
    }
    if (s->ranks > 1) {
        /* ready[p]: the lowest node reading p, -1 when none does (summed at the end). */
        sn_graph *g = sn_model_part_graph(m, 0);
        for (int k = 0; k < g->n; k++) {
            const sn_node *nd = &g->nodes[k];
            const int ps[4] = {nd->p_weight, nd->p_bias, nd->p_gamma, nd->p_beta};
            for (int j = 0; j < 4; j++)
                if (ps[j] >= 0 && ps[j] < np && k < ready[ps[j]]) ready[ps[j]] = k;
        }
        int nk = 0;
        for (int i = 0; i < np; i++) {
            if (ready[i] == INT_MAX) ready[i] = -1;
            if (grads[i] && s->count[i] > 0) keys[nk++] = (param_key){ready[i], i};
        }
        qsort(keys, (size_t)nk, sizeof *keys, by_ready);
        for (int j = 0; j < nk; j++) s->order[j] = keys[j].index;
        s->n_order = nk;
        /* Buckets of about bucket_bytes, in that order. */
        for (int j = 0; j < s->n_order; j++) {
            const int i = s->order[j];
            bucket *b = &s->b[s->nb];
            if (b->count == 0) b->first = j;
            b->count++;
            b->n += s->count[i];
            b->ready = ready[i];
            if (b->n * sizeof(float) >= bucket_bytes || j == s->n_order - 1) s->nb++;
        }
        for (int k = 0; k < s->nb; k++) {
            bucket *b = &s->b[k];
            if (b->count == 1) {
                b->buf = s->grads[s->order[b->first]];
            } else {
                if (!(b->buf = sn_alloc(b->n * sizeof(float)))) goto oom;
                b->owned = 1;
            }
        }
        /* Split into parts inside the process, part 0's backward alone does not complete a
         * gradient: no hook then. */
        if (sn_model_train_parts(m) == 1) {
            s->g = g;
            g->grads_ready = on_grads_ready;
            g->grads_ready_ctx = s;
        }
    }
    sn_free(ready);
    sn_free(keys);
    *out = s;
    return SN_OK;
oom:
    sn_free(ready);
    sn_free(keys);
    sn_grad_sync_free(s);
    return SN_ERR_OOM;
}

/* Wait for whatever is still outstanding; the first error. */
static sn_status drain(sn_grad_sync *s) {
    sn_status first = SN_OK;
    for (int k = 0; k < s->nb; k++)
        if (s->b[k].req) {
            sn_status st = sn_dist_wait(&s->b[k].req);
            if (first == SN_OK) first = st;
        }
    return first;
}

void sn_grad_sync_begin(sn_grad_sync *s) {
    if (!s) return;
    drain(s); /* after a failed step only */
    s->next = s->oldest = 0;
    s->t_first = s->t_done = 0.0;
    s->err = SN_OK;
}

sn_status sn_grad_sync_end(sn_grad_sync *s, float scale, sn_grad_sync_stats *stats) {
    if (!s) return sn_error(SN_ERR_INVALID_ARG, "sn_grad_sync_end: NULL");
    if (stats) memset(stats, 0, sizeof *stats);
    sn_status st = s->err;
    if (s->ranks > 1 && st == SN_OK) {
        const double t0 = now_s();
        while (st == SN_OK && s->next < s->nb)
            if ((st = start_bucket(s, s->next)) == SN_OK) s->next++;
        const int pending = s->oldest < s->next;
        for (; st == SN_OK && s->oldest < s->next; s->oldest++)
            st = sn_dist_wait(&s->b[s->oldest].req);
        const double t1 = now_s();
        if (pending) s->t_done = t1; /* else the last test saw the last bucket done */
        if (stats) {
            stats->wait_s = t1 - t0;
            stats->comm_s = s->nb > 0 ? s->t_done - s->t_first : 0.0;
            stats->buckets = s->nb;
            for (int k = 0; k < s->nb; k++) stats->bytes += (double)s->b[k].n * sizeof(float);
        }
    }
    if (st != SN_OK) {
        drain(s);
        s->next = s->oldest = 0;
        s->err = SN_OK;
        return st;
    }
    /* The next step starts afresh, with or without sn_grad_sync_begin. */
    s->next = s->oldest = 0;
    /* Unpack (scaling), or scale in place. */
    if (s->ranks > 1) {
        for (int k = 0; k < s->nb; k++) {
            const bucket *b = &s->b[k];
            const float *p = b->buf;
            for (int j = 0; j < b->count; j++) {
                const int i = s->order[b->first + j];
                float *gd = s->grads[i];
                const size_t n = s->count[i];
                if (!b->owned) {
                    if (scale != 1.0f)
                        for (size_t e = 0; e < n; e++) gd[e] *= scale;
                } else if (scale != 1.0f) {
                    for (size_t e = 0; e < n; e++) gd[e] = p[e] * scale;
                } else {
                    memcpy(gd, p, n * sizeof(float));
                }
                p += n;
            }
        }
    } else if (scale != 1.0f) {
        for (int i = 0; i < s->np; i++)
            if (s->grads[i])
                for (size_t e = 0; e < s->count[i]; e++) s->grads[i][e] *= scale;
    }
    return SN_OK;
}

void sn_grad_sync_free(sn_grad_sync *s) {
    if (!s) return;
    if (s->b) drain(s);
    if (s->g && s->g->grads_ready_ctx == s) {
        s->g->grads_ready = NULL;
        s->g->grads_ready_ctx = NULL;
    }
    if (s->b)
        for (int k = 0; k < s->nb; k++)
            if (s->b[k].owned) sn_free(s->b[k].buf);
    sn_free(s->b);
    sn_free(s->order);
    sn_free(s->count);
    sn_free(s->grads);
    sn_free(s);
}
