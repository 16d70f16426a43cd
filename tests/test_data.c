/* Tests for the data layer: IDX/Fashion-MNIST, JPEG/PNG codecs, image folders, augmentation
 * and the background batch loader. */
#include <jansson.h>
#include <jpeglib.h>
#include <spng.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "idx_write.h"
#include "test.h"

static char g_tmp[256];

static void tmp_path(char *dst, size_t cap, const char *name) {
    snprintf(dst, cap, "%s/%s", g_tmp, name);
}

static int write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(data, 1, n, f);
    return fclose(f) == 0 && w == n;
}

static int has(const char *haystack, const char *needle) { return strstr(haystack, needle) != NULL; }

/* ---- IDX ----------------------------------------------------------------------------------- */

static void test_idx(void) {
    enum { N = 5, R = 3, C = 4 };
    uint8_t img[N * R * C], lab[N];
    for (int i = 0; i < N * R * C; i++) img[i] = (uint8_t)(i * 7 + 1);
    for (int i = 0; i < N; i++) lab[i] = (uint8_t)(i * 3 % 10);
    char ip[512], lp[512], p[512];
    /* Fashion-MNIST file names, so the same files serve sn_fashion_mnist_open. */
    tmp_path(ip, sizeof ip, "train-images-idx3-ubyte.gz");
    tmp_path(lp, sizeof lp, "train-labels-idx1-ubyte.gz");
    uint32_t di[3] = {N, R, C}, dl[1] = {N};
    t_write_idx(ip, 0x803, di, 3, img, sizeof img);
    t_write_idx(lp, 0x801, dl, 1, lab, sizeof lab);

    uint8_t *px = NULL, *lb = NULL;
    int n = 0, r = 0, c = 0, nl = 0;
    CHECK_OK(sn_idx_load_images(ip, &px, &n, &r, &c));
    CHECK(n == N && r == R && c == C, "dims %d %d %d", n, r, c);
    CHECK(px && memcmp(px, img, sizeof img) == 0, "image bytes differ");
    CHECK_OK(sn_idx_load_labels(lp, &lb, &nl));
    CHECK(nl == N && lb && memcmp(lb, lab, sizeof lab) == 0, "labels differ");
    sn_free(px);
    sn_free(lb);

    /* Wrong kind of file for the call: images magic read as labels. */
    CHECK(sn_idx_load_labels(ip, &lb, &nl) == SN_ERR_FORMAT && has(sn_last_error(), ip),
          "%s", sn_last_error());

    /* Header promises 5 images, data holds 3: truncated. */
    tmp_path(p, sizeof p, "short-idx3.gz");
    t_write_idx(p, 0x803, di, 3, img, 3 * R * C);
    sn_status st = sn_idx_load_images(p, &px, &n, &r, &c);
    CHECK(st == SN_ERR_FORMAT && has(sn_last_error(), p) && has(sn_last_error(), "truncated"),
          "%s", sn_last_error());
    CHECK(px == NULL, "no buffer on failure");

    /* Bad magic. */
    tmp_path(p, sizeof p, "badmagic.gz");
    t_write_idx(p, 0x12345678, di, 3, img, sizeof img);
    st = sn_idx_load_images(p, &px, &n, &r, &c);
    CHECK(st == SN_ERR_FORMAT && has(sn_last_error(), p) && has(sn_last_error(), "magic"), "%s",
          sn_last_error());

    /* Zero dimension. */
    tmp_path(p, sizeof p, "zerodim.gz");
    uint32_t dz[3] = {N, 0, C};
    t_write_idx(p, 0x803, dz, 3, img, 0);
    CHECK(sn_idx_load_images(p, &px, &n, &r, &c) == SN_ERR_FORMAT && has(sn_last_error(), "dimension"),
          "%s", sn_last_error());

    /* The gzip stream itself cut in half. */
    {
        FILE *f = fopen(ip, "rb");
        unsigned char buf[4096];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        tmp_path(p, sizeof p, "cut.gz");
        write_bytes(p, buf, len / 2);
        st = sn_idx_load_images(p, &px, &n, &r, &c);
        CHECK(st == SN_ERR_FORMAT && has(sn_last_error(), p), "%s: %s", sn_status_name(st),
              sn_last_error());
    }

    /* Missing file. */
    tmp_path(p, sizeof p, "nope.gz");
    CHECK(sn_idx_load_images(p, &px, &n, &r, &c) == SN_ERR_IO && has(sn_last_error(), p), "%s",
          sn_last_error());

    /* Fashion-MNIST wrapper on the small files. */
    sn_dataset *ds = NULL;
    CHECK_OK(sn_fashion_mnist_open(g_tmp, 1, &ds));
    if (ds) {
        CHECK(ds->count == N && ds->num_classes == 10, "count %d", ds->count);
        CHECK(!strcmp(ds->class_names[0], "T-shirt/top") && !strcmp(ds->class_names[9], "Ankle boot"),
              "class names");
        sn_image im;
        int label = -1;
        CHECK_OK(sn_dataset_get(ds, 2, &im, &label));
        CHECK(im.width == C && im.height == R && im.channels == 1 && label == lab[2], "sample");
        CHECK(im.pixels && !memcmp(im.pixels, img + 2 * R * C, R * C), "sample pixels");
        sn_image_free(&im);
        CHECK(sn_dataset_get(ds, N, &im, &label) == SN_ERR_INVALID_ARG, "out of range");
        sn_dataset_free(ds);
    }
    /* Count mismatch between images and labels. */
    uint32_t dl4[1] = {4};
    t_write_idx(lp, 0x801, dl4, 1, lab, 4);
    ds = NULL;
    CHECK(sn_fashion_mnist_open(g_tmp, 1, &ds) == SN_ERR_FORMAT && ds == NULL, "mismatch");
    CHECK(has(sn_last_error(), "labels"), "%s", sn_last_error());
    /* Injected allocation failures unwind without leaks (ASan checks). */
    t_write_idx(lp, 0x801, dl, 1, lab, sizeof lab);
    for (long k = 1; k <= 12; k++) {
        sn_alloc_fail_after(k);
        st = sn_fashion_mnist_open(g_tmp, 1, &ds);
        sn_alloc_fail_after(0);
        if (st == SN_OK) {
            sn_dataset_free(ds);
            break;
        }
        CHECK(st == SN_ERR_OOM, "fail after %ld: %s", k, sn_status_name(st));
    }
}

static void test_fashion_mnist_real(void) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        printf("note: %s absent, real Fashion-MNIST test skipped\n", dir);
        return;
    }
    double t0 = now_s();
    for (int train = 0; train <= 1; train++) {
        sn_dataset *ds = NULL;
        CHECK_OK(sn_fashion_mnist_open(dir, train, &ds));
        if (!ds) continue;
        CHECK(ds->count == (train ? 60000 : 10000), "count %d", ds->count);
        int hist[10] = {0};
        int bad = 0;
        for (int i = 0; i < ds->count; i += 97) {
            sn_image im;
            int label = -1;
            if (sn_dataset_get(ds, i, &im, &label) != SN_OK || im.width != 28 || im.height != 28 ||
                label < 0 || label > 9)
                bad++;
            else
                hist[label]++;
            sn_image_free(&im);
        }
        CHECK(bad == 0, "%d bad samples", bad);
        for (int k = 0; k < 10; k++) CHECK(hist[k] > 0, "class %d never seen", k);
        sn_dataset_free(ds);
    }
    printf("fashion-mnist: both splits loaded in %.2f s\n", now_s() - t0);
}

/* ---- Codecs -------------------------------------------------------------------------------- */

/* Encode a JPEG with libjpeg (test fixture; the library only decodes JPEG). */
static size_t make_jpeg(const uint8_t *rgb, int w, int h, int comps, unsigned char **out) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    unsigned long size = 0;
    *out = NULL;
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    jpeg_mem_dest(&ci, out, &size);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = comps;
    ci.in_color_space = comps == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 95, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)ci.next_scanline * w * comps);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    return size;
}

static void fill_pattern(uint8_t *p, size_t n, unsigned seed) {
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (uint8_t)(s >> 24);
    }
}

static void test_png(void) {
    sn_image a;
    CHECK_OK(sn_image_alloc(&a, 37, 23, 3));
    fill_pattern(a.pixels, 37 * 23 * 3, 1);
    char p[512];
    tmp_path(p, sizeof p, "rt.png");
    CHECK_OK(sn_image_save_png(&a, p));
    sn_image b;
    CHECK_OK(sn_image_load(p, &b));
    CHECK(b.width == 37 && b.height == 23 && b.channels == 3, "dims");
    CHECK(b.pixels && !memcmp(a.pixels, b.pixels, 37 * 23 * 3), "round trip not exact");
    int w = 0, h = 0;
    CHECK_OK(sn_image_probe(p, &w, &h));
    CHECK(w == 37 && h == 23, "probe %dx%d", w, h);
    sn_image_free(&b);

    /* Grayscale PNG decodes to replicated RGB. */
    sn_image g;
    CHECK_OK(sn_image_alloc(&g, 9, 5, 1));
    fill_pattern(g.pixels, 45, 2);
    uint8_t *png = NULL;
    size_t n = 0;
    CHECK_OK(sn_image_encode_png(&g, &png, &n));
    CHECK_OK(sn_image_decode(png, n, "gray.png", &b));
    int ok = b.channels == 3 && b.width == 9 && b.height == 5;
    for (int i = 0; ok && i < 45; i++)
        ok = b.pixels[3 * i] == g.pixels[i] && b.pixels[3 * i + 1] == g.pixels[i] &&
             b.pixels[3 * i + 2] == g.pixels[i];
    CHECK(ok, "gray PNG not replicated");
    sn_image_free(&b);

    /* Corrupt PNG: one flipped byte late in the file (IDAT data or CRC) and a truncated one. */
    uint8_t *bad = malloc(n);
    memcpy(bad, png, n);
    bad[n - 20] ^= 0x5A;
    tmp_path(p, sizeof p, "flipped.png");
    write_bytes(p, bad, n);
    sn_status st = sn_image_load(p, &b);
    CHECK(st == SN_ERR_FORMAT && has(sn_last_error(), p) && b.pixels == NULL, "%s", sn_last_error());
    tmp_path(p, sizeof p, "truncated.png");
    write_bytes(p, png, n / 2);
    st = sn_image_load(p, &b);
    CHECK(st == SN_ERR_FORMAT && has(sn_last_error(), p), "%s", sn_last_error());
    free(bad);
    sn_free(png);
    sn_image_free(&g);

    /* 16-bit RGB PNG written with spng directly: reduced to 8 bits (the high byte). */
    {
        spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
        struct spng_ihdr ih = {0};
        ih.width = 4;
        ih.height = 3;
        ih.bit_depth = 16;
        ih.color_type = SPNG_COLOR_TYPE_TRUECOLOR;
        /* spng takes 16-bit samples in host byte order and writes them big-endian. */
        uint16_t raw[4 * 3 * 3];
        for (int i = 0; i < 4 * 3 * 3; i++) raw[i] = (uint16_t)(i * 7 << 8 | 0x10);
        spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
        spng_set_ihdr(ctx, &ih);
        int rc = spng_encode_image(ctx, raw, sizeof raw, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
        size_t len = 0;
        void *buf = rc ? NULL : spng_get_png_buffer(ctx, &len, &rc);
        CHECK(buf != NULL, "spng 16-bit encode: %s", spng_strerror(rc));
        if (buf) {
            CHECK_OK(sn_image_decode(buf, len, "deep.png", &b));
            int good = b.pixels && b.channels == 3 && b.width == 4;
            for (int i = 0; good && i < 36; i++) good = abs(b.pixels[i] - i * 7) <= 1;
            CHECK(good, "16-bit to 8-bit reduction: %d %d %d %d", b.pixels[0], b.pixels[1],
                  b.pixels[2], b.pixels[3]);
            sn_image_free(&b);
            free(buf);
        }
        spng_ctx_free(ctx);
    }
    sn_image_free(&a);
}

static void test_jpeg_synthetic(void) {
    enum { W = 48, H = 32 };
    uint8_t rgb[W * H * 3];
    /* A smooth pattern: JPEG reproduces it closely. */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            rgb[(y * W + x) * 3 + 0] = (uint8_t)(x * 5);
            rgb[(y * W + x) * 3 + 1] = (uint8_t)(y * 7);
            rgb[(y * W + x) * 3 + 2] = (uint8_t)(128 + x - y);
        }
    unsigned char *jpg = NULL;
    size_t n = make_jpeg(rgb, W, H, 3, &jpg);
    char p[512];
    tmp_path(p, sizeof p, "ok.jpg");
    write_bytes(p, jpg, n);
    sn_image im;
    CHECK_OK(sn_image_load(p, &im));
    CHECK(im.width == W && im.height == H && im.channels == 3, "jpeg dims");
    if (im.pixels) {
        double md = 0;
        for (int i = 0; i < W * H * 3; i++) {
            double d = fabs((double)im.pixels[i] - rgb[i]);
            if (d > md) md = d;
        }
        CHECK(md < 24, "jpeg max error %g", md);
    }
    sn_image_free(&im);

    /* Truncated: header intact (probe passes), the scan cut short → error, not grey fill. */
    tmp_path(p, sizeof p, "trunc.jpg");
    write_bytes(p, jpg, n * 2 / 3);
    sn_status st = sn_image_load(p, &im);
    CHECK(st == SN_ERR_FORMAT && has(sn_last_error(), p) && im.pixels == NULL, "%s: %s",
          sn_status_name(st), sn_last_error());
    int w, h;
    CHECK_OK(sn_image_probe(p, &w, &h));
    /* Garbage after the JPEG signature. */
    uint8_t junk[300];
    fill_pattern(junk, sizeof junk, 9);
    junk[0] = 0xFF;
    junk[1] = 0xD8;
    junk[2] = 0xFF;
    tmp_path(p, sizeof p, "junk.jpg");
    write_bytes(p, junk, sizeof junk);
    st = sn_image_load(p, &im);
    CHECK(st == SN_ERR_FORMAT && has(sn_last_error(), p), "%s", sn_last_error());
    CHECK(sn_image_probe(p, &w, &h) == SN_ERR_FORMAT, "probe of junk");
    /* Neither format: named as such. */
    tmp_path(p, sizeof p, "text.png");
    write_bytes(p, "hello world", 11);
    st = sn_image_load(p, &im);
    CHECK(st == SN_ERR_FORMAT && has(sn_last_error(), "not a JPEG or PNG"), "%s", sn_last_error());
    /* Grayscale JPEG → RGB. */
    uint8_t gray[W * H];
    for (int i = 0; i < W * H; i++) gray[i] = (uint8_t)(i % W * 4);
    free(jpg);
    n = make_jpeg(gray, W, H, 1, &jpg);
    CHECK_OK(sn_image_decode(jpg, n, "gray.jpg", &im));
    CHECK(im.channels == 3 && im.pixels && im.pixels[3 * 100] == im.pixels[3 * 100 + 2],
          "gray jpeg replicated");
    sn_image_free(&im);
    /* Allocation failures while decoding unwind cleanly. */
    for (long k = 1; k <= 3; k++) {
        sn_alloc_fail_after(k);
        st = sn_image_decode(jpg, n, "gray.jpg", &im);
        sn_alloc_fail_after(0);
        CHECK(st == SN_OK || st == SN_ERR_OOM, "fail after %ld: %s", k, sn_status_name(st));
        sn_image_free(&im);
    }
    free(jpg);
}

static void test_coco_jpegs(void) {
    char dir[1024], ann[1200];
    t_shared_dir(dir, sizeof dir);
    snprintf(ann, sizeof ann, "%s/data/coco-tiny/annotations/instances_train2017.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(ann, 0, &jerr);
    CHECK(root != NULL, "%s: %s", ann, jerr.text);
    if (!root) return;
    json_t *images = json_object_get(root, "images");
    size_t n = json_array_size(images);
    CHECK(n >= 10, "COCO images: %zu", n);
    double t0 = now_s();
    int checked = 0;
    for (size_t i = 0; i < n && checked < 12; i++) {
        json_t *it = json_array_get(images, i);
        const char *fn = json_string_value(json_object_get(it, "file_name"));
        int w = (int)json_integer_value(json_object_get(it, "width"));
        int h = (int)json_integer_value(json_object_get(it, "height"));
        char path[2400];
        snprintf(path, sizeof path, "%s/data/coco-tiny/train2017/%s", dir, fn ? fn : "?");
        sn_image im;
        sn_status st = sn_image_load(path, &im);
        CHECK(st == SN_OK, "%s", sn_last_error());
        CHECK(st != SN_OK || (im.width == w && im.height == h && im.channels == 3),
              "%s: %dx%d, annotation says %dx%d", path, im.width, im.height, w, h);
        int pw = 0, ph = 0;
        CHECK_OK(sn_image_probe(path, &pw, &ph));
        CHECK(pw == w && ph == h, "probe %s", path);
        sn_image_free(&im);
        checked++;
    }
    printf("coco-tiny: %d JPEGs decoded in %.3f s\n", checked, now_s() - t0);
    json_decref(root);
}

/* ---- Image folder -------------------------------------------------------------------------- */

typedef struct {
    int calls;
    char last_path[512];
    char last_reason[512];
} warn_log;

static void on_warn(void *user, const char *path, const char *reason) {
    warn_log *w = user;
    w->calls++;
    snprintf(w->last_path, sizeof w->last_path, "%s", path);
    snprintf(w->last_reason, sizeof w->last_reason, "%s", reason);
}

typedef struct {
    int calls;
    char dir[512];
} empty_log;

static void on_empty(void *user, const char *dir) {
    empty_log *e = user;
    e->calls++;
    snprintf(e->dir, sizeof e->dir, "%s", dir);
}

static void test_folder(void) {
    char root[512], d[600], p[700];
    tmp_path(root, sizeof root, "folder");
    mkdir(root, 0700);
    const char *classes[2] = {"dog", "cat"}; /* created out of order: sorting must fix it */
    sn_image im;
    sn_image_alloc(&im, 6, 4, 3);
    for (int c = 0; c < 2; c++) {
        snprintf(d, sizeof d, "%s/%s", root, classes[c]);
        mkdir(d, 0700);
        const char *names[3] = {"b.PNG", "a.png", "c.Png"};
        for (int i = 0; i < 3; i++) {
            memset(im.pixels, c * 100 + i * 10, 6 * 4 * 3);
            snprintf(p, sizeof p, "%s/%s", d, names[i]);
            sn_image_save_png(&im, p);
        }
    }
    snprintf(p, sizeof p, "%s/cat/notes.txt", root);
    write_bytes(p, "ignored", 7);
    snprintf(p, sizeof p, "%s/.hidden", root);
    mkdir(p, 0700);
    /* A corrupt file: PNG signature, then junk. */
    uint8_t junk[64];
    fill_pattern(junk, sizeof junk, 4);
    memcpy(junk, "\x89PNG\r\n\x1a\n", 8);
    snprintf(p, sizeof p, "%s/dog/broken.png", root);
    write_bytes(p, junk, sizeof junk);

    warn_log wl = {0};
    sn_folder_options opt = {1, SN_VERIFY_HEADER, on_warn, &wl, 0, NULL};
    sn_folder_stats stats;
    sn_dataset *ds = NULL;
    CHECK_OK(sn_folder_open(root, &opt, &ds, &stats));
    CHECK(stats.files == 7 && stats.kept == 6 && stats.skipped == 1, "stats %d %d %d", stats.files,
          stats.kept, stats.skipped);
    CHECK(wl.calls == 1 && has(wl.last_path, "broken.png") && has(wl.last_reason, "broken.png"),
          "warn %d %s", wl.calls, wl.last_path);
    if (ds) {
        CHECK(ds->num_classes == 2 && !strcmp(ds->class_names[0], "cat") &&
                  !strcmp(ds->class_names[1], "dog"),
              "classes");
        CHECK(ds->count == 6, "count %d", ds->count);
        /* Order: cat/{a.png, b.PNG, c.Png} (byte order: "a.png" < "b.PNG" < "c.Png"). */
        sn_image g;
        int label = -1;
        CHECK_OK(sn_dataset_get(ds, 0, &g, &label));
        CHECK(label == 0 && g.pixels && g.pixels[0] == 100 + 10, "first sample %d %d", label,
              g.pixels ? g.pixels[0] : -1);
        sn_image_free(&g);
        CHECK_OK(sn_dataset_get(ds, 5, &g, &label));
        CHECK(label == 1 && g.pixels && g.pixels[0] == 20 && g.width == 6, "last sample");
        sn_image_free(&g);
        sn_dataset_free(ds);
    }
    /* Strict mode fails naming the file. */
    opt.skip_bad = 0;
    ds = NULL;
    sn_status st = sn_folder_open(root, &opt, &ds, &stats);
    CHECK(st == SN_ERR_FORMAT && ds == NULL && has(sn_last_error(), "broken.png"), "%s",
          sn_last_error());
    /* Defaults (NULL options) are strict as well. */
    CHECK(sn_folder_open(root, NULL, &ds, NULL) == SN_ERR_FORMAT, "default strict");
    /* Full verification catches a truncated JPEG whose header is intact. */
    {
        /* Noise, so that the scan is much longer than the header and the cut lands in it. */
        static uint8_t rgb[64 * 64 * 3];
        fill_pattern(rgb, sizeof rgb, 5);
        unsigned char *jpg = NULL;
        size_t n = make_jpeg(rgb, 64, 64, 3, &jpg);
        snprintf(p, sizeof p, "%s/cat/z.jpg", root);
        write_bytes(p, jpg, n - n / 3);
        free(jpg);
        snprintf(p, sizeof p, "%s/dog/broken.png", root);
        remove(p);
        sn_folder_options full = {1, SN_VERIFY_FULL, on_warn, &wl, 0, NULL};
        wl.calls = 0;
        CHECK_OK(sn_folder_open(root, &full, &ds, &stats));
        CHECK(stats.skipped == 1 && has(wl.last_path, "z.jpg"), "full verify: %d %s",
              stats.skipped, wl.last_path);
        sn_dataset_free(ds);
        sn_folder_options hdr = {0, SN_VERIFY_HEADER, NULL, NULL, 0, NULL};
        CHECK_OK(sn_folder_open(root, &hdr, &ds, &stats)); /* header check passes it */
        CHECK(stats.kept == 7, "kept %d", stats.kept);
        sn_dataset_free(ds);
    }
    snprintf(p, sizeof p, "%s/missing", root);
    CHECK(sn_folder_open(p, NULL, &ds, NULL) == SN_ERR_IO && has(sn_last_error(), p), "%s",
          sn_last_error());
    sn_image_free(&im);
}

/* A folder's classes take a model's indices by name (issue 17): folders sort "Ankle_boot" first,
 * the model may have it last; file-safe folder names match their class; a subset is fine; a
 * class the model does not know is an error naming it. */
static void test_match_classes(void) {
    char root[512], d[600], p[700];
    tmp_path(root, sizeof root, "match");
    mkdir(root, 0700);
    const char *folders[3] = {"Ankle_boot", "Bag", "T-shirt_top"};
    sn_image im;
    sn_image_alloc(&im, 4, 4, 3);
    for (int c = 0; c < 3; c++) {
        snprintf(d, sizeof d, "%s/%s", root, folders[c]);
        mkdir(d, 0700);
        memset(im.pixels, 10 * c, 4 * 4 * 3);
        snprintf(p, sizeof p, "%s/x.png", d);
        sn_image_save_png(&im, p);
    }
    char safe[32];
    sn_class_file_name("T-shirt/top", safe, sizeof safe);
    CHECK(!strcmp(safe, "T-shirt_top"), "file-safe name %s", safe);
    const char *model[5] = {"T-shirt/top", "Trouser", "Bag", "Coat", "Ankle boot"};
    CHECK(sn_class_find(model, 5, "Ankle_boot") == 4 && sn_class_find(model, 5, "Bag") == 2 &&
              sn_class_find(model, 5, "Sandal") == -1,
          "sn_class_find");
    sn_dataset *ds = NULL;
    CHECK_OK(sn_folder_open(root, NULL, &ds, NULL));
    if (ds) {
        CHECK_OK(sn_dataset_match_classes(ds, model, 5, root, "m.safetensors"));
        CHECK(ds->num_classes == 5 && !strcmp(ds->class_names[4], "Ankle boot"), "names");
        const int want[3] = {4, 2, 0}; /* Ankle_boot, Bag, T-shirt_top in the model's order */
        for (int i = 0; i < 3; i++) {
            sn_image g;
            int label = -1;
            CHECK_OK(sn_dataset_get(ds, i, &g, &label));
            CHECK(label == want[i] && g.pixels && g.pixels[0] == 10 * i, "sample %d: label %d", i,
                  label);
            sn_image_free(&g);
        }
        /* Matched again (to a reordering), the samples follow by name. */
        const char *again[5] = {"Ankle boot", "Bag", "Coat", "T-shirt/top", "Trouser"};
        CHECK_OK(sn_dataset_match_classes(ds, again, 5, root, "m2.safetensors"));
        sn_image g;
        int label = -1;
        CHECK_OK(sn_dataset_get(ds, 2, &g, &label));
        CHECK(label == 3, "matched twice: label %d", label);
        sn_image_free(&g);
        sn_dataset_free(ds);
    }
    ds = NULL;
    CHECK_OK(sn_folder_open(root, NULL, &ds, NULL));
    if (ds) {
        const char *other[3] = {"Bag", "Ankle boot", "Coat"};
        sn_status st = sn_dataset_match_classes(ds, other, 3, root, "m.safetensors");
        CHECK(st == SN_ERR_INVALID_ARG && has(sn_last_error(), "'T-shirt_top'") &&
                  has(sn_last_error(), "m.safetensors"),
              "unknown class: %s", sn_last_error());
        CHECK(ds->num_classes == 3 && !ds->label_map, "a failed match leaves the dataset as it was");
        sn_dataset_free(ds);
    }
    /* An empty class folder (issue 17): a class without a sample, warned about by name; strict
     * refuses it. A class whose every image is skipped is empty too. */
    {
        char e[600];
        snprintf(e, sizeof e, "%s/Coat", root);
        mkdir(e, 0700);
        empty_log el = {0};
        sn_folder_options o = {0, SN_VERIFY_HEADER, NULL, &el, 0, on_empty};
        sn_folder_stats st;
        ds = NULL;
        CHECK_OK(sn_folder_open(root, &o, &ds, &st));
        CHECK(ds && ds->num_classes == 4 && st.empty == 1 && el.calls == 1 && has(el.dir, "/Coat"),
              "empty class: %d %d %s", st.empty, el.calls, el.dir);
        sn_dataset_free(ds);
        o.strict = 1;
        ds = NULL;
        CHECK(sn_folder_open(root, &o, &ds, &st) == SN_ERR_NOT_FOUND && !ds &&
                  has(sn_last_error(), "/Coat: empty class folder"),
              "strict: %s", sn_last_error());
        uint8_t junk[64];
        fill_pattern(junk, sizeof junk, 9);
        snprintf(p, sizeof p, "%s/bad.png", e);
        write_bytes(p, junk, sizeof junk);
        sn_folder_options sk = {1, SN_VERIFY_HEADER, NULL, NULL, 1, NULL};
        CHECK(sn_folder_open(root, &sk, &ds, &st) == SN_ERR_NOT_FOUND &&
                  has(sn_last_error(), "/Coat: empty class folder: no readable"),
              "all skipped: %s", sn_last_error());
    }
    sn_image_free(&im);
}

/* ---- Augmentation -------------------------------------------------------------------------- */

static double ref_sample(const double *src, int sh, int sw, int c, double sy, double sx, int k) {
    if (sy < 0) sy = 0;
    if (sy > sh - 1) sy = sh - 1;
    if (sx < 0) sx = 0;
    if (sx > sw - 1) sx = sw - 1;
    int y0 = (int)sy, x0 = (int)sx;
    int y1 = y0 + 1 < sh ? y0 + 1 : y0, x1 = x0 + 1 < sw ? x0 + 1 : x0;
    double fy = sy - y0, fx = sx - x0;
#define AT(y, x) src[((size_t)(y) * sw + (x)) * c + k]
    return (1 - fy) * ((1 - fx) * AT(y0, x0) + fx * AT(y0, x1)) +
           fy * ((1 - fx) * AT(y1, x0) + fx * AT(y1, x1));
#undef AT
}

static void test_resize(void) {
    const int shapes[][4] = {{13, 17, 29, 7}, {40, 30, 9, 11}, {5, 5, 5, 5}, {1, 3, 4, 2}};
    for (int t = 0; t < 4; t++) {
        int sh = shapes[t][0], sw = shapes[t][1], dh = shapes[t][2], dw = shapes[t][3], c = 3;
        size_t ns = (size_t)sh * sw * c, nd = (size_t)dh * dw * c;
        uint8_t *su = malloc(ns), *du = malloc(nd);
        float *sf = malloc(ns * sizeof(float)), *df = malloc(nd * sizeof(float));
        double *sd = malloc(ns * sizeof(double));
        fill_pattern(su, ns, (unsigned)t + 11);
        for (size_t i = 0; i < ns; i++) sf[i] = (float)(sd[i] = su[i]);
        CHECK_OK(sn_resize_u8(su, sh, sw, c, du, dh, dw));
        CHECK_OK(sn_resize_f32(sf, sh, sw, c, df, dh, dw));
        double eu = 0, ef = 0;
        for (int y = 0; y < dh; y++)
            for (int x = 0; x < dw; x++)
                for (int k = 0; k < c; k++) {
                    double r = ref_sample(sd, sh, sw, c, (y + 0.5) * sh / dh - 0.5,
                                          (x + 0.5) * sw / dw - 0.5, k);
                    size_t i = ((size_t)y * dw + x) * c + k;
                    if (fabs(du[i] - r) > eu) eu = fabs(du[i] - r);
                    if (fabs(df[i] - r) > ef) ef = fabs(df[i] - r);
                }
        CHECK(eu <= 0.5 + 1e-3, "u8 resize %dx%d->%dx%d error %g", sh, sw, dh, dw, eu);
        CHECK(ef <= 1e-3, "f32 resize %dx%d->%dx%d error %g", sh, sw, dh, dw, ef);
        if (sh == dh && sw == dw) CHECK(!memcmp(su, du, ns), "identity resize not exact");
        free(su);
        free(du);
        free(sf);
        free(df);
        free(sd);
    }
    uint8_t x = 0;
    CHECK(sn_resize_u8(&x, 0, 1, 3, &x, 1, 1) == SN_ERR_SHAPE, "bad dims");
}

static void test_augment(void) {
    /* ImageNet's mean and std, the official pipelines' normalisation constants. */
    uint8_t px[6] = {0, 128, 255, 10, 20, 30};
    float out[6];
    sn_normalize_u8(px, 2, 3, out);
    CHECK(fabsf(out[0] - (0 - 0.485f) / 0.229f) < 1e-5f, "norm r");
    CHECK(fabsf(out[1] - (128 / 255.f - 0.456f) / 0.224f) < 1e-5f, "norm g");
    CHECK(fabsf(out[2] - (1 - 0.406f) / 0.225f) < 1e-5f, "norm b");
    sn_normalize_u8(px + 1, 2, 1, out); /* grayscale replicated */
    CHECK(fabsf(out[0] - (128 / 255.f - 0.485f) / 0.229f) < 1e-5f &&
              fabsf(out[2] - (128 / 255.f - 0.406f) / 0.225f) < 1e-5f,
          "gray norm");

    /* Same seed, same crops; different seed, different crops; boxes inside the image. */
    sn_aug_params ap;
    sn_aug_defaults(&ap);
    sn_rng r1, r2, r3;
    sn_rng_seed(&r1, 42);
    sn_rng_seed(&r2, 42);
    sn_rng_seed(&r3, 43);
    int same = 1, diff = 0, inside = 1, flips = 0;
    for (int i = 0; i < 1000; i++) {
        sn_crop a = sn_crop_random(&r1, 64, 48, &ap), b = sn_crop_random(&r2, 64, 48, &ap);
        sn_crop c = sn_crop_random(&r3, 64, 48, &ap);
        same &= !memcmp(&a, &b, sizeof a);
        diff += memcmp(&a, &c, sizeof a) != 0;
        inside &= a.x >= 0 && a.y >= 0 && a.x + a.w <= 64 + 1e-3 && a.y + a.h <= 48 + 1e-3 &&
                  a.w >= 1 && a.h >= 1;
        flips += a.flip;
    }
    CHECK(same, "same seed differs");
    CHECK(diff > 900, "different seeds agree %d", 1000 - diff);
    CHECK(inside, "crop outside image");
    CHECK(flips > 400 && flips < 600, "flip rate %d/1000", flips);
    ap.hflip = 0;
    sn_rng_seed(&r1, 1);
    flips = 0;
    for (int i = 0; i < 100; i++) flips += sn_crop_random(&r1, 10, 10, &ap).flip;
    CHECK(flips == 0, "hflip off");

    /* Flip + full-image crop at the same size == normalise(mirrored image). */
    sn_image im;
    sn_image_alloc(&im, 7, 5, 3);
    fill_pattern(im.pixels, 7 * 5 * 3, 77);
    float *a = malloc(7 * 5 * 3 * sizeof(float)), *b = malloc(7 * 5 * 3 * sizeof(float));
    sn_crop full = sn_crop_eval(7, 5, NULL);
    full.flip = 1;
    CHECK_OK(sn_crop_resize_normalize(&im, full, 5, 7, a));
    sn_image_hflip(&im);
    sn_normalize_u8(im.pixels, 35, 3, b);
    CHECK(t_max_abs_diff(a, b, 105) < 1e-5, "flip mismatch %g", t_max_abs_diff(a, b, 105));
    /* An integer crop at 1:1 scale is an exact copy. */
    sn_crop cr = {2, 1, 3, 2, 0};
    CHECK_OK(sn_crop_resize_normalize(&im, cr, 2, 3, a));
    int ok = 1;
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++) {
            sn_normalize_u8(im.pixels + ((size_t)(y + 1) * 7 + x + 2) * 3, 1, 3, b);
            ok &= fabsf(a[(y * 3 + x) * 3] - b[0]) < 1e-5f && fabsf(a[(y * 3 + x) * 3 + 2] - b[2]) < 1e-5f;
        }
    CHECK(ok, "1:1 crop not a copy");
    /* Eval crop: central square of the short side. */
    ap.eval_fraction = 0.5f;
    sn_crop e = sn_crop_eval(100, 60, &ap);
    CHECK(fabsf(e.w - 30) < 1e-4f && fabsf(e.x - 35) < 1e-4f && fabsf(e.y - 15) < 1e-4f, "eval crop");
    free(a);
    free(b);
    sn_image_free(&im);
}

/* ---- Loader -------------------------------------------------------------------------------- */

/* A synthetic dataset: sample i is a 5x7 gray image filled with i % 251, label i % 3; one
 * index can be made to fail. */
typedef struct {
    int fail_at;
} synth_impl;

static sn_status synth_get(sn_dataset *ds, int index, sn_image *img, int *label) {
    synth_impl *s = ds->impl;
    if (index == s->fail_at) return sn_error(SN_ERR_IO, "synthetic failure at %d", index);
    sn_status st = sn_image_alloc(img, 7, 5, 1);
    if (st != SN_OK) return st;
    memset(img->pixels, index % 251, 35);
    *label = index % 3;
    return SN_OK;
}

static sn_dataset *make_synth(int count, synth_impl *impl) {
    const char *names[3] = {"a", "b", "c"};
    sn_dataset *ds = NULL;
    sn_dataset_new(3, names, &ds);
    ds->count = count;
    ds->impl = impl;
    ds->get = synth_get;
    return ds;
}

/* Copy of the next `k` batches: indices, labels and images concatenated. */
typedef struct {
    int32_t *idx, *lab;
    float *img;
    int n;
} batches;

static void take(sn_loader *l, int k, int per, batches *b) {
    b->idx = calloc((size_t)k * 64, sizeof(int32_t));
    b->lab = calloc((size_t)k * 64, sizeof(int32_t));
    b->img = calloc((size_t)k * 64 * per, sizeof(float));
    b->n = 0;
    for (int i = 0; i < k; i++) {
        sn_batch bt;
        sn_status st = sn_loader_next(l, &bt);
        CHECK(st == SN_OK, "%s", sn_last_error());
        if (st != SN_OK) break;
        memcpy(b->idx + b->n, bt.indices, sizeof(int32_t) * bt.n);
        memcpy(b->lab + b->n, bt.labels, sizeof(int32_t) * bt.n);
        memcpy(b->img + (size_t)b->n * per, bt.images, sizeof(float) * bt.n * per);
        b->n += bt.n;
    }
}

static void drop(batches *b) {
    free(b->idx);
    free(b->lab);
    free(b->img);
}

static void test_loader(void) {
    enum { COUNT = 103, B = 10, S = 6 };
    const int per = S * S * 3;
    synth_impl impl = {-1};
    sn_dataset *ds = make_synth(COUNT, &impl);
    sn_loader_config cfg;
    sn_loader_config_defaults(&cfg);
    cfg.batch_size = B;
    cfg.image_size = S;
    cfg.seed = 7;
    cfg.aug.min_area = 0.3f;

    /* Training: 10 full batches per epoch, each sample at most once, 100 distinct. */
    sn_loader *l = NULL;
    CHECK_OK(sn_loader_create(ds, &cfg, &l));
    CHECK(sn_loader_batches_per_epoch(l) == COUNT / B, "per epoch");
    int seen[COUNT] = {0};
    int ok = 1;
    for (int i = 0; i < COUNT / B; i++) {
        sn_batch b;
        CHECK_OK(sn_loader_next(l, &b));
        ok &= b.n == B && b.epoch == 0 && b.position == i * B && b.last_in_epoch == (i == COUNT / B - 1);
        for (int j = 0; j < b.n; j++) {
            seen[b.indices[j]]++;
            ok &= b.labels[j] == b.indices[j] % 3;
        }
    }
    CHECK(ok, "batch fields");
    int once = 0, more = 0;
    for (int i = 0; i < COUNT; i++) {
        once += seen[i] == 1;
        more += seen[i] > 1;
    }
    CHECK(once == COUNT / B * B && more == 0, "once %d more %d", once, more);
    sn_batch b;
    CHECK_OK(sn_loader_next(l, &b));
    CHECK(b.epoch == 1 && b.position == 0, "rolled into epoch 1: %lld", (long long)b.epoch);
    sn_loader_free(l);

    /* Order: a permutation, reproducible, and different across epochs and seeds. */
    int32_t o1[COUNT], o2[COUNT], o3[COUNT], o4[COUNT];
    sn_epoch_order(7, 0, 1, COUNT, o1);
    sn_epoch_order(7, 0, 1, COUNT, o2);
    sn_epoch_order(7, 1, 1, COUNT, o3);
    sn_epoch_order(8, 0, 1, COUNT, o4);
    CHECK(!memcmp(o1, o2, sizeof o1), "same seed, same order");
    CHECK(memcmp(o1, o3, sizeof o1) != 0, "epochs differ");
    CHECK(memcmp(o1, o4, sizeof o1) != 0, "seeds differ");
    int perm[COUNT] = {0}, isperm = 1;
    for (int i = 0; i < COUNT; i++) perm[o3[i]]++;
    for (int i = 0; i < COUNT; i++) isperm &= perm[i] == 1;
    CHECK(isperm, "not a permutation");

    /* Two loaders with one seed agree batch for batch (images too); epoch 1 differs from 0. */
    sn_loader *la = NULL, *lb = NULL;
    CHECK_OK(sn_loader_create(ds, &cfg, &la));
    CHECK_OK(sn_loader_create(ds, &cfg, &lb));
    batches ba, bb;
    take(la, 25, per, &ba); /* 2.5 epochs */
    take(lb, 25, per, &bb);
    CHECK(ba.n == 250 && bb.n == 250, "taken %d", ba.n);
    CHECK(!memcmp(ba.idx, bb.idx, 250 * 4) && !memcmp(ba.img, bb.img, sizeof(float) * 250 * per),
          "same seed, different batches");
    CHECK(memcmp(ba.idx, ba.idx + 100, 100 * 4) != 0, "epoch 1 repeats epoch 0's order");
    /* The same sample in two epochs gets different augmentation (almost surely). */
    drop(&bb);
    sn_loader_free(lb);

    /* Save mid-epoch, resume elsewhere: the following batches match exactly. */
    CHECK_OK(sn_loader_create(ds, &cfg, &lb));
    take(lb, 13, per, &bb); /* epoch 1, position 30 */
    sn_loader_state st;
    sn_loader_get_state(lb, &st);
    CHECK(st.epoch == 1 && st.position == 30 && st.seed == 7, "state %lld %lld",
          (long long)st.epoch, (long long)st.position);
    drop(&bb);
    batches rest, resumed, again;
    take(lb, 12, per, &rest);
    sn_loader *lc = NULL;
    sn_loader_config other = cfg;
    other.seed = 999; /* the state's seed wins */
    CHECK_OK(sn_loader_create(ds, &other, &lc));
    take(lc, 3, per, &again); /* consume some, then jump */
    drop(&again);
    CHECK_OK(sn_loader_set_state(lc, &st));
    take(lc, 12, per, &resumed);
    CHECK(rest.n == 120 && resumed.n == 120, "resume sizes");
    CHECK(!memcmp(rest.idx, resumed.idx, 120 * 4) && !memcmp(rest.lab, resumed.lab, 120 * 4) &&
              !memcmp(rest.img, resumed.img, sizeof(float) * 120 * per),
          "resumed batches differ");
    CHECK(!memcmp(rest.idx, ba.idx + 130, 120 * 4), "resume disagrees with an unbroken run");
    /* Rewinding the same loader works too. */
    CHECK_OK(sn_loader_set_state(lb, &st));
    take(lb, 12, per, &again);
    CHECK(!memcmp(again.img, rest.img, sizeof(float) * 120 * per), "rewind differs");
    drop(&again);
    drop(&rest);
    drop(&resumed);
    drop(&ba);
    sn_loader_state badst = {7, 0, COUNT - 3};
    CHECK(sn_loader_set_state(lb, &badst) == SN_ERR_INVALID_ARG, "tail state refused in train");
    sn_loader_free(la);
    sn_loader_free(lb);
    sn_loader_free(lc);

    /* Eval: dataset order, all samples, last batch smaller, plain resize of the full image. */
    cfg.train = 0;
    CHECK_OK(sn_loader_create(ds, &cfg, &l));
    CHECK(sn_loader_batches_per_epoch(l) == 11, "eval per epoch");
    int total = 0, inorder = 1, last_n = 0, pixels_ok = 1;
    for (int i = 0; i < 11; i++) {
        CHECK_OK(sn_loader_next(l, &b));
        for (int j = 0; j < b.n; j++) {
            inorder &= b.indices[j] == total + j;
            float want[3];
            uint8_t v = (uint8_t)(b.indices[j] % 251);
            sn_normalize_u8(&v, 1, 1, want);
            const float *im = b.images + (size_t)j * per;
            for (int q = 0; q < S * S; q++)
                for (int k = 0; k < 3; k++) pixels_ok &= fabsf(im[q * 3 + k] - want[k]) < 1e-4f;
        }
        total += b.n;
        last_n = b.n;
        CHECK(b.last_in_epoch == (i == 10), "eval last flag");
    }
    CHECK(total == COUNT && inorder && last_n == 3, "eval total %d last %d", total, last_n);
    CHECK(pixels_ok, "eval pixels");
    CHECK_OK(sn_loader_next(l, &b));
    CHECK(b.epoch == 1 && b.indices[0] == 0, "eval wraps");
    sn_loader_free(l);

    /* A failing sample surfaces on the caller's thread with its message; then the loader
     * reports it is stopped; free still joins cleanly. */
    impl.fail_at = 15;
    CHECK_OK(sn_loader_create(ds, &cfg, &l));
    CHECK_OK(sn_loader_next(l, &b));
    sn_status s2 = sn_loader_next(l, &b);
    CHECK(s2 == SN_ERR_IO && has(sn_last_error(), "synthetic failure at 15"), "%s", sn_last_error());
    CHECK(sn_loader_next(l, &b) == SN_ERR_STATE, "after error");
    sn_loader_free(l);
    impl.fail_at = -1;

    /* skip_bad (issue 17): a sample that fails at load time is left out and counted once (with
     * its message), the next of the order takes its place, and later epochs do not retry it. */
    impl.fail_at = 15;
    cfg.skip_bad = 1;
    CHECK_OK(sn_loader_create(ds, &cfg, &l));
    {
        int skipped = 0, seen15 = 0, reason_ok = 1;
        const int64_t nb = 2 * sn_loader_batches_per_epoch(l);
        for (int64_t i = 0; i < nb; i++) {
            if (sn_loader_next(l, &b) != SN_OK) {
                CHECK(0, "skip_bad: %s", sn_last_error());
                break;
            }
            skipped += b.skipped;
            if (b.skipped) reason_ok &= has(b.skip_reason, "synthetic failure at 15");
            for (int k = 0; k < b.n; k++) seen15 |= b.indices[k] == 15;
        }
        CHECK(skipped == 1 && !seen15 && reason_ok, "skip_bad: skipped %d, seen %d", skipped,
              seen15);
    }
    sn_loader_free(l);
    cfg.skip_bad = 0;
    impl.fail_at = -1;

    /* Shutdown while the worker waits on a full buffer and while it is mid-batch; and many
     * create/free cycles (ASan/TSan catch leaks and races). */
    for (int i = 0; i < 50; i++) {
        CHECK_OK(sn_loader_create(ds, &cfg, &l));
        if (i % 2) sn_loader_next(l, &b);
        sn_loader_free(l);
    }
    cfg.train = 1;
    cfg.batch_size = COUNT + 1;
    CHECK(sn_loader_create(ds, &cfg, &l) == SN_ERR_INVALID_ARG, "batch larger than dataset");
    sn_loader_free(NULL);
    sn_dataset_free(ds);
}

/* Shards (data parallelism over processes): shard r of k prepares the contiguous slice
 * [r * B/k, (r + 1) * B/k) of each of the whole loader's batches, the same samples with the same
 * augmentation, and keeps the whole loader's state (so a checkpoint resumes any of them). */
static void test_loader_shards(void) {
    enum { COUNT = 53, B = 8, K = 4, S = 6, STEPS = 9 };
    const int per = S * S * 3, b = B / K;
    synth_impl impl = {-1};
    sn_dataset *ds = make_synth(COUNT, &impl);
    sn_loader_config cfg;
    sn_loader_config_defaults(&cfg);
    cfg.batch_size = B;
    cfg.image_size = S;
    cfg.seed = 11;
    cfg.aug.min_area = 0.3f;
    sn_loader *whole = NULL, *sh[K] = {NULL};
    CHECK_OK(sn_loader_create(ds, &cfg, &whole));
    for (int r = 0; r < K; r++) {
        sn_loader_config c = cfg;
        c.shard_rank = r;
        c.shard_count = K;
        CHECK_OK(sn_loader_create(ds, &c, &sh[r]));
        CHECK(sn_loader_batches_per_epoch(sh[r]) == COUNT / B, "shard %d: batches per epoch", r);
    }
    /* Across an epoch's end (6 batches per epoch), and through a set_state as on resume. */
    int same = 1;
    for (int step = 0; step < STEPS; step++) {
        if (step == 4) {
            sn_loader_state st;
            sn_loader_get_state(whole, &st);
            for (int r = 0; r < K; r++) CHECK_OK(sn_loader_set_state(sh[r], &st));
        }
        sn_batch w;
        CHECK_OK(sn_loader_next(whole, &w));
        for (int r = 0; r < K; r++) {
            sn_batch x;
            CHECK_OK(sn_loader_next(sh[r], &x));
            same &= x.n == b && x.epoch == w.epoch && x.position == w.position &&
                    x.last_in_epoch == w.last_in_epoch;
            same &= memcmp(x.indices, w.indices + r * b, sizeof(int32_t) * b) == 0 &&
                    memcmp(x.labels, w.labels + r * b, sizeof(int32_t) * b) == 0 &&
                    memcmp(x.images, w.images + (size_t)r * b * per, sizeof(float) * b * per) == 0;
            sn_loader_state a, c;
            sn_loader_get_state(whole, &a);
            sn_loader_get_state(sh[r], &c);
            same &= a.epoch == c.epoch && a.position == c.position && a.seed == c.seed;
        }
    }
    CHECK(same, "the shards' batches are the slices of the whole loader's, its state theirs");
    sn_loader *l = NULL;
    sn_loader_config c = cfg;
    c.shard_count = 3; /* 8 images cannot be split in 3 */
    CHECK(sn_loader_create(ds, &c, &l) == SN_ERR_INVALID_ARG && strstr(sn_last_error(), "multiple"),
          "a batch the shards cannot split: %s", sn_last_error());
    c.shard_count = 2;
    c.skip_bad = 1;
    CHECK(sn_loader_create(ds, &c, &l) == SN_ERR_UNSUPPORTED && strstr(sn_last_error(), "--skip-bad"),
          "skip_bad with shards: %s", sn_last_error());
    c.skip_bad = 0;
    c.train = 0;
    CHECK(sn_loader_create(ds, &c, &l) == SN_ERR_INVALID_ARG, "shards of an evaluation loader");
    sn_loader_free(whole);
    for (int r = 0; r < K; r++) sn_loader_free(sh[r]);
    sn_dataset_free(ds);
}

/* Loader on Fashion-MNIST itself: a few batches, timed. */
static void test_loader_fmnist(void) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    struct stat sb;
    if (stat(dir, &sb) != 0) return;
    sn_dataset *ds = NULL;
    if (sn_fashion_mnist_open(dir, 0, &ds) != SN_OK) return;
    sn_loader_config cfg;
    sn_loader_config_defaults(&cfg);
    cfg.batch_size = 64;
    cfg.image_size = 32;
    cfg.aug.min_area = 0.6f;
    sn_loader *l = NULL;
    CHECK_OK(sn_loader_create(ds, &cfg, &l));
    double t0 = now_s();
    int nb = 0;
    for (int i = 0; i < 40; i++) {
        sn_batch b;
        if (sn_loader_next(l, &b) != SN_OK) break;
        nb++;
    }
    CHECK(nb == 40, "fmnist batches %d", nb);
    printf("fashion-mnist loader: %d batches of 64x32x32x3 in %.3f s\n", nb, now_s() - t0);
    sn_loader_free(l);
    sn_dataset_free(ds);
}

/* JPEG encoding: a smooth picture (JPEG's case) comes back at its size, close to the original;
 * grayscale too; a bad quality is refused. */
static void test_jpeg_encode(void) {
    sn_image a;
    CHECK_OK(sn_image_alloc(&a, 40, 24, 3));
    for (int y = 0; y < 24; y++)
        for (int x = 0; x < 40; x++) {
            uint8_t *px = a.pixels + 3 * (y * 40 + x);
            px[0] = (uint8_t)(6 * x);
            px[1] = (uint8_t)(10 * y);
            px[2] = (uint8_t)(128 + 2 * (x - y));
        }
    char p[512];
    tmp_path(p, sizeof p, "rt.jpg");
    CHECK_OK(sn_image_save_jpeg(&a, 95, p));
    sn_image b;
    CHECK_OK(sn_image_load(p, &b));
    double err = 0;
    int ok = b.width == 40 && b.height == 24 && b.channels == 3;
    for (int i = 0; ok && i < 40 * 24 * 3; i++) err += fabs((double)a.pixels[i] - b.pixels[i]);
    err /= 40 * 24 * 3;
    CHECK(ok && err < 3.0, "JPEG round trip: %dx%d, mean error %.2f", b.width, b.height, err);
    sn_image_free(&b);
    sn_image g;
    CHECK_OK(sn_image_alloc(&g, 9, 5, 1));
    memset(g.pixels, 77, 45);
    uint8_t *jpg = NULL;
    size_t n = 0;
    CHECK_OK(sn_image_encode_jpeg(&g, 90, &jpg, &n));
    CHECK(n > 2 && jpg[0] == 0xFF && jpg[1] == 0xD8, "not a JPEG");
    CHECK_OK(sn_image_decode(jpg, n, "gray.jpg", &b));
    CHECK(b.width == 9 && b.height == 5 && abs(b.pixels[0] - 77) <= 2, "gray JPEG %dx%d %d",
          b.width, b.height, b.pixels ? b.pixels[0] : -1);
    sn_image_free(&b);
    sn_free(jpg);
    CHECK(sn_image_encode_jpeg(&g, 0, &jpg, &n) == SN_ERR_INVALID_ARG, "quality 0 accepted");
    sn_image_free(&g);
    sn_image_free(&a);
}

int main(void) {
    double t0 = now_s();
    if (t_make_tmpdir(g_tmp, sizeof g_tmp, "sn_data") != 0) return 1;
    test_idx();
    test_fashion_mnist_real();
    test_png();
    test_jpeg_synthetic();
    test_jpeg_encode();
    test_coco_jpegs();
    test_folder();
    test_match_classes();
    test_resize();
    test_augment();
    test_loader();
    test_loader_shards();
    test_loader_fmnist();
    t_rm_tree(g_tmp);
    printf("test_data: %.2f s\n", now_s() - t0);
    return TEST_SUMMARY();
}
