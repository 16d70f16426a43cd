/* "fashion-det": a built-in multi-scale detection dataset made of Fashion-MNIST items pasted at
 * many sizes onto synthetic backgrounds, written as an ordinary COCO dataset.
 *
 * What `sn_fashion_det_make(dir, ...)` writes:
 *     dir/train/000001.png ...            image id 1.. of the train split (RGB, size x size)
 *     dir/val/000001.png ...              the same for val
 *     dir/annotations/instances_train.json, dir/annotations/instances_val.json
 * The JSON is COCO "instances": images {id, file_name (bare name, relative to dir/<split>/),
 * width, height}, annotations {id, image_id, category_id, bbox [x, y, w, h], area = w * h,
 * iscrowd 0}, categories {id 1..10, name = the Fashion-MNIST class, supercategory "fashion"},
 * plus "info" with the generator's settings. Ids start at 1; numbers in bbox/area are reals
 * with integral values (pixel boxes).
 *
 * How an image is made (each image from its own seed, derived from (seed, split, index), so the
 * output does not depend on the thread count, and the same options give byte-identical files):
 *  - Background: one of a linear gradient, a radial gradient, soft Gaussian colour blobs, soft
 *    sinusoidal stripes of two close colours, or smooth value noise on a coarse grid; half of
 *    them under a faint lighting ramp (+-20% at most); 15% with grey per-pixel noise of +-1
 *    level (noise is what PNG stores worst: about 30 KB more per 256 px image, so not in
 *    all). Colours have a luminance within 40..215 before the ramp, so that an item can always
 *    contrast with what lies under it.
 *  - Items: 1..max_objects per image (uniform count), each a random Fashion-MNIST item of the
 *    split (train split for train, t10k for val; category = label + 1). The item's content box
 *    in the 28x28 source (pixels above 10% of its maximum) is resized, with a mild random
 *    aspect change (up to +-15%) and a random mirror, so that its longer side is s, where s is
 *    drawn log-uniformly in [min_size, max_size]; larger items are placed first (underneath).
 *    Resizing is separable with a tent filter as wide as the scale step (bilinear when
 *    enlarging, antialiased when shrinking).
 *  - Alpha is the item's intensity: a = clamp((v / vmax - 0.1) / 0.5, 0, 1), quantised to
 *    1/255. The colour is random (any hue), with a luminance at least 70 levels away from the
 *    mean of what lies under the item, so the class is carried by the shape, not the colour.
 *  - The bounding box is the tight box of the pixels where the item's alpha is non-zero; the
 *    item changes no pixel outside it. Occlusion by later items does not shrink the box
 *    (boxes are amodal), but occlusion is bounded, see below.
 *  - Overlap: a placement is rejected when its box has IoU > max_iou with a box already placed,
 *    or when it would cover more than max_hidden of the alpha > 0 pixels of an earlier item
 *    (counting what later items already cover). Up to max_tries positions are tried per item;
 *    an item that fits nowhere is left out (counted in `dropped`). The first item always
 *    fits (a blank source item is replaced by another), so an image holds at least one, and
 *    generation always ends.
 *
 * The defaults (256 px, sizes 12..200, 3000 + 300 images) give about 6.4 items per image,
 * 43% / 40% / 17% of them COCO small / medium / large (area < 32^2, < 96^2, above), about 1.4%
 * of the drawn items left out; 120 MB on disk, about 1.5 minutes on 2 busy cores.
 * Pyramid levels: with the default anchors (anchor_size 3, base 3 * 2^L * 2^(q/3)) the best
 * matching level of the boxes is P3 55%, P4 25%, P5 19%, P6 0.7%, P7 none: a 256 px image
 * cannot hold an object that P7's 384..609 px anchors on its 2 x 2 grid match. P6 and P7 get
 * positives only with larger images (512 px with sizes up to 480: P6 17%, P7 3%) or smaller
 * anchors (anchor_size 1.5 at 256 px: P6 17%, P7 0.3%; but measured worse: anchors that small
 * relative to their stride leave most objects with only the force-matched anchor).
 *
 * Output hygiene: the two JSON files of a previous run are removed before any image is
 * written, and each JSON is written to "<name>.tmp" and renamed only when complete, so a
 * failure never leaves a JSON file that describes images it does not match. Other files in dir
 * are left alone. */
#ifndef SN_FASHION_DET_H
#define SN_FASHION_DET_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "data.h"

#define SN_FASHION_DET_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define SN_FASHION_DET_MAX_OBJECTS 64

typedef struct {
    const char *fmnist_dir; /* folder with the four Fashion-MNIST .gz files */
    int image_size;         /* square side in pixels (default 256, a multiple of 128) */
    int train_count;        /* images (default 3000 train, 300 val; 0 skips the split) */
    int val_count;
    int min_objects;        /* per image (default 1 .. 12; at most SN_FASHION_DET_MAX_OBJECTS) */
    int max_objects;
    double min_size;        /* longer side of an item's box, log-uniform (default 12 .. 200) */
    double max_size;
    double max_iou;         /* largest box IoU between two items of an image (default 0.3) */
    double max_hidden;      /* largest fraction of an item that later items cover (default 0.3) */
    int max_tries;          /* positions tried per item before it is left out (default 40) */
    uint64_t seed;          /* default 1 */
    int threads;            /* <= 0: all cores; the output does not depend on it */
    /* Called on the calling thread after each batch of images, and once at the end with
     * done == total (total = train_count + val_count). May be NULL. */
    void (*progress)(void *user, int done, int total);
    void *user;
} sn_fashion_det_options;

typedef struct {
    int images[2];  /* [0] train, [1] val */
    int objects[2]; /* annotations written */
    int dropped[2]; /* items that found no place under the overlap bounds */
} sn_fashion_det_stats;

void sn_fashion_det_defaults(sn_fashion_det_options *o);
/* Check the options; SN_ERR_INVALID_ARG with a message naming the bad one. */
sn_status sn_fashion_det_check(const sn_fashion_det_options *o);
/* Generate the whole dataset into `out_dir` (created if missing, parents too). `stats` may be
 * NULL. Fails with SN_ERR_IO naming the path when a Fashion-MNIST file is missing (and how to
 * install it) or the output cannot be written. */
sn_status sn_fashion_det_make(const char *out_dir, const sn_fashion_det_options *o,
                              sn_fashion_det_stats *stats);

/* ---- The pieces, exposed for tests and tools ---------------------------------------------- */

/* One Fashion-MNIST split held in memory. */
typedef struct {
    uint8_t *pixels; /* [count][rows][cols] */
    uint8_t *labels; /* [count], 0..9 */
    int count, rows, cols;
} sn_fashion_det_source;

/* Load "train" (train != 0) or "t10k" from `dir`; a missing file gives SN_ERR_IO naming it. */
sn_status sn_fashion_det_source_load(const char *dir, int train, sn_fashion_det_source *src);
void sn_fashion_det_source_free(sn_fashion_det_source *src);

typedef struct {
    int category;      /* 1..10 */
    int x, y, w, h;    /* tight box, pixels: columns x .. x+w-1, rows y .. y+h-1 */
    uint8_t *mask;     /* [h][w] the item's alpha inside its box (owned by the scene) */
    int source_index;  /* the Fashion-MNIST item used */
} sn_fashion_det_object;

typedef struct {
    sn_image image;      /* RGB, image_size x image_size */
    sn_image background; /* the same image before any item was drawn */
    int count;           /* objects, in drawing order (later ones on top) */
    int dropped;
    sn_fashion_det_object objects[SN_FASHION_DET_MAX_OBJECTS];
} sn_fashion_det_scene;

/* Render image `index` (0-based; its COCO id is index + 1) of a split exactly as
 * sn_fashion_det_make writes it. `src` is that split's source. The scene is zeroed first and
 * must be freed with sn_fashion_det_scene_free, also after a failure. */
sn_status sn_fashion_det_render(const sn_fashion_det_source *src, const sn_fashion_det_options *o,
                                int train, int index, sn_fashion_det_scene *scene);
void sn_fashion_det_scene_free(sn_fashion_det_scene *scene);

/* The Fashion-MNIST class names, index = category id - 1. */
extern const char *const sn_fashion_det_class_names[10];

/* Fashion-MNIST as an image folder: writes items first .. first + count - 1 of a split (train
 * != 0: "train", else "t10k") from `fmnist_dir` as grayscale PNGs
 * out_dir/<class>/<split>-<index>.png, creating the folders (parents too). The folder names are
 * the class names made file-safe ("T-shirt_top", "Ankle_boot"), so the result is a dataset
 * `spinenet train/eval --data DIR` reads, and images `spinenet classify` takes. Items past the
 * end of the split are not written; *written (may be NULL) gets how many were. */
sn_status sn_fashion_mnist_export(const char *fmnist_dir, int train, int first, int count,
                                  const char *out_dir, int *written);

#endif
