/* Image codecs: JPEG (libjpeg-turbo) and PNG (libspng) decoding to RGB8, PNG and JPEG encoding. */
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

/* ---- EXIF orientation ----------------------------------------------------------------------- */

/* Big- or little-endian reads inside the TIFF block of an EXIF segment. */
static unsigned tiff_u16(const uint8_t *p, int be) {
    return be ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0];
}
static uint32_t tiff_u32(const uint8_t *p, int be) {
    return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
              : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* Tag 0x0112 (a SHORT) of IFD0 in a TIFF block (EXIF 2.3, section 4.6.4), else 1. */
static int tiff_orientation(const uint8_t *t, size_t n) {
    if (n < 8 || !((t[0] == 'I' && t[1] == 'I') || (t[0] == 'M' && t[1] == 'M'))) return 1;
    const int be = t[0] == 'M';
    if (tiff_u16(t + 2, be) != 42) return 1;
    const uint32_t ifd = tiff_u32(t + 4, be);
    if (ifd > n - 2) return 1;
    const unsigned count = tiff_u16(t + ifd, be);
    for (unsigned i = 0; i < count; i++) {
        const size_t e = ifd + 2 + (size_t)i * 12;
        if (e + 12 > n) return 1;
        if (tiff_u16(t + e, be) != 0x0112) continue;
        /* Type 3 (SHORT), count 1: the value sits in the first two bytes of the value field. */
        if (tiff_u16(t + e + 2, be) != 3 || tiff_u32(t + e + 4, be) != 1) return 1;
        const unsigned v = tiff_u16(t + e + 8, be);
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

int sn_jpeg_exif_orientation(const uint8_t *data, size_t size) {
    if (!data || size < 4 || data[0] != 0xFF || data[1] != 0xD8) return 1;
    /* The segments before the image data: FF, marker, then a big-endian length that counts
     * itself. EXIF is an APP1 segment starting "Exif\0\0". */
    size_t p = 2;
    while (p + 4 <= size && data[p] == 0xFF) {
        const uint8_t marker = data[p + 1];
        if (marker == 0xFF) { /* fill byte */
            p++;
            continue;
        }
        if (marker == 0xDA || marker == 0xD9) break; /* start of scan, end of image */
        const size_t len = (size_t)data[p + 2] << 8 | data[p + 3];
        if (len < 2 || p + 2 + len > size) break;
        const uint8_t *seg = data + p + 4;
        if (marker == 0xE1 && len >= 8 && memcmp(seg, "Exif\0\0", 6) == 0)
            return tiff_orientation(seg + 6, len - 8);
        p += 2 + len;
    }
    return 1;
}

sn_status sn_image_orient(const sn_image *img, int orientation, sn_image *out) {
    if (!img || !img->pixels || !out || orientation < 1 || orientation > 8)
        return sn_error(SN_ERR_INVALID_ARG, "sn_image_orient: bad arguments");
    const int w = img->width, h = img->height, c = img->channels;
    const int swap = orientation >= 5; /* 5..8 turn by a quarter: width and height swap */
    sn_status st = sn_image_alloc(out, swap ? h : w, swap ? w : h, c);
    if (st != SN_OK) return st;
    /* For each upright pixel (X, Y), the stored pixel (x, y) it shows. 2: mirrored; 3: turned
     * half way; 4: flipped; 5: transposed; 6: stored turned 90 degrees anticlockwise (shown
     * turned clockwise); 7: transverse; 8: stored turned clockwise. */
    for (int Y = 0; Y < out->height; Y++)
        for (int X = 0; X < out->width; X++) {
            int x, y;
            switch (orientation) {
            case 2: x = w - 1 - X, y = Y; break;
            case 3: x = w - 1 - X, y = h - 1 - Y; break;
            case 4: x = X, y = h - 1 - Y; break;
            case 5: x = Y, y = X; break;
            case 6: x = Y, y = h - 1 - X; break;
            case 7: x = w - 1 - Y, y = h - 1 - X; break;
            case 8: x = w - 1 - Y, y = X; break;
            default: x = X, y = Y; break;
            }
            memcpy(out->pixels + ((size_t)Y * out->width + X) * c,
                   img->pixels + ((size_t)y * w + x) * c, (size_t)c);
        }
    return SN_OK;
}

/* Reads the file; orient != 0 applies a JPEG's EXIF orientation. */
static sn_status load(const char *path, int orient, sn_image *out) {
    if (!path || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_image_load: bad arguments");
    memset(out, 0, sizeof *out);
    char *data;
    size_t size;
    sn_status st = sn_read_file(path, &data, &size);
    if (st != SN_OK) return st;
    st = sn_image_decode((const uint8_t *)data, size, path, out);
    const int o = orient && st == SN_OK ? sn_jpeg_exif_orientation((const uint8_t *)data, size) : 1;
    sn_free(data);
    if (o != 1) {
        sn_image up;
        st = sn_image_orient(out, o, &up);
        sn_image_free(out);
        if (st != SN_OK) return sn_error(st, "%s: %s", path, sn_last_error());
        *out = up;
    }
    return st;
}

sn_status sn_image_load(const char *path, sn_image *out) { return load(path, 1, out); }

sn_status sn_image_load_stored(const char *path, sn_image *out) { return load(path, 0, out); }

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

/* ---- JPEG encoding ------------------------------------------------------------------------- */

sn_status sn_image_encode_jpeg(const sn_image *img, int quality, uint8_t **jpg, size_t *size) {
    if (!img || !img->pixels || !jpg || !size || img->width <= 0 || img->height <= 0 ||
        (img->channels != 1 && img->channels != 3) || quality < 1 || quality > 100)
        return sn_error(SN_ERR_INVALID_ARG, "sn_image_encode_jpeg: bad image or quality");
    *jpg = NULL;
    *size = 0;
    struct jpeg_compress_struct cinfo;
    jpeg_err err;
    /* libjpeg's output buffer and size, on the heap: it updates them while writing, and an
     * error longjmps back here, after which only memory outside this frame is certain. */
    struct out {
        unsigned char *buf;
        unsigned long n;
    } *volatile o = calloc(1, sizeof *o);
    if (!o) return SN_ERR_OOM;
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_on_error;
    err.pub.output_message = jpeg_silent_output;
    err.msg[0] = 0;
    if (setjmp(err.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(o->buf);
        free(o);
        return sn_error(SN_ERR_FORMAT, "JPEG encoding failed: %s", err.msg);
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &o->buf, &o->n);
    cinfo.image_width = (JDIMENSION)img->width;
    cinfo.image_height = (JDIMENSION)img->height;
    cinfo.input_components = img->channels;
    cinfo.in_color_space = img->channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    const size_t row = (size_t)img->width * img->channels;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW r = (JSAMPROW)(img->pixels + (size_t)cinfo.next_scanline * row);
        jpeg_write_scanlines(&cinfo, &r, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    unsigned char *buf = o->buf;
    const unsigned long n = o->n;
    free(o);
    /* libjpeg's buffer comes from malloc: copied into one of ours, as the PNG encoder does. */
    sn_status st = SN_OK;
    if ((*jpg = sn_alloc(n)) == NULL) {
        st = SN_ERR_OOM;
    } else {
        memcpy(*jpg, buf, n);
        *size = n;
    }
    free(buf);
    return st;
}

sn_status sn_image_save_jpeg(const sn_image *img, int quality, const char *path) {
    if (!path) return sn_error(SN_ERR_INVALID_ARG, "sn_image_save_jpeg: NULL path");
    uint8_t *jpg = NULL;
    size_t size = 0;
    sn_status st = sn_image_encode_jpeg(img, quality, &jpg, &size);
    /* Saved whole, as sn_image_save_png (links, devices and folders handled alike). */
    if (st == SN_OK) st = sn_save_buffer(path, jpg, size);
    sn_free(jpg);
    return st;
}
