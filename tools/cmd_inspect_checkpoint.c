/* spinenet inspect-checkpoint: the tensors of a TensorFlow checkpoint (name, dtype, shape), read
 * from its .index alone, as TensorFlow's inspect_checkpoint prints them; --verify also reads
 * every numeric tensor from the data shards and checks its CRC. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core.h"
#include "tfckpt.h"

typedef struct {
    int json, verify;
    const char *filter;
} opts;

static const opts k_defaults = {0};

static const cli_flag k_flags[] = {
    FSTR("--filter", "TEXT", filter, "list only the tensors whose name contains TEXT", "all"),
    FSWITCH("--verify", verify,
            "also read every numeric tensor from the data shards and check its CRC32C (needs "
            "the PREFIX.data-* files)", "off: the .index alone"),
    FSWITCH("--json", json,
            "print JSON: {\"prefix\", \"num_shards\", \"tensors\": [{\"name\", \"dtype\", "
            "\"shape\", \"shard\", \"offset\", \"size\"}, ...]}", "off"),
};

static void shape_text(const sn_tf_entry *e, char *buf, size_t cap) {
    size_t u = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < e->ndim && u < cap; d++)
        u += (size_t)snprintf(buf + u, cap - u, "%s%" PRId64, d ? "," : "", e->shape[d]);
    if (u < cap) snprintf(buf + u, cap - u, "]");
}

/* Reads and checks one tensor's bytes: 0, or 1 after printing the error. */
static int verify_one(const sn_tf_ckpt *c, const sn_tf_entry *e, int64_t *checked) {
    int es = sn_tf_dtype_size(e->dtype);
    if (!es || e->n_slices) return 0; /* strings, resources: listed, not read */
    size_t n = e->count ? (size_t)e->count : 1;
    void *buf = sn_alloc(n * 8);
    if (!buf) return die("%s", "out of memory");
    sn_status st;
    if (e->dtype == SN_TF_INT64 || e->dtype == SN_TF_INT32) st = sn_tf_read_i64(c, e, buf);
    else if (e->dtype == SN_TF_FLOAT || e->dtype == SN_TF_BFLOAT16 || e->dtype == SN_TF_HALF ||
             e->dtype == SN_TF_DOUBLE) st = sn_tf_read_f32(c, e, buf);
    else {
        sn_free(buf);
        return 0; /* int8, uint8, bool...: not read by spinenet */
    }
    sn_free(buf);
    if (st != SN_OK) return fail_status();
    (*checked)++;
    return 0;
}

static int run(const void *options, const char *const *args, int n_args) {
    const opts *o = options;
    sn_tf_ckpt c;
    if (sn_tf_open(args[0], &c) != SN_OK) return fail_status();
    int rc = 0, shown = 0;
    int64_t elems = 0, checked = 0;
    json_t *arr = o->json ? json_array() : NULL;
    for (int i = 0; i < c.n_entries && !rc; i++) {
        const sn_tf_entry *e = &c.entries[i];
        if (o->filter && !strstr(e->name, o->filter)) continue;
        shown++;
        elems += e->count;
        char shape[200];
        shape_text(e, shape, sizeof shape);
        if (arr) {
            json_t *sh = json_array();
            for (int d = 0; d < e->ndim; d++) json_array_append_new(sh, json_integer(e->shape[d]));
            json_t *t = json_pack("{s:s, s:s, s:o, s:i, s:I, s:I}", "name", e->name, "dtype",
                                  sn_tf_dtype_name(e->dtype), "shape", sh, "shard", e->shard,
                                  "offset", (json_int_t)e->offset, "size", (json_int_t)e->size);
            if (e->n_slices) json_object_set_new(t, "slices", json_integer(e->n_slices));
            json_array_append_new(arr, t);
        } else {
            printf("%-72s %-9s %s%s\n", e->name, sn_tf_dtype_name(e->dtype), shape,
                   e->n_slices ? " (partitioned)" : "");
        }
        if (o->verify) rc = verify_one(&c, e, &checked);
    }
    if (!rc) {
        if (arr) {
            json_t *root = json_pack("{s:s, s:i, s:o}", "prefix", c.prefix, "num_shards",
                                     c.num_shards, "tensors", arr);
            arr = NULL;
            if (o->verify) json_object_set_new(root, "verified", json_integer(checked));
            char *s = json_dumps(root, JSON_INDENT(1));
            if (s) puts(s);
            free(s);
            json_decref(root);
        } else {
            printf("%d tensor(s)%s, %" PRId64 " elements; %d data shard(s): %s.data-*-of-%05d\n",
                   shown, o->filter ? " matching" : "", elems, c.num_shards, c.prefix,
                   c.num_shards);
            if (o->verify)
                printf("verified: %" PRId64 " numeric tensor(s) read, every CRC32C matches\n",
                       checked);
        }
    }
    json_decref(arr);
    sn_tf_close(&c);
    return rc;
}

const cli_command cmd_inspect_checkpoint = {
    .name = "inspect-checkpoint",
    .summary = "list the tensors of a TensorFlow checkpoint (name, dtype, shape)",
    .usage = "spinenet inspect-checkpoint PREFIX [--filter TEXT] [--verify] [--json]",
    .about = "Lists every tensor of a TensorFlow (TF1 or TF2) checkpoint, read from PREFIX.index "
             "alone: a checkpoint can be looked at before its large data shards are downloaded. "
             "PREFIX is the checkpoint's prefix (model.ckpt-12345 for model.ckpt-12345.index), "
             "the .index file itself, a folder with a \"checkpoint\" file, or a SavedModel "
             "folder. --verify reads every numeric tensor and checks its CRC32C.",
    .examples = "spinenet inspect-checkpoint ckpt/model.ckpt-500000\n"
                "spinenet inspect-checkpoint ckpt/model.ckpt-500000 --filter class_net\n"
                "spinenet inspect-checkpoint saved_model/ --verify --json",
    CLI_PARTS(CLI_POS_ONE),
    .pos_missing = "inspect-checkpoint needs the checkpoint: spinenet inspect-checkpoint PREFIX "
                   "(PREFIX.index and PREFIX.data-* are its files)",
};
