/* retinanet_loss.h: the RetinaNet training loss over a batch (the official RetinaNet task's),
 * read from and written
 * to the head's per-level output layout: sigmoid focal loss on every class logit and Huber loss on
 * the box deltas of positive anchors, each divided by (positive anchors in the batch + 1), with
 * the exact gradient of the total w.r.t. the logits and the deltas. */
#ifndef SN_RETINANET_LOSS_H
#define SN_RETINANET_LOSS_H

#include <stdint.h>

#include "anchors.h"
#include "spinenet.h"

typedef struct {
    double alpha;       /* focal weight of positive targets (negatives get 1 - alpha): 0.25 */
    double gamma;       /* focal exponent: 1.5 */
    double huber_delta; /* 0.1 */
    double box_weight;  /* total = cls + box_weight * box: 50 */
} sn_retinanet_loss_params;

/* The published values above. */
void sn_retinanet_loss_defaults(sn_retinanet_loss_params *p);

typedef struct {
    double total, cls, box; /* cls and box already divided by (num_positives + 1) */
    int64_t num_positives;  /* positive anchors in the whole batch */
} sn_retinanet_loss_value;

/* Loss of a batch of `batch` images.
 *   layout       the anchor layout the outputs and targets follow (sn_anchor_layout_init);
 *   cls_out[i]   class logits of level min_level + i, [batch][h][w][A * num_classes], channel
 *                a * num_classes + c;
 *   box_out[i]   box deltas of that level, [batch][h][w][A * 4], channel a * 4 + k;
 *   cls_targets  [batch][layout->count]: class column per anchor, 0 = negative (sn_anchor_label);
 *   box_targets  [batch][layout->count][4]: encoded targets (read for positives only);
 *   params       NULL for the defaults;
 *   nthreads     OpenMP threads (<= 0: all cores); the results do not depend on it (partial
 *                sums over fixed anchor chunks, added in a fixed order);
 *   dcls, dbox   NULL, or per-level outputs of the same shapes as cls_out / box_out that receive
 *                d(total)/d(logits) and d(total)/d(deltas) (every element written; zero deltas
 *                gradient on non-positive anchors).
 * Focal targets are one-hot over all num_classes columns (column 0 is never a target, negatives
 * are all zero); the Huber term of an anchor is the mean over its 4 deltas (Keras Huber).
 * Non-finite logits or deltas give a non-finite loss (SN_OK): the caller decides what to do.
 * SN_ERR_INVALID_ARG for a class target outside 0..num_classes-1 (nothing written), bad
 * shapes or parameters; SN_ERR_OOM when the partial-sum buffer cannot be had. */
sn_status sn_retinanet_loss(const sn_anchor_layout *layout, int batch, int num_classes,
                            const float *const *cls_out, const float *const *box_out,
                            const int32_t *cls_targets, const float *box_targets,
                            const sn_retinanet_loss_params *params, int nthreads,
                            float *const *dcls, float *const *dbox, sn_retinanet_loss_value *out);

#endif
