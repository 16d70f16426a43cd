/* tfckpt.h: reading TensorFlow checkpoints (the "tensor bundle" format of TF1 and TF2).
 *
 * A checkpoint is a prefix P with an index file P.index and data shards
 * P.data-00000-of-0000N. The index is a LevelDB-format table: a 48-byte footer (metaindex and
 * index block handles, magic 0xdb4775248b80fb57), an index block whose values are the handles
 * of the data blocks, data blocks of prefix-compressed keys with restart points; every block is
 * followed by a type byte (0 raw, 1 snappy) and the masked CRC32C of its bytes and type. The
 * empty key holds a BundleHeaderProto (shard count, endianness, version); every other key is a
 * tensor name whose value is a BundleEntryProto (dtype, shape, shard id, offset and size in the
 * shard, masked CRC32C of the bytes, slices).
 *
 * Everything is checked: block CRCs, key order, protobuf wire format, dtype and shape sizes,
 * tensor extents against the shard's length, and each tensor's CRC when it is read. Errors
 * return sn_status and set sn_last_error() to a message that starts with the file's path and
 * names the tensor where there is one. Nothing is leaked on failure.
 */
#ifndef SN_TFCKPT_H
#define SN_TFCKPT_H

#include <stddef.h>
#include <stdint.h>

#include "spinenet.h"

#define SN_TF_MAX_DIMS 8
/* Refused above this: an index file (whole) and one decompressed table block. */
#define SN_TF_MAX_INDEX_BYTES ((size_t)1 << 30)
#define SN_TF_MAX_BLOCK_BYTES ((size_t)1 << 28)

/* TensorFlow DataType values (types.proto) that this reader names. */
enum {
    SN_TF_FLOAT = 1,
    SN_TF_DOUBLE = 2,
    SN_TF_INT32 = 3,
    SN_TF_UINT8 = 4,
    SN_TF_INT16 = 5,
    SN_TF_INT8 = 6,
    SN_TF_STRING = 7,
    SN_TF_INT64 = 9,
    SN_TF_BOOL = 10,
    SN_TF_BFLOAT16 = 14,
    SN_TF_HALF = 19,
    SN_TF_RESOURCE = 20,
    SN_TF_VARIANT = 21
};

typedef struct {
    char *name;
    int dtype;                      /* SN_TF_* (any DataType value is kept) */
    int ndim;
    int64_t shape[SN_TF_MAX_DIMS];
    int64_t count;                  /* product of shape (1 for a scalar) */
    int shard;
    int64_t offset, size;           /* bytes in the shard */
    uint32_t crc;                   /* masked CRC32C of the bytes, when has_crc */
    int has_crc;
    int n_slices;                   /* > 0: a partitioned variable (its slices are elsewhere) */
} sn_tf_entry;

typedef struct {
    char *prefix;                   /* the checkpoint prefix (no ".index") */
    char *index_path;
    sn_tf_entry *entries;           /* in key (name) order */
    int n_entries;
    int num_shards;
    int version_producer;           /* BundleHeaderProto.version.producer */
} sn_tf_ckpt;

/* Read the index of a checkpoint. `path` is the prefix, the prefix with ".index", or a folder
 * holding a "checkpoint" file (its model_checkpoint_path is used) or "variables/variables.index"
 * (a SavedModel). Only the index is read. */
sn_status sn_tf_open(const char *path, sn_tf_ckpt *out);
void sn_tf_close(sn_tf_ckpt *c);

/* The entry called `name`, or NULL (binary search). */
const sn_tf_entry *sn_tf_find(const sn_tf_ckpt *c, const char *name);

/* Read one tensor from its shard into out[e->count] as float32: float32, bfloat16, float16 and
 * float64 convert; int64 and int32 refuse (use sn_tf_read_i64). Checks the shard's name and
 * length, the entry's byte size against its dtype and shape, and the CRC. */
sn_status sn_tf_read_f32(const sn_tf_ckpt *c, const sn_tf_entry *e, float *out);
/* The same for int64 and int32 tensors (global_step and the like). */
sn_status sn_tf_read_i64(const sn_tf_ckpt *c, const sn_tf_entry *e, int64_t *out);

/* "float32", "bfloat16", ... or "dtype N". */
const char *sn_tf_dtype_name(int dtype);
/* Bytes per element of a fixed-size dtype, 0 for others (string, resource, variant). */
int sn_tf_dtype_size(int dtype);
/* "PREFIX.data-00000-of-00001" for a shard, in buf. */
void sn_tf_shard_path(const sn_tf_ckpt *c, int shard, char *buf, size_t cap);

/* CRC32C (Castagnoli) of data, continuing from crc (0 to start), and LevelDB's mask. */
uint32_t sn_crc32c(uint32_t crc, const void *data, size_t n);
uint32_t sn_crc32c_mask(uint32_t crc);

#endif
