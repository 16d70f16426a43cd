/* post.h: RetinaNet post-processing: box decoding, IoU and greedy NMS, and the per-image
 * detection generator (sigmoid, per-class top-k, class-aware NMS, final top-k) of the Model
 * Garden (tensorflow/models official/vision/modeling/layers/detection_generator.py).
 *
 * Boxes are (ymin, xmin, ymax, xmax) in input pixels; deltas are (dy, dx, dh, dw), the box
 * coding of the official code (official/vision/ops/box_ops.py: encode_boxes, decode_boxes).
 * Everything here is reentrant (no global state) and allocates only inside a call, freeing it
 * before returning, also on failure.
 *
 * Ranking, wherever scores are sorted: higher score first; equal scores keep the lower index
 * first (the anchor index in sn_detect, the input position in sn_nms); in the final merge of
 * sn_detect equal scores go by class, then anchor. This is the order of TensorFlow's top_k over
 * the concatenated per-class results (Garden's detection generator v2).
 */
#ifndef SN_POST_H
#define SN_POST_H

#include <stddef.h>
#include <stdint.h>

#include "spinenet.h"

/* Upper clip of dh and dw before exp: log(1000 / 16). */
#define SN_BOX_XFORM_CLIP 4.135166556742356f

/* ---- Box coding -------------------------------------------------------------------------- */

/* Decode one box: centre/size parametrisation without scaling weights, dh and dw clipped from
 * above at `clip`, then the box clipped to [0, img_h] x [0, img_w] (no clipping when img_h or
 * img_w is <= 0). The float operations are Garden's box_ops.decode_boxes in its order
 * (ymax = ymin + h); a NaN delta gives NaN coordinates. */
void sn_box_decode_one(const float delta[4], const float anchor[4], float clip, float img_h,
                       float img_w, float out[4]);

/* Decode n boxes: deltas [n][4], anchors [n][4] -> boxes [n][4] (may alias deltas), with
 * SN_BOX_XFORM_CLIP. SN_ERR_INVALID_ARG on NULL pointers (with n > 0). */
sn_status sn_box_decode(const float *deltas, const float *anchors, size_t n, float img_h,
                        float img_w, float *boxes);

/* ---- IoU and NMS ------------------------------------------------------------------------- */

/* Intersection over union of two boxes, computed as torchvision's NMS does (so thresholds
 * agree to the bit): inter = max(0, dx) * max(0, dy), iou = inter / (area_a + area_b - inter).
 * Two empty boxes give NaN (0/0), which never exceeds a threshold. */
float sn_box_iou(const float a[4], const float b[4]);

/* Greedy NMS over boxes already in rank order: boxes [n][4], areas [n] (as sn_box_iou computes
 * them: (ymax - ymin) * (xmax - xmin)). Box i is dropped when its IoU with a kept box is
 * greater than iou_threshold. Writes the positions of kept boxes to keep[] (ascending) and
 * returns their number, stopping at max_keep (<= 0: no limit). Never fails. */
int sn_nms_sorted(const float *boxes, const float *areas, int n, float iou_threshold, int max_keep,
                  int32_t *keep);

/* NMS on unsorted boxes [n][4] with scores [n]: boxes are ranked (see the top of this file;
 * NaN scores rank last), then greedy NMS with suppression at IoU > iou_threshold. With
 * classes != NULL it is class-aware (boxes of different classes never suppress each other, as
 * torchvision's batched_nms); with NULL, as torchvision's nms. Writes to keep[] the input
 * indices of the kept boxes in rank order, at most max_keep of them (<= 0: no limit; keep needs
 * room for min(n, max_keep) entries), and their number to *n_keep: the first max_keep of the
 * unlimited result. SN_ERR_INVALID_ARG (bad arguments) or SN_ERR_OOM. */
sn_status sn_nms(const float *boxes, const float *scores, const int32_t *classes, int n,
                 float iou_threshold, int max_keep, int32_t *keep, int *n_keep);

/* ---- Detection generator ----------------------------------------------------------------- */

typedef struct {
    int pre_nms_top_k;     /* candidates per class going into NMS (5000) */
    float score_threshold; /* a score is kept when strictly greater (0.05), in [0, 1) */
    float iou_threshold;   /* suppress when IoU > this (0.5) */
    int max_per_class;     /* detections kept per class after NMS (100) */
    int max_detections;    /* detections kept in all, best first (100) */
    float box_clip;        /* upper clip of dh, dw before exp (SN_BOX_XFORM_CLIP) */
    int drop_empty;        /* 1: a box with no area left after clipping (or a NaN one) is no
                            * detection and takes no place; 0: reported, as the official
                            * generator does. Such boxes lie outside the image: a model run at a
                            * size it was not trained at predicts them, at any score, from its
                            * coarsest levels' grid cells that training never saw. */
} sn_det_params;

/* Fill the Garden defaults of the generator (pre_nms_top_k 5000, score 0.05, IoU 0.5, 100 per
 * class, 100 in all), with drop_empty 1 (set it to 0 for the official generator's exact output). */
void sn_det_params_init(sn_det_params *p);

/* One pyramid level of the head's output for the whole batch, NHWC. */
typedef struct {
    const float *cls; /* [n][h][w][A * C]: logit of anchor a, class c at channel a * C + c */
    const float *box; /* [n][h][w][A * 4]: delta k of anchor a at channel a * 4 + k */
    int h, w;
} sn_det_level;

/* What sn_detect reads for one image. */
typedef struct {
    const sn_det_level *levels; /* ascending level order, the anchors' order */
    int n_levels;
    int image;                  /* which image of the batch */
    int num_anchors;            /* A, anchors per location */
    int num_classes;            /* C, column 0 is background and never reported */
    const float *anchors;       /* [n_anchors][4]: levels ascending, locations row-major, a */
    int64_t n_anchors;          /* must equal the sum over levels of h * w * A */
    float image_h, image_w;     /* boxes are clipped to [0, image_h] x [0, image_w] (> 0) */
} sn_det_input;

/* Caller-owned result buffers, each with room for `capacity` detections. */
typedef struct {
    float *boxes;     /* [capacity][4] (ymin, xmin, ymax, xmax) */
    float *scores;    /* [capacity] sigmoid scores, descending */
    int32_t *classes; /* [capacity] class column, 1 .. C-1 */
    int32_t *anchors; /* [capacity] flat anchor index, or NULL if not wanted */
    int capacity;     /* must be >= params.max_detections */
    int count;        /* set by sn_detect: detections written */
} sn_detections;

/* The official detection generator for one image: for every class column c >= 1, the
 * anchors whose sigmoid score is above score_threshold, the best pre_nms_top_k of them, their
 * boxes decoded and clipped, greedy NMS keeping at most max_per_class; then all classes merged
 * and the best max_detections kept. Logits are compared with the threshold's logit first, so
 * sigmoids are computed and boxes decoded only for candidates. Single-threaded and reentrant.
 * SN_ERR_INVALID_ARG / SN_ERR_SHAPE on bad arguments, SN_ERR_OOM; out->count is 0 on failure. */
sn_status sn_detect(const sn_det_params *p, const sn_det_input *in, sn_detections *out);

/* Class-agnostic NMS after sn_detect (not part of the official generator; a display option):
 * sn_nms without classes over d's detections, so that a detection is dropped when its box has
 * IoU greater than iou_threshold with a better one of any class and one object keeps only its
 * best-scoring label. Compacts d in place (anchors too when present), keeping the order.
 * SN_ERR_OOM leaves d unchanged. */
sn_status sn_detections_suppress_overlaps(sn_detections *d, float iou_threshold);

#endif
