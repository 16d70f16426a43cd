/* tf_convert.h: a model from an official TensorFlow SpineNet checkpoint (docs/weights.md,
 * "TensorFlow checkpoints"). Every parameter of the model described by a config is looked up
 * under its checkpoint name (tf_names.h); every checkpoint tensor is either used, skipped by
 * rule (optimizer slots and state, global_step, the object graph, and with or without --ema the
 * other copy of the weights), skipped because the caller asked (ignore), or reported. Nothing
 * is dropped silently: a model tensor with no source, a shape that differs and a source with no
 * model tensor are all listed, and the conversion fails. */
#ifndef SN_TF_CONVERT_H
#define SN_TF_CONVERT_H

#include "model.h"
#include "tfckpt.h"

typedef struct {
    int ema;            /* take the exponential-moving-average shadow variables */
    const char *ignore; /* comma-separated substrings: checkpoint tensors whose name contains one
                           are skipped on purpose (e.g. the heads of another task); NULL: none */
    int read_data;      /* 0: map names and shapes from the .index alone (no data read) */
    int infer;          /* SN_TF_INFER_* bits: the sizes the checkpoint's shapes may decide */
} sn_tf_convert_opts;

enum { SN_TF_INFER_CLASSES = 1, SN_TF_INFER_ENDPOINTS = 2, SN_TF_INFER_HEAD_FILTERS = 4 };

typedef enum {
    SN_TF_MISSING,     /* a model tensor whose checkpoint name is absent */
    SN_TF_SHAPE,       /* present with another shape */
    SN_TF_DTYPE,       /* present with a type that is not a float */
    SN_TF_UNUSED       /* a checkpoint tensor that no model tensor takes */
} sn_tf_problem_kind;

typedef struct {
    sn_tf_problem_kind kind;
    char *model;       /* model tensor name (NULL for SN_TF_UNUSED) */
    char *tf;          /* checkpoint name */
    char model_shape[80], tf_shape[80];
} sn_tf_problem;

typedef struct {
    int n_params;      /* model tensors */
    int n_mapped;      /* model tensors with a source of the right shape */
    int n_entries;     /* checkpoint tensors */
    int n_slots;       /* skipped: optimizer slots (a variable under another's name, .OPTIMIZER_SLOT) */
    int n_state;       /* skipped: optimizer state, global_step, save counter, object graph */
    int n_other_copy;  /* skipped: the raw weights with ema, or the moving averages without it */
    int n_ignored;     /* skipped: matched by opts.ignore */
    sn_tf_problem *problems;
    int n_problems;
    char inferred[256]; /* what was read off the checkpoint's shapes, e.g. "endpoints-filters 256" */
} sn_tf_report;

/* Builds the model of *cfg from the checkpoint at path (sn_tf_open's forms). The sizes named by
 * opts->infer (num_classes from the class predictor or the dense layer, endpoints_filters from
 * an endpoint convolution, head_filters from the first tower convolution) are read off the
 * checkpoint's shapes where they differ and written back into *cfg (said in rep->inferred).
 * With read_data the weights are read (CRC checked) and *out is the model (a RetinaNet head of
 * 91 classes, the official COCO layout, gets COCO's category names at their ids); otherwise
 * *out is NULL. SN_ERR_FORMAT when the report has problems (the message counts them; the caller prints
 * rep->problems). The report is filled in either case; free it with sn_tf_report_free. */
sn_status sn_tf_convert(sn_config *cfg, const char *path, const sn_tf_convert_opts *opts,
                        sn_tf_report *rep, sn_model **out);
void sn_tf_report_free(sn_tf_report *rep);

#endif
