/* The generic dataset interface: construction with class names, get with checks, free. */
#include <stdio.h>
#include <string.h>

#include "data.h"

sn_status sn_dataset_new(int num_classes, const char *const *names, sn_dataset **out) {
    if (!out || num_classes < 0 || (num_classes > 0 && !names))
        return sn_error(SN_ERR_INVALID_ARG, "sn_dataset_new: bad arguments");
    *out = NULL;
    sn_dataset *ds = sn_calloc(1, sizeof *ds);
    if (!ds) return SN_ERR_OOM;
    ds->num_classes = num_classes;
    /* calloc'd so that a partial failure can be unwound by sn_dataset_free */
    ds->class_names = sn_calloc((size_t)num_classes + 1, sizeof(char *));
    if (!ds->class_names) {
        sn_free(ds);
        return SN_ERR_OOM;
    }
    for (int i = 0; i < num_classes; i++) {
        size_t len = strlen(names[i]);
        ds->class_names[i] = sn_alloc(len + 1);
        if (!ds->class_names[i]) {
            sn_dataset_free(ds);
            return SN_ERR_OOM;
        }
        memcpy(ds->class_names[i], names[i], len + 1);
    }
    *out = ds;
    return SN_OK;
}

sn_status sn_dataset_get(sn_dataset *ds, int index, sn_image *img, int *label) {
    if (!ds || !ds->get || !img || !label)
        return sn_error(SN_ERR_INVALID_ARG, "sn_dataset_get: bad arguments");
    if (index < 0 || index >= ds->count)
        return sn_error(SN_ERR_INVALID_ARG, "sample %d out of range [0, %d)", index, ds->count);
    memset(img, 0, sizeof *img);
    sn_status st = ds->get(ds, index, img, label);
    if (st != SN_OK) {
        sn_image_free(img);
        return st;
    }
    if (ds->label_map) {
        if (*label < 0 || *label >= ds->map_n) {
            sn_image_free(img);
            return sn_error(SN_ERR_FORMAT, "sample %d has label %d outside [0, %d)", index,
                            *label, ds->map_n);
        }
        *label = ds->label_map[*label];
    }
    /* Guard the loader against a dataset implementation returning junk labels. */
    if (*label < 0 || *label >= ds->num_classes) {
        sn_image_free(img);
        return sn_error(SN_ERR_FORMAT, "sample %d has label %d outside [0, %d)", index, *label,
                        ds->num_classes);
    }
    return SN_OK;
}

void sn_dataset_free(sn_dataset *ds) {
    if (!ds) return;
    if (ds->destroy) ds->destroy(ds);
    if (ds->class_names) {
        for (int i = 0; i < ds->num_classes; i++) sn_free(ds->class_names[i]);
        sn_free(ds->class_names);
    }
    sn_free(ds->label_map);
    sn_free(ds);
}

void sn_class_file_name(const char *name, char *out, size_t cap) {
    if (!cap) return;
    snprintf(out, cap, "%s", name);
    for (char *c = out; *c; c++)
        if (*c == '/' || *c == ' ') *c = '_';
}

int sn_class_find(const char *const *names, int n, const char *name) {
    /* The exact name first: a model may hold both "Ankle boot" and "Ankle_boot". */
    for (int j = 0; j < n; j++)
        if (names[j] && strcmp(names[j], name) == 0) return j;
    char safe[512];
    for (int j = 0; j < n; j++) {
        if (!names[j]) continue;
        sn_class_file_name(names[j], safe, sizeof safe);
        if (strcmp(safe, name) == 0) return j;
    }
    return -1;
}

sn_status sn_dataset_match_classes(sn_dataset *ds, const char *const *names, int n,
                                   const char *where, const char *whose) {
    if (!ds || n <= 0 || !names || !ds->class_names)
        return sn_error(SN_ERR_INVALID_ARG, "sn_dataset_match_classes: bad arguments");
    const int old_n = ds->num_classes;
    int *map = sn_alloc(sizeof(int) * (size_t)(old_n ? old_n : 1));
    if (!map) return SN_ERR_OOM;
    for (int c = 0; c < old_n; c++) {
        map[c] = sn_class_find(names, n, ds->class_names[c]);
        if (map[c] >= 0) continue;
        char list[256] = "";
        for (int j = 0; j < n && strlen(list) < 200; j++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", j ? ", " : "",
                     names[j] ? names[j] : "?");
        sn_free(map);
        return sn_error(SN_ERR_INVALID_ARG, "%s: class '%s' is not one of the %d classes of %s "
                        "(%s%s)", where ? where : "dataset", ds->class_names[c], n,
                        whose ? whose : "the model", list, strlen(list) >= 200 ? ", ..." : "");
    }
    /* Maps compose: a dataset matched twice maps its samples' own labels straight through. */
    if (ds->label_map)
        for (int c = 0; c < ds->map_n; c++) ds->label_map[c] = map[ds->label_map[c]];
    char **new_names = sn_calloc((size_t)n + 1, sizeof(char *));
    sn_status st = new_names ? SN_OK : SN_ERR_OOM;
    for (int j = 0; st == SN_OK && j < n; j++) {
        const char *nm = names[j] ? names[j] : "";
        size_t len = strlen(nm);
        if (!(new_names[j] = sn_alloc(len + 1))) st = SN_ERR_OOM;
        else memcpy(new_names[j], nm, len + 1);
    }
    if (st != SN_OK) {
        for (int j = 0; new_names && j < n; j++) sn_free(new_names[j]);
        sn_free(new_names);
        sn_free(map);
        return st;
    }
    for (int c = 0; c < old_n; c++) sn_free(ds->class_names[c]);
    sn_free(ds->class_names);
    ds->class_names = new_names;
    ds->num_classes = n;
    if (ds->label_map) {
        sn_free(map);
    } else {
        ds->label_map = map;
        ds->map_n = old_n;
    }
    return SN_OK;
}
