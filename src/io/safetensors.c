/* Reading and writing safetensors files (F32 only). See safetensors.h. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "core.h"

/* Largest element count we accept: its byte size must fit both size_t and a JSON integer. */
#define ST_MAX_COUNT (((uint64_t)SIZE_MAX < (uint64_t)INT64_MAX ? (uint64_t)SIZE_MAX \
                                                                 : (uint64_t)INT64_MAX) / 4u)
/* Largest single read()/write() request (Linux transfers at most ~2 GB per call anyway). */
#define ST_IO_CHUNK ((size_t)1 << 30)

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Small helpers                                                                             */

static void *st_alloc(const char *path, size_t bytes, sn_status *st) {
    void *p = sn_alloc(bytes);
    if (!p) *st = sn_error(SN_ERR_OOM, "%s: out of memory allocating %zu bytes", path, bytes);
    return p;
}

static char *st_strdup(const char *path, const char *s, sn_status *st) {
    size_t n = strlen(s);
    char *d = st_alloc(path, n + 1, st);
    if (d) memcpy(d, s, n + 1);
    return d;
}

/* Format a shape as "[a, b, c]" into buf (truncated if needed). */
static const char *shape_str(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t used = 0;
    int n = snprintf(buf, cap, "[");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < ndim && used < cap; i++) {
        n = snprintf(buf + used, cap - used, "%s%" PRId64, i ? ", " : "", shape[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
    if (used < cap) snprintf(buf + used, cap - used, "]");
    return buf;
}

/* Read exactly n bytes; returns 0, or -1 with errno set (errno 0 at end of file). */
static int read_full(int fd, void *buf, size_t n) {
    unsigned char *p = buf;
    while (n > 0) {
        size_t want = n < ST_IO_CHUNK ? n : ST_IO_CHUNK;
        ssize_t got = read(fd, p, want);
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (got == 0) {
            errno = 0;
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static const char *read_errstr(int err) {
    return err ? strerror(err) : "unexpected end of file (was the file changed while reading?)";
}

/* Strict UTF-8 check (no overlong forms, no surrogates, at most U+10FFFF). */
static int utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int extra;
        uint32_t cp, min;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            extra = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        p++;
        for (int i = 0; i < extra; i++, p++) {
            if ((*p & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (*p & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Reading                                                                                   */

typedef struct {
    uint64_t begin, end;
    int idx;
} st_range;

static int range_cmp(const void *a, const void *b) {
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Validate one tensor entry; fill t (except name and data) and r (begin, end). */
static sn_status parse_tensor(const char *path, const char *name, json_t *ent,
                              uint64_t data_size, sn_st_tensor *t, st_range *r) {
    char sbuf[256];
    if (!json_is_object(ent))
        return sn_error(SN_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", path,
                        name);
    json_t *dtype = json_object_get(ent, "dtype");
    json_t *shape = json_object_get(ent, "shape");
    json_t *offs = json_object_get(ent, "data_offsets");
    if (!dtype)
        return sn_error(SN_ERR_FORMAT, "%s: tensor '%s': missing \"dtype\"", path, name);
    if (!json_is_string(dtype))
        return sn_error(SN_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is not a string", path, name);
    if (strcmp(json_string_value(dtype), "F32") != 0)
        return sn_error(SN_ERR_FORMAT,
                        "%s: tensor '%s' has dtype %s; only F32 tensors are supported", path,
                        name, json_string_value(dtype));
    if (!shape)
        return sn_error(SN_ERR_FORMAT, "%s: tensor '%s': missing \"shape\"", path, name);
    if (!json_is_array(shape))
        return sn_error(SN_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array", path, name);
    if (!offs)
        return sn_error(SN_ERR_FORMAT, "%s: tensor '%s': missing \"data_offsets\"", path, name);
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return sn_error(SN_ERR_FORMAT,
                        "%s: tensor '%s': \"data_offsets\" is not an array of two integers",
                        path, name);

    size_t nd = json_array_size(shape);
    if (nd > SN_ST_MAX_DIMS)
        return sn_error(SN_ERR_FORMAT, "%s: tensor '%s' has %zu dimensions; at most %d supported",
                        path, name, nd, SN_ST_MAX_DIMS);
    t->ndim = (int)nd;
    int has_zero = 0;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d))
            return sn_error(SN_ERR_FORMAT, "%s: tensor '%s': shape element %zu is not an integer",
                            path, name, i);
        json_int_t v = json_integer_value(d);
        if (v < 0)
            return sn_error(SN_ERR_FORMAT, "%s: tensor '%s': shape element %zu is negative (%lld)",
                            path, name, i, (long long)v);
        t->shape[i] = (int64_t)v;
        if (v == 0) has_zero = 1;
    }
    uint64_t count = 1;
    if (has_zero) {
        count = 0;
    } else {
        for (int i = 0; i < t->ndim; i++) {
            uint64_t d = (uint64_t)t->shape[i];
            if (count > ST_MAX_COUNT / d)
                return sn_error(SN_ERR_FORMAT, "%s: tensor '%s': shape %s is too large (overflow)",
                                path, name, shape_str(sbuf, sizeof sbuf, t->shape, t->ndim));
            count *= d;
        }
    }
    t->count = (size_t)count;

    json_t *jb = json_array_get(offs, 0), *je = json_array_get(offs, 1);
    if (!json_is_integer(jb) || !json_is_integer(je))
        return sn_error(SN_ERR_FORMAT,
                        "%s: tensor '%s': \"data_offsets\" is not an array of two integers",
                        path, name);
    json_int_t b = json_integer_value(jb), e = json_integer_value(je);
    if (b < 0 || e < 0 || b > e)
        return sn_error(SN_ERR_FORMAT, "%s: tensor '%s': invalid data_offsets [%lld, %lld]", path,
                        name, (long long)b, (long long)e);
    uint64_t bytes = count * 4u;
    if ((uint64_t)(e - b) != bytes)
        return sn_error(SN_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%lld, %lld] hold %llu bytes but F32 shape "
                        "%s needs %llu bytes",
                        path, name, (long long)b, (long long)e, (unsigned long long)(e - b),
                        shape_str(sbuf, sizeof sbuf, t->shape, t->ndim),
                        (unsigned long long)bytes);
    if ((uint64_t)e > data_size)
        return sn_error(SN_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%lld, %lld] extend past the end of the "
                        "data region (%llu bytes); the file may be truncated",
                        path, name, (long long)b, (long long)e, (unsigned long long)data_size);
    if (b % 4 != 0)
        return sn_error(SN_ERR_FORMAT,
                        "%s: tensor '%s': data offset %lld is not a multiple of 4 (F32 data must "
                        "be aligned)",
                        path, name, (long long)b);
    r->begin = (uint64_t)b;
    r->end = (uint64_t)e;
    return SN_OK;
}

/* Validate the header and fill out (names, shapes, metadata); the data ranges go to *ranges
 * (sorted by offset, caller frees) and the end of the last byte used to *max_end. */
static sn_status parse_header(const char *path, json_t *root, uint64_t data_size,
                              sn_st_file *out, st_range **ranges, uint64_t *max_end) {
    sn_status st = SN_OK;
    *ranges = NULL;
    *max_end = 0;
    if (!json_is_object(root))
        return sn_error(SN_ERR_FORMAT, "%s: header is not a JSON object", path);

    json_t *meta = json_object_get(root, "__metadata__");
    size_t nmeta = 0;
    const char *key;
    json_t *val;
    if (meta) {
        if (!json_is_object(meta))
            return sn_error(SN_ERR_FORMAT, "%s: \"__metadata__\" is not an object", path);
        json_object_foreach(meta, key, val) {
            if (!json_is_string(val))
                return sn_error(SN_ERR_FORMAT,
                                "%s: \"__metadata__\" value for key '%s' is not a string", path,
                                key);
        }
        nmeta = json_object_size(meta);
    }
    size_t ntens = json_object_size(root) - (meta ? 1 : 0);
    if (ntens > INT_MAX || nmeta > INT_MAX)
        return sn_error(SN_ERR_FORMAT, "%s: too many header entries", path);

    if (nmeta > 0) {
        out->meta_keys = sn_calloc(nmeta, sizeof(char *));
        out->meta_vals = sn_calloc(nmeta, sizeof(char *));
        if (!out->meta_keys || !out->meta_vals)
            return sn_error(SN_ERR_OOM, "%s: out of memory reading metadata", path);
        json_object_foreach(meta, key, val) {
            int i = out->n_meta++;
            out->meta_keys[i] = st_strdup(path, key, &st);
            if (!out->meta_keys[i]) return st;
            out->meta_vals[i] = st_strdup(path, json_string_value(val), &st);
            if (!out->meta_vals[i]) return st;
        }
    }
    if (ntens == 0) return SN_OK;

    out->tensors = sn_calloc(ntens, sizeof(sn_st_tensor));
    if (!out->tensors) return sn_error(SN_ERR_OOM, "%s: out of memory reading header", path);
    st_range *r = sn_calloc(ntens, sizeof(st_range));
    if (!r) return sn_error(SN_ERR_OOM, "%s: out of memory reading header", path);
    *ranges = r;

    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue;
        int i = out->n_tensors++;
        sn_st_tensor *t = &out->tensors[i];
        st = parse_tensor(path, key, val, data_size, t, &r[i]);
        if (st != SN_OK) return st;
        r[i].idx = i;
        t->name = st_strdup(path, key, &st);
        if (!t->name) return st;
        if (r[i].end > *max_end) *max_end = r[i].end;
    }

    /* Overlaps: sort by offset; every non-empty range must start at or after the end of the
     * previous non-empty one. */
    qsort(r, ntens, sizeof *r, range_cmp);
    int prev = -1;
    for (size_t j = 0; j < ntens; j++) {
        if (r[j].begin == r[j].end) continue;
        if (prev >= 0 && r[j].begin < r[prev].end)
            return sn_error(SN_ERR_FORMAT,
                            "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap in the "
                            "data region",
                            path, out->tensors[r[prev].idx].name,
                            (unsigned long long)r[prev].begin, (unsigned long long)r[prev].end,
                            out->tensors[r[j].idx].name, (unsigned long long)r[j].begin,
                            (unsigned long long)r[j].end);
        prev = (int)j;
    }
    return SN_OK;
}

static sn_status read_fd(const char *path, int fd, sn_st_file *out) {
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return sn_error(SN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return sn_error(SN_ERR_IO, "%s: not a regular file", path);
    uint64_t fsize = (uint64_t)sb.st_size;
    if (fsize < 8)
        return sn_error(SN_ERR_FORMAT,
                        "%s: file is too short (%llu bytes) to hold the 8-byte header length",
                        path, (unsigned long long)fsize);

    unsigned char lb[8];
    if (read_full(fd, lb, 8) != 0)
        return sn_error(SN_ERR_IO, "%s: cannot read header length: %s", path,
                        read_errstr(errno));
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lb[i];
    if (hlen > SN_ST_MAX_HEADER)
        return sn_error(SN_ERR_FORMAT,
                        "%s: header length %llu exceeds the limit of %u bytes (not a safetensors "
                        "file?)",
                        path, (unsigned long long)hlen, SN_ST_MAX_HEADER);
    if (hlen > fsize - 8)
        return sn_error(SN_ERR_FORMAT,
                        "%s: header length %llu is larger than the rest of the file (%llu bytes); "
                        "the file is truncated or not safetensors",
                        path, (unsigned long long)hlen, (unsigned long long)(fsize - 8));
    uint64_t data_size = fsize - 8 - hlen;

    sn_status st = SN_OK;
    char *hbuf = st_alloc(path, (size_t)hlen + 1, &st);
    if (!hbuf) return st;
    if (read_full(fd, hbuf, (size_t)hlen) != 0) {
        int err = errno;
        sn_free(hbuf);
        return sn_error(SN_ERR_IO, "%s: cannot read header: %s", path, read_errstr(err));
    }
    json_error_t jerr;
    json_t *root = json_loadb(hbuf, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    sn_free(hbuf);
    if (!root) {
#if JANSSON_VERSION_HEX >= 0x020b00
        int dup = json_error_code(&jerr) == json_error_duplicate_key;
#else
        int dup = strstr(jerr.text, "duplicate object key") != NULL;
#endif
        if (dup)
            return sn_error(SN_ERR_FORMAT,
                            "%s: duplicate name in header (line %d, column %d): %s", path,
                            jerr.line, jerr.column, jerr.text);
        return sn_error(SN_ERR_FORMAT, "%s: header is not valid JSON (line %d, column %d): %s",
                        path, jerr.line, jerr.column, jerr.text);
    }

    st_range *ranges = NULL;
    uint64_t max_end = 0;
    st = parse_header(path, root, data_size, out, &ranges, &max_end);
    json_decref(root);
    if (st != SN_OK) {
        sn_free(ranges);
        return st;
    }

    /* One read of the used part of the data region into one 64-byte aligned buffer. */
    out->blob = st_alloc(path, (size_t)max_end, &st);
    if (!out->blob) {
        sn_free(ranges);
        return st;
    }
    if (read_full(fd, out->blob, (size_t)max_end) != 0) {
        int err = errno;
        sn_free(ranges);
        return sn_error(SN_ERR_IO, "%s: cannot read tensor data: %s", path, read_errstr(err));
    }
    for (int j = 0; j < out->n_tensors; j++)
        out->tensors[ranges[j].idx].data = (float *)((char *)out->blob + ranges[j].begin);
    sn_free(ranges);
    return SN_OK;
}

sn_status sn_st_read(const char *path, sn_st_file *out) {
    if (!out) return sn_error(SN_ERR_INVALID_ARG, "sn_st_read: NULL output");
    memset(out, 0, sizeof *out);
    if (!path) return sn_error(SN_ERR_INVALID_ARG, "sn_st_read: NULL path");
    if (!host_is_little_endian())
        return sn_error(SN_ERR_UNSUPPORTED, "%s: safetensors needs a little-endian host", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sn_error(SN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    sn_status st = read_fd(path, fd, out);
    close(fd);
    if (st != SN_OK) sn_st_free(out);
    return st;
}

void sn_st_free(sn_st_file *f) {
    if (!f) return;
    if (f->tensors)
        for (int i = 0; i < f->n_tensors; i++) sn_free(f->tensors[i].name);
    sn_free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        if (f->meta_keys) sn_free(f->meta_keys[i]);
        if (f->meta_vals) sn_free(f->meta_vals[i]);
    }
    sn_free(f->meta_keys);
    sn_free(f->meta_vals);
    sn_free(f->blob);
    memset(f, 0, sizeof *f);
}

const sn_st_tensor *sn_st_find(const sn_st_file *f, const char *name) {
    if (!f || !name || !f->tensors) return NULL;
    for (int i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].name && strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *sn_st_meta(const sn_st_file *f, const char *key) {
    if (!f || !key || !f->meta_keys || !f->meta_vals) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (f->meta_keys[i] && strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Writing                                                                                   */

static sn_status json_oom(const char *path) {
    return sn_error(SN_ERR_OOM, "%s: out of memory building the header", path);
}

/* Validate f and build the JSON header into root. */
static sn_status build_header(const char *path, const sn_st_file *f, json_t *root) {
    char sbuf[256];
    if (f->n_meta > 0) {
        json_t *meta = json_object();
        if (!meta || json_object_set_new(root, "__metadata__", meta) != 0) return json_oom(path);
        for (int i = 0; i < f->n_meta; i++) {
            const char *k = f->meta_keys[i], *v = f->meta_vals[i];
            if (!k || !v)
                return sn_error(SN_ERR_INVALID_ARG, "%s: metadata entry %d has a NULL %s", path,
                                i, k ? "value" : "key");
            if (!utf8_valid(k) || !utf8_valid(v))
                return sn_error(SN_ERR_INVALID_ARG,
                                "%s: metadata entry '%s' is not valid UTF-8", path, k);
            if (json_object_get(meta, k))
                return sn_error(SN_ERR_INVALID_ARG, "%s: duplicate metadata key '%s'", path, k);
            json_t *js = json_string(v);
            if (!js || json_object_set_new(meta, k, js) != 0) return json_oom(path);
        }
    }
    uint64_t offset = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const sn_st_tensor *t = &f->tensors[i];
        if (!t->name) return sn_error(SN_ERR_INVALID_ARG, "%s: tensor %d has no name", path, i);
        if (!utf8_valid(t->name))
            return sn_error(SN_ERR_INVALID_ARG, "%s: tensor %d: name is not valid UTF-8", path, i);
        if (strcmp(t->name, "__metadata__") == 0)
            return sn_error(SN_ERR_INVALID_ARG,
                            "%s: a tensor cannot be called \"__metadata__\"", path);
        if (json_object_get(root, t->name))
            return sn_error(SN_ERR_INVALID_ARG, "%s: duplicate tensor name '%s'", path, t->name);
        if (t->ndim < 0 || t->ndim > SN_ST_MAX_DIMS)
            return sn_error(SN_ERR_INVALID_ARG, "%s: tensor '%s': ndim %d is not in 0..%d", path,
                            t->name, t->ndim, SN_ST_MAX_DIMS);
        uint64_t count = 1;
        int overflow = 0;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0)
                return sn_error(SN_ERR_INVALID_ARG, "%s: tensor '%s': negative dimension in %s",
                                path, t->name, shape_str(sbuf, sizeof sbuf, t->shape, t->ndim));
            uint64_t v = (uint64_t)t->shape[d];
            if (v && count > ST_MAX_COUNT / v) overflow = 1;
            count *= v;
        }
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] == 0) count = 0, overflow = 0;
        if (overflow || (uint64_t)t->count != count)
            return sn_error(SN_ERR_INVALID_ARG,
                            "%s: tensor '%s': count %zu does not match shape %s", path, t->name,
                            t->count, shape_str(sbuf, sizeof sbuf, t->shape, t->ndim));
        if (count > 0 && !t->data)
            return sn_error(SN_ERR_INVALID_ARG, "%s: tensor '%s' has no data", path, t->name);
        uint64_t bytes = count * 4u;
        if (offset > (uint64_t)INT64_MAX - bytes)
            return sn_error(SN_ERR_INVALID_ARG, "%s: tensors are too large in total", path);

        json_t *ent = json_object(), *shape = json_array(), *offs = json_array();
        if (!ent || !shape || !offs) {
            json_decref(ent);
            json_decref(shape);
            json_decref(offs);
            return json_oom(path);
        }
        /* The *_new calls steal their argument even when they fail, so fill the leaves first,
         * then hand them to ent, then ent to root, touching none of them afterwards. */
        int bad = 0;
        for (int d = 0; d < t->ndim; d++)
            bad |= json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
        bad |= json_array_append_new(offs, json_integer((json_int_t)offset));
        bad |= json_array_append_new(offs, json_integer((json_int_t)(offset + bytes)));
        bad |= json_object_set_new(ent, "dtype", json_string("F32"));
        bad |= json_object_set_new(ent, "shape", shape);
        bad |= json_object_set_new(ent, "data_offsets", offs);
        if (bad) {
            json_decref(ent);
            return json_oom(path);
        }
        if (json_object_set_new(root, t->name, ent) != 0) return json_oom(path);
        offset += bytes;
    }
    return SN_OK;
}

/* The serialised header: 8-byte length, JSON, spaces up to a multiple of 64 bytes in all. */
static sn_status make_header(const char *path, const sn_st_file *f, unsigned char **hdr,
                             size_t *hdr_len) {
    *hdr = NULL;
    json_t *root = json_object();
    if (!root) return json_oom(path);
    sn_status st = build_header(path, f, root);
    char *js = NULL;
    if (st == SN_OK) {
        js = json_dumps(root, JSON_COMPACT);
        if (!js) st = json_oom(path);
    }
    json_decref(root);
    if (st != SN_OK) return st;

    size_t jlen = strlen(js);
    size_t total = 8 + jlen;
    total = (total + 63) & ~(size_t)63;
    unsigned char *h = st_alloc(path, total, &st);
    if (h) {
        uint64_t n = (uint64_t)(total - 8);
        for (int i = 0; i < 8; i++) h[i] = (unsigned char)(n >> (8 * i));
        memcpy(h + 8, js, jlen);
        memset(h + 8 + jlen, ' ', total - 8 - jlen);
        *hdr = h;
        *hdr_len = total;
    }
    json_free_t jfree;
    json_get_alloc_funcs(NULL, &jfree);
    jfree(js);
    return st;
}

sn_status sn_st_write(const char *path, const sn_st_file *f) {
    if (!path || !f) return sn_error(SN_ERR_INVALID_ARG, "sn_st_write: NULL argument");
    if (f->n_tensors < 0 || f->n_meta < 0 || (f->n_tensors > 0 && !f->tensors) ||
        (f->n_meta > 0 && (!f->meta_keys || !f->meta_vals)))
        return sn_error(SN_ERR_INVALID_ARG, "%s: invalid tensor or metadata list", path);
    if (!host_is_little_endian())
        return sn_error(SN_ERR_UNSUPPORTED, "%s: safetensors needs a little-endian host", path);

    unsigned char *hdr = NULL;
    size_t hdr_len = 0;
    sn_status st = make_header(path, f, &hdr, &hdr_len);
    if (st != SN_OK) return st;

    /* Saved whole (sn_save_open: a temporary file, synced and renamed over path). */
    sn_save_file out;
    if ((st = sn_save_open(path, &out)) != SN_OK) {
        sn_free(hdr);
        return st;
    }
    if (fwrite(hdr, 1, hdr_len, out.f) != hdr_len)
        st = sn_error(SN_ERR_IO, "%s: cannot write the header: %s", path, strerror(errno));
    sn_free(hdr);
    for (int i = 0; st == SN_OK && i < f->n_tensors; i++) {
        const sn_st_tensor *t = &f->tensors[i];
        if (t->count && fwrite(t->data, sizeof(float), t->count, out.f) != t->count)
            st = sn_error(SN_ERR_IO, "%s: cannot write tensor '%s': %s", path, t->name,
                          strerror(errno));
    }
    return sn_save_close(&out, st);
}
