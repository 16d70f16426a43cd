/* Internal data layer for classification training: IDX (Fashion-MNIST) and image-folder
 * datasets, JPEG/PNG codecs, resize/crop/flip/normalise, and a prefetching batch loader.
 *
 * Ownership: every buffer handed out (image pixels, PNG bytes) is allocated with sn_alloc and
 * freed by its owner with sn_free / sn_image_free. Errors are returned as sn_status with the
 * message in sn_last_error(); messages name the file involved. */
#ifndef SN_DATA_H
#define SN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

/* ------------------------------------------------------------------------------------------ */
/* Images (image.c)                                                                           */

/* sn_image, sn_image_load (EXIF orientation applied) and sn_image_free are public
 * (spinenet.h); a grayscale image (channels 1) is used by Fashion-MNIST so that it is not
 * tripled in memory. */

/* Allocate an uninitialised image; on failure `img` is zeroed. */
sn_status sn_image_alloc(sn_image *img, int width, int height, int channels);

/* The pixels as stored, ignoring a JPEG's EXIF orientation: COCO annotation files give sizes
 * and boxes in these pixels, as the official pipelines decode them (TensorFlow's decoders
 * ignore EXIF), so the detection data reads images this way. */
sn_status sn_image_load_stored(const char *path, sn_image *out);
/* The same on a memory buffer (as stored); `name` is used in error messages only. */
sn_status sn_image_decode(const uint8_t *data, size_t size, const char *name, sn_image *out);
/* Read only the header: format, width and height as stored. Cheap (streams the file). */
sn_status sn_image_probe(const char *path, int *width, int *height);
/* The EXIF orientation (1..8; 1 when absent or unreadable) of a JPEG in memory, and an image
 * turned by one: *out is newly allocated, upright as photo viewers show it. */
int sn_jpeg_exif_orientation(const uint8_t *data, size_t size);
sn_status sn_image_orient(const sn_image *img, int orientation, sn_image *out);

/* Encode an image (channels 1 or 3) as PNG; *png is sn_alloc'ed. */
sn_status sn_image_encode_png(const sn_image *img, uint8_t **png, size_t *size);
/* The same written to a file, saved whole (sn_save_open: a temporary file renamed over path,
 * a symbolic link kept, a device or FIFO written into), so a failed write leaves no partial
 * file and an older file at path as it was. */
sn_status sn_image_save_png(const sn_image *img, const char *path);
/* The same as JPEG at quality 1..100 (for pictures of JPEG photos, which PNG stores several
 * times larger). */
sn_status sn_image_encode_jpeg(const sn_image *img, int quality, uint8_t **jpg, size_t *size);
sn_status sn_image_save_jpeg(const sn_image *img, int quality, const char *path);

/* ------------------------------------------------------------------------------------------ */
/* Datasets: a generic interface (count, classes, get)                                        */

typedef struct sn_dataset sn_dataset;
struct sn_dataset {
    int count;                     /* samples */
    int num_classes;
    char **class_names;            /* num_classes strings, owned by the dataset */
    /* Fetch sample i: fills *img with newly allocated pixels (caller frees with
     * sn_image_free) and *label in [0, num_classes). Called from one thread at a time. */
    sn_status (*get)(sn_dataset *ds, int index, sn_image *img, int *label);
    void (*destroy)(sn_dataset *ds); /* frees impl; the rest is freed by sn_dataset_free */
    void *impl;
    /* Set by sn_dataset_match_classes: get's label l becomes label_map[l] (l < map_n), so that
     * a folder's classes take the model's indices. NULL: labels as get gives them. */
    int *label_map;
    int map_n;
};

sn_status sn_dataset_get(sn_dataset *ds, int index, sn_image *img, int *label);
void sn_dataset_free(sn_dataset *ds);
/* Helper for implementations: allocate a dataset with copies of the class names. */
sn_status sn_dataset_new(int num_classes, const char *const *names, sn_dataset **out);

/* A class name as a file name: '/' and ' ' become '_' ("T-shirt/top" -> "T-shirt_top"), as
 * sn_fashion_mnist_export names its class folders. Truncated to cap - 1 bytes. */
void sn_class_file_name(const char *name, char *out, size_t cap);
/* The index among names[0..n) of a dataset class called `name`: the name itself, else the name
 * whose file-safe form it is (a folder "Ankle_boot" is the class "Ankle boot"); -1: none. */
int sn_class_find(const char *const *names, int n, const char *name);
/* Gives the dataset the classes names[0..n) (a model's, in its output order): each of its own
 * classes is matched by name (sn_class_find) and its samples take that index; the dataset may
 * hold a subset of them. A class that is not among them is an error naming it, `where` (the
 * data's path) and `whose` (e.g. the weight file). */
sn_status sn_dataset_match_classes(sn_dataset *ds, const char *const *names, int n,
                                   const char *where, const char *whose);

/* ------------------------------------------------------------------------------------------ */
/* IDX files (idx.c), gzip-compressed or plain (zlib reads both)                             */

/* Images: magic 0x00000803 (unsigned bytes, 3 dims); *pixels is [count][rows][cols]. */
sn_status sn_idx_load_images(const char *path, uint8_t **pixels, int *count, int *rows,
                             int *cols);
/* Labels: magic 0x00000801 (unsigned bytes, 1 dim). */
sn_status sn_idx_load_labels(const char *path, uint8_t **labels, int *count);
/* Fashion-MNIST from `dir` ({train,t10k}-{images-idx3,labels-idx1}-ubyte.gz); grayscale
 * 28x28 images (channels 1), 10 classes. */
sn_status sn_fashion_mnist_open(const char *dir, int train, sn_dataset **out);

/* ------------------------------------------------------------------------------------------ */
/* Image folders (folder.c): root/<class>/<image>.{jpg,jpeg,png}                             */

typedef enum {
    SN_VERIFY_NONE = 0,   /* list files only; a bad file fails when the loader reaches it */
    SN_VERIFY_HEADER = 1, /* read each header (format, size): cheap, catches most junk */
    SN_VERIFY_FULL = 2    /* decode every image once: slow, catches truncation too */
} sn_verify;

typedef struct {
    int skip_bad;         /* 1: leave out unreadable images (warn); 0: fail on the first */
    sn_verify verify;
    /* Called once per skipped file (may be NULL). */
    void (*warn)(void *user, const char *path, const char *reason);
    void *user;
    /* A class folder with no image (none there, or every one skipped) still counts as a class,
     * one the model is given an output for but never a sample of: 1 refuses it (an error naming
     * the folder), 0 calls `empty` (may be NULL) with its path and goes on. */
    int strict;
    void (*empty)(void *user, const char *dir);
} sn_folder_options;

typedef struct {
    int files;   /* image files found */
    int kept;    /* samples in the dataset */
    int skipped; /* unreadable files left out */
    int empty;   /* class folders without a usable image */
} sn_folder_stats;

/* Subfolders of `root` in byte order are the classes (hidden ones ignored); files inside
 * them, sorted, with extension .jpg/.jpeg/.png in any case. `opts` and `stats` may be NULL
 * (defaults: strict, header verification). */
sn_status sn_folder_open(const char *root, const sn_folder_options *opts, sn_dataset **out,
                         sn_folder_stats *stats);

/* ------------------------------------------------------------------------------------------ */
/* Augmentation (augment.c)                                                                   */

/* Sampling convention everywhere (as TF's half_pixel_centers / PyTorch align_corners=False):
 * output pixel x (centre x + 0.5) maps to source coordinate
 *     sx = box_x + (x + 0.5) * box_w / out_w - 0.5,
 * clamped to [0, W - 1]; bilinear between the two nearest source pixels. No antialiasing. */
extern const float sn_norm_mean[3];
extern const float sn_norm_std[3];

/* Resize [sh][sw][c] -> [dh][dw][c]; u8 results are rounded to nearest. */
sn_status sn_resize_u8(const uint8_t *src, int sh, int sw, int c, uint8_t *dst, int dh, int dw);
sn_status sn_resize_f32(const float *src, int sh, int sw, int c, float *dst, int dh, int dw);

/* A crop of the source image (in source pixels, may be fractional) and a mirror flag. */
typedef struct {
    float x, y, w, h;
    int flip;
} sn_crop;

typedef struct {
    float min_area, max_area;     /* fraction of the image area (train; e.g. 0.08 .. 1) */
    float min_aspect, max_aspect; /* width / height of the crop (train; e.g. 3/4 .. 4/3) */
    int hflip;                    /* train: mirror with probability 1/2 */
    float eval_fraction;          /* eval: central square crop of this fraction of the short
                                     side (e.g. 0.875); 0 or 1: the whole image */
} sn_aug_params;

/* Defaults: area 0.08..1, aspect 3/4..4/3, flip on, eval fraction 1 (whole image). */
void sn_aug_defaults(sn_aug_params *p);
/* Random crop box + flip for a w x h image (ten tries of area/aspect, then a central crop,
 * as the Inception-style sampler). */
sn_crop sn_crop_random(sn_rng *rng, int width, int height, const sn_aug_params *p);
sn_crop sn_crop_eval(int width, int height, const sn_aug_params *p);
/* Crop, resize to out_h x out_w, mirror if asked, and normalise ((pixel / 255 - mean) / std,
 * ImageNet's mean and std, as the official pipelines) into
 * dst[out_h][out_w][3]; a 1-channel image is replicated to 3 channels. */
sn_status sn_crop_resize_normalize(const sn_image *img, sn_crop crop, int out_h, int out_w,
                                   float *dst);
/* The same into rows `row_stride` floats apart (a region of a larger canvas). */
sn_status sn_crop_resize_normalize_strided(const sn_image *img, sn_crop crop, int out_h,
                                           int out_w, float *dst, size_t row_stride);
/* Normalise n pixels of c (1 or 3) channels to dst[n][3]. */
void sn_normalize_u8(const uint8_t *src, size_t n, int c, float *dst);
/* Mirror an image in place, left-right. */
void sn_image_hflip(sn_image *img);

/* ------------------------------------------------------------------------------------------ */
/* Batch loader (loader.c)                                                                    */

typedef struct {
    int batch_size;
    int image_size;   /* S: batches are [n][S][S][3] */
    int train;        /* 1: shuffle, random crop/flip, drop the last partial batch;
                         0: dataset order, eval crop, keep the last (smaller) batch */
    uint64_t seed;
    sn_aug_params aug;
    /* Optional: prepares sample `index` itself instead of the dataset's get + crop (the
     * detection data: an image with its boxes). It fills image[S][S][3] and `extra_bytes` of
     * per-sample data (handed out in sn_batch.extra), and *label; `seed` is the sample's
     * augmentation seed, a function of (loader seed, epoch, index). Runs on the loader's
     * thread; its error message is carried to sn_loader_next. The dataset then only gives the
     * sample count (its get may be NULL). */
    sn_status (*prepare)(void *user, int32_t index, int train, uint64_t seed, float *image,
                         void *extra, int32_t *label);
    void *prepare_user;
    size_t extra_bytes;
    /* 1: a sample that fails (an image that does not decode, e.g. truncated past its header)
     * is left out and counted in sn_batch.skipped, and the next sample of the epoch's order
     * that works takes its place (a failed sample is not tried again); 0: the failure is
     * sn_loader_next's error. Out of memory is always an error. */
    int skip_bad;
    /* Data parallelism over processes: shard_count > 1 makes this loader one of shard_count
     * (the job's ranks), number shard_rank. It walks the same batches of batch_size (the global
     * batch) in the same order and with the same augmentation seeds as one loader, but prepares
     * only its contiguous slice [shard_rank * b, (shard_rank + 1) * b) of each, b = batch_size /
     * shard_count (which must divide it): sn_batch.n is b, sn_batch.position the global batch's.
     * The state (epoch, position) is the global one, so a checkpoint's state resumes any shard
     * and one process alike. Training only (train = 1), and not with skip_bad (a sample one
     * shard leaves out would be another shard's to replace: the shards' batches would no longer
     * be slices of one batch). 0 or 1: the whole batch. */
    int shard_rank, shard_count;
} sn_loader_config;

/* Where the loader stands: the next batch handed out is the one that starts at `position` in
 * the sample order of `epoch`. Order and augmentation depend only on (seed, epoch, index). */
typedef struct {
    uint64_t seed;
    int64_t epoch;
    int64_t position;
} sn_loader_state;

typedef struct {
    const float *images;   /* [n][S][S][3] */
    const int32_t *labels; /* [n] */
    const int32_t *indices;/* [n] dataset indices of the samples */
    const void *extra;     /* [n][extra_bytes] from the prepare hook, or NULL */
    int n;                 /* samples here (a shard's slice: batch_size / shard_count) */
    int64_t epoch;
    int64_t position;      /* first sample's position in the epoch's order */
    int last_in_epoch;
    int skipped;           /* skip_bad: samples that failed while this batch was made */
    const char *skip_reason; /* the first one's error ("" when none) */
} sn_batch;

typedef struct sn_loader sn_loader;

/* Starts one background thread that prepares the next batch while the caller uses the
 * current one. The dataset must outlive the loader. */
void sn_loader_config_defaults(sn_loader_config *cfg);
sn_status sn_loader_create(sn_dataset *ds, const sn_loader_config *cfg, sn_loader **out);
/* Wait for the next batch; its buffers stay valid until the next call of next, set_state or
 * free. A failure in the background thread (e.g. an unreadable image) is reported here. */
sn_status sn_loader_next(sn_loader *l, sn_batch *out);
int64_t sn_loader_batches_per_epoch(const sn_loader *l);
void sn_loader_get_state(const sn_loader *l, sn_loader_state *st);
/* Restart from a saved state (discards the prefetched batch). */
sn_status sn_loader_set_state(sn_loader *l, const sn_loader_state *st);
/* Stops and joins the thread; NULL is fine. */
void sn_loader_free(sn_loader *l);

/* The epoch's sample order (a permutation of 0..count-1 when shuffling); exposed for tests. */
sn_status sn_epoch_order(uint64_t seed, int64_t epoch, int shuffle, int count, int32_t *order);

#endif
