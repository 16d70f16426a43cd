/* A model written as an ONNX file (spinenet export --onnx; docs/guide.md, "Export to ONNX"):
 * the inference graph for one input shape, batch-norm folded into the convolutions, in NCHW.
 * The file is a standard ModelProto (IR version 8, default-domain opset 14), encoded here by a
 * small protobuf writer of its own. */
#ifndef SN_ONNX_H
#define SN_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "spinenet.h"

#define SN_ONNX_IR_VERSION 8
#define SN_ONNX_OPSET 14

/* What sn_model_export_onnx wrote. */
typedef struct {
    int nodes;       /* ONNX nodes in the graph */
    int outputs;     /* graph outputs (the model's, sn_model_output_at's order) */
    int64_t params;  /* float values of the weight and bias initializers (batch-norm folded;
                        the per-level scale and shift of the RetinaNet head's shared kernels) */
    size_t bytes;    /* the file's size */
} sn_onnx_info;

/* Writes m as ONNX for an input of batch x 3 x height x width (NCHW float, named "input",
 * normalised as sn_model_run takes it), outputs named as sn_model_output_at names them, in NCHW
 * ("logits": [batch][classes]). Saved whole (sn_save_open). info may be NULL. Errors name the
 * path: SN_ERR_UNSUPPORTED for a size the model cannot take or a model over protobuf's 2 GiB,
 * SN_ERR_IO, SN_ERR_OOM. */
sn_status sn_model_export_onnx(sn_model *m, int batch, int height, int width, const char *path,
                               sn_onnx_info *info);

#endif
