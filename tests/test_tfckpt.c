/* The TensorFlow checkpoint reader (src/io/tfckpt.c): real files written by TensorFlow
 * (tests/data/tf), round trips through the test writer (tfckpt_write.h) with every option, and
 * every kind of malformed input, each an error that names the file (and the tensor). */
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"
#define T_RNG_SEED 1813u
#include "test.h"
#include "testutil.h"
#include "tfckpt.h"
#include "tfckpt_write.h"

static char g_tmp[512];

static int err_has(const char *what) {
    const char *e = sn_last_error();
    return e && strstr(e, what) != NULL;
}

/* ---- real checkpoints ---------------------------------------------------------------------- */

static void test_keras_tf2(const char *data) {
    char prefix[1024];
    snprintf(prefix, sizeof prefix, "%s/tf/keras-cnn-tf2/variables", data);
    sn_tf_ckpt c;
    CHECK_OK(sn_tf_open(prefix, &c));
    CHECK(c.n_entries == 64, "%d entries", c.n_entries);
    CHECK(c.num_shards == 1, "%d shards", c.num_shards);
    const sn_tf_entry *k = sn_tf_find(&c, "layer_with_weights-7/kernel/.ATTRIBUTES/VARIABLE_VALUE");
    CHECK(k && k->dtype == SN_TF_FLOAT && k->ndim == 2 && k->shape[0] == 128 && k->shape[1] == 10,
          "dense kernel entry");
    /* Every numeric tensor reads with its CRC verified; values that Keras fixes are checked. */
    int read = 0;
    for (int i = 0; i < c.n_entries; i++) {
        const sn_tf_entry *e = &c.entries[i];
        CHECK(e->has_crc, "%s has a crc", e->name);
        if (e->dtype == SN_TF_FLOAT) {
            float *v = malloc((size_t)(e->count ? e->count : 1) * sizeof *v);
            sn_status st = sn_tf_read_f32(&c, e, v);
            CHECK(st == SN_OK, "%s: %s", e->name, sn_last_error());
            int finite = 1;
            for (int64_t j = 0; j < e->count; j++) finite &= isfinite(v[j]) != 0;
            CHECK(finite, "%s: finite", e->name);
            if (strstr(e->name, "moving_variance/.ATTR")) {
                int pos = 1;
                for (int64_t j = 0; j < e->count; j++) pos &= v[j] >= 0;
                CHECK(pos, "%s: variances >= 0", e->name);
            }
            /* Read from the shard's bytes with Python's struct, independently of this reader. */
            if (!strcmp(e->name, "layer_with_weights-3/moving_variance/.ATTRIBUTES/VARIABLE_VALUE"))
                CHECK(v[0] == 1.5888653993606567f && v[5] == 0.0f && v[19] == 10.370896339416504f,
                      "moving variance %.9g %.9g %.9g", v[0], v[5], v[19]);
            if (!strcmp(e->name, "optimizer/beta_1/.ATTRIBUTES/VARIABLE_VALUE"))
                CHECK(v[0] == 0.9f, "Adam beta_1 %g", v[0]);
            if (!strcmp(e->name, "optimizer/beta_2/.ATTRIBUTES/VARIABLE_VALUE"))
                CHECK(v[0] == 0.999f, "Adam beta_2 %g", v[0]);
            read++;
            free(v);
        } else if (e->dtype == SN_TF_INT64) {
            int64_t it = -1;
            CHECK_OK(sn_tf_read_i64(&c, e, &it));
            CHECK(it > 0, "%s = %lld", e->name, (long long)it);
            read++;
        } else {
            CHECK(e->dtype == SN_TF_STRING, "%s: dtype %d", e->name, e->dtype);
            float f;
            CHECK(sn_tf_read_f32(&c, e, &f) == SN_ERR_UNSUPPORTED && err_has(e->name) &&
                      err_has("string"),
                  "string tensor refused: %s", sn_last_error());
        }
    }
    CHECK(read == 63, "%d numeric tensors read", read);
    sn_tf_close(&c);
}

static void test_spinenet_49s_index(const char *data) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tf/spinenet-49s-tf1-retinanet/model.ckpt", data);
    sn_tf_ckpt c;
    CHECK_OK(sn_tf_open(path, &c));
    CHECK(c.n_entries == 1321, "%d entries", c.n_entries);
    const sn_tf_entry *e = sn_tf_find(&c, "spinenet/sub_policy9/scale_permuted_block_11/conv2d_2/kernel");
    CHECK(e && e->ndim == 4 && e->shape[0] == 1 && e->shape[2] == 166 && e->shape[3] == 664,
          "a 1x1 kernel of block 11");
    CHECK(sn_tf_find(&c, "global_step") != NULL, "global_step listed");
    int64_t slots = 0, elems = 0;
    for (int i = 0; i < c.n_entries; i++) {
        if (strstr(c.entries[i].name, "/Momentum")) slots++;
        if (!strstr(c.entries[i].name, "/Momentum") &&
            !strstr(c.entries[i].name, "moving_") && c.entries[i].dtype == SN_TF_FLOAT)
            elems += c.entries[i].count;
    }
    /* 11.94 M trainable parameters (README of the fixture: the published 11.9 M). */
    CHECK(elems > 11900000 && elems < 11990000, "%lld trainable elements", (long long)elems);
    CHECK(slots == 490, "%lld momentum slots", (long long)slots);
    /* The data shard was not published: reading names the missing file and the tensor. */
    float *v = malloc((size_t)e->count * sizeof *v);
    CHECK(sn_tf_read_f32(&c, e, v) == SN_ERR_IO && err_has("model.ckpt.data-00000-of-00001") &&
              err_has("scale_permuted_block_11/conv2d_2/kernel"),
          "missing shard: %s", sn_last_error());
    free(v);
    sn_tf_close(&c);
    /* The folder (its "checkpoint" file) and the .index name open the same checkpoint. */
    snprintf(path, sizeof path, "%s/tf/spinenet-49s-tf1-retinanet", data);
    CHECK_OK(sn_tf_open(path, &c));
    CHECK(c.n_entries == 1321, "by folder: %d", c.n_entries);
    sn_tf_close(&c);
    snprintf(path, sizeof path, "%s/tf/spinenet-49s-tf1-retinanet/model.ckpt.index", data);
    CHECK_OK(sn_tf_open(path, &c));
    CHECK(c.n_entries == 1321, "by .index: %d", c.n_entries);
    sn_tf_close(&c);
}

/* ---- round trips --------------------------------------------------------------------------- */

static void test_round_trip(void) {
    enum { NF = 7 * 40 + 30 };
    static float f32[NF];
    static double f64[7];
    uint16_t bf16[6] = {0x3f80, 0xbf80, 0x7f80, 0x0001, 0x4049, 0x0000};
    const float bf16_want[6] = {1.0f, -1.0f, INFINITY, 9.18355e-41f, 3.140625f, 0.0f};
    uint16_t f16[7] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0xfc00, 0x3555};
    const float f16_want[7] = {1.0f, -2.0f, 65504.0f, 5.9604645e-8f, 6.1035156e-5f, -INFINITY,
                               0.33325195f};
    int64_t i64[3] = {-5, 0, 1234567890123ll};
    int32_t i32[2] = {-7, 7};
    for (int i = 0; i < NF; i++) f32[i] = t_urand(-5.0f, 5.0f);
    for (int i = 0; i < 7; i++) f64[i] = 1.0 / (i + 1);
    /* Many names sharing long prefixes, so that keys are prefix-compressed across restarts. */
    enum { NT = 40 };
    tw_tensor t[NT + 7];
    char names[NT][64];
    for (int i = 0; i < NT; i++) {
        snprintf(names[i], sizeof names[i], "spinenet/sub_policy%d/conv2d_%d/kernel", i % 7, i);
        t[i] = (tw_tensor){names[i], SN_TF_FLOAT, 2, {5, 6}, f32 + 7 * i, 30 * sizeof(float),
                           i % 3, 0, NULL, 0};
    }
    t[NT] = (tw_tensor){"bf16", SN_TF_BFLOAT16, 2, {2, 3}, bf16, sizeof bf16, 0, 0, NULL, 0};
    t[NT + 1] = (tw_tensor){"f16", SN_TF_HALF, 1, {7}, f16, sizeof f16, 1, 0, NULL, 0};
    t[NT + 2] = (tw_tensor){"f64", SN_TF_DOUBLE, 1, {7}, f64, sizeof f64, 2, 0, NULL, 0};
    t[NT + 3] = (tw_tensor){"global_step", SN_TF_INT64, 0, {0}, i64 + 2, 8, 0, 0, NULL, 0};
    t[NT + 4] = (tw_tensor){"i64", SN_TF_INT64, 1, {3}, i64, sizeof i64, 1, 0, NULL, 0};
    t[NT + 5] = (tw_tensor){"i32", SN_TF_INT32, 1, {2}, i32, sizeof i32, 0, 0, NULL, 0};
    t[NT + 6] = (tw_tensor){"empty", SN_TF_FLOAT, 2, {0, 4}, f32, 0, 0, 0, NULL, 0};
    const int n = NT + 7;
    for (int variant = 0; variant < 6; variant++) {
        tw_opts o = {.snappy = variant & 1, .restart_interval = variant < 2 ? 16 : variant < 4 ? 1 : 3,
                     .block_size = variant < 2 ? 4096 : 64, .num_shards = 3};
        char prefix[600];
        snprintf(prefix, sizeof prefix, "%s/rt%d/model.ckpt-100", g_tmp, variant);
        char dir[600];
        snprintf(dir, sizeof dir, "%s/rt%d", g_tmp, variant);
        mkdir(dir, 0755);
        CHECK(tw_write(prefix, t, n, &o) == 0, "write %s", prefix);
        sn_tf_ckpt c;
        CHECK_OK(sn_tf_open(prefix, &c));
        CHECK(c.n_entries == n && c.num_shards == 3, "variant %d: %d entries, %d shards", variant,
              c.n_entries, c.num_shards);
        for (int i = 1; i < c.n_entries; i++)
            CHECK(strcmp(c.entries[i - 1].name, c.entries[i].name) < 0, "sorted");
        for (int i = 0; i < NT; i++) {
            const sn_tf_entry *e = sn_tf_find(&c, names[i]);
            float v[30];
            CHECK(e && e->ndim == 2 && e->shape[0] == 5 && e->shape[1] == 6 && e->shard == i % 3,
                  "variant %d: entry %s", variant, names[i]);
            if (!e) continue;
            CHECK_OK(sn_tf_read_f32(&c, e, v));
            CHECK(memcmp(v, f32 + 7 * i, sizeof v) == 0, "variant %d: %s bits", variant, names[i]);
        }
        float v[8];
        const sn_tf_entry *e = sn_tf_find(&c, "bf16");
        CHECK(e && sn_tf_read_f32(&c, e, v) == SN_OK, "bf16 read");
        for (int i = 0; e && i < 6; i++) CHECK(v[i] == bf16_want[i], "bf16[%d] = %g", i, v[i]);
        e = sn_tf_find(&c, "f16");
        CHECK(e && sn_tf_read_f32(&c, e, v) == SN_OK, "f16 read");
        for (int i = 0; e && i < 7; i++) CHECK(v[i] == f16_want[i], "f16[%d] = %.9g", i, v[i]);
        e = sn_tf_find(&c, "f64");
        CHECK(e && sn_tf_read_f32(&c, e, v) == SN_OK, "f64 read");
        for (int i = 0; e && i < 7; i++) CHECK(v[i] == (float)f64[i], "f64[%d]", i);
        int64_t q[3];
        e = sn_tf_find(&c, "i64");
        CHECK(e && sn_tf_read_i64(&c, e, q) == SN_OK && q[0] == -5 && q[2] == 1234567890123ll,
              "int64");
        e = sn_tf_find(&c, "global_step");
        CHECK(e && e->ndim == 0 && e->count == 1 && sn_tf_read_i64(&c, e, q) == SN_OK &&
                  q[0] == 1234567890123ll, "scalar int64");
        e = sn_tf_find(&c, "i32");
        CHECK(e && sn_tf_read_i64(&c, e, q) == SN_OK && q[0] == -7 && q[1] == 7, "int32");
        CHECK(e && sn_tf_read_f32(&c, e, v) == SN_ERR_UNSUPPORTED && err_has("\"i32\""),
              "int32 as float refused: %s", sn_last_error());
        e = sn_tf_find(&c, "empty");
        CHECK(e && e->count == 0 && sn_tf_read_f32(&c, e, v) == SN_OK, "empty tensor");
        CHECK(sn_tf_find(&c, "nope") == NULL, "absent name");
        sn_tf_close(&c);
    }
}

/* ---- malformed input ----------------------------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    *n = 0;
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static void spit(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b, 1, n, f);
        fclose(f);
    }
}

/* A table whose only data block has the given contents (its CRC valid), type 0 or 1. */
static void raw_table(const char *path, const void *contents, size_t n, unsigned type) {
    tw_buf out = {0};
    tw_put(&out, contents, n);
    unsigned char t = (unsigned char)type;
    tw_byte(&out, type);
    tw_fixed32(&out, sn_crc32c_mask(sn_crc32c(sn_crc32c(0, contents, n), &t, 1)));
    tw_block index = {.interval = 1};
    tw_buf h = {0};
    tw_varint(&h, 0);
    tw_varint(&h, n);
    tw_block_add(&index, "zzz", 3, h.p, h.n);
    uint64_t ioff, ilen, moff, mlen;
    tw_block meta = {.interval = 1};
    tw_block_flush(&meta, &out, 0, &moff, &mlen);
    tw_block_flush(&index, &out, 0, &ioff, &ilen);
    tw_footer(&out, moff, mlen, ioff, ilen);
    spit(path, out.p, out.n);
    free(out.p);
    free(h.p);
    tw_block_free(&index);
    tw_block_free(&meta);
}

/* Open must fail with a message naming the index and containing `what`. */
#define CHECK_OPEN_FAILS(prefix, what, label)                                                   \
    do {                                                                                        \
        sn_tf_ckpt c_;                                                                          \
        sn_status st_ = sn_tf_open(prefix, &c_);                                                \
        CHECK(st_ != SN_OK && err_has(".index") && err_has(what) && c_.entries == NULL,         \
              "%s: %s -> %s", label, sn_status_name(st_), sn_last_error());                     \
    } while (0)

static void test_malformed(void) {
    float a[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    tw_tensor t[3] = {
        {"a/kernel", SN_TF_FLOAT, 2, {3, 4}, a, sizeof a, 0, 0, NULL, 0},
        {"b/bias", SN_TF_FLOAT, 1, {4}, a, 16, 0, 0, NULL, 0},
        {"c/gamma", SN_TF_FLOAT, 1, {2}, a + 4, 8, 0, 0, NULL, 0},
    };
    char prefix[600], path[700];
    snprintf(prefix, sizeof prefix, "%s/bad", g_tmp);
    snprintf(path, sizeof path, "%s.index", prefix);
    for (int snappy = 0; snappy < 2; snappy++) {
        tw_opts o = {.snappy = snappy, .restart_interval = 2};
        CHECK(tw_write(prefix, t, 3, &o) == 0, "write");
        size_t n;
        unsigned char *good = slurp(path, &n);
        /* Every truncation fails cleanly. */
        int trunc_ok = 1;
        for (size_t k = 0; k < n; k++) {
            spit(path, good, k);
            sn_tf_ckpt c;
            if (sn_tf_open(prefix, &c) == SN_OK || !err_has(".index")) trunc_ok = 0;
        }
        CHECK(trunc_ok, "snappy %d: every truncation of the %zu-byte index is an error", snappy, n);
        /* Every flipped byte is an error, or (a byte the reader does not use: footer padding,
         * the metaindex handle) reads the same entries. */
        int flips_ok = 1, flips_err = 0;
        for (size_t k = 0; k < n; k++) {
            unsigned char *bad = malloc(n);
            memcpy(bad, good, n);
            bad[k] ^= 0x5a;
            spit(path, bad, n);
            free(bad);
            sn_tf_ckpt c;
            if (sn_tf_open(prefix, &c) != SN_OK) {
                flips_err++;
                if (!err_has(".index")) flips_ok = 0;
                continue;
            }
            const sn_tf_entry *e = sn_tf_find(&c, "a/kernel");
            if (c.n_entries != 3 || !e || e->count != 12) flips_ok = 0;
            sn_tf_close(&c);
        }
        /* Not read: the metaindex block (an empty block, 13 bytes with its trailer) and the
         * footer's metaindex handle and padding (40 bytes less the index handle). */
        CHECK(flips_ok && flips_err >= (int)n - 13 - 40, "snappy %d: flipped bytes: %d of %zu errors",
              snappy, flips_err, n);
        /* Named faults. */
        memcpy(good + n - 8, "NOTMAGIC", 8);
        spit(path, good, n);
        CHECK_OPEN_FAILS(prefix, "bad magic", "magic");
        free(good);
        CHECK(tw_write(prefix, t, 3, &o) == 0, "write");
        good = slurp(path, &n);
        good[2] ^= 1; /* inside the first data block */
        spit(path, good, n);
        CHECK_OPEN_FAILS(prefix, "CRC mismatch", "block crc");
        free(good);
    }
    spit(path, "short", 5);
    CHECK_OPEN_FAILS(prefix, "shorter than a table footer", "tiny");
    /* Footer with a bad varint. */
    {
        unsigned char f[48];
        memset(f, 0xff, 40);
        for (int i = 0; i < 8; i++) f[40 + i] = (unsigned char)(0xdb4775248b80fb57ull >> (8 * i));
        spit(path, f, 48);
        CHECK_OPEN_FAILS(prefix, "bad varint in the table footer", "footer varint");
    }
    /* Blocks with valid CRCs and bad contents. */
    {
        const unsigned char varint[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 0, 0, 0};
        raw_table(path, varint, sizeof varint, 0);
        CHECK_OPEN_FAILS(prefix, "bad varint", "entry varint");
        const unsigned char restarts[] = {0, 0, 0, 0, 200, 0, 0, 0};
        raw_table(path, restarts, sizeof restarts, 0);
        CHECK_OPEN_FAILS(prefix, "restart", "restart count");
        const unsigned char past[] = {0, 5, 100, 'a', 'b', 0, 0, 0, 0, 1, 0, 0, 0};
        raw_table(path, past, sizeof past, 0);
        CHECK_OPEN_FAILS(prefix, "runs past", "entry past the block");
        const unsigned char shared[] = {3, 1, 0, 'a', 0, 0, 0, 0, 1, 0, 0, 0};
        raw_table(path, shared, sizeof shared, 0);
        CHECK_OPEN_FAILS(prefix, "shares", "shared prefix with nothing");
        /* "" header, then "b", then "a": out of order. */
        const unsigned char order[] = {0, 0, 0, 0, 1, 0, 'b', 0, 1, 0, 'a', 0, 0, 0, 0, 1, 0, 0, 0};
        raw_table(path, order, sizeof order, 0);
        CHECK_OPEN_FAILS(prefix, "out of order", "key order");
        const unsigned char junk[] = {0x20, 'n', 'o', 't', ' ', 's', 'n', 'a', 'p', 'p', 'y'};
        raw_table(path, junk, sizeof junk, 1);
        CHECK_OPEN_FAILS(prefix, "snappy", "corrupt snappy");
        raw_table(path, junk, sizeof junk, 7);
        CHECK_OPEN_FAILS(prefix, "compression type 7", "unknown block type");
        const unsigned char nohdr[] = {0, 1, 0, 'a', 0, 0, 0, 0, 1, 0, 0, 0};
        raw_table(path, nohdr, sizeof nohdr, 0);
        CHECK_OPEN_FAILS(prefix, "no bundle header", "no header");
    }
    /* Malformed entries (protobuf). */
    struct {
        unsigned char v[24];
        size_t n;
        const char *what;
    } ent[] = {
        {{0x08, 0xff}, 2, "bad varint"},
        {{0x12, 0x09, 0x12, 0x02}, 4, "runs past"},
        {{0x08, 0x01, 0x12, 0x03, 0x12, 0x01, 0x08}, 7, "bad varint"},
        /* dims of 2^62 and 4: the count overflows */
        {{0x12, 0x10, 0x12, 0x0a, 0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40,
          0x12, 0x02, 0x08, 0x04}, 18, "overflows"},
        {{0x12, 0x0b, 0x12, 0x09, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, 14,
         "bad varint"},
        {{0x0b}, 1, "wire type"},
        {{0x32, 0x00}, 2, "wrong wire type"},
        {{0x12, 0x03, 0x18, 0x01, 0x00}, 5, "unknown rank"},
        /* float [3] with 8 bytes */
        {{0x08, 0x01, 0x12, 0x04, 0x12, 0x02, 0x08, 0x03, 0x28, 0x08}, 10, "expected 12"},
        /* shard 5 of 1 */
        {{0x08, 0x01, 0x18, 0x05, 0x28, 0x00}, 6, "shard 5"},
    };
    for (size_t k = 0; k < sizeof ent / sizeof ent[0]; k++) {
        tw_tensor b = {"bad/tensor", 0, 0, {0}, NULL, 0, 0, 0, ent[k].v, ent[k].n};
        CHECK(tw_write(prefix, &b, 1, NULL) == 0, "write");
        CHECK_OPEN_FAILS(prefix, ent[k].what, "entry");
        CHECK(err_has("bad/tensor"), "entry %zu names the tensor: %s", k, sn_last_error());
    }
    {
        unsigned char nine[64];
        size_t m = 0;
        nine[m++] = 0x12;
        nine[m++] = 36;
        for (int d = 0; d < 9; d++) {
            nine[m++] = 0x12;
            nine[m++] = 2;
            nine[m++] = 0x08;
            nine[m++] = 1;
        }
        tw_tensor b = {"deep", 0, 0, {0}, NULL, 0, 0, 0, nine, m};
        CHECK(tw_write(prefix, &b, 1, NULL) == 0, "write");
        CHECK_OPEN_FAILS(prefix, "more than 8 dimensions", "nine dims");
    }
    {
        const unsigned char big_endian[] = {0x08, 0x01, 0x10, 0x01};
        tw_opts o = {.raw_header = big_endian, .raw_header_len = 4};
        CHECK(tw_write(prefix, t, 3, &o) == 0, "write");
        CHECK_OPEN_FAILS(prefix, "big-endian", "header endianness");
    }
    /* Data faults: shard too short, a flipped byte, a missing shard, a sliced entry, a string. */
    CHECK(tw_write(prefix, t, 3, NULL) == 0, "write");
    char shard[700];
    snprintf(shard, sizeof shard, "%s.data-00000-of-00001", prefix);
    size_t n;
    unsigned char *d = slurp(shard, &n);
    sn_tf_ckpt c;
    float v[12];
    CHECK_OK(sn_tf_open(prefix, &c));
    spit(shard, d, n - 1);
    const sn_tf_entry *e = sn_tf_find(&c, "c/gamma"); /* the last bytes of the shard */
    CHECK(e && sn_tf_read_f32(&c, e, v) == SN_ERR_FORMAT && err_has("past the end of the shard") &&
              err_has("c/gamma") && err_has(".data-00000-of-00001"),
          "short shard: %s", sn_last_error());
    d[0] ^= 0x10;
    spit(shard, d, n);
    e = sn_tf_find(&c, "a/kernel");
    CHECK(e && sn_tf_read_f32(&c, e, v) == SN_ERR_FORMAT && err_has("CRC mismatch") &&
              err_has("a/kernel"),
          "tensor crc: %s", sn_last_error());
    e = sn_tf_find(&c, "b/bias");
    CHECK(e && sn_tf_read_f32(&c, e, v) == SN_OK, "an intact tensor of the same shard reads");
    unlink(shard);
    CHECK(sn_tf_read_f32(&c, e, v) == SN_ERR_IO && err_has("cannot open the data shard") &&
              err_has("b/bias"),
          "missing shard: %s", sn_last_error());
    sn_tf_close(&c);
    free(d);
    {
        tw_tensor s[2] = {{"part/kernel", SN_TF_FLOAT, 1, {4}, a, 16, 0, 2, NULL, 0},
                          {"names", SN_TF_STRING, 0, {0}, "xy", 2, 0, 0, NULL, 0}};
        CHECK(tw_write(prefix, s, 2, NULL) == 0, "write");
        CHECK_OK(sn_tf_open(prefix, &c));
        e = sn_tf_find(&c, "part/kernel");
        CHECK(e && e->n_slices == 2 && sn_tf_read_f32(&c, e, v) == SN_ERR_UNSUPPORTED &&
                  err_has("partitioned") && err_has("part/kernel"),
              "sliced: %s", sn_last_error());
        e = sn_tf_find(&c, "names");
        CHECK(e && sn_tf_read_f32(&c, e, v) == SN_ERR_UNSUPPORTED && err_has("string"),
              "string: %s", sn_last_error());
        sn_tf_close(&c);
    }
    /* A path with no index. */
    snprintf(path, sizeof path, "%s/none/model.ckpt", g_tmp);
    CHECK(sn_tf_open(path, &c) == SN_ERR_IO && err_has("none/model.ckpt.index"),
          "no index: %s", sn_last_error());
    CHECK(sn_tf_open(g_tmp, &c) == SN_ERR_IO && err_has("checkpoint"), "folder: %s",
          sn_last_error());
}

static void test_crc32c(void) {
    /* RFC 3720 test vectors for CRC32C. */
    unsigned char z[32] = {0}, o[32], inc[32];
    memset(o, 0xff, 32);
    for (int i = 0; i < 32; i++) inc[i] = (unsigned char)i;
    CHECK(sn_crc32c(0, z, 32) == 0x8a9136aau, "zeros %08x", sn_crc32c(0, z, 32));
    CHECK(sn_crc32c(0, o, 32) == 0x62a8ab43u, "ones %08x", sn_crc32c(0, o, 32));
    CHECK(sn_crc32c(0, inc, 32) == 0x46dd794eu, "incrementing %08x", sn_crc32c(0, inc, 32));
    CHECK(sn_crc32c(sn_crc32c(0, inc, 13), inc + 13, 19) == 0x46dd794eu, "continued");
    CHECK(sn_crc32c(0, "123456789", 9) == 0xe3069283u, "check value");
}

int main(void) {
    char data[512];
    t_shared_dir(data, sizeof data);
    strncat(data, "/data", sizeof data - strlen(data) - 1);
    if (t_make_tmpdir(g_tmp, sizeof g_tmp, "sn_tfckpt") != 0) return 1;
    test_crc32c();
    test_keras_tf2(data);
    test_spinenet_49s_index(data);
    test_round_trip();
    test_malformed();
    t_rm_tree(g_tmp);
    return TEST_SUMMARY();
}
