/* tf_names_tpu.c: the TF1 variable name of every parameter of a tpu-flavour model, as the official
 * TF1 code (tensorflow/tpu, models/official/detection) names it in its checkpoints (tf_names.h).
 *
 * How TF1 names these variables
 * -----------------------------
 * Every layer is a tf.layers object created without a name (nn_ops.conv2d_fixed_padding calls
 * tf.layers.conv2d; nn_ops.BatchNormActivation/BatchNormRelu call tf.layers.batch_normalization;
 * nn_ops.depthwise_conv2d_fixed_padding makes nn_ops.DepthwiseConv2D, a Keras DepthwiseConv2D
 * mixed with tf.layers.Layer; nn_ops.squeeze_excitation makes two tf.layers.Conv2D). A tf.layers
 * layer opens, on its first call, `tf.variable_scope(None, default_name=<snake-case class name>)`,
 * and TF1 makes that scope name unique inside the enclosing variable scope: the first is `conv2d`,
 * then `conv2d_1`, `conv2d_2`, ... One counter per base name (conv2d, batch_normalization,
 * depthwise_conv2d, dense) and per enclosing scope; a scope entered once (all of them here) never
 * resets, and leaving a sub-scope does not reset the parent's counters. So the numbers follow the
 * order in which the code *calls* the layers within one scope, counted per layer type.
 * Variables: conv `kernel` (+ `bias` when use_bias), batch-norm `gamma`, `beta`, `moving_mean`,
 * `moving_variance`, depthwise `depthwise_kernel` ([3,3,C,1]), separable conv
 * `depthwise_kernel`, `pointwise_kernel`, `bias`, dense `kernel`, `bias`.
 *
 * Scopes and call order, from the code (file: function):
 *  spinenet.py: SpineNet.__call__ - everything of the backbone in `spinenet/`:
 *   1. _build_stem_network: the 7x7 stem conv + bn; then 2 block_group()s (no scope of their own:
 *      the `name` argument only names a tf.identity), `block_repeats` blocks each.
 *   2. _build_scale_permuted_network: row i of SPINENET_BLOCK_SPECS in `sub_policy{i}/`:
 *      resample_with_alpha() of parent 0 in `resample_with_alpha_resample_{i}_0/`, of parent 1 in
 *      `..._{i}_1/`: 1x1 reduce conv + bn, [3x3 stride-2 conv + bn when the parent is wider than
 *      the target], 1x1 project conv + bn (relu=False). Then the block group in
 *      `scale_permuted_block_{len(feats)}/` = `scale_permuted_block_{i + 2}/`.
 *   3. _build_endpoints: for level min..max, a 1x1 conv + bn, back in `spinenet/`, so its
 *      numbers continue the stem's (the real 49S file: stem conv2d..conv2d_7, endpoints
 *      conv2d_8..conv2d_12).
 *  nn_blocks.py: bottleneck_block / residual_block - the projection shortcut (conv + bn) is
 *   called FIRST when use_projection, then the main convs in order (conv1, conv2, conv3 / conv1,
 *   conv2); spinenet.py block_group: use_projection iff the input channels differ from the
 *   block's output channels (stride 1), only in the first repeat - what this project builds
 *   (blocks.i.r.proj exists exactly then).
 *  spinenet_mbconv.py: SpineNetMBConv.__call__ - the same in `spinenet_mbconv/`: stem 3x3 conv +
 *   bn, stem groups 0 and 1, rows in `sub_policy{i}/` with resample_with_sepconv() in
 *   `resample_with_sepconv_resample_{i}_{j}/` (one depthwise_conv2d + bn per halving, then the
 *   1x1 conv + bn), blocks in `scale_permuted_block_{i + 2}/`, endpoints back in
 *   `spinenet_mbconv/`. nn_blocks.py mbconv_block: expand conv + bn, depthwise conv + bn,
 *   squeeze_excitation (se_reduce then se_expand: two conv2d with bias, called in that order),
 *   project conv + bn. Filters: nn_ops.round_filters(FILTER_SIZE_MAP[level], scale) (divisor 8).
 *  heads.py: RetinanetHead - explicit names under `retinanet/`: per level (min..max) class_net
 *   then box_net, each under tf.variable_scope(..., reuse=AUTO_REUSE) so the convs are shared:
 *   `class_net/class-{k}` (conv, kernel + bias; separable: depthwise_kernel, pointwise_kernel,
 *   bias), the per-level batch-norm `class_net/class-{k}-{level}`, `class_net/class-predict`;
 *   the same with `box_net/box-{k}`, `box-{k}-{level}`, `box-predict`.
 *  heads.py: ClassificationHead - `classification_head/`, aggregation 'all' (the levels resized to
 *   the lowest and averaged, what this project's classifier does) without the optional embedding
 *   conv (endpoints_num_filters 0), then tf.layers.dense: `classification_head/dense/kernel`,
 *   `.../bias`.
 *  EMA: TF1 tf.train.ExponentialMovingAverage names a shadow `<variable>/ExponentialMovingAverage`;
 *   it is kept for the trainable variables (kernels, biases, gamma, beta); batch-norm moving
 *   statistics are not trainable and keep their own name.
 *
 * Verified against a real file: the SpineNet-49S RetinaNet checkpoint index in
 * tests/data/tf/spinenet-49s-tf1-retinanet (tests/test_tf_names.c: every variable, name and shape).
 * From the code only: Mobile SpineNet, separable head convs, the classification head, EMA names,
 * block_repeats > 1.
 *
 * What the TF1 code cannot make (SN_ERR_UNSUPPORTED): a block-spec table other than its own
 * SPINENET_BLOCK_SPECS (the factory passes none, and the Model Garden's level-2 row does not
 * exist there), a row level above max_level (this project clamps it; TF1 does not), an output
 * row outside min_level..max_level (TF1 raises), mobile filter counts that are not
 * round_filters'. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "tf_names.h"

#define EMA_SUFFIX "/ExponentialMovingAverage"

/* SPINENET_BLOCK_SPECS of spinenet.py and spinenet_mbconv.py: level, block (0 bottleneck,
 * 1 residual, 2 mbconv), parents, output. */
typedef struct {
    int level, type, p0, p1, out;
} tpu_row;

static const tpu_row k_tpu_rows[] = {
    {2, 0, 0, 1, 0},   {4, 1, 0, 1, 0},  {3, 0, 2, 3, 0},   {4, 0, 2, 4, 0},   {6, 1, 3, 5, 0},
    {4, 0, 3, 5, 0},   {5, 1, 6, 7, 0},  {7, 1, 6, 8, 0},   {5, 0, 8, 9, 0},   {5, 0, 8, 10, 0},
    {4, 0, 5, 10, 1},  {3, 0, 4, 10, 1}, {5, 0, 7, 12, 1},  {7, 0, 5, 14, 1},  {6, 0, 12, 14, 1},
};
static const tpu_row k_tpu_mobile_rows[] = {
    {2, 2, 0, 1, 0},   {2, 2, 1, 2, 0},   {4, 2, 1, 2, 0},   {3, 2, 3, 4, 0},
    {4, 2, 3, 5, 0},   {6, 2, 4, 6, 0},   {4, 2, 4, 6, 0},   {5, 2, 7, 8, 0},
    {7, 2, 7, 9, 0},   {5, 2, 9, 10, 0},  {5, 2, 9, 11, 0},  {4, 2, 6, 11, 1},
    {3, 2, 5, 11, 1},  {5, 2, 8, 13, 1},  {7, 2, 6, 15, 1},  {6, 2, 13, 15, 1},
};

/* FILTER_SIZE_MAP of spinenet_mbconv.py. */
static const int k_mobile_base[8] = {8, 16, 24, 40, 80, 112, 112, 112};

typedef struct {
    int conv, bn, dw; /* layers of each base name made so far in this scope */
} counters;

typedef struct {
    const sn_model *m;
    int ema;
    sn_tf_name *v; /* the pairs in TF1 creation order */
    int n, cap;
    char scope[256];
    counters c;
    sn_status st;
} nctx;

static int has(const nctx *x, const char *fmt, ...) SN_PRINTF(2, 3);
static int has(const nctx *x, const char *fmt, ...) {
    char name[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return sn_paramtab_find(&x->m->params, name) >= 0;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Record model name -> TF name; `leaf` is the variable inside the layer scope `layer`. */
static void emit(nctx *x, const char *model, const char *layer, const char *leaf) {
    if (x->st != SN_OK) return;
    if (sn_paramtab_find(&x->m->params, model) < 0) {
        x->st = sn_error(SN_ERR_UNSUPPORTED,
                         "tf names (tpu): the model has no parameter '%s' where the TF1 code "
                         "makes %s/%s", model, layer, leaf);
        return;
    }
    if (x->n == x->cap) {
        int cap = x->cap ? x->cap * 2 : 512;
        sn_tf_name *q = realloc(x->v, (size_t)cap * sizeof *q);
        if (!q) {
            x->st = sn_error(SN_ERR_OOM, "tf names: out of memory");
            return;
        }
        x->v = q;
        x->cap = cap;
    }
    int trainable = strcmp(leaf, "moving_mean") != 0 && strcmp(leaf, "moving_variance") != 0;
    size_t len = strlen(layer) + 1 + strlen(leaf) + sizeof EMA_SUFFIX;
    char *tf = malloc(len);
    char *mn = dup_str(model);
    if (!tf || !mn) {
        free(tf);
        free(mn);
        x->st = sn_error(SN_ERR_OOM, "tf names: out of memory");
        return;
    }
    snprintf(tf, len, "%s/%s%s", layer, leaf, x->ema && trainable ? EMA_SUFFIX : "");
    x->v[x->n].model = mn;
    x->v[x->n].tf = tf;
    x->n++;
}

static void set_scope(nctx *x, const char *fmt, ...) SN_PRINTF(2, 3);
static void set_scope(nctx *x, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->scope, sizeof x->scope, fmt, ap);
    va_end(ap);
    memset(&x->c, 0, sizeof x->c);
}

/* The unique name of the next layer with this base name in the current scope. */
static void next_layer(nctx *x, const char *base, int *counter, char *out, size_t cap) {
    if (*counter == 0)
        snprintf(out, cap, "%s/%s", x->scope, base);
    else
        snprintf(out, cap, "%s/%s_%d", x->scope, base, *counter);
    (*counter)++;
}

/* The batch-norm after layer `prefix`, if the model has one. */
static void bn(nctx *x, const char *prefix) {
    char p[200], l[320];
    snprintf(p, sizeof p, "%s.bn.gamma", prefix);
    if (sn_paramtab_find(&x->m->params, p) < 0) return;
    next_layer(x, "batch_normalization", &x->c.bn, l, sizeof l);
    static const char *const ours[4] = {"gamma", "beta", "mean", "var"};
    static const char *const theirs[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s.bn.%s", prefix, ours[i]);
        emit(x, p, l, theirs[i]);
    }
}

/* A tf.layers conv2d (kernel, and bias when the model has one) and its batch-norm. */
static void conv_bn(nctx *x, const char *prefix) {
    char p[200], l[320];
    next_layer(x, "conv2d", &x->c.conv, l, sizeof l);
    snprintf(p, sizeof p, "%s.weight", prefix);
    emit(x, p, l, "kernel");
    snprintf(p, sizeof p, "%s.bias", prefix);
    if (sn_paramtab_find(&x->m->params, p) >= 0) emit(x, p, l, "bias");
    bn(x, prefix);
}

/* A depthwise conv (nn_ops.DepthwiseConv2D) and its batch-norm. */
static void dw_bn(nctx *x, const char *prefix) {
    char p[200], l[320];
    next_layer(x, "depthwise_conv2d", &x->c.dw, l, sizeof l);
    snprintf(p, sizeof p, "%s.weight", prefix);
    emit(x, p, l, "depthwise_kernel");
    bn(x, prefix);
}

static void resnet_block(nctx *x, int idx, int r) {
    char p[96];
    if (has(x, "blocks.%d.%d.proj.weight", idx, r)) {
        snprintf(p, sizeof p, "blocks.%d.%d.proj", idx, r);
        conv_bn(x, p);
    }
    for (int k = 1; k <= 3; k++) {
        if (k == 3 && !has(x, "blocks.%d.%d.conv3.weight", idx, r)) break; /* residual */
        snprintf(p, sizeof p, "blocks.%d.%d.conv%d", idx, r, k);
        conv_bn(x, p);
    }
}

static void mbconv_block(nctx *x, int idx, int r) {
    static const char *const parts[5] = {"expand", "dw", "se_reduce", "se_expand", "project"};
    char p[96];
    for (int k = 0; k < 5; k++) {
        snprintf(p, sizeof p, "blocks.%d.%d.%s", idx, r, parts[k]);
        if (k == 1)
            dw_bn(x, p);
        else
            conv_bn(x, p);
    }
}

static void block_group(nctx *x, int idx, int mobile) {
    for (int r = 0; r < x->m->cfg.block_repeats; r++) {
        if (mobile)
            mbconv_block(x, idx, r);
        else
            resnet_block(x, idx, r);
    }
}

static void resample(nctx *x, int row, int j, int mobile) {
    char p[96];
    const char *root = mobile ? "spinenet_mbconv" : "spinenet";
    set_scope(x, "%s/sub_policy%d/resample_with_%s_resample_%d_%d", root, row,
              mobile ? "sepconv" : "alpha", row, j);
    int idx = row + 2;
    if (mobile) {
        for (int k = 0; has(x, "blocks.%d.resample%d.down%d.weight", idx, j, k); k++) {
            snprintf(p, sizeof p, "blocks.%d.resample%d.down%d", idx, j, k);
            dw_bn(x, p);
        }
    } else {
        snprintf(p, sizeof p, "blocks.%d.resample%d.reduce", idx, j);
        conv_bn(x, p);
        if (has(x, "blocks.%d.resample%d.down0.weight", idx, j)) {
            snprintf(p, sizeof p, "blocks.%d.resample%d.down0", idx, j);
            conv_bn(x, p);
        }
    }
    snprintf(p, sizeof p, "blocks.%d.resample%d.project", idx, j);
    conv_bn(x, p);
}

/* int(base * scale) as this project computes it (spinenet.c, scaled()). */
static int project_scaled(int base, float s) {
    double sd = (double)(long long)((double)s * 1e6 + 0.5) / 1e6;
    return (int)((double)base * sd + 1e-9);
}

/* nn_ops.round_filters(filters, multiplier), divisor 8. */
static int round_filters(int filters, float s) {
    double sd = (double)(long long)((double)s * 1e6 + 0.5) / 1e6;
    double f = filters * sd;
    int nf = (int)(f + 4.0) / 8 * 8;
    if (nf < 8) nf = 8;
    if (nf < 0.9 * f) nf += 8;
    return nf;
}

/* What the TF1 code can make: its own table, levels as the spec says, outputs in range. */
static sn_status check_model(const sn_model *m, int mobile) {
    const sn_config *c = &m->cfg;
    const tpu_row *rows = mobile ? k_tpu_mobile_rows : k_tpu_rows;
    int n_rows = mobile ? (int)(sizeof k_tpu_mobile_rows / sizeof *rows)
                        : (int)(sizeof k_tpu_rows / sizeof *rows);
    if (c->flavour != SN_FLAVOUR_TPU)
        return sn_error(SN_ERR_UNSUPPORTED,
                        "tf names (tpu): model %s is garden-flavour; the TF1 names are for "
                        "tpu-flavour models", c->model);
    if (c->p2 || c->min_level < 3)
        return sn_error(SN_ERR_UNSUPPORTED,
                        "tf names (tpu): the TF1 code has no level-2 output row (P2 exists only "
                        "in the Model Garden)");
    const char *table = m->spec_text ? "the block-spec table of this model (from a file)"
                                     : "the built-in block-spec table";
    int built = 0;
    for (int i = 0; i < m->n_specs; i++) {
        const sn_block_spec *s = &m->specs[i];
        if (s->p2_row) continue; /* not built when min_level > 2 */
        if (built >= n_rows)
            return sn_error(SN_ERR_UNSUPPORTED,
                            "tf names (tpu): %s has more rows than the TF1 code's "
                            "SPINENET_BLOCK_SPECS (%d); the TF1 factory builds only its own table",
                            table, n_rows);
        const tpu_row *t = &rows[built];
        int type = s->type == SN_BLOCK_BOTTLENECK ? 0 : s->type == SN_BLOCK_RESIDUAL ? 1 : 2;
        if (i != built || s->level != t->level || type != t->type || s->parents[0] != t->p0 ||
            s->parents[1] != t->p1 || (s->is_output != 0) != (t->out != 0))
            return sn_error(SN_ERR_UNSUPPORTED,
                            "tf names (tpu): row %d of %s differs from the TF1 code's "
                            "SPINENET_BLOCK_SPECS; the TF1 factory builds only its own table, so "
                            "no TF1 checkpoint names exist for it", i, table);
        if (s->level > c->max_level)
            return sn_error(SN_ERR_UNSUPPORTED,
                            "tf names (tpu): row %d has level %d above max_level %d; this project "
                            "clamps it, the TF1 code does not (max_level must be 7)",
                            i, s->level, c->max_level);
        if (s->is_output && s->level < c->min_level)
            return sn_error(SN_ERR_UNSUPPORTED,
                            "tf names (tpu): output row %d has level %d below min_level %d, which "
                            "the TF1 code refuses (min_level must be 3)", i, s->level,
                            c->min_level);
        built++;
    }
    if (built != n_rows)
        return sn_error(SN_ERR_UNSUPPORTED,
                        "tf names (tpu): %s has %d rows, the TF1 code's SPINENET_BLOCK_SPECS %d",
                        table, built, n_rows);
    if (mobile) {
        for (int k = 0; k < 8; k++) {
            int ours = project_scaled(k_mobile_base[k], c->filter_scale);
            int theirs = round_filters(k_mobile_base[k], c->filter_scale);
            if (ours != theirs)
                return sn_error(SN_ERR_UNSUPPORTED,
                                "tf names (tpu): filter scale %g gives %d filters for base %d "
                                "here, the TF1 code's round_filters %d: its Mobile SpineNet has "
                                "other shapes", (double)c->filter_scale, ours, k_mobile_base[k],
                                theirs);
        }
    }
    return SN_OK;
}

static void backbone(nctx *x, int mobile) {
    const sn_model *m = x->m;
    const char *root = mobile ? "spinenet_mbconv" : "spinenet";
    set_scope(x, "%s", root);
    conv_bn(x, "stem");
    for (int i = 0; i < 2; i++) block_group(x, i, mobile);
    counters root_counters = x->c;
    for (int row = 0; row < m->n_specs; row++) {
        if (m->specs[row].p2_row) continue;
        resample(x, row, 0, mobile);
        resample(x, row, 1, mobile);
        set_scope(x, "%s/sub_policy%d/scale_permuted_block_%d", root, row, row + 2);
        block_group(x, row + 2, mobile);
    }
    set_scope(x, "%s", root);
    x->c = root_counters;
    for (int L = m->cfg.min_level; L <= m->cfg.max_level; L++) {
        char p[32];
        snprintf(p, sizeof p, "endpoints.%d", L);
        conv_bn(x, p);
    }
}

static void retinanet(nctx *x) {
    const sn_config *c = &x->m->cfg;
    for (int tower = 0; tower < 2; tower++) {
        const char *tn = tower == 0 ? "class" : "box";
        for (int k = 0; k <= c->head_convs; k++) {
            char p[96], l[128], w[112];
            int pred = k == c->head_convs;
            if (pred) {
                snprintf(p, sizeof p, "head.%s.pred", tn);
                snprintf(l, sizeof l, "retinanet/%s_net/%s-predict", tn, tn);
            } else {
                snprintf(p, sizeof p, "head.%s.conv%d", tn, k);
                snprintf(l, sizeof l, "retinanet/%s_net/%s-%d", tn, tn, k);
            }
            snprintf(w, sizeof w, "%s.dw.weight", p);
            int sep = sn_paramtab_find(&x->m->params, w) >= 0;
            if (sep) emit(x, w, l, "depthwise_kernel");
            snprintf(w, sizeof w, "%s.weight", p);
            emit(x, w, l, sep ? "pointwise_kernel" : "kernel");
            snprintf(w, sizeof w, "%s.bias", p);
            emit(x, w, l, "bias");
            if (pred) continue;
            for (int L = c->min_level; L <= c->max_level; L++) {
                static const char *const ours[4] = {"gamma", "beta", "mean", "var"};
                static const char *const theirs[4] = {"gamma", "beta", "moving_mean",
                                                      "moving_variance"};
                char bl[140], bp[128];
                snprintf(bl, sizeof bl, "retinanet/%s_net/%s-%d-%d", tn, tn, k, L);
                for (int i = 0; i < 4; i++) {
                    snprintf(bp, sizeof bp, "%s.bn_l%d.%s", p, L, ours[i]);
                    emit(x, bp, bl, theirs[i]);
                }
            }
        }
    }
}

static void free_pairs(sn_tf_name *v, int n) {
    for (int i = 0; i < n; i++) {
        free(v[i].model);
        free(v[i].tf);
    }
    free(v);
}

static int cmp_model(const void *a, const void *b) {
    return strcmp(((const sn_tf_name *)a)->model, ((const sn_tf_name *)b)->model);
}

sn_status sn_tf_names_tpu(const sn_model *m, int ema, sn_tf_names *out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_tf_names_tpu: NULL argument");
    memset(out, 0, sizeof *out);
    if (!m) return sn_error(SN_ERR_INVALID_ARG, "sn_tf_names_tpu: NULL model");
    int mobile = sn_config_is_mobile(&m->cfg);
    sn_status st = check_model(m, mobile);
    if (st != SN_OK) return st;
    nctx x;
    memset(&x, 0, sizeof x);
    x.m = m;
    x.ema = ema;
    backbone(&x, mobile);
    if (m->cfg.head == SN_HEAD_RETINANET) {
        retinanet(&x);
    } else if (m->cfg.head == SN_HEAD_CLASSIFIER) {
        emit(&x, "head.fc.weight", "classification_head/dense", "kernel");
        emit(&x, "head.fc.bias", "classification_head/dense", "bias");
    }
    if (x.st != SN_OK) {
        free_pairs(x.v, x.n);
        return x.st;
    }
    /* Put the pairs in m->params order; every parameter needs exactly one. */
    const sn_paramtab *pt = &m->params;
    qsort(x.v, (size_t)x.n, sizeof *x.v, cmp_model);
    for (int i = 1; i < x.n; i++)
        if (strcmp(x.v[i - 1].model, x.v[i].model) == 0) {
            st = sn_error(SN_ERR_STATE, "tf names (tpu): parameter '%s' named twice",
                          x.v[i].model);
            free_pairs(x.v, x.n);
            return st;
        }
    int *at = malloc((size_t)(pt->n ? pt->n : 1) * sizeof *at);
    sn_tf_name *res = calloc((size_t)(pt->n ? pt->n : 1), sizeof *res);
    if (!at || !res) {
        free(at);
        free(res);
        free_pairs(x.v, x.n);
        return sn_error(SN_ERR_OOM, "tf names: out of memory");
    }
    for (int i = 0; i < pt->n; i++) {
        sn_tf_name key = {pt->t[i].name, NULL};
        sn_tf_name *hit = bsearch(&key, x.v, (size_t)x.n, sizeof *x.v, cmp_model);
        if (!hit) {
            st = sn_error(SN_ERR_UNSUPPORTED,
                          "tf names (tpu): parameter '%s' has no TF1 variable (the TF1 code "
                          "makes no such layer)", pt->t[i].name);
            free(at);
            free(res);
            free_pairs(x.v, x.n);
            return st;
        }
        at[i] = (int)(hit - x.v);
    }
    /* Every pair names a distinct parameter (emit() checks it exists, no name twice), so the
     * pairs are exactly the parameters: move them. */
    for (int i = 0; i < pt->n; i++) res[i] = x.v[at[i]];
    free(at);
    free(x.v);
    out->v = res;
    out->n = pt->n;
    return SN_OK;
}
