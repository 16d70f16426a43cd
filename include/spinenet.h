/* spinenet.h: SpineNet (Du et al., CVPR 2020) in C11, for classification and detection on CPU.
 *
 * What it is
 *   A library that builds every SpineNet variant from its block-spec table (49S, 49, 96, 143,
 *   143L, 190, Mobile-49/49S/49XS), with the RetinaNet detection head or the ImageNet-style
 *   classification head, in either of the two official flavours:
 *     "garden"  TF2 Model Garden (TF 'SAME' padding, repeated max-pools, BN eps 1e-3), default;
 *     "tpu"     the original TF1 code (symmetric padding, one max-pool + nearest resize).
 *   Tensors are NHWC float32, weights HWIO, files safetensors (see docs/weights.md).
 *
 * Ten lines
 *   sn_config cfg;
 *   sn_model *m = NULL;
 *   sn_output out;
 *   if (sn_config_init(&cfg, "spinenet-49") != SN_OK ||  // garden flavour, RetinaNet head
 *       sn_model_create(&cfg, 1, &m) != SN_OK ||         // seed 1; or sn_model_load(path, &m)
 *       sn_model_set_threads(m, 2) != SN_OK ||
 *       sn_model_plan(m, 1, 640, 640) != SN_OK ||        // batch, height, width
 *       sn_model_run(m, image_nhwc) != SN_OK ||          // [1][640][640][3] floats
 *       sn_model_output(m, "P3", &out) != SN_OK)         // out.data is [1][80][80][256]
 *       fprintf(stderr, "error: %s\n", sn_last_error());
 *   sn_model_free(m);                                     // NULL is fine
 *
 * Detection in four calls (a RetinaNet model; boxes in the image's own pixels)
 *   sn_image img;
 *   sn_detection_list *dets = NULL;
 *   if (sn_image_load("photo.jpg", &img) == SN_OK &&          // JPEG/PNG, EXIF applied
 *       sn_model_detect(m, &img, NULL, &dets) == SN_OK)        // NULL: default parameters
 *       for (int i = 0; i < dets->count; i++) ...             // dets->items[i].x0, ...
 *   sn_detection_list_free(dets);
 *   sn_image_free(&img);
 *
 * Lifecycle: create or load once, plan for an input shape (sizes and workspace are fixed
 * there), run many times, free. Re-planning for another shape is allowed.
 * Errors: every call returns sn_status; sn_last_error() holds a readable message for the
 * calling thread. The library never exits, aborts or prints.
 * Ownership: output pointers stay owned by the model and are valid until the next plan, run
 * or free. Strings passed in are copied.
 */
#ifndef SPINENET_H
#define SPINENET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SN_VERSION_STRING "0.1.0"

/* Marks the functions of this API: the shared library is built with -fvisibility=hidden, so
 * these are the only symbols it exports (the internal functions stay private to it). */
#if defined(__GNUC__) || defined(__clang__)
#define SN_API __attribute__((visibility("default")))
#else
#define SN_API
#endif

typedef enum {
    SN_OK = 0,
    SN_ERR_INVALID_ARG, /* a bad argument or configuration */
    SN_ERR_OOM,         /* an allocation failed */
    SN_ERR_IO,          /* a file could not be opened, read or written */
    SN_ERR_FORMAT,      /* a file is malformed (safetensors, block-spec table, JSON) */
    SN_ERR_SHAPE,       /* a tensor or input has the wrong shape */
    SN_ERR_NOT_FOUND,   /* a named thing (variant, tensor, output) does not exist */
    SN_ERR_UNSUPPORTED, /* valid but not supported (e.g. an input size a flavour cannot serve) */
    SN_ERR_STATE        /* call out of order (e.g. run before plan) */
} sn_status;

/* The message of the last error on this thread ("" if none). */
SN_API const char *sn_last_error(void);
SN_API const char *sn_status_name(sn_status s);

typedef enum {
    SN_ACT_NONE = 0,
    SN_ACT_RELU,
    SN_ACT_SWISH,
    SN_ACT_HSWISH,   /* x * relu6(x + 3) / 6 */
    SN_ACT_SIGMOID,
    SN_ACT_HSIGMOID, /* relu6(x + 3) * 0.16667 (the Model Garden constant) */
    SN_ACT_RELU6
} sn_act;

typedef enum { SN_FLAVOUR_GARDEN = 0, SN_FLAVOUR_TPU = 1 } sn_flavour;
typedef enum { SN_HEAD_NONE = 0, SN_HEAD_RETINANET = 1, SN_HEAD_CLASSIFIER = 2 } sn_head;

#define SN_NAME_MAX 64
#define SN_PATH_MAX 1024

/* Everything that defines a model's architecture. sn_config_init() fills the published defaults
 * of a variant; change fields afterwards, then sn_model_create(). */
typedef struct {
    char model[SN_NAME_MAX];  /* "spinenet-49", ..., "spinenet-mobile-49xs" */
    sn_flavour flavour;
    sn_head head;
    sn_act activation;        /* SN_ACT_NONE: swish; hard-swish for garden mobile-49 and -49s */
    int min_level, max_level; /* endpoints; default 3..7 */
    int p2;                   /* 1: also build the level-2 output row and endpoint P2 (garden) */
    int num_classes;          /* default 91 (retinanet), 1001 (classifier) */
    int input_size;           /* reference square input size (weights do not depend on it) */
    float bn_eps;             /* 0: the flavour's default (garden 1e-3; tpu 1e-4, 1e-5 cls) */
    int head_convs;           /* retinanet tower depth; default per variant */
    int head_filters;         /* retinanet tower width; default per variant */
    float anchor_size;        /* RetinaNet anchor size: 3, or 4 for 143, 143L, 190; any
                                 value > 0 (e.g. 1.5 for objects of 12..200 px at 256 px) */
    /* Architecture overrides (0 = the variant's scaling map). */
    int endpoints_filters;
    float filter_scale;
    float resample_alpha;
    int block_repeats;
    /* Training only: stochastic-depth initial rate (the last block's rate; 0 = off) and BN momentum
     * (0 = the flavour's: garden 0.99; tpu 0.997, classifier 0.9). */
    float drop_path_rate;
    float bn_momentum;
    /* Optional block-spec table file (see docs/blockspec.md); "" = the built-in table. */
    char block_spec_path[SN_PATH_MAX];
} sn_config;

SN_API sn_status sn_config_init(sn_config *cfg, const char *model_name);
/* Fill the defaults that depend on several fields (activation 0 = the variant's for the flavour,
 * bn_eps 0 = the flavour's, num_classes 0 = the head's). Done by sn_model_create too. */
SN_API void sn_config_resolve(sn_config *cfg);
/* Parse names used on the command line; return SN_ERR_INVALID_ARG for unknown ones. */
SN_API sn_status sn_parse_flavour(const char *s, sn_flavour *out);
SN_API sn_status sn_parse_head(const char *s, sn_head *out);
SN_API sn_status sn_parse_act(const char *s, sn_act *out);
SN_API const char *sn_flavour_name(sn_flavour f);
SN_API const char *sn_head_name(sn_head h);
SN_API const char *sn_act_name(sn_act a);
/* The list of built-in model names, NULL-terminated. */
SN_API const char *const *sn_model_names(void);

typedef struct sn_model sn_model;

/* Build a model from a config; weights are initialised with `seed` (variance scaling for the
 * backbone; N(0, 0.01) head towers, N(0, 1e-5) predictors, class bias -log(99) for RetinaNet;
 * docs/architecture.md lists them all). */
SN_API sn_status sn_model_create(const sn_config *cfg, uint64_t seed, sn_model **out);
SN_API sn_status sn_model_load(const char *path, sn_model **out);
SN_API sn_status sn_model_save(const sn_model *m, const char *path);
SN_API void sn_model_free(sn_model *m);
SN_API const sn_config *sn_model_config(const sn_model *m);

/* Threads used by every kernel of this model (default 1; <= 0 means all cores). The kernels use
 * OpenMP (libgomp); on a machine shared with other busy processes, start the program with
 * GOMP_SPINCOUNT=10000 (or OMP_WAIT_POLICY=passive) in its environment, as the spinenet tool
 * does for itself: libgomp's default spinning at barriers can make 2 threads 10x slower than 1
 * when another process holds a core. The environment variable SN_ISA (generic, avx2, avx512)
 * picks the kernels' build; by default the best one this CPU supports. */
SN_API sn_status sn_model_set_threads(sn_model *m, int nthreads);
/* Inference folds batch-norm into the convolutions (default on). Takes effect at plan. */
SN_API sn_status sn_model_set_fold_bn(sn_model *m, int fold);

/* Plan for an input of batch x height x width x 3. */
SN_API sn_status sn_model_plan(sn_model *m, int batch, int height, int width);
/* Run on input [batch][height][width][3], RGB, each value (pixel / 255 - mean) / std with
 * ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). */
SN_API sn_status sn_model_run(sn_model *m, const float *input);

typedef struct {
    const char *name;  /* "P3".."P7", "class.3".."class.7", "box.3".."box.7", "logits" */
    const float *data; /* NHWC ([n][h][w][c]); logits are [n][1][1][classes] */
    int n, h, w, c;
} sn_output;

SN_API int sn_model_num_outputs(const sn_model *m);
SN_API sn_status sn_model_output_at(const sn_model *m, int i, sn_output *out);
SN_API sn_status sn_model_output(const sn_model *m, const char *name, sn_output *out);
/* Bytes of the activation arena of the current plan. */
SN_API size_t sn_model_arena_bytes(const sn_model *m);

/* Per-layer timing of sn_model_run (off by default; costs two clock reads per layer). Switching
 * it on or re-planning zeroes the counters. sn_model_profile fills up to `max` entries, one per
 * layer in execution order, and returns the number of layers (call with max 0 to size). */
typedef struct {
    const char *op;  /* "conv", "add", "maxpool", "upsample", "resize", "gap", "dense", ... */
    const char *act; /* activation applied by the layer: "none", "relu", "swish", ... */
    int batch, in_h, in_w, in_c, out_h, out_w, out_c;
    int kh, kw, stride, groups; /* convolutions only, else 0 */
    int64_t macs;               /* multiply-adds per run (convolutions and dense layers) */
    double seconds;             /* summed over `runs` runs */
    long runs;
    int fused; /* 1: an add done by the convolution before it (its time is in that layer) */
} sn_layer_profile;
SN_API sn_status sn_model_set_profile(sn_model *m, int on);
SN_API int sn_model_profile(const sn_model *m, sn_layer_profile *out, int max);

/* Class names (optional; saved in the weight file's metadata). Names are copied; none may
 * contain a newline. sn_model_class_name returns NULL when unnamed or out of range. */
SN_API sn_status sn_model_set_class_names(sn_model *m, const char *const *names, int n);
SN_API const char *sn_model_class_name(const sn_model *m, int i);

/* Parameters (named tensors, see docs/weights.md). */
typedef struct {
    const char *name;
    float *data;
    int ndim;
    int64_t shape[4];
    size_t count;
} sn_param;
SN_API int sn_model_num_params(const sn_model *m);
SN_API sn_status sn_model_param_at(sn_model *m, int i, sn_param *out);
SN_API sn_status sn_model_param(sn_model *m, const char *name, sn_param *out);

/* Architecture report for an input size: one row per block. */
typedef struct {
    int index;        /* feature index (0,1 stem groups; 2.. table rows); -1 stem, -2 head, -3 endpoints */
    int level;
    char type[16];    /* "stem", "bottleneck", "residual", "mbconv", "endpoints", "head" */
    int channels;
    int height, width;
    int64_t params;
    int64_t macs;
    int parents[2];
    int is_output;
} sn_block_info;

/* Fills up to max rows; *n_rows gets the number of rows; totals are always computed. */
SN_API sn_status sn_model_info(sn_model *m, int height, int width, sn_block_info *rows,
                               int max_rows, int *n_rows, int64_t *total_params,
                               int64_t *total_macs);
/* The same report from a config alone, without allocating or initialising weights. */
SN_API sn_status sn_config_info(const sn_config *cfg, int height, int width,
                                sn_block_info *rows, int max_rows, int *n_rows,
                                int64_t *total_params, int64_t *total_macs);

/* ---- Images and detection ---------------------------------------------------------------- */

/* An 8-bit image, row-major [height][width][channels], interleaved; channels is 3 (RGB) or 1
 * (grayscale). An image of the caller's own pixels may be passed to sn_model_detect too (then
 * the caller frees them, not sn_image_free). */
typedef struct {
    uint8_t *pixels;
    int width, height, channels;
} sn_image;

/* Decode a JPEG or PNG file (chosen by its first bytes) to RGB (channels 3: grayscale
 * replicated, alpha dropped, 16-bit reduced to 8). A JPEG's EXIF orientation tag is applied, so
 * the image is upright as photo viewers show it and boxes refer to those pixels. A truncated or
 * corrupt file is an error, never a half-grey image. *out is zeroed on failure. */
SN_API sn_status sn_image_load(const char *path, sn_image *out);
/* Free the pixels of an image from sn_image_load and zero the struct (a zeroed one is fine). */
SN_API void sn_image_free(sn_image *img);

/* How sn_model_detect turns the RetinaNet outputs into detections. sn_detect_params_init fills
 * the official detection generator's defaults (the TF2 Model Garden's and the TF1 code's):
 * for each class, the best 5000 anchors scoring above score_threshold, their boxes decoded,
 * NMS per class at nms_iou keeping 100, then the best max_detections of all classes. */
typedef struct {
    int size;               /* target size S (the longer side is resized to S, the image placed
                               on an S x S canvas rounded up to a multiple of 128); 0 = the
                               model's input_size */
    float score_threshold;  /* keep scores strictly above this, in [0, 1) (0.05) */
    float nms_iou;          /* per-class NMS drops a box overlapping a better one of its class
                               by IoU > nms_iou, in [0, 1] (0.5) */
    int max_detections;     /* the best this many are kept (100) */
    float agnostic_nms_iou; /* > 0: afterwards drop a detection overlapping a better one of any
                               class by IoU > this, so one object keeps one label (not in the
                               official generator; 0 = off, the default) */
} sn_detect_params;

SN_API void sn_detect_params_init(sn_detect_params *p);

typedef struct {
    float x0, y0, x1, y1;   /* left, top, right, bottom in pixels of the image passed in */
    float score;            /* sigmoid of the class logit */
    int class_id;           /* the head's class column, 1 .. num_classes - 1 (0 is background) */
    const char *class_name; /* the model's name of the class, or NULL when it has none */
} sn_detection;

/* The detections of one image, best first. Owned by the caller: sn_detection_list_free. */
typedef struct {
    int count;
    sn_detection *items;
} sn_detection_list;

/* Detect objects in one image with a model that has the RetinaNet head: the eval
 * pre-processing (resize keeping the aspect ratio, normalise, zero padding), a run, the
 * detection generator and the optional class-agnostic NMS of *p (NULL: the defaults), boxes
 * mapped back to the image. The model is planned for [1][P][P][3] unless it already is (a plan
 * for another shape is replaced) and uses its threads. Class names are copied, so the list
 * outlives the model. *out is NULL on failure. */
SN_API sn_status sn_model_detect(sn_model *m, const sn_image *img, const sn_detect_params *p,
                                 sn_detection_list **out);
SN_API void sn_detection_list_free(sn_detection_list *list); /* NULL is fine */

#ifdef __cplusplus
}
#endif
#endif
