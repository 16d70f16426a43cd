/* Image codecs: JPEG (libjpeg-turbo) and PNG (libspng) decoding to RGB8, PNG encoding. */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <spng.h>

#include "data.h"

/* Refuse images above this many pixels: a corrupt or hostile header must not make us
 * allocate gigabytes. 2^28 pixels is far beyond any training photo. */
#define IMG_MAX_PIXELS ((size_t)1 << 28)
#define IMG_MAX_DIM 65535

sn_status sn_image_alloc(sn_image *img, int width, int height, int channels) {
    if (!img) return sn_error(SN_ERR_INVALID_ARG, "sn_image_alloc: NULL image");
    memset(img, 0, sizeof *img);
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3) ||
        (size_t)width * (size_t)height > IMG_MAX_PIXELS)
        return sn_error(SN_ERR_INVALID_ARG, "image %dx%dx%d is not allowed", width, height,
                        channels);
    img->pixels = sn_alloc((size_t)width * (size_t)height * (size_t)channels);
    if (!img->pixels) return SN_ERR_OOM;
    img->width = width;
    img->height = height;
    img->channels = channels;
    return SN_OK;
}

void sn_image_free(sn_image *img) {
    if (!img) return;
    sn_free(img->pixels);
    memset(img, 0, sizeof *img);
}

typedef enum { FMT_UNKNOWN, FMT_JPEG, FMT_PNG } img_format;

static img_format sniff(const uint8_t *b, size_t n) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return FMT_JPEG;
    if (n >= 8 && memcmp(b, png_sig, 8) == 0) return FMT_PNG;
    return FMT_UNKNOWN;
}

/* ---- JPEG ---------------------------------------------------------------------------------- */

/* libjpeg's default error handler prints and calls exit(); ours records the message and jumps
 * back to the decode call, which cleans up and returns an error. */
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_err *e = (jpeg_err *)cinfo->err;
    cinfo->err->format_message(cinfo, e->msg);
    longjmp(e->jump, 1);
}

/* Warnings (msg_level -1) come from corrupt or truncated entropy data; libjpeg would carry on
 * and fill the rest with grey. For training data a silently damaged image is worse than a
 * reported one, so they are fatal too. Trace messages (level >= 0) are ignored. */
static void jpeg_on_message(j_common_ptr cinfo, int msg_level) {
    if (msg_level < 0) jpeg_on_error(cinfo);
}

static void jpeg_silent_output(j_common_ptr cinfo) { (void)cinfo; }

/* Shared by decode and probe: set up error handling; a jump back lands in the caller. */
static void jpeg_setup_errors(struct jpeg_decompress_struct *cinfo, jpeg_err *err) {
    cinfo->err = jpeg_std_error(&err->pub);
    err->pub.error_exit = jpeg_on_error;
    err->pub.emit_message = jpeg_on_message;
    err->pub.output_message = jpeg_silent_output;
    err->msg[0] = 0;
}

static sn_status jpeg_decode(const uint8_t *data, size_t size, const char *name, sn_image *out) {
    struct jpeg_decompress_struct cinfo;
    jpeg_err err;
    /* Modified between setjmp and longjmp, so volatile (C11 7.13.2.1). */
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile row = NULL;
    jpeg_setup_errors(&cinfo, &err);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        sn_free(pixels);
        sn_free(row);
        return sn_error(SN_ERR_FORMAT, "%s: corrupt JPEG: %s", name, err.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    /* CMYK/YCCK cannot be converted to RGB by libjpeg; take CMYK and convert below. */
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t w = cinfo.output_width, h = cinfo.output_height;
    int comps = cinfo.output_components;
    if (w == 0 || h == 0 || w * h > IMG_MAX_PIXELS || comps != (cmyk ? 4 : 3)) {
        jpeg_destroy_decompress(&cinfo);
        return sn_error(SN_ERR_UNSUPPORTED, "%s: JPEG %zux%zu with %d components not supported",
                        name, w, h, comps);
    }
    pixels = sn_alloc(w * h * 3);
    if (cmyk) row = sn_alloc(w * 4);
    if (!pixels || (cmyk && !row)) {
        jpeg_destroy_decompress(&cinfo);
        sn_free(pixels);
        sn_free(row);
        return sn_error(SN_ERR_OOM, "%s: out of memory decoding a %zux%zu JPEG", name, w, h);
    }
    while (cinfo.output_scanline < h) {
        uint8_t *dst = pixels + (size_t)cinfo.output_scanline * w * 3;
        JSAMPROW r = cmyk ? row : dst;
        jpeg_read_scanlines(&cinfo, &r, 1);
        if (cmyk) {
            /* Adobe writes CMYK inverted (255 = no ink); others store plain ink amounts. */
            int inv = cinfo.saw_Adobe_marker;
            for (size_t x = 0; x < w; x++) {
                unsigned c[4];
                for (int k = 0; k < 4; k++) c[k] = inv ? row[4 * x + k] : 255u - row[4 * x + k];
                for (int k = 0; k < 3; k++) dst[3 * x + k] = (uint8_t)((c[k] * c[3] + 127) / 255);
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    sn_free(row);
    out->pixels = pixels;
    out->width = (int)w;
    out->height = (int)h;
    out->channels = 3;
    return SN_OK;
}

/* ---- PNG ----------------------------------------------------------------------------------- */

static sn_status png_decode(const uint8_t *data, size_t size, const char *name, sn_image *out) {
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx) return sn_error(SN_ERR_OOM, "%s: out of memory creating a PNG decoder", name);
    sn_status st = SN_OK;
    uint8_t *pixels = NULL;
    struct spng_ihdr ihdr;
    size_t len = 0;
    int rc = spng_set_image_limits(ctx, IMG_MAX_DIM, IMG_MAX_DIM);
    if (!rc) rc = spng_set_png_buffer(ctx, data, size);
    if (!rc) rc = spng_get_ihdr(ctx, &ihdr);
    if (!rc && (size_t)ihdr.width * ihdr.height > IMG_MAX_PIXELS) {
        st = sn_error(SN_ERR_UNSUPPORTED, "%s: PNG %ux%u is too large", name, ihdr.width,
                      ihdr.height);
        goto done;
    }
    /* SPNG_FMT_RGB8 converts every colour type and depth (palette, gray, 16-bit, alpha
     * dropped); transparency is not composited since training images are opaque. */
    if (!rc) rc = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &len);
    if (!rc) {
        pixels = sn_alloc(len);
        if (!pixels) {
            st = sn_error(SN_ERR_OOM, "%s: out of memory decoding a PNG", name);
            goto done;
        }
        rc = spng_decode_image(ctx, pixels, len, SPNG_FMT_RGB8, 0);
    }
    if (rc) {
        st = sn_error(SN_ERR_FORMAT, "%s: corrupt PNG: %s", name, spng_strerror(rc));
        goto done;
    }
    if (len != (size_t)ihdr.width * ihdr.height * 3) {
        st = sn_error(SN_ERR_FORMAT, "%s: PNG decoded to %zu bytes, expected %ux%ux3", name, len,
                      ihdr.width, ihdr.height);
        goto done;
    }
    out->pixels = pixels;
    pixels = NULL;
    out->width = (int)ihdr.width;
    out->height = (int)ihdr.height;
    out->channels = 3;
done:
    sn_free(pixels);
    spng_ctx_free(ctx);
    return st;
}

/* ---- Entry points -------------------------------------------------------------------------- */

sn_status sn_image_decode(const uint8_t *data, size_t size, const char *name, sn_image *out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_image_decode: NULL output");
    memset(out, 0, sizeof *out);
    if (!name) name = "(memory)";
    if (!data) return sn_error(SN_ERR_INVALID_ARG, "%s: NULL data", name);
    switch (sniff(data, size)) {
    case FMT_JPEG: return jpeg_decode(data, size, name, out);
    case FMT_PNG: return png_decode(data, size, name, out);
    default: break;
    }
    return sn_error(SN_ERR_FORMAT, "%s: not a JPEG or PNG file (unrecognised first bytes)", name);
}

sn_status sn_image_load(const char *path, sn_image *out) {
    if (!path || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_image_load: bad arguments");
    memset(out, 0, sizeof *out);
    char *data;
    size_t size;
    sn_status st = sn_read_file(path, &data, &size);
    if (st != SN_OK) return st;
    st = sn_image_decode((const uint8_t *)data, size, path, out);
    sn_free(data);
    return st;
}

static sn_status jpeg_probe(FILE *f, const char *path, int *width, int *height) {
    struct jpeg_decompress_struct cinfo;
    jpeg_err err;
    jpeg_setup_errors(&cinfo, &err);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return sn_error(SN_ERR_FORMAT, "%s: corrupt JPEG: %s", path, err.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    *width = (int)cinfo.image_width;
    *height = (int)cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    return SN_OK;
}

static sn_status png_probe(FILE *f, const char *path, int *width, int *height) {
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx) return sn_error(SN_ERR_OOM, "%s: out of memory creating a PNG decoder", path);
    struct spng_ihdr ihdr;
    int rc = spng_set_image_limits(ctx, IMG_MAX_DIM, IMG_MAX_DIM);
    if (!rc) rc = spng_set_png_file(ctx, f);
    if (!rc) rc = spng_get_ihdr(ctx, &ihdr);
    spng_ctx_free(ctx);
    if (rc) return sn_error(SN_ERR_FORMAT, "%s: corrupt PNG: %s", path, spng_strerror(rc));
    *width = (int)ihdr.width;
    *height = (int)ihdr.height;
    return SN_OK;
}

sn_status sn_image_probe(const char *path, int *width, int *height) {
    if (!path || !width || !height) return sn_error(SN_ERR_INVALID_ARG, "sn_image_probe: bad arguments");
    FILE *f = fopen(path, "rb");
    if (!f) return sn_error(SN_ERR_IO, "%s: cannot open", path);
    uint8_t magic[8];
    size_t n = fread(magic, 1, sizeof magic, f);
    sn_status st;
    img_format fmt = sniff(magic, n);
    if (fmt == FMT_UNKNOWN) {
        st = sn_error(SN_ERR_FORMAT, "%s: not a JPEG or PNG file (unrecognised first bytes)", path);
    } else if (fseek(f, 0, SEEK_SET) != 0) {
        st = sn_error(SN_ERR_IO, "%s: cannot seek", path);
    } else {
        st = fmt == FMT_JPEG ? jpeg_probe(f, path, width, height)
                             : png_probe(f, path, width, height);
    }
    fclose(f);
    if (st == SN_OK && ((size_t)*width * (size_t)*height == 0 ||
                        (size_t)*width * (size_t)*height > IMG_MAX_PIXELS))
        st = sn_error(SN_ERR_UNSUPPORTED, "%s: image size %dx%d not supported", path, *width,
                      *height);
    return st;
}

/* ---- PNG encoding -------------------------------------------------------------------------- */

sn_status sn_image_encode_png(const sn_image *img, uint8_t **png, size_t *size) {
    if (!img || !img->pixels || !png || !size || img->width <= 0 || img->height <= 0 ||
        (img->channels != 1 && img->channels != 3))
        return sn_error(SN_ERR_INVALID_ARG, "sn_image_encode_png: bad image");
    *png = NULL;
    *size = 0;
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    if (!ctx) return sn_error(SN_ERR_OOM, "out of memory creating a PNG encoder");
    struct spng_ihdr ihdr = {0};
    ihdr.width = (uint32_t)img->width;
    ihdr.height = (uint32_t)img->height;
    ihdr.bit_depth = 8;
    ihdr.color_type = img->channels == 3 ? SPNG_COLOR_TYPE_TRUECOLOR : SPNG_COLOR_TYPE_GRAYSCALE;
    size_t len = (size_t)img->width * img->height * img->channels;
    sn_status st = SN_OK;
    int rc = spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    if (!rc) rc = spng_set_ihdr(ctx, &ihdr);
    if (!rc) rc = spng_encode_image(ctx, img->pixels, len, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    if (rc) {
        st = sn_error(SN_ERR_FORMAT, "PNG encoding failed: %s", spng_strerror(rc));
    } else {
        size_t n = 0;
        /* spng's buffer comes from its own allocator: copy it into one of ours so that the
         * caller frees every data-layer buffer the same way. */
        void *buf = spng_get_png_buffer(ctx, &n, &rc);
        if (!buf || rc) {
            st = sn_error(SN_ERR_FORMAT, "PNG encoding failed: %s", spng_strerror(rc));
        } else if ((*png = sn_alloc(n)) == NULL) {
            st = SN_ERR_OOM;
        } else {
            memcpy(*png, buf, n);
            *size = n;
        }
        free(buf);
    }
    spng_ctx_free(ctx);
    return st;
}

sn_status sn_image_save_png(const sn_image *img, const char *path) {
    if (!path) return sn_error(SN_ERR_INVALID_ARG, "sn_image_save_png: NULL path");
    uint8_t *png = NULL;
    size_t size = 0;
    sn_status st = sn_image_encode_png(img, &png, &size);
    if (st != SN_OK) return st;
    /* Saved whole (sn_save_buffer), so that a viewer never sees half a file and a failed
     * write leaves an older picture as it was. */
    st = sn_save_buffer(path, png, size);
    sn_free(png);
    return st;
}
