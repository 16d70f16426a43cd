/* Tests of the safetensors reader and writer: round trips, every malformed-file case, atomic
 * writes and their failures, injected allocation failures. Files go to a mkdtemp directory
 * under /tmp that is removed at the end. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"
#include "safetensors.h"
#include "test.h"

static char g_dir[256];

static void pathf(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", g_dir, name);
}

static int write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t w = n ? fwrite(bytes, 1, n, fp) : 0;
    int rc = fclose(fp);
    return (w == n && rc == 0) ? 0 : -1;
}

/* Read a whole file into a malloc'd buffer. */
static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && sz > 0 && fread(b, 1, (size_t)sz, fp) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    *n = (size_t)sz;
    return b;
}

/* A raw safetensors file: 8-byte little-endian length, header text, data bytes. */
static int write_raw(const char *path, const char *header, const void *data, size_t data_len) {
    size_t hl = strlen(header);
    size_t n = 8 + hl + data_len;
    unsigned char *b = malloc(n);
    if (!b) return -1;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    if (data_len) memcpy(b + 8 + hl, data, data_len);
    int rc = write_bytes(path, b, n);
    free(b);
    return rc;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Number of entries in dir whose name contains ".tmp.". */
static int count_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static void rm_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        chmod(path, 0700);
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                char sub[1024];
                snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
                rm_tree(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int is_zeroed(const sn_st_file *f) {
    return !f->tensors && !f->n_tensors && !f->meta_keys && !f->meta_vals && !f->n_meta &&
           !f->blob;
}

/* sn_st_read(path) must fail with `want`, a message holding the path and `what`. */
static void expect_read_error(const char *path, sn_status want, const char *what,
                              const char *label) {
    sn_st_file f;
    memset(&f, 0xAB, sizeof f);
    sn_status st = sn_st_read(path, &f);
    const char *msg = sn_last_error();
    CHECK(st == want, "%s: status %s, want %s (%s)", label, sn_status_name(st),
          sn_status_name(want), msg);
    CHECK(strstr(msg, path) == msg, "%s: message does not start with the path: %s", label, msg);
    CHECK(!what || strstr(msg, what), "%s: message lacks \"%s\": %s", label, what, msg);
    CHECK(is_zeroed(&f), "%s: output not zeroed on failure", label);
    if (st == SN_OK) sn_st_free(&f);
}

static void fill(float *x, size_t n, float base) {
    for (size_t i = 0; i < n; i++) x[i] = base + (float)i * 0.25f;
}

/* ---------------------------------------------------------------------------------------- */

static void test_round_trip(void) {
    char path[512];
    pathf(path, sizeof path, "rt.safetensors");

    static float scalar[1] = {3.5f};
    static float v5[5], m23[6], k4[3 * 3 * 2 * 4], big[1000];
    fill(v5, 5, -1.0f);
    fill(m23, 6, 10.0f);
    fill(k4, 72, 0.5f);
    fill(big, 1000, -100.0f);
    sn_st_tensor t[] = {
        {"stem.weight", 4, {3, 3, 2, 4}, 72, k4},
        {"scalar", 0, {0}, 1, scalar},
        {"empty", 3, {3, 0, 2}, 0, NULL},
        {"vec", 1, {5}, 5, v5},
        {"empty1d", 1, {0}, 0, NULL},
        {"mat", 2, {2, 3}, 6, m23},
        {"head.class.conv0.bn_l3.gamma", 1, {1000}, 1000, big},
    };
    char *keys[] = {"format", "model", "block_spec"};
    char *vals[] = {"spinenet", "spinenet-49", "row \"1\"\n\ttab, \xc3\xa9t\xc3\xa9 / end"};
    sn_st_file w = {t, (int)(sizeof t / sizeof t[0]), keys, vals, 3, NULL};
    CHECK_OK(sn_st_write(path, &w));
    CHECK(count_temp_files(g_dir) == 0, "temporary file left behind");

    /* Layout: data starts at a multiple of 64; file size is exact. */
    size_t n = 0;
    unsigned char *raw = read_bytes(path, &n);
    CHECK(raw != NULL, "cannot read back %s", path);
    if (raw) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | raw[i];
        size_t data_bytes = (72 + 1 + 5 + 6 + 1000) * 4;
        CHECK((8 + hl) % 64 == 0, "data starts at %llu", (unsigned long long)(8 + hl));
        CHECK(n == 8 + hl + data_bytes, "file size %zu", n);
        CHECK(raw[8] == '{', "header does not start with '{'");
        CHECK(raw[8 + hl - 1] == ' ' || raw[8 + hl - 1] == '}', "header padding");
        free(raw);
    }

    sn_st_file r;
    CHECK_OK(sn_st_read(path, &r));
    CHECK(r.n_tensors == w.n_tensors, "n_tensors %d", r.n_tensors);
    CHECK(r.n_meta == 3, "n_meta %d", r.n_meta);
    CHECK(((uintptr_t)r.blob & 63) == 0, "blob not 64-byte aligned");
    for (int i = 0; i < r.n_tensors && i < w.n_tensors; i++) {
        const sn_st_tensor *a = &t[i], *b = &r.tensors[i];
        CHECK(strcmp(a->name, b->name) == 0, "tensor %d: name %s, want %s (order)", i, b->name,
              a->name);
        CHECK(a->ndim == b->ndim, "%s: ndim %d", a->name, b->ndim);
        for (int d = 0; d < a->ndim && d < b->ndim; d++)
            CHECK(a->shape[d] == b->shape[d], "%s: dim %d", a->name, d);
        CHECK(a->count == b->count, "%s: count %zu", a->name, b->count);
        CHECK(b->data != NULL && ((uintptr_t)b->data & 3) == 0, "%s: data misaligned", a->name);
        if (a->count && b->data)
            CHECK(memcmp(a->data, b->data, a->count * 4) == 0, "%s: data differs", a->name);
    }
    const sn_st_tensor *s = sn_st_find(&r, "scalar");
    CHECK(s && s->ndim == 0 && s->count == 1 && s->data[0] == 3.5f, "scalar");
    const sn_st_tensor *e = sn_st_find(&r, "empty");
    CHECK(e && e->count == 0 && e->ndim == 3 && e->shape[1] == 0, "empty tensor");
    CHECK(sn_st_find(&r, "nope") == NULL, "find of a missing name");
    CHECK(sn_st_find(&r, "stem.weight") == &r.tensors[0], "find stem.weight");
    const char *bs = sn_st_meta(&r, "block_spec");
    CHECK(bs && strcmp(bs, vals[2]) == 0, "metadata with escapes: %s", bs ? bs : "(null)");
    CHECK(sn_st_meta(&r, "model") && !strcmp(sn_st_meta(&r, "model"), "spinenet-49"), "model");
    CHECK(sn_st_meta(&r, "absent") == NULL, "absent metadata key");
    CHECK(sn_st_meta(&r, "stem.weight") == NULL, "tensor name is not metadata");

    /* Write what was read to another file, and over the first one: both succeed. */
    char path2[512];
    pathf(path2, sizeof path2, "rt2.safetensors");
    CHECK_OK(sn_st_write(path2, &r));
    sn_st_file r2;
    CHECK_OK(sn_st_read(path2, &r2));
    CHECK(r2.n_tensors == r.n_tensors && r2.n_meta == r.n_meta, "second round trip");
    sn_st_free(&r2);
    CHECK(is_zeroed(&r2), "sn_st_free zeroes");
    sn_st_free(&r2); /* twice is fine */

    /* Overwrite path with different contents. */
    float one[2] = {7.0f, 8.0f};
    sn_st_tensor t2 = {"only", 1, {2}, 2, one};
    sn_st_file w2 = {&t2, 1, NULL, NULL, 0, NULL};
    CHECK_OK(sn_st_write(path, &w2));
    CHECK(count_temp_files(g_dir) == 0, "temporary file left behind after overwrite");
    sn_st_free(&r);
    CHECK_OK(sn_st_read(path, &r));
    CHECK(r.n_tensors == 1 && r.n_meta == 0 && sn_st_meta(&r, "format") == NULL,
          "overwritten file");
    CHECK(r.n_tensors == 1 && r.tensors[0].data[1] == 8.0f, "overwritten data");
    sn_st_free(&r);

    sn_st_file z;
    memset(&z, 0, sizeof z);
    sn_st_free(&z);
    CHECK(sn_st_find(&z, "x") == NULL && sn_st_meta(&z, "x") == NULL, "lookups on empty file");
    unlink(path);
    unlink(path2);
}

static void test_empty_file(void) {
    char path[512];
    pathf(path, sizeof path, "empty.safetensors");
    sn_st_file w = {NULL, 0, NULL, NULL, 0, NULL};
    CHECK_OK(sn_st_write(path, &w));
    size_t n = 0;
    unsigned char *raw = read_bytes(path, &n);
    CHECK(raw && n == 64 && raw[8] == '{' && raw[9] == '}' && raw[63] == ' ',
          "empty file layout (%zu bytes)", n);
    free(raw);
    sn_st_file r;
    CHECK_OK(sn_st_read(path, &r));
    CHECK(r.n_tensors == 0 && r.n_meta == 0, "empty file contents");
    sn_st_free(&r);
    unlink(path);
}

/* Files written by hand: odd header lengths (data at an unaligned file position), gaps, tensors
 * out of order, extra keys, trailing bytes. */
static void test_handmade_valid(void) {
    char path[512];
    pathf(path, sizeof path, "hand.safetensors");
    float d[6] = {1, 2, 3, 4, 5, 6};
    const char *h = "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24],"
                    "\"extra\":1},\"a\" : {\"shape\":[1,2],\"dtype\":\"F32\","
                    "\"data_offsets\":[0,8]},\"__metadata__\":{\"k\":\"v\"},"
                    "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}  ";
    CHECK(strlen(h) % 4 != 0, "header length should be odd for this test");
    CHECK(write_raw(path, h, d, sizeof d) == 0, "write");
    sn_st_file r;
    CHECK_OK(sn_st_read(path, &r));
    CHECK(r.n_tensors == 3 && r.n_meta == 1, "counts %d %d", r.n_tensors, r.n_meta);
    CHECK(r.n_tensors == 3 && !strcmp(r.tensors[0].name, "b") && !strcmp(r.tensors[1].name, "a"),
          "header order kept");
    const sn_st_tensor *a = sn_st_find(&r, "a"), *b = sn_st_find(&r, "b");
    CHECK(a && a->count == 2 && a->data[0] == 1 && a->data[1] == 2, "a");
    CHECK(b && b->count == 2 && b->data[0] == 5 && b->data[1] == 6, "b");
    CHECK(a && ((uintptr_t)a->data & 3) == 0, "aligned despite odd header");
    CHECK(sn_st_meta(&r, "k") && !strcmp(sn_st_meta(&r, "k"), "v"), "meta");
    sn_st_free(&r);
    unlink(path);
}

static void test_malformed(void) {
    char path[512];
    pathf(path, sizeof path, "bad.safetensors");
    float d[8] = {0};

    /* Not openable / not a file. */
    char missing[512];
    pathf(missing, sizeof missing, "does-not-exist.safetensors");
    expect_read_error(missing, SN_ERR_IO, "cannot open", "missing file");
    expect_read_error(g_dir, SN_ERR_IO, "regular file", "directory");

    /* Too short. */
    CHECK(write_bytes(path, "", 0) == 0, "write");
    expect_read_error(path, SN_ERR_FORMAT, "too short", "empty file");
    CHECK(write_bytes(path, "\x02\x00\x00", 3) == 0, "write");
    expect_read_error(path, SN_ERR_FORMAT, "too short", "3-byte file");

    /* Header length over the limit / over the file. */
    unsigned char hugelen[16] = {0x00, 0xe2, 0x04, 0x10, 0, 0, 0, 0, '{', '}'}; /* 0x1004e200 */
    CHECK(write_bytes(path, hugelen, 16) == 0, "write");
    expect_read_error(path, SN_ERR_FORMAT, "exceeds", "header > 100 MB");
    unsigned char biglen[12] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    CHECK(write_bytes(path, biglen, 12) == 0, "write");
    expect_read_error(path, SN_ERR_FORMAT, "larger than", "header > file");
    unsigned char maxlen[9] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{'};
    CHECK(write_bytes(path, maxlen, 9) == 0, "write");
    expect_read_error(path, SN_ERR_FORMAT, "exceeds", "header length 2^64-1");

    /* JSON problems. */
    struct {
        const char *header;
        const char *what;
        const char *label;
    } cases[] = {
        {"", "not valid JSON", "empty header"},
        {"{\"a\": {\"dtype\": \"F32\",", "line 1", "corrupt JSON (cut)"},
        {"{\"a\":\n {\"dtype\" \"F32\"}}", "line 2", "corrupt JSON (line/column)"},
        {"{\"a\": 1,}", "not valid JSON", "trailing comma"},
        {"[1, 2]", "not a JSON object", "array header"},
        {"{\"__metadata__\": 3}", "__metadata__", "metadata not an object"},
        {"{\"__metadata__\": {\"k\": 3}}", "'k'", "metadata value not a string"},
        {"{\"__metadata__\": {\"k\": \"a\", \"k\": \"b\"}}", "duplicate", "duplicate meta key"},
        {"{\"w\": 5}", "'w'", "entry not an object"},
        {"{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", "missing \"dtype\"", "no dtype"},
        {"{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", "missing \"shape\"",
         "no shape"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", "missing \"data_offsets\"",
         "no offsets"},
        {"{\"w\": {\"dtype\": 32, \"shape\": [1], \"data_offsets\": [0, 4]}}", "dtype",
         "dtype not a string"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": 1, \"data_offsets\": [0, 4]}}", "shape",
         "shape not an array"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [\"1\"], \"data_offsets\": [0, 4]}}",
         "not an integer", "shape element a string"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1.0], \"data_offsets\": [0, 4]}}",
         "not an integer", "shape element a real"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", "data_offsets",
         "one offset"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": \"0,4\"}}",
         "data_offsets", "offsets a string"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4.0]}}",
         "data_offsets", "offset a real"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2, -3], \"data_offsets\": [0, 4]}}",
         "negative", "negative dim"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}",
         "dimensions", "9 dims"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4], "
         "\"data_offsets\": [0, 4]}}",
         "overflow", "shape product overflow"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [9223372036854775807, 2], "
         "\"data_offsets\": [0, 4]}}",
         "overflow", "shape product overflow 2"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", "needs 12",
         "offsets mismatch"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-8, 0]}}",
         "invalid data_offsets", "negative offset"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}",
         "invalid data_offsets", "begin > end"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [8], \"data_offsets\": [8, 40]}}",
         "past the end", "offsets out of the data region"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [36, 36]}}",
         "past the end", "empty tensor out of the data region"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [2, 6]}}",
         "multiple of 4", "unaligned offset"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
         "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
         "overlap", "overlapping tensors"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [16, 24]}, "
         "\"b\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [20, 20]}, "
         "\"c\": {\"dtype\": \"F32\", \"shape\": [6], \"data_offsets\": [0, 24]}}",
         "'c'", "overlap, out of order"},
        {"{\"w\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 4]}}",
         "'w' has dtype F16", "dtype F16"},
        {"{\"ok\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
         "\"x.bn\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [4, 8]}}",
         "'x.bn' has dtype BF16", "dtype BF16"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
         "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
         "duplicate", "duplicate tensor names"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}} x",
         "not valid JSON", "garbage after the header"},
        {"{\"a\\u0000b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
         "not valid JSON", "NUL in a name"},
        {"{\"\xff\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
         "not valid JSON", "invalid UTF-8 in header"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(write_raw(path, cases[i].header, d, 32) == 0, "write %s", cases[i].label);
        expect_read_error(path, SN_ERR_FORMAT, cases[i].what, cases[i].label);
    }
    unlink(path);
}

/* A valid file cut at many points always fails cleanly with SN_ERR_FORMAT. */
static void test_truncated(void) {
    char path[512], cut[512];
    pathf(path, sizeof path, "full.safetensors");
    pathf(cut, sizeof cut, "cut.safetensors");
    static float a[100], b[7];
    fill(a, 100, 1.0f);
    fill(b, 7, 2.0f);
    sn_st_tensor t[] = {{"a", 2, {10, 10}, 100, a}, {"e", 1, {0}, 0, NULL}, {"b", 1, {7}, 7, b}};
    char *k[] = {"format"}, *v[] = {"spinenet"};
    sn_st_file w = {t, 3, k, v, 1, NULL};
    CHECK_OK(sn_st_write(path, &w));
    size_t n = 0;
    unsigned char *raw = read_bytes(path, &n);
    CHECK(raw != NULL, "read");
    if (!raw) return;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | raw[i];
    size_t hend = 8 + (size_t)hl;
    size_t points[] = {0, 1, 4, 7, 8, 9, 20, hend / 2, hend - 1, hend, hend + 1, hend + 3,
                       hend + 200, hend + 400, n - 4, n - 1};
    const char *why[] = {"too short", "too short", "too short", "too short", "larger than",
                         "larger than", "larger than", "larger than", "larger than",
                         "past the end", "past the end", "past the end", "past the end",
                         "past the end", "past the end", "past the end"};
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++) {
        char label[64];
        snprintf(label, sizeof label, "cut at %zu of %zu", points[i], n);
        CHECK(write_bytes(cut, raw, points[i]) == 0, "write");
        expect_read_error(cut, SN_ERR_FORMAT, why[i], label);
    }
    /* The header itself cut short while the length still fits: not valid JSON. */
    unsigned char *h2 = malloc(n);
    if (h2) {
        memcpy(h2, raw, n);
        for (int i = 0; i < 8; i++) h2[i] = (unsigned char)(i == 0 ? 30 : 0);
        CHECK(write_bytes(cut, h2, 8 + 30) == 0, "write");
        expect_read_error(cut, SN_ERR_FORMAT, "not valid JSON", "header cut inside the JSON");
        free(h2);
    }
    free(raw);
    unlink(path);
    unlink(cut);
}

static void test_write_failures(void) {
    char path[512];
    float x[4] = {1, 2, 3, 4};
    sn_st_tensor t = {"x", 1, {4}, 4, x};
    sn_st_file w = {&t, 1, NULL, NULL, 0, NULL};

    /* Directory does not exist. */
    pathf(path, sizeof path, "no-such-dir/out.safetensors");
    sn_status st = sn_st_write(path, &w);
    CHECK(st == SN_ERR_IO, "missing directory: %s", sn_status_name(st));
    CHECK(strstr(sn_last_error(), path) == sn_last_error(), "message: %s", sn_last_error());

    /* The target is a directory: the rename fails after everything was written. */
    pathf(path, sizeof path, "a-directory");
    CHECK(mkdir(path, 0700) == 0, "mkdir");
    st = sn_st_write(path, &w);
    CHECK(st == SN_ERR_IO, "rename over a directory: %s", sn_status_name(st));
    CHECK(strstr(sn_last_error(), path) == sn_last_error(), "message: %s", sn_last_error());
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode), "directory untouched");
    CHECK(count_temp_files(g_dir) == 0, "temporary file left after failed rename");
    rmdir(path);

    /* A write that fails midway (file size limit): existing file untouched, temp removed. */
    pathf(path, sizeof path, "existing.safetensors");
    CHECK_OK(sn_st_write(path, &w));
    size_t n0 = 0;
    unsigned char *before = read_bytes(path, &n0);
    static float big[20000];
    sn_st_tensor tb = {"big", 2, {100, 200}, 20000, big};
    sn_st_file wb = {&tb, 1, NULL, NULL, 0, NULL};
    struct rlimit old;
    if (getrlimit(RLIMIT_FSIZE, &old) == 0) {
        struct rlimit lim = old;
        lim.rlim_cur = 4096;
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
            st = sn_st_write(path, &wb);
            setrlimit(RLIMIT_FSIZE, &old);
            CHECK(st == SN_ERR_IO, "write past RLIMIT_FSIZE: %s", sn_status_name(st));
            CHECK(strstr(sn_last_error(), path) == sn_last_error() &&
                      strstr(sn_last_error(), "'big'"),
                  "message: %s", sn_last_error());
            CHECK(count_temp_files(g_dir) == 0, "temporary file left after failed write");
            size_t n1 = 0;
            unsigned char *after = read_bytes(path, &n1);
            CHECK(before && after && n0 == n1 && memcmp(before, after, n0) == 0,
                  "existing file changed by a failed write");
            free(after);
        }
        signal(SIGXFSZ, prev);
    }

    /* Read-only directory (meaningless as root, who may write anyway). */
    if (geteuid() != 0) {
        char dir[512], p2[600];
        pathf(dir, sizeof dir, "ro");
        CHECK(mkdir(dir, 0700) == 0, "mkdir");
        snprintf(p2, sizeof p2, "%s/w.safetensors", dir);
        CHECK_OK(sn_st_write(p2, &w));
        CHECK(chmod(dir, 0500) == 0, "chmod");
        st = sn_st_write(p2, &wb);
        CHECK(st == SN_ERR_IO, "read-only directory: %s", sn_status_name(st));
        CHECK(strstr(sn_last_error(), p2) == sn_last_error(), "message: %s", sn_last_error());
        chmod(dir, 0700);
        size_t n1 = 0;
        unsigned char *after = read_bytes(p2, &n1);
        CHECK(before && after && n0 == n1 && memcmp(before, after, n0) == 0,
              "file in read-only directory changed");
        free(after);
        CHECK(count_temp_files(dir) == 0, "temporary file in read-only directory");
        unlink(p2);
        rmdir(dir);
    } else {
        printf("skipping the read-only directory test (running as root)\n");
    }
    free(before);
    unlink(path);

    /* Invalid arguments: nothing is created. */
    pathf(path, sizeof path, "invalid.safetensors");
    sn_st_tensor dup[2] = {{"x", 1, {4}, 4, x}, {"x", 1, {4}, 4, x}};
    sn_st_tensor badcount = {"x", 2, {2, 3}, 4, x};
    sn_st_tensor negdim = {"x", 2, {-2, -2}, 4, x};
    sn_st_tensor metaname = {"__metadata__", 1, {4}, 4, x};
    sn_st_tensor badutf = {"x\xc3(", 1, {4}, 4, x};
    sn_st_tensor nodata = {"x", 1, {4}, 4, NULL};
    sn_st_tensor manydims = {"x", 9, {1}, 1, x};
    char *mk[] = {"a", "a"}, *mv[] = {"1", "2"};
    struct {
        sn_st_file f;
        const char *what;
    } bad[] = {
        {{dup, 2, NULL, NULL, 0, NULL}, "duplicate"},
        {{&badcount, 1, NULL, NULL, 0, NULL}, "count"},
        {{&negdim, 1, NULL, NULL, 0, NULL}, "negative"},
        {{&metaname, 1, NULL, NULL, 0, NULL}, "__metadata__"},
        {{&badutf, 1, NULL, NULL, 0, NULL}, "UTF-8"},
        {{&nodata, 1, NULL, NULL, 0, NULL}, "no data"},
        {{&manydims, 1, NULL, NULL, 0, NULL}, "ndim"},
        {{&t, 1, mk, mv, 2, NULL}, "duplicate metadata"},
        {{&t, -1, NULL, NULL, 0, NULL}, "invalid"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st = sn_st_write(path, &bad[i].f);
        CHECK(st == SN_ERR_INVALID_ARG, "invalid case %zu: %s", i, sn_status_name(st));
        CHECK(strstr(sn_last_error(), path) == sn_last_error() &&
                  strstr(sn_last_error(), bad[i].what),
              "invalid case %zu: message %s", i, sn_last_error());
        CHECK(!file_exists(path), "invalid case %zu created the file", i);
    }
    CHECK(count_temp_files(g_dir) == 0, "temporary files after invalid writes");
    CHECK(sn_st_write(NULL, &w) == SN_ERR_INVALID_ARG, "NULL path");
    CHECK(sn_st_write(path, NULL) == SN_ERR_INVALID_ARG, "NULL file");
    CHECK(sn_st_read(path, NULL) == SN_ERR_INVALID_ARG, "NULL output");
}

static void test_oom(void) {
    char path[512], path2[512];
    pathf(path, sizeof path, "oom.safetensors");
    pathf(path2, sizeof path2, "oom-write.safetensors");
    float x[6] = {1, 2, 3, 4, 5, 6};
    sn_st_tensor t[] = {{"a", 1, {2}, 2, x}, {"b", 2, {2, 2}, 4, x + 2}, {"c", 0, {0}, 1, x}};
    char *k[] = {"format", "model"}, *v[] = {"spinenet", "spinenet-49"};
    sn_st_file w = {t, 3, k, v, 2, NULL};
    CHECK_OK(sn_st_write(path, &w));

    int failures = 0, done = 0;
    for (long kk = 1; kk < 1000 && !done; kk++) {
        sn_st_file r;
        sn_alloc_fail_after(kk);
        sn_status st = sn_st_read(path, &r);
        sn_alloc_fail_after(0);
        if (st == SN_OK) {
            done = 1;
            CHECK(r.n_tensors == 3 && r.n_meta == 2 && sn_st_find(&r, "b") &&
                      sn_st_find(&r, "b")->data[3] == 6.0f,
                  "read after the OOM sweep");
            sn_st_free(&r);
        } else {
            failures++;
            CHECK(st == SN_ERR_OOM, "read with allocation %ld failing: %s (%s)", kk,
                  sn_status_name(st), sn_last_error());
            CHECK(strstr(sn_last_error(), path) == sn_last_error(), "OOM message: %s",
                  sn_last_error());
            CHECK(is_zeroed(&r), "output not zeroed after OOM");
        }
    }
    CHECK(done && failures >= 8, "read OOM sweep: %d failures, done %d", failures, done);

    failures = done = 0;
    for (long kk = 1; kk < 1000 && !done; kk++) {
        sn_alloc_fail_after(kk);
        sn_status st = sn_st_write(path2, &w);
        sn_alloc_fail_after(0);
        if (st == SN_OK) {
            done = 1;
        } else {
            failures++;
            CHECK(st == SN_ERR_OOM, "write with allocation %ld failing: %s (%s)", kk,
                  sn_status_name(st), sn_last_error());
            CHECK(strstr(sn_last_error(), path2) == sn_last_error(), "OOM message: %s",
                  sn_last_error());
            CHECK(!file_exists(path2), "file created by a failed write");
            CHECK(count_temp_files(g_dir) == 0, "temporary file after OOM");
        }
    }
    CHECK(done && failures >= 1, "write OOM sweep: %d failures, done %d", failures, done);
    sn_st_file r;
    CHECK_OK(sn_st_read(path2, &r));
    CHECK(r.n_tensors == 3, "written after OOM sweep");
    sn_st_free(&r);
    unlink(path);
    unlink(path2);
}

/* A larger tensor (16 MB) through the one-read path. */
static void test_large(void) {
    char path[512];
    pathf(path, sizeof path, "large.safetensors");
    size_t n = (size_t)4 << 20;
    float *x = malloc(n * sizeof *x);
    CHECK(x != NULL, "malloc");
    if (!x) return;
    for (size_t i = 0; i < n; i++) x[i] = (float)(i % 1000) - 500.0f;
    sn_st_tensor t[] = {{"small", 1, {3}, 3, x}, {"large", 4, {4, 1024, 32, 32}, n, x}};
    sn_st_file w = {t, 2, NULL, NULL, 0, NULL};
    CHECK_OK(sn_st_write(path, &w));
    sn_st_file r;
    CHECK_OK(sn_st_read(path, &r));
    const sn_st_tensor *l = sn_st_find(&r, "large");
    CHECK(l && l->count == n && memcmp(l->data, x, n * sizeof *x) == 0, "large tensor");
    sn_st_free(&r);
    free(x);
    unlink(path);
}

/* What a save replaces (sn_save_open, under every atomic save): a symbolic link keeps linking
 * and its target gets the new file; a FIFO or a device is written into, never replaced by a
 * regular file; a folder is refused. */
static void test_save_targets(void) {
    char a[512], link[512], chain[512], dang[512], fresh[512], fifo[512], dir[512];
    float x[3] = {1, 2, 3};
    sn_st_tensor t[] = {{"x", 1, {3}, 3, x}};
    sn_st_file w = {t, 1, NULL, NULL, 0, NULL}, r;
    struct stat sb, before;
    pathf(a, sizeof a, "target.safetensors");
    pathf(link, sizeof link, "link.safetensors");
    pathf(chain, sizeof chain, "chain.safetensors");
    pathf(dang, sizeof dang, "dangling.safetensors");
    pathf(fresh, sizeof fresh, "fresh.safetensors");
    pathf(fifo, sizeof fifo, "fifo");
    pathf(dir, sizeof dir, "a_folder");

    CHECK(write_bytes(a, "old", 3) == 0 && chmod(a, 0640) == 0, "setup %s", a);
    CHECK(symlink("target.safetensors", link) == 0, "symlink %s", strerror(errno));
    CHECK(symlink("link.safetensors", chain) == 0, "symlink %s", strerror(errno));
    CHECK(stat(a, &before) == 0, "stat");
    CHECK_OK(sn_st_write(chain, &w));
    CHECK(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode), "the link was replaced");
    CHECK(lstat(chain, &sb) == 0 && S_ISLNK(sb.st_mode), "the chained link was replaced");
    CHECK(lstat(a, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_ino != before.st_ino,
          "the target was not replaced by a new file (renamed over it)");
    CHECK((sb.st_mode & 0777) == 0640, "the target's mode %o became %o", 0640,
          (unsigned)(sb.st_mode & 0777));
    CHECK_OK(sn_st_read(a, &r));
    CHECK(r.n_tensors == 1 && memcmp(r.tensors[0].data, x, sizeof x) == 0, "target content");
    sn_st_free(&r);
    /* a link to a name still to be written: the file is made there, the link stays */
    CHECK(symlink("fresh.safetensors", dang) == 0, "symlink %s", strerror(errno));
    CHECK_OK(sn_st_write(dang, &w));
    CHECK(lstat(dang, &sb) == 0 && S_ISLNK(sb.st_mode), "the dangling link was replaced");
    CHECK(lstat(fresh, &sb) == 0 && S_ISREG(sb.st_mode), "its target was not made");

    /* a FIFO with a reader gets the bytes and stays a FIFO */
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo: %s", strerror(errno));
    int rd = open(fifo, O_RDONLY | O_NONBLOCK);
    CHECK(rd >= 0, "open the FIFO: %s", strerror(errno));
    if (rd >= 0) {
        CHECK_OK(sn_st_write(fifo, &w)); /* a few hundred bytes: the pipe holds them */
        char got[4096];
        ssize_t n = read(rd, got, sizeof got - 1);
        got[n > 0 ? n : 0] = 0;
        CHECK(n > 8 && strstr(got + 8, "\"x\""), "the FIFO's reader got %zd bytes", n);
        close(rd);
    }
    const int fifo_kept = lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode);
    CHECK(fifo_kept, "the FIFO was replaced");
    CHECK(count_temp_files(g_dir) == 0, "temporary files left");

    /* /dev/null, only as root (the only user who could replace it) and only when the FIFO
     * above was kept, so that a regression fails there instead of replacing /dev/null */
    if (geteuid() == 0 && fifo_kept) {
        CHECK_OK(sn_st_write("/dev/null", &w));
        CHECK(stat("/dev/null", &sb) == 0 && S_ISCHR(sb.st_mode), "/dev/null was replaced");
        CHECK(count_temp_files("/dev") == 0, "temporary files left in /dev");
    }

    /* a folder is refused, by name */
    CHECK(mkdir(dir, 0700) == 0, "mkdir");
    sn_status s = sn_st_write(dir, &w);
    CHECK(s == SN_ERR_IO && strstr(sn_last_error(), "a_folder") &&
              strstr(sn_last_error(), "folder"),
          "a folder -> %s: %s", sn_status_name(s), sn_last_error());
    CHECK(stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode), "the folder was replaced");
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/sn_test_safetensors.XXXXXX");
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    test_round_trip();
    test_empty_file();
    test_handmade_valid();
    test_malformed();
    test_truncated();
    test_write_failures();
    test_oom();
    test_large();
    test_save_targets();
    rm_tree(g_dir);
    return TEST_SUMMARY();
}
