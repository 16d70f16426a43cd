/* COCO annotation files: coco-tiny read in full, class columns, every kind of bad input
 * (tests/data/coco_bad), counted repairs, image files, results round trip, the parse cache
 * (hit, stale, damaged, unwritable) and allocation failures at every step. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coco.h"
#include "core.h"
#include "data.h"
#include "test.h"

static char g_tmp[512];
static char g_bad[1100];

static const char *bad(const char *name) {
    static char p[1300];
    snprintf(p, sizeof p, "%s/%s", g_bad, name);
    return p;
}

static const char *tmp(const char *name) {
    static char p[2][800];
    static int which;
    which ^= 1;
    snprintf(p[which], sizeof p[which], "%s/%s", g_tmp, name);
    return p[which];
}

/* ------------------------------------------------------------------------------------------ */

/* Numbers from a short python json script over the same file: 80 images, 705 annotations
 * (6 crowd), 80 categories with ids in 1..90; first image 262145 "000000262145.jpg" 640x427;
 * annotation 284647: image 262145, category 28, bbox [212.6, 55.62, 53.04, 53.46],
 * area 970.0430999999998; no box leaves its image. */
static void test_coco_tiny(void) {
    char dir[1024], path[1200];
    t_shared_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/data/coco-tiny/annotations/instances_train2017.json", dir);
    sn_coco *c = NULL;
    /* No cache: the source tree is not the test's to write into. */
    sn_status st = sn_coco_load(path, SN_COCO_NO_CACHE, &c);
    CHECK(st == SN_OK, "%s", sn_last_error());
    if (st != SN_OK) return;
    CHECK(c->num_images == 80 && c->num_anns == 705 && c->num_categories == 80,
          "counts %d %d %d", c->num_images, c->num_anns, c->num_categories);
    int crowd = 0, total = 0, grouped = 1;
    for (int a = 0; a < c->num_anns; a++) crowd += c->anns[a].iscrowd;
    for (int i = 0; i < c->num_images; i++) {
        total += c->images[i].num_anns;
        for (int a = 0; a < c->images[i].num_anns; a++)
            grouped &= c->anns[c->images[i].first_ann + a].image == i;
    }
    CHECK(crowd == 6, "crowd %d", crowd);
    CHECK(total == 705 && grouped, "per-image ranges");
    for (int k = 0; k < SN_COCO_WARN_KINDS; k++)
        CHECK(c->warn_count[k] == 0, "warning %d counted %" PRId64, k, c->warn_count[k]);
    CHECK(c->images[0].id == 262145 && strcmp(c->images[0].file_name, "000000262145.jpg") == 0 &&
              c->images[0].width == 640 && c->images[0].height == 427,
          "first image");
    int found = 0;
    for (int a = 0; a < c->num_anns; a++) {
        const sn_coco_ann *an = &c->anns[a];
        if (an->id != 284647) continue;
        found = 1;
        CHECK(c->images[an->image].id == 262145 && an->category_id == 28 && an->column == 28 &&
                  an->file_box[0] == 212.6 && an->file_box[1] == 55.62 &&
                  an->file_box[2] == 53.04 && an->file_box[3] == 53.46 &&
                  memcmp(an->box, an->file_box, sizeof an->box) == 0 &&
                  an->area == 970.0430999999998 && !an->iscrowd,
              "annotation 284647");
    }
    CHECK(found, "annotation 284647 present");
    /* COCO's own ids: 91 columns, column = id, the 10 unused ids give empty columns. */
    CHECK(c->num_classes == 91, "num_classes %d", c->num_classes);
    CHECK(sn_coco_column(c, 1) == 1 && sn_coco_column(c, 90) == 90 && sn_coco_column(c, 12) == -1,
          "columns of ids");
    CHECK(sn_coco_column_category(c, 1) == 1 && sn_coco_column_category(c, 12) == 0 &&
              sn_coco_column_category(c, 0) == 0 && sn_coco_column_category(c, 91) == 0,
          "ids of columns");
    CHECK(sn_coco_column_name(c, 1) && strcmp(sn_coco_column_name(c, 1), "person") == 0 &&
              sn_coco_column_name(c, 90) &&
              strcmp(sn_coco_column_name(c, 90), "toothbrush") == 0 &&
              sn_coco_column_name(c, 12) == NULL && sn_coco_column_name(c, 0) == NULL,
          "column names");
    int used = 0;
    for (int col = 1; col < c->num_classes; col++) used += sn_coco_column_category(c, col) != 0;
    CHECK(used == 80, "%d used columns", used);

    /* The repository keeps 13 of the 80 photos (tests/data/coco-tiny/README.md): the check
     * counts the other 67 and names the first of them in the file's order. */
    snprintf(path, sizeof path, "%s/data/coco-tiny/train2017", dir);
    int missing = -1;
    st = sn_coco_check_images(c, path, &missing);
    CHECK(st == SN_ERR_NOT_FOUND && missing == 67 && strstr(sn_last_error(), "67 of 80") &&
              strstr(sn_last_error(), "000000116740.jpg"),
          "13 of 80 present: %s", sn_last_error());
    /* Every file present (empty files will do: the check is for regular files by name). */
    char all[1200], file[1400];
    snprintf(all, sizeof all, "%s/all", g_tmp);
    CHECK(mkdir(all, 0755) == 0, "mkdir %s", all);
    for (int i = 0; i < c->num_images; i++) {
        snprintf(file, sizeof file, "%s/%s", all, c->images[i].file_name);
        FILE *f = fopen(file, "w");
        CHECK(f != NULL, "cannot create %s", file);
        if (f) fclose(f);
    }
    missing = -1;
    CHECK_OK(sn_coco_check_images(c, all, &missing));
    CHECK(missing == 0, "missing %d", missing);
    for (int i = 0; i < c->num_images; i++) {
        snprintf(file, sizeof file, "%s/%s", all, c->images[i].file_name);
        remove(file);
    }
    rmdir(all);
    st = sn_coco_check_images(c, g_tmp, &missing);
    CHECK(st == SN_ERR_NOT_FOUND && missing == 80 && strstr(sn_last_error(), "80 of 80") &&
              strstr(sn_last_error(), "000000262145.jpg"),
          "all missing: %s", sn_last_error());
    sn_coco_free(c);
}

static sn_coco *load_text(const char *name, const char *json) {
    FILE *f = fopen(tmp(name), "w");
    if (!f) return NULL;
    fputs(json, f);
    fclose(f);
    sn_coco *c = NULL;
    sn_status st = sn_coco_load(tmp(name), 0, &c);
    CHECK(st == SN_OK, "%s: %s", name, sn_last_error());
    return c;
}

static void test_columns(void) {
    /* Ids outside 1..90: the categories sorted by id take columns 1..K. */
    sn_coco *c = load_text("custom.json",
                           "{\"images\": [], \"categories\": [{\"id\": 100, \"name\": \"z\"}, "
                           "{\"id\": 5, \"name\": \"a\"}, {\"id\": 7, \"name\": \"b\"}]}");
    if (c) {
        CHECK(c->num_classes == 4, "num_classes %d", c->num_classes);
        CHECK(sn_coco_column(c, 5) == 1 && sn_coco_column(c, 7) == 2 &&
                  sn_coco_column(c, 100) == 3 && sn_coco_column(c, 6) == -1,
              "custom columns");
        CHECK(sn_coco_column_category(c, 3) == 100 && sn_coco_column_category(c, 0) == 0 &&
                  strcmp(sn_coco_column_name(c, 1), "a") == 0 &&
                  strcmp(sn_coco_column_name(c, 3), "z") == 0,
              "custom reverse map");
        CHECK(c->num_anns == 0 && c->num_images == 0, "no annotations is fine");
        sn_coco_free(c);
    }
    /* Ids within 1..90 keep COCO's numbering even when few, up to the largest one. */
    c = load_text("subset.json", "{\"images\": [], \"categories\": [{\"id\": 90, \"name\": "
                                 "\"t\"}, {\"id\": 3, \"name\": \"car\"}]}");
    if (c) {
        CHECK(c->num_classes == 91 && sn_coco_column(c, 3) == 3 && sn_coco_column(c, 90) == 90,
              "coco subset columns");
        sn_coco_free(c);
    }
    c = load_text("small.json", "{\"images\": [], \"categories\": [{\"id\": 10, \"name\": "
                                "\"boot\"}, {\"id\": 2, \"name\": \"trouser\"}]}");
    if (c) {
        CHECK(c->num_classes == 11 && sn_coco_column(c, 2) == 2 && sn_coco_column(c, 10) == 10 &&
                  sn_coco_column_category(c, 5) == 0,
              "ids 2 and 10: 11 columns, %d", c->num_classes);
        sn_coco_free(c);
    }
    /* Id 0 is not a COCO id: custom numbering. */
    c = load_text("zero.json", "{\"images\": [], \"categories\": [{\"id\": 0, \"name\": \"bg?\"}, "
                               "{\"id\": 1, \"name\": \"p\"}]}");
    if (c) {
        CHECK(c->num_classes == 3 && sn_coco_column(c, 0) == 1 && sn_coco_column(c, 1) == 2,
              "id 0 columns");
        sn_coco_free(c);
    }
}

/* Expect a failure with `status` whose message holds every one of the fragments. */
static void expect_error(const char *file, sn_status status, const char *a, const char *b,
                         const char *d) {
    sn_coco *c = (sn_coco *)0x1;
    sn_status st = sn_coco_load(bad(file), 0, &c);
    const char *m = sn_last_error();
    CHECK(st == status && c == NULL, "%s: status %s, want %s", file, sn_status_name(st),
          sn_status_name(status));
    CHECK(strstr(m, file) && (!a || strstr(m, a)) && (!b || strstr(m, b)) && (!d || strstr(m, d)),
          "%s: message \"%s\"", file, m);
    if (st == SN_OK) sn_coco_free(c);
}

static void test_bad_input(void) {
    expect_error("malformed.json", SN_ERR_FORMAT, "malformed JSON", ":3:", NULL);
    expect_error("missing_bbox.json", SN_ERR_FORMAT, "annotation 7", "\"bbox\"", "missing");
    expect_error("wrong_type.json", SN_ERR_FORMAT, "image 1", "\"width\"", "integer");
    expect_error("bad_bbox.json", SN_ERR_FORMAT, "annotation 3", "array of 4 numbers", NULL);
    expect_error("unknown_image.json", SN_ERR_FORMAT, "annotation 5", "image_id 99", NULL);
    expect_error("duplicate_image.json", SN_ERR_FORMAT, "duplicate image id 1", NULL, NULL);
    expect_error("duplicate_category.json", SN_ERR_FORMAT, "duplicate category id 4", NULL,
                 NULL);
    expect_error("no_images.json", SN_ERR_FORMAT, "\"images\"", NULL, NULL);
    expect_error("bad_category_name.json", SN_ERR_FORMAT, "category 1", "\"name\"", "string");
    expect_error("absent.json", SN_ERR_IO, "cannot open", NULL, NULL);
    expect_error("results_unknown_image.json", SN_ERR_FORMAT, "top level", NULL, NULL);
}

static void test_warnings(void) {
    sn_coco *c = NULL;
    sn_status st = sn_coco_load(bad("warnings.json"), 0, &c);
    CHECK(st == SN_OK, "%s", sn_last_error());
    if (st != SN_OK) return;
    /* 101 and 106: unknown categories 9 and 7, dropped. 102 ([-10,5,50,20] in 100x80) and 104
     * ([40,30,30,30] in 60x50) clipped to [0,5,40,20] and [40,30,20,20]. 103 (width 0) and
     * 105 (entirely right of its image) dropped. Kept: 102, 107 (image 10), 100, 104 (11). */
    CHECK(c->warn_count[SN_COCO_WARN_UNKNOWN_CATEGORY] == 2 &&
              c->warn_first_id[SN_COCO_WARN_UNKNOWN_CATEGORY] == 101,
          "unknown category: %" PRId64, c->warn_count[SN_COCO_WARN_UNKNOWN_CATEGORY]);
    CHECK(c->warn_count[SN_COCO_WARN_CLIPPED] == 2 &&
              c->warn_first_id[SN_COCO_WARN_CLIPPED] == 102,
          "clipped: %" PRId64, c->warn_count[SN_COCO_WARN_CLIPPED]);
    CHECK(c->warn_count[SN_COCO_WARN_EMPTY_BOX] == 2 &&
              c->warn_first_id[SN_COCO_WARN_EMPTY_BOX] == 103,
          "empty: %" PRId64, c->warn_count[SN_COCO_WARN_EMPTY_BOX]);
    CHECK(strstr(sn_coco_warning_text(SN_COCO_WARN_CLIPPED), "clipped") != NULL, "text");
    CHECK(c->num_anns == 4, "kept %d", c->num_anns);
    if (c->num_anns == 4) {
        const int64_t order[4] = {102, 107, 100, 104};
        for (int a = 0; a < 4; a++)
            CHECK(c->anns[a].id == order[a], "annotation %d is %" PRId64, a, c->anns[a].id);
        const sn_coco_ann *x = &c->anns[0], *y = &c->anns[3], *z = &c->anns[1];
        CHECK(x->box[0] == 0 && x->box[1] == 5 && x->box[2] == 40 && x->box[3] == 20 &&
                  x->file_box[0] == -10 && x->file_box[2] == 50 && x->area == 900,
              "clipped box 102");
        CHECK(y->box[0] == 40 && y->box[1] == 30 && y->box[2] == 20 && y->box[3] == 20 &&
                  y->iscrowd == 1 && y->image == 1,
              "clipped box 104 (crowd given as true)");
        CHECK(z->file_box[0] == 1.5 && z->file_box[1] == 2.25 && z->area == 10.5 &&
                  z->iscrowd == 1 && z->column == 2,
              "annotation 107");
        CHECK(c->anns[2].area == 200 && c->anns[2].iscrowd == 0,
              "area defaults to w*h: %g", c->anns[2].area);
    }
    CHECK(c->images[0].first_ann == 0 && c->images[0].num_anns == 2 &&
              c->images[1].first_ann == 2 && c->images[1].num_anns == 2,
          "image ranges");
    CHECK(sn_coco_find_image(c, 11) == 1 && sn_coco_find_image(c, 12) == -1, "find image");

    /* Image files: only a.jpg exists. */
    FILE *f = fopen(tmp("a.jpg"), "w");
    if (f) fclose(f);
    int missing = -1;
    st = sn_coco_check_images(c, g_tmp, &missing);
    CHECK(st == SN_ERR_NOT_FOUND && missing == 1 && strstr(sn_last_error(), "b.jpg") &&
              strstr(sn_last_error(), "1 of 2"),
          "missing image: %s", sn_last_error());
    f = fopen(tmp("b.jpg"), "w");
    if (f) fclose(f);
    CHECK_OK(sn_coco_check_images(c, g_tmp, &missing));
    CHECK(missing == 0, "none missing");
    remove(tmp("a.jpg"));
    remove(tmp("b.jpg"));

    /* Results files against this ground truth. */
    sn_coco_dets d = {0};
    st = sn_coco_dets_load(bad("results_unknown_image.json"), c, &d);
    CHECK(st == SN_ERR_FORMAT && strstr(sn_last_error(), "entry 2") &&
              strstr(sn_last_error(), "image_id 12") &&
              strstr(sn_last_error(), "results_unknown_image.json"),
          "results unknown image: %s", sn_last_error());
    st = sn_coco_dets_load(bad("results_unknown_image.json"), NULL, &d);
    CHECK(st == SN_OK && d.count == 3, "without ground truth, ids are not checked");
    st = sn_coco_dets_load(bad("results_missing_score.json"), c, &d);
    CHECK(st == SN_ERR_FORMAT && strstr(sn_last_error(), "entry 1") &&
              strstr(sn_last_error(), "\"score\""),
          "results without score: %s", sn_last_error());
    st = sn_coco_dets_load(bad("warnings.json"), c, &d);
    CHECK(st == SN_ERR_FORMAT && d.count == 0, "an annotation file is not a results file");
    sn_coco_dets_free(&d);
    sn_coco_free(c);
}

static void test_results_round_trip(void) {
    sn_coco *gt = NULL;
    if (sn_coco_load(bad("warnings.json"), 0, &gt) != SN_OK) return;
    sn_coco_dets d = {0};
    sn_coco_det x[] = {{10, 1, {1.25, 2.5, 30.125, 40.0625}, 0.987654321},
                       {11, 2, {-3.004, 0, 1e-3, 612.3456}, 1.5e-5},
                       {10, 2, {0.1, 0.2, 0.3, 0.4}, 0.5}};
    for (int i = 0; i < 3; i++) CHECK_OK(sn_coco_dets_append(&d, &x[i]));
    for (int i = 0; i < 200; i++) CHECK_OK(sn_coco_dets_append(&d, &x[i % 3]));
    CHECK(d.count == 203 && d.capacity >= 203, "append grows");
    CHECK_OK(sn_coco_dets_save(tmp("res.json"), d.items, d.count));
    sn_coco_dets e = {0};
    CHECK_OK(sn_coco_dets_load(tmp("res.json"), gt, &e));
    int same = e.count == d.count;
    for (size_t i = 0; same && i < d.count; i++) {
        const sn_coco_det *a = &d.items[i], *b = &e.items[i];
        same = a->image_id == b->image_id && a->category_id == b->category_id &&
               fabs(a->score - b->score) <= 1e-6 * fabs(a->score);
        for (int k = 0; k < 4; k++) same = same && fabs(a->bbox[k] - b->bbox[k]) <= 0.00051;
    }
    CHECK(same, "save -> load round trip");
    sn_coco_det nan = {10, 1, {0, 0, 1, 1}, NAN};
    CHECK(sn_coco_dets_save(tmp("nan.json"), &nan, 1) == SN_ERR_INVALID_ARG, "NaN refused");
    CHECK(sn_coco_dets_save("/nonexistent-dir/x.json", x, 1) == SN_ERR_IO, "unwritable");
    CHECK_OK(sn_coco_dets_save(tmp("empty.json"), NULL, 0));
    CHECK_OK(sn_coco_dets_load(tmp("empty.json"), gt, &e));
    CHECK(e.count == 0, "empty results");
    sn_coco_dets_free(&d);
    sn_coco_dets_free(&e);
    sn_coco_free(gt);
}

/* ------------------------------------------------------------------------------------------ */
/* Cache                                                                                       */

/* About 2.8 MB: 4000 images with 5 boxes each, and a few boxes of each warning kind. `variant`
 * changes one box, keeping the file's size. */
static void write_large(const char *path, int variant) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "{\"info\": {\"note\": \"generated\"},\n\"images\": [\n");
    for (int i = 0; i < 4000; i++)
        fprintf(f, "%s{\"id\": %d, \"file_name\": \"img_%06d.jpg\", \"width\": 640, "
                   "\"height\": 480}",
                i ? ",\n" : "", 1000 + i, i);
    fprintf(f, "],\n\"categories\": [");
    for (int k = 0; k < 12; k++)
        fprintf(f, "%s{\"id\": %d, \"name\": \"class %d\"}", k ? ", " : "", 200 + 3 * k, k);
    fprintf(f, "],\n\"annotations\": [\n");
    for (int a = 0; a < 20000; a++) {
        int img = 1000 + (a * 7919) % 4000, cat = 200 + 3 * (a % 12);
        double x = (a * 37) % 600, y = (a * 53) % 440, w = 10 + (a % 90), h = 12 + (a % 70);
        if (a % 5000 == 17) cat = 5;          /* unknown category */
        if (a % 4000 == 11) x = 620;          /* clipped (right edge) */
        if (a % 7000 == 3) w = 0;             /* empty */
        if (a == 123 && variant) y += 1;      /* same size, new content */
        fprintf(f,
                "%s{\"id\": %d, \"image_id\": %d, \"category_id\": %d, \"bbox\": [%.2f, "
                "%.2f, %.2f, %.2f], \"area\": %.3f, \"iscrowd\": %d}",
                a ? ",\n" : "", 500000 + a, img, cat, x, y, w, h, w * h * 0.7, a % 97 == 0);
    }
    fprintf(f, "]}\n");
    fclose(f);
}

static int same_set(const sn_coco *a, const sn_coco *b) {
    if (a->num_images != b->num_images || a->num_anns != b->num_anns ||
        a->num_categories != b->num_categories || a->num_classes != b->num_classes)
        return 0;
    for (int k = 0; k < SN_COCO_WARN_KINDS; k++)
        if (a->warn_count[k] != b->warn_count[k] || a->warn_first_id[k] != b->warn_first_id[k])
            return 0;
    for (int i = 0; i < a->num_images; i++) {
        const sn_coco_image *x = &a->images[i], *y = &b->images[i];
        if (x->id != y->id || strcmp(x->file_name, y->file_name) || x->width != y->width ||
            x->height != y->height || x->first_ann != y->first_ann || x->num_anns != y->num_anns)
            return 0;
    }
    for (int i = 0; i < a->num_anns; i++) {
        const sn_coco_ann *x = &a->anns[i], *y = &b->anns[i];
        if (x->id != y->id || x->image != y->image || x->category_id != y->category_id ||
            x->column != y->column || x->iscrowd != y->iscrowd || x->area != y->area ||
            memcmp(x->box, y->box, sizeof x->box) ||
            memcmp(x->file_box, y->file_box, sizeof x->box))
            return 0;
    }
    for (int k = 0; k < a->num_categories; k++)
        if (a->categories[k].id != b->categories[k].id ||
            strcmp(a->categories[k].name, b->categories[k].name) ||
            a->categories[k].column != b->categories[k].column)
            return 0;
    for (int col = 0; col < a->num_classes; col++)
        if (a->column_category[col] != b->column_category[col]) return 0;
    return 1;
}

static sn_coco *load_checked(const char *path, int flags, int want_cache, const char *what) {
    sn_coco *c = NULL;
    sn_status st = sn_coco_load(path, flags, &c);
    CHECK(st == SN_OK, "%s: %s", what, sn_last_error());
    if (st != SN_OK) return NULL;
    CHECK(c->from_cache == want_cache, "%s: from_cache %d, want %d", what, c->from_cache,
          want_cache);
    return c;
}

static int exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void damage(const char *path, long offset) {
    FILE *f = fopen(path, "r+b");
    if (!f) return;
    fseek(f, offset, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, offset, SEEK_SET);
    fputc(ch ^ 0x40, f);
    fclose(f);
}

static void test_cache(void) {
    char json[800], cache[900];
    snprintf(json, sizeof json, "%s", tmp("large.json"));
    snprintf(cache, sizeof cache, "%s.sncache", json);
    write_large(json, 0);
    struct stat sb;
    CHECK(stat(json, &sb) == 0 && sb.st_size >= (off_t)SN_COCO_CACHE_MIN_BYTES, "large file");

    sn_coco *ref = load_checked(json, SN_COCO_NO_CACHE, 0, "no cache");
    if (!ref) return;
    CHECK(!exists(cache), "SN_COCO_NO_CACHE writes nothing");
    CHECK(ref->num_images == 4000 && ref->num_categories == 12 && ref->num_classes == 13,
          "large file counts");
    CHECK(ref->warn_count[SN_COCO_WARN_UNKNOWN_CATEGORY] == 4 &&
              ref->warn_count[SN_COCO_WARN_CLIPPED] > 0 &&
              ref->warn_count[SN_COCO_WARN_EMPTY_BOX] == 3,
          "large file warnings %" PRId64 " %" PRId64 " %" PRId64,
          ref->warn_count[0], ref->warn_count[1], ref->warn_count[2]);

    sn_coco *c = load_checked(json, 0, 0, "first load");
    CHECK(exists(cache), "cache written");
    CHECK(c && same_set(ref, c), "first load = reference");
    sn_coco_free(c);
    c = load_checked(json, 0, 1, "second load");
    CHECK(c && same_set(ref, c), "cached set = parsed set (warnings included)");
    sn_coco_free(c);

    /* Stale: same size, new content and mtime. */
    write_large(json, 1);
    struct timespec ts[2] = {{0, UTIME_OMIT}, {sb.st_mtim.tv_sec + 5, 0}};
    utimensat(AT_FDCWD, json, ts, 0);
    sn_coco *fresh = load_checked(json, SN_COCO_NO_CACHE, 0, "changed file, no cache");
    c = load_checked(json, 0, 0, "stale cache");
    CHECK(c && fresh && same_set(fresh, c) && !same_set(ref, c), "stale cache not used");
    sn_coco_free(c);
    c = load_checked(json, 0, 1, "rewritten cache");
    CHECK(c && fresh && same_set(fresh, c), "cache rewritten after the change");
    sn_coco_free(c);
    /* Issue 17: a same-size edit with the mtime put back (cp -p, a checkout, a tool that keeps
     * times) is new data too: the cache is keyed on the content, not on size and mtime. */
    struct stat before;
    CHECK(stat(json, &before) == 0, "stat");
    write_large(json, 0);
    struct timespec keep[2] = {before.st_atim, before.st_mtim};
    CHECK(utimensat(AT_FDCWD, json, keep, 0) == 0 && stat(json, &sb) == 0 &&
              sb.st_size == before.st_size && sb.st_mtim.tv_sec == before.st_mtim.tv_sec &&
              sb.st_mtim.tv_nsec == before.st_mtim.tv_nsec,
          "same size and mtime");
    c = load_checked(json, 0, 0, "same size and mtime, new content");
    CHECK(c && same_set(ref, c) && fresh && !same_set(fresh, c), "the new data, not the cache's");
    sn_coco_free(c);
    write_large(json, 1);
    c = load_checked(json, 0, 0, "back to the first edit");
    sn_coco_free(c);

    /* Damaged: a flipped byte inside the payload, then a truncated file, then junk. */
    damage(cache, 64 + 50000);
    c = load_checked(json, 0, 0, "corrupt cache");
    CHECK(c && fresh && same_set(fresh, c), "corrupt cache ignored");
    sn_coco_free(c);
    c = load_checked(json, 0, 1, "cache after corruption");
    sn_coco_free(c);
    CHECK(stat(cache, &sb) == 0 && truncate(cache, sb.st_size / 2) == 0, "truncate");
    c = load_checked(json, 0, 0, "truncated cache");
    CHECK(c && fresh && same_set(fresh, c), "truncated cache ignored");
    sn_coco_free(c);
    c = load_checked(json, 0, 1, "cache after truncation");
    sn_coco_free(c);
    FILE *f = fopen(cache, "wb");
    if (f) {
        fputs("not a cache", f);
        fclose(f);
    }
    c = load_checked(json, 0, 0, "junk cache");
    sn_coco_free(c);

    /* Allocation failures while loading from the cache: clean errors, then success. */
    int failures = 0, ok = 0;
    for (long n = 1; n < 100 && !ok; n++) {
        sn_alloc_fail_after(n);
        sn_status st = sn_coco_load(json, 0, &c);
        sn_alloc_fail_after(0);
        if (st == SN_OK) {
            ok = 1;
            CHECK(c->from_cache == 1 && same_set(fresh, c), "cached load after failures");
            sn_coco_free(c);
        } else {
            failures++;
            CHECK(st == SN_ERR_OOM && c == NULL, "cached load, allocation %ld: %s", n,
                  sn_last_error());
        }
    }
    CHECK(ok && failures >= 5, "cached load: %d injected failures", failures);

    /* Unwritable: a directory where the cache would go. Loads still work, uncached. */
    remove(cache);
    CHECK(mkdir(cache, 0755) == 0, "mkdir %s", cache);
    c = load_checked(json, 0, 0, "unwritable cache");
    CHECK(c && fresh && same_set(fresh, c), "unwritable cache: set still right");
    sn_coco_free(c);
    c = load_checked(json, 0, 0, "unwritable cache, again");
    sn_coco_free(c);
    /* No temporary file left behind. */
    int strays = 0;
    DIR *dir = opendir(g_tmp);
    for (struct dirent *e = dir ? readdir(dir) : NULL; e; e = readdir(dir))
        strays += strstr(e->d_name, ".sncache.tmp") != NULL;
    if (dir) closedir(dir);
    CHECK(dir && strays == 0, "%d temporary cache files left", strays);
    rmdir(cache);

    /* A small file gets no cache. */
    c = load_text("small.json", "{\"images\": [], \"categories\": []}");
    CHECK(c && c->num_classes == 1, "empty set: background column only");
    CHECK(!exists(tmp("small.json.sncache")), "small files are not cached");
    sn_coco_free(c);
    sn_coco_free(fresh);
    sn_coco_free(ref);
    remove(json);
}

static void test_alloc_failures(void) {
    const char *files[] = {"warnings.json", "missing_bbox.json", "duplicate_image.json"};
    for (int fi = 0; fi < 3; fi++) {
        int failures = 0, done = 0;
        sn_status final = SN_OK;
        for (long n = 1; n < 200 && !done; n++) {
            sn_coco *c = (sn_coco *)0x1;
            sn_alloc_fail_after(n);
            sn_status st = sn_coco_load(bad(files[fi]), 0, &c);
            sn_alloc_fail_after(0);
            if (st != SN_ERR_OOM) {
                done = 1;
                final = st;
                sn_coco_free(st == SN_OK ? c : NULL);
            } else {
                failures++;
                CHECK(c == NULL, "%s: allocation %ld: output set", files[fi], n);
            }
        }
        CHECK(done && failures >= 3, "%s: %d injected failures", files[fi], failures);
        CHECK(final == (fi == 0 ? SN_OK : SN_ERR_FORMAT), "%s: final status %s", files[fi],
              sn_status_name(final));
    }
    /* Results: load and append. */
    sn_coco *gt = NULL;
    if (sn_coco_load(bad("warnings.json"), 0, &gt) != SN_OK) return;
    int failures = 0, done = 0;
    for (long n = 1; n < 50 && !done; n++) {
        sn_coco_dets d = {0};
        sn_alloc_fail_after(n);
        sn_status st = sn_coco_dets_load(bad("results_unknown_image.json"), NULL, &d);
        sn_alloc_fail_after(0);
        if (st == SN_OK) {
            done = 1;
            CHECK(d.count == 3, "results after failures");
        } else {
            failures++;
            CHECK(st == SN_ERR_OOM && d.count == 0, "results allocation %ld", n);
        }
        sn_coco_dets_free(&d);
    }
    CHECK(done && failures >= 2, "results: %d injected failures", failures);
    sn_coco_free(gt);
}

typedef struct {
    int bad, progress;
    char last[1200];
} probe_log;

static void probe_bad(void *user, const char *path, const char *reason) {
    probe_log *l = user;
    l->bad++;
    snprintf(l->last, sizeof l->last, "%s", reason);
    (void)path;
}

static void probe_progress(void *user, int done, int total) {
    probe_log *l = user;
    l->progress = done == total ? total : -1;
}

/* Issue 17: every image's header is read before training and checked against the annotation
 * file; --skip-bad marks what fails instead of stopping at it. */
static void test_probe_images(void) {
    char dir[600], path[800];
    snprintf(dir, sizeof dir, "%s", tmp("probe"));
    mkdir(dir, 0700);
    sn_image im;
    CHECK_OK(sn_image_alloc(&im, 8, 6, 3));
    memset(im.pixels, 90, 8 * 6 * 3);
    snprintf(path, sizeof path, "%s/a.png", dir);
    CHECK_OK(sn_image_save_png(&im, path));
    snprintf(path, sizeof path, "%s/b.png", dir);
    CHECK_OK(sn_image_save_png(&im, path));
    snprintf(path, sizeof path, "%s/c.png", dir);
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs("\x89PNG junk", f);
        fclose(f);
    }
    sn_image_free(&im);
    const char *js = "{\"images\": [{\"id\": 1, \"file_name\": \"a.png\", \"width\": 8, \"height\": 6},"
                     " {\"id\": 2, \"file_name\": \"b.png\", \"width\": 8, \"height\": 7},"
                     " {\"id\": 3, \"file_name\": \"c.png\", \"width\": 8, \"height\": 6},"
                     " {\"id\": 4, \"file_name\": \"d.png\", \"width\": 8, \"height\": 6}],"
                     " \"categories\": [{\"id\": 1, \"name\": \"x\"}]}";
    snprintf(path, sizeof path, "%s/ann.json", dir);
    f = fopen(path, "wb");
    if (f) {
        fputs(js, f);
        fclose(f);
    }
    sn_coco *c = NULL;
    CHECK_OK(sn_coco_load(path, SN_COCO_NO_CACHE, &c));
    if (c) {
        sn_status st = sn_coco_probe_images(c, dir, 0, NULL, NULL, NULL, NULL, NULL);
        CHECK(st == SN_ERR_FORMAT && strstr(sn_last_error(), "b.png: the image is 8x6 but the "
                                                              "annotation file says 8x7"),
              "size mismatch: %s", sn_last_error());
        unsigned char bad[4];
        int n_bad = -1;
        probe_log l = {0, 0, ""};
        CHECK_OK(sn_coco_probe_images(c, dir, 1, bad, &n_bad, probe_bad, probe_progress, &l));
        CHECK(n_bad == 3 && l.bad == 3 && !bad[0] && bad[1] && bad[2] && bad[3] &&
                  strstr(l.last, "d.png") && l.progress == 4,
              "skip_bad: %d %d %d%d%d%d %s %d", n_bad, l.bad, bad[0], bad[1], bad[2], bad[3],
              l.last, l.progress);
        sn_coco_free(c);
    }
    const char *files[] = {"a.png", "b.png", "c.png", "ann.json"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        remove(path);
    }
    rmdir(dir);
}

int main(void) {
    if (t_make_tmpdir(g_tmp, sizeof g_tmp, "sn_coco") != 0) return 1;
    const char *src = getenv("SN_SOURCE_DIR");
    snprintf(g_bad, sizeof g_bad, "%s/tests/data/coco_bad", src && *src ? src : ".");
    test_coco_tiny();
    test_columns();
    test_bad_input();
    test_warnings();
    test_results_round_trip();
    test_cache();
    test_probe_images();
    test_alloc_failures();
    const char *left[] = {"custom.json", "subset.json", "zero.json", "res.json", "nan.json",
                          "empty.json", "small.json"};
    for (size_t i = 0; i < sizeof left / sizeof *left; i++) remove(tmp(left[i]));
    if (rmdir(g_tmp) != 0) printf("note: %s not empty\n", g_tmp);
    return TEST_SUMMARY();
}
