/* ONNX export: the model's inference graph for one input shape, node by node, as a standard
 * ONNX ModelProto. The protobuf encoding is written here (varints, length-delimited fields,
 * fixed32 floats); the field numbers are those of onnx.proto (ONNX IR version 8).
 *
 * Layout: ONNX users expect NCHW, so the graph is NCHW from its input on. Kernels go from HWIO
 * ([kh][kw][cin/groups][cout]) to OIHW; batch-norm is folded with sn_node_fold_bn, the fold the
 * inference plan itself uses, so the numbers are the ones spinenet runs with. Padding is
 * explicit (`pads`), exactly the node's, so both flavours export as they run. */
#include "onnx.h"

#include <stdio.h>
#include <string.h>

#include "core.h"
#include "model.h"

/* ---------------------------------------------------------------- protobuf writer */

typedef struct {
    unsigned char *p;
    size_t n, cap;
    int oom;
} pbuf;

static int pb_reserve(pbuf *b, size_t more) {
    if (b->oom) return 0;
    if (b->n + more <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : (size_t)1 << 16;
    while (cap < b->n + more) cap *= 2;
    unsigned char *q = sn_alloc(cap);
    if (!q) {
        b->oom = 1;
        return 0;
    }
    if (b->n) memcpy(q, b->p, b->n);
    sn_free(b->p);
    b->p = q;
    b->cap = cap;
    return 1;
}

static void pb_raw(pbuf *b, const void *d, size_t len) {
    if (!pb_reserve(b, len)) return;
    memcpy(b->p + b->n, d, len);
    b->n += len;
}

static size_t varint_enc(uint64_t v, unsigned char *out) {
    size_t k = 0;
    while (v >= 0x80) {
        out[k++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    out[k++] = (unsigned char)v;
    return k;
}

static void pb_varint(pbuf *b, uint64_t v) {
    unsigned char t[10];
    pb_raw(b, t, varint_enc(v, t));
}

enum { WT_VARINT = 0, WT_LEN = 2, WT_FIXED32 = 5 };

static void pb_tag(pbuf *b, int field, int wire) {
    pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire);
}
static void pb_int(pbuf *b, int field, int64_t v) {
    pb_tag(b, field, WT_VARINT);
    pb_varint(b, (uint64_t)v); /* negative int64: ten bytes, two's complement, as protobuf does */
}
static void pb_bytes(pbuf *b, int field, const void *d, size_t len) {
    pb_tag(b, field, WT_LEN);
    pb_varint(b, len);
    pb_raw(b, d, len);
}
static void pb_str(pbuf *b, int field, const char *s) { pb_bytes(b, field, s, strlen(s)); }

static void put_le32(unsigned char *t, float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    for (int i = 0; i < 4; i++) t[i] = (unsigned char)(u >> (8 * i));
}

static void pb_float(pbuf *b, int field, float f) {
    unsigned char t[4];
    put_le32(t, f);
    pb_tag(b, field, WT_FIXED32);
    pb_raw(b, t, 4);
}

/* A nested message: pb_begin writes its tag; pb_end puts its length in front of what was written
 * since (moving it by the length's few bytes). */
static size_t pb_begin(pbuf *b, int field) {
    pb_tag(b, field, WT_LEN);
    return b->n;
}
static void pb_end(pbuf *b, size_t start) {
    if (b->oom) return;
    unsigned char t[10];
    const size_t len = b->n - start, k = varint_enc(len, t);
    if (!pb_reserve(b, k)) return;
    memmove(b->p + start + k, b->p + start, len);
    memcpy(b->p + start, t, k);
    b->n += k;
}

/* Field numbers of onnx.proto. */
enum {
    MODEL_IR_VERSION = 1, MODEL_PRODUCER_NAME = 2, MODEL_PRODUCER_VERSION = 3, MODEL_DOC = 6,
    MODEL_GRAPH = 7, MODEL_OPSET_IMPORT = 8, MODEL_METADATA = 14,
    OPSET_DOMAIN = 1, OPSET_VERSION = 2,
    ENTRY_KEY = 1, ENTRY_VALUE = 2,
    GRAPH_NODE = 1, GRAPH_NAME = 2, GRAPH_INITIALIZER = 5, GRAPH_INPUT = 11, GRAPH_OUTPUT = 12,
    NODE_INPUT = 1, NODE_OUTPUT = 2, NODE_NAME = 3, NODE_OP_TYPE = 4, NODE_ATTRIBUTE = 5,
    ATTR_NAME = 1, ATTR_F = 2, ATTR_I = 3, ATTR_S = 4, ATTR_INTS = 8, ATTR_TYPE = 20,
    TENSOR_DIMS = 1, TENSOR_DATA_TYPE = 2, TENSOR_NAME = 8, TENSOR_RAW_DATA = 9,
    VALUE_NAME = 1, VALUE_TYPE = 2,
    TYPE_TENSOR = 1, TTYPE_ELEM = 1, TTYPE_SHAPE = 2, SHAPE_DIM = 1, DIM_VALUE = 1
};
/* AttributeProto.AttributeType and TensorProto.DataType values. */
enum { ATTR_FLOAT = 1, ATTR_INT = 2, ATTR_STRING = 3, ATTR_INTS_TYPE = 7 };
enum { DT_FLOAT = 1, DT_INT64 = 7 };

/* ---------------------------------------------------------------- the graph's pieces */

#define NAME_LEN 192

typedef struct {
    pbuf b;            /* GraphProto's fields */
    const sn_graph *g;
    const sn_paramtab *pt;
    char (*val)[NAME_LEN]; /* each node's output value */
    int *bn_uses;      /* per parameter: the convolutions with a batch-norm that use it as kernel */
    char **inits;      /* initializers written, by name */
    int n_inits, cap_inits;
    int nodes;
    int64_t params;
    sn_status st;
} ectx;

typedef struct {
    const char *name;
    int type;
    float f;
    int64_t i;
    const char *s;
    const int64_t *ints;
    int n;
} attr;

static attr a_int(const char *name, int64_t v) { return (attr){name, ATTR_INT, 0, v, NULL, NULL, 0}; }
static attr a_str(const char *name, const char *s) {
    return (attr){name, ATTR_STRING, 0, 0, s, NULL, 0};
}
static attr a_ints(const char *name, const int64_t *v, int n) {
    return (attr){name, ATTR_INTS_TYPE, 0, 0, NULL, v, n};
}

static void emit_node(ectx *e, const char *op, const char *const *ins, int n_in, const char *out,
                      const attr *attrs, int n_attrs) {
    pbuf *b = &e->b;
    const size_t node = pb_begin(b, GRAPH_NODE);
    for (int k = 0; k < n_in; k++) pb_str(b, NODE_INPUT, ins[k]);
    pb_str(b, NODE_OUTPUT, out);
    pb_str(b, NODE_NAME, out); /* a node is named after its output, unique in the graph */
    pb_str(b, NODE_OP_TYPE, op);
    for (int k = 0; k < n_attrs; k++) {
        const attr *a = &attrs[k];
        const size_t at = pb_begin(b, NODE_ATTRIBUTE);
        pb_str(b, ATTR_NAME, a->name);
        switch (a->type) {
        case ATTR_FLOAT: pb_float(b, ATTR_F, a->f); break;
        case ATTR_INT: pb_int(b, ATTR_I, a->i); break;
        case ATTR_STRING: pb_str(b, ATTR_S, a->s); break;
        default:
            for (int j = 0; j < a->n; j++) pb_int(b, ATTR_INTS, a->ints[j]);
            break;
        }
        pb_int(b, ATTR_TYPE, a->type);
        pb_end(b, at);
    }
    pb_end(b, node);
    e->nodes++;
}

/* 1 when an initializer of this name was written already; else records it and returns 0. */
static int seen(ectx *e, const char *name) {
    for (int k = 0; k < e->n_inits; k++)
        if (strcmp(e->inits[k], name) == 0) return 1;
    if (e->n_inits == e->cap_inits) {
        const int cap = e->cap_inits ? 2 * e->cap_inits : 256;
        char **p = sn_alloc((size_t)cap * sizeof *p);
        if (!p) {
            e->b.oom = 1;
            return 1;
        }
        if (e->n_inits) memcpy(p, e->inits, (size_t)e->n_inits * sizeof *p);
        sn_free(e->inits);
        e->inits = p;
        e->cap_inits = cap;
    }
    const size_t len = strlen(name) + 1;
    char *copy = sn_alloc(len);
    if (!copy) {
        e->b.oom = 1;
        return 1;
    }
    memcpy(copy, name, len);
    e->inits[e->n_inits++] = copy;
    return 0;
}

/* A float initializer (raw_data, little-endian); `param` counts it in the report's params. */
static void emit_f32(ectx *e, const char *name, int ndim, const int64_t *dims, const float *data,
                     int param) {
    pbuf *b = &e->b;
    size_t count = 1;
    for (int d = 0; d < ndim; d++) count *= (size_t)dims[d];
    const size_t t = pb_begin(b, GRAPH_INITIALIZER);
    for (int d = 0; d < ndim; d++) pb_int(b, TENSOR_DIMS, dims[d]);
    pb_int(b, TENSOR_DATA_TYPE, DT_FLOAT);
    pb_str(b, TENSOR_NAME, name);
    pb_tag(b, TENSOR_RAW_DATA, WT_LEN);
    pb_varint(b, count * 4);
    if (pb_reserve(b, count * 4)) {
        for (size_t k = 0; k < count; k++) put_le32(b->p + b->n + 4 * k, data[k]);
        b->n += count * 4;
    }
    pb_end(b, t);
    if (param) e->params += (int64_t)count;
}

static void emit_i64(ectx *e, const char *name, int n, const int64_t *data) {
    pbuf *b = &e->b;
    const size_t t = pb_begin(b, GRAPH_INITIALIZER);
    pb_int(b, TENSOR_DIMS, n);
    pb_int(b, TENSOR_DATA_TYPE, DT_INT64);
    pb_str(b, TENSOR_NAME, name);
    pb_tag(b, TENSOR_RAW_DATA, WT_LEN);
    pb_varint(b, (uint64_t)n * 8);
    for (int k = 0; k < n; k++) {
        unsigned char v[8];
        for (int j = 0; j < 8; j++) v[j] = (unsigned char)((uint64_t)data[k] >> (8 * j));
        pb_raw(b, v, 8);
    }
    pb_end(b, t);
}

/* A float scalar constant, written once; returns its name. */
static const char *scalar(ectx *e, const char *name, float v) {
    if (!seen(e, name)) emit_f32(e, name, 0, NULL, &v, 0);
    return name;
}

/* y = act(x), as the kernels compute it (src/kernels/portable/act_inline.h). */
static void emit_act(ectx *e, sn_act act, const char *x, const char *y) {
    char t1[NAME_LEN + 16], t2[NAME_LEN + 16];
    const char *ins[3] = {x, NULL, NULL};
    switch (act) {
    case SN_ACT_NONE: emit_node(e, "Identity", ins, 1, y, NULL, 0); break;
    case SN_ACT_RELU: emit_node(e, "Relu", ins, 1, y, NULL, 0); break;
    case SN_ACT_SIGMOID: emit_node(e, "Sigmoid", ins, 1, y, NULL, 0); break;
    case SN_ACT_HSWISH: emit_node(e, "HardSwish", ins, 1, y, NULL, 0); break; /* x relu6(x+3)/6 */
    case SN_ACT_RELU6:
        ins[1] = scalar(e, "const.0", 0.0f);
        ins[2] = scalar(e, "const.6", 6.0f);
        emit_node(e, "Clip", ins, 3, y, NULL, 0);
        break;
    case SN_ACT_SWISH: /* x * sigmoid(x) */
        snprintf(t1, sizeof t1, "%s/sigmoid", y);
        emit_node(e, "Sigmoid", ins, 1, t1, NULL, 0);
        ins[1] = t1;
        emit_node(e, "Mul", ins, 2, y, NULL, 0);
        break;
    case SN_ACT_HSIGMOID: /* relu6(x + 3) * 0.16667, the Model Garden's constant (not 1/6) */
        snprintf(t1, sizeof t1, "%s/add3", y);
        snprintf(t2, sizeof t2, "%s/relu6", y);
        ins[1] = scalar(e, "const.3", 3.0f);
        emit_node(e, "Add", ins, 2, t1, NULL, 0);
        ins[0] = t1;
        ins[1] = scalar(e, "const.0", 0.0f);
        ins[2] = scalar(e, "const.6", 6.0f);
        emit_node(e, "Clip", ins, 3, t2, NULL, 0);
        ins[0] = t2;
        ins[1] = scalar(e, "const.hsigmoid", 0.16667f);
        emit_node(e, "Mul", ins, 2, y, NULL, 0);
        break;
    }
}

/* The name of node i's op before its activation: its value itself when it has none. */
static const char *pre_act(ectx *e, int i, sn_act act, char *buf, size_t len) {
    if (act == SN_ACT_NONE) return e->val[i];
    snprintf(buf, len, "%s/%s", e->val[i], sn_op_name(e->g->nodes[i].op));
    return buf;
}

/* name without `suffix` at its end, into out. */
static void strip(const char *name, const char *suffix, char *out, size_t len) {
    size_t n = strlen(name), s = strlen(suffix);
    if (n >= s && strcmp(name + n - s, suffix) == 0) n -= s;
    snprintf(out, len, "%.*s", (int)n, name);
}

/* A convolution: kernel HWIO -> OIHW, batch-norm folded, then its activation. Initializers keep
 * the weight file's names; a folded kernel and bias are "<conv>.weight.folded_<bn>" and
 * "<conv>.bias.folded_<bn>" (bn: "bn", ...). A kernel that several convolutions share, each with
 * its own batch-norm (the RetinaNet head's, one per level), is written once, unfolded: each use
 * is Conv, then Mul by "<conv>.<bn>.scale" and Add of "<conv>.<bn>.shift" ([c][1][1]: the same
 * fold as a per-channel affine, so the file does not hold a copy of the kernel per level). */
static void emit_conv(ectx *e, int i) {
    const sn_node *nd = &e->g->nodes[i];
    const sn_conv_desc *d = &nd->conv;
    const sn_tensor_param *w = &e->pt->t[nd->p_weight];
    const int cin_g = d->cin / d->groups, cout = d->cout, kh = d->kh, kw = d->kw;
    const int bn = nd->p_gamma >= 0, shared = bn && e->bn_uses[nd->p_weight] > 1;
    char prefix[NAME_LEN], bnp[NAME_LEN], wname[2 * NAME_LEN + 32], bname[2 * NAME_LEN + 32] = "";
    char scname[2 * NAME_LEN + 32] = "", shname[2 * NAME_LEN + 32] = "";
    strip(w->name, ".weight", prefix, sizeof prefix);
    const float *wsrc = w->data, *bsrc = nd->p_bias >= 0 ? e->pt->t[nd->p_bias].data : NULL;
    float *fw = NULL, *fb = NULL, *scale = NULL, *oihw = NULL;
    if (bn) {
        strip(e->pt->t[nd->p_gamma].name, ".gamma", bnp, sizeof bnp);
        fb = sn_alloc((size_t)cout * sizeof *fb);
        if (!fb) goto oom;
    }
    if (bn && !shared) {
        const char *dot = strrchr(bnp, '.');
        snprintf(wname, sizeof wname, "%s.weight.folded_%s", prefix, dot ? dot + 1 : bnp);
        snprintf(bname, sizeof bname, "%s.bias.folded_%s", prefix, dot ? dot + 1 : bnp);
        if (seen(e, wname)) {
            wsrc = bsrc = NULL; /* written for an earlier node */
        } else {
            if (!(fw = sn_alloc(w->count * sizeof *fw)) ||
                sn_node_fold_bn(nd, e->pt, fw, fb, NULL) != SN_OK)
                goto oom;
            wsrc = fw;
            bsrc = fb;
            seen(e, bname);
        }
    } else {
        snprintf(wname, sizeof wname, "%s", w->name);
        if (seen(e, wname)) wsrc = NULL;
        if (nd->p_bias >= 0 && !shared) { /* a shared one's bias is in its shift */
            snprintf(bname, sizeof bname, "%s", e->pt->t[nd->p_bias].name);
            if (seen(e, bname)) bsrc = NULL;
        }
    }
    if (shared) {
        snprintf(scname, sizeof scname, "%s.scale", bnp);
        snprintf(shname, sizeof shname, "%s.shift", bnp);
        if (!seen(e, scname)) {
            if (!(scale = sn_alloc((size_t)cout * sizeof *scale)) ||
                sn_node_fold_bn(nd, e->pt, NULL, fb, scale) != SN_OK)
                goto oom;
            const int64_t dims[3] = {cout, 1, 1};
            emit_f32(e, scname, 3, dims, scale, 1);
            seen(e, shname);
            emit_f32(e, shname, 3, dims, fb, 1);
        }
    }
    if (wsrc) {
        if (!(oihw = sn_alloc(w->count * sizeof *oihw))) goto oom;
        for (int y = 0; y < kh; y++)
            for (int x = 0; x < kw; x++)
                for (int ci = 0; ci < cin_g; ci++)
                    for (int co = 0; co < cout; co++)
                        oihw[(((size_t)co * cin_g + ci) * kh + y) * kw + x] =
                            wsrc[(((size_t)y * kw + x) * cin_g + ci) * cout + co];
        const int64_t dims[4] = {cout, cin_g, kh, kw};
        emit_f32(e, wname, 4, dims, oihw, 1);
    }
    if (bname[0] && bsrc) {
        const int64_t dims[1] = {cout};
        emit_f32(e, bname, 1, dims, bsrc, 1);
    }
    {
        const int64_t ks[2] = {kh, kw}, st[2] = {d->stride_h, d->stride_w}, dil[2] = {1, 1};
        const int64_t pads[4] = {d->pad.top, d->pad.left, d->pad.bottom, d->pad.right};
        const attr at[5] = {a_ints("kernel_shape", ks, 2), a_ints("strides", st, 2),
                            a_ints("pads", pads, 4), a_ints("dilations", dil, 2),
                            a_int("group", d->groups)};
        const char *ins[3] = {e->val[nd->in[0]], wname, bname};
        char pre[NAME_LEN + 16], cv[NAME_LEN + 16], sc[NAME_LEN + 16];
        const char *y = pre_act(e, i, nd->act, pre, sizeof pre);
        if (shared) {
            snprintf(cv, sizeof cv, "%s/conv_nobn", e->val[i]);
            snprintf(sc, sizeof sc, "%s/bn_scale", e->val[i]);
            emit_node(e, "Conv", ins, 2, cv, at, 5);
            const char *m_in[2] = {cv, scname}, *a_in[2] = {sc, shname};
            emit_node(e, "Mul", m_in, 2, sc, NULL, 0);
            emit_node(e, "Add", a_in, 2, y, NULL, 0);
        } else {
            emit_node(e, "Conv", ins, bname[0] ? 3 : 2, y, at, 5);
        }
        if (nd->act != SN_ACT_NONE) emit_act(e, nd->act, y, e->val[i]);
    }
    goto done;
oom:
    e->b.oom = 1;
done:
    sn_free(fw);
    sn_free(fb);
    sn_free(scale);
    sn_free(oihw);
}

/* Resize to the node's size, nearest, source index floor(dst * in / out): integer upsampling
 * and the tpu flavour's resize alike. */
static void emit_resize(ectx *e, int i) {
    const sn_node *nd = &e->g->nodes[i];
    char sizes[NAME_LEN + 16];
    snprintf(sizes, sizeof sizes, "%s/sizes", e->val[i]);
    const int64_t dims[4] = {nd->n, nd->c, nd->h, nd->w};
    emit_i64(e, sizes, 4, dims);
    const attr at[3] = {a_str("mode", "nearest"),
                        a_str("coordinate_transformation_mode", "asymmetric"),
                        a_str("nearest_mode", "floor")};
    const char *ins[4] = {e->val[nd->in[0]], "", "", sizes};
    emit_node(e, "Resize", ins, 4, e->val[i], at, 3);
}

static void emit_dense(ectx *e, int i) {
    const sn_node *nd = &e->g->nodes[i];
    const sn_tensor_param *w = &e->pt->t[nd->p_weight];
    char flat[NAME_LEN + 16], pre[NAME_LEN + 16];
    snprintf(flat, sizeof flat, "%s/flatten", e->val[i]);
    const char *ins[3] = {e->val[nd->in[0]], NULL, NULL};
    const attr ax = a_int("axis", 1);
    emit_node(e, "Flatten", ins, 1, flat, &ax, 1);
    if (!seen(e, w->name)) emit_f32(e, w->name, 2, w->shape, w->data, 1); /* [cin][cout] */
    ins[0] = flat;
    ins[1] = w->name;
    int n_in = 2;
    if (nd->p_bias >= 0) {
        const sn_tensor_param *bp = &e->pt->t[nd->p_bias];
        if (!seen(e, bp->name)) emit_f32(e, bp->name, 1, bp->shape, bp->data, 1);
        ins[n_in++] = bp->name;
    }
    const char *y = pre_act(e, i, nd->act, pre, sizeof pre);
    emit_node(e, "Gemm", ins, n_in, y, NULL, 0);
    if (nd->act != SN_ACT_NONE) emit_act(e, nd->act, y, e->val[i]);
}

static void emit_op(ectx *e, int i) {
    const sn_node *nd = &e->g->nodes[i];
    const char *ins[SN_MAX_NODE_INPUTS];
    for (int k = 0; k < nd->n_in; k++) ins[k] = e->val[nd->in[k]];
    char pre[NAME_LEN + 16], sc[NAME_LEN + 16];
    switch (nd->op) {
    case SN_OP_INPUT: break;
    case SN_OP_CONV: emit_conv(e, i); break;
    case SN_OP_ADD: {
        const char *y = pre_act(e, i, nd->act, pre, sizeof pre);
        emit_node(e, nd->n_in == 2 ? "Add" : "Sum", ins, nd->n_in, y, NULL, 0);
        if (nd->act != SN_ACT_NONE) emit_act(e, nd->act, y, e->val[i]);
        break;
    }
    case SN_OP_MAXPOOL: {
        /* ONNX pads a max-pool with -inf: padded cells never win, as in sn_maxpool_f32. */
        const int64_t ks[2] = {nd->pool_k, nd->pool_k}, st[2] = {nd->pool_stride, nd->pool_stride};
        const int64_t pads[4] = {nd->pool_pad.top, nd->pool_pad.left, nd->pool_pad.bottom,
                                 nd->pool_pad.right};
        const attr at[3] = {a_ints("kernel_shape", ks, 2), a_ints("strides", st, 2),
                            a_ints("pads", pads, 4)};
        emit_node(e, "MaxPool", ins, 1, e->val[i], at, 3);
        break;
    }
    case SN_OP_UPSAMPLE:
    case SN_OP_RESIZE: emit_resize(e, i); break;
    case SN_OP_GAP: emit_node(e, "GlobalAveragePool", ins, 1, e->val[i], NULL, 0); break;
    case SN_OP_DENSE: emit_dense(e, i); break;
    case SN_OP_MUL_CHANNEL: /* [n][c][h][w] * [n][c][1][1], broadcast */
        emit_node(e, "Mul", ins, 2, e->val[i], NULL, 0);
        break;
    case SN_OP_SCALE:
        snprintf(sc, sizeof sc, "%s/factor", e->val[i]);
        ins[1] = scalar(e, sc, nd->scale);
        emit_node(e, "Mul", ins, 2, e->val[i], NULL, 0);
        break;
    }
}

/* ValueInfoProto of a float tensor. */
static void emit_value_info(pbuf *b, int field, const char *name, int ndim, const int64_t *dims) {
    const size_t v = pb_begin(b, field);
    pb_str(b, VALUE_NAME, name);
    const size_t ty = pb_begin(b, VALUE_TYPE);
    const size_t tt = pb_begin(b, TYPE_TENSOR);
    pb_int(b, TTYPE_ELEM, DT_FLOAT);
    const size_t sh = pb_begin(b, TTYPE_SHAPE);
    for (int d = 0; d < ndim; d++) {
        const size_t dm = pb_begin(b, SHAPE_DIM);
        pb_int(b, DIM_VALUE, dims[d]);
        pb_end(b, dm);
    }
    pb_end(b, sh);
    pb_end(b, tt);
    pb_end(b, ty);
    pb_end(b, v);
}

static void emit_meta(pbuf *b, const char *key, const char *value) {
    const size_t m = pb_begin(b, MODEL_METADATA);
    pb_str(b, ENTRY_KEY, key);
    pb_str(b, ENTRY_VALUE, value);
    pb_end(b, m);
}

/* ---------------------------------------------------------------- the model */

/* The base of an unnamed node's value: its convolution's or dense layer's tensor prefix, or its
 * op ("add", "maxpool", ...). Values are "<base>:<node index>", outputs their own names. */
static void value_names(ectx *e) {
    for (int i = 0; i < e->g->n; i++) {
        const sn_node *nd = &e->g->nodes[i];
        char base[NAME_LEN];
        if (nd->op == SN_OP_INPUT)
            snprintf(base, sizeof base, "input");
        else if (nd->p_weight >= 0)
            strip(e->pt->t[nd->p_weight].name, ".weight", base, sizeof base);
        else
            snprintf(base, sizeof base, "%s", sn_op_name(nd->op));
        if (nd->op == SN_OP_INPUT)
            snprintf(e->val[i], NAME_LEN, "input");
        else if (nd->out_name[0])
            snprintf(e->val[i], NAME_LEN, "%s", nd->out_name);
        else
            snprintf(e->val[i], NAME_LEN, "%.150s:%d", base, i);
    }
}

static sn_status write_file(const char *path, const pbuf *head, const pbuf *graph) {
    sn_save_file out;
    sn_status st = sn_save_open(path, &out);
    if (st != SN_OK) return st;
    if (fwrite(head->p, 1, head->n, out.f) != head->n ||
        fwrite(graph->p, 1, graph->n, out.f) != graph->n)
        st = sn_error(SN_ERR_IO, "%s: write error", path);
    return sn_save_close(&out, st);
}

sn_status sn_model_export_onnx(sn_model *m, int batch, int height, int width, const char *path,
                               sn_onnx_info *info) {
    if (!m || !path) return sn_error(SN_ERR_INVALID_ARG, "sn_model_export_onnx: NULL argument");
    if (info) memset(info, 0, sizeof *info);
    sn_graph g = {0};
    sn_status st = sn_build_graph(m, batch, height, width, 0, &g);
    if (st != SN_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sn_last_error());
        sn_graph_free(&g);
        return sn_error(st, "%s: cannot export: %s", path, msg);
    }
    const sn_config *c = &m->cfg;
    ectx e = {0};
    e.g = &g;
    e.pt = &m->params;
    e.val = sn_alloc((size_t)g.n * sizeof *e.val);
    pbuf head = {0};
    if (!e.val) {
        st = SN_ERR_OOM;
        goto out;
    }
    value_names(&e);
    if (!(e.bn_uses = sn_calloc((size_t)m->params.n, sizeof *e.bn_uses))) {
        st = SN_ERR_OOM;
        goto out;
    }
    for (int i = 0; i < g.n; i++)
        if (g.nodes[i].op == SN_OP_CONV && g.nodes[i].p_gamma >= 0) e.bn_uses[g.nodes[i].p_weight]++;
    /* A dense layer's output is [n][c] in the file: only the model's logits may be one. */
    for (int i = 0; i < g.n; i++)
        for (int k = 0; k < g.nodes[i].n_in; k++)
            if (g.nodes[g.nodes[i].in[k]].op == SN_OP_DENSE) {
                st = sn_error(SN_ERR_UNSUPPORTED, "%s: cannot export: a dense layer read by "
                              "another layer (%s)", path, e.val[i]);
                goto out;
            }

    char gname[SN_NAME_MAX + 64];
    snprintf(gname, sizeof gname, "%s %s (%s)", c->model, sn_head_name(c->head),
             sn_flavour_name(c->flavour));
    pb_str(&e.b, GRAPH_NAME, gname);
    {
        const int64_t dims[4] = {batch, 3, height, width};
        emit_value_info(&e.b, GRAPH_INPUT, "input", 4, dims);
    }
    for (int i = 0; i < g.n && !e.b.oom; i++) emit_op(&e, i);
    int outputs = 0;
    for (int i = 0; i < g.n; i++) {
        const sn_node *nd = &g.nodes[i];
        if (!nd->out_name[0]) continue;
        const int64_t dims[4] = {nd->n, nd->c, nd->h, nd->w};
        emit_value_info(&e.b, GRAPH_OUTPUT, e.val[i], nd->op == SN_OP_DENSE ? 2 : 4, dims);
        outputs++;
    }

    /* ModelProto: its fields, then the graph's tag and length; the graph's bytes follow in the
     * file as they are. */
    pb_int(&head, MODEL_IR_VERSION, SN_ONNX_IR_VERSION);
    pb_str(&head, MODEL_PRODUCER_NAME, "spinenet");
    pb_str(&head, MODEL_PRODUCER_VERSION, SN_VERSION_STRING);
    {
        const size_t o = pb_begin(&head, MODEL_OPSET_IMPORT);
        pb_str(&head, OPSET_DOMAIN, "");
        pb_int(&head, OPSET_VERSION, SN_ONNX_OPSET);
        pb_end(&head, o);
    }
    pb_str(&head, MODEL_DOC, "SpineNet (Du et al., CVPR 2020) exported by spinenet export --onnx. "
           "Input: NCHW float RGB, (pixel / 255 - mean) / std. Batch-norm folded.");
    {
        char v[128];
        emit_meta(&head, "model", c->model);
        emit_meta(&head, "flavour", sn_flavour_name(c->flavour));
        emit_meta(&head, "head", sn_head_name(c->head));
        emit_meta(&head, "activation", sn_act_name(c->activation));
        snprintf(v, sizeof v, "%d", c->num_classes);
        emit_meta(&head, "num_classes", v);
        snprintf(v, sizeof v, "%d", c->min_level);
        emit_meta(&head, "min_level", v);
        snprintf(v, sizeof v, "%d", c->max_level);
        emit_meta(&head, "max_level", v);
        snprintf(v, sizeof v, "%.9g", (double)c->anchor_size);
        emit_meta(&head, "anchor_size", v);
        emit_meta(&head, "aspect_ratios", c->flavour == SN_FLAVOUR_TPU ? "1,2,0.5" : "0.5,1,2");
        emit_meta(&head, "input_layout", "NCHW");
        emit_meta(&head, "input_mean", "0.485,0.456,0.406");
        emit_meta(&head, "input_std", "0.229,0.224,0.225");
        emit_meta(&head, "input_scale", "1/255");
        if (m->class_names) emit_meta(&head, "class_names", m->class_names);
    }
    pb_tag(&head, MODEL_GRAPH, WT_LEN);
    pb_varint(&head, e.b.n);
    if (e.b.oom || head.oom) {
        st = SN_ERR_OOM;
        goto out;
    }
    const size_t bytes = head.n + e.b.n;
    if (bytes > 0x7fffffffu) {
        st = sn_error(SN_ERR_UNSUPPORTED, "%s: the model is %.2f GiB, over protobuf's 2 GiB "
                      "(ONNX external data is not written); export a smaller variant", path,
                      (double)bytes / (1024.0 * 1024.0 * 1024.0));
        goto out;
    }
    st = write_file(path, &head, &e.b);
    if (st == SN_OK && info) {
        info->nodes = e.nodes;
        info->outputs = outputs;
        info->params = e.params;
        info->bytes = bytes;
    }
out:
    if (st == SN_ERR_OOM) sn_error(SN_ERR_OOM, "%s: out of memory writing the ONNX model", path);
    for (int k = 0; k < e.n_inits; k++) sn_free(e.inits[k]);
    sn_free(e.inits);
    sn_free(e.val);
    sn_free(e.bn_uses);
    sn_free(e.b.p);
    sn_free(head.p);
    sn_graph_free(&g);
    return st;
}
