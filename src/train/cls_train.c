/* The classification loss of a model with the classifier head: softmax cross-entropy with label
 * smoothing on the logits of a training forward, and its backward, over the data-parallel parts
 * (the detection loss is det_train.c). */
#include <math.h>

#include "core.h"
#include "model.h"
#include "model_train.h"

typedef struct {
    const float *input;
    const int32_t *labels;
    float smoothing;
    uint64_t seed;
    const sn_loss_sync *sync;
    double loss[SN_MAX_REPLICAS];
} xent_job;

/* One part of the classification loss: its images through its graph, the softmax cross-entropy
 * of its labels (a mean over the part) divided by the number of parts, so that the parts' sum is
 * the mean over the whole batch. */
static sn_status xent_part(sn_model *m, int r, float *const *grads, void *user) {
    xent_job *j = user;
    sn_graph *g = sn_model_part_graph(m, r);
    const int per = g->nodes[0].n, parts = sn_model_train_parts(m);
    const size_t in_elems = (size_t)g->nodes[0].h * g->nodes[0].w * g->nodes[0].c;
    /* TF's fused batch-norm kernel feeds the moving variance with the unbiased batch variance. */
    sn_status st = sn_graph_forward_train(g, &m->params, j->input + (size_t)r * per * in_elems,
                                          m->cfg.bn_momentum, 1, sn_part_seed(j->seed, r));
    if (st != SN_OK) return st;
    int out = g->n - 1;
    const sn_node *ln = &g->nodes[out];
    float *dlogits = sn_alloc(sn_node_elems(ln) * sizeof(float));
    if (!dlogits) return SN_ERR_OOM;
    const int32_t *labels = j->labels + (size_t)r * per;
    double l = sn_softmax_xent_f32(ln->n, ln->c, sn_graph_f32(g, out), labels, j->smoothing,
                                   dlogits);
    if (j->sync && j->sync->before_backward &&
        (st = j->sync->before_backward(j->sync->ctx, isfinite(l))) != SN_OK) {
        sn_free(dlogits);
        return st;
    }
    if (!isfinite(l)) {
        sn_free(dlogits);
        return sn_error(SN_ERR_INVALID_ARG, "loss is %g (labels outside 0..%d, or a non-finite input)",
                        l, ln->c - 1);
    }
    j->loss[r] = l / parts;
    if (parts > 1) {
        const float s = 1.0f / (float)parts;
        const size_t k = sn_node_elems(ln);
        for (size_t e = 0; e < k; e++) dlogits[e] *= s;
    }
    if (grads) st = sn_graph_backward(g, &m->params, out, dlogits, grads);
    sn_free(dlogits);
    return st;
}

sn_status sn_model_loss_grad(sn_model *m, const float *input, const int32_t *labels,
                             float smoothing, uint64_t seed, double *loss, float *const *grads) {
    return sn_model_loss_grad_sync(m, input, labels, smoothing, seed, NULL, loss, grads);
}

sn_status sn_model_loss_grad_sync(sn_model *m, const float *input, const int32_t *labels,
                                  float smoothing, uint64_t seed, const sn_loss_sync *sync,
                                  double *loss, float *const *grads) {
    if (!m || !input || !labels || !loss)
        return sn_error(SN_ERR_INVALID_ARG, "sn_model_loss_grad: NULL argument");
    if (!m->planned || !m->graph.training)
        return sn_error(SN_ERR_STATE, "sn_model_loss_grad: call sn_model_plan_train first");
    if (m->cfg.head != SN_HEAD_CLASSIFIER)
        return sn_error(SN_ERR_UNSUPPORTED, "sn_model_loss_grad: the classification loss needs "
                        "the classifier head");
    if (sync && sn_model_train_parts(m) > 1)
        return sn_error(SN_ERR_INVALID_ARG, "training over processes needs a model that is not "
                        "split into replicas");
    xent_job j = {input, labels, smoothing, seed, sync, {0}};
    sn_status st = sn_model_run_parts(m, grads, xent_part, &j);
    if (st != SN_OK) return st;
    double l = 0.0;
    for (int r = 0; r < sn_model_train_parts(m); r++) l += j.loss[r];
    *loss = l;
    return SN_OK;
}
