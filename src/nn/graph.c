/* Graph storage, arena planning from tensor lifetimes, batch-norm folding and forward execution. */
#include "graph.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "core.h"

void sn_paramtab_free(sn_paramtab *pt) {
    if (!pt) return;
    for (int i = 0; i < pt->n; i++) {
        sn_free(pt->t[i].name);
        sn_free(pt->t[i].data);
    }
    sn_free(pt->t);
    memset(pt, 0, sizeof *pt);
}

int sn_paramtab_find(const sn_paramtab *pt, const char *name) {
    for (int i = 0; i < pt->n; i++)
        if (strcmp(pt->t[i].name, name) == 0) return i;
    return -1;
}

sn_node sn_node_init(sn_op op) {
    sn_node nd;
    memset(&nd, 0, sizeof nd);
    nd.op = op;
    nd.dtype = SN_DTYPE_F32;
    nd.p_weight = nd.p_bias = -1;
    nd.p_gamma = nd.p_beta = nd.p_mean = nd.p_var = -1;
    nd.act = SN_ACT_NONE;
    nd.scale = 1.0f;
    nd.block = SN_BLOCK_STEM;
    nd.off_z = nd.off_stats = nd.goff = SIZE_MAX;
    return nd;
}

void sn_graph_free(sn_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) {
        sn_free(g->nodes[i].fw);
        sn_free(g->nodes[i].fb);
        sn_free(g->nodes[i].keep);
    }
    sn_free(g->nodes);
    sn_free(g->arena);
    sn_free(g->grad_arena);
    sn_free(g->scratch);
    sn_free(g->prof_sec);
    sn_free(g->prof_train);
    memset(g, 0, sizeof *g);
}

int sn_graph_add(sn_graph *g, const sn_node *node) {
    if (g->n == g->cap) {
        int cap = g->cap ? g->cap * 2 : 256;
        sn_node *p = sn_alloc((size_t)cap * sizeof *p);
        if (!p) return -1;
        if (g->n) memcpy(p, g->nodes, (size_t)g->n * sizeof *p);
        sn_free(g->nodes);
        g->nodes = p;
        g->cap = cap;
    }
    g->nodes[g->n] = *node;
    g->nodes[g->n].fuse_res = -1; /* set by sn_graph_plan's fusion only */
    g->nodes[g->n].alias = -1;
    g->nodes[g->n].in_gate = -1;
    return g->n++;
}

size_t sn_node_elems(const sn_node *nd) {
    return (size_t)nd->n * (size_t)nd->h * (size_t)nd->w * (size_t)nd->c;
}

size_t sn_node_bytes(const sn_node *nd) { return sn_node_elems(nd) * sn_dtype_size(nd->dtype); }

int64_t sn_node_macs(const sn_graph *g, const sn_node *nd) {
    if (nd->op == SN_OP_CONV) {
        const sn_conv_desc *d = &nd->conv;
        return (int64_t)nd->n * nd->h * nd->w * d->cout * d->kh * d->kw * (d->cin / d->groups);
    }
    if (nd->op == SN_OP_DENSE) {
        const sn_node *x = &g->nodes[nd->in[0]];
        return (int64_t)nd->n * x->c * nd->c;
    }
    return 0;
}

/* First-fit placement of live tensors in one arena, in bytes. Blocks are kept sorted by
 * offset. */
typedef struct {
    size_t off, size;
    int node;
} arena_block;

static sn_status plan_arena(sn_graph *g) {
    int n = g->n;
    /* No training plan any more: the forward must not find a z to write (sn_graph_run_simple)
     * and the training calls refuse until sn_graph_plan_train. */
    g->training = 0;
    for (int i = 0; i < n; i++) {
        sn_node *nd = &g->nodes[i];
        nd->off_z = nd->off_stats = nd->goff = SIZE_MAX;
        nd->last_use = i;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < g->nodes[i].n_in; j++) {
            int src = g->nodes[i].in[j];
            if (g->nodes[src].last_use < i) g->nodes[src].last_use = i;
        }
    for (int i = 0; i < n; i++)
        if (g->nodes[i].out_name[0]) g->nodes[i].last_use = n; /* outputs live to the end */
    /* A fused ADD's readers read the convolution's buffer, a fused gate's reader its input's;
     * the gate itself is read by the convolution. */
    for (int i = 0; i < n; i++) {
        const int a = g->nodes[i].alias, q = g->nodes[i].in_gate;
        if (a >= 0 && g->nodes[a].last_use < g->nodes[i].last_use)
            g->nodes[a].last_use = g->nodes[i].last_use;
        if (q >= 0 && g->nodes[q].last_use < i) g->nodes[q].last_use = i;
    }

    arena_block *live = sn_alloc((size_t)(n + 1) * sizeof *live);
    if (!live) return SN_ERR_OOM;
    int n_live = 0;
    size_t high = 0;
    for (int i = 0; i < n; i++) {
        sn_node *nd = &g->nodes[i];
        /* Release tensors whose last reader ran before node i. */
        int k = 0;
        for (int j = 0; j < n_live; j++)
            if (g->nodes[live[j].node].last_use >= i) live[k++] = live[j];
        n_live = k;
        if (nd->op == SN_OP_INPUT) {
            nd->offset = 0;
            continue;
        }
        if (nd->alias >= 0) {
            nd->offset = g->nodes[nd->alias].offset;
            continue;
        }
        /* Round each tensor up to SN_TENSOR_ALIGN so that every tensor starts cache-aligned. */
        size_t size = sn_tensor_span(sn_node_bytes(nd));
        size_t off = 0;
        int pos = 0;
        for (; pos < n_live; pos++) {
            if (live[pos].off >= off + size) break;
            size_t end = live[pos].off + live[pos].size;
            if (end > off) off = end;
        }
        memmove(&live[pos + 1], &live[pos], (size_t)(n_live - pos) * sizeof *live);
        live[pos] = (arena_block){off, size, i};
        n_live++;
        nd->offset = off;
        if (off + size > high) high = off + size;
    }
    sn_free(live);
    if (high > g->arena_bytes || !g->arena) {
        sn_free(g->arena);
        g->arena = sn_alloc(high ? high : SN_TENSOR_ALIGN);
        if (!g->arena) {
            g->arena_bytes = 0;
            return SN_ERR_OOM;
        }
        g->arena_bytes = high;
    }
    return SN_OK;
}

/* Folded weights: w'[..][co] = w[..][co] * s[co], b'[co] = beta + (bias - mean) * s[co],
 * s = gamma / sqrt(var + eps). Computed in double so folding adds no rounding of its own. */
sn_status sn_node_fold_bn(const sn_node *nd, const sn_paramtab *pt, float *fw, float *fb,
                          float *scale) {
    const sn_tensor_param *w = &pt->t[nd->p_weight];
    int cout = nd->conv.cout;
    const float *gamma = pt->t[nd->p_gamma].data, *beta = pt->t[nd->p_beta].data;
    const float *mean = pt->t[nd->p_mean].data, *var = pt->t[nd->p_var].data;
    const float *bias = nd->p_bias >= 0 ? pt->t[nd->p_bias].data : NULL;
    double *s = sn_alloc((size_t)cout * sizeof(double));
    if (!s) return SN_ERR_OOM;
    for (int co = 0; co < cout; co++) {
        s[co] = (double)gamma[co] / sqrt((double)var[co] + (double)nd->bn_eps);
        fb[co] = (float)((double)beta[co] + ((bias ? (double)bias[co] : 0.0) - mean[co]) * s[co]);
        if (scale) scale[co] = (float)s[co];
    }
    size_t rows = fw ? w->count / (size_t)cout : 0;
    for (size_t r = 0; r < rows; r++)
        for (int co = 0; co < cout; co++)
            fw[r * cout + co] = (float)((double)w->data[r * cout + co] * s[co]);
    sn_free(s);
    return SN_OK;
}

static sn_status fold_node(sn_node *nd, const sn_paramtab *pt) {
    nd->fw = sn_alloc(pt->t[nd->p_weight].count * sizeof(float));
    nd->fb = sn_alloc((size_t)nd->conv.cout * sizeof(float));
    if (!nd->fw || !nd->fb) return SN_ERR_OOM;
    return sn_node_fold_bn(nd, pt, nd->fw, nd->fb, NULL);
}

/* Inference: a convolution without activation whose only reader is a 2-input ADD, the ADD's
 * other input computed before it, runs the ADD in its epilogue (residual, then the ADD's
 * activation) on each tile while it is in cache; the ADD's pass over memory disappears. x + y
 * and y + x are the same float, so the results do not change. Not for a convolution whose BN is
 * applied after it (unfolded), nor for a model output. */
static void plan_fusion(sn_graph *g, int fold) {
    const int n = g->n;
    for (int i = 0; i < n; i++) {
        g->nodes[i].fuse_res = -1;
        g->nodes[i].alias = -1;
        g->nodes[i].in_gate = -1;
        g->nodes[i].fuse_act = SN_ACT_NONE;
    }
    /* Squeeze-excitation: conv(x * gate) = conv with weights w[..][ci][co] * gate[ci] (per
     * image), so the gated tensor is never written. Only for a plain convolution (groups 1)
     * that is the gated tensor's only reader; the products round differently, (x * g) * w
     * against x * (g * w), which the golden tests' tolerances cover. */
    for (int i = 0; i < n; i++) {
        sn_node *mul = &g->nodes[i];
        if (mul->op != SN_OP_MUL_CHANNEL || mul->out_name[0] ||
            g->nodes[mul->in[0]].op == SN_OP_INPUT)
            continue;
        int readers = 0, reader = -1;
        for (int r = 0; r < n; r++)
            for (int k = 0; k < g->nodes[r].n_in; k++)
                if (g->nodes[r].in[k] == i) readers++, reader = r;
        if (readers != 1) continue;
        sn_node *cv = &g->nodes[reader];
        if (cv->op != SN_OP_CONV || cv->in[0] != i || cv->conv.groups != 1) continue;
        cv->in_gate = mul->in[1];
        mul->alias = mul->in[0];
    }
    for (int i = 0; i < n; i++) {
        sn_node *add = &g->nodes[i];
        if (add->op != SN_OP_ADD || add->n_in != 2) continue;
        for (int q = 0; q < 2; q++) {
            const int j = add->in[q], o = add->in[1 - q];
            sn_node *cv = &g->nodes[j];
            if (cv->op != SN_OP_CONV || cv->act != SN_ACT_NONE || cv->out_name[0] || o >= j ||
                cv->fuse_res >= 0 || (cv->p_gamma >= 0 && !fold))
                continue;
            int readers = 0;
            for (int r = 0; r < n; r++)
                for (int k = 0; k < g->nodes[r].n_in; k++) readers += g->nodes[r].in[k] == j;
            if (readers != 1) continue;
            cv->fuse_res = o;
            cv->fuse_act = add->act;
            add->alias = j;
            break;
        }
    }
}

sn_status sn_graph_plan(sn_graph *g, const sn_paramtab *pt, int fold) {
    plan_fusion(g, fold);
    sn_status st = plan_arena(g);
    if (st != SN_OK) return st;
    g->folded = fold;
    for (int i = 0; i < g->n; i++) {
        sn_node *nd = &g->nodes[i];
        sn_free(nd->fw);
        sn_free(nd->fb);
        nd->fw = nd->fb = NULL;
        if (fold && nd->op == SN_OP_CONV && nd->p_gamma >= 0) {
            st = fold_node(nd, pt);
            if (st != SN_OK) return st;
        }
    }
    return SN_OK;
}

const float *sn_graph_f32(const sn_graph *g, int node) {
    const sn_node *nd = &g->nodes[node];
    if (nd->op == SN_OP_INPUT) return g->input;
    return sn_arena_f32(g->arena, nd->offset);
}

static float *out_ptr(sn_graph *g, int node) {
    return sn_arena_f32(g->arena, g->nodes[node].offset);
}

static sn_status run_conv(sn_graph *g, const sn_paramtab *pt, int i) {
    sn_node *nd = &g->nodes[i];
    const sn_node *x = &g->nodes[nd->in[0]];
    float *y = out_ptr(g, i);
    sn_epilogue ep = {NULL, NULL, NULL, SN_ACT_NONE, NULL};
    const float *wt = pt->t[nd->p_weight].data;
    int bn_after = 0;
    if (nd->fw) {
        wt = nd->fw;
        ep.shift = nd->fb;
        ep.act = nd->act;
    } else {
        ep.shift = nd->p_bias >= 0 ? pt->t[nd->p_bias].data : NULL;
        if (nd->p_gamma >= 0)
            bn_after = 1;
        else
            ep.act = nd->act;
    }
    if (nd->fuse_res >= 0) {
        ep.residual = sn_graph_f32(g, nd->fuse_res);
        ep.act = nd->fuse_act;
    }
    if (nd->in_gate >= 0) ep.in_scale = sn_graph_f32(g, nd->in_gate);
    sn_status st = sn_conv2d_f32(&nd->conv, x->n, x->h, x->w, sn_graph_f32(g, nd->in[0]), wt, &ep,
                                 nd->h, nd->w, y, g->nthreads);
    if (st != SN_OK) return st;
    if (bn_after) {
        size_t rows = (size_t)nd->n * nd->h * nd->w;
        sn_batchnorm_f32(rows, nd->c, y, pt->t[nd->p_gamma].data, pt->t[nd->p_beta].data,
                         pt->t[nd->p_mean].data, pt->t[nd->p_var].data, nd->bn_eps, y, g->nthreads);
        if (nd->act != SN_ACT_NONE) sn_act_f32(nd->act, rows * (size_t)nd->c, y, y, g->nthreads);
    }
    return SN_OK;
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

sn_status sn_graph_run_simple(sn_graph *g, const sn_paramtab *pt, int i) {
    sn_node *nd = &g->nodes[i];
    const sn_node *x = &g->nodes[nd->in[0]];
    const float *xd = sn_graph_f32(g, nd->in[0]);
    float *y = out_ptr(g, i);
    const size_t count = sn_node_elems(nd);
    switch (nd->op) {
    case SN_OP_INPUT:
    case SN_OP_CONV:
    case SN_OP_ADD:
        return sn_error(SN_ERR_STATE, "node %d (%s): its forward is not the same in inference "
                        "and training; its caller runs it", i, sn_op_name(nd->op));
    case SN_OP_MAXPOOL:
        sn_maxpool_f32(x->n, x->h, x->w, x->c, nd->pool_k, nd->pool_stride, nd->pool_pad, nd->h,
                       nd->w, xd, y, g->nthreads);
        break;
    case SN_OP_UPSAMPLE:
        sn_upsample_nearest_f32(x->n, x->h, x->w, x->c, nd->up_h, nd->up_w, xd, y, g->nthreads);
        break;
    case SN_OP_RESIZE:
        sn_resize_nearest_f32(x->n, x->h, x->w, x->c, nd->h, nd->w, xd, y, g->nthreads);
        break;
    case SN_OP_GAP: sn_gap_f32(x->n, x->h * x->w, x->c, xd, y, g->nthreads); break;
    case SN_OP_DENSE: {
        /* The training plan keeps the sum before the activation (off_z) for the backward; the
         * inference plan has none and activates in place. */
        float *z = nd->off_z != SIZE_MAX ? sn_arena_f32(g->arena, nd->off_z) : y;
        sn_dense_f32(x->n, x->c, nd->c, xd, pt->t[nd->p_weight].data,
                     nd->p_bias >= 0 ? pt->t[nd->p_bias].data : NULL, z, g->nthreads);
        if (nd->act != SN_ACT_NONE) sn_act_f32(nd->act, count, z, y, g->nthreads);
        break;
    }
    case SN_OP_MUL_CHANNEL:
        if (nd->alias >= 0) break; /* applied to the next convolution's weights (inference) */
        sn_mul_channel_f32(x->n, x->h * x->w, x->c, xd, sn_graph_f32(g, nd->in[1]), y,
                           g->nthreads);
        break;
    case SN_OP_SCALE: sn_scale_f32(count, xd, nd->scale, y); break;
    }
    return SN_OK;
}

sn_status sn_graph_run(sn_graph *g, const sn_paramtab *pt, const float *input) {
    g->input = input;
    double t_prev = g->prof_sec ? seconds_now() : 0.0;
    for (int i = 0; i < g->n; i++) {
        sn_node *nd = &g->nodes[i];
        sn_status st = SN_OK;
        switch (nd->op) {
        case SN_OP_INPUT: break;
        case SN_OP_CONV: st = run_conv(g, pt, i); break;
        case SN_OP_ADD: {
            if (nd->alias >= 0) break; /* done by the convolution's epilogue */
            const float *xs[SN_MAX_NODE_INPUTS];
            for (int j = 0; j < nd->n_in; j++) xs[j] = sn_graph_f32(g, nd->in[j]);
            sn_add_f32(nd->n_in, xs, sn_node_elems(nd), nd->act, out_ptr(g, i), g->nthreads);
            break;
        }
        default: st = sn_graph_run_simple(g, pt, i); break;
        }
        if (st != SN_OK) return st;
        if (g->prof_sec) {
            const double t = seconds_now();
            g->prof_sec[i] += t - t_prev;
            t_prev = t;
        }
    }
    if (g->prof_sec) g->prof_runs++;
    return SN_OK;
}
