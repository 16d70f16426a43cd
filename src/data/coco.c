/* COCO instances JSON reader (validation, clipping, class columns), its binary parse cache, and
 * the detection results format. See coco.h. */
#include "coco.h"
#include "data.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* Files                                                                                     */

/* The whole file, NUL-terminated. */
static sn_status read_file(const char *path, char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sn_error(SN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return sn_error(SN_ERR_IO, "%s: not a readable regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    char *b = sn_alloc(n + 1);
    if (!b) {
        fclose(f);
        return sn_error(SN_ERR_OOM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = fread(b, 1, n, f);
    int bad = ferror(f) || got != n;
    fclose(f);
    if (bad) {
        sn_free(b);
        return sn_error(SN_ERR_IO, "%s: read error", path);
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return SN_OK;
}

static sn_status parse_json(const char *path, json_t **root) {
    char *buf;
    size_t len;
    sn_status st = read_file(path, &buf, &len);
    if (st != SN_OK) return st;
    json_error_t jerr;
    *root = json_loadb(buf, len, 0, &jerr);
    sn_free(buf);
    if (!*root)
        return sn_error(SN_ERR_FORMAT, "%s:%d:%d: malformed JSON: %s", path, jerr.line,
                        jerr.column, jerr.text);
    return SN_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Typed fields with messages that name the file, the entry and the field                    */

/* Integers may be written as integral reals (some tools emit 640.0). */
static int as_int64(const json_t *v, int64_t *out) {
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 1;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
            *out = (int64_t)d;
            return 1;
        }
    }
    return 0;
}

static sn_status field_int(const char *path, const char *what, json_t *obj, const char *key,
                           int64_t lo, int64_t hi, int64_t *out) {
    json_t *v = json_object_get(obj, key);
    if (!v) return sn_error(SN_ERR_FORMAT, "%s: %s: field \"%s\" is missing", path, what, key);
    if (!as_int64(v, out))
        return sn_error(SN_ERR_FORMAT, "%s: %s: field \"%s\" must be an integer", path, what,
                        key);
    if (*out < lo || *out > hi)
        return sn_error(SN_ERR_FORMAT,
                        "%s: %s: field \"%s\" is %" PRId64 ", outside %" PRId64 "..%" PRId64,
                        path, what, key, *out, lo, hi);
    return SN_OK;
}

static sn_status field_str(const char *path, const char *what, json_t *obj, const char *key,
                           json_t **out) {
    json_t *v = json_object_get(obj, key);
    if (!v) return sn_error(SN_ERR_FORMAT, "%s: %s: field \"%s\" is missing", path, what, key);
    if (!json_is_string(v))
        return sn_error(SN_ERR_FORMAT, "%s: %s: field \"%s\" must be a string", path, what, key);
    *out = v;
    return SN_OK;
}

static sn_status field_box(const char *path, const char *what, json_t *obj, const char *key,
                           double box[4]) {
    json_t *v = json_object_get(obj, key);
    if (!v) return sn_error(SN_ERR_FORMAT, "%s: %s: field \"%s\" is missing", path, what, key);
    if (!json_is_array(v) || json_array_size(v) != 4)
        return sn_error(SN_ERR_FORMAT, "%s: %s: field \"%s\" must be an array of 4 numbers",
                        path, what, key);
    for (size_t i = 0; i < 4; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_number(e))
            return sn_error(SN_ERR_FORMAT,
                            "%s: %s: field \"%s\" must be an array of 4 numbers (element %zu "
                            "is not a number)",
                            path, what, key, i);
        box[i] = json_number_value(e);
    }
    return SN_OK;
}

static json_t *array_field(json_t *root, const char *key) {
    json_t *v = json_object_get(root, key);
    return json_is_array(v) ? v : NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Set assembly shared by the JSON and cache paths                                            */

static int cmp_idx(const void *a, const void *b) {
    const struct sn_coco_idx *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int cmp_category(const void *a, const void *b) {
    const sn_coco_category *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

void sn_coco_free(sn_coco *c) {
    if (!c) return;
    sn_free(c->images);
    sn_free(c->anns);
    sn_free(c->categories);
    sn_free(c->column_category);
    sn_free(c->image_index);
    sn_free(c->strings);
    sn_free(c);
}

/* Sorted image-id index; duplicate ids are an error. */
static sn_status build_image_index(sn_coco *c, const char *path) {
    c->image_index = sn_calloc((size_t)c->num_images + 1, sizeof *c->image_index);
    if (!c->image_index) return sn_error(SN_ERR_OOM, "%s: out of memory (image index)", path);
    for (int i = 0; i < c->num_images; i++) {
        c->image_index[i].id = c->images[i].id;
        c->image_index[i].index = i;
    }
    qsort(c->image_index, (size_t)c->num_images, sizeof *c->image_index, cmp_idx);
    for (int i = 1; i < c->num_images; i++)
        if (c->image_index[i].id == c->image_index[i - 1].id)
            return sn_error(SN_ERR_FORMAT,
                            "%s: duplicate image id %" PRId64 " (image entries %d and %d)",
                            path, c->image_index[i].id, c->image_index[i - 1].index,
                            c->image_index[i].index);
    return SN_OK;
}

/* Categories must already be sorted by id; duplicates are an error. Fills the columns. */
static sn_status build_columns(sn_coco *c, const char *path) {
    int coco_ids = c->num_categories > 0;
    for (int k = 0; k < c->num_categories; k++) {
        if (k && c->categories[k].id == c->categories[k - 1].id)
            return sn_error(SN_ERR_FORMAT, "%s: duplicate category id %d", path,
                            c->categories[k].id);
        if (c->categories[k].id < 1 || c->categories[k].id > 90) coco_ids = 0;
    }
    /* COCO numbering keeps column = id, up to the largest id in use: all of COCO (ids up to 90)
     * gets the published 91 columns, a dataset numbered 1..10 gets 11, not 91 mostly empty
     * ones (which would make its class predictor 8x larger for nothing). */
    c->num_classes =
        coco_ids ? c->categories[c->num_categories - 1].id + 1 : c->num_categories + 1;
    c->column_category = sn_calloc((size_t)c->num_classes, sizeof *c->column_category);
    if (!c->column_category) return sn_error(SN_ERR_OOM, "%s: out of memory (columns)", path);
    for (int k = 0; k < c->num_categories; k++) {
        int col = coco_ids ? c->categories[k].id : k + 1;
        c->categories[k].column = col;
        c->column_category[col] = c->categories[k].id;
    }
    return SN_OK;
}

/* Per-image ranges; annotations must be grouped by image in images' order. */
static void link_images(sn_coco *c) {
    for (int i = 0; i < c->num_images; i++) c->images[i].first_ann = c->images[i].num_anns = 0;
    for (int a = c->num_anns - 1; a >= 0; a--) {
        sn_coco_image *im = &c->images[c->anns[a].image];
        im->first_ann = a;
        im->num_anns++;
    }
    for (int a = 0; a < c->num_anns; a++) {
        sn_coco_ann *an = &c->anns[a];
        an->column = c->categories[sn_coco_find_category(c, an->category_id)].column;
    }
}

int sn_coco_find_image(const sn_coco *c, int64_t image_id) {
    int lo = 0, hi = c->num_images - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int64_t v = c->image_index[mid].id;
        if (v == image_id) return c->image_index[mid].index;
        if (v < image_id)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

int sn_coco_find_category(const sn_coco *c, int category_id) {
    int lo = 0, hi = c->num_categories - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int v = c->categories[mid].id;
        if (v == category_id) return mid;
        if (v < category_id)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

int sn_coco_column(const sn_coco *c, int category_id) {
    int k = sn_coco_find_category(c, category_id);
    return k < 0 ? -1 : c->categories[k].column;
}

int sn_coco_column_category(const sn_coco *c, int column) {
    if (column < 0 || column >= c->num_classes) return 0;
    return c->column_category[column];
}

const char *sn_coco_column_name(const sn_coco *c, int column) {
    int id = sn_coco_column_category(c, column);
    if (!id) return NULL;
    return c->categories[sn_coco_find_category(c, id)].name;
}

const char *sn_coco_warning_text(int kind) {
    switch (kind) {
    case SN_COCO_WARN_UNKNOWN_CATEGORY: return "unknown category id (annotation dropped)";
    case SN_COCO_WARN_CLIPPED: return "box extends outside its image (clipped to it)";
    case SN_COCO_WARN_EMPTY_BOX: return "box has no area after clipping (annotation dropped)";
    }
    return "unknown warning";
}

static void warn(sn_coco *c, int kind, int64_t ann_id) {
    if (c->warn_count[kind]++ == 0) c->warn_first_id[kind] = ann_id;
}

/* ---------------------------------------------------------------------------------------- */
/* JSON                                                                                      */

static size_t strings_bytes(json_t *arr, const char *key) {
    size_t n = 0, i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        json_t *s = json_object_get(e, key);
        if (json_is_string(s)) n += json_string_length(s) + 1;
    }
    return n;
}

static char *pool_put(char **pool, json_t *s) {
    size_t n = json_string_length(s);
    char *d = *pool;
    memcpy(d, json_string_value(s), n);
    d[n] = 0;
    *pool += n + 1;
    return d;
}

static sn_status parse_categories(sn_coco *c, const char *path, json_t *arr, char **pool) {
    size_t n = json_array_size(arr), i;
    if (n > INT_MAX) return sn_error(SN_ERR_FORMAT, "%s: too many categories", path);
    c->categories = sn_calloc(n + 1, sizeof *c->categories);
    if (!c->categories) return sn_error(SN_ERR_OOM, "%s: out of memory (categories)", path);
    json_t *e;
    char what[64];
    json_array_foreach(arr, i, e) {
        snprintf(what, sizeof what, "category entry %zu", i);
        if (!json_is_object(e))
            return sn_error(SN_ERR_FORMAT, "%s: %s is not an object", path, what);
        int64_t id;
        json_t *name = NULL;
        sn_status st = field_int(path, what, e, "id", INT_MIN, INT_MAX, &id);
        if (st != SN_OK) return st;
        snprintf(what, sizeof what, "category %" PRId64, id);
        if ((st = field_str(path, what, e, "name", &name)) != SN_OK) return st;
        c->categories[i].id = (int)id;
        c->categories[i].name = pool_put(pool, name);
        c->num_categories++;
    }
    qsort(c->categories, n, sizeof *c->categories, cmp_category);
    return build_columns(c, path);
}

static sn_status parse_images(sn_coco *c, const char *path, json_t *arr, char **pool) {
    size_t n = json_array_size(arr), i;
    if (n > INT_MAX) return sn_error(SN_ERR_FORMAT, "%s: too many images", path);
    c->images = sn_calloc(n + 1, sizeof *c->images);
    if (!c->images) return sn_error(SN_ERR_OOM, "%s: out of memory (images)", path);
    json_t *e;
    char what[64];
    json_array_foreach(arr, i, e) {
        snprintf(what, sizeof what, "image entry %zu", i);
        if (!json_is_object(e))
            return sn_error(SN_ERR_FORMAT, "%s: %s is not an object", path, what);
        sn_coco_image *im = &c->images[i];
        int64_t w, h;
        json_t *name = NULL;
        sn_status st = field_int(path, what, e, "id", INT64_MIN, INT64_MAX, &im->id);
        if (st != SN_OK) return st;
        snprintf(what, sizeof what, "image %" PRId64, im->id);
        if ((st = field_str(path, what, e, "file_name", &name)) != SN_OK ||
            (st = field_int(path, what, e, "width", 1, 1 << 20, &w)) != SN_OK ||
            (st = field_int(path, what, e, "height", 1, 1 << 20, &h)) != SN_OK)
            return st;
        if (json_string_length(name) == 0)
            return sn_error(SN_ERR_FORMAT, "%s: %s: field \"file_name\" is empty", path, what);
        im->file_name = pool_put(pool, name);
        im->width = (int)w;
        im->height = (int)h;
        c->num_images++;
    }
    return build_image_index(c, path);
}

/* Clip the span [start, start + len) to [0, limit); 1 if it changed. A span inside keeps its
 * values exactly (recomputing len from the end would round). */
static int clip_span(double start, double len, int limit, double *out_start, double *out_len) {
    double s = start, l = len;
    if (s < 0) {
        l = s + l;
        s = 0;
    }
    if (s + l > limit) l = limit - s;
    *out_start = s;
    *out_len = l;
    return s != start || l != len;
}

/* Validate every field first (errors), then the repairs (counted warnings). Returns 1 in
 * *keep when the annotation stays. */
static sn_status parse_ann(sn_coco *c, const char *path, size_t idx, json_t *e, sn_coco_ann *a,
                           int *keep) {
    char what[64];
    *keep = 0;
    snprintf(what, sizeof what, "annotation entry %zu", idx);
    if (!json_is_object(e)) return sn_error(SN_ERR_FORMAT, "%s: %s is not an object", path, what);
    int64_t image_id, cat;
    sn_status st = field_int(path, what, e, "id", INT64_MIN, INT64_MAX, &a->id);
    if (st != SN_OK) return st;
    snprintf(what, sizeof what, "annotation %" PRId64, a->id);
    if ((st = field_int(path, what, e, "image_id", INT64_MIN, INT64_MAX, &image_id)) != SN_OK ||
        (st = field_int(path, what, e, "category_id", INT_MIN, INT_MAX, &cat)) != SN_OK ||
        (st = field_box(path, what, e, "bbox", a->file_box)) != SN_OK)
        return st;
    json_t *v = json_object_get(e, "area");
    if (v && !json_is_number(v))
        return sn_error(SN_ERR_FORMAT, "%s: %s: field \"area\" must be a number", path, what);
    a->area = v ? json_number_value(v) : a->file_box[2] * a->file_box[3];
    v = json_object_get(e, "iscrowd");
    int64_t crowd = 0;
    if (v && json_is_boolean(v))
        crowd = json_is_true(v);
    else if (v && !as_int64(v, &crowd))
        return sn_error(SN_ERR_FORMAT, "%s: %s: field \"iscrowd\" must be 0 or 1", path, what);
    a->iscrowd = crowd != 0;
    a->category_id = (int)cat;

    a->image = sn_coco_find_image(c, image_id);
    if (a->image < 0)
        return sn_error(SN_ERR_FORMAT,
                        "%s: %s: image_id %" PRId64 " is not an image of \"images\"", path, what,
                        image_id);
    if (sn_coco_find_category(c, a->category_id) < 0) {
        warn(c, SN_COCO_WARN_UNKNOWN_CATEGORY, a->id);
        return SN_OK;
    }
    const sn_coco_image *im = &c->images[a->image];
    int clipped = clip_span(a->file_box[0], a->file_box[2], im->width, &a->box[0], &a->box[2]);
    clipped |= clip_span(a->file_box[1], a->file_box[3], im->height, &a->box[1], &a->box[3]);
    if (!(a->box[2] > 0) || !(a->box[3] > 0)) {
        warn(c, SN_COCO_WARN_EMPTY_BOX, a->id);
        return SN_OK;
    }
    if (clipped) warn(c, SN_COCO_WARN_CLIPPED, a->id);
    *keep = 1;
    return SN_OK;
}

static sn_status parse_anns(sn_coco *c, const char *path, json_t *arr) {
    size_t n = arr ? json_array_size(arr) : 0, i;
    if (n > INT_MAX) return sn_error(SN_ERR_FORMAT, "%s: too many annotations", path);
    sn_coco_ann *tmp = sn_calloc(n + 1, sizeof *tmp);
    int *count = sn_calloc((size_t)c->num_images + 1, sizeof *count);
    sn_status st = SN_OK;
    if (!tmp || !count) {
        st = sn_error(SN_ERR_OOM, "%s: out of memory (annotations)", path);
        goto out;
    }
    int kept = 0;
    json_t *e;
    json_array_foreach(arr, i, e) {
        int keep;
        if ((st = parse_ann(c, path, i, e, &tmp[kept], &keep)) != SN_OK) goto out;
        if (keep) count[tmp[kept++].image]++;
    }
    /* Group by image, stable: a counting sort keeps the file order within each image, which
     * the evaluation's tie rules depend on. */
    c->anns = sn_calloc((size_t)kept + 1, sizeof *c->anns);
    if (!c->anns) {
        st = sn_error(SN_ERR_OOM, "%s: out of memory (annotations)", path);
        goto out;
    }
    for (int k = 0, run = 0; k < c->num_images; k++) {
        int cnt = count[k];
        count[k] = run;
        run += cnt;
    }
    for (int k = 0; k < kept; k++) c->anns[count[tmp[k].image]++] = tmp[k];
    c->num_anns = kept;
    link_images(c);
out:
    sn_free(tmp);
    sn_free(count);
    return st;
}

/* The set of the file's bytes buf[0..len). */
static sn_status load_json(const char *path, const char *buf, size_t len, sn_coco **out) {
    sn_status st = SN_OK;
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, 0, &jerr);
    if (!root)
        return sn_error(SN_ERR_FORMAT, "%s:%d:%d: malformed JSON: %s", path, jerr.line,
                        jerr.column, jerr.text);
    sn_coco *c = NULL;
    json_t *images = array_field(root, "images"), *cats = array_field(root, "categories");
    json_t *anns = json_object_get(root, "annotations");
    if (!json_is_object(root)) {
        st = sn_error(SN_ERR_FORMAT, "%s: the top level is not a JSON object", path);
    } else if (!images) {
        st = sn_error(SN_ERR_FORMAT, "%s: \"images\" is missing or not an array", path);
    } else if (!cats) {
        st = sn_error(SN_ERR_FORMAT, "%s: \"categories\" is missing or not an array", path);
    } else if (anns && !json_is_array(anns)) {
        st = sn_error(SN_ERR_FORMAT, "%s: \"annotations\" is not an array", path);
    } else if (!(c = sn_calloc(1, sizeof *c))) {
        st = sn_error(SN_ERR_OOM, "%s: out of memory", path);
    } else {
        size_t sbytes = strings_bytes(images, "file_name") + strings_bytes(cats, "name");
        char *pool = c->strings = sn_alloc(sbytes + 1);
        if (!pool)
            st = sn_error(SN_ERR_OOM, "%s: out of memory (names)", path);
        else if ((st = parse_categories(c, path, cats, &pool)) == SN_OK &&
                 (st = parse_images(c, path, images, &pool)) == SN_OK)
            st = parse_anns(c, path, anns);
    }
    json_decref(root);
    if (st != SN_OK) {
        sn_coco_free(c);
        return st;
    }
    *out = c;
    return SN_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Parse cache: the loaded set in native binary form, keyed by a hash of the JSON's bytes     */

#define CACHE_MAGIC "SNCOCO\r\n"
#define CACHE_VERSION 2u /* 1 was keyed on the JSON's size and mtime */
#define CACHE_ENDIAN 0x01020304u
#define CACHE_HEADER 64

typedef struct {
    char magic[8];
    uint32_t version, endian;
    int64_t json_size;
    uint64_t json_hash, reserved;
    uint64_t payload_bytes, payload_hash, string_bytes;
} cache_header;
_Static_assert(sizeof(cache_header) == CACHE_HEADER, "the cache header is 64 bytes");

static uint64_t fnv_update(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* The cache's key: a hash of every byte of the JSON. Size and mtime missed an edit that kept
 * the size and restored the mtime (a copy with cp -p, a checkout, a tool that preserves times),
 * and the stale set was used. Four lanes of 64-bit words, each step a bijection of its lane for
 * a given word, so a change within one word always changes the hash; measured on a 160 MB
 * instances file, hashing it took 0.14 s, parsing it 10-20 s, a load from the cache 0.35-0.65 s
 * (0.25-0.6 s keyed on size and mtime). */
static uint64_t content_hash(const char *buf, size_t len) {
    const uint64_t k = 0x9e3779b97f4a7c15ULL;
    uint64_t lane[4] = {k, 2 * k + 1, 3 * k + 1, 5 * k + 1};
    size_t i = 0;
    for (; i + 32 <= len; i += 32)
        for (int j = 0; j < 4; j++) {
            uint64_t w;
            memcpy(&w, buf + i + 8 * (size_t)j, 8);
            uint64_t x = (lane[j] ^ w) * k;
            lane[j] = (x << 27) | (x >> 37);
        }
    uint64_t h = (uint64_t)len * k;
    for (int j = 0; j < 4; j++) h = (h ^ lane[j]) * 0xff51afd7ed558ccdULL, h ^= h >> 32;
    return fnv_update(h, buf + i, len - i); /* the last < 32 bytes */
}

typedef struct {
    FILE *f;
    uint64_t hash, bytes;
    int bad;
} cache_writer;

static void put(cache_writer *w, const void *p, size_t n) {
    if (w->bad) return;
    if (fwrite(p, 1, n, w->f) != n) w->bad = 1;
    w->hash = fnv_update(w->hash, p, n);
    w->bytes += n;
}

static void put_i32(cache_writer *w, int32_t v) { put(w, &v, sizeof v); }
static void put_i64(cache_writer *w, int64_t v) { put(w, &v, sizeof v); }

static void put_str(cache_writer *w, const char *s) {
    uint32_t n = (uint32_t)strlen(s);
    put(w, &n, sizeof n);
    put(w, s, n);
}

static int cache_name(const char *path, char *dst, size_t cap, const char *suffix) {
    int n = snprintf(dst, cap, "%s.sncache%s", path, suffix);
    return n > 0 && (size_t)n < cap;
}

/* Best effort: any failure leaves no cache (and no temporary file) behind and is not reported,
 * since the load itself succeeded. Written under a temporary name and renamed, so a reader
 * never sees half a file. */
static void cache_write(const char *path, const sn_coco *c, int64_t json_size, uint64_t json_hash) {
    char final[SN_PATH_MAX + 32], tmp[SN_PATH_MAX + 64], sfx[48];
    /* The set's address tells apart two threads of one process caching the same file. */
    snprintf(sfx, sizeof sfx, ".tmp%ld.%lx", (long)getpid(), (unsigned long)(uintptr_t)c);
    if (!cache_name(path, final, sizeof final, "") || !cache_name(path, tmp, sizeof tmp, sfx))
        return;
    cache_writer w = {fopen(tmp, "wb"), 0xcbf29ce484222325ULL, 0, 0};
    if (!w.f) return;
    cache_header h;
    memset(&h, 0, sizeof h);
    if (fwrite(&h, 1, CACHE_HEADER, w.f) != CACHE_HEADER) w.bad = 1;

    uint64_t sbytes = 0;
    put_i32(&w, c->num_images);
    put_i32(&w, c->num_anns);
    put_i32(&w, c->num_categories);
    put_i32(&w, 0);
    for (int k = 0; k < SN_COCO_WARN_KINDS; k++) {
        put_i64(&w, c->warn_count[k]);
        put_i64(&w, c->warn_first_id[k]);
    }
    for (int k = 0; k < c->num_categories; k++) {
        put_i32(&w, c->categories[k].id);
        put_str(&w, c->categories[k].name);
        sbytes += strlen(c->categories[k].name) + 1;
    }
    for (int i = 0; i < c->num_images; i++) {
        const sn_coco_image *im = &c->images[i];
        put_i64(&w, im->id);
        put_i32(&w, im->width);
        put_i32(&w, im->height);
        put_str(&w, im->file_name);
        sbytes += strlen(im->file_name) + 1;
    }
    for (int a = 0; a < c->num_anns; a++) {
        const sn_coco_ann *an = &c->anns[a];
        put_i64(&w, an->id);
        put_i32(&w, an->image);
        put_i32(&w, an->category_id);
        put_i32(&w, an->iscrowd);
        put_i32(&w, 0);
        put(&w, an->box, sizeof an->box);
        put(&w, an->file_box, sizeof an->file_box);
        put(&w, &an->area, sizeof an->area);
    }
    memcpy(h.magic, CACHE_MAGIC, 8);
    h.version = CACHE_VERSION;
    h.endian = CACHE_ENDIAN;
    h.json_size = json_size;
    h.json_hash = json_hash;
    h.payload_bytes = w.bytes;
    h.payload_hash = w.hash;
    h.string_bytes = sbytes;
    if (!w.bad && (fseek(w.f, 0, SEEK_SET) != 0 || fwrite(&h, 1, sizeof h, w.f) != sizeof h))
        w.bad = 1;
    if (fclose(w.f) != 0) w.bad = 1;
    if (w.bad || rename(tmp, final) != 0) remove(tmp);
}

typedef struct {
    const unsigned char *p, *end;
} cache_reader;

static int take(cache_reader *r, void *dst, size_t n) {
    if ((size_t)(r->end - r->p) < n) return 0;
    memcpy(dst, r->p, n);
    r->p += n;
    return 1;
}

static int take_i32(cache_reader *r, int32_t *v) { return take(r, v, sizeof *v); }
static int take_i64(cache_reader *r, int64_t *v) { return take(r, v, sizeof *v); }

static int take_str(cache_reader *r, char **pool, const char *pool_end, char **out) {
    uint32_t n;
    if (!take(r, &n, sizeof n) || (size_t)(r->end - r->p) < n ||
        (size_t)(pool_end - *pool) < (size_t)n + 1)
        return 0;
    memcpy(*pool, r->p, n);
    (*pool)[n] = 0;
    r->p += n;
    *out = *pool;
    *pool += n + 1;
    return 1;
}

static int finite_box(const double b[4]) {
    return isfinite(b[0]) && isfinite(b[1]) && isfinite(b[2]) && isfinite(b[3]);
}

/* Rebuild a set from the cache payload; 0 when anything is inconsistent (then the JSON is
 * parsed instead). Allocation failures are errors (-1). */
static int cache_decode(const char *path, cache_reader *r, uint64_t sbytes, sn_coco **out) {
    int32_t ni, na, nc, pad;
    if (!take_i32(r, &ni) || !take_i32(r, &na) || !take_i32(r, &nc) || !take_i32(r, &pad) ||
        ni < 0 || na < 0 || nc < 0)
        return 0;
    size_t left = (size_t)(r->end - r->p);
    if ((size_t)ni > left / 20 || (size_t)na > left / 96 || (size_t)nc > left / 8 ||
        sbytes > left)
        return 0;
    sn_coco *c = sn_calloc(1, sizeof *c);
    int ok = 0;
    if (!c || !(c->strings = sn_alloc((size_t)sbytes + 1)) ||
        !(c->images = sn_calloc((size_t)ni + 1, sizeof *c->images)) ||
        !(c->anns = sn_calloc((size_t)na + 1, sizeof *c->anns)) ||
        !(c->categories = sn_calloc((size_t)nc + 1, sizeof *c->categories))) {
        sn_error(SN_ERR_OOM, "%s: out of memory reading its cache", path);
        sn_coco_free(c);
        return -1;
    }
    char *pool = c->strings, *pool_end = c->strings + sbytes;
    for (int k = 0; k < SN_COCO_WARN_KINDS; k++)
        if (!take_i64(r, &c->warn_count[k]) || !take_i64(r, &c->warn_first_id[k])) goto out;
    for (int k = 0; k < nc; k++) {
        int32_t id;
        if (!take_i32(r, &id) || !take_str(r, &pool, pool_end, &c->categories[k].name)) goto out;
        c->categories[k].id = id;
        if (k && id <= c->categories[k - 1].id) goto out;
        c->num_categories++;
    }
    for (int i = 0; i < ni; i++) {
        sn_coco_image *im = &c->images[i];
        int32_t w, h;
        if (!take_i64(r, &im->id) || !take_i32(r, &w) || !take_i32(r, &h) ||
            !take_str(r, &pool, pool_end, &im->file_name) || w < 1 || h < 1)
            goto out;
        im->width = w;
        im->height = h;
        c->num_images++;
    }
    for (int a = 0; a < na; a++) {
        sn_coco_ann *an = &c->anns[a];
        int32_t img, cat, crowd;
        if (!take_i64(r, &an->id) || !take_i32(r, &img) || !take_i32(r, &cat) ||
            !take_i32(r, &crowd) || !take_i32(r, &pad) || !take(r, an->box, sizeof an->box) ||
            !take(r, an->file_box, sizeof an->file_box) || !take(r, &an->area, sizeof an->area))
            goto out;
        if (img < 0 || img >= ni || (a && img < c->anns[a - 1].image) || (crowd != 0 && crowd != 1))
            goto out;
        if (!finite_box(an->box) || !(an->box[2] > 0) || !(an->box[3] > 0)) goto out;
        an->image = img;
        an->category_id = cat;
        an->iscrowd = crowd;
        c->num_anns++;
    }
    if (r->p != r->end) goto out;
    sn_status st = build_columns(c, path);
    if (st == SN_OK) st = build_image_index(c, path);
    if (st == SN_OK) {
        for (int a = 0; a < na; a++)
            if (sn_coco_find_category(c, c->anns[a].category_id) < 0) goto out;
        link_images(c);
        ok = 1;
    } else if (st == SN_ERR_OOM) {
        ok = -1;
    }
out:
    if (ok == 1) {
        *out = c;
    } else {
        sn_coco_free(c);
    }
    return ok;
}

/* 1: served from the cache; 0: no usable cache; -1: out of memory (error set). */
static int cache_read(const char *path, int64_t json_size, uint64_t json_hash, sn_coco **out) {
    char name[SN_PATH_MAX + 32];
    if (!cache_name(path, name, sizeof name, "")) return 0;
    FILE *f = fopen(name, "rb");
    if (!f) return 0;
    struct stat cs;
    cache_header h;
    if (fstat(fileno(f), &cs) != 0 || !S_ISREG(cs.st_mode) || cs.st_size < CACHE_HEADER ||
        fread(&h, 1, sizeof h, f) != sizeof h || memcmp(h.magic, CACHE_MAGIC, 8) != 0 ||
        h.version != CACHE_VERSION || h.endian != CACHE_ENDIAN || h.json_size != json_size ||
        h.json_hash != json_hash ||
        h.payload_bytes != (uint64_t)cs.st_size - CACHE_HEADER) {
        fclose(f);
        return 0;
    }
    unsigned char *buf = sn_alloc((size_t)h.payload_bytes + 1);
    if (!buf) {
        fclose(f);
        sn_error(SN_ERR_OOM, "%s: out of memory reading its cache", path);
        return -1;
    }
    int ok = fread(buf, 1, (size_t)h.payload_bytes, f) == h.payload_bytes;
    fclose(f);
    if (ok) ok = fnv_update(0xcbf29ce484222325ULL, buf, (size_t)h.payload_bytes) == h.payload_hash;
    if (ok) {
        cache_reader r = {buf, buf + h.payload_bytes};
        ok = cache_decode(path, &r, h.string_bytes, out);
        if (ok == 1) (*out)->from_cache = 1;
    }
    sn_free(buf);
    return ok;
}

sn_status sn_coco_load(const char *path, int flags, sn_coco **out) {
    if (!path || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_coco_load: NULL argument");
    *out = NULL;
    char *buf;
    size_t len;
    sn_status st = read_file(path, &buf, &len);
    if (st != SN_OK) return st;
    /* The cache is keyed on the bytes just read, so a cache written below describes them. */
    const int use_cache = !(flags & SN_COCO_NO_CACHE) && (uint64_t)len >= SN_COCO_CACHE_MIN_BYTES;
    const uint64_t hash = use_cache ? content_hash(buf, len) : 0;
    if (use_cache) {
        int hit = cache_read(path, (int64_t)len, hash, out);
        if (hit != 0) {
            sn_free(buf);
            return hit == 1 ? SN_OK : SN_ERR_OOM;
        }
    }
    st = load_json(path, buf, len, out);
    sn_free(buf);
    if (st == SN_OK && use_cache) cache_write(path, *out, (int64_t)len, hash);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Image files                                                                               */

sn_status sn_coco_check_images(const sn_coco *c, const char *image_dir, int *missing) {
    int miss = 0;
    char first[2 * SN_PATH_MAX] = "", p[2 * SN_PATH_MAX];
    for (int i = 0; i < c->num_images; i++) {
        int n = snprintf(p, sizeof p, "%s/%s", image_dir, c->images[i].file_name);
        struct stat sb;
        if (n < 0 || (size_t)n >= sizeof p || stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            if (miss++ == 0) snprintf(first, sizeof first, "%s", p);
        }
    }
    if (missing) *missing = miss;
    if (miss)
        return sn_error(SN_ERR_NOT_FOUND, "%s: %d of %d image files missing (first: %s)",
                        image_dir, miss, c->num_images, first);
    return SN_OK;
}

sn_status sn_coco_probe_images(const sn_coco *c, const char *image_dir, int skip_bad,
                               unsigned char *bad, int *n_bad,
                               void (*on_bad)(void *user, const char *path, const char *reason),
                               void (*progress)(void *user, int done, int total), void *user) {
    if (!c || !image_dir) return sn_error(SN_ERR_INVALID_ARG, "sn_coco_probe_images: NULL argument");
    if (n_bad) *n_bad = 0;
    char p[2 * SN_PATH_MAX];
    for (int i = 0; i < c->num_images; i++) {
        const sn_coco_image *im = &c->images[i];
        if (bad) bad[i] = 0;
        int w = 0, h = 0;
        sn_status st;
        int n = snprintf(p, sizeof p, "%s/%s", image_dir, im->file_name);
        if (n < 0 || (size_t)n >= sizeof p)
            st = sn_error(SN_ERR_INVALID_ARG, "%s/%s: path too long", image_dir, im->file_name);
        else if ((st = sn_image_probe(p, &w, &h)) == SN_OK && (w != im->width || h != im->height))
            st = sn_error(SN_ERR_FORMAT, "%s: the image is %dx%d but the annotation file says "
                          "%dx%d", p, w, h, im->width, im->height);
        if (st != SN_OK) {
            if (!skip_bad || st == SN_ERR_OOM) return st;
            if (bad) bad[i] = 1;
            if (n_bad) (*n_bad)++;
            if (on_bad) on_bad(user, p, sn_last_error());
        }
        if (progress && ((i + 1) % 1000 == 0 || i + 1 == c->num_images))
            progress(user, i + 1, c->num_images);
    }
    return SN_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Detection results                                                                          */

static sn_status dets_reserve(sn_coco_dets *d, size_t want) {
    if (want <= d->capacity) return SN_OK;
    size_t cap = d->capacity ? d->capacity : 64;
    while (cap < want) cap *= 2;
    sn_coco_det *p = sn_calloc(cap, sizeof *p);
    if (!p) return sn_error(SN_ERR_OOM, "out of memory for %zu detections", cap);
    if (d->count) memcpy(p, d->items, d->count * sizeof *p);
    sn_free(d->items);
    d->items = p;
    d->capacity = cap;
    return SN_OK;
}

sn_status sn_coco_dets_append(sn_coco_dets *d, const sn_coco_det *det) {
    sn_status st = dets_reserve(d, d->count + 1);
    if (st != SN_OK) return st;
    d->items[d->count++] = *det;
    return SN_OK;
}

void sn_coco_dets_free(sn_coco_dets *d) {
    if (!d) return;
    sn_free(d->items);
    d->items = NULL;
    d->count = d->capacity = 0;
}

sn_status sn_coco_dets_load(const char *path, const sn_coco *gt, sn_coco_dets *out) {
    out->count = 0;
    json_t *root;
    sn_status st = parse_json(path, &root);
    if (st != SN_OK) return st;
    if (!json_is_array(root)) {
        st = sn_error(SN_ERR_FORMAT, "%s: a results file is a JSON array of detections", path);
        goto out;
    }
    if ((st = dets_reserve(out, json_array_size(root))) != SN_OK) {
        st = sn_error(st, "%s: %s", path, sn_last_error());
        goto out;
    }
    size_t i;
    json_t *e;
    char what[64];
    json_array_foreach(root, i, e) {
        snprintf(what, sizeof what, "entry %zu", i);
        if (!json_is_object(e)) {
            st = sn_error(SN_ERR_FORMAT, "%s: %s is not an object", path, what);
            goto out;
        }
        sn_coco_det *d = &out->items[i];
        int64_t cat;
        if ((st = field_int(path, what, e, "image_id", INT64_MIN, INT64_MAX, &d->image_id)) !=
                SN_OK ||
            (st = field_int(path, what, e, "category_id", INT_MIN, INT_MAX, &cat)) != SN_OK ||
            (st = field_box(path, what, e, "bbox", d->bbox)) != SN_OK)
            goto out;
        json_t *s = json_object_get(e, "score");
        if (!json_is_number(s)) {
            st = sn_error(SN_ERR_FORMAT, "%s: %s: field \"score\" is %s", path, what,
                          s ? "not a number" : "missing");
            goto out;
        }
        d->score = json_number_value(s);
        d->category_id = (int)cat;
        if (gt && sn_coco_find_image(gt, d->image_id) < 0) {
            st = sn_error(SN_ERR_FORMAT,
                          "%s: %s: image_id %" PRId64 " is not an image of the ground truth",
                          path, what, d->image_id);
            goto out;
        }
        if (gt && sn_coco_find_category(gt, d->category_id) < 0) {
            st = sn_error(SN_ERR_FORMAT,
                          "%s: %s: category_id %d is not a category of the ground truth", path,
                          what, d->category_id);
            goto out;
        }
        out->count++;
    }
out:
    json_decref(root);
    if (st != SN_OK) out->count = 0;
    return st;
}

sn_status sn_coco_dets_save(const char *path, const sn_coco_det *dets, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (!finite_box(dets[i].bbox) || !isfinite(dets[i].score))
            return sn_error(SN_ERR_INVALID_ARG,
                            "%s: detection %zu has a non-finite box or score", path, i);
    sn_save_file out; /* saved whole: an earlier results file stays until this one is */
    sn_status st = sn_save_open(path, &out);
    if (st != SN_OK) return st;
    FILE *f = out.f;
    int bad = fputs("[", f) < 0;
    for (size_t i = 0; i < count && !bad; i++) {
        const sn_coco_det *d = &dets[i];
        bad = fprintf(f,
                      "%s\n{\"image_id\": %" PRId64 ", \"category_id\": %d, \"bbox\": [%.3f, "
                      "%.3f, %.3f, %.3f], \"score\": %.7g}",
                      i ? "," : "", d->image_id, d->category_id, d->bbox[0], d->bbox[1],
                      d->bbox[2], d->bbox[3], d->score) < 0;
    }
    if (!bad) bad = fputs("\n]\n", f) < 0;
    return sn_save_close(&out, bad ? sn_error(SN_ERR_IO, "%s: write error", path) : SN_OK);
}
