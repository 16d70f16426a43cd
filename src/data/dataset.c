/* The generic dataset interface: construction with class names, get with checks, free. */
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
    sn_free(ds);
}
