/* Detection inputs: the eval pre-processing and the training augmentation of the official
 * RetinaNet input pipeline (tensorflow/models official/vision/dataloaders/retinanet_input.py: scale
 * jitter with a random crop, horizontal flip) applied to an image and its boxes together, and
 * the mapping of detections back to the original image.
 *
 * The geometry follows the Model Garden's resize-and-crop: a target size S is scaled by a
 * random factor in [scale_min, scale_max] (1 for evaluation); the image is resized, keeping its
 * aspect ratio, to the largest size that fits in that square (sizes rounded half to even, as
 * TensorFlow's round); when it is larger than S a random S x S window of it is kept; the result
 * sits at the top left of a zero canvas (zero after normalisation) of P x P, P = S rounded up to
 * a multiple of 128. Boxes are scaled per axis by the rounded size over the original size,
 * shifted by the window's offset, clipped to the S x S window, and dropped when empty. */
#ifndef SN_DET_DATA_H
#define SN_DET_DATA_H

#include <stdint.h>

#include "data.h"
#include "coco.h"

/* A ground-truth box in pixels of the image it belongs to: (ymin, xmin, ymax, xmax), the class
 * column of the detection head (1..num_classes-1) and the COCO crowd flag. */
typedef struct {
    float y0, x0, y1, x1;
    int32_t cls;
    int32_t crowd;
} sn_det_box;

typedef struct {
    float scale_min, scale_max; /* training scale jitter (official: 0.1-2.0 Garden, 0.5-2.0 TPU) */
    int hflip;                  /* training: mirror with probability 1/2 */
} sn_det_aug;

/* Where an original image went on the canvas. */
typedef struct {
    int orig_h, orig_w;
    int scaled_h, scaled_w;   /* the resized image (before the window) */
    float scale_y, scale_x;   /* scaled / original, per axis */
    int off_y, off_x;         /* the window's top-left corner in the resized image */
    int content_h, content_w; /* the part of the S x S window the image covers */
    int size;                 /* S */
    int flip;                 /* the image (and its boxes) were mirrored first */
} sn_det_xform;

void sn_det_aug_defaults(sn_det_aug *a);
/* P for a target size S: S rounded up to a multiple of 128 (2^max_level of the head). */
int sn_det_canvas_size(int size);
/* The geometry for an image of orig_h x orig_w at target size S; train != 0 draws the scale,
 * window and flip from rng (which may be NULL when train == 0). */
sn_status sn_det_plan(int orig_h, int orig_w, int size, int train, const sn_det_aug *aug,
                      sn_rng *rng, sn_det_xform *xf);
/* Resize, crop, mirror and normalise the image onto dst[P][P][3] (P = canvas); the rest of the
 * canvas is zero. */
sn_status sn_det_render(const sn_image *img, const sn_det_xform *xf, int canvas, float *dst);
/* Boxes of the original image onto the S x S window: returns how many were kept in out (at
 * most n; in and out may be the same array). Boxes that end with no area are dropped. */
int sn_det_map_boxes(const sn_det_xform *xf, const sn_det_box *in, int n, sn_det_box *out);
/* A box on the canvas back to original-image pixels (clipped to the image). */
void sn_det_unmap_box(const sn_det_xform *xf, const float in[4], float out[4]);

/* ------------------------------------------------------------------------------------------ */
/* A COCO dataset as loader samples (sn_loader_config.prepare = sn_det_prepare).             */

typedef struct {
    const sn_coco *coco;        /* borrowed; must outlive the loader */
    char image_dir[SN_PATH_MAX];
    int size;                   /* S; the loader's image_size is the canvas sn_det_canvas_size(S) */
    sn_det_aug aug;
    int max_boxes;              /* boxes room per sample: the most any image has */
    /* The images the loader's samples are (sample i is coco->images[keep[i]]), to leave out
     * those that fail sn_coco_probe_images; NULL: every image, in order. Borrowed. */
    const int32_t *keep;
    int num_keep;
} sn_det_source;

/* What the loader hands out per sample besides the canvas (sn_batch.extra, sn_det_sample_bytes
 * apart): the image, where it went, and its boxes on the canvas (crowd ones included, flagged). */
typedef struct {
    int32_t image;    /* index into coco->images */
    int32_t n_boxes;
    sn_det_xform xf;
    sn_det_box boxes[]; /* max_boxes */
} sn_det_sample;

/* Fill a source for `coco` (max_boxes from the data). */
sn_status sn_det_source_init(sn_det_source *src, const sn_coco *coco, const char *image_dir,
                             int size, const sn_det_aug *aug);
size_t sn_det_sample_bytes(const sn_det_source *src);
/* The sample at `index` of `extra` as written by sn_det_prepare. */
const sn_det_sample *sn_det_batch_sample(const sn_det_source *src, const void *extra, int index);
/* The loader's prepare hook: decodes image `index` (its path in errors), checks its size against
 * the annotation file, plans (train: jitter, crop, flip seeded by `seed`), renders and maps the
 * boxes. */
sn_status sn_det_prepare(void *user, int32_t index, int train, uint64_t seed, float *image,
                         void *extra, int32_t *label);

#endif
