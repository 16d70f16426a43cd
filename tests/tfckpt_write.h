/* A small writer of TensorFlow checkpoints (tensor bundles) for the tests: the index as a
 * LevelDB-format table (prefix-compressed keys, restart points, blocks raw or snappy-compressed,
 * each with its type byte and masked CRC32C, metaindex and index blocks, the 48-byte footer),
 * the BundleHeaderProto under the empty key, a BundleEntryProto per tensor with the masked
 * CRC32C of its bytes, and the data shards. Written from the format's description (see
 * src/io/tfckpt.h), independently of the reader: only sn_crc32c is shared. The tests use
 * it for round trips and to make malformed files with valid checksums around the fault. */
#ifndef SN_TFCKPT_WRITE_H
#define SN_TFCKPT_WRITE_H

#include <snappy-c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfckpt.h"

typedef struct {
    const char *name;
    int dtype;            /* SN_TF_* */
    int ndim;
    int64_t shape[8];
    const void *data;     /* the bytes as stored (little-endian) */
    size_t bytes;
    int shard;            /* 0 .. num_shards-1 */
    int slices;           /* > 0: write that many (empty) TensorSliceProto fields */
    const unsigned char *raw_value; /* non-NULL: this entry's value bytes as given */
    size_t raw_value_len;
} tw_tensor;

typedef struct {
    int snappy;           /* compress blocks with snappy */
    int restart_interval; /* entries between restart points (0: 16, LevelDB's default) */
    size_t block_size;    /* close a data block past this many bytes (0: 4096) */
    int num_shards;       /* 0: 1 */
    const unsigned char *raw_header; /* non-NULL: the empty key's value as given */
    size_t raw_header_len;
} tw_opts;

/* ---- a growable byte buffer ---- */
typedef struct {
    unsigned char *p;
    size_t n, cap;
} tw_buf;

static inline void tw_put(tw_buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 64;
        unsigned char *q = realloc(b->p, cap);
        if (!q) abort();
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static inline void tw_byte(tw_buf *b, unsigned v) {
    unsigned char c = (unsigned char)v;
    tw_put(b, &c, 1);
}
static inline void tw_varint(tw_buf *b, uint64_t v) {
    while (v >= 0x80) {
        tw_byte(b, (unsigned)(v & 0x7f) | 0x80);
        v >>= 7;
    }
    tw_byte(b, (unsigned)v);
}
static inline void tw_fixed32(tw_buf *b, uint32_t v) {
    for (int i = 0; i < 4; i++) tw_byte(b, (v >> (8 * i)) & 0xff);
}
static inline void tw_fixed64(tw_buf *b, uint64_t v) {
    for (int i = 0; i < 8; i++) tw_byte(b, (unsigned)(v >> (8 * i)) & 0xff);
}
/* protobuf: key, then varint / bytes */
static inline void tw_pb_varint(tw_buf *b, int field, uint64_t v) {
    tw_varint(b, (uint64_t)field << 3);
    tw_varint(b, v);
}
static inline void tw_pb_bytes(tw_buf *b, int field, const void *d, size_t n) {
    tw_varint(b, (uint64_t)field << 3 | 2);
    tw_varint(b, n);
    tw_put(b, d, n);
}

/* ---- a table block with restart points ---- */
typedef struct {
    tw_buf data;
    uint32_t *restarts;
    int n_restarts, cap_restarts, since_restart, count, interval;
    char *last;
    size_t last_len;
} tw_block;

static inline void tw_block_add(tw_block *bl, const char *key, size_t klen, const void *val,
                                size_t vlen) {
    size_t shared = 0;
    if (bl->since_restart >= bl->interval || bl->count == 0) {
        if (bl->n_restarts == bl->cap_restarts) {
            bl->cap_restarts = bl->cap_restarts ? 2 * bl->cap_restarts : 16;
            bl->restarts = realloc(bl->restarts, (size_t)bl->cap_restarts * 4);
            if (!bl->restarts) abort();
        }
        bl->restarts[bl->n_restarts++] = (uint32_t)bl->data.n;
        bl->since_restart = 0;
    } else {
        while (shared < klen && shared < bl->last_len && key[shared] == bl->last[shared]) shared++;
    }
    tw_varint(&bl->data, shared);
    tw_varint(&bl->data, klen - shared);
    tw_varint(&bl->data, vlen);
    tw_put(&bl->data, key + shared, klen - shared);
    tw_put(&bl->data, val, vlen);
    bl->last = realloc(bl->last, klen + 1);
    if (!bl->last) abort();
    memcpy(bl->last, key, klen);
    bl->last_len = klen;
    bl->since_restart++;
    bl->count++;
}

/* Appends the finished block (contents, type byte, masked CRC) to out; its handle in *off, *len.
 * Resets the block. */
static inline void tw_block_flush(tw_block *bl, tw_buf *out, int snappy, uint64_t *off,
                                  uint64_t *len) {
    if (bl->n_restarts == 0) { /* an empty block still has one restart point */
        bl->restarts = realloc(bl->restarts, 4);
        if (!bl->restarts) abort();
        bl->restarts[0] = 0;
        bl->n_restarts = bl->cap_restarts = 1;
    }
    for (int i = 0; i < bl->n_restarts; i++) tw_fixed32(&bl->data, bl->restarts[i]);
    tw_fixed32(&bl->data, (uint32_t)bl->n_restarts);
    const unsigned char *body = bl->data.p;
    size_t n = bl->data.n;
    char *comp = NULL;
    unsigned type = 0;
    if (snappy) {
        size_t cl = snappy_max_compressed_length(n);
        comp = malloc(cl);
        if (!comp || snappy_compress((const char *)body, n, comp, &cl) != SNAPPY_OK) abort();
        body = (const unsigned char *)comp;
        n = cl;
        type = 1;
    }
    *off = out->n;
    *len = n;
    tw_put(out, body, n);
    unsigned char t = (unsigned char)type;
    uint32_t crc = sn_crc32c(sn_crc32c(0, body, n), &t, 1);
    tw_byte(out, type);
    tw_fixed32(out, sn_crc32c_mask(crc));
    free(comp);
    bl->data.n = 0;
    bl->n_restarts = 0;
    bl->since_restart = 0;
    bl->count = 0;
}

static inline void tw_block_free(tw_block *bl) {
    free(bl->data.p);
    free(bl->restarts);
    free(bl->last);
}

/* The 48-byte footer: the metaindex and index handles, zero padding to 40 bytes, the magic. */
static inline void tw_footer(tw_buf *out, uint64_t moff, uint64_t mlen, uint64_t ioff,
                             uint64_t ilen) {
    tw_buf foot = {0};
    tw_varint(&foot, moff);
    tw_varint(&foot, mlen);
    tw_varint(&foot, ioff);
    tw_varint(&foot, ilen);
    while (foot.n < 40) tw_byte(&foot, 0);
    tw_fixed64(&foot, 0xdb4775248b80fb57ull);
    tw_put(out, foot.p, foot.n);
    free(foot.p);
}

/* The finished table of (sorted) keys and values into out. */
static inline void tw_table(tw_buf *out, const char *const *keys, const tw_buf *vals, int n,
                            int snappy, int interval, size_t block_size) {
    tw_block data = {0}, index = {0}, meta = {0};
    data.interval = interval > 0 ? interval : 16;
    index.interval = 1;
    meta.interval = 1;
    if (!block_size) block_size = 4096;
    for (int i = 0; i < n; i++) {
        tw_block_add(&data, keys[i], strlen(keys[i]), vals[i].p, vals[i].n);
        if (data.data.n >= block_size || i == n - 1) {
            char *last = malloc(data.last_len + 1);
            if (!last) abort();
            memcpy(last, data.last, data.last_len);
            size_t ll = data.last_len;
            uint64_t off, len;
            tw_block_flush(&data, out, snappy, &off, &len);
            tw_buf h = {0};
            tw_varint(&h, off);
            tw_varint(&h, len);
            tw_block_add(&index, last, ll, h.p, h.n);
            free(h.p);
            free(last);
        }
    }
    uint64_t moff, mlen, ioff, ilen;
    tw_block_flush(&meta, out, snappy, &moff, &mlen);
    tw_block_flush(&index, out, snappy, &ioff, &ilen);
    tw_footer(out, moff, mlen, ioff, ilen);
    tw_block_free(&data);
    tw_block_free(&index);
    tw_block_free(&meta);
}

static inline int tw_cmp_name(const void *a, const void *b) {
    return strcmp(((const tw_tensor *)a)->name, ((const tw_tensor *)b)->name);
}

static inline int tw_save(const char *path, const tw_buf *b) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = b->n ? fwrite(b->p, 1, b->n, f) : 0;
    return (fclose(f) == 0 && w == b->n) ? 0 : -1;
}

/* Writes PREFIX.index and PREFIX.data-*; 0 on success. */
static inline int tw_write(const char *prefix, const tw_tensor *tensors, int n, const tw_opts *o) {
    int shards = o && o->num_shards > 0 ? o->num_shards : 1;
    tw_tensor *t = malloc((size_t)(n ? n : 1) * sizeof *t);
    if (!t) return -1;
    memcpy(t, tensors, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, tw_cmp_name);
    tw_buf *sh = calloc((size_t)shards, sizeof *sh);
    const char **keys = malloc((size_t)(n + 1) * sizeof *keys);
    tw_buf *vals = calloc((size_t)(n + 1), sizeof *vals);
    if (!sh || !keys || !vals) abort();
    keys[0] = "";
    if (o && o->raw_header) tw_put(&vals[0], o->raw_header, o->raw_header_len);
    else {
        tw_pb_varint(&vals[0], 1, (uint64_t)shards);
        tw_pb_varint(&vals[0], 2, 0); /* little-endian */
        tw_buf v = {0};
        tw_pb_varint(&v, 1, 1); /* producer */
        tw_pb_bytes(&vals[0], 3, v.p, v.n);
        free(v.p);
    }
    for (int i = 0; i < n; i++) {
        keys[i + 1] = t[i].name;
        tw_buf *e = &vals[i + 1];
        if (t[i].raw_value) {
            tw_put(e, t[i].raw_value, t[i].raw_value_len);
            continue;
        }
        tw_buf *s = &sh[t[i].shard];
        uint64_t off = s->n;
        tw_put(s, t[i].data, t[i].bytes);
        tw_pb_varint(e, 1, (uint64_t)t[i].dtype);
        tw_buf shape = {0};
        for (int d = 0; d < t[i].ndim; d++) {
            tw_buf dim = {0};
            tw_pb_varint(&dim, 1, (uint64_t)t[i].shape[d]);
            tw_pb_bytes(&shape, 2, dim.p, dim.n);
            free(dim.p);
        }
        tw_pb_bytes(e, 2, shape.p, shape.n);
        free(shape.p);
        if (t[i].shard) tw_pb_varint(e, 3, (uint64_t)t[i].shard);
        if (off) tw_pb_varint(e, 4, off);
        tw_pb_varint(e, 5, t[i].bytes);
        tw_varint(e, 6 << 3 | 5);
        tw_fixed32(e, sn_crc32c_mask(sn_crc32c(0, t[i].data, t[i].bytes)));
        for (int k = 0; k < t[i].slices; k++) tw_pb_bytes(e, 7, "", 0);
    }
    tw_buf idx = {0};
    tw_table(&idx, keys, vals, n + 1, o ? o->snappy : 0, o ? o->restart_interval : 0,
             o ? o->block_size : 0);
    char path[4096];
    snprintf(path, sizeof path, "%s.index", prefix);
    int rc = tw_save(path, &idx);
    for (int s = 0; s < shards && rc == 0; s++) {
        snprintf(path, sizeof path, "%s.data-%05d-of-%05d", prefix, s, shards);
        rc = tw_save(path, &sh[s]);
    }
    for (int s = 0; s < shards; s++) free(sh[s].p);
    for (int i = 0; i <= n; i++) free(vals[i].p);
    free(sh);
    free(vals);
    free(keys);
    free(idx.p);
    free(t);
    return rc;
}

#endif
