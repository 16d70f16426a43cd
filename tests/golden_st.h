/* Reading golden safetensors files in the tests: a failed read, a missing tensor or a missing
 * metadata key is a recorded check failure naming it, never a crash. */
#ifndef SN_GOLDEN_ST_H
#define SN_GOLDEN_ST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Reads the golden file dir/name into g and starts cfg from its metadata: the variant, and the
 * flavour, head and activation where the file names them. 0 (a recorded failure) when the file
 * cannot be read. */
static inline int t_golden_open(const char *dir, const char *name, sn_st_file *g,
                                sn_config *cfg) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!t_golden_read(path, g)) return 0;
    const char *s = sn_st_meta(g, "model");
    CHECK_OK(sn_config_init(cfg, s ? s : "?"));
    if ((s = sn_st_meta(g, "flavour"))) CHECK_OK(sn_parse_flavour(s, &cfg->flavour));
    if ((s = sn_st_meta(g, "head"))) CHECK_OK(sn_parse_head(s, &cfg->head));
    if ((s = sn_st_meta(g, "activation"))) CHECK_OK(sn_parse_act(s, &cfg->activation));
    return 1;
}

/* The golden cases listed in $SN_SOURCE_DIR/tests/golden/<sub>/MANIFEST (one file name a line;
 * blank lines and '#' comments skipped): run(dir, name) for each that skip (NULL: none) does not
 * leave out. Returns the cases run; a missing MANIFEST is a recorded failure and returns 0. */
static inline int t_golden_manifest(const char *sub, int (*skip)(const char *name),
                                    void (*run)(const char *dir, const char *name)) {
    const char *src = getenv("SN_SOURCE_DIR");
    char dir[1024], mpath[1100];
    snprintf(dir, sizeof dir, "%s/tests/golden/%s", src ? src : ".", sub);
    snprintf(mpath, sizeof mpath, "%s/MANIFEST", dir);
    FILE *f = fopen(mpath, "r");
    CHECK(f != NULL, "cannot open %s", mpath);
    if (!f) return 0;
    char line[512];
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        if (skip && skip(line)) continue;
        run(dir, line);
        cases++;
    }
    fclose(f);
    return cases;
}

#endif
