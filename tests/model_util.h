/* Per-parameter buffers for the training tests: copies of a model's parameters (a training
 * forward moves the BN moving statistics, which a test must often undo) and gradient buffers. */
#ifndef SN_TEST_MODEL_UTIL_H
#define SN_TEST_MODEL_UTIL_H

#include <stdlib.h>
#include <string.h>

#include "spinenet.h"

/* One buffer per parameter, each holding `copy ? the parameter : zeros`. */
static inline float **tm_buffers(sn_model *m, int copy) {
    const int np = sn_model_num_params(m);
    float **b = calloc((size_t)np, sizeof *b);
    for (int i = 0; i < np; i++) {
        sn_param p;
        sn_model_param_at(m, i, &p);
        b[i] = calloc(p.count, sizeof(float));
        if (copy) memcpy(b[i], p.data, p.count * sizeof(float));
    }
    return b;
}

static inline float **tm_params_copy(sn_model *m) { return tm_buffers(m, 1); }
static inline float **tm_grads_new(sn_model *m) { return tm_buffers(m, 0); }

/* Copy the buffers back into the parameters. */
static inline void tm_params_set(sn_model *m, float *const *b) {
    for (int i = 0; i < sn_model_num_params(m); i++) {
        sn_param p;
        sn_model_param_at(m, i, &p);
        memcpy(p.data, b[i], p.count * sizeof(float));
    }
}

static inline void tm_buffers_zero(sn_model *m, float *const *b) {
    for (int i = 0; i < sn_model_num_params(m); i++) {
        sn_param p;
        sn_model_param_at(m, i, &p);
        memset(b[i], 0, p.count * sizeof(float));
    }
}

static inline void tm_buffers_free(sn_model *m, float **b) {
    if (!b) return;
    for (int i = 0; i < sn_model_num_params(m); i++) free(b[i]);
    free(b);
}

#endif
