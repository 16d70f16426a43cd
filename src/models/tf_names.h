/* tf_names.h: the official TensorFlow checkpoint's variable name for each parameter of a model.
 *
 * Two naming schemes, one per official code base (docs/weights.md, "TensorFlow checkpoints"):
 *   tpu    - the TF1 code (tensorflow/tpu models/official/detection): variable-scope names made
 *            by Keras-style automatic layer naming in creation order, e.g.
 *            "spinenet/sub_policy0/conv2d_3/kernel", "retinanet/class_net/class-0/kernel".
 *   garden - the TF2 Model Garden (tensorflow/models official/vision): object-graph paths of
 *            the training checkpoint, e.g. ".../kernel/.ATTRIBUTES/VARIABLE_VALUE".
 * The scheme follows m->cfg.flavour. Shapes are the checkpoint's own: the same as this
 * project's (HWIO kernels, [in, out] dense) except depthwise kernels, [3, 3, C, 1] in TF and
 * [3, 3, 1, C] here (the same bytes).
 */
#ifndef SN_TF_NAMES_H
#define SN_TF_NAMES_H

#include "model.h"

typedef struct {
    char *model; /* this project's parameter name (docs/weights.md) */
    char *tf;    /* the checkpoint key of the variable (or of its moving average with ema) */
} sn_tf_name;

typedef struct {
    sn_tf_name *v; /* one per entry of m->params, in m->params order */
    int n;
} sn_tf_names;

/* Names for every parameter of m under the scheme of m's flavour. With ema != 0 the keys are
 * those of the exponential-moving-average shadow variables where the code base keeps them
 * (trainable variables; batch-norm moving statistics have no shadow and keep their own key).
 * SN_ERR_UNSUPPORTED, with a message, for a model the official code base cannot make (e.g. a
 * classifier in garden, a block-spec table that is not the variant's, the P2 row in tpu).
 * On failure *out is zeroed. */
sn_status sn_tf_names_make(const sn_model *m, int ema, sn_tf_names *out);
sn_status sn_tf_names_tpu(const sn_model *m, int ema, sn_tf_names *out);
sn_status sn_tf_names_garden(const sn_model *m, int ema, sn_tf_names *out);
void sn_tf_names_free(sn_tf_names *t);

#endif
