/* COCO instance annotations (images, boxes, categories) and detection results files: reading
 * with validation, the class-column map of the detection head, a binary parse cache, writing.
 *
 * Ownership: sn_coco_load returns a set freed by sn_coco_free; detections lists are freed by
 * sn_coco_dets_free. Errors are sn_status with the message in sn_last_error(), naming the file
 * and the entry at fault. Recoverable problems in an annotation file are not errors: the loader
 * repairs them (drop or clip) and counts them per kind in `warn_count`. */
#ifndef SN_COCO_H
#define SN_COCO_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

typedef struct {
    int64_t id;
    char *file_name;         /* as written in the file (relative to the image folder) */
    int width, height;
    int first_ann, num_anns; /* this image's boxes are anns[first_ann .. first_ann + num_anns) */
} sn_coco_image;

typedef struct {
    int64_t id;
    int image;           /* index into images */
    int category_id;
    int column;          /* class column of the detection head, 1 .. num_classes - 1 */
    int iscrowd;         /* 0 or 1 */
    double box[4];       /* x, y, w, h clipped to the image, w and h > 0: what training uses */
    double file_box[4];  /* x, y, w, h as written: what COCO evaluation matches against */
    double area;         /* the file's "area" (segment area, which COCO's area ranges use), or
                          * w * h of file_box when the field is absent */
} sn_coco_ann;

typedef struct {
    int id;
    char *name;
    int column;
} sn_coco_category;

/* Kinds of counted warnings. */
enum {
    SN_COCO_WARN_UNKNOWN_CATEGORY, /* category id not among "categories": annotation dropped */
    SN_COCO_WARN_CLIPPED,          /* box extends outside its image: clipped to it */
    SN_COCO_WARN_EMPTY_BOX,        /* width or height <= 0 after clipping: annotation dropped */
    SN_COCO_WARN_KINDS
};

typedef struct {
    int num_images, num_anns, num_categories;
    sn_coco_image *images;          /* file order */
    sn_coco_ann *anns;              /* kept annotations, grouped by image (images' order), file
                                     * order within an image */
    sn_coco_category *categories;   /* sorted by id */
    /* Head columns: 0 is background. Ids all in 1..90 (COCO's numbering) map to themselves,
     * with (largest id + 1) columns: 91 for COCO itself; any other id set maps its
     * categories, sorted by id, to 1..K with K + 1. */
    int num_classes;
    int *column_category;           /* [num_classes]: category id of a column, 0 when unused */
    int64_t warn_count[SN_COCO_WARN_KINDS];
    int64_t warn_first_id[SN_COCO_WARN_KINDS]; /* first offending annotation id of each kind */
    int from_cache;                 /* 1 when this load was served by the .sncache file */
    /* Private: image ids sorted, for lookups; names' storage. */
    struct sn_coco_idx { int64_t id; int index; } *image_index;
    char *strings;
} sn_coco;

/* Annotation files at least this large get a parse cache, <path>.sncache, next to them. */
#define SN_COCO_CACHE_MIN_BYTES (2u << 20)

enum { SN_COCO_NO_CACHE = 1 }; /* flags: neither read nor write the cache */

/* Read an instances JSON file ("images" and "categories" required, "annotations" optional).
 * Errors: malformed JSON (line and column), a missing or mistyped field (named, with the
 * entry's id), duplicate image or category ids, an annotation of an unknown image id. A file
 * of SN_COCO_CACHE_MIN_BYTES or more is parsed once: the result is stored in <path>.sncache
 * (format version, the JSON's size and a hash of its bytes) and used by later loads while it
 * matches; a stale or damaged cache is re-made, one that cannot be written is skipped. A load
 * served by the cache still reads and hashes the JSON: on a 160 MB file 0.35-0.65 s against 10-20 s of
 * parsing. */
sn_status sn_coco_load(const char *path, int flags, sn_coco **out);
void sn_coco_free(sn_coco *c);

/* The text of a warning kind, for "N annotations: <text> (first: id X)". */
const char *sn_coco_warning_text(int kind);

/* Index of the image with this id, or -1. */
int sn_coco_find_image(const sn_coco *c, int64_t image_id);
/* Index into categories of this category id, or -1. */
int sn_coco_find_category(const sn_coco *c, int category_id);
/* Category id -> head column (-1 when unknown); column -> category id (0 when the column is
 * background or unused) and its name (NULL then). */
int sn_coco_column(const sn_coco *c, int category_id);
int sn_coco_column_category(const sn_coco *c, int column);
const char *sn_coco_column_name(const sn_coco *c, int column);

/* Check that every image file exists under image_dir. SN_OK when all do; otherwise
 * SN_ERR_NOT_FOUND with a message naming the first missing path and the count. `missing`
 * (may be NULL) receives the count. */
sn_status sn_coco_check_images(const sn_coco *c, const char *image_dir, int *missing);

/* Reads the header of every image file under image_dir (sn_image_probe: it exists, is a JPEG or
 * PNG whose header decodes) and checks its size against the annotation file's width and height,
 * so that bad data is found before training starts, not when the loader reaches it. skip_bad 0:
 * the first failure is the error, naming the file and the problem. skip_bad 1: each failing
 * image gets bad[i] = 1 (bad may be NULL) and an on_bad call, *n_bad (may be NULL) counts them,
 * and SN_OK is returned (out of memory is still an error). progress (may be NULL) is called
 * every 1000 images and at the end. */
sn_status sn_coco_probe_images(const sn_coco *c, const char *image_dir, int skip_bad,
                               unsigned char *bad, int *n_bad,
                               void (*on_bad)(void *user, const char *path, const char *reason),
                               void (*progress)(void *user, int done, int total), void *user);

/* ------------------------------------------------------------------------------------------ */
/* Detections in the COCO results format: [{"image_id", "category_id", "bbox", "score"}, ...] */

typedef struct {
    int64_t image_id;
    int category_id;
    double bbox[4]; /* x, y, w, h in pixels of the original image */
    double score;
} sn_coco_det;

typedef struct {
    sn_coco_det *items;
    size_t count, capacity;
} sn_coco_dets; /* zero-initialise before use */

sn_status sn_coco_dets_append(sn_coco_dets *d, const sn_coco_det *det);
void sn_coco_dets_free(sn_coco_dets *d);
/* Read a results file into `out` (which is reset first). With `gt`, an image id or category id
 * that the ground truth lacks is an error naming the entry's index. */
sn_status sn_coco_dets_load(const char *path, const sn_coco *gt, sn_coco_dets *out);
/* Write a results file: boxes to 0.001 px, scores to 7 significant digits. Non-finite values
 * are refused. */
sn_status sn_coco_dets_save(const char *path, const sn_coco_det *dets, size_t count);

#endif
