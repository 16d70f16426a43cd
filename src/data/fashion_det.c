/* The built-in "fashion-det" detection dataset: scene rendering (backgrounds, resized and tinted
 * Fashion-MNIST items under overlap bounds) and the COCO writer. See fashion_det.h. */
#include "fashion_det.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

const char *const sn_fashion_det_class_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* Source pixels at or below this fraction of the item's maximum are background. */
#define ALPHA_CUT 0.1
/* Normalised intensity at which an item becomes fully opaque. */
#define ALPHA_FULL 0.6
/* Least luminance difference between an item's colour and what lies under it. */
#define MIN_CONTRAST 70.0
#define TWO_PI 6.283185307179586

void sn_fashion_det_defaults(sn_fashion_det_options *o) {
    memset(o, 0, sizeof *o);
    o->fmnist_dir = SN_FASHION_DET_DEFAULT_DIR;
    o->image_size = 256;
    o->train_count = 3000;
    o->val_count = 300;
    o->min_objects = 1;
    o->max_objects = 12;
    o->min_size = 12;
    o->max_size = 200;
    o->max_iou = 0.3;
    o->max_hidden = 0.3;
    o->max_tries = 40;
    o->seed = 1;
    o->threads = 0;
}

sn_status sn_fashion_det_check(const sn_fashion_det_options *o) {
    if (!o) return sn_error(SN_ERR_INVALID_ARG, "fashion-det: NULL options");
    if (o->image_size < 32 || o->image_size > 8192)
        return sn_error(SN_ERR_INVALID_ARG, "fashion-det: image size %d outside 32..8192",
                        o->image_size);
    if (o->train_count < 0 || o->val_count < 0 || o->train_count > 10000000 ||
        o->val_count > 10000000 || o->train_count + o->val_count == 0)
        return sn_error(SN_ERR_INVALID_ARG,
                        "fashion-det: image counts %d (train) and %d (val) must be 0..10000000, "
                        "not both 0",
                        o->train_count, o->val_count);
    if (o->min_objects < 1 || o->max_objects < o->min_objects ||
        o->max_objects > SN_FASHION_DET_MAX_OBJECTS)
        return sn_error(SN_ERR_INVALID_ARG,
                        "fashion-det: objects per image %d..%d, need 1 <= min <= max <= %d",
                        o->min_objects, o->max_objects, SN_FASHION_DET_MAX_OBJECTS);
    if (!(o->min_size >= 4) || !(o->max_size >= o->min_size) || o->max_size > o->image_size)
        return sn_error(SN_ERR_INVALID_ARG,
                        "fashion-det: object sizes %g..%g, need 4 <= min <= max <= image size %d",
                        o->min_size, o->max_size, o->image_size);
    if (!(o->max_iou > 0 && o->max_iou <= 1))
        return sn_error(SN_ERR_INVALID_ARG, "fashion-det: max IoU %g outside (0, 1]", o->max_iou);
    if (!(o->max_hidden >= 0 && o->max_hidden <= 1))
        return sn_error(SN_ERR_INVALID_ARG, "fashion-det: max hidden fraction %g outside [0, 1]",
                        o->max_hidden);
    if (o->max_tries < 1 || o->max_tries > 100000)
        return sn_error(SN_ERR_INVALID_ARG, "fashion-det: max tries %d outside 1..100000",
                        o->max_tries);
    return SN_OK;
}

/* ---- Random numbers: splitmix64, one stream per image -------------------------------------- */

typedef struct {
    uint64_t s;
} prng;

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t prng_next(prng *r) { return mix64(r->s += 0x9E3779B97F4A7C15ULL); }

static double prng_u01(prng *r) { return (double)(prng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

static double prng_range(prng *r, double lo, double hi) { return lo + (hi - lo) * prng_u01(r); }

/* Uniform integer in [0, n). */
static int prng_below(prng *r, int n) {
    int v = (int)(prng_u01(r) * n);
    return v < n ? v : n - 1;
}

/* The seed of one image: the stream must not depend on how images are spread over threads. */
static uint64_t image_seed(uint64_t seed, int train, int index) {
    uint64_t h = mix64(seed ^ 0x6A09E667F3BCC909ULL);
    h = mix64(h ^ (train ? 0x1111111111111111ULL : 0x2222222222222222ULL));
    return mix64(h + (uint64_t)index * 0x9E3779B97F4A7C15ULL);
}

/* ---- Colours ---------------------------------------------------------------------------- */

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* A colour of mean (r+g+b)/3 = lum: the chroma moves along the plane orthogonal to grey, and
 * is limited so that no channel clips, which keeps the luminance exact. */
static void colour_make(double lum, double chroma, double hue, float c[3]) {
    double room = fmin(lum, 255.0 - lum) / 0.8165;
    if (chroma > room) chroma = room;
    double a = chroma * cos(hue), b = chroma * sin(hue);
    c[0] = (float)clampd(lum + a * 0.816496580927726, 0, 255);
    c[1] = (float)clampd(lum - a * 0.408248290463863 + b * 0.707106781186548, 0, 255);
    c[2] = (float)clampd(lum - a * 0.408248290463863 - b * 0.707106781186548, 0, 255);
}

static void colour_background(prng *r, float c[3]) {
    double lum = prng_range(r, 40, 215);
    double chroma = prng_range(r, 0, 55);
    colour_make(lum, chroma, prng_range(r, 0, TWO_PI), c);
}

static void colour_near(prng *r, const float base[3], double spread, float c[3]) {
    double lum = (base[0] + base[1] + base[2]) / 3.0 + prng_range(r, -spread, spread);
    colour_make(clampd(lum, 40, 215), prng_range(r, 0, 55), prng_range(r, 0, TWO_PI), c);
}

static double smoothstep(double t) {
    t = clampd(t, 0, 1);
    return t * t * (3 - 2 * t);
}

static void lerp3(float *dst, const float a[3], const float b[3], double t) {
    for (int k = 0; k < 3; k++) dst[k] = (float)(a[k] + (b[k] - a[k]) * t);
}

/* ---- Backgrounds: smooth, low-frequency, different per image -------------------------------- */

static void bg_linear(float *cv, int S, prng *r) {
    float c1[3], c2[3];
    colour_background(r, c1);
    colour_background(r, c2);
    double ang = prng_range(r, 0, TWO_PI), spread = S * prng_range(r, 0.7, 1.6);
    double dx = cos(ang) / spread, dy = sin(ang) / spread;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            double t = (x - 0.5 * S) * dx + (y - 0.5 * S) * dy + 0.5;
            lerp3(cv + ((size_t)y * S + x) * 3, c1, c2, smoothstep(t));
        }
}

static void bg_radial(float *cv, int S, prng *r) {
    float c1[3], c2[3];
    colour_background(r, c1);
    colour_background(r, c2);
    double cx = prng_range(r, -0.25, 1.25) * S, cy = prng_range(r, -0.25, 1.25) * S;
    double rad = prng_range(r, 0.5, 1.5) * S;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            double d = sqrt((x - cx) * (x - cx) + (y - cy) * (y - cy));
            lerp3(cv + ((size_t)y * S + x) * 3, c1, c2, smoothstep(d / rad));
        }
}

static void bg_blobs(float *cv, int S, prng *r) {
    float base[3];
    colour_background(r, base);
    for (size_t p = 0; p < (size_t)S * S; p++) memcpy(cv + 3 * p, base, sizeof base);
    int n = 2 + prng_below(r, 5);
    for (int b = 0; b < n; b++) {
        float c[3];
        colour_background(r, c);
        double cx = prng_range(r, -0.1, 1.1) * S, cy = prng_range(r, -0.1, 1.1) * S;
        double sig = prng_range(r, 0.1, 0.33) * S, strength = prng_range(r, 0.4, 0.9);
        double inv = 1.0 / (2 * sig * sig);
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                double d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
                if (d2 * inv > 12) continue; /* weight below 1e-5 * strength: no visible change */
                float *px = cv + ((size_t)y * S + x) * 3;
                lerp3(px, px, c, strength * exp(-d2 * inv));
            }
    }
}

static void bg_stripes(float *cv, int S, prng *r) {
    float c1[3], c2[3];
    colour_background(r, c1);
    /* two close colours: soft bands, not edges that could pass for an item's outline */
    colour_near(r, c1, 45, c2);
    double ang = prng_range(r, 0, TWO_PI), period = prng_range(r, 0.125, 0.5) * S;
    double phase = prng_range(r, 0, TWO_PI);
    double dx = cos(ang) * TWO_PI / period, dy = sin(ang) * TWO_PI / period;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            double t = 0.5 + 0.5 * sin(x * dx + y * dy + phase);
            lerp3(cv + ((size_t)y * S + x) * 3, c1, c2, t);
        }
}

static void bg_value_noise(float *cv, int S, prng *r) {
    enum { GMAX = 6 };
    float grid[GMAX + 1][GMAX + 1][3], base[3];
    int g = 2 + prng_below(r, 4); /* 2..5 cells a side */
    colour_background(r, base);
    for (int j = 0; j <= g; j++)
        for (int i = 0; i <= g; i++) colour_near(r, base, 50, grid[j][i]);
    for (int y = 0; y < S; y++) {
        double gy = (y + 0.5) * g / S;
        int j = (int)gy;
        if (j >= g) j = g - 1;
        double ty = smoothstep(gy - j);
        for (int x = 0; x < S; x++) {
            double gx = (x + 0.5) * g / S;
            int i = (int)gx;
            if (i >= g) i = g - 1;
            double tx = smoothstep(gx - i);
            float top[3], bot[3];
            lerp3(top, grid[j][i], grid[j][i + 1], tx);
            lerp3(bot, grid[j + 1][i], grid[j + 1][i + 1], tx);
            lerp3(cv + ((size_t)y * S + x) * 3, top, bot, ty);
        }
    }
}

static void render_background(float *cv, int S, prng *r) {
    switch (prng_below(r, 5)) {
    case 0: bg_linear(cv, S, r); break;
    case 1: bg_radial(cv, S, r); break;
    case 2: bg_blobs(cv, S, r); break;
    case 3: bg_stripes(cv, S, r); break;
    default: bg_value_noise(cv, S, r); break;
    }
    if (prng_u01(r) < 0.5) {
        /* faint lighting: a multiplicative ramp of up to +-20% across the image */
        double ang = prng_range(r, 0, TWO_PI), amp = prng_range(r, 0.05, 0.2);
        double dx = cos(ang) * 2 * amp / S, dy = sin(ang) * 2 * amp / S;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                double f = 1 + (x - 0.5 * S) * dx + (y - 0.5 * S) * dy;
                float *px = cv + ((size_t)y * S + x) * 3;
                for (int k = 0; k < 3; k++) px[k] = (float)clampd(px[k] * f, 0, 255);
            }
    }
}

/* Round the canvas to bytes, adding grey noise (the same integer in [-amp, amp] on the three
 * channels of a pixel: PNG stores that far more cheaply than independent colour noise) from
 * `noise_seed`. Called twice with the same seed (background alone, then the finished image),
 * so that the two agree exactly wherever no item was drawn. */
static void quantise(const float *cv, size_t npx, uint64_t noise_seed, int amp, uint8_t *out) {
    prng r = {noise_seed};
    for (size_t i = 0; i < npx; i++) {
        int d = amp > 0 ? prng_below(&r, 2 * amp + 1) - amp : 0;
        for (int k = 0; k < 3; k++) {
            int v = (int)(cv[3 * i + k] + 0.5f) + d;
            out[3 * i + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}

/* ---- Items: resize with a tent filter, alpha from intensity --------------------------------- */

/* Resample one axis: out[o] for o in [0, n_out) from in[0 .. n_in) (zeros outside), with
 * output pixel o centred at source coordinate start + (o + 0.5) / scale. `stride_in` and
 * `stride_out` step between samples; `count` independent lines `line_in` / `line_out` apart. */
static void resample_axis(const float *in, int n_in, int stride_in, int line_in, float *out,
                          int n_out, int stride_out, int line_out, int count, double start,
                          double scale) {
    double radius = scale < 1 ? 1.0 / scale : 1.0;
    for (int o = 0; o < n_out; o++) {
        double c = start + (o + 0.5) / scale;
        int i0 = (int)floor(c - radius - 0.5), i1 = (int)ceil(c + radius - 0.5);
        double wsum = 0;
        for (int i = i0; i <= i1; i++) {
            double w = 1 - fabs(i + 0.5 - c) / radius;
            if (w > 0) wsum += w;
        }
        for (int l = 0; l < count; l++) {
            double acc = 0;
            for (int i = i0 < 0 ? 0 : i0; i <= i1 && i < n_in; i++) {
                double w = 1 - fabs(i + 0.5 - c) / radius;
                if (w > 0) acc += w * in[(size_t)l * line_in + (size_t)i * stride_in];
            }
            out[(size_t)l * line_out + (size_t)o * stride_out] = (float)(wsum > 0 ? acc / wsum : 0);
        }
    }
}

/* Resize the normalised item `norm` [R][C] by (fx, fy) around its content box x0..x1, y0..y1
 * and quantise the alpha; *patch is [oh][ow] (sn_alloc'ed) and the tight box of its non-zero
 * pixels is returned in bx0..by1 (bx1 < 0: none). */
static sn_status render_alpha(const float *norm, int R, int C, int x0, int x1, int y0, int y1,
                              double fx, double fy, float **patch, int *ow_out, int *oh_out,
                              int box[4]) {
    double cw = x1 - x0 + 1, ch = y1 - y0 + 1;
    /* margins (source pixels) that hold the filter's fade-out around the content box */
    double mx = (fx < 1 ? 1 / fx : 1) + 0.5, my = (fy < 1 ? 1 / fy : 1) + 0.5;
    int ow = (int)ceil((cw + 2 * mx) * fx), oh = (int)ceil((ch + 2 * my) * fy);
    float *tmp = sn_alloc(sizeof(float) * (size_t)R * ow);
    float *out = sn_alloc(sizeof(float) * (size_t)oh * ow);
    if (!tmp || !out) {
        sn_free(tmp);
        sn_free(out);
        return SN_ERR_OOM;
    }
    resample_axis(norm, C, 1, C, tmp, ow, 1, ow, R, x0 - mx, fx);
    resample_axis(tmp, R, ow, 1, out, oh, ow, 1, ow, y0 - my, fy);
    sn_free(tmp);
    box[0] = ow, box[1] = oh, box[2] = -1, box[3] = -1;
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            double a = (out[(size_t)y * ow + x] - ALPHA_CUT) / (ALPHA_FULL - ALPHA_CUT);
            int q = (int)(clampd(a, 0, 1) * 255 + 0.5);
            out[(size_t)y * ow + x] = (float)q;
            if (q > 0) {
                if (x < box[0]) box[0] = x;
                if (y < box[1]) box[1] = y;
                if (x > box[2]) box[2] = x;
                if (y > box[3]) box[3] = y;
            }
        }
    *patch = out;
    *ow_out = ow;
    *oh_out = oh;
    return SN_OK;
}

/* Build the alpha mask of one item whose box's longer side should be `side` pixels: fills
 * obj's w, h, mask (tight). Returns SN_OK with obj->mask NULL when the item has no visible
 * pixel (the caller leaves it out). */
static sn_status make_item_mask(const sn_fashion_det_source *src, int index, double side,
                                int flip, double jitter, sn_fashion_det_object *obj) {
    const int R = src->rows, C = src->cols;
    const uint8_t *px = src->pixels + (size_t)index * R * C;
    obj->mask = NULL;
    obj->w = obj->h = 0;
    int vmax = 0;
    for (int i = 0; i < R * C; i++)
        if (px[i] > vmax) vmax = px[i];
    if (vmax == 0) return SN_OK;
    /* the content box: pixels that get a non-zero alpha at the source's own scale */
    int x0 = C, x1 = -1, y0 = R, y1 = -1;
    for (int y = 0; y < R; y++)
        for (int x = 0; x < C; x++)
            if (px[y * C + x] > ALPHA_CUT * vmax) {
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                if (y > y1) y1 = y;
            }
    if (x1 < 0) return SN_OK;
    if (flip) {
        int t = C - 1 - x1;
        x1 = C - 1 - x0;
        x0 = t;
    }
    float *norm = sn_alloc(sizeof(float) * (size_t)R * C), *patch = NULL;
    if (!norm) return SN_ERR_OOM;
    for (int y = 0; y < R; y++)
        for (int x = 0; x < C; x++)
            norm[y * C + x] = (float)px[y * C + (flip ? C - 1 - x : x)] / (float)vmax;
    double k = side / fmax((x1 - x0 + 1) * jitter, (y1 - y0 + 1) / jitter);
    int ow = 0, oh = 0, box[4];
    sn_status st = render_alpha(norm, R, C, x0, x1, y0, y1, k * jitter, k / jitter, &patch, &ow,
                                &oh, box);
    /* The filter's fringe makes the box a little larger than the content box scaled (up to a
     * source pixel's worth): scale once more by the error, so that the box's longer side is
     * `side` to about a pixel. */
    if (st == SN_OK && box[2] >= 0) {
        double got = fmax(box[2] - box[0] + 1, box[3] - box[1] + 1);
        if (fabs(got - side) > 0.5) {
            k *= side / got;
            sn_free(patch);
            patch = NULL;
            st = render_alpha(norm, R, C, x0, x1, y0, y1, k * jitter, k / jitter, &patch, &ow,
                              &oh, box);
        }
    }
    if (st != SN_OK || box[2] < 0) goto done;
    obj->w = box[2] - box[0] + 1;
    obj->h = box[3] - box[1] + 1;
    obj->mask = sn_alloc((size_t)obj->w * obj->h);
    if (!obj->mask) {
        obj->w = obj->h = 0;
        st = SN_ERR_OOM;
        goto done;
    }
    for (int y = 0; y < obj->h; y++)
        for (int x = 0; x < obj->w; x++)
            obj->mask[(size_t)y * obj->w + x] =
                (uint8_t)patch[(size_t)(box[1] + y) * ow + box[0] + x];
done:
    sn_free(norm);
    sn_free(patch);
    return st;
}

static double box_iou(const sn_fashion_det_object *a, int ax, int ay, const sn_fashion_det_object *b) {
    int ix = (ax + a->w < b->x + b->w ? ax + a->w : b->x + b->w) - (ax > b->x ? ax : b->x);
    int iy = (ay + a->h < b->y + b->h ? ay + a->h : b->y + b->h) - (ay > b->y ? ay : b->y);
    if (ix <= 0 || iy <= 0) return 0;
    double inter = (double)ix * iy;
    return inter / ((double)a->w * a->h + (double)b->w * b->h - inter);
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

void sn_fashion_det_scene_free(sn_fashion_det_scene *scene) {
    if (!scene) return;
    sn_image_free(&scene->image);
    sn_image_free(&scene->background);
    for (int i = 0; i < SN_FASHION_DET_MAX_OBJECTS; i++) sn_free(scene->objects[i].mask);
    memset(scene, 0, sizeof *scene);
}

sn_status sn_fashion_det_render(const sn_fashion_det_source *src, const sn_fashion_det_options *o,
                                int train, int index, sn_fashion_det_scene *scene) {
    if (!scene) return sn_error(SN_ERR_INVALID_ARG, "fashion-det: NULL scene");
    memset(scene, 0, sizeof *scene);
    sn_status st = sn_fashion_det_check(o);
    if (st != SN_OK) return st;
    if (!src || !src->pixels || !src->labels || src->count < 1 || src->rows < 1 || src->cols < 1)
        return sn_error(SN_ERR_INVALID_ARG, "fashion-det: empty Fashion-MNIST source");
    if (index < 0) return sn_error(SN_ERR_INVALID_ARG, "fashion-det: image index %d", index);
    const int S = o->image_size;
    const size_t npx = (size_t)S * S;
    float *cv = sn_alloc(sizeof(float) * npx * 3);
    uint8_t *owner = sn_calloc(npx, 1);
    if (!cv || !owner) {
        st = SN_ERR_OOM;
        goto done;
    }
    if ((st = sn_image_alloc(&scene->image, S, S, 3)) != SN_OK ||
        (st = sn_image_alloc(&scene->background, S, S, 3)) != SN_OK)
        goto done;

    prng r = {image_seed(o->seed, train, index)};
    render_background(cv, S, &r);
    uint64_t noise_seed = prng_next(&r);
    int noise_amp = prng_u01(&r) < 0.15 ? 1 : 0;
    quantise(cv, npx, noise_seed, noise_amp, scene->background.pixels);

    int n = o->min_objects + prng_below(&r, o->max_objects - o->min_objects + 1);
    double sides[SN_FASHION_DET_MAX_OBJECTS];
    double lmin = log(o->min_size), lmax = log(o->max_size);
    for (int i = 0; i < n; i++) sides[i] = exp(prng_range(&r, lmin, lmax));
    /* largest first: they lie underneath, and small ones rarely fail to find a place */
    qsort(sides, (size_t)n, sizeof sides[0], cmp_desc);

    long total[SN_FASHION_DET_MAX_OBJECTS], visible[SN_FASHION_DET_MAX_OBJECTS];
    long cover[SN_FASHION_DET_MAX_OBJECTS];
    for (int i = 0; i < n; i++) {
        sn_fashion_det_object *ob = &scene->objects[scene->count];
        int idx = 0;
        /* a blank source item is replaced by another, so that the first item always exists */
        for (int pick = 0; pick < 100 && !ob->mask; pick++) {
            idx = prng_below(&r, src->count);
            int flip = prng_u01(&r) < 0.5;
            double jitter = exp(prng_range(&r, -0.15, 0.15));
            double side = sides[i];
            /* a box that would not fit (rounding when max_size is the image size) is made a
             * little smaller */
            for (int shrink = 0; shrink < 40; shrink++) {
                if ((st = make_item_mask(src, idx, side, flip, jitter, ob)) != SN_OK) goto done;
                if (!ob->mask || (ob->w <= S && ob->h <= S)) break;
                sn_free(ob->mask);
                ob->mask = NULL;
                side *= 0.95;
            }
        }
        if (!ob->mask) {
            scene->dropped++;
            continue;
        }
        ob->source_index = idx;
        ob->category = src->labels[idx] + 1;
        long pixels = 0;
        for (size_t p = 0; p < (size_t)ob->w * ob->h; p++) pixels += ob->mask[p] > 0;
        int placed = 0, px = 0, py = 0;
        for (int t = 0; t < o->max_tries && !placed; t++) {
            px = prng_below(&r, S - ob->w + 1);
            py = prng_below(&r, S - ob->h + 1);
            int ok = 1, touches = 0;
            for (int j = 0; j < scene->count && ok; j++) {
                double iou = box_iou(ob, px, py, &scene->objects[j]);
                if (iou > o->max_iou) ok = 0;
                const sn_fashion_det_object *b = &scene->objects[j];
                if (px < b->x + b->w && b->x < px + ob->w && py < b->y + b->h && b->y < py + ob->h)
                    touches = 1;
            }
            if (ok && touches) {
                memset(cover, 0, sizeof(long) * (size_t)scene->count);
                for (int y = 0; y < ob->h; y++)
                    for (int x = 0; x < ob->w; x++) {
                        if (!ob->mask[(size_t)y * ob->w + x]) continue;
                        int w = owner[(size_t)(py + y) * S + px + x];
                        if (w) cover[w - 1]++;
                    }
                for (int j = 0; j < scene->count && ok; j++)
                    if ((double)(visible[j] - cover[j]) < (1 - o->max_hidden) * total[j]) ok = 0;
            }
            placed = ok;
        }
        if (!placed) {
            sn_free(ob->mask);
            memset(ob, 0, sizeof *ob);
            scene->dropped++;
            continue;
        }
        ob->x = px;
        ob->y = py;
        int me = scene->count++;
        total[me] = visible[me] = pixels;
        /* colour: any hue, luminance well away from the mean of what the item covers */
        double sum = 0, wsum = 0;
        for (int y = 0; y < ob->h; y++)
            for (int x = 0; x < ob->w; x++) {
                double a = ob->mask[(size_t)y * ob->w + x];
                const float *c = cv + ((size_t)(py + y) * S + px + x) * 3;
                sum += a * (c[0] + c[1] + c[2]) / 3;
                wsum += a;
            }
        double under = sum / wsum;
        double lo_len = fmax(0, under - MIN_CONTRAST), hi_len = fmax(0, 255 - under - MIN_CONTRAST);
        double u = prng_u01(&r) * (lo_len + hi_len);
        double lum = u < lo_len ? u : under + MIN_CONTRAST + (u - lo_len);
        float col[3];
        colour_make(lum, prng_range(&r, 0, 90), prng_range(&r, 0, TWO_PI), col);
        for (int y = 0; y < ob->h; y++)
            for (int x = 0; x < ob->w; x++) {
                int a = ob->mask[(size_t)y * ob->w + x];
                if (!a) continue;
                size_t p = (size_t)(py + y) * S + px + x;
                float *c = cv + p * 3;
                float t = (float)a / 255.0f;
                for (int k = 0; k < 3; k++) c[k] += t * (col[k] - c[k]);
                if (owner[p]) visible[owner[p] - 1]--;
                owner[p] = (uint8_t)(me + 1);
            }
    }
    quantise(cv, npx, noise_seed, noise_amp, scene->image.pixels);
done:
    sn_free(cv);
    sn_free(owner);
    if (st != SN_OK) sn_fashion_det_scene_free(scene);
    return st;
}

/* ---- Fashion-MNIST sources ---------------------------------------------------------------- */

static sn_status check_readable(const char *path) {
    if (access(path, R_OK) == 0) return SN_OK;
    int e = errno;
    return sn_error(SN_ERR_IO,
                    "%s: cannot read the Fashion-MNIST file (%s); the Debian package "
                    "dataset-fashion-mnist provides it (apt-get install dataset-fashion-mnist, "
                    "installed under " SN_FASHION_DET_DEFAULT_DIR ")",
                    path, strerror(e));
}

void sn_fashion_det_source_free(sn_fashion_det_source *src) {
    if (!src) return;
    sn_free(src->pixels);
    sn_free(src->labels);
    memset(src, 0, sizeof *src);
}

sn_status sn_fashion_det_source_load(const char *dir, int train, sn_fashion_det_source *src) {
    if (!src) return sn_error(SN_ERR_INVALID_ARG, "fashion-det: NULL source");
    memset(src, 0, sizeof *src);
    if (!dir) dir = SN_FASHION_DET_DEFAULT_DIR;
    const char *split = train ? "train" : "t10k";
    char ipath[4096], lpath[4096];
    if ((size_t)snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", dir, split) >=
            sizeof ipath ||
        (size_t)snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", dir, split) >=
            sizeof lpath)
        return sn_error(SN_ERR_INVALID_ARG, "%s: Fashion-MNIST folder path too long", dir);
    sn_status st;
    if ((st = check_readable(ipath)) != SN_OK || (st = check_readable(lpath)) != SN_OK) return st;
    int nl = 0;
    if ((st = sn_idx_load_images(ipath, &src->pixels, &src->count, &src->rows, &src->cols)) !=
            SN_OK ||
        (st = sn_idx_load_labels(lpath, &src->labels, &nl)) != SN_OK)
        goto fail;
    if (nl != src->count) {
        st = sn_error(SN_ERR_FORMAT, "%s: %d labels for %d images in %s", lpath, nl, src->count,
                      ipath);
        goto fail;
    }
    for (int i = 0; i < nl; i++)
        if (src->labels[i] > 9) {
            st = sn_error(SN_ERR_FORMAT, "%s: label %d of item %d is not a Fashion-MNIST class 0..9",
                          lpath, src->labels[i], i);
            goto fail;
        }
    return SN_OK;
fail:
    sn_fashion_det_source_free(src);
    return st;
}

/* ---- Output ------------------------------------------------------------------------------- */

typedef struct {
    int cat, x, y, w, h;
} box_rec;

/* Records of one split: per image up to max_objects boxes. */
typedef struct {
    int images, per;
    int *counts;
    box_rec *boxes; /* [images][per] */
} split_recs;

static sn_status write_coco(const char *path, const char *split, const split_recs *rec,
                            const sn_fashion_det_options *o) {
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int bad = 0;
    json_t *root = json_object(), *images = json_array(), *anns = json_array(),
           *cats = json_array(), *info = json_object();
    if (!root || !images || !anns || !cats || !info) bad = 1;
    if (!bad) {
        char desc[160];
        snprintf(desc, sizeof desc,
                 "fashion-det %s: Fashion-MNIST items at many scales on synthetic backgrounds",
                 split);
        bad |= json_object_set_new(info, "description", json_string(desc));
        bad |= json_object_set_new(info, "version", json_string("1"));
        bad |= json_object_set_new(info, "contributor", json_string("spinenet make-dataset"));
        if (o->seed <= (uint64_t)INT64_MAX)
            bad |= json_object_set_new(info, "seed", json_integer((json_int_t)o->seed));
        else {
            char s[32];
            snprintf(s, sizeof s, "%llu", (unsigned long long)o->seed);
            bad |= json_object_set_new(info, "seed", json_string(s));
        }
        bad |= json_object_set_new(info, "image_size", json_integer(o->image_size));
        bad |= json_object_set_new(info, "min_size", json_real(o->min_size));
        bad |= json_object_set_new(info, "max_size", json_real(o->max_size));
        bad |= json_object_set_new(info, "min_objects", json_integer(o->min_objects));
        bad |= json_object_set_new(info, "max_objects", json_integer(o->max_objects));
        bad |= json_object_set_new(info, "max_iou", json_real(o->max_iou));
        bad |= json_object_set_new(info, "max_hidden", json_real(o->max_hidden));
    }
    long ann_id = 1;
    for (int i = 0; i < rec->images && !bad; i++) {
        char name[32];
        snprintf(name, sizeof name, "%06d.png", i + 1);
        json_t *im = json_object();
        bad |= json_array_append_new(images, im);
        if (bad) break;
        bad |= json_object_set_new(im, "id", json_integer(i + 1));
        bad |= json_object_set_new(im, "file_name", json_string(name));
        bad |= json_object_set_new(im, "width", json_integer(o->image_size));
        bad |= json_object_set_new(im, "height", json_integer(o->image_size));
        for (int k = 0; k < rec->counts[i] && !bad; k++) {
            const box_rec *b = &rec->boxes[(size_t)i * rec->per + k];
            json_t *a = json_object(), *bb = json_array();
            bad |= json_array_append_new(anns, a);
            if (bad) {
                json_decref(bb);
                break;
            }
            bad |= json_object_set_new(a, "id", json_integer(ann_id++));
            bad |= json_object_set_new(a, "image_id", json_integer(i + 1));
            bad |= json_object_set_new(a, "category_id", json_integer(b->cat));
            bad |= json_array_append_new(bb, json_real(b->x));
            bad |= json_array_append_new(bb, json_real(b->y));
            bad |= json_array_append_new(bb, json_real(b->w));
            bad |= json_array_append_new(bb, json_real(b->h));
            bad |= json_object_set_new(a, "bbox", bb);
            bad |= json_object_set_new(a, "area", json_real((double)b->w * b->h));
            bad |= json_object_set_new(a, "iscrowd", json_integer(0));
        }
    }
    for (int c = 0; c < 10 && !bad; c++) {
        json_t *cat = json_object();
        bad |= json_array_append_new(cats, cat);
        if (bad) break;
        bad |= json_object_set_new(cat, "id", json_integer(c + 1));
        bad |= json_object_set_new(cat, "name", json_string(sn_fashion_det_class_names[c]));
        bad |= json_object_set_new(cat, "supercategory", json_string("fashion"));
    }
    if (!bad) {
        bad |= json_object_set_new(root, "info", info);
        info = NULL;
        bad |= json_object_set_new(root, "licenses", json_array());
        bad |= json_object_set_new(root, "images", images);
        images = NULL;
        bad |= json_object_set_new(root, "annotations", anns);
        anns = NULL;
        bad |= json_object_set_new(root, "categories", cats);
        cats = NULL;
    }
    json_decref(info);
    json_decref(images);
    json_decref(anns);
    json_decref(cats);
    if (bad) {
        json_decref(root);
        return sn_error(SN_ERR_OOM, "%s: out of memory building the COCO JSON", path);
    }
    int rc = json_dump_file(root, tmp, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (rc != 0) {
        int e = errno;
        unlink(tmp);
        return sn_error(SN_ERR_IO, "%s: cannot write: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return sn_error(SN_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(e));
    }
    return SN_OK;
}

/* Images per batch between progress calls: enough to keep every thread busy. */
#define BATCH_PER_THREAD 16

static sn_status make_split(const char *out_dir, const sn_fashion_det_source *src,
                            const sn_fashion_det_options *o, int train, int threads,
                            split_recs *rec, int done_before, int total, int *dropped) {
    const int n = rec->images;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", out_dir, train ? "train" : "val");
    sn_status err_st = SN_OK;
    int err_index = n;
    char err_msg[1024] = "";
    int drop = 0;
    int batch = BATCH_PER_THREAD * threads;
    for (int b0 = 0; b0 < n && err_st == SN_OK; b0 += batch) {
        int b1 = b0 + batch < n ? b0 + batch : n;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) reduction(+ : drop)
        for (int i = b0; i < b1; i++) {
            sn_fashion_det_scene sc;
            sn_status st = sn_fashion_det_render(src, o, train, i, &sc);
            if (st == SN_OK) {
                char path[4300];
                snprintf(path, sizeof path, "%s/%06d.png", dir, i + 1);
                st = sn_image_save_png(&sc.image, path);
            }
            if (st == SN_OK) {
                rec->counts[i] = sc.count;
                drop += sc.dropped;
                for (int k = 0; k < sc.count; k++) {
                    box_rec *r = &rec->boxes[(size_t)i * rec->per + k];
                    const sn_fashion_det_object *ob = &sc.objects[k];
                    r->cat = ob->category;
                    r->x = ob->x;
                    r->y = ob->y;
                    r->w = ob->w;
                    r->h = ob->h;
                }
            } else {
                /* the message lives in this thread's error slot: copy it out (an unnamed
                 * critical: a named one's lock is a global symbol libspinenet.so would export) */
#pragma omp critical
                if (i < err_index) {
                    err_index = i;
                    err_st = st;
                    snprintf(err_msg, sizeof err_msg, "%s", sn_last_error());
                }
            }
            sn_fashion_det_scene_free(&sc);
        }
        if (err_st == SN_OK && o->progress) o->progress(o->user, done_before + b1, total);
    }
    *dropped = drop;
    if (err_st != SN_OK) return sn_error(err_st, "%s", err_msg);
    return SN_OK;
}

sn_status sn_fashion_det_make(const char *out_dir, const sn_fashion_det_options *o,
                              sn_fashion_det_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    sn_status st = sn_fashion_det_check(o);
    if (st != SN_OK) return st;
    if (!out_dir || !*out_dir)
        return sn_error(SN_ERR_INVALID_ARG, "fashion-det: no output directory");
    if (strlen(out_dir) > 3900)
        return sn_error(SN_ERR_INVALID_ARG, "%s: output directory path too long", out_dir);

    sn_fashion_det_source srcs[2];
    memset(srcs, 0, sizeof srcs);
    split_recs recs[2];
    memset(recs, 0, sizeof recs);
    const int counts[2] = {o->train_count, o->val_count};
    /* the inputs first: a missing Fashion-MNIST file should fail before anything is written */
    for (int s = 0; s < 2; s++)
        if (counts[s] > 0 && (st = sn_fashion_det_source_load(o->fmnist_dir, s == 0, &srcs[s])) !=
                                 SN_OK)
            goto done;

    char path[4200];
    if ((st = sn_make_dirs(out_dir)) != SN_OK) goto done;
    if (access(out_dir, W_OK) != 0) {
        st = sn_error(SN_ERR_IO, "%s: the output directory is not writable: %s", out_dir,
                      strerror(errno));
        goto done;
    }
    static const char *const subdirs[3] = {"train", "val", "annotations"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", out_dir, subdirs[i]);
        if ((st = sn_make_dirs(path)) != SN_OK) goto done;
    }
    /* a JSON file of an earlier run would describe images about to be replaced */
    for (int s = 0; s < 2; s++) {
        snprintf(path, sizeof path, "%s/annotations/instances_%s.json", out_dir, subdirs[s]);
        if (unlink(path) != 0 && errno != ENOENT) {
            st = sn_error(SN_ERR_IO, "%s: cannot remove the old annotations: %s", path,
                          strerror(errno));
            goto done;
        }
    }

    int threads = sn_resolve_threads(o->threads);
    int total = counts[0] + counts[1], done_count = 0;
    for (int s = 0; s < 2; s++) {
        if (counts[s] == 0) continue;
        recs[s].images = counts[s];
        recs[s].per = o->max_objects;
        recs[s].counts = sn_calloc((size_t)counts[s], sizeof(int));
        recs[s].boxes = sn_calloc((size_t)counts[s] * o->max_objects, sizeof(box_rec));
        if (!recs[s].counts || !recs[s].boxes) {
            st = SN_ERR_OOM;
            goto done;
        }
        int dropped = 0;
        st = make_split(out_dir, &srcs[s], o, s == 0, threads, &recs[s], done_count, total,
                        &dropped);
        if (st != SN_OK) goto done;
        done_count += counts[s];
        if (stats) {
            stats->images[s] = counts[s];
            stats->dropped[s] = dropped;
            for (int i = 0; i < counts[s]; i++) stats->objects[s] += recs[s].counts[i];
        }
    }
    for (int s = 0; s < 2; s++) {
        if (counts[s] == 0) continue;
        snprintf(path, sizeof path, "%s/annotations/instances_%s.json", out_dir, subdirs[s]);
        if ((st = write_coco(path, subdirs[s], &recs[s], o)) != SN_OK) goto done;
    }
done:
    for (int s = 0; s < 2; s++) {
        sn_fashion_det_source_free(&srcs[s]);
        sn_free(recs[s].counts);
        sn_free(recs[s].boxes);
    }
    return st;
}

/* ---- Fashion-MNIST as PNG files ----------------------------------------------------------- */

sn_status sn_fashion_mnist_export(const char *fmnist_dir, int train, int first, int count,
                                  const char *out_dir, int *written) {
    if (written) *written = 0;
    if (!fmnist_dir || !out_dir || first < 0 || count < 0)
        return sn_error(SN_ERR_INVALID_ARG, "sn_fashion_mnist_export: bad arguments");
    sn_fashion_det_source src;
    sn_status st = sn_fashion_det_source_load(fmnist_dir, train, &src);
    if (st != SN_OK) return st;
    if ((st = sn_make_dirs(out_dir)) != SN_OK) goto done;
    const int end = first + count < src.count ? first + count : src.count;
    for (int i = first; i < end; i++) {
        char cls[32], path[4400];
        sn_class_file_name(sn_fashion_det_class_names[src.labels[i]], cls, sizeof cls);
        if ((size_t)snprintf(path, sizeof path, "%s/%s", out_dir, cls) >= sizeof path) {
            st = sn_error(SN_ERR_INVALID_ARG, "%s: path too long", out_dir);
            goto done;
        }
        if ((st = sn_make_dirs(path)) != SN_OK) goto done;
        snprintf(path + strlen(path), sizeof path - strlen(path), "/%s-%05d.png",
                 train ? "train" : "t10k", i);
        const size_t n = (size_t)src.rows * (size_t)src.cols;
        sn_image img = {src.pixels + (size_t)i * n, src.cols, src.rows, 1};
        if ((st = sn_image_save_png(&img, path)) != SN_OK) goto done;
        if (written) (*written)++;
    }
done:
    sn_fashion_det_source_free(&src);
    return st;
}
