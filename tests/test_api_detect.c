/* The public detection API: sn_image_load's EXIF orientation on crafted JPEGs (all eight
 * orientations, both byte orders, a broken tag), sn_model_detect's boxes against what
 * `spinenet detect` writes in its .det.json for the same images and weights (a fashion-det val
 * image, and a non-square crop of it), and its argument errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <jpeglib.h>

#include "data.h"
#include "spinenet.h"
#include "test.h"

/* ---- EXIF ------------------------------------------------------------------------------- */

/* An APP1 payload "Exif\0\0" + TIFF header + IFD0 with one entry: orientation (0x0112, SHORT,
 * count 1). `be`: Motorola byte order. `tag_type` lets a test break the entry. */
static size_t make_exif(uint8_t *b, int orientation, int be, int tag_type) {
    static const uint8_t le_hdr[8] = {'I', 'I', 42, 0, 8, 0, 0, 0};
    static const uint8_t be_hdr[8] = {'M', 'M', 0, 42, 0, 0, 0, 8};
    size_t n = 0;
    memcpy(b, "Exif\0\0", 6);
    n = 6;
    memcpy(b + n, be ? be_hdr : le_hdr, 8);
    n += 8;
    const uint16_t v[4] = {1, 0x0112, (uint16_t)tag_type, 0};
    /* entry count, tag, type; then count (u32) and the value (u16 + 2 bytes of padding) */
    for (int i = 0; i < 3; i++) {
        b[n++] = (uint8_t)(be ? v[i] >> 8 : v[i] & 0xFF);
        b[n++] = (uint8_t)(be ? v[i] & 0xFF : v[i] >> 8);
    }
    const uint8_t one_le[4] = {1, 0, 0, 0}, one_be[4] = {0, 0, 0, 1};
    memcpy(b + n, be ? one_be : one_le, 4);
    n += 4;
    b[n++] = (uint8_t)(be ? 0 : orientation);
    b[n++] = (uint8_t)(be ? orientation : 0);
    b[n++] = 0;
    b[n++] = 0;
    memset(b + n, 0, 4); /* no next IFD */
    return n + 4;
}

/* Write img as a JPEG (quality 100) with an EXIF segment of that orientation (0: none). */
static int write_jpeg(const char *path, const sn_image *img, int orientation, int be, int type) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)img->width;
    c.image_height = (JDIMENSION)img->height;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    if (orientation) {
        uint8_t exif[64];
        size_t n = make_exif(exif, orientation, be, type);
        jpeg_write_marker(&c, JPEG_APP0 + 1, exif, (unsigned)n);
    }
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = img->pixels + (size_t)c.next_scanline * img->width * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return fclose(f);
}

/* Turned a quarter clockwise, and mirrored left-right: the two moves every orientation is made
 * of, written independently of the library's per-pixel mapping. */
static sn_image rot_cw(const sn_image *a) {
    sn_image b;
    if (sn_image_alloc(&b, a->height, a->width, 3) != SN_OK) exit(1);
    for (int y = 0; y < a->height; y++)
        for (int x = 0; x < a->width; x++) /* the left column becomes the top row */
            memcpy(b.pixels + ((size_t)x * b.width + (a->height - 1 - y)) * 3,
                   a->pixels + ((size_t)y * a->width + x) * 3, 3);
    return b;
}
static sn_image mirror(const sn_image *a) {
    sn_image b;
    if (sn_image_alloc(&b, a->width, a->height, 3) != SN_OK) exit(1);
    for (int y = 0; y < a->height; y++)
        for (int x = 0; x < a->width; x++)
            memcpy(b.pixels + ((size_t)y * a->width + (a->width - 1 - x)) * 3,
                   a->pixels + ((size_t)y * a->width + x) * 3, 3);
    return b;
}
/* The upright image of a stored one: mirrored first or not, then turned clockwise a number of
 * quarters. EXIF: 2 mirror; 3 180; 4 mirror + 180; 5 mirror + 270; 6 90; 7 mirror + 90; 8 270. */
static sn_image upright(const sn_image *stored, int orientation) {
    static const int mir[9] = {0, 0, 1, 0, 1, 1, 0, 1, 0}, turns[9] = {0, 0, 0, 2, 2, 3, 1, 1, 3};
    sn_image cur;
    if (mir[orientation]) {
        cur = mirror(stored);
    } else {
        if (sn_image_alloc(&cur, stored->width, stored->height, 3) != SN_OK) exit(1);
        memcpy(cur.pixels, stored->pixels, (size_t)stored->width * stored->height * 3);
    }
    for (int k = 0; k < turns[orientation]; k++) {
        sn_image next = rot_cw(&cur);
        sn_image_free(&cur);
        cur = next;
    }
    return cur;
}

static int same_image(const sn_image *a, const sn_image *b) {
    return a->width == b->width && a->height == b->height && a->channels == b->channels &&
           memcmp(a->pixels, b->pixels, (size_t)a->width * a->height * a->channels) == 0;
}

static void test_exif(const char *dir) {
    /* 48 x 32: six 16 x 16 blocks of different colours, so every turn and mirror differs. */
    static const uint8_t colours[6][3] = {{250, 10, 10},  {10, 250, 10},  {10, 10, 250},
                                          {250, 250, 10}, {10, 250, 250}, {250, 10, 250}};
    sn_image src;
    CHECK_OK(sn_image_alloc(&src, 48, 32, 3));
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 48; x++)
            memcpy(src.pixels + ((size_t)y * 48 + x) * 3, colours[(y / 16) * 3 + x / 16], 3);
    char path[600];
    for (int be = 0; be < 2; be++)
        for (int o = 0; o <= 8; o++) {
            snprintf(path, sizeof path, "%s/o%d_%d.jpg", dir, o, be);
            CHECK(write_jpeg(path, &src, o, be, 3) == 0, "writing %s", path);
            sn_image stored, loaded;
            CHECK_OK(sn_image_load_stored(path, &stored));
            CHECK_OK(sn_image_load(path, &loaded));
            if (!stored.pixels || !loaded.pixels) continue;
            sn_image want = upright(&stored, o < 1 ? 1 : o);
            CHECK(same_image(&loaded, &want), "orientation %d (%s): %dx%d, want %dx%d", o,
                  be ? "MM" : "II", loaded.width, loaded.height, want.width, want.height);
            if (o == 6) {
                /* Stored turned anticlockwise, shown turned clockwise: the stored top-left (red)
                 * block ends at the top right, and the picture is 32 wide. */
                const uint8_t *px = loaded.pixels + ((size_t)2 * loaded.width + 29) * 3;
                CHECK(loaded.width == 32 && loaded.height == 48 && px[0] > 200 && px[1] < 60 &&
                          px[2] < 60,
                      "orientation 6: %dx%d, top-right pixel %d,%d,%d", loaded.width,
                      loaded.height, px[0], px[1], px[2]);
            }
            sn_image_free(&want);
            sn_image_free(&stored);
            sn_image_free(&loaded);
        }
    /* An orientation entry of the wrong type (LONG) is ignored: the image as stored. */
    snprintf(path, sizeof path, "%s/badtype.jpg", dir);
    CHECK(write_jpeg(path, &src, 6, 0, 4) == 0, "writing %s", path);
    sn_image a = {0}, b = {0};
    CHECK_OK(sn_image_load(path, &a));
    CHECK_OK(sn_image_load_stored(path, &b));
    CHECK(a.pixels && b.pixels && same_image(&a, &b), "a LONG orientation tag must be ignored");
    sn_image_free(&a);
    sn_image_free(&b);
    /* Truncated EXIF data never reads past the buffer (ASan checks) and gives 1. */
    uint8_t jpg[64] = {0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x00};
    size_t n = make_exif(jpg + 6, 8, 0, 3);
    jpg[5] = (uint8_t)(n + 2); /* the segment's length counts its two length bytes */
    CHECK(sn_jpeg_exif_orientation(jpg, 6 + n) == 8, "a whole segment reads 8");
    for (size_t cut = 0; cut < 6 + n; cut++)
        CHECK(sn_jpeg_exif_orientation(jpg, cut) == 1, "cut at %zu", cut);
    sn_image_free(&src);
}

/* ---- sn_model_detect against `spinenet detect` ---------------------------------------------- */

/* Runs the CLI on `image` and compares its .det.json with the API's list for the same image. */
static void compare_with_cli(sn_model *m, const char *cli, const char *weights, const char *image,
                             const char *stem, const char *outdir, double agnostic) {
    char cmd[4096], js[1200];
    snprintf(cmd, sizeof cmd, "'%s' detect --weights '%s' --agnostic-nms %g '%s' -o '%s' >/dev/null",
             cli, weights, agnostic, image, outdir);
    CHECK(system(cmd) == 0, "%s", cmd);
    snprintf(js, sizeof js, "%s/%s.det.json", outdir, stem);
    json_error_t jerr;
    json_t *root = json_load_file(js, 0, &jerr);
    CHECK(root != NULL, "%s: %s", js, jerr.text);
    if (!root) return;
    json_t *list = json_object_get(root, "detections");
    sn_image img;
    CHECK_OK(sn_image_load(image, &img));
    sn_detect_params p;
    sn_detect_params_init(&p);
    p.agnostic_nms_iou = (float)agnostic;
    sn_detection_list *d = NULL;
    CHECK_OK(sn_model_detect(m, &img, &p, &d));
    CHECK(d && (size_t)d->count == json_array_size(list), "%s: %d detections, the CLI %zu", image,
          d ? d->count : -1, json_array_size(list));
    CHECK(d && d->count > 0, "%s: no detections", image);
    for (int k = 0; d && k < d->count && (size_t)k < json_array_size(list); k++) {
        const sn_detection *t = &d->items[k];
        json_t *e = json_array_get(list, (size_t)k), *bb = json_object_get(e, "bbox");
        /* The CLI writes [x, y, w, h] from the same floats (w and h subtracted in float). */
        const double want[4] = {t->x0, t->y0, (double)(t->x1 - t->x0), (double)(t->y1 - t->y0)};
        int same = json_integer_value(json_object_get(e, "class")) == t->class_id &&
                   json_real_value(json_object_get(e, "score")) == (double)t->score &&
                   t->class_name && !strcmp(t->class_name, json_string_value(json_object_get(e, "name")));
        for (int i = 0; i < 4; i++) same = same && json_real_value(json_array_get(bb, i)) == want[i];
        CHECK(same, "%s: detection %d differs from the CLI's (class %d %s %.6f)", image, k,
              t->class_id, t->class_name ? t->class_name : "?", (double)t->score);
        CHECK(t->x0 >= 0 && t->y0 >= 0 && t->x1 <= img.width && t->y1 <= img.height,
              "box %d outside the %dx%d image", k, img.width, img.height);
    }
    /* Again on the same plan: the same list. */
    sn_detection_list *again = NULL;
    CHECK_OK(sn_model_detect(m, &img, &p, &again));
    int same = d && again && again->count == d->count;
    for (int k = 0; same && k < d->count; k++) {
        const sn_detection *x = &d->items[k], *y = &again->items[k];
        same = x->x0 == y->x0 && x->y0 == y->y0 && x->x1 == y->x1 && x->y1 == y->y1 &&
               x->score == y->score && x->class_id == y->class_id;
    }
    CHECK(same, "%s: a second call on the same plan differs", image);
    sn_detection_list_free(again);
    sn_detection_list_free(d);
    sn_image_free(&img);
    json_decref(root);
}

static void test_detect(const char *dir) {
    const char *cli = getenv("SN_CLI"), *src = getenv("SN_SOURCE_DIR");
    if (!cli || !src) {
        CHECK(0, "%s", "SN_CLI and SN_SOURCE_DIR must be set (ctest sets them)");
        return;
    }
    char weights[1200], cmd[4096], image[1200], crop[1200], shots[1200];
    snprintf(weights, sizeof weights, "%s/models/fashion-det-detector.safetensors", src);
    snprintf(cmd, sizeof cmd,
             "'%s' make-dataset fashion-det --out '%s/fd' --train-images 0 --val-images 5 "
             ">/dev/null", cli, dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    snprintf(image, sizeof image, "%s/fd/val/000001.png", dir);
    snprintf(shots, sizeof shots, "%s/shots", dir);
    sn_model *m = NULL;
    CHECK_OK(sn_model_load(weights, &m));
    if (!m) return;
    CHECK_OK(sn_model_set_threads(m, 1)); /* as the CLI's default */
    compare_with_cli(m, cli, weights, image, "000001", shots, 0);
    compare_with_cli(m, cli, weights, image, "000001", shots, 0.7);
    /* A non-square image (the val image's top 256 x 200, then its left 200 x 160 as a second)
     * checks the mapping back through a resize that is not 1. */
    sn_image img, part;
    CHECK_OK(sn_image_load(image, &img));
    if (img.pixels && sn_image_alloc(&part, 200, 160, 3) == SN_OK) {
        for (int y = 0; y < 160; y++)
            memcpy(part.pixels + (size_t)y * 200 * 3, img.pixels + (size_t)y * img.width * 3, 600);
        snprintf(crop, sizeof crop, "%s/part.png", dir);
        CHECK_OK(sn_image_save_png(&part, crop));
        compare_with_cli(m, cli, weights, crop, "part", shots, 0);
        sn_image_free(&part);
    }

    /* Errors: *out NULL, nothing allocated, a message. */
    sn_detection_list *d = (sn_detection_list *)&img; /* must be cleared */
    sn_detect_params p;
    sn_detect_params_init(&p);
    CHECK(p.score_threshold == 0.05f && p.nms_iou == 0.5f && p.max_detections == 100 &&
              p.agnostic_nms_iou == 0 && p.size == 0,
          "%s", "defaults");
    CHECK(sn_model_detect(m, NULL, &p, &d) == SN_ERR_INVALID_ARG && d == NULL, "%s", "NULL image");
    p.max_detections = 0;
    CHECK(sn_model_detect(m, &img, &p, &d) == SN_ERR_INVALID_ARG && d == NULL, "%s",
          "max_detections 0");
    sn_detect_params_init(&p);
    p.nms_iou = 1.5f;
    CHECK(sn_model_detect(m, &img, &p, &d) == SN_ERR_INVALID_ARG && d == NULL, "%s", "nms_iou 1.5");
    sn_detect_params_init(&p);
    p.score_threshold = NAN;
    CHECK(sn_model_detect(m, &img, &p, &d) == SN_ERR_INVALID_ARG && d == NULL, "%s", "a NaN score");
    sn_detect_params_init(&p);
    sn_image empty = {0};
    CHECK(sn_model_detect(m, &empty, NULL, &d) == SN_ERR_INVALID_ARG && d == NULL, "%s",
          "an image without pixels");
    sn_config cfg;
    sn_model *cls = NULL;
    CHECK_OK(sn_config_init(&cfg, "spinenet-mobile-49xs"));
    cfg.head = SN_HEAD_CLASSIFIER;
    cfg.num_classes = 10;
    CHECK_OK(sn_model_create(&cfg, 1, &cls));
    CHECK(sn_model_detect(cls, &img, NULL, &d) == SN_ERR_INVALID_ARG && d == NULL &&
              strstr(sn_last_error(), "RetinaNet"),
          "a classifier: %s", sn_last_error());
    /* NULL parameters are the defaults; a size of 128 re-plans the model. */
    p.size = 128;
    p.nms_iou = 0.5f;
    CHECK_OK(sn_model_detect(m, &img, NULL, &d));
    sn_detection_list_free(d);
    CHECK_OK(sn_model_detect(m, &img, &p, &d));
    CHECK(d != NULL, "%s", "size 128");
    sn_detection_list_free(d);
    sn_detection_list_free(NULL);
    sn_model_free(cls);
    sn_image_free(&img);
    sn_model_free(m);
}

int main(void) {
    char dir[512];
    if (t_make_tmpdir(dir, sizeof dir, "sn_api_detect") != 0) return 1;
    test_exif(dir);
    test_detect(dir);
    t_rm_tree(dir);
    return TEST_SUMMARY();
}
