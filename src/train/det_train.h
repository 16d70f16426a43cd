/* det_train.h: RetinaNet with SpineNet as a trainable and evaluable detector (internal API): the
 * anchors of the model's input, training targets from the loader's boxes, the RetinaNet loss
 * (retinanet_loss.h) backpropagated through the head's class and box outputs, detections of an
 * inference run (the official detection generator, post.h) mapped back to the original images,
 * and COCO evaluation over an annotation file.
 *
 * The model must have the RetinaNet head; its outputs class.L and box.L (L = min_level ..
 * max_level) are read in their NHWC layout, which is the anchors' order (anchors.h). */
#ifndef SN_DET_TRAIN_H
#define SN_DET_TRAIN_H

#include "anchors.h"
#include "coco.h"
#include "coco_eval.h"
#include "det_data.h"
#include "model_train.h"
#include "post.h"
#include "retinanet_loss.h"
#include "spinenet.h"

#define SN_DET_MAX_LEVELS 8

typedef struct {
    sn_anchor_layout layout;
    float *anchors;        /* [count][4] over the canvas */
    int canvas;            /* P: the model's input is P x P */
    int num_classes, num_levels, max_batch, max_boxes;
    int32_t *cls_targets;  /* [max_batch][count] */
    float *box_targets;    /* [max_batch][count][4] */
    sn_gt_box *gt;         /* [max_boxes] scratch */
    float *dcls[SN_DET_MAX_LEVELS], *dbox[SN_DET_MAX_LEVELS]; /* loss gradients, per level */
    int64_t positives;     /* of the last batch's targets */
} sn_det_head;

/* Anchors for a canvas of P x P and room for batches of up to max_batch images with up to
 * max_boxes boxes each (max_batch 0: inference only, no target or gradient buffers). */
sn_status sn_det_head_init(sn_det_head *h, const sn_model *m, int canvas, int max_batch,
                           int max_boxes);
void sn_det_head_free(sn_det_head *h);

/* Targets of a batch of the loader (sn_det_prepare samples). */
sn_status sn_det_head_targets(sn_det_head *h, const sn_det_source *src, const void *extra, int n);

/* One training pass on n canvas images whose targets were set by sn_det_head_targets: forward
 * with batch statistics (stochastic depth drawn from seed), the loss, and the backward into
 * grads (one buffer per parameter, NULL to skip; grads == NULL: loss only). The model must be
 * planned for training with batch n at the canvas size. A non-finite loss is returned as it is
 * (SN_OK) without a backward: the caller stops. */
sn_status sn_det_loss_grad(sn_model *m, sn_det_head *h, const float *images, int n, uint64_t seed,
                           sn_retinanet_loss_value *loss, float *const *grads);
/* The same as one of the processes of a data-parallel job (sync: model_train.h's sn_loss_sync,
 * may be NULL): the loss is normalised by the job's positives + 1, and the processes agree on
 * its finiteness before the backward. */
sn_status sn_det_loss_grad_sync(sn_model *m, sn_det_head *h, const float *images, int n,
                                uint64_t seed, const sn_loss_sync *sync,
                                sn_retinanet_loss_value *loss, float *const *grads);

/* Detections of image `image` of the model's last inference run (planned at the canvas size),
 * boxes in canvas pixels, clipped to the part of the canvas the image covers (xf's content, as
 * the Model Garden clips to the scaled image; the whole canvas when xf is NULL), so that no box
 * lies in the zero padding, which maps outside the original image. out needs capacity >=
 * p->max_detections. */
sn_status sn_det_detect(const sn_model *m, const sn_det_head *h, const sn_det_params *p,
                        int image, const sn_det_xform *xf, sn_detections *out);

/* Runs the model over every image of `gt` (files under image_dir, eval pre-processing at size
 * S, batches of `batch`), appends the detections in COCO's results format (original-image
 * pixels, category ids) to dets (may be NULL) and, when res is not NULL, scores them. `progress`
 * (may be NULL) is called after each batch with (images done, total). Leaves the model planned
 * for inference. */
sn_status sn_det_evaluate(sn_model *m, const sn_coco *gt, const char *image_dir, int size,
                          int batch, const sn_det_params *p, sn_coco_dets *dets,
                          sn_coco_eval_result *res, void (*progress)(void *, int, int),
                          void *user);

#endif
