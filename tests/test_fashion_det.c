/* Tests for the built-in fashion-det dataset: COCO structure, boxes (inside, tight, sizes,
 * overlap), determinism across seeds and thread counts, and the error paths. Runs on a small
 * synthetic Fashion-MNIST written here, plus the real one when it is installed. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "fashion_det.h"
#include "idx_write.h"
#include "test.h"

static char g_tmp[256];

enum { NTRAIN = 20, NVAL = 10, SIZE = 128, MAXOBJ = 12 };
#define MIN_SIDE 10.0
#define MAX_SIDE 100.0
#define MAX_IOU 0.3
#define MAX_HIDDEN 0.3

static int has(const char *haystack, const char *needle) { return strstr(haystack, needle) != NULL; }

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static uint8_t *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return b;
}

/* 1: same bytes, 0: different, -1: one is missing */
static int same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    uint8_t *x = read_all(a, &na), *y = read_all(b, &nb);
    int r = (!x || !y) ? -1 : (na == nb && memcmp(x, y, na) == 0);
    free(x);
    free(y);
    return r;
}

/* ---- A synthetic Fashion-MNIST: class-shaped blobs with faint specks around them ----------- */

static void write_fake_split(const char *dir, const char *split, int n) {
    uint8_t *img = calloc((size_t)n * 784, 1), *lab = malloc((size_t)n);
    uint32_t rng = 12345u + (uint32_t)n;
    for (int i = 0; i < n; i++) {
        uint8_t *p = img + (size_t)i * 784;
        lab[i] = (uint8_t)(i % 10);
        int c = lab[i];
        /* sizes and positions vary with i; the shape with the class */
        int w = 6 + (i * 7) % 20, h = 6 + (i * 11) % 20;
        int x0 = (i * 3) % (28 - w + 1), y0 = (i * 5) % (28 - h + 1);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double u = (x + 0.5) / w - 0.5, v = (y + 0.5) / h - 0.5;
                int in = c % 3 == 0 ? u * u + v * v < 0.25           /* ellipse */
                         : c % 3 == 1 ? (x + y) % 7 < 5                /* stripes */
                                      : fabs(u) < 0.5 - fabs(v) * 0.8; /* diamond */
                if (in) p[(y0 + y) * 28 + x0 + x] = (uint8_t)(120 + (x * 9 + y * 5 + c * 13) % 136);
            }
        /* specks below 10% of the maximum: not part of the item */
        for (int k = 0; k < 6; k++) {
            rng = rng * 1664525u + 1013904223u;
            uint8_t *px = &p[(rng >> 8) % 784];
            if (*px == 0) *px = 9;
        }
    }
    /* blank items: the generator must draw another item instead */
    for (int i = 12; i < n; i += 13) memset(img + (size_t)i * 784, 0, 784);
    char ip[512], lp[512];
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    uint32_t di[3] = {(uint32_t)n, 28, 28}, dl[1] = {(uint32_t)n};
    t_write_idx(ip, 0x803, di, 3, img, (size_t)n * 784);
    t_write_idx(lp, 0x801, dl, 1, lab, (size_t)n);
    free(img);
    free(lab);
}

/* ---- Checks ------------------------------------------------------------------------------- */

static void options(sn_fashion_det_options *o, const char *fm, uint64_t seed, int threads) {
    sn_fashion_det_defaults(o);
    o->fmnist_dir = fm;
    o->image_size = SIZE;
    o->train_count = NTRAIN;
    o->val_count = NVAL;
    o->min_size = MIN_SIDE;
    o->max_size = MAX_SIDE;
    o->max_iou = MAX_IOU;
    o->max_hidden = MAX_HIDDEN;
    o->seed = seed;
    o->threads = threads;
}

typedef struct {
    int calls, last, total, monotonic;
} progress_log;

static void on_progress(void *user, int done, int total) {
    progress_log *p = user;
    if (done < p->last) p->monotonic = 0;
    p->calls++;
    p->last = done;
    p->total = total;
}

static double iou(const double *a, const double *b) {
    double ix = fmin(a[0] + a[2], b[0] + b[2]) - fmax(a[0], b[0]);
    double iy = fmin(a[1] + a[3], b[1] + b[3]) - fmax(a[1], b[1]);
    if (ix <= 0 || iy <= 0) return 0;
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy);
}

/* Long sides of all boxes seen, for the size-range check. */
static double g_sides[2000];
static int g_nsides;

/* Structure of one instances file; returns its boxes per image in `boxes` [n][MAXOBJ][4]. */
static void check_json(const char *root, const char *split, int n, double (*boxes)[MAXOBJ][4],
                       int *counts, int *cats) {
    char path[512];
    snprintf(path, sizeof path, "%s/annotations/instances_%s.json", root, split);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    CHECK(j != NULL, "%s: %s", path, err.text);
    if (!j) return;
    json_t *images = json_object_get(j, "images"), *anns = json_object_get(j, "annotations");
    json_t *cs = json_object_get(j, "categories");
    CHECK(json_is_array(images) && json_is_array(anns) && json_is_array(cs), "%s: arrays", path);
    CHECK(json_is_object(json_object_get(j, "info")), "info");
    CHECK(json_array_size(images) == (size_t)n, "%s: %zu images", path, json_array_size(images));
    CHECK(json_array_size(cs) == 10, "%zu categories", json_array_size(cs));
    for (size_t i = 0; i < json_array_size(cs); i++) {
        json_t *c = json_array_get(cs, i);
        const char *nm = json_string_value(json_object_get(c, "name"));
        CHECK(json_integer_value(json_object_get(c, "id")) == (json_int_t)i + 1, "category id");
        CHECK(nm && strcmp(nm, sn_fashion_det_class_names[i]) == 0, "category %zu name %s", i,
              nm ? nm : "(none)");
    }
    CHECK(strcmp(sn_fashion_det_class_names[0], "T-shirt/top") == 0 &&
              strcmp(sn_fashion_det_class_names[9], "Ankle boot") == 0,
          "class names");
    for (int i = 0; i < n; i++) {
        json_t *im = json_array_get(images, (size_t)i);
        const char *fn = json_string_value(json_object_get(im, "file_name"));
        CHECK(json_integer_value(json_object_get(im, "id")) == i + 1, "image id");
        CHECK(json_integer_value(json_object_get(im, "width")) == SIZE &&
                  json_integer_value(json_object_get(im, "height")) == SIZE,
              "image size");
        char ip[600];
        snprintf(ip, sizeof ip, "%s/%s/%s", root, split, fn ? fn : "?");
        int w = 0, h = 0;
        CHECK(fn && sn_image_probe(ip, &w, &h) == SN_OK && w == SIZE && h == SIZE,
              "%s: %dx%d: %s", ip, w, h, sn_last_error());
        counts[i] = 0;
    }
    for (size_t k = 0; k < json_array_size(anns); k++) {
        json_t *a = json_array_get(anns, k), *bb = json_object_get(a, "bbox");
        json_int_t img = json_integer_value(json_object_get(a, "image_id"));
        json_int_t cat = json_integer_value(json_object_get(a, "category_id"));
        CHECK(json_integer_value(json_object_get(a, "id")) == (json_int_t)k + 1, "ann id");
        CHECK(json_is_integer(json_object_get(a, "iscrowd")) &&
                  json_integer_value(json_object_get(a, "iscrowd")) == 0,
              "iscrowd");
        CHECK(cat >= 1 && cat <= 10, "category %lld", (long long)cat);
        CHECK(img >= 1 && img <= n, "image_id %lld", (long long)img);
        CHECK(json_array_size(bb) == 4, "bbox size");
        if (img < 1 || img > n || json_array_size(bb) != 4) continue;
        double b[4];
        for (int q = 0; q < 4; q++) b[q] = json_number_value(json_array_get(bb, (size_t)q));
        CHECK(b[0] >= 0 && b[1] >= 0 && b[2] >= 1 && b[3] >= 1 && b[0] + b[2] <= SIZE &&
                  b[1] + b[3] <= SIZE,
              "box %g %g %g %g outside the image", b[0], b[1], b[2], b[3]);
        CHECK(b[0] == floor(b[0]) && b[1] == floor(b[1]) && b[2] == floor(b[2]) &&
                  b[3] == floor(b[3]),
              "pixel box");
        CHECK(fabs(json_number_value(json_object_get(a, "area")) - b[2] * b[3]) < 1e-9, "area");
        int *c = &counts[img - 1];
        CHECK(*c < MAXOBJ, "image %lld has more than %d objects", (long long)img, MAXOBJ);
        if (*c >= MAXOBJ) continue;
        memcpy(boxes[img - 1][*c], b, sizeof b);
        cats[(img - 1) * MAXOBJ + *c] = (int)cat;
        (*c)++;
        if (g_nsides < 2000) g_sides[g_nsides++] = fmax(b[2], b[3]);
    }
    for (int i = 0; i < n; i++) {
        CHECK(counts[i] >= 1 && counts[i] <= MAXOBJ, "image %d: %d objects", i + 1, counts[i]);
        for (int a = 0; a < counts[i]; a++)
            for (int b = a + 1; b < counts[i]; b++)
                CHECK(iou(boxes[i][a], boxes[i][b]) <= MAX_IOU + 1e-12, "image %d: IoU %g", i + 1,
                      iou(boxes[i][a], boxes[i][b]));
    }
    json_decref(j);
}

/* Tight boxes, nothing drawn outside them, bounded occlusion: checked on a rendered scene,
 * which must also agree with what was written: the PNG (when `png` is given) and the JSON
 * boxes (when `boxes` is given). */
static void check_scene(const sn_fashion_det_scene *sc, int size, const sn_fashion_det_options *o,
                        const char *png, const double (*boxes)[4], const int *cats, int count) {
    const int S = size;
    uint8_t *inside = calloc((size_t)S * S, 1), *owner = calloc((size_t)S * S, 1);
    long total[SN_FASHION_DET_MAX_OBJECTS] = {0}, vis[SN_FASHION_DET_MAX_OBJECTS] = {0};
    CHECK(sc->count >= 1 && sc->count <= o->max_objects, "scene has %d objects", sc->count);
    for (int k = 0; k < sc->count; k++) {
        const sn_fashion_det_object *ob = &sc->objects[k];
        CHECK(ob->w >= 1 && ob->h >= 1 && ob->x >= 0 && ob->y >= 0 && ob->x + ob->w <= S &&
                  ob->y + ob->h <= S,
              "object box");
        if (!(ob->w >= 1 && ob->h >= 1 && ob->x >= 0 && ob->y >= 0 && ob->x + ob->w <= S &&
              ob->y + ob->h <= S))
            continue;
        /* tight: each edge row and column of the box holds a pixel of the item */
        int top = 0, bottom = 0, left = 0, right = 0;
        for (int x = 0; x < ob->w; x++) {
            top |= ob->mask[x] > 0;
            bottom |= ob->mask[(size_t)(ob->h - 1) * ob->w + x] > 0;
        }
        for (int y = 0; y < ob->h; y++) {
            left |= ob->mask[(size_t)y * ob->w] > 0;
            right |= ob->mask[(size_t)y * ob->w + ob->w - 1] > 0;
        }
        CHECK(top && bottom && left && right, "object %d: box not tight (%d %d %d %d)", k, top,
              bottom, left, right);
        for (int y = 0; y < ob->h; y++)
            for (int x = 0; x < ob->w; x++) {
                size_t p = (size_t)(ob->y + y) * S + ob->x + x;
                inside[p] = 1;
                if (ob->mask[(size_t)y * ob->w + x]) {
                    total[k]++;
                    if (owner[p]) vis[owner[p] - 1]--;
                    owner[p] = (uint8_t)(k + 1);
                    vis[k]++;
                }
            }
        CHECK(ob->category >= 1 && ob->category <= 10, "category");
        if (boxes) {
            CHECK(k < count && boxes[k][0] == ob->x && boxes[k][1] == ob->y &&
                      boxes[k][2] == ob->w && boxes[k][3] == ob->h && cats[k] == ob->category,
                  "object %d differs from the JSON", k);
        }
    }
    if (boxes) CHECK(count == sc->count, "JSON has %d objects, scene %d", count, sc->count);
    for (int k = 0; k < sc->count; k++)
        CHECK(vis[k] >= (1 - o->max_hidden) * total[k] - 1e-9, "object %d: %ld of %ld visible", k,
              vis[k], total[k]);
    /* outside every box the image is exactly the background */
    long outside_diff = 0;
    for (size_t p = 0; p < (size_t)S * S; p++)
        if (!inside[p])
            outside_diff += memcmp(sc->image.pixels + 3 * p, sc->background.pixels + 3 * p, 3) != 0;
    CHECK(outside_diff == 0, "%ld pixels outside the boxes differ from the background",
          outside_diff);
    /* and every item changed something (its colour contrasts with what lies under it) */
    for (int k = 0; k < sc->count; k++) {
        const sn_fashion_det_object *ob = &sc->objects[k];
        long changed = 0;
        for (int y = 0; y < ob->h; y++)
            for (int x = 0; x < ob->w; x++) {
                size_t p = (size_t)(ob->y + y) * S + ob->x + x;
                for (int c = 0; c < 3; c++)
                    changed += abs(sc->image.pixels[3 * p + c] - sc->background.pixels[3 * p + c]) >
                               20;
            }
        CHECK(changed > 0, "object %d left no visible trace", k);
    }
    if (png) {
        sn_image im = {0};
        CHECK_OK(sn_image_load(png, &im));
        CHECK(im.pixels && im.width == S && im.height == S &&
                  memcmp(im.pixels, sc->image.pixels, (size_t)S * S * 3) == 0,
              "%s differs from the rendered scene", png);
        sn_image_free(&im);
    }
    free(inside);
    free(owner);
}

static void test_generate(const char *fm) {
    char a[300], b[300], c[300];
    snprintf(a, sizeof a, "%s/a", g_tmp);
    snprintf(b, sizeof b, "%s/b/nested", g_tmp); /* parents are created */
    snprintf(c, sizeof c, "%s/c", g_tmp);
    sn_fashion_det_options o;
    options(&o, fm, 7, 2);
    progress_log pl = {0, 0, 0, 1};
    o.progress = on_progress;
    o.user = &pl;
    sn_fashion_det_stats st;
    double t0 = now_s();
    CHECK_OK(sn_fashion_det_make(a, &o, &st));
    printf("fashion-det: %d + %d images, %d + %d objects, %d + %d dropped, %.2f s\n",
           st.images[0], st.images[1], st.objects[0], st.objects[1], st.dropped[0], st.dropped[1],
           now_s() - t0);
    CHECK(st.images[0] == NTRAIN && st.images[1] == NVAL, "stats images");
    CHECK(pl.calls >= 2 && pl.monotonic && pl.last == NTRAIN + NVAL && pl.total == NTRAIN + NVAL,
          "progress: %d calls, last %d of %d", pl.calls, pl.last, pl.total);

    static double boxes_tr[NTRAIN][MAXOBJ][4], boxes_va[NVAL][MAXOBJ][4];
    int counts_tr[NTRAIN], counts_va[NVAL], cats_tr[NTRAIN * MAXOBJ], cats_va[NVAL * MAXOBJ];
    g_nsides = 0;
    check_json(a, "train", NTRAIN, boxes_tr, counts_tr, cats_tr);
    check_json(a, "val", NVAL, boxes_va, counts_va, cats_va);
    int ntr = 0, nva = 0;
    for (int i = 0; i < NTRAIN; i++) ntr += counts_tr[i];
    for (int i = 0; i < NVAL; i++) nva += counts_va[i];
    CHECK(ntr == st.objects[0] && nva == st.objects[1], "stats objects %d %d vs JSON %d %d",
          st.objects[0], st.objects[1], ntr, nva);

    /* sizes: within the range and spread over it (log-uniform: each quarter of the log range
     * holds about a quarter of the boxes; with ~180 boxes, under 12% in one is about 4 standard deviations off) */
    int quarter[4] = {0, 0, 0, 0};
    double lo = 1e9, hi = 0;
    for (int i = 0; i < g_nsides; i++) {
        double s = g_sides[i];
        lo = fmin(lo, s);
        hi = fmax(hi, s);
        double t = log(s / MIN_SIDE) / log(MAX_SIDE / MIN_SIDE);
        int q = (int)(t * 4);
        quarter[q < 0 ? 0 : q > 3 ? 3 : q]++;
    }
    printf("fashion-det: %d boxes, long sides %.0f..%.0f, per log-quarter %d %d %d %d\n",
           g_nsides, lo, hi, quarter[0], quarter[1], quarter[2], quarter[3]);
    CHECK(g_nsides >= 60, "only %d boxes", g_nsides);
    CHECK(lo >= MIN_SIDE - 1.5 && hi <= MAX_SIDE + 1.5, "long sides %g..%g outside %g..%g", lo, hi,
          MIN_SIDE, MAX_SIDE);
    CHECK(lo <= MIN_SIDE * 1.3 && hi >= MAX_SIDE * 0.8, "long sides %g..%g do not span %g..%g",
          lo, hi, MIN_SIDE, MAX_SIDE);
    for (int q = 0; q < 4; q++)
        CHECK(quarter[q] >= g_nsides * 0.12, "log-quarter %d has %d of %d boxes", q, quarter[q],
              g_nsides);

    /* the rendered scenes: tight boxes, and the same as the files */
    sn_fashion_det_source src_tr, src_va;
    CHECK_OK(sn_fashion_det_source_load(fm, 1, &src_tr));
    CHECK_OK(sn_fashion_det_source_load(fm, 0, &src_va));
    for (int i = 0; i < NTRAIN + NVAL; i++) {
        int train = i < NTRAIN, idx = train ? i : i - NTRAIN;
        sn_fashion_det_scene sc;
        CHECK_OK(sn_fashion_det_render(train ? &src_tr : &src_va, &o, train, idx, &sc));
        char png[400];
        snprintf(png, sizeof png, "%s/%s/%06d.png", a, train ? "train" : "val", idx + 1);
        check_scene(&sc, SIZE, &o, png, train ? boxes_tr[idx] : boxes_va[idx],
                    train ? cats_tr + idx * MAXOBJ : cats_va + idx * MAXOBJ,
                    train ? counts_tr[idx] : counts_va[idx]);
        sn_fashion_det_scene_free(&sc);
    }

    /* the same seed on one thread: the same bytes; another seed: other bytes */
    o.threads = 1;
    o.progress = NULL;
    CHECK_OK(sn_fashion_det_make(b, &o, NULL));
    o.seed = 8;
    CHECK_OK(sn_fashion_det_make(c, &o, NULL));
    int same = 1, diff_png = 0;
    char pa[400], pb[400], pc[400];
    for (int i = 0; i < NTRAIN + NVAL; i++) {
        const char *sp = i < NTRAIN ? "train" : "val";
        int id = i < NTRAIN ? i + 1 : i - NTRAIN + 1;
        snprintf(pa, sizeof pa, "%s/%s/%06d.png", a, sp, id);
        snprintf(pb, sizeof pb, "%s/%s/%06d.png", b, sp, id);
        snprintf(pc, sizeof pc, "%s/%s/%06d.png", c, sp, id);
        same &= same_file(pa, pb) == 1;
        diff_png += same_file(pa, pc) == 0;
    }
    CHECK(same, "same seed, different PNG bytes");
    CHECK(diff_png == NTRAIN + NVAL, "another seed: only %d of %d PNGs differ", diff_png,
          NTRAIN + NVAL);
    for (int s = 0; s < 2; s++) {
        const char *sp = s ? "val" : "train";
        snprintf(pa, sizeof pa, "%s/annotations/instances_%s.json", a, sp);
        snprintf(pb, sizeof pb, "%s/annotations/instances_%s.json", b, sp);
        snprintf(pc, sizeof pc, "%s/annotations/instances_%s.json", c, sp);
        CHECK(same_file(pa, pb) == 1, "same seed, different %s JSON", sp);
        CHECK(same_file(pa, pc) == 0, "another seed, same %s JSON", sp);
    }
    /* a re-run over an existing output replaces it with the same bytes */
    o.seed = 7;
    o.threads = 2;
    CHECK_OK(sn_fashion_det_make(c, &o, NULL));
    snprintf(pa, sizeof pa, "%s/annotations/instances_train.json", a);
    snprintf(pc, sizeof pc, "%s/annotations/instances_train.json", c);
    CHECK(same_file(pa, pc) == 1, "re-run over an old output differs");
    snprintf(pc, sizeof pc, "%s/annotations/instances_train.json.tmp", c);
    CHECK(!exists(pc), "temporary JSON left behind");

    /* out of memory at every allocation of one render: reported, nothing leaks (ASan) */
    int oom_ok = 1, n_alloc = 0;
    for (long k = 1; k < 400; k++) {
        sn_fashion_det_scene sc;
        sn_alloc_fail_after(k);
        sn_status s = sn_fashion_det_render(&src_tr, &o, 1, 3, &sc);
        sn_alloc_fail_after(0);
        if (s == SN_OK) {
            n_alloc = (int)k;
            CHECK(sc.count >= 1, "render after OOM sweep");
            sn_fashion_det_scene_free(&sc);
            break;
        }
        if (s != SN_ERR_OOM || sc.count != 0 || sc.image.pixels) oom_ok = 0;
    }
    CHECK(oom_ok && n_alloc > 3, "OOM sweep: ok %d, %d allocations", oom_ok, n_alloc);
    sn_fashion_det_source_free(&src_tr);
    sn_fashion_det_source_free(&src_va);
}

static void test_errors(const char *fm) {
    sn_fashion_det_options o;
    char out[300], p[400];

    /* Fashion-MNIST missing: names the file and the package; nothing is created */
    snprintf(p, sizeof p, "%s/nowhere", g_tmp);
    snprintf(out, sizeof out, "%s/never", g_tmp);
    options(&o, p, 1, 1);
    sn_status s = sn_fashion_det_make(out, &o, NULL);
    CHECK(s == SN_ERR_IO, "missing dataset -> %s", sn_status_name(s));
    printf("fashion-det: the error for a missing dataset: %s\n", sn_last_error());
    CHECK(has(sn_last_error(), "nowhere/train-images-idx3-ubyte.gz") &&
              has(sn_last_error(), "apt-get install dataset-fashion-mnist"),
          "message: %s", sn_last_error());
    CHECK(!exists(out), "output made although the input is missing");
    sn_fashion_det_source src;
    CHECK(sn_fashion_det_source_load(p, 0, &src) == SN_ERR_IO &&
              has(sn_last_error(), "nowhere/t10k-images-idx3-ubyte.gz"),
          "source load: %s", sn_last_error());

    /* an output below a regular file cannot be created */
    snprintf(p, sizeof p, "%s/plainfile", g_tmp);
    FILE *f = fopen(p, "w");
    if (f) fclose(f);
    snprintf(out, sizeof out, "%s/plainfile/sub", g_tmp);
    options(&o, fm, 1, 1);
    s = sn_fashion_det_make(out, &o, NULL);
    CHECK(s == SN_ERR_IO && has(sn_last_error(), "plainfile"), "unwritable output -> %s: %s",
          sn_status_name(s), sn_last_error());

    /* a failure while writing the JSON leaves no JSON, not even one of an earlier run */
    snprintf(out, sizeof out, "%s/blocked", g_tmp);
    snprintf(p, sizeof p, "%s/annotations/instances_val.json.tmp", out);
    char q[400];
    snprintf(q, sizeof q, "%s/annotations", out);
    mkdir(out, 0777);
    mkdir(q, 0777);
    mkdir(p, 0777); /* a directory where the temporary file should go */
    snprintf(q, sizeof q, "%s/annotations/instances_val.json", out);
    f = fopen(q, "w");
    if (f) {
        fputs("{\"stale\": true}", f);
        fclose(f);
    }
    o.train_count = 3;
    o.val_count = 2;
    s = sn_fashion_det_make(out, &o, NULL);
    CHECK(s == SN_ERR_IO && has(sn_last_error(), "instances_val.json"), "blocked JSON -> %s: %s",
          sn_status_name(s), sn_last_error());
    CHECK(!exists(q), "a stale or partial instances_val.json is left");

    /* bad options */
    options(&o, fm, 1, 1);
    o.max_size = SIZE + 1;
    CHECK(sn_fashion_det_check(&o) == SN_ERR_INVALID_ARG && has(sn_last_error(), "size"),
          "max size above the image: %s", sn_last_error());
    options(&o, fm, 1, 1);
    o.max_objects = SN_FASHION_DET_MAX_OBJECTS + 1;
    CHECK(sn_fashion_det_check(&o) == SN_ERR_INVALID_ARG, "too many objects");
    options(&o, fm, 1, 1);
    o.max_iou = 0;
    CHECK(sn_fashion_det_make(out, &o, NULL) == SN_ERR_INVALID_ARG, "max IoU 0");
    options(&o, fm, 1, 1);
    o.train_count = o.val_count = 0;
    CHECK(sn_fashion_det_check(&o) == SN_ERR_INVALID_ARG, "no images");
}

/* The real Fashion-MNIST (t10k only, to stay fast) at the default size and object range. */
static void test_real(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", SN_FASHION_DET_DEFAULT_DIR);
    if (!exists(p)) {
        printf("fashion-det: %s not installed, real-data check skipped\n", p);
        return;
    }
    sn_fashion_det_source src;
    CHECK_OK(sn_fashion_det_source_load(NULL, 0, &src));
    CHECK(src.count == 10000 && src.rows == 28 && src.cols == 28, "t10k %d x %d x %d", src.count,
          src.rows, src.cols);
    sn_fashion_det_options o;
    sn_fashion_det_defaults(&o);
    int objects = 0, hist[10] = {0};
    for (int i = 0; i < 12; i++) {
        sn_fashion_det_scene sc;
        CHECK_OK(sn_fashion_det_render(&src, &o, 0, i, &sc));
        check_scene(&sc, o.image_size, &o, NULL, NULL, NULL, 0);
        for (int k = 0; k < sc.count; k++) {
            const sn_fashion_det_object *ob = &sc.objects[k];
            CHECK(ob->category == src.labels[ob->source_index] + 1, "category from the label");
            hist[ob->category - 1]++;
            for (int a = 0; a < k; a++) {
                const sn_fashion_det_object *pb = &sc.objects[a];
                double ba[4] = {ob->x, ob->y, ob->w, ob->h}, bb[4] = {pb->x, pb->y, pb->w, pb->h};
                CHECK(iou(ba, bb) <= o.max_iou + 1e-12, "real: IoU %g", iou(ba, bb));
            }
        }
        objects += sc.count;
        sn_fashion_det_scene_free(&sc);
    }
    int classes = 0;
    for (int c = 0; c < 10; c++) classes += hist[c] > 0;
    CHECK(objects >= 24 && classes >= 6, "real: %d objects of %d classes", objects, classes);
    sn_fashion_det_source_free(&src);
}

/* Fashion-MNIST as an image folder: the files, their classes and their pixels. */
static void test_export(const char *fm) {
    char dir[400];
    snprintf(dir, sizeof dir, "%s/fm_png/sub", g_tmp);
    int written = -1;
    /* Items 95..104 of a 100-item split: 95..99 exist, labels i % 10 = 5..9. */
    CHECK_OK(sn_fashion_mnist_export(fm, 0, 95, 10, dir, &written));
    CHECK(written == 5, "export wrote %d files, want 5", written);
    sn_fashion_det_source src;
    CHECK_OK(sn_fashion_det_source_load(fm, 0, &src));
    sn_dataset *ds = NULL;
    CHECK_OK(sn_folder_open(dir, NULL, &ds, NULL));
    if (ds) {
        CHECK(ds->count == 5 && ds->num_classes == 5, "folder: %d images, %d classes", ds->count,
              ds->num_classes);
        const char *want[5] = {"Ankle_boot", "Bag", "Sandal", "Shirt", "Sneaker"}; /* byte order */
        const int label_of[5] = {9, 8, 5, 6, 7};
        for (int k = 0; k < ds->num_classes && k < 5; k++)
            CHECK(strcmp(ds->class_names[k], want[k]) == 0, "class %d is '%s', want '%s'", k,
                  ds->class_names[k], want[k]);
        for (int i = 0; i < ds->count; i++) {
            sn_image img = {0};
            int label = -1;
            CHECK_OK(sn_dataset_get(ds, i, &img, &label));
            if (label < 0 || label >= 5 || !img.pixels) continue;
            /* One item per class: the item is 95 + (its Fashion-MNIST label - 5). */
            const int item = 95 + label_of[label] - 5;
            int diff = img.width != 28 || img.height != 28;
            for (int y = 0; !diff && y < 28; y++)
                for (int x = 0; x < 28; x++)
                    for (int c = 0; c < img.channels; c++)
                        diff |= img.pixels[(y * 28 + x) * img.channels + c] !=
                                src.pixels[(size_t)item * 784 + y * 28 + x];
            CHECK(!diff, "exported item %d differs from the IDX pixels", item);
            sn_image_free(&img);
        }
        sn_dataset_free(ds);
    }
    char p[500];
    snprintf(p, sizeof p, "%s/Ankle_boot/t10k-00099.png", dir);
    CHECK(exists(p), "%s missing", p);
    sn_fashion_det_source_free(&src);
    /* An output path through a file is refused, naming it. */
    snprintf(p, sizeof p, "%s/a_file", g_tmp);
    FILE *f = fopen(p, "w");
    if (f) fclose(f);
    snprintf(p, sizeof p, "%s/a_file/sub", g_tmp);
    CHECK(sn_fashion_mnist_export(fm, 0, 0, 3, p, &written) != SN_OK && written == 0 &&
              has(sn_last_error(), "a_file: cannot create the directory: a file of that name"),
          "output through a file: %s", sn_last_error());
    /* A missing Fashion-MNIST folder is named. */
    snprintf(p, sizeof p, "%s/no_such_dir", g_tmp);
    CHECK(sn_fashion_mnist_export(p, 0, 0, 3, dir, &written) != SN_OK && written == 0 &&
              has(sn_last_error(), "no_such_dir"),
          "missing source: %s", sn_last_error());
}

int main(void) {
    double t0 = now_s();
    if (t_make_tmpdir(g_tmp, sizeof g_tmp, "sn_fdet") != 0) return 1;
    char fm[300];
    snprintf(fm, sizeof fm, "%s/fmnist", g_tmp);
    mkdir(fm, 0777);
    write_fake_split(fm, "train", 300);
    write_fake_split(fm, "t10k", 100);
    test_generate(fm);
    test_errors(fm);
    test_export(fm);
    test_real();
    t_rm_tree(g_tmp);
    printf("test_fashion_det: %.2f s\n", now_s() - t0);
    return TEST_SUMMARY();
}
