/* IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or plain, and the
 * Fashion-MNIST dataset built on them. */
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "data.h"

/* Largest element count accepted: far above any IDX set in use, and it keeps sizes in int. */
#define IDX_MAX_ELEMS ((size_t)1 << 31)

/* Read exactly n bytes; distinguish a short file (truncation) from a decompression error, so
 * the message says which. */
static sn_status read_exact(gzFile f, const char *path, void *dst, size_t n, const char *what) {
    unsigned char *p = dst;
    size_t done = 0;
    while (done < n) {
        /* gzread takes an unsigned int count: read in chunks */
        size_t want = n - done;
        if (want > (1u << 30)) want = 1u << 30;
        int got = gzread(f, p + done, (unsigned)want);
        if (got < 0) {
            int errnum = 0;
            const char *msg = gzerror(f, &errnum);
            /* zlib reports a gzip stream cut short as Z_BUF_ERROR "unexpected end of file" */
            if (errnum == Z_BUF_ERROR)
                return sn_error(SN_ERR_FORMAT,
                                "%s: truncated: %s needs %zu bytes, compressed stream ends early",
                                path, what, n);
            return sn_error(SN_ERR_FORMAT, "%s: cannot decompress %s: %s", path, what,
                            msg ? msg : "zlib error");
        }
        if (got == 0) {
            int errnum = 0;
            const char *msg = gzerror(f, &errnum);
            if (errnum != Z_OK && errnum != Z_BUF_ERROR)
                return sn_error(SN_ERR_FORMAT, "%s: cannot decompress %s: %s", path, what, msg);
            return sn_error(SN_ERR_FORMAT, "%s: truncated: %s needs %zu bytes, file ends after %zu",
                            path, what, n, done);
        }
        done += (size_t)got;
    }
    return SN_OK;
}

static uint32_t be32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Load an unsigned-byte IDX tensor with `want_dims` dimensions; dims[] receives them. */
static sn_status idx_load(const char *path, int want_dims, uint8_t **data, int *dims) {
    if (!path || !data) return sn_error(SN_ERR_INVALID_ARG, "idx: bad arguments");
    *data = NULL;
    gzFile f = gzopen(path, "rb");
    if (!f) return sn_error(SN_ERR_IO, "%s: cannot open", path);
    gzbuffer(f, 1 << 17);
    sn_status st;
    unsigned char hdr[4 + 4 * 3];
    if ((st = read_exact(f, path, hdr, 4, "the magic number")) != SN_OK) goto done;
    /* Magic: two zero bytes, the element type (0x08 = unsigned byte), the number of dims. */
    if (hdr[0] != 0 || hdr[1] != 0) {
        st = sn_error(SN_ERR_FORMAT, "%s: not an IDX file (bad magic %02x%02x%02x%02x)", path,
                      hdr[0], hdr[1], hdr[2], hdr[3]);
        goto done;
    }
    if (hdr[2] != 0x08) {
        st = sn_error(SN_ERR_UNSUPPORTED, "%s: IDX element type 0x%02x, only unsigned bytes (0x08)",
                      path, hdr[2]);
        goto done;
    }
    if (hdr[3] != want_dims) {
        st = sn_error(SN_ERR_FORMAT, "%s: IDX file has %d dimensions, expected %d", path, hdr[3],
                      want_dims);
        goto done;
    }
    if ((st = read_exact(f, path, hdr + 4, 4 * (size_t)want_dims, "the dimensions")) != SN_OK)
        goto done;
    size_t total = 1;
    for (int i = 0; i < want_dims; i++) {
        uint32_t d = be32(hdr + 4 + 4 * i);
        if (d == 0 || d > IDX_MAX_ELEMS || (total *= d) > IDX_MAX_ELEMS) {
            st = sn_error(SN_ERR_FORMAT, "%s: bad IDX dimension %d = %u", path, i, (unsigned)d);
            goto done;
        }
        dims[i] = (int)d;
    }
    uint8_t *buf = sn_alloc(total);
    if (!buf) {
        st = SN_ERR_OOM;
        goto done;
    }
    if ((st = read_exact(f, path, buf, total, "the data")) != SN_OK) {
        sn_free(buf);
        goto done;
    }
    /* Extra bytes mean the header does not describe the file: refuse rather than guess. */
    unsigned char extra;
    if (gzread(f, &extra, 1) > 0) {
        sn_free(buf);
        st = sn_error(SN_ERR_FORMAT, "%s: trailing data after %zu bytes of IDX data", path, total);
        goto done;
    }
    *data = buf;
done:
    gzclose(f);
    return st;
}

sn_status sn_idx_load_images(const char *path, uint8_t **pixels, int *count, int *rows,
                             int *cols) {
    if (!count || !rows || !cols) return sn_error(SN_ERR_INVALID_ARG, "idx: bad arguments");
    int dims[3] = {0, 0, 0};
    sn_status st = idx_load(path, 3, pixels, dims);
    if (st != SN_OK) return st;
    *count = dims[0];
    *rows = dims[1];
    *cols = dims[2];
    return SN_OK;
}

sn_status sn_idx_load_labels(const char *path, uint8_t **labels, int *count) {
    if (!count) return sn_error(SN_ERR_INVALID_ARG, "idx: bad arguments");
    int dims[1] = {0};
    sn_status st = idx_load(path, 1, labels, dims);
    if (st != SN_OK) return st;
    *count = dims[0];
    return SN_OK;
}

/* ---- Fashion-MNIST dataset ---------------------------------------------------------------- */

static const char *const fmnist_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                               "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                               "Bag",         "Ankle boot"};

typedef struct {
    uint8_t *pixels, *labels;
    int rows, cols;
} fmnist_impl;

static sn_status fmnist_get(sn_dataset *ds, int index, sn_image *img, int *label) {
    fmnist_impl *m = ds->impl;
    sn_status st = sn_image_alloc(img, m->cols, m->rows, 1);
    if (st != SN_OK) return st;
    size_t n = (size_t)m->rows * (size_t)m->cols;
    memcpy(img->pixels, m->pixels + (size_t)index * n, n);
    *label = m->labels[index];
    return SN_OK;
}

static void fmnist_destroy(sn_dataset *ds) {
    fmnist_impl *m = ds->impl;
    if (!m) return;
    sn_free(m->pixels);
    sn_free(m->labels);
    sn_free(m);
    ds->impl = NULL;
}

sn_status sn_fashion_mnist_open(const char *dir, int train, sn_dataset **out) {
    if (!dir || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_fashion_mnist_open: bad arguments");
    *out = NULL;
    const char *split = train ? "train" : "t10k";
    char ipath[SN_PATH_MAX], lpath[SN_PATH_MAX];
    if ((size_t)snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", dir, split) >=
            sizeof ipath ||
        (size_t)snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", dir, split) >=
            sizeof lpath)
        return sn_error(SN_ERR_INVALID_ARG, "%s: path too long", dir);

    fmnist_impl *m = sn_calloc(1, sizeof *m);
    if (!m) return SN_ERR_OOM;
    int n_img = 0, n_lab = 0;
    sn_status st = sn_idx_load_images(ipath, &m->pixels, &n_img, &m->rows, &m->cols);
    if (st == SN_OK) st = sn_idx_load_labels(lpath, &m->labels, &n_lab);
    if (st == SN_OK && n_img != n_lab)
        st = sn_error(SN_ERR_FORMAT, "%s has %d images but %s has %d labels", ipath, n_img, lpath,
                      n_lab);
    for (int i = 0; st == SN_OK && i < n_lab; i++)
        if (m->labels[i] >= 10)
            st = sn_error(SN_ERR_FORMAT, "%s: label %d of sample %d is not in 0..9", lpath,
                          m->labels[i], i);
    sn_dataset *ds = NULL;
    if (st == SN_OK) st = sn_dataset_new(10, fmnist_classes, &ds);
    if (st != SN_OK) {
        sn_free(m->pixels);
        sn_free(m->labels);
        sn_free(m);
        return st;
    }
    ds->count = n_img;
    ds->impl = m;
    ds->get = fmnist_get;
    ds->destroy = fmnist_destroy;
    *out = ds;
    return SN_OK;
}
