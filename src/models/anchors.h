/* anchors.h: RetinaNet anchors over a padded input, the box encoding of regression targets and the
 * per-image anchor labelling that turns ground truths into training targets, as the official
 * code does them (tensorflow/models official/vision/ops/anchor.py and box_ops.py).
 *
 * Anchor order (the order of the flat anchor index everywhere: labels, targets, losses): levels
 * ascending, then locations row-major (y outer, x inner), then scale index, then aspect ratio.
 * Within one level this is exactly the memory order of the head's outputs: class.L is
 * [n][h_L][w_L][A*C] and box.L is [n][h_L][w_L][A*4], so the anchor (y, x, a) of level L has flat
 * index level_start + (y * w_L + x) * A + a. Boxes are (ymin, xmin, ymax, xmax) in input pixels.
 */
#ifndef SN_ANCHORS_H
#define SN_ANCHORS_H

#include <stdint.h>

#include "spinenet.h"

#define SN_ANCHOR_SCALES 3
#define SN_ANCHOR_ASPECTS 3
#define SN_ANCHORS_PER_LOCATION (SN_ANCHOR_SCALES * SN_ANCHOR_ASPECTS)
#define SN_ANCHOR_MAX_LEVEL 12 /* stride 4096; levels are 0 .. SN_ANCHOR_MAX_LEVEL */

/* The shape of the anchor set (no boxes): which levels, their map sizes and where each level
 * starts in the flat anchor index. Arrays are indexed by level - min_level. */
typedef struct {
    int min_level, max_level, num_levels;
    int per_location;  /* SN_ANCHORS_PER_LOCATION */
    int height, width; /* the padded input */
    int level_h[SN_ANCHOR_MAX_LEVEL + 1], level_w[SN_ANCHOR_MAX_LEVEL + 1];
    int64_t level_start[SN_ANCHOR_MAX_LEVEL + 2]; /* [num_levels] == count */
    int64_t count;
} sn_anchor_layout;

/* Fill the layout for levels min_level..max_level over an input of height x width, both
 * multiples of 2^max_level (the padded canvas of det_data.h). SN_ERR_INVALID_ARG otherwise. */
sn_status sn_anchor_layout_init(int min_level, int max_level, int height, int width,
                                sn_anchor_layout *out);

/* The number of anchors of that layout (the count function; same checks). */
sn_status sn_anchor_count(int min_level, int max_level, int height, int width, int64_t *count);

/* The aspect ratios (width / height) of a flavour in anchor order: garden 0.5, 1, 2; tpu 1, 2, 0.5.
 */
void sn_anchor_aspect_ratios(sn_flavour flavour, double ratios[SN_ANCHOR_ASPECTS]);

/* Write layout->count boxes (count x 4 floats) for a flavour and anchor_size (3 or 4 in the
 * published models; any value > 0 accepted). Computed as the official code does, in float32:
 * the centre minus / plus the half size, the half size rounded to float from double. */
sn_status sn_anchors_generate(const sn_anchor_layout *layout, sn_flavour flavour,
                              double anchor_size, float *boxes);

/* Regression target (dy, dx, dh, dw) of `box` w.r.t. `anchor`, both (ymin, xmin, ymax, xmax):
 * ((yc - ya) / ha, (xc - xa) / wa, log(h / ha), log(w / wa)) with centres and sizes, no scaling
 * weights; computed in double. Both boxes must have positive size (not checked here). */
void sn_box_encode(const float anchor[4], const float box[4], float out[4]);

/* One ground-truth object of an image. */
typedef struct {
    float ymin, xmin, ymax, xmax; /* input pixels, same frame as the anchors */
    int32_t cls;                  /* class column, 1 .. num_classes - 1 (0 is background) */
    int32_t iscrowd;              /* nonzero: the box takes no part in labelling */
} sn_gt_box;

/* Label every anchor of one image (the official argmax matcher, anchor.py's labeler):
 *  - crowd boxes are skipped (the official parser drops them for training);
 *  - IoU is computed in float32 as the official code does; each anchor takes the ground truth
 *    of highest IoU (ties: the lower ground-truth index); IoU >= 0.5 -> positive, else negative;
 *  - then every non-crowd ground truth is force-matched to its best anchor (ties: the lower
 *    anchor index), positive whatever the IoU and overriding the anchor's own best match. When
 *    several ground truths force-match the same anchor, the lowest ground-truth index keeps it
 *    and the others get no forced anchor (the official BoxMatcher / ArgMaxMatcher do this: an
 *    argmax over a one-hot column-to-row mapping). A ground truth that overlaps no anchor at all
 *    is not forced (the official code would force anchor 0; this cannot happen for a box that
 *    lies inside the input).
 * Outputs, per anchor: cls_targets[a] = the class column of its ground truth, 0 when negative;
 * box_targets[a*4 .. a*4+3] = sn_box_encode(anchor, ground truth) for positives, zeros for
 * negatives (the loss never reads them). *num_positive (may be NULL) = positive anchors.
 * Every box (crowd ones too) must be finite with ymax > ymin and xmax > xmin, and every non-crowd
 * class column in 1 .. num_classes - 1 (SN_ERR_INVALID_ARG naming the ground truth, outputs
 * untouched; the official parser silently drops empty boxes, so callers that crop must drop
 * them first). gt may be NULL when n_gt is 0 (every anchor negative).
 * `anchors` must be the boxes sn_anchors_generate wrote for `layout` (any flavour and
 * anchor_size): each box visits only the grid cells around it (IoU is 0 elsewhere), about 6x
 * faster than all pairs at 640x640 with 100 boxes (12 ms). */
sn_status sn_anchor_label(const sn_anchor_layout *layout, const float *anchors, const sn_gt_box *gt,
                          int n_gt, int num_classes, int32_t *cls_targets, float *box_targets,
                          int64_t *num_positive);

/* The same labels, bit for bit, for any `count` anchors (no grid assumed): every anchor-box IoU
 * is computed. */
sn_status sn_anchor_label_all_pairs(const float *anchors, int64_t count, const sn_gt_box *gt,
                                    int n_gt, int num_classes, int32_t *cls_targets,
                                    float *box_targets, int64_t *num_positive);

#endif
