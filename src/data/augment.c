/* Geometric augmentation and input normalisation: bilinear resize (half-pixel centres),
 * random/eval crop boxes with horizontal flip, and the ImageNet mean/std normalisation of the
 * official pipelines (preprocess_ops.normalize_image) to NHWC float. */
#include <math.h>
#include <string.h>

#include "data.h"

const float sn_norm_mean[3] = {0.485f, 0.456f, 0.406f};
const float sn_norm_std[3] = {0.229f, 0.224f, 0.225f};

/* One axis of the sampling grid: for each output index, the two source indices and the weight
 * of the second. Precomputing it keeps the inner loops free of divisions and clamps. */
typedef struct {
    int i0, i1;
    float t;
} tap;

static void make_taps(tap *taps, int out_n, double start, double len, int src_n) {
    double scale = len / out_n;
    for (int o = 0; o < out_n; o++) {
        double s = start + (o + 0.5) * scale - 0.5;
        /* Clamping the coordinate (rather than the indices) replicates edge pixels, which is
         * what the half-pixel convention does at borders. */
        if (s < 0) s = 0;
        if (s > src_n - 1) s = src_n - 1;
        int i0 = (int)floor(s);
        if (i0 > src_n - 1) i0 = src_n - 1;
        int i1 = i0 + 1 < src_n ? i0 + 1 : src_n - 1;
        taps[o].i0 = i0;
        taps[o].i1 = i1;
        taps[o].t = (float)(s - i0);
    }
}

static sn_status check_dims(const char *fn, int sh, int sw, int c, int dh, int dw) {
    if (sh <= 0 || sw <= 0 || dh <= 0 || dw <= 0 || c <= 0)
        return sn_error(SN_ERR_SHAPE, "%s: bad sizes %dx%dx%d -> %dx%d", fn, sh, sw, c, dh, dw);
    return SN_OK;
}

/* The two axes' taps for resampling a box of the source onto the output grid. */
typedef struct {
    tap *ty, *tx;
} grid;

static sn_status make_grid(grid *g, int dh, int dw, double y0, double hh, double x0, double ww,
                           int sh, int sw) {
    g->ty = sn_alloc(sizeof(tap) * (size_t)dh);
    g->tx = sn_alloc(sizeof(tap) * (size_t)dw);
    if (!g->ty || !g->tx) {
        sn_free(g->ty);
        sn_free(g->tx);
        return SN_ERR_OOM;
    }
    make_taps(g->ty, dh, y0, hh, sh);
    make_taps(g->tx, dw, x0, ww, sw);
    return SN_OK;
}

static void free_grid(grid *g) {
    sn_free(g->ty);
    sn_free(g->tx);
}

sn_status sn_resize_u8(const uint8_t *src, int sh, int sw, int c, uint8_t *dst, int dh, int dw) {
    if (!src || !dst) return sn_error(SN_ERR_INVALID_ARG, "sn_resize_u8: NULL buffer");
    sn_status st = check_dims("sn_resize_u8", sh, sw, c, dh, dw);
    grid g;
    if (st == SN_OK) st = make_grid(&g, dh, dw, 0, sh, 0, sw, sh, sw);
    if (st != SN_OK) return st;
    for (int y = 0; y < dh; y++) {
        const uint8_t *r0 = src + (size_t)g.ty[y].i0 * sw * c;
        const uint8_t *r1 = src + (size_t)g.ty[y].i1 * sw * c;
        float ty = g.ty[y].t;
        uint8_t *out = dst + (size_t)y * dw * c;
        for (int x = 0; x < dw; x++) {
            const tap *tx = &g.tx[x];
            for (int k = 0; k < c; k++) {
                float a = r0[tx->i0 * c + k] + (r0[tx->i1 * c + k] - r0[tx->i0 * c + k]) * tx->t;
                float b = r1[tx->i0 * c + k] + (r1[tx->i1 * c + k] - r1[tx->i0 * c + k]) * tx->t;
                float v = a + (b - a) * ty + 0.5f;
                out[x * c + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    free_grid(&g);
    return SN_OK;
}

sn_status sn_resize_f32(const float *src, int sh, int sw, int c, float *dst, int dh, int dw) {
    if (!src || !dst) return sn_error(SN_ERR_INVALID_ARG, "sn_resize_f32: NULL buffer");
    sn_status st = check_dims("sn_resize_f32", sh, sw, c, dh, dw);
    grid g;
    if (st == SN_OK) st = make_grid(&g, dh, dw, 0, sh, 0, sw, sh, sw);
    if (st != SN_OK) return st;
    for (int y = 0; y < dh; y++) {
        const float *r0 = src + (size_t)g.ty[y].i0 * sw * c;
        const float *r1 = src + (size_t)g.ty[y].i1 * sw * c;
        float ty = g.ty[y].t;
        float *out = dst + (size_t)y * dw * c;
        for (int x = 0; x < dw; x++) {
            const tap *tx = &g.tx[x];
            for (int k = 0; k < c; k++) {
                float a = r0[tx->i0 * c + k] + (r0[tx->i1 * c + k] - r0[tx->i0 * c + k]) * tx->t;
                float b = r1[tx->i0 * c + k] + (r1[tx->i1 * c + k] - r1[tx->i0 * c + k]) * tx->t;
                out[x * c + k] = a + (b - a) * ty;
            }
        }
    }
    free_grid(&g);
    return SN_OK;
}

void sn_aug_defaults(sn_aug_params *p) {
    if (!p) return;
    p->min_area = 0.08f;
    p->max_area = 1.0f;
    p->min_aspect = 3.0f / 4.0f;
    p->max_aspect = 4.0f / 3.0f;
    p->hflip = 1;
    p->eval_fraction = 1.0f;
}

sn_crop sn_crop_eval(int width, int height, const sn_aug_params *p) {
    sn_crop c = {0, 0, (float)width, (float)height, 0};
    float f = p ? p->eval_fraction : 1.0f;
    if (f > 0 && f < 1) {
        /* Central square of the short side, as the usual ImageNet eval crop. */
        float side = f * (float)(width < height ? width : height);
        c.x = 0.5f * ((float)width - side);
        c.y = 0.5f * ((float)height - side);
        c.w = c.h = side;
    }
    return c;
}

sn_crop sn_crop_random(sn_rng *rng, int width, int height, const sn_aug_params *p) {
    sn_aug_params def;
    if (!p) {
        sn_aug_defaults(&def);
        p = &def;
    }
    sn_crop c = {0, 0, (float)width, (float)height, 0};
    double area = (double)width * height;
    /* Aspect ratio sampled log-uniformly so that 3/4 and 4/3 are equally likely. */
    double la = log(p->min_aspect > 0 ? p->min_aspect : 1.0);
    double lb = log(p->max_aspect > 0 ? p->max_aspect : 1.0);
    int found = 0;
    for (int attempt = 0; attempt < 10 && !found; attempt++) {
        double target = area * (p->min_area + (p->max_area - p->min_area) * sn_rng_uniform(rng));
        double aspect = exp(la + (lb - la) * sn_rng_uniform(rng));
        double w = sqrt(target * aspect), h = sqrt(target / aspect);
        if (w <= width && h <= height && w >= 1 && h >= 1) {
            /* Integer-sized boxes at integer offsets: crops stay pixel-aligned, which keeps the
             * 1:1 case (box = output size) an exact copy. */
            int iw = (int)(w + 0.5), ih = (int)(h + 0.5);
            if (iw > width) iw = width;
            if (ih > height) ih = height;
            c.w = (float)iw;
            c.h = (float)ih;
            c.x = (float)(int)(sn_rng_uniform(rng) * (width - iw + 1));
            c.y = (float)(int)(sn_rng_uniform(rng) * (height - ih + 1));
            found = 1;
        }
    }
    if (!found) {
        /* Fall back to the largest central crop within the aspect range. */
        double ratio = (double)width / height;
        double lo = p->min_aspect > 0 ? p->min_aspect : ratio;
        double hi = p->max_aspect > 0 ? p->max_aspect : ratio;
        double w = width, h = height;
        if (ratio < lo) h = w / lo;
        else if (ratio > hi) w = h * hi;
        c.w = (float)w;
        c.h = (float)h;
        c.x = (float)(0.5 * (width - w));
        c.y = (float)(0.5 * (height - h));
    }
    /* The flip draw always happens so the stream position does not depend on p->hflip. */
    double u = sn_rng_uniform(rng);
    c.flip = p->hflip && u < 0.5;
    return c;
}

void sn_normalize_u8(const uint8_t *src, size_t n, int c, float *dst) {
    /* (v / 255 - mean) / std == v * scale + bias, per channel */
    float scale[3], bias[3];
    for (int k = 0; k < 3; k++) {
        scale[k] = 1.0f / (255.0f * sn_norm_std[k]);
        bias[k] = -sn_norm_mean[k] / sn_norm_std[k];
    }
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) {
            uint8_t v = src[i * (size_t)c + (c == 3 ? k : 0)];
            dst[i * 3 + k] = v * scale[k] + bias[k];
        }
}

sn_status sn_crop_resize_normalize(const sn_image *img, sn_crop crop, int out_h, int out_w,
                                   float *dst) {
    return sn_crop_resize_normalize_strided(img, crop, out_h, out_w, dst, (size_t)out_w * 3);
}

sn_status sn_crop_resize_normalize_strided(const sn_image *img, sn_crop crop, int out_h,
                                           int out_w, float *dst, size_t row_stride) {
    if (!img || !img->pixels || !dst || (img->channels != 1 && img->channels != 3))
        return sn_error(SN_ERR_INVALID_ARG, "sn_crop_resize_normalize: bad image");
    if (!(crop.w > 0 && crop.h > 0))
        return sn_error(SN_ERR_INVALID_ARG, "sn_crop_resize_normalize: empty crop");
    int c = img->channels, sw = img->width;
    sn_status st = check_dims("sn_crop_resize_normalize", img->height, img->width, c, out_h, out_w);
    grid g;
    if (st == SN_OK)
        st = make_grid(&g, out_h, out_w, crop.y, crop.h, crop.x, crop.w, img->height, img->width);
    if (st != SN_OK) return st;
    float scale[3], bias[3];
    for (int k = 0; k < 3; k++) {
        scale[k] = 1.0f / (255.0f * sn_norm_std[k]);
        bias[k] = -sn_norm_mean[k] / sn_norm_std[k];
    }
    for (int y = 0; y < out_h; y++) {
        const uint8_t *r0 = img->pixels + (size_t)g.ty[y].i0 * sw * c;
        const uint8_t *r1 = img->pixels + (size_t)g.ty[y].i1 * sw * c;
        float ty = g.ty[y].t;
        float *out = dst + (size_t)y * row_stride;
        for (int x = 0; x < out_w; x++) {
            /* Mirroring the output is the same as sampling the mirrored crop. */
            const tap *tx = &g.tx[crop.flip ? out_w - 1 - x : x];
            for (int k = 0; k < 3; k++) {
                int kk = c == 3 ? k : 0;
                float a = r0[tx->i0 * c + kk] + (r0[tx->i1 * c + kk] - r0[tx->i0 * c + kk]) * tx->t;
                float b = r1[tx->i0 * c + kk] + (r1[tx->i1 * c + kk] - r1[tx->i0 * c + kk]) * tx->t;
                out[x * 3 + k] = (a + (b - a) * ty) * scale[k] + bias[k];
            }
        }
    }
    free_grid(&g);
    return SN_OK;
}

void sn_image_hflip(sn_image *img) {
    if (!img || !img->pixels) return;
    int c = img->channels, w = img->width;
    for (int y = 0; y < img->height; y++) {
        uint8_t *row = img->pixels + (size_t)y * w * c;
        for (int a = 0, b = w - 1; a < b; a++, b--)
            for (int k = 0; k < c; k++) {
                uint8_t t = row[a * c + k];
                row[a * c + k] = row[b * c + k];
                row[b * c + k] = t;
            }
    }
}
