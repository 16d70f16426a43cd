/* Image-folder dataset: root/<class>/<file>.{jpg,jpeg,png}, classes and files in sorted order. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data.h"

/* A growable array of sn_alloc'ed strings (no realloc in core: grow by copy). */
typedef struct {
    char **v;
    int n, cap;
} strlist;

static sn_status strlist_push(strlist *l, const char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **v = sn_alloc(sizeof(char *) * (size_t)cap);
        if (!v) return SN_ERR_OOM;
        if (l->n) memcpy(v, l->v, sizeof(char *) * (size_t)l->n);
        sn_free(l->v);
        l->v = v;
        l->cap = cap;
    }
    size_t len = strlen(s);
    char *c = sn_alloc(len + 1);
    if (!c) return SN_ERR_OOM;
    memcpy(c, s, len + 1);
    l->v[l->n++] = c;
    return SN_OK;
}

static void strlist_free(strlist *l) {
    for (int i = 0; i < l->n; i++) sn_free(l->v[i]);
    sn_free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_image_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    return !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png");
}

static sn_status join(char *dst, size_t cap, const char *a, const char *b) {
    if ((size_t)snprintf(dst, cap, "%s/%s", a, b) >= cap)
        return sn_error(SN_ERR_INVALID_ARG, "%s/%s: path too long", a, b);
    return SN_OK;
}

/* Entries of `dir` (excluding hidden ones) that are directories (want_dirs) or image files,
 * sorted in byte order so that the dataset does not depend on readdir's order. */
static sn_status list_dir(const char *dir, int want_dirs, strlist *out) {
    DIR *d = opendir(dir);
    if (!d) return sn_error(SN_ERR_IO, "%s: cannot open directory", dir);
    sn_status st = SN_OK;
    struct dirent *e;
    char path[SN_PATH_MAX];
    while (st == SN_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (!want_dirs && !has_image_ext(e->d_name)) continue;
        if ((st = join(path, sizeof path, dir, e->d_name)) != SN_OK) break;
        struct stat sb;
        /* stat follows symlinks: linked class folders and images are common in dataset trees */
        if (stat(path, &sb) != 0) continue;
        if (want_dirs ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode)) continue;
        st = strlist_push(out, e->d_name);
    }
    closedir(d);
    if (st == SN_OK && out->n > 1) qsort(out->v, (size_t)out->n, sizeof(char *), cmp_str);
    return st;
}

typedef struct {
    char **paths;
    int *labels;
} folder_impl;

static sn_status folder_get(sn_dataset *ds, int index, sn_image *img, int *label) {
    folder_impl *f = ds->impl;
    *label = f->labels[index];
    return sn_image_load(f->paths[index], img);
}

static void folder_destroy(sn_dataset *ds) {
    folder_impl *f = ds->impl;
    if (!f) return;
    if (f->paths)
        for (int i = 0; i < ds->count; i++) sn_free(f->paths[i]);
    sn_free(f->paths);
    sn_free(f->labels);
    sn_free(f);
    ds->impl = NULL;
}

/* Check one file per the verification level; SN_OK when usable. */
static sn_status verify_file(const char *path, sn_verify level) {
    if (level == SN_VERIFY_NONE) return SN_OK;
    if (level == SN_VERIFY_HEADER) {
        int w, h;
        return sn_image_probe(path, &w, &h);
    }
    sn_image img;
    sn_status st = sn_image_load(path, &img);
    sn_image_free(&img);
    return st;
}

sn_status sn_folder_open(const char *root, const sn_folder_options *opts, sn_dataset **out,
                         sn_folder_stats *stats) {
    if (!root || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_folder_open: bad arguments");
    *out = NULL;
    sn_folder_options def = {0, SN_VERIFY_HEADER, NULL, NULL, 0, NULL};
    if (!opts) opts = &def;
    sn_folder_stats s = {0, 0, 0, 0};
    strlist classes = {0}, files = {0}, paths = {0};
    int *labels = NULL;
    int cap = 0;
    sn_dataset *ds = NULL;
    folder_impl *impl = NULL;
    char dir[SN_PATH_MAX], path[SN_PATH_MAX];

    sn_status st = list_dir(root, 1, &classes);
    if (st == SN_OK && classes.n == 0)
        st = sn_error(SN_ERR_NOT_FOUND, "%s: no class subfolders", root);
    for (int c = 0; st == SN_OK && c < classes.n; c++) {
        if ((st = join(dir, sizeof dir, root, classes.v[c])) != SN_OK) break;
        strlist_free(&files);
        if ((st = list_dir(dir, 0, &files)) != SN_OK) break;
        const int kept_before = paths.n;
        for (int i = 0; st == SN_OK && i < files.n; i++) {
            if ((st = join(path, sizeof path, dir, files.v[i])) != SN_OK) break;
            s.files++;
            sn_status vs = verify_file(path, opts->verify);
            if (vs != SN_OK) {
                if (!opts->skip_bad || vs == SN_ERR_OOM) {
                    /* the message already names the file */
                    st = vs;
                    break;
                }
                s.skipped++;
                if (opts->warn) opts->warn(opts->user, path, sn_last_error());
                continue;
            }
            if (paths.n == cap) {
                int ncap = cap ? 2 * cap : 64;
                int *nl = sn_alloc(sizeof(int) * (size_t)ncap);
                if (!nl) {
                    st = SN_ERR_OOM;
                    break;
                }
                if (paths.n) memcpy(nl, labels, sizeof(int) * (size_t)paths.n);
                sn_free(labels);
                labels = nl;
                cap = ncap;
            }
            if ((st = strlist_push(&paths, path)) != SN_OK) break;
            labels[paths.n - 1] = c;
        }
        if (st == SN_OK && paths.n == kept_before) {
            s.empty++;
            if (opts->strict)
                st = sn_error(SN_ERR_NOT_FOUND, "%s: empty class folder: no %s.jpg/.jpeg/.png "
                              "image (it would be a class without a sample)", dir,
                              files.n ? "readable " : "");
            else if (opts->empty)
                opts->empty(opts->user, dir);
        }
    }
    if (st == SN_OK && paths.n == 0)
        st = sn_error(SN_ERR_NOT_FOUND, "%s: no readable .jpg/.jpeg/.png images", root);
    if (st == SN_OK) st = sn_dataset_new(classes.n, (const char *const *)classes.v, &ds);
    if (st == SN_OK && !(impl = sn_calloc(1, sizeof *impl))) st = SN_ERR_OOM;
    if (st == SN_OK) {
        impl->paths = paths.v; /* ownership moves to the dataset */
        impl->labels = labels;
        ds->count = paths.n;
        ds->impl = impl;
        ds->get = folder_get;
        ds->destroy = folder_destroy;
        paths.v = NULL;
        paths.n = 0;
        labels = NULL;
        s.kept = ds->count;
        *out = ds;
        ds = NULL;
    }
    strlist_free(&classes);
    strlist_free(&files);
    strlist_free(&paths);
    sn_free(labels);
    sn_dataset_free(ds);
    if (stats) *stats = s;
    return st;
}
