/* Backpropagation through the graph (the graph's side of training; the training loop is
 * src/train/): the training plan, which keeps every tensor the backward reads; the forward of
 * the ops that differ from inference (convolutions with batch-norm batch statistics, adds with
 * stochastic depth; the others run sn_graph_run_simple); and the backward pass over the nodes. */
#include <math.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "graph.h"

sn_status sn_graph_plan_train(sn_graph *g) {
    /* Every tensor lives to the end (the backward reads them in reverse), so offsets are simply
     * consecutive; the gradient arena mirrors the node outputs. Gradients, z, the statistics and
     * the scratch are f32 whatever the node's type: the backward computes in f32. */
    size_t off = 0, goff = 0, biggest = 0;
    for (int i = 0; i < g->n; i++) {
        sn_node *nd = &g->nodes[i];
        const size_t f32_bytes = sn_tensor_span(sn_node_elems(nd) * sizeof(float));
        if (f32_bytes > biggest) biggest = f32_bytes;
        nd->off_z = nd->off_stats = SIZE_MAX;
        /* The inference plan's fusions do not apply: every output is written (the shared
         * forward, sn_graph_run_simple, skips an aliased gate), and the backward reads it. */
        nd->fuse_res = nd->alias = nd->in_gate = -1;
        nd->fuse_act = SN_ACT_NONE;
        nd->goff = goff;
        goff += f32_bytes;
        if (nd->op == SN_OP_INPUT) continue;
        int bn = nd->op == SN_OP_CONV && nd->p_gamma >= 0;
        int act = nd->act != SN_ACT_NONE;
        nd->offset = off;
        off += sn_tensor_span(sn_node_bytes(nd));
        if (bn || act) {
            nd->off_z = off; /* conv output (or ADD/DENSE sum) before BN and activation */
            off += f32_bytes;
        }
        if (bn) {
            nd->off_stats = off;
            /* mean and inverse std (2*c floats), then the forward's row count over every
             * process (a double) for the synchronized backward (sync_rows) */
            off += sn_tensor_span(2 * (size_t)nd->c * sizeof(float) + sizeof(double));
        }
        if (nd->drop_rate > 0.0f && !nd->keep) {
            nd->keep = sn_alloc((size_t)nd->n);
            if (!nd->keep) return SN_ERR_OOM;
        }
    }
    sn_free(g->arena);
    sn_free(g->grad_arena);
    sn_free(g->scratch);
    if (!biggest) biggest = SN_TENSOR_ALIGN;
    g->arena = sn_alloc(off ? off : SN_TENSOR_ALIGN);
    g->grad_arena = sn_alloc(goff ? goff : SN_TENSOR_ALIGN);
    g->scratch = sn_alloc(2 * biggest);
    if (!g->arena || !g->grad_arena || !g->scratch) {
        sn_free(g->arena);
        sn_free(g->grad_arena);
        sn_free(g->scratch);
        g->arena = g->grad_arena = g->scratch = NULL;
        g->arena_bytes = g->grad_bytes = g->scratch_bytes = 0;
        return SN_ERR_OOM;
    }
    g->arena_bytes = off;
    g->grad_bytes = goff;
    g->scratch_bytes = biggest;
    g->training = 1;
    g->folded = 0;
    for (int i = 0; i < g->n; i++) {
        sn_free(g->nodes[i].fw);
        sn_free(g->nodes[i].fb);
        g->nodes[i].fw = g->nodes[i].fb = NULL;
    }
    return SN_OK;
}

static float *at(sn_graph *g, size_t off) { return sn_arena_f32(g->arena, off); }

sn_status sn_graph_set_train_profile(sn_graph *g, int on) {
    if (!g) return sn_error(SN_ERR_INVALID_ARG, "sn_graph_set_train_profile: NULL graph");
    sn_free(g->prof_train);
    g->prof_train = NULL;
    g->prof_bwd_setup_sec = 0.0;
    g->prof_train_fwd_runs = g->prof_train_runs = 0;
    if (!on) return SN_OK;
    if (!g->training)
        return sn_error(SN_ERR_STATE, "training profile: plan the graph for training first");
    g->prof_train = sn_calloc((size_t)g->n * SN_PROF_SLOTS, sizeof *g->prof_train);
    return g->prof_train ? SN_OK : SN_ERR_OOM;
}

static double prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Training profile: the seconds since *t go to node i's slot, and *t restarts. Only called when
 * g->prof_train is set (the callers test it, so an unprofiled pass reads no clock). */
static void prof_lap(sn_graph *g, int i, sn_prof_slot slot, double *t) {
    const double now = prof_now();
    g->prof_train[(size_t)i * SN_PROF_SLOTS + slot] += now - *t;
    *t = now;
}

/* The buffer holding a node's value before its activation (not for convs with batch-norm,
 * whose activation input is recomputed from z by the fused backward). */
static float *pre_act(sn_graph *g, const sn_node *nd) {
    if (nd->off_z != SIZE_MAX) return at(g, nd->off_z);
    return at(g, nd->offset);
}

/* Where the synchronized forward keeps the row count of its statistics (all processes), for the
 * backward: after the 2*c floats of mean and inverse std. */
static void *sync_rows(sn_graph *g, const sn_node *nd) {
    return g->arena + nd->off_stats + 2 * (size_t)nd->c * sizeof(float);
}

/* The synchronized batch-norm forward (g->bn_reduce set): local sums, summed over the processes
 * by the hook, the statistics from the global sums (the moving ones updated with them unless
 * keep_moving_stats), then the batch-norm and activation from z into y. */
static sn_status bn_sync_forward(sn_graph *g, sn_paramtab *pt, sn_node *nd, const float *z,
                                 float *y, float bn_momentum, int unbiased_running_var) {
    const size_t rows = (size_t)nd->n * nd->h * nd->w, c = (size_t)nd->c;
    double *buf = sn_alloc((1 + 2 * c) * sizeof(double));
    if (!buf) return SN_ERR_OOM;
    buf[0] = (double)rows;
    sn_batchnorm_sums_f32(rows, nd->c, z, buf + 1, buf + 1 + c, g->nthreads);
    sn_status st = g->bn_reduce(g->bn_reduce_ctx, buf, 1 + 2 * c);
    if (st != SN_OK) {
        sn_free(buf);
        return st;
    }
    const double total = buf[0];
    if (!(total >= 1.0)) {
        sn_free(buf);
        return sn_error(SN_ERR_STATE, "synchronized batch-norm: %g rows in all", total);
    }
    float *stats = at(g, nd->off_stats);
    sn_batchnorm_stats_from_sums_f32(nd->c, total, buf + 1, buf + 1 + c, nd->bn_eps, bn_momentum,
                                     unbiased_running_var,
                                     g->keep_moving_stats ? NULL : pt->t[nd->p_mean].data,
                                     g->keep_moving_stats ? NULL : pt->t[nd->p_var].data, stats,
                                     stats + c);
    memcpy(sync_rows(g, nd), &total, sizeof total);
    sn_free(buf);
    sn_batchnorm_act_apply_f32(rows, nd->c, z, pt->t[nd->p_gamma].data, pt->t[nd->p_beta].data,
                               stats, stats + c, nd->act, y, g->nthreads);
    return SN_OK;
}

/* The synchronized batch-norm backward: the local sums of g and g * xhat (added to dgamma and
 * dbeta, the process's own gradients), summed over the processes by the hook, then dx (into out,
 * assigned) from the global sums and the forward's row count. */
static sn_status bn_sync_backward(sn_graph *g, const sn_paramtab *pt, const sn_node *nd,
                                  const float *dy, float *out, float *dgamma, float *dbeta) {
    const size_t rows = (size_t)nd->n * nd->h * nd->w, c = (size_t)nd->c;
    const float *z = at(g, nd->off_z), *stats = at(g, nd->off_stats);
    const float *gamma = pt->t[nd->p_gamma].data, *beta = pt->t[nd->p_beta].data;
    double total;
    memcpy(&total, sync_rows(g, nd), sizeof total);
    if (!(total >= 1.0))
        return sn_error(SN_ERR_STATE, "synchronized batch-norm backward after an unsynchronized "
                        "forward (set bn_reduce for both)");
    double *buf = sn_alloc(2 * c * sizeof(double));
    if (!buf) return SN_ERR_OOM;
    /* An activation whose derivative costs more than a pass over memory: g is kept in out and
     * read back by the dx pass (as the fused backward does). */
    const int keep = nd->act != SN_ACT_NONE && nd->act != SN_ACT_RELU;
    sn_batchnorm_act_backward_sums_f32(rows, nd->c, z, gamma, beta, stats, stats + c, nd->act, dy,
                                       buf, buf + c, keep ? out : NULL, dgamma, dbeta,
                                       g->nthreads);
    sn_status st = g->bn_reduce(g->bn_reduce_ctx, buf, 2 * c);
    if (st == SN_OK)
        sn_batchnorm_act_backward_dx_f32(rows, nd->c, z, gamma, beta, stats, stats + c,
                                         keep ? SN_ACT_NONE : nd->act, keep ? out : dy, buf,
                                         buf + c, total, out, g->nthreads);
    sn_free(buf);
    return st;
}

/* Convolution (+bias) into z, then batch-norm with the batch's statistics (kept for the backward;
 * the moving ones updated unless keep_moving_stats) and the activation, fused, into y. */
static sn_status conv_train(sn_graph *g, sn_paramtab *pt, int i, float bn_momentum,
                            int unbiased_running_var, double *t_prof) {
    sn_node *nd = &g->nodes[i];
    const sn_node *x = &g->nodes[nd->in[0]];
    float *y = at(g, nd->offset);
    float *z = nd->off_z != SIZE_MAX ? at(g, nd->off_z) : y;
    sn_epilogue ep = {NULL, nd->p_bias >= 0 ? pt->t[nd->p_bias].data : NULL, NULL, SN_ACT_NONE,
                      NULL};
    const size_t rows = (size_t)nd->n * nd->h * nd->w;
    if (nd->p_gamma >= 0 && !g->bn_reduce && !g->bn_plain_stats) {
        /* The convolution takes the batch-norm statistics of each output tile while it is in
         * cache, so the batch-norm's pass over z to take them is saved. */
        const long tile = sn_conv2d_stat_tile(&nd->conv, x->n, nd->h, nd->w);
        const size_t ntiles = (rows + (size_t)tile - 1) / (size_t)tile;
        double *part = sn_alloc(ntiles * 2 * (size_t)nd->c * sizeof(double));
        if (!part) return SN_ERR_OOM;
        sn_status st = sn_conv2d_stats_f32(&nd->conv, x->n, x->h, x->w,
                                           sn_graph_f32(g, nd->in[0]), pt->t[nd->p_weight].data,
                                           &ep, nd->h, nd->w, z, part, g->nthreads);
        if (st == SN_OK) {
            if (g->prof_train) prof_lap(g, i, SN_PROF_FWD_OP, t_prof);
            float *stats = at(g, nd->off_stats);
            sn_batchnorm_act_train_parts_f32(
                rows, nd->c, z, (size_t)tile, part, pt->t[nd->p_gamma].data,
                pt->t[nd->p_beta].data, nd->bn_eps, bn_momentum, unbiased_running_var,
                g->keep_moving_stats ? NULL : pt->t[nd->p_mean].data,
                g->keep_moving_stats ? NULL : pt->t[nd->p_var].data, nd->act, y, stats,
                stats + nd->c, g->nthreads);
        }
        sn_free(part);
        return st;
    }
    sn_status st = sn_conv2d_f32(&nd->conv, x->n, x->h, x->w, sn_graph_f32(g, nd->in[0]),
                                 pt->t[nd->p_weight].data, &ep, nd->h, nd->w, z, g->nthreads);
    if (st != SN_OK) return st;
    if (g->prof_train) prof_lap(g, i, SN_PROF_FWD_OP, t_prof);
    if (nd->p_gamma >= 0 && g->bn_reduce) {
        return bn_sync_forward(g, pt, nd, z, y, bn_momentum, unbiased_running_var);
    } else if (nd->p_gamma >= 0) {
        float *stats = at(g, nd->off_stats);
        sn_batchnorm_act_train_f32(rows, nd->c, z, pt->t[nd->p_gamma].data,
                                   pt->t[nd->p_beta].data, nd->bn_eps, bn_momentum,
                                   unbiased_running_var,
                                   g->keep_moving_stats ? NULL : pt->t[nd->p_mean].data,
                                   g->keep_moving_stats ? NULL : pt->t[nd->p_var].data, nd->act, y,
                                   stats, stats + nd->c, g->nthreads);
    } else if (nd->act != SN_ACT_NONE) {
        sn_act_f32(nd->act, sn_node_elems(nd), z, y, g->nthreads);
    }
    return SN_OK;
}

/* Sum of the inputs into z, the first one through stochastic depth when the node has a rate,
 * then the activation into y. */
static void add_train(sn_graph *g, int i, sn_rng *rng, double *t_prof) {
    sn_node *nd = &g->nodes[i];
    const size_t count = sn_node_elems(nd);
    float *y = at(g, nd->offset);
    float *z = nd->off_z != SIZE_MAX ? at(g, nd->off_z) : y;
    const float *xs[SN_MAX_NODE_INPUTS];
    for (int j = 0; j < nd->n_in; j++) xs[j] = sn_graph_f32(g, nd->in[j]);
    if (nd->drop_rate > 0.0f) {
        /* Stochastic depth: keep each sample's main path with probability 1 - rate, scaled up. */
        for (int k = 0; k < nd->n; k++) nd->keep[k] = sn_rng_uniform(rng) >= (double)nd->drop_rate;
        float *dropped = sn_arena_f32(g->scratch, 0);
        sn_drop_path_f32(nd->n, count / (size_t)nd->n, xs[0], nd->keep, nd->drop_rate, dropped);
        xs[0] = dropped;
    }
    sn_add_f32(nd->n_in, xs, count, SN_ACT_NONE, z, g->nthreads);
    if (g->prof_train) prof_lap(g, i, SN_PROF_FWD_OP, t_prof);
    if (nd->act != SN_ACT_NONE) sn_act_f32(nd->act, count, z, y, g->nthreads);
}

sn_status sn_graph_forward_train(sn_graph *g, sn_paramtab *pt, const float *input,
                                 float bn_momentum, int unbiased_running_var, uint64_t seed) {
    if (!g->training) return sn_error(SN_ERR_STATE, "the graph is not planned for training");
    g->input = input;
    sn_rng rng;
    sn_rng_seed(&rng, seed);
    /* Profiling: each node's time after its op's own lap (a convolution's or an add's) is its
     * batch-norm and activation; a node without that part gets it all as its op. */
    double t_prof = g->prof_train ? prof_now() : 0.0;
    for (int i = 0; i < g->n; i++) {
        sn_node *nd = &g->nodes[i];
        sn_status st = SN_OK;
        switch (nd->op) {
        case SN_OP_INPUT: break;
        case SN_OP_CONV:
            st = conv_train(g, pt, i, bn_momentum, unbiased_running_var, &t_prof);
            break;
        case SN_OP_ADD: add_train(g, i, &rng, &t_prof); break;
        default: st = sn_graph_run_simple(g, pt, i); break;
        }
        if (st != SN_OK) return st;
        if (g->prof_train)
            prof_lap(g, i, nd->op == SN_OP_CONV || nd->op == SN_OP_ADD ? SN_PROF_FWD_NORM
                                                                       : SN_PROF_FWD_OP, &t_prof);
    }
    if (g->prof_train) g->prof_train_fwd_runs++;
    return SN_OK;
}

sn_status sn_graph_backward(sn_graph *g, const sn_paramtab *pt, int out_node, const float *dout,
                            float *const *grads) {
    return sn_graph_backward_multi(g, pt, 1, &out_node, &dout, grads);
}

sn_status sn_graph_backward_multi(sn_graph *g, const sn_paramtab *pt, int n_out,
                                  const int *out_nodes, const float *const *douts,
                                  float *const *grads) {
    if (!g->training) return sn_error(SN_ERR_STATE, "the graph is not planned for training");
    if (n_out < 1 || !out_nodes || !douts)
        return sn_error(SN_ERR_INVALID_ARG, "backward: no output gradient given");
    int last = -1;
    for (int j = 0; j < n_out; j++) {
        if (out_nodes[j] < 0 || out_nodes[j] >= g->n || !douts[j])
            return sn_error(SN_ERR_INVALID_ARG, "backward: output %d: bad node %d or no gradient",
                            j, out_nodes[j]);
        for (int k = 0; k < j; k++)
            if (out_nodes[k] == out_nodes[j])
                return sn_error(SN_ERR_INVALID_ARG, "backward: node %d given twice", out_nodes[j]);
        if (out_nodes[j] > last) last = out_nodes[j];
    }
    double t_prof = g->prof_train ? prof_now() : 0.0;
    memset(g->grad_arena, 0, g->grad_bytes);
    for (int j = 0; j < n_out; j++) {
        const sn_node *on = &g->nodes[out_nodes[j]];
        memcpy(sn_arena_f32(g->grad_arena, on->goff), douts[j], sn_node_elems(on) * sizeof(float));
    }
    float *s0 = sn_arena_f32(g->scratch, 0), *s1 = sn_arena_f32(g->scratch, g->scratch_bytes);
    if (g->prof_train) {
        const double now = prof_now();
        g->prof_bwd_setup_sec += now - t_prof;
        t_prof = now;
    }
    for (int i = last; i >= 0; i--) {
        sn_node *nd = &g->nodes[i];
        if (nd->op == SN_OP_INPUT) continue;
        const sn_node *x = &g->nodes[nd->in[0]];
        const float *xd = sn_graph_f32(g, nd->in[0]);
        float *dy = sn_arena_f32(g->grad_arena, nd->goff);
        float *dx = x->op == SN_OP_INPUT ? NULL : sn_arena_f32(g->grad_arena, x->goff);
        size_t count = sn_node_elems(nd);
        /* Through the trailing activation: dz = dy * act'(pre). */
        const float *dz = dy;
        if (nd->act != SN_ACT_NONE && nd->op != SN_OP_CONV) {
            sn_act_grad_f32(nd->act, count, pre_act(g, nd), dy, s0, g->nthreads);
            dz = s0;
            if (g->prof_train) prof_lap(g, i, SN_PROF_BWD_NORM, &t_prof);
        }
        switch (nd->op) {
        case SN_OP_CONV: {
            const float *d = dy;
            if (nd->p_gamma >= 0 && g->bn_reduce) {
                sn_status st = bn_sync_backward(g, pt, nd, dy, s1,
                                                grads ? grads[nd->p_gamma] : NULL,
                                                grads ? grads[nd->p_beta] : NULL);
                if (st != SN_OK) return st;
                d = s1;
            } else if (nd->p_gamma >= 0) {
                const float *stats = at(g, nd->off_stats);
                sn_batchnorm_act_train_backward_f32(
                    (size_t)nd->n * nd->h * nd->w, nd->c, at(g, nd->off_z), pt->t[nd->p_gamma].data,
                    pt->t[nd->p_beta].data, stats, stats + nd->c, nd->act, dy, s1,
                    grads ? grads[nd->p_gamma] : NULL, grads ? grads[nd->p_beta] : NULL,
                    g->nthreads);
                d = s1;
            } else if (nd->act != SN_ACT_NONE) {
                sn_act_grad_f32(nd->act, count, pre_act(g, nd), dy, s0, g->nthreads);
                d = s0;
            }
            if (g->prof_train) prof_lap(g, i, SN_PROF_BWD_NORM, &t_prof);
            sn_status st = sn_conv2d_backward_f32(
                &nd->conv, x->n, x->h, x->w, xd, pt->t[nd->p_weight].data, nd->h, nd->w, d, dx,
                grads ? grads[nd->p_weight] : NULL,
                grads && nd->p_bias >= 0 ? grads[nd->p_bias] : NULL, g->nthreads);
            if (st != SN_OK) return st;
            break;
        }
        case SN_OP_ADD:
            for (int j = 0; j < nd->n_in; j++) {
                const sn_node *xj = &g->nodes[nd->in[j]];
                if (xj->op == SN_OP_INPUT) continue;
                float *dxj = sn_arena_f32(g->grad_arena, xj->goff);
                if (j == 0 && nd->drop_rate > 0.0f)
                    sn_drop_path_backward_f32(nd->n, count / (size_t)nd->n, dz, nd->keep,
                                              nd->drop_rate, dxj);
                else
                    sn_axpy_f32(count, 1.0f, dz, dxj, g->nthreads);
            }
            break;
        case SN_OP_DENSE:
            sn_dense_backward_f32(x->n, x->c, nd->c, xd, pt->t[nd->p_weight].data, dz, dx,
                                  grads ? grads[nd->p_weight] : NULL,
                                  grads && nd->p_bias >= 0 ? grads[nd->p_bias] : NULL, g->nthreads);
            break;
        case SN_OP_MAXPOOL:
            if (dx)
                sn_maxpool_backward_f32(x->n, x->h, x->w, x->c, nd->pool_k, nd->pool_stride,
                                        nd->pool_pad, nd->h, nd->w, xd, dz, dx, g->nthreads);
            break;
        case SN_OP_UPSAMPLE:
            if (dx)
                sn_upsample_nearest_backward_f32(x->n, x->h, x->w, x->c, nd->up_h, nd->up_w, dz, dx,
                                                 g->nthreads);
            break;
        case SN_OP_RESIZE:
            if (dx)
                sn_resize_nearest_backward_f32(x->n, x->h, x->w, x->c, nd->h, nd->w, dz, dx,
                                               g->nthreads);
            break;
        case SN_OP_GAP:
            if (dx) sn_gap_backward_f32(x->n, x->h * x->w, x->c, dz, dx);
            break;
        case SN_OP_MUL_CHANNEL: {
            const sn_node *gn = &g->nodes[nd->in[1]];
            sn_mul_channel_backward_f32(x->n, x->h * x->w, x->c, xd, sn_graph_f32(g, nd->in[1]),
                                        dz, dx, sn_arena_f32(g->grad_arena, gn->goff),
                                        g->nthreads);
            break;
        }
        case SN_OP_SCALE:
            if (dx) sn_axpy_f32(count, nd->scale, dz, dx, g->nthreads);
            break;
        case SN_OP_INPUT: break;
        }
        if (g->prof_train) prof_lap(g, i, SN_PROF_BWD_OP, &t_prof);
        /* Node i's parameter gradients are added: the caller may start sending them. */
        if (g->grads_ready) {
            sn_status rs = g->grads_ready(g->grads_ready_ctx, i);
            if (rs != SN_OK) return rs;
            /* the hook's own time (starting a send) is not node i's */
            if (g->prof_train) t_prof = prof_now();
        }
    }
    if (g->prof_train) g->prof_train_runs++;
    return SN_OK;
}
