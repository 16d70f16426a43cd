/* Reading golden safetensors files in the tests: a failed read, a missing tensor or a missing
 * metadata key is a recorded check failure naming it, never a crash. */
#ifndef SN_GOLDEN_ST_H
#define SN_GOLDEN_ST_H

#include <stdlib.h>

#include "safetensors.h"
#include "test.h"

static inline int t_golden_read(const char *path, sn_st_file *f) {
    sn_status st = sn_st_read(path, f);
    CHECK(st == SN_OK, "%s: %s", path, sn_last_error());
    return st == SN_OK;
}

static inline const sn_st_tensor *t_need(const sn_st_file *f, const char *name) {
    const sn_st_tensor *t = sn_st_find(f, name);
    CHECK(t != NULL, "golden tensor %s missing", name);
    return t;
}

static inline double t_meta_d(const sn_st_file *f, const char *key) {
    const char *v = sn_st_meta(f, key);
    CHECK(v != NULL, "golden metadata %s missing", key);
    return v ? atof(v) : 0.0;
}

static inline int t_meta_i(const sn_st_file *f, const char *key) {
    const char *v = sn_st_meta(f, key);
    CHECK(v != NULL, "golden metadata %s missing", key);
    return v ? atoi(v) : 0;
}

#endif
