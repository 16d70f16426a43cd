/* Reading TensorFlow checkpoints (tensor bundles). See tfckpt.h. */
#include "tfckpt.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core.h"

#define TABLE_MAGIC 0xdb4775248b80fb57ull
#define FOOTER_BYTES 48
#define BLOCK_TRAILER 5

/* ---------------------------------------------------------------------------------------- */
/* CRC32C                                                                                    */

static uint32_t crc_table[8][256];
static int crc_ready;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
    __atomic_store_n(&crc_ready, 1, __ATOMIC_RELEASE);
}

uint32_t sn_crc32c(uint32_t crc, const void *data, size_t n) {
    if (!__atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE)) crc_init(); /* idempotent */
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (n >= 8) { /* slicing by 8 */
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
            crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
    return ~c;
}

uint32_t sn_crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

/* ---------------------------------------------------------------------------------------- */
/* Bounded little readers                                                                    */

typedef struct {
    const unsigned char *p, *end;
} rd;

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const unsigned char *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* A base-128 varint of at most 10 bytes; 0 when it runs past the end or is too long. */
static int rd_varint(rd *r, uint64_t *v) {
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) return 0;
        unsigned b = *r->p++;
        if (i == 9 && b > 1) return 0;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

static int rd_varint32(rd *r, uint32_t *v) {
    uint64_t x;
    if (!rd_varint(r, &x) || x > UINT32_MAX) return 0;
    *v = (uint32_t)x;
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Protobuf: the few messages of a bundle                                                    */

/* One field: its number, wire type, and its value (varint/fixed) or bytes. */
typedef struct {
    uint32_t num;
    int wire;
    uint64_t v;
    rd bytes;
} pb_field;

/* 1: a field read; 0: end of message; -1: malformed (msg says why). */
static int pb_next(rd *r, pb_field *f, const char **msg) {
    if (r->p >= r->end) return 0;
    uint64_t key;
    if (!rd_varint(r, &key)) {
        *msg = "bad varint in a field key";
        return -1;
    }
    f->num = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    if (f->num == 0 || key >> 3 > 0x1fffffff) {
        *msg = "bad field number";
        return -1;
    }
    switch (f->wire) {
    case 0:
        if (!rd_varint(r, &f->v)) {
            *msg = "bad varint";
            return -1;
        }
        return 1;
    case 1:
        if (r->end - r->p < 8) {
            *msg = "truncated fixed64 field";
            return -1;
        }
        f->v = le64(r->p);
        r->p += 8;
        return 1;
    case 5:
        if (r->end - r->p < 4) {
            *msg = "truncated fixed32 field";
            return -1;
        }
        f->v = le32(r->p);
        r->p += 4;
        return 1;
    case 2: {
        uint64_t len;
        if (!rd_varint(r, &len)) {
            *msg = "bad varint in a length";
            return -1;
        }
        if (len > (uint64_t)(r->end - r->p)) {
            *msg = "a length-delimited field runs past the end of its message";
            return -1;
        }
        f->bytes.p = r->p;
        f->bytes.end = r->p + len;
        r->p += len;
        return 1;
    }
    default:
        *msg = "unsupported wire type (groups or a corrupt key)";
        return -1;
    }
}

/* Decode a BundleEntryProto into e (name set by the caller). NULL or a message. */
static const char *decode_entry(rd r, sn_tf_entry *e) {
    pb_field f;
    const char *msg = NULL;
    int k;
    e->ndim = 0;
    e->count = 1;
    while ((k = pb_next(&r, &f, &msg)) > 0) {
        int want_wire = (f.num == 2 || f.num == 7) ? 2 : f.num == 6 ? 5 : 0;
        if (f.num <= 7 && f.wire != want_wire) return "a field has the wrong wire type";
        switch (f.num) {
        case 1:
            if (f.v > INT_MAX) return "dtype out of range";
            e->dtype = (int)f.v;
            break;
        case 2: { /* TensorShapeProto: dim = 2 {size = 1}, unknown_rank = 3 */
            rd s = f.bytes;
            pb_field g;
            int j;
            e->ndim = 0;
            e->count = 1;
            while ((j = pb_next(&s, &g, &msg)) > 0) {
                if (g.num == 3 && g.wire == 0 && g.v) return "the shape has unknown rank";
                if (g.num != 2) continue;
                if (g.wire != 2) return "a shape dimension has the wrong wire type";
                if (e->ndim == SN_TF_MAX_DIMS) return "more than 8 dimensions";
                rd d = g.bytes;
                pb_field h;
                int64_t size = 0;
                int l;
                while ((l = pb_next(&d, &h, &msg)) > 0)
                    if (h.num == 1) {
                        if (h.wire != 0) return "a dimension size has the wrong wire type";
                        size = (int64_t)h.v; /* int64 on the wire: negative is huge */
                    }
                if (l < 0) return msg;
                if (size < 0) return "a dimension is negative (unknown)";
                if (size > 0 && e->count > INT64_MAX / size) return "the element count overflows";
                e->shape[e->ndim++] = size;
                e->count *= size;
            }
            if (j < 0) return msg;
            break;
        }
        case 3:
            if (f.v > INT_MAX) return "shard_id out of range";
            e->shard = (int)f.v;
            break;
        case 4:
            if (f.v > (uint64_t)INT64_MAX) return "offset out of range";
            e->offset = (int64_t)f.v;
            break;
        case 5:
            if (f.v > (uint64_t)INT64_MAX) return "size out of range";
            e->size = (int64_t)f.v;
            break;
        case 6:
            e->crc = (uint32_t)f.v;
            e->has_crc = 1;
            break;
        case 7:
            e->n_slices++;
            break;
        default:
            break; /* unknown fields are skipped, as protobuf does */
        }
    }
    if (k < 0) return msg;
    return NULL;
}

/* BundleHeaderProto: num_shards = 1, endianness = 2 (0 little), version = 3 {producer = 1}. */
static const char *decode_header(rd r, sn_tf_ckpt *c) {
    pb_field f;
    const char *msg = NULL;
    int k;
    c->num_shards = 1; /* proto3 default 0 is read as one shard below */
    int shards_set = 0;
    while ((k = pb_next(&r, &f, &msg)) > 0) {
        if (f.num == 1 && f.wire == 0) {
            if (f.v > 100000) return "num_shards out of range";
            c->num_shards = (int)f.v;
            shards_set = 1;
        } else if (f.num == 2 && f.wire == 0) {
            if (f.v != 0) return "the checkpoint is big-endian (not supported)";
        } else if (f.num == 3 && f.wire == 2) {
            rd v = f.bytes;
            pb_field g;
            int j;
            while ((j = pb_next(&v, &g, &msg)) > 0)
                if (g.num == 1 && g.wire == 0) c->version_producer = (int)(g.v & 0x7fffffff);
            if (j < 0) return msg;
        } else if (f.num <= 3) {
            return "a header field has the wrong wire type";
        }
    }
    if (k < 0) return msg;
    if (!shards_set || c->num_shards == 0) c->num_shards = 1;
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* The table                                                                                 */

typedef struct {
    const char *path;
    const unsigned char *file;
    size_t size;
} table;

/* A block's contents (decompressed into *owned when snappy) after checking its trailer. */
static sn_status read_block(const table *t, uint64_t off, uint64_t len, const char *what,
                            const unsigned char **data, size_t *n, char **owned) {
    *owned = NULL;
    if (off > t->size || len > t->size - off || t->size - off - len < BLOCK_TRAILER)
        return sn_error(SN_ERR_FORMAT,
                        "%s: the %s block (offset %" PRIu64 ", %" PRIu64 " bytes) runs past the "
                        "end of the file (%zu bytes): truncated or corrupt",
                        t->path, what, off, len, t->size);
    const unsigned char *b = t->file + off;
    unsigned type = b[len];
    uint32_t stored = le32(b + len + 1);
    uint32_t crc = sn_crc32c(sn_crc32c(0, b, (size_t)len), b + len, 1);
    if (sn_crc32c_mask(crc) != stored)
        return sn_error(SN_ERR_FORMAT,
                        "%s: CRC mismatch in the %s block at offset %" PRIu64 " (stored %08x, "
                        "computed %08x): the file is corrupt",
                        t->path, what, off, stored, sn_crc32c_mask(crc));
    if (type == 0) {
        *data = b;
        *n = (size_t)len;
        return SN_OK;
    }
    if (type != 1)
        return sn_error(SN_ERR_FORMAT, "%s: the %s block at offset %" PRIu64
                        " has compression type %u (0 raw and 1 snappy are known)",
                        t->path, what, off, type);
    size_t out_len;
    if (snappy_uncompressed_length((const char *)b, (size_t)len, &out_len) != SNAPPY_OK)
        return sn_error(SN_ERR_FORMAT, "%s: the snappy-compressed %s block at offset %" PRIu64
                        " is corrupt (bad length header)", t->path, what, off);
    if (out_len > SN_TF_MAX_BLOCK_BYTES)
        return sn_error(SN_ERR_FORMAT, "%s: the %s block at offset %" PRIu64 " claims %zu bytes "
                        "uncompressed (more than the %zu accepted)", t->path, what, off, out_len,
                        SN_TF_MAX_BLOCK_BYTES);
    char *buf = sn_alloc(out_len ? out_len : 1);
    if (!buf) return sn_error(SN_ERR_OOM, "%s: out of memory (%zu bytes)", t->path, out_len);
    size_t got = out_len;
    if (snappy_uncompress((const char *)b, (size_t)len, buf, &got) != SNAPPY_OK || got != out_len) {
        sn_free(buf);
        return sn_error(SN_ERR_FORMAT, "%s: the snappy-compressed %s block at offset %" PRIu64
                        " does not decompress: the file is corrupt", t->path, what, off);
    }
    *owned = buf;
    *data = (const unsigned char *)buf;
    *n = got;
    return SN_OK;
}

/* Walk a block's entries: calls fn(key, klen, value, vlen, ctx) for each, in order. Keys are
 * rebuilt from the shared prefix into *keybuf (grown as needed). */
typedef sn_status (*entry_fn)(const char *key, size_t klen, rd value, void *ctx);

static sn_status walk_block(const table *t, const char *what, uint64_t off,
                            const unsigned char *b, size_t n, char **keybuf, size_t *keycap,
                            size_t *keylen, entry_fn fn, void *ctx) {
    if (n < 4)
        return sn_error(SN_ERR_FORMAT, "%s: the %s block at offset %" PRIu64 " is too short "
                        "(%zu bytes) for its restart count", t->path, what, off, n);
    uint32_t nrestarts = le32(b + n - 4);
    if (nrestarts > (n - 4) / 4)
        return sn_error(SN_ERR_FORMAT, "%s: the %s block at offset %" PRIu64 " claims %" PRIu32
                        " restart points, more than fit in its %zu bytes", t->path, what, off,
                        nrestarts, n);
    size_t limit = n - 4 - 4 * (size_t)nrestarts;
    for (uint32_t i = 0; i < nrestarts; i++)
        if (le32(b + limit + 4 * (size_t)i) > limit)
            return sn_error(SN_ERR_FORMAT, "%s: a restart point of the %s block at offset %"
                            PRIu64 " is past its entries", t->path, what, off);
    rd r = {b, b + limit};
    size_t prev = 0; /* key length of the previous entry of this block */
    int first = 1;
    while (r.p < r.end) {
        uint32_t shared, nonshared, vlen;
        if (!rd_varint32(&r, &shared) || !rd_varint32(&r, &nonshared) || !rd_varint32(&r, &vlen))
            return sn_error(SN_ERR_FORMAT, "%s: bad varint in an entry of the %s block at offset %"
                            PRIu64, t->path, what, off);
        if ((first && shared) || shared > prev)
            return sn_error(SN_ERR_FORMAT, "%s: an entry of the %s block at offset %" PRIu64
                            " shares %" PRIu32 " key bytes with a previous key of %zu bytes",
                            t->path, what, off, shared, first ? (size_t)0 : prev);
        if ((uint64_t)nonshared + vlen > (uint64_t)(r.end - r.p))
            return sn_error(SN_ERR_FORMAT, "%s: an entry of the %s block at offset %" PRIu64
                            " runs past the block's end", t->path, what, off);
        size_t klen = (size_t)shared + nonshared;
        if (klen + 1 > *keycap) {
            size_t cap = (klen + 1) * 2;
            char *nb = realloc(*keybuf, cap);
            if (!nb) return sn_error(SN_ERR_OOM, "%s: out of memory", t->path);
            *keybuf = nb;
            *keycap = cap;
        }
        char *kb = *keybuf;
        memcpy(kb + shared, r.p, nonshared);
        r.p += nonshared;
        kb[klen] = '\0';
        rd value = {r.p, r.p + vlen};
        r.p += vlen;
        prev = klen;
        first = 0;
        *keylen = klen;
        sn_status st = fn(kb, klen, value, ctx);
        if (st != SN_OK) return st;
    }
    return SN_OK;
}

typedef struct {
    const table *t;
    sn_tf_ckpt *c;
    int cap;
    int have_header;
    char *last;      /* previous key, for the order check */
    size_t last_len;
    int have_last;
} load_ctx;

static int key_cmp(const char *a, size_t an, const char *b, size_t bn) {
    size_t m = an < bn ? an : bn;
    int d = memcmp(a, b, m);
    if (d) return d;
    return an < bn ? -1 : an > bn;
}

static sn_status on_data_entry(const char *key, size_t klen, rd value, void *vctx) {
    load_ctx *x = vctx;
    const char *path = x->t->path;
    if (x->have_last && key_cmp(x->last, x->last_len, key, klen) >= 0)
        return sn_error(SN_ERR_FORMAT, "%s: keys out of order at \"%.*s\": the table is corrupt",
                        path, (int)(klen > 200 ? 200 : klen), key);
    char *nl = realloc(x->last, klen + 1);
    if (!nl) return sn_error(SN_ERR_OOM, "%s: out of memory", path);
    memcpy(nl, key, klen);
    nl[klen] = '\0';
    x->last = nl;
    x->last_len = klen;
    x->have_last = 1;
    if (memchr(key, '\0', klen))
        return sn_error(SN_ERR_FORMAT, "%s: a tensor name contains a NUL byte", path);
    if (klen == 0) {
        const char *msg = decode_header(value, x->c);
        if (msg) return sn_error(SN_ERR_FORMAT, "%s: the bundle header is malformed: %s", path, msg);
        x->have_header = 1;
        return SN_OK;
    }
    sn_tf_ckpt *c = x->c;
    if (c->n_entries == x->cap) {
        if (x->cap > INT_MAX / 2 - 1)
            return sn_error(SN_ERR_FORMAT, "%s: too many entries", path);
        int cap = x->cap ? 2 * x->cap : 256;
        sn_tf_entry *ne = realloc(c->entries, (size_t)cap * sizeof *ne);
        if (!ne) return sn_error(SN_ERR_OOM, "%s: out of memory", path);
        c->entries = ne;
        x->cap = cap;
    }
    sn_tf_entry *e = &c->entries[c->n_entries];
    memset(e, 0, sizeof *e);
    e->name = malloc(klen + 1);
    if (!e->name) return sn_error(SN_ERR_OOM, "%s: out of memory", path);
    memcpy(e->name, key, klen + 1);
    c->n_entries++;
    const char *msg = decode_entry(value, e);
    if (msg) return sn_error(SN_ERR_FORMAT, "%s: the entry of tensor \"%s\" is malformed: %s",
                             path, e->name, msg);
    return SN_OK;
}

typedef struct {
    const table *t;
    load_ctx *data;
    char **keybuf;
    size_t *keycap;
} index_ctx;

static sn_status on_index_entry(const char *key, size_t klen, rd value, void *vctx) {
    (void)key;
    (void)klen;
    index_ctx *x = vctx;
    uint64_t off, len;
    if (!rd_varint(&value, &off) || !rd_varint(&value, &len))
        return sn_error(SN_ERR_FORMAT, "%s: bad varint in a block handle of the index block",
                        x->t->path);
    const unsigned char *b;
    size_t n;
    char *owned;
    sn_status st = read_block(x->t, off, len, "data", &b, &n, &owned);
    if (st != SN_OK) return st;
    /* Keys in a data block never share a prefix with the previous block's keys. */
    char *kb = NULL;
    size_t kcap = 0, klen2 = 0;
    st = walk_block(x->t, "data", off, b, n, &kb, &kcap, &klen2, on_data_entry, x->data);
    free(kb);
    sn_free(owned);
    return st;
}

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp(((const sn_tf_entry *)a)->name, ((const sn_tf_entry *)b)->name);
}

static sn_status parse_table(const table *t, sn_tf_ckpt *c) {
    if (t->size < FOOTER_BYTES)
        return sn_error(SN_ERR_FORMAT, "%s: %zu bytes, shorter than a table footer (48 bytes): "
                        "not a TensorFlow checkpoint index, or truncated", t->path, t->size);
    const unsigned char *foot = t->file + t->size - FOOTER_BYTES;
    if (le64(foot + 40) != TABLE_MAGIC)
        return sn_error(SN_ERR_FORMAT, "%s: bad magic number at the end of the file: not a "
                        "TensorFlow checkpoint index (a LevelDB table), or truncated", t->path);
    rd r = {foot, foot + 40};
    uint64_t moff, mlen, ioff, ilen;
    if (!rd_varint(&r, &moff) || !rd_varint(&r, &mlen) || !rd_varint(&r, &ioff) ||
        !rd_varint(&r, &ilen))
        return sn_error(SN_ERR_FORMAT, "%s: bad varint in the table footer", t->path);
    const unsigned char *b;
    size_t n;
    char *owned;
    sn_status st = read_block(t, ioff, ilen, "index", &b, &n, &owned);
    if (st != SN_OK) return st;
    load_ctx lc = {t, c, 0, 0, NULL, 0, 0};
    char *kb = NULL;
    size_t kcap = 0, klen = 0;
    index_ctx ic = {t, &lc, &kb, &kcap};
    st = walk_block(t, "index", ioff, b, n, &kb, &kcap, &klen, on_index_entry, &ic);
    free(kb);
    free(lc.last);
    sn_free(owned);
    if (st != SN_OK) return st;
    if (!lc.have_header)
        return sn_error(SN_ERR_FORMAT, "%s: no bundle header (the empty key): not a tensor "
                        "bundle index", t->path);
    if (c->n_entries > 1) qsort(c->entries, (size_t)c->n_entries, sizeof *c->entries, cmp_entry_name);
    for (int i = 0; i < c->n_entries; i++) {
        const sn_tf_entry *e = &c->entries[i];
        if (e->n_slices) continue;
        if (e->shard < 0 || e->shard >= c->num_shards)
            return sn_error(SN_ERR_FORMAT, "%s: tensor \"%s\" is in shard %d, but the header "
                            "says %d shard(s)", t->path, e->name, e->shard, c->num_shards);
        if (e->offset > INT64_MAX - e->size)
            return sn_error(SN_ERR_FORMAT, "%s: tensor \"%s\" has offset + size out of range",
                            t->path, e->name);
        int es = sn_tf_dtype_size(e->dtype);
        if (es && (e->count > INT64_MAX / es || e->size != e->count * es))
            return sn_error(SN_ERR_FORMAT, "%s: tensor \"%s\" (%s, %" PRId64 " elements) has %"
                            PRId64 " bytes, expected %" PRId64, t->path, e->name,
                            sn_tf_dtype_name(e->dtype), e->count, e->size,
                            e->count > INT64_MAX / es ? (int64_t)-1 : e->count * es);
    }
    return SN_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Opening                                                                                   */

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && !S_ISDIR(sb.st_mode);
}

/* The prefix named by a folder: its "checkpoint" file's model_checkpoint_path (relative to the
 * folder unless absolute), or variables/variables of a SavedModel. */
static sn_status prefix_of_dir(const char *dir, char **out) {
    size_t dl = strlen(dir);
    char *p = malloc(dl + 64);
    if (!p) return sn_error(SN_ERR_OOM, "out of memory");
    snprintf(p, dl + 64, "%s/checkpoint", dir);
    if (is_file(p)) {
        char *text;
        size_t n;
        sn_status st = sn_read_file(p, &text, &n);
        if (st != SN_OK) {
            free(p);
            return st;
        }
        const char *k = strstr(text, "model_checkpoint_path:");
        const char *q1 = k ? strchr(k, '"') : NULL;
        const char *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
        if (!q2 || q2 == q1 + 1) {
            sn_free(text);
            sn_status e = sn_error(SN_ERR_FORMAT, "%s: no model_checkpoint_path \"...\" line", p);
            free(p);
            return e;
        }
        size_t nl = (size_t)(q2 - q1 - 1);
        char *r = malloc(dl + nl + 2);
        if (!r) {
            sn_free(text);
            free(p);
            return sn_error(SN_ERR_OOM, "out of memory");
        }
        if (q1[1] == '/')
            snprintf(r, nl + 1, "%s", q1 + 1);
        else
            snprintf(r, dl + nl + 2, "%s/%.*s", dir, (int)nl, q1 + 1);
        sn_free(text);
        free(p);
        *out = r;
        return SN_OK;
    }
    snprintf(p, dl + 64, "%s/variables/variables.index", dir);
    if (is_file(p)) {
        p[strlen(p) - 6] = '\0';
        *out = p;
        return SN_OK;
    }
    free(p);
    return sn_error(SN_ERR_IO, "%s: a folder without a \"checkpoint\" file or "
                    "variables/variables.index: give the checkpoint prefix (the path of the "
                    "PREFIX.index file without \".index\")", dir);
}

sn_status sn_tf_open(const char *path, sn_tf_ckpt *out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_tf_open: NULL argument");
    memset(out, 0, sizeof *out);
    if (!path || !*path) return sn_error(SN_ERR_INVALID_ARG, "sn_tf_open: empty path");
    char *prefix = NULL;
    sn_status st;
    if (is_dir(path)) {
        st = prefix_of_dir(path, &prefix);
        if (st != SN_OK) return st;
    } else {
        prefix = dup_str(path);
        if (!prefix) return sn_error(SN_ERR_OOM, "out of memory");
        size_t n = strlen(prefix);
        if (n > 6 && strcmp(prefix + n - 6, ".index") == 0) prefix[n - 6] = '\0';
        else {
            const char *d = strstr(prefix, ".data-");
            if (d && strstr(d, "-of-")) prefix[d - prefix] = '\0'; /* a shard was named */
        }
    }
    size_t pl = strlen(prefix);
    char *ipath = malloc(pl + 7);
    if (!ipath) {
        free(prefix);
        return sn_error(SN_ERR_OOM, "out of memory");
    }
    snprintf(ipath, pl + 7, "%s.index", prefix);
    out->prefix = prefix;
    out->index_path = ipath;
    struct stat sb;
    if (stat(ipath, &sb) != 0) {
        st = sn_error(SN_ERR_IO, "%s: cannot open: %s (a checkpoint is named by its prefix: "
                      "PREFIX.index and PREFIX.data-*)", ipath, strerror(errno));
        sn_tf_close(out);
        return st;
    }
    if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > SN_TF_MAX_INDEX_BYTES) {
        st = sn_error(SN_ERR_FORMAT, "%s: %" PRIu64 " bytes, more than the %zu accepted for an "
                      "index", ipath, (uint64_t)sb.st_size, SN_TF_MAX_INDEX_BYTES);
        sn_tf_close(out);
        return st;
    }
    char *data;
    size_t n;
    st = sn_read_file(ipath, &data, &n);
    if (st != SN_OK) {
        sn_tf_close(out);
        return st;
    }
    table t = {ipath, (const unsigned char *)data, n};
    st = parse_table(&t, out);
    sn_free(data);
    if (st != SN_OK) sn_tf_close(out);
    return st;
}

void sn_tf_close(sn_tf_ckpt *c) {
    if (!c) return;
    for (int i = 0; i < c->n_entries; i++) free(c->entries[i].name);
    free(c->entries);
    free(c->prefix);
    free(c->index_path);
    memset(c, 0, sizeof *c);
}

const sn_tf_entry *sn_tf_find(const sn_tf_ckpt *c, const char *name) {
    if (!c || !name) return NULL;
    int lo = 0, hi = c->n_entries - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int d = strcmp(c->entries[mid].name, name);
        if (d == 0) return &c->entries[mid];
        if (d < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Tensor data                                                                               */

const char *sn_tf_dtype_name(int dtype) {
    static _Thread_local char buf[24];
    switch (dtype) {
    case SN_TF_FLOAT: return "float32";
    case SN_TF_DOUBLE: return "float64";
    case SN_TF_INT32: return "int32";
    case SN_TF_UINT8: return "uint8";
    case SN_TF_INT16: return "int16";
    case SN_TF_INT8: return "int8";
    case SN_TF_STRING: return "string";
    case SN_TF_INT64: return "int64";
    case SN_TF_BOOL: return "bool";
    case SN_TF_BFLOAT16: return "bfloat16";
    case SN_TF_HALF: return "float16";
    case SN_TF_RESOURCE: return "resource";
    case SN_TF_VARIANT: return "variant";
    default: snprintf(buf, sizeof buf, "dtype %d", dtype); return buf;
    }
}

int sn_tf_dtype_size(int dtype) {
    switch (dtype) {
    case SN_TF_FLOAT: case SN_TF_INT32: return 4;
    case SN_TF_DOUBLE: case SN_TF_INT64: return 8;
    case SN_TF_UINT8: case SN_TF_INT8: case SN_TF_BOOL: return 1;
    case SN_TF_INT16: case SN_TF_BFLOAT16: case SN_TF_HALF: return 2;
    default: return 0;
    }
}

void sn_tf_shard_path(const sn_tf_ckpt *c, int shard, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.data-%05d-of-%05d", c->prefix, shard, c->num_shards);
}

/* The raw bytes of a tensor, checked (shard, extent, CRC); caller frees with sn_free. */
static sn_status read_raw(const sn_tf_ckpt *c, const sn_tf_entry *e, unsigned char **out) {
    *out = NULL;
    if (e->n_slices)
        return sn_error(SN_ERR_UNSUPPORTED, "%s: tensor \"%s\" is a partitioned (sliced) "
                        "variable: its %d slice(s) are stored under other keys, which this reader "
                        "does not join", c->index_path, e->name, e->n_slices);
    int es = sn_tf_dtype_size(e->dtype);
    if (!es)
        return sn_error(SN_ERR_UNSUPPORTED, "%s: tensor \"%s\" has dtype %s, which is not read "
                        "(numeric tensors only)", c->index_path, e->name,
                        sn_tf_dtype_name(e->dtype));
    char spath[4096];
    sn_tf_shard_path(c, e->shard, spath, sizeof spath);
    FILE *f = fopen(spath, "rb");
    if (!f)
        return sn_error(SN_ERR_IO, "%s: cannot open the data shard of tensor \"%s\": %s", spath,
                        e->name, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return sn_error(SN_ERR_IO, "%s: not a regular file", spath);
    }
    if ((uint64_t)e->offset > (uint64_t)sb.st_size ||
        (uint64_t)e->size > (uint64_t)sb.st_size - (uint64_t)e->offset) {
        fclose(f);
        return sn_error(SN_ERR_FORMAT, "%s: tensor \"%s\" (bytes %" PRId64 "..%" PRId64 ") lies "
                        "past the end of the shard (%" PRIu64 " bytes): truncated or the wrong "
                        "shard", spath, e->name, e->offset, e->offset + e->size,
                        (uint64_t)sb.st_size);
    }
    if ((uint64_t)e->size > (uint64_t)SIZE_MAX - 1) {
        fclose(f);
        return sn_error(SN_ERR_OOM, "%s: tensor \"%s\" is too large", spath, e->name);
    }
    unsigned char *buf = sn_alloc(e->size ? (size_t)e->size : 1);
    if (!buf) {
        fclose(f);
        return sn_error(SN_ERR_OOM, "%s: out of memory reading tensor \"%s\" (%" PRId64
                        " bytes)", spath, e->name, e->size);
    }
    if (fseeko(f, (off_t)e->offset, SEEK_SET) != 0 ||
        fread(buf, 1, (size_t)e->size, f) != (size_t)e->size) {
        fclose(f);
        sn_free(buf);
        return sn_error(SN_ERR_IO, "%s: cannot read tensor \"%s\"", spath, e->name);
    }
    fclose(f);
    if (e->has_crc) {
        uint32_t got = sn_crc32c_mask(sn_crc32c(0, buf, (size_t)e->size));
        if (got != e->crc) {
            sn_free(buf);
            return sn_error(SN_ERR_FORMAT, "%s: CRC mismatch in tensor \"%s\" (index says %08x, "
                            "the bytes give %08x): the shard is corrupt or does not belong to "
                            "this index", spath, e->name, e->crc, got);
        }
    }
    *out = buf;
    return SN_OK;
}

static float half_to_f32(uint16_t h) {
    unsigned exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float v;
    if (exp == 0) v = ldexpf((float)man, -24); /* zero and subnormals */
    else if (exp == 31) v = man ? NAN : INFINITY;
    else v = ldexpf((float)(man | 0x400), (int)exp - 25);
    return (h & 0x8000) ? -v : v;
}

sn_status sn_tf_read_f32(const sn_tf_ckpt *c, const sn_tf_entry *e, float *out) {
    if (!c || !e || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_tf_read_f32: NULL argument");
    if (e->dtype != SN_TF_FLOAT && e->dtype != SN_TF_BFLOAT16 && e->dtype != SN_TF_HALF &&
        e->dtype != SN_TF_DOUBLE && e->n_slices == 0)
        return sn_error(SN_ERR_UNSUPPORTED, "%s: tensor \"%s\" has dtype %s, not a float type",
                        c->index_path, e->name, sn_tf_dtype_name(e->dtype));
    unsigned char *b;
    sn_status st = read_raw(c, e, &b);
    if (st != SN_OK) return st;
    size_t n = (size_t)e->count;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        switch (e->dtype) {
        case SN_TF_FLOAT:
            bits = le32(b + 4 * i);
            memcpy(&out[i], &bits, 4);
            break;
        case SN_TF_BFLOAT16:
            bits = ((uint32_t)b[2 * i] | (uint32_t)b[2 * i + 1] << 8) << 16;
            memcpy(&out[i], &bits, 4);
            break;
        case SN_TF_HALF:
            out[i] = half_to_f32((uint16_t)(b[2 * i] | b[2 * i + 1] << 8));
            break;
        default: { /* float64 */
            uint64_t q = le64(b + 8 * i);
            double d;
            memcpy(&d, &q, 8);
            out[i] = (float)d;
        }
        }
    }
    sn_free(b);
    return SN_OK;
}

sn_status sn_tf_read_i64(const sn_tf_ckpt *c, const sn_tf_entry *e, int64_t *out) {
    if (!c || !e || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_tf_read_i64: NULL argument");
    if (e->dtype != SN_TF_INT64 && e->dtype != SN_TF_INT32 && e->n_slices == 0)
        return sn_error(SN_ERR_UNSUPPORTED, "%s: tensor \"%s\" has dtype %s, not an integer type",
                        c->index_path, e->name, sn_tf_dtype_name(e->dtype));
    unsigned char *b;
    sn_status st = read_raw(c, e, &b);
    if (st != SN_OK) return st;
    for (int64_t i = 0; i < e->count; i++)
        out[i] = e->dtype == SN_TF_INT64 ? (int64_t)le64(b + 8 * i) : (int64_t)(int32_t)le32(b + 4 * i);
    sn_free(b);
    return SN_OK;
}
