/* Detection pre-processing and augmentation: one geometry (sn_det_xform) drives the pixels and
 * the boxes, so they cannot disagree. See det_data.h for the conventions. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "det_data.h"

void sn_det_aug_defaults(sn_det_aug *a) {
    if (!a) return;
    a->scale_min = 0.5f;
    a->scale_max = 2.0f;
    a->hflip = 1;
}

int sn_det_canvas_size(int size) { return (size + 127) / 128 * 128; }

/* TensorFlow's tf.round: half to even (the default rounding mode of nearbyint). */
static int round_even(double v) { return (int)nearbyint(v); }

sn_status sn_det_plan(int orig_h, int orig_w, int size, int train, const sn_det_aug *aug,
                      sn_rng *rng, sn_det_xform *xf) {
    if (!xf) return sn_error(SN_ERR_INVALID_ARG, "sn_det_plan: NULL xform");
    memset(xf, 0, sizeof *xf);
    if (orig_h < 1 || orig_w < 1 || size < 1)
        return sn_error(SN_ERR_INVALID_ARG, "sn_det_plan: image %dx%d, size %d", orig_w, orig_h,
                        size);
    if (train && (!aug || !rng || !(aug->scale_min > 0) || !(aug->scale_max >= aug->scale_min)))
        return sn_error(SN_ERR_INVALID_ARG, "sn_det_plan: training needs a random source and "
                        "0 < scale_min <= scale_max");
    double jitter = 1.0;
    if (train) jitter = aug->scale_min + (aug->scale_max - aug->scale_min) * sn_rng_uniform(rng);
    const int target = round_even(jitter * size) > 0 ? round_even(jitter * size) : 1;
    const double s = fmin((double)target / orig_h, (double)target / orig_w);
    xf->orig_h = orig_h;
    xf->orig_w = orig_w;
    xf->size = size;
    xf->scaled_h = round_even(orig_h * s) > 0 ? round_even(orig_h * s) : 1;
    xf->scaled_w = round_even(orig_w * s) > 0 ? round_even(orig_w * s) : 1;
    xf->scale_y = (float)xf->scaled_h / (float)orig_h;
    xf->scale_x = (float)xf->scaled_w / (float)orig_w;
    if (train) {
        const int my = xf->scaled_h > size ? xf->scaled_h - size : 0;
        const int mx = xf->scaled_w > size ? xf->scaled_w - size : 0;
        xf->off_y = (int)(my * sn_rng_uniform(rng));
        xf->off_x = (int)(mx * sn_rng_uniform(rng));
        xf->flip = aug->hflip && sn_rng_uniform(rng) < 0.5;
    }
    xf->content_h = xf->scaled_h - xf->off_y < size ? xf->scaled_h - xf->off_y : size;
    xf->content_w = xf->scaled_w - xf->off_x < size ? xf->scaled_w - xf->off_x : size;
    return SN_OK;
}

sn_status sn_det_render(const sn_image *img, const sn_det_xform *xf, int canvas, float *dst) {
    if (!img || !img->pixels || !xf || !dst)
        return sn_error(SN_ERR_INVALID_ARG, "sn_det_render: NULL argument");
    if (img->height != xf->orig_h || img->width != xf->orig_w)
        return sn_error(SN_ERR_SHAPE, "sn_det_render: image %dx%d, geometry planned for %dx%d",
                        img->width, img->height, xf->orig_w, xf->orig_h);
    if (canvas < xf->size)
        return sn_error(SN_ERR_SHAPE, "sn_det_render: canvas %d smaller than the size %d", canvas,
                        xf->size);
    const size_t row = (size_t)canvas * 3;
    /* The window of the resized image, in original pixels. Mirroring: the window of the
     * mirrored image is the mirror of the window at the other end of the unmirrored one. */
    const double fy = (double)xf->orig_h / xf->scaled_h, fx = (double)xf->orig_w / xf->scaled_w;
    const int wx = xf->flip ? xf->scaled_w - xf->off_x - xf->content_w : xf->off_x;
    sn_crop crop = {(float)(wx * fx), (float)(xf->off_y * fy), (float)(xf->content_w * fx),
                    (float)(xf->content_h * fy), xf->flip};
    sn_status st =
        sn_crop_resize_normalize_strided(img, crop, xf->content_h, xf->content_w, dst, row);
    if (st != SN_OK) return st;
    for (int y = 0; y < canvas; y++) {
        float *r = dst + (size_t)y * row;
        if (y < xf->content_h)
            memset(r + (size_t)xf->content_w * 3, 0,
                   (size_t)(canvas - xf->content_w) * 3 * sizeof *r);
        else
            memset(r, 0, row * sizeof *r);
    }
    return SN_OK;
}

int sn_det_map_boxes(const sn_det_xform *xf, const sn_det_box *in, int n, sn_det_box *out) {
    int k = 0;
    const float lim = (float)xf->size;
    for (int i = 0; i < n; i++) {
        sn_det_box b = in[i];
        if (xf->flip) {
            const float x0 = (float)xf->orig_w - b.x1, x1 = (float)xf->orig_w - b.x0;
            b.x0 = x0;
            b.x1 = x1;
        }
        b.y0 = fminf(fmaxf(b.y0 * xf->scale_y - (float)xf->off_y, 0.0f), lim);
        b.y1 = fminf(fmaxf(b.y1 * xf->scale_y - (float)xf->off_y, 0.0f), lim);
        b.x0 = fminf(fmaxf(b.x0 * xf->scale_x - (float)xf->off_x, 0.0f), lim);
        b.x1 = fminf(fmaxf(b.x1 * xf->scale_x - (float)xf->off_x, 0.0f), lim);
        if (b.y1 - b.y0 > 0.0f && b.x1 - b.x0 > 0.0f) out[k++] = b;
    }
    return k;
}

void sn_det_unmap_box(const sn_det_xform *xf, const float in[4], float out[4]) {
    const float h = (float)xf->orig_h, w = (float)xf->orig_w;
    float y0 = (in[0] + (float)xf->off_y) / xf->scale_y, y1 = (in[2] + (float)xf->off_y) / xf->scale_y;
    float x0 = (in[1] + (float)xf->off_x) / xf->scale_x, x1 = (in[3] + (float)xf->off_x) / xf->scale_x;
    if (xf->flip) {
        const float a = w - x1, b = w - x0;
        x0 = a;
        x1 = b;
    }
    out[0] = fminf(fmaxf(y0, 0.0f), h);
    out[1] = fminf(fmaxf(x0, 0.0f), w);
    out[2] = fminf(fmaxf(y1, 0.0f), h);
    out[3] = fminf(fmaxf(x1, 0.0f), w);
}

sn_status sn_det_source_init(sn_det_source *src, const sn_coco *coco, const char *image_dir,
                             int size, const sn_det_aug *aug) {
    if (!src || !coco || !image_dir)
        return sn_error(SN_ERR_INVALID_ARG, "sn_det_source_init: NULL argument");
    if (size < 32) return sn_error(SN_ERR_INVALID_ARG, "detection input size %d is too small", size);
    memset(src, 0, sizeof *src);
    src->coco = coco;
    if (snprintf(src->image_dir, sizeof src->image_dir, "%s", image_dir) >=
        (int)sizeof src->image_dir)
        return sn_error(SN_ERR_INVALID_ARG, "image folder path too long: %s", image_dir);
    src->size = size;
    if (aug)
        src->aug = *aug;
    else
        sn_det_aug_defaults(&src->aug);
    for (int i = 0; i < coco->num_images; i++)
        if (coco->images[i].num_anns > src->max_boxes) src->max_boxes = coco->images[i].num_anns;
    return SN_OK;
}

size_t sn_det_sample_bytes(const sn_det_source *src) {
    const size_t b = sizeof(sn_det_sample) + sizeof(sn_det_box) * (size_t)src->max_boxes;
    return (b + 15) & ~(size_t)15;
}

const sn_det_sample *sn_det_batch_sample(const sn_det_source *src, const void *extra, int index) {
    return (const sn_det_sample *)((const unsigned char *)extra +
                                   sn_det_sample_bytes(src) * (size_t)index);
}

sn_status sn_det_prepare(void *user, int32_t index, int train, uint64_t seed, float *image,
                         void *extra, int32_t *label) {
    const sn_det_source *src = user;
    const sn_coco *c = src->coco;
    if (index < 0 || index >= (src->keep ? src->num_keep : c->num_images) || !extra)
        return sn_error(SN_ERR_INVALID_ARG, "detection sample %d out of range", (int)index);
    if (src->keep) index = src->keep[index];
    const sn_coco_image *ci = &c->images[index];
    char path[2 * SN_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", src->image_dir, ci->file_name);
    sn_image img;
    sn_status st = sn_image_load_stored(path, &img);
    if (st != SN_OK) return st;
    if (img.width != ci->width || img.height != ci->height) {
        st = sn_error(SN_ERR_FORMAT, "%s: the image is %dx%d but the annotation file says %dx%d",
                      path, img.width, img.height, ci->width, ci->height);
        sn_image_free(&img);
        return st;
    }
    sn_det_sample *s = extra;
    s->image = index;
    sn_rng r;
    sn_rng_seed(&r, seed);
    st = sn_det_plan(img.height, img.width, src->size, train, &src->aug, &r, &s->xf);
    if (st == SN_OK) st = sn_det_render(&img, &s->xf, sn_det_canvas_size(src->size), image);
    sn_image_free(&img);
    if (st != SN_OK) return st;
    int n = 0;
    for (int k = 0; k < ci->num_anns && n < src->max_boxes; k++) {
        const sn_coco_ann *a = &c->anns[ci->first_ann + k];
        s->boxes[n++] = (sn_det_box){(float)a->box[1], (float)a->box[0],
                                     (float)(a->box[1] + a->box[3]),
                                     (float)(a->box[0] + a->box[2]), a->column, a->iscrowd};
    }
    s->n_boxes = sn_det_map_boxes(&s->xf, s->boxes, n, s->boxes);
    if (label) *label = 0;
    return SN_OK;
}
