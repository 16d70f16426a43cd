/* The computation graph: named parameters, nodes in execution order with static shapes and
 * element types, an activation arena planned from tensor lifetimes, and forward execution. */
#ifndef SN_GRAPH_H
#define SN_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "spinenet.h"

/* How a parameter is initialised by sn_model_create (docs/architecture.md, "Initialisation"). */
typedef enum {
    SN_INIT_VARIANCE_SCALING, /* truncated normal, scale 1, fan-in (Keras/TF default) */
    SN_INIT_NORMAL,           /* N(0, value) */
    SN_INIT_GLOROT_UNIFORM,   /* Keras default for separable convs */
    SN_INIT_CONST             /* all elements = value */
} sn_init_kind;

typedef struct {
    char *name;
    int ndim;
    int64_t shape[4];
    size_t count;
    float *data;
    sn_init_kind init;
    double init_value;
    int64_t fan_in, fan_out; /* as TensorFlow computes them, for initialisation */
    int trainable_count;     /* 1 if counted in "params" (weights, biases, gamma, beta) */
} sn_tensor_param;

typedef struct {
    sn_tensor_param *t;
    int n, cap;
} sn_paramtab;

void sn_paramtab_free(sn_paramtab *pt);
int sn_paramtab_find(const sn_paramtab *pt, const char *name);

typedef enum {
    SN_OP_INPUT,
    SN_OP_CONV,        /* conv (+bias) (+BN) (+act) */
    SN_OP_ADD,         /* sum of inputs, then act */
    SN_OP_MAXPOOL,
    SN_OP_UPSAMPLE,    /* integer nearest */
    SN_OP_RESIZE,      /* nearest, floor(dst*in/out) */
    SN_OP_GAP,         /* -> [n][1][1][c] */
    SN_OP_DENSE,       /* [n][1][1][cin] -> [n][1][1][cout] */
    SN_OP_MUL_CHANNEL, /* x[n][h][w][c] * gate[n][1][1][c] */
    SN_OP_SCALE        /* x * scale */
} sn_op;

/* The op's name in reports and messages ("conv", "add", ...; sn_layer_profile.op). A switch
 * without a default: an op added above without a name here fails to compile (-Wswitch). */
static inline const char *sn_op_name(sn_op op) {
    switch (op) {
    case SN_OP_INPUT: return "input";
    case SN_OP_CONV: return "conv";
    case SN_OP_ADD: return "add";
    case SN_OP_MAXPOOL: return "maxpool";
    case SN_OP_UPSAMPLE: return "upsample";
    case SN_OP_RESIZE: return "resize";
    case SN_OP_GAP: return "gap";
    case SN_OP_DENSE: return "dense";
    case SN_OP_MUL_CHANNEL: return "mul_channel";
    case SN_OP_SCALE: return "scale";
    }
    return "?";
}

#define SN_MAX_NODE_INPUTS 8

/* The element type of a graph tensor. Every op computes in f32 today, the only type there is;
 * tensors carry their type and the arenas are addressed in bytes so that narrower types (int8,
 * bf16) can later be planned beside f32 ones without redesigning the planner (their kernels and
 * the ops' type rules are still to write). */
typedef enum {
    SN_DTYPE_F32
} sn_dtype;

/* Bytes of one element. */
static inline size_t sn_dtype_size(sn_dtype t) {
    switch (t) {
    case SN_DTYPE_F32: return sizeof(float);
    }
    return 0;
}

/* Every tensor starts on a 64-byte boundary of its arena (and the arenas' bases are 64-byte
 * aligned, sn_alloc): a cache line, and the kernels' widest vector. */
#define SN_TENSOR_ALIGN 64

/* bytes rounded up to SN_TENSOR_ALIGN: the room a tensor takes in an arena. */
static inline size_t sn_tensor_span(size_t bytes) {
    return (bytes + (SN_TENSOR_ALIGN - 1)) & ~(size_t)(SN_TENSOR_ALIGN - 1);
}

/* The f32 view of an arena (activations, gradients or scratch) at a byte offset. */
static inline float *sn_arena_f32(unsigned char *base, size_t off) {
    return (float *)(void *)(base + off);
}

typedef struct {
    sn_op op;
    sn_dtype dtype; /* of the output (SN_DTYPE_F32, set by sn_node_init) */
    int in[SN_MAX_NODE_INPUTS];
    int n_in;
    int n, h, w, c; /* output shape */
    /* conv */
    sn_conv_desc conv;
    int p_weight, p_bias;                 /* parameter indices or -1 */
    int p_gamma, p_beta, p_mean, p_var;   /* -1 when no batch-norm */
    float bn_eps;
    sn_act act;
    /* pools and resampling */
    int pool_k, pool_stride;
    sn_pad pool_pad;
    int up_h, up_w;
    float scale;
    /* report */
    int block;         /* feature index for `info`; SN_BLOCK_* below for the rest */
    char out_name[16]; /* non-empty: a model output ("P3", "class.3", "logits") */
    /* training: stochastic depth on input 0 of an ADD (the block's main path), per-sample keep
     * masks */
    float drop_rate;
    uint8_t *keep;     /* [n] (owned), drawn by each training forward */
    /* plan */
    /* inference fusion (sn_graph_plan): a convolution whose only reader is a 2-input ADD takes
     * the other input as its epilogue's residual and the ADD's activation (fuse_res: that
     * input's node, else -1); the ADD then only names the convolution's buffer (alias, else -1) */
    int fuse_res, alias;
    /* Inference: a channel gate (MUL_CHANNEL) whose only reader is this convolution is applied
     * to the convolution's weights instead (sn_epilogue.in_scale; the gate's node, else -1);
     * the MUL_CHANNEL then names its input's buffer (alias). */
    int in_gate;
    sn_act fuse_act;
    size_t offset;     /* in bytes, into the arena */
    int last_use;
    float *fw, *fb;    /* folded weights and bias (owned), when BN is folded */
    /* training plan: what the backward needs besides the node outputs, byte offsets into the
     * arena (SIZE_MAX = none) */
    size_t off_z;      /* conv output before BN, or ADD/DENSE sum before the activation (the
                        * fused BN+act backward recomputes the BN output from it) */
    size_t off_stats;  /* BN batch mean and inverse std, 2*c floats (then, synchronized, the
                        * row count over every process, a double) */
    size_t goff;       /* gradient of the output (f32), in bytes into the gradient arena */
} sn_node;

#define SN_BLOCK_STEM (-1)
#define SN_BLOCK_HEAD (-2)
#define SN_BLOCK_ENDPOINTS (-3)

typedef struct {
    sn_node *nodes;
    int n, cap;
    unsigned char *arena; /* the node outputs at their byte offsets (sn_node.offset) */
    size_t arena_bytes;
    const float *input; /* the caller's input during run */
    int nthreads;
    int folded;
    /* training */
    int training;
    int keep_moving_stats; /* the training forward leaves the BN moving statistics alone (the
                            * data-parallel replicas other than the first, sn_model.replicas) */
    unsigned char *grad_arena; /* the outputs' gradients at sn_node.goff */
    size_t grad_bytes;
    /* profiling (sn_model_set_profile): seconds spent in each node, summed over prof_runs */
    double *prof_sec;
    long prof_runs;
    /* Training profile (sn_graph_set_train_profile): seconds of the training forward and backward
     * per node and part (sn_prof_slot), summed over prof_train_runs backward passes, plus each
     * backward's setup (zeroing the gradient arena, copying the output gradients in). NULL: off,
     * and the passes read no clock. */
    double *prof_train; /* [n][SN_PROF_SLOTS] */
    double prof_bwd_setup_sec;
    long prof_train_fwd_runs, prof_train_runs;
    unsigned char *scratch; /* two node-sized work buffers for the backward, at byte 0 and at
                             * byte scratch_bytes */
    size_t scratch_bytes;   /* of each, a multiple of SN_TENSOR_ALIGN */
    /* Cross-replica (synchronized) batch-norm, for data-parallel training over processes
     * (src/dist, src/train): when bn_reduce is set, the training forward of every batch-norm
     * hands its per-channel sums over the local batch to bn_reduce before using them, and
     * normalises with what comes back (the sums over every process's batch); the backward does
     * the same with its two per-channel sums. buf holds n doubles, summed in place:
     *   forward:  n = 1 + 2c: [rows, sum x (c), sum x^2 (c)]  (rows = n*h*w of this graph)
     *   backward: n = 2c:     [sum g (c), sum g * xhat (c)]   (g = dL/d(BN output before act))
     * Every process must call it in the same order (the graph's node order). A non-OK return
     * stops the pass with that status. NULL: each graph normalises with its own batch. */
    sn_status (*bn_reduce)(void *ctx, double *buf, size_t n);
    void *bn_reduce_ctx;
    /* Non-zero: the training forward of a batch-norm takes its statistics in a pass of its own
     * over the convolution's output (sn_batchnorm_act_train_f32), the reference, instead of
     * from the convolution's tiles (sn_conv2d_stats_f32, the default). For the tests that
     * compare the two; the synchronized path (bn_reduce) always takes its own pass. */
    int bn_plain_stats;
    /* Called by the backward right after node i's backward has added its parameter gradients
     * (nodes come in reverse order); a parameter's gradient is complete once every node that
     * reads it has been called (the RetinaNet head's shared convolutions are read by one node
     * per level), so a caller can start sending it while the backward goes on. NULL: not
     * called. A non-OK return stops the backward. */
    sn_status (*grads_ready)(void *ctx, int node);
    void *grads_ready_ctx;
} sn_graph;

void sn_graph_free(sn_graph *g);
/* Append a node; returns its index or -1 (error set) on allocation failure. */
int sn_graph_add(sn_graph *g, const sn_node *node);
/* A node with everything "unset" (-1 params, no act). */
sn_node sn_node_init(sn_op op);

/* Liveness and arena offsets (bytes) for inference, replacing any training plan's; folds BN
 * into conv weights when fold != 0. */
sn_status sn_graph_plan(sn_graph *g, const sn_paramtab *pt, int fold);
sn_status sn_graph_run(sn_graph *g, const sn_paramtab *pt, const float *input);
/* The batch-norm of convolution node nd folded into its weights (HWIO, as the parameter) and
 * bias: fw (the weight's count; NULL: not computed) = w * s, fb (conv.cout) = beta +
 * (bias - mean) * s, and scale (conv.cout, or NULL) = s = gamma / sqrt(var + eps). The fold
 * sn_graph_plan does; the ONNX export (src/models/onnx.c) writes the same numbers. */
sn_status sn_node_fold_bn(const sn_node *nd, const sn_paramtab *pt, float *fw, float *fb,
                          float *scale);
/* The forward of node i where its op runs the same way in inference (sn_graph_run) and in the
 * training forward: max-pool, upsample, resize, GAP, dense, channel gate, scale. Reads its
 * inputs' values, writes its output (a dense layer's sum before the activation to off_z where
 * the training plan keeps it). INPUT, CONV and ADD differ (folding and fusion in inference,
 * batch statistics and stochastic depth in training): SN_ERR_STATE, the caller runs them. */
sn_status sn_graph_run_simple(sn_graph *g, const sn_paramtab *pt, int i);
/* A node's value (the caller's input for the INPUT node), read as f32: valid after a run or a
 * training forward, for an f32 node. */
const float *sn_graph_f32(const sn_graph *g, int node);
size_t sn_node_elems(const sn_node *nd);
/* Bytes of a node's output (elements times its element size). */
size_t sn_node_bytes(const sn_node *nd);

/* Training (src/nn/backprop.c). The plan keeps every tensor the backward reads. The forward uses
 * batch statistics and updates the moving ones (momentum, unbiased variance when asked); it
 * draws stochastic-depth masks from `seed`. The backward takes dL/d(output node) and accumulates
 * parameter gradients into grads[i] (one buffer per parameter, NULL to skip). */
sn_status sn_graph_plan_train(sn_graph *g);
/* The parts of a node's training step the profile tells apart. A convolution's forward is the
 * convolution (FWD_OP) then its fused batch-norm and activation (FWD_NORM); an add's, the sum
 * then the activation; the backward the other way round (BWD_NORM: through the activation and
 * batch-norm, BWD_OP: the op's own backward). Ops without a trailing part use only *_OP. */
typedef enum { SN_PROF_FWD_OP, SN_PROF_FWD_NORM, SN_PROF_BWD_NORM, SN_PROF_BWD_OP,
               SN_PROF_SLOTS } sn_prof_slot;
/* Profile the training forward and backward (on != 0), zeroing the counters, or stop (the
 * counters freed). Call after sn_graph_plan_train (the node count is the plan's). The numbers
 * computed are the same either way (only clocks are read). */
sn_status sn_graph_set_train_profile(sn_graph *g, int on);
sn_status sn_graph_forward_train(sn_graph *g, sn_paramtab *pt, const float *input, float bn_momentum,
                                 int unbiased_running_var, uint64_t seed);
sn_status sn_graph_backward(sn_graph *g, const sn_paramtab *pt, int out_node, const float *dout,
                            float *const *grads);
/* The same from several output nodes at once (a detection head's class and box outputs): the
 * loss is a function of all of them, dL/d(out_nodes[j]) is douts[j]; one pass runs back from
 * the last of them, so a tensor read by several outputs' paths gets the sum of their gradients. */
sn_status sn_graph_backward_multi(sn_graph *g, const sn_paramtab *pt, int n_out,
                                  const int *out_nodes, const float *const *douts,
                                  float *const *grads);

/* Multiply-adds of one node at its planned shape (batch included). */
int64_t sn_node_macs(const sn_graph *g, const sn_node *nd);

#endif
