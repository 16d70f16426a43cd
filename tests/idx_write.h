/* Writing gzip-compressed IDX files (the Fashion-MNIST format) in the tests: the reader's tests
 * and the synthetic Fashion-MNIST of the dataset tests make their files with these. */
#ifndef SN_IDX_WRITE_H
#define SN_IDX_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

static inline void t_put_be32(unsigned char *b, uint32_t v) {
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

/* An IDX file at path: the magic, ndims (at most 3) big-endian dimensions, then `payload` bytes
 * of data (which may disagree with the dimensions: the bad-input tests want that). */
static inline void t_write_idx(const char *path, uint32_t magic, const uint32_t *dims, int ndims,
                               const uint8_t *data, size_t payload) {
    gzFile f = gzopen(path, "wb");
    unsigned char hdr[4 + 12];
    t_put_be32(hdr, magic);
    for (int i = 0; i < ndims; i++) t_put_be32(hdr + 4 + 4 * i, dims[i]);
    gzwrite(f, hdr, (unsigned)(4 + 4 * ndims));
    if (payload) gzwrite(f, data, (unsigned)payload);
    gzclose(f);
}

#endif
