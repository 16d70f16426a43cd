/* tf_names_garden.c: the TF2 Model Garden checkpoint key of every parameter (tf_names.h).
 *
 * What the keys are, and the code each rule comes from (tensorflow/models official/, Keras 2 /
 * tf_keras, TensorFlow's object-based checkpointing; facts read from that code, nothing copied):
 *
 * 1. The checkpoint root. official/core/base_trainer.py Trainer.__init__ saves
 *      tf.train.Checkpoint(global_step=, model=, optimizer=, **model.checkpoint_items)
 *    and official/vision/modeling/retinanet_model.py RetinaNetModel.checkpoint_items is
 *    {backbone, head (, decoder when not None)}. A variable's key is its SHORTEST object path
 *    from the root (TensorFlow graph_view breadth-first traversal, first path found wins), so the
 *    backbone's variables are "backbone/..." and the head's "head/..." (not "model/_backbone/...",
 *    one level deeper). Every key ends in "/.ATTRIBUTES/VARIABLE_VALUE". The SpineNet decoder is
 *    'identity' (no weights), so there is no "decoder/" key.
 *
 * 2. The backbone is a Keras functional model (backbones/spinenet.py SpineNet and
 *    spinenet_mobile.py SpineNetMobile call tf.keras.Model.__init__(inputs=, outputs=endpoints)).
 *    keras/engine/functional.py Functional._layer_checkpoint_dependencies names the layers of
 *    model.layers "layer-<i>" and, for a layer with weights, first "layer_with_weights-<k>" (k
 *    counts only layers with weights), so a backbone key is
 *      backbone/layer_with_weights-<k>/<variable path inside the layer>.
 *    model.layers is the order of functional.py _map_graph_network: the graph is walked depth
 *    first from the outputs (tf.nest.flatten of the endpoint dict: keys "3".."7" sorted, "2"
 *    first with P2), each layer numbered when first reached (pre-order, inputs in call order);
 *    a node's depth is the longest path from it to an output (a layer with no consumer: 0);
 *    layers are sorted by depth, deepest (nearest the input) first, ties by that number. Layers
 *    not reached from an output (the Garden's level-2 row when min_level is 3) are not in the
 *    model. Every layer counts for the depth, also those without weights: each raw TF op on a
 *    Keras tensor is its own TFOpLambda layer (tf.identity naming a block group, tf.add_n
 *    fusing the parents, tf.nn.relu / tf.nn.swish through tf_utils.get_activation, and the 8
 *    ops of ops/spatial_transform_ops.py nearest_upsampling: tf.shape, shape[1], shape[2],
 *    reshape(x, h, w), tile (older: * ones), h * scale, w * scale, reshape).
 *    This file rebuilds that graph from the block-spec table with the Garden's rules, and numbers
 *    it the same way:
 *      SpineNet: stem Conv2D, BatchNormalization, act, MaxPool2D; each block group: the blocks,
 *        then tf.identity; each resampling (_resample_with_alpha): Conv2D, BN, act, [Conv2D s2,
 *        BN, act, MaxPool2D x (levels - 1) | nearest_upsampling], Conv2D, BN; each row: its two
 *        resamplings, tf.add_n([x0, x1, zero-out-degree features of the same width and channels
 *        when the row is an output]), act, block group; endpoints: Conv2D, BN, act.
 *      Mobile: stem Conv2D, BN, Activation layer; block group: InvertedBottleneckBlock, then
 *        Activation('linear'); resampling (_resample_with_sepconv): [DepthwiseConv2D s2, BN,
 *        Activation] x levels | nearest_upsampling; Conv2D, BN; fusion: a chain of pairwise
 *        layers.Add; Activation; block group; endpoints: Conv2D, BN, Activation.
 * 3. Inside a layer, variables are named by attribute (Keras add_weight name, sublayer attribute
 *    names of the subclassed blocks, lists as ListWrapper indices):
 *      Conv2D kernel; DepthwiseConv2D depthwise_kernel; SeparableConv2D depthwise_kernel,
 *      pointwise_kernel, bias; BatchNormalization gamma, beta, moving_mean, moving_variance.
 *      layers/nn_blocks.py BottleneckBlock: _conv1/_norm1, _conv2/_norm2, _conv3/_norm3, the
 *        projection _shortcut/_norm0; ResidualBlock: _conv1/_norm1, _conv2/_norm2, _shortcut/
 *        _norm0; InvertedBottleneckBlock: _conv0/_norm0 (expand), _conv1 (depthwise)/_norm1,
 *        _squeeze_excitation (layers/nn_layers.py SqueezeExcitation: _se_reduce, _se_expand,
 *        kernel and bias), _conv2/_norm2 (project).
 *      heads/dense_prediction_heads.py RetinaNetHead: _cls_convs/<k>, _cls_norms/<level -
 *        min_level>/<k>, _classifier, _box_convs/<k>, _box_norms/<level - min_level>/<k>,
 *        _box_regressor (Conv2D, or SeparableConv2D with use_separable_conv for the mobile
 *        models).
 * 4. EMA (official/modeling/optimization/ema_optimizer.py ExponentialMovingAverage, a legacy
 *    Keras optimizer, is the root's "optimizer"): shadow_copy() adds a slot "average" to each of
 *    model.trainable_variables (trainable_weights_only defaults to True). TensorFlow names an
 *    optimizer slot "<variable's path>/.OPTIMIZER_SLOT/<optimizer's path>/<slot name>", so the
 *    average of backbone/layer_with_weights-0/kernel is
 *      backbone/layer_with_weights-0/kernel/.OPTIMIZER_SLOT/optimizer/average/.ATTRIBUTES/
 *      VARIABLE_VALUE;
 *    batch-norm moving statistics are not trainable and keep their own key.
 *
 * Refused (SN_ERR_UNSUPPORTED): the classification head (the Garden has no SpineNet
 * classification config, and its generic ClassificationModel pools only the top endpoint into
 * its own head, not this project's TPU-style sum of P3..P7); a block-spec table that is not the
 * Garden's (build_spinenet / build_spinenet_mobile always use the built-in table); SpineNet with
 * max_level below 7 (the Garden keeps the level-7 blocks there, this project clamps them); mobile
 * block_repeats other than 1 (no Garden scaling has it, and its block group feeds every repeat
 * from the group's input); a non-mobile activation other than relu or swish; a tpu-flavour
 * model; and any model whose parameters do not match the rebuilt Garden variables one to one
 * (e.g. the level-2 row read from a block-spec file, which this project then builds even
 * without P2, while the Garden leaves it out).
 *
 * Evidence beyond the code: a third-party mapping of a real Garden training checkpoint (the
 * YOLO task, same trainer) lists keys "backbone/layer_with_weights-0/conv/kernel/.ATTRIBUTES/
 * VARIABLE_VALUE" ... and "head/_head/...": the root-level "backbone/" and "head/" and the
 * layer_with_weights numbering, stem first. TensorFlow's own checkpoint tests expect slot keys
 * "model/_second/kernel/.OPTIMIZER_SLOT/optimizer/m". No printed SpineNet key list was found,
 * so the SpineNet numbering itself is derived, not compared with a real checkpoint; a separate
 * re-implementation of _map_graph_network (Python, written apart from this file) gave the same
 * numbering for SpineNet-49, SpineNet-49 with P2 and Mobile SpineNet-49.
 *
 * Uncertain: the numbering is that of the current Keras 2 functional code and the current Garden
 * graph, and it depends on the count of layers without weights: with UpSampling2D in place of
 * the 8 ops of nearest_upsampling, or (mobile) the older single multi-input layers.Add fusion,
 * some layers number differently (checked with the Python model). A checkpoint trained with
 * such an older Garden, or with TF < 2.4 (raw TF ops then became one layer per graph op), may
 * not match; the head, EMA and in-layer rules do not depend on this.
 */
#include "tf_names.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* snprintf into a fixed buffer (keys are far shorter than the buffers). */
static void fmt(char *dst, size_t cap, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    vsnprintf(dst, cap, f, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- the Garden's tables */

/* level, type (0 bottleneck, 1 residual, 2 mbconv), parents, output: backbones/spinenet.py and
 * spinenet_mobile.py SPINENET_BLOCK_SPECS. */
typedef struct {
    int level, type, p0, p1, out;
} g_spec;

static const g_spec k_garden_specs[] = {
    {2, 0, 0, 1, 0},   {4, 1, 0, 1, 0},   {3, 0, 2, 3, 0},  {4, 0, 2, 4, 0},
    {6, 1, 3, 5, 0},   {4, 0, 3, 5, 0},   {5, 1, 6, 7, 0},  {7, 1, 6, 8, 0},
    {5, 0, 8, 9, 0},   {5, 0, 8, 10, 0},  {4, 0, 5, 10, 1}, {3, 0, 4, 10, 1},
    {5, 0, 7, 12, 1},  {7, 0, 5, 14, 1},  {6, 0, 12, 14, 1}, {2, 0, 2, 13, 1},
};
static const g_spec k_garden_mobile_specs[] = {
    {2, 2, 0, 1, 0},  {2, 2, 1, 2, 0},   {4, 2, 1, 2, 0},   {3, 2, 3, 4, 0},
    {4, 2, 3, 5, 0},  {6, 2, 4, 6, 0},   {4, 2, 4, 6, 0},   {5, 2, 7, 8, 0},
    {7, 2, 7, 9, 0},  {5, 2, 9, 10, 0},  {5, 2, 9, 11, 0},  {4, 2, 6, 11, 1},
    {3, 2, 5, 11, 1}, {5, 2, 8, 13, 1},  {7, 2, 6, 15, 1},  {6, 2, 13, 15, 1},
};

/* ---------------------------------------------------------------- the Keras graph */

enum { G_INPUT, G_OP, G_CONV, G_DWCONV, G_BN, G_BOTTLENECK, G_RESIDUAL, G_MBCONV };
#define G_MAXIN 8

typedef struct {
    int kind;
    int in[G_MAXIN];
    int n_in;
    char prefix[48]; /* this project's layer prefix, for the layers with weights */
    int proj;        /* a block with a projection shortcut */
    int order;       /* first reached in the depth-first walk; -1: not in the model */
    int depth;
    int done;
    int wi; /* layer_with_weights index, -1 */
} g_node;

typedef struct {
    g_node *v;
    int n, cap;
    int *post; /* the walk's post-order */
    int n_post, n_order;
    int oom;
} g_graph;

static int g_add(g_graph *g, int kind, const int *in, int n_in, const char *prefix) {
    if (g->oom) return -1;
    for (int i = 0; i < n_in; i++)
        if (in[i] < 0) return -1;
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 256;
        g_node *q = realloc(g->v, (size_t)cap * sizeof *q);
        if (!q) {
            g->oom = 1;
            return -1;
        }
        g->v = q;
        g->cap = cap;
    }
    g_node *nd = &g->v[g->n];
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    nd->n_in = n_in;
    for (int i = 0; i < n_in; i++) nd->in[i] = in[i];
    if (prefix) fmt(nd->prefix, sizeof nd->prefix, "%s", prefix);
    nd->order = -1;
    nd->wi = -1;
    return g->n++;
}

/* One layer without weights on one input: an activation, pool, identity, Activation layer. */
static int g_op(g_graph *g, int x) { return g_add(g, G_OP, &x, 1, NULL); }

/* A convolution layer, then its BatchNormalization layer (two layers in the functional graph). */
static int g_conv_bn(g_graph *g, int x, int kind, const char *prefix) {
    int c = g_add(g, kind, &x, 1, prefix);
    return g_add(g, G_BN, &c, 1, prefix);
}

/* ops/spatial_transform_ops.py nearest_upsampling on a Keras tensor: 8 TFOpLambda layers. */
static int g_upsample(g_graph *g, int x) {
    int shape = g_op(g, x);    /* tf.shape(data) */
    int h = g_op(g, shape);    /* shape[1] */
    int w = g_op(g, shape);    /* shape[2] */
    int rin[3] = {x, h, w};    /* tf.reshape(data, [bs, h, 1, w, 1, c]) */
    int r = g_add(g, G_OP, rin, 3, NULL);
    int t = g_op(g, r);        /* tf.tile (older: * tf.ones) */
    int hs = g_op(g, h);       /* h * scale */
    int ws = g_op(g, w);       /* w * scale */
    int oin[3] = {t, hs, ws};  /* tf.reshape(data, [bs, h * scale, w * scale, c]) */
    return g_add(g, G_OP, oin, 3, NULL);
}

typedef struct {
    int node, level, type, outdeg;
} g_feat;

/* SpineNet (spinenet.py): returns 0, with the endpoint nodes in outs[min..max]. */
static int g_build_spinenet(g_graph *g, const sn_config *c, const g_spec *specs, int n_specs,
                            int *outs) {
    int n_feat = 2 + n_specs, R = c->block_repeats;
    g_feat *f = calloc((size_t)n_feat, sizeof *f);
    if (!f) return g->oom = 1, -1;
    int out_node[8];
    for (int i = 0; i < 8; i++) out_node[i] = -1;
    char p[48];
    int in = g_add(g, G_INPUT, NULL, 0, NULL);
    int x = g_conv_bn(g, in, G_CONV, "stem");
    x = g_op(g, g_op(g, x)); /* activation, MaxPool2D */
    for (int i = 0; i < 2; i++) {
        for (int r = 0; r < R; r++) {
            fmt(p, sizeof p, "blocks.%d.%d", i, r);
            x = g_add(g, G_BOTTLENECK, &x, 1, p);
            /* use_projection: input channels != 4 * filters; only the stem's first block. */
            if (x >= 0 && i == 0 && r == 0) g->v[x].proj = 1;
        }
        x = g_op(g, x); /* tf.identity */
        f[i] = (g_feat){x, 2, 0, 0};
    }
    for (int row = 0; row < n_specs; row++) {
        const g_spec *s = &specs[row];
        int idx = row + 2, tl = s->level, parts[G_MAXIN], np = 0;
        const int par[2] = {s->p0, s->p1};
        for (int j = 0; j < 2; j++) {
            const g_feat *src = &f[par[j]];
            fmt(p, sizeof p, "blocks.%d.resample%d.reduce", idx, j);
            int y = g_op(g, g_conv_bn(g, src->node, G_CONV, p));
            if (src->level < tl) {
                fmt(p, sizeof p, "blocks.%d.resample%d.down0", idx, j);
                y = g_op(g, g_conv_bn(g, y, G_CONV, p));
                for (int k = src->level + 1; k < tl; k++) y = g_op(g, y); /* MaxPool2D */
            } else if (src->level > tl) {
                y = g_upsample(g, y);
            }
            fmt(p, sizeof p, "blocks.%d.resample%d.project", idx, j);
            parts[np++] = g_conv_bn(g, y, G_CONV, p);
        }
        f[s->p0].outdeg++;
        f[s->p1].outdeg++;
        if (s->out)
            for (int k = 0; k < idx; k++)
                if (f[k].outdeg == 0 && f[k].level == tl && (f[k].type == 0) == (s->type == 0)) {
                    if (np == G_MAXIN) {
                        free(f);
                        return -1;
                    }
                    parts[np++] = f[k].node;
                    f[k].outdeg++;
                }
        x = g_op(g, g_add(g, G_OP, parts, np, NULL)); /* tf.add_n, activation */
        for (int r = 0; r < R; r++) {
            fmt(p, sizeof p, "blocks.%d.%d", idx, r);
            x = g_add(g, s->type == 0 ? G_BOTTLENECK : G_RESIDUAL, &x, 1, p);
        }
        x = g_op(g, x); /* tf.identity */
        f[idx] = (g_feat){x, tl, s->type, 0};
        if (s->out && out_node[tl] < 0) out_node[tl] = x;
    }
    free(f);
    for (int L = c->min_level; L <= c->max_level; L++) {
        if (out_node[L] < 0) return -1;
        fmt(p, sizeof p, "endpoints.%d", L);
        outs[L] = g_op(g, g_conv_bn(g, out_node[L], G_CONV, p));
    }
    return g->oom ? -1 : 0;
}

/* Mobile SpineNet (spinenet_mobile.py), block_repeats 1. */
static int g_build_mobile(g_graph *g, const sn_config *c, const g_spec *specs, int n_specs,
                          int *outs) {
    int n_feat = 2 + n_specs;
    g_feat *f = calloc((size_t)n_feat, sizeof *f);
    if (!f) return g->oom = 1, -1;
    int out_node[8];
    for (int i = 0; i < 8; i++) out_node[i] = -1;
    char p[48];
    int in = g_add(g, G_INPUT, NULL, 0, NULL);
    int x = g_op(g, g_conv_bn(g, in, G_CONV, "stem"));
    for (int i = 0; i < 2; i++) {
        fmt(p, sizeof p, "blocks.%d.0", i);
        x = g_op(g, g_add(g, G_MBCONV, &x, 1, p)); /* block, Activation('linear') */
        f[i] = (g_feat){x, i + 1, 2, 0};
    }
    for (int row = 0; row < n_specs; row++) {
        const g_spec *s = &specs[row];
        int idx = row + 2, tl = s->level < c->max_level ? s->level : c->max_level;
        int parts[G_MAXIN], np = 0;
        const int par[2] = {s->p0, s->p1};
        for (int j = 0; j < 2; j++) {
            const g_feat *src = &f[par[j]];
            int y = src->node;
            if (src->level < tl) {
                for (int k = 0; k < tl - src->level; k++) {
                    fmt(p, sizeof p, "blocks.%d.resample%d.down%d", idx, j, k);
                    y = g_op(g, g_conv_bn(g, y, G_DWCONV, p));
                }
            } else if (src->level > tl) {
                y = g_upsample(g, y);
            }
            fmt(p, sizeof p, "blocks.%d.resample%d.project", idx, j);
            parts[np++] = g_conv_bn(g, y, G_CONV, p);
        }
        f[s->p0].outdeg++;
        f[s->p1].outdeg++;
        if (s->out)
            for (int k = 0; k < idx; k++)
                if (f[k].outdeg == 0 && f[k].level == tl) {
                    if (np == G_MAXIN) {
                        free(f);
                        return -1;
                    }
                    parts[np++] = f[k].node;
                    f[k].outdeg++;
                }
        x = parts[0];
        for (int k = 1; k < np; k++) { /* layers.Add()([x, adder]) */
            int two[2] = {x, parts[k]};
            x = g_add(g, G_OP, two, 2, NULL);
        }
        x = g_op(g, x); /* Activation */
        fmt(p, sizeof p, "blocks.%d.0", idx);
        x = g_op(g, g_add(g, G_MBCONV, &x, 1, p));
        f[idx] = (g_feat){x, tl, 2, 0};
        if (s->out && out_node[tl] < 0) out_node[tl] = x;
    }
    free(f);
    for (int L = c->min_level; L <= c->max_level; L++) {
        if (out_node[L] < 0) return -1;
        fmt(p, sizeof p, "endpoints.%d", L);
        outs[L] = g_op(g, g_conv_bn(g, out_node[L], G_CONV, p));
    }
    return g->oom ? -1 : 0;
}

/* functional.py _build_map_helper: pre-order numbering, post-order list. */
static void g_walk(g_graph *g, int n) {
    g_node *nd = &g->v[n];
    if (nd->done) return;
    if (nd->order < 0) nd->order = g->n_order++;
    for (int i = 0; i < nd->n_in; i++) g_walk(g, nd->in[i]);
    nd->done = 1;
    g->post[g->n_post++] = n;
}

static const g_graph *g_sort_ctx;
static int g_cmp(const void *a, const void *b) {
    const g_node *x = &g_sort_ctx->v[*(const int *)a], *y = &g_sort_ctx->v[*(const int *)b];
    if (x->depth != y->depth) return x->depth > y->depth ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

static int g_is_weighted(int kind) { return kind != G_INPUT && kind != G_OP; }

/* functional.py _map_graph_network: depths, then layers by depth (deepest first) and walk
 * order; numbers the layers with weights. Returns the count of those, -1 on out of memory. */
static int g_number(g_graph *g, const int *outs, int lo, int hi) {
    g->post = malloc((size_t)g->n * sizeof *g->post);
    int *layers = malloc((size_t)g->n * sizeof *layers);
    if (!g->post || !layers) {
        free(layers);
        return -1;
    }
    for (int L = lo; L <= hi; L++) g_walk(g, outs[L]);
    for (int i = g->n_post - 1; i >= 0; i--) {
        const g_node *nd = &g->v[g->post[i]];
        for (int k = 0; k < nd->n_in; k++) {
            g_node *pa = &g->v[nd->in[k]];
            if (pa->depth < nd->depth + 1) pa->depth = nd->depth + 1;
        }
    }
    for (int i = 0; i < g->n_post; i++) layers[i] = g->post[i];
    g_sort_ctx = g;
    qsort(layers, (size_t)g->n_post, sizeof *layers, g_cmp);
    int k = 0;
    for (int i = 0; i < g->n_post; i++)
        if (g_is_weighted(g->v[layers[i]].kind)) g->v[layers[i]].wi = k++;
    free(layers);
    return k;
}

/* ---------------------------------------------------------------- the key table */

typedef struct {
    char model[112];
    char tf[160];
    int trainable;
    int used;
} g_entry;

typedef struct {
    g_entry *e;
    int n, cap;
    int oom;
} g_table;

static void t_add(g_table *t, const char *model, const char *tf, int trainable) {
    if (t->oom) return;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 512;
        g_entry *q = realloc(t->e, (size_t)cap * sizeof *q);
        if (!q) {
            t->oom = 1;
            return;
        }
        t->e = q;
        t->cap = cap;
    }
    g_entry *e = &t->e[t->n++];
    fmt(e->model, sizeof e->model, "%s", model);
    fmt(e->tf, sizeof e->tf, "%s", tf);
    e->trainable = trainable;
    e->used = 0;
}

/* A batch-norm: this project's "<mp>.gamma" ... under TF path "<tp>/gamma" ... */
static void t_bn(g_table *t, const char *mp, const char *tp) {
    static const char *const mine[4] = {"gamma", "beta", "mean", "var"};
    static const char *const tf[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    char a[112], b[160];
    for (int i = 0; i < 4; i++) {
        fmt(a, sizeof a, "%s.%s", mp, mine[i]);
        fmt(b, sizeof b, "%s/%s", tp, tf[i]);
        t_add(t, a, b, i < 2);
    }
}

/* A convolution (+ batch-norm) of a block: project prefix "<blk>.<name>", TF "<lp>/<conv>". */
static void t_block_conv(g_table *t, const char *blk, const char *name, const char *lp,
                         const char *conv, const char *var, const char *norm) {
    char a[112], b[160];
    fmt(a, sizeof a, "%s.%s.weight", blk, name);
    fmt(b, sizeof b, "%s/%s/%s", lp, conv, var);
    t_add(t, a, b, 1);
    if (norm) {
        fmt(a, sizeof a, "%s.%s.bn", blk, name);
        fmt(b, sizeof b, "%s/%s", lp, norm);
        t_bn(t, a, b);
    }
}

static void t_backbone(g_table *t, const g_graph *g) {
    char a[112], lp[64];
    for (int i = 0; i < g->n; i++) {
        const g_node *nd = &g->v[i];
        if (nd->wi < 0) continue;
        fmt(lp, sizeof lp, "backbone/layer_with_weights-%d", nd->wi);
        char b[160];
        switch (nd->kind) {
        case G_CONV:
        case G_DWCONV:
            fmt(a, sizeof a, "%s.weight", nd->prefix);
            fmt(b, sizeof b, "%s/%s", lp, nd->kind == G_CONV ? "kernel" : "depthwise_kernel");
            t_add(t, a, b, 1);
            break;
        case G_BN:
            fmt(a, sizeof a, "%s.bn", nd->prefix);
            t_bn(t, a, lp);
            break;
        case G_BOTTLENECK:
        case G_RESIDUAL:
            t_block_conv(t, nd->prefix, "conv1", lp, "_conv1", "kernel", "_norm1");
            t_block_conv(t, nd->prefix, "conv2", lp, "_conv2", "kernel", "_norm2");
            if (nd->kind == G_BOTTLENECK)
                t_block_conv(t, nd->prefix, "conv3", lp, "_conv3", "kernel", "_norm3");
            if (nd->proj) t_block_conv(t, nd->prefix, "proj", lp, "_shortcut", "kernel", "_norm0");
            break;
        case G_MBCONV: {
            char se[96];
            t_block_conv(t, nd->prefix, "expand", lp, "_conv0", "kernel", "_norm0");
            t_block_conv(t, nd->prefix, "dw", lp, "_conv1", "depthwise_kernel", "_norm1");
            fmt(se, sizeof se, "%s/_squeeze_excitation", lp);
            t_block_conv(t, nd->prefix, "se_reduce", se, "_se_reduce", "kernel", NULL);
            t_block_conv(t, nd->prefix, "se_expand", se, "_se_expand", "kernel", NULL);
            fmt(a, sizeof a, "%s.se_reduce.bias", nd->prefix);
            fmt(b, sizeof b, "%s/_se_reduce/bias", se);
            t_add(t, a, b, 1);
            fmt(a, sizeof a, "%s.se_expand.bias", nd->prefix);
            fmt(b, sizeof b, "%s/_se_expand/bias", se);
            t_add(t, a, b, 1);
            t_block_conv(t, nd->prefix, "project", lp, "_conv2", "kernel", "_norm2");
            break;
        }
        default:
            break;
        }
    }
}

/* One head layer: a Conv2D, or SeparableConv2D (sep), with its bias. */
static void t_head_layer(g_table *t, const char *mp, const char *tp, int sep) {
    char a[112], b[160];
    if (sep) {
        fmt(a, sizeof a, "%s.dw.weight", mp);
        fmt(b, sizeof b, "%s/depthwise_kernel", tp);
        t_add(t, a, b, 1);
    }
    fmt(a, sizeof a, "%s.weight", mp);
    fmt(b, sizeof b, "%s/%s", tp, sep ? "pointwise_kernel" : "kernel");
    t_add(t, a, b, 1);
    fmt(a, sizeof a, "%s.bias", mp);
    fmt(b, sizeof b, "%s/bias", tp);
    t_add(t, a, b, 1);
}

static void t_head(g_table *t, const sn_config *c, int sep) {
    static const char *const mine[2] = {"class", "box"};
    static const char *const tf[2][3] = {{"_cls_convs", "_cls_norms", "_classifier"},
                                         {"_box_convs", "_box_norms", "_box_regressor"}};
    char a[112], b[160];
    for (int tw = 0; tw < 2; tw++) {
        for (int k = 0; k < c->head_convs; k++) {
            fmt(a, sizeof a, "head.%s.conv%d", mine[tw], k);
            fmt(b, sizeof b, "head/%s/%d", tf[tw][0], k);
            t_head_layer(t, a, b, sep);
            for (int L = c->min_level; L <= c->max_level; L++) {
                fmt(a, sizeof a, "head.%s.conv%d.bn_l%d", mine[tw], k, L);
                fmt(b, sizeof b, "head/%s/%d/%d", tf[tw][1], L - c->min_level, k);
                t_bn(t, a, b);
            }
        }
        fmt(a, sizeof a, "head.%s.pred", mine[tw]);
        fmt(b, sizeof b, "head/%s", tf[tw][2]);
        t_head_layer(t, a, b, sep);
    }
}

/* ---------------------------------------------------------------- entry point */

static int specs_match(const sn_model *m, const g_spec *ref, int n_ref) {
    if (m->n_specs != n_ref) return 0;
    for (int i = 0; i < n_ref; i++) {
        const sn_block_spec *s = &m->specs[i];
        int type = s->type == SN_BLOCK_BOTTLENECK ? 0 : s->type == SN_BLOCK_RESIDUAL ? 1 : 2;
        if (s->level != ref[i].level || type != ref[i].type || s->parents[0] != ref[i].p0 ||
            s->parents[1] != ref[i].p1 || !s->is_output != !ref[i].out)
            return 0;
    }
    return 1;
}

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

sn_status sn_tf_names_garden(const sn_model *m, int ema, sn_tf_names *out) {
    if (!out) return SN_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    if (!m) return SN_ERR_INVALID_ARG;
    const sn_config *c = &m->cfg;
    int mobile = sn_config_is_mobile(c);
    if (c->flavour != SN_FLAVOUR_GARDEN)
        return sn_error(SN_ERR_UNSUPPORTED, "%s: not a garden-flavour model, so it has no Model "
                        "Garden checkpoint names", c->model);
    if (c->head == SN_HEAD_CLASSIFIER)
        return sn_error(SN_ERR_UNSUPPORTED,
                        "%s: the Model Garden has no SpineNet classification model: it has no "
                        "SpineNet classification config, and its generic ClassificationModel "
                        "pools only the top endpoint into its own head, not this project's "
                        "TPU-style head (P3..P7 resized, summed and pooled into head.fc)",
                        c->model);
    /* The Garden's table, or (SpineNet without P2) that table less its level-2 row: the Garden
     * builds that row, but feeding no output it is not in the model. */
    const g_spec *ref = mobile ? k_garden_mobile_specs : k_garden_specs;
    int n_ref = mobile ? (int)(sizeof k_garden_mobile_specs / sizeof *ref)
                       : (int)(sizeof k_garden_specs / sizeof *ref);
    if (!specs_match(m, ref, n_ref) &&
        (mobile || c->min_level <= 2 || !specs_match(m, ref, n_ref - 1)))
        return sn_error(SN_ERR_UNSUPPORTED,
                        "%s: the block-spec table is not the Model Garden's (build_spinenet and "
                        "build_spinenet_mobile always use the built-in SPINENET_BLOCK_SPECS), so "
                        "no Garden checkpoint has this model's layers", c->model);
    if (!mobile && c->max_level != 7)
        return sn_error(SN_ERR_UNSUPPORTED,
                        "%s: max_level %d: the Model Garden's SpineNet keeps its level-7 blocks "
                        "whatever max_level is, where this project clamps them to max_level, so "
                        "the layers differ (only max_level 7 has Garden names)", c->model,
                        c->max_level);
    if (mobile && c->block_repeats != 1)
        return sn_error(SN_ERR_UNSUPPORTED,
                        "%s: block_repeats %d: no Model Garden Mobile SpineNet repeats its blocks "
                        "(and its block group would feed every repeat from the group's input)",
                        c->model, c->block_repeats);
    if (!mobile && c->activation != SN_ACT_RELU && c->activation != SN_ACT_SWISH)
        return sn_error(SN_ERR_UNSUPPORTED,
                        "%s: activation %s: the Model Garden's SpineNet takes only relu or swish",
                        c->model, sn_act_name(c->activation));
    if (c->min_level < 2 || c->max_level > 7 || c->min_level > c->max_level)
        return sn_error(SN_ERR_UNSUPPORTED, "%s: levels %d..%d", c->model, c->min_level,
                        c->max_level);

    g_graph g = {0};
    g_table t = {0};
    int outs[8] = {0};
    sn_status st = SN_OK;
    int r = mobile ? g_build_mobile(&g, c, ref, m->n_specs, outs)
                   : g_build_spinenet(&g, c, ref, m->n_specs, outs);
    if (r == 0 && g_number(&g, outs, c->min_level, c->max_level) < 0) g.oom = 1;
    if (g.oom) {
        st = sn_error(SN_ERR_OOM, "tf names: out of memory");
        goto done;
    }
    if (r != 0) {
        st = sn_error(SN_ERR_UNSUPPORTED, "%s: the Model Garden graph cannot be rebuilt for "
                      "levels %d..%d", c->model, c->min_level, c->max_level);
        goto done;
    }
    t_backbone(&t, &g);
    if (c->head == SN_HEAD_RETINANET) t_head(&t, c, mobile);
    if (t.oom) {
        st = sn_error(SN_ERR_OOM, "tf names: out of memory");
        goto done;
    }
    int n = m->params.n;
    out->v = calloc((size_t)(n ? n : 1), sizeof *out->v);
    if (!out->v) {
        st = sn_error(SN_ERR_OOM, "tf names: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const char *name = m->params.t[i].name;
        g_entry *e = NULL;
        for (int k = 0; k < t.n && !e; k++)
            if (!t.e[k].used && strcmp(t.e[k].model, name) == 0) e = &t.e[k];
        if (!e) {
            st = sn_error(SN_ERR_UNSUPPORTED,
                          "%s: parameter '%s' has no variable in the Model Garden's model (this "
                          "model's layers are not the Garden's)", c->model, name);
            goto done;
        }
        e->used = 1;
        char key[256];
        fmt(key, sizeof key, "%s%s/.ATTRIBUTES/VARIABLE_VALUE", e->tf,
                 ema && e->trainable ? "/.OPTIMIZER_SLOT/optimizer/average" : "");
        out->v[i].model = dupstr(name);
        out->v[i].tf = dupstr(key);
        out->n = i + 1;
        if (!out->v[i].model || !out->v[i].tf) {
            st = sn_error(SN_ERR_OOM, "tf names: out of memory");
            goto done;
        }
    }
    for (int k = 0; k < t.n; k++)
        if (!t.e[k].used) {
            st = sn_error(SN_ERR_UNSUPPORTED,
                          "%s: the Model Garden's variable %s (%s here) is missing from this "
                          "model (its layers are not the Garden's)", c->model, t.e[k].tf,
                          t.e[k].model);
            goto done;
        }
done:
    free(g.v);
    free(g.post);
    free(t.e);
    if (st != SN_OK) sn_tf_names_free(out);
    return st;
}
