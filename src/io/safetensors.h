/* safetensors.h: reading and writing safetensors files (F32 tensors only).
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON header, then the data region.
 * The header is an object: optional "__metadata__" (an object of strings) and one entry per
 * tensor, {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, offsets relative to
 * the start of the data region. See docs/weights.md.
 *
 * Errors: every call returns sn_status and sets sn_last_error() to a message that starts with
 * the file's path. Nothing is leaked on failure.
 */
#ifndef SN_SAFETENSORS_H
#define SN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "spinenet.h"

#define SN_ST_MAX_DIMS 8
#define SN_ST_MAX_HEADER 100000000u /* 100 MB, as the reference implementation */

typedef struct {
    char *name;
    int ndim;                        /* 0 .. SN_ST_MAX_DIMS; 0 is a scalar (count 1) */
    int64_t shape[SN_ST_MAX_DIMS];
    size_t count;                    /* product of shape */
    float *data;                     /* count floats (4-byte aligned) */
} sn_st_tensor;

typedef struct {
    sn_st_tensor *tensors;
    int n_tensors;
    char **meta_keys;
    char **meta_vals;
    int n_meta;
    void *blob;                      /* owned by a file from sn_st_read: the data region */
} sn_st_file;

/* Read a whole file. Only dtype F32 is accepted. Tensors come in header order; their data
 * points into `blob` (64-byte aligned, one read of the data region). Every check of the format
 * is done (sizes, JSON, types, shapes, offsets, overlaps, duplicate names, dtype).
 * Returns SN_ERR_IO (cannot open/read), SN_ERR_FORMAT (malformed), SN_ERR_OOM,
 * SN_ERR_UNSUPPORTED (big-endian host) or SN_ERR_INVALID_ARG (NULL arguments).
 * On failure *out is zeroed. */
sn_status sn_st_read(const char *path, sn_st_file *out);

/* Write atomically (sn_save_open: "<path>.tmp.<pid>", fsync, rename over path, fsync the
 * directory; a symbolic link keeps linking, a device or FIFO is written into). On
 * failure the temporary file is removed and an existing file at path is left untouched.
 * Tensors are written in the given order, contiguously; the header is padded with spaces so
 * the data region starts at a multiple of 64 bytes. n_meta may be 0 (no "__metadata__").
 * Each tensor's count must equal the product of its shape; names must be unique, valid UTF-8
 * and not "__metadata__" (SN_ERR_INVALID_ARG otherwise). `blob` is ignored. */
sn_status sn_st_write(const char *path, const sn_st_file *f);

/* Free what sn_st_read allocated and zero the struct; safe on a zeroed struct. */
void sn_st_free(sn_st_file *f);

/* The tensor called `name`, or NULL. */
const sn_st_tensor *sn_st_find(const sn_st_file *f, const char *name);

/* The metadata value for `key`, or NULL if absent. */
const char *sn_st_meta(const sn_st_file *f, const char *key);

#endif
